//! Building Graph paths and OData literals from untrusted values.
//!
//! An id from a playbook is data, never syntax: every value becomes exactly one
//! percent-encoded path segment, so `../me`, `a/b`, `x?y`, `#` or `%2e%2e` can
//! never change the path or add a query. A UPN that starts with `$` would be
//! read by Graph as a system segment (`$value`, `$count`), so it is addressed in
//! the key form `users('$x@y')` with the OData literal escaped.

/// A relative Graph path (after `/{api_version}/`) made only of encoded segments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphPath(String);

/// Characters left as they are in a segment: RFC 3986 unreserved plus `@`, `:`
/// and the OData key punctuation `(`, `)`, `'`, `,`, `=`, `!`, `*`, `$` we emit ourselves.
fn push_encoded(out: &mut String, raw: &str, keep_odata: bool) {
    for b in raw.bytes() {
        let keep = b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'_' | b'.' | b'~' | b'@' | b':')
            || (keep_odata && matches!(b, b'(' | b')' | b'\'' | b',' | b'=' | b'!' | b'*' | b'$'));
        if keep {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

impl GraphPath {
    /// A path of fixed segments written by us, e.g. `GraphPath::new("auditLogs/signIns")`.
    pub fn new(fixed: &str) -> Self {
        GraphPath(fixed.trim_matches('/').to_string())
    }

    /// Append one fixed segment or several (`"photo/$value"`); never pass user data here.
    pub fn then(mut self, fixed: &str) -> Self {
        self.0.push('/');
        self.0.push_str(fixed.trim_matches('/'));
        self
    }

    /// Append one untrusted value as exactly one segment.
    pub fn value(mut self, value: &str) -> Self {
        self.0.push('/');
        // `.` and `..` alone are dot-segments. WHATWG URL parsers (the url crate
        // included) collapse them even as `%2E%2E`, so the client refuses a path
        // that does not survive parsing; callers addressing users get the key form.
        if is_dot_segment(value) {
            for _ in 0..value.len() {
                self.0.push_str("%2E");
            }
        } else {
            push_encoded(&mut self.0, value, false);
        }
        self
    }

    /// `users/{id}` for an object id or UPN; `users('{upn}')` when it starts with `$`,
    /// or is `.`/`..` (which URL parsers collapse even when percent-encoded).
    pub fn user(id: &str) -> Self {
        if id.starts_with('$') || is_dot_segment(id) {
            let mut p = String::from("users(");
            push_encoded(&mut p, &odata_string(id), true);
            p.push(')');
            GraphPath(p)
        } else {
            GraphPath::new("users").value(id)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn is_dot_segment(value: &str) -> bool {
    value == "." || value == ".."
}

/// An OData string literal: single-quoted, inner quotes doubled (`o'brien` -> `'o''brien'`).
pub fn odata_string(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_single_segments() {
        for (id, want) in [
            ("../me", "users/..%2Fme"),
            ("a/b", "users/a%2Fb"),
            ("x?y", "users/x%3Fy"),
            ("#", "users/%23"),
            ("%2e%2e", "users/%252e%252e"),
            ("..", "users('..')"),
            (".", "users('.')"),
            ("adele@contoso.com", "users/adele@contoso.com"),
            ("o'brien@contoso.com", "users/o%27brien@contoso.com"),
        ] {
            assert_eq!(GraphPath::user(id).as_str(), want, "{id}");
        }
    }

    #[test]
    fn dollar_upn_uses_key_form() {
        assert_eq!(
            GraphPath::user("$x@contoso.com").as_str(),
            "users('$x@contoso.com')"
        );
        assert_eq!(
            GraphPath::user("$o'b@c.com").as_str(),
            "users('$o''b@c.com')"
        );
        assert_eq!(GraphPath::user("$a/b?c").as_str(), "users('$a%2Fb%3Fc')");
    }

    #[test]
    fn fixed_segments_follow() {
        let p = GraphPath::user("id-1").then("photo/$value");
        assert_eq!(p.as_str(), "users/id-1/photo/$value");
    }

    #[test]
    fn odata_literals_double_quotes() {
        assert_eq!(odata_string("o'brien"), "'o''brien'");
        assert_eq!(odata_string("''"), "''''''");
    }
}
