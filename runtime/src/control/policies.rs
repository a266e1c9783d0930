//! A connection's policies as stored in its JSON columns, and what they decide without the
//! store: an operation's risk, whether it waits for an approver, and who may approve it. (Data
//! shaping's policy is `shaping::DataPolicy`.)

use crate::invocation::Role;
use crate::manifest::Risk;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A connection's policy as stored in its JSON column (approvals, data shaping): `null` is the
/// default, and the default is stored as `null`. Anything else that does not read as the policy
/// is an error, never the default: a damaged approval policy must not quietly lower a threshold.
pub(crate) fn policy_from_value<P: serde::de::DeserializeOwned + Default>(
    value: &serde_json::Value,
) -> Result<P, String> {
    if value.is_null() {
        return Ok(P::default());
    }
    serde_json::from_value(value.clone()).map_err(|e| e.to_string())
}

pub(crate) fn policy_to_value<P: serde::Serialize + Default + PartialEq>(
    policy: &P,
) -> serde_json::Value {
    if *policy == P::default() {
        serde_json::Value::Null
    } else {
        serde_json::to_value(policy).expect("policies serialize")
    }
}

/// A connection's approval policy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ApprovalPolicy {
    /// Per operation, the risk the operator assigns; the effective risk is the higher of this
    /// and the manifest's claim.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub operation_risks: BTreeMap<String, Risk>,
    /// The lowest risk that waits for an approver; `None` takes the default (medium, or low
    /// when `APPROVAL_AUTO_APPROVE_LOW_RISK=false`). Critical always waits for an Admin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require_from: Option<Risk>,
    /// Dry-run mode: write operations run with their effects captured, never applied, and
    /// answer with what they would have done. `None` takes the default: on for a prototype
    /// connector unless the host runs with `DRY_RUN=false` (the seeds'), off for any other.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dry_run: Option<bool>,
}

impl ApprovalPolicy {
    /// The policy from its stored JSON (`null`: the default); an error names what is wrong.
    pub fn from_value(value: &serde_json::Value) -> Result<Self, String> {
        policy_from_value(value)
    }

    pub fn to_value(&self) -> serde_json::Value {
        policy_to_value(self)
    }

    /// The higher of the manifest's claim and this policy's risk for `operation`.
    pub fn risk(&self, operation: &str, claimed: Risk) -> Risk {
        self.operation_risks
            .get(operation)
            .map_or(claimed, |&r| r.max(claimed))
    }

    /// Whether an invocation of `risk` waits for an approver. Without a threshold of its own the
    /// connection takes the host's: medium, or low when low-risk writes are not auto-approved
    /// (`Settings::auto_approve_low_risk`).
    pub fn needs_approval(&self, risk: Risk, auto_approve_low_risk: bool) -> bool {
        let default = if auto_approve_low_risk {
            Risk::Medium
        } else {
            Risk::Low
        };
        risk == Risk::Critical || risk >= self.require_from.unwrap_or(default)
    }
}

/// The lowest role that may decide a request of `risk`.
pub fn approver_role(risk: Risk) -> Role {
    if risk == Risk::Critical {
        Role::Admin
    } else {
        Role::Operator
    }
}
