//! Time and ids, a leaf (imports nothing of warden): the clock read once per use, random
//! ids, RFC 3339 formatting (the audit writer's allocation-free one and the API's) and the
//! one parser of times that records, queries and the backtest reader share.

use rand::RngCore;

/// Nanoseconds since the Unix epoch (0 for a clock set before it).
pub fn now_ns() -> i64 {
    // Straight from the clock: `OffsetDateTime::now_utc` works out the calendar date and
    // time of day, which `unix_timestamp_nanos` then undoes, on every request.
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64)
}

/// Milliseconds since the Unix epoch.
pub fn now_millis() -> i64 {
    now_ns() / 1_000_000
}

/// `<prefix>_` and `N` random bytes in hex (ids of records and of requests; the
/// request path makes one per request, hence no formatting machinery).
pub fn random_id<const N: usize>(prefix: &str) -> String {
    with_random_id::<N, _>(prefix, str::to_owned)
}

/// [`random_id`] lent to `f` from a buffer on the stack, for callers that keep it in
/// another form (an `Arc<str>` per request).
pub fn with_random_id<const N: usize, R>(prefix: &str, f: impl FnOnce(&str) -> R) -> R {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut b = [0u8; N];
    rand::thread_rng().fill_bytes(&mut b);
    let mut buf = [0u8; 64];
    let len = prefix.len() + 1 + 2 * N;
    assert!(len <= buf.len(), "ids are short");
    buf[..prefix.len()].copy_from_slice(prefix.as_bytes());
    buf[prefix.len()] = b'_';
    for (pair, x) in buf[prefix.len() + 1..len].chunks_exact_mut(2).zip(b) {
        pair[0] = HEX[(x >> 4) as usize];
        pair[1] = HEX[(x & 0xf) as usize];
    }
    f(std::str::from_utf8(&buf[..len]).expect("a str prefix and hex digits"))
}

/// `ms` (Unix milliseconds, UTC) as RFC 3339 the way the `time` crate writes it:
/// fractional seconds only when there are any (`2026-11-18T11:06:40.123Z`,
/// `2026-11-18T11:06:40Z`). Alerts and the admin API use it.
pub fn rfc3339_millis(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

/// A time as records, queries and alerts write it: RFC 3339 (any offset, any fraction,
/// truncated to the millisecond) or Unix milliseconds; `None` for anything else.
pub fn parse_time(s: &str) -> Option<i64> {
    if let Ok(ms) = s.parse::<i64>() {
        return Some(ms);
    }
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    Some((t.unix_timestamp_nanos() / 1_000_000) as i64)
}

/// `ms` (Unix milliseconds, UTC) as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn format_ts(ms: i64) -> String {
    String::from(Timestamp::of(ms).as_str())
}

/// An audit timestamp formatted without allocating: the writer formats one per record.
pub struct Timestamp([u8; 24]);

impl Timestamp {
    pub fn of(ms: i64) -> Timestamp {
        let (days, ms_of_day) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
        let (y, m, d) = civil_from_days(days);
        let mut out = *b"0000-00-00T00:00:00.000Z";
        let mut put = |at: usize, width: usize, mut v: i64| {
            for i in (at..at + width).rev() {
                out[i] = b'0' + (v % 10) as u8;
                v /= 10;
            }
        };
        put(0, 4, y.clamp(0, 9999));
        put(5, 2, m);
        put(8, 2, d);
        put(11, 2, ms_of_day / 3_600_000);
        put(14, 2, ms_of_day / 60_000 % 60);
        put(17, 2, ms_of_day / 1000 % 60);
        put(20, 3, ms_of_day % 1000);
        Timestamp(out)
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("digits and separators are ASCII")
    }
}

/// (year, month, day) of a day count since 1970-01-01 (proleptic Gregorian; Howard
/// Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_formats_parse_back_to_the_same_millisecond() {
        for ms in [0, 1, 999, 1_763_463_999_999, 1_795_000_000_123, 253_402_300_799_999] {
            assert_eq!(parse_time(Timestamp::of(ms).as_str()), Some(ms), "{ms}");
            assert_eq!(parse_time(&rfc3339_millis(ms)), Some(ms), "{ms}");
            assert_eq!(parse_time(&ms.to_string()), Some(ms));
        }
        assert_eq!(format_ts(1_763_463_999_123), "2025-11-18T11:06:39.123Z");
        assert_eq!(rfc3339_millis(1_763_463_999_000), "2025-11-18T11:06:39Z");
        assert_eq!(parse_time("2026-11-18T12:06:40.123+01:00"), parse_time("2026-11-18T11:06:40.123Z"));
        for bad in ["", "yesterday", "2026-13-01T00:00:00Z", "2026-11-18 11:06:40"] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
    }

    #[test]
    fn ids_are_a_prefix_and_hex() {
        let id = random_id::<12>("req");
        assert!(id.starts_with("req_") && id.len() == 4 + 24, "{id}");
        assert!(id[4..].bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_ne!(random_id::<12>("req"), id);
    }
}
