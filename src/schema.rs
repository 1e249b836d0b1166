//! JSON Schemas (draft 2020-12): generated from the Rust types, and used to
//! validate raw input *before* it is deserialised, so every problem is reported
//! at its JSON pointer instead of as a serde message.
//!
//! Pointers are relative to the instance validated (`/ids/3`); the caller that
//! knows where the instance sits in the envelope places them with
//! [`Error::under`] (`/inputs/ids/3`).
//!
//! Messages are jsonschema's masked ones: they describe the rule broken, never
//! the offending value, so a secret typed into the wrong field is not echoed.

use jsonschema::error::ValidationErrorKind;
use schemars::JsonSchema;
use serde_json::Value;

use crate::error::{Detail, Error, pointer_token};

/// The JSON Schema dialect of every schema here.
pub const DRAFT: &str = "https://json-schema.org/draft/2020-12/schema";

/// The JSON Schema of a type, as a JSON value.
pub fn of<T: JsonSchema>() -> Value {
    serde_json::to_value(schemars::schema_for!(T)).expect("schemas serialise")
}

/// Validate `instance` against `schema`; pointers in the error are relative to `instance`.
pub fn validate(schema: &Value, instance: &Value) -> Result<(), Error> {
    let validator = jsonschema::draft202012::new(schema)
        .map_err(|e| Error::internal(format!("a built-in schema does not compile: {e}")))?;
    let mut details: Vec<Detail> = validator
        .iter_errors(instance)
        .map(|e| {
            let mut path = e.instance_path().to_string();
            let message = match e.kind() {
                // Point at the missing field itself, not at the object missing it.
                ValidationErrorKind::Required { property } => {
                    let name = property.as_str().unwrap_or_default();
                    path = format!("{path}/{}", pointer_token(name));
                    "is required".to_string()
                }
                ValidationErrorKind::AdditionalProperties { unexpected }
                    if unexpected.len() == 1 =>
                {
                    path = format!("{path}/{}", pointer_token(&unexpected[0]));
                    "is not a known field".to_string()
                }
                _ => e.masked().to_string(),
            };
            Detail::new(path, message)
        })
        .collect();
    if details.is_empty() {
        return Ok(());
    }
    // The `if`/`then` of a conditional rule reports the missing field twice at most; keep one.
    details.dedup();
    Err(Error::invalid_details(details))
}

/// A serde error after schema validation passed: a rule the schema cannot say,
/// at the root of the instance (serde names the place in its message).
/// Write the numbers that `schema` types as `integer` and that have a zero fraction
/// (`1.0`) as integers (`1`). JSON Schema counts `1.0` as an integer (draft 2020-12,
/// validation §6.1.1: "any number with a zero fractional part";
/// https://json-schema.org/draft/2020-12/json-schema-validation#section-6.1.1), so it
/// passes the check, but serde refuses it for a `u32` with a message that names no
/// field. Made after the check, this keeps the two in agreement; nothing else changes.
pub fn integers_as_integers(schema: &Value, value: &mut Value) {
    normalise(schema, schema, value, 0);
}

fn normalise(root: &Value, schema: &Value, value: &mut Value, depth: usize) {
    // Our schemas are shallow; the bound only keeps a hostile `$ref` loop finite.
    if depth > 64 {
        return;
    }
    let Some(schema) = schema.as_object() else {
        return;
    };
    if let Some(target) = schema
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix('#'))
        .and_then(|p| root.pointer(p))
    {
        normalise(root, target, value, depth + 1);
    }
    for branches in ["allOf", "anyOf", "oneOf"] {
        for branch in schema
            .get(branches)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            normalise(root, branch, value, depth + 1);
        }
    }
    match value {
        Value::Number(n) if n.is_f64() => {
            let says_integer = match schema.get("type") {
                Some(Value::String(t)) => t == "integer",
                Some(Value::Array(ts)) => ts.iter().any(|t| t == "integer"),
                _ => false,
            };
            if let Some(f) = n.as_f64()
                && says_integer
                && f.fract() == 0.0
            {
                if f >= 0.0 && f <= u64::MAX as f64 {
                    *value = Value::from(f as u64);
                } else if f >= i64::MIN as f64 && f < 0.0 {
                    *value = Value::from(f as i64);
                }
            }
        }
        Value::Object(map) => {
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (k, v) in map.iter_mut() {
                    if let Some(sub) = props.get(k) {
                        normalise(root, sub, v, depth + 1);
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(sub) = schema.get("items") {
                for v in items {
                    normalise(root, sub, v, depth + 1);
                }
            }
        }
        _ => {}
    }
}

pub fn deserialize_error(e: &serde_json::Error) -> Error {
    Error::invalid("", e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(serde::Deserialize, JsonSchema)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Sample {
        id: String,
        #[serde(default)]
        top: Option<u32>,
    }

    #[test]
    fn errors_name_pointers() {
        let s = of::<Sample>();
        let e = validate(&s, &json!({"top": "x", "extra": 1})).unwrap_err();
        let mut paths: Vec<_> = e.details.iter().map(|d| d.path.as_str()).collect();
        paths.sort();
        assert_eq!(paths, ["/extra", "/id", "/top"]);
        let e = e.under("/inputs");
        let mut paths: Vec<_> = e.details.iter().map(|d| d.path.as_str()).collect();
        paths.sort();
        assert_eq!(paths, ["/inputs/extra", "/inputs/id", "/inputs/top"]);
    }

    #[test]
    fn messages_do_not_echo_values() {
        let s = of::<Sample>();
        let e = validate(&s, &json!({"id": "x", "top": "super-secret-value"})).unwrap_err();
        assert!(!format!("{e:?}").contains("super-secret-value"));
    }

    #[test]
    fn schemas_are_draft_2020_12() {
        assert_eq!(
            of::<Sample>()["$schema"],
            "https://json-schema.org/draft/2020-12/schema"
        );
    }
}
