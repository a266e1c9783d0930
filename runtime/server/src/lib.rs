//! Airlock's HTTP API: the control plane served to services and people, a front end like the
//! command. Every request carries an API token (`Authorization: Bearer alk_...`, see
//! `airlock::control::access`), maps to the principal the token stands for, and goes through the
//! same control-plane call, with the same authorization and audit, as the CLI's. Failures are
//! RFC 9457 problem documents carrying the core's kind, rule and remedy.
//!
//! - [`problem`]: a control-plane error as an HTTP status and a problem document.
//! - [`auth`]: the bearer token to a principal.
//! - [`routes`]: the `/v1` endpoints, `/healthz` and `/readyz`.
//! - [`metrics`]: `/metrics` in the Prometheus text format.

pub mod auth;
pub mod metrics;
pub mod problem;
pub mod routes;

use airlock::control::ControlPlane;
use std::net::SocketAddr;
use std::sync::Arc;

/// The largest request body the API reads (params, config, a reason); component uploads have
/// [`MAX_COMPONENT_BYTES`].
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// The largest component a registration accepts (Python and JavaScript components run to
/// 12-22 MB).
pub const MAX_COMPONENT_BYTES: usize = 64 << 20;

/// What every handler shares.
#[derive(Clone)]
pub struct App {
    pub control: Arc<ControlPlane>,
}

/// The whole API as an axum router.
pub fn router(control: Arc<ControlPlane>) -> axum::Router {
    routes::router(App { control })
}

/// Serves the API on `listener` until `shutdown` resolves, then stops accepting, lets requests
/// in flight finish, and returns. The caller closes the control plane (storing its audit
/// records) after this.
pub async fn serve(
    listener: tokio::net::TcpListener,
    control: Arc<ControlPlane>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(control).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
