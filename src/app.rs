//! `App`: the state shared by every request, built once from a validated [`Config`].

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::sync::Semaphore;
/// Every subsystem's metrics and the registry they are registered in (served on the
/// admin listener's `/metrics`).
pub struct Metrics {
    registry: prometheus_client::registry::Registry,
    pub requests: RequestMetrics,
    pub upstream: crate::upstream::UpstreamMetrics,
    pub connections: crate::net::ConnectionMetrics,
    pub audit: crate::events::audit::AuditMetrics,
    pub redis: crate::limits::shared::SharedMetrics,
    pub limits: crate::limits::LimitMetrics,
    pub detect: crate::detector::DetectMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = prometheus_client::registry::Registry::with_prefix("warden");
        let m = Metrics {
            requests: RequestMetrics::default(),
            upstream: Default::default(),
            connections: Default::default(),
            audit: Default::default(),
            redis: Default::default(),
            limits: Default::default(),
            detect: Default::default(),
            registry: prometheus_client::registry::Registry::default(),
        };
        m.requests.register(&mut registry);
        m.upstream.register(&mut registry);
        m.connections.register(&mut registry);
        m.audit.register(&mut registry);
        m.redis.register(&mut registry);
        m.limits.register(&mut registry);
        m.detect.register(&mut registry);
        Metrics { registry, ..m }
    }

    /// Registers the failed-authentication throttle's counters.
    pub fn register_auth_failures(&mut self, throttle: &crate::auth_failures::AuthThrottle) {
        throttle.register(&mut self.registry);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

use crate::accounts::Accounts;
use crate::auth::{Account, AccountStatus};
use crate::config::Config;
use crate::events::audit::{AuditSink, AuditSlot};
use crate::events::metrics::{RequestMetrics, RouteStatus};
use crate::events::RequestEvent;
use crate::limits::gcra::{Rate, Window};
use crate::limits::{LimitSpec, Limiter, Slot};
use crate::store::Store;
use crate::tiers::Tier;
use crate::tokens::TokenCounter;
use crate::upstream::Upstream;

pub struct App {
    /// The configuration in force: replaced as a whole by [`App::reload`], read once per
    /// request (a request keeps the version it started with).
    config: ArcSwap<Config>,
    /// The file the configuration came from (reloads read it again).
    config_path: Option<std::path::PathBuf>,
    pub accounts: Accounts,
    pub upstream: Upstream,
    /// `[upstream.anthropic]`: the Anthropic routes' provider, when it is not `upstream`.
    pub upstream_anthropic: Option<Upstream>,
    pub metrics: Metrics,
    pub tokens: TokenCounter,
    /// The audit log: every request's record goes here, off the request path.
    pub audit: AuditSink,
    /// The extraction detector, beside the request path.
    pub detector: crate::detector::Detector,
    /// Rate limits and quotas, local or shared through Redis.
    pub limiter: Arc<Limiter>,
    /// One permit per request being handled; when none is left warden sheds load (503)
    /// instead of queueing without bound.
    pub in_flight: Arc<Semaphore>,
    /// Set when shutdown begins; `/readyz` then answers 503 so load balancers move on.
    pub shutting_down: AtomicBool,
    /// Failed authentications per client address, on each listener.
    pub auth_failures: Arc<crate::auth_failures::AuthThrottle>,
}

impl App {
    /// Opens the store, loads accounts and keys into memory, builds the upstream client.
    pub async fn build(config: Config) -> anyhow::Result<App> {
        App::build_from(config, None).await
    }

    /// [`App::build`] for a configuration read from `path`, which [`App::reload`] reads again.
    pub async fn build_from(config: Config, path: Option<std::path::PathBuf>) -> anyhow::Result<App> {
        let store = Store::open(&config.storage.backend).await?;
        let tiers = config.tiers.iter().map(|t| t.name.clone()).collect();
        let loaded_at = crate::clock::now_millis();
        let accounts = Accounts::load(store, tiers).await?;
        if let Some(every) = config.storage.sync_interval {
            spawn_replica_sync(crate::accounts::ReplicaSync::new(accounts.clone(), loaded_at), every);
        }
        let mut metrics = Metrics::new();
        let audit = AuditSink::start(&config.audit, metrics.audit.clone()).await?;
        let shared = match &config.redis {
            Some(redis) => Some(crate::limits::shared::SharedLimits::start(
                redis.clone(),
                metrics.redis.clone(),
                config.server.workers,
            )?),
            None => None,
        };
        let limiter = Arc::new(Limiter {
            local: crate::limits::local::LocalLimits::new(Some(Arc::new(accounts.store().clone()))),
            shared,
        });
        spawn_limit_housekeeping(limiter.clone(), &config, metrics.limits.accounts.clone());
        let detector = crate::detector::Detector::start(
            config.detection.clone(),
            accounts.clone(),
            Arc::new(accounts.store().clone()),
            metrics.detect.clone(),
        )
        .await?;
        let auth_failures = Arc::new(crate::auth_failures::AuthThrottle::new(
            config.server.auth_failures_per_minute,
            config.server.auth_failure_burst,
        ));
        metrics.register_auth_failures(&auth_failures);
        spawn_auth_housekeeping(&auth_failures);
        Ok(App {
            auth_failures,
            detector,
            limiter,
            audit,
            upstream: Upstream::new(&config.upstream, config.server.workers, metrics.upstream.connections.clone()),
            upstream_anthropic: Upstream::anthropic(
                &config.upstream,
                config.server.workers,
                metrics.upstream.connections.clone(),
            ),
            in_flight: Arc::new(Semaphore::new(config.server.max_in_flight)),
            metrics,
            tokens: TokenCounter::new(),
            shutting_down: AtomicBool::new(false),
            accounts,
            config: ArcSwap::from_pointee(config),
            config_path: path,
        })
    }

    /// The upstream a dialect's routes go to.
    pub fn upstream_for(&self, dialect: crate::llm::Dialect) -> &Upstream {
        match (dialect, &self.upstream_anthropic) {
            (crate::llm::Dialect::Anthropic, Some(u)) => u,
            _ => &self.upstream,
        }
    }

    /// The configuration in force now.
    pub fn config(&self) -> Arc<Config> {
        self.config.load_full()
    }

    /// Reads the configuration file again and applies what can change while running:
    /// tiers (limits, policy, models), trusted proxies, the body size limit, logging, the
    /// audit capture mode and redaction, and the detector's thresholds, actions and
    /// allow-list. What needs a restart (listeners, workers, upstream, storage, Redis,
    /// audit files and queue, the detector on or off) keeps its running value and is
    /// reported. An invalid file changes nothing.
    pub fn reload(&self) -> Result<crate::config::Reloaded, crate::settings::ConfigErrors> {
        let Some(path) = &self.config_path else {
            return Err(crate::settings::ConfigErrors(vec!["this warden was not started from a config file".into()]));
        };
        let new = Config::load(path)?;
        let old = self.config();
        let (merged, report) = crate::config::merge_reloadable(&old, new);
        if report.applied.is_empty() {
            return Ok(report);
        }
        self.accounts.set_tiers(merged.tiers.iter().map(|t| t.name.clone()).collect());
        self.audit.reconfigure(&merged.audit);
        self.detector.reconfigure(merged.detection.clone());
        crate::telemetry::set_level(&merged.logging.level);
        self.config.store(Arc::new(merged));
        Ok(report)
    }

    /// Records a finished request: usage totals, metrics, access log, audit log.
    pub fn record(&self, event: RequestEvent, route: &'static str, slot: Option<AuditSlot>) {
        let m = &self.metrics;
        let m = &m.requests;
        m.requests.get_or_create(&RouteStatus { route, status: event.status }).inc();
        m.route(route).request_duration.observe(event.latency.as_secs_f64());
        if let Some(u) = event.usage {
            m.prompt_tokens.inc_by(u.prompt_tokens);
            m.completion_tokens.inc_by(u.completion_tokens);
            if let Some(account) = event.account_id.as_deref().and_then(|id| self.accounts.directory().account(id)) {
                use std::sync::atomic::Ordering::Relaxed;
                account.usage.prompt_tokens.fetch_add(u.prompt_tokens, Relaxed);
                account.usage.completion_tokens.fetch_add(u.completion_tokens, Relaxed);
            }
        }
        if self.config.load().logging.access_log {
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
                decision = event.decision.as_str(),
                ending = event.ending.as_str(),
                reason = event.reason.as_deref().unwrap_or(""),
                "request finished"
            );
        }
        let event = Arc::new(event);
        self.detector.submit(&event);
        self.audit.submit(slot, event);
    }

    /// Stops what runs beside the request path, after the server has drained: the audit
    /// writer flushes everything, then the store closes.
    pub async fn shutdown(&self) {
        self.limiter.local.save_quotas().await;
        if let Some(shared) = &self.limiter.shared {
            // Give background settlements a moment to reach Redis.
            for _ in 0..20 {
                if shared.pending() == 0 {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
        self.audit.shutdown().await;
        self.accounts.store().close().await;
    }
}

impl App {
    /// The tier an account is on in `config` (the first configured tier if its tier was
    /// removed from the config since).
    pub fn tier_of<'c>(config: &'c Config, account: &Account) -> &'c Tier {
        let name = account.tier();
        config.tier(&name).unwrap_or(&config.tiers[0])
    }

    /// The account's concurrency limit, if it has one (tier and overrides; throttling
    /// scales rates, not concurrency).
    pub fn concurrency_limit(tier: &Tier, account: &Account) -> Option<u64> {
        account.limits().max_concurrent.or(tier.limits.max_concurrent)
    }

    /// The limits that apply to one request of `account` for `model`: the tier's, with
    /// the account's overrides, reduced by the tier's throttle factor while the account
    /// is throttled, plus the tier's per-model limits.
    pub fn limit_spec(&self, account: &Account, tier: &Tier, model: Option<&str>) -> LimitSpec {
        let limits = tier.limits.with(&account.limits());
        let factor = if account.status() == AccountStatus::Throttled { tier.throttle_factor } else { 1.0 };
        let scale = |v: u64| ((v as f64 * factor).floor() as u64).max(1);
        let mut rates = crate::limits::Rates::new();
        if let Some(rpm) = limits.requests_per_minute {
            rates.push((Slot::Requests, Rate::per_minute(scale(rpm), tier.burst.map(scale))));
        }
        if let Some(tpm) = limits.tokens_per_minute {
            rates.push((Slot::Tokens, Rate::per_minute(scale(tpm), None)));
        }
        if let Some(m) = model.and_then(|m| tier.models.iter().find(|l| l.name == m)) {
            let name: Arc<str> = Arc::from(m.name.as_str());
            if let Some(rpm) = m.requests_per_minute {
                rates.push((Slot::ModelRequests(name.clone()), Rate::per_minute(scale(rpm), None)));
            }
            if let Some(tpm) = m.tokens_per_minute {
                rates.push((Slot::ModelTokens(name), Rate::per_minute(scale(tpm), None)));
            }
        }
        let mut quotas = crate::limits::Quotas::new();
        if let Some(d) = limits.tokens_per_day {
            quotas.push((Window::Day, d));
        }
        if let Some(m) = limits.tokens_per_month {
            quotas.push((Window::Month, m));
        }
        LimitSpec { rates, max_concurrent: limits.max_concurrent, quotas }
    }
}

/// Picks up what other replicas change in the shared store, every `every`.
fn spawn_replica_sync(mut sync: crate::accounts::ReplicaSync, every: std::time::Duration) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if sync.store_closed() {
                return;
            }
            match sync.run().await {
                Ok(s) if s != Default::default() => {
                    tracing::debug!(accounts = s.accounts, keys = s.keys, "changes from other replicas applied")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "replica sync failed; retrying"),
            }
        }
    });
}

/// Forgets idle addresses of the failed-authentication throttle every minute.
fn spawn_auth_housekeeping(throttle: &Arc<crate::auth_failures::AuthThrottle>) {
    let weak = Arc::downgrade(throttle);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
        tick.tick().await;
        loop {
            tick.tick().await;
            let Some(t) = weak.upgrade() else { return };
            t.housekeeping();
        }
    });
}

/// Evicts idle limiter state every minute and saves quota counters periodically.
fn spawn_limit_housekeeping(
    limiter: Arc<Limiter>,
    config: &Config,
    accounts_gauge: prometheus_client::metrics::gauge::Gauge,
) {
    let idle = config.limits.idle_eviction;
    let save_every = config.limits.quota_save_interval;
    let weak = Arc::downgrade(&limiter);
    drop(limiter);
    tokio::spawn(async move {
        let mut save = tokio::time::interval(save_every);
        let mut evict = tokio::time::interval(std::time::Duration::from_secs(60).min(idle));
        loop {
            tokio::select! {
                _ = save.tick() => {
                    let Some(l) = weak.upgrade() else { return };
                    l.local.save_quotas().await;
                }
                _ = evict.tick() => {
                    let Some(l) = weak.upgrade() else { return };
                    // Save first: only saved counters may be evicted.
                    l.local.save_quotas().await;
                    l.local.evict_idle(idle, crate::clock::now_ns());
                    accounts_gauge.set(l.local.len() as i64);
                }
            }
        }
    });
}
