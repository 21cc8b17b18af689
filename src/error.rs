//! The closed set of errors warden itself answers with, and the one place that turns them
//! into HTTP responses: in the OpenAI error shape `{"error":{"message","type","code","param"}}`,
//! or, on the Anthropic routes (`/v1/messages…`), in Anthropic's
//! `{"type":"error","error":{"type","message"},"request_id"}` with Anthropic's statuses
//! (529 `overloaded_error` where OpenAI's shape says 503).
//!
//! Messages never contain a client's key, the upstream key or prompt text.

use http::{HeaderValue, StatusCode};
use serde_json::json;

use crate::body::{json_response, Body};

/// Which provider API a client speaks, by the path it calls: the shape of warden's own
/// errors and rate-limit headers follow it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Dialect {
    #[default]
    OpenAi,
    Anthropic,
}

impl Dialect {
    /// Anthropic's Messages API lives under `/v1/messages`; everything else warden serves
    /// is OpenAI's.
    pub fn of_path(path: &str) -> Dialect {
        match path.strip_prefix("/v1/messages") {
            Some(rest) if rest.is_empty() || rest.starts_with('/') || rest.starts_with('?') => Dialect::Anthropic,
            _ => Dialect::OpenAi,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Dialect::OpenAi => "openai",
            Dialect::Anthropic => "anthropic",
        }
    }
}

/// Why warden refused or failed a request. Each variant maps to one status and code.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProxyError {
    #[error("no API key was provided")]
    MissingApiKey,
    #[error("the API key is not valid")]
    InvalidApiKey,
    #[error("the account is blocked")]
    AccountBlocked,
    #[error("request body larger than {limit} bytes")]
    BodyTooLarge { limit: u64 },
    #[error("{0}")]
    BodyTimeout(crate::body::BodyCut),
    #[error("no such {kind} object: {id}")]
    NoSuchObject { kind: &'static str, id: String },
    #[error("invalid URL ({method} {path}): warden does not serve this path")]
    UnknownRoute { method: String, path: String },
    #[error("too many failed authentication attempts from your address; retry in {} s", retry_after.as_secs().max(1))]
    AuthThrottled { retry_after: std::time::Duration },
    #[error("malformed JSON body: {0}")]
    MalformedJson(String),
    #[error("{message}")]
    InvalidRequest { message: String, param: Option<String> },
    #[error("could not read the request body: {0}")]
    ClientBody(String),
    /// The client went away while sending its body (a reset stream, a closed
    /// connection): nobody reads the answer; recorded as 499, `client_aborted`.
    #[error("the client went away while sending the request body: {0}")]
    ClientGone(String),
    #[error("warden is overloaded")]
    Overloaded,
    #[error("the audit log cannot keep up; retry shortly")]
    AuditBackpressure,
    #[error("{}", denial.message())]
    RateLimited { denial: crate::limits::Denial },
    #[error("rate limits cannot be checked right now (shared state unavailable); retry shortly")]
    LimitsUnavailable,
    #[error("the account store cannot be reached right now; retry shortly")]
    StoreUnavailable,
    #[error("upstream unavailable: {0}")]
    UpstreamUnavailable(String),
    #[error("upstream did not answer within {0} ms")]
    UpstreamTimeout(u128),
}

impl From<crate::body::BodyCut> for ProxyError {
    fn from(cut: crate::body::BodyCut) -> ProxyError {
        match cut {
            crate::body::BodyCut::TooLarge { limit } => ProxyError::BodyTooLarge { limit },
            other => ProxyError::BodyTimeout(other),
        }
    }
}

impl ProxyError {
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::MissingApiKey | ProxyError::InvalidApiKey => StatusCode::UNAUTHORIZED,
            ProxyError::AccountBlocked => StatusCode::FORBIDDEN,
            ProxyError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ProxyError::UnknownRoute { .. } | ProxyError::NoSuchObject { .. } => StatusCode::NOT_FOUND,
            ProxyError::AuthThrottled { .. } => StatusCode::TOO_MANY_REQUESTS,
            ProxyError::ClientGone(_) => StatusCode::from_u16(499).expect("499 is a valid status"),
            ProxyError::MalformedJson(_) | ProxyError::InvalidRequest { .. } | ProxyError::ClientBody(_) => {
                StatusCode::BAD_REQUEST
            }
            ProxyError::Overloaded
            | ProxyError::AuditBackpressure
            | ProxyError::LimitsUnavailable
            | ProxyError::StoreUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ProxyError::UpstreamUnavailable(_) => StatusCode::BAD_GATEWAY,
            ProxyError::UpstreamTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// The status in a dialect: Anthropic answers a temporary lack of capacity with 529.
    pub fn status_in(&self, dialect: Dialect) -> StatusCode {
        match (dialect, self.status()) {
            (Dialect::Anthropic, StatusCode::SERVICE_UNAVAILABLE) => {
                StatusCode::from_u16(529).expect("529 is a valid status")
            }
            (_, status) => status,
        }
    }

    /// Anthropic's `error.type`.
    pub fn anthropic_kind(&self) -> &'static str {
        match self {
            ProxyError::MissingApiKey | ProxyError::InvalidApiKey => "authentication_error",
            ProxyError::AccountBlocked => "permission_error",
            ProxyError::BodyTooLarge { .. } => "request_too_large",
            ProxyError::BodyTimeout(_) | ProxyError::UpstreamTimeout(_) => "timeout_error",
            ProxyError::UnknownRoute { .. } | ProxyError::NoSuchObject { .. } => "not_found_error",
            ProxyError::AuthThrottled { .. } | ProxyError::RateLimited { .. } => "rate_limit_error",
            ProxyError::MalformedJson(_)
            | ProxyError::InvalidRequest { .. }
            | ProxyError::ClientBody(_)
            | ProxyError::ClientGone(_) => "invalid_request_error",
            ProxyError::Overloaded
            | ProxyError::AuditBackpressure
            | ProxyError::LimitsUnavailable
            | ProxyError::StoreUnavailable => "overloaded_error",
            ProxyError::UpstreamUnavailable(_) => "api_error",
        }
    }

    /// The OpenAI `error.code`.
    pub fn code(&self) -> &'static str {
        match self {
            ProxyError::MissingApiKey | ProxyError::InvalidApiKey => "invalid_api_key",
            ProxyError::AccountBlocked => "account_blocked",
            ProxyError::BodyTooLarge { .. } => "request_too_large",
            ProxyError::BodyTimeout(_) => "request_timeout",
            ProxyError::UnknownRoute { .. } => "unknown_url",
            ProxyError::NoSuchObject { .. } => "not_found",
            ProxyError::AuthThrottled { .. } => "too_many_auth_failures",
            ProxyError::MalformedJson(_) => "invalid_json",
            ProxyError::InvalidRequest { .. } => "invalid_request",
            ProxyError::ClientBody(_) => "invalid_body",
            ProxyError::ClientGone(_) => "client_closed_request",
            ProxyError::Overloaded => "overloaded",
            ProxyError::AuditBackpressure => "audit_backpressure",
            ProxyError::RateLimited { .. } => "rate_limit_exceeded",
            ProxyError::LimitsUnavailable => "limits_unavailable",
            ProxyError::StoreUnavailable => "store_unavailable",
            ProxyError::UpstreamUnavailable(_) => "upstream_unavailable",
            ProxyError::UpstreamTimeout(_) => "upstream_timeout",
        }
    }

    /// The OpenAI `error.type`.
    pub fn kind(&self) -> &'static str {
        match self {
            ProxyError::MissingApiKey | ProxyError::InvalidApiKey => "invalid_request_error",
            ProxyError::AccountBlocked => "permission_error",
            ProxyError::BodyTooLarge { .. }
            | ProxyError::BodyTimeout(_)
            | ProxyError::UnknownRoute { .. }
            | ProxyError::NoSuchObject { .. }
            | ProxyError::MalformedJson(_)
            | ProxyError::InvalidRequest { .. }
            | ProxyError::ClientBody(_)
            | ProxyError::ClientGone(_) => "invalid_request_error",
            ProxyError::RateLimited { denial } => denial.kind(),
            ProxyError::AuthThrottled { .. } => "requests",
            ProxyError::Overloaded
            | ProxyError::AuditBackpressure
            | ProxyError::LimitsUnavailable
            | ProxyError::StoreUnavailable
            | ProxyError::UpstreamUnavailable(_)
            | ProxyError::UpstreamTimeout(_) => "server_error",
        }
    }

    fn message(&self) -> String {
        match self {
            ProxyError::MissingApiKey => {
                "You didn't provide an API key. Pass it as `Authorization: Bearer KEY` or `x-api-key: KEY`.".into()
            }
            ProxyError::InvalidApiKey => "Incorrect API key provided.".into(),
            ProxyError::AccountBlocked => {
                "This account has been blocked. Contact your administrator if you believe this is a mistake.".into()
            }
            ProxyError::RateLimited { denial } => denial.message(),
            other => {
                let mut m = other.to_string();
                if let Some(first) = m.get_mut(0..1) {
                    first.make_ascii_uppercase();
                }
                if !m.ends_with(['.', '!', '?']) {
                    m.push('.');
                }
                m
            }
        }
    }

    /// The response a client of the OpenAI routes sees.
    pub fn into_response(&self) -> http::Response<Body> {
        self.into_response_in(Dialect::OpenAi, None)
    }

    /// The response a client sees, in its dialect's shape (Anthropic's carries the
    /// request id, as Anthropic's own errors do).
    pub fn into_response_in(&self, dialect: Dialect, request_id: Option<&str>) -> http::Response<Body> {
        let body = match dialect {
            Dialect::OpenAi => {
                let param = match self {
                    ProxyError::InvalidRequest { param, .. } => param.clone(),
                    ProxyError::NoSuchObject { .. } => Some("id".into()),
                    _ => None,
                };
                json!({
                    "error": {"message": self.message(), "type": self.kind(), "param": param, "code": self.code()}
                })
            }
            Dialect::Anthropic => json!({
                "type": "error",
                "error": {"type": self.anthropic_kind(), "message": self.message()},
                "request_id": request_id,
            }),
        };
        let mut resp = json_response(self.status_in(dialect), &body);
        match self {
            ProxyError::Overloaded
            | ProxyError::AuditBackpressure
            | ProxyError::LimitsUnavailable
            | ProxyError::StoreUnavailable => {
                resp.headers_mut().insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            ProxyError::AuthThrottled { retry_after } => {
                resp.headers_mut().insert(http::header::RETRY_AFTER, HeaderValue::from(retry_after.as_secs().max(1)));
            }
            ProxyError::RateLimited { denial } => {
                let wait = denial.retry_after();
                let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                resp.headers_mut().insert(http::header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
                resp.headers_mut().insert("retry-after-ms", HeaderValue::from(wait.as_millis().max(1) as u64));
            }
            _ => {}
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn errors_use_the_openai_shape() {
        let cases = [
            (ProxyError::InvalidApiKey, 401, "invalid_api_key"),
            (ProxyError::AccountBlocked, 403, "account_blocked"),
            (ProxyError::BodyTooLarge { limit: 10 }, 413, "request_too_large"),
            (ProxyError::MalformedJson("x".into()), 400, "invalid_json"),
            (ProxyError::UpstreamUnavailable("refused".into()), 502, "upstream_unavailable"),
            (ProxyError::UpstreamTimeout(5), 504, "upstream_timeout"),
        ];
        for (err, status, code) in cases {
            let resp = err.into_response();
            assert_eq!(resp.status().as_u16(), status);
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(v["error"]["code"], code);
            assert!(v["error"]["message"].as_str().unwrap().len() > 5);
            assert!(v["error"]["type"].is_string());
            assert!(v["error"].as_object().unwrap().contains_key("param"));
        }
    }

    #[tokio::test]
    async fn errors_on_the_anthropic_routes_use_anthropics_shape_and_statuses() {
        let cases = [
            (ProxyError::InvalidApiKey, 401, "authentication_error"),
            (ProxyError::AccountBlocked, 403, "permission_error"),
            (ProxyError::BodyTooLarge { limit: 10 }, 413, "request_too_large"),
            (ProxyError::MalformedJson("x".into()), 400, "invalid_request_error"),
            (ProxyError::Overloaded, 529, "overloaded_error"),
            (ProxyError::LimitsUnavailable, 529, "overloaded_error"),
            (ProxyError::UnknownRoute { method: "GET".into(), path: "/v1/messages/x".into() }, 404, "not_found_error"),
            (ProxyError::UpstreamUnavailable("refused".into()), 502, "api_error"),
            (ProxyError::UpstreamTimeout(5), 504, "timeout_error"),
        ];
        for (err, status, kind) in cases {
            let resp = err.into_response_in(Dialect::Anthropic, Some("req_1"));
            assert_eq!(resp.status().as_u16(), status, "{err:?}");
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(v["type"], "error");
            assert_eq!(v["error"]["type"], kind);
            assert!(v["error"]["message"].as_str().unwrap().len() > 5);
            assert_eq!(v["request_id"], "req_1");
            assert_eq!(v["error"].as_object().unwrap().len(), 2, "only type and message: {v}");
        }
        assert_eq!(Dialect::of_path("/v1/messages"), Dialect::Anthropic);
        assert_eq!(Dialect::of_path("/v1/messages/count_tokens"), Dialect::Anthropic);
        assert_eq!(Dialect::of_path("/v1/messages/batches/x"), Dialect::Anthropic);
        assert_eq!(Dialect::of_path("/v1/messagesx"), Dialect::OpenAi);
        assert_eq!(Dialect::of_path("/v1/chat/completions"), Dialect::OpenAi);
    }

    #[test]
    fn messages_start_with_a_capital_and_end_with_one_full_stop() {
        let policy =
            ProxyError::InvalidRequest { message: "`logit_bias` is not available on your plan.".into(), param: None };
        assert_eq!(policy.message(), "`logit_bias` is not available on your plan.");
        assert_eq!(ProxyError::UpstreamTimeout(5).message(), "Upstream did not answer within 5 ms.");
    }
}
