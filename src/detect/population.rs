//! The active population: how every account compares with the others now.
//!
//! Fixed thresholds hold on the traffic they were chosen on; a platform whose typical
//! account sends ten times more requests needs other ones. Every pass the engine rebuilds
//! these sketches from the accounts active in the last 24 hours (bounded: a fixed-size
//! histogram per feature, whatever the number of accounts), and reads each account's
//! features against them: its share of the population above it ("top 0.1% of active
//! accounts for fresh single-turn prompts a day"), and, for the content test, a robust
//! z-score (median and MAD of all active accounts, which a minority of harvesters cannot
//! move).

use serde::Serialize;
use serde_json::{json, Value};

use super::account::{round3, AccountState};
use super::features::EMBED_DIMS;
use super::sketch::Histogram;

/// Accounts active within this long of the pass count as the population.
const ACTIVE_MS: i64 = 24 * 3_600_000;
/// Text requests an account needs before its centroid counts.
const MIN_TEXT: u32 = 10;
/// Below this many accounts, the population says nothing.
pub const MIN_POPULATION: u64 = 30;

/// A feature read against the population.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PopFeature {
    RequestsPerDay,
    FreshSingleTurnPerDay,
    OutputTokensPerDay,
    RequestsLastHour,
    ReasoningShare,
    SoftLabelShare,
    IpChurn,
    OutputRatio,
}

impl PopFeature {
    pub const ALL: [PopFeature; 8] = [
        PopFeature::RequestsPerDay,
        PopFeature::FreshSingleTurnPerDay,
        PopFeature::OutputTokensPerDay,
        PopFeature::RequestsLastHour,
        PopFeature::ReasoningShare,
        PopFeature::SoftLabelShare,
        PopFeature::IpChurn,
        PopFeature::OutputRatio,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PopFeature::RequestsPerDay => "requests_per_day",
            PopFeature::FreshSingleTurnPerDay => "fresh_single_turn_prompts_per_day",
            PopFeature::OutputTokensPerDay => "output_tokens_per_day",
            PopFeature::RequestsLastHour => "requests_last_hour",
            PopFeature::ReasoningShare => "reasoning_share",
            PopFeature::SoftLabelShare => "soft_label_share",
            PopFeature::IpChurn => "ip_churn",
            PopFeature::OutputRatio => "output_ratio",
        }
    }

    fn histogram(self) -> Histogram {
        match self {
            PopFeature::RequestsPerDay | PopFeature::FreshSingleTurnPerDay | PopFeature::RequestsLastHour => {
                Histogram::log(0.5, 200_000.0)
            }
            PopFeature::OutputTokensPerDay => Histogram::log(10.0, 1e9),
            PopFeature::OutputRatio => Histogram::log(0.001, 1000.0),
            PopFeature::ReasoningShare | PopFeature::SoftLabelShare | PopFeature::IpChurn => {
                Histogram::linear(0.0, 1.0 + 1e-9)
            }
        }
    }

    fn of(self, s: &AccountState, now_ms: i64) -> f64 {
        match self {
            PopFeature::RequestsPerDay => s.requests_day(now_ms) as f64,
            PopFeature::FreshSingleTurnPerDay => s.fresh_day(now_ms) as f64,
            PopFeature::OutputTokensPerDay => s.output_day(now_ms) as f64,
            PopFeature::RequestsLastHour => s.requests_hour(now_ms) as f64,
            PopFeature::ReasoningShare => s.reasoning_share(),
            PopFeature::SoftLabelShare => s.soft_share(),
            PopFeature::IpChurn => s.ip_churn().unwrap_or(0.0),
            PopFeature::OutputRatio => s.output_ratio(),
        }
    }
}

/// The sketches of the active population, rebuilt every pass.
#[derive(Clone)]
pub struct Population {
    /// Accounts counted at the last rebuild.
    pub accounts: u64,
    features: Vec<Histogram>,
    /// Per embedding dimension, the active accounts' centroids (for the median).
    dims: Vec<Histogram>,
    /// The population's reference centroid: the coordinate-wise median of the active
    /// accounts' centroids (a minority cannot drag it).
    pub reference: [f32; EMBED_DIMS],
    /// Distance of each active account's centroid to the reference, and its median and
    /// MAD.
    distance: Histogram,
    deviation: Histogram,
    pub distance_median: f64,
    pub distance_mad: f64,
}

impl Default for Population {
    fn default() -> Self {
        Population {
            accounts: 0,
            features: PopFeature::ALL.iter().map(|f| f.histogram()).collect(),
            dims: (0..EMBED_DIMS).map(|_| Histogram::linear(-1.0, 1.0)).collect(),
            reference: [0.0; EMBED_DIMS],
            distance: Histogram::linear(0.0, 2.0),
            deviation: Histogram::linear(0.0, 2.0),
            distance_median: 0.0,
            distance_mad: 0.0,
        }
    }
}

impl Population {
    /// Rebuilds every sketch from the accounts active at `now_ms`.
    pub fn rebuild<'a>(&mut self, accounts: impl Iterator<Item = &'a AccountState> + Clone, now_ms: i64) {
        for h in self.features.iter_mut().chain(self.dims.iter_mut()) {
            h.clear();
        }
        self.distance.clear();
        self.deviation.clear();
        let active = accounts.filter(move |s| s.last_ms >= now_ms - ACTIVE_MS && s.total >= 5);
        let mut n = 0;
        for s in active.clone() {
            n += 1;
            for (h, f) in self.features.iter_mut().zip(PopFeature::ALL) {
                h.add(f.of(s, now_ms));
            }
            if let Some(c) = s.centroid(MIN_TEXT) {
                for (h, v) in self.dims.iter_mut().zip(c) {
                    h.add(v as f64);
                }
            }
        }
        self.accounts = n;
        for (r, h) in self.reference.iter_mut().zip(&self.dims) {
            *r = h.quantile(0.5).unwrap_or(0.0) as f32;
        }
        for s in active.clone() {
            if let Some(d) = self.distance_of(s) {
                self.distance.add(d);
            }
        }
        self.distance_median = self.distance.quantile(0.5).unwrap_or(0.0);
        for s in active {
            if let Some(d) = self.distance_of(s) {
                self.deviation.add((d - self.distance_median).abs());
            }
        }
        self.distance_mad = self.deviation.quantile(0.5).unwrap_or(0.0);
    }

    /// Euclidean distance of an account's centroid to the reference.
    pub fn distance_of(&self, s: &AccountState) -> Option<f64> {
        let c = s.centroid(MIN_TEXT)?;
        Some(c.iter().zip(&self.reference).map(|(a, b)| ((a - b) as f64).powi(2)).sum::<f64>().sqrt())
    }

    /// Robust z-score of the account's content distance: (d - median) / (1.4826 MAD).
    /// None until the population is large enough to say.
    pub fn content_z(&self, s: &AccountState) -> Option<f64> {
        if self.distance.len() < MIN_POPULATION {
            return None;
        }
        let d = self.distance_of(s)?;
        let scale = (1.4826 * self.distance_mad).max(0.02);
        Some((d - self.distance_median) / scale)
    }

    /// Share of active accounts above the account for `f` (None while too few).
    pub fn share_above(&self, f: PopFeature, s: &AccountState, now_ms: i64) -> Option<f64> {
        if self.accounts < MIN_POPULATION {
            return None;
        }
        let i = PopFeature::ALL.iter().position(|&x| x == f).expect("every feature has a histogram");
        Some(self.features[i].share_above(f.of(s, now_ms)))
    }

    /// Evidence: where the account stands among the active accounts, for every feature
    /// in which it is in the top 5%.
    pub fn evidence(&self, s: &AccountState, now_ms: i64) -> Value {
        let mut out = Vec::new();
        for f in PopFeature::ALL {
            let Some(share) = self.share_above(f, s, now_ms) else { continue };
            if share <= 0.05 {
                out.push(json!({
                    "feature": f.as_str(),
                    "value": round3(f.of(s, now_ms)),
                    "top_share": round3(share.max(0.0)),
                    "text": format!("top {} of {} active accounts", percent(share, self.accounts), self.accounts),
                }));
            }
        }
        if let Some(z) = self.content_z(s) {
            out.push(json!({"feature": "content_distance_z", "value": round3(z),
                            "text": format!("content {:.1} robust SDs from the population's", z)}));
        }
        Value::Array(out)
    }
}

/// "0.1%", never "0%": the account itself is in the population.
fn percent(share: f64, n: u64) -> String {
    let floor = 1.0 / n.max(1) as f64;
    let p = share.max(floor) * 100.0;
    if p >= 1.0 {
        format!("{p:.0}%")
    } else if p >= 0.1 {
        format!("{p:.1}%")
    } else {
        format!("{p:.2}%")
    }
}
