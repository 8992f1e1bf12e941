//! Splitting text at one ASCII byte, for the per-request path.
//!
//! `str::split_once(';')`, `starts_with(':')` and friends take a `char` pattern: in the
//! wasm filter (opt-level "z") each call encodes the char to UTF-8 and runs std's generic
//! searcher. V8's profile of a cached session request put ~10% of the filter's time in that
//! machinery (cookie pairs, held identity names, the path's query). Splitting at an ASCII
//! byte always lands on a char boundary, so these stay safe `str` slices.

/// `s` split around the first `b` (ASCII), like `str::split_once(b as char)`.
pub fn split_once(s: &str, b: u8) -> Option<(&str, &str)> {
    let (head, tail) = s.split_at_checked(s.bytes().position(|c| c == b)?)?;
    Some((head, tail.get(1..)?))
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
        }
    }
}
