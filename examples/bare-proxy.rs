//! The benchmark's baseline for the HTTP stack itself: a plain hyper 1 reverse proxy with
//! nothing on top, built the way warden serves (one single-threaded tokio runtime per
//! core, each with its own upstream pool from hyper-util's client, the same allocator).
//! Set beside nginx and warden by `benches/run.py`, it shows how much of the gap to nginx
//! is the stack (hyper, tokio) and how much is warden's own work.
//!
//! `cargo run --release --example bare-proxy -- 127.0.0.1:8080 http://127.0.0.1:9000`

use std::convert::Infallible;

use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};

#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(upstream)) = (args.next(), args.next()) else {
        eprintln!("usage: bare-proxy <listen addr> <upstream base url>");
        std::process::exit(2);
    };
    let listener = std::net::TcpListener::bind(&listen).expect("binding the listen address");
    listener.set_nonblocking(true).expect("non-blocking listener");
    let upstream = upstream.trim_end_matches('/').to_string();
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let threads: Vec<_> = (0..workers)
        .map(|_| {
            let (listener, upstream) = (listener.try_clone().expect("cloning the listener"), upstream.clone());
            std::thread::spawn(move || serve(listener, upstream))
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
}

fn serve(listener: std::net::TcpListener, upstream: String) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener).expect("registering the listener");
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client: Client<HttpConnector, Incoming> = Client::builder(TokioExecutor::new()).build(connector);
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let _ = stream.set_nodelay(true);
            let (client, upstream) = (client.clone(), upstream.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let (client, upstream) = (client.clone(), upstream.clone());
                    async move {
                        let (mut parts, body) = req.into_parts();
                        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
                        parts.uri = format!("{upstream}{path}").parse().expect("upstream URL and path");
                        parts.headers.remove(hyper::header::HOST);
                        let response = match client.request(Request::from_parts(parts, body)).await {
                            Ok(r) => r.map(http_body_util::Either::Left),
                            Err(_) => Response::builder()
                                .status(502)
                                .body(http_body_util::Either::Right(http_body_util::Empty::new()))
                                .expect("static response"),
                        };
                        Ok::<_, Infallible>(response)
                    }
                });
                let _ =
                    hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
}
