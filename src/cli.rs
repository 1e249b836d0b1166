//! The command line: parse, set up logging, dispatch. The work is elsewhere.

use std::path::PathBuf;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use serde_json::{Value, json};

use crate::actions::ACTIONS;
use crate::asset::AssetSpec;
use crate::error::{Error, Result};
use crate::runner::{self, EnvelopeSource, RunSettings};

const ABOUT: &str = "Microsoft Graph users, presence and sign-ins for automation platforms.";

const LONG_ABOUT: &str = "\
Microsoft Graph users, presence and sign-ins for automation platforms.

A catalog of actions, each with a JSON Schema for its input and output. `run`
reads one envelope {\"asset\": {...}, \"inputs\": {...}, \"state\": {...}} on stdin
and prints one result object on stdout; errors print {\"error\": {...}} and exit
with 2 (invalid input), 3 (auth), 4 (Graph error), 5 (network), 6 (local state),
7 (shared state, --state-url) or 1 (defect).

Try it with no account:
  msgraph-connector demo
  msgraph-connector emulator --print-asset client_credentials";

#[derive(Debug, Parser)]
#[command(name = "msgraph-connector", version, about = ABOUT, long_about = LONG_ABOUT)]
struct Cli {
    /// Directory for the token cache and the embedded store
    /// [default: $XDG_STATE_HOME/msgraph-connector or ~/.local/state/msgraph-connector].
    #[arg(
        long,
        global = true,
        value_name = "DIR",
        env = "MSGRAPH_CONNECTOR_STATE_DIR"
    )]
    state_dir: Option<PathBuf>,

    /// Shared state for workers on several machines: postgres://USER:PASSWORD@HOST/DB
    /// (`sqlite:` or nothing: the embedded store in --state-dir). Holds the pacer's
    /// budgets and the token cache, sealed under MSGRAPH_CONNECTOR_STATE_KEY (base64 of
    /// 32 bytes, the same for every worker); a database that cannot be used, or no key,
    /// is exit 7, never a fallback to local state.
    #[arg(
        long,
        global = true,
        value_name = "URL",
        env = "MSGRAPH_CONNECTOR_STATE_URL",
        hide_env_values = true
    )]
    state_url: Option<StateUrlArg>,

    /// Never read or write cached tokens (for platforms that give no disk).
    #[arg(long, global = true)]
    no_token_cache: bool,

    /// More log output on stderr (-v info, -vv debug, -vvv trace); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,

    /// Log line format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,

    #[command(subcommand)]
    command: Command,
}

/// `--state-url` as given; its `Debug` hides it (it can hold a password).
#[derive(Clone)]
struct StateUrlArg(String);

impl std::str::FromStr for StateUrlArg {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        Ok(StateUrlArg(s.to_string()))
    }
}

impl std::fmt::Debug for StateUrlArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<state url not shown>")
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the action catalog as JSON.
    Actions,
    /// Print the input JSON Schema of an action (or `asset`); --output for its result schema.
    Schema(SchemaArgs),
    /// Run one action: envelope on stdin (or --asset/--inputs/--state files), result on stdout.
    Run(RunArgs),
    /// Test connectivity: get a token, make one cheap Graph call, report missing permissions.
    ///
    /// Reads the envelope like `run` (only `asset` is used) and prints the contract's
    /// result object whose `json_body` is
    /// {"successful": bool, "token": {"type": "app"|"delegated", "permissions": [...]},
    ///  "graph": {"status": 200}, "actions": [{"name", "ok", "missing": [...]}]}.
    /// The token is always fetched fresh (proving the credential) and then cached.
    /// An action is ok when the token holds any of its listed permissions (or a broader
    /// one, e.g. Directory.Read.All for User.Read.All); else `missing` names the first.
    /// Entra roles an action needs on the app's service principal are not in the token:
    /// app-only, its line lists them under `directory_roles` to verify in Entra.
    /// `successful` is false when an action misses a permission (exit 0: the check ran);
    /// token failures exit 3, Graph errors 4, network 5. A 403 on the cheap read is
    /// reported in `graph` (the token was accepted), not failed.
    Check(CheckArgs),
    /// Serve the built-in fake tenant (Graph + Entra ID token endpoint) on loopback.
    #[command(after_help = EMULATOR_HELP)]
    Emulator(EmulatorArgs),
    /// IP-based office presence end to end against the built-in fake tenant, no account needed.
    ///
    /// Generates an organisation whose working day is today, serves it in-process, runs
    /// sync_ip_presence over HTTP into a temporary store (or --state-dir when given) and
    /// prints who is in which office.
    Demo(DemoArgs),
    /// Write an installable package for a SOAR platform, generated from the action list.
    #[command(after_help = EXPORT_HELP)]
    Export(ExportArgs),
    /// Serve the catalog as a Model Context Protocol server (stdio, or HTTP with --listen).
    #[command(after_help = MCP_HELP)]
    Mcp(McpArgs),
    /// Run continuously and write changes as JSON lines (`watch presence`).
    #[command(subcommand)]
    Watch(WatchCommand),
}

#[derive(Debug, Subcommand)]
enum WatchCommand {
    /// Poll many users' presence continuously; write only the changes, as JSON lines.
    #[command(long_about = WATCH_LONG, after_help = WATCH_HELP)]
    Presence(WatchPresenceArgs),
}

const WATCH_LONG: &str = "\
Poll many users' presence continuously and write only the changes, as JSON lines.

Each cycle asks getPresencesByUserId for every user, 650 ids a request, one request
after another, paced to the presence limit of the asset (Graph's published 1,500
requests / 30 s per app by default; `rate_limits.presence` in the asset). A presence
is written when its sequenceNumber (else its value) differs from the last one seen;
the first cycle writes everyone. Users are object ids or user principal names (a file,
one a line; blank lines and lines starting with # are skipped) or a group's transitive
members. UPNs are resolved once and kept in the state store under --state-dir, so a
restart does not resolve them again; they are resolved again every --resolve-every,
and at once for a user Graph no longer answers for (deleted): a UPN that no longer
resolves is written once as a `gone` line.

Lines, each with \"kind\" and \"at\":
  {\"kind\": \"presence\", \"id\", \"upn\"?, \"presence\": {...as Graph sent it}}
  {\"kind\": \"gone\", \"upn\", \"id\"}        a UPN that no longer resolves
  {\"kind\": \"not_found\", \"id\"}           an object id Graph does not know
  {\"kind\": \"heartbeat\", \"users\", \"cycles\", \"requests\", \"changes\", \"not_found\", \"errors\", \"resolutions\"}
  {\"kind\": \"summary\", ...the same counts, \"stopped_by\": \"signal\" | \"cycles\"}   the last line

SIGTERM or SIGINT (Ctrl-C) stops it after the batch in flight: that batch's changes
and the summary are written, and it exits 0. A batch that fails after the client's
retries (network, Graph 5xx or 429) is counted under `errors` and the next goes on; a
refused credential (exit 3) or a Graph 4xx such as a missing permission (exit 4) stops
it. Needs Presence.Read.All, plus User.Read.All for UPNs or GroupMember.Read.All for
--group.";

const WATCH_HELP: &str = "\
Examples:
  # agents.txt: one object id or UPN a line
  msgraph-connector watch presence --asset asset.json --users agents.txt
  # a group's members, to a file, a cycle every 5 s, a heartbeat every 5 minutes
  msgraph-connector watch presence --asset asset.json --group 9a0c...e1 \\
      --output presence.jsonl --interval 5 --heartbeat 300
  # users covered at the limit: 1,500 requests / 30 s x 650 ids = 32,500 users a second";

#[derive(Debug, Args)]
struct WatchPresenceArgs {
    /// The asset (JSON file); else the MSGRAPH_CONNECTOR_ASSET variable holds it as JSON.
    #[arg(long, value_name = "FILE")]
    asset: Option<PathBuf>,
    /// Users to watch: object ids and/or UPNs, one a line.
    #[arg(
        long,
        value_name = "FILE",
        required_unless_present = "group",
        conflicts_with = "group"
    )]
    users: Option<PathBuf>,
    /// Watch this group's transitive members (users) instead; its members are read
    /// again every --resolve-every.
    #[arg(long, value_name = "ID")]
    group: Option<String>,
    /// Append the lines to FILE (created 0600) instead of stdout.
    #[arg(long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Seconds from the start of one cycle to the start of the next.
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0)]
    interval: f64,
    /// Seconds between heartbeat lines.
    #[arg(long, value_name = "SECONDS", default_value_t = 60.0)]
    heartbeat: f64,
    /// Seconds between two resolutions of the UPNs (or the group's members).
    #[arg(long, value_name = "SECONDS", default_value_t = 3600.0)]
    resolve_every: f64,
    /// Stop after this many cycles (default: run until SIGTERM or SIGINT).
    #[arg(long, value_name = "N")]
    cycles: Option<u64>,
}

const EXPORT_HELP: &str = "\
turbine: a Swimlane Turbine connector folder (connector.yaml, assets/*.yaml with
`schema: asset/1`, actions/*.yaml with `schema: action/1`, a Dockerfile that runs this
binary, a README listing every choice not backed by public documentation).
The others: the platform's metadata plus a thin Python wrapper that pipes the
envelope to msgraph-connector on stdin (secrets never in argv or the environment)
and maps the result back. The wrapper finds the binary in $MSGRAPH_CONNECTOR,
beside itself (--bundle), or on PATH. Output is deterministic.

Examples:
  msgraph-connector export turbine out/turbine          # Swimlane Turbine connector folder (no Python)
  msgraph-connector export xsoar out/xsoar            # pack: pack_metadata.json, Integrations/...
  msgraph-connector export splunk-soar out/splunk --bundle
  msgraph-connector export stackstorm out/msgraph_connector

Each package's README.md says how to install it and which permissions each action needs.";

#[derive(Debug, Args)]
struct ExportArgs {
    /// The platform.
    #[arg(value_enum)]
    platform: crate::export::Platform,
    /// Where to write the package (created; must be empty unless --force).
    dir: PathBuf,
    /// Copy this msgraph-connector binary into the package, beside the wrapper.
    #[arg(long)]
    bundle: bool,
    /// Write into a non-empty DIR, replacing files of the same names.
    #[arg(long)]
    force: bool,
}

const MCP_HELP: &str = "\
Each action is a tool with its input and output schema and annotations (readOnlyHint,
destructiveHint, idempotentHint, openWorldHint). The asset is read once at start and is
never a tool argument; nothing but protocol goes to stdout, logs go to stderr.

Examples:
  # stdio, for an MCP client that starts the server itself
  msgraph-connector mcp --asset asset.json
  # only read-only tools, or only some
  msgraph-connector mcp --asset asset.json --read-only
  msgraph-connector mcp --asset asset.json --tools get_user,get_presences
  # streamable HTTP on loopback: prints {\"url\": ..., \"token\": ...} once
  msgraph-connector mcp --asset asset.json --listen 127.0.0.1:8765";

#[derive(Debug, Args)]
struct McpArgs {
    /// The asset (JSON file); else the MSGRAPH_CONNECTOR_ASSET variable holds it as JSON.
    #[arg(long, value_name = "FILE")]
    asset: Option<PathBuf>,
    /// Serve only tools that change nothing (neither the tenant nor local state).
    #[arg(long)]
    read_only: bool,
    /// Serve only these actions (comma-separated names).
    #[arg(long, value_name = "A,B,C", value_delimiter = ',')]
    tools: Option<Vec<String>>,
    /// Serve MCP streamable HTTP at http://ADDR/mcp instead of stdio; loopback only.
    /// A bearer token is generated and printed once on stdout, unless --token-file.
    #[arg(long, value_name = "ADDR")]
    listen: Option<std::net::SocketAddr>,
    /// With --listen: the bearer token is the first line of FILE (not printed).
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct DemoArgs {
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Users to generate (smaller for tests).
    #[arg(long, hide = true, default_value_t = 3000)]
    users: usize,
    /// Sign-ins to generate.
    #[arg(long, hide = true, default_value_t = 30_000)]
    sign_ins: usize,
}

const EMULATOR_HELP: &str = "\
Examples:
  # a generated tenant on a fixed port, with a ready asset in asset.json
  msgraph-connector emulator --listen 127.0.0.1:8080 \\
      --generate users=1000,sign_ins=10000,seed=1 --print-asset client_credentials > asset.json
  # a fixture, with 30 % of sign-in requests throttled
  msgraph-connector emulator --tenant tests/fixtures/tenant.yaml --faults 'signins:429=0.3'

Stdout gets one JSON line (the asset, or {\"url\": ...}); stop with Ctrl-C.";

#[derive(Debug, Args)]
struct EmulatorArgs {
    /// Address to listen on; loopback only. Port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: std::net::SocketAddr,
    /// Tenant fixture (JSON or YAML).
    #[arg(long, value_name = "FILE", conflicts_with = "generate")]
    tenant: Option<PathBuf>,
    /// Generate a tenant: users=N,sign_ins=M,seed=S (deterministic per seed).
    #[arg(long, value_name = "SPEC")]
    generate: Option<String>,
    /// Print a ready connector asset of this type pointing at the emulator
    /// (client_credentials, oauth2_client_credentials, password, refresh_token).
    #[arg(long, value_name = "TYPE")]
    print_asset: Option<String>,
    /// Fault injection, e.g. 'signins:429=0.3,503=0.1;presence:drop=0.05'.
    #[arg(long, value_name = "SPEC")]
    faults: Option<String>,
    /// Throttling, e.g. 'presence=1500/30,signins=5/10' or 'off' [default: Graph's published limits].
    #[arg(long, value_name = "SPEC")]
    throttle: Option<String>,
    /// Append every request as a JSON line to FILE.
    #[arg(long, value_name = "FILE")]
    request_log: Option<PathBuf>,
    /// Lifetime of access tokens in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 3599)]
    token_lifetime: u64,
    /// How long a `$skiptoken` (memberOf, users) stays usable, in seconds; later pages
    /// are refused with Directory_ExpiredPageToken, as Graph does.
    #[arg(long, value_name = "SECONDS", default_value_t = 3600)]
    skiptoken_ttl: u64,
    /// Serve HTTPS (what Microsoft's client libraries require), with a certificate made
    /// at start for 127.0.0.1 and localhost. Its authority's PEM goes to --ca-file (or a
    /// new file in the temp dir); the path is printed, and `--print-asset` sets `ca_file`.
    #[arg(long)]
    tls: bool,
    /// With --tls: write the certificate authority's PEM here (a new file).
    #[arg(long, value_name = "FILE", requires = "tls")]
    ca_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct SchemaArgs {
    /// An action name, or `asset`.
    #[arg(required_unless_present = "write_all")]
    target: Option<String>,
    /// Print the result (output) schema instead of the input schema.
    #[arg(long)]
    output: bool,
    /// Write every schema into DIR (asset.json, <action>.input.json, <action>.output.json).
    #[arg(long, value_name = "DIR", conflicts_with_all = ["target", "output"])]
    write_all: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// The action to run (see the list below).
    action: String,
    /// Speak Swimlane Turbine's protocol (also chosen when ASSET_KEYS is set): one flat
    /// JSON object on stdin holding asset fields and inputs side by side, ASSET_KEYS
    /// (comma-separated) naming the asset's keys, the result as one `::set-output {json}`
    /// line on stdout and an error as one `::set-error {json}` line on stderr.
    #[arg(long, conflicts_with_all = ["asset", "inputs", "state"])]
    turbine: bool,
    #[command(flatten)]
    files: FileArgs,
}

#[derive(Debug, Args)]
struct CheckArgs {
    #[command(flatten)]
    files: FileArgs,
}

#[derive(Debug, Args)]
struct FileArgs {
    /// Read the asset from FILE instead of the stdin envelope.
    #[arg(long, value_name = "FILE")]
    asset: Option<PathBuf>,
    /// Read the inputs from FILE instead of the stdin envelope.
    #[arg(long, value_name = "FILE")]
    inputs: Option<PathBuf>,
    /// Read the incoming state from FILE instead of the stdin envelope.
    #[arg(long, value_name = "FILE")]
    state: Option<PathBuf>,
}

impl From<FileArgs> for EnvelopeSource {
    fn from(f: FileArgs) -> Self {
        EnvelopeSource {
            asset: f.asset,
            inputs: f.inputs,
            state: f.state,
        }
    }
}

/// The `run` help's list of actions, from the registry.
fn actions_help() -> String {
    let width = ACTIONS.iter().map(|a| a.meta.name.len()).max().unwrap_or(0);
    let mut help = String::from("Actions:\n");
    for a in ACTIONS {
        help.push_str(&format!("  {:width$}  {}\n", a.meta.name, a.meta.title));
    }
    help.push_str(
        "\nExample:\n  echo '{\"asset\": {...}, \"inputs\": {\"id\": \"adele@contoso.com\"}}' \\\n    | msgraph-connector run get_presence\n",
    );
    help.push_str("\nSee `msgraph-connector schema ACTION` for an action's inputs.");
    help
}

/// Parse the command line and run; returns the process exit status.
pub fn main() -> i32 {
    let command = Cli::command().mut_subcommand("run", |run| run.after_help(actions_help()));
    let cli = match Cli::from_arg_matches(&command.get_matches()) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    init_logging(cli.verbose, cli.log_format);
    // `demo` uses a temporary store unless a state dir was asked for.
    let explicit_state_dir = cli.state_dir.clone();
    // A --state-url that cannot be used ends here, before anything else (exit 7).
    let state_url =
        match crate::backend::StateUrl::parse(cli.state_url.as_ref().map(|u| u.0.as_str())) {
            Ok(url) => url,
            Err(e) => {
                runner::report(&e);
                return e.exit_code();
            }
        };
    crate::backend::declare(&state_url);
    let settings = RunSettings {
        state_dir: cli.state_dir.or_else(default_state_dir),
        token_cache: !cli.no_token_cache,
        state_url,
    };
    // A panic is a defect of ours; the contract still owes the caller one error
    // object and exit 1. The hook names only where it happened: a panic message
    // can quote data, and data can be a secret.
    std::panic::set_hook(Box::new(|info| {
        let at = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!("msgraph-connector: internal defect at {at}; please report it");
    }));
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        dispatch(cli.command, &settings, explicit_state_dir)
    }));
    outcome.unwrap_or_else(|_| {
        let error =
            Error::internal("an internal defect stopped the run (see stderr); nothing was retried");
        runner::report(&error);
        error.exit_code()
    })
}

fn dispatch(command: Command, settings: &RunSettings, explicit_state_dir: Option<PathBuf>) -> i32 {
    match command {
        Command::Actions => runner::finish(Ok(Value::Array(
            ACTIONS.iter().map(|a| a.catalog_entry()).collect(),
        ))),
        Command::Schema(args) => runner::finish(schema(args)),
        Command::Run(args) => {
            let files = &args.files;
            let from_files =
                files.asset.is_some() || files.inputs.is_some() || files.state.is_some();
            if !from_files && crate::turbine::selected(args.turbine) {
                crate::turbine::run(&args.action, settings)
            } else {
                runner::run(&args.action, &args.files.into(), settings)
            }
        }
        Command::Check(args) => runner::finish(check(args.files.into(), settings)),
        Command::Demo(args) => demo(args, explicit_state_dir),
        Command::Export(args) => runner::finish(export(args)),
        Command::Mcp(args) => mcp(args, settings),
        Command::Watch(WatchCommand::Presence(args)) => match watch_presence(args, settings) {
            Ok(()) => 0,
            Err(e) => {
                runner::report(&e);
                e.exit_code()
            }
        },
        Command::Emulator(args) => match serve_emulator(args) {
            Ok(()) => 0,
            Err(e) => {
                runner::report(&e);
                e.exit_code()
            }
        },
    }
}

fn schema(args: SchemaArgs) -> Result<Value> {
    if let Some(dir) = args.write_all {
        let written = write_all_schemas(&dir)?;
        return Ok(json!({ "written": written }));
    }
    let target = args.target.unwrap_or_default();
    if target == "asset" {
        return Ok(AssetSpec::schema());
    }
    let action = crate::actions::find(&target).ok_or_else(|| {
        Error::invalid(
            "",
            format!("unknown action {target:?}; try `msgraph-connector actions`"),
        )
    })?;
    Ok(if args.output {
        action.output_schema()
    } else {
        action.input_schema()
    })
}

/// Every schema as the files of `schemas/`: name and pretty JSON text.
pub fn all_schema_files() -> Vec<(String, String)> {
    let pretty = |v: &Value| serde_json::to_string_pretty(v).expect("schemas serialise") + "\n";
    let mut files = vec![("asset.json".to_string(), pretty(&AssetSpec::schema()))];
    for a in ACTIONS {
        files.push((
            format!("{}.input.json", a.meta.name),
            pretty(&a.input_schema()),
        ));
        files.push((
            format!("{}.output.json", a.meta.name),
            pretty(&a.output_schema()),
        ));
    }
    files
}

fn write_all_schemas(dir: &std::path::Path) -> Result<Vec<String>> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::invalid("", format!("cannot create {}: {e}", dir.display())))?;
    let mut written = Vec::new();
    for (name, text) in all_schema_files() {
        let path = dir.join(&name);
        std::fs::write(&path, text)
            .map_err(|e| Error::internal(format!("cannot write {}: {e}", path.display())))?;
        written.push(name);
    }
    Ok(written)
}

fn check(source: EnvelopeSource, settings: &RunSettings) -> Result<Value> {
    let envelope = runner::Envelope::read(&source, std::io::stdin().lock())?;
    let asset = runner::parse_asset(envelope.asset.as_ref())?;
    let options = settings.client_options();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::internal(format!("cannot start the async runtime: {e}")))?;
    let (body, _status) = runtime.block_on(crate::check::check(asset, options))?;
    // The contract's result envelope, like an action's; the report is its json_body.
    Ok(json!({
        "status_code": 200,
        "reason": "OK",
        "response_headers": {},
        "json_body": body,
    }))
}

fn export(args: ExportArgs) -> Result<Value> {
    let binary =
        if args.bundle {
            Some(std::env::current_exe().map_err(|e| {
                Error::internal(format!("cannot find this binary to bundle it: {e}"))
            })?)
        } else {
            None
        };
    let written = crate::export::write(args.platform, &args.dir, binary.as_deref(), args.force)?;
    Ok(json!({ "platform": args.platform, "dir": args.dir, "written": written }))
}

fn demo(args: DemoArgs, state_dir: Option<PathBuf>) -> i32 {
    let options = crate::demo::DemoOptions {
        users: args.users,
        sign_ins: args.sign_ins,
        state_dir,
        ..Default::default()
    };
    match crate::demo::run(&options) {
        Ok(report) if args.json => runner::finish(
            serde_json::to_value(&report)
                .map_err(|e| Error::internal(format!("report does not serialise: {e}"))),
        ),
        Ok(report) => {
            print!("{}", crate::demo::render(&report));
            0
        }
        Err(e) => {
            runner::report(&e);
            e.exit_code()
        }
    }
}

/// `mcp`: stdout belongs to the protocol, so a failure is told on stderr only.
fn mcp(args: McpArgs, settings: &RunSettings) -> i32 {
    let options = crate::mcp::McpOptions {
        asset: args.asset,
        read_only: args.read_only,
        tools: args.tools,
        listen: args.listen,
        token_file: args.token_file,
    };
    match crate::mcp::serve(options, settings) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!(
                "msgraph-connector: {} error: {}",
                e.kind.as_str(),
                e.message
            );
            e.exit_code()
        }
    }
}

fn serve_emulator(args: EmulatorArgs) -> Result<()> {
    use graph_emulator::{
        self as emulator, EmulatorConfig, FaultPlan, GenerateSpec, Tenant, ThrottleConfig,
    };
    let bad = |flag: &str, e: String| Error::invalid("", format!("--{flag}: {e}"));
    let spec = match (&args.tenant, &args.generate) {
        (Some(_), _) => None,
        (None, Some(spec)) => Some(
            spec.parse::<GenerateSpec>()
                .map_err(|e| bad("generate", e))?,
        ),
        (None, None) => Some(GenerateSpec::default()),
    };
    let tenant = match (&args.tenant, &spec) {
        (Some(path), _) => Tenant::load(path).map_err(|e| bad("tenant", e.to_string()))?,
        (None, Some(spec)) => Tenant::generate(spec),
        (None, None) => unreachable!("a spec whenever no fixture is given"),
    };
    // A generated tenant's sign-ins lie on one day: when that day is past, the clock runs
    // from the next morning, as if the tenant were read soon after, so they are inside
    // the sign-in log's retention (30 days) rather than long gone.
    let data_day = spec
        .as_ref()
        .map(|s| s.day.unwrap_or(emulator::DEFAULT_DAY));
    let running_from = data_day
        .filter(|day| *day < jiff::Zoned::now().date())
        .and_then(|day| day.tomorrow().ok())
        .and_then(|day| day.at(1, 0, 0, 0).to_zoned(jiff::tz::TimeZone::UTC).ok())
        .map(|at| at.timestamp());
    let mut config = EmulatorConfig::new(tenant);
    config.token_lifetime = std::time::Duration::from_secs(args.token_lifetime.max(1));
    config.request_log_path = args.request_log;
    config.skiptoken_ttl = std::time::Duration::from_secs(args.skiptoken_ttl);
    config.tls = args.tls;
    if let Some(spec) = &args.faults {
        config.faults = FaultPlan::parse(spec).map_err(|e| bad("faults", e))?;
    }
    if let Some(spec) = &args.throttle {
        config.throttle = ThrottleConfig::parse(spec).map_err(|e| bad("throttle", e))?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::internal(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(async {
        let running = emulator::start(args.listen, config)
            .await
            .map_err(|e| Error::invalid("", e.to_string()))?;
        if let Some(at) = running_from {
            running.start_clock_at(at);
        }
        let mut line = match &args.print_asset {
            Some(kind) => running
                .asset_json(kind)
                .map_err(|e| bad("print-asset", e.to_string()))?,
            None => json!({ "url": running.base_url(), "token_url": running.token_url() }),
        };
        if let Some(pem) = running.ca_pem() {
            let path = write_ca_file(args.ca_file.as_deref(), running.addr().port(), pem)?;
            line["ca_file"] = json!(path.display().to_string());
            eprintln!(
                "msgraph-connector: the emulator's certificate authority is in {} \
                 (trust it: REQUESTS_CA_BUNDLE / SSL_CERT_FILE, or the asset's ca_file)",
                path.display()
            );
        }
        runner::print_json(&line);
        eprintln!(
            "msgraph-connector: emulator listening on {} (Ctrl-C stops it)",
            running.base_url()
        );
        let _ = tokio::signal::ctrl_c().await;
        running.shutdown();
        Ok(())
    })
}

/// Write the emulator's CA certificate (public, so 0644) to a new file: `--ca-file`, or
/// one named after the process and port in the temp dir. Never through an existing
/// name, so a planted link cannot redirect it.
fn write_ca_file(path: Option<&std::path::Path>, port: u16, pem: &str) -> Result<PathBuf> {
    use std::io::Write;
    let path = match path {
        Some(p) => p.to_path_buf(),
        None => std::env::temp_dir().join(format!(
            "msgraph-connector-emulator-ca-{}-{port}.pem",
            std::process::id()
        )),
    };
    let fail = |e: std::io::Error| {
        Error::invalid(
            "",
            format!("--ca-file: cannot create {}: {e}", path.display()),
        )
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(fail)?;
    f.write_all(pem.as_bytes()).map_err(fail)?;
    Ok(path)
}

/// `$XDG_STATE_HOME/msgraph-connector`, else `~/.local/state/msgraph-connector`.
fn default_state_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_STATE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))?;
    Some(base.join("msgraph-connector"))
}

fn init_logging(verbose: u8, format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.with_target(false).try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// `watch presence`: arguments checked (exit 2, before any request), then the collector
/// runs until a signal; see [`crate::watch`].
fn watch_presence(args: WatchPresenceArgs, settings: &RunSettings) -> Result<()> {
    use crate::watch::{Roster, Settings, Watcher};
    let seconds = |v: f64, name: &str, min: f64| {
        if v.is_finite() && v >= min && v <= 86_400.0 * 7.0 {
            Ok(std::time::Duration::from_secs_f64(v))
        } else {
            Err(Error::invalid(
                format!("/{name}"),
                format!("--{name} must be from {min} to 604800 seconds"),
            ))
        }
    };
    let watch_settings = Settings {
        interval: seconds(args.interval, "interval", 0.0)?,
        heartbeat: seconds(args.heartbeat, "heartbeat", 1.0)?,
        resolve_every: seconds(args.resolve_every, "resolve-every", 60.0)?,
        max_cycles: args.cycles,
    };
    let roster = match (&args.users, &args.group) {
        (Some(path), _) => Roster::Users(read_user_list(path)?),
        (None, Some(group)) => {
            if crate::fastpath::guid::parse(group).is_none() {
                return Err(Error::invalid(
                    "/group",
                    "--group must be a group's object id (a GUID)",
                ));
            }
            Roster::Group(group.clone())
        }
        (None, None) => return Err(Error::invalid("/users", "give --users FILE or --group ID")),
    };
    let asset = crate::mcp::read_asset(args.asset.as_ref())?.ok_or_else(|| {
        Error::invalid(
            "/asset",
            "is required: give --asset FILE or MSGRAPH_CONNECTOR_ASSET",
        )
    })?;
    // The same pacer as every action (shared through the state dir or --state-url).
    let graph = crate::graph::GraphClient::new(asset, settings.client_options())
        .map_err(|e| e.under("/asset"))?;
    // Resolved UPNs are kept where the run's state is: the shared state under the
    // asset's scope, else the state dir.
    let store = match graph.backend() {
        Some(crate::backend::Backend::Postgres(pg)) => Some(crate::state::StateStore::Shared(
            crate::state::SharedState::new(pg.clone(), crate::state::scope_of(graph.asset())),
        )),
        _ => match &settings.state_dir {
            Some(dir) => Some(crate::state::StateStore::Local(
                crate::state::StateDb::open(dir)?,
            )),
            None => None,
        },
    };
    let out: Box<dyn std::io::Write> = match &args.output {
        Some(path) => Box::new(open_append(path)?),
        None => Box::new(std::io::stdout()),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::internal(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(async move {
        let stop = tokio_util::sync::CancellationToken::new();
        let on_signal = stop.clone();
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|e| Error::internal(format!("cannot listen for SIGTERM: {e}")))?;
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            tracing::info!("watch: stopping after the batch in flight");
            on_signal.cancel();
        });
        Watcher::new(&graph, store, out, roster, watch_settings)
            .run(stop)
            .await
            .map(drop)
    })
}

/// The users of `--users FILE`: one id or UPN a line; blank and `#` lines skipped.
fn read_user_list(path: &std::path::Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::invalid("/users", format!("cannot read {}: {e}", path.display())))?;
    let mut users = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.len() > 1024 || line.chars().any(char::is_control) {
            return Err(Error::invalid(
                format!("/users/{n}"),
                format!(
                    "line {} is not an object id or UPN (too long, or a control character)",
                    n + 1
                ),
            ));
        }
        users.push(line.to_string());
    }
    if users.is_empty() {
        return Err(Error::invalid("/users", "the file names no user"));
    }
    Ok(users)
}

/// `--output FILE`: appended to (a restarted collector keeps what it wrote), created
/// 0600; anything but a regular file is refused.
fn open_append(path: &std::path::Path) -> Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Ok(meta) = std::fs::symlink_metadata(path)
        && !meta.file_type().is_file()
    {
        return Err(Error::invalid(
            "/output",
            format!("{} is not a regular file", path.display()),
        ));
    }
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::local(format!("cannot open {} to write: {e}", path.display())))
}
