//! The emulator over real HTTP on 127.0.0.1: each strictness rule fails the
//! request it should, the way Graph and Entra ID do. One module per area.

mod auth;
mod faults;
mod fidelity;
mod lifecycle;
mod log;
mod member_of;
mod presence;
mod sign_ins;
mod token;
mod users;
