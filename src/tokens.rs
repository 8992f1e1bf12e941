//! Bearer tokens on `api` routes: where a route's token comes from, the providers' key sets
//! (inline or fetched and refreshed), verification, and what a verified token allows.

use crate::cache::Headers;
use crate::config::{Family, JwtConfig, ProviderConfig};
use crate::identity::Forward;
use crate::jwks::KeySet;
use crate::jwt::{self, Alg, Claims, JwtError, Validation};
use crate::request::View;
use crate::Millis;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use std::borrow::Cow;
use std::sync::Arc;

/// Authentik's convention: HTTP Basic with this username carries a token as the password
/// (`internal/outpost/proxyv2/application/auth_basic.go`).
pub const AUTHENTIK_TOKEN_USER: &str = "goauthentik.io/token";

/// Where a provider's keys come from.
#[derive(Debug, Clone)]
pub enum Source {
    Inline,
    /// Fetched through `cluster`. `path` is empty until discovery has found it.
    Uri {
        cluster: String,
        authority: String,
        path: String,
        refresh_ms: Millis,
        /// Authority and path of the issuer's discovery document, when the key set's
        /// location is to be found there.
        discovery: Option<(String, String)>,
    },
    /// Read by the host from this file and handed in with [`crate::Engine::set_jwks`]; no
    /// keys (every token refused) until it has been.
    File {
        path: String,
    },
    /// HS* only: the shared secret is the key.
    SecretOnly,
}

/// A provider whose key set the host reads from a file ([`crate::Engine::jwks_files`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwksFile {
    /// For [`crate::Engine::set_jwks`].
    pub provider: usize,
    pub path: String,
    /// The config field, `jwt.providers[i].jwks.file`, for messages.
    pub field: String,
}

/// Why a key set handed in by the host was not taken (the last good set stays).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum JwksFileError {
    /// The index is not a provider with `jwks.file`: a host bug, not a config problem.
    NotAFileProvider(usize),
    /// The document is not a usable JWKS.
    Jwks(crate::jwks::JwksError),
}

impl std::fmt::Display for JwksFileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JwksFileError::NotAFileProvider(i) => {
                write!(f, "jwt.providers[{i}] does not read its keys from a file")
            }
            JwksFileError::Jwks(e) => write!(
                f,
                "{e}; fix the file (a JSON object with a \"keys\" array of public keys)"
            ),
        }
    }
}

/// For hosts with no filesystem (Envoy's wasm VMs): every `jwks.file` as a config problem,
/// so the filter refuses to start instead of refusing every token.
pub fn refuse_jwks_files(files: &[JwksFile], host: &str) -> Vec<crate::ConfigError> {
    files
        .iter()
        .map(|f| crate::ConfigError {
            path: f.field.clone(),
            problem: format!(
                "{host} gives wasm filters no filesystem, so a key set cannot be read from a \
                 file; give it inline (`jwks.inline`) or by `uri` with a `cluster` (or only a \
                 `cluster` to discover it from the issuer)"
            ),
        })
        .collect()
}

#[derive(Debug, Clone)]
pub struct Provider {
    pub name: String,
    pub validation: Validation,
    pub source: Source,
    pub keys: Option<Arc<KeySet>>,
    /// When the current keys were fetched (0 for inline).
    pub fetched_at: Millis,
    pub next_fetch: Millis,
    pub in_flight: bool,
    /// Last fetch forced by an unknown `kid`: at most one per interval, never one per request.
    pub last_forced: Millis,
}

/// A fingerprint of a key set (its key ids and key material, computed when it was parsed):
/// verified tokens remember it, so that a token checked against a key that has since been
/// retired or replaced — even under the same `kid` — is checked again instead of served
/// from cache.
pub fn fingerprint(keys: Option<&KeySet>) -> u64 {
    keys.map_or(0, |k| k.fingerprint)
}

impl Provider {
    pub fn new(i: usize, c: &ProviderConfig) -> Provider {
        let algorithms: Vec<Alg> = match &c.algorithms {
            Some(a) => a.iter().filter_map(|s| Alg::parse(s)).collect(),
            None => vec![Alg::RS256, Alg::PS256, Alg::ES256, Alg::ES384, Alg::EdDSA],
        };
        let (source, keys) = match (&c.jwks.inline, &c.jwks.uri) {
            _ if c.jwks.file.is_some() => (
                Source::File {
                    path: c.jwks.file.clone().unwrap_or_default(),
                },
                None,
            ),
            (Some(v), _) => (
                Source::Inline,
                crate::jwks::parse(v.to_string().as_bytes())
                    .ok()
                    .map(Arc::new),
            ),
            (None, Some(u)) => {
                let (authority, path) = crate::url::split_http_uri(u).unwrap_or_default();
                (
                    Source::Uri {
                        cluster: c.jwks.cluster.clone().unwrap_or_default(),
                        authority,
                        path,
                        refresh_ms: c.jwks.refresh_s.saturating_mul(1000),
                        discovery: None,
                    },
                    None,
                )
            }
            (None, None) if c.jwks.cluster.is_some() => (
                Source::Uri {
                    cluster: c.jwks.cluster.clone().unwrap_or_default(),
                    authority: String::new(),
                    path: String::new(),
                    refresh_ms: c.jwks.refresh_s.saturating_mul(1000),
                    // OpenID Connect Discovery 1.0 §4: issuer + "/.well-known/openid-configuration".
                    discovery: crate::url::split_http_uri(&format!(
                        "{}/.well-known/openid-configuration",
                        c.issuer.trim_end_matches('/')
                    )),
                },
                None,
            ),
            (None, None) => (Source::SecretOnly, Some(Arc::new(KeySet::default()))),
        };
        Provider {
            name: c.name.clone().unwrap_or_else(|| format!("providers[{i}]")),
            validation: Validation {
                issuer: c.issuer.clone(),
                audiences: c.audiences.clone(),
                algorithms,
                clock_skew_s: c.clock_skew_s,
                max_token_bytes: usize::try_from(c.max_token_bytes).unwrap_or(8192),
                required_claims: c.required_claims.clone(),
                groups_claim: c.groups_claim.clone(),
                hmac_secret: c
                    .hmac_secret
                    .as_ref()
                    .map(|s| s.expose().as_bytes().to_vec()),
                claim_headers: c
                    .claim_headers
                    .iter()
                    .map(|(h, claim)| (h.to_ascii_lowercase(), claim.clone()))
                    .collect(),
            },
            source,
            keys,
            fetched_at: 0,
            next_fetch: 0,
            in_flight: false,
            last_forced: 0,
        }
    }

    fn forced_interval(&self) -> Millis {
        match &self.source {
            Source::Uri { refresh_ms, .. } => (*refresh_ms).min(30_000),
            _ => Millis::MAX,
        }
    }
}

pub fn providers(c: Option<&JwtConfig>) -> Vec<Provider> {
    c.map(|j| {
        j.providers
            .iter()
            .enumerate()
            .map(|(i, p)| Provider::new(i, p))
            .collect()
    })
    .unwrap_or_default()
}

/// What verification said. (Short-lived, returned by value: boxing the claims would only
/// add an allocation per verification.)
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Outcome {
    /// Verified by provider `.1`.
    Valid(Claims, usize),
    Invalid(JwtError),
    /// Provider `i` has no keys yet (first fetch pending or failed), or its keys lack the
    /// token's `kid` and a refetch is allowed now: wait for its key set.
    Fetch(usize),
}

/// Tries the allowed providers in order; the first that verifies wins. With `may_fetch`,
/// a missing key set or an unknown `kid` asks for a fetch (at most one per interval).
pub fn verify(
    providers: &mut [Provider],
    allowed: &[usize],
    token: &str,
    now: Millis,
    may_fetch: bool,
) -> Outcome {
    let mut first_err = None;
    let mut fetch = None;
    for &i in allowed {
        let Some(p) = providers.get_mut(i) else {
            continue;
        };
        let uri = matches!(p.source, Source::Uri { .. });
        let Some(keys) = p.keys.clone() else {
            if may_fetch && uri {
                fetch = fetch.or(Some(i));
            }
            continue;
        };
        match jwt::verify(token, &keys, &p.validation, now / 1000) {
            Ok(c) => return Outcome::Valid(c, i),
            Err(e) => {
                if e == JwtError::UnknownKid
                    && may_fetch
                    && uri
                    && now.saturating_sub(p.last_forced) >= p.forced_interval()
                {
                    // The IdP may have rotated its keys: refetch now, once per interval.
                    p.last_forced = now;
                    fetch = fetch.or(Some(i));
                }
                // Prefer the most specific reason: a signature or claim failure over "not
                // this provider's key".
                if first_err.is_none()
                    || matches!(
                        first_err,
                        Some(JwtError::UnknownKid | JwtError::NoMatchingKey)
                    )
                {
                    first_err = Some(e);
                }
            }
        }
    }
    match (fetch, first_err) {
        (Some(i), _) => Outcome::Fetch(i),
        (None, Some(e)) => Outcome::Invalid(e),
        (None, None) => Outcome::Invalid(JwtError::NoMatchingKey),
    }
}

/// What a verified (or introspected) token allows, kept per token until its `exp`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    pub exp_ms: Millis,
    /// Shared, so that serving a cached token copies no strings.
    pub scopes: Arc<[String]>,
    pub groups: Arc<[String]>,
    /// Identity headers for the upstream.
    pub identity: Headers,
    /// For JWTs: the verifying provider and its key-set fingerprint at the time.
    pub verified_by: Option<(usize, u64)>,
}

/// Identity headers in a family, from token claims.
pub fn identity(
    family: Family,
    sub: Option<&str>,
    username: Option<&str>,
    email: Option<&str>,
    name: Option<&str>,
    groups: &[String],
) -> Vec<(String, String)> {
    let user = username.or(sub);
    let mut h: Vec<(String, String)> = Vec::new();
    let mut put = |n: &str, v: Option<&str>| {
        if let Some(v) = v.filter(|v| !v.is_empty() && !v.contains(['\r', '\n', '\0'])) {
            h.push((n.to_string(), v.to_string()));
        }
    };
    let joined_pipe = groups.join("|");
    let joined_comma = groups.join(",");
    let g = |s: &str| {
        if groups.is_empty() {
            None
        } else {
            Some(s.to_string())
        }
    };
    match family {
        // Authentik joins groups with '|' (mode_common.go).
        Family::Authentik => {
            put("x-authentik-username", user);
            put("x-authentik-uid", sub);
            put("x-authentik-email", email);
            put("x-authentik-name", name);
            put("x-authentik-groups", g(&joined_pipe).as_deref());
        }
        Family::Authelia => {
            put("remote-user", user);
            put("remote-email", email);
            put("remote-name", name);
            put("remote-groups", g(&joined_comma).as_deref());
        }
        Family::OAuth2Proxy => {
            put("x-auth-request-user", sub.or(user));
            put("x-auth-request-preferred-username", username);
            put("x-auth-request-email", email);
            put("x-auth-request-groups", g(&joined_comma).as_deref());
        }
    }
    h
}

/// The identity headers tokens and OIDC sessions produce: the family's set from the claims,
/// kept to `forward_headers`. One value for the API path and OIDC, which produce the same.
#[derive(Debug, Clone)]
pub struct IdentitySpec {
    pub family: Family,
    pub forward: Forward,
}

impl IdentitySpec {
    pub fn headers(
        &self,
        sub: Option<&str>,
        username: Option<&str>,
        email: Option<&str>,
        name: Option<&str>,
        groups: &[String],
    ) -> Headers {
        let all = identity(self.family, sub, username, email, name, groups);
        self.forward.apply(all, None).into()
    }
}

impl crate::cache::Fresh for TokenInfo {
    fn is_fresh(&self, now: Millis) -> bool {
        now < self.exp_ms
    }
}

impl TokenInfo {
    pub fn from_claims(c: &Claims, spec: &IdentitySpec) -> TokenInfo {
        let mut all = identity(
            spec.family,
            c.sub.as_deref(),
            c.preferred_username.as_deref(),
            c.email.as_deref(),
            c.name.as_deref(),
            &c.groups,
        );
        for (h, v) in &c.extra {
            // A mapping replaces a family header of the same name.
            all.retain(|(n, _)| n != h);
            all.push((h.clone(), v.clone()));
        }
        TokenInfo {
            exp_ms: c.exp.saturating_mul(1000),
            identity: spec.forward.apply(all, None).into(),
            scopes: c.scopes.as_slice().into(),
            groups: c.groups.as_slice().into(),
            verified_by: None,
        }
    }

    /// As a cache entry for the cross-worker store: scopes and groups ride along under
    /// names no header can have (they start with ':').
    pub fn to_entry(&self, fresh_until: Millis) -> crate::cache::Entry {
        let mut h: Vec<(String, String)> = self.identity.iter().cloned().collect();
        h.push((":scopes".into(), self.scopes.join(" ")));
        h.push((":groups".into(), self.groups.join("\n")));
        if let Some((p, f)) = self.verified_by {
            h.push((":verified_by".into(), format!("{p} {f}")));
        }
        crate::cache::Entry {
            kind: crate::cache::Kind::Allow,
            fresh_until,
            stale_until: fresh_until,
            status: 200,
            headers: h.into(),
        }
    }

    pub fn from_entry(e: &crate::cache::Entry) -> TokenInfo {
        let get = |n: &str| {
            e.headers
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.as_str())
                .unwrap_or("")
        };
        TokenInfo {
            verified_by: get(":verified_by")
                .split_once(' ')
                .and_then(|(p, f)| Some((p.parse().ok()?, f.parse().ok()?))),
            exp_ms: e.fresh_until,
            scopes: get(":scopes")
                .split(' ')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect::<Vec<_>>()
                .into(),
            groups: get(":groups")
                .split('\n')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect::<Vec<_>>()
                .into(),
            identity: e
                .headers
                .iter()
                .filter(|(k, _)| !k.starts_with(':'))
                .cloned()
                .collect::<Vec<_>>()
                .into(),
        }
    }
}

/// The request's token, if any: borrowed from the request where it is written as is (a
/// bearer token, a cookie), so a cached token costs no copy.
///
/// A bearer token must be one word (RFC 6750); that scan of the whole token is left to
/// [`bearer_is_one_word`] on a cache miss: a cached token passed it when it was verified.
pub fn extract<'a>(
    v: &View<'a>,
    query: Option<&'a str>,
    token_query: Option<&str>,
    token_cookie: Option<&str>,
    basic: bool,
) -> Result<Option<Cow<'a, str>>, &'static str> {
    if let Some(auth) = v.authorization.first {
        // Two Authorization fields are two credentials: no choosing one (the upstream might
        // read the other). Envoy joins them with ',' (then "bearer_malformed"); hosts that
        // hand them over one by one (Traefik) land here.
        if v.authorization.count > 1 {
            return Err("authorization_repeated");
        }
        // ASCII whitespace only (RFC 9110's OWS), found by byte: this runs on every request
        // with a token, and the token may be ~1 KB.
        let auth = auth.trim_ascii();
        let (scheme, rest) = crate::ascii::split_once(auth, b' ').unwrap_or((auth, ""));
        let rest = rest.trim_ascii();
        if scheme.eq_ignore_ascii_case("bearer") {
            return if rest.is_empty() {
                Err("bearer_malformed")
            } else {
                Ok(Some(Cow::Borrowed(rest)))
            };
        }
        if scheme.eq_ignore_ascii_case("basic") && basic {
            let raw = STANDARD.decode(rest).map_err(|_| "basic_malformed")?;
            let text = String::from_utf8(raw).map_err(|_| "basic_malformed")?;
            return match text.split_once(':') {
                Some((AUTHENTIK_TOKEN_USER, pass)) if !pass.is_empty() => {
                    Ok(Some(Cow::Owned(pass.to_string())))
                }
                _ => Err("basic_not_a_token"),
            };
        }
        return Err("authorization_scheme");
    }
    if let (Some(name), Some(q)) = (token_query, query) {
        for kv in q.split('&') {
            if let Some(v) = kv.strip_prefix(name).and_then(|r| r.strip_prefix('=')) {
                return Ok(Some(Cow::Owned(
                    percent_decode(v).ok_or("query_token_malformed")?,
                )));
            }
        }
    }
    if let Some(name) = token_cookie {
        for c in v.all(v.cookie, "cookie") {
            for kv in c.split(';') {
                if let Some(t) = kv
                    .trim()
                    .strip_prefix(name)
                    .and_then(|r| r.strip_prefix('='))
                {
                    return Ok(Some(Cow::Borrowed(t)));
                }
            }
        }
    }
    Ok(None)
}

/// Whether a token from `Authorization: Bearer` is one word, as RFC 6750 writes it: checked
/// on a cache miss only (see [`extract`]). Other sources are not split on spaces.
pub fn bearer_is_one_word(v: &View<'_>, token: &str) -> bool {
    let bearer = v
        .authorization
        .first
        .and_then(|a| a.trim_start().get(..6))
        .is_some_and(|s| s.eq_ignore_ascii_case("bearer"));
    !(bearer && token.contains(' '))
}

pub(crate) fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c == b'%' {
            // Two hex digits, nothing else: u8::from_str_radix alone also takes a sign, so
            // "%+A" would decode to a newline.
            let h = b.get(i + 1..i + 3)?;
            if !h.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            out.push(u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok()?);
            i += 3;
        } else {
            out.push(if c == b'+' { b' ' } else { c });
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    /// `extract` on a header list, read as the engine reads a request.
    fn extract(
        headers: &[(String, String)],
        query: Option<&str>,
        token_query: Option<&str>,
        token_cookie: Option<&str>,
        basic: bool,
    ) -> Result<Option<String>, &'static str> {
        let headers = crate::request::borrow_all(headers);
        let v = View::read(&headers, &[]);
        let t = super::extract(&v, query, token_query, token_cookie, basic)?;
        Ok(t.map(Cow::into_owned))
    }

    /// Found reading what the headers fuzz target reaches: `from_str_radix` takes a sign,
    /// so "%+A" decoded to a newline in query tokens and in OIDC callback fields.
    #[test]
    fn an_escape_is_two_hex_digits_and_nothing_else() {
        assert_eq!(percent_decode("a%2Bb+c"), Some("a+b c".into()));
        assert_eq!(percent_decode("%c3%A9"), Some("é".into()));
        for bad in ["%+A", "%-1", "%+0x", "%G0", "%4", "%", "%%41"] {
            assert_eq!(percent_decode(bad), None, "{bad}");
        }
        assert_eq!(
            extract(&[], Some("apikey=%+A"), Some("apikey"), None, false),
            Err("query_token_malformed")
        );
    }

    #[test]
    fn bearer_basic_query_and_cookie_sources() {
        assert_eq!(
            extract(
                &h(&[("authorization", "Bearer abc")]),
                None,
                None,
                None,
                false
            ),
            Ok(Some("abc".into()))
        );
        assert_eq!(
            extract(
                &h(&[("authorization", "bearer  abc ")]),
                None,
                None,
                None,
                false
            ),
            Ok(Some("abc".into()))
        );
        assert_eq!(
            extract(&h(&[("authorization", "Bearer")]), None, None, None, false),
            Err("bearer_malformed")
        );
        let basic = format!("Basic {}", STANDARD.encode("goauthentik.io/token:tok123"));
        assert_eq!(
            extract(&h(&[("authorization", &basic)]), None, None, None, true),
            Ok(Some("tok123".into()))
        );
        assert_eq!(
            extract(&h(&[("authorization", &basic)]), None, None, None, false),
            Err("authorization_scheme")
        );
        let other = format!("Basic {}", STANDARD.encode("alice:pw"));
        assert_eq!(
            extract(&h(&[("authorization", &other)]), None, None, None, true),
            Err("basic_not_a_token")
        );
        assert_eq!(
            extract(&[], Some("a=1&apikey=x%2By"), Some("apikey"), None, false),
            Ok(Some("x+y".into()))
        );
        assert_eq!(
            extract(&[], Some("apikeyx=1"), Some("apikey"), None, false),
            Ok(None)
        );
        assert_eq!(
            extract(
                &h(&[("cookie", "a=1; tok=zz")]),
                None,
                None,
                Some("tok"),
                false
            ),
            Ok(Some("zz".into()))
        );
        assert_eq!(extract(&[], None, None, None, false), Ok(None));
    }

    #[test]
    fn two_authorization_fields_are_refused_not_chosen_from() {
        // Traefik hands repeated fields over one by one (Envoy joins them with ',').
        for (a, b) in [("Bearer good", "Bearer bad"), ("Bearer a", "Bearer a")] {
            assert_eq!(
                extract(
                    &h(&[("authorization", a), ("Authorization", b)]),
                    None,
                    None,
                    None,
                    true
                ),
                Err("authorization_repeated")
            );
        }
    }

    #[test]
    fn identity_families() {
        let groups = vec!["admins".to_string(), "users".to_string()];
        let a = identity(
            Family::Authentik,
            Some("u1"),
            Some("alice"),
            Some("a@x"),
            None,
            &groups,
        );
        assert_eq!(
            a.to_vec(),
            h(&[
                ("x-authentik-username", "alice"),
                ("x-authentik-uid", "u1"),
                ("x-authentik-email", "a@x"),
                ("x-authentik-groups", "admins|users")
            ])
        );
        let b = identity(Family::Authelia, Some("u1"), None, None, None, &groups);
        assert_eq!(
            b.to_vec(),
            h(&[("remote-user", "u1"), ("remote-groups", "admins,users")])
        );
        let evil = identity(
            Family::Authentik,
            Some("u1\r\nx-evil: 1"),
            None,
            None,
            None,
            &[],
        );
        assert!(evil.is_empty(), "values with line breaks are never set");
    }

    #[test]
    fn token_info_survives_the_store_format() {
        let info = TokenInfo {
            exp_ms: 5000,
            scopes: ["read".to_string(), "write".into()].into(),
            groups: ["a b".to_string(), "c".into()].into(),
            identity: h(&[("x-authentik-uid", "u1")]).into(),
            verified_by: Some((2, 12345)),
        };
        assert_eq!(TokenInfo::from_entry(&info.to_entry(5000)), info);
    }
}
