//! The events of an evaluation as JSON lines ([`EventLines`]), written as the engine
//! finds them.
//!
//! Two things keep this off the critical path of a large run:
//!
//! - **Forks.** The engine's two threads each get a fork ([`EventSink::fork`]) that
//!   encodes into a buffer of its own and takes the file's lock only to append
//!   [`BUFFER`] bytes at a time. With one sink behind one lock, the threads took turns
//!   to encode, and waited for each other most of the time they spent reporting.
//! - **Encoding by hand.** A line is appended straight into the buffer: no owned output
//!   struct (three `String`s a line), no serde `flatten` (which goes through a map).
//!   The serde types of [`super::report`] stay the definition of a line: [`Line`]
//!   derives it, the rare kinds (discovery) and any string that needs escaping go
//!   through serde, and a test holds the hand encoding to serde's, byte for byte.

use std::io::Write as _;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use schemars::JsonSchema;
use serde::Serialize;

use super::report::{AccessEventOut, DiscoveryOut, PresenceEventOut, StatusOut};
use crate::error::{Error, Result};
use crate::jsonl::PartialFile;
use ip_presence::{
    AccessEvent, DiscoveryBlock, EventSink, EventSource, Place, PresenceEvent, UserDayStatus,
};

/// A file of events, one JSON object a line, each tagged by `kind`: `access`,
/// `presence`, `superseded`, `status` or `discovery` (fields as in the inline lists).
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct OutputFile {
    pub path: String,
    pub bytes: u64,
    /// Lines of each kind.
    pub lines: LineCounts,
}

/// Lines of an output file, by kind.
#[derive(Debug, Clone, Default, Serialize, JsonSchema)]
pub struct LineCounts {
    pub access: u64,
    pub presence: u64,
    pub superseded: u64,
    pub status: u64,
    pub discovery: u64,
}

impl LineCounts {
    fn add(&mut self, o: &LineCounts) {
        self.access += o.access;
        self.presence += o.presence;
        self.superseded += o.superseded;
        self.status += o.status;
        self.discovery += o.discovery;
    }
}

/// Bytes a writer encodes before it appends them to the file.
const BUFFER: usize = 256 << 10;

/// One line of an output file: what the hand encoding must give. Only discovery lines
/// are written through it; the tests hold the other kinds' encoders to it.
#[cfg_attr(not(test), allow(dead_code))]
#[derive(Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(super) enum Line<'a> {
    Access(&'a AccessEventOut),
    Presence(&'a PresenceEventOut),
    Superseded(&'a PresenceEventOut),
    Status(&'a StatusOut),
    Discovery(&'a DiscoveryOut),
}

/// The file, shared by an [`EventLines`] and its forks.
struct Shared {
    file: PartialFile,
    lines: LineCounts,
    /// The first write error; later writes are skipped.
    error: Option<Error>,
}

/// The engine's events written as JSON lines as they are found. A fork appends what
/// it holds when its buffer is full and when it is dropped; the first write error is
/// kept (and the rest skipped) for [`EventLines::commit`] to report.
pub struct EventLines {
    shared: Arc<Mutex<Shared>>,
    buf: Vec<u8>,
    lines: LineCounts,
}

impl EventLines {
    pub fn new(file: PartialFile) -> Self {
        EventLines::to(Arc::new(Mutex::new(Shared {
            file,
            lines: LineCounts::default(),
            error: None,
        })))
    }

    fn to(shared: Arc<Mutex<Shared>>) -> Self {
        EventLines {
            shared,
            buf: Vec::with_capacity(BUFFER + 1024),
            lines: LineCounts::default(),
        }
    }

    /// After a line: append the buffer once it is full.
    #[inline]
    fn wrote(&mut self) {
        if self.buf.len() >= BUFFER {
            self.flush();
        }
    }

    fn flush(&mut self) {
        let mut shared = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        if !self.buf.is_empty() && shared.error.is_none() {
            let Shared { file, error, .. } = &mut *shared;
            if let Err(e) = file.write_bytes(&self.buf) {
                *error = Some(e);
            }
        }
        self.buf.clear();
        shared.lines.add(&std::mem::take(&mut self.lines));
    }

    pub(super) fn discovery(&mut self, blocks: &[DiscoveryBlock]) {
        for b in blocks {
            serde_line(&mut self.buf, &Line::Discovery(&b.into()));
            self.lines.discovery += 1;
            self.wrote();
        }
    }

    /// Rename the file into place: what the result says of it. Every fork must have
    /// been dropped.
    pub(super) fn commit(self) -> Result<OutputFile> {
        let shared = Arc::clone(&self.shared);
        drop(self);
        let Shared { file, lines, error } = Arc::try_unwrap(shared)
            .map_err(|_| Error::internal("an events file was committed while still written"))?
            .into_inner()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(e) = error {
            file.abandon();
            return Err(e);
        }
        let path = file.commit()?;
        let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        Ok(OutputFile { path, bytes, lines })
    }
}

impl Drop for EventLines {
    fn drop(&mut self) {
        self.flush();
    }
}

impl EventSink for EventLines {
    fn access(&mut self, event: &AccessEvent) {
        access_line(&mut self.buf, event);
        self.lines.access += 1;
        self.wrote();
    }
    fn presence(&mut self, event: &PresenceEvent, superseded: bool) {
        presence_line(&mut self.buf, event, superseded);
        if superseded {
            self.lines.superseded += 1;
        } else {
            self.lines.presence += 1;
        }
        self.wrote();
    }
    fn status(&mut self, status: &UserDayStatus) {
        status_line(&mut self.buf, status);
        self.lines.status += 1;
        self.wrote();
    }
    fn fork(&self) -> Option<Box<dyn EventSink>> {
        Some(Box::new(EventLines::to(Arc::clone(&self.shared))))
    }
}

/// `line` as serde writes it, and a newline.
fn serde_line(out: &mut Vec<u8>, line: &Line<'_>) {
    // Writing to a Vec fails only if a Serialize impl does, and these are derived.
    let _ = serde_json::to_writer(&mut *out, line);
    out.push(b'\n');
}

/// `Line::Access`, encoded by hand.
fn access_line(out: &mut Vec<u8>, e: &AccessEvent) {
    out.extend_from_slice(br#"{"kind":"access","user":"#);
    string(out, &e.user);
    out.extend_from_slice(br#","ip":""#);
    ip(out, e.ip);
    out.extend_from_slice(br#"","date":""#);
    date(out, e.date);
    out.extend_from_slice(b"\"}\n");
}

/// The start of a line of a user's day: `{"kind":…,"user":…,"date":…`.
fn day_head(out: &mut Vec<u8>, kind: &str, user: &str, day: jiff::civil::Date) {
    out.extend_from_slice(br#"{"kind":""#);
    out.extend_from_slice(kind.as_bytes());
    out.extend_from_slice(br#"","user":"#);
    string(out, user);
    out.extend_from_slice(br#","date":""#);
    date(out, day);
    out.push(b'"');
}

/// `Line::Presence` or `Line::Superseded`, encoded by hand.
fn presence_line(out: &mut Vec<u8>, e: &PresenceEvent, superseded: bool) {
    let kind = if superseded { "superseded" } else { "presence" };
    day_head(out, kind, &e.user, e.date);
    out.extend_from_slice(br#","at":""#);
    timestamp(out, e.at);
    out.push(b'"');
    place(out, e.place.as_ref());
    if let Some(range) = &e.range {
        out.extend_from_slice(br#","range":"#);
        string(out, range);
    }
    out.extend_from_slice(match e.source {
        EventSource::SignIn => br#","source":"sign_in""#.as_slice(),
        EventSource::Manual => br#","source":"manual""#.as_slice(),
    });
    if let Some(by) = &e.set_by {
        out.extend_from_slice(br#","set_by":"#);
        string(out, by);
    }
    out.extend_from_slice(b"}\n");
}

/// `Line::Status`, encoded by hand.
fn status_line(out: &mut Vec<u8>, s: &UserDayStatus) {
    day_head(out, "status", &s.user, s.date);
    place(out, s.place.as_ref());
    if let Some(since) = s.since {
        out.extend_from_slice(br#","since":""#);
        timestamp(out, since);
        out.push(b'"');
    }
    out.extend_from_slice(b"}\n");
}

/// [`super::report::Whereabouts`], flattened into the line.
fn place(out: &mut Vec<u8>, p: Option<&Place>) {
    match p {
        Some(Place::Office { location }) => {
            out.extend_from_slice(br#","location":"#);
            string(out, location);
            out.extend_from_slice(br#","remote":false"#);
        }
        Some(Place::Remote) => out.extend_from_slice(br#","remote":true"#),
        None => out.extend_from_slice(br#","remote":false"#),
    }
}

/// `s` as a JSON string. User principal names and place names need no escape (no
/// quote, backslash or control character), and are copied as they are; the rest go
/// through serde.
#[inline]
fn string(out: &mut Vec<u8>, s: &str) {
    // Every byte checked, without stopping at the first escape, so that the check
    // is vectorised.
    let plain = s
        .bytes()
        .fold(true, |ok, b| ok & (b >= 0x20) & (b != b'"') & (b != b'\\'));
    if plain {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        let _ = serde_json::to_writer(&mut *out, s);
    }
}

/// A calendar day as jiff displays it: `YYYY-MM-DD` for the years 0 to 9999, jiff's own
/// (signed, six-digit) form for the others.
#[inline]
fn date(out: &mut Vec<u8>, d: jiff::civil::Date) {
    let y = d.year();
    if !(0..=9999).contains(&y) {
        let _ = write!(out, "{d}");
        return;
    }
    let y = y as u16;
    let (m, day) = (d.month() as u8, d.day() as u8);
    out.extend_from_slice(&[
        b'0' + (y / 1000) as u8,
        b'0' + (y / 100 % 10) as u8,
        b'0' + (y / 10 % 10) as u8,
        b'0' + (y % 10) as u8,
        b'-',
        b'0' + m / 10,
        b'0' + m % 10,
        b'-',
        b'0' + day / 10,
        b'0' + day % 10,
    ]);
}

/// A timestamp as jiff displays it: `YYYY-MM-DDTHH:MM:SS`, the fraction of a second
/// without its trailing zeros (none when whole), `Z`, for instants from 1970 on (jiff's
/// last is in the year 9999); jiff's own formatting for earlier ones.
fn timestamp(out: &mut Vec<u8>, t: jiff::Timestamp) {
    let dt = jiff::tz::Offset::UTC.to_datetime(t);
    if t.as_second() < 0 {
        let _ = write!(out, "{t}");
        return;
    }
    date(out, dt.date());
    let (h, m, s) = (dt.hour() as u8, dt.minute() as u8, dt.second() as u8);
    out.extend_from_slice(&[
        b'T',
        b'0' + h / 10,
        b'0' + h % 10,
        b':',
        b'0' + m / 10,
        b'0' + m % 10,
        b':',
        b'0' + s / 10,
        b'0' + s % 10,
    ]);
    let mut f = dt.subsec_nanosecond() as u32;
    if f != 0 {
        let mut digits = 9;
        while f.is_multiple_of(10) {
            f /= 10;
            digits -= 1;
        }
        let mut buf = [b'.'; 10];
        for k in (1..=digits).rev() {
            buf[k] = b'0' + (f % 10) as u8;
            f /= 10;
        }
        out.extend_from_slice(&buf[..=digits]);
    }
    out.push(b'Z');
}

/// An address as std displays it: IPv4 dotted; IPv6 in lower-case hexadecimal groups
/// without leading zeros, the first longest run of two or more zero groups as `::`
/// (RFC 5952, section 4); an IPv4-mapped one through std's own formatting.
#[inline]
fn ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, o) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                if o >= 100 {
                    out.push(b'0' + o / 100);
                }
                if o >= 10 {
                    out.push(b'0' + o / 10 % 10);
                }
                out.push(b'0' + o % 10);
            }
        }
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some() => {
            let _ = write!(out, "{v6}");
        }
        IpAddr::V6(v6) => {
            let g = v6.segments();
            // The first longest run of zero groups, if two or more long.
            let (mut at, mut len, mut run) = (0, 0, 0);
            for (i, &x) in g.iter().enumerate() {
                run = if x == 0 { run + 1 } else { 0 };
                if run > len {
                    (at, len) = (i + 1 - run, run);
                }
            }
            let hex = |out: &mut Vec<u8>, groups: &[u16]| {
                for (i, &x) in groups.iter().enumerate() {
                    if i > 0 {
                        out.push(b':');
                    }
                    let digits = (16 - x.leading_zeros()).div_ceil(4).max(1);
                    for d in (0..digits).rev() {
                        out.push(b"0123456789abcdef"[usize::from(x >> (4 * d)) & 15]);
                    }
                }
            };
            if len > 1 {
                hex(out, &g[..at]);
                out.extend_from_slice(b"::");
                hex(out, &g[at + len..]);
            } else {
                hex(out, &g);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use jiff::civil::date as d;

    /// The hand encoding `f` gives what serde gives for `line`.
    fn same(f: impl FnOnce(&mut Vec<u8>), line: &Line<'_>) {
        let mut want = Vec::new();
        serde_line(&mut want, line);
        assert_eq!(hand(f), String::from_utf8(want).unwrap());
    }

    fn hand(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut out = Vec::new();
        f(&mut out);
        String::from_utf8(out).unwrap()
    }

    const USERS: &[&str] = &[
        "ada@contoso.com",
        "o\"brien@contoso.com",
        "back\\slash@contoso.com",
        "tab\there@contoso.com",
        "zoë@contoso.com",
        "",
        "del\u{7f}@contoso.com",
    ];

    fn places() -> Vec<Option<Place>> {
        vec![
            None,
            Some(Place::Remote),
            Some(Place::Office {
                location: "HQ \"Tower\" 3".into(),
            }),
            Some(Place::Office {
                location: "Zürich".into(),
            }),
        ]
    }

    #[test]
    fn access_lines_are_serde_s_byte_for_byte() {
        let ips: [IpAddr; 6] = [
            "0.0.0.0".parse().unwrap(),
            "10.20.30.40".parse().unwrap(),
            "255.255.255.255".parse().unwrap(),
            "2001:db8::1".parse().unwrap(),
            "::ffff:10.0.0.1".parse().unwrap(),
            "fe80::1:0:0:0".parse().unwrap(),
        ];
        let dates = [d(2024, 4, 1), d(1, 1, 9), d(9999, 12, 31), d(-12, 3, 4)];
        for user in USERS {
            for ip in ips {
                for date in dates {
                    let e = AccessEvent {
                        user: (*user).into(),
                        ip,
                        date,
                    };
                    same(|o| access_line(o, &e), &Line::Access(&(&e).into()));
                }
            }
        }
    }

    #[test]
    fn presence_and_superseded_lines_are_serde_s_byte_for_byte() {
        let ats = ["2024-04-01T06:00:00.6166903Z", "2024-04-01T06:00:00Z"];
        for user in USERS {
            for place in places() {
                for at in ats {
                    for (range, source, set_by) in [
                        (Some("Office \\ VPN".to_owned()), EventSource::SignIn, None),
                        (
                            None,
                            EventSource::Manual,
                            Some("admin\"@contoso.com".into()),
                        ),
                        (None, EventSource::Manual, None),
                    ] {
                        let e = PresenceEvent {
                            user: (*user).into(),
                            date: d(2024, 4, 1),
                            at: at.parse().unwrap(),
                            place: place.clone(),
                            range,
                            source,
                            set_by,
                        };
                        for superseded in [false, true] {
                            let out = (&e).into();
                            let line = if superseded {
                                Line::Superseded(&out)
                            } else {
                                Line::Presence(&out)
                            };
                            same(|o| presence_line(o, &e, superseded), &line);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn status_lines_are_serde_s_byte_for_byte() {
        for user in USERS {
            for place in places() {
                for since in [None, Some("2024-04-01T08:30:00.5Z".parse().unwrap())] {
                    let s = UserDayStatus {
                        user: (*user).into(),
                        date: d(2024, 4, 1),
                        place: place.clone(),
                        since,
                    };
                    same(|o| status_line(o, &s), &Line::Status(&(&s).into()));
                }
            }
        }
    }

    /// Addresses and instants at the edges of what std and jiff format: the hand
    /// encoding gives their text (IPv4-mapped and all-zero addresses, instants before
    /// 1970 and jiff's first and last).
    #[test]
    fn addresses_and_timestamps_at_the_edges_are_std_s_and_jiff_s_text() {
        for a in [
            "::",
            "::1",
            "1::",
            "::ffff:10.1.2.3",
            "::10.1.2.3",
            "2001:db8::1:0:0:1",
            "2001:0:0:1::1",
            "0.0.0.0",
            "255.255.255.255",
        ] {
            let a: IpAddr = a.parse().unwrap();
            assert_eq!(hand(|out| ip(out, a)), a.to_string());
        }
        let mut stamps: Vec<jiff::Timestamp> = [
            "1970-01-01T00:00:00Z",
            "1969-12-31T23:59:59.999Z",
            "0001-01-01T00:00:00.5Z",
            "9999-12-30T21:59:59.999999999Z",
            "2024-04-01T08:30:00.100000020Z",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
        stamps.extend([jiff::Timestamp::MIN, jiff::Timestamp::MAX]);
        for t in stamps {
            assert_eq!(hand(|out| timestamp(out, t)), t.to_string());
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        /// IPv6 addresses with runs of zero groups anywhere: std's text.
        #[test]
        fn addresses_are_std_s_text(
            g in prop::array::uniform8(prop_oneof![Just(0u16), 0u16..16, any::<u16>()]),
            v4 in any::<u32>(),
        ) {
            for a in [IpAddr::from(std::net::Ipv6Addr::from(g)), IpAddr::from(v4.to_be_bytes())] {
                prop_assert_eq!(hand(|out| ip(out, a)), a.to_string());
            }
        }

        /// Instants from a century before 1970 to 2370, whole seconds, milliseconds or
        /// nanoseconds (fractions of every length): jiff's text.
        #[test]
        fn timestamps_are_jiff_s_text(
            s in -3_155_760_000i64..12_623_040_000,
            ns in 0i64..1_000_000_000,
            unit in prop::sample::select(vec![1_000_000_000i64, 1_000_000, 1]),
        ) {
            let ns = i128::from(s) * 1_000_000_000 + i128::from(ns / unit * unit);
            let t = jiff::Timestamp::from_nanosecond(ns).unwrap();
            prop_assert_eq!(hand(|out| timestamp(out, t)), t.to_string());
        }
    }

    /// Two forks and the sink itself, writing from three threads: every line whole, once.
    #[test]
    fn forks_write_whole_lines_and_their_counts_add_up() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("events.jsonl");
        let mut lines =
            EventLines::new(PartialFile::create(&target, "/inputs/output_path").unwrap());
        let event = |i: u32| AccessEvent {
            user: format!("user{i:05}@contoso.com"),
            ip: IpAddr::from([10, 0, (i >> 8) as u8, i as u8]),
            date: d(2024, 4, 1),
        };
        std::thread::scope(|scope| {
            for t in 0..2u32 {
                let mut fork = lines.fork().unwrap();
                scope.spawn(move || {
                    for i in 0..20_000 {
                        fork.access(&event(t * 20_000 + i));
                    }
                });
            }
        });
        for i in 40_000..40_010 {
            lines.access(&event(i));
        }
        let out = lines.commit().unwrap();
        assert_eq!(out.lines.access, 40_010);
        let text = std::fs::read_to_string(&target).unwrap();
        let mut seen: Vec<&str> = text.lines().collect();
        assert_eq!(seen.len(), 40_010);
        seen.sort_unstable();
        let mut want: Vec<String> = (0..40_010)
            .map(|i| hand(|o| access_line(o, &event(i))).trim_end().to_owned())
            .collect();
        want.sort_unstable();
        assert_eq!(seen, want);
        assert_eq!(out.bytes, text.len() as u64);
    }

    #[test]
    fn a_fork_still_writing_keeps_the_file_from_being_committed() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("events.jsonl");
        let lines = EventLines::new(PartialFile::create(&target, "/inputs/output_path").unwrap());
        let mut fork = lines.fork().unwrap();
        fork.status(&UserDayStatus {
            user: "ada@contoso.com".into(),
            date: d(2024, 4, 1),
            place: None,
            since: None,
        });
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "the partial file"
        );
        assert!(lines.commit().is_err());
        drop(fork);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "nothing left: no target, no partial file"
        );
    }

    /// A write that failed (kept by whichever handle met it) fails the commit, which
    /// leaves neither the target nor the partial file.
    #[test]
    fn a_failed_write_fails_the_commit_and_removes_the_partial_file() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("events.jsonl");
        let mut lines =
            EventLines::new(PartialFile::create(&target, "/inputs/output_path").unwrap());
        lines.shared.lock().unwrap().error = Some(Error::local("cannot write: disk full"));
        let mut fork = lines.fork().unwrap();
        fork.status(&UserDayStatus {
            user: "ada@contoso.com".into(),
            date: d(2024, 4, 1),
            place: None,
            since: None,
        });
        drop(fork);
        lines.discovery(&[]);
        let e = lines.commit().unwrap_err();
        assert!(e.to_string().contains("disk full"), "{e}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
