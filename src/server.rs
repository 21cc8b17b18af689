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
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::app::App;
pub use crate::net::Listeners;
use crate::net::{Activity, ConnectionCaps, Watched};
use crate::{admin, stack};

/// A connection accepted on the proxy listener, on its way to a worker.
struct Accepted {
    stream: std::net::TcpStream,
    peer: SocketAddr,
    watcher: Watcher,
    /// Its place under `server.max_connections`, given back when it closes.
    place: OwnedSemaphorePermit,
}

/// A proxy worker thread: a current-thread runtime that serves the connections it is sent.
struct Worker {
    tx: tokio::sync::mpsc::UnboundedSender<Accepted>,
    thread: std::thread::JoinHandle<()>,
}

fn start_workers(app: &Arc<App>, builder: &auto::Builder<TokioExecutor>) -> Vec<Worker> {
    (0..app.config().server.workers)
        .map(|index| {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Accepted>();
            let (app, builder) = (app.clone(), builder.clone());
            let thread = std::thread::Builder::new()
                .name(format!("warden-proxy-{index}"))
                .spawn(move || {
                    crate::worker::set_current(index);
                    let runtime =
                        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("worker runtime");
                    runtime.block_on(async move {
                        tokio::spawn(heartbeat());
                        while let Some(Accepted { stream, peer, watcher, place }) = rx.recv().await {
                            match TcpStream::from_std(stream) {
                                Ok(stream) => {
                                    serve_connection(&app, &builder, watcher, Side::Proxy, stream, peer, place)
                                }
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
    let caps = ConnectionCaps::new(&app.config().server, app.config().upstream.pool_max_idle_per_host);
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
        // A connection is accepted only with a place under its listener's cap; without
        // one, new connections wait in the kernel's backlog.
        let (side, accepted, place) = tokio::select! {
            (place, r) = accept_within(&proxy, &caps.proxy) => (Side::Proxy, r, place),
            (place, r) = accept_within(&admin, &caps.admin) => (Side::Admin, r, place),
            () = &mut shutdown => break,
        };
        match accepted {
            Ok((stream, peer)) if matches!(side, Side::Proxy) => {
                // Leave this runtime's reactor; the worker registers it with its own.
                match stream.into_std() {
                    Ok(stream) => {
                        let conn = Accepted { stream, peer, watcher: graceful.watcher(), place };
                        let _ = workers[next % workers.len()].tx.send(conn);
                        next = next.wrapping_add(1);
                    }
                    Err(e) => tracing::warn!(error = %e, "could not hand a connection to a worker"),
                }
            }
            Ok((stream, peer)) => serve_connection(&app, &builder, graceful.watcher(), side, stream, peer, place),
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

/// Waits for a place under `cap`, then for a connection.
async fn accept_within(
    listener: &TcpListener,
    cap: &Arc<Semaphore>,
) -> (OwnedSemaphorePermit, std::io::Result<(TcpStream, SocketAddr)>) {
    let place = cap.clone().acquire_owned().await.expect("the connection cap is never closed");
    (place, listener.accept().await)
}

#[allow(clippy::too_many_arguments)]
fn serve_connection(
    app: &Arc<App>,
    builder: &auto::Builder<TokioExecutor>,
    watcher: Watcher,
    side: Side,
    stream: TcpStream,
    peer: SocketAddr,
    place: OwnedSemaphorePermit,
) {
    // Small SSE events must leave at once, not wait for Nagle.
    let _ = stream.set_nodelay(true);
    let config = app.config();
    let activity = Activity::default();
    let io = TokioIo::new(Watched::new(
        stream,
        activity.clone(),
        config.server.header_read_timeout,
        config.server.idle_timeout,
    ));
    let for_service = app.clone();
    let service = service_fn(move |req| {
        let app = for_service.clone();
        let active = activity.begin();
        async move {
            Ok::<_, Infallible>(match side {
                Side::Proxy => stack::handle(app, req, peer, active).await,
                Side::Admin => {
                    let response = admin::handle(app, req, peer).await;
                    drop(active);
                    response
                }
            })
        }
    });
    let conn = watcher.watch(builder.serve_connection(io, service).into_owned());
    let app = app.clone();
    let open = matches!(side, Side::Proxy).then(|| app.metrics.connections.open.clone());
    if let Some(g) = &open {
        g.inc();
    }
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            // A request hyper refused before warden saw it (headers too large, malformed)
            // still gets its record.
            if let Some(h) = e.downcast_ref::<hyper::Error>() {
                if h.is_parse() && matches!(side, Side::Proxy) {
                    let (status, reason) = if h.is_parse_too_large() {
                        (431, "request header fields too large")
                    } else {
                        (400, "malformed request head")
                    };
                    stack::record_unparsed(&app, peer, status, reason);
                }
            }
            tracing::debug!(error = %e, %peer, "connection ended with an error");
        }
        if let Some(g) = open {
            g.dec();
        }
        drop(place);
    });
}
