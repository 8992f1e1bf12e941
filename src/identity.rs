//! Identity header families: which request headers carry identity to backends, so that
//! client-sent copies are always removed and only Barbican sets them.

/// Which family a header name belongs to, if any. `name` may be in any case and may use
/// `_` for `-`: some servers (and Envoy unless told otherwise) fold `_` into `-`, so
/// `X_authentik_username` reaches a backend as `X-authentik-username` (caddy
/// GHSA-7r4p-vjf4-gxv4, oauth2-proxy#624).
pub fn is_identity_header(name: &str, extra: &[String]) -> bool {
    let folded = fold(name);
    let f = folded.as_str();
    f.starts_with("x-authentik-")
        || f.starts_with("x-auth-request-")
        // Authelia's family.
        || matches!(f, "remote-user" | "remote-groups" | "remote-email" | "remote-name")
        // oauth2-proxy's pass_user_headers family.
        || matches!(
            f,
            "x-forwarded-user" | "x-forwarded-email" | "x-forwarded-groups" | "x-forwarded-preferred-username"
                | "x-forwarded-access-token"
        )
        || extra.iter().any(|e| fold(e) == f)
}

/// Lower case, `_` as `-`.
fn fold(name: &str) -> String {
    name.bytes()
        .map(|b| {
            if b == b'_' {
                '-'
            } else {
                char::from(b.to_ascii_lowercase())
            }
        })
        .collect()
}

/// Splits a groups header value. Empty items are dropped.
pub fn split_groups<'a>(value: &'a str, sep: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    value.split(sep).map(str::trim).filter(|g| !g.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

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
