//! Several warden processes sharing one store, as replicas behind a load balancer do:
//! what an operator or reviewer changes through one replica (an account, a key, a block,
//! a revocation, a new plan) reaches every other replica within the sync interval, with
//! SQLite shared by two processes on one host and with a real PostgreSQL server.

mod support;

use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use serde_json::json;
use support::postgres_server::Postgres;
use support::process::{start_mock, start_warden_with};
use support::{chat_body, Extra, ADMIN_TOKEN};
use warden::client::{AdminClient, HttpClient};

/// How long a change may take to reach the other replica: the default sync interval
/// (1 s) plus scheduling slack.
const PROPAGATION: Duration = Duration::from_secs(4);

async fn send(http: &HttpClient, proxy: &str, key: &str) -> StatusCode {
    let body = bytes::Bytes::from(chat_body("hello", false).to_string());
    let auth = format!("Bearer {key}");
    let url = format!("http://{proxy}/v1/chat/completions");
    let headers = [("authorization", auth.as_str()), ("content-type", "application/json")];
    http.send(Method::POST, &url, &headers, Some(body)).await.unwrap().status
}

/// Sends the same request until it gets `want`; returns how long that took.
async fn until_status(http: &HttpClient, proxy: &str, key: &str, want: StatusCode) -> Duration {
    let started = Instant::now();
    loop {
        let status = send(http, proxy, key).await;
        if status == want {
            return started.elapsed();
        }
        assert!(started.elapsed() < PROPAGATION, "still {status} after {:?}, waiting for {want}", started.elapsed());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn changes_reach_the_other_replica(extra: Extra<'_>) {
    let (_mock, upstream) = start_mock(&[]);
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (_a, proxy_a, admin_a) = start_warden_with(a_dir.path(), &upstream, extra);
    let (_b, proxy_b, admin_b) = start_warden_with(b_dir.path(), &upstream, extra);
    let admin_a = AdminClient::new(&format!("http://{admin_a}"), ADMIN_TOKEN, "op-a");
    let admin_b = AdminClient::new(&format!("http://{admin_b}"), ADMIN_TOKEN, "op-b");
    let http = HttpClient::new();

    // An account and key made through A, after both started, work on B.
    admin_a.expect(Method::POST, "/admin/v1/accounts", Some(json!({"id": "acme", "tier": "default"}))).await.unwrap();
    let created = admin_a.expect(Method::POST, "/admin/v1/accounts/acme/keys", None).await.unwrap();
    let key = created["key"].as_str().unwrap().to_string();
    let key_id = created["key_id"].as_str().unwrap().to_string();
    assert_eq!(send(&http, &proxy_a, &key).await, StatusCode::OK, "at once on the replica that made it");
    let took = until_status(&http, &proxy_b, &key, StatusCode::OK).await;
    eprintln!("new key usable on the other replica after {took:?}");

    // A block through B stops the account on A.
    admin_b.expect(Method::POST, "/admin/v1/accounts/acme/block", Some(json!({"reason": "harvesting"}))).await.unwrap();
    assert_eq!(send(&http, &proxy_b, &key).await, StatusCode::FORBIDDEN, "at once on the replica that made it");
    let took = until_status(&http, &proxy_a, &key, StatusCode::FORBIDDEN).await;
    eprintln!("block effective on the other replica after {took:?}");
    // Both replicas show the block and who made it.
    let seen_on_a = admin_a.expect(Method::GET, "/admin/v1/accounts/acme", None).await.unwrap();
    assert_eq!(seen_on_a["status"], "blocked");

    // Unblocked through A: B serves it again.
    admin_a.expect(Method::POST, "/admin/v1/accounts/acme/unblock", Some(json!({"reason": "cleared"}))).await.unwrap();
    until_status(&http, &proxy_b, &key, StatusCode::OK).await;

    // A plan change through B (one request a minute) applies on A.
    admin_b
        .expect(Method::PATCH, "/admin/v1/accounts/acme", Some(json!({"limits": {"requests_per_minute": 1}})))
        .await
        .unwrap();
    until_status(&http, &proxy_a, &key, StatusCode::TOO_MANY_REQUESTS).await;

    // A key revoked through A no longer works on B.
    admin_a.expect(Method::DELETE, &format!("/admin/v1/keys/{key_id}"), None).await.unwrap();
    until_status(&http, &proxy_b, &key, StatusCode::UNAUTHORIZED).await;
    until_status(&http, &proxy_a, &key, StatusCode::UNAUTHORIZED).await;
}

#[tokio::test]
async fn replicas_sharing_a_sqlite_file_see_each_others_changes() {
    let shared = tempfile::tempdir().unwrap();
    let db = shared.path().join("shared.db");
    changes_reach_the_other_replica(Extra { db: Some(&db), ..Extra::default() }).await;
}

#[tokio::test]
async fn replicas_sharing_postgres_see_each_others_changes() {
    let pg = Postgres::start();
    let url = pg.url();
    changes_reach_the_other_replica(Extra { db_url: Some(&url), ..Extra::default() }).await;
}
