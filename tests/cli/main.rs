//! The command line and its contract, through the real binary: the catalog, schemas
//! and pages in step with the code, bad input refused before any connection, every
//! documented example holding against the emulator, `demo`, and random envelopes
//! never panicking the runner.

mod contract;
mod demo;
mod examples;
mod export;
mod fuzz;
mod turbine;

#[path = "../support/mod.rs"]
pub mod support;
