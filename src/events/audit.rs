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

use arc_swap::ArcSwap;
use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};
use time::OffsetDateTime;
use tokio::sync::mpsc::{self, OwnedPermit};

use super::RequestEvent;
use crate::clock::Timestamp;
use crate::error::ProxyError;
use crate::settings::millis;
use serde::Deserialize;

/// A reserved place in the audit queue for one request's record.
pub struct AuditSlot(OwnedPermit<Arc<RequestEvent>>);

/// Counters the audit log exposes.
#[derive(Clone, Default)]
pub struct AuditMetrics {
    pub written: prometheus_client::metrics::counter::Counter,
    pub dropped: prometheus_client::metrics::counter::Counter,
    pub bytes: prometheus_client::metrics::counter::Counter,
    pub write_errors: prometheus_client::metrics::counter::Counter,
    pub queue_depth: prometheus_client::metrics::gauge::Gauge,
}

impl AuditMetrics {
    pub fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register("audit_records", "Audit records written", self.written.clone());
        registry.register(
            "audit_dropped",
            "Audit records lost (queue full in `drop` mode, or repeated write failures)",
            self.dropped.clone(),
        );
        registry.register("audit_bytes", "Bytes written to the audit log", self.bytes.clone());
        registry.register("audit_write_errors", "Failed audit writes and fsyncs (retried)", self.write_errors.clone());
        registry.register("audit_queue_depth", "Audit records waiting to be written", self.queue_depth.clone());
    }
}

/// The request path's handle on the audit log.
pub struct AuditSink {
    tx: mpsc::Sender<Arc<RequestEvent>>,
    /// What records keep of each request; a configuration reload replaces it and the
    /// writer uses the new one from its next batch.
    capture: Arc<ArcSwap<Capture>>,
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
        // One row per account, file and index update: `entries` packs the records'
        // (ts, offset, len), so the index grows by a row per active account per flush
        // interval, not by a row per request.
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS request_blocks (
                account_id TEXT NOT NULL, file TEXT NOT NULL,
                min_ts INTEGER NOT NULL, max_ts INTEGER NOT NULL, entries BLOB NOT NULL)",
        )
        .execute(&pool)
        .await?;
        sqlx::query("CREATE INDEX IF NOT EXISTS request_blocks_account ON request_blocks(account_id, max_ts)")
            .execute(&pool)
            .await?;
        sqlx::query("CREATE INDEX IF NOT EXISTS request_blocks_file ON request_blocks(file)").execute(&pool).await?;
        // Per account and UTC hour: what the reviewers' timeline draws, without reading
        // the records themselves.
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS account_hours (
                account_id TEXT NOT NULL, hour_ms INTEGER NOT NULL,
                requests INTEGER NOT NULL, refused INTEGER NOT NULL,
                prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL,
                PRIMARY KEY (account_id, hour_ms))",
        )
        .execute(&pool)
        .await?;
        migrate_row_index(&pool).await?;
    }
    Ok(pool)
}

/// Moves an index written by earlier versions (one `requests` row per record) into
/// blocks, once.
async fn migrate_row_index(pool: &SqlitePool) -> Result<(), sqlx::Error> {
    let old: Option<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'requests'")
            .fetch_optional(pool)
            .await?;
    if old.is_none() {
        return Ok(());
    }
    let rows =
        sqlx::query("SELECT account_id, file, ts_ms, offset, len FROM requests ORDER BY rowid").fetch_all(pool).await?;
    let mut blocks = PendingBlocks::default();
    for r in &rows {
        let (account, file): (String, String) = (r.get(0), r.get(1));
        blocks.add(Arc::from(account), Arc::from(file), r.get(2), r.get::<i64, _>(3) as u64, r.get::<i64, _>(4) as u64);
    }
    let mut tx = pool.begin().await?;
    insert_blocks(&mut tx, blocks.take()).await?;
    sqlx::query("DROP TABLE requests").execute(&mut *tx).await?;
    tx.commit().await?;
    tracing::info!(records = rows.len(), "audit index migrated to blocks");
    Ok(())
}

/// One record found through the index, with what orders it (newest first).
struct Located {
    ts: i64,
    /// Rank of its block in the query (0 = newest block).
    block: usize,
    /// Its place in the block (later = written later).
    position: usize,
    file: Arc<str>,
    offset: u64,
    len: usize,
}

/// Bytes of one packed index entry: ts_ms (i64), offset (u64), len (u32), little-endian.
const ENTRY_BYTES: usize = 20;

/// Index entries gathered since the last index update, one block per account and file.
#[derive(Default)]
struct PendingBlocks {
    blocks: foldhash::HashMap<(Arc<str>, Arc<str>), Block>,
    entries: usize,
}

struct Block {
    account_id: Arc<str>,
    file: Arc<str>,
    min_ts: i64,
    max_ts: i64,
    entries: Vec<u8>,
}

impl PendingBlocks {
    fn add(&mut self, account_id: Arc<str>, file: Arc<str>, ts_ms: i64, offset: u64, len: u64) {
        let block = self.blocks.entry((account_id.clone(), file.clone())).or_insert_with(|| Block {
            account_id,
            file,
            min_ts: ts_ms,
            max_ts: ts_ms,
            entries: Vec::new(),
        });
        block.min_ts = block.min_ts.min(ts_ms);
        block.max_ts = block.max_ts.max(ts_ms);
        block.entries.extend_from_slice(&ts_ms.to_le_bytes());
        block.entries.extend_from_slice(&offset.to_le_bytes());
        block.entries.extend_from_slice(&(len.min(u32::MAX as u64) as u32).to_le_bytes());
        self.entries += 1;
    }

    fn take(&mut self) -> Vec<Block> {
        self.entries = 0;
        self.blocks.drain().map(|(_, b)| b).collect()
    }
}

const HOUR_MS: i64 = 3_600_000;

/// One account's traffic in one UTC hour, as the audit records tell it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Hour {
    /// Start of the hour, Unix milliseconds.
    pub hour_ms: i64,
    pub requests: u64,
    /// Requests warden refused or that did not get an answer (status ≥ 400).
    pub refused: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

impl Hour {
    fn add(&mut self, event: &RequestEvent) {
        self.requests += 1;
        self.refused += u64::from(event.status >= 400);
        if let Some(u) = &event.usage {
            self.prompt_tokens += u.prompt_tokens;
            self.completion_tokens += u.completion_tokens;
        }
    }
}

/// Hourly counts gathered since the last index update, per account and hour.
#[derive(Default)]
struct PendingHours {
    hours: foldhash::HashMap<(Arc<str>, i64), Hour>,
}

impl PendingHours {
    fn add(&mut self, account_id: &Arc<str>, event: &RequestEvent) {
        let hour_ms = event.ts_ms.div_euclid(HOUR_MS) * HOUR_MS;
        self.hours.entry((account_id.clone(), hour_ms)).or_insert(Hour { hour_ms, ..Hour::default() }).add(event);
    }

    fn take(&mut self) -> Vec<(Arc<str>, Hour)> {
        self.hours.drain().map(|((a, _), h)| (a, h)).collect()
    }
}

/// Hours per upsert statement (6 parameters each).
const HOURS_PER_STATEMENT: usize = 400;

async fn upsert_hours(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    hours: Vec<(Arc<str>, Hour)>,
) -> Result<(), sqlx::Error> {
    for chunk in hours.chunks(HOURS_PER_STATEMENT) {
        let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
            "INSERT INTO account_hours (account_id, hour_ms, requests, refused, prompt_tokens, completion_tokens) ",
        );
        q.push_values(chunk, |mut row, (account, h)| {
            row.push_bind(&**account)
                .push_bind(h.hour_ms)
                .push_bind(h.requests as i64)
                .push_bind(h.refused as i64)
                .push_bind(h.prompt_tokens as i64)
                .push_bind(h.completion_tokens as i64);
        });
        q.push(
            " ON CONFLICT (account_id, hour_ms) DO UPDATE SET requests = requests + excluded.requests, \
             refused = refused + excluded.refused, prompt_tokens = prompt_tokens + excluded.prompt_tokens, \
             completion_tokens = completion_tokens + excluded.completion_tokens",
        );
        let full = chunk.len() == HOURS_PER_STATEMENT;
        q.build().persistent(full).execute(&mut **tx).await?;
    }
    Ok(())
}

/// The (ts_ms, offset, len) entries of a packed block.
fn unpack(entries: &[u8]) -> impl Iterator<Item = (i64, u64, usize)> + '_ {
    entries.chunks_exact(ENTRY_BYTES).map(|e| {
        let ts = i64::from_le_bytes(e[0..8].try_into().expect("8 bytes"));
        let offset = u64::from_le_bytes(e[8..16].try_into().expect("8 bytes"));
        let len = u32::from_le_bytes(e[16..20].try_into().expect("4 bytes"));
        (ts, offset, len as usize)
    })
}

/// Blocks per INSERT statement (5 parameters each, well under SQLite's limit).
const BLOCKS_PER_STATEMENT: usize = 500;

async fn insert_blocks(tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>, blocks: Vec<Block>) -> Result<(), sqlx::Error> {
    for chunk in blocks.chunks(BLOCKS_PER_STATEMENT) {
        let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
            "INSERT INTO request_blocks (account_id, file, min_ts, max_ts, entries) ",
        );
        q.push_values(chunk, |mut row, b| {
            row.push_bind(&*b.account_id)
                .push_bind(&*b.file)
                .push_bind(b.min_ts)
                .push_bind(b.max_ts)
                .push_bind(&b.entries);
        });
        // Only the full-size statement is kept prepared: the last chunk of an update has
        // any size, and caching one statement per size grew memory by ~10 MiB over a
        // 20-minute soak.
        let full = chunk.len() == BLOCKS_PER_STATEMENT;
        q.build().persistent(full).execute(&mut **tx).await?;
    }
    Ok(())
}

impl AuditSink {
    /// Creates the directory and index, and starts the writer thread.
    pub async fn start(config: &AuditConfig, metrics: AuditMetrics) -> Result<AuditSink, AuditError> {
        std::fs::create_dir_all(&config.dir).map_err(|e| AuditError::Dir(config.dir.clone(), e))?;
        let (tx, rx) = mpsc::channel(config.queue_capacity);
        let (close_tx, close_rx) = tokio::sync::oneshot::channel();
        let writer_config = config.clone();
        let writer_metrics = metrics.clone();
        let capture = Arc::new(ArcSwap::from_pointee(Capture::of(config)));
        let writer_capture = capture.clone();
        // The writer owns its index pool on its own runtime; the sink reads through a
        // second pool on the caller's runtime.
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let writer = std::thread::Builder::new()
            .name("warden-audit".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("audit runtime");
                rt.block_on(async move {
                    match Writer::open(writer_config, writer_capture, writer_metrics).await {
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
            capture,
            overflow: config.overflow,
            metrics,
            close: Mutex::new(Some(close_tx)),
            writer: Mutex::new(Some(writer)),
            dir: config.dir.clone(),
            index: open_index(&config.dir, true).await?,
        })
    }

    /// Applies a reloaded configuration's capture mode and redaction to the next records.
    pub fn reconfigure(&self, config: &AuditConfig) {
        self.capture.store(Arc::new(Capture::of(config)));
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
    /// One account's traffic per UTC hour from `since_ms` on, oldest first (hours with
    /// no record are left out). Lags the records by at most one flush interval.
    pub async fn account_hours(&self, account_id: &str, since_ms: i64) -> Result<Vec<Hour>, AuditError> {
        let since = since_ms.div_euclid(HOUR_MS) * HOUR_MS;
        let rows = sqlx::query(
            "SELECT hour_ms, requests, refused, prompt_tokens, completion_tokens FROM account_hours
             WHERE account_id = ?1 AND hour_ms >= ?2 ORDER BY hour_ms",
        )
        .bind(account_id)
        .bind(since)
        .fetch_all(&self.index)
        .await?;
        Ok(rows
            .iter()
            .map(|r| Hour {
                hour_ms: r.get(0),
                requests: r.get::<i64, _>(1) as u64,
                refused: r.get::<i64, _>(2) as u64,
                prompt_tokens: r.get::<i64, _>(3) as u64,
                completion_tokens: r.get::<i64, _>(4) as u64,
            })
            .collect())
    }

    pub async fn account_requests(
        &self,
        account_id: &str,
        since_ms: i64,
        limit: i64,
    ) -> Result<Vec<Box<serde_json::value::RawValue>>, AuditError> {
        // Blocks come newest first by their latest record, a page at a time; entries
        // within and across blocks are then put in order. Reading stops once `limit`
        // entries are newer than anything the next block holds.
        const PAGE: i64 = 32;
        let limit = limit.max(0) as usize;
        let mut found: Vec<Located> = Vec::new();
        let newest_first =
            |a: &Located, b: &Located| b.ts.cmp(&a.ts).then(a.block.cmp(&b.block)).then(b.position.cmp(&a.position));
        let mut rank = 0usize;
        // Pages continue after the last block seen (keyset paging: blocks the writer
        // adds meanwhile are newer and do not shift the pages).
        let mut after = (i64::MAX, i64::MAX);
        'pages: loop {
            let rows = sqlx::query(
                "SELECT file, max_ts, entries, rowid FROM request_blocks
                 WHERE account_id = ?1 AND max_ts >= ?2 AND (max_ts < ?3 OR (max_ts = ?3 AND rowid < ?4))
                 ORDER BY max_ts DESC, rowid DESC LIMIT ?5",
            )
            .bind(account_id)
            .bind(since_ms)
            .bind(after.0)
            .bind(after.1)
            .bind(PAGE)
            .fetch_all(&self.index)
            .await?;
            for row in &rows {
                let block_max: i64 = row.get(1);
                after = (block_max, row.get(3));
                if found.len() >= limit {
                    found.sort_unstable_by(newest_first);
                    found.truncate(limit);
                    if found.last().is_some_and(|oldest| oldest.ts > block_max) {
                        break 'pages;
                    }
                }
                let file: Arc<str> = Arc::from(row.get::<String, _>(0));
                let entries: Vec<u8> = row.get(2);
                for (i, (ts, offset, len)) in unpack(&entries).enumerate() {
                    if ts >= since_ms {
                        found.push(Located { ts, block: rank, position: i, file: file.clone(), offset, len });
                    }
                }
                rank += 1;
            }
            if (rows.len() as i64) < PAGE {
                break;
            }
        }
        found.sort_unstable_by(newest_first);
        found.truncate(limit);
        let locations: Vec<(Arc<str>, u64, usize)> = found.into_iter().map(|l| (l.file, l.offset, l.len)).collect();
        let dir = self.dir.clone();
        // Records are handed on as the text the file holds (checked to be one JSON value,
        // not read into a tree): a tree could not hold a body nested deeper than
        // serde_json's recursion limit, and such a record would go missing.
        let records = tokio::task::spawn_blocking(move || -> io::Result<Vec<Box<serde_json::value::RawValue>>> {
            let mut files: HashMap<Arc<str>, Option<File>> = HashMap::new();
            let mut out = Vec::with_capacity(locations.len());
            for (name, offset, len) in locations {
                // A file removed by retention since the query simply yields nothing.
                let file = files.entry(name.clone()).or_insert_with(|| File::open(dir.join(&*name)).ok());
                let Some(file) = file else { continue };
                let mut buf = vec![0u8; len];
                if file.read_exact_at(&mut buf, offset).is_ok() {
                    let Ok(text) = String::from_utf8(buf) else { continue };
                    let text = text.trim_end_matches(['\n', '\r']);
                    match serde_json::value::RawValue::from_string(text.to_string()) {
                        Ok(v) => out.push(v),
                        Err(e) => tracing::warn!(file = %name, offset, error = %e, "unreadable audit record skipped"),
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
    let mut line = Vec::with_capacity(512);
    render_into(event, capture, redact, &mut line);
    line
}

/// [`render`] appending to `out` (the writer reuses one buffer for every record).
///
/// One line of the audit log: design contract 3.5, plus warden's own fields, in a fixed
/// order. The envelope is written field by field (keys are constants); the request body
/// is serialized by serde_json.
pub fn render_into(event: &RequestEvent, capture: CaptureMode, redact: &[regex::Regex], out: &mut Vec<u8>) {
    let mut w = Line(out);
    w.raw(b"{\"ts\":\"");
    w.raw(Timestamp::of(event.ts_ms).as_str().as_bytes());
    w.raw(b"\"");
    w.key("request_id");
    w.str(&event.request_id);
    w.key("account_id");
    w.opt_str(event.account_id.as_deref());
    w.key("key_id");
    w.opt_str(event.key_id.as_deref());
    w.key("client_ip");
    w.ip(&event.client_ip);
    w.key("user_agent");
    w.opt_str(event.user_agent.as_deref());
    w.key("method");
    w.str(event.method.as_str());
    w.key("path");
    w.str(&event.path);
    // The provider API the client spoke; none for a request hyper refused before it had
    // a path.
    if let Some(d) = event.dialect {
        w.key("dialect");
        w.str(d.as_str());
    }
    w.key("model");
    w.opt_str(event.model.as_deref());
    w.key("status");
    w.num(u64::from(event.status));
    w.key("stream");
    w.bool(event.stream);
    w.key("latency_ms");
    w.num(event.latency.as_millis() as u64);
    w.key("usage");
    match event.usage {
        Some(u) => {
            w.raw(b"{\"prompt_tokens\":");
            w.num(u.prompt_tokens);
            w.raw(b",\"completion_tokens\":");
            w.num(u.completion_tokens);
            w.raw(b"}");
        }
        None => w.raw(b"null"),
    }
    if event.usage_estimated {
        w.key("usage_estimated");
        w.bool(true);
    }
    w.key("decision");
    w.str(event.decision.as_str());
    if let Some(reason) = &event.reason {
        w.key("reason");
        w.str(reason);
    }
    w.key("ending");
    w.str(event.ending.as_str());
    match capture {
        CaptureMode::None => {}
        CaptureMode::Hash => {
            if let Some(r) = &event.request {
                w.key("prompt_hash");
                w.str(&short_hash(&r.prompt_text()));
            }
            if let Some(t) = event.completion_text.as_deref().filter(|t| !t.is_empty()) {
                w.key("completion_hash");
                w.str(&short_hash(t));
            }
        }
        CaptureMode::Full => {
            // The event is shared with the detector: borrow it, copy only what redaction
            // rewrites.
            if let Some(r) = &event.request {
                w.key("request_body");
                // The client's bytes, on one line; only redaction needs them decoded.
                // (A body warden accepted is valid UTF-8: the reader refuses any other.)
                if redact.is_empty() {
                    compact_json(&r.raw, w.0);
                } else {
                    match serde_json::from_slice::<Value>(&r.raw) {
                        Ok(mut body) => {
                            redact_value(&mut body, redact);
                            serde_json::to_writer(&mut *w.0, &body).expect("serializing JSON into memory cannot fail");
                        }
                        // Deeper than a tree holds (the reader refuses those too): the
                        // record stays valid without it.
                        Err(_) => w.raw(b"null"),
                    }
                }
            }
            if let Some(t) = event.completion_text.as_deref() {
                w.key("completion_text");
                if redact.is_empty() {
                    w.str(t);
                } else {
                    w.str(&redact_text(t, redact));
                }
                if event.completion_truncated {
                    w.key("completion_truncated");
                    w.bool(true);
                }
            }
        }
    }
    w.raw(b"}\n");
}

/// Appends a valid JSON text without the whitespace between its tokens when it has line
/// breaks (a pretty-printed body would otherwise break the line): a JSONL line holds
/// one record. Inside strings a line break is always escaped, so only whitespace outside
/// strings can break a line.
fn compact_json(json: &[u8], out: &mut Vec<u8>) {
    if memchr::memchr2(b'\n', b'\r', json).is_none() {
        out.extend_from_slice(json);
        return;
    }
    let (mut in_string, mut escaped) = (false, false);
    for &b in json {
        if in_string {
            out.push(b);
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
        } else if !matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
            in_string = b == b'"';
            out.push(b);
        }
    }
}

/// A JSON object being written into a buffer.
struct Line<'a>(&'a mut Vec<u8>);

impl Line<'_> {
    fn raw(&mut self, b: &[u8]) {
        self.0.extend_from_slice(b);
    }
    /// `,"name":` (names are plain ASCII constants: nothing to escape).
    fn key(&mut self, name: &'static str) {
        self.0.extend_from_slice(b",\"");
        self.0.extend_from_slice(name.as_bytes());
        self.0.extend_from_slice(b"\":");
    }
    fn num(&mut self, v: u64) {
        self.0.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
    }
    fn bool(&mut self, v: bool) {
        self.0.extend_from_slice(if v { b"true" } else { b"false" });
    }
    fn opt_str(&mut self, v: Option<&str>) {
        match v {
            Some(s) => self.str(s),
            None => self.0.extend_from_slice(b"null"),
        }
    }
    /// An IP address as a JSON string; IPv4 (the usual case) digit by digit, without
    /// going through `core::fmt` (~1k instructions a record).
    fn ip(&mut self, ip: &std::net::IpAddr) {
        use std::io::Write as _;
        self.0.push(b'"');
        match ip {
            std::net::IpAddr::V4(v4) => {
                for (i, octet) in v4.octets().into_iter().enumerate() {
                    if i > 0 {
                        self.0.push(b'.');
                    }
                    self.0.extend_from_slice(itoa::Buffer::new().format(octet).as_bytes());
                }
            }
            v6 => write!(self.0, "{v6}").expect("writing into memory cannot fail"),
        }
        self.0.push(b'"');
    }
    /// A JSON string, escaped as serde_json escapes: quote, backslash and control
    /// characters; everything else (UTF-8 included) is copied as it is.
    fn str(&mut self, s: &str) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let out = &mut *self.0;
        out.reserve(s.len() + 2);
        out.push(b'"');
        let bytes = s.as_bytes();
        let mut start = 0;
        let mut i = 0;
        while i < bytes.len() {
            // Eight bytes at a time past the (usual) runs with nothing to escape.
            if let Some(word) = bytes.get(i..i + 8) {
                if !needs_escape(u64::from_le_bytes(word.try_into().expect("eight bytes"))) {
                    i += 8;
                    continue;
                }
            }
            let b = bytes[i];
            let esc: &[u8] = match b {
                b'"' => b"\\\"",
                b'\\' => b"\\\\",
                b'\n' => b"\\n",
                b'\r' => b"\\r",
                b'\t' => b"\\t",
                0x08 => b"\\b",
                0x0c => b"\\f",
                0x00..=0x1f => {
                    out.extend_from_slice(&bytes[start..i]);
                    out.extend_from_slice(b"\\u00");
                    out.push(HEX[(b >> 4) as usize]);
                    out.push(HEX[(b & 0xf) as usize]);
                    i += 1;
                    start = i;
                    continue;
                }
                _ => {
                    i += 1;
                    continue;
                }
            };
            out.extend_from_slice(&bytes[start..i]);
            out.extend_from_slice(esc);
            i += 1;
            start = i;
        }
        out.extend_from_slice(&bytes[start..]);
        out.push(b'"');
    }
}

/// Whether any of the eight bytes is a quote, a backslash or a control character (SWAR:
/// a byte's high bit is set in the result when it is zero after the xor, or below 0x20).
fn needs_escape(w: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let below_space = w.wrapping_sub(ONES * 0x20) & !w & HIGH;
    (zero(w ^ (ONES * b'"' as u64)) | zero(w ^ (ONES * b'\\' as u64)) | below_space) != 0
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

/// The parts of the audit configuration a reload may change.
struct Capture {
    mode: CaptureMode,
    redact: Vec<regex::Regex>,
}

impl Capture {
    fn of(config: &AuditConfig) -> Capture {
        Capture { mode: config.capture, redact: config.redact.clone() }
    }
}

struct Writer {
    config: AuditConfig,
    capture: Arc<ArcSwap<Capture>>,
    metrics: AuditMetrics,
    current: Option<OpenFile>,
    /// Written since the last fsync.
    dirty: bool,
    index: SqlitePool,
    /// Records written but not yet in the index; indexed in bulk on each flush tick.
    unindexed: PendingBlocks,
    /// Their hourly counts, added to `account_hours` with them.
    hours: PendingHours,
}

/// How long the writer lets records gather in the queue after writing a batch. Waking
/// once per record costs the request path a thread wake-up per request; a few
/// milliseconds of batching turns that into a few hundred wake-ups a second.
const COALESCE: Duration = Duration::from_millis(5);
/// Index entries gathered before an update is forced between flush ticks.
const MAX_UNINDEXED: usize = 8192;

impl Writer {
    async fn open(
        config: AuditConfig,
        capture: Arc<ArcSwap<Capture>>,
        metrics: AuditMetrics,
    ) -> Result<Writer, AuditError> {
        let index = open_index(&config.dir, false).await?;
        let mut w = Writer {
            config,
            capture,
            metrics,
            current: None,
            dirty: false,
            index,
            unindexed: PendingBlocks::default(),
            hours: PendingHours::default(),
        };
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
        // Files are named by the day they are written (one clock read per batch).
        let today = OffsetDateTime::now_utc().date();
        let mut line = Vec::with_capacity(4096);
        let capture = self.capture.load_full();
        for event in batch.drain(..) {
            line.clear();
            render_into(&event, capture.mode, &capture.redact, &mut line);
            // A failing disk is retried (the queue, and in reject mode admission, hold
            // the line) rather than losing the record.
            let mut attempt = 0u32;
            loop {
                match self.append(&line, today) {
                    Ok((file, offset)) => {
                        written += 1;
                        // Only records with an account can be asked for by account.
                        if let Some(account_id) = &event.account_id {
                            self.unindexed.add(account_id.clone(), file, event.ts_ms, offset, line.len() as u64);
                            self.hours.add(account_id, &event);
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
        if self.unindexed.entries >= MAX_UNINDEXED {
            self.index_pending().await;
        }
    }

    /// Appends one line, rotating by day and size; returns file name and offset.
    fn append(&mut self, line: &[u8], today: time::Date) -> io::Result<(Arc<str>, u64)> {
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

    /// Adds the records written since the last call to the index: one block per account
    /// and file, in one transaction of multi-row INSERTs. Reviewer reads therefore lag the
    /// files by at most one flush interval; a row per record cost more than writing the
    /// records themselves.
    async fn index_pending(&mut self) {
        if self.unindexed.entries == 0 {
            return;
        }
        let blocks = self.unindexed.take();
        let hours = self.hours.take();
        let result: Result<(), sqlx::Error> = async {
            let mut tx = self.index.begin().await?;
            insert_blocks(&mut tx, blocks).await?;
            upsert_hours(&mut tx, hours).await?;
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
        // Hourly counts are kept as long as the records they count.
        let _ = sqlx::query("DELETE FROM account_hours WHERE hour_ms < ?1")
            .bind(cutoff.midnight().assume_utc().unix_timestamp() * 1000)
            .execute(&self.index)
            .await;
        let Ok(entries) = std::fs::read_dir(&self.config.dir) else { return };
        for name in entries.filter_map(|e| e.ok()?.file_name().into_string().ok()) {
            let Some((day, _)) = parse_file_name(&name) else { continue };
            if day >= cutoff {
                continue;
            }
            match std::fs::remove_file(self.config.dir.join(&name)) {
                Ok(()) => {
                    tracing::info!(file = %name, "audit file past retention deleted");
                    let _ = sqlx::query("DELETE FROM request_blocks WHERE file = ?1")
                        .bind(&name)
                        .execute(&self.index)
                        .await;
                }
                Err(e) => tracing::warn!(file = %name, error = %e, "cannot delete audit file past retention"),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// The `[audit]` section.
// ---------------------------------------------------------------------------------------

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

impl AuditConfig {
    /// Validates `[audit]`; the queue must hold a slot for each of the `max_in_flight`
    /// requests (`server.max_in_flight`).
    pub fn from_raw(a: RawAudit, max_in_flight: usize, problems: &mut Vec<String>) -> AuditConfig {
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
        if queue_capacity < max_in_flight {
            problems.push(format!(
                "audit.queue_capacity: {queue_capacity} is below server.max_in_flight ({}): every request in flight reserves a slot",
                max_in_flight
            ));
        }
        AuditConfig {
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
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounting::Usage;

    #[test]
    fn ip_addresses_are_written_as_display_writes_them() {
        for ip in ["0.0.0.0", "255.255.255.255", "10.0.0.1", "203.0.113.7", "::1", "2001:db8::1", "::ffff:1.2.3.4"] {
            let ip: std::net::IpAddr = ip.parse().unwrap();
            let mut out = Vec::new();
            Line(&mut out).ip(&ip);
            assert_eq!(String::from_utf8(out).unwrap(), format!("\"{ip}\""));
        }
    }

    fn event() -> RequestEvent {
        let body = crate::llm::LlmRequest::parse(
            crate::llm::LlmRoute::ChatCompletions,
            br#"{"model":"m","messages":[{"role":"user","content":"my card is 4111-1111-1111-1111, help"}]}"#,
        )
        .unwrap();
        RequestEvent {
            ts_ms: 1_795_000_000_123,
            request_id: "req_1".into(),
            account_id: Some(Arc::from("acme")),
            key_id: Some(Arc::from("key_1")),
            client_ip: "203.0.113.7".parse().unwrap(),
            user_agent: Some("ua".into()),
            method: http::Method::POST,
            path: "/v1/chat/completions".into(),
            dialect: Some(crate::llm::Dialect::OpenAi),
            model: Some("m".into()),
            status: 200,
            stream: true,
            latency: Duration::from_millis(12),
            usage: Some(Usage { prompt_tokens: 3, completion_tokens: 4 }),
            usage_estimated: false,
            decision: crate::events::Decision::Allowed,
            reason: None,
            ending: crate::events::Ending::Complete,
            request: Some(Box::new(body)),
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
    fn a_body_is_copied_as_sent_only_when_it_is_utf8() {
        // Valid UTF-8 (checked once when the body was read): the bytes as sent, on one line.
        let e = event();
        assert!(std::str::from_utf8(&e.request.as_ref().unwrap().raw).is_ok());
        let v = parse(&render(&e, CaptureMode::Full, &[]));
        assert_eq!(v["request_body"]["messages"][0]["content"], "my card is 4111-1111-1111-1111, help");
        // A byte that is not UTF-8, even in a string warden does not read, is refused as
        // serde_json refuses it: no record ever copies bytes that are not JSON text.
        let raw = b"{\"model\":\"m\",\"messages\":[],\"user\":\"\xff\"}";
        let err = crate::llm::LlmRequest::parse(crate::llm::LlmRoute::ChatCompletions, raw).unwrap_err();
        assert_eq!(err.status(), 400);
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
    fn pretty_printed_bodies_are_recorded_on_one_line() {
        let pretty =
            "{\n  \"model\" : \"m\",\r\n\t\"messages\": [ {\"role\": \"user\", \"content\": \"a \\\" \\n b  c\"} ]\n}";
        let mut e = event();
        e.request = Some(Box::new(
            crate::llm::LlmRequest::parse(crate::llm::LlmRoute::ChatCompletions, pretty.as_bytes()).unwrap(),
        ));
        let line = render(&e, CaptureMode::Full, &[]);
        assert_eq!(line.iter().filter(|b| **b == b'\n').count(), 1, "{}", String::from_utf8_lossy(&line));
        let v = parse(&line);
        assert_eq!(v["request_body"], serde_json::from_str::<Value>(pretty).unwrap());
        assert_eq!(v["request_body"]["messages"][0]["content"], "a \" \n b  c", "whitespace in strings is kept");
        // Compact bodies are copied as they came.
        let mut out = Vec::new();
        compact_json(br#"{"a": [1, 2], "b":"x y"}"#, &mut out);
        assert_eq!(out, br#"{"a": [1, 2], "b":"x y"}"#);
    }

    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        for s in ["plain", "quote \" and \\ backslash", "ctl \u{0}\u{1}\u{8}\u{c}\u{1f}\n\r\t", "ünïcödé 😀 \u{7f}", ""]
        {
            let mut out = Vec::new();
            Line(&mut out).str(s);
            assert_eq!(String::from_utf8(out).unwrap(), serde_json::to_string(s).unwrap(), "{s:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn any_string_is_escaped_as_serde_json_escapes_it(
            s in proptest::string::string_regex("(\\PC|[\"\\\\\u{0}-\u{1f}\u{7f}]|[a-z ]{8,20}){0,64}").unwrap()
        ) {
            let mut out = Vec::new();
            Line(&mut out).str(&s);
            proptest::prop_assert_eq!(String::from_utf8(out).unwrap(), serde_json::to_string(&s).unwrap());
        }
    }

    #[test]
    fn records_carry_every_contract_field_in_order() {
        let mut e = event();
        e.reason = Some("policy stripped: logprobs".into());
        e.usage_estimated = true;
        e.completion_truncated = true;
        e.user_agent = None;
        let line = render(&e, CaptureMode::Full, &[]);
        let text = std::str::from_utf8(&line).unwrap();
        let v = parse(&line);
        let keys = [
            "ts",
            "request_id",
            "account_id",
            "key_id",
            "client_ip",
            "user_agent",
            "method",
            "path",
            "dialect",
            "model",
            "status",
            "stream",
            "latency_ms",
            "usage",
            "usage_estimated",
            "decision",
            "reason",
            "ending",
            "request_body",
            "completion_text",
            "completion_truncated",
        ];
        let mut at = 0;
        for k in keys {
            let pos = text[at..].find(&format!("\"{k}\":")).unwrap_or_else(|| panic!("{k} missing or out of order"));
            at += pos;
        }
        assert_eq!(v.as_object().unwrap().len(), keys.len());
        assert_eq!(v["user_agent"], Value::Null);
        assert_eq!(v["client_ip"], "203.0.113.7");
        assert_eq!(v["usage"], serde_json::json!({"prompt_tokens": 3, "completion_tokens": 4}));
        let sent: Value = serde_json::from_slice(&e.request.as_ref().unwrap().raw).unwrap();
        assert_eq!(v["request_body"], sent);
        assert_eq!(v["latency_ms"], 12);
        e.usage = None;
        e.completion_truncated = false;
        let v = parse(&render(&e, CaptureMode::None, &[]));
        assert_eq!(v["usage"], Value::Null);
        assert!(v.get("completion_truncated").is_none() && v.get("request_body").is_none());
    }

    #[test]
    fn timestamps_match_the_calendar() {
        for ms in [0i64, 951_782_400_000, 1_795_000_000_123, 4_102_444_799_999, 1_709_208_000_001, -1] {
            let t = OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000).unwrap();
            let want = format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
                t.year(),
                t.month() as u8,
                t.day(),
                t.hour(),
                t.minute(),
                t.second(),
                t.millisecond()
            );
            assert_eq!(crate::clock::format_ts(ms), want, "{ms}");
        }
    }

    #[test]
    fn file_names_round_trip() {
        let d = time::macros::date!(2026 - 11 - 28);
        assert_eq!(file_name(d, 0), "audit-2026-11-28.jsonl");
        assert_eq!(parse_file_name(&file_name(d, 3)), Some((d, 3)));
        assert_eq!(parse_file_name("audit-2026-11-28.jsonl"), Some((d, 0)));
        assert_eq!(parse_file_name("other.jsonl"), None);
        assert_eq!(crate::clock::parse_time("1000"), Some(1000));
        assert_eq!(crate::clock::parse_time("1970-01-01T00:00:01Z"), Some(1000));
    }
}
