//! Sends an HTTP request through `wasi:http/outgoing-handler` and reports what the host answered:
//! `fetch` (declared read) and `send` (declared write) with the raw WASI bindings, `fetch-wstd`
//! with wstd, an ordinary WASI HTTP client.
use airlock_guest::{Connector, Error, Manifest, Operation, Params, Value, json};
use wasi::http::outgoing_handler;
use wasi::http::types::{Fields, Method, OutgoingBody, OutgoingRequest, Scheme};

struct EgressProbe;

#[derive(serde::Deserialize)]
struct Target {
    /// `scheme://authority/path`; the authority may carry user info, to test the host.
    url: String,
    #[serde(default = "get")]
    method: String,
    #[serde(default)]
    headers: Vec<(String, String)>,
    #[serde(default)]
    body: String,
    /// Return what the host handed over hex-encoded (body and response headers), so that a
    /// secret the guest saw shows through any scrubbing of the output.
    #[serde(default)]
    hex: bool,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn get() -> String {
    "GET".into()
}

fn split(url: &str) -> Result<(Scheme, String, String), String> {
    let (scheme, rest) = url.split_once("://").ok_or("no scheme")?;
    let scheme = match scheme {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        other => Scheme::Other(other.into()),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    Ok((scheme, authority.into(), path.into()))
}

fn send(t: &Target) -> Result<Value, String> {
    let (scheme, authority, path) = split(&t.url)?;
    let headers = Fields::new();
    for (name, value) in &t.headers {
        headers
            .append(name, value.as_bytes())
            .map_err(|e| format!("header {name}: {e:?}"))?;
    }
    let request = OutgoingRequest::new(headers);
    let method = match t.method.as_str() {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "DELETE" => Method::Delete,
        "PATCH" => Method::Patch,
        "OPTIONS" => Method::Options,
        other => Method::Other(other.into()),
    };
    request.set_method(&method).map_err(|_| "method")?;
    request.set_scheme(Some(&scheme)).map_err(|_| "scheme")?;
    request
        .set_authority(Some(&authority))
        .map_err(|_| "authority")?;
    request
        .set_path_with_query(Some(&path))
        .map_err(|_| "path")?;
    let body = request.body().map_err(|_| "body")?;
    // As ordinary clients do: send the head, then stream the body, then wait for the answer.
    let response = outgoing_handler::handle(request, None).map_err(|e| format!("{e:?}"))?;
    let mut write_error = None;
    if !t.body.is_empty() {
        let stream = body.write().map_err(|_| "body stream")?;
        // `blocking-write-and-flush` takes at most 4096 bytes a call.
        for chunk in t.body.as_bytes().chunks(4096) {
            if let Err(e) = stream.blocking_write_and_flush(chunk) {
                // The host stopped taking the body; its reason comes with the response.
                write_error = Some(format!("writing body: {e:?}"));
                break;
            }
        }
        drop(stream);
    }
    let finished = OutgoingBody::finish(body, None);
    if write_error.is_none() {
        finished.map_err(|e| format!("finishing body: {e:?}"))?;
    }
    response.subscribe().block();
    let response = match response.get() {
        Some(Ok(Ok(resp))) => resp,
        Some(Ok(Err(code))) => {
            return Err(match write_error {
                Some(w) => format!("{code:?} ({w})"),
                None => format!("{code:?}"),
            });
        }
        other => return Err(format!("no response: {other:?}")),
    };
    let status = response.status();
    let headers: Vec<(String, String)> = response
        .headers()
        .entries()
        .into_iter()
        .map(|(name, value)| (name, hex(&value)))
        .collect();
    let incoming = response.consume().map_err(|_| "consume")?;
    let stream = incoming.stream().map_err(|_| "stream")?;
    let mut bytes = Vec::new();
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => bytes.extend(chunk),
            Err(wasi::io::streams::StreamError::Closed) => break,
            Err(wasi::io::streams::StreamError::LastOperationFailed(e)) => {
                // The host's reason, as a wasi:http error code.
                return Err(format!(
                    "reading body: {:?}",
                    wasi::http::types::http_error_code(&e)
                ));
            }
        }
    }
    if t.hex {
        return Ok(json!({"status": status, "body_hex": hex(&bytes), "headers_hex": headers}));
    }
    Ok(json!({"status": status, "body": String::from_utf8_lossy(&bytes)}))
}

fn send_wstd(t: &Target) -> Result<Value, String> {
    wstd::runtime::block_on(async {
        let request = wstd::http::Request::get(t.url.as_str())
            .body(wstd::http::Body::empty())
            .map_err(|e| e.to_string())?;
        let response = wstd::http::Client::new()
            .send(request)
            .await
            .map_err(|e| format!("{e:?}"))?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .str_contents()
            .await
            .map_err(|e| format!("{e:?}"))?
            .to_owned();
        Ok(json!({"status": status, "body": body}))
    })
}

impl Connector for EgressProbe {
    fn manifest() -> Manifest {
        Manifest::new(
            "egress-probe",
            "Egress probe",
            "0.1.0",
            "Tries to reach the network",
        )
        .operation(
            Operation::read("fetch", "Send a request (declared read)")
                .read_route("POST http://127.0.0.1:*/graphql"),
        )
        .operation(Operation::read(
            "fetch-wstd",
            "GET with wstd (declared read)",
        ))
        .operation(Operation::write("send", "Send a request (declared write)"))
    }

    fn invoke(operation: &str, params: Params) -> Result<Value, Error> {
        let target: Target = params.parse()?;
        let sent = match operation {
            "fetch" | "send" => send(&target),
            "fetch-wstd" => send_wstd(&target),
            other => return Err(Error::unknown_operation(other)),
        };
        sent.map_err(|error| Error::Upstream {
            status: 0,
            message: format!("request failed: {error}"),
        })
    }
}

airlock_guest::export_connector!(EgressProbe);
