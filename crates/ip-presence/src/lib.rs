//! IP-based office presence (the rules: `shared/docs/ip-presence.md`).
//!
//! Modules, lowest first (each uses only modules above it):
//!
//! - `config` ([`PresenceConfig`], CIDR parsing), `ranges` ([`IpRangeTable`]), `signin`
//!   ([`SignIn`] parsing), `error` ([`PresenceError`]);
//! - `calendar` (instants, a sign-in's day in a zone), `model` (places, timelines, events,
//!   reports), `backend` (the [`PresenceBackend`] trait a state store implements);
//! - `classify` (a sign-in's user, range and day, or why it is discarded), `engine`
//!   ([`PresenceEngine`]: batches over a backend), `file` (files of sign-ins,
//!   [`JsonLinesBackend`]);
//! - the backends: `memory` ([`MemoryState`]; its JSON state; its two-thread file reader,
//!   through partition files by user)
//!   and `store` ([`PresenceStore`], SQLite);
//! - [`owner_only`]: state dir 0700 and files 0600, created and tightened (the connector
//!   uses it too).
//!
//! Every sign-in records the public address the user came from. Where that address is in
//! a configured office range the user is in that office; where it is in a range marked
//! remote, the user is remote. This crate is a pure library: configuration
//! ([`PresenceConfig`]), the range table ([`IpRangeTable`]), the engine
//! ([`PresenceEngine`]), and two places to keep its state: [`MemoryState`] (round-tripped
//! as JSON through an action's `state`) and [`PresenceStore`] (SQLite under a state dir).
//!
//! # Processing
//!
//! Only `id`, `createdDateTime`, `ipAddress`, `userPrincipalName` and `status.errorCode`
//! are read ([`SignIn`]); everything else is skipped on arrival and never stored. In order:
//! failed sign-ins are discarded unless `count_failed_sign_ins`; unknown and inactive
//! users are discarded; an address in no range is discarded, or with `auto_create`
//! counted toward the [`DiscoveryBlock`] report (its /24 or /48); a sign-in whose
//! calendar day is older than the late-arrival window is discarded as too late; an id
//! already processed is discarded as a duplicate. A matched sign-in then yields an
//! [`AccessEvent`] (user, address, date; at most one per user, address and day) when
//! logging is on app-wide and for the range, and an observation of the user at the range's
//! place when the range has presence on and the user's mode is not `off`. Every discard
//! is counted by reason ([`Discarded`]).
//!
//! A sign-in's calendar day is taken in the time zone of the matched range's location
//! (`settings.location_time_zones`), else `settings.time_zone` (UTC by default); an
//! unmatched address uses the default zone.
//!
//! # What a presence event is, given late arrival
//!
//! For each user and calendar day the engine keeps every observation (time, range) and
//! every manual change of that day. The day's **timeline** is these in time order (ties:
//! sign-ins before manual changes, then by range name or administrator), starting from
//! "nowhere". A **presence event** is an element of the timeline that changes the status
//! (a different place, or a manual clear/set that differs); it carries the time of the
//! sign-in (or manual change) that caused it, never the time it was processed. A later
//! sign-in from the same place emits nothing; a manual change holds until the next
//! sign-in from a different place.
//!
//! The set of presence events of a day is therefore a function of the set of sign-ins,
//! whatever their arrival order or batching. When a late sign-in changes that set, the
//! batch reports the difference: new events in [`BatchReport::presence_events`] and the
//! events that no longer hold in [`BatchReport::superseded_events`] (the store deletes
//! them). Example: A@9:00 and B@10:00 give events A@9:00, B@10:00; a late B@9:30
//! supersedes B@10:00 with B@9:30; a later A@9:45 emits A@9:45 and brings back B@10:00.
//! Re-processing a sign-in id changes nothing.
//!
//! Order independence holds within the late-arrival window
//! ([`ProcessOptions::late_window_days`], default 2 days before today in UTC): older
//! observations are pruned, and sign-ins for such days are discarded as too late.
//!
//! # Streamed events
//!
//! [`PresenceEngine::process_to`] and [`PresenceEngine::process_file_to`] hand every
//! event to an [`EventSink`] the moment it is found (access events as the sign-ins are
//! read, a day's presence events and status when the day is recomputed), so a batch never
//! holds its events; [`BatchReport`] is the sink that collects and sorts them. A sink
//! that can ([`EventSink::fork`]) gives each of the engine's threads a fork of its own,
//! which deals with the thread's events there; other sinks are shared under a lock.
//!
//! # Replay
//!
//! A file read with [`ProcessOptions::replay`] (by [`MemoryState`]; the store ignores the
//! option) is a replay of the past: "today" for the late-arrival window is the furthest
//! day the reading has reached (in blocks of 64 MiB; oldest-first and newest-first files
//! are told apart by their first and last lines), never after `now`. A sign-in more than
//! `late_window_days` behind it is too late; a day that far behind is settled after the
//! block: its events and status are reported and it is forgotten unless the window of
//! `now` keeps it for the state. Memory then holds the window and one block, whatever
//! the number of days; the state returned holds only the days of `now`'s window. The
//! result equals a run with a window covering the whole file (and `now` at its end)
//! whenever no sign-in is more than the window behind the sign-ins before it.
//!
//! A window still holds every sign-in of its days, so memory follows the sign-ins per
//! day. A replay of a state given a [`Spill`] ([`MemoryState::spill_to`]) keeps them on
//! disk instead: the blocks are read and classified as above, but each candidate goes to
//! a partition file of its user (48 bytes), and the partitions are then applied a few
//! users at a time, with the same settling after each block, their remaining days written
//! to the spill's days file (a user-day a line) and forgotten. Events, counts and state
//! are those of the replay held in memory (the events in another order); memory holds
//! the window of two partitions (one per 16 MiB of sign-ins, up to 64) and no longer
//! depends on the sign-ins per day.
//!
//! # State JSON (stateless mode)
//!
//! [`MemoryState::to_json`] / [`MemoryState::from_json`]:
//!
//! ```json
//! {"version": 2,
//!  "places": [["HQ wifi", {"kind": "office", "location": "Berlin"}], ["VPN", {"kind": "remote"}]],
//!  "days": [{"date": "2024-05-01",
//!            "users": {"alice@contoso.com": {
//!               "seen": "<FNV-1a of each sign-in id, 16 hex digits each, sorted, concatenated>",
//!               "access": ["10.1.2.3"],
//!               "obs": "25200000:0,1800000:1",
//!               "overrides": [{"at_ms": 1714557600000, "place": null, "set_by": "admin"}]}}}],
//!  "discovery": [["203.0.113.0/24", "203.0.113.9", "bob@contoso.com", 3]]}
//! ```
//!
//! `obs` is the day's observations, sorted, as `milliseconds:place` entries: the
//! milliseconds since the entry before (the first: since the day's start, UTC), the place
//! an index into `places`. Version 1 wrote `[[milliseconds since the epoch, place]]`
//! pairs, about twelve times the memory when built; version 1 states are still read.
//! The state grows with the sign-ins of the days `now`'s late-arrival window holds
//! (about 27 bytes a sign-in: 16 for its id's hash, about 11 for its observation), not
//! with the days read before them.
//!
//! A spilled replay ([`Spill`]) writes those days to a file instead, one user-day a line
//! (`{"date": ..., "user": ..., "seen": ..., "access": ..., "obs": ..., "overrides": ...}`,
//! `obs` places indexing `places`, which then lists every place in its own order), then
//! the discovery counts, one a line (`{"discovery": ["203.0.113.0/24", "203.0.113.9",
//! "bob@contoso.com", 3]}`), and the state names the file: `{"version": 3, "places":
//! [...], "days": [], "days_file": {"path": "...", "lines": 33388}}`. Such a state is
//! bounded by the places; reading it reads the file, which must hold `lines` lines.
//! Earlier releases refuse version 3.
//!
//! # Known limits
//!
//! - A user who uses no Microsoft service from the office is not seen.
//! - A device left on in the office can authenticate in the background while its owner is
//!   away: a false presence.
//! - Remote desktop into an office machine looks like presence.
//! - Where several offices egress through one proxy or VPN address, they cannot be told
//!   apart.
//! - Sign-ins arriving after the late-arrival window no longer change anything.

mod backend;
mod calendar;
mod classify;
mod config;
mod engine;
mod error;
mod file;
mod memory;
mod model;
pub mod owner_only;
mod ranges;
mod signin;
pub mod sqlite_wal;
mod store;
pub mod unique_keys;

pub use backend::{Observation, PresenceBackend, RangeRef, SeenSignIn, UserRef, id_hash};
pub use calendar::{MAX_MS, MIN_MS, is_valid_ms, parse_timestamp_ms};
pub use config::{
    ConfigError, IpRange, MAX_CONFIG_BYTES, PresenceConfig, PresenceMode, Settings, TrackedUser,
    normalise_upn, parse_cidr,
};
pub use engine::PresenceEngine;
pub use error::PresenceError;
pub use file::JsonLinesBackend;
pub use memory::{DISCOVERY_KEYS, MemoryState, Spill};
pub use model::{
    AccessEvent, BatchReport, Counts, DayChange, Discarded, DiscoveryBlock, EventSink, EventSource,
    Override, Place, PresenceEvent, ProcessOptions, REPLAY_BLOCK, TimelineItem, Transition,
    UserDayStatus, diff, transitions,
};
pub use ranges::{IpRangeTable, RangeMatch, canonical_ip, suggested_block};
pub use signin::{
    SignIn, SignInParseError, SignInStatus, for_each_in_array, for_each_json_line, is_json_array,
    parse_all, parse_sign_in,
};
pub use store::{
    LocationPresence, OccupancyDay, PresenceStore, SCHEMA_VERSION, UserPresence, WhoIsWhere,
    place_columns, place_from_columns, place_is, prune_cutoffs, recompute_day, who_is_where_of,
};
