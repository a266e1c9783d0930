//! Egress: every outgoing HTTP request of a guest, decided and sent by the host.
//!
//! The `wasi:http` capability (capability/http.rs) is the choke point; this module holds what it
//! uses: the grant grammar ([`grant`]), the address classification ([`address`]) and the pooled
//! client ([`client`]) that resolves names itself and refuses to connect to a non-global address
//! (so a DNS answer that changes between the check and the connection is caught too).

pub mod address;
pub mod client;
pub mod credential;
pub mod grant;
pub mod jwt;
pub mod oauth;
pub mod resilience;

pub use client::EgressClient;
pub use grant::Grant;

use std::sync::Arc;

/// A connection's egress: its grants and its pooled client. Shared by the connection's
/// invocations; the client's connections never serve another connection or tenant.
#[derive(Clone, Default)]
pub struct Egress {
    pub grants: Arc<Vec<Grant>>,
    pub client: EgressClient,
    /// Credentials the host adds to matching requests; the guest never sees them.
    pub credentials: Arc<Vec<credential::Credential>>,
    /// Retry and circuit-breaker settings.
    pub resilience: Arc<resilience::Resilience>,
    /// The connection's circuit breakers, by origin.
    pub breakers: Arc<resilience::Breakers>,
    /// In a dry run: where write requests are recorded instead of sent.
    pub capture: Option<Arc<crate::capture::Capture>>,
    /// Read routes the connection accepted, by operation: (method, destination).
    pub read_routes: Arc<std::collections::HashMap<String, Vec<(String, Grant)>>>,
}

impl Egress {
    /// Parses grant texts, naming every bad one.
    pub fn from_grants(texts: &[String]) -> Result<Self, Vec<String>> {
        let mut grants = Vec::new();
        let mut problems = Vec::new();
        for text in texts {
            match Grant::parse(text) {
                Ok(g) => grants.push(g),
                Err(e) => problems.push(e),
            }
        }
        if problems.is_empty() {
            Ok(Egress {
                grants: Arc::new(grants),
                resilience: Arc::new(resilience::Resilience::default()),
                ..Egress::default()
            })
        } else {
            Err(problems)
        }
    }
}
