//! JSON and YAML documents read into a `serde_json::Value` with every object key unique.
//!
//! `serde_json` (and YAML read into a `Value`) keep the last of two equal keys, so
//! `{"client_id": "a", "client_id": "b"}` silently means `b`: what a reviewer sees and
//! what runs differ (issue 19, item 11). RFC 8259 §4 says names "SHOULD be unique" and
//! that with duplicates "the behavior of software ... is unpredictable"; we refuse them,
//! naming the JSON pointer of the repeated key. The check is made while the value is
//! built (one pass, nothing allocated for it on the success path: the pointer is put
//! together only on the way out of a failure).
//!
//! YAML nesting is bounded too: YAML's parser has no depth limit of its own, and a
//! 100,000-deep document took 41 s to refuse (issue 19). [`yaml_nesting_exceeds`] is a
//! linear pre-scan that refuses documents nested deeper than [`MAX_YAML_DEPTH`] before
//! they reach the parser; serde_json stops at 128 levels by itself.

use std::cell::RefCell;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Deeper YAML is refused before parsing; a presence configuration is 4 levels deep.
pub const MAX_YAML_DEPTH: usize = 64;

/// Why a document was refused.
#[derive(Debug)]
pub enum Refusal<E> {
    /// The parser's own error (syntax, type).
    Parse(E),
    /// A key repeated in one object, at this JSON pointer (relative to the document).
    Duplicate(String),
    /// YAML nested deeper than [`MAX_YAML_DEPTH`].
    TooDeep,
}

/// Parse JSON, refusing duplicate keys.
pub fn json_from_slice(bytes: &[u8]) -> Result<Value, Refusal<serde_json::Error>> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = read(&mut de)?;
    de.end().map_err(Refusal::Parse)?;
    Ok(value)
}

/// Parse YAML into a JSON value, refusing duplicate keys and deep nesting.
pub fn yaml_from_str(text: &str) -> Result<Value, Refusal<serde_norway::Error>> {
    if yaml_nesting_exceeds(text, MAX_YAML_DEPTH) {
        return Err(Refusal::TooDeep);
    }
    read(serde_norway::Deserializer::from_str(text))
}

fn read<'de, D: Deserializer<'de>>(de: D) -> Result<Value, Refusal<D::Error>> {
    let duplicate = RefCell::new(None);
    match (Seed {
        duplicate: &duplicate,
    })
    .deserialize(de)
    {
        Ok(v) => Ok(v),
        Err(e) => match duplicate.into_inner() {
            Some(pointer) => Err(Refusal::Duplicate(pointer)),
            None => Err(Refusal::Parse(e)),
        },
    }
}

/// Builds a `Value`; on a repeated key it records the key's pointer and fails.
#[derive(Clone, Copy)]
struct Seed<'a> {
    duplicate: &'a RefCell<Option<String>>,
}

impl Seed<'_> {
    /// On the way out of a failure inside `segment`, put it in front of the pointer.
    fn prefix(&self, segment: &str) {
        if let Some(p) = self.duplicate.borrow_mut().as_mut() {
            *p = format!("/{segment}{p}");
        }
    }
}

impl<'de> DeserializeSeed<'de> for Seed<'_> {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Seed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(v.into())
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(v.into())
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        self.deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        loop {
            match seq.next_element_seed(self) {
                Ok(Some(v)) => out.push(v),
                Ok(None) => return Ok(Value::Array(out)),
                Err(e) => {
                    self.prefix(&out.len().to_string());
                    return Err(e);
                }
            }
        }
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let token = || key.replace('~', "~0").replace('/', "~1");
            if out.contains_key(&key) {
                *self.duplicate.borrow_mut() = Some(format!("/{}", token()));
                return Err(de::Error::custom("duplicate key"));
            }
            match map.next_value_seed(self) {
                Ok(v) => {
                    out.insert(key, v);
                }
                Err(e) => {
                    self.prefix(&token());
                    return Err(e);
                }
            }
        }
        Ok(Value::Object(out))
    }
}

/// Whether YAML `text` may nest deeper than `max` (a linear scan, conservative: it
/// counts indentation columns, `- `/`? `/`: ` block indicators on a line, and open
/// flow brackets outside quotes and comments; each level of real nesting costs at
/// least one of those, so a document it passes is at most that deep).
pub fn yaml_nesting_exceeds(text: &str, max: usize) -> bool {
    let mut flow = 0usize;
    for line in text.lines() {
        let indent = line.len() - line.trim_start_matches([' ', '\t']).len();
        let mut depth = indent;
        let mut quote: Option<char> = None;
        let mut prev = ' ';
        for c in line.chars() {
            match quote {
                Some(q) if c == q => quote = None,
                Some(_) => {}
                None => match c {
                    '"' | '\'' if matches!(prev, ' ' | '[' | '{' | ',' | ':') => quote = Some(c),
                    '#' if prev == ' ' || prev == '\t' => break,
                    '[' | '{' => {
                        flow += 1;
                        if flow > max {
                            return true;
                        }
                    }
                    ']' | '}' => flow = flow.saturating_sub(1),
                    '-' | '?' | ':' if prev == ' ' || prev == '-' || prev == '?' => depth += 1,
                    _ => {}
                },
            }
            prev = c;
        }
        if depth + flow > max.saturating_mul(4) || flow > max {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dup<E: std::fmt::Debug>(r: Result<Value, Refusal<E>>) -> String {
        match r {
            Err(Refusal::Duplicate(p)) => p,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn duplicate_json_keys_are_named_by_pointer() {
        assert_eq!(dup(json_from_slice(br#"{"a": 1, "a": 2}"#)), "/a");
        assert_eq!(
            dup(json_from_slice(
                br#"{"asset": {"x": 1}, "inputs": {"ids": [1, {"k/~": 1, "k/~": 2}]}}"#
            )),
            "/inputs/ids/1/k~1~0"
        );
        let v = json_from_slice(br#"{"a": [1, 2.5, null, true, "s", {"b": {}}]}"#).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"a": [1, 2.5, null, true, "s", {"b": {}}]})
        );
        assert!(matches!(json_from_slice(b"{} x"), Err(Refusal::Parse(_))));
        assert!(matches!(
            json_from_slice(b"{\"a\": }"),
            Err(Refusal::Parse(_))
        ));
    }

    #[test]
    fn duplicate_yaml_keys_are_named_by_pointer() {
        let text = "ranges:\n  - name: HQ\n    cidrs: [10.0.0.0/8]\n    name: Other\n";
        assert_eq!(dup(yaml_from_str(text)), "/ranges/0/name");
        let ok = yaml_from_str("a:\n  b: [1, {c: 2}]\n").unwrap();
        assert_eq!(ok, serde_json::json!({"a": {"b": [1, {"c": 2}]}}));
    }

    #[test]
    fn deep_yaml_is_refused_before_parsing() {
        let deep = format!("{}1{}", "[".repeat(100_000), "]".repeat(100_000));
        let started = std::time::Instant::now();
        assert!(matches!(yaml_from_str(&deep), Err(Refusal::TooDeep)));
        let block: String = (0..2_000)
            .map(|i| format!("{}a:\n", " ".repeat(i)))
            .collect();
        assert!(matches!(yaml_from_str(&block), Err(Refusal::TooDeep)));
        let dashes = format!("{}x\n", "- ".repeat(100_000));
        assert!(matches!(yaml_from_str(&dashes), Err(Refusal::TooDeep)));
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        // The example configuration passes.
        let example = include_str!("../../../examples/ip-presence.yaml");
        assert!(!yaml_nesting_exceeds(example, MAX_YAML_DEPTH));
    }
}
