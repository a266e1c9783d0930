//! The one place that decides whether an effect a guest asks for may happen.
//!
//! Every capability's host functions follow the same three steps: decode the guest's request,
//! call [`authorize`] with the [`Effect`] and the invocation, then call the backend. Keeping the
//! rules here, and nowhere else, means a new capability (or a new WIT version of an old one)
//! cannot grow its own copy of a check that later drifts. Denials are values that name the rule
//! that denied and what would allow the effect; they are recorded on the invocation so the caller
//! sees them even when the guest swallows the error.

use crate::egress::address::non_global_reason;
use crate::egress::grant::{Grant, HostPattern};
use crate::invocation::{Access, Invocation};
use crate::remedy::Remedy;

/// Something a guest asks the host to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect<'a> {
    /// Open a key-value bucket of this connection.
    KeyValueOpen { bucket: &'a str },
    /// Write or delete keys in a bucket.
    KeyValueWrite { bucket: &'a str },
    /// Send an HTTP request.
    HttpRequest(&'a HttpTarget<'a>),
}

/// An outgoing request, decoded by the `wasi:http` capability, with the connection's grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpTarget<'a> {
    pub method: &'a str,
    pub scheme: &'a str,
    /// Lowercase, without a trailing dot; IPv6 literals in brackets.
    pub host: &'a str,
    pub port: u16,
    pub path: &'a str,
    /// The authority carried user info (`user@host`).
    pub userinfo: bool,
    pub grants: &'a [Grant],
    /// Requests the operation declared as reads and the connection accepted: (method, where).
    pub read_routes: &'a [(String, Grant)],
}

impl HttpTarget<'_> {
    pub fn origin(&self) -> String {
        format!("{}://{}:{}", self.scheme, self.host, self.port)
    }
}

/// Why an effect was refused.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, thiserror::Error, utoipa::ToSchema)]
#[error("{effect} denied by rule `{rule}`: {reason}")]
pub struct Denial {
    /// The rule's stable name, for audit records and documentation.
    pub rule: &'static str,
    /// What was asked, e.g. `write to key-value bucket "items"`.
    pub effect: String,
    /// Why.
    pub reason: String,
    /// What would allow it, for the front end to put in its own terms.
    pub remedy: Option<crate::remedy::Remedy>,
}

/// Rule: a `read` operation has no write path to storage.
pub const RULE_READ_ONLY_OPERATION: &str = "read-only-operation";
/// Rule: bucket names are identifiers, never paths or prefixes.
pub const RULE_BUCKET_NAME: &str = "bucket-name";
/// Rule: no egress until a connection grants it.
pub const RULE_NO_EGRESS_GRANTS: &str = "no-egress-grants";
/// Rule: the destination matches none of the connection's grants.
pub const RULE_EGRESS_NOT_GRANTED: &str = "egress-not-granted";
/// Rule: a `read` operation sends only GET, HEAD and OPTIONS.
pub const RULE_READ_ONLY_METHOD: &str = "read-operation-unsafe-method";
/// Rule: no user info in request authorities (`allowed@evil`).
pub const RULE_EGRESS_USERINFO: &str = "egress-userinfo";
/// Rule: no `.`/`..` path segments (plain or percent-encoded), which a server would resolve past a
/// granted path prefix.
pub const RULE_EGRESS_PATH: &str = "egress-path-traversal";
/// Rule: loopback, private, link-local and metadata addresses only when a grant names the address.
pub const RULE_EGRESS_ADDRESS: &str = "egress-non-global-address";

/// Rule: a guest denied more than `capability::MAX_DENIALS` effects in one invocation is
/// stopped.
pub const RULE_TOO_MANY_DENIALS: &str = "too-many-denials";

/// Methods a `read` operation may send.
const SAFE_METHODS: [&str; 3] = ["GET", "HEAD", "OPTIONS"];

fn has_dot_segment(path: &str) -> bool {
    path.split('/').any(|segment| {
        let decoded = segment.to_ascii_lowercase().replace("%2e", ".");
        decoded == "." || decoded == ".."
    })
}

fn decide_http(invocation: &Invocation, t: &HttpTarget<'_>) -> Result<(), Denial> {
    let refuse = |rule: &'static str, reason: String, remedy: Option<Remedy>| {
        Err(Denial {
            rule,
            effect: format!("{} request to {}", t.method, t.origin()),
            reason,
            remedy,
        })
    };
    let deny = |rule: &'static str, reason: String| refuse(rule, reason, None);
    let grant_egress = || {
        Some(Remedy::GrantEgress {
            connection: invocation.connection.clone(),
            origin: t.origin(),
        })
    };
    let declared_read = t.read_routes.iter().any(|(method, route)| {
        method == t.method && route.matches(t.scheme, t.host, t.port, t.path)
    });
    if invocation.access == Access::Read && !SAFE_METHODS.contains(&t.method) && !declared_read {
        return deny(
            RULE_READ_ONLY_METHOD,
            format!(
                "operation `{}` is declared `read`, which sends only GET, HEAD and OPTIONS; declare it `write` to send {}",
                invocation.operation, t.method
            ),
        );
    }
    if t.userinfo {
        return deny(
            RULE_EGRESS_USERINFO,
            "the URL carries user info (`user@host`); send credentials as headers".into(),
        );
    }
    if t.grants.is_empty() {
        return refuse(
            RULE_NO_EGRESS_GRANTS,
            format!(
                "connection `{}` has no egress grants",
                invocation.connection
            ),
            grant_egress(),
        );
    }
    if has_dot_segment(t.path) {
        return deny(
            RULE_EGRESS_PATH,
            format!("the path `{}` has `.` or `..` segments", t.path),
        );
    }
    let Some(grant) = t
        .grants
        .iter()
        .find(|g| g.matches(t.scheme, t.host, t.port, t.path))
    else {
        let granted: Vec<&str> = t.grants.iter().map(|g| g.text.as_str()).collect();
        return refuse(
            RULE_EGRESS_NOT_GRANTED,
            format!(
                "not in connection `{}`'s egress grants ({})",
                invocation.connection,
                granted.join(", "),
            ),
            grant_egress(),
        );
    };
    // An IP literal that is not global passes only under a grant that names that address.
    if let Ok(ip) = t
        .host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<std::net::IpAddr>()
        && let Some(why) = non_global_reason(ip)
        && !matches!(grant.host, HostPattern::Ip(_))
    {
        return deny(
            RULE_EGRESS_ADDRESS,
            format!("{ip} is {why}; only a grant naming the address allows it"),
        );
    }
    Ok(())
}

/// Decides the addresses a granted name resolved to: every one must be global.
pub fn authorize_resolved(t: &HttpTarget<'_>, resolved: Result<(), String>) -> Result<(), Denial> {
    resolved.map_err(|reason| Denial {
        rule: RULE_EGRESS_ADDRESS,
        effect: format!("{} request to {}", t.method, t.origin()),
        reason: format!("{reason}; names must resolve to global addresses (grant an IP address to reach a private one)"),
        remedy: None,
    })
}

/// Decides `effect` for `invocation`. Fails closed: an effect with no rule that allows it is
/// denied.
pub fn authorize(invocation: &Invocation, effect: &Effect<'_>) -> Result<(), Denial> {
    match *effect {
        Effect::KeyValueOpen { bucket } => crate::invocation::validate_id("bucket", bucket)
            .map_err(|reason| Denial {
                rule: RULE_BUCKET_NAME,
                effect: format!(
                    "open key-value bucket \"{}\"",
                    crate::invocation::shown(bucket)
                ),
                reason,
                remedy: None,
            }),
        Effect::KeyValueWrite { bucket } => match invocation.access {
            Access::Write => Ok(()),
            Access::Read => Err(Denial {
                rule: RULE_READ_ONLY_OPERATION,
                effect: format!(
                    "write to key-value bucket \"{}\"",
                    crate::invocation::shown(bucket)
                ),
                reason: format!(
                    "operation `{}` is declared `read`; declare it `write` in the manifest to let it change storage",
                    invocation.operation
                ),
                remedy: None,
            }),
        },
        Effect::HttpRequest(target) => decide_http(invocation, target),
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

    fn target<'a>(
        method: &'a str,
        host: &'a str,
        port: u16,
        path: &'a str,
        grants: &'a [Grant],
    ) -> HttpTarget<'a> {
        HttpTarget {
            method,
            scheme: "https",
            host,
            port,
            path,
            userinfo: false,
            grants,
            read_routes: &[],
        }
    }

    #[test]
    fn policy_decides_egress_in_order() {
        let none: Vec<Grant> = Vec::new();
        let grants = vec![
            Grant::parse("https://api.example.com/v1").unwrap(),
            Grant::parse("https://10.1.2.3").unwrap(),
        ];
        let write = invocation(Access::Write);
        let read = invocation(Access::Read);
        let rule = |inv: &Invocation, t: HttpTarget<'_>| {
            authorize(inv, &Effect::HttpRequest(&t))
                .err()
                .map(|d| d.rule)
        };

        assert_eq!(
            rule(
                &write,
                target("GET", "api.example.com", 443, "/v1/x", &none)
            ),
            Some(RULE_NO_EGRESS_GRANTS)
        );
        assert_eq!(
            rule(
                &write,
                target("GET", "api.example.com", 443, "/v1/x", &grants)
            ),
            None
        );
        assert_eq!(
            rule(
                &read,
                target("DELETE", "api.example.com", 443, "/v1/x", &grants)
            ),
            Some(RULE_READ_ONLY_METHOD)
        );
        assert_eq!(
            rule(
                &read,
                target("POST", "api.example.com", 443, "/v1/x", &grants)
            ),
            Some(RULE_READ_ONLY_METHOD)
        );
        assert_eq!(
            rule(
                &read,
                target("HEAD", "api.example.com", 443, "/v1/x", &grants)
            ),
            None
        );
        assert_eq!(
            rule(&write, target("GET", "evil.example", 443, "/", &grants)),
            Some(RULE_EGRESS_NOT_GRANTED)
        );
        assert_eq!(
            rule(
                &write,
                target("GET", "api.example.com", 443, "/v2", &grants)
            ),
            Some(RULE_EGRESS_NOT_GRANTED)
        );
        for path in [
            "/v1/../admin",
            "/v1/%2e%2e/admin",
            "/v1/%2E./admin",
            "/v1/./x",
        ] {
            assert_eq!(
                rule(&write, target("GET", "api.example.com", 443, path, &grants)),
                Some(RULE_EGRESS_PATH),
                "{path}"
            );
        }
        let mut with_user = target("GET", "api.example.com", 443, "/v1", &grants);
        with_user.userinfo = true;
        assert_eq!(rule(&write, with_user), Some(RULE_EGRESS_USERINFO));
        // A private IP literal passes only under a grant that names it.
        assert_eq!(
            rule(&write, target("GET", "10.1.2.3", 443, "/", &grants)),
            None
        );
        let wildcard = vec![Grant::parse("https://*.example.com:*").unwrap()];
        assert_eq!(
            rule(&write, target("GET", "10.1.2.4", 443, "/", &wildcard)),
            Some(RULE_EGRESS_NOT_GRANTED)
        );
        let t = target("GET", "api.example.com", 443, "/v1", &grants);
        let denial = authorize(
            &write,
            &Effect::HttpRequest(&target("GET", "evil.example", 443, "/", &grants)),
        )
        .unwrap_err();
        assert!(
            denial.to_string().contains(
                "GET request to https://evil.example:443 denied by rule `egress-not-granted`"
            ),
            "{denial}"
        );
        assert_eq!(
            denial.remedy,
            Some(Remedy::GrantEgress {
                connection: "c1".into(),
                origin: "https://evil.example:443".into()
            }),
            "{denial}"
        );
        let resolved = authorize_resolved(
            &t,
            Err("api.example.com resolves to 127.0.0.1, a loopback address".into()),
        )
        .unwrap_err();
        assert_eq!(resolved.rule, RULE_EGRESS_ADDRESS);
    }
}
