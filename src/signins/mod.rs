//! Incremental reading of `GET /auditLogs/signIns` that loses nothing and repeats nothing.
//!
//! Graph lists sign-ins newest first, filters on `createdDateTime` (`ge`, `le`),
//! gives at most 1,000 a page, forgets a `$skiptoken` between runs, and shows a
//! sign-in minutes (reportedly up to half an hour) *after* its `createdDateTime`.
//! A cursor "since the last run" therefore drops late sign-ins, and a plain
//! overlap repeats them. The module map:
//!
//! - [`event_type`]: which sign-ins (interactive on v1.0, the others on beta);
//! - [`cursor`]: [`SignInCursor`], the state that avoids both, and where it is kept
//!   between runs (the envelope's `state`, or the [`crate::state`] database);
//! - [`filter`]: checking a caller's `$filter` before it is ANDed with the window;
//! - [`run`]: window planning, [`PullRun`]: the cursor logic without any I/O, tested
//!   on its own;
//! - [`pull()`]: one run against Graph, streaming each new sign-in to a callback
//!   (`pull_sign_ins` writes them out, `sync_ip_presence` feeds the presence engine).
//!
//! # Cursor semantics
//!
//! Only the data and the windows we asked for move the cursor, never a clock:
//! the emulator runs a virtual clock and a real tenant's clock is not ours.
//! `L` is the lookback (`lookback_minutes`, 30 by default). The state holds
//!
//! * `cursor`: the newest `createdDateTime` ever delivered (none yet: `null`);
//! * `window_start`: the start of the *live window*; every id delivered at or
//!   after it is in `delivered`;
//! * `backlog`: an older range `[from, until]` still to be read, left by a run
//!   that stopped at `max_records` (see below); the ids delivered inside it are
//!   in `delivered` too;
//! * `delivered`: those ids, grouped by `createdDateTime`, and nothing older.
//!
//! A run reads the backlog (if any), then the live window
//! `createdDateTime ge max(window_start, floor(cursor - L))`, drops ids already
//! delivered, delivers the rest, and moves `cursor` to the newest delivered
//! record and `window_start` to `max(its start, floor(cursor - L))`, pruning
//! older ids. Bounds are whole seconds and the pruning uses the very bound the
//! next query will use, so an id can only come back while it is remembered.
//!
//! Why nothing is lost: a sign-in created at `c` and visible from `v <= c + L`.
//! Every record delivered before `v` was visible before `v`, so was created
//! before `v`; the cursor then is `< v <= c + L`, and the first run after `v`
//! starts its live window at or before `cursor - L < c`. Why nothing repeats:
//! an id returned again lies at or after the window start, where every
//! delivered id is remembered. This holds whatever the server clock, page size,
//! equal timestamps on page boundaries or number of runs.
//!
//! # `max_records` and the newest-first order
//!
//! A run that reaches `max_records` has delivered the newest part of its window
//! down to some `createdDateTime` `b`; everything newer than `b` visible then was
//! delivered, everything at or before `b` may not be. The range `[window from, b]`
//! becomes the `backlog` (ids at `b` are kept, for sign-ins sharing that second
//! across the cut), the cursor still moves to the newest delivered record, and the
//! next run drains the backlog before it looks at the live window. So a large
//! backfill proceeds in `max_records` slices from new to old, each page read once.
//!
//! # `until`
//!
//! `until` bounds the live window (`le until`); records after it are left for a
//! later run. The live window is read only once no backlog remains. A backlog never
//! ends after the `until` of the run that left it; an `until` moved back before
//! the end of a backlog is refused ([`SignInCursor::check_until`]) rather than
//! splitting the unread part in two.
//!
//! # The user filter
//!
//! `$filter` is `createdDateTime ge A[ and createdDateTime le B] and F`, with `F`
//! parenthesised when it has a top-level `or` (`and` binds tighter, so otherwise
//! the two are the same, and the emulator takes no groups). `F` is checked first
//! ([`check_user_filter`]): parentheses must balance outside string literals and
//! quotes must close, so it cannot break out of the AND (`x) or (true`); and it must not
//! mention `createdDateTime`, since the window is the cursor's business (`since`,
//! `until`) and a second time condition would make the cursor's claims about
//! what was read untrue. The filter is part of the state: a state built with one
//! filter is refused with another (it says nothing about records the old filter
//! excluded).
//!
//! A larger `lookback_minutes` than the one the state was built with widens the
//! window only as the cursor advances: ids older than the stored `window_start`
//! were already forgotten.
//!
//! # State JSON
//!
//! ```json
//! {"version": 1,
//!  "cursor": "2026-03-02T10:14:59Z",
//!  "window_start": "2026-03-02T09:44:59Z",
//!  "backlog": {"from": "2026-03-01T10:00:00Z", "until": "2026-03-02T01:12:07Z"},
//!  "filter": "status/errorCode ne 0",
//!  "delivered": {"2026-03-02T09:45:03.120Z": ["7d1c...", "9a0e..."], "...": ["..."]}}
//! ```
//!
//! `backlog` and `filter` are absent when there is none. Any other `version`, an
//! unknown field, a bad time, or an id group outside the window and backlog is
//! refused as `invalid_input` (exit 2; the action places the pointer under `/state`): a state that cannot be
//! trusted is never silently replaced by a full re-pull.

pub mod cursor;
pub mod event_type;
pub mod filter;
mod pull;
pub mod run;
#[cfg(test)]
mod tests;

pub use cursor::{
    Backlog, CursorOf, KeptCursor, MULTI_STATE_VERSION, STATE_VERSION, SignInCursor, SignInCursors,
    cursor_key, floor_second,
};
pub use event_type::EventType;
pub use filter::check_user_filter;
pub use pull::{
    LostSpan, PullEachOutcome, PullOutcome, RETENTION, explain_forbidden, pull, pull_each,
    server_time,
};
pub use run::{
    MAX_TOP, PullOptions, PullRun, PullStats, SIGN_INS_PATH, Verdict, Window, WindowKind,
    record_key,
};
