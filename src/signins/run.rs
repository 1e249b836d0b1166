//! One run's plan and bookkeeping without I/O: the windows to list ([`Window`]), and
//! [`PullRun`], which judges each record Graph returns and moves the cursor.

use jiff::{SignedDuration, Timestamp};
use serde::Serialize;
use serde_json::Value;

use super::cursor::{Backlog, SignInCursor, floor_second, minus};
use super::event_type::EventType;
use super::filter::has_top_level_or;
use crate::asset::ApiVersion;
use crate::error::{Error, ErrorKind, Result};
use crate::graph::{ApiFamily, GraphPath, GraphRequest};

/// Graph's largest `$top` for sign-ins.
pub const MAX_TOP: u32 = 1000;
/// Graph's signIns path.
pub const SIGN_INS_PATH: &str = "auditLogs/signIns";

/// One listing a run makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Window {
    pub from: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<Timestamp>,
    /// `backlog` or `live`.
    pub kind: WindowKind,
    /// The sign-ins it lists.
    pub event_type: EventType,
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
        let mut filter = match self.event_type {
            EventType::InteractiveUser => String::new(),
            t => format!("signInEventTypes/any(t: t eq '{}') and ", t.as_str()),
        };
        filter.push_str(&format!("createdDateTime ge {}", self.from));
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
        let request = GraphRequest::get(GraphPath::new(SIGN_INS_PATH), ApiFamily::AuditLogs)
            .query("$filter", self.filter(user_filter))
            .query("$top", top.clamp(1, MAX_TOP).to_string());
        match self.event_type {
            EventType::InteractiveUser => request,
            _ => request.api_version(ApiVersion::Beta),
        }
    }

    pub(super) fn contains(&self, t: Timestamp) -> bool {
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
    event_type: EventType,
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
            event_type: EventType::InteractiveUser,
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

    /// The same run over sign-ins of `event_type` (default: interactive).
    pub fn for_event_type(mut self, event_type: EventType) -> Self {
        self.event_type = event_type;
        self
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
                    event_type: self.event_type,
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
            event_type: self.event_type,
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
