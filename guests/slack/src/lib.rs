//! The Slack connector, over the Slack Web API: `post_message` (chat.postMessage),
//! `list_channels` (conversations.list, following `response_metadata.next_cursor`) and
//! `history` (conversations.history). The bot token is the host's: give the connection a bearer
//! credential for the API host. Slack answers HTTP 200 with `"ok": false` and an error code for
//! most failures; those become errors a caller can act on.

use airlock_guest::http::{self, encode};
use airlock_guest::{Connector, Error, Manifest, ObjectInfo, Operation, Params, Value, json};
use serde::Deserialize;

struct Slack;

const DEFAULT_API: &str = "https://slack.com/api";

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct Config {
    /// The Web API root; tests point it at a local server.
    api_base: Option<String>,
}

impl Config {
    fn base(&self) -> String {
        self.api_base
            .clone()
            .unwrap_or_else(|| DEFAULT_API.into())
            .trim_end_matches('/')
            .to_owned()
    }
}

/// Calls a Web API method; GET with a query, or POST with a JSON body.
fn api(method: &str, query: &[(&str, String)], body: Option<Value>) -> Result<Value, Error> {
    let config: Config = airlock_guest::config::parse()?;
    let mut url = format!("{}/{method}", config.base());
    if !query.is_empty() {
        let q: Vec<String> = query
            .iter()
            .map(|(k, v)| format!("{k}={}", encode(v)))
            .collect();
        url = format!("{url}?{}", q.join("&"));
    }
    let http_method = if body.is_some() {
        http::Method::POST
    } else {
        http::Method::GET
    };
    let response = http::send(http_method, &url, &[], body.as_ref())?;
    let (status, retry_after_ms) = (response.status, response.retry_after_ms());
    if status == 429 {
        return Err(Error::RateLimited {
            retry_after_ms,
            message: format!("{method} is rate limited"),
        });
    }
    let value = response.json()?;
    if value["ok"] == json!(true) {
        return Ok(value);
    }
    let code = value["error"]
        .as_str()
        .unwrap_or("unknown_error")
        .to_owned();
    Err(match code.as_str() {
        "invalid_auth" | "not_authed" | "account_inactive" | "token_revoked" | "missing_scope" => {
            Error::Unauthorized(format!("{method}: {code}"))
        }
        "channel_not_found" | "not_in_channel" | "user_not_found" => {
            Error::NotFound(format!("{method}: {code}"))
        }
        "invalid_arguments" | "no_text" | "msg_too_long" | "invalid_cursor" => {
            Error::InvalidParams(format!("{method}: {code}"))
        }
        "ratelimited" => Error::RateLimited {
            retry_after_ms,
            message: code,
        },
        _ => Error::Upstream {
            status,
            message: format!("{method}: {code}"),
        },
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PostMessage {
    channel: String,
    text: String,
    thread_ts: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct ListChannels {
    /// Pages to follow at most (default 10).
    max_pages: Option<u32>,
    limit: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct History {
    channel: String,
    limit: Option<u32>,
}

impl Connector for Slack {
    fn manifest() -> Manifest {
        Manifest::new("slack", "Slack", env!("CARGO_PKG_VERSION"), "Post messages, list channels, read history")
            .host("https://slack.com")
            .config_schema(json!({
                "type": "object",
                "properties": {"api_base": {"type": "string", "pattern": "^https?://"}},
                "additionalProperties": false
            }))
            .operation(Operation::write("post_message", "Post a message to a channel").params_schema(json!({
                "type": "object",
                "properties": {"channel": {"type": "string"}, "text": {"type": "string", "minLength": 1}, "thread_ts": {"type": "string"}},
                "required": ["channel", "text"], "additionalProperties": false
            })))
            .operation(Operation::read("list_channels", "List channels, following cursors").params_schema(json!({
                "type": "object",
                "properties": {"max_pages": {"type": "integer", "minimum": 1}, "limit": {"type": "integer", "minimum": 1, "maximum": 1000}},
                "additionalProperties": false
            })))
            .operation(Operation::read("history", "Read a channel's recent messages").params_schema(json!({
                "type": "object",
                "properties": {"channel": {"type": "string"}, "limit": {"type": "integer", "minimum": 1, "maximum": 1000}},
                "required": ["channel"], "additionalProperties": false
            })))
    }

    fn health() -> Result<String, Error> {
        let who = api("auth.test", &[], None)?;
        Ok(format!(
            "connected to {} as {}",
            who["team"].as_str().unwrap_or("?"),
            who["user"].as_str().unwrap_or("?")
        ))
    }

    fn discover() -> Result<Vec<ObjectInfo>, Error> {
        Ok(vec![ObjectInfo {
            name: "channels".into(),
            description: "conversations the bot can see".into(),
            fields: Vec::new(),
        }])
    }

    fn invoke(operation: &str, params: Params) -> Result<Value, Error> {
        match operation {
            "post_message" => {
                let p: PostMessage = params.parse()?;
                let mut body = json!({"channel": p.channel, "text": p.text});
                if let Some(ts) = p.thread_ts {
                    body["thread_ts"] = json!(ts);
                }
                let answer = api("chat.postMessage", &[], Some(body))?;
                Ok(json!({"channel": answer["channel"], "ts": answer["ts"]}))
            }
            "list_channels" => {
                let p: ListChannels = params.parse()?;
                let (mut channels, mut cursor, mut pages) = (Vec::new(), String::new(), 0);
                loop {
                    let mut query = vec![("limit", p.limit.unwrap_or(200).to_string())];
                    if !cursor.is_empty() {
                        query.push(("cursor", cursor.clone()));
                    }
                    let answer = api("conversations.list", &query, None)?;
                    pages += 1;
                    if let Some(list) = answer["channels"].as_array() {
                        channels.extend(
                            list.iter()
                                .map(|c| json!({"id": c["id"], "name": c["name"]})),
                        );
                    }
                    cursor = answer["response_metadata"]["next_cursor"]
                        .as_str()
                        .unwrap_or("")
                        .to_owned();
                    if cursor.is_empty() || pages >= p.max_pages.unwrap_or(10) {
                        return Ok(
                            json!({"count": channels.len(), "channels": channels, "pages": pages, "more": !cursor.is_empty()}),
                        );
                    }
                }
            }
            "history" => {
                let p: History = params.parse()?;
                let answer = api(
                    "conversations.history",
                    &[
                        ("channel", p.channel),
                        ("limit", p.limit.unwrap_or(100).to_string()),
                    ],
                    None,
                )?;
                Ok(json!({"messages": answer["messages"]}))
            }
            other => Err(Error::unknown_operation(other)),
        }
    }
}

airlock_guest::export_connector!(Slack);
