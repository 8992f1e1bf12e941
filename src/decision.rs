//! The decision engine: `decide` a request, perform the callouts it asks for, feed the
//! answers to `on_callout_response`. No host calls and no clock: time comes in as `now`.
//!
//! A reader asking "why was this request denied?" starts at [`Engine::decide`].

use crate::cache::{self, Entry, Headers, Key, Kind, LocalCache, SharedStore};
use crate::config::{CacheConfig, Config, ConfigError, Dialect, GroupsMatch, Limits, Policy};
use crate::identity::is_identity_header;
use crate::idp::{ForwardAuth, Original, Verdict};
use crate::path::NormalizedPath;
use crate::request::{Header, View};
use crate::route::{self, normalize_host, normalize_path, Route};
use crate::{header, Millis};
use std::collections::HashMap;

/// The host's handle for one request (Envoy's context id).
pub type ReqId = u32;
/// Identifies one callout in flight.
pub type CallId = u64;

/// What the host must do next for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum Step {
    /// Let the request through after editing its headers.
    Allow(Allow),
    /// Answer the client directly.
    Respond(Respond),
    /// Perform this callout, then hand its answer to [`Engine::on_callout_response`].
    Call(Callout),
    /// Another request is already asking the IdP for the same credentials: pause; the
    /// answer to that callout will carry this request's step.
    Wait,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allow {
    /// Request headers to remove (client-sent identity headers), before `set`.
    pub remove: Vec<String>,
    /// Request headers to set for the upstream (shared with the cache entry they came from).
    pub set: Headers,
    /// A new `:path` when normalization changed it, so the upstream sees what was matched.
    pub path: Option<String>,
    /// Headers to add to the response to the client (`Set-Cookie` from the IdP).
    pub response_headers: Vec<(String, String)>,
}

impl Allow {
    /// The headers a host writes for the upstream: `set` without the ones the engine only
    /// holds for its own checks ([`crate::identity::HELD`]).
    pub fn upstream(&self) -> impl Iterator<Item = &(String, String)> {
        self.set
            .iter()
            .filter(|(n, _)| !crate::identity::is_held(n))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Respond {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// A stable reason code for logs; never contains request data.
    pub reason: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Callout {
    pub id: CallId,
    pub cluster: String,
    pub headers: Vec<(String, String)>,
    /// A request body (introspection's form), if any.
    pub body: Option<Vec<u8>>,
    pub timeout_ms: u64,
}

/// One request as the host sees it: its id and all headers, pseudo-headers
/// (`:method`, `:path`, `:authority`, `:scheme`) included.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub id: ReqId,
    pub headers: &'a [crate::request::Header<'a>],
    /// The connection's peer address (Envoy's `source.address`). Hosts need to supply it
    /// only when [`Engine::needs_peer`] says a rule uses it.
    pub peer: Option<std::net::IpAddr>,
    /// The request body, when [`Engine::wants_body`] asked the host for it (the browser's
    /// form_post at the end of an OIDC login); `None` otherwise.
    pub body: Option<&'a [u8]>,
}

/// Counters the host exports as metrics. Drained with [`Engine::take_counters`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    pub requests_bypass: u64,
    pub requests_protected: u64,
    pub requests_api: u64,
    pub requests_deny: u64,
    pub requests_invalid: u64,
    pub cache_hit: u64,
    pub cache_miss: u64,
    pub coalesced: u64,
    pub callouts: u64,
    pub callout_errors: u64,
    pub stale_served: u64,
    pub allowed: u64,
    pub denied: u64,
    pub redirected: u64,
    pub unavailable: u64,
}

impl Counters {
    /// Metric names (under `barbican.`) and values.
    pub fn iter(&self) -> [(&'static str, u64); 15] {
        [
            ("requests.bypass", self.requests_bypass),
            ("requests.protected", self.requests_protected),
            ("requests.api", self.requests_api),
            ("requests.deny", self.requests_deny),
            ("requests.invalid", self.requests_invalid),
            ("cache.hit", self.cache_hit),
            ("cache.miss", self.cache_miss),
            ("cache.coalesced", self.coalesced),
            ("callouts", self.callouts),
            ("callout_errors", self.callout_errors),
            ("stale_served", self.stale_served),
            ("decision.allow", self.allowed),
            ("decision.deny", self.denied),
            ("decision.redirect", self.redirected),
            ("decision.unavailable", self.unavailable),
        ]
    }
}

/// What a request waiting on a callout needs to get its own step from the shared answer.
#[derive(Debug, Clone)]
struct Pending {
    call: CallId,
    remove: Vec<String>,
    path: Option<String>,
    browser: bool,
    route: Option<usize>,
    /// An allow entry past its freshness, servable while the IdP is down.
    stale: Option<Entry>,
    /// This request's own callout headers, for when a shared answer does not fit it.
    callout: Vec<(String, String)>,
    /// api requests waiting for a key set: the token to verify once it arrives.
    token: Option<String>,
    /// An OIDC login waiting for the token endpoint or the provider's key set.
    login: Option<Box<oidc::LoginWait>>,
}

impl Pending {
    /// A request waiting on callout `call` with nothing else to carry (no stale entry, no
    /// callout of its own, no token, no login): the parts every waiter has.
    fn new(
        call: CallId,
        remove: Vec<String>,
        path: Option<String>,
        route: Option<usize>,
        browser: bool,
    ) -> Pending {
        Pending {
            call,
            remove,
            path,
            browser,
            route,
            stale: None,
            callout: Vec::new(),
            token: None,
            login: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Driver {
    /// The request whose context dispatched the callout.
    Req(ReqId),
    /// That request went away; the host's root context must dispatch it again.
    Orphaned,
    /// Dispatched by the host's root context.
    Root,
}

#[derive(Debug, Clone)]
struct Call {
    /// The session's key material (see [`Engine::key_for`]); `None` once a sign-out made
    /// the answer unfit for caching.
    key: Option<Vec<u8>>,
    /// The request the callout was built from; its answer is always that request's.
    origin: ReqId,
    origin_browser: bool,
    members: Vec<ReqId>,
    driver: Driver,
    callout: Callout,
    started: Millis,
    purpose: Purpose,
}

/// What a callout is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    ForwardAuth,
    /// Fetching provider `i`'s key set.
    Jwks(usize),
    /// Fetching provider `i`'s discovery document to find its key set.
    Discovery(usize),
    Introspection,
    /// The OIDC code exchange at the token endpoint.
    TokenExchange,
}

/// The decision engine for one worker.
#[derive(Debug)]
pub struct Engine {
    routes: Vec<Route>,
    default_policy: Policy,
    strip_extra: Vec<String>,
    limits: Limits,
    fa: Option<ForwardAuth>,
    cache_cfg: CacheConfig,
    per_path: bool,
    local: LocalCache,
    pending: HashMap<ReqId, Pending>,
    calls: HashMap<CallId, Call>,
    by_key: HashMap<Vec<u8>, CallId>,
    next_call: CallId,
    counters: Counters,
    api: api::Api,
    oidc: Option<oidc::Oidc>,
    /// The last cache key no longer needed, reused by the next [`Engine::key_for`].
    key_buf: Vec<u8>,
}

const BODY_400: &str = "Bad Request\n";
const BODY_401: &str = "Unauthorized\n";
const BODY_403: &str = "Forbidden\n";
const BODY_503: &str = "Service Unavailable\n";

impl Engine {
    /// Builds an engine from a configuration document.
    pub fn from_json(json: &[u8]) -> Result<Engine, Vec<ConfigError>> {
        Engine::new(&crate::config::parse(json)?)
    }

    /// [`Engine::from_json`], with the host reading the secrets the document names by
    /// environment variable or file.
    pub fn from_json_with(
        json: &[u8],
        read: &mut crate::config::Resolver,
    ) -> Result<Engine, Vec<ConfigError>> {
        Engine::new(&crate::config::parse_with(json, read)?)
    }

    /// Builds an engine from a parsed configuration; validates it again so no path skips it.
    pub fn new(cfg: &Config) -> Result<Engine, Vec<ConfigError>> {
        let problems = crate::config::validate(cfg);
        if !problems.is_empty() {
            return Err(problems);
        }
        let mut routes = Vec::with_capacity(cfg.routes.len());
        let mut errs = Vec::new();
        for (i, r) in cfg.routes.iter().enumerate() {
            match Route::compile(i, r) {
                Ok(r) => routes.push(r),
                Err(e) => errs.push(ConfigError {
                    path: format!("routes[{i}]"),
                    problem: e,
                }),
            }
        }
        if !errs.is_empty() {
            return Err(errs);
        }
        let session = cfg.session.as_ref();
        let cache_cfg = session.map(|s| s.cache.clone()).unwrap_or_default();
        let fa = session
            .and_then(|s| s.forward_auth.as_ref())
            .map(ForwardAuth::new);
        let mut api = api::Api::new(cfg)?;
        let oidc = match session.and_then(|s| s.oidc.as_ref()) {
            Some(o) if session.is_some_and(|s| s.mode == crate::config::SessionMode::Oidc) => {
                let i = api.providers.len();
                api.providers
                    .push(crate::tokens::Provider::new(i, &oidc::provider_config(o)));
                let local = usize::try_from(cache_cfg.local_max_entries).unwrap_or(0);
                Some(
                    oidc::Oidc::new(o, i, api.identity.clone(), local).ok_or_else(|| {
                        vec![ConfigError {
                            path: "session.oidc".into(),
                            problem: "could not be compiled".into(),
                        }]
                    })?,
                )
            }
            _ => None,
        };
        let per_path = cache_cfg.per_path.unwrap_or_else(|| {
            fa.as_ref()
                .is_some_and(|f| matches!(f.dialect, Dialect::Authelia | Dialect::Custom))
        });
        Ok(Engine {
            routes,
            default_policy: cfg.default_policy,
            // Headers mapped from claims are identity too: a client must not send them.
            strip_extra: cfg
                .strip_headers
                .iter()
                .chain(
                    cfg.jwt
                        .iter()
                        .flat_map(|j| j.providers.iter().flat_map(|p| p.claim_headers.keys())),
                )
                .map(|s| s.to_ascii_lowercase())
                .collect(),
            limits: cfg.limits.clone(),
            fa,
            per_path,
            local: LocalCache::new(usize::try_from(cache_cfg.local_max_entries).unwrap_or(0)),
            cache_cfg,
            pending: HashMap::new(),
            calls: HashMap::new(),
            by_key: HashMap::new(),
            next_call: 1,
            counters: Counters::default(),
            api,
            oidc,
            key_buf: Vec::new(),
        })
    }

    /// Whether `decide` removes every client-sent header called `name`, on every request
    /// (identity header families and configured extras), before anything is set.
    pub fn always_strips(&self, name: &str) -> bool {
        is_identity_header(name, &self.strip_extra)
    }

    /// The rule a request matches (index into the config's routes) and its policy, or why no
    /// rule is consulted: its path was refused, or it is for one of Barbican's own OIDC
    /// endpoints, which answer before any rule. For `barbican explain` and logs.
    pub fn route_of<'h>(
        &self,
        headers: &'h [Header<'h>],
    ) -> Result<(Option<&Route>, Policy), &'static str> {
        let v = View::read(headers, &self.strip_extra);
        let path = v.path.ok_or("no_path")?;
        let norm = normalize_path(path).map_err(|_| "path_refused")?;
        let host = normalize_host(v.authority.unwrap_or(""));
        match self.own_endpoint(&host, &norm.match_path) {
            Some(oidc::OwnEndpoint::Callback) => return Err("barbican_oidc_callback"),
            Some(oidc::OwnEndpoint::Logout) => return Err("barbican_oidc_logout"),
            None => {}
        }
        let idx = self.rule_for(headers, &host, &norm, v.method())?;
        let r = idx.and_then(|i| self.routes.get(i));
        Ok((r, r.map_or(self.default_policy, |r| r.policy)))
    }

    /// The rule for a request, matched on both readings of a path with `;` parameters:
    /// without them (servers that honour parameters route so: Tomcat, Jetty) and with them
    /// (nginx, Envoy's router and most others keep them in the path). Readings that pick
    /// different rules are refused (`path_ambiguous`), never guessed: `/api;x/secret` must
    /// not ride an `/api/` bypass to wherever nginx's `/` location sends it. Paths without
    /// parameters are matched once.
    fn rule_for(
        &self,
        headers: &[Header<'_>],
        host: &str,
        norm: &NormalizedPath,
        method: &str,
    ) -> Result<Option<usize>, &'static str> {
        let has = |n: &str| header(headers, n).is_some();
        let idx = route::find(&self.routes, host, &norm.match_path, method, has);
        if norm.path != norm.match_path
            && route::find(&self.routes, host, &norm.path, method, has) != idx
        {
            return Err("path_ambiguous");
        }
        Ok(idx)
    }

    /// The answer to a request with a header the engine must read that is not UTF-8
    /// (`crate::text`): 400, before any rule, like a path that cannot be normalized.
    pub fn refuse_not_text(&mut self) -> Step {
        self.counters.requests_invalid += 1;
        respond(400, BODY_400, "header_not_utf8")
    }

    /// Decides what happens to a request. Client-sent identity headers are always removed
    /// from whatever reaches the upstream, on every route.
    pub fn decide(&mut self, req: Request<'_>, now: Millis, store: &mut dyn SharedStore) -> Step {
        let headers = req.headers;
        let mut v = View::read(headers, &self.strip_extra);
        let Some(raw_path) = v.path else {
            self.counters.requests_invalid += 1;
            return respond(400, BODY_400, "no_path");
        };
        if raw_path.len() as u64 > self.limits.max_path_bytes {
            self.counters.requests_invalid += 1;
            return respond(414, "URI Too Long\n", "path_too_long");
        }
        let norm = match normalize_path(raw_path) {
            Ok(n) => n,
            Err(_) => {
                // Refused before any rule is consulted: an unnormalizable path must never
                // be compared against a bypass prefix.
                self.counters.requests_invalid += 1;
                return respond(400, BODY_400, "path_refused");
            }
        };
        let remove = std::mem::take(&mut v.identity);
        let method = v.method();
        let authority = v.authority.unwrap_or("");
        let host = normalize_host(authority);
        // Barbican's own OIDC endpoints (redirect URI, logout) come before any rule; they
        // answer the browser themselves and never reach an upstream.
        if self.oidc.is_some() {
            if let Some(step) =
                self.oidc_endpoint(req, &v, now, store, &host, &norm.match_path, norm.query)
            {
                return step;
            }
        }
        let idx = match self.rule_for(headers, &host, &norm, method) {
            Ok(idx) => idx,
            Err(why) => {
                self.counters.requests_invalid += 1;
                return respond(400, BODY_400, why);
            }
        };
        let route = idx.and_then(|i| self.routes.get(i));
        let policy = route.map_or(self.default_policy, |r| r.policy);
        // A path normalization left alone is borrowed from the request, and so is the
        // target: no copy of it on most requests.
        let pq = match norm.path {
            std::borrow::Cow::Borrowed(_) => std::borrow::Cow::Borrowed(raw_path),
            std::borrow::Cow::Owned(_) => std::borrow::Cow::Owned(norm.path_and_query()),
        };
        let path = (pq != raw_path).then(|| pq.to_string());

        // Signing out ends the session whatever the route: drop its cached decision before
        // the request reaches the IdP, so no worker answers from it afterwards, and make sure
        // no answer computed before the sign-out is stored after it.
        let signing_out = self
            .fa
            .as_ref()
            .is_some_and(|fa| fa.is_sign_out(&norm.match_path, norm.query));
        if signing_out {
            if let Some(key) = self.key_for(Vec::new(), &v, &host, method, &norm.match_path) {
                self.local.remove(&key);
                cache::store_remove(store, &sha(&key), self.cache_cfg.max_entries);
                if let Some(cid) = self.by_key.remove(&key) {
                    if let Some(call) = self.calls.get_mut(&cid) {
                        call.key = None;
                    }
                }
            }
        }

        match policy {
            Policy::Bypass => {
                self.counters.requests_bypass += 1;
                self.counters.allowed += 1;
                Step::Allow(Allow {
                    remove,
                    path,
                    ..Allow::default()
                })
            }
            Policy::Deny => {
                self.counters.requests_deny += 1;
                self.counters.denied += 1;
                respond(403, BODY_403, "route_deny")
            }
            Policy::Api => {
                self.counters.requests_api += 1;
                if route.is_some_and(|r| r.allow_cors_preflight) && is_preflight(&v) {
                    self.counters.allowed += 1;
                    return Step::Allow(Allow {
                        remove,
                        path,
                        ..Allow::default()
                    });
                }
                self.api_request(req, &v, now, store, idx, remove, path, norm.query)
            }
            Policy::Protected => {
                self.counters.requests_protected += 1;
                if route.is_some_and(|r| r.allow_cors_preflight) && is_preflight(&v) {
                    self.counters.allowed += 1;
                    return Step::Allow(Allow {
                        remove,
                        path,
                        ..Allow::default()
                    });
                }
                let browser = is_browser(&v);
                if self.oidc.is_some() {
                    let scheme = request_scheme(&v);
                    let ctx = oidc::ProtectedCtx {
                        route: idx,
                        browser,
                        remove,
                        path,
                        scheme,
                        authority,
                        host: &host,
                        path_and_query: &pq,
                    };
                    return self.oidc_protected(req, &v, now, store, ctx);
                }
                // A sign-out's own answer is never cached or shared: the session is ending.
                let key = if signing_out {
                    None
                } else {
                    let buf = std::mem::take(&mut self.key_buf);
                    self.key_for(buf, &v, &host, method, &norm.match_path)
                };
                let ctx = Ctx {
                    route: idx,
                    browser,
                    remove,
                    path,
                    method,
                    authority,
                    path_and_query: &pq,
                };
                self.protected(req, &v, now, store, key, ctx)
            }
        }
    }

    fn protected(
        &mut self,
        req: Request<'_>,
        v: &View<'_>,
        now: Millis,
        store: &mut dyn SharedStore,
        key: Option<Vec<u8>>,
        ctx: Ctx<'_>,
    ) -> Step {
        let headers = req.headers;
        let Some(fa) = &self.fa else {
            self.counters.unavailable += 1;
            return respond(503, BODY_503, "no_session_config");
        };
        let cred_len = v.cookie.bytes + v.authorization.bytes;
        if cred_len as u64 > self.limits.max_credential_bytes {
            self.counters.requests_invalid += 1;
            return respond(
                431,
                "Request Header Fields Too Large\n",
                "credentials_too_large",
            );
        }
        let Ctx {
            route,
            browser,
            remove,
            path,
            ..
        } = ctx;
        let mut stale = None;
        if let Some(k) = &key {
            if let Some(e) = self.local.get(k, now).filter(|e| answers(e, browser)) {
                self.counters.cache_hit += 1;
                let e = e.clone();
                let step = self.apply(&e, route, remove, path, browser, Vec::new());
                if let Some(k) = key {
                    self.key_buf = k;
                }
                return step;
            }
            let digest = sha(k);
            if let Some(e) = cache::store_get(store, &digest, self.cache_cfg.max_entries) {
                if e.is_fresh(now) && answers(&e, browser) {
                    self.counters.cache_hit += 1;
                    let trust = now
                        .saturating_add(self.cache_cfg.local_ttl_s * 1000)
                        .min(e.fresh_until);
                    self.local.put(k, e.clone(), trust);
                    return self.apply(&e, route, remove, path, browser, Vec::new());
                }
                if e.is_servable_stale(now) {
                    stale = Some(e);
                }
            }
        }
        self.counters.cache_miss += 1;
        let scheme = request_scheme(v);
        let original = Original {
            method: ctx.method,
            scheme,
            authority: ctx.authority,
            path_and_query: ctx.path_and_query,
            headers,
        };
        let callout_headers = fa.build(&original);
        let cluster = fa.cluster.clone();
        let timeout_ms = fa.timeout_ms;
        let mut pending = Pending {
            stale,
            callout: callout_headers.clone(),
            ..Pending::new(0, remove, path, route, browser)
        };
        if let Some(cid) = key.as_deref().and_then(|k| self.by_key.get(k)).copied() {
            if let Some(call) = self.calls.get_mut(&cid) {
                call.members.push(req.id);
                pending.call = cid;
                self.pending.insert(req.id, pending);
                self.counters.coalesced += 1;
                return Step::Wait;
            }
        }
        let id = self.next_call;
        self.next_call += 1;
        let callout = Callout {
            id,
            cluster,
            headers: callout_headers.clone(),
            body: None,
            timeout_ms,
        };
        if let Some(k) = &key {
            self.by_key.insert(k.clone(), id);
        }
        self.calls.insert(
            id,
            Call {
                key,
                origin: req.id,
                origin_browser: browser,
                members: vec![req.id],
                driver: Driver::Req(req.id),
                callout: callout.clone(),
                started: now,
                purpose: Purpose::ForwardAuth,
            },
        );
        pending.call = id;
        self.pending.insert(req.id, pending);
        self.counters.callouts += 1;
        Step::Call(callout)
    }

    /// The cache key material: the session cookies, the Authorization header, the host
    /// (when decisions are per host) and the method and path (when per path). The per-worker
    /// cache compares it whole; the shared store names entries by its SHA-256. `None` when the
    /// request carries no credentials: the IdP's answer to an anonymous request (a login
    /// redirect naming its URL) is specific to that request and is never shared.
    ///
    /// A request with one session cookie (nearly all) needs no list of them, and the key is
    /// written into the buffer the last cache hit gave back (`key_buf`): on a cached request
    /// this allocates nothing.
    fn key_for(
        &self,
        mut m: Vec<u8>,
        v: &View<'_>,
        host: &str,
        method: &str,
        match_path: &str,
    ) -> Option<Vec<u8>> {
        let fa = self.fa.as_ref()?;
        // One Cookie header with one session pair (nearly every request) is found by a plain
        // loop; anything more takes the sorted list.
        let mut one = None;
        let mut more = v.cookie.count > 1;
        if v.cookie.count == 1 {
            for raw in crate::ascii::split(v.cookie.first.unwrap_or(""), b';') {
                if let Some(kv) = fa.session_pair(raw) {
                    if one.is_some() {
                        more = true;
                        break;
                    }
                    one = Some(kv);
                }
            }
        }
        let list = match more {
            true => fa.session_cookies(v.all(v.cookie, "cookie")),
            false => Vec::new(),
        };
        let auth = v.authorization.first;
        if one.is_none() && list.is_empty() && auth.is_none() {
            return None;
        }
        let one = one.filter(|_| !more);
        // Unambiguous: each part ends in NUL, which no header value can contain.
        m.clear();
        if self.cache_cfg.per_host {
            m.extend_from_slice(host.as_bytes());
        }
        m.push(0);
        if self.per_path {
            m.extend_from_slice(method.as_bytes());
            m.push(b' ');
            m.extend_from_slice(match_path.as_bytes());
        }
        m.push(0);
        for c in list.iter().chain(one.as_ref()) {
            m.extend_from_slice(c.as_bytes());
            m.push(0);
        }
        m.push(0);
        if let Some(a) = auth {
            m.extend_from_slice(a.as_bytes());
        }
        Some(m)
    }

    /// Turns a (cached or fresh) decision into this request's step.
    fn apply(
        &mut self,
        e: &Entry,
        route: Option<usize>,
        remove: Vec<String>,
        path: Option<String>,
        browser: bool,
        response_headers: Vec<(String, String)>,
    ) -> Step {
        match e.kind {
            Kind::Allow => {
                if !self.groups_ok(route, &e.headers) {
                    self.counters.denied += 1;
                    return respond(403, BODY_403, "groups");
                }
                self.counters.allowed += 1;
                Step::Allow(Allow {
                    remove,
                    set: Headers::clone(&e.headers),
                    path,
                    response_headers,
                })
            }
            Kind::Deny => self.deny(e.status, &e.headers, browser),
        }
    }

    /// A denial from the IdP. Browsers get its redirect; API clients and XHR get 401, since
    /// they cannot follow a login page (authelia#648, authentik#10057).
    fn deny(&mut self, status: u16, headers: &[(String, String)], browser: bool) -> Step {
        if (300..400).contains(&status) {
            if browser {
                self.counters.redirected += 1;
                return Step::Respond(Respond {
                    status,
                    headers: headers.to_vec(),
                    body: String::new(),
                    reason: "login_redirect",
                });
            }
            self.counters.denied += 1;
            return respond(401, BODY_401, "login_required");
        }
        self.counters.denied += 1;
        let body = if status == 401 { BODY_401 } else { BODY_403 };
        Step::Respond(Respond {
            status,
            headers: headers.to_vec(),
            body: body.into(),
            reason: "idp_denied",
        })
    }

    fn groups_ok(&self, route: Option<usize>, identity: &[(String, String)]) -> bool {
        if !self.route_needs_groups(route) {
            return true;
        }
        let Some(fa) = &self.fa else {
            return self.groups_match(route, &[]);
        };
        let has: Vec<&str> = fa.groups(identity).collect();
        self.groups_match(route, &has)
    }

    /// Whether the route has `require_groups` (so a decision needs the user's groups).
    fn route_needs_groups(&self, route: Option<usize>) -> bool {
        route
            .and_then(|i| self.routes.get(i))
            .is_some_and(|r| !r.require_groups.is_empty())
    }

    /// Whether a user in groups `has` meets the route's `require_groups`.
    fn groups_match(&self, route: Option<usize>, has: &[&str]) -> bool {
        let Some(r) = route.and_then(|i| self.routes.get(i)) else {
            return true;
        };
        if r.require_groups.is_empty() {
            return true;
        }
        match r.groups_match {
            GroupsMatch::Any => r.require_groups.iter().any(|g| has.contains(&g.as_str())),
            GroupsMatch::All => r.require_groups.iter().all(|g| has.contains(&g.as_str())),
        }
    }

    /// Hands the IdP's answer to callout `id` over. `status` 0 means the host could not
    /// dispatch or reach it (Envoy itself answers 503 on connect failure and 504 on timeout).
    /// Returns the step for every request that waited on it, the caller's own included.
    pub fn on_callout_response(
        &mut self,
        id: CallId,
        status: u16,
        headers: &[(String, String)],
        now: Millis,
        store: &mut dyn SharedStore,
    ) -> Vec<(ReqId, Step)> {
        self.on_callout_body(id, status, headers, &[], now, store)
    }

    /// [`Engine::on_callout_response`] with the answer's body (key sets and introspection
    /// answers are read from it).
    pub fn on_callout_body(
        &mut self,
        id: CallId,
        status: u16,
        headers: &[(String, String)],
        body: &[u8],
        now: Millis,
        store: &mut dyn SharedStore,
    ) -> Vec<(ReqId, Step)> {
        let Some(call) = self.calls.remove(&id) else {
            return Vec::new();
        };
        match call.purpose {
            Purpose::ForwardAuth => {}
            Purpose::Jwks(i) => return self.on_jwks(call, i, status, body, now, store),
            Purpose::Discovery(i) => return self.on_discovery(call, i, status, body, now),
            Purpose::Introspection => return self.on_introspection(call, status, body, now, store),
            Purpose::TokenExchange => return self.on_token_response(call, status, body, now),
        }
        if let Some(k) = &call.key {
            if self.by_key.get(k) == Some(&id) {
                self.by_key.remove(k);
            }
        }
        let verdict = match &self.fa {
            Some(fa) => fa.interpret(status, headers),
            None => Verdict::Unavailable,
        };
        let c = self.cache_cfg.clone();
        // Cache what may be reused, and prepare the allow entry the members are served from.
        let mut allow = None;
        match &verdict {
            Verdict::Allow {
                identity,
                set_cookies,
                cacheable,
                not_after,
            } => {
                let not_after = not_after.unwrap_or(u64::MAX);
                let fresh = now.saturating_add(c.ttl_s * 1000).min(not_after);
                // Groups rules read the groups header from the entry, forwarded or not.
                let hold = self
                    .routes
                    .iter()
                    .any(|r| !r.require_groups.is_empty())
                    .then(|| self.fa.as_ref().and_then(|f| f.groups_header()))
                    .flatten();
                let entry = Entry {
                    kind: Kind::Allow,
                    fresh_until: fresh,
                    stale_until: fresh.saturating_add(c.stale_grace_s * 1000).min(not_after),
                    status: 200,
                    headers: self
                        .api
                        .identity
                        .forward
                        .apply(identity.clone(), hold)
                        .into(),
                };
                if *cacheable && fresh > now {
                    if let Some(k) = &call.key {
                        self.store_entry(k, &entry, now, store);
                    }
                }
                let cookies: Vec<(String, String)> = set_cookies
                    .iter()
                    .map(|v| ("set-cookie".into(), v.clone()))
                    .collect();
                allow = Some((entry, cookies));
            }
            Verdict::Deny {
                status,
                headers,
                cacheable,
            } => {
                if *cacheable && c.negative_ttl_s > 0 {
                    if let Some(k) = &call.key {
                        let fresh = now.saturating_add(c.negative_ttl_s * 1000);
                        let e = Entry {
                            kind: Kind::Deny,
                            fresh_until: fresh,
                            stale_until: fresh,
                            status: *status,
                            headers: headers.as_slice().into(),
                        };
                        self.store_entry(k, &e, now, store);
                    }
                }
            }
            Verdict::Unavailable => self.counters.callout_errors += 1,
        }
        let mut out = Vec::with_capacity(call.members.len());
        for m in call.members {
            let Some(p) = self.pending.remove(&m) else {
                continue;
            };
            // The answer was given for the origin's request. Others that waited on it get it
            // only where it is about the session alone — what the cache would serve them too.
            // A skip-path allow, a login redirect naming the origin's URL, a Set-Cookie or an
            // XHR's 401 belong to one request: those waiters ask for themselves.
            if m != call.origin && !shareable(&verdict, p.browser, call.origin_browser) {
                self.reissue(m, p, now);
                continue;
            }
            let step = match (&verdict, &allow) {
                (
                    Verdict::Deny {
                        status, headers, ..
                    },
                    _,
                ) => self.deny(*status, headers, p.browser),
                (Verdict::Allow { .. }, Some((entry, cookies))) => {
                    self.apply(entry, p.route, p.remove, p.path, p.browser, cookies.clone())
                }
                _ => self.unavailable(p, now),
            };
            out.push((m, step));
        }
        out
    }

    /// Gives a waiting request a callout of its own, dispatched by the host's root context
    /// (see [`Engine::take_orphans`]): the context that received the shared answer may end
    /// before a new answer could reach it.
    fn reissue(&mut self, m: ReqId, mut p: Pending, now: Millis) {
        let Some(fa) = &self.fa else { return };
        let id = self.next_call;
        self.next_call += 1;
        let callout = Callout {
            id,
            cluster: fa.cluster.clone(),
            headers: p.callout.clone(),
            body: None,
            timeout_ms: fa.timeout_ms,
        };
        self.calls.insert(
            id,
            Call {
                key: None,
                origin: m,
                origin_browser: p.browser,
                members: vec![m],
                driver: Driver::Orphaned,
                callout,
                started: now,
                purpose: Purpose::ForwardAuth,
            },
        );
        p.call = id;
        self.pending.insert(m, p);
        self.counters.callouts += 1;
    }

    /// The IdP could not decide: serve a recently valid allow within the grace window,
    /// otherwise 503. Never fail open.
    fn unavailable(&mut self, p: Pending, now: Millis) -> Step {
        match p.stale {
            Some(e) if e.is_servable_stale(now) => {
                self.counters.stale_served += 1;
                self.apply(&e, p.route, p.remove, p.path, p.browser, Vec::new())
            }
            _ => {
                self.counters.unavailable += 1;
                Step::Respond(Respond {
                    status: 503,
                    headers: vec![("retry-after".into(), "5".into())],
                    body: BODY_503.into(),
                    reason: "idp_unavailable",
                })
            }
        }
    }

    fn store_entry(&mut self, key: &[u8], e: &Entry, now: Millis, store: &mut dyn SharedStore) {
        if e.size() as u64 > self.cache_cfg.max_entry_bytes {
            return;
        }
        let trust = now
            .saturating_add(self.cache_cfg.local_ttl_s * 1000)
            .min(e.fresh_until);
        self.local.put(key, e.clone(), trust);
        let digest = sha(key);
        cache::store_put(store, &digest, e, self.cache_cfg.max_entries, now);
    }

    /// The request went away (client closed, stream reset). If it was driving a callout that
    /// others wait on, that callout becomes orphaned and [`Engine::take_orphans`] returns it.
    pub fn cancel(&mut self, id: ReqId) {
        // Every request ends here; most never waited, and hashing the id costs more than
        // the check.
        if self.pending.is_empty() {
            return;
        }
        let Some(p) = self.pending.remove(&id) else {
            return;
        };
        let Some(call) = self.calls.get_mut(&p.call) else {
            return;
        };
        call.members.retain(|m| *m != id);
        // A key-set fetch goes on without waiters: the provider still needs its keys.
        if call.members.is_empty()
            && !matches!(call.purpose, Purpose::Jwks(_) | Purpose::Discovery(_))
        {
            if let Some(call) = self.calls.remove(&p.call) {
                if let Some(k) = call.key {
                    if self.by_key.get(&k) == Some(&p.call) {
                        self.by_key.remove(&k);
                    }
                }
            }
        } else if call.driver == Driver::Req(id) {
            call.driver = Driver::Orphaned;
        }
    }

    /// Callouts whose driving request went away while others wait: the host dispatches them
    /// again from a context that lives on (Envoy's root context, on its tick).
    pub fn take_orphans(&mut self, now: Millis) -> Vec<Callout> {
        let mut out = Vec::new();
        for call in self.calls.values_mut() {
            if call.driver == Driver::Orphaned {
                call.driver = Driver::Root;
                call.started = now;
                out.push(call.callout.clone());
            }
        }
        out
    }

    /// Callouts the host never answered (well past their timeout) are treated as failed:
    /// waiting requests get a stale allow or 503 instead of hanging.
    pub fn expire(&mut self, now: Millis) -> Vec<(ReqId, Step)> {
        let overdue: Vec<CallId> = self
            .calls
            .iter()
            .filter(|(_, c)| {
                now.saturating_sub(c.started) > c.callout.timeout_ms.saturating_add(2000)
            })
            .map(|(id, _)| *id)
            .collect();
        let mut out = Vec::new();
        for id in overdue {
            out.extend(self.on_callout_response(id, 0, &[], now, &mut NoStore));
        }
        out
    }

    /// Counters since the last call.
    pub fn take_counters(&mut self) -> Counters {
        std::mem::take(&mut self.counters)
    }

    /// Requests currently waiting on callouts (for tests and stats).
    pub fn waiting(&self) -> usize {
        self.pending.len()
    }
}

/// SHA-256 of key material: the shared store's name for a decision.
fn sha(material: &[u8]) -> Key {
    let d = ring::digest::digest(&ring::digest::SHA256, material);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref().get(..32).unwrap_or(&[0; 32]));
    out
}

/// Whether an answer given for one request may serve another that waited on the same
/// credentials.
fn shareable(v: &Verdict, browser: bool, origin_browser: bool) -> bool {
    match v {
        Verdict::Allow { cacheable, .. } => *cacheable,
        Verdict::Deny {
            cacheable, status, ..
        } => *cacheable && (*status != 401 || browser == origin_browser),
        Verdict::Unavailable => true,
    }
}

/// The scheme the client used: the first X-Forwarded-Proto when it says http or https (a
/// proxy in front terminated TLS), else `:scheme`.
fn request_scheme<'a>(v: &View<'a>) -> &'a str {
    v.forwarded_proto
        .map(|v| crate::ascii::split_once(v, b',').map_or(v, |(first, _)| first))
        .map(str::trim_ascii)
        .filter(|s| *s == "http" || *s == "https")
        .or(v.scheme)
        .unwrap_or("http")
}

/// What `protected` needs to know about the request beyond its headers.
struct Ctx<'a> {
    route: Option<usize>,
    browser: bool,
    remove: Vec<String>,
    path: Option<String>,
    method: &'a str,
    authority: &'a str,
    path_and_query: &'a str,
}

/// Whether a cached decision may answer this request. A cached 401 answered an API client
/// (Authelia answers browsers with a login redirect instead): a browser must ask again.
fn answers(e: &Entry, browser: bool) -> bool {
    !(e.kind == Kind::Deny && e.status == 401 && browser)
}

/// A store that holds nothing (failure paths never write).
struct NoStore;
impl SharedStore for NoStore {
    fn get(&self, _: &str) -> Option<Vec<u8>> {
        None
    }
    fn set(&mut self, _: &str, _: &[u8]) {}
}

fn respond(status: u16, body: &str, reason: &'static str) -> Step {
    Step::Respond(Respond {
        status,
        headers: Vec::new(),
        body: body.into(),
        reason,
    })
}

fn is_preflight(v: &View<'_>) -> bool {
    v.method().eq_ignore_ascii_case("OPTIONS") && v.origin.is_some() && v.preflight_method.is_some()
}

/// A browser navigation that can follow a login redirect: GET/HEAD, not XHR, and asking for
/// HTML. Everything else gets 401.
fn is_browser(v: &View<'_>) -> bool {
    let method = v.method();
    (method.eq_ignore_ascii_case("GET") || method.eq_ignore_ascii_case("HEAD"))
        && v.requested_with.is_none()
        && v.accept.is_some_and(|a| {
            a.as_bytes()
                .windows(9)
                .any(|w| w.eq_ignore_ascii_case(b"text/html"))
        })
}

mod api;
#[cfg(test)]
mod api_tests;
mod oidc;
#[cfg(test)]
mod oidc_tests;
#[cfg(test)]
mod tests;
