//! Configuration: the TOML file an operator writes (`Raw*` structs) and the validated
//! model the rest of warden uses (`Config`).
//!
//! Loading never stops at the first problem: unknown keys, type errors per section and
//! semantic errors (bad addresses, duplicate tiers, missing environment variables) are
//! all collected so `warden check-config` can list every problem at once. Field doc
//! comments here are the reference for `config/warden.toml`.

use std::collections::BTreeSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Deserialize;

/// Every problem found in a configuration file, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<String>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "- {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

// ---------------------------------------------------------------------------------------
// Raw configuration, as written in TOML. Unknown keys are errors (collected with
// serde_ignored so that all of them are reported, not only the first).
// ---------------------------------------------------------------------------------------

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct RawServer {
    /// Address of the proxy listener (clients talk to this).
    pub listen: Option<String>,
    /// Address of the admin listener: admin API, /metrics, /healthz, /readyz.
    pub admin_listen: Option<String>,
    /// Largest request body accepted, in bytes; larger bodies get 413.
    pub max_body_bytes: Option<u64>,
    /// How long a client may take to send its request headers (slowloris guard).
    pub header_read_timeout_ms: Option<u64>,
    /// On SIGTERM/SIGINT, how long in-flight requests (streams too) may run on.
    pub shutdown_grace_ms: Option<u64>,
    /// Requests handled at once; beyond it warden sheds load with 503.
    pub max_in_flight: Option<usize>,
    /// Proxy worker threads, each an event loop of its own; 0 means one per CPU.
    pub workers: Option<usize>,
    /// Proxies (CIDRs) whose `X-Forwarded-For` is believed when finding the client IP.
    pub trusted_proxies: Option<Vec<String>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct RawUpstream {
    /// The LLM API; request paths are appended to it as-is.
    pub base_url: Option<String>,
    /// Environment variable holding the upstream API key (never the key itself).
    pub api_key_env: Option<String>,
    /// TCP (and TLS) connect timeout.
    pub connect_timeout_ms: Option<u64>,
    /// Time allowed from sending the request to receiving the response headers.
    pub first_byte_timeout_ms: Option<u64>,
    /// Longest silence allowed between two chunks of a response body.
    pub idle_timeout_ms: Option<u64>,
    /// Idle pooled connections kept per upstream host.
    pub pool_max_idle_per_host: Option<usize>,
    /// How long an idle pooled connection is kept.
    pub pool_idle_timeout_ms: Option<u64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct RawAdmin {
    /// Environment variable holding the admin bearer token.
    pub token_env: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct RawStorage {
    /// SQLite database file (created if missing). Ignored when `url` is set.
    pub path: Option<String>,
    /// Database URL, e.g. `postgres://user@host/db` for several replicas.
    pub url: Option<String>,
    /// Environment variable holding the database URL instead (for URLs with a password:
    /// secrets never go in the file).
    pub url_env: Option<String>,
    /// How often accounts and keys changed by other replicas sharing the store are picked
    /// up (0: never, for a store this process alone uses).
    pub sync_interval_ms: Option<u64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct RawLogging {
    /// `json` (one object per line, for log shippers) or `pretty`.
    pub format: Option<String>,
    /// tracing filter, e.g. `info` or `warden=debug,info`. RUST_LOG overrides it.
    pub level: Option<String>,
    /// One log line per finished request.
    pub access_log: Option<bool>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct RawRedis {
    /// Redis URL; when set, limits are shared by every replica using the same Redis.
    pub url: Option<String>,
    /// Environment variable holding the Redis URL instead (for URLs with a password).
    pub url_env: Option<String>,
    /// Longest wait for one Redis call; past it the call counts as failed.
    pub timeout_ms: Option<u64>,
    /// While Redis is unusable: `fail_open` enforces local (per-replica) limits,
    /// `fail_closed` refuses requests with 503.
    pub failure_mode: Option<String>,
    /// Consecutive failures that open the circuit breaker.
    pub breaker_failures: Option<u32>,
    /// How long an open breaker keeps Redis out before one probe tries it again.
    pub breaker_cooldown_ms: Option<u64>,
    /// Prefix of every key warden writes.
    pub key_prefix: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct RawLimits {
    /// Limit state of accounts idle this long is dropped from memory.
    pub idle_eviction_ms: Option<u64>,
    /// How often local quota counters are saved to the store.
    pub quota_save_interval_ms: Option<u64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct RawModelLimit {
    /// Model name as clients send it.
    pub name: Option<String>,
    pub requests_per_minute: Option<u64>,
    pub tokens_per_minute: Option<u64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct RawAudit {
    /// Directory of the audit JSONL files.
    pub dir: Option<String>,
    /// `full` (prompt and completion text), `hash` (stable hashes) or `none`.
    pub capture: Option<String>,
    /// With `full`: completion text kept per record, in bytes (the rest is cut).
    pub max_capture_bytes: Option<usize>,
    /// Regular expressions; every match in captured text is replaced by `[REDACTED]`
    /// before anything is written.
    pub redact: Option<Vec<String>>,
    /// A file is rotated when it would grow past this many bytes (and at each UTC day).
    pub max_file_bytes: Option<u64>,
    /// Files older than this many days are deleted.
    pub retention_days: Option<u32>,
    /// Written data is fsynced at least this often.
    pub flush_interval_ms: Option<u64>,
    /// Records waiting to be written; each request reserves its slot when it arrives.
    pub queue_capacity: Option<usize>,
    /// When the queue is full: `reject` new requests with 503 (nothing goes unaudited)
    /// or `drop` their records (counted in `warden_audit_dropped_total`).
    pub overflow: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct RawTier {
    /// Name accounts refer to.
    pub name: Option<String>,
    /// Requests admitted per minute per account.
    pub requests_per_minute: Option<u64>,
    /// Tokens (prompt + completion) per minute per account.
    pub tokens_per_minute: Option<u64>,
    /// Requests of one account in flight at once.
    pub max_concurrent: Option<u64>,
    /// Token quota per UTC day.
    pub tokens_per_day: Option<u64>,
    /// Token quota per UTC calendar month.
    pub tokens_per_month: Option<u64>,
    /// Requests that may arrive at once above the steady rate (default: a minute's worth).
    pub burst: Option<u64>,
    /// Completion tokens assumed when a request sets no `max_tokens` (token reservation).
    pub default_max_tokens: Option<u64>,
    /// Models this tier may call (default: any).
    pub allowed_models: Option<Vec<String>>,
    /// Largest `n` accepted.
    pub max_n: Option<u64>,
    /// Largest `max_tokens` (or `max_completion_tokens`, `max_output_tokens`) accepted.
    pub max_tokens: Option<u64>,
    /// `logprobs` / `top_logprobs`: `allow`, `strip` or `reject`.
    pub logprobs: Option<String>,
    /// `logit_bias`: `allow`, `strip` or `reject`.
    pub logit_bias: Option<String>,
    /// Rates of a throttled account are multiplied by this (0 < f ≤ 1).
    pub throttle_factor: Option<f64>,
    /// Per-model limits, on top of the account's.
    pub models: Option<Vec<RawModelLimit>>,
}

/// Sections are deserialized one by one so that a type error in one section does not hide
/// the problems of the others.
#[derive(Debug, Default)]
pub struct RawConfig {
    pub server: RawServer,
    pub upstream: RawUpstream,
    pub admin: RawAdmin,
    pub storage: RawStorage,
    pub logging: RawLogging,
    pub redis: Option<RawRedis>,
    pub audit: Option<RawAudit>,
    pub detection: crate::detect::config::RawDetection,
    pub limits: RawLimits,
    pub tiers: Vec<RawTier>,
}

impl RawConfig {
    /// Parses TOML text, collecting unknown keys and type errors of every section.
    pub fn parse(text: &str, problems: &mut Vec<String>) -> RawConfig {
        let table: toml::Table = match text.parse() {
            Ok(t) => t,
            Err(e) => {
                problems.push(format!("not valid TOML: {}", e.message()));
                return RawConfig::default();
            }
        };
        let mut raw = RawConfig::default();
        for (key, value) in table {
            match key.as_str() {
                "server" => raw.server = section(&key, value, problems),
                "upstream" => raw.upstream = section(&key, value, problems),
                "admin" => raw.admin = section(&key, value, problems),
                "storage" => raw.storage = section(&key, value, problems),
                "logging" => raw.logging = section(&key, value, problems),
                "redis" => raw.redis = Some(section(&key, value, problems)),
                "audit" => raw.audit = Some(section(&key, value, problems)),
                "detection" => raw.detection = section(&key, value, problems),
                "limits" => raw.limits = section(&key, value, problems),
                "tiers" => match value {
                    toml::Value::Array(items) => {
                        for (i, item) in items.into_iter().enumerate() {
                            raw.tiers.push(section(&format!("tiers[{i}]"), item, problems));
                        }
                    }
                    _ => problems.push("tiers: must be an array of tables ([[tiers]])".into()),
                },
                other => problems.push(format!("unknown section `{other}`")),
            }
        }
        raw
    }
}

/// Deserializes one section, reporting every unknown key and the first type error.
pub(crate) fn section<T: DeserializeOwned + Default>(name: &str, value: toml::Value, problems: &mut Vec<String>) -> T {
    let mut unknown = Vec::new();
    let result = serde_ignored::deserialize(value, |path| unknown.push(path.to_string()));
    for key in unknown {
        problems.push(format!("{name}: unknown key `{key}`"));
    }
    match result {
        Ok(v) => v,
        Err(e) => {
            problems.push(format!("{name}: {}", e.message().trim()));
            T::default()
        }
    }
}

// ---------------------------------------------------------------------------------------
// Validated configuration.
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub upstream: UpstreamConfig,
    pub admin: AdminConfig,
    pub storage: StorageConfig,
    pub logging: LoggingConfig,
    pub redis: Option<crate::limits::shared::SharedConfig>,
    pub audit: AuditConfig,
    pub detection: crate::detect::config::DetectConfig,
    pub limits: LimitsConfig,
    pub tiers: Vec<Tier>,
}

/// What a reload did: the settings it changed, and the changed ones that only take
/// effect after a restart (they keep their running values).
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Reloaded {
    pub applied: Vec<String>,
    pub restart_required: Vec<String>,
}

/// The configuration to run after a reload: `old` with every setting that can change
/// while running taken from `new` (see [`crate::app::App::reload`]).
pub fn merge_reloadable(old: &Config, new: Config) -> (Config, Reloaded) {
    let mut merged = old.clone();
    let mut r = Reloaded::default();
    // Compared by their printed form: every setting has one (secrets print redacted,
    // and a secret's variable name is what the file holds).
    fn differs<T: fmt::Debug>(a: &T, b: &T) -> bool {
        format!("{a:?}") != format!("{b:?}")
    }
    macro_rules! reloadable {
        ($($name:literal => $($field:ident).+),* $(,)?) => {$(
            if differs(&old.$($field).+, &new.$($field).+) {
                merged.$($field).+ = new.$($field).+.clone();
                r.applied.push($name.to_string());
            }
        )*};
    }
    macro_rules! restart {
        ($($name:literal => $($field:ident).+),* $(,)?) => {$(
            if differs(&old.$($field).+, &new.$($field).+) {
                r.restart_required.push($name.to_string());
            }
        )*};
    }
    reloadable! {
        "tiers" => tiers,
        "server.trusted_proxies" => server.trusted_proxies,
        "server.max_body_bytes" => server.max_body_bytes,
        "admin" => admin,
        "logging.level" => logging.level,
        "logging.access_log" => logging.access_log,
        "audit.capture" => audit.capture,
        "audit.redact" => audit.redact,
        "audit.max_capture_bytes" => audit.max_capture_bytes,
    }
    restart! {
        "server.listen" => server.listen,
        "server.admin_listen" => server.admin_listen,
        "server.header_read_timeout_ms" => server.header_read_timeout,
        "server.shutdown_grace_ms" => server.shutdown_grace,
        "server.max_in_flight" => server.max_in_flight,
        "server.workers" => server.workers,
        "upstream" => upstream,
        "storage" => storage,
        "redis" => redis,
        "logging.format" => logging.format,
        "limits" => limits,
        "audit.dir" => audit.dir,
        "audit.max_file_bytes" => audit.max_file_bytes,
        "audit.retention_days" => audit.retention_days,
        "audit.flush_interval_ms" => audit.flush_interval,
        "audit.queue_capacity" => audit.queue_capacity,
        "audit.overflow" => audit.overflow,
        "detection.queue_capacity" => detection.queue_capacity,
    }
    // The detector reloads in place while it runs; turning it on or off starts or stops
    // its thread, which a restart does.
    use crate::detect::config::Mode;
    let (was_off, is_off) = (old.detection.mode == Mode::Off, new.detection.mode == Mode::Off);
    if was_off != is_off {
        r.restart_required.push("detection.mode".into());
    } else {
        let mut detection = new.detection;
        detection.queue_capacity = old.detection.queue_capacity;
        if differs(&old.detection, &detection) {
            merged.detection = detection;
            r.applied.push("detection".into());
        }
    }
    (merged, r)
}

#[derive(Debug, Clone)]
pub struct LimitsConfig {
    pub idle_eviction: Duration,
    pub quota_save_interval: Duration,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub max_body_bytes: u64,
    pub header_read_timeout: Duration,
    pub shutdown_grace: Duration,
    pub max_in_flight: usize,
    /// Proxy worker threads (resolved: never 0).
    pub workers: usize,
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

#[derive(Clone)]
pub struct UpstreamConfig {
    pub base_url: http::Uri,
    /// The upstream credential, read from the environment. Never logged (see Debug).
    pub api_key: Option<String>,
    pub api_key_env: Option<String>,
    pub connect_timeout: Duration,
    pub first_byte_timeout: Duration,
    pub idle_timeout: Duration,
    pub pool_max_idle_per_host: usize,
    pub pool_idle_timeout: Duration,
}

impl fmt::Debug for UpstreamConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamConfig")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("api_key_env", &self.api_key_env)
            .field("connect_timeout", &self.connect_timeout)
            .field("first_byte_timeout", &self.first_byte_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .finish()
    }
}

#[derive(Clone)]
pub struct AdminConfig {
    pub token: String,
    pub token_env: String,
}

impl fmt::Debug for AdminConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminConfig").field("token", &"<redacted>").field("token_env", &self.token_env).finish()
    }
}

#[derive(Debug, Clone)]
pub struct StorageConfig {
    pub backend: StorageBackend,
    /// How often changes other replicas made to the shared store are picked up
    /// (`None`: never, for a store only this process uses).
    pub sync_interval: Option<Duration>,
}

#[derive(Clone)]
pub enum StorageBackend {
    Sqlite(PathBuf),
    Url(String),
}

/// The URL may carry a password: only its scheme and host are shown.
impl std::fmt::Debug for StorageBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StorageBackend::Sqlite(p) => f.debug_tuple("Sqlite").field(p).finish(),
            StorageBackend::Url(u) => f.debug_tuple("Url").field(&redacted_url(u)).finish(),
        }
    }
}

/// `scheme://host[:port]/...` of a URL, without user, password, path or query.
pub fn redacted_url(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    format!("{scheme}://{host}/…")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
}

#[derive(Debug, Clone)]
pub struct LoggingConfig {
    pub format: LogFormat,
    pub level: String,
    pub access_log: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CaptureMode {
    Full,
    Hash,
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditOverflow {
    Reject,
    Drop,
}

#[derive(Debug, Clone)]
pub struct AuditConfig {
    pub dir: PathBuf,
    pub capture: CaptureMode,
    pub max_capture_bytes: usize,
    pub redact: Vec<regex::Regex>,
    pub max_file_bytes: u64,
    pub retention_days: u32,
    pub flush_interval: Duration,
    pub queue_capacity: usize,
    pub overflow: AuditOverflow,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Tier {
    pub name: String,
    pub limits: Limits,
    pub burst: Option<u64>,
    pub default_max_tokens: u64,
    pub policy: crate::policy::ParamPolicy,
    pub throttle_factor: f64,
    pub models: Vec<ModelLimit>,
}

/// The numeric limits of a tier; an account's overrides replace single fields.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    pub requests_per_minute: Option<u64>,
    pub tokens_per_minute: Option<u64>,
    pub max_concurrent: Option<u64>,
    pub tokens_per_day: Option<u64>,
    pub tokens_per_month: Option<u64>,
}

impl Limits {
    /// These limits with every field `overrides` sets replaced.
    pub fn with(self, overrides: &Limits) -> Limits {
        Limits {
            requests_per_minute: overrides.requests_per_minute.or(self.requests_per_minute),
            tokens_per_minute: overrides.tokens_per_minute.or(self.tokens_per_minute),
            max_concurrent: overrides.max_concurrent.or(self.max_concurrent),
            tokens_per_day: overrides.tokens_per_day.or(self.tokens_per_day),
            tokens_per_month: overrides.tokens_per_month.or(self.tokens_per_month),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelLimit {
    pub name: String,
    pub requests_per_minute: Option<u64>,
    pub tokens_per_minute: Option<u64>,
}

/// Where environment variables come from; tests pass a closure instead of mutating the
/// process environment.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

impl Config {
    /// Reads and validates a config file from disk, with the process environment.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigErrors(vec![format!("cannot read {}: {e}", path.display())]))?;
        Config::from_toml(&text, &|name| std::env::var(name).ok())
    }

    /// Parses and validates TOML text; returns every problem found.
    pub fn from_toml(text: &str, env: EnvLookup<'_>) -> Result<Config, ConfigErrors> {
        let mut problems = Vec::new();
        let raw = RawConfig::parse(text, &mut problems);
        let config = validate(raw, env, &mut problems);
        if problems.is_empty() {
            Ok(config.expect("validated config exists when there are no problems"))
        } else {
            Err(ConfigErrors(problems))
        }
    }

    pub fn tier(&self, name: &str) -> Option<&Tier> {
        self.tiers.iter().find(|t| t.name == name)
    }
}

fn addr(field: &str, value: Option<String>, default: &str, problems: &mut Vec<String>) -> SocketAddr {
    let value = value.unwrap_or_else(|| default.to_string());
    value.parse().unwrap_or_else(|_| {
        problems.push(format!("{field}: `{value}` is not a socket address (e.g. 127.0.0.1:8080)"));
        SocketAddr::from(([127, 0, 0, 1], 0))
    })
}

fn millis(field: &str, value: Option<u64>, default: u64, problems: &mut Vec<String>) -> Duration {
    let v = value.unwrap_or(default);
    if v == 0 {
        problems.push(format!("{field}: must be greater than 0"));
    }
    Duration::from_millis(v)
}

fn env_secret(field: &str, var: &str, env: EnvLookup<'_>, problems: &mut Vec<String>) -> Option<String> {
    if var.is_empty() {
        problems.push(format!("{field}: must name an environment variable"));
        return None;
    }
    match env(var) {
        Some(v) if !v.is_empty() => Some(v),
        _ => {
            problems.push(format!("{field}: environment variable `{var}` is not set"));
            None
        }
    }
}

/// `<section>.url`, or the URL in the environment variable `<section>.url_env` names,
/// with the field it came from (errors never repeat a URL: it may hold a password).
fn url_setting(
    section: &str,
    url: Option<String>,
    url_env: Option<String>,
    env: EnvLookup<'_>,
    problems: &mut Vec<String>,
) -> Option<(String, String)> {
    match (url, url_env) {
        (Some(_), Some(_)) => {
            problems.push(format!("{section}: set `url` or `url_env`, not both"));
            None
        }
        (Some(url), None) => Some((url, format!("{section}.url"))),
        (None, Some(var)) => {
            let field = format!("{section}.url_env");
            env_secret(&field, &var, env, problems).map(|url| (url, field))
        }
        (None, None) => None,
    }
}

fn validate(raw: RawConfig, env: EnvLookup<'_>, problems: &mut Vec<String>) -> Option<Config> {
    let s = raw.server;
    let server = ServerConfig {
        listen: addr("server.listen", s.listen, "127.0.0.1:8080", problems),
        admin_listen: addr("server.admin_listen", s.admin_listen, "127.0.0.1:8081", problems),
        max_body_bytes: match s.max_body_bytes.unwrap_or(4 * 1024 * 1024) {
            0 => {
                problems.push("server.max_body_bytes: must be greater than 0".into());
                0
            }
            v => v,
        },
        header_read_timeout: millis("server.header_read_timeout_ms", s.header_read_timeout_ms, 10_000, problems),
        shutdown_grace: millis("server.shutdown_grace_ms", s.shutdown_grace_ms, 30_000, problems),
        max_in_flight: match s.max_in_flight.unwrap_or(4_096) {
            0 => {
                problems.push("server.max_in_flight: must be greater than 0".into());
                0
            }
            v => v,
        },
        workers: match s.workers.unwrap_or(0) {
            0 => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            n => n,
        },
        trusted_proxies: s
            .trusted_proxies
            .unwrap_or_default()
            .iter()
            .filter_map(|c| {
                c.parse::<ipnet::IpNet>()
                    .or_else(|_| c.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| problems.push(format!("server.trusted_proxies: `{c}` is not an IP address or CIDR")))
                    .ok()
            })
            .collect(),
    };
    if server.listen == server.admin_listen && server.listen.port() != 0 {
        problems.push("server.admin_listen: must differ from server.listen".into());
    }

    let u = raw.upstream;
    let base_url = match u.base_url {
        None => {
            problems.push("upstream.base_url: missing (e.g. \"https://api.openai.com\")".into());
            http::Uri::from_static("http://invalid")
        }
        Some(text) => match text.parse::<http::Uri>() {
            Ok(uri)
                if matches!(uri.scheme_str(), Some("http") | Some("https"))
                    && uri.authority().is_some()
                    && uri.query().is_none() =>
            {
                uri
            }
            _ => {
                problems
                    .push(format!("upstream.base_url: `{text}` must be an http:// or https:// URL without a query"));
                http::Uri::from_static("http://invalid")
            }
        },
    };
    let api_key = u.api_key_env.as_deref().and_then(|var| env_secret("upstream.api_key_env", var, env, problems));
    let upstream = UpstreamConfig {
        base_url,
        api_key,
        api_key_env: u.api_key_env,
        connect_timeout: millis("upstream.connect_timeout_ms", u.connect_timeout_ms, 5_000, problems),
        first_byte_timeout: millis("upstream.first_byte_timeout_ms", u.first_byte_timeout_ms, 120_000, problems),
        idle_timeout: millis("upstream.idle_timeout_ms", u.idle_timeout_ms, 60_000, problems),
        pool_max_idle_per_host: u.pool_max_idle_per_host.unwrap_or(512),
        pool_idle_timeout: millis("upstream.pool_idle_timeout_ms", u.pool_idle_timeout_ms, 90_000, problems),
    };

    let token_env = raw.admin.token_env.unwrap_or_else(|| "WARDEN_ADMIN_TOKEN".into());
    let token = env_secret("admin.token_env", &token_env, env, problems).unwrap_or_default();
    let admin = AdminConfig { token, token_env };

    let storage_url = url_setting("storage", raw.storage.url, raw.storage.url_env, env, problems);
    let backend = match (storage_url, raw.storage.path) {
        (Some((url, field)), _) => {
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://") || url.starts_with("sqlite:")) {
                problems.push(format!("{field}: the URL must start with postgres://, postgresql:// or sqlite:"));
            }
            StorageBackend::Url(url)
        }
        (None, path) => StorageBackend::Sqlite(PathBuf::from(path.unwrap_or_else(|| "data/warden.db".into()))),
    };
    let sync_interval = match raw.storage.sync_interval_ms {
        Some(0) => None,
        ms => Some(millis("storage.sync_interval_ms", ms, 1_000, problems)),
    };
    let storage = StorageConfig { backend, sync_interval };

    let format = match raw.logging.format.as_deref().unwrap_or("json") {
        "json" => LogFormat::Json,
        "pretty" => LogFormat::Pretty,
        other => {
            problems.push(format!("logging.format: `{other}` must be `json` or `pretty`"));
            LogFormat::Json
        }
    };
    let level = raw.logging.level.unwrap_or_else(|| "info".into());
    if tracing_subscriber::EnvFilter::try_new(&level).is_err() {
        problems.push(format!("logging.level: `{level}` is not a valid filter"));
    }
    let logging = LoggingConfig { format, level, access_log: raw.logging.access_log.unwrap_or(true) };

    let redis = raw.redis.map(|r| {
        use crate::limits::shared::{FailureMode, SharedConfig};
        let url = match url_setting("redis", r.url, r.url_env, env, problems) {
            Some((url, _)) if url.starts_with("redis://") || url.starts_with("rediss://") => url,
            Some((_, field)) => {
                problems.push(format!("{field}: the URL must be a redis:// or rediss:// URL"));
                String::new()
            }
            None => {
                problems.push("redis.url: missing: set `url` or `url_env` to a redis:// or rediss:// URL".into());
                String::new()
            }
        };
        let failure_mode = match r.failure_mode.as_deref().unwrap_or("fail_open") {
            "fail_open" => FailureMode::FailOpen,
            "fail_closed" => FailureMode::FailClosed,
            other => {
                problems.push(format!("redis.failure_mode: `{other}` must be `fail_open` or `fail_closed`"));
                FailureMode::FailOpen
            }
        };
        SharedConfig {
            url,
            timeout: millis("redis.timeout_ms", r.timeout_ms, 50, problems),
            failure_mode,
            breaker_failures: r.breaker_failures.unwrap_or(3).max(1),
            breaker_cooldown: millis("redis.breaker_cooldown_ms", r.breaker_cooldown_ms, 2_000, problems),
            key_prefix: r.key_prefix.unwrap_or_else(|| "warden:".into()),
        }
    });
    let limits = LimitsConfig {
        idle_eviction: millis("limits.idle_eviction_ms", raw.limits.idle_eviction_ms, 600_000, problems),
        quota_save_interval: millis(
            "limits.quota_save_interval_ms",
            raw.limits.quota_save_interval_ms,
            5_000,
            problems,
        ),
    };

    let a = raw.audit.unwrap_or_default();
    let capture = match a.capture.as_deref().unwrap_or("hash") {
        "full" => CaptureMode::Full,
        "hash" => CaptureMode::Hash,
        "none" => CaptureMode::None,
        other => {
            problems.push(format!("audit.capture: `{other}` must be `full`, `hash` or `none`"));
            CaptureMode::None
        }
    };
    let redact = a
        .redact
        .unwrap_or_default()
        .iter()
        .filter_map(|r| {
            regex::Regex::new(r)
                .map_err(|e| problems.push(format!("audit.redact: `{r}` is not a valid regex: {e}")))
                .ok()
        })
        .collect();
    let overflow = match a.overflow.as_deref().unwrap_or("reject") {
        "reject" => AuditOverflow::Reject,
        "drop" => AuditOverflow::Drop,
        other => {
            problems.push(format!("audit.overflow: `{other}` must be `reject` or `drop`"));
            AuditOverflow::Reject
        }
    };
    let queue_capacity = a.queue_capacity.unwrap_or(16_384);
    if queue_capacity < server.max_in_flight {
        problems.push(format!(
            "audit.queue_capacity: {queue_capacity} is below server.max_in_flight ({}): every request in flight reserves a slot",
            server.max_in_flight
        ));
    }
    let audit = AuditConfig {
        dir: PathBuf::from(a.dir.unwrap_or_else(|| "data/audit".into())),
        capture,
        max_capture_bytes: a.max_capture_bytes.unwrap_or(64 * 1024),
        redact,
        max_file_bytes: match a.max_file_bytes.unwrap_or(256 * 1024 * 1024) {
            v if v < 4096 => {
                problems.push("audit.max_file_bytes: must be at least 4096".into());
                v
            }
            v => v,
        },
        retention_days: match a.retention_days.unwrap_or(30) {
            0 => {
                problems.push("audit.retention_days: must be at least 1".into());
                1
            }
            v => v,
        },
        flush_interval: millis("audit.flush_interval_ms", a.flush_interval_ms, 1_000, problems),
        queue_capacity,
        overflow,
    };

    let mut tiers = Vec::new();
    let mut names = BTreeSet::new();
    if raw.tiers.is_empty() {
        problems.push("tiers: at least one [[tiers]] entry is required".into());
    }
    for (i, t) in raw.tiers.into_iter().enumerate() {
        let name = match t.name {
            Some(n) if !n.trim().is_empty() => n,
            _ => {
                problems.push(format!("tiers[{i}].name: missing"));
                continue;
            }
        };
        if !names.insert(name.clone()) {
            problems.push(format!("tiers[{i}].name: duplicate tier `{name}`"));
        }
        for (field, v) in [
            ("requests_per_minute", t.requests_per_minute),
            ("tokens_per_minute", t.tokens_per_minute),
            ("max_concurrent", t.max_concurrent),
            ("tokens_per_day", t.tokens_per_day),
            ("tokens_per_month", t.tokens_per_month),
        ] {
            if v == Some(0) {
                problems.push(format!("tiers[{i}].{field}: must be greater than 0 (omit it for no limit)"));
            }
        }
        let rule = |field: &str, v: Option<String>, problems: &mut Vec<String>| {
            let v = v.unwrap_or_else(|| "allow".into());
            crate::policy::ParamRule::parse(&v).unwrap_or_else(|| {
                problems.push(format!("tiers[{i}].{field}: `{v}` must be `allow`, `strip` or `reject`"));
                crate::policy::ParamRule::Allow
            })
        };
        let policy = crate::policy::ParamPolicy {
            allowed_models: t.allowed_models.unwrap_or_default(),
            max_n: t.max_n,
            max_tokens: t.max_tokens,
            logprobs: rule("logprobs", t.logprobs, problems),
            logit_bias: rule("logit_bias", t.logit_bias, problems),
        };
        let throttle_factor = t.throttle_factor.unwrap_or(0.1);
        if !(throttle_factor > 0.0 && throttle_factor <= 1.0) {
            problems.push(format!("tiers[{i}].throttle_factor: {throttle_factor} must be in (0, 1]"));
        }
        if t.burst == Some(0) {
            problems.push(format!("tiers[{i}].burst: must be greater than 0"));
        }
        let mut models = Vec::new();
        for (j, m) in t.models.unwrap_or_default().into_iter().enumerate() {
            match m.name {
                Some(name) if !name.is_empty() => models.push(ModelLimit {
                    name,
                    requests_per_minute: m.requests_per_minute,
                    tokens_per_minute: m.tokens_per_minute,
                }),
                _ => problems.push(format!("tiers[{i}].models[{j}].name: missing")),
            }
        }
        tiers.push(Tier {
            name,
            limits: Limits {
                requests_per_minute: t.requests_per_minute,
                tokens_per_minute: t.tokens_per_minute,
                max_concurrent: t.max_concurrent,
                tokens_per_day: t.tokens_per_day,
                tokens_per_month: t.tokens_per_month,
            },
            burst: t.burst,
            default_max_tokens: t.default_max_tokens.unwrap_or(1024),
            policy,
            throttle_factor,
            models,
        });
    }

    let detection = crate::detect::config::validate(raw.detection, problems);
    Some(Config { server, upstream, admin, storage, logging, redis, audit, detection, limits, tiers })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "UPSTREAM_API_KEY" => Some("sk-upstream".into()),
            "WARDEN_ADMIN_TOKEN" => Some("admin-token".into()),
            _ => None,
        }
    }

    const MINIMAL: &str = r#"
        [upstream]
        base_url = "http://127.0.0.1:9000"
        api_key_env = "UPSTREAM_API_KEY"
        [[tiers]]
        name = "default"
        requests_per_minute = 60
    "#;

    #[test]
    fn database_and_redis_urls_can_come_from_the_environment() {
        let env = |name: &str| match name {
            "DB_URL" => Some("postgres://warden:s3cret@db:5432/warden".into()),
            "REDIS_URL" => Some("redis://:hunter2@redis:6379/0".into()),
            "BAD_URL" => Some("mysql://root:pw@db/x".into()),
            other => env(other),
        };
        let text = format!("{MINIMAL}\n[storage]\nurl_env = \"DB_URL\"\n[redis]\nurl_env = \"REDIS_URL\"\n");
        let c = Config::from_toml(&text, &env).unwrap();
        assert!(
            matches!(c.storage.backend, StorageBackend::Url(ref u) if u == "postgres://warden:s3cret@db:5432/warden")
        );
        assert_eq!(c.redis.as_ref().unwrap().url, "redis://:hunter2@redis:6379/0");
        // Printed configs never show the passwords.
        let shown = format!("{:?} {:?}", c.storage.backend, c.redis);
        assert!(!shown.contains("s3cret") && !shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("postgres://db:5432/"), "{shown}");

        let text = format!(
            "{MINIMAL}\n[storage]\nurl_env = \"BAD_URL\"\n[redis]\nurl = \"redis://x\"\nurl_env = \"REDIS_URL\"\n"
        );
        let errs = Config::from_toml(&text, &env).unwrap_err().0;
        assert!(errs.iter().any(|p| p.starts_with("storage.url_env: the URL must start with postgres://")), "{errs:?}");
        assert!(errs.iter().any(|p| p == "redis: set `url` or `url_env`, not both"), "{errs:?}");
        assert!(!errs.join(" ").contains("pw@"), "{errs:?}");
        let text = format!("{MINIMAL}\n[storage]\nurl_env = \"NOT_SET\"\n");
        let errs = Config::from_toml(&text, &env).unwrap_err().0;
        assert!(
            errs.iter().any(|p| p.contains("storage.url_env: environment variable `NOT_SET` is not set")),
            "{errs:?}"
        );
    }

    #[test]
    fn reloads_apply_what_can_change_and_report_the_rest() {
        let old = Config::from_toml(MINIMAL, &env).unwrap();
        let text = MINIMAL.replace("requests_per_minute = 60", "requests_per_minute = 5")
            + "\n[server]\nlisten = \"127.0.0.1:9999\"\nmax_body_bytes = 1024\n[detection]\nmin_requests = 7\n";
        let new = Config::from_toml(&text, &env).unwrap();
        let (merged, r) = merge_reloadable(&old, new);
        assert_eq!(r.applied, ["tiers", "server.max_body_bytes", "detection"]);
        assert_eq!(r.restart_required, ["server.listen"]);
        assert_eq!(merged.tiers[0].limits.requests_per_minute, Some(5));
        assert_eq!(merged.server.max_body_bytes, 1024);
        assert_eq!(merged.detection.min_requests, 7);
        assert_eq!(merged.server.listen, old.server.listen, "restart-only settings keep their running value");
        // Turning the detector off (or on) needs a restart; nothing else changed.
        let off = Config::from_toml(&(MINIMAL.to_string() + "\n[detection]\nmode = \"off\"\n"), &env).unwrap();
        let (merged, r) = merge_reloadable(&old, off);
        assert!(r.applied.is_empty());
        assert_eq!(r.restart_required, ["detection.mode"]);
        assert_eq!(merged.detection.mode, old.detection.mode);
        // The same file again changes nothing.
        let same = Config::from_toml(MINIMAL, &env).unwrap();
        assert_eq!(merge_reloadable(&old, same).1, Reloaded::default());
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let c = Config::from_toml(MINIMAL, &env).unwrap();
        assert_eq!(c.server.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(c.server.admin_listen, "127.0.0.1:8081".parse().unwrap());
        assert_eq!(c.upstream.api_key.as_deref(), Some("sk-upstream"));
        assert_eq!(c.admin.token, "admin-token");
        assert_eq!(c.tiers[0].limits.requests_per_minute, Some(60));
        assert!(matches!(c.storage.backend, StorageBackend::Sqlite(ref p) if p == Path::new("data/warden.db")));
        assert_eq!(c.storage.sync_interval, Some(Duration::from_secs(1)));
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let text = r#"
            [server]
            listen = "nope"
            colour = "blue"
            shape = "round"
            [upstream]
            base_url = "ftp://x"
            api_key_env = "MISSING_VAR"
            [logging]
            format = "xml"
            [bogus]
            a = 1
            [[tiers]]
            name = "a"
            [[tiers]]
            name = "a"
            tokens_per_day = 0
        "#;
        let errs = Config::from_toml(text, &env).unwrap_err().0;
        let expect = [
            "server: unknown key `colour`",
            "server: unknown key `shape`",
            "server.listen: `nope`",
            "upstream.base_url: `ftp://x`",
            "upstream.api_key_env: environment variable `MISSING_VAR` is not set",
            "logging.format: `xml`",
            "unknown section `bogus`",
            "tiers[1].name: duplicate tier `a`",
            "tiers[1].tokens_per_day: must be greater than 0",
        ];
        for e in expect {
            assert!(errs.iter().any(|p| p.contains(e)), "missing problem {e:?} in {errs:#?}");
        }
        assert_eq!(errs.len(), expect.len(), "{errs:#?}");
    }

    #[test]
    fn type_error_in_one_section_does_not_hide_others() {
        let text = r#"
            [server]
            max_body_bytes = "big"
            [upstream]
            [[tiers]]
            name = "t"
        "#;
        let errs = Config::from_toml(text, &env).unwrap_err().0;
        assert!(errs.iter().any(|p| p.starts_with("server:") && p.contains("invalid type")), "{errs:#?}");
        assert!(errs.iter().any(|p| p.starts_with("upstream.base_url: missing")), "{errs:#?}");
    }

    #[test]
    fn upstream_key_is_redacted_in_debug() {
        let c = Config::from_toml(MINIMAL, &env).unwrap();
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("sk-upstream"));
        assert!(!dbg.contains("admin-token"));
    }
}
