//! OIDC sessions through the engine: login redirect, the provider's return (code exchange and
//! form_post), the session cookie, tampering, rotation, logout, open-redirect refusals.
//! id_tokens are signed with the fixed test keys.

use super::*;
use crate::cache::MemStore;
use crate::jwks::tests::{p256_jwk, p256_private};
use crate::oidc::{form_field, form_pairs};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Value};

const T0: Millis = 1_700_000_000_000;
const ISS: &str = "http://idp.test";
const SECRET: &str = "0123456789abcdef0123456789abcdef-current";
const OLD: &str = "0123456789abcdef0123456789abcdef-previous";

fn cfg(flow: &str, secrets: &[&str], jwks: Value) -> Engine {
    let mut oidc = json!({
        "issuer": ISS, "client_id": "barbican", "flow": flow,
        "authorization_endpoint": "http://idp.test/auth",
        "end_session_endpoint": "http://idp.test/session/end",
        "post_logout_redirect_uri": "https://app.lan/bye",
        "redirect_uri": "https://app.lan/.barbican/callback",
        "cookie": {"domain": "lan"},
        "jwks": jwks, "secrets": secrets, "scopes": ["openid", "profile", "groups"]
    });
    if flow == "code" {
        oidc["client_secret"] = json!("client-secret");
        oidc["token_endpoint"] = json!("http://idp.test:9000/token");
        oidc["cluster"] = json!("idp");
    }
    let c = json!({
        "session": {"mode": "oidc", "oidc": oidc},
        "routes": [
            {"match": {"path_prefix": "/public/"}, "policy": "bypass"},
            {"match": {"path_prefix": "/admin/"}, "policy": "protected", "require_groups": ["admins"]},
            {"match": {"path_prefix": "/api/"}, "policy": "api"}
        ],
        "default_policy": "protected"
    });
    Engine::from_json(&serde_json::to_vec(&c).unwrap()).unwrap()
}

fn inline() -> Value {
    json!({"inline": {"keys": [p256_jwk("k1")]}})
}

fn id_token(nonce: &str, sub: &str, groups: &[&str], exp_s: u64) -> String {
    let b = |v: &Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap());
    let claims = json!({"iss": ISS, "aud": "barbican", "sub": sub, "exp": exp_s, "iat": T0 / 1000,
        "nonce": nonce, "preferred_username": sub, "email": format!("{sub}@example.test"),
        "name": "Alice Liddell", "groups": groups});
    let signed = format!(
        "{}.{}",
        b(&json!({"alg": "ES256", "kid": "k1"})),
        b(&claims)
    );
    let sig: p256::ecdsa::Signature =
        p256::ecdsa::signature::Signer::sign(&p256_private(), signed.as_bytes());
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(sig.to_bytes()))
}

fn get(host: &str, path: &str, cookie: Option<&str>) -> Vec<(String, String)> {
    let mut h = vec![
        (":method".to_string(), "GET".to_string()),
        (":path".to_string(), path.to_string()),
        (":authority".to_string(), host.to_string()),
        (":scheme".to_string(), "https".to_string()),
        ("accept".to_string(), "text/html".to_string()),
        ("x-authentik-username".to_string(), "spoofed".to_string()),
    ];
    if let Some(c) = cookie {
        h.push(("cookie".into(), c.into()));
    }
    h
}

fn decide(e: &mut Engine, s: &mut MemStore, h: &[(String, String)], now: Millis) -> Step {
    decide_body(e, s, h, None, now)
}

fn decide_body(
    e: &mut Engine,
    s: &mut MemStore,
    h: &[(String, String)],
    body: Option<&[u8]>,
    now: Millis,
) -> Step {
    e.decide(
        Request {
            id: 7,
            headers: &crate::request::borrow_all(h),
            peer: None,
            body,
        },
        now,
        s,
    )
}

fn respond_of(s: Step) -> Respond {
    match s {
        Step::Respond(r) => r,
        other => panic!("expected a response, got {other:?}"),
    }
}

fn hdr<'a>(r: &'a Respond, name: &str) -> Vec<&'a str> {
    r.headers
        .iter()
        .filter(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .collect()
}

/// The value a Set-Cookie gives `name`.
fn set_cookie<'a>(r: &'a Respond, name: &str) -> Option<&'a str> {
    hdr(r, "set-cookie").into_iter().find_map(|c| {
        c.split(';')
            .next()
            .and_then(|kv| kv.split_once('='))
            .filter(|(n, _)| *n == name)
            .map(|(_, v)| v)
    })
}

struct Login {
    state: String,
    nonce: String,
    challenge: Option<String>,
    binding: String,
}

fn start(e: &mut Engine, s: &mut MemStore, path: &str) -> Login {
    let r = respond_of(decide(e, s, &get("app.lan", path, None), T0));
    assert_eq!(r.status, 302, "{r:?}");
    let loc = hdr(&r, "location")[0];
    let (base, q) = loc.split_once('?').unwrap();
    assert_eq!(base, "http://idp.test/auth");
    let q = form_pairs(q);
    assert_eq!(form_field(&q, "client_id"), Some("barbican"));
    assert_eq!(
        form_field(&q, "redirect_uri"),
        Some("https://app.lan/.barbican/callback")
    );
    assert_eq!(form_field(&q, "scope"), Some("openid profile groups"));
    let login_cookie = hdr(&r, "set-cookie")
        .into_iter()
        .find(|c| c.starts_with("barbican_session_login="))
        .unwrap();
    assert!(login_cookie.contains("HttpOnly") && login_cookie.contains("Max-Age=600"));
    Login {
        state: form_field(&q, "state").unwrap().to_string(),
        nonce: form_field(&q, "nonce").unwrap().to_string(),
        challenge: form_field(&q, "code_challenge").map(String::from),
        binding: set_cookie(&r, "barbican_session_login")
            .unwrap()
            .to_string(),
    }
}

/// The browser's form_post of `token` to the callback: the step it gets.
fn form_post(e: &mut Engine, s: &mut MemStore, l: &Login, token: &str, now: Millis) -> Step {
    let mut h = get(
        "app.lan",
        "/.barbican/callback",
        Some(&format!("barbican_session_login={}", l.binding)),
    );
    h[0].1 = "POST".into();
    h.push((
        "content-type".into(),
        "application/x-www-form-urlencoded".into(),
    ));
    assert!(e.wants_body(&crate::request::borrow_all(&h)));
    let body = format!(
        "id_token={}&state={}",
        crate::oidc::pct(token),
        crate::oidc::pct(&l.state)
    );
    decide_body(e, s, &h, Some(body.as_bytes()), now)
}

/// Completes a form_post login: the callback's answer.
fn form_post_login(e: &mut Engine, s: &mut MemStore, l: &Login, token: &str) -> Respond {
    respond_of(form_post(e, s, l, token, T0 + 1000))
}

fn session_of(e: &mut Engine, s: &mut MemStore, groups: &[&str]) -> String {
    let l = start(e, s, "/app/page?x=1");
    let r = form_post_login(
        e,
        s,
        &l,
        &id_token(&l.nonce, "alice", groups, T0 / 1000 + 300),
    );
    assert_eq!(r.status, 302, "{r:?}");
    set_cookie(&r, "barbican_session").unwrap().to_string()
}

fn allowed_user(step: &Step) -> Option<String> {
    match step {
        Step::Allow(a) => {
            assert!(a.remove.iter().any(|n| n == "x-authentik-username"));
            a.set
                .iter()
                .find(|(n, _)| n == "x-authentik-username")
                .map(|(_, v)| v.clone())
        }
        _ => None,
    }
}

#[test]
fn form_post_login_sets_a_session_and_later_requests_need_no_idp() {
    let mut e = cfg("form_post", &[SECRET], inline());
    let mut s = MemStore::default();
    let l = start(&mut e, &mut s, "/app/page?x=1");
    assert!(l.challenge.is_none(), "no PKCE without a code exchange");
    let r = form_post_login(
        &mut e,
        &mut s,
        &l,
        &id_token(&l.nonce, "alice", &["admins", "users"], T0 / 1000 + 300),
    );
    assert_eq!(r.status, 302);
    assert_eq!(hdr(&r, "location"), ["https://app.lan/app/page?x=1"]);
    let cookie = set_cookie(&r, "barbican_session").unwrap().to_string();
    let sc = hdr(&r, "set-cookie");
    assert!(sc.iter().any(|c| c.starts_with("barbican_session=")
        && c.contains("Max-Age=28800; HttpOnly; Domain=lan; Secure; SameSite=Lax")));
    assert!(sc
        .iter()
        .any(|c| c.starts_with("barbican_session_login=;") && c.contains("Max-Age=0")));
    // Every later request is decided from the cookie: no callout, on any host of the domain.
    for (i, host) in ["app.lan", "other.lan", "app.lan"].iter().enumerate() {
        let step = decide(
            &mut e,
            &mut s,
            &get(
                host,
                "/admin/x",
                Some(&format!("a=b; barbican_session={cookie}")),
            ),
            T0 + 2000 + i as u64,
        );
        assert_eq!(allowed_user(&step).as_deref(), Some("alice"), "{step:?}");
        if let Step::Allow(a) = &step {
            assert!(a
                .set
                .iter()
                .any(|(n, v)| n == "x-authentik-groups" && v == "admins|users"));
            assert!(a
                .set
                .iter()
                .any(|(n, v)| n == "x-authentik-email" && v == "alice@example.test"));
        }
    }
    // A second worker (a new engine on the same store) opens the same cookie.
    let mut e2 = cfg("form_post", &[SECRET], inline());
    let step = decide(
        &mut e2,
        &mut s,
        &get("app.lan", "/", Some(&format!("barbican_session={cookie}"))),
        T0 + 3000,
    );
    assert_eq!(allowed_user(&step).as_deref(), Some("alice"));
}

#[test]
fn code_flow_exchanges_the_code_with_pkce_then_sets_the_session() {
    let mut e = cfg("code", &[SECRET], inline());
    let mut s = MemStore::default();
    let l = start(&mut e, &mut s, "/x");
    let challenge = l.challenge.clone().unwrap();
    let h = get(
        "app.lan",
        &format!(
            "/.barbican/callback?code=the-code&state={}",
            crate::oidc::pct(&l.state)
        ),
        Some(&format!("barbican_session_login={}", l.binding)),
    );
    let Step::Call(c) = decide(&mut e, &mut s, &h, T0 + 1000) else {
        panic!("expected the code exchange")
    };
    assert_eq!(c.cluster, "idp");
    assert!(c
        .headers
        .contains(&(":authority".into(), "idp.test:9000".into())));
    assert!(c.headers.contains(&(":method".into(), "POST".into())));
    assert!(c
        .headers
        .iter()
        .any(|(n, v)| n == "authorization" && v.starts_with("Basic ")));
    let body = String::from_utf8(c.body.clone().unwrap()).unwrap();
    let f = form_pairs(&body);
    assert_eq!(form_field(&f, "grant_type"), Some("authorization_code"));
    assert_eq!(form_field(&f, "code"), Some("the-code"));
    let verifier = form_field(&f, "code_verifier").unwrap();
    assert_eq!(crate::seal::pkce_challenge(verifier), challenge);

    let answer = json!({"access_token": "at", "token_type": "Bearer",
        "id_token": id_token(&l.nonce, "alice", &["users"], T0 / 1000 + 300)});
    let steps = e.on_callout_body(
        c.id,
        200,
        &[],
        &serde_json::to_vec(&answer).unwrap(),
        T0 + 1100,
        &mut s,
    );
    assert_eq!(steps.len(), 1);
    let r = respond_of(steps.into_iter().next().unwrap().1);
    assert_eq!(r.status, 302);
    assert_eq!(hdr(&r, "location"), ["https://app.lan/x"]);
    let cookie = set_cookie(&r, "barbican_session").unwrap();
    let step = decide(
        &mut e,
        &mut s,
        &get("app.lan", "/y", Some(&format!("barbican_session={cookie}"))),
        T0 + 2000,
    );
    assert_eq!(allowed_user(&step).as_deref(), Some("alice"));
    // Not an admin.
    let r = respond_of(decide(
        &mut e,
        &mut s,
        &get(
            "app.lan",
            "/admin/",
            Some(&format!("barbican_session={cookie}")),
        ),
        T0 + 2000,
    ));
    assert_eq!(r.status, 403);
}

#[test]
fn code_flow_failures() {
    let mut e = cfg("code", &[SECRET], inline());
    let mut s = MemStore::default();
    let l = start(&mut e, &mut s, "/x");
    let cb = |state: &str, binding: &str| {
        get(
            "app.lan",
            &format!(
                "/.barbican/callback?code=c&state={}",
                crate::oidc::pct(state)
            ),
            Some(&format!("barbican_session_login={binding}")),
        )
    };
    // Another browser's binding, a tampered state, an expired login.
    for (h, now, reason) in [
        (cb(&l.state, "someone-else"), T0, "login_binding"),
        (
            cb(&format!("{}A", l.state), &l.binding),
            T0,
            "login_state_invalid",
        ),
        (cb(&l.state, &l.binding), T0 + 601_000, "login_expired"),
    ] {
        let r = respond_of(decide(&mut e, &mut s, &h, now));
        assert_eq!((r.status, r.reason), (400, reason));
    }
    // The provider refused the login: 403, no new login loop.
    let r = respond_of(decide(
        &mut e,
        &mut s,
        &get(
            "app.lan",
            "/.barbican/callback?error=access_denied&state=x",
            None,
        ),
        T0,
    ));
    assert_eq!(r.status, 403);
    // The token endpoint refuses the code; then is unreachable.
    for (status, want) in [(400, 400), (0, 503), (500, 503)] {
        let Step::Call(c) = decide(&mut e, &mut s, &cb(&l.state, &l.binding), T0 + 1) else {
            panic!()
        };
        let steps = e.on_callout_body(c.id, status, &[], b"{}", T0 + 2, &mut s);
        assert_eq!(respond_of(steps.into_iter().next().unwrap().1).status, want);
    }
    // An id_token with another login's nonce.
    let Step::Call(c) = decide(&mut e, &mut s, &cb(&l.state, &l.binding), T0 + 1) else {
        panic!()
    };
    let answer = json!({"id_token": id_token("other-nonce", "alice", &[], T0 / 1000 + 300)});
    let steps = e.on_callout_body(
        c.id,
        200,
        &[],
        &serde_json::to_vec(&answer).unwrap(),
        T0 + 2,
        &mut s,
    );
    let r = respond_of(steps.into_iter().next().unwrap().1);
    assert_eq!((r.status, r.reason), (401, "login_nonce"));
    assert!(set_cookie(&r, "barbican_session").is_none());
}

#[test]
fn form_post_refuses_bad_id_tokens() {
    let mut e = cfg("form_post", &[SECRET], inline());
    let mut s = MemStore::default();
    let l = start(&mut e, &mut s, "/x");
    let expired = id_token(&l.nonce, "alice", &[], T0 / 1000 - 100);
    let mut forged = id_token(&l.nonce, "alice", &[], T0 / 1000 + 300);
    forged.replace_range(forged.len() - 4.., "AAAA");
    for t in [expired, forged, "not.a.jwt".into()] {
        let r = form_post_login(&mut e, &mut s, &l, &t);
        assert_eq!(r.status, 401, "{r:?}");
        assert!(set_cookie(&r, "barbican_session").is_none());
    }
    // GET on a form_post callback is refused.
    let r = respond_of(decide(
        &mut e,
        &mut s,
        &get("app.lan", "/.barbican/callback?id_token=x", None),
        T0,
    ));
    assert_eq!(r.status, 405);
}

#[test]
fn tampered_foreign_and_expired_cookies_lead_to_a_new_login() {
    let mut e = cfg("form_post", &[SECRET], inline());
    let mut s = MemStore::default();
    let good = session_of(&mut e, &mut s, &["users"]);
    let mut tampered = good.clone().into_bytes();
    let i = tampered.len() / 2;
    tampered[i] = if tampered[i] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let mut other = cfg(
        "form_post",
        &["another-secret-that-is-32-bytes-long!"],
        inline(),
    );
    let foreign = session_of(&mut other, &mut MemStore::default(), &["users"]);
    for (cookie, now) in [
        (tampered.as_str(), T0 + 5000),
        (foreign.as_str(), T0 + 5000),
        (good.as_str(), T0 + 28_800_000 + 2000),
        ("garbage", T0 + 5000),
    ] {
        let r = respond_of(decide(
            &mut e,
            &mut s,
            &get("app.lan", "/", Some(&format!("barbican_session={cookie}"))),
            now,
        ));
        assert_eq!(r.status, 302, "{cookie}");
        assert!(hdr(&r, "location")[0].starts_with("http://idp.test/auth?"));
        assert!(hdr(&r, "set-cookie")
            .iter()
            .any(|c| c.starts_with("barbican_session=;") && c.contains("Max-Age=0")));
    }
    // An XHR or API client gets 401, never the login redirect.
    let mut h = get(
        "app.lan",
        "/",
        Some(&format!("barbican_session={tampered}")),
    );
    h.push(("x-requested-with".into(), "XMLHttpRequest".into()));
    assert_eq!(respond_of(decide(&mut e, &mut s, &h, T0)).status, 401);
}

#[test]
fn secret_rotation_keeps_sessions_of_the_previous_secret() {
    let mut old = cfg("form_post", &[OLD], inline());
    let cookie = session_of(&mut old, &mut MemStore::default(), &["users"]);
    let mut rotated = cfg("form_post", &[SECRET, OLD], inline());
    let mut s = MemStore::default();
    let step = decide(
        &mut rotated,
        &mut s,
        &get("app.lan", "/", Some(&format!("barbican_session={cookie}"))),
        T0 + 5000,
    );
    assert_eq!(allowed_user(&step).as_deref(), Some("alice"));
    let mut dropped = cfg("form_post", &[SECRET], inline());
    let r = respond_of(decide(
        &mut dropped,
        &mut s,
        &get("app.lan", "/", Some(&format!("barbican_session={cookie}"))),
        T0 + 5000,
    ));
    assert_eq!(r.status, 302);
}

#[test]
fn logout_clears_the_cookie_revokes_it_everywhere_and_goes_to_the_provider() {
    let mut e = cfg("form_post", &[SECRET], inline());
    let mut s = MemStore::default();
    let cookie = session_of(&mut e, &mut s, &["users"]);
    let with = |path: &str| get("app.lan", path, Some(&format!("barbican_session={cookie}")));
    assert!(allowed_user(&decide(&mut e, &mut s, &with("/"), T0 + 2000)).is_some());
    let r = respond_of(decide(
        &mut e,
        &mut s,
        &with("/.barbican/logout"),
        T0 + 3000,
    ));
    assert_eq!(r.status, 302);
    assert_eq!(
        hdr(&r, "location"),
        ["http://idp.test/session/end?client_id=barbican&post_logout_redirect_uri=https%3A%2F%2Fapp.lan%2Fbye"]
    );
    assert!(hdr(&r, "set-cookie")
        .iter()
        .any(|c| c.starts_with("barbican_session=;") && c.contains("Max-Age=0")));
    // A replayed copy of the cookie no longer works, here or on another worker.
    let mut e2 = cfg("form_post", &[SECRET], inline());
    for eng in [&mut e, &mut e2] {
        let r = respond_of(decide(eng, &mut s, &with("/"), T0 + 4000));
        assert_eq!(r.status, 302);
    }
}

#[test]
fn open_redirects_are_refused() {
    let mut e = cfg("form_post", &[SECRET], inline());
    let mut s = MemStore::default();
    // A forged Host outside the configured domains never becomes a return URL.
    for host in ["evil.example", "app.lan.evil.example", "lan.evil"] {
        let r = respond_of(decide(&mut e, &mut s, &get(host, "/x", None), T0));
        assert_eq!((r.status, r.reason), (400, "login_host_refused"), "{host}");
    }
    // Paths that a browser could read as another host are normalized into the same host.
    for path in ["//evil.example/", "/\\evil.example", "///evil.example"] {
        let step = decide(&mut e, &mut s, &get("app.lan", path, None), T0);
        if let Step::Respond(r) = step {
            if r.status == 302 {
                let loc = hdr(&r, "location")[0];
                let q = form_pairs(loc.split_once('?').unwrap().1);
                let state = form_field(&q, "state").unwrap();
                let st = crate::oidc::LoginState::decode(
                    &e.oidc.as_ref().unwrap().rp_states_open(state).unwrap(),
                )
                .unwrap();
                assert!(st.u.starts_with("https://app.lan/"), "{path} -> {}", st.u);
                assert!(!st.u.starts_with("https://app.lan//"), "{path} -> {}", st.u);
            } else {
                assert_eq!(r.status, 400, "{path}");
            }
        }
    }
    // The return URL rides sealed in the state: a state naming another host cannot be made.
    let l = start(&mut e, &mut s, "/x");
    let r = form_post_login(
        &mut e,
        &mut s,
        &l,
        &id_token(&l.nonce, "alice", &[], T0 / 1000 + 300),
    );
    assert_eq!(hdr(&r, "location"), ["https://app.lan/x"]);
}

#[test]
fn the_session_provider_is_not_an_api_provider() {
    let mut e = cfg("form_post", &[SECRET], inline());
    let mut s = MemStore::default();
    let token = id_token("n", "alice", &[], T0 / 1000 + 300);
    let mut h = get("app.lan", "/api/x", None);
    h.push(("authorization".into(), format!("Bearer {token}")));
    let r = respond_of(decide(&mut e, &mut s, &h, T0));
    assert_eq!(r.status, 401);
}

#[test]
fn bypass_routes_and_spoofed_identity_in_oidc_mode() {
    let mut e = cfg("form_post", &[SECRET], inline());
    let mut s = MemStore::default();
    let Step::Allow(a) = decide(&mut e, &mut s, &get("app.lan", "/public/x", None), T0) else {
        panic!()
    };
    assert!(a.remove.iter().any(|n| n == "x-authentik-username"));
    assert!(a.set.is_empty());
}

#[test]
fn keys_fetched_by_uri_make_the_login_wait() {
    let mut e = cfg(
        "form_post",
        &[SECRET],
        json!({"uri": "http://idp.test/jwks", "cluster": "idp"}),
    );
    let mut s = MemStore::default();
    let l = start(&mut e, &mut s, "/x");
    let token = id_token(&l.nonce, "alice", &[], T0 / 1000 + 300);
    let step = form_post(&mut e, &mut s, &l, &token, T0 + 10);
    assert_eq!(step, Step::Wait);
    let calls = e.take_orphans(T0 + 20);
    assert_eq!(calls.len(), 1);
    let doc = serde_json::to_vec(&json!({"keys": [p256_jwk("k1")]})).unwrap();
    let steps = e.on_callout_body(calls[0].id, 200, &[], &doc, T0 + 30, &mut s);
    let r = respond_of(steps.into_iter().next().unwrap().1);
    assert_eq!(r.status, 302);
    assert!(set_cookie(&r, "barbican_session").is_some());
}

#[test]
fn keys_from_a_file_are_handed_in_by_the_host() {
    let mut e = cfg("form_post", &[SECRET], json!({"file": "/etc/keys.json"}));
    let files = e.jwks_files();
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].field, "session.oidc.jwks.file");
    let mut s = MemStore::default();
    let l = start(&mut e, &mut s, "/x");
    let token = id_token(&l.nonce, "alice", &[], T0 / 1000 + 300);
    // No keys yet: the login fails closed (a file source is never fetched).
    let r = respond_of(form_post(&mut e, &mut s, &l, &token, T0 + 10));
    assert_eq!((r.status, r.reason), (401, "jwks_not_loaded"));
    let doc = serde_json::to_vec(&json!({"keys": [p256_jwk("k1")]})).unwrap();
    e.set_jwks(files[0].provider, &doc).unwrap();
    let l = start(&mut e, &mut s, "/x");
    let token = id_token(&l.nonce, "alice", &[], T0 / 1000 + 300);
    let r = respond_of(form_post(&mut e, &mut s, &l, &token, T0 + 20));
    assert_eq!(r.status, 302);
}

/// `barbican explain` and serve's debug line name no rule for Barbican's own endpoints:
/// they answer before any rule (a catch-all rule used to be named for them).
#[test]
fn own_endpoints_consult_no_rule() {
    let e = cfg("form_post", &[SECRET], inline());
    let at = |path: &str| {
        e.route_of(&crate::request::borrow_all(&get("app.lan", path, None)))
            .map(|(r, _)| r.is_some())
    };
    assert_eq!(at("/.barbican/callback"), Err("barbican_oidc_callback"));
    assert_eq!(at("/.barbican/logout"), Err("barbican_oidc_logout"));
    assert_eq!(at("/.barbican/logout?x=1"), Err("barbican_oidc_logout"));
    assert_eq!(at("/public/x"), Ok(true));
    assert_eq!(at("/elsewhere"), Ok(false));
}
