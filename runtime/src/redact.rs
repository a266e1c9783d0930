//! Redaction of secret-looking values, for everything that records or shows what a caller or a
//! guest sent: audit records, dry-run previews, approval views. One list of names and value
//! shapes, used by every layer (the egress hook's dry run, the control plane's audit), so a
//! name added here is redacted everywhere. This complements `crate::secrets`, which masks the
//! exact secrets the host injected; this masks what merely looks like one.

use serde_json::Value;

/// Names of fields whose values are secrets, matched case-insensitively as substrings after
/// removing `-` and `_`.
const SECRET_NAMES: &[&str] = &[
    "password",
    "passwd",
    "secret",
    "token",
    "apikey",
    "authorization",
    "auth",
    "credential",
    "privatekey",
    "cookie",
    "session",
    "signature",
    "ssn",
];
pub const REDACTED: &str = "[REDACTED]";

/// Whether a field of this name holds a secret.
pub fn secret_name(name: &str) -> bool {
    let folded: String = name
        .chars()
        .filter(|c| *c != '-' && *c != '_')
        .flat_map(char::to_lowercase)
        .collect();
    SECRET_NAMES.iter().any(|s| folded.contains(s))
}

/// A value that is a secret whatever its field is called: bearer tokens, JWTs, AWS access keys,
/// PEM private keys.
fn secret_value(text: &str) -> bool {
    let t = text.trim();
    let jwt = {
        let parts: Vec<&str> = t.split('.').collect();
        parts.len() == 3
            && t.starts_with("eyJ")
            && parts.iter().all(|p| {
                !p.is_empty()
                    && p.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            })
    };
    let aws = t.len() == 20
        && (t.starts_with("AKIA") || t.starts_with("ASIA"))
        && t.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
    t.to_ascii_lowercase().starts_with("bearer ")
        || t.to_ascii_lowercase().starts_with("basic ")
        || jwt
        || aws
        || t.contains("PRIVATE KEY-----")
}

/// A copy of `value` with secret-looking values replaced by [`REDACTED`].
pub fn redact(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let v = if secret_name(k) && !v.is_object() && !v.is_array() {
                        Value::String(REDACTED.into())
                    } else {
                        redact(v)
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(redact).collect()),
        Value::String(s) if secret_value(s) => Value::String(REDACTED.into()),
        other => other.clone(),
    }
}
