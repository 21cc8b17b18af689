//! A small HTTP client over hyper for the command line and the demo: the admin commands
//! talk to a running warden's admin API with it, the demo drives traffic with it.

use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

#[derive(Clone)]
pub struct HttpClient {
    inner: Client<HttpConnector, Full<Bytes>>,
}

/// A whole response.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

impl Default for HttpClient {
    fn default() -> Self {
        HttpClient::new()
    }
}

impl HttpClient {
    pub fn new() -> HttpClient {
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(Duration::from_secs(5)));
        http.set_nodelay(true);
        HttpClient { inner: Client::builder(TokioExecutor::new()).build(http) }
    }

    /// Sends a request and reads the whole response.
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<Bytes>,
    ) -> anyhow::Result<Reply> {
        let mut req = Request::builder().method(method).uri(url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::new(body.unwrap_or_default())).context("building request")?;
        let resp = self.inner.request(req).await.with_context(|| format!("cannot reach {url}"))?;
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.context("reading response body")?.to_bytes();
        Ok(Reply { status: parts.status, headers: parts.headers, body })
    }
}

/// Talks to the admin API of a running warden.
pub struct AdminClient {
    http: HttpClient,
    base: String,
    token: String,
    actor: String,
}

impl AdminClient {
    pub fn new(base: &str, token: &str, actor: &str) -> AdminClient {
        AdminClient {
            http: HttpClient::new(),
            base: base.trim_end_matches('/').to_string(),
            token: token.to_string(),
            actor: actor.to_string(),
        }
    }

    /// Calls an admin route; returns the status and the JSON body (`null` if none).
    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> anyhow::Result<(StatusCode, Value)> {
        let auth = format!("Bearer {}", self.token);
        let headers = [
            ("authorization", auth.as_str()),
            ("x-warden-actor", self.actor.as_str()),
            ("content-type", "application/json"),
        ];
        let body = body.map(|v| Bytes::from(v.to_string()));
        let reply = self.http.send(method, &format!("{}{}", self.base, path), &headers, body).await?;
        Ok((reply.status, reply.json()))
    }

    /// Like [`AdminClient::call`], but an error status becomes an error carrying the
    /// server's message.
    pub async fn expect(&self, method: Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let (status, v) = self.call(method, path, body).await?;
        if status.is_success() {
            Ok(v)
        } else {
            let msg = v["error"]["message"].as_str().unwrap_or("no message").to_string();
            anyhow::bail!("{status}: {msg}")
        }
    }
}
