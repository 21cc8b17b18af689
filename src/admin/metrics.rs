//! Prometheus metrics. Labels come from closed sets (route, status, failure kind): no
//! label ever carries a key, an account id, a model name a client chose, or prompt text,
//! so the number of series stays bounded whatever clients send.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteStatus {
    pub route: &'static str,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabel {
    pub route: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: &'static str,
}

fn latency_histogram() -> Histogram {
    // 1 ms .. ~65 s, doubling: LLM calls span milliseconds (embeddings) to a minute (long
    // streams).
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(0.001, 2.0, 17))
}

/// The route labels (`LlmRoute::label`, plus `models` and `other`): a closed set.
pub const ROUTES: [&str; 6] = ["chat_completions", "completions", "embeddings", "responses", "models", "other"];

/// One route's latency histograms, resolved once so a request observes them without
/// looking its label up in the families.
pub struct RouteMetrics {
    pub request_duration: Histogram,
    pub upstream_first_byte: Histogram,
    pub upstream_duration: Histogram,
}

pub struct Metrics {
    registry: Registry,
    /// Per route in the order of [`ROUTES`].
    routes: Vec<RouteMetrics>,
    pub prompt_tokens: Counter,
    pub completion_tokens: Counter,
    pub requests: Family<RouteStatus, Counter>,
    pub request_duration: Family<RouteLabel, Histogram, fn() -> Histogram>,
    pub upstream_first_byte: Family<RouteLabel, Histogram, fn() -> Histogram>,
    pub upstream_duration: Family<RouteLabel, Histogram, fn() -> Histogram>,
    pub in_flight: Gauge,
    pub upstream_errors: Family<KindLabel, Counter>,
    pub upstream_connections: Counter,
    pub tokens: Family<KindLabel, Counter>,
    pub client_aborts: Counter,
    pub audit: crate::events::audit::AuditMetrics,
    pub redis: crate::limits::shared::SharedMetrics,
    pub rate_limited: Family<KindLabel, Counter>,
    pub limiter_accounts: Gauge,
    pub detect: crate::detect::live::DetectMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("warden");
        let requests = Family::<RouteStatus, Counter>::default();
        registry.register("requests", "Requests answered, by route and status", requests.clone());
        let request_duration = Family::new_with_constructor(latency_histogram as fn() -> Histogram);
        registry.register(
            "request_duration_seconds",
            "Time from request received to the last byte of the response",
            request_duration.clone(),
        );
        let upstream_first_byte = Family::new_with_constructor(latency_histogram as fn() -> Histogram);
        registry.register(
            "upstream_first_byte_seconds",
            "Time from sending a request upstream to its response headers",
            upstream_first_byte.clone(),
        );
        let upstream_duration = Family::new_with_constructor(latency_histogram as fn() -> Histogram);
        registry.register(
            "upstream_duration_seconds",
            "Time from sending a request upstream to the last byte of its response",
            upstream_duration.clone(),
        );
        let in_flight = Gauge::default();
        registry.register("in_flight_requests", "Requests being handled now", in_flight.clone());
        let upstream_errors = Family::<KindLabel, Counter>::default();
        registry.register(
            "upstream_errors",
            "Upstream failures by kind (connect, timeout, protocol, idle_timeout)",
            upstream_errors.clone(),
        );
        let upstream_connections = Counter::default();
        registry.register(
            "upstream_connections",
            "Upstream connections opened (requests reuse pooled ones)",
            upstream_connections.clone(),
        );
        let tokens = Family::<KindLabel, Counter>::default();
        registry.register("tokens", "Tokens served, by kind (prompt, completion)", tokens.clone());
        let client_aborts = Counter::default();
        registry.register("client_aborts", "Responses the client hung up on before the end", client_aborts.clone());
        let audit = crate::events::audit::AuditMetrics::default();
        registry.register("audit_records", "Audit records written", audit.written.clone());
        registry.register(
            "audit_dropped",
            "Audit records lost (queue full in `drop` mode, or repeated write failures)",
            audit.dropped.clone(),
        );
        registry.register("audit_bytes", "Bytes written to the audit log", audit.bytes.clone());
        registry.register("audit_write_errors", "Failed audit writes and fsyncs (retried)", audit.write_errors.clone());
        registry.register("audit_queue_depth", "Audit records waiting to be written", audit.queue_depth.clone());
        let redis = crate::limits::shared::SharedMetrics::default();
        registry.register(
            "redis_up",
            "Whether shared limits are served by Redis (1) or fall back to local limits (0)",
            redis.up.clone(),
        );
        registry.register(
            "redis_fallbacks",
            "Admissions decided without Redis (unreachable or breaker open)",
            redis.fallbacks.clone(),
        );
        registry.register("redis_errors", "Failed or timed-out Redis calls", redis.errors.clone());
        let rate_limited = Family::<KindLabel, Counter>::default();
        registry.register(
            "rate_limited",
            "Requests refused with 429, by limit (requests, tokens, concurrency, quota)",
            rate_limited.clone(),
        );
        let limiter_accounts = Gauge::default();
        registry.register("limiter_accounts", "Accounts with limit state in memory", limiter_accounts.clone());
        let detect = crate::detect::live::DetectMetrics::default();
        registry.register("detector_events", "Requests examined by the detector", detect.events.clone());
        registry.register(
            "detector_skipped",
            "Requests not examined because the detector's queue was full (still audited)",
            detect.skipped.clone(),
        );
        registry.register("detector_alerts", "Alerts raised, by kind", detect.alerts.clone());
        registry.register("detector_actions", "Actions applied to accounts, by kind", detect.actions.clone());
        registry.register(
            "detector_accounts",
            "Accounts with detector state in memory",
            detect.tracked_accounts.clone(),
        );
        registry.register(
            "detector_state_bytes",
            "Memory held by per-account detector state",
            detect.state_bytes.clone(),
        );
        let routes = ROUTES
            .iter()
            .map(|&route| RouteMetrics {
                request_duration: request_duration.get_or_create(&RouteLabel { route }).clone(),
                upstream_first_byte: upstream_first_byte.get_or_create(&RouteLabel { route }).clone(),
                upstream_duration: upstream_duration.get_or_create(&RouteLabel { route }).clone(),
            })
            .collect();
        let prompt_tokens = tokens.get_or_create(&KindLabel { kind: "prompt" }).clone();
        let completion_tokens = tokens.get_or_create(&KindLabel { kind: "completion" }).clone();
        Metrics {
            routes,
            prompt_tokens,
            completion_tokens,
            detect,
            redis,
            rate_limited,
            limiter_accounts,
            audit,
            registry,
            requests,
            request_duration,
            upstream_first_byte,
            upstream_duration,
            in_flight,
            upstream_errors,
            upstream_connections,
            tokens,
            client_aborts,
        }
    }

    /// The histograms of a route label (one of [`ROUTES`]; anything else counts as `other`).
    pub fn route(&self, route: &str) -> &RouteMetrics {
        let i = ROUTES.iter().position(|r| *r == route).unwrap_or(ROUTES.len() - 1);
        &self.routes[i]
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}
