//! The whole engine: one of several configurations (each forward-auth dialect, api tokens by
//! key set / discovery / introspection, native OIDC by code and by form_post), fed a sequence
//! of random requests, random answers to the callouts it asks for (status, headers, and a
//! body that is either arbitrary bytes or a well-formed key set, discovery document,
//! introspection or token answer with a genuinely signed token), clock ticks and cancels.
//! Cookies the engine sets go into a jar the next requests may send, and the state and nonce
//! of a login redirect can be echoed back at the callback, so logins can complete.
//!
//! Oracles on every step: a request whose path is refused or whose rule is `deny` is never
//! allowed; an allowed request has every client-sent identity header removed.
#![no_main]
// Inputs are built once per run and dropped; their variants' sizes do not matter.
#![allow(clippy::large_enum_variant)]
use arbitrary::Arbitrary;
use barbican::config::Policy;
use barbican::{Callout, Engine, MemStore, Request, Step};
use barbican_fuzz::{header_list, keys, Name, TokenSpec, AUD, ISS, NOW_MS, NOW_S};
use libfuzzer_sys::fuzz_target;
use serde_json::json;
use std::collections::HashMap;

fn configs() -> Vec<serde_json::Value> {
    let routes = json!([
        {"match": {"path_prefix": "/outpost.goauthentik.io/"}, "policy": "bypass"},
        {"match": {"path_prefix": "/public/"}, "policy": "bypass"},
        {"match": {"path_prefix": "/admin/"}, "policy": "protected", "require_groups": ["admins", "ops"]},
        {"match": {"path_prefix": "/ops/"}, "policy": "protected", "require_groups": ["admins", "ops"], "groups_match": "all"},
        {"match": {"path_prefix": "/internal/"}, "policy": "deny"},
        {"match": {"path_regex": "/v[0-9]+/.*"}, "policy": "api", "require_scopes": ["read"]},
        {"match": {"path_prefix": "/opaque/"}, "policy": "api", "accept": ["introspection"]},
        {"match": {"path_prefix": "/cors/"}, "policy": "protected", "allow_cors_preflight": true},
        {"match": {"host": "*.lan", "path_prefix": "/lan/", "methods": ["GET"], "headers": ["x-key"]}, "policy": "bypass"}
    ]);
    let jwt = json!({"providers": [
        {"issuer": ISS, "audiences": [AUD], "jwks": {"uri": "http://idp.test/jwks", "cluster": "idp"},
         "claim_headers": {"x-tenant": "tenant"}},
        {"issuer": "http://other.test/", "audiences": [AUD], "jwks": {"cluster": "idp"}}
    ]});
    let introspection = json!({"cluster": "idp", "path": "/introspect", "client_id": "c",
                               "client_secret": "s", "ttl_s": 60, "negative_ttl_s": 5});
    let fa = |dialect: &str| {
        let mut f = json!({"dialect": dialect, "cluster": "idp", "timeout_ms": 500});
        if dialect == "custom" {
            f["path"] = json!("/auth");
            f["copy_headers"] = json!(["x-user", "x-groups", "x-id-*"]);
            f["groups_header"] = json!("x-groups");
            f["success_statuses"] = json!([200, 204]);
        }
        json!({
            "session": {"mode": "forward_auth", "forward_auth": f,
                        "cache": {"ttl_s": 60, "negative_ttl_s": 5, "stale_grace_s": 120,
                                  "local_ttl_s": 5, "local_max_entries": 64, "max_entries": 256}},
            "jwt": jwt, "introspection": introspection, "routes": routes,
            "default_policy": "protected", "strip_headers": ["X-Trusted-User"],
            "trusted_proxies": ["10.0.0.0/8"]
        })
    };
    let oidc = |flow: &str, jwks: serde_json::Value| {
        let mut o = json!({
            "issuer": ISS, "client_id": AUD, "flow": flow,
            "authorization_endpoint": "http://idp.test/auth",
            "end_session_endpoint": "http://idp.test/session/end",
            "post_logout_redirect_uri": "https://app.lan/bye",
            "redirect_uri": "https://app.lan/.barbican/callback",
            "cookie": {"domain": "lan"}, "jwks": jwks, "cluster": "idp",
            "secrets": ["0123456789abcdef0123456789abcdef-current"],
            "scopes": ["openid", "groups"]
        });
        if flow == "code" {
            o["client_secret"] = json!("client-secret");
            o["token_endpoint"] = json!("http://idp.test:9000/token");
        }
        json!({"session": {"mode": "oidc", "oidc": o}, "routes": routes,
               "jwt": {"providers": [jwt["providers"][0]]}, "introspection": introspection,
               "default_policy": "protected"})
    };
    vec![
        fa("authentik"),
        fa("authelia"),
        fa("oauth2-proxy"),
        fa("custom"),
        json!({"jwt": jwt, "introspection": introspection, "default_policy": "deny",
               "routes": routes.as_array().map(|r| r.iter().filter(|r| r["policy"] != "protected").cloned().collect::<Vec<_>>())}),
        oidc("code", json!({"cluster": "idp"})),
        oidc("form_post", json!({"inline": keys().jwks()})),
    ]
}

#[derive(Arbitrary, Debug)]
enum PathChoice {
    Known(u8),
    Own(String),
    Callback {
        echo_state: bool,
        code: String,
        extra: String,
    },
    Logout,
}

const PATHS: &[&str] = &[
    "/",
    "/public/x",
    "/admin/x",
    "/ops/",
    "/internal/x",
    "/v1/users",
    "/opaque/x",
    "/cors/x",
    "/lan/x",
    "/outpost.goauthentik.io/sign_out",
    "/oauth2/sign_out",
    "/public/../admin/x",
    "/public/%2e%2e/internal/x",
    "/api%2fx",
    "/?X-authentik-auth-callback=true",
    "/x?authentik_sign_out=1",
];

#[derive(Arbitrary, Debug)]
enum Auth {
    None,
    Bearer(TokenSpec),
    Own(String),
}

#[derive(Arbitrary, Debug)]
struct Req {
    method: Name,
    host: Option<String>,
    path: PathChoice,
    browser: bool,
    jar: bool,
    cookie: Option<String>,
    auth: Auth,
    extra: Vec<(Name, String)>,
    peer: Option<[u8; 4]>,
    form: Option<Form>,
}

#[derive(Arbitrary, Debug)]
enum Form {
    Raw(Vec<u8>),
    IdToken { echo_state: bool, token: TokenSpec },
}

#[derive(Arbitrary, Debug)]
enum Body {
    Raw(Vec<u8>),
    Jwks,
    Discovery(bool),
    Introspection {
        active: bool,
        sub: Option<String>,
        scope: Option<String>,
        exp: i32,
        groups: Vec<String>,
    },
    Token(TokenSpec),
    Empty,
}

#[derive(Arbitrary, Debug)]
enum Op {
    Request(Box<Req>),
    Answer {
        which: u8,
        status: u16,
        headers: Vec<(Name, String)>,
        body: Body,
    },
    Tick(u16),
    Cancel(u8),
}

#[derive(Arbitrary, Debug)]
struct Input {
    config: u8,
    ops: Vec<Op>,
}

struct World {
    engine: Engine,
    store: MemStore,
    now: u64,
    next_id: u32,
    calls: Vec<Callout>,
    requests: HashMap<u32, Vec<(String, String)>>,
    jar: HashMap<String, String>,
    state: Option<String>,
    nonce: Option<String>,
}

impl World {
    fn check(&mut self, id: u32, step: Step) {
        let headers = self.requests.get(&id).cloned().unwrap_or_default();
        match &step {
            Step::Allow(a) => {
                match self
                    .engine
                    .route_of(&barbican::request::borrow_all(&headers))
                {
                    Ok((_, policy)) => assert_ne!(policy, Policy::Deny, "allowed on a deny rule"),
                    Err(why) => panic!("allowed a request whose path was refused ({why})"),
                }
                for (n, _) in &headers {
                    if !n.starts_with(':') && self.engine.always_strips(n) {
                        assert!(a.remove.contains(n), "client identity header {n} kept");
                    }
                }
                self.take_cookies(&a.response_headers);
            }
            Step::Respond(r) => {
                self.take_cookies(&r.headers);
                for (n, v) in &r.headers {
                    if n.eq_ignore_ascii_case("location") {
                        if let Some((_, q)) = v.split_once('?') {
                            for kv in q.split('&') {
                                if let Some(s) = kv.strip_prefix("state=") {
                                    self.state = Some(s.to_string());
                                }
                                if let Some(s) = kv.strip_prefix("nonce=") {
                                    self.nonce = Some(s.to_string());
                                }
                            }
                        }
                    }
                }
            }
            Step::Call(c) => self.calls.push(c.clone()),
            Step::Wait => {}
        }
    }

    fn take_cookies(&mut self, headers: &[(String, String)]) {
        for (n, v) in headers {
            if n.eq_ignore_ascii_case("set-cookie") {
                if let Some((k, val)) = v.split(';').next().and_then(|kv| kv.split_once('=')) {
                    if self.jar.len() < 16 {
                        self.jar.insert(k.to_string(), val.to_string());
                    }
                }
            }
        }
    }

    fn request(&mut self, r: &Req) {
        let id = self.next_id;
        self.next_id += 1;
        let path = match &r.path {
            PathChoice::Known(i) => PATHS[usize::from(*i) % PATHS.len()].to_string(),
            PathChoice::Own(p) => p.clone(),
            PathChoice::Callback {
                echo_state,
                code,
                extra,
            } => {
                let st = if *echo_state {
                    self.state.clone().unwrap_or_default()
                } else {
                    extra.clone()
                };
                format!("/.barbican/callback?code={code}&state={st}&{extra}")
            }
            PathChoice::Logout => "/.barbican/logout".into(),
        };
        let mut h = vec![
            (":method".to_string(), r.method.get()),
            (":path".to_string(), path),
            (":scheme".to_string(), "https".to_string()),
        ];
        if let Some(host) = &r.host {
            h.push((":authority".into(), host.clone()));
        } else {
            h.push((":authority".into(), "app.lan".into()));
        }
        if r.browser {
            h.push(("accept".into(), "text/html".into()));
        }
        let mut cookie: Vec<String> = Vec::new();
        if r.jar {
            cookie.extend(self.jar.iter().map(|(k, v)| format!("{k}={v}")));
        }
        if let Some(c) = &r.cookie {
            cookie.push(c.clone());
        }
        if !cookie.is_empty() {
            h.push(("cookie".into(), cookie.join("; ")));
        }
        match &r.auth {
            Auth::None => {}
            Auth::Bearer(t) => h.push((
                "authorization".into(),
                format!("Bearer {}", t.build(None).token),
            )),
            Auth::Own(a) => h.push(("authorization".into(), a.clone())),
        }
        h.extend(header_list(&r.extra));
        let body: Option<Vec<u8>> = r.form.as_ref().map(|f| match f {
            Form::Raw(b) => b.clone(),
            Form::IdToken { echo_state, token } => {
                let st = if *echo_state {
                    self.state.clone().unwrap_or_default()
                } else {
                    String::new()
                };
                let t = token.build(self.nonce.as_deref()).token;
                format!("state={st}&id_token={t}").into_bytes()
            }
        });
        self.requests.insert(id, h.clone());
        let h = barbican::request::borrow_all(&h);
        let step = self.engine.decide(
            Request {
                id,
                headers: &h,
                peer: r.peer.map(std::net::IpAddr::from),
                // A host reads the body only when the engine asks for it.
                body: body.as_deref().filter(|_| self.engine.wants_body(&h)),
            },
            self.now,
            &mut self.store,
        );
        self.check(id, step);
    }

    fn answer(&mut self, which: u8, status: u16, headers: &[(Name, String)], body: &Body) {
        if self.calls.is_empty() {
            return;
        }
        let call = self.calls.remove(usize::from(which) % self.calls.len());
        let body = match body {
            Body::Raw(b) => b.clone(),
            Body::Jwks => keys().jwks_bytes(),
            Body::Discovery(good) => {
                let u = if *good {
                    "http://idp.test/jwks"
                } else {
                    "ftp://x"
                };
                json!({"issuer": ISS, "jwks_uri": u})
                    .to_string()
                    .into_bytes()
            }
            Body::Introspection {
                active,
                sub,
                scope,
                exp,
                groups,
            } => json!({
                "active": active, "sub": sub, "scope": scope, "groups": groups,
                "exp": i64::try_from(NOW_S).unwrap_or(0) + i64::from(*exp), "iss": ISS, "aud": AUD
            })
            .to_string()
            .into_bytes(),
            Body::Token(t) => {
                json!({"id_token": t.build(self.nonce.as_deref()).token, "token_type": "Bearer"})
                    .to_string()
                    .into_bytes()
            }
            Body::Empty => Vec::new(),
        };
        let headers = header_list(headers);
        let out = self.engine.on_callout_body(
            call.id,
            status,
            &headers,
            &body,
            self.now,
            &mut self.store,
        );
        for (id, step) in out {
            self.check(id, step);
        }
    }
}

fuzz_target!(|input: Input| {
    let cfgs = configs();
    let cfg = &cfgs[usize::from(input.config) % cfgs.len()];
    let engine = Engine::from_json(cfg.to_string().as_bytes()).expect("the fuzz configs are valid");
    let mut w = World {
        engine,
        store: MemStore::default(),
        now: NOW_MS,
        next_id: 1,
        calls: Vec::new(),
        requests: HashMap::new(),
        jar: HashMap::new(),
        state: None,
        nonce: None,
    };
    w.engine.seed(b"fuzz entropy");
    for op in input.ops.iter().take(48) {
        match op {
            Op::Request(r) => w.request(r),
            Op::Answer {
                which,
                status,
                headers,
                body,
            } => w.answer(*which, *status, headers, body),
            Op::Tick(s) => {
                w.now += u64::from(*s) * 100;
                let expired = w.engine.expire(w.now);
                for (id, step) in expired {
                    w.check(id, step);
                }
                let orphans = w.engine.take_orphans(w.now);
                w.calls.extend(orphans);
                let bg = w.engine.background(w.now, &mut w.store);
                w.calls.extend(bg);
            }
            Op::Cancel(i) => {
                let id = u32::from(*i) % w.next_id.max(1);
                w.engine.cancel(id);
            }
        }
    }
});
