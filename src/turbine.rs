//! Swimlane Turbine's runtime protocol, as Swimlane's own helper reads it
//! (`swimlane-core` 1.1.1 on PyPI, `swimlane_core/io_handler.py`,
//! <https://pypi.org/project/swimlane-core/1.1.1/>):
//!
//! - the action is the first command-line argument (the exported container's
//!   entry point is `msgraph-connector run --turbine`, so Turbine's argument
//!   lands where `run` takes the action);
//! - stdin holds **one flat JSON object**: the asset's fields and the action's
//!   inputs side by side (`InputHandler._load_raw_inputs`; empty stdin is `{}`);
//! - `ASSET_KEYS` (comma-separated) names the keys that are the asset
//!   (`_load_asset_and_inputs`; unset is an error there too);
//! - the proxy is the `http_proxy` environment variable, else the asset's
//!   `http_proxy` (`InputHandler.__init__`);
//! - the result is one line `::set-output {json}` on stdout, an error one line
//!   `::set-error {json}` on stderr (`OutputHandler`).
//!
//! Design: this module turns the flat object into the contract's [`Envelope`]
//! (split by `ASSET_KEYS`, asset `type` inferred, Swimlane's field names mapped
//! to ours) and renders the outcome; everything between is the runner's one
//! validate -> dispatch path ([`runner::execute`]). Errors are the contract's
//! error object, pointers into the envelope (`/asset/client_id`, `/inputs/id`:
//! the flat key is the last token), exit statuses as in the contract.
//!
//! Stricter than swimlane-core, on purpose: a key named in `ASSET_KEYS` but
//! absent from stdin is refused (swimlane-core skips it), so a misnamed field
//! is found before a request rather than as an authentication failure.

use std::io::Write;

use serde_json::{Map, Value};

use crate::actions::{self, ActionMeta};
use crate::asset::AssetType;
use crate::error::{Detail, Error, Result, pointer_token};
use crate::runner::{self, Envelope, RunSettings};

/// The environment variable naming the asset's keys.
pub const ASSET_KEYS: &str = "ASSET_KEYS";

/// Whether `run` speaks Turbine's protocol: asked for with `--turbine`, or `ASSET_KEYS` is set.
pub fn selected(flag: bool) -> bool {
    flag || std::env::var_os(ASSET_KEYS).is_some()
}

/// `run ACTION` under Turbine's protocol; returns the exit status.
pub fn run(action_name: &str, settings: &RunSettings) -> i32 {
    let outcome = (|| {
        let action =
            actions::find(action_name).ok_or_else(|| runner::unknown_action(action_name))?;
        // Read the variables first: a missing ASSET_KEYS is refused before stdin is read.
        let asset_keys = match std::env::var(ASSET_KEYS) {
            Ok(keys) => keys,
            Err(std::env::VarError::NotPresent) => {
                return Err(Error::invalid(
                    "",
                    "the ASSET_KEYS environment variable is not set: Turbine names the asset's keys in it, comma-separated",
                ));
            }
            Err(std::env::VarError::NotUnicode(_)) => {
                return Err(Error::invalid("", "ASSET_KEYS is not valid UTF-8"));
            }
        };
        // swimlane-core: `os.getenv("http_proxy") or asset.get("http_proxy")`.
        let env_proxy = std::env::var("http_proxy").ok().filter(|p| !p.is_empty());
        let bytes = runner::read_limited(std::io::stdin().lock(), "stdin")?;
        let envelope = envelope(&bytes, &asset_keys, &action.meta, env_proxy)?;
        runner::execute(action, envelope, settings)
    })();
    match outcome {
        Ok(finished) => {
            let mut out = std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout().lock());
            let written = out
                .write_all(b"::set-output ")
                .map_err(serde_json::Error::io)
                .and_then(|()| finished.write(&mut out, false))
                .and_then(|()| out.write_all(b"\n").map_err(serde_json::Error::io));
            let _ = out.flush();
            if written.is_err() { 1 } else { 0 }
        }
        Err(error) => {
            eprintln!("{}", error_line(&error));
            error.exit_code()
        }
    }
}

/// The `::set-error` line of `error`: the contract's error object, on one line.
pub fn error_line(error: &Error) -> String {
    format!("::set-error {}", error.to_json())
}

/// The contract's envelope from Turbine's flat object: keys in `asset_keys` are
/// the asset (only when the action talks to Graph), `state` is the incoming
/// state of an incremental action, everything else is an input.
pub fn envelope(
    stdin: &[u8],
    asset_keys: &str,
    action: &ActionMeta,
    env_proxy: Option<String>,
) -> Result<Envelope> {
    // swimlane-core reads empty stdin as `{}`.
    let value = if stdin.is_empty() {
        Value::Object(Map::new())
    } else {
        runner::parse_json(stdin, "")?
    };
    let Value::Object(mut all) = value else {
        return Err(Error::invalid(
            "",
            "stdin must hold one flat JSON object: the asset's fields and the action's inputs side by side",
        ));
    };
    let keys: Vec<&str> = asset_keys
        .split(',')
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .collect();
    let absent: Vec<Detail> = keys
        .iter()
        .filter(|k| !all.contains_key(**k))
        .map(|k| {
            Detail::new(
                format!("/asset/{}", pointer_token(k)),
                "is named in ASSET_KEYS but is not in the object on stdin",
            )
        })
        .collect();
    if !absent.is_empty() {
        return Err(Error::invalid_details(absent));
    }
    let mut asset = Map::new();
    for k in &keys {
        if let Some((k, v)) = all.remove_entry(*k) {
            // An unset asset field reaches us as null: it means "not given".
            if !v.is_null() {
                asset.insert(k, v);
            }
        }
    }
    let state = if action.incremental {
        all.remove("state").filter(|v| !v.is_null())
    } else {
        None
    };
    let asset = if action.needs_graph && !keys.is_empty() {
        if let Some(proxy) = env_proxy {
            asset.insert("http_proxy".into(), Value::String(proxy));
        }
        Some(Value::Object(our_asset(asset)?))
    } else {
        None
    };
    Ok(Envelope {
        asset,
        inputs: Value::Object(all),
        state,
    })
}

/// Swimlane's names for the delegated password flow's fields (its `oauth2_password`
/// asset, as the connector_def_runner README shows it:
/// <https://pypi.org/project/connector_def_runner/>), and ours.
const RENAMED: [(&str, &str); 2] = [
    ("oauth2_username", "username"),
    ("oauth2_password", "password"),
];

/// A Turbine asset as ours: Swimlane's field names mapped, `type` inferred when absent.
pub fn our_asset(mut asset: Map<String, Value>) -> Result<Map<String, Value>> {
    for (theirs, ours) in RENAMED {
        if let Some(v) = asset.remove(theirs) {
            if asset.contains_key(ours) {
                return Err(Error::invalid(
                    format!("/asset/{theirs}"),
                    format!("and {ours} are both given; give one"),
                ));
            }
            asset.insert(ours.to_string(), v);
        }
    }
    if !asset.contains_key("type") {
        let kind = infer_type(&asset)?;
        asset.insert("type".into(), Value::String(kind.as_str().into()));
    }
    Ok(asset)
}

/// Our asset `type` from the keys a Turbine asset holds.
///
/// swimlane-core names an asset by its keys (`InputHandler.get_asset_name`:
/// `username`+`password` -> `http_basic`, `token` -> `http_bearer`,
/// `oauth2_username`+`oauth2_password` -> `oauth2_password`,
/// `client_id`+`client_secret` -> `oauth2_client_credentials`, else `apikey`),
/// and the exported assets carry those names where one fits. Its
/// `oauth2_client_credentials` covers two of our flows, told apart here by
/// `tenant_id` (token URL built from it) or `token_url` (given); the flows that
/// name has no room for are told by the credential they carry. Two credentials
/// (a refresh token and a password, say) are ambiguous and refused.
pub fn infer_type(asset: &Map<String, Value>) -> Result<AssetType> {
    let has = |k: &str| asset.contains_key(k);
    let mut kinds: Vec<(AssetType, Vec<&str>)> = Vec::new();
    let mut present = |kind: AssetType, keys: &[&'static str]| {
        let given: Vec<&str> = keys.iter().copied().filter(|k| has(k)).collect();
        if !given.is_empty() {
            kinds.push((kind, given));
        }
    };
    present(AssetType::RefreshToken, &["refresh_token"]);
    present(AssetType::Password, &["username", "password"]);
    present(
        AssetType::ClientCertificate,
        &["certificate", "private_key"],
    );
    if kinds.is_empty() && has("client_secret") {
        match (has("tenant_id"), has("token_url")) {
            (true, false) => return Ok(AssetType::ClientCredentials),
            (false, true) => return Ok(AssetType::Oauth2ClientCredentials),
            (true, true) => {
                return Err(Error::invalid_details(vec![
                    Detail::new(
                        "/asset/tenant_id",
                        "and token_url are both given, so the token endpoint is ambiguous: give tenant_id (client_credentials) or token_url (oauth2_client_credentials)",
                    ),
                    Detail::new("/asset/token_url", "and tenant_id are both given"),
                ]));
            }
            (false, false) => {
                return Err(Error::invalid(
                    "/asset/tenant_id",
                    "is required with client_id and client_secret (or give token_url instead)",
                ));
            }
        }
    }
    match kinds.len() {
        1 => Ok(kinds.remove(0).0),
        0 if has("token") => Err(Error::invalid(
            "/asset/token",
            "a bare bearer token (Turbine's http_bearer asset) is not supported: Graph tokens expire within the hour; give client_id with client_secret, a certificate, a password or a refresh token",
        )),
        0 => Err(Error::invalid(
            "/asset",
            "holds no credential: give client_id with client_secret and tenant_id (or token_url), certificate and private_key, oauth2_username and oauth2_password, or refresh_token",
        )),
        _ => Err(Error::invalid_details(
            kinds
                .iter()
                .flat_map(|(kind, keys)| {
                    keys.iter().map(move |k| {
                        Detail::new(
                            format!("/asset/{k}"),
                            format!(
                                "is a {} credential, and the asset holds another's: give one flow's credential",
                                kind.as_str()
                            ),
                        )
                    })
                })
                .collect(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn meta(name: &str) -> ActionMeta {
        actions::find(name).unwrap().meta
    }

    fn kind(v: Value) -> Result<AssetType> {
        let Value::Object(m) = v else { unreachable!() };
        infer_type(
            &our_asset(m)?
                .into_iter()
                .filter(|(k, _)| k != "type")
                .collect(),
        )
    }

    #[test]
    fn the_flat_object_splits_by_asset_keys() {
        let env = envelope(
            br#"{"client_id":"c","client_secret":"s","tenant_id":"t","id":"u"}"#,
            "client_id, client_secret,tenant_id",
            &meta("get_presence"),
            None,
        )
        .unwrap();
        assert_eq!(
            env.asset.unwrap(),
            json!({"client_id":"c","client_secret":"s","tenant_id":"t","type":"client_credentials"})
        );
        assert_eq!(env.inputs, json!({"id":"u"}));
        assert!(env.state.is_none());
    }

    #[test]
    fn asset_keys_naming_absent_keys_are_refused_by_pointer() {
        let e = envelope(
            br#"{"client_id":"c","id":"u"}"#,
            "client_id,client_secret",
            &meta("get_presence"),
            None,
        )
        .unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert_eq!(e.details[0].path, "/asset/client_secret");
    }

    #[test]
    fn state_travels_as_an_input_key_of_incremental_actions_only() {
        let flat = br#"{"client_id":"c","client_secret":"s","tenant_id":"t","state":{"v":1}}"#;
        let env = envelope(
            flat,
            "client_id,client_secret,tenant_id",
            &meta("pull_sign_ins"),
            None,
        )
        .unwrap();
        assert_eq!(env.state, Some(json!({"v": 1})));
        assert_eq!(env.inputs, json!({}));
        // Elsewhere it stays an input, and the input schema refuses it.
        let env = envelope(
            flat,
            "client_id,client_secret,tenant_id",
            &meta("get_user"),
            None,
        )
        .unwrap();
        assert_eq!(env.inputs, json!({"state": {"v": 1}}));
    }

    #[test]
    fn the_environment_proxy_wins_and_nulls_mean_unset() {
        let env = envelope(
            br#"{"client_id":"c","client_secret":"s","tenant_id":"t","http_proxy":"http://a:1","scope":null}"#,
            "client_id,client_secret,tenant_id,http_proxy,scope",
            &meta("get_user"),
            Some("http://env:3128".into()),
        )
        .unwrap();
        let asset = env.asset.unwrap();
        assert_eq!(asset["http_proxy"], "http://env:3128");
        assert!(asset.get("scope").is_none());
    }

    #[test]
    fn actions_without_graph_ignore_the_asset() {
        let env = envelope(
            br#"{"client_id":"c","day":"2024-05-01"}"#,
            "client_id",
            &meta("get_office_presence"),
            None,
        )
        .unwrap();
        assert!(env.asset.is_none());
        assert_eq!(env.inputs, json!({"day": "2024-05-01"}));
    }

    #[test]
    fn bad_stdin_is_refused_at_the_top() {
        for bad in [&b"{not json"[..], b"[1]", b"\"x\""] {
            let e = envelope(bad, "client_id", &meta("get_user"), None).unwrap_err();
            assert_eq!((e.exit_code(), e.details[0].path.as_str()), (2, ""));
        }
        let env = envelope(b"", "", &meta("get_user"), None).unwrap();
        assert_eq!(env.inputs, json!({}));
    }

    #[test]
    fn asset_types_are_inferred_from_keys() {
        let cc = json!({"client_id":"c","client_secret":"s","tenant_id":"t"});
        assert_eq!(kind(cc).unwrap(), AssetType::ClientCredentials);
        let occ = json!({"client_id":"c","client_secret":"s","token_url":"https://x/t"});
        assert_eq!(kind(occ).unwrap(), AssetType::Oauth2ClientCredentials);
        let ropc =
            json!({"client_id":"c","tenant_id":"t","oauth2_username":"u","oauth2_password":"p"});
        assert_eq!(kind(ropc).unwrap(), AssetType::Password);
        let rt = json!({"client_id":"c","client_secret":"s","refresh_token":"r"});
        assert_eq!(kind(rt).unwrap(), AssetType::RefreshToken);
        let cert = json!({"client_id":"c","tenant_id":"t","certificate":"C","private_key":"K"});
        assert_eq!(kind(cert).unwrap(), AssetType::ClientCertificate);
    }

    #[test]
    fn ambiguous_or_incomplete_assets_are_refused_naming_keys() {
        let both = json!({"client_id":"c","client_secret":"s","tenant_id":"t","token_url":"u"});
        let e = kind(both).unwrap_err();
        assert_eq!(e.details[0].path, "/asset/tenant_id");
        let two = json!({"client_id":"c","refresh_token":"r","username":"u","password":"p"});
        let paths: Vec<String> = kind(two)
            .unwrap_err()
            .details
            .into_iter()
            .map(|d| d.path)
            .collect();
        assert_eq!(
            paths,
            ["/asset/refresh_token", "/asset/username", "/asset/password"]
        );
        let e = kind(json!({"client_id":"c","client_secret":"s"})).unwrap_err();
        assert_eq!(e.details[0].path, "/asset/tenant_id");
        let e = kind(json!({"client_id":"c","token":"t"})).unwrap_err();
        assert_eq!(e.details[0].path, "/asset/token");
        let e = kind(json!({"username":"u","oauth2_username":"v"})).unwrap_err();
        assert_eq!(e.details[0].path, "/asset/oauth2_username");
    }

    #[test]
    fn error_lines_hold_the_contract_error_object() {
        let line = error_line(&Error::invalid("/inputs/id", "is required"));
        let json: Value = serde_json::from_str(line.strip_prefix("::set-error ").unwrap()).unwrap();
        assert_eq!(json["error"]["details"][0]["path"], "/inputs/id");
        assert!(!line.contains('\n'));
    }
}
