//! The upstream LLM API: a pooled client (TLS through rustls for real providers, plain
//! HTTP for local ones), how a client request is turned into an upstream request (path
//! appended to `base_url`, hop-by-hop headers removed, the client's credential replaced by
//! the upstream key), and the connect / first-byte timeouts.

use std::time::Duration;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::body::Body;
use crate::config::UpstreamConfig;
use crate::error::ProxyError;

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

/// Which upstream failure happened, for metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpstreamFailure {
    Connect,
    Timeout,
    Protocol,
}

impl UpstreamFailure {
    pub fn label(self) -> &'static str {
        match self {
            UpstreamFailure::Connect => "connect",
            UpstreamFailure::Timeout => "timeout",
            UpstreamFailure::Protocol => "protocol",
        }
    }
}

pub struct Upstream {
    /// One connection pool per proxy worker (see [`crate::server`]), so a request and its
    /// upstream connection live on the same event loop; index 0 also serves any other
    /// thread.
    clients: Vec<Client<Connector, Body>>,
    scheme: http::uri::Scheme,
    authority: http::uri::Authority,
    /// `base_url`'s path without a trailing slash; request paths are appended to it.
    base_path: String,
    /// `Bearer <upstream key>`, marked sensitive so it is never printed.
    credential: Option<HeaderValue>,
    first_byte_timeout: Duration,
    pub idle_timeout: Duration,
}

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1), plus the
/// client's credentials, which must never reach the upstream.
const STRIPPED_REQUEST_HEADERS: &[HeaderName] = &[
    header::CONNECTION,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::HOST,
    header::AUTHORIZATION,
];

const HOP_BY_HOP_RESPONSE_HEADERS: &[HeaderName] = &[
    header::CONNECTION,
    header::PROXY_AUTHENTICATE,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Removes the headers named in `Connection` and the fixed hop-by-hop set.
fn strip_hop_by_hop(headers: &mut HeaderMap, fixed: &[HeaderName]) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for name in named.iter().chain(fixed) {
        headers.remove(name);
    }
    headers.remove("keep-alive");
    headers.remove("proxy-connection");
}

impl Upstream {
    pub fn new(config: &UpstreamConfig, workers: usize) -> Upstream {
        let clients = (0..workers.max(1)).map(|_| Self::client(config)).collect();
        let parts = config.base_url.clone().into_parts();
        let credential = config.api_key.as_ref().map(|k| {
            let mut v = HeaderValue::from_str(&format!("Bearer {k}")).expect("upstream key is a valid header value");
            v.set_sensitive(true);
            v
        });
        Upstream {
            clients,
            scheme: parts.scheme.expect("validated: base_url has a scheme"),
            authority: parts.authority.expect("validated: base_url has an authority"),
            base_path: parts.path_and_query.map(|p| p.path().trim_end_matches('/').to_string()).unwrap_or_default(),
            credential,
            first_byte_timeout: config.first_byte_timeout,
            idle_timeout: config.idle_timeout,
        }
    }

    fn client(config: &UpstreamConfig) -> Client<Connector, Body> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(config.connect_timeout));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        Client::builder(TokioExecutor::new())
            .pool_idle_timeout(config.pool_idle_timeout)
            .pool_max_idle_per_host(config.pool_max_idle_per_host)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(https)
    }

    /// The upstream URI for a client's path and query.
    pub fn uri_for(&self, path_and_query: &str) -> Uri {
        let pq = if self.base_path.is_empty() {
            path_and_query.to_string()
        } else {
            format!("{}{}", self.base_path, path_and_query)
        };
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(pq)
            .build()
            .unwrap_or_else(|_| Uri::from_static("/"))
    }

    /// Rewrites a client's headers for the upstream: hop-by-hop headers and client
    /// credentials removed, the upstream credential set. `identity` asks for an
    /// uncompressed response (warden reads LLM responses to count usage).
    pub fn rewrite_request_headers(&self, headers: &mut HeaderMap, identity: bool) {
        strip_hop_by_hop(headers, STRIPPED_REQUEST_HEADERS);
        headers.remove("x-api-key");
        if identity {
            headers.remove(header::ACCEPT_ENCODING);
        }
        if let Some(cred) = &self.credential {
            headers.insert(header::AUTHORIZATION, cred.clone());
        }
    }

    /// Sends a request and waits for the response headers, within the first-byte timeout.
    pub async fn send(&self, req: Request<Body>) -> Result<Response<Incoming>, (ProxyError, UpstreamFailure)> {
        match tokio::time::timeout(
            self.first_byte_timeout,
            self.clients[crate::server::worker_index() % self.clients.len()].request(req),
        )
        .await
        {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(e)) => {
                let failure = if e.is_connect() { UpstreamFailure::Connect } else { UpstreamFailure::Protocol };
                // The error chain says e.g. "connection refused"; it carries no secrets.
                let mut msg = e.to_string();
                let mut src = std::error::Error::source(&e);
                while let Some(s) = src {
                    msg = format!("{msg}: {s}");
                    src = s.source();
                }
                Err((ProxyError::UpstreamUnavailable(msg), failure))
            }
            Err(_) => Err((ProxyError::UpstreamTimeout(self.first_byte_timeout.as_millis()), UpstreamFailure::Timeout)),
        }
    }
}

/// Removes hop-by-hop headers from an upstream response before it goes to the client.
pub fn rewrite_response_headers(headers: &mut HeaderMap) {
    strip_hop_by_hop(headers, HOP_BY_HOP_RESPONSE_HEADERS);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream(base: &str, key: Option<&str>) -> Upstream {
        let cfg = UpstreamConfig {
            base_url: base.parse().unwrap(),
            api_key: key.map(Into::into),
            api_key_env: None,
            connect_timeout: Duration::from_secs(1),
            first_byte_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(1),
            pool_max_idle_per_host: 1,
            pool_idle_timeout: Duration::from_secs(1),
        };
        Upstream::new(&cfg, 1)
    }

    #[test]
    fn paths_are_appended_to_the_base_url() {
        let u = upstream("https://api.example.com", None);
        assert_eq!(u.uri_for("/v1/models?x=1").to_string(), "https://api.example.com/v1/models?x=1");
        let u = upstream("http://127.0.0.1:9000/openai/", None);
        assert_eq!(u.uri_for("/v1/chat/completions").to_string(), "http://127.0.0.1:9000/openai/v1/chat/completions");
    }

    #[test]
    fn client_credentials_and_hop_by_hop_headers_are_replaced() {
        let u = upstream("http://127.0.0.1:9000", Some("sk-up"));
        let mut h = HeaderMap::new();
        h.insert("authorization", "Bearer wk-client".parse().unwrap());
        h.insert("x-api-key", "wk-client".parse().unwrap());
        h.insert("connection", "keep-alive, x-secret-hop".parse().unwrap());
        h.insert("x-secret-hop", "1".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("accept-encoding", "gzip".parse().unwrap());
        h.insert("x-custom", "kept".parse().unwrap());
        u.rewrite_request_headers(&mut h, true);
        assert_eq!(h.get("authorization").unwrap(), "Bearer sk-up");
        assert!(h.get("authorization").unwrap().is_sensitive());
        for gone in ["x-api-key", "connection", "x-secret-hop", "keep-alive", "accept-encoding"] {
            assert!(h.get(gone).is_none(), "{gone} should be removed");
        }
        assert_eq!(h.get("x-custom").unwrap(), "kept");
    }
}
