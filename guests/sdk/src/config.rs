//! The connection's non-secret configuration (`wasi:config/store`).

use crate::Error;
use crate::bindings::wasi::config::store;
use serde_json::{Map, Value};

fn config_error(e: store::Error) -> Error {
    match e {
        store::Error::Upstream(m) | store::Error::Io(m) => {
            Error::Internal(format!("reading config: {m}"))
        }
    }
}

/// One config value as text, if set.
pub fn get(key: &str) -> Result<Option<String>, Error> {
    store::get(key).map_err(config_error)
}

/// The whole config as a JSON object: values that are JSON texts (numbers, booleans, objects)
/// become those values, anything else a string.
pub fn all() -> Result<Value, Error> {
    let mut map = Map::new();
    for (key, text) in store::get_all().map_err(config_error)? {
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        map.insert(key, value);
    }
    Ok(Value::Object(map))
}

/// The config deserialized into `T`; a mismatch names the field.
pub fn parse<T: serde::de::DeserializeOwned>() -> Result<T, Error> {
    serde_json::from_value(all()?)
        .map_err(|e| Error::InvalidParams(format!("connection config: {e}")))
}
