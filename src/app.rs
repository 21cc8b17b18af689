//! `App`: the state shared by every request, built once from a validated [`Config`].

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::accounts::Accounts;
use crate::admin::metrics::{KindLabel, Metrics, RouteLabel, RouteStatus};
use crate::config::Config;
use crate::events::audit::{AuditSink, AuditSlot};
use crate::events::RequestEvent;
use crate::store::Store;
use crate::tokens::TokenCounter;
use crate::upstream::Upstream;

pub struct App {
    pub config: Arc<Config>,
    pub accounts: Accounts,
    pub upstream: Upstream,
    pub metrics: Metrics,
    pub tokens: TokenCounter,
    /// The audit log: every request's record goes here, off the request path.
    pub audit: AuditSink,
    /// One permit per request being handled; when none is left warden sheds load (503)
    /// instead of queueing without bound.
    pub in_flight: Arc<Semaphore>,
    /// Completion text kept per response for token estimates.
    pub capture_limit: usize,
    /// Set when shutdown begins; `/readyz` then answers 503 so load balancers move on.
    pub shutting_down: AtomicBool,
}

impl App {
    /// Opens the store, loads accounts and keys into memory, builds the upstream client.
    pub async fn build(config: Config) -> anyhow::Result<App> {
        let store = Store::open(&config.storage).await?;
        let tiers = config.tiers.iter().map(|t| t.name.clone()).collect();
        let accounts = Accounts::load(store, tiers).await?;
        let metrics = Metrics::new();
        let audit = AuditSink::start(&config.audit, metrics.audit.clone()).await?;
        Ok(App {
            audit,
            upstream: Upstream::new(&config.upstream),
            in_flight: Arc::new(Semaphore::new(config.server.max_in_flight)),
            metrics,
            tokens: TokenCounter::new(),
            capture_limit: config.audit.max_capture_bytes,
            shutting_down: AtomicBool::new(false),
            accounts,
            config: Arc::new(config),
        })
    }

    /// Records a finished request: usage totals, metrics, access log, audit log.
    pub fn record(&self, event: RequestEvent, route: &'static str, slot: Option<AuditSlot>) {
        let m = &self.metrics;
        m.requests.get_or_create(&RouteStatus { route, status: event.status }).inc();
        m.request_duration.get_or_create(&RouteLabel { route }).observe(event.latency.as_secs_f64());
        if let Some(u) = event.usage {
            m.tokens.get_or_create(&KindLabel { kind: "prompt" }).inc_by(u.prompt_tokens);
            m.tokens.get_or_create(&KindLabel { kind: "completion" }).inc_by(u.completion_tokens);
            if let Some(account) = event.account_id.as_deref().and_then(|id| self.accounts.directory().account(id)) {
                use std::sync::atomic::Ordering::Relaxed;
                account.usage.prompt_tokens.fetch_add(u.prompt_tokens, Relaxed);
                account.usage.completion_tokens.fetch_add(u.completion_tokens, Relaxed);
            }
        }
        if self.config.logging.access_log {
            tracing::info!(
                target: "warden::access",
                request_id = %event.request_id,
                account_id = event.account_id.as_deref().unwrap_or("-"),
                key_id = event.key_id.as_deref().unwrap_or("-"),
                client_ip = %event.client_ip,
                method = %event.method,
                path = %event.path,
                model = event.model.as_deref().unwrap_or("-"),
                status = event.status,
                stream = event.stream,
                latency_ms = event.latency.as_millis() as u64,
                prompt_tokens = event.usage.map(|u| u.prompt_tokens).unwrap_or(0),
                completion_tokens = event.usage.map(|u| u.completion_tokens).unwrap_or(0),
                decision = event.decision,
                ending = event.ending,
                reason = event.reason.as_deref().unwrap_or(""),
                "request finished"
            );
        }
        self.audit.submit(slot, event);
    }

    /// Stops what runs beside the request path, after the server has drained: the audit
    /// writer flushes everything, then the store closes.
    pub async fn shutdown(&self) {
        self.audit.shutdown().await;
        self.accounts.store().close().await;
    }
}
