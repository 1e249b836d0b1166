//! Object ids (GUIDs) as numbers, and hash tables keyed by them.
//!
//! [`parse`] reads `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` in any case with one table
//! look-up per digit and one validity check at the end, instead of `uuid`'s
//! branch per digit and error value; `get_presences` runs it twice per user (input
//! and answer). As a `u128` an id compares, hashes and lower-cases for free.
//!
//! [`IdSet`] and [`IdMap`] hash those numbers with foldhash (a few multiplies for a
//! `u128`) instead of SipHash's rounds.

use std::collections::{HashMap, HashSet};

/// Object ids, hashed with foldhash's fast hasher, keyed per process: the ids come
/// from the caller, and an unkeyed hash (Fx) lets crafted ids collide (100,000 such
/// ids, the most `get_presences` accepts, cost 8 to 10 s of probing per table against
/// a few ms for real ones, measured with a `-O` build of Fx in a std `HashSet`).
pub type IdSet = HashSet<u128, foldhash::fast::RandomState>;
/// A map keyed by object id, hashed as [`IdSet`] is.
pub type IdMap<V> = HashMap<u128, V, foldhash::fast::RandomState>;

/// An object id (`xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`, any case) as a number, as
/// [`uuid::Uuid::as_u128`] would give it; `None` for anything else, braced or
/// `urn:uuid:` forms included (Graph writes ids bare).
pub fn parse(s: &str) -> Option<u128> {
    let b = s.as_bytes();
    if b.len() != 36 || b[8] != b'-' || b[13] != b'-' || b[18] != b'-' || b[23] != b'-' {
        return None;
    }
    // A table and one check at the end: no branch per digit.
    let (mut n, mut bad) = (0u128, 0u8);
    for group in [&b[0..8], &b[9..13], &b[14..18], &b[19..23], &b[24..36]] {
        for &c in group {
            let digit = HEX[usize::from(c)];
            bad |= digit;
            n = n << 4 | u128::from(digit & 0xf);
        }
    }
    (bad & 0x80 == 0).then_some(n)
}

/// The value of each hex digit, any case; 0x80 for anything else.
const HEX: [u8; 256] = {
    let mut t = [0x80u8; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'a' as usize + i] = 10 + i as u8;
        t[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    t
};

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use uuid::Uuid;

    /// The plain path: `uuid`, limited to the bare hyphenated form.
    fn plain(s: &str) -> Option<u128> {
        if s.len() != 36 {
            return None;
        }
        Uuid::try_parse(s).ok().map(|u| u.as_u128())
    }

    #[test]
    fn guids_are_numbers_whatever_their_case() {
        let a = parse("4562bcc8-c436-4f95-b7c0-4f8ce89dca5e").unwrap();
        assert_eq!(parse("4562BCC8-C436-4F95-B7C0-4F8CE89DCA5E"), Some(a));
        assert_eq!(a, 0x4562bcc8_c436_4f95_b7c0_4f8ce89dca5e);
        assert_eq!(parse("adele@contoso.com"), None);
        assert_eq!(parse("4562bcc8xc436-4f95-b7c0-4f8ce89dca5e"), None);
        assert_eq!(parse("4562bcc8-c436-4f95-b7c0-4f8ce89dca5-"), None);
        assert_eq!(parse("4562bcc8-c436-4f95-b7c0-4f8ce89dca5g"), None);
    }

    #[test]
    fn agrees_with_uuid_on_odd_shapes() {
        for s in [
            "4562bcc8-c436-4f95-b7c0-4f8ce89dca5e",
            "4562Bcc8-C436-4f95-B7c0-4F8ce89dcA5e",
            "00000000-0000-0000-0000-000000000000",
            "ffffffff-ffff-ffff-ffff-ffffffffffff",
            "{4562bcc8-c436-4f95-b7c0-4f8ce89dca5e}",
            "urn:uuid:4562bcc8-c436-4f95-b7c0-4f8ce89dca5e",
            "4562bcc8c4364f95b7c04f8ce89dca5e",
            " 4562bcc8-c436-4f95-b7c0-4f8ce89dca5e",
            "4562bcc8-c436-4f95-b7c0-4f8ce89dca5e ",
            "4562bcc8-c436-4f95-b7c0-4f8ce89dca5",
            "4562bcc8-c436-4f95-b7c0-4f8ce89dca5e0",
            "4562bcc8-c436-4f95-b7c0+4f8ce89dca5e",
            "4562bcc8-c436-4f95-b7c0-4f8ce89dcaé",
            "4562bcc8-c436-4f95-b7c0-4f8ce89dca５",
            "",
            "-",
        ] {
            assert_eq!(parse(s), plain(s), "{s:?}");
        }
    }

    proptest! {
        #[test]
        fn agrees_with_uuid_on_any_text(s in "\\PC{0,40}") {
            prop_assert_eq!(parse(&s), plain(&s));
        }

        #[test]
        fn agrees_with_uuid_on_one_changed_character(
            n in any::<u128>(),
            at in 0usize..36,
            c in prop::sample::select(vec!['0', 'F', 'g', 'G', '-', '{', '}', ' ', '\0', 'é']),
        ) {
            let mut s = Uuid::from_u128(n).hyphenated().to_string();
            s.replace_range(at..at + 1, c.encode_utf8(&mut [0; 4]));
            prop_assert_eq!(parse(&s), plain(&s));
        }

        #[test]
        fn agrees_with_uuid_on_guids(n in any::<u128>(), upper in any::<bool>()) {
            let s = Uuid::from_u128(n).hyphenated().to_string();
            let s = if upper { s.to_ascii_uppercase() } else { s };
            prop_assert_eq!(parse(&s), Some(n));
        }
    }
}
