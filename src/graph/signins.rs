//! Incremental reading of `GET /auditLogs/signIns` that loses nothing and repeats nothing.
//!
//! Graph lists sign-ins newest first, filters on `createdDateTime` (`ge`, `le`),
//! gives at most 1,000 a page, forgets a `$skiptoken` between runs, and shows a
//! sign-in minutes (reportedly up to half an hour) *after* its `createdDateTime`.
//! A cursor "since the last run" therefore drops late sign-ins, and a plain
//! overlap repeats them. [`SignInCursor`] is the state that avoids both; [`pull`]
//! streams one run's new sign-ins to a callback (used by `pull_sign_ins`, and
//! meant for `sync_ip_presence` with its own callback); [`PullRun`] is the
//! cursor logic without any I/O, so it is tested on its own.
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
//! refused as `invalid_input` at `/state/...` (exit 2): a state that cannot be
//! trusted is never silently replaced by a full re-pull.

use std::collections::BTreeMap;
use std::time::Instant;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{ApiFamily, GraphClient, GraphPath, GraphRequest, ResponseHeaders};
use crate::error::{Error, ErrorKind, Result};

/// The version of the state JSON this build reads and writes.
pub const STATE_VERSION: u32 = 1;
/// Graph's largest `$top` for sign-ins.
pub const MAX_TOP: u32 = 1000;
/// Graph's signIns path.
pub const SIGN_INS_PATH: &str = "auditLogs/signIns";

/// A closed range of `createdDateTime` still to be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Backlog {
    pub from: Timestamp,
    pub until: Timestamp,
}

impl Backlog {
    fn contains(&self, t: Timestamp) -> bool {
        self.from <= t && t <= self.until
    }
}

/// Where incremental sign-in reading stands: small, bounded by the lookback window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignInCursor {
    pub version: u32,
    /// The newest `createdDateTime` delivered so far.
    pub cursor: Option<Timestamp>,
    /// Start of the live window; every id delivered at or after it is in `delivered`.
    pub window_start: Timestamp,
    /// An older range left unread by a run that stopped at `max_records`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backlog: Option<Backlog>,
    /// The user filter this state was built with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    /// Ids delivered inside the live window or the backlog, by `createdDateTime`.
    #[serde(default)]
    pub delivered: BTreeMap<Timestamp, Vec<String>>,
}

impl SignInCursor {
    /// A fresh cursor whose first run reads from `since`.
    pub fn start(since: Timestamp, filter: Option<String>) -> Self {
        SignInCursor {
            version: STATE_VERSION,
            cursor: None,
            window_start: floor_second(since),
            backlog: None,
            filter,
            delivered: BTreeMap::new(),
        }
    }

    /// Read a state printed by an earlier run. `pointer` names it in errors
    /// (`/state`); a wrong version or shape is `invalid_input`, never a silent restart.
    pub fn from_json(value: &Value, pointer: &str) -> Result<Self> {
        let Value::Object(map) = value else {
            return Err(Error::invalid(
                pointer,
                "is not a pull_sign_ins state (expected an object with a version); \
                 pass the state an earlier run printed, or none to start from `since`",
            ));
        };
        match map.get("version") {
            Some(v) if v.as_u64() == Some(u64::from(STATE_VERSION)) => {}
            Some(v) => {
                return Err(Error::invalid(
                    format!("{pointer}/version"),
                    format!(
                        "state version {v} is not supported (this build reads version {STATE_VERSION}); \
                         refusing rather than pulling everything again: remove the state and set \
                         `since` to where the old one stood"
                    ),
                ));
            }
            None => {
                return Err(Error::invalid(
                    format!("{pointer}/version"),
                    "is required: this is not a pull_sign_ins state",
                ));
            }
        }
        let cursor: SignInCursor = serde_json::from_value(value.clone()).map_err(|e| {
            Error::invalid(
                pointer,
                format!("is not a valid pull_sign_ins state (corrupted?): {e}"),
            )
        })?;
        if let Some(b) = cursor.backlog
            && b.from > b.until
        {
            return Err(Error::invalid(
                format!("{pointer}/backlog"),
                "is corrupted: `from` is after `until`",
            ));
        }
        if let Some((t, _)) = cursor
            .delivered
            .iter()
            .find(|(t, ids)| ids.is_empty() || !cursor.remembers(**t))
        {
            return Err(Error::invalid(
                format!("{pointer}/delivered"),
                format!(
                    "is corrupted: the entry at {t} lies outside the window and backlog, or is empty"
                ),
            ));
        }
        Ok(cursor)
    }

    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).expect("a cursor serialises")
    }

    /// Refuse an `until` that would cut into the backlog: the unread part would then be
    /// two ranges. A backlog never ends after the `until` of the run that left it, so
    /// this only happens when `until` moves back between runs. Errors are relative (`""`).
    pub fn check_until(&self, until: Option<Timestamp>) -> Result<()> {
        match (self.backlog, until.map(floor_second)) {
            (Some(b), Some(u)) if u < b.until => Err(Error::invalid(
                "",
                format!(
                    "is before {}, where the state's unread backlog ends (a run stopped at \
                     max_records there); give an `until` at or after it, or none",
                    b.until
                ),
            )),
            _ => Ok(()),
        }
    }

    /// How many ids the state remembers.
    pub fn remembered(&self) -> usize {
        self.delivered.values().map(Vec::len).sum()
    }

    fn remembers(&self, t: Timestamp) -> bool {
        t >= self.window_start || self.backlog.is_some_and(|b| b.contains(t))
    }

    fn is_delivered(&self, t: Timestamp, id: &str) -> bool {
        self.delivered
            .get(&t)
            .is_some_and(|ids| ids.iter().any(|x| x == id))
    }

    fn remember(&mut self, t: Timestamp, id: &str) {
        let ids = self.delivered.entry(t).or_default();
        if !ids.iter().any(|x| x == id) {
            ids.push(id.to_string());
        }
    }

    fn prune(&mut self) {
        let (start, backlog) = (self.window_start, self.backlog);
        self.delivered
            .retain(|t, _| *t >= start || backlog.is_some_and(|b| b.contains(*t)));
    }

    /// The live window's start for a run with this lookback.
    fn live_from(&self, lookback: SignedDuration) -> Timestamp {
        match self.cursor {
            Some(c) => self.window_start.max(floor_second(minus(c, lookback))),
            None => self.window_start,
        }
    }
}

/// `t - d`, saturating at the earliest timestamp.
fn minus(t: Timestamp, d: SignedDuration) -> Timestamp {
    t.checked_sub(d).unwrap_or(Timestamp::MIN)
}

/// A whole second at or before `t`: the unit of every bound we send.
pub fn floor_second(t: Timestamp) -> Timestamp {
    let s = t.as_second() - i64::from(t.subsec_nanosecond() < 0);
    Timestamp::from_second(s).unwrap_or(t)
}

/// Check a user `$filter` before it is ANDed with the time window: parentheses must
/// balance outside string literals (so it cannot close ours), quotes must close, and
/// it must not constrain `createdDateTime` itself. Errors are relative (`""`).
pub fn check_user_filter(filter: &str) -> Result<()> {
    let mut depth: i64 = 0;
    let mut in_string = false;
    let mut chars = filter.chars().peekable();
    let mut outside = String::new();
    while let Some(ch) = chars.next() {
        if in_string {
            if ch == '\'' {
                if chars.peek() == Some(&'\'') {
                    chars.next();
                } else {
                    in_string = false;
                }
            }
            continue;
        }
        match ch {
            '\'' => in_string = true,
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth < 0 {
                    return Err(Error::invalid("", "has a `)` without its `(`"));
                }
            }
            _ => {}
        }
        outside.push(ch);
    }
    if in_string {
        return Err(Error::invalid(
            "",
            "has an unclosed string literal (write a quote inside a literal as '')",
        ));
    }
    if depth != 0 {
        return Err(Error::invalid("", "has a `(` without its `)`"));
    }
    if outside.to_ascii_lowercase().contains("createddatetime") {
        return Err(Error::invalid(
            "",
            "must not constrain createdDateTime: the time window comes from `since`, `until` \
             and the state's cursor",
        ));
    }
    Ok(())
}

/// Whether `filter` has an `or` outside parentheses and string literals.
fn has_top_level_or(filter: &str) -> bool {
    let (mut depth, mut in_string, mut word) = (0i32, false, String::new());
    let mut chars = filter.chars().peekable();
    let mut found = false;
    let mut end_word = |word: &mut String, depth: i32| {
        found |= depth == 0 && word.eq_ignore_ascii_case("or");
        word.clear();
    };
    while let Some(ch) = chars.next() {
        if in_string {
            if ch == '\'' && chars.next_if_eq(&'\'').is_none() {
                in_string = false;
            }
            continue;
        }
        if ch.is_alphanumeric() || ch == '_' || ch == '/' || ch == '.' {
            word.push(ch);
            continue;
        }
        end_word(&mut word, depth);
        match ch {
            '\'' => in_string = true,
            '(' => depth += 1,
            ')' => depth -= 1,
            _ => {}
        }
    }
    end_word(&mut word, depth);
    found
}

/// One listing a run makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Window {
    pub from: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<Timestamp>,
    /// `backlog` or `live`.
    pub kind: WindowKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WindowKind {
    Backlog,
    Live,
}

impl Window {
    /// The `$filter` value: the window, ANDed with the user's filter when there is one.
    /// `and` binds tighter than `or`, so the user's filter is parenthesised only when it
    /// has a top-level `or` (Graph takes the parentheses; the emulator takes no groups).
    pub fn filter(&self, user: Option<&str>) -> String {
        let mut filter = format!("createdDateTime ge {}", self.from);
        if let Some(u) = self.until {
            filter.push_str(&format!(" and createdDateTime le {u}"));
        }
        match user {
            Some(f) if has_top_level_or(f) => format!("{filter} and ({f})"),
            Some(f) => format!("{filter} and {f}"),
            None => filter,
        }
    }

    /// The Graph request of this window.
    pub fn request(&self, user_filter: Option<&str>, top: u32) -> GraphRequest {
        GraphRequest::get(GraphPath::new(SIGN_INS_PATH), ApiFamily::AuditLogs)
            .query("$filter", self.filter(user_filter))
            .query("$top", top.clamp(1, MAX_TOP).to_string())
    }

    fn contains(&self, t: Timestamp) -> bool {
        t >= self.from && self.until.is_none_or(|u| t <= u)
    }
}

/// What one run is asked to do.
#[derive(Debug, Clone)]
pub struct PullOptions {
    /// How late a sign-in may become visible and still be delivered.
    pub lookback: SignedDuration,
    /// Read nothing created after this.
    pub until: Option<Timestamp>,
    /// Page size, 1..=1000.
    pub top: u32,
    /// Stop after delivering this many; the rest is left for the next run.
    pub max_records: Option<u64>,
    /// A progress line on stderr (the caller decides: only on a terminal).
    pub progress: bool,
}

impl Default for PullOptions {
    fn default() -> Self {
        PullOptions {
            lookback: SignedDuration::from_mins(30),
            until: None,
            top: MAX_TOP,
            max_records: None,
            progress: false,
        }
    }
}

/// Whether a record offered to [`PullRun::offer`] is new.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Deliver,
    /// Delivered by an earlier run (or earlier in this one).
    Duplicate,
    /// Outside the window asked for; a server answering beyond its filter.
    OutsideWindow,
}

/// The fields of a sign-in the cursor needs.
pub fn record_key(record: &Value) -> Result<(&str, Timestamp)> {
    let id = record.get("id").and_then(Value::as_str);
    let created = record.get("createdDateTime").and_then(Value::as_str);
    match (id, created) {
        (Some(id), Some(created)) => {
            let t: Timestamp = created.parse().map_err(|e| {
                Error::new(
                    ErrorKind::Graph,
                    format!("Graph returned sign-in {id} with an unreadable createdDateTime: {e}"),
                )
            })?;
            Ok((id, t))
        }
        _ => Err(Error::new(
            ErrorKind::Graph,
            "Graph returned a sign-in without `id` or `createdDateTime`; \
             they are needed to deliver each sign-in once",
        )),
    }
}

/// Counts of one run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PullStats {
    pub records: u64,
    pub pages: u64,
    pub duplicates_dropped: u64,
    pub outside_window: u64,
    /// More may remain: `max_records` stopped the run.
    pub truncated: bool,
}

/// One run's cursor logic with no I/O: ask it for windows, offer each window's records
/// in the order Graph lists them, end each window, and take the new cursor.
#[derive(Debug)]
pub struct PullRun {
    cursor: SignInCursor,
    lookback: SignedDuration,
    until: Option<Timestamp>,
    max_records: Option<u64>,
    backlog_tried: bool,
    live_tried: bool,
    current: Option<Window>,
    /// The current window was left before its end because `max_records` was reached.
    cut_short: bool,
    /// Newest delivered in the current window.
    newest: Option<Timestamp>,
    /// Oldest `createdDateTime` delivered in the current window and the ids at it.
    tail: Option<(Timestamp, Vec<String>)>,
    stats: PullStats,
}

impl PullRun {
    pub fn new(cursor: SignInCursor, options: &PullOptions) -> Self {
        PullRun {
            cursor,
            lookback: options.lookback,
            until: options.until.map(floor_second),
            max_records: options.max_records,
            backlog_tried: false,
            live_tried: false,
            current: None,
            cut_short: false,
            newest: None,
            tail: None,
            stats: PullStats::default(),
        }
    }

    fn full(&self) -> bool {
        self.max_records.is_some_and(|m| self.stats.records >= m)
    }

    /// The next window to list, or `None` when the run is over.
    pub fn next_window(&mut self) -> Option<Window> {
        assert!(self.current.is_none(), "end_window first");
        if self.full() {
            self.stats.truncated = true;
            return None;
        }
        if !self.backlog_tried {
            self.backlog_tried = true;
            if let Some(b) = self.cursor.backlog {
                // `check_until` made sure `until` does not cut into it.
                return self.open(Window {
                    from: b.from,
                    until: Some(b.until),
                    kind: WindowKind::Backlog,
                });
            }
        }
        if self.cursor.backlog.is_some() || self.live_tried {
            return None;
        }
        self.live_tried = true;
        let from = self.cursor.live_from(self.lookback);
        if self.until.is_some_and(|u| u < from) {
            return None;
        }
        self.open(Window {
            from,
            until: self.until,
            kind: WindowKind::Live,
        })
    }

    fn open(&mut self, window: Window) -> Option<Window> {
        self.current = Some(window);
        self.cut_short = false;
        self.newest = None;
        self.tail = None;
        Some(window)
    }

    /// Take one page of the current window, in Graph's order, handing each new record to
    /// `on_record`. `more` says whether a next page exists. Returns whether to read it:
    /// `false` at the last page, or when `max_records` stops the run inside the window.
    pub fn take_page<F>(&mut self, items: &[Value], more: bool, on_record: &mut F) -> Result<bool>
    where
        F: FnMut(&Value) -> Result<()>,
    {
        self.stats.pages += 1;
        for record in items {
            if self.full() {
                self.cut_short = true;
                return Ok(false);
            }
            let (id, created) = record_key(record)?;
            if self.offer(id, created) == Verdict::Deliver {
                on_record(record)?;
            }
        }
        if more && self.full() {
            self.cut_short = true;
            return Ok(false);
        }
        Ok(more)
    }

    /// The newest and the oldest `createdDateTime` delivered in the current window so far.
    pub fn span_read(&self) -> Option<(Timestamp, Timestamp)> {
        Some((self.newest?, self.tail.as_ref()?.0))
    }

    /// Judge the next record of the current window; a new one counts as delivered.
    fn offer(&mut self, id: &str, created: Timestamp) -> Verdict {
        let window = self.current.expect("offer inside a window");
        if !window.contains(created) {
            self.stats.outside_window += 1;
            return Verdict::OutsideWindow;
        }
        let in_tail = self
            .tail
            .as_ref()
            .is_some_and(|(t, ids)| *t == created && ids.iter().any(|x| x == id));
        if in_tail || self.cursor.is_delivered(created, id) {
            self.stats.duplicates_dropped += 1;
            return Verdict::Duplicate;
        }
        self.stats.records += 1;
        self.newest = Some(self.newest.map_or(created, |n| n.max(created)));
        match &mut self.tail {
            Some((t, ids)) if *t == created => ids.push(id.to_string()),
            Some((t, _)) if *t < created => {
                tracing::warn!(%created, tail = %t, "sign-ins not listed newest first");
            }
            _ => self.tail = Some((created, vec![id.to_string()])),
        }
        if self.keep_now(window, created) {
            self.cursor.remember(created, id);
        }
        Verdict::Deliver
    }

    /// Whether an id delivered now must be remembered beyond the current window's tail.
    fn keep_now(&self, window: Window, created: Timestamp) -> bool {
        match window.kind {
            // A later live window of this run re-reads what is at or after its start.
            WindowKind::Backlog => created >= self.cursor.window_start,
            WindowKind::Live => {
                let newest = self.cursor.cursor.max(self.newest);
                let start = match newest {
                    Some(n) => window.from.max(floor_second(minus(n, self.lookback))),
                    None => window.from,
                };
                created >= start
            }
        }
    }

    /// Close the current window after its last page, or after [`Self::take_page`]
    /// said to stop.
    pub fn end_window(&mut self) {
        let window = self.current.take().expect("end_window inside a window");
        let tail = self.tail.take();
        let complete = !self.cut_short;
        if !complete {
            self.stats.truncated = true;
        }
        // Where the unread part of a cut window ends: the oldest delivered second.
        let cut = (!complete)
            .then(|| tail.as_ref().map(|(t, _)| *t))
            .flatten();
        // Ids at the cut second are read again with the rest of it.
        if let (Some(_), Some((t, ids))) = (cut, &tail) {
            for id in ids {
                self.cursor.remember(*t, id);
            }
        }
        match window.kind {
            WindowKind::Backlog => {
                let old = self.cursor.backlog.expect("a backlog window has a backlog");
                self.cursor.backlog = match (complete, cut) {
                    (true, _) => None,
                    (false, Some(b)) => Some(Backlog {
                        from: old.from,
                        until: b,
                    }),
                    // Stopped before delivering anything in it: all of it remains.
                    (false, None) => Some(old),
                };
            }
            WindowKind::Live => {
                self.cursor.cursor = self.cursor.cursor.max(self.newest);
                let start = self.cursor.live_from(self.lookback).max(window.from);
                self.cursor.window_start = start;
                if let Some(b) = cut {
                    self.cursor.backlog = Some(Backlog {
                        from: window.from,
                        until: b,
                    });
                }
            }
        }
        self.cursor.prune();
    }

    /// The new cursor and the run's counts.
    pub fn finish(mut self) -> (SignInCursor, PullStats) {
        assert!(self.current.is_none(), "end_window first");
        self.cursor.prune();
        (self.cursor, self.stats)
    }

    pub fn stats(&self) -> &PullStats {
        &self.stats
    }

    pub fn cursor(&self) -> &SignInCursor {
        &self.cursor
    }
}

/// What [`pull`] gives back besides the records.
#[derive(Debug, Clone)]
pub struct PullOutcome {
    pub cursor: SignInCursor,
    pub stats: PullStats,
    pub windows: Vec<Window>,
    /// Headers of the last Graph response (request ids, throttling headers).
    pub headers: ResponseHeaders,
}

/// Read one run's new sign-ins and hand each to `on_record`, page by page (memory
/// stays flat). The returned cursor is the state to keep once the records are safe.
pub async fn pull<F>(
    graph: &GraphClient,
    cursor: SignInCursor,
    user_filter: Option<&str>,
    options: &PullOptions,
    mut on_record: F,
) -> Result<PullOutcome>
where
    F: FnMut(&Value) -> Result<()>,
{
    let mut run = PullRun::new(cursor, options);
    let mut windows = Vec::new();
    let mut headers = ResponseHeaders::new();
    let mut progress = options.progress.then(Progress::new);
    while let Some(window) = run.next_window() {
        windows.push(window);
        let mut pages = graph.pages(window.request(user_filter, options.top));
        while let Some(page) = pages.next_page().await.map_err(explain_forbidden)? {
            let more = run.take_page(&page.items, page.next_link.is_some(), &mut on_record)?;
            headers = page.headers;
            if let Some(p) = &mut progress {
                p.page(&window, run.span_read(), run.stats());
            }
            if !more {
                break;
            }
        }
        run.end_window();
    }
    if let Some(p) = &mut progress {
        p.show(run.stats(), true);
    }
    let (cursor, stats) = run.finish();
    Ok(PullOutcome {
        cursor,
        stats,
        windows,
        headers,
    })
}

/// A 403 from the sign-in log says why in Graph's words; add what to do about it.
pub fn explain_forbidden(e: Error) -> Error {
    if e.kind != ErrorKind::Graph || e.status_code != Some(403) {
        return e;
    }
    let hint = if e.code.as_deref() == Some("Authentication_RequestFromNonPremiumTenantOrB2CTenant")
    {
        "reading sign-in logs needs a tenant with Microsoft Entra ID P1 or P2 \
         (a free or B2C tenant cannot): license the tenant, or pull sign-ins from a tenant that has it"
    } else {
        "reading sign-in logs needs the application permissions AuditLog.Read.All and \
         Directory.Read.All with admin consent"
    };
    Error {
        message: format!("{} ({hint})", e.message),
        ..e
    }
}

/// The stderr progress line, for a person at a terminal.
struct Progress {
    started: Instant,
    last_shown: Option<Instant>,
    fraction: Option<f64>,
}

impl Progress {
    fn new() -> Self {
        Progress {
            started: Instant::now(),
            last_shown: None,
            fraction: None,
        }
    }

    /// Newest first: the share of the window's time span read so far gives the ETA.
    fn page(
        &mut self,
        window: &Window,
        span_read: Option<(Timestamp, Timestamp)>,
        stats: &PullStats,
    ) {
        if let Some((newest, at)) = span_read {
            let top = window.until.unwrap_or(newest);
            let span = top.duration_since(window.from).as_secs_f64();
            if span > 0.0 {
                let done = top.duration_since(at).as_secs_f64() / span;
                self.fraction = Some(done.clamp(0.0, 1.0));
            }
        }
        self.show(stats, false);
    }

    fn show(&mut self, stats: &PullStats, last: bool) {
        use std::io::Write;
        let now = Instant::now();
        if !last
            && self
                .last_shown
                .is_some_and(|t| now.duration_since(t).as_millis() < 250)
        {
            return;
        }
        self.last_shown = Some(now);
        let secs = now.duration_since(self.started).as_secs_f64().max(1e-3);
        let rate = stats.records as f64 / secs;
        let eta = match self.fraction {
            Some(f) if f > 0.01 && !last => {
                format!(", ETA {:.0} s", secs * (1.0 - f) / f)
            }
            _ => String::new(),
        };
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\rpull_sign_ins: {} records, {} pages, {} duplicates dropped, {rate:.0} records/s{eta}\x1b[K",
            stats.records, stats.pages, stats.duplicates_dropped
        );
        if last {
            let _ = writeln!(err);
        }
        let _ = err.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;
    use std::collections::HashMap;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn at(base: Timestamp, secs: i64) -> Timestamp {
        base.checked_add(SignedDuration::from_secs(secs)).unwrap()
    }

    /// A sign-in log as Graph serves it: newest first, late, in pages.
    struct Log {
        /// (id, created, visible from)
        records: Vec<(String, Timestamp, Timestamp)>,
    }

    impl Log {
        fn list(&self, now: Timestamp, w: &Window) -> Vec<Value> {
            let mut hits: Vec<_> = self
                .records
                .iter()
                .filter(|(_, c, v)| *v <= now && w.contains(*c))
                .collect();
            // Newest first; ties in whatever order (here: by id, descending).
            hits.sort_by(|a, b| b.1.cmp(&a.1).then(b.0.cmp(&a.0)));
            hits.iter()
                .map(|(id, c, _)| json!({"id": id, "createdDateTime": c.to_string()}))
                .collect()
        }

        /// One run at server time `now`, driven exactly as `pull` drives it.
        fn run(
            &self,
            now: Timestamp,
            cursor: SignInCursor,
            options: &PullOptions,
            out: &mut Vec<String>,
        ) -> (SignInCursor, PullStats) {
            let mut run = PullRun::new(cursor, options);
            let mut deliver = |r: &Value| {
                out.push(r["id"].as_str().unwrap().to_string());
                Ok(())
            };
            while let Some(w) = run.next_window() {
                let all = self.list(now, &w);
                let pages: Vec<&[Value]> = all.chunks(options.top as usize).collect();
                for (i, page) in pages.iter().enumerate() {
                    let more = i + 1 < pages.len();
                    if !run.take_page(page, more, &mut deliver).unwrap() {
                        break;
                    }
                }
                run.end_window();
            }
            let (c, s) = run.finish();
            // What is printed is what the next run reads.
            let c = SignInCursor::from_json(&c.to_json(), "/state").unwrap();
            (c, s)
        }
    }

    fn assert_exactly_once(log: &Log, delivered: &[String]) {
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for id in delivered {
            *seen.entry(id).or_default() += 1;
        }
        for (id, _, _) in &log.records {
            assert_eq!(seen.get(id.as_str()).copied().unwrap_or(0), 1, "{id}");
        }
        assert_eq!(seen.len(), log.records.len());
    }

    #[test]
    fn window_filter_and_user_filter() {
        let w = Window {
            from: ts("2026-01-01T00:00:00Z"),
            until: Some(ts("2026-01-02T00:00:00Z")),
            kind: WindowKind::Live,
        };
        assert_eq!(
            w.filter(Some("status/errorCode ne 0")),
            "createdDateTime ge 2026-01-01T00:00:00Z and createdDateTime le 2026-01-02T00:00:00Z and status/errorCode ne 0"
        );
        assert_eq!(
            w.filter(Some("appId eq 'a' OR appId eq 'b'")),
            "createdDateTime ge 2026-01-01T00:00:00Z and createdDateTime le 2026-01-02T00:00:00Z and (appId eq 'a' OR appId eq 'b')"
        );
        for f in [
            "(a eq 1 or b eq 2) and c eq 3",
            "appDisplayName eq 'x or y'",
            "orbit eq 1",
        ] {
            assert!(!has_top_level_or(f), "{f}");
        }
        assert!(has_top_level_or("a eq 'it''s' or b eq 1"));
        let open = Window { until: None, ..w };
        assert_eq!(open.filter(None), "createdDateTime ge 2026-01-01T00:00:00Z");
        let r = open.request(None, 5000);
        assert_eq!(r.path.as_str(), "auditLogs/signIns");
        assert_eq!(r.query[1], ("$top".to_string(), "1000".to_string()));
        assert_eq!(r.family, ApiFamily::AuditLogs);
    }

    #[test]
    fn user_filters_cannot_escape_or_move_the_window() {
        assert!(check_user_filter("status/errorCode ne 0").is_ok());
        assert!(check_user_filter("appDisplayName eq 'a (b'' c)'").is_ok());
        assert!(check_user_filter("x eq 1) or (true").is_err());
        assert!(check_user_filter("(x eq 1").is_err());
        assert!(check_user_filter("x eq 'open").is_err());
        assert!(check_user_filter("CreatedDateTime ge 2020-01-01T00:00:00Z").is_err());
        // Inside a literal it is only text.
        assert!(check_user_filter("userPrincipalName eq 'createdDateTime@x.com'").is_ok());
    }

    #[test]
    fn state_round_trips_and_refuses_other_versions_and_garbage() {
        let mut c = SignInCursor::start(ts("2026-01-01T00:00:00.7Z"), Some("x eq 1".into()));
        assert_eq!(c.window_start, ts("2026-01-01T00:00:00Z"));
        c.cursor = Some(ts("2026-01-01T01:00:00Z"));
        c.remember(ts("2026-01-01T00:59:00Z"), "a");
        c.remember(ts("2026-01-01T00:59:00Z"), "b");
        let v = c.to_json();
        assert_eq!(v["delivered"]["2026-01-01T00:59:00Z"], json!(["a", "b"]));
        assert_eq!(SignInCursor::from_json(&v, "/state").unwrap(), c);

        let mut old = v.clone();
        old["version"] = json!(0);
        let e = SignInCursor::from_json(&old, "/state").unwrap_err();
        assert_eq!(
            (e.exit_code(), e.details[0].path.as_str()),
            (2, "/state/version")
        );
        for bad in [
            json!("x"),
            json!({}),
            json!({"version": 1, "window_start": "yesterday"}),
            json!({"version": 1, "window_start": "2026-01-01T00:00:00Z", "cursor": null, "extra": 1}),
            json!({"version": 1, "window_start": "2026-01-02T00:00:00Z", "cursor": null,
                   "delivered": {"2026-01-01T00:00:00Z": ["old"]}}),
        ] {
            let e = SignInCursor::from_json(&bad, "/state").unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad}");
            assert!(e.details[0].path.starts_with("/state"), "{bad}");
        }
    }

    #[test]
    fn late_sign_ins_across_runs_are_delivered_once() {
        let base = ts("2026-03-01T08:00:00Z");
        // Two per minute for three hours, visible 0..25 minutes late.
        let records = (0..360)
            .map(|i| {
                let c = at(base, i * 30);
                let late = (i * 7919) % (25 * 60);
                (format!("s{i:04}"), c, at(c, late))
            })
            .collect();
        let log = Log { records };
        let options = PullOptions::default();
        let mut cursor = SignInCursor::start(base, None);
        let mut out = Vec::new();
        // A run every 20 minutes, well past the last visibility.
        for k in 1..=12 {
            let (c, _) = log.run(at(base, k * 20 * 60), cursor, &options, &mut out);
            cursor = c;
            // Bounded: ids of the lookback window only.
            assert!(cursor.remembered() <= 2 * 31 + 2, "{}", cursor.remembered());
        }
        assert_exactly_once(&log, &out);
    }

    #[test]
    fn equal_timestamps_across_a_page_boundary_and_a_cut() {
        let base = ts("2026-03-01T08:00:00Z");
        // Seven sign-ins in the same second, pages of three, max_records cutting at two.
        let records = (0..7)
            .map(|i| (format!("e{i}"), base, base))
            .chain([("late".to_string(), at(base, -1), at(base, 5))])
            .collect();
        let log = Log { records };
        let options = PullOptions {
            top: 3,
            max_records: Some(2),
            ..PullOptions::default()
        };
        let mut cursor = SignInCursor::start(at(base, -60), None);
        let mut out = Vec::new();
        let mut truncated_runs = 0;
        for k in 0..8 {
            let (c, s) = log.run(at(base, k), cursor, &options, &mut out);
            truncated_runs += u32::from(s.truncated);
            cursor = c;
        }
        assert!(truncated_runs >= 3);
        assert!(cursor.backlog.is_none());
        assert_exactly_once(&log, &out);
    }

    #[test]
    fn max_records_backfills_from_new_to_old_reading_each_page_once() {
        let base = ts("2026-03-01T00:00:00Z");
        let records = (0..1000)
            .map(|i| (format!("b{i:04}"), at(base, i * 60), at(base, i * 60)))
            .collect();
        let log = Log { records };
        let options = PullOptions {
            top: 100,
            max_records: Some(250),
            ..PullOptions::default()
        };
        let now = at(base, 2000 * 60);
        let mut cursor = SignInCursor::start(base, None);
        let (mut out, mut pages, mut runs) = (Vec::new(), 0, 0);
        loop {
            let (c, s) = log.run(now, cursor, &options, &mut out);
            cursor = c;
            pages += s.pages;
            runs += 1;
            assert!(cursor.remembered() <= 40, "{}", cursor.remembered());
            if !s.truncated {
                break;
            }
        }
        assert_exactly_once(&log, &out);
        assert!(runs <= 6, "{runs}");
        // Ten pages of data, plus the pages re-read where a cut fell inside one,
        // plus the final live-window pages.
        assert!(pages <= 18, "{pages}");
    }

    #[test]
    fn until_leaves_newer_sign_ins_for_later_and_cannot_move_back_into_a_backlog() {
        let base = ts("2026-03-01T00:00:00Z");
        let records = (0..100)
            .map(|i| (format!("u{i:03}"), at(base, i * 60), at(base, i * 60)))
            .collect();
        let log = Log { records };
        let now = at(base, 200 * 60);
        let until = at(base, 50 * 60);
        let mut out = Vec::new();
        let first = PullOptions {
            until: Some(until),
            max_records: Some(20),
            ..PullOptions::default()
        };
        let (c, s) = log.run(now, SignInCursor::start(base, None), &first, &mut out);
        assert!(s.truncated);
        assert!(out.iter().all(|id| id.as_str() <= "u050"));
        assert!(c.check_until(Some(at(base, 10 * 60))).is_err());
        assert!(c.check_until(Some(until)).is_ok());
        let (c, _) = log.run(
            now,
            c,
            &PullOptions {
                max_records: None,
                ..first
            },
            &mut out,
        );
        assert_eq!(out.len(), 51);
        let (_, _) = log.run(now, c, &PullOptions::default(), &mut out);
        assert_exactly_once(&log, &out);
    }

    #[test]
    fn outside_window_and_missing_fields() {
        let mut run = PullRun::new(
            SignInCursor::start(ts("2026-01-01T00:00:00Z"), None),
            &PullOptions::default(),
        );
        run.next_window().unwrap();
        let items = [json!({"id": "old", "createdDateTime": "2025-12-31T23:59:59Z"})];
        let mut n = 0;
        run.take_page(&items, false, &mut |_| {
            n += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!((n, run.stats().outside_window), (0, 1));
        let e = run
            .take_page(&[json!({"id": "x"})], false, &mut |_| Ok(()))
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Graph);
    }

    #[test]
    fn forbidden_explains_licence_or_permission() {
        let e = explain_forbidden(
            Error::graph(
                403,
                "Neither tenant is B2C or tenant doesn't have premium license",
            )
            .with_code("Authentication_RequestFromNonPremiumTenantOrB2CTenant"),
        );
        assert!(e.message.contains("Entra ID P1 or P2"));
        assert_eq!(
            e.code.as_deref(),
            Some("Authentication_RequestFromNonPremiumTenantOrB2CTenant")
        );
        let e = explain_forbidden(
            Error::graph(403, "Insufficient privileges").with_code("Authorization_RequestDenied"),
        );
        assert!(
            e.message.contains("AuditLog.Read.All") && e.message.contains("Directory.Read.All")
        );
        assert_eq!(e.exit_code(), 4);
        assert_eq!(explain_forbidden(Error::graph(404, "x")).message, "x");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Whatever the arrival delays (within the lookback), run times, page sizes,
        /// `max_records` and equal timestamps: every sign-in exactly once.
        #[test]
        fn exactly_once_whatever_the_schedule(
            recs in prop::collection::vec((0i64..7200, 0i64..=1800), 0..300),
            gaps in prop::collection::vec(1i64..1500, 1..15),
            top in 1u32..50,
            max in prop::option::of(1u64..80),
            lookback_min in 30i64..45,
        ) {
            let base = ts("2026-03-01T00:00:00Z");
            let records: Vec<_> = recs
                .iter()
                .enumerate()
                // Coarse seconds: many equal timestamps.
                .map(|(i, (c, late))| {
                    let c = at(base, c - c % 5);
                    (format!("p{i:04}"), c, at(c, *late))
                })
                .collect();
            let log = Log { records };
            let options = PullOptions {
                lookback: SignedDuration::from_mins(lookback_min),
                top,
                max_records: max,
                ..PullOptions::default()
            };
            let mut cursor = SignInCursor::start(base, None);
            let mut out = Vec::new();
            let mut now = base;
            for g in gaps {
                now = at(now, g);
                let (c, _) = log.run(now, cursor, &options, &mut out);
                cursor = c;
            }
            // Then later, until drained.
            let end = at(base, 7200 + 1800 + 1);
            for _ in 0..1000 {
                let (c, s) = log.run(end, cursor, &options, &mut out);
                cursor = c;
                if !s.truncated { break; }
            }
            assert_exactly_once(&log, &out);
        }
    }
}
