//! The outer contract (shared/docs/CONTRACT.md): catalog, schemas, manifest and
//! action pages in step with the code; bad input refused with exit 2, a JSON
//! pointer, and no connection made.

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use msgraph_connector::actions::ACTIONS;
use msgraph_connector::asset::{AssetSpec, AssetType};
use serde_json::{Value, json};

use crate::examples::without_markers;
use crate::support::process;

fn state_dir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn repo_file(path: &str) -> String {
    let full = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

fn yaml(path: &str) -> Value {
    serde_norway::from_str(&repo_file(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A loopback port that counts the connections made to it, standing in for
/// Graph and the token endpoint: bad input must never reach it.
struct ConnectionCounter {
    url: String,
    count: Arc<AtomicUsize>,
}

impl ConnectionCounter {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let count = Arc::new(AtomicUsize::new(0));
        let seen = count.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                seen.fetch_add(1, Ordering::SeqCst);
                drop(conn);
            }
        });
        ConnectionCounter { url, count }
    }

    fn asset(&self) -> Value {
        json!({"type": "client_credentials", "tenant_id": "contoso.onmicrosoft.com", "client_id": "app",
               "client_secret": "s3cr3t-value-never-printed", "url": self.url, "login_url": self.url})
    }

    fn connections(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }
}

#[test]
fn catalog_lists_every_action_once() {
    let dir = state_dir();
    let out = process::run(&["actions"], b"", dir.path());
    assert_eq!(out.code, 0, "{}", out.stderr);
    let catalog = out.json();
    let names: Vec<&str> = catalog
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    let unique: BTreeSet<&str> = names.iter().copied().collect();
    assert_eq!(
        names.len(),
        unique.len(),
        "duplicate action names: {names:?}"
    );
    assert_eq!(names.len(), ACTIONS.len());
    for entry in catalog.as_array().unwrap() {
        for key in ["name", "title", "description", "permissions"] {
            assert!(entry.get(key).is_some(), "{entry} lacks {key}");
        }
    }
}

#[test]
fn every_schema_prints_and_is_draft_2020_12() {
    let dir = state_dir();
    let mut targets: Vec<(String, bool)> = vec![("asset".into(), false)];
    for a in ACTIONS {
        targets.push((a.meta.name.to_string(), false));
        targets.push((a.meta.name.to_string(), true));
    }
    for (target, output) in targets {
        let mut args = vec!["schema", target.as_str()];
        if output {
            args.push("--output");
        }
        let out = process::run(&args, b"", dir.path());
        assert_eq!(out.code, 0, "schema {target}: {}", out.stderr);
        let schema = out.json();
        assert_eq!(
            schema["$schema"], "https://json-schema.org/draft/2020-12/schema",
            "{target}"
        );
        jsonschema::draft202012::new(&schema)
            .unwrap_or_else(|e| panic!("{target}: schema does not compile: {e}"));
        if !output && target != "asset" {
            // An action taking Swimlane's HTTP-style grouping has `oneOf` [ours, grouped]:
            // each alternative must be closed.
            let closed = |s: &Value| s["additionalProperties"] == false;
            let alternatives = schema["oneOf"].as_array().cloned().unwrap_or_default();
            assert!(
                closed(&schema) || (!alternatives.is_empty() && alternatives.iter().all(closed)),
                "{target} inputs must refuse unknown fields"
            );
        }
    }
}

/// Objects of an action's inputs that are open by design, with the reason.
const OPEN_BY_DESIGN: &[(&str, &str, &str)] = &[(
    "evaluate_ip_presence",
    "/properties/sign_ins/items",
    "sign-ins are Graph's records, passed as Graph lists them",
)];

/// Every object an action's inputs can hold is closed, so a misspelt field is
/// refused instead of silently ignored: a record refuses unknown fields
/// (`additionalProperties: false`, or `unevaluatedProperties: false` where
/// `#[serde(flatten)]` merges records), and a map (no `properties`) says what
/// its values are. Walked from the root through `$ref`, `$defs` included.
#[test]
fn every_input_schema_is_closed() {
    for a in ACTIONS {
        let schema = a.input_schema();
        let open: Vec<String> = open_objects(&schema)
            .into_iter()
            .filter(|at| {
                !OPEN_BY_DESIGN
                    .iter()
                    .any(|(name, pointer, _)| *name == a.meta.name && at == pointer)
            })
            .collect();
        assert!(
            open.is_empty(),
            "{}: input schema objects that accept unknown fields: {open:?}",
            a.meta.name
        );
    }
}

#[test]
fn the_closed_schema_walker_tells_open_from_closed() {
    let record = |extra: Value| {
        let mut s = json!({"type": "object", "properties": {"a": {"type": "string"}}});
        s.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        s
    };
    assert!(open_objects(&record(json!({"additionalProperties": false}))).is_empty());
    assert_eq!(open_objects(&record(json!({}))), [""]);
    // A flattened enum: its variants are checked in place, closed by the parent's
    // `unevaluatedProperties`; a record under a property is a new instance.
    let flattened = json!({
        "type": "object", "unevaluatedProperties": false,
        "properties": {"inner": {"$ref": "#/$defs/Inner"}},
        "anyOf": [{"oneOf": [{"$ref": "#/$defs/Variant"}]}, {}],
        "$defs": {
            "Variant": {"type": "object", "properties": {"kind": {"const": "A"}}},
            "Inner": {"type": "object", "properties": {"x": {"type": "string"}}}
        }
    });
    assert_eq!(open_objects(&flattened), ["/$defs/Inner"]);
    let map = json!({"type": "object", "additionalProperties": {"type": "string"}});
    assert!(open_objects(&map).is_empty());
    let any = json!({"type": "object", "additionalProperties": true});
    assert_eq!(open_objects(&any), [""]);
}

/// Pointers (into `root`) of the object schemas that accept unknown fields.
fn open_objects(root: &Value) -> Vec<String> {
    let mut walk = SchemaWalk {
        root,
        seen: BTreeSet::new(),
        open: Vec::new(),
    };
    walk.visit(root, String::new(), false);
    // Definitions no `$ref` reaches are checked too, on their own.
    if let Some(Value::Object(defs)) = root.get("$defs") {
        for (name, def) in defs {
            let at = format!("/$defs/{}", pointer_token(name));
            if !walk.seen.iter().any(|(p, _)| *p == at) {
                walk.visit(def, at, false);
            }
        }
    }
    walk.open
}

struct SchemaWalk<'a> {
    root: &'a Value,
    /// (schema pointer, covered) pairs already visited: schemas may recurse.
    seen: BTreeSet<(String, bool)>,
    open: Vec<String>,
}

impl SchemaWalk<'_> {
    /// `covered`: an enclosing schema of the same instance has `unevaluatedProperties: false`.
    fn visit(&mut self, schema: &Value, at: String, covered: bool) {
        let Value::Object(s) = schema else {
            return; // `true` / `false`
        };
        if !self.seen.insert((at.clone(), covered)) {
            return;
        }
        let covered = covered || s.get("unevaluatedProperties") == Some(&Value::Bool(false));
        let is_object = s.contains_key("properties")
            || s.get("type").is_some_and(|t| {
                t == "object"
                    || t.as_array()
                        .is_some_and(|ts| ts.iter().any(|t| t == "object"))
            });
        if is_object {
            let closed = covered || s.get("additionalProperties") == Some(&Value::Bool(false));
            let typed_map = !s.contains_key("properties")
                && s.get("additionalProperties").is_some_and(Value::is_object);
            if !closed && !typed_map {
                self.open.push(at.clone());
            }
        }
        // The same instance, checked in place: the cover carries over. A record that
        // refuses unknown fields itself (`additionalProperties: false`) also covers the
        // conditions it holds (`allOf` of `if`/`then` naming some of its properties, as
        // set_presence's documented pairs): a field they name that it lacks is refused by it.
        let covered = covered
            || (s.contains_key("properties")
                && s.get("additionalProperties") == Some(&Value::Bool(false)));
        if let Some(Value::String(target)) = s.get("$ref") {
            let pointer = target.strip_prefix('#').unwrap_or(target);
            if let Some(def) = self.root.pointer(pointer) {
                self.visit(def, pointer.to_string(), covered);
            }
        }
        for key in ["allOf", "anyOf", "oneOf"] {
            for (i, sub) in s
                .get(key)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                self.visit(sub, format!("{at}/{key}/{i}"), covered);
            }
        }
        for key in ["not", "if", "then", "else"] {
            if let Some(sub) = s.get(key) {
                self.visit(sub, format!("{at}/{key}"), covered);
            }
        }
        for (name, sub) in s
            .get("dependentSchemas")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            let at = format!("{at}/dependentSchemas/{}", pointer_token(name));
            self.visit(sub, at, covered);
        }
        // Other instances (members, items, values): a cover ends here.
        for key in ["properties", "patternProperties"] {
            for (name, sub) in s.get(key).and_then(Value::as_object).into_iter().flatten() {
                self.visit(sub, format!("{at}/{key}/{}", pointer_token(name)), false);
            }
        }
        for key in [
            "items",
            "prefixItems",
            "additionalProperties",
            "unevaluatedProperties",
            "unevaluatedItems",
            "contains",
            "propertyNames",
        ] {
            match s.get(key) {
                Some(Value::Array(subs)) => {
                    for (i, sub) in subs.iter().enumerate() {
                        self.visit(sub, format!("{at}/{key}/{i}"), false);
                    }
                }
                Some(sub) => self.visit(sub, format!("{at}/{key}"), false),
                None => {}
            }
        }
    }
}

fn pointer_token(name: &str) -> String {
    name.replace('~', "~0").replace('/', "~1")
}

#[test]
fn checked_in_schemas_match_the_code() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas");
    let expected = msgraph_connector::cli::all_schema_files();
    let on_disk: BTreeSet<String> = std::fs::read_dir(&dir)
        .expect("schemas/ exists")
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let wanted: BTreeSet<String> = expected.iter().map(|(n, _)| n.clone()).collect();
    assert_eq!(
        on_disk, wanted,
        "schemas/ has other files than the code generates"
    );
    for (name, text) in expected {
        assert_eq!(
            std::fs::read_to_string(dir.join(&name)).unwrap(),
            text,
            "schemas/{name} drifted from the code: run `cargo run -- schema --write-all schemas/`"
        );
    }
}

#[test]
fn manifest_matches_the_code() {
    let manifest = yaml("manifest.yaml");
    assert_eq!(manifest["name"], "msgraph-connector");
    assert_eq!(manifest["version"], env!("CARGO_PKG_VERSION"));

    let listed: Vec<&str> = manifest["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    let registered: Vec<&str> = ACTIONS.iter().map(|a| a.meta.name).collect();
    assert_eq!(
        listed, registered,
        "manifest.yaml actions differ from the registry"
    );
    for a in manifest["actions"].as_array().unwrap() {
        let file = a["file"].as_str().unwrap();
        assert_eq!(
            file,
            format!("actions/{}.yaml", a["name"].as_str().unwrap())
        );
    }

    let schema = AssetSpec::schema();
    let types = manifest["asset_types"].as_array().unwrap();
    let names: Vec<&str> = types.iter().map(|t| t["type"].as_str().unwrap()).collect();
    let known: Vec<&str> = AssetType::ALL.iter().map(|t| t.as_str()).collect();
    assert_eq!(names, known, "manifest asset types differ from the code");
    for (t, spec) in AssetType::ALL.iter().zip(types) {
        for field in spec["fields"].as_array().unwrap() {
            let name = field["name"].as_str().unwrap();
            let prop = &schema["properties"][name];
            assert!(prop.is_object(), "{name} is not an asset field");
            let secret = field["secret"].as_bool().unwrap_or(false);
            assert_eq!(
                prop["writeOnly"].as_bool().unwrap_or(false),
                secret,
                "{name}: secret flag differs"
            );
            let required = field["required"].as_bool().unwrap_or(false);
            let code_required = name == "client_id" || t.required_fields().contains(&name);
            assert_eq!(
                required,
                code_required,
                "{}: {name} required flag differs",
                t.as_str()
            );
        }
        for needed in t.required_fields() {
            assert!(
                spec["fields"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|f| f["name"] == *needed),
                "{}: manifest omits required {needed}",
                t.as_str()
            );
        }
    }
}

#[test]
fn action_pages_match_the_code_and_their_examples_fit_the_schemas() {
    for a in ACTIONS {
        let path = format!("actions/{}.yaml", a.meta.name);
        let page = yaml(&path);
        assert_eq!(page["name"], a.meta.name, "{path}");
        assert_eq!(page["title"], a.meta.title, "{path}");
        let permissions: Vec<&str> = page["permissions"]
            .as_array()
            .unwrap_or_else(|| panic!("{path}: permissions"))
            .iter()
            .map(|p| p.as_str().unwrap())
            .collect();
        assert_eq!(
            permissions,
            a.meta.permission_names(),
            "{path}: permissions differ from the code"
        );
        let roles: Vec<&str> = page["directory_roles"]
            .as_array()
            .map(|r| r.iter().map(|x| x["role"].as_str().unwrap()).collect())
            .unwrap_or_default();
        let code_roles: Vec<&str> = a.directory_roles.iter().map(|r| r.role).collect();
        assert_eq!(
            roles, code_roles,
            "{path}: directory_roles differ from the code"
        );
        assert!(
            page["graph"].as_array().is_some_and(|g| !g.is_empty()) || !a.meta.needs_graph,
            "{path}: graph calls"
        );
        let examples = page["examples"]
            .as_array()
            .unwrap_or_else(|| panic!("{path}: examples"));
        assert!(!examples.is_empty(), "{path}: needs at least one example");
        let input_schema = jsonschema::draft202012::new(&a.input_schema()).unwrap();
        let output_schema = jsonschema::draft202012::new(&a.output_schema()).unwrap();
        for (i, ex) in examples.iter().enumerate() {
            let errors: Vec<String> = input_schema
                .iter_errors(&ex["inputs"])
                .map(|e| e.to_string())
                .collect();
            assert!(errors.is_empty(), "{path} example {i} inputs: {errors:?}");
            let result = &ex["result"];
            assert!(
                result.is_object(),
                "{path} example {i}: needs the expected result"
            );
            if result.get("error").is_none() {
                let result = without_markers(result);
                let errors: Vec<String> = output_schema
                    .iter_errors(&result)
                    .map(|e| e.to_string())
                    .collect();
                assert!(errors.is_empty(), "{path} example {i} result: {errors:?}");
            }
        }
    }
}

/// Each bad input: exit 2, one error object naming the pointer, no connection.
#[test]
fn bad_input_is_refused_before_any_request() {
    let server = ConnectionCounter::start();
    let asset = server.asset();
    let dir = state_dir();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("malformed JSON", b"{\"asset\": ".to_vec(), ""),
        ("not an object", b"[1,2]".to_vec(), ""),
        ("empty stdin", b"".to_vec(), ""),
        ("invalid UTF-8", b"{\"inputs\": {\"id\": \"\xff\xfe\"}}".to_vec(), ""),
        (
            "wrong type",
            json!({"asset": asset, "inputs": {"id": 42}}).to_string().into_bytes(),
            "/inputs/id",
        ),
        (
            "unknown input field",
            json!({"asset": asset, "inputs": {"id": "a@b.c", "idd": 1}}).to_string().into_bytes(),
            "/inputs/idd",
        ),
        (
            "missing required input",
            json!({"asset": asset, "inputs": {}}).to_string().into_bytes(),
            "/inputs/id",
        ),
        (
            "unknown envelope field",
            json!({"asset": asset, "inputs": {"id": "x"}, "extra": 1}).to_string().into_bytes(),
            "/extra",
        ),
        ("missing asset", json!({"inputs": {"id": "x"}}).to_string().into_bytes(), "/asset"),
        (
            "asset missing a field of its type",
            json!({"asset": {"type": "password", "client_id": "c", "tenant_id": "t", "username": "u"},
                   "inputs": {"id": "x"}})
            .to_string()
            .into_bytes(),
            "/asset/password",
        ),
        (
            "a pacing window no clock can hold",
            json!({"asset": {"type": "client_credentials", "client_id": "c", "tenant_id": "t",
                             "client_secret": "s", "rate_limits": {"directory": {"requests": 1, "per_seconds": 1e300}}},
                   "inputs": {"id": "x"}})
            .to_string()
            .into_bytes(),
            "/asset/rate_limits/directory/per_seconds",
        ),
        (
            "unknown asset type",
            json!({"asset": {"type": "kerberos", "client_id": "c"}, "inputs": {"id": "x"}})
                .to_string()
                .into_bytes(),
            "/asset/type",
        ),
        (
            "plain http to a remote host",
            json!({"asset": {"type": "client_credentials", "client_id": "c", "tenant_id": "t",
                             "client_secret": "s", "url": "http://graph.example.com"},
                   "inputs": {"id": "x"}})
            .to_string()
            .into_bytes(),
            "/asset/url",
        ),
    ];
    for (what, stdin, pointer) in cases {
        let out = process::run(&["run", "get_presence"], &stdin, dir.path());
        assert_eq!(out.code, 2, "{what}: {}", out.stderr);
        let err = out.json();
        assert_eq!(err["error"]["kind"], "invalid_input", "{what}");
        let paths: Vec<&str> = err["error"]["details"]
            .as_array()
            .unwrap_or_else(|| panic!("{what}: details"))
            .iter()
            .map(|d| d["path"].as_str().unwrap())
            .collect();
        assert!(
            paths.contains(&pointer),
            "{what}: {paths:?} lacks {pointer:?}"
        );
        assert!(
            out.stderr.contains("invalid_input"),
            "{what}: stderr says nothing: {}",
            out.stderr
        );
        assert!(
            !out.stdout.contains("s3cr3t-value-never-printed"),
            "{what}: secret on stdout"
        );
        assert!(
            !out.stderr.contains("s3cr3t-value-never-printed"),
            "{what}: secret on stderr"
        );
    }
    let out = process::run(&["run", "no_such_action"], b"{}", dir.path());
    assert_eq!(out.code, 2);
    assert!(
        out.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("get_presence")
    );
    assert_eq!(server.connections(), 0, "bad input reached the network");
}

#[test]
fn stdin_beyond_the_limit_is_refused_without_reading_it_all() {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let dir = state_dir();
    let mut child = Command::new(env!("CARGO_BIN_EXE_msgraph-connector"))
        .args([
            "--state-dir",
            dir.path().to_str().unwrap(),
            "run",
            "get_presence",
        ])
        .env_remove("ASSET_KEYS")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // Offer 64 MiB; the connector must stop reading after its limit and answer.
    let writer = std::thread::spawn(move || {
        let chunk = vec![b' '; 1 << 20];
        let mut written = 0usize;
        for _ in 0..64 {
            if stdin.write_all(&chunk).is_err() {
                break;
            }
            written += chunk.len();
        }
        written
    });
    let out = child.wait_with_output().unwrap();
    let written = writer.join().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("larger than"),
        "{err}"
    );
    assert!(
        written < 64 << 20,
        "the connector read all 64 MiB instead of stopping at its limit"
    );
}

/// Issue 19, item 4: a FIFO hung the connector and `/dev/zero` was read until
/// the kernel killed it. File inputs must be regular files: both are refused at
/// once, exit 2 naming the pointer, before any connection.
#[test]
fn fifos_and_devices_as_file_inputs_are_refused_at_once() {
    let server = ConnectionCounter::start();
    let dir = state_dir();
    let scratch = tempfile::tempdir().unwrap();
    let fifo = scratch.path().join("fifo");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    assert!(made.is_ok_and(|s| s.success()), "mkfifo");
    let asset_file = scratch.path().join("asset.json");
    std::fs::write(&asset_file, server.asset().to_string()).unwrap();
    let inputs_file = scratch.path().join("inputs.json");
    std::fs::write(&inputs_file, json!({"id": "u"}).to_string()).unwrap();
    let limit = std::time::Duration::from_secs(20);
    let refused = |out: &process::Outcome, pointer: &str| {
        assert_eq!(out.code, 2, "{}", out.stderr);
        let e = &out.json()["error"];
        assert_eq!(e["details"][0]["path"], pointer, "{e}");
        assert!(
            e["details"][0]["message"]
                .as_str()
                .unwrap()
                .contains("not a regular file"),
            "{e}"
        );
    };
    for bad in [fifo.to_str().unwrap(), "/dev/zero"] {
        for (flag, pointer) in [
            ("--asset", "/asset"),
            ("--inputs", "/inputs"),
            ("--state", "/state"),
        ] {
            let (asset, inputs) = match flag {
                "--asset" => (bad, inputs_file.to_str().unwrap()),
                "--inputs" => (asset_file.to_str().unwrap(), bad),
                _ => (asset_file.to_str().unwrap(), inputs_file.to_str().unwrap()),
            };
            let mut args = vec!["run", "pull_sign_ins", "--asset", asset, "--inputs", inputs];
            if flag == "--state" {
                args.extend(["--state", bad]);
            }
            let out = process::run_within(&args, b"", dir.path(), limit);
            refused(&out, pointer);
        }
        let envelope = json!({"asset": server.asset(), "inputs": {"config_path": bad}});
        for action in ["sync_ip_presence", "evaluate_ip_presence"] {
            let mut envelope = envelope.clone();
            if action == "evaluate_ip_presence" {
                envelope["inputs"]["sign_ins"] = json!([]);
            }
            let out = process::run_within(
                &["run", action],
                envelope.to_string().as_bytes(),
                dir.path(),
                limit,
            );
            refused(&out, "/inputs/config_path");
        }
        let envelope = json!({"asset": server.asset(), "inputs": {
            "sign_ins_path": bad, "ranges": [], "users": []}});
        let out = process::run_within(
            &["run", "evaluate_ip_presence"],
            envelope.to_string().as_bytes(),
            dir.path(),
            limit,
        );
        assert_eq!(out.code, 2, "{}", out.stderr);
        assert_eq!(
            out.json()["error"]["details"][0]["path"],
            "/inputs/sign_ins_path"
        );
    }
    assert_eq!(server.connections(), 0);
}

#[test]
fn asset_and_inputs_from_files_and_turbine_environment() {
    let server = ConnectionCounter::start();
    let dir = state_dir();
    let asset_file = dir.path().join("asset.json");
    let inputs_file = dir.path().join("inputs.json");
    std::fs::write(&asset_file, server.asset().to_string()).unwrap();
    std::fs::write(&inputs_file, json!({"id": 7}).to_string()).unwrap();
    let out = process::run(
        &[
            "run",
            "get_presence",
            "--asset",
            asset_file.to_str().unwrap(),
            "--inputs",
            inputs_file.to_str().unwrap(),
        ],
        b"",
        dir.path(),
    );
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert_eq!(out.json()["error"]["details"][0]["path"], "/inputs/id");

    // Swimlane Turbine: one flat object on stdin, the asset's keys named in ASSET_KEYS,
    // the error as one `::set-error` line on stderr.
    let mut all = server.asset();
    all["id"] = json!(["not", "a", "string"]);
    let out = process::run_env(
        &["run", "get_presence"],
        all.to_string().as_bytes(),
        dir.path(),
        &[(
            "ASSET_KEYS",
            "type,tenant_id,client_id,client_secret,url,login_url",
        )],
    );
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert_eq!(out.stdout, "");
    let line = out.stderr.trim().strip_prefix("::set-error ").unwrap();
    let error: Value = serde_json::from_str(line).unwrap();
    assert_eq!(error["error"]["details"][0]["path"], "/inputs/id");
    assert_eq!(server.connections(), 0);
}

#[test]
fn readme_names_every_action_and_both_commands() {
    let readme = repo_file("README.md");
    for a in ACTIONS {
        assert!(
            readme.contains(&format!("`{}`", a.meta.name)),
            "README does not mention {}",
            a.meta.name
        );
    }
    assert!(readme.contains("cargo run --release -- demo"));
    // README's test command is what CI runs, and it includes `cargo test --locked`.
    let ci = repo_file(".ci/run");
    let script = repo_file("scripts/test");
    assert!(
        readme.contains("bash scripts/test")
            && ci.contains("\nbash scripts/test")
            && script.contains("cargo test --locked"),
        "README, .ci/run and scripts/test disagree on the test command"
    );
}
