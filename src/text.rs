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
    name.starts_with(':') || VALUES_READ.iter().any(|h| h.eq_ignore_ascii_case(name))
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

/// One header value as the engine sees it (see the module docs for the rule).
pub fn value_text(name: &str, value: &[u8]) -> Result<String, NotText> {
    match std::str::from_utf8(value) {
        Ok(v) => Ok(v.to_owned()),
        Err(_) if reads_value(name) => Err(NotText(name.to_owned())),
        Err(_) => Ok(String::new()),
    }
}

/// A header map as the engine sees it, from the host's names and value bytes. For a request,
/// values follow [`value_text`]; for an IdP's `answer` every value is read (identity,
/// cookies, redirects), so any value that is not UTF-8 refuses the whole answer, and the host
/// treats it as no usable answer, which fails closed. Values are moved, not copied, and the
/// list is converted in place (std collects a `Vec` into one of the same layout without
/// allocating): this runs on every request.
pub fn header_view(
    raw: Vec<(String, Vec<u8>)>,
    answer: bool,
) -> Result<Vec<(String, String)>, NotText> {
    raw.into_iter()
        .map(|(n, v)| match String::from_utf8(v) {
            Ok(v) => Ok((n, v)),
            Err(_) if answer || reads_value(&n) => Err(NotText(n)),
            Err(_) => Ok((n, String::new())),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(pairs: &[(&str, &[u8])]) -> Vec<(String, Vec<u8>)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_vec()))
            .collect()
    }

    fn owned(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
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
            let got = header_view(raw(&[(":method", b"GET"), (name, b"a\xffb")]), false);
            assert_eq!(got, Err(NotText(name.into())), "{name}");
        }
    }

    #[test]
    fn other_values_are_blanked_and_keep_their_name() {
        let got = header_view(
            raw(&[
                (":path", b"/"),
                ("user-agent", b"caf\xe9"),
                ("X-authentik-username", b"\xff"),
                ("x-note", "café".as_bytes()),
            ]),
            false,
        );
        let want = owned(&[
            (":path", "/"),
            ("user-agent", ""),
            ("X-authentik-username", ""),
            ("x-note", "café"),
        ]);
        assert_eq!(got, Ok(want));
    }

    #[test]
    fn an_answer_with_a_value_that_is_not_text_is_unusable() {
        let bad = raw(&[(":status", b"200"), ("x-authentik-name", b"\xc3")]);
        assert_eq!(
            header_view(bad, true),
            Err(NotText("x-authentik-name".into()))
        );
        let ok = header_view(raw(&[(":status", b"200")]), true);
        assert_eq!(ok, Ok(owned(&[(":status", "200")])));
    }

    #[test]
    fn the_refusal_names_the_header_never_the_value() {
        let e = value_text("cookie", b"session=secret\xff").unwrap_err();
        assert_eq!(e.to_string(), "request header cookie is not UTF-8 text");
        assert_eq!(value_text("x-other", b"secret\xff"), Ok(String::new()));
    }
}
