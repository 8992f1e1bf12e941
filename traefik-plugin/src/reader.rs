//! The request as the engine reads it, from the bytes the http-wasm host writes.
//!
//! The SDK's `Header::names` and `values` copy every name and every value into a boxed slice
//! of its own, and the plugin then made a `String` of each (issue #15: a dozen allocations
//! and frees per request, most of the plugin's own work on a cached request). Here the
//! host writes straight into one buffer that lives as long as the instance, and the engine's
//! header list borrows from it: no allocation per header, one check that it is text.
//!
//! What is read, in this order: the method, the URI, every header name (one host call), then
//! the values of the headers the engine reads (one call per name, see
//! `barbican::text::VALUES_READ`); every other header reaches the engine by name with an
//! empty value, which is all identity stripping and `match.headers` need. The list starts
//! with `:method` and `:path` (http-wasm has calls for them, not headers). Traefik gives
//! `Host` as a header, which the engine reads when there is no `:authority`; the scheme is
//! the engine's reading of `X-Forwarded-Proto` (Traefik's entry point sets it, replacing a
//! client's copy unless the client is a trusted proxy), `http` without one.

use barbican::request::Header;
use std::fmt;
use std::ops::Range;

/// The http-wasm calls that read a request, each appending what the host answered to `out`
/// (the host writes at the end of the buffer; nothing already there moves).
pub trait Source {
    /// `get_method`.
    fn method(&self, out: &mut Vec<u8>) -> Result<(), Unreadable>;
    /// `get_uri`: the path and query, percent-encoded as the client sent them.
    fn uri(&self, out: &mut Vec<u8>) -> Result<(), Unreadable>;
    /// `get_header_names`: every request header name, each followed by a NUL.
    fn names(&self, out: &mut Vec<u8>) -> Result<(), Unreadable>;
    /// `get_header_values` for the name at `out[name]`: each value followed by a NUL. Returns
    /// how many values the host wrote.
    fn values(&self, out: &mut Vec<u8>, name: Range<usize>) -> Result<u32, Unreadable>;
}

/// Why a request could not be read. Both are answered 400 (`Engine::refuse_not_text`): the
/// engine never decides on a request it cannot see as the upstream will.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unreadable {
    /// The method, the URI, a header name or a value the engine reads is not UTF-8
    /// (`barbican::text` has the rule).
    NotText,
    /// The host answered with more than [`MAX_ANSWER`] bytes, or changed its answer between
    /// asking for the size and writing.
    TooLarge,
}

impl fmt::Display for Unreadable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unreadable::NotText => f.write_str(
                "the method, the URI, a header name or a header value read is not UTF-8",
            ),
            Unreadable::TooLarge => write!(
                f,
                "the host's answer for the request line or headers exceeds {MAX_ANSWER} bytes"
            ),
        }
    }
}

/// The most one host answer may be. Traefik's entry points take Go's default
/// `MaxHeaderBytes` (1 MiB) for the whole header block, so a real request stays well below.
pub const MAX_ANSWER: usize = 1 << 20;

/// What the buffer holds for one request header.
#[derive(Debug, Clone)]
struct Field {
    name: Range<usize>,
    /// Its values, each followed by a NUL, and how many the host said there are; `None`
    /// when the engine does not read them.
    values: Option<(Range<usize>, u32)>,
}

/// The buffer the host writes into, kept for the instance's life (a pooled instance serves
/// one request at a time), so a request costs no allocation for its bytes once the
/// instance has seen a request that size.
#[derive(Debug)]
pub struct Reader {
    buf: Vec<u8>,
    fields: Vec<Field>,
}

impl Default for Reader {
    fn default() -> Self {
        Reader {
            // Enough for a typical request with a session cookie or a JWT.
            buf: Vec::with_capacity(4096),
            fields: Vec::with_capacity(16),
        }
    }
}

impl Reader {
    /// Reads the request from `src`, fetching the values of the names `wanted` says. The
    /// list borrows from this reader until the next request.
    pub fn read(
        &mut self,
        src: &impl Source,
        wanted: impl Fn(&[u8]) -> bool,
    ) -> Result<Vec<Header<'_>>, Unreadable> {
        self.buf.clear();
        self.fields.clear();
        let method = self.scalar(|b| src.method(b))?;
        let uri = self.scalar(|b| src.uri(b))?;
        let names = self.list(|b| src.names(b))?;
        let mut at = names.start;
        while let Some(rest) = self.buf.get(at..names.end) {
            if rest.is_empty() {
                break;
            }
            let end = at + rest.iter().position(|&c| c == 0).unwrap_or(rest.len());
            let name = self.buf.get(at..end).unwrap_or_default();
            if !name.is_empty() {
                let values = if wanted(name) {
                    let mut count = 0;
                    let range = self.list(|b| {
                        count = src.values(b, at..end)?;
                        Ok(())
                    })?;
                    Some((range, count))
                } else {
                    None
                };
                self.fields.push(Field {
                    name: at..end,
                    values,
                });
            }
            at = end + 1;
        }
        // Every section ends with a NUL, so a buffer that is text is text in every section
        // too (a NUL is never part of a longer UTF-8 sequence).
        let text = std::str::from_utf8(&self.buf).map_err(|_| Unreadable::NotText)?;
        let at = |r: &Range<usize>| text.get(r.clone()).ok_or(Unreadable::NotText);
        let mut out = Vec::with_capacity(self.fields.len() + 2);
        out.push((":method", at(&method)?));
        out.push((":path", at(&uri)?));
        for f in &self.fields {
            let name = at(&f.name)?;
            match &f.values {
                None => out.push((name, "")),
                // One value (nearly always): the whole section but its NUL, without looking
                // for NULs in a cookie or a token of hundreds of bytes.
                Some((v, 1)) if v.end > v.start => {
                    out.push((name, at(&(v.start..v.end - 1))?));
                }
                Some((v, _)) => {
                    let mut rest = at(v)?;
                    while let Some((value, tail)) = barbican::ascii::split_once(rest, 0) {
                        out.push((name, value));
                        rest = tail;
                    }
                }
            }
        }
        Ok(out)
    }

    /// Appends one host answer and a NUL after it; its range, without the NUL.
    fn scalar(
        &mut self,
        fill: impl FnOnce(&mut Vec<u8>) -> Result<(), Unreadable>,
    ) -> Result<Range<usize>, Unreadable> {
        let start = self.buf.len();
        fill(&mut self.buf)?;
        let end = self.buf.len();
        self.buf.push(0);
        Ok(start..end)
    }

    /// Appends one host answer that is a list of NUL-terminated items (a last item without
    /// its NUL gets one); its range.
    fn list(
        &mut self,
        fill: impl FnOnce(&mut Vec<u8>) -> Result<(), Unreadable>,
    ) -> Result<Range<usize>, Unreadable> {
        let start = self.buf.len();
        fill(&mut self.buf)?;
        if self.buf.len() > start && self.buf.last() != Some(&0) {
            self.buf.push(0);
        }
        Ok(start..self.buf.len())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;

    /// A host with a fixed request, answering the way http-wasm-host-go does.
    struct Fake {
        method: Vec<u8>,
        uri: Vec<u8>,
        headers: Vec<(Vec<u8>, Vec<u8>)>,
        calls: std::cell::Cell<usize>,
    }

    fn fake(method: &[u8], uri: &[u8], headers: &[(&[u8], &[u8])]) -> Fake {
        Fake {
            method: method.to_vec(),
            uri: uri.to_vec(),
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_vec(), v.to_vec()))
                .collect(),
            calls: std::cell::Cell::new(0),
        }
    }

    impl Source for Fake {
        fn method(&self, out: &mut Vec<u8>) -> Result<(), Unreadable> {
            out.extend_from_slice(&self.method);
            Ok(())
        }
        fn uri(&self, out: &mut Vec<u8>) -> Result<(), Unreadable> {
            out.extend_from_slice(&self.uri);
            Ok(())
        }
        fn names(&self, out: &mut Vec<u8>) -> Result<(), Unreadable> {
            let mut seen: Vec<&[u8]> = Vec::new();
            for (n, _) in &self.headers {
                if !seen.contains(&n.as_slice()) {
                    seen.push(n);
                    out.extend_from_slice(n);
                    out.push(0);
                }
            }
            Ok(())
        }
        fn values(&self, out: &mut Vec<u8>, name: Range<usize>) -> Result<u32, Unreadable> {
            self.calls.set(self.calls.get() + 1);
            let name = out[name].to_vec();
            let mut count = 0;
            for (n, v) in &self.headers {
                if *n == name {
                    out.extend_from_slice(v);
                    out.push(0);
                    count += 1;
                }
            }
            Ok(count)
        }
    }

    fn wants(n: &[u8]) -> bool {
        n == b"cookie" || n == b"host"
    }

    #[test]
    fn names_and_the_values_read_are_borrowed_in_order() {
        let host = fake(
            b"GET",
            b"/app/?a=1",
            &[
                (b"host", b"app.test"),
                (b"cookie", b"a=1"),
                (b"user-agent", b"wrk"),
                (b"cookie", b""),
                (b"x-authentik-username", b"mallory"),
            ],
        );
        let mut r = Reader::default();
        let h = r.read(&host, wants).unwrap();
        assert_eq!(
            h,
            vec![
                (":method", "GET"),
                (":path", "/app/?a=1"),
                ("host", "app.test"),
                ("cookie", "a=1"),
                ("cookie", ""),
                ("user-agent", ""),
                ("x-authentik-username", ""),
            ]
        );
        // Only the names wanted cost a values call.
        assert_eq!(host.calls.get(), 2);
        // The buffer is reused: a second request reads the same.
        let again = r.read(&host, wants).unwrap().len();
        assert_eq!(again, 7);
    }

    #[test]
    fn anything_read_that_is_not_text_refuses_the_request() {
        let mut r = Reader::default();
        let bad_value = fake(b"GET", b"/", &[(b"cookie", b"a=\xff")]);
        assert_eq!(r.read(&bad_value, wants), Err(Unreadable::NotText));
        let bad_name = fake(b"GET", b"/", &[(b"x-\xff", b"1")]);
        assert_eq!(r.read(&bad_name, wants), Err(Unreadable::NotText));
        let bad_uri = fake(b"GET", b"/\xc3", &[]);
        assert_eq!(r.read(&bad_uri, wants), Err(Unreadable::NotText));
        // A sequence split across two sections is no text either: each section ends with
        // a NUL, so the method's lead byte and the URI's continuation byte never meet.
        let split = fake(b"GET\xc3", b"\xa9/", &[]);
        assert_eq!(r.read(&split, wants), Err(Unreadable::NotText));
    }

    #[test]
    fn values_never_read_may_be_any_bytes() {
        let host = fake(b"GET", b"/", &[(b"user-agent", b"\xff\xfe")]);
        let mut r = Reader::default();
        assert_eq!(
            r.read(&host, wants).unwrap(),
            vec![(":method", "GET"), (":path", "/"), ("user-agent", "")]
        );
    }

    /// Random requests against a model: the list, or `NotText` exactly when something read is
    /// not UTF-8 (values never read may be anything).
    #[test]
    fn random_requests_read_as_the_model_says() {
        let seed = std::cell::Cell::new(0x9e37_79b9_7f4a_7c15u64);
        let next = |n: u64| {
            let mut x = seed.get();
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            seed.set(x);
            x % n
        };
        const BYTES: &[u8] = b"ab;= \"\x80\xc3\xa9\xff";
        const NAMES: &[&[u8]] = &[
            b"cookie",
            b"host",
            b"x-a",
            b"x-\xc3\xa9",
            b"x-\xff",
            b"accept",
        ];
        let mut r = Reader::default();
        for _ in 0..3000 {
            let bytes = |max: u64| -> Vec<u8> {
                (0..next(max))
                    .map(|_| BYTES[next(BYTES.len() as u64) as usize])
                    .collect()
            };
            let method = bytes(4);
            let uri = bytes(12);
            let mut headers: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
            for _ in 0..next(6) {
                let name = NAMES[next(NAMES.len() as u64) as usize].to_vec();
                headers.push((name, bytes(40)));
            }
            let host = Fake {
                method: method.clone(),
                uri: uri.clone(),
                headers: headers.clone(),
                calls: std::cell::Cell::new(0),
            };
            // The model: names in first-seen order, each with every value if wanted.
            let mut order: Vec<&[u8]> = Vec::new();
            for (n, _) in &headers {
                if !order.contains(&n.as_slice()) {
                    order.push(n);
                }
            }
            let text = |b: &[u8]| std::str::from_utf8(b).map(str::to_string).ok();
            let mut model = vec![
                (":method".to_string(), text(&method)),
                (":path".to_string(), text(&uri)),
            ];
            for n in &order {
                if wants(n) {
                    for (m, v) in &headers {
                        if m.as_slice() == *n {
                            model.push((String::from_utf8_lossy(n).into_owned(), text(v)));
                        }
                    }
                } else {
                    model.push((String::from_utf8_lossy(n).into_owned(), Some(String::new())));
                }
            }
            let names_text = order.iter().all(|n| std::str::from_utf8(n).is_ok());
            let expect: Option<Vec<(String, String)>> = if names_text {
                model.into_iter().map(|(n, v)| Some((n, v?))).collect()
            } else {
                None
            };
            let got = r.read(&host, wants);
            match (expect, got) {
                (Some(e), Ok(g)) => {
                    let g: Vec<(String, String)> = g
                        .iter()
                        .map(|(n, v)| (n.to_string(), v.to_string()))
                        .collect();
                    assert_eq!(g, e);
                }
                (None, Err(Unreadable::NotText)) => {}
                (e, g) => panic!("model {e:?}, reader {g:?}"),
            }
        }
    }

    #[test]
    fn a_host_fault_is_passed_on() {
        struct Full;
        impl Source for Full {
            fn method(&self, _: &mut Vec<u8>) -> Result<(), Unreadable> {
                Ok(())
            }
            fn uri(&self, _: &mut Vec<u8>) -> Result<(), Unreadable> {
                Ok(())
            }
            fn names(&self, out: &mut Vec<u8>) -> Result<(), Unreadable> {
                // A last name without its NUL, then a stray empty one.
                out.extend_from_slice(b"cookie\0\0host");
                Ok(())
            }
            fn values(&self, _: &mut Vec<u8>, _: Range<usize>) -> Result<u32, Unreadable> {
                Err(Unreadable::TooLarge)
            }
        }
        let mut r = Reader::default();
        assert_eq!(r.read(&Full, |_| false).unwrap().len(), 4);
        assert_eq!(r.read(&Full, |_| true), Err(Unreadable::TooLarge));
    }
}
