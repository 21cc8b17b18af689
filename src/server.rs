//! Listeners and graceful shutdown.
//!
//! [`run`] serves the proxy and admin listeners until `shutdown` resolves, then stops
//! accepting, lets in-flight requests (streams included) finish up to
//! `server.shutdown_grace`, and returns. Tests bind `127.0.0.1:0` and call it directly.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
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
        .header_read_timeout(app.config.server.header_read_timeout)
        .keep_alive(true);
    builder.http2().timer(TokioTimer::new());
    let graceful = GracefulShutdown::new();
    let Listeners { proxy, admin } = listeners;
    tokio::pin!(shutdown);
    loop {
        let (side, accepted) = tokio::select! {
            r = proxy.accept() => (Side::Proxy, r),
            r = admin.accept() => (Side::Admin, r),
            () = &mut shutdown => break,
        };
        match accepted {
            Ok((stream, peer)) => serve_connection(&app, &builder, &graceful, side, stream, peer),
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
    let grace = app.config.server.shutdown_grace;
    tracing::info!(
        grace_ms = grace.as_millis() as u64,
        "shutting down: no new connections, draining in-flight requests"
    );
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections drained"),
        () = tokio::time::sleep(grace) => tracing::warn!("shutdown grace period over; closing remaining connections"),
    }
}

fn serve_connection(
    app: &Arc<App>,
    builder: &auto::Builder<TokioExecutor>,
    graceful: &GracefulShutdown,
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
    let conn = graceful.watch(builder.serve_connection(io, service).into_owned());
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, %peer, "connection ended with an error");
        }
    });
}
