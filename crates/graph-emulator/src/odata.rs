//! Small OData pieces: query strings, path segments, string literals, filter
//! tokens, `$select`, and the opaque signed `$skiptoken`.

use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Decoded query pairs, in order.
#[derive(Debug, Default, Clone)]
pub(crate) struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    pub fn parse(raw: Option<&str>) -> Query {
        let pairs = raw
            .map(|q| {
                url::form_urlencoded::parse(q.as_bytes())
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect()
            })
            .unwrap_or_default();
        Query { pairs }
    }

    /// Value of a query option; OData system options are case-insensitive.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The first `$option` not in `allowed`.
    pub fn unsupported_option(&self, allowed: &[&str]) -> Option<&str> {
        self.pairs
            .iter()
            .map(|(k, _)| k.as_str())
            .find(|k| k.starts_with('$') && !allowed.iter().any(|a| a.eq_ignore_ascii_case(k)))
    }

    /// Pairs except `$skiptoken`, for rebuilding a next link.
    pub fn without_skiptoken(&self) -> Vec<(String, String)> {
        self.pairs
            .iter()
            .filter(|(k, _)| !k.eq_ignore_ascii_case("$skiptoken"))
            .cloned()
            .collect()
    }
}

/// Encode query pairs the way Graph's next links look (`$` kept, values encoded).
pub(crate) fn encode_query(pairs: &[(String, String)]) -> String {
    let mut out = String::new();
    for (k, v) in pairs {
        if !out.is_empty() {
            out.push('&');
        }
        out.push_str(k);
        out.push('=');
        out.extend(url::form_urlencoded::byte_serialize(v.as_bytes()));
    }
    out
}

/// Percent-decode one path segment.
pub(crate) fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Path segments of a Graph request (after the version), decoded; the key form
/// `users('x')` becomes `users`, `'x` (the quote marks a UPN key). `Err` is the
/// message of Graph's 400.
pub(crate) fn split_path(rest: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for raw in rest.split('/').filter(|s| !s.is_empty()) {
        let seg = percent_decode(raw)
            .ok_or_else(|| "Invalid percent-encoding in the request path.".to_string())?;
        if let Some(inner) = seg
            .strip_prefix("users(")
            .or_else(|| seg.strip_prefix("Users("))
            .and_then(|s| s.strip_suffix(')'))
        {
            let toks = tokenize(inner)?;
            let [Tok::Str(key)] = toks.as_slice() else {
                return Err(format!("Bad key in segment '{seg}'."));
            };
            out.push("users".to_string());
            out.push(format!("'{key}"));
        } else {
            out.push(seg);
        }
    }
    Ok(out)
}

/// A token of an OData expression.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok {
    Word(String),
    Str(String),
    LParen,
    RParen,
    Comma,
}

impl Tok {
    pub fn is_word(&self, w: &str) -> bool {
        matches!(self, Tok::Word(x) if x.eq_ignore_ascii_case(w))
    }
}

/// Split an OData expression into tokens; `''` inside a literal is one quote.
pub(crate) fn tokenize(s: &str) -> Result<Vec<Tok>, String> {
    let mut toks = Vec::new();
    let mut chars = s.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '(' => {
                chars.next();
                toks.push(Tok::LParen);
            }
            ')' => {
                chars.next();
                toks.push(Tok::RParen);
            }
            ',' => {
                chars.next();
                toks.push(Tok::Comma);
            }
            '\'' => {
                chars.next();
                let mut lit = String::new();
                loop {
                    match chars.next() {
                        None => return Err("unterminated string literal".into()),
                        Some('\'') => {
                            if chars.peek() == Some(&'\'') {
                                chars.next();
                                lit.push('\'');
                            } else {
                                break;
                            }
                        }
                        Some(ch) => lit.push(ch),
                    }
                }
                toks.push(Tok::Str(lit));
            }
            _ => {
                let mut w = String::new();
                while let Some(&ch) = chars.peek() {
                    if ch.is_whitespace() || matches!(ch, '(' | ')' | ',' | '\'') {
                        break;
                    }
                    w.push(ch);
                    chars.next();
                }
                toks.push(Tok::Word(w));
            }
        }
    }
    Ok(toks)
}

/// Split tokens on a top-level keyword (`and`); errors on a top-level `or`.
pub(crate) fn split_and(toks: &[Tok]) -> Result<Vec<&[Tok]>, String> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, t) in toks.iter().enumerate() {
        match t {
            Tok::LParen => depth += 1,
            Tok::RParen => depth -= 1,
            t if depth == 0 && t.is_word("and") => {
                parts.push(&toks[start..i]);
                start = i + 1;
            }
            t if depth == 0 && t.is_word("or") => {
                return Err("'or' is not supported in this filter".into());
            }
            _ => {}
        }
    }
    parts.push(&toks[start..]);
    if parts.iter().any(|p| p.is_empty()) {
        return Err("empty clause".into());
    }
    Ok(parts)
}

/// `startswith(field,'value')` as (field, value).
pub(crate) fn startswith_call(clause: &[Tok]) -> Option<(&str, &str)> {
    match clause {
        [
            Tok::Word(func),
            Tok::LParen,
            Tok::Word(field),
            Tok::Comma,
            Tok::Str(value),
            Tok::RParen,
        ] if func.eq_ignore_ascii_case("startswith") => Some((field, value)),
        _ => None,
    }
}

/// `('a','b',...)` after `in`.
pub(crate) fn parse_in_list(toks: &[Tok]) -> Result<Vec<String>, String> {
    let [Tok::LParen, inner @ .., Tok::RParen] = toks else {
        return Err("expected a parenthesised list after 'in'".into());
    };
    let mut out = Vec::new();
    for (i, t) in inner.iter().enumerate() {
        match (i % 2, t) {
            (0, Tok::Str(s)) => out.push(s.clone()),
            (1, Tok::Comma) => {}
            _ => return Err("expected a list of string literals".into()),
        }
    }
    if out.is_empty() || inner.len() % 2 == 0 {
        return Err("expected a list of string literals".into());
    }
    Ok(out)
}

/// `$select=a,b` as trimmed names.
pub(crate) fn parse_select(s: &str) -> Vec<String> {
    s.split(',')
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

/// Signs and checks paging tokens so that a client cannot forge or edit one.
pub(crate) struct PageTokens {
    key: hmac::Key,
}

/// Why a `$skiptoken` was refused.
#[derive(Debug, PartialEq)]
pub(crate) enum PageTokenError {
    Invalid,
    Expired,
}

impl PageTokens {
    pub fn new(secret: &[u8]) -> PageTokens {
        PageTokens {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
        }
    }

    /// Opaque token over `payload` (a JSON value), bound to `scope` (the query it pages).
    pub fn seal(&self, scope: &str, payload: &serde_json::Value) -> String {
        let body = serde_json::to_vec(payload).unwrap_or_default();
        let mut signed = body.clone();
        signed.extend_from_slice(scope.as_bytes());
        let tag = hmac::sign(&self.key, &signed);
        let mut raw = vec![0x45, 0x4d]; // version marker
        raw.extend_from_slice(&tag.as_ref()[..16]);
        raw.extend_from_slice(&body);
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// Check a token for `scope` and give its payload back; past its expiry (a unix
    /// second, compared with `now`) it is `Expired`.
    pub fn open(
        &self,
        scope: &str,
        token: &str,
        now: i64,
    ) -> Result<serde_json::Value, PageTokenError> {
        let raw = URL_SAFE_NO_PAD
            .decode(token.trim())
            .map_err(|_| PageTokenError::Invalid)?;
        if raw.len() < 18 || raw[..2] != [0x45, 0x4d] {
            return Err(PageTokenError::Invalid);
        }
        let (tag, body) = raw[2..].split_at(16);
        let mut signed = body.to_vec();
        signed.extend_from_slice(scope.as_bytes());
        let expect = hmac::sign(&self.key, &signed);
        if expect.as_ref()[..16] != *tag {
            return Err(PageTokenError::Invalid);
        }
        let value: serde_json::Value =
            serde_json::from_slice(body).map_err(|_| PageTokenError::Invalid)?;
        if let Some(exp) = value.get("x").and_then(|x| x.as_i64())
            && now > exp
        {
            return Err(PageTokenError::Expired);
        }
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_with_escaped_quote() {
        let t = tokenize("userPrincipalName in ('o''brien@x.com','b')").unwrap();
        assert_eq!(t[3], Tok::Str("o'brien@x.com".into()));
        assert_eq!(parse_in_list(&t[2..]).unwrap(), vec!["o'brien@x.com", "b"]);
    }

    #[test]
    fn page_tokens_detect_tampering() {
        let p = PageTokens::new(b"k");
        let t = p.seal("s", &serde_json::json!({"o": 100}));
        assert_eq!(p.open("s", &t, 0).unwrap()["o"], 100);
        assert_eq!(p.open("other", &t, 0), Err(PageTokenError::Invalid));
        let mut raw = URL_SAFE_NO_PAD.decode(&t).unwrap();
        let last = raw.len() - 2;
        raw[last] ^= 1;
        assert_eq!(
            p.open("s", &URL_SAFE_NO_PAD.encode(raw), 0),
            Err(PageTokenError::Invalid)
        );
    }
}
