//! `msgraph-connector mcp`: the action catalog as a Model Context Protocol server.
//!
//! Design, top to bottom:
//! - [`annotations`]: MCP tool hints derived from each action's metadata
//!   (`changes_data`, `writes_local_state`, `needs_graph`), and README's table;
//! - [`server`]: the SDK's (`rmcp`) server handler: `tools/list` from the chosen
//!   part of [`crate::actions::ACTIONS`], `tools/call` validating arguments with
//!   the action's own input schema before anything else, as `run` does, results
//!   as `structuredContent` plus JSON text, failures as `isError` results holding
//!   our error object; progress notifications and cancellation for long actions;
//! - [`worker`]: the thread the actions run on (their futures are local);
//! - transports: stdio here (newline-delimited JSON-RPC on stdin/stdout, logs on
//!   stderr) and [`http`] (streamable HTTP on loopback behind a bearer token).
//!
//! The asset is read once at start (`--asset FILE` or `MSGRAPH_CONNECTOR_ASSET`),
//! checked like `run` checks it, and turned into the one Graph client every call
//! shares. It is never a tool argument and never in a message: tools see only
//! their inputs, and errors are built from typed data (see [`crate::error`]).
//! Incremental actions keep their cursor in `--state-dir` between calls.

pub mod annotations;
pub mod http;
pub mod server;
pub mod worker;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use rmcp::ServiceExt;
use rmcp::transport::async_rw::AsyncRwTransport;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use self::annotations::Hints;
use self::server::{Catalog, ConnectorServer};
use self::worker::Worker;
use crate::actions::{ACTIONS, ActionEntry};
use crate::error::{Error, Result};
use crate::graph::GraphClient;
use crate::runner::{self, Envelope, EnvelopeSource, MAX_ENVELOPE_BYTES, RunSettings};

/// The environment variable that may hold the asset as JSON (instead of `--asset`).
pub const ASSET_ENV: &str = "MSGRAPH_CONNECTOR_ASSET";

/// What `mcp` was asked for on the command line.
#[derive(Debug, Default)]
pub struct McpOptions {
    pub asset: Option<PathBuf>,
    pub read_only: bool,
    pub tools: Option<Vec<String>>,
    pub listen: Option<SocketAddr>,
    pub token_file: Option<PathBuf>,
}

/// The actions to serve: all, or those named, and only read-only ones with `read_only`.
/// A name that is not an action, or a writing action with `read_only`, is refused.
pub fn select(read_only: bool, names: Option<&[String]>) -> Result<Vec<&'static ActionEntry>> {
    let chosen: Vec<&'static ActionEntry> = match names {
        None => ACTIONS.iter().collect(),
        Some(names) => {
            let mut chosen = Vec::new();
            for name in names.iter().map(|n| n.trim()).filter(|n| !n.is_empty()) {
                let action = crate::actions::find(name).ok_or_else(|| {
                    let known: Vec<&str> = ACTIONS.iter().map(|a| a.meta.name).collect();
                    Error::invalid(
                        "/tools",
                        format!("{name:?} is not an action; actions: {}", known.join(", ")),
                    )
                })?;
                if read_only && !Hints::of(&action.meta).read_only {
                    return Err(Error::invalid(
                        "/tools",
                        format!(
                            "{name} writes (the tenant or local state), and --read-only serves only read-only tools"
                        ),
                    ));
                }
                if !chosen.iter().any(|a: &&ActionEntry| a.meta.name == name) {
                    chosen.push(action);
                }
            }
            chosen
        }
    };
    let chosen: Vec<_> = chosen
        .into_iter()
        .filter(|a| !read_only || Hints::of(&a.meta).read_only)
        .collect();
    if chosen.is_empty() {
        return Err(Error::invalid("/tools", "no tool left to serve"));
    }
    Ok(chosen)
}

/// The asset from `--asset FILE`, else from [`ASSET_ENV`], parsed and checked;
/// `None` when neither is given.
pub fn read_asset(path: Option<&PathBuf>) -> Result<Option<crate::asset::Asset>> {
    let value: Option<Value> = match path {
        Some(path) => {
            let source = EnvelopeSource {
                asset: Some(path.clone()),
                ..Default::default()
            };
            Envelope::read(&source, std::io::empty())?.asset
        }
        None => match std::env::var(ASSET_ENV) {
            Ok(text) => Some(serde_json::from_str(&text).map_err(|e| {
                // serde_json names the place (line, column), never the content.
                Error::invalid("/asset", format!("{ASSET_ENV} is not valid JSON: {e}"))
            })?),
            Err(_) => None,
        },
    };
    value.map(|v| runner::parse_asset(Some(&v))).transpose()
}

/// Everything before serving: tools chosen, asset read, Graph client and action thread
/// started. Errors here are the command line's (exit 2 with a pointer) and come before
/// any byte of protocol.
pub fn prepare(options: &McpOptions, settings: &RunSettings) -> Result<ConnectorServer> {
    let chosen = select(options.read_only, options.tools.as_deref())?;
    let asset = read_asset(options.asset.as_ref())?;
    let needs_graph: Vec<&str> = chosen
        .iter()
        .filter(|a| a.meta.needs_graph)
        .map(|a| a.meta.name)
        .collect();
    let graph = match asset {
        Some(asset) => Some(
            GraphClient::new(asset, settings.client_options()).map_err(|e| e.under("/asset"))?,
        ),
        None if needs_graph.is_empty() => None,
        None => {
            return Err(Error::invalid(
                "/asset",
                format!(
                    "is required: give --asset FILE or {ASSET_ENV} (these tools call Graph: {}); \
                     or serve only local tools with --tools",
                    needs_graph.join(", ")
                ),
            ));
        }
    };
    let worker = Worker::start(graph, settings.state_dir.clone())?;
    Ok(ConnectorServer::new(Arc::new(Catalog::new(chosen)), worker))
}

/// `mcp`: serve over stdio, or over HTTP with `--listen`, until the client leaves
/// (stdin closes) or Ctrl-C.
pub fn serve(options: McpOptions, settings: &RunSettings) -> Result<()> {
    let server = prepare(&options, settings)?;
    let token = match (&options.listen, &options.token_file) {
        (Some(_), Some(path)) => Some((http::BearerToken::from_file(path)?, false)),
        (Some(_), None) => Some((http::BearerToken::generate()?, true)),
        (None, Some(_)) => {
            return Err(Error::invalid(
                "/token_file",
                "--token-file is for the HTTP transport: give --listen too",
            ));
        }
        (None, None) => None,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::internal(format!("cannot start the async runtime: {e}")))?;
    // A shared state that cannot be used stops the server at start (exit 7), not at
    // its first tool call; the calls' own client connects on first use.
    if let Some(backend) = crate::backend::Backend::choose(&settings.state_url, None) {
        runtime.block_on(backend.ready())?;
    }
    let outcome = runtime.block_on(async move {
        let stop = CancellationToken::new();
        let on_signal = stop.clone();
        tokio::spawn(async move {
            let _ = tokio::signal::ctrl_c().await;
            on_signal.cancel();
        });
        match (options.listen, token) {
            (Some(listen), Some((token, print))) => {
                let max = MAX_ENVELOPE_BYTES as usize;
                http::serve(listen, token, print, server, max, stop).await
            }
            _ => serve_stdio(server, stop).await,
        }
    });
    // A blocking read of stdin must not hold the exit.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    outcome
}

/// Newline-delimited JSON-RPC on stdin/stdout. A line longer than the envelope
/// limit is dropped (logged on stderr) and the session goes on.
async fn serve_stdio(server: ConnectorServer, stop: CancellationToken) -> Result<()> {
    let (read, write) = rmcp::transport::stdio_pipes();
    let transport =
        AsyncRwTransport::new_server(read, write).with_max_line_length(MAX_ENVELOPE_BYTES as usize);
    let running = server
        .serve_with_ct(transport, stop)
        .await
        .map_err(|e| Error::invalid("", format!("the MCP session did not start: {e}")))?;
    running
        .waiting()
        .await
        .map_err(|e| Error::internal(format!("the MCP session failed: {e}")))?;
    Ok(())
}
