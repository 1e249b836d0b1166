//! A large JSON-lines file read by two threads straight into a [`MemoryState`]: each
//! thread reads, classifies and applies its half of the file (split at a line boundary)
//! under one lock per user ([`SharedBooks`]). Every sign-in touches only its user's book,
//! so the threads rarely meet on a lock and nothing is queued between them.

use std::net::IpAddr;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use ipnet::IpNet;
use jiff::civil::Date;
use rustc_hash::FxHashMap;

use super::day::{UserBook, obs_error, pack_obs};
use super::{MemoryState, NONE};
use crate::calendar::day_start_ms;
use crate::classify::{Candidate, NO_RANGE, Rules, Verdict};
use crate::config::PresenceMode;
use crate::engine::PresenceEngine;
use crate::error::PresenceError;
use crate::file::{JsonLinesBackend, line_boundary, read_blocks};
use crate::model::{AccessEvent, BatchReport, Counts, Place, ProcessOptions};
use crate::ranges::suggested_block;
use crate::signin::for_each_json_line;

/// The books of a [`MemoryState`] shared by the reader threads: one lock per user, taken
/// once per sign-in. The interning caches are filled beforehand
/// ([`MemoryState::prepare_shards`]) and only read.
struct SharedBooks<'a> {
    books: Vec<Mutex<UserBook>>,
    user_cache: &'a [u32],
    range_cache: &'a [u32],
}

/// One thread's handle on [`SharedBooks`]: what it found that is not kept in a book.
struct BookWriter<'s, 'a> {
    shared: &'s SharedBooks<'a>,
    discovery: FxHashMap<(IpNet, IpAddr, u32), u64>,
    dirty: Vec<(u32, Date)>,
    /// New access events as (engine user index, address, date); strings are built once,
    /// for the report.
    access: Vec<(u32, IpAddr, Date)>,
}

/// What a writer hands back to be merged.
struct WriterOutcome {
    discovery: FxHashMap<(IpNet, IpAddr, u32), u64>,
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
    fn writer(&self) -> BookWriter<'_, 'a> {
        BookWriter {
            shared: self,
            discovery: FxHashMap::default(),
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
        let e = self.discovery.entry((block, ip, id)).or_default();
        *e = e.saturating_add(1);
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
                Some(v) => ud.obs.push(v),
                None => return Recorded::Invalid,
            }
            if !ud.dirty {
                ud.dirty = true;
                self.dirty.push((id, date));
            }
        }
        Recorded::New(logged)
    }

    fn finish(self) -> WriterOutcome {
        WriterOutcome {
            discovery: self.discovery,
            dirty: self.dirty,
        }
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
    fn with_shared_books<R>(
        &mut self,
        run: impl FnOnce(&SharedBooks<'_>) -> (R, Vec<WriterOutcome>),
    ) -> R {
        let shared = SharedBooks {
            books: std::mem::take(&mut self.users)
                .into_iter()
                .map(Mutex::new)
                .collect(),
            user_cache: &self.user_cache,
            range_cache: &self.range_cache,
        };
        let (r, outcomes) = run(&shared);
        self.users = shared
            .books
            .into_iter()
            .map(|m| m.into_inner().unwrap_or_else(|p| p.into_inner()))
            .collect();
        for o in outcomes {
            for (k, n) in o.discovery {
                let e = self.discovery.entry(k).or_default();
                *e = e.saturating_add(n);
            }
            self.dirty.extend(o.dirty);
        }
        r
    }
}

impl BookWriter<'_, '_> {
    /// Steps 2 (discovery) to 4 for one candidate: the same rules and counts as the
    /// engine's own, one lock per sign-in.
    #[inline]
    fn apply(
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
    /// shared books. Access events are kept as indices until the report is built.
    fn apply_json_lines(
        &mut self,
        engine: &PresenceEngine,
        path: &Path,
        len: u64,
        opts: &ProcessOptions,
    ) -> Result<BatchReport, PresenceError> {
        let split = line_boundary(path, len / 2)?;
        let rules = engine.rules();
        let cutoff = opts.cutoff();
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
        type Out = (Counts, Vec<(u32, IpAddr, Date)>);
        let results: Vec<Result<Out, PresenceError>> = self.with_shared_books(|shared| {
            std::thread::scope(|scope| {
                let half = move |from: u64, to: u64| {
                    let mut w = shared.writer();
                    let mut counts = Counts::default();
                    let mut failed = None;
                    let r = read_blocks(path, from, to, |block, base| {
                        if failed.is_some() {
                            return Ok(());
                        }
                        for_each_json_line(block, base, |s| {
                            counts.received += 1;
                            match rules.classify(&s, cutoff) {
                                Verdict::Discard(f) => f(&mut counts.discarded),
                                Verdict::Candidate(c) => {
                                    if failed.is_none()
                                        && let Err(e) = w.apply(rules, &c, &mut counts)
                                    {
                                        failed = Some(e);
                                    }
                                }
                            }
                        })
                    })
                    .and_then(|()| failed.map_or(Ok(()), Err));
                    let access = std::mem::take(&mut w.access);
                    (r.map(|()| (counts, access)), w.finish())
                };
                // The second half on a new thread, the first on this one: what this thread
                // allocates reuses the memory the configuration was parsed in.
                let second = scope.spawn(move || half(split, len));
                let (r0, o0) = half(0, split);
                let (r1, o1) = second.join().expect("reader thread panicked");
                let (results, outcomes) = (vec![r0, r1], vec![o0, o1]);
                (results, outcomes)
            })
        });
        let mut report = BatchReport::default();
        let mut compact = Vec::new();
        for r in results {
            let (counts, mut a) = r?;
            report.counts.add(&counts);
            if compact.is_empty() {
                compact = a;
            } else {
                compact.append(&mut a);
            }
        }
        // Sort by (user key, address, date) on indices, then build the strings once.
        compact.sort_unstable_by_key(|&(u, ip, d)| (rules.user_rank[u as usize], ip, d));
        report.access_events = compact
            .into_iter()
            .map(|(u, ip, date)| AccessEvent {
                user: rules.users[u as usize].key.clone(),
                ip,
                date,
            })
            .collect();
        Ok(report)
    }
}
