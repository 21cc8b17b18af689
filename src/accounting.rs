//! The response tap: wraps an upstream response body on its way to the client, passes
//! every chunk on as soon as it arrives, and learns from what passes by: the `usage` the
//! upstream reports, the completion text (for token estimates and the audit log), and
//! how the body ended (complete, client abort, upstream error, idle timeout).
//!
//! What this sees is never the entire body at once: an SSE event may be split across
//! chunks, so the start of an event is kept (as a copy, at most `server.max_event_bytes`;
//! past it the stream ends with an error event) to be read once it is complete. Bytes are
//! passed on as they arrive, mid-event too: every chunk untouched, byte for byte, except
//! when warden asked the upstream for the usage chunk on the client's behalf (see
//! [`crate::llm`]). Then the tap removes that chunk again (and the `"usage":null` its
//! request added to every other one): an event is held back only until it shows it is
//! not the usage chunk (its `choices` are not empty), and within an event only the few
//! bytes that may begin a `"usage":null`.
//!
//! With reasoning stripped (see [`strip`]), each event is passed on once it is complete
//! (rewritten or left out when it carries reasoning), and a JSON response once it is
//! whole: the same bytes as before for everything that carries none.
//!
//! The outcome is handed over exactly once, through `on_finish`: at the end of the body,
//! on an error, or when the body is dropped early because the client hung up (dropping it
//! also drops the upstream body, which cancels the upstream request).

use std::borrow::Cow;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body::{Body as HttpBody, Frame, SizeHint};
use pin_project_lite::pin_project;
use serde::Deserialize;
use tokio::time::{Instant, Sleep};

use crate::body::BoxError;
use crate::llm::LlmRoute;
use crate::upstream::UpstreamBody;

mod strip;

/// Tokens a response used, as the upstream reported them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

/// How a response body ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    Complete,
    ClientAborted,
    UpstreamError(String),
    IdleTimeout,
    /// An SSE event passed `server.max_event_bytes`; the stream was ended with an error
    /// event.
    EventTooLarge(String),
}

/// The bounds a tap works within.
#[derive(Debug, Clone, Copy)]
pub struct TapLimits {
    /// Longest silence of the upstream between two chunks.
    pub idle: Duration,
    /// Completion text kept for the record.
    pub capture: usize,
    /// Largest SSE event.
    pub max_event: usize,
}

/// What the tap learned, handed to `on_finish` once.
#[derive(Debug)]
pub struct TapOutcome {
    pub ending: Ending,
    /// `usage` as the upstream reported it, if it did.
    pub usage: Option<Usage>,
    /// Completion text seen (joined deltas for streams), up to the capture limit.
    pub completion_text: String,
    /// Bytes of completion text seen in all, including what the limit cut off.
    pub completion_text_bytes: u64,
    /// Bytes of body passed to the client.
    pub body_bytes: u64,
    /// Prompt tokens the upstream reported before the stream was cut (Anthropic's
    /// `message_start`), when no final usage came.
    pub partial_prompt_tokens: Option<u64>,
    /// Reasoning text seen (Anthropic `thinking_delta`s), up to the capture limit: counted
    /// into a usage estimate, never recorded.
    pub reasoning_text: String,
    /// Bytes of reasoning text seen in all.
    pub reasoning_text_bytes: u64,
    /// Events or bodies changed to take reasoning out before the client saw them.
    pub reasoning_stripped: u64,
}

impl TapOutcome {
    /// An outcome that learned nothing but how the body ended and its size.
    pub fn of(ending: Ending, body_bytes: u64) -> TapOutcome {
        TapOutcome {
            ending,
            usage: None,
            completion_text: String::new(),
            completion_text_bytes: 0,
            body_bytes,
            partial_prompt_tokens: None,
            reasoning_text: String::new(),
            reasoning_text_bytes: 0,
            reasoning_stripped: 0,
        }
    }
}

pub type OnFinish = Box<dyn FnOnce(TapOutcome) + Send>;

/// How to read the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    /// A JSON response of an LLM route: usage and text are read at the end;
    /// `strip_reasoning` holds it until then and removes its reasoning.
    Json { route: LlmRoute, strip_reasoning: bool },
    /// An SSE stream of an LLM route; `strip_usage` removes the usage chunk warden
    /// requested on the client's behalf, `strip_reasoning` the reasoning events.
    Sse { route: LlmRoute, strip_usage: bool, strip_reasoning: bool },
    /// Anything else: passed through, only counted.
    Opaque,
}

/// Largest JSON response kept to read its `usage` (bigger ones are forwarded but their
/// usage is estimated instead).
const MAX_JSON_KEPT: usize = 8 * 1024 * 1024;

pin_project! {
    /// The tapped response body. See the module docs.
    pub struct TapBody {
        inner: UpstreamBody,
        #[pin]
        idle: Sleep,
        // Armed lazily: each chunk only moves `last_activity`; the timer is re-armed
        // when it fires early, instead of being reset (a timer-wheel update) per chunk.
        last_activity: Instant,
        idle_timeout: Duration,
        reader: Reader,
        out: VecDeque<Bytes>,
        body_bytes: u64,
        done: bool,
        on_finish: Option<OnFinish>,
    }

    impl PinnedDrop for TapBody {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(f) = this.on_finish.take() {
                // A body whose inner stream already knows it is complete (content-length
                // reached) was not aborted even if nobody polled it to the end.
                let ending = if this.inner.is_end_stream() { Ending::Complete } else { Ending::ClientAborted };
                let reader = std::mem::replace(this.reader, Reader::Opaque);
                f(reader.finish(ending, *this.body_bytes));
            }
        }
    }
}

impl TapBody {
    pub fn new(inner: UpstreamBody, format: BodyFormat, limits: TapLimits, on_finish: OnFinish) -> TapBody {
        let TapLimits { idle: idle_timeout, capture: capture_limit, max_event } = limits;
        let reader = match format {
            BodyFormat::Json { route, strip_reasoning } => Reader::Json {
                route,
                frames: Vec::new(),
                kept: 0,
                overflow: false,
                capture_limit,
                hold: strip_reasoning,
                stripped: 0,
            },
            BodyFormat::Sse { route, strip_usage, strip_reasoning } => Reader::Sse(
                SseReader::new(route, strip_usage, capture_limit, max_event).stripping_reasoning(strip_reasoning),
            ),
            BodyFormat::Opaque => Reader::Opaque,
        };
        TapBody {
            inner,
            idle: tokio::time::sleep(idle_timeout),
            last_activity: Instant::now(),
            idle_timeout,
            reader,
            out: VecDeque::new(),
            body_bytes: 0,
            done: false,
            on_finish: Some(on_finish),
        }
    }
}

fn finish(on_finish: &mut Option<OnFinish>, reader: &mut Reader, ending: Ending, body_bytes: u64) {
    if let Some(f) = on_finish.take() {
        let reader = std::mem::replace(reader, Reader::Opaque);
        f(reader.finish(ending, body_bytes));
    }
}

#[derive(Debug, thiserror::Error)]
#[error("upstream sent nothing for {0:?}")]
pub struct IdleTimeout(Duration);

impl HttpBody for TapBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        loop {
            if let Some(chunk) = this.out.pop_front() {
                *this.body_bytes += chunk.len() as u64;
                return Poll::Ready(Some(Ok(Frame::data(chunk))));
            }
            if *this.done {
                return Poll::Ready(None);
            }
            match Pin::new(&mut *this.inner).poll_frame(cx).map_err(|e| Box::new(e) as BoxError) {
                Poll::Ready(Some(Ok(frame))) => {
                    *this.last_activity = Instant::now();
                    match frame.into_data() {
                        Ok(data) => match this.reader.feed(data) {
                            Ok(forward) if forward.is_empty() => {}
                            Ok(forward) => {
                                *this.body_bytes += forward.len() as u64;
                                return Poll::Ready(Some(Ok(Frame::data(forward))));
                            }
                            Err(EventTooLarge(limit)) => {
                                // The client gets what came before and an error event that
                                // says why the stream ends; the upstream is not read further.
                                *this.done = true;
                                let message = format!("a server-sent event of the upstream passed {limit} bytes");
                                this.out.push_back(error_event(this.reader.dialect(), &message));
                                let pending: u64 = this.out.iter().map(|b| b.len() as u64).sum();
                                let ending = Ending::EventTooLarge(message);
                                finish(this.on_finish, this.reader, ending, *this.body_bytes + pending);
                            }
                        },
                        Err(trailers) => return Poll::Ready(Some(Ok(trailers))),
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    *this.done = true;
                    finish(this.on_finish, this.reader, Ending::UpstreamError(e.to_string()), *this.body_bytes);
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(None) => {
                    *this.done = true;
                    if let Some(rest) = this.reader.flush() {
                        this.out.push_back(rest);
                    }
                    let pending: u64 = this.out.iter().map(|b| b.len() as u64).sum();
                    finish(this.on_finish, this.reader, Ending::Complete, *this.body_bytes + pending);
                }
                Poll::Pending => {
                    ready!(this.idle.as_mut().poll(cx));
                    let deadline = *this.last_activity + *this.idle_timeout;
                    if deadline > Instant::now() {
                        // Chunks arrived since the timer was armed: re-arm and wait on.
                        this.idle.as_mut().reset(deadline);
                        continue;
                    }
                    *this.done = true;
                    finish(this.on_finish, this.reader, Ending::IdleTimeout, *this.body_bytes);
                    return Poll::Ready(Some(Err(Box::new(IdleTimeout(*this.idle_timeout)))));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.out.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        match self.reader {
            Reader::Sse(_) | Reader::Json { hold: true, .. } => SizeHint::default(),
            _ if self.done => SizeHint::with_exact(0),
            _ => self.inner.size_hint(),
        }
    }
}

enum Reader {
    /// `hold`: the body is forwarded only at its end, without its reasoning (`stripped`:
    /// what was removed).
    Json {
        route: LlmRoute,
        frames: Vec<Bytes>,
        kept: usize,
        overflow: bool,
        capture_limit: usize,
        hold: bool,
        stripped: u64,
    },
    Sse(SseReader),
    Opaque,
}

impl Reader {
    fn dialect(&self) -> crate::llm::Dialect {
        match self {
            Reader::Json { route, .. } => route.dialect(),
            Reader::Sse(sse) => sse.route.dialect(),
            Reader::Opaque => crate::llm::Dialect::OpenAi,
        }
    }

    /// Takes one upstream chunk; returns what to forward now (the chunk itself, or its
    /// rewrite; possibly nothing yet).
    fn feed(&mut self, data: Bytes) -> Result<Bytes, EventTooLarge> {
        match self {
            Reader::Opaque => Ok(data),
            Reader::Json { frames, kept, overflow, hold, .. } => {
                if !*overflow {
                    if *kept + data.len() <= MAX_JSON_KEPT {
                        *kept += data.len();
                        frames.push(data.clone()); // a refcount, not a copy
                    } else if *hold {
                        // Too large to hold whole: it is not passed on with its reasoning.
                        return Err(EventTooLarge(MAX_JSON_KEPT));
                    } else {
                        *overflow = true;
                        frames.clear();
                    }
                }
                Ok(if *hold { Bytes::new() } else { data })
            }
            Reader::Sse(sse) => sse.feed(data),
        }
    }

    /// At the end of the body: whatever a rewriting reader still holds back.
    fn flush(&mut self) -> Option<Bytes> {
        match self {
            Reader::Sse(sse) => sse.flush(),
            Reader::Json { route, frames, hold: true, stripped, .. } => {
                let whole = match frames.len() {
                    0 => return None,
                    1 => frames[0].clone(),
                    _ => Bytes::from(frames.concat()),
                };
                match strip::strip_json(*route, &whole) {
                    Some(out) => {
                        *stripped += 1;
                        Some(Bytes::from(out))
                    }
                    None => Some(whole),
                }
            }
            _ => None,
        }
    }

    fn finish(self, ending: Ending, body_bytes: u64) -> TapOutcome {
        let mut outcome = TapOutcome::of(ending, body_bytes);
        match self {
            Reader::Opaque => {}
            Reader::Json { route, frames, overflow, capture_limit, stripped, .. } => {
                outcome.reasoning_stripped = stripped;
                if !overflow {
                    let whole: Cow<[u8]> = match frames.len() {
                        1 => Cow::Borrowed(&frames[0][..]),
                        _ => Cow::Owned(frames.concat()),
                    };
                    read_json_response(route, &whole, capture_limit, &mut outcome);
                }
            }
            Reader::Sse(sse) => {
                outcome.usage = sse.usage;
                outcome.completion_text = sse.text.text;
                outcome.completion_text_bytes = sse.text.total_bytes;
                outcome.partial_prompt_tokens = sse.messages_prompt;
                outcome.reasoning_text = sse.reasoning.text;
                outcome.reasoning_text_bytes = sse.reasoning.total_bytes;
                outcome.reasoning_stripped = sse.strip.map_or(0, |s| s.changed);
            }
        }
        outcome
    }
}

/// Completion text kept up to a limit, counting what the limit cut off.
struct TextCapture {
    text: String,
    limit: usize,
    total_bytes: u64,
}

impl TextCapture {
    fn push(&mut self, s: &str) {
        self.total_bytes += s.len() as u64;
        let room = self.limit.saturating_sub(self.text.len());
        if room >= s.len() {
            self.text.push_str(s);
        } else if room > 0 {
            let mut cut = room;
            while !s.is_char_boundary(cut) {
                cut -= 1;
            }
            self.text.push_str(&s[..cut]);
        }
    }
}

/// An SSE event passed the limit (bytes).
#[derive(Debug)]
pub struct EventTooLarge(pub usize);

/// The error event a stream ends with when warden cuts it, in the shape the SDKs of its
/// dialect raise as an API error (OpenAI's `data: {"error"}`, Anthropic's `event: error`).
/// It starts with a blank line, which ends any event the client has the start of.
fn error_event(dialect: crate::llm::Dialect, message: &str) -> Bytes {
    match dialect {
        crate::llm::Dialect::OpenAi => {
            let body = serde_json::json!({
                "error": {"message": message, "type": "server_error", "param": null, "code": "event_too_large"}
            });
            Bytes::from(format!("\n\ndata: {body}\n\n"))
        }
        crate::llm::Dialect::Anthropic => {
            let body = serde_json::json!({"type": "error", "error": {"type": "api_error", "message": message}});
            Bytes::from(format!("\n\nevent: error\ndata: {body}\n\n"))
        }
    }
}

/// Reads SSE events as they pass (see the module docs).
struct SseReader {
    route: LlmRoute,
    strip_usage: bool,
    /// The current event so far, when it did not end in the chunk that began it.
    event: BytesMut,
    /// Rewrite mode: the current event is known not to be the injected usage chunk, so
    /// its bytes go out as they come...
    passing: bool,
    /// ...and this many of them already went.
    forwarded: usize,
    max_event: usize,
    usage: Option<Usage>,
    text: TextCapture,
    /// Reasoning text (Anthropic `thinking_delta`s, chat `reasoning_content`), for usage estimates.
    reasoning: TextCapture,
    /// The prompt tokens a Messages stream's `message_start` reported (its output comes
    /// as a running total in `message_delta`).
    messages_prompt: Option<u64>,
    /// Reasoning removed from the events (`reasoning = "strip"`).
    strip: Option<strip::Stripper>,
}

/// Finds the end of the first SSE event in `buf` (just past its blank line).
fn event_end(buf: &[u8]) -> Option<usize> {
    for nl in memchr::memchr_iter(b'\n', buf) {
        match (buf.get(nl + 1), buf.get(nl + 2)) {
            (Some(b'\n'), _) => return Some(nl + 2),
            (Some(b'\r'), Some(b'\n')) => return Some(nl + 3),
            _ => {}
        }
    }
    None
}

/// The `data:` payload of one event (lines joined with `\n` as the SSE spec says).
fn event_data(event: &[u8]) -> Cow<'_, [u8]> {
    // The usual event, one `data:` line and the blank line, without walking it byte by
    // byte.
    if let Some(rest) = event.strip_prefix(b"data:") {
        if let Some(nl) = memchr::memchr(b'\n', rest) {
            if rest[nl + 1..].iter().all(|b| matches!(b, b'\n' | b'\r')) {
                let line = &rest[..nl];
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                return Cow::Borrowed(line.strip_prefix(b" ").unwrap_or(line));
            }
        }
    }
    event_data_by_lines(event)
}

fn event_data_by_lines(event: &[u8]) -> Cow<'_, [u8]> {
    let mut lines = event
        .split(|b| *b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .filter_map(|l| l.strip_prefix(b"data:"))
        .map(|l| l.strip_prefix(b" ").unwrap_or(l));
    let Some(first) = lines.next() else { return Cow::Borrowed(&[]) };
    match lines.next() {
        None => Cow::Borrowed(first),
        Some(second) => {
            let mut joined = first.to_vec();
            for l in std::iter::once(second).chain(lines) {
                joined.push(b'\n');
                joined.extend_from_slice(l);
            }
            Cow::Owned(joined)
        }
    }
}

#[derive(Deserialize, Default)]
struct RawUsage {
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    /// Anthropic's prompt caching: prompt tokens written to and read from the cache,
    /// besides `input_tokens`.
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
}

impl RawUsage {
    fn normalize(&self) -> Usage {
        Usage { prompt_tokens: self.prompt().unwrap_or(0), completion_tokens: self.completion().unwrap_or(0) }
    }

    fn prompt(&self) -> Option<u64> {
        let cached = self.cache_creation_input_tokens.unwrap_or(0) + self.cache_read_input_tokens.unwrap_or(0);
        self.prompt_tokens.or(self.input_tokens).map(|p| p + cached)
    }

    fn completion(&self) -> Option<u64> {
        self.completion_tokens.or(self.output_tokens)
    }
}

/// A Responses API stream event, as far as accounting cares.
#[derive(Deserialize)]
struct ResponseEvent<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(default)]
    delta: Option<serde_json::Value>,
    #[serde(default)]
    response: Option<ResponseObject>,
}

#[derive(Deserialize)]
struct ResponseObject {
    #[serde(default)]
    usage: Option<RawUsage>,
}

/// What one event means for the stream.
enum EventKind {
    /// The usage-only chunk (no choices) that warden requested on the client's behalf.
    InjectedUsage,
    Other,
}

impl SseReader {
    fn new(route: LlmRoute, strip_usage: bool, capture_limit: usize, max_event: usize) -> SseReader {
        SseReader {
            route,
            strip_usage,
            event: BytesMut::new(),
            passing: false,
            forwarded: 0,
            max_event,
            usage: None,
            text: TextCapture { text: String::new(), limit: capture_limit, total_bytes: 0 },
            reasoning: TextCapture { text: String::new(), limit: capture_limit, total_bytes: 0 },
            messages_prompt: None,
            strip: None,
        }
    }

    /// With `on`, reasoning is taken out of the events (see [`strip`]).
    fn stripping_reasoning(mut self, on: bool) -> SseReader {
        self.strip = on.then(|| strip::Stripper::new(self.route));
        self
    }

    /// Takes one chunk; returns what to forward now.
    fn feed(&mut self, data: Bytes) -> Result<Bytes, EventTooLarge> {
        if let Some(mut stripper) = self.strip.take() {
            // Whole events only: each is passed on, rewritten or left out once complete.
            let mut out = BytesMut::with_capacity(data.len());
            let strip_usage = self.strip_usage;
            let taken = self.take(&data, &mut |kind, event, _| {
                if !strip_usage {
                    stripper.event(event, &mut out);
                } else if !matches!(kind, EventKind::InjectedUsage) {
                    stripper.event(&without_usage_null(event), &mut out);
                }
            });
            self.strip = Some(stripper);
            taken?;
            return Ok(out.freeze());
        }
        if !self.strip_usage {
            // Pass-through: the chunk goes out as it is; complete events are read.
            self.take(&data, &mut |_, _, _| {})?;
            return Ok(data);
        }
        let mut out = BytesMut::with_capacity(data.len());
        self.take(&data, &mut |kind, event, forwarded| {
            // Dropped only if it is the usage chunk and would never have been passed on
            // mid-event, so that where the chunks end changes nothing.
            let usage_chunk = matches!(kind, EventKind::InjectedUsage) && !passes_mid_event(event);
            if forwarded > 0 || !usage_chunk {
                remove_usage_null(&event[forwarded..], &mut out);
            }
        })?;
        // The event still open goes out as far as it has shown, once it is known to pass.
        if !self.event.is_empty() {
            if !self.passing && passes_mid_event(&self.event) {
                self.passing = true;
            }
            if self.passing {
                let safe = forwardable(&self.event);
                if safe > self.forwarded {
                    remove_usage_null(&self.event[self.forwarded..safe], &mut out);
                    self.forwarded = safe;
                }
            }
        }
        Ok(out.freeze())
    }

    /// At the end of the body, in rewrite mode: the part of an unfinished event not yet
    /// forwarded, as it is.
    fn flush(&mut self) -> Option<Bytes> {
        if let Some(stripper) = self.strip.as_mut() {
            // An event the body ended without its blank line: as the events before it.
            if self.event.is_empty() {
                return None;
            }
            let event = std::mem::take(&mut self.event);
            let mut out = BytesMut::new();
            stripper.event(&event, &mut out);
            return Some(out.freeze());
        }
        if !self.strip_usage || self.event.len() <= self.forwarded {
            return None;
        }
        let rest = self.event.split_off(self.forwarded).freeze();
        self.event.clear();
        self.forwarded = 0;
        Some(rest)
    }

    /// Reads every event `data` completes, calling `each` with its kind, its bytes and how
    /// many of them were already forwarded; keeps (a copy of) the start of an unfinished
    /// one.
    fn take(&mut self, data: &[u8], each: &mut dyn FnMut(EventKind, &[u8], usize)) -> Result<(), EventTooLarge> {
        let mut rest = data;
        if !self.event.is_empty() {
            // The open event's end: a blank line that may begin in its last two bytes.
            let held = &self.event[self.event.len().saturating_sub(2)..];
            let mut joint = [0u8; 4];
            let n = held.len() + data.len().min(2);
            joint[..held.len()].copy_from_slice(held);
            joint[held.len()..n].copy_from_slice(&data[..n - held.len()]);
            let end = match event_end(&joint[..n]) {
                Some(e) if e > held.len() => Some(e - held.len()),
                _ => event_end(data),
            };
            let Some(end) = end else {
                self.event.extend_from_slice(data);
                return self.check_size();
            };
            self.event.extend_from_slice(&data[..end]);
            self.check_size()?;
            let mut event = std::mem::take(&mut self.event);
            let forwarded = std::mem::take(&mut self.forwarded);
            self.passing = false;
            let kind = self.read_event(&event);
            each(kind, &event, forwarded);
            // The buffer is kept for the next open event, unless a large one grew it.
            if event.capacity() <= REUSED_EVENT_CAPACITY {
                event.clear();
                self.event = event;
            }
            rest = &data[end..];
        }
        while let Some(len) = event_end(rest) {
            let kind = self.read_event(&rest[..len]);
            each(kind, &rest[..len], 0);
            rest = &rest[len..];
        }
        self.event.extend_from_slice(rest);
        self.check_size()
    }

    fn check_size(&self) -> Result<(), EventTooLarge> {
        if self.event.len() > self.max_event {
            return Err(EventTooLarge(self.max_event));
        }
        Ok(())
    }

    /// Reads one complete event.
    fn read_event(&mut self, event: &[u8]) -> EventKind {
        let data = event_data(event);
        if data.is_empty() || &data[..] == b"[DONE]" {
            return EventKind::Other;
        }
        match self.route {
            LlmRoute::Messages | LlmRoute::CountTokens => {
                if let Some(ev) = scan::messages_event(&data) {
                    match ev.kind.as_deref() {
                        Some("message_start") => {
                            self.messages_prompt = ev.message_usage.and_then(|u| u.prompt());
                        }
                        Some("content_block_delta") => {
                            if let Some(t) = &ev.text {
                                self.text.push(t);
                            }
                            if let Some(t) = &ev.thinking {
                                self.reasoning.push(t);
                            }
                        }
                        Some("message_delta") => {
                            // A running total; newer streams repeat the prompt counts here.
                            if let Some(u) = ev.usage {
                                let prompt = u.prompt().or(self.messages_prompt).unwrap_or(0);
                                self.usage = Some(Usage {
                                    prompt_tokens: prompt,
                                    completion_tokens: u.completion().unwrap_or(0),
                                });
                            }
                        }
                        _ => {}
                    }
                }
                EventKind::Other
            }
            LlmRoute::Responses => {
                if let Some(ev) = json::<ResponseEvent>(&data) {
                    if ev.kind.as_deref() == Some("response.output_text.delta") {
                        if let Some(serde_json::Value::String(d)) = &ev.delta {
                            self.text.push(d);
                        }
                    }
                    if let Some(u) = ev.response.and_then(|r| r.usage) {
                        self.usage = Some(u.normalize());
                    }
                }
                EventKind::Other
            }
            _ => {
                // A chunk that turns out not to be JSON contributes no text.
                let (kept, counted) = (self.text.text.len(), self.text.total_bytes);
                let (kept_r, counted_r) = (self.reasoning.text.len(), self.reasoning.total_bytes);
                let (text, reasoning) = (&mut self.text, &mut self.reasoning);
                let Some((usage, choices)) = scan::chunk(&data, |t| text.push(t), |t| reasoning.push(t)) else {
                    self.text.text.truncate(kept);
                    self.text.total_bytes = counted;
                    self.reasoning.text.truncate(kept_r);
                    self.reasoning.total_bytes = counted_r;
                    return EventKind::Other;
                };
                match usage {
                    Some(u) => {
                        self.usage = Some(u.normalize());
                        if choices {
                            EventKind::Other
                        } else {
                            EventKind::InjectedUsage
                        }
                    }
                    None => EventKind::Other,
                }
            }
        }
    }
}

/// An open event of a rewritten stream longer than this without showing its `choices`
/// is passed on: the usage chunk warden removes is a few hundred bytes.
const UNDECIDED_MAX: usize = 64 * 1024;

/// The open-event buffer is kept for the next event up to this capacity.
const REUSED_EVENT_CAPACITY: usize = 64 * 1024;

/// The event has a `choices` array with something in it: a chat or completions chunk
/// with content, never the usage-only chunk (`"choices":[]`).
fn has_choices(event: &[u8]) -> bool {
    static FINDER: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\"choices\""));
    let Some(at) = FINDER.find(event) else { return false };
    let mut rest = event[at + 9..].iter().copied().filter(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n'));
    matches!((rest.next(), rest.next(), rest.next()), (Some(b':'), Some(b'['), Some(c)) if c != b']')
}

/// How much of `buf` (an open event of a rewritten stream) may go out now. What is held
/// back is what the next bytes decide: a start of `"usage":null` or of the comma before
/// one, a whole `"usage":null` (the comma after it may follow), and a trailing comma (a
/// `"usage":null` may follow). Cut anywhere else, removing `"usage":null` from the parts
/// gives what removing it from the whole would.
fn forwardable(buf: &[u8]) -> usize {
    const WITH_COMMA: &[u8] = b",\"usage\":null";
    const BARE: &[u8] = b"\"usage\":null";
    let partial = |pattern: &[u8]| {
        (1..pattern.len().min(buf.len() + 1)).rev().find(|&k| buf.ends_with(&pattern[..k])).unwrap_or(0)
    };
    let mut safe = buf.len() - partial(WITH_COMMA).max(partial(BARE));
    loop {
        if buf[..safe].ends_with(BARE) {
            safe -= BARE.len();
        } else if buf[..safe].ends_with(b",") {
            safe -= 1;
        } else {
            return safe;
        }
    }
}

/// Copies `event` to `out` without `"usage":null` entries (and the comma that
/// separated each from its neighbour). Inside a JSON string the quotes would be
/// escaped, so every match is a key.
/// Whether an event (complete or not yet) is known to be passed on: it carries choices
/// (not the injected usage chunk) or is too long to be one.
fn passes_mid_event(event: &[u8]) -> bool {
    has_choices(event) || event.len() > UNDECIDED_MAX
}

/// An event as the rewrite passes it on: each `"usage":null` member removed with one of
/// its commas (the fuzz target's reference for where chunks end).
pub fn without_usage_null(event: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::with_capacity(event.len());
    remove_usage_null(event, &mut out);
    out.to_vec()
}

fn remove_usage_null(event: &[u8], out: &mut BytesMut) {
    const USAGE_NULL: &[u8] = b"\"usage\":null";
    static FINDER: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(USAGE_NULL));
    let mut rest = event;
    while let Some(i) = FINDER.find(rest) {
        let end = i + USAGE_NULL.len();
        if i > 0 && rest[i - 1] == b',' {
            out.extend_from_slice(&rest[..i - 1]);
            rest = &rest[end..];
        } else if rest.get(end) == Some(&b',') {
            out.extend_from_slice(&rest[..i]);
            rest = &rest[end + 1..];
        } else {
            // The only member (`{"usage":null}`): left as it is.
            out.extend_from_slice(&rest[..end]);
            rest = &rest[end..];
        }
    }
    out.extend_from_slice(rest);
}

/// Parses a JSON body. serde_json checks the UTF-8 of each string read from bytes with a
/// call of its own; checking the whole body once and reading it as text is the same check
/// for a fraction of the work (see [`crate::llm::view::View::parse`]).
fn json<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Option<T> {
    match std::str::from_utf8(body) {
        Ok(text) => serde_json::from_str(text).ok(),
        Err(_) => serde_json::from_slice(body).ok(),
    }
}

fn read_json_response(route: LlmRoute, body: &[u8], capture_limit: usize, outcome: &mut TapOutcome) {
    let mut text = TextCapture { text: String::new(), limit: capture_limit, total_bytes: 0 };
    let Some(usage) = scan::response(route, body, |t| text.push(t)) else { return };
    outcome.usage = usage.map(|u| u.normalize());
    outcome.completion_text = text.text;
    outcome.completion_text_bytes = text.total_bytes;
}

/// A non-streamed response body read for its usage and completion text only.
///
/// serde_json spent ~18 instructions per byte here, most of it on the fields warden does
/// not read; this walks the same JSON, reading what it needs (`usage`, the choices'
/// `message.content` or `text`, the Responses API's `output[].content[].text`, the
/// Messages API's `content[].text`; and the events of Messages streams) and
/// skipping everything else with a search for the next quote or bracket. It does not
/// validate what it skips: a body that is not JSON gives nothing, and where serde would
/// have refused a response over a field of an unexpected type (`"choices": null`, a
/// content array), the usage is still counted. Tested against the serde reading.
mod scan {
    use super::RawUsage;
    use crate::llm::LlmRoute;
    use std::borrow::Cow;

    /// The usage (`None` when the body has none) and each completion text, in order;
    /// `None` when the body is not a JSON object.
    pub(super) fn response(route: LlmRoute, body: &[u8], mut text: impl FnMut(&str)) -> Option<Option<RawUsage>> {
        let mut s = Scan { b: body, i: 0 };
        if s.peek()? != b'{' {
            return None;
        }
        let mut usage = None;
        s.object(|s, key| match key {
            b"usage" => {
                usage = s.usage()?;
                Some(())
            }
            // Messages: the `text` of each content block (thinking blocks have none).
            b"content" if route == LlmRoute::Messages => s.array(|s| {
                s.object(|s, key| match key {
                    b"text" => s.text(&mut text),
                    _ => s.skip(),
                })
            }),
            b"choices" if !matches!(route, LlmRoute::Responses | LlmRoute::Messages) => {
                s.array(|s| choice(s, b"message", &mut text, &mut |_| {}))
            }
            b"output" if route == LlmRoute::Responses => s.array(|s| {
                s.object(|s, key| match key {
                    b"content" => s.array(|s| {
                        s.object(|s, key| match key {
                            b"text" => s.text(&mut text),
                            _ => s.skip(),
                        })
                    }),
                    _ => s.skip(),
                })
            }),
            _ => s.skip(),
        })?;
        Some(usage)
    }

    /// A chat or completions stream chunk: its usage (`None` when it has none), whether
    /// it has any choices, and each choice's text (`delta.content`, else `text`), in
    /// order; `None` when the chunk is not a JSON object.
    pub(super) fn chunk(
        data: &[u8],
        mut text: impl FnMut(&str),
        mut reasoning: impl FnMut(&str),
    ) -> Option<(Option<RawUsage>, bool)> {
        let mut s = Scan { b: data, i: 0 };
        if s.peek()? != b'{' {
            return None;
        }
        let (mut usage, mut choices) = (None, false);
        s.object(|s, key| match key {
            b"usage" => {
                usage = s.usage()?;
                Some(())
            }
            b"choices" => s.array(|s| {
                choices = true;
                choice(s, b"delta", &mut text, &mut reasoning)
            }),
            _ => s.skip(),
        })?;
        Some((usage, choices))
    }

    /// A Messages stream event, as far as accounting cares: its `type`, the usage of
    /// `message.usage` (`message_start`) and of `usage` (`message_delta`), and
    /// `delta.text` / `delta.thinking` (`content_block_delta`). `None` when the event is
    /// not a JSON object. (serde spent most of a stream's reading on these events.)
    pub(super) fn messages_event(data: &[u8]) -> Option<MessagesEvent<'_>> {
        let mut s = Scan { b: data, i: 0 };
        if s.peek()? != b'{' {
            return None;
        }
        let mut ev = MessagesEvent::default();
        s.object(|s, key| match key {
            b"type" => {
                ev.kind = s.string()?;
                Some(())
            }
            b"message" => s.object(|s, key| match key {
                b"usage" => {
                    ev.message_usage = s.usage()?;
                    Some(())
                }
                _ => s.skip(),
            }),
            b"delta" => s.object(|s, key| match key {
                b"text" => {
                    ev.text = s.string()?;
                    Some(())
                }
                b"thinking" => {
                    ev.thinking = s.string()?;
                    Some(())
                }
                _ => s.skip(),
            }),
            b"usage" => {
                ev.usage = s.usage()?;
                Some(())
            }
            _ => s.skip(),
        })?;
        Some(ev)
    }

    /// What [`messages_event`] reads.
    #[derive(Default)]
    pub(super) struct MessagesEvent<'a> {
        pub(super) kind: Option<Cow<'a, str>>,
        pub(super) message_usage: Option<RawUsage>,
        pub(super) usage: Option<RawUsage>,
        pub(super) text: Option<Cow<'a, str>>,
        pub(super) thinking: Option<Cow<'a, str>>,
    }

    /// One of `choices`: `<message>.content` (`message` in a response, `delta` in a
    /// stream chunk), else `text`.
    fn choice(
        s: &mut Scan<'_>,
        message: &[u8],
        text: &mut impl FnMut(&str),
        reasoning: &mut impl FnMut(&str),
    ) -> Option<()> {
        let (mut content, mut plain) = (None, None);
        s.object(|s, key| match key {
            k if k == message => s.object(|s, key| match key {
                b"content" => {
                    content = s.string()?;
                    Some(())
                }
                // What OpenAI-compatible reasoning servers send beside the content.
                b"reasoning_content" | b"reasoning" => {
                    if let Some(r) = s.string()? {
                        reasoning(&r);
                    }
                    Some(())
                }
                _ => s.skip(),
            }),
            b"text" => {
                plain = s.string()?;
                Some(())
            }
            _ => s.skip(),
        })?;
        if let Some(t) = content.or(plain) {
            text(&t);
        }
        Some(())
    }

    /// The first `"` or `\\` in `h`. Most strings of a response are short keys and
    /// values, where `memchr2`'s set-up costs more than the search: their first 32
    /// bytes are searched eight at a time in a register, the rest with `memchr2`.
    #[inline(always)]
    pub(super) fn quote_or_backslash(h: &[u8]) -> Option<usize> {
        const ONES: u64 = 0x0101_0101_0101_0101;
        const HIGH: u64 = 0x8080_8080_8080_8080;
        // The high bit of each byte equal to `b` (and possibly of bytes above one that
        // is, never below: the lowest set bit is exact).
        let eq = |w: u64, b: u8| {
            let x = w ^ (ONES * u64::from(b));
            x.wrapping_sub(ONES) & !x & HIGH
        };
        let mut i = 0;
        while i < 32 {
            let Some(word) = h.get(i..i + 8) else {
                return h[i..].iter().position(|&c| c == b'"' || c == b'\\').map(|p| p + i);
            };
            let w = u64::from_le_bytes(word.try_into().expect("eight bytes"));
            let m = eq(w, b'"') | eq(w, b'\\');
            if m != 0 {
                return Some(i + (m.trailing_zeros() / 8) as usize);
            }
            i += 8;
        }
        memchr::memchr2(b'"', b'\\', &h[i..]).map(|p| p + i)
    }

    struct Scan<'a> {
        b: &'a [u8],
        i: usize,
    }

    impl<'a> Scan<'a> {
        #[inline(always)]
        fn peek(&mut self) -> Option<u8> {
            while let Some(&c) = self.b.get(self.i) {
                if !matches!(c, b' ' | b'\n' | b'\r' | b'\t') {
                    return Some(c);
                }
                self.i += 1;
            }
            None
        }

        #[inline(always)]
        fn eat(&mut self, c: u8) -> Option<()> {
            (self.peek()? == c).then(|| self.i += 1)
        }

        /// A string at the cursor: its contents between the quotes and whether it has
        /// escapes.
        #[inline(always)]
        fn raw_string(&mut self) -> Option<(&'a [u8], bool)> {
            self.eat(b'"')?;
            let start = self.i;
            let mut escaped = false;
            loop {
                self.i += quote_or_backslash(self.b.get(self.i..)?)?;
                if self.b[self.i] == b'"' {
                    self.i += 1;
                    return Some((&self.b[start..self.i - 1], escaped));
                }
                escaped = true;
                self.i += 2;
            }
        }

        /// A string value (`None` inside for anything else, which is skipped).
        fn string(&mut self) -> Option<Option<Cow<'a, str>>> {
            if self.peek()? != b'"' {
                self.skip()?;
                return Some(None);
            }
            let from = self.i;
            let (raw, escaped) = self.raw_string()?;
            Some(Some(if escaped {
                Cow::Owned(serde_json::from_slice(&self.b[from..self.i]).ok()?)
            } else {
                Cow::Borrowed(std::str::from_utf8(raw).ok()?)
            }))
        }

        fn text(&mut self, text: &mut impl FnMut(&str)) -> Option<()> {
            if let Some(t) = self.string()? {
                text(&t);
            }
            Some(())
        }

        /// `usage`: an object of token counts, or anything else for none.
        fn usage(&mut self) -> Option<Option<RawUsage>> {
            if self.peek()? != b'{' {
                self.skip()?;
                return Some(None);
            }
            let mut u = RawUsage::default();
            self.object(|s, key| {
                let field = match key {
                    b"prompt_tokens" => &mut u.prompt_tokens,
                    b"completion_tokens" => &mut u.completion_tokens,
                    b"input_tokens" => &mut u.input_tokens,
                    b"output_tokens" => &mut u.output_tokens,
                    b"cache_creation_input_tokens" => &mut u.cache_creation_input_tokens,
                    b"cache_read_input_tokens" => &mut u.cache_read_input_tokens,
                    _ => return s.skip(),
                };
                *field = s.count()?;
                Some(())
            })?;
            Some(Some(u))
        }

        /// A token count: a non-negative integer, or `None` for anything else.
        fn count(&mut self) -> Option<Option<u64>> {
            self.peek()?;
            let start = self.i;
            self.skip()?;
            // Folded digit by digit: `str::parse` spent most of its time setting up for a
            // count of two or three digits. `skip` stops at whitespace, so there is none
            // to trim; a sign, a fraction, an exponent or an overflow is no count.
            Some(self.b[start..self.i].iter().try_fold(0u64, |n, &c| {
                c.is_ascii_digit().then_some(())?;
                n.checked_mul(10)?.checked_add(u64::from(c - b'0'))
            }))
        }

        /// An object, `f` reading (or skipping) the value of each key. Anything but an
        /// object is skipped.
        fn object(&mut self, mut f: impl FnMut(&mut Self, &'a [u8]) -> Option<()>) -> Option<()> {
            if self.peek()? != b'{' {
                return self.skip();
            }
            self.i += 1;
            if self.peek()? == b'}' {
                self.i += 1;
                return Some(());
            }
            loop {
                let (key, _) = self.raw_string()?;
                self.eat(b':')?;
                f(self, key)?;
                match self.peek()? {
                    b',' => self.i += 1,
                    b'}' => {
                        self.i += 1;
                        return Some(());
                    }
                    _ => return None,
                }
            }
        }

        /// An array, `f` reading (or skipping) each element. Anything else is skipped.
        fn array(&mut self, mut f: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
            if self.peek()? != b'[' {
                return self.skip();
            }
            self.i += 1;
            if self.peek()? == b']' {
                self.i += 1;
                return Some(());
            }
            loop {
                f(self)?;
                match self.peek()? {
                    b',' => self.i += 1,
                    b']' => {
                        self.i += 1;
                        return Some(());
                    }
                    _ => return None,
                }
            }
        }

        /// Any one value, not validated beyond its extent.
        fn skip(&mut self) -> Option<()> {
            match self.peek()? {
                b'"' => {
                    self.raw_string()?;
                }
                b'{' | b'[' => {
                    let mut depth = 0usize;
                    loop {
                        match *self.b.get(self.i)? {
                            b'"' => {
                                self.raw_string()?;
                                continue;
                            }
                            b'{' | b'[' => depth += 1,
                            b'}' | b']' => {
                                depth -= 1;
                                if depth == 0 {
                                    self.i += 1;
                                    return Some(());
                                }
                            }
                            _ => {}
                        }
                        self.i += 1;
                    }
                }
                b',' | b'}' | b']' | b':' => return None,
                _ => {
                    let start = self.i;
                    while self
                        .b
                        .get(self.i)
                        .is_some_and(|c| !matches!(c, b',' | b'}' | b']' | b' ' | b'\n' | b'\r' | b'\t'))
                    {
                        self.i += 1;
                    }
                    if self.i == start {
                        return None;
                    }
                }
            }
            Some(())
        }
    }
}

/// Feeds `chunks` through the SSE reader as [`TapBody`] does (each chunk as it arrives,
/// then the flush at the end of the body); returns the bytes forwarded to the client, the
/// usage read and the completion text captured. For fuzzing and tests: a [`TapBody`]
/// needs a live upstream body.
#[doc(hidden)]
pub fn scan_sse(
    route: LlmRoute,
    strip_usage: bool,
    chunks: &[&[u8]],
    capture_limit: usize,
) -> (Vec<u8>, Option<Usage>, String) {
    tap_chunks(Reader::Sse(SseReader::new(route, strip_usage, capture_limit, SCAN_MAX_EVENT)), chunks)
}

/// [`scan_sse`] with reasoning stripped (`reasoning = "strip"`).
#[doc(hidden)]
pub fn scan_sse_stripping(
    route: LlmRoute,
    strip_usage: bool,
    chunks: &[&[u8]],
    capture_limit: usize,
) -> (Vec<u8>, Option<Usage>, String) {
    let reader = SseReader::new(route, strip_usage, capture_limit, SCAN_MAX_EVENT).stripping_reasoning(true);
    tap_chunks(Reader::Sse(reader), chunks)
}

/// Like [`scan_sse`], for a JSON response body (read by `read_json_response` at the end).
#[doc(hidden)]
pub fn scan_json_response(route: LlmRoute, chunks: &[&[u8]], capture_limit: usize) -> (Vec<u8>, Option<Usage>, String) {
    tap_chunks(
        Reader::Json { route, frames: Vec::new(), kept: 0, overflow: false, capture_limit, hold: false, stripped: 0 },
        chunks,
    )
}

/// The event limit of [`scan_sse`]: far above what its callers feed.
const SCAN_MAX_EVENT: usize = 4 << 20;

fn tap_chunks(mut reader: Reader, chunks: &[&[u8]]) -> (Vec<u8>, Option<Usage>, String) {
    let mut forwarded = Vec::new();
    for chunk in chunks {
        match reader.feed(Bytes::copy_from_slice(chunk)) {
            Ok(now) => forwarded.extend_from_slice(&now),
            // As the tap does: what came before, then the error event, and no more.
            Err(EventTooLarge(limit)) => {
                forwarded.extend_from_slice(&error_event(reader.dialect(), &format!("an event passed {limit} bytes")));
                let outcome = reader.finish(Ending::Complete, forwarded.len() as u64);
                return (forwarded, outcome.usage, outcome.completion_text);
            }
        }
    }
    if let Some(rest) = reader.flush() {
        forwarded.extend_from_slice(&rest);
    }
    let outcome = reader.finish(Ending::Complete, forwarded.len() as u64);
    (forwarded, outcome.usage, outcome.completion_text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(content: &str) -> String {
        format!(
            "data: {{\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{content}\"}}}}],\"usage\":null}}\n\n"
        )
    }
    const USAGE: &str =
        "data: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2,\"total_tokens\":7}}\n\n";
    const DONE: &str = "data: [DONE]\n\n";

    #[test]
    fn event_boundaries_handle_lf_and_crlf() {
        assert_eq!(event_end(b"data: x\n\nrest"), Some(9));
        assert_eq!(event_end(b"data: x\r\n\r\nrest"), Some(11));
        assert_eq!(event_end(b"data: x\n"), None);
        assert_eq!(&event_data(b"event: e\ndata: a\ndata: b\n\n")[..], b"a\nb");
    }

    proptest::proptest! {
        /// The word-at-a-time search finds what `memchr2` finds, at every length and
        /// position (inside the first 32 bytes, at their edge and past them).
        #[test]
        fn quote_or_backslash_finds_what_memchr2_finds(
            h in proptest::collection::vec(proptest::prop_oneof![
                8 => proptest::prelude::any::<u8>(),
                1 => proptest::strategy::Just(b'"'),
                1 => proptest::strategy::Just(b'\\'),
            ], 0..80),
            clean in 0usize..80,
        ) {
            // Also with the first `clean` bytes free of both, so late hits are common.
            let mut h2: Vec<u8> = h.iter().map(|&c| if c == b'"' || c == b'\\' { b'x' } else { c }).collect();
            h2.truncate(clean.min(h2.len()));
            h2.extend_from_slice(&h);
            for hay in [&h[..], &h2[..]] {
                proptest::prop_assert_eq!(scan::quote_or_backslash(hay), memchr::memchr2(b'"', b'\\', hay));
            }
        }
    }

    proptest::proptest! {
        /// The one-line shortcut of `event_data` gives what reading line by line gives.
        #[test]
        fn event_data_shortcut_matches_the_line_reading(
            lines in proptest::collection::vec("(data: ?|event: |id: |: )?[a-z{}\":, \r]{0,12}", 1..4),
            crlf in proptest::prelude::any::<bool>(),
        ) {
            let nl = if crlf { "\r\n" } else { "\n" };
            let event = format!("{}{nl}{nl}", lines.join(nl));
            proptest::prop_assert_eq!(event_data(event.as_bytes()), event_data_by_lines(event.as_bytes()));
        }
    }

    /// Feeds `stream` in pieces of `size` bytes; returns what was forwarded.
    fn run(sse: &mut SseReader, stream: &[u8], size: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for piece in stream.chunks(size) {
            out.extend_from_slice(&sse.feed(Bytes::copy_from_slice(piece)).unwrap());
        }
        out.extend_from_slice(&sse.flush().unwrap_or_default());
        out
    }

    #[test]
    fn rewrite_removes_the_injected_usage_chunk_even_when_split() {
        let stream = format!("{}{}{USAGE}{DONE}", chunk("Hel"), chunk("lo"));
        for size in [1, 2, 7, 13, 64, stream.len()] {
            let mut sse = SseReader::new(LlmRoute::ChatCompletions, true, 1024, 1 << 20);
            // Awkward pieces cross every boundary.
            let out = String::from_utf8(run(&mut sse, stream.as_bytes(), size)).unwrap();
            assert!(!out.contains("prompt_tokens"), "{out}");
            assert!(!out.contains("\"usage\""), "{size}: {out}");
            assert!(out.ends_with(DONE));
            assert_eq!(out.matches("data: ").count(), 3);
            assert_eq!(sse.usage, Some(Usage { prompt_tokens: 5, completion_tokens: 2 }));
            assert_eq!(sse.text.text, "Hello");
        }
    }

    #[test]
    fn rewrite_passes_an_event_on_before_it_ends() {
        // A chunk whose choices have begun is not the usage chunk: its bytes go out as
        // they arrive, but for the few that may begin a `"usage":null`.
        let mut sse = SseReader::new(LlmRoute::ChatCompletions, true, 1024, 1 << 20);
        let head = "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a long";
        let out = sse.feed(Bytes::from(head)).unwrap();
        assert_eq!(&out[..], head.as_bytes());
        let out = sse.feed(Bytes::from(" answer\"}}],\"usage\":nu")).unwrap();
        assert_eq!(&out[..], b" answer\"}}]");
        let out = sse.feed(Bytes::from("ll}\n\n")).unwrap();
        assert_eq!(&out[..], b"}\n\n");
        assert_eq!(sse.text.text, "a long answer");
        // The usage chunk is held until it ends, then dropped.
        assert!(sse.feed(Bytes::from(&USAGE[..30])).unwrap().is_empty());
        assert!(sse.feed(Bytes::from(&USAGE[30..])).unwrap().is_empty());
    }

    #[test]
    fn an_event_past_the_limit_ends_the_stream() {
        for strip in [false, true] {
            let mut sse = SseReader::new(LlmRoute::ChatCompletions, strip, 1024, 100);
            assert!(sse.feed(Bytes::from(chunk("ok"))).is_ok());
            assert!(sse.feed(Bytes::from(format!("data: {}", "x".repeat(60)))).is_ok());
            assert!(matches!(sse.feed(Bytes::from("y".repeat(60))), Err(EventTooLarge(100))));
        }
        // A complete event over the limit too.
        let mut sse = SseReader::new(LlmRoute::ChatCompletions, false, 1024, 100);
        assert!(sse.feed(Bytes::from(format!("data: {}", "x".repeat(60)))).is_ok());
        assert!(sse.feed(Bytes::from(format!("{}\n\n", "y".repeat(60)))).is_err());
        let e = error_event(crate::llm::Dialect::OpenAi, "too big");
        let v: serde_json::Value = serde_json::from_slice(e.strip_prefix(b"\n\ndata: ").unwrap().trim_ascii()).unwrap();
        assert_eq!(v["error"]["code"], "event_too_large");
    }

    #[test]
    fn observe_reads_usage_without_changing_anything() {
        let stream = format!("{}{USAGE}{DONE}", chunk("Hi"));
        for size in [1, 2, 5, stream.len()] {
            let mut sse = SseReader::new(LlmRoute::ChatCompletions, false, 1024, 1 << 20);
            assert_eq!(run(&mut sse, stream.as_bytes(), size), stream.as_bytes());
            assert_eq!(sse.usage, Some(Usage { prompt_tokens: 5, completion_tokens: 2 }));
            assert_eq!(sse.text.text, "Hi");
            assert!(sse.event.is_empty());
        }
    }

    proptest::proptest! {
        /// However a stream is cut into chunks, the rewrite forwards the same bytes as for
        /// the stream in one piece: every event but the usage chunk, without its
        /// `"usage":null`; pass-through forwards the stream itself.
        #[test]
        fn the_rewrite_does_not_depend_on_chunking(
            contents in proptest::collection::vec("[a-z \"\\\\,:usagenl{}]{0,20}", 0..6),
            cuts in proptest::collection::vec(0usize..400, 0..12),
            usage_at in 0..3usize,
            crlf in proptest::prelude::any::<bool>(),
        ) {
            let mut stream = String::new();
            for c in &contents {
                let c = serde_json::to_string(c).unwrap();
                let choices = format!("\"choices\":[{{\"delta\":{{\"content\":{c}}}}}]");
                let event = match usage_at {
                    0 => format!("data: {{\"usage\":null,{choices}}}\n\n"),
                    1 => format!("data: {{{choices},\"usage\":null}}\n\n"),
                    _ => format!("data: {{{choices},\"usage\":null,\"id\":\"c\"}}\n\n"),
                };
                stream.push_str(&event);
            }
            stream.push_str(USAGE);
            stream.push_str(DONE);
            if crlf {
                stream = stream.replace('\n', "\r\n");
            }
            let bytes = stream.as_bytes();
            let whole = run(&mut SseReader::new(LlmRoute::ChatCompletions, true, 1 << 16, 1 << 20), bytes, bytes.len());
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(bytes.len())).collect();
            cuts.sort_unstable();
            let mut pieced = Vec::new();
            let mut sse = SseReader::new(LlmRoute::ChatCompletions, true, 1 << 16, 1 << 20);
            let mut from = 0;
            for cut in cuts.into_iter().chain([bytes.len()]) {
                pieced.extend_from_slice(&sse.feed(Bytes::copy_from_slice(&bytes[from..cut])).unwrap());
                from = cut;
            }
            pieced.extend_from_slice(&sse.flush().unwrap_or_default());
            proptest::prop_assert_eq!(&pieced, &whole);
            let text = String::from_utf8(whole).unwrap();
            // Content is escaped JSON: a quoted `"usage"` can only be a key.
            proptest::prop_assert!(!text.contains("\"usage\""), "{}", text);
            proptest::prop_assert_eq!(&sse.text.text, &contents.concat());
            let mut pass = SseReader::new(LlmRoute::ChatCompletions, false, 1 << 16, 1 << 20);
            proptest::prop_assert_eq!(run(&mut pass, bytes, 3), bytes.to_vec());
            proptest::prop_assert_eq!(&pass.text.text, &contents.concat());
        }
    }

    #[test]
    fn responses_stream_usage_and_text() {
        let stream = concat!(
            "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"ab\"}\n\n",
            "event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"usage\":{\"input_tokens\":3,\"output_tokens\":1}}}\n\n"
        );
        let mut sse = SseReader::new(LlmRoute::Responses, false, 1024, 1 << 20);
        run(&mut sse, stream.as_bytes(), stream.len());
        assert_eq!(sse.usage, Some(Usage { prompt_tokens: 3, completion_tokens: 1 }));
        assert_eq!(sse.text.text, "ab");
    }

    /// A Messages stream as Anthropic sends it: a thinking block, then a text block.
    const MESSAGES_STREAM: &str = concat!(
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"usage\":{\"input_tokens\":12,\"cache_read_input_tokens\":3,\"output_tokens\":1}}}\n\n",
        "event: ping\ndata: {\"type\":\"ping\"}\n\n",
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"thinking\",\"thinking\":\"\",\"signature\":\"\"}}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"thinking_delta\",\"thinking\":\"Let me think step by step.\"}}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"signature_delta\",\"signature\":\"c2ln\"}}\n\n",
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"text_delta\",\"text\":\"Ninety-one \"}}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"text_delta\",\"text\":\"is 7 times 13.\"}}\n\n",
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":1}\n\n",
        "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":21}}\n\n",
        "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
    );

    /// The `data:` of each event of a stream, parsed.
    fn events_of(stream: &[u8]) -> Vec<serde_json::Value> {
        std::str::from_utf8(stream)
            .unwrap()
            .split("\n\n")
            .filter_map(|e| e.lines().find_map(|l| l.strip_prefix("data: ")))
            .filter(|d| *d != "[DONE]")
            .map(|d| serde_json::from_str(d).unwrap())
            .collect()
    }

    #[test]
    fn messages_streams_report_usage_text_and_thinking() {
        for size in [1, 7, 64, MESSAGES_STREAM.len()] {
            let mut sse = SseReader::new(LlmRoute::Messages, false, 1024, 1 << 20);
            let out = run(&mut sse, MESSAGES_STREAM.as_bytes(), size);
            assert_eq!(out, MESSAGES_STREAM.as_bytes(), "untouched without strip");
            // Cached prompt tokens are prompt tokens.
            assert_eq!(sse.usage, Some(Usage { prompt_tokens: 15, completion_tokens: 21 }));
            assert_eq!(sse.text.text, "Ninety-one is 7 times 13.");
            assert_eq!(sse.reasoning.text, "Let me think step by step.");
        }
        // Cut before `message_delta`: no final usage, but the prompt the upstream counted.
        let cut = MESSAGES_STREAM.find("event: message_delta").unwrap();
        let mut sse = SseReader::new(LlmRoute::Messages, false, 1024, 1 << 20);
        run(&mut sse, &MESSAGES_STREAM.as_bytes()[..cut], 13);
        let o = Reader::Sse(sse).finish(Ending::ClientAborted, 0);
        assert_eq!((o.usage, o.partial_prompt_tokens), (None, Some(15)));
        assert_eq!(o.reasoning_text, "Let me think step by step.");
    }

    #[test]
    fn stripped_messages_streams_lose_the_thinking_block_and_renumber_the_rest() {
        for size in [1, 5, 100, MESSAGES_STREAM.len()] {
            let mut sse = SseReader::new(LlmRoute::Messages, false, 1024, 1 << 20).stripping_reasoning(true);
            let out = run(&mut sse, MESSAGES_STREAM.as_bytes(), size);
            let text = String::from_utf8(out.clone()).unwrap();
            assert!(!text.contains("thinking") && !text.contains("signature"), "{text}");
            let events = events_of(&out);
            let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
            assert_eq!(
                kinds,
                [
                    "message_start",
                    "ping",
                    "content_block_start",
                    "content_block_delta",
                    "content_block_delta",
                    "content_block_stop",
                    "message_delta",
                    "message_stop"
                ]
            );
            assert!(events.iter().filter(|e| e.get("index").is_some()).all(|e| e["index"] == 0), "{text}");
            // Each event keeps its `event:` line, and the usage is counted in full.
            assert_eq!(text.matches("event: ").count(), kinds.len());
            assert_eq!(sse.usage, Some(Usage { prompt_tokens: 15, completion_tokens: 21 }));
            // Four events of the thinking block left out, four of the text block renumbered.
            assert_eq!(sse.strip.as_ref().unwrap().changed, 8);
            // Events without reasoning go byte for byte.
            assert!(text.starts_with(&MESSAGES_STREAM[..MESSAGES_STREAM.find("event: content_block_start").unwrap()]));
        }
    }

    /// The serde reading of a Messages stream event: the reference the scanner is held to.
    #[derive(serde::Deserialize)]
    struct SerdeMessagesEvent<'a> {
        #[serde(rename = "type", borrow, default)]
        kind: Option<Cow<'a, str>>,
        #[serde(default)]
        message: Option<MessagesStart>,
        #[serde(borrow, default)]
        delta: Option<MessagesDelta<'a>>,
        #[serde(default)]
        usage: Option<RawUsage>,
    }

    #[derive(serde::Deserialize)]
    struct MessagesStart {
        #[serde(default)]
        usage: Option<RawUsage>,
    }

    #[derive(serde::Deserialize)]
    struct MessagesDelta<'a> {
        #[serde(borrow, default)]
        text: Option<Cow<'a, str>>,
        #[serde(borrow, default)]
        thinking: Option<Cow<'a, str>>,
    }

    #[test]
    fn the_scanner_reads_messages_events_as_serde_does() {
        let mut events: Vec<String> = MESSAGES_STREAM
            .split("\n\n")
            .filter_map(|e| e.lines().find_map(|l| l.strip_prefix("data: ")))
            .map(str::to_string)
            .collect();
        events.extend(
            [
                // Keys in another order, escapes, whitespace, the prompt repeated in message_delta.
                r#"{ "delta" : {"text":"caf\u00e9 \"x\"\n","type":"text_delta"}, "index":3, "type":"content_block_delta" }"#,
                r#"{"usage":{"input_tokens":9,"cache_creation_input_tokens":2,"output_tokens":40},"type":"message_delta","delta":{"stop_reason":"max_tokens"}}"#,
                r#"{"type":"message_start","message":{"content":[{"type":"text","text":"{[\""}],"usage":{"input_tokens":0,"output_tokens":0}}}"#,
                r#"{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"{\"a\":1}"}}"#,
                r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
            ]
            .map(str::to_string),
        );
        for data in &events {
            let want: SerdeMessagesEvent = serde_json::from_str(data).unwrap();
            let got = scan::messages_event(data.as_bytes()).unwrap_or_else(|| panic!("{data}"));
            assert_eq!(got.kind.as_deref(), want.kind.as_deref(), "{data}");
            let usage = |u: Option<RawUsage>| u.map(|u| (u.prompt(), u.completion()));
            assert_eq!(usage(got.message_usage), usage(want.message.and_then(|m| m.usage)), "{data}");
            assert_eq!(usage(got.usage), usage(want.usage), "{data}");
            let delta = want.delta.as_ref();
            assert_eq!(got.text.as_deref(), delta.and_then(|d| d.text.as_deref()), "{data}");
            assert_eq!(got.thinking.as_deref(), delta.and_then(|d| d.thinking.as_deref()), "{data}");
        }
        assert!(scan::messages_event(b"not json").is_none());
    }

    /// Found by the `sse` fuzz target: an upstream that starts the same thinking block
    /// twice made the renumbering count it twice and go below zero.
    #[test]
    fn a_hostile_messages_stream_cannot_break_the_renumbering_or_slip_thinking_through() {
        let stream = concat!(
            "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"thinking\"}}\n\n",
            "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"thinking\"}}\n\n",
            "data: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"text\"}}\n\n",
            "data: {\"type\":\"content_block_delta\",\"index\":7,\"delta\":{\"type\":\"thinking_delta\",\"thinking\":\"secret\"}}\n\n",
            "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"text_delta\",\"text\":\"ok\"}}\n\n",
        );
        let mut sse = SseReader::new(LlmRoute::Messages, false, 1024, 1 << 20).stripping_reasoning(true);
        let out = run(&mut sse, stream.as_bytes(), 9);
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(!text.contains("secret") && !text.contains("thinking"), "{text}");
        let events = events_of(&out);
        assert_eq!(events.len(), 2);
        assert!(events.iter().all(|e| e["index"] == 0), "{text}");
    }

    #[test]
    fn stripped_chat_streams_lose_reasoning_content_and_keep_everything_else() {
        let stream = concat!(
            "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"reasoning_content\":\"First, 91 = 7*13.\"}}]}\n\n",
            "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"No.\",\"reasoning\":null}}]}\n\n",
            "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
            "data: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":8}}\n\n",
            "data: [DONE]\n\n",
        );
        for (strip_usage, size) in [(false, 3), (true, 3), (false, 1000), (true, 1000)] {
            let mut sse =
                SseReader::new(LlmRoute::ChatCompletions, strip_usage, 1024, 1 << 20).stripping_reasoning(true);
            let out = run(&mut sse, stream.as_bytes(), size);
            let text = String::from_utf8(out.clone()).unwrap();
            assert!(!text.contains("reasoning") && !text.contains("7*13"), "{text}");
            assert!(text.ends_with("data: [DONE]\n\n"));
            let events = events_of(&out);
            assert_eq!(events[0]["choices"][0]["delta"], serde_json::json!({"role": "assistant"}));
            assert_eq!(events[1]["choices"][0]["delta"], serde_json::json!({"content": "No."}));
            assert_eq!(events.len(), if strip_usage { 3 } else { 4 }, "{text}");
            assert_eq!(sse.usage, Some(Usage { prompt_tokens: 9, completion_tokens: 8 }));
            assert_eq!(sse.text.text, "No.");
            // Read for an estimate (a client that leaves before the usage chunk).
            assert_eq!(sse.reasoning.text, "First, 91 = 7*13.");
        }
    }

    #[test]
    fn stripped_responses_streams_lose_reasoning_items_and_renumber_output() {
        let stream = concat!(
            "event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"id\":\"r\",\"output\":[]}}\n\n",
            "event: response.output_item.added\ndata: {\"type\":\"response.output_item.added\",\"output_index\":0,\"item\":{\"id\":\"rs_1\",\"type\":\"reasoning\",\"summary\":[]}}\n\n",
            "event: response.reasoning_summary_part.added\ndata: {\"type\":\"response.reasoning_summary_part.added\",\"item_id\":\"rs_1\",\"output_index\":0,\"summary_index\":0,\"part\":{\"type\":\"summary_text\",\"text\":\"\"}}\n\n",
            "event: response.reasoning_summary_text.delta\ndata: {\"type\":\"response.reasoning_summary_text.delta\",\"item_id\":\"rs_1\",\"output_index\":0,\"summary_index\":0,\"delta\":\"7*13\"}\n\n",
            "event: response.output_item.done\ndata: {\"type\":\"response.output_item.done\",\"output_index\":0,\"item\":{\"id\":\"rs_1\",\"type\":\"reasoning\",\"summary\":[{\"type\":\"summary_text\",\"text\":\"7*13\"}]}}\n\n",
            "event: response.output_item.added\ndata: {\"type\":\"response.output_item.added\",\"output_index\":1,\"item\":{\"id\":\"msg_1\",\"type\":\"message\",\"content\":[]}}\n\n",
            "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"item_id\":\"msg_1\",\"output_index\":1,\"content_index\":0,\"delta\":\"No.\"}\n\n",
            "event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"id\":\"r\",\"output\":[{\"id\":\"rs_1\",\"type\":\"reasoning\",\"summary\":[{\"type\":\"summary_text\",\"text\":\"7*13\"}]},{\"id\":\"msg_1\",\"type\":\"message\",\"content\":[{\"type\":\"output_text\",\"text\":\"No.\"}]}],\"usage\":{\"input_tokens\":5,\"output_tokens\":9,\"output_tokens_details\":{\"reasoning_tokens\":7}}}}\n\n",
        );
        for size in [2, 50, stream.len()] {
            let mut sse = SseReader::new(LlmRoute::Responses, false, 1024, 1 << 20).stripping_reasoning(true);
            let out = run(&mut sse, stream.as_bytes(), size);
            let events = events_of(&out);
            let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
            assert_eq!(
                kinds,
                ["response.created", "response.output_item.added", "response.output_text.delta", "response.completed"]
            );
            assert_eq!(events[1]["output_index"], 0);
            assert_eq!(events[2]["output_index"], 0);
            let output = events[3]["response"]["output"].as_array().unwrap();
            assert_eq!(output.len(), 1);
            assert_eq!(output[0]["type"], "message");
            assert!(!String::from_utf8(out).unwrap().contains("7*13"));
            // Reasoning tokens were generated: counted in full.
            assert_eq!(sse.usage, Some(Usage { prompt_tokens: 5, completion_tokens: 9 }));
        }
    }

    #[test]
    fn stripped_json_responses_lose_their_reasoning() {
        let cases = [
            (
                LlmRoute::Messages,
                r#"{"type":"message","content":[{"type":"thinking","thinking":"hmm","signature":"s"},{"type":"redacted_thinking","data":"x"},{"type":"text","text":"No."}],"usage":{"input_tokens":4,"output_tokens":6}}"#,
                "/content",
                serde_json::json!([{"type": "text", "text": "No."}]),
            ),
            (
                LlmRoute::ChatCompletions,
                r#"{"choices":[{"index":0,"message":{"role":"assistant","content":"No.","reasoning_content":"hmm"}}],"usage":{"prompt_tokens":4,"completion_tokens":6}}"#,
                "/choices/0/message",
                serde_json::json!({"role": "assistant", "content": "No."}),
            ),
            (
                LlmRoute::Responses,
                r#"{"output":[{"type":"reasoning","id":"rs","summary":[{"type":"summary_text","text":"hmm"}]},{"type":"message","content":[{"type":"output_text","text":"No."}]}],"usage":{"input_tokens":4,"output_tokens":6}}"#,
                "/output",
                serde_json::json!([{"type": "message", "content": [{"type": "output_text", "text": "No."}]}]),
            ),
        ];
        for (route, body, pointer, want) in cases {
            let mut reader = Reader::Json {
                route,
                frames: Vec::new(),
                kept: 0,
                overflow: false,
                capture_limit: 1024,
                hold: true,
                stripped: 0,
            };
            let (a, b) = body.as_bytes().split_at(body.len() / 2);
            assert!(reader.feed(Bytes::copy_from_slice(a)).unwrap().is_empty(), "held until whole");
            assert!(reader.feed(Bytes::copy_from_slice(b)).unwrap().is_empty());
            let out = reader.flush().unwrap();
            let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
            assert_eq!(v.pointer(pointer).unwrap(), &want, "{route:?}");
            assert!(!String::from_utf8(out.to_vec()).unwrap().contains("hmm"));
            let o = reader.finish(Ending::Complete, out.len() as u64);
            assert_eq!(o.usage, Some(Usage { prompt_tokens: 4, completion_tokens: 6 }), "{route:?}");
            assert_eq!(o.completion_text, "No.", "{route:?}");
            assert_eq!(o.reasoning_stripped, 1);
        }
        // Nothing to strip: the body as it came.
        let plain = br#"{"type":"message","content":[{"type":"text","text":"ok"}]}"#;
        assert_eq!(strip::strip_json(LlmRoute::Messages, plain), None);
    }

    #[test]
    fn text_capture_is_bounded_and_counts_everything() {
        let mut t = TextCapture { text: String::new(), limit: 5, total_bytes: 0 };
        t.push("héllo world");
        assert!(t.text.len() <= 5);
        assert_eq!(t.total_bytes, "héllo world".len() as u64);
    }

    #[test]
    fn json_responses_yield_usage_and_text() {
        let body = br#"{"choices":[{"message":{"content":"yes"}}],"usage":{"prompt_tokens":4,"completion_tokens":1}}"#;
        let mut o = Reader::Opaque.finish(Ending::Complete, 0);
        read_json_response(LlmRoute::ChatCompletions, body, 100, &mut o);
        assert_eq!(o.usage, Some(Usage { prompt_tokens: 4, completion_tokens: 1 }));
        assert_eq!(o.completion_text, "yes");
    }

    // The serde reading `scan` replaced, kept as its oracle.
    #[derive(Deserialize)]
    struct JsonResponse<'a> {
        #[serde(default)]
        usage: Option<RawUsage>,
        #[serde(borrow, default)]
        choices: Vec<JsonChoice<'a>>,
        #[serde(borrow, default)]
        output: Vec<OutputItem<'a>>,
    }

    #[derive(Deserialize)]
    struct JsonChoice<'a> {
        #[serde(borrow, default)]
        message: Option<JsonMessage<'a>>,
        #[serde(borrow, default)]
        text: Option<Cow<'a, str>>,
    }

    #[derive(Deserialize)]
    struct JsonMessage<'a> {
        #[serde(borrow, default)]
        content: Option<Cow<'a, str>>,
    }

    #[derive(Deserialize)]
    struct OutputItem<'a> {
        #[serde(borrow, default)]
        content: Vec<OutputContent<'a>>,
    }

    #[derive(Deserialize)]
    struct OutputContent<'a> {
        #[serde(borrow, default)]
        text: Option<Cow<'a, str>>,
    }

    /// What serde made of a response: the usage and the texts, or `None` where it refused it.
    fn serde_reading(route: LlmRoute, body: &[u8]) -> Option<(Option<Usage>, Vec<String>)> {
        let resp = json::<JsonResponse>(body)?;
        let texts: Vec<String> = match route {
            LlmRoute::Responses => {
                resp.output.iter().flat_map(|o| &o.content).filter_map(|c| c.text.as_deref()).map(Into::into).collect()
            }
            _ => resp
                .choices
                .iter()
                .filter_map(|c| c.message.as_ref().and_then(|m| m.content.as_deref()).or(c.text.as_deref()))
                .map(Into::into)
                .collect(),
        };
        Some((resp.usage.map(|u| u.normalize()), texts))
    }

    fn scan_reading(route: LlmRoute, body: &[u8]) -> Option<(Option<Usage>, Vec<String>)> {
        let mut texts = Vec::new();
        let usage = scan::response(route, body, |t| texts.push(t.to_string()))?;
        Some((usage.map(|u| u.normalize()), texts))
    }

    // The serde reading of stream chunks that `scan::chunk` replaced, kept as its oracle.
    #[derive(Deserialize)]
    struct StreamChunk<'a> {
        #[serde(borrow, default)]
        choices: Option<Vec<ChunkChoice<'a>>>,
        #[serde(default)]
        usage: Option<RawUsage>,
    }

    /// A response's choice with `delta` where a response has `message`.
    #[derive(Deserialize)]
    struct ChunkChoice<'a> {
        #[serde(borrow, default)]
        delta: Option<JsonMessage<'a>>,
        #[serde(borrow, default)]
        text: Option<Cow<'a, str>>,
    }

    /// What serde made of a chunk: usage, whether it had choices, the texts.
    fn serde_chunk(data: &[u8]) -> Option<(Option<Usage>, bool, Vec<String>)> {
        let chunk = json::<StreamChunk>(data)?;
        let choices = chunk.choices.unwrap_or_default();
        let texts = choices
            .iter()
            .filter_map(|c| c.delta.as_ref().and_then(|d| d.content.as_deref()).or(c.text.as_deref()))
            .map(Into::into)
            .collect();
        Some((chunk.usage.map(|u| u.normalize()), !choices.is_empty(), texts))
    }

    fn scan_chunk(data: &[u8]) -> Option<(Option<Usage>, bool, Vec<String>)> {
        let mut texts = Vec::new();
        let (usage, choices) = scan::chunk(data, |t| texts.push(t.to_string()), |_| {})?;
        Some((usage.map(|u| u.normalize()), choices, texts))
    }

    #[test]
    fn usage_null_is_removed_with_its_comma() {
        for (event, want) in [
            (r#"{"a":1,"usage":null}"#, r#"{"a":1}"#),
            (r#"{"usage":null,"a":1}"#, r#"{"a":1}"#),
            (r#"{"usage":null}"#, r#"{"usage":null}"#),
            (r#"{"a":{"usage":null,"b":2},"usage":null}"#, r#"{"a":{"b":2}}"#),
            (r#"{"a":"say "usage":null","usage":null}"#, r#"{"a":"say "usage":null"}"#),
            (r#"{"usage":{"prompt_tokens":1}}"#, r#"{"usage":{"prompt_tokens":1}}"#),
            ("", ""),
        ] {
            let mut out = BytesMut::new();
            remove_usage_null(event.as_bytes(), &mut out);
            assert_eq!(std::str::from_utf8(&out).unwrap(), want, "{event}");
        }
    }

    #[test]
    fn a_chunk_that_is_not_json_adds_no_text() {
        let mut sse = SseReader::new(LlmRoute::ChatCompletions, false, 1024, 1 << 20);
        run(&mut sse, chunk("kept").as_bytes(), 1000);
        run(&mut sse, b"data: {\"choices\":[{\"delta\":{\"content\":\"lost\"}}],\"usage\":\n\n", 1000);
        assert_eq!(sse.text.text, "kept");
        assert_eq!(sse.text.total_bytes, 4);
    }

    mod chunks {
        use super::responses::{junk, text};
        use proptest::prelude::*;
        use serde_json::{json, Value};

        fn choice() -> impl Strategy<Value = Value> {
            let content = prop_oneof![Just(Value::Null), text().prop_map(Value::String)];
            (content, proptest::option::of(text()), any::<bool>(), junk()).prop_map(|(content, plain, delta, extra)| {
                let mut c = json!({"index": 0, "finish_reason": null, "logprobs": extra});
                if delta {
                    c["delta"] = json!({"role": "assistant", "content": content, "tool_calls": []});
                }
                if let Some(t) = plain {
                    c["text"] = Value::String(t);
                }
                c
            })
        }

        pub fn chunk() -> impl Strategy<Value = Value> {
            let usage = prop_oneof![
                Just(Value::Null),
                (0u64..1 << 40, 0u64..1 << 40)
                    .prop_map(|(p, c)| json!({"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c})),
            ];
            (proptest::option::of(proptest::collection::vec(choice(), 0..3)), proptest::option::of(usage), text())
                .prop_map(|(choices, usage, id)| {
                    let mut c = json!({"id": id, "object": "chat.completion.chunk", "created": 1, "model": "m"});
                    if let Some(ch) = choices {
                        c["choices"] = Value::Array(ch);
                    }
                    if let Some(u) = usage {
                        c["usage"] = u;
                    }
                    c
                })
        }
    }

    mod responses {
        use proptest::prelude::*;
        use serde_json::{json, Map, Value};

        pub fn text() -> impl Strategy<Value = String> {
            proptest::string::string_regex("(\\PC|[\"\\\\\n\u{0}\u{1f}/]|[a-z ]{3,9}){0,12}").unwrap()
        }

        /// Values under keys warden does not read.
        pub fn junk() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::Bool),
                any::<i64>().prop_map(Value::from),
                (-1e9f64..1e9).prop_map(Value::from),
                text().prop_map(Value::String),
            ];
            leaf.prop_recursive(3, 24, 4, |inner| {
                prop_oneof![
                    proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                    proptest::collection::vec(
                        (prop_oneof![Just("id"), Just("type"), Just("role"), Just("x"), Just("annotations")], inner),
                        0..4
                    )
                    .prop_map(|kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect())),
                ]
            })
        }

        fn count() -> impl Strategy<Value = Value> {
            prop_oneof![Just(Value::Null), (0u64..1 << 40).prop_map(Value::from)]
        }

        fn usage() -> impl Strategy<Value = Value> {
            let field = prop_oneof![
                Just("prompt_tokens"),
                Just("completion_tokens"),
                Just("input_tokens"),
                Just("output_tokens"),
                Just("total_tokens")
            ];
            let entries = proptest::collection::vec((field, count()), 0..5);
            (entries, junk(), any::<bool>()).prop_map(|(kv, details, null)| {
                if null {
                    return Value::Null;
                }
                let mut m: Map<String, Value> = kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
                m.insert("prompt_tokens_details".into(), details);
                Value::Object(m)
            })
        }

        fn choice() -> impl Strategy<Value = Value> {
            let content = prop_oneof![Just(Value::Null), text().prop_map(Value::String)];
            (content, proptest::option::of(text()), any::<bool>(), junk()).prop_map(
                |(content, plain, message, extra)| {
                    let mut c = json!({"index": 0, "finish_reason": "stop", "logprobs": extra});
                    if message {
                        c["message"] = json!({"role": "assistant", "content": content, "refusal": null});
                    }
                    if let Some(t) = plain {
                        c["text"] = Value::String(t);
                    }
                    c
                },
            )
        }

        fn output() -> impl Strategy<Value = Value> {
            let part = (proptest::option::of(text()), junk())
                .prop_map(|(t, a)| json!({"type": "output_text", "text": t, "annotations": a}));
            proptest::collection::vec(part, 0..3).prop_map(|content| json!({"type": "message", "content": content}))
        }

        pub fn body() -> impl Strategy<Value = Value> {
            (
                proptest::option::of(proptest::collection::vec(choice(), 0..3)),
                proptest::option::of(usage()),
                proptest::option::of(proptest::collection::vec(output(), 0..3)),
                junk(),
                text(),
            )
                .prop_map(|(choices, usage, output, junk, id)| {
                    let mut m = Map::new();
                    m.insert("id".into(), Value::String(id));
                    m.insert("object".into(), Value::String("chat.completion".into()));
                    m.insert("created".into(), Value::from(1_700_000_000u64));
                    if let Some(c) = choices {
                        m.insert("choices".into(), Value::Array(c));
                    }
                    if let Some(u) = usage {
                        m.insert("usage".into(), u);
                    }
                    if let Some(o) = output {
                        m.insert("output".into(), Value::Array(o));
                    }
                    m.insert("system_fingerprint".into(), junk);
                    Value::Object(m)
                })
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2048))]

        /// The scanner reads every response serde reads exactly as serde reads it,
        /// compact or pretty-printed, on every route.
        #[test]
        fn the_scanner_reads_responses_as_serde_does(body in responses::body(), pretty in proptest::prelude::any::<bool>(), route in 0..3usize) {
            let route = [LlmRoute::ChatCompletions, LlmRoute::Completions, LlmRoute::Responses][route];
            let bytes = if pretty { serde_json::to_vec_pretty(&body) } else { serde_json::to_vec(&body) }.unwrap();
            let want = serde_reading(route, &bytes);
            proptest::prop_assume!(want.is_some());
            proptest::prop_assert_eq!(scan_reading(route, &bytes), want);
        }

        /// Stream chunks too: the scanner reads them as serde did.
        #[test]
        fn the_scanner_reads_stream_chunks_as_serde_does(chunk in chunks::chunk(), pretty in proptest::prelude::any::<bool>()) {
            let bytes = if pretty { serde_json::to_vec_pretty(&chunk) } else { serde_json::to_vec(&chunk) }.unwrap();
            let want = serde_chunk(&bytes);
            proptest::prop_assume!(want.is_some());
            proptest::prop_assert_eq!(scan_chunk(&bytes), want);
        }

        /// Cut short anywhere, a body is never read as more than what it holds, and
        /// nothing panics.
        #[test]
        fn truncated_responses_do_not_panic(body in responses::body(), cut in 0.0f64..1.0) {
            let bytes = serde_json::to_vec(&body).unwrap();
            let cut = (bytes.len() as f64 * cut) as usize;
            proptest::prop_assert!(scan_reading(LlmRoute::ChatCompletions, &bytes[..cut]).is_none() || cut == bytes.len());
        }
    }

    #[test]
    fn token_counts_are_plain_non_negative_integers() {
        // A count that is not a non-negative integer that fits in a u64 counts as absent
        // (0), and the body is still read.
        for (value, expect) in [
            ("0", 0),
            ("16", 16),
            ("18446744073709551615", u64::MAX),
            ("18446744073709551616", 0),
            ("-1", 0),
            ("1.5", 0),
            ("1e3", 0),
            ("+5", 0),
            ("12 ", 12),
            ("null", 0),
            ("\"7\"", 0),
        ] {
            let body = format!(r#"{{"usage":{{"prompt_tokens":{value},"completion_tokens":2}}}}"#);
            let usage = scan_reading(LlmRoute::ChatCompletions, body.as_bytes()).and_then(|r| r.0);
            assert_eq!(usage, Some(Usage { prompt_tokens: expect, completion_tokens: 2 }), "{value}");
        }
        // A count at the very end of a (cut) body is not a complete body.
        assert_eq!(scan_reading(LlmRoute::ChatCompletions, br#"{"usage":{"prompt_tokens":12"#), None);
    }

    #[test]
    fn responses_serde_refused_still_count_their_usage() {
        let usage = Some(Usage { prompt_tokens: 3, completion_tokens: 2 });
        for body in [
            r#"{"choices":null,"usage":{"prompt_tokens":3,"completion_tokens":2}}"#,
            r#"{"choices":[{"message":{"content":[{"type":"text","text":"x"}]}}],"usage":{"prompt_tokens":3,"completion_tokens":2}}"#,
            r#"{"usage":{"prompt_tokens":3,"completion_tokens":2,"cost":1.5e-3}}"#,
        ] {
            assert_eq!(scan_reading(LlmRoute::ChatCompletions, body.as_bytes()).map(|r| r.0), Some(usage), "{body}");
        }
        for bad in ["", "null", "[1]", "{", r#"{"usage":"#, r#"{"usage":{"prompt_tokens":3}"#, "not json"] {
            assert_eq!(scan_reading(LlmRoute::ChatCompletions, bad.as_bytes()), None, "{bad}");
        }
        // Escaped texts are unescaped.
        let body = br#"{"choices":[{"message":{"content":"a \"quoted\" \u00e9 line\n"}}]}"#;
        assert_eq!(scan_reading(LlmRoute::ChatCompletions, body).unwrap().1, vec!["a \"quoted\" \u{e9} line\n"]);
    }
}
