//! Configuration, assembled: the TOML file is split into its sections, each validated by
//! the subsystem it configures (`[server]` in [`crate::net`], `[upstream]` in
//! [`crate::upstream`], `[admin]` in [`crate::auth`], `[storage]` in [`crate::store`],
//! `[logging]` in [`crate::telemetry`], `[redis]` in [`crate::limits::shared`],
//! `[limits]` in [`crate::limits`], `[audit]` in [`crate::events::audit`], `[[tiers]]` in
//! [`crate::tiers`], `[detection]` in [`crate::detect::config`]), and put together in
//! [`Config`]; [`merge_reloadable`] decides what a reload changes.
//!
//! Loading never stops at the first problem: unknown keys, type errors per section and
//! semantic errors (bad addresses, duplicate tiers, missing environment variables) are
//! all collected so `warden check-config` can list every problem at once. The `Raw*`
//! structs' field doc comments, beside each subsystem, are the reference for
//! `config/warden.toml`.

use std::fmt;
use std::path::Path;

pub use crate::auth::{AdminConfig, RawAdmin};
pub use crate::events::audit::{AuditConfig, AuditOverflow, CaptureMode, RawAudit};
pub use crate::limits::shared::{RawRedis, SharedConfig};
pub use crate::limits::{Limits, LimitsConfig, RawLimits};
pub use crate::net::{RawServer, ServerConfig};
pub use crate::settings::{section, ConfigErrors, EnvLookup};
pub use crate::store::{RawStorage, StorageBackend, StorageConfig};
pub use crate::telemetry::{LogFormat, LoggingConfig, RawLogging};
pub use crate::tiers::{ModelLimit, RawTier, Tier};
pub use crate::upstream::{RawUpstream, UpstreamConfig};

// ---------------------------------------------------------------------------------------
// Raw configuration, as written in TOML. Unknown keys are errors (collected with
// serde_ignored so that all of them are reported, not only the first).
// ---------------------------------------------------------------------------------------

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
    pub redis: Option<SharedConfig>,
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
        "server.max_upload_bytes" => server.max_upload_bytes,
        "server.body_read_timeout_ms" => server.body_read_timeout,
        "server.body_min_bytes_per_sec" => server.body_min_rate,
        "server.max_event_bytes" => server.max_event_bytes,
        "upstream.passthrough" => upstream.passthrough,
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
        "server.idle_timeout_ms" => server.idle_timeout,
        "server.max_connections" => server.max_connections,
        "server.auth_failures_per_minute" => server.auth_failures_per_minute,
        "server.auth_failure_burst" => server.auth_failure_burst,
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

fn validate(raw: RawConfig, env: EnvLookup<'_>, problems: &mut Vec<String>) -> Option<Config> {
    // Section by section, in file order of the reference config; each subsystem checks
    // its own.
    let server = ServerConfig::from_raw(raw.server, problems);
    let upstream = UpstreamConfig::from_raw(raw.upstream, env, problems);
    let admin = AdminConfig::from_raw(raw.admin, env, problems);
    let storage = StorageConfig::from_raw(raw.storage, env, problems);
    let logging = LoggingConfig::from_raw(raw.logging, problems);
    let redis = raw.redis.map(|r| SharedConfig::from_raw(r, env, problems));
    let limits = LimitsConfig::from_raw(raw.limits, problems);
    let audit = AuditConfig::from_raw(raw.audit.unwrap_or_default(), server.max_in_flight, problems);
    let tiers = crate::tiers::validate(raw.tiers, problems);
    let detection = crate::detect::config::validate(raw.detection, problems);
    Some(Config { server, upstream, admin, storage, logging, redis, audit, detection, limits, tiers })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

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
    fn without_tiers_there_is_one_default_tier_with_finite_limits() {
        let text = "[upstream]\nbase_url = \"http://127.0.0.1:9000\"\n[admin]\ntoken_env = \"WARDEN_ADMIN_TOKEN\"\n";
        let c = Config::from_toml(text, &env).unwrap();
        assert_eq!(c.tiers.len(), 1);
        let t = &c.tiers[0];
        assert_eq!(t.name, "default");
        let l = t.limits;
        for (what, v) in [
            ("requests_per_minute", l.requests_per_minute),
            ("tokens_per_minute", l.tokens_per_minute),
            ("max_concurrent", l.max_concurrent),
            ("tokens_per_day", l.tokens_per_day),
            ("tokens_per_month", l.tokens_per_month),
        ] {
            assert!(v.is_some_and(|v| v > 0), "{what} must be finite by default");
        }
        assert!(crate::tiers::notes(&c.tiers).is_empty());
        // A tier that names no rate is allowed, and said to be unlimited.
        let named = Config::from_toml(&format!("{text}[[tiers]]\nname = \"open\"\n"), &env).unwrap();
        assert_eq!(named.tiers.len(), 1);
        assert_eq!(
            crate::tiers::notes(&named.tiers),
            ["tier `open` sets no requests_per_minute, tokens_per_minute, max_concurrent: unlimited"]
        );
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
