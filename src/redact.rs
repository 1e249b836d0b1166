//! Scrubbing text a server sent before it reaches an error message, a detail or a log line.
//!
//! A token endpoint or a Graph front end (or a proxy, or a test double) that echoes the
//! request back (its form body, its `Authorization` header) would otherwise put the
//! client secret, password, refresh token, client assertion or bearer token into our
//! output (issue 19, item 7). [`scrub`] is the one function every error path that
//! carries server text calls (`auth/` for Entra's answers, `graph/` for Graph's). It
//! removes, in this order:
//!
//! 1. every secret value this process knows ([`remember`]): the asset's credentials,
//!    registered when the asset is built, and each access token, refresh token and
//!    client assertion, registered when obtained; as sent and form-url-encoded;
//! 2. whatever follows `Bearer ` / `Basic ` and the keys of the OAuth 2.0 token
//!    request and answer (`client_secret`, `password`, `refresh_token`,
//!    `client_assertion`, `access_token`, `id_token`), in
//!    form (`key=value`), header or JSON (`"key": "value"`) shape, whatever the value
//!    (after a scheme, a token68 of 8 characters or more, so prose is left alone).
//!
//! The registry is process-wide: the secrets are already in this process's memory, and
//! a value known to one asset scrubbed from another's text costs nothing. Values
//! shorter than [`MIN_LEN`] characters are not matched by value (they would match
//! ordinary words and garble messages); the patterns still catch them in an echo.

use std::sync::Mutex;

use secrecy::{ExposeSecret, SecretString};

/// What a secret becomes.
pub const REDACTED: &str = "[REDACTED]";

/// Shorter values are scrubbed by pattern only.
pub const MIN_LEN: usize = 6;

static KNOWN: Mutex<Vec<SecretString>> = Mutex::new(Vec::new());

/// Keys whose value is a credential in an OAuth 2.0 token request or answer
/// (RFC 6749 §4.3.2, §4.4.2, §5.1, §6; RFC 7523 §2.2 for `client_assertion`).
const SECRET_KEYS: [&str; 6] = [
    "client_secret",
    "password",
    "refresh_token",
    "client_assertion",
    "access_token",
    "id_token",
];

/// HTTP authentication schemes whose credentials follow them (RFC 6750 §2.1, RFC 7617).
const SCHEMES: [&str; 2] = ["bearer", "basic"];

/// Know `secret` from now on: any text later scrubbed loses it.
pub fn remember(secret: &str) {
    if secret.chars().count() < MIN_LEN {
        return;
    }
    let mut known = KNOWN.lock().unwrap_or_else(|p| p.into_inner());
    if !known.iter().any(|k| k.expose_secret() == secret) {
        known.push(SecretString::from(secret));
    }
}

/// `text` without any known secret value and without the value of any credential
/// key or authentication scheme (see the module doc).
pub fn scrub(text: &str) -> String {
    let mut out = text.to_string();
    {
        let known = KNOWN.lock().unwrap_or_else(|p| p.into_inner());
        for secret in known.iter() {
            let secret = secret.expose_secret();
            if out.contains(secret) {
                out = out.replace(secret, REDACTED);
            }
            let encoded: String = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect();
            if encoded != secret && out.contains(&encoded) {
                out = out.replace(&encoded, REDACTED);
            }
        }
    }
    for key in SECRET_KEYS {
        out = scrub_after(&out, key, true);
    }
    for scheme in SCHEMES {
        out = scrub_after(&out, scheme, false);
    }
    out
}

/// Replace the value after each case-insensitive occurrence of `word`. For a key
/// (`keyed`): `word`, an optional closing quote, spaces, `=` or `:`, spaces, an optional
/// opening quote, then the value. For a scheme: `word`, at least one space, the value.
fn scrub_after(text: &str, word: &str, keyed: bool) -> String {
    let lower = text.to_ascii_lowercase();
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut from = 0;
    while let Some(found) = lower[from..].find(word) {
        let start = from + found;
        let mut i = start + word.len();
        from = i;
        let skip_spaces = |mut i: usize| {
            while i < bytes.len() && (bytes[i] == b' ' || bytes[i] == b'\t') {
                i += 1;
            }
            i
        };
        if keyed {
            if i < bytes.len() && (bytes[i] == b'"' || bytes[i] == b'\'') {
                i += 1;
            }
            i = skip_spaces(i);
            if i >= bytes.len() || !(bytes[i] == b'=' || bytes[i] == b':') {
                continue;
            }
            i = skip_spaces(i + 1);
            if i < bytes.len() && (bytes[i] == b'"' || bytes[i] == b'\'') {
                i += 1;
            }
        } else {
            let after = skip_spaces(i);
            if after == i {
                continue;
            }
            i = after;
        }
        let value_end = bytes[i..]
            .iter()
            .position(|&b| ends_value(b))
            .map_or(bytes.len(), |p| i + p);
        if value_end == i || (!keyed && !looks_like_credential(&bytes[i..value_end])) {
            continue;
        }
        out.push_str(&text[copied..i]);
        out.push_str(REDACTED);
        copied = value_end;
        from = value_end;
    }
    out.push_str(&text[copied..]);
    out
}

/// After `Bearer `/`Basic `: a token68 (RFC 7235 §2.1) of at least 8 characters, so
/// that prose ("a basic error", "the bearer token") is left alone.
fn looks_like_credential(value: &[u8]) -> bool {
    value.len() >= 8
        && value
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"-._~+/=".contains(&b))
}

/// Where a credential value ends: a form, header, JSON or prose delimiter.
fn ends_value(b: u8) -> bool {
    matches!(
        b,
        b'&' | b'"' | b'\'' | b',' | b';' | b'}' | b']' | b')' | b'<' | b'>'
    ) || b.is_ascii_whitespace()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_lose_their_values_in_every_shape() {
        for (echo, gone) in [
            (
                "bad request: grant_type=client_credentials&client_id=app&client_secret=abc%2Bdef&scope=x",
                "abc%2Bdef",
            ),
            ("Authorization: Bearer eyJ0eXAi.eyJhdWQi.c2ln", "eyJ0eXAi"),
            ("authorization: bearer\teyJ0eXAi.x.y", "eyJ0eXAi"),
            ("{\"password\": \"hunter22\"}", "hunter22"),
            ("refresh_token=0.AR8A-rt&x=1", "0.AR8A-rt"),
            ("client_assertion=eyJhbGc.a.b", "eyJhbGc"),
            ("{'access_token':'at-value'}", "at-value"),
            ("Proxy-Authorization: Basic dXNlcjpwdw==", "dXNlcjpwdw=="),
            ("PASSWORD = pw1", "pw1"),
        ] {
            let s = scrub(echo);
            assert!(!s.contains(gone), "{echo} -> {s}");
            assert!(s.contains(REDACTED), "{echo} -> {s}");
        }
        // Text without credentials is left as it was.
        let plain = "AADSTS7000215: Invalid client secret provided. Trace ID: 1f2e";
        assert_eq!(scrub(plain), plain);
        for prose in [
            "the password policy",
            "a basic error",
            "the bearer token expired",
        ] {
            assert_eq!(scrub(prose), prose);
        }
    }

    #[test]
    fn known_values_are_removed_wherever_they_appear() {
        remember("Known-S3cret+/value");
        remember("abc"); // too short to match by value
        let s = scrub("echo: Known-S3cret+/value and Known-S3cret%2B%2Fvalue, abc");
        assert!(!s.contains("Known-S3cret"), "{s}");
        assert!(s.ends_with(", abc"), "{s}");
    }
}
