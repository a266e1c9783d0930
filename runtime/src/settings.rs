//! The seeds' environment variables (`APPROVAL_DEFAULT_TIMEOUT_SECONDS`, `CB_COOLDOWN_S`,
//! `DRY_RUN`...): one reader for numbers and one for flags, so every variable is parsed the same
//! way. A value that does not parse is reported once, naming the variable and what it expects,
//! and the default is used: a typo must not take a host down, nor pass unnoticed.

use std::collections::HashSet;
use std::str::FromStr;
use std::sync::Mutex;

/// The first of `names` that is set, parsed; `default` when none is set or it does not parse.
pub fn number<T: FromStr + Copy + std::fmt::Display>(names: &[&str], default: T) -> T {
    for name in names {
        let Ok(text) = std::env::var(name) else {
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
pub fn flag(name: &str, default: bool) -> bool {
    let Ok(text) = std::env::var(name) else {
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

    // Each test uses variables no other test reads, so they may run in parallel.
    #[test]
    fn numbers_take_the_first_set_name_and_fall_back_on_bad_values() {
        // SAFETY: these names are read by this test only.
        unsafe {
            std::env::set_var("AIRLOCK_TEST_SETTINGS_N2", " 42 ");
            std::env::set_var("AIRLOCK_TEST_SETTINGS_BAD", "forty");
        }
        assert_eq!(
            number(
                &["AIRLOCK_TEST_SETTINGS_N1", "AIRLOCK_TEST_SETTINGS_N2"],
                7u64
            ),
            42
        );
        assert_eq!(number(&["AIRLOCK_TEST_SETTINGS_N1"], 7u64), 7);
        assert_eq!(number(&["AIRLOCK_TEST_SETTINGS_BAD"], 7u64), 7);
        assert_eq!(number(&["AIRLOCK_TEST_SETTINGS_N2"], 0.5f64), 42.0);
    }

    #[test]
    fn flags_accept_the_usual_spellings() {
        for (text, expected) in [("TRUE", true), ("yes", true), ("0", false), ("Off", false)] {
            // SAFETY: this name is read by this test only.
            unsafe { std::env::set_var("AIRLOCK_TEST_SETTINGS_FLAG", text) };
            assert_eq!(
                flag("AIRLOCK_TEST_SETTINGS_FLAG", !expected),
                expected,
                "{text}"
            );
        }
        // SAFETY: as above.
        unsafe { std::env::set_var("AIRLOCK_TEST_SETTINGS_FLAG", "maybe") };
        assert!(flag("AIRLOCK_TEST_SETTINGS_FLAG", true));
        assert!(!flag("AIRLOCK_TEST_SETTINGS_FLAG", false));
        assert!(flag("AIRLOCK_TEST_SETTINGS_UNSET", true));
    }
}
