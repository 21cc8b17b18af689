//! The audit log: one record per request whatever its outcome, durable across SIGTERM and
//! (within the flush interval) SIGKILL, secret-free, rotated, retained, queryable.

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Method;
use serde_json::{json, Value};
use support::process::{send_signal, start_mock, start_warden};
use support::{chat_body, open_stream, read_audit, Extra, Warden, ADMIN_TOKEN, UPSTREAM_KEY};
use warden::client::HttpClient;
use warden::mock_llm::{self, MockOptions};

fn by_request_id(records: &[Value]) -> HashMap<String, Vec<Value>> {
    let mut m: HashMap<String, Vec<Value>> = HashMap::new();
    for r in records {
        m.entry(r["request_id"].as_str().unwrap().to_string()).or_default().push(r.clone());
    }
    m
}

#[tokio::test]
async fn every_request_has_exactly_one_record_with_the_right_fields() {
    let mock = mock_llm::spawn(MockOptions::default()).await.unwrap();
    let w = Warden::start_with(
        &mock.base_url(),
        Extra { server: "max_body_bytes = 2000", audit: "capture = \"full\"", ..Extra::default() },
    )
    .await;
    let key = w.account("acme").await;
    let blocked_key = w.account("mallory").await;
    w.admin.expect(Method::POST, "/admin/v1/accounts/mallory/block", Some(json!({"reason": "t"}))).await.unwrap();

    let send = |id: &'static str, key: String, body: Option<Bytes>, extra: Vec<(&'static str, &'static str)>| {
        let w = &w;
        async move {
            let mut h = vec![("x-request-id", id), ("user-agent", "audit-test/1.0")];
            h.extend(extra);
            w.send(Method::POST, "/v1/chat/completions", &key, body, &h).await
        }
    };
    let json_body = |v: Value| Some(Bytes::from(v.to_string()));
    assert_eq!(send("ok-plain", key.clone(), json_body(chat_body("hello there", false)), vec![]).await.status, 200);
    assert_eq!(send("ok-stream", key.clone(), json_body(chat_body("stream it", true)), vec![]).await.status, 200);
    assert_eq!(send("bad-key", "wk-nope".into(), json_body(chat_body("x", false)), vec![]).await.status, 401);
    assert_eq!(send("blocked", blocked_key.clone(), json_body(chat_body("x", false)), vec![]).await.status, 403);
    assert_eq!(send("malformed", key.clone(), Some(Bytes::from_static(b"{\"model\":")), vec![]).await.status, 400);
    assert_eq!(send("too-big", key.clone(), json_body(chat_body(&"y".repeat(3000), false)), vec![]).await.status, 413);
    assert_eq!(
        send("upstream-500", key.clone(), json_body(chat_body("x", false)), vec![("x-mock-status", "500")])
            .await
            .status,
        500
    );
    // A stream the client abandons after the first chunk.
    let auth = format!("Bearer {key}");
    let mut s = open_stream(
        &w.url("/v1/chat/completions"),
        &[
            ("authorization", &auth),
            ("x-request-id", "aborted"),
            ("user-agent", "audit-test/1.0"),
            ("x-mock-chunk-interval-ms", "50"),
            ("x-mock-chunks", "40"),
        ],
        chat_body("a long one", true),
    )
    .await;
    s.next_data().await.unwrap();
    drop(s);
    tokio::time::sleep(Duration::from_millis(200)).await;

    let dir = w.stop().await;
    let records = read_audit(&dir.path().join("audit"));
    let by_id = by_request_id(&records);
    let expect = [
        ("ok-plain", 200, "allowed", "complete"),
        ("ok-stream", 200, "allowed", "complete"),
        ("bad-key", 401, "unauthenticated", "refused"),
        ("blocked", 403, "blocked", "refused"),
        ("malformed", 400, "invalid_request", "refused"),
        ("too-big", 413, "invalid_request", "refused"),
        ("upstream-500", 500, "allowed", "complete"),
        ("aborted", 200, "allowed", "client_aborted"),
    ];
    assert_eq!(records.len(), expect.len(), "{records:#?}");
    for (id, status, decision, ending) in expect {
        let recs = by_id.get(id).unwrap_or_else(|| panic!("no record for {id}"));
        assert_eq!(recs.len(), 1, "{id}: {recs:#?}");
        let r = &recs[0];
        assert_eq!(r["status"], status, "{id}: {r}");
        assert_eq!(r["decision"], decision, "{id}: {r}");
        assert_eq!(r["ending"], ending, "{id}: {r}");
        assert_eq!(r["user_agent"], "audit-test/1.0");
        assert_eq!(r["client_ip"], "127.0.0.1");
        assert_eq!(r["method"], "POST");
        assert_eq!(r["path"], "/v1/chat/completions");
        assert!(r["ts"].as_str().unwrap().ends_with('Z'));
        assert!(r["latency_ms"].is_u64());
    }
    let ok = &by_id["ok-plain"][0];
    assert_eq!(ok["account_id"], "acme");
    assert!(ok["key_id"].as_str().unwrap().starts_with("key_"));
    assert_eq!(ok["model"], "mock-small");
    assert_eq!(ok["stream"], false);
    assert!(ok["usage"]["completion_tokens"].as_u64().unwrap() > 0);
    assert_eq!(ok["request_body"]["messages"][0]["content"], "hello there");
    assert!(!ok["completion_text"].as_str().unwrap().is_empty());
    let st = &by_id["ok-stream"][0];
    assert_eq!(st["stream"], true);
    assert_eq!(st["usage"]["completion_tokens"], 16);
    assert_eq!(st["completion_text"].as_str().unwrap().split_whitespace().count(), 16);
    let ab = &by_id["aborted"][0];
    assert_eq!(ab["usage_estimated"], true);
    assert!(ab["usage"]["completion_tokens"].as_u64().unwrap() >= 1);
    assert!(by_id["bad-key"][0]["account_id"].is_null());
    assert_eq!(by_id["blocked"][0]["account_id"], "mallory");
    assert!(by_id["malformed"][0]["reason"].as_str().unwrap().contains("JSON"));
}

#[tokio::test]
async fn reviewers_read_an_accounts_recent_requests_newest_first() {
    let mock = mock_llm::spawn(MockOptions::default()).await.unwrap();
    let w = Warden::start_with(&mock.base_url(), Extra { audit: "capture = \"full\"", ..Extra::default() }).await;
    let key = w.account("acme").await;
    let other = w.account("other").await;
    for i in 0..5 {
        w.post("/v1/chat/completions", &key, chat_body(&format!("question {i}"), false)).await;
        w.post("/v1/chat/completions", &other, chat_body("noise", false)).await;
    }
    // Records reach the index within a batch of their request's end: wait for all five.
    for _ in 0..200 {
        let all = w.admin.expect(Method::GET, "/admin/v1/accounts/acme/requests?limit=100", None).await.unwrap();
        if all["requests"].as_array().unwrap().len() == 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let got = w.admin.expect(Method::GET, "/admin/v1/accounts/acme/requests?limit=3", None).await.unwrap();
    let reqs = got["requests"].as_array().unwrap();
    assert_eq!(reqs.len(), 3);
    let prompts: Vec<&str> =
        reqs.iter().map(|r| r["request_body"]["messages"][0]["content"].as_str().unwrap()).collect();
    assert_eq!(prompts, ["question 4", "question 3", "question 2"]);
    assert!(reqs.iter().all(|r| r["account_id"] == "acme"));
    // `since` in the future returns nothing; an unknown account is a 404.
    let later =
        w.admin.expect(Method::GET, "/admin/v1/accounts/acme/requests?since=2999-01-01T00:00:00Z", None).await.unwrap();
    assert_eq!(later["requests"].as_array().unwrap().len(), 0);
    let (status, _) = w.admin.call(Method::GET, "/admin/v1/accounts/ghost/requests", None).await.unwrap();
    assert_eq!(status, 404);
    w.stop().await;
}

#[tokio::test]
async fn files_rotate_by_size_and_old_files_are_deleted() {
    let mock = mock_llm::spawn(MockOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("audit");
    std::fs::create_dir_all(&old).unwrap();
    std::fs::write(old.join("audit-2020-01-01.jsonl"), "{}\n").unwrap();
    std::fs::write(old.join("audit-2020-01-02.3.jsonl"), "{}\n").unwrap();
    std::fs::write(old.join("unrelated.txt"), "keep me").unwrap();
    let w = Warden::start_in(
        &mock.base_url(),
        Extra { audit: "max_file_bytes = 4096\nretention_days = 7\ncapture = \"none\"", ..Extra::default() },
        dir,
    )
    .await;
    let audit = w.dir.path().join("audit");
    let key = w.account("acme").await;
    for i in 0..60 {
        let r = w.post("/v1/chat/completions", &key, chat_body(&format!("n{i}"), false)).await;
        assert_eq!(r.status, 200);
    }
    let _dir = w.stop().await;
    let names: Vec<String> =
        std::fs::read_dir(&audit).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert!(!names.iter().any(|n| n.starts_with("audit-2020")), "retention did not delete: {names:?}");
    assert!(names.contains(&"unrelated.txt".to_string()));
    let logs: Vec<&String> = names.iter().filter(|n| n.ends_with(".jsonl")).collect();
    assert!(logs.len() >= 3, "expected several rotated files: {names:?}");
    for n in &logs {
        let len = std::fs::metadata(audit.join(n)).unwrap().len();
        assert!(len <= 4096, "{n} is {len} bytes");
    }
    assert_eq!(read_audit(&audit).len(), 60);
}

/// Drives `clients` loops of requests with known ids against a real warden process until
/// `stop` is set; returns (request id, time the response completed) for each success.
async fn load(
    proxy: String,
    key: String,
    clients: usize,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> Vec<(String, Instant)> {
    let done = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (proxy, key, stop, done) = (proxy.clone(), key.clone(), stop.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let http = HttpClient::new();
            let auth = format!("Bearer {key}");
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let id = format!("load-{c}-{i}");
                i += 1;
                let body = Bytes::from(chat_body("load", false).to_string());
                let r = http
                    .send(
                        Method::POST,
                        &format!("http://{proxy}/v1/chat/completions"),
                        &[("authorization", &auth), ("x-request-id", &id)],
                        Some(body),
                    )
                    .await;
                match r {
                    Ok(r) if r.status == 200 => done.lock().unwrap().push((id, Instant::now())),
                    _ => break,
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let v = done.lock().unwrap().clone();
    v
}

async fn admin_create(admin: &str) -> String {
    let a = warden::client::AdminClient::new(&format!("http://{admin}"), ADMIN_TOKEN, "t");
    a.expect(Method::POST, "/admin/v1/accounts", Some(json!({"id": "load"}))).await.unwrap();
    a.expect(Method::POST, "/admin/v1/accounts/load/keys", None).await.unwrap()["key"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_loses_nothing_and_sigkill_at_most_the_flush_interval() {
    let (_mock, upstream) = start_mock(&[]);

    // SIGTERM: every answered request is recorded, exactly once.
    let dir = tempfile::tempdir().unwrap();
    let (mut proc, proxy, admin) = start_warden(dir.path(), &upstream, "", "capture = \"full\"");
    let key = admin_create(&admin).await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let driver = tokio::spawn(load(proxy.clone(), key.clone(), 8, stop.clone()));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    send_signal(proc.0.id(), "TERM");
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let answered = driver.await.unwrap();
    assert!(proc.0.wait().unwrap().success());
    assert!(answered.len() > 50, "only {} requests answered", answered.len());
    let by_id = by_request_id(&read_audit(&dir.path().join("audit")));
    for (id, _) in &answered {
        assert_eq!(by_id.get(id).map(Vec::len), Some(1), "{id} not recorded exactly once");
    }

    // SIGKILL: only records of the last flush interval (1 s) may be missing.
    let dir = tempfile::tempdir().unwrap();
    let (mut proc, proxy, admin) =
        start_warden(dir.path(), &upstream, "", "capture = \"full\"\nflush_interval_ms = 1000");
    let key = admin_create(&admin).await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let driver = tokio::spawn(load(proxy.clone(), key.clone(), 8, stop.clone()));
    tokio::time::sleep(Duration::from_millis(2000)).await;
    send_signal(proc.0.id(), "KILL");
    let killed_at = Instant::now();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let answered = driver.await.unwrap();
    let _ = proc.0.wait();
    let by_id = by_request_id(&read_audit(&dir.path().join("audit")));
    let lost: Vec<&(String, Instant)> = answered.iter().filter(|(id, _)| !by_id.contains_key(id)).collect();
    let last_second = answered.iter().filter(|(_, t)| killed_at.duration_since(*t) <= Duration::from_secs(1)).count();
    eprintln!("SIGKILL: {} answered, {} lost, {} answered in the last second", answered.len(), lost.len(), last_second);
    assert!(lost.len() <= last_second, "lost {} records, more than the last second's {}", lost.len(), last_second);
    assert!(lost.iter().all(|(_, t)| killed_at.duration_since(*t) <= Duration::from_secs(1)), "an old record was lost");
    assert!(by_id.values().all(|v| v.len() == 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_file_warden_writes_contains_a_raw_key() {
    let (_mock, upstream) = start_mock(&[]);
    let dir = tempfile::tempdir().unwrap();
    let (mut proc, proxy, admin) = start_warden(dir.path(), &upstream, "", "capture = \"full\"");
    let key = admin_create(&admin).await;
    let http = HttpClient::new();
    let wrong = "wk-0123456789abcdef0123456789abcdef-wrong";
    for (k, body) in [
        (key.as_str(), chat_body("hi", false)),
        (key.as_str(), chat_body("hi", true)),
        (wrong, chat_body("hi", false)),
        (key.as_str(), json!("not an object")),
    ] {
        for header in ["authorization", "x-api-key"] {
            let value = if header == "authorization" { format!("Bearer {k}") } else { k.to_string() };
            http.send(
                Method::POST,
                &format!("http://{proxy}/v1/chat/completions"),
                &[(header, &value)],
                Some(Bytes::from(body.to_string())),
            )
            .await
            .unwrap();
        }
    }
    send_signal(proc.0.id(), "TERM");
    assert!(proc.0.wait().unwrap().success());
    let mut checked = 0;
    for entry in walk(dir.path()) {
        let data = std::fs::read(&entry).unwrap();
        let text = String::from_utf8_lossy(&data);
        for secret in [key.as_str(), wrong, UPSTREAM_KEY, ADMIN_TOKEN] {
            // The config file names environment variables, never their values.
            assert!(!text.contains(secret), "{} contains a secret", entry.display());
        }
        checked += 1;
    }
    assert!(checked >= 4, "expected config, log, database and audit files; saw {checked}");
    let log = std::fs::read_to_string(dir.path().join("warden.log")).unwrap();
    assert!(log.contains("request finished"), "the access log was not written");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
