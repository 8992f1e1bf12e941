//! `session.oidc`: Barbican as the OpenID Connect relying party, with its own encrypted
//! session cookie. Model and validation; the protocol lives in [`crate::oidc`].

use super::{de_bool, de_u64, range, ConfigError, JwksConfig, Secret};
use crate::url::{split_http_uri, split_url};
use serde::Deserialize;

/// Which login flow. The authorization code flow needs a back-channel call to the token
/// endpoint (Envoy makes it by callout); `form_post` receives the id_token in the browser's
/// POST to the redirect URI and needs no call at all (the only flow Traefik can run).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OidcFlow {
    #[default]
    Code,
    FormPost,
}

/// How Barbican authenticates to the token endpoint (code flow).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenAuth {
    /// `client_secret_basic`.
    Basic,
    /// `client_secret_post`.
    Post,
    /// A public client: PKCE alone.
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum SameSite {
    Lax,
    Strict,
    None,
}

/// The session cookie Barbican sets.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CookieConfig {
    #[serde(default = "cookie_name")]
    pub name: String,
    /// `Domain` attribute, for one session across subdomains (`lan` → every `*.lan`).
    /// Default: none (host-only cookie).
    #[serde(default)]
    pub domain: Option<String>,
    #[serde(default = "super::dtrue", deserialize_with = "de_bool")]
    pub secure: bool,
    #[serde(default = "lax")]
    pub same_site: SameSite,
}

impl Default for CookieConfig {
    fn default() -> Self {
        CookieConfig {
            name: cookie_name(),
            domain: None,
            secure: true,
            same_site: SameSite::Lax,
        }
    }
}

fn cookie_name() -> String {
    "barbican_session".into()
}
fn lax() -> SameSite {
    SameSite::Lax
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    /// The issuer exactly as in the provider's id_tokens (`iss`).
    pub issuer: String,
    pub client_id: String,
    /// Code flow: the client secret for the token endpoint.
    #[serde(default)]
    pub client_secret: Option<Secret>,
    /// Default: `basic` with a client secret, else `none`.
    #[serde(default)]
    pub token_auth: Option<TokenAuth>,
    #[serde(default)]
    pub flow: OidcFlow,
    /// Where browsers are sent to log in (Authentik: `https://AUTH/application/o/authorize/`).
    pub authorization_endpoint: String,
    /// Code flow: the token endpoint, called through `cluster`
    /// (Authentik: `https://AUTH/application/o/token/`).
    #[serde(default)]
    pub token_endpoint: Option<String>,
    /// Where logout sends the browser after clearing the session
    /// (Authentik: `https://AUTH/application/o/<slug>/end-session/`).
    #[serde(default)]
    pub end_session_endpoint: Option<String>,
    /// The host's name for the IdP upstream (an Envoy cluster): token endpoint and key set.
    #[serde(default)]
    pub cluster: Option<String>,
    #[serde(default = "d3000", deserialize_with = "de_u64")]
    pub timeout_ms: u64,
    /// Keys for the id_token, as for a JWT provider. Default with a `cluster`: found through
    /// the issuer's discovery document.
    #[serde(default)]
    pub jwks: JwksConfig,
    #[serde(default)]
    pub algorithms: Option<Vec<String>>,
    /// This relying party's redirect URI, registered at the provider; its path is answered by
    /// Barbican on its host.
    pub redirect_uri: String,
    #[serde(default = "logout_path")]
    pub logout_path: String,
    /// Where the provider sends the browser after logout (registered at the provider).
    #[serde(default)]
    pub post_logout_redirect_uri: Option<String>,
    #[serde(default = "scopes")]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub cookie: CookieConfig,
    /// How long a session lasts after login.
    #[serde(default = "d28800", deserialize_with = "de_u64")]
    pub lifetime_s: u64,
    /// How long a login may take from the redirect to the callback.
    #[serde(default = "d600", deserialize_with = "de_u64")]
    pub login_timeout_s: u64,
    /// Session secrets, current first; a second one is still accepted (rotation). Each at
    /// least 32 bytes. There is no default.
    #[serde(default)]
    pub secrets: Vec<Secret>,
    /// Hosts a login may return to (`app.lan`, `*.lan`). Default: the redirect URI's host,
    /// and with `cookie.domain` that domain and its subdomains.
    #[serde(default)]
    pub domains: Option<Vec<String>>,
    #[serde(default = "groups")]
    pub groups_claim: String,
    #[serde(default = "d60", deserialize_with = "de_u64")]
    pub clock_skew_s: u64,
}

fn d60() -> u64 {
    60
}
fn d600() -> u64 {
    600
}
fn d3000() -> u64 {
    3000
}
fn d28800() -> u64 {
    28_800
}
fn logout_path() -> String {
    "/.barbican/logout".into()
}
fn groups() -> String {
    "groups".into()
}
fn scopes() -> Vec<String> {
    ["openid", "profile", "email"].map(String::from).to_vec()
}

/// The shortest secret accepted: 256 bits, the key size of the cipher.
pub const MIN_SECRET_BYTES: usize = 32;

pub(super) fn validate(o: &OidcConfig, errs: &mut Vec<ConfigError>) {
    let p = "session.oidc";
    let mut err = |field: &str, problem: String| {
        errs.push(ConfigError::new(format!("{p}.{field}"), problem));
    };
    if o.secrets.is_empty() {
        err(
            "secrets",
            format!(
                "required: the session cookie is encrypted under a secret of at least \
                 {MIN_SECRET_BYTES} bytes (e.g. `openssl rand -base64 48`); there is no default"
            ),
        );
    }
    if o.secrets.len() > 2 {
        err(
            "secrets",
            "give the current secret and at most one previous one".into(),
        );
    }
    for (i, s) in o.secrets.iter().enumerate() {
        if s.len() < MIN_SECRET_BYTES {
            err(
                &format!("secrets[{i}]"),
                format!(
                    "is {} bytes; at least {MIN_SECRET_BYTES} are required",
                    s.len()
                ),
            );
        }
    }
    if o.issuer.trim().is_empty() {
        err("issuer", "must not be empty".into());
    }
    if o.client_id.trim().is_empty() {
        err("client_id", "must not be empty".into());
    }
    if !is_http_url(&o.authorization_endpoint) {
        err(
            "authorization_endpoint",
            "must be an http(s) URL without a fragment".into(),
        );
    }
    match split_url(&o.redirect_uri) {
        Some(u) if u.query.is_none() => {}
        _ => err(
            "redirect_uri",
            "must be an absolute http(s) URL with a path and no query or fragment".into(),
        ),
    }
    if !o.logout_path.starts_with('/') || o.logout_path.starts_with("//") {
        err("logout_path", "must be a path starting with one '/'".into());
    }
    for (f, v) in [
        ("end_session_endpoint", &o.end_session_endpoint),
        ("post_logout_redirect_uri", &o.post_logout_redirect_uri),
    ] {
        if let Some(u) = v {
            if !is_http_url(u) {
                err(f, "must be an http(s) URL".into());
            }
        }
    }
    match o.flow {
        OidcFlow::Code => {
            match &o.token_endpoint {
                None => err(
                    "token_endpoint",
                    "required for flow \"code\" (or use flow \"form_post\")".into(),
                ),
                Some(u) if split_http_uri(u).is_none() => {
                    err("token_endpoint", "must be an http(s) URL".into())
                }
                Some(_) => {}
            }
            if o.cluster.as_deref().is_none_or(|c| c.trim().is_empty()) {
                err(
                    "cluster",
                    "required for flow \"code\": the token endpoint is called through it".into(),
                );
            }
            match (o.token_auth, &o.client_secret) {
                (Some(TokenAuth::Basic | TokenAuth::Post), None) => err(
                    "client_secret",
                    "required with token_auth \"basic\" or \"post\"".into(),
                ),
                (Some(TokenAuth::None), Some(_)) => err(
                    "token_auth",
                    "\"none\" sends no secret: remove client_secret or pick \"basic\"/\"post\""
                        .into(),
                ),
                (_, Some(s)) if s.is_empty() => err("client_secret", "must not be empty".into()),
                _ => {}
            }
        }
        OidcFlow::FormPost => {
            if o.client_secret.is_some() {
                err(
                    "client_secret",
                    "flow \"form_post\" uses no client secret (the id_token comes from the browser)"
                        .into(),
                );
            }
        }
    }
    let j = &o.jwks;
    if j.inline.is_none() && j.uri.is_none() && j.file.is_none() && o.cluster.is_none() {
        err(
            "jwks",
            "give the provider's keys (inline, or a file on Traefik), a uri with cluster, or a \
             cluster to find them through the issuer's discovery document"
                .into(),
        );
    }
    let sources = [j.inline.is_some(), j.uri.is_some(), j.file.is_some()];
    if sources.iter().filter(|x| **x).count() > 1 {
        err("jwks", "give one of inline, uri or file".into());
    }
    if let Some(f) = &j.file {
        if !f.starts_with('/') || f.contains('\0') {
            err(
                "jwks.file",
                "must be an absolute path (on Traefik, a path the plugin's `settings.mounts` makes \
                 readable)"
                    .into(),
            );
        }
    }
    if let Some(v) = &o.jwks.inline {
        if let Err(e) = crate::jwks::parse(v.to_string().as_bytes()) {
            err("jwks.inline", e.to_string());
        }
    }
    if let Some(a) = &o.algorithms {
        for (i, s) in a.iter().enumerate() {
            match crate::jwt::Alg::parse(s) {
                Some(alg) if !alg.is_hmac() => {}
                _ => err(
                    &format!("algorithms[{i}]"),
                    format!("{s:?} is not an asymmetric JWS algorithm Barbican verifies"),
                ),
            }
        }
    }
    if !o.scopes.iter().any(|s| s == "openid") {
        err("scopes", "must include \"openid\"".into());
    }
    if o.scopes
        .iter()
        .any(|s| s.is_empty() || s.bytes().any(|b| b <= b' ' || b == b'"' || b == b'\\'))
    {
        err(
            "scopes",
            "scope names cannot contain spaces or quotes".into(),
        );
    }
    let name_ok =
        super::is_token(&o.cookie.name) && !o.cookie.name.contains(['=', ';', ',', '"', '\\']);
    if !name_ok {
        err("cookie.name", "must be a valid cookie name".into());
    }
    if let Some(d) = &o.cookie.domain {
        let d = d.trim_start_matches('.');
        if d.is_empty()
            || !d
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.".contains(&b))
        {
            err("cookie.domain", "must be a domain name".into());
        }
    }
    if o.cookie.same_site == SameSite::None && !o.cookie.secure {
        err(
            "cookie.same_site",
            "\"None\" needs cookie.secure true (browsers drop it otherwise)".into(),
        );
    }
    // The session cookie is set on the redirect URI's response: a host it does not reach
    // would send its browser through the provider again and again.
    let redirect_host = split_url(&o.redirect_uri).map(|u| u.host);
    let cookie_domain = o
        .cookie
        .domain
        .as_deref()
        .map(|d| d.trim_start_matches('.').to_ascii_lowercase());
    for (i, d) in o.domains.iter().flatten().enumerate() {
        if let Err(e) = crate::hostname::HostPattern::parse(d) {
            err(&format!("domains[{i}]"), e);
            continue;
        }
        let d = d.to_ascii_lowercase();
        let reached = match &cookie_domain {
            Some(c) => d == *c || d.ends_with(&format!(".{c}")),
            None => redirect_host.as_deref() == Some(d.as_str()),
        };
        if !reached {
            err(
                &format!("domains[{i}]"),
                match &cookie_domain {
                    Some(c) => format!(
                        "{d:?} is outside cookie.domain {c:?}: the session cookie would not \
                         reach it and its logins would loop"
                    ),
                    None => format!(
                        "{d:?} is not the redirect URI's host: set cookie.domain to a domain \
                         covering both, or the session cookie would not reach it"
                    ),
                },
            );
        }
    }
    if let (Some(c), Some(h)) = (&cookie_domain, &redirect_host) {
        if h != c && !h.ends_with(&format!(".{c}")) {
            err(
                "cookie.domain",
                format!("must cover the redirect URI's host {h:?}, where the cookie is set"),
            );
        }
    }
    if o.groups_claim.is_empty() {
        err("groups_claim", "must not be empty".into());
    }
    range(
        errs,
        format!("{p}.lifetime_s"),
        o.lifetime_s,
        60..=31_536_000,
    );
    range(
        errs,
        format!("{p}.login_timeout_s"),
        o.login_timeout_s,
        30..=3600,
    );
    range(errs, format!("{p}.timeout_ms"), o.timeout_ms, 1..=60_000);
    range(errs, format!("{p}.clock_skew_s"), o.clock_skew_s, 0..=600);
}

fn is_http_url(u: &str) -> bool {
    split_url(u).is_some() && !u.contains('#')
}
