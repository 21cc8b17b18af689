//! Building blocks of configuration, a leaf: the list of every problem found
//! ([`ConfigErrors`]), reading one TOML section with all its unknown keys reported,
//! where environment variables come from, and the checks sections share (addresses,
//! durations, counts, secrets and URLs from the environment). Each subsystem validates
//! its own section with these; `config` only assembles the sections.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use serde::de::DeserializeOwned;

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

/// Where environment variables come from; tests pass a closure instead of mutating the
/// process environment.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Deserializes one section, reporting every unknown key and the first type error.
pub fn section<T: DeserializeOwned + Default>(name: &str, value: toml::Value, problems: &mut Vec<String>) -> T {
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

pub fn addr(field: &str, value: Option<String>, default: &str, problems: &mut Vec<String>) -> SocketAddr {
    let value = value.unwrap_or_else(|| default.to_string());
    value.parse().unwrap_or_else(|_| {
        problems.push(format!("{field}: `{value}` is not a socket address (e.g. 127.0.0.1:8080)"));
        SocketAddr::from(([127, 0, 0, 1], 0))
    })
}

pub fn millis(field: &str, value: Option<u64>, default: u64, problems: &mut Vec<String>) -> Duration {
    let v = value.unwrap_or(default);
    if v == 0 {
        problems.push(format!("{field}: must be greater than 0"));
    }
    Duration::from_millis(v)
}

pub fn positive(field: &str, value: Option<usize>, default: usize, problems: &mut Vec<String>) -> usize {
    match value.unwrap_or(default) {
        0 => {
            problems.push(format!("{field}: must be greater than 0"));
            default
        }
        v => v,
    }
}

pub fn env_secret(field: &str, var: &str, env: EnvLookup<'_>, problems: &mut Vec<String>) -> Option<String> {
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
pub fn url_setting(
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

/// `scheme://host[:port]/...` of a URL, without user, password, path or query.
pub fn redacted_url(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    format!("{scheme}://{host}/…")
}
