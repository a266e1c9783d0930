//! `wasi:config/store`: the connection's non-secret configuration, read-only.
//!
//! The config is a JSON object set by whoever configured the connection; each top-level field is
//! one config key. Strings are given as they are, other values as their JSON text. Secrets never
//! live here: credentials are injected by the host at the egress choke point.

use crate::bindings::wasi::config::store;
use std::sync::Arc;
use wasmtime::component::{HasData, Linker};

/// The connection's config, flattened once per connection and shared by its invocations.
#[derive(Debug, Clone, Default)]
pub struct ConfigCtx {
    values: Arc<Vec<(String, String)>>,
}

impl ConfigCtx {
    /// Builds the config from a JSON object. Anything else is refused with a message that says
    /// what was given.
    pub fn from_json(config: &serde_json::Value) -> Result<Self, String> {
        let object = match config {
            serde_json::Value::Object(map) => map,
            serde_json::Value::Null => return Ok(Self::default()),
            other => {
                return Err(format!(
                    "connection config must be a JSON object, got {}",
                    json_kind(other)
                ));
            }
        };
        let values = object
            .iter()
            .map(|(k, v)| {
                let text = match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (k.clone(), text)
            })
            .collect();
        Ok(ConfigCtx {
            values: Arc::new(values),
        })
    }
}

pub(crate) fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

pub struct ConfigView<'a> {
    pub ctx: &'a ConfigCtx,
}

pub struct Config;

impl HasData for Config {
    type Data<'a> = ConfigView<'a>;
}

pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> ConfigView<'_>,
) -> wasmtime::Result<()> {
    store::add_to_linker::<T, Config>(linker, get)
}

impl store::Host for ConfigView<'_> {
    async fn get(&mut self, key: String) -> wasmtime::Result<Result<Option<String>, store::Error>> {
        Ok(Ok(self
            .ctx
            .values
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.clone())))
    }

    async fn get_all(&mut self) -> wasmtime::Result<Result<Vec<(String, String)>, store::Error>> {
        Ok(Ok(self.ctx.values.as_ref().clone()))
    }
}
