//! Per-connection rate limits (the seeds' `queries_per_minute`): a token bucket per connection
//! that refills continuously, so a burst up to the limit passes and then calls are spaced out.
//! A refused call learns how long to wait. The bucket is kept in the store and taken from in one
//! statement, so every process serving the connection shares it: each CLI invocation is a
//! process of its own, and a bucket in memory would start full every time.

use super::state::{CoordinationStore, StateError, now_ms};
use std::time::Duration;

/// Takes one token from the connection's bucket: `Ok(Err(wait))` when it is empty.
pub async fn take(
    state: &dyn CoordinationStore,
    tenant: &str,
    connection: &str,
    per_minute: u32,
) -> Result<Result<(), Duration>, StateError> {
    Ok(state
        .take_rate_token(tenant, connection, per_minute, now_ms())
        .await?
        .map_err(|wait_ms| Duration::from_millis(wait_ms.max(0) as u64)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::state::SqliteState;

    #[tokio::test]
    async fn ratelimit_allows_a_burst_then_says_how_long_to_wait() {
        let dir = tempfile::tempdir().unwrap();
        let state = SqliteState::open(&dir.path().join("a.db")).await.unwrap();
        for _ in 0..3 {
            take(&state, "t", "c", 3).await.unwrap().unwrap();
        }
        let wait = take(&state, "t", "c", 3).await.unwrap().unwrap_err();
        assert!(
            wait > Duration::from_secs(19) && wait <= Duration::from_secs(20),
            "{wait:?}"
        );
        // Other connections and tenants have their own buckets.
        take(&state, "t", "other", 3).await.unwrap().unwrap();
        take(&state, "u", "c", 3).await.unwrap().unwrap();
        // A changed limit starts a full bucket at the new rate.
        for _ in 0..5 {
            take(&state, "t", "c", 5).await.unwrap().unwrap();
        }
        assert!(take(&state, "t", "c", 5).await.unwrap().is_err());
    }

    #[tokio::test]
    async fn ratelimit_refills_with_time_and_never_past_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let state = SqliteState::open(&dir.path().join("a.db")).await.unwrap();
        let t0 = 1_000_000;
        for _ in 0..60 {
            state
                .take_rate_token("t", "c", 60, t0)
                .await
                .unwrap()
                .unwrap();
        }
        assert_eq!(
            state.take_rate_token("t", "c", 60, t0).await.unwrap(),
            Err(1000)
        );
        // One second later, one token (60 a minute); an hour later, a full bucket and no more.
        state
            .take_rate_token("t", "c", 60, t0 + 1000)
            .await
            .unwrap()
            .unwrap();
        assert!(
            state
                .take_rate_token("t", "c", 60, t0 + 1000)
                .await
                .unwrap()
                .is_err()
        );
        let later = t0 + 3_600_000;
        for _ in 0..60 {
            state
                .take_rate_token("t", "c", 60, later)
                .await
                .unwrap()
                .unwrap();
        }
        assert!(
            state
                .take_rate_token("t", "c", 60, later)
                .await
                .unwrap()
                .is_err()
        );
    }
}
