//! What each host refuses in a document the core accepts, for the hosts themselves and for
//! `barbican check --host`. Unused by the Envoy build, whose linker drops it.

use super::{Accept, Config, ConfigError, OidcFlow, SessionMode};

/// The start of every Traefik refusal.
pub const TRAEFIK_NO_CALLOUTS: &str = "Traefik plugins cannot make network calls";

/// What a valid configuration asks for that a Traefik plugin cannot do: anything that needs
/// a callout.
pub fn traefik_problems(cfg: &Config) -> Vec<ConfigError> {
    let mut out = Vec::new();
    let mut refuse = |path: String, what: &str| {
        out.push(ConfigError {
            path,
            problem: format!("{TRAEFIK_NO_CALLOUTS}: {what}"),
        })
    };
    if let Some(s) = &cfg.session {
        match (&s.mode, &s.oidc) {
            (SessionMode::Oidc, Some(o)) => {
                if o.flow != OidcFlow::FormPost {
                    refuse(
                        "session.oidc.flow".into(),
                        "the authorization code flow exchanges the code at the token \
                         endpoint; use \"flow\": \"form_post\" (the id_token comes with the \
                         browser and is verified here)",
                    );
                }
                if o.jwks.inline.is_none() && o.jwks.file.is_none() {
                    refuse(
                        "session.oidc.jwks".into(),
                        "give the provider's keys inline (`jwks.inline`: the key set document \
                         itself) or from a mounted file (`jwks.file`); they cannot be fetched \
                         here",
                    );
                }
            }
            _ => refuse(
                "session".into(),
                "forward-auth sessions ask the IdP's endpoint and are not available here; use \
                 session.mode \"oidc\" with flow \"form_post\", or run Barbican in Envoy",
            ),
        }
    }
    for (i, p) in cfg.jwt.iter().flat_map(|j| j.providers.iter()).enumerate() {
        let at = format!("jwt.providers[{i}].jwks");
        if p.jwks.uri.is_some() {
            refuse(
                format!("{at}.uri"),
                "give the key set inline (`jwks.inline`: the document itself) or as a mounted \
                 file (`jwks.file`, re-read when it changes) instead of a URI",
            );
        } else if p.jwks.cluster.is_some() {
            refuse(
                format!("{at}.cluster"),
                "key-set discovery needs the IdP; give the key set inline (`jwks.inline`) or as \
                 a mounted file (`jwks.file`)",
            );
        }
    }
    if cfg.introspection.is_some() {
        refuse(
            "introspection".into(),
            "RFC 7662 introspection asks the IdP; accept JWTs verified against a JWKS inline or from a file",
        );
    }
    for (i, r) in cfg.routes.iter().enumerate() {
        if r.accept
            .as_ref()
            .is_some_and(|a| a.contains(&Accept::Introspection))
        {
            refuse(
                format!("routes[{i}].accept"),
                "\"introspection\" asks the IdP; accept \"jwt\" (JWKS inline or from a file)",
            );
        }
    }
    out
}
