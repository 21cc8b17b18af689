//! Request understanding for the LLM routes: which API a request calls and what it asks
//! for (model, streaming, parameters), learned by parsing the JSON body once.
//!
//! Other paths are not parsed: they are authenticated and forwarded untouched.

use bytes::{Bytes, BytesMut};
use serde_json::{Map, Value};

use crate::error::ProxyError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LlmRoute {
    ChatCompletions,
    Completions,
    Embeddings,
    Responses,
}

impl LlmRoute {
    pub const ALL: [LlmRoute; 4] =
        [LlmRoute::ChatCompletions, LlmRoute::Completions, LlmRoute::Embeddings, LlmRoute::Responses];

    /// Only `POST` to one of the four paths counts as an LLM call.
    pub fn of(method: &http::Method, path: &str) -> Option<LlmRoute> {
        if method != http::Method::POST {
            return None;
        }
        LlmRoute::ALL.into_iter().find(|r| r.path() == path)
    }

    /// The route's path.
    pub fn path(self) -> &'static str {
        match self {
            LlmRoute::ChatCompletions => "/v1/chat/completions",
            LlmRoute::Completions => "/v1/completions",
            LlmRoute::Embeddings => "/v1/embeddings",
            LlmRoute::Responses => "/v1/responses",
        }
    }

    /// A bounded label for metrics and logs.
    pub fn label(self) -> &'static str {
        match self {
            LlmRoute::ChatCompletions => "chat_completions",
            LlmRoute::Completions => "completions",
            LlmRoute::Embeddings => "embeddings",
            LlmRoute::Responses => "responses",
        }
    }

    /// Routes whose streams can carry a final usage chunk on request
    /// (`stream_options.include_usage`).
    fn supports_stream_usage(self) -> bool {
        matches!(self, LlmRoute::ChatCompletions | LlmRoute::Completions)
    }
}

mod view;

pub use view::{Item, Items, Scalar, Text, View};

/// What a client asked an LLM route for: the body as it came, and what one pass over it
/// found (see [`view`]). The body itself is kept, not a tree of it: it is forwarded as
/// it is (unless something must change) and the audit log writes it as it is.
#[derive(Debug, Clone)]
pub struct LlmRequest {
    pub route: LlmRoute,
    /// The body exactly as the client sent it.
    pub raw: Bytes,
    pub view: View,
    /// The same allocation as `view.model`.
    pub model: Option<std::sync::Arc<str>>,
    pub stream: bool,
    /// The client itself asked for the usage chunk of a stream.
    pub client_wants_stream_usage: bool,
    /// `max_tokens`, `max_completion_tokens` or `max_output_tokens`, whichever is set.
    pub max_tokens: Option<u64>,
    pub n: Option<u64>,
    /// Parameters to remove before forwarding (policy or the detector's `strip`).
    pub strip: Vec<&'static str>,
    /// Parameters to cap at 1 before forwarding (`n`, `best_of`).
    pub cap: Vec<&'static str>,
}

/// The keys that may carry the completion budget, in the order they are read.
pub const MAX_TOKENS_KEYS: [&str; 3] = ["max_tokens", "max_completion_tokens", "max_output_tokens"];

impl LlmRequest {
    pub fn parse(route: LlmRoute, bytes: &[u8]) -> Result<LlmRequest, ProxyError> {
        LlmRequest::parse_bytes(route, Bytes::copy_from_slice(bytes))
    }

    /// Reads a body (kept as it is: give it a buffer of its own, see `stack.rs`).
    pub fn parse_bytes(route: LlmRoute, raw: Bytes) -> Result<LlmRequest, ProxyError> {
        let view = match View::parse(&raw) {
            Ok(Ok(view)) => view,
            Ok(Err(view::NotAnObject)) => {
                return Err(ProxyError::MalformedJson("the request body must be a JSON object".into()))
            }
            Err(e) => return Err(ProxyError::MalformedJson(e.to_string())),
        };
        let stream = match view.stream {
            Scalar::Absent | Scalar::Null => false,
            Scalar::Bool(b) => b,
            _ => {
                return Err(ProxyError::InvalidRequest {
                    message: "`stream` must be a boolean".into(),
                    param: Some("stream".into()),
                })
            }
        };
        let max_tokens =
            [view.max_tokens, view.max_completion_tokens, view.max_output_tokens].iter().find_map(|s| s.as_u64());
        Ok(LlmRequest {
            route,
            model: view.model.clone(),
            stream,
            client_wants_stream_usage: view.include_usage.as_bool().unwrap_or(false),
            max_tokens,
            n: view.n.as_u64(),
            raw,
            view,
            strip: Vec::new(),
            cap: Vec::new(),
        })
    }

    /// The first of [`MAX_TOKENS_KEYS`] the body has, whatever its value.
    pub fn max_tokens_key(&self) -> Option<&'static str> {
        let v = &self.view;
        [
            (v.max_tokens, MAX_TOKENS_KEYS[0]),
            (v.max_completion_tokens, MAX_TOKENS_KEYS[1]),
            (v.max_output_tokens, MAX_TOKENS_KEYS[2]),
        ]
        .into_iter()
        .find(|(s, _)| s.is_present())
        .map(|(_, k)| k)
    }

    /// True when the body is forwarded changed: parameters stripped or capped.
    pub fn modified(&self) -> bool {
        !self.strip.is_empty() || !self.cap.is_empty()
    }

    /// True when warden must ask the upstream for the usage chunk (and hide it again).
    pub fn needs_injected_usage(&self) -> bool {
        self.stream && self.route.supports_stream_usage() && !self.client_wants_stream_usage
    }

    /// The body to send upstream: the client's bytes untouched, or with
    /// `stream_options.include_usage` turned on when warden needs the usage chunk, or
    /// re-serialized when parameters were stripped or capped.
    pub fn upstream_body(&self) -> Bytes {
        let original = &self.raw;
        if !self.needs_injected_usage() && !self.modified() {
            return original.clone();
        }
        if !self.modified() && !self.view.stream_options.is_present() {
            // Splice the field in after the opening brace instead of re-serializing:
            // cheap, and keeps the client's formatting. The object is not empty (it has
            // `stream`), so the trailing comma is valid.
            if let Some(pos) = original.iter().position(|b| *b == b'{') {
                const FIELD: &[u8] = br#""stream_options":{"include_usage":true},"#;
                let mut out = BytesMut::with_capacity(original.len() + FIELD.len());
                out.extend_from_slice(&original[..=pos]);
                out.extend_from_slice(FIELD);
                out.extend_from_slice(&original[pos + 1..]);
                return out.freeze();
            }
        }
        // The rare path (a policy or the detector changed the request): a tree, edited.
        let Ok(Value::Object(mut body)) = serde_json::from_slice::<Value>(original) else { return original.clone() };
        for key in &self.strip {
            body.remove(*key);
        }
        for key in &self.cap {
            body.insert((*key).to_string(), Value::from(1));
        }
        if self.needs_injected_usage() {
            let opts = body.entry("stream_options").or_insert_with(|| Value::Object(Map::new()));
            if !opts.is_object() {
                *opts = Value::Object(Map::new());
            }
            opts.as_object_mut().expect("just made an object").insert("include_usage".into(), Value::Bool(true));
        }
        Bytes::from(serde_json::to_vec(&body).expect("re-serializing parsed JSON cannot fail"))
    }

    /// All prompt text of the request (messages, prompt, input, instructions), joined by
    /// newlines: what token estimates and detection features read.
    pub fn prompt_text(&self) -> String {
        let mut out = String::new();
        self.for_each_prompt_part(|t, _| {
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(t);
        });
        out
    }

    /// The prompt text in pieces (each string [`LlmRequest::prompt_text`] joins), with
    /// whether the piece belongs to the request's newest message: the last item of
    /// `messages` / `input`, or `prompt`. The other pieces (system prompt, instructions,
    /// earlier turns of a conversation) usually come again in the next request.
    pub fn for_each_prompt_part(&self, mut f: impl FnMut(&str, bool)) {
        let (v, raw) = (&self.view, &self.raw[..]);
        let all = |r: &std::ops::Range<u32>, newest: bool, f: &mut dyn FnMut(&str, bool)| {
            for t in v.texts_in(raw, r) {
                f(t, newest);
            }
        };
        if let Some(r) = &v.instructions {
            all(r, false, &mut f);
        }
        let items = |items: &Option<Items>, f: &mut dyn FnMut(&str, bool)| match items {
            Some(Items::List(list)) => {
                let last = list.len().saturating_sub(1);
                for (i, item) in list.iter().enumerate() {
                    all(&item.content, i == last, f);
                    all(&item.rest, i == last, f);
                }
            }
            Some(Items::Other(r)) => all(r, true, f),
            None => {}
        };
        items(&v.messages, &mut f);
        if let Some(r) = &v.prompt {
            all(r, true, &mut f);
        }
        items(&v.input, &mut f);
        if let Some(r) = &v.system {
            all(r, false, &mut f);
        }
    }

    /// Number of messages (chat) or input items, for per-message token overhead.
    pub fn message_count(&self) -> usize {
        [&self.view.messages, &self.view.input]
            .into_iter()
            .find_map(|i| match i {
                Some(Items::List(l)) => Some(l.len()),
                _ => None,
            })
            .unwrap_or(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(body: &str) -> LlmRequest {
        LlmRequest::parse(LlmRoute::ChatCompletions, body.as_bytes()).unwrap()
    }

    #[test]
    fn routes_are_post_only() {
        assert_eq!(LlmRoute::of(&http::Method::POST, "/v1/chat/completions"), Some(LlmRoute::ChatCompletions));
        assert_eq!(LlmRoute::of(&http::Method::GET, "/v1/chat/completions"), None);
        assert_eq!(LlmRoute::of(&http::Method::POST, "/v1/models"), None);
    }

    #[test]
    fn parses_model_stream_and_limits() {
        let r = chat(r#"{"model":"m","stream":true,"max_tokens":7,"n":2,"messages":[]}"#);
        assert_eq!(r.model.as_deref(), Some("m"));
        assert!(r.stream);
        assert_eq!(r.max_tokens, Some(7));
        assert_eq!(r.n, Some(2));
        assert!(r.needs_injected_usage());
    }

    #[test]
    fn the_model_name_and_roles_are_kept_once() {
        use std::borrow::Cow;
        let r = chat(
            r#"{"model":"m","messages":[{"role":"user","content":"a"},{"role":"critic","content":"b"},{"role":7,"content":"c"}]}"#,
        );
        // The request, its exchange and its audit record share one allocation of the name.
        assert!(std::sync::Arc::ptr_eq(r.model.as_ref().unwrap(), r.view.model.as_ref().unwrap()));
        let Some(view::Items::List(items)) = &r.view.messages else { panic!("a list of messages") };
        let roles: Vec<_> = items.iter().map(|i| i.role.clone()).collect();
        assert!(matches!(roles[0], Some(Cow::Borrowed("user"))), "{roles:?}");
        assert!(matches!(&roles[1], Some(Cow::Owned(s)) if s == "critic"), "{roles:?}");
        assert_eq!(roles[2], None, "a role that is not a string reads as none");
        assert!(items.iter().all(|i| i.has_role));
    }

    #[test]
    fn malformed_and_non_object_bodies_are_rejected() {
        for bad in ["{", "[1,2]", "\"x\"", ""] {
            let e = LlmRequest::parse(LlmRoute::ChatCompletions, bad.as_bytes()).unwrap_err();
            assert_eq!(e.status(), 400, "{bad}");
        }
        // Not UTF-8: refused with serde_json's own message, as when every string was
        // checked by the parser.
        let bad = b"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"caf\xe9\"}]}";
        let e = LlmRequest::parse(LlmRoute::ChatCompletions, bad).unwrap_err();
        assert_eq!(e.status(), 400);
        let want = serde_json::from_slice::<serde_json::Value>(bad).unwrap_err().to_string();
        assert!(e.to_string().contains(&want), "{e} / {want}");
        let e = LlmRequest::parse(LlmRoute::ChatCompletions, br#"{"stream":"yes"}"#).unwrap_err();
        assert!(matches!(e, ProxyError::InvalidRequest { ref param, .. } if param.as_deref() == Some("stream")));
    }

    #[test]
    fn usage_is_injected_by_splicing_when_absent() {
        let src = r#"{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
        let r = chat(src);
        let out = r.upstream_body();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["stream_options"]["include_usage"], true);
        assert_eq!(v["messages"][0]["content"], "hi");
    }

    #[test]
    fn usage_is_injected_into_existing_stream_options() {
        let src = r#"{"stream":true,"stream_options":{"include_usage":false,"x":1}}"#;
        let out = chat(src).upstream_body();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["stream_options"]["include_usage"], true);
        assert_eq!(v["stream_options"]["x"], 1);
    }

    #[test]
    fn bodies_are_untouched_when_no_injection_is_needed() {
        for src in [r#"{"stream":false}"#, r#"{"stream":true,"stream_options":{"include_usage":true}}"#] {
            let b = Bytes::from(src);
            assert_eq!(chat(src).upstream_body(), b);
        }
        let r = LlmRequest::parse(LlmRoute::Responses, br#"{"stream":true}"#).unwrap();
        assert!(!r.needs_injected_usage());
    }

    #[test]
    fn prompt_parts_mark_the_newest_message() {
        let r = chat(
            r#"{"model":"m","messages":[{"role":"system","content":"sys"},{"role":"user","content":"q1"},
            {"role":"assistant","content":"a1"},{"role":"user","content":[{"type":"text","text":"q2"},{"type":"text","text":"more"}]}]}"#,
        );
        let mut parts = Vec::new();
        r.for_each_prompt_part(|t, newest| parts.push((t.to_string(), newest)));
        let want = [("sys", false), ("q1", false), ("a1", false), ("q2", true), ("more", true)];
        assert_eq!(parts, want.map(|(t, n)| (t.to_string(), n)));
        let joined: Vec<&str> = parts.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(joined.join("\n"), r.prompt_text(), "the same pieces prompt_text joins");
        let c = LlmRequest::parse(LlmRoute::Completions, br#"{"model":"m","prompt":"p"}"#).unwrap();
        let mut parts = Vec::new();
        c.for_each_prompt_part(|t, newest| parts.push((t.to_string(), newest)));
        assert_eq!(parts, [("p".to_string(), true)]);
    }

    #[test]
    fn prompt_text_reads_messages_parts_and_prompts() {
        let r = chat(
            r#"{"messages":[{"role":"system","content":"be brief"},
               {"role":"user","content":[{"type":"text","text":"hello"}]}]}"#,
        );
        assert_eq!(r.prompt_text(), "be brief\nhello");
        assert_eq!(r.message_count(), 2);
        let c = LlmRequest::parse(LlmRoute::Completions, br#"{"prompt":["a","b"]}"#).unwrap();
        assert_eq!(c.prompt_text(), "a\nb");
    }
}
