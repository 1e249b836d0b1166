//! The presence engine's tests, one binary: configuration, the rules one by one, order
//! independence, the SQLite store, and reading sign-in files.

// The benchmark's seeded data generator.
#[path = "../../benches/support/data.rs"]
mod data;

mod config;
mod file;
mod order;
mod rules;
mod store;
mod support;
