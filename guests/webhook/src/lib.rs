//! The webhook connector: POSTs an event as JSON to the connection's `url`. The signature
//! header is added by the host from the connection's HMAC credential
//! (`airlock credential set <connection> signing --kind hmac --header X-Signature ...`): this
//! connector never sees the signing secret.

use airlock_guest::{Connector, Error, Manifest, Operation, Params, Risk, Value, json};
use serde::Deserialize;

struct Webhook;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// Where events go, e.g. https://hooks.example.com/airlock.
    url: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Send {
    /// The event's name, sent as the `X-Airlock-Event` header and in the body.
    event: String,
    payload: Value,
    /// Sent as `Idempotency-Key`, which also lets the host retry the POST safely.
    idempotency_key: Option<String>,
}

fn deliver(config: &Config, send: &Send) -> Result<Value, Error> {
    let body = json!({"event": send.event, "payload": send.payload}).to_string();
    wstd::runtime::block_on(async {
        let mut request = wstd::http::Request::post(config.url.as_str())
            .header("content-type", "application/json")
            .header("x-airlock-event", send.event.as_str());
        if let Some(key) = &send.idempotency_key {
            request = request.header("idempotency-key", key.as_str());
        }
        let request = request
            .body(wstd::http::Body::from(body))
            .map_err(|e| Error::invalid_params(format!("cannot build the request: {e}")))?;
        let response =
            wstd::http::Client::new()
                .send(request)
                .await
                .map_err(|e| Error::Upstream {
                    status: 0,
                    message: format!("delivery failed: {e:?}"),
                })?;
        let status = response.status().as_u16();
        match status {
            200..=299 => Ok(json!({"delivered": true, "status": status})),
            401 | 403 => Err(Error::Unauthorized(format!(
                "the receiver refused the signature (status {status})"
            ))),
            429 => Err(Error::RateLimited {
                retry_after_ms: None,
                message: "the receiver asks to slow down".into(),
            }),
            _ => Err(Error::Upstream {
                status,
                message: format!("the receiver answered {status}"),
            }),
        }
    })
}

impl Connector for Webhook {
    fn manifest() -> Manifest {
        Manifest::new("webhook", "Webhook", env!("CARGO_PKG_VERSION"), "Deliver events as signed JSON POSTs")
            .config_schema(json!({
                "type": "object",
                "properties": {"url": {"type": "string", "pattern": "^https?://", "description": "the receiver's URL"}},
                "required": ["url"],
                "additionalProperties": false
            }))
            .operation(Operation::write("send", "POST an event to the receiver").risk(Risk::Medium).params_schema(json!({
                "type": "object",
                "properties": {
                    "event": {"type": "string", "minLength": 1},
                    "payload": {},
                    "idempotency_key": {"type": "string"}
                },
                "required": ["event", "payload"],
                "additionalProperties": false
            })))
    }

    fn health() -> Result<String, Error> {
        let config: Config = airlock_guest::config::parse()?;
        Ok(format!("webhook configured for {}", config.url))
    }

    fn invoke(operation: &str, params: Params) -> Result<Value, Error> {
        let config: Config = airlock_guest::config::parse()?;
        match operation {
            "send" => deliver(&config, &params.parse()?),
            other => Err(Error::unknown_operation(other)),
        }
    }
}

airlock_guest::export_connector!(Webhook);
