//! `wasi:http/outgoing-handler`: the one choke point for every network request.
//!
//! wasmtime-wasi-http hands each outgoing request to [`WasiHttpHooks::send_request`]; nothing
//! else in the host opens a connection for a guest. Here every request is put to
//! [`crate::policy::authorize`], which denies all of them until connections carry egress grants.
//! The denial is recorded on the invocation (so the caller sees which rule denied what) and the
//! guest receives the standard `HTTP-request-denied` error code.

use super::DenialLog;
use crate::invocation::Invocation;
use crate::policy::{Effect, authorize};
use std::sync::Arc;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

/// The egress decisions of one invocation.
pub struct EgressHooks {
    pub invocation: Arc<Invocation>,
    pub denials: DenialLog,
}

type ResponseFuture = Box<
    dyn Future<
            Output = Result<
                (
                    http::Response<WasiBody>,
                    Box<dyn Future<Output = Result<(), HttpError>> + Send>,
                ),
                HttpError,
            >,
        > + Send,
>;

/// Bytes of a denied request's body read and discarded before giving up on it.
const MAX_DRAINED_BODY_BYTES: usize = 1 << 20;

async fn drain(mut body: WasiBody) {
    use http_body_util::BodyExt;
    let mut drained = 0;
    while let Some(Ok(frame)) = body.frame().await {
        drained += frame.data_ref().map_or(0, |data| data.len());
        if drained > MAX_DRAINED_BODY_BYTES {
            break;
        }
    }
}

impl WasiHttpHooks for EgressHooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        _options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> ResponseFuture {
        let authority = request
            .uri()
            .authority()
            .map(|a| a.as_str().to_owned())
            .unwrap_or_else(|| "(no authority)".to_owned());
        let effect = Effect::HttpRequest {
            method: request.method().as_str(),
            authority: &authority,
        };
        let decision = authorize(&self.invocation, &effect);
        match decision {
            Err(denial) => {
                self.denials.record(denial);
                // Clients such as wstd write the (often empty) body after `handle` returns;
                // dropping the receiving end now would show them "connection reset" instead of
                // the denial. Drain it in the background, bounded, and answer with the denial.
                tokio::spawn(drain(request.into_body()));
                Box::new(async { Err(HttpError::HttpRequestDenied) })
            }
            // No rule allows egress yet; if one ever does without a sender wired here, fail
            // closed rather than send.
            Ok(()) => Box::new(async { Err(HttpError::HttpRequestDenied) }),
        }
    }
}
