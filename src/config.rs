//! The configuration model: one JSON document, the same on every host.
//!
//! Parsing is strict (unknown fields are errors, so a typo never silently turns a rule off)
//! and validation collects every problem at once, each with the JSON path of the bad field,
//! so an operator fixes a config in one pass instead of one restart per mistake.

use crate::url::split_http_uri;
use serde::de::{self, Deserializer};
use serde::Deserialize;
use std::fmt;

mod hosts;
mod oidc;
mod secret;
pub use hosts::{traefik_problems, TRAEFIK_NO_CALLOUTS};
pub use oidc::{CookieConfig, OidcConfig, OidcFlow, SameSite, TokenAuth, MIN_SECRET_BYTES};
pub use secret::{Resolver, Secret, SecretRef};

/// One problem in a configuration: where it is and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// JSON path of the offending field, e.g. `routes[3].match.path_regex`.
    pub path: String,
    pub problem: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() || self.path == "." {
            write!(f, "{}", self.problem)
        } else {
            write!(f, "{}: {}", self.path, self.problem)
        }
    }
}

impl ConfigError {
    fn new(path: impl Into<String>, problem: impl Into<String>) -> Self {
        ConfigError {
            path: path.into(),
            problem: problem.into(),
        }
    }
}

/// The whole plugin configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// How browser sessions are checked. Required when any route is `protected`.
    #[serde(default)]
    pub session: Option<SessionConfig>,
    /// Ordered rules; the first match wins.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// Policy for requests no route matches. Defaults to `deny`: forgetting a rule never
    /// exposes a backend.
    #[serde(default = "default_policy")]
    pub default_policy: Policy,
    /// Extra request header names to strip from every client request (besides the built-in
    /// identity families), e.g. a header your backend trusts for identity.
    #[serde(default)]
    pub strip_headers: Vec<String>,
    /// Which identity headers go upstream: names, or prefixes ending in `*`. Default `["*"]`:
    /// all the identity source produces. Each one is a header write per request in the proxy.
    /// (A plain `Vec` with a default, not an `Option`: its parser is already in the wasm for
    /// `strip_headers`.)
    #[serde(default = "forward_all")]
    pub forward_headers: Vec<String>,
    /// Size limits on what a client may send.
    #[serde(default)]
    pub limits: Limits,
    /// Bearer-token providers for `api` routes.
    #[serde(default)]
    pub jwt: Option<JwtConfig>,
    /// RFC 7662 introspection for opaque tokens on `api` routes.
    #[serde(default)]
    pub introspection: Option<IntrospectionConfig>,
    /// Proxies in front of Envoy whose X-Forwarded-For entries are believed when finding
    /// the client address for `allow_cidrs`.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// Which header family carries identity from tokens to the upstream. Default: the
    /// forward-auth dialect's family, else authentik.
    #[serde(default)]
    pub identity_headers: Option<Family>,
    /// `barbican serve`'s map from cluster name to URL (Envoy takes its clusters from its
    /// bootstrap). Accepted and skipped here so one document serves every host; `serve`
    /// parses and validates it itself, and `IgnoredAny` keeps its parser out of the wasm.
    /// (Plain `IgnoredAny`, not an `Option`: 325 bytes less wasm, measured.)
    #[serde(default)]
    pub clusters: de::IgnoredAny,
    /// `barbican serve`'s own settings (listen address, bounds), skipped like `clusters`.
    #[serde(default)]
    pub serve: de::IgnoredAny,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Family {
    #[serde(rename = "authentik")]
    Authentik,
    #[serde(rename = "authelia")]
    Authelia,
    #[serde(rename = "oauth2-proxy", alias = "oauth2_proxy")]
    OAuth2Proxy,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    pub providers: Vec<ProviderConfig>,
}

/// One token issuer.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// Routes can name the providers they accept; default `providers[i]`.
    #[serde(default)]
    pub name: Option<String>,
    /// Compared exactly with the token's `iss`.
    pub issuer: String,
    /// The token's `aud` must contain one of these.
    pub audiences: Vec<String>,
    /// Default: RS256, PS256, ES256, ES384, EdDSA. HS* only with `hmac_secret`; never `none`.
    #[serde(default)]
    pub algorithms: Option<Vec<String>>,
    pub jwks: JwksConfig,
    #[serde(default = "d60", deserialize_with = "de_u64")]
    pub clock_skew_s: u64,
    #[serde(default = "d8192", deserialize_with = "de_u64")]
    pub max_token_bytes: u64,
    #[serde(default)]
    pub required_claims: Vec<String>,
    #[serde(default = "groups_claim")]
    pub groups_claim: String,
    /// A shared secret for HS256/384/512 (at least 32 bytes).
    #[serde(default)]
    pub hmac_secret: Option<Secret>,
    /// Extra upstream headers from claims: header name → claim name (strings as they are,
    /// numbers and booleans as text, string arrays joined with ','). Client-sent copies of
    /// these headers are stripped like every identity header.
    #[serde(default)]
    pub claim_headers: std::collections::BTreeMap<String, String>,
}

fn d60() -> u64 {
    60
}
fn groups_claim() -> String {
    "groups".into()
}

/// Where a provider's keys come from: inline, fetched by callout and refreshed, or read by
/// the host from a file (Traefik: a mounted key set, re-read when it changes).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwksConfig {
    #[serde(default)]
    pub inline: Option<serde_json::Value>,
    /// An absolute path to a JWKS document. The core never reads it (it has no I/O): the host
    /// hands it the bytes ([`crate::Engine::jwks_files`], [`crate::Engine::set_jwks`]). Hosts
    /// without a filesystem (Envoy) refuse it.
    #[serde(default)]
    pub file: Option<String>,
    /// `http://host[:port]/path` of the key set; fetched through `cluster`. With only a
    /// `cluster`, the key set is found through the issuer's
    /// `/.well-known/openid-configuration` (its `jwks_uri`).
    #[serde(default)]
    pub uri: Option<String>,
    #[serde(default)]
    pub cluster: Option<String>,
    #[serde(default = "d600", deserialize_with = "de_u64")]
    pub refresh_s: u64,
}

fn d600() -> u64 {
    600
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntrospectionConfig {
    pub cluster: String,
    /// `:authority` of the call; default: the cluster name.
    #[serde(default)]
    pub authority: Option<String>,
    pub path: String,
    pub client_id: String,
    pub client_secret: Secret,
    #[serde(default)]
    pub auth: IntrospectionAuth,
    #[serde(default = "d1500", deserialize_with = "de_u64")]
    pub timeout_ms: u64,
    #[serde(default = "d60", deserialize_with = "de_u64")]
    pub ttl_s: u64,
    #[serde(default = "d5", deserialize_with = "de_u64")]
    pub negative_ttl_s: u64,
    #[serde(default = "groups_claim")]
    pub groups_claim: String,
}

fn d1500() -> u64 {
    1500
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IntrospectionAuth {
    #[default]
    Basic,
    Post,
}

/// Credentials an `api` route accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Accept {
    /// A JWT bearer token verified locally.
    Jwt,
    /// An opaque bearer token checked by RFC 7662 introspection.
    Introspection,
    /// HTTP Basic with username `goauthentik.io/token`: the password is a bearer token.
    Basic,
}

fn default_policy() -> Policy {
    Policy::Deny
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    /// No authentication; identity headers are still stripped.
    Bypass,
    /// A browser session checked by the IdP (forward auth); login redirect for browsers,
    /// 401 for API clients.
    Protected,
    /// Credentials only (bearer tokens); never a redirect.
    Api,
    /// Always 403.
    Deny,
}

impl Policy {
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Bypass => "bypass",
            Policy::Protected => "protected",
            Policy::Api => "api",
            Policy::Deny => "deny",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionConfig {
    pub mode: SessionMode,
    #[serde(default)]
    pub forward_auth: Option<ForwardAuthConfig>,
    #[serde(default)]
    pub oidc: Option<OidcConfig>,
    #[serde(default)]
    pub cache: CacheConfig,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionMode {
    ForwardAuth,
    Oidc,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Dialect {
    #[serde(rename = "authentik")]
    Authentik,
    #[serde(rename = "authelia")]
    Authelia,
    #[serde(rename = "oauth2-proxy", alias = "oauth2_proxy")]
    OAuth2Proxy,
    #[serde(rename = "custom")]
    Custom,
}

/// Where and how to ask the IdP's forward-auth endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardAuthConfig {
    pub dialect: Dialect,
    /// The host's name for the IdP upstream (an Envoy cluster).
    pub cluster: String,
    /// `:authority` of the callout. Default: the original request's host, which is what
    /// Authentik's envoy endpoint reads to find the application.
    #[serde(default)]
    pub authority: Option<String>,
    /// Endpoint path. Default per dialect (authentik: `/outpost.goauthentik.io/auth/envoy`,
    /// authelia: `/api/authz/forward-auth`, oauth2-proxy: `/oauth2/auth`). Required for custom.
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default = "default_timeout_ms", deserialize_with = "de_u64")]
    pub timeout_ms: u64,
    /// Cookie name prefixes that make up the session (the cache key). Default per dialect;
    /// an empty list means "all cookies".
    #[serde(default)]
    pub session_cookies: Option<Vec<String>>,
    /// Paths whose requests end the session: the cached decision for the request's
    /// credentials is dropped before the request continues. Default per dialect.
    #[serde(default)]
    pub sign_out_paths: Option<Vec<String>>,
    /// custom: request headers copied to the callout (besides the X-Forwarded-* set).
    #[serde(default)]
    pub request_headers: Option<Vec<String>>,
    /// custom: statuses that mean "allowed". Default `[200]`.
    #[serde(default)]
    pub success_statuses: Option<Vec<u16>>,
    /// custom: response headers (names, or prefixes ending in `*`) copied to the upstream.
    #[serde(default)]
    pub copy_headers: Option<Vec<String>>,
    /// custom: the response header holding the user's groups, and its separator.
    #[serde(default)]
    pub groups_header: Option<String>,
    #[serde(default)]
    pub groups_separator: Option<String>,
}

fn default_timeout_ms() -> u64 {
    1500
}

/// The decision cache. Sizes bound memory: at most `max_entries` entries of at most
/// `max_entry_bytes` each in the cross-worker store, `local_max_entries` per worker.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    #[serde(default = "d300", deserialize_with = "de_u64")]
    pub ttl_s: u64,
    #[serde(default = "d5", deserialize_with = "de_u64")]
    pub negative_ttl_s: u64,
    #[serde(default = "d120", deserialize_with = "de_u64")]
    pub stale_grace_s: u64,
    #[serde(default = "d10000", deserialize_with = "de_u64")]
    pub max_entries: u64,
    #[serde(default = "d1024", deserialize_with = "de_u64")]
    pub local_max_entries: u64,
    /// How long a worker trusts its own copy before re-reading the shared store; bounds how
    /// long a sign-out on another worker can go unseen.
    #[serde(default = "d5", deserialize_with = "de_u64")]
    pub local_ttl_s: u64,
    #[serde(default = "d16384", deserialize_with = "de_u64")]
    pub max_entry_bytes: u64,
    /// Decisions are per host (an Authentik application can differ per host).
    #[serde(default = "dtrue", deserialize_with = "de_bool")]
    pub per_host: bool,
    /// Decisions are per method and path. Default: on for authelia and custom, whose access
    /// rules can name paths and methods; off for authentik and oauth2-proxy, whose decisions
    /// are per application.
    #[serde(default, deserialize_with = "de_opt_bool")]
    pub per_path: Option<bool>,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            ttl_s: 300,
            negative_ttl_s: 5,
            stale_grace_s: 120,
            max_entries: 10_000,
            local_max_entries: 1024,
            local_ttl_s: 5,
            max_entry_bytes: 16_384,
            per_host: true,
            per_path: None,
        }
    }
}

fn d5() -> u64 {
    5
}
fn d120() -> u64 {
    120
}
fn d300() -> u64 {
    300
}
fn d1024() -> u64 {
    1024
}
fn d10000() -> u64 {
    10_000
}
fn d16384() -> u64 {
    16_384
}
fn dtrue() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Longest accepted `:path` (with query), in bytes. Longer requests get 414.
    #[serde(default = "d8192", deserialize_with = "de_u64")]
    pub max_path_bytes: u64,
    /// Longest accepted Cookie or Authorization header, in bytes. Longer requests get 431.
    #[serde(default = "d16384", deserialize_with = "de_u64")]
    pub max_credential_bytes: u64,
}

fn d8192() -> u64 {
    8192
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_path_bytes: 8192,
            max_credential_bytes: 16_384,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Shown by `barbican explain` and in logs.
    #[serde(default)]
    pub name: Option<String>,
    #[serde(rename = "match", default)]
    pub matcher: MatchConfig,
    pub policy: Policy,
    /// Let CORS preflights (`OPTIONS` with `Origin` and `Access-Control-Request-Method`)
    /// through without credentials: browsers never attach them to a preflight.
    #[serde(default, deserialize_with = "de_bool")]
    pub allow_cors_preflight: bool,
    #[serde(default)]
    pub require_groups: Vec<String>,
    #[serde(default)]
    pub groups_match: GroupsMatch,
    /// api: which credentials count. Default `["jwt"]`.
    #[serde(default)]
    pub accept: Option<Vec<Accept>>,
    /// api: scopes the token must carry.
    #[serde(default)]
    pub require_scopes: Vec<String>,
    #[serde(default)]
    pub scopes_match: ScopesMatch,
    /// api: JWT providers accepted here, by name. Default: all.
    #[serde(default)]
    pub providers: Option<Vec<String>>,
    /// api: also take the token from this query parameter (for clients that cannot set
    /// headers, e.g. some media apps). The Authorization header still wins.
    #[serde(default)]
    pub token_query: Option<String>,
    /// api: also take the token from this cookie.
    #[serde(default)]
    pub token_cookie: Option<String>,
    /// Requests from these networks pass without credentials ("valid token OR home
    /// network"). The client address honours `trusted_proxies`.
    #[serde(default)]
    pub allow_cidrs: Vec<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScopesMatch {
    #[default]
    All,
    Any,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupsMatch {
    #[default]
    Any,
    All,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchConfig {
    #[serde(default)]
    pub host: Option<OneOrMany>,
    #[serde(default)]
    pub path_prefix: Option<String>,
    #[serde(default)]
    pub path_exact: Option<String>,
    /// Matched against the whole normalized path (implicitly anchored at both ends), so a
    /// pattern can never match by accident in the middle of a path.
    #[serde(default)]
    pub path_regex: Option<String>,
    #[serde(default)]
    pub methods: Option<Vec<String>>,
    /// Header names that must be present.
    #[serde(default)]
    pub headers: Option<Vec<String>>,
}

/// A string or a list of strings.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

/// Traefik hands plugin configuration over with every scalar turned into a string
/// (DESIGN §5), so numbers and booleans also accept their string spelling.
fn de_u64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum N {
        Num(u64),
        Str(String),
    }
    match N::deserialize(d)? {
        N::Num(n) => Ok(n),
        N::Str(s) => s
            .trim()
            .parse()
            .map_err(|_| de::Error::custom(format!("expected a whole number, got {s:?}"))),
    }
}

fn de_opt_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    de_bool(d).map(Some)
}

fn de_bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum B {
        Bool(bool),
        Str(String),
    }
    match B::deserialize(d)? {
        B::Bool(b) => Ok(b),
        B::Str(s) => match s.trim() {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(de::Error::custom(format!(
                "expected true or false, got {s:?}"
            ))),
        },
    }
}

/// Parses and validates a configuration document. Every problem found is returned.
pub fn parse(json: &[u8]) -> Result<Config, Vec<ConfigError>> {
    parse_with(json, &mut |_| {
        Err("this host reads no secrets from the environment or files; give it inline".into())
    })
}

/// [`parse`], with the host reading the secrets the document names by environment variable
/// or file (`{"env": "NAME"}`, `{"file": "/path"}`) before validation.
pub fn parse_with(json: &[u8], read: &mut Resolver) -> Result<Config, Vec<ConfigError>> {
    // serde's derived structs also accept a JSON array (fields by position): refuse anything
    // but an object, so `[]` is an error rather than an all-defaults config.
    if json.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(vec![ConfigError::new(
            "",
            "the configuration must be a JSON object ({...})",
        )]);
    }
    let mut de = serde_json::Deserializer::from_slice(json);
    let mut cfg: Config = match Config::deserialize(&mut de) {
        Ok(c) => c,
        Err(e) => {
            // serde_json appends " at line L column C"; keep it: it helps find the spot.
            let path = path_at(json, e.line(), e.column());
            return Err(vec![ConfigError::new(
                path,
                without_strings(&e.to_string()),
            )]);
        }
    };
    if let Err(e) = de.end() {
        return Err(vec![ConfigError::new(
            "",
            format!("trailing characters after the document: {e}"),
        )]);
    }
    // Every problem at once: what could not be read, then the rest (an unread secret's own
    // length complaint would only repeat it).
    let mut problems = resolve_secrets(&mut cfg, read);
    let unread: Vec<String> = problems.iter().map(|p| p.path.clone()).collect();
    problems.extend(
        validate(&cfg)
            .into_iter()
            .filter(|p| !unread.contains(&p.path)),
    );
    if problems.is_empty() {
        Ok(cfg)
    } else {
        Err(problems)
    }
}

/// serde's "invalid type: string \"...\"" quotes the value it got, and a secret written
/// where a list belongs (`"secrets": "..."`) would be logged: say "a string" instead. Names
/// in other messages (unknown fields and variants) are quoted differently and stay.
fn without_strings(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut rest = msg;
    while let Some(i) = rest.find("string \"") {
        out.push_str(rest.get(..i).unwrap_or_default());
        out.push_str("a string");
        let quoted = rest.get(i + 8..).unwrap_or_default();
        // Debug-escaped: the first quote not after a backslash ends it.
        let mut escaped = false;
        let end = quoted.char_indices().find_map(|(j, c)| match (escaped, c) {
            (false, '"') => Some(j + 1),
            (false, '\\') => {
                escaped = true;
                None
            }
            _ => {
                escaped = false;
                None
            }
        });
        rest = quoted
            .get(end.unwrap_or(quoted.len())..)
            .unwrap_or_default();
    }
    out.push_str(rest);
    out
}

/// Every secret field, by path: the host reads those given by name. One problem per secret
/// it could not read.
fn resolve_secrets(cfg: &mut Config, read: &mut Resolver) -> Vec<ConfigError> {
    let mut fields: Vec<(String, &mut Secret)> = Vec::new();
    if let Some(o) = cfg.session.as_mut().and_then(|s| s.oidc.as_mut()) {
        for (i, s) in o.secrets.iter_mut().enumerate() {
            fields.push((format!("session.oidc.secrets[{i}]"), s));
        }
        if let Some(s) = o.client_secret.as_mut() {
            fields.push(("session.oidc.client_secret".into(), s));
        }
    }
    if let Some(ic) = cfg.introspection.as_mut() {
        fields.push(("introspection.client_secret".into(), &mut ic.client_secret));
    }
    for (j, p) in cfg
        .jwt
        .iter_mut()
        .flat_map(|j| j.providers.iter_mut())
        .enumerate()
    {
        if let Some(s) = p.hmac_secret.as_mut() {
            fields.push((format!("jwt.providers[{j}].hmac_secret"), s));
        }
    }
    fields
        .into_iter()
        .filter_map(|(path, s)| s.resolve(&path, read))
        .collect()
}

/// The JSON path (`routes[3].match.path_regex`) of the value at a 1-based line and column,
/// as serde_json reports errors. A small walk over the text instead of a path-tracking
/// deserializer: that one doubled the size of every config type in the wasm build.
pub(crate) fn path_at(json: &[u8], line: usize, column: usize) -> String {
    // Byte offset of (line, column).
    let mut offset = 0;
    let mut l = 1;
    for (i, b) in json.iter().enumerate() {
        if l == line {
            offset = i + column.saturating_sub(1);
            break;
        }
        if *b == b'\n' {
            l += 1;
        }
    }
    enum Frame {
        Object(Option<String>),
        Array(usize),
    }
    let mut stack: Vec<Frame> = Vec::new();
    let mut i = 0;
    let mut last_string: Option<String> = None;
    while i < offset.min(json.len()) {
        match json.get(i).copied().unwrap_or(b' ') {
            b'"' => {
                let start = i + 1;
                i += 1;
                while let Some(&c) = json.get(i) {
                    if c == b'\\' {
                        i += 2;
                        continue;
                    }
                    if c == b'"' {
                        break;
                    }
                    i += 1;
                }
                last_string = json
                    .get(start..i.min(json.len()))
                    .map(|b| String::from_utf8_lossy(b).into_owned());
            }
            b':' => {
                if let Some(Frame::Object(k)) = stack.last_mut() {
                    *k = last_string.take();
                }
            }
            b',' => match stack.last_mut() {
                Some(Frame::Array(n)) => *n += 1,
                Some(Frame::Object(k)) => *k = None,
                None => {}
            },
            b'{' => stack.push(Frame::Object(None)),
            b'[' => stack.push(Frame::Array(0)),
            b'}' | b']' => {
                stack.pop();
            }
            _ => {}
        }
        i += 1;
    }
    // An unknown-field error points just past the key, before its ':' — name it too.
    if let (Some(Frame::Object(k @ None)), Some(s)) = (stack.last_mut(), last_string) {
        *k = Some(s);
    }
    let mut out = String::new();
    for f in &stack {
        match f {
            Frame::Object(Some(k)) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Frame::Object(None) => {}
            Frame::Array(n) => out.push_str(&format!("[{n}]")),
        }
    }
    out
}

/// Semantic checks that serde cannot express. Returns every problem.
pub fn validate(cfg: &Config) -> Vec<ConfigError> {
    let mut errs = Vec::new();
    let protected_used = cfg.default_policy == Policy::Protected
        || cfg.routes.iter().any(|r| r.policy == Policy::Protected);

    match &cfg.session {
        None if protected_used => errs.push(ConfigError::new(
            "session",
            "a route uses policy \"protected\" but no session is configured; add \
             session.mode \"forward_auth\" with session.forward_auth, or \"oidc\" with \
             session.oidc",
        )),
        None => {}
        Some(s) => validate_session(s, &mut errs),
    }

    for (i, r) in cfg.routes.iter().enumerate() {
        validate_route(&format!("routes[{i}]"), r, cfg.session.is_some(), &mut errs);
    }
    // `*` is a token character, so `forward_headers`' prefixes (`x-authentik-meta-*`) pass.
    for (field, list) in [
        ("strip_headers", &cfg.strip_headers),
        ("forward_headers", &cfg.forward_headers),
    ] {
        for (i, h) in list.iter().enumerate() {
            if !is_token(h) {
                errs.push(ConfigError::new(
                    format!("{field}[{i}]"),
                    format!("{h:?} is not a valid header name"),
                ));
            }
        }
    }
    validate_tokens(cfg, &mut errs);
    for (i, c) in cfg.trusted_proxies.iter().enumerate() {
        if let Err(e) = crate::net::Cidr::parse(c) {
            errs.push(ConfigError::new(format!("trusted_proxies[{i}]"), e));
        }
    }
    range(
        &mut errs,
        "limits.max_path_bytes",
        cfg.limits.max_path_bytes,
        256..=65_536,
    );
    range(
        &mut errs,
        "limits.max_credential_bytes",
        cfg.limits.max_credential_bytes,
        1024..=262_144,
    );
    errs
}

fn validate_session(s: &SessionConfig, errs: &mut Vec<ConfigError>) {
    match s.mode {
        SessionMode::Oidc => match &s.oidc {
            None => errs.push(ConfigError::new(
                "session.oidc",
                "required when session.mode is \"oidc\": give at least issuer, client_id, \
                 authorization_endpoint, redirect_uri and secrets",
            )),
            Some(o) => {
                oidc::validate(o, errs);
                if s.forward_auth.is_some() {
                    errs.push(ConfigError::new(
                        "session.forward_auth",
                        "session.mode is \"oidc\": remove forward_auth (one session mode at a time)",
                    ));
                }
            }
        },
        SessionMode::ForwardAuth => {
            if s.forward_auth.is_none() {
                errs.push(ConfigError::new(
                    "session.forward_auth",
                    "required when session.mode is \"forward_auth\": give at least dialect and cluster",
                ));
            }
        }
    }
    if let Some(fa) = &s.forward_auth {
        let p = "session.forward_auth";
        if fa.cluster.trim().is_empty() {
            errs.push(ConfigError::new(
                format!("{p}.cluster"),
                "must name the IdP's cluster",
            ));
        }
        range(errs, format!("{p}.timeout_ms"), fa.timeout_ms, 1..=60_000);
        if let Some(a) = &fa.authority {
            if a.is_empty() || a.bytes().any(|b| b <= b' ' || b == b'/' || b >= 0x7f) {
                errs.push(ConfigError::new(
                    format!("{p}.authority"),
                    "must be a host[:port]",
                ));
            }
        }
        match (&fa.path, fa.dialect) {
            (None, Dialect::Custom) => errs.push(ConfigError::new(
                format!("{p}.path"),
                "required for dialect \"custom\": the forward-auth endpoint's path",
            )),
            (Some(path), _) if !path.starts_with('/') || path.bytes().any(|b| b <= b' ') => errs
                .push(ConfigError::new(
                    format!("{p}.path"),
                    "must start with '/' and contain no spaces",
                )),
            _ => {}
        }
        if fa.dialect != Dialect::Custom {
            for (field, set) in [
                ("request_headers", fa.request_headers.is_some()),
                ("success_statuses", fa.success_statuses.is_some()),
                ("copy_headers", fa.copy_headers.is_some()),
                ("groups_header", fa.groups_header.is_some()),
                ("groups_separator", fa.groups_separator.is_some()),
            ] {
                if set {
                    errs.push(ConfigError::new(
                        format!("{p}.{field}"),
                        "only applies to dialect \"custom\"; the other dialects define it themselves",
                    ));
                }
            }
        }
        for (i, h) in fa.request_headers.iter().flatten().enumerate() {
            if !is_token(h) {
                errs.push(ConfigError::new(
                    format!("{p}.request_headers[{i}]"),
                    "not a valid header name",
                ));
            }
        }
        for (i, st) in fa.success_statuses.iter().flatten().enumerate() {
            if !(200..=299).contains(st) {
                errs.push(ConfigError::new(
                    format!("{p}.success_statuses[{i}]"),
                    "must be a 2xx status: anything else would allow on an error answer",
                ));
            }
        }
        for (i, h) in fa.copy_headers.iter().flatten().enumerate() {
            let name = h.strip_suffix('*').unwrap_or(h);
            if name.is_empty() || !is_token(name) {
                errs.push(ConfigError::new(
                    format!("{p}.copy_headers[{i}]"),
                    "must be a header name or a prefix ending in '*'",
                ));
            }
        }
        if let Some(g) = &fa.groups_header {
            if !is_token(g) {
                errs.push(ConfigError::new(
                    format!("{p}.groups_header"),
                    "not a valid header name",
                ));
            }
        }
        if let Some(sep) = &fa.groups_separator {
            if sep.is_empty() {
                errs.push(ConfigError::new(
                    format!("{p}.groups_separator"),
                    "must not be empty",
                ));
            }
        }
        for (i, c) in fa.session_cookies.iter().flatten().enumerate() {
            if c.is_empty() || !is_token(c) {
                errs.push(ConfigError::new(
                    format!("{p}.session_cookies[{i}]"),
                    "must be a cookie name prefix",
                ));
            }
        }
        for (i, sp) in fa.sign_out_paths.iter().flatten().enumerate() {
            if !sp.starts_with('/') {
                errs.push(ConfigError::new(
                    format!("{p}.sign_out_paths[{i}]"),
                    "must start with '/'",
                ));
            }
        }
    }
    let c = &s.cache;
    let p = "session.cache";
    range(errs, format!("{p}.ttl_s"), c.ttl_s, 1..=86_400);
    range(
        errs,
        format!("{p}.negative_ttl_s"),
        c.negative_ttl_s,
        0..=3600,
    );
    range(
        errs,
        format!("{p}.stale_grace_s"),
        c.stale_grace_s,
        0..=86_400,
    );
    range(
        errs,
        format!("{p}.max_entries"),
        c.max_entries,
        1..=10_000_000,
    );
    if c.local_max_entries > 1_000_000 {
        errs.push(ConfigError::new(
            format!("{p}.local_max_entries"),
            "must be at most 1000000 (0 turns the per-worker cache off)",
        ));
    }
    range(errs, format!("{p}.local_ttl_s"), c.local_ttl_s, 0..=300);
    range(
        errs,
        format!("{p}.max_entry_bytes"),
        c.max_entry_bytes,
        1024..=1_048_576,
    );
}

fn validate_route(p: &str, r: &RouteConfig, has_session: bool, errs: &mut Vec<ConfigError>) {
    let m = &r.matcher;
    if let Some(h) = &m.host {
        let hosts = h.to_vec();
        if hosts.is_empty() {
            errs.push(ConfigError::new(
                format!("{p}.match.host"),
                "must not be an empty list",
            ));
        }
        for (i, host) in hosts.iter().enumerate() {
            let at = match h {
                OneOrMany::One(_) => format!("{p}.match.host"),
                OneOrMany::Many(_) => format!("{p}.match.host[{i}]"),
            };
            if let Err(why) = crate::hostname::HostPattern::parse(host) {
                errs.push(ConfigError::new(at, why));
            }
        }
    }
    let paths = [
        m.path_prefix.is_some(),
        m.path_exact.is_some(),
        m.path_regex.is_some(),
    ];
    if paths.iter().filter(|x| **x).count() > 1 {
        errs.push(ConfigError::new(
            format!("{p}.match"),
            "give at most one of path_prefix, path_exact, path_regex",
        ));
    }
    for (field, v) in [
        ("path_prefix", &m.path_prefix),
        ("path_exact", &m.path_exact),
    ] {
        if let Some(v) = v {
            if let Err(why) = crate::path::check_config_path(v) {
                errs.push(ConfigError::new(format!("{p}.match.{field}"), why));
            }
        }
    }
    if let Some(re) = &m.path_regex {
        if let Err(e) = crate::path::path_regex(re) {
            errs.push(ConfigError::new(
                format!("{p}.match.path_regex"),
                format!("does not compile: {e}"),
            ));
        }
    }
    if let Some(ms) = &m.methods {
        if ms.is_empty() {
            errs.push(ConfigError::new(
                format!("{p}.match.methods"),
                "must not be an empty list",
            ));
        }
        for (i, meth) in ms.iter().enumerate() {
            if !is_token(meth) {
                errs.push(ConfigError::new(
                    format!("{p}.match.methods[{i}]"),
                    "not a valid HTTP method",
                ));
            }
        }
    }
    for (i, h) in m.headers.iter().flatten().enumerate() {
        if !is_token(h) {
            errs.push(ConfigError::new(
                format!("{p}.match.headers[{i}]"),
                "not a valid header name",
            ));
        }
    }
    if r.policy == Policy::Protected && !has_session {
        // Reported once at "session" by validate(); nothing more here.
    }
    if !r.require_groups.is_empty() && !matches!(r.policy, Policy::Protected | Policy::Api) {
        errs.push(ConfigError::new(
            format!("{p}.require_groups"),
            format!(
                "groups come from a session or a token; policy \"{}\" has neither (use \"protected\" or \"api\")",
                r.policy.as_str()
            ),
        ));
    }
    if r.policy != Policy::Api {
        for (field, set) in [
            ("accept", r.accept.is_some()),
            ("require_scopes", !r.require_scopes.is_empty()),
            ("providers", r.providers.is_some()),
            ("token_query", r.token_query.is_some()),
            ("token_cookie", r.token_cookie.is_some()),
        ] {
            if set {
                errs.push(ConfigError::new(
                    format!("{p}.{field}"),
                    "only applies to policy \"api\"",
                ));
            }
        }
    }
    for (i, c) in r.allow_cidrs.iter().enumerate() {
        if let Err(e) = crate::net::Cidr::parse(c) {
            errs.push(ConfigError::new(format!("{p}.allow_cidrs[{i}]"), e));
        }
    }
    for (i, g) in r.require_groups.iter().enumerate() {
        if g.is_empty() {
            errs.push(ConfigError::new(
                format!("{p}.require_groups[{i}]"),
                "must not be empty",
            ));
        }
    }
    if r.allow_cors_preflight && r.policy != Policy::Protected && r.policy != Policy::Api {
        errs.push(ConfigError::new(
            format!("{p}.allow_cors_preflight"),
            "only meaningful on \"protected\" and \"api\" routes",
        ));
    }
}

fn validate_tokens(cfg: &Config, errs: &mut Vec<ConfigError>) {
    let providers = cfg
        .jwt
        .as_ref()
        .map(|j| j.providers.as_slice())
        .unwrap_or_default();
    let mut names = Vec::new();
    for (i, pr) in providers.iter().enumerate() {
        let p = format!("jwt.providers[{i}]");
        let name = pr.name.clone().unwrap_or_else(|| format!("providers[{i}]"));
        if names.contains(&name) {
            errs.push(ConfigError::new(
                format!("{p}.name"),
                format!("{name:?} is used twice"),
            ));
        }
        names.push(name);
        if pr.issuer.is_empty() {
            errs.push(ConfigError::new(format!("{p}.issuer"), "must not be empty"));
        }
        if pr.audiences.is_empty() || pr.audiences.iter().any(String::is_empty) {
            errs.push(ConfigError::new(
                format!("{p}.audiences"),
                "give at least one audience: a token minted for another API must not pass",
            ));
        }
        let mut hmac = false;
        for (j, a) in pr.algorithms.iter().flatten().enumerate() {
            match crate::jwt::Alg::parse(a) {
                Some(alg) => hmac |= alg.is_hmac(),
                None => errs.push(ConfigError::new(
                    format!("{p}.algorithms[{j}]"),
                    format!("{a:?} is not supported (RS256/384/512, PS256/384/512, ES256/384, EdDSA, HS256/384/512; never none)"),
                )),
            }
        }
        match (&pr.hmac_secret, hmac) {
            (None, true) => errs.push(ConfigError::new(
                format!("{p}.hmac_secret"),
                "an HS* algorithm needs a shared secret; keys from a JWKS are never used as HMAC secrets",
            )),
            (Some(s), _) if s.len() < 32 => {
                errs.push(ConfigError::new(format!("{p}.hmac_secret"), "must be at least 32 bytes"))
            }
            _ => {}
        }
        for (h, claim) in &pr.claim_headers {
            if !is_token(h) || h.starts_with(':') {
                errs.push(ConfigError::new(
                    format!("{p}.claim_headers"),
                    format!("{h:?} is not a valid header name"),
                ));
            }
            if claim.is_empty() {
                errs.push(ConfigError::new(
                    format!("{p}.claim_headers.{h}"),
                    "must name a claim",
                ));
            }
        }
        range(errs, format!("{p}.clock_skew_s"), pr.clock_skew_s, 0..=600);
        range(
            errs,
            format!("{p}.max_token_bytes"),
            pr.max_token_bytes,
            256..=65_536,
        );
        let j = &pr.jwks;
        if let Some(f) = &j.file {
            if j.inline.is_some() || j.uri.is_some() || j.cluster.is_some() {
                errs.push(ConfigError::new(
                    format!("{p}.jwks"),
                    "give one of inline, uri (with cluster) or file",
                ));
            }
            if !f.starts_with('/') || f.contains('\0') {
                errs.push(ConfigError::new(
                    format!("{p}.jwks.file"),
                    "must be an absolute path (on Traefik, a path the plugin's `settings.mounts` makes readable)",
                ));
            }
            continue;
        }
        match (&j.inline, &j.uri) {
            (Some(_), Some(_)) => errs.push(ConfigError::new(
                format!("{p}.jwks"),
                "give inline or uri, not both",
            )),
            (None, None) if j.cluster.is_some() => {
                // Discovery: the issuer's /.well-known/openid-configuration names jwks_uri.
                if split_http_uri(&pr.issuer).is_none() {
                    errs.push(ConfigError::new(
                        format!("{p}.issuer"),
                        "discovery (jwks with only a cluster) needs an http(s) issuer URL",
                    ));
                }
                range(errs, format!("{p}.jwks.refresh_s"), j.refresh_s, 1..=86_400);
            }
            (None, None) if pr.hmac_secret.is_none() => errs.push(ConfigError::new(
                format!("{p}.jwks"),
                "give the keys: inline, uri with cluster, file, or only a cluster to discover them from the issuer",
            )),
            (Some(v), None) => {
                if let Err(e) = crate::jwks::parse(v.to_string().as_bytes()) {
                    errs.push(ConfigError::new(format!("{p}.jwks.inline"), e.to_string()));
                }
            }
            (None, Some(u)) => {
                if split_http_uri(u).is_none() {
                    errs.push(ConfigError::new(
                        format!("{p}.jwks.uri"),
                        "must be http(s)://host[:port]/path",
                    ));
                }
                if j.cluster.as_deref().is_none_or(str::is_empty) {
                    errs.push(ConfigError::new(
                        format!("{p}.jwks.cluster"),
                        "required with uri: the cluster that reaches it",
                    ));
                }
                range(errs, format!("{p}.jwks.refresh_s"), j.refresh_s, 1..=86_400);
            }
            _ => {}
        }
    }
    if let Some(i) = &cfg.introspection {
        let p = "introspection";
        if i.cluster.is_empty() {
            errs.push(ConfigError::new(
                format!("{p}.cluster"),
                "must name the IdP's cluster",
            ));
        }
        if !i.path.starts_with('/') {
            errs.push(ConfigError::new(format!("{p}.path"), "must start with '/'"));
        }
        if i.client_id.is_empty() {
            errs.push(ConfigError::new(
                format!("{p}.client_id"),
                "must not be empty",
            ));
        }
        // Also what a secret named by env/file holds when no host read it.
        if i.client_secret.is_empty() {
            errs.push(ConfigError::new(
                format!("{p}.client_secret"),
                "must not be empty",
            ));
        }
        range(errs, format!("{p}.timeout_ms"), i.timeout_ms, 1..=60_000);
        if i.ttl_s > 3600 || i.negative_ttl_s > 3600 {
            errs.push(ConfigError::new(
                format!("{p}.ttl_s"),
                "ttl_s and negative_ttl_s must be at most 3600",
            ));
        }
    }
    for (ri, r) in cfg.routes.iter().enumerate() {
        if r.policy != Policy::Api {
            continue;
        }
        let p = format!("routes[{ri}]");
        let accept = r.accept.clone().unwrap_or_else(|| vec![Accept::Jwt]);
        if accept.is_empty() {
            errs.push(ConfigError::new(format!("{p}.accept"), "must not be empty"));
        }
        // An api route with no credential source at all stays valid: it answers 401.
        if r.accept.is_some() && accept.contains(&Accept::Jwt) && providers.is_empty() {
            errs.push(ConfigError::new(
                format!("{p}.accept"),
                "accepts \"jwt\" but jwt.providers is empty",
            ));
        }
        if accept.contains(&Accept::Introspection) && cfg.introspection.is_none() {
            errs.push(ConfigError::new(
                format!("{p}.accept"),
                "accepts \"introspection\" but no introspection is configured",
            ));
        }
        if accept.contains(&Accept::Basic) && providers.is_empty() && cfg.introspection.is_none() {
            errs.push(ConfigError::new(
                format!("{p}.accept"),
                "\"basic\" carries a token: configure jwt.providers or introspection",
            ));
        }
        for (j, n) in r.providers.iter().flatten().enumerate() {
            let known = providers
                .iter()
                .enumerate()
                .any(|(i, pr)| pr.name.clone().unwrap_or_else(|| format!("providers[{i}]")) == *n);
            if !known {
                errs.push(ConfigError::new(
                    format!("{p}.providers[{j}]"),
                    format!("no provider named {n:?}"),
                ));
            }
        }
    }
}

/// A numeric field outside `r` is a problem: "must be between A and B", or "must be at most
/// B" when anything from 0 is fine.
fn range(
    errs: &mut Vec<ConfigError>,
    path: impl Into<String>,
    v: u64,
    r: std::ops::RangeInclusive<u64>,
) {
    if !r.contains(&v) {
        let problem = if *r.start() == 0 {
            format!("must be at most {}", r.end())
        } else {
            format!("must be between {} and {}", r.start(), r.end())
        };
        errs.push(ConfigError::new(path, problem));
    }
}

/// RFC 9110 token characters: what a header name or method may contain.
fn forward_all() -> Vec<String> {
    vec!["*".into()]
}

pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errs(json: &str) -> Vec<String> {
        match parse(json.as_bytes()) {
            Ok(_) => vec![],
            Err(e) => e.iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn minimal_config_parses_with_documented_defaults() {
        let cfg =
            parse(br#"{"routes":[{"match":{"path_prefix":"/"},"policy":"bypass"}]}"#).unwrap();
        assert_eq!(cfg.default_policy, Policy::Deny);
        assert_eq!(cfg.limits.max_path_bytes, 8192);
        assert!(cfg.session.is_none());
    }

    #[test]
    fn forward_headers_are_names_or_prefixes() {
        let base =
            r#"{"routes":[{"match":{"path_prefix":"/"},"policy":"bypass"}],"forward_headers":"#;
        assert!(errs(&format!(
            "{base}[\"X-Authentik-Username\",\"x-authentik-meta-*\"]}}"
        ))
        .is_empty());
        assert!(errs(&format!("{base}[]}}")).is_empty());
        let e = errs(&format!("{base}[\"ok\",\"bad name\",\"\"]}}"));
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(e[0].starts_with("forward_headers[1]: "), "{e:?}");
        assert!(e[1].starts_with("forward_headers[2]: "), "{e:?}");
    }

    #[test]
    fn unknown_field_is_an_error_with_its_path() {
        let e = errs(r#"{"routes":[{"match":{"path_prefx":"/api/"},"policy":"bypass"}]}"#);
        assert_eq!(e.len(), 1);
        assert!(
            e[0].starts_with("routes[0].match.path_prefx: unknown field `path_prefx`"),
            "{e:?}"
        );
    }

    #[test]
    fn type_errors_name_their_path() {
        let e = errs(
            r#"{"routes":[{"match":{"path_prefix":"/a"},"policy":"bypass"},
                        {"match":{"methods":"GET"},"policy":"bypass"}]}"#,
        );
        assert!(
            e[0].starts_with("routes[1].match.methods: invalid type"),
            "{e:?}"
        );
        let e = errs(r#"{"session":{"mode":"forward_auth","cache":{"ttl_s":true}}}"#);
        assert!(e[0].starts_with("session.cache.ttl_s:"), "{e:?}");
        let e = errs(r#"{"routes":[{"policy":"maybe"}]}"#);
        assert!(
            e[0].starts_with("routes[0].policy: unknown variant"),
            "{e:?}"
        );
        let e = errs("{\n  \"limits\": {\"max_path_bytes\": 1,\n \"bogus\": 2}}");
        assert!(e[0].starts_with("limits.bogus: unknown field"), "{e:?}");
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let e = errs(
            r#"{"routes":[
                {"match":{"path_regex":"(("},"policy":"bypass"},
                {"match":{"host":"a.*.lan","path_prefix":"api"},"policy":"protected"},
                {"match":{"path_prefix":"/x","path_exact":"/y"},"policy":"deny","require_groups":["a"]}
            ]}"#,
        );
        let joined = e.join("\n");
        assert!(
            joined.contains("routes[0].match.path_regex: does not compile"),
            "{joined}"
        );
        assert!(joined.contains("routes[1].match.host:"), "{joined}");
        assert!(joined.contains("routes[1].match.path_prefix:"), "{joined}");
        assert!(
            joined.contains("routes[2].match: give at most one"),
            "{joined}"
        );
        assert!(joined.contains("routes[2].require_groups:"), "{joined}");
        assert!(
            joined.contains("session: a route uses policy \"protected\""),
            "{joined}"
        );
        assert_eq!(e.len(), 6, "{joined}");
    }

    #[test]
    fn traefik_style_string_scalars_are_accepted() {
        let cfg = parse(
            br#"{"session":{"mode":"forward_auth",
                 "forward_auth":{"dialect":"authentik","cluster":"ak","timeout_ms":"250"},
                 "cache":{"ttl_s":"30","per_host":"false"}},
                 "default_policy":"protected"}"#,
        )
        .unwrap();
        let s = cfg.session.unwrap();
        assert_eq!(s.forward_auth.unwrap().timeout_ms, 250);
        assert_eq!(s.cache.ttl_s, 30);
        assert!(!s.cache.per_host);
        assert!(!errs(r#"{"limits":{"max_path_bytes":"lots"}}"#).is_empty());
    }

    #[test]
    fn custom_dialect_needs_a_path_and_2xx_success() {
        let e = errs(
            r#"{"session":{"mode":"forward_auth","forward_auth":{"dialect":"custom","cluster":"c",
                "success_statuses":[200,302]}}}"#,
        );
        let joined = e.join("\n");
        assert!(
            joined.contains("session.forward_auth.path: required"),
            "{joined}"
        );
        assert!(
            joined.contains("success_statuses[1]: must be a 2xx"),
            "{joined}"
        );
    }

    #[test]
    fn oidc_sessions_need_a_config_and_a_long_secret() {
        let e = errs(r#"{"session":{"mode":"oidc"}}"#);
        assert!(e[0].starts_with("session.oidc: required"), "{e:?}");
        let base = r#""issuer":"http://idp","client_id":"c","authorization_endpoint":"http://idp/auth",
            "token_endpoint":"http://idp/token","cluster":"idp","redirect_uri":"https://app.lan/cb""#;
        let e = errs(&format!(
            r#"{{"session":{{"mode":"oidc","oidc":{{{base}}}}}}}"#
        ));
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].starts_with("session.oidc.secrets: required"), "{e:?}");
        assert!(e[0].contains("no default"), "{e:?}");
        let e = errs(&format!(
            r#"{{"session":{{"mode":"oidc","oidc":{{{base},"secrets":["short","{}","{}"]}}}}}}"#,
            "x".repeat(32),
            "y".repeat(40)
        ));
        let joined = e.join("\n");
        assert!(
            joined.contains("session.oidc.secrets: give the current"),
            "{joined}"
        );
        assert!(
            joined.contains("session.oidc.secrets[0]: is 5 bytes; at least 32"),
            "{joined}"
        );
        let ok = format!(
            r#"{{"session":{{"mode":"oidc","oidc":{{{base},"secrets":["{}"]}}}},
                "routes":[{{"match":{{"path_prefix":"/"}},"policy":"protected"}}]}}"#,
            "x".repeat(32)
        );
        assert!(errs(&ok).is_empty(), "{:?}", errs(&ok));
    }

    #[test]
    fn secrets_named_by_env_or_file_are_read_by_the_host_then_validated() {
        let doc = r#"{"session":{"mode":"oidc","oidc":{"issuer":"http://idp","client_id":"c",
            "authorization_endpoint":"http://idp/auth","token_endpoint":"http://idp/token",
            "cluster":"idp","redirect_uri":"https://app.lan/cb",
            "client_secret":{"env":"CLIENT"},
            "secrets":[{"file":"/run/secrets/session"},{"env":"OLD"}]}},
          "introspection":{"cluster":"idp","path":"/i","client_id":"rs","client_secret":{"env":"RS"}},
          "jwt":{"providers":[{"issuer":"https://idp/","audiences":["a"],"algorithms":["HS256"],
            "jwks":{},"hmac_secret":{"file":"/run/secrets/hmac"}}]},
          "routes":[{"match":{"path_prefix":"/"},"policy":"protected"}]}"#;
        let long = |c: char| c.to_string().repeat(40);
        let mut asked = Vec::new();
        let cfg = parse_with(doc.as_bytes(), &mut |r| {
            asked.push(format!("{r:?}"));
            Ok(match r {
                SecretRef::Env("CLIENT") => "client-secret".into(),
                SecretRef::Env("RS") => "rs-secret".into(),
                SecretRef::Env(_) => long('o'),
                SecretRef::File("/run/secrets/session") => format!("{}\n", long('s')),
                SecretRef::File(_) => long('h'),
            })
        })
        .unwrap();
        assert_eq!(asked.len(), 5, "{asked:?}");
        let o = cfg.session.as_ref().unwrap().oidc.as_ref().unwrap();
        let values: Vec<&str> = o.secrets.iter().map(Secret::expose).collect();
        assert_eq!(values, [long('s'), long('o')]);
        assert_eq!(o.client_secret.as_ref().unwrap().expose(), "client-secret");
        assert_eq!(
            cfg.introspection.as_ref().unwrap().client_secret.expose(),
            "rs-secret"
        );
        let hmac = cfg.jwt.as_ref().unwrap().providers[0].hmac_secret.as_ref();
        assert_eq!(hmac.unwrap().expose(), long('h'));
        // Nothing of the values in what a log of the config would show.
        assert!(!format!("{cfg:?}").contains(&long('s')));

        // Every secret the host cannot read is named, each with the host's reason.
        let e = parse_with(doc.as_bytes(), &mut |r| match r {
            SecretRef::Env("OLD") => Ok(long('o')),
            other => Err(format!("no {other:?}")),
        })
        .unwrap_err();
        let e: Vec<String> = e.iter().map(ToString::to_string).collect();
        assert_eq!(
            e,
            [
                "session.oidc.secrets[0]: no File(\"/run/secrets/session\")",
                "session.oidc.client_secret: no Env(\"CLIENT\")",
                "introspection.client_secret: no Env(\"RS\")",
                "jwt.providers[0].hmac_secret: no File(\"/run/secrets/hmac\")",
            ]
        );
        // What was read is validated like an inline secret.
        let e = parse_with(doc.as_bytes(), &mut |_| Ok("short".into())).unwrap_err();
        let e: Vec<String> = e.iter().map(ToString::to_string).collect();
        assert!(
            e.iter()
                .any(|p| p == "session.oidc.secrets[0]: is 5 bytes; at least 32 are required"),
            "{e:?}"
        );
        assert!(e
            .iter()
            .any(|p| p.starts_with("jwt.providers[0].hmac_secret: must be at least 32")));
        // A host without env/file access says so instead of a type error.
        let e = errs(doc);
        assert!(
            e[0].contains("reads no secrets from the environment or files"),
            "{e:?}"
        );
        // What could not be read and every other problem, in one pass.
        let bad_uri = doc.replace("https://app.lan/cb", "javascript:x");
        let e = parse_with(bad_uri.as_bytes(), &mut |r| match r {
            SecretRef::Env("CLIENT") => Err("unset".into()),
            _ => Ok(long('x')),
        })
        .unwrap_err();
        let paths: Vec<&str> = e.iter().map(|p| p.path.as_str()).collect();
        assert!(paths.contains(&"session.oidc.client_secret"), "{e:?}");
        assert!(paths.contains(&"session.oidc.redirect_uri"), "{e:?}");
        assert_eq!(
            paths
                .iter()
                .filter(|p| **p == "session.oidc.client_secret")
                .count(),
            1
        );
        // A malformed reference is a parse error at its place.
        let e = errs(&doc.replace(r#"{"env":"OLD"}"#, r#"{"vault":"x"}"#));
        assert!(e[0].contains("not a source named \"vault\""), "{e:?}");
        assert!(e[0].starts_with("session.oidc.secrets[1]: "), "{e:?}");
    }

    #[test]
    fn a_secret_in_the_wrong_place_is_not_quoted_back() {
        let e = errs(
            r#"{"session":{"mode":"oidc","oidc":{"secrets":"TOPSECRET-a\"b-0123456789abcdef-xyz"}}}"#,
        );
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].contains("invalid type: a string, expected a sequence"),
            "{e:?}"
        );
        assert!(
            !e[0].contains("TOPSECRET") && !e[0].contains("xyz"),
            "{e:?}"
        );
        assert_eq!(
            without_strings(r#"invalid type: string "a\"b", expected x; string "c""#),
            "invalid type: a string, expected x; a string"
        );
        // Other quoted names stay: they are the operator's field and variant names.
        let e = errs(r#"{"default_policy":"bypas"}"#);
        assert!(e[0].contains("bypas"), "{e:?}");
    }

    #[test]
    fn client_secrets_must_not_be_empty() {
        let e = errs(
            r#"{"introspection":{"cluster":"idp","path":"/i","client_id":"rs","client_secret":""},
                "routes":[{"match":{"path_prefix":"/"},"policy":"api","accept":["introspection"]}]}"#,
        );
        assert!(
            e.iter()
                .any(|p| p == "introspection.client_secret: must not be empty"),
            "{e:?}"
        );
    }

    #[test]
    fn oidc_fields_are_checked() {
        let e = errs(&format!(
            r#"{{"session":{{"mode":"oidc","oidc":{{"issuer":"","client_id":"c",
                "authorization_endpoint":"javascript:x","redirect_uri":"https://app.lan/cb?x=1",
                "logout_path":"//x","scopes":["profile"],"cookie":{{"name":"a b","secure":false,"same_site":"None","domain":"other.lan"}},
                "domains":["*"],"lifetime_s":1,"secrets":["{}"]}}}}}}"#,
            "x".repeat(32)
        ));
        let joined = e.join("\n");
        for want in [
            "session.oidc.issuer: must not be empty",
            "session.oidc.authorization_endpoint: must be an http(s) URL",
            "session.oidc.redirect_uri: must be an absolute",
            "session.oidc.logout_path: must be a path",
            "session.oidc.token_endpoint: required for flow \"code\"",
            "session.oidc.cluster: required for flow \"code\"",
            "session.oidc.scopes: must include \"openid\"",
            "session.oidc.cookie.name: must be a valid cookie name",
            "session.oidc.cookie.same_site: \"None\" needs cookie.secure",
            "session.oidc.domains[0]:",
            "session.oidc.cookie.domain: must cover the redirect URI's host",
            "session.oidc.lifetime_s: must be between 60",
        ] {
            assert!(joined.contains(want), "{want} not in:\n{joined}");
        }
        // form_post needs neither a token endpoint nor a secret, but keys.
        let e = errs(&format!(
            r#"{{"session":{{"mode":"oidc","oidc":{{"issuer":"http://idp","client_id":"c","flow":"form_post",
                "client_secret":"s","authorization_endpoint":"http://idp/auth",
                "redirect_uri":"https://app.lan/cb","secrets":["{}"]}}}}}}"#,
            "x".repeat(32)
        ));
        let joined = e.join("\n");
        assert!(
            joined.contains("session.oidc.client_secret: flow \"form_post\" uses no client secret"),
            "{joined}"
        );
        assert!(
            joined.contains("session.oidc.jwks: give the provider's keys"),
            "{joined}"
        );
        assert!(!joined.contains("token_endpoint"), "{joined}");
        // Return hosts the cookie cannot reach would loop through the provider.
        let e = errs(&format!(
            r#"{{"session":{{"mode":"oidc","oidc":{{"issuer":"http://idp","client_id":"c","flow":"form_post",
                "authorization_endpoint":"http://idp/auth","jwks":{{"inline":{{"keys":[]}}}},
                "redirect_uri":"https://auth.lan/cb","domains":["auth.lan","*.lan","x.corp"],
                "secrets":["{}"]}}}}}}"#,
            "x".repeat(32)
        ));
        let joined = e.join("\n");
        assert!(
            joined.contains("session.oidc.domains[1]: \"*.lan\" is not the redirect URI's host"),
            "{joined}"
        );
        assert!(!joined.contains("domains[0]"), "{joined}");
        let e = errs(&format!(
            r#"{{"session":{{"mode":"oidc","oidc":{{"issuer":"http://idp","client_id":"c","flow":"form_post",
                "authorization_endpoint":"http://idp/auth","jwks":{{"inline":{{"keys":[]}}}},
                "redirect_uri":"https://auth.lan/cb","domains":["auth.lan","*.lan","x.corp"],
                "cookie":{{"domain":".lan"}},"secrets":["{}"]}}}}}}"#,
            "x".repeat(32)
        ));
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(
            e[1].starts_with("session.oidc.domains[2]: \"x.corp\" is outside cookie.domain"),
            "{e:?}"
        );
    }

    #[test]
    fn numeric_bounds_name_the_field_and_the_range() {
        let e = errs(
            r#"{"session":{"mode":"forward_auth","forward_auth":{"dialect":"authentik","cluster":"c","timeout_ms":0},
                 "cache":{"ttl_s":0,"negative_ttl_s":4000,"max_entries":0}},
                "limits":{"max_path_bytes":1}}"#,
        );
        for want in [
            "session.forward_auth.timeout_ms: must be between 1 and 60000",
            "session.cache.ttl_s: must be between 1 and 86400",
            "session.cache.negative_ttl_s: must be at most 3600",
            "session.cache.max_entries: must be between 1 and 10000000",
            "limits.max_path_bytes: must be between 256 and 65536",
        ] {
            assert!(e.iter().any(|x| x == want), "{want} not in {e:?}");
        }
    }

    #[test]
    fn only_an_object_is_a_config() {
        for bad in ["[]", "[null]", "null", "\"x\"", "1", ""] {
            assert!(!errs(bad).is_empty(), "{bad}");
        }
        assert!(errs(" {} ").is_empty());
    }

    #[test]
    fn jwks_file_is_one_source_with_an_absolute_path() {
        let cfg = |jwks: &str| {
            format!(
                r#"{{"jwt":{{"providers":[{{"issuer":"https://i/","audiences":["a"],"jwks":{jwks}}}]}}}}"#
            )
        };
        assert!(errs(&cfg(r#"{"file":"/etc/barbican/jwks.json"}"#)).is_empty());
        let e = errs(&cfg(r#"{"file":"jwks.json"}"#));
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with("jwt.providers[0].jwks.file: must be an absolute path"),
            "{e:?}"
        );
        for both in [
            r#"{"file":"/k.json","inline":{"keys":[]}}"#,
            r#"{"file":"/k.json","uri":"http://i/jwks","cluster":"i"}"#,
            r#"{"file":"/k.json","cluster":"i"}"#,
        ] {
            let e = errs(&cfg(both));
            assert_eq!(
                e,
                ["jwt.providers[0].jwks: give one of inline, uri (with cluster) or file"],
                "{both}"
            );
        }
        let e = errs(&cfg(r#"{"file":3}"#));
        assert!(
            e[0].starts_with("jwt.providers[0].jwks.file: invalid type"),
            "{e:?}"
        );
    }

    #[test]
    fn trailing_garbage_is_refused() {
        assert!(!errs(r#"{} {}"#).is_empty());
    }
}
