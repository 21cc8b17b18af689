//! The body type every warden response uses, and small constructors for it.
//!
//! Proxied responses stream the upstream body through the accounting tap; responses warden
//! writes itself (errors, admin API) are a single buffer. Both are boxed into one type so
//! the server can return either without generics leaking everywhere.

use bytes::Bytes;
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Empty, Full};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A response or request body: streamed or buffered, boxed.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

pub fn full(data: impl Into<Bytes>) -> Body {
    Full::new(data.into()).map_err(|never| match never {}).boxed_unsync()
}

pub fn empty() -> Body {
    Empty::<Bytes>::new().map_err(|never| match never {}).boxed_unsync()
}

/// A JSON response with the given status.
pub fn json_response(status: http::StatusCode, value: &impl serde::Serialize) -> http::Response<Body> {
    let bytes = serde_json::to_vec(value).expect("serializing a JSON value cannot fail");
    http::Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(full(bytes))
        .expect("static response parts are valid")
}
