//! Files of sign-ins: [`PresenceEngine::process_file`] reads a JSON array or a small file
//! whole, and hands a large JSON-lines file to its backend ([`JsonLinesBackend`]), which
//! by default reads it on the calling thread in blocks ([`read_blocks`]) so memory stays
//! flat.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use super::backend::PresenceBackend;
use super::engine::PresenceEngine;
use super::error::PresenceError;
use super::model::{BatchReport, Counts, EventSink, ProcessOptions};
use super::signin::{SignInParseError, for_each_in_array, for_each_json_line, is_json_array};

/// Files smaller than this are read whole, whatever their form.
const SMALL_FILE: u64 = 4 << 20;

/// A backend [`PresenceEngine::process_file`] can hand a large JSON-lines file to.
/// The default applies it on the calling thread, in blocks; `MemoryState` overrides it to
/// split the file between two threads that write into its per-user books. (A trait of its
/// own, not a method of [`PresenceBackend`]: its default runs the engine, which is built
/// on `PresenceBackend`, so the engine never needs to know which backend it has.)
pub trait JsonLinesBackend: PresenceBackend {
    /// Read, classify and apply every sign-in of the JSON-lines file at `path` (`len`
    /// bytes), inside a batch the engine has begun: the counts; new access events go to
    /// `sink`, the rest is left for [`PresenceBackend::recompute`].
    fn apply_json_lines(
        &mut self,
        engine: &PresenceEngine,
        path: &Path,
        len: u64,
        opts: &ProcessOptions,
        sink: &mut dyn EventSink,
    ) -> Result<Counts, PresenceError> {
        engine.apply_json_lines_on_this_thread(self, path, len, opts, sink)
    }
}

impl PresenceEngine {
    /// Process a file of sign-ins: a JSON array or a small file is read whole; a large
    /// JSON-lines file goes to the backend ([`JsonLinesBackend::apply_json_lines`]).
    pub fn process_file<B: JsonLinesBackend + ?Sized>(
        &self,
        b: &mut B,
        path: &Path,
        opts: &ProcessOptions,
    ) -> Result<BatchReport, PresenceError> {
        let mut report = BatchReport::default();
        report.counts = self.process_file_to(b, path, opts, &mut report)?;
        report.sort();
        Ok(report)
    }

    /// [`Self::process_file`] with every event handed to `sink` as it is found (in no
    /// particular order), so memory does not grow with the events: the counts.
    pub fn process_file_to<B: JsonLinesBackend + ?Sized>(
        &self,
        b: &mut B,
        path: &Path,
        opts: &ProcessOptions,
        sink: &mut dyn EventSink,
    ) -> Result<Counts, PresenceError> {
        let mut file = std::fs::File::open(path)?;
        let len = file.metadata()?.len();
        let mut head = [0u8; 256];
        let n = file.read(&mut head)?;
        if is_json_array(&head[..n]) || len < SMALL_FILE {
            let mut buf = Vec::with_capacity(len as usize);
            file.seek(SeekFrom::Start(0))?;
            file.read_to_end(&mut buf)?;
            let mut sign_ins = Vec::new();
            if is_json_array(&buf) {
                for_each_in_array(&buf, |s| sign_ins.push(s))?;
            } else {
                for_each_json_line(&buf, 0, |s| sign_ins.push(s))?;
            }
            return self.process_to(b, sign_ins, opts, sink);
        }
        drop(file);
        b.begin()?;
        let r = b
            .apply_json_lines(self, path, len, opts, sink)
            .and_then(|counts| self.finish_to(b, opts, sink).map(|()| counts));
        b.end(r.is_ok())?;
        r
    }

    /// [`JsonLinesBackend::apply_json_lines`] on the calling thread, a block at a time.
    pub(crate) fn apply_json_lines_on_this_thread<B: PresenceBackend + ?Sized>(
        &self,
        b: &mut B,
        path: &Path,
        len: u64,
        opts: &ProcessOptions,
        sink: &mut dyn EventSink,
    ) -> Result<Counts, PresenceError> {
        let days = opts.accepted();
        let mut counts = Counts::default();
        let mut failed = None;
        read_blocks(path, 0, len, |block, base| {
            if failed.is_some() {
                return Ok(());
            }
            for_each_json_line(block, base, |s| {
                if failed.is_none()
                    && let Err(e) = self.take(b, &s, days, &mut counts, sink)
                {
                    failed = Some(e);
                }
            })
        })?;
        if let Some(e) = failed {
            return Err(e);
        }
        Ok(counts)
    }
}

/// Read `from..to` of a file (both at line starts) in blocks of whole lines, handing each
/// block and its file offset to `f`. One buffer, reused: memory stays flat.
pub(crate) fn read_blocks(
    path: &Path,
    from: u64,
    to: u64,
    mut f: impl FnMut(&[u8], u64) -> Result<(), SignInParseError>,
) -> Result<(), PresenceError> {
    const BLOCK: usize = 1 << 20;
    let mut file = std::fs::File::open(path)?;
    file.seek(SeekFrom::Start(from))?;
    let mut buf = vec![0u8; BLOCK];
    let mut filled = 0usize;
    let mut pos = from; // file offset of buf[0]
    loop {
        let remaining = to - pos - filled as u64;
        let want = (remaining.min((buf.len() - filled) as u64)) as usize;
        let n = if want == 0 {
            0
        } else {
            file.read(&mut buf[filled..filled + want])?
        };
        filled += n;
        let at_end = pos + filled as u64 >= to || n == 0;
        let usable = if at_end {
            filled
        } else {
            match memchr::memrchr(b'\n', &buf[..filled]) {
                Some(k) => k + 1,
                None if filled == buf.len() => {
                    buf.resize(buf.len() * 2, 0); // a line longer than the block
                    continue;
                }
                None => continue,
            }
        };
        f(&buf[..usable], pos)?;
        if at_end {
            return Ok(());
        }
        buf.copy_within(usable..filled, 0);
        filled -= usable;
        pos += usable as u64;
    }
}

/// The first offset at or after `at` that starts a line of the file at `path`.
pub(crate) fn line_boundary(path: &Path, at: u64) -> std::io::Result<u64> {
    let mut file = std::fs::File::open(path)?;
    file.seek(SeekFrom::Start(at))?;
    let mut pos = at;
    let mut buf = [0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(pos);
        }
        if let Some(k) = memchr::memchr(b'\n', &buf[..n]) {
            return Ok(pos + k as u64 + 1);
        }
        pos += n as u64;
    }
}
