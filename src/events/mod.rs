//! `RequestEvent`: the one record of one request, whatever its outcome, and the bus that
//! carries it off the request path.
//!
//! The request path builds the event from what it already holds (the parsed body is
//! moved in, not copied) and hands it to bounded queues; consumers (the audit writer)
//! run beside the request path and do the expensive work there: capture mode,
//! redaction, hashing, serialization, disk I/O.

pub mod audit;

use std::sync::Arc;

use crate::accounting::Usage;

/// Everything warden knows about one finished request. Never holds a raw key.
#[derive(Debug, Clone)]
pub struct RequestEvent {
    /// When the request arrived, Unix milliseconds (UTC).
    pub ts_ms: i64,
    pub request_id: Arc<str>,
    pub account_id: Option<Arc<str>>,
    pub key_id: Option<Arc<str>>,
    pub client_ip: std::net::IpAddr,
    pub user_agent: Option<String>,
    pub method: http::Method,
    /// The request path (a static string for the LLM routes).
    pub path: std::borrow::Cow<'static, str>,
    /// Shared with the parsed request (one allocation per request for the name).
    pub model: Option<Arc<str>>,
    pub status: u16,
    pub stream: bool,
    /// From arrival to the end of the response (or the refusal).
    pub latency: std::time::Duration,
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
    /// An LLM call's body as the client sent it, and what warden read in it (capture
    /// mode decides what the audit log keeps of it; the detector reads it). Boxed: it is
    /// allocated once when the body is parsed and handed on by pointer, from the request
    /// path to the event and on to the audit writer and the detector.
    pub request: Option<Box<crate::llm::LlmRequest>>,
    /// The completion text seen, up to the capture limit.
    pub completion_text: Option<String>,
    /// The capture limit cut the completion text.
    pub completion_truncated: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_carry_the_parsed_body_by_pointer() {
        // The parsed body (a few hundred bytes of view) is boxed once and handed on; held
        // inline it would be copied whole at every move of the event, into its `Arc`
        // included, and the event could not be smaller than it.
        let (event, body) = (std::mem::size_of::<RequestEvent>(), std::mem::size_of::<crate::llm::LlmRequest>());
        assert!(event < body, "RequestEvent is {event} bytes, LlmRequest {body}");
    }
}
