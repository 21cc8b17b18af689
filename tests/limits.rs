//! Rate limits, token reservation, concurrency, quotas and parameter policy over real
//! sockets; shared limits across two warden processes through a real `redis-server`,
//! including Redis dying and coming back.

mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Method;
use serde_json::{json, Value};
use support::process::start_warden_with;
use support::redis_server::Redis;
use support::{chat_body, open_stream, Extra, Warden, ADMIN_TOKEN};
use warden::client::{AdminClient, HttpClient, Reply};
use warden::mock_llm::{self, MockOptions};

const TIERS: &str = r#"
    [[tiers]]
    name = "tight"
    requests_per_minute = 3
    [[tiers]]
    name = "tokens"
    tokens_per_minute = 1000
    default_max_tokens = 100
    [[tiers]]
    name = "single"
    max_concurrent = 1
    tokens_per_minute = 100000
    [[tiers]]
    name = "quota"
    tokens_per_day = 120
    [[tiers]]
    name = "locked"
    allowed_models = ["mock-small"]
    max_n = 1
    max_tokens = 50
    logprobs = "strip"
    logit_bias = "reject"
"#;

async fn account_on(w: &Warden, id: &str, tier: &str) -> String {
    w.admin.expect(Method::POST, "/admin/v1/accounts", Some(json!({"id": id, "tier": tier}))).await.unwrap();
    w.key(id).await
}

fn header<'a>(r: &'a Reply, name: &str) -> &'a str {
    r.headers.get(name).map(|v| v.to_str().unwrap()).unwrap_or_else(|| panic!("no {name} header"))
}

#[tokio::test]
async fn request_rate_limits_answer_429_like_openai() {
    let mock = mock_llm::spawn(MockOptions::default()).await.unwrap();
    let w = Warden::start_with(&mock.base_url(), Extra { tail: TIERS, ..Extra::default() }).await;
    let key = account_on(&w, "a", "tight").await;
    let first = w.post("/v1/chat/completions", &key, chat_body("hi", false)).await;
    assert_eq!(first.status, 200);
    assert_eq!(header(&first, "x-ratelimit-limit-requests"), "3");
    assert_eq!(header(&first, "x-ratelimit-remaining-requests"), "2");
    assert!(header(&first, "x-ratelimit-reset-requests").ends_with('s'));
    for _ in 0..2 {
        assert_eq!(w.post("/v1/chat/completions", &key, chat_body("hi", false)).await.status, 200);
    }
    let r = w.post("/v1/chat/completions", &key, chat_body("hi", false)).await;
    assert_eq!(r.status, 429);
    let v = r.json();
    assert_eq!(v["error"]["code"], "rate_limit_exceeded");
    assert_eq!(v["error"]["type"], "requests");
    assert!(v["error"]["message"].as_str().unwrap().contains("limit 3 requests per minute"), "{v}");
    let retry: u64 = header(&r, "retry-after").parse().unwrap();
    assert!((1..=20).contains(&retry), "retry-after {retry}");
    assert_eq!(header(&r, "x-ratelimit-remaining-requests"), "0");
    // The refusal is audited as rate limited.
    let dir = w.stop().await;
    let records = support::read_audit(&dir.path().join("audit"));
    assert_eq!(records.iter().filter(|r| r["decision"] == "rate_limited" && r["status"] == 429).count(), 1);
}

#[tokio::test]
async fn every_admitted_llm_response_says_where_it_stands_even_without_limits() {
    let mock = mock_llm::spawn(MockOptions::default()).await.unwrap();
    let w = Warden::start_with(&mock.base_url(), Extra { tail: TIERS, ..Extra::default() }).await;
    // `locked` sets policy only: no rate, no concurrency limit.
    let key = account_on(&w, "open", "locked").await;
    let body = json!({"model": "mock-small", "messages": [{"role": "user", "content": "hi"}]});
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    for (what, body) in [("json", body), ("stream", streamed)] {
        let r = w.post("/v1/chat/completions", &key, body).await;
        assert_eq!(r.status, 200, "{what}");
        for kind in ["requests", "tokens"] {
            assert_eq!(header(&r, &format!("x-ratelimit-limit-{kind}")), "unlimited", "{what}");
            assert_eq!(header(&r, &format!("x-ratelimit-remaining-{kind}")), "unlimited", "{what}");
            assert!(r.headers.get(format!("x-ratelimit-reset-{kind}")).is_none(), "{what}");
        }
    }
    // A tier limiting requests only: those are counted, tokens are unlimited.
    let key = account_on(&w, "tight", "tight").await;
    let r = w.post("/v1/chat/completions", &key, chat_body("hi", false)).await;
    assert_eq!(header(&r, "x-ratelimit-limit-requests"), "3");
    assert_eq!(header(&r, "x-ratelimit-limit-tokens"), "unlimited");
    // A request refused before admission (bad key) says nothing about limits.
    let r = w.post("/v1/chat/completions", "wk-not-a-key", chat_body("hi", false)).await;
    assert_eq!(r.status, 401);
    assert!(r.headers.get("x-ratelimit-limit-requests").is_none());
}

#[tokio::test]
async fn tokens_are_reserved_before_and_reconciled_after() {
    let mock = mock_llm::spawn(MockOptions::default()).await.unwrap();
    let w = Warden::start_with(&mock.base_url(), Extra { tail: TIERS, ..Extra::default() }).await;
    tokens_reserved_and_reconciled(&w, "t", None).await;
    w.stop().await;
}

/// An account on the `tokens` tier: the estimate is reserved up front, reconciled with
/// what was used, and a request larger than what is left (or than the limit) is refused.
/// With `redis` (its URL), settlement runs in the background: the next request is sent
/// once Redis shows the first one settled.
async fn tokens_reserved_and_reconciled(w: &Warden, account: &str, redis: Option<&str>) {
    let key = account_on(w, account, "tokens").await;
    // Reserved: prompt + max_tokens 600; used: prompt + 16.
    let mut body = chat_body("hello", false);
    body["max_tokens"] = json!(600);
    let r = w.post("/v1/chat/completions", &key, body).await;
    assert_eq!(r.status, 200);
    let reserved_left: u64 = header(&r, "x-ratelimit-remaining-tokens").parse().unwrap();
    assert!(reserved_left < 400, "the estimate was reserved up front: {reserved_left}");
    let used = r.json()["usage"]["total_tokens"].as_u64().unwrap();
    if let Some(url) = redis {
        // Reserved ~610 tokens put the rate's state ~37 s ahead at 1000 tokens a minute;
        // settled (~590 given back), it is ~1 s ahead.
        let mut c = redis::Client::open(url).unwrap().get_multiplexed_async_connection().await.unwrap();
        let mut settled = false;
        for _ in 0..250 {
            let tat: Option<i64> =
                redis::cmd("GET").arg(format!("warden:{{{account}}}:tpm")).query_async(&mut c).await.unwrap();
            let (s, us): (i64, i64) = redis::cmd("TIME").query_async(&mut c).await.unwrap();
            if tat.is_some_and(|t| t - (s * 1_000_000 + us) < 10_000_000) {
                settled = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(settled, "the first request was never settled in redis");
    }
    // The next request sees the reconciled figure (give or take the refill).
    let r = w.post("/v1/chat/completions", &key, chat_body("again", false)).await;
    let left: u64 = header(&r, "x-ratelimit-remaining-tokens").parse().unwrap();
    let second_estimate = 100 + 10; // default_max_tokens + a short prompt
    assert!(left + used + second_estimate >= 1000 - 20 && left <= 1000 - used, "left {left}, used {used}");
    // More than the rest of the minute (about 960 after two requests of ~20 tokens each):
    // 429 on tokens, naming the limit.
    let mut big = chat_body("x", false);
    big["max_tokens"] = json!(990);
    let r = w.post("/v1/chat/completions", &key, big).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.json()["error"]["type"], "tokens");
    assert!(r.json()["error"]["message"].as_str().unwrap().contains("1000 tokens per minute"));
    // More than the limit itself can never pass.
    let mut huge = chat_body("x", false);
    huge["max_tokens"] = json!(5000);
    let r = w.post("/v1/chat/completions", &key, huge).await;
    assert_eq!(r.status, 429);
    assert!(r.json()["error"]["message"].as_str().unwrap().starts_with("Request too large"));
}

#[tokio::test]
async fn streamed_tokens_count_and_an_abort_releases_its_reservation() {
    let mock = mock_llm::spawn(MockOptions::default()).await.unwrap();
    let w = Warden::start_with(&mock.base_url(), Extra { tail: TIERS, ..Extra::default() }).await;
    one_stream_at_a_time(&w, "s").await;
    w.stop().await;
}

/// An account on the `single` tier: a stream in flight holds the one concurrency slot, an
/// abort gives it back with the unused reservation, and a full stream counts its tokens.
async fn one_stream_at_a_time(w: &Warden, account: &str) {
    let key = account_on(w, account, "single").await;
    let auth = format!("Bearer {key}");
    // One stream in flight: a second request is refused on concurrency.
    let mut s = open_stream(
        &w.url("/v1/chat/completions"),
        &[("authorization", &auth), ("x-mock-chunks", "30"), ("x-mock-chunk-interval-ms", "30")],
        chat_body("stream", true),
    )
    .await;
    assert_eq!(s.status, 200);
    s.next_data().await.unwrap();
    let r = w.post("/v1/chat/completions", &key, chat_body("meanwhile", false)).await;
    assert_eq!(r.status, 429);
    assert!(r.json()["error"]["message"].as_str().unwrap().contains("concurrent"));
    // The client walks away: the slot comes back and what was generated is counted.
    drop(s);
    let mut admitted = None;
    for _ in 0..100 {
        let r = w.post("/v1/chat/completions", &key, chat_body("after", false)).await;
        if r.status == 200 {
            admitted = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = admitted.expect("the aborted stream's concurrency slot was never released");
    // Reservation returned: nowhere near the 1024 default completion reserved for it.
    let left: u64 = header(&r, "x-ratelimit-remaining-tokens").parse().unwrap();
    assert!(left > 100_000 - 1024 - 200, "reservation leaked: {left} left");
    // A full stream counts its real tokens: 16 completion tokens plus the prompt.
    let before =
        w.eventually(account, |u| u["requests"].as_u64() >= Some(2)).await["completion_tokens"].as_u64().unwrap();
    let r = w.post("/v1/chat/completions", &key, chat_body("count this stream", true)).await;
    assert_eq!(r.status, 200);
    w.eventually(account, |u| u["completion_tokens"].as_u64() == Some(before + 16)).await;
}

#[tokio::test]
async fn daily_quota_is_enforced_and_survives_a_restart() {
    let mock = mock_llm::spawn(MockOptions::default()).await.unwrap();
    let extra = Extra { tail: TIERS, ..Extra::default() };
    let w = Warden::start_with(&mock.base_url(), extra).await;
    let (key, body) = daily_quota_runs_out(&w, "q").await;
    let dir = w.stop().await;
    let w = Warden::start_in(&mock.base_url(), extra, dir).await;
    let r = w.post("/v1/chat/completions", &key, body).await;
    assert_eq!(r.status, 429, "the quota was forgotten across the restart");
    w.stop().await;
}

/// An account on the `quota` tier runs out of its daily quota after five requests; returns
/// its key and the request body.
async fn daily_quota_runs_out(w: &Warden, account: &str) -> (String, Value) {
    let key = account_on(w, account, "quota").await;
    let mut body = chat_body("one two three", false);
    body["max_tokens"] = json!(20);
    // Each request reserves 26 (6 prompt tokens + max_tokens 20) and uses 22 (the mock's
    // 6 prompt + 16 completion): after five (110 used) the sixth cannot fit in 120.
    let mut ok = 0;
    let mut last = None;
    for _ in 0..6 {
        let r = w.post("/v1/chat/completions", &key, body.clone()).await;
        if r.status == 200 {
            ok += 1;
        } else {
            last = Some(r);
            break;
        }
    }
    assert_eq!(ok, 5);
    let r = last.unwrap();
    assert_eq!(r.status, 429);
    let msg = r.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(msg.contains("daily token quota of 120"), "{msg}");
    (key, body)
}

#[tokio::test]
async fn parameter_policy_strips_or_refuses_naming_the_parameter() {
    let mock = mock_llm::spawn(MockOptions::default()).await.unwrap();
    let w = Warden::start_with(&mock.base_url(), Extra { tail: TIERS, ..Extra::default() }).await;
    let key = account_on(&w, "p", "locked").await;
    let cases = [
        (json!({"model": "mock-large", "messages": []}), "model"),
        (json!({"model": "mock-small", "n": 2, "messages": []}), "n"),
        (json!({"model": "mock-small", "max_tokens": 51, "messages": []}), "max_tokens"),
        (json!({"model": "mock-small", "logit_bias": {"50256": -100}, "messages": []}), "logit_bias"),
    ];
    for (body, param) in cases {
        let r = w.post("/v1/chat/completions", &key, body).await;
        assert_eq!(r.status, 400, "{param}");
        assert_eq!(r.json()["error"]["param"], param);
    }
    // logprobs are stripped: the upstream never sees them, the answer carries none.
    let r = w
        .post(
            "/v1/chat/completions",
            &key,
            json!({"model": "mock-small", "logprobs": true, "top_logprobs": 5, "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_eq!(r.status, 200);
    assert!(r.json()["choices"][0]["logprobs"].is_null(), "{}", r.json());
    w.stop().await;
}

#[tokio::test]
async fn per_account_overrides_apply_at_once() {
    let mock = mock_llm::spawn(MockOptions::default()).await.unwrap();
    let w = Warden::start_with(&mock.base_url(), Extra { tail: TIERS, ..Extra::default() }).await;
    let key = w.account("vip").await;
    assert_eq!(w.post("/v1/chat/completions", &key, chat_body("a", false)).await.status, 200);
    let v = w
        .admin
        .expect(Method::PATCH, "/admin/v1/accounts/vip", Some(json!({"limits": {"requests_per_minute": 1}})))
        .await
        .unwrap();
    assert_eq!(v["limits"]["requests_per_minute"], 1);
    // The new limit's one request per minute is available once, then refused.
    assert_eq!(w.post("/v1/chat/completions", &key, chat_body("b", false)).await.status, 200);
    let r = w.post("/v1/chat/completions", &key, chat_body("c", false)).await;
    assert_eq!(r.status, 429);
    assert_eq!(header(&r, "x-ratelimit-limit-requests"), "1");
    let (status, _) =
        w.admin.call(Method::PATCH, "/admin/v1/accounts/vip", Some(json!({"limits": {"rpm": 5}}))).await.unwrap();
    assert_eq!(status, 400, "unknown limit names are refused");
    w.stop().await;
}

/// Sends `n` requests alternately to the proxies; returns how many were admitted.
async fn admitted(proxies: &[&str], key: &str, n: usize) -> (usize, Vec<Duration>) {
    let http = HttpClient::new();
    let auth = format!("Bearer {key}");
    let mut ok = 0;
    let mut latencies = Vec::new();
    for i in 0..n {
        let url = format!("http://{}/v1/chat/completions", proxies[i % proxies.len()]);
        let started = Instant::now();
        let r = http
            .send(Method::POST, &url, &[("authorization", &auth)], Some(Bytes::from(chat_body("x", false).to_string())))
            .await
            .unwrap();
        latencies.push(started.elapsed());
        match r.status.as_u16() {
            200 => ok += 1,
            429 => {}
            other => panic!("unexpected status {other}: {:?}", r.body),
        }
    }
    (ok, latencies)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_limits_through_redis_and_survive_its_death() {
    let mut redis = Redis::start();
    let (_mock, upstream) = support::process::start_mock(&[]);
    let shared = tempfile::tempdir().unwrap();
    let db = shared.path().join("shared.db");
    let tail = format!(
        "{TIERS}\n[redis]\nurl = \"{}\"\ntimeout_ms = 100\nbreaker_failures = 2\nbreaker_cooldown_ms = 500\n[[tiers]]\nname = \"ten\"\nrequests_per_minute = 10\n",
        redis.url()
    );
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let extra = Extra { tail: &tail, db: Some(&db), ..Extra::default() };
    let (_a, proxy_a, admin_a) = start_warden_with(a_dir.path(), &upstream, extra);
    let admin = AdminClient::new(&format!("http://{admin_a}"), ADMIN_TOKEN, "t");
    let mut keys = Vec::new();
    for id in ["r1", "r2", "r3"] {
        admin.expect(Method::POST, "/admin/v1/accounts", Some(json!({"id": id, "tier": "ten"}))).await.unwrap();
        let k = admin.expect(Method::POST, &format!("/admin/v1/accounts/{id}/keys"), None).await.unwrap();
        keys.push(k["key"].as_str().unwrap().to_string());
    }
    // The second replica shares the database, so it knows the accounts at start-up.
    let (_b, proxy_b, admin_b) = start_warden_with(b_dir.path(), &upstream, extra);
    // Wait until both replicas have connected to Redis.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let (ok, _) = admitted(&[&proxy_a, &proxy_b], &keys[0], 30).await;
    assert_eq!(ok, 10, "two replicas together admitted {ok}, the limit is 10");

    // Redis dies: answers keep coming, within the timeout, from local limits (fail_open).
    redis.kill();
    let (ok, latencies) = admitted(&[&proxy_a, &proxy_b], &keys[1], 30).await;
    let slowest = latencies.iter().max().unwrap();
    assert!(*slowest < Duration::from_millis(1000), "a request waited {slowest:?} for a dead redis");
    assert!((10..=20).contains(&ok), "local fallback admitted {ok}: each replica enforces its own limit");

    // Redis comes back: after the breaker's cooldown one probe finds it and the limit is
    // shared again. Keep traffic flowing (it is what probes) until both replicas are back.
    let redis = Redis::start_on(redis.port);
    let http = HttpClient::new();
    let mut resumed = false;
    for _ in 0..60 {
        admitted(&[&proxy_a, &proxy_b], &keys[1], 2).await;
        let mut up = 0;
        for admin in [&admin_a, &admin_b] {
            let m = http.send(Method::GET, &format!("http://{admin}/metrics"), &[], None).await.unwrap();
            up += String::from_utf8_lossy(&m.body).lines().any(|l| l == "warden_redis_up 1") as usize;
        }
        if up == 2 {
            resumed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(resumed, "the replicas never went back to redis");
    let (ok, _) = admitted(&[&proxy_a, &proxy_b], &keys[2], 30).await;
    assert_eq!(ok, 10, "after redis returned the replicas admitted {ok} together");
    assert!(redis.ping());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_closed_refuses_quickly_while_redis_is_down() {
    let mut redis = Redis::start();
    let mock = mock_llm::spawn(MockOptions::default()).await.unwrap();
    let tail = format!("[redis]\nurl = \"{}\"\ntimeout_ms = 100\nfailure_mode = \"fail_closed\"\n", redis.url());
    let w = Warden::start_with(&mock.base_url(), Extra { tail: &tail, ..Extra::default() }).await;
    let key = w.account("c").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(w.post("/v1/chat/completions", &key, chat_body("x", false)).await.status, 200);
    redis.kill();
    for _ in 0..5 {
        let started = Instant::now();
        let r = w.post("/v1/chat/completions", &key, chat_body("x", false)).await;
        assert_eq!(r.status, 503, "{:?}", r.body);
        assert_eq!(r.json()["error"]["code"], "limits_unavailable");
        assert!(started.elapsed() < Duration::from_millis(1000));
    }
    let ready = w.http.send(Method::GET, &format!("http://{}/readyz", w.admin_addr), &[], None).await.unwrap();
    assert_eq!(ready.status, 503);
    let v: Value = ready.json();
    assert_eq!(v["redis"], "unavailable");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_concurrency_and_quotas_hold_through_redis_and_its_keys_expire() {
    let redis = Redis::start();
    let mock = mock_llm::spawn(MockOptions::default()).await.unwrap();
    let tail = format!("{TIERS}\n[redis]\nurl = \"{}\"\n", redis.url());
    let w = Warden::start_with(&mock.base_url(), Extra { tail: &tail, ..Extra::default() }).await;
    // Until warden has connected, admissions would fall back to local limits.
    let ready = format!("http://{}/readyz", w.admin_addr);
    let mut connected = false;
    for _ in 0..100 {
        let r = w.http.send(Method::GET, &ready, &[], None).await.unwrap();
        if r.json()["redis"] == "ok" {
            connected = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(connected, "warden never connected to redis");

    // The same checks as with local limits, every one decided by the Lua scripts (the
    // proxy workers open their own connections on first use). Every key the scripts leave
    // expires on its own. Rate state lives as long as its debt: {rt}'s (some 40 tokens at
    // 1000 a minute) a couple of seconds, so it is looked at straight away; {rs}'s (a few
    // dozen at 100000 a minute) tens of milliseconds, so it may be gone already.
    let client = redis::Client::open(redis.url()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    tokens_reserved_and_reconciled(&w, "rt", Some(&redis.url())).await;
    let ttl: i64 = redis::cmd("PTTL").arg("warden:{rt}:tpm").query_async(&mut c).await.unwrap();
    assert!(ttl > 0 && ttl <= 60_000, "{{rt}}'s rate state: PTTL {ttl}");
    one_stream_at_a_time(&w, "rs").await;
    daily_quota_runs_out(&w, "rq").await;
    let m = w.http.send(Method::GET, &format!("http://{}/metrics", w.admin_addr), &[], None).await.unwrap();
    let metrics = String::from_utf8_lossy(&m.body).to_string();
    assert!(metrics.lines().any(|l| l == "warden_redis_fallbacks_total 0"), "some admissions fell back:\n{metrics}");

    // Whatever is left (quota counters, rate state not yet run out; the concurrency set is
    // gone once its last request ended) has an expiry.
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query_async(&mut c).await.unwrap();
    assert!(keys.iter().any(|k| k.contains("{rq}:q:")), "no quota counter in {keys:?}");
    for k in &keys {
        // -1: no expiry; 0 or -2: expiring or expired since KEYS listed it.
        let ttl: i64 = redis::cmd("PTTL").arg(k).query_async(&mut c).await.unwrap();
        assert_ne!(ttl, -1, "{k} does not expire");
    }
    // A settlement that finds its quota counter gone (the day rolled over while the
    // request ran) makes it anew, with an expiry: a stream reserves 26 tokens, uses 22,
    // and its counter is deleted while it runs.
    let key = account_on(&w, "rq2", "quota").await;
    let auth = format!("Bearer {key}");
    let mut body = chat_body("one two three", true);
    body["max_tokens"] = json!(20);
    let mut s = open_stream(
        &w.url("/v1/chat/completions"),
        &[("authorization", &auth), ("x-mock-chunks", "16"), ("x-mock-chunk-interval-ms", "20")],
        body,
    )
    .await;
    assert_eq!(s.status, 200);
    s.next_data().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS").arg("*{rq2}:q:*").query_async(&mut c).await.unwrap();
    assert_eq!(keys.len(), 1, "{keys:?}");
    let _: () = redis::cmd("DEL").arg(&keys[0]).query_async(&mut c).await.unwrap();
    s.rest().await;
    let mut settled = None;
    for _ in 0..100 {
        let used: Option<i64> = redis::cmd("GET").arg(&keys[0]).query_async(&mut c).await.unwrap();
        if used.is_some() {
            settled = used;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(settled, Some(0), "the settlement (22 used - 26 reserved) did not make the counter anew at 0");
    let ttl: i64 = redis::cmd("PTTL").arg(&keys[0]).query_async(&mut c).await.unwrap();
    assert!(ttl > 0, "the counter made by the settlement does not expire (PTTL {ttl})");
    w.stop().await;
}
