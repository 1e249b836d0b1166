//! The layers under the actions against the emulator on 127.0.0.1: HTTP (retries,
//! paging, pacing, lost connections) and auth (token requests, the token cache,
//! secrets staying secret); the state shared by processes (the pacer, the IP presence
//! store on SQLite and on PostgreSQL).

mod auth;
mod batch;
mod fidelity;
mod http;
mod presence_store;
mod shared_state;

#[path = "../support/mod.rs"]
pub mod support;
