//! Sign-in input: only the five fields the rules use are extracted, everything else is
//! skipped without being built into a value.
//!
//! The fast path is a small scanner over one JSON object: it reads top-level keys, takes
//! the wanted values as borrowed strings and skips every other value by counting brackets.
//! In a line without backslashes (almost every line) each quote opens or closes a string,
//! so the quotes are found 64 bytes at a time ([`Quotes`]); elsewhere strings are skipped
//! with `memchr`. It does not validate what it skips. Anything it is unsure about (an
//! escape in a wanted string, an unexpected token) falls back to serde, which gives the
//! exact answer or a precise error.

use std::borrow::Cow;

use memchr::{memchr, memchr2};
use serde::Deserialize;

/// The part of a Graph `signIn` the presence rules use.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct SignIn<'a> {
    #[serde(borrow, default)]
    pub id: Option<Cow<'a, str>>,
    #[serde(rename = "createdDateTime", borrow, default)]
    pub created_date_time: Option<Cow<'a, str>>,
    #[serde(rename = "ipAddress", borrow, default)]
    pub ip_address: Option<Cow<'a, str>>,
    #[serde(rename = "userPrincipalName", borrow, default)]
    pub user_principal_name: Option<Cow<'a, str>>,
    #[serde(default)]
    pub status: Option<SignInStatus>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub struct SignInStatus {
    #[serde(rename = "errorCode", default)]
    pub error_code: Option<i64>,
}

impl SignIn<'_> {
    /// `status.errorCode`, 0 (success) when absent.
    pub fn error_code(&self) -> i64 {
        self.status.and_then(|s| s.error_code).unwrap_or(0)
    }

    pub fn into_owned(self) -> SignIn<'static> {
        fn own(c: Option<Cow<'_, str>>) -> Option<Cow<'static, str>> {
            c.map(|c| Cow::Owned(c.into_owned()))
        }
        SignIn {
            id: own(self.id),
            created_date_time: own(self.created_date_time),
            ip_address: own(self.ip_address),
            user_principal_name: own(self.user_principal_name),
            status: self.status,
        }
    }
}

/// A sign-in that could not be read, with the byte offset of its start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("sign-in at byte {offset}: {message}")]
pub struct SignInParseError {
    pub offset: u64,
    pub message: String,
}

#[inline]
fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\n' | b'\r') {
        i += 1;
    }
    i
}

const LO: u64 = 0x0101_0101_0101_0101;
const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;

/// 0x80 in each byte of `v` that is zero, 0 elsewhere (exact: no carries between bytes).
#[inline(always)]
fn zero_bytes(v: u64) -> u64 {
    !(((v & LOW7) + LOW7) | v | LOW7)
}

/// The first `"` or `\` at or after `j`. JSON strings here are short (keys, GUIDs,
/// addresses), where eight bytes at a time beats a call into `memchr2`; long ones go there.
#[inline(always)]
fn quote_or_backslash(b: &[u8], mut j: usize) -> Option<usize> {
    let stop = b.len().min(j + 64);
    while j + 8 <= stop {
        let x = u64::from_le_bytes(b[j..j + 8].try_into().expect("8 bytes"));
        let m = zero_bytes(x ^ (LO * u64::from(b'"'))) | zero_bytes(x ^ (LO * u64::from(b'\\')));
        if m != 0 {
            return Some(j + (m.trailing_zeros() / 8) as usize);
        }
        j += 8;
    }
    if j + 8 > b.len() {
        return (j..b.len()).find(|&k| matches!(b[k], b'"' | b'\\'));
    }
    memchr2(b'"', b'\\', &b[j..]).map(|k| j + k)
}

/// `b` as text, when it is UTF-8. ASCII (Graph's ids, times and addresses, most names)
/// is told by a check of a word at a time, inlined, rather than a call to the whole UTF-8
/// validation for each short string.
#[inline(always)]
fn utf8(b: &[u8]) -> Option<&str> {
    if b.is_ascii() {
        // SAFETY: ASCII is valid UTF-8.
        Some(unsafe { std::str::from_utf8_unchecked(b) })
    } else {
        std::str::from_utf8(b).ok()
    }
}

/// Index just past the closing quote of the string whose opening quote is at `i`.
#[inline]
fn skip_string(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    loop {
        let k = quote_or_backslash(b, j)?;
        if b[k] == b'\\' {
            j = k + 2;
            if j > b.len() {
                return None;
            }
        } else {
            return Some(k + 1);
        }
    }
}

/// Index just past the value starting at `i` (not validated).
fn skip_value(b: &[u8], i: usize) -> Option<usize> {
    match *b.get(i)? {
        b'"' => skip_string(b, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            while j < b.len() {
                match b[j] {
                    b'"' => {
                        j = skip_string(b, j)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            None
        }
        _ => {
            let mut j = i;
            while j < b.len() && !matches!(b[j], b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')
            {
                j += 1;
            }
            (j > i).then_some(j)
        }
    }
}

/// A wanted string value at `i`: `Some(None)` for null, `None` to fall back.
#[inline]
fn wanted_str(b: &[u8], i: usize) -> Option<(Option<Cow<'_, str>>, usize)> {
    match *b.get(i)? {
        b'"' => {
            let k = quote_or_backslash(b, i + 1)?;
            if b[k] == b'\\' {
                return None;
            }
            let s = utf8(&b[i + 1..k])?;
            Some((Some(Cow::Borrowed(s)), k + 1))
        }
        b'n' if b[i..].starts_with(b"null") => Some((None, i + 4)),
        _ => None,
    }
}

fn scan_status(b: &[u8], i: usize) -> Option<(Option<SignInStatus>, usize)> {
    if b[i..].starts_with(b"null") {
        return Some((None, i + 4));
    }
    if *b.get(i)? != b'{' {
        return None;
    }
    let mut status = SignInStatus::default();
    let mut j = skip_ws(b, i + 1);
    if *b.get(j)? == b'}' {
        return Some((Some(status), j + 1));
    }
    loop {
        if *b.get(j)? != b'"' {
            return None;
        }
        let kend = skip_string(b, j)?;
        let key = &b[j + 1..kend - 1];
        j = skip_ws(b, kend);
        if *b.get(j)? != b':' {
            return None;
        }
        j = skip_ws(b, j + 1);
        if key == b"errorCode" {
            let end = skip_value(b, j)?;
            let text = utf8(&b[j..end])?;
            status.error_code = if text == "null" {
                None
            } else {
                Some(text.parse().ok()?)
            };
            j = end;
        } else {
            j = skip_value(b, j)?;
        }
        j = skip_ws(b, j);
        match *b.get(j)? {
            b',' => j = skip_ws(b, j + 1),
            b'}' => return Some((Some(status), j + 1)),
            _ => return None,
        }
    }
}

/// The quotes of a text without backslashes (where each one opens or closes a string),
/// found 64 bytes at a time: a window's quotes as the bits of a mask, then each quote by
/// counting zeros, instead of a search per string. The strings of a sign-in are short
/// (keys, GUIDs, addresses): a search each ended at an unpredictable byte, which cost
/// more than the search.
struct Quotes<'a> {
    b: &'a [u8],
    /// The window's first byte (a multiple of 64) and its quotes, bit `k` for `base + k`.
    base: usize,
    mask: u64,
}

impl<'a> Quotes<'a> {
    fn new(b: &'a [u8]) -> Self {
        Quotes {
            b,
            base: 0,
            mask: quote_mask(b, 0),
        }
    }

    /// The first `"` at or after `j`.
    #[inline(always)]
    fn from(&mut self, mut j: usize) -> Option<usize> {
        loop {
            if j >= self.base && j - self.base < 64 {
                let m = self.mask & (!0u64 << (j - self.base));
                if m != 0 {
                    return Some(self.base + m.trailing_zeros() as usize);
                }
                self.base += 64;
                j = self.base;
            } else {
                self.base = j & !63;
            }
            if self.base >= self.b.len() {
                return None;
            }
            self.mask = quote_mask(self.b, self.base);
        }
    }
}

/// The quotes of the 64 bytes of `b` from `base` (fewer at its end) as bits.
#[inline(always)]
fn quote_mask(b: &[u8], base: usize) -> u64 {
    match b.get(base..base + 64) {
        Some(w) => quotes_64(w.try_into().expect("64 bytes")),
        None => {
            let mut w = [0u8; 64];
            let rest = b.get(base..).unwrap_or_default();
            w[..rest.len()].copy_from_slice(rest);
            quotes_64(&w)
        }
    }
}

/// Bit `k` set where `w[k]` is `"`: four SSE2 compares (in every x86-64 processor).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn quotes_64(w: &[u8; 64]) -> u64 {
    use std::arch::x86_64::{_mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_set1_epi8};
    let mut m = 0u64;
    for (k, c) in w.chunks_exact(16).enumerate() {
        // SAFETY: SSE2 is part of the x86-64 baseline, so every x86-64 processor has
        // these instructions; the load reads the 16 bytes of `c` (`chunks_exact(16)`),
        // unaligned, which `_mm_loadu_si128` allows.
        let bits = unsafe {
            let v = _mm_loadu_si128(c.as_ptr().cast());
            _mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8)))
        };
        m |= u64::from(bits as u32 & 0xffff) << (16 * k);
    }
    m
}

/// Bit `k` set where `w[k]` is `"` (elsewhere than x86-64: left to the compiler).
#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
fn quotes_64(w: &[u8; 64]) -> u64 {
    w.iter()
        .enumerate()
        .fold(0, |m, (k, &c)| m | (u64::from(c == b'"') << k))
}

/// Index just past the object or array at `i` in a text without backslashes.
#[inline]
fn skip_nested_plain(b: &[u8], q: &mut Quotes<'_>, i: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut j = i;
    while j < b.len() {
        match b[j] {
            b'"' => {
                j = q.from(j + 1)? + 1;
                continue;
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth -= 1;
                if depth == 0 {
                    return Some(j + 1);
                }
            }
            _ => {}
        }
        j += 1;
    }
    None
}

/// The fastest path: one whole object (a JSON line, trimmed) that holds no backslash,
/// so every string ends at the next quote. Reads the top-level keys, keeps the wanted
/// values and skips the rest without validating them, like [`scan_object`]; `None`
/// for anything unexpected (the caller falls back to [`scan_object`], then serde).
///
/// Once all five wanted keys are read, the rest of the line is not scanned: only its
/// last byte is checked to close the object. In Graph's own order `status` comes before
/// the large nested values (`deviceDetail`, `location`,
/// `appliedConditionalAccessPolicies`; the response example of
/// <https://learn.microsoft.com/en-us/graph/api/signin-list>), so most of such a line is
/// never read. `pull_sign_ins` writes keys in alphabetical order (a `serde_json::Map`),
/// where `userPrincipalName` is the last key of a sign-in: its lines are read whole, as
/// before. Where the scan stops early, a wanted key repeated further on is not seen (the
/// first one counts; serde would refuse the line as a duplicate field), and a line cut
/// short just after a nested value's closing brace is not told from a whole one (cut
/// anywhere else, it does not end the object and is refused).
fn scan_plain_line(b: &[u8]) -> Option<SignIn<'_>> {
    #[inline(always)]
    fn ws(b: &[u8], j: usize) -> usize {
        match b.get(j) {
            Some(b' ' | b'\t' | b'\n' | b'\r') => skip_ws(b, j),
            _ => j,
        }
    }
    #[inline(always)]
    fn text(b: &[u8]) -> Option<Option<Cow<'_, str>>> {
        utf8(b).map(|s| Some(Cow::Borrowed(s)))
    }
    /// Bit `want` of each wanted key read.
    const ALL_FIVE: u8 = 0b11_1110;
    let mut s = SignIn::default();
    if *b.first()? != b'{' {
        return None;
    }
    let mut j = ws(b, 1);
    if *b.get(j)? == b'}' {
        return (ws(b, j + 1) == b.len()).then_some(s);
    }
    let mut read = 0u8;
    let mut q = Quotes::new(b);
    loop {
        if *b.get(j)? != b'"' {
            return None;
        }
        let kend = q.from(j + 1)?;
        let key = &b[j + 1..kend];
        j = ws(b, kend + 1);
        if *b.get(j)? != b':' {
            return None;
        }
        j = ws(b, j + 1);
        let want = match key.len() {
            2 if key == b"id" => 1,
            6 if key == b"status" => 5,
            9 if key == b"ipAddress" => 3,
            15 if key == b"createdDateTime" => 2,
            17 if key == b"userPrincipalName" => 4,
            _ => 0,
        };
        match *b.get(j)? {
            b'"' => {
                let e = q.from(j + 1)?;
                let v = &b[j + 1..e];
                match want {
                    0 => {}
                    1 => s.id = text(v)?,
                    2 => s.created_date_time = text(v)?,
                    3 => s.ip_address = text(v)?,
                    4 => s.user_principal_name = text(v)?,
                    _ => return None,
                }
                j = e + 1;
            }
            b'{' | b'[' if want == 0 => j = skip_nested_plain(b, &mut q, j)?,
            b'{' | b'n' if want == 5 => {
                let (v, e) = scan_status(b, j)?;
                s.status = v;
                j = e;
            }
            b'n' if want != 0 => {
                if !b[j..].starts_with(b"null") {
                    return None;
                }
                match want {
                    1 => s.id = None,
                    2 => s.created_date_time = None,
                    3 => s.ip_address = None,
                    4 => s.user_principal_name = None,
                    _ => return None,
                }
                j += 4;
            }
            _ if want == 0 => {
                let start = j;
                while j < b.len()
                    && !matches!(b[j], b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')
                {
                    j += 1;
                }
                if j == start {
                    return None;
                }
            }
            _ => return None,
        }
        read |= 1 << want;
        j = ws(b, j);
        match *b.get(j)? {
            b',' if read & ALL_FIVE == ALL_FIVE => {
                return (b.last() == Some(&b'}')).then_some(s);
            }
            b',' => j = ws(b, j + 1),
            b'}' => return (ws(b, j + 1) == b.len()).then_some(s),
            _ => return None,
        }
    }
}

/// Fast path over one object starting at `i`; `None` means "ask serde".
fn scan_object(b: &[u8], i: usize) -> Option<(SignIn<'_>, usize)> {
    if *b.get(i)? != b'{' {
        return None;
    }
    let mut s = SignIn::default();
    let mut j = skip_ws(b, i + 1);
    if *b.get(j)? == b'}' {
        return Some((s, j + 1));
    }
    loop {
        if *b.get(j)? != b'"' {
            return None;
        }
        let kend = skip_string(b, j)?;
        let key = &b[j + 1..kend - 1];
        j = skip_ws(b, kend);
        if *b.get(j)? != b':' {
            return None;
        }
        j = skip_ws(b, j + 1);
        // By length first: most keys are not wanted and differ in length.
        let key: &[u8] = match key.len() {
            2 | 6 | 9 | 15 | 17 => key,
            _ => b"",
        };
        j = match key {
            b"id" => {
                let (v, e) = wanted_str(b, j)?;
                s.id = v;
                e
            }
            b"createdDateTime" => {
                let (v, e) = wanted_str(b, j)?;
                s.created_date_time = v;
                e
            }
            b"ipAddress" => {
                let (v, e) = wanted_str(b, j)?;
                s.ip_address = v;
                e
            }
            b"userPrincipalName" => {
                let (v, e) = wanted_str(b, j)?;
                s.user_principal_name = v;
                e
            }
            b"status" => {
                let (v, e) = scan_status(b, j)?;
                s.status = v;
                e
            }
            _ => skip_value(b, j)?,
        };
        j = skip_ws(b, j);
        match *b.get(j)? {
            b',' => j = skip_ws(b, j + 1),
            b'}' => return Some((s, j + 1)),
            _ => return None,
        }
    }
}

/// Read one sign-in object from `text` (already trimmed to the object, as a line of JSON
/// lines is). `offset` is only used in the error.
pub fn parse_sign_in(text: &[u8], offset: u64) -> Result<SignIn<'_>, SignInParseError> {
    parse_known(text, offset, memchr(b'\\', text).is_none())
}

/// [`parse_sign_in`] when whether `text` holds a backslash is known (`plain`: none).
fn parse_known(text: &[u8], offset: u64, plain: bool) -> Result<SignIn<'_>, SignInParseError> {
    if plain && let Some(s) = scan_plain_line(text) {
        return Ok(s);
    }
    if let Some((s, end)) = scan_object(text, 0)
        && skip_ws(text, end) == text.len()
    {
        return Ok(s);
    }
    serde_json::from_slice(text).map_err(|e| SignInParseError {
        offset,
        message: e.to_string(),
    })
}

/// Call `f` for every sign-in of a JSON-lines buffer (blank lines are skipped).
/// `base` is the buffer's offset in its file, for error messages.
pub fn for_each_json_line<'a>(
    buf: &'a [u8],
    base: u64,
    mut f: impl FnMut(SignIn<'a>),
) -> Result<(), SignInParseError> {
    let mut start = 0;
    while start < buf.len() {
        // One pass finds the line's end and whether it holds a backslash.
        let (end, plain) = match memchr2(b'\n', b'\\', &buf[start..]) {
            Some(k) if buf[start + k] == b'\n' => (start + k, true),
            Some(k) => {
                let k = start + k;
                (memchr(b'\n', &buf[k..]).map_or(buf.len(), |e| k + e), false)
            }
            None => (buf.len(), true),
        };
        let line = &buf[start..end];
        let a = skip_ws(line, 0);
        if a < line.len() {
            let mut z = line.len();
            while z > a && matches!(line[z - 1], b' ' | b'\t' | b'\r') {
                z -= 1;
            }
            f(parse_known(&line[a..z], base + (start + a) as u64, plain)?);
        }
        start = end + 1;
    }
    Ok(())
}

/// Call `f` for every element of a JSON array of sign-ins.
pub fn for_each_in_array<'a>(
    buf: &'a [u8],
    mut f: impl FnMut(SignIn<'a>),
) -> Result<(), SignInParseError> {
    let err = |offset: usize, message: &str| SignInParseError {
        offset: offset as u64,
        message: message.to_owned(),
    };
    let mut j = skip_ws(buf, 0);
    if buf.get(j) != Some(&b'[') {
        return Err(err(j, "expected a JSON array of sign-ins"));
    }
    j = skip_ws(buf, j + 1);
    if buf.get(j) == Some(&b']') {
        return expect_end(buf, j + 1);
    }
    loop {
        let end = match scan_object(buf, j) {
            Some((s, end)) => {
                f(s);
                end
            }
            None => {
                let end = skip_value(buf, j).ok_or_else(|| err(j, "unterminated value"))?;
                f(parse_sign_in(&buf[j..end], j as u64)?);
                end
            }
        };
        j = skip_ws(buf, end);
        match buf.get(j) {
            Some(b',') => j = skip_ws(buf, j + 1),
            Some(b']') => return expect_end(buf, j + 1),
            _ => return Err(err(j, "expected ',' or ']' after a sign-in")),
        }
    }
}

fn expect_end(buf: &[u8], j: usize) -> Result<(), SignInParseError> {
    let k = skip_ws(buf, j);
    if k == buf.len() {
        Ok(())
    } else {
        Err(SignInParseError {
            offset: k as u64,
            message: "trailing data after the array".into(),
        })
    }
}

/// Whether a buffer holds a JSON array (first non-blank byte `[`) rather than JSON lines.
pub fn is_json_array(buf: &[u8]) -> bool {
    buf.get(skip_ws(buf, 0)) == Some(&b'[')
}

/// Parse a whole buffer (array or JSON lines) into owned sign-ins. For small inputs
/// such as an action's inline `sign_ins`; files are read in blocks by `PresenceEngine::process_file`.
pub fn parse_all(buf: &[u8]) -> Result<Vec<SignIn<'_>>, SignInParseError> {
    let mut out = Vec::new();
    if is_json_array(buf) {
        for_each_in_array(buf, |s| out.push(s))?;
    } else {
        for_each_json_line(buf, 0, |s| out.push(s))?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_path_extracts_the_five_fields_and_skips_the_rest() {
        let line = br#"{"id":"a1","createdDateTime":"2024-05-01T09:00:00.1234567Z","userDisplayName":"A \"quoted\" {name}","userPrincipalName":"Alice@Contoso.com","ipAddress":"10.0.0.1","status":{"errorCode":50126,"failureReason":"x","additionalDetails":null},"location":{"city":"B","geoCoordinates":{"latitude":1.5,"longitude":-2e3}},"riskEventTypes":[],"appliedConditionalAccessPolicies":[{"id":"p","enforcedGrantControls":["Mfa"]}],"isInteractive":true}"#;
        let (s, end) = scan_object(line, 0).expect("fast path");
        assert_eq!(end, line.len());
        assert_eq!(s.id.as_deref(), Some("a1"));
        assert_eq!(s.user_principal_name.as_deref(), Some("Alice@Contoso.com"));
        assert_eq!(s.ip_address.as_deref(), Some("10.0.0.1"));
        assert_eq!(s.error_code(), 50126);
        let slow: SignIn = serde_json::from_slice(line).unwrap();
        assert_eq!(s, slow);
    }

    #[test]
    fn the_plain_line_path_agrees_with_serde() {
        let lines: [&[u8]; 6] = [
            br#"{"id":"a1","createdDateTime":"2024-05-01T09:00:00.1234567Z","userDisplayName":"A {name}]","userPrincipalName":"Alice@Contoso.com","ipAddress":"10.0.0.1","status":{"errorCode":50126,"failureReason":"x","additionalDetails":null},"location":{"city":"B","geoCoordinates":{"latitude":1.5,"longitude":-2e3}},"riskEventTypes":[],"appliedConditionalAccessPolicies":[{"id":"p","enforcedGrantControls":["Mfa"]}],"isInteractive":true}"#,
            br#" { "id" : "x" , "ipAddress" : null , "status" : null , "n" : 12 } "#,
            br#"{"userPrincipalName":"b@x","id":"1","status":{}}"#,
            br#"{}"#,
            br#"{"a":[1,{"b":"}"}],"c":{"d":["]"]},"createdDateTime":"t"}"#,
            "{\"id\":\"é\",\"userPrincipalName\":\"ü@x\"}".as_bytes(),
        ];
        for line in lines {
            let fast = scan_plain_line(line.trim_ascii()).expect("fast path");
            let slow: SignIn = serde_json::from_slice(line).unwrap();
            assert_eq!(fast, slow, "{}", String::from_utf8_lossy(line));
        }
        // Not for the fast path: serde decides.
        for line in [
            &br#"{"id":1}"#[..],
            br#"{"status":"x"}"#,
            br#"{"id":"1"} x"#,
            br#"{"id":"1""#,
            br#"{"id" "1"}"#,
        ] {
            assert_eq!(
                scan_plain_line(line),
                None,
                "{}",
                String::from_utf8_lossy(line)
            );
            assert!(parse_sign_in(line, 0).is_err());
        }
    }

    /// Quotes are found 64 bytes at a time: strings, keys and nested values that start,
    /// end or span the edges of those windows read as serde reads them.
    #[test]
    fn the_plain_line_path_reads_across_its_64_byte_windows() {
        for pad in 0..140 {
            let x = "x".repeat(pad);
            let long = "y".repeat(64 + pad);
            let line = format!(
                r#"{{"p{x}":"{x}","n":[{{"k":"{long}"}},"]{x}"],"id":"{x}1","createdDateTime":"{long}","t":true,"ipAddress":"10.0.0.{pad}","userPrincipalName":"{x}@a","status":{{"errorCode":{pad}}},"z":"{long}"}}"#
            );
            let fast = scan_plain_line(line.as_bytes()).expect("fast path");
            let slow: SignIn = serde_json::from_str(&line).unwrap();
            assert_eq!(fast, slow, "{line}");
            assert_eq!(fast.error_code(), pad as i64);
            // Cut at any point, the line is refused (or read as serde reads it).
            for cut in (1..line.len()).step_by(7) {
                let part = &line.as_bytes()[..cut];
                if let Some(s) = scan_plain_line(part) {
                    assert_eq!(
                        Ok(s),
                        serde_json::from_slice::<SignIn>(part).map_err(|_| ())
                    );
                }
            }
        }
    }

    #[test]
    fn the_rest_of_a_line_after_the_five_keys_is_skipped_but_its_end_is_checked() {
        let line = br#"{"id":"1","createdDateTime":"t","userPrincipalName":"a@x","ipAddress":"10.0.0.1","status":{"errorCode":0},"location":{"city":"B","state":"W"},"x":[1]}"#;
        let fast = scan_plain_line(line).expect("fast path");
        assert_eq!(fast, serde_json::from_slice::<SignIn>(line).unwrap());
        assert_eq!(fast.error_code(), 0);
        // Cut inside the part not read: it no longer ends the object.
        let cut = &line[..line.len() - 8];
        assert_eq!(scan_plain_line(cut), None);
        assert!(parse_sign_in(cut, 0).is_err());
    }

    #[test]
    fn escapes_fall_back_to_serde() {
        let line = br#"{"id":"a\u0031","userPrincipalName":null,"status":{}}"#;
        let s = parse_sign_in(line, 0).unwrap();
        assert_eq!(s.id.as_deref(), Some("a1"));
        assert_eq!(s.user_principal_name, None);
        assert_eq!(s.error_code(), 0);
    }

    #[test]
    fn broken_lines_are_reported_with_offset() {
        let buf = b"{\"id\":\"1\"}\n{\"id\": \n";
        let e = for_each_json_line(buf, 100, |_| {}).unwrap_err();
        assert_eq!(e.offset, 111);
    }

    #[test]
    fn arrays_and_lines_read_the_same() {
        let a = br#" [ {"id":"1","ipAddress":"1.2.3.4"} , {"id":"2","x":[1,{"y":"]"}]} ] "#;
        let l = b"{\"id\":\"1\",\"ipAddress\":\"1.2.3.4\"}\n\n{\"id\":\"2\",\"x\":[1,{\"y\":\"]\"}]}\r\n";
        assert_eq!(parse_all(a).unwrap(), parse_all(l).unwrap());
        assert_eq!(parse_all(a).unwrap().len(), 2);
        assert!(parse_all(b"[{\"id\":1}]").is_err());
    }
}
