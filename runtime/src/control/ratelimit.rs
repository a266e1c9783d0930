//! Per-connection rate limits (the seeds' `queries_per_minute`): a token bucket per connection
//! that refills continuously, so a burst up to the limit passes and then calls are spaced out.
//! A refused call learns how long to wait. The buckets live in this process; several nodes will
//! share them through Redis.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Default)]
pub struct RateLimits {
    buckets: Mutex<HashMap<(String, String), Bucket>>,
}

struct Bucket {
    per_minute: u32,
    tokens: f64,
    at: Instant,
}

impl RateLimits {
    /// Takes one token from the connection's bucket, or says how long until one is available.
    pub fn take(&self, tenant: &str, connection: &str, per_minute: u32) -> Result<(), Duration> {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let bucket = buckets
            .entry((tenant.to_owned(), connection.to_owned()))
            .or_insert(Bucket {
                per_minute,
                tokens: per_minute as f64,
                at: now,
            });
        if bucket.per_minute != per_minute {
            // The limit changed: start from a full bucket at the new rate.
            *bucket = Bucket {
                per_minute,
                tokens: per_minute as f64,
                at: now,
            };
        }
        let rate = per_minute as f64 / 60.0;
        bucket.tokens = (bucket.tokens + now.duration_since(bucket.at).as_secs_f64() * rate)
            .min(per_minute as f64);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / rate))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratelimit_allows_a_burst_then_says_how_long_to_wait() {
        let limits = RateLimits::default();
        for _ in 0..3 {
            limits.take("t", "c", 3).unwrap();
        }
        let wait = limits.take("t", "c", 3).unwrap_err();
        assert!(
            wait > Duration::from_secs(19) && wait <= Duration::from_secs(20),
            "{wait:?}"
        );
        // Other connections and tenants have their own buckets.
        limits.take("t", "other", 3).unwrap();
        limits.take("u", "c", 3).unwrap();
    }
}
