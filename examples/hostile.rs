//! Hostile clients against a running warden (the reproductions of the hardening issue at
//! full scale); prints what warden did. The figures in docs/SECURITY.md come from it.
//!
//! ```sh
//! warden-mock-llm --listen 127.0.0.1:9000 &
//! warden serve --config cfg.toml &        # KEY3's account with max_concurrent = 3, KEY's unlimited
//! cargo run --release --example hostile -- PROXY ADMIN KEY KEY3 AUDIT_DIR WARDEN_PID
//! ```
//! The admin token comes from `WARDEN_ADMIN_TOKEN`.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn rss_kib(pid: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn audit_lines(dir: &str) -> usize {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.path().extension().is_some_and(|x| x == "jsonl"))
                .map(|e| std::fs::read(e.path()).map(|b| b.iter().filter(|c| **c == b'\n').count()).unwrap_or(0))
                .sum()
        })
        .unwrap_or(0)
}

async fn metric(admin: &str, name: &str) -> f64 {
    let mut s = TcpStream::connect(admin).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n").await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok()).unwrap_or(-1.0)
}

/// Status of one request on a fresh connection (0 when none came within `wait`).
async fn status_of(addr: &str, request: String, wait: Duration) -> u16 {
    let attempt = async {
        let mut s = TcpStream::connect(addr).await.ok()?;
        s.write_all(request.as_bytes()).await.ok()?;
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf).await.ok()?;
        std::str::from_utf8(&buf[..n]).ok()?.split(' ').nth(1)?.parse().ok()
    };
    tokio::time::timeout(wait, attempt).await.ok().flatten().unwrap_or(0)
}

fn chat(key: &str, extra: &str) -> String {
    let body = r#"{"model":"mock-small","messages":[{"role":"user","content":"hi"}]}"#;
    format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: w\r\nauthorization: Bearer {key}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{extra}\r\n{body}",
        body.len()
    )
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [proxy, admin, key, key3, audit, pid] =
        <[String; 6]>::try_from(args).expect("PROXY ADMIN KEY KEY3 AUDIT_DIR WARDEN_PID");
    let token = std::env::var("WARDEN_ADMIN_TOKEN").expect("WARDEN_ADMIN_TOKEN");

    // 1. 10,000 h2 streams (50 connections of 200, the server's stream limit) reset 100 ms
    //    after they were sent, the upstream taking 1 s.
    let before = audit_lines(&audit);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let (proxy, key) = (proxy.clone(), key.clone());
        tasks.push(tokio::spawn(async move {
            let tcp = TcpStream::connect(&proxy).await.unwrap();
            let (sender, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp)).await.unwrap();
            tokio::spawn(conn);
            let mut streams = Vec::new();
            for _ in 0..200 {
                let mut sender = sender.clone();
                let (proxy, key) = (proxy.clone(), key.clone());
                streams.push(tokio::spawn(async move {
                    sender.ready().await.unwrap();
                    let req = http::Request::post(format!("http://{proxy}/v1/chat/completions"))
                        .header("authorization", format!("Bearer {key}"))
                        .header("x-mock-latency-ms", "1000")
                        .body(Full::new(Bytes::from_static(br#"{"model":"mock-small","messages":[]}"#)))
                        .unwrap();
                    // Polled for 100 ms (sent), then dropped: RST_STREAM.
                    let _ = tokio::time::timeout(Duration::from_millis(100), sender.send_request(req)).await;
                }));
            }
            for s in streams {
                let _ = s.await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    println!(
        "h2 resets: 10000 streams in {:.1} s; audit records +{}; client aborts counted {}; in flight after 3 s: {}",
        started.elapsed().as_secs_f64(),
        audit_lines(&audit) - before,
        metric(&admin, "warden_client_aborts_total").await,
        metric(&admin, "warden_in_flight_requests").await
    );

    // 2. Three HTTP/1.1 hang-ups on an account with max_concurrent = 3, then a request.
    for _ in 0..3 {
        let mut s = TcpStream::connect(&proxy).await.unwrap();
        s.write_all(chat(&key3, "x-mock-latency-ms: 1000\r\n").as_bytes()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let next = status_of(&proxy, chat(&key3, ""), Duration::from_secs(5)).await;
    println!("after 3 hang-ups at max_concurrent = 3: next request {next}");

    // 3. Bodies that never finish: 20 of them, then another account's request.
    let mut stalled = Vec::new();
    let started = Instant::now();
    for _ in 0..20 {
        let mut s = TcpStream::connect(&proxy).await.unwrap();
        let head = format!("POST /v1/chat/completions HTTP/1.1\r\nhost: w\r\nauthorization: Bearer {key3}\r\ncontent-length: 1000\r\n\r\n{{\"model\":\"m");
        s.write_all(head.as_bytes()).await.unwrap();
        stalled.push(s);
    }
    let other = status_of(&proxy, chat(&key, ""), Duration::from_secs(5)).await;
    println!("while one account stalls 20 bodies, another account's request: {other}");
    let mut tally = std::collections::BTreeMap::<String, usize>::new();
    for mut s in stalled {
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(60), s.read(&mut buf))
            .await
            .ok()
            .and_then(|r| r.ok())
            .unwrap_or(0);
        let status = String::from_utf8_lossy(&buf[..n]).split(' ').nth(1).unwrap_or("none").to_string();
        *tally.entry(status).or_default() += 1;
    }
    println!("20 stalled bodies: {tally:?}, all answered within {:.1} s", started.elapsed().as_secs_f64());

    // 4. 16,500 connections that send nothing.
    let mut idle = Vec::new();
    let started = Instant::now();
    for _ in 0..16_500 {
        match TcpStream::connect(&proxy).await {
            Ok(s) => idle.push(s),
            Err(e) => {
                println!("idle flood: connect failed after {}: {e}", idle.len());
                break;
            }
        }
    }
    let flood = started.elapsed();
    let open = metric(&admin, "warden_open_connections").await;
    let admin_ok = metric(&admin, "warden_in_flight_requests").await >= 0.0;
    let asked = Instant::now();
    let fresh = status_of(&proxy, chat(&key, ""), Duration::from_secs(30)).await;
    println!(
        "idle flood: {} connections in {:.1} s; warden holds {open}; admin answers: {admin_ok}; a fresh request: {fresh} after {:.1} s",
        idle.len(),
        flood.as_secs_f64(),
        asked.elapsed().as_secs_f64()
    );
    drop(idle);

    // 5. 3,000 wrong keys and 1,000 wrong admin tokens from one address.
    let mut proxy_tally = std::collections::BTreeMap::<u16, usize>::new();
    let started = Instant::now();
    let client: hyper_util::client::legacy::Client<_, Full<Bytes>> =
        hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http();
    for i in 0..3000 {
        let req = http::Request::post(format!("http://{proxy}/v1/chat/completions"))
            .header("authorization", format!("Bearer wk-guess-{i}"))
            .body(Full::new(Bytes::from_static(b"{}")))
            .unwrap();
        let r = client.request(req).await.unwrap();
        *proxy_tally.entry(r.status().as_u16()).or_default() += 1;
        let _ = r.into_body().collect().await;
    }
    println!("3000 wrong keys in {:.2} s: {proxy_tally:?}", started.elapsed().as_secs_f64());
    let mut admin_tally = std::collections::BTreeMap::<u16, usize>::new();
    for i in 0..1000 {
        let req = http::Request::get(format!("http://{admin}/admin/v1/accounts"))
            .header("authorization", format!("Bearer guess-{i}"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let r = client.request(req).await.unwrap();
        *admin_tally.entry(r.status().as_u16()).or_default() += 1;
        let _ = r.into_body().collect().await;
    }
    let req = http::Request::get(format!("http://{admin}/admin/v1/accounts"))
        .header("authorization", format!("Bearer {token}"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let right = client.request(req).await.unwrap().status();
    println!("1000 wrong admin tokens: {admin_tally:?}; the right token right after: {right}");

    // 6. One 20 MiB `data:` line from the upstream.
    let rss = rss_kib(&pid);
    let mut s = TcpStream::connect(&proxy).await.unwrap();
    let body = r#"{"model":"mock-small","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: w\r\nauthorization: Bearer {key}\r\ncontent-length: {}\r\nx-mock-event-bytes: 20971520\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut got)).await;
    let text = String::from_utf8_lossy(&got);
    println!(
        "20 MiB event: {} bytes reached the client, ended with event_too_large: {}; RSS {} -> {} KiB",
        got.len(),
        text.contains("event_too_large"),
        rss,
        rss_kib(&pid)
    );
}
