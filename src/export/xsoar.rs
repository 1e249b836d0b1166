//! Cortex XSOAR: a content pack with one integration.
//!
//! Layout and fields follow `demisto/content`'s `Packs/MicrosoftGraphUser`
//! (`pack_metadata.json`, `Integrations/MicrosoftGraphUser/MicrosoftGraphUser.yml`)
//! and demisto-sdk's integration schema (`demisto_sdk/commands/common/schemas/integration.yml`,
//! demisto-sdk 1.39): `commonfields`, `configuration` (parameter types from
//! `demisto_sdk/commands/common/constants.py` `ParameterType`: 0 string, 4 encrypted,
//! 8 boolean, 9 credentials, 12 text area, 14 encrypted text area, 15 single select),
//! `script` with `commands` whose `arguments` take `isArray`, `auto: PREDEFINED` +
//! `predefined`, `defaultValue`, `secret`, and whose `outputs` are `contextPath`s.
//! Entries the wrapper returns use the raw entry format (`Type` 1 note / 4 error,
//! `ContentsFormat`, `EntryContext`) that CommonServerPython's `CommandResults` builds.

use serde_json::{Map, Value, json};

use super::{
    Field, Kind, Package, Step, VERSION, action_table, actions, config_fields, json_body, leaves,
    pascal, permissions_line, python_module, summary,
};
use crate::error::Result;

/// The integration's id, file names and context root.
pub const NAME: &str = "MSGraphConnector";
/// Commands are `msgraph-<action in kebab case>`.
const VENDOR: &str = "msgraph";
/// A Python 3 image of demisto's; the binary must be added to it (README).
const DOCKER_IMAGE: &str = "demisto/python3:3.12.8.1983910";

const WRAPPER: &str = include_str!("templates/xsoar.py");

/// `get_presence` -> `msgraph-get-presence`.
pub fn command_name(action: &str) -> String {
    format!("{VENDOR}-{}", action.replace('_', "-"))
}

pub fn build() -> Result<Package> {
    let dir = format!("Integrations/{NAME}");
    let mut p = Package {
        binary_dir: dir.clone(),
        ..Package::default()
    };
    p.add("pack_metadata.json", super::json_text(&pack_metadata())?);
    p.add("README.md", readme());
    // demisto-sdk validate (PA128) wants both in every pack; ours have nothing to ignore.
    p.add(".pack-ignore", "");
    p.add(".secrets-ignore", "");
    p.add(format!("{dir}/{NAME}.yml"), super::yaml(&integration())?);
    p.add(format!("{dir}/{NAME}.py"), wrapper());
    p.add(format!("{dir}/{NAME}_description.md"), description());
    p.add(format!("{dir}/README.md"), readme());
    Ok(p)
}

fn pack_metadata() -> Value {
    json!({
        "name": "Microsoft Graph Connector",
        "description": "Presence, users, memberships, photos and sign-in logs from Microsoft Graph, plus IP-based office presence, through the msgraph-connector binary.",
        "support": "community",
        "currentVersion": VERSION,
        "author": "msgraph-connector",
        "url": "",
        "email": "",
        // Fixed, so that the export is deterministic.
        "created": "2026-01-01T00:00:00Z",
        "categories": ["Authentication & Identity Management"],
        "tags": [],
        "useCases": [],
        "keywords": ["Microsoft Graph", "Entra ID", "presence", "sign-ins"],
        "marketplaces": ["xsoar", "marketplacev2"],
    })
}

/// Instance parameters -> asset fields, for the wrapper (`PARAMS`); credentials
/// parameters (type 9) map their `identifier` and `password` parts.
fn params_table() -> Value {
    json!({
        "asset_type": "type",
        "credentials": {"identifier": "client_id", "password": "client_secret"},
        "tenant_id": "tenant_id",
        "url": "url",
        "login_url": "login_url",
        "token_url": "token_url",
        "certificate": "certificate",
        "private_key": "private_key",
        "user_credentials": {"identifier": "username", "password": "password"},
        "refresh_token": "refresh_token",
    })
}

fn configuration() -> Vec<Value> {
    let fields = config_fields();
    let about = |name: &str| -> Field {
        fields
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, f, _)| f.clone())
            .expect("a configured asset field")
    };
    let info = |name: &str| about(name).description;
    let default_of = |name: &str| {
        about(name)
            .default
            .and_then(|d| d.as_str().map(String::from))
    };
    let types: Vec<String> = about("type")
        .choices
        .iter()
        .filter_map(|c| c.as_str().map(String::from))
        .collect();
    let mut params = vec![
        json!({"name": "asset_type", "display": "Authentication type", "type": 15, "required": true,
               "options": types, "defaultvalue": "client_credentials", "section": "Connect",
               "additionalinfo": "client_credentials (tenant id + client secret), oauth2_client_credentials (token URL + client secret), client_certificate (certificate + private key), password (user credentials, no MFA), refresh_token."}),
        json!({"name": "credentials", "display": "Client ID", "displaypassword": "Client secret",
               "type": 9, "required": true, "section": "Connect",
               "additionalinfo": format!("{} Client secret: {}", info("client_id"), info("client_secret"))}),
        json!({"name": "tenant_id", "display": "Tenant ID", "type": 0, "required": false,
               "section": "Connect", "additionalinfo": info("tenant_id")}),
        json!({"name": "url", "display": "Graph URL", "type": 0, "required": false,
               "defaultvalue": default_of("url"), "section": "Connect", "additionalinfo": info("url")}),
        json!({"name": "login_url", "display": "Login URL", "type": 0, "required": false,
               "defaultvalue": default_of("login_url"), "section": "Connect",
               "additionalinfo": info("login_url")}),
        json!({"name": "token_url", "display": "Token URL", "type": 0, "required": false,
               "section": "Connect", "advanced": true, "additionalinfo": info("token_url")}),
        json!({"name": "certificate", "display": "Certificate (PEM)", "type": 12, "required": false,
               "section": "Connect", "advanced": true, "additionalinfo": info("certificate")}),
        json!({"name": "private_key", "display": "Private key (PEM)", "type": 14, "required": false,
               "section": "Connect", "advanced": true, "additionalinfo": info("private_key")}),
        json!({"name": "user_credentials", "display": "Username", "displaypassword": "Password",
               "type": 9, "required": false, "section": "Connect", "advanced": true,
               "additionalinfo": info("password")}),
        json!({"name": "refresh_token", "display": "Refresh token", "type": 4, "required": false,
               "section": "Connect", "advanced": true, "additionalinfo": info("refresh_token")}),
        json!({"name": "insecure", "display": "Trust any certificate (not secure)", "type": 8,
               "required": false, "defaultvalue": "false", "section": "Connect", "advanced": true}),
        json!({"name": "proxy", "display": "Use system proxy settings", "type": 8,
               "required": false, "defaultvalue": "false", "section": "Connect", "advanced": true}),
    ];
    for p in &mut params {
        if let Value::Object(map) = p {
            map.retain(|_, v| !v.is_null() && v != "");
        }
    }
    params
}

/// A default as XSOAR shows it: text (lists as CSV, objects as JSON).
fn default_text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Array(items) if items.is_empty() => None,
        Value::Array(items) if items.iter().all(|i| !i.is_object() && !i.is_array()) => Some(
            items
                .iter()
                .map(|i| i.as_str().map_or_else(|| i.to_string(), String::from))
                .collect::<Vec<_>>()
                .join(","),
        ),
        other => Some(other.to_string()),
    }
}

fn argument(name: &str, field: &Field, required: bool) -> Value {
    let description = field.argument_description(name);
    let mut arg = Map::new();
    arg.insert("name".into(), json!(name));
    arg.insert("description".into(), json!(description));
    if required {
        arg.insert("required".into(), json!(true));
    }
    if field.is_scalar_array() {
        arg.insert("isArray".into(), json!(true));
    }
    let choices: Vec<String> = match &field.kind {
        Kind::Boolean => vec!["true".into(), "false".into()],
        Kind::Array(items) => items.choices.iter().filter_map(default_text).collect(),
        _ => field.choices.iter().filter_map(default_text).collect(),
    };
    if !choices.is_empty() {
        arg.insert("auto".into(), json!("PREDEFINED"));
        arg.insert("predefined".into(), json!(choices));
    }
    if let Some(d) = field.default.as_ref().and_then(default_text) {
        arg.insert("defaultValue".into(), json!(d));
    }
    if field.secret {
        arg.insert("secret".into(), json!(true));
    }
    Value::Object(arg)
}

fn output_type(field: &Field) -> &'static str {
    match &field.kind {
        Kind::String => "String",
        Kind::Integer | Kind::Number => "Number",
        Kind::Boolean => "Boolean",
        Kind::Array(items) => output_type(items),
        _ => "Unknown",
    }
}

/// The context root of an action's answer: `MSGraphConnector.GetPresence`.
pub fn context_prefix(action: &str) -> String {
    format!("{NAME}.{}", pascal(action))
}

fn outputs(action: &crate::actions::ActionEntry) -> Vec<Value> {
    let prefix = context_prefix(action.meta.name);
    let body = json_body(action);
    let mut seen = Vec::new();
    let mut out = Vec::new();
    for leaf in leaves(&body) {
        // XSOAR context paths do not mark arrays: `A.B` names B in every item of A.
        let keys: Vec<&str> = leaf
            .path
            .iter()
            .filter_map(|s| match s {
                Step::Key(k) => Some(k.as_str()),
                Step::Items => None,
            })
            .collect();
        let path = if keys.is_empty() {
            if matches!(body.kind, Kind::Any) && body.nullable {
                continue; // `json_body: null` (update_user): nothing to put in the context
            }
            prefix.clone()
        } else {
            format!("{prefix}.{}", keys.join("."))
        };
        if seen.contains(&path) {
            continue;
        }
        seen.push(path.clone());
        let mut description = leaf.field.description.trim().to_string();
        if description.is_empty() {
            description = keys.last().copied().unwrap_or("The answer").to_string() + ".";
        }
        out.push(json!({"contextPath": path, "description": description, "type": output_type(&leaf.field)}));
    }
    out
}

fn commands() -> Vec<Value> {
    actions()
        .iter()
        .map(|a| {
            let args: Vec<Value> = super::inputs(a)
                .iter()
                .map(|(n, f, r)| argument(n, f, *r))
                .collect();
            let mut cmd = json!({
                "name": command_name(a.meta.name),
                "description": format!("{} Permissions: {}.", summary(a), permissions_line(a)),
                "arguments": args,
                "outputs": outputs(a),
            });
            if a.meta.changes_data {
                cmd["execution"] = json!(true);
            }
            cmd
        })
        .collect()
}

fn integration() -> Value {
    json!({
        "commonfields": {"id": NAME, "version": -1},
        "name": NAME,
        "display": "Microsoft Graph Connector",
        "category": "Authentication & Identity Management",
        "description": "Presence, users, memberships, photos and sign-in logs from Microsoft Graph, plus IP-based office presence. Runs the msgraph-connector binary.",
        "configuration": configuration(),
        "script": {
            "script": "-",
            "type": "python",
            "subtype": "python3",
            "dockerimage": DOCKER_IMAGE,
            "runonce": false,
            "commands": commands(),
        },
        "fromversion": "6.0.0",
        "tests": ["No tests (auto formatted)"],
    })
}

fn wrapper() -> String {
    let commands: Map<String, Value> = actions()
        .iter()
        .map(|a| {
            (
                command_name(a.meta.name),
                json!({"action": a.meta.name, "context": context_prefix(a.meta.name)}),
            )
        })
        .collect();
    python_module(
        "\"\"\"Microsoft Graph Connector for Cortex XSOAR: runs the msgraph-connector binary.\"\"\"\n",
        WRAPPER,
        &[
            ("PARAMS", params_table()),
            ("ACTIONS", action_table()),
            ("COMMANDS", Value::Object(commands)),
        ],
    )
}

fn description() -> String {
    "## Microsoft Graph Connector\n\n\
     Register an app in Entra ID and grant it the application permissions the commands\n\
     need (see the README). Choose the authentication type, then give the client ID and\n\
     secret (and the tenant ID), or a certificate and private key. For national clouds set\n\
     the Graph URL and login URL.\n\n\
     The integration runs the `msgraph-connector` binary, which must be in the docker image\n\
     (or beside the integration script). Credentials reach it on its standard input only.\n"
        .to_string()
}

fn readme() -> String {
    let mut s = String::from(
        "# Microsoft Graph Connector (Cortex XSOAR)\n\n\
         Generated by `msgraph-connector export xsoar DIR` from the connector's action list.\n\n\
         ## Install\n\n\
         1. Build a docker image with the binary: `FROM ",
    );
    s.push_str(DOCKER_IMAGE);
    s.push_str(
        "` and `COPY msgraph-connector /usr/local/bin/`\n   \
         (or export with `--bundle` to put the binary beside the script).\n\
         2. Set that image as the integration's `dockerimage`, then upload the pack\n   \
         (`demisto-sdk upload -i DIR`, or zip it and upload it in the UI).\n\
         3. Add an instance: authentication type, client ID and secret, tenant ID; **Test** runs\n   \
         `msgraph-connector check`, which names any permission the app lacks.\n\n\
         Incremental commands (`msgraph-pull-sign-ins`, `msgraph-evaluate-ip-presence`) keep their\n\
         state in the integration context, so each run continues where the last one stopped.\n\
         List arguments take comma-separated values or a JSON array; object arguments take JSON.\n\n\
         ## Commands and permissions\n\n\
         | command | what it does | Graph application permissions |\n| --- | --- | --- |\n",
    );
    for a in actions() {
        s.push_str(&format!(
            "| `{}` | {} | {} |\n",
            command_name(a.meta.name),
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
    fn every_action_is_a_command_and_changes_are_execution() {
        let yml = integration();
        let cmds = yml["script"]["commands"].as_array().unwrap();
        assert_eq!(cmds.len(), actions().len());
        let update = cmds
            .iter()
            .find(|c| c["name"] == "msgraph-update-user")
            .unwrap();
        assert_eq!(update["execution"], json!(true));
        let props = update["arguments"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["name"] == "properties")
            .unwrap();
        assert_eq!(props["secret"], json!(true));
        let get = cmds
            .iter()
            .find(|c| c["name"] == "msgraph-get-presences")
            .unwrap();
        assert!(get.get("execution").is_none());
        assert_eq!(get["arguments"][0]["isArray"], json!(true));
    }

    #[test]
    fn the_wrapper_tables_are_python() {
        let text = wrapper();
        assert!(text.contains("\"msgraph-get-presence\": {"));
        assert!(text.contains("\"incremental\": True"));
        assert!(!text.contains(": true"));
        let _ = super::super::py_literal(&params_table());
    }
}
