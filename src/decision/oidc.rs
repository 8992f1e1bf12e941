//! `session.mode: "oidc"` in the engine: protected routes decided from Barbican's own sealed
//! session cookie, the login redirect, the provider's return (code exchange by callout, or
//! an id_token posted by the browser), and logout. The protocol pieces are in
//! [`crate::oidc`]; the sealing and the generator in [`crate::seal`].

use super::*;
use crate::cache::Fresh;
use crate::config::{OidcConfig, OidcFlow, ProviderConfig};
use crate::oidc::{self as rp, LoginState, Rp, Session};
use crate::seal::{self, Entropy};
use crate::tokens::{self, Outcome};

/// A session as served from the per-worker cache.
#[derive(Debug, Clone)]
pub(super) struct SessionInfo {
    identity: Headers,
    /// Shared, so that serving a cached session copies no strings.
    groups: std::sync::Arc<[String]>,
    exp_ms: Millis,
}

impl Fresh for SessionInfo {
    fn is_fresh(&self, now: Millis) -> bool {
        now < self.exp_ms
    }
}

#[derive(Debug)]
pub(super) struct Oidc {
    rp: Rp,
    entropy: Entropy,
    /// The id_token's provider: an index into the api providers (after the configured ones,
    /// so no api route accepts an id_token as a bearer token).
    provider: usize,
    sessions: LocalCache<SessionInfo>,
    identity: tokens::IdentitySpec,
}

/// A login between the provider's return and the session cookie: waiting for the token
/// endpoint, or for the provider's key set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct LoginWait {
    state: LoginState,
    id_token: Option<String>,
}

const REVOKED_PREFIX: &[u8] = b"oidc-revoked\0";
/// Longest original URL carried through a login; longer ones return to the host's root.
const MAX_RETURN_URL: usize = 2048;

const BODY_LOGIN_FAILED: &str = "Login failed. Go back to the page you wanted and try again.\n";

fn material(prefix: &[u8], value: &str) -> Vec<u8> {
    let mut m = prefix.to_vec();
    m.extend_from_slice(value.as_bytes());
    m
}

/// The id_token's provider, from the session config.
pub(super) fn provider_config(o: &OidcConfig) -> ProviderConfig {
    ProviderConfig {
        name: Some(api::SESSION_PROVIDER.into()),
        issuer: o.issuer.clone(),
        audiences: vec![o.client_id.clone()],
        algorithms: o.algorithms.clone(),
        // Keys from a file stay a file source; otherwise the session's cluster reaches them.
        jwks: crate::config::JwksConfig {
            cluster: o
                .jwks
                .cluster
                .clone()
                .or_else(|| o.jwks.file.is_none().then(|| o.cluster.clone()).flatten()),
            ..o.jwks.clone()
        },
        clock_skew_s: o.clock_skew_s,
        max_token_bytes: 16_384,
        required_claims: vec!["sub".into()],
        groups_claim: o.groups_claim.clone(),
        hmac_secret: None,
        claim_headers: Default::default(),
    }
}

impl Oidc {
    pub(super) fn new(
        o: &OidcConfig,
        provider: usize,
        identity: tokens::IdentitySpec,
        local: usize,
    ) -> Option<Oidc> {
        let rp = Rp::new(o)?;
        let mut entropy = Entropy::new(o.secrets.first()?.expose().as_bytes());
        entropy.mix(&(provider as u64).to_le_bytes());
        Some(Oidc {
            rp,
            entropy,
            provider,
            sessions: LocalCache::new(local),
            identity,
        })
    }

    fn info(&self, s: &Session) -> SessionInfo {
        SessionInfo {
            identity: self.identity.headers(
                Some(&s.sub),
                s.user.as_deref(),
                s.email.as_deref(),
                s.name.as_deref(),
                &s.groups,
            ),
            groups: s.groups.as_slice().into(),
            exp_ms: s.exp.saturating_mul(1000),
        }
    }
}

/// A redirect with headers, never cached by anyone in between.
fn redirect(location: String, mut headers: Vec<(String, String)>, reason: &'static str) -> Step {
    headers.insert(0, ("location".into(), location));
    headers.push(("cache-control".into(), "no-store".into()));
    Step::Respond(Respond {
        status: 302,
        headers,
        body: String::new(),
        reason,
    })
}

fn login_failed(status: u16, headers: Vec<(String, String)>, reason: &'static str) -> Step {
    Step::Respond(Respond {
        status,
        headers,
        body: BODY_LOGIN_FAILED.into(),
        reason,
    })
}

/// A login waiting on callout `call`.
fn login_pending(call: CallId, wait: LoginWait) -> Pending {
    Pending {
        login: Some(Box::new(wait)),
        ..Pending::new(call, Vec::new(), None, None, true)
    }
}

/// What `oidc_protected` needs about the request.
pub(super) struct ProtectedCtx<'a> {
    pub route: Option<usize>,
    pub browser: bool,
    pub remove: Vec<String>,
    pub path: Option<String>,
    pub scheme: &'a str,
    pub authority: &'a str,
    pub host: &'a str,
    pub path_and_query: &'a str,
}

/// Barbican's own OIDC endpoints (`session.oidc.redirect_uri`, `logout_path`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum OwnEndpoint {
    Callback,
    Logout,
}

impl Engine {
    /// Mixes host data (per-instance entropy: clock, host randomness, ids) into the login
    /// generator. Hosts call it once after building the engine; harmless without oidc.
    pub fn seed(&mut self, data: &[u8]) {
        if let Some(o) = &mut self.oidc {
            o.entropy.mix(data);
        }
    }

    /// Whether the host must read this request's body before deciding: the browser's
    /// form_post to the redirect URI (Traefik). Nothing else ever needs a body.
    pub fn wants_body<'h>(&self, headers: &'h [crate::request::Header<'h>]) -> bool {
        let Some(o) = &self.oidc else { return false };
        if o.rp.cfg.flow != OidcFlow::FormPost {
            return false;
        }
        let v = View::read(headers, &[]);
        v.method().eq_ignore_ascii_case("POST")
            && v.path.is_some_and(|p| {
                let host = normalize_host(v.authority.unwrap_or(""));
                let path = p.split('?').next().unwrap_or(p);
                o.rp.is_callback(&host, path)
            })
    }

    /// Barbican's own endpoints in oidc mode (the redirect URI and the logout path), which
    /// come before any route rule.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn oidc_endpoint(
        &mut self,
        req: Request<'_>,
        v: &View<'_>,
        now: Millis,
        store: &mut dyn SharedStore,
        host: &str,
        match_path: &str,
        query: Option<&str>,
    ) -> Option<Step> {
        match self.own_endpoint(host, match_path)? {
            OwnEndpoint::Callback => Some(self.callback(req, v, now, query)),
            OwnEndpoint::Logout => Some(self.logout(v, now, store)),
        }
    }

    /// Which of Barbican's own OIDC endpoints a request is for, if any: these answer the
    /// browser themselves, before any rule.
    pub(super) fn own_endpoint(&self, host: &str, match_path: &str) -> Option<OwnEndpoint> {
        let o = self.oidc.as_ref()?;
        if o.rp.is_callback(host, match_path) {
            Some(OwnEndpoint::Callback)
        } else if match_path == o.rp.cfg.logout_path {
            Some(OwnEndpoint::Logout)
        } else {
            None
        }
    }

    pub(super) fn oidc_protected(
        &mut self,
        req: Request<'_>,
        v: &View<'_>,
        now: Millis,
        store: &mut dyn SharedStore,
        ctx: ProtectedCtx<'_>,
    ) -> Step {
        let Some(o) = &mut self.oidc else {
            self.counters.unavailable += 1;
            return respond(503, BODY_503, "no_session_config");
        };
        let value = rp::cookie(v.all(v.cookie, "cookie"), &o.rp.cfg.cookie.name);
        let mut found = None;
        if let Some(v) = value.filter(|v| v.len() <= rp::MAX_COOKIE_VALUE) {
            // This cache holds sessions only: the cookie value itself is the key material.
            if let Some(info) = o.sessions.get(v.as_bytes(), now) {
                self.counters.cache_hit += 1;
                found = Some(info.clone());
            } else {
                self.counters.cache_miss += 1;
                let revoked = {
                    let d = sha(&material(REVOKED_PREFIX, v));
                    cache::store_get(store, &d, self.cache_cfg.max_entries)
                        .is_some_and(|e| e.is_fresh(now))
                };
                let session = (!revoked)
                    .then(|| o.rp.sessions.open(v))
                    .flatten()
                    .and_then(|pt| Session::decode(&pt))
                    .filter(|s| s.exp.saturating_mul(1000) > now);
                if let Some(s) = session {
                    let info = o.info(&s);
                    let trust = now
                        .saturating_add(self.cache_cfg.local_ttl_s * 1000)
                        .min(info.exp_ms);
                    o.sessions.put(v.as_bytes(), info.clone(), trust);
                    found = Some(info);
                }
            }
        }
        if let Some(info) = found {
            if self.route_needs_groups(ctx.route) {
                let has: Vec<&str> = info.groups.iter().map(String::as_str).collect();
                if !self.groups_match(ctx.route, &has) {
                    self.counters.denied += 1;
                    return respond(403, BODY_403, "groups");
                }
            }
            self.counters.allowed += 1;
            return Step::Allow(Allow {
                remove: ctx.remove,
                set: info.identity,
                path: ctx.path,
                response_headers: Vec::new(),
            });
        }
        if !ctx.browser {
            self.counters.denied += 1;
            return respond(401, BODY_401, "login_required");
        }
        self.start_login(req, now, value.is_some(), &ctx)
    }

    /// The login redirect: state (sealed: return URL, nonce, PKCE verifier, binding), the
    /// binding cookie, and the authorization URL.
    fn start_login(
        &mut self,
        req: Request<'_>,
        now: Millis,
        had_cookie: bool,
        ctx: &ProtectedCtx<'_>,
    ) -> Step {
        let Some(o) = &mut self.oidc else {
            return respond(503, BODY_503, "no_session_config");
        };
        // The return URL is the request's own; its host must be one the login may return
        // to, or a forged Host header would turn the login into an open redirect.
        let mut url = format!("{}://{}{}", ctx.scheme, ctx.authority, ctx.path_and_query);
        if url.len() > MAX_RETURN_URL {
            url = format!("{}://{}/", ctx.scheme, ctx.authority);
        }
        if !o.rp.host_allowed(ctx.host) || !o.rp.may_return_to(&url) {
            self.counters.denied += 1;
            return respond(400, BODY_400, "login_host_refused");
        }
        o.entropy.mix(&req.id.to_le_bytes());
        o.entropy.mix(url.as_bytes());
        let binding = o.entropy.token(now, 18);
        let nonce = o.entropy.token(now, 18);
        let verifier = (o.rp.cfg.flow == OidcFlow::Code).then(|| o.entropy.token(now, 32));
        let state = LoginState {
            u: url,
            n: nonce.clone(),
            v: verifier.clone(),
            b: binding.clone(),
            t: now / 1000,
        };
        let fresh = o.entropy.token(now, 16);
        let sealed = o.rp.states.seal(&state.encode(), fresh.as_bytes());
        let Some(sealed) = sealed else {
            self.counters.unavailable += 1;
            return respond(500, "Internal Server Error\n", "login_state_seal");
        };
        let location = o.rp.authorization_url(
            &sealed,
            &nonce,
            verifier.as_deref().map(seal::pkce_challenge).as_deref(),
        );
        let mut headers = vec![(
            "set-cookie".to_string(),
            o.rp.set_cookie(
                &o.rp.login_cookie_name(),
                &binding,
                o.rp.cfg.login_timeout_s,
                o.rp.login_same_site(),
            ),
        )];
        if had_cookie {
            // A session cookie that did not open (tampered, expired, old secret): drop it.
            headers.push((
                "set-cookie".into(),
                o.rp.set_cookie(&o.rp.cfg.cookie.name, "", 0, o.rp.cfg.cookie.same_site),
            ));
        }
        self.counters.redirected += 1;
        redirect(location, headers, "login_redirect")
    }

    /// The provider's return to the redirect URI.
    fn callback(
        &mut self,
        req: Request<'_>,
        v: &View<'_>,
        now: Millis,
        query: Option<&str>,
    ) -> Step {
        let Some(o) = &self.oidc else {
            return respond(503, BODY_503, "no_session_config");
        };
        let clear_login = vec![(
            "set-cookie".to_string(),
            o.rp.set_cookie(&o.rp.login_cookie_name(), "", 0, o.rp.login_same_site()),
        )];
        let method = v.method();
        let pairs = match o.rp.cfg.flow {
            OidcFlow::Code if method.eq_ignore_ascii_case("GET") => {
                rp::form_pairs(query.unwrap_or(""))
            }
            OidcFlow::FormPost if method.eq_ignore_ascii_case("POST") => {
                let form = v.content_type.is_some_and(|c| {
                    c.to_ascii_lowercase()
                        .starts_with("application/x-www-form-urlencoded")
                });
                match (form, req.body.map(std::str::from_utf8)) {
                    (true, Some(Ok(b))) => rp::form_pairs(b),
                    _ => {
                        self.counters.denied += 1;
                        return login_failed(400, clear_login, "login_callback_body");
                    }
                }
            }
            _ => {
                self.counters.denied += 1;
                return respond(405, "Method Not Allowed\n", "login_callback_method");
            }
        };
        if rp::form_field(&pairs, "error").is_some() {
            // The provider refused (access_denied, login_required...): no new login from
            // here, or a user without access would loop through the provider forever.
            self.counters.denied += 1;
            return login_failed(403, clear_login, "login_refused_by_provider");
        }
        let state = rp::form_field(&pairs, "state")
            .and_then(|s| o.rp.states.open(s))
            .and_then(|pt| LoginState::decode(&pt));
        let Some(state) = state else {
            self.counters.denied += 1;
            return login_failed(400, clear_login, "login_state_invalid");
        };
        if now / 1000 > state.t.saturating_add(o.rp.cfg.login_timeout_s) {
            self.counters.denied += 1;
            return login_failed(400, clear_login, "login_expired");
        }
        // The login must come back to the browser that started it (login CSRF).
        let bound = rp::cookie(v.all(v.cookie, "cookie"), &o.rp.login_cookie_name())
            .is_some_and(|b| seal::same(b.as_bytes(), state.b.as_bytes()));
        if !bound {
            self.counters.denied += 1;
            return login_failed(400, clear_login, "login_binding");
        }
        match o.rp.cfg.flow {
            OidcFlow::FormPost => {
                let Some(id_token) = rp::form_field(&pairs, "id_token") else {
                    self.counters.denied += 1;
                    return login_failed(400, clear_login, "login_no_id_token");
                };
                let wait = LoginWait {
                    state,
                    id_token: Some(id_token.to_string()),
                };
                self.finish_login(req.id, wait, now, true)
            }
            OidcFlow::Code => {
                let (Some(code), Some(verifier)) =
                    (rp::form_field(&pairs, "code"), state.v.as_deref())
                else {
                    self.counters.denied += 1;
                    return login_failed(400, clear_login, "login_no_code");
                };
                let (headers, body) = o.rp.token_request(code, verifier);
                let id = self.next_call;
                self.next_call += 1;
                let callout = Callout {
                    id,
                    cluster: o.rp.cfg.cluster.clone().unwrap_or_default(),
                    headers,
                    body: Some(body),
                    timeout_ms: o.rp.cfg.timeout_ms,
                };
                self.calls.insert(
                    id,
                    Call {
                        key: None,
                        origin: req.id,
                        origin_browser: true,
                        members: vec![req.id],
                        driver: Driver::Req(req.id),
                        callout: callout.clone(),
                        started: now,
                        purpose: Purpose::TokenExchange,
                    },
                );
                self.pending.insert(
                    req.id,
                    login_pending(
                        id,
                        LoginWait {
                            state,
                            id_token: None,
                        },
                    ),
                );
                self.counters.callouts += 1;
                Step::Call(callout)
            }
        }
    }

    /// The token endpoint's answer to a code exchange.
    pub(super) fn on_token_response(
        &mut self,
        call: Call,
        status: u16,
        body: &[u8],
        now: Millis,
    ) -> Vec<(ReqId, Step)> {
        let mut out = Vec::new();
        for m in call.members {
            let Some(p) = self.pending.remove(&m) else {
                continue;
            };
            let Some(mut wait) = p.login.map(|b| *b) else {
                continue;
            };
            let clear = self.clear_login_cookie();
            let step = match status {
                200 => match serde_json::from_slice::<rp::TokenResponse>(body)
                    .ok()
                    .and_then(|t| t.id_token)
                {
                    Some(t) => {
                        wait.id_token = Some(t);
                        self.finish_login(m, wait, now, true)
                    }
                    None => {
                        self.counters.callout_errors += 1;
                        login_failed(502, clear, "login_token_response")
                    }
                },
                // The code was refused (used twice, expired, wrong client settings).
                400..=499 => {
                    self.counters.denied += 1;
                    login_failed(400, clear, "login_code_refused")
                }
                _ => {
                    self.counters.callout_errors += 1;
                    self.counters.unavailable += 1;
                    let mut s = respond(503, BODY_503, "login_token_endpoint_unavailable");
                    if let Step::Respond(r) = &mut s {
                        r.headers.push(("retry-after".into(), "5".into()));
                    }
                    s
                }
            };
            out.push((m, step));
        }
        out
    }

    fn clear_login_cookie(&self) -> Vec<(String, String)> {
        self.oidc
            .as_ref()
            .map(|o| {
                vec![(
                    "set-cookie".to_string(),
                    o.rp.set_cookie(&o.rp.login_cookie_name(), "", 0, o.rp.login_same_site()),
                )]
            })
            .unwrap_or_default()
    }

    /// Verifies the id_token and sets the session cookie; or waits for the key set.
    pub(super) fn finish_login(
        &mut self,
        req: ReqId,
        wait: LoginWait,
        now: Millis,
        may_fetch: bool,
    ) -> Step {
        let clear = self.clear_login_cookie();
        let Some(o) = &mut self.oidc else {
            return respond(503, BODY_503, "no_session_config");
        };
        let Some(id_token) = wait.id_token.as_deref() else {
            return login_failed(400, clear, "login_no_id_token");
        };
        let provider = o.provider;
        match tokens::verify(
            &mut self.api.providers,
            &[provider],
            id_token,
            now,
            may_fetch,
        ) {
            Outcome::Valid(claims, _) => {
                let nonce_ok = claims
                    .nonce
                    .as_deref()
                    .is_some_and(|n| seal::same(n.as_bytes(), wait.state.n.as_bytes()));
                let Some(sub) = claims.sub.clone().filter(|_| nonce_ok) else {
                    self.counters.denied += 1;
                    return login_failed(401, clear, "login_nonce");
                };
                if !o.rp.may_return_to(&wait.state.u) {
                    self.counters.denied += 1;
                    return login_failed(400, clear, "login_return_refused");
                }
                let session = Session {
                    sub,
                    user: claims.preferred_username,
                    email: claims.email,
                    name: claims.name,
                    groups: claims.groups,
                    exp: (now / 1000).saturating_add(o.rp.cfg.lifetime_s),
                };
                let fresh = o.entropy.token(now, 16);
                let sealed =
                    o.rp.sessions
                        .seal(&session.encode(), fresh.as_bytes())
                        .filter(|v| v.len() <= rp::MAX_COOKIE_VALUE);
                let Some(value) = sealed else {
                    // Too many groups for one cookie: say so rather than loop through logins.
                    self.counters.unavailable += 1;
                    return login_failed(500, clear, "session_too_large");
                };
                let mut headers = clear;
                headers.push((
                    "set-cookie".into(),
                    o.rp.set_cookie(
                        &o.rp.cfg.cookie.name,
                        &value,
                        o.rp.cfg.lifetime_s,
                        o.rp.cfg.cookie.same_site,
                    ),
                ));
                let info = o.info(&session);
                let trust = now
                    .saturating_add(self.cache_cfg.local_ttl_s * 1000)
                    .min(info.exp_ms);
                o.sessions.put(value.as_bytes(), info, trust);
                self.counters.allowed += 1;
                redirect(wait.state.u, headers, "login_done")
            }
            Outcome::Fetch(i) => {
                let cid = self.jwks_call(i, now);
                if let Some(call) = self.calls.get_mut(&cid) {
                    call.members.push(req);
                }
                self.pending.insert(req, login_pending(cid, wait));
                Step::Wait
            }
            Outcome::Invalid(e) => {
                self.counters.denied += 1;
                let reason = if self
                    .api
                    .providers
                    .get(provider)
                    .is_some_and(|p| p.keys.is_some())
                {
                    api::jwt_reason(e)
                } else {
                    "jwks_not_loaded"
                };
                login_failed(401, clear, reason)
            }
        }
    }

    /// Ends the session: the cookie is cleared, the session is marked revoked for every
    /// worker until it would have expired, and the browser goes to the provider's
    /// end-session endpoint.
    fn logout(&mut self, view: &View<'_>, now: Millis, store: &mut dyn SharedStore) -> Step {
        let Some(o) = &mut self.oidc else {
            return respond(503, BODY_503, "no_session_config");
        };
        let name = o.rp.cfg.cookie.name.clone();
        if let Some(v) = rp::cookie(view.all(view.cookie, "cookie"), &name) {
            o.sessions.remove(v.as_bytes());
            let exp =
                o.rp.sessions
                    .open(v)
                    .and_then(|pt| Session::decode(&pt))
                    .map(|s| s.exp.saturating_mul(1000));
            if let Some(exp) = exp.filter(|e| *e > now) {
                let d = sha(&material(REVOKED_PREFIX, v));
                let e = Entry {
                    kind: Kind::Deny,
                    fresh_until: exp,
                    stale_until: exp,
                    status: 401,
                    headers: Headers::default(),
                };
                cache::store_put(store, &d, &e, self.cache_cfg.max_entries, now);
            }
        }
        let clear = o.rp.set_cookie(&name, "", 0, o.rp.cfg.cookie.same_site);
        let location = o.rp.logout_location();
        redirect(location, vec![("set-cookie".into(), clear)], "logout")
    }
}

#[cfg(test)]
impl Oidc {
    pub(super) fn rp_states_open(&self, s: &str) -> Option<Vec<u8>> {
        self.rp.states.open(s)
    }
}
