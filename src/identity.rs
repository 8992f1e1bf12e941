//! Identity header families: which request headers carry identity to backends, so that
//! client-sent copies are always removed and only Barbican sets them.

/// Which family a header name belongs to, if any. `name` may be in any case and may use
/// `_` for `-`: some servers (and Envoy unless told otherwise) fold `_` into `-`, so
/// `X_authentik_username` reaches a backend as `X-authentik-username` (caddy
/// GHSA-7r4p-vjf4-gxv4, oauth2-proxy#624).
pub fn is_identity_header(name: &str, extra: &[String]) -> bool {
    const PREFIXES: &[&str] = &["x-authentik-", "x-auth-request-"];
    const EXACT: &[&str] = &[
        // Authelia's family.
        "remote-user",
        "remote-groups",
        "remote-email",
        "remote-name",
        // oauth2-proxy's pass_user_headers family.
        "x-forwarded-user",
        "x-forwarded-email",
        "x-forwarded-groups",
        "x-forwarded-preferred-username",
        "x-forwarded-access-token",
    ];
    // Runs for every header of every request: compare folded bytes without allocating, and
    // only for names that can be in a family at all (every one starts with `x` or `r`).
    let family = matches!(
        name.as_bytes().first().map(u8::to_ascii_lowercase),
        Some(b'x' | b'r')
    ) && (PREFIXES
        .iter()
        .any(|p| name.len() >= p.len() && folded_eq(name.as_bytes().get(..p.len()), p))
        || EXACT.iter().any(|e| folded_eq(Some(name.as_bytes()), e)));
    family || extra.iter().any(|e| folded_eq(Some(name.as_bytes()), e))
}

/// `name` equals `want` (lower case, `-`) ignoring case and reading `_` as `-`.
fn folded_eq(name: Option<&[u8]>, want: &str) -> bool {
    let Some(name) = name else { return false };
    name.len() == want.len()
        && name.iter().zip(want.bytes()).all(|(a, b)| {
            let a = if *a == b'_' {
                b'-'
            } else {
                a.to_ascii_lowercase()
            };
            let b = if b == b'_' { b'-' } else { b };
            a == b
        })
}

/// Which identity headers go upstream (`forward_headers`). Every header added costs the proxy
/// a host call on every request, and most backends read one or two of Authentik's twelve,
/// so an operator may name the ones to keep: exact names, or prefixes ending in `*`, in
/// any case. `None` keeps everything the identity source produced (the default).
#[derive(Debug, Clone, Default)]
pub struct Forward(Option<Vec<String>>);

/// A header the engine still needs (the groups header, for `require_groups`) but does not
/// forward is kept in the cache entry under this prefix; hosts never write such names
/// ([`crate::Allow::upstream`]), and no real header name can start with it.
pub const HELD: char = ':';

/// Whether a cached header name is [`HELD`] (a byte test: this runs for every header of
/// every allow).
pub fn is_held(name: &str) -> bool {
    crate::ascii::starts_with(name, b':')
}

impl Forward {
    pub fn new(names: &[String]) -> Forward {
        if names.iter().any(|n| n == "*") {
            return Forward(None);
        }
        Forward(Some(names.iter().map(|s| s.to_ascii_lowercase()).collect()))
    }

    pub fn keeps(&self, name: &str) -> bool {
        let Some(list) = &self.0 else { return true };
        list.iter().any(|p| match p.strip_suffix('*') {
            Some(pre) => name
                .as_bytes()
                .get(..pre.len())
                .is_some_and(|h| h.eq_ignore_ascii_case(pre.as_bytes())),
            None => name.eq_ignore_ascii_case(p),
        })
    }

    /// The headers to cache for the upstream: the forwarded ones, plus `hold` (if present
    /// and not forwarded) under its [`HELD`] name.
    pub fn apply(
        &self,
        headers: Vec<(String, String)>,
        hold: Option<&str>,
    ) -> Vec<(String, String)> {
        let mut headers = headers;
        headers.retain_mut(|(n, _)| {
            if self.keeps(n) {
                true
            } else if hold.is_some_and(|h| h.eq_ignore_ascii_case(n)) {
                n.insert(0, HELD);
                true
            } else {
                false
            }
        });
        headers
    }
}

/// Splits a groups header value. Empty items are dropped.
pub fn split_groups<'a>(value: &'a str, sep: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    value.split(sep).map(str::trim).filter(|g| !g.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forward_keeps_names_and_prefixes_and_holds_groups() {
        let h = |v: &[(&str, &str)]| -> Vec<(String, String)> {
            v.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        let all = h(&[
            ("x-authentik-username", "a"),
            ("x-authentik-groups", "g"),
            ("x-authentik-meta-app", "m"),
            ("x-authentik-jwt", "j"),
        ]);
        assert_eq!(Forward::default().apply(all.clone(), None), all);
        assert_eq!(Forward::new(&["*".into()]).apply(all.clone(), None), all);
        let f = Forward::new(&["X-Authentik-Username".into(), "x-authentik-meta-*".into()]);
        assert_eq!(
            f.apply(all.clone(), None),
            h(&[("x-authentik-username", "a"), ("x-authentik-meta-app", "m")])
        );
        assert_eq!(
            f.apply(all, Some("x-authentik-groups")),
            h(&[
                ("x-authentik-username", "a"),
                (":x-authentik-groups", "g"),
                ("x-authentik-meta-app", "m"),
            ])
        );
        assert!(Forward::new(&[])
            .apply(h(&[("x-authentik-uid", "u")]), None)
            .is_empty());
    }

    #[test]
    fn all_families_in_any_case_and_underscore_spelling() {
        for n in [
            "X-authentik-username",
            "x-AUTHENTIK-groups",
            "x_authentik_uid",
            "X_Authentik-Jwt",
            "Remote-User",
            "remote_groups",
            "REMOTE-EMAIL",
            "Remote-Name",
            "X-Auth-Request-User",
            "x_auth_request_access_token",
            "X-Forwarded-User",
        ] {
            assert!(is_identity_header(n, &[]), "{n}");
        }
        for n in [
            "x-forwarded-for",
            "x-forwarded-proto",
            "remote-addr",
            "authorization",
            "cookie",
            "x-authentikate",
        ] {
            assert!(!is_identity_header(n, &[]), "{n}");
        }
        assert!(is_identity_header(
            "X_Trusted_User",
            &["x-trusted-user".into()]
        ));
    }

    #[test]
    fn groups_split_and_trim() {
        assert_eq!(
            split_groups("admins| users ||", "|").collect::<Vec<_>>(),
            vec!["admins", "users"]
        );
        assert_eq!(split_groups("", ",").count(), 0);
    }
}
