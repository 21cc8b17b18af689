//! The upstream LLM API: a pool of HTTP/1.1 connections (TLS through rustls for real
//! providers, plain HTTP for local ones), how a client request is turned into an upstream
//! request (path appended to `base_url`, hop-by-hop headers removed, the client's
//! credential replaced by the upstream key), and the connect / first-byte timeouts.
//!
//! Each connection is driven by the task of the request using it, not by a task of its
//! own: the request task writes the request and reads the response head, and the
//! response body ([`UpstreamBody`]) reads the upstream socket when the client's
//! connection asks for more. Every frame already decoded is handed over in one piece, so
//! a burst of SSE events read in one `recv` leaves in one `writev`, as in nginx, and no
//! request pays a hand-over between tasks. Idle connections wait in a pool per proxy
//! worker (LIFO, bounded, expired after `pool_idle_timeout_ms`).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, Uri};
use http_body::{Body as _, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::{Connection, SendRequest};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use prometheus_client::metrics::counter::Counter;
use tower_service::Service;

use crate::body::Body;
use crate::error::ProxyError;
use crate::llm::LlmRoute;
use crate::settings::{env_secret, millis, EnvLookup};
use serde::Deserialize;

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;
type Stream = hyper_rustls::MaybeHttpsStream<TokioIo<tokio::net::TcpStream>>;
/// A connection lives on the heap: requests and bodies move it around (pool, request
/// future, response body), and it is several hundred bytes.
type Conn = Pin<Box<Connection<Stream, Body>>>;

/// Which upstream failure happened, for metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpstreamFailure {
    Connect,
    Timeout,
    Protocol,
}

impl UpstreamFailure {
    pub fn label(self) -> &'static str {
        match self {
            UpstreamFailure::Connect => "connect",
            UpstreamFailure::Timeout => "timeout",
            UpstreamFailure::Protocol => "protocol",
        }
    }
}

pub struct Upstream {
    connector: Connector,
    /// `base_url`'s scheme and authority: where connections go.
    origin: Uri,
    pool: Arc<Pool>,
    /// `Host` of every upstream request: `base_url`'s authority.
    host: HeaderValue,
    /// `base_url`'s path without a trailing slash; request paths are appended to it.
    base_path: String,
    /// The upstream targets of the LLM routes, made once: most requests go to one of
    /// these four, and a clone costs less than formatting and parsing a URI.
    routes: Vec<(&'static str, Uri)>,
    /// The upstream key as the provider expects it (`Authorization: Bearer <key>` or
    /// `x-api-key: <key>`), marked sensitive so it is never printed.
    credential: Option<(HeaderName, HeaderValue)>,
    first_byte_timeout: Duration,
    pub idle_timeout: Duration,
    /// Connections opened (`warden_upstream_connections_total`; far below the request count
    /// when connections are reused).
    connections_opened: Counter,
}

/// One upstream connection: the handle requests are sent through, and the connection
/// itself, which the task of the request using it polls.
struct Link {
    sender: SendRequest<Body>,
    conn: Conn,
}

/// Idle connections, one LIFO stack per proxy worker so that a request and its upstream
/// connection live on the same event loop (index 0 also serves any other thread).
struct Pool {
    idle: Vec<Mutex<Vec<(Link, Instant)>>>,
    max_idle: usize,
    idle_for: Duration,
}

impl Pool {
    fn slot(&self) -> usize {
        crate::worker::index() % self.idle.len()
    }

    /// The most recently used idle connection that is still open, if any.
    fn checkout(&self, slot: usize) -> Option<Link> {
        let mut idle = self.idle[slot].lock().unwrap_or_else(|p| p.into_inner());
        while let Some((mut link, since)) = idle.pop() {
            if since.elapsed() >= self.idle_for {
                // The rest are older still.
                idle.clear();
                return None;
            }
            // One poll lets the connection notice that the upstream closed it meanwhile.
            let mut cx = Context::from_waker(std::task::Waker::noop());
            if link.conn.as_mut().poll(&mut cx).is_pending() && link.sender.is_ready() {
                return Some(link);
            }
        }
        None
    }

    fn put(&self, slot: usize, link: Link) {
        let mut idle = self.idle[slot].lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() >= self.max_idle {
            idle.remove(0);
        }
        idle.push((link, Instant::now()));
    }

    /// Closes connections idle for longer than `pool_idle_timeout_ms`.
    fn expire(&self) {
        for slot in &self.idle {
            slot.lock().unwrap_or_else(|p| p.into_inner()).retain(|(_, since)| since.elapsed() < self.idle_for);
        }
    }
}

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1), with the
/// legacy `keep-alive` and `proxy-connection`.
fn is_hop_by_hop(name: &str) -> bool {
    matches!(
        name,
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

/// Removes the headers `doomed` picks and those named in `Connection`. Most messages
/// carry none or one or two of these: the names are compared as they are (lower case,
/// a length switch and one comparison), nothing is allocated, and only what is there is
/// looked up again to be removed.
fn strip_hop_by_hop(headers: &mut HeaderMap, doomed: impl Fn(&str) -> bool) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    while let Some(name) = headers.keys().find(|k| doomed(k.as_str()) || named.contains(k)).cloned() {
        headers.remove(&name);
    }
}

impl Upstream {
    /// The upstream of `[upstream]`: every route but those of a dialect with an upstream
    /// of its own.
    pub fn new(config: &UpstreamConfig, workers: usize, connections_opened: Counter) -> Upstream {
        Upstream::build(
            &config.base_url,
            config.api_key.as_deref(),
            KeyHeader::Bearer,
            config,
            workers,
            connections_opened,
        )
    }

    /// The upstream of `[upstream.anthropic]`, if configured: the Anthropic routes' provider
    /// (timeouts and pool settings as in `[upstream]`).
    pub fn anthropic(config: &UpstreamConfig, workers: usize, connections_opened: Counter) -> Option<Upstream> {
        let d = config.anthropic.as_ref()?;
        Some(Upstream::build(&d.base_url, d.api_key.as_deref(), d.key_header, config, workers, connections_opened))
    }

    fn build(
        base_url: &Uri,
        api_key: Option<&str>,
        key_header: KeyHeader,
        config: &UpstreamConfig,
        workers: usize,
        connections_opened: Counter,
    ) -> Upstream {
        let parts = base_url.clone().into_parts();
        let authority = parts.authority.expect("validated: base_url has an authority");
        let credential = api_key.map(|k| {
            let (name, text) = match key_header {
                KeyHeader::Bearer => (header::AUTHORIZATION, format!("Bearer {k}")),
                KeyHeader::XApiKey => (HeaderName::from_static("x-api-key"), k.to_string()),
            };
            let mut v = HeaderValue::from_str(&text).expect("upstream key is a valid header value");
            v.set_sensitive(true);
            (name, v)
        });
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(config.connect_timeout));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let pool = Arc::new(Pool {
            idle: (0..workers.max(1)).map(|_| Mutex::new(Vec::new())).collect(),
            max_idle: config.pool_max_idle_per_host.max(1),
            idle_for: config.pool_idle_timeout,
        });
        // Expired idle connections are closed even when no request comes to notice them.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let weak = Arc::downgrade(&pool);
            let every = (config.pool_idle_timeout / 2).max(Duration::from_secs(1));
            rt.spawn(async move {
                let mut tick = tokio::time::interval(every);
                loop {
                    tick.tick().await;
                    let Some(pool) = weak.upgrade() else { return };
                    pool.expire();
                }
            });
        }
        let origin = Uri::builder()
            .scheme(parts.scheme.expect("validated: base_url has a scheme"))
            .authority(authority.clone())
            .path_and_query("/")
            .build()
            .expect("a scheme and an authority make a URI");
        let base_path: String =
            parts.path_and_query.map(|p| p.path().trim_end_matches('/').to_string()).unwrap_or_default();
        let routes = LlmRoute::ALL
            .into_iter()
            .filter_map(|r| {
                let uri = if base_path.is_empty() {
                    Uri::from_static(r.path())
                } else {
                    Uri::try_from(format!("{base_path}{}", r.path())).ok()?
                };
                Some((r.path(), uri))
            })
            .collect();
        Upstream {
            connector,
            origin,
            pool,
            host: HeaderValue::from_str(authority.as_str()).expect("an authority is a valid header value"),
            base_path,
            routes,
            credential,
            first_byte_timeout: config.first_byte_timeout,
            idle_timeout: config.idle_timeout,
            connections_opened,
        }
    }

    /// The upstream request target for a client's path and query (origin-form; the
    /// authority goes in `Host`).
    pub fn uri_for(&self, path_and_query: &str) -> Uri {
        if let Some((_, uri)) = self.routes.iter().find(|(path, _)| *path == path_and_query) {
            return uri.clone();
        }
        if self.base_path.is_empty() {
            return Uri::try_from(path_and_query).unwrap_or_else(|_| Uri::from_static("/"));
        }
        Uri::try_from(format!("{}{}", self.base_path, path_and_query)).unwrap_or_else(|_| Uri::from_static("/"))
    }

    /// Rewrites a client's headers for the upstream: hop-by-hop headers and client
    /// credentials removed, the upstream credential set. `identity` asks for an
    /// uncompressed response (warden reads LLM responses to count usage).
    pub fn rewrite_request_headers(&self, headers: &mut HeaderMap, identity: bool) {
        // The client's credentials never reach the upstream: `Authorization` and
        // `x-api-key` are removed, and warden's own key is set in the header its provider
        // reads; `Host` is replaced below.
        let replaced = self.credential.as_ref().map(|(name, _)| name.as_str());
        strip_hop_by_hop(headers, |name| match name {
            "authorization" | "x-api-key" => replaced != Some(name),
            "proxy-authorization" => true,
            "accept-encoding" => identity,
            _ => is_hop_by_hop(name),
        });
        if let Some((name, cred)) = &self.credential {
            headers.insert(name.clone(), cred.clone());
        }
        headers.insert(header::HOST, self.host.clone());
    }

    /// Sends a request and waits for the response headers, within the first-byte timeout.
    pub async fn send(&self, req: Request<Body>) -> Result<Response<UpstreamBody>, (ProxyError, UpstreamFailure)> {
        match tokio::time::timeout(self.first_byte_timeout, self.exchange(req)).await {
            Ok(result) => result,
            Err(_) => Err((ProxyError::UpstreamTimeout(self.first_byte_timeout.as_millis()), UpstreamFailure::Timeout)),
        }
    }

    async fn exchange(&self, mut req: Request<Body>) -> Result<Response<UpstreamBody>, (ProxyError, UpstreamFailure)> {
        let slot = self.pool.slot();
        loop {
            let (link, reused) = match self.pool.checkout(slot) {
                Some(link) => (link, true),
                None => (self.connect().await?, false),
            };
            let Link { mut sender, conn } = link;
            let mut conn = Some(conn);
            let mut response = std::pin::pin!(sender.try_send_request(req));
            let result = std::future::poll_fn(|cx| {
                drive(&mut conn, cx);
                response.as_mut().poll(cx)
            })
            .await;
            match result {
                Ok(resp) => {
                    return Ok(resp.map(|body| UpstreamBody {
                        body,
                        conn,
                        sender: Some(sender),
                        pool: self.pool.clone(),
                        slot,
                        held: None,
                        ended: false,
                    }));
                }
                Err(mut e) => match e.take_message() {
                    // A pooled connection the upstream had closed before the request
                    // was written: nothing reached the upstream, so try another.
                    Some(again) if reused => req = again,
                    _ => return Err(failure(UpstreamFailure::Protocol, &e.into_error())),
                },
            }
        }
    }

    async fn connect(&self) -> Result<Link, (ProxyError, UpstreamFailure)> {
        let mut connector = self.connector.clone();
        let io = connector.call(self.origin.clone()).await.map_err(|e| {
            let e: &(dyn std::error::Error + 'static) = &*e;
            failure(UpstreamFailure::Connect, e)
        })?;
        let (sender, conn) = hyper::client::conn::http1::Builder::new()
            .handshake(io)
            .await
            .map_err(|e| failure(UpstreamFailure::Connect, &e))?;
        self.connections_opened.inc();
        Ok(Link { sender, conn: Box::pin(conn) })
    }
}

/// An upstream failure as the error the client gets: the error chain (e.g. "tcp connect
/// error: Connection refused") carries no secrets.
fn failure(kind: UpstreamFailure, e: &(dyn std::error::Error + 'static)) -> (ProxyError, UpstreamFailure) {
    // A streamed request body cut off by its own guard (size or deadline) is the client's
    // doing, not the upstream's.
    if let Some(cut) = crate::body::BodyCut::find(e) {
        return (ProxyError::from(cut), kind);
    }
    let mut msg = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        msg = format!("{msg}: {s}");
        src = s.source();
    }
    (ProxyError::UpstreamUnavailable(msg), kind)
}

/// Polls a connection, forgetting it once it has finished (closed or failed; the request
/// or body using it then sees the error).
fn drive(conn: &mut Option<Conn>, cx: &mut Context<'_>) {
    if let Some(c) = conn {
        if let Poll::Ready(result) = c.as_mut().poll(cx) {
            if let Err(e) = result {
                tracing::debug!(error = %e, "upstream connection failed");
            }
            *conn = None;
        }
    }
}

/// Most bytes handed over as one frame.
const MAX_FRAME: usize = 256 * 1024;

/// An upstream response body. Polling it drives the connection: it reads the socket,
/// and every frame already decoded leaves as one (up to 256 KiB), so events that came
/// in one read go to the client in one write. At the end the connection goes back to the
/// pool; dropping the body early (the client hung up) closes it, which cancels the
/// upstream request.
pub struct UpstreamBody {
    body: Incoming,
    /// The connection while it is open, and its handle for the pool.
    conn: Option<Conn>,
    sender: Option<SendRequest<Body>>,
    pool: Arc<Pool>,
    slot: usize,
    /// A trailers frame or an error that ended the previous frame.
    held: Option<Result<Frame<Bytes>, hyper::Error>>,
    ended: bool,
}

impl UpstreamBody {
    /// Returns the connection to the pool once the response is complete, if it can carry
    /// another request.
    fn release(&mut self, cx: &mut Context<'_>) {
        // One more turn lets the connection go back to idle.
        drive(&mut self.conn, cx);
        if let (Some(conn), Some(sender)) = (self.conn.take(), self.sender.take()) {
            if !sender.is_closed() {
                self.pool.put(self.slot, Link { sender, conn });
            }
        }
    }

    /// Hands over the data gathered so far, keeping `next` for the following poll.
    fn hand_over(
        &mut self,
        gathered: Gathered,
        next: Result<Frame<Bytes>, hyper::Error>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match gathered.frame() {
            Some(data) => {
                self.held = Some(next);
                Poll::Ready(Some(data))
            }
            None => Poll::Ready(Some(next)),
        }
    }

    /// Drives the connection and takes the next decoded frame.
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        drive(&mut self.conn, cx);
        Pin::new(&mut self.body).poll_frame(cx)
    }
}

impl http_body::Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        if let Some(held) = this.held.take() {
            return Poll::Ready(Some(held));
        }
        if this.ended {
            return Poll::Ready(None);
        }
        let mut gathered = Gathered::default();
        loop {
            let Poll::Ready(next) = this.poll_next(cx) else {
                return gathered.frame().map_or(Poll::Pending, |f| Poll::Ready(Some(f)));
            };
            match next {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        gathered.push(data);
                        if gathered.len() >= MAX_FRAME {
                            return Poll::Ready(gathered.frame());
                        }
                    }
                    Err(trailers) => return this.hand_over(gathered, Ok(trailers)),
                },
                Some(Err(e)) => return this.hand_over(gathered, Err(e)),
                None => {
                    this.ended = true;
                    this.release(cx);
                    return Poll::Ready(gathered.frame());
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.held.is_none() && (self.ended || self.body.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Data frames gathered for one hand-over: a lone frame is passed on as it is, later
/// ones are joined into one buffer.
#[derive(Default)]
struct Gathered {
    first: Option<Bytes>,
    joined: BytesMut,
}

impl Gathered {
    fn push(&mut self, data: Bytes) {
        match self.first.take() {
            None if self.joined.is_empty() => self.first = Some(data),
            Some(first) => {
                self.joined.reserve(first.len() + data.len());
                self.joined.extend_from_slice(&first);
                self.joined.extend_from_slice(&data);
            }
            None => self.joined.extend_from_slice(&data),
        }
    }

    fn len(&self) -> usize {
        self.first.as_ref().map_or(0, Bytes::len) + self.joined.len()
    }

    fn frame(self) -> Option<Result<Frame<Bytes>, hyper::Error>> {
        match self.first {
            Some(first) => Some(Ok(Frame::data(first))),
            None if !self.joined.is_empty() => Some(Ok(Frame::data(self.joined.freeze()))),
            None => None,
        }
    }
}

/// Removes hop-by-hop headers from an upstream response before it goes to the client.
pub fn rewrite_response_headers(headers: &mut HeaderMap) {
    strip_hop_by_hop(headers, is_hop_by_hop);
}

// ---------------------------------------------------------------------------------------
// The `[upstream]` section.
// ---------------------------------------------------------------------------------------

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct RawUpstream {
    /// The LLM API; request paths are appended to it as-is.
    pub base_url: Option<String>,
    /// Environment variable holding the upstream API key (never the key itself).
    pub api_key_env: Option<String>,
    /// TCP (and TLS) connect timeout.
    pub connect_timeout_ms: Option<u64>,
    /// Time allowed from sending the request to receiving the response headers.
    pub first_byte_timeout_ms: Option<u64>,
    /// Longest silence allowed between two chunks of a response body.
    pub idle_timeout_ms: Option<u64>,
    /// Idle pooled connections kept per upstream host.
    pub pool_max_idle_per_host: Option<usize>,
    /// How long an idle pooled connection is kept.
    pub pool_idle_timeout_ms: Option<u64>,
    /// Provider paths forwarded as they are, besides the routes warden understands (the
    /// LLM routes, `/v1/models`, `/v1/files`, `/v1/batches`): exact paths, or prefixes
    /// ending in `/*`. Anything else gets 404.
    pub passthrough: Option<Vec<String>>,
    /// `[upstream.anthropic]`: where the Anthropic routes (`/v1/messages…`) go, when not
    /// to `base_url`.
    pub anthropic: Option<RawDialectUpstream>,
}

/// The provider of one dialect's routes.
#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct RawDialectUpstream {
    pub base_url: Option<String>,
    /// Environment variable holding this provider's key.
    pub api_key_env: Option<String>,
    /// The header the key goes in: `x-api-key` (Anthropic's, the default) or `bearer`
    /// (`Authorization: Bearer`, for gateways that speak Messages that way).
    pub auth: Option<String>,
}

/// Where the upstream key goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyHeader {
    Bearer,
    XApiKey,
}

/// `[upstream.anthropic]`, validated.
#[derive(Clone)]
pub struct DialectUpstream {
    pub base_url: http::Uri,
    pub api_key: Option<String>,
    pub api_key_env: Option<String>,
    pub key_header: KeyHeader,
}

#[derive(Clone)]
pub struct UpstreamConfig {
    pub base_url: http::Uri,
    /// The upstream credential, read from the environment. Never logged (see Debug).
    pub api_key: Option<String>,
    pub api_key_env: Option<String>,
    pub connect_timeout: Duration,
    pub first_byte_timeout: Duration,
    pub idle_timeout: Duration,
    pub pool_max_idle_per_host: usize,
    pub pool_idle_timeout: Duration,
    pub passthrough: crate::routes::Passthrough,
    /// The Anthropic routes' own provider, if any.
    pub anthropic: Option<DialectUpstream>,
}

impl std::fmt::Debug for UpstreamConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamConfig")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("api_key_env", &self.api_key_env)
            .field("connect_timeout", &self.connect_timeout)
            .field("first_byte_timeout", &self.first_byte_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("anthropic", &self.anthropic.as_ref().map(|a| (&a.base_url, &a.api_key_env, a.key_header)))
            .finish()
    }
}

impl UpstreamConfig {
    /// Validates `[upstream]` (the API key from the environment variable it names).
    pub fn from_raw(u: RawUpstream, env: EnvLookup<'_>, problems: &mut Vec<String>) -> UpstreamConfig {
        let main_url = base_url("upstream", u.base_url, "https://api.openai.com", problems);
        let api_key = u.api_key_env.as_deref().and_then(|var| env_secret("upstream.api_key_env", var, env, problems));
        let anthropic = u.anthropic.map(|a| {
            let key_header = match a.auth.as_deref() {
                None | Some("x-api-key") => KeyHeader::XApiKey,
                Some("bearer") => KeyHeader::Bearer,
                Some(other) => {
                    problems.push(format!("upstream.anthropic.auth: `{other}` must be `x-api-key` or `bearer`"));
                    KeyHeader::XApiKey
                }
            };
            DialectUpstream {
                base_url: base_url("upstream.anthropic", a.base_url, "https://api.anthropic.com", problems),
                api_key: a
                    .api_key_env
                    .as_deref()
                    .and_then(|var| env_secret("upstream.anthropic.api_key_env", var, env, problems)),
                api_key_env: a.api_key_env,
                key_header,
            }
        });
        UpstreamConfig {
            base_url: main_url,
            api_key,
            api_key_env: u.api_key_env,
            connect_timeout: millis("upstream.connect_timeout_ms", u.connect_timeout_ms, 5_000, problems),
            first_byte_timeout: millis("upstream.first_byte_timeout_ms", u.first_byte_timeout_ms, 120_000, problems),
            idle_timeout: millis("upstream.idle_timeout_ms", u.idle_timeout_ms, 60_000, problems),
            pool_max_idle_per_host: u.pool_max_idle_per_host.unwrap_or(512),
            pool_idle_timeout: millis("upstream.pool_idle_timeout_ms", u.pool_idle_timeout_ms, 90_000, problems),
            passthrough: crate::routes::Passthrough::parse(&u.passthrough.unwrap_or_default(), problems),
            anthropic,
        }
    }
}

/// A section's `base_url`: an http(s) URL with an authority and no query.
fn base_url(section: &str, text: Option<String>, example: &str, problems: &mut Vec<String>) -> http::Uri {
    match text {
        None => {
            problems.push(format!("{section}.base_url: missing (e.g. \"{example}\")"));
            http::Uri::from_static("http://invalid")
        }
        Some(text) => match text.parse::<http::Uri>() {
            Ok(uri)
                if matches!(uri.scheme_str(), Some("http") | Some("https"))
                    && uri.authority().is_some()
                    && uri.query().is_none() =>
            {
                uri
            }
            _ => {
                problems
                    .push(format!("{section}.base_url: `{text}` must be an http:// or https:// URL without a query"));
                http::Uri::from_static("http://invalid")
            }
        },
    }
}

/// The upstream's metrics: failures by kind and connections opened.
#[derive(Clone, Default)]
pub struct UpstreamMetrics {
    pub errors: prometheus_client::metrics::family::Family<crate::metrics::KindLabel, Counter>,
    pub connections: Counter,
}

impl UpstreamMetrics {
    pub fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register(
            "upstream_errors",
            "Upstream failures by kind (connect, timeout, protocol, idle_timeout)",
            self.errors.clone(),
        );
        registry.register(
            "upstream_connections",
            "Upstream connections opened (requests reuse pooled ones)",
            self.connections.clone(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream(base: &str, key: Option<&str>) -> Upstream {
        let cfg = UpstreamConfig {
            base_url: base.parse().unwrap(),
            api_key: key.map(Into::into),
            api_key_env: None,
            connect_timeout: Duration::from_secs(1),
            first_byte_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(1),
            pool_max_idle_per_host: 1,
            pool_idle_timeout: Duration::from_secs(1),
            passthrough: Default::default(),
            anthropic: None,
        };
        Upstream::new(&cfg, 1, Counter::default())
    }

    #[test]
    fn paths_are_appended_to_the_base_url() {
        let u = upstream("https://api.example.com", None);
        assert_eq!(u.uri_for("/v1/models?x=1").to_string(), "/v1/models?x=1");
        assert_eq!(u.origin.to_string(), "https://api.example.com/");
        let u = upstream("http://127.0.0.1:9000/openai/", None);
        assert_eq!(u.uri_for("/v1/chat/completions").to_string(), "/openai/v1/chat/completions");
        assert_eq!(u.uri_for("/v1/responses?x=1").to_string(), "/openai/v1/responses?x=1");
        assert_eq!(u.uri_for("/v1/embeddings").to_string(), "/openai/v1/embeddings");
        let u = upstream("http://127.0.0.1:9000", None);
        assert_eq!(u.uri_for("/v1/chat/completions").to_string(), "/v1/chat/completions");
        assert_eq!(u.uri_for("/v1/files").to_string(), "/v1/files");
        assert_eq!(u.origin.to_string(), "http://127.0.0.1:9000/");
    }

    #[test]
    fn client_credentials_and_hop_by_hop_headers_are_replaced() {
        let u = upstream("http://127.0.0.1:9000", Some("sk-up"));
        let mut h = HeaderMap::new();
        h.insert("authorization", "Bearer wk-client".parse().unwrap());
        h.insert("x-api-key", "wk-client".parse().unwrap());
        h.insert("connection", "keep-alive, x-secret-hop".parse().unwrap());
        h.insert("x-secret-hop", "1".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("accept-encoding", "gzip".parse().unwrap());
        h.insert("x-custom", "kept".parse().unwrap());
        h.insert("host", "warden.example.com".parse().unwrap());
        u.rewrite_request_headers(&mut h, true);
        assert_eq!(h.get("authorization").unwrap(), "Bearer sk-up");
        assert_eq!(h.get("host").unwrap(), "127.0.0.1:9000", "Host names the upstream, not warden");
        assert!(h.get("authorization").unwrap().is_sensitive());
        for gone in ["x-api-key", "connection", "x-secret-hop", "keep-alive", "accept-encoding"] {
            assert!(h.get(gone).is_none(), "{gone} should be removed");
        }
        assert_eq!(h.get("x-custom").unwrap(), "kept");
    }

    #[test]
    fn an_anthropic_upstream_gets_its_key_as_x_api_key_and_no_client_credential() {
        let mut problems = Vec::new();
        let raw: RawUpstream = toml::from_str(
            "base_url = \"http://127.0.0.1:9000\"\n[anthropic]\nbase_url = \"http://127.0.0.1:9001/anthropic\"\napi_key_env = \"ANT_KEY\"\n",
        )
        .unwrap();
        let env = |name: &str| (name == "ANT_KEY").then(|| "sk-ant-up".to_string());
        let cfg = UpstreamConfig::from_raw(raw, &env, &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        let u = Upstream::anthropic(&cfg, 1, Counter::default()).expect("configured");
        let mut h = HeaderMap::new();
        h.insert("authorization", "Bearer wk-client".parse().unwrap());
        h.insert("x-api-key", "wk-client".parse().unwrap());
        h.insert("anthropic-version", "2023-06-01".parse().unwrap());
        h.insert("anthropic-beta", "interleaved-thinking-2025-05-14".parse().unwrap());
        u.rewrite_request_headers(&mut h, true);
        assert_eq!(h.get("x-api-key").unwrap(), "sk-ant-up");
        assert!(h.get("x-api-key").unwrap().is_sensitive());
        assert!(h.get("authorization").is_none(), "the client's bearer key is not forwarded");
        assert_eq!(h.get("host").unwrap(), "127.0.0.1:9001");
        assert_eq!(h.get("anthropic-version").unwrap(), "2023-06-01");
        assert_eq!(h.get("anthropic-beta").unwrap(), "interleaved-thinking-2025-05-14");
        assert_eq!(u.uri_for("/v1/messages").to_string(), "/anthropic/v1/messages");
        assert!(
            Upstream::anthropic(&UpstreamConfig { anthropic: None, ..cfg.clone() }, 1, Counter::default()).is_none()
        );
        let raw: RawUpstream = toml::from_str("base_url = \"http://x\"\n[anthropic]\nauth = \"basic\"\n").unwrap();
        let mut problems = Vec::new();
        UpstreamConfig::from_raw(raw, &env, &mut problems);
        assert_eq!(problems.len(), 2, "{problems:?}");
    }

    #[test]
    fn without_an_upstream_credential_the_clients_is_still_removed() {
        let u = upstream("http://127.0.0.1:9000", None);
        let mut h = HeaderMap::new();
        h.append("authorization", "Bearer wk-client".parse().unwrap());
        h.append("authorization", "Bearer wk-other".parse().unwrap());
        h.insert("proxy-authorization", "Basic eA==".parse().unwrap());
        h.insert("accept-encoding", "gzip".parse().unwrap());
        u.rewrite_request_headers(&mut h, false);
        assert!(h.get("authorization").is_none());
        assert!(h.get("proxy-authorization").is_none());
        assert_eq!(h.get("accept-encoding").unwrap(), "gzip", "kept unless identity is asked for");
        assert_eq!(h.get("host").unwrap(), "127.0.0.1:9000");
    }

    #[test]
    fn responses_lose_only_their_hop_by_hop_headers() {
        let mut h = HeaderMap::new();
        h.insert("transfer-encoding", "chunked".parse().unwrap());
        h.insert("connection", "keep-alive, x-hop".parse().unwrap());
        h.insert("x-hop", "1".parse().unwrap());
        h.insert("proxy-connection", "keep-alive".parse().unwrap());
        h.insert("content-type", "application/json".parse().unwrap());
        h.insert("x-ratelimit-limit-requests", "60".parse().unwrap());
        rewrite_response_headers(&mut h);
        let left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left.len(), 2, "{left:?}");
        assert_eq!(h.get("content-type").unwrap(), "application/json");
        assert_eq!(h.get("x-ratelimit-limit-requests").unwrap(), "60");
    }
}
