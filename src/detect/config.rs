//! The `[detection]` section: mode, thresholds and weights of every signal, the action
//! policy, allow-list and cluster settings. Defaults are documented in
//! `config/warden.toml` and `docs/detection.md`.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// No detector at all.
    Off,
    /// Alerts are raised and recorded; accounts are never touched.
    Shadow,
    /// Alerts are raised and the action policy applied.
    Enforce,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Score kept (visible as `risk_score`), nothing raised.
    Observe,
    /// An alert for a reviewer.
    Alert,
    /// Alert, and soft-label parameters (`logprobs`, `top_logprobs`, `logit_bias`, `n`)
    /// are stripped from the account's requests.
    Strip,
    /// Alert, strip, and the account's limits are cut by its tier's `throttle_factor`.
    Throttle,
    /// Alert, and the account is blocked pending review (403 `account_blocked`).
    Block,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Observe => "observe",
            Action::Alert => "alert",
            Action::Strip => "strip",
            Action::Throttle => "throttle",
            Action::Block => "block",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SignalGroup {
    /// What is being asked for looks like harvesting.
    Intent,
    /// How it is asked looks like a machine at scale.
    Automation,
    /// What legitimate use looks like; subtracts from the score.
    Benign,
}

macro_rules! signals {
    ($( $variant:ident = $name:literal, $group:ident, $threshold:expr, $full:expr, $weight:expr, $doc:literal; )*) => {
        /// Every per-account signal. Values, thresholds and weights: see `docs/detection.md`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum SignalName { $( $variant ),* }
        impl SignalName {
            pub const ALL: &'static [SignalName] = &[$( SignalName::$variant ),*];
            pub fn as_str(self) -> &'static str { match self { $( SignalName::$variant => $name ),* } }
            pub fn group(self) -> SignalGroup { match self { $( SignalName::$variant => SignalGroup::$group ),* } }
            pub fn describe(self) -> &'static str { match self { $( SignalName::$variant => $doc ),* } }
            pub fn parse(s: &str) -> Option<SignalName> { match s { $( $name => Some(SignalName::$variant), )* _ => None } }
            pub fn default_params(self) -> SignalParams {
                match self { $( SignalName::$variant => SignalParams { threshold: $threshold, full_at: $full, weight: $weight } ),* }
            }
        }
    };
}

signals! {
    ReasoningElicitation = "reasoning_elicitation", Intent, 0.3, 0.7, 0.35,
        "share of prompts asking for step-by-step reasoning or the model's chain of thought (many languages)";
    SoftLabels = "soft_labels", Intent, 0.2, 0.6, 0.35,
        "share of requests asking for logprobs/top_logprobs, logit_bias or n > 1, on prompts that are not repeats";
    TemplateReuse = "template_reuse", Intent, 0.4, 0.8, 0.35,
        "share of prompts filling a template (fixed prefix, suffix or list layout) the account used at least 3 times before, on prompts that are not repeats";
    Breadth = "breadth", Intent, 0.7, 0.9, 0.2,
        "single-turn share x fresh-prompt share x (1 - templated share) x (1 - fixed system prompt share): wide, shallow coverage";
    LongOutputs = "long_outputs", Intent, 1.5, 4.0, 0.2,
        "completion tokens per prompt token";
    Volume = "volume", Automation, 20.0, 90.0, 0.25,
        "requests in the last 60 minutes (event time)";
    RegularCadence = "regular_cadence", Automation, 0.9, 0.4, 0.2,
        "standard deviation of ln(inter-arrival gap) within sessions: low means machine-regular (Poisson is ~1.3, people higher)";
    AroundTheClock = "around_the_clock", Automation, 14.0, 20.0, 0.15,
        "hours with activity in the last 24 hours";
    DailyBreadth = "daily_breadth", Automation, 60.0, 240.0, 0.3,
        "distinct single-turn prompts in the last 24 hours (event time), counted as breadth counts them (not template fills, not behind a product's fixed persona, answered at length, not work on the user's material): coverage at scale, at a person's pace too";
    DailyOutput = "daily_output_tokens", Automation, 60000.0, 300000.0, 0.1,
        "completion tokens taken in the last 24 hours";
    IpChurn = "ip_churn", Automation, 0.4, 0.8, 0.25,
        "share of requests from a /24 (IPv6 /48) not among the account's last four: a proxy pool";
    ContentShift = "content_shift", Intent, 3.0, 8.0, 0.1,
        "robust z-score of the distance between the account's prompt-embedding centroid and the active population's (median/MAD of all active accounts): content unlike the platform's; never corroborates alone";
    Conversation = "conversation", Benign, 0.15, 0.5, -0.35,
        "share of requests continuing a conversation (earlier turns present)";
    LowOutputs = "low_outputs", Benign, 0.5, 0.15, -0.4,
        "completion tokens per prompt token, when low (summaries, classification: little model output is taken)";
    FixedSystemPrompt = "fixed_system_prompt", Benign, 0.5, 0.9, -0.35,
        "share of requests under the account's one long (>= 80 chars) system prompt: a product wrapping its users' input";
    Reruns = "reruns", Benign, 0.3, 0.6, -0.25,
        "share of prompts repeated verbatim from the last 32 (re-running the same prompts, e.g. parameter sweeps)";
    TracksInput = "tracks_input", Benign, 0.5, 0.8, -0.35,
        "correlation of ln(prompt tokens) and ln(completion tokens): output that follows the input's length is work on the user's material (translation, extraction, summaries)";
}

/// Families of evidence, as `disable_families` names them: the robustness matrix of
/// `eval/` switches each off in turn to see what every harvesting class depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    Reasoning,
    SoftLabels,
    Templates,
    Breadth,
    DayScale,
    Automation,
    Content,
    /// Shared subnets and proxy pools (links), and the per-account `ip_churn` signal.
    InfrastructureLinks,
    /// Shared templates and template families, client fingerprints, synchronised or
    /// complementary activity (links).
    BehaviourLinks,
}

impl Family {
    pub const ALL: &'static [Family] = &[
        Family::Reasoning,
        Family::SoftLabels,
        Family::Templates,
        Family::Breadth,
        Family::DayScale,
        Family::Automation,
        Family::Content,
        Family::InfrastructureLinks,
        Family::BehaviourLinks,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Family::Reasoning => "reasoning",
            Family::SoftLabels => "soft_labels",
            Family::Templates => "templates",
            Family::Breadth => "breadth",
            Family::DayScale => "day_scale",
            Family::Automation => "automation",
            Family::Content => "content",
            Family::InfrastructureLinks => "infrastructure_links",
            Family::BehaviourLinks => "behaviour_links",
        }
    }

    pub fn parse(s: &str) -> Option<Family> {
        Family::ALL.iter().copied().find(|f| f.as_str() == s)
    }

    /// The per-account signals of the family.
    pub fn signals(self) -> &'static [SignalName] {
        use SignalName::*;
        match self {
            Family::Reasoning => &[ReasoningElicitation],
            Family::SoftLabels => &[SoftLabels],
            Family::Templates => &[TemplateReuse],
            Family::Breadth => &[Breadth, LongOutputs],
            Family::DayScale => &[DailyBreadth, DailyOutput],
            Family::Automation => &[Volume, RegularCadence, AroundTheClock],
            Family::Content => &[ContentShift],
            Family::InfrastructureLinks => &[IpChurn],
            Family::BehaviourLinks => &[],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SignalParams {
    /// Where the signal starts to count (strength 0).
    pub threshold: f64,
    /// Where it counts in full (strength 1). May be below `threshold` for signals where
    /// lower values are more telling.
    pub full_at: f64,
    /// Added to the score at full strength (negative for benign signals).
    pub weight: f64,
}

impl SignalParams {
    pub fn strength(&self, value: f64) -> f64 {
        if self.full_at == self.threshold {
            return if (self.full_at >= self.threshold && value >= self.threshold) || value <= self.threshold {
                1.0
            } else {
                0.0
            };
        }
        ((value - self.threshold) / (self.full_at - self.threshold)).clamp(0.0, 1.0)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Band {
    pub min_score: f64,
    pub action: Action,
}

#[derive(Debug, Clone)]
pub struct DetectConfig {
    pub mode: Mode,
    /// Requests an account must have made before it is scored.
    pub min_requests: u32,
    /// Every signal's parameters, indexed by `SignalName as usize` (read per request).
    pub signals: Vec<SignalParams>,
    /// Score bands to actions, ascending by `min_score`.
    pub actions: Vec<Band>,
    pub allow_accounts: HashSet<String>,
    /// Accounts without events for this long (event time) are forgotten.
    pub idle_evict: Duration,
    /// Hard cap on accounts tracked; beyond it the longest idle are evicted.
    pub max_accounts: usize,
    /// After a `false_positive` verdict, the same alert is not raised for the account for
    /// this long.
    pub suppress_after_false_positive: Duration,
    /// Smallest group of accounts reported as a coordinated cluster.
    pub cluster_min_accounts: usize,
    /// How often (event time) cross-account groups are examined.
    pub cluster_interval: Duration,
    /// Score a cluster needs to be reported.
    pub cluster_min_score: f64,
    /// Events waiting for the live detector; beyond it events are skipped (and counted).
    pub queue_capacity: usize,
    /// Bytes of request and completion text the queue may hold: large prompts arriving
    /// faster than the detector reads them would otherwise fill memory long before the
    /// queue is full by count. Beyond it events are skipped like on a full queue.
    pub queue_bytes: usize,
    /// An open alert is re-emitted when its score rose by at least this much.
    pub rescore_step: f64,
    /// Families of evidence switched off (`disable_families`): their signals weigh
    /// nothing, their link kinds are not drawn.
    pub disabled: Vec<Family>,
}

impl DetectConfig {
    pub fn signal(&self, name: SignalName) -> SignalParams {
        self.signals[name as usize]
    }

    pub fn enabled(&self, family: Family) -> bool {
        !self.disabled.contains(&family)
    }

    /// The action of the highest band `score` reaches.
    pub fn action_for(&self, score: f64) -> Action {
        self.actions.iter().rev().find(|b| score >= b.min_score).map(|b| b.action).unwrap_or(Action::Observe)
    }
}

impl Default for DetectConfig {
    fn default() -> Self {
        let mut problems = Vec::new();
        validate(RawDetection::default(), &mut problems)
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct RawSignal {
    pub threshold: Option<f64>,
    pub full_at: Option<f64>,
    pub weight: Option<f64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct RawBand {
    pub min_score: Option<f64>,
    pub action: Option<Action>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct RawDetection {
    pub mode: Option<Mode>,
    pub min_requests: Option<u32>,
    pub allow_accounts: Option<Vec<String>>,
    pub idle_evict_hours: Option<u64>,
    pub max_accounts: Option<usize>,
    pub false_positive_suppress_hours: Option<u64>,
    pub cluster_min_accounts: Option<usize>,
    pub cluster_interval_secs: Option<u64>,
    pub cluster_min_score: Option<f64>,
    pub queue_capacity: Option<usize>,
    pub queue_bytes: Option<usize>,
    pub rescore_step: Option<f64>,
    pub disable_families: Option<Vec<String>>,
    pub actions: Option<Vec<RawBand>>,
    pub signals: Option<BTreeMap<String, RawSignal>>,
}

pub fn default_bands() -> Vec<Band> {
    vec![
        Band { min_score: 0.5, action: Action::Alert },
        Band { min_score: 0.7, action: Action::Throttle },
        Band { min_score: 0.85, action: Action::Block },
    ]
}

pub fn validate(raw: RawDetection, problems: &mut Vec<String>) -> DetectConfig {
    let mut signals: Vec<SignalParams> = SignalName::ALL.iter().map(|n| n.default_params()).collect();
    for (key, s) in raw.signals.unwrap_or_default() {
        match SignalName::parse(&key) {
            Some(name) => {
                let d = name.default_params();
                let p = SignalParams {
                    threshold: s.threshold.unwrap_or(d.threshold),
                    full_at: s.full_at.unwrap_or(d.full_at),
                    weight: s.weight.unwrap_or(d.weight),
                };
                if !p.threshold.is_finite() || !p.full_at.is_finite() || !p.weight.is_finite() {
                    problems.push(format!("detection.signals.{key}: values must be finite numbers"));
                }
                signals[name as usize] = p;
            }
            None => problems.push(format!(
                "detection.signals: unknown signal `{key}` (known: {})",
                SignalName::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
            )),
        }
    }
    let actions = match raw.actions {
        None => default_bands(),
        Some(bands) => {
            let mut out = Vec::new();
            for (i, b) in bands.into_iter().enumerate() {
                match (b.min_score, b.action) {
                    (Some(min_score), Some(action)) if (0.0..=1.0).contains(&min_score) => {
                        out.push(Band { min_score, action })
                    }
                    (Some(s), Some(_)) => problems.push(format!("detection.actions[{i}].min_score: {s} not in [0, 1]")),
                    _ => problems.push(format!("detection.actions[{i}]: needs `min_score` and `action`")),
                }
            }
            out.sort_by(|a, b| a.min_score.total_cmp(&b.min_score));
            out
        }
    };
    let mut disabled = Vec::new();
    for name in raw.disable_families.unwrap_or_default() {
        match Family::parse(&name) {
            Some(f) => {
                for &s in f.signals() {
                    signals[s as usize].weight = 0.0;
                }
                disabled.push(f);
            }
            None => problems.push(format!(
                "detection.disable_families: unknown family `{name}` (known: {})",
                Family::ALL.iter().map(|f| f.as_str()).collect::<Vec<_>>().join(", ")
            )),
        }
    }
    let cluster_min_accounts = raw.cluster_min_accounts.unwrap_or(5);
    if cluster_min_accounts < 2 {
        problems.push("detection.cluster_min_accounts: must be at least 2".into());
    }
    DetectConfig {
        mode: raw.mode.unwrap_or(Mode::Enforce),
        min_requests: raw.min_requests.unwrap_or(20),
        signals,
        actions,
        allow_accounts: raw.allow_accounts.unwrap_or_default().into_iter().collect(),
        idle_evict: Duration::from_secs(raw.idle_evict_hours.unwrap_or(72) * 3600),
        max_accounts: raw.max_accounts.unwrap_or(1_000_000).max(1),
        suppress_after_false_positive: Duration::from_secs(raw.false_positive_suppress_hours.unwrap_or(168) * 3600),
        cluster_min_accounts: cluster_min_accounts.max(2),
        cluster_interval: Duration::from_secs(raw.cluster_interval_secs.unwrap_or(600).max(1)),
        cluster_min_score: raw.cluster_min_score.unwrap_or(0.5),
        queue_capacity: raw.queue_capacity.unwrap_or(65_536).max(1),
        queue_bytes: raw.queue_bytes.unwrap_or(64 << 20).max(1),
        rescore_step: raw.rescore_step.unwrap_or(0.1),
        disabled,
    }
}

/// Reads only the `[detection]` section of a config file (for `warden backtest`, which
/// needs no upstream, storage or secrets).
pub fn load_section(path: &std::path::Path) -> Result<DetectConfig, crate::settings::ConfigErrors> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| crate::settings::ConfigErrors(vec![format!("cannot read {}: {e}", path.display())]))?;
    let mut problems = Vec::new();
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        crate::settings::ConfigErrors(vec![format!("not valid TOML: {}", e.message())])
    })?;
    let raw: RawDetection = match table.get("detection") {
        Some(v) => crate::settings::section("detection", v.clone(), &mut problems),
        None => RawDetection::default(),
    };
    let cfg = validate(raw, &mut problems);
    if problems.is_empty() {
        Ok(cfg)
    } else {
        Err(crate::settings::ConfigErrors(problems))
    }
}
