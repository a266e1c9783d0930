//! The host's HTTP client for guest requests: pooled per connection, HTTP/1.1 over TCP or TLS
//! (rustls with the webpki roots), resolving names through [`PolicyResolver`], which refuses
//! names that resolve to any non-global address. Proxy variables are never read.

use super::address::non_global_reason;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::rt::TokioExecutor;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;
use wasmtime_wasi_http::WasiBody;

/// Time to establish a TCP (and TLS) connection unless the guest asks for less.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Idle pooled connections are closed after this.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Resolves with the system resolver and keeps only global addresses: a name that resolves to
/// any loopback, private, link-local or metadata address fails, naming the address.
#[derive(Clone, Default)]
pub struct PolicyResolver;

type Addrs = std::vec::IntoIter<SocketAddr>;

impl tower_service::Service<Name> for PolicyResolver {
    type Response = Addrs;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Addrs, std::io::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        Box::pin(async move {
            let addrs = resolve_global(name.as_str())
                .await
                .map_err(std::io::Error::other)?;
            Ok(addrs.into_iter())
        })
    }
}

/// Resolves `host` and checks every address; the error says which address and why.
pub async fn resolve_global(host: &str) -> Result<Vec<SocketAddr>, String> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, 0))
        .await
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .collect();
    if addrs.is_empty() {
        return Err(format!("{host} has no addresses"));
    }
    if let Some((addr, why)) = addrs
        .iter()
        .find_map(|a| non_global_reason(a.ip()).map(|why| (a.ip(), why)))
    {
        return Err(format!("{host} resolves to {addr}, {why}"));
    }
    Ok(addrs)
}

type Connector = hyper_rustls::HttpsConnector<HttpConnector<PolicyResolver>>;

/// A connection's client, built on first use.
#[derive(Clone, Default)]
pub struct EgressClient {
    inner: Arc<OnceLock<Client<Connector, WasiBody>>>,
}

impl EgressClient {
    pub fn get(&self) -> &Client<Connector, WasiBody> {
        self.inner.get_or_init(|| {
            let mut http = HttpConnector::new_with_resolver(PolicyResolver);
            http.enforce_http(false);
            http.set_connect_timeout(Some(CONNECT_TIMEOUT));
            http.set_nodelay(true);
            let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .expect("ring supports the default TLS versions")
            .with_root_certificates(rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.into(),
            })
            .with_no_client_auth();
            let https = hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(tls)
                .https_or_http()
                .enable_http1()
                .wrap_connector(http);
            Client::builder(TokioExecutor::new())
                .pool_idle_timeout(POOL_IDLE_TIMEOUT)
                .build(https)
        })
    }
}
