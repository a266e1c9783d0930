//! Data shaping on the way out: every result carries its classification, and personal data is
//! masked per the connection's policy before the result leaves the host.
//!
//! The classification is the higher of the operation's (its manifest) and the connection's
//! policy for it, as with risk. Masking walks the JSON result and rewrites string values (and
//! numbers that are card numbers):
//! - emails -> `[EMAIL]`;
//! - phone numbers (international `+` form, or grouped national forms) -> `[PHONE]`;
//! - card numbers (13-19 digits, spaces or dashes allowed, Luhn-valid) -> `[CARD ****1234]`;
//!   digit runs that fail the Luhn check (order numbers, ids) are left alone;
//! - IBANs with a valid ISO 13616 mod-97 checksum -> `[IBAN]`;
//! - national ids by the connection's own patterns (regular expressions) -> `[ID]`;
//! - the values of fields the connection names, whatever they hold -> `[MASKED]`.

use crate::manifest::Classification;
use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::LazyLock;

/// A connection's data policy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DataPolicy {
    /// Per operation, a classification the operator assigns; the higher of this and the
    /// manifest's counts.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub classification: BTreeMap<String, Classification>,
    #[serde(default, skip_serializing_if = "Masking::is_off")]
    pub mask: Masking,
    /// Seconds a read result is served from the cache; none: not cached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_ttl_s: Option<u32>,
}

/// What to mask.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Masking {
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub emails: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub phones: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cards: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ibans: bool,
    /// National id patterns (regular expressions), e.g. `\b\d{3}-\d{2}-\d{4}\b` for a US SSN.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub id_patterns: Vec<String>,
    /// Field names whose values are masked whole (case-insensitive).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<String>,
}

impl Masking {
    pub fn is_off(&self) -> bool {
        *self == Masking::default()
    }

    /// Everything built in on (the patterns and fields stay as given).
    pub fn all(mut self) -> Self {
        self.emails = true;
        self.phones = true;
        self.cards = true;
        self.ibans = true;
        self
    }

    /// Checks the patterns compile, naming each bad one.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let problems: Vec<String> = self
            .id_patterns
            .iter()
            .filter_map(|p| {
                Regex::new(p)
                    .err()
                    .map(|e| format!("id pattern `{p}` is not a valid regular expression: {e}"))
            })
            .collect();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }
}

impl DataPolicy {
    /// The policy from its stored JSON (`null`: the default); an error names what is wrong.
    pub fn from_value(value: &Value) -> Result<Self, String> {
        super::policies::policy_from_value(value)
    }

    pub fn to_value(&self) -> Value {
        super::policies::policy_to_value(self)
    }

    /// The higher of the manifest's classification and this policy's for `operation`.
    pub fn classification(&self, operation: &str, declared: Classification) -> Classification {
        self.classification
            .get(operation)
            .map_or(declared, |&c| c.max(declared))
    }
}

static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\b[a-z0-9._%+-]+@[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,}\b").expect("valid")
});
/// International numbers (`+` and 8-15 digits, separators allowed), North American
/// `(555) 123-4567` / `555-123-4567`, and European national forms with a trunk `0`.
static PHONE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?x)
        (?:^|[^\w+])                                   # not inside a word or a longer number
        (
          \+\d{1,3}(?:[\s.-]?\(?\d{1,4}\)?){2,5}       # +49 30 1234567, +1 (555) 123-4567
        | \(\d{3}\)\s?\d{3}[\s.-]\d{4}                 # (555) 123-4567
        | \d{3}[.-]\d{3}[.-]\d{4}                      # 555-123-4567
        | 0\d{2,4}[\s/-]\d{3,4}[\s-]?\d{2,4}           # 030 1234 5678, 0171/1234567
        )
        (?:$|[^\w])",
    )
    .expect("valid")
});
static CARD: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\b\d(?:[ -]?\d){12,18}\b").expect("valid"));
static IBAN: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b").expect("valid"));

fn luhn(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    for (i, d) in digits.iter().rev().enumerate() {
        let mut v = u32::from(*d);
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum.is_multiple_of(10)
}

fn iban_valid(text: &str) -> bool {
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    if !(15..=34).contains(&compact.len()) {
        return false;
    }
    let (head, tail) = compact.split_at(4);
    let mut remainder = 0u32;
    for c in tail.chars().chain(head.chars()) {
        let value = match c {
            '0'..='9' => c as u32 - '0' as u32,
            'A'..='Z' => c as u32 - 'A' as u32 + 10,
            _ => return false,
        };
        remainder = if value >= 10 {
            (remainder * 100 + value) % 97
        } else {
            (remainder * 10 + value) % 97
        };
    }
    remainder == 1
}

/// The masker for one connection: patterns compiled once.
pub struct Masker {
    mask: Masking,
    ids: Vec<Regex>,
    fields: Vec<String>,
}

impl Masker {
    pub fn new(mask: &Masking) -> Self {
        Masker {
            ids: mask
                .id_patterns
                .iter()
                .filter_map(|p| Regex::new(p).ok())
                .collect(),
            fields: mask.fields.iter().map(|f| f.to_ascii_lowercase()).collect(),
            mask: mask.clone(),
        }
    }

    pub fn is_off(&self) -> bool {
        self.mask.is_off()
    }

    /// Masks `value` in place; returns how many values were changed.
    pub fn apply(&self, value: &mut Value) -> usize {
        match value {
            Value::Object(map) => map
                .iter_mut()
                .map(|(k, v)| {
                    if self.fields.contains(&k.to_ascii_lowercase()) && !v.is_null() {
                        *v = Value::String("[MASKED]".into());
                        1
                    } else {
                        self.apply(v)
                    }
                })
                .sum(),
            Value::Array(items) => items.iter_mut().map(|v| self.apply(v)).sum(),
            Value::String(s) => {
                let masked = self.text(s);
                if masked != *s {
                    *s = masked;
                    1
                } else {
                    0
                }
            }
            Value::Number(n) if self.mask.cards => {
                let digits = n.to_string();
                let bytes: Vec<u8> = digits.bytes().map(|b| b.wrapping_sub(b'0')).collect();
                if (13..=19).contains(&digits.len())
                    && bytes.iter().all(|d| *d <= 9)
                    && luhn(&bytes)
                {
                    *value = Value::String(format!("[CARD ****{}]", &digits[digits.len() - 4..]));
                    1
                } else {
                    0
                }
            }
            _ => 0,
        }
    }

    /// The masked form of one string.
    pub fn text(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for id in &self.ids {
            out = id.replace_all(&out, "[ID]").into_owned();
        }
        if self.mask.ibans {
            out = IBAN
                .replace_all(&out, |c: &regex::Captures| {
                    if iban_valid(&c[0]) {
                        "[IBAN]".to_owned()
                    } else {
                        c[0].to_owned()
                    }
                })
                .into_owned();
        }
        if self.mask.cards {
            out = CARD
                .replace_all(&out, |c: &regex::Captures| {
                    let digits: Vec<u8> = c[0]
                        .bytes()
                        .filter(u8::is_ascii_digit)
                        .map(|b| b - b'0')
                        .collect();
                    if luhn(&digits) {
                        let last: String = digits[digits.len() - 4..]
                            .iter()
                            .map(|d| char::from(b'0' + d))
                            .collect();
                        format!("[CARD ****{last}]")
                    } else {
                        c[0].to_owned()
                    }
                })
                .into_owned();
        }
        if self.mask.emails {
            out = EMAIL.replace_all(&out, "[EMAIL]").into_owned();
        }
        if self.mask.phones {
            // Replace only the number, keeping what the pattern matched around it; a number
            // that is one part of a longer run of digit groups (an account, an IBAN) is not one.
            let hay = out.clone();
            let separators: &[char] = &[' ', '-', '.', '/'];
            out = PHONE
                .replace_all(&out, |c: &regex::Captures| {
                    let whole = &c[0];
                    let number = c.get(1).expect("group 1 always takes part");
                    let start = number.start() - c.get(0).expect("whole match").start();
                    let digits = number.as_str().bytes().filter(u8::is_ascii_digit).count();
                    let digit = |c: Option<char>| c.is_some_and(|c| c.is_ascii_digit());
                    let joined = digit(
                        hay[..number.start()]
                            .trim_end_matches(separators)
                            .chars()
                            .last(),
                    ) || digit(
                        hay[number.end()..]
                            .trim_start_matches(separators)
                            .chars()
                            .next(),
                    );
                    if (7..=15).contains(&digits) && !joined {
                        format!(
                            "{}[PHONE]{}",
                            &whole[..start],
                            &whole[start + number.as_str().len()..]
                        )
                    } else {
                        whole.to_owned()
                    }
                })
                .into_owned();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn everything() -> Masker {
        Masker::new(&Masking {
            id_patterns: vec![r"\b\d{3}-\d{2}-\d{4}\b".into()],
            fields: vec!["salary".into()],
            ..Masking::default().all()
        })
    }

    #[test]
    fn shaping_masks_real_looking_records_and_leaves_near_misses() {
        let m = everything();
        let mut records = json!([
            {
                "name": "Jane Doe",
                "email": "jane.doe@example.com",
                "note": "call +49 30 1234567 or (555) 123-4567, or mail j.smith+crm@sub.example.co.uk",
                "card": "4111 1111 1111 1111",
                "card_number": 5500005555555559u64,
                "iban": "DE89 3704 0044 0532 0130 00",
                "ssn": "078-05-1120",
                "salary": 85000,
                "mobile": "0171/1234567"
            },
            {
                "order": "4111 1111 1111 1112",
                "order_number": 1234567890123456u64,
                "iban_like": "DE00 3704 0044 0532 0130 00",
                "date": "2026-11-22",
                "when": "2026-11-22T08:15:00Z",
                "amount": "1,234,567.89",
                "version": "1.2.3",
                "zip": "10115",
                "sku": "AB-123-4567",
                "handle": "@jane",
                "text": "see section 4.1.2 of the 2026 report, page 12345",
                "ip": "192.168.10.20"
            }
        ]);
        let near_misses = records[1].clone();
        let changed = m.apply(&mut records);
        let real = &records[0];
        assert_eq!(real["name"], "Jane Doe");
        assert_eq!(real["email"], "[EMAIL]");
        assert_eq!(real["note"], "call [PHONE] or [PHONE], or mail [EMAIL]");
        assert_eq!(real["card"], "[CARD ****1111]");
        assert_eq!(real["card_number"], "[CARD ****5559]");
        assert_eq!(real["iban"], "[IBAN]");
        assert_eq!(real["ssn"], "[ID]");
        assert_eq!(real["salary"], "[MASKED]");
        assert_eq!(real["mobile"], "[PHONE]");
        assert_eq!(changed, 8);
        // Near misses: Luhn-invalid digits, a bad IBAN checksum, dates, amounts, versions...
        assert_eq!(records[1], near_misses, "a near miss was masked");
    }

    #[test]
    fn shaping_masks_only_what_the_policy_names() {
        let only_emails = Masker::new(&Masking {
            emails: true,
            ..Masking::default()
        });
        assert_eq!(
            only_emails.text("a@b.io, 4111111111111111"),
            "[EMAIL], 4111111111111111"
        );
        assert!(Masker::new(&Masking::default()).is_off());
        let bad = Masking {
            id_patterns: vec!["([".into()],
            ..Masking::default()
        };
        assert!(bad.validate().unwrap_err()[0].contains("`([`"));
        let policy = DataPolicy {
            classification: [("list".to_owned(), Classification::Restricted)].into(),
            ..DataPolicy::default()
        };
        assert_eq!(
            policy.classification("list", Classification::Internal),
            Classification::Restricted
        );
        assert_eq!(
            policy.classification("get", Classification::Confidential),
            Classification::Confidential
        );
        assert_eq!(DataPolicy::from_value(&policy.to_value()).unwrap(), policy);
    }
}
