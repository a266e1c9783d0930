//! An invocation's params: a JSON object, parsed once where it enters (a CLI flag, an API body,
//! an approved request's sealed copy) and passed by reference from there on.
//!
//! The caller's text is kept as given: it is what the guest reads, and what an approval seals
//! and hashes, so the action that runs is byte for byte the one approved. The parsed value is
//! what policy reads (the schema check, the object a call touches, the cache key, the audit
//! record). Cloning is cheap: both live behind one `Arc`.

use crate::error::InvokeError;
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq)]
pub struct Params(Arc<Parsed>);

#[derive(Debug, PartialEq)]
struct Parsed {
    text: String,
    value: serde_json::Value,
}

impl Params {
    /// Parses `text`, which must be a JSON object.
    pub fn parse(text: impl Into<String>) -> Result<Params, InvokeError> {
        let text = text.into();
        match serde_json::from_str::<serde_json::Value>(&text) {
            Ok(value @ serde_json::Value::Object(_)) => {
                Ok(Params(Arc::new(Parsed { text, value })))
            }
            Ok(other) => Err(InvokeError::BadParams(format!(
                "got {}; pass an object such as '{{\"id\": \"1\"}}'",
                crate::capability::config::json_kind(&other)
            ))),
            Err(e) => Err(InvokeError::BadParams(format!("not valid JSON ({e})"))),
        }
    }

    /// The text as the caller gave it.
    pub fn text(&self) -> &str {
        &self.0.text
    }

    /// The parsed object.
    pub fn value(&self) -> &serde_json::Value {
        &self.0.value
    }

    /// The object the call touches, by convention: the `object` field, or the sandbox's `type`.
    /// A connection's `allowed_objects` is checked against it.
    pub fn object(&self) -> Option<&str> {
        let value = self.value();
        value
            .get("object")
            .or_else(|| value.get("type"))
            .and_then(|v| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_are_an_object_kept_as_given() {
        let p = Params::parse(r#"{ "type": "items",  "id": 1 }"#).unwrap();
        assert_eq!(p.text(), r#"{ "type": "items",  "id": 1 }"#);
        assert_eq!(p.value()["id"], 1);
        assert_eq!(p.object(), Some("items"));
        for (bad, says) in [
            ("[1]", "got an array"),
            ("\"x\"", "got a string"),
            ("{", "not valid JSON"),
        ] {
            let err = Params::parse(bad).unwrap_err().to_string();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }
}
