//! Logging: structured logs through `tracing`, JSON (one object per line, for log
//! shippers) or pretty, written by a background thread so a slow terminal or pipe never
//! blocks a request. The level can change while running (configuration reload).

use std::sync::OnceLock;

use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Layer, Registry};

use crate::config::{LogFormat, LoggingConfig};

/// Replaces the filter of the installed subscriber.
static SET_FILTER: OnceLock<Box<dyn Fn(EnvFilter) + Send + Sync>> = OnceLock::new();

/// Installs the global subscriber. Keep the guard alive: dropping it flushes the logs.
pub fn init(config: &LoggingConfig) -> WorkerGuard {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.level));
    let (filter, handle) = reload::Layer::new(filter);
    let (writer, guard) = tracing_appender::non_blocking(std::io::stdout());
    let fmt = tracing_subscriber::fmt::layer().with_writer(writer);
    let fmt = match config.format {
        LogFormat::Json => fmt.json().flatten_event(true).with_current_span(false).boxed(),
        LogFormat::Pretty => fmt.boxed(),
    };
    match Registry::default().with(filter).with(fmt).try_init() {
        Ok(()) => {
            let _ = SET_FILTER.set(Box::new(move |f| {
                let _ = handle.reload(f);
            }));
        }
        Err(e) => eprintln!("warden: logging already initialised: {e}"),
    }
    guard
}

/// Sets the log level of a running process (`RUST_LOG`, when set, still wins).
pub fn set_level(level: &str) {
    if std::env::var_os("RUST_LOG").is_some() {
        return;
    }
    if let (Some(set), Ok(filter)) = (SET_FILTER.get(), EnvFilter::try_new(level)) {
        set(filter);
    }
}
