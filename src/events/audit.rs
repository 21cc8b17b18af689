//! The audit log: every request recorded once, as a JSON line, durable and secret-free.
//!
//! - **Off the request path.** Each request reserves a slot in a bounded queue when it
//!   arrives and fills it when it ends; a writer thread of its own drains the queue in
//!   batches, applies the capture mode and redaction, serializes and writes.
//! - **Nothing lost silently.** Because the slot is reserved up front, a request that
//!   was admitted always has room for its record. When the queue is full, `overflow =
//!   "reject"` (default) refuses new requests with 503 until the writer catches up, so no
//!   traffic goes unaudited; `overflow = "drop"` serves them and counts each record it
//!   could not keep in `warden_audit_dropped_total` (and logs it).
//! - **Durable.** Each batch is handed to the OS as soon as it is written (a SIGKILL loses
//!   only what is still queued), and fsynced at least every `flush_interval` (a power loss
//!   loses at most that). Graceful shutdown drains the queue, flushes and fsyncs.
//! - **Files.** `audit-YYYY-MM-DD.jsonl` (UTC), then `audit-YYYY-MM-DD.N.jsonl` when a
//!   file would pass `max_file_bytes`; files older than `retention_days` are deleted.
//! - **Reviewer access.** An index (`index.db`, SQLite, beside the files) maps account and
//!   time to file and offset, so an account's recent requests are read directly, without
//!   scanning files. It is updated in bulk once per flush interval (one transaction of
//!   multi-row inserts), so reviewer reads lag the files by at most that.
//! - **Cheap for the request path.** The writer wakes at most every few milliseconds and
//!   takes everything queued, rather than once per record.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};
use time::OffsetDateTime;
use tokio::sync::mpsc::{self, OwnedPermit};

use super::RequestEvent;
use crate::accounting::Usage;
use crate::config::{AuditConfig, AuditOverflow, CaptureMode};
use crate::error::ProxyError;

/// A reserved place in the audit queue for one request's record.
pub struct AuditSlot(OwnedPermit<Arc<RequestEvent>>);

/// Counters the audit log exposes (registered by [`crate::admin::metrics::Metrics`]).
#[derive(Clone, Default)]
pub struct AuditMetrics {
    pub written: prometheus_client::metrics::counter::Counter,
    pub dropped: prometheus_client::metrics::counter::Counter,
    pub bytes: prometheus_client::metrics::counter::Counter,
    pub write_errors: prometheus_client::metrics::counter::Counter,
    pub queue_depth: prometheus_client::metrics::gauge::Gauge,
}

/// The request path's handle on the audit log.
pub struct AuditSink {
    tx: mpsc::Sender<Arc<RequestEvent>>,
    overflow: AuditOverflow,
    metrics: AuditMetrics,
    close: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    dir: PathBuf,
    index: SqlitePool,
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit directory {0}: {1}")]
    Dir(PathBuf, io::Error),
    #[error("audit index: {0}")]
    Index(#[from] sqlx::Error),
    #[error("reading audit file: {0}")]
    Read(#[from] io::Error),
}

async fn open_index(dir: &Path, read_only: bool) -> Result<SqlitePool, sqlx::Error> {
    let opts = SqliteConnectOptions::new()
        .filename(dir.join("index.db"))
        .create_if_missing(!read_only)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(5));
    let pool = SqlitePoolOptions::new().max_connections(if read_only { 4 } else { 1 }).connect_with(opts).await?;
    if !read_only {
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS requests (
                account_id TEXT NOT NULL, ts_ms INTEGER NOT NULL,
                file TEXT NOT NULL, offset INTEGER NOT NULL, len INTEGER NOT NULL)",
        )
        .execute(&pool)
        .await?;
        sqlx::query("CREATE INDEX IF NOT EXISTS requests_account_ts ON requests(account_id, ts_ms)")
            .execute(&pool)
            .await?;
        sqlx::query("CREATE INDEX IF NOT EXISTS requests_file ON requests(file)").execute(&pool).await?;
    }
    Ok(pool)
}

impl AuditSink {
    /// Creates the directory and index, and starts the writer thread.
    pub async fn start(config: &AuditConfig, metrics: AuditMetrics) -> Result<AuditSink, AuditError> {
        std::fs::create_dir_all(&config.dir).map_err(|e| AuditError::Dir(config.dir.clone(), e))?;
        let (tx, rx) = mpsc::channel(config.queue_capacity);
        let (close_tx, close_rx) = tokio::sync::oneshot::channel();
        let writer_config = config.clone();
        let writer_metrics = metrics.clone();
        // The writer owns its index pool on its own runtime; the sink reads through a
        // second pool on the caller's runtime.
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let writer = std::thread::Builder::new()
            .name("warden-audit".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("audit runtime");
                rt.block_on(async move {
                    match Writer::open(writer_config, writer_metrics).await {
                        Ok(w) => {
                            let _ = ready_tx.send(Ok(()));
                            w.run(rx, close_rx).await;
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                        }
                    }
                })
            })
            .map_err(|e| AuditError::Dir(config.dir.clone(), e))?;
        tokio::task::spawn_blocking(move || ready_rx.recv())
            .await
            .expect("audit start-up wait")
            .map_err(|_| AuditError::Dir(config.dir.clone(), io::Error::other("audit writer died")))??;
        Ok(AuditSink {
            tx,
            overflow: config.overflow,
            metrics,
            close: Mutex::new(Some(close_tx)),
            writer: Mutex::new(Some(writer)),
            dir: config.dir.clone(),
            index: open_index(&config.dir, true).await?,
        })
    }

    /// Reserves the record slot of a request that just arrived. `Err` (reject mode, queue
    /// full) means the request must be refused.
    pub fn reserve(&self) -> Result<Option<AuditSlot>, ProxyError> {
        match self.tx.clone().try_reserve_owned() {
            Ok(permit) => Ok(Some(AuditSlot(permit))),
            Err(_) if self.overflow == AuditOverflow::Reject => Err(ProxyError::AuditBackpressure),
            Err(_) => Ok(None),
        }
    }

    /// Hands a finished request's record to the writer. Never blocks.
    pub fn submit(&self, slot: Option<AuditSlot>, event: Arc<RequestEvent>) {
        match slot {
            Some(AuditSlot(permit)) => {
                permit.send(event);
            }
            None => {
                if let Err(e) = self.tx.try_send(event) {
                    let event = match e {
                        mpsc::error::TrySendError::Full(ev) | mpsc::error::TrySendError::Closed(ev) => ev,
                    };
                    self.metrics.dropped.inc();
                    tracing::error!(request_id = %event.request_id, "audit queue full: record dropped");
                }
            }
        }
    }

    /// Records waiting to be written.
    pub fn queue_depth(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    /// Drains the queue, flushes, fsyncs and stops the writer. Call after the server has
    /// drained its requests.
    pub async fn shutdown(&self) {
        if let Some(close) = self.close.lock().expect("audit close lock").take() {
            let _ = close.send(());
        }
        let writer = self.writer.lock().expect("audit writer lock").take();
        if let Some(w) = writer {
            let _ = tokio::task::spawn_blocking(move || w.join()).await;
        }
        self.index.close().await;
    }

    /// An account's records since `since_ms`, newest first, at most `limit`.
    pub async fn account_requests(
        &self,
        account_id: &str,
        since_ms: i64,
        limit: i64,
    ) -> Result<Vec<Value>, AuditError> {
        let rows = sqlx::query(
            "SELECT file, offset, len FROM requests WHERE account_id = ?1 AND ts_ms >= ?2
             ORDER BY ts_ms DESC, rowid DESC LIMIT ?3",
        )
        .bind(account_id)
        .bind(since_ms)
        .bind(limit)
        .fetch_all(&self.index)
        .await?;
        let locations: Vec<(String, u64, usize)> = rows
            .iter()
            .map(|r| (r.get::<String, _>(0), r.get::<i64, _>(1) as u64, r.get::<i64, _>(2) as usize))
            .collect();
        let dir = self.dir.clone();
        let records = tokio::task::spawn_blocking(move || -> io::Result<Vec<Value>> {
            let mut files: HashMap<String, Option<File>> = HashMap::new();
            let mut out = Vec::with_capacity(locations.len());
            for (name, offset, len) in locations {
                // A file removed by retention since the query simply yields nothing.
                let file = files.entry(name.clone()).or_insert_with(|| File::open(dir.join(&name)).ok());
                let Some(file) = file else { continue };
                let mut buf = vec![0u8; len];
                if file.read_exact_at(&mut buf, offset).is_ok() {
                    if let Ok(v) = serde_json::from_slice(&buf) {
                        out.push(v);
                    }
                }
            }
            Ok(out)
        })
        .await
        .expect("audit read task")?;
        Ok(records)
    }
}

/// One line of the audit log (design contract 3.5, plus warden's own fields).
#[derive(Serialize)]
struct AuditRecord<'a> {
    ts: String,
    request_id: &'a str,
    account_id: Option<&'a str>,
    key_id: Option<&'a str>,
    client_ip: &'a str,
    user_agent: Option<&'a str>,
    method: &'a str,
    path: &'a str,
    model: Option<&'a str>,
    status: u16,
    stream: bool,
    latency_ms: u64,
    usage: Option<Usage>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    usage_estimated: bool,
    decision: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    ending: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_body: Option<std::borrow::Cow<'a, serde_json::Map<String, Value>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    completion_text: Option<std::borrow::Cow<'a, str>>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    completion_truncated: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    prompt_hash: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    completion_hash: Option<String>,
}

pub fn format_ts(ms: i64) -> String {
    let t = OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let d = t.date();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        d.year(),
        d.month() as u8,
        d.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

fn short_hash(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    hex::encode(&digest[..16])
}

fn redact_text(text: &str, patterns: &[regex::Regex]) -> String {
    let mut out = std::borrow::Cow::Borrowed(text);
    for p in patterns {
        if let std::borrow::Cow::Owned(s) = p.replace_all(&out, "[REDACTED]") {
            out = std::borrow::Cow::Owned(s);
        }
    }
    out.into_owned()
}

fn redact_value(v: &mut Value, patterns: &[regex::Regex]) {
    match v {
        Value::String(s) if patterns.iter().any(|p| p.is_match(s)) => *s = redact_text(s, patterns),
        Value::Array(items) => items.iter_mut().for_each(|i| redact_value(i, patterns)),
        Value::Object(map) => map.values_mut().for_each(|i| redact_value(i, patterns)),
        _ => {}
    }
}

/// Builds the JSON line of an event under the configured capture mode and redaction.
pub fn render(event: &RequestEvent, capture: CaptureMode, redact: &[regex::Regex]) -> Vec<u8> {
    use std::borrow::Cow;
    let (request_body, completion_text, prompt_hash, completion_hash) = match capture {
        CaptureMode::None => (None, None, None, None),
        CaptureMode::Hash => {
            let prompt = event.request_body.as_ref().map(|b| short_hash(&crate::llm::prompt_text_of(b)));
            let completion = event.completion_text.as_deref().filter(|t| !t.is_empty()).map(short_hash);
            (None, None, prompt, completion)
        }
        CaptureMode::Full => {
            // The event is shared with the detector: borrow it, copy only what redaction
            // rewrites.
            let body = event.request_body.as_ref().map(|b| {
                if redact.is_empty() {
                    Cow::Borrowed(b)
                } else {
                    let mut b = b.clone();
                    b.values_mut().for_each(|v| redact_value(v, redact));
                    Cow::Owned(b)
                }
            });
            let text = event.completion_text.as_deref().map(|t| {
                if redact.is_empty() {
                    Cow::Borrowed(t)
                } else {
                    Cow::Owned(redact_text(t, redact))
                }
            });
            (body, text, None, None)
        }
    };
    let record = AuditRecord {
        ts: format_ts(event.ts_ms),
        request_id: &event.request_id,
        account_id: event.account_id.as_deref(),
        key_id: event.key_id.as_deref(),
        client_ip: &event.client_ip,
        user_agent: event.user_agent.as_deref(),
        method: &event.method,
        path: &event.path,
        model: event.model.as_deref(),
        status: event.status,
        stream: event.stream,
        latency_ms: event.latency.as_millis() as u64,
        usage: event.usage,
        usage_estimated: event.usage_estimated,
        decision: event.decision,
        reason: event.reason.as_deref(),
        ending: event.ending,
        request_body,
        completion_truncated: event.completion_truncated && completion_text.is_some(),
        completion_text,
        prompt_hash,
        completion_hash,
    };
    let mut line = serde_json::to_vec(&record).expect("audit records serialize");
    line.push(b'\n');
    line
}

/// The file being appended to.
struct OpenFile {
    name: Arc<str>,
    day: time::Date,
    seq: u32,
    out: BufWriter<File>,
    size: u64,
}

fn file_name(day: time::Date, seq: u32) -> String {
    let base = format!("audit-{:04}-{:02}-{:02}", day.year(), day.month() as u8, day.day());
    if seq == 0 {
        format!("{base}.jsonl")
    } else {
        format!("{base}.{seq}.jsonl")
    }
}

/// Parses `audit-YYYY-MM-DD[.N].jsonl` into its day and sequence number.
fn parse_file_name(name: &str) -> Option<(time::Date, u32)> {
    let rest = name.strip_prefix("audit-")?.strip_suffix(".jsonl")?;
    let (date, seq) = match rest.split_once('.') {
        Some((d, s)) => (d, s.parse().ok()?),
        None => (rest, 0),
    };
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    Some((time::Date::parse(date, &fmt).ok()?, seq))
}

struct Writer {
    config: AuditConfig,
    metrics: AuditMetrics,
    current: Option<OpenFile>,
    /// Written since the last fsync.
    dirty: bool,
    index: SqlitePool,
    /// Records written but not yet in the index; indexed in bulk on each flush tick.
    unindexed: Vec<Placed>,
}

/// How long the writer lets records gather in the queue after writing a batch. Waking
/// once per record costs the request path a thread wake-up per request; a few
/// milliseconds of batching turns that into a few hundred wake-ups a second.
const COALESCE: Duration = Duration::from_millis(5);
/// Index rows per INSERT statement (5 parameters each, well under SQLite's limit).
const INDEX_ROWS_PER_STATEMENT: usize = 500;

/// Where one record landed, for the index.
struct Placed {
    account_id: Arc<str>,
    ts_ms: i64,
    file: Arc<str>,
    offset: u64,
    len: u64,
}

impl Writer {
    async fn open(config: AuditConfig, metrics: AuditMetrics) -> Result<Writer, AuditError> {
        let index = open_index(&config.dir, false).await?;
        let mut w = Writer { config, metrics, current: None, dirty: false, index, unindexed: Vec::new() };
        w.sweep_retention().await;
        Ok(w)
    }

    async fn run(mut self, mut rx: mpsc::Receiver<Arc<RequestEvent>>, mut close: tokio::sync::oneshot::Receiver<()>) {
        let mut tick = tokio::time::interval(self.config.flush_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut ticks: u64 = 0;
        let sweep_every = (3_600_000 / self.config.flush_interval.as_millis().max(1) as u64).max(1);
        let mut batch = Vec::with_capacity(1024);
        loop {
            tokio::select! {
                n = rx.recv_many(&mut batch, 1024) => {
                    if n == 0 {
                        break;
                    }
                    self.write_batch(&mut batch).await;
                    self.metrics.queue_depth.set(rx.len() as i64);
                    if n < 1024 {
                        tokio::time::sleep(COALESCE).await;
                    }
                }
                _ = tick.tick() => {
                    self.sync();
                    self.index_pending().await;
                    ticks += 1;
                    if ticks % sweep_every == 0 {
                        self.sweep_retention().await;
                    }
                }
                _ = &mut close => {
                    // No new records; drain what is queued or reserved and stop.
                    rx.close();
                    while rx.recv_many(&mut batch, 1024).await > 0 {
                        self.write_batch(&mut batch).await;
                    }
                    break;
                }
            }
        }
        self.sync();
        self.index_pending().await;
        self.metrics.queue_depth.set(0);
        self.index.close().await;
    }

    async fn write_batch(&mut self, batch: &mut Vec<Arc<RequestEvent>>) {
        let mut written = 0u64;
        for event in batch.drain(..) {
            let line = render(&event, self.config.capture, &self.config.redact);
            // A failing disk is retried (the queue, and in reject mode admission, hold
            // the line) rather than losing the record.
            let mut attempt = 0u32;
            loop {
                match self.append(&line) {
                    Ok((file, offset)) => {
                        written += 1;
                        // Only records with an account can be asked for by account.
                        if let Some(account_id) = &event.account_id {
                            self.unindexed.push(Placed {
                                account_id: account_id.clone(),
                                ts_ms: event.ts_ms,
                                file,
                                offset,
                                len: line.len() as u64,
                            });
                        }
                        break;
                    }
                    Err(e) => {
                        attempt += 1;
                        self.metrics.write_errors.inc();
                        tracing::error!(error = %e, attempt, "audit write failed; retrying");
                        self.current = None;
                        if attempt >= 20 {
                            self.metrics.dropped.inc();
                            tracing::error!("audit record dropped after repeated write failures");
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(250)).await;
                    }
                }
            }
        }
        if let Some(f) = self.current.as_mut() {
            // Hand the batch to the OS now: a SIGKILL then loses only what is queued.
            if let Err(e) = f.out.flush() {
                self.metrics.write_errors.inc();
                tracing::error!(error = %e, "audit flush failed");
            }
        }
        self.metrics.written.inc_by(written);
        if self.unindexed.len() >= 16 * INDEX_ROWS_PER_STATEMENT {
            self.index_pending().await;
        }
    }

    /// Appends one line, rotating by day and size; returns file name and offset.
    fn append(&mut self, line: &[u8]) -> io::Result<(Arc<str>, u64)> {
        let today = OffsetDateTime::now_utc().date();
        let rotate = match &self.current {
            None => true,
            Some(f) => f.day != today || f.size + line.len() as u64 > self.config.max_file_bytes,
        };
        if rotate {
            self.rotate(today, line.len() as u64)?;
        }
        let f = self.current.as_mut().expect("a file is open after rotate");
        let offset = f.size;
        f.out.write_all(line)?;
        f.size += line.len() as u64;
        self.dirty = true;
        self.metrics.bytes.inc_by(line.len() as u64);
        Ok((f.name.clone(), offset))
    }

    /// Opens the file to append to: the newest of `day` if it has room for `need` more
    /// bytes, else the next one. An empty file always takes the line, however long.
    fn rotate(&mut self, day: time::Date, need: u64) -> io::Result<()> {
        if let Some(mut old) = self.current.take() {
            old.out.flush()?;
            old.out.get_ref().sync_data()?;
        }
        let newest = std::fs::read_dir(&self.config.dir)?
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter_map(|n| parse_file_name(&n))
            .filter(|(d, _)| *d == day)
            .map(|(_, s)| s)
            .max();
        let mut seq = newest.unwrap_or(0);
        loop {
            let name = file_name(day, seq);
            let path = self.config.dir.join(&name);
            let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            if size == 0 || size + need <= self.config.max_file_bytes {
                let file = OpenOptions::new().create(true).append(true).open(&path)?;
                self.current = Some(OpenFile {
                    name: name.into(),
                    day,
                    seq,
                    out: BufWriter::with_capacity(256 * 1024, file),
                    size,
                });
                return Ok(());
            }
            seq += 1;
        }
    }

    fn sync(&mut self) {
        if !self.dirty {
            return;
        }
        if let Some(f) = self.current.as_mut() {
            let res = f.out.flush().and_then(|()| f.out.get_ref().sync_data());
            match res {
                Ok(()) => self.dirty = false,
                Err(e) => {
                    self.metrics.write_errors.inc();
                    tracing::error!(error = %e, file = %f.name, seq = f.seq, "audit fsync failed");
                }
            }
        }
    }

    /// Adds the records written since the last call to the index, in one transaction of
    /// multi-row INSERTs. Reviewer reads therefore lag the files by at most one flush
    /// interval; per-record statements cost more than writing the records themselves.
    async fn index_pending(&mut self) {
        if self.unindexed.is_empty() {
            return;
        }
        let placed = std::mem::take(&mut self.unindexed);
        let result: Result<(), sqlx::Error> = async {
            let mut tx = self.index.begin().await?;
            for chunk in placed.chunks(INDEX_ROWS_PER_STATEMENT) {
                let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                    "INSERT INTO requests (account_id, ts_ms, file, offset, len) ",
                );
                q.push_values(chunk, |mut row, p| {
                    row.push_bind(&*p.account_id)
                        .push_bind(p.ts_ms)
                        .push_bind(&*p.file)
                        .push_bind(p.offset as i64)
                        .push_bind(p.len as i64);
                });
                // Only the full-size statement is kept prepared. The last chunk of a flush
                // has any size, and caching one statement per size (each with up to 2,500
                // parameters) grew memory by ~10 MiB over a 20-minute soak.
                let full = chunk.len() == INDEX_ROWS_PER_STATEMENT;
                q.build().persistent(full).execute(&mut *tx).await?;
            }
            tx.commit().await
        }
        .await;
        if let Err(e) = result {
            // The JSONL files are the record; the index only speeds up reviewer reads.
            tracing::warn!(error = %e, "audit index update failed");
        }
    }

    /// Deletes files (and their index rows) older than the retention period.
    async fn sweep_retention(&mut self) {
        let cutoff = OffsetDateTime::now_utc().date() - time::Duration::days(self.config.retention_days as i64);
        let Ok(entries) = std::fs::read_dir(&self.config.dir) else { return };
        for name in entries.filter_map(|e| e.ok()?.file_name().into_string().ok()) {
            let Some((day, _)) = parse_file_name(&name) else { continue };
            if day >= cutoff {
                continue;
            }
            match std::fs::remove_file(self.config.dir.join(&name)) {
                Ok(()) => {
                    tracing::info!(file = %name, "audit file past retention deleted");
                    let _ = sqlx::query("DELETE FROM requests WHERE file = ?1").bind(&name).execute(&self.index).await;
                }
                Err(e) => tracing::warn!(file = %name, error = %e, "cannot delete audit file past retention"),
            }
        }
    }
}

/// Parses `since` as RFC 3339 or Unix milliseconds.
pub fn parse_since(s: &str) -> Option<i64> {
    if let Ok(ms) = s.parse::<i64>() {
        return Some(ms);
    }
    let t = OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    Some((t.unix_timestamp_nanos() / 1_000_000) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Map;

    fn event() -> RequestEvent {
        let body: Map<String, Value> = serde_json::from_str(
            r#"{"model":"m","messages":[{"role":"user","content":"my card is 4111-1111-1111-1111, help"}]}"#,
        )
        .unwrap();
        RequestEvent {
            ts_ms: 1_795_000_000_123,
            request_id: "req_1".into(),
            account_id: Some(Arc::from("acme")),
            key_id: Some(Arc::from("key_1")),
            client_ip: "203.0.113.7".into(),
            user_agent: Some("ua".into()),
            method: "POST".into(),
            path: "/v1/chat/completions".into(),
            model: Some("m".into()),
            status: 200,
            stream: true,
            latency: Duration::from_millis(12),
            usage: Some(Usage { prompt_tokens: 3, completion_tokens: 4 }),
            usage_estimated: false,
            decision: "allowed",
            reason: None,
            ending: "complete",
            request_body: Some(body),
            completion_text: Some("sure 4111-1111-1111-1111".into()),
            completion_truncated: false,
        }
    }

    fn parse(line: &[u8]) -> Value {
        assert_eq!(*line.last().unwrap(), b'\n');
        serde_json::from_slice(line).unwrap()
    }

    #[test]
    fn full_capture_keeps_text_and_applies_redaction() {
        let re = vec![regex::Regex::new(r"\d{4}-\d{4}-\d{4}-\d{4}").unwrap()];
        let v = parse(&render(&event(), CaptureMode::Full, &re));
        assert_eq!(v["ts"], "2026-11-18T11:06:40.123Z");
        assert_eq!(v["account_id"], "acme");
        assert_eq!(v["usage"]["completion_tokens"], 4);
        let text = v.to_string();
        assert!(!text.contains("4111"), "{text}");
        assert_eq!(v["request_body"]["messages"][0]["content"], "my card is [REDACTED], help");
        assert_eq!(v["completion_text"], "sure [REDACTED]");
    }

    #[test]
    fn hash_capture_keeps_stable_hashes_only() {
        let a = parse(&render(&event(), CaptureMode::Hash, &[]));
        let b = parse(&render(&event(), CaptureMode::Hash, &[]));
        assert!(a.get("request_body").is_none() && a.get("completion_text").is_none());
        assert_eq!(a["prompt_hash"], b["prompt_hash"]);
        assert_eq!(a["prompt_hash"].as_str().unwrap().len(), 32);
        assert!(!a.to_string().contains("4111"));
        let none = parse(&render(&event(), CaptureMode::None, &[]));
        assert!(none.get("prompt_hash").is_none() && none.get("request_body").is_none());
    }

    #[test]
    fn file_names_round_trip() {
        let d = time::macros::date!(2026 - 11 - 28);
        assert_eq!(file_name(d, 0), "audit-2026-11-28.jsonl");
        assert_eq!(parse_file_name(&file_name(d, 3)), Some((d, 3)));
        assert_eq!(parse_file_name("audit-2026-11-28.jsonl"), Some((d, 0)));
        assert_eq!(parse_file_name("other.jsonl"), None);
        assert_eq!(parse_since("1000"), Some(1000));
        assert_eq!(parse_since("1970-01-01T00:00:01Z"), Some(1000));
    }
}
