//! Barbican as an OpenID Connect relying party: the authorization request, the login state
//! that travels through the provider, the token request of the code flow, the session
//! cookie, and which URLs a browser may be sent back to. Sans-IO: the engine
//! (`decision/oidc.rs`) drives it.
//!
//! Nothing is stored server-side: the login state is sealed into the `state` parameter (so
//! it survives any number of workers or Traefik instances) and bound to the browser by a
//! short-lived cookie; the session is a sealed cookie holding the identity and its expiry.

use crate::config::{OidcConfig, OidcFlow, SameSite, TokenAuth};
use crate::hostname::HostPattern;
use crate::seal::Sealer;
pub use crate::url::{split_url, Url};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::Deserialize;

/// Percent-encodes a query component (RFC 3986 unreserved characters stay).
pub fn pct(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `application/x-www-form-urlencoded` pairs (a query string or a form body). Pairs that do
/// not decode are left out.
pub fn form_pairs(s: &str) -> Vec<(String, String)> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .filter_map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            Some((
                crate::tokens::percent_decode(k)?,
                crate::tokens::percent_decode(v)?,
            ))
        })
        .collect()
}

/// The one value of a form field; `None` when absent or repeated (a repeated `state` or
/// `code` is a crafted request).
pub fn form_field<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    let mut it = pairs.iter().filter(|(k, _)| k == name);
    let first = it.next()?;
    it.next().is_none().then_some(first.1.as_str())
}

/// The value of cookie `name` in the request's Cookie header values (the first one). On
/// every protected request: plain scanning at ASCII bytes, no allocation (`crate::ascii`
/// says why not `char` patterns).
pub fn cookie<'a>(values: impl IntoIterator<Item = &'a str>, name: &str) -> Option<&'a str> {
    for v in values {
        for part in crate::ascii::split(v, b';') {
            if let Some(value) = part
                .trim_ascii_start()
                .strip_prefix(name)
                .filter(|r| crate::ascii::starts_with(r, b'='))
                .and_then(|r| r.get(1..))
            {
                return Some(crate::ascii::trim(value.trim_ascii_end(), b'"'));
            }
        }
    }
    None
}

/// What a login carries through the provider, sealed into `state`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginState {
    /// Where to send the browser afterwards: the URL it asked for.
    pub u: String,
    /// The id_token's expected `nonce`.
    pub n: String,
    /// PKCE verifier (code flow).
    pub v: Option<String>,
    /// Equals the login cookie's value: ties the callback to the browser that started it.
    pub b: String,
    /// Issued at (unix seconds).
    pub t: u64,
}

/// The session Barbican's cookie holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub sub: String,
    pub user: Option<String>,
    pub email: Option<String>,
    pub name: Option<String>,
    pub groups: Vec<String>,
    /// Expiry (unix seconds).
    pub exp: u64,
}

// Sealed values are encoded by hand, compactly: a version byte, then fields as
// little-endian integers and length-prefixed strings. (A cookie has ~4 KB; a serde
// serializer would also add ~25 KB of wasm for two structs.)
const FORMAT_V1: u8 = 1;

#[derive(Default)]
struct Writer(Vec<u8>);

impl Writer {
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn str(&mut self, s: &str) {
        let n = u32::try_from(s.len()).unwrap_or(u32::MAX);
        self.0.extend_from_slice(&n.to_le_bytes());
        self.0
            .extend_from_slice(s.as_bytes().get(..n as usize).unwrap_or_default());
    }
    fn opt(&mut self, s: Option<&str>) {
        match s {
            Some(s) => {
                self.0.push(1);
                self.str(s);
            }
            None => self.0.push(0),
        }
    }
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1)?.first().copied()
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn str(&mut self) -> Option<String> {
        let n = u32::from_le_bytes(self.take(4)?.try_into().ok()?);
        let b = self.take(usize::try_from(n).ok()?)?;
        String::from_utf8(b.to_vec()).ok()
    }
    fn opt(&mut self) -> Option<Option<String>> {
        match self.u8()? {
            0 => Some(None),
            1 => Some(Some(self.str()?)),
            _ => None,
        }
    }
    fn end(&self) -> Option<()> {
        self.0.is_empty().then_some(())
    }
}

impl LoginState {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.0.push(FORMAT_V1);
        w.str(&self.u);
        w.str(&self.n);
        w.opt(self.v.as_deref());
        w.str(&self.b);
        w.u64(self.t);
        w.0
    }

    pub fn decode(b: &[u8]) -> Option<LoginState> {
        let mut r = Reader(b);
        (r.u8()? == FORMAT_V1).then_some(())?;
        let s = LoginState {
            u: r.str()?,
            n: r.str()?,
            v: r.opt()?,
            b: r.str()?,
            t: r.u64()?,
        };
        r.end()?;
        Some(s)
    }
}

impl Session {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.0.push(FORMAT_V1);
        w.u64(self.exp);
        w.str(&self.sub);
        w.opt(self.user.as_deref());
        w.opt(self.email.as_deref());
        w.opt(self.name.as_deref());
        w.u64(self.groups.len() as u64);
        for g in &self.groups {
            w.str(g);
        }
        w.0
    }

    pub fn decode(b: &[u8]) -> Option<Session> {
        let mut r = Reader(b);
        (r.u8()? == FORMAT_V1).then_some(())?;
        let exp = r.u64()?;
        let sub = r.str()?;
        let (user, email, name) = (r.opt()?, r.opt()?, r.opt()?);
        let n = r.u64()?;
        let mut groups = Vec::new();
        for _ in 0..n.min(4096) {
            groups.push(r.str()?);
        }
        r.end()?;
        Some(Session {
            sub,
            user,
            email,
            name,
            groups,
            exp,
        })
    }
}

/// Browsers refuse cookies beyond 4096 bytes (name, value and attributes).
pub const MAX_COOKIE_VALUE: usize = 3800;

/// A compiled `session.oidc`.
#[derive(Debug)]
pub struct Rp {
    pub cfg: OidcConfig,
    pub redirect_host: String,
    pub redirect_path: String,
    domains: Vec<HostPattern>,
    pub sessions: Sealer,
    pub states: Sealer,
    /// (authority, path) of the token endpoint.
    pub token: Option<(String, String)>,
}

impl Rp {
    /// `None` when the config does not validate (validation reports why).
    pub fn new(cfg: &OidcConfig) -> Option<Rp> {
        let r = split_url(&cfg.redirect_uri)?;
        let domains = match &cfg.domains {
            Some(d) => d
                .iter()
                .filter_map(|s| HostPattern::parse(s).ok())
                .collect(),
            None => {
                let mut d = vec![HostPattern::parse(&r.host).ok()?];
                if let Some(c) = &cfg.cookie.domain {
                    let c = c.trim_start_matches('.');
                    d.extend(HostPattern::parse(c).ok());
                    d.extend(HostPattern::parse(&format!("*.{c}")).ok());
                }
                d
            }
        };
        let secrets: Vec<&[u8]> = cfg.secrets.iter().map(|s| s.expose().as_bytes()).collect();
        Some(Rp {
            redirect_host: r.host.clone(),
            redirect_path: r.path.to_string(),
            domains,
            sessions: Sealer::new(&secrets, "session"),
            states: Sealer::new(&secrets, "login-state"),
            token: cfg
                .token_endpoint
                .as_deref()
                .and_then(crate::url::split_http_uri),
            cfg: cfg.clone(),
        })
    }

    /// Whether a browser may be sent to `url` after login or logout: an absolute http(s) URL
    /// on one of the configured domains. Everything else (`//evil`, `\\evil`, `javascript:`,
    /// other hosts) is an open redirect.
    pub fn may_return_to(&self, url: &str) -> bool {
        split_url(url).is_some_and(|u| self.host_allowed(&u.host))
    }

    pub fn host_allowed(&self, host: &str) -> bool {
        self.domains.iter().any(|d| d.matches(host))
    }

    pub fn is_callback(&self, host: &str, path: &str) -> bool {
        host == self.redirect_host && path == self.redirect_path
    }

    /// The token endpoint's scheme, for `:scheme` (the cluster decides the transport).
    fn token_scheme(&self) -> &'static str {
        match &self.cfg.token_endpoint {
            Some(u) if u.starts_with("https://") => "https",
            _ => "http",
        }
    }

    pub fn login_cookie_name(&self) -> String {
        format!("{}_login", self.cfg.cookie.name)
    }

    /// The authorization request (OpenID Connect Core §3.1.2.1 / §3.2.2.1).
    pub fn authorization_url(&self, state: &str, nonce: &str, pkce: Option<&str>) -> String {
        let c = &self.cfg;
        let sep = if c.authorization_endpoint.contains('?') {
            '&'
        } else {
            '?'
        };
        let (response_type, mode) = match c.flow {
            OidcFlow::Code => ("code", None),
            OidcFlow::FormPost => ("id_token", Some("form_post")),
        };
        let mut u = format!(
            "{}{sep}response_type={response_type}&client_id={}&redirect_uri={}&scope={}&state={}&nonce={}",
            c.authorization_endpoint,
            pct(&c.client_id),
            pct(&c.redirect_uri),
            pct(&c.scopes.join(" ")),
            pct(state),
            pct(nonce),
        );
        if let Some(m) = mode {
            u.push_str("&response_mode=");
            u.push_str(m);
        }
        if let Some(ch) = pkce {
            u.push_str("&code_challenge=");
            u.push_str(&pct(ch));
            u.push_str("&code_challenge_method=S256");
        }
        u
    }

    /// Headers (pseudo-headers included) and form body of the code exchange
    /// (RFC 6749 §4.1.3, RFC 7636 §4.5).
    pub fn token_request(&self, code: &str, verifier: &str) -> (Vec<(String, String)>, Vec<u8>) {
        let c = &self.cfg;
        let (authority, path) = self.token.clone().unwrap_or_default();
        let mut headers = vec![
            (":method".to_string(), "POST".to_string()),
            (":path".to_string(), path),
            (":authority".to_string(), authority),
            (":scheme".to_string(), self.token_scheme().to_string()),
            (
                "content-type".to_string(),
                "application/x-www-form-urlencoded".to_string(),
            ),
            ("accept".to_string(), "application/json".to_string()),
        ];
        let mut body = format!(
            "grant_type=authorization_code&code={}&redirect_uri={}&code_verifier={}",
            pct(code),
            pct(&c.redirect_uri),
            pct(verifier)
        );
        let auth = c.token_auth.unwrap_or(if c.client_secret.is_some() {
            TokenAuth::Basic
        } else {
            TokenAuth::None
        });
        let secret = c.client_secret.as_ref().map_or("", |s| s.expose());
        match auth {
            // RFC 6749 §2.3.1: id and secret are form-encoded before Basic.
            TokenAuth::Basic => headers.push((
                "authorization".to_string(),
                format!(
                    "Basic {}",
                    STANDARD.encode(format!("{}:{}", pct(&c.client_id), pct(secret)))
                ),
            )),
            TokenAuth::Post => {
                body.push_str(&format!(
                    "&client_id={}&client_secret={}",
                    pct(&c.client_id),
                    pct(secret)
                ));
            }
            TokenAuth::None => body.push_str(&format!("&client_id={}", pct(&c.client_id))),
        }
        (headers, body.into_bytes())
    }

    /// A `Set-Cookie` value. `max_age` 0 deletes the cookie.
    pub fn set_cookie(&self, name: &str, value: &str, max_age: u64, same_site: SameSite) -> String {
        let c = &self.cfg.cookie;
        let mut s = format!("{name}={value}; Path=/; Max-Age={max_age}; HttpOnly");
        if let Some(d) = &c.domain {
            s.push_str("; Domain=");
            s.push_str(d.trim_start_matches('.'));
        }
        if c.secure {
            s.push_str("; Secure");
        }
        s.push_str(match same_site {
            SameSite::Lax => "; SameSite=Lax",
            SameSite::Strict => "; SameSite=Strict",
            SameSite::None => "; SameSite=None",
        });
        s
    }

    /// The login cookie travels on the provider's return: a top-level GET for the code flow
    /// (Lax suffices) but a cross-site POST for form_post (only `None` is sent with it).
    pub fn login_same_site(&self) -> SameSite {
        match self.cfg.flow {
            OidcFlow::Code => SameSite::Lax,
            OidcFlow::FormPost if self.cfg.cookie.secure => SameSite::None,
            // Without Secure, None would be dropped by browsers; Lax is what remains (and
            // works only when the provider is same-site) — validated configs say so.
            OidcFlow::FormPost => SameSite::Lax,
        }
    }

    /// Where logout sends the browser: the provider's end-session endpoint (RP-initiated
    /// logout 1.0) when configured, else the post-logout URI, else `/`.
    pub fn logout_location(&self) -> String {
        let c = &self.cfg;
        match (&c.end_session_endpoint, &c.post_logout_redirect_uri) {
            (Some(e), post) => {
                let sep = if e.contains('?') { '&' } else { '?' };
                let mut u = format!("{e}{sep}client_id={}", pct(&c.client_id));
                if let Some(p) = post {
                    u.push_str("&post_logout_redirect_uri=");
                    u.push_str(&pct(p));
                }
                u
            }
            (None, Some(p)) => p.clone(),
            (None, None) => "/".into(),
        }
    }
}

/// The parts of a token endpoint answer Barbican reads.
#[derive(Debug, Deserialize)]
pub struct TokenResponse {
    pub id_token: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rp(extra: &str) -> Rp {
        let json = format!(
            r#"{{"issuer":"http://idp.test","client_id":"c 1","client_secret":"s&1",
            "authorization_endpoint":"http://idp.test/auth","token_endpoint":"http://idp.test:8080/token",
            "cluster":"idp","redirect_uri":"https://app.lan/.barbican/callback",
            "secrets":["0123456789abcdef0123456789abcdef"]{extra}}}"#
        );
        let cfg: OidcConfig = serde_json::from_str(&json).unwrap();
        Rp::new(&cfg).unwrap()
    }

    #[test]
    fn strict_urls() {
        let u = split_url("https://App.Lan:8443/x/y?q=1").unwrap();
        assert_eq!(
            (u.scheme, u.authority, u.host.as_str(), u.path, u.query),
            ("https", "App.Lan:8443", "app.lan", "/x/y", Some("q=1"))
        );
        assert_eq!(split_url("http://a.lan").unwrap().path, "/");
        assert_eq!(split_url("http://a.lan?x").unwrap().query, Some("x"));
        for bad in [
            "//evil.example/",
            "\\\\evil",
            "/\\evil.example",
            "javascript:alert(1)",
            "http://user@evil.example/",
            "http://a.lan@evil.example/",
            "https://evil.example\\@a.lan/",
            "http://a.lan/x#frag",
            "http:///x",
            "http://a.lan:80x/",
            "http://a .lan/",
            "http://a.lan//evil.example",
            "ftp://a.lan/",
            "http://a.lan/\r\nx",
            "http://ä.lan/",
        ] {
            assert!(split_url(bad).is_none(), "{bad}");
        }
        assert!(split_url("http://[::1]:8080/x").is_some());
        assert!(split_url("http://[::1]/x").is_some());
        assert!(split_url("http://[::1]x/").is_none());
    }

    #[test]
    fn return_urls_stay_on_the_configured_domains() {
        let r = rp("");
        assert!(r.may_return_to("https://app.lan/x?y=1"));
        assert!(r.may_return_to("http://APP.lan:8080/"));
        for bad in [
            "https://evil.example/",
            "https://app.lan.evil.example/",
            "//evil.example",
            "\\\\evil",
            "javascript:alert(1)",
            "/relative",
            "https://x.app.lan/",
        ] {
            assert!(!r.may_return_to(bad), "{bad}");
        }
        let r = rp(r#","cookie":{"domain":".lan"}"#);
        assert!(r.may_return_to("https://x.lan/"));
        assert!(r.may_return_to("https://lan/"));
        assert!(!r.may_return_to("https://xlan/"));
        let r = rp(r#","domains":["*.corp.test"]"#);
        assert!(r.may_return_to("https://a.corp.test/"));
        assert!(!r.may_return_to("https://app.lan/"));
    }

    #[test]
    fn authorization_and_token_requests() {
        let r = rp("");
        let u = r.authorization_url("st/1", "n+1", Some("ch"));
        assert_eq!(
            u,
            "http://idp.test/auth?response_type=code&client_id=c%201&redirect_uri=https%3A%2F%2Fapp.lan%2F.barbican%2Fcallback&scope=openid%20profile%20email&state=st%2F1&nonce=n%2B1&code_challenge=ch&code_challenge_method=S256"
        );
        let (h, body) = r.token_request("abc/=", "ver");
        assert!(h.contains(&(":authority".into(), "idp.test:8080".into())));
        assert!(h.contains(&(":path".into(), "/token".into())));
        // base64("c%201:s%261")
        assert!(h.contains(&("authorization".into(), "Basic YyUyMDE6cyUyNjE=".into())));
        assert_eq!(
            String::from_utf8(body).unwrap(),
            "grant_type=authorization_code&code=abc%2F%3D&redirect_uri=https%3A%2F%2Fapp.lan%2F.barbican%2Fcallback&code_verifier=ver"
        );
        let r = rp(r#","token_auth":"post""#);
        let (h, body) = r.token_request("c", "v");
        assert!(!h.iter().any(|(n, _)| n == "authorization"));
        assert!(String::from_utf8(body)
            .unwrap()
            .ends_with("&client_id=c%201&client_secret=s%261"));
        let fp = rp(r#","flow":"form_post""#);
        assert!(fp
            .authorization_url("s", "n", None)
            .contains("response_type=id_token&client_id"));
        assert!(fp
            .authorization_url("s", "n", None)
            .ends_with("&response_mode=form_post"));
    }

    #[test]
    fn cookies_and_forms() {
        fn cookie(h: &[(String, String)], name: &str) -> Option<String> {
            let h = crate::request::borrow_all(h);
            let v = crate::request::View::read(&h, &[]);
            super::cookie(v.all(v.cookie, "cookie"), name).map(str::to_string)
        }
        let h = vec![
            (
                "cookie".to_string(),
                "a=1; barbican_session=xyz; b=2".to_string(),
            ),
            ("Cookie".to_string(), "barbican_session=later".to_string()),
        ];
        assert_eq!(cookie(&h, "barbican_session").as_deref(), Some("xyz"));
        assert_eq!(cookie(&h, "b").as_deref(), Some("2"));
        assert_eq!(cookie(&h, "barbican").as_deref(), None);
        assert_eq!(cookie(&h, "a").as_deref(), Some("1"));
        let q = vec![(
            "cookie".to_string(),
            " x = 1;y=\"q\" ;barbican_session_login=z".to_string(),
        )];
        assert_eq!(cookie(&q, "y").as_deref(), Some("q"));
        assert_eq!(cookie(&q, "barbican_session").as_deref(), None);
        assert_eq!(cookie(&q, "barbican_session_login").as_deref(), Some("z"));
        assert_eq!(
            cookie(&q, "x").as_deref(),
            None,
            "no space before '=' in a cookie pair"
        );
        let f = form_pairs("state=a%2Fb&code=x+y&code=z&e=");
        assert_eq!(form_field(&f, "state"), Some("a/b"));
        assert_eq!(form_field(&f, "code"), None, "repeated");
        assert_eq!(form_field(&f, "e"), Some(""));
        let r = rp(r#","cookie":{"domain":".lan","same_site":"Strict"}"#);
        assert_eq!(
            r.set_cookie("n", "v", 60, SameSite::Strict),
            "n=v; Path=/; Max-Age=60; HttpOnly; Domain=lan; Secure; SameSite=Strict"
        );
    }

    #[test]
    fn sealed_formats_round_trip_and_refuse_garbage() {
        let s = Session {
            sub: "alice".into(),
            user: Some("alice".into()),
            email: None,
            name: Some("Alice Liddell".into()),
            groups: vec!["admins".into(), "a|b".into()],
            exp: 1_700_000_000,
        };
        assert_eq!(Session::decode(&s.encode()), Some(s.clone()));
        let l = LoginState {
            u: "https://app.lan/x".into(),
            n: "n".into(),
            v: None,
            b: "b".into(),
            t: 5,
        };
        assert_eq!(LoginState::decode(&l.encode()), Some(l.clone()));
        let enc = s.encode();
        for i in 0..enc.len() {
            assert!(Session::decode(&enc[..i]).is_none(), "truncated at {i}");
        }
        let mut extra = enc.clone();
        extra.push(0);
        assert!(Session::decode(&extra).is_none());
        assert!(
            LoginState::decode(&enc).is_none(),
            "a session is not a login state"
        );
    }

    #[test]
    fn logout_locations() {
        assert_eq!(rp("").logout_location(), "/");
        assert_eq!(
            rp(r#","end_session_endpoint":"http://idp.test/end","post_logout_redirect_uri":"https://app.lan/bye""#)
                .logout_location(),
            "http://idp.test/end?client_id=c%201&post_logout_redirect_uri=https%3A%2F%2Fapp.lan%2Fbye"
        );
    }
}
