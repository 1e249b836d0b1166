//! `export PLATFORM DIR`: an installable package for a SOAR platform, generated
//! from the one action list ([`crate::actions::ACTIONS`]) and the asset schema.
//!
//! Design: every platform runs Python integration code, so each package is the
//! platform's metadata (commands, arguments, outputs, configuration) plus one thin
//! Python wrapper that builds our envelope, pipes it to the bundled binary on stdin
//! and maps the result back. All logic stays in Rust: the wrapper only coerces the
//! platform's argument values to our schema types, using a table generated here.
//!
//! - [`Package`]: the files of an export as relative path -> text, kept sorted, so
//!   output is byte-for-byte deterministic (golden tests in `tests/golden/`).
//! - [`Field`]: a JSON Schema reduced to what the platforms can say (kind, enum,
//!   default, secret), `$ref`s inlined; [`leaves`] flattens an output schema to
//!   paths (XSOAR `contextPath`s, Splunk `data_path`s).
//! - one file per platform builds its [`Package`]: `xsoar.rs`, `splunk_soar.rs`,
//!   `stackstorm.rs`, `turbine.rs` (Swimlane Turbine: YAML manifests and a container
//!   file, no Python; its schemas flattened by `forms.rs`).
//! - `templates/` holds the Python wrapper parts, included with `include_str!`.

mod forms;
pub mod splunk_soar;
pub mod stackstorm;
pub mod turbine;
pub mod xsoar;

pub use forms::{File, flatten, mark_secrets};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::actions::{ACTIONS, ActionEntry};
use crate::asset::AssetSpec;
use crate::error::{Error, Result};

/// A platform `export` writes a package for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Platform {
    /// Swimlane Turbine: asset/1 and action/1 manifests, a connector manifest, a container file.
    Turbine,
    /// Cortex XSOAR: a content pack with one integration.
    Xsoar,
    /// Splunk SOAR (formerly Phantom): an app with a BaseConnector module.
    SplunkSoar,
    /// StackStorm: a pack with one Python action per catalog action.
    Stackstorm,
}

/// The files of one export: relative path (with `/`) -> contents.
#[derive(Debug, Default)]
pub struct Package {
    pub files: BTreeMap<String, String>,
    /// Where, inside the package, a bundled binary goes.
    pub binary_dir: String,
}

impl Package {
    pub fn add(&mut self, path: impl Into<String>, text: impl Into<String>) {
        self.files.insert(path.into(), text.into());
    }
}

/// The package for `platform`, in memory.
pub fn build(platform: Platform) -> Result<Package> {
    match platform {
        Platform::Turbine => {
            let mut package = Package::default();
            for file in turbine::files()? {
                package.add(file.path, file.text);
            }
            Ok(package)
        }
        Platform::Xsoar => xsoar::build(),
        Platform::SplunkSoar => splunk_soar::build(),
        Platform::Stackstorm => stackstorm::build(),
    }
}

/// Write the package for `platform` into `dir` (created if needed; it must be empty
/// unless `force`), with a copy of `binary` beside the wrapper when given.
/// Returns the paths written, relative to `dir`.
pub fn write(
    platform: Platform,
    dir: &Path,
    binary: Option<&Path>,
    force: bool,
) -> Result<Vec<String>> {
    let package = build(platform)?;
    let refuse = |msg: String| Error::invalid("/dir", msg);
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if !force && entries.next().is_some() {
                return Err(refuse(format!(
                    "{} is not empty; give an empty or new directory (or --force to overwrite)",
                    dir.display()
                )));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(refuse(format!("cannot read {}: {e}", dir.display()))),
    }
    let mut written = Vec::new();
    for (rel, text) in &package.files {
        let path = dir.join(rel);
        create_parent(&path)?;
        std::fs::write(&path, text)
            .map_err(|e| Error::invalid("/dir", format!("cannot write {}: {e}", path.display())))?;
        written.push(rel.clone());
    }
    if let Some(binary) = binary {
        let rel = if package.binary_dir.is_empty() {
            BINARY.to_string()
        } else {
            format!("{}/{BINARY}", package.binary_dir)
        };
        let path = dir.join(&rel);
        create_parent(&path)?;
        std::fs::copy(binary, &path).map_err(|e| {
            Error::invalid(
                "/bundle",
                format!("cannot copy the binary to {}: {e}", path.display()),
            )
        })?;
        set_executable(&path)?;
        written.push(rel);
    }
    Ok(written)
}

fn create_parent(path: &Path) -> Result<()> {
    let parent = path.parent().map(PathBuf::from).unwrap_or_default();
    std::fs::create_dir_all(&parent)
        .map_err(|e| Error::invalid("/dir", format!("cannot create {}: {e}", parent.display())))
}

#[cfg(unix)]
fn set_executable(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| Error::internal(format!("cannot chmod {}: {e}", path.display())))
}

#[cfg(not(unix))]
fn set_executable(_: &Path) -> Result<()> {
    Ok(())
}

/// The binary's file name, as the wrappers look for it beside themselves and on PATH.
pub const BINARY: &str = "msgraph-connector";

/// The package version: the crate's.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

// ---------------------------------------------------------------------------
// Schemas reduced to what a platform's argument and output lists can say.

/// What kind of value a schema describes.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    String,
    Integer,
    Number,
    Boolean,
    Array(Box<Field>),
    /// Known properties (name, field, required), in the schema's (sorted) order.
    Object(Vec<(String, Field, bool)>),
    /// Anything: an open object, `true`, or a shape too deep to spell out.
    Any,
}

/// One schema, `$ref`s resolved, `null` alternatives folded into `nullable`.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    pub kind: Kind,
    pub description: String,
    /// Allowed values (`enum`, or a `oneOf`/`anyOf` of `const`s).
    pub choices: Vec<Value>,
    pub default: Option<Value>,
    pub nullable: bool,
    /// `writeOnly` here or anywhere inside (a password in `update_user`'s properties).
    pub secret: bool,
}

/// Depth past which a shape is [`Kind::Any`] (a recursive `$ref` would not end).
const MAX_DEPTH: usize = 8;

impl Field {
    /// `schema` read against `root` (whose `$defs` its `$ref`s point into).
    pub fn of(schema: &Value, root: &Value) -> Field {
        Self::at(schema, root, 0)
    }

    fn at(schema: &Value, root: &Value, depth: usize) -> Field {
        let mut field = Field {
            kind: Kind::Any,
            description: String::new(),
            choices: Vec::new(),
            default: None,
            nullable: false,
            secret: false,
        };
        let Value::Object(map) = schema else {
            return field;
        };
        field.description = text(map.get("description"));
        field.default = map.get("default").filter(|d| !d.is_null()).cloned();
        field.secret = map.get("writeOnly") == Some(&Value::Bool(true));
        if depth > MAX_DEPTH {
            return field;
        }
        if let Some(target) = map.get("$ref").and_then(Value::as_str) {
            let inner = Self::at(resolve(target, root), root, depth + 1);
            return field.merged(inner);
        }
        for key in ["anyOf", "oneOf"] {
            if let Some(Value::Array(alternatives)) = map.get(key) {
                let mut rest: Vec<&Value> = Vec::new();
                for alt in alternatives {
                    if alt.get("type") == Some(&Value::String("null".into())) {
                        field.nullable = true;
                    } else {
                        rest.push(alt);
                    }
                }
                if !rest.is_empty() && rest.iter().all(|alt| alt.get("const").is_some()) {
                    field.choices = rest.iter().map(|alt| alt["const"].clone()).collect();
                    field.kind = kind_of_value(&field.choices[0]);
                    return field;
                }
                if let [one] = rest.as_slice() {
                    let inner = Self::at(one, root, depth + 1);
                    return field.merged(inner);
                }
                return field;
            }
        }
        if let Some(Value::Array(values)) = map.get("enum") {
            field.choices = values.iter().filter(|v| !v.is_null()).cloned().collect();
            field.nullable |= values.iter().any(Value::is_null);
        }
        if let Some(c) = map.get("const") {
            field.choices = vec![c.clone()];
        }
        let mut types: Vec<&str> = match map.get("type") {
            Some(Value::String(t)) => vec![t.as_str()],
            Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        if types.contains(&"null") {
            field.nullable = true;
            types.retain(|t| *t != "null");
        }
        field.kind = match types.as_slice() {
            ["string"] => Kind::String,
            ["integer"] => Kind::Integer,
            ["number"] => Kind::Number,
            ["boolean"] => Kind::Boolean,
            ["array"] => {
                let items = map.get("items").unwrap_or(&Value::Bool(true));
                let items = Self::at(items, root, depth + 1);
                field.secret |= items.secret;
                Kind::Array(Box::new(items))
            }
            ["object"] => match map.get("properties") {
                Some(Value::Object(props)) if !props.is_empty() => {
                    let required: Vec<&str> = map
                        .get("required")
                        .and_then(Value::as_array)
                        .map(|r| r.iter().filter_map(Value::as_str).collect())
                        .unwrap_or_default();
                    let props: Vec<(String, Field, bool)> = props
                        .iter()
                        .map(|(name, s)| {
                            let f = Self::at(s, root, depth + 1);
                            (name.clone(), f, required.contains(&name.as_str()))
                        })
                        .collect();
                    field.secret |= props.iter().any(|(_, f, _)| f.secret);
                    Kind::Object(props)
                }
                _ => Kind::Any,
            },
            _ if !field.choices.is_empty() => kind_of_value(&field.choices[0]),
            _ => Kind::Any,
        };
        field
    }

    /// `inner` (what a `$ref` or single alternative says) under this field's own
    /// description, default and nullability, which win where given.
    fn merged(self, mut inner: Field) -> Field {
        if !self.description.is_empty() {
            inner.description = self.description;
        }
        if self.default.is_some() {
            inner.default = self.default;
        }
        inner.nullable |= self.nullable;
        inner.secret |= self.secret;
        inner
    }

    /// The schema type name of a scalar kind (`string`, `integer`, ...), or `array`/`object`/`any`.
    pub fn type_name(&self) -> &'static str {
        match &self.kind {
            Kind::String => "string",
            Kind::Integer => "integer",
            Kind::Number => "number",
            Kind::Boolean => "boolean",
            Kind::Array(_) => "array",
            Kind::Object(_) => "object",
            Kind::Any => "any",
        }
    }

    /// How a wrapper turns a platform's argument value into this type: `string`,
    /// `integer`, `number`, `boolean`, `array:<item coercion>`, or `json` (objects
    /// and anything else, given as JSON text).
    pub fn coercion(&self) -> String {
        match &self.kind {
            Kind::Array(items) => match items.kind {
                Kind::Array(_) | Kind::Object(_) | Kind::Any => "json".into(),
                _ => format!("array:{}", items.coercion()),
            },
            Kind::Object(_) | Kind::Any => "json".into(),
            _ => self.type_name().into(),
        }
    }

    /// The argument's help text for a platform form: its description (or a stand-in),
    /// with how to write a JSON or list value.
    pub fn argument_description(&self, name: &str) -> String {
        let mut description = self.description.trim().to_string();
        if description.is_empty() {
            description = format!("The {name} input.");
        }
        match self.coercion().as_str() {
            "json" => description.push_str(" (JSON)"),
            c if c.starts_with("array:") => {
                description.push_str(" (comma-separated, or a JSON array)")
            }
            _ => {}
        }
        description
    }

    /// An array of scalars: what a platform can take as a list.
    pub fn is_scalar_array(&self) -> bool {
        matches!(&self.kind, Kind::Array(items) if items.coercion() != "json" && !matches!(items.kind, Kind::Array(_)))
    }
}

fn kind_of_value(v: &Value) -> Kind {
    match v {
        Value::Bool(_) => Kind::Boolean,
        Value::Number(n) if n.is_i64() || n.is_u64() => Kind::Integer,
        Value::Number(_) => Kind::Number,
        Value::String(_) => Kind::String,
        _ => Kind::Any,
    }
}

/// The schema a local `$ref` (`#/$defs/Name`) points to; `true` (anything) otherwise.
fn resolve<'a>(target: &str, root: &'a Value) -> &'a Value {
    const ANYTHING: &Value = &Value::Bool(true);
    let Some(pointer) = target.strip_prefix('#') else {
        return ANYTHING;
    };
    root.pointer(pointer).unwrap_or(ANYTHING)
}

fn text(v: Option<&Value>) -> String {
    v.and_then(Value::as_str).unwrap_or_default().to_string()
}

/// `schema` with every local `$ref` replaced by what it points to (siblings of the
/// `$ref` kept, winning over the target's), and `$defs` dropped: for platforms
/// whose schema dialect has no `$ref` (StackStorm's draft 4 parameters).
pub fn inline_refs(schema: &Value) -> Value {
    fn walk(v: &Value, root: &Value, depth: usize) -> Value {
        match v {
            Value::Object(map) => {
                if let Some(target) = map.get("$ref").and_then(Value::as_str) {
                    if depth > MAX_DEPTH {
                        return Value::Object(Map::new());
                    }
                    let mut out = match walk(resolve(target, root), root, depth + 1) {
                        Value::Object(m) => m,
                        other => return other,
                    };
                    for (k, v) in map {
                        if k != "$ref" {
                            out.insert(k.clone(), walk(v, root, depth));
                        }
                    }
                    return Value::Object(out);
                }
                Value::Object(
                    map.iter()
                        .filter(|(k, _)| k.as_str() != "$defs")
                        .map(|(k, v)| (k.clone(), walk(v, root, depth)))
                        .collect(),
                )
            }
            Value::Array(items) => {
                Value::Array(items.iter().map(|i| walk(i, root, depth)).collect())
            }
            other => other.clone(),
        }
    }
    walk(schema, schema, 0)
}

/// One step of an output path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Key(String),
    /// Into the items of an array.
    Items,
}

/// A leaf of an output schema: where it is, its type and what it means.
#[derive(Debug, Clone)]
pub struct Leaf {
    pub path: Vec<Step>,
    pub field: Field,
}

/// Every leaf under `field`: scalars, arrays of scalars (as one leaf) and open
/// objects, depth first in property order.
pub fn leaves(field: &Field) -> Vec<Leaf> {
    fn walk(field: &Field, path: &mut Vec<Step>, out: &mut Vec<Leaf>) {
        match &field.kind {
            Kind::Object(props) => {
                for (name, f, _) in props {
                    path.push(Step::Key(name.clone()));
                    walk(f, path, out);
                    path.pop();
                }
            }
            Kind::Array(items) if matches!(items.kind, Kind::Object(_)) => {
                path.push(Step::Items);
                walk(items, path, out);
                path.pop();
            }
            _ => out.push(Leaf {
                path: path.clone(),
                field: field.clone(),
            }),
        }
    }
    let mut out = Vec::new();
    walk(field, &mut Vec::new(), &mut out);
    out
}

/// An action's `json_body` schema as a [`Field`].
pub fn json_body(action: &ActionEntry) -> Field {
    let schema = action.output_schema();
    let body = schema
        .pointer("/properties/json_body")
        .cloned()
        .unwrap_or(Value::Bool(true));
    Field::of(&body, &schema)
}

/// An action's inputs: (name, field, required), in schema order.
pub fn inputs(action: &ActionEntry) -> Vec<(String, Field, bool)> {
    // Our shape: XSOAR and Splunk SOAR arguments are our fields (Swimlane's grouping is Turbine's).
    let schema = action.own_input_schema();
    match Field::of(&schema, &schema).kind {
        Kind::Object(props) => props,
        _ => Vec::new(),
    }
}

/// The asset's fields: (name, field, required), in schema order.
pub fn asset_fields() -> Vec<(String, Field, bool)> {
    let schema = AssetSpec::schema();
    match Field::of(&schema, &schema).kind {
        Kind::Object(props) => props,
        _ => Vec::new(),
    }
}

/// The asset fields a platform's configuration offers: the connection and its
/// credentials. Request budgets and pacing (`rate_limits`, `max_attempts`, ...) keep
/// their defaults; a platform user who needs them runs the binary directly.
pub const CONFIG_FIELDS: &[&str] = &[
    "type",
    "tenant_id",
    "client_id",
    "client_secret",
    "certificate",
    "private_key",
    "username",
    "password",
    "refresh_token",
    "token_url",
    "url",
    "login_url",
    "api_version",
    "verify_ssl",
    "http_proxy",
    "timeout_seconds",
];

/// The asset fields of [`CONFIG_FIELDS`], in that order.
pub fn config_fields() -> Vec<(String, Field, bool)> {
    let all = asset_fields();
    CONFIG_FIELDS
        .iter()
        .filter_map(|name| all.iter().find(|(n, _, _)| n == name).cloned())
        .collect()
}

/// The wrappers' table from platform configuration key to asset field.
pub fn config_table() -> Value {
    Value::Object(
        config_fields()
            .iter()
            .map(|(name, _, _)| (config_name(name).to_string(), Value::from(name.as_str())))
            .collect(),
    )
}

/// A platform configuration key for an asset field: `type` is `auth_type` (a bare
/// `type` reads as the platform's own word), the others keep their names.
pub fn config_name(field: &str) -> &str {
    match field {
        "type" => "auth_type",
        other => other,
    }
}

/// What a value identifies, in the words SOAR platforms tag values with
/// (Splunk SOAR's `contains`): user ids and UPNs for our user arguments, IPs.
/// Names are ours (see `schemas/`), so the table is ours too.
pub fn contains(name: &str) -> &'static [&'static str] {
    match name {
        "id" | "ids" | "user" | "userId" => &["user id", "user principal name"],
        "userPrincipalName" => &["user principal name"],
        "ipAddress" | "ip" => &["ip"],
        "mail" => &["email"],
        _ => &[],
    }
}

/// `get_presence` -> `GetPresence`.
pub fn pascal(name: &str) -> String {
    name.split('_')
        .map(|part| {
            let mut c = part.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// The permissions an action needs, as one line for a README: `A and (B or C)`.
pub fn permissions_line(action: &ActionEntry) -> String {
    if action.meta.permissions.is_empty() {
        return "none (no Graph call)".into();
    }
    action
        .meta
        .permissions
        .iter()
        .map(|any| any.join(" or "))
        .collect::<Vec<_>>()
        .join("; and ")
}

/// The catalog, in registry order.
pub fn actions() -> &'static [ActionEntry] {
    ACTIONS
}

/// The one-paragraph description of an action (its first line of prose).
pub fn summary(action: &ActionEntry) -> String {
    action.meta.description.trim().to_string()
}

/// YAML text of a serialisable value (fields in declaration order).
pub fn yaml<T: serde::Serialize>(value: &T) -> Result<String> {
    serde_norway::to_string(value).map_err(|e| Error::internal(format!("YAML: {e}")))
}

/// Pretty JSON text with a final newline.
pub fn json_text<T: serde::Serialize>(value: &T) -> Result<String> {
    serde_json::to_string_pretty(value)
        .map(|s| s + "\n")
        .map_err(|e| Error::internal(format!("JSON: {e}")))
}

/// The shared Python part of every wrapper: find the binary, run it with the
/// envelope on stdin, read its one result object.
pub const PY_RUNNER: &str = include_str!("templates/runner.py");

/// A wrapper's text: its platform part with the runner and the generated tables in.
/// `tables` become `NAME = <json>` lines (JSON is valid Python for our values once
/// `true`/`false`/`null` are spelled as Python, which [`py_literal`] does).
pub fn python_module(header: &str, platform_part: &str, tables: &[(&str, Value)]) -> String {
    let mut out = String::new();
    out.push_str(header);
    out.push('\n');
    out.push_str(PY_RUNNER);
    out.push('\n');
    out.push_str("# Generated from the action list by `msgraph-connector export`; do not edit.\n");
    for (name, value) in tables {
        out.push_str(&format!("{name} = {}\n", py_literal(value)));
    }
    out.push('\n');
    out.push_str(platform_part);
    out
}

/// A JSON value as a Python literal (dicts keep their sorted key order).
pub fn py_literal(value: &Value) -> String {
    fn walk(v: &Value, indent: usize, out: &mut String) {
        let pad = "    ".repeat(indent + 1);
        let close = "    ".repeat(indent);
        match v {
            Value::Null => out.push_str("None"),
            Value::Bool(true) => out.push_str("True"),
            Value::Bool(false) => out.push_str("False"),
            Value::Number(n) => out.push_str(&n.to_string()),
            Value::String(s) => out.push_str(&Value::String(s.clone()).to_string()),
            Value::Array(items) if items.is_empty() => out.push_str("[]"),
            Value::Array(items) => {
                out.push_str("[\n");
                for item in items {
                    out.push_str(&pad);
                    walk(item, indent + 1, out);
                    out.push_str(",\n");
                }
                out.push_str(&close);
                out.push(']');
            }
            Value::Object(map) if map.is_empty() => out.push_str("{}"),
            Value::Object(map) => {
                out.push_str("{\n");
                for (k, item) in map {
                    out.push_str(&pad);
                    out.push_str(&Value::String(k.clone()).to_string());
                    out.push_str(": ");
                    walk(item, indent + 1, out);
                    out.push_str(",\n");
                }
                out.push_str(&close);
                out.push('}');
            }
        }
    }
    let mut out = String::new();
    walk(value, 0, &mut out);
    out
}

/// The per-action table every wrapper uses: name -> coercion of each input and
/// whether the action is incremental (its `state` kept by the platform).
pub fn action_table() -> Value {
    let mut table = Map::new();
    for a in actions() {
        let args: Map<String, Value> = inputs(a)
            .iter()
            .map(|(name, f, _)| (name.clone(), Value::String(f.coercion())))
            .collect();
        table.insert(
            a.meta.name.to_string(),
            serde_json::json!({
                "inputs": args,
                "incremental": a.meta.incremental,
                "needs_graph": a.meta.needs_graph,
            }),
        );
    }
    Value::Object(table)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn refs_are_inlined_and_defs_dropped() {
        let schema = json!({
            "$defs": {"Size": {"enum": ["48x48", "64x64"], "type": "string"}},
            "properties": {"size": {"$ref": "#/$defs/Size", "description": "which"}},
            "type": "object"
        });
        assert_eq!(
            inline_refs(&schema),
            json!({
                "properties": {"size": {"enum": ["48x48", "64x64"], "type": "string", "description": "which"}},
                "type": "object"
            })
        );
    }

    #[test]
    fn a_recursive_ref_stops() {
        let schema = json!({"$defs": {"N": {"properties": {"next": {"$ref": "#/$defs/N"}}, "type": "object"}}, "$ref": "#/$defs/N"});
        let _ = inline_refs(&schema);
        let _ = Field::of(&schema, &schema);
    }

    #[test]
    fn nullable_alternatives_and_consts_are_folded() {
        let schema = json!({
            "$defs": {"Mode": {"oneOf": [{"const": "off", "type": "string"}, {"const": "on", "type": "string"}]}},
            "anyOf": [{"$ref": "#/$defs/Mode"}, {"type": "null"}],
            "description": "mode"
        });
        let f = Field::of(&schema, &schema);
        assert_eq!(f.kind, Kind::String);
        assert_eq!(f.choices, vec![json!("off"), json!("on")]);
        assert!(f.nullable);
        assert_eq!(f.description, "mode");
    }

    #[test]
    fn coercions_follow_the_schema_types() {
        let schema = json!({"type": "object", "properties": {
            "ids": {"type": "array", "items": {"type": "string"}},
            "top": {"type": ["integer", "null"]},
            "count": {"type": "boolean"},
            "props": {"type": "object", "properties": {"a": {"type": "string"}}},
            "rows": {"type": "array", "items": {"type": "object"}}
        }});
        let Kind::Object(props) = Field::of(&schema, &schema).kind else {
            panic!()
        };
        let got: Vec<(String, String)> = props
            .iter()
            .map(|(n, f, _)| (n.clone(), f.coercion()))
            .collect();
        assert_eq!(
            got,
            [
                ("count", "boolean"),
                ("ids", "array:string"),
                ("props", "json"),
                ("rows", "json"),
                ("top", "integer")
            ]
            .map(|(a, b)| (a.to_string(), b.to_string()))
        );
    }

    #[test]
    fn secrets_inside_objects_mark_the_whole_argument() {
        let a = crate::actions::find("update_user").unwrap();
        let props = inputs(a);
        let (_, f, _) = props.iter().find(|(n, _, _)| n == "properties").unwrap();
        assert!(f.secret, "update_user.properties can carry a password");
        let (_, id, _) = props.iter().find(|(n, _, _)| n == "id").unwrap();
        assert!(!id.secret);
    }

    #[test]
    fn leaves_walk_objects_and_arrays_of_objects() {
        let schema = json!({"type": "object", "properties": {
            "value": {"type": "array", "items": {"type": "object", "properties": {"id": {"type": "string"}}}},
            "ids": {"type": "array", "items": {"type": "string"}},
            "extra": {"type": "object"}
        }});
        let got: Vec<Vec<Step>> = leaves(&Field::of(&schema, &schema))
            .into_iter()
            .map(|l| l.path)
            .collect();
        let key = |s: &str| Step::Key(s.into());
        assert_eq!(
            got,
            vec![
                vec![key("extra")],
                vec![key("ids")],
                vec![key("value"), Step::Items, key("id")]
            ]
        );
    }

    #[test]
    fn python_literals_spell_python() {
        assert_eq!(
            py_literal(&json!({"a": [true, null, "x\"y"], "b": {}})),
            "{\n    \"a\": [\n        True,\n        None,\n        \"x\\\"y\",\n    ],\n    \"b\": {},\n}"
        );
    }
}
