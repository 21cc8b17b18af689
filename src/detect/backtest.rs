//! `warden backtest`: the live detector's engine run over audit JSONL files, on the
//! records' own timestamps. Streams line by line, so memory is bounded by the engine's
//! account cap, not by the size of the files.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::config::DetectConfig;
use super::{features, Engine, Observation};
use crate::llm::{LlmRequest, LlmRoute};

/// The fields of an audit record the detector reads (design 3.5); others are ignored.
#[derive(Deserialize)]
struct Record<'a> {
    ts: String,
    #[serde(default)]
    request_id: Option<String>,
    #[serde(default)]
    account_id: Option<String>,
    #[serde(default)]
    client_ip: Option<String>,
    #[serde(default)]
    user_agent: Option<String>,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    status: Option<u16>,
    #[serde(default)]
    usage: Option<UsageRecord>,
    /// Read by the same one-pass reader as live traffic, not into a tree.
    #[serde(default, borrow)]
    request_body: Option<&'a RawValue>,
}

#[derive(Deserialize, Default)]
struct UsageRecord {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
}

/// What a backtest run saw.
#[derive(Debug, Default, Clone)]
pub struct Summary {
    pub records: u64,
    pub skipped: u64,
    pub alerts_created: u64,
    pub alert_updates: u64,
    pub accounts_flagged: u64,
    pub elapsed: std::time::Duration,
}

/// What one line of an audit file gave.
#[derive(Debug)]
pub enum Line<T> {
    /// Empty or whitespace only: not counted.
    Blank,
    /// Not an audit record.
    Malformed(serde_json::Error),
    /// A record without a readable `ts` or without an `account_id`.
    Unusable,
    /// A record, read into an [`Observation`] and handed to the callback, which returned
    /// this.
    Observed(T),
}

/// Reads one line of an audit file (design 3.5) as [`run`] does: the record's fields, its
/// timestamp, its request body through the same one-pass reader as live traffic, and the
/// detector's features of it; `f` gets the observation (it borrows from the line).
pub fn read_line<T>(line: &str, f: impl FnOnce(&Observation<'_>) -> T) -> Line<T> {
    if line.trim().is_empty() {
        return Line::Blank;
    }
    let rec: Record<'_> = match serde_json::from_str(line) {
        Ok(r) => r,
        Err(e) => return Line::Malformed(e),
    };
    let (Some(ts_ms), Some(account)) = (crate::clock::parse_time(&rec.ts), rec.account_id.as_deref()) else {
        return Line::Unusable;
    };
    let path_s = rec.path.as_deref().unwrap_or("/v1/chat/completions");
    let usage = rec.usage.unwrap_or_default();
    let route = LlmRoute::of(&http::Method::POST, path_s).unwrap_or(LlmRoute::ChatCompletions);
    let request = rec
        .request_body
        .and_then(|b| LlmRequest::parse_bytes(route, bytes::Bytes::copy_from_slice(b.get().as_bytes())).ok());
    let obs = Observation {
        ts_ms,
        request_id: rec.request_id.as_deref().unwrap_or(""),
        account_id: account,
        client_ip: rec.client_ip.as_deref().and_then(|ip| ip.parse().ok()),
        user_agent: rec.user_agent.as_deref(),
        path: path_s,
        status: rec.status.unwrap_or(200),
        prompt_tokens: usage.prompt_tokens,
        completion_tokens: usage.completion_tokens,
        features: features::extract(path_s, request.as_ref()),
    };
    Line::Observed(f(&obs))
}

/// Where a backtest writes what it found besides the alerts.
#[derive(Default)]
pub struct Reports<'a> {
    /// Every linked pair of accounts at the end (JSON lines `{"a", "b", "kinds"}`).
    pub links: Option<&'a mut dyn Write>,
    /// Every account's standing at the end (JSON lines: score, signals, population).
    pub accounts: Option<&'a mut dyn Write>,
}

/// Runs the detector over `files` (in the order given), writing one JSON line per alert
/// created or changed to `out`. Malformed lines are skipped and counted.
pub fn run(cfg: DetectConfig, files: &[PathBuf], out: &mut dyn Write) -> anyhow::Result<Summary> {
    run_with(cfg, files, out, Reports::default())
}

/// [`run`], and the end-of-run reports asked for.
pub fn run_with(
    cfg: DetectConfig,
    files: &[PathBuf],
    out: &mut dyn Write,
    reports: Reports<'_>,
) -> anyhow::Result<Summary> {
    let started = std::time::Instant::now();
    let mut engine = Engine::new(Arc::new(cfg));
    let mut summary = Summary::default();
    let mut flagged = std::collections::HashSet::new();
    let mut line = String::new();
    for path in files {
        let file = std::fs::File::open(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let mut reader = BufReader::with_capacity(1 << 20, file);
        let mut line_no = 0u64;
        loop {
            line.clear();
            if reader.read_line(&mut line)? == 0 {
                break;
            }
            line_no += 1;
            let changes = match read_line(&line, |obs| engine.observe(obs)) {
                Line::Blank => continue,
                Line::Malformed(e) => {
                    summary.skipped += 1;
                    if summary.skipped <= 10 {
                        eprintln!("{}:{line_no}: skipped: {e}", path.display());
                    }
                    continue;
                }
                Line::Unusable => {
                    summary.skipped += 1;
                    continue;
                }
                Line::Observed(changes) => changes,
            };
            summary.records += 1;
            for change in changes {
                if change.created {
                    summary.alerts_created += 1;
                } else {
                    summary.alert_updates += 1;
                }
                for m in &change.new_members {
                    flagged.insert(m.clone());
                }
                serde_json::to_writer(&mut *out, &change.alert)?;
                out.write_all(b"\n")?;
            }
        }
    }
    out.flush()?;
    if let Some(w) = reports.links {
        for l in engine.links() {
            serde_json::to_writer(&mut *w, &l)?;
            w.write_all(b"\n")?;
        }
        w.flush()?;
    }
    if let Some(w) = reports.accounts {
        for a in engine.account_reports() {
            serde_json::to_writer(&mut *w, &a)?;
            w.write_all(b"\n")?;
        }
        w.flush()?;
    }
    summary.accounts_flagged = flagged.len() as u64;
    summary.elapsed = started.elapsed();
    Ok(summary)
}
