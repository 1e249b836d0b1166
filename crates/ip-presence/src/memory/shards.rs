//! A large JSON-lines file read by two threads straight into a [`MemoryState`]: the file
//! is cut into pieces of about [`CHUNK`] bytes at line boundaries, and each thread takes
//! the next piece in turn, then reads, classifies and applies its sign-ins under one lock
//! per user ([`SharedBooks`]). Every sign-in touches only its user's book, so the threads
//! rarely meet on a lock and nothing is queued between them; taking pieces in turn (not
//! a half each) keeps them finishing together when one is slowed.
//!
//! One batch (no replay) goes through partition files instead ([`super::spill`]): the
//! threads sort each candidate to the file of its user's partition, then apply the
//! partitions a few users at a time, whose books then stay in the cache (the one-day
//! bench of 1M sign-ins by 20,000 people in 0.70 of the time the pieces took straight
//! into the books, paired runs). So does a replay with a [`super::Spill`].
//!
//! A replay reads a block at a time and settles the days the reading has left behind
//! ([`Replay`]). Those days leave the books ([`MemoryState::settle`]) and are recomputed
//! and reported by the same two threads, in batches taken in turn before the pieces of
//! the next block, which cannot touch them: the reporting is shared by both cores rather
//! than done by one while the other waits, and the days are freed before the next
//! block's grow. (A third thread reporting beside the readers was tried: on two cores it
//! slowed them as much as it saved on 90 days, and held the days for a whole block.)

use std::io::{Read, Seek, SeekFrom};
use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use ipnet::IpNet;
use jiff::civil::Date;

use super::day::{UserBook, obs_error, pack_obs};
use super::partitions::{PartitionWriter, Partitions, partitions_for};
use super::{Discovery, Found, MemoryState, NONE, SettledDay};
use crate::calendar::{day_start_ms, parse_timestamp_ms};
use crate::classify::{Candidate, NO_RANGE, Rules, Verdict};
use crate::config::PresenceMode;
use crate::engine::{PresenceEngine, emit_change};
use crate::error::PresenceError;
use crate::file::{JsonLinesBackend, line_boundary, read_blocks};
use crate::model::{
    AccessEvent, Counts, EventSink, Place, ProcessOptions, days_after, days_before,
};
use crate::ranges::suggested_block;
use crate::signin::for_each_json_line;

/// The books of a [`MemoryState`] shared by the reader threads: one lock per user, taken
/// once per sign-in. The interning caches are filled beforehand
/// ([`MemoryState::prepare_shards`]) and only read. The discovery counts are shared too
/// (one lock per sign-in in no range, a few percent): a map per thread would hold the
/// counts twice once they reach [`super::DISCOVERY_KEYS`].
pub(super) struct SharedBooks<'a> {
    books: Vec<Mutex<UserBook>>,
    discovery: Mutex<Discovery>,
    user_cache: &'a [u32],
    range_cache: &'a [u32],
    pub(super) places: &'a [(Box<str>, Place)],
}

/// One thread's handle on [`SharedBooks`]: what it found that is not kept in a book.
pub(super) struct BookWriter<'s, 'a> {
    shared: &'s SharedBooks<'a>,
    pub(super) dirty: Vec<(u32, Date)>,
    /// New access events as (engine user index, address, date), handed to the sink a
    /// chunk at a time ([`ACCESS_CHUNK`]) so they never pile up.
    pub(super) access: Vec<(u32, IpAddr, Date)>,
}

/// The size of the pieces two readers share out ([`MemoryState::apply_range`]).
const CHUNK: u64 = 4 << 20;

/// Settled days reported as one piece of work ([`MemoryState::apply_range`]).
const REPORT_BATCH: usize = 1024;

/// New access events a writer holds before it hands them to its sink (taking the lock of
/// a shared one).
pub(super) const ACCESS_CHUNK: usize = 8192;

/// One engine thread's way to the sink: a fork of its own when the sink gives one
/// ([`EventSink::fork`]), so that this thread's events are encoded here while the other
/// thread goes on; else the one sink, locked for each hand-over.
pub(super) enum ThreadSink<'s, 'k> {
    Fork(Box<dyn EventSink>),
    Shared(&'s Mutex<&'k mut dyn EventSink>),
}

impl<'s, 'k> ThreadSink<'s, 'k> {
    pub(super) fn new(shared: &'s Mutex<&'k mut dyn EventSink>) -> Self {
        let fork = shared.lock().unwrap_or_else(|p| p.into_inner()).fork();
        match fork {
            Some(fork) => ThreadSink::Fork(fork),
            None => ThreadSink::Shared(shared),
        }
    }

    /// `f` with the sink (locked, when shared).
    pub(super) fn with<R>(&mut self, f: impl FnOnce(&mut dyn EventSink) -> R) -> R {
        match self {
            ThreadSink::Fork(fork) => f(&mut **fork),
            ThreadSink::Shared(shared) => {
                let mut sink = shared.lock().unwrap_or_else(|p| p.into_inner());
                f(&mut **sink)
            }
        }
    }
}

/// Hand `access` to the sink and empty it.
pub(super) fn flush_access(
    sink: &mut ThreadSink<'_, '_>,
    rules: &Rules,
    access: &mut Vec<(u32, IpAddr, Date)>,
) {
    if access.is_empty() {
        return;
    }
    sink.with(|sink| {
        let mut ev = AccessEvent {
            user: String::new(),
            ip: IpAddr::from([0, 0, 0, 0]),
            date: Date::MIN,
        };
        for (u, ip, date) in access.drain(..) {
            ev.user.clear();
            ev.user.push_str(&rules.users[u as usize].key);
            ev.ip = ip;
            ev.date = date;
            sink.access(&ev);
        }
    });
}

/// Recompute and report days a replay has settled ([`MemoryState::settle`]), a day at a
/// time (under the lock of a shared sink: what the other thread may have to wait for is
/// one day's events).
pub(super) fn report_settled(
    days: Vec<SettledDay>,
    places: &[(Box<str>, Place)],
    sink: &mut ThreadSink<'_, '_>,
) -> Result<(), PresenceError> {
    for day in days {
        let change = day.report(places);
        sink.with(|sink| emit_change(change, sink))?;
    }
    Ok(())
}

/// What a writer hands back to be merged.
pub(super) struct WriterOutcome {
    dirty: Vec<(u32, Date)>,
}

/// The outcome of [`BookWriter::record`] for a matched sign-in.
enum Recorded {
    Duplicate,
    /// The observation could not be kept ([`pack_obs`]).
    Invalid,
    /// New; `Some(new)` when the access was to be logged (`new`: not logged before).
    New(Option<bool>),
}

impl<'a> SharedBooks<'a> {
    pub(super) fn writer(&self) -> BookWriter<'_, 'a> {
        BookWriter {
            shared: self,
            dirty: Vec::new(),
            access: Vec::new(),
        }
    }
}

impl SharedBooks<'_> {
    #[inline]
    fn lock(&self, engine_user: u32) -> (u32, MutexGuard<'_, UserBook>) {
        let id = self.user_cache[engine_user as usize];
        let book = self.books[id as usize]
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        (id, book)
    }

    /// The book of the state user `id`, locked.
    pub(super) fn book(&self, id: u32) -> MutexGuard<'_, UserBook> {
        self.books[id as usize]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }
}

impl BookWriter<'_, '_> {
    /// Record a sign-in outside every range (auto-create): false when already seen.
    #[inline]
    fn discover(
        &mut self,
        engine_user: u32,
        hash: u64,
        date: Date,
        block: IpNet,
        ip: IpAddr,
    ) -> bool {
        let (id, mut book) = self.shared.lock(engine_user);
        if !book.day(date).seen.insert(hash) {
            return false;
        }
        drop(book);
        let mut discovery = self
            .shared
            .discovery
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        debug_assert_eq!(block, suggested_block(ip));
        super::count_discovery(&mut discovery, Found::new(ip, id), 1);
        true
    }

    /// Record a matched sign-in: its id, the access (when `log`) and the observation at
    /// the range's place (when `observe`, `(at_ms, engine range index)`), under one lock.
    #[inline]
    fn record(
        &mut self,
        engine_user: u32,
        hash: u64,
        date: Date,
        log: Option<IpAddr>,
        observe: Option<(i64, u32)>,
    ) -> Recorded {
        let (id, mut book) = self.shared.lock(engine_user);
        let ud = book.day(date);
        if !ud.seen.insert(hash) {
            return Recorded::Duplicate;
        }
        let logged = match log {
            Some(ip) => {
                let new = ud.access.insert(ip);
                if new {
                    self.access.push((engine_user, ip, date));
                }
                Some(new)
            }
            None => None,
        };
        if let Some((at_ms, range)) = observe {
            let p = self.shared.range_cache[range as usize];
            match pack_obs(day_start_ms(date), at_ms, p) {
                Some(v) => {
                    if ud.obs.capacity() == 0 {
                        // As for the ids seen ([`super::day::SmallSet`]): eight at once.
                        ud.obs.reserve_exact(8);
                    }
                    ud.obs.push(v);
                }
                None => return Recorded::Invalid,
            }
            if !ud.dirty {
                ud.dirty = true;
                self.dirty.push((id, date));
            }
        }
        Recorded::New(logged)
    }

    pub(super) fn finish(self) -> WriterOutcome {
        WriterOutcome { dirty: self.dirty }
    }
}

impl MemoryState {
    /// Intern every user and place an engine can hand over, so writers need no interning.
    fn prepare_shards<'k>(
        &mut self,
        users: impl Iterator<Item = (u32, &'k str)>,
        ranges: impl Iterator<Item = (u32, &'k str, &'k Place)>,
    ) {
        self.user_cache.clear();
        self.range_cache.clear();
        for (ix, key) in users {
            let id = self.intern_user(key);
            if ix as usize >= self.user_cache.len() {
                self.user_cache.resize(ix as usize + 1, NONE);
            }
            self.user_cache[ix as usize] = id;
        }
        for (ix, name, place) in ranges {
            let id = self.intern_place(name, place);
            if ix as usize >= self.range_cache.len() {
                self.range_cache.resize(ix as usize + 1, NONE);
            }
            self.range_cache[ix as usize] = id;
        }
    }

    /// Lend the books to reader threads (after [`Self::prepare_shards`]) and take them back
    /// with what the writers found when `run` returns.
    pub(super) fn with_shared_books<R>(
        &mut self,
        run: impl FnOnce(&SharedBooks<'_>) -> (R, Vec<WriterOutcome>),
    ) -> R {
        let shared = SharedBooks {
            books: std::mem::take(&mut self.users)
                .into_iter()
                .map(Mutex::new)
                .collect(),
            discovery: Mutex::new(std::mem::take(&mut self.discovery)),
            user_cache: &self.user_cache,
            range_cache: &self.range_cache,
            places: &self.places,
        };
        let (r, outcomes) = run(&shared);
        self.users = shared
            .books
            .into_iter()
            .map(|m| m.into_inner().unwrap_or_else(|p| p.into_inner()))
            .collect();
        self.discovery = shared
            .discovery
            .into_inner()
            .unwrap_or_else(|p| p.into_inner());
        for o in outcomes {
            self.dirty.extend(o.dirty);
        }
        r
    }
}

impl BookWriter<'_, '_> {
    /// Steps 2 (discovery) to 4 for one candidate: the same rules and counts as the
    /// engine's own, one lock per sign-in.
    #[inline]
    pub(super) fn apply(
        &mut self,
        rules: &Rules,
        c: &Candidate,
        counts: &mut Counts,
    ) -> Result<(), PresenceError> {
        if c.range == NO_RANGE {
            if self.discover(c.user, c.id_hash, c.date, suggested_block(c.ip), c.ip) {
                counts.discovered += 1;
            } else {
                counts.discarded.duplicate += 1;
            }
            return Ok(());
        }
        let log = rules.logs_access(c.range);
        let u = &rules.users[c.user as usize];
        let place = &rules.places[c.range as usize];
        let observe = place.is_some() && u.mode != PresenceMode::Off;
        match self.record(
            c.user,
            c.id_hash,
            c.date,
            log.then_some(c.ip),
            observe.then_some((c.at_ms, c.range)),
        ) {
            Recorded::Duplicate => counts.discarded.duplicate += 1,
            Recorded::Invalid => return Err(obs_error()),
            Recorded::New(logged) => {
                counts.matched += 1;
                match logged {
                    Some(true) => counts.access_logged += 1,
                    Some(false) => counts.access_already_logged += 1,
                    None => counts.access_not_logged += 1,
                }
                if place.is_none() {
                    counts.presence_not_enabled += 1;
                } else if observe {
                    counts.presence_observed += 1;
                } else {
                    counts.presence_mode_off += 1;
                }
            }
        }
        Ok(())
    }
}

impl JsonLinesBackend for MemoryState {
    /// Both threads read, classify and apply their half of the file straight into the
    /// shared books. New access events are kept as indices and handed to the sink (the
    /// thread's fork, or under the lock of a sink that does not fork) a chunk at a time.
    /// A replay ([`ProcessOptions::replay`]) does this a block of
    /// [`ProcessOptions::replay_block`] bytes at a time, and after each block settles the
    /// days the reading has left behind ([`Replay`]).
    fn apply_json_lines(
        &mut self,
        engine: &PresenceEngine,
        path: &Path,
        len: u64,
        opts: &ProcessOptions,
        sink: &mut dyn EventSink,
    ) -> Result<Counts, PresenceError> {
        let rules = engine.rules();
        self.prepare_shards(
            rules
                .users
                .iter()
                .enumerate()
                .map(|(i, u)| (i as u32, u.key.as_str())),
            rules.places.iter().enumerate().filter_map(|(i, p)| {
                p.as_ref()
                    .map(|p| (i as u32, rules.table.range(i as u32).name.as_str(), p))
            }),
        );
        let sink = Mutex::new(sink);
        if !opts.replay {
            // One batch: its candidates sorted into partitions by user, then applied a
            // partition at a time ([`super::spill`]): the same books, about 0.7 of the
            // time (a partition's books stay in the cache).
            let parts = Partitions::new(&self.temp_dir(), partitions_for(len))?;
            let (mut counts, _) = self.apply_range(
                rules,
                path,
                (0, len),
                opts.accepted(),
                &sink,
                Destination::Partitions(&parts),
            )?;
            counts.add(&self.apply_partitions(rules, parts, Date::MIN, &sink, None)?);
            return Ok(counts);
        }
        // A spilled replay ([`super::spill`]) sorts the candidates into partitions first.
        let spill = self.spill.clone();
        let parts = match &spill {
            Some(spill) => Some(Partitions::new(&spill.temp_dir, partitions_for(len))?),
            None => None,
        };
        if parts.is_some() {
            // The discovery table at its cap's size from the start (1.9 MB): it neither
            // grows with the sign-ins nor doubles, copying itself, on the way there.
            let more = super::DISCOVERY_KEYS.saturating_sub(self.discovery.len());
            self.discovery.reserve(more);
        }
        let mut replay = Replay::new(engine, path, len, opts)?;
        let mut counts = Counts::default();
        let mut settled = Vec::new();
        let mut from = 0;
        while from < len {
            let block = opts.replay_block.max(1);
            let to = if len - from > block {
                line_boundary(path, from + block)?
            } else {
                len
            };
            let (c, span) = self.apply_range(
                rules,
                path,
                (from, to),
                replay.accepted(),
                &sink,
                match &parts {
                    Some(parts) => Destination::Partitions(parts),
                    None => Destination::Books(std::mem::take(&mut settled)),
                },
            )?;
            counts.add(&c);
            if let Some(span) = span {
                replay.advance(span);
            }
            if let Some(parts) = &parts {
                if replay.frontier.is_some() {
                    parts.mark(replay.accepted())?;
                }
                from = to;
                continue;
            }
            let mut failed = None;
            ThreadSink::Shared(&sink).with(|sink| {
                settled = self.settle(|d| replay.settled(d), replay.keep_from, &mut |ch| {
                    if let Err(e) = emit_change(ch, sink) {
                        failed.get_or_insert(e);
                    }
                });
            });
            if let Some(e) = failed {
                return Err(e);
            }
            from = to;
        }
        if let (Some(parts), Some(spill)) = (parts, spill) {
            counts.add(&self.apply_partitions(
                rules,
                parts,
                replay.keep_from,
                &sink,
                Some(&spill),
            )?);
        }
        report_settled(settled, &self.places, &mut ThreadSink::Shared(&sink))?;
        Ok(counts)
    }
}

/// Where [`MemoryState::apply_range`] puts a block's candidates: into the books, after
/// reporting the days the blocks before settled; or into a spilled replay's partition
/// files ([`super::spill`]), which settle days of their own.
enum Destination<'p> {
    Books(Vec<SettledDay>),
    Partitions(&'p Partitions),
}

/// Where a replay has got to. Files come oldest first (an export, a sorted file) or newest
/// first (Graph lists sign-ins newest first, so `pull_sign_ins` writes them so): the
/// direction is read from the first and last lines. The **frontier** is the furthest
/// day the blocks read so far reached in that direction (never past `now`); a sign-in
/// more than `late_window_days` behind it is too late, as it would have been had it been
/// processed live, and a day that far behind is **settled**: no later block can change
/// it, so its events are reported, and it is forgotten unless `now`'s own window keeps it
/// for the state.
struct Replay {
    forward: bool,
    frontier: Option<Date>,
    window: u16,
    today: Date,
    /// Settled days from this one on stay (for the state); older ones are dropped.
    keep_from: Date,
}

impl Replay {
    fn new(
        engine: &PresenceEngine,
        path: &Path,
        len: u64,
        opts: &ProcessOptions,
    ) -> Result<Self, PresenceError> {
        let first = edge_day(path, len, true)?;
        let last = edge_day(path, len, false)?;
        let keep = opts
            .late_window_days
            .min(engine.config().settings.retention_days);
        Ok(Replay {
            forward: !matches!((first, last), (Some(f), Some(l)) if l < f),
            frontier: None,
            window: opts.late_window_days,
            today: opts.today(),
            keep_from: days_before(opts.today(), keep),
        })
    }

    /// The days a sign-in of the next block may change.
    fn accepted(&self) -> (Date, Date) {
        match (self.frontier, self.forward) {
            (None, _) => (Date::MIN, Date::MAX),
            (Some(f), true) => (days_before(f, self.window), Date::MAX),
            (Some(f), false) => (Date::MIN, days_after(f, self.window)),
        }
    }

    /// A block's sign-ins reached from `span.0` to `span.1`.
    fn advance(&mut self, (lo, hi): (Date, Date)) {
        let reached = if self.forward { hi.min(self.today) } else { lo };
        self.frontier = Some(match (self.frontier, self.forward) {
            (None, _) => reached,
            (Some(f), true) => f.max(reached),
            (Some(f), false) => f.min(reached),
        });
    }

    fn settled(&self, d: Date) -> bool {
        let (from, to) = self.accepted();
        self.frontier.is_some() && (d < from || d > to)
    }
}

/// The calendar day (UTC) of the first (`first`) or last line of a JSON-lines file, when
/// it parses.
fn edge_day(path: &Path, len: u64, first: bool) -> Result<Option<Date>, PresenceError> {
    let mut file = std::fs::File::open(path)?;
    let at = if first {
        0
    } else {
        len.saturating_sub(64 << 10)
    };
    file.seek(SeekFrom::Start(at))?;
    let mut buf = Vec::with_capacity(64 << 10);
    file.take(64 << 10).read_to_end(&mut buf)?;
    let text = buf.trim_ascii_end();
    let line = if first {
        text.split(|&b| b == b'\n').next()
    } else {
        text.rsplit(|&b| b == b'\n').next()
    };
    let mut day = None;
    if let Some(line) = line {
        let _ = for_each_json_line(line, at, |s| {
            day = s
                .created_date_time
                .as_deref()
                .and_then(parse_timestamp_ms)
                .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
                .map(|t| t.to_zoned(jiff::tz::TimeZone::UTC).date());
        });
    }
    Ok(day)
}

impl MemoryState {
    /// Read, classify and apply the lines of `range` of the file on two threads, accepting
    /// sign-ins of `days`: the counts and the first and last day of the sign-ins applied.
    /// The same two threads first report the days the blocks before have `settled` (none
    /// of these sign-ins can touch them).
    fn apply_range(
        &mut self,
        rules: &Rules,
        path: &Path,
        (start, end): (u64, u64),
        days: (Date, Date),
        sink: &Mutex<&mut dyn EventSink>,
        dest: Destination<'_>,
    ) -> Result<(Counts, Option<(Date, Date)>), PresenceError> {
        let (settled, parts) = match dest {
            Destination::Books(settled) => (settled, None),
            Destination::Partitions(parts) => (Vec::new(), Some(parts)),
        };
        // The work, taken in turn by the two threads so that both finish within a piece of
        // each other: first the settled days in batches (freed before this block's days
        // grow), then the range in pieces of about CHUNK bytes, cut at line starts.
        let mut batches = Vec::with_capacity(settled.len().div_ceil(REPORT_BATCH));
        let mut settled = settled.into_iter().peekable();
        while settled.peek().is_some() {
            batches.push(Mutex::new(
                settled.by_ref().take(REPORT_BATCH).collect::<Vec<_>>(),
            ));
        }
        let pieces = (end - start).div_ceil(CHUNK).max(1);
        let mut cuts = vec![start];
        for i in 1..pieces {
            let at = line_boundary(path, start + (end - start) * i / pieces)?;
            cuts.push(at.clamp(cuts[cuts.len() - 1], end));
        }
        cuts.push(end);
        let next = AtomicUsize::new(0);
        let (batches, cuts, next) = (&batches[..], &cuts[..], &next);
        type Out = (Counts, Option<(Date, Date)>);
        let results = self.with_shared_books(|shared| {
            std::thread::scope(|scope| {
                let places = shared.places;
                let reader = move || {
                    let mut sink = ThreadSink::new(sink);
                    let mut w = shared.writer();
                    let mut pw = parts.map(Partitions::writer);
                    let mut counts = Counts::default();
                    let mut span: Option<(Date, Date)> = None;
                    let mut failed = None;
                    let mut r = Ok(());
                    // The next batch or piece, until none is left or one failed.
                    while failed.is_none() && r.is_ok() {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if let Some(batch) = batches.get(i) {
                            let days = std::mem::take(
                                &mut *batch.lock().unwrap_or_else(|p| p.into_inner()),
                            );
                            if let Err(e) = report_settled(days, places, &mut sink) {
                                failed = Some(e);
                            }
                            continue;
                        }
                        let i = i - batches.len();
                        if i + 1 >= cuts.len() {
                            break;
                        }
                        r = read_blocks(path, cuts[i], cuts[i + 1], |block, base| {
                            if failed.is_some() {
                                return Ok(());
                            }
                            for_each_json_line(block, base, |s| {
                                counts.received += 1;
                                match rules.classify(&s, days) {
                                    Verdict::Discard(f) => f(&mut counts.discarded),
                                    Verdict::Candidate(c) => {
                                        span = Some(match span {
                                            None => (c.date, c.date),
                                            Some((lo, hi)) => (lo.min(c.date), hi.max(c.date)),
                                        });
                                        if failed.is_some() {
                                            return;
                                        }
                                        let r = match &mut pw {
                                            Some(pw) => {
                                                pw.push(shared.user_cache[c.user as usize], &c)
                                            }
                                            None => w.apply(rules, &c, &mut counts),
                                        };
                                        if let Err(e) = r {
                                            failed = Some(e);
                                        }
                                        if w.access.len() >= ACCESS_CHUNK {
                                            flush_access(&mut sink, rules, &mut w.access);
                                        }
                                    }
                                }
                            })
                        });
                    }
                    let r = r
                        .and_then(|()| failed.map_or(Ok(()), Err))
                        .and_then(|()| pw.as_mut().map_or(Ok(()), PartitionWriter::flush));
                    flush_access(&mut sink, rules, &mut w.access);
                    drop(sink);
                    (r.map(|()| (counts, span)), w.finish())
                };
                // One reader on a new thread, one on this one: what this thread allocates
                // reuses the memory the configuration was parsed in.
                let second = scope.spawn(reader);
                let (r0, o0) = reader();
                let (r1, o1) = second.join().expect("reader thread panicked");
                let results: Vec<Result<Out, PresenceError>> = vec![r0, r1];
                (results, vec![o0, o1])
            })
        });
        let mut counts = Counts::default();
        let mut span: Option<(Date, Date)> = None;
        for r in results {
            let (c, s) = r?;
            counts.add(&c);
            span = match (span, s) {
                (Some((a, b)), Some((c, d))) => Some((a.min(c), b.max(d))),
                (x, None) | (None, x) => x,
            };
        }
        Ok((counts, span))
    }
}
