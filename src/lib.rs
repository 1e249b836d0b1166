//! msgraph-connector: Microsoft Graph users, presence and sign-ins for
//! automation platforms.
//!
//! Data flows one way: [`cli`] -> [`runner`] -> [`actions`] -> [`graph`] ->
//! HTTP, with [`auth`] supplying tokens to the graph layer. [`emulator`] is the
//! built-in fake tenant; [`presence`] the IP-based office presence engine.

pub mod actions;
pub mod auth;
pub mod check;
pub mod cli;
pub mod demo;
pub mod error;
pub mod fastpath;
pub mod graph;
pub mod runner;
pub mod schema;

pub use error::{Error, ErrorKind, Result};
