//! Per-account state: fixed-size sketches updated by each event, and the signals read off
//! them. Counters are halved every `HALF_LIFE` requests so shares follow recent behaviour
//! (an account that turns to harvesting after months of normal use is seen quickly).

use std::collections::VecDeque;
use std::net::IpAddr;

use serde::Serialize;

use super::config::{DetectConfig, SignalGroup, SignalName};
use super::features::RequestFeatures;
use super::features::EMBED_DIMS;
use super::population::Population;
use super::sketch::{fnv1a, BucketRing, Comoment, Hll, MinuteSet, Novelty, RecentRing, SpaceSaving, SumRing, Welford};
use super::Observation;

/// Requests between halvings of the share counters.
const HALF_LIFE: u32 = 512;
/// Gaps longer than this are pauses between sessions, not cadence.
const MAX_GAP_MS: i64 = 3_600_000;
/// Evidence samples kept per account.
const SAMPLES: usize = 3;

/// One request shown to a reviewer as an example.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    pub ts_ms: i64,
    pub request_id: String,
    pub excerpt: String,
    /// Why this request is an example: the reasoning pattern, `soft_labels`, `template`.
    pub marks: Vec<&'static str>,
}

/// The /24 (IPv4) or /48 (IPv6) network of an address, hashed.
pub fn subnet_of(ip: IpAddr) -> u64 {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            fnv1a(&[4, o[0], o[1], o[2]]).max(1)
        }
        IpAddr::V6(v6) => {
            let mut b = [6u8; 7];
            b[1..].copy_from_slice(&v6.octets()[..6]);
            fnv1a(&b).max(1)
        }
    }
}

#[derive(Clone, Default)]
pub struct AccountState {
    pub first_ms: i64,
    pub last_ms: i64,
    /// Requests seen (never halved).
    pub total: u64,
    pub prompt_tokens_total: u64,
    pub completion_tokens_total: u64,
    /// Share counters (halved every HALF_LIFE requests).
    n: u32,
    text_n: u32,
    /// Lone requests: single-turn, or with a history the account did not send.
    single_turn: u32,
    /// Single-turn requests as the bodies say (histories taken at their word).
    raw_single_turn: u32,
    reasoning: u32,
    soft: u32,
    repeat: u32,
    near_dup: u32,
    /// Prompts under a template already seen at least 3 times (any of the tracked ones:
    /// harvesters rotate several).
    templated: u32,
    fixed_system: u32,
    prompt_tokens: u64,
    completion_tokens: u64,
    pub templates: SpaceSaving<12>,
    systems: SpaceSaving<4>,
    recent: RecentRing<32>,
    distinct: Hll,
    /// ln(inter-arrival gap in seconds).
    gaps: Welford,
    per_minute: BucketRing<60>,
    per_hour: BucketRing<24>,
    pub active_minutes: MinuteSet,
    pub subnets: [u64; 4],
    pub user_agents: [u64; 2],
    pub reasoning_label: Option<&'static str>,
    samples: VecDeque<Sample>,
    /// The account's last score (for `risk_score`).
    pub score: f32,
    /// Distinct (not repeated verbatim) single-turn prompts per hour.
    fresh_per_hour: BucketRing<24>,
    /// Completion tokens per hour.
    output_per_hour: SumRing<24>,
    /// Requests with a client address, and those from a network not among the last four.
    ip_n: u32,
    new_subnet: u32,
    /// Moving average of the prompts' embeddings (`features::embed`), and how many
    /// prompts it has seen (capped).
    centroid: [f32; EMBED_DIMS],
    centroid_n: u32,
    /// The client's fingerprint (model, max_tokens, temperature, stream, user agent).
    pub fingerprints: SpaceSaving<2>,
    /// ln(prompt tokens) against ln(completion tokens) of answered requests.
    io: Comoment,
}

/// Requests in the last 24 hours for person-paced corroboration.
const PACED_MIN_PER_DAY: u32 = 30;
/// Weight of the newest prompt in the centroid once it has seen this many.
const CENTROID_WINDOW: u32 = 64;

/// A signal as evaluated for one account, with what it takes to fire.
#[derive(Debug, Clone, Serialize)]
pub struct Signal {
    pub name: &'static str,
    pub group: SignalGroup,
    pub value: f64,
    /// Where the signal starts to count, and where it counts in full.
    pub threshold: f64,
    pub full_at: f64,
    pub weight: f64,
    /// weight × strength: what it adds to (or, for benign signals, removes from) the score.
    pub contribution: f64,
    pub fired: bool,
}

/// An account's score and the signals behind it.
#[derive(Debug, Clone)]
pub struct Assessment {
    pub score: f64,
    pub signals: Vec<Signal>,
    /// At least one intent signal and one automation signal fired (an alert needs both).
    pub corroborated: bool,
    /// Strong enough to act on (strip, throttle, block), not only to alert.
    pub confident: bool,
}

/// An account's score, without the evidence.
#[derive(Debug, Clone, Copy)]
pub struct Verdict {
    pub score: f64,
    pub corroborated: bool,
    pub confident: bool,
}

impl AccountState {
    /// Folds one request into the state.
    pub fn observe(&mut self, obs: &Observation<'_>) {
        let f: &RequestFeatures = &obs.features;
        if self.total == 0 {
            self.first_ms = obs.ts_ms;
        } else {
            let gap = obs.ts_ms - self.last_ms;
            if gap > 0 && gap <= MAX_GAP_MS {
                self.gaps.push(((gap as f64) / 1000.0).max(0.05).ln());
            } else if gap == 0 {
                self.gaps.push((0.05f64).ln());
            }
        }
        self.last_ms = self.last_ms.max(obs.ts_ms);
        self.total += 1;
        self.n += 1;
        let minute = (obs.ts_ms.max(0) / 60_000) as u32;
        self.per_minute.add(minute);
        self.per_hour.add(minute / 60);
        self.active_minutes.add(minute);
        if let Some(ip) = obs.client_ip {
            let net = subnet_of(ip);
            self.ip_n += 1;
            if !self.subnets.contains(&net) {
                self.new_subnet += 1;
            }
            push_recent(&mut self.subnets, net);
        }
        if let Some(ua) = obs.user_agent {
            push_recent(&mut self.user_agents, fnv1a(ua.as_bytes()).max(1));
        }
        let hour = minute / 60;
        self.output_per_hour.add(hour, obs.completion_tokens);
        if obs.completion_tokens > 0 && obs.prompt_tokens > 0 {
            self.io.push((obs.prompt_tokens as f64).ln(), (obs.completion_tokens as f64).ln());
        }
        if f.has_text {
            let mut fp = super::sketch::FNV_OFFSET;
            for part in [
                f.model_hash,
                f.max_tokens.unwrap_or(u64::MAX),
                f.temperature.map(|t| (t * 100.0).round() as i64 as u64).unwrap_or(u64::MAX),
                f.stream as u64,
                obs.user_agent.map(|u| fnv1a(u.as_bytes())).unwrap_or(0),
            ] {
                fp = super::sketch::fnv1a_extend(fp, &part.to_le_bytes());
            }
            self.fingerprints.insert(fp.max(1));
            let w = 1.0 / (self.centroid_n + 1).min(CENTROID_WINDOW) as f32;
            for (c, &e) in self.centroid.iter_mut().zip(&f.embed) {
                *c += (e as f32 / 127.0 - *c) * w;
            }
            self.centroid_n = (self.centroid_n + 1).min(1 << 20);
        }
        self.prompt_tokens += obs.prompt_tokens;
        self.completion_tokens += obs.completion_tokens;
        self.prompt_tokens_total += obs.prompt_tokens;
        self.completion_tokens_total += obs.completion_tokens;
        if f.soft_labels() {
            self.soft += 1;
        }
        if f.has_text {
            self.text_n += 1;
            if f.single_turn {
                self.raw_single_turn += 1;
            }
            // A request counts as continuing a conversation only when the account held
            // it: its first or previous user message, or (an agent's loop) its prompt
            // itself, was sent recently. Small talk made up in front of a new question
            // is a lone request in disguise.
            let held = f.history.iter().any(|&h| self.recent.contains(h)) || self.recent.contains(f.prompt_hash);
            let lone = f.single_turn || !held;
            if lone {
                self.single_turn += 1;
            }
            let mut marks = Vec::new();
            if let Some(label) = f.reasoning {
                self.reasoning += 1;
                self.reasoning_label = Some(label);
                marks.push(label);
            }
            if f.soft_labels() {
                marks.push("soft_labels");
            }
            let novelty = self.recent.push(f.prompt_hash, f.simhash);
            match novelty {
                Novelty::Repeat => self.repeat += 1,
                Novelty::NearDuplicate => self.near_dup += 1,
                Novelty::New => {}
            }
            if novelty != Novelty::Repeat && lone {
                self.fresh_per_hour.add(hour);
            }
            self.distinct.insert(f.prompt_hash);
            // A template is fixed text around varying input: re-sending the same prompt is
            // a rerun, not a fill.
            if novelty != Novelty::Repeat && f.template_keys.iter().any(|&k| k != 0 && self.templates.count_of(k) >= 3)
            {
                self.templated += 1;
            }
            for k in f.template_keys {
                self.templates.insert(k);
            }
            if let Some((top, c)) = self.templates.top() {
                if f.template_keys.contains(&top) && c >= 3 {
                    marks.push("template");
                }
            }
            // A persona that asks for reasoning or training data is no product's.
            if f.system_hash != 0 && f.system_chars >= super::features::PERSONA_CHARS && !f.system_elicits {
                self.systems.insert(f.system_hash);
                if self.systems.top().is_some_and(|(k, _)| k == f.system_hash) {
                    self.fixed_system += 1;
                }
            }
            // Keep the most telling recent requests as examples.
            if !marks.is_empty() || self.samples.len() < SAMPLES {
                if self.samples.len() == SAMPLES {
                    let drop = self.samples.iter().position(|s| s.marks.is_empty()).unwrap_or(0);
                    self.samples.remove(drop);
                }
                self.samples.push_back(Sample {
                    ts_ms: obs.ts_ms,
                    request_id: obs.request_id.chars().take(64).collect(),
                    excerpt: f.excerpt.clone(),
                    marks,
                });
            }
        }
        if self.n >= HALF_LIFE {
            self.halve();
        }
    }

    fn halve(&mut self) {
        for c in [
            &mut self.n,
            &mut self.text_n,
            &mut self.single_turn,
            &mut self.raw_single_turn,
            &mut self.reasoning,
            &mut self.soft,
            &mut self.repeat,
            &mut self.near_dup,
            &mut self.templated,
            &mut self.fixed_system,
            &mut self.ip_n,
            &mut self.new_subnet,
        ] {
            *c /= 2;
        }
        self.io.halve();
        self.fingerprints.halve();
        self.prompt_tokens /= 2;
        self.completion_tokens /= 2;
        self.templates.halve();
        self.systems.halve();
        self.gaps.halve();
    }

    fn share(&self, c: u32, of: u32) -> f64 {
        if of == 0 {
            0.0
        } else {
            c as f64 / of as f64
        }
    }

    /// Distinct prompts seen (HyperLogLog estimate).
    pub fn distinct_prompts(&self) -> f64 {
        self.distinct.estimate()
    }

    pub fn top_template(&self) -> Option<(u64, f64)> {
        self.templates.top().map(|(k, c)| (k, self.share(c, self.text_n).min(1.0)))
    }

    /// Share of prompts that fill a template the account has used before.
    pub fn templated_share(&self) -> f64 {
        self.share(self.templated, self.text_n)
    }

    /// Share of prompts filling the account's one most used template, counted from half
    /// of its prompts (nothing) to 80% (in full). A product or a batch job fills one
    /// template with nearly everything it sends; a person who wraps some questions in a
    /// habit, or a harvester rotating several wrappers, keeps its breadth.
    pub fn one_template_share(&self) -> f64 {
        self.top_template().map(|(_, s)| s * ramp(s, 0.5, 0.8)).unwrap_or(0.0)
    }

    pub fn reasoning_share(&self) -> f64 {
        self.share(self.reasoning, self.text_n)
    }
    /// Share of lone requests: single-turn, or continuing a conversation the account
    /// never held.
    pub fn single_turn_share(&self) -> f64 {
        self.share(self.single_turn, self.text_n)
    }
    /// Share of single-turn requests as the bodies say.
    pub fn raw_single_turn_share(&self) -> f64 {
        self.share(self.raw_single_turn, self.text_n)
    }
    pub fn output_ratio(&self) -> f64 {
        self.completion_tokens as f64 / self.prompt_tokens.max(1) as f64
    }
    pub fn soft_share(&self) -> f64 {
        self.share(self.soft, self.n)
    }
    /// Requests in the 24 hours up to `now_ms`.
    pub fn requests_day(&self, now_ms: i64) -> u32 {
        self.per_hour.sum(hour_of(now_ms))
    }
    /// Requests in the 60 minutes up to `now_ms`.
    pub fn requests_hour(&self, now_ms: i64) -> u32 {
        self.per_minute.sum((now_ms.max(0) / 60_000) as u32)
    }
    /// Fresh single-turn prompts in the 24 hours up to `now_ms`.
    pub fn fresh_day(&self, now_ms: i64) -> u32 {
        self.fresh_per_hour.sum(hour_of(now_ms))
    }
    /// Completion tokens in the 24 hours up to `now_ms`.
    pub fn output_day(&self, now_ms: i64) -> u64 {
        self.output_per_hour.sum(hour_of(now_ms))
    }
    /// Share of requests from a network not among the account's last four (None below 12
    /// requests with an address).
    pub fn ip_churn(&self) -> Option<f64> {
        if self.ip_n < 12 {
            None
        } else {
            Some(self.share(self.new_subnet, self.ip_n))
        }
    }
    /// The prompts' embedding centroid, once it has seen `min` prompts.
    pub fn centroid(&self, min: u32) -> Option<[f32; EMBED_DIMS]> {
        (self.centroid_n >= min).then_some(self.centroid)
    }
    /// The client's most used fingerprint and its share of the account's text requests.
    pub fn fingerprint(&self) -> Option<(u64, f64)> {
        self.fingerprints.top().map(|(k, c)| (k, self.share(c, self.text_n).min(1.0)))
    }
    /// How far completions follow the prompts' length (Pearson's r of their logs; 0
    /// until the prompts' lengths vary).
    pub fn tracks_input(&self) -> Option<f64> {
        if self.io.n < 10.0 || self.io.sd_x() < 0.15 {
            None
        } else {
            Some(self.io.r())
        }
    }
    /// Share of prompts filling a template whose output does not follow its input.
    pub fn generative_template_share(&self) -> f64 {
        self.templated_share() * self.not_transformation()
    }
    /// Wide and shallow, generative coverage (the `breadth` signal's value).
    pub fn breadth(&self) -> f64 {
        // Single-turn, fresh prompts that are neither fills of one template nor end-user
        // input behind a product's fixed system prompt, answered at length.
        let fresh = 1.0 - self.share(self.repeat + self.near_dup, self.text_n);
        self.single_turn_share()
            * fresh
            * (1.0 - self.one_template_share())
            * (1.0 - self.share(self.fixed_system, self.text_n))
            * self.expansion()
            * self.not_transformation()
    }
    /// Generative expansion: 0 when the model gives back less than it is given, 1 when it
    /// writes well beyond it (wide coverage is only worth harvesting when it is).
    fn expansion(&self) -> f64 {
        ((self.output_ratio() - 0.5) / (1.2 - 0.5)).clamp(0.0, 1.0)
    }
    /// 1 when the outputs do not follow the inputs' length, 0 when they closely do.
    fn not_transformation(&self) -> f64 {
        match self.tracks_input() {
            Some(r) => 1.0 - ((r - 0.5) / 0.3).clamp(0.0, 1.0),
            None => 1.0,
        }
    }

    /// The signal values (raw, before thresholds), by name.
    pub fn value(&self, name: SignalName, now_ms: i64, pop: &Population) -> Option<f64> {
        let minute = (now_ms.max(0) / 60_000) as u32;
        let novel = 1.0 - self.share(self.repeat, self.text_n);
        Some(match name {
            SignalName::ReasoningElicitation => {
                if self.text_n == 0 {
                    return None;
                }
                self.reasoning_share()
            }
            SignalName::SoftLabels => self.share(self.soft, self.n) * novel,
            SignalName::TemplateReuse => {
                if self.text_n == 0 {
                    return None;
                }
                // A template whose output follows its input's length is a product working
                // on its users' material (translation, extraction), not a harvest.
                self.templated_share() * novel * self.not_transformation()
            }
            SignalName::Breadth => {
                if self.text_n == 0 {
                    return None;
                }
                self.breadth()
            }
            SignalName::LongOutputs => {
                if self.completion_tokens == 0 {
                    return None;
                }
                self.output_ratio()
            }
            SignalName::Volume => self.per_minute.sum(minute) as f64,
            SignalName::RegularCadence => {
                if self.gaps.n < 10.0 {
                    return None;
                }
                self.gaps.sd()
            }
            SignalName::AroundTheClock => self.per_hour.active(minute / 60) as f64,
            SignalName::Conversation => {
                if self.text_n == 0 {
                    return None;
                }
                1.0 - self.single_turn_share()
            }
            SignalName::LowOutputs => {
                if self.completion_tokens == 0 && self.prompt_tokens == 0 {
                    return None;
                }
                self.output_ratio()
            }
            SignalName::FixedSystemPrompt => {
                if self.text_n == 0 {
                    return None;
                }
                self.share(self.fixed_system, self.text_n)
            }
            SignalName::Reruns => {
                if self.text_n == 0 {
                    return None;
                }
                self.share(self.repeat, self.text_n)
            }
            SignalName::DailyBreadth => {
                // Distinct single-turn prompts a day, answered at length, that are not
                // users' input behind a product's persona nor work on the user's material.
                self.fresh_day(now_ms) as f64
                    * (1.0 - self.one_template_share())
                    * (1.0 - self.share(self.fixed_system, self.text_n))
                    * self.expansion()
                    * self.not_transformation()
            }
            SignalName::DailyOutput => self.output_day(now_ms) as f64,
            SignalName::IpChurn => self.ip_churn()?,
            SignalName::ContentShift => {
                let z = pop.content_z(self)?;
                // A template or a product's persona moves the centroid by itself; those
                // have signals of their own.
                z * (1.0 - self.one_template_share()) * (1.0 - self.share(self.fixed_system, self.text_n))
            }
            SignalName::TracksInput => self.tracks_input()?,
        })
    }

    /// Scores the account at event time `now_ms`, with every signal as evidence.
    pub fn assess(&self, cfg: &DetectConfig, now_ms: i64, pop: &Population) -> Assessment {
        let mut signals = Vec::with_capacity(SignalName::ALL.len());
        let verdict = self.evaluate(cfg, now_ms, pop, |name, p, value, strength, contribution| {
            signals.push(Signal {
                name: name.as_str(),
                group: name.group(),
                value: round3(value),
                threshold: p.threshold,
                full_at: p.full_at,
                weight: p.weight,
                contribution: round3(contribution),
                fired: strength > 0.0,
            });
        });
        Assessment { score: verdict.score, signals, corroborated: verdict.corroborated, confident: verdict.confident }
    }

    /// The score and how sure it is, as [`AccountState::assess`] computes them, without
    /// the evidence (the detector scores on every request, and needs the evidence only
    /// when it raises an alert).
    pub fn score(&self, cfg: &DetectConfig, now_ms: i64, pop: &Population) -> Verdict {
        self.evaluate(cfg, now_ms, pop, |_, _, _, _, _| {})
    }

    /// Sums the signals' contributions; `each` sees every signal that counts.
    fn evaluate(
        &self,
        cfg: &DetectConfig,
        now_ms: i64,
        pop: &Population,
        mut each: impl FnMut(SignalName, crate::detect::config::SignalParams, f64, f64, f64),
    ) -> Verdict {
        let mut score = 0.0;
        let (mut intents, mut automation) = (0u32, false);
        let (mut full_automation, mut benign) = (false, false);
        let (mut full_content_intent, mut long_in_full, mut coverage_in_full) = (false, false, false);
        for &name in SignalName::ALL {
            let p = cfg.signal(name);
            if p.weight == 0.0 {
                continue;
            }
            let Some(value) = self.value(name, now_ms, pop) else { continue };
            let strength = p.strength(value);
            let contribution = p.weight * strength;
            score += contribution;
            let fired = strength >= 0.5;
            match name.group() {
                // Long outputs and the content test qualify a score but never corroborate
                // one: they say how much is taken or how unusual it is, not what for.
                SignalGroup::Intent if fired && !matches!(name, SignalName::ContentShift | SignalName::LongOutputs) => {
                    intents += 1;
                    full_content_intent |= strength >= 0.99 && name != SignalName::TemplateReuse;
                }
                SignalGroup::Intent if name == SignalName::LongOutputs => long_in_full |= strength >= 0.99,
                SignalGroup::Automation if fired => {
                    automation = true;
                    full_automation |= strength >= 0.99;
                    coverage_in_full |= name == SignalName::DailyBreadth && strength >= 0.99;
                }
                SignalGroup::Benign if fired => benign = true,
                _ => {}
            }
            each(name, p, value, strength, contribution);
        }
        // At a person's pace: two kinds of intent, one of them in full and not a template,
        // on a steady daily volume. Outputs long in full count as the second kind here (a
        // person-paced harvester takes long answers to broad questions). Enough for a
        // review alert, never for an action.
        let paced = !automation
            && intents + long_in_full as u32 >= 2
            && full_content_intent
            && self.requests_day(now_ms) >= PACED_MIN_PER_DAY
            && cfg.enabled(super::config::Family::DayScale);
        // Coverage at scale: hundreds of fresh, broad, single-turn questions a day (the
        // day-scale breadth in full, which already leaves out templates, personas and
        // work on the user's material), answered at length in full. No one reads that
        // many answers; it corroborates a review alert by itself, never an action
        // (acting still counts intents as above).
        let coverage = coverage_in_full && long_in_full && cfg.enabled(super::config::Family::DayScale);
        let corroborated = (intents > 0 && automation) || paced || coverage;
        Verdict {
            score: score.clamp(0.0, 1.0),
            corroborated,
            // Acting on an account takes more than an alert: automation, two kinds of
            // intent (or one other than a template in full with automation in full), and no
            // strong benign explanation. A template alone is a review's call: products
            // fill templates too.
            confident: corroborated
                && automation
                && !benign
                && (intents >= 2 || (full_content_intent && full_automation)),
        }
    }

    pub fn samples(&self) -> Vec<Sample> {
        self.samples.iter().cloned().collect()
    }

    /// Requests counted since the last halving (the weight behind the shares).
    pub fn weight(&self) -> u32 {
        self.n
    }

    /// Bytes this state occupies, heap included.
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.active_minutes.heap_bytes()
            + self.samples.capacity() * std::mem::size_of::<Sample>()
            + self
                .samples
                .iter()
                .map(|s| s.excerpt.capacity() + s.request_id.capacity() + s.marks.capacity() * 16)
                .sum::<usize>()
    }
}

fn push_recent<const N: usize>(slots: &mut [u64; N], v: u64) {
    if let Some(i) = slots.iter().position(|&s| s == v) {
        slots[..=i].rotate_right(1);
    } else {
        slots.rotate_right(1);
        slots[0] = v;
    }
}

/// 0 at `lo`, 1 at `hi`, linear between.
pub(super) fn ramp(v: f64, lo: f64, hi: f64) -> f64 {
    ((v - lo) / (hi - lo)).clamp(0.0, 1.0)
}

fn hour_of(now_ms: i64) -> u32 {
    (now_ms.max(0) / 3_600_000) as u32
}

pub fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}
