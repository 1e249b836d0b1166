//! What can go wrong starting or configuring the emulator (the crate's public error).
//!
//! Error *answers* the emulator sends over HTTP (Graph's envelope, AADSTS bodies)
//! are in [`crate::http_error`].

use std::net::SocketAddr;

/// What can go wrong starting or configuring the emulator.
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    #[error("the emulator only listens on loopback addresses, not {0}")]
    NotLoopback(SocketAddr),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("tenant fixture {path}: {message}")]
    Fixture { path: String, message: String },
    #[error("invalid emulator setting: {0}")]
    Config(String),
    #[error("request log {path}: {source}")]
    Log {
        path: String,
        source: std::io::Error,
    },
}
