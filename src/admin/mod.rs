//! The admin listener: the admin API (accounts, keys, block/unblock, alerts), the
//! reviewers' dashboard (`/dashboard/`), `/healthz`, `/readyz` and `/metrics`.
//!
//! Every `/admin/` route needs `Authorization: Bearer <admin token>`; the three probe
//! routes and the dashboard's static files do not (the dashboard holds no data: it
//! asks the API, with the token the reviewer enters). Every change is recorded with its actor, taken from the
//! `x-warden-actor` header (the CLI sends the operator's user name), or `admin`.

/// The reviewers' dashboard: three static files compiled into the binary.
mod dashboard {
    use http::{header, Response, StatusCode};

    use crate::body::{self, Body};

    const FILES: &[(&str, &str, &str)] = &[
        ("index.html", "text/html; charset=utf-8", include_str!("dashboard/index.html")),
        ("app.js", "text/javascript; charset=utf-8", include_str!("dashboard/app.js")),
        ("style.css", "text/css; charset=utf-8", include_str!("dashboard/style.css")),
    ];

    /// Scripts and styles from this origin only, no inline code, no framing, no referrer:
    /// what an admin page holding a token should allow.
    const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                       img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

    pub fn file(name: &str) -> Response<Body> {
        match FILES.iter().find(|(n, _, _)| *n == name) {
            Some((_, content_type, text)) => Response::builder()
                .header(header::CONTENT_TYPE, *content_type)
                .header(header::CONTENT_SECURITY_POLICY, CSP)
                .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
                .header(header::REFERRER_POLICY, "no-referrer")
                .header(header::X_FRAME_OPTIONS, "DENY")
                .header(header::CACHE_CONTROL, "no-cache")
                .body(body::full(*text))
                .expect("static response parts are valid"),
            None => Response::builder()
                .status(StatusCode::NOT_FOUND)
                .header(header::CONTENT_TYPE, "text/plain")
                .body(body::full("not found"))
                .expect("static response parts are valid"),
        }
    }
}

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde::Deserialize;
use serde_json::json;

use crate::accounts::AccountError;
use crate::app::App;
use crate::auth::AccountStatus;
use crate::body::{self, json_response, Body};
use crate::store::StoreError;

/// Errors of the admin API, in the same JSON shape as proxy errors.
#[derive(Debug, thiserror::Error)]
enum AdminError {
    #[error("missing or wrong admin token")]
    Unauthorized,
    #[error("too many failed authentications from your address; retry in {} s", .0.as_secs().max(1))]
    Throttled(std::time::Duration),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Conflict(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<AccountError> for AdminError {
    fn from(e: AccountError) -> Self {
        match e {
            AccountError::NotFound(what) => AdminError::NotFound(what),
            AccountError::Invalid(msg) => AdminError::BadRequest(msg),
            AccountError::Store(StoreError::Conflict(what)) => AdminError::Conflict(format!("{what} already exists")),
            AccountError::Store(other) => AdminError::Internal(other.to_string()),
        }
    }
}

impl AdminError {
    fn into_response(self) -> Response<Body> {
        let (status, code) = match &self {
            AdminError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            AdminError::Throttled(_) => (StatusCode::TOO_MANY_REQUESTS, "too_many_auth_failures"),
            AdminError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            AdminError::BadRequest(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
            AdminError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            AdminError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            AdminError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal_error"),
        };
        if let AdminError::Internal(msg) = &self {
            tracing::error!(error = %msg, "admin request failed");
        }
        let kind = if status.is_server_error() { "server_error" } else { "invalid_request_error" };
        let mut response = json_response(
            status,
            &json!({"error": {"message": self.to_string(), "type": kind, "param": null, "code": code}}),
        );
        if let AdminError::Throttled(wait) = &self {
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            response.headers_mut().insert(http::header::RETRY_AFTER, http::HeaderValue::from(secs.max(1)));
        }
        response
    }
}

type AdminResult = Result<Response<Body>, AdminError>;

pub async fn handle(app: Arc<App>, req: Request<Incoming>, peer: std::net::SocketAddr) -> Response<Body> {
    let result = match (req.method(), req.uri().path()) {
        (&Method::GET, "/healthz") => Ok(json_response(StatusCode::OK, &json!({"status": "ok"}))),
        (&Method::GET, "/readyz") => Ok(readyz(&app).await),
        (&Method::GET, "/metrics") => Ok(Response::builder()
            .header(http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")
            .body(body::full(app.metrics.render()))
            .expect("static response parts are valid")),
        (&Method::GET, "/") => Ok(Response::builder()
            .status(StatusCode::FOUND)
            .header(http::header::LOCATION, "/dashboard/")
            .body(body::empty())
            .expect("static response parts are valid")),
        (&Method::GET, "/dashboard" | "/dashboard/") => Ok(dashboard::file("index.html")),
        (&Method::GET, path) if path.starts_with("/dashboard/") => Ok(dashboard::file(&path["/dashboard/".len()..])),
        (_, path) if path.starts_with("/admin/") => match authorize(&app, &req, peer) {
            Ok(actor) => api(&app, req, &actor).await,
            Err(e) => return refuse_unread(&app, req, e),
        },
        _ => return refuse_unread(&app, req, AdminError::NotFound("route".into())),
    };
    result.unwrap_or_else(AdminError::into_response)
}

/// Answers without reading the request's body, which is read and thrown away beside the
/// response so that the client keeps its keep-alive connection (see
/// [`crate::stack::discard_unread_request`]).
fn refuse_unread(app: &App, req: Request<Incoming>, err: AdminError) -> Response<Body> {
    let mut response = err.into_response();
    crate::stack::discard_unread_request(req, &app.config(), &mut response);
    response
}

async fn readyz(app: &App) -> Response<Body> {
    let shutting_down = app.shutting_down.load(Ordering::Acquire);
    let store = app.accounts.store().ping().await;
    // Without Redis a fail_open replica still serves (on local limits): ready, degraded.
    // A fail_closed one refuses LLM traffic, so it is not ready.
    let redis = app.limiter.shared.as_ref().map(|s| (s.healthy(), s.fail_closed()));
    let redis_blocks = matches!(redis, Some((false, true)));
    let ready = !shutting_down && store.is_ok() && !redis_blocks;
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    json_response(
        status,
        &json!({
            "status": if ready { "ready" } else { "not_ready" },
            "shutting_down": shutting_down,
            "store": if store.is_ok() { "ok" } else { "unavailable" },
            "redis": match redis {
                None => "not_configured",
                Some((true, _)) => "ok",
                Some((false, true)) => "unavailable",
                Some((false, false)) => "degraded",
            },
        }),
    )
}

/// Checks the admin token (in constant time) and returns the actor name. An address over
/// its failed-authentication budget is refused (429) before its token is looked at, so
/// the budget bounds how many tokens it can try (see [`crate::auth_failures`]).
fn authorize(app: &App, req: &Request<Incoming>, peer: std::net::SocketAddr) -> Result<String, AdminError> {
    let config = app.config();
    let ip = crate::stack::client_ip(peer.ip(), req.headers(), &config.server.trusted_proxies);
    let failures = &app.auth_failures.admin;
    if let Some(wait) = failures.over_budget(ip) {
        return Err(AdminError::Throttled(wait));
    }
    let presented = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let valid = presented.is_some_and(|p| constant_time_eq(p.trim().as_bytes(), config.admin.token.as_bytes()));
    if !valid {
        tracing::warn!(target: "warden::admin", client = %ip, path = req.uri().path(), "admin request with a missing or wrong token");
        return Err(match failures.failed(ip) {
            Ok(()) => AdminError::Unauthorized,
            Err(wait) => AdminError::Throttled(wait),
        });
    }
    let actor = req
        .headers()
        .get("x-warden-actor")
        .and_then(|v| v.to_str().ok())
        .filter(|a| !a.is_empty() && a.len() <= 64 && a.bytes().all(|b| b.is_ascii_graphic()))
        .unwrap_or("admin");
    Ok(actor.to_string())
}

/// `a=1&b=two` as a map, percent-decoded.
fn query_pairs(query: &str) -> std::collections::HashMap<String, String> {
    fn decode(s: &str) -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' && i + 2 < bytes.len() && s.is_char_boundary(i + 1) && s.is_char_boundary(i + 3) {
                if let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                    out.push(b);
                    i += 3;
                    continue;
                }
            }
            out.push(bytes[i]);
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Reads a small JSON body; an empty body reads as `{}`.
async fn json_body<T: for<'de> Deserialize<'de>>(req: Request<Incoming>) -> Result<T, AdminError> {
    let bytes: Bytes = Limited::new(req.into_body(), 64 * 1024)
        .collect()
        .await
        .map_err(|e| AdminError::BadRequest(format!("cannot read body: {e}")))?
        .to_bytes();
    let bytes = if bytes.iter().all(u8::is_ascii_whitespace) { Bytes::from_static(b"{}") } else { bytes };
    serde_json::from_slice(&bytes).map_err(|e| AdminError::BadRequest(format!("invalid JSON body: {e}")))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewAccount {
    id: String,
    tier: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanChange {
    tier: Option<String>,
    limits: Option<crate::limits::Limits>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Reason {
    reason: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResolveBody {
    verdict: String,
    note: Option<String>,
}

async fn api(app: &App, req: Request<Incoming>, actor: &str) -> AdminResult {
    let path = req.uri().path().trim_end_matches('/').to_string();
    let segments: Vec<&str> = path.split('/').skip(3).collect(); // after /admin/v1
    if !path.starts_with("/admin/v1/") {
        return Err(AdminError::NotFound("route".into()));
    }
    let accounts = &app.accounts;
    let method = req.method().clone();
    match (method, segments.as_slice()) {
        (Method::POST, ["accounts"]) => {
            let body: NewAccount = json_body(req).await?;
            let tier = body.tier.unwrap_or_else(|| app.config().tiers[0].name.clone());
            let account = accounts.create(&body.id, &tier, actor).await?;
            Ok(json_response(StatusCode::CREATED, &account))
        }
        (Method::GET, ["accounts"]) => Ok(json_response(StatusCode::OK, &json!({"accounts": accounts.list().await?}))),
        (Method::GET, ["accounts", id]) => {
            let account = accounts.get(id).await?;
            let history = accounts.history(id, 50).await?;
            let mut v = serde_json::to_value(account).expect("account serializes");
            v["actions"] = serde_json::to_value(history).expect("actions serialize");
            Ok(json_response(StatusCode::OK, &v))
        }
        (Method::PATCH, ["accounts", id]) => {
            let change: PlanChange = json_body(req).await?;
            Ok(json_response(
                StatusCode::OK,
                &accounts.update_plan(id, change.tier.as_deref(), change.limits, actor).await?,
            ))
        }
        (Method::POST, ["accounts", id, "keys"]) => {
            Ok(json_response(StatusCode::CREATED, &accounts.create_key(id, actor).await?))
        }
        (Method::GET, ["accounts", id, "keys"]) => {
            Ok(json_response(StatusCode::OK, &json!({"keys": accounts.keys(id).await?})))
        }
        (Method::GET, ["accounts", id, "requests"]) => {
            accounts.get(id).await?;
            let query = query_pairs(req.uri().query().unwrap_or(""));
            let since = match query.get("since") {
                Some(s) => crate::clock::parse_time(s)
                    .ok_or_else(|| AdminError::BadRequest("`since` must be RFC 3339 or Unix milliseconds".into()))?,
                None => 0,
            };
            let limit = match query.get("limit") {
                Some(l) => l.parse::<i64>().map_err(|_| AdminError::BadRequest("`limit` must be a number".into()))?,
                None => 50,
            }
            .clamp(1, 1000);
            let requests =
                app.audit.account_requests(id, since, limit).await.map_err(|e| AdminError::Internal(e.to_string()))?;
            // Serialized as they are: the records are not read into trees (see
            // `AuditSink::account_requests`).
            #[derive(serde::Serialize)]
            struct Requests {
                requests: Vec<Box<serde_json::value::RawValue>>,
            }
            Ok(json_response(StatusCode::OK, &Requests { requests }))
        }
        (Method::GET, ["accounts", id, "timeline"]) => {
            // What the dashboard's chart draws: requests and tokens per UTC hour, with the
            // alerts naming the account and the actions taken on it.
            accounts.get(id).await?;
            let query = query_pairs(req.uri().query().unwrap_or(""));
            let hours = match query.get("hours") {
                Some(h) => h.parse::<i64>().map_err(|_| AdminError::BadRequest("`hours` must be a number".into()))?,
                None => 48,
            }
            .clamp(1, 24 * 31);
            let now = crate::clock::now_millis();
            let to = now - now.rem_euclid(3_600_000) + 3_600_000;
            let from = to - hours * 3_600_000;
            let counted = app.audit.account_hours(id, from).await.map_err(|e| AdminError::Internal(e.to_string()))?;
            let buckets: Vec<_> = counted
                .iter()
                .map(|h| {
                    json!({"hour": crate::clock::rfc3339_millis(h.hour_ms), "requests": h.requests,
                        "refused": h.refused, "prompt_tokens": h.prompt_tokens,
                        "completion_tokens": h.completion_tokens})
                })
                .collect();
            let alerts = app
                .detector
                .alerts(None, Some(id), 200)
                .await
                .map_err(|e| AdminError::Internal(e.to_string()))?
                .into_iter()
                .filter(|a| crate::clock::parse_time(&a.created_at).is_some_and(|t| t >= from))
                .map(|a| {
                    json!({"id": a.id, "kind": a.kind, "severity": a.severity, "action": a.action,
                        "status": a.status, "created_at": a.created_at})
                })
                .collect::<Vec<_>>();
            let actions = accounts
                .history(id, 200)
                .await?
                .into_iter()
                .filter(|a| a.ts >= from)
                .map(|a| {
                    json!({"at": crate::clock::rfc3339_millis(a.ts), "action": a.action, "actor": a.actor,
                        "reason": a.reason})
                })
                .collect::<Vec<_>>();
            Ok(json_response(
                StatusCode::OK,
                &json!({"account_id": id, "from": crate::clock::rfc3339_millis(from),
                    "to": crate::clock::rfc3339_millis(to), "hours": buckets, "alerts": alerts, "actions": actions}),
            ))
        }
        (Method::POST, ["accounts", id, action @ ("block" | "unblock")]) => {
            let status = if *action == "block" { AccountStatus::Blocked } else { AccountStatus::Active };
            let body: Reason = json_body(req).await?;
            Ok(json_response(StatusCode::OK, &accounts.set_status(id, status, body.reason.as_deref(), actor).await?))
        }
        (Method::GET, ["alerts"]) => {
            let query = query_pairs(req.uri().query().unwrap_or(""));
            let status = match query.get("status").map(String::as_str) {
                None | Some("") | Some("all") => None,
                Some("open") => Some(crate::detect::AlertStatus::Open),
                Some("resolved") => Some(crate::detect::AlertStatus::Resolved),
                Some(other) => {
                    return Err(AdminError::BadRequest(format!(
                        "`status` must be open, resolved or all, not `{other}`"
                    )))
                }
            };
            let limit = match query.get("limit") {
                Some(l) => l.parse::<i64>().map_err(|_| AdminError::BadRequest("`limit` must be a number".into()))?,
                None => 100,
            }
            .clamp(1, 1000);
            let alerts = app
                .detector
                .alerts(status, query.get("account").map(String::as_str), limit)
                .await
                .map_err(|e| AdminError::Internal(e.to_string()))?;
            Ok(json_response(StatusCode::OK, &json!({"alerts": alerts})))
        }
        (Method::GET, ["alerts", id]) => {
            let alert = app
                .detector
                .alert(id)
                .await
                .map_err(|e| AdminError::Internal(e.to_string()))?
                .ok_or_else(|| AdminError::NotFound(format!("alert `{id}`")))?;
            // What a reviewer needs beside the evidence: each member's current state and
            // what has been done about the alert.
            let mut members = Vec::new();
            for m in alert.account_ids.iter().take(200) {
                if let Ok(a) = accounts.get(m).await {
                    members.push(json!({"id": a.id, "tier": a.tier, "status": a.status,
                        "status_reason": a.status_reason, "risk_score": a.risk_score, "usage": a.usage}));
                }
            }
            let history = app
                .accounts
                .store()
                .actions_on("alert", id, 50)
                .await
                .map_err(|e| AdminError::Internal(e.to_string()))?;
            let mut v = serde_json::to_value(&alert).expect("alert serializes");
            v["accounts"] = json!(members);
            v["actions"] = serde_json::to_value(history).expect("actions serialize");
            Ok(json_response(StatusCode::OK, &v))
        }
        (Method::POST, ["alerts", id, "resolve"]) => {
            let body: ResolveBody = json_body(req).await?;
            // Read here rather than by serde, whose message for an unknown variant differs.
            let verdict = crate::detect::Verdict::parse(&body.verdict)
                .ok_or_else(|| AdminError::BadRequest(crate::detector::ResolveError::BadVerdict.to_string()))?;
            let resolution = crate::detector::Resolution { verdict, note: body.note };
            match app.detector.resolve(id, resolution, actor).await {
                Ok(alert) => Ok(json_response(StatusCode::OK, &alert)),
                Err(crate::detector::ResolveError::NotFound(_)) => Err(AdminError::NotFound(format!("alert `{id}`"))),
                Err(crate::detector::ResolveError::Account(e)) => Err(e.into()),
                Err(crate::detector::ResolveError::Store(e)) => Err(AdminError::Internal(e.to_string())),
                Err(e @ crate::detector::ResolveError::AlreadyResolved(_)) => Err(AdminError::Conflict(e.to_string())),
                Err(e) => Err(AdminError::BadRequest(e.to_string())),
            }
        }
        (_, ["alerts"] | ["alerts", _] | ["alerts", _, "resolve"]) => Err(AdminError::MethodNotAllowed),
        (Method::POST, ["config", "reload"]) => match app.reload() {
            Ok(report) => {
                let what = serde_json::to_string(&report).expect("report serializes");
                accounts
                    .store()
                    .record_action(actor, "reload_config", "config", "warden", Some(&what))
                    .await
                    .map_err(|e| AdminError::Internal(e.to_string()))?;
                tracing::info!(actor, applied = ?report.applied, restart_required = ?report.restart_required, "configuration reloaded");
                Ok(json_response(StatusCode::OK, &report))
            }
            Err(problems) => Err(AdminError::BadRequest(format!(
                "configuration not reloaded (the running one stays): {}",
                problems.0.join("; ")
            ))),
        },
        (_, ["config", "reload"]) => Err(AdminError::MethodNotAllowed),
        (Method::DELETE, ["keys", key_id]) => {
            accounts.revoke_key(key_id, actor).await?;
            Ok(Response::builder().status(StatusCode::NO_CONTENT).body(body::empty()).expect("valid response"))
        }
        (
            _,
            ["accounts"]
            | ["accounts", _]
            | ["accounts", _, "keys" | "block" | "unblock" | "requests" | "timeline"]
            | ["keys", _],
        ) => Err(AdminError::MethodNotAllowed),
        _ => Err(AdminError::NotFound("route".into())),
    }
}
