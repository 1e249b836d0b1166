//! A caller's `$filter` is ANDed with the time window: [`check_user_filter`] makes sure
//! it cannot break out of the AND or move the window, and [`has_top_level_or`] tells
//! whether it needs parentheses.

use crate::error::{Error, Result};

/// Check a user `$filter` before it is ANDed with the time window: parentheses must
/// balance outside string literals (so it cannot close ours), quotes must close, and
/// it must not constrain `createdDateTime` itself. Errors are relative (`""`).
pub fn check_user_filter(filter: &str) -> Result<()> {
    let mut depth: i64 = 0;
    let mut in_string = false;
    let mut chars = filter.chars().peekable();
    let mut outside = String::new();
    while let Some(ch) = chars.next() {
        if in_string {
            if ch == '\'' {
                if chars.peek() == Some(&'\'') {
                    chars.next();
                } else {
                    in_string = false;
                }
            }
            continue;
        }
        match ch {
            '\'' => in_string = true,
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth < 0 {
                    return Err(Error::invalid("", "has a `)` without its `(`"));
                }
            }
            _ => {}
        }
        outside.push(ch);
    }
    if in_string {
        return Err(Error::invalid(
            "",
            "has an unclosed string literal (write a quote inside a literal as '')",
        ));
    }
    if depth != 0 {
        return Err(Error::invalid("", "has a `(` without its `)`"));
    }
    if outside.to_ascii_lowercase().contains("createddatetime") {
        return Err(Error::invalid(
            "",
            "must not constrain createdDateTime: the time window comes from `since`, `until` \
             and the state's cursor",
        ));
    }
    Ok(())
}

/// Whether `filter` has an `or` outside parentheses and string literals.
pub(super) fn has_top_level_or(filter: &str) -> bool {
    let (mut depth, mut in_string, mut word) = (0i32, false, String::new());
    let mut chars = filter.chars().peekable();
    let mut found = false;
    let mut end_word = |word: &mut String, depth: i32| {
        found |= depth == 0 && word.eq_ignore_ascii_case("or");
        word.clear();
    };
    while let Some(ch) = chars.next() {
        if in_string {
            if ch == '\'' && chars.next_if_eq(&'\'').is_none() {
                in_string = false;
            }
            continue;
        }
        if ch.is_alphanumeric() || ch == '_' || ch == '/' || ch == '.' {
            word.push(ch);
            continue;
        }
        end_word(&mut word, depth);
        match ch {
            '\'' => in_string = true,
            '(' => depth += 1,
            ')' => depth -= 1,
            _ => {}
        }
    }
    end_word(&mut word, depth);
    found
}
