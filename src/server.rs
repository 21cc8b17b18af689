//! Listeners, proxy workers and graceful shutdown.
//!
//! [`run`] serves the proxy and admin listeners until `shutdown` resolves, then stops
//! accepting, lets in-flight requests (streams included) finish up to
//! `server.shutdown_grace`, and returns. Tests bind `127.0.0.1:0` and call it directly.
//!
//! Proxy connections are served thread-per-core, the way nginx runs: `server.workers`
//! threads, each a single-threaded event loop with its own upstream connection pool, and
//! accepted connections handed to them in turn. A request, its upstream connection and
//! its streamed response then stay on one thread: no work stealing, no cross-thread
//! wake-ups on the request path (the multi-threaded runtime spent ~15-20% more CPU per
//! proxied request in perf measurements on 2 cores). The admin listener, the audit writer
//! and the detector stay off these threads.

use std::cell::Cell;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::net::{TcpListener, TcpStream};

use crate::app::App;
use crate::{admin, stack};

/// The two bound listeners; binding is separate from serving so callers learn the
/// addresses (port 0 in tests and the demo) before requests flow.
pub struct Listeners {
    pub proxy: TcpListener,
    pub admin: TcpListener,
}

impl Listeners {
    pub async fn bind(proxy: SocketAddr, admin: SocketAddr) -> std::io::Result<Listeners> {
        Ok(Listeners { proxy: TcpListener::bind(proxy).await?, admin: TcpListener::bind(admin).await? })
    }
    pub fn proxy_addr(&self) -> SocketAddr {
        self.proxy.local_addr().expect("bound listener has an address")
    }
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin.local_addr().expect("bound listener has an address")
    }
}

thread_local! {
    static WORKER: Cell<Option<usize>> = const { Cell::new(None) };
}

/// The proxy worker running on this thread (0 on any other thread).
pub fn worker_index() -> usize {
    current_worker().unwrap_or(0)
}

/// The proxy worker running on this thread, if this thread is one.
pub fn current_worker() -> Option<usize> {
    WORKER.with(Cell::get)
}

/// A proxy worker thread: a current-thread runtime that serves the connections it is sent.
struct Worker {
    tx: tokio::sync::mpsc::UnboundedSender<(std::net::TcpStream, SocketAddr, Watcher)>,
    thread: std::thread::JoinHandle<()>,
}

fn start_workers(app: &Arc<App>, builder: &auto::Builder<TokioExecutor>) -> Vec<Worker> {
    (0..app.config().server.workers)
        .map(|index| {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(std::net::TcpStream, SocketAddr, Watcher)>();
            let (app, builder) = (app.clone(), builder.clone());
            let thread = std::thread::Builder::new()
                .name(format!("warden-proxy-{index}"))
                .spawn(move || {
                    WORKER.with(|w| w.set(Some(index)));
                    let runtime =
                        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("worker runtime");
                    runtime.block_on(async move {
                        tokio::spawn(heartbeat());
                        while let Some((stream, peer, watcher)) = rx.recv().await {
                            match TcpStream::from_std(stream) {
                                Ok(stream) => serve_connection(&app, &builder, watcher, Side::Proxy, stream, peer),
                                Err(e) => tracing::warn!(error = %e, "could not register a connection"),
                            }
                        }
                    });
                    // Anything still open past the grace period is dropped with the runtime.
                })
                .expect("spawning a proxy worker thread");
            Worker { tx, thread }
        })
        .collect()
}

/// A timer always due within [`HEARTBEAT`], on every worker.
///
/// Registering a timer that is due before every other one makes tokio wake its I/O
/// driver (an eventfd write, then an `epoll_wait` that returns at once), even when the
/// registering thread is the driver's own and is not parked (tokio-rs/tokio#5207). Each
/// request registers its first-byte timeout, and a worker that had parked with no timer
/// pending paid that wake for the next one: about one request in five at saturation
/// (perf trace). With this timer pending, the per-request timeouts (10 s and longer by
/// default) are never the earliest; one configured shorter than [`HEARTBEAT`] pays the
/// wake as before and is otherwise unaffected.
async fn heartbeat() {
    let mut tick = tokio::time::interval(HEARTBEAT);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
    }
}

const HEARTBEAT: Duration = Duration::from_secs(1);

#[derive(Clone, Copy)]
enum Side {
    Proxy,
    Admin,
}

/// Serves both listeners until `shutdown` resolves, then drains.
pub async fn run(app: Arc<App>, listeners: Listeners, shutdown: impl Future<Output = ()>) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(app.config().server.header_read_timeout)
        .keep_alive(true);
    builder.http2().timer(TokioTimer::new());
    let graceful = GracefulShutdown::new();
    let workers = start_workers(&app, &builder);
    let mut next = 0usize;
    let Listeners { proxy, admin } = listeners;
    tokio::pin!(shutdown);
    loop {
        let (side, accepted) = tokio::select! {
            r = proxy.accept() => (Side::Proxy, r),
            r = admin.accept() => (Side::Admin, r),
            () = &mut shutdown => break,
        };
        match accepted {
            Ok((stream, peer)) if matches!(side, Side::Proxy) => {
                // Leave this runtime's reactor; the worker registers it with its own.
                match stream.into_std() {
                    Ok(stream) => {
                        let _ = workers[next % workers.len()].tx.send((stream, peer, graceful.watcher()));
                        next = next.wrapping_add(1);
                    }
                    Err(e) => tracing::warn!(error = %e, "could not hand a connection to a worker"),
                }
            }
            Ok((stream, peer)) => serve_connection(&app, &builder, graceful.watcher(), side, stream, peer),
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    drop(proxy);
    drop(admin);
    app.shutting_down.store(true, Ordering::Release);
    let grace = app.config().server.shutdown_grace;
    tracing::info!(
        grace_ms = grace.as_millis() as u64,
        "shutting down: no new connections, draining in-flight requests"
    );
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections drained"),
        () = tokio::time::sleep(grace) => tracing::warn!("shutdown grace period over; closing remaining connections"),
    }
    for w in workers {
        drop(w.tx);
        let _ = tokio::task::spawn_blocking(move || w.thread.join()).await;
    }
}

fn serve_connection(
    app: &Arc<App>,
    builder: &auto::Builder<TokioExecutor>,
    watcher: Watcher,
    side: Side,
    stream: TcpStream,
    peer: SocketAddr,
) {
    // Small SSE events must leave at once, not wait for Nagle.
    let _ = stream.set_nodelay(true);
    let io = TokioIo::new(stream);
    let app = app.clone();
    let service = service_fn(move |req| {
        let app = app.clone();
        async move {
            Ok::<_, Infallible>(match side {
                Side::Proxy => stack::handle(app, req, peer).await,
                Side::Admin => admin::handle(app, req).await,
            })
        }
    });
    let conn = watcher.watch(builder.serve_connection(io, service).into_owned());
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, %peer, "connection ended with an error");
        }
    });
}
