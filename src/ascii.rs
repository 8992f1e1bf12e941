//! Splitting text at one ASCII byte, for the per-request path.
//!
//! `str::split_once(';')`, `starts_with(':')` and friends take a `char` pattern: in the
//! wasm filter (opt-level "z") each call encodes the char to UTF-8 and runs std's generic
//! searcher. V8's profile of a cached session request put ~10% of the filter's time in that
//! machinery (cookie pairs, held identity names, the path's query). Splitting at an ASCII
//! byte always lands on a char boundary, so these stay safe `str` slices.

/// `s` split around the first `b` (ASCII), like `str::split_once(b as char)`.
pub fn split_once(s: &str, b: u8) -> Option<(&str, &str)> {
    let (head, tail) = s.split_at_checked(find(s.as_bytes(), b)?)?;
    Some((head, tail.get(1..)?))
}

/// The first `b` in `h`. Eight bytes at a time: a session cookie or a token is hundreds of
/// bytes, scanned for `;` on every request, and a byte loop at opt-level "z" costs ~4
/// instructions a byte (std's word-at-a-time `memchr` is not public).
pub fn find(h: &[u8], b: u8) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let pattern = ONES.wrapping_mul(u64::from(b));
    let mut at = 0;
    while let Some(chunk) = h.get(at..at + 8) {
        let Ok(word) = <[u8; 8]>::try_from(chunk) else {
            break;
        };
        let x = u64::from_le_bytes(word) ^ pattern;
        // Some byte of `x` is zero (that byte of the chunk is `b`): exact, no false hits.
        if x.wrapping_sub(ONES) & !x & HIGHS != 0 {
            break;
        }
        at += 8;
    }
    let rest = h.get(at..)?;
    rest.iter().position(|&c| c == b).map(|i| at + i)
}

/// `s` split around the last `b` (ASCII), like `str::rsplit_once(b as char)`.
pub fn rsplit_once(s: &str, b: u8) -> Option<(&str, &str)> {
    let (head, tail) = s.split_at_checked(s.bytes().rposition(|c| c == b)?)?;
    Some((head, tail.get(1..)?))
}

/// Whether `s` starts with `b` (ASCII).
pub fn starts_with(s: &str, b: u8) -> bool {
    s.as_bytes().first() == Some(&b)
}

/// `name` equals `want` (lower case) ignoring ASCII case. A plain loop that stops at the
/// first difference: std's `eq_ignore_ascii_case` compares in chunks without stopping early,
/// and cost ~700 native instructions per request in the header view where names of one
/// length differ (~120 per call in the Traefik plugin's choice of values to fetch).
#[inline]
pub fn lower_eq(name: &[u8], want: &[u8]) -> bool {
    name.len() == want.len()
        && name
            .iter()
            .zip(want)
            .all(|(a, b)| a.to_ascii_lowercase() == *b)
}

/// `s` without every leading and trailing `b` (ASCII), like `str::trim_matches(b as char)`.
pub fn trim(s: &str, b: u8) -> &str {
    let bytes = s.as_bytes();
    let start = bytes.iter().position(|&c| c != b).unwrap_or(bytes.len());
    let end = bytes.iter().rposition(|&c| c != b).map_or(start, |i| i + 1);
    s.get(start..end).unwrap_or_default()
}

/// The pieces of `s` between each `b` (ASCII), like `str::split(b as char)`.
pub fn split(s: &str, b: u8) -> Split<'_> {
    Split { rest: Some(s), b }
}

/// Iterator of [`split`].
#[derive(Debug, Clone)]
pub struct Split<'a> {
    rest: Option<&'a str>,
    b: u8,
}

impl<'a> Iterator for Split<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let s = self.rest?;
        match split_once(s, self.b) {
            Some((head, tail)) => {
                self.rest = Some(tail);
                Some(head)
            }
            None => {
                self.rest = None;
                Some(s)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_agrees_with_a_byte_loop() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for len in 0..80 {
            for _ in 0..20 {
                let h: Vec<u8> = (0..len)
                    .map(|_| {
                        seed ^= seed << 13;
                        seed ^= seed >> 7;
                        seed ^= seed << 17;
                        [b'a', b';', b'=', 0x80, 0xff, 0x3b ^ 0x80][(seed % 6) as usize]
                    })
                    .collect();
                for b in [b';', b'=', 0u8] {
                    assert_eq!(find(&h, b), h.iter().position(|&c| c == b), "{h:?} {b}");
                }
            }
        }
    }

    #[test]
    fn lower_eq_is_case_blind_on_the_name_only() {
        assert!(lower_eq(b"Cookie", b"cookie"));
        assert!(lower_eq(b"X-FORWARDED-FOR", b"x-forwarded-for"));
        assert!(!lower_eq(b"cookies", b"cookie"));
        assert!(!lower_eq(b"cookie", b"Cookie"));
        assert!(!lower_eq("c\u{f6}okie".as_bytes(), b"cookie"));
    }

    #[test]
    fn the_same_pieces_as_std() {
        for s in ["", ";", "a", "a;b", ";a;", "a;;b;", "é;ü;", "x=1; y=2;z"] {
            assert_eq!(
                split(s, b';').collect::<Vec<_>>(),
                s.split(';').collect::<Vec<_>>(),
                "{s:?}"
            );
            assert_eq!(split_once(s, b';'), s.split_once(';'), "{s:?}");
            assert_eq!(rsplit_once(s, b';'), s.rsplit_once(';'), "{s:?}");
            assert_eq!(starts_with(s, b';'), s.starts_with(';'), "{s:?}");
            assert_eq!(trim(s, b';'), s.trim_matches(';'), "{s:?}");
        }
    }
}
