//! The actions end to end: the real binary against the emulator over HTTP on
//! 127.0.0.1, asserting the exact requests made.
//!
//! `sign_ins_bench` holds whole-job benchmarks, ignored by default (see its doc).

mod containment;
mod directory;
mod fidelity;
mod hardening;
mod ip_presence;
mod photos;
mod presence;
mod publisher;
mod sign_ins;
mod sign_ins_bench;
mod sign_ins_state;
mod user_status;
mod watch;

#[path = "../support/mod.rs"]
pub mod support;
