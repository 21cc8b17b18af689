//! Audit records keep their exact bytes: a fixed sequence of requests (served, streamed,
//! refused for each reason, stripped, failed upstream) is recorded, the fields that differ
//! run to run (time, ids, latency) are blanked, and the lines are compared with
//! `tests/golden/audit.jsonl`, byte for byte. A change to the record format shows here
//! first; `WARDEN_BLESS=1 cargo test --test golden` rewrites the file (review its diff).

mod support;

use bytes::Bytes;
use http::Method;
use serde_json::json;
use support::{chat_body, Extra, Warden};
use warden::mock_llm::{self, MockOptions};

fn blank(line: &str) -> String {
    let re = regex::Regex::new(
        r#""(ts|request_id|key_id)":"[^"]*"|"latency_ms":\d+|"(prompt_hash|completion_hash)":"[^"]*""#,
    )
    .unwrap();
    re.replace_all(line, |c: &regex::Captures| {
        let name = c.get(1).or_else(|| c.get(2)).map(|m| m.as_str()).unwrap_or("latency_ms");
        match name {
            "latency_ms" => "\"latency_ms\":0".to_string(),
            n if n.ends_with("_hash") => c[0].to_string(),
            n => format!("\"{n}\":\"-\""),
        }
    })
    .into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_records_keep_their_bytes() {
    let mock = mock_llm::spawn(MockOptions::default()).await.unwrap();
    let tail = r#"
        logprobs = "strip"
        [[tiers]]
        name = "slow"
        requests_per_minute = 1
        burst = 1
    "#;
    let w = Warden::start_with(
        &format!("http://{}", mock.addr),
        Extra { audit: "capture = \"full\"", tail, ..Extra::default() },
    )
    .await;
    let key = w.account("acme").await;
    w.admin.call(Method::POST, "/admin/v1/accounts", Some(json!({"id": "slowpoke", "tier": "slow"}))).await.unwrap();
    let slow = w.key("slowpoke").await;

    let chat = |p: &str| Bytes::from(chat_body(p, false).to_string());
    type Request<'a> = (Method, &'a str, &'a str, Option<Bytes>, Vec<(&'a str, &'a str)>);
    let seq: Vec<Request> = vec![
        (Method::POST, "/v1/chat/completions", &key, Some(chat("hello there")), vec![]),
        (
            Method::POST,
            "/v1/chat/completions",
            &key,
            Some(Bytes::from(chat_body("stream me", true).to_string())),
            vec![],
        ),
        (Method::POST, "/v1/chat/completions", "sk-wrong", Some(chat("who am i")), vec![]),
        (Method::POST, "/v1/nowhere", &key, Some(chat("x")), vec![]),
        (Method::POST, "/v1/chat/completions", &key, Some(Bytes::from_static(b"{not json")), vec![]),
        (
            Method::POST,
            "/v1/chat/completions",
            &key,
            Some(Bytes::from(
                json!({"model": "mock-small", "logprobs": true, "messages": [{"role": "user", "content": "strip"}]})
                    .to_string(),
            )),
            vec![],
        ),
        (Method::POST, "/v1/chat/completions", &key, Some(chat("fail")), vec![("x-mock-status", "500")]),
        (Method::GET, "/v1/models", &key, None, vec![]),
        (
            Method::POST,
            "/v1/embeddings",
            &key,
            Some(Bytes::from(json!({"model": "mock-embed", "input": "abc"}).to_string())),
            vec![],
        ),
        (Method::POST, "/v1/chat/completions", &slow, Some(chat("one")), vec![]),
        (Method::POST, "/v1/chat/completions", &slow, Some(chat("two")), vec![]),
    ];
    for (method, path, k, body, headers) in seq {
        let r = w.send(method, path, k, body, &headers).await;
        assert!(r.status.as_u16() >= 200, "{path}");
    }
    let dir = w.stop().await;
    let mut files: Vec<_> = std::fs::read_dir(dir.path().join("audit")).unwrap().map(|e| e.unwrap().path()).collect();
    files.retain(|p| p.extension().is_some_and(|x| x == "jsonl"));
    files.sort();
    let mut got = String::new();
    for f in files {
        for line in std::fs::read_to_string(f).unwrap().lines() {
            got.push_str(&blank(line));
            got.push('\n');
        }
    }
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/audit.jsonl");
    if std::env::var_os("WARDEN_BLESS").is_some() {
        std::fs::write(&path, &got).unwrap();
    }
    let want = std::fs::read_to_string(&path).expect("tests/golden/audit.jsonl (WARDEN_BLESS=1 writes it)");
    assert_eq!(got.lines().count(), 11, "{got}");
    for (g, w) in got.lines().zip(want.lines()) {
        assert_eq!(g, w);
    }
    assert_eq!(got, want);
}
