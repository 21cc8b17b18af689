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
    /// Only `POST` to one of the four paths counts as an LLM call.
    pub fn of(method: &http::Method, path: &str) -> Option<LlmRoute> {
        if method != http::Method::POST {
            return None;
        }
        match path {
            "/v1/chat/completions" => Some(LlmRoute::ChatCompletions),
            "/v1/completions" => Some(LlmRoute::Completions),
            "/v1/embeddings" => Some(LlmRoute::Embeddings),
            "/v1/responses" => Some(LlmRoute::Responses),
            _ => None,
        }
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

/// What a client asked an LLM route for.
#[derive(Debug, Clone)]
pub struct LlmRequest {
    pub route: LlmRoute,
    pub model: Option<String>,
    pub stream: bool,
    /// The client itself asked for the usage chunk of a stream.
    pub client_wants_stream_usage: bool,
    /// `max_tokens`, `max_completion_tokens` or `max_output_tokens`, whichever is set.
    pub max_tokens: Option<u64>,
    pub n: Option<u64>,
    /// The parsed body, for policy and detection.
    pub body: Map<String, Value>,
    /// The policy changed `body` (stripped parameters): it must be re-serialized.
    pub modified: bool,
}

impl LlmRequest {
    pub fn parse(route: LlmRoute, bytes: &[u8]) -> Result<LlmRequest, ProxyError> {
        let value: Value = serde_json::from_slice(bytes).map_err(|e| ProxyError::MalformedJson(e.to_string()))?;
        let Value::Object(body) = value else {
            return Err(ProxyError::MalformedJson("the request body must be a JSON object".into()));
        };
        let stream = match body.get("stream") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                return Err(ProxyError::InvalidRequest {
                    message: "`stream` must be a boolean".into(),
                    param: Some("stream".into()),
                })
            }
        };
        let client_wants_stream_usage =
            body.get("stream_options").and_then(|o| o.get("include_usage")).and_then(Value::as_bool).unwrap_or(false);
        let max_tokens = ["max_tokens", "max_completion_tokens", "max_output_tokens"]
            .iter()
            .find_map(|k| body.get(*k).and_then(Value::as_u64));
        Ok(LlmRequest {
            route,
            model: body.get("model").and_then(Value::as_str).map(str::to_owned),
            stream,
            client_wants_stream_usage,
            max_tokens,
            n: body.get("n").and_then(Value::as_u64),
            body,
            modified: false,
        })
    }

    /// True when warden must ask the upstream for the usage chunk (and hide it again).
    pub fn needs_injected_usage(&self) -> bool {
        self.stream && self.route.supports_stream_usage() && !self.client_wants_stream_usage
    }

    /// The body to send upstream: the client's bytes untouched, or with
    /// `stream_options.include_usage` turned on when warden needs the usage chunk, or
    /// re-serialized when the policy stripped parameters.
    pub fn upstream_body(&self, original: Bytes) -> Bytes {
        if !self.needs_injected_usage() && !self.modified {
            return original;
        }
        if !self.modified && !self.body.contains_key("stream_options") {
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
        let mut body = self.body.clone();
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
        prompt_text_of(&self.body)
    }

    /// The prompt text in pieces (each string [`LlmRequest::prompt_text`] joins), with
    /// whether the piece belongs to the request's newest message: the last item of
    /// `messages` / `input`, or `prompt`. The other pieces (system prompt, instructions,
    /// earlier turns of a conversation) usually come again in the next request.
    pub fn for_each_prompt_part(&self, mut f: impl FnMut(&str, bool)) {
        for key in ["instructions", "messages", "prompt", "input", "system"] {
            let Some(v) = self.body.get(key) else { continue };
            match (key, v) {
                ("messages" | "input", Value::Array(items)) => {
                    let last = items.len().saturating_sub(1);
                    for (i, item) in items.iter().enumerate() {
                        visit_text(item, &mut |t| f(t, i == last));
                    }
                }
                ("messages" | "input" | "prompt", v) => visit_text(v, &mut |t| f(t, true)),
                (_, v) => visit_text(v, &mut |t| f(t, false)),
            }
        }
    }

    /// Number of messages (chat) or input items, for per-message token overhead.
    pub fn message_count(&self) -> usize {
        ["messages", "input"]
            .iter()
            .find_map(|k| self.body.get(*k).and_then(Value::as_array).map(Vec::len))
            .unwrap_or(1)
    }
}

/// The prompt text of a parsed LLM request body (see [`LlmRequest::prompt_text`]).
pub fn prompt_text_of(body: &Map<String, Value>) -> String {
    let mut out = String::new();
    for key in ["instructions", "messages", "prompt", "input", "system"] {
        if let Some(v) = body.get(key) {
            collect_text(v, &mut out);
        }
    }
    out
}

/// Appends every string that is prompt content, joined by newlines (see [`visit_text`]).
pub(crate) fn collect_text(v: &Value, out: &mut String) {
    visit_text(v, &mut |s| {
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(s);
    });
}

/// Calls `f` with every string that is prompt content: plain strings, `content`/`text`
/// fields of message objects and content parts. Keys such as `role` or `type` are not
/// content.
fn visit_text(v: &Value, f: &mut impl FnMut(&str)) {
    match v {
        Value::String(s) => f(s),
        Value::Array(items) => items.iter().for_each(|i| visit_text(i, f)),
        Value::Object(map) => {
            for key in ["content", "text", "input_text"] {
                if let Some(inner) = map.get(key) {
                    visit_text(inner, f);
                }
            }
        }
        _ => {}
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
    fn malformed_and_non_object_bodies_are_rejected() {
        for bad in ["{", "[1,2]", "\"x\"", ""] {
            let e = LlmRequest::parse(LlmRoute::ChatCompletions, bad.as_bytes()).unwrap_err();
            assert_eq!(e.status(), 400, "{bad}");
        }
        let e = LlmRequest::parse(LlmRoute::ChatCompletions, br#"{"stream":"yes"}"#).unwrap_err();
        assert!(matches!(e, ProxyError::InvalidRequest { ref param, .. } if param.as_deref() == Some("stream")));
    }

    #[test]
    fn usage_is_injected_by_splicing_when_absent() {
        let src = r#"{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
        let r = chat(src);
        let out = r.upstream_body(Bytes::from(src));
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["stream_options"]["include_usage"], true);
        assert_eq!(v["messages"][0]["content"], "hi");
    }

    #[test]
    fn usage_is_injected_into_existing_stream_options() {
        let src = r#"{"stream":true,"stream_options":{"include_usage":false,"x":1}}"#;
        let out = chat(src).upstream_body(Bytes::from(src));
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["stream_options"]["include_usage"], true);
        assert_eq!(v["stream_options"]["x"], 1);
    }

    #[test]
    fn bodies_are_untouched_when_no_injection_is_needed() {
        for src in [r#"{"stream":false}"#, r#"{"stream":true,"stream_options":{"include_usage":true}}"#] {
            let b = Bytes::from(src);
            assert_eq!(chat(src).upstream_body(b.clone()), b);
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
