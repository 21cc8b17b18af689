//! Tiers (`[[tiers]]`): what an account's plan allows, its limits (see [`crate::limits`])
//! and its parameter policy (see [`crate::policy`]) together, validated all at once.

use std::collections::BTreeSet;

use serde::Deserialize;

use crate::limits::Limits;
use crate::policy::{ParamPolicy, ParamRule};

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct RawTier {
    /// Name accounts refer to.
    pub name: Option<String>,
    /// Requests admitted per minute per account.
    pub requests_per_minute: Option<u64>,
    /// Tokens (prompt + completion) per minute per account.
    pub tokens_per_minute: Option<u64>,
    /// Requests of one account in flight at once.
    pub max_concurrent: Option<u64>,
    /// Token quota per UTC day.
    pub tokens_per_day: Option<u64>,
    /// Token quota per UTC calendar month.
    pub tokens_per_month: Option<u64>,
    /// Requests that may arrive at once above the steady rate (default: a minute's worth).
    pub burst: Option<u64>,
    /// Completion tokens assumed when a request sets no `max_tokens` (token reservation).
    pub default_max_tokens: Option<u64>,
    /// Models this tier may call (default: any).
    pub allowed_models: Option<Vec<String>>,
    /// Largest `n` accepted.
    pub max_n: Option<u64>,
    /// Largest `max_tokens` (or `max_completion_tokens`, `max_output_tokens`) accepted.
    pub max_tokens: Option<u64>,
    /// `logprobs` / `top_logprobs`: `allow`, `strip` or `reject`.
    pub logprobs: Option<String>,
    /// `logit_bias`: `allow`, `strip` or `reject`.
    pub logit_bias: Option<String>,
    /// Reasoning content in responses: `allow` or `strip` (removed before the client sees
    /// it; usage still counted in full).
    pub reasoning: Option<String>,
    /// Rates of a throttled account are multiplied by this (0 < f ≤ 1).
    pub throttle_factor: Option<f64>,
    /// Per-model limits, on top of the account's.
    pub models: Option<Vec<RawModelLimit>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct RawModelLimit {
    /// Model name as clients send it.
    pub name: Option<String>,
    pub requests_per_minute: Option<u64>,
    pub tokens_per_minute: Option<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Tier {
    pub name: String,
    pub limits: Limits,
    pub burst: Option<u64>,
    pub default_max_tokens: u64,
    pub policy: crate::policy::ParamPolicy,
    pub throttle_factor: f64,
    pub models: Vec<ModelLimit>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelLimit {
    pub name: String,
    pub requests_per_minute: Option<u64>,
    pub tokens_per_minute: Option<u64>,
}

/// The tier a config without `[[tiers]]` gets: `default`, with finite limits (a gateway
/// that admits anything unless told otherwise is not one). The same values as the
/// `default` tier of `config/warden.toml`.
pub fn builtin_default() -> RawTier {
    RawTier {
        name: Some("default".into()),
        requests_per_minute: Some(60),
        tokens_per_minute: Some(100_000),
        max_concurrent: Some(8),
        tokens_per_day: Some(2_000_000),
        tokens_per_month: Some(40_000_000),
        ..RawTier::default()
    }
}

/// Validates every `[[tiers]]` entry (names unique). None at all means one
/// [`builtin_default`] tier.
pub fn validate(raw: Vec<RawTier>, problems: &mut Vec<String>) -> Vec<Tier> {
    let mut tiers = Vec::new();
    let mut names = BTreeSet::new();
    let raw = if raw.is_empty() { vec![builtin_default()] } else { raw };
    for (i, t) in raw.into_iter().enumerate() {
        let name = match t.name {
            Some(n) if !n.trim().is_empty() => n,
            _ => {
                problems.push(format!("tiers[{i}].name: missing"));
                continue;
            }
        };
        if !names.insert(name.clone()) {
            problems.push(format!("tiers[{i}].name: duplicate tier `{name}`"));
        }
        for (field, v) in [
            ("requests_per_minute", t.requests_per_minute),
            ("tokens_per_minute", t.tokens_per_minute),
            ("max_concurrent", t.max_concurrent),
            ("tokens_per_day", t.tokens_per_day),
            ("tokens_per_month", t.tokens_per_month),
        ] {
            if v == Some(0) {
                problems.push(format!("tiers[{i}].{field}: must be greater than 0 (omit it for no limit)"));
            }
        }
        let rule = |field: &str, v: Option<String>, problems: &mut Vec<String>| {
            let v = v.unwrap_or_else(|| "allow".into());
            ParamRule::parse(&v).unwrap_or_else(|| {
                problems.push(format!("tiers[{i}].{field}: `{v}` must be `allow`, `strip` or `reject`"));
                ParamRule::Allow
            })
        };
        let policy = ParamPolicy {
            allowed_models: t.allowed_models.unwrap_or_default(),
            max_n: t.max_n,
            max_tokens: t.max_tokens,
            logprobs: rule("logprobs", t.logprobs, problems),
            logit_bias: rule("logit_bias", t.logit_bias, problems),
            strip_reasoning: match t.reasoning.as_deref() {
                None | Some("allow") => false,
                Some("strip") => true,
                Some(other) => {
                    problems.push(format!("tiers[{i}].reasoning: `{other}` must be `allow` or `strip`"));
                    false
                }
            },
        };
        let throttle_factor = t.throttle_factor.unwrap_or(0.1);
        if !(throttle_factor > 0.0 && throttle_factor <= 1.0) {
            problems.push(format!("tiers[{i}].throttle_factor: {throttle_factor} must be in (0, 1]"));
        }
        if t.burst == Some(0) {
            problems.push(format!("tiers[{i}].burst: must be greater than 0"));
        }
        let mut models = Vec::new();
        for (j, m) in t.models.unwrap_or_default().into_iter().enumerate() {
            match m.name {
                Some(name) if !name.is_empty() => models.push(ModelLimit {
                    name,
                    requests_per_minute: m.requests_per_minute,
                    tokens_per_minute: m.tokens_per_minute,
                }),
                _ => problems.push(format!("tiers[{i}].models[{j}].name: missing")),
            }
        }
        tiers.push(Tier {
            name,
            limits: Limits {
                requests_per_minute: t.requests_per_minute,
                tokens_per_minute: t.tokens_per_minute,
                max_concurrent: t.max_concurrent,
                tokens_per_day: t.tokens_per_day,
                tokens_per_month: t.tokens_per_month,
            },
            burst: t.burst,
            default_max_tokens: t.default_max_tokens.unwrap_or(1024),
            policy,
            throttle_factor,
            models,
        });
    }

    tiers
}

/// What an operator should know about valid tiers: each one that leaves a rate unlimited
/// (its accounts' responses then say `unlimited` in their `x-ratelimit-*` headers).
pub fn notes(tiers: &[Tier]) -> Vec<String> {
    let mut notes = Vec::new();
    for t in tiers {
        let unlimited: Vec<&str> = [
            ("requests_per_minute", t.limits.requests_per_minute),
            ("tokens_per_minute", t.limits.tokens_per_minute),
            ("max_concurrent", t.limits.max_concurrent),
        ]
        .into_iter()
        .filter(|(_, v)| v.is_none())
        .map(|(f, _)| f)
        .collect();
        if !unlimited.is_empty() {
            notes.push(format!("tier `{}` sets no {}: unlimited", t.name, unlimited.join(", ")));
        }
    }
    notes
}
