//! IdP dialects: how to build a forward-auth callout and how to read its answer.
//! One file per dialect holds its protocol constants; this file holds what they share.

pub mod authelia;
pub mod authentik;
pub mod introspection;
pub mod oauth2_proxy;

use crate::config::{Dialect, ForwardAuthConfig};
use crate::{header, Millis};

/// A forward-auth endpoint, compiled from config.
#[derive(Debug, Clone)]
pub struct ForwardAuth {
    pub dialect: Dialect,
    pub cluster: String,
    pub authority: Option<String>,
    pub path: String,
    /// Authentik's envoy endpoint takes the original path appended to its own.
    append_original_path: bool,
    pub timeout_ms: u64,
    /// Cookie name prefixes forming the session; empty = all cookies.
    pub session_cookies: Vec<String>,
    pub sign_out_paths: Vec<String>,
    /// A query parameter (`name=value`) that signs out on any path.
    sign_out_query: Option<&'static str>,
    request_headers: Vec<String>,
    success: Vec<u16>,
    /// Response headers copied to the upstream: exact names, or prefixes (ending in `*`).
    copy: Vec<String>,
    groups_header: Option<String>,
    groups_separator: String,
}

/// What the IdP's answer means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allow {
        /// Headers for the upstream request (lower-case names).
        identity: Vec<(String, String)>,
        /// `Set-Cookie` values to relay to the client.
        set_cookies: Vec<String>,
        /// Whether the answer may be reused for the same credentials.
        cacheable: bool,
        /// A hard end for any reuse (the session token's `exp`).
        not_after: Option<Millis>,
    },
    Deny {
        status: u16,
        /// Location, Set-Cookie, WWW-Authenticate: what the client needs to log in.
        headers: Vec<(String, String)>,
        cacheable: bool,
    },
    /// Connect failure, timeout or 5xx: the IdP could not decide.
    Unavailable,
}

/// The original request, as the dialects need it.
pub struct Original<'a> {
    pub method: &'a str,
    pub scheme: &'a str,
    /// As received (may carry a port).
    pub authority: &'a str,
    /// Normalized path and query.
    pub path_and_query: &'a str,
    pub headers: &'a [crate::request::Header<'a>],
}

/// Headers every dialect forwards when the client sent them: the credentials, and what
/// lets the IdP tell a browser from an API client.
const FORWARDED: &[&str] = &[
    "cookie",
    "authorization",
    "user-agent",
    "accept",
    "x-requested-with",
];

/// What a dialect implies when the config does not say otherwise.
struct Defaults {
    path: &'static str,
    cookie: &'static str,
    sign_out: &'static str,
    copy: Vec<String>,
    /// Groups header and separator.
    groups: Option<(&'static str, &'static str)>,
}

impl Defaults {
    fn of(dialect: Dialect) -> Defaults {
        match dialect {
            Dialect::Authentik => Defaults {
                path: authentik::PATH,
                cookie: authentik::SESSION_COOKIE_PREFIX,
                sign_out: authentik::SIGN_OUT_PATH,
                // Authentik may also set `Authorization: Basic` for the backend.
                copy: vec![
                    format!("{}*", authentik::IDENTITY_PREFIX),
                    "authorization".into(),
                ],
                groups: Some((authentik::GROUPS_HEADER, authentik::GROUPS_SEPARATOR)),
            },
            Dialect::Authelia => Defaults {
                path: authelia::PATH,
                cookie: authelia::SESSION_COOKIE_PREFIX,
                sign_out: authelia::SIGN_OUT_PATH,
                copy: authelia::IDENTITY.iter().map(|s| s.to_string()).collect(),
                groups: Some((authelia::GROUPS_HEADER, authelia::GROUPS_SEPARATOR)),
            },
            Dialect::OAuth2Proxy => Defaults {
                path: oauth2_proxy::PATH,
                cookie: oauth2_proxy::SESSION_COOKIE_PREFIX,
                sign_out: oauth2_proxy::SIGN_OUT_PATH,
                copy: vec![format!("{}*", oauth2_proxy::IDENTITY_PREFIX)],
                groups: Some((oauth2_proxy::GROUPS_HEADER, oauth2_proxy::GROUPS_SEPARATOR)),
            },
            Dialect::Custom => Defaults {
                path: "",
                cookie: "",
                sign_out: "",
                copy: Vec::new(),
                groups: None,
            },
        }
    }
}

impl ForwardAuth {
    pub fn new(c: &ForwardAuthConfig) -> ForwardAuth {
        let d = Defaults::of(c.dialect);
        let (path, cookie, sign_out, copy, groups) =
            (d.path, d.cookie, d.sign_out, d.copy, d.groups);
        let lower = |v: &Vec<String>| v.iter().map(|s| s.to_ascii_lowercase()).collect::<Vec<_>>();
        ForwardAuth {
            dialect: c.dialect,
            cluster: c.cluster.clone(),
            authority: c.authority.clone(),
            path: c.path.clone().unwrap_or_else(|| path.to_string()),
            append_original_path: c.dialect == Dialect::Authentik,
            sign_out_query: (c.dialect == Dialect::Authentik).then_some(authentik::SIGN_OUT_QUERY),
            timeout_ms: c.timeout_ms,
            session_cookies: c.session_cookies.clone().unwrap_or_else(|| {
                if cookie.is_empty() {
                    Vec::new()
                } else {
                    vec![cookie.to_string()]
                }
            }),
            sign_out_paths: c.sign_out_paths.clone().unwrap_or_else(|| {
                if sign_out.is_empty() {
                    Vec::new()
                } else {
                    vec![sign_out.to_string()]
                }
            }),
            request_headers: c.request_headers.as_ref().map(lower).unwrap_or_default(),
            success: c
                .success_statuses
                .clone()
                .unwrap_or_else(|| match c.dialect {
                    Dialect::OAuth2Proxy => vec![200, 202],
                    Dialect::Custom => vec![200],
                    _ => vec![200, 204],
                }),
            copy: c.copy_headers.as_ref().map(lower).unwrap_or(copy),
            groups_header: c
                .groups_header
                .as_ref()
                .map(|g| g.to_ascii_lowercase())
                .or_else(|| groups.map(|(h, _)| h.to_string())),
            groups_separator: c
                .groups_separator
                .clone()
                .or_else(|| groups.map(|(_, s)| s.to_string()))
                .unwrap_or_else(|| ",".into()),
        }
    }

    /// Whether a request (normalized match path, raw query) ends the session.
    pub fn is_sign_out(&self, match_path: &str, query: Option<&str>) -> bool {
        self.sign_out_paths.iter().any(|p| p == match_path)
            || self.sign_out_query.is_some_and(|q| {
                query.is_some_and(|qs| qs.split('&').any(|kv| kv.eq_ignore_ascii_case(q)))
            })
    }

    /// The callout's headers, pseudo-headers first.
    pub fn build(&self, o: &Original<'_>) -> Vec<(String, String)> {
        let path = if self.append_original_path {
            format!("{}{}", self.path.trim_end_matches('/'), o.path_and_query)
        } else {
            self.path.clone()
        };
        let authority = self
            .authority
            .clone()
            .unwrap_or_else(|| o.authority.to_string());
        let mut h: Vec<(String, String)> = vec![
            (":method".into(), "GET".into()),
            (":path".into(), path),
            (":authority".into(), authority),
            (":scheme".into(), "http".into()),
        ];
        for name in FORWARDED
            .iter()
            .copied()
            .chain(self.request_headers.iter().map(String::as_str))
        {
            if h.iter().any(|(n, _)| n == name) {
                continue;
            }
            for (_, v) in o
                .headers
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            {
                h.push((name.to_string(), v.to_string()));
            }
        }
        h.push(("x-forwarded-proto".into(), o.scheme.to_string()));
        h.push(("x-forwarded-host".into(), o.authority.to_string()));
        h.push(("x-forwarded-uri".into(), o.path_and_query.to_string()));
        h.push(("x-forwarded-method".into(), o.method.to_string()));
        if let Some(xff) = header(o.headers, "x-forwarded-for") {
            h.push(("x-forwarded-for".into(), xff.to_string()));
        }
        h
    }

    /// Reads the IdP's answer. `status` 0 means the host could not reach the IdP.
    pub fn interpret(&self, status: u16, headers: &[(String, String)]) -> Verdict {
        let set_cookies: Vec<String> = headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("set-cookie"))
            .map(|(_, v)| v.clone())
            .collect();
        if status == 0 || status >= 500 {
            return Verdict::Unavailable;
        }
        if self.success.contains(&status) {
            let identity: Vec<(String, String)> = headers
                .iter()
                .filter(|(n, _)| !n.starts_with(':'))
                .map(|(n, v)| (n.to_ascii_lowercase(), v.clone()))
                .filter(|(n, _)| self.copies(n))
                .collect();
            let names_user = match self.dialect {
                Dialect::Authentik => authentik::answer_names_a_user(&identity),
                Dialect::Authelia => has_value(&identity, "remote-user"),
                Dialect::OAuth2Proxy => {
                    has_value(&identity, "x-auth-request-user")
                        || has_value(&identity, "x-auth-request-email")
                }
                Dialect::Custom => !identity.is_empty(),
            };
            let not_after = match self.dialect {
                Dialect::Authentik => authentik::jwt_exp_ms(&identity),
                _ => None,
            };
            return Verdict::Allow {
                cacheable: names_user && set_cookies.is_empty(),
                identity,
                set_cookies,
                not_after,
            };
        }
        // Anything else is a denial. Redirects and challenges are relayed so the client can
        // log in; a 2xx outside the success list is refused, not guessed.
        let status = match status {
            300..=499 => status,
            _ => 403,
        };
        let mut relay = Vec::new();
        for (n, v) in headers {
            let n = n.to_ascii_lowercase();
            if matches!(n.as_str(), "location" | "set-cookie" | "www-authenticate") {
                relay.push((n, v.clone()));
            }
        }
        let cacheable =
            matches!(status, 401 | 403) && relay.iter().all(|(n, _)| n == "www-authenticate");
        Verdict::Deny {
            status,
            headers: relay,
            cacheable,
        }
    }

    fn copies(&self, name: &str) -> bool {
        self.copy.iter().any(|c| match c.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => c == name,
        })
    }

    /// The user's groups from an allow answer's identity headers.
    /// The response header the dialect reads groups from, if any.
    pub fn groups_header(&self) -> Option<&str> {
        self.groups_header.as_deref()
    }

    /// Groups from an answer's identity headers: the groups header, forwarded or held
    /// ([`crate::identity::HELD`]).
    pub fn groups<'a>(
        &'a self,
        identity: &'a [(String, String)],
    ) -> impl Iterator<Item = &'a str> + 'a {
        let name = self.groups_header.as_deref();
        identity
            .iter()
            .filter(move |(n, _)| Some(n.strip_prefix(crate::identity::HELD).unwrap_or(n)) == name)
            .flat_map(move |(_, v)| crate::identity::split_groups(v, &self.groups_separator))
    }

    /// Whether a cookie pair (`name=value`, trimmed of ASCII whitespace as Go's `net/http`,
    /// the outposts, trims it) is a session cookie: its
    /// name matches a configured prefix (every cookie when none is configured).
    fn is_session_cookie(&self, kv: &str) -> bool {
        // The name is `kv` up to its first `=`. A prefix without `=` (every valid one: config
        // checks they are tokens) starts the name exactly when it starts `kv`, and one with
        // `=` starts no name: so no split, on every cookie pair of every request.
        self.session_cookies.is_empty()
            || self.session_cookies.iter().any(|p| {
                let (kv, p) = (kv.as_bytes(), p.as_bytes());
                kv.get(..p.len()) == Some(p) && !p.contains(&b'=')
            })
    }

    /// One `;`-separated piece of a Cookie header as a session cookie pair: trimmed of ASCII
    /// whitespace as Go's `net/http` (the outposts) trims it, `None` when empty or not a
    /// session cookie. The one rule for [`Self::session_cookies`] and the engine's cache key.
    pub fn session_pair<'a>(&self, raw: &'a str) -> Option<&'a str> {
        let kv = raw.trim_ascii();
        (!kv.is_empty() && self.is_session_cookie(kv)).then_some(kv)
    }

    /// The session part of the Cookie header(s): [`Self::session_pairs`] sorted and without
    /// repeats, so cookie order does not split the cache.
    pub fn session_cookies<'a>(&self, cookies: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
        let mut out: Vec<&str> = Vec::new();
        for v in cookies {
            for raw in crate::ascii::split(v, b';') {
                if let Some(kv) = self.session_pair(raw) {
                    out.push(kv);
                }
            }
        }
        if out.len() > 1 {
            heapsort(&mut out);
            out.dedup();
        }
        out
    }
}

/// Sorts a request's session cookies (a handful). Not `sort_unstable`: its instance for `&str`
/// is ~2.4 KB of wasm in a module at its size limit; this is O(n log n) in ~150 bytes.
fn heapsort(v: &mut [&str]) {
    let sift = |v: &mut [&str], mut root: usize, end: usize| loop {
        let mut child = 2 * root + 1;
        if child >= end {
            break;
        }
        if child + 1 < end && v.get(child) < v.get(child + 1) {
            child += 1;
        }
        if v.get(root) >= v.get(child) {
            break;
        }
        v.swap(root, child);
        root = child;
    };
    let n = v.len();
    for start in (0..n / 2).rev() {
        sift(v, start, n);
    }
    for end in (1..n).rev() {
        v.swap(0, end);
        sift(v, 0, end);
    }
}

fn has_value(h: &[(String, String)], name: &str) -> bool {
    h.iter().any(|(n, v)| n == name && !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fa(dialect: &str) -> ForwardAuth {
        let c: ForwardAuthConfig =
            serde_json::from_str(&format!(r#"{{"dialect":"{dialect}","cluster":"idp"}}"#)).unwrap();
        ForwardAuth::new(&c)
    }

    #[test]
    fn a_session_cookie_is_matched_on_its_name_only() {
        let mut f = fa("custom");
        f.session_cookies = vec!["auth".into(), "a=b".into()];
        assert!(f.is_session_cookie("auth_x=1"));
        assert!(f.is_session_cookie("auth"));
        assert!(!f.is_session_cookie("x=auth"));
        assert!(!f.is_session_cookie("au=th"));
        // A prefix with `=` (config refuses it) starts no cookie name.
        assert!(!f.is_session_cookie("a=bc"));
        f.session_cookies.clear();
        assert!(f.is_session_cookie("anything=1"));
    }

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    fn original<'a>(headers: &'a [crate::request::Header<'a>]) -> Original<'a> {
        Original {
            method: "GET",
            scheme: "https",
            authority: "sonarr.lan:8443",
            path_and_query: "/a/b?c=d",
            headers,
        }
    }

    #[test]
    fn authentik_callout_appends_the_path_and_keeps_the_host() {
        let req = h(&[
            ("cookie", "authentik_proxy_x=s1"),
            ("authorization", "Bearer t"),
            ("x-authentik-username", "mallory"),
            ("user-agent", "ua"),
        ]);
        let out = fa("authentik").build(&original(&crate::request::borrow_all(&req)));
        let get = |n: &str| out.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
        assert_eq!(
            get(":path"),
            Some("/outpost.goauthentik.io/auth/envoy/a/b?c=d")
        );
        assert_eq!(get(":authority"), Some("sonarr.lan:8443"));
        assert_eq!(get("cookie"), Some("authentik_proxy_x=s1"));
        assert_eq!(get("authorization"), Some("Bearer t"));
        assert_eq!(get("x-forwarded-proto"), Some("https"));
        assert_eq!(get("x-forwarded-uri"), Some("/a/b?c=d"));
        assert_eq!(
            get("x-authentik-username"),
            None,
            "client identity headers never go to the IdP"
        );
    }

    #[test]
    fn authelia_uses_its_fixed_endpoint() {
        let out = fa("authelia").build(&original(&[]));
        assert!(out.contains(&(":path".into(), "/api/authz/forward-auth".into())));
        assert!(out.contains(&("x-forwarded-method".into(), "GET".into())));
    }

    #[test]
    fn authentik_allow_copies_identity_and_is_cacheable() {
        let v = fa("authentik").interpret(
            200,
            &h(&[
                ("X-authentik-username", "alice"),
                ("x-authentik-groups", "admins|users"),
                ("user-agent", "ua"),
            ]),
        );
        let Verdict::Allow {
            identity,
            cacheable,
            ..
        } = v
        else {
            panic!("{v:?}")
        };
        assert!(cacheable);
        assert_eq!(
            identity,
            h(&[
                ("x-authentik-username", "alice"),
                ("x-authentik-groups", "admins|users")
            ])
        );
        let f = fa("authentik");
        assert_eq!(
            f.groups(&identity).collect::<Vec<_>>(),
            vec!["admins", "users"]
        );
    }

    #[test]
    fn skip_path_allow_without_user_is_not_cacheable() {
        let v = fa("authentik").interpret(200, &[]);
        assert!(
            matches!(
                v,
                Verdict::Allow {
                    cacheable: false,
                    ..
                }
            ),
            "{v:?}"
        );
    }

    #[test]
    fn allow_with_set_cookie_is_not_cacheable_and_relays_the_cookie() {
        let v = fa("authentik").interpret(
            200,
            &h(&[("x-authentik-username", "a"), ("set-cookie", "s=1")]),
        );
        let Verdict::Allow {
            cacheable,
            set_cookies,
            ..
        } = v
        else {
            panic!()
        };
        assert!(!cacheable);
        assert_eq!(set_cookies, vec!["s=1".to_string()]);
    }

    #[test]
    fn redirect_relays_location_and_cookie_and_is_not_cached() {
        let v = fa("authentik").interpret(
            302,
            &h(&[("location", "http://idp/authorize"), ("set-cookie", "x=1")]),
        );
        assert_eq!(
            v,
            Verdict::Deny {
                status: 302,
                headers: h(&[("location", "http://idp/authorize"), ("set-cookie", "x=1")]),
                cacheable: false
            }
        );
        assert!(matches!(
            fa("oauth2-proxy").interpret(401, &[]),
            Verdict::Deny {
                status: 401,
                cacheable: true,
                ..
            }
        ));
    }

    #[test]
    fn errors_and_odd_statuses_fail_closed() {
        assert_eq!(fa("authentik").interpret(0, &[]), Verdict::Unavailable);
        assert_eq!(fa("authentik").interpret(503, &[]), Verdict::Unavailable);
        assert!(matches!(
            fa("authentik").interpret(206, &[]),
            Verdict::Deny { status: 403, .. }
        ));
        assert!(matches!(
            fa("authentik").interpret(101, &[]),
            Verdict::Deny { status: 403, .. }
        ));
        assert!(matches!(
            fa("oauth2-proxy").interpret(202, &[]),
            Verdict::Allow { .. }
        ));
    }

    #[test]
    fn heapsort_sorts_like_std() {
        let words = ["b", "a", "c", "a", "", "zz", "z", "b=1", "b=0", "aa"];
        for n in 0..=words.len() {
            for rot in 0..words.len() {
                let mut v: Vec<&str> = words.iter().cycle().skip(rot).take(n).copied().collect();
                let mut want = v.clone();
                want.sort();
                heapsort(&mut v);
                assert_eq!(v, want);
            }
        }
    }

    #[test]
    fn session_cookie_selection_is_order_independent() {
        let f = fa("authentik");
        let a = h(&[(
            "cookie",
            "theme=dark; authentik_proxy_a=1; authentik_proxy_b=2",
        )]);
        let b = h(&[
            ("cookie", "authentik_proxy_b=2"),
            ("cookie", "authentik_proxy_a=1;other=x"),
        ]);
        let cookies = |h: &Vec<(String, String)>| -> Vec<String> {
            let h = crate::request::borrow_all(h);
            let v = crate::request::View::read(&h, &[]);
            let c = f.session_cookies(v.all(v.cookie, "cookie"));
            c.into_iter().map(str::to_string).collect()
        };
        assert_eq!(
            cookies(&a),
            vec!["authentik_proxy_a=1", "authentik_proxy_b=2"]
        );
        assert_eq!(cookies(&a), cookies(&b));
    }
}
