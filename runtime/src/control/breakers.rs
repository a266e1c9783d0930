//! The egress circuit breakers' shared state, kept in the state store per tenant, connection
//! and origin (see `egress::resilience::BreakerLedger`).

use super::state::{BreakerState, CoordinationStore};
use crate::egress::resilience::{BreakerLedger, Shared};
use std::sync::Arc;

fn shared(state: BreakerState, until_ms: i64) -> Shared {
    match state {
        BreakerState::Open => Shared::Open { until_ms },
        BreakerState::HalfOpen => Shared::HalfOpen {
            lease_until_ms: until_ms,
        },
        BreakerState::Closed => Shared::Closed,
    }
}

pub struct StoreLedger {
    pub state: Arc<dyn CoordinationStore>,
    pub tenant: String,
    pub connection: String,
}

#[async_trait::async_trait]
impl BreakerLedger for StoreLedger {
    async fn load(&self, origin: &str) -> Result<Shared, String> {
        let record = self
            .state
            .breaker(&self.tenant, &self.connection, origin)
            .await
            .map_err(|e| e.to_string())?;
        Ok(match record {
            None => Shared::Closed,
            Some(r) => shared(r.state, r.until_ms),
        })
    }

    async fn failure(
        &self,
        origin: &str,
        threshold: u32,
        open_until_ms: i64,
    ) -> Result<(Shared, u32), String> {
        let r = self
            .state
            .count_breaker_failure(
                &self.tenant,
                &self.connection,
                origin,
                threshold,
                open_until_ms,
            )
            .await
            .map_err(|e| e.to_string())?;
        let failures = u32::try_from(r.failures).unwrap_or(u32::MAX);
        Ok((shared(r.state, r.until_ms), failures))
    }

    async fn open(&self, origin: &str, until_ms: i64) -> Result<(), String> {
        self.state
            .set_breaker(
                &self.tenant,
                &self.connection,
                origin,
                BreakerState::Open,
                until_ms,
            )
            .await
            .map_err(|e| e.to_string())
    }

    async fn close(&self, origin: &str) -> Result<(), String> {
        self.state
            .set_breaker(
                &self.tenant,
                &self.connection,
                origin,
                BreakerState::Closed,
                0,
            )
            .await
            .map_err(|e| e.to_string())
    }

    async fn take_probe(
        &self,
        origin: &str,
        now_ms: i64,
        lease_until_ms: i64,
    ) -> Result<bool, String> {
        self.state
            .take_breaker_probe(
                &self.tenant,
                &self.connection,
                origin,
                now_ms,
                lease_until_ms,
            )
            .await
            .map_err(|e| e.to_string())
    }
}
