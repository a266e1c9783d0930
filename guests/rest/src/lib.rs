//! The REST connector: list (following `Link: rel="next"` pages), get, create, update and delete
//! on the resources of a JSON API that the connection configures. Authentication is the host's:
//! give the connection a credential for the API's host.

use airlock_guest::http::{self, Method, Response, encode};
use airlock_guest::{
    Connector, Error, Field, Manifest, ObjectInfo, Operation, Params, Risk, Value, json,
};
use serde::Deserialize;

struct Rest;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// e.g. https://api.example.com/v1 (no trailing slash needed).
    base_url: String,
    /// The resources this connection may touch, e.g. ["items", "orders"].
    resources: Vec<String>,
    /// Sent as `?limit=` on lists.
    #[serde(default)]
    page_size: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListParams {
    resource: String,
    #[serde(default)]
    query: serde_json::Map<String, Value>,
    /// Pages to follow at most (default 10).
    max_pages: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyParams {
    resource: String,
    id: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WriteParams {
    resource: String,
    #[serde(default)]
    id: Option<String>,
    body: Value,
    idempotency_key: Option<String>,
}

impl Config {
    fn load() -> Result<Self, Error> {
        let config: Config = airlock_guest::config::parse()?;
        if !(config.base_url.starts_with("https://") || config.base_url.starts_with("http://")) {
            return Err(Error::invalid_params(
                "connection config: base_url must start with http:// or https://",
            ));
        }
        Ok(config)
    }

    fn url(&self, resource: &str, id: Option<&str>) -> Result<String, Error> {
        if !self.resources.iter().any(|r| r == resource) {
            return Err(Error::not_found(format!(
                "resource `{resource}` is not configured on this connection; it has: {}",
                self.resources.join(", ")
            )));
        }
        let base = self.base_url.trim_end_matches('/');
        Ok(match id {
            Some(id) => format!("{base}/{resource}/{}", encode(id)),
            None => format!("{base}/{resource}"),
        })
    }
}

fn call(
    method: Method,
    url: &str,
    body: Option<&Value>,
    idempotency_key: Option<&str>,
) -> Result<Response, Error> {
    let headers: Vec<(&str, &str)> = idempotency_key
        .map(|k| ("idempotency-key", k))
        .into_iter()
        .collect();
    http::send(method, url, &headers, body)
}

/// Maps an error status to the error a caller can act on, quoting the start of the body.
fn check(answer: Response) -> Result<Response, Error> {
    answer.error_for_status(|r| {
        format!(
            "status {}: {}",
            r.status,
            r.body.chars().take(300).collect::<String>()
        )
    })
}

/// The `rel="next"` target of a `Link` header (RFC 8288), if any.
fn next_link(headers: &http::HeaderMap) -> Option<String> {
    let link = headers.get("link")?.to_str().ok()?;
    link.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        let is_next = params.split(';').any(|p| {
            let p = p.trim();
            p.eq_ignore_ascii_case("rel=\"next\"") || p.eq_ignore_ascii_case("rel=next")
        });
        is_next.then(|| {
            target
                .trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_owned()
        })
    })
}

fn list(config: &Config, p: ListParams) -> Result<Value, Error> {
    let mut url = config.url(&p.resource, None)?;
    let mut query: Vec<String> = p
        .query
        .iter()
        .map(|(k, v)| {
            format!(
                "{}={}",
                encode(k),
                encode(
                    &v.as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| v.to_string())
                )
            )
        })
        .collect();
    if let Some(size) = config.page_size {
        query.push(format!("limit={size}"));
    }
    if !query.is_empty() {
        url = format!("{url}?{}", query.join("&"));
    }
    let (mut records, mut pages) = (Vec::new(), 0);
    let max_pages = p.max_pages.unwrap_or(10).max(1);
    loop {
        let answer = check(call(Method::GET, &url, None, None)?)?;
        pages += 1;
        let next = next_link(&answer.headers);
        match answer.json()? {
            Value::Array(items) => records.extend(items),
            Value::Object(mut map) => {
                let items = ["data", "items", "records", "results"]
                    .iter()
                    .find_map(|k| map.remove(*k));
                match items {
                    Some(Value::Array(items)) => records.extend(items),
                    _ => {
                        return Err(Error::Upstream {
                            status: answer.status,
                            message: "a list response without an array".into(),
                        });
                    }
                }
            }
            _ => {
                return Err(Error::Upstream {
                    status: answer.status,
                    message: "a list response without an array".into(),
                });
            }
        }
        match next {
            Some(next) if pages < max_pages => url = next,
            next => {
                return Ok(
                    json!({"resource": p.resource, "count": records.len(), "records": records, "pages": pages, "more": next.is_some()}),
                );
            }
        }
    }
}

impl Connector for Rest {
    fn manifest() -> Manifest {
        let key = json!({"type": "object", "properties": {"resource": {"type": "string"}, "id": {"type": "string"}}, "required": ["resource", "id"], "additionalProperties": false});
        let write = |id_required: bool| {
            let mut required = vec!["resource", "body"];
            if id_required {
                required.push("id");
            }
            json!({"type": "object", "properties": {"resource": {"type": "string"}, "id": {"type": "string"}, "body": {}, "idempotency_key": {"type": "string"}}, "required": required, "additionalProperties": false})
        };
        Manifest::new("rest", "REST API", env!("CARGO_PKG_VERSION"), "CRUD on a JSON API configured by the connection")
            .config_schema(json!({
                "type": "object",
                "properties": {
                    "base_url": {"type": "string", "pattern": "^https?://"},
                    "resources": {"type": "array", "items": {"type": "string", "pattern": "^[A-Za-z0-9_.-]+$"}, "minItems": 1},
                    "page_size": {"type": "integer", "minimum": 1, "maximum": 1000}
                },
                "required": ["base_url", "resources"],
                "additionalProperties": false
            }))
            .operation(Operation::read("list", "List a resource, following pages").params_schema(json!({
                "type": "object",
                "properties": {"resource": {"type": "string"}, "query": {"type": "object"}, "max_pages": {"type": "integer", "minimum": 1}},
                "required": ["resource"], "additionalProperties": false
            })))
            .operation(Operation::read("get", "Get one record").params_schema(key.clone()))
            .operation(Operation::write("create", "POST a record").params_schema(write(false)))
            .operation(Operation::write("update", "PATCH a record").params_schema(write(true)))
            .operation(Operation::write("delete", "DELETE a record").risk(Risk::High).params_schema(key))
    }

    fn health() -> Result<String, Error> {
        let config = Config::load()?;
        let answer = call(Method::GET, &config.base_url, None, None)?;
        if answer.status >= 500 {
            return Err(Error::Upstream {
                status: answer.status,
                message: "the API is failing".into(),
            });
        }
        match check(answer) {
            // Reaching the API is what this checks; a 404 on its root is fine.
            Ok(_) | Err(Error::NotFound(_)) => {}
            Err(other) => return Err(other),
        }
        Ok(format!("{} reachable", config.base_url))
    }

    fn discover() -> Result<Vec<ObjectInfo>, Error> {
        let config = Config::load()?;
        Ok(config
            .resources
            .iter()
            .map(|r| ObjectInfo {
                name: r.clone(),
                description: format!("{}/{r}", config.base_url),
                fields: vec![Field::new("id", "string", true, "")],
            })
            .collect())
    }

    fn invoke(operation: &str, params: Params) -> Result<Value, Error> {
        let config = Config::load()?;
        match operation {
            "list" => list(&config, params.parse()?),
            "get" => {
                let p: KeyParams = params.parse()?;
                check(call(
                    Method::GET,
                    &config.url(&p.resource, Some(&p.id))?,
                    None,
                    None,
                )?)?
                .json()
            }
            "create" | "update" => {
                let p: WriteParams = params.parse()?;
                let (method, id) = if operation == "create" {
                    (Method::POST, None)
                } else {
                    (
                        Method::PATCH,
                        Some(
                            p.id.as_deref()
                                .ok_or_else(|| Error::invalid_params("update needs `id`"))?,
                        ),
                    )
                };
                let url = config.url(&p.resource, id)?;
                check(call(
                    method,
                    &url,
                    Some(&p.body),
                    p.idempotency_key.as_deref(),
                )?)?
                .json()
            }
            "delete" => {
                let p: KeyParams = params.parse()?;
                check(call(
                    Method::DELETE,
                    &config.url(&p.resource, Some(&p.id))?,
                    None,
                    None,
                )?)?;
                Ok(json!({"resource": p.resource, "id": p.id, "deleted": true}))
            }
            other => Err(Error::unknown_operation(other)),
        }
    }
}

airlock_guest::export_connector!(Rest);
