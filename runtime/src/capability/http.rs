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
use crate::egress::resilience::{idempotent, retry_after, retryable_status};
use crate::invocation::Invocation;
use crate::policy::{self, Denial, Effect, HttpTarget, authorize};
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
    /// Every secret injected into this invocation's requests, masked in what comes back.
    pub secrets: Arc<crate::secrets::Secrets>,
    pub egress: Egress,
    /// The invocation's deadline: no retry waits past it.
    pub deadline: std::time::Instant,
    /// The largest request body a guest may send.
    pub max_request_body_bytes: usize,
}

/// The longest request target (scheme, authority, path and query) a guest may send; longer
/// ones are refused before any decision, so a guest cannot make the host copy megabytes of URL
/// into denials and logs.
pub const MAX_URI_BYTES: usize = 8 << 10;

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
    /// The connection's credential bound to this destination, if any: a credential goes only
    /// where its own host grants say.
    fn credential<'a>(
        &self,
        egress: &'a Egress,
    ) -> Option<&'a crate::egress::credential::Credential> {
        egress
            .credentials
            .iter()
            .find(|c| c.applies_to(&self.scheme, &self.host, self.port, &self.path))
    }

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

    fn target<'a>(&'a self, egress: &'a Egress, operation: &str) -> HttpTarget<'a> {
        HttpTarget {
            method: &self.method,
            scheme: &self.scheme,
            host: &self.host,
            port: self.port,
            path: &self.path,
            userinfo: self.userinfo,
            grants: &egress.grants,
            read_routes: egress
                .read_routes
                .get(operation)
                .map(Vec::as_slice)
                .unwrap_or_default(),
        }
    }

    fn origin(&self) -> String {
        format!("{}://{}:{}", self.scheme, self.host, self.port)
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
    http::Request::from_parts(parts, full_body(bytes::Bytes::new()))
}

/// Headers a response may carry.
pub const MAX_RESPONSE_HEADERS: usize = 100;
/// Bytes of one response body a guest may read.
pub const MAX_RESPONSE_BODY_BYTES: usize = 16 << 20;

/// Rule: the destination's circuit breaker is open.
pub const RULE_CIRCUIT_OPEN: &str = "circuit-open";
/// The largest request body kept in memory so that an idempotent request can be sent again.
pub const MAX_REPLAYABLE_BODY_BYTES: usize = 1 << 20;

type Incoming = http::Response<hyper::body::Incoming>;

/// A request body read whole, up to [`MAX_REPLAYABLE_BODY_BYTES`]: to send again, to sign, or to
/// record in a dry run.
async fn read_whole(body: WasiBody) -> Result<bytes::Bytes, HttpError> {
    http_body_util::Limited::new(body, MAX_REPLAYABLE_BODY_BYTES)
        .collect()
        .await
        .map(|collected| collected.to_bytes())
        .map_err(|_| HttpError::HttpRequestBodySize(None))
}

/// A body of known bytes.
fn full_body(bytes: bytes::Bytes) -> WasiBody {
    http_body_util::Full::new(bytes)
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// Sends `request`, retrying idempotent ones on connection failures and on 429/502/503/504 (after
/// `Retry-After` or a jittered backoff) while the deadline allows, and reports each outcome to
/// the origin's circuit breaker.
async fn send_with_retries(
    egress: &Egress,
    origin: &str,
    request: http::Request<WasiBody>,
    first_byte: Duration,
    deadline: std::time::Instant,
) -> Result<Incoming, HttpError> {
    let policy = &egress.resilience;
    let client = egress.client.get();
    let attempt_once = |request: http::Request<WasiBody>| async move {
        match tokio::time::timeout(first_byte, client.request(request)).await {
            Err(_elapsed) => Err(HttpError::ConnectionReadTimeout),
            Ok(result) => result.map_err(client_error),
        }
    };
    // A 429 is the upstream pacing us, not failing.
    let success = |result: &Result<Incoming, HttpError>| match result {
        Ok(response) if response.status() == http::StatusCode::TOO_MANY_REQUESTS => None,
        Ok(response) => Some(!response.status().is_server_error()),
        Err(_) => Some(false),
    };
    if policy.retry.max_attempts <= 1 || !idempotent(request.method(), request.headers()) {
        let result = attempt_once(request).await;
        if let Some(success) = success(&result) {
            egress
                .breakers
                .record(origin, success, &policy.breaker)
                .await;
        }
        return result;
    }
    // Keep the body so it can be sent again.
    let (parts, body) = request.into_parts();
    let bytes = read_whole(body).await?;
    let build = || {
        let mut request = http::Request::new(full_body(bytes.clone()));
        *request.method_mut() = parts.method.clone();
        *request.uri_mut() = parts.uri.clone();
        *request.version_mut() = parts.version;
        *request.headers_mut() = parts.headers.clone();
        request
    };
    let mut attempt = 1;
    loop {
        let result = attempt_once(build()).await;
        if let Some(success) = success(&result) {
            egress
                .breakers
                .record(origin, success, &policy.breaker)
                .await;
        }
        let wait = match &result {
            Ok(response) if retryable_status(response.status()) => {
                retry_after(response.headers()).unwrap_or_else(|| policy.retry.backoff(attempt))
            }
            Err(
                HttpError::ConnectionRefused
                | HttpError::ConnectionTimeout
                | HttpError::ConnectionReadTimeout,
            ) => policy.retry.backoff(attempt),
            _ => return result,
        };
        // Saturating: `Retry-After` is the upstream's number, and may be any u64.
        let fits = wait < crate::time::remaining(deadline);
        if attempt >= policy.retry.max_attempts
            || !fits
            || egress
                .breakers
                .allow(origin, &policy.breaker)
                .await
                .is_err()
        {
            return result;
        }
        drop(result);
        tokio::time::sleep(wait).await;
        attempt += 1;
    }
}

/// Records a write request instead of sending it (before any credential is added) and answers
/// the guest for the upstream. See `crate::capture`.
async fn dry_run(
    capture: &crate::capture::Capture,
    egress: &Egress,
    destination: &Destination,
    request: http::Request<WasiBody>,
) -> Result<(http::Response<WasiBody>, IoFuture), HttpError> {
    let credential = destination.credential(egress).map(|c| c.name.clone());
    let (parts, body) = request.into_parts();
    let bytes = read_whole(body).await?;
    let headers = parts
        .headers
        .iter()
        .map(|(name, value)| {
            let shown = if crate::redact::secret_name(name.as_str()) {
                crate::redact::REDACTED.to_owned()
            } else {
                value.to_str().unwrap_or("[not text]").to_owned()
            };
            (name.to_string(), shown)
        })
        .collect();
    capture.record(crate::capture::Effect::Http {
        method: parts.method.to_string(),
        url: parts.uri.to_string(),
        headers,
        body: crate::capture::body_preview(&bytes),
        credential,
    });
    let response = http::Response::builder()
        .status(200)
        .header(http::header::CONTENT_TYPE, "application/json")
        .header("x-airlock-dry-run", "1")
        .body(full_body(bytes::Bytes::from_static(br#"{"dry_run":true}"#)))
        .expect("a fixed response is valid");
    Ok((response, Box::new(async { Ok(()) }) as IoFuture))
}

/// Caps the body the guest streams: past `limit` bytes the request fails with
/// `HTTP-request-body-size` instead of streaming on until the deadline.
fn with_body_limit(request: http::Request<WasiBody>, limit: usize) -> http::Request<WasiBody> {
    request.map(|body| {
        http_body_util::Limited::new(body, limit)
            .map_err(move |e| match e.downcast::<HttpError>() {
                Ok(inner) => *inner,
                Err(_) => HttpError::HttpRequestBodySize(Some(limit as u64)),
            })
            .boxed_unsync()
    })
}

fn client_error(error: hyper_util::client::legacy::Error) -> HttpError {
    let text = format!("{error:?}");
    if text.contains("LengthLimitError")
        || text.contains("length limit exceeded")
        || text.contains("HttpRequestBodySize")
    {
        HttpError::HttpRequestBodySize(None)
    } else if text.contains("resolves to") {
        HttpError::DestinationIpProhibited
    } else if text.contains("TooLarge") {
        // hyper refuses a response head over its limit (100 headers) before we see it.
        HttpError::HttpResponseHeaderSectionSize(None)
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
        if request.uri().to_string().len() > MAX_URI_BYTES {
            drain_in_background(request.into_body());
            return Box::new(async { Err(HttpError::HttpRequestUriTooLong) });
        }
        if self.denials.exhausted() {
            drain_in_background(request.into_body());
            return Box::new(async { Err(HttpError::HttpRequestDenied) });
        }
        let destination = Destination::of(&request);
        if let Err(denial) = authorize(
            &self.invocation,
            &Effect::HttpRequest(&destination.target(&self.egress, &self.invocation.operation)),
        ) {
            self.denials.record(denial);
            drain_in_background(request.into_body());
            return Box::new(async { Err(HttpError::HttpRequestDenied) });
        }
        let denials = self.denials.clone();
        let egress = self.egress.clone();
        let deadline = self.deadline;
        let operation = self.invocation.operation.clone();
        let secrets = self.secrets.clone();
        let request = with_body_limit(request, self.max_request_body_bytes);
        Box::new(async move {
            if !destination.is_ip_literal() {
                let resolved = resolve_global(&destination.host).await.map(|_| ());
                if let Err(denial) =
                    policy::authorize_resolved(&destination.target(&egress, &operation), resolved)
                {
                    denials.record(denial);
                    drain_in_background(request.into_body());
                    return Err(HttpError::DestinationIpProhibited);
                }
            }
            let mut request = without_phantom_body(request);
            if let Some(capture) = &egress.capture
                && !matches!(
                    *request.method(),
                    http::Method::GET | http::Method::HEAD | http::Method::OPTIONS
                )
            {
                return dry_run(capture, &egress, &destination, request).await;
            }
            // After every check: a credential goes only where its own host grants say.
            let credential = destination.credential(&egress);
            let credentialed = credential.is_some();
            if let Some(credential) = credential {
                if let Err(reason) = credential
                    .apply(&egress.client, &mut request, &secrets)
                    .await
                {
                    let reason = secrets.scrub(&reason).into_owned();
                    tracing::warn!(credential = %credential.name, "{reason}");
                    return Err(HttpError::InternalError(Some(format!(
                        "credential `{}`: {reason}",
                        credential.name
                    ))));
                }
                // A compressed answer could carry an echoed secret past the scrubber.
                request.headers_mut().insert(
                    http::header::ACCEPT_ENCODING,
                    http::HeaderValue::from_static("identity"),
                );
                if credential.signs_body() {
                    // Read the body whole (bounded) to sign it, then send those bytes.
                    let (mut parts, body) = request.into_parts();
                    let bytes = read_whole(body).await?;
                    if let Some((name, value)) = credential.signature(&bytes) {
                        parts.headers.insert(name, value);
                    }
                    request = http::Request::from_parts(parts, full_body(bytes));
                }
            }
            let first_byte = options
                .and_then(|o| o.first_byte_timeout)
                .unwrap_or(FIRST_BYTE_TIMEOUT);
            let origin = destination.origin();
            if let Err(open) = egress
                .breakers
                .allow(&origin, &egress.resilience.breaker)
                .await
            {
                denials.record(Denial {
                    rule: RULE_CIRCUIT_OPEN,
                    effect: format!("{} request to {origin}", destination.method),
                    reason: format!(
                        "{origin} failed {} times in a row; the circuit is open, next attempt allowed in {} ms",
                        egress.resilience.breaker.failures_to_open,
                        open.retry_in.as_millis()
                    ),
                    remedy: None,
                });
                drain_in_background(request.into_body());
                return Err(HttpError::ConnectionRefused);
            }
            let mut response =
                send_with_retries(&egress, &origin, request, first_byte, deadline).await?;
            if response.headers().len() > MAX_RESPONSE_HEADERS {
                return Err(HttpError::HttpResponseHeaderSectionSize(None));
            }
            let encoded = response
                .headers()
                .get(http::header::CONTENT_ENCODING)
                .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"));
            if credentialed && encoded {
                // Asked for `identity`; a compressed body cannot be checked for the credential.
                return Err(HttpError::HttpResponseContentCoding(Some(
                    "a response to a request carrying a credential must not be compressed (the host asks for identity)".into(),
                )));
            }
            let matcher = secrets.matcher();
            if let Some(matcher) = &matcher {
                matcher.scrub_headers(response.headers_mut());
            }
            // A body past the cap ends in an error the guest can read, not in host memory.
            let response =
                response.map(|body| {
                    let limited = http_body_util::Limited::new(body, MAX_RESPONSE_BODY_BYTES)
                        .map_err(|e| match e.downcast::<hyper::Error>() {
                            Ok(hyper) => HttpError::from(*hyper),
                            Err(_) => HttpError::HttpResponseBodySize(Some(
                                MAX_RESPONSE_BODY_BYTES as u64,
                            )),
                        });
                    // Whatever the upstream echoes of an injected secret is masked as it streams.
                    match matcher {
                        Some(matcher) => {
                            crate::secrets::ScrubbedBody::new(limited, matcher).boxed_unsync()
                        }
                        None => limited.boxed_unsync(),
                    }
                });
            // The pooled client drives its connections itself.
            Ok((response, Box::new(async { Ok(()) }) as IoFuture))
        })
    }
}
