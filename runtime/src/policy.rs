//! The one place that decides whether an effect a guest asks for may happen.
//!
//! Every capability's host functions follow the same three steps: decode the guest's request,
//! call [`authorize`] with the [`Effect`] and the invocation, then call the backend. Keeping the
//! rules here, and nowhere else, means a new capability (or a new WIT version of an old one)
//! cannot grow its own copy of a check that later drifts. Denials are values that name the rule
//! that denied and what would allow the effect; they are recorded on the invocation so the caller
//! sees them even when the guest swallows the error.

use crate::invocation::{Access, Invocation};

/// Something a guest asks the host to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect<'a> {
    /// Open a key-value bucket of this connection.
    KeyValueOpen { bucket: &'a str },
    /// Write or delete keys in a bucket.
    KeyValueWrite { bucket: &'a str },
    /// Send an HTTP request.
    HttpRequest { method: &'a str, authority: &'a str },
}

/// Why an effect was refused.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, thiserror::Error)]
#[error("{effect} denied by rule `{rule}`: {reason}")]
pub struct Denial {
    /// The rule's stable name, for audit records and documentation.
    pub rule: &'static str,
    /// What was asked, e.g. `write to key-value bucket "items"`.
    pub effect: String,
    /// Why, and what would allow it.
    pub reason: String,
}

/// Rule: a `read` operation has no write path to storage.
pub const RULE_READ_ONLY_OPERATION: &str = "read-only-operation";
/// Rule: bucket names are identifiers, never paths or prefixes.
pub const RULE_BUCKET_NAME: &str = "bucket-name";
/// Rule: no egress until a connection grants it (the egress policy arrives with its own module).
pub const RULE_NO_EGRESS_GRANTS: &str = "no-egress-grants";

/// Decides `effect` for `invocation`. Fails closed: an effect with no rule that allows it is
/// denied.
pub fn authorize(invocation: &Invocation, effect: &Effect<'_>) -> Result<(), Denial> {
    match *effect {
        Effect::KeyValueOpen { bucket } => crate::invocation::validate_id("bucket", bucket)
            .map_err(|reason| Denial {
                rule: RULE_BUCKET_NAME,
                effect: format!("open key-value bucket {bucket:?}"),
                reason,
            }),
        Effect::KeyValueWrite { bucket } => match invocation.access {
            Access::Write => Ok(()),
            Access::Read => Err(Denial {
                rule: RULE_READ_ONLY_OPERATION,
                effect: format!("write to key-value bucket {bucket:?}"),
                reason: format!(
                    "operation `{}` is declared `read`; declare it `write` in the manifest to let it change storage",
                    invocation.operation
                ),
            }),
        },
        Effect::HttpRequest { method, authority } => Err(Denial {
            rule: RULE_NO_EGRESS_GRANTS,
            effect: format!("{method} request to {authority}"),
            reason: format!(
                "connection `{}` has no egress grants; this runtime denies all network access",
                invocation.connection
            ),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::invocation::Role;

    fn invocation(access: Access) -> Invocation {
        Invocation::new("t1", "alice", Role::Operator, "c1", "op", access).unwrap()
    }

    #[test]
    fn policy_read_operation_cannot_write_storage() {
        let denial = authorize(
            &invocation(Access::Read),
            &Effect::KeyValueWrite { bucket: "b" },
        )
        .unwrap_err();
        assert_eq!(denial.rule, RULE_READ_ONLY_OPERATION);
        assert!(
            denial.to_string().contains("declare it `write`"),
            "{denial}"
        );
        authorize(
            &invocation(Access::Write),
            &Effect::KeyValueWrite { bucket: "b" },
        )
        .unwrap();
    }

    #[test]
    fn policy_bucket_names_are_identifiers() {
        for bad in ["", "../x", "a/b", "a\0b", &"x".repeat(129)] {
            let denial = authorize(
                &invocation(Access::Write),
                &Effect::KeyValueOpen { bucket: bad },
            )
            .unwrap_err();
            assert_eq!(denial.rule, RULE_BUCKET_NAME, "{bad:?}");
        }
        authorize(
            &invocation(Access::Read),
            &Effect::KeyValueOpen { bucket: "items" },
        )
        .unwrap();
    }

    #[test]
    fn policy_denies_all_egress() {
        let denial = authorize(
            &invocation(Access::Write),
            &Effect::HttpRequest {
                method: "GET",
                authority: "example.com:443",
            },
        )
        .unwrap_err();
        assert_eq!(denial.rule, RULE_NO_EGRESS_GRANTS);
        assert!(
            denial
                .to_string()
                .contains("GET request to example.com:443")
        );
    }
}
