//! Hostile and flaky clients and upstreams, over real sockets: every request that reached
//! warden gets exactly one audit record and gives back every slot, whatever the client or
//! the upstream does; connections, bodies and events are bounded; only the routes warden
//! understands (or the operator allowed) reach the upstream.

mod support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Method;
use serde_json::{json, Value};
use support::{chat_body, read_audit, Extra, Warden};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use warden::mock_llm::{self, MockOptions};

/// A raw HTTP/1.1 request head for a chat completion with `body`, plus `extra` header lines.
fn chat_head(key: &str, length: usize, extra: &str) -> String {
    format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: warden\r\nauthorization: Bearer {key}\r\ncontent-type: application/json\r\ncontent-length: {length}\r\n{extra}\r\n"
    )
}

/// Reads whatever the server sends until it closes or `wait` passes.
async fn read_for(s: &mut TcpStream, wait: Duration) -> String {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(wait, s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads one response (head, and a body of the declared length) within `wait`.
async fn read_response(s: &mut TcpStream, wait: Duration) -> String {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(wait, async {
        let mut buf = [0u8; 8192];
        loop {
            let n = s.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                return;
            }
            out.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&out).to_ascii_lowercase();
            if let Some(end) = text.find("\r\n\r\n") {
                let length = text[..end]
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                if out.len() >= end + 4 + length {
                    return;
                }
            }
        }
    })
    .await;
    String::from_utf8_lossy(&out).into_owned()
}

/// One gauge or counter from `/metrics`.
async fn metric(w: &Warden, name: &str) -> f64 {
    let r = w.http.send(Method::GET, &format!("http://{}/metrics", w.admin_addr), &[], None).await.unwrap();
    let text = String::from_utf8_lossy(&r.body).into_owned();
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')).map(|v| v.trim().parse().unwrap()))
        .unwrap_or_else(|| panic!("no metric {name} in\n{text}"))
}

/// Waits until `f` holds for the metric (checked every 20 ms, up to `within`).
async fn metric_becomes(w: &Warden, name: &str, within: Duration, f: impl Fn(f64) -> bool) -> f64 {
    let deadline = Instant::now() + within;
    loop {
        let v = metric(w, name).await;
        if f(v) || Instant::now() > deadline {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every audit record, each read into a tree but for its request body (which may be
/// nested deeper than a tree can hold), kept as text under `request_body_text`.
fn read_audit_shallow(dir: &std::path::Path) -> Vec<Value> {
    let mut files: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.retain(|p| p.extension().is_some_and(|x| x == "jsonl"));
    files.sort();
    let mut out = Vec::new();
    for f in files {
        for line in std::fs::read_to_string(f).unwrap().lines() {
            let fields: std::collections::BTreeMap<String, Box<serde_json::value::RawValue>> =
                serde_json::from_str(line).unwrap();
            let mut record = serde_json::Map::new();
            for (k, v) in fields {
                if k == "request_body" {
                    record.insert("request_body_text".into(), Value::String(v.get().to_string()));
                } else {
                    record.insert(k, serde_json::from_str(v.get()).unwrap());
                }
            }
            out.push(Value::Object(record));
        }
    }
    out
}

fn unique_ids(records: &[Value]) {
    let ids: HashSet<&str> = records.iter().map(|r| r["request_id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), records.len(), "a request was recorded twice: {records:#?}");
}

/// Issue reproduction 1: clients that hang up while the upstream is still thinking, on
/// HTTP/1.1 (socket closed) and on h2 (RST_STREAM), with `max_concurrent = 3`.
#[tokio::test]
async fn a_client_gone_before_the_answer_is_recorded_once_and_frees_every_slot() {
    let mock = mock_llm::spawn(MockOptions::default()).await.unwrap();
    let w = Warden::start_with(&mock.base_url(), Extra { tail: "max_concurrent = 3", ..Extra::default() }).await;
    let key = w.account("acme").await;
    let body = chat_body("think slowly", false).to_string();
    for _ in 0..5 {
        let mut s = TcpStream::connect(w.proxy).await.unwrap();
        let head = chat_head(&key, body.len(), "x-mock-latency-ms: 1000\r\n");
        s.write_all(format!("{head}{body}").as_bytes()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(s);
    }
    // h2: 20 streams on one connection, each reset after 100 ms.
    let tcp = TcpStream::connect(w.proxy).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), hyper_util::rt::TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    let mut streams = Vec::new();
    for _ in 0..20 {
        sender.ready().await.unwrap();
        let req = http::Request::post(format!("http://{}/v1/chat/completions", w.proxy))
            .header("authorization", format!("Bearer {key}"))
            .header("content-type", "application/json")
            .header("x-mock-latency-ms", "1000")
            .body(http_body_util::Full::new(Bytes::from(body.clone())))
            .unwrap();
        streams.push(sender.send_request(req));
    }
    for s in streams {
        // Only 3 are admitted (concurrency); the others are refused at once with 429.
        if let Ok(Ok(resp)) = tokio::time::timeout(Duration::from_millis(100), s).await {
            assert_eq!(resp.status(), 429);
        }
    }
    // A client that leaves halfway through its body.
    let mut s = TcpStream::connect(w.proxy).await.unwrap();
    s.write_all(format!("{}{{\"model\"", chat_head(&key, 500, "")).as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(s);
    // Every slot comes back: the gauge returns to 0 and the account is served again at once.
    let in_flight = metric_becomes(&w, "warden_in_flight_requests", Duration::from_secs(3), |v| v == 0.0).await;
    assert_eq!(in_flight, 0.0);
    for _ in 0..4 {
        let r = w.post("/v1/chat/completions", &key, chat_body("after", false)).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
    }
    let dir = w.stop().await;
    let records = read_audit(&dir.path().join("audit"));
    unique_ids(&records);
    let aborted: Vec<&Value> = records.iter().filter(|r| r["ending"] == "client_aborted").collect();
    let refused = records.iter().filter(|r| r["status"] == 429).count();
    let served = records.iter().filter(|r| r["status"] == 200).count();
    assert_eq!(served, 4);
    // Each HTTP/1.1 request got the slot its predecessor gave back; of the 20 streams,
    // the 3 the limit admits.
    assert_eq!(aborted.len(), 9, "{records:#?}");
    assert_eq!(refused, 17, "{records:#?}");
    let left = aborted.iter().filter(|r| r["decision"] == "abandoned").count();
    assert_eq!(left, 1, "the client that left mid-body: {records:#?}");
    for r in &aborted {
        assert_eq!(r["status"], 499);
        assert!(r["decision"] == "allowed" || r["decision"] == "abandoned", "{r}");
        assert_eq!(r["account_id"], "acme");
    }
}

/// Issue reproduction 2: a declared length never sent in full, and a body dribbled out
/// slower than the minimum rate: 408 and a record; other accounts are served meanwhile.
#[tokio::test]
async fn bodies_that_never_finish_are_cut_off_and_recorded() {
    let mock = mock_llm::spawn(MockOptions::default()).await.unwrap();
    let w = Warden::start_with(
        &mock.base_url(),
        Extra {
            server: "body_read_timeout_ms = 1500\nmax_in_flight = 8",
            tail: "max_concurrent = 3",
            ..Extra::default()
        },
    )
    .await;
    let stalled_key = w.account("staller").await;
    let other = w.account("other").await;
    // Five stalled bodies: the account's three concurrency slots are taken before the
    // body is read, so the fourth and fifth are refused at once instead of filling
    // `max_in_flight` for everyone.
    let mut stalled = Vec::new();
    for _ in 0..5 {
        let mut s = TcpStream::connect(w.proxy).await.unwrap();
        s.write_all(format!("{}{{\"model\":\"m", chat_head(&stalled_key, 1000, "")).as_bytes()).await.unwrap();
        stalled.push(s);
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    for _ in 0..10 {
        assert_eq!(w.post("/v1/chat/completions", &other, chat_body("fine", false)).await.status, 200);
    }
    let started = Instant::now();
    let mut statuses = Vec::new();
    for s in &mut stalled {
        let reply = read_response(s, Duration::from_secs(4)).await;
        statuses.push(reply.split(' ').nth(1).unwrap_or("none").to_string());
        if reply.contains(" 408 ") {
            assert!(reply.to_ascii_lowercase().contains("connection: close"), "{reply}");
            assert!(reply.contains("request_timeout"), "{reply}");
        }
    }
    statuses.sort();
    assert_eq!(statuses, ["408", "408", "408", "429", "429"]);
    assert!(started.elapsed() < Duration::from_secs(3), "cut at the deadline, not later");
    let in_flight = metric_becomes(&w, "warden_in_flight_requests", Duration::from_secs(2), |v| v == 0.0).await;
    assert_eq!(in_flight, 0.0);
    let dir = w.stop().await;
    let records = read_audit(&dir.path().join("audit"));
    unique_ids(&records);
    let timed_out = records.iter().filter(|r| r["status"] == 408 && r["decision"] == "client_timeout").count();
    assert_eq!(timed_out, 3, "{records:#?}");
    assert_eq!(records.iter().filter(|r| r["status"] == 429 && r["account_id"] == "staller").count(), 2);
    assert_eq!(records.len(), 15);
}

/// A body that keeps coming, but slower than `body_min_bytes_per_sec`: cut off once the
/// first seconds are over.
#[tokio::test]
async fn a_body_dribbled_below_the_minimum_rate_is_cut_off() {
    let mock = mock_llm::spawn(MockOptions::default()).await.unwrap();
    let w = Warden::start_with(&mock.base_url(), Extra { server: "body_min_bytes_per_sec = 100", ..Extra::default() })
        .await;
    let other = w.account("other").await;
    // A 1-byte chunk every 300 ms: under 100 bytes a second after the 5 s grace.
    let mut s = TcpStream::connect(w.proxy).await.unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: w\r\nauthorization: Bearer {other}\r\ntransfer-encoding: chunked\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let dribble = tokio::spawn(async move {
        let started = Instant::now();
        let mut buf = [0u8; 4096];
        loop {
            if s.write_all(b"1\r\n{\r\n").await.is_err() {
                break;
            }
            tokio::select! {
                n = s.read(&mut buf) => {
                    let text = String::from_utf8_lossy(&buf[..n.unwrap_or(0)]).into_owned();
                    return (text, started.elapsed());
                }
                () = tokio::time::sleep(Duration::from_millis(300)) => {}
            }
        }
        (String::new(), started.elapsed())
    });
    let (reply, took) = dribble.await.unwrap();
    assert!(reply.contains(" 408 "), "{reply}");
    assert!(reply.contains("slower than 100 bytes a second"), "{reply}");
    assert!(took < Duration::from_secs(8), "{took:?}");
    let in_flight = metric_becomes(&w, "warden_in_flight_requests", Duration::from_secs(2), |v| v == 0.0).await;
    assert_eq!(in_flight, 0.0);
    let dir = w.stop().await;
    let records = read_audit(&dir.path().join("audit"));
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["status"], 408);
    assert!(records[0]["reason"].as_str().unwrap().contains("slower than 100 bytes a second"));
}

/// Issue reproduction 3: connections that send nothing (raw TCP, an h2 preface) are
/// closed, and at most `max_connections` are open at once.
#[tokio::test]
async fn idle_connections_are_closed_and_their_number_is_capped() {
    let mock = mock_llm::spawn(MockOptions::default()).await.unwrap();
    let w = Warden::start_with(
        &mock.base_url(),
        Extra {
            server: "header_read_timeout_ms = 400\nidle_timeout_ms = 400\nmax_connections = 50",
            ..Extra::default()
        },
    )
    .await;
    let key = w.account("acme").await;
    let started = Instant::now();
    let mut silent = Vec::new();
    for _ in 0..200 {
        silent.push(TcpStream::connect(w.proxy).await.unwrap());
    }
    let mut preface = TcpStream::connect(w.proxy).await.unwrap();
    preface.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00").await.unwrap();
    let mut peak = 0.0f64;
    let closed = tokio::spawn(async move {
        let mut n = 0;
        for mut s in silent {
            let mut buf = [0u8; 64];
            // EOF or a reset: closed by warden.
            if let Ok(Ok(0) | Err(_)) = tokio::time::timeout(Duration::from_secs(15), s.read(&mut buf)).await {
                n += 1;
            }
        }
        n
    });
    while !closed.is_finished() {
        peak = peak.max(metric(&w, "warden_open_connections").await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(closed.await.unwrap(), 200);
    assert!(peak <= 51.0, "open connections peaked at {peak} with max_connections = 50");
    assert!(peak >= 10.0, "the flood should have been seen: peak {peak}");
    let mut buf = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(5), preface.read_to_end(&mut buf)).await;
    assert!(matches!(r, Ok(Ok(_)) | Ok(Err(_))), "the h2 connection that only sent its preface stays open");
    assert!(started.elapsed() < Duration::from_secs(15));
    // A request in flight longer than the idle timeout keeps its connection.
    let r = w.send(Method::GET, "/v1/models", &key, None, &[("x-mock-latency-ms", "1000")]).await;
    assert_eq!(r.status, 200);
    let open = metric_becomes(&w, "warden_open_connections", Duration::from_secs(3), |v| v <= 1.0).await;
    assert!(open <= 1.0, "{open}");
    w.stop().await;
}

/// Issue reproduction 5: paths warden does not understand never reach the upstream, and
/// credentials never leave in the query string.
#[tokio::test]
async fn unknown_paths_are_refused_without_reaching_the_upstream() {
    // An upstream that only counts the connections it gets.
    let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = upstream.local_addr().unwrap();
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = seen.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = upstream.accept().await {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            drop(s);
        }
    });
    let w = Warden::start(&format!("http://{addr}")).await;
    let key = w.account("acme").await;
    for (method, path) in [
        (Method::GET, "/v1/files"),
        (Method::GET, "/v1/batches"),
        (Method::POST, "/v1/fine_tuning/jobs"),
        (Method::POST, "/v1/audio/speech"),
        (Method::DELETE, "/v1/models/mock-small"),
        (Method::GET, "/v1/chat/completions"),
        (Method::GET, "/v1/models/../files"),
        (Method::POST, "/v2/anything"),
    ] {
        let r = w.send(method.clone(), path, &key, Some(Bytes::from_static(b"{}")), &[]).await;
        assert_eq!(r.status, 404, "{method} {path}");
        let v = r.json();
        assert_eq!(v["error"]["code"], "unknown_url", "{v}");
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert!(v["error"]["message"].as_str().unwrap().contains(&format!("{method} ")), "{v}");
    }
    assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 0, "a denied path reached the upstream");
    let dir = w.stop().await;
    let records = read_audit(&dir.path().join("audit"));
    assert_eq!(records.len(), 8);
    assert!(records.iter().all(|r| r["decision"] == "denied_route" && r["status"] == 404 && r["account_id"] == "acme"));

    // With an allow-list, the paths on it go through, and only those.
    let mock = mock_llm::spawn(MockOptions::default()).await.unwrap();
    let w = Warden::start_with(
        &mock.base_url(),
        Extra { upstream: r#"passthrough = ["/echo/allowed", "/echo/tree/*"]"#, ..Extra::default() },
    )
    .await;
    let key = w.account("acme").await;
    let r = w.send(Method::POST, &format!("/echo/allowed?key={key}&token=x&keep=1"), &key, None, &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["query"], "keep=1");
    let r = w.send(Method::GET, &format!("/echo/tree/a/b?Authorization=Bearer%20{key}"), &key, None, &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["query"], Value::Null);
    assert!(!r.json().to_string().contains(&key));
    assert_eq!(w.send(Method::GET, "/echo/tree", &key, None, &[]).await.status, 404);
    assert_eq!(w.send(Method::GET, "/echo/allowed/more", &key, None, &[]).await.status, 404);
    w.stop().await;
}

/// Issue reproduction 6 (streams): an event past `max_event_bytes` ends the stream with
/// an error event and a record; an event's bytes reach the client before it ends.
#[tokio::test]
async fn stream_events_are_bounded_and_passed_on_as_they_arrive() {
    let mock = mock_llm::spawn(MockOptions::default()).await.unwrap();
    let w = Warden::start_with(&mock.base_url(), Extra { server: "max_event_bytes = 65536", ..Extra::default() }).await;
    let key = w.account("acme").await;
    let auth = format!("Bearer {key}");
    for include_usage in [false, true] {
        let mut body = chat_body("a huge event", true);
        if include_usage {
            body["stream_options"] = json!({"include_usage": true});
        }
        let mut s = support::open_stream(
            &w.url("/v1/chat/completions"),
            &[("authorization", &auth), ("x-mock-event-bytes", "300000")],
            body,
        )
        .await;
        assert_eq!(s.status, 200);
        let text = s.rest().await;
        assert!(text.contains("\"code\":\"event_too_large\""), "{}", &text[text.len().saturating_sub(300)..]);
        assert!(!text.contains("[DONE]"));
        assert!(text.len() < 200_000, "the stream went on past the limit: {} bytes", text.len());
    }
    // Mid-event: the first half of the first content event arrives before the second is sent.
    for include_usage in [false, true] {
        let mut body = chat_body("in pieces", true);
        if include_usage {
            body["stream_options"] = json!({"include_usage": true});
        }
        let mut s = support::open_stream(
            &w.url("/v1/chat/completions"),
            &[("authorization", &auth), ("x-mock-split-first-ms", "1500"), ("x-mock-event-bytes", "2000")],
            body,
        )
        .await;
        let started = Instant::now();
        let mut seen = String::new();
        while !seen.contains("xxxxxxxx") {
            seen.push_str(&String::from_utf8_lossy(&s.next_data().await.unwrap()));
        }
        assert!(started.elapsed() < Duration::from_millis(1000), "part of an event waited for its end");
        let rest = s.rest().await;
        assert!(rest.ends_with("data: [DONE]\n\n"), "{rest}");
        assert_eq!((seen + &rest).contains("\"usage\""), include_usage);
    }
    let dir = w.stop().await;
    let records = read_audit(&dir.path().join("audit"));
    let cut: Vec<&Value> = records.iter().filter(|r| r["ending"] == "event_too_large").collect();
    assert_eq!(cut.len(), 2, "{records:#?}");
    assert!(cut.iter().all(|r| r["reason"].as_str().unwrap().contains("65536")));
    assert_eq!(records.iter().filter(|r| r["ending"] == "complete").count(), 2);
}

/// Issue reproduction 6 (the rest): a status outside HTTP's range, a record nested
/// deeper than a JSON tree holds, `.` and `..` as account ids, a header flood.
#[tokio::test]
async fn odd_statuses_deep_bodies_odd_ids_and_header_floods_are_handled() {
    let mock = mock_llm::spawn(MockOptions::default()).await.unwrap();
    let w = Warden::start_with(&mock.base_url(), Extra { audit: "capture = \"full\"", ..Extra::default() }).await;
    let key = w.account("acme").await;
    let r =
        w.send(Method::POST, "/v1/chat/completions", &key, Some(Bytes::from("{}")), &[("x-mock-status", "999")]).await;
    assert_eq!(r.status, 502);
    assert_eq!(r.json()["error"]["code"], "upstream_unavailable");
    assert!(r.json()["error"]["message"].as_str().unwrap().contains("999"));

    // 100,000 levels deep in a field warden does not read: refused by warden as serde_json
    // (which the upstream and warden's own re-encoding use) refuses it, audited, and
    // returned by the reviewer API like any other record.
    let deep = format!(
        "{{\"model\":\"mock-small\",\"messages\":[{{\"role\":\"user\",\"content\":\"hi\"}}],\"x\":{}{}}}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let r = w.send(Method::POST, "/v1/chat/completions", &key, Some(Bytes::from(deep.clone())), &[]).await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    let err: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(err["error"]["code"], "invalid_json", "{err}");
    assert!(err["error"]["message"].as_str().unwrap().contains("recursion limit"), "{err}");
    // Read as text: a JSON tree could not hold it either. The index lags by a flush.
    let url = format!("http://{}/admin/v1/accounts/acme/requests", w.admin_addr);
    let auth = format!("Bearer {}", support::ADMIN_TOKEN);
    let deadline = Instant::now() + Duration::from_secs(5);
    let text = loop {
        let r = w.http.send(Method::GET, &url, &[("authorization", &auth)], None).await.unwrap();
        assert_eq!(r.status, 200);
        let text = String::from_utf8(r.body.to_vec()).unwrap();
        if text.matches("\"request_id\"").count() == 2 || Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(text.matches("\"request_id\"").count(), 2, "{}", &text[..text.len().min(500)]);
    let page: Value = serde_json::from_str(&text).unwrap();
    let refused = page["requests"].as_array().unwrap().iter().find(|r| r["decision"] == "invalid_request");
    let refused = refused.unwrap_or_else(|| panic!("the refusal is recorded: {page}"));
    assert_eq!(refused["status"], 400);
    assert!(refused["reason"].as_str().unwrap().contains("recursion limit"), "{refused}");

    for id in [".", "..", ".hidden", "-x", "a/b"] {
        let (status, body) = w.admin.call(Method::POST, "/admin/v1/accounts", Some(json!({"id": id}))).await.unwrap();
        assert_eq!(status, 400, "{id}: {body}");
        assert!(body["error"]["message"].as_str().unwrap().contains("[A-Za-z0-9]"));
    }

    let mut s = TcpStream::connect(w.proxy).await.unwrap();
    let mut head = String::from("GET /v1/models HTTP/1.1\r\nhost: w\r\n");
    for i in 0..10_000 {
        head.push_str(&format!("x-h{i}: v\r\n"));
    }
    head.push_str("\r\n");
    let _ = s.write_all(head.as_bytes()).await;
    let reply = read_for(&mut s, Duration::from_secs(5)).await;
    assert!(reply.starts_with("HTTP/1.1 431"), "{}", &reply[..reply.len().min(200)]);
    let dir = w.stop().await;
    let records = read_audit_shallow(&dir.path().join("audit"));
    let deep = records.iter().find(|r| r["reason"].as_str().is_some_and(|m| m.contains("recursion limit")));
    assert_eq!(deep.expect("the refused deep body has its record")["status"], 400);
    assert_eq!(records.len(), 3, "{records:#?}");
    let flood = records.iter().find(|r| r["status"] == 431).expect("the 431 has its record");
    assert_eq!(flood["decision"], "invalid_request");
    assert_eq!(flood["client_ip"], "127.0.0.1");
    assert!(records.iter().any(|r| r["status"] == 502 && r["decision"] == "upstream_error"));
}

/// Issue reproduction 6 (authentication): wrong keys and wrong admin tokens from one
/// address are throttled after the burst; a valid key from it still works, the admin
/// token does not while the address is over its budget.
#[tokio::test]
async fn failed_authentication_is_throttled_per_address() {
    let mock = mock_llm::spawn(MockOptions::default()).await.unwrap();
    let w = Warden::start_with(
        &mock.base_url(),
        Extra { server: "auth_failure_burst = 5\nauth_failures_per_minute = 60", ..Extra::default() },
    )
    .await;
    let key = w.account("acme").await;
    let mut statuses = Vec::new();
    for i in 0..20 {
        let r = w.post("/v1/chat/completions", &format!("wk-wrong-{i}"), chat_body("x", false)).await;
        if r.status == 429 {
            assert!(r.headers.contains_key("retry-after"));
            assert_eq!(r.json()["error"]["code"], "too_many_auth_failures");
        }
        statuses.push(r.status.as_u16());
    }
    assert_eq!(statuses.iter().filter(|s| **s == 401).count(), 5, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 15, "{statuses:?}");
    assert_eq!(w.post("/v1/chat/completions", &key, chat_body("still me", false)).await.status, 200);

    let admin_url = format!("http://{}/admin/v1/accounts", w.admin_addr);
    let mut admin = Vec::new();
    for i in 0..8 {
        let token = format!("Bearer not-the-token-{i}");
        let r = w.http.send(Method::GET, &admin_url, &[("authorization", &token)], None).await.unwrap();
        admin.push(r.status.as_u16());
    }
    assert_eq!(admin, [401, 401, 401, 401, 401, 429, 429, 429]);
    let (status, _) = w.admin.call(Method::GET, "/admin/v1/accounts", None).await.unwrap();
    assert_eq!(status, 429, "the right token is refused too while the address is over its budget");
    assert_eq!(metric(&w, "warden_auth_failures_total{listener=\"proxy\"}").await, 20.0);
    assert_eq!(metric(&w, "warden_auth_throttled_total{listener=\"proxy\"}").await, 15.0);
    assert_eq!(metric(&w, "warden_auth_throttled_total{listener=\"admin\"}").await, 4.0);
    // Both listeners' counters are one family each: Prometheus rejects a scrape that
    // describes a metric twice, so every family is described once.
    let r = w.http.send(Method::GET, &format!("http://{}/metrics", w.admin_addr), &[], None).await.unwrap();
    let text = String::from_utf8_lossy(&r.body).into_owned();
    let mut described = std::collections::HashSet::new();
    for l in text.lines().filter(|l| l.starts_with("# TYPE ") || l.starts_with("# HELP ")) {
        let key: Vec<&str> = l.splitn(4, ' ').take(3).collect();
        assert!(described.insert(key.join(" ")), "described twice: {l}\n{text}");
    }
    assert!(described.contains("# TYPE warden_auth_failures"), "{text}");
    // The budget refills at the rate: a second later the token works again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, _) = w.admin.call(Method::GET, "/admin/v1/accounts", None).await.unwrap();
    assert_eq!(status, 200);
    let dir = w.stop().await;
    let records = read_audit(&dir.path().join("audit"));
    assert_eq!(records.iter().filter(|r| r["decision"] == "unauthenticated").count(), 20);
}

/// At SIGTERM a stalled body does not hold shutdown past the grace period, and is recorded.
#[test]
fn shutdown_cuts_a_stalled_body_and_records_it() {
    use std::io::{Read, Write};
    let (_mock, upstream) = support::process::start_mock(&[]);
    let dir = tempfile::tempdir().unwrap();
    let (mut proc, proxy, admin) = support::process::start_warden(
        dir.path(),
        &upstream,
        "body_read_timeout_ms = 60000\nshutdown_grace_ms = 1000",
        "",
    );
    let (ok, out, err) = support::process::cli(&admin, &["accounts", "create", "acme"]);
    assert!(ok, "{out}{err}");
    let (ok, out, err) = support::process::cli(&admin, &["keys", "create", "acme"]);
    assert!(ok, "{out}{err}");
    let key = serde_json::from_str::<Value>(&out).unwrap()["key"].as_str().expect("the CLI prints the key").to_string();
    let mut s = std::net::TcpStream::connect(&proxy).unwrap();
    s.write_all(format!("{}{{\"mo", chat_head(&key, 500, "")).as_bytes()).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    support::process::send_signal(proc.0.id(), "TERM");
    let status = loop {
        if let Some(status) = proc.0.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "shutdown held by a stalled body");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success());
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    let records = read_audit(&dir.path().join("audit"));
    let cut: Vec<&Value> = records.iter().filter(|r| r["ending"] == "shutdown").collect();
    assert_eq!(cut.len(), 1, "{records:#?}");
    assert_eq!(cut[0]["status"], 503);
    assert_eq!(cut[0]["account_id"], "acme");
}
