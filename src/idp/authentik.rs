//! Authentik's proxy outpost, envoy mode (`internal/outpost/proxyv2/application/mode_forward.go`
//! `forwardHandleEnvoy`): the original path is appended to `/outpost.goauthentik.io/auth/envoy`,
//! the original host is read from `Host`, and a good session is answered 200 with
//! `X-authentik-*` headers (`mode_common.go` `addHeaders`).

use crate::Millis;
use base64::Engine as _;

pub const PATH: &str = "/outpost.goauthentik.io/auth/envoy";
/// `authentik_proxy_<suffix>`, the suffix derived from the provider.
pub const SESSION_COOKIE_PREFIX: &str = "authentik_proxy_";
pub const SIGN_OUT_PATH: &str = "/outpost.goauthentik.io/sign_out";
/// A query carrying this on *any* path is a sign-out to the outpost (`application.go`
/// checks it before routing), as is [`SIGN_OUT_PATH`].
pub const SIGN_OUT_QUERY: &str = "X-authentik-logout=true";
pub const IDENTITY_PREFIX: &str = "x-authentik-";
/// Authentik joins groups with `|` (`mode_common.go` `getHeaders`).
pub const GROUPS_HEADER: &str = "x-authentik-groups";
pub const GROUPS_SEPARATOR: &str = "|";

/// The outpost answers 200 *without* identity headers on `skip_path_regex` paths even when
/// the session is invalid; such an answer must never be cached for the session.
pub fn answer_names_a_user(identity: &[(String, String)]) -> bool {
    identity
        .iter()
        .any(|(n, v)| (n == "x-authentik-username" || n == "x-authentik-uid") && !v.is_empty())
}

/// `exp` (as Unix milliseconds) of the access token in `X-authentik-jwt`: a decision must not
/// be cached past it. The token is not verified here — it came from the IdP over the
/// callout, and only its lifetime is read.
pub fn jwt_exp_ms(identity: &[(String, String)]) -> Option<Millis> {
    let jwt = identity
        .iter()
        .find(|(n, _)| n == "x-authentik-jwt")
        .map(|(_, v)| v.as_str())?;
    jwt_payload_exp(jwt).map(|s| s.saturating_mul(1000))
}

/// `exp` in seconds from a compact JWS, without verification.
pub fn jwt_payload_exp(jwt: &str) -> Option<u64> {
    let mut parts = jwt.split('.');
    let (_, payload, _) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || payload.len() > 16_384 {
        return None;
    }
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    #[derive(serde::Deserialize)]
    struct Claims {
        exp: Option<serde_json::Value>,
    }
    let c: Claims = serde_json::from_slice(&raw).ok()?;
    match c.exp? {
        serde_json::Value::Number(n) => n
            .as_u64()
            .or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    fn jwt(payload: &str) -> String {
        format!(
            "{}.{}.sig",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256"}"#),
            URL_SAFE_NO_PAD.encode(payload)
        )
    }

    #[test]
    fn exp_is_read_from_the_jwt_header() {
        let id = vec![(
            "x-authentik-jwt".to_string(),
            jwt(r#"{"exp":1700000000,"sub":"a"}"#),
        )];
        assert_eq!(jwt_exp_ms(&id), Some(1_700_000_000_000));
    }

    #[test]
    fn malformed_jwts_give_no_exp() {
        for bad in [
            "",
            "a.b",
            "a.b.c.d",
            "a.!!!.c",
            &jwt("[]"),
            &jwt(r#"{"exp":"soon"}"#),
            &jwt(r#"{"exp":-1}"#),
        ] {
            assert_eq!(jwt_payload_exp(bad), None, "{bad}");
        }
    }

    #[test]
    fn skip_path_answers_name_no_user() {
        assert!(!answer_names_a_user(&[]));
        assert!(!answer_names_a_user(&[(
            "x-authentik-username".into(),
            String::new()
        )]));
        assert!(answer_names_a_user(&[(
            "x-authentik-uid".into(),
            "42".into()
        )]));
    }
}
