//! Checking JSON against a connector's schemas (connection config, operation params), with one
//! message per bad field.

use serde_json::Value;
use std::collections::HashMap;

/// Validates `instance` against `schema`; on failure, every problem as "field: what is wrong".
pub fn validate(schema: &Value, instance: &Value, what: &str) -> Result<(), Vec<String>> {
    let validator = jsonschema::validator_for(schema)
        .map_err(|e| vec![format!("the connector's {what} schema is invalid: {e}")])?;
    problems(&validator, instance, what)
}

/// Every operation's params schema, compiled once per resolved connection: the params of an
/// invocation are checked before anything runs, with one message per bad field.
#[derive(Default)]
pub struct ParamsSchemas {
    by_operation: HashMap<String, Result<jsonschema::Validator, String>>,
}

impl ParamsSchemas {
    pub fn compile(manifest: &crate::manifest::Manifest) -> Self {
        let by_operation = manifest
            .operations
            .iter()
            .map(|op| {
                let compiled = jsonschema::validator_for(&op.params_schema).map_err(|e| {
                    format!(
                        "the connector's params schema for `{}` is invalid: {e}",
                        op.name
                    )
                });
                (op.name.clone(), compiled)
            })
            .collect();
        ParamsSchemas { by_operation }
    }

    /// Checks `params` of `operation`; an operation the manifest does not name is the guest's
    /// to refuse.
    pub fn check(&self, operation: &str, params: &Value) -> Result<(), Vec<String>> {
        match self.by_operation.get(operation) {
            None => Ok(()),
            Some(Err(invalid)) => Err(vec![invalid.clone()]),
            Some(Ok(validator)) => problems(validator, params, &format!("params of `{operation}`")),
        }
    }
}

fn problems(
    validator: &jsonschema::Validator,
    instance: &Value,
    what: &str,
) -> Result<(), Vec<String>> {
    let mut problems: Vec<String> = validator
        .iter_errors(instance)
        .map(|e| {
            let path = e.instance_path().to_string();
            let field = path.trim_start_matches('/').replace('/', ".");
            if field.is_empty() {
                format!("{what}: {e}")
            } else {
                format!("{what} field `{field}`: {e}")
            }
        })
        .collect();
    problems.sort();
    problems.dedup();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn schema_names_each_bad_field() {
        let schema = json!({
            "type": "object",
            "properties": {"latency_ms": {"type": "integer", "minimum": 0}, "error_rate": {"type": "number", "maximum": 1}},
            "required": ["latency_ms"],
            "additionalProperties": false
        });
        validate(&schema, &json!({"latency_ms": 5}), "config").unwrap();
        let problems = validate(
            &schema,
            &json!({"latency_ms": -1, "error_rate": 2, "colour": "red"}),
            "config",
        )
        .unwrap_err();
        let text = problems.join("\n");
        assert!(text.contains("config field `latency_ms`"), "{text}");
        assert!(text.contains("config field `error_rate`"), "{text}");
        assert!(text.contains("colour"), "{text}");
        let missing = validate(&schema, &json!({}), "config")
            .unwrap_err()
            .join("\n");
        assert!(
            missing.contains("latency_ms") && missing.contains("required"),
            "{missing}"
        );
    }
}
