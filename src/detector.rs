//! The detector in `serve`: the engine runs on a thread of its own, fed from a bounded
//! queue beside the request path (a full queue skips the event for detection and counts
//! it; it is still audited). Alert changes go to an async task that persists them and
//! applies the policy's action to the accounts at once.

use arc_swap::ArcSwap;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use serde::Deserialize;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use crate::accounts::{AccountError, Accounts};
use crate::auth::AccountStatus;
use crate::clock::{now_millis, rfc3339_millis};
use crate::detect::config::{Action, DetectConfig, Mode};
use crate::detect::{
    features, Alert, AlertChange, AlertStatus, AlertStore, Engine, Observation, StoreFailure, Verdict,
};
use crate::events::RequestEvent;
use crate::metrics::KindLabel;

pub const ACTOR: &str = "detector";

#[derive(Clone, Default)]
pub struct DetectMetrics {
    pub events: Counter,
    /// Events not examined because the detector's queue was full.
    pub skipped: Counter,
    pub alerts: Family<KindLabel, Counter>,
    pub actions: Family<KindLabel, Counter>,
    pub tracked_accounts: Gauge,
    pub state_bytes: Gauge,
}

impl DetectMetrics {
    pub fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register("detector_events", "Requests examined by the detector", self.events.clone());
        registry.register(
            "detector_skipped",
            "Requests not examined because the detector's queue was full (still audited)",
            self.skipped.clone(),
        );
        registry.register("detector_alerts", "Alerts raised, by kind", self.alerts.clone());
        registry.register("detector_actions", "Actions applied to accounts, by kind", self.actions.clone());
        registry.register("detector_accounts", "Accounts with detector state in memory", self.tracked_accounts.clone());
        registry.register(
            "detector_state_bytes",
            "Memory held by per-account detector state",
            self.state_bytes.clone(),
        );
    }
}

enum Msg {
    /// An event and the bytes it counts for in the queue's budget.
    Event(Arc<RequestEvent>, usize),
    Resolved {
        id: String,
        false_positive: bool,
        at_ms: i64,
    },
    /// A reloaded configuration: thresholds, weights, actions, allow-list, mode.
    Reconfigure(Arc<DetectConfig>),
}

/// A reviewer's decision on an alert.
#[derive(Debug, Clone, Deserialize)]
pub struct Resolution {
    pub verdict: Verdict,
    #[serde(default)]
    pub note: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("alert `{0}` not found")]
    NotFound(String),
    #[error("alert `{0}` is already resolved")]
    AlreadyResolved(String),
    #[error("verdict must be `confirmed` or `false_positive`")]
    BadVerdict,
    #[error(transparent)]
    Account(#[from] AccountError),
    #[error("cannot read or save the alert: {0}")]
    Store(StoreFailure),
}

pub struct Detector {
    /// Shared with the task that applies alerts' actions; replaced by a reload.
    cfg: Arc<ArcSwap<DetectConfig>>,
    /// Bytes of the events waiting in the queue (see `DetectConfig::queue_bytes`).
    queued_bytes: Arc<std::sync::atomic::AtomicUsize>,
    tx: Option<SyncSender<Msg>>,
    accounts: Accounts,
    /// Where alerts are kept (the store).
    alerts: Arc<dyn AlertStore>,
    metrics: DetectMetrics,
}

impl Detector {
    /// Starts the engine thread and the alert applier task (no thread when mode is off).
    pub async fn start(
        cfg: DetectConfig,
        accounts: Accounts,
        alerts: Arc<dyn AlertStore>,
        metrics: DetectMetrics,
    ) -> anyhow::Result<Detector> {
        let cfg = Arc::new(cfg);
        if cfg.mode == Mode::Off {
            return Ok(Detector {
                cfg: Arc::new(ArcSwap::new(cfg)),
                queued_bytes: Default::default(),
                tx: None,
                accounts,
                alerts,
                metrics,
            });
        }
        let mut engine = Engine::new(cfg.clone());
        // Open alerts keep being deduplicated across restarts; recent false positives stay
        // suppressed; `strip` actions are re-applied (they live in memory only).
        let now = now_millis();
        for alert in alerts.alerts(Some(AlertStatus::Open), None, 100_000).await.map_err(|e| anyhow::anyhow!(e))? {
            if alert.enforced && matches!(alert.action, Action::Strip | Action::Throttle | Action::Block) {
                for m in &alert.account_ids {
                    if let Some(a) = accounts.directory().account(m) {
                        a.set_strip_soft_labels(true);
                    }
                }
            }
            engine.restore(alert);
        }
        for alert in alerts.alerts(Some(AlertStatus::Resolved), None, 100_000).await.map_err(|e| anyhow::anyhow!(e))? {
            if alert.verdict == Some(Verdict::FalsePositive) {
                let at = alert.resolved_at.as_deref().and_then(crate::clock::parse_time).unwrap_or(0);
                let until = at + cfg.suppress_after_false_positive.as_millis() as i64;
                if until > now {
                    for m in &alert.account_ids {
                        engine.suppress(m, until);
                    }
                }
            }
        }
        let (tx, rx) = sync_channel(cfg.queue_capacity);
        let (changes_tx, changes_rx) = unbounded_channel();
        let directory = accounts.directory().clone();
        let m = metrics.clone();
        let queued_bytes: Arc<std::sync::atomic::AtomicUsize> = Default::default();
        let queued = queued_bytes.clone();
        std::thread::Builder::new()
            .name("warden-detect".into())
            .spawn(move || run_engine(engine, rx, changes_tx, directory, m, queued))?;
        let cfg = Arc::new(ArcSwap::new(cfg));
        tokio::spawn(apply_changes(changes_rx, accounts.clone(), alerts.clone(), cfg.clone(), metrics.clone()));
        Ok(Detector { cfg, queued_bytes, tx: Some(tx), accounts, alerts, metrics })
    }

    pub fn mode(&self) -> Mode {
        self.cfg.load().mode
    }

    /// Applies a reloaded configuration: to the actions at once, to the engine from its
    /// next event (it keeps every account's state). A detector that is off stays off.
    pub fn reconfigure(&self, cfg: DetectConfig) {
        let Some(tx) = &self.tx else { return };
        let cfg = Arc::new(cfg);
        self.cfg.store(cfg.clone());
        // Sent beside the events; should the queue be full, from a blocking thread.
        if let Err(TrySendError::Full(msg)) = tx.try_send(Msg::Reconfigure(cfg)) {
            let tx = tx.clone();
            std::thread::spawn(move || {
                let _ = tx.send(msg);
            });
        }
    }

    /// Hands a finished request to the detector. Never blocks: with the queue full the
    /// event is skipped (and counted).
    pub fn submit(&self, event: &Arc<RequestEvent>) {
        if !self.offer(event) {
            self.metrics.skipped.inc();
        }
    }

    /// Hands a request to the detector, waiting (without blocking a thread) while its
    /// queue is full: for the requests of a batch file, which arrive by the thousand and
    /// must all be seen.
    pub async fn submit_waiting(&self, event: RequestEvent) {
        let event = Arc::new(event);
        if event_bytes(&event) > self.cfg.load().queue_bytes {
            // It would never fit.
            self.metrics.skipped.inc();
            return;
        }
        while !self.offer(&event) {
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Queues the event if there is room; false when the queue is full.
    fn offer(&self, event: &Arc<RequestEvent>) -> bool {
        let Some(tx) = &self.tx else { return true };
        if event.account_id.is_none() {
            return true;
        }
        use std::sync::atomic::Ordering::Relaxed;
        let bytes = event_bytes(event);
        let budget = self.cfg.load().queue_bytes;
        if self.queued_bytes.fetch_add(bytes, Relaxed) + bytes > budget {
            self.queued_bytes.fetch_sub(bytes, Relaxed);
            return false;
        }
        match tx.try_send(Msg::Event(event.clone(), bytes)) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                self.queued_bytes.fetch_sub(bytes, Relaxed);
                false
            }
            Err(TrySendError::Disconnected(_)) => {
                self.queued_bytes.fetch_sub(bytes, Relaxed);
                true
            }
        }
    }

    pub async fn alerts(
        &self,
        status: Option<AlertStatus>,
        account: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Alert>, StoreFailure> {
        self.alerts.alerts(status, account, limit).await
    }

    pub async fn alert(&self, id: &str) -> Result<Option<Alert>, StoreFailure> {
        self.alerts.alert(id).await
    }

    /// Records a reviewer's verdict. `false_positive` restores the accounts (active, no
    /// stripping) and suppresses the same alert for them for the configured period.
    pub async fn resolve(&self, id: &str, resolution: Resolution, actor: &str) -> Result<Alert, ResolveError> {
        let false_positive = resolution.verdict == Verdict::FalsePositive;
        let mut alert = self
            .alerts
            .alert(id)
            .await
            .map_err(ResolveError::Store)?
            .ok_or_else(|| ResolveError::NotFound(id.to_string()))?;
        if alert.status == AlertStatus::Resolved {
            return Err(ResolveError::AlreadyResolved(id.to_string()));
        }
        let now = now_millis();
        alert.status = AlertStatus::Resolved;
        alert.verdict = Some(resolution.verdict);
        alert.note = resolution.note.clone();
        alert.resolved_by = Some(actor.to_string());
        alert.resolved_at = Some(rfc3339_millis(now));
        self.alerts.put_alert(&alert).await.map_err(ResolveError::Store)?;
        let why = match &resolution.note {
            Some(n) => format!("{}: {n}", resolution.verdict.as_str()),
            None => resolution.verdict.as_str().to_string(),
        };
        self.accounts
            .store()
            .record_action(actor, "resolve_alert", "alert", id, Some(&why))
            .await
            .map_err(AccountError::from)?;
        if false_positive {
            for m in &alert.account_ids {
                if let Some(a) = self.accounts.directory().account(m) {
                    a.set_strip_soft_labels(false);
                    if a.status() != AccountStatus::Active {
                        let reason = format!("alert {id} resolved as false positive");
                        self.accounts.set_status(m, AccountStatus::Active, Some(&reason), actor).await?;
                    }
                }
            }
        }
        if let Some(tx) = &self.tx {
            let _ = tx.try_send(Msg::Resolved { id: id.to_string(), false_positive, at_ms: now });
        }
        Ok(alert)
    }
}

/// What an event weighs in the queue's byte budget: its body and completion (and a
/// little for the rest).
fn event_bytes(event: &RequestEvent) -> usize {
    let body = event.request.as_ref().map_or(0, |r| {
        let decoded: usize =
            r.view.texts.iter().map(|t| if let crate::llm::Text::Owned(s) = t { s.len() } else { 0 }).sum();
        r.raw.len() + decoded
    });
    512 + body + event.completion_text.as_ref().map_or(0, String::len)
}

/// How often the engine thread looks for new events when its queue is empty.
const POLL_INTERVAL: std::time::Duration = std::time::Duration::from_millis(5);

fn run_engine(
    mut engine: Engine,
    rx: Receiver<Msg>,
    changes: UnboundedSender<AlertChange>,
    directory: Arc<crate::auth::Directory>,
    metrics: DetectMetrics,
    queued_bytes: Arc<std::sync::atomic::AtomicUsize>,
) {
    let mut n: u64 = 0;
    loop {
        // Polled rather than blocked on: a thread parked in `recv` must be woken by every
        // `try_send`, a futex call and a context switch per request on the request path.
        // Draining every few milliseconds costs the request path nothing.
        let msg = match rx.try_recv() {
            Ok(msg) => msg,
            Err(std::sync::mpsc::TryRecvError::Empty) => {
                std::thread::sleep(POLL_INTERVAL);
                continue;
            }
            Err(std::sync::mpsc::TryRecvError::Disconnected) => break,
        };
        match msg {
            Msg::Event(event, bytes) => {
                let Some(account) = event.account_id.as_deref() else { continue };
                let usage = event.usage.unwrap_or_default();
                let obs = Observation {
                    ts_ms: event.ts_ms,
                    request_id: &event.request_id,
                    account_id: account,
                    client_ip: Some(event.client_ip),
                    user_agent: event.user_agent.as_deref(),
                    path: &event.path,
                    status: event.status,
                    prompt_tokens: usage.prompt_tokens,
                    completion_tokens: usage.completion_tokens,
                    features: features::extract(&event.path, event.request.as_deref()),
                };
                metrics.events.inc();
                for c in engine.observe(&obs) {
                    let _ = changes.send(c);
                }
                if let (Some(state), Some(a)) = (engine.account(account), directory.account(account)) {
                    a.set_risk_score(state.score as f64);
                }
                drop(event);
                queued_bytes.fetch_sub(bytes, std::sync::atomic::Ordering::Relaxed);
                n += 1;
                if n % 1024 == 0 {
                    metrics.tracked_accounts.set(engine.tracked() as i64);
                    metrics.state_bytes.set(engine.memory_bytes() as i64);
                }
            }
            Msg::Resolved { id, false_positive, at_ms } => {
                engine.resolve(&id, false_positive, at_ms);
            }
            Msg::Reconfigure(cfg) => engine.reconfigure(cfg),
        }
    }
}

async fn apply_changes(
    mut rx: UnboundedReceiver<AlertChange>,
    accounts: Accounts,
    alerts: Arc<dyn AlertStore>,
    cfg: Arc<ArcSwap<DetectConfig>>,
    metrics: DetectMetrics,
) {
    while let Some(change) = rx.recv().await {
        let alert = &change.alert;
        let kind = alert.kind.as_str();
        if change.created {
            metrics.alerts.get_or_create(&KindLabel { kind }).inc();
        }
        tracing::warn!(
            target: "warden::detect",
            alert_id = %alert.id,
            kind = %alert.kind.as_str(),
            score = alert.score,
            action = %alert.action.as_str(),
            accounts = alert.account_ids.len(),
            created = change.created,
            enforced = alert.enforced,
            "detector alert"
        );
        if let Err(e) = alerts.put_alert(alert).await {
            tracing::error!(error = %e, alert_id = %alert.id, "cannot persist alert");
        }
        if cfg.load().mode != Mode::Enforce || change.action < Action::Strip {
            continue;
        }
        // Act on every member (escalations apply to those already flagged too).
        for id in &alert.account_ids {
            let Some(account) = accounts.directory().account(id) else { continue };
            let reason = format!("detector alert {} (score {:.2})", alert.id, alert.score);
            if !account.strips_soft_labels() {
                account.set_strip_soft_labels(true);
                metrics.actions.get_or_create(&KindLabel { kind: "strip" }).inc();
                let _ = accounts.store().record_action(ACTOR, "strip_params", "account", id, Some(&reason)).await;
            }
            let target = match change.action {
                Action::Block => AccountStatus::Blocked,
                Action::Throttle => AccountStatus::Throttled,
                _ => continue,
            };
            let current = account.status();
            let escalates = matches!(
                (current, target),
                (AccountStatus::Active, _) | (AccountStatus::Throttled, AccountStatus::Blocked)
            );
            if escalates {
                let kind = if target == AccountStatus::Blocked { "block" } else { "throttle" };
                metrics.actions.get_or_create(&KindLabel { kind }).inc();
                if let Err(e) = accounts.set_status(id, target, Some(&reason), ACTOR).await {
                    tracing::error!(error = %e, account_id = %id, "detector action failed");
                }
            }
        }
    }
}
