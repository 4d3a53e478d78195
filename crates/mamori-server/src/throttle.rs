//! Per-source throttling of authentication attempts (`POST /api/v1/auth/login` and
//! `POST /api/v1/auth/totp/confirm`), in memory, before any password or code is looked at.
//!
//! Measures: 000-8-access-11 (detect and block suspected unauthorised access), alongside the
//! account lockout of 001-20-tech-1-5: the lockout stops guessing one account's password,
//! the throttle stops one address from guessing many accounts' (password spraying) and from
//! spending the server's Argon2 time.
//!
//! Choices written down here:
//! - A small GCRA token bucket rather than the `governor` crate: governor's keyed limiter has
//!   no bound on the number of keys (only a sweep of idle ones), brings its own clock
//!   (quanta), dashmap and futures, and we need neither; what we need fits in this file and
//!   takes the time as an argument, so tests need no sleeping.
//! - The key is the IPv4 address, or the IPv6 /64 (one host usually owns a whole /64, so a
//!   per-address key would be no limit at all). IPv4-mapped IPv6 addresses count as IPv4.
//! - Memory is bounded: at most `max_sources` addresses are tracked. When the table is full,
//!   entries that carry no state (bucket full again) are dropped, then the one closest to
//!   full; so an attacker spraying addresses costs at most that table and loses only the
//!   state of the least-throttled address.
//! - Every attempt counts, successful or not: the limit is on attempts, and it is far above
//!   what a person types.
//! - Refusals are recorded in the audit log, but at most once a minute per address: a
//!   refusal must stay cheap, and a flood must not become a flood of audit events. Each
//!   record carries how many attempts were refused since the previous one; every refusal is
//!   also counted in `/metrics`, as a 429 of its route in `mamori_http_requests_total`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// At most one audit record of refusals per source address in this period.
const RECORD_EVERY: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThrottleConfig {
    /// Sustained attempts per minute per source; 0 switches the throttle off.
    pub per_minute: u32,
    /// Attempts a source may make at once before the rate applies.
    pub burst: u32,
    /// Most source addresses tracked at once.
    pub max_sources: usize,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        Self { per_minute: 10, burst: 10, max_sources: 10_000 }
    }
}

/// What to do with one attempt.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Refuse {
        /// When the next attempt from this source will be allowed.
        retry_after: Duration,
        /// `Some(n)`: record this refusal in the audit log, as `n` refusals since the last record.
        record: Option<u64>,
    },
}

#[derive(Debug)]
pub struct LoginThrottle {
    config: ThrottleConfig,
    /// Time between two attempts at the sustained rate.
    interval: Duration,
    /// How far ahead of now a source's bucket may run before it is refused (the burst).
    tolerance: Duration,
    sources: Mutex<HashMap<IpAddr, Entry>>,
}

#[derive(Debug)]
struct Entry {
    /// The GCRA's "theoretical arrival time": the bucket is full again at this instant.
    full_at: Instant,
    refused_since_record: u64,
    recorded_at: Option<Instant>,
}

impl LoginThrottle {
    pub fn new(config: ThrottleConfig) -> Self {
        let interval = Duration::from_secs(60) / config.per_minute.max(1);
        let tolerance = interval * config.burst.max(1).saturating_sub(1);
        Self { config, interval, tolerance, sources: Mutex::new(HashMap::new()) }
    }

    /// Takes one attempt from `source`'s bucket at `now`.
    pub fn check(&self, source: IpAddr, now: Instant) -> Verdict {
        if self.config.per_minute == 0 {
            return Verdict::Allow;
        }
        let key = source_key(source);
        // A poisoned lock only means another request panicked mid-update; the table is
        // still a valid table.
        let mut sources = self.sources.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if !sources.contains_key(&key) && sources.len() >= self.config.max_sources.max(1) {
            make_room(&mut sources, now, self.config.max_sources.max(1));
        }
        let entry = sources.entry(key).or_insert(Entry { full_at: now, refused_since_record: 0, recorded_at: None });
        let full_at = entry.full_at.max(now);
        let ahead = full_at - now;
        if ahead <= self.tolerance {
            entry.full_at = full_at + self.interval;
            return Verdict::Allow;
        }
        entry.refused_since_record += 1;
        let record = if entry.recorded_at.is_none_or(|t| now.saturating_duration_since(t) >= RECORD_EVERY) {
            entry.recorded_at = Some(now);
            Some(std::mem::take(&mut entry.refused_since_record))
        } else {
            None
        };
        Verdict::Refuse { retry_after: ahead - self.tolerance, record }
    }

    /// Source addresses tracked now (for tests).
    pub fn tracked(&self) -> usize {
        self.sources.lock().unwrap_or_else(std::sync::PoisonError::into_inner).len()
    }
}

/// Drops entries whose bucket is full again (they carry nothing); if none is, the one that
/// will be full soonest.
fn make_room(sources: &mut HashMap<IpAddr, Entry>, now: Instant, cap: usize) {
    sources.retain(|_, e| e.full_at > now);
    if sources.len() >= cap
        && let Some(key) = sources.iter().min_by_key(|(_, e)| e.full_at).map(|(k, _)| *k)
    {
        sources.remove(&key);
    }
}

/// The unit of throttling: an IPv4 address, or an IPv6 /64.
fn source_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
    }
}

/// `Retry-After` in whole seconds, rounded up, at least 1.
pub fn retry_after_seconds(d: Duration) -> u64 {
    (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn throttle(per_minute: u32, burst: u32, max_sources: usize) -> LoginThrottle {
        LoginThrottle::new(ThrottleConfig { per_minute, burst, max_sources })
    }

    #[test]
    fn burst_then_refusal_then_refill() {
        let t = throttle(10, 10, 100);
        let start = Instant::now();
        for i in 0..10 {
            assert_eq!(t.check(ip("192.0.2.1"), start), Verdict::Allow, "attempt {i}");
        }
        let Verdict::Refuse { retry_after, record } = t.check(ip("192.0.2.1"), start) else { panic!("11th allowed") };
        assert_eq!((retry_after, record), (Duration::from_secs(6), Some(1)));
        // Another source is untouched.
        assert_eq!(t.check(ip("192.0.2.2"), start), Verdict::Allow);
        // One token every 6 s.
        assert!(matches!(t.check(ip("192.0.2.1"), start + Duration::from_secs(5)), Verdict::Refuse { .. }));
        assert_eq!(t.check(ip("192.0.2.1"), start + Duration::from_secs(6)), Verdict::Allow);
        assert!(matches!(t.check(ip("192.0.2.1"), start + Duration::from_secs(6)), Verdict::Refuse { .. }));
        // A minute of quiet fills the bucket again.
        let later = start + Duration::from_secs(6 + 60);
        for _ in 0..10 {
            assert_eq!(t.check(ip("192.0.2.1"), later), Verdict::Allow);
        }
    }

    #[test]
    fn refusals_are_recorded_at_most_once_a_minute_with_a_count() {
        let t = throttle(1, 1, 100);
        let start = Instant::now();
        assert_eq!(t.check(ip("192.0.2.9"), start), Verdict::Allow);
        let records: Vec<Option<u64>> = (0..5)
            .map(|s| match t.check(ip("192.0.2.9"), start + Duration::from_secs(s)) {
                Verdict::Refuse { record, .. } => record,
                Verdict::Allow => panic!("allowed"),
            })
            .collect();
        assert_eq!(records, [Some(1), None, None, None, None]);
        // A minute later one attempt is allowed; the next refusal carries the count.
        assert_eq!(t.check(ip("192.0.2.9"), start + Duration::from_secs(60)), Verdict::Allow);
        let Verdict::Refuse { record, .. } = t.check(ip("192.0.2.9"), start + Duration::from_secs(61)) else {
            panic!("allowed")
        };
        assert_eq!(record, Some(5), "four unrecorded refusals and this one");
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        let t = throttle(60, 2, 100);
        let now = Instant::now();
        assert_eq!(t.check(ip("2001:db8:1:2::1"), now), Verdict::Allow);
        assert_eq!(t.check(ip("2001:db8:1:2:ffff::9"), now), Verdict::Allow);
        assert!(matches!(t.check(ip("2001:db8:1:2:abcd::1"), now), Verdict::Refuse { .. }), "same /64");
        assert_eq!(t.check(ip("2001:db8:1:3::1"), now), Verdict::Allow, "another /64");
        assert_eq!(t.check(ip("198.51.100.7"), now), Verdict::Allow);
        assert_eq!(t.check(ip("::ffff:198.51.100.7"), now), Verdict::Allow);
        assert!(matches!(t.check(ip("198.51.100.7"), now), Verdict::Refuse { .. }), "mapped is the same source");
    }

    /// An attacker spraying addresses cannot grow the table past its cap, and a throttled
    /// address keeps its state while idle ones make way.
    #[test]
    fn address_spraying_is_bounded() {
        let t = throttle(10, 2, 50);
        let start = Instant::now();
        for _ in 0..3 {
            t.check(ip("203.0.113.1"), start);
        }
        // 10,000 addresses within one second.
        for i in 0..10_000u32 {
            let sprayed = IpAddr::V4(std::net::Ipv4Addr::from(0x0A00_0000 + i));
            t.check(sprayed, start + Duration::from_micros(100 * u64::from(i)));
            assert!(t.tracked() <= 50);
        }
        assert!(
            matches!(t.check(ip("203.0.113.1"), start + Duration::from_secs(1)), Verdict::Refuse { .. }),
            "the throttled address was not the one evicted"
        );
    }

    #[test]
    fn zero_switches_it_off_and_retry_after_rounds_up() {
        let t = throttle(0, 1, 1);
        let now = Instant::now();
        assert!((0..100).all(|_| t.check(ip("192.0.2.1"), now) == Verdict::Allow));
        assert_eq!(t.tracked(), 0);
        assert_eq!(retry_after_seconds(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_seconds(Duration::from_millis(6001)), 7);
        assert_eq!(retry_after_seconds(Duration::ZERO), 1);
    }
}
