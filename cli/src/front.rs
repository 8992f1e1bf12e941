//! Front protocols: how each proxy describes the original request to a forward-auth server,
//! turned into the header list the engine reads (pseudo-headers first, as on Envoy).
//!
//! Sources followed: Authentik's outpost (goauthentik/authentik
//! internal/outpost/proxyv2/application/mode_forward.go, mode_common.go), Traefik's
//! forwardAuth (traefik/traefik pkg/middlewares/auth/forward.go: X-Forwarded-Method, -Proto,
//! -Host, -Uri, -For), Caddy's forward_auth (caddyserver/caddy
//! modules/caddyhttp/reverseproxy/forwardauth/caddyfile.go: the same family), nginx's
//! auth_request (the example location sets X-Original-Method / X-Original-URI from
//! `$request_method` / `$request_uri`), and Envoy's ext_authz HTTP service
//! (envoy api/envoy/extensions/filters/http/ext_authz/v3/ext_authz.proto: `path_prefix` +
//! the original path, the original Host).
//!
//! The forwarded headers decide nothing unless the connection comes from a trusted proxy:
//! from anyone else the request is refused before a header is read (DESIGN §8: Authentik's
//! documented nginx setup lets a client name its own `X-Original-URI`). Missing, duplicated
//! or malformed ones are 400, never guessed.

use barbican::net::Cidr;
use std::net::IpAddr;

/// Which proxy protocol an auth request speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Front {
    /// Traefik forwardAuth and Caddy forward_auth: `X-Forwarded-*`.
    Forwarded,
    /// nginx auth_request: `X-Original-Method`, `X-Original-URI`.
    Nginx,
    /// Envoy ext_authz HTTP service: the original path after the prefix, the original Host.
    Envoy,
}

/// Whether a `Set-Cookie` value clears its cookie (`name=; ...`, as every clearing cookie the
/// engine or an IdP sends) rather than setting one.
fn clears(set_cookie: &str) -> bool {
    set_cookie
        .split(';')
        .next()
        .is_some_and(|pair| pair.trim().ends_with('='))
}

impl Front {
    pub fn as_str(self) -> &'static str {
        match self {
            Front::Forwarded => "forwarded",
            Front::Nginx => "nginx",
            Front::Envoy => "envoy",
        }
    }

    /// The status to answer the proxy with for the engine's `status`. nginx's auth_request
    /// passes only 2xx, 401 and 403 (anything else becomes its own 500, logged as an
    /// auth_request error): a login redirect is 401 with the Location kept, for the
    /// example's `error_page 401` to redirect; any other client error (a path serve refuses
    /// to normalize) is 403, so the client sees a refusal rather than a server fault.
    pub fn answer_status(self, status: u16) -> u16 {
        match (self, status) {
            (Front::Nginx, 300..=399) => 401,
            (Front::Nginx, 400..=499) if status != 401 && status != 403 => 403,
            _ => status,
        }
    }

    /// Which of the answer's headers to send. To nginx, at most one `Set-Cookie`: the
    /// example copies it with `auth_request_set $auth_cookie $upstream_http_set_cookie`,
    /// which holds one header value (nginx 1.22 keeps the first line; 1.23+ joins the lines
    /// with ", ", which no browser reads as two cookies). The one kept is the first that sets
    /// a value: after an OIDC callback that is the session cookie, and the login cookie it
    /// would have cleared only lingers until its own Max-Age (its state is spent).
    pub fn answer_headers(self, headers: &[(String, String)]) -> Vec<&(String, String)> {
        if self != Front::Nginx {
            return headers.iter().collect();
        }
        let is_cookie = |(n, _): &&(String, String)| n.eq_ignore_ascii_case("set-cookie");
        let keep = headers
            .iter()
            .filter(is_cookie)
            .find(|(_, v)| !clears(v))
            .or_else(|| headers.iter().find(is_cookie));
        headers
            .iter()
            .filter(|h| !is_cookie(h) || keep.is_some_and(|k| std::ptr::eq(k, *h)))
            .collect()
    }
}

/// What a request to serve is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// An auth request; for Envoy, the original path and query.
    Auth(Front, Option<String>),
    Healthz,
    Metrics,
}

const PREFIXES: [&str; 2] = ["/outpost.goauthentik.io/auth/", "/auth/"];

/// The endpoint a request target names (Authentik's outpost paths and their short forms).
pub fn endpoint(target: &str) -> Option<Endpoint> {
    let path = target.split('?').next().unwrap_or(target);
    match path {
        "/healthz" => return Some(Endpoint::Healthz),
        "/metrics" => return Some(Endpoint::Metrics),
        _ => {}
    }
    for p in PREFIXES {
        let Some(rest) = target.strip_prefix(p) else {
            continue;
        };
        let name_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (name, tail) = rest.split_at(name_end);
        return match name {
            "traefik" | "caddy" if tail.is_empty() || tail.starts_with('?') => {
                Some(Endpoint::Auth(Front::Forwarded, None))
            }
            "nginx" if tail.is_empty() || tail.starts_with('?') => {
                Some(Endpoint::Auth(Front::Nginx, None))
            }
            // Envoy appends the original path (with its query) to path_prefix.
            "envoy" => {
                let original = if tail.is_empty() {
                    "/".to_string()
                } else if tail.starts_with('?') {
                    format!("/{tail}")
                } else {
                    tail.to_string()
                };
                Some(Endpoint::Auth(Front::Envoy, Some(original)))
            }
            _ => None,
        };
    }
    None
}

/// Why an auth request cannot be decided. `reason` is a stable code for logs: no values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub status: u16,
    pub reason: &'static str,
    /// The header at fault, for the log line (a name, never a value).
    pub header: Option<&'static str>,
}

fn bad(reason: &'static str, header: &'static str) -> Refused {
    Refused {
        status: 400,
        reason,
        header: Some(header),
    }
}

/// The auth request as received: its method, its headers (names lower-case, values as bytes)
/// and the TCP peer.
pub struct Incoming<'a> {
    pub method: &'a str,
    pub headers: &'a [(String, Vec<u8>)],
    pub peer: IpAddr,
}

/// The request the engine decides on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Original {
    pub headers: Vec<(String, String)>,
    /// The TCP peer when the client address is known from `X-Forwarded-For` (the engine then
    /// walks it with `trusted_proxies`); `None` when the proxy sent none: the client is
    /// unknown and no `allow_cidrs` rule can match the proxy's own address.
    pub peer: Option<IpAddr>,
}

/// Headers that describe the auth request itself or are consumed here; they never reach the
/// engine (hop-by-hop ones per RFC 9110 §7.6.1).
const CONSUMED: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "proxy-connection",
    "x-forwarded-method",
    "x-forwarded-host",
    "x-forwarded-uri",
    "x-forwarded-for",
    "x-original-method",
    "x-original-uri",
    "x-original-url",
    "x-real-ip",
];

/// Values the engine reads for credentials: a non-UTF-8 one is refused rather than dropped,
/// so a garbled credential is never mistaken for none.
const CREDENTIALS: &[&str] = &["cookie", "authorization"];

fn all<'h>(headers: &'h [(String, Vec<u8>)], name: &str) -> Vec<&'h [u8]> {
    headers
        .iter()
        .filter(|(n, _)| n == name)
        .map(|(_, v)| v.as_slice())
        .collect()
}

/// The one value of a header that must appear at most once: `Ok(None)` when absent.
fn single<'h>(
    headers: &'h [(String, Vec<u8>)],
    name: &'static str,
) -> Result<Option<&'h str>, Refused> {
    match all(headers, name).as_slice() {
        [] => Ok(None),
        [v] => std::str::from_utf8(v)
            .map(|s| Some(s.trim_matches([' ', '\t'])))
            .map_err(|_| bad("header_not_utf8", name)),
        _ => Err(bad("header_duplicated", name)),
    }
}

fn required<'h>(headers: &'h [(String, Vec<u8>)], name: &'static str) -> Result<&'h str, Refused> {
    single(headers, name)?.ok_or(bad("header_missing", name))
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn check_method(m: &str, name: &'static str) -> Result<String, Refused> {
    if m.is_empty() || !m.bytes().all(is_tchar) {
        return Err(bad("method_invalid", name));
    }
    Ok(m.to_ascii_uppercase())
}

/// An origin-form request target (`/path?query`): what every proxy here sends.
fn check_uri(u: &str, name: &'static str) -> Result<String, Refused> {
    if !u.starts_with('/') || u.bytes().any(|b| b <= b' ' || b == 0x7f || b == b'#') {
        return Err(bad("uri_invalid", name));
    }
    Ok(u.to_string())
}

/// A host with an optional port, as in a Host header (RFC 9110 §7.2).
fn check_host(h: &str, name: &'static str) -> Result<String, Refused> {
    let ok = !h.is_empty()
        && h.len() <= 255 + 6
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~:[]!$&'()*+;=%".contains(&b));
    if !ok {
        return Err(bad("host_invalid", name));
    }
    Ok(h.to_string())
}

fn check_proto(p: &str, name: &'static str) -> Result<String, Refused> {
    let p = p.to_ascii_lowercase();
    if p != "http" && p != "https" {
        return Err(bad("proto_invalid", name));
    }
    Ok(p)
}

/// `X-Forwarded-For` as the proxy sent it (all lines joined, in order), each entry an
/// address: a garbled chain is refused here instead of quietly meaning "no client".
fn forwarded_for(headers: &[(String, Vec<u8>)], front: Front) -> Result<Option<String>, Refused> {
    let mut values = Vec::new();
    for v in all(headers, "x-forwarded-for") {
        let s = std::str::from_utf8(v).map_err(|_| bad("header_not_utf8", "x-forwarded-for"))?;
        values.push(s);
    }
    if values.is_empty() && front == Front::Nginx {
        if let Some(ip) = single(headers, "x-real-ip")? {
            barbican::net::parse_peer(ip).ok_or(bad("address_invalid", "x-real-ip"))?;
            return Ok(Some(ip.to_string()));
        }
    }
    if values.is_empty() {
        return Ok(None);
    }
    let joined = values.join(", ");
    for e in joined.split(',').map(|e| e.trim_matches([' ', '\t'])) {
        if !e.is_empty() && barbican::net::parse_peer(e).is_none() {
            return Err(bad("address_invalid", "x-forwarded-for"));
        }
    }
    Ok(Some(joined))
}

/// Builds the engine's request from an auth request, or says why it cannot.
pub fn original(
    front: Front,
    envoy_path: Option<&str>,
    req: &Incoming<'_>,
    trusted: &[Cidr],
) -> Result<Original, Refused> {
    let peer = req.peer.to_canonical();
    if !trusted.iter().any(|c| c.contains(peer)) {
        return Err(Refused {
            status: 403,
            reason: "untrusted_peer",
            header: None,
        });
    }
    let h = req.headers;
    let (method, scheme, authority, path) = match front {
        Front::Forwarded => (
            check_method(required(h, "x-forwarded-method")?, "x-forwarded-method")?,
            check_proto(required(h, "x-forwarded-proto")?, "x-forwarded-proto")?,
            check_host(required(h, "x-forwarded-host")?, "x-forwarded-host")?,
            check_uri(required(h, "x-forwarded-uri")?, "x-forwarded-uri")?,
        ),
        Front::Nginx => {
            let host = match single(h, "x-forwarded-host")? {
                Some(v) => check_host(v, "x-forwarded-host")?,
                None => check_host(required(h, "host")?, "host")?,
            };
            let proto = match single(h, "x-forwarded-proto")? {
                Some(v) => check_proto(v, "x-forwarded-proto")?,
                None => "http".to_string(),
            };
            (
                check_method(required(h, "x-original-method")?, "x-original-method")?,
                proto,
                host,
                check_uri(required(h, "x-original-uri")?, "x-original-uri")?,
            )
        }
        Front::Envoy => {
            let proto = match single(h, "x-forwarded-proto")? {
                Some(v) => check_proto(v, "x-forwarded-proto")?,
                None => "http".to_string(),
            };
            (
                check_method(req.method, ":method")?,
                proto,
                check_host(required(h, "host")?, "host")?,
                check_uri(envoy_path.unwrap_or("/"), ":path")?,
            )
        }
    };
    let xff = forwarded_for(h, front)?;
    let mut out: Vec<(String, String)> = Vec::with_capacity(h.len() + 5);
    out.push((":method".into(), method));
    out.push((":path".into(), path));
    out.push((":authority".into(), authority));
    out.push((":scheme".into(), scheme.clone()));
    for (n, v) in h {
        if n.starts_with(':') || CONSUMED.contains(&n.as_str()) {
            continue;
        }
        if n == "x-forwarded-proto" {
            // Already checked (single, http or https); the engine reads the scheme from it.
            out.push((n.clone(), scheme.clone()));
            continue;
        }
        match std::str::from_utf8(v) {
            Ok(s) => out.push((n.clone(), s.to_string())),
            Err(_) => {
                if let Some(c) = CREDENTIALS.iter().find(|c| **c == n.as_str()) {
                    return Err(bad("header_not_utf8", c));
                }
                // Other headers the engine might read (Accept, ...) are dropped: a missing
                // Accept makes a request an API client's (401), never an allow.
            }
        }
    }
    let peer = xff.as_ref().map(|_| peer);
    if let Some(x) = xff {
        out.push(("x-forwarded-for".into(), x));
    }
    Ok(Original { headers: out, peer })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trusted() -> Vec<Cidr> {
        vec![Cidr::parse("127.0.0.1/32").unwrap()]
    }

    fn hs(list: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
        list.iter()
            .map(|(n, v)| (n.to_ascii_lowercase(), v.as_bytes().to_vec()))
            .collect()
    }

    fn traefik(list: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
        let mut base = vec![
            ("X-Forwarded-Method", "GET"),
            ("X-Forwarded-Proto", "https"),
            ("X-Forwarded-Host", "sonarr.lan"),
            ("X-Forwarded-Uri", "/admin?x=1"),
            ("X-Forwarded-For", "192.168.1.7"),
            ("Host", "127.0.0.1:9091"),
        ];
        base.retain(|(n, _)| !list.iter().any(|(m, _)| m.eq_ignore_ascii_case(n)));
        base.extend_from_slice(list);
        base.retain(|(_, v)| !v.is_empty());
        hs(&base)
    }

    fn run(front: Front, headers: &[(String, Vec<u8>)], peer: &str) -> Result<Original, Refused> {
        original(
            front,
            None,
            &Incoming {
                method: "GET",
                headers,
                peer: peer.parse().unwrap(),
            },
            &trusted(),
        )
    }

    fn get<'a>(o: &'a Original, name: &str) -> Option<&'a str> {
        barbican::header(&o.headers, name)
    }

    #[test]
    fn nginx_gets_only_the_statuses_auth_request_passes() {
        for (engine, nginx) in [(200, 200), (302, 401), (401, 401), (403, 403), (400, 403)] {
            assert_eq!(Front::Nginx.answer_status(engine), nginx, "{engine}");
        }
        assert_eq!(Front::Nginx.answer_status(414), 403);
        assert_eq!(
            Front::Nginx.answer_status(503),
            503,
            "a fault stays a fault"
        );
        for f in [Front::Forwarded, Front::Envoy] {
            for s in [200, 302, 400, 401, 403, 431, 503] {
                assert_eq!(f.answer_status(s), s);
            }
        }
    }

    #[test]
    fn nginx_gets_one_set_cookie_the_one_that_sets_a_value() {
        let h = |list: &[(&str, &str)]| -> Vec<(String, String)> {
            list.iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect()
        };
        let callback = h(&[
            ("location", "/x"),
            ("set-cookie", "barbican_login=; Path=/; Max-Age=0; HttpOnly"),
            (
                "set-cookie",
                "barbican_session=abc; Path=/; Max-Age=60; HttpOnly",
            ),
        ]);
        let sent: Vec<_> = Front::Nginx
            .answer_headers(&callback)
            .into_iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            sent,
            [
                ("location", "/x"),
                (
                    "set-cookie",
                    "barbican_session=abc; Path=/; Max-Age=60; HttpOnly"
                )
            ]
        );
        // Only clearing cookies (a logout): the first one.
        let logout = h(&[
            ("set-cookie", "a=; Max-Age=0"),
            ("Set-Cookie", "b=; Max-Age=0"),
        ]);
        assert_eq!(Front::Nginx.answer_headers(&logout), [&logout[0]]);
        // Other fronts pass every cookie.
        assert_eq!(Front::Forwarded.answer_headers(&callback).len(), 3);
        assert_eq!(Front::Envoy.answer_headers(&logout).len(), 2);
    }

    #[test]
    fn endpoints_are_the_outposts_paths_and_their_short_forms() {
        let fwd = Some(Endpoint::Auth(Front::Forwarded, None));
        assert_eq!(endpoint("/outpost.goauthentik.io/auth/traefik"), fwd);
        assert_eq!(endpoint("/auth/caddy"), fwd);
        assert_eq!(endpoint("/auth/caddy?x=1"), fwd);
        assert_eq!(
            endpoint("/auth/nginx"),
            Some(Endpoint::Auth(Front::Nginx, None))
        );
        assert_eq!(
            endpoint("/outpost.goauthentik.io/auth/envoy/app/x?q=1"),
            Some(Endpoint::Auth(Front::Envoy, Some("/app/x?q=1".into())))
        );
        assert_eq!(
            endpoint("/auth/envoy"),
            Some(Endpoint::Auth(Front::Envoy, Some("/".into())))
        );
        assert_eq!(endpoint("/healthz"), Some(Endpoint::Healthz));
        assert_eq!(endpoint("/auth/traefikx"), None);
        assert_eq!(endpoint("/auth/traefik/x"), None);
        assert_eq!(endpoint("/admin"), None);
    }

    #[test]
    fn traefik_headers_become_the_original_request() {
        let o = run(
            Front::Forwarded,
            &traefik(&[("Cookie", "a=b")]),
            "127.0.0.1",
        )
        .unwrap();
        assert_eq!(
            o.headers[..4],
            [
                (":method".to_string(), "GET".to_string()),
                (":path".to_string(), "/admin?x=1".to_string()),
                (":authority".to_string(), "sonarr.lan".to_string()),
                (":scheme".to_string(), "https".to_string()),
            ]
        );
        assert_eq!(get(&o, "cookie"), Some("a=b"));
        assert_eq!(get(&o, "x-forwarded-for"), Some("192.168.1.7"));
        assert_eq!(
            get(&o, "host"),
            None,
            "the auth request's own Host is not the original's"
        );
        assert_eq!(get(&o, "x-forwarded-uri"), None);
        assert_eq!(o.peer, Some("127.0.0.1".parse().unwrap()));
    }

    #[test]
    fn an_untrusted_peer_is_refused_before_any_header_is_read() {
        // A client talking to serve directly names /api/ for its /admin request.
        let h = traefik(&[("X-Forwarded-Uri", "/api/v3/queue")]);
        let e = run(Front::Forwarded, &h, "10.0.0.9").unwrap_err();
        assert_eq!((e.status, e.reason), (403, "untrusted_peer"));
        let e = run(
            Front::Nginx,
            &hs(&[("X-Original-URI", "/api/")]),
            "10.0.0.9",
        )
        .unwrap_err();
        assert_eq!(e.status, 403);
        // IPv4-mapped IPv6 is the same peer.
        assert!(run(Front::Forwarded, &traefik(&[]), "::ffff:127.0.0.1").is_ok());
    }

    #[test]
    fn missing_duplicated_or_malformed_forwarded_headers_are_400() {
        for name in [
            "X-Forwarded-Method",
            "X-Forwarded-Proto",
            "X-Forwarded-Host",
            "X-Forwarded-Uri",
        ] {
            let e = run(Front::Forwarded, &traefik(&[(name, "")]), "127.0.0.1").unwrap_err();
            assert_eq!((e.status, e.reason), (400, "header_missing"), "{name}");
            let mut h = traefik(&[]);
            h.push((name.to_ascii_lowercase(), b"/x".to_vec()));
            let e = run(Front::Forwarded, &h, "127.0.0.1").unwrap_err();
            assert_eq!((e.status, e.reason), (400, "header_duplicated"), "{name}");
        }
        for (name, value, reason) in [
            ("X-Forwarded-Uri", "admin", "uri_invalid"),
            ("X-Forwarded-Uri", "http://evil/admin", "uri_invalid"),
            ("X-Forwarded-Uri", "/a b", "uri_invalid"),
            ("X-Forwarded-Uri", "/a#frag", "uri_invalid"),
            ("X-Forwarded-Proto", "gopher", "proto_invalid"),
            ("X-Forwarded-Proto", "http, https", "proto_invalid"),
            ("X-Forwarded-Host", "a b", "host_invalid"),
            ("X-Forwarded-Host", "a/b", "host_invalid"),
            ("X-Forwarded-Method", "GE T", "method_invalid"),
            (
                "X-Forwarded-For",
                "192.168.1.7, not-an-ip",
                "address_invalid",
            ),
        ] {
            let e = run(Front::Forwarded, &traefik(&[(name, value)]), "127.0.0.1").unwrap_err();
            assert_eq!((e.status, e.reason), (400, reason), "{name}: {value}");
        }
        let mut h = traefik(&[]);
        h.push(("cookie".into(), vec![0xff, 0xfe]));
        let e = run(Front::Forwarded, &h, "127.0.0.1").unwrap_err();
        assert_eq!((e.reason, e.header), ("header_not_utf8", Some("cookie")));
    }

    #[test]
    fn several_x_forwarded_for_lines_are_one_list_and_none_means_no_client() {
        let mut h = traefik(&[("X-Forwarded-For", "1.2.3.4")]);
        h.push(("x-forwarded-for".into(), b"10.0.0.1".to_vec()));
        let o = run(Front::Forwarded, &h, "127.0.0.1").unwrap();
        assert_eq!(get(&o, "x-forwarded-for"), Some("1.2.3.4, 10.0.0.1"));
        let o = run(
            Front::Forwarded,
            &traefik(&[("X-Forwarded-For", "")]),
            "127.0.0.1",
        )
        .unwrap();
        assert_eq!((o.peer, get(&o, "x-forwarded-for")), (None, None));
    }

    #[test]
    fn nginx_takes_the_original_from_x_original_and_never_x_original_url() {
        let h = hs(&[
            ("X-Original-Method", "post"),
            ("X-Original-URI", "/admin"),
            ("X-Original-URL", "http://sonarr.lan/api/"),
            ("X-Forwarded-Host", "sonarr.lan"),
            ("X-Real-IP", "192.168.1.7"),
            ("Host", "127.0.0.1:9091"),
        ]);
        let o = run(Front::Nginx, &h, "127.0.0.1").unwrap();
        assert_eq!(get(&o, ":path"), Some("/admin"));
        assert_eq!(get(&o, ":method"), Some("POST"));
        assert_eq!(get(&o, ":authority"), Some("sonarr.lan"));
        assert_eq!(get(&o, ":scheme"), Some("http"));
        assert_eq!(get(&o, "x-forwarded-for"), Some("192.168.1.7"));
        assert_eq!(get(&o, "x-original-url"), None);
        // Without X-Forwarded-Host the auth request's Host is the original's.
        let h = hs(&[
            ("X-Original-Method", "GET"),
            ("X-Original-URI", "/"),
            ("Host", "a.lan"),
        ]);
        assert_eq!(
            get(&run(Front::Nginx, &h, "127.0.0.1").unwrap(), ":authority"),
            Some("a.lan")
        );
        let h = hs(&[("X-Original-Method", "GET"), ("Host", "a.lan")]);
        assert_eq!(
            run(Front::Nginx, &h, "127.0.0.1").unwrap_err().header,
            Some("x-original-uri")
        );
    }

    #[test]
    fn envoy_takes_the_path_after_the_prefix_and_the_original_host() {
        let h = hs(&[("Host", "sonarr.lan"), ("X-Forwarded-Proto", "https")]);
        let o = original(
            Front::Envoy,
            Some("/admin?x"),
            &Incoming {
                method: "DELETE",
                headers: &h,
                peer: "127.0.0.1".parse().unwrap(),
            },
            &trusted(),
        )
        .unwrap();
        assert_eq!(get(&o, ":path"), Some("/admin?x"));
        assert_eq!(get(&o, ":method"), Some("DELETE"));
        assert_eq!(get(&o, ":authority"), Some("sonarr.lan"));
        assert_eq!(get(&o, ":scheme"), Some("https"));
    }

    /// The issue's trap: a client-sent `X-Forwarded-Uri: /api/...` must never turn a
    /// request for /admin into one for an open path. From a trusted proxy the proxy's own
    /// header is the only one (a second copy is a 400); from anyone else nothing is read.
    #[test]
    fn a_client_forwarded_uri_never_unlocks_admin() {
        let doc = br#"{"routes": [
            {"match": {"path_prefix": "/api/"}, "policy": "bypass"},
            {"match": {"path_prefix": "/"}, "policy": "deny"}],
            "trusted_proxies": ["127.0.0.1/32"]}"#;
        let mut engine = barbican::Engine::from_json(doc).unwrap();
        let mut store = barbican::MemStore::default();
        let mut decide = |o: Original| {
            engine.decide(
                barbican::Request {
                    id: 1,
                    headers: &barbican::request::borrow_all(&o.headers),
                    peer: o.peer,
                    body: None,
                },
                1,
                &mut store,
            )
        };
        // The proxy's header says /admin; the client's copy comes as a second line.
        let mut h = traefik(&[("X-Forwarded-Uri", "/admin")]);
        h.push(("x-forwarded-uri".into(), b"/api/v3".to_vec()));
        assert_eq!(
            run(Front::Forwarded, &h, "127.0.0.1").unwrap_err().status,
            400
        );
        // Only the proxy's: /admin is denied.
        let o = run(
            Front::Forwarded,
            &traefik(&[("X-Forwarded-Uri", "/admin")]),
            "127.0.0.1",
        );
        assert!(matches!(decide(o.unwrap()), barbican::Step::Respond(r) if r.status == 403));
        // Dot segments are resolved by the engine before matching.
        let o = run(
            Front::Forwarded,
            &traefik(&[("X-Forwarded-Uri", "/api/../admin")]),
            "127.0.0.1",
        );
        assert!(matches!(decide(o.unwrap()), barbican::Step::Respond(r) if r.status >= 400));
        // A client talking to serve directly.
        let h = traefik(&[("X-Forwarded-Uri", "/api/v3")]);
        assert_eq!(
            run(Front::Forwarded, &h, "192.0.2.1").unwrap_err().status,
            403
        );
    }
}
