//! Route policy: which provider paths warden serves, default deny.
//!
//! Warden holds the upstream key, so every path it forwards is spent on the provider's
//! account with warden's authority. Only what warden understands goes through: the LLM
//! routes (read, checked by policy and limits, recorded for the detector), the model
//! list, the Files and Batch APIs (read line by line, see [`crate::batch`]), and the
//! operator's allow-list `upstream.passthrough`. Anything else is answered 404 in the
//! OpenAI shape without reaching the upstream.
//!
//! Query strings are forwarded without credentials: a client that puts its key in the
//! URL (`?api_key=wk-…`) does not get it sent to the provider.

use std::borrow::Cow;

use http::Method;

use crate::llm::LlmRoute;

/// What a request asks for, as far as the route policy is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// One of the LLM routes: the body is read and understood.
    Llm(LlmRoute),
    /// `GET /v1/models` or `GET /v1/models/{id}`.
    Models,
    /// `POST /v1/files`: an upload, read line by line when its purpose is `batch`.
    FileUpload,
    /// `GET /v1/files/{id}`, `GET /v1/files/{id}/content` or `DELETE /v1/files/{id}`:
    /// only for files the account uploaded or its batches produced.
    File { id: String },
    /// `POST /v1/batches`: only for an input file the account uploaded.
    BatchCreate,
    /// `GET /v1/batches/{id}` or `POST /v1/batches/{id}/cancel`: only the account's batches.
    Batch { id: String },
    /// A path on the operator's allow-list: authenticated and streamed through.
    Passthrough,
    /// Anything else: 404 without reaching the upstream.
    Denied,
}

impl Route {
    /// Classifies a request. `passthrough` is the operator's allow-list (see
    /// [`Passthrough`]).
    pub fn of(method: &Method, path: &str, passthrough: &Passthrough) -> Route {
        if let Some(r) = LlmRoute::of(method, path) {
            return Route::Llm(r);
        }
        let segments: Vec<&str> = path.strip_prefix("/v1/").map(|p| p.split('/').collect()).unwrap_or_default();
        let known = match (method, segments.as_slice()) {
            (&Method::GET, ["models"]) => Some(Route::Models),
            (&Method::GET, ["models", id]) if valid_id(id) => Some(Route::Models),
            (&Method::POST, ["files"]) => Some(Route::FileUpload),
            (&Method::GET, ["files", id] | ["files", id, "content"]) if valid_id(id) => {
                Some(Route::File { id: (*id).to_string() })
            }
            (&Method::DELETE, ["files", id]) if valid_id(id) => Some(Route::File { id: (*id).to_string() }),
            (&Method::POST, ["batches"]) => Some(Route::BatchCreate),
            (&Method::GET, ["batches", id]) | (&Method::POST, ["batches", id, "cancel"]) if valid_id(id) => {
                Some(Route::Batch { id: (*id).to_string() })
            }
            _ => None,
        };
        match known {
            Some(route) => route,
            None if passthrough.allows(path) => Route::Passthrough,
            None => Route::Denied,
        }
    }

    /// A bounded label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Route::Llm(r) => r.label(),
            Route::Models => "models",
            Route::FileUpload | Route::File { .. } => "files",
            Route::BatchCreate | Route::Batch { .. } => "batches",
            Route::Passthrough => "passthrough",
            Route::Denied => "denied",
        }
    }
}

/// A provider's object id (`file-abc123`, `batch_abc123`): letters, digits, `-` and `_`.
fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
}

/// `upstream.passthrough`: provider paths forwarded as they are. An entry is a path
/// (`/v1/audio/speech`, matched exactly) or a prefix ending in `/*` (`/v1/audio/*`:
/// every path below `/v1/audio/`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Passthrough {
    exact: Vec<String>,
    prefixes: Vec<String>,
}

impl Passthrough {
    /// Validates the entries; each problem is named.
    pub fn parse(entries: &[String], problems: &mut Vec<String>) -> Passthrough {
        let mut p = Passthrough::default();
        for e in entries {
            let path = e.strip_suffix("/*").unwrap_or(e);
            let ok = path.starts_with('/')
                && path.len() > 1
                && !path.contains(['?', '#', '*'])
                && !path.split('/').any(|s| s == "." || s == "..")
                && path.bytes().all(|b| b.is_ascii_graphic());
            if !ok {
                problems.push(format!(
                    "upstream.passthrough: `{e}` must be a path such as \"/v1/audio/speech\" or a prefix such as \"/v1/audio/*\""
                ));
                continue;
            }
            if e.ends_with("/*") {
                p.prefixes.push(format!("{path}/"));
            } else {
                p.exact.push(path.to_string());
            }
        }
        p
    }

    pub fn allows(&self, path: &str) -> bool {
        // A dot segment could climb out of an allowed prefix once the upstream
        // normalises it.
        if path.split('/').any(|s| s == "." || s == ".." || s.eq_ignore_ascii_case("%2e%2e")) {
            return false;
        }
        self.exact.iter().any(|e| e == path) || self.prefixes.iter().any(|p| path.starts_with(p.as_str()))
    }

    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.prefixes.is_empty()
    }
}

/// Query parameters that carry credentials, compared without case after decoding.
const CREDENTIAL_PARAMS: [&str; 10] =
    ["api_key", "api-key", "apikey", "key", "access_token", "token", "auth", "authorization", "x-api-key", "bearer"];

/// The query string to forward: every parameter but those that carry a credential (by
/// name, or a value that looks like a warden or provider key). Parameters kept are left
/// exactly as the client wrote them.
pub fn forwarded_query(query: &str) -> Cow<'_, str> {
    let carries_credential = |pair: &str| {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = decode(name);
        let value = decode(value);
        let value = value.trim_start();
        CREDENTIAL_PARAMS.iter().any(|c| name.trim().eq_ignore_ascii_case(c))
            || value.starts_with(crate::auth::KEY_PREFIX)
            || value.starts_with("sk-")
            || value.len() > 7 && value[..7].eq_ignore_ascii_case("bearer ")
    };
    if !query.split('&').any(carries_credential) {
        return Cow::Borrowed(query);
    }
    let kept: Vec<&str> = query.split('&').filter(|p| !p.is_empty() && !carries_credential(p)).collect();
    Cow::Owned(kept.join("&"))
}

fn decode(s: &str) -> Cow<'_, str> {
    if !s.contains(['%', '+']) {
        return Cow::Borrowed(s);
    }
    form_urlencoded::parse(format!("{s}=").as_bytes())
        .next()
        .map(|(k, _)| Cow::Owned(k.into_owned()))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allow(entries: &[&str]) -> Passthrough {
        let mut problems = Vec::new();
        let p = Passthrough::parse(&entries.iter().map(|e| e.to_string()).collect::<Vec<_>>(), &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        p
    }

    #[test]
    fn only_understood_routes_and_the_allow_list_go_through() {
        let none = Passthrough::default();
        let post = Method::POST;
        let get = Method::GET;
        assert_eq!(Route::of(&post, "/v1/chat/completions", &none), Route::Llm(LlmRoute::ChatCompletions));
        assert_eq!(Route::of(&get, "/v1/models", &none), Route::Models);
        assert_eq!(Route::of(&get, "/v1/models/gpt-4o-mini", &none), Route::Models);
        assert_eq!(Route::of(&post, "/v1/files", &none), Route::FileUpload);
        assert_eq!(Route::of(&get, "/v1/files/file-abc/content", &none), Route::File { id: "file-abc".into() });
        assert_eq!(Route::of(&Method::DELETE, "/v1/files/file-abc", &none), Route::File { id: "file-abc".into() });
        assert_eq!(Route::of(&post, "/v1/batches", &none), Route::BatchCreate);
        assert_eq!(Route::of(&get, "/v1/batches/batch_1", &none), Route::Batch { id: "batch_1".into() });
        assert_eq!(Route::of(&post, "/v1/batches/batch_1/cancel", &none), Route::Batch { id: "batch_1".into() });
        for (m, p) in [
            (&get, "/v1/files"),
            (&get, "/v1/batches"),
            (&post, "/v1/fine_tuning/jobs"),
            (&post, "/v1/audio/speech"),
            (&get, "/v1/chat/completions"),
            (&post, "/v1/models"),
            (&get, "/v1/models/../files"),
            (&get, "/admin/v1/accounts"),
            (&get, "/"),
        ] {
            assert_eq!(Route::of(m, p, &none), Route::Denied, "{m} {p}");
        }
        let some = allow(&["/v1/audio/speech", "/v1/moderations/*"]);
        assert_eq!(Route::of(&post, "/v1/audio/speech", &some), Route::Passthrough);
        assert_eq!(Route::of(&post, "/v1/audio/speech/x", &some), Route::Denied);
        assert_eq!(Route::of(&post, "/v1/moderations/a/b", &some), Route::Passthrough);
        assert_eq!(Route::of(&post, "/v1/moderations", &some), Route::Denied);
        assert_eq!(Route::of(&post, "/v1/moderations/../fine_tuning/jobs", &some), Route::Denied);
        assert_eq!(Route::of(&post, "/v1/moderations/%2E%2E/files", &some), Route::Denied);
    }

    #[test]
    fn allow_list_entries_are_validated() {
        let mut problems = Vec::new();
        Passthrough::parse(
            &["v1/x".into(), "/v1/x?y".into(), "/".into(), "/v1/*/y".into(), "/v1/../x".into()],
            &mut problems,
        );
        assert_eq!(problems.len(), 5, "{problems:?}");
    }

    #[test]
    fn credentials_never_leave_in_the_query() {
        assert_eq!(forwarded_query("api-version=2024-06-01"), "api-version=2024-06-01");
        assert_eq!(forwarded_query("api_key=wk-123&limit=5"), "limit=5");
        assert_eq!(forwarded_query("limit=5&API%5FKEY=x&after=file-1"), "limit=5&after=file-1");
        assert_eq!(forwarded_query("x=wk-abc&y=%77k-abc&z=1"), "z=1");
        assert_eq!(forwarded_query("token=a&key=b&access_token=c"), "");
        assert_eq!(forwarded_query("auth=Bearer%20sk-abc&q=+wk-x"), "");
        assert_eq!(forwarded_query("q=%ZZ&limit=1"), "q=%ZZ&limit=1");
    }
}
