//! `export turbine DIR`: a Swimlane Turbine connector folder.
//!
//! What Turbine's runtime reads is known from Swimlane's published helper
//! (`swimlane-core` 1.1.1, `swimlane_core/io_handler.py`): it globs every
//! `*.yaml` under the connector folder and picks the asset manifest with
//! `schema: asset/1` whose `name` it infers from the asset's keys, and the
//! action manifest with `schema: action/1` whose `name` is the action. The
//! fields of those manifests (`title`, `description`, `inputs` as a JSON Schema,
//! `output`, `meta`, `format: password` for secrets) follow Swimlane's
//! connector_def_runner README (<https://pypi.org/project/connector_def_runner/>),
//! the asset field names Swimlane's own Graph connector
//! (<https://docs.swimlane.com/connectors/microsoft-graph-api-users-and-presence>).
//! The connector manifest and the container file are not publicly documented:
//! every such choice is listed in the exported README ([`GUESSES`]).
//!
//! Our five asset types become four Turbine assets, named so that
//! swimlane-core's inference finds them: `oauth2_client_credentials` holds
//! both app-secret flows (`tenant_id` or `token_url`), `oauth2_password` the
//! password flow under Swimlane's `oauth2_username`/`oauth2_password` names;
//! the certificate and refresh-token flows have no name in swimlane-core's table
//! and keep ours.

use serde::Serialize;
use serde_json::{Map, Value, json};

use super::{File, flatten, mark_secrets, yaml};
use crate::actions::{ACTIONS, ActionEntry};
use crate::asset::AssetSpec;
use crate::error::Result;

/// The connector's name in Turbine.
pub const CONNECTOR_NAME: &str = "msgraph_connector";

/// Every choice made without public documentation, as the exported README lists them.
pub const GUESSES: &[&str] = &[
    "The connector manifest is `connector.yaml` with `schema: connector/1`, by analogy with `asset/1` and `action/1`; its fields (`name`, `title`, `version`, `vendor`, `description`, `icon`, `runner`) are our choice.",
    "The icon is `image/logo.svg`, referred to from `connector.yaml` by `icon`.",
    "Assets live in `assets/`, actions in `actions/`: swimlane-core finds manifests anywhere under the folder, so the layout is free.",
    "Action manifests keep our permissions, `changes_data` and `incremental` under `meta`, which connector_def_runner uses for HTTP `endpoint`/`method` instead.",
    "`meta.security` of the two OAuth 2.0 assets copies connector_def_runner's `type: oauth2` with `flow: client_credentials` or `flow: password`; the certificate and refresh-token assets have none (none is documented).",
    "The `client_certificate` and `refresh_token` assets keep our names: swimlane-core's name table infers `apikey` (or `oauth2_client_credentials` when a client secret is present) for their keys, so its `InputHandler` does not find their manifests; the binary still infers the flow from the keys.",
    "The Graph action input names of Swimlane's own connector are not published: the HTTP-style shape uses Graph's query option names (`$select`, `$filter`, `$search`, `$orderby`, `$top`, `$count`) under `parameters`, the user under `path_parameters.id`, the PATCH body as `json_body`.",
    "The container file (`Dockerfile`) starts `msgraph-connector run --turbine` with the action as the first argument, as swimlane-core's `InputHandler` reads it; how Turbine builds and starts a connector image is not documented.",
    "`state` of incremental actions (`pull_sign_ins`, `evaluate_ip_presence`) is an input key named `state`, and the new state is the output's `state`: a playbook feeds it back.",
];

/// The files of the package.
pub fn files() -> Result<Vec<File>> {
    let mut files = vec![
        File::new("connector.yaml", connector_manifest()?),
        File::new("image/logo.svg", LOGO),
        File::new("Dockerfile", DOCKERFILE),
        File::new("README.md", readme()),
    ];
    for asset in ASSETS {
        files.push(File::new(
            format!("assets/{}.yaml", asset.name),
            yaml(&asset_manifest(asset))?,
        ));
    }
    for action in ACTIONS {
        files.push(File::new(
            format!("actions/{}.yaml", action.meta.name),
            yaml(&action_manifest(action))?,
        ));
    }
    Ok(files)
}

#[derive(Serialize)]
struct Connector {
    schema: &'static str,
    name: &'static str,
    title: &'static str,
    version: &'static str,
    vendor: &'static str,
    description: &'static str,
    icon: &'static str,
    runner: Value,
}

fn connector_manifest() -> Result<String> {
    yaml(&Connector {
        schema: "connector/1",
        name: CONNECTOR_NAME,
        title: "Microsoft Graph Users and Presence (msgraph-connector)",
        version: env!("CARGO_PKG_VERSION"),
        vendor: "Microsoft",
        description: "Microsoft Graph users and presence for playbooks: presence of one user or a hundred thousand, users, memberships, profile photos, sign-in logs and IP-based office presence. One native binary runs every action; no Python needed.",
        icon: "image/logo.svg",
        runner: json!({
            "type": "container",
            "file": "Dockerfile",
            "entrypoint": ["/usr/local/bin/msgraph-connector", "run", "--turbine"],
        }),
    })
}

/// One Turbine asset: its name, the flows it stands for, the fields it shows.
struct TurbineAsset {
    name: &'static str,
    title: &'static str,
    description: &'static str,
    /// Our field and the name Turbine shows it under.
    fields: &'static [(&'static str, &'static str)],
    /// Required fields (Turbine's names); `any_of` lists alternatives of which one is required.
    required: &'static [&'static str],
    any_of: &'static [&'static str],
    security: Option<&'static str>,
}

/// Fields every asset shows after its credential fields.
const COMMON: &[&str] = &[
    "url",
    "api_version",
    "scope",
    "verify_ssl",
    "http_proxy",
    "timeout_seconds",
    "max_attempts",
];

const ASSETS: &[TurbineAsset] = &[
    TurbineAsset {
        name: "oauth2_client_credentials",
        title: "OAuth 2.0 Client Credentials",
        description: "App-only access with the app's client secret: give tenant_id (the token URL is built from login_url and it) or an explicit token_url.",
        fields: &[
            ("client_id", "client_id"),
            ("client_secret", "client_secret"),
            ("tenant_id", "tenant_id"),
            ("token_url", "token_url"),
            ("login_url", "login_url"),
        ],
        required: &["client_id", "client_secret"],
        any_of: &["tenant_id", "token_url"],
        security: Some("client_credentials"),
    },
    TurbineAsset {
        name: "oauth2_password",
        title: "OAuth 2.0 Password Grant",
        description: "Delegated access as one user with their password (resource-owner password flow; fails for users who must do MFA).",
        fields: &[
            ("client_id", "client_id"),
            ("client_secret", "client_secret"),
            ("tenant_id", "tenant_id"),
            ("username", "oauth2_username"),
            ("password", "oauth2_password"),
            ("login_url", "login_url"),
        ],
        required: &[
            "client_id",
            "tenant_id",
            "oauth2_username",
            "oauth2_password",
        ],
        any_of: &[],
        security: Some("password"),
    },
    TurbineAsset {
        name: "client_certificate",
        title: "Client Certificate",
        description: "App-only access with a client assertion signed by the app's certificate key.",
        fields: &[
            ("client_id", "client_id"),
            ("tenant_id", "tenant_id"),
            ("certificate", "certificate"),
            ("private_key", "private_key"),
            ("login_url", "login_url"),
        ],
        required: &["client_id", "tenant_id", "certificate", "private_key"],
        any_of: &[],
        security: None,
    },
    TurbineAsset {
        name: "refresh_token",
        title: "OAuth 2.0 Refresh Token",
        description: "Delegated access from a refresh token (works with MFA); every answer rotates it and the newest is kept in the connector's state dir.",
        fields: &[
            ("client_id", "client_id"),
            ("client_secret", "client_secret"),
            ("tenant_id", "tenant_id"),
            ("refresh_token", "refresh_token"),
            ("login_url", "login_url"),
        ],
        required: &["client_id", "refresh_token"],
        any_of: &[],
        security: None,
    },
];

#[derive(Serialize)]
struct AssetManifest {
    schema: &'static str,
    name: &'static str,
    title: &'static str,
    description: &'static str,
    inputs: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    meta: Option<Value>,
}

fn asset_manifest(asset: &TurbineAsset) -> AssetManifest {
    let ours = flatten(&AssetSpec::schema());
    let props = ours["properties"].as_object().cloned().unwrap_or_default();
    let mut properties = Map::new();
    let named = asset
        .fields
        .iter()
        .copied()
        .chain(COMMON.iter().map(|f| (*f, *f)));
    for (field, shown) in named {
        let Some(mut schema) = props.get(field).cloned() else {
            continue;
        };
        if let Value::Object(m) = &mut schema {
            m.insert("title".into(), Value::String(title_of(shown)));
        }
        mark_secrets(&mut schema);
        properties.insert(shown.to_string(), schema);
    }
    let mut inputs = Map::new();
    inputs.insert("type".into(), "object".into());
    inputs.insert("properties".into(), Value::Object(properties));
    inputs.insert("required".into(), json!(asset.required));
    if !asset.any_of.is_empty() {
        let alternatives: Vec<Value> = asset
            .any_of
            .iter()
            .map(|f| json!({ "required": [f] }))
            .collect();
        inputs.insert("oneOf".into(), Value::Array(alternatives));
    }
    inputs.insert("additionalProperties".into(), Value::Bool(false));
    AssetManifest {
        schema: "asset/1",
        name: asset.name,
        title: asset.title,
        description: asset.description,
        inputs: Value::Object(inputs),
        meta: asset
            .security
            .map(|flow| json!({ "security": { "type": "oauth2", "flow": flow } })),
    }
}

/// A field's title in a form: `client_secret` -> `Client Secret`, `url` -> `URL`.
fn title_of(field: &str) -> String {
    field
        .split('_')
        .map(|w| match w {
            "id" | "url" | "ssl" | "http" | "api" => w.to_uppercase(),
            "oauth2" => "OAuth2".to_string(),
            _ => {
                let mut c = w.chars();
                c.next()
                    .map(|f| f.to_uppercase().chain(c).collect())
                    .unwrap_or_default()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[derive(Serialize)]
struct ActionManifest {
    schema: &'static str,
    name: &'static str,
    title: &'static str,
    description: &'static str,
    inputs: Value,
    output: Value,
    meta: Value,
}

fn action_manifest(action: &ActionEntry) -> ActionManifest {
    let clean = |mut schema: Value| {
        if let Value::Object(m) = &mut schema {
            m.remove("$schema");
        }
        let mut schema = flatten(&schema);
        mark_secrets(&mut schema);
        schema
    };
    let meta = &action.meta;
    ActionManifest {
        schema: "action/1",
        name: meta.name,
        title: meta.title,
        description: meta.description,
        inputs: clean(action.input_schema()),
        output: clean(action.output_schema()),
        meta: json!({
            "permissions": meta.permission_names(),
            "requires": meta.permissions,
            "changes_data": meta.changes_data,
            "incremental": meta.incremental,
            "http_style_inputs": action.takes_http_style(),
        }),
    }
}

const LOGO: &str = r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 64 64" width="64" height="64">
  <rect x="2" y="2" width="28" height="28" fill="#f25022"/>
  <rect x="34" y="2" width="28" height="28" fill="#7fba00"/>
  <rect x="2" y="34" width="28" height="28" fill="#00a4ef"/>
  <rect x="34" y="34" width="28" height="28" fill="#ffb900"/>
</svg>
"##;

const DOCKERFILE: &str = r#"# The connector's runtime: the release binary, nothing else (no Python).
# Build it first and copy it beside this file:
#   cargo build --release && cp target/release/msgraph-connector .
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --create-home --home-dir /var/lib/msgraph-connector connector \
 && chmod 0700 /var/lib/msgraph-connector
COPY msgraph-connector /usr/local/bin/msgraph-connector
# Token cache and the embedded store; owner-only, as the connector requires.
ENV MSGRAPH_CONNECTOR_STATE_DIR=/var/lib/msgraph-connector/state
USER connector
# Turbine passes the action as the first argument, one flat JSON object on
# stdin and ASSET_KEYS in the environment; the result is a `::set-output` line.
ENTRYPOINT ["/usr/local/bin/msgraph-connector", "run", "--turbine"]
"#;

fn readme() -> String {
    let mut s = String::new();
    s.push_str("# msgraph-connector for Swimlane Turbine\n\n");
    s.push_str(
        "Generated by `msgraph-connector export turbine DIR` from the binary's own action list; \
do not edit by hand, export again.\n\n",
    );
    s.push_str("## Build\n\n```sh\ncargo build --release\ncp target/release/msgraph-connector DIR/\ndocker build -t msgraph-connector-turbine DIR\n```\n\n");
    s.push_str("## How it runs\n\n");
    s.push_str(
        "Turbine's runtime protocol as Swimlane's `swimlane-core` 1.1.1 reads it \
(`swimlane_core/io_handler.py`): the action is the first argument of the entry point \
(`msgraph-connector run --turbine ACTION`); stdin holds one flat JSON object with the \
asset's fields and the action's inputs side by side; `ASSET_KEYS` names the asset's keys, \
comma-separated; the proxy is `http_proxy` from the environment, else the asset's. \
The result is one line `::set-output {json}` on stdout (`status_code`, `reason`, \
`response_headers`, `json_body`, and `state` for incremental actions), an error one line \
`::set-error {\"error\": {...}}` on stderr; the exit status is 0, or 2 (invalid input, no \
request made), 3 (authentication), 4 (Graph), 5 (network), 1 (a defect).\n\n",
    );
    s.push_str("## Assets\n\n| Turbine asset | our flow | chosen when the asset holds |\n| --- | --- | --- |\n");
    s.push_str("| `oauth2_client_credentials` | `client_credentials` | `client_id`, `client_secret`, `tenant_id` |\n");
    s.push_str("| `oauth2_client_credentials` | `oauth2_client_credentials` | `client_id`, `client_secret`, `token_url` |\n");
    s.push_str("| `oauth2_password` | `password` | `oauth2_username`, `oauth2_password` (or `username`, `password`) |\n");
    s.push_str("| `client_certificate` | `client_certificate` | `certificate`, `private_key` |\n");
    s.push_str("| `refresh_token` | `refresh_token` | `refresh_token` |\n\n");
    s.push_str(
        "An asset holding two flows' credentials, or `tenant_id` and `token_url` together, is \
refused (exit 2) naming the keys; so is a key named in `ASSET_KEYS` but absent from stdin.\n\n",
    );
    s.push_str("## Actions\n\n| action | title | changes data |\n| --- | --- | --- |\n");
    for a in ACTIONS {
        s.push_str(&format!(
            "| `{}` | {} | {} |\n",
            a.meta.name,
            a.meta.title,
            if a.meta.changes_data { "yes" } else { "no" }
        ));
    }
    s.push_str(
        "\n`get_presence`, `get_user`, `list_memberships` and `update_user` also take Swimlane's \
HTTP-style grouping (`path_parameters.id`, `parameters.$select`, `json_body`), so a playbook \
written for Swimlane's own Graph connector runs unchanged.\n\n",
    );
    s.push_str("## Choices made without public documentation\n\n");
    for g in GUESSES {
        s.push_str(&format!("- {g}\n"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_read_like_forms() {
        assert_eq!(title_of("client_secret"), "Client Secret");
        assert_eq!(title_of("url"), "URL");
        assert_eq!(title_of("oauth2_username"), "OAuth2 Username");
        assert_eq!(title_of("verify_ssl"), "Verify SSL");
    }

    #[test]
    fn every_asset_field_exists_in_ours() {
        let ours = AssetSpec::schema();
        for asset in ASSETS {
            for (field, _) in asset.fields {
                assert!(ours["properties"].get(field).is_some(), "{field}");
            }
            let m = asset_manifest(asset);
            for r in asset.required.iter().chain(asset.any_of) {
                assert!(
                    m.inputs["properties"].get(r).is_some(),
                    "{}: {r}",
                    asset.name
                );
            }
        }
    }
}
