//! The request path, in order. Reading [`proxy`] top to bottom tells what happens to a
//! request; each step either moves on or refuses with a [`ProxyError`].
//!
//! Everything about one request lives in an [`Exchange`]: it is created when the request
//! arrives and ends exactly once, either refused (an error response) or when the response
//! body has been streamed to the end / the client hung up. Either way one
//! [`RequestEvent`] is recorded.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{header, HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use tokio::sync::OwnedSemaphorePermit;

use crate::accounting::{BodyFormat, Ending, TapBody, TapOutcome, Usage};
use crate::admin::metrics::KindLabel;
use crate::app::App;
use crate::auth::{presented_key, AccountStatus, Principal};
use crate::body::{self, Body};
use crate::config::Config;
use crate::error::ProxyError;
use crate::events::audit::AuditSlot;
use crate::events::RequestEvent;
use crate::limits::{Denial, Reservation, Standing, Unavailable};
use crate::llm::{LlmRequest, LlmRoute};
use crate::policy;
use crate::upstream::{rewrite_response_headers, UpstreamBody, UpstreamFailure};

/// A `HeaderName` constant rather than a `&str`: inserting by string copies a non-standard
/// name into a new allocation on every request.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const UPSTREAM_REQUEST_ID: HeaderName = HeaderName::from_static("x-upstream-request-id");

/// Handles one client request. Never fails: every outcome is a response.
pub async fn handle(app: Arc<App>, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    let config = app.config();
    let mut exchange = Exchange::begin(&req, peer, &config.server.trusted_proxies);
    let request_id = HeaderValue::from_str(&exchange.request_id).expect("request ids are visible ASCII");
    let (parts, incoming) = req.into_parts();
    let terms = BodyTerms::of(&parts.headers);
    let mut unread = Some(incoming);
    let mut response = match proxy(&app, &config, parts, terms.declared, &mut unread, &mut exchange, &request_id).await
    {
        Ok(forwarded) => exchange.stream(app.clone(), &config, forwarded),
        Err(err) => {
            // The rest of a body cut off past the limit is not read: the connection closes.
            let cut_off = matches!(err, ProxyError::BodyTooLarge { .. });
            let mut response = exchange.refuse(&app, err);
            if cut_off {
                response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            response
        }
    };
    if let Some(body) = unread {
        discard_unread(body, terms, &config, &mut response);
    }
    response.headers_mut().insert(REQUEST_ID, request_id);
    response
}

/// What a request's headers say about its body.
#[derive(Clone, Copy)]
struct BodyTerms {
    /// `content-length`, if given.
    declared: Option<u64>,
    /// `expect: 100-continue`: the client sends the body only when told to.
    expects_continue: bool,
}

impl BodyTerms {
    fn of(headers: &http::HeaderMap) -> BodyTerms {
        BodyTerms { declared: declared_length(headers), expects_continue: headers.contains_key(header::EXPECT) }
    }
}

/// [`discard_unread`] for a whole request answered without reading its body (the admin
/// listener's 401 and 404).
pub(crate) fn discard_unread_request(req: Request<Incoming>, config: &Config, response: &mut Response<Body>) {
    let (parts, body) = req.into_parts();
    discard_unread(body, BodyTerms::of(&parts.headers), config, response);
}

/// The body of a request refused before it was read (503 overloaded, 401, 403 blocked, 413
/// by its declared size). Left unread, hyper closes the connection after the response
/// without saying so, and the client's next request on that keep-alive connection fails
/// with a reset or a broken pipe (the OpenAI SDKs send headers and body in separate
/// writes, so the body is often not in yet). Instead it is read and thrown away beside the
/// response, as nginx does, within `server.max_body_bytes` and `server.header_read_timeout_ms`
/// (past either, the connection closes). A body declared larger than the limit, or held
/// back for `100 Continue`, is not read: the response says `connection: close`.
fn discard_unread(mut body: Incoming, terms: BodyTerms, config: &Config, response: &mut Response<Body>) {
    use http_body::Body as _;
    let (limit, patience) = (config.server.max_body_bytes, config.server.header_read_timeout);
    if body.is_end_stream() {
        return;
    }
    if terms.expects_continue || terms.declared.is_some_and(|n| n > limit) {
        response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        return;
    }
    tokio::spawn(async move {
        let drain = async {
            let mut seen = 0u64;
            while let Some(Ok(frame)) = body.frame().await {
                seen += frame.data_ref().map_or(0, |d| d.len() as u64);
                if seen > limit {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(patience, drain).await;
    });
}

/// The request path.
async fn proxy(
    app: &App,
    config: &Config,
    mut parts: http::request::Parts,
    declared: Option<u64>,
    unread: &mut Option<Incoming>,
    ex: &mut Exchange,
    request_id: &HeaderValue,
) -> Result<Forwarded, ProxyError> {
    // 1. Load shedding: a bounded number of requests in flight, 503 beyond it.
    ex.permit = Some(app.in_flight.clone().try_acquire_owned().map_err(|_| ProxyError::Overloaded)?);
    app.metrics.in_flight.inc();
    // 2. Audit slot: reserved now so the record of an admitted request always has room.
    ex.audit_slot = app.audit.reserve()?;
    // 3. Authentication: the key must resolve in the in-memory directory.
    let principal = authenticate(app, &parts.headers)?;
    ex.principal = Some(principal.clone());
    // 4. Account state: blocked accounts stop here.
    if principal.account.status() == AccountStatus::Blocked {
        return Err(ProxyError::AccountBlocked);
    }
    // 5. Body: LLM routes are read (bounded) and parsed once; other paths stream through.
    // A body declared larger than the limit is refused (413) without reading it.
    let limit = config.server.max_body_bytes;
    if declared.is_some_and(|n| n > limit) {
        return Err(ProxyError::BodyTooLarge { limit });
    }
    let incoming = unread.take().expect("the body is taken once");
    let (mut llm, raw) = match ex.route {
        Some(route) => {
            let bytes = read_bounded(declared, incoming, limit).await?;
            // Kept as a copy of exactly the body's size: the bytes read are a slice of the
            // connection's read buffer, which the request's audit record would otherwise
            // hold whole while it waits in the queue (RSS grew by hundreds of MiB under
            // 32 KB prompts).
            let llm = Box::new(LlmRequest::parse(route, &bytes)?);
            ex.model = llm.model.clone();
            ex.stream = llm.stream;
            (Some(llm), Ok(()))
        }
        None => (None, Err(stream_bounded(incoming, limit))),
    };
    // 6. Policy: the tier's model allow-list and parameter rules (strip, or refuse with 400).
    let tier = App::tier_of(config, &principal.account);
    if let Some(llm) = llm.as_mut() {
        let mut applied = policy::apply(&tier.policy, llm)?;
        if principal.account.strips_soft_labels() {
            applied.stripped.extend(policy::strip_soft_labels(llm));
        }
        ex.stripped = applied.stripped;
    }
    // 7. Limits: reserve one request and the estimated tokens against every limit, or 429.
    let spec = app.limit_spec(&principal.account, tier, ex.model.as_deref());
    if !spec.is_empty() {
        let estimate = estimate_tokens(app, tier, llm.as_deref(), &spec, ex);
        let reservation = match app.limiter.admit(&principal.account.id, &ex.request_id, spec, estimate).await {
            Ok(Ok(r)) => r,
            Ok(Err(denial)) => return Err(ProxyError::RateLimited { denial }),
            Err(Unavailable::SharedStateDown) => return Err(ProxyError::LimitsUnavailable),
        };
        ex.reservation = Some(reservation);
    }
    let body = match raw {
        Ok(()) => {
            let llm = llm.expect("LLM routes have a parsed body");
            let upstream_body = llm.upstream_body();
            parts.headers.insert(header::CONTENT_LENGTH, HeaderValue::from(upstream_body.len()));
            ex.llm = Some(llm);
            body::full(upstream_body)
        }
        Err(streamed) => streamed,
    };
    // 8. Forward: upstream key swapped in, hop-by-hop headers dropped, first-byte timeout.
    let path_and_query = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let mut upstream_req = Request::builder()
        .method(parts.method.clone())
        .uri(app.upstream.uri_for(path_and_query))
        .body(body)
        .map_err(|e| ProxyError::InvalidRequest { message: e.to_string(), param: None })?;
    *upstream_req.headers_mut() = std::mem::take(&mut parts.headers);
    app.upstream.rewrite_request_headers(upstream_req.headers_mut(), ex.route.is_some());
    upstream_req.headers_mut().insert(REQUEST_ID, request_id.clone());
    ex.upstream_sent = Some(Instant::now());
    let response = app.upstream.send(upstream_req).await.map_err(|(err, failure)| {
        ex.upstream_failure = Some(failure);
        err
    })?;
    // 9. Response: streamed back through the accounting tap (see `Exchange::stream`).
    let format = body_format(ex, &response);
    Ok(Forwarded { response, format })
}

fn authenticate(app: &App, headers: &http::HeaderMap) -> Result<Principal, ProxyError> {
    let key = presented_key(headers).ok_or(ProxyError::MissingApiKey)?;
    app.accounts.directory().authenticate(key).ok_or(ProxyError::InvalidApiKey)
}

fn declared_length(headers: &http::HeaderMap) -> Option<u64> {
    headers.get(header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

/// Reads a whole body (whose declared length, if any, is within `limit`), refusing it
/// (413) as soon as more than `limit` bytes arrive.
async fn read_bounded(declared: Option<u64>, mut body: Incoming, limit: u64) -> Result<Bytes, ProxyError> {
    // A body that arrives as one frame (most do) is kept as it is, without a copy; one in
    // several frames is gathered into a buffer sized by its declared length.
    let (mut first, mut rest, mut total) = (None::<Bytes>, bytes::BytesMut::new(), 0u64);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ProxyError::ClientBody(e.to_string()))?;
        let Ok(data) = frame.into_data() else { continue };
        total += data.len() as u64;
        if total > limit {
            return Err(ProxyError::BodyTooLarge { limit });
        }
        if first.is_none() && rest.is_empty() {
            first = Some(data);
            continue;
        }
        if let Some(f) = first.take() {
            let expected = declared.unwrap_or(0).min(limit) as usize;
            rest.reserve(expected.max(f.len() + data.len()));
            rest.extend_from_slice(&f);
        }
        rest.extend_from_slice(&data);
    }
    Ok(first.unwrap_or_else(|| rest.freeze()))
}

/// Streams a body (whose declared length, if any, is within `limit`) through, cutting it
/// off if it sends more than `limit` bytes.
fn stream_bounded(body: Incoming, limit: u64) -> Body {
    Limited::new(body, limit as usize).boxed_unsync()
}

fn body_format(ex: &Exchange, response: &Response<UpstreamBody>) -> BodyFormat {
    let Some(llm) = &ex.llm else { return BodyFormat::Opaque };
    let content_type = response.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if content_type.starts_with("text/event-stream") {
        BodyFormat::Sse { route: llm.route, strip_usage: llm.needs_injected_usage() }
    } else if content_type.starts_with("application/json") {
        BodyFormat::Json(llm.route)
    } else {
        BodyFormat::Opaque
    }
}

/// A request warden accepted and sent upstream, with its response headers.
struct Forwarded {
    response: Response<UpstreamBody>,
    format: BodyFormat,
}

/// One request from arrival to the end of its response.
struct Exchange {
    /// Shared with the limits reservation and the audit record.
    request_id: Arc<str>,
    started: Instant,
    ts_ms: i64,
    client_ip: std::net::IpAddr,
    user_agent: Option<String>,
    method: http::Method,
    path: std::borrow::Cow<'static, str>,
    route: Option<LlmRoute>,
    model: Option<Arc<str>>,
    stream: bool,
    principal: Option<Principal>,
    llm: Option<Box<LlmRequest>>,
    upstream_sent: Option<Instant>,
    upstream_failure: Option<UpstreamFailure>,
    /// Held until the response ends, so streams count as in flight.
    permit: Option<OwnedSemaphorePermit>,
    /// This request's reserved place in the audit queue.
    audit_slot: Option<AuditSlot>,
    /// What the limits reserved for this request; settled when it ends.
    reservation: Option<Reservation>,
    /// Prompt tokens counted for the token estimate (reused if the upstream reports none).
    prompt_tokens: Option<u64>,
    /// Parameters the policy removed.
    stripped: Vec<&'static str>,
}

impl Exchange {
    fn begin(req: &Request<Incoming>, peer: SocketAddr, trusted_proxies: &[ipnet::IpNet]) -> Exchange {
        let route = LlmRoute::of(req.method(), req.uri().path());
        let request_id = req
            .headers()
            .get(REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
            .map(Arc::from)
            .unwrap_or_else(new_request_id);
        Exchange {
            request_id,
            started: Instant::now(),
            ts_ms: crate::store::now_millis(),
            client_ip: client_ip(peer.ip(), req.headers(), trusted_proxies),
            user_agent: req.headers().get(header::USER_AGENT).and_then(|v| v.to_str().ok()).map(str::to_owned),
            method: req.method().clone(),
            path: match route {
                Some(r) => std::borrow::Cow::Borrowed(r.path()),
                None => std::borrow::Cow::Owned(req.uri().path().to_string()),
            },
            route,
            model: None,
            stream: false,
            principal: None,
            llm: None,
            upstream_sent: None,
            upstream_failure: None,
            permit: None,
            audit_slot: None,
            reservation: None,
            prompt_tokens: None,
            stripped: Vec::new(),
        }
    }

    fn route_label(&self) -> &'static str {
        match self.route {
            Some(r) => r.label(),
            None if self.path.starts_with("/v1/models") => "models",
            None => "other",
        }
    }

    /// The exchange's record; what it holds moves into the event (the exchange ends here).
    fn event(&mut self, status: u16, decision: &'static str, ending: &'static str) -> RequestEvent {
        RequestEvent {
            ts_ms: self.ts_ms,
            request_id: std::mem::take(&mut self.request_id),
            account_id: self.principal.as_ref().map(|p| p.account.id.clone()),
            key_id: self.principal.as_ref().map(|p| p.key_id.clone()),
            client_ip: self.client_ip,
            user_agent: self.user_agent.take(),
            method: self.method.clone(),
            path: std::mem::take(&mut self.path),
            model: self.model.take(),
            status,
            stream: self.stream,
            latency: self.started.elapsed(),
            usage: None,
            usage_estimated: false,
            decision,
            reason: None,
            ending,
            request: None,
            completion_text: None,
            completion_truncated: false,
        }
    }

    fn count_request(&self) {
        if let Some(p) = &self.principal {
            p.account.usage.requests.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    fn release(&mut self, app: &App) {
        if self.permit.take().is_some() {
            app.metrics.in_flight.dec();
        }
    }

    /// Ends a refused request: records it and returns the error response.
    fn refuse(mut self, app: &App, err: ProxyError) -> Response<Body> {
        if let Some(failure) = self.upstream_failure {
            app.metrics.upstream_errors.get_or_create(&KindLabel { kind: failure.label() }).inc();
        }
        self.release(app);
        self.count_request();
        let status = err.status().as_u16();
        let standings = self.settle(app, 0);
        let route = self.route_label();
        let mut event = self.event(status, err.decision(), "refused");
        event.reason = Some(err.to_string());
        event.request = self.llm.take();
        let slot = self.audit_slot.take();
        app.record(event, route, slot);
        let mut response = err.into_response();
        match &err {
            ProxyError::RateLimited { denial } => {
                app.metrics.rate_limited.get_or_create(&KindLabel { kind: denial_label(denial) }).inc();
                denial_headers(response.headers_mut(), denial);
            }
            _ => rate_limit_headers(response.headers_mut(), standings),
        }
        response
    }

    /// Settles the limits reservation, if any, with `used` tokens; returns the standings
    /// for the response headers.
    fn settle(&mut self, app: &App, used: u64) -> (Option<Standing>, Option<Standing>) {
        match self.reservation.take() {
            Some(r) => {
                let standings = (r.requests, r.token_standing);
                app.limiter.settle(r, used);
                standings
            }
            None => (None, None),
        }
    }

    /// Streams an upstream response to the client through the accounting tap; the
    /// exchange ends when the tap finishes.
    fn stream(self, app: Arc<App>, config: &Config, forwarded: Forwarded) -> Response<Body> {
        let Forwarded { response, format } = forwarded;
        let (mut parts, incoming) = response.into_parts();
        let first_byte = self.upstream_sent.map(|t| t.elapsed());
        if let Some(d) = first_byte {
            app.metrics.route(self.route_label()).upstream_first_byte.observe(d.as_secs_f64());
        }
        rewrite_response_headers(&mut parts.headers);
        // The client gets warden's request id (the one in the audit log); the provider's
        // own id stays available for support cases with the provider.
        if let Some(theirs) = parts.headers.remove(REQUEST_ID) {
            parts.headers.insert(UPSTREAM_REQUEST_ID, theirs);
        }
        if matches!(format, BodyFormat::Sse { strip_usage: true, .. }) {
            parts.headers.remove(header::CONTENT_LENGTH);
        }
        if let Some(r) = &self.reservation {
            rate_limit_headers(&mut parts.headers, (r.requests, r.token_standing));
        }
        let status = parts.status.as_u16();
        let idle = app.upstream.idle_timeout;
        let limit = config.audit.max_capture_bytes;
        let on_finish = Box::new(move |outcome: TapOutcome| self.finish(&app, status, outcome));
        Response::from_parts(parts, TapBody::new(incoming, format, idle, limit, on_finish).boxed_unsync())
    }

    /// Ends a forwarded request once its response body is over.
    fn finish(mut self, app: &App, status: u16, outcome: TapOutcome) {
        self.release(app);
        self.count_request();
        let route = self.route_label();
        if let Some(sent) = self.upstream_sent {
            app.metrics.route(route).upstream_duration.observe(sent.elapsed().as_secs_f64());
        }
        let ending = match &outcome.ending {
            Ending::Complete => "complete",
            Ending::ClientAborted => {
                app.metrics.client_aborts.inc();
                "client_aborted"
            }
            Ending::UpstreamError(_) => {
                app.metrics.upstream_errors.get_or_create(&KindLabel { kind: "protocol" }).inc();
                "upstream_error"
            }
            Ending::IdleTimeout => {
                app.metrics.upstream_errors.get_or_create(&KindLabel { kind: "idle_timeout" }).inc();
                "idle_timeout"
            }
        };
        let mut event = self.event(status, "allowed", ending);
        if let Ending::UpstreamError(e) = &outcome.ending {
            event.reason = Some(e.clone());
        }
        let (usage, estimated) = self.usage(app, status, &outcome);
        self.settle(app, usage.map(|u| u.prompt_tokens + u.completion_tokens).unwrap_or(0));
        event.usage = usage;
        event.usage_estimated = estimated;
        if !self.stripped.is_empty() {
            event.reason = Some(format!("policy stripped: {}", self.stripped.join(", ")));
        }
        event.completion_truncated = outcome.completion_text_bytes > outcome.completion_text.len() as u64;
        if self.llm.is_some() {
            event.completion_text = Some(outcome.completion_text);
        }
        event.request = self.llm.take();
        let slot = self.audit_slot.take();
        app.record(event, route, slot);
    }

    /// The usage the upstream reported or, when it reported none for a successful LLM
    /// call (a client abort, an upstream that never sends usage), warden's own count of
    /// what was generated.
    fn usage(&self, app: &App, status: u16, outcome: &TapOutcome) -> (Option<Usage>, bool) {
        if outcome.usage.is_some() {
            return (outcome.usage, false);
        }
        let Some(llm) = &self.llm else { return (None, false) };
        if !StatusCode::from_u16(status).is_ok_and(|s| s.is_success()) {
            return (None, false);
        }
        let prompt_tokens = self.prompt_tokens.unwrap_or_else(|| prompt_tokens(app, llm));
        let mut completion_tokens = app.tokens.count(&outcome.completion_text);
        let seen = outcome.completion_text.len() as u64;
        if outcome.completion_text_bytes > seen && seen > 0 {
            // Scale up for the part the capture limit cut off.
            completion_tokens = completion_tokens * outcome.completion_text_bytes / seen;
        }
        (Some(Usage { prompt_tokens, completion_tokens }), true)
    }
}

/// The client's address: the peer, or, when the peer is a trusted proxy, the nearest
/// untrusted address in `X-Forwarded-For` (entries added by trusted proxies are skipped;
/// anything left of the first untrusted one could be forged by the client).
fn client_ip(peer: std::net::IpAddr, headers: &http::HeaderMap, trusted: &[ipnet::IpNet]) -> std::net::IpAddr {
    let is_trusted = |ip: &std::net::IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let mut client = peer;
    let forwarded =
        headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok()).collect::<Vec<_>>().join(",");
    for hop in forwarded.rsplit(',') {
        match hop.trim().parse::<std::net::IpAddr>() {
            Ok(ip) => {
                client = ip;
                if !is_trusted(&ip) {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    client
}

/// Prompt tokens of a request with the real tokenizer, plus the per-message overhead
/// chat formats add. Each message is counted on its own (as chat formats tokenize them);
/// the counts of long earlier messages are remembered, since clients resend the whole
/// conversation with every turn.
fn prompt_tokens(app: &App, llm: &LlmRequest) -> u64 {
    let mut total = 0;
    llm.for_each_prompt_part(|text, newest| {
        total += if newest { app.tokens.count(text) } else { app.tokens.count_repeated(text) };
    });
    total + 3 * llm.message_count() as u64
}

/// Tokens to reserve for a request: its prompt tokens plus the completion it may ask for
/// (`max_tokens`, or the tier's default, times `n`). Zero when no limit counts tokens,
/// so the tokenizer only runs when it matters.
fn estimate_tokens(
    app: &App,
    tier: &crate::config::Tier,
    llm: Option<&LlmRequest>,
    spec: &crate::limits::LimitSpec,
    ex: &mut Exchange,
) -> u64 {
    let Some(llm) = llm else { return 0 };
    if !spec.counts_tokens() {
        return 0;
    }
    let prompt = prompt_tokens(app, llm);
    ex.prompt_tokens = Some(prompt);
    let completion = match llm.route {
        LlmRoute::Embeddings => 0,
        _ => llm.max_tokens.unwrap_or(tier.default_max_tokens) * llm.n.unwrap_or(1).max(1),
    };
    prompt + completion
}

/// `x-ratelimit-*` headers as OpenAI sends them.
fn rate_limit_headers(headers: &mut http::HeaderMap, (requests, tokens): (Option<Standing>, Option<Standing>)) {
    use http::header::HeaderName;
    const NAMES: [[HeaderName; 3]; 2] = [
        [
            HeaderName::from_static("x-ratelimit-limit-requests"),
            HeaderName::from_static("x-ratelimit-remaining-requests"),
            HeaderName::from_static("x-ratelimit-reset-requests"),
        ],
        [
            HeaderName::from_static("x-ratelimit-limit-tokens"),
            HeaderName::from_static("x-ratelimit-remaining-tokens"),
            HeaderName::from_static("x-ratelimit-reset-tokens"),
        ],
    ];
    thread_local! {
        /// The last limit written, per kind: a tier's limits change only on reload, so
        /// the value is formatted once and shared.
        static LIMITS: std::cell::RefCell<[(u64, HeaderValue); 2]> =
            const { std::cell::RefCell::new([(u64::MAX, HeaderValue::from_static("")), (u64::MAX, HeaderValue::from_static(""))]) };
    }
    let count = 3 * (usize::from(requests.is_some()) + usize::from(tokens.is_some()));
    headers.reserve(count);
    // This response's own values (remaining and reset, per kind) are written side by side
    // into one buffer that the header values share: one allocation instead of four.
    let mut text = Text { buf: [0; 2 * Text::PER_KIND], len: 0 };
    let mut spans = [(0..0, 0..0), (0..0, 0..0)];
    for (span, s) in spans.iter_mut().zip([requests, tokens]) {
        if let Some(s) = s {
            *span = (
                text.push(itoa::Buffer::new().format(s.remaining).as_bytes()),
                text.push(crate::limits::gcra::ResetText::of(s.reset_ns).as_str().as_bytes()),
            );
        }
    }
    let text = Bytes::from_owner(text);
    let value =
        |span| HeaderValue::from_maybe_shared(text.slice(span)).expect("digits and unit letters are visible ASCII");
    for (i, ([limit, remaining, reset], (standing, span))) in
        NAMES.into_iter().zip([requests, tokens].into_iter().zip(spans)).enumerate()
    {
        if let Some(s) = standing {
            let cached = LIMITS.with_borrow_mut(|cache| {
                let (cached, value) = &mut cache[i];
                if *cached != s.limit {
                    *cached = s.limit;
                    *value = HeaderValue::from(s.limit);
                }
                value.clone()
            });
            headers.insert(limit, cached);
            headers.insert(remaining, value(span.0));
            headers.insert(reset, value(span.1));
        }
    }
}

/// The bytes behind the per-response `x-ratelimit-*` values.
struct Text {
    buf: [u8; 2 * Text::PER_KIND],
    len: usize,
}

impl Text {
    /// A `u64` (20 digits at most) and a [`ResetText`](crate::limits::gcra::ResetText) (48).
    const PER_KIND: usize = 20 + 48;

    fn push(&mut self, b: &[u8]) -> std::ops::Range<usize> {
        let start = self.len;
        self.buf[start..start + b.len()].copy_from_slice(b);
        self.len += b.len();
        start..self.len
    }
}

impl AsRef<[u8]> for Text {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

fn denial_headers(headers: &mut http::HeaderMap, denial: &Denial) {
    let (limit, kind) = match denial {
        Denial::Rate { limit, .. } | Denial::TooLarge { limit, .. } => (*limit, denial.kind()),
        Denial::Quota { limit, .. } => (*limit, "tokens"),
        Denial::Concurrency { .. } => return,
    };
    let standing = Some(Standing { limit, remaining: 0, reset_ns: denial.retry_after().as_nanos() as i64 });
    rate_limit_headers(headers, if kind == "tokens" { (None, standing) } else { (standing, None) });
}

fn denial_label(denial: &Denial) -> &'static str {
    match denial {
        Denial::Rate { .. } | Denial::TooLarge { .. } => denial.kind(),
        Denial::Concurrency { .. } => "concurrency",
        Denial::Quota { .. } => "quota",
    }
}

fn new_request_id() -> Arc<str> {
    crate::store::with_random_id::<12, _>("req", |id: &str| Arc::from(id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_headers_follow_the_limits_they_are_given() {
        use crate::limits::Standing;
        for (limit, remaining) in [(60, 59), (60, 58), (1000, 999), (60, 0)] {
            let mut h = http::HeaderMap::new();
            h.insert("x-ratelimit-limit-requests", "upstream's".parse().unwrap());
            let standing = Standing { limit, remaining, reset_ns: 1_500_000 };
            rate_limit_headers(&mut h, (Some(standing), Some(Standing { limit: limit * 10, ..standing })));
            assert_eq!(h.get_all("x-ratelimit-limit-requests").iter().count(), 1, "warden's replaces the upstream's");
            assert_eq!(h["x-ratelimit-limit-requests"], limit.to_string().as_str());
            assert_eq!(h["x-ratelimit-remaining-requests"], remaining.to_string().as_str());
            assert_eq!(h["x-ratelimit-reset-requests"], "2ms");
            assert_eq!(h["x-ratelimit-limit-tokens"], (limit * 10).to_string().as_str());
        }
    }

    #[test]
    fn client_ip_believes_only_trusted_proxies() {
        let trusted: Vec<ipnet::IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let mut h = http::HeaderMap::new();
        h.insert("x-forwarded-for", "1.2.3.4, 203.0.113.9, 10.0.0.5".parse().unwrap());
        // From a trusted proxy: the nearest untrusted hop; the forged 1.2.3.4 is ignored.
        assert_eq!(
            client_ip("10.0.0.1".parse().unwrap(), &h, &trusted),
            "203.0.113.9".parse::<std::net::IpAddr>().unwrap()
        );
        // From anyone else the header is not believed.
        assert_eq!(
            client_ip("198.51.100.1".parse().unwrap(), &h, &trusted),
            "198.51.100.1".parse::<std::net::IpAddr>().unwrap()
        );
        assert_eq!(
            client_ip("10.0.0.1".parse().unwrap(), &http::HeaderMap::new(), &trusted),
            "10.0.0.1".parse::<std::net::IpAddr>().unwrap()
        );
    }
}
