//! The Salesforce connector, over the REST API: `query` (SOQL, following `nextRecordsUrl`),
//! `get`, `create` and `update` on sObjects, and `discover` from `describe`. Authentication is
//! the host's: give the connection an OAuth2 client-credentials credential for the instance.

use airlock_guest::http::{self, Method, encode};
use airlock_guest::{
    Connector, Error, Field, Manifest, ObjectInfo, Operation, Params, Value, json,
};
use serde::Deserialize;

struct Salesforce;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// e.g. https://acme.my.salesforce.com
    instance_url: String,
    /// e.g. v60.0
    #[serde(default = "default_version")]
    api_version: String,
    /// The sObjects `discover` describes (default: Account, Contact, Lead).
    #[serde(default)]
    objects: Vec<String>,
}

fn default_version() -> String {
    "v60.0".into()
}

impl Config {
    fn load() -> Result<Self, Error> {
        airlock_guest::config::parse()
    }

    fn data(&self) -> String {
        format!(
            "{}/services/data/{}",
            self.instance_url.trim_end_matches('/'),
            self.api_version
        )
    }
}

fn identifier(kind: &str, value: &str) -> Result<(), Error> {
    if value.is_empty()
        || !value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        return Err(Error::invalid_params(format!(
            "{kind} `{value}` must be letters, digits and _"
        )));
    }
    Ok(())
}

fn call(method: Method, url: &str, body: Option<&Value>) -> Result<(u16, Value), Error> {
    // Salesforce errors are a list of {message, errorCode}.
    let response = http::send(method, url, &[], body)?.error_for_status(|r| {
        let errors: Value = serde_json::from_str(&r.body).unwrap_or_default();
        errors
            .as_array()
            .and_then(|a| a.first())
            .map(|e| {
                format!(
                    "{}: {}",
                    e["errorCode"].as_str().unwrap_or("ERROR"),
                    e["message"].as_str().unwrap_or("")
                )
            })
            .unwrap_or_else(|| r.body.clone())
    })?;
    Ok((response.status, response.json()?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Query {
    soql: String,
    /// Pages to follow at most (default 10).
    max_pages: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Record {
    object: String,
    id: Option<String>,
    #[serde(default)]
    fields: serde_json::Map<String, Value>,
}

impl Connector for Salesforce {
    fn manifest() -> Manifest {
        let record = |id: bool| {
            let mut required = vec!["object"];
            if id {
                required.push("id");
            }
            json!({"type": "object", "properties": {"object": {"type": "string"}, "id": {"type": "string"}, "fields": {"type": "object"}}, "required": required, "additionalProperties": false})
        };
        Manifest::new("salesforce", "Salesforce", env!("CARGO_PKG_VERSION"), "SOQL queries and sObject records")
            .host("https://*.my.salesforce.com")
            .config_schema(json!({
                "type": "object",
                "properties": {
                    "instance_url": {"type": "string", "pattern": "^https?://"},
                    "api_version": {"type": "string", "pattern": "^v[0-9]+\\.[0-9]$"},
                    "objects": {"type": "array", "items": {"type": "string"}}
                },
                "required": ["instance_url"],
                "additionalProperties": false
            }))
            .operation(Operation::read("query", "Run a SOQL query, following nextRecordsUrl").params_schema(json!({
                "type": "object",
                "properties": {"soql": {"type": "string", "minLength": 1}, "max_pages": {"type": "integer", "minimum": 1}},
                "required": ["soql"], "additionalProperties": false
            })))
            .operation(Operation::read("get", "Get an sObject record").params_schema(record(true)))
            .operation(Operation::write("create", "Create an sObject record").params_schema(record(false)))
            .operation(Operation::write("update", "Update an sObject record's fields").params_schema(record(true)))
    }

    fn discover() -> Result<Vec<ObjectInfo>, Error> {
        let config = Config::load()?;
        let objects = if config.objects.is_empty() {
            vec!["Account".into(), "Contact".into(), "Lead".into()]
        } else {
            config.objects.clone()
        };
        let mut out = Vec::new();
        for object in objects {
            identifier("object", &object)?;
            let (_, describe) = call(
                Method::GET,
                &format!("{}/sobjects/{object}/describe", config.data()),
                None,
            )?;
            let fields = describe["fields"]
                .as_array()
                .map(|fs| {
                    fs.iter()
                        .map(|f| {
                            let required =
                                f["nillable"] == json!(false) && f["createable"] == json!(true);
                            Field::new(
                                f["name"].as_str().unwrap_or(""),
                                f["type"].as_str().unwrap_or("string"),
                                required,
                                f["label"].as_str().unwrap_or(""),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            out.push(ObjectInfo {
                name: object,
                description: describe["label"].as_str().unwrap_or("").to_owned(),
                fields,
            });
        }
        Ok(out)
    }

    fn invoke(operation: &str, params: Params) -> Result<Value, Error> {
        let config = Config::load()?;
        match operation {
            "query" => {
                let q: Query = params.parse()?;
                let mut url = format!("{}/query?q={}", config.data(), encode(&q.soql));
                let (mut records, mut pages) = (Vec::new(), 0);
                loop {
                    let (_, page) = call(Method::GET, &url, None)?;
                    pages += 1;
                    if let Some(list) = page["records"].as_array() {
                        records.extend(list.iter().cloned());
                    }
                    let next = page["nextRecordsUrl"].as_str().map(str::to_owned);
                    match next {
                        Some(next) if pages < q.max_pages.unwrap_or(10) => {
                            url = format!("{}{next}", config.instance_url.trim_end_matches('/'))
                        }
                        next => {
                            return Ok(
                                json!({"totalSize": page["totalSize"], "count": records.len(), "records": records, "pages": pages, "done": next.is_none()}),
                            );
                        }
                    }
                }
            }
            "get" | "create" | "update" => {
                let r: Record = params.parse()?;
                identifier("object", &r.object)?;
                let base = format!("{}/sobjects/{}", config.data(), r.object);
                match (operation, r.id) {
                    ("get", Some(id)) => {
                        identifier("id", &id)?;
                        Ok(call(Method::GET, &format!("{base}/{id}"), None)?.1)
                    }
                    ("create", _) => {
                        let (_, created) = call(
                            Method::POST,
                            &format!("{base}/"),
                            Some(&Value::Object(r.fields)),
                        )?;
                        Ok(json!({"id": created["id"], "success": created["success"]}))
                    }
                    ("update", Some(id)) => {
                        identifier("id", &id)?;
                        call(
                            Method::PATCH,
                            &format!("{base}/{id}"),
                            Some(&Value::Object(r.fields)),
                        )?;
                        Ok(json!({"id": id, "updated": true}))
                    }
                    _ => Err(Error::invalid_params(format!("{operation} needs `id`"))),
                }
            }
            other => Err(Error::unknown_operation(other)),
        }
    }
}

airlock_guest::export_connector!(Salesforce);
