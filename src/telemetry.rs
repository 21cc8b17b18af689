//! Logging: structured logs through `tracing`, JSON (one object per line, for log
//! shippers) or pretty, written by a background thread so a slow terminal or pipe never
//! blocks a request. The level can change while running (configuration reload).

use std::sync::OnceLock;

use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Layer, Registry};

use serde::Deserialize;

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

// ---------------------------------------------------------------------------------------
// The `[logging]` section.
// ---------------------------------------------------------------------------------------

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct RawLogging {
    /// `json` (one object per line, for log shippers) or `pretty`.
    pub format: Option<String>,
    /// tracing filter, e.g. `info` or `warden=debug,info`. RUST_LOG overrides it.
    pub level: Option<String>,
    /// One log line per finished request.
    pub access_log: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
}

#[derive(Debug, Clone)]
pub struct LoggingConfig {
    pub format: LogFormat,
    pub level: String,
    pub access_log: bool,
}

impl LoggingConfig {
    /// Validates `[logging]`.
    pub fn from_raw(raw: RawLogging, problems: &mut Vec<String>) -> LoggingConfig {
        let format = match raw.format.as_deref().unwrap_or("json") {
            "json" => LogFormat::Json,
            "pretty" => LogFormat::Pretty,
            other => {
                problems.push(format!("logging.format: `{other}` must be `json` or `pretty`"));
                LogFormat::Json
            }
        };
        let level = raw.level.unwrap_or_else(|| "info".into());
        if tracing_subscriber::EnvFilter::try_new(&level).is_err() {
            problems.push(format!("logging.level: `{level}` is not a valid filter"));
        }
        LoggingConfig { format, level, access_log: raw.access_log.unwrap_or(true) }
    }
}
