//! Splunk SOAR: a classic app (app JSON + a `BaseConnector` module).
//!
//! Fields follow `splunk-soar-connectors/msadgraph`'s `msadgraph.json` (`appid`,
//! `configuration` with `data_type` `password` for secrets, actions with
//! `identifier`, `type`, `read_only`, `parameters` with `contains` and `primary`,
//! `output` `data_path`s under `action_result.data.*`, `action_result.summary.*`,
//! `action_result.status`, `action_result.message`, `summary.total_objects*`) and
//! its `msadgraph_connector.py` (`handle_action` dispatching on
//! `get_action_identifier()`, state through `load_state`/`save_state` in
//! `initialize`/`finalize`). splunk-soar-sdk 2.3's `soar_sdk/cli/manifests/deserializers.py`
//! (`AppMetaDeserializer.from_app_json`) is the parser the Python suite checks it with;
//! its `meta/datatypes.py` names the data types it takes (string, numeric, boolean, password).

use serde_json::{Map, Value, json};

use super::{
    Field, Kind, Package, Step, VERSION, action_table, actions, config_fields, config_name,
    config_table, contains, json_body, leaves, permissions_line, python_module, summary,
};
use crate::actions::ActionEntry;
use crate::error::Result;

/// Stable across versions: SOAR identifies an installed app by it (a fixed UUID
/// chosen for this app; changing it would install a second app beside the first).
pub const APPID: &str = "0d7ac1a5-6b0e-4c39-9e0f-4d5347524150";
const MODULE: &str = "msgraphconnector_connector.py";
const APP_JSON: &str = "msgraphconnector.json";
const WRAPPER: &str = include_str!("templates/splunk_soar.py");

pub fn build() -> Result<Package> {
    let mut p = Package::default();
    p.add(APP_JSON, super::json_text(&app_json())?);
    p.add(MODULE, wrapper());
    p.add("__init__.py", "");
    p.add("README.md", readme());
    Ok(p)
}

/// `get_presence` -> `get presence`: the action's name as SOAR shows it.
pub fn action_name(name: &str) -> String {
    name.replace('_', " ")
}

fn data_type(field: &Field) -> &'static str {
    match &field.kind {
        _ if field.secret => "password",
        Kind::Integer | Kind::Number => "numeric",
        Kind::Boolean => "boolean",
        _ => "string",
    }
}

/// A default as the parameter's data type holds it.
fn default_value(field: &Field) -> Option<Value> {
    let d = field.default.as_ref()?;
    match d {
        Value::Array(items) if items.is_empty() => None,
        Value::Array(items) => Some(Value::String(
            items
                .iter()
                .map(|i| i.as_str().map_or_else(|| i.to_string(), String::from))
                .collect::<Vec<_>>()
                .join(","),
        )),
        Value::Object(_) => Some(Value::String(d.to_string())),
        _ => Some(d.clone()),
    }
}

fn value_list(field: &Field) -> Vec<Value> {
    field
        .choices
        .iter()
        .filter_map(|c| c.as_str().map(|s| json!(s)))
        .collect()
}

fn configuration() -> Map<String, Value> {
    let mut out = Map::new();
    for (order, (name, field, required)) in config_fields().iter().enumerate() {
        let mut spec = Map::new();
        let mut description = field.description.trim().to_string();
        if description.is_empty() {
            description = name.clone();
        }
        spec.insert("description".into(), json!(description));
        spec.insert("data_type".into(), json!(data_type(field)));
        spec.insert("required".into(), json!(*required));
        if let Some(d) = default_value(field) {
            spec.insert("default".into(), d);
        }
        if name == "type" {
            spec.insert("default".into(), json!("client_credentials"));
        }
        let values = value_list(field);
        if !values.is_empty() {
            spec.insert("value_list".into(), Value::Array(values));
        }
        spec.insert("order".into(), json!(order));
        out.insert(config_name(name).to_string(), Value::Object(spec));
    }
    out
}

fn parameter(name: &str, field: &Field, required: bool, order: usize) -> Value {
    let description = field.argument_description(name);
    let mut spec = Map::new();
    spec.insert("description".into(), json!(description));
    spec.insert("data_type".into(), json!(data_type(field)));
    spec.insert("required".into(), json!(required));
    let cef = contains(name);
    if !cef.is_empty() {
        spec.insert("contains".into(), json!(cef));
        spec.insert("primary".into(), json!(true));
    }
    if let Some(d) = default_value(field) {
        spec.insert("default".into(), d);
    }
    let values = value_list(field);
    if !values.is_empty() {
        spec.insert("value_list".into(), Value::Array(values));
    }
    spec.insert("order".into(), json!(order));
    Value::Object(spec)
}

fn output(path: String, field: &Field, key: Option<&str>) -> Value {
    let mut o = json!({"data_path": path, "data_type": data_type(field)});
    if let Some(cef) = key.map(contains).filter(|c| !c.is_empty()) {
        o["contains"] = json!(cef);
    }
    o
}

fn outputs(action: &ActionEntry, inputs: &[(String, Field, bool)]) -> Vec<Value> {
    let mut out = vec![
        json!({"data_path": "action_result.status", "data_type": "string", "example_values": ["success", "failed"]}),
    ];
    // A secret parameter (update_user's properties) is not echoed into the result.
    for (name, field, _) in inputs.iter().filter(|(_, f, _)| !f.secret) {
        out.push(output(
            format!("action_result.parameter.{name}"),
            field,
            Some(name),
        ));
    }
    let body = json_body(action);
    for leaf in leaves(&body) {
        if leaf.path.is_empty() {
            continue; // json_body is one value (or null): nothing under data.* to name
        }
        let path: Vec<&str> = leaf
            .path
            .iter()
            .map(|s| match s {
                Step::Key(k) => k.as_str(),
                Step::Items => "*",
            })
            .collect();
        let key = leaf.path.iter().rev().find_map(|s| match s {
            Step::Key(k) => Some(k.as_str()),
            Step::Items => None,
        });
        out.push(output(
            format!("action_result.data.*.{}", path.join(".")),
            &leaf.field,
            key,
        ));
    }
    out.push(json!({"data_path": "action_result.summary.status_code", "data_type": "numeric", "example_values": [200]}));
    out.push(json!({"data_path": "action_result.message", "data_type": "string"}));
    out.push(json!({"data_path": "summary.total_objects", "data_type": "numeric", "example_values": [1]}));
    out.push(json!({"data_path": "summary.total_objects_successful", "data_type": "numeric", "example_values": [1]}));
    out
}

/// SOAR's action types: reads are `investigate`; actions that change something
/// (the tenant, or our presence store) are `generic` (none of ours contains or corrects
/// an incident by itself: `update_user` can disable an account, but so can it rename one).
fn action_type(a: &ActionEntry) -> &'static str {
    if a.meta.changes_data {
        "generic"
    } else {
        "investigate"
    }
}

fn app_json() -> Value {
    let mut acts = vec![json!({
        "action": "test connectivity",
        "identifier": "test_connectivity",
        "description": "Get a token and make one cheap Graph call; fails naming any permission the app lacks",
        "type": "test",
        "read_only": true,
        "parameters": {},
        "output": [],
        "versions": "EQ(*)",
    })];
    for a in actions() {
        let inputs = super::inputs(a);
        let params: Map<String, Value> = inputs
            .iter()
            .enumerate()
            .map(|(i, (n, f, r))| (n.clone(), parameter(n, f, *r, i)))
            .collect();
        acts.push(json!({
            "action": action_name(a.meta.name),
            "identifier": a.meta.name,
            "description": a.meta.title,
            "verbose": format!("{} Permissions: {}.", summary(a), permissions_line(a)),
            "type": action_type(a),
            "read_only": !a.meta.changes_data,
            "parameters": params,
            "output": outputs(a, &inputs),
            "versions": "EQ(*)",
        }));
    }
    json!({
        "appid": APPID,
        "name": "Microsoft Graph Connector",
        "description": "Presence, users, memberships, photos and sign-in logs from Microsoft Graph, plus IP-based office presence, through the msgraph-connector binary",
        "type": "identity management",
        "product_vendor": "Microsoft",
        "product_name": "Microsoft Graph",
        "product_version_regex": ".*",
        "publisher": "msgraph-connector",
        "license": "Apache-2.0",
        "app_version": VERSION,
        "python_version": "3.9, 3.13",
        // Fixed, so that the export is deterministic.
        "utctime_updated": "2026-01-01T00:00:00.000000Z",
        "package_name": "phantom_msgraphconnector",
        "main_module": MODULE,
        "min_phantom_version": "6.2.0",
        "fips_compliant": false,
        "logo": "",
        "configuration": configuration(),
        "actions": acts,
        "pip39_dependencies": {"wheel": []},
        "pip313_dependencies": {"wheel": []},
    })
}

fn wrapper() -> String {
    python_module(
        "\"\"\"Microsoft Graph Connector for Splunk SOAR: runs the msgraph-connector binary.\"\"\"\n",
        WRAPPER,
        &[("CONFIG", config_table()), ("ACTIONS", action_table())],
    )
}

fn readme() -> String {
    let mut s = String::from(
        "# Microsoft Graph Connector (Splunk SOAR)\n\n\
         Generated by `msgraph-connector export splunk-soar DIR` from the connector's action list.\n\n\
         ## Install\n\n\
         1. Export with `--bundle` so the binary sits beside the connector module (or put\n   \
         `msgraph-connector` on the SOAR user's PATH).\n\
         2. `tar -czf msgraphconnector.tgz -C DIR/.. $(basename DIR)` and install the tarball\n   \
         under Apps > Install App.\n\
         3. Configure an asset: authentication type (`auth_type`), client ID and secret, tenant ID;\n   \
         **Test Connectivity** runs `msgraph-connector check`, which names any missing permission.\n\n\
         Incremental actions (`pull sign ins`, `evaluate ip presence`) keep their state with\n\
         `save_state`, so each run continues where the last one stopped; the token cache and\n\
         the presence store live in the app's state directory. List parameters take\n\
         comma-separated values or a JSON array; object parameters take JSON.\n\n\
         ## Actions and permissions\n\n\
         | action | type | Graph application permissions |\n| --- | --- | --- |\n\
         | `test connectivity` | test | any of the below |\n",
    );
    for a in actions() {
        s.push_str(&format!(
            "| `{}` | {} | {} |\n",
            action_name(a.meta.name),
            action_type(a),
            permissions_line(a)
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_carry_read_only_contains_and_secrets() {
        let app = app_json();
        let acts = app["actions"].as_array().unwrap();
        assert_eq!(acts.len(), actions().len() + 1);
        let get = acts
            .iter()
            .find(|a| a["identifier"] == "get_presence")
            .unwrap();
        assert_eq!(get["read_only"], json!(true));
        assert_eq!(get["parameters"]["id"]["contains"][0], "user id");
        let update = acts
            .iter()
            .find(|a| a["identifier"] == "update_user")
            .unwrap();
        assert_eq!(update["read_only"], json!(false));
        assert_eq!(update["parameters"]["properties"]["data_type"], "password");
        assert_eq!(
            app["configuration"]["client_secret"]["data_type"],
            "password"
        );
        assert_eq!(
            app["configuration"]["auth_type"]["value_list"][0],
            "client_credentials"
        );
    }
}
