//! What users call: one file per action, one list of them.
//!
//! An action is a type implementing [`Action`]: a typed input (with its JSON
//! Schema), a typed output, metadata, and an async handler. [`ACTIONS`] is the
//! single registry; the catalog (`actions`), the schemas (`schema`, `schemas/`),
//! the CLI help and the `manifest.yaml` / `actions/*.yaml` drift tests are all
//! derived from it, so an action is registered in exactly one place.
//!
//! Adding an action: write `src/actions/<name>.rs` with its input and output
//! types beside the handler, add one line to [`ACTIONS`], then run
//! `msgraph-connector schema --write-all schemas/` and add `actions/<name>.yaml`
//! and a line in `manifest.yaml` (the tests tell you if you forget).

pub mod clear_office_presence;
pub mod clear_presence;
pub mod clear_user_preferred_presence;
pub mod confirm_compromised;
pub mod disable_user;
pub mod dismiss_risky_user;
pub mod evaluate_ip_presence;
pub mod get_office_presence;
pub mod get_presence;
pub mod get_presence_changes;
pub mod get_presences;
pub mod get_user;
pub mod get_user_photo;
pub mod get_user_status;
pub mod http_style;
pub mod list_memberships;
pub mod pull_sign_ins;
pub mod revoke_sign_in_sessions;
pub mod set_office_presence;
pub mod set_presence;
pub mod set_status_message;
pub mod set_user_preferred_presence;
pub mod sync_ip_presence;
pub mod sync_profile_photos;
pub mod update_user;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use schemars::JsonSchema;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::backend::{Backend, Postgres};
use crate::error::{Error, Result};
use crate::graph::{GraphClient, GraphResponse, ResponseHeaders};
use crate::progress::Progress;
use crate::schema;
use crate::state::{SharedState, StateDb, StateStore, scope_of};
pub use crate::users::{DirectoryRole, RoleScope};
use http_style::HttpStyle;

/// What the catalog says about an action.
#[derive(Debug, Clone, Copy)]
pub struct ActionMeta {
    pub name: &'static str,
    pub title: &'static str,
    pub description: &'static str,
    /// Graph application permissions: every entry is needed, and each entry
    /// lists its acceptable permissions least privilege first (`&[&["AuditLog.Read.All"],
    /// &["Directory.Read.All"]]` needs both; `&[&["User.ReadBasic.All", "User.Read.All"]]`
    /// needs either).
    pub permissions: &'static [&'static [&'static str]],
    /// Whether the action changes anything in the tenant.
    pub changes_data: bool,
    /// Whether it talks to Graph (and so needs an asset).
    pub needs_graph: bool,
    /// Whether it reads and returns `state` (incremental actions).
    pub incremental: bool,
    /// What it writes on this machine (the store, a cursor, an output file); the
    /// token cache does not count. With `changes_data` and `needs_graph` it gives
    /// the MCP tool annotations (`src/mcp/annotations.rs`).
    pub writes_local_state: LocalWrites,
}

/// What an action writes on this machine besides the token cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalWrites {
    /// Nothing.
    Nothing,
    /// Only what its inputs name (an output file, an override for a day): the
    /// same call again leaves the same result.
    Repeatable,
    /// It moves a cursor or adds to the store: the next call carries on from
    /// where this one stopped.
    Advances,
}

impl LocalWrites {
    pub fn as_str(self) -> &'static str {
        match self {
            LocalWrites::Nothing => "nothing",
            LocalWrites::Repeatable => "repeatable",
            LocalWrites::Advances => "advances",
        }
    }
}

impl ActionMeta {
    /// Every permission named, least privilege first, once: the catalog's flat list.
    pub fn permission_names(&self) -> Vec<&'static str> {
        let mut names: Vec<&'static str> = Vec::new();
        for name in self
            .permissions
            .iter()
            .flat_map(|alternatives| alternatives.iter())
        {
            if !names.contains(name) {
                names.push(name);
            }
        }
        names
    }
}

/// A typed action. See `get_presence.rs` for the smallest complete example.
pub trait Action {
    /// The inputs; `#[serde(deny_unknown_fields)]` so the schema sets `additionalProperties: false`.
    type Input: DeserializeOwned + JsonSchema;
    /// What goes into the result's `json_body`.
    type Output: Serialize + JsonSchema;
    const META: ActionMeta;
    /// Swimlane's HTTP-style grouping of the same inputs (`path_parameters`,
    /// `parameters`, `json_body`), accepted as an alternative shape when set.
    const HTTP_STYLE: Option<HttpStyle> = None;
    /// Entra directory roles needed beyond [`ActionMeta::permissions`] (on the app's
    /// service principal), each with when; most actions need none.
    const DIRECTORY_ROLES: &'static [DirectoryRole] = &[];
    fn run(ctx: &Context, input: Self::Input) -> impl Future<Output = Result<Reply<Self::Output>>>;
}

/// Everything a handler may use: the Graph client, incoming state, the state dir,
/// and where to report progress (nowhere for `run`; the MCP client for `mcp`).
pub struct Context {
    graph: Option<GraphClient>,
    /// `state` from the envelope: what an earlier run of this action returned.
    pub state: Option<Value>,
    /// `--state-dir`, when the platform gives a disk.
    pub state_dir: Option<PathBuf>,
    /// Where long actions say how far they are.
    pub progress: Progress,
    /// The shared state (`--state-url`) of an action without a Graph client, and the
    /// scope the envelope's asset names, if it has one (an action with a client takes
    /// both from it).
    shared: Option<(Arc<Postgres>, Option<String>)>,
}

impl Context {
    pub fn new(
        graph: Option<GraphClient>,
        state: Option<Value>,
        state_dir: Option<PathBuf>,
    ) -> Self {
        Context {
            graph,
            state,
            state_dir,
            progress: Progress::none(),
            shared: None,
        }
    }

    /// The same context, for an action without a Graph client run with a shared state:
    /// its database, and the scope of the envelope's asset when there is one.
    pub fn with_shared(mut self, pg: Arc<Postgres>, scope: Option<String>) -> Self {
        self.shared = Some((pg, scope));
        self
    }

    /// The IP presence state of this run: the shared state's (under the asset's scope)
    /// when `--state-url` names one, else the state dir's, which `action` then requires.
    pub fn office(&self, action: &str) -> Result<crate::office::Office> {
        match self.shared_state()? {
            Some(shared) => Ok(crate::office::Office::shared(shared)),
            None => crate::office::Office::open(self.state_dir.as_deref(), action),
        }
    }

    /// The shared state of this run (`--state-url`), under the asset's scope; `None`
    /// when the run keeps its state in the state dir. Opens nothing local.
    pub fn shared_state(&self) -> Result<Option<SharedState>> {
        let shared = match &self.graph {
            Some(g) => match g.backend() {
                Some(Backend::Postgres(pg)) => Some((pg.clone(), Some(scope_of(g.asset())))),
                _ => None,
            },
            None => self.shared.clone(),
        };
        match shared {
            Some((pg, Some(scope))) => Ok(Some(SharedState::new(pg, scope))),
            Some((_, None)) => Err(Error::invalid(
                "/asset",
                "is required with a shared state (--state-url): its token URL and client id \
                 name the tenant's state in the database (give the asset the sync runs with)",
            )),
            None => Ok(None),
        }
    }

    /// Where this run keeps sign-in cursors and named values, and takes their leases:
    /// the shared state under the asset's scope when `--state-url` names one, else the
    /// state dir's `state.sqlite3`, else nowhere (`None`).
    pub fn state_store(&self) -> Result<Option<StateStore>> {
        match self.shared_state()? {
            Some(shared) => Ok(Some(StateStore::Shared(shared))),
            None => self
                .state_dir
                .as_deref()
                .map(|dir| StateDb::open(dir).map(StateStore::Local))
                .transpose(),
        }
    }

    /// The same context, reporting progress to `progress`.
    pub fn with_progress(mut self, progress: Progress) -> Self {
        self.progress = progress;
        self
    }

    /// Connect the shared state (`--state-url`) before the action makes any request.
    pub async fn ready(&self) -> Result<()> {
        match (&self.graph, &self.shared) {
            (Some(g), _) => g.ready().await,
            (None, Some((pg, _))) => pg.client().await.map(drop),
            (None, None) => Ok(()),
        }
    }

    /// The Graph client; present whenever the action's metadata says `needs_graph`.
    pub fn graph(&self) -> Result<&GraphClient> {
        self.graph.as_ref().ok_or_else(|| {
            Error::invalid("/asset", "this action talks to Graph and needs an asset")
        })
    }
}

/// A handler's answer: the body plus the HTTP facts of the last Graph response.
#[derive(Debug, Clone)]
pub struct Reply<T> {
    pub status_code: u16,
    pub headers: ResponseHeaders,
    pub body: T,
    pub state: Option<Value>,
}

impl<T> Reply<T> {
    /// A 200 answer computed locally (no Graph call, or an aggregate of several).
    pub fn ok(body: T) -> Self {
        Reply {
            status_code: 200,
            headers: Map::new(),
            body,
            state: None,
        }
    }

    /// An answer carrying the status and headers of the Graph response it came from.
    pub fn from_response(response: &GraphResponse, body: T) -> Self {
        Reply {
            status_code: response.status,
            headers: response.headers.clone(),
            body,
            state: None,
        }
    }

    pub fn with_headers(mut self, headers: ResponseHeaders) -> Self {
        self.headers = headers;
        self
    }

    pub fn with_state(mut self, state: Value) -> Self {
        self.state = Some(state);
        self
    }
}

/// The contract's success object. Its schema (with `json_body` typed) is an action's output schema.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ActionResult<T> {
    pub status_code: u16,
    pub reason: String,
    pub response_headers: ResponseHeaders,
    pub json_body: T,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<Value>,
}

impl<T> From<Reply<T>> for ActionResult<T> {
    fn from(r: Reply<T>) -> Self {
        ActionResult {
            status_code: r.status_code,
            reason: reason_phrase(r.status_code).to_string(),
            response_headers: r.headers,
            json_body: r.body,
            state: r.state,
        }
    }
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        _ => "",
    }
}

/// An action's result object with the action's own output type inside,
/// serialised once, straight to stdout: a large answer (10,000 presences, 3 MB)
/// is neither rebuilt as a `Value` tree nor copied into an intermediate string.
pub struct Finished(Box<dyn WriteJson>);

impl Finished {
    /// Write the result object as JSON (pretty with `pretty`, else on one line).
    pub fn write(&self, out: &mut dyn std::io::Write, pretty: bool) -> serde_json::Result<()> {
        self.0.write_json(out, pretty)
    }
}

/// Serialisation with the type erased (the registry holds actions of many output types).
trait WriteJson {
    fn write_json(&self, out: &mut dyn std::io::Write, pretty: bool) -> serde_json::Result<()>;
}

impl<T: Serialize> WriteJson for ActionResult<T> {
    fn write_json(&self, out: &mut dyn std::io::Write, pretty: bool) -> serde_json::Result<()> {
        write_json(out, self, pretty)
    }
}

/// `value` as JSON: one line, or pretty-printed through a tree (raw JSON inside
/// `value` would otherwise print as it is).
pub fn write_json<T: Serialize + ?Sized>(
    out: &mut dyn std::io::Write,
    value: &T,
    pretty: bool,
) -> serde_json::Result<()> {
    if pretty {
        let tree = serde_json::to_value(value)?;
        serde_json::to_writer_pretty(out, &tree)
    } else {
        serde_json::to_writer(out, value)
    }
}

type RunFuture<'a> = Pin<Box<dyn Future<Output = Result<Finished>> + 'a>>;

/// Inputs that passed their action's input schema. Only [`ActionEntry::check_inputs`]
/// makes them and [`ActionEntry::run`] takes nothing else, so no caller can run an
/// action on inputs the schema has not seen. (A caller may check them before it builds
/// the [`Context`], as the runner does, so that input errors come first.)
pub struct CheckedInputs {
    action: &'static str,
    value: Value,
}

/// An action with its types erased, as the registry holds it.
pub struct ActionEntry {
    pub meta: ActionMeta,
    pub directory_roles: &'static [DirectoryRole],
    input_schema: fn() -> Value,
    output_schema: fn() -> Value,
    http_style: Option<HttpStyle>,
    run: for<'a> fn(&'a Context, Value) -> RunFuture<'a>,
}

impl ActionEntry {
    pub const fn of<A: Action + 'static>() -> Self {
        ActionEntry {
            meta: A::META,
            directory_roles: A::DIRECTORY_ROLES,
            input_schema: schema::of::<A::Input>,
            output_schema: schema::of::<ActionResult<A::Output>>,
            http_style: A::HTTP_STYLE,
            run: run_erased::<A>,
        }
    }

    /// The input schema, titled with the action's name so a platform can show it.
    /// With an HTTP-style shape it is `oneOf` [ours, Swimlane's grouping].
    pub fn input_schema(&self) -> Value {
        let plain = (self.input_schema)();
        let schema = match &self.http_style {
            Some(style) => http_style::one_of(plain, style.schema()),
            None => plain,
        };
        self.titled(schema, "inputs")
    }

    /// The input schema in our own shape only (no HTTP-style alternative), for
    /// platforms that build a form or argument list from its properties.
    pub fn own_input_schema(&self) -> Value {
        self.titled((self.input_schema)(), "inputs")
    }

    /// Whether the action also takes Swimlane's HTTP-style grouping of its inputs.
    pub fn takes_http_style(&self) -> bool {
        self.http_style.is_some()
    }

    /// The schema of the whole success object, `json_body` typed.
    pub fn output_schema(&self) -> Value {
        self.titled((self.output_schema)(), "result")
    }

    fn titled(&self, mut schema: Value, what: &str) -> Value {
        if let Value::Object(map) = &mut schema {
            map.insert(
                "title".into(),
                Value::String(format!("{} {what}", self.meta.name)),
            );
            map.insert(
                "description".into(),
                Value::String(self.meta.description.to_string()),
            );
        }
        schema
    }

    /// Validate raw inputs against [`Self::input_schema`] (errors point under
    /// `/inputs`): the only way to get the [`CheckedInputs`] that [`Self::run`] takes.
    /// The schema is compiled here, once per call.
    /// Inputs in Swimlane's HTTP-style grouping are checked against that shape and
    /// normalised to ours first (see [`http_style`]). A whole number written `1.0`
    /// where the schema says integer is made `1` (JSON Schema counts it an integer).
    pub fn check_inputs(&self, inputs: Value) -> Result<CheckedInputs> {
        let plain = (self.input_schema)();
        let check_plain = |v: &Value| schema::validate(&plain, v);
        let mut value = match &self.http_style {
            Some(style) if HttpStyle::applies(&inputs) => style.normalise(&inputs, check_plain),
            _ => check_plain(&inputs).map(|()| inputs),
        }
        .map_err(|e| e.under("/inputs"))?;
        schema::integers_as_integers(&plain, &mut value);
        Ok(CheckedInputs {
            action: self.meta.name,
            value,
        })
    }

    /// Deserialise inputs checked by [`Self::check_inputs`], then run the handler.
    pub async fn run(&self, ctx: &Context, inputs: CheckedInputs) -> Result<Finished> {
        if inputs.action != self.meta.name {
            return Err(Error::internal(format!(
                "inputs checked for {} were given to {}",
                inputs.action, self.meta.name
            )));
        }
        (self.run)(ctx, inputs.value).await
    }

    /// The catalog line of `msgraph-connector actions`.
    pub fn catalog_entry(&self) -> Value {
        serde_json::json!({
            "name": self.meta.name,
            "title": self.meta.title,
            "description": self.meta.description,
            "permissions": self.meta.permission_names(),
            "requires": self.meta.permissions,
            "directory_roles": self.directory_roles,
            "changes_data": self.meta.changes_data,
            "incremental": self.meta.incremental,
            "writes_local_state": self.meta.writes_local_state.as_str(),
        })
    }
}

fn run_erased<A: Action + 'static>(ctx: &Context, inputs: Value) -> RunFuture<'_> {
    Box::pin(async move {
        let input: A::Input = serde_json::from_value(inputs)
            .map_err(|e| schema::deserialize_error(&e).under("/inputs"))?;
        let reply = A::run(ctx, input).await?;
        let result = ActionResult::from(reply);
        // Serialising is deterministic: a dry run that writes nothing finds any
        // error now, so stdout never gets half an object. Only the typed body needs
        // it: the headers and the state are `Value`s, which always serialise (and a
        // replay's state can be megabytes).
        serde_json::to_writer(std::io::sink(), &result.json_body).map_err(|e| {
            Error::internal(format!("{}: output does not serialise: {e}", A::META.name))
        })?;
        Ok(Finished(Box::new(result)))
    })
}

/// The registry: every action, once.
pub static ACTIONS: &[ActionEntry] = &[
    ActionEntry::of::<get_presence::GetPresence>(),
    ActionEntry::of::<get_presences::GetPresences>(),
    ActionEntry::of::<get_presence_changes::GetPresenceChanges>(),
    ActionEntry::of::<set_presence::SetPresence>(),
    ActionEntry::of::<clear_presence::ClearPresence>(),
    ActionEntry::of::<set_user_preferred_presence::SetUserPreferredPresence>(),
    ActionEntry::of::<clear_user_preferred_presence::ClearUserPreferredPresence>(),
    ActionEntry::of::<set_status_message::SetStatusMessage>(),
    ActionEntry::of::<get_user::GetUser>(),
    ActionEntry::of::<list_memberships::ListMemberships>(),
    ActionEntry::of::<update_user::UpdateUser>(),
    ActionEntry::of::<get_user_photo::GetUserPhoto>(),
    ActionEntry::of::<sync_profile_photos::SyncProfilePhotos>(),
    ActionEntry::of::<get_user_status::GetUserStatus>(),
    ActionEntry::of::<revoke_sign_in_sessions::RevokeSignInSessions>(),
    ActionEntry::of::<disable_user::DisableUser>(),
    ActionEntry::of::<confirm_compromised::ConfirmCompromised>(),
    ActionEntry::of::<dismiss_risky_user::DismissRiskyUser>(),
    ActionEntry::of::<pull_sign_ins::PullSignIns>(),
    ActionEntry::of::<evaluate_ip_presence::EvaluateIpPresence>(),
    ActionEntry::of::<sync_ip_presence::SyncIpPresence>(),
    ActionEntry::of::<get_office_presence::GetOfficePresence>(),
    ActionEntry::of::<set_office_presence::SetOfficePresence>(),
    ActionEntry::of::<clear_office_presence::ClearOfficePresence>(),
];

/// Look an action up by name.
pub fn find(name: &str) -> Option<&'static ActionEntry> {
    ACTIONS.iter().find(|a| a.meta.name == name)
}

#[cfg(test)]
mod tests {
    use futures_util::FutureExt;
    use serde_json::json;

    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn inputs_are_checked_and_refusals_point_under_inputs() {
        for a in ACTIONS {
            let e = a.check_inputs(json!(42)).err().unwrap();
            assert_eq!(e.details[0].path, "/inputs", "{}", a.meta.name);
            assert!(e.message.starts_with("invalid input at /inputs: "));
        }
    }

    #[test]
    fn http_style_schemas_take_either_shape_and_refuse_a_mix() {
        let shapes = [
            (
                "get_presence",
                json!({"id": "a@b.c"}),
                json!({"path_parameters": {"id": "a@b.c"}}),
            ),
            (
                "get_user",
                json!({"id": "a@b.c", "select": ["jobTitle"]}),
                json!({"path_parameters": {"id": "a@b.c"}, "parameters": {"$select": "jobTitle"}}),
            ),
            (
                "list_memberships",
                json!({"id": "a@b.c", "top": 5}),
                json!({"path_parameters": {"id": "a@b.c"}, "parameters": {"$top": 5}, "headers": {"ConsistencyLevel": "eventual"}}),
            ),
            (
                "update_user",
                json!({"id": "a@b.c", "properties": {"jobTitle": "x"}}),
                json!({"path_parameters": {"id": "a@b.c"}, "json_body": {"jobTitle": "x"}}),
            ),
        ];
        for (name, ours, grouped) in shapes {
            let action = find(name).unwrap();
            assert!(action.takes_http_style());
            let schema = jsonschema::draft202012::new(&action.input_schema()).unwrap();
            assert!(
                schema.is_valid(&ours) && schema.is_valid(&grouped),
                "{name}"
            );
            let mut mix = grouped.clone();
            mix["id"] = json!("a@b.c");
            assert!(!schema.is_valid(&mix), "{name}");
            // Both shapes reach the handler as the same typed input.
            let a = action.check_inputs(ours).ok().unwrap().value;
            let b = action.check_inputs(grouped).ok().unwrap().value;
            let a: Value = serde_json::from_value(a).unwrap();
            for (k, v) in b.as_object().unwrap() {
                assert_eq!(a.get(k), Some(v), "{name}: {k}");
            }
            assert!(action.check_inputs(mix).is_err(), "{name}");
        }
        assert!(!find("get_presences").unwrap().takes_http_style());
    }

    #[test]
    fn inputs_checked_for_one_action_do_not_run_another() {
        let (checked_for, inputs) = ACTIONS
            .iter()
            .find_map(|a| a.check_inputs(json!({})).ok().map(|i| (a, i)))
            .expect("an action whose inputs are all optional");
        let other = ACTIONS
            .iter()
            .find(|a| a.meta.name != checked_for.meta.name)
            .unwrap();
        let ctx = Context::new(None, None, None);
        let outcome = other.run(&ctx, inputs).now_or_never().unwrap();
        assert_eq!(outcome.err().unwrap().kind, ErrorKind::Internal);
    }
}
