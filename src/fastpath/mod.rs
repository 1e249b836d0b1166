//! Hand-tuned code for `get_presences`, the hot path of a dashboard refreshing
//! thousands of people, kept in one place so it can be read, proved equal to the
//! plain way and timed on its own.
//!
//! - [`guid`]: an object id as a `u128` (a table instead of `uuid`'s parser), and
//!   [`guid::IdSet`] / [`guid::IdMap`] hashing those numbers with foldhash (keyed per process)
//!   instead of SipHash.
//! - [`presence_scan`]: a `getPresencesByUserId` answer as `(id, raw presence)`
//!   pairs; each id is found by a byte scan instead of a second parse, and each
//!   presence is kept as the JSON Graph sent instead of a tree to re-serialise.
//!
//! Each is tested here against the plain path (`uuid`, serde_json), proptests
//! included, and timed against it by the `fastpath` group of
//! `benches/get_presences.rs`. This module uses nothing else of the crate.

pub mod guid;
pub mod presence_scan;
