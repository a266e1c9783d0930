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
                Box::new(async { Err(HttpError::HttpRequestDenied) })
            }
            // No rule allows egress yet; if one ever does without a sender wired here, fail
            // closed rather than send.
            Ok(()) => Box::new(async { Err(HttpError::HttpRequestDenied) }),
        }
    }
}
