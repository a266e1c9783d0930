//! Time arithmetic on durations that come from outside the host: an upstream's `Retry-After` or
//! `expires_in`, an operator's deadline or timeout, a stored limit.
//!
//! `Instant + Duration` panics when the sum does not fit, and `Retry-After: 18446744073709551615`
//! is a valid header. A panic there once took the whole process down from one upstream answer.
//! Every deadline built from such a value goes through [`after`], which saturates; comparisons
//! use [`remaining`], which never underflows. `tests/hardening.rs` checks that no other file adds a
//! duration to an `Instant` directly.

use std::time::{Duration, Instant};

/// Far enough to mean "never" for any deadline here, near enough to fit every platform's clock.
pub const FAR_FUTURE: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// `start + wait`, saturating at [`FAR_FUTURE`] from `start` instead of panicking.
pub fn after(start: Instant, wait: Duration) -> Instant {
    start
        .checked_add(wait.min(FAR_FUTURE))
        .or_else(|| start.checked_add(Duration::from_secs(24 * 3600)))
        .unwrap_or(start)
}

/// `wait` from now; see [`after`].
pub fn from_now(wait: Duration) -> Instant {
    after(Instant::now(), wait)
}

/// Time left until `deadline`, zero once it has passed.
pub fn remaining(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

/// Now, in Unix milliseconds: the wall clock that stored deadlines (leases, expiries, breaker
/// cooldowns) are kept in, so that every process reads them the same.
pub fn now_unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Unix milliseconds as a readable UTC time (`2026-12-03T11:42:52Z`), for messages: a raw epoch
/// number tells a person nothing.
pub fn format_unix_ms(ms: i64) -> String {
    let Ok(ms) = u64::try_from(ms) else {
        return format!("{ms} ms before 1970");
    };
    let at = std::time::UNIX_EPOCH + Duration::from_millis(ms.min(FAR_FUTURE.as_millis() as u64));
    humantime::format_rfc3339_seconds(at).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_after_saturates_instead_of_panicking() {
        let now = Instant::now();
        for wait in [
            Duration::MAX,
            Duration::from_secs(u64::MAX),
            Duration::from_secs(i64::MAX as u64),
            FAR_FUTURE * 2,
        ] {
            let at = after(now, wait);
            assert!(at > now + Duration::from_secs(3600), "{wait:?}");
        }
        assert_eq!(
            after(now, Duration::from_secs(5)),
            now + Duration::from_secs(5)
        );
        assert_eq!(remaining(now), Duration::ZERO);
    }

    #[test]
    fn time_formats_unix_ms_as_utc() {
        assert_eq!(format_unix_ms(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_unix_ms(1_796_286_685_095), "2026-12-03T08:31:25Z");
        assert!(format_unix_ms(-5).contains("before 1970"));
        assert!(!format_unix_ms(i64::MAX).is_empty());
    }
}
