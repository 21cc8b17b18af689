//! The proxy core over real sockets: authentication, forwarding, streaming, failures.

mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Method;
use serde_json::{json, Value};
use support::{chat_body, open_stream, Extra, Warden, ADMIN_TOKEN, UPSTREAM_KEY};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use warden::mock_llm::{self, MockOptions};

fn error_code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("<none>")
}

#[tokio::test]
async fn authenticates_bearer_and_x_api_key_and_refuses_unknown_revoked_and_blocked() {
    let mock = mock_llm::spawn(MockOptions::default()).await.unwrap();
    let w = Warden::start(&mock.base_url()).await;
    let key = w.account("acme").await;

    let r = w.post("/v1/chat/completions", &key, chat_body("hello", false)).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = w.http.send(Method::GET, &w.url("/v1/models"), &[("x-api-key", key.as_str())], None).await.unwrap();
    assert_eq!(r.status, 200);

    let r = w.post("/v1/chat/completions", "wk-0000", chat_body("hello", false)).await;
    assert_eq!(r.status, 401);
    assert_eq!(error_code(&r.json()), "invalid_api_key");
    assert!(!String::from_utf8_lossy(&r.body).contains("wk-0000"), "the key must not be echoed");

    let r = w.http.send(Method::GET, &w.url("/v1/models"), &[], None).await.unwrap();
    assert_eq!(r.status, 401);

    // Revoked keys stop working at once.
    let second = w.key("acme").await;
    let keys = w.admin.expect(Method::GET, "/admin/v1/accounts/acme/keys", None).await.unwrap();
    let second_id = keys["keys"][1]["key_id"].as_str().unwrap().to_string();
    assert!(!keys.to_string().contains(&second), "listing must not show raw keys");
    assert_eq!(w.post("/v1/chat/completions", &second, chat_body("x", false)).await.status, 200);
    let (status, _) = w.admin.call(Method::DELETE, &format!("/admin/v1/keys/{second_id}"), None).await.unwrap();
    assert_eq!(status, 204);
    let r = w.post("/v1/chat/completions", &second, chat_body("x", false)).await;
    assert_eq!(r.status, 401);

    // Blocked accounts get 403 from the next request on, and come back when unblocked.
    w.admin.expect(Method::POST, "/admin/v1/accounts/acme/block", Some(json!({"reason": "test"}))).await.unwrap();
    let r = w.post("/v1/chat/completions", &key, chat_body("x", false)).await;
    assert_eq!(r.status, 403);
    assert_eq!(error_code(&r.json()), "account_blocked");
    assert_eq!(r.json()["error"]["type"], "permission_error");
    w.admin.expect(Method::POST, "/admin/v1/accounts/acme/unblock", Some(json!({}))).await.unwrap();
    assert_eq!(w.post("/v1/chat/completions", &key, chat_body("x", false)).await.status, 200);
    w.stop().await;
}

#[tokio::test]
async fn forwards_method_path_query_headers_and_body_with_the_upstream_key() {
    let mock = mock_llm::spawn(MockOptions::default()).await.unwrap();
    let w =
        Warden::start_with(&mock.base_url(), Extra { upstream: r#"passthrough = ["/echo/*"]"#, ..Extra::default() })
            .await;
    let key = w.account("acme").await;
    let body = Bytes::from_static(b"raw \x00 body, not JSON");
    // A key put in the query string is taken out of it before the request goes on.
    let r = w
        .send(
            Method::PUT,
            &format!("/echo/some/path?a=1&api_key={key}&b=two&x={key}"),
            &key,
            Some(body.clone()),
            &[("x-custom", "kept"), ("x-api-key", key.as_str()), ("connection", "x-hop"), ("x-hop", "dropped")],
        )
        .await;
    assert_eq!(r.status, 200);
    let echo = r.json();
    assert_eq!(echo["method"], "PUT");
    assert_eq!(echo["path"], "/echo/some/path");
    assert_eq!(echo["query"], "a=1&b=two");
    assert_eq!(echo["body"], String::from_utf8_lossy(&body).as_ref());
    let headers = &echo["headers"];
    assert_eq!(headers["authorization"], format!("Bearer {UPSTREAM_KEY}"));
    assert_eq!(headers["x-custom"], "kept");
    assert!(headers.get("x-api-key").is_none(), "client key forwarded: {headers}");
    assert!(headers.get("x-hop").is_none(), "hop-by-hop header forwarded: {headers}");
    assert!(!echo.to_string().contains(&key), "client key reached the upstream");
    // The request id is generated, returned and passed upstream.
    let rid = r.headers.get("x-request-id").unwrap().to_str().unwrap();
    assert!(rid.starts_with("req_"));
    assert_eq!(headers["x-request-id"], rid);
    // A client-supplied id is kept.
    let r = w.send(Method::GET, "/echo/x", &key, None, &[("x-request-id", "my-id-42")]).await;
    assert_eq!(r.headers["x-request-id"], "my-id-42");
    w.stop().await;
}

#[tokio::test]
async fn sse_chunks_reach_the_client_before_the_upstream_finishes() {
    let mock = mock_llm::spawn(MockOptions::default()).await.unwrap();
    let w = Warden::start(&mock.base_url()).await;
    let key = w.account("acme").await;
    let auth = format!("Bearer {key}");
    let started = Instant::now();
    let mut s = open_stream(
        &w.url("/v1/chat/completions"),
        &[("authorization", &auth), ("x-mock-pause-after-first-ms", "1500"), ("x-mock-chunks", "5")],
        chat_body("stream please", true),
    )
    .await;
    assert_eq!(s.status, 200);
    assert!(s.headers["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let mut seen = String::new();
    while !seen.contains("\"content\":\"") || !seen.ends_with("\n\n") {
        let chunk = s.next_data().await.expect("stream ended before the first content chunk");
        seen.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    let first_at = started.elapsed();
    assert!(first_at < Duration::from_millis(1000), "first content chunk took {first_at:?}: buffered?");
    let rest = s.rest().await;
    let total = started.elapsed();
    assert!(total >= Duration::from_millis(1500), "the pause did not happen ({total:?})");
    assert!(rest.ends_with("data: [DONE]\n\n"), "{rest}");
    // Warden asked for usage on the client's behalf, and hid it again.
    let all = seen + &rest;
    assert!(!all.contains("\"usage\""), "usage leaked to a client that did not ask: {all}");
    let u = w.eventually("acme", |u| u["completion_tokens"].as_u64() == Some(5)).await;
    assert!(u["prompt_tokens"].as_u64().unwrap() > 0);
    w.stop().await;
}

#[tokio::test]
async fn a_client_that_asked_for_stream_usage_still_gets_it() {
    let mock = mock_llm::spawn(MockOptions::default()).await.unwrap();
    let w = Warden::start(&mock.base_url()).await;
    let key = w.account("acme").await;
    let mut body = chat_body("count me", true);
    body["stream_options"] = json!({"include_usage": true});
    let r = w.post("/v1/chat/completions", &key, body).await;
    let text = String::from_utf8(r.body.to_vec()).unwrap();
    let usage_events: Vec<&str> = text.split("\n\n").filter(|e| e.contains("\"prompt_tokens\"")).collect();
    assert_eq!(usage_events.len(), 1, "{text}");
    w.eventually("acme", |u| u["completion_tokens"].as_u64() == Some(16)).await;
    w.stop().await;
}

#[tokio::test]
async fn non_streamed_usage_is_counted_per_account() {
    let mock = mock_llm::spawn(MockOptions::default()).await.unwrap();
    let w = Warden::start(&mock.base_url()).await;
    let key = w.account("acme").await;
    let r = w.post("/v1/chat/completions", &key, chat_body("one two three", false)).await;
    let usage = r.json()["usage"].clone();
    let e = w.post("/v1/embeddings", &key, json!({"model": "e", "input": "four five"})).await;
    assert_eq!(e.status, 200);
    let ep = e.json()["usage"]["prompt_tokens"].as_u64().unwrap();
    let want_prompt = usage["prompt_tokens"].as_u64().unwrap() + ep;
    let u = w
        .eventually("acme", |u| u["requests"].as_u64() == Some(2) && u["prompt_tokens"].as_u64() == Some(want_prompt))
        .await;
    assert_eq!(u["completion_tokens"], usage["completion_tokens"]);
    w.stop().await;
}

/// An upstream that streams one SSE event every 20 ms for ~10 s and reports when its
/// client went away: stands for a provider generating a long answer.
async fn endless_upstream() -> (String, tokio::sync::mpsc::Receiver<usize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 65536];
        let mut got = Vec::new();
        // Read the request head and its body.
        loop {
            let n = sock.read(&mut buf).await.unwrap();
            got.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&got).to_string();
            if let Some(end) = text.find("\r\n\r\n") {
                let len: usize = text
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap())
                    })
                    .unwrap_or(0);
                if got.len() >= end + 4 + len {
                    break;
                }
            }
        }
        let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";
        sock.write_all(head.as_bytes()).await.unwrap();
        for i in 0..500 {
            let event = format!(
                "data: {{\"object\":\"chat.completion.chunk\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"word{i} \"}}}}],\"usage\":null}}\n\n"
            );
            let chunk = format!("{:x}\r\n{event}\r\n", event.len());
            if sock.write_all(chunk.as_bytes()).await.is_err() || sock.flush().await.is_err() {
                let _ = tx.send(i).await;
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    (format!("http://{addr}"), rx)
}

#[tokio::test]
async fn a_client_abort_cancels_the_upstream_and_still_counts_what_was_generated() {
    let (upstream, mut cancelled) = endless_upstream().await;
    let w = Warden::start(&upstream).await;
    let key = w.account("acme").await;
    let auth = format!("Bearer {key}");
    let mut s =
        open_stream(&w.url("/v1/chat/completions"), &[("authorization", &auth)], chat_body("long answer", true)).await;
    let mut seen = 0;
    while seen < 5 {
        let d = s.next_data().await.unwrap();
        seen += String::from_utf8_lossy(&d).matches("word").count();
    }
    drop(s); // the client hangs up
    let after = tokio::time::timeout(Duration::from_secs(3), cancelled.recv())
        .await
        .expect("upstream still streaming 3 s after the client left")
        .unwrap();
    assert!(after < 200, "upstream ran on for {after} events");
    let u =
        w.eventually("acme", |u| u["requests"].as_u64() == Some(1) && u["completion_tokens"].as_u64() > Some(0)).await;
    // Each event carries about two tokens ("word12 "); at least what the client saw counts.
    assert!(u["completion_tokens"].as_u64().unwrap() >= 5, "{u}");
    assert!(u["prompt_tokens"].as_u64().unwrap() > 0, "{u}");
    let metrics = w.http.send(Method::GET, &format!("http://{}/metrics", w.admin_addr), &[], None).await.unwrap();
    assert!(String::from_utf8_lossy(&metrics.body).contains("warden_client_aborts_total 1"));
    w.stop().await;
}

#[tokio::test]
async fn a_dead_upstream_is_a_502_and_a_slow_one_a_504() {
    // A port nothing listens on.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let w = Warden::start(&format!("http://{dead}")).await;
    let key = w.account("acme").await;
    let r = w.post("/v1/chat/completions", &key, chat_body("hi", false)).await;
    assert_eq!(r.status, 502);
    assert_eq!(error_code(&r.json()), "upstream_unavailable");
    assert!(!String::from_utf8_lossy(&r.body).contains(UPSTREAM_KEY));
    w.stop().await;

    let mock = mock_llm::spawn(MockOptions::default()).await.unwrap();
    let w = Warden::start_with(&mock.base_url(), Extra { upstream: "first_byte_timeout_ms = 300", ..Extra::default() })
        .await;
    let key = w.account("acme").await;
    let started = Instant::now();
    let r = w
        .send(
            Method::POST,
            "/v1/chat/completions",
            &key,
            Some(Bytes::from(chat_body("hi", false).to_string())),
            &[("x-mock-latency-ms", "3000")],
        )
        .await;
    assert_eq!(r.status, 504);
    assert_eq!(error_code(&r.json()), "upstream_timeout");
    assert!(started.elapsed() < Duration::from_secs(2));
    let metrics = w.http.send(Method::GET, &format!("http://{}/metrics", w.admin_addr), &[], None).await.unwrap();
    let text = String::from_utf8_lossy(&metrics.body);
    assert!(text.contains("warden_upstream_errors_total{kind=\"timeout\"} 1"), "{text}");
    w.stop().await;
}

#[tokio::test]
async fn oversized_bodies_get_413_and_malformed_json_400() {
    let mock = mock_llm::spawn(MockOptions::default()).await.unwrap();
    let w = Warden::start_with(
        &mock.base_url(),
        Extra { server: "max_body_bytes = 1000", upstream: r#"passthrough = ["/echo/*"]"#, ..Extra::default() },
    )
    .await;
    let key = w.account("acme").await;
    let big = chat_body(&"x".repeat(2000), false);
    let r = w.post("/v1/chat/completions", &key, big).await;
    assert_eq!(r.status, 413);
    assert_eq!(error_code(&r.json()), "request_too_large");
    // Also on a pass-through path.
    let r = w.send(Method::POST, "/echo/upload", &key, Some(Bytes::from(vec![b'a'; 5000])), &[]).await;
    assert_eq!(r.status, 413);

    let r = w.send(Method::POST, "/v1/chat/completions", &key, Some(Bytes::from_static(b"{\"model\": ")), &[]).await;
    assert_eq!(r.status, 400);
    let v = r.json();
    assert_eq!(error_code(&v), "invalid_json");
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert!(v["error"].as_object().unwrap().contains_key("param"));
    w.stop().await;
}

/// A chunked request body of several frames, written with pauses so that warden reads
/// it in pieces: gathered whole when within the limit, refused with 413 past it.
#[tokio::test]
async fn chunked_request_bodies_are_gathered_and_bounded() {
    let mock = mock_llm::spawn(MockOptions::default()).await.unwrap();
    let w = Warden::start_with(&mock.base_url(), Extra { server: "max_body_bytes = 1000", ..Extra::default() }).await;
    let key = w.account("acme").await;
    async fn chunked(w: &Warden, key: &str, parts: &[String]) -> String {
        let mut s = tokio::net::TcpStream::connect(w.proxy).await.unwrap();
        s.set_nodelay(true).unwrap();
        let head = format!(
            "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {key}\r\n\
             content-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
        );
        s.write_all(head.as_bytes()).await.unwrap();
        for p in parts {
            // The server may answer (413) and close before the last chunks; that is fine.
            if s.write_all(format!("{:x}\r\n{p}\r\n", p.len()).as_bytes()).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = s.write_all(b"0\r\n\r\n").await;
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out).await;
        String::from_utf8_lossy(&out).into_owned()
    }
    let body = chat_body("What is the capital of France?", false).to_string();
    let (a, b) = body.split_at(body.len() / 3);
    let (b, c) = b.split_at(b.len() / 2);
    let reply = chunked(&w, &key, &[a.to_string(), b.to_string(), c.to_string()]).await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.contains("\"chat.completion\""), "{reply}");

    let big = chat_body(&"x".repeat(1500), false).to_string();
    let parts: Vec<String> = big.as_bytes().chunks(400).map(|c| String::from_utf8(c.to_vec()).unwrap()).collect();
    let reply = chunked(&w, &key, &parts).await;
    assert!(reply.starts_with("HTTP/1.1 413"), "{reply}");
    assert!(reply.contains("request_too_large"), "{reply}");
    w.stop().await;
}

#[tokio::test]
async fn admin_api_requires_the_token_and_reports_problems_clearly() {
    let mock = mock_llm::spawn(MockOptions::default()).await.unwrap();
    let w = Warden::start(&mock.base_url()).await;
    let base = format!("http://{}", w.admin_addr);
    let r = w.http.send(Method::GET, &format!("{base}/admin/v1/accounts"), &[], None).await.unwrap();
    assert_eq!(r.status, 401);
    let r = w
        .http
        .send(Method::GET, &format!("{base}/admin/v1/accounts"), &[("authorization", "Bearer wrong")], None)
        .await
        .unwrap();
    assert_eq!(r.status, 401);
    for probe in ["/healthz", "/readyz", "/metrics"] {
        let r = w.http.send(Method::GET, &format!("{base}{probe}"), &[], None).await.unwrap();
        assert_eq!(r.status, 200, "{probe}");
    }
    let (s, v) =
        w.admin.call(Method::POST, "/admin/v1/accounts", Some(json!({"id": "a1", "tier": "default"}))).await.unwrap();
    assert_eq!(s, 201);
    assert_eq!(v["status"], "active");
    assert_eq!(v["tier"], "default");
    assert!(v.get("risk_score").is_some());
    let (s, _) = w.admin.call(Method::POST, "/admin/v1/accounts", Some(json!({"id": "a1"}))).await.unwrap();
    assert_eq!(s, 409);
    let (s, v) =
        w.admin.call(Method::POST, "/admin/v1/accounts", Some(json!({"id": "a2", "tier": "gold"}))).await.unwrap();
    assert_eq!(s, 400);
    assert!(v["error"]["message"].as_str().unwrap().contains("gold"));
    let (s, _) =
        w.admin.call(Method::POST, "/admin/v1/accounts", Some(json!({"id": "a3", "colour": 1}))).await.unwrap();
    assert_eq!(s, 400);
    let (s, _) = w.admin.call(Method::GET, "/admin/v1/accounts/nope", None).await.unwrap();
    assert_eq!(s, 404);
    let (s, _) = w.admin.call(Method::POST, "/admin/v1/accounts/nope/keys", None).await.unwrap();
    assert_eq!(s, 404);
    let (s, _) = w.admin.call(Method::DELETE, "/admin/v1/keys/key_nope", None).await.unwrap();
    assert_eq!(s, 404);
    // Block is recorded with actor and reason.
    w.admin
        .expect(Method::POST, "/admin/v1/accounts/a1/block", Some(json!({"reason": "looks automated"})))
        .await
        .unwrap();
    let v = w.admin.expect(Method::GET, "/admin/v1/accounts/a1", None).await.unwrap();
    assert_eq!(v["status"], "blocked");
    assert_eq!(v["status_reason"], "looks automated");
    let actions = v["actions"].as_array().unwrap();
    assert!(actions
        .iter()
        .any(|a| a["action"] == "block" && a["actor"] == "tester" && a["reason"] == "looks automated"));
    let list = w.admin.expect(Method::GET, "/admin/v1/accounts", None).await.unwrap();
    assert_eq!(list["accounts"].as_array().unwrap().len(), 1);
    assert!(!list.to_string().contains(ADMIN_TOKEN));
    w.stop().await;
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_status_without_secrets() {
    let mock = mock_llm::spawn(MockOptions::default()).await.unwrap();
    let w = Warden::start(&mock.base_url()).await;
    let key = w.account("acme").await;
    w.post("/v1/chat/completions", &key, chat_body("hi", false)).await;
    w.post("/v1/chat/completions", "wk-bad", chat_body("hi", false)).await;
    w.send(Method::GET, "/v1/models", &key, None, &[]).await;
    let r = w.http.send(Method::GET, &format!("http://{}/metrics", w.admin_addr), &[], None).await.unwrap();
    let text = String::from_utf8_lossy(&r.body).to_string();
    for want in [
        "warden_requests_total{route=\"chat_completions\",status=\"200\"} 1",
        "warden_requests_total{route=\"chat_completions\",status=\"401\"} 1",
        "warden_requests_total{route=\"models\",status=\"200\"} 1",
        "warden_request_duration_seconds_bucket",
        "warden_upstream_first_byte_seconds_bucket",
        "warden_upstream_duration_seconds_count{route=\"chat_completions\"} 1",
        "warden_in_flight_requests 0",
        "warden_tokens_total{kind=\"completion\"}",
    ] {
        assert!(text.contains(want), "missing {want} in\n{text}");
    }
    assert!(!text.contains(&key) && !text.contains("acme") && !text.contains("wk-bad"));
    w.stop().await;
}

/// An upstream that answers every request on a connection with a small JSON body and
/// keeps the connection open, except that it hangs up right after the response that
/// follows a call to `close_after_next`, as a provider whose keep-alive expired does.
/// Counts the connections it accepted.
struct KeepAliveUpstream {
    url: String,
    accepted: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    close_next: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl KeepAliveUpstream {
    async fn start() -> KeepAliveUpstream {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        use std::sync::Arc;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let accepted = Arc::new(AtomicUsize::new(0));
        let close_next = Arc::new(AtomicBool::new(false));
        let (a, c) = (accepted.clone(), close_next.clone());
        tokio::spawn(async move {
            loop {
                let (mut sock, _) = listener.accept().await.unwrap();
                a.fetch_add(1, Ordering::SeqCst);
                let c = c.clone();
                tokio::spawn(async move {
                    let mut got = Vec::new();
                    let mut buf = vec![0u8; 65536];
                    loop {
                        // One request: head, then content-length bytes of body.
                        let total = loop {
                            let text = String::from_utf8_lossy(&got).to_string();
                            if let Some(end) = text.find("\r\n\r\n") {
                                let len: usize = text[..end]
                                    .lines()
                                    .find_map(|l| {
                                        l.to_ascii_lowercase()
                                            .strip_prefix("content-length:")
                                            .map(|v| v.trim().parse().unwrap())
                                    })
                                    .unwrap_or(0);
                                if got.len() >= end + 4 + len {
                                    break end + 4 + len;
                                }
                            }
                            match sock.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => got.extend_from_slice(&buf[..n]),
                            }
                        };
                        got.drain(..total);
                        let body = r#"{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}"#;
                        let resp = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if sock.write_all(resp.as_bytes()).await.is_err() {
                            return;
                        }
                        if c.swap(false, Ordering::SeqCst) {
                            // Hang up without a word a little later, as a keep-alive
                            // timeout does: warden has pooled the connection by then.
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            return;
                        }
                    }
                });
            }
        });
        KeepAliveUpstream { url, accepted, close_next }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[tokio::test]
async fn upstream_connections_are_reused_and_one_the_upstream_closed_is_replaced_unnoticed() {
    let up = KeepAliveUpstream::start().await;
    let w = Warden::start_with(&up.url, Extra { server: "workers = 1", ..Extra::default() }).await;
    let key = w.account("acme").await;
    for i in 0..10 {
        let r = w.post("/v1/chat/completions", &key, chat_body(&format!("q{i}"), false)).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
    }
    assert_eq!(up.accepted(), 1, "ten requests in a row should share one upstream connection");

    // The upstream hangs up after the next response; the request after it must not see
    // that, and goes out on a new connection.
    up.close_next.store(true, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(w.post("/v1/chat/completions", &key, chat_body("last on the old one", false)).await.status, 200);
    tokio::time::sleep(Duration::from_millis(50)).await;
    for i in 0..3 {
        let r = w.post("/v1/chat/completions", &key, chat_body(&format!("after {i}"), false)).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
    }
    assert_eq!(up.accepted(), 2);
    let metrics = w.http.send(Method::GET, &format!("http://{}/metrics", w.admin_addr), &[], None).await.unwrap();
    assert!(String::from_utf8_lossy(&metrics.body).contains("warden_upstream_connections_total 2"));
    w.stop().await;
}

/// Reads one HTTP/1.1 response (head and a content-length body) from a raw connection.
async fn read_response(s: &mut tokio::net::TcpStream) -> (String, String) {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        let n = s.read(&mut byte).await.unwrap();
        assert_eq!(n, 1, "connection closed before a full response head: {:?}", String::from_utf8_lossy(&buf));
        buf.push(byte[0]);
    }
    let head = String::from_utf8(buf).unwrap().to_ascii_lowercase();
    let len: usize =
        head.lines().find_map(|l| l.strip_prefix("content-length: ")).map(|v| v.trim().parse().unwrap()).unwrap_or(0);
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).await.unwrap();
    (head, String::from_utf8(body).unwrap())
}

/// A request refused before warden read its body (here 401, and 403 for a blocked
/// account) must not cost the client its keep-alive connection: clients such as the
/// OpenAI SDKs write headers and body separately, and the next request on the same
/// connection has to work. A body over the limit (declared, or found so while reading) or
/// held back for `100 Continue` is not read, and the response says the connection closes.
#[tokio::test]
async fn a_request_refused_before_its_body_was_read_keeps_the_connection_usable() {
    let mock = mock_llm::spawn(MockOptions::default()).await.unwrap();
    let w = Warden::start_with(&mock.base_url(), Extra { server: "max_body_bytes = 4096", ..Extra::default() }).await;
    let key = w.account("acme").await;
    let blocked = w.account("blocked").await;
    w.admin.expect(Method::POST, "/admin/v1/accounts/blocked/block", Some(json!({"reason": "test"}))).await.unwrap();
    let body = chat_body("What is the capital of France?", false).to_string();
    let head = |key: &str, len: usize, extra: &str| {
        format!(
            "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {key}\r\n\
             content-type: application/json\r\ncontent-length: {len}\r\n{extra}\r\n"
        )
    };
    for (refused_key, status) in [("wk-not-a-key", "401"), (blocked.as_str(), "403")] {
        let mut s = tokio::net::TcpStream::connect(w.proxy).await.unwrap();
        s.set_nodelay(true).unwrap();
        for round in 0..3 {
            // Refused: the head first, the body a moment later, in a write of its own.
            s.write_all(head(refused_key, body.len(), "").as_bytes()).await.unwrap();
            tokio::time::sleep(Duration::from_millis(30)).await;
            s.write_all(body.as_bytes()).await.unwrap();
            let (h, b) = read_response(&mut s).await;
            assert!(h.starts_with(&format!("http/1.1 {status}")), "round {round}: {h}{b}");
            assert!(!h.contains("connection: close"), "{h}");
            // The same connection then serves a valid request.
            s.write_all(head(&key, body.len(), "").as_bytes()).await.unwrap();
            s.write_all(body.as_bytes()).await.unwrap();
            let (h, b) = read_response(&mut s).await;
            assert!(h.starts_with("http/1.1 200"), "round {round} after {status}: {h}{b}");
            assert!(b.contains("chat.completion"), "{b}");
        }
    }

    // Declared over the limit: 413 at once, nothing read, and the connection closes.
    let mut s = tokio::net::TcpStream::connect(w.proxy).await.unwrap();
    s.write_all(head(&key, 1 << 20, "").as_bytes()).await.unwrap();
    let (h, b) = read_response(&mut s).await;
    assert!(h.starts_with("http/1.1 413"), "{h}{b}");
    assert!(h.contains("connection: close"), "{h}");
    let mut rest = Vec::new();
    assert_eq!(tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest)).await.unwrap().unwrap(), 0);

    // Chunked, and past the limit only once read: 413, the rest unread, and the connection closes.
    let mut s = tokio::net::TcpStream::connect(w.proxy).await.unwrap();
    s.set_nodelay(true).unwrap();
    let chunked = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {key}\r\n\
         content-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n"
    );
    s.write_all(chunked.as_bytes()).await.unwrap();
    for _ in 0..4 {
        // The server may answer and stop reading before the last chunks.
        if s.write_all(format!("800\r\n{}\r\n", "a".repeat(0x800)).as_bytes()).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (h, b) = read_response(&mut s).await;
    assert!(h.starts_with("http/1.1 413"), "{h}{b}");
    assert!(h.contains("connection: close"), "{h}");

    // A client waiting for `100 Continue` gets the refusal instead, and a closing connection.
    let mut s = tokio::net::TcpStream::connect(w.proxy).await.unwrap();
    s.write_all(head("wk-not-a-key", body.len(), "expect: 100-continue\r\n").as_bytes()).await.unwrap();
    let (h, b) = read_response(&mut s).await;
    assert!(h.starts_with("http/1.1 401"), "{h}{b}");
    assert!(h.contains("connection: close"), "{h}");
    w.stop().await;
}

/// The admin listener too: a 401 (wrong token) or a 404 (no such route) answered without
/// reading a body that came in its own write leaves the connection usable.
#[tokio::test]
async fn the_admin_listener_keeps_the_connection_after_refusing_an_unread_body() {
    let mock = mock_llm::spawn(MockOptions::default()).await.unwrap();
    let w = Warden::start(&mock.base_url()).await;
    let body = json!({"id": "acme"}).to_string();
    let head = |path: &str, token: &str, len: usize| {
        format!(
            "POST {path} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\n\
             content-type: application/json\r\ncontent-length: {len}\r\n\r\n"
        )
    };
    let mut s = tokio::net::TcpStream::connect(w.admin_addr).await.unwrap();
    s.set_nodelay(true).unwrap();
    for (path, token, status) in [("/admin/v1/accounts", "not-the-token", "401"), ("/nothing/here", ADMIN_TOKEN, "404")]
    {
        for round in 0..3 {
            s.write_all(head(path, token, body.len()).as_bytes()).await.unwrap();
            tokio::time::sleep(Duration::from_millis(30)).await;
            s.write_all(body.as_bytes()).await.unwrap();
            let (h, b) = read_response(&mut s).await;
            assert!(h.starts_with(&format!("http/1.1 {status}")), "round {round}: {h}{b}");
            s.write_all(b"GET /admin/v1/accounts HTTP/1.1\r\nhost: x\r\n").await.unwrap();
            s.write_all(format!("authorization: Bearer {ADMIN_TOKEN}\r\n\r\n").as_bytes()).await.unwrap();
            let (h, b) = read_response(&mut s).await;
            assert!(h.starts_with("http/1.1 200"), "round {round} after {status}: {h}{b}");
            assert!(b.contains("\"accounts\""), "{b}");
        }
    }
    w.stop().await;
}
