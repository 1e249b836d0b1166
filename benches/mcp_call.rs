//! What a `tools/call` adds to the action itself (issue 14's target: under 1 ms).
//!
//! Both sides run `get_user` against the emulator in this process, on loopback,
//! with a warm token and connection:
//! - `action`: what `run` does after reading the envelope: check the inputs
//!   against the schema, run the handler, write the result object;
//! - `tools/call`: the MCP handler's `call` (what `tools/call` runs once the SDK
//!   has parsed the JSON-RPC message): the same checks and handler on the action
//!   thread, plus the hand-over, the JSON text and `structuredContent`.
//!
//! The difference of the medians is the overhead. JSON-RPC framing is the SDK's and
//! is left out of both. Run: `cargo bench --bench mcp_call`.

use std::hint::black_box;

use criterion::Criterion;
use graph_emulator::{self as emulator, EmulatorConfig, GenerateSpec, Tenant};
use msgraph_connector::actions::{Context, find};
use msgraph_connector::graph::GraphClient;
use msgraph_connector::mcp::{self, McpOptions};
use msgraph_connector::runner::{RunSettings, parse_asset};
use rmcp::model::CallToolRequestParams;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let state_dir = dir.path().join("state");
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let spec: GenerateSpec = "users=1000,sign_ins=0,seed=1".parse().unwrap();
    let mut config = EmulatorConfig::new(Tenant::generate(&spec));
    config.throttle = emulator::ThrottleConfig::parse("off").unwrap();
    let running = server_rt
        .block_on(emulator::start("127.0.0.1:0".parse().unwrap(), config))
        .unwrap();
    let asset: Value = running.asset_json("client_credentials").unwrap();
    let asset_path = dir.path().join("asset.json");
    std::fs::write(&asset_path, asset.to_string()).unwrap();
    let settings = RunSettings {
        state_dir: Some(state_dir.clone()),
        token_cache: true,
        state_url: Default::default(),
    };
    let inputs = json!({"id": "adele.vance@contoso.example"});

    // The action as `run` runs it, on a current-thread runtime like `run`'s.
    let action = find("get_user").unwrap();
    let local_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let graph = GraphClient::new(
        parse_asset(Some(&asset)).unwrap(),
        settings.client_options(),
    )
    .unwrap();
    let ctx = Context::new(Some(graph), None, Some(state_dir.clone()));
    let direct = || {
        local_rt.block_on(async {
            let checked = action.check_inputs(inputs.clone()).unwrap();
            let finished = action.run(&ctx, checked).await.unwrap();
            let mut out = Vec::with_capacity(256);
            finished.write(&mut out, false).unwrap();
            out
        })
    };

    // The same through the MCP handler.
    let server = mcp::prepare(
        &McpOptions {
            asset: Some(asset_path),
            ..Default::default()
        },
        &settings,
    )
    .unwrap();
    let arguments = inputs.as_object().unwrap().clone();
    let via_mcp = || {
        server_rt.block_on(async {
            let mut params = CallToolRequestParams::new("get_user");
            params.arguments = Some(arguments.clone());
            let result = server
                .call(params, None, CancellationToken::new())
                .await
                .unwrap();
            assert_eq!(result.is_error, Some(false));
            result
        })
    };
    // Warm both: a token, a connection.
    direct();
    via_mcp();

    let mut c = Criterion::default().configure_from_args();
    let mut group = c.benchmark_group("get_user");
    group.bench_function("action", |b| b.iter(|| black_box(direct())));
    group.bench_function("tools/call", |b| b.iter(|| black_box(via_mcp())));
    group.finish();
    c.final_summary();
    running.shutdown();
}
