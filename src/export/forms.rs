//! Self-contained schemas for platforms' forms (Turbine's manifests): `$ref`s
//! inlined, secrets marked the way form renderers mask them; and [`File`], one
//! file of a package as a platform module returns it.

use serde_json::{Map, Value};

/// One file of a package: its path inside the package folder and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    pub path: String,
    pub text: String,
}

impl File {
    pub fn new(path: impl Into<String>, text: impl Into<String>) -> Self {
        File {
            path: path.into(),
            text: text.into(),
        }
    }
}

/// `schema` with every local `$ref` replaced by the definition it names and
/// `$defs` dropped, for platforms whose forms read one self-contained schema.
/// A definition that refers to itself (directly or not) stays a `$ref`, and
/// `$defs` is then kept with the definitions still referred to.
pub fn flatten(schema: &Value) -> Value {
    let defs = schema
        .get("$defs")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mut kept = Map::new();
    let mut out = inline(schema, &defs, &mut Vec::new(), &mut kept);
    if let Value::Object(m) = &mut out {
        m.remove("$defs");
        if !kept.is_empty() {
            m.insert("$defs".into(), Value::Object(kept));
        }
    }
    out
}

fn inline(
    schema: &Value,
    defs: &Map<String, Value>,
    expanding: &mut Vec<String>,
    kept: &mut Map<String, Value>,
) -> Value {
    match schema {
        Value::Object(m) => {
            if let Some(name) = m
                .get("$ref")
                .and_then(Value::as_str)
                .and_then(|r| r.strip_prefix("#/$defs/"))
                && let Some(def) = defs.get(name)
            {
                if expanding.iter().any(|n| n == name) {
                    kept.insert(name.to_string(), def.clone());
                    return schema.clone();
                }
                expanding.push(name.to_string());
                let mut body = inline(def, defs, expanding, kept);
                expanding.pop();
                // Keywords beside the `$ref` (a field's description) win over the definition's.
                if let Value::Object(b) = &mut body {
                    for (k, v) in m.iter().filter(|(k, _)| *k != "$ref") {
                        b.insert(k.clone(), inline(v, defs, expanding, kept));
                    }
                }
                return body;
            }
            Value::Object(
                m.iter()
                    .filter(|(k, _)| *k != "$defs")
                    .map(|(k, v)| (k.clone(), inline(v, defs, expanding, kept)))
                    .collect(),
            )
        }
        Value::Array(a) => {
            Value::Array(a.iter().map(|v| inline(v, defs, expanding, kept)).collect())
        }
        other => other.clone(),
    }
}

/// Mark every `writeOnly` string of `schema` as `format: password`, the
/// convention platforms use to mask a field in their forms.
pub fn mark_secrets(schema: &mut Value) {
    match schema {
        Value::Object(m) => {
            if m.get("writeOnly") == Some(&Value::Bool(true)) && !m.contains_key("format") {
                m.insert("format".into(), Value::String("password".into()));
            }
            m.values_mut().for_each(mark_secrets);
        }
        Value::Array(a) => a.iter_mut().for_each(mark_secrets),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn flatten_inlines_definitions_and_keeps_recursion() {
        let s = json!({
            "properties": {"a": {"$ref": "#/$defs/A", "description": "mine"}, "t": {"$ref": "#/$defs/T"}},
            "$defs": {
                "A": {"type": "string", "description": "theirs"},
                "T": {"type": "object", "properties": {"child": {"$ref": "#/$defs/T"}}}
            }
        });
        let f = flatten(&s);
        assert_eq!(
            f["properties"]["a"],
            json!({"type": "string", "description": "mine"})
        );
        assert_eq!(
            f["properties"]["t"]["properties"]["child"]["$ref"],
            "#/$defs/T"
        );
        assert!(f["$defs"].get("T").is_some() && f["$defs"].get("A").is_none());
    }

    #[test]
    fn secrets_are_marked_as_passwords() {
        let mut s = json!({"properties": {"k": {"type": "string", "writeOnly": true}, "n": {"type": "string"}}});
        mark_secrets(&mut s);
        assert_eq!(s["properties"]["k"]["format"], "password");
        assert!(s["properties"]["n"].get("format").is_none());
    }
}
