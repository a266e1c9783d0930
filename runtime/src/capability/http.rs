//! `wasi:http/outgoing-handler`: the one choke point for every network request.
//!
//! wasmtime-wasi-http hands each outgoing request to [`WasiHttpHooks::send_request`]; nothing
//! else in the host opens a connection for a guest. Here each request is decoded, put to
//! [`policy::authorize`] (method against the operation's declared access, user info, grants,
//! path, IP literals), then a granted name is resolved and every address checked
//! ([`policy::authorize_resolved`]); only then does the connection's pooled client send it, and
//! that client's resolver checks the addresses again at connect time. A denial is recorded on the
//! invocation (so the caller sees which rule denied what) and the guest receives the standard
//! `HTTP-request-denied` (or `destination-IP-prohibited`) error code.

use super::DenialLog;
use crate::egress::Egress;
use crate::egress::client::resolve_global;
use crate::egress::grant::{default_port, normalize_host};
use crate::invocation::Invocation;
use crate::policy::{self, Effect, HttpTarget, authorize};
use http::HeaderName;
use http_body_util::BodyExt;
use std::sync::Arc;
use std::time::Duration;
use wasmtime_wasi_http::{
    DEFAULT_FORBIDDEN_HEADERS, Error as HttpError, ForbiddenHeaderFilter, RequestOptions, WasiBody,
    WasiHttpHooks,
};

/// How long to wait for the response head unless the guest asks for less.
pub const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(30);

/// The egress decisions and sender of one invocation.
pub struct EgressHooks {
    pub invocation: Arc<Invocation>,
    pub denials: DenialLog,
    pub egress: Egress,
}

type IoFuture = Box<dyn Future<Output = Result<(), HttpError>> + Send>;
type ResponseFuture =
    Box<dyn Future<Output = Result<(http::Response<WasiBody>, IoFuture), HttpError>> + Send>;

/// Bytes of a denied request's body read and discarded before giving up on it.
const MAX_DRAINED_BODY_BYTES: usize = 1 << 20;

/// Clients such as wstd write the (often empty) body after `handle` returns; dropping the
/// receiving end of a denied request would show them "connection reset" instead of the denial.
fn drain_in_background(body: WasiBody) {
    tokio::spawn(async move {
        let mut body = body;
        let mut drained = 0;
        while let Some(Ok(frame)) = body.frame().await {
            drained += frame.data_ref().map_or(0, |data| data.len());
            if drained > MAX_DRAINED_BODY_BYTES {
                break;
            }
        }
    });
}

/// A request's destination, owned, for the async part of the decision.
struct Destination {
    method: String,
    scheme: String,
    host: String,
    port: u16,
    path: String,
    userinfo: bool,
}

impl Destination {
    fn of(request: &http::Request<WasiBody>) -> Self {
        let uri = request.uri();
        let scheme = uri.scheme_str().unwrap_or("https").to_ascii_lowercase();
        Destination {
            method: request.method().as_str().to_owned(),
            port: uri
                .port_u16()
                .or_else(|| default_port(&scheme))
                .unwrap_or(0),
            host: normalize_host(uri.host().unwrap_or_default()),
            path: uri.path().to_owned(),
            userinfo: uri.authority().is_some_and(|a| a.as_str().contains('@')),
            scheme,
        }
    }

    fn target<'a>(&'a self, egress: &'a Egress) -> HttpTarget<'a> {
        HttpTarget {
            method: &self.method,
            scheme: &self.scheme,
            host: &self.host,
            port: self.port,
            path: &self.path,
            userinfo: self.userinfo,
            grants: &egress.grants,
        }
    }

    fn is_ip_literal(&self) -> bool {
        self.host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok()
    }
}

/// A GET or HEAD with neither Content-Length nor Transfer-Encoding has no body on the wire, but
/// wstd-style clients still write (nothing) to the body stream after `handle`; sending their
/// stream would let hyper drop it mid-write and the guest see "connection reset". Such requests
/// go out with an empty body while the guest's stream is drained.
fn without_phantom_body(request: http::Request<WasiBody>) -> http::Request<WasiBody> {
    let bodyless = matches!(*request.method(), http::Method::GET | http::Method::HEAD)
        && !request.headers().contains_key(http::header::CONTENT_LENGTH)
        && !request
            .headers()
            .contains_key(http::header::TRANSFER_ENCODING);
    if !bodyless {
        return request;
    }
    let (parts, body) = request.into_parts();
    drain_in_background(body);
    let empty = http_body_util::Empty::<bytes::Bytes>::new()
        .map_err(|never| match never {})
        .boxed_unsync();
    http::Request::from_parts(parts, empty)
}

fn client_error(error: hyper_util::client::legacy::Error) -> HttpError {
    let text = format!("{error:?}");
    if text.contains("resolves to") {
        HttpError::DestinationIpProhibited
    } else if error.is_connect() {
        HttpError::ConnectionRefused
    } else {
        HttpError::HttpProtocolError
    }
}

impl WasiHttpHooks for EgressHooks {
    fn forbidden_header_filter(&mut self) -> ForbiddenHeaderFilter {
        // Beyond wasmtime's list (Host, Connection, Proxy-Authorization...): every Proxy-* header
        // and the remaining hop-by-hop ones.
        Arc::new(|name: &HeaderName| {
            DEFAULT_FORBIDDEN_HEADERS.contains(name)
                || name.as_str().starts_with("proxy-")
                || matches!(name.as_str(), "te" | "trailer")
        })
    }

    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: IoFuture,
    ) -> ResponseFuture {
        let destination = Destination::of(&request);
        if let Err(denial) = authorize(
            &self.invocation,
            &Effect::HttpRequest(&destination.target(&self.egress)),
        ) {
            self.denials.record(denial);
            drain_in_background(request.into_body());
            return Box::new(async { Err(HttpError::HttpRequestDenied) });
        }
        let denials = self.denials.clone();
        let egress = self.egress.clone();
        Box::new(async move {
            if !destination.is_ip_literal() {
                let resolved = resolve_global(&destination.host).await.map(|_| ());
                if let Err(denial) =
                    policy::authorize_resolved(&destination.target(&egress), resolved)
                {
                    denials.record(denial);
                    drain_in_background(request.into_body());
                    return Err(HttpError::DestinationIpProhibited);
                }
            }
            let mut request = without_phantom_body(request);
            // After every check: a credential goes only where its own host grants say.
            if let Some(credential) = egress.credentials.iter().find(|c| {
                c.applies_to(
                    &destination.scheme,
                    &destination.host,
                    destination.port,
                    &destination.path,
                )
            }) {
                credential.inject(&mut request);
            }
            let first_byte = options
                .and_then(|o| o.first_byte_timeout)
                .unwrap_or(FIRST_BYTE_TIMEOUT);
            let response = match tokio::time::timeout(
                first_byte,
                egress.client.get().request(request),
            )
            .await
            {
                Err(_elapsed) => return Err(HttpError::ConnectionReadTimeout),
                Ok(Err(e)) => return Err(client_error(e)),
                Ok(Ok(response)) => response,
            };
            let response = response.map(|body| body.map_err(HttpError::from).boxed_unsync());
            // The pooled client drives its connections itself.
            Ok((response, Box::new(async { Ok(()) }) as IoFuture))
        })
    }
}
