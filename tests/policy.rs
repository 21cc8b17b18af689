//! Parameter policy over real sockets: counts are read by their meaning, so a cap holds
//! whatever JSON spelling a client picks, and a value that is not a count is refused. A
//! refused request never reaches the upstream and has its audit record.

mod support;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::Method;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use support::{read_audit, Extra, Warden};
use warden::client::HttpClient;
use warden::mock_llm::{self, MockOptions, MockServer};

const TIER: &str = r#"
    [[tiers]]
    name = "capped"
    max_tokens = 1000000
    max_n = 4
"#;

/// The harness's mock upstream behind a relay that keeps every body it passes on: what
/// reached the upstream.
struct Recorded {
    url: String,
    bodies: Arc<Mutex<Vec<Bytes>>>,
    _mock: MockServer,
}

async fn recorded_upstream() -> Recorded {
    let mock = mock_llm::spawn(MockOptions::default()).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let bodies: Arc<Mutex<Vec<Bytes>>> = Arc::default();
    let (kept, base) = (bodies.clone(), mock.base_url());
    tokio::spawn(async move {
        let http = HttpClient::new();
        while let Ok((stream, _)) = listener.accept().await {
            let (kept, base, http) = (kept.clone(), base.clone(), http.clone());
            tokio::spawn(async move {
                let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let (kept, base, http) = (kept.clone(), base.clone(), http.clone());
                    async move {
                        let (parts, body) = req.into_parts();
                        let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                        kept.lock().unwrap().push(body.clone());
                        let headers: Vec<(&str, &str)> = parts
                            .headers
                            .iter()
                            .filter(|(k, _)| *k != http::header::HOST && *k != http::header::CONTENT_LENGTH)
                            .filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?)))
                            .collect();
                        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
                        let reply =
                            http.send(parts.method.clone(), &format!("{base}{path}"), &headers, Some(body)).await;
                        let mut resp = http::Response::builder();
                        let out = match reply {
                            Ok(r) => {
                                resp = resp.status(r.status);
                                if let Some(ct) = r.headers.get(http::header::CONTENT_TYPE) {
                                    resp = resp.header(http::header::CONTENT_TYPE, ct);
                                }
                                r.body
                            }
                            Err(e) => {
                                resp = resp.status(502);
                                Bytes::from(e.to_string())
                            }
                        };
                        Ok::<_, Infallible>(resp.body(Full::new(out)).unwrap())
                    }
                });
                let _ =
                    hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    Recorded { url, bodies, _mock: mock }
}

#[tokio::test]
async fn counts_in_any_spelling_are_capped_or_refused_and_never_forwarded() {
    let upstream = recorded_upstream().await;
    let w = Warden::start_with(&upstream.url, Extra { tail: TIER, ..Extra::default() }).await;
    w.admin.expect(Method::POST, "/admin/v1/accounts", Some(json!({"id": "p", "tier": "capped"}))).await.unwrap();
    let key = w.key("p").await;
    let send = |id: String, body: String| {
        let (w, key) = (&w, &key);
        async move {
            w.send(Method::POST, "/v1/chat/completions", key, Some(Bytes::from(body)), &[("x-request-id", id.as_str())])
                .await
        }
    };
    let body = |param: &str, value: &str| {
        format!(r#"{{"model":"mock-small","{param}":{value},"messages":[{{"role":"user","content":"hi"}}]}}"#)
    };

    // Within the caps, in the same spellings: forwarded (the relay sees it).
    let r = send("ok".into(), body("max_tokens", "1e6")).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = send("ok-n".into(), body("n", "4.0")).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(upstream.bodies.lock().unwrap().len(), 2, "the relay sees what is forwarded");

    // Every value of the issue, each forwarded before.
    let refused = [
        ("max_tokens", "5000000.0"),
        ("max_tokens", "5e6"),
        ("max_tokens", r#""5000000""#),
        ("max_tokens", "18446744073709551616"),
        ("n", "100.0"),
        ("n", "1e2"),
        ("n", r#""100""#),
        ("n", "-1"),
        // And what else is not a count, on any of the keys.
        ("max_completion_tokens", "5.5"),
        ("max_output_tokens", "true"),
        ("best_of", "[]"),
        ("top_logprobs", "{}"),
    ];
    let mut ids = Vec::new();
    for (i, (param, value)) in refused.iter().enumerate() {
        let id = format!("refused-{i}");
        let r = send(id.clone(), body(param, value)).await;
        assert_eq!(r.status, 400, "{param}: {value}: {:?}", r.body);
        let err = &r.json()["error"];
        assert_eq!(err["param"], *param, "{value}: {err}");
        assert_eq!(err["code"], "invalid_request", "{value}: {err}");
        assert_eq!(err["type"], "invalid_request_error", "{value}: {err}");
        ids.push((id, *param));
    }
    // Two budget keys: the cap holds for each.
    let r = send(
        "two-keys".into(),
        r#"{"model":"mock-small","max_tokens":10,"max_completion_tokens":5e9,"messages":[]}"#.into(),
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["param"], "max_completion_tokens");
    ids.push(("two-keys".into(), "max_completion_tokens"));

    // Nothing refused reached the upstream: only the two admitted requests did.
    let seen: Vec<Value> = upstream.bodies.lock().unwrap().iter().map(|b| serde_json::from_slice(b).unwrap()).collect();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0]["max_tokens"], 1e6);
    assert_eq!(seen[1]["n"], 4.0);

    // One audit record for each refused request, decided `invalid_request`.
    let dir = w.stop().await;
    let records = read_audit(&dir.path().join("audit"));
    for (id, param) in ids {
        let recs: Vec<_> = records.iter().filter(|r| r["request_id"] == id.as_str()).collect();
        assert_eq!(recs.len(), 1, "{id}: {records:#?}");
        let r = recs[0];
        assert_eq!(r["status"], 400, "{id}: {r}");
        assert_eq!(r["decision"], "invalid_request", "{id}: {r}");
        assert_eq!(r["ending"], "refused", "{id}: {r}");
        assert_eq!(r["account_id"], "p", "{id}: {r}");
        assert!(r["reason"].as_str().unwrap().contains(&format!("`{param}`")), "{id}: {r}");
    }
    assert_eq!(records.iter().filter(|r| r["decision"] == "allowed").count(), 2, "{records:#?}");
}
