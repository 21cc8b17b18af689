//! What each request counts when it ends (and while it runs): requests by route and
//! status, latencies by route, tokens, requests in flight, client hang-ups.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::metrics::{latency_histogram, KindLabel};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteStatus {
    pub route: &'static str,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabel {
    pub route: &'static str,
}

/// The route labels (`Route::label`, plus `other` for requests refused before they had
/// a route, such as a 431): a closed set.
pub const ROUTES: [&str; 12] = [
    "chat_completions",
    "completions",
    "embeddings",
    "responses",
    "messages",
    "count_tokens",
    "models",
    "files",
    "batches",
    "passthrough",
    "denied",
    "other",
];

/// One route's latency histograms, resolved once so a request observes them without
/// looking its label up in the families.
pub struct RouteMetrics {
    pub request_duration: Histogram,
    pub upstream_first_byte: Histogram,
    pub upstream_duration: Histogram,
}

pub struct RequestMetrics {
    /// Per route in the order of [`ROUTES`].
    routes: Vec<RouteMetrics>,
    pub prompt_tokens: Counter,
    pub completion_tokens: Counter,
    pub requests: Family<RouteStatus, Counter>,
    pub request_duration: Family<RouteLabel, Histogram, fn() -> Histogram>,
    pub upstream_first_byte: Family<RouteLabel, Histogram, fn() -> Histogram>,
    pub upstream_duration: Family<RouteLabel, Histogram, fn() -> Histogram>,
    pub in_flight: Gauge,
    pub tokens: Family<KindLabel, Counter>,
    pub client_aborts: Counter,
    /// Responses whose reasoning was taken out (`reasoning = "strip"`, the detector's
    /// `strip`).
    pub reasoning_stripped: Counter,
}

impl Default for RequestMetrics {
    fn default() -> Self {
        let request_duration = Family::new_with_constructor(latency_histogram as fn() -> Histogram);
        let upstream_first_byte = Family::new_with_constructor(latency_histogram as fn() -> Histogram);
        let upstream_duration = Family::new_with_constructor(latency_histogram as fn() -> Histogram);
        let routes = ROUTES
            .iter()
            .map(|&route| RouteMetrics {
                request_duration: request_duration.get_or_create(&RouteLabel { route }).clone(),
                upstream_first_byte: upstream_first_byte.get_or_create(&RouteLabel { route }).clone(),
                upstream_duration: upstream_duration.get_or_create(&RouteLabel { route }).clone(),
            })
            .collect();
        let tokens = Family::<KindLabel, Counter>::default();
        let prompt_tokens = tokens.get_or_create(&KindLabel { kind: "prompt" }).clone();
        let completion_tokens = tokens.get_or_create(&KindLabel { kind: "completion" }).clone();
        RequestMetrics {
            routes,
            prompt_tokens,
            completion_tokens,
            requests: Family::default(),
            request_duration,
            upstream_first_byte,
            upstream_duration,
            in_flight: Gauge::default(),
            tokens,
            client_aborts: Counter::default(),
            reasoning_stripped: Counter::default(),
        }
    }
}

impl RequestMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register("requests", "Requests answered, by route and status", self.requests.clone());
        registry.register(
            "request_duration_seconds",
            "Time from request received to the last byte of the response",
            self.request_duration.clone(),
        );
        registry.register(
            "upstream_first_byte_seconds",
            "Time from sending a request upstream to its response headers",
            self.upstream_first_byte.clone(),
        );
        registry.register(
            "upstream_duration_seconds",
            "Time from sending a request upstream to the last byte of its response",
            self.upstream_duration.clone(),
        );
        registry.register("in_flight_requests", "Requests being handled now", self.in_flight.clone());
        registry.register("tokens", "Tokens served, by kind (prompt, completion)", self.tokens.clone());
        registry.register(
            "client_aborts",
            "Responses the client hung up on before the end",
            self.client_aborts.clone(),
        );
        registry.register(
            "reasoning_stripped",
            "Responses whose reasoning was removed before the client saw it (reasoning = \"strip\", the detector's strip)",
            self.reasoning_stripped.clone(),
        );
    }

    /// The histograms of a route label (one of [`ROUTES`]; anything else counts as `other`).
    pub fn route(&self, route: &str) -> &RouteMetrics {
        let i = ROUTES.iter().position(|r| *r == route).unwrap_or(ROUTES.len() - 1);
        &self.routes[i]
    }
}
