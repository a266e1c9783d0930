//! Egress grants: which destinations a connection may reach.
//!
//! Grammar: `scheme://host[:port][/path-prefix]`
//! - `scheme`: `http` or `https`;
//! - `host`: a DNS name, `*.` + a DNS name (any subdomain at any depth, never the bare name), an
//!   IPv4 literal or a bracketed IPv6 literal. An IP literal is also the only way to allow a
//!   private, loopback or link-local address: naming it is the explicit grant;
//! - `port`: a number, or `*` for any; absent means the scheme's default (80, 443);
//! - `path-prefix`: the request path must equal it or continue it after a `/`.
//!
//! Names are compared in lowercase without a trailing dot. Grants with user info, queries,
//! fragments or anything else are refused when they are set, with the reason.

use std::fmt;
use std::net::IpAddr;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    Exact(String),
    /// `*.example.com`, stored as `example.com`.
    Subdomains(String),
    Ip(IpAddr),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortPattern {
    Exact(u16),
    Any,
}

/// One parsed grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub scheme: String,
    pub host: HostPattern,
    pub port: PortPattern,
    /// `None`, or a prefix starting with `/` (without a trailing `/`).
    pub path_prefix: Option<String>,
    /// The text it was parsed from, for messages.
    pub text: String,
}

impl fmt::Display for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// The scheme's default port.
pub fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

/// Lowercases and drops one trailing dot: `API.Example.COM.` and `api.example.com` are one host.
pub fn normalize_host(host: &str) -> String {
    host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase()
}

fn valid_dns_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

impl Grant {
    pub fn parse(text: &str) -> Result<Grant, String> {
        let bad = |why: &str| {
            Err(format!(
                "egress grant `{text}`: {why}; expected scheme://host[:port][/path], e.g. https://api.example.com or https://*.example.com:*"
            ))
        };
        let Some((scheme, rest)) = text.split_once("://") else {
            return bad("no scheme");
        };
        let scheme = scheme.to_ascii_lowercase();
        if default_port(&scheme).is_none() {
            return bad("the scheme must be http or https");
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], Some(&rest[i..])),
            None => (rest, None),
        };
        if authority.contains('@') {
            return bad("user info (`user@`) is not allowed");
        }
        if rest.contains(['?', '#', ' ', '\\']) {
            return bad("queries, fragments, spaces and backslashes are not allowed");
        }
        let (host_text, port_text) = if let Some(stripped) = authority.strip_prefix('[') {
            let Some(end) = stripped.find(']') else {
                return bad("unclosed `[` in an IPv6 address");
            };
            let after = &stripped[end + 1..];
            let port = match after.strip_prefix(':') {
                Some(p) => Some(p),
                None if after.is_empty() => None,
                None => return bad("unexpected text after the IPv6 address"),
            };
            (&authority[..end + 2], port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        let port = match port_text {
            None => PortPattern::Exact(default_port(&scheme).expect("checked")),
            Some("*") => PortPattern::Any,
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n > 0 => PortPattern::Exact(n),
                _ => return bad("the port must be 1-65535 or *"),
            },
        };
        let host = if let Some(v6) = host_text
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
        {
            match v6.parse::<std::net::Ipv6Addr>() {
                Ok(ip) => HostPattern::Ip(IpAddr::V6(ip)),
                Err(_) => return bad("not an IPv6 address between the brackets"),
            }
        } else if let Ok(ip) = host_text.parse::<std::net::Ipv4Addr>() {
            HostPattern::Ip(IpAddr::V4(ip))
        } else {
            let host = normalize_host(host_text);
            match host.strip_prefix("*.") {
                Some(base) if valid_dns_name(base) && base.contains('.') => {
                    HostPattern::Subdomains(base.to_owned())
                }
                Some(_) => {
                    return bad("`*.` must be followed by a domain with at least two labels");
                }
                None if host.contains('*') => {
                    return bad("`*` is only allowed as a whole first label (`*.example.com`)");
                }
                None if valid_dns_name(&host) => HostPattern::Exact(host),
                None => return bad("the host is not a valid DNS name or IP address"),
            }
        };
        let path_prefix = match path {
            None | Some("/") => None,
            Some(p) if p.split('/').any(|seg| seg == "." || seg == "..") => {
                return bad("the path may not contain . or .. segments");
            }
            Some(p) => Some(p.trim_end_matches('/').to_owned()),
        };
        Ok(Grant {
            scheme,
            host,
            port,
            path_prefix,
            text: text.to_owned(),
        })
    }

    /// Whether a request to `scheme://host:port/path` falls under this grant. `host` is already
    /// normalized (see [`normalize_host`]) or an IP literal.
    pub fn matches(&self, scheme: &str, host: &str, port: u16, path: &str) -> bool {
        if self.scheme != scheme {
            return false;
        }
        if let PortPattern::Exact(p) = self.port
            && p != port
        {
            return false;
        }
        let host_ok = match &self.host {
            HostPattern::Exact(name) => name == host,
            HostPattern::Subdomains(base) => {
                host.len() > base.len() + 1
                    && host.ends_with(base.as_str())
                    && host.as_bytes()[host.len() - base.len() - 1] == b'.'
            }
            HostPattern::Ip(ip) => host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
                .is_ok_and(|h| canonical(h) == canonical(*ip)),
        };
        host_ok
            && match &self.path_prefix {
                None => true,
                Some(prefix) => {
                    path == prefix
                        || path
                            .strip_prefix(prefix.as_str())
                            .is_some_and(|rest| rest.starts_with('/'))
                }
            }
    }
}

/// An IPv4-mapped IPv6 address compares as its IPv4 address.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(text: &str) -> Grant {
        Grant::parse(text).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn egress_grant_grammar() {
        let api = g("https://api.example.com");
        assert!(api.matches("https", "api.example.com", 443, "/v1/x"));
        assert!(!api.matches("http", "api.example.com", 443, "/"), "scheme");
        assert!(!api.matches("https", "api.example.com", 8443, "/"), "port");
        assert!(
            !api.matches("https", "evil.api.example.com", 443, "/"),
            "subdomain of an exact name"
        );
        assert!(
            !api.matches("https", "api.example.com.evil.com", 443, "/"),
            "suffix trick"
        );

        let wild = g("https://*.example.com:*");
        assert!(wild.matches("https", "a.example.com", 1, "/"));
        assert!(wild.matches("https", "a.b.example.com", 65535, "/"));
        assert!(
            !wild.matches("https", "example.com", 443, "/"),
            "a wildcard never matches the bare domain"
        );
        assert!(
            !wild.matches("https", "badexample.com", 443, "/"),
            "label boundary"
        );
        assert!(!wild.matches("https", "a.example.com.evil.org", 443, "/"));

        // Case and trailing dots normalize on both sides.
        let upper = g("HTTPS://API.Example.COM.:443");
        assert!(upper.matches("https", &normalize_host("api.EXAMPLE.com."), 443, "/"));

        let path = g("https://api.example.com/v2/");
        assert!(path.matches("https", "api.example.com", 443, "/v2"));
        assert!(path.matches("https", "api.example.com", 443, "/v2/users"));
        assert!(
            !path.matches("https", "api.example.com", 443, "/v2x"),
            "segment boundary"
        );
        assert!(!path.matches("https", "api.example.com", 443, "/v1/users"));

        let lo = g("http://127.0.0.1:*");
        assert!(lo.matches("http", "127.0.0.1", 8080, "/"));
        assert!(
            lo.matches("http", "[::ffff:127.0.0.1]", 8080, "/"),
            "IPv4-mapped spelling of the granted address"
        );
        assert!(!lo.matches("http", "127.0.0.2", 8080, "/"));
        assert!(g("http://[::1]:8080").matches("http", "[::1]", 8080, "/"));
    }

    #[test]
    fn egress_grant_refuses_malformed_grants_with_the_reason() {
        for (text, why) in [
            ("api.example.com", "no scheme"),
            ("ftp://example.com", "http or https"),
            ("https://allowed@evil.com", "user info"),
            ("https://user:pw@example.com", "user info"),
            ("https://example.com:0", "1-65535"),
            ("https://example.com:99999", "1-65535"),
            ("https://*example.com", "whole first label"),
            ("https://ex*mple.com", "whole first label"),
            ("https://*.com", "two labels"),
            ("https://*", "whole first label"),
            ("https://exa mple.com", "spaces"),
            ("https://example.com/a/../admin", ". or .."),
            ("https://example.com?x=1", "queries"),
            ("https://[::1", "unclosed"),
            ("https://-bad-.com", "valid DNS name"),
        ] {
            let err = Grant::parse(text).unwrap_err();
            assert!(err.contains(why), "{text}: {err}");
            assert!(
                err.contains(text),
                "{text}: the message names the grant: {err}"
            );
        }
    }
}
