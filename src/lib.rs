//! msgraph-connector: Microsoft Graph users, presence and sign-ins for automation platforms.
pub mod emulator;
pub mod presence;
