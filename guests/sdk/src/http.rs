//! HTTP for connectors, over `wasi:http` (through wstd). The host decides every request (grants,
//! addresses, declared access) and adds credentials; a connector only says what to send.

use crate::Error;
use serde_json::Value;

pub use wstd::http::{HeaderMap, Method};

/// A response, read whole.
pub struct Response {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

impl Response {
    /// The body as JSON (`null` when empty).
    pub fn json(&self) -> Result<Value, Error> {
        if self.body.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&self.body).map_err(|e| Error::Upstream {
            status: self.status,
            message: format!("the API answered with invalid JSON: {e}"),
        })
    }

    /// `Retry-After` in milliseconds, when given in seconds.
    pub fn retry_after_ms(&self) -> Option<u64> {
        self.headers
            .get("retry-after")?
            .to_str()
            .ok()?
            .trim()
            .parse::<u64>()
            .ok()
            .map(|s| s * 1000)
    }

    /// The response if its status is 2xx; otherwise the error a caller can act on, with
    /// `message` describing the failure (each API puts its error text somewhere else).
    pub fn error_for_status(
        self,
        message: impl FnOnce(&Response) -> String,
    ) -> Result<Response, Error> {
        let text = || message(&self);
        match self.status {
            200..=299 => Ok(self),
            400 | 409 | 422 => Err(Error::InvalidParams(text())),
            401 | 403 => Err(Error::Unauthorized(text())),
            404 => Err(Error::NotFound(text())),
            429 => Err(Error::RateLimited {
                retry_after_ms: self.retry_after_ms(),
                message: text(),
            }),
            status => Err(Error::Upstream {
                status,
                message: text(),
            }),
        }
    }
}

/// Sends a request; `body` goes as JSON. `headers` are extra request headers.
pub fn send(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&Value>,
) -> Result<Response, Error> {
    wstd::runtime::block_on(async {
        let mut request = wstd::http::Request::builder()
            .method(method)
            .uri(url)
            .header("accept", "application/json");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = match body {
            Some(body) => request
                .header("content-type", "application/json")
                .body(wstd::http::Body::from(body.to_string())),
            None => request.body(wstd::http::Body::empty()),
        }
        .map_err(|e| Error::invalid_params(format!("cannot build the request to {url}: {e}")))?;
        let response =
            wstd::http::Client::new()
                .send(request)
                .await
                .map_err(|e| Error::Upstream {
                    status: 0,
                    message: format!("request to {url} failed: {e:?}"),
                })?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response
            .into_body()
            .str_contents()
            .await
            .map_err(|e| Error::Upstream {
                status,
                message: format!("reading the response from {url}: {e:?}"),
            })?
            .to_owned();
        Ok(Response {
            status,
            headers,
            body,
        })
    })
}

/// Percent-encodes a path segment or query value.
pub fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
