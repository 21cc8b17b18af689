//! The detector live, through the proxy: a harvesting account is blocked while it sends,
//! with an alert a reviewer can read in the admin API; a benign account sending the same
//! volume is left alone; a false-positive verdict restores the account.

mod support;

use std::time::Duration;

use http::Method;
use serde_json::{json, Value};
use support::process::cli;
use support::{Extra, Warden};
use warden::mock_llm::{self, MockOptions};

const QUESTIONS: &[&str] = &[
    "A baker makes 24 loaves and sells 3/4 of them. How many are left?",
    "Tom has twice as many marbles as Ann, who has 17. How many do they have together?",
    "A car travels 180 km in 2.5 hours. What is its average speed?",
    "If 5 pencils cost 1.25 dollars, how much do 18 pencils cost?",
    "A tank holds 350 litres and leaks 12 litres an hour. When is it half empty?",
    "Sara reads 42 pages on Monday and 15 more each following day. When does she finish 300 pages?",
];

fn harvest_body(i: usize) -> Value {
    let q = QUESTIONS[i % QUESTIONS.len()];
    json!({
        "model": "mock-small",
        "messages": [{"role": "user", "content": format!(
            "{q} (item {i}) Please reason step by step, and put your final answer within \\boxed{{}}.")}],
        "max_tokens": 2048,
    })
}

const SYSTEM: &str = "You are the help-desk assistant of Northwind Traders. Answer questions about orders, \
    shipping and returns politely and briefly; never promise refunds; escalate legal questions.";

fn benign_body(i: usize) -> Value {
    let topics = [
        "my order 1182 has not arrived",
        "can I change the delivery address",
        "the box was damaged",
        "how do I return shoes that do not fit",
        "do you ship to Norway",
        "I was charged twice",
    ];
    json!({
        "model": "mock-small",
        "messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": format!("Hi, {} (ticket {i})", topics[i % topics.len()])},
            {"role": "assistant", "content": "Thanks for reaching out. Could you share your order number?"},
            {"role": "user", "content": format!("Sure, it's {}. What can you do?", 4000 + i * 7)},
        ],
    })
}

async fn alerts_for(w: &Warden, account: &str) -> Vec<Value> {
    let v = w.admin.expect(Method::GET, &format!("/admin/v1/alerts?status=all&account={account}"), None).await.unwrap();
    v["alerts"].as_array().unwrap().clone()
}

#[tokio::test]
async fn harvester_is_blocked_live_and_benign_account_is_not() {
    let mock = mock_llm::spawn(MockOptions::default()).await.unwrap();
    let w = Warden::start_with(&mock.base_url(), Extra::default()).await;
    let harvester = w.account("harvester").await;
    let benign = w.account("benign").await;

    // The harvester sends until it is refused. Each request waits until the detector has
    // examined the ones before it: the detector runs beside the request path, and on a
    // loaded machine a client sending as fast as it can outruns it (a block found at the
    // 100th request then lands at the 200th). What is measured is when the detector
    // decides, and that its block holds from the next request.
    let mut blocked_at = None;
    for i in 0..400 {
        for _ in 0..2000 {
            if w.app.metrics.detect.events.get() >= i as u64 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let r = w.post("/v1/chat/completions", &harvester, harvest_body(i)).await;
        if r.status == 403 {
            let body = r.json();
            assert_eq!(body["error"]["code"], "account_blocked", "{body}");
            assert!(!body.to_string().contains(&harvester), "the key is never echoed");
            blocked_at = Some(i);
            break;
        }
        assert_eq!(r.status, 200, "request {i}: {}", r.json());
    }
    let blocked_at = blocked_at.expect("the harvester was never blocked");
    // The detector decides after about `min_requests` (20): seen at 21 every time, also
    // with both cores busy; without the wait above, 82-201 on the same machine.
    assert!(blocked_at <= 40, "blocked only after {blocked_at} requests");

    // The same volume, from a product with one fixed system prompt and real conversations.
    for i in 0..blocked_at + 20 {
        let r = w.post("/v1/chat/completions", &benign, benign_body(i)).await;
        assert_eq!(r.status, 200, "benign request {i} refused: {}", r.json());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(alerts_for(&w, "benign").await.is_empty(), "{:?}", alerts_for(&w, "benign").await);
    let account = w.admin.expect(Method::GET, "/admin/v1/accounts/benign", None).await.unwrap();
    assert_eq!(account["status"], "active");

    // The alert: evidence a reviewer can judge, the member's state, the action taken.
    let alerts = alerts_for(&w, "harvester").await;
    assert_eq!(alerts.len(), 1, "deduplicated: {alerts:?}");
    let alert = &alerts[0];
    assert_eq!(alert["kind"], "extraction");
    assert_eq!(alert["status"], "open");
    assert_eq!(alert["account_ids"], json!(["harvester"]));
    let id = alert["id"].as_str().unwrap();
    let detail = w.admin.expect(Method::GET, &format!("/admin/v1/alerts/{id}"), None).await.unwrap();
    let signals: Vec<&str> =
        detail["evidence"]["signals"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert!(signals.contains(&"reasoning_elicitation"), "{signals:?}");
    for s in detail["evidence"]["signals"].as_array().unwrap() {
        assert!(s["value"].is_number() && s["threshold"].is_number() && s["weight"].is_number(), "{s}");
    }
    let samples = detail["evidence"]["samples"].as_array().unwrap();
    assert!(!samples.is_empty());
    assert!(samples[0]["excerpt"].as_str().unwrap().contains("step by step"));
    assert_eq!(detail["accounts"][0]["status"], "blocked");
    assert!(detail["accounts"][0]["risk_score"].as_f64().unwrap() >= 0.85);
    let account = w.admin.expect(Method::GET, "/admin/v1/accounts/harvester", None).await.unwrap();
    assert_eq!(account["status"], "blocked");
    assert!(account["actions"].as_array().unwrap().iter().any(|a| a["actor"] == "detector" && a["action"] == "block"));

    // The CLI shows the queue (real binary against the live admin API).
    // (On a blocking thread: the admin listener runs on this test's runtime.)
    let admin = w.admin_addr.to_string();
    let (ok, out, err) = tokio::task::spawn_blocking(move || cli(&admin, &["alerts", "list"])).await.unwrap();
    assert!(ok, "{err}");
    assert!(out.contains(id) && out.contains("harvester"), "{out}");

    // A verdict warden does not know is refused before the alert is looked up.
    let bad = json!({"error": {"message": "verdict must be `confirmed` or `false_positive`",
        "type": "invalid_request_error", "param": null, "code": "invalid_request"}});
    for path in [format!("/admin/v1/alerts/{id}/resolve"), "/admin/v1/alerts/alr_nope/resolve".to_string()] {
        for verdict in [json!("dismissed"), json!("False_Positive"), json!(1)] {
            let (status, body) = w.admin.call(Method::POST, &path, Some(json!({"verdict": verdict}))).await.unwrap();
            if verdict.is_string() {
                assert_eq!((status.as_u16(), &body), (400, &bad), "{path} {verdict}");
            } else {
                // Not a string at all: refused as a malformed body, as before.
                assert_eq!(status, 400, "{path} {verdict}: {body}");
            }
        }
    }

    // A reviewer decides it was a false positive: the account is restored at once, the
    // decision is recorded, and the same alert is not raised again for a while.
    let resolved = w
        .admin
        .expect(
            Method::POST,
            &format!("/admin/v1/alerts/{id}/resolve"),
            Some(json!({"verdict": "false_positive", "note": "internal eval team"})),
        )
        .await
        .unwrap();
    assert_eq!(resolved["status"], "resolved");
    assert_eq!(resolved["verdict"], "false_positive");
    let again = w.post("/v1/chat/completions", &harvester, harvest_body(1000)).await;
    assert_eq!(again.status, 200, "{}", again.json());
    for i in 0..50 {
        let r = w.post("/v1/chat/completions", &harvester, harvest_body(2000 + i)).await;
        assert_eq!(r.status, 200, "suppressed after false positive");
    }
    let detail = w.admin.expect(Method::GET, &format!("/admin/v1/alerts/{id}"), None).await.unwrap();
    let actions = detail["actions"].as_array().unwrap();
    assert!(
        actions.iter().any(|a| a["action"] == "resolve_alert" && a["reason"] == "false_positive: internal eval team"),
        "{actions:?}"
    );
    let open: Vec<Value> = alerts_for(&w, "harvester").await.into_iter().filter(|a| a["status"] == "open").collect();
    assert!(open.is_empty(), "{open:?}");
    // Resolving twice is a conflict, not a silent success.
    let (status, _) = w
        .admin
        .call(Method::POST, &format!("/admin/v1/alerts/{id}/resolve"), Some(json!({"verdict": "confirmed"})))
        .await
        .unwrap();
    assert_eq!(status, 409);
    w.stop().await;
}

#[tokio::test]
async fn shadow_mode_alerts_without_acting_and_allow_list_exempts() {
    let mock = mock_llm::spawn(MockOptions::default()).await.unwrap();
    let w = Warden::start_with(
        &mock.base_url(),
        Extra { tail: "[detection]\nmode = \"shadow\"\nallow_accounts = [\"research\"]\n", ..Extra::default() },
    )
    .await;
    let shadow = w.account("shadowed").await;
    let research = w.account("research").await;
    for i in 0..250 {
        assert_eq!(w.post("/v1/chat/completions", &shadow, harvest_body(i)).await.status, 200);
        assert_eq!(w.post("/v1/chat/completions", &research, harvest_body(i)).await.status, 200);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let alerts = alerts_for(&w, "shadowed").await;
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0]["enforced"], false);
    let account = w.admin.expect(Method::GET, "/admin/v1/accounts/shadowed", None).await.unwrap();
    assert_eq!(account["status"], "active");
    assert!(alerts_for(&w, "research").await.is_empty());
    w.stop().await;
}
