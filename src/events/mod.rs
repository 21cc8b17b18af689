//! `RequestEvent`: the one record of one request, whatever its outcome, and the bus that
//! carries it off the request path.
//!
//! The request path builds the event from what it already holds (the parsed body is
//! moved in, not copied) and hands it to bounded queues; consumers (the audit writer)
//! run beside the request path and do the expensive work there: capture mode,
//! redaction, hashing, serialization, disk I/O.

pub mod audit;
pub mod metrics;

use std::sync::Arc;

use crate::accounting::Usage;
use crate::error::ProxyError;

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
    /// The provider API the client spoke (`None`: a request refused before it had a path).
    pub dialect: Option<crate::llm::Dialect>,
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
    pub decision: Decision,
    /// Why, in words, when the decision was not `allowed`.
    pub reason: Option<String>,
    pub ending: Ending,
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

/// What warden decided about a request: the record's `decision`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Forwarded upstream (whatever the upstream then answered).
    Allowed,
    /// No key, a wrong key, or a client throttled for failing to authenticate.
    Unauthenticated,
    /// A path warden does not route.
    DeniedRoute,
    /// The client was too slow sending its body.
    ClientTimeout,
    /// The account is blocked.
    Blocked,
    /// The body was too large, not JSON, not a valid request, or unreadable.
    InvalidRequest,
    /// The client went away before the request was admitted.
    Abandoned,
    /// Warden was at capacity (or its audit log, limits or store were).
    Overloaded,
    RateLimited,
    /// The upstream could not be reached or did not answer in time.
    UpstreamError,
}

impl Decision {
    /// The decision recorded for a request refused or failed with `err`.
    pub fn of(err: &ProxyError) -> Decision {
        match err {
            ProxyError::MissingApiKey | ProxyError::InvalidApiKey | ProxyError::AuthThrottled { .. } => {
                Decision::Unauthenticated
            }
            ProxyError::UnknownRoute { .. } => Decision::DeniedRoute,
            ProxyError::BodyTimeout(_) => Decision::ClientTimeout,
            ProxyError::AccountBlocked => Decision::Blocked,
            ProxyError::BodyTooLarge { .. }
            | ProxyError::MalformedJson(_)
            | ProxyError::NoSuchObject { .. }
            | ProxyError::InvalidRequest { .. }
            | ProxyError::ClientBody(_) => Decision::InvalidRequest,
            ProxyError::ClientGone(_) => Decision::Abandoned,
            ProxyError::Overloaded
            | ProxyError::AuditBackpressure
            | ProxyError::LimitsUnavailable
            | ProxyError::StoreUnavailable => Decision::Overloaded,
            ProxyError::RateLimited { .. } => Decision::RateLimited,
            ProxyError::UpstreamUnavailable(_) | ProxyError::UpstreamTimeout(_) => Decision::UpstreamError,
        }
    }

    /// The text the audit record and the access log carry (the serde name).
    pub const fn as_str(self) -> &'static str {
        match self {
            Decision::Allowed => "allowed",
            Decision::Unauthenticated => "unauthenticated",
            Decision::DeniedRoute => "denied_route",
            Decision::ClientTimeout => "client_timeout",
            Decision::Blocked => "blocked",
            Decision::InvalidRequest => "invalid_request",
            Decision::Abandoned => "abandoned",
            Decision::Overloaded => "overloaded",
            Decision::RateLimited => "rate_limited",
            Decision::UpstreamError => "upstream_error",
        }
    }
}

/// How a request ended: the record's `ending`. Not [`crate::accounting::Ending`], which
/// is how a response body ended (one of the inputs to this one: a stream cut by the
/// client is `shutdown` here while warden shuts down).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ending {
    /// The response was passed on whole.
    Complete,
    /// Warden answered with an error of its own.
    Refused,
    ClientAborted,
    /// Cut off by shutdown.
    Shutdown,
    /// The upstream's response broke off or was malformed.
    UpstreamError,
    IdleTimeout,
    /// An SSE event passed `server.max_event_bytes`.
    EventTooLarge,
    /// One request of an uploaded batch file (answered later, by the provider).
    Batch,
}

impl Ending {
    /// The text the audit record and the access log carry (the serde name).
    pub const fn as_str(self) -> &'static str {
        match self {
            Ending::Complete => "complete",
            Ending::Refused => "refused",
            Ending::ClientAborted => "client_aborted",
            Ending::Shutdown => "shutdown",
            Ending::UpstreamError => "upstream_error",
            Ending::IdleTimeout => "idle_timeout",
            Ending::EventTooLarge => "event_too_large",
            Ending::Batch => "batch",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_and_endings_are_written_as_ever() {
        // The audit writer uses `as_str`, anything serde-based the serde name: both must
        // be the strings records have always carried.
        let decisions = [
            (Decision::Allowed, "allowed"),
            (Decision::Unauthenticated, "unauthenticated"),
            (Decision::DeniedRoute, "denied_route"),
            (Decision::ClientTimeout, "client_timeout"),
            (Decision::Blocked, "blocked"),
            (Decision::InvalidRequest, "invalid_request"),
            (Decision::Abandoned, "abandoned"),
            (Decision::Overloaded, "overloaded"),
            (Decision::RateLimited, "rate_limited"),
            (Decision::UpstreamError, "upstream_error"),
        ];
        for (d, text) in decisions {
            // Exhaustive: a new variant must be added to the list above.
            match d {
                Decision::Allowed
                | Decision::Unauthenticated
                | Decision::DeniedRoute
                | Decision::ClientTimeout
                | Decision::Blocked
                | Decision::InvalidRequest
                | Decision::Abandoned
                | Decision::Overloaded
                | Decision::RateLimited
                | Decision::UpstreamError => {}
            }
            assert_eq!(d.as_str(), text);
            assert_eq!(serde_json::to_value(d).unwrap(), text);
            assert_eq!(serde_json::from_value::<Decision>(text.into()).unwrap(), d);
        }
        let endings = [
            (Ending::Complete, "complete"),
            (Ending::Refused, "refused"),
            (Ending::ClientAborted, "client_aborted"),
            (Ending::Shutdown, "shutdown"),
            (Ending::UpstreamError, "upstream_error"),
            (Ending::IdleTimeout, "idle_timeout"),
            (Ending::EventTooLarge, "event_too_large"),
            (Ending::Batch, "batch"),
        ];
        for (e, text) in endings {
            match e {
                Ending::Complete
                | Ending::Refused
                | Ending::ClientAborted
                | Ending::Shutdown
                | Ending::UpstreamError
                | Ending::IdleTimeout
                | Ending::EventTooLarge
                | Ending::Batch => {}
            }
            assert_eq!(e.as_str(), text);
            assert_eq!(serde_json::to_value(e).unwrap(), text);
            assert_eq!(serde_json::from_value::<Ending>(text.into()).unwrap(), e);
        }
        assert_eq!(decisions.len(), 10);
        assert_eq!(endings.len(), 8);
    }

    #[test]
    fn events_carry_the_parsed_body_by_pointer() {
        // The parsed body (a few hundred bytes of view) is boxed once and handed on; held
        // inline it would be copied whole at every move of the event, into its `Arc`
        // included, and the event could not be smaller than it.
        let (event, body) = (std::mem::size_of::<RequestEvent>(), std::mem::size_of::<crate::llm::LlmRequest>());
        assert!(event < body, "RequestEvent is {event} bytes, LlmRequest {body}");
    }
}
