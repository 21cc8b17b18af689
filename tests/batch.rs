//! The Files and Batch APIs through warden, over real sockets: batch files read line by
//! line and checked like requests, refused batches cut off before the provider has them,
//! quotas reserved, the detector fed, and every file and batch served to its owner only.

mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Method;
use serde_json::{json, Value};
use support::{read_audit, Extra, Warden};
use warden::mock_llm::{self, MockOptions};

const TIER: &str = r#"allowed_models = ["mock-small"]
max_n = 2
logprobs = "strip"
tokens_per_day = 20000
default_max_tokens = 100"#;

fn line(i: usize, body: Value) -> String {
    json!({"custom_id": format!("r{i}"), "method": "POST", "url": "/v1/chat/completions", "body": body}).to_string()
}

fn chat(i: usize) -> Value {
    json!({"model": "mock-small", "max_tokens": 50, "messages": [{"role": "user", "content": format!("question number {i}")}]})
}

/// A multipart upload of `content` as `filename`, the purpose before or after the file.
fn multipart(purpose: &str, filename: &str, content: &str, purpose_first: bool) -> (String, Bytes) {
    let boundary = "----warden-test-boundary-7d1f";
    let purpose_part = format!("--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\n{purpose}\r\n");
    let file_part = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\nContent-Type: application/jsonl\r\n\r\n{content}\r\n"
    );
    let body = if purpose_first {
        format!("{purpose_part}{file_part}--{boundary}--\r\n")
    } else {
        format!("{file_part}{purpose_part}--{boundary}--\r\n")
    };
    (format!("multipart/form-data; boundary={boundary}"), Bytes::from(body))
}

async fn upload(
    w: &Warden,
    key: &str,
    purpose: &str,
    filename: &str,
    content: &str,
    first: bool,
) -> warden::client::Reply {
    let (content_type, body) = multipart(purpose, filename, content, first);
    let auth = format!("Bearer {key}");
    let headers = [("authorization", auth.as_str()), ("content-type", content_type.as_str())];
    w.http.send(Method::POST, &w.url("/v1/files"), &headers, Some(body)).await.unwrap()
}

/// Whether the mock upstream holds a file of that name (asked directly, not through warden).
async fn upstream_has(w: &Warden, mock: &str, filename: &str) -> bool {
    // Each test file name is unique; the mock's own list route narrows by name.
    let r = w.http.send(Method::GET, &format!("{mock}/v1/files?filename={filename}"), &[], None).await.unwrap();
    r.json()["data"].as_array().is_some_and(|d| !d.is_empty())
}

async fn detector_events(w: &Warden) -> f64 {
    let r = w.http.send(Method::GET, &format!("http://{}/metrics", w.admin_addr), &[], None).await.unwrap();
    String::from_utf8_lossy(&r.body)
        .lines()
        .find_map(|l| l.strip_prefix("warden_detector_events_total ").map(|v| v.trim().parse().unwrap()))
        .unwrap()
}

#[tokio::test]
async fn a_batch_file_is_checked_reserved_and_served_to_its_owner_only() {
    let mock = mock_llm::spawn(MockOptions::default()).await.unwrap();
    let w = Warden::start_with(&mock.base_url(), Extra { tail: TIER, ..Extra::default() }).await;
    let key = w.account("acme").await;
    let mallory = w.account("mallory").await;
    let events_before = detector_events(&w).await;

    let lines: Vec<String> = (0..40).map(|i| line(i, chat(i))).collect();
    let r = upload(&w, &key, "batch", "acme-good.jsonl", &lines.join("\n"), true).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let file = r.json();
    let file_id = file["id"].as_str().unwrap().to_string();
    assert_eq!(file["purpose"], "batch");
    assert!(upstream_has(&w, &mock.base_url(), "acme-good.jsonl").await);
    // Every line reached the detector as one of the account's requests.
    let deadline = Instant::now() + Duration::from_secs(5);
    while detector_events(&w).await < events_before + 40.0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(detector_events(&w).await >= events_before + 40.0);

    // The owner creates, retrieves and reads its batch; nobody else can touch any of it.
    let create = json!({"input_file_id": file_id, "endpoint": "/v1/chat/completions", "completion_window": "24h"});
    let r = w.post("/v1/batches", &mallory, create.clone()).await;
    assert_eq!(r.status, 404, "another account's file cannot start a batch: {:?}", r.body);
    assert_eq!(r.json()["error"]["code"], "not_found");
    let r = w.post("/v1/batches", &key, create).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let batch_id = r.json()["id"].as_str().unwrap().to_string();
    let r = w.send(Method::GET, &format!("/v1/batches/{batch_id}"), &key, None, &[]).await;
    assert_eq!(r.status, 200);
    let batch = r.json();
    assert_eq!(batch["status"], "completed");
    let output = batch["output_file_id"].as_str().unwrap().to_string();
    let r = w.send(Method::GET, &format!("/v1/files/{output}/content"), &key, None, &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(String::from_utf8_lossy(&r.body).lines().count(), 40);
    for path in [
        format!("/v1/files/{file_id}"),
        format!("/v1/files/{file_id}/content"),
        format!("/v1/files/{output}/content"),
        format!("/v1/batches/{batch_id}"),
    ] {
        let r = w.send(Method::GET, &path, &mallory, None, &[]).await;
        assert_eq!(r.status, 404, "{path}");
        assert!(r.json()["error"]["message"].as_str().unwrap().starts_with("No such"), "{:?}", r.body);
    }
    let r = w.send(Method::POST, &format!("/v1/batches/{batch_id}/cancel"), &mallory, None, &[]).await;
    assert_eq!(r.status, 404);
    assert_eq!(w.send(Method::DELETE, &format!("/v1/files/{file_id}"), &mallory, None, &[]).await.status, 404);
    let r = w.send(Method::POST, &format!("/v1/batches/{batch_id}/cancel"), &key, None, &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["status"], "cancelling");

    // An LLM request may refer only to the account's own files.
    let refer = json!({"model": "mock-small", "input": [{"role": "user", "content": [
        {"type": "input_file", "file_id": file_id}, {"type": "input_text", "text": "summarise"}]}]});
    let r = w.post("/v1/responses", &mallory, refer.clone()).await;
    assert_eq!(r.status, 404, "{:?}", r.body);
    assert!(r.json()["error"]["message"].as_str().unwrap().contains(&file_id));
    assert_eq!(w.post("/v1/responses", &key, refer).await.status, 200);

    // A file uploaded for another purpose is passed as it is, but cannot start a batch.
    let r = upload(&w, &key, "assistants", "acme-notes.txt", "just some notes\nnot JSON", true).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let notes = r.json()["id"].as_str().unwrap().to_string();
    let r = w
        .post(
            "/v1/batches",
            &key,
            json!({"input_file_id": notes, "endpoint": "/v1/chat/completions", "completion_window": "24h"}),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["param"], "input_file_id");

    // The tokens of the first batch (40 × (prompt + 50)) stay reserved against the day's
    // 20000; another of 40 × (prompt + 500) would pass it, and is refused before the
    // provider has it.
    let big: Vec<String> = (0..40)
        .map(|i| {
            line(i, json!({"model": "mock-small", "max_tokens": 500, "messages": [{"role": "user", "content": "q"}]}))
        })
        .collect();
    let r = upload(&w, &key, "batch", "acme-too-big.jsonl", &big.join("\n"), true).await;
    assert_eq!(r.status, 429, "{:?}", r.body);
    assert!(r.json()["error"]["message"].as_str().unwrap().contains("daily token quota"), "{:?}", r.body);
    assert!(!upstream_has(&w, &mock.base_url(), "acme-too-big.jsonl").await);

    let dir = w.stop().await;
    let records = read_audit(&dir.path().join("audit"));
    let good = records.iter().find(|r| r["path"] == "/v1/files" && r["status"] == 200).unwrap();
    assert!(good["reason"].as_str().unwrap().starts_with("batch file: 40 requests"), "{good}");
    assert!(records.iter().any(|r| r["path"] == "/v1/files" && r["status"] == 429 && r["decision"] == "rate_limited"));
}

#[tokio::test]
async fn a_batch_with_any_refused_line_never_reaches_the_provider_whole() {
    let mock = mock_llm::spawn(MockOptions::default()).await.unwrap();
    let w =
        Warden::start_with(&mock.base_url(), Extra { server: "max_body_bytes = 4000", tail: TIER, ..Extra::default() })
            .await;
    let key = w.account("acme").await;
    let good: Vec<String> = (0..3000).map(|i| line(i, chat(i))).collect();
    let cases: Vec<(&str, String, &str)> = vec![
        ("model", line(2, json!({"model": "mock-large", "messages": []})), "`mock-large` is not available"),
        ("n", line(2, json!({"model": "mock-small", "n": 5, "messages": []})), "`n` is 5"),
        (
            "logprobs",
            line(2, json!({"model": "mock-small", "logprobs": true, "messages": []})),
            "`logprobs` is not available",
        ),
        (
            "url",
            json!({"custom_id": "x", "method": "POST", "url": "/v1/fine_tuning/jobs", "body": {}}).to_string(),
            "not one of the LLM routes",
        ),
        ("json", "{not json".to_string(), "not a batch request"),
        (
            "long",
            line(2, json!({"model": "mock-small", "messages": [{"role": "user", "content": "x".repeat(5000)}]})),
            "longer than 4000 bytes",
        ),
    ];
    for (name, bad, message) in cases {
        for purpose_first in [true, false] {
            // The bad line last, after 3000 good ones: the upload spans many frames and
            // the refusal comes at its very end.
            let content = format!("{}\n{bad}\n", good.join("\n"));
            let filename = format!("bad-{name}-{purpose_first}.jsonl");
            let r = upload(&w, &key, "batch", &filename, &content, purpose_first).await;
            assert_eq!(r.status, 400, "{name}: {:?}", String::from_utf8_lossy(&r.body));
            let v = r.json();
            let text = v["error"]["message"].as_str().unwrap();
            assert!(text.starts_with("Batch file line 3001: "), "{name}: {text}");
            assert!(text.contains(message), "{name}: {text}");
            assert_eq!(v["error"]["param"], "file");
            assert!(!upstream_has(&w, &mock.base_url(), &filename).await, "{name}: the provider got the file");
        }
    }
    // The same lines for another purpose are not a batch: passed on as they are.
    let r = upload(&w, &key, "assistants", "not-a-batch.jsonl", "{not json\n", false).await;
    assert_eq!(r.status, 200);
    // No lines, or not multipart at all.
    let r = upload(&w, &key, "batch", "empty.jsonl", "\n\n", true).await;
    assert_eq!(r.status, 400);
    assert!(r.json()["error"]["message"].as_str().unwrap().contains("no requests"));
    let r = w.send(Method::POST, "/v1/files", &key, Some(Bytes::from_static(b"{}")), &[]).await;
    assert_eq!(r.status, 400);
    assert!(r.json()["error"]["message"].as_str().unwrap().contains("multipart/form-data"));
    let dir = w.stop().await;
    let records = read_audit(&dir.path().join("audit"));
    assert_eq!(records.len(), 15);
    assert_eq!(records.iter().filter(|r| r["decision"] == "invalid_request").count(), 14);
}
