//! The transport under the proxy and admin listeners: binding them, how many connections
//! each keeps open (below the file-descriptor limit), connections closed when idle or
//! silent from the start, the requests in flight on each, and the `[server]` settings.
//! [`crate::server`] serves requests over these.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::settings::{addr, millis, positive};

/// The two bound listeners; binding is separate from serving so callers learn the
/// addresses (port 0 in tests and the demo) before requests flow.
pub struct Listeners {
    pub proxy: TcpListener,
    pub admin: TcpListener,
}

impl Listeners {
    /// Binds both; an error names the listener and its address.
    pub async fn bind(proxy: SocketAddr, admin: SocketAddr) -> std::io::Result<Listeners> {
        let named = |what: &str, addr: SocketAddr| {
            let what = what.to_string();
            move |e: std::io::Error| std::io::Error::new(e.kind(), format!("{what} {addr}: {e}"))
        };
        Ok(Listeners {
            proxy: TcpListener::bind(proxy).await.map_err(named("proxy listener (server.listen)", proxy))?,
            admin: TcpListener::bind(admin).await.map_err(named("admin listener (server.admin_listen)", admin))?,
        })
    }
    pub fn proxy_addr(&self) -> SocketAddr {
        self.proxy.local_addr().expect("bound listener has an address")
    }
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin.local_addr().expect("bound listener has an address")
    }
}

/// How many connections each listener keeps open at once.
pub struct ConnectionCaps {
    pub proxy: Arc<Semaphore>,
    pub admin: Arc<Semaphore>,
}

/// The admin listener's cap: reviewers, probes and scrapers, a few at a time.
const ADMIN_CONNECTIONS: usize = 256;

impl ConnectionCaps {
    /// `server.max_connections`, lowered if the file-descriptor limit (raised to its hard
    /// limit first) could not hold that many client connections beside an upstream
    /// connection for every request in flight, the idle upstream pool and warden's own
    /// files: past the limit, `accept` fails with EMFILE and nothing is served.
    pub fn new(s: &ServerConfig, upstream_idle_per_host: usize) -> ConnectionCaps {
        let wanted = s.max_connections;
        let proxy = match raise_fd_limit() {
            Some(fds) => {
                let upstream = s.max_in_flight + upstream_idle_per_host * s.workers;
                let room = fds.saturating_sub(RESERVED_FDS + ADMIN_CONNECTIONS as u64 + upstream as u64) as usize;
                if room < wanted {
                    tracing::warn!(
                        max_connections = wanted,
                        open_files_limit = fds,
                        lowered_to = room.max(MIN_CONNECTIONS),
                        "server.max_connections does not fit the open-files limit beside upstream connections; lowered (raise `ulimit -n`, or lower server.max_in_flight)"
                    );
                }
                wanted.min(room.max(MIN_CONNECTIONS))
            }
            None => wanted,
        };
        ConnectionCaps { proxy: Arc::new(Semaphore::new(proxy)), admin: Arc::new(Semaphore::new(ADMIN_CONNECTIONS)) }
    }
}

/// File descriptors kept for warden's own files: audit log and index, database, Redis,
/// listeners, the runtime.
const RESERVED_FDS: u64 = 256;
const MIN_CONNECTIONS: usize = 64;

/// Raises the soft open-files limit to the hard one; returns the limit in force.
fn raise_fd_limit() -> Option<u64> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return None;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
    }
    Some(lim.rlim_cur)
}

/// Requests in flight on one connection, so that its idle watch leaves it open while it
/// has any (a stream waiting on a slow model sends nothing for a long time).
#[derive(Clone, Default)]
pub struct Activity(Arc<AtomicUsize>);

impl Activity {
    pub fn begin(&self) -> ActiveRequest {
        self.0.fetch_add(1, Ordering::Relaxed);
        ActiveRequest(self.0.clone())
    }
    fn idle(&self) -> bool {
        self.0.load(Ordering::Relaxed) == 0
    }
}

/// One request in flight on a connection, until dropped.
pub struct ActiveRequest(Arc<AtomicUsize>);

impl Drop for ActiveRequest {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

pin_project_lite::pin_project! {
    /// A client connection closed when it sends nothing for too long while no request is
    /// in flight on it: `first` for a new connection that has not sent a byte, `idle`
    /// after that (HTTP/1.1 between requests is also bounded by hyper's header-read
    /// timeout). An HTTP/2 connection that sent its preface and nothing else is idle too.
    pub struct Watched<S> {
        #[pin]
        inner: S,
        activity: Activity,
        first: Duration,
        idle: Duration,
        seen: bool,
        // Moved on every transfer (a clock read); the timer itself is re-armed only when
        // it fires early, not per read.
        last: tokio::time::Instant,
        timer: Pin<Box<tokio::time::Sleep>>,
    }
}

impl<S> Watched<S> {
    pub fn new(inner: S, activity: Activity, first: Duration, idle: Duration) -> Watched<S> {
        let now = tokio::time::Instant::now();
        Watched {
            inner,
            activity,
            first,
            idle,
            seen: false,
            last: now,
            timer: Box::pin(tokio::time::sleep_until(now + first)),
        }
    }
}

impl<S: tokio::io::AsyncRead> tokio::io::AsyncRead for Watched<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        match this.inner.poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    *this.last = tokio::time::Instant::now();
                    *this.seen = true;
                }
                Poll::Ready(r)
            }
            Poll::Pending => loop {
                if this.timer.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                let now = tokio::time::Instant::now();
                let allowed = if *this.seen { *this.idle } else { *this.first };
                let due = *this.last + allowed;
                if due > now {
                    this.timer.as_mut().reset(due);
                } else if !this.activity.idle() {
                    // Quiet, but a request is in flight: look again later.
                    *this.last = now;
                    this.timer.as_mut().reset(now + *this.idle);
                } else {
                    return Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "idle connection closed",
                    )));
                }
            },
        }
    }
}

impl<S: tokio::io::AsyncWrite> tokio::io::AsyncWrite for Watched<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let this = self.project();
        let r = this.inner.poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            *this.last = tokio::time::Instant::now();
        }
        r
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.project();
        let r = this.inner.poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            *this.last = tokio::time::Instant::now();
        }
        r
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }
}

// ---------------------------------------------------------------------------------------
// The `[server]` section.
// ---------------------------------------------------------------------------------------

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct RawServer {
    /// Address of the proxy listener (clients talk to this).
    pub listen: Option<String>,
    /// Address of the admin listener: admin API, /metrics, /healthz, /readyz.
    pub admin_listen: Option<String>,
    /// Largest request body accepted, in bytes; larger bodies get 413.
    pub max_body_bytes: Option<u64>,
    /// Largest upload to `/v1/files` (a batch file may hold 50,000 requests), bytes.
    pub max_upload_bytes: Option<u64>,
    /// How long a client may take to send its request headers (slowloris guard).
    pub header_read_timeout_ms: Option<u64>,
    /// On SIGTERM/SIGINT, how long in-flight requests (streams too) may run on.
    pub shutdown_grace_ms: Option<u64>,
    /// Requests handled at once; beyond it warden sheds load with 503.
    pub max_in_flight: Option<usize>,
    /// Proxy worker threads, each an event loop of its own; 0 means one per CPU.
    pub workers: Option<usize>,
    /// Proxies (CIDRs) whose `X-Forwarded-For` is believed when finding the client IP.
    pub trusted_proxies: Option<Vec<String>>,
    /// The whole request body must arrive within this (counted from the request's
    /// arrival), else 408 and the connection closes.
    pub body_read_timeout_ms: Option<u64>,
    /// After its first 5 seconds, a request body must arrive at least this fast on
    /// average (bytes a second), else 408; 0 turns the check off.
    pub body_min_bytes_per_sec: Option<u64>,
    /// A connection with no request in flight that sends nothing for this long is closed
    /// (HTTP/1.1 keep-alive and HTTP/2 alike). A new connection must send its first
    /// request within `header_read_timeout_ms`.
    pub idle_timeout_ms: Option<u64>,
    /// Client connections open at once on the proxy listener; past it new ones wait in
    /// the kernel's backlog. Kept below the file-descriptor limit (raised at start).
    pub max_connections: Option<usize>,
    /// Largest server-sent event of a streamed response; past it the stream ends with an
    /// error event and the request is recorded as `event_too_large`.
    pub max_event_bytes: Option<usize>,
    /// Failed authentications (unknown or missing key, wrong admin token) allowed per
    /// client address per minute; past it (and `auth_failure_burst`) they get 429.
    pub auth_failures_per_minute: Option<u32>,
    /// Failed authentications an address may make at once before the rate applies.
    pub auth_failure_burst: Option<u32>,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub max_body_bytes: u64,
    pub max_upload_bytes: u64,
    pub header_read_timeout: Duration,
    pub shutdown_grace: Duration,
    pub max_in_flight: usize,
    /// Proxy worker threads (resolved: never 0).
    pub workers: usize,
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub body_read_timeout: Duration,
    /// Bytes a second (0: no minimum).
    pub body_min_rate: u64,
    pub idle_timeout: Duration,
    /// As configured; [`crate::server`] lowers it below the file-descriptor limit.
    pub max_connections: usize,
    pub max_event_bytes: usize,
    pub auth_failures_per_minute: u32,
    pub auth_failure_burst: u32,
}

impl ServerConfig {
    /// Validates `[server]`, adding every problem to `problems`.
    pub fn from_raw(s: RawServer, problems: &mut Vec<String>) -> ServerConfig {
        let server = ServerConfig {
            listen: addr("server.listen", s.listen, "127.0.0.1:8080", problems),
            admin_listen: addr("server.admin_listen", s.admin_listen, "127.0.0.1:8081", problems),
            max_body_bytes: match s.max_body_bytes.unwrap_or(4 * 1024 * 1024) {
                0 => {
                    problems.push("server.max_body_bytes: must be greater than 0".into());
                    0
                }
                v => v,
            },
            max_upload_bytes: positive(
                "server.max_upload_bytes",
                s.max_upload_bytes.map(|v| v as usize),
                200 * 1024 * 1024,
                problems,
            ) as u64,
            header_read_timeout: millis("server.header_read_timeout_ms", s.header_read_timeout_ms, 10_000, problems),
            shutdown_grace: millis("server.shutdown_grace_ms", s.shutdown_grace_ms, 30_000, problems),
            max_in_flight: match s.max_in_flight.unwrap_or(4_096) {
                0 => {
                    problems.push("server.max_in_flight: must be greater than 0".into());
                    0
                }
                v => v,
            },
            workers: match s.workers.unwrap_or(0) {
                0 => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
                n => n,
            },
            trusted_proxies: s
                .trusted_proxies
                .unwrap_or_default()
                .iter()
                .filter_map(|c| {
                    c.parse::<ipnet::IpNet>()
                        .or_else(|_| c.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                        .map_err(|_| {
                            problems.push(format!("server.trusted_proxies: `{c}` is not an IP address or CIDR"))
                        })
                        .ok()
                })
                .collect(),
            body_read_timeout: millis("server.body_read_timeout_ms", s.body_read_timeout_ms, 30_000, problems),
            body_min_rate: s.body_min_bytes_per_sec.unwrap_or(1024),
            idle_timeout: millis("server.idle_timeout_ms", s.idle_timeout_ms, 60_000, problems),
            max_connections: positive("server.max_connections", s.max_connections, 10_000, problems),
            max_event_bytes: positive("server.max_event_bytes", s.max_event_bytes, 4 * 1024 * 1024, problems),
            auth_failures_per_minute: positive(
                "server.auth_failures_per_minute",
                s.auth_failures_per_minute.map(|v| v as usize),
                60,
                problems,
            ) as u32,
            auth_failure_burst: positive(
                "server.auth_failure_burst",
                s.auth_failure_burst.map(|v| v as usize),
                20,
                problems,
            ) as u32,
        };
        if server.listen == server.admin_listen && server.listen.port() != 0 {
            problems.push("server.admin_listen: must differ from server.listen".into());
        }

        server
    }
}

/// Client connections open on the proxy listener.
#[derive(Clone, Default)]
pub struct ConnectionMetrics {
    pub open: prometheus_client::metrics::gauge::Gauge,
}

impl ConnectionMetrics {
    pub fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register(
            "open_connections",
            "Client connections open on the proxy listener (at most server.max_connections)",
            self.open.clone(),
        );
    }
}
