//! The partition files of a spilled replay ([`super::spill`]): each candidate a reader
//! thread classifies, appended as a [`RECORD`]-byte record to the file of its user's
//! partition, and after each block a marker with the days the replay has then settled;
//! read back a partition at a time ([`Partitions::take`], [`read_record`]).

use std::fs::File;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv6Addr};
use std::path::Path;
use std::sync::Mutex;

use jiff::civil::Date;

use crate::classify::Candidate;
use crate::error::PresenceError;

/// The bytes of a record: a candidate or a marker.
pub(super) const RECORD: usize = 48;

/// Bytes of records a thread holds per partition before appending them to its file.
const BUFFER: usize = 8 << 10;

const CANDIDATE: u8 = 0;
const MARKER: u8 = 1;

/// How many partitions for a file of `len` bytes: one per 16 MiB of sign-ins (some
/// 19,000 of Graph's), at least 2 and at most 64, so that a partition's window is a
/// small share and the threads' buffers ([`BUFFER`] each) stay within 1 MiB.
pub(super) fn partitions_for(len: u64) -> usize {
    (len >> 24).clamp(2, 64) as usize
}

fn put_date(b: &mut [u8], d: Date) {
    b[0..2].copy_from_slice(&d.year().to_le_bytes());
    b[2] = d.month() as u8;
    b[3] = d.day() as u8;
}

/// What is wrong with a record read back, for [`read_record`]'s message.
type Damage = String;

fn get_date(b: &[u8]) -> Result<Date, Damage> {
    let year = i16::from_le_bytes([b[0], b[1]]);
    Date::new(year, b[2] as i8, b[3] as i8).map_err(|e| format!("a date: {e}"))
}

fn encode(c: &Candidate) -> [u8; RECORD] {
    let mut r = [0u8; RECORD];
    r[0] = CANDIDATE;
    r[1] = if c.ip.is_ipv4() { 4 } else { 6 };
    r[4..8].copy_from_slice(&c.user.to_le_bytes());
    r[8..16].copy_from_slice(&c.at_ms.to_le_bytes());
    r[16..24].copy_from_slice(&c.id_hash.to_le_bytes());
    r[24..28].copy_from_slice(&c.range.to_le_bytes());
    put_date(&mut r[28..32], c.date);
    let v6 = match c.ip {
        IpAddr::V4(a) => a.to_ipv6_mapped(),
        IpAddr::V6(a) => a,
    };
    r[32..48].copy_from_slice(&v6.octets());
    r
}

fn decode(r: &[u8; RECORD]) -> Result<Candidate, Damage> {
    let u32_at = |i: usize| u32::from_le_bytes([r[i], r[i + 1], r[i + 2], r[i + 3]]);
    let u64_at = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&r[i..i + 8]);
        u64::from_le_bytes(b)
    };
    let mut octets = [0u8; 16];
    octets.copy_from_slice(&r[32..48]);
    let v6 = Ipv6Addr::from(octets);
    let ip = match r[1] {
        4 => IpAddr::V4(v6.to_ipv4_mapped().ok_or("an address")?),
        6 => IpAddr::V6(v6),
        _ => return Err("an address kind".into()),
    };
    Ok(Candidate {
        at_ms: u64_at(8) as i64,
        user: u32_at(4),
        date: get_date(&r[28..32])?,
        ip,
        range: u32_at(24),
        id_hash: u64_at(16),
    })
}

/// The partition files of a spilled replay.
pub(super) struct Partitions {
    /// Taken (`None`) by the thread that applies the partition.
    files: Vec<Mutex<Option<File>>>,
    /// Their folder, for messages.
    dir: std::path::PathBuf,
}

/// `e`, met doing `what` with a partition file in `dir`: [`PresenceError::Scratch`].
pub(super) fn scratch(e: std::io::Error, what: &str, dir: &Path) -> PresenceError {
    PresenceError::Scratch(std::io::Error::new(
        e.kind(),
        format!("cannot {what} a partition file in {}: {e}", dir.display()),
    ))
}

impl Partitions {
    pub(super) fn new(dir: &Path, n: usize) -> Result<Self, PresenceError> {
        let files = (0..n)
            .map(|_| tempfile::tempfile_in(dir).map(|f| Mutex::new(Some(f))))
            .collect::<Result<_, _>>()
            .map_err(|e| scratch(e, "create", dir))?;
        Ok(Self {
            files,
            dir: dir.to_path_buf(),
        })
    }

    /// Their folder.
    pub(super) fn dir(&self) -> &Path {
        &self.dir
    }

    pub(super) fn len(&self) -> usize {
        self.files.len()
    }

    /// The file of partition `i`, to read it back (once; it can no longer be written).
    pub(super) fn take(&self, i: usize) -> Option<File> {
        self.files[i]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// A reader thread's buffers.
    pub(super) fn writer(&self) -> PartitionWriter<'_> {
        PartitionWriter {
            parts: self,
            buffers: vec![Vec::new(); self.files.len()],
        }
    }

    fn append(&self, i: usize, bytes: &[u8]) -> Result<(), PresenceError> {
        let mut f = self.files[i].lock().unwrap_or_else(|p| p.into_inner());
        f.as_mut()
            .ok_or_else(|| {
                scratch(
                    std::io::Error::other("it was already read back"),
                    "write",
                    &self.dir,
                )
            })?
            .write_all(bytes)
            .map_err(|e| scratch(e, "write", &self.dir))
    }

    /// After a block: the days the replay has settled are those outside `accepted`.
    pub(super) fn mark(&self, (from, to): (Date, Date)) -> Result<(), PresenceError> {
        let mut r = [0u8; RECORD];
        r[0] = MARKER;
        put_date(&mut r[4..8], from);
        put_date(&mut r[8..12], to);
        for i in 0..self.files.len() {
            self.append(i, &r)?;
        }
        Ok(())
    }
}

/// One reader thread's share of [`Partitions`]: a buffer per partition.
pub(super) struct PartitionWriter<'p> {
    parts: &'p Partitions,
    buffers: Vec<Vec<u8>>,
}

impl PartitionWriter<'_> {
    /// Append the candidate of the state user `id`.
    #[inline]
    pub(super) fn push(&mut self, id: u32, c: &Candidate) -> Result<(), PresenceError> {
        let i = id as usize % self.buffers.len();
        let buf = &mut self.buffers[i];
        if buf.capacity() == 0 {
            buf.reserve_exact(BUFFER);
        }
        buf.extend_from_slice(&encode(c));
        if buf.len() + RECORD > BUFFER {
            self.parts.append(i, buf)?;
            buf.clear();
        }
        Ok(())
    }

    pub(super) fn flush(&mut self) -> Result<(), PresenceError> {
        for (i, buf) in self.buffers.iter_mut().enumerate() {
            if !buf.is_empty() {
                self.parts.append(i, buf)?;
                buf.clear();
            }
        }
        Ok(())
    }
}

/// A record read back from a partition file.
pub(super) enum Record {
    Candidate(Candidate),
    /// The days outside `(from, to)` are settled.
    Settle(Date, Date),
}

/// The next record of a partition file (in `dir`, for messages); `None` at its end.
pub(super) fn read_record(
    input: &mut impl Read,
    dir: &Path,
) -> Result<Option<Record>, PresenceError> {
    let mut r = [0u8; RECORD];
    match input.read_exact(&mut r) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(scratch(e, "read", dir)),
    }
    let record = match r[0] {
        CANDIDATE => decode(&r).map(Record::Candidate),
        MARKER => {
            get_date(&r[4..8]).and_then(|from| Ok(Record::Settle(from, get_date(&r[8..12])?)))
        }
        _ => Err("a record kind".into()),
    };
    record.map(Some).map_err(|what| {
        let damaged = format!("a record is damaged ({what} is not valid)");
        scratch(
            std::io::Error::new(std::io::ErrorKind::InvalidData, damaged),
            "read",
            dir,
        )
    })
}
