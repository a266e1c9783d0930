//! The mail connector, over a Microsoft Graph-style mail API: messages (list, get, send),
//! folders and contacts. As in the seeds, it is a prototype: the host runs `send_mail` as a dry
//! run (the request that would go out is captured and shown, nothing leaves) unless the
//! connection sets `--dry-run false` or the host runs with `DRY_RUN=false`. The token is the
//! host's (a bearer or OAuth2 credential for the API host).

use airlock_guest::http::{self, Method};
use airlock_guest::{Connector, Error, Manifest, ObjectInfo, Operation, Params, Risk, Value, json};
use serde::Deserialize;

struct Mail;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default = "default_base")]
    api_base: String,
    /// `me`, or `users/<id>`.
    #[serde(default = "default_user")]
    user: String,
}

fn default_base() -> String {
    "https://graph.microsoft.com/v1.0".into()
}
fn default_user() -> String {
    "me".into()
}

impl Config {
    fn load() -> Result<Self, Error> {
        airlock_guest::config::parse()
    }
    fn url(&self, tail: &str) -> String {
        format!(
            "{}/{}/{tail}",
            self.api_base.trim_end_matches('/'),
            self.user
        )
    }
}

fn segment(kind: &str, value: &str) -> Result<String, Error> {
    if value.is_empty()
        || !value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_=".contains(&b))
    {
        return Err(Error::invalid_params(format!(
            "{kind} `{value}` is not a valid id"
        )));
    }
    Ok(value.to_owned())
}

fn call(method: Method, url: &str, body: Option<&Value>) -> Result<Value, Error> {
    // Graph errors are {"error": {"code", "message"}}.
    http::send(method, url, &[], body)?
        .error_for_status(|r| {
            let e: Value = serde_json::from_str(&r.body).unwrap_or_default();
            format!(
                "{}: {}",
                e["error"]["code"].as_str().unwrap_or("Error"),
                e["error"]["message"].as_str().unwrap_or("")
            )
        })?
        .json()
}

/// Follows `@odata.nextLink` pages of a collection.
fn collection(first: String, max_pages: u32) -> Result<Value, Error> {
    let (mut items, mut url, mut pages) = (Vec::new(), first, 0);
    loop {
        let page = call(Method::GET, &url, None)?;
        pages += 1;
        if let Some(list) = page["value"].as_array() {
            items.extend(list.iter().cloned());
        }
        match page["@odata.nextLink"].as_str() {
            Some(next) if pages < max_pages => url = next.to_owned(),
            next => {
                return Ok(
                    json!({"count": items.len(), "items": items, "pages": pages, "more": next.is_some()}),
                );
            }
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListMessages {
    #[serde(default = "inbox")]
    folder: String,
    top: Option<u32>,
    max_pages: Option<u32>,
}
fn inbox() -> String {
    "inbox".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SendMail {
    to: Vec<String>,
    #[serde(default)]
    cc: Vec<String>,
    subject: String,
    body: String,
}

fn recipients(list: &[String]) -> Result<Value, Error> {
    list.iter()
        .map(|a| {
            if a.contains('@') && !a.contains(char::is_whitespace) {
                Ok(json!({"emailAddress": {"address": a}}))
            } else {
                Err(Error::invalid_params(format!(
                    "`{a}` is not an email address"
                )))
            }
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Value::Array)
}

impl Connector for Mail {
    fn manifest() -> Manifest {
        Manifest::new("mail", "Mail", env!("CARGO_PKG_VERSION"), "Messages, folders and contacts over a Graph-style mail API")
            .host("https://graph.microsoft.com")
            .prototype()
            .config_schema(json!({
                "type": "object",
                "properties": {
                    "api_base": {"type": "string", "pattern": "^https?://"},
                    "user": {"type": "string"}
                },
                "additionalProperties": false
            }))
            .operation(Operation::read("list_messages", "List a folder's messages").params_schema(json!({
                "type": "object",
                "properties": {"folder": {"type": "string"}, "top": {"type": "integer", "minimum": 1}, "max_pages": {"type": "integer", "minimum": 1}},
                "additionalProperties": false
            })))
            .operation(Operation::read("get_message", "Get one message").params_schema(json!({
                "type": "object", "properties": {"id": {"type": "string"}}, "required": ["id"], "additionalProperties": false
            })))
            .operation(Operation::read("list_folders", "List mail folders"))
            .operation(Operation::read("list_contacts", "List contacts"))
            .operation(Operation::write("send_mail", "Send a message (a dry run unless the connection or the host turns dry runs off)").risk(Risk::High).params_schema(json!({
                "type": "object",
                "properties": {"to": {"type": "array", "items": {"type": "string"}, "minItems": 1}, "cc": {"type": "array", "items": {"type": "string"}}, "subject": {"type": "string"}, "body": {"type": "string"}},
                "required": ["to", "subject", "body"], "additionalProperties": false
            })))
    }

    fn discover() -> Result<Vec<ObjectInfo>, Error> {
        Ok(["messages", "folders", "contacts"]
            .iter()
            .map(|n| ObjectInfo {
                name: (*n).into(),
                description: String::new(),
                fields: Vec::new(),
            })
            .collect())
    }

    fn invoke(operation: &str, params: Params) -> Result<Value, Error> {
        let config = Config::load()?;
        match operation {
            "list_messages" => {
                let p: ListMessages = params.parse()?;
                let url = config.url(&format!(
                    "mailFolders/{}/messages?$top={}",
                    segment("folder", &p.folder)?,
                    p.top.unwrap_or(25)
                ));
                collection(url, p.max_pages.unwrap_or(10))
            }
            "get_message" => {
                #[derive(Deserialize)]
                struct Id {
                    id: String,
                }
                let p: Id = params.parse()?;
                call(
                    Method::GET,
                    &config.url(&format!("messages/{}", segment("id", &p.id)?)),
                    None,
                )
            }
            "list_folders" => collection(config.url("mailFolders"), 10),
            "list_contacts" => collection(config.url("contacts"), 10),
            "send_mail" => {
                let p: SendMail = params.parse()?;
                let message = json!({
                    "message": {
                        "subject": p.subject,
                        "body": {"contentType": "Text", "content": p.body},
                        "toRecipients": recipients(&p.to)?,
                        "ccRecipients": recipients(&p.cc)?,
                    },
                    "saveToSentItems": true
                });
                call(Method::POST, &config.url("sendMail"), Some(&message))?;
                Ok(json!({"sent": true}))
            }
            other => Err(Error::unknown_operation(other)),
        }
    }
}

airlock_guest::export_connector!(Mail);
