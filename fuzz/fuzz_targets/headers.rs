//! Request header parsing: Cookie (session cookies per dialect, a named cookie),
//! Authorization (Bearer, Basic), the token from a query or cookie, X-Forwarded-For with
//! trusted proxies, peer addresses, Host. Oracles: what comes back is taken from the input,
//! and the client address is the peer or one of the forwarded entries.
#![no_main]
use arbitrary::Arbitrary;
use barbican::config::ForwardAuthConfig;
use barbican::idp::ForwardAuth;
use barbican::net::{client_ip, parse_peer, Cidr};
use barbican_fuzz::{header_list, Name};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

#[derive(Arbitrary, Debug)]
struct Input {
    headers: Vec<(Name, String)>,
    query: Option<String>,
    cookie_name: String,
    token_query: Option<String>,
    token_cookie: Option<String>,
    basic: bool,
    peer: String,
    trusted: Vec<String>,
    dialect: u8,
    /// Bytes handed to the proxy-wasm map reader as if the host had serialized them.
    raw_map: Vec<u8>,
}

/// The proxy-wasm map encoding of a header list (as proxy-wasm-cpp-host writes it).
fn encode(pairs: &[(&str, &str)]) -> Vec<u8> {
    let len = |s: &str| u32::try_from(s.len()).expect("short").to_le_bytes();
    let mut out = u32::try_from(pairs.len())
        .expect("few")
        .to_le_bytes()
        .to_vec();
    for (n, v) in pairs {
        out.extend_from_slice(&len(n));
        out.extend_from_slice(&len(v));
    }
    for (n, v) in pairs {
        out.extend_from_slice(n.as_bytes());
        out.push(0);
        out.extend_from_slice(v.as_bytes());
        out.push(0);
    }
    out
}

fn dialects() -> &'static Vec<ForwardAuth> {
    static D: OnceLock<Vec<ForwardAuth>> = OnceLock::new();
    D.get_or_init(|| {
        [
            r#"{"dialect":"authentik","cluster":"a"}"#,
            r#"{"dialect":"authelia","cluster":"a"}"#,
            r#"{"dialect":"oauth2-proxy","cluster":"a"}"#,
            r#"{"dialect":"custom","cluster":"a","path":"/auth","session_cookies":[]}"#,
        ]
        .iter()
        .filter_map(|j| serde_json::from_str::<ForwardAuthConfig>(j).ok())
        .map(|c| ForwardAuth::new(&c))
        .collect()
    })
}

fuzz_target!(|i: Input| {
    let headers = header_list(&i.headers);
    let from_input = |s: &str| headers.iter().any(|(_, v)| v.contains(s));

    // The engine's one-pass view finds what a scan by name finds.
    let borrowed = barbican::request::borrow_all(&headers);

    // The Envoy adapter's in-place map reader: a host's encoding of these headers reads back
    // as them, and arbitrary bytes never panic (`Malformed` or a list taken from the input).
    let buf = encode(&borrowed);
    assert_eq!(
        barbican::text::read_map(&buf, false).as_ref(),
        Ok(&borrowed)
    );
    assert_eq!(barbican::text::read_map(&buf, true).as_ref(), Ok(&borrowed));
    for answer in [false, true] {
        if let Ok(list) = barbican::text::read_map(&i.raw_map, answer) {
            assert!(list.len() <= i.raw_map.len() / 8);
        }
    }
    let view = barbican::request::View::read(&borrowed, &[]);
    let first = |name: &str| barbican::header(&headers, name);
    for (got, name) in [
        (view.path, ":path"),
        (view.method, ":method"),
        (view.origin, "origin"),
        (view.accept, "accept"),
        (view.content_type, "content-type"),
        (view.forwarded_proto, "x-forwarded-proto"),
        (view.cookie.first, "cookie"),
        (view.authorization.first, "authorization"),
        (view.forwarded_for.first, "x-forwarded-for"),
    ] {
        assert_eq!(got, first(name), "{name}");
    }
    let cookies = headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("cookie"));
    assert!(view
        .all(view.cookie, "cookie")
        .eq(cookies.map(|(_, v)| v.as_str())));
    if let Some(v) = barbican::oidc::cookie(view.all(view.cookie, "cookie"), &i.cookie_name) {
        assert!(from_input(v));
    }
    if let Some(fa) = dialects().get(usize::from(i.dialect) % 4) {
        for c in fa.session_cookies(view.all(view.cookie, "cookie")) {
            assert!(from_input(c));
        }
        let _ = fa.is_sign_out("/oauth2/sign_out", i.query.as_deref());
    }
    let _ = barbican::tokens::extract(
        &view,
        i.query.as_deref(),
        i.token_query.as_deref(),
        i.token_cookie.as_deref(),
        i.basic,
    );

    let trusted: Vec<Cidr> = i
        .trusted
        .iter()
        .filter_map(|c| Cidr::parse(c).ok())
        .collect();
    for c in &trusted {
        let back = Cidr::parse(&c.to_string()).expect("a CIDR's display parses");
        assert_eq!(&back, c);
    }
    let peer = parse_peer(&i.peer);
    let xff: Vec<&str> = headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("x-forwarded-for"))
        .map(|(_, v)| v.as_str())
        .collect();
    if let Some(ip) = client_ip(peer, &xff, &trusted) {
        let p = peer.expect("no client address without a peer");
        assert!(
            ip == p.to_canonical() || !xff.is_empty(),
            "{ip} from nowhere"
        );
    }
    for (n, v) in &headers {
        let _ = barbican::identity::is_identity_header(n, &[]);
        if n == "host" || n == ":authority" {
            let h = barbican::route::normalize_host(v);
            assert!(!h.bytes().any(|b| b.is_ascii_uppercase()));
        }
    }
});
