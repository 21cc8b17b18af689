//! Limits kept in this process's memory: the default, and the fallback while Redis is
//! unusable.
//!
//! One entry per account holds all of its limit state (rates, quota counters, requests in
//! flight), so checking and reserving every limit of a request happens under one shard
//! lock: all or nothing. Entries of idle accounts (bucket full, nothing in flight, quota
//! counters saved) are evicted by [`LocalLimits::evict_idle`], so memory follows the
//! number of *active* accounts, not the number ever seen. Quota counters survive
//! restarts: they are saved to the store every few seconds and at shutdown, and loaded
//! again the next time the account is seen.

use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;

use super::gcra::Window;
use super::QuotaStore;
use super::{Denial, LimitSpec, Reservation, Slot, Standing, Standings};

#[derive(Debug, Clone)]
struct QuotaCounter {
    window: Window,
    /// [`Window::key`] and [`Window::id`] of the window counted.
    key: i64,
    id: String,
    /// Tokens used and reserved in this window.
    used: u64,
    /// What the store holds.
    saved: u64,
}

#[derive(Debug, Default)]
struct AccountLimits {
    tats: Vec<(Slot, i64)>,
    quotas: Vec<QuotaCounter>,
    /// Reservations not settled yet (an account with any is never evicted).
    in_flight: u64,
    /// Of those, the ones holding a concurrency slot: what `max_concurrent` counts. A
    /// request's slot is reserved on its own, before its body is read, and the rest of
    /// its limits after: only the first counts here.
    slots: u64,
    last_seen: i64,
}

impl AccountLimits {
    fn tat(&self, slot: &Slot) -> i64 {
        self.tats.iter().find(|(s, _)| s == slot).map(|(_, t)| *t).unwrap_or(0)
    }
    fn set_tat(&mut self, slot: &Slot, tat: i64) {
        match self.tats.iter_mut().find(|(s, _)| s == slot) {
            Some(entry) => entry.1 = tat,
            None => self.tats.push((slot.clone(), tat)),
        }
    }
    /// The counter of the window containing `now`, starting a new window at 0.
    fn quota(&mut self, window: Window, now: i64) -> &mut QuotaCounter {
        let key = window.key(now);
        let pos = match self.quotas.iter().position(|q| q.window == window) {
            Some(p) => {
                if self.quotas[p].key != key {
                    self.quotas[p] = QuotaCounter { window, key, id: window.id(now), used: 0, saved: 0 };
                }
                p
            }
            None => {
                self.quotas.push(QuotaCounter { window, key, id: window.id(now), used: 0, saved: 0 });
                self.quotas.len() - 1
            }
        };
        &mut self.quotas[pos]
    }
    fn idle(&self, now: i64, idle_ns: i64) -> bool {
        self.in_flight == 0
            && now - self.last_seen > idle_ns
            && self.tats.iter().all(|(_, t)| *t <= now)
            && self.quotas.iter().all(|q| q.used == q.saved)
    }
}

pub struct LocalLimits {
    // foldhash, not SipHash: hashed two or three times per request.
    accounts: DashMap<Arc<str>, AccountLimits, foldhash::fast::RandomState>,
    /// Where quota counters are saved; `None` in tests of the pure logic.
    store: Option<Arc<dyn QuotaStore>>,
}

impl LocalLimits {
    pub fn new(store: Option<Arc<dyn QuotaStore>>) -> LocalLimits {
        LocalLimits { accounts: DashMap::default(), store }
    }

    /// Accounts with state in memory.
    pub fn len(&self) -> usize {
        self.accounts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.accounts.is_empty()
    }

    /// Loads an account's saved quota counters the first time it is seen (or seen again
    /// after eviction). A store failure counts from zero rather than refusing traffic.
    async fn ensure_loaded(&self, account: &Arc<str>, spec: &LimitSpec, now: i64) {
        if self.accounts.contains_key(account) {
            return;
        }
        let mut state = AccountLimits { last_seen: now, ..Default::default() };
        if let (Some(store), false) = (&self.store, spec.quotas.is_empty()) {
            for (window, _) in &spec.quotas {
                let id = window.id(now);
                let used = match tokio::time::timeout(Duration::from_millis(200), store.quota_used(account, &id)).await
                {
                    Ok(Ok(v)) => v,
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "cannot load quota usage; counting from zero");
                        0
                    }
                    Err(_) => {
                        tracing::warn!("loading quota usage timed out; counting from zero");
                        0
                    }
                };
                state.quotas.push(QuotaCounter { window: *window, key: window.key(now), id, used, saved: used });
            }
        }
        self.accounts.entry(account.clone()).or_insert(state);
    }

    /// Checks and reserves every limit of `spec`, all or nothing.
    pub async fn admit(
        &self,
        account: &Arc<str>,
        spec: &LimitSpec,
        tokens: u64,
        now: i64,
    ) -> Result<Standings, Denial> {
        // An account already in memory (every request but its first): one hash, one shard
        // lock and no clone of its id (whose reference count every worker shares), where
        // looking it up, then taking its entry, took two of each.
        if let Some(mut entry) = self.accounts.get_mut(&**account) {
            return Self::reserve(entry.value_mut(), spec, tokens, now);
        }
        self.ensure_loaded(account, spec, now).await;
        let mut entry = self.accounts.entry(account.clone()).or_default();
        Self::reserve(entry.value_mut(), spec, tokens, now)
    }

    fn reserve(state: &mut AccountLimits, spec: &LimitSpec, tokens: u64, now: i64) -> Result<Standings, Denial> {
        state.last_seen = now;
        if let Some(max) = spec.max_concurrent {
            if state.slots >= max {
                return Err(Denial::Concurrency { limit: max });
            }
        }
        let mut new_tats = smallvec::SmallVec::<[i64; 4]>::new();
        for (slot, rate) in &spec.rates {
            let n = if slot.is_tokens() { tokens } else { 1 };
            match rate.take(state.tat(slot), now, n) {
                Ok(tat) => new_tats.push(tat),
                Err(i64::MAX) => return Err(Denial::TooLarge { slot: slot.clone(), limit: rate.limit, needed: n }),
                Err(wait) => {
                    return Err(Denial::Rate {
                        slot: slot.clone(),
                        limit: rate.limit,
                        retry_after: Duration::from_nanos(wait.max(0) as u64),
                    })
                }
            }
        }
        for (window, limit) in &spec.quotas {
            let q = state.quota(*window, now);
            if q.used.saturating_add(tokens) > *limit {
                return Err(Denial::Quota {
                    window: *window,
                    limit: *limit,
                    retry_after: Duration::from_nanos(window.remaining_ns(now) as u64),
                });
            }
        }
        // Everything fits: reserve.
        for (window, _) in &spec.quotas {
            let q = state.quota(*window, now);
            q.used = q.used.saturating_add(tokens);
        }
        state.in_flight += 1;
        if spec.max_concurrent.is_some() {
            state.slots += 1;
        }
        let mut standings = Standings::default();
        for ((slot, rate), tat) in spec.rates.iter().zip(new_tats) {
            state.set_tat(slot, tat);
            let st = rate.status(tat, now);
            standings.record(slot, Standing { limit: rate.limit, remaining: st.remaining, reset_ns: st.reset_ns });
        }
        Ok(standings)
    }

    /// Settles a reservation: token rates and quotas move by `delta` (used − reserved),
    /// the concurrency slot is freed.
    pub fn settle(&self, r: &Reservation, delta: i64, now: i64) {
        let Some(mut entry) = self.accounts.get_mut(&r.account) else { return };
        let state = entry.value_mut();
        state.in_flight = state.in_flight.saturating_sub(1);
        if r.spec.max_concurrent.is_some() {
            state.slots = state.slots.saturating_sub(1);
        }
        state.last_seen = now;
        if delta != 0 {
            for (slot, rate) in r.spec.rates.iter().filter(|(s, _)| s.is_tokens()) {
                let tat = rate.adjust(state.tat(slot), now, delta);
                state.set_tat(slot, tat);
            }
            for (window, _) in &r.spec.quotas {
                let q = state.quota(*window, now);
                q.used = (q.used as i64 + delta).max(0) as u64;
            }
        }
    }

    /// Tokens used (and reserved) by an account in the window containing `now`.
    pub fn quota_used(&self, account: &str, window: Window, now: i64) -> u64 {
        let id = window.id(now);
        self.accounts
            .get(account)
            .and_then(|s| s.quotas.iter().find(|q| q.window == window && q.id == id).map(|q| q.used))
            .unwrap_or(0)
    }

    /// Saves changed quota counters to the store.
    pub async fn save_quotas(&self) {
        let Some(store) = &self.store else { return };
        let changed: Vec<(Arc<str>, String, u64)> = self
            .accounts
            .iter()
            .flat_map(|e| {
                let account = e.key().clone();
                e.value()
                    .quotas
                    .iter()
                    .filter(|q| q.used != q.saved)
                    .map(|q| (account.clone(), q.id.clone(), q.used))
                    .collect::<Vec<_>>()
            })
            .collect();
        if changed.is_empty() {
            return;
        }
        match store.save_quota_usage(&changed).await {
            Ok(()) => {
                for (account, id, used) in changed {
                    if let Some(mut e) = self.accounts.get_mut(&account) {
                        if let Some(q) = e.quotas.iter_mut().find(|q| q.id == id) {
                            q.saved = used;
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot save quota usage; will retry"),
        }
    }

    /// Drops the state of accounts idle for longer than `idle` whose state is back to
    /// its defaults (full buckets, nothing in flight, counters saved).
    pub fn evict_idle(&self, idle: Duration, now: i64) -> usize {
        let before = self.accounts.len();
        let idle_ns = idle.as_nanos() as i64;
        self.accounts.retain(|_, s| !s.idle(now, idle_ns));
        self.accounts.shrink_to_fit();
        before - self.accounts.len()
    }
}

#[cfg(test)]
mod tests {
    use super::super::gcra::Rate;
    use super::*;

    const SEC: i64 = 1_000_000_000;

    fn spec() -> LimitSpec {
        LimitSpec {
            rates: smallvec::smallvec![
                (Slot::Requests, Rate::per_minute(3, None)),
                (Slot::Tokens, Rate::per_minute(1000, None))
            ],
            max_concurrent: Some(2),
            quotas: smallvec::smallvec![(Window::Day, 1500)],
        }
    }

    fn reservation(account: &Arc<str>, spec: &LimitSpec, tokens: u64) -> Reservation {
        Reservation {
            account: account.clone(),
            request_id: "r".into(),
            spec: spec.clone(),
            tokens,
            shared: false,
            requests: None,
            token_standing: None,
        }
    }

    /// The request path reserves a request's concurrency slot on its own (before the
    /// body) and its rates and quotas after: the second reservation takes no slot.
    #[tokio::test]
    async fn a_slot_reserved_apart_from_the_rest_counts_once() {
        let l = LocalLimits::new(None);
        let a: Arc<str> = Arc::from("acme");
        let slot = LimitSpec { max_concurrent: Some(3), ..LimitSpec::default() };
        let rest = LimitSpec { max_concurrent: None, ..spec() };
        let mut held = Vec::new();
        for _ in 0..3 {
            l.admit(&a, &slot, 0, SEC).await.unwrap();
            held.push(reservation(&a, &slot, 0));
            l.admit(&a, &rest, 10, SEC).await.unwrap();
            held.push(reservation(&a, &rest, 10));
        }
        assert!(matches!(l.admit(&a, &slot, 0, SEC).await, Err(Denial::Concurrency { limit: 3 })));
        for r in &held {
            l.settle(r, 0, SEC);
        }
        assert!(l.admit(&a, &slot, 0, SEC).await.is_ok());
    }

    #[tokio::test]
    async fn an_estimate_past_every_bound_is_refused_not_wrapped() {
        let l = LocalLimits::new(None);
        let a: Arc<str> = Arc::from("acme");
        let only_tokens = LimitSpec {
            rates: smallvec::smallvec![(Slot::Tokens, Rate::per_minute(1000, None))],
            ..LimitSpec::default()
        };
        assert!(matches!(l.admit(&a, &only_tokens, u64::MAX, SEC).await, Err(Denial::TooLarge { .. })));
        let only_quota = LimitSpec { quotas: smallvec::smallvec![(Window::Day, 1500)], ..LimitSpec::default() };
        assert!(matches!(l.admit(&a, &only_quota, u64::MAX, SEC).await, Err(Denial::Quota { .. })));
        l.admit(&a, &only_quota, 1000, SEC).await.unwrap();
        assert!(matches!(l.admit(&a, &only_quota, u64::MAX - 10, SEC).await, Err(Denial::Quota { .. })));
    }

    #[tokio::test]
    async fn all_or_nothing_and_settlement() {
        let l = LocalLimits::new(None);
        let a: Arc<str> = Arc::from("acme");
        let s = spec();
        let now = 1_000 * SEC;
        let st = l.admit(&a, &s, 400, now).await.unwrap();
        assert_eq!(st.requests.unwrap().remaining, 2);
        assert_eq!(st.tokens.unwrap().remaining, 600);
        // Concurrency: a second fits, a third does not.
        l.admit(&a, &s, 100, now).await.unwrap();
        assert_eq!(l.admit(&a, &s, 100, now).await, Err(Denial::Concurrency { limit: 2 }));
        // Settle the first: used 100 of 400 reserved.
        l.settle(&reservation(&a, &s, 400), 100 - 400, now);
        assert_eq!(l.quota_used("acme", Window::Day, now), 200);
        // Tokens: 200 used → 800 left; asking 900 is refused and reserves nothing.
        let d = l.admit(&a, &s, 900, now).await.unwrap_err();
        assert!(matches!(d, Denial::Rate { slot: Slot::Tokens, .. }), "{d:?}");
        assert_eq!(l.quota_used("acme", Window::Day, now), 200);
        let third = l.admit(&a, &s, 100, now).await.unwrap();
        assert_eq!(third.requests.unwrap().remaining, 0);
        l.settle(&reservation(&a, &s, 100), 0, now);
        l.settle(&reservation(&a, &s, 100), 0, now);
        // Requests: 3 per minute are spent.
        let d = l.admit(&a, &s, 1, now).await.unwrap_err();
        assert!(matches!(d, Denial::Rate { slot: Slot::Requests, limit: 3, .. }), "{d:?}");
    }

    #[tokio::test]
    async fn quota_is_enforced_and_resets_with_the_day() {
        let l = LocalLimits::new(None);
        let a: Arc<str> = Arc::from("q");
        let s = LimitSpec { quotas: smallvec::smallvec![(Window::Day, 1000)], ..Default::default() };
        let day1 = 1_798_675_200 * SEC; // 2026-12-31T00:00:00Z
        l.admit(&a, &s, 900, day1).await.unwrap();
        l.settle(&reservation(&a, &s, 900), 0, day1);
        let d = l.admit(&a, &s, 200, day1 + SEC).await.unwrap_err();
        match d {
            Denial::Quota { window: Window::Day, limit: 1000, retry_after } => {
                assert_eq!(retry_after, Duration::from_secs(86_399))
            }
            other => panic!("{other:?}"),
        }
        assert!(l.admit(&a, &s, 200, day1 + 86_400 * SEC).await.is_ok(), "a new day starts from zero");
    }

    #[tokio::test]
    async fn idle_accounts_are_evicted_and_busy_ones_kept() {
        let l = LocalLimits::new(None);
        let s = LimitSpec {
            rates: smallvec::smallvec![(Slot::Requests, Rate::per_minute(60, None))],
            ..Default::default()
        };
        let now = 10_000 * SEC;
        for i in 0..1000 {
            let a: Arc<str> = Arc::from(format!("a{i}"));
            l.admit(&a, &s, 0, now).await.unwrap();
            l.settle(&reservation(&a, &s, 0), 0, now);
        }
        let busy: Arc<str> = Arc::from("a0");
        assert_eq!(l.len(), 1000);
        // Buckets refill after a second; accounts idle for a minute go, the one with a
        // request in flight stays.
        l.admit(&busy, &s, 0, now + 120 * SEC).await.unwrap();
        let evicted = l.evict_idle(Duration::from_secs(60), now + 121 * SEC);
        assert_eq!(evicted, 999);
        assert_eq!(l.len(), 1);
    }
}
