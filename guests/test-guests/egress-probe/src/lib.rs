//! Sends an HTTP request through `wasi:http/outgoing-handler` and reports what the host answered:
//! `fetch` with the raw WASI bindings, `fetch-wstd` with wstd, an ordinary WASI HTTP client.
use airlock_guest::{Connector, Error, Manifest, Operation, Params, Value, json};
use wasi::http::outgoing_handler;
use wasi::http::types::{Fields, Method, OutgoingBody, OutgoingRequest, Scheme};

struct EgressProbe;

#[derive(serde::Deserialize)]
struct Target {
    authority: String,
}

fn send(authority: &str) -> Result<u16, String> {
    let request = OutgoingRequest::new(Fields::new());
    request.set_method(&Method::Get).map_err(|_| "method")?;
    request
        .set_scheme(Some(&Scheme::Https))
        .map_err(|_| "scheme")?;
    request
        .set_authority(Some(authority))
        .map_err(|_| "authority")?;
    request.set_path_with_query(Some("/")).map_err(|_| "path")?;
    let body = request.body().map_err(|_| "body")?;
    OutgoingBody::finish(body, None).map_err(|e| format!("finishing body: {e:?}"))?;
    let response = outgoing_handler::handle(request, None).map_err(|e| format!("{e:?}"))?;
    response.subscribe().block();
    match response.get() {
        Some(Ok(Ok(resp))) => Ok(resp.status()),
        Some(Ok(Err(code))) => Err(format!("{code:?}")),
        other => Err(format!("no response: {other:?}")),
    }
}

fn send_wstd(authority: &str) -> Result<u16, String> {
    wstd::runtime::block_on(async {
        let request = wstd::http::Request::get(format!("https://{authority}/"))
            .body(wstd::http::Body::empty())
            .map_err(|e| e.to_string())?;
        let response = wstd::http::Client::new()
            .send(request)
            .await
            .map_err(|e| format!("{e:?}"))?;
        Ok(response.status().as_u16())
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
        .operation(Operation::read("fetch", "GET https://<authority>/"))
        .operation(Operation::read(
            "fetch-wstd",
            "GET https://<authority>/ with wstd",
        ))
    }

    fn invoke(operation: &str, params: Params) -> Result<Value, Error> {
        let target: Target = params.parse()?;
        let sent = match operation {
            "fetch" => send(&target.authority),
            "fetch-wstd" => send_wstd(&target.authority),
            other => return Err(Error::unknown_operation(other)),
        };
        match sent {
            Ok(status) => Ok(json!({"status": status})),
            Err(error) => Err(Error::Upstream {
                status: 0,
                message: format!("request failed: {error}"),
            }),
        }
    }
}

airlock_guest::export_connector!(EgressProbe);
