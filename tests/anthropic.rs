//! Anthropic's Messages API through warden, over real sockets against the mock upstream:
//! forwarding and streaming, errors and rate-limit headers in Anthropic's shape, limits
//! reserved and reconciled, audit records naming the dialect, the Anthropic routes'
//! own upstream, and reasoning stripped from responses of both dialects.

mod support;

use std::time::Duration;

use bytes::Bytes;
use http::Method;
use serde_json::{json, Value};
use support::{open_stream, read_audit, Extra, Warden, UPSTREAM_KEY};
use warden::mock_llm::{self, MockOptions};

fn messages_body(prompt: &str, stream: bool) -> Value {
    json!({
        "model": "mock-small",
        "max_tokens": 64,
        "stream": stream,
        "system": "You are terse.",
        "messages": [{"role": "user", "content": [{"type": "text", "text": prompt}]}]
    })
}

fn thinking_body(prompt: &str, stream: bool) -> Value {
    let mut b = messages_body(prompt, stream);
    b["max_tokens"] = json!(2048);
    b["thinking"] = json!({"type": "enabled", "budget_tokens": 1024});
    b
}

/// Sends as the `anthropic` SDK does: `x-api-key` and `anthropic-version`.
async fn anthropic(w: &Warden, path: &str, key: &str, body: &Value, headers: &[(&str, &str)]) -> warden::client::Reply {
    let mut h = vec![("x-api-key", key), ("anthropic-version", "2023-06-01"), ("content-type", "application/json")];
    h.extend_from_slice(headers);
    w.http.send(Method::POST, &w.url(path), &h, Some(Bytes::from(body.to_string()))).await.unwrap()
}

/// The same request straight to the mock.
async fn direct(mock: &str, path: &str, body: &Value) -> Value {
    let http = warden::client::HttpClient::new();
    let h = [("x-api-key", "sk-direct"), ("content-type", "application/json")];
    let r = http.send(Method::POST, &format!("{mock}{path}"), &h, Some(Bytes::from(body.to_string()))).await.unwrap();
    assert_eq!(r.status, 200);
    r.json()
}

fn without_ids(mut v: Value) -> Value {
    if let Some(o) = v.as_object_mut() {
        o.remove("id");
    }
    v
}

/// The `data:` of each event of a stream, with the event name it was sent under.
fn events(text: &str) -> Vec<(String, Value)> {
    text.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let name = e.lines().find_map(|l| l.strip_prefix("event: ")).unwrap_or("").to_string();
            let data = e.lines().find_map(|l| l.strip_prefix("data: ")).unwrap_or("null");
            (name, serde_json::from_str(data).unwrap_or(Value::Null))
        })
        .collect()
}

async fn wait_for_records(w: &Warden, n: usize) -> Vec<Value> {
    for _ in 0..300 {
        let records = read_audit(&w.dir.path().join("audit"));
        if records.len() >= n {
            return records;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("fewer than {n} audit records");
}

#[tokio::test]
async fn messages_are_forwarded_and_streamed_unbuffered_with_usage_counted_and_recorded() {
    let mock = mock_llm::spawn(MockOptions::default()).await.unwrap();
    let audit = "flush_interval_ms = 10\ncapture = \"full\"";
    let w = Warden::start_with(&mock.base_url(), Extra { audit, ..Extra::default() }).await;
    let key = w.account("claude-user").await;

    let body = messages_body("Name three rivers in Europe.", false);
    let r = anthropic(&w, "/v1/messages", &key, &body, &[]).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let got = r.json();
    assert_eq!(without_ids(got.clone()), without_ids(direct(&mock.base_url(), "/v1/messages", &body).await));
    assert_eq!(got["type"], "message");
    let (input, output) =
        (got["usage"]["input_tokens"].as_u64().unwrap(), got["usage"]["output_tokens"].as_u64().unwrap());
    assert!(input > 0 && output > 0);
    // Anthropic's request id header, and warden's id in it.
    assert_eq!(r.headers["request-id"], r.headers["x-request-id"]);
    // The account's usage is the upstream's, reconciled.
    w.eventually("claude-user", |u| u["prompt_tokens"] == input && u["completion_tokens"] == output).await;

    // Streamed: the first text delta arrives while the upstream pauses after it.
    let auth = key.clone();
    let mut s = open_stream(
        &w.url("/v1/messages"),
        &[("x-api-key", &auth), ("anthropic-version", "2023-06-01"), ("x-mock-pause-after-first-ms", "1500")],
        messages_body("Name three rivers in Europe.", true),
    )
    .await;
    assert_eq!(s.status, 200);
    assert!(s.headers["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let started = std::time::Instant::now();
    let mut seen = String::new();
    while !seen.contains("text_delta") {
        seen.push_str(std::str::from_utf8(&s.next_data().await.expect("a first delta")).unwrap());
    }
    assert!(started.elapsed() < Duration::from_millis(1000), "the first delta was held back");
    seen.push_str(&s.rest().await);
    let evs = events(&seen);
    let names: Vec<&str> = evs.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.first(), Some(&"message_start"));
    assert_eq!(names.last(), Some(&"message_stop"));
    let text: String = evs.iter().filter_map(|(_, d)| d["delta"]["text"].as_str()).collect();
    assert_eq!(text, got["content"][0]["text"].as_str().unwrap(), "the same text streamed or not");

    // count_tokens: a request, no tokens spent.
    let before = w.usage("claude-user").await;
    let count = json!({"model": "mock-small", "messages": [{"role": "user", "content": "one two three"}]});
    let r = anthropic(&w, "/v1/messages/count_tokens", &key, &count, &[]).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert!(r.json()["input_tokens"].as_u64().unwrap() > 0);
    let after = w.eventually("claude-user", |u| u["requests"] == before["requests"].as_u64().unwrap() + 1).await;
    assert_eq!(after["prompt_tokens"], before["prompt_tokens"], "counting a prompt spends nothing");

    // One record per request, naming the dialect, with usage and the text.
    let records = wait_for_records(&w, 3).await;
    assert_eq!(records.len(), 3, "{records:#?}");
    for r in &records {
        assert_eq!(r["dialect"], "anthropic", "{r}");
        assert_eq!(r["account_id"], "claude-user");
    }
    assert_eq!(records[0]["path"], "/v1/messages");
    assert_eq!(records[0]["usage"]["prompt_tokens"], input);
    assert_eq!(records[0]["completion_text"], got["content"][0]["text"]);
    assert_eq!(records[1]["stream"], true);
    assert_eq!(records[1]["usage"]["completion_tokens"], output);
    assert!(records[1].get("usage_estimated").is_none(), "the stream's own usage: {}", records[1]);
    assert_eq!(records[2]["path"], "/v1/messages/count_tokens");
    assert!(records[2]["usage"].is_null());
    // The raw key is nowhere in what warden wrote.
    let all =
        std::fs::read_to_string(std::fs::read_dir(w.dir.path().join("audit")).unwrap().next().unwrap().unwrap().path())
            .unwrap();
    assert!(!all.contains(&key));
}

#[tokio::test]
async fn warden_errors_on_the_messages_routes_are_anthropic_errors() {
    let mock = mock_llm::spawn(MockOptions::default()).await.unwrap();
    let w = Warden::start(&mock.base_url()).await;
    let key = w.account("ant").await;
    let check = |r: &warden::client::Reply, status: u16, kind: &str| {
        assert_eq!(r.status.as_u16(), status, "{:?}", String::from_utf8_lossy(&r.body));
        let v = r.json();
        assert_eq!(v["type"], "error", "{v}");
        assert_eq!(v["error"]["type"], kind, "{v}");
        assert!(v["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
        assert_eq!(v["request_id"], r.headers["request-id"].to_str().unwrap(), "{v}");
        assert!(v.get("code").is_none() && v["error"].get("code").is_none(), "not OpenAI's shape: {v}");
    };
    let body = messages_body("hi", false);
    check(&anthropic(&w, "/v1/messages", "wk-nope", &body, &[]).await, 401, "authentication_error");
    let r = w.http.send(Method::POST, &w.url("/v1/messages"), &[], Some(Bytes::from(body.to_string()))).await.unwrap();
    check(&r, 401, "authentication_error");
    let h = [("x-api-key", key.as_str()), ("content-type", "application/json")];
    let r =
        w.http.send(Method::POST, &w.url("/v1/messages"), &h, Some(Bytes::from_static(b"{\"model\":"))).await.unwrap();
    check(&r, 400, "invalid_request_error");
    let r = anthropic(&w, "/v1/messages", &key, &json!({"model": "m", "max_tokens": -1, "messages": []}), &[]).await;
    check(&r, 400, "invalid_request_error");
    // A path warden does not serve, under the Anthropic prefix.
    let r = anthropic(&w, "/v1/messages/batches", &key, &json!({}), &[]).await;
    check(&r, 404, "not_found_error");
    w.admin.expect(Method::POST, "/admin/v1/accounts/ant/block", Some(json!({"reason": "test"}))).await.unwrap();
    check(&anthropic(&w, "/v1/messages", &key, &body, &[]).await, 403, "permission_error");
    // The OpenAI routes keep OpenAI's shape.
    let r = w.post("/v1/chat/completions", "wk-nope", support::chat_body("hi", false)).await;
    assert_eq!(r.json()["error"]["code"], "invalid_api_key");
}

#[tokio::test]
async fn messages_reserve_max_tokens_and_answer_429_with_anthropic_headers() {
    let mock = mock_llm::spawn(MockOptions::default()).await.unwrap();
    let tail = r#"
        [[tiers]]
        name = "small"
        requests_per_minute = 1000
        tokens_per_minute = 3000
        "#;
    let w = Warden::start_with(&mock.base_url(), Extra { tail, ..Extra::default() }).await;
    let key = w.account("limited").await;
    w.admin.expect(Method::PATCH, "/admin/v1/accounts/limited", Some(json!({"tier": "small"}))).await.unwrap();

    // A success says where the account stands, as Anthropic does.
    let r = anthropic(&w, "/v1/messages", &key, &messages_body("hello there", false), &[]).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.headers["anthropic-ratelimit-requests-limit"], "1000");
    assert_eq!(r.headers["anthropic-ratelimit-tokens-limit"], "3000");
    let remaining: u64 = r.headers["anthropic-ratelimit-tokens-remaining"].to_str().unwrap().parse().unwrap();
    assert!(remaining < 3000);
    let reset = r.headers["anthropic-ratelimit-tokens-reset"].to_str().unwrap();
    assert!(warden::clock::parse_time(reset).is_some(), "RFC 3339: {reset}");
    assert!(r.headers.get("x-ratelimit-limit-requests").is_none(), "not OpenAI's headers");

    // `max_tokens` is reserved before the call: one that cannot fit is refused.
    let mut big = messages_body("hello", false);
    big["max_tokens"] = json!(2990);
    let r = anthropic(&w, "/v1/messages", &key, &big, &[]).await;
    assert_eq!(r.status, 429, "{:?}", r.body);
    assert_eq!(r.json()["error"]["type"], "rate_limit_error");
    assert!(r.headers["retry-after"].to_str().unwrap().parse::<u64>().unwrap() >= 1);
    assert_eq!(r.headers["anthropic-ratelimit-tokens-remaining"], "0");
    // What was reserved and not used is given back: a small request still fits.
    let u = w.eventually("limited", |u| u["requests"].as_u64() >= Some(2)).await;
    assert!(u["completion_tokens"].as_u64().unwrap() <= 64);
    let r = anthropic(&w, "/v1/messages", &key, &messages_body("again", false), &[]).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
}

#[tokio::test]
async fn a_client_that_leaves_mid_stream_is_charged_what_was_generated() {
    let mock = mock_llm::spawn(MockOptions::default()).await.unwrap();
    let w = Warden::start_with(&mock.base_url(), Extra { audit: "flush_interval_ms = 10", ..Extra::default() }).await;
    let key = w.account("leaver").await;
    let mut body = messages_body("tell me a long story", true);
    body["max_tokens"] = json!(500);
    let mut s = open_stream(
        &w.url("/v1/messages"),
        &[("x-api-key", &key), ("x-mock-chunks", "400"), ("x-mock-chunk-interval-ms", "5")],
        body.clone(),
    )
    .await;
    let mut seen = String::new();
    while seen.matches("text_delta").count() < 5 {
        seen.push_str(std::str::from_utf8(&s.next_data().await.unwrap()).unwrap());
    }
    drop(s);
    let records = wait_for_records(&w, 1).await;
    let r = &records[0];
    assert_eq!(r["ending"], "client_aborted", "{r}");
    assert_eq!(r["usage_estimated"], true, "{r}");
    // The prompt as the upstream counted it in `message_start`, and at least what the
    // client saw of the completion.
    let start = events(&seen).into_iter().find(|(n, _)| n == "message_start").unwrap().1;
    assert_eq!(r["usage"]["prompt_tokens"], start["message"]["usage"]["input_tokens"], "{r}");
    assert!(r["usage"]["completion_tokens"].as_u64().unwrap() >= 5, "{r}");
    let u = w.eventually("leaver", |u| u["requests"] == 1).await;
    assert_eq!(u["prompt_tokens"], r["usage"]["prompt_tokens"]);

    // The same through a reasoning server's chat stream: the reasoning it streamed before
    // the content is part of what was generated.
    let chat = json!({"model": "mock-reasoner", "stream": true, "max_tokens": 500,
        "messages": [{"role": "user", "content": "tell me a long story"}]});
    let auth = format!("Bearer {key}");
    let mut s = open_stream(
        &w.url("/v1/chat/completions"),
        &[("authorization", &auth), ("x-mock-chunks", "400"), ("x-mock-chunk-interval-ms", "5")],
        chat,
    )
    .await;
    let mut seen = String::new();
    while seen.matches("\"content\":\"").count() < 5 {
        seen.push_str(std::str::from_utf8(&s.next_data().await.unwrap()).unwrap());
    }
    assert!(seen.contains("reasoning_content"), "{seen}");
    drop(s);
    let records = wait_for_records(&w, 2).await;
    let r = &records[1];
    assert_eq!((r["ending"].as_str(), r["usage_estimated"].as_bool()), (Some("client_aborted"), Some(true)), "{r}");
    let reasoning: String = seen
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|c| c["choices"][0]["delta"]["reasoning_content"].as_str().map(str::to_string))
        .collect();
    let reasoning_tokens = reasoning.split_whitespace().count() as u64;
    assert!(reasoning_tokens >= 10, "{reasoning}");
    assert!(r["usage"]["completion_tokens"].as_u64().unwrap() >= reasoning_tokens + 5, "{r}");
}

#[tokio::test]
async fn the_anthropic_routes_can_have_their_own_provider_and_key() {
    let openai = mock_llm::spawn(MockOptions::default()).await.unwrap();
    let claude = mock_llm::spawn(MockOptions::default()).await.unwrap();
    // The mock's `/echo` answers with the request it got: the Anthropic upstream's base
    // path points there.
    let upstream =
        format!("[upstream.anthropic]\nbase_url = \"{}/echo\"\napi_key_env = \"T_UPSTREAM_KEY\"", claude.base_url());
    let w = Warden::start_with(&openai.base_url(), Extra { tail: &upstream, ..Extra::default() }).await;
    let key = w.account("two").await;
    let h = [("authorization", format!("Bearer {key}")), ("anthropic-beta", "interleaved-thinking-2025-05-14".into())];
    let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let r = w
        .http
        .send(Method::POST, &w.url("/v1/messages"), &h, Some(Bytes::from(messages_body("hi", false).to_string())))
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{:?}", r.body);
    let echo = r.json();
    assert_eq!(echo["path"], "/echo/v1/messages");
    let headers = &echo["headers"];
    assert_eq!(headers["x-api-key"], UPSTREAM_KEY, "the provider's key, in Anthropic's header");
    assert!(headers.get("authorization").is_none(), "the client's key never leaves: {headers}");
    assert_eq!(headers["anthropic-version"], "2023-06-01", "a default for clients that name none");
    assert_eq!(headers["anthropic-beta"], "interleaved-thinking-2025-05-14");
    // The OpenAI routes still go to `[upstream]`.
    let r = w.post("/v1/chat/completions", &key, support::chat_body("hi", false)).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["object"], "chat.completion");
    // `/v1/models` is both APIs': the Anthropic SDK's (it sends `anthropic-version`) goes
    // to the Anthropic provider, anyone else's to `[upstream]`.
    let r = w
        .http
        .send(
            Method::GET,
            &w.url("/v1/models"),
            &[("x-api-key", key.as_str()), ("anthropic-version", "2023-06-01")],
            None,
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["path"], "/echo/v1/models", "{:?}", r.json());
    assert_eq!(r.headers["request-id"], r.headers["x-request-id"]);
    let r = w.http.send(Method::GET, &w.url("/v1/models"), &[("x-api-key", key.as_str())], None).await.unwrap();
    assert_eq!(r.json()["object"], "list");
}

#[tokio::test]
async fn reasoning_is_stripped_from_responses_of_both_dialects_and_usage_counted_in_full() {
    let mock = mock_llm::spawn(MockOptions::default()).await.unwrap();
    let tail = r#"
        [[tiers]]
        name = "no-reasoning"
        requests_per_minute = 100000
        reasoning = "strip"
        "#;
    let w =
        Warden::start_with(&mock.base_url(), Extra { audit: "flush_interval_ms = 10", tail, ..Extra::default() }).await;
    let key = w.account("stripped").await;
    w.admin.expect(Method::PATCH, "/admin/v1/accounts/stripped", Some(json!({"tier": "no-reasoning"}))).await.unwrap();
    let open_key = w.account("open").await;

    // Messages, not streamed: no thinking block; the text and the usage are the upstream's.
    let body = thinking_body("Is 91 prime?", false);
    let upstream = direct(&mock.base_url(), "/v1/messages", &body).await;
    assert_eq!(upstream["content"][0]["type"], "thinking", "the mock thinks: {upstream}");
    let got = anthropic(&w, "/v1/messages", &key, &body, &[]).await.json();
    let kinds: Vec<&str> = got["content"].as_array().unwrap().iter().map(|b| b["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["text"], "{got}");
    assert_eq!(got["content"][0], upstream["content"][1]);
    assert_eq!(got["usage"], upstream["usage"], "usage counted in full");
    // Another tier's account gets the thinking.
    let open = anthropic(&w, "/v1/messages", &open_key, &body, &[]).await.json();
    assert_eq!(open["content"][0]["type"], "thinking");

    // Streamed: no thinking events, the text block renumbered to 0, the text intact.
    let mut s = open_stream(&w.url("/v1/messages"), &[("x-api-key", &key)], thinking_body("Is 91 prime?", true)).await;
    let text = s.rest().await;
    assert!(!text.contains("thinking") && !text.contains("signature"), "{text}");
    let evs = events(&text);
    let blocks: Vec<&Value> = evs.iter().filter(|(n, _)| n.starts_with("content_block")).map(|(_, d)| d).collect();
    assert!(!blocks.is_empty() && blocks.iter().all(|d| d["index"] == 0), "{text}");
    let streamed: String = evs.iter().filter_map(|(_, d)| d["delta"]["text"].as_str()).collect();
    assert_eq!(streamed, upstream["content"][1]["text"].as_str().unwrap());

    // OpenAI-compatible reasoning servers: `reasoning_content` removed, stream and not.
    let chat = json!({"model": "mock-reasoner", "messages": [{"role": "user", "content": "Is 91 prime?"}]});
    let upstream_chat = direct(&mock.base_url(), "/v1/chat/completions", &chat).await;
    assert!(upstream_chat["choices"][0]["message"]["reasoning_content"].is_string(), "{upstream_chat}");
    let got = w.post("/v1/chat/completions", &key, chat.clone()).await.json();
    assert!(got["choices"][0]["message"].get("reasoning_content").is_none(), "{got}");
    assert_eq!(got["choices"][0]["message"]["content"], upstream_chat["choices"][0]["message"]["content"]);
    assert_eq!(got["usage"], upstream_chat["usage"]);
    let mut streamed_chat = chat.clone();
    streamed_chat["stream"] = json!(true);
    let auth = format!("Bearer {key}");
    let mut s = open_stream(&w.url("/v1/chat/completions"), &[("authorization", &auth)], streamed_chat).await;
    let text = s.rest().await;
    assert!(!text.contains("reasoning"), "{text}");
    assert!(text.trim_end().ends_with("data: [DONE]"));

    // `/v1/responses`: reasoning items removed.
    let resp = json!({"model": "mock-reasoner", "input": "Is 91 prime?", "reasoning": {"effort": "high", "summary": "detailed"}});
    let upstream_resp = direct(&mock.base_url(), "/v1/responses", &resp).await;
    assert_eq!(upstream_resp["output"][0]["type"], "reasoning", "{upstream_resp}");
    let got = w.post("/v1/responses", &key, resp.clone()).await.json();
    let types: Vec<&str> = got["output"].as_array().unwrap().iter().map(|i| i["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["message"], "{got}");
    let mut streamed_resp = resp.clone();
    streamed_resp["stream"] = json!(true);
    let mut s = open_stream(&w.url("/v1/responses"), &[("authorization", &auth)], streamed_resp).await;
    let text = s.rest().await;
    // (The response object still echoes the request's `reasoning` settings, as OpenAI's do.)
    assert!(!text.contains("\"type\":\"reasoning\"") && !text.contains("reasoning_summary"), "{text}");
    let completed = events(&text).into_iter().find(|(n, _)| n == "response.completed").expect("completed").1;
    assert_eq!(completed["response"]["output"].as_array().unwrap().len(), 1);
    // The message item, now the first: every event of it says so.
    assert_eq!(completed["response"]["output"][0]["type"], "message");
    let indices: Vec<Value> = events(&text).iter().filter_map(|(_, d)| d.get("output_index").cloned()).collect();
    assert!(!indices.is_empty() && indices.iter().all(|i| *i == 0), "{text}");

    // The records say what was taken away.
    let records = wait_for_records(&w, 7).await;
    let mine: Vec<&Value> = records.iter().filter(|r| r["account_id"] == "stripped").collect();
    assert_eq!(mine.len(), 6);
    assert!(mine.iter().all(|r| r["reason"] == "policy stripped: reasoning"), "{mine:#?}");
    let theirs = records.iter().find(|r| r["account_id"] == "open").unwrap();
    assert!(theirs.get("reason").is_none(), "{theirs}");
    let metrics = w.http.send(Method::GET, &format!("http://{}/metrics", w.admin_addr), &[], None).await.unwrap();
    let metrics = String::from_utf8_lossy(&metrics.body).to_string();
    assert!(metrics.contains("warden_reasoning_stripped_total 6"), "{metrics}");
}

#[tokio::test]
async fn the_detectors_strip_action_takes_the_reasoning_away_too() {
    let mock = mock_llm::spawn(MockOptions::default()).await.unwrap();
    let w = Warden::start(&mock.base_url()).await;
    let key = w.account("suspect").await;
    let body = thinking_body("Explain step by step: is 91 prime?", false);
    let before = anthropic(&w, "/v1/messages", &key, &body, &[]).await.json();
    assert_eq!(before["content"][0]["type"], "thinking");
    // What the detector's `strip` decision sets on the account (`detector.rs`).
    w.app.accounts.directory().account("suspect").unwrap().set_strip_soft_labels(true);
    let after = anthropic(&w, "/v1/messages", &key, &body, &[]).await.json();
    let kinds: Vec<&str> = after["content"].as_array().unwrap().iter().map(|b| b["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["text"], "{after}");
}
