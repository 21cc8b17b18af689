//! An OpenAI-compatible mock LLM upstream, for the demo, the tests and the benchmarks. It
//! stands for the outside world: deterministic answers, correct `usage`, streaming with
//! configurable latency and pacing, and fault injection through request headers.
//!
//! Per-request overrides (headers, forwarded as-is by warden):
//! `x-mock-latency-ms` (delay before the response headers), `x-mock-chunks` (content
//! chunks, i.e. completion tokens), `x-mock-chunk-interval-ms` (pause between chunks),
//! `x-mock-pause-after-first-ms` (pause after the first content chunk),
//! `x-mock-status` (answer with that status and an OpenAI-shaped error).
//!
//! Token counts are self-consistent rather than a real tokenizer's: each completion word
//! is one token, and `prompt_tokens` is the number of whitespace-separated words of the
//! prompt plus 3 per chat message. It must be cheap: benchmarks put it behind nginx and
//! warden, so it does no per-request logging and little allocation.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;

use crate::body::{Body, BoxError};

/// Behaviour of the mock; every field can be overridden per request by a header.
#[derive(Clone, Debug)]
pub struct MockOptions {
    /// Delay before the response headers are sent (time to first byte).
    pub latency: Duration,
    /// Content chunks in a streamed response, and completion tokens when `max_tokens`
    /// does not cap it.
    pub chunks: usize,
    /// Pause between two streamed chunks.
    pub chunk_interval: Duration,
}

impl Default for MockOptions {
    fn default() -> Self {
        MockOptions { latency: Duration::ZERO, chunks: 16, chunk_interval: Duration::ZERO }
    }
}

/// A mock running on the current runtime; stops when dropped or shut down.
pub struct MockServer {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl MockServer {
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }
    pub fn shutdown(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// Binds `127.0.0.1:0` and serves in the background.
pub async fn spawn(opts: MockOptions) -> std::io::Result<MockServer> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(run(listener, opts, async {
        let _ = rx.await;
    }));
    Ok(MockServer { addr, stop: Some(tx) })
}

/// Serves until `shutdown` resolves (HTTP/1.1 and h2).
pub async fn run(
    listener: TcpListener,
    opts: MockOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let builder = auto::Builder::new(TokioExecutor::new());
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            () = &mut shutdown => return Ok(()),
        };
        let _ = stream.set_nodelay(true);
        let opts = opts.clone();
        let builder = builder.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let opts = opts.clone();
                async move { Ok::<_, Infallible>(handle(req, opts).await) }
            });
            let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
        });
    }
}

/// Per-request behaviour: the defaults with header overrides applied.
struct Behaviour {
    latency: Duration,
    chunks: usize,
    interval: Duration,
    pause_after_first: Duration,
    status: Option<StatusCode>,
}

fn header_u64(h: &HeaderMap, name: &str) -> Option<u64> {
    h.get(name)?.to_str().ok()?.trim().parse().ok()
}

impl Behaviour {
    fn of(h: &HeaderMap, o: &MockOptions) -> Behaviour {
        Behaviour {
            latency: header_u64(h, "x-mock-latency-ms").map(Duration::from_millis).unwrap_or(o.latency),
            chunks: header_u64(h, "x-mock-chunks").map(|v| v as usize).unwrap_or(o.chunks),
            interval: header_u64(h, "x-mock-chunk-interval-ms").map(Duration::from_millis).unwrap_or(o.chunk_interval),
            pause_after_first: header_u64(h, "x-mock-pause-after-first-ms")
                .map(Duration::from_millis)
                .unwrap_or_default(),
            status: header_u64(h, "x-mock-status").and_then(|s| StatusCode::from_u16(s as u16).ok()),
        }
    }
}

fn full(data: impl Into<Bytes>) -> Body {
    Full::new(data.into()).map_err(|never| match never {}).boxed_unsync()
}

fn json_resp(status: StatusCode, v: &Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(full(serde_json::to_vec(v).expect("JSON serializes")))
        .expect("valid response")
}

fn error(status: StatusCode, kind: &str, message: &str) -> Response<Body> {
    json_resp(status, &json!({"error": {"message": message, "type": kind, "param": null, "code": null}}))
}

async fn handle(req: Request<Incoming>, opts: MockOptions) -> Response<Body> {
    let b = Behaviour::of(req.headers(), &opts);
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(c) => c.to_bytes(),
        Err(_) => return error(StatusCode::BAD_REQUEST, "invalid_request_error", "cannot read body"),
    };
    if !b.latency.is_zero() {
        tokio::time::sleep(b.latency).await;
    }
    if let Some(status) = b.status {
        return error(status, "server_error", "mock error");
    }
    let path = parts.uri.path();
    if path.starts_with("/echo") {
        return echo(&parts, &body);
    }
    match (&parts.method, path) {
        (&Method::GET, "/v1/models") => json_resp(
            StatusCode::OK,
            &json!({"object": "list", "data": MODELS.iter().map(|m| model(m)).collect::<Vec<_>>()}),
        ),
        (&Method::GET, p) if p.starts_with("/v1/models/") => {
            let id = &p["/v1/models/".len()..];
            if MODELS.contains(&id) {
                json_resp(StatusCode::OK, &model(id))
            } else {
                error(StatusCode::NOT_FOUND, "invalid_request_error", "The model does not exist")
            }
        }
        (&Method::POST, "/v1/chat/completions" | "/v1/completions" | "/v1/embeddings" | "/v1/responses") => {
            let req: Value = match serde_json::from_slice(&body) {
                Ok(v @ Value::Object(_)) => v,
                _ => {
                    return error(StatusCode::BAD_REQUEST, "invalid_request_error", "We could not parse the JSON body")
                }
            };
            match path {
                "/v1/chat/completions" => completion(Api::Chat, &req, &b).await,
                "/v1/completions" => completion(Api::Legacy, &req, &b).await,
                "/v1/embeddings" => embeddings(&req),
                _ => responses(&req, &b).await,
            }
        }
        _ => error(StatusCode::NOT_FOUND, "invalid_request_error", "Unknown route"),
    }
}

const MODELS: &[&str] = &["mock-small", "mock-large", "mock-embed"];

fn model(id: &str) -> Value {
    json!({"id": id, "object": "model", "created": 1_700_000_000, "owned_by": "warden-mock"})
}

fn echo(parts: &http::request::Parts, body: &[u8]) -> Response<Body> {
    let mut headers = serde_json::Map::new();
    for name in parts.headers.keys() {
        let joined = parts
            .headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()))
            .collect::<Vec<_>>()
            .join(", ");
        headers.insert(name.as_str().to_string(), Value::String(joined));
    }
    json_resp(
        StatusCode::OK,
        &json!({
            "method": parts.method.as_str(),
            "path": parts.uri.path(),
            "query": parts.uri.query(),
            "headers": headers,
            "body": String::from_utf8_lossy(body),
        }),
    )
}

const WORDS: &[&str] = &[
    "the", "answer", "is", "clear", "river", "light", "model", "token", "stream", "quiet", "north", "bridge", "signal",
    "garden", "copper", "window", "method", "simple", "proof", "number", "seven", "blue", "travel", "paper", "winter",
    "engine", "careful", "result", "valley", "orange", "silver", "harbor",
];

/// Deterministic completion words for a prompt.
fn words_for(prompt: &str, n: usize, choice: usize) -> Vec<&'static str> {
    let mut seed = Sha256::digest(prompt.as_bytes());
    let mut out = Vec::with_capacity(n);
    let mut i = choice;
    while out.len() < n {
        if i % 32 == 0 && i > 0 {
            seed = Sha256::digest(seed);
        }
        out.push(WORDS[seed[i % 32] as usize % WORDS.len()]);
        i += 1;
    }
    out
}

fn text_of(v: &Value, out: &mut String) {
    match v {
        Value::String(s) => {
            out.push(' ');
            out.push_str(s);
        }
        Value::Array(a) => a.iter().for_each(|i| text_of(i, out)),
        Value::Object(m) => {
            for k in ["content", "text"] {
                if let Some(i) = m.get(k) {
                    text_of(i, out);
                }
            }
        }
        _ => {}
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Api {
    Chat,
    Legacy,
}

/// Prompt text and prompt tokens of a request (see the module docs for the count).
fn prompt_of(req: &Value, keys: &[&str]) -> (String, u64) {
    let mut text = String::new();
    let mut messages = 0;
    for k in keys {
        if let Some(v) = req.get(*k) {
            if *k == "messages" || (*k == "input" && v.is_array()) {
                messages += v.as_array().map(Vec::len).unwrap_or(0);
            }
            text_of(v, &mut text);
        }
    }
    let tokens = (text.split_whitespace().count() + 3 * messages).max(1) as u64;
    (text, tokens)
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn new_id(prefix: &str) -> String {
    let n = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{prefix}{:x}", n ^ (n >> 7))
}

type Tx = tokio::sync::mpsc::Sender<Bytes>;

/// A response body fed through a channel by a task: one frame per SSE event, sent the
/// moment the task produces it.
struct ChannelBody(tokio::sync::mpsc::Receiver<Bytes>);

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = BoxError;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.0.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
    }
}

fn sse_response(make: impl FnOnce(Tx) -> tokio::task::JoinHandle<()>) -> Response<Body> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    make(tx);
    Response::builder()
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-cache")
        .body(ChannelBody(rx).boxed_unsync())
        .expect("valid response")
}

async fn send(tx: &Tx, event: String) -> bool {
    tx.send(Bytes::from(event)).await.is_ok()
}

async fn completion(api: Api, req: &Value, b: &Behaviour) -> Response<Body> {
    let model = req.get("model").and_then(Value::as_str).unwrap_or("mock-small").to_string();
    let (prompt, prompt_tokens) = prompt_of(req, if api == Api::Chat { &["messages"] } else { &["prompt"] });
    let max = ["max_tokens", "max_completion_tokens"].iter().find_map(|k| req.get(*k).and_then(Value::as_u64));
    let k = max.map(|m| (m as usize).min(b.chunks)).unwrap_or(b.chunks);
    let finish = if max.is_some_and(|m| (m as usize) < b.chunks) { "length" } else { "stop" };
    let n = req.get("n").and_then(Value::as_u64).unwrap_or(1).clamp(1, 16) as usize;
    let logprobs = req.get("logprobs").is_some_and(|v| v.as_bool() == Some(true) || v.is_u64());
    let usage = json!({"prompt_tokens": prompt_tokens, "completion_tokens": (k * n) as u64, "total_tokens": prompt_tokens + (k * n) as u64});
    let (object, id) = match api {
        Api::Chat => ("chat.completion", new_id("chatcmpl-")),
        Api::Legacy => ("text_completion", new_id("cmpl-")),
    };
    let created = now_secs();
    let stream = req.get("stream").and_then(Value::as_bool).unwrap_or(false);
    if !stream {
        let choices: Vec<Value> = (0..n)
            .map(|i| {
                let words = words_for(&prompt, k, i);
                let text: String = words.iter().map(|w| format!("{w} ")).collect();
                let lp = if logprobs {
                    json!({"content": words.iter().map(|w| json!({"token": format!("{w} "), "logprob": -0.5, "bytes": null, "top_logprobs": []})).collect::<Vec<_>>()})
                } else {
                    Value::Null
                };
                match api {
                    Api::Chat => json!({"index": i, "message": {"role": "assistant", "content": text, "refusal": null}, "logprobs": lp, "finish_reason": finish}),
                    Api::Legacy => json!({"index": i, "text": text, "logprobs": null, "finish_reason": finish}),
                }
            })
            .collect();
        let mut v =
            json!({"id": id, "object": object, "created": created, "model": model, "choices": choices, "usage": usage});
        if api == Api::Chat {
            v["system_fingerprint"] = json!("fp_mock");
        }
        return json_resp(StatusCode::OK, &v);
    }
    let include_usage =
        req.get("stream_options").and_then(|o| o.get("include_usage")).and_then(Value::as_bool).unwrap_or(false);
    let chunk_object = if api == Api::Chat { "chat.completion.chunk" } else { "text_completion" };
    let (interval, pause) = (b.interval, b.pause_after_first);
    sse_response(move |tx| {
        tokio::spawn(async move {
            let event = |choices: Value| {
                let mut v =
                    json!({"id": id, "object": chunk_object, "created": created, "model": model, "choices": choices});
                if api == Api::Chat {
                    v["system_fingerprint"] = json!("fp_mock");
                }
                if include_usage {
                    v["usage"] = Value::Null;
                }
                format!("data: {v}\n\n")
            };
            if api == Api::Chat {
                let first: Vec<Value> = (0..n)
                    .map(|i| json!({"index": i, "delta": {"role": "assistant", "content": "", "refusal": null}, "logprobs": null, "finish_reason": null}))
                    .collect();
                if !send(&tx, event(json!(first))).await {
                    return;
                }
            }
            let words: Vec<Vec<&str>> = (0..n).map(|i| words_for(&prompt, k, i)).collect();
            for j in 0..k {
                if j > 0 && !interval.is_zero() {
                    tokio::time::sleep(interval).await;
                }
                let choices: Vec<Value> = words
                    .iter()
                    .enumerate()
                    .map(|(i, choice_words)| {
                        let w = format!("{} ", choice_words[j]);
                        match api {
                            Api::Chat => {
                                json!({"index": i, "delta": {"content": w}, "logprobs": null, "finish_reason": null})
                            }
                            Api::Legacy => json!({"index": i, "text": w, "logprobs": null, "finish_reason": null}),
                        }
                    })
                    .collect();
                if !send(&tx, event(json!(choices))).await {
                    return;
                }
                if j == 0 && !pause.is_zero() {
                    tokio::time::sleep(pause).await;
                }
            }
            let last: Vec<Value> = (0..n)
                .map(|i| match api {
                    Api::Chat => json!({"index": i, "delta": {}, "logprobs": null, "finish_reason": finish}),
                    Api::Legacy => json!({"index": i, "text": "", "logprobs": null, "finish_reason": finish}),
                })
                .collect();
            if !send(&tx, event(json!(last))).await {
                return;
            }
            if include_usage {
                let mut v = json!({"id": id, "object": chunk_object, "created": created, "model": model, "choices": [], "usage": usage});
                if api == Api::Chat {
                    v["system_fingerprint"] = json!("fp_mock");
                }
                if !send(&tx, format!("data: {v}\n\n")).await {
                    return;
                }
            }
            send(&tx, "data: [DONE]\n\n".to_string()).await;
        })
    })
}

fn embeddings(req: &Value) -> Response<Body> {
    let model = req.get("model").and_then(Value::as_str).unwrap_or("mock-embed");
    let inputs: Vec<String> = match req.get("input") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => {
            items.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect()
        }
        Some(Value::Array(items)) if items.iter().all(Value::is_u64) => vec![Value::Array(items.clone()).to_string()],
        Some(Value::Array(items)) => items.iter().map(Value::to_string).collect(),
        _ => return error(StatusCode::BAD_REQUEST, "invalid_request_error", "`input` is required"),
    };
    let base64 = req.get("encoding_format").and_then(Value::as_str) == Some("base64");
    let mut tokens = 0u64;
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, text)| {
            tokens += text.split_whitespace().count().max(1) as u64;
            let digest = Sha256::digest(text.as_bytes());
            let vector: Vec<f32> = (0..8).map(|j| (digest[j] as f32 - 127.5) / 127.5).collect();
            let embedding = if base64 {
                let bytes: Vec<u8> = vector.iter().flat_map(|f| f.to_le_bytes()).collect();
                Value::String(base64_encode(&bytes))
            } else {
                json!(vector)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    json_resp(
        StatusCode::OK,
        &json!({"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}),
    )
}

fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn response_object(id: &str, model: &str, status: &str, text: &str, usage: Option<Value>, created: u64) -> Value {
    let output = if text.is_empty() && status != "completed" {
        json!([])
    } else {
        json!([{"type": "message", "id": format!("msg_{id}"), "status": "completed", "role": "assistant",
                 "content": [{"type": "output_text", "text": text, "annotations": []}]}])
    };
    json!({
        "id": id, "object": "response", "created_at": created, "status": status, "model": model,
        "output": output, "usage": usage, "error": null, "incomplete_details": null, "instructions": null,
        "metadata": {}, "parallel_tool_calls": true, "temperature": 1.0, "top_p": 1.0, "tool_choice": "auto",
        "tools": [], "text": {"format": {"type": "text"}}, "truncation": "disabled"
    })
}

async fn responses(req: &Value, b: &Behaviour) -> Response<Body> {
    let model = req.get("model").and_then(Value::as_str).unwrap_or("mock-small").to_string();
    let (prompt, prompt_tokens) = prompt_of(req, &["instructions", "input"]);
    let max = req.get("max_output_tokens").and_then(Value::as_u64);
    let k = max.map(|m| (m as usize).min(b.chunks)).unwrap_or(b.chunks);
    let words = words_for(&prompt, k, 0);
    let text: String = words.iter().map(|w| format!("{w} ")).collect();
    let usage = json!({"input_tokens": prompt_tokens, "output_tokens": k, "total_tokens": prompt_tokens + k as u64,
        "input_tokens_details": {"cached_tokens": 0}, "output_tokens_details": {"reasoning_tokens": 0}});
    let id = new_id("resp_");
    let created = now_secs();
    if !req.get("stream").and_then(Value::as_bool).unwrap_or(false) {
        return json_resp(StatusCode::OK, &response_object(&id, &model, "completed", &text, Some(usage), created));
    }
    let interval = b.interval;
    sse_response(move |tx| {
        tokio::spawn(async move {
            let mut seq = 0u64;
            let mut ev = |name: &str, mut data: Value| {
                data["type"] = json!(name);
                data["sequence_number"] = json!(seq);
                seq += 1;
                format!("event: {name}\ndata: {data}\n\n")
            };
            let item = format!("msg_{id}");
            let created_ev = ev(
                "response.created",
                json!({"response": response_object(&id, &model, "in_progress", "", None, created)}),
            );
            if !send(&tx, created_ev).await {
                return;
            }
            for (j, w) in words.iter().enumerate() {
                if j > 0 && !interval.is_zero() {
                    tokio::time::sleep(interval).await;
                }
                let d = ev(
                    "response.output_text.delta",
                    json!({"item_id": item, "output_index": 0, "content_index": 0, "delta": format!("{w} ")}),
                );
                if !send(&tx, d).await {
                    return;
                }
            }
            let done = ev(
                "response.output_text.done",
                json!({"item_id": item, "output_index": 0, "content_index": 0, "text": text}),
            );
            if !send(&tx, done).await {
                return;
            }
            let completed = ev(
                "response.completed",
                json!({"response": response_object(&id, &model, "completed", &text, Some(usage), created)}),
            );
            send(&tx, completed).await;
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_known_values() {
        assert_eq!(base64_encode(b""), "");
        assert_eq!(base64_encode(b"f"), "Zg==");
        assert_eq!(base64_encode(b"fo"), "Zm8=");
        assert_eq!(base64_encode(b"foo"), "Zm9v");
        assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn answers_are_deterministic_per_prompt() {
        assert_eq!(words_for("a", 40, 0), words_for("a", 40, 0));
        assert_ne!(words_for("a", 40, 0), words_for("b", 40, 0));
        assert_eq!(words_for("a", 5, 0).len(), 5);
    }

    #[test]
    fn prompt_tokens_count_words_and_messages() {
        let req = json!({"messages": [{"role": "user", "content": "one two"}, {"role": "user", "content": [{"type": "text", "text": "three"}]}]});
        assert_eq!(prompt_of(&req, &["messages"]).1, 3 + 6);
    }
}
