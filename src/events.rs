//! `RequestEvent`: the one record of one request, whatever its outcome. It feeds the
//! access log, the metrics and the per-account usage totals.

use std::sync::Arc;

use serde::Serialize;

use crate::accounting::Usage;

/// Everything warden knows about one finished request. Never holds a raw key.
#[derive(Debug, Clone, Serialize)]
pub struct RequestEvent {
    /// RFC 3339 UTC with milliseconds, when the request arrived.
    pub ts: String,
    /// Unix milliseconds of `ts`, for time-based features.
    #[serde(skip)]
    pub ts_ms: i64,
    pub request_id: String,
    pub account_id: Option<Arc<str>>,
    pub key_id: Option<Arc<str>>,
    pub client_ip: String,
    pub user_agent: Option<String>,
    pub method: String,
    pub path: String,
    pub model: Option<String>,
    pub status: u16,
    pub stream: bool,
    pub latency_ms: u64,
    pub usage: Option<Usage>,
    /// True when the upstream did not report usage (e.g. client abort) and warden
    /// counted the tokens itself.
    pub usage_estimated: bool,
    /// `allowed`, `unauthenticated`, `blocked`, `invalid_request`, `overloaded`,
    /// `upstream_error`.
    pub decision: &'static str,
    /// Why, in words, when the decision was not `allowed`.
    pub reason: Option<String>,
    /// `complete`, `client_aborted`, `upstream_error`, `idle_timeout` or `refused`.
    pub ending: &'static str,
}
