//! The arithmetic of limits, as pure functions of explicit time (nanoseconds since the
//! Unix epoch): GCRA for rates, calendar windows for quotas. The same formulas run in the
//! Redis script (`redis.rs`), so local and shared limits behave identically.
//!
//! GCRA keeps one number per limited key, the *theoretical arrival time* (TAT). Taking
//! `n` units moves it `n × emission` later; the request is admitted while the TAT stays
//! within `tolerance` (the limit's capacity) of now. Giving units back moves it earlier,
//! which is how a token reservation is reconciled with what a response really used.

use time::{Date, Month, OffsetDateTime};

pub const NANOS_PER_MINUTE: i64 = 60_000_000_000;

/// A rate of `limit` units per minute, with a capacity (burst) of `burst` units. Integer
/// nanoseconds throughout, so standings are exact.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rate {
    /// Nanoseconds one unit occupies.
    pub emission: i64,
    /// How far the TAT may run ahead of now: `burst × emission`.
    pub tolerance: i64,
    pub limit: u64,
}

/// Where a rate stands after a decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateStatus {
    pub remaining: u64,
    /// Nanoseconds until the full capacity is available again.
    pub reset_ns: i64,
}

impl Rate {
    /// `limit` per minute; the whole minute's worth may be used at once unless `burst`
    /// says otherwise.
    pub fn per_minute(limit: u64, burst: Option<u64>) -> Rate {
        let limit = limit.max(1);
        let emission = (NANOS_PER_MINUTE as f64 / limit as f64).round().max(1.0) as i64;
        let burst = burst.unwrap_or(limit).max(1);
        Rate { emission, tolerance: emission.saturating_mul(burst as i64), limit }
    }

    pub fn capacity(&self) -> u64 {
        (self.tolerance / self.emission) as u64
    }

    /// Tries to take `n` units at `now`. `Ok(new_tat)` admits; `Err(wait_ns)` says how
    /// long until it would be admitted (`i64::MAX` if `n` exceeds the capacity).
    pub fn take(&self, tat: i64, now: i64, n: u64) -> Result<i64, i64> {
        // An estimate past i64 (a `max_tokens` of 1e30) costs the most there is, not a
        // negative amount.
        let cost = i64::try_from(n).unwrap_or(i64::MAX).saturating_mul(self.emission);
        if cost > self.tolerance {
            return Err(i64::MAX);
        }
        let new_tat = tat.max(now).saturating_add(cost);
        let allow_at = new_tat - self.tolerance;
        if allow_at <= now {
            Ok(new_tat)
        } else {
            Err(allow_at - now)
        }
    }

    /// Moves the TAT by `delta` units: negative gives back, positive charges more (a
    /// response that used more than was reserved may push the TAT past the tolerance;
    /// the account then waits before its next request).
    pub fn adjust(&self, tat: i64, now: i64, delta: i64) -> i64 {
        let base = if delta > 0 { tat.max(now) } else { tat };
        base.saturating_add(delta.saturating_mul(self.emission))
    }

    pub fn status(&self, tat: i64, now: i64) -> RateStatus {
        let ahead = (tat - now).max(0);
        let free = (self.tolerance - ahead).max(0);
        RateStatus { remaining: (free / self.emission) as u64, reset_ns: ahead }
    }
}

/// A UTC calendar window: the day or the month a timestamp falls in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Window {
    Day,
    Month,
}

fn at(now_ns: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(now_ns as i128).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

impl Window {
    /// A stable id of the window containing `now_ns`: `2026-11-28` or `2026-11`.
    pub fn id(self, now_ns: i64) -> String {
        let d = at(now_ns).date();
        match self {
            Window::Day => format!("{:04}-{:02}-{:02}", d.year(), d.month() as u8, d.day()),
            Window::Month => format!("{:04}-{:02}", d.year(), d.month() as u8),
        }
    }

    /// A number that changes exactly when [`Window::id`] does, computed without
    /// formatting: checked on every request, the id string only when a window turns.
    pub fn key(self, now_ns: i64) -> i64 {
        match self {
            Window::Day => now_ns.div_euclid(86_400_000_000_000),
            Window::Month => {
                let d = at(now_ns).date();
                i64::from(d.year()) * 12 + i64::from(d.month() as u8)
            }
        }
    }

    /// Nanoseconds from `now_ns` to the start of the next window.
    pub fn remaining_ns(self, now_ns: i64) -> i64 {
        let d = at(now_ns).date();
        let next: Date = match self {
            Window::Day => d.next_day().unwrap_or(d),
            Window::Month => {
                let (y, m) = if d.month() == Month::December {
                    (d.year() + 1, Month::January)
                } else {
                    (d.year(), d.month().next())
                };
                Date::from_calendar_date(y, m, 1).unwrap_or(d)
            }
        };
        let start = next.midnight().assume_utc().unix_timestamp_nanos() as i64;
        (start - now_ns).max(1)
    }

    pub fn label(self) -> &'static str {
        match self {
            Window::Day => "daily",
            Window::Month => "monthly",
        }
    }
}

/// Formats a duration the way OpenAI's `x-ratelimit-reset-*` headers do: `20ms`, `1s`,
/// `6m0s`, `1h2m3s`.
pub fn reset_header(ns: i64) -> String {
    ResetText::of(ns).as_str().to_owned()
}

/// [`reset_header`] without allocating (it goes into a response header per request).
pub struct ResetText {
    buf: [u8; 48],
    len: usize,
}

impl ResetText {
    pub fn of(ns: i64) -> ResetText {
        let mut out = ResetText { buf: [0; 48], len: 0 };
        let ms = (ns.max(0) + 999_999) / 1_000_000;
        if ms < 1000 {
            out.push(ms, b"ms");
            return out;
        }
        let s = (ms + 999) / 1000;
        let (h, m, s) = (s / 3600, (s % 3600) / 60, s % 60);
        if h > 0 {
            out.push(h, b"h");
        }
        if h > 0 || m > 0 {
            out.push(m, b"m");
        }
        out.push(s, b"s");
        out
    }

    fn push(&mut self, v: i64, unit: &[u8]) {
        for part in [itoa::Buffer::new().format(v).as_bytes(), unit] {
            self.buf[self.len..self.len + part.len()].copy_from_slice(part);
            self.len += part.len();
        }
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[..self.len]).expect("digits and unit letters are ASCII")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: i64 = 1_000_000_000;

    #[test]
    fn a_minute_of_capacity_then_one_per_emission() {
        let r = Rate::per_minute(60, None);
        let mut tat = 0;
        let now = 1_000 * SEC;
        for _ in 0..60 {
            tat = r.take(tat, now, 1).expect("within capacity");
        }
        let wait = r.take(tat, now, 1).unwrap_err();
        assert_eq!(wait, SEC, "one unit frees up every second");
        assert!(r.take(tat, now + SEC, 1).is_ok());
        assert_eq!(r.status(tat, now).remaining, 0);
        assert_eq!(r.status(tat, now).reset_ns, 60 * SEC);
    }

    #[test]
    fn burst_limits_what_can_be_taken_at_once() {
        let r = Rate::per_minute(600, Some(5));
        let mut tat = 0;
        let now = 10 * SEC;
        for _ in 0..5 {
            tat = r.take(tat, now, 1).unwrap();
        }
        assert_eq!(r.take(tat, now, 1), Err(SEC / 10));
    }

    #[test]
    fn requests_larger_than_capacity_never_fit() {
        let r = Rate::per_minute(1000, None);
        assert_eq!(r.take(0, SEC, 1001), Err(i64::MAX));
        assert!(r.take(0, SEC, 1000).is_ok());
    }

    #[test]
    fn reservations_are_reconciled_both_ways() {
        let r = Rate::per_minute(1000, None);
        let now = 100 * SEC;
        // Reserve 500, use 200: 300 come back.
        let tat = r.take(0, now, 500).unwrap();
        let tat = r.adjust(tat, now, 200 - 500);
        assert_eq!(r.status(tat, now).remaining, 800);
        // Reserve 100, use 400: the extra 300 are charged.
        let tat = r.take(tat, now, 100).unwrap();
        let tat = r.adjust(tat, now, 400 - 100);
        assert_eq!(r.status(tat, now).remaining, 400);
    }

    #[test]
    fn a_concurrent_burst_cannot_overshoot() {
        // Many reservations at the same instant: admitted ones never exceed the limit.
        let r = Rate::per_minute(10_000, None);
        let now = 5 * SEC;
        let (mut tat, mut admitted) = (0, 0u64);
        for _ in 0..100 {
            if let Ok(t) = r.take(tat, now, 300) {
                tat = t;
                admitted += 300;
            }
        }
        assert!(admitted <= 10_000, "{admitted}");
        assert!(admitted > 10_000 - 300);
    }

    #[test]
    fn calendar_windows_are_utc_days_and_months() {
        // 2026-12-31T23:59:59Z
        let t = 1_798_761_599 * SEC;
        assert_eq!(Window::Day.id(t), "2026-12-31");
        assert_eq!(Window::Month.id(t), "2026-12");
        assert_eq!(Window::Day.remaining_ns(t), SEC);
        assert_eq!(Window::Month.remaining_ns(t), SEC);
        assert_eq!(Window::Day.id(t + SEC), "2027-01-01");
        assert_eq!(Window::Month.id(t + SEC), "2027-01");
        // Mid-month: 2026-02-10T00:00:00Z → 19 days to March.
        let feb10 = 1_770_681_600 * SEC;
        assert_eq!(Window::Month.id(feb10), "2026-02");
        assert_eq!(Window::Month.remaining_ns(feb10), 19 * 86_400 * SEC);
    }

    #[test]
    fn window_keys_change_exactly_when_ids_do() {
        // Every hour from 2024-12-30 to 2027-03-01, across month, year and leap-day turns.
        let start = 1_735_516_800 * SEC;
        let hour = 3_600 * SEC;
        for window in [Window::Day, Window::Month] {
            let (mut key, mut id) = (window.key(start), window.id(start));
            for h in 1..(800 * 24) {
                let t = start + h * hour;
                let (k, i) = (window.key(t), window.id(t));
                assert_eq!(k != key, i != id, "{window:?} at {i}");
                (key, id) = (k, i);
            }
        }
    }

    #[test]
    fn reset_headers_look_like_openai() {
        assert_eq!(reset_header(20_000_000), "20ms");
        assert_eq!(reset_header(SEC), "1s");
        assert_eq!(reset_header(360 * SEC), "6m0s");
        assert_eq!(reset_header(3723 * SEC), "1h2m3s");
        assert_eq!(reset_header(0), "0ms");
        assert_eq!(reset_header(3600 * SEC), "1h0m0s");
        assert_eq!(reset_header(999 * 1_000_000), "999ms");
        assert_eq!(reset_header(1_000_000_001), "2s");
    }
}
