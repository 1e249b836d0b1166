//! What the three test binaries (`cli`, `actions`, `graph`) share:
//! - [`process`]: run the real binary as a platform would, and read what it printed;
//! - [`emulator`]: the built-in emulator on 127.0.0.1, set up per test
//!   ([`emulator::EmulatorSetup`]), with its request log and the tenant it serves;
//! - [`fake`]: a scripted server for the few cases no faithful tenant produces;
//! - [`assertions`]: the error shapes of the contract, the request log as lines, no secret
//!   in the output.
//!
//! Each binary includes this tree as `pub mod support`: its items are public, so a
//! helper one binary leaves unused is not dead code.

pub mod assertions;
pub mod emulator;
pub mod fake;
pub mod postgres;
pub mod presence_day;
pub mod process;
