//! The emulator's integration tests, one binary: `http` (the emulator over real HTTP,
//! one module per area) and `tenant` (fixtures and the generator), sharing `support`.

mod http;
mod support;
mod tenant;
