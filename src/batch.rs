//! The Files and Batch APIs, understood rather than passed.
//!
//! A batch is many LLM requests in one upload: passed through, 50,000 requests would
//! reach the provider as one request warden never read, past every policy, limit and
//! detector. So:
//!
//! - **Uploads** (`POST /v1/files`, multipart) are read as they stream to the upstream.
//!   A `file` part uploaded with `purpose=batch` is read line by line (each line at most
//!   `server.max_body_bytes`, at most [`MAX_LINES`] lines); every line is an LLM request
//!   (`{"custom_id","method","url","body"}`) checked like one sent alone: a route warden
//!   understands, the tier's model allow-list and parameter rules (a parameter the tier
//!   strips is refused, since a file cannot be rewritten in flight), and its tokens
//!   estimated. Each line is handed to the detector as one of the account's requests.
//!   The whole batch's tokens are reserved against the account's daily and monthly
//!   quotas. The last bytes of the upload are held back until the whole file has been
//!   read: a batch with any refused line, or over the quota, is cut off before its end
//!   (the provider never gets a complete file) and the client gets 400 naming the line,
//!   or 429.
//! - **Ownership.** Every account shares the upstream key, so warden keeps which files
//!   and batches are whose (`provider_objects` in the store): `GET`/`DELETE
//!   /v1/files/{id}` and `/content` for the account's uploads and its batches' output
//!   and error files, `POST /v1/batches` only with an input file the account uploaded
//!   with purpose `batch` (and read), `GET /v1/batches/{id}` and `.../cancel` only for
//!   batches it created through warden. Anything else is 404 in the provider's shape,
//!   as if it did not exist. Listing files or batches is not served (the provider's list
//!   is every account's).
//!
//! The upload is never buffered whole: one frame is held back, a line is kept until it
//! ends, and the reading runs inside the body's own polls (no task, no channel).

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use bytes::{Bytes, BytesMut};
use http_body::{Body as HttpBody, Frame};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::app::App;
use crate::auth::Principal;
use crate::body::BoxError;
use crate::error::ProxyError;
use crate::events::RequestEvent;
use crate::limits::{LimitSpec, Reservation};
use crate::llm::{LlmRequest, LlmRoute};
use crate::routes::Route;
use crate::tiers::Tier;

/// Most requests one batch file may hold (the provider's own limit).
pub const MAX_LINES: usize = 50_000;

/// Largest response of the Files and Batch APIs read for the ids it names.
pub const MAX_OBJECT_BYTES: usize = 1024 * 1024;

/// What reading an upload decided.
#[derive(Debug)]
pub enum Verdict {
    /// Still reading.
    Reading,
    /// Not a batch file: passed on as it is.
    NotBatch,
    /// A batch file every line of which was accepted; its tokens are reserved.
    Accepted { requests: usize, tokens: u64, reservation: Option<Box<Reservation>> },
    /// Refused: the upload is cut off before its end.
    Refused(ProxyError),
}

/// The verdict, shared by the upload body and the request path.
pub type SharedVerdict = Arc<Mutex<Verdict>>;

/// Who uploads, and what applies to them.
pub struct Uploader {
    pub app: Arc<App>,
    pub principal: Principal,
    pub tier: Tier,
    pub request_id: Arc<str>,
    pub client_ip: std::net::IpAddr,
    pub user_agent: Option<String>,
    pub ts_ms: i64,
    /// Longest line (`server.max_body_bytes`).
    pub max_line: usize,
}

/// The error an upload body ends with when its batch is refused.
#[derive(Debug, thiserror::Error)]
#[error("the batch file was refused")]
pub struct BatchRefused;

/// Bytes handed from the upload body to the multipart reader.
#[derive(Default)]
struct FeedState {
    queue: VecDeque<Bytes>,
    ended: bool,
    waker: Option<Waker>,
}

#[derive(Clone, Default)]
struct Feed(Arc<Mutex<FeedState>>);

impl Feed {
    fn lock(&self) -> std::sync::MutexGuard<'_, FeedState> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
    fn push(&self, data: Bytes) {
        let mut s = self.lock();
        s.queue.push_back(data);
        if let Some(w) = s.waker.take() {
            w.wake();
        }
    }
    fn end(&self) {
        let mut s = self.lock();
        s.ended = true;
        if let Some(w) = s.waker.take() {
            w.wake();
        }
    }
    fn backlog(&self) -> bool {
        !self.lock().queue.is_empty()
    }
}

impl futures_util::Stream for Feed {
    type Item = Result<Bytes, std::convert::Infallible>;
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut s = self.lock();
        match s.queue.pop_front() {
            Some(b) => Poll::Ready(Some(Ok(b))),
            None if s.ended => Poll::Ready(None),
            None => {
                s.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// An upload on its way to the upstream, read as it passes (see the module docs).
    pub struct Upload<B> {
        #[pin]
        inner: B,
        feed: Feed,
        reading: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
        held: Option<Bytes>,
        verdict: SharedVerdict,
        inner_done: bool,
        failed: bool,
    }
}

/// Wraps an upload body (a `multipart/form-data` body with `boundary`); returns it and
/// the verdict it will reach.
pub fn inspect<B>(inner: B, boundary: String, uploader: Uploader) -> (Upload<B>, SharedVerdict) {
    let feed = Feed::default();
    let verdict: SharedVerdict = Arc::new(Mutex::new(Verdict::Reading));
    let reading = Box::pin(read_upload(feed.clone(), boundary, uploader, verdict.clone()));
    (
        Upload {
            inner,
            feed,
            reading: Some(reading),
            held: None,
            verdict: verdict.clone(),
            inner_done: false,
            failed: false,
        },
        verdict,
    )
}

fn verdict_of(v: &SharedVerdict) -> std::sync::MutexGuard<'_, Verdict> {
    v.lock().unwrap_or_else(|p| p.into_inner())
}

impl<B> HttpBody for Upload<B>
where
    B: HttpBody<Data = Bytes, Error = BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        loop {
            if *this.failed {
                return Poll::Ready(None);
            }
            if let Some(reading) = this.reading.as_mut() {
                if reading.as_mut().poll(cx).is_ready() {
                    *this.reading = None;
                }
            }
            if matches!(&*verdict_of(this.verdict), Verdict::Refused(_)) {
                *this.failed = true;
                return Poll::Ready(Some(Err(Box::new(BatchRefused))));
            }
            if !*this.inner_done {
                // The reader is behind (it wakes this body when it has taken what it
                // was given): no more is read until it catches up.
                if this.reading.is_some() && this.feed.backlog() {
                    return Poll::Pending;
                }
                match this.inner.as_mut().poll_frame(cx) {
                    Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                        Ok(data) => {
                            this.feed.push(data.clone());
                            if let Some(out) = this.held.replace(data) {
                                return Poll::Ready(Some(Ok(Frame::data(out))));
                            }
                        }
                        Err(trailers) => return Poll::Ready(Some(Ok(trailers))),
                    },
                    Poll::Ready(Some(Err(e))) => {
                        *this.failed = true;
                        return Poll::Ready(Some(Err(e)));
                    }
                    Poll::Ready(None) => {
                        *this.inner_done = true;
                        this.feed.end();
                    }
                    Poll::Pending => return Poll::Pending,
                }
                continue;
            }
            if this.reading.is_some() {
                return Poll::Pending;
            }
            // The whole upload was read and not refused: its last bytes go too.
            return Poll::Ready(this.held.take().map(|d| Ok(Frame::data(d))));
        }
    }

    fn is_end_stream(&self) -> bool {
        self.failed || (self.inner_done && self.reading.is_none() && self.held.is_none())
    }
}

/// A refusal naming the line (1-based) of the batch file.
fn line_error(line: usize, message: impl std::fmt::Display) -> ProxyError {
    ProxyError::InvalidRequest { message: format!("Batch file line {line}: {message}"), param: Some("file".into()) }
}

/// One line of a batch file.
#[derive(Deserialize)]
struct BatchLine<'a> {
    #[serde(default)]
    method: Option<&'a str>,
    url: &'a str,
    #[serde(borrow)]
    body: &'a RawValue,
}

/// Reads an upload as it passes and sets `verdict`.
async fn read_upload(feed: Feed, boundary: String, who: Uploader, verdict: SharedVerdict) {
    let decided = match read_fields(feed, boundary, &who).await {
        Ok(Some(batch)) => accept(&who, batch).await,
        Ok(None) => Verdict::NotBatch,
        Err(e) => Verdict::Refused(e),
    };
    *verdict_of(&verdict) = decided;
}

/// What the lines of a batch file add up to.
#[derive(Default)]
struct Batch {
    requests: usize,
    tokens: u64,
}

/// Reads the multipart fields; `Some` for a batch file whose every line was accepted.
async fn read_fields(feed: Feed, boundary: String, who: &Uploader) -> Result<Option<Batch>, ProxyError> {
    let mut multipart = multer::Multipart::new(feed, boundary);
    let malformed = |e: multer::Error| ProxyError::InvalidRequest {
        message: format!("The upload is not a valid multipart/form-data body: {e}."),
        param: None,
    };
    let mut purpose: Option<String> = None;
    // A file read before its purpose was known: its verdict, kept until the purpose comes.
    let mut read: Option<Result<Batch, ProxyError>> = None;
    while let Some(mut field) = multipart.next_field().await.map_err(malformed)? {
        match field.name() {
            Some("purpose") => {
                let mut text = Vec::new();
                while let Some(chunk) = field.chunk().await.map_err(malformed)? {
                    if text.len() + chunk.len() > 256 {
                        return Err(ProxyError::InvalidRequest {
                            message: "`purpose` is too long.".into(),
                            param: Some("purpose".into()),
                        });
                    }
                    text.extend_from_slice(&chunk);
                }
                purpose = Some(String::from_utf8_lossy(&text).trim().to_string());
            }
            Some("file") if purpose.as_deref().is_none_or(|p| p == "batch") => {
                let mut lines = Lines::new(who.max_line);
                let mut batch = Batch::default();
                let mut failure = None;
                while let Some(chunk) = field.chunk().await.map_err(malformed)? {
                    if failure.is_some() {
                        continue;
                    }
                    for line in lines.push(&chunk) {
                        match line.and_then(|(n, text)| check_line(who, n, &text, &mut batch)) {
                            Ok(Some(event)) => who.app.detector.submit_waiting(event).await,
                            Ok(None) => {}
                            Err(e) => failure = Some(e),
                        }
                        if failure.is_some() {
                            break;
                        }
                    }
                    // With the purpose known, a refused line ends the reading at once.
                    if failure.is_some() && purpose.is_some() {
                        return Err(failure.take().expect("just set"));
                    }
                }
                if failure.is_none() {
                    if let Some(last) = lines.finish() {
                        match last.and_then(|(n, text)| check_line(who, n, &text, &mut batch)) {
                            Ok(Some(event)) => who.app.detector.submit_waiting(event).await,
                            Ok(None) => {}
                            Err(e) => failure = Some(e),
                        }
                    }
                }
                read = Some(match failure {
                    Some(e) => Err(e),
                    None if batch.requests == 0 => Err(ProxyError::InvalidRequest {
                        message: "The batch file holds no requests.".into(),
                        param: Some("file".into()),
                    }),
                    None => Ok(batch),
                });
            }
            _ => while field.chunk().await.map_err(malformed)?.is_some() {},
        }
    }
    match (purpose.as_deref(), read) {
        (Some("batch"), Some(result)) => result.map(Some),
        (Some("batch"), None) => Err(ProxyError::InvalidRequest {
            message: "A batch upload needs a `file` part.".into(),
            param: Some("file".into()),
        }),
        _ => Ok(None),
    }
}

/// Checks one line; returns its event for the detector (`None` for a blank line).
fn check_line(who: &Uploader, n: usize, text: &[u8], batch: &mut Batch) -> Result<Option<RequestEvent>, ProxyError> {
    if text.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    if batch.requests >= MAX_LINES {
        return Err(line_error(n, format!("a batch holds at most {MAX_LINES} requests")));
    }
    let line: BatchLine<'_> =
        serde_json::from_slice(text).map_err(|e| line_error(n, format!("not a batch request ({e})")))?;
    if line.method.is_some_and(|m| !m.eq_ignore_ascii_case("POST")) {
        return Err(line_error(n, "`method` must be POST"));
    }
    let route = LlmRoute::of(&http::Method::POST, line.url).ok_or_else(|| {
        line_error(
            n,
            format!("`url` {:?} is not one of the LLM routes", line.url.chars().take(100).collect::<String>()),
        )
    })?;
    let mut llm = LlmRequest::parse(route, line.body.get().as_bytes()).map_err(|e| line_error(n, e.to_string()))?;
    let mut applied = crate::policy::apply(&who.tier.policy, &mut llm).map_err(|e| line_error(n, e.to_string()))?;
    if who.principal.account.strips_soft_labels() {
        applied.stripped.extend(crate::policy::strip_soft_labels(&mut llm));
    }
    if let Some(param) = applied.stripped.first() {
        // A file cannot be rewritten on its way: what would be stripped is refused.
        return Err(line_error(n, format!("`{param}` is not available on your plan")));
    }
    let prompt = llm.prompt_tokens(&who.app.tokens);
    let completion = match route {
        LlmRoute::Embeddings => 0,
        _ => llm.max_tokens.unwrap_or(who.tier.default_max_tokens).saturating_mul(llm.n.unwrap_or(1).max(1)),
    };
    batch.requests += 1;
    batch.tokens = batch.tokens.saturating_add(prompt.saturating_add(completion));
    Ok(Some(RequestEvent {
        ts_ms: who.ts_ms,
        request_id: Arc::from(format!("{}-{n}", who.request_id)),
        account_id: Some(who.principal.account.id.clone()),
        key_id: Some(who.principal.key_id.clone()),
        client_ip: who.client_ip,
        user_agent: who.user_agent.clone(),
        method: http::Method::POST,
        path: std::borrow::Cow::Borrowed(route.path()),
        dialect: Some(crate::llm::Dialect::OpenAi),
        model: llm.model.clone(),
        status: 200,
        stream: false,
        latency: std::time::Duration::ZERO,
        usage: Some(crate::accounting::Usage { prompt_tokens: prompt, completion_tokens: 0 }),
        usage_estimated: true,
        decision: crate::events::Decision::Allowed,
        reason: Some("batch request".into()),
        ending: crate::events::Ending::Batch,
        request: Some(Box::new(llm)),
        completion_text: None,
        completion_truncated: false,
    }))
}

/// Reserves the batch's tokens against the account's quotas.
async fn accept(who: &Uploader, batch: Batch) -> Verdict {
    let spec = who.app.limit_spec(&who.principal.account, &who.tier, None);
    let quotas = LimitSpec { quotas: spec.quotas, ..LimitSpec::default() };
    let reservation = if quotas.is_empty() {
        None
    } else {
        match who.app.limiter.admit(&who.principal.account.id, &who.request_id, quotas, batch.tokens).await {
            Ok(Ok(r)) => Some(Box::new(r)),
            Ok(Err(denial)) => return Verdict::Refused(ProxyError::RateLimited { denial }),
            Err(_) => return Verdict::Refused(ProxyError::LimitsUnavailable),
        }
    };
    Verdict::Accepted { requests: batch.requests, tokens: batch.tokens, reservation }
}

/// Splits a stream of bytes into lines, each at most `max` bytes.
struct Lines {
    partial: BytesMut,
    max: usize,
    /// Lines seen so far.
    n: usize,
    over: bool,
}

type Line = Result<(usize, Bytes), ProxyError>;

impl Lines {
    fn new(max: usize) -> Lines {
        Lines { partial: BytesMut::new(), max, n: 0, over: false }
    }

    /// The lines `chunk` completes (at most one error, last).
    fn push(&mut self, chunk: &[u8]) -> Vec<Line> {
        let mut out = Vec::new();
        if self.over {
            // Past an over-long line nothing more is read.
            return out;
        }
        let mut rest = chunk;
        while let Some(i) = memchr::memchr(b'\n', rest) {
            self.partial.extend_from_slice(&rest[..i]);
            rest = &rest[i + 1..];
            out.push(self.take());
            if out.last().is_some_and(|l| l.is_err()) {
                self.over = true;
                return out;
            }
        }
        if self.partial.len() + rest.len() > self.max {
            self.over = true;
            self.n += 1;
            out.push(Err(self.too_long()));
            return out;
        }
        self.partial.extend_from_slice(rest);
        out
    }

    fn take(&mut self) -> Line {
        self.n += 1;
        if self.partial.len() > self.max {
            return Err(self.too_long());
        }
        let mut line = self.partial.split().freeze();
        if line.ends_with(b"\r") {
            line.truncate(line.len() - 1);
        }
        Ok((self.n, line))
    }

    fn too_long(&self) -> ProxyError {
        line_error(self.n, format!("longer than {} bytes", self.max))
    }

    /// The last line, if the file does not end with a line break.
    fn finish(&mut self) -> Option<Line> {
        (!self.over && !self.partial.is_empty()).then(|| self.take())
    }
}

/// Object kinds in the store.
const FILE: &str = "file";
const BATCH_FILE: &str = "batch_file";
const BATCH: &str = "batch";

/// Whether the account may use the object a route names (404 in the provider's words if
/// not: another account's object reads as one that does not exist).
pub async fn authorize(app: &App, account: &str, route: &Route) -> Result<(), ProxyError> {
    let (kind, label, id) = match route {
        Route::File { id } => (FILE, "File", id),
        Route::Batch { id } => (BATCH, "Batch", id),
        _ => return Ok(()),
    };
    let owner = app.accounts.store().object_owner(kind, id).await.map_err(|e| {
        tracing::error!(error = %e, "cannot look up a provider object's owner");
        ProxyError::StoreUnavailable
    })?;
    match owner {
        Some(o) if o == account => Ok(()),
        _ => Err(ProxyError::NoSuchObject { kind: label, id: id.clone() }),
    }
}

/// The file ids an LLM request's body refers to (`{"type":"input_file","file_id":…}` in
/// a Responses input, `{"type":"file","file":{"file_id":…}}` in a chat message). Bodies
/// that do not mention `"file_id"` (nearly all) are not read again.
pub fn file_refs(raw: &[u8]) -> Vec<String> {
    static FINDER: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\"file_id\""));
    if FINDER.find(raw).is_none() {
        return Vec::new();
    }
    fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    match (k.as_str(), v) {
                        ("file_id", serde_json::Value::String(id)) => out.push(id.clone()),
                        _ => walk(v, out),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|i| walk(i, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    // A body too deep for a tree was refused by the one-pass reader already, or holds
    // the key where warden does not look; either way it names no file a tree shows.
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(raw) {
        walk(&v, &mut out);
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// Every file an LLM request refers to must be the account's own: the provider would
/// serve any file of the shared upstream key.
pub async fn check_file_refs(app: &App, account: &str, raw: &[u8]) -> Result<(), ProxyError> {
    for id in file_refs(raw) {
        let owner = app.accounts.store().object_owner(FILE, &id).await.map_err(|e| {
            tracing::error!(error = %e, "cannot look up a provider object's owner");
            ProxyError::StoreUnavailable
        })?;
        if owner.as_deref() != Some(account) {
            return Err(ProxyError::NoSuchObject { kind: "File", id });
        }
    }
    Ok(())
}

/// `POST /v1/batches`: the body names an input file the account uploaded as a batch
/// file, and an LLM route.
pub async fn check_create(app: &App, account: &str, body: &[u8]) -> Result<(), ProxyError> {
    #[derive(Deserialize)]
    struct Create {
        input_file_id: String,
        endpoint: String,
    }
    let create: Create = serde_json::from_slice(body).map_err(|e| ProxyError::InvalidRequest {
        message: format!("A batch needs `input_file_id` and `endpoint`: {e}."),
        param: None,
    })?;
    if LlmRoute::of(&http::Method::POST, &create.endpoint).is_none() {
        return Err(ProxyError::InvalidRequest {
            message: format!("`endpoint` {:?} is not one of the LLM routes.", create.endpoint),
            param: Some("endpoint".into()),
        });
    }
    let store = app.accounts.store();
    let id = &create.input_file_id;
    let owner = |kind| async move {
        store.object_owner(kind, id).await.map_err(|e| {
            tracing::error!(error = %e, "cannot look up a provider object's owner");
            ProxyError::StoreUnavailable
        })
    };
    if owner(BATCH_FILE).await?.as_deref() == Some(account) {
        return Ok(());
    }
    if owner(FILE).await?.as_deref() == Some(account) {
        return Err(ProxyError::InvalidRequest {
            message: "The input file was not uploaded with purpose `batch`.".into(),
            param: Some("input_file_id".into()),
        });
    }
    Err(ProxyError::NoSuchObject { kind: "File", id: create.input_file_id.clone() })
}

/// Records what a successful Files or Batch API response tells about the account's
/// objects: an uploaded file (a batch file when its lines were read and accepted), a
/// batch created, a batch's output and error files.
pub async fn learn(app: &App, account: &str, route: &Route, accepted_batch: bool, body: &[u8]) {
    #[derive(Deserialize)]
    struct Object {
        #[serde(default)]
        id: Option<String>,
        #[serde(default)]
        output_file_id: Option<String>,
        #[serde(default)]
        error_file_id: Option<String>,
    }
    let Ok(object) = serde_json::from_slice::<Object>(body) else { return };
    let mut owned: Vec<(&str, String)> = Vec::new();
    match route {
        Route::FileUpload => {
            if let Some(id) = object.id {
                if accepted_batch {
                    owned.push((BATCH_FILE, id.clone()));
                }
                owned.push((FILE, id));
            }
        }
        Route::BatchCreate | Route::Batch { .. } => {
            if matches!(route, Route::BatchCreate) {
                owned.extend(object.id.map(|id| (BATCH, id)));
            }
            owned.extend(object.output_file_id.map(|id| (FILE, id)));
            owned.extend(object.error_file_id.map(|id| (FILE, id)));
        }
        _ => {}
    }
    for (kind, id) in owned {
        if let Err(e) = app.accounts.store().record_object(kind, &id, account).await {
            tracing::error!(error = %e, kind, "cannot record a provider object's owner");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_references_are_found_wherever_a_body_puts_them() {
        let responses = br#"{"model":"m","input":[{"role":"user","content":[{"type":"input_file","file_id":"file-a"},{"type":"input_text","text":"sum up"}]}]}"#;
        assert_eq!(file_refs(responses), ["file-a"]);
        let chat = br#"{"messages":[{"role":"user","content":[{"type":"file","file":{"file_id":"file-b"}},{"type":"file","file":{"file_id":"file-a"}}]}]}"#;
        assert_eq!(file_refs(chat), ["file-a", "file-b"]);
        assert!(file_refs(br#"{"messages":[{"role":"user","content":"my "file_id" is x"}]}"#).is_empty());
        assert!(file_refs(br#"{"messages":[]}"#).is_empty());
    }

    fn split(lines: &mut Lines, chunks: &[&[u8]]) -> Vec<Result<(usize, String), String>> {
        let mut out = Vec::new();
        for c in chunks {
            out.extend(lines.push(c));
        }
        out.extend(lines.finish());
        out.into_iter()
            .map(|l| l.map(|(n, b)| (n, String::from_utf8(b.to_vec()).unwrap())).map_err(|e| e.to_string()))
            .collect()
    }

    #[test]
    fn lines_are_split_across_chunks_and_bounded() {
        let mut l = Lines::new(10);
        let got = split(&mut l, &[b"ab", b"c\r\nde\n", b"\nf"]);
        assert_eq!(got, vec![Ok((1, "abc".into())), Ok((2, "de".into())), Ok((3, "".into())), Ok((4, "f".into()))]);
        let mut l = Lines::new(4);
        let got = split(&mut l, &[b"abc\n", b"abcdef", b"gh\n"]);
        assert_eq!(got[0], Ok((1, "abc".into())));
        assert!(got[1].as_ref().unwrap_err().contains("line 2: longer than 4 bytes"), "{got:?}");
        assert_eq!(got.len(), 2);
    }
}
