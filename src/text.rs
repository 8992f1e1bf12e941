//! Header values as text: hosts hand them over as bytes, the core decides on text.
//!
//! HTTP allows any byte ≥ 0x80 in a field value (RFC 9110 §5.5 `obs-text`), and Envoy and
//! Traefik pass such bytes through. The proxy-wasm SDK's `get_map` turns values into `String`
//! and unwraps: one request with `Cookie: \xff` trapped the VM, and with FAIL_CLOSED every
//! later request on that worker got 503. So every host reads bytes and converts here, with
//! one rule for all of them:
//! - a value the engine reads ([`reads_value`]) that is not UTF-8 refuses the request (400):
//!   deciding on a lossy copy would judge a credential or a path other than the one the
//!   upstream receives, and two different cookies could share one cache entry;
//! - any other value that is not UTF-8 is blanked in the engine's view. The engine never
//!   reads it and never writes it back, so the upstream gets the client's bytes unchanged;
//!   identity headers are still stripped, by name.

use crate::request::Header;

/// Request header values the core reads (besides the pseudo-headers). Everything else is
/// read by name only (identity stripping, `match.headers` presence).
///
/// When the core starts reading another request header's value, add it here: the Traefik
/// plugin fetches only these values, and its `values_of_other_headers_never_change_the_answer`
/// checks the tested paths.
pub const VALUES_READ: &[&str] = &[
    "host",
    "authorization",
    "cookie",
    "x-forwarded-for",
    "x-forwarded-proto",
    "origin",
    "access-control-request-method",
    "accept",
    "x-requested-with",
    // The form_post that ends an OIDC login must be a form.
    "content-type",
];

/// Whether the core reads this header's value: a pseudo-header or one of [`VALUES_READ`].
pub fn reads_value(name: &str) -> bool {
    crate::ascii::starts_with(name, b':') || in_values_read(name.as_bytes())
}

/// Whether `name` (any case, as bytes: a host may hand names over before anything is known
/// to be text) is one of [`VALUES_READ`].
pub fn in_values_read(name: &[u8]) -> bool {
    VALUES_READ
        .iter()
        .any(|h| h.len() == name.len() && crate::ascii::lower_eq(name, h.as_bytes()))
}

/// A request header the core must read was not UTF-8. Holds the header's name (never its
/// value: it may be a credential).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotText(pub String);

impl std::fmt::Display for NotText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "request header {} is not UTF-8 text", self.0)
    }
}

/// Why a host's serialized header map could not be read as a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MapError {
    /// The buffer does not follow the proxy-wasm map encoding: a host fault, so the request
    /// fails closed (as when the host call itself fails).
    Malformed,
    /// A header the engine reads is not text ([`reads_value`]): 400, as on Traefik.
    NotText(NotText),
}

/// [`read_map`] for a map with bytes that are not UTF-8, one name and value at a time.
fn read_map_not_text<'a>(
    table: &[u8],
    data: &'a [u8],
    answer: bool,
) -> Result<Vec<Header<'a>>, MapError> {
    let mut out = Vec::new();
    let mut at = 0;
    for lens in table.chunks_exact(8) {
        let name = span(data, &mut at, lens.first_chunk())?;
        let value = span(data, &mut at, lens.last_chunk())?;
        let (Some(name), Some(value)) = (data.get(name), data.get(value)) else {
            return Err(MapError::Malformed);
        };
        // Envoy's codecs admit only tokens as names; a host that let another through is not
        // one this engine can reason about.
        let name = std::str::from_utf8(name)
            .map_err(|_| MapError::NotText(NotText(NAME_NOT_TEXT.into())))?;
        let value = match std::str::from_utf8(value) {
            Ok(v) => v,
            Err(_) if answer || reads_value(name) => {
                return Err(MapError::NotText(NotText(name.into())))
            }
            Err(_) => "",
        };
        out.push((name, value));
    }
    Ok(out)
}

/// What a refusal names when the header's name itself is not text (no lossy copy: it may be
/// arbitrary bytes).
const NAME_NOT_TEXT: &str = "(a name that is not UTF-8)";

/// Where the next name or value of a serialized map lies in `data`: from `*at`, `len` bytes,
/// then a NUL; `*at` moves past the NUL.
fn span(
    data: &[u8],
    at: &mut usize,
    len: Option<&[u8; 4]>,
) -> Result<std::ops::Range<usize>, MapError> {
    let len = u32::from_le_bytes(*len.ok_or(MapError::Malformed)?) as usize;
    let start = *at;
    let end = start.checked_add(len).ok_or(MapError::Malformed)?;
    if !matches!(data.get(end), Some(0)) {
        return Err(MapError::Malformed);
    }
    *at = end + 1;
    Ok(start..end)
}

/// A request's headers read in place from the buffer a proxy-wasm host serializes its header
/// map into (proxy-wasm ABI 0.2.1 `proxy_get_header_map_pairs`; the encoding the SDK's
/// `get_map_bytes` decodes: a little-endian `u32` count, then each pair's name and value
/// lengths as `u32`s, then each name and value followed by a NUL byte). Values follow the
/// module's rule. Nothing is copied: the SDK's reader makes a `String` and a `Vec`
/// of every name and value, 18 allocations and frees for a 9-header request, which cost
/// more inside Envoy than the whole decision on a cached session (bench/hostcost.py).
/// A buffer that ends early or whose lengths do not fit it is [`MapError::Malformed`],
/// never a panic; bytes after the last pair are ignored, as the SDK ignores them.
///
/// `answer` reads an IdP's answer instead of a request: every value of an answer is read
/// (identity, cookies, redirects), so any value that is not UTF-8 refuses the whole answer,
/// and the host treats it as no usable answer, which fails closed.
pub fn read_map(buf: &[u8], answer: bool) -> Result<Vec<Header<'_>>, MapError> {
    let Some((count, rest)) = buf.split_first_chunk::<4>() else {
        return if buf.is_empty() {
            Ok(Vec::new())
        } else {
            Err(MapError::Malformed)
        };
    };
    let n = usize::try_from(u32::from_le_bytes(*count)).map_err(|_| MapError::Malformed)?;
    // The length table must fit the buffer: this also bounds the allocation below.
    let table_len = n
        .checked_mul(8)
        .filter(|&t| t <= rest.len())
        .ok_or(MapError::Malformed)?;
    let (table, data) = rest.split_at(table_len);
    // One UTF-8 check for every name and value together (nearly always all text). Each one
    // starts and ends next to a NUL byte, which is a whole character, so each is then text.
    let Ok(text) = std::str::from_utf8(data) else {
        return read_map_not_text(table, data, answer);
    };
    // Written out, not with helpers: at opt-level "z" even `first_chunk` stays a call, and
    // this runs for every header of every request.
    let mut out = Vec::with_capacity(n);
    let mut at: usize = 0;
    for lens in table.chunks_exact(8) {
        let &[a, b, c, d, e, f, g, h] = lens else {
            return Err(MapError::Malformed);
        };
        let name_len = u32::from_le_bytes([a, b, c, d]) as usize;
        let value_len = u32::from_le_bytes([e, f, g, h]) as usize;
        // Checked: on wasm32 a length near u32::MAX overflows usize.
        let name_end = at.checked_add(name_len).ok_or(MapError::Malformed)?;
        if !matches!(data.get(name_end), Some(0)) {
            return Err(MapError::Malformed);
        }
        let value_start = name_end + 1;
        let value_end = value_start
            .checked_add(value_len)
            .ok_or(MapError::Malformed)?;
        if !matches!(data.get(value_end), Some(0)) {
            return Err(MapError::Malformed);
        }
        match (text.get(at..name_end), text.get(value_start..value_end)) {
            (Some(n), Some(v)) => out.push((n, v)),
            _ => return Err(MapError::Malformed),
        }
        at = value_end + 1;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The proxy-wasm map encoding, as proxy-wasm-cpp-host's `exportPairs` writes it.
    fn encode(pairs: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut out = (pairs.len() as u32).to_le_bytes().to_vec();
        for (n, v) in pairs {
            out.extend_from_slice(&(n.len() as u32).to_le_bytes());
            out.extend_from_slice(&(v.len() as u32).to_le_bytes());
        }
        for (n, v) in pairs {
            out.extend_from_slice(n);
            out.push(0);
            out.extend_from_slice(v);
            out.push(0);
        }
        out
    }

    #[test]
    fn a_host_map_is_read_in_place() {
        let buf = encode(&[
            (b":path", b"/a?b=1"),
            (b"cookie", b"s=1"),
            (b"x-empty", b""),
            (b"user-agent", b"caf\xe9"),
        ]);
        let got = read_map(&buf, false).unwrap();
        assert_eq!(
            got,
            [
                (":path", "/a?b=1"),
                ("cookie", "s=1"),
                ("x-empty", ""),
                ("user-agent", "")
            ]
        );
        assert_eq!(read_map(&[], false), Ok(Vec::new()));
        assert_eq!(read_map(&encode(&[]), false), Ok(Vec::new()));
        // Trailing bytes are ignored, as the SDK ignores them.
        let mut padded = buf.clone();
        padded.extend_from_slice(b"\0\0");
        assert_eq!(read_map(&padded, false).unwrap().len(), 4);
    }

    #[test]
    fn a_header_name_that_is_not_text_is_refused() {
        // (Values the engine reads: `a_value_the_engine_reads_must_be_text` below.)
        let buf = encode(&[(b"x-\xff", b"v")]);
        assert!(matches!(read_map(&buf, false), Err(MapError::NotText(_))));
    }

    #[test]
    fn a_malformed_host_map_fails_closed_without_a_panic() {
        let good = encode(&[(b":path", b"/"), (b"cookie", b"s=1")]);
        // Every truncation of a good buffer.
        for end in 1..good.len() {
            assert_eq!(
                read_map(&good[..end], false),
                Err(MapError::Malformed),
                "{end}"
            );
        }
        // A count whose length table cannot fit, and one near usize::MAX.
        for count in [3u32, u32::MAX] {
            let mut b = good.clone();
            b[..4].copy_from_slice(&count.to_le_bytes());
            assert_eq!(read_map(&b, false), Err(MapError::Malformed), "{count}");
        }
        // A length past the end, and a missing NUL terminator.
        let mut b = good.clone();
        b[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(read_map(&b, false), Err(MapError::Malformed));
        let mut b = good.clone();
        let nul = 4 + 2 * 8 + 5;
        assert_eq!(b[nul], 0);
        b[nul] = b'x';
        assert_eq!(read_map(&b, false), Err(MapError::Malformed));
    }

    #[test]
    fn a_value_the_engine_reads_must_be_text() {
        for name in [
            ":path",
            ":authority",
            "Cookie",
            "authorization",
            "X-Forwarded-For",
        ] {
            let buf = encode(&[(b":method", b"GET"), (name.as_bytes(), b"a\xffb")]);
            assert_eq!(
                read_map(&buf, false),
                Err(MapError::NotText(NotText(name.into()))),
                "{name}"
            );
        }
    }

    #[test]
    fn other_values_are_blanked_and_keep_their_name() {
        let buf = encode(&[
            (b":path", b"/"),
            (b"user-agent", b"caf\xe9"),
            (b"X-authentik-username", b"\xff"),
            (b"x-note", "café".as_bytes()),
        ]);
        let want = [
            (":path", "/"),
            ("user-agent", ""),
            ("X-authentik-username", ""),
            ("x-note", "café"),
        ];
        assert_eq!(read_map(&buf, false), Ok(want.to_vec()));
    }

    #[test]
    fn an_answer_with_a_value_that_is_not_text_is_unusable() {
        let bad = encode(&[(b":status", b"200"), (b"x-authentik-name", b"\xc3")]);
        assert_eq!(
            read_map(&bad, true),
            Err(MapError::NotText(NotText("x-authentik-name".into())))
        );
        let ok = encode(&[(b":status", b"200"), (b"user-agent", b"")]);
        assert_eq!(
            read_map(&ok, true),
            Ok(vec![(":status", "200"), ("user-agent", "")])
        );
    }

    #[test]
    fn the_refusal_names_the_header_never_the_value() {
        let buf = encode(&[(b"cookie", b"session=secret\xff")]);
        let Err(MapError::NotText(e)) = read_map(&buf, false) else {
            panic!("a cookie that is not text is refused");
        };
        assert_eq!(e.to_string(), "request header cookie is not UTF-8 text");
        let buf = encode(&[(b"x-other", b"secret\xff")]);
        assert_eq!(read_map(&buf, false), Ok(vec![("x-other", "")]));
    }
}
