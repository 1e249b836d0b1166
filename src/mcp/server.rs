//! The MCP server handler: `tools/list` from the catalog, `tools/call` through
//! the same steps as `run` (inputs checked against the action's schema first,
//! errors with JSON pointers; then the handler on the action thread).
//!
//! A call that the protocol cannot route (an unknown or hidden tool) is a
//! protocol error (-32602, as the MCP specification's tools page shows for an
//! unknown tool: https://modelcontextprotocol.io/specification/2025-06-18/server/tools#error-handling);
//! everything an action refuses or fails with is a result with `isError: true`
//! whose text is our error object (`{"error": {"kind", "message", "details"...}}`),
//! so the agent reads it.

use std::borrow::Cow;
use std::sync::Arc;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    InitializeResult, JsonObject, ListToolsResult, PaginatedRequestParams,
    ProgressNotificationParam, ServerCapabilities, ServerConfig, Tool,
};
// Deprecated with logging by the 2026-07-28 revision (SEP-2577); still sent by clients.
#[allow(deprecated)]
use rmcp::model::SetLevelRequestParams;
use rmcp::service::RequestContext;
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use super::annotations::Hints;
use super::worker::{Job, Outcome, Worker};
use crate::actions::ActionEntry;
use crate::error::Error;
use crate::progress::Progress;

const INSTRUCTIONS: &str = "Microsoft Graph users, presence and sign-ins, and IP-based office \
presence. Each tool is one connector action with typed inputs and a structured result \
{status_code, reason, response_headers, json_body}. Failures come back with isError and an \
error object whose details[].path is a JSON pointer (/inputs/... for an argument).";

/// The catalog as MCP tools, shared by every session.
pub struct Catalog {
    entries: Vec<&'static ActionEntry>,
    tools: Vec<Tool>,
}

impl Catalog {
    pub fn new(entries: Vec<&'static ActionEntry>) -> Catalog {
        let tools = entries.iter().map(|a| tool_of(a)).collect();
        Catalog { entries, tools }
    }

    pub fn tools(&self) -> &[Tool] {
        &self.tools
    }

    fn find(&self, name: &str) -> Option<&'static ActionEntry> {
        self.entries.iter().copied().find(|a| a.meta.name == name)
    }
}

/// One action as an MCP tool: schemas as `schema ACTION [--output]` prints them
/// (with `true` property schemas spelt `{}`).
pub fn tool_of(action: &ActionEntry) -> Tool {
    let object = |mut v: Value| {
        spell_out_true_properties(&mut v);
        match v {
            Value::Object(map) => Arc::new(map),
            _ => Arc::new(JsonObject::new()),
        }
    };
    let meta = &action.meta;
    Tool::new_with_raw(
        meta.name,
        Some(Cow::Owned(description(action))),
        // Our own shape: MCP wants an object schema (`type: object` at the top), and the
        // HTTP-style `oneOf` alternative is for Swimlane playbooks, not agents.
        object(action.own_input_schema()),
    )
    .with_title(meta.title)
    .with_raw_output_schema(object(action.output_schema()))
    .with_annotations(Hints::of(meta).annotations(meta.title))
}

/// A property whose schema is `true` (anything, e.g. `state`) becomes `{}`, its
/// equal in JSON Schema: the MCP TypeScript SDK, which the MCP Inspector uses,
/// refuses a tool list with a boolean property schema (seen with inspector 0.21.2,
/// SDK 1.32.2: "Invalid input" at `outputSchema.properties.state`).
fn spell_out_true_properties(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            if let Some(Value::Object(props)) = map.get_mut("properties") {
                for prop in props.values_mut() {
                    if *prop == Value::Bool(true) {
                        *prop = Value::Object(JsonObject::new());
                    }
                }
            }
            map.values_mut().for_each(spell_out_true_properties);
        }
        Value::Array(items) => items.iter_mut().for_each(spell_out_true_properties),
        _ => {}
    }
}

/// The catalog's description, ending with the Graph permissions the action needs.
fn description(action: &ActionEntry) -> String {
    let meta = &action.meta;
    let needs: Vec<String> = meta
        .permissions
        .iter()
        .map(|any| any.join(" or "))
        .collect();
    let permissions = if needs.is_empty() {
        "Graph permissions: none (no Graph call).".to_string()
    } else {
        format!("Graph permissions (application): {}.", needs.join("; "))
    };
    format!("{} {permissions}", meta.description)
}

/// The handler; one per session (cheap: two shared pointers).
#[derive(Clone)]
pub struct ConnectorServer {
    catalog: Arc<Catalog>,
    worker: Worker,
}

impl ConnectorServer {
    pub fn new(catalog: Arc<Catalog>, worker: Worker) -> Self {
        ConnectorServer { catalog, worker }
    }

    /// `tools/call` itself, with the SDK's request context reduced to what it uses.
    pub async fn call(
        &self,
        params: CallToolRequestParams,
        progress: Option<ProgressSink>,
        cancel: tokio_util::sync::CancellationToken,
    ) -> Result<CallToolResult, McpError> {
        let Some(action) = self.catalog.find(&params.name) else {
            let known: Vec<&str> = self.catalog.entries.iter().map(|a| a.meta.name).collect();
            return Err(McpError::invalid_params(
                format!(
                    "unknown tool {:?}; tools: {}",
                    params.name,
                    known.join(", ")
                ),
                None,
            ));
        };
        let arguments = Value::Object(params.arguments.unwrap_or_default());
        // Step 3 of `run`: the schema first, so no request leaves on bad input.
        let inputs = match action.check_inputs(arguments) {
            Ok(inputs) => inputs,
            Err(e) => return Ok(failure(&e)),
        };
        let (reply, answer) = oneshot::channel();
        let (steps, mut step_rx) = mpsc::unbounded_channel::<(u64, Option<u64>, String)>();
        let reporter = match &progress {
            Some(_) => Progress::new(move |done, total, message| {
                let _ = steps.send((done, total, message.to_string()));
            }),
            None => Progress::none(),
        };
        let job = Job {
            action,
            inputs,
            progress: reporter,
            cancel: cancel.clone(),
            reply,
        };
        if self.worker.submit(job).is_none() {
            return Ok(failure(&Error::internal("the action thread has stopped")));
        }
        let mut answer = std::pin::pin!(answer);
        let outcome = loop {
            tokio::select! {
                outcome = &mut answer => break outcome,
                Some((done, total, message)) = step_rx.recv() => {
                    if let Some(sink) = &progress {
                        sink.send(done, total, message).await;
                    }
                }
            }
        };
        // Steps sent just before the answer: the client gets every one, before the result.
        while let Ok((done, total, message)) = step_rx.try_recv() {
            if let Some(sink) = &progress {
                sink.send(done, total, message).await;
            }
        }
        match outcome {
            Ok(Outcome::Done(Ok(text))) => Ok(success(text)),
            Ok(Outcome::Done(Err(e))) => Ok(failure(&e)),
            Ok(Outcome::Cancelled) => {
                tracing::info!(tool = %params.name, "cancelled by the client");
                Err(McpError::internal_error("the request was cancelled", None))
            }
            Err(_) => Ok(failure(&Error::internal(
                "the action stopped without an answer (a defect; see stderr)",
            ))),
        }
    }
}

/// Progress notifications for one request that carried a progress token.
pub struct ProgressSink {
    token: rmcp::model::ProgressToken,
    peer: rmcp::Peer<RoleServer>,
}

impl ProgressSink {
    async fn send(&self, done: u64, total: Option<u64>, message: String) {
        let mut param =
            ProgressNotificationParam::new(self.token.clone(), done as f64).with_message(message);
        if let Some(total) = total {
            param = param.with_total(total as f64);
        }
        // A client that has gone away is seen by the request's cancellation.
        let _ = self.peer.notify_progress(param).await;
    }
}

/// The result object as `structuredContent` and as JSON text.
fn success(text: String) -> CallToolResult {
    let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    let mut result = CallToolResult::success(vec![ContentBlock::text(text)]);
    result.structured_content = Some(value);
    result
}

/// Our error object as the text of an `isError` result. Not as
/// `structuredContent`: that must match the tool's output schema, which
/// describes success.
fn failure(error: &Error) -> CallToolResult {
    tracing::info!(
        kind = error.kind.as_str(),
        "tool call failed: {}",
        error.message
    );
    CallToolResult::error(vec![ContentBlock::text(error.to_json().to_string())])
}

impl ServerHandler for ConnectorServer {
    // Logging is advertised as issue 14 asks (clients may `logging/setLevel`); the
    // 2026-07-28 revision deprecates it (SEP-2577,
    // https://github.com/modelcontextprotocol/modelcontextprotocol/pull/2577).
    #[allow(deprecated)]
    fn get_info(&self) -> ServerConfig {
        InitializeResult::new(
            ServerCapabilities::builder()
                .enable_logging()
                .enable_tools()
                .build(),
        )
        .with_server_info(Implementation::new(
            "msgraph-connector",
            env!("CARGO_PKG_VERSION"),
        ))
        .with_instructions(INSTRUCTIONS)
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        Ok(ListToolsResult::with_all_items(self.catalog.tools.clone()))
    }

    /// Accepted so that clients which set a level on connecting (the MCP Inspector
    /// does) can connect; our logs stay on stderr, and failures reach the client as
    /// `isError` results.
    #[allow(deprecated)]
    async fn set_level(
        &self,
        request: SetLevelRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        tracing::debug!(level = ?request.level, "the client set a log level");
        Ok(())
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        self.catalog.tools.iter().find(|t| t.name == name).cloned()
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let progress = context.meta.get_progress_token().map(|token| ProgressSink {
            token,
            peer: context.peer.clone(),
        });
        self.call(request, progress, context.ct.clone())
            .await
            .map(CallToolResponse::from)
    }
}
