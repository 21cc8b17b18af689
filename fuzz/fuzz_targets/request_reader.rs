//! The one-pass request reader (`View::parse`, `LlmRequest::parse`) against serde_json's
//! tree of the same bytes: it accepts exactly the bodies serde_json accepts as a JSON
//! object (refusing the others with serde_json's own message), reads the same model,
//! stream flag, parameters and prompt text, and `upstream_body()` is the same JSON with
//! only the intended changes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};
use warden::llm::{LlmRequest, LlmRoute, Scalar, View, MAX_TOKENS_KEYS};

fuzz_target!(|data: &[u8]| check(data));

fn check(data: &[u8]) {
    let reference = serde_json::from_slice::<Value>(data);
    let view = View::parse(data);
    let obj = match (reference, &view) {
        // serde_json's tree stops at 128 levels; so does the reader, but the comparison
        // of what each read means nothing there.
        (Err(e), _) if e.to_string().starts_with("recursion limit exceeded") => return,
        (Err(r), Err(v)) => {
            assert_eq!(r.to_string(), v.to_string(), "refused, but not with serde_json's message");
            return;
        }
        (Ok(Value::Object(obj)), Ok(Ok(_))) => obj,
        (Ok(v), Ok(Err(_))) if !v.is_object() => return,
        (r, v) => panic!("the reader and serde_json disagree on {:?}: {r:?} / {v:?}", String::from_utf8_lossy(data)),
    };
    let stream_ok = matches!(obj.get("stream"), None | Some(Value::Null | Value::Bool(_)));
    let counts_ok = COUNTS.iter().all(|k| count(obj.get(*k)).is_ok());
    for route in LlmRoute::ALL {
        let req = LlmRequest::parse(route, data);
        assert_eq!(
            req.is_ok(),
            stream_ok && counts_ok,
            "a body is refused exactly when `stream` is not a boolean or a count is not a count"
        );
        let Ok(mut req) = req else { continue };
        check_reading(&req, &obj);
        check_upstream_body(&req, &obj);
        // The rare path: a policy strips and caps parameters (re-serialized).
        req.strip = vec!["logprobs", "top_logprobs", "logit_bias"];
        req.cap = vec!["n"];
        check_upstream_body(&req, &obj);
        req.strip.clear();
        check_upstream_body(&req, &obj);
    }
}

/// The parameters read as counts.
const COUNTS: [&str; 6] = ["max_tokens", "max_completion_tokens", "max_output_tokens", "n", "best_of", "top_logprobs"];

/// A count as the tree reads it: absent or null is none; a number whose value is whole
/// and not negative is that value (past u64, the largest); anything else is no count.
fn count(v: Option<&Value>) -> Result<Option<u64>, ()> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match (n.as_u64(), n.as_f64()) {
            (Some(u), _) => Ok(Some(u)),
            (None, Some(x)) if x >= 0.0 && x.fract() == 0.0 => Ok(Some(x as u64)),
            _ => Err(()),
        },
        Some(_) => Err(()),
    }
}

/// The shape of a value as the reader's `Scalar` describes it.
fn shape(v: Option<&Value>) -> Scalar {
    match v {
        None => Scalar::Absent,
        Some(Value::Null) => Scalar::Null,
        Some(Value::Bool(b)) => Scalar::Bool(*b),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(u) => Scalar::U64(u),
            None => Scalar::Number(n.as_f64().expect("a JSON number is an f64")),
        },
        Some(Value::String(_)) => Scalar::Str,
        Some(Value::Array(_)) => Scalar::Array,
        Some(Value::Object(m)) => Scalar::Object { empty: m.is_empty() },
    }
}

fn check_reading(req: &LlmRequest, obj: &Map<String, Value>) {
    let v = &req.view;
    assert_eq!(req.model.as_deref(), obj.get("model").and_then(Value::as_str), "model");
    assert_eq!(req.stream, obj.get("stream").and_then(Value::as_bool).unwrap_or(false), "stream");
    let params = [
        ("stream", v.stream),
        ("stream_options", v.stream_options),
        ("max_tokens", v.max_tokens),
        ("max_completion_tokens", v.max_completion_tokens),
        ("max_output_tokens", v.max_output_tokens),
        ("n", v.n),
        ("best_of", v.best_of),
        ("temperature", v.temperature),
        ("logprobs", v.logprobs),
        ("top_logprobs", v.top_logprobs),
        ("logit_bias", v.logit_bias),
    ];
    for (key, got) in params {
        assert_eq!(got, shape(obj.get(key)), "{key}");
    }
    let include_usage = match obj.get("stream_options") {
        Some(Value::Object(o)) => shape(o.get("include_usage")),
        _ => Scalar::Absent,
    };
    assert_eq!(v.include_usage, include_usage, "stream_options.include_usage");
    assert_eq!(req.client_wants_stream_usage, include_usage == Scalar::Bool(true));
    let each: Vec<(&str, u64)> =
        MAX_TOKENS_KEYS.into_iter().filter_map(|k| count(obj.get(k)).ok().flatten().map(|t| (k, t))).collect();
    assert_eq!(req.max_tokens_each().collect::<Vec<_>>(), each, "max_tokens keys");
    assert_eq!(req.max_tokens, each.iter().map(|(_, t)| *t).max(), "max_tokens");
    assert_eq!(req.n, count(obj.get("n")).ok().flatten(), "n");
    let count = ["messages", "input"].iter().find_map(|k| obj.get(*k).and_then(Value::as_array)).map_or(1, Vec::len);
    assert_eq!(req.message_count(), count, "message_count");
    assert_eq!(req.prompt_text(), prompt_text(obj), "prompt_text");
    let mut parts = Vec::new();
    req.for_each_prompt_part(|t, _| parts.push(t.to_string()));
    assert_eq!(joined(parts.iter().map(String::as_str)), req.prompt_text());
}

/// The prompt text as `src/llm/view.rs` defines it, read from the tree.
fn prompt_text(obj: &Map<String, Value>) -> String {
    fn texts<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::String(s) => out.push(s),
            Value::Array(a) => a.iter().for_each(|x| texts(x, out)),
            Value::Object(m) => {
                for k in ["content", "text", "input_text"] {
                    if let Some(x) = m.get(k) {
                        texts(x, out);
                    }
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    for k in ["instructions", "messages", "prompt", "input", "system"] {
        if let Some(v) = obj.get(k) {
            texts(v, &mut out);
        }
    }
    joined(out.into_iter())
}

/// Joined as `LlmRequest::prompt_text` joins: a newline before each piece but the first
/// non-empty text.
fn joined<'a>(parts: impl Iterator<Item = &'a str>) -> String {
    let mut out = String::new();
    for t in parts {
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(t);
    }
    out
}

fn check_upstream_body(req: &LlmRequest, obj: &Map<String, Value>) {
    let body = req.upstream_body();
    if !req.needs_injected_usage() && !req.modified() {
        assert_eq!(body, req.raw, "forwarded untouched");
        return;
    }
    let out = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(o)) => o,
        other => panic!("upstream body is not a JSON object: {other:?}: {:?}", String::from_utf8_lossy(&body)),
    };
    for k in &req.strip {
        assert!(!out.contains_key(*k), "{k} stripped");
    }
    for k in &req.cap {
        assert_eq!(out.get(*k), Some(&Value::from(1)), "{k} capped");
    }
    if req.needs_injected_usage() {
        assert_eq!(out["stream_options"]["include_usage"], Value::Bool(true), "usage asked for");
    }
    // Everything else as the client sent it.
    let changed = |k: &str| req.strip.contains(&k) || req.cap.contains(&k) || k == "stream_options";
    // Compared after the same trip through serde_json (without `float_roundtrip` it may
    // read the digits it wrote of a float as the next float over): one trip each, or none
    // where the body was spliced.
    let again = |v: &Value| serde_json::from_str::<Value>(&v.to_string()).expect("serde_json reads what it wrote");
    for (k, v) in obj.iter().filter(|(k, _)| !changed(k)) {
        let got = out.get(k);
        assert!(got == Some(v) || got == Some(&again(v)), "{k} kept: {got:?} / {v:?}");
    }
    for k in out.keys() {
        assert!(obj.contains_key(k) || changed(k), "{k} added");
    }
    if let (Some(Value::Object(before)), Some(Value::Object(after))) =
        (obj.get("stream_options"), out.get("stream_options"))
    {
        for (k, v) in before.iter().filter(|(k, _)| *k != "include_usage") {
            let got = after.get(k);
            assert!(got == Some(v) || got == Some(&again(v)), "stream_options.{k} kept: {got:?} / {v:?}");
        }
    }
}
