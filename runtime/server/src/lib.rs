//! Airlock's HTTP API: the control plane served to services and people, a front end like the
//! command. Every request carries an API token (`Authorization: Bearer alk_...`, see
//! `airlock::control::access`), maps to the principal the token stands for, and goes through the
//! same control-plane call, with the same authorization and audit, as the CLI's. Failures are
//! RFC 9457 problem documents carrying the core's kind, rule and remedy.
//!
//! - [`problem`]: a control-plane error as an HTTP status and a problem document.
//! - [`auth`]: the bearer token to a principal.
//! - [`routes`]: the `/v1` endpoints, `/healthz` and `/readyz`.
//! - [`mcp`]: MCP for agents at `/mcp` (and over stdio for `airlock mcp`).
//! - [`metrics`]: `/metrics` in the Prometheus text format.
//! - [`openapi`]: the OpenAPI 3.1 document, from the handlers' descriptions.

pub mod auth;
pub mod mcp;
pub mod metrics;
pub mod openapi;
pub mod problem;
pub mod routes;

use airlock::control::ControlPlane;
use std::sync::Arc;
use std::time::Duration;

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

/// How the server treats connections.
#[derive(Debug, Clone)]
pub struct Options {
    /// A client must send a request's headers within this, or its connection is closed (slow
    /// clients holding connections open cost nothing after it).
    pub header_read_timeout: Duration,
    /// Connections served at once; more wait in the listen backlog until one closes.
    pub max_connections: usize,
    /// After shutdown begins, how long requests in flight may take (a long poll holds at most
    /// 60 s).
    pub drain: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            header_read_timeout: Duration::from_secs(10),
            max_connections: 1024,
            drain: Duration::from_secs(75),
        }
    }
}

/// Serves the API on `listener` until `shutdown` resolves, then stops accepting, lets requests
/// in flight finish, and returns. The caller closes the control plane (storing its audit
/// records) after this.
pub async fn serve(
    listener: tokio::net::TcpListener,
    control: Arc<ControlPlane>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, control, shutdown, Options::default()).await
}

/// [`serve`] with explicit [`Options`].
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    control: Arc<ControlPlane>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    options: Options,
) -> std::io::Result<()> {
    use axum::extract::ConnectInfo;
    let router = router(control);
    let permits = Arc::new(tokio::sync::Semaphore::new(options.max_connections.max(1)));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(options.header_read_timeout);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, or a connection reset before it was accepted:
                    // wait a moment rather than spin, and go on serving.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let service = hyper_util::service::TowerToHyperService::new(
            router.clone().layer(axum::Extension(ConnectInfo(peer))),
        );
        let connection =
            graceful.watch(http.serve_connection(hyper_util::rt::TokioIo::new(stream), service));
        tokio::spawn(async move {
            let _ = connection.await;
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(options.drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            "requests still in flight after {:?}; stopping anyway",
            options.drain
        );
    }
    Ok(())
}
