//! Request understanding for the LLM routes: which API a request calls and what it asks
//! for (model, streaming, parameters), learned by parsing the JSON body once. The routes
//! are OpenAI's (chat completions, completions, embeddings, responses) and Anthropic's
//! Messages API (`/v1/messages`, `/v1/messages/count_tokens`), read by the same pass:
//! `system`, `messages` with content blocks, `max_tokens`, `stream`, `thinking` (tool definitions are forwarded as they are).
//!
//! Other paths are not parsed: they are authenticated and forwarded untouched.

use bytes::{Bytes, BytesMut};
use serde_json::{Map, Value};

pub use crate::error::Dialect;
use crate::error::ProxyError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LlmRoute {
    ChatCompletions,
    Completions,
    Embeddings,
    Responses,
    /// Anthropic's Messages API.
    Messages,
    /// Anthropic's `/v1/messages/count_tokens`: a prompt counted, nothing generated.
    CountTokens,
}

impl LlmRoute {
    pub const ALL: [LlmRoute; 6] = [
        LlmRoute::ChatCompletions,
        LlmRoute::Completions,
        LlmRoute::Embeddings,
        LlmRoute::Responses,
        LlmRoute::Messages,
        LlmRoute::CountTokens,
    ];

    /// Only `POST` to one of these paths counts as an LLM call.
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
            LlmRoute::Messages => "/v1/messages",
            LlmRoute::CountTokens => "/v1/messages/count_tokens",
        }
    }

    /// The provider API the route belongs to.
    pub fn dialect(self) -> Dialect {
        match self {
            LlmRoute::Messages | LlmRoute::CountTokens => Dialect::Anthropic,
            _ => Dialect::OpenAi,
        }
    }

    /// Whether the route generates anything (count_tokens and embeddings do not).
    pub fn generates(self) -> bool {
        !matches!(self, LlmRoute::Embeddings | LlmRoute::CountTokens)
    }

    /// A bounded label for metrics and logs.
    pub fn label(self) -> &'static str {
        match self {
            LlmRoute::ChatCompletions => "chat_completions",
            LlmRoute::Completions => "completions",
            LlmRoute::Embeddings => "embeddings",
            LlmRoute::Responses => "responses",
            LlmRoute::Messages => "messages",
            LlmRoute::CountTokens => "count_tokens",
        }
    }

    /// Routes whose streams can carry a final usage chunk on request
    /// (`stream_options.include_usage`).
    fn supports_stream_usage(self) -> bool {
        matches!(self, LlmRoute::ChatCompletions | LlmRoute::Completions)
    }
}

mod view;

pub use view::{Item, Items, NotACount, Scalar, Text, View};

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
    /// The largest of `max_tokens`, `max_completion_tokens` and `max_output_tokens` the
    /// body sets (see [`Scalar::count`] for how the values are read).
    pub max_tokens: Option<u64>,
    /// `n`, read the same way.
    pub n: Option<u64>,
    /// Parameters to remove before forwarding (policy or the detector's `strip`).
    pub strip: Vec<&'static str>,
    /// Parameters to cap at 1 before forwarding (`n`, `best_of`).
    pub cap: Vec<&'static str>,
}

/// The keys that may carry the completion budget, in the order they are read.
pub const MAX_TOKENS_KEYS: [&str; 3] = ["max_tokens", "max_completion_tokens", "max_output_tokens"];

/// `value` of the parameter `key` as a count ([`Scalar::count`]), or a 400 naming it.
fn count(key: &str, value: Scalar) -> Result<Option<u64>, ProxyError> {
    value.count().map_err(|NotACount| ProxyError::InvalidRequest {
        message: format!("`{key}` must be a non-negative integer."),
        param: Some(key.into()),
    })
}

impl LlmRequest {
    /// Prompt tokens of a request with the real tokenizer, plus the per-message overhead
    /// chat formats add. Each message is counted on its own (as chat formats tokenize them);
    /// the counts of long earlier messages are remembered, since clients resend the whole
    /// conversation with every turn.
    pub fn prompt_tokens(&self, counter: &crate::tokens::TokenCounter) -> u64 {
        let mut total = 0;
        self.for_each_prompt_part(|text, newest| {
            total += if newest { counter.count(text) } else { counter.count_repeated(text) };
        });
        total + 3 * self.message_count() as u64
    }

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
        // The counts the limits reserve by (`max_tokens` × `n`), the policy caps and the
        // detector reads, checked here whatever the tier: a value that cannot be read must
        // not pass as absent (and reserve the tier's default).
        let v = &view;
        let mut max_tokens = None;
        for (key, value) in
            MAX_TOKENS_KEYS.into_iter().zip([v.max_tokens, v.max_completion_tokens, v.max_output_tokens])
        {
            max_tokens = max_tokens.max(count(key, value)?);
        }
        let n = count("n", v.n)?;
        count("best_of", v.best_of)?;
        count("top_logprobs", v.top_logprobs)?;
        Ok(LlmRequest {
            route,
            model: view.model.clone(),
            stream,
            client_wants_stream_usage: view.include_usage.as_bool().unwrap_or(false),
            max_tokens,
            n,
            raw,
            view,
            strip: Vec::new(),
            cap: Vec::new(),
        })
    }

    /// Each of [`MAX_TOKENS_KEYS`] the body sets, with its value, in that order.
    pub fn max_tokens_each(&self) -> impl Iterator<Item = (&'static str, u64)> {
        let v = &self.view;
        // The values were checked by `parse_bytes`: none is an error here.
        MAX_TOKENS_KEYS
            .into_iter()
            .zip([v.max_tokens, v.max_completion_tokens, v.max_output_tokens])
            .filter_map(|(key, value)| value.count().ok().flatten().map(|t| (key, t)))
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

    /// Found by the `request_reader` fuzz target: values the reader skipped were not
    /// checked as serde_json checks them, so it took bodies serde_json refuses, and
    /// `upstream_body` (which parses an edited body again) forwarded them unedited: a
    /// parameter the policy strips reached the upstream.
    #[test]
    fn bodies_serde_json_refuses_are_refused_even_where_the_reader_skips() {
        for bad in [
            &b"{\"logprobs\":true,\"pad\":1e400}"[..],
            b"{\"logprobs\":true,\"pad\":\"\\ud800\"}",
            b"{\"logprobs\":true,\"pad\":[\"caf\xe9\"]}",
            b"[{\"mo\xff\xffdel\":\"m\"}]",
            b"{\"stream_options\":{\"x\":-1e999}}",
        ] {
            let want = serde_json::from_slice::<Value>(bad).unwrap_err().to_string();
            let e = LlmRequest::parse(LlmRoute::ChatCompletions, bad).unwrap_err();
            assert_eq!(e.status(), 400);
            assert!(e.to_string().contains(&want), "{e} / {want}");
        }
        let mut r = chat(r#"{"logprobs":true,"pad":1e300}"#);
        r.strip = vec!["logprobs"];
        let v: Value = serde_json::from_slice(&r.upstream_body()).unwrap();
        assert!(v.get("logprobs").is_none(), "stripped");
    }

    #[test]
    fn counts_are_read_by_their_meaning_in_any_json_spelling() {
        let big = Some(u64::MAX);
        for (body, max_tokens, n) in [
            (r#"{"max_tokens":5000000.0}"#, Some(5_000_000), None),
            (r#"{"max_tokens":5e6,"n":1}"#, Some(5_000_000), Some(1)),
            (r#"{"max_tokens":5E+6,"n":2.0}"#, Some(5_000_000), Some(2)),
            // Beyond u64: very large, not absent.
            (r#"{"max_tokens":18446744073709551616}"#, big, None),
            (r#"{"max_output_tokens":1e30,"n":1e300}"#, big, big),
            (r#"{"n":100.0}"#, None, Some(100)),
            (r#"{"n":1e2}"#, None, Some(100)),
            (r#"{"n":1000e-1}"#, None, Some(100)),
            (r#"{"n":0,"max_tokens":-0.0}"#, Some(0), Some(0)),
            (r#"{"max_tokens":null,"n":null,"best_of":null,"top_logprobs":null}"#, None, None),
            // Several keys: the largest is what may be asked for.
            (r#"{"max_tokens":10,"max_completion_tokens":5e9}"#, Some(5_000_000_000), None),
            (r#"{"max_completion_tokens":7,"max_tokens":3}"#, Some(7), None),
            // A repeated key: the last one counts, as in any JSON object.
            (r#"{"n":"2","n":3,"max_tokens":1e9,"max_tokens":4}"#, Some(4), Some(3)),
        ] {
            let r = chat(body);
            assert_eq!((r.max_tokens, r.n), (max_tokens, n), "{body}");
        }
    }

    #[test]
    fn anything_else_in_a_count_is_refused_naming_the_parameter() {
        for (body, param) in [
            (r#"{"max_tokens":"5000000"}"#, "max_tokens"),
            (r#"{"n":"100"}"#, "n"),
            (r#"{"n":-1}"#, "n"),
            (r#"{"n":-1e2}"#, "n"),
            (r#"{"max_tokens":5.5}"#, "max_tokens"),
            (r#"{"max_tokens":1e-1}"#, "max_tokens"),
            (r#"{"max_tokens":true}"#, "max_tokens"),
            (r#"{"n":[]}"#, "n"),
            (r#"{"n":{}}"#, "n"),
            (r#"{"max_completion_tokens":-5}"#, "max_completion_tokens"),
            (r#"{"max_output_tokens":{"a":1}}"#, "max_output_tokens"),
            (r#"{"best_of":"2"}"#, "best_of"),
            (r#"{"top_logprobs":1.5}"#, "top_logprobs"),
            // Whichever key it is, with a valid one beside it.
            (r#"{"max_tokens":10,"max_completion_tokens":"5e9"}"#, "max_completion_tokens"),
            (r#"{"n":3,"n":-3}"#, "n"),
        ] {
            let e = LlmRequest::parse(LlmRoute::ChatCompletions, body.as_bytes()).unwrap_err();
            assert_eq!(e.status(), 400, "{body}");
            assert_eq!(e.code(), "invalid_request", "{body}");
            let ProxyError::InvalidRequest { message, param: Some(named) } = e else { panic!("{body}") };
            assert_eq!(named, param, "{body}");
            assert_eq!(message, format!("`{param}` must be a non-negative integer."), "{body}");
        }
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
