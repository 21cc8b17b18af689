//! The request path, in order. Reading [`proxy`] top to bottom tells what happens to a
//! request; each step either moves on or refuses with a [`ProxyError`].
//!
//! Everything about one request lives in an [`Exchange`]: it is created when the request
//! arrives and ends exactly once: refused (an error response), when the response body
//! has been streamed to the end, or when it is dropped before either (the client hung
//! up while its body or the upstream's answer was awaited, or shutdown cut it). Whichever
//! way it ends, one [`RequestEvent`] is recorded and every slot it held (in-flight
//! permit, concurrency slot, token reservation, audit slot) is released.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{header, HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::sync::OwnedSemaphorePermit;

use crate::accounting::{BodyFormat, Ending, TapBody, TapOutcome, Usage};
use crate::app::App;
use crate::auth::{presented_key, AccountStatus, Principal};
use crate::body::{self, Body, BodyCut, BodyPace, GuardedBody};
use crate::config::Config;
use crate::error::ProxyError;
use crate::events::audit::AuditSlot;
use crate::events::RequestEvent;
use crate::limits::{Denial, LimitSpec, Reservation, Standing, Unavailable};
use crate::llm::{Dialect, LlmRequest, LlmRoute};
use crate::metrics::KindLabel;
use crate::policy;
use crate::routes::Route;
use crate::upstream::{rewrite_response_headers, UpstreamBody, UpstreamFailure};

/// A `HeaderName` constant rather than a `&str`: inserting by string copies a non-standard
/// name into a new allocation on every request.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const UPSTREAM_REQUEST_ID: HeaderName = HeaderName::from_static("x-upstream-request-id");
/// Anthropic's name for the request id (its SDKs read it as `_request_id`).
const ANTHROPIC_REQUEST_ID: HeaderName = HeaderName::from_static("request-id");
const ANTHROPIC_UPSTREAM_REQUEST_ID: HeaderName = HeaderName::from_static("upstream-request-id");
const ANTHROPIC_VERSION: HeaderName = HeaderName::from_static("anthropic-version");
/// The `anthropic-version` sent for a client that names none (curl): the API's stable
/// version, which every SDK sends.
const DEFAULT_ANTHROPIC_VERSION: HeaderValue = HeaderValue::from_static("2023-06-01");

/// Handles one client request. Never fails: every outcome is a response.
/// `active` marks the request in flight on its connection until the exchange ends.
pub async fn handle(
    app: Arc<App>,
    req: Request<Incoming>,
    peer: SocketAddr,
    active: crate::net::ActiveRequest,
) -> Response<Body> {
    let config = app.config();
    let mut exchange = Exchange::begin(app.clone(), &req, peer, &config, active);
    let dialect = exchange.dialect;
    let request_id = HeaderValue::from_str(&exchange.request_id).expect("request ids are visible ASCII");
    let (parts, incoming) = req.into_parts();
    let terms = BodyTerms::of(&parts.headers);
    let mut unread = Some(incoming);
    let mut response = match proxy(&app, &config, parts, terms.declared, &mut unread, &mut exchange, &request_id).await
    {
        Ok(forwarded) => exchange.stream(&config, forwarded),
        Err(err) => {
            // The rest of a body cut off past the limit or its deadline is not read: the
            // connection closes.
            let cut_off = matches!(err, ProxyError::BodyTooLarge { .. } | ProxyError::BodyTimeout(_));
            let mut response = exchange.refuse(err);
            if cut_off {
                response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            response
        }
    };
    if let Some(body) = unread {
        discard_unread(body, terms, &config, &mut response);
    }
    if dialect == Dialect::Anthropic {
        response.headers_mut().insert(ANTHROPIC_REQUEST_ID, request_id.clone());
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
    app.metrics.requests.in_flight.inc();
    // 2. Audit slot: reserved now so the record of an admitted request always has room.
    ex.audit_slot = app.audit.reserve()?;
    // 3. Authentication: the key must resolve in the in-memory directory; an address that
    //    keeps presenting unknown keys is throttled.
    let principal = authenticate(app, &parts.headers, ex.client_ip)?;
    ex.principal = Some(principal.clone());
    // 4. Account state: blocked accounts stop here.
    if principal.account.status() == AccountStatus::Blocked {
        return Err(ProxyError::AccountBlocked);
    }
    // 5. Route policy: what warden understands or the operator allowed; anything else
    //    404. A file or batch must be the account's own.
    if ex.route == Route::Denied {
        return Err(ProxyError::UnknownRoute { method: parts.method.to_string(), path: shortened(&ex.path) });
    }
    let route = ex.route.clone();
    crate::batch::authorize(app, &principal.account.id, &route).await?;
    // 6. Concurrency: the account's slot is taken before its body is read, so one
    //    account's stalled uploads hold its own slots, not everyone's.
    let tier = App::tier_of(config, &principal.account);
    if let Some(max) = App::concurrency_limit(tier, &principal.account) {
        let spec = LimitSpec { max_concurrent: Some(max), ..LimitSpec::default() };
        ex.concurrency = Some(admit(app, &principal, ex, spec, 0).await?);
    }
    // 7. Body: LLM routes and batch creation are read (bounded in size and time) and
    //    parsed once; uploads are read line by line as they stream (batch files, see
    //    `batch`); other routes stream through under the same bounds. A body declared
    //    larger than the limit is refused (413) without reading it.
    let limit = if route == Route::FileUpload { config.server.max_upload_bytes } else { config.server.max_body_bytes };
    if declared.is_some_and(|n| n > limit) {
        return Err(ProxyError::BodyTooLarge { limit });
    }
    let pace = BodyPace {
        started: tokio::time::Instant::from_std(ex.started),
        timeout: config.server.body_read_timeout,
        min_rate: config.server.body_min_rate,
    };
    let incoming = GuardedBody::new(unread.take().expect("the body is taken once"), limit, pace);
    let mut upload = None;
    let (mut llm, raw) = match route {
        Route::Llm(route) => {
            let bytes = read_whole(declared, incoming, limit).await?;
            // Kept as a copy of exactly the body's size: the bytes read are a slice of the
            // connection's read buffer, which the request's audit record would otherwise
            // hold whole while it waits in the queue (RSS grew by hundreds of MiB under
            // 32 KB prompts).
            let llm = Box::new(LlmRequest::parse(route, &bytes)?);
            crate::batch::check_file_refs(app, &principal.account.id, &llm.raw).await?;
            ex.model = llm.model.clone();
            ex.stream = llm.stream;
            (Some(llm), Ok(()))
        }
        Route::BatchCreate => {
            let bytes = read_whole(declared, incoming, limit).await?;
            crate::batch::check_create(app, &principal.account.id, &bytes).await?;
            (None, Err(body::full(bytes)))
        }
        Route::FileUpload => {
            let boundary = parts
                .headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .and_then(|ct| multer::parse_boundary(ct).ok())
                .ok_or_else(|| ProxyError::InvalidRequest {
                    message: "An upload to `/v1/files` must be `multipart/form-data`.".into(),
                    param: None,
                })?;
            let uploader = crate::batch::Uploader {
                app: ex.app.clone(),
                principal: principal.clone(),
                tier: tier.clone(),
                request_id: ex.request_id.clone(),
                client_ip: ex.client_ip,
                user_agent: ex.user_agent.clone(),
                ts_ms: ex.ts_ms,
                max_line: config.server.max_body_bytes as usize,
            };
            let (body, verdict) = crate::batch::inspect(incoming.boxed_unsync(), boundary, uploader);
            upload = Some(verdict);
            (None, Err(body.boxed_unsync()))
        }
        _ => (None, Err(incoming.boxed_unsync())),
    };
    // 8. Policy: the tier's model allow-list and parameter rules (strip, or refuse with 400).
    if let Some(llm) = llm.as_mut() {
        let mut applied = policy::apply(&tier.policy, llm)?;
        // The detector's `strip` takes the soft labels and the reasoning away.
        let suspected = principal.account.strips_soft_labels();
        if suspected {
            applied.stripped.extend(policy::strip_soft_labels(llm));
        }
        ex.stripped = applied.stripped;
        ex.strip_reasoning = (tier.policy.strip_reasoning || suspected) && llm.route.generates();
    }
    // 9. Limits: reserve one request and the estimated tokens against every limit, or 429.
    let mut spec = app.limit_spec(&principal.account, tier, ex.model.as_deref());
    if ex.concurrency.is_some() {
        spec.max_concurrent = None;
    }
    if !spec.is_empty() {
        let estimate = estimate_tokens(app, tier, llm.as_deref(), &spec, ex);
        ex.reservation = Some(admit(app, &principal, ex, spec, estimate).await?);
    }
    ex.admitted = true;
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
    // 10. Forward: upstream key swapped in, credentials out of the query, hop-by-hop
    //     headers dropped, first-byte timeout.
    //     The Anthropic routes go to their own provider when one is configured.
    let upstream = app.upstream_for(ex.dialect);
    let target = upstream_target(&parts.uri);
    let mut upstream_req = Request::builder()
        .method(parts.method.clone())
        .uri(upstream.uri_for(&target))
        .body(body)
        .map_err(|e| ProxyError::InvalidRequest { message: e.to_string(), param: None })?;
    *upstream_req.headers_mut() = std::mem::take(&mut parts.headers);
    upstream.rewrite_request_headers(upstream_req.headers_mut(), matches!(ex.route, Route::Llm(_)));
    upstream_req.headers_mut().insert(REQUEST_ID, request_id.clone());
    if ex.dialect == Dialect::Anthropic && !upstream_req.headers().contains_key(ANTHROPIC_VERSION) {
        upstream_req.headers_mut().insert(ANTHROPIC_VERSION, DEFAULT_ANTHROPIC_VERSION);
    }
    ex.upstream_sent = Some(Instant::now());
    let sent = upstream.send(upstream_req).await;
    // An upload whose batch file was refused was cut off on its way: the refusal is the
    // answer, whatever the upstream made of the cut.
    let batch = upload
        .map(|v| std::mem::replace(&mut *v.lock().unwrap_or_else(|p| p.into_inner()), crate::batch::Verdict::Reading));
    if let Some(crate::batch::Verdict::Refused(err)) = batch {
        return Err(err);
    }
    let response = sent.map_err(|(err, failure)| {
        if matches!(err, ProxyError::UpstreamUnavailable(_) | ProxyError::UpstreamTimeout(_)) {
            ex.upstream_failure = Some(failure);
        }
        err
    })?;
    // 11. Response: a status outside HTTP's range is not passed on; Files and Batch API
    //     objects are read for the ids they name (the next request may use them at once);
    //     the rest is streamed back through the accounting tap (see `Exchange::stream`).
    let status = response.status().as_u16();
    if !(100..=599).contains(&status) {
        ex.upstream_failure = Some(UpstreamFailure::Protocol);
        return Err(ProxyError::UpstreamUnavailable(format!("the upstream answered with status {status}")));
    }
    let mut accepted_batch = false;
    if let Some(crate::batch::Verdict::Accepted { requests, tokens, reservation }) = batch {
        ex.batch = Some((requests, tokens));
        ex.reservation = reservation.map(|r| *r);
        accepted_batch = true;
    }
    let learns = matches!(route, Route::FileUpload | Route::BatchCreate | Route::Batch { .. });
    if learns && response.status().is_success() {
        let (parts, body) = response.into_parts();
        let limited = http_body_util::Limited::new(body, crate::batch::MAX_OBJECT_BYTES);
        let bytes = limited
            .collect()
            .await
            .map_err(|e| ProxyError::UpstreamUnavailable(format!("reading the upstream's answer: {e}")))?
            .to_bytes();
        crate::batch::learn(app, &principal.account.id, &route, accepted_batch, &bytes).await;
        return Ok(Forwarded::Read(parts, bytes));
    }
    let format = body_format(ex, &response);
    Ok(Forwarded::Streamed { response, format })
}

/// Checks and reserves `spec` for this request.
async fn admit(
    app: &App,
    principal: &Principal,
    ex: &Exchange,
    spec: LimitSpec,
    tokens: u64,
) -> Result<Reservation, ProxyError> {
    match app.limiter.admit(&principal.account.id, &ex.request_id, spec, tokens).await {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(denial)) => Err(ProxyError::RateLimited { denial }),
        Err(Unavailable::SharedStateDown) => Err(ProxyError::LimitsUnavailable),
    }
}

fn authenticate(app: &App, headers: &http::HeaderMap, ip: std::net::IpAddr) -> Result<Principal, ProxyError> {
    let found = presented_key(headers).map(|key| app.accounts.directory().authenticate(key));
    match found {
        Some(Some(principal)) => Ok(principal),
        failed => {
            let err = if failed.is_none() { ProxyError::MissingApiKey } else { ProxyError::InvalidApiKey };
            match app.auth_failures.proxy.failed(ip) {
                Ok(()) => Err(err),
                Err(retry_after) => Err(ProxyError::AuthThrottled { retry_after }),
            }
        }
    }
}

/// The upstream request target: the client's path, and its query without credentials.
fn upstream_target(uri: &http::Uri) -> std::borrow::Cow<'_, str> {
    use std::borrow::Cow;
    let path = uri.path();
    match uri.query() {
        None => Cow::Borrowed(uri.path_and_query().map_or(path, |p| p.as_str())),
        Some(q) => match crate::routes::forwarded_query(q) {
            Cow::Borrowed(_) => Cow::Borrowed(uri.path_and_query().map_or(path, |p| p.as_str())),
            Cow::Owned(q) if q.is_empty() => Cow::Borrowed(path),
            Cow::Owned(q) => Cow::Owned(format!("{path}?{q}")),
        },
    }
}

fn declared_length(headers: &http::HeaderMap) -> Option<u64> {
    headers.get(header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

/// Reads a whole body (whose declared length, if any, is within `limit`; the guard cuts it
/// off past the limit or its deadline).
async fn read_whole(declared: Option<u64>, mut body: GuardedBody<Incoming>, limit: u64) -> Result<Bytes, ProxyError> {
    // A body that arrives as one frame (most do) is kept as it is, without a copy; one in
    // several frames is gathered into a buffer sized by its declared length.
    let (mut first, mut rest) = (None::<Bytes>, bytes::BytesMut::new());
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| match BodyCut::find(&*e) {
            Some(cut) => ProxyError::from(cut),
            // A body that stops for any reason but bad framing: the client left.
            None if e.downcast_ref::<hyper::Error>().is_some_and(|h| !h.is_parse()) => {
                ProxyError::ClientGone(e.to_string())
            }
            None => ProxyError::ClientBody(e.to_string()),
        })?;
        let Ok(data) = frame.into_data() else { continue };
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

fn body_format(ex: &Exchange, response: &Response<UpstreamBody>) -> BodyFormat {
    let Some(llm) = &ex.llm else { return BodyFormat::Opaque };
    let content_type = response.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    // Only a successful answer carries reasoning (an error body goes as it came).
    let strip_reasoning = ex.strip_reasoning && response.status().is_success();
    if content_type.starts_with("text/event-stream") {
        BodyFormat::Sse { route: llm.route, strip_usage: llm.needs_injected_usage(), strip_reasoning }
    } else if content_type.starts_with("application/json") {
        BodyFormat::Json { route: llm.route, strip_reasoning }
    } else {
        BodyFormat::Opaque
    }
}

/// A request warden accepted and sent upstream, with its response.
enum Forwarded {
    /// Headers in, the body to be streamed through the tap.
    Streamed { response: Response<UpstreamBody>, format: BodyFormat },
    /// Read whole already (a Files or Batch API object).
    Read(http::response::Parts, Bytes),
}

/// A client's path, cut to a length fit for an error message.
fn shortened(path: &str) -> String {
    let mut path = path.to_string();
    if path.len() > 200 {
        let mut cut = 200;
        while !path.is_char_boundary(cut) {
            cut -= 1;
        }
        path.truncate(cut);
        path.push('…');
    }
    path
}

/// One request from arrival to the end of its response. See the module docs: it ends
/// once, and records itself when dropped before it ended.
struct Exchange {
    app: Arc<App>,
    /// Keeps the connection from being closed as idle while this request is on it.
    _active: crate::net::ActiveRequest,
    /// The outcome has been recorded (refused, finished, or cut short).
    ended: bool,
    /// Shared with the limits reservation and the audit record.
    request_id: Arc<str>,
    started: Instant,
    ts_ms: i64,
    client_ip: std::net::IpAddr,
    user_agent: Option<String>,
    method: http::Method,
    path: std::borrow::Cow<'static, str>,
    route: Route,
    /// The provider API the client speaks (by its path): the shape of warden's errors
    /// and rate-limit headers.
    dialect: Dialect,
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
    /// The account's concurrency slot, taken before the body is read; freed when it ends.
    concurrency: Option<Reservation>,
    /// What the limits reserved for this request; settled when it ends.
    reservation: Option<Reservation>,
    /// Every limit admitted the request (it was on its way upstream).
    admitted: bool,
    /// Prompt tokens counted for the token estimate (reused if the upstream reports none).
    prompt_tokens: Option<u64>,
    /// Parameters the policy removed.
    stripped: Vec<&'static str>,
    /// Reasoning is taken out of the response (the tier's `reasoning = "strip"`, or the
    /// detector's `strip`).
    strip_reasoning: bool,
    /// An accepted batch file: its requests and the tokens reserved for them.
    batch: Option<(usize, u64)>,
}

impl Exchange {
    fn begin(
        app: Arc<App>,
        req: &Request<Incoming>,
        peer: SocketAddr,
        config: &Config,
        active: crate::net::ActiveRequest,
    ) -> Exchange {
        let route = Route::of(req.method(), req.uri().path(), &config.upstream.passthrough);
        let request_id = req
            .headers()
            .get(REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
            .map(Arc::from)
            .unwrap_or_else(new_request_id);
        // A shared path (`/v1/models`) is the Anthropic API's when the client says so.
        let dialect = match Dialect::of_path(req.uri().path()) {
            Dialect::OpenAi if route == Route::Models && req.headers().contains_key(ANTHROPIC_VERSION) => {
                Dialect::Anthropic
            }
            d => d,
        };
        Exchange {
            app,
            _active: active,
            ended: false,
            request_id,
            started: Instant::now(),
            ts_ms: crate::clock::now_millis(),
            client_ip: client_ip(peer.ip(), req.headers(), &config.server.trusted_proxies),
            user_agent: req.headers().get(header::USER_AGENT).and_then(|v| v.to_str().ok()).map(str::to_owned),
            method: req.method().clone(),
            path: match &route {
                Route::Llm(r) => std::borrow::Cow::Borrowed(r.path()),
                _ => std::borrow::Cow::Owned(req.uri().path().to_string()),
            },
            route,
            dialect,
            model: None,
            stream: false,
            principal: None,
            llm: None,
            upstream_sent: None,
            upstream_failure: None,
            permit: None,
            audit_slot: None,
            concurrency: None,
            reservation: None,
            admitted: false,
            prompt_tokens: None,
            stripped: Vec::new(),
            strip_reasoning: false,
            batch: None,
        }
    }

    fn route_label(&self) -> &'static str {
        self.route.label()
    }

    /// The exchange's record; what it holds moves into the event (the exchange ends here).
    fn event(&mut self, status: u16, decision: crate::events::Decision, ending: crate::events::Ending) -> RequestEvent {
        RequestEvent {
            ts_ms: self.ts_ms,
            request_id: std::mem::take(&mut self.request_id),
            account_id: self.principal.as_ref().map(|p| p.account.id.clone()),
            key_id: self.principal.as_ref().map(|p| p.key_id.clone()),
            client_ip: self.client_ip,
            user_agent: self.user_agent.take(),
            method: self.method.clone(),
            path: std::mem::take(&mut self.path),
            dialect: Some(self.dialect),
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
            p.account.usage.requests.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn release(&mut self) {
        if self.permit.take().is_some() {
            self.app.metrics.requests.in_flight.dec();
        }
    }

    /// Ends a refused request: records it and returns the error response.
    fn refuse(mut self, err: ProxyError) -> Response<Body> {
        self.ended = true;
        let app = self.app.clone();
        if let Some(failure) = self.upstream_failure {
            app.metrics.upstream.errors.get_or_create(&KindLabel { kind: failure.label() }).inc();
        }
        self.release();
        self.count_request();
        let dialect = self.dialect;
        let status = err.status_in(dialect).as_u16();
        let mut response = err.into_response_in(dialect, Some(&self.request_id));
        let standings = self.settle(0);
        let route = self.route_label();
        let ending = if matches!(err, ProxyError::ClientGone(_)) {
            app.metrics.requests.client_aborts.inc();
            crate::events::Ending::ClientAborted
        } else {
            crate::events::Ending::Refused
        };
        let mut event = self.event(status, crate::events::Decision::of(&err), ending);
        event.reason = Some(err.to_string());
        event.request = self.llm.take();
        let slot = self.audit_slot.take();
        app.record(event, route, slot);
        match &err {
            ProxyError::RateLimited { denial } => {
                app.metrics.limits.rate_limited.get_or_create(&KindLabel { kind: denial_label(denial) }).inc();
                denial_headers(response.headers_mut(), denial, dialect);
            }
            _ if self.reports_limits() => limit_headers(dialect, response.headers_mut(), standings, true),
            _ => {}
        }
        response
    }

    /// Ends an exchange dropped before it ended: the client hung up (or shutdown cut it)
    /// while its body, a limit or the upstream's answer was awaited.
    fn cut_short(&mut self) {
        self.ended = true;
        let app = self.app.clone();
        let shutdown = app.shutting_down.load(Ordering::Acquire);
        if !shutdown {
            app.metrics.requests.client_aborts.inc();
        }
        self.release();
        self.count_request();
        // A prompt the upstream had been sent may have been processed.
        let used = if self.upstream_sent.is_some() { self.prompt_tokens.unwrap_or(0) } else { 0 };
        self.settle(used);
        let route = self.route_label();
        use crate::events::{Decision, Ending};
        let decision = if self.admitted { Decision::Allowed } else { Decision::Abandoned };
        let (status, ending, reason) = if shutdown {
            (503, Ending::Shutdown, "cut off by shutdown before the response began")
        } else {
            (499, Ending::ClientAborted, "the client closed the request before the response began")
        };
        let mut event = self.event(status, decision, ending);
        event.reason = Some(reason.into());
        event.request = self.llm.take();
        let slot = self.audit_slot.take();
        app.record(event, route, slot);
    }

    /// An admitted LLM request's response says where it stands against its limits, even
    /// when it has none (see [`rate_limit_headers`]).
    fn reports_limits(&self) -> bool {
        self.reservation.is_some() || (self.admitted && matches!(self.route, Route::Llm(_)))
    }

    /// Settles the limits reservation, if any, with `used` tokens, and frees the
    /// concurrency slot; returns the standings for the response headers.
    fn settle(&mut self, used: u64) -> (Option<Standing>, Option<Standing>) {
        if let Some(c) = self.concurrency.take() {
            self.app.limiter.settle(c, 0);
        }
        match self.reservation.take() {
            Some(r) => {
                let standings = (r.requests, r.token_standing);
                self.app.limiter.settle(r, used);
                standings
            }
            None => (None, None),
        }
    }

    /// Streams an upstream response to the client through the accounting tap; the
    /// exchange ends when the tap finishes.
    fn stream(self, config: &Config, forwarded: Forwarded) -> Response<Body> {
        let (response, format) = match forwarded {
            Forwarded::Streamed { response, format } => (response, format),
            Forwarded::Read(mut parts, bytes) => {
                rewrite_response_headers(&mut parts.headers);
                if let Some(theirs) = parts.headers.remove(REQUEST_ID) {
                    parts.headers.insert(UPSTREAM_REQUEST_ID, theirs);
                }
                parts.headers.insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
                let status = parts.status.as_u16();
                let outcome = TapOutcome::of(Ending::Complete, bytes.len() as u64);
                self.finish(status, outcome);
                return Response::from_parts(parts, body::full(bytes));
            }
        };
        let app = self.app.clone();
        let (mut parts, incoming) = response.into_parts();
        let first_byte = self.upstream_sent.map(|t| t.elapsed());
        if let Some(d) = first_byte {
            app.metrics.requests.route(self.route_label()).upstream_first_byte.observe(d.as_secs_f64());
        }
        rewrite_response_headers(&mut parts.headers);
        // The client gets warden's request id (the one in the audit log); the provider's
        // own id stays available for support cases with the provider.
        if let Some(theirs) = parts.headers.remove(REQUEST_ID) {
            parts.headers.insert(UPSTREAM_REQUEST_ID, theirs);
        }
        if self.dialect == Dialect::Anthropic {
            if let Some(theirs) = parts.headers.remove(ANTHROPIC_REQUEST_ID) {
                parts.headers.insert(ANTHROPIC_UPSTREAM_REQUEST_ID, theirs);
            }
        }
        if matches!(format, BodyFormat::Sse { .. } | BodyFormat::Json { strip_reasoning: true, .. }) {
            // The tap may take events out (the usage chunk it asked for, reasoning) or
            // end the stream early (an event past `server.max_event_bytes`).
            parts.headers.remove(header::CONTENT_LENGTH);
        }
        if self.reports_limits() {
            let standings = self.reservation.as_ref().map_or((None, None), |r| (r.requests, r.token_standing));
            limit_headers(self.dialect, &mut parts.headers, standings, true);
        }
        let status = parts.status.as_u16();
        let tap = crate::accounting::TapLimits {
            idle: app.upstream.idle_timeout,
            capture: config.audit.max_capture_bytes,
            max_event: config.server.max_event_bytes,
        };
        let on_finish = Box::new(move |outcome: TapOutcome| self.finish(status, outcome));
        Response::from_parts(parts, TapBody::new(incoming, format, tap, on_finish).boxed_unsync())
    }

    /// Ends a forwarded request once its response body is over.
    fn finish(mut self, status: u16, outcome: TapOutcome) {
        self.ended = true;
        let app = self.app.clone();
        self.release();
        self.count_request();
        let route = self.route_label();
        if let Some(sent) = self.upstream_sent {
            app.metrics.requests.route(route).upstream_duration.observe(sent.elapsed().as_secs_f64());
        }
        let shutdown = app.shutting_down.load(Ordering::Acquire);
        let ending = match &outcome.ending {
            Ending::Complete => crate::events::Ending::Complete,
            Ending::ClientAborted if shutdown => crate::events::Ending::Shutdown,
            Ending::ClientAborted => {
                app.metrics.requests.client_aborts.inc();
                crate::events::Ending::ClientAborted
            }
            Ending::UpstreamError(_) => {
                app.metrics.upstream.errors.get_or_create(&KindLabel { kind: "protocol" }).inc();
                crate::events::Ending::UpstreamError
            }
            Ending::IdleTimeout => {
                app.metrics.upstream.errors.get_or_create(&KindLabel { kind: "idle_timeout" }).inc();
                crate::events::Ending::IdleTimeout
            }
            Ending::EventTooLarge(_) => {
                app.metrics.upstream.errors.get_or_create(&KindLabel { kind: "event_too_large" }).inc();
                crate::events::Ending::EventTooLarge
            }
        };
        let mut event = self.event(status, crate::events::Decision::Allowed, ending);
        if let Ending::UpstreamError(e) | Ending::EventTooLarge(e) = &outcome.ending {
            event.reason = Some(e.clone());
        }
        let (usage, estimated) = self.usage(status, &outcome);
        match self.batch {
            // A batch's tokens are spent later, by the provider: they stay reserved.
            Some((requests, tokens)) => {
                self.settle(tokens);
                event.reason = Some(format!("batch file: {requests} requests, {tokens} tokens reserved"));
            }
            None => {
                self.settle(usage.map(|u| u.prompt_tokens + u.completion_tokens).unwrap_or(0));
            }
        }
        event.usage = usage;
        event.usage_estimated = estimated;
        if outcome.reasoning_stripped > 0 {
            app.metrics.requests.reasoning_stripped.inc();
            self.stripped.push("reasoning");
        }
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
    fn usage(&self, status: u16, outcome: &TapOutcome) -> (Option<Usage>, bool) {
        if outcome.usage.is_some() {
            return (outcome.usage, false);
        }
        let Some(llm) = &self.llm else { return (None, false) };
        // Counting a prompt spends no tokens.
        if llm.route == LlmRoute::CountTokens || !StatusCode::from_u16(status).is_ok_and(|s| s.is_success()) {
            return (None, false);
        }
        let app = &self.app;
        let prompt_tokens =
            outcome.partial_prompt_tokens.or(self.prompt_tokens).unwrap_or_else(|| llm.prompt_tokens(&app.tokens));
        // Scaled up for the part the capture limit cut off.
        let count = |text: &str, bytes: u64| {
            let (tokens, seen) = (app.tokens.count(text), text.len() as u64);
            if bytes > seen && seen > 0 {
                tokens * bytes / seen
            } else {
                tokens
            }
        };
        let completion_tokens = count(&outcome.completion_text, outcome.completion_text_bytes)
            + count(&outcome.reasoning_text, outcome.reasoning_text_bytes);
        (Some(Usage { prompt_tokens, completion_tokens }), true)
    }
}

/// Records a request hyper refused before warden could read it (headers too large or
/// malformed, so no method, path or key is known).
pub fn record_unparsed(app: &App, peer: SocketAddr, status: u16, reason: &str) {
    let event = RequestEvent {
        ts_ms: crate::clock::now_millis(),
        request_id: new_request_id(),
        account_id: None,
        key_id: None,
        client_ip: peer.ip(),
        user_agent: None,
        method: http::Method::GET,
        path: std::borrow::Cow::Borrowed("-"),
        dialect: None,
        model: None,
        status,
        stream: false,
        latency: std::time::Duration::ZERO,
        usage: None,
        usage_estimated: false,
        decision: crate::events::Decision::InvalidRequest,
        reason: Some(reason.into()),
        ending: crate::events::Ending::Refused,
        request: None,
        completion_text: None,
        completion_truncated: false,
    };
    app.record(event, "other", None);
}

impl Drop for Exchange {
    fn drop(&mut self) {
        if !self.ended {
            self.cut_short();
        }
    }
}

/// The client's address: the peer, or, when the peer is a trusted proxy, the nearest
/// untrusted address in `X-Forwarded-For` (entries added by trusted proxies are skipped;
/// anything left of the first untrusted one could be forged by the client).
pub(crate) fn client_ip(
    peer: std::net::IpAddr,
    headers: &http::HeaderMap,
    trusted: &[ipnet::IpNet],
) -> std::net::IpAddr {
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

/// Tokens to reserve for a request: its prompt tokens plus the completion it may ask for
/// (`max_tokens`, or the tier's default, times `n`). Zero when no limit counts tokens,
/// so the tokenizer only runs when it matters.
fn estimate_tokens(
    app: &App,
    tier: &crate::tiers::Tier,
    llm: Option<&LlmRequest>,
    spec: &crate::limits::LimitSpec,
    ex: &mut Exchange,
) -> u64 {
    let Some(llm) = llm else { return 0 };
    // Counting a prompt spends no tokens.
    if !spec.counts_tokens() || llm.route == LlmRoute::CountTokens {
        return 0;
    }
    let prompt = llm.prompt_tokens(&app.tokens);
    ex.prompt_tokens = Some(prompt);
    let completion = match llm.route.generates() {
        false => 0,
        true => llm.max_tokens.unwrap_or(tier.default_max_tokens).saturating_mul(llm.n.unwrap_or(1).max(1)),
    };
    prompt.saturating_add(completion)
}

/// `x-ratelimit-*` headers as OpenAI sends them. With `whole`, the standings are all
/// there is: a kind without one has no limit, and its limit and remaining say
/// `unlimited` (no reset is sent). Without it (a 429), only the kinds given are written.
fn rate_limit_headers(
    headers: &mut http::HeaderMap,
    (requests, tokens): (Option<Standing>, Option<Standing>),
    whole: bool,
) {
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
    let count = if whole { 6 } else { 3 * (usize::from(requests.is_some()) + usize::from(tokens.is_some())) };
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
        } else if whole {
            const UNLIMITED: HeaderValue = HeaderValue::from_static("unlimited");
            headers.insert(limit, UNLIMITED);
            headers.insert(remaining, UNLIMITED);
            headers.remove(reset);
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

fn denial_headers(headers: &mut http::HeaderMap, denial: &Denial, dialect: Dialect) {
    let (limit, kind) = match denial {
        Denial::Rate { limit, .. } | Denial::TooLarge { limit, .. } => (*limit, denial.kind()),
        Denial::Quota { limit, .. } => (*limit, "tokens"),
        Denial::Concurrency { .. } => return,
    };
    let standing = Some(Standing { limit, remaining: 0, reset_ns: denial.retry_after().as_nanos() as i64 });
    limit_headers(dialect, headers, if kind == "tokens" { (None, standing) } else { (standing, None) }, false);
}

/// The rate-limit headers of a dialect: OpenAI's `x-ratelimit-*` or Anthropic's
/// `anthropic-ratelimit-*`.
fn limit_headers(
    dialect: Dialect,
    headers: &mut http::HeaderMap,
    standings: (Option<Standing>, Option<Standing>),
    whole: bool,
) {
    match dialect {
        Dialect::OpenAi => rate_limit_headers(headers, standings, whole),
        Dialect::Anthropic => anthropic_rate_limit_headers(headers, standings, crate::clock::now_millis()),
    }
}

/// `anthropic-ratelimit-{requests,tokens}-{limit,remaining,reset}` as Anthropic sends
/// them, the reset as the RFC 3339 time the limit is whole again (rounded up to the
/// second). The upstream's own (they describe warden's provider account, not the client's
/// limits) never reach the client; a kind without a limit gets none.
fn anthropic_rate_limit_headers(
    headers: &mut http::HeaderMap,
    (requests, tokens): (Option<Standing>, Option<Standing>),
    now_ms: i64,
) {
    let theirs: Vec<HeaderName> =
        headers.keys().filter(|k| k.as_str().starts_with("anthropic-ratelimit-")).cloned().collect();
    for name in theirs {
        headers.remove(name);
    }
    const NAMES: [[HeaderName; 3]; 2] = [
        [
            HeaderName::from_static("anthropic-ratelimit-requests-limit"),
            HeaderName::from_static("anthropic-ratelimit-requests-remaining"),
            HeaderName::from_static("anthropic-ratelimit-requests-reset"),
        ],
        [
            HeaderName::from_static("anthropic-ratelimit-tokens-limit"),
            HeaderName::from_static("anthropic-ratelimit-tokens-remaining"),
            HeaderName::from_static("anthropic-ratelimit-tokens-reset"),
        ],
    ];
    for ([limit, remaining, reset], standing) in NAMES.into_iter().zip([requests, tokens]) {
        let Some(s) = standing else { continue };
        let reset_ms = now_ms + (s.reset_ns.max(0) as u64).div_ceil(1_000_000_000) as i64 * 1000;
        headers.insert(limit, HeaderValue::from(s.limit));
        headers.insert(remaining, HeaderValue::from(s.remaining));
        let at = crate::clock::rfc3339_millis(reset_ms / 1000 * 1000);
        headers.insert(reset, HeaderValue::from_str(&at).expect("RFC 3339 is visible ASCII"));
    }
}

fn denial_label(denial: &Denial) -> &'static str {
    match denial {
        Denial::Rate { .. } | Denial::TooLarge { .. } => denial.kind(),
        Denial::Concurrency { .. } => "concurrency",
        Denial::Quota { .. } => "quota",
    }
}

fn new_request_id() -> Arc<str> {
    crate::clock::with_random_id::<12, _>("req", |id: &str| Arc::from(id))
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
            rate_limit_headers(&mut h, (Some(standing), Some(Standing { limit: limit * 10, ..standing })), true);
            assert_eq!(h.get_all("x-ratelimit-limit-requests").iter().count(), 1, "warden's replaces the upstream's");
            assert_eq!(h["x-ratelimit-limit-requests"], limit.to_string().as_str());
            assert_eq!(h["x-ratelimit-remaining-requests"], remaining.to_string().as_str());
            assert_eq!(h["x-ratelimit-reset-requests"], "2ms");
            assert_eq!(h["x-ratelimit-limit-tokens"], (limit * 10).to_string().as_str());
        }
    }

    #[test]
    fn a_kind_without_a_limit_is_reported_unlimited_only_when_the_standings_are_whole() {
        use crate::limits::Standing;
        let standing = Standing { limit: 60, remaining: 59, reset_ns: 1_000_000_000 };
        let mut h = http::HeaderMap::new();
        h.insert("x-ratelimit-reset-tokens", "upstream's".parse().unwrap());
        rate_limit_headers(&mut h, (Some(standing), None), true);
        assert_eq!(h["x-ratelimit-limit-requests"], "60");
        assert_eq!(h["x-ratelimit-reset-requests"], "1s");
        assert_eq!(h["x-ratelimit-limit-tokens"], "unlimited");
        assert_eq!(h["x-ratelimit-remaining-tokens"], "unlimited");
        assert!(h.get("x-ratelimit-reset-tokens").is_none(), "no reset for what has no limit");
        // A 429 names the limit it hit and says nothing of the other kind.
        let mut h = http::HeaderMap::new();
        rate_limit_headers(&mut h, (None, Some(standing)), false);
        assert_eq!(h["x-ratelimit-limit-tokens"], "60");
        assert!(h.get("x-ratelimit-limit-requests").is_none());
    }

    #[test]
    fn anthropic_limit_headers_replace_the_upstreams_and_say_when_the_limit_is_whole() {
        use crate::limits::Standing;
        let mut h = http::HeaderMap::new();
        h.insert("anthropic-ratelimit-input-tokens-limit", "400000".parse().unwrap());
        h.insert("anthropic-ratelimit-requests-limit", "4000".parse().unwrap());
        let now = crate::clock::parse_time("2026-12-08T10:00:00.250Z").unwrap();
        let requests = Standing { limit: 60, remaining: 59, reset_ns: 1_500_000_000 };
        anthropic_rate_limit_headers(&mut h, (Some(requests), None), now);
        assert_eq!(h["anthropic-ratelimit-requests-limit"], "60");
        assert_eq!(h["anthropic-ratelimit-requests-remaining"], "59");
        assert_eq!(h["anthropic-ratelimit-requests-reset"], "2026-12-08T10:00:02Z");
        assert!(h.get("anthropic-ratelimit-input-tokens-limit").is_none(), "the provider's limits stay private");
        assert!(h.get("anthropic-ratelimit-tokens-limit").is_none(), "no token limit, no token headers");
        assert!(h.get("x-ratelimit-limit-requests").is_none());
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
