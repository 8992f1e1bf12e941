//! The request as the engine reads it: every header value a decision needs, and the client's
//! identity headers to strip, found in one pass over the host's header list.
//!
//! Before this, the engine looked each header up when it needed it: eight scans of the whole
//! list on a protected request, each comparing every name without case. Callgrind on a cached
//! session counted ~1,200 of the engine's ~7,900 native instructions in those scans.

use crate::identity::is_identity_header;

/// One request header as hosts hand it to the engine: name and value, borrowed from wherever
/// the host keeps them (Envoy: the buffer its header map was serialized into), so reading a
/// request allocates nothing per header.
pub type Header<'a> = (&'a str, &'a str);

/// A list of owned header pairs as the engine reads them (hosts and tools that keep their
/// headers as `String`s: `barbican serve`, the CLI, tests). One allocation, no copies.
pub fn borrow_all(owned: &[(String, String)]) -> Vec<Header<'_>> {
    owned
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect()
}

/// First value of a header, by case-insensitive name: for header lists outside the request
/// path (IdP answers, the CLI). A request is read through [`View`].
pub fn header<'a, S: AsRef<str>>(headers: &'a [(S, S)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.as_ref().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_ref())
}

/// One request's headers as the engine reads them. Single-valued fields hold the first value,
/// as [`header`] would find it. Cookie, Authorization and X-Forwarded-For may come more than
/// once; [`View::all`] reads every value of those (rescanning only when there is more than
/// one).
#[derive(Debug, Clone, Default)]
pub struct View<'a> {
    /// The whole list, for what is looked up by a configured name (`match.headers`, the
    /// headers a custom dialect sends to its endpoint).
    pub headers: &'a [Header<'a>],
    pub path: Option<&'a str>,
    pub method: Option<&'a str>,
    /// `:authority`, else `Host`.
    pub authority: Option<&'a str>,
    pub scheme: Option<&'a str>,
    pub forwarded_proto: Option<&'a str>,
    pub origin: Option<&'a str>,
    pub preflight_method: Option<&'a str>,
    pub requested_with: Option<&'a str>,
    pub accept: Option<&'a str>,
    pub content_type: Option<&'a str>,
    pub cookie: Many<'a>,
    pub authorization: Many<'a>,
    pub forwarded_for: Many<'a>,
    /// Client-sent identity headers (families and configured extras), each name once: the
    /// request's `remove` list on every route.
    pub identity: Vec<String>,
}

/// A header that may come more than once: its first value and how many there are.
#[derive(Debug, Clone, Copy, Default)]
pub struct Many<'a> {
    pub first: Option<&'a str>,
    pub count: usize,
    /// The sum of the values' lengths (the credential size limit).
    pub bytes: usize,
}

impl<'a> Many<'a> {
    fn add(&mut self, v: &'a str) {
        if self.first.is_none() {
            self.first = Some(v);
        }
        self.count += 1;
        self.bytes += v.len();
    }
}

impl<'a> View<'a> {
    /// Reads `headers` once. `strip` holds the configured extra identity header names.
    pub fn read(headers: &'a [Header<'a>], strip: &[String]) -> View<'a> {
        let mut v = View {
            headers,
            ..View::default()
        };
        let mut host = None;
        for &(name, val) in headers {
            let set = |slot: &mut Option<&'a str>| {
                if slot.is_none() {
                    *slot = Some(val);
                }
            };
            // Pseudo-headers are lower case by definition (hosts spell them so); the rest is
            // matched by length first, so each name is compared at most once or twice.
            let is = |want: &str| crate::ascii::lower_eq(name.as_bytes(), want.as_bytes());
            match name.len() {
                5 if name == ":path" => set(&mut v.path),
                7 if name == ":method" => set(&mut v.method),
                7 if name == ":scheme" => set(&mut v.scheme),
                10 if name == ":authority" => set(&mut v.authority),
                4 if is("host") => set(&mut host),
                6 if is("cookie") => v.cookie.add(val),
                6 if is("origin") => set(&mut v.origin),
                6 if is("accept") => set(&mut v.accept),
                12 if is("content-type") => set(&mut v.content_type),
                13 if is("authorization") => v.authorization.add(val),
                15 if is("x-forwarded-for") => v.forwarded_for.add(val),
                16 if is("x-requested-with") => set(&mut v.requested_with),
                17 if is("x-forwarded-proto") => set(&mut v.forwarded_proto),
                29 if is("access-control-request-method") => set(&mut v.preflight_method),
                _ => {
                    if !crate::ascii::starts_with(name, b':')
                        && is_identity_header(name, strip)
                        && !v.identity.iter().any(|r| r == name)
                    {
                        v.identity.push(name.to_owned());
                    }
                }
            }
        }
        if v.authority.is_none() {
            v.authority = host;
        }
        v
    }

    /// Every value of a header held as [`Many`] (`name` is its name), in order.
    pub fn all(&self, many: Many<'a>, name: &'static str) -> impl Iterator<Item = &'a str> + 'a {
        let rescan = if many.count > 1 { self.headers } else { &[] };
        many.first.filter(|_| many.count == 1).into_iter().chain(
            rescan
                .iter()
                .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
                .map(|&(_, v)| v),
        )
    }

    /// The method, `GET` when absent (hosts always send one).
    pub fn method(&self) -> &'a str {
        self.method.unwrap_or("GET")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h<'a>(p: &[(&'a str, &'a str)]) -> Vec<Header<'a>> {
        p.to_vec()
    }

    #[test]
    fn one_pass_finds_what_header_finds() {
        let list = h(&[
            (":method", "POST"),
            (":path", "/a"),
            ("Host", "h.lan"),
            ("ORIGIN", "https://o"),
            ("Access-Control-Request-Method", "PUT"),
            ("accept", "text/html"),
            ("X-Requested-With", "xhr"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-proto", "http"),
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("user-agent", "ua"),
        ]);
        let v = View::read(&list, &[]);
        for (got, name) in [
            (v.method, ":method"),
            (v.path, ":path"),
            (v.authority, "host"),
            (v.origin, "origin"),
            (v.preflight_method, "access-control-request-method"),
            (v.accept, "accept"),
            (v.requested_with, "x-requested-with"),
            (v.forwarded_proto, "x-forwarded-proto"),
            (v.content_type, "content-type"),
        ] {
            assert_eq!(got, header(&list, name), "{name}");
        }
        assert_eq!(v.scheme, None);
        assert!(v.identity.is_empty());
    }

    #[test]
    fn authority_wins_over_host() {
        let list = h(&[("host", "b"), (":authority", "a")]);
        assert_eq!(View::read(&list, &[]).authority, Some("a"));
    }

    #[test]
    fn repeated_headers_are_all_read_and_identity_names_listed_once() {
        let list = h(&[
            ("cookie", "a=1"),
            ("X-authentik-username", "evil"),
            ("authorization", "Bearer x"),
            ("Cookie", "b=22"),
            ("x_authentik_groups", "admins"),
            ("X-authentik-username", "evil2"),
            ("x-trusted", "1"),
        ]);
        let v = View::read(&list, &["x-trusted".into()]);
        assert_eq!(
            v.all(v.cookie, "cookie").collect::<Vec<_>>(),
            ["a=1", "b=22"]
        );
        assert_eq!(v.cookie.bytes, 7);
        let auth: Vec<_> = v.all(v.authorization, "authorization").collect();
        assert_eq!(auth, ["Bearer x"]);
        assert_eq!(v.all(v.forwarded_for, "x-forwarded-for").count(), 0);
        assert_eq!(
            v.identity,
            ["X-authentik-username", "x_authentik_groups", "x-trusted"]
        );
    }
}
