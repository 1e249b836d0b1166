//! msgraph-connector: Microsoft Graph users, presence and sign-ins for
//! automation platforms.
//!
//! Layers, lowest first; each uses only those before it:
//! - [`asset`]: the connection profile (Graph URL, cloud, credentials, proxy,
//!   timeouts, retry and pacing settings), parsed from the envelope's asset;
//! - [`http`]: the one reqwest client, transport errors in words, retry budget;
//! - [`auth`]: bearer tokens from the token endpoint, cached on disk;
//! - [`backend`]: the state shared with other processes (embedded SQLite in the
//!   state dir, or PostgreSQL by `--state-url`): the pacer's budgets;
//! - [`graph`]: Graph requests with pacing, retries, auth and paging;
//! - use cases over Graph and local state: [`signins`] (incremental sign-in
//!   reading: cursor, windows, the pull), [`office`] (IP-based office presence:
//!   configuration, sync, manual changes, who is where), kept in [`state`] (a
//!   small SQLite key-value database) and written through [`jsonl`]; [`users`]
//!   (changing a user, and naming the directory role a refusal lacks); [`photos`]
//!   (the nightly profile photo sync into a folder with its manifest); [`publisher`]
//!   (presence published as an application: Graph's rules and the five writes);
//!   [`presences`] (many users' presences in 650-id chunks, UPNs resolved) and
//!   [`watch`] (continuous presence collection: changes only);
//! - [`actions`]: what users call, one file each, validated against their schemas:
//!   input -> one call -> output;
//! - [`runner`] (envelope in, result out) and [`cli`] on top; [`turbine`]
//!   (Swimlane Turbine's flat-object protocol) feeds the runner's path; [`check`],
//!   [`demo`] and [`export`] (platform packages from the action list) are commands
//!   beside `run`.
//!
//! [`mcp`] serves the catalog as a Model Context Protocol server.
//! [`error`], [`schema`], [`redact`] (server text scrubbed of secrets), [`progress`] and
//! [`owner_only`] (state kept private on disk) serve every layer. Lower layers report JSON
//! pointers relative to what they were given; the runner and the action entry
//! point place them in the envelope. The IP presence engine and the fake
//! tenant are crates of their own (`ip-presence`, `graph-emulator`).

pub mod actions;
pub mod asset;
pub mod auth;
pub mod backend;
pub mod check;
pub mod cli;
pub mod demo;
pub mod error;
pub mod export;
pub mod fastpath;
pub mod graph;
pub mod http;
pub mod inputs;
pub mod jsonl;
pub mod mcp;
pub mod office;
pub mod photos;
pub mod presences;
pub mod progress;
pub mod publisher;
pub mod redact;
pub mod runner;
pub mod schema;
pub mod signins;
pub mod state;
pub mod status;
pub mod turbine;
pub mod users;
pub mod watch;

pub use error::{Error, ErrorKind, Result};
/// Owner-only files and folders, shared with the presence store (one rule, one place).
pub use ip_presence::owner_only;
