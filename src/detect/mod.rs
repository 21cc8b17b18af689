//! Extraction and distillation detection.
//!
//! The [`Engine`] is a pure, single-threaded state machine: it is fed [`Observation`]s
//! (one per request, carrying the request's own timestamp) and returns alert changes. The
//! same engine runs live beside the proxy ([`live`]) and offline over audit files
//! ([`backtest`]), so an operator can try a policy on past traffic and get exactly what
//! the live detector would have done.
//!
//! - [`features`]: per-request features (pure functions of the body).
//! - [`sketch`]: bounded sketches (HyperLogLog, Space-Saving, SimHash, rings).
//! - [`account`]: per-account state (≤ 4 KiB) and the explainable signals read off it.
//! - [`cluster`]: cross-account groups (shared template, subnet, synchronised activity).

pub mod persist;
pub use persist::{AlertStore, StoreFailure};
pub mod account;
pub mod backtest;
pub mod cluster;
pub mod config;
pub mod features;
pub mod population;
pub mod sketch;

// foldhash instead of SipHash: keys are account ids and alert ids, and every request
// looks its account up here.
use foldhash::{HashMap, HashMapExt, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use account::{round3, AccountState};
use cluster::{ClusterIndex, Finding};
use config::{Action, DetectConfig};
use features::RequestFeatures;
use population::Population;
use sketch::fnv1a;

use crate::clock::rfc3339_millis;

/// What the detector learns from one request.
#[derive(Debug, Clone)]
pub struct Observation<'a> {
    pub ts_ms: i64,
    pub request_id: &'a str,
    pub account_id: &'a str,
    pub client_ip: Option<IpAddr>,
    pub user_agent: Option<&'a str>,
    pub path: &'a str,
    pub status: u16,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub features: RequestFeatures,
}

/// An alert as the admin API, the CLI and `warden backtest` show it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Alert {
    pub id: String,
    /// The account, or every member of a coordinated cluster.
    pub account_ids: Vec<String>,
    pub kind: AlertKind,
    /// From the score.
    pub severity: Severity,
    pub score: f64,
    pub status: AlertStatus,
    /// Event time of the request that raised the alert.
    pub created_at: String,
    /// Event time of the last change (more members, higher score).
    pub updated_at: String,
    /// The action the policy chose for the score.
    pub action: Action,
    /// False when the action was not applied (shadow mode).
    pub enforced: bool,
    pub evidence: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<String>,
}

/// What an alert is about. Persisted by name (serde, and the store's `kind` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// One account's traffic looks like extraction or distillation.
    Extraction,
    /// A group of accounts acting together.
    CoordinatedCluster,
}

impl AlertKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            AlertKind::Extraction => "extraction",
            AlertKind::CoordinatedCluster => "coordinated_cluster",
        }
    }
}

/// An alert's severity, from its score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Low,
    Medium,
    High,
}

impl Severity {
    pub const fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
        }
    }
}

/// Where an alert stands. Persisted by name (serde, and the store's `status` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertStatus {
    Open,
    /// Closed by a reviewer's verdict.
    Resolved,
    /// Closed by the engine: absorbed into an older cluster alert (`evidence.merged_into`).
    Merged,
}

impl AlertStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            AlertStatus::Open => "open",
            AlertStatus::Resolved => "resolved",
            AlertStatus::Merged => "merged",
        }
    }
}

/// A reviewer's verdict on an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Confirmed,
    /// Restores the accounts and suppresses the same alert for them for a while.
    FalsePositive,
}

impl Verdict {
    pub const fn as_str(self) -> &'static str {
        match self {
            Verdict::Confirmed => "confirmed",
            Verdict::FalsePositive => "false_positive",
        }
    }

    /// The verdict named `s` (as the admin API takes it), if any.
    pub fn parse(s: &str) -> Option<Verdict> {
        match s {
            "confirmed" => Some(Verdict::Confirmed),
            "false_positive" => Some(Verdict::FalsePositive),
            _ => None,
        }
    }
}

fn severity(score: f64) -> Severity {
    if score >= 0.85 {
        Severity::High
    } else if score >= 0.65 {
        Severity::Medium
    } else {
        Severity::Low
    }
}

/// A new or changed alert, and what should happen to its accounts.
#[derive(Debug, Clone)]
pub struct AlertChange {
    pub alert: Alert,
    pub created: bool,
    pub action: Action,
    /// Accounts that joined the alert with this change (all of them when created).
    pub new_members: Vec<String>,
}

struct OpenAlert {
    alert: Alert,
    action: Action,
    members: HashSet<Arc<str>>,
}

/// The detector's state over all accounts.
pub struct Engine {
    cfg: Arc<DetectConfig>,
    accounts: HashMap<Arc<str>, AccountState>,
    clusters: ClusterIndex,
    /// The active accounts' sketches, rebuilt every cluster pass.
    population: Population,
    open: HashMap<String, OpenAlert>,
    /// Open per-account alert of each account.
    account_alert: HashMap<Arc<str>, String>,
    /// Open cluster alert of each member.
    cluster_alert: HashMap<Arc<str>, String>,
    /// Accounts whose alerts are suppressed until the given event time.
    suppressed: HashMap<Arc<str>, i64>,
    last_pass_ms: i64,
    /// The latest event time seen.
    now_ms: i64,
    seq: u64,
}

impl Engine {
    /// Scores with `cfg` from the next event on; every account's state is kept.
    pub fn reconfigure(&mut self, cfg: Arc<DetectConfig>) {
        self.cfg = cfg;
    }

    pub fn new(cfg: Arc<DetectConfig>) -> Engine {
        Engine {
            cfg,
            accounts: HashMap::new(),
            clusters: ClusterIndex::default(),
            population: Population::default(),
            open: HashMap::new(),
            account_alert: HashMap::new(),
            cluster_alert: HashMap::new(),
            suppressed: HashMap::new(),
            last_pass_ms: i64::MIN,
            now_ms: 0,
            seq: 0,
        }
    }

    pub fn config(&self) -> &DetectConfig {
        &self.cfg
    }

    /// Accounts currently tracked.
    pub fn tracked(&self) -> usize {
        self.accounts.len()
    }

    pub fn account(&self, id: &str) -> Option<&AccountState> {
        self.accounts.get(id)
    }

    /// Every tracked account's standing now, in id order: score, every signal, where it
    /// stands among the active accounts (for `warden backtest --accounts`).
    pub fn account_reports(&self) -> Vec<Value> {
        let mut ids: Vec<&Arc<str>> = self.accounts.keys().collect();
        ids.sort();
        ids.into_iter()
            .map(|id| {
                let s = &self.accounts[id];
                let a = s.assess(&self.cfg, self.now_ms, &self.population);
                json!({
                    "account_id": &**id,
                    "score": round3(a.score),
                    "corroborated": a.corroborated,
                    "confident": a.confident,
                    "requests": s.total,
                    "signals": a.signals,
                    "population": self.population.evidence(s, self.now_ms),
                })
            })
            .collect()
    }

    /// The active population as of the last pass.
    pub fn population(&self) -> &Population {
        &self.population
    }

    /// Every link between tracked accounts as of now (for `warden backtest --links`: the
    /// false-link rate of each link kind, measured on labelled traffic).
    pub fn links(&self) -> Vec<cluster::LinkRecord> {
        self.clusters.all_links(&self.accounts, &self.cfg, &self.population, self.now_ms)
    }

    /// Bytes of per-account state, heap included (for the memory bench and metrics).
    pub fn memory_bytes(&self) -> usize {
        self.accounts.iter().map(|(k, v)| k.len() + 16 + v.memory_bytes()).sum::<usize>()
            + self.accounts.capacity() * (std::mem::size_of::<Arc<str>>() + 8)
    }

    /// Folds one request in; returns the alerts it created or changed.
    pub fn observe(&mut self, obs: &Observation<'_>) -> Vec<AlertChange> {
        let mut changes = Vec::new();
        // Counting a prompt's tokens (Anthropic's `count_tokens`) generates nothing: no
        // request of the account's in the harvesting sense, and a client that counts
        // before each call must not look twice as busy, twice as fast.
        if self.cfg.allow_accounts.contains(obs.account_id) || obs.path.ends_with("/count_tokens") {
            return changes;
        }
        self.now_ms = self.now_ms.max(obs.ts_ms);
        let key: Arc<str> = match self.accounts.get_key_value(obs.account_id) {
            Some((k, _)) => k.clone(),
            None => Arc::from(obs.account_id),
        };
        let state = self.accounts.entry(key.clone()).or_default();
        state.observe(obs);
        self.clusters.observe(&key, state, obs.ts_ms);
        if state.total >= self.cfg.min_requests as u64 {
            let verdict = state.score(&self.cfg, obs.ts_ms, &self.population);
            state.score = verdict.score as f32;
            let action = match (verdict.corroborated, verdict.confident) {
                (false, _) => Action::Observe,
                (true, true) => self.cfg.action_for(verdict.score),
                // Weaker evidence opens a review alert; acting needs confidence.
                (true, false) => self.cfg.action_for(verdict.score).min(Action::Alert),
            };
            // One open alert per account or cluster: a cluster member's evidence goes to
            // the cluster alert.
            let in_cluster = self.cluster_alert.contains_key(&key);
            if action >= Action::Alert && !in_cluster && !self.is_suppressed(&key, obs.ts_ms) {
                let state = &self.accounts[&key];
                let assessment = state.assess(&self.cfg, obs.ts_ms, &self.population);
                let mut evidence = account_evidence(state, &assessment);
                evidence["population"] = self.population.evidence(state, obs.ts_ms);
                if let Some(c) = self.raise_account(&key, assessment.score, action, evidence, obs.ts_ms) {
                    changes.push(c);
                }
            }
        }
        let interval = self.cfg.cluster_interval.as_millis() as i64;
        if self.last_pass_ms == i64::MIN {
            self.last_pass_ms = obs.ts_ms;
        } else if obs.ts_ms - self.last_pass_ms >= interval {
            self.last_pass_ms = obs.ts_ms;
            self.evict(obs.ts_ms);
            self.population.rebuild(self.accounts.values(), obs.ts_ms);
            let findings = self.clusters.find(&self.accounts, &self.cfg, &self.population, obs.ts_ms);
            for f in findings {
                changes.extend(self.raise_cluster(f, obs.ts_ms));
            }
        }
        changes
    }

    fn is_suppressed(&self, account: &str, ts_ms: i64) -> bool {
        self.suppressed.get(account).is_some_and(|&until| ts_ms < until)
    }

    /// A new open alert raised at `ts_ms`, its id seeded by its first account.
    fn new_alert(
        &mut self,
        account_ids: Vec<String>,
        kind: AlertKind,
        score: f64,
        action: config::Action,
        evidence: Value,
        ts_ms: i64,
    ) -> Alert {
        let at = rfc3339_millis(ts_ms);
        Alert {
            id: self.next_id(&account_ids[0], ts_ms),
            account_ids,
            kind,
            severity: severity(score),
            score,
            status: AlertStatus::Open,
            created_at: at.clone(),
            updated_at: at,
            action,
            enforced: self.cfg.mode == config::Mode::Enforce,
            evidence,
            verdict: None,
            note: None,
            resolved_by: None,
            resolved_at: None,
        }
    }

    fn next_id(&mut self, seed: &str, ts_ms: i64) -> String {
        self.seq += 1;
        let h = fnv1a(format!("{seed}/{ts_ms}/{}", self.seq).as_bytes());
        format!("alr_{h:016x}")
    }

    fn raise_account(
        &mut self,
        account: &Arc<str>,
        score: f64,
        action: Action,
        evidence: Value,
        ts_ms: i64,
    ) -> Option<AlertChange> {
        let score = round3(score);
        if let Some(id) = self.account_alert.get(account) {
            let open = self.open.get_mut(id).expect("indexed alert is open");
            if action > open.action || score >= open.alert.score + self.cfg.rescore_step {
                open.action = open.action.max(action);
                open.alert.score = score.max(open.alert.score);
                open.alert.severity = severity(open.alert.score);
                open.alert.action = open.action;
                open.alert.evidence = evidence;
                open.alert.updated_at = rfc3339_millis(ts_ms);
                return Some(AlertChange {
                    alert: open.alert.clone(),
                    created: false,
                    action: open.action,
                    new_members: Vec::new(),
                });
            }
            return None;
        }
        let alert = self.new_alert(vec![account.to_string()], AlertKind::Extraction, score, action, evidence, ts_ms);
        let id = alert.id.clone();
        self.account_alert.insert(account.clone(), id.clone());
        self.open
            .insert(id, OpenAlert { alert: alert.clone(), action, members: HashSet::from_iter([account.clone()]) });
        Some(AlertChange { alert, created: true, action, new_members: vec![account.to_string()] })
    }

    fn raise_cluster(&mut self, finding: Finding, ts_ms: i64) -> Vec<AlertChange> {
        if finding.score < self.cfg.cluster_min_score {
            return Vec::new();
        }
        let members: Vec<Arc<str>> = finding.members.into_iter().filter(|m| !self.is_suppressed(m, ts_ms)).collect();
        if members.len() < self.cfg.cluster_min_accounts {
            return Vec::new();
        }
        // Acting on a whole group needs confidence; weaker evidence opens a review alert.
        let action =
            if finding.confident { self.cfg.action_for(finding.score).max(Action::Alert) } else { Action::Alert };
        let samples: Vec<Value> = members
            .iter()
            .take(3)
            .filter_map(|m| self.accounts.get(m).map(|s| json!({"account_id": &**m, "samples": s.samples()})))
            .collect();
        let mut evidence = finding.evidence;
        evidence["samples"] = Value::Array(samples);
        let score = finding.score;
        // Same operator as the open cluster alerts any member is already in: the oldest
        // of them absorbs the group (and the others, which are closed as merged).
        let mut existing: Vec<String> = Vec::new();
        for m in &members {
            if let Some(id) = self.cluster_alert.get(m) {
                if !existing.contains(id) {
                    existing.push(id.clone());
                }
            }
        }
        existing.sort_by(|a, b| self.open[a].alert.created_at.cmp(&self.open[b].alert.created_at).then(a.cmp(b)));
        if let Some(id) = existing.first().cloned() {
            let mut changes = Vec::new();
            let mut absorbed: Vec<Arc<str>> = Vec::new();
            for other in &existing[1..] {
                let mut gone = self.open.remove(other).expect("indexed alert is open");
                absorbed.extend(gone.members.iter().cloned());
                gone.alert.status = AlertStatus::Merged;
                gone.alert.evidence["merged_into"] = json!(id);
                gone.alert.updated_at = rfc3339_millis(ts_ms);
                changes.push(AlertChange {
                    alert: gone.alert,
                    created: false,
                    action: gone.action,
                    new_members: vec![],
                });
            }
            let open = self.open.get_mut(&id).expect("indexed alert is open");
            let mut new_members: Vec<Arc<str>> = Vec::new();
            for m in members.iter().chain(absorbed.iter()) {
                if open.members.insert(m.clone()) && !absorbed.contains(m) {
                    new_members.push(m.clone());
                }
                self.cluster_alert.insert(m.clone(), id.clone());
            }
            let grew = !new_members.is_empty() || !absorbed.is_empty();
            if !grew && action <= open.action && score < open.alert.score + self.cfg.rescore_step {
                return changes;
            }
            let mut ids: Vec<String> = open.members.iter().map(|m| m.to_string()).collect();
            ids.sort();
            open.alert.account_ids = ids;
            open.action = open.action.max(action);
            open.alert.score = score.max(open.alert.score);
            open.alert.severity = severity(open.alert.score);
            open.alert.action = open.action;
            open.alert.evidence = evidence;
            open.alert.updated_at = rfc3339_millis(ts_ms);
            changes.push(AlertChange {
                alert: open.alert.clone(),
                created: false,
                action: open.action,
                new_members: new_members.iter().map(|m| m.to_string()).collect(),
            });
            return changes;
        }
        let account_ids = members.iter().map(|m| m.to_string()).collect();
        let alert = self.new_alert(account_ids, AlertKind::CoordinatedCluster, score, action, evidence, ts_ms);
        let id = alert.id.clone();
        for m in &members {
            self.cluster_alert.insert(m.clone(), id.clone());
        }
        let new_members = alert.account_ids.clone();
        self.open.insert(id, OpenAlert { alert: alert.clone(), action, members: members.into_iter().collect() });
        vec![AlertChange { alert, created: true, action, new_members }]
    }

    /// Closes an open alert. A `false_positive` verdict suppresses alerts for its accounts
    /// for the configured period (from `now_ms`).
    pub fn resolve(&mut self, alert_id: &str, false_positive: bool, now_ms: i64) -> bool {
        let Some(open) = self.open.remove(alert_id) else { return false };
        for m in &open.members {
            if self.account_alert.get(m).is_some_and(|id| id == alert_id) {
                self.account_alert.remove(m);
            }
            if self.cluster_alert.get(m).is_some_and(|id| id == alert_id) {
                self.cluster_alert.remove(m);
            }
            if false_positive {
                let until = now_ms + self.cfg.suppress_after_false_positive.as_millis() as i64;
                self.suppressed.insert(m.clone(), until);
            }
        }
        true
    }

    /// Re-opens alerts known from before a restart, so they keep being deduplicated.
    pub fn restore(&mut self, alert: Alert) {
        // An open alert's action is at least `alert`.
        let action = alert.action.max(Action::Alert);
        let members: HashSet<Arc<str>> = alert.account_ids.iter().map(|m| Arc::from(m.as_str())).collect();
        for m in &members {
            if alert.kind == AlertKind::CoordinatedCluster {
                self.cluster_alert.insert(m.clone(), alert.id.clone());
            } else {
                self.account_alert.insert(m.clone(), alert.id.clone());
            }
        }
        self.open.insert(alert.id.clone(), OpenAlert { alert, action, members });
    }

    /// Suppresses alerts for an account until `until_ms` (restored false positives).
    pub fn suppress(&mut self, account: &str, until_ms: i64) {
        self.suppressed.insert(Arc::from(account), until_ms);
    }

    /// Forgets accounts idle past the configured period, and the longest idle beyond the
    /// account cap.
    fn evict(&mut self, now_ms: i64) {
        let cutoff = now_ms - self.cfg.idle_evict.as_millis() as i64;
        self.accounts.retain(|_, s| s.last_ms >= cutoff);
        if self.accounts.len() > self.cfg.max_accounts {
            let mut by_age: Vec<(i64, Arc<str>)> = self.accounts.iter().map(|(k, s)| (s.last_ms, k.clone())).collect();
            by_age.sort();
            let excess = self.accounts.len() - self.cfg.max_accounts;
            for (_, k) in by_age.into_iter().take(excess) {
                self.accounts.remove(&k);
            }
        }
        self.clusters.expire(cutoff);
        self.suppressed.retain(|_, &mut until| until > now_ms);
    }
}

fn account_evidence(state: &AccountState, a: &account::Assessment) -> Value {
    json!({
        "signals": a.signals.iter().filter(|s| s.fired).collect::<Vec<_>>(),
        "requests": state.total,
        "prompt_tokens": state.prompt_tokens_total,
        "completion_tokens": state.completion_tokens_total,
        "distinct_prompts_estimate": state.distinct_prompts().round(),
        "first_seen": rfc3339_millis(state.first_ms),
        "last_seen": rfc3339_millis(state.last_ms),
        "reasoning_pattern": state.reasoning_label,
        "samples": state.samples(),
    })
}

#[cfg(test)]
mod tests;
