//! The `api` policy: credentials only, never a redirect. A bearer JWT is verified locally
//! against its provider's keys; an opaque token is introspected (RFC 7662) by callout; both
//! are cached by the whole token until their `exp`.

use super::*;
use crate::config::{
    Accept, Family, GroupsMatch, IntrospectionAuth, IntrospectionConfig, ScopesMatch,
};
use crate::identity::Forward;
use crate::idp::introspection::{self, ClientAuth};
use crate::jwt::JwtError;
use crate::net::{self, Cidr};
use crate::tokens::{self, JwksFile, JwksFileError, Outcome, Provider, Source, TokenInfo};
use std::sync::Arc;

/// One `api` rule, compiled.
#[derive(Debug, Clone)]
pub(super) struct ApiRule {
    jwt: bool,
    introspection: bool,
    basic: bool,
    require_scopes: Vec<String>,
    scopes_all: bool,
    /// Indices into the providers.
    providers: Vec<usize>,
    token_query: Option<String>,
    token_cookie: Option<String>,
    allow_cidrs: Vec<Cidr>,
}

#[derive(Debug)]
pub(super) struct Api {
    /// By route index; `None` for non-api routes. The last one is for the default policy.
    /// Shared so that a request holds its rule without copying it.
    rules: Vec<Option<Arc<ApiRule>>>,
    default_rule: Arc<ApiRule>,
    pub(super) providers: Vec<Provider>,
    introspection: Option<IntrospectionConfig>,
    trusted: Vec<Cidr>,
    pub(super) identity: tokens::IdentitySpec,
    /// Verified tokens by the whole token (per worker).
    tokens: LocalCache<TokenInfo>,
}

const TOKEN_PREFIX: &[u8] = b"token\0";

/// The name of the id_token provider of `session.oidc` among the providers.
pub(super) const SESSION_PROVIDER: &str = "session.oidc";

/// The cache key material of a bearer token (apart from session keys by its prefix).
fn token_material(token: &str) -> Vec<u8> {
    let mut m = Vec::with_capacity(TOKEN_PREFIX.len() + token.len());
    m.extend_from_slice(TOKEN_PREFIX);
    m.extend_from_slice(token.as_bytes());
    m
}
/// How long a token that failed verification is answered 401 from the cache.
pub(super) const INVALID_JWT_TTL_MS: Millis = 5_000;

impl Api {
    pub(super) fn new(cfg: &Config) -> Result<Api, Vec<ConfigError>> {
        let providers = tokens::providers(cfg.jwt.as_ref());
        let all: Vec<usize> = (0..providers.len()).collect();
        let compile = |r: Option<&crate::config::RouteConfig>| -> ApiRule {
            let accept = r
                .and_then(|r| r.accept.clone())
                .unwrap_or_else(|| vec![Accept::Jwt]);
            ApiRule {
                jwt: accept.contains(&Accept::Jwt),
                introspection: accept.contains(&Accept::Introspection),
                basic: accept.contains(&Accept::Basic),
                require_scopes: r.map(|r| r.require_scopes.clone()).unwrap_or_default(),
                scopes_all: r.is_none_or(|r| r.scopes_match == ScopesMatch::All),
                providers: match r.and_then(|r| r.providers.as_ref()) {
                    Some(names) => all
                        .iter()
                        .copied()
                        .filter(|i| providers.get(*i).is_some_and(|p| names.contains(&p.name)))
                        .collect(),
                    None => all.clone(),
                },
                token_query: r.and_then(|r| r.token_query.clone()),
                token_cookie: r.and_then(|r| r.token_cookie.clone()),
                allow_cidrs: r
                    .map(|r| {
                        r.allow_cidrs
                            .iter()
                            .filter_map(|c| Cidr::parse(c).ok())
                            .collect()
                    })
                    .unwrap_or_default(),
            }
        };
        let rules = cfg
            .routes
            .iter()
            .map(|r| (r.policy == Policy::Api).then(|| Arc::new(compile(Some(r)))))
            .collect();
        let family = cfg.identity_headers.unwrap_or_else(|| {
            match cfg
                .session
                .as_ref()
                .and_then(|s| s.forward_auth.as_ref())
                .map(|f| f.dialect)
            {
                Some(Dialect::Authelia) => Family::Authelia,
                Some(Dialect::OAuth2Proxy) => Family::OAuth2Proxy,
                _ => Family::Authentik,
            }
        });
        let local = cfg
            .session
            .as_ref()
            .map_or(1024, |s| s.cache.local_max_entries);
        Ok(Api {
            rules,
            default_rule: Arc::new(compile(None)),
            providers,
            introspection: cfg.introspection.clone(),
            trusted: cfg
                .trusted_proxies
                .iter()
                .filter_map(|c| Cidr::parse(c).ok())
                .collect(),
            identity: tokens::IdentitySpec {
                family,
                forward: Forward::new(&cfg.forward_headers),
            },
            tokens: LocalCache::new(usize::try_from(local).unwrap_or(1024)),
        })
    }

    /// A cached verification stands only while its provider's key set has the same key ids.
    fn still_valid(&self, info: &TokenInfo) -> bool {
        match info.verified_by {
            Some((p, f)) => self
                .providers
                .get(p)
                .is_some_and(|pr| tokens::fingerprint(pr.keys.as_deref()) == f),
            None => true,
        }
    }

    fn verified(&self, claims: &crate::jwt::Claims, by: usize) -> TokenInfo {
        let f = tokens::fingerprint(self.providers.get(by).and_then(|p| p.keys.as_deref()));
        TokenInfo {
            verified_by: Some((by, f)),
            ..TokenInfo::from_claims(claims, &self.identity)
        }
    }

    fn rule(&self, route: Option<usize>) -> &Arc<ApiRule> {
        route
            .and_then(|i| self.rules.get(i))
            .and_then(Option::as_ref)
            .unwrap_or(&self.default_rule)
    }
}

fn challenge(status: u16, error: Option<&str>, reason: &'static str) -> Step {
    let value = match error {
        Some(e) => format!("Bearer realm=\"barbican\", error=\"{e}\""),
        None => "Bearer realm=\"barbican\"".to_string(),
    };
    let body = if status == 401 { BODY_401 } else { BODY_403 };
    Step::Respond(Respond {
        status,
        headers: vec![("www-authenticate".into(), value)],
        body: body.into(),
        reason,
    })
}

fn unavailable(reason: &'static str) -> Step {
    Step::Respond(Respond {
        status: 503,
        headers: vec![("retry-after".into(), "5".into())],
        body: BODY_503.into(),
        reason,
    })
}

impl Engine {
    /// For a host whose [`SharedStore`] is the instance's own memory (Traefik: no data is
    /// shared between plugin instances). The "shared" level then reaches no other instance
    /// and only multiplies memory by the instance count, so it holds at most as many
    /// entries as the per-worker level (`local_max_entries`). Measured before this bound:
    /// Traefik's heap grew 34 → 275 MB over 400k distinct tokens (`make memory`).
    pub fn store_is_per_instance(&mut self) {
        let local = self.cache_cfg.local_max_entries.max(1);
        self.cache_cfg.max_entries = self.cache_cfg.max_entries.min(local);
    }

    /// Whether a rule needs the client address (hosts then pass [`Request::peer`]).
    pub fn needs_peer(&self) -> bool {
        self.api
            .rules
            .iter()
            .flatten()
            .any(|r| !r.allow_cidrs.is_empty())
    }

    /// How many providers fetched by URI or discovery have no key set yet: a native host is
    /// ready (`barbican serve`'s /healthz) only when none is missing. Unused on wasm, where
    /// the linker drops it.
    pub fn keys_missing(&self) -> usize {
        self.api
            .providers
            .iter()
            .filter(|p| matches!(p.source, Source::Uri { .. }) && p.keys.is_none())
            .count()
    }

    /// The providers whose key set the host reads from a file (`jwks.file`): their index
    /// (for [`Engine::set_jwks`]), the path, and the config path for messages. The core has
    /// no I/O; a host without a filesystem must refuse a config that lists any.
    pub fn jwks_files(&self) -> Vec<JwksFile> {
        self.api
            .providers
            .iter()
            .enumerate()
            .filter_map(|(i, p)| match &p.source {
                Source::File { path } => Some(JwksFile {
                    provider: i,
                    path: path.clone(),
                    field: if p.name == SESSION_PROVIDER {
                        "session.oidc.jwks.file".to_string()
                    } else {
                        format!("jwt.providers[{i}].jwks.file")
                    },
                }),
                _ => None,
            })
            .collect()
    }

    /// Replaces provider `provider`'s key set with this JWKS document (the host read it from
    /// the provider's `jwks.file`). When it does not parse, the last good set stays and the
    /// error says why. Tokens verified against keys that are gone or changed are verified
    /// again on their next use (the set's fingerprint changes).
    pub fn set_jwks(&mut self, provider: usize, doc: &[u8]) -> Result<usize, JwksFileError> {
        let p = self
            .api
            .providers
            .get_mut(provider)
            .filter(|p| matches!(p.source, Source::File { .. }))
            .ok_or(JwksFileError::NotAFileProvider(provider))?;
        let set = crate::jwks::parse(doc).map_err(JwksFileError::Jwks)?;
        let n = set.keys.len();
        p.keys = Some(Arc::new(set));
        Ok(n)
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn api_request(
        &mut self,
        req: Request<'_>,
        v: &View<'_>,
        now: Millis,
        store: &mut dyn SharedStore,
        route: Option<usize>,
        remove: Vec<String>,
        path: Option<String>,
        query: Option<&str>,
    ) -> Step {
        let rule = Arc::clone(self.api.rule(route));
        if route
            .and_then(|i| self.routes.get(i))
            .is_some_and(|r| r.allow_cors_preflight)
            && is_preflight(v)
        {
            self.counters.allowed += 1;
            return Step::Allow(Allow {
                remove,
                path,
                ..Allow::default()
            });
        }
        if !rule.allow_cidrs.is_empty() {
            let xff: Vec<&str> = v.all(v.forwarded_for, "x-forwarded-for").collect();
            if let Some(ip) = net::client_ip(req.peer, &xff, &self.api.trusted) {
                if rule.allow_cidrs.iter().any(|c| c.contains(ip)) {
                    self.counters.allowed += 1;
                    return Step::Allow(Allow {
                        remove,
                        path,
                        ..Allow::default()
                    });
                }
            }
        }
        let token = match tokens::extract(
            v,
            query,
            rule.token_query.as_deref(),
            rule.token_cookie.as_deref(),
            rule.basic,
        ) {
            Ok(Some(t)) => t,
            Ok(None) => {
                self.counters.denied += 1;
                return challenge(401, None, "api_no_credentials");
            }
            Err(reason) => {
                self.counters.denied += 1;
                return challenge(401, Some("invalid_token"), reason);
            }
        };
        if token.len() as u64 > self.limits.max_credential_bytes {
            self.counters.denied += 1;
            return challenge(401, Some("invalid_token"), "token_too_large");
        }
        // The per-worker token cache holds tokens only: the token itself is its key. The
        // prefixed material names it in the shared store, next to session decisions.
        if let Some(info) = self
            .api
            .tokens
            .get(token.as_bytes(), now)
            .filter(|i| self.api.still_valid(i))
        {
            self.counters.cache_hit += 1;
            let info = info.clone();
            return self.authorize(&info, route, remove, path);
        }
        let material = token_material(&token);
        let digest = sha(&material);
        if let Some(e) = cache::store_get(store, &digest, self.cache_cfg.max_entries) {
            if e.is_fresh(now)
                && (e.kind == Kind::Deny || self.api.still_valid(&TokenInfo::from_entry(&e)))
            {
                self.counters.cache_hit += 1;
                if e.kind == Kind::Deny {
                    self.counters.denied += 1;
                    return challenge(401, Some("invalid_token"), "token_inactive_cached");
                }
                let info = TokenInfo::from_entry(&e);
                let trust = now
                    .saturating_add(self.cache_cfg.local_ttl_s * 1000)
                    .min(info.exp_ms);
                self.api.tokens.put(token.as_bytes(), info.clone(), trust);
                return self.authorize(&info, route, remove, path);
            }
        }
        self.counters.cache_miss += 1;
        if !tokens::bearer_is_one_word(v, &token) {
            self.counters.denied += 1;
            return challenge(401, Some("invalid_token"), "bearer_malformed");
        }

        let looks_like_jwt = token.bytes().filter(|b| *b == b'.').count() == 2;
        if (rule.jwt || rule.basic) && looks_like_jwt && !rule.providers.is_empty() {
            match tokens::verify(&mut self.api.providers, &rule.providers, &token, now, true) {
                Outcome::Valid(claims, by) => {
                    let info = self.api.verified(&claims, by);
                    self.cache_token(&material, &info, info.exp_ms, now, store);
                    return self.authorize(&info, route, remove, path);
                }
                Outcome::Fetch(i) => {
                    // No keys yet, or a kid the keys lack (rotation): wait for the key set
                    // instead of failing a token that may well be good.
                    let cid = self.jwks_call(i, now);
                    if let Some(call) = self.calls.get_mut(&cid) {
                        call.members.push(req.id);
                    }
                    let p = Pending {
                        token: Some(token.into_owned()),
                        ..Pending::new(cid, remove, path, route, false)
                    };
                    self.pending.insert(req.id, p);
                    return Step::Wait;
                }
                Outcome::Invalid(e) if !rule.introspection => {
                    // Remember a bad token briefly: each one otherwise costs a signature
                    // check, which a client could repeat at will.
                    // Not for an unknown key: the key set may change any moment.
                    let until = if matches!(e, JwtError::UnknownKid | JwtError::NoMatchingKey) {
                        now
                    } else {
                        now.saturating_add(INVALID_JWT_TTL_MS)
                    };
                    let e_deny = Entry {
                        kind: Kind::Deny,
                        fresh_until: until,
                        stale_until: until,
                        status: 401,
                        headers: Headers::default(),
                    };
                    if until > now {
                        cache::store_put(store, &digest, &e_deny, self.cache_cfg.max_entries, now);
                    }
                    self.counters.denied += 1;
                    return challenge(401, Some("invalid_token"), jwt_reason(e));
                }
                Outcome::Invalid(_) => {}
            }
        }
        if rule.introspection {
            return self.introspect(
                req.id,
                material,
                token.into_owned(),
                route,
                remove,
                path,
                now,
            );
        }
        self.counters.denied += 1;
        challenge(401, Some("invalid_token"), "token_not_a_jwt")
    }

    fn cache_token(
        &mut self,
        material: &[u8],
        info: &TokenInfo,
        until: Millis,
        now: Millis,
        store: &mut dyn SharedStore,
    ) {
        if until <= now {
            return;
        }
        let trust = now
            .saturating_add(self.cache_cfg.local_ttl_s * 1000)
            .min(until);
        self.api.tokens.put(
            material.strip_prefix(TOKEN_PREFIX).unwrap_or(material),
            TokenInfo {
                exp_ms: until,
                ..info.clone()
            },
            trust,
        );
        let entry = info.to_entry(until);
        if entry.size() as u64 <= self.cache_cfg.max_entry_bytes {
            let digest = sha(material);
            cache::store_put(store, &digest, &entry, self.cache_cfg.max_entries, now);
        }
    }

    /// Scopes and groups the route requires, then the identity headers.
    fn authorize(
        &mut self,
        info: &TokenInfo,
        route: Option<usize>,
        remove: Vec<String>,
        path: Option<String>,
    ) -> Step {
        let rule = self.api.rule(route);
        let has_scope = |s: &String| info.scopes.contains(s);
        let scopes_ok = rule.require_scopes.is_empty()
            || if rule.scopes_all {
                rule.require_scopes.iter().all(has_scope)
            } else {
                rule.require_scopes.iter().any(has_scope)
            };
        let groups_ok = match route.and_then(|i| self.routes.get(i)) {
            Some(r) if !r.require_groups.is_empty() => match r.groups_match {
                GroupsMatch::Any => r.require_groups.iter().any(|g| info.groups.contains(g)),
                GroupsMatch::All => r.require_groups.iter().all(|g| info.groups.contains(g)),
            },
            _ => true,
        };
        if !scopes_ok || !groups_ok {
            self.counters.denied += 1;
            return challenge(
                403,
                Some("insufficient_scope"),
                if scopes_ok { "groups" } else { "scopes" },
            );
        }
        self.counters.allowed += 1;
        Step::Allow(Allow {
            remove,
            set: Arc::clone(&info.identity),
            path,
            response_headers: Vec::new(),
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn introspect(
        &mut self,
        id: ReqId,
        material: Vec<u8>,
        token: String,
        route: Option<usize>,
        remove: Vec<String>,
        path: Option<String>,
        now: Millis,
    ) -> Step {
        let Some(ic) = &self.api.introspection else {
            self.counters.denied += 1;
            return challenge(401, Some("invalid_token"), "no_introspection");
        };
        let pending = Pending::new(0, remove, path, route, false);
        if let Some(&cid) = self.by_key.get(&material) {
            if let Some(call) = self.calls.get_mut(&cid) {
                call.members.push(id);
                self.pending.insert(
                    id,
                    Pending {
                        call: cid,
                        ..pending
                    },
                );
                self.counters.coalesced += 1;
                return Step::Wait;
            }
        }
        let auth = match ic.auth {
            IntrospectionAuth::Basic => ClientAuth::Basic,
            IntrospectionAuth::Post => ClientAuth::Post,
        };
        let authority = ic.authority.clone().unwrap_or_else(|| ic.cluster.clone());
        let (headers, body) = introspection::build(
            &ic.path,
            &authority,
            &token,
            &ic.client_id,
            ic.client_secret.expose(),
            auth,
        );
        let cid = self.next_call;
        self.next_call += 1;
        let callout = Callout {
            id: cid,
            cluster: ic.cluster.clone(),
            headers,
            body: Some(body),
            timeout_ms: ic.timeout_ms,
        };
        self.by_key.insert(material.clone(), cid);
        self.calls.insert(
            cid,
            Call {
                key: Some(material),
                origin: id,
                origin_browser: false,
                members: vec![id],
                driver: Driver::Req(id),
                callout: callout.clone(),
                started: now,
                purpose: Purpose::Introspection,
            },
        );
        self.pending.insert(
            id,
            Pending {
                call: cid,
                ..pending
            },
        );
        self.counters.callouts += 1;
        Step::Call(callout)
    }

    pub(super) fn on_introspection(
        &mut self,
        call: Call,
        status: u16,
        body: &[u8],
        now: Millis,
        store: &mut dyn SharedStore,
    ) -> Vec<(ReqId, Step)> {
        if let Some(k) = &call.key {
            if self.by_key.get(k) == Some(&call.callout.id) {
                self.by_key.remove(k);
            }
        }
        let Some(ic) = self.api.introspection.clone() else {
            return Vec::new();
        };
        let answer = if status == 0 || status >= 500 {
            None
        } else {
            Some(introspection::parse(status, body, &ic.groups_claim))
        };
        let mut out = Vec::new();
        match answer {
            Some(Ok(i))
                if i.active && !i.bound && i.exp.is_none_or(|e| e.saturating_mul(1000) > now) =>
            {
                let info = TokenInfo {
                    exp_ms: i.exp.map_or(u64::MAX, |e| e.saturating_mul(1000)),
                    identity: self.api.identity.headers(
                        i.sub.as_deref(),
                        i.username.as_deref(),
                        i.email.as_deref(),
                        i.name.as_deref(),
                        &i.groups,
                    ),
                    scopes: i.scopes.into(),
                    groups: i.groups.into(),
                    verified_by: None,
                };
                let until = now.saturating_add(ic.ttl_s * 1000).min(info.exp_ms);
                if let Some(k) = &call.key {
                    self.cache_token(k, &info, until, now, store);
                }
                for m in call.members {
                    if let Some(p) = self.pending.remove(&m) {
                        out.push((m, self.authorize(&info, p.route, p.remove, p.path)));
                    }
                }
            }
            Some(Ok(_)) | Some(Err(introspection::IntrospectionError::Status(400..=499))) => {
                // Inactive (revoked, expired, unknown): remembered briefly, so a flood of a
                // dead token does not become a flood of introspections.
                if let (Some(k), true) = (&call.key, ic.negative_ttl_s > 0) {
                    let until = now.saturating_add(ic.negative_ttl_s * 1000);
                    let digest = sha(k);
                    let e = Entry {
                        kind: Kind::Deny,
                        fresh_until: until,
                        stale_until: until,
                        status: 401,
                        headers: Headers::default(),
                    };
                    cache::store_put(store, &digest, &e, self.cache_cfg.max_entries, now);
                }
                for m in call.members {
                    if self.pending.remove(&m).is_some() {
                        self.counters.denied += 1;
                        out.push((m, challenge(401, Some("invalid_token"), "token_inactive")));
                    }
                }
            }
            _ => {
                self.counters.callout_errors += 1;
                for m in call.members {
                    if self.pending.remove(&m).is_some() {
                        self.counters.unavailable += 1;
                        out.push((m, unavailable("introspection_unavailable")));
                    }
                }
            }
        }
        out
    }

    /// Callouts the host's root context should dispatch now: orphaned forward-auth calls
    /// and due key-set fetches. Key sets fetched by another worker are adopted from the
    /// shared store instead of fetched again.
    pub fn background(&mut self, now: Millis, store: &mut dyn SharedStore) -> Vec<Callout> {
        let mut out = self.take_orphans(now);
        for i in 0..self.api.providers.len() {
            let Some(p) = self.api.providers.get_mut(i) else {
                continue;
            };
            let Source::Uri { refresh_ms, .. } = p.source else {
                continue;
            };
            if let Some(bytes) = store.get(&jwks_slot(i)) {
                let (at, doc) = bytes.split_at(bytes.len().min(8));
                let at = <[u8; 8]>::try_from(at).map(u64::from_le_bytes).unwrap_or(0);
                if at > p.fetched_at {
                    if let Ok(set) = crate::jwks::parse(doc) {
                        p.keys = Some(Arc::new(set));
                        p.fetched_at = at;
                        p.next_fetch = p.next_fetch.max(at.saturating_add(refresh_ms));
                    }
                }
            }
            if p.in_flight || now < p.next_fetch {
                continue;
            }
            let cid = self.jwks_call(i, now);
            if let Some(c) = self.calls.get_mut(&cid) {
                c.driver = Driver::Root;
                out.push(c.callout.clone());
            }
        }
        out
    }

    /// The key-set fetch in flight for provider `i`, or a new one for the root context to
    /// dispatch (it is orphaned until then: [`Engine::take_orphans`]).
    pub(super) fn jwks_call(&mut self, i: usize, now: Millis) -> CallId {
        if let Some((id, _)) = self
            .calls
            .iter()
            .find(|(_, c)| c.purpose == Purpose::Jwks(i) || c.purpose == Purpose::Discovery(i))
        {
            return *id;
        }
        let (cluster, authority, path, purpose) = match self.api.providers.get(i).map(|p| &p.source)
        {
            Some(Source::Uri {
                cluster,
                authority,
                path,
                discovery,
                ..
            }) => match discovery {
                Some((da, dp)) if path.is_empty() => (
                    cluster.clone(),
                    da.clone(),
                    dp.clone(),
                    Purpose::Discovery(i),
                ),
                _ => (
                    cluster.clone(),
                    authority.clone(),
                    path.clone(),
                    Purpose::Jwks(i),
                ),
            },
            _ => (
                String::new(),
                String::new(),
                String::new(),
                Purpose::Jwks(i),
            ),
        };
        if let Some(p) = self.api.providers.get_mut(i) {
            p.in_flight = true;
        }
        let id = self.next_call;
        self.next_call += 1;
        let callout = Callout {
            id,
            cluster,
            headers: vec![
                (":method".into(), "GET".into()),
                (":path".into(), path),
                (":authority".into(), authority),
                (":scheme".into(), "http".into()),
                ("accept".into(), "application/json".into()),
            ],
            body: None,
            timeout_ms: 5000,
        };
        self.calls.insert(
            id,
            Call {
                key: None,
                origin: 0,
                origin_browser: false,
                members: Vec::new(),
                driver: Driver::Orphaned,
                callout,
                started: now,
                purpose,
            },
        );
        id
    }

    /// The issuer's discovery document names the key set: remember where, and fetch it
    /// at once for whoever waits.
    pub(super) fn on_discovery(
        &mut self,
        call: Call,
        i: usize,
        status: u16,
        body: &[u8],
        now: Millis,
    ) -> Vec<(ReqId, Step)> {
        #[derive(serde::Deserialize)]
        struct Discovery {
            jwks_uri: Option<String>,
        }
        let found = (status == 200)
            .then(|| serde_json::from_slice::<Discovery>(body).ok())
            .flatten()
            .and_then(|d| d.jwks_uri)
            .and_then(|u| crate::url::split_http_uri(&u));
        let Some(p) = self.api.providers.get_mut(i) else {
            return Vec::new();
        };
        p.in_flight = false;
        match (found, &mut p.source) {
            (
                Some((a, pth)),
                Source::Uri {
                    authority, path, ..
                },
            ) => {
                *authority = a;
                *path = pth;
                let cid = self.jwks_call(i, now);
                if let Some(c) = self.calls.get_mut(&cid) {
                    c.members.extend(call.members.iter().copied());
                }
                for m in &call.members {
                    if let Some(pd) = self.pending.get_mut(m) {
                        pd.call = cid;
                    }
                }
                Vec::new()
            }
            _ => {
                self.counters.callout_errors += 1;
                p.next_fetch = now.saturating_add(5000);
                let mut out = Vec::new();
                for m in call.members {
                    if self.pending.remove(&m).is_some() {
                        self.counters.unavailable += 1;
                        out.push((m, unavailable("jwks_discovery_failed")));
                    }
                }
                out
            }
        }
    }

    pub(super) fn on_jwks(
        &mut self,
        call: Call,
        i: usize,
        status: u16,
        body: &[u8],
        now: Millis,
        store: &mut dyn SharedStore,
    ) -> Vec<(ReqId, Step)> {
        self.update_keys(i, status, body, now, store);
        // Requests that waited for this key set: verify them now, without asking again.
        let mut out = Vec::new();
        for m in call.members {
            let Some(p) = self.pending.remove(&m) else {
                continue;
            };
            if let Some(wait) = p.login {
                out.push((m, self.finish_login(m, *wait, now, false)));
                continue;
            }
            let Some(token) = p.token else { continue };
            let rule = Arc::clone(self.api.rule(p.route));
            let step = match tokens::verify(
                &mut self.api.providers,
                &rule.providers,
                &token,
                now,
                false,
            ) {
                Outcome::Valid(claims, by) => {
                    let info = self.api.verified(&claims, by);
                    self.cache_token(&token_material(&token), &info, info.exp_ms, now, store);
                    self.authorize(&info, p.route, p.remove, p.path)
                }
                Outcome::Invalid(e)
                    if self
                        .api
                        .providers
                        .get(i)
                        .is_some_and(|pr| pr.keys.is_some()) =>
                {
                    self.counters.denied += 1;
                    challenge(401, Some("invalid_token"), jwt_reason(e))
                }
                _ => {
                    self.counters.unavailable += 1;
                    unavailable("jwks_not_loaded")
                }
            };
            out.push((m, step));
        }
        out
    }

    fn update_keys(
        &mut self,
        i: usize,
        status: u16,
        body: &[u8],
        now: Millis,
        store: &mut dyn SharedStore,
    ) {
        let Some(p) = self.api.providers.get_mut(i) else {
            return;
        };
        p.in_flight = false;
        let refresh = match p.source {
            Source::Uri { refresh_ms, .. } => refresh_ms,
            _ => return,
        };
        match (status, crate::jwks::parse(body)) {
            (200, Ok(set)) => {
                p.keys = Some(Arc::new(set));
                p.fetched_at = now;
                p.next_fetch = now.saturating_add(refresh);
                let mut v = now.to_le_bytes().to_vec();
                v.extend_from_slice(body);
                store.set(&jwks_slot(i), &v);
            }
            _ => {
                // Keep the last good set; try again soon, but not in a tight loop.
                self.counters.callout_errors += 1;
                p.next_fetch = now.saturating_add(refresh.min(5000));
            }
        }
    }
}

fn jwks_slot(i: usize) -> String {
    format!("barbican.jwks.{i}")
}

pub(super) fn jwt_reason(e: crate::jwt::JwtError) -> &'static str {
    use crate::jwt::JwtError as E;
    match e {
        E::TooLong => "jwt_too_long",
        E::Malformed | E::BadHeader | E::BadPayload => "jwt_malformed",
        E::CritUnsupported | E::BadType | E::UnknownAlg | E::AlgNotAllowed => "jwt_alg_or_type",
        E::UnknownKid | E::NoMatchingKey => "jwt_unknown_key",
        E::BadSignature => "jwt_bad_signature",
        E::Expired | E::NotYetValid | E::MissingExp => "jwt_time",
        E::WrongIssuer | E::WrongAudience => "jwt_issuer_audience",
        _ => "jwt_invalid",
    }
}
