//! The runner: envelope in, one result object out.
//!
//! Stages, each of which can only fail with `invalid_input` until the last:
//! 1. read the envelope from stdin (or from `--asset`/`--inputs`/`--state`
//!    files), refusing more than [`MAX_ENVELOPE_BYTES`] without reading it all
//!    (Swimlane Turbine's flat object is read by the `turbine` module, which
//!    joins this path at stage 3 through [`execute`]);
//! 2. parse JSON and check the envelope's shape (`asset`, `inputs`, `state`);
//! 3. validate the inputs ([`ActionEntry::check_inputs`]) and parse the asset
//!    ([`crate::asset::parse`]) against their JSON Schemas, so errors carry
//!    JSON pointers; both report at once;
//! 4. only then build the Graph client and run the handler.
//!
//! No network request can leave before stage 4. The layers below point
//! relative to what they were given; the runner places their pointers in the
//! envelope (`/asset`, `/inputs`) with [`Error::under`].

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::{Map, Value};

use crate::actions::{self, ActionEntry, CheckedInputs, Context};
use crate::asset::Asset;
use crate::error::{Detail, Error, Result, pointer_token};
use crate::graph::{ClientOptions, GraphClient};

/// The largest envelope (or file given with `--asset`/`--inputs`/`--state`) accepted: 32 MiB.
/// Larger sign-in batches go through `sign_ins_path` / `output_path` files instead.
pub const MAX_ENVELOPE_BYTES: u64 = 32 * 1024 * 1024;

/// Where the envelope comes from, as the command line says.
#[derive(Debug, Default, Clone)]
pub struct EnvelopeSource {
    pub asset: Option<PathBuf>,
    pub inputs: Option<PathBuf>,
    pub state: Option<PathBuf>,
}

/// The parsed envelope, not yet validated against the action's schemas.
/// Its `Debug` leaves the asset out: it holds secrets in plain text until parsed.
#[derive(Default)]
pub struct Envelope {
    pub asset: Option<Value>,
    pub inputs: Value,
    pub state: Option<Value>,
}

/// Settings of one process that are not part of the envelope.
#[derive(Debug, Clone, Default)]
pub struct RunSettings {
    pub state_dir: Option<PathBuf>,
    pub token_cache: bool,
    /// `--state-url`: the shared state, when not the embedded one (issue 17).
    pub state_url: crate::backend::StateUrl,
}

impl RunSettings {
    /// The Graph client's options: the token cache, and the pacer shared through
    /// `--state-url` or the state dir.
    pub fn client_options(&self) -> ClientOptions {
        ClientOptions {
            state_dir: self.state_dir.clone(),
            token_cache: self.token_cache,
            backend: crate::backend::Backend::choose(&self.state_url, self.state_dir.as_ref()),
        }
    }
}

impl std::fmt::Debug for Envelope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Envelope")
            .field("asset", &self.asset.as_ref().map(|_| "<not shown>"))
            .field("inputs", &self.inputs)
            .field("state", &self.state)
            .finish()
    }
}

impl Envelope {
    /// Read the envelope from files when any is named, else from `stdin`.
    pub fn read(source: &EnvelopeSource, stdin: impl Read) -> Result<Envelope> {
        if source.asset.is_some() || source.inputs.is_some() || source.state.is_some() {
            let file = |path: &Option<PathBuf>, pointer: &str| -> Result<Option<Value>> {
                path.as_deref()
                    .map(|p| read_json_file(p, pointer))
                    .transpose()
            };
            return Ok(Envelope {
                asset: file(&source.asset, "/asset")?,
                inputs: file(&source.inputs, "/inputs")?
                    .unwrap_or_else(|| Value::Object(Map::new())),
                state: file(&source.state, "/state")?,
            });
        }
        let bytes = read_limited(stdin, "stdin")?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(Error::invalid(
                "",
                "stdin is empty: expected an envelope {\"asset\": {...}, \"inputs\": {...}}",
            ));
        }
        Envelope::parse(&bytes)
    }

    /// Parse `{"asset": ..., "inputs": ..., "state": ...}`.
    pub fn parse(bytes: &[u8]) -> Result<Envelope> {
        let value: Value = parse_json(bytes, "")?;
        let Value::Object(mut top) = value else {
            return Err(Error::invalid("", "the envelope must be a JSON object"));
        };
        let unknown: Vec<Detail> = top
            .keys()
            .filter(|k| !matches!(k.as_str(), "asset" | "inputs" | "state"))
            .map(|k| {
                Detail::new(
                    format!("/{}", pointer_token(k)),
                    "is not a known field (asset, inputs, state)",
                )
            })
            .collect();
        if !unknown.is_empty() {
            return Err(Error::invalid_details(unknown));
        }
        Ok(Envelope {
            asset: top.remove("asset").filter(|v| !v.is_null()),
            inputs: top
                .remove("inputs")
                .unwrap_or_else(|| Value::Object(Map::new())),
            state: top.remove("state").filter(|v| !v.is_null()),
        })
    }
}

/// Read a `--asset`/`--inputs`/`--state` file: a regular file of at most
/// [`MAX_ENVELOPE_BYTES`]. A FIFO (whose open would block) or a device such as
/// `/dev/zero` is refused before it is opened, and again on the opened file in
/// case the path was swapped in between.
fn read_json_file(path: &Path, pointer: &str) -> Result<Value> {
    let not_regular =
        || Error::invalid(pointer, format!("{} is not a regular file", path.display()));
    let cannot_open =
        |e: std::io::Error| Error::invalid(pointer, format!("cannot open {}: {e}", path.display()));
    if !std::fs::metadata(path).map_err(cannot_open)?.is_file() {
        return Err(not_regular());
    }
    let file = std::fs::File::open(path).map_err(cannot_open)?;
    let meta = file.metadata().map_err(cannot_open)?;
    if !meta.is_file() {
        return Err(not_regular());
    }
    if meta.len() > MAX_ENVELOPE_BYTES {
        return Err(too_large(pointer, &path.display().to_string()));
    }
    let bytes = read_limited(file, &path.display().to_string()).map_err(|e| e.under(pointer))?;
    parse_json(&bytes, pointer)
}

/// Read at most [`MAX_ENVELOPE_BYTES`]; one byte more is refused without reading the rest.
pub(crate) fn read_limited(reader: impl Read, what: &str) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    reader
        .take(MAX_ENVELOPE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::invalid("", format!("cannot read {what}: {e}")))?;
    if bytes.len() as u64 > MAX_ENVELOPE_BYTES {
        return Err(too_large("", what));
    }
    Ok(bytes)
}

fn too_large(pointer: &str, what: &str) -> Error {
    Error::invalid(
        pointer,
        format!(
            "{what} is larger than {} MiB; pass large sign-in batches as a file path input instead",
            MAX_ENVELOPE_BYTES / (1024 * 1024)
        ),
    )
}

/// Parse JSON whose objects repeat no key: `{"client_id": "a", "client_id": "b"}` would
/// otherwise mean `b` silently (RFC 8259 §4: behaviour with duplicates is
/// "unpredictable"), so it is refused at the repeated key's pointer.
pub(crate) fn parse_json(bytes: &[u8], pointer: &str) -> Result<Value> {
    use ip_presence::unique_keys::{Refusal, json_from_slice};
    json_from_slice(bytes).map_err(|r| match r {
        Refusal::Duplicate(at) => Error::invalid(
            format!("{pointer}{at}"),
            "repeats a key of its object; each key may appear once",
        ),
        Refusal::Parse(e) => {
            let what = if std::str::from_utf8(bytes).is_err() {
                "is not valid UTF-8 JSON".to_string()
            } else {
                "is not valid JSON".to_string()
            };
            // serde_json's message names the place, never the content.
            Error::invalid(pointer, format!("{what}: {e}"))
        }
        Refusal::TooDeep => Error::invalid(pointer, "is nested too deeply"),
    })
}

/// The envelope's asset, parsed: errors point at `/asset`.
pub fn parse_asset(asset: Option<&Value>) -> Result<Asset> {
    let asset = asset.ok_or_else(|| {
        Error::invalid(
            "/asset",
            "is required: it says how to authenticate to Graph",
        )
    })?;
    crate::asset::parse(asset).map_err(|e| e.under("/asset"))
}

/// Everything up to the handler: validate, then build the context.
pub fn prepare(
    action: &ActionEntry,
    envelope: Envelope,
    settings: &RunSettings,
) -> Result<(Context, CheckedInputs)> {
    let (inputs, asset) = if action.meta.needs_graph {
        // Inputs first: a playbook author fixing inputs wants those errors even with a bad asset.
        let inputs = action.check_inputs(envelope.inputs);
        let asset = parse_asset(envelope.asset.as_ref());
        match (inputs, asset) {
            (Ok(inputs), Ok(asset)) => (inputs, Some(asset)),
            (Err(a), Err(b)) => {
                let mut details = a.details;
                details.extend(b.details);
                return Err(Error::invalid_details(details));
            }
            (Err(e), _) | (_, Err(e)) => return Err(e),
        }
    } else {
        (action.check_inputs(envelope.inputs)?, None)
    };
    let options = settings.client_options();
    // An action without Graph still keeps its state in the shared database, under the
    // scope its envelope's asset names (when it has one).
    let shared = match (&asset, &options.backend) {
        (None, Some(crate::backend::Backend::Postgres(pg))) => {
            let scope = match envelope.asset.as_ref() {
                Some(a) => Some(crate::state::scope_of(&parse_asset(Some(a))?)),
                None => None,
            };
            Some((pg.clone(), scope))
        }
        _ => None,
    };
    let graph = asset
        .map(|asset| GraphClient::new(asset, options).map_err(|e| e.under("/asset")))
        .transpose()?;
    let state = if action.meta.incremental {
        envelope.state
    } else {
        None
    };
    let mut ctx = Context::new(graph, state, settings.state_dir.clone());
    if let Some((pg, scope)) = shared {
        ctx = ctx.with_shared(pg, scope);
    }
    Ok((ctx, inputs))
}

/// `run ACTION`: the whole job, returning the process exit status.
pub fn run(action_name: &str, source: &EnvelopeSource, settings: &RunSettings) -> i32 {
    let outcome = (|| {
        let action = actions::find(action_name).ok_or_else(|| unknown_action(action_name))?;
        let envelope = Envelope::read(source, std::io::stdin().lock())?;
        execute(action, envelope, settings)
    })();
    match outcome {
        Ok(result) => {
            print_with(&|out, pretty| result.write(out, pretty));
            // The process ends next: freeing a large result (a replay's state is
            // thousands of allocations, 12-17 ms for a month of 5,000 people) would
            // only delay the exit.
            std::mem::forget(result);
            0
        }
        Err(error) => {
            report(&error);
            error.exit_code()
        }
    }
}

/// Validate, then run the handler: the one path from an envelope to a result,
/// whichever protocol brought the envelope.
pub fn execute(
    action: &ActionEntry,
    envelope: Envelope,
    settings: &RunSettings,
) -> Result<actions::Finished> {
    let (ctx, inputs) = prepare(action, envelope, settings)?;
    // One thread: an action is one chain of requests, and worker threads only
    // added wake-ups and per-thread heaps (a third of get_presences' CPU).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::internal(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(async {
        ctx.ready().await?;
        action.run(&ctx, inputs).await
    })
}

/// Print a result or an error as the contract says and return the exit status.
pub fn finish<T: Serialize>(outcome: Result<T>) -> i32 {
    match outcome {
        Ok(value) => {
            print_json(&value);
            0
        }
        Err(error) => {
            report(&error);
            error.exit_code()
        }
    }
}

/// The error object on stdout and a human line (plus one per detail) on stderr.
pub fn report(error: &Error) {
    print_json(&error.to_json());
    let mut err = std::io::stderr().lock();
    let _ = writeln!(
        err,
        "msgraph-connector: {} error: {}",
        error.kind.as_str(),
        error.message
    );
    for d in error.details.iter().skip(1) {
        let _ = writeln!(
            err,
            "  at {}: {}",
            if d.path.is_empty() { "/" } else { &d.path },
            d.message
        );
    }
    if let Some(id) = &error.request_id {
        let _ = writeln!(err, "  request-id: {id}");
    }
}

/// One JSON document on stdout: pretty on a terminal, one line otherwise
/// (written straight from `value`, without an intermediate tree).
pub fn print_json<T: Serialize + ?Sized>(value: &T) {
    print_with(&|out, pretty| actions::write_json(out, value, pretty));
}

/// Print what `write` writes, then a newline; `write` is told whether to pretty-print.
fn print_with(write: &dyn Fn(&mut dyn Write, bool) -> serde_json::Result<()>) {
    let stdout = std::io::stdout();
    if stdout.is_terminal() {
        write_line(std::io::BufWriter::new(stdout.lock()), write, true);
        return;
    }
    let _ = stdout.lock().flush();
    // `Stdout` is line-buffered: it searches every write for a newline, which
    // costs as much as the copy for a 3 MB answer. A duplicate of the descriptor
    // is written without that search.
    #[cfg(unix)]
    let raw = {
        use std::os::fd::AsFd;
        stdout
            .as_fd()
            .try_clone_to_owned()
            .ok()
            .map(std::fs::File::from)
    };
    #[cfg(not(unix))]
    let raw: Option<std::fs::File> = None;
    match raw {
        Some(file) => write_line(
            std::io::BufWriter::with_capacity(64 * 1024, file),
            write,
            false,
        ),
        None => write_line(std::io::BufWriter::new(stdout.lock()), write, false),
    }
}

fn write_line(
    mut out: impl Write,
    write: &dyn Fn(&mut dyn Write, bool) -> serde_json::Result<()>,
    pretty: bool,
) {
    if write(&mut out, pretty).is_ok() {
        let _ = writeln!(out);
    }
    let _ = out.flush();
}

pub(crate) fn unknown_action(name: &str) -> Error {
    let known: Vec<&str> = actions::ACTIONS.iter().map(|a| a.meta.name).collect();
    Error::invalid(
        "",
        format!(
            "unknown action {name:?}; known actions: {} (see `msgraph-connector actions`)",
            known.join(", ")
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_envelope_fields_are_named() {
        let e = Envelope::parse(br#"{"asset":{},"inputs":{},"input":{}}"#).unwrap_err();
        assert_eq!(e.details[0].path, "/input");
    }

    #[test]
    fn oversized_input_is_refused_without_reading_it_all() {
        let endless = std::io::repeat(b' ');
        let e = Envelope::read(&EnvelopeSource::default(), endless).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.message.contains("larger than 32 MiB"));
    }

    #[test]
    fn invalid_utf8_is_invalid_input() {
        let e = Envelope::parse(b"{\"inputs\": {\"id\": \"\xff\"}}").unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.message.contains("UTF-8"));
    }
}
