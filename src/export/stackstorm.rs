//! StackStorm: a pack with one action metadata file per catalog action, all run by
//! one Python action.
//!
//! Shapes follow StackStorm/st2's published schemas `contrib/schemas/pack.json`
//! (`ref` matching `^[a-z0-9_]+$`, semver `version`, `name`, `author`, `description`
//! required) and `contrib/schemas/action.json` (top-level keys only from its list;
//! `parameters` and `output_schema` in a draft-4 dialect whose keyword list has no
//! `$ref`, `$defs`, `const`, `format` or `writeOnly`, whose `type` is one simple type,
//! and whose `required` is a boolean on the property itself, plus `secret`,
//! `immutable` and `position`). Our draft 2020-12 schemas are lowered to it by
//! [`lower`]. The Python runner's contract (a `run` method on a subclass of
//! `st2common.runners.base_action.Action`, the pack config in `self.config`, the
//! datastore through `self.action_service`) is from the st2 docs
//! (docs.stackstorm.com/actions.html, /datastore.html, /reference/pack_configs.html);
//! a `(False, result)` tuple fails the execution, a `(True, result)` one succeeds
//! (https://gist.github.com/Kami/b4f06f94a8fddd7f8dc9b03b69a8e95a, by an st2 maintainer).

use serde_json::{Map, Value, json};

use super::{
    Package, VERSION, action_table, actions, config_fields, config_name, config_table, inline_refs,
    permissions_line, python_module,
};
use crate::error::Result;

/// The pack's ref (StackStorm's pattern `^[a-z0-9_]+$`).
pub const PACK: &str = "msgraph_connector";
const ENTRY: &str = "msgraph_connector.py";
const WRAPPER: &str = include_str!("templates/stackstorm.py");
/// The parameter naming the catalog action (immutable, so the one entry point knows it).
const ACTION_PARAM: &str = "msgraph_action";

/// Keywords StackStorm's parameter dialect takes (`contrib/schemas/action.json`).
const KEPT: &[&str] = &[
    "title",
    "description",
    "default",
    "multipleOf",
    "maximum",
    "exclusiveMaximum",
    "minimum",
    "exclusiveMinimum",
    "maxLength",
    "minLength",
    "pattern",
    "additionalItems",
    "items",
    "maxItems",
    "minItems",
    "uniqueItems",
    "maxProperties",
    "minProperties",
    "required",
    "secret",
    "additionalProperties",
    "properties",
    "patternProperties",
    "dependencies",
    "enum",
    "type",
    "position",
    "immutable",
    "allOf",
    "anyOf",
    "oneOf",
    "not",
];

/// Formats worth keeping as words in the description once `format` is dropped.
const NAMED_FORMATS: &[&str] = &["date", "date-time", "uri", "email"];

pub fn build() -> Result<Package> {
    let mut p = Package {
        binary_dir: "actions".into(),
        ..Package::default()
    };
    p.add("pack.yaml", super::yaml(&pack())?);
    p.add("config.schema.yaml", super::yaml(&config_schema())?);
    p.add(format!("actions/{ENTRY}"), wrapper());
    p.add("actions/check.yaml", super::yaml(&check_action())?);
    for a in actions() {
        let meta = action_meta(a);
        p.add(format!("actions/{}.yaml", a.meta.name), super::yaml(&meta)?);
    }
    p.add("README.md", readme());
    Ok(p)
}

/// A draft 2020-12 schema (refs already inlined) in StackStorm's draft-4 dialect:
/// `null` alternatives dropped (an optional parameter is simply absent), `const`s
/// as `enum`s, `writeOnly` as `secret`, `required` lists as `required: true` on
/// each property, numeric `exclusiveMinimum`/`Maximum` as draft-4's boolean form,
/// `format` dropped (named in the description for dates and URIs), `true` schemas
/// as `{}`, every keyword outside the dialect's list dropped.
pub fn lower(schema: &Value) -> Value {
    let Value::Object(map) = schema else {
        return match schema {
            Value::Bool(false) => json!({"not": {}}),
            _ => json!({}),
        };
    };
    let mut map = map.clone();
    // Fold `anyOf`/`oneOf` [X, null] into X, and alternatives of consts into an enum.
    for key in ["anyOf", "oneOf"] {
        if let Some(Value::Array(alts)) = map.get(key).cloned() {
            let rest: Vec<Value> = alts
                .into_iter()
                .filter(|a| a.get("type") != Some(&json!("null")))
                .collect();
            map.remove(key);
            if !rest.is_empty() && rest.iter().all(|a| a.get("const").is_some()) {
                map.insert(
                    "enum".into(),
                    Value::Array(rest.iter().map(|a| a["const"].clone()).collect()),
                );
                if let Some(t) = rest[0].get("type") {
                    map.entry("type").or_insert(t.clone());
                }
            } else if let [Value::Object(inner)] = rest.as_slice() {
                for (k, v) in inner {
                    map.entry(k.clone()).or_insert(v.clone());
                }
            } else if !rest.is_empty() {
                map.insert(key.into(), Value::Array(rest));
            }
        }
    }
    if let Some(c) = map.remove("const") {
        map.insert("enum".into(), json!([c]));
    }
    if let Some(Value::Array(values)) = map.get_mut("enum") {
        values.retain(|v| !v.is_null());
    }
    match map.get("type").cloned() {
        Some(Value::Array(types)) => {
            let rest: Vec<Value> = types.into_iter().filter(|t| t != "null").collect();
            match rest.as_slice() {
                [one] => {
                    map.insert("type".into(), one.clone());
                }
                _ => {
                    map.remove("type");
                }
            }
        }
        Some(Value::String(t)) if t == "null" => {
            map.remove("type");
        }
        _ => {}
    }
    if map.get("writeOnly") == Some(&Value::Bool(true)) {
        map.insert("secret".into(), json!(true));
    }
    if let Some(Value::String(format)) = map.get("format").cloned()
        && NAMED_FORMATS.contains(&format.as_str())
    {
        let d = map
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .trim()
            .to_string();
        let sep = if d.is_empty() { "" } else { " " };
        map.insert(
            "description".into(),
            json!(format!("{d}{sep}(format: {format})")),
        );
    }
    for (key, flag) in [
        ("exclusiveMinimum", "minimum"),
        ("exclusiveMaximum", "maximum"),
    ] {
        if let Some(n) = map.get(key).filter(|v| v.is_number()).cloned() {
            map.insert(flag.into(), n);
            map.insert(key.into(), json!(true));
        }
    }
    if map.get("default").is_some_and(Value::is_null) {
        map.remove("default");
    }
    let required: Vec<String> = match map.remove("required") {
        Some(Value::Array(names)) => names
            .iter()
            .filter_map(|n| n.as_str().map(String::from))
            .collect(),
        Some(Value::Bool(b)) => {
            map.insert("required".into(), json!(b));
            Vec::new()
        }
        _ => Vec::new(),
    };
    let mut out = Map::new();
    for (k, v) in map {
        if !KEPT.contains(&k.as_str()) {
            continue;
        }
        let v = match k.as_str() {
            "items" | "additionalItems" | "not" if !v.is_boolean() || k == "items" => lower(&v),
            "additionalProperties" if v.is_object() => lower(&v),
            "properties" | "patternProperties" | "definitions" => match v {
                Value::Object(props) => Value::Object(
                    props
                        .iter()
                        .map(|(name, s)| {
                            let mut s = lower(s);
                            if required.contains(name) {
                                s["required"] = json!(true);
                            }
                            (name.clone(), s)
                        })
                        .collect(),
                ),
                other => other,
            },
            "allOf" | "anyOf" | "oneOf" => match v {
                Value::Array(alts) => Value::Array(alts.iter().map(lower).collect()),
                other => other,
            },
            _ => v,
        };
        out.insert(k, v);
    }
    Value::Object(out)
}

fn pack() -> Value {
    json!({
        "ref": PACK,
        "name": PACK,
        "description": "Microsoft Graph presence, users, memberships, photos and sign-in logs, plus IP-based office presence, through the msgraph-connector binary.",
        "keywords": ["microsoft", "graph", "entra", "presence", "sign-ins"],
        "version": VERSION,
        "python_versions": ["3"],
        "author": "msgraph-connector",
        "email": "msgraph-connector@example.invalid",
    })
}

fn config_schema() -> Value {
    let mut out = Map::new();
    let asset = crate::asset::AssetSpec::schema();
    for (name, field, required) in config_fields() {
        let raw = asset
            .pointer(&format!("/properties/{name}"))
            .cloned()
            .unwrap_or(json!({}));
        let mut s = lower(&inline_refs(&json!({"$defs": asset["$defs"], "x": raw}))["x"]);
        if required {
            s["required"] = json!(true);
        }
        if name == "type" {
            s["default"] = json!("client_credentials");
        }
        if field.secret {
            s["secret"] = json!(true);
        }
        out.insert(config_name(&name).to_string(), s);
    }
    Value::Object(out)
}

fn action_meta(a: &crate::actions::ActionEntry) -> Value {
    let input = inline_refs(&a.own_input_schema());
    let lowered = lower(&input);
    let mut params = lowered
        .get("properties")
        .cloned()
        .unwrap_or(json!({}))
        .as_object()
        .cloned()
        .unwrap_or_default();
    params.insert(
        ACTION_PARAM.into(),
        json!({"type": "string", "default": a.meta.name, "immutable": true,
               "description": "The msgraph-connector action this runs."}),
    );
    let mut output = lower(&inline_refs(&a.output_schema()));
    if let Some(Value::Object(props)) = output.get_mut("properties") {
        // `state` goes to the datastore, not into the result.
        props.remove("state");
    }
    let description = format!(
        "{} Permissions: {}.",
        a.meta.description.trim(),
        permissions_line(a)
    );
    json!({
        "name": a.meta.name,
        "pack": PACK,
        "description": description,
        "runner_type": "python-script",
        "entry_point": ENTRY,
        "enabled": true,
        "parameters": params,
        "output_schema": output,
    })
}

fn check_action() -> Value {
    json!({
        "name": "check",
        "pack": PACK,
        "description": "Test connectivity: get a token, make one cheap Graph call, report per action which permissions are missing.",
        "runner_type": "python-script",
        "entry_point": ENTRY,
        "enabled": true,
        "parameters": {ACTION_PARAM: {"type": "string", "default": "check", "immutable": true,
                                       "description": "The msgraph-connector action this runs."}},
    })
}

fn wrapper() -> String {
    python_module(
        "\"\"\"Microsoft Graph Connector for StackStorm: runs the msgraph-connector binary.\"\"\"\n",
        WRAPPER,
        &[("CONFIG", config_table()), ("ACTIONS", action_table())],
    )
}

fn readme() -> String {
    let mut s = format!(
        "# Microsoft Graph Connector (StackStorm pack `{PACK}`)\n\n\
         Generated by `msgraph-connector export stackstorm DIR` from the connector's action list.\n\n\
         ## Install\n\n\
         1. Export with `--bundle` (the binary goes to `actions/`), or put `msgraph-connector`\n   \
         on the PATH of the st2 action runners.\n\
         2. `st2 pack install file://DIR`, then write `/opt/stackstorm/configs/{PACK}.yaml`\n   \
         (keys from `config.schema.yaml`; or `st2 pack config {PACK}`) and `st2ctl reload --register-configs`.\n\
         3. `st2 run {PACK}.check` names any permission the app lacks.\n\n\
         Each action returns the connector's result object (`status_code`, `reason`,\n\
         `response_headers`, `json_body`). Incremental actions keep their `state` in the\n\
         datastore (key `state.<action>`, pack-local). Secrets (`secret: true`) reach the\n\
         binary on its standard input only.\n\n\
         Schemas are lowered from draft 2020-12 to StackStorm's draft-4 dialect: `$ref`s\n\
         inlined, `null` alternatives dropped (leave an optional parameter out instead),\n\
         `const` as `enum`, `writeOnly` as `secret`, `required` as a flag on each property,\n\
         `format` dropped (dates and URIs say so in their description).\n\n\
         ## Actions and permissions\n\n\
         | action | what it does | Graph application permissions |\n| --- | --- | --- |\n\
         | `{PACK}.check` | Test connectivity | any of the below |\n"
    );
    for a in actions() {
        s.push_str(&format!(
            "| `{PACK}.{}` | {} | {} |\n",
            a.meta.name,
            a.meta.title,
            permissions_line(a)
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowering_reaches_the_draft4_dialect() {
        let s = json!({
            "type": "object",
            "required": ["id"],
            "properties": {
                "id": {"type": "string", "minLength": 1},
                "at": {"type": ["string", "null"], "format": "date-time", "default": null, "description": "When."},
                "mode": {"anyOf": [{"oneOf": [{"const": "a", "type": "string"}, {"const": "b", "type": "string"}]}, {"type": "null"}]},
                "secret": {"type": ["string", "null"], "writeOnly": true},
                "n": {"type": "integer", "exclusiveMinimum": 0, "format": "uint32"},
                "any": true
            },
            "$schema": "https://json-schema.org/draft/2020-12/schema"
        });
        assert_eq!(
            lower(&s),
            json!({
                "type": "object",
                "properties": {
                    "id": {"type": "string", "minLength": 1, "required": true},
                    "at": {"type": "string", "description": "When. (format: date-time)"},
                    "mode": {"enum": ["a", "b"], "type": "string"},
                    "secret": {"type": "string", "secret": true},
                    "n": {"type": "integer", "minimum": 0, "exclusiveMinimum": true},
                    "any": {}
                }
            })
        );
    }

    #[test]
    fn every_action_has_its_immutable_name_and_no_ref_left() {
        for a in actions() {
            let meta = action_meta(a);
            assert_eq!(meta["parameters"][ACTION_PARAM]["default"], a.meta.name);
            let text = meta.to_string();
            for word in [
                "$ref",
                "$defs",
                "\"const\"",
                "\"format\"",
                "writeOnly",
                "\"null\"",
            ] {
                assert!(!text.contains(word), "{}: {word} left", a.meta.name);
            }
        }
    }
}
