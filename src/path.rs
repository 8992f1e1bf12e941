//! Request paths as rules see them: normalized once (RFC 3986 dot segments, unreserved
//! escapes decoded, duplicate slashes merged, `;` parameters set aside for matching), and
//! refused when they cannot be normalized safely — never guessed. A leaf: `config` checks
//! the paths rules are written with here, `route` matches the normalized ones.

use std::borrow::Cow;

use std::fmt;

/// Why a request path was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PathError {
    /// Not an origin-form path (`/...`).
    NotAbsolute,
    /// `%2F`/`%5C`: servers disagree on whether it separates segments.
    EncodedSlash,
    /// A raw `\`: some servers treat it as `/`.
    Backslash,
    /// NUL, control characters, spaces or `#`.
    BadCharacter,
    /// A `%` not followed by two hex digits.
    BadPercentEncoding,
    /// `..` climbing above the root.
    AboveRoot,
    /// `..;x` or `.;x`: Tomcat-style servers read these as dot segments.
    DotSegmentWithParameters,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathError::NotAbsolute => "path_not_absolute",
            PathError::EncodedSlash => "path_encoded_slash",
            PathError::Backslash => "path_backslash",
            PathError::BadCharacter => "path_bad_character",
            PathError::BadPercentEncoding => "path_bad_percent_encoding",
            PathError::AboveRoot => "path_above_root",
            PathError::DotSegmentWithParameters => "path_dot_segment_parameters",
        })
    }
}

/// A request path after normalization.
///
/// Borrowed from the request where nothing changed (most requests: [`already_normal`]), so
/// a normal path costs no allocation on every request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalizedPath<'a> {
    /// Dot segments resolved, slashes merged, unreserved escapes decoded, other escapes in
    /// upper case; `;` parameters kept. This is what the upstream is sent.
    pub path: Cow<'a, str>,
    /// `path` with each segment's `;` parameters removed (a segment that is only parameters
    /// vanishes, as an empty one would): what rules are matched against, since servers that
    /// honour parameters ignore them when routing.
    pub match_path: Cow<'a, str>,
    /// The query, without `?`, untouched.
    pub query: Option<&'a str>,
}

impl NormalizedPath<'_> {
    /// Path and query as sent upstream.
    pub fn path_and_query(&self) -> String {
        match &self.query {
            Some(q) => format!("{}?{}", self.path, q),
            None => self.path.to_string(),
        }
    }
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn hex_upper(n: u8) -> char {
    char::from_digit(u32::from(n), 16).map_or('0', |c| c.to_ascii_uppercase())
}

pub(crate) fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Whether a path is already in normalized form: only plain ASCII (no escapes, `;`, `\\`,
/// controls), no `//`, no `.` or `..` segment. Most requests are; they skip the two passes.
fn already_normal(path: &str) -> bool {
    let b = path.as_bytes();
    if b.first() != Some(&b'/') {
        return false;
    }
    let dot_segment = |seg: &[u8]| seg == b"." || seg == b"..";
    let mut seg_start = 0;
    let mut prev_slash = false;
    for (i, &c) in b.iter().enumerate() {
        match c {
            b'/' => {
                if prev_slash || b.get(seg_start..i).is_some_and(dot_segment) {
                    return false;
                }
                prev_slash = true;
                seg_start = i + 1;
            }
            b'%' | b';' | b'\\' | b'#' | 0..=0x20 | 0x7f..=0xff => return false,
            _ => prev_slash = false,
        }
    }
    !b.get(seg_start..).is_some_and(dot_segment)
}

/// Normalizes an origin-form request target (`/path?query`).
pub fn normalize_path(raw: &str) -> Result<NormalizedPath<'_>, PathError> {
    let (path, query) = match crate::ascii::split_once(raw, b'?') {
        Some((p, q)) => (p, Some(q)),
        None => (raw, None),
    };
    if !crate::ascii::starts_with(path, b'/') {
        return Err(PathError::NotAbsolute);
    }
    if let Some(q) = &query {
        if q.bytes().any(|b| b < 0x20 || b == 0x7f || b == b'#') {
            return Err(PathError::BadCharacter);
        }
    }
    if already_normal(path) {
        return Ok(NormalizedPath {
            path: Cow::Borrowed(path),
            match_path: Cow::Borrowed(path),
            query,
        });
    }
    normalize_slow(path, query)
}

/// The two passes, for paths that are not [`already_normal`].
fn normalize_slow<'a>(path: &str, query: Option<&'a str>) -> Result<NormalizedPath<'a>, PathError> {
    // Pass 1: decode unreserved escapes, canonicalize the others, refuse the dangerous.
    let bytes = path.as_bytes();
    let mut decoded = String::with_capacity(path.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'%' => {
                let hi = bytes.get(i + 1).copied().and_then(hex_val);
                let lo = bytes.get(i + 2).copied().and_then(hex_val);
                let (Some(hi), Some(lo)) = (hi, lo) else {
                    return Err(PathError::BadPercentEncoding);
                };
                let v = hi * 16 + lo;
                match v {
                    b'/' | b'\\' => return Err(PathError::EncodedSlash),
                    0..=0x1f | 0x7f => return Err(PathError::BadCharacter),
                    _ if is_unreserved(v) => decoded.push(char::from(v)),
                    _ => {
                        decoded.push('%');
                        decoded.push(hex_upper(hi));
                        decoded.push(hex_upper(lo));
                    }
                }
                i += 3;
            }
            b'\\' => return Err(PathError::Backslash),
            0..=0x20 | 0x7f | b'#' => return Err(PathError::BadCharacter),
            _ => {
                // Multi-byte UTF-8 is copied byte-run by byte-run via the str API below.
                let ch_len = utf8_len(b);
                let end = (i + ch_len).min(bytes.len());
                match path.get(i..end) {
                    // C1 controls (U+0080..U+009F) are control characters too (NEL among them).
                    Some(s) if !s.chars().any(char::is_control) => decoded.push_str(s),
                    _ => return Err(PathError::BadCharacter),
                }
                i = end;
            }
        }
    }

    // Pass 2: segments. Empty segments merge (`//`), `.` vanishes, `..` pops.
    let ends_with_slash = decoded.ends_with('/');
    let mut segs: Vec<&str> = Vec::new();
    let mut trailing = ends_with_slash;
    for seg in decoded.split('/').skip(1) {
        let (base, has_params) = match seg.split_once(';') {
            Some((b, _)) => (b, true),
            None => (seg, false),
        };
        match base {
            "" if !has_params => {
                trailing = true;
                continue;
            }
            "." | ".." if has_params => return Err(PathError::DotSegmentWithParameters),
            "." => trailing = true,
            ".." => {
                if segs.pop().is_none() {
                    return Err(PathError::AboveRoot);
                }
                trailing = true;
            }
            _ => {
                segs.push(seg);
                trailing = false;
            }
        }
    }
    let trailing = trailing || ends_with_slash;
    let mut out = String::with_capacity(decoded.len());
    let mut match_out = String::with_capacity(decoded.len());
    for s in &segs {
        out.push('/');
        out.push_str(s);
        // A segment that is only parameters (`/;x/admin`) is an empty segment to a server
        // that drops parameters (`//admin`, merged to `/admin`): it must vanish from the
        // match path too, or `/;x/admin/` would slip past a rule for `/admin/`.
        let base = s.split(';').next().unwrap_or(s);
        if !base.is_empty() {
            match_out.push('/');
            match_out.push_str(base);
        }
    }
    if segs.is_empty() || trailing {
        out.push('/');
    }
    let last_is_params = segs
        .last()
        .is_some_and(|s| s.split(';').next().is_some_and(str::is_empty));
    if segs.is_empty() || trailing || last_is_params || match_out.is_empty() {
        match_out.push('/');
    }
    Ok(NormalizedPath {
        path: Cow::Owned(out),
        match_path: Cow::Owned(match_out),
        query,
    })
}

fn utf8_len(first: u8) -> usize {
    match first {
        0xf0..=0xff => 4,
        0xe0..=0xef => 3,
        0xc0..=0xdf => 2,
        _ => 1,
    }
}

/// Checks a path written in the config: it must already be in normalized form, or the rule
/// could never match what requests are normalized to.
pub(crate) fn check_config_path(p: &str) -> Result<(), String> {
    if !p.starts_with('/') {
        return Err(format!("{p:?} must start with '/'"));
    }
    if p.contains('?') {
        return Err(format!(
            "{p:?}: rules match the path only; remove the query"
        ));
    }
    match normalize_path(p) {
        Ok(n) if n.path == p => Ok(()),
        Ok(n) => Err(format!(
            "{p:?} is not in normalized form; write {:?}",
            n.path
        )),
        Err(e) => Err(format!("{p:?} cannot be normalized ({e})")),
    }
}

/// Largest automaton a `path_regex` may compile to (regex-lite's NFA size, bytes).
///
/// regex-lite never backtracks: a match costs O(m·n) for an automaton of size m and a path
/// of n bytes, so no path can make a pattern super-linear. But m is the config's to choose,
/// and bounded repetitions expand: `(?:(?:[a-z]{0,30}){0,30}){0,30}` compiles under the
/// crate's own 10 MiB default and then spends seconds on one 8 KiB path (measured). 16 KiB
/// holds every realistic rule (`/[a-z0-9-]{1,64}/feed\.(rss|atom)` needs 8) and caps the
/// worst pattern's cost per request; `bench/regex_cost.py` measures it in instructions.
pub const PATH_REGEX_MAX_NFA_BYTES: usize = 16 * 1024;

/// Compiles a rule's `path_regex`, anchored at both ends, within the size bound.
pub(crate) fn path_regex(re: &str) -> Result<regex_lite::Regex, String> {
    regex_lite::RegexBuilder::new(&format!("^(?:{re})$"))
        .size_limit(PATH_REGEX_MAX_NFA_BYTES)
        .build()
        .map_err(|e| {
            let e = e.to_string();
            if e.contains("exceeded size limit") {
                format!(
                    "compiles to an automaton over {} KiB (bounded repetitions such as \
                     {{0,500}} expand): simplify it",
                    PATH_REGEX_MAX_NFA_BYTES / 1024
                )
            } else {
                e
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fast_path_agrees_with_the_two_passes() {
        let corpus = [
            "/",
            "/app/",
            "/app",
            "/a/b/c",
            "/a-b_c~d/e.f",
            "/.well-known/x",
            "/a/.b/..c/",
            "/a/b..",
            "/x:y@z!$&'()*+,=",
            "//",
            "/a//b",
            "/./",
            "/a/.",
            "/a/..",
            "/..",
            "/a/./b",
            "/a;b",
            "/%41",
            "/a\\b",
            "/a b",
            "/ä",
            "/a/b/",
            "/.",
            "/..a",
            "/a..",
        ];
        for p in corpus {
            if already_normal(p) {
                let slow = normalize_slow(p, None).unwrap();
                assert_eq!((&*slow.path, &*slow.match_path), (p, p), "{p}");
            }
        }
        for p in ["/", "/app/", "/a/.b/..c/", "/.well-known/x", "/a/b.."] {
            assert!(already_normal(p), "{p}");
        }
        for p in [
            "//", "/a//b", "/./", "/a/.", "/a/..", "/..", "/.", "/a;b", "/%41", "/ä",
        ] {
            assert!(!already_normal(p), "{p}");
        }
    }

    fn n(p: &str) -> Result<String, PathError> {
        normalize_path(p).map(|n| n.path_and_query())
    }
    fn m(p: &str) -> String {
        normalize_path(p).unwrap().match_path.into_owned()
    }

    #[test]
    fn dot_segments_and_duplicate_slashes_resolve() {
        assert_eq!(n("/api/../admin"), Ok("/admin".into()));
        assert_eq!(n("//api/..//admin"), Ok("/admin".into()));
        assert_eq!(n("/a/./b/"), Ok("/a/b/".into()));
        assert_eq!(n("/a/b/.."), Ok("/a/".into()));
        assert_eq!(n("/"), Ok("/".into()));
        assert_eq!(n("/a?x=/../y"), Ok("/a?x=/../y".into()));
    }

    #[test]
    fn encoded_dots_decode_before_resolution_in_any_case() {
        assert_eq!(n("/api/%2e%2e/admin"), Ok("/admin".into()));
        assert_eq!(n("/api/%2E%2e/admin"), Ok("/admin".into()));
        assert_eq!(n("/api/.%2E/admin"), Ok("/admin".into()));
        assert_eq!(n("/%61pi/x"), Ok("/api/x".into()));
    }

    #[test]
    fn other_escapes_are_kept_in_upper_case() {
        assert_eq!(n("/a%20b/%c3%a9"), Ok("/a%20b/%C3%A9".into()));
        assert_eq!(n("/a%25b"), Ok("/a%25b".into()), "no double decoding");
    }

    #[test]
    fn unsafe_paths_are_refused() {
        assert_eq!(n("/api%2f..%2fadmin"), Err(PathError::EncodedSlash));
        assert_eq!(n("/api%2F..%2Fadmin"), Err(PathError::EncodedSlash));
        assert_eq!(n("/api%5c..%5cadmin"), Err(PathError::EncodedSlash));
        assert_eq!(n("/api\\..\\admin"), Err(PathError::Backslash));
        assert_eq!(n("/a%00b"), Err(PathError::BadCharacter));
        // Found by the path_route fuzz target: raw C1 controls passed through.
        assert_eq!(n("/a\u{85}b"), Err(PathError::BadCharacter));
        assert_eq!(n("/*/\u{581}:\u{81}"), Err(PathError::BadCharacter));
        assert_eq!(
            n("/a%C2%85b"),
            Ok("/a%C2%85b".into()),
            "escaped stays escaped"
        );
        assert_eq!(n("/a b"), Err(PathError::BadCharacter));
        assert_eq!(n("/a%zz"), Err(PathError::BadPercentEncoding));
        assert_eq!(n("/a%4"), Err(PathError::BadPercentEncoding));
        assert_eq!(n("/.."), Err(PathError::AboveRoot));
        assert_eq!(n("/a/../../b"), Err(PathError::AboveRoot));
        assert_eq!(
            n("/api/..;/admin"),
            Err(PathError::DotSegmentWithParameters)
        );
        assert_eq!(
            n("/api/.;x/admin"),
            Err(PathError::DotSegmentWithParameters)
        );
        assert_eq!(n("api"), Err(PathError::NotAbsolute));
        assert_eq!(n("*"), Err(PathError::NotAbsolute));
    }

    #[test]
    fn parameters_are_ignored_for_matching_but_kept_upstream() {
        let p = normalize_path("/admin;jsessionid=1/x").unwrap();
        assert_eq!(p.path, "/admin;jsessionid=1/x");
        assert_eq!(p.match_path, "/admin/x");
        assert_eq!(m("/api;x/../admin"), "/admin");
        assert_eq!(m("/admin;"), "/admin");
    }

    /// Found by the path_route fuzz target: `/;x/admin/` matched as `//admin/`, past a
    /// rule for `/admin/`, while parameter-dropping servers route it to `/admin/`.
    #[test]
    fn parameter_only_segments_vanish_from_the_match_path() {
        assert_eq!(m("/;x/admin/y"), "/admin/y");
        assert_eq!(normalize_path("/;x/admin/y").unwrap().path, "/;x/admin/y");
        assert_eq!(m("//;///"), "/");
        assert_eq!(m("/;73/:ee"), "/:ee");
        assert_eq!(m("/;x"), "/");
        assert_eq!(m("/a/;x"), "/a/");
        assert_eq!(m("/a/;x/b;y/"), "/a/b/");
    }

    #[test]
    fn config_paths_must_be_normalized() {
        assert!(check_config_path("/api/").is_ok());
        assert!(check_config_path("/api/../x").is_err());
        assert!(check_config_path("api").is_err());
        assert!(check_config_path("/a?b").is_err());
    }
}
