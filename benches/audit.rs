//! Audit log and event bus figures (run: `cargo bench --bench audit`):
//! - records per second the writer sustains with `full` capture (JSON lines, index rows,
//!   fsync every flush interval), measured from the first submit to the last record on disk;
//! - the request path's cost of emitting one event: building the `RequestEvent`, sharing it
//!   (`Arc`), handing it to the detector's queue and the audit queue (reserved slot).
//!
//! Figures are printed; nothing is asserted (performance lives here, not in tests).

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use warden::accounting::Usage;
use warden::events::audit::{AuditConfig, AuditOverflow, CaptureMode};
use warden::events::audit::{AuditMetrics, AuditSink};
use warden::events::RequestEvent;

fn body(i: usize) -> warden::llm::LlmRequest {
    let body = json!({
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "You are a helpful assistant for Acme Corp. Answer briefly."},
            {"role": "user", "content": format!("Question {i}: explain how a reverse proxy differs from a load balancer, with an example configuration and the trade-offs of each approach in production.")}
        ],
        "temperature": 0.7, "max_tokens": 512, "stream": true
    });
    warden::llm::LlmRequest::parse(warden::llm::LlmRoute::ChatCompletions, body.to_string().as_bytes()).unwrap()
}

fn event(i: usize, completion: &str) -> RequestEvent {
    RequestEvent {
        ts_ms: 1_793_577_600_000 + i as i64,
        request_id: format!("req_{i:016x}").into(),
        account_id: Some(Arc::from(format!("acct-{}", i % 1000))),
        key_id: Some(Arc::from("key_0123456789abcdef")),
        client_ip: "203.0.113.7".parse().unwrap(),
        user_agent: Some("OpenAI/Python 1.54.0".into()),
        method: http::Method::POST,
        path: "/v1/chat/completions".into(),
        dialect: Some(warden::llm::Dialect::OpenAi),
        model: Some("gpt-4o-mini".into()),
        status: 200,
        stream: true,
        latency: Duration::from_millis(812),
        usage: Some(Usage { prompt_tokens: 48, completion_tokens: 402 }),
        usage_estimated: false,
        decision: warden::events::Decision::Allowed,
        reason: None,
        ending: warden::events::Ending::Complete,
        request: Some(Box::new(body(i))),
        completion_text: Some(completion.to_string()),
        completion_truncated: false,
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this file too, and
    // then it only checks that it works, on a few records, and prints nothing (a debug
    // build's figures would mean nothing in the middle of the test output).
    let measuring = std::env::args().any(|a| a == "--bench");
    macro_rules! report {
        ($($t:tt)*) => { if measuring { println!($($t)*) } };
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let completion = "Reverse proxies terminate client connections and forward requests. ".repeat(25);
        let n = if measuring { 200_000 } else { 2_000 };
        let dir = tempfile::tempdir().unwrap();
        let config = AuditConfig {
            dir: dir.path().join("audit"),
            capture: CaptureMode::Full,
            max_capture_bytes: 64 * 1024,
            redact: Vec::new(),
            max_file_bytes: 256 * 1024 * 1024,
            retention_days: 30,
            flush_interval: Duration::from_millis(1000),
            queue_capacity: 65_536,
            overflow: AuditOverflow::Reject,
        };
        let metrics = AuditMetrics::default();
        let sink = AuditSink::start(&config, metrics.clone()).await.unwrap();
        let events: Vec<RequestEvent> = (0..n).map(|i| event(i, &completion)).collect();
        let started = Instant::now();
        for e in events {
            // Reject mode: wait for a slot when the writer is behind (what admission does).
            loop {
                match sink.reserve() {
                    Ok(slot) => {
                        sink.submit(slot, Arc::new(e));
                        break;
                    }
                    Err(_) => tokio::time::sleep(Duration::from_micros(200)).await,
                }
            }
        }
        while metrics.written.get() < n as u64 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let secs = started.elapsed().as_secs_f64();
        let bytes = metrics.bytes.get();
        report!(
            "audit writer, full capture: {n} records ({:.0} B each) in {secs:.2}s = {:.0} records/s, {:.1} MB/s, dropped {}",
            bytes as f64 / n as f64,
            n as f64 / secs,
            bytes as f64 / secs / 1e6,
            metrics.dropped.get()
        );
        sink.shutdown().await;

        // Hot-path cost of emitting an event: Arc + detector try_send + audit slot send.
        let dir2 = tempfile::tempdir().unwrap();
        let config2 = AuditConfig { dir: dir2.path().join("audit"), queue_capacity: 1 << 20, ..config.clone() };
        let sink2 = AuditSink::start(&config2, AuditMetrics::default()).await.unwrap();
        let (dtx, drx) = std::sync::mpsc::sync_channel::<Arc<RequestEvent>>(1 << 20);
        let m = if measuring { 100_000 } else { 1_000 };
        let events: Vec<RequestEvent> = (0..m).map(|i| event(i, &completion)).collect();
        let slots: Vec<_> = (0..m).map(|_| sink2.reserve().unwrap()).collect();
        let started = Instant::now();
        for (e, slot) in events.into_iter().zip(slots) {
            let e = Arc::new(e);
            let _ = dtx.try_send(e.clone());
            sink2.submit(slot, e);
        }
        let per = started.elapsed().as_nanos() as f64 / m as f64;
        report!("emitting one event (Arc, detector queue, audit queue): {per:.0} ns");
        let build_started = Instant::now();
        let built: Vec<RequestEvent> = (0..m).map(|i| event(i, &completion)).collect();
        let build = build_started.elapsed().as_nanos() as f64 / m as f64;
        drop(built);
        report!("  (building the event in this bench, incl. body and text copies: {build:.0} ns; on the request path the body is moved, not copied)");
        drop(drx);
        sink2.shutdown().await;
    });
}
