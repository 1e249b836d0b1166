//! A spilled replay: the window's sign-ins kept on disk, not in memory.
//!
//! An exact late-arrival window has to keep every observation of its days (a late sign-in
//! can fall between any two), so a replay's memory follows the sign-ins *per day*: a
//! million sign-ins in one day held some 35 MiB of books, ten million over 30 days 75.
//! Every sign-in touches only its user's book, so the work splits by user without
//! changing any result:
//!
//! 1. **Partition.** The two reader threads read, parse and classify the file a block at
//!    a time as in [`super::shards`], but hand each candidate to [`Partitions`]: a
//!    48-byte record appended to the partition file of its user (by state user id,
//!    modulo the number of partitions). After each block, a marker is appended to every
//!    partition with the days the replay has then settled ([`super::shards`]'s `Replay`).
//! 2. **Apply, a partition at a time.** The two threads take the partitions in turn and
//!    replay each one's records into the books of its users, exactly as the blocks would
//!    have: at a marker, those users' settled days are reported and dropped
//!    ([`super::settle_book`]); at the partition's end, their remaining days are
//!    recomputed (reported), pruned and written to the spill's days file
//!    ([`super::Spill`]), then forgotten.
//!
//! One batch (no replay) takes the same two steps without markers and without the days
//! file: the books stay for the engine to finish, as they would have, but were filled a
//! partition at a time, which keeps them in the cache.
//!
//! Memory then holds the window of two partitions of users, not of all of them; the
//! partition files (unnamed, in the spill's directory: 48 bytes a candidate) stay
//! in the page cache or on disk. Per user, the sequence of sign-ins and settlements is the
//! one of the blocks, so the events and the state are the same as an unspilled replay's;
//! only their order in the output differs (grouped by partition), and which discovery
//! counts are kept once [`super::DISCOVERY_KEYS`] are full.

use std::fs::File;
use std::io::{BufReader, Seek, SeekFrom, Write};
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use jiff::civil::Date;

use super::json::user_day_json;
use super::partitions::{Partitions, Record, read_record, scratch};
use super::shards::{ACCESS_CHUNK, SharedBooks, ThreadSink, flush_access, report_settled};
use super::{MemoryState, Spill, recompute_day, settle_book};
use crate::classify::Rules;
use crate::engine::emit_change;
use crate::error::PresenceError;
use crate::model::{Counts, EventSink};

/// Bytes of days-file lines a thread holds before writing them.
const DAYS_BUFFER: usize = 256 << 10;

impl MemoryState {
    /// Step 2 of the module doc: the partitions applied by two threads, a partition at a
    /// time; the counts of what they applied (duplicates, matches, ...). With a `spill`,
    /// days before `keep_from` are dropped once settled and the rest go to its days file;
    /// without, the books keep them (and what is dirty) for the engine's `finish`.
    pub(super) fn apply_partitions(
        &mut self,
        rules: &Rules,
        parts: Partitions,
        keep_from: Date,
        sink: &Mutex<&mut dyn EventSink>,
        spill: Option<&Spill>,
    ) -> Result<Counts, PresenceError> {
        let n = parts.len();
        let users = self.users.len();
        let next = AtomicUsize::new(0);
        let (parts, next) = (&parts, &next);
        let results = self.with_shared_books(|shared| {
            std::thread::scope(|scope| {
                let run = Run {
                    shared,
                    rules,
                    keep_from,
                    spill,
                    dir: parts.dir(),
                };
                let worker = move || {
                    let mut sink = ThreadSink::new(sink);
                    let mut counts = Counts::default();
                    let mut days = Vec::with_capacity(DAYS_BUFFER);
                    let mut w = shared.writer();
                    let mut r = Ok(());
                    while r.is_ok() {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= n {
                            break;
                        }
                        let ids: Vec<u32> = (i..users).step_by(n).map(|u| u as u32).collect();
                        let Some(file) = parts.take(i) else {
                            continue;
                        };
                        r = run.partition(file, &ids, &mut w, &mut sink, &mut counts, &mut days);
                        if spill.is_some() {
                            w.dirty.clear();
                        }
                    }
                    let r = match spill {
                        Some(spill) => r.and_then(|()| write_days(spill, &mut days)),
                        None => r,
                    };
                    flush_access(&mut sink, rules, &mut w.access);
                    drop(sink);
                    (r.map(|()| counts), w.finish())
                };
                let second = scope.spawn(worker);
                let (r0, o0) = worker();
                let (r1, o1) = second.join().expect("partition thread panicked");
                (vec![r0, r1], vec![o0, o1])
            })
        });
        let mut counts = Counts::default();
        for r in results {
            counts.add(&r?);
        }
        let Some(spill) = spill else {
            return Ok(counts);
        };
        // The discovery counts follow the days, a line each, so the state stays small.
        let mut lines = Vec::with_capacity(DAYS_BUFFER);
        for (found, n) in &self.discovery {
            let user = &self.users[found.user as usize].key;
            let line = DiscoveryLine {
                discovery: (found.block(), found.ip(), user, *n),
            };
            serde_json::to_writer(&mut lines, &line).map_err(|e| days_error(spill, e.into()))?;
            lines.push(b'\n');
            spill.lines.fetch_add(1, Ordering::Relaxed);
            if lines.len() >= DAYS_BUFFER {
                write_days(spill, &mut lines)?;
            }
        }
        write_days(spill, &mut lines)?;
        spill
            .days
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .flush()
            .map_err(|e| days_error(spill, e))?;
        spill.used.store(true, Ordering::Relaxed);
        Ok(counts)
    }
}

/// A discovery count in the days file: `[suggested block, address, user, sign-ins]`.
#[derive(serde::Serialize)]
struct DiscoveryLine<'a> {
    discovery: (ipnet::IpNet, IpAddr, &'a str, u32),
}

/// Hand the days-file lines in `days` to the spill's writer.
fn write_days(spill: &Spill, days: &mut Vec<u8>) -> Result<(), PresenceError> {
    if !days.is_empty() {
        let mut out = spill.days.lock().unwrap_or_else(|p| p.into_inner());
        out.write_all(days).map_err(|e| days_error(spill, e))?;
        days.clear();
    }
    Ok(())
}

/// `e`, met writing the spill's days file: [`PresenceError::Scratch`], naming it.
fn days_error(spill: &Spill, e: std::io::Error) -> PresenceError {
    PresenceError::Scratch(std::io::Error::new(
        e.kind(),
        format!("cannot write {}: {e}", spill.days_path()),
    ))
}

/// What the threads applying the partitions share.
#[derive(Clone, Copy)]
struct Run<'r, 'a> {
    shared: &'r SharedBooks<'a>,
    rules: &'r Rules,
    /// Days before this one are dropped once settled, not written.
    keep_from: Date,
    spill: Option<&'r Spill>,
    /// The partition files' folder, for messages.
    dir: &'r std::path::Path,
}

impl Run<'_, '_> {
    /// One partition (its file and its users `ids`) replayed into the books by `w`, its
    /// events handed to `sink`, its counts added to `counts` and its days' lines to `days`.
    fn partition(
        &self,
        file: File,
        ids: &[u32],
        w: &mut super::shards::BookWriter<'_, '_>,
        sink: &mut ThreadSink<'_, '_>,
        counts: &mut Counts,
        days: &mut Vec<u8>,
    ) -> Result<(), PresenceError> {
        let Run {
            shared,
            rules,
            keep_from,
            spill,
            dir,
        } = *self;
        let places = shared.places;
        let mut file = file;
        file.seek(SeekFrom::Start(0))
            .map_err(|e| scratch(e, "read", dir))?;
        let mut input = BufReader::with_capacity(64 << 10, file);
        let mut failed = None;
        // A recomputed day's events to the sink; the first error is kept for the end.
        let emit = |sink: &mut ThreadSink<'_, '_>, failed: &mut Option<_>, ch| {
            if let Err(e) = sink.with(|sink| emit_change(ch, sink)) {
                failed.get_or_insert(e);
            }
        };
        while let Some(record) = read_record(&mut input, dir)? {
            let (from, to) = match record {
                Record::Candidate(c) => {
                    w.apply(rules, &c, counts)?;
                    if w.access.len() >= ACCESS_CHUNK {
                        flush_access(sink, rules, &mut w.access);
                    }
                    continue;
                }
                Record::Settle(from, to) => (from, to),
            };
            // The access events found so far are older than what settling may report.
            flush_access(sink, rules, &mut w.access);
            let settled = |d: Date| d < from || d > to;
            let mut out = Vec::new();
            for &id in ids {
                let mut book = shared.book(id);
                settle_book(
                    &mut book,
                    places,
                    &settled,
                    keep_from,
                    &mut out,
                    &mut |ch| emit(sink, &mut failed, ch),
                );
            }
            report_settled(out, places, sink)?;
            w.dirty.clear();
        }
        flush_access(sink, rules, &mut w.access);
        let Some(spill) = spill else {
            return failed.map_or(Ok(()), Err);
        };
        // The end of the run for these users: what the engine's `finish` does for a batch
        // (recompute what is dirty, prune), then their days to the file, and out of memory.
        for &id in ids {
            let mut book = shared.book(id);
            let key = book.key.clone();
            for (date, ud) in book.days.iter_mut() {
                if ud.dirty {
                    emit(
                        sink,
                        &mut failed,
                        recompute_day(places, key.to_string(), *date, ud),
                    );
                }
            }
            for (date, ud) in std::mem::take(&mut book.days) {
                if date < keep_from {
                    continue;
                }
                let mut line = user_day_json(date, ud, |p| p);
                line.insert("date".into(), date.to_string().into());
                line.insert("user".into(), key.to_string().into());
                serde_json::to_writer(&mut *days, &line)
                    .map_err(|e| days_error(spill, e.into()))?;
                days.push(b'\n');
                spill.lines.fetch_add(1, Ordering::Relaxed);
            }
            drop(book);
            if days.len() >= DAYS_BUFFER {
                write_days(spill, days)?;
            }
        }
        failed.map_or(Ok(()), Err)
    }
}
