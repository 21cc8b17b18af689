//! Limits: requests and tokens per minute, concurrency, daily and monthly token quotas,
//! per account (and per account and model), enforced **before** a request is forwarded.
//!
//! A request asks for one request unit and an estimate of its tokens (prompt tokens
//! counted with the real tokenizer, plus `max_tokens` or the tier's default). Every
//! applicable limit is checked and reserved at once, all or nothing, so a concurrent
//! burst cannot overshoot a limit by more than the requests already admitted. When the
//! response ends (complete, aborted or failed) the reservation is settled against the
//! tokens really used, and the concurrency slot is released.
//!
//! State lives in memory ([`local`]) or, with `[redis]`, in Redis ([`shared`]) so every
//! replica sees the same counters: one Lua script call per admission and one per
//! settlement. Redis calls have strict timeouts behind a circuit breaker; while Redis is
//! unusable warden falls back to the local limits (`failure_mode = "fail_open"`) or
//! refuses with 503 (`"fail_closed"`), and never makes a request wait for a dead Redis.

pub mod gcra;
pub mod local;
pub mod shared;

use std::sync::Arc;
use std::time::Duration;

use crate::body::BoxError;
use crate::settings::millis;
use futures_util::future::BoxFuture;
use gcra::{Rate, Window};
use serde::Deserialize;

/// Where quota counters are kept between restarts and shared with other replicas that
/// run without Redis (the store implements it).
pub trait QuotaStore: Send + Sync + 'static {
    /// Tokens counted in `window` (a window id such as `2026-11-28`) for `account`.
    fn quota_used<'a>(&'a self, account: &'a str, window: &'a str) -> BoxFuture<'a, Result<u64, BoxError>>;
    /// Saves `(account, window, tokens)` rows, replacing what was saved before.
    fn save_quota_usage<'a>(&'a self, rows: &'a [(Arc<str>, String, u64)]) -> BoxFuture<'a, Result<(), BoxError>>;
}

/// Which limit a check is about.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Slot {
    Requests,
    Tokens,
    ModelRequests(Arc<str>),
    ModelTokens(Arc<str>),
}

impl Slot {
    fn is_tokens(&self) -> bool {
        matches!(self, Slot::Tokens | Slot::ModelTokens(_))
    }
}

/// A request's rates: requests and tokens per minute, and the same per model (at most
/// four, kept inline: the spec is built for every request).
pub type Rates = smallvec::SmallVec<[(Slot, Rate); 4]>;
/// A request's quotas: tokens per day and per month.
pub type Quotas = smallvec::SmallVec<[(Window, u64); 2]>;

/// The limits that apply to one request, after tier, overrides and throttling.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LimitSpec {
    pub rates: Rates,
    pub max_concurrent: Option<u64>,
    pub quotas: Quotas,
}

impl LimitSpec {
    pub fn is_empty(&self) -> bool {
        self.rates.is_empty() && self.max_concurrent.is_none() && self.quotas.is_empty()
    }
    /// Some limit here counts tokens (so the request's tokens must be estimated).
    pub fn counts_tokens(&self) -> bool {
        !self.quotas.is_empty() || self.rates.iter().any(|(s, _)| s.is_tokens())
    }
}

/// Why a request was refused. Each names the limit for the 429 message.
#[derive(Clone, Debug, PartialEq)]
pub enum Denial {
    Rate {
        slot: Slot,
        limit: u64,
        retry_after: Duration,
    },
    /// The estimate alone exceeds a token rate's capacity: it can never be admitted.
    TooLarge {
        slot: Slot,
        limit: u64,
        needed: u64,
    },
    Concurrency {
        limit: u64,
    },
    Quota {
        window: Window,
        limit: u64,
        retry_after: Duration,
    },
}

impl Denial {
    pub fn retry_after(&self) -> Duration {
        match self {
            Denial::Rate { retry_after, .. } | Denial::Quota { retry_after, .. } => *retry_after,
            Denial::TooLarge { .. } => Duration::from_secs(60),
            Denial::Concurrency { .. } => Duration::from_secs(1),
        }
    }

    /// The OpenAI `error.type` for this limit (`requests` or `tokens`).
    pub fn kind(&self) -> &'static str {
        match self {
            Denial::Rate { slot, .. } | Denial::TooLarge { slot, .. } if slot.is_tokens() => "tokens",
            Denial::Quota { .. } => "tokens",
            _ => "requests",
        }
    }

    pub fn message(&self) -> String {
        let scope = |slot: &Slot| match slot {
            Slot::ModelRequests(m) | Slot::ModelTokens(m) => format!(" for model `{m}`"),
            _ => String::new(),
        };
        match self {
            Denial::Rate { slot, limit, retry_after } => format!(
                "Rate limit reached{}: limit {limit} {} per minute. Please try again in {}.",
                scope(slot),
                if slot.is_tokens() { "tokens" } else { "requests" },
                gcra::reset_header(retry_after.as_nanos() as i64)
            ),
            Denial::TooLarge { slot, limit, needed } => format!(
                "Request too large{}: limit {limit} tokens per minute, requested {needed}. Reduce the prompt or max_tokens.",
                scope(slot)
            ),
            Denial::Concurrency { limit } => {
                format!("Too many concurrent requests: limit {limit} in flight. Please try again when one finishes.")
            }
            Denial::Quota { window, limit, retry_after } => format!(
                "You exceeded your {} token quota of {limit}. It resets in {}.",
                window.label(),
                gcra::reset_header(retry_after.as_nanos() as i64)
            ),
        }
    }
}

/// One rate's standing, for the `x-ratelimit-*` headers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Standing {
    pub limit: u64,
    pub remaining: u64,
    pub reset_ns: i64,
}

/// The standings an admission leaves, of the two rates the headers report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Standings {
    pub requests: Option<Standing>,
    pub tokens: Option<Standing>,
}

impl Standings {
    fn record(&mut self, slot: &Slot, standing: Standing) {
        match slot {
            Slot::Requests => self.requests = Some(standing),
            Slot::Tokens => self.tokens = Some(standing),
            Slot::ModelRequests(_) | Slot::ModelTokens(_) => {}
        }
    }
}

/// What an admitted request carries until it ends.
#[derive(Debug)]
pub struct Reservation {
    pub account: Arc<str>,
    pub request_id: Arc<str>,
    pub spec: LimitSpec,
    pub tokens: u64,
    /// Which store holds it; settlement goes back to the same one.
    pub shared: bool,
    pub requests: Option<Standing>,
    pub token_standing: Option<Standing>,
}

/// The limiter warden's request path talks to.
pub struct Limiter {
    pub local: local::LocalLimits,
    pub shared: Option<shared::SharedLimits>,
}

/// Admission failed for a reason other than a limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unavailable {
    /// Redis is unusable and the failure mode is `fail_closed`.
    SharedStateDown,
}

impl Limiter {
    /// Checks and reserves every limit of `spec` for one request of `tokens` estimated
    /// tokens. Never waits longer than the Redis timeout.
    pub async fn admit(
        &self,
        account: &Arc<str>,
        request_id: &Arc<str>,
        spec: LimitSpec,
        tokens: u64,
    ) -> Result<Result<Reservation, Denial>, Unavailable> {
        if let Some(shared) = &self.shared {
            match shared.admit(account, request_id, &spec, tokens).await {
                shared::Outcome::Decided(d) => {
                    return Ok(d.map(|s| self.reservation(account, request_id, spec, tokens, true, s)))
                }
                shared::Outcome::Unusable if shared.fail_closed() => return Err(Unavailable::SharedStateDown),
                shared::Outcome::Unusable => {}
            }
        }
        let now = crate::clock::now_ns();
        let decided = self.local.admit(account, &spec, tokens, now).await;
        Ok(decided.map(|s| self.reservation(account, request_id, spec, tokens, false, s)))
    }

    fn reservation(
        &self,
        account: &Arc<str>,
        request_id: &Arc<str>,
        spec: LimitSpec,
        tokens: u64,
        shared: bool,
        standings: Standings,
    ) -> Reservation {
        Reservation {
            account: account.clone(),
            request_id: request_id.clone(),
            requests: standings.requests,
            token_standing: standings.tokens,
            spec,
            tokens,
            shared,
        }
    }

    /// Settles a reservation with the tokens really used and frees its concurrency slot.
    /// Never blocks: shared settlements run in the background.
    pub fn settle(&self, reservation: Reservation, used_tokens: u64) {
        let delta = used_tokens as i64 - reservation.tokens as i64;
        match (&self.shared, reservation.shared) {
            (Some(shared), true) => shared.settle(reservation, delta),
            _ => self.local.settle(&reservation, delta, crate::clock::now_ns()),
        }
    }
}

// ---------------------------------------------------------------------------------------
// The `[limits]` section and the numeric limits of a tier.
// ---------------------------------------------------------------------------------------

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct RawLimits {
    /// Limit state of accounts idle this long is dropped from memory.
    pub idle_eviction_ms: Option<u64>,
    /// How often local quota counters are saved to the store.
    pub quota_save_interval_ms: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct LimitsConfig {
    pub idle_eviction: Duration,
    pub quota_save_interval: Duration,
}

impl LimitsConfig {
    /// Validates `[limits]`.
    pub fn from_raw(raw: RawLimits, problems: &mut Vec<String>) -> LimitsConfig {
        LimitsConfig {
            idle_eviction: millis("limits.idle_eviction_ms", raw.idle_eviction_ms, 600_000, problems),
            quota_save_interval: millis("limits.quota_save_interval_ms", raw.quota_save_interval_ms, 5_000, problems),
        }
    }
}

/// The numeric limits of a tier; an account's overrides replace single fields.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    pub requests_per_minute: Option<u64>,
    pub tokens_per_minute: Option<u64>,
    pub max_concurrent: Option<u64>,
    pub tokens_per_day: Option<u64>,
    pub tokens_per_month: Option<u64>,
}

impl Limits {
    /// These limits with every field `overrides` sets replaced.
    pub fn with(self, overrides: &Limits) -> Limits {
        Limits {
            requests_per_minute: overrides.requests_per_minute.or(self.requests_per_minute),
            tokens_per_minute: overrides.tokens_per_minute.or(self.tokens_per_minute),
            max_concurrent: overrides.max_concurrent.or(self.max_concurrent),
            tokens_per_day: overrides.tokens_per_day.or(self.tokens_per_day),
            tokens_per_month: overrides.tokens_per_month.or(self.tokens_per_month),
        }
    }
}

/// The limits' metrics: refusals by limit, accounts with state in memory.
#[derive(Clone, Default)]
pub struct LimitMetrics {
    pub rate_limited: prometheus_client::metrics::family::Family<
        crate::metrics::KindLabel,
        prometheus_client::metrics::counter::Counter,
    >,
    pub accounts: prometheus_client::metrics::gauge::Gauge,
}

impl LimitMetrics {
    pub fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register(
            "rate_limited",
            "Requests refused with 429, by limit (requests, tokens, concurrency, quota)",
            self.rate_limited.clone(),
        );
        registry.register("limiter_accounts", "Accounts with limit state in memory", self.accounts.clone());
    }
}
