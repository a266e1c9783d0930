//! The host's settings, as a value: read once at the root (the binary, from the environment; a
//! test or an embedder, from anything) and passed down. Nothing below this module reads the
//! environment, so two control planes with different settings can run in one process.
//!
//! The variables are the seeds' (`APPROVAL_DEFAULT_TIMEOUT_SECONDS`, `CB_COOLDOWN_S`, `DRY_RUN`...)
//! and Airlock's own; the README's Configuration table lists them. Every number is parsed one way
//! and every flag another. A value that does not parse is reported once, naming the variable and
//! what it expects (never the value: a misplaced secret must not reach the log), and its default
//! is used: a typo must not take a host down, nor pass unnoticed. `CONNECTOR_RBAC_ROLE` is the
//! exception: a value that is not a role refuses every invocation (see [`Settings::invoke_role`]).

use crate::egress::resilience::{BreakerPolicy, Resilience, RetryPolicy};
use crate::invocation::Role;
use std::collections::HashSet;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::Duration;

/// Everything the host's behaviour depends on that an operator may set.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// How long an approval request waits for a decision (`APPROVAL_DEFAULT_TIMEOUT_SECONDS`).
    pub approval_timeout: Duration,
    /// Whether low-risk writes run without an approver (`APPROVAL_AUTO_APPROVE_LOW_RISK`).
    pub auto_approve_low_risk: bool,
    /// Whether a prototype connector's writes are dry runs unless its connection says otherwise
    /// (`DRY_RUN`).
    pub dry_run: bool,
    /// The lowest role any invocation needs on this host (`CONNECTOR_RBAC_ROLE`), or why every
    /// invocation is refused: a typo in a security setting must not open the host.
    pub invoke_role: Result<Role, String>,
    /// Retries and circuit breakers (`RETRY_*`, `CB_*`).
    pub resilience: Resilience,
    /// How long before expiry an OAuth2 token is refreshed (`OAUTH_REFRESH_SAFETY_WINDOW_S`).
    pub oauth_refresh_window: Duration,
    /// The health summary's thresholds (`CONNECTOR_HEALTH_P95_MS`, `CONNECTOR_HEALTH_ERROR_RATE`).
    pub health_p95_ms: f64,
    pub health_error_rate: f64,
    /// The read cache's default TTL (`CONNECTOR_CACHE_TTL_SECONDS`) and size per tenant
    /// (`CONNECTOR_CACHE_MAX_ENTRIES_PER_TENANT`).
    pub cache_default_ttl: Duration,
    pub cache_max_entries_per_tenant: usize,
    /// Failed authentications one source may have per minute before it is refused for a while
    /// (`AIRLOCK_AUTH_FAILURES_PER_MINUTE`; at least 1). Behind a proxy every client shares its
    /// address: raise it there, or for a fuzzer that sends bad tokens by design.
    pub auth_failures_per_minute: u32,
    /// A crash test's stopping point (`AIRLOCK_TEST_STOP_AT`): the process stops making progress
    /// there so a test can kill it for real. None in production.
    pub fail_point: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            approval_timeout: Duration::from_secs(300),
            auto_approve_low_risk: true,
            dry_run: true,
            invoke_role: Ok(Role::Operator),
            resilience: Resilience::default(),
            oauth_refresh_window: Duration::from_secs(300),
            health_p95_ms: 2000.0,
            health_error_rate: 0.10,
            cache_default_ttl: Duration::from_secs(300),
            cache_max_entries_per_tenant: 1000,
            auth_failures_per_minute: 30,
            fail_point: None,
        }
    }
}

impl Settings {
    /// The settings from the process environment: for the binaries only.
    pub fn from_env() -> Self {
        Self::from_lookup(&|name| std::env::var(name).ok())
    }

    /// The settings from `lookup` (a variable's name to its text), the defaults where it has none.
    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Self {
        let d = Settings::default();
        let r = &d.resilience;
        let read = Reader { lookup };
        Settings {
            approval_timeout: Duration::from_secs(read.number(
                &["APPROVAL_DEFAULT_TIMEOUT_SECONDS"],
                d.approval_timeout.as_secs(),
            )),
            auto_approve_low_risk: read
                .flag("APPROVAL_AUTO_APPROVE_LOW_RISK", d.auto_approve_low_risk),
            dry_run: read.flag("DRY_RUN", d.dry_run),
            invoke_role: match lookup("CONNECTOR_RBAC_ROLE") {
                None => d.invoke_role,
                Some(text) => text.trim().parse().map_err(|e| {
                    format!(
                        "CONNECTOR_RBAC_ROLE: {e}; every invocation is refused until it names a role"
                    )
                }),
            },
            resilience: Resilience {
                retry: RetryPolicy {
                    max_attempts: read
                        .number(
                            &["RETRY_MAX_ATTEMPTS", "CONNECTOR_RETRY_MAX_ATTEMPTS"],
                            r.retry.max_attempts,
                        )
                        .max(1),
                    base: Duration::from_millis(read.number(
                        &["RETRY_BASE_MS", "CONNECTOR_RETRY_BASE_DELAY_MS"],
                        r.retry.base.as_millis() as u64,
                    )),
                    cap: Duration::from_millis(
                        read.number(&["RETRY_CAP_MS"], r.retry.cap.as_millis() as u64),
                    ),
                },
                breaker: BreakerPolicy {
                    failures_to_open: read
                        .number(
                            &["CB_FAILURES_TO_OPEN", "CONNECTOR_CIRCUIT_BREAKER_THRESHOLD"],
                            r.breaker.failures_to_open,
                        )
                        .max(1),
                    cooldown: Duration::from_secs(
                        read.number(&["CB_COOLDOWN_S"], r.breaker.cooldown.as_secs()),
                    ),
                },
            },
            oauth_refresh_window: Duration::from_secs(read.number(
                &["OAUTH_REFRESH_SAFETY_WINDOW_S"],
                d.oauth_refresh_window.as_secs(),
            )),
            health_p95_ms: read.number(&["CONNECTOR_HEALTH_P95_MS"], d.health_p95_ms),
            health_error_rate: read.number(&["CONNECTOR_HEALTH_ERROR_RATE"], d.health_error_rate),
            cache_default_ttl: Duration::from_secs(read.number(
                &["CONNECTOR_CACHE_TTL_SECONDS"],
                d.cache_default_ttl.as_secs(),
            )),
            cache_max_entries_per_tenant: match read.number(
                &["CONNECTOR_CACHE_MAX_ENTRIES_PER_TENANT"],
                d.cache_max_entries_per_tenant,
            ) {
                0 => d.cache_max_entries_per_tenant,
                n => n,
            },
            auth_failures_per_minute: read
                .number(
                    &["AIRLOCK_AUTH_FAILURES_PER_MINUTE"],
                    d.auth_failures_per_minute,
                )
                .max(1),
            fail_point: lookup("AIRLOCK_TEST_STOP_AT").filter(|p| !p.is_empty()),
        }
    }
}

/// The master key (and a previous one, during a rotation) from the process environment: for the
/// binaries only.
pub fn vault_from_env() -> Result<crate::control::vault::Vault, crate::control::vault::VaultError> {
    crate::control::vault::Vault::from_lookup(&|name| std::env::var(name).ok())
}

struct Reader<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
}

impl Reader<'_> {
    /// The first of `names` that is set, parsed; `default` when none is set or it does not parse.
    fn number<T: FromStr + Copy + std::fmt::Display>(&self, names: &[&str], default: T) -> T {
        for name in names {
            let Some(text) = (self.lookup)(name) else {
                continue;
            };
            match text.trim().parse() {
                Ok(value) => return value,
                Err(_) => warn_once(name, &format!("a number, e.g. {default}")),
            }
        }
        default
    }

    /// A yes/no variable: `true|1|yes|on` or `false|0|no|off` (any case); `default` when unset or
    /// anything else.
    fn flag(&self, name: &str, default: bool) -> bool {
        let Some(text) = (self.lookup)(name) else {
            return default;
        };
        match text.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => true,
            "false" | "0" | "no" | "off" => false,
            _ => {
                warn_once(name, "true or false");
                default
            }
        }
    }
}

fn warn_once(name: &str, expected: &str) {
    static WARNED: Mutex<Option<HashSet<String>>> = Mutex::new(None);
    let mut warned = WARNED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if warned
        .get_or_insert_with(HashSet::new)
        .insert(name.to_owned())
    {
        // The value itself is not repeated: a misplaced secret must not reach the log.
        tracing::warn!("environment variable {name} is not {expected}; using its default");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn from(vars: &[(&str, &str)]) -> Settings {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_lookup(&|name| vars.get(name).cloned())
    }

    #[test]
    fn settings_numbers_take_the_first_set_name_and_fall_back_on_bad_values() {
        let s = from(&[
            ("CONNECTOR_RETRY_MAX_ATTEMPTS", " 7 "),
            ("CB_COOLDOWN_S", "forty"),
            ("CONNECTOR_HEALTH_ERROR_RATE", "0.5"),
        ]);
        assert_eq!(s.resilience.retry.max_attempts, 7);
        assert_eq!(s.resilience.breaker.cooldown, Duration::from_secs(60));
        assert_eq!(s.health_error_rate, 0.5);
        let both = from(&[
            ("RETRY_MAX_ATTEMPTS", "2"),
            ("CONNECTOR_RETRY_MAX_ATTEMPTS", "9"),
        ]);
        assert_eq!(
            both.resilience.retry.max_attempts, 2,
            "the seeds' first name wins"
        );
        assert_eq!(from(&[]), Settings::default());
    }

    #[test]
    fn settings_flags_accept_the_usual_spellings() {
        for (text, expected) in [("TRUE", true), ("yes", true), ("0", false), ("Off", false)] {
            assert_eq!(from(&[("DRY_RUN", text)]).dry_run, expected, "{text}");
        }
        assert!(
            from(&[("DRY_RUN", "maybe")]).dry_run,
            "an unreadable flag keeps its default"
        );
    }

    #[test]
    fn settings_a_bad_rbac_role_refuses_rather_than_opens() {
        assert_eq!(
            from(&[("CONNECTOR_RBAC_ROLE", "admin")]).invoke_role,
            Ok(Role::Admin)
        );
        let bad = from(&[("CONNECTOR_RBAC_ROLE", "root")])
            .invoke_role
            .unwrap_err();
        assert!(
            bad.contains("CONNECTOR_RBAC_ROLE") && bad.contains("refused"),
            "{bad}"
        );
    }
}
