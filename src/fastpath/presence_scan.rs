//! The presences of a `getPresencesByUserId` answer, each with its object id, read
//! without building a JSON tree.
//!
//! serde checks the whole body once and hands back each presence as the raw text
//! Graph sent ([`RawValue`], borrowed); [`top_level_id`] then finds the `"id"` of
//! each presence with a byte scan (memchr over strings) instead of a second parse.
//! When the id holds an escape, or the object has an odd shape, serde reads that one
//! presence properly, so the answer is the same as serde's own, only cheaper.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::guid;

/// One presence: its object id (`None` when the id is not a GUID) and its JSON as sent.
pub type ScannedPresence<'a> = (Option<u128>, &'a RawValue);

#[derive(Deserialize)]
struct Answer<'a> {
    #[serde(borrow, default)]
    value: Vec<&'a RawValue>,
}

#[derive(Deserialize)]
struct IdOnly<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
}

/// The presences of one answer body, in the order Graph sent them. Fails as serde
/// does: on a body that is not JSON, or a presence without a string `id`.
pub fn presences(body: &str) -> serde_json::Result<Vec<ScannedPresence<'_>>> {
    let answer: Answer = serde_json::from_str(body)?;
    answer
        .value
        .into_iter()
        .map(|raw| {
            let id = match top_level_id(raw.get()) {
                Some(id) => guid::parse(id),
                // Escapes or an odd shape: let serde read it properly.
                None => {
                    let IdOnly { id } = serde_json::from_str(raw.get())?;
                    guid::parse(&id)
                }
            };
            Ok((id, raw))
        })
        .collect()
}

/// The string value of the top-level `"id"` key of one JSON object that serde
/// has already validated, found without building anything; `None` when the id
/// is missing or holds an escape (the caller then parses properly). Should the
/// key appear twice (JSON leaves that undefined), the first plain one wins.
/// Never panics, whatever the text.
pub fn top_level_id(object: &str) -> Option<&str> {
    let b = object.as_bytes();
    let skip_ws = |mut i: usize| {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        i
    };
    // The end (closing quote) of the string starting at `i` (its opening quote), and whether it has escapes.
    let string_end = |i: usize| {
        let mut j = i + 1;
        let mut escaped = false;
        while let Some(k) = b
            .get(j..)
            .and_then(|rest| memchr::memchr2(b'"', b'\\', rest))
        {
            j += k;
            if b[j] == b'"' {
                return (j, escaped);
            }
            escaped = true;
            j += 2;
        }
        (b.len().max(j), escaped)
    };
    let (mut i, mut depth, mut expect_key) = (0, 0usize, false);
    while i < b.len() {
        match b[i] {
            b'"' => {
                let (end, escaped) = string_end(i);
                if depth == 1 && expect_key && !escaped && &b[i + 1..end.min(b.len())] == b"id" {
                    let colon = skip_ws(end + 1);
                    let quote = skip_ws(colon + 1);
                    if b.get(colon) != Some(&b':') || b.get(quote) != Some(&b'"') {
                        return None;
                    }
                    let (value_end, escaped) = string_end(quote);
                    return (!escaped && value_end < b.len())
                        .then(|| &object[quote + 1..value_end]);
                }
                expect_key = false;
                i = end;
            }
            b'{' => {
                depth += 1;
                expect_key = depth == 1;
            }
            b'[' => depth += 1,
            b'}' | b']' => depth = depth.saturating_sub(1),
            b',' => expect_key = depth == 1,
            _ => {}
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use std::fmt::Write;

    use proptest::prelude::*;
    use serde_json::Value;
    use uuid::Uuid;

    use super::*;

    /// The plain path: serde reads every presence's id, `uuid` parses it.
    fn plain(body: &str) -> serde_json::Result<Vec<(Option<u128>, &str)>> {
        let answer: Answer = serde_json::from_str(body)?;
        answer
            .value
            .into_iter()
            .map(|raw| {
                let IdOnly { id } = serde_json::from_str(raw.get())?;
                let n = (id.len() == 36)
                    .then(|| Uuid::try_parse(&id).ok())
                    .flatten();
                Ok((n.map(|u| u.as_u128()), raw.get()))
            })
            .collect()
    }

    fn fast(body: &str) -> serde_json::Result<Vec<(Option<u128>, &str)>> {
        Ok(presences(body)?
            .into_iter()
            .map(|(n, raw)| (n, raw.get()))
            .collect())
    }

    /// The `"id"` serde sees at the top of one object.
    fn serde_id(object: &str) -> Option<String> {
        let v: Value = serde_json::from_str(object).ok()?;
        v.get("id")?.as_str().map(str::to_string)
    }

    #[test]
    fn top_level_id_is_found_without_parsing() {
        let p = r#"{"activity":"Away","nested":{"id":"no"},"list":[{"id":"no"}],"s":"{\"id\":\"no\"}","id":"yes","x":1}"#;
        assert_eq!(top_level_id(p), Some("yes"));
        assert_eq!(top_level_id(r#"{ "id" : "spaced" }"#), Some("spaced"));
        assert_eq!(top_level_id("{\n\t\"id\"\r\n:\t\"tabs\"}"), Some("tabs"));
        assert_eq!(top_level_id(r#"{"x":"id","y":{"id":"no"}}"#), None);
        assert_eq!(top_level_id(r#"{"id":"esc\u0041"}"#), None);
        assert_eq!(top_level_id(r#"{"id":5}"#), None);
        assert_eq!(top_level_id(r#"{"i\u0064":"x"}"#), None);
        assert_eq!(top_level_id(r#"{"é":"😀","id":"ünï"}"#), Some("ünï"));
    }

    #[test]
    fn top_level_id_survives_broken_text() {
        for s in [
            "",
            "\"",
            "{",
            "{\"",
            "{\"id",
            "{\"id\"",
            "{\"id\":",
            "{\"id\":\"",
            "{\"id\":\"abc",
            "{\"id\":\"a\\",
            "{\"id\":\"a\\\"",
            "\\",
            "{\"a\\",
            "}}}]]",
            "{\"id\"  :  ",
        ] {
            assert_eq!(top_level_id(s), None, "{s:?}");
        }
    }

    #[test]
    fn a_graph_answer_is_read_by_the_scanner_alone() {
        let ids = [
            "4562bcc8-c436-4f95-b7c0-4f8ce89dca5e",
            "4562BCC8-C436-4F95-B7C0-4F8CE89DCA5F",
        ];
        let body = format!(
            r#"{{"@odata.context":"https://graph.microsoft.com/v1.0/$metadata#Collection(microsoft.graph.presence)","value":[{{"id":"{}","availability":"Available","activity":"Available","statusMessage":null,"outOfOfficeSettings":{{"message":null,"isOutOfOffice":false}}}},{{"id":"{}","availability":"Away","activity":"Away"}}]}}"#,
            ids[0], ids[1]
        );
        let scanned = presences(&body).unwrap();
        for ((n, raw), id) in scanned.iter().zip(ids) {
            assert_eq!(top_level_id(raw.get()), Some(id));
            assert_eq!(*n, Some(Uuid::parse_str(id).unwrap().as_u128()));
        }
        assert_eq!(fast(&body).unwrap(), plain(&body).unwrap());
    }

    #[test]
    fn escapes_and_odd_ids_fall_back_to_serde() {
        let body = r#"{"value":[
            {"i\u0064":"4562bcc8-c436-4f95-b7c0-4f8ce89dca5e"},
            {"id":"4562bcc8-c436-4f95-b7c0-4f8ce89dca5\u0065"},
            {"id":"{4562bcc8-c436-4f95-b7c0-4f8ce89dca5e}"},
            {"id":"adele@contoso.com"}
        ]}"#;
        let n = 0x4562bcc8_c436_4f95_b7c0_4f8ce89dca5e;
        let ids: Vec<_> = fast(body).unwrap().into_iter().map(|(n, _)| n).collect();
        assert_eq!(ids, [Some(n), Some(n), None, None]);
        assert_eq!(fast(body).unwrap(), plain(body).unwrap());
    }

    #[test]
    fn unreadable_answers_fail_as_serde_fails() {
        for body in [
            "",
            "{",
            r#"{"value":[{"id":"x"}"#,
            r#"{"value":[{"activity":"Away"}]}"#,
            r#"{"value":[{"id":5}]}"#,
            r#"{"value":null}"#,
        ] {
            assert!(fast(body).is_err(), "{body}");
            assert!(plain(body).is_err(), "{body}");
        }
        assert_eq!(fast("{}").unwrap(), []);
    }

    /// JSON to write with chosen escapes and whitespace.
    #[derive(Debug, Clone)]
    enum J {
        Null,
        Bool(bool),
        Num(i64),
        Str(String),
        Arr(Vec<J>),
        Obj(Vec<(String, J)>),
    }

    /// The writer's choices (xorshift): whitespace between tokens, which characters
    /// become `\uXXXX` escapes (one in `escape_one_in`, none when 0, so that plain
    /// GUIDs, which the scanner reads itself, are common too).
    struct Style {
        state: u64,
        escape_one_in: u64,
    }

    impl Style {
        fn new(seed: u64) -> Self {
            let escape_one_in = [0, 0, 64, 8, 2][(seed % 5) as usize];
            Style {
                state: seed | 1,
                escape_one_in,
            }
        }
        fn next(&mut self) -> u64 {
            self.state ^= self.state << 13;
            self.state ^= self.state >> 7;
            self.state ^= self.state << 17;
            self.state
        }
        fn ws(&mut self, out: &mut String) {
            out.push_str(["", "", " ", "\n  ", "\t", "\r\n"][(self.next() % 6) as usize]);
        }
        fn escape(&mut self) -> bool {
            self.escape_one_in != 0 && self.next().is_multiple_of(self.escape_one_in)
        }
    }

    fn write_str(s: &str, out: &mut String, style: &mut Style) {
        out.push('"');
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '/' if style.escape() => out.push_str("\\/"),
                c if (c as u32) < 0x20 || style.escape() => {
                    for unit in c.encode_utf16(&mut [0; 2]) {
                        let _ = write!(out, "\\u{unit:04X}");
                    }
                }
                c => out.push(c),
            }
        }
        out.push('"');
    }

    fn write(j: &J, out: &mut String, style: &mut Style) {
        match j {
            J::Null => out.push_str("null"),
            J::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            J::Num(n) => out.push_str(&n.to_string()),
            J::Str(s) => write_str(s, out, style),
            J::Arr(items) => write_list(items, ['[', ']'], out, style, write),
            J::Obj(fields) => write_list(
                fields,
                ['{', '}'],
                out,
                style,
                |(key, value), out, style| {
                    write_str(key, out, style);
                    style.ws(out);
                    out.push(':');
                    style.ws(out);
                    write(value, out, style);
                },
            ),
        }
    }

    /// `open`, the items separated by commas amid chosen whitespace, `close`.
    fn write_list<T>(
        items: &[T],
        [open, close]: [char; 2],
        out: &mut String,
        style: &mut Style,
        item: impl Fn(&T, &mut String, &mut Style),
    ) {
        out.push(open);
        for (k, x) in items.iter().enumerate() {
            if k > 0 {
                out.push(',');
            }
            style.ws(out);
            item(x, out, style);
            style.ws(out);
        }
        out.push(close);
    }

    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z]{0,6}",
            "[\"\\\\/{}\\[\\],: \n\tié😀\u{7f}\u{1}-]{0,8}",
            Just("id".to_string()),
        ]
    }

    fn guid_text() -> impl Strategy<Value = String> {
        (any::<u128>(), any::<bool>(), any::<bool>()).prop_map(|(n, upper, braced)| {
            let s = Uuid::from_u128(n).hyphenated().to_string();
            let s = if upper { s.to_ascii_uppercase() } else { s };
            if braced { format!("{{{s}}}") } else { s }
        })
    }

    fn value() -> impl Strategy<Value = J> {
        let leaf = prop_oneof![
            Just(J::Null),
            any::<bool>().prop_map(J::Bool),
            any::<i32>().prop_map(|n| J::Num(n.into())),
            text().prop_map(J::Str),
            guid_text().prop_map(J::Str),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(J::Arr),
                prop::collection::vec((text(), inner), 0..4).prop_map(J::Obj),
            ]
        })
    }

    /// A presence-like object: other keys (some named like `id`), nested `id`s, and its
    /// own string `id` (a GUID in any case, braced, or not a GUID at all) anywhere.
    fn presence() -> impl Strategy<Value = J> {
        let key = prop_oneof![
            Just("Id".to_string()),
            Just("idx".to_string()),
            Just("activity".to_string()),
            text(),
        ];
        (
            prop::collection::vec((key, value()), 0..5),
            prop_oneof![guid_text(), text()],
            any::<prop::sample::Index>(),
        )
            .prop_map(|(fields, id, at)| {
                let mut seen = std::collections::HashSet::new();
                let mut fields: Vec<(String, J)> = fields
                    .into_iter()
                    .filter(|(k, _)| k != "id" && seen.insert(k.clone()))
                    .collect();
                fields.insert(at.index(fields.len() + 1), ("id".into(), J::Str(id)));
                J::Obj(fields)
            })
    }

    fn answer() -> impl Strategy<Value = (String, Vec<String>)> {
        (prop::collection::vec(presence(), 0..6), any::<u64>()).prop_map(|(items, seed)| {
            let mut style = Style::new(seed);
            let objects: Vec<String> = items
                .iter()
                .map(|p| {
                    let mut s = String::new();
                    write(p, &mut s, &mut style);
                    s
                })
                .collect();
            let mut body = String::from(r#"{"@odata.context":"x","value":"#);
            write_list(&objects, ['[', ']'], &mut body, &mut style, |o, out, _| {
                out.push_str(o)
            });
            body.push('}');
            (body, objects)
        })
    }

    proptest! {
        #[test]
        fn scanner_agrees_with_serde((body, objects) in answer()) {
            for object in &objects {
                if let Some(id) = top_level_id(object) {
                    prop_assert_eq!(Some(id.to_string()), serde_id(object));
                }
            }
            prop_assert_eq!(fast(&body).unwrap(), plain(&body).unwrap());
        }

        #[test]
        fn truncated_answers_fail_as_serde_fails((body, _) in answer(), cut in any::<prop::sample::Index>()) {
            let mut end = cut.index(body.len() + 1);
            while !body.is_char_boundary(end) {
                end -= 1;
            }
            let part = &body[..end];
            match (fast(part), plain(part)) {
                (Ok(f), Ok(p)) => prop_assert_eq!(f, p),
                (f, p) => prop_assert_eq!(f.is_err(), p.is_err()),
            }
            let _ = top_level_id(part);
        }

        #[test]
        fn scanner_never_panics(s in "\\PC{0,64}") {
            let _ = top_level_id(&s);
        }
    }
}
