//! Failed authentication, throttled per client address, on both listeners.
//!
//! Keys and admin tokens cannot be guessed, but a client that keeps presenting wrong ones
//! still costs a record, a log line and CPU per attempt, and an admin token may be weaker
//! than warden's keys. Each address (an IPv6 client by its /64, which one host usually
//! holds whole) gets `server.auth_failure_burst` failures at once and
//! `server.auth_failures_per_minute` after that (GCRA, [`governor`]); past it its failed
//! attempts get 429 with `Retry-After` instead of 401.
//!
//! - Proxy: only failures are counted and only failures are refused: a valid key from the
//!   same address (an office behind one NAT) still works, since nothing can be learned
//!   from a 256-bit key's refusal.
//! - Admin: while an address is over its budget, every request that needs the token is
//!   refused, the right token too, so that the budget bounds guesses.
//!
//! One log line when an address starts being throttled and one when its burst is over
//! (with how many attempts were refused), not one per attempt; counters
//! `warden_auth_failures_total{listener}` and `warden_auth_throttled_total{listener}`.
//! Idle addresses are forgotten by [`AuthFailures::housekeeping`], so memory follows the
//! addresses failing now.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

/// The failure budget of one listener.
pub struct AuthFailures {
    listener: &'static str,
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    clock: DefaultClock,
    /// Addresses being throttled now: when it started, refusals since, last refusal.
    bursts: DashMap<IpAddr, Burst>,
    pub failures: Counter,
    pub throttled: Counter,
}

struct Burst {
    started: Instant,
    refused: u64,
    last: Instant,
    /// Until when the address's next attempt would be refused too.
    until: Instant,
}

/// How long an address must stay quiet before its burst counts as over.
const BURST_OVER: Duration = Duration::from_secs(60);

impl AuthFailures {
    pub fn new(listener: &'static str, per_minute: u32, burst: u32) -> AuthFailures {
        let per_minute = NonZeroU32::new(per_minute.max(1)).expect("at least 1");
        let burst = NonZeroU32::new(burst.max(1)).expect("at least 1");
        AuthFailures {
            listener,
            limiter: RateLimiter::keyed(Quota::per_minute(per_minute).allow_burst(burst)),
            clock: DefaultClock::default(),
            bursts: DashMap::new(),
            failures: Counter::default(),
            throttled: Counter::default(),
        }
    }

    /// Counts one failed authentication from `ip`; `Err` (how long to wait) when the
    /// address is over its budget and the attempt is refused.
    pub fn failed(&self, ip: IpAddr) -> Result<(), Duration> {
        self.failures.inc();
        let key = address_key(ip);
        match self.limiter.check_key(&key) {
            Ok(()) => Ok(()),
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.clock.now());
                self.refused(key, wait);
                Err(wait)
            }
        }
    }

    /// Whether `ip` is over its budget now, without counting anything (the admin
    /// listener refuses such an address before it checks the token).
    pub fn over_budget(&self, ip: IpAddr) -> Option<Duration> {
        let key = address_key(ip);
        let wait = self.bursts.get(&key)?.until.checked_duration_since(Instant::now())?;
        self.refused(key, wait);
        Some(wait)
    }

    fn refused(&self, key: IpAddr, wait: Duration) {
        self.throttled.inc();
        let now = Instant::now();
        let mut fresh = false;
        self.bursts
            .entry(key)
            .and_modify(|b| {
                b.refused += 1;
                b.last = now;
                b.until = b.until.max(now + wait);
            })
            .or_insert_with(|| {
                fresh = true;
                Burst { started: now, refused: 1, last: now, until: now + wait }
            });
        if fresh {
            tracing::warn!(
                target: "warden::auth",
                listener = self.listener,
                client = %key,
                "failed authentications over the budget: this address is throttled (429)"
            );
        }
    }

    /// Forgets idle addresses and ends the bursts that are over (logging each). Run
    /// about once a minute.
    pub fn housekeeping(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
        self.bursts.retain(|ip, b| {
            let over = b.last.elapsed() >= BURST_OVER;
            if over {
                tracing::warn!(
                    target: "warden::auth",
                    listener = self.listener,
                    client = %ip,
                    refused = b.refused,
                    lasted_s = b.last.duration_since(b.started).as_secs(),
                    "throttling of failed authentications over"
                );
            }
            !over
        });
    }

    /// Addresses with failure state in memory.
    pub fn tracked(&self) -> usize {
        self.limiter.len()
    }
}

/// The unit a budget belongs to: an IPv4 address, or an IPv6 client's /64.
fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// Counters by listener: one metric family each, so `/metrics` names it once.
type ByListener = Family<Vec<(String, String)>, Counter>;

/// The two listeners' budgets.
pub struct AuthThrottle {
    pub proxy: AuthFailures,
    pub admin: AuthFailures,
    failures: ByListener,
    throttled: ByListener,
}

impl AuthThrottle {
    /// Registers the failed-authentication counters of both listeners (labelled by
    /// listener).
    pub fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register(
            "auth_failures",
            "Failed authentications (unknown key, wrong admin token)",
            self.failures.clone(),
        );
        registry.register(
            "auth_throttled",
            "Failed authentications refused with 429: their address was over its budget",
            self.throttled.clone(),
        );
    }
}

impl AuthThrottle {
    pub fn new(per_minute: u32, burst: u32) -> AuthThrottle {
        let (failures, throttled) = (ByListener::default(), ByListener::default());
        let listener = |name: &'static str| {
            let mut f = AuthFailures::new(name, per_minute, burst);
            // The listener's counters are its family members (a counter's clone shares
            // its value).
            let label = vec![("listener".to_string(), name.to_string())];
            f.failures = failures.get_or_create(&label).clone();
            f.throttled = throttled.get_or_create(&label).clone();
            f
        };
        AuthThrottle { proxy: listener("proxy"), admin: listener("admin"), failures, throttled }
    }

    pub fn housekeeping(&self) {
        self.proxy.housekeeping();
        self.admin.housekeeping();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_gets_its_burst_then_the_rate() {
        let f = AuthFailures::new("proxy", 60, 5);
        let ip: IpAddr = "203.0.113.7".parse().unwrap();
        for _ in 0..5 {
            assert!(f.failed(ip).is_ok());
        }
        let wait = f.failed(ip).unwrap_err();
        assert!(wait <= Duration::from_secs(1), "{wait:?}");
        // Other addresses are not affected.
        assert!(f.failed("203.0.113.8".parse().unwrap()).is_ok());
        assert_eq!(f.failures.get(), 7);
        assert_eq!(f.throttled.get(), 1);
        assert!(f.over_budget(ip).is_some());
        assert!(f.over_budget("203.0.113.8".parse().unwrap()).is_none());
    }

    #[test]
    fn an_ipv6_client_counts_by_its_64() {
        let f = AuthFailures::new("admin", 60, 2);
        assert!(f.failed("2001:db8:1:2::1".parse().unwrap()).is_ok());
        assert!(f.failed("2001:db8:1:2::ffff".parse().unwrap()).is_ok());
        assert!(f.failed("2001:db8:1:2:aaaa::1".parse().unwrap()).is_err());
        assert!(f.failed("2001:db8:1:3::1".parse().unwrap()).is_ok());
        assert_eq!(address_key("::ffff:198.51.100.1".parse().unwrap()), "198.51.100.1".parse::<IpAddr>().unwrap());
    }
}
