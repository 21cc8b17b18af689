//! Limits shared by every replica through Redis.
//!
//! Admission is one Lua script call (`ADMIT`): it reads Redis's clock, checks every rate
//! (GCRA, the same formulas as [`super::gcra`], in microseconds), the quota counters and
//! the concurrency set, and only if all pass reserves them: one atomic round trip per
//! request. Settlement (`SETTLE`) moves the token rates and quotas by the difference
//! between used and reserved tokens and frees the concurrency slot; it runs in the
//! background after the response.
//!
//! The scripts do as few Redis calls as they can, since each costs Redis a few
//! microseconds inside the script (`INFO commandstats` put `EVALSHA` at ~28 us): all
//! counters are read with one `MGET`; a quota counter's expiry is set only by the call
//! that creates it; expired concurrency leases are swept only when the set is full.
//!
//! Keys are `<prefix>{<account>}:<limit>` (the hash tag keeps one account's keys on one
//! cluster slot) and expire once their state is back to default, so Redis memory follows
//! active accounts too.
//!
//! Every call has a strict timeout, behind a circuit breaker: after `breaker_failures`
//! consecutive failures Redis is not asked again for `breaker_cooldown`; then one probe
//! decides whether it is back. While it is open, [`Outcome::Unusable`] tells the caller
//! to fall back (or refuse, in `fail_closed` mode) at once.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};

use super::gcra::Window;
use super::{Denial, LimitSpec, Reservation, Slot, Standing, Standings};
use crate::settings::{millis, url_setting, EnvLookup};
use serde::Deserialize;

/// Reads Redis's clock; checks every limit; reserves all of them or none.
/// KEYS: rate keys, then quota keys, then (optionally) the concurrency key.
/// ARGV: n_rates, n_quotas, has_conc, member, then per rate (emission_us, tolerance_us,
/// n), per quota (limit, n, ttl_s), then (max_concurrent, lease_ms).
/// Returns {0, remaining, reset_us, ...} or {1 rate denied, index, wait_us}
/// {2 too large, index} {3 quota denied, index} {4 concurrency}.
const ADMIT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local nr, nq, hc = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local member = ARGV[4]
-- Every rate's and quota's state in one read.
local cur = {}
if nr + nq > 0 then cur = redis.call('MGET', unpack(KEYS, 1, nr + nq)) end
local a = 5
local tats = {}
for i = 1, nr do
  local em, tol, n = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  a = a + 3
  if n * em > tol + 0.5 then return {2, i} end
  local tat = tonumber(cur[i] or '0')
  local new_tat = math.max(tat, now) + n * em
  if new_tat - tol > now + 0.5 then return {1, i, math.ceil(new_tat - tol - now)} end
  tats[i] = {new_tat, em, tol}
end
for j = 1, nq do
  local limit, n = tonumber(ARGV[a]), tonumber(ARGV[a + 1])
  a = a + 3
  local used = tonumber(cur[nr + j] or '0')
  if used + n > limit then return {3, j} end
end
local ck = KEYS[nr + nq + 1]
if hc == 1 then
  local max, lease = tonumber(ARGV[a]), tonumber(ARGV[a + 1])
  -- Leases past their end (a replica died mid-request) are swept when they could matter.
  if redis.call('ZCARD', ck) >= max then
    redis.call('ZREMRANGEBYSCORE', ck, '-inf', now / 1000)
    if redis.call('ZCARD', ck) >= max then return {4} end
  end
  redis.call('ZADD', ck, now / 1000 + lease, member)
  redis.call('PEXPIRE', ck, lease)
end
a = 5 + 3 * nr
for j = 1, nq do
  local n, ttl = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  a = a + 3
  -- A counter this call creates gets its expiry; one that exists has it already.
  if redis.call('INCRBY', KEYS[nr + j], n) == n then redis.call('EXPIRE', KEYS[nr + j], ttl) end
end
local out = {0}
for i = 1, nr do
  local new_tat, em, tol = tats[i][1], tats[i][2], tats[i][3]
  redis.call('SET', KEYS[i], string.format('%.0f', new_tat), 'PX', math.max(1, math.ceil((new_tat - now) / 1000)))
  local free = math.max(0, tol - (new_tat - now))
  out[#out + 1] = math.floor(free / em + 1e-9)
  out[#out + 1] = math.ceil(new_tat - now)
end
return out
"#;

/// Moves token rates and quotas by `delta` tokens; frees the concurrency slot.
/// KEYS: token rate keys, quota keys, (optionally) the concurrency key.
/// ARGV: n_rates, n_quotas, has_conc, member, delta, then per rate emission_us, per quota ttl_s.
const SETTLE: &str = r#"
local nr, nq, hc = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local member, delta = ARGV[4], tonumber(ARGV[5])
local a = 6
if delta ~= 0 then
  local now = 0
  if nr > 0 then
    local t = redis.call('TIME')
    now = tonumber(t[1]) * 1000000 + tonumber(t[2])
  end
  for i = 1, nr do
    local em = tonumber(ARGV[a])
    local tat = tonumber(redis.call('GET', KEYS[i]) or '0')
    if delta > 0 then tat = math.max(tat, now) end
    tat = tat + delta * em
    if tat > now then
      redis.call('SET', KEYS[i], string.format('%.0f', tat), 'PX', math.max(1, math.ceil((tat - now) / 1000)))
    else
      redis.call('DEL', KEYS[i])
    end
    a = a + 1
  end
  for j = 1, nq do
    local ttl = tonumber(ARGV[a])
    local v = redis.call('INCRBY', KEYS[nr + j], delta)
    if v < 0 then
      redis.call('SET', KEYS[nr + j], 0, 'EX', ttl)
    elseif v == delta then
      -- The window's counter had expired: this call made it anew.
      redis.call('EXPIRE', KEYS[nr + j], ttl)
    end
    a = a + 1
  end
end
if hc == 1 then redis.call('ZREM', KEYS[nr + nq + 1], member) end
return 1
"#;

/// How long a concurrency slot is held if its replica dies before releasing it.
const LEASE_MS: u64 = 15 * 60 * 1000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureMode {
    FailOpen,
    FailClosed,
}

#[derive(Clone)]
pub struct SharedConfig {
    pub url: String,
    pub timeout: Duration,
    pub failure_mode: FailureMode,
    pub breaker_failures: u32,
    pub breaker_cooldown: Duration,
    pub key_prefix: String,
}

/// The URL may carry a password: it is shown without it.
impl std::fmt::Debug for SharedConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedConfig")
            .field("url", &crate::settings::redacted_url(&self.url))
            .field("timeout", &self.timeout)
            .field("failure_mode", &self.failure_mode)
            .field("breaker_failures", &self.breaker_failures)
            .field("breaker_cooldown", &self.breaker_cooldown)
            .field("key_prefix", &self.key_prefix)
            .finish()
    }
}

/// What Redis decided, or that it could not be asked.
pub enum Outcome {
    Decided(Result<Standings, Denial>),
    Unusable,
}

#[derive(Debug)]
enum BreakerState {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// One probe is in flight; everyone else falls back meanwhile.
    HalfOpen,
}

/// Counters the shared limiter exposes.
#[derive(Clone, Default)]
pub struct SharedMetrics {
    pub up: prometheus_client::metrics::gauge::Gauge,
    pub fallbacks: prometheus_client::metrics::counter::Counter,
    pub errors: prometheus_client::metrics::counter::Counter,
}

impl SharedMetrics {
    pub fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register(
            "redis_up",
            "Whether shared limits are served by Redis (1) or fall back to local limits (0)",
            self.up.clone(),
        );
        registry.register(
            "redis_fallbacks",
            "Admissions decided without Redis (unreachable or breaker open)",
            self.fallbacks.clone(),
        );
        registry.register("redis_errors", "Failed or timed-out Redis calls", self.errors.clone());
    }
}

/// A proxy worker's own connection. It is disposable: any failed or timed-out call drops
/// it (the shared connection, which reconnects by itself, serves until a new one is up).
enum WorkerConn {
    None,
    Connecting,
    /// The last attempt failed; the next one waits until then.
    Failed {
        until: Instant,
    },
    Ready(MultiplexedConnection),
}

/// The connection one call goes through.
enum Conn {
    Shared(ConnectionManager),
    /// A worker's own, and its slot (emptied if the call fails).
    Worker(MultiplexedConnection, Arc<Mutex<WorkerConn>>),
}

impl Conn {
    /// After a failed call: a worker's connection is dropped, to be opened anew.
    fn failed(&self) {
        if let Conn::Worker(_, slot) = self {
            let mut state = slot.lock().expect("redis worker slot");
            if matches!(*state, WorkerConn::Ready(_)) {
                *state = WorkerConn::None;
            }
        }
    }
}

impl redis::aio::ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a redis::Cmd) -> redis::RedisFuture<'a, redis::Value> {
        match self {
            Conn::Shared(c) => c.req_packed_command(cmd),
            Conn::Worker(c, _) => c.req_packed_command(cmd),
        }
    }
    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        match self {
            Conn::Shared(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Worker(c, _) => c.req_packed_commands(cmd, offset, count),
        }
    }
    fn get_db(&self) -> i64 {
        match self {
            Conn::Shared(c) => c.get_db(),
            Conn::Worker(c, _) => c.get_db(),
        }
    }
}

pub struct SharedLimits {
    config: SharedConfig,
    client: redis::Client,
    /// The connection used off the proxy workers, by a worker until its own is up, and
    /// for the circuit breaker's probe.
    conn: Arc<Mutex<Option<ConnectionManager>>>,
    /// One connection per proxy worker, opened on the worker's own event loop: its
    /// replies are read on the thread whose request waits for them. Through the shared
    /// connection, whose reader runs on the main runtime, every call crossed threads
    /// twice (a wake-up each way); perf put ~20% of warden-redis's CPU on that thread.
    workers: Vec<Arc<Mutex<WorkerConn>>>,
    breaker: Mutex<BreakerState>,
    admit: redis::Script,
    settle: Arc<redis::Script>,
    metrics: SharedMetrics,
    settlements_pending: Arc<AtomicU64>,
}

impl SharedLimits {
    /// Starts connecting in the background: warden starts (on local limits) even when
    /// Redis is down, and switches to Redis as soon as it answers.
    pub fn start(config: SharedConfig, metrics: SharedMetrics, workers: usize) -> anyhow::Result<SharedLimits> {
        let client = redis::Client::open(config.url.as_str())?;
        let conn: Arc<Mutex<Option<ConnectionManager>>> = Arc::new(Mutex::new(None));
        let slot = conn.clone();
        let cfg = Self::manager_config(config.timeout);
        metrics.up.set(0);
        let shared_client = client.clone();
        tokio::spawn(async move {
            loop {
                match ConnectionManager::new_with_config(shared_client.clone(), cfg.clone()).await {
                    Ok(c) => {
                        *slot.lock().expect("redis slot") = Some(c);
                        tracing::info!("connected to redis");
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "redis unavailable; using local limits until it answers");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        });
        Ok(SharedLimits {
            config,
            client,
            conn,
            workers: (0..workers).map(|_| Arc::new(Mutex::new(WorkerConn::None))).collect(),
            breaker: Mutex::new(BreakerState::Closed { failures: 0 }),
            admit: redis::Script::new(ADMIT),
            settle: Arc::new(redis::Script::new(SETTLE)),
            metrics,
            settlements_pending: Arc::new(AtomicU64::new(0)),
        })
    }

    pub fn fail_closed(&self) -> bool {
        self.config.failure_mode == FailureMode::FailClosed
    }

    /// True while Redis is being used (breaker closed and connected).
    pub fn healthy(&self) -> bool {
        self.conn.lock().expect("redis slot").is_some()
            && matches!(*self.breaker.lock().expect("breaker"), BreakerState::Closed { .. })
    }

    /// Whether Redis may be called now: `Some(false)` normally, `Some(true)` for the one
    /// probe after a cooldown, `None` while the circuit is open.
    fn allow(&self) -> Option<bool> {
        let mut b = self.breaker.lock().expect("breaker");
        match *b {
            BreakerState::Closed { .. } => Some(false),
            BreakerState::Open { until } if Instant::now() >= until => {
                *b = BreakerState::HalfOpen;
                Some(true)
            }
            _ => None,
        }
    }

    fn record(&self, ok: bool) {
        let mut b = self.breaker.lock().expect("breaker");
        let next = match (&*b, ok) {
            (BreakerState::Closed { .. }, true) => BreakerState::Closed { failures: 0 },
            (_, true) => {
                tracing::info!("redis answers again; shared limits resumed");
                BreakerState::Closed { failures: 0 }
            }
            (BreakerState::Closed { failures }, false) if failures + 1 < self.config.breaker_failures => {
                BreakerState::Closed { failures: failures + 1 }
            }
            (_, false) => {
                // The workers' connections are dropped with the circuit opening: each opens
                // a new one when Redis answers again, instead of finding a dead socket on
                // its first call after the probe through the shared connection succeeded.
                for slot in &self.workers {
                    *slot.lock().expect("redis worker slot") = WorkerConn::None;
                }
                if !matches!(*b, BreakerState::Open { .. }) {
                    tracing::warn!(
                        cooldown_ms = self.config.breaker_cooldown.as_millis() as u64,
                        fail_closed = self.fail_closed(),
                        "redis failing; circuit open, falling back"
                    );
                }
                BreakerState::Open { until: Instant::now() + self.config.breaker_cooldown }
            }
        };
        self.metrics.up.set(matches!(next, BreakerState::Closed { .. }) as i64);
        *b = next;
    }

    fn key(&self, account: &str, what: &str) -> String {
        format!("{}{{{account}}}:{what}", self.config.key_prefix)
    }

    fn slot_key(&self, account: &str, slot: &Slot) -> String {
        match slot {
            Slot::Requests => self.key(account, "rpm"),
            Slot::Tokens => self.key(account, "tpm"),
            Slot::ModelRequests(m) => self.key(account, &format!("rpm:{m}")),
            Slot::ModelTokens(m) => self.key(account, &format!("tpm:{m}")),
        }
    }

    fn quota_key(&self, account: &str, window: Window, now_ns: i64) -> String {
        self.key(account, &format!("q:{}", window.id(now_ns)))
    }

    fn quota_ttl(window: Window) -> u64 {
        match window {
            Window::Day => 2 * 86_400,
            Window::Month => 32 * 86_400,
        }
    }

    /// Opening a connection may take longer than a call: at least 100 ms.
    fn connect_timeout(timeout: Duration) -> Duration {
        timeout.max(Duration::from_millis(100))
    }

    fn manager_config(timeout: Duration) -> ConnectionManagerConfig {
        ConnectionManagerConfig::new()
            .set_connection_timeout(Self::connect_timeout(timeout))
            .set_response_timeout(timeout)
            .set_number_of_retries(2)
            .set_max_delay(1000)
    }

    /// The connection to call Redis through: this proxy worker's own when it is up
    /// (opening it, on this worker's event loop, when it has none), else the shared one.
    fn connection(&self) -> Option<Conn> {
        if let Some(slot) = crate::worker::current().and_then(|w| self.workers.get(w)) {
            let mut state = slot.lock().expect("redis worker slot");
            match &*state {
                WorkerConn::Ready(c) => return Some(Conn::Worker(c.clone(), slot.clone())),
                WorkerConn::Connecting => {}
                WorkerConn::Failed { until } if Instant::now() < *until => {}
                WorkerConn::None | WorkerConn::Failed { .. } => {
                    *state = WorkerConn::Connecting;
                    let (slot, client) = (slot.clone(), self.client.clone());
                    let timeout = self.config.timeout;
                    let cfg = redis::AsyncConnectionConfig::new()
                        .set_connection_timeout(Self::connect_timeout(timeout))
                        .set_response_timeout(timeout);
                    // Spawned here, so on this worker's runtime: the connection's reader
                    // task runs where its callers do.
                    tokio::spawn(async move {
                        let next = match client.get_multiplexed_async_connection_with_config(&cfg).await {
                            Ok(c) => WorkerConn::Ready(c),
                            Err(e) => {
                                tracing::debug!(error = %e, "worker's redis connection failed; retrying in 1 s");
                                WorkerConn::Failed { until: Instant::now() + Duration::from_secs(1) }
                            }
                        };
                        *slot.lock().expect("redis worker slot") = next;
                    });
                }
            }
        }
        self.shared()
    }

    fn shared(&self) -> Option<Conn> {
        self.conn.lock().expect("redis slot").clone().map(Conn::Shared)
    }

    /// One round trip: check and reserve every limit of `spec`.
    pub async fn admit(&self, account: &str, request_id: &str, spec: &LimitSpec, tokens: u64) -> Outcome {
        let Some(probe) = self.allow() else {
            self.metrics.fallbacks.inc();
            return Outcome::Unusable;
        };
        // The probe goes through the shared connection: the circuit closes when the
        // connection every worker falls back on works again, not when one worker's fresh
        // connection does (the others would then call a shared connection still
        // reconnecting, and open the circuit again).
        let conn = if probe { self.shared() } else { self.connection() };
        let Some(mut conn) = conn else {
            if probe {
                // Not connected yet: the probe is not made, and the circuit stays open.
                self.record(false);
            }
            self.metrics.fallbacks.inc();
            return Outcome::Unusable;
        };
        // The window a quota key names is the local clock's; Redis's clock decides the
        // rates. Replicas' clocks differ by far less than a day.
        let now = crate::clock::now_ns();
        let mut inv = self.admit.prepare_invoke();
        for (slot, _) in &spec.rates {
            inv.key(self.slot_key(account, slot));
        }
        for (window, _) in &spec.quotas {
            inv.key(self.quota_key(account, *window, now));
        }
        let has_conc = spec.max_concurrent.is_some();
        inv.key(self.key(account, "conc"));
        inv.arg(spec.rates.len()).arg(spec.quotas.len()).arg(has_conc as u8).arg(request_id);
        for (slot, rate) in &spec.rates {
            let n = if slot.is_tokens() { tokens } else { 1 };
            inv.arg(rate.emission as f64 / 1000.0).arg(rate.tolerance as f64 / 1000.0).arg(n);
        }
        for (window, limit) in &spec.quotas {
            inv.arg(*limit).arg(tokens).arg(Self::quota_ttl(*window));
        }
        if let Some(max) = spec.max_concurrent {
            inv.arg(max).arg(LEASE_MS);
        }
        let reply: Result<Result<Vec<i64>, redis::RedisError>, _> =
            tokio::time::timeout(self.config.timeout, inv.invoke_async(&mut conn)).await;
        let values = match reply {
            Ok(Ok(v)) => {
                self.record(true);
                v
            }
            failed => {
                match failed {
                    Ok(Err(e)) => tracing::debug!(error = %e, "redis admit failed"),
                    _ => tracing::debug!("redis admit timed out"),
                }
                conn.failed();
                self.metrics.errors.inc();
                self.metrics.fallbacks.inc();
                self.record(false);
                return Outcome::Unusable;
            }
        };
        Outcome::Decided(decode_admit(&values, spec, tokens, now))
    }

    /// Settles in the background (bounded by the timeout); failures only leave the
    /// reservation in place until its keys expire.
    pub fn settle(&self, r: Reservation, delta: i64) {
        if delta == 0 && r.spec.max_concurrent.is_none() {
            // The estimate was exact and no slot is held: nothing to move.
            return;
        }
        // Outside a runtime (a request dropped as its worker's runtime is torn down at the
        // end of shutdown) nothing can run it: the reservation expires with its keys.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let Some(mut conn) = self.connection() else { return };
        let now = crate::clock::now_ns();
        let token_rates: Vec<_> = r.spec.rates.iter().filter(|(s, _)| s.is_tokens()).collect();
        let mut keys: Vec<String> = token_rates.iter().map(|(slot, _)| self.slot_key(&r.account, slot)).collect();
        keys.extend(r.spec.quotas.iter().map(|(w, _)| self.quota_key(&r.account, *w, now)));
        keys.push(self.key(&r.account, "conc"));
        let mut args: Vec<String> = vec![
            token_rates.len().to_string(),
            r.spec.quotas.len().to_string(),
            (r.spec.max_concurrent.is_some() as u8).to_string(),
            r.request_id.to_string(),
            delta.to_string(),
        ];
        args.extend(token_rates.iter().map(|(_, rate)| (rate.emission as f64 / 1000.0).to_string()));
        args.extend(r.spec.quotas.iter().map(|(w, _)| Self::quota_ttl(*w).to_string()));
        let script = self.settle.clone();
        let timeout = self.config.timeout * 4;
        let errors = self.metrics.errors.clone();
        let pending = self.settlements_pending.clone();
        pending.fetch_add(1, Ordering::Relaxed);
        runtime.spawn(async move {
            let mut inv = script.prepare_invoke();
            for k in &keys {
                inv.key(k);
            }
            for a in &args {
                inv.arg(a);
            }
            let res: Result<Result<i64, redis::RedisError>, _> =
                tokio::time::timeout(timeout, inv.invoke_async(&mut conn)).await;
            if !matches!(res, Ok(Ok(_))) {
                conn.failed();
                errors.inc();
                tracing::debug!("redis settlement failed; the reservation expires with its keys");
            }
            pending.fetch_sub(1, Ordering::Relaxed);
        });
    }

    /// Settlements still running (shutdown waits for them briefly).
    pub fn pending(&self) -> u64 {
        self.settlements_pending.load(Ordering::Relaxed)
    }
}

fn decode_admit(v: &[i64], spec: &LimitSpec, tokens: u64, now_ns: i64) -> Result<Standings, Denial> {
    let index = |i: usize| v.get(i).copied().unwrap_or(1).max(1) as usize - 1;
    match v.first().copied() {
        Some(0) => {
            let mut standings = Standings::default();
            for (i, (slot, rate)) in spec.rates.iter().enumerate() {
                let remaining = v.get(1 + 2 * i).copied().unwrap_or(0).max(0) as u64;
                let reset_us = v.get(2 + 2 * i).copied().unwrap_or(0).max(0);
                standings.record(slot, Standing { limit: rate.limit, remaining, reset_ns: reset_us * 1000 });
            }
            Ok(standings)
        }
        Some(1) => {
            let (slot, rate) = &spec.rates[index(1).min(spec.rates.len() - 1)];
            let wait_us = v.get(2).copied().unwrap_or(1_000_000).max(0) as u64;
            Err(Denial::Rate { slot: slot.clone(), limit: rate.limit, retry_after: Duration::from_micros(wait_us) })
        }
        Some(2) => {
            let (slot, rate) = &spec.rates[index(1).min(spec.rates.len() - 1)];
            let needed = if slot.is_tokens() { tokens } else { 1 };
            Err(Denial::TooLarge { slot: slot.clone(), limit: rate.limit, needed })
        }
        Some(3) => {
            let (window, limit) = spec.quotas[index(1).min(spec.quotas.len() - 1)];
            Err(Denial::Quota { window, limit, retry_after: Duration::from_nanos(window.remaining_ns(now_ns) as u64) })
        }
        _ => Err(Denial::Concurrency { limit: spec.max_concurrent.unwrap_or(0) }),
    }
}

// ---------------------------------------------------------------------------------------
// The `[redis]` section.
// ---------------------------------------------------------------------------------------

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

impl SharedConfig {
    /// Validates `[redis]` (the URL, or the environment variable holding it).
    pub fn from_raw(r: RawRedis, env: EnvLookup<'_>, problems: &mut Vec<String>) -> SharedConfig {
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
    }
}
