//! An OpenAI- and Anthropic-compatible mock LLM upstream, for the demo, the integration
//! tests and the benchmarks. It stands for the outside world: answers shaped exactly like
//! OpenAI's and Anthropic's (so the official SDKs parse them), deterministic text,
//! self-consistent `usage`, streaming with configurable latency and pacing, and fault
//! injection through request headers.
//!
//! # Routes
//! OpenAI: `/v1/chat/completions`, `/v1/completions`, `/v1/responses`, `/v1/embeddings`,
//! `/v1/models`, Files and Batches. Anthropic: `POST /v1/messages` (`max_tokens` required,
//! as Anthropic's) and `POST /v1/messages/count_tokens` (`{"input_tokens": P}`), which
//! answer errors in Anthropic's shape (`{"type":"error","error":{"type":…,"message":…}}`).
//! `/echo…` returns what it received.
//!
//! # Per-request overrides
//! Headers, which warden forwards as-is, override [`MockOptions`] for one request:
//! - `x-mock-latency-ms`: delay before the response headers;
//! - `x-mock-chunks`: content chunks, i.e. answer words when `max_tokens` does not cap;
//! - `x-mock-chunk-interval-ms`: pause between two content chunks;
//! - `x-mock-pause-after-first-ms`: pause after the first content chunk of a stream, so a
//!   test can check the first chunk arrives before the pause ends (nothing buffers it);
//! - `x-mock-status`: answer with that status (400–999: 600 and above are not HTTP
//!   statuses, for testing what a proxy does with them; other values are ignored) and an
//!   OpenAI-shaped error body (Anthropic-shaped on Anthropic's routes, its type following
//!   the status: 401 `authentication_error`, 429 `rate_limit_error`, 529
//!   `overloaded_error`, other 4xx `invalid_request_error`, the rest `api_error`, …);
//! - `x-mock-event-bytes`: the first content chunk of a stream carries this many bytes of
//!   extra content (one event that large);
//! - `x-mock-split-first-ms`: the first content chunk of a stream is written in two halves
//!   this long apart (an event that arrives in pieces).
//!
//! # Content and usage
//! The answer for a choice is `k` words from a fixed list, each followed by a space, picked
//! by a SHA-256 hash of the prompt text (and the choice index), so the same prompt always
//! gets the same answer. `k = min(chunks, max_tokens)`; each word is one token, so
//! `completion_tokens = k` per choice, summed over the `n` choices. The finish reason is
//! `length` when `max_tokens` capped the answer, else `stop`.
//!
//! Prompt tokens are not a real tokenizer's either, but a count anyone can redo by hand:
//! the whitespace-separated words of all prompt text (message contents, text parts,
//! `prompt`, Responses `instructions` and `input`, Anthropic `system` and the text and
//! `tool_result` blocks of `messages`, not images, tool inputs or thinking; a token-id
//! array counts one per id), plus 3 per chat message, Responses input item or Anthropic
//! message (OpenAI's per-message overhead), and at least 1.
//!
//! The Messages API answers the same `k` words in one `text` block (`stop_reason`
//! `max_tokens` when capped, else `end_turn`). With `tools` (and `tool_choice` not
//! `none`), unless the last message carries a `tool_result` or the answer was capped, a
//! `tool_use` block follows (the first tool, or `tool_choice`'s, with `input` `{}`; one
//! token) and `stop_reason` is `tool_use`. Streamed, each content chunk is one
//! `text_delta`.
//!
//! # Reasoning
//! A reasoning text is 12 words: `Let me think step by step. ` and 6 words picked like the
//! answer's but from a hash apart, so it never changes the answer. Its words count as
//! output tokens on top of the answer's, and it streams in deltas of 4 words, without
//! pauses, before the first content chunk. Who gets one:
//! - Messages with `thinking` `enabled` (or `adaptive`): a first `thinking` block with a
//!   deterministic `signature`; a `budget_tokens` below 12 cuts it to that many words.
//! - Chat completions for a model named `…reason…` (e.g. `mock-reasoner`) or with a
//!   `reasoning_effort` (not `"none"`): `message.reasoning_content` (streamed:
//!   `delta.reasoning_content`) and `usage.completion_tokens_details.reasoning_tokens`.
//! - Responses for a `…reason…` model or with `reasoning` set (not to effort `none`): a
//!   `reasoning` item (its `summary_text`, and `encrypted_content` when `include` asks)
//!   before the message, which moves to output index 1;
//!   `output_tokens_details.reasoning_tokens`.
//!
//! # Speed
//! Benchmarks put it behind nginx and behind warden and compare the two, so it must never
//! be the bottleneck: no locks, no per-request logging, no pretty printing, and stream
//! events are formatted lazily, one per body frame, without a task or channel per stream.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{ready, Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::time::Sleep;

use crate::body::{full, json_response, Body, BoxError};

/// Behaviour of the mock; every field can be overridden per request by a header (see the
/// module docs).
#[derive(Clone, Debug)]
pub struct MockOptions {
    /// Delay before the response headers are sent (time to first byte).
    pub latency: Duration,
    /// Number of content chunks in a streamed response (and of completion tokens when
    /// `max_tokens` does not cap it). Default 16.
    pub chunks: usize,
    /// Pause between two streamed chunks. Default 0.
    pub chunk_interval: Duration,
}

impl Default for MockOptions {
    fn default() -> Self {
        MockOptions { latency: Duration::ZERO, chunks: 16, chunk_interval: Duration::ZERO }
    }
}

/// A mock serving on the current runtime; it stops when dropped or shut down.
#[derive(Debug)]
pub struct MockServer {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl MockServer {
    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting connections and closes the open ones once their responses end.
    pub fn shutdown(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        if let Some(stop) = self.stop.take() {
            // The server may already be gone with its runtime; nothing left to stop then.
            let _ = stop.send(());
        }
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        self.stop_now();
    }
}

/// Binds `127.0.0.1:0` and serves in the background on the current runtime.
pub async fn spawn(opts: MockOptions) -> std::io::Result<MockServer> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(run(listener, opts, async {
        // A dropped sender stops the server as well as an explicit send does.
        let _ = stopped.await;
    }));
    Ok(MockServer { addr, stop: Some(stop) })
}

/// How long in-flight responses may go on after shutdown was asked for. Bounded so that a
/// stream paused by a test header cannot hold a shutdown up.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Serves until `shutdown` resolves. Accepts HTTP/1.1 and h2 (prior knowledge) on the same
/// port. After `shutdown`, stops accepting, lets in-flight responses finish (for at most
/// [`SHUTDOWN_GRACE`]) and returns.
pub async fn run(
    listener: TcpListener,
    opts: MockOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let builder = auto::Builder::new(TokioExecutor::new());
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                // Per-connection failures (reset before accept, out of descriptors) are
                // transient; back off briefly rather than spin or give up.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Stream events are small writes that must leave at once.
        let _ = stream.set_nodelay(true);
        let opts = opts.clone();
        let service = service_fn(move |req: Request<Incoming>| {
            let behaviour = Behaviour::of(req.headers(), &opts);
            async move { Ok::<_, Infallible>(handle(req, behaviour).await) }
        });
        let conn = graceful.watch(builder.serve_connection(TokioIo::new(stream), service).into_owned());
        tokio::spawn(async move {
            // A client going away mid-response is normal here, not worth reporting.
            let _ = conn.await;
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await;
    Ok(())
}

/// What one request gets: the options with its header overrides applied.
struct Behaviour {
    latency: Duration,
    chunks: usize,
    interval: Duration,
    pause_after_first: Duration,
    status: Option<StatusCode>,
    event_bytes: usize,
    split_first: Option<Duration>,
}

fn header_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

fn header_ms(headers: &HeaderMap, name: &str) -> Option<Duration> {
    header_u64(headers, name).map(Duration::from_millis)
}

impl Behaviour {
    fn of(headers: &HeaderMap, opts: &MockOptions) -> Behaviour {
        Behaviour {
            latency: header_ms(headers, "x-mock-latency-ms").unwrap_or(opts.latency),
            chunks: header_u64(headers, "x-mock-chunks")
                .map_or(opts.chunks, |c| usize::try_from(c).unwrap_or(usize::MAX)),
            interval: header_ms(headers, "x-mock-chunk-interval-ms").unwrap_or(opts.chunk_interval),
            pause_after_first: header_ms(headers, "x-mock-pause-after-first-ms").unwrap_or_default(),
            status: header_u64(headers, "x-mock-status")
                .filter(|s| (400..1000).contains(s))
                .and_then(|s| StatusCode::from_u16(s as u16).ok()),
            event_bytes: header_u64(headers, "x-mock-event-bytes").unwrap_or(0).min(1 << 30) as usize,
            split_first: header_ms(headers, "x-mock-split-first-ms"),
        }
    }
}

/// The body of every injected failure; static because load tests hammer it.
const MOCK_ERROR: &str = r#"{"error":{"message":"mock error","type":"server_error","param":null,"code":null}}"#;

fn error(status: StatusCode, kind: &str, message: &str) -> Response<Body> {
    json_response(status, &json!({"error": {"message": message, "type": kind, "param": null, "code": null}}))
}

fn invalid(message: &str) -> Response<Body> {
    error(StatusCode::BAD_REQUEST, "invalid_request_error", message)
}

async fn handle(req: Request<Incoming>, b: Behaviour) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return invalid("The request body could not be read."),
    };
    if !b.latency.is_zero() {
        tokio::time::sleep(b.latency).await;
    }
    let path = parts.uri.path();
    if let Some(status) = b.status {
        let body = if anthropic::owns(path) { anthropic::injected(status) } else { MOCK_ERROR };
        return Response::builder()
            .status(status)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(full(Bytes::from_static(body.as_bytes())))
            .expect("static response parts are valid");
    }
    if path.starts_with("/echo") {
        return echo(&parts, &body);
    }
    if path.starts_with("/v1/files") || path.starts_with("/v1/batches") {
        return files::handle(&parts, body).await;
    }
    match (&parts.method, path) {
        (&Method::GET, "/v1/models") => {
            json_response(StatusCode::OK, &json!({"object": "list", "data": MODELS.map(model)}))
        }
        (&Method::GET, p) if p.starts_with("/v1/models/") => {
            let id = &p["/v1/models/".len()..];
            if MODELS.contains(&id) {
                json_response(StatusCode::OK, &model(id))
            } else {
                let message = format!("The model `{id}` does not exist or you do not have access to it.");
                let body = json!({"error": {"message": message, "type": "invalid_request_error", "param": null, "code": "model_not_found"}});
                json_response(StatusCode::NOT_FOUND, &body)
            }
        }
        (&Method::POST, "/v1/chat/completions" | "/v1/completions" | "/v1/embeddings" | "/v1/responses") => {
            let req = match serde_json::from_slice::<Value>(&body) {
                Ok(v) if v.is_object() => v,
                _ => return invalid("We could not parse the JSON body of your request."),
            };
            match path {
                "/v1/chat/completions" => completion(Api::Chat, &req, &b),
                "/v1/completions" => completion(Api::Legacy, &req, &b),
                "/v1/embeddings" => embeddings(&req),
                _ => responses(&req, &b),
            }
        }
        (&Method::POST, "/v1/messages" | "/v1/messages/count_tokens") => {
            let req = match serde_json::from_slice::<Value>(&body) {
                Ok(v) if v.is_object() => v,
                _ => return anthropic::invalid("There was an error parsing the body of your request as JSON."),
            };
            if path == "/v1/messages" {
                anthropic::messages(&req, &b)
            } else {
                anthropic::count_tokens(&req)
            }
        }
        (_, p) if anthropic::owns(p) => anthropic::error(StatusCode::NOT_FOUND, "not_found_error", "Not Found"),
        _ => error(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            &format!("Unknown request URL: {} {path}", parts.method),
        ),
    }
}

const MODELS: [&str; 3] = ["mock-small", "mock-large", "mock-embed"];

/// The Files and Batch APIs, kept in memory: uploads (multipart), file objects and
/// contents, batches (created `validating`; retrieved `completed`, with an output file
/// holding one mock completion per input line), cancellation.
mod files {
    use std::collections::HashMap;
    use std::sync::{LazyLock, Mutex};

    use bytes::Bytes;
    use http::{Method, Response, StatusCode};
    use serde_json::{json, Value};

    use super::{error, invalid, new_id, now_secs, Body};
    use crate::body::{full, json_response};

    struct File {
        object: Value,
        content: Bytes,
    }

    static FILES: LazyLock<Mutex<HashMap<String, File>>> = LazyLock::new(Default::default);
    static BATCHES: LazyLock<Mutex<HashMap<String, Value>>> = LazyLock::new(Default::default);

    fn not_found(kind: &str, id: &str) -> Response<Body> {
        error(StatusCode::NOT_FOUND, "invalid_request_error", &format!("No such {kind} object: {id}"))
    }

    fn store(purpose: &str, filename: &str, content: Bytes) -> Value {
        let id = new_id("file-");
        let object = json!({"id": id, "object": "file", "bytes": content.len(), "created_at": now_secs(),
            "filename": filename, "purpose": purpose, "status": "processed"});
        FILES.lock().unwrap().insert(id, File { object: object.clone(), content });
        object
    }

    async fn upload(parts: &http::request::Parts, body: Bytes) -> Response<Body> {
        let Some(boundary) = parts
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|ct| multer::parse_boundary(ct).ok())
        else {
            return invalid("Uploads must be multipart/form-data.");
        };
        let stream = futures_util::stream::once(async move { Ok::<_, std::convert::Infallible>(body) });
        let mut multipart = multer::Multipart::new(stream, boundary);
        let (mut purpose, mut file) = (None, None);
        loop {
            match multipart.next_field().await {
                Ok(Some(field)) => {
                    let name = field.name().unwrap_or("").to_string();
                    let filename = field.file_name().unwrap_or("upload").to_string();
                    let Ok(data) = field.bytes().await else { return invalid("The upload was cut off.") };
                    match name.as_str() {
                        "purpose" => purpose = Some(String::from_utf8_lossy(&data).into_owned()),
                        "file" => file = Some((filename, data)),
                        _ => {}
                    }
                }
                Ok(None) => break,
                Err(_) => return invalid("The upload was cut off."),
            }
        }
        match (purpose, file) {
            (Some(purpose), Some((filename, content))) => {
                json_response(StatusCode::OK, &store(&purpose, &filename, content))
            }
            _ => invalid("An upload needs `purpose` and `file`."),
        }
    }

    /// The output line of one input line of a batch.
    fn output_line(line: &str) -> Option<Value> {
        let req: Value = serde_json::from_str(line).ok()?;
        let prompt = req["body"]["messages"].to_string();
        let words = prompt.split_whitespace().count() as u64;
        Some(json!({"id": new_id("batch_req_"), "custom_id": req["custom_id"], "error": null,
            "response": {"status_code": 200, "request_id": new_id("req_"), "body": {
                "id": new_id("chatcmpl-"), "object": "chat.completion", "model": req["body"]["model"],
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "batched answer "}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": words, "completion_tokens": 2, "total_tokens": words + 2}}}}))
    }

    pub async fn handle(parts: &http::request::Parts, body: Bytes) -> Response<Body> {
        let path = parts.uri.path().to_string();
        let segments: Vec<&str> = path.trim_start_matches("/v1/").split('/').collect();
        match (&parts.method, segments.as_slice()) {
            (&Method::POST, ["files"]) => upload(parts, body).await,
            (&Method::GET, ["files"]) => {
                // `?filename=` narrows the list (tests ask whether an upload arrived).
                let wanted = parts.uri.query().and_then(|q| q.strip_prefix("filename=")).map(str::to_string);
                let files = FILES.lock().unwrap();
                let data: Vec<&Value> = files
                    .values()
                    .map(|f| &f.object)
                    .filter(|o| wanted.as_deref().is_none_or(|w| o["filename"] == w))
                    .collect();
                json_response(StatusCode::OK, &json!({"object": "list", "data": data}))
            }
            (&Method::GET, ["files", id]) => match FILES.lock().unwrap().get(*id) {
                Some(f) => json_response(StatusCode::OK, &f.object),
                None => not_found("File", id),
            },
            (&Method::GET, ["files", id, "content"]) => match FILES.lock().unwrap().get(*id) {
                Some(f) => Response::builder()
                    .header(http::header::CONTENT_TYPE, "application/octet-stream")
                    .body(full(f.content.clone()))
                    .expect("static response parts are valid"),
                None => not_found("File", id),
            },
            (&Method::DELETE, ["files", id]) => match FILES.lock().unwrap().remove(*id) {
                Some(_) => json_response(StatusCode::OK, &json!({"id": id, "object": "file", "deleted": true})),
                None => not_found("File", id),
            },
            (&Method::POST, ["batches"]) => {
                let Ok(req) = serde_json::from_slice::<Value>(&body) else { return invalid("Not JSON.") };
                let input = req["input_file_id"].as_str().unwrap_or("").to_string();
                let Some(content) = FILES.lock().unwrap().get(&input).map(|f| f.content.clone()) else {
                    return not_found("File", &input);
                };
                let text = String::from_utf8_lossy(&content);
                let outputs: Vec<Value> =
                    text.lines().filter(|l| !l.trim().is_empty()).filter_map(output_line).collect();
                let jsonl: String = outputs.iter().map(|o| format!("{o}\n")).collect();
                let output = store("batch_output", "batch_output.jsonl", Bytes::from(jsonl));
                let id = new_id("batch_");
                let batch = json!({"id": id, "object": "batch", "endpoint": req["endpoint"], "input_file_id": input,
                    "completion_window": req["completion_window"], "status": "validating", "created_at": now_secs(),
                    "output_file_id": null, "error_file_id": null,
                    "request_counts": {"total": outputs.len(), "completed": 0, "failed": 0}});
                let mut done = batch.clone();
                done["status"] = json!("completed");
                done["output_file_id"] = output["id"].clone();
                done["request_counts"]["completed"] = json!(outputs.len());
                BATCHES.lock().unwrap().insert(id, done);
                json_response(StatusCode::OK, &batch)
            }
            (&Method::GET, ["batches", id]) => match BATCHES.lock().unwrap().get(*id) {
                Some(b) => json_response(StatusCode::OK, b),
                None => not_found("Batch", id),
            },
            (&Method::POST, ["batches", id, "cancel"]) => match BATCHES.lock().unwrap().get_mut(*id) {
                Some(b) => {
                    b["status"] = json!("cancelling");
                    json_response(StatusCode::OK, b)
                }
                None => not_found("Batch", id),
            },
            _ => error(StatusCode::NOT_FOUND, "invalid_request_error", &format!("Unknown request URL: {path}")),
        }
    }
}

fn model(id: &str) -> Value {
    json!({"id": id, "object": "model", "created": 1_700_000_000, "owned_by": "warden-mock"})
}

/// Everything the mock received, for tests that check what the proxy forwarded.
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
        headers.insert(name.as_str().to_owned(), Value::String(joined));
    }
    json_response(
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

/// Completion vocabulary: 64 plain ASCII words, so a hash byte picks one uniformly and no
/// word ever needs JSON escaping.
const WORDS: [&str; 64] = [
    "the", "answer", "is", "clear", "river", "light", "model", "token", "stream", "quiet", "north", "bridge", "signal",
    "garden", "copper", "window", "method", "simple", "proof", "number", "seven", "blue", "travel", "paper", "winter",
    "engine", "careful", "result", "valley", "orange", "silver", "harbor", "forest", "stone", "mirror", "candle",
    "anchor", "meadow", "thunder", "pencil", "island", "lantern", "marble", "echo", "summit", "velvet", "canyon",
    "ember", "glacier", "hollow", "ivory", "jasmine", "kettle", "ladder", "maple", "nectar", "oasis", "pebble",
    "quartz", "ribbon", "saddle", "timber", "umbra", "willow",
];

/// The prompt as far as the answer and the count depend on it.
struct Prompt {
    digest: [u8; 32],
    tokens: u64,
}

impl Prompt {
    /// Hashes and counts the text found in `parts`; `messages` is how many messages they
    /// hold (3 tokens each). Walks the JSON in place instead of joining it into a string.
    fn of<'a>(parts: impl IntoIterator<Item = Option<&'a Value>>, messages: usize) -> Prompt {
        let mut hasher = Sha256::new();
        let mut words = 0usize;
        for part in parts.into_iter().flatten() {
            visit(part, &mut hasher, &mut words);
        }
        Prompt { digest: hasher.finalize().into(), tokens: (words + 3 * messages).max(1) as u64 }
    }
}

/// Text is in strings, in `content` (chat and Responses messages) and `text` (content
/// parts); numbers are token ids of a pre-tokenized prompt.
fn visit(v: &Value, hasher: &mut Sha256, words: &mut usize) {
    match v {
        Value::String(s) => {
            hasher.update(s.as_bytes());
            // A separator, so that ["ab", "c"] and ["a", "bc"] hash differently.
            hasher.update(b"\n");
            *words += s.split_whitespace().count();
        }
        Value::Number(n) => {
            hasher.update(n.to_string().as_bytes());
            hasher.update(b"\n");
            *words += 1;
        }
        Value::Array(items) => items.iter().for_each(|item| visit(item, hasher, words)),
        Value::Object(map) => {
            for key in ["content", "text"] {
                if let Some(inner) = map.get(key) {
                    visit(inner, hasher, words);
                }
            }
        }
        Value::Null | Value::Bool(_) => {}
    }
}

/// The endless deterministic word sequence of one choice: hash bytes pick words, and the
/// block is re-hashed every 32 words. Lazy, so a long stream costs no memory up front.
struct Words {
    block: [u8; 32],
    at: usize,
}

impl Words {
    fn new(prompt: &Prompt, choice: usize) -> Words {
        let block = Sha256::new().chain_update(prompt.digest).chain_update((choice as u64).to_le_bytes()).finalize();
        Words { block: block.into(), at: 0 }
    }

    fn word(&mut self) -> &'static str {
        if self.at == self.block.len() {
            self.block = Sha256::digest(self.block).into();
            self.at = 0;
        }
        let w = WORDS[self.block[self.at] as usize % WORDS.len()];
        self.at += 1;
        w
    }
}

/// How every reasoning text opens; then come words of the reasoning sequence.
const REASONING_LEAD: [&str; 6] = ["Let", "me", "think", "step", "by", "step."];
/// Words (tokens) of a reasoning text; an Anthropic `budget_tokens` below it caps it.
const REASONING_WORDS: usize = 12;
/// Reasoning streams in deltas of this many words.
const REASONING_DELTA_WORDS: usize = 4;

/// The deterministic reasoning text of one choice: [`REASONING_LEAD`], then words hashed
/// from the prompt and choice apart from the answer's, each followed by a space.
struct Reasoning {
    said: usize,
    words: Words,
}

impl Reasoning {
    fn new(prompt: &Prompt, choice: usize) -> Reasoning {
        let block = Sha256::new()
            .chain_update(prompt.digest)
            .chain_update((choice as u64).to_le_bytes())
            .chain_update(b"reasoning")
            .finalize();
        Reasoning { said: 0, words: Words { block: block.into(), at: 0 } }
    }

    /// Appends the next `n` words, each followed by a space.
    fn push(&mut self, n: usize, out: &mut String) {
        for _ in 0..n {
            let word = match REASONING_LEAD.get(self.said) {
                Some(lead) => lead,
                None => self.words.word(),
            };
            self.said += 1;
            out.push_str(word);
            out.push(' ');
        }
    }

    /// The first `n` words of the reasoning of `choice`.
    fn text(prompt: &Prompt, choice: usize, n: usize) -> String {
        let mut text = String::with_capacity(n * 8);
        Reasoning::new(prompt, choice).push(n, &mut text);
        text
    }
}

/// A deterministic opaque string for the prompt (a thinking signature, encrypted
/// reasoning): base64 of a hash.
fn opaque(prompt: &Prompt, tag: &[u8]) -> String {
    base64_encode(&Sha256::new().chain_update(prompt.digest).chain_update(tag).finalize())
}

/// The log probability reported for every chosen token; alternatives get lower ones.
const CHOSEN_LOGPROB: f64 = -0.25;

/// The chosen word first, then the words after it in the list, each less likely.
fn alternatives(word: &str, top: usize) -> impl Iterator<Item = (String, f64)> {
    let at = WORDS.iter().position(|w| *w == word).unwrap_or(0);
    (0..top).map(move |r| (format!("{} ", WORDS[(at + r) % WORDS.len()]), CHOSEN_LOGPROB - r as f64))
}

/// One entry of a chat `logprobs.content` list.
fn chat_logprob(word: &str, top: usize) -> Value {
    let token = format!("{word} ");
    let top_logprobs: Vec<Value> = alternatives(word, top)
        .map(|(t, logprob)| json!({"token": t, "logprob": logprob, "bytes": t.as_bytes()}))
        .collect();
    json!({"token": token, "logprob": CHOSEN_LOGPROB, "bytes": token.as_bytes(), "top_logprobs": top_logprobs})
}

/// A legacy completions `logprobs` object for `words`, the first at text offset `offset`.
fn legacy_logprobs(words: &[&str], top: usize, mut offset: usize) -> Value {
    let mut text_offset = Vec::with_capacity(words.len());
    for w in words {
        text_offset.push(offset);
        offset += w.len() + 1;
    }
    let top_logprobs: Vec<serde_json::Map<String, Value>> =
        words.iter().map(|w| alternatives(w, top).map(|(t, lp)| (t, json!(lp))).collect()).collect();
    json!({
        "tokens": words.iter().map(|w| format!("{w} ")).collect::<Vec<_>>(),
        "token_logprobs": vec![CHOSEN_LOGPROB; words.len()],
        "top_logprobs": top_logprobs,
        "text_offset": text_offset,
    })
}

/// `k` and the finish reason: `max` caps the configured chunk count.
fn capped(chunks: usize, max: Option<u64>) -> (usize, &'static str) {
    match max.map(|m| usize::try_from(m).unwrap_or(usize::MAX)) {
        Some(m) if m < chunks => (m, "length"),
        _ => (chunks, "stop"),
    }
}

fn u64_field(req: &Value, key: &str) -> Option<u64> {
    req.get(key).and_then(Value::as_u64)
}

fn model_of(req: &Value) -> String {
    req.get("model").and_then(Value::as_str).unwrap_or("mock-small").to_owned()
}

/// Whether an OpenAI-style request reasons: a model named `…reason…`, or a reasoning
/// setting (`reasoning_effort`, Responses `reasoning`) other than null or `"none"`.
fn reasons(model: &str, setting: Option<&Value>) -> bool {
    model.contains("reason")
        || setting
            .is_some_and(|s| !s.is_null() && s.as_str() != Some("none") && s.get("effort") != Some(&json!("none")))
}

fn is_stream(req: &Value) -> bool {
    req.get("stream").and_then(Value::as_bool).unwrap_or(false)
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// A process-unique id: the start second keeps ids of two runs apart, the counter ids of
/// one run.
fn new_id(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("{prefix}mock{:x}{:06x}", now_secs(), NEXT.fetch_add(1, Ordering::Relaxed))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Api {
    /// `/v1/chat/completions`
    Chat,
    /// `/v1/completions`
    Legacy,
}

/// OpenAI accepts at most 128 choices; the cap also bounds the work one request can ask for.
const MAX_N: u64 = 128;

fn completion(api: Api, req: &Value, b: &Behaviour) -> Response<Body> {
    let model = model_of(req);
    let (prompt, max, logprobs) = match api {
        Api::Chat => {
            let messages = req.get("messages").and_then(Value::as_array).map_or(0, Vec::len);
            let max = u64_field(req, "max_completion_tokens").or_else(|| u64_field(req, "max_tokens"));
            let logprobs = (req.get("logprobs") == Some(&Value::Bool(true)))
                .then(|| u64_field(req, "top_logprobs").unwrap_or(0).min(20) as usize);
            (Prompt::of([req.get("messages")], messages), max, logprobs)
        }
        Api::Legacy => {
            let logprobs = u64_field(req, "logprobs").map(|top| top.min(5) as usize);
            (Prompt::of([req.get("prompt")], 0), u64_field(req, "max_tokens"), logprobs)
        }
    };
    let (k, finish) = capped(b.chunks, max);
    let n = u64_field(req, "n").unwrap_or(1).clamp(1, MAX_N) as usize;
    // Reasoning words per choice: a reasoning model (or effort) on chat only.
    let reasoning = if api == Api::Chat && reasons(&model, req.get("reasoning_effort")) { REASONING_WORDS } else { 0 };
    let completion_tokens = ((k + reasoning) * n) as u64;
    let mut usage = json!({"prompt_tokens": prompt.tokens, "completion_tokens": completion_tokens,
        "total_tokens": prompt.tokens + completion_tokens});
    if reasoning > 0 {
        usage["completion_tokens_details"] = json!({"reasoning_tokens": reasoning * n});
    }
    let (id, object) = match api {
        Api::Chat => (new_id("chatcmpl-"), "chat.completion"),
        Api::Legacy => (new_id("cmpl-"), "text_completion"),
    };
    let created = now_secs();

    if is_stream(req) {
        let include_usage = req.pointer("/stream_options/include_usage").and_then(Value::as_bool).unwrap_or(false);
        let chunk_object = if api == Api::Chat { "chat.completion.chunk" } else { "text_completion" };
        let model = serde_json::to_string(&model).expect("a string serializes");
        let events = CompletionEvents {
            api,
            prefix: format!(
                r#"data: {{"id":"{id}","object":"{chunk_object}","created":{created},"model":{model},"system_fingerprint":"fp_mock","choices":["#
            ),
            // OpenAI puts `"usage":null` on every chunk but the last once usage was asked for.
            suffix: if include_usage { "],\"usage\":null}\n\n" } else { "]}\n\n" },
            choices: (0..n).map(|i| Words::new(&prompt, i)).collect(),
            offsets: vec![0; n],
            k,
            finish,
            logprobs,
            usage: include_usage.then(|| usage.to_string()),
            reasoning: if reasoning > 0 { (0..n).map(|i| Reasoning::new(&prompt, i)).collect() } else { Vec::new() },
            reasoning_words: reasoning,
            pacing: Pacing::of(b),
            phase: if api == Api::Chat { Phase::Role } else { Phase::Content(0) },
        };
        return sse(events);
    }

    let choices: Vec<Value> = (0..n)
        .map(|i| {
            let mut source = Words::new(&prompt, i);
            let words: Vec<&str> = (0..k).map(|_| source.word()).collect();
            let mut text = String::with_capacity(k * 8);
            for w in &words {
                text.push_str(w);
                text.push(' ');
            }
            match api {
                Api::Chat => {
                    let logprobs = logprobs.map_or(Value::Null, |top| {
                        json!({"content": words.iter().map(|w| chat_logprob(w, top)).collect::<Vec<_>>(), "refusal": null})
                    });
                    let mut message = json!({"role": "assistant", "content": text, "refusal": null});
                    if reasoning > 0 {
                        message["reasoning_content"] = json!(Reasoning::text(&prompt, i, reasoning));
                    }
                    json!({"index": i, "message": message, "logprobs": logprobs, "finish_reason": finish})
                }
                Api::Legacy => {
                    let logprobs = logprobs.map_or(Value::Null, |top| legacy_logprobs(&words, top, 0));
                    json!({"index": i, "text": text, "logprobs": logprobs, "finish_reason": finish})
                }
            }
        })
        .collect();
    json_response(
        StatusCode::OK,
        &json!({"id": id, "object": object, "created": created, "model": model, "choices": choices,
            "usage": usage, "system_fingerprint": "fp_mock"}),
    )
}

/// Where a completion stream is.
#[derive(Clone, Copy)]
enum Phase {
    /// The chat opener: `{"role":"assistant","content":""}`.
    Role,
    /// Reasoning chunk `r` (`delta.reasoning_content`), before the content.
    Reasoning(usize),
    /// Content chunk `j` (of `k`); at `k`, the chunk with the finish reason.
    Content(usize),
    /// The usage-only chunk, when `stream_options.include_usage` asked for it.
    Usage,
    Done,
    End,
}

/// The events of a chat or legacy completion stream, formatted one at a time as the body
/// is polled. Every chunk shares its envelope (`prefix` … `suffix`), built once.
struct CompletionEvents {
    api: Api,
    prefix: String,
    suffix: &'static str,
    choices: Vec<Words>,
    /// Legacy `text_offset` of each choice's next token.
    offsets: Vec<usize>,
    k: usize,
    finish: &'static str,
    /// `Some(top)` when log probabilities were asked for.
    logprobs: Option<usize>,
    /// The serialized usage object for the closing usage chunk.
    usage: Option<String>,
    /// Each choice's reasoning (chat with a reasoning model), else empty.
    reasoning: Vec<Reasoning>,
    /// Reasoning words per choice.
    reasoning_words: usize,
    pacing: Pacing,
    phase: Phase,
}

impl CompletionEvents {
    fn chunk(&mut self, mut choice: impl FnMut(&mut Self, &mut String, usize)) -> Bytes {
        let mut out = String::with_capacity(self.prefix.len() + 100 * self.choices.len() + 32);
        out.push_str(&self.prefix);
        for i in 0..self.choices.len() {
            if i > 0 {
                out.push(',');
            }
            choice(self, &mut out, i);
        }
        out.push_str(self.suffix);
        Bytes::from(out)
    }

    fn content_choice(&mut self, out: &mut String, i: usize) {
        let word = self.choices[i].word();
        let pad = self.pacing.take_pad();
        // Writing into a String cannot fail.
        let _ = match self.api {
            Api::Chat => write!(out, r#"{{"index":{i},"delta":{{"content":"{word} {pad}"}},"logprobs":"#),
            Api::Legacy => write!(out, r#"{{"index":{i},"text":"{word} {pad}","logprobs":"#),
        };
        match (self.api, self.logprobs) {
            (_, None) => out.push_str("null"),
            (Api::Chat, Some(top)) => {
                out.push_str(&json!({"content": [chat_logprob(word, top)], "refusal": null}).to_string());
            }
            (Api::Legacy, Some(top)) => {
                out.push_str(&legacy_logprobs(&[word], top, self.offsets[i]).to_string());
            }
        }
        self.offsets[i] += word.len() + 1;
        out.push_str(r#","finish_reason":null}"#);
    }
}

impl Iterator for CompletionEvents {
    type Item = (Duration, Bytes);

    fn next(&mut self) -> Option<(Duration, Bytes)> {
        if let Some(rest) = self.pacing.rest() {
            return Some(rest);
        }
        let mut delay = self.pacing.owed();
        let event = match self.phase {
            Phase::Role => {
                self.phase = if self.reasoning_words > 0 { Phase::Reasoning(0) } else { Phase::Content(0) };
                self.chunk(|_, out, i| {
                    let _ = write!(
                        out,
                        r#"{{"index":{i},"delta":{{"role":"assistant","content":"","refusal":null}},"logprobs":null,"finish_reason":null}}"#
                    );
                })
            }
            Phase::Reasoning(r) => {
                let (from, to) =
                    (r * REASONING_DELTA_WORDS, ((r + 1) * REASONING_DELTA_WORDS).min(self.reasoning_words));
                self.phase = if to < self.reasoning_words { Phase::Reasoning(r + 1) } else { Phase::Content(0) };
                self.chunk(|me, out, i| {
                    let _ = write!(out, r#"{{"index":{i},"delta":{{"reasoning_content":""#);
                    me.reasoning[i].push(to - from, out);
                    out.push_str(r#""},"logprobs":null,"finish_reason":null}"#);
                })
            }
            Phase::Content(j) if j < self.k => {
                delay += self.pacing.content(j);
                self.phase = Phase::Content(j + 1);
                let event = self.chunk(Self::content_choice);
                self.pacing.split(j, event)
            }
            Phase::Content(_) => {
                self.phase = if self.usage.is_some() { Phase::Usage } else { Phase::Done };
                let finish = self.finish;
                self.chunk(|me, out, i| {
                    let _ = match me.api {
                        Api::Chat => {
                            write!(out, r#"{{"index":{i},"delta":{{}},"logprobs":null,"finish_reason":"{finish}"}}"#)
                        }
                        Api::Legacy => {
                            write!(out, r#"{{"index":{i},"text":"","logprobs":null,"finish_reason":"{finish}"}}"#)
                        }
                    };
                })
            }
            Phase::Usage => {
                self.phase = Phase::Done;
                let usage = self.usage.as_deref().unwrap_or("null");
                Bytes::from(format!("{}],\"usage\":{usage}}}\n\n", self.prefix))
            }
            Phase::Done => {
                self.phase = Phase::End;
                Bytes::from_static(b"data: [DONE]\n\n")
            }
            Phase::End => return None,
        };
        Some((delay, event))
    }
}

/// How the content chunks of a stream are paced and shaped (the request's headers), the
/// same for every kind of stream.
struct Pacing {
    interval: Duration,
    pause_after_first: Duration,
    /// Delay owed to the next event (the pause after the first content chunk).
    carry: Duration,
    /// Extra content bytes in the first content chunk.
    pad: usize,
    /// Write the first content chunk in two halves, this long apart.
    split_first: Option<Duration>,
    /// The second half, when it is owed.
    rest: Option<Bytes>,
}

impl Pacing {
    fn of(b: &Behaviour) -> Pacing {
        Pacing {
            interval: b.interval,
            pause_after_first: b.pause_after_first,
            carry: Duration::ZERO,
            pad: b.event_bytes,
            split_first: b.split_first,
            rest: None,
        }
    }

    /// The second half of a split first chunk, when it is owed: it goes before anything else.
    fn rest(&mut self) -> Option<(Duration, Bytes)> {
        self.rest.take().map(|rest| (self.split_first.unwrap_or_default(), rest))
    }

    /// The delay owed to the next event.
    fn owed(&mut self) -> Duration {
        std::mem::take(&mut self.carry)
    }

    /// The extra delay of content chunk `j`: none for the first, whose pause is owed to the
    /// event after it instead, so that nothing holds the first one back.
    fn content(&mut self, j: usize) -> Duration {
        if j == 0 {
            self.carry = self.pause_after_first;
            Duration::ZERO
        } else {
            self.interval
        }
    }

    /// The padding of the first content chunk (empty after it).
    fn take_pad(&mut self) -> String {
        "x".repeat(std::mem::take(&mut self.pad))
    }

    /// What to write of content chunk `j`: the first half of the first one when it is to be
    /// split (the other half is then owed), else all of it.
    fn split(&mut self, j: usize, event: Bytes) -> Bytes {
        if j == 0 && self.split_first.is_some() {
            let half = event.len() / 2;
            self.rest = Some(event.slice(half..));
            event.slice(..half)
        } else {
            event
        }
    }
}

/// A server-sent-events response whose body plays `events`: each one after its delay, each
/// as its own frame, so hyper flushes it before waiting for the next.
fn sse(events: impl Iterator<Item = (Duration, Bytes)> + Send + Unpin + 'static) -> Response<Body> {
    Response::builder()
        .header(http::header::CONTENT_TYPE, "text/event-stream")
        .header(http::header::CACHE_CONTROL, "no-cache")
        .body(Paced { events, waiting: None }.boxed_unsync())
        .expect("static response parts are valid")
}

/// A body that yields `(delay, event)` items lazily, sleeping out each delay first.
struct Paced<I> {
    events: I,
    /// The event being held back, and the timer it waits for.
    waiting: Option<(Pin<Box<Sleep>>, Bytes)>,
}

impl<I: Iterator<Item = (Duration, Bytes)> + Unpin> http_body::Body for Paced<I> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        loop {
            if let Some((timer, event)) = &mut this.waiting {
                ready!(timer.as_mut().poll(cx));
                let event = std::mem::take(event);
                this.waiting = None;
                return Poll::Ready(Some(Ok(Frame::data(event))));
            }
            match this.events.next() {
                None => return Poll::Ready(None),
                Some((delay, event)) if delay.is_zero() => return Poll::Ready(Some(Ok(Frame::data(event)))),
                // Polled at the top of the loop, which registers the wakeup.
                Some((delay, event)) => this.waiting = Some((Box::pin(tokio::time::sleep(delay)), event)),
            }
        }
    }
}

fn embeddings(req: &Value) -> Response<Body> {
    let model = req.get("model").and_then(Value::as_str).unwrap_or("mock-embed");
    // (hashed bytes, tokens) per input: a string counts its words, a token array its ids.
    let inputs: Vec<(Vec<u8>, u64)> = match req.get("input") {
        Some(Value::String(s)) => vec![(s.as_bytes().to_vec(), s.split_whitespace().count() as u64)],
        Some(Value::Array(items)) if !items.is_empty() && items.iter().all(Value::is_u64) => {
            vec![(Value::Array(items.clone()).to_string().into_bytes(), items.len() as u64)]
        }
        Some(Value::Array(items)) if !items.is_empty() => {
            let mut inputs = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    Value::String(s) => inputs.push((s.as_bytes().to_vec(), s.split_whitespace().count() as u64)),
                    Value::Array(ids) if ids.iter().all(Value::is_u64) => {
                        inputs.push((item.to_string().into_bytes(), ids.len() as u64))
                    }
                    _ => return invalid("'input' must be a string, an array of strings or an array of token arrays."),
                }
            }
            inputs
        }
        _ => return invalid("'input' must be a string, an array of strings or an array of token arrays."),
    };
    let base64 = req.get("encoding_format").and_then(Value::as_str) == Some("base64");
    let tokens: u64 = inputs.iter().map(|(_, t)| (*t).max(1)).sum();
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, (bytes, _))| {
            let vector = embedding(bytes);
            let embedding = if base64 {
                let raw: Vec<u8> = vector.iter().flat_map(|f| f.to_le_bytes()).collect();
                Value::String(base64_encode(&raw))
            } else {
                json!(vector)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    json_response(
        StatusCode::OK,
        &json!({"object": "list", "data": data, "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}),
    )
}

/// 8 floats from the input's hash, scaled to unit length as real embeddings are, so cosine
/// similarity on them behaves.
fn embedding(input: &[u8]) -> [f32; 8] {
    let digest = Sha256::digest(input);
    let mut v = [0f32; 8];
    for (x, pair) in v.iter_mut().zip(digest.chunks_exact(2)) {
        *x = f32::from(u16::from_le_bytes([pair[0], pair[1]])) / 32767.5 - 1.0;
    }
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

/// Standard base64 with padding (RFC 4648), as the SDKs decode `encoding_format: base64`.
fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = u32::from(chunk[0]) << 16
            | u32::from(*chunk.get(1).unwrap_or(&0)) << 8
            | u32::from(*chunk.get(2).unwrap_or(&0));
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

/// The request-derived parts of a Responses API `response` object.
struct ResponseMeta {
    id: String,
    message_id: String,
    reasoning_id: String,
    created_at: u64,
    model: String,
    instructions: Value,
    max_output_tokens: Value,
    temperature: Value,
    top_p: Value,
    /// The `reasoning` settings echoed back.
    reasoning: Value,
    /// The reasoning item's `encrypted_content`, when `include` asked for it.
    encrypted: Option<String>,
}

impl ResponseMeta {
    /// The full object, with every field the SDKs read (`output_text` they compute).
    fn object(&self, status: &str, output: Value, usage: &Value) -> Value {
        let incomplete = if status == "incomplete" { json!({"reason": "max_output_tokens"}) } else { Value::Null };
        json!({
            "id": self.id, "object": "response", "created_at": self.created_at, "status": status,
            "error": null, "incomplete_details": incomplete, "instructions": self.instructions,
            "max_output_tokens": self.max_output_tokens, "model": self.model, "output": output,
            "parallel_tool_calls": true, "previous_response_id": null,
            "reasoning": self.reasoning, "store": false,
            "temperature": self.temperature, "text": {"format": {"type": "text"}}, "tool_choice": "auto",
            "tools": [], "top_p": self.top_p, "truncation": "disabled", "usage": usage, "user": null,
            "metadata": {}
        })
    }

    fn message(&self, status: &str, content: Value) -> Value {
        json!({"id": self.message_id, "type": "message", "status": status, "role": "assistant", "content": content})
    }

    /// The reasoning item: with its summary once known (`None`: just added, empty).
    fn reasoning_item(&self, summary: Option<&str>) -> Value {
        let Some(text) = summary else {
            return json!({"id": self.reasoning_id, "type": "reasoning", "summary": []});
        };
        let mut item = json!({"id": self.reasoning_id, "type": "reasoning", "summary": [summary_text(text)]});
        if let Some(encrypted) = &self.encrypted {
            item["encrypted_content"] = json!(encrypted);
        }
        item
    }
}

fn output_text(text: &str) -> Value {
    json!({"type": "output_text", "text": text, "annotations": []})
}

fn summary_text(text: &str) -> Value {
    json!({"type": "summary_text", "text": text})
}

fn responses(req: &Value, b: &Behaviour) -> Response<Body> {
    let input_items = req.get("input").and_then(Value::as_array).map_or(0, Vec::len);
    let prompt = Prompt::of([req.get("instructions"), req.get("input")], input_items);
    let (k, finish) = capped(b.chunks, u64_field(req, "max_output_tokens"));
    // Capped by max_output_tokens, OpenAI marks the response (and its message) incomplete.
    let status = if finish == "length" { "incomplete" } else { "completed" };
    let model = model_of(req);
    let reasoning = if reasons(&model, req.get("reasoning")) { REASONING_WORDS } else { 0 };
    let output_tokens = k + reasoning;
    let usage = json!({"input_tokens": prompt.tokens, "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": output_tokens, "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": prompt.tokens + output_tokens as u64});
    let id = new_id("resp_");
    let setting = |key: &str| req.get("reasoning").and_then(|r| r.get(key)).cloned().unwrap_or(Value::Null);
    let encrypted = req
        .get("include")
        .and_then(Value::as_array)
        .is_some_and(|include| reasoning > 0 && include.iter().any(|i| i == "reasoning.encrypted_content"));
    let meta = ResponseMeta {
        message_id: format!("msg_{}", &id["resp_".len()..]),
        reasoning_id: format!("rs_{}", &id["resp_".len()..]),
        id,
        created_at: now_secs(),
        model,
        instructions: req.get("instructions").cloned().unwrap_or(Value::Null),
        max_output_tokens: req.get("max_output_tokens").cloned().unwrap_or(Value::Null),
        temperature: req.get("temperature").cloned().unwrap_or(json!(1.0)),
        top_p: req.get("top_p").cloned().unwrap_or(json!(1.0)),
        reasoning: if reasoning > 0 {
            json!({"effort": setting("effort"), "summary": setting("summary")})
        } else {
            json!({"effort": null, "summary": null})
        },
        encrypted: encrypted.then(|| opaque(&prompt, b"encrypted_content")),
    };
    let mut words = Words::new(&prompt, 0);
    if !is_stream(req) {
        let mut text = String::with_capacity(k * 8);
        for _ in 0..k {
            text.push_str(words.word());
            text.push(' ');
        }
        let mut output = vec![meta.message(status, json!([output_text(&text)]))];
        if reasoning > 0 {
            output.insert(0, meta.reasoning_item(Some(&Reasoning::text(&prompt, 0, reasoning))));
        }
        return json_response(StatusCode::OK, &meta.object(status, json!(output), &usage));
    }
    sse(ResponseEvents {
        meta,
        status,
        usage,
        words,
        k,
        text: String::with_capacity(k * 8),
        reasoning: (reasoning > 0).then(|| Reasoning::new(&prompt, 0)),
        reasoning_words: reasoning,
        summary: String::with_capacity(reasoning * 8),
        sequence: 0,
        step: 0,
        pacing: Pacing::of(b),
    })
}

/// The events of a streamed Responses API call, in OpenAI's order: created, in_progress,
/// then for a reasoning request the reasoning item at output index 0 (added, summary part
/// added, a few `reasoning_summary_text.delta`, the matching `done` events); then the
/// message item (output index 0, or 1 after reasoning): output item and content part
/// added, one `output_text.delta` per word, the matching `done` events; and last
/// `response.completed` (or `response.incomplete`).
struct ResponseEvents {
    meta: ResponseMeta,
    status: &'static str,
    usage: Value,
    words: Words,
    k: usize,
    /// The text streamed so far.
    text: String,
    /// The reasoning words, for a reasoning request.
    reasoning: Option<Reasoning>,
    reasoning_words: usize,
    /// The reasoning summary streamed so far.
    summary: String,
    sequence: u64,
    /// 0–1: response opening; then the reasoning item's events, if any; then the message
    /// item's: 2–3 opening, 4..4+k deltas, then the closing events.
    step: usize,
    pacing: Pacing,
}

/// Opening events before the first delta.
const OPENING: usize = 4;

impl ResponseEvents {
    fn event(&mut self, name: &str, mut data: Value) -> Bytes {
        data["type"] = json!(name);
        data["sequence_number"] = json!(self.sequence);
        self.sequence += 1;
        Bytes::from(format!("event: {name}\ndata: {data}\n\n"))
    }

    /// Reasoning deltas.
    fn summary_deltas(&self) -> usize {
        self.reasoning_words.div_ceil(REASONING_DELTA_WORDS)
    }

    /// Events of the reasoning item: added, part added, the deltas, text done, part done,
    /// item done.
    fn reasoning_steps(&self) -> usize {
        if self.reasoning.is_some() {
            5 + self.summary_deltas()
        } else {
            0
        }
    }

    /// Event `r` of the reasoning item (output index 0, summary index 0).
    fn reasoning_event(&mut self, r: usize) -> Bytes {
        let id = &self.meta.reasoning_id;
        let part =
            |text: &str| json!({"item_id": id, "output_index": 0, "summary_index": 0, "part": summary_text(text)});
        let deltas = self.summary_deltas();
        match r {
            0 => {
                let item = self.meta.reasoning_item(None);
                self.event("response.output_item.added", json!({"output_index": 0, "item": item}))
            }
            1 => {
                let added = part("");
                self.event("response.reasoning_summary_part.added", added)
            }
            r if r < 2 + deltas => {
                let from = self.summary.len();
                let n = REASONING_DELTA_WORDS.min(self.reasoning_words - (r - 2) * REASONING_DELTA_WORDS);
                if let Some(words) = &mut self.reasoning {
                    words.push(n, &mut self.summary);
                }
                let data = json!({"item_id": id, "output_index": 0, "summary_index": 0, "delta": self.summary[from..]});
                self.event("response.reasoning_summary_text.delta", data)
            }
            r if r == 2 + deltas => {
                let data = json!({"item_id": id, "output_index": 0, "summary_index": 0, "text": self.summary});
                self.event("response.reasoning_summary_text.done", data)
            }
            r if r == 3 + deltas => {
                let done = part(&self.summary);
                self.event("response.reasoning_summary_part.done", done)
            }
            _ => {
                let item = self.meta.reasoning_item(Some(&self.summary));
                self.event("response.output_item.done", json!({"output_index": 0, "item": item}))
            }
        }
    }
}

impl Iterator for ResponseEvents {
    type Item = (Duration, Bytes);

    fn next(&mut self) -> Option<(Duration, Bytes)> {
        let step = self.step;
        self.step += 1;
        let mut delay = self.pacing.owed();
        let reasoning_steps = self.reasoning_steps();
        // The message item's output index: after the reasoning item, if any.
        let out = usize::from(self.reasoning.is_some());
        let part = |text: &str| json!({"item_id": self.meta.message_id, "output_index": out, "content_index": 0, "part": output_text(text)});
        let event = match step {
            0 | 1 => {
                let response = self.meta.object("in_progress", json!([]), &Value::Null);
                let name = if step == 0 { "response.created" } else { "response.in_progress" };
                self.event(name, json!({"response": response}))
            }
            s if s < 2 + reasoning_steps => self.reasoning_event(s - 2),
            s => match s - reasoning_steps {
                2 => {
                    let item = self.meta.message("in_progress", json!([]));
                    self.event("response.output_item.added", json!({"output_index": out, "item": item}))
                }
                3 => {
                    let added = part("");
                    self.event("response.content_part.added", added)
                }
                s if s < OPENING + self.k => {
                    delay += self.pacing.content(s - OPENING);
                    let word = self.words.word();
                    self.text.push_str(word);
                    self.text.push(' ');
                    let event = format!(
                        "event: response.output_text.delta\ndata: {{\"type\":\"response.output_text.delta\",\"sequence_number\":{},\"item_id\":\"{}\",\"output_index\":{out},\"content_index\":0,\"delta\":\"{word} \",\"logprobs\":[]}}\n\n",
                        self.sequence, self.meta.message_id
                    );
                    self.sequence += 1;
                    Bytes::from(event)
                }
                s => match s - OPENING - self.k {
                    0 => {
                        let data = json!({"item_id": self.meta.message_id, "output_index": out, "content_index": 0,
                            "text": self.text, "logprobs": []});
                        self.event("response.output_text.done", data)
                    }
                    1 => {
                        let done = part(&self.text);
                        self.event("response.content_part.done", done)
                    }
                    2 => {
                        let item = self.meta.message(self.status, json!([output_text(&self.text)]));
                        self.event("response.output_item.done", json!({"output_index": out, "item": item}))
                    }
                    3 => {
                        let mut output = vec![self.meta.message(self.status, json!([output_text(&self.text)]))];
                        if self.reasoning.is_some() {
                            output.insert(0, self.meta.reasoning_item(Some(&self.summary)));
                        }
                        let response = self.meta.object(self.status, json!(output), &self.usage);
                        let name =
                            if self.status == "completed" { "response.completed" } else { "response.incomplete" };
                        self.event(name, json!({"response": response}))
                    }
                    _ => return None,
                },
            },
        };
        Some((delay, event))
    }
}

/// Anthropic's Messages API: `POST /v1/messages` (plain and streamed, with extended
/// thinking and tool use) and `POST /v1/messages/count_tokens`, with Anthropic's error
/// shape.
mod anthropic {
    use std::fmt::Write as _;
    use std::time::Duration;

    use bytes::Bytes;
    use http::{Response, StatusCode};
    use serde_json::{json, Value};

    use super::{
        capped, is_stream, new_id, opaque, sse, u64_field, Behaviour, Body, Pacing, Prompt, Reasoning, Words,
        REASONING_DELTA_WORDS, REASONING_WORDS,
    };
    use crate::body::json_response;

    /// Whether `path` is one of Anthropic's, which answer errors in Anthropic's shape.
    pub fn owns(path: &str) -> bool {
        path == "/v1/messages" || path.starts_with("/v1/messages/")
    }

    /// The body of an injected failure (`x-mock-status`); static because load tests hammer
    /// it. The error type follows the status as Anthropic's do.
    pub fn injected(status: StatusCode) -> &'static str {
        macro_rules! body {
            ($kind:literal) => {
                concat!(r#"{"type":"error","error":{"type":""#, $kind, r#"","message":"mock error"}}"#)
            };
        }
        match status.as_u16() {
            401 => body!("authentication_error"),
            403 => body!("permission_error"),
            404 => body!("not_found_error"),
            413 => body!("request_too_large"),
            429 => body!("rate_limit_error"),
            529 => body!("overloaded_error"),
            400..=499 => body!("invalid_request_error"),
            _ => body!("api_error"),
        }
    }

    pub fn error(status: StatusCode, kind: &str, message: &str) -> Response<Body> {
        json_response(status, &json!({"type": "error", "error": {"type": kind, "message": message}}))
    }

    pub fn invalid(message: &str) -> Response<Body> {
        error(StatusCode::BAD_REQUEST, "invalid_request_error", message)
    }

    /// The system prompt and every text and tool result of the messages, 3 tokens a message.
    fn prompt(req: &Value, messages: usize) -> Prompt {
        Prompt::of([req.get("system"), req.get("messages")], messages)
    }

    pub fn count_tokens(req: &Value) -> Response<Body> {
        let messages = req.get("messages").and_then(Value::as_array).map_or(0, Vec::len);
        json_response(StatusCode::OK, &json!({"input_tokens": prompt(req, messages).tokens}))
    }

    /// The tool the answer calls: the named one of `tool_choice: {"type":"tool"}`, else the
    /// first tool; none when there are no tools, `tool_choice` is `none`, or the last
    /// message already brings a tool result.
    fn called_tool(req: &Value, messages: &[Value]) -> Option<String> {
        let first = req.get("tools")?.as_array()?.first()?;
        let answered =
            messages.last().and_then(|m| m.get("content")).and_then(Value::as_array).is_some_and(|blocks| {
                blocks.iter().any(|b| b.get("type").and_then(Value::as_str) == Some("tool_result"))
            });
        if answered {
            return None;
        }
        let name = match req.pointer("/tool_choice/type").and_then(Value::as_str) {
            Some("none") => return None,
            Some("tool") => req.pointer("/tool_choice/name"),
            _ => first.get("name"),
        };
        name.and_then(Value::as_str).map(str::to_owned)
    }

    pub fn messages(req: &Value, b: &Behaviour) -> Response<Body> {
        let Some(max_tokens) = u64_field(req, "max_tokens") else {
            return invalid("max_tokens: Field required");
        };
        let Some(messages) = req.get("messages").and_then(Value::as_array) else {
            return invalid("messages: Field required");
        };
        let prompt = prompt(req, messages.len());
        let model = req.get("model").and_then(Value::as_str).unwrap_or("mock-small");
        let (k, finish) = capped(b.chunks, Some(max_tokens));
        // Thinking words: REASONING_WORDS, or the budget when it is smaller.
        let thinking = match req.pointer("/thinking/type").and_then(Value::as_str) {
            Some("enabled" | "adaptive") => {
                let budget = req.pointer("/thinking/budget_tokens").and_then(Value::as_u64);
                Some(budget.map_or(REASONING_WORDS, |b| usize::try_from(b).unwrap_or(usize::MAX).min(REASONING_WORDS)))
            }
            _ => None,
        };
        // An answer cut off by max_tokens never reaches its tool call.
        let tool = if finish == "length" { None } else { called_tool(req, messages) };
        let stop_reason = match (finish, &tool) {
            ("length", _) => "max_tokens",
            (_, Some(_)) => "tool_use",
            _ => "end_turn",
        };
        // A tool call counts one token.
        let output_tokens = thinking.unwrap_or(0) + k + usize::from(tool.is_some());
        let id = new_id("msg_");
        let tool = tool.map(|name| (new_id("toolu_"), name));
        let signature = thinking.map(|_| opaque(&prompt, b"thinking signature"));

        if is_stream(req) {
            let start = json!({"type": "message_start", "message": {"id": id, "type": "message", "role": "assistant",
                "model": model, "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": prompt.tokens, "output_tokens": 1,
                    "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}}});
            return sse(MessageEvents {
                start: Some(start),
                thinking: thinking.map(|words| (Reasoning::new(&prompt, 0), words)),
                signature: signature.unwrap_or_default(),
                text_index: usize::from(thinking.is_some()),
                words: Words::new(&prompt, 0),
                k,
                tool,
                stop_reason,
                output_tokens,
                pacing: Pacing::of(b),
                phase: Phase::Start,
            });
        }

        let mut content = Vec::with_capacity(3);
        if let (Some(words), Some(signature)) = (thinking, signature) {
            let thinking = Reasoning::text(&prompt, 0, words);
            content.push(json!({"type": "thinking", "thinking": thinking, "signature": signature}));
        }
        let mut words = Words::new(&prompt, 0);
        let mut text = String::with_capacity(k * 8);
        for _ in 0..k {
            text.push_str(words.word());
            text.push(' ');
        }
        content.push(json!({"type": "text", "text": text}));
        if let Some((id, name)) = tool {
            content.push(json!({"type": "tool_use", "id": id, "name": name, "input": {}}));
        }
        json_response(
            StatusCode::OK,
            &json!({"id": id, "type": "message", "role": "assistant", "model": model, "content": content,
                "stop_reason": stop_reason, "stop_sequence": null,
                "usage": {"input_tokens": prompt.tokens, "output_tokens": output_tokens,
                    "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}}),
        )
    }

    /// Where a Messages stream is.
    #[derive(Clone, Copy)]
    enum Phase {
        Start,
        Ping,
        ThinkingStart,
        /// Thinking delta `r`.
        Thinking(usize),
        Signature,
        ThinkingStop,
        TextStart,
        /// Text delta `j` (of `k`): the content chunks; at `k`, the block's stop.
        Text(usize),
        ToolStart,
        ToolInput,
        ToolStop,
        Delta,
        Stop,
        End,
    }

    /// The events of a streamed Messages call, in Anthropic's order: `message_start`,
    /// `ping`, each content block (thinking, text, tool use) as `content_block_start`, its
    /// deltas and `content_block_stop`, then `message_delta` and `message_stop`.
    struct MessageEvents {
        /// The `message_start` event, until it is sent.
        start: Option<Value>,
        /// The thinking words and their count, when thinking is on.
        thinking: Option<(Reasoning, usize)>,
        signature: String,
        /// The text block's index: after the thinking block, if any.
        text_index: usize,
        words: Words,
        k: usize,
        /// The tool use block's id and tool name.
        tool: Option<(String, String)>,
        stop_reason: &'static str,
        output_tokens: usize,
        pacing: Pacing,
        phase: Phase,
    }

    fn event(name: &str, data: &Value) -> Bytes {
        Bytes::from(format!("event: {name}\ndata: {data}\n\n"))
    }

    fn delta(index: usize, delta: Value) -> Bytes {
        event("content_block_delta", &json!({"type": "content_block_delta", "index": index, "delta": delta}))
    }

    fn block_start(index: usize, block: Value) -> Bytes {
        event("content_block_start", &json!({"type": "content_block_start", "index": index, "content_block": block}))
    }

    fn block_stop(index: usize) -> Bytes {
        event("content_block_stop", &json!({"type": "content_block_stop", "index": index}))
    }

    impl Iterator for MessageEvents {
        type Item = (Duration, Bytes);

        fn next(&mut self) -> Option<(Duration, Bytes)> {
            if let Some(rest) = self.pacing.rest() {
                return Some(rest);
            }
            let mut delay = self.pacing.owed();
            let (text, tool) = (self.text_index, self.text_index + 1);
            let event = match self.phase {
                Phase::Start => {
                    self.phase = Phase::Ping;
                    event("message_start", &self.start.take().unwrap_or_default())
                }
                Phase::Ping => {
                    self.phase = if self.thinking.is_some() { Phase::ThinkingStart } else { Phase::TextStart };
                    event("ping", &json!({"type": "ping"}))
                }
                Phase::ThinkingStart => {
                    self.phase = Phase::Thinking(0);
                    block_start(0, json!({"type": "thinking", "thinking": "", "signature": ""}))
                }
                Phase::Thinking(r) => {
                    let Some((words, total)) = &mut self.thinking else { return None };
                    let from = r * REASONING_DELTA_WORDS;
                    if from >= *total {
                        self.phase = Phase::Signature;
                        return self.next();
                    }
                    let n = REASONING_DELTA_WORDS.min(*total - from);
                    let mut thinking = String::with_capacity(n * 8);
                    words.push(n, &mut thinking);
                    self.phase = Phase::Thinking(r + 1);
                    delta(0, json!({"type": "thinking_delta", "thinking": thinking}))
                }
                Phase::Signature => {
                    self.phase = Phase::ThinkingStop;
                    delta(0, json!({"type": "signature_delta", "signature": self.signature}))
                }
                Phase::ThinkingStop => {
                    self.phase = Phase::TextStart;
                    block_stop(0)
                }
                Phase::TextStart => {
                    self.phase = Phase::Text(0);
                    block_start(text, json!({"type": "text", "text": ""}))
                }
                Phase::Text(j) if j < self.k => {
                    delay += self.pacing.content(j);
                    self.phase = Phase::Text(j + 1);
                    let word = self.words.word();
                    let pad = self.pacing.take_pad();
                    let mut out = String::with_capacity(120 + pad.len());
                    let _ = write!(
                        out,
                        "event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":{text},\"delta\":{{\"type\":\"text_delta\",\"text\":\"{word} {pad}\"}}}}\n\n"
                    );
                    self.pacing.split(j, Bytes::from(out))
                }
                Phase::Text(_) => {
                    self.phase = if self.tool.is_some() { Phase::ToolStart } else { Phase::Delta };
                    block_stop(text)
                }
                Phase::ToolStart => {
                    self.phase = Phase::ToolInput;
                    let (id, name) = self.tool.as_ref()?;
                    block_start(tool, json!({"type": "tool_use", "id": id, "name": name, "input": {}}))
                }
                Phase::ToolInput => {
                    self.phase = Phase::ToolStop;
                    delta(tool, json!({"type": "input_json_delta", "partial_json": "{}"}))
                }
                Phase::ToolStop => {
                    self.phase = Phase::Delta;
                    block_stop(tool)
                }
                Phase::Delta => {
                    self.phase = Phase::Stop;
                    let data = json!({"type": "message_delta",
                        "delta": {"stop_reason": self.stop_reason, "stop_sequence": null},
                        "usage": {"output_tokens": self.output_tokens}});
                    event("message_delta", &data)
                }
                Phase::Stop => {
                    self.phase = Phase::End;
                    event("message_stop", &json!({"type": "message_stop"}))
                }
                Phase::End => return None,
            };
            Some((delay, event))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::Full;
    use hyper_util::client::legacy::{connect::HttpConnector, Client};
    use std::time::Instant;

    #[test]
    fn base64_matches_known_values() {
        assert_eq!(base64_encode(b""), "");
        assert_eq!(base64_encode(b"f"), "Zg==");
        assert_eq!(base64_encode(b"fo"), "Zm8=");
        assert_eq!(base64_encode(b"foo"), "Zm9v");
        assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64_encode(&[0xff, 0xfe, 0xfd, 0x00]), "//79AA==");
    }

    #[test]
    fn prompt_tokens_count_words_and_messages() {
        let req = json!({"messages": [{"role": "user", "content": "one two"},
            {"role": "user", "content": [{"type": "text", "text": "three"}, {"type": "image_url", "image_url": {"url": "x y"}}]}]});
        assert_eq!(Prompt::of([req.get("messages")], 2).tokens, 3 + 2 * 3);
        assert_eq!(Prompt::of([Some(&json!([1, 2, 3, 4]))], 0).tokens, 4);
        assert_eq!(Prompt::of([None], 0).tokens, 1);
    }

    #[test]
    fn answers_depend_on_prompt_and_choice_only() {
        let a = Prompt::of([Some(&json!("a"))], 0);
        let b = Prompt::of([Some(&json!("b"))], 0);
        let take = |p: &Prompt, choice| {
            let mut w = Words::new(p, choice);
            (0..70).map(|_| w.word()).collect::<Vec<_>>()
        };
        assert_eq!(take(&a, 0), take(&a, 0));
        assert_ne!(take(&a, 0), take(&b, 0));
        assert_ne!(take(&a, 0), take(&a, 1));
    }

    struct Reply {
        status: StatusCode,
        headers: HeaderMap,
        body: String,
    }

    impl Reply {
        fn json(&self) -> Value {
            serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
        }

        /// The `data:` payloads of an SSE body, in order.
        fn data(&self) -> Vec<&str> {
            self.body.split("\n\n").filter_map(|event| event.lines().find_map(|l| l.strip_prefix("data: "))).collect()
        }
    }

    fn client() -> Client<HttpConnector, Full<Bytes>> {
        Client::builder(TokioExecutor::new()).build_http()
    }

    fn request(
        server: &MockServer,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Request<Full<Bytes>> {
        let mut req = Request::builder().method(method).uri(format!("{}{path}", server.base_url()));
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        req.body(Full::new(Bytes::from(body.to_owned()))).unwrap()
    }

    async fn call(server: &MockServer, method: Method, path: &str, headers: &[(&str, &str)], body: &str) -> Reply {
        let resp = client().request(request(server, method, path, headers, body)).await.unwrap();
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        Reply { status: parts.status, headers: parts.headers, body: String::from_utf8(body.to_vec()).unwrap() }
    }

    async fn post(server: &MockServer, path: &str, body: Value) -> Reply {
        call(server, Method::POST, path, &[("content-type", "application/json")], &body.to_string()).await
    }

    #[tokio::test]
    async fn chat_usage_matches_the_content() {
        let server = spawn(MockOptions::default()).await.unwrap();
        let body = json!({"model": "mock-small", "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "What is two plus two?"}]}]});
        let r = post(&server, "/v1/chat/completions", body.clone()).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.headers["content-type"], "application/json");
        let v = r.json();
        assert_eq!(v["object"], "chat.completion");
        assert_eq!(v["model"], "mock-small");
        assert_eq!(v["system_fingerprint"], "fp_mock");
        let choice = &v["choices"][0];
        assert_eq!(choice["message"]["role"], "assistant");
        assert_eq!(choice["finish_reason"], "stop");
        let content = choice["message"]["content"].as_str().unwrap();
        assert_eq!(content.split_whitespace().count(), 16);
        assert!(content.ends_with(' '));
        assert_eq!(v["usage"]["completion_tokens"], 16);
        // 2 + 5 words, 2 messages.
        assert_eq!(v["usage"]["prompt_tokens"], 7 + 6);
        assert_eq!(v["usage"]["total_tokens"], 13 + 16);
        // Same prompt, same answer.
        let again = post(&server, "/v1/chat/completions", body).await.json();
        assert_eq!(again["choices"][0]["message"]["content"], content);
        assert_ne!(again["id"], v["id"]);

        let capped = json!({"model": "m", "n": 2, "max_tokens": 5, "logprobs": true, "top_logprobs": 2,
            "messages": [{"role": "user", "content": "hi"}]});
        let v = post(&server, "/v1/chat/completions", capped).await.json();
        assert_eq!(v["choices"].as_array().unwrap().len(), 2);
        assert_eq!(v["choices"][1]["index"], 1);
        assert_eq!(v["choices"][0]["finish_reason"], "length");
        assert_eq!(v["usage"]["completion_tokens"], 10);
        let logprobs = v["choices"][0]["logprobs"]["content"].as_array().unwrap();
        assert_eq!(logprobs.len(), 5);
        assert_eq!(logprobs[0]["top_logprobs"].as_array().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn streamed_chat_sends_role_content_finish_then_done() {
        let server = spawn(MockOptions::default()).await.unwrap();
        let body =
            json!({"model": "mock-small", "stream": true, "messages": [{"role": "user", "content": "hello there"}]});
        let r = call(&server, Method::POST, "/v1/chat/completions", &[("x-mock-chunks", "4")], &body.to_string()).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.headers["content-type"], "text/event-stream");
        let data = r.data();
        assert_eq!(data.len(), 1 + 4 + 1 + 1, "{}", r.body);
        assert_eq!(*data.last().unwrap(), "[DONE]");
        let chunks: Vec<Value> = data[..data.len() - 1].iter().map(|d| serde_json::from_str(d).unwrap()).collect();
        assert!(chunks.iter().all(|c| c["object"] == "chat.completion.chunk" && c["id"] == chunks[0]["id"]));
        assert!(chunks.iter().all(|c| c.get("usage").is_none()));
        assert_eq!(chunks[0]["choices"][0]["delta"], json!({"role": "assistant", "content": "", "refusal": null}));
        let text: String = chunks[1..5].iter().map(|c| c["choices"][0]["delta"]["content"].as_str().unwrap()).collect();
        assert_eq!(text.split_whitespace().count(), 4);
        assert_eq!(chunks[5]["choices"][0]["delta"], json!({}));
        assert_eq!(chunks[5]["choices"][0]["finish_reason"], "stop");

        // The streamed text is the non-streamed answer.
        let mut plain = body.clone();
        plain["stream"] = json!(false);
        let r =
            call(&server, Method::POST, "/v1/chat/completions", &[("x-mock-chunks", "4")], &plain.to_string()).await;
        assert_eq!(r.json()["choices"][0]["message"]["content"], text);
    }

    #[tokio::test]
    async fn include_usage_adds_a_usage_chunk() {
        let server = spawn(MockOptions::default()).await.unwrap();
        let body = json!({"model": "mock-small", "stream": true, "max_completion_tokens": 3,
            "stream_options": {"include_usage": true}, "messages": [{"role": "user", "content": "a b c"}]});
        let r = post(&server, "/v1/chat/completions", body).await;
        let data = r.data();
        assert_eq!(data.len(), 1 + 3 + 1 + 1 + 1, "{}", r.body);
        let chunks: Vec<Value> = data[..data.len() - 1].iter().map(|d| serde_json::from_str(d).unwrap()).collect();
        let (last, earlier) = chunks.split_last().unwrap();
        assert!(earlier.iter().all(|c| c["usage"].is_null() && c.get("usage").is_some()));
        assert_eq!(earlier.last().unwrap()["choices"][0]["finish_reason"], "length");
        assert_eq!(last["choices"], json!([]));
        assert_eq!(last["usage"], json!({"prompt_tokens": 6, "completion_tokens": 3, "total_tokens": 9}));
    }

    #[tokio::test]
    async fn legacy_completions_stream_and_not() {
        let server = spawn(MockOptions::default()).await.unwrap();
        let v = post(&server, "/v1/completions", json!({"model": "m", "prompt": "Once upon a time", "max_tokens": 5}))
            .await
            .json();
        assert_eq!(v["object"], "text_completion");
        assert_eq!(v["choices"][0]["text"].as_str().unwrap().split_whitespace().count(), 5);
        assert_eq!(v["usage"], json!({"prompt_tokens": 4, "completion_tokens": 5, "total_tokens": 9}));
        let r = post(&server, "/v1/completions", json!({"model": "m", "prompt": ["x"], "stream": true})).await;
        let data = r.data();
        assert_eq!(data.len(), 16 + 1 + 1);
        let first: Value = serde_json::from_str(data[0]).unwrap();
        assert_eq!(first["object"], "text_completion");
        assert!(first["choices"][0]["text"].as_str().unwrap().ends_with(' '));
    }

    #[tokio::test]
    async fn first_chunk_is_not_held_back_by_the_pause() {
        let server = spawn(MockOptions::default()).await.unwrap();
        let body = json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "x"}]}).to_string();
        let headers = [("x-mock-pause-after-first-ms", "1000"), ("x-mock-chunks", "3")];
        let start = Instant::now();
        let resp =
            client().request(request(&server, Method::POST, "/v1/chat/completions", &headers, &body)).await.unwrap();
        let mut body = resp.into_body();
        let mut seen = String::new();
        let mut first_content_at = None;
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.unwrap().into_data() {
                seen.push_str(std::str::from_utf8(&data).unwrap());
            }
            if first_content_at.is_none() && seen.contains(r#""delta":{"content":""#) {
                first_content_at = Some(start.elapsed());
            }
        }
        assert!(first_content_at.unwrap() < Duration::from_millis(700), "{first_content_at:?}");
        assert!(start.elapsed() >= Duration::from_millis(1000));
        assert!(seen.ends_with("data: [DONE]\n\n"));
    }

    #[tokio::test]
    async fn status_header_injects_an_openai_error() {
        let server = spawn(MockOptions::default()).await.unwrap();
        for status in ["429", "500", "503"] {
            let r = call(&server, Method::POST, "/v1/chat/completions", &[("x-mock-status", status)], "{}").await;
            assert_eq!(r.status.as_str(), status);
            assert_eq!(
                r.json(),
                json!({"error": {"message": "mock error", "type": "server_error", "param": null, "code": null}})
            );
        }
        let r = call(&server, Method::POST, "/v1/chat/completions", &[], "{not json").await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert_eq!(r.json()["error"]["type"], "invalid_request_error");
        let r = call(&server, Method::GET, "/nowhere", &[], "").await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        assert!(r.json()["error"]["message"].is_string());
    }

    #[tokio::test]
    async fn latency_header_delays_the_response() {
        let server = spawn(MockOptions::default()).await.unwrap();
        let start = Instant::now();
        let r = call(&server, Method::GET, "/v1/models", &[("x-mock-latency-ms", "300")], "").await;
        assert_eq!(r.status, StatusCode::OK);
        assert!(start.elapsed() >= Duration::from_millis(300));
    }

    #[tokio::test]
    async fn echo_returns_what_it_received() {
        let server = spawn(MockOptions::default()).await.unwrap();
        let headers = [("authorization", "Bearer sk-up"), ("x-multi", "a"), ("x-multi", "b")];
        let r = call(&server, Method::PUT, "/echo/some/path?a=1&b=two", &headers, "raw body").await;
        assert_eq!(r.status, StatusCode::OK);
        let v = r.json();
        assert_eq!(v["method"], "PUT");
        assert_eq!(v["path"], "/echo/some/path");
        assert_eq!(v["query"], "a=1&b=two");
        assert_eq!(v["headers"]["authorization"], "Bearer sk-up");
        assert_eq!(v["headers"]["x-multi"], "a, b");
        assert_eq!(v["body"], "raw body");
        let v = call(&server, Method::GET, "/echo", &[], "").await.json();
        assert_eq!(v["query"], Value::Null);
        assert_eq!(v["body"], "");
    }

    #[tokio::test]
    async fn models_and_embeddings() {
        let server = spawn(MockOptions::default()).await.unwrap();
        let v = call(&server, Method::GET, "/v1/models", &[], "").await.json();
        assert_eq!(
            v["data"][0],
            json!({"id": "mock-small", "object": "model", "created": 1_700_000_000, "owned_by": "warden-mock"})
        );
        assert_eq!(call(&server, Method::GET, "/v1/models/mock-large", &[], "").await.json()["id"], "mock-large");
        let r = call(&server, Method::GET, "/v1/models/gpt-9", &[], "").await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        assert_eq!(r.json()["error"]["code"], "model_not_found");

        let floats =
            post(&server, "/v1/embeddings", json!({"model": "e", "input": ["alpha beta", "gamma"]})).await.json();
        assert_eq!(floats["usage"], json!({"prompt_tokens": 3, "total_tokens": 3}));
        let vector: Vec<f32> =
            floats["data"][0]["embedding"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
        assert_eq!(vector.len(), 8);
        assert!((vector.iter().map(|x| x * x).sum::<f32>() - 1.0).abs() < 1e-4);
        let b64 = post(
            &server,
            "/v1/embeddings",
            json!({"model": "e", "input": ["alpha beta", "gamma"], "encoding_format": "base64"}),
        )
        .await
        .json();
        let raw: Vec<u8> = vector.iter().flat_map(|f| f.to_le_bytes()).collect();
        assert_eq!(b64["data"][0]["embedding"], base64_encode(&raw));
        assert_eq!(b64["data"][1]["index"], 1);
    }

    #[tokio::test]
    async fn responses_api_plain_and_streamed() {
        let server = spawn(MockOptions::default()).await.unwrap();
        let body = json!({"model": "mock-small", "input": "Say hello."});
        let v = post(&server, "/v1/responses", body.clone()).await.json();
        assert_eq!(v["object"], "response");
        assert_eq!(v["status"], "completed");
        let text = v["output"][0]["content"][0]["text"].as_str().unwrap().to_owned();
        assert_eq!(text.split_whitespace().count(), 16);
        assert_eq!(v["usage"]["input_tokens"], 2);
        assert_eq!(v["usage"]["output_tokens"], 16);

        let mut streamed = body;
        streamed["stream"] = json!(true);
        let r = post(&server, "/v1/responses", streamed).await;
        let events: Vec<Value> = r.data().iter().map(|d| serde_json::from_str(d).unwrap()).collect();
        let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(
            kinds[..4],
            ["response.created", "response.in_progress", "response.output_item.added", "response.content_part.added"]
        );
        assert_eq!(kinds.iter().filter(|k| **k == "response.output_text.delta").count(), 16);
        assert_eq!(
            kinds[kinds.len() - 4..],
            [
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.completed"
            ]
        );
        assert!(events.iter().enumerate().all(|(i, e)| e["sequence_number"] == i));
        assert!(r.body.split("\n\n").filter(|e| !e.is_empty()).all(|e| e.starts_with("event: ")));
        let deltas: String = events.iter().filter_map(|e| e["delta"].as_str()).collect();
        assert_eq!(deltas, text);
        let done = events.last().unwrap();
        assert_eq!(done["response"]["usage"]["output_tokens"], 16);
        assert_eq!(done["response"]["output"][0]["content"][0]["text"], text);

        let capped =
            post(&server, "/v1/responses", json!({"model": "m", "input": "x", "max_output_tokens": 2})).await.json();
        assert_eq!(capped["status"], "incomplete");
        assert_eq!(capped["incomplete_details"]["reason"], "max_output_tokens");
    }

    /// The `(event name, data)` pairs of an SSE body whose events are named.
    fn named_events(r: &Reply) -> Vec<(String, Value)> {
        r.body
            .split("\n\n")
            .filter(|e| !e.is_empty())
            .map(|e| {
                let (name, data) = e.split_once('\n').unwrap();
                let name = name.strip_prefix("event: ").unwrap_or_else(|| panic!("unnamed event: {e}"));
                let data: Value = serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap();
                assert_eq!(data["type"], name, "{e}");
                (name.to_owned(), data)
            })
            .collect()
    }

    fn streamed(mut body: Value) -> Value {
        body["stream"] = json!(true);
        body
    }

    #[tokio::test]
    async fn messages_usage_matches_the_content() {
        let server = spawn(MockOptions::default()).await.unwrap();
        let body = json!({"model": "claude-mock", "max_tokens": 1024,
            "system": [{"type": "text", "text": "You are terse."}],
            "messages": [
                {"role": "user", "content": "What is two plus two?"},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "not counted at all", "signature": "sig"},
                    {"type": "text", "text": "Let me check."},
                    {"type": "tool_use", "id": "toolu_1", "name": "calc", "input": {"text": "2 + 2"}}]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "four"}]},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "aGk="}},
                    {"type": "text", "text": "So?"}]}]});
        let r = post(&server, "/v1/messages", body.clone()).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.headers["content-type"], "application/json");
        let v = r.json();
        assert!(v["id"].as_str().unwrap().starts_with("msg_"));
        assert_eq!(v["type"], "message");
        assert_eq!(v["role"], "assistant");
        assert_eq!(v["model"], "claude-mock");
        assert_eq!(v["stop_reason"], "end_turn");
        assert_eq!(v["stop_sequence"], Value::Null);
        let content = v["content"].as_array().unwrap();
        assert_eq!(content.len(), 1);
        assert_eq!(content[0]["type"], "text");
        let text = content[0]["text"].as_str().unwrap();
        assert_eq!(text.split_whitespace().count(), 16);
        // 3 system words; 5, 3 and 1 + 1 message words (not the thinking, tool input or
        // image); 3 messages.
        assert_eq!(
            v["usage"],
            json!({"input_tokens": 3 + 5 + 3 + 2 + 3 * 3, "output_tokens": 16,
                "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0})
        );
        assert_eq!(post(&server, "/v1/messages", body.clone()).await.json()["content"][0]["text"], text);

        let mut capped = body.clone();
        capped["max_tokens"] = json!(3);
        let v = post(&server, "/v1/messages", capped).await.json();
        assert_eq!(v["stop_reason"], "max_tokens");
        assert_eq!(v["usage"]["output_tokens"], 3);
        assert_eq!(v["content"][0]["text"].as_str().unwrap().split_whitespace().count(), 3);

        let mut missing = body;
        missing.as_object_mut().unwrap().remove("max_tokens");
        let r = post(&server, "/v1/messages", missing).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert_eq!(
            r.json(),
            json!({"type": "error", "error": {"type": "invalid_request_error", "message": "max_tokens: Field required"}})
        );
    }

    #[tokio::test]
    async fn messages_stream_in_anthropic_order_and_join_to_the_plain_text() {
        let server = spawn(MockOptions::default()).await.unwrap();
        let body = json!({"model": "claude-mock", "max_tokens": 100, "system": "be brief",
            "messages": [{"role": "user", "content": "hello there"}]});
        let headers = [("content-type", "application/json"), ("x-mock-chunks", "4")];
        let plain = call(&server, Method::POST, "/v1/messages", &headers, &body.to_string()).await.json();
        let r = call(&server, Method::POST, "/v1/messages", &headers, &streamed(body).to_string()).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.headers["content-type"], "text/event-stream");
        let events = named_events(&r);
        let kinds: Vec<&str> = events.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(
            kinds,
            [
                "message_start",
                "ping",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        let start = &events[0].1["message"];
        assert!(start["id"].as_str().unwrap().starts_with("msg_"));
        assert_eq!(start["content"], json!([]));
        assert_eq!(start["stop_reason"], Value::Null);
        assert_eq!(
            start["usage"],
            json!({"input_tokens": 2 + 2 + 3, "output_tokens": 1, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0})
        );
        assert_eq!(
            events[2].1,
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})
        );
        assert!(events[3..7].iter().all(|(_, d)| d["index"] == 0 && d["delta"]["type"] == "text_delta"));
        let text: String = events[3..7].iter().map(|(_, d)| d["delta"]["text"].as_str().unwrap()).collect();
        assert_eq!(text, plain["content"][0]["text"].as_str().unwrap());
        assert_eq!(events[7].1, json!({"type": "content_block_stop", "index": 0}));
        assert_eq!(
            events[8].1,
            json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": 4}})
        );
        assert_eq!(plain["usage"]["output_tokens"], 4);
    }

    #[tokio::test]
    async fn messages_thinking_comes_first_with_a_signature() {
        let server = spawn(MockOptions::default()).await.unwrap();
        let body = json!({"model": "claude-mock", "max_tokens": 2048, "thinking": {"type": "enabled", "budget_tokens": 1024},
            "messages": [{"role": "user", "content": "Why is the sky blue?"}]});
        let plain = post(&server, "/v1/messages", body.clone()).await.json();
        let content = plain["content"].as_array().unwrap();
        assert_eq!(content.len(), 2);
        assert_eq!(content[0]["type"], "thinking");
        let thinking = content[0]["thinking"].as_str().unwrap();
        assert!(thinking.starts_with("Let me think step by step. "), "{thinking}");
        assert_eq!(thinking.split_whitespace().count(), REASONING_WORDS);
        let signature = content[0]["signature"].as_str().unwrap();
        assert!(!signature.is_empty());
        assert_eq!(content[1]["type"], "text");
        assert_eq!(plain["usage"]["output_tokens"], REASONING_WORDS + 16);
        // Thinking does not change the answer.
        let mut without = body.clone();
        without.as_object_mut().unwrap().remove("thinking");
        assert_eq!(post(&server, "/v1/messages", without).await.json()["content"][0]["text"], content[1]["text"]);

        let events = named_events(&post(&server, "/v1/messages", streamed(body.clone())).await);
        assert_eq!(events[2].1["index"], 0);
        assert_eq!(events[2].1["content_block"], json!({"type": "thinking", "thinking": "", "signature": ""}));
        let deltas: Vec<&Value> = events
            .iter()
            .filter(|(name, d)| name == "content_block_delta" && d["index"] == 0)
            .map(|(_, d)| &d["delta"])
            .collect();
        let (sig, thoughts) = deltas.split_last().unwrap();
        assert_eq!(thoughts.len(), REASONING_WORDS.div_ceil(REASONING_DELTA_WORDS));
        assert!(thoughts.iter().all(|d| d["type"] == "thinking_delta"));
        let streamed_thinking: String = thoughts.iter().map(|d| d["thinking"].as_str().unwrap()).collect();
        assert_eq!(streamed_thinking, thinking);
        assert_eq!(**sig, json!({"type": "signature_delta", "signature": signature}));
        // Blocks in order, indices 0, 1; each opened, filled and closed before the next.
        let blocks: Vec<(&str, &Value)> = events
            .iter()
            .filter(|(name, _)| name.starts_with("content_block_") && name != "content_block_delta")
            .map(|(name, d)| (name.as_str(), &d["index"]))
            .collect();
        assert_eq!(
            blocks,
            [
                ("content_block_start", &json!(0)),
                ("content_block_stop", &json!(0)),
                ("content_block_start", &json!(1)),
                ("content_block_stop", &json!(1))
            ]
        );
        let text: String = events
            .iter()
            .filter(|(_, d)| d["index"] == 1 && d["delta"]["type"] == "text_delta")
            .map(|(_, d)| d["delta"]["text"].as_str().unwrap())
            .collect();
        assert_eq!(text, content[1]["text"].as_str().unwrap());
        assert_eq!(events[events.len() - 2].1["usage"]["output_tokens"], REASONING_WORDS + 16);

        // A budget below the fixed count caps it.
        let mut small = body;
        small["thinking"]["budget_tokens"] = json!(5);
        let v = post(&server, "/v1/messages", small).await.json();
        assert_eq!(v["content"][0]["thinking"], "Let me think step by ");
        assert_eq!(v["usage"]["output_tokens"], 5 + 16);
    }

    #[tokio::test]
    async fn messages_call_the_first_tool_until_it_has_a_result() {
        let server = spawn(MockOptions::default()).await.unwrap();
        let tools = json!([{"name": "get_weather", "description": "Weather", "input_schema": {"type": "object"}},
            {"name": "other", "input_schema": {"type": "object"}}]);
        let body = json!({"model": "claude-mock", "max_tokens": 100, "tools": tools,
            "messages": [{"role": "user", "content": "Weather in Paris?"}]});
        let v = post(&server, "/v1/messages", body.clone()).await.json();
        assert_eq!(v["stop_reason"], "tool_use");
        let content = v["content"].as_array().unwrap();
        assert_eq!(content.len(), 2);
        assert_eq!(content[0]["type"], "text");
        let tool = &content[1];
        assert_eq!(tool["type"], "tool_use");
        assert!(tool["id"].as_str().unwrap().starts_with("toolu_"));
        assert_eq!(tool["name"], "get_weather");
        assert_eq!(tool["input"], json!({}));
        // The text, and one token for the call.
        assert_eq!(v["usage"]["output_tokens"], 16 + 1);

        let mut named = body.clone();
        named["tool_choice"] = json!({"type": "tool", "name": "other"});
        assert_eq!(post(&server, "/v1/messages", named).await.json()["content"][1]["name"], "other");
        let mut none = body.clone();
        none["tool_choice"] = json!({"type": "none"});
        assert_eq!(post(&server, "/v1/messages", none).await.json()["stop_reason"], "end_turn");

        // Streamed after thinking: blocks 0 thinking, 1 text, 2 tool use.
        let mut thinking = streamed(body.clone());
        thinking["thinking"] = json!({"type": "enabled", "budget_tokens": 1024});
        let events = named_events(&post(&server, "/v1/messages", thinking).await);
        let starts: Vec<(&Value, &Value)> = events
            .iter()
            .filter(|(name, _)| name == "content_block_start")
            .map(|(_, d)| (&d["index"], &d["content_block"]["type"]))
            .collect();
        assert_eq!(
            starts,
            [(&json!(0), &json!("thinking")), (&json!(1), &json!("text")), (&json!(2), &json!("tool_use"))]
        );
        let at = events.iter().position(|(_, d)| d["content_block"]["type"] == "tool_use").unwrap();
        assert_eq!(events[at].1["content_block"]["name"], "get_weather");
        assert_eq!(events[at].1["content_block"]["input"], json!({}));
        assert_eq!(
            events[at + 1].1,
            json!({"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": "{}"}})
        );
        assert_eq!(events[at + 2].1, json!({"type": "content_block_stop", "index": 2}));
        assert_eq!(events[at + 3].1["delta"]["stop_reason"], "tool_use");
        assert_eq!(events[at + 3].1["usage"]["output_tokens"], REASONING_WORDS + 16 + 1);
        assert_eq!(events[at + 4].0, "message_stop");

        // With the tool's result, an answer.
        let mut answered = body;
        answered["messages"] = json!([
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny and warm"}]}]);
        let v = post(&server, "/v1/messages", answered).await.json();
        assert_eq!(v["stop_reason"], "end_turn");
        assert_eq!(v["content"].as_array().unwrap().len(), 1);
        // 3 words, none in the tool call, 3 in its result; 3 messages.
        assert_eq!(v["usage"]["input_tokens"], 3 + 3 + 3 * 3);
    }

    #[tokio::test]
    async fn count_tokens_counts_like_messages() {
        let server = spawn(MockOptions::default()).await.unwrap();
        let body = json!({"model": "claude-mock", "system": "You are a poet.",
            "messages": [{"role": "user", "content": [{"type": "text", "text": "Write a haiku"}]}]});
        let r = post(&server, "/v1/messages/count_tokens", body.clone()).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.json(), json!({"input_tokens": 4 + 3 + 3}));
        let mut full = body;
        full["max_tokens"] = json!(10);
        assert_eq!(post(&server, "/v1/messages", full).await.json()["usage"]["input_tokens"], 10);
    }

    #[tokio::test]
    async fn messages_errors_are_anthropic_shaped() {
        let server = spawn(MockOptions::default()).await.unwrap();
        let body = json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}).to_string();
        for (status, kind) in [
            ("400", "invalid_request_error"),
            ("401", "authentication_error"),
            ("403", "permission_error"),
            ("404", "not_found_error"),
            ("413", "request_too_large"),
            ("429", "rate_limit_error"),
            ("500", "api_error"),
            ("529", "overloaded_error"),
        ] {
            for path in ["/v1/messages", "/v1/messages/count_tokens"] {
                let r = call(&server, Method::POST, path, &[("x-mock-status", status)], &body).await;
                assert_eq!(r.status.as_str(), status);
                assert_eq!(r.headers["content-type"], "application/json");
                assert_eq!(r.json(), json!({"type": "error", "error": {"type": kind, "message": "mock error"}}));
            }
        }
        let r = call(&server, Method::POST, "/v1/messages", &[], "{not json").await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert_eq!(r.json()["error"]["type"], "invalid_request_error");
        assert_eq!(r.json()["type"], "error");
        let r = call(&server, Method::GET, "/v1/messages/batches", &[], "").await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        assert_eq!(r.json()["error"]["type"], "not_found_error");
        // OpenAI routes keep OpenAI's shape.
        let r = call(&server, Method::POST, "/v1/chat/completions", &[("x-mock-status", "529")], "{}").await;
        assert_eq!(r.body, MOCK_ERROR);
    }

    #[tokio::test]
    async fn messages_first_text_delta_is_not_held_back_by_the_pause() {
        let server = spawn(MockOptions::default()).await.unwrap();
        let body = json!({"model": "m", "max_tokens": 50, "stream": true, "thinking": {"type": "enabled", "budget_tokens": 1024},
            "messages": [{"role": "user", "content": "x"}]})
        .to_string();
        let headers = [
            ("x-mock-pause-after-first-ms", "1000"),
            ("x-mock-chunks", "3"),
            ("x-mock-event-bytes", "10"),
            ("x-mock-split-first-ms", "50"),
        ];
        let start = Instant::now();
        let resp = client().request(request(&server, Method::POST, "/v1/messages", &headers, &body)).await.unwrap();
        let mut body = resp.into_body();
        let mut seen = String::new();
        let mut first_text_at = None;
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.unwrap().into_data() {
                seen.push_str(std::str::from_utf8(&data).unwrap());
            }
            if first_text_at.is_none() && seen.contains("xxxxxxxxxx\"}}\n\n") {
                first_text_at = Some(start.elapsed());
            }
        }
        let first_text_at = first_text_at.unwrap();
        assert!(first_text_at >= Duration::from_millis(50), "{first_text_at:?}");
        assert!(first_text_at < Duration::from_millis(700), "{first_text_at:?}");
        assert!(start.elapsed() >= Duration::from_millis(1000));
        assert!(seen.ends_with("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"));
        assert_eq!(seen.matches("\"text_delta\"").count(), 3);
    }

    #[tokio::test]
    async fn chat_reasoning_content_for_reasoning_models() {
        let server = spawn(MockOptions::default()).await.unwrap();
        let body = json!({"model": "mock-reasoner", "messages": [{"role": "user", "content": "Prove it."}]});
        let v = post(&server, "/v1/chat/completions", body.clone()).await.json();
        let message = &v["choices"][0]["message"];
        let reasoning = message["reasoning_content"].as_str().unwrap();
        assert!(reasoning.starts_with("Let me think step by step. "));
        assert_eq!(reasoning.split_whitespace().count(), REASONING_WORDS);
        let content = message["content"].as_str().unwrap();
        assert_eq!(content.split_whitespace().count(), 16);
        assert_eq!(
            v["usage"],
            json!({"prompt_tokens": 2 + 3, "completion_tokens": 16 + REASONING_WORDS,
                "total_tokens": 5 + 16 + REASONING_WORDS, "completion_tokens_details": {"reasoning_tokens": REASONING_WORDS}})
        );

        let mut stream = streamed(body);
        stream["stream_options"] = json!({"include_usage": true});
        let r = call(&server, Method::POST, "/v1/chat/completions", &[], &stream.to_string()).await;
        let data = r.data();
        assert_eq!(*data.last().unwrap(), "[DONE]");
        let chunks: Vec<Value> = data[..data.len() - 1].iter().map(|d| serde_json::from_str(d).unwrap()).collect();
        let deltas: Vec<&Value> = chunks.iter().filter_map(|c| c["choices"].get(0).map(|ch| &ch["delta"])).collect();
        let thoughts = REASONING_WORDS.div_ceil(REASONING_DELTA_WORDS);
        assert!(deltas[1..=thoughts].iter().all(|d| d.get("content").is_none()));
        let streamed_reasoning: String =
            deltas[1..=thoughts].iter().map(|d| d["reasoning_content"].as_str().unwrap()).collect();
        assert_eq!(streamed_reasoning, reasoning);
        let streamed_content: String = deltas[thoughts + 1..].iter().filter_map(|d| d["content"].as_str()).collect();
        assert_eq!(streamed_content, content);
        assert_eq!(chunks.last().unwrap()["usage"], v["usage"]);

        // An effort asks for reasoning from any model; without, nothing changes.
        let effort = json!({"model": "mock-small", "reasoning_effort": "low", "messages": [{"role": "user", "content": "Prove it."}]});
        let v = post(&server, "/v1/chat/completions", effort).await.json();
        assert_eq!(v["choices"][0]["message"]["reasoning_content"], reasoning);
        let small = json!({"model": "mock-small", "messages": [{"role": "user", "content": "Prove it."}]});
        let v = post(&server, "/v1/chat/completions", small.clone()).await.json();
        assert!(v["choices"][0]["message"].get("reasoning_content").is_none());
        assert!(v["usage"].get("completion_tokens_details").is_none());
        assert_eq!(v["choices"][0]["message"]["content"], content);
        let r = post(&server, "/v1/chat/completions", streamed(small)).await;
        assert!(!r.body.contains("reasoning"));
    }

    #[tokio::test]
    async fn responses_reasoning_item_plain_and_streamed() {
        let server = spawn(MockOptions::default()).await.unwrap();
        let body = json!({"model": "mock-small", "input": "Say hello.", "reasoning": {"effort": "low", "summary": "auto"},
            "include": ["reasoning.encrypted_content"]});
        let v = post(&server, "/v1/responses", body.clone()).await.json();
        let output = v["output"].as_array().unwrap();
        assert_eq!(output.len(), 2);
        let item = &output[0];
        assert_eq!(item["type"], "reasoning");
        assert!(item["id"].as_str().unwrap().starts_with("rs_"));
        let summary = item["summary"][0]["text"].as_str().unwrap().to_owned();
        assert_eq!(item["summary"][0]["type"], "summary_text");
        assert!(summary.starts_with("Let me think step by step. "));
        assert!(item["encrypted_content"].is_string());
        assert_eq!(output[1]["type"], "message");
        let text = output[1]["content"][0]["text"].as_str().unwrap().to_owned();
        assert_eq!(v["reasoning"], json!({"effort": "low", "summary": "auto"}));
        assert_eq!(v["usage"]["output_tokens"], 16 + REASONING_WORDS);
        assert_eq!(v["usage"]["output_tokens_details"]["reasoning_tokens"], REASONING_WORDS);
        assert_eq!(v["usage"]["total_tokens"], 2 + 16 + REASONING_WORDS);
        let plain =
            post(&server, "/v1/responses", json!({"model": "mock-reasoner", "input": "Say hello."})).await.json();
        assert!(plain["output"][0].get("encrypted_content").is_none());
        assert_eq!(plain["output"][0]["summary"][0]["text"], summary);

        let events: Vec<Value> = named_events(&post(&server, "/v1/responses", streamed(body)).await)
            .into_iter()
            .map(|(_, data)| data)
            .collect();
        assert!(events.iter().enumerate().all(|(i, e)| e["sequence_number"] == i));
        let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
        let thoughts = REASONING_WORDS.div_ceil(REASONING_DELTA_WORDS);
        let mut expected = vec![
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.reasoning_summary_part.added",
        ];
        expected.extend(std::iter::repeat_n("response.reasoning_summary_text.delta", thoughts));
        expected.extend([
            "response.reasoning_summary_text.done",
            "response.reasoning_summary_part.done",
            "response.output_item.done",
            "response.output_item.added",
            "response.content_part.added",
        ]);
        expected.extend(std::iter::repeat_n("response.output_text.delta", 16));
        expected.extend([
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed",
        ]);
        assert_eq!(kinds, expected);
        let id = &events[2]["item"]["id"];
        assert!(id.as_str().unwrap().starts_with("rs_"));
        assert_eq!(events[2]["item"], json!({"id": id, "type": "reasoning", "summary": []}));
        assert_eq!(events[3]["part"], json!({"type": "summary_text", "text": ""}));
        let deltas = &events[4..4 + thoughts];
        assert!(deltas.iter().all(|d| d["item_id"] == *id && d["output_index"] == 0 && d["summary_index"] == 0));
        let streamed_summary: String = deltas.iter().map(|d| d["delta"].as_str().unwrap()).collect();
        assert_eq!(streamed_summary, summary);
        assert_eq!(events[4 + thoughts]["text"], summary);
        assert_eq!(events[6 + thoughts]["item"]["summary"][0]["text"], summary);
        assert!(events[6 + thoughts]["item"]["encrypted_content"].is_string());
        // The message moves to output index 1.
        let message_events = &events[7 + thoughts..events.len() - 1];
        assert!(message_events.iter().all(|e| e["output_index"] == 1), "{message_events:?}");
        let streamed_text: String = events
            .iter()
            .filter(|e| e["type"] == "response.output_text.delta")
            .map(|e| e["delta"].as_str().unwrap())
            .collect();
        assert_eq!(streamed_text, text);
        let done = &events.last().unwrap()["response"];
        assert_eq!(done["output"][0]["type"], "reasoning");
        assert_eq!(done["output"][0]["summary"][0]["text"], summary);
        assert_eq!(done["output"][1]["content"][0]["text"], text);
        assert_eq!(done["usage"]["output_tokens_details"]["reasoning_tokens"], REASONING_WORDS);
    }

    #[tokio::test]
    async fn serves_h2_and_stops_on_shutdown() {
        let server = spawn(MockOptions::default()).await.unwrap();
        let h2: Client<HttpConnector, Full<Bytes>> =
            Client::builder(TokioExecutor::new()).http2_only(true).build_http();
        let resp = h2.request(request(&server, Method::GET, "/v1/models", &[], "")).await.unwrap();
        assert_eq!(resp.version(), http::Version::HTTP_2);
        assert_eq!(resp.status(), StatusCode::OK);
        let addr = server.addr;
        server.shutdown();
        let mut refused = false;
        for _ in 0..50 {
            if tokio::net::TcpStream::connect(addr).await.is_err() {
                refused = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(refused, "still accepting after shutdown");
    }
}
