//! The api policy through the engine: key sets fetched by callout, requests that wait for
//! them, discovery, key retirement, introspection. Tokens are signed with the fixed test keys.

use super::*;
use crate::cache::MemStore;
use crate::jwks::tests::{p256_jwk, p256_private};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Value};

const T0: Millis = 1_700_000_000_000;
const ISS: &str = "http://idp.test/realm/";

fn cfg(jwks: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "jwt": {"providers": [{"issuer": ISS, "audiences": ["api"], "jwks": jwks, "clock_skew_s": 0}]},
        "introspection": {"cluster": "idp", "path": "/introspect", "client_id": "c", "client_secret": "s",
                          "ttl_s": 60, "negative_ttl_s": 5},
        "routes": [
            {"match": {"path_prefix": "/read/"}, "policy": "api", "require_scopes": ["read"]},
            {"match": {"path_prefix": "/opaque/"}, "policy": "api", "accept": ["introspection"]}
        ]
    }))
    .unwrap()
}

fn es256(kid: &str, scope: &str) -> String {
    let b = |v: &Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap());
    let claims =
        json!({"iss": ISS, "aud": "api", "sub": "u1", "exp": T0 / 1000 + 600, "scope": scope});
    let signed = format!("{}.{}", b(&json!({"alg": "ES256", "kid": kid})), b(&claims));
    let sig: p256::ecdsa::Signature =
        p256::ecdsa::signature::Signer::sign(&p256_private(), signed.as_bytes());
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(sig.to_bytes()))
}

fn req(path: &str, token: &str) -> Vec<(String, String)> {
    vec![
        (":method".into(), "GET".into()),
        (":path".into(), path.into()),
        (":authority".into(), "api.test".into()),
        ("authorization".into(), format!("Bearer {token}")),
    ]
}

fn decide(
    e: &mut Engine,
    s: &mut MemStore,
    id: ReqId,
    h: &[(String, String)],
    now: Millis,
) -> Step {
    e.decide(
        Request {
            id,
            headers: &crate::request::borrow_all(h),
            peer: None,
            body: None,
        },
        now,
        s,
    )
}

fn jwks_doc(kid: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({ "keys": [p256_jwk(kid)] })).unwrap()
}

fn path_of(c: &Callout) -> &str {
    c.headers
        .iter()
        .find(|(n, _)| n == ":path")
        .map(|(_, v)| v.as_str())
        .unwrap()
}

fn is_allow(s: &Step) -> bool {
    matches!(s, Step::Allow(a) if a.set.iter().any(|(n, v)| n == "x-authentik-uid" && v == "u1"))
}

fn status(s: &Step) -> u16 {
    match s {
        Step::Respond(r) => r.status,
        other => panic!("expected a response, got {other:?}"),
    }
}

#[test]
fn inline_keys_verify_at_once_and_scopes_are_enforced() {
    let mut e = Engine::from_json(&cfg(json!({"inline": {"keys": [p256_jwk("k1")]}}))).unwrap();
    let mut s = MemStore::default();
    assert!(is_allow(&decide(
        &mut e,
        &mut s,
        1,
        &req("/read/x", &es256("k1", "read")),
        T0
    )));
    let denied = decide(
        &mut e,
        &mut s,
        2,
        &req("/read/x", &es256("k1", "write")),
        T0,
    );
    assert_eq!(status(&denied), 403);
    assert_eq!(
        status(&decide(&mut e, &mut s, 3, &req("/read/x", "not-a-jwt"), T0)),
        401
    );
}

/// `forward_headers` applies to identity from tokens too; scopes are still enforced.
#[test]
fn forward_headers_limit_token_identity() {
    let mut c: Value =
        serde_json::from_slice(&cfg(json!({"inline": {"keys": [p256_jwk("k1")]}}))).unwrap();
    c["forward_headers"] = json!(["x-authentik-uid"]);
    let mut e = Engine::from_json(&serde_json::to_vec(&c).unwrap()).unwrap();
    let mut s = MemStore::default();
    for id in [1, 2] {
        let Step::Allow(a) = decide(
            &mut e,
            &mut s,
            id,
            &req("/read/x", &es256("k1", "read")),
            T0,
        ) else {
            panic!("allow expected")
        };
        let up: Vec<_> = a.upstream().cloned().collect();
        assert_eq!(up, vec![("x-authentik-uid".to_string(), "u1".to_string())]);
    }
    let denied = decide(
        &mut e,
        &mut s,
        3,
        &req("/read/x", &es256("k1", "write")),
        T0,
    );
    assert_eq!(status(&denied), 403);
}

/// A bearer token is one word; the check runs on a cache miss, and no cached token can
/// carry a space (it passed the check when it was verified).
#[test]
fn a_bearer_token_with_a_space_is_refused() {
    let mut e = Engine::from_json(&cfg(json!({"inline": {"keys": [p256_jwk("k1")]}}))).unwrap();
    let mut s = MemStore::default();
    let good = es256("k1", "read");
    let (head, tail) = good.split_at(good.len() / 2);
    for id in [1, 2] {
        let r = decide(
            &mut e,
            &mut s,
            id,
            &req("/read/x", &format!("{head} {tail}")),
            T0,
        );
        assert_eq!(status(&r), 401);
    }
    assert!(is_allow(&decide(
        &mut e,
        &mut s,
        3,
        &req("/read/x", &good),
        T0
    )));
}

#[test]
fn first_request_waits_for_the_key_set_then_is_verified() {
    let mut e = Engine::from_json(&cfg(
        json!({"uri": "http://idp.test/jwks", "cluster": "idp", "refresh_s": 60}),
    ))
    .unwrap();
    let mut s = MemStore::default();
    let tok = es256("k1", "read");
    assert_eq!(
        decide(&mut e, &mut s, 1, &req("/read/x", &tok), T0),
        Step::Wait
    );
    assert_eq!(
        decide(&mut e, &mut s, 2, &req("/read/y", &tok), T0),
        Step::Wait
    );
    let fetches = e.background(T0, &mut s);
    assert_eq!(fetches.len(), 1, "one fetch for both waiters");
    assert_eq!(path_of(&fetches[0]), "/jwks");
    let steps = e.on_callout_body(fetches[0].id, 200, &[], &jwks_doc("k1"), T0 + 10, &mut s);
    assert_eq!(steps.len(), 2);
    assert!(steps.iter().all(|(_, st)| is_allow(st)), "{steps:?}");
    assert!(
        e.background(T0 + 20, &mut s).is_empty(),
        "no refetch before refresh_s"
    );
}

#[test]
fn a_failed_fetch_answers_503_never_allow() {
    let mut e = Engine::from_json(&cfg(
        json!({"uri": "http://idp.test/jwks", "cluster": "idp"}),
    ))
    .unwrap();
    let mut s = MemStore::default();
    assert_eq!(
        decide(&mut e, &mut s, 1, &req("/read/x", &es256("k1", "read")), T0),
        Step::Wait
    );
    let f = e.background(T0, &mut s);
    let steps = e.on_callout_body(f[0].id, 500, &[], b"oops", T0, &mut s);
    assert_eq!(status(&steps[0].1), 503);
}

#[test]
fn discovery_finds_the_key_set() {
    let mut e = Engine::from_json(&cfg(json!({"cluster": "idp"}))).unwrap();
    let mut s = MemStore::default();
    assert_eq!(
        decide(&mut e, &mut s, 1, &req("/read/x", &es256("k1", "read")), T0),
        Step::Wait
    );
    let d = e.background(T0, &mut s);
    assert_eq!(path_of(&d[0]), "/realm/.well-known/openid-configuration");
    let doc = br#"{"issuer":"http://idp.test/realm/","jwks_uri":"http://idp.test/realm/certs"}"#;
    assert!(e
        .on_callout_body(d[0].id, 200, &[], doc, T0, &mut s)
        .is_empty());
    let f = e.background(T0 + 1, &mut s);
    assert_eq!(path_of(&f[0]), "/realm/certs");
    let steps = e.on_callout_body(f[0].id, 200, &[], &jwks_doc("k1"), T0 + 2, &mut s);
    assert!(is_allow(&steps[0].1), "{steps:?}");
}

#[test]
fn a_retired_key_stops_a_cached_token_at_the_next_refresh() {
    let mut e = Engine::from_json(&cfg(
        json!({"uri": "http://idp.test/jwks", "cluster": "idp", "refresh_s": 2}),
    ))
    .unwrap();
    let mut s = MemStore::default();
    let f = e.background(T0, &mut s);
    let _ = e.on_callout_body(f[0].id, 200, &[], &jwks_doc("old"), T0, &mut s);
    let tok = es256("old", "read");
    assert!(is_allow(&decide(
        &mut e,
        &mut s,
        1,
        &req("/read/x", &tok),
        T0 + 100
    )));
    assert!(
        is_allow(&decide(&mut e, &mut s, 2, &req("/read/x", &tok), T0 + 200)),
        "cached"
    );
    // The IdP retires "old" (same key material republished under a new kid).
    let f = e.background(T0 + 2500, &mut s);
    let _ = e.on_callout_body(f[0].id, 200, &[], &jwks_doc("new"), T0 + 2500, &mut s);
    // Unknown kid now: one refetch is allowed, the request waits for it, then fails.
    assert_eq!(
        decide(&mut e, &mut s, 3, &req("/read/x", &tok), T0 + 2600),
        Step::Wait
    );
    let f = e.background(T0 + 2700, &mut s);
    let steps = e.on_callout_body(f[0].id, 200, &[], &jwks_doc("new"), T0 + 2700, &mut s);
    assert_eq!(status(&steps[0].1), 401);
    // And no refetch per request afterwards.
    assert_eq!(
        status(&decide(&mut e, &mut s, 4, &req("/read/x", &tok), T0 + 2800)),
        401
    );
}

#[test]
fn introspection_is_coalesced_cached_and_remembers_inactive_tokens() {
    let mut e = Engine::from_json(&cfg(json!({"inline": {"keys": [p256_jwk("k1")]}}))).unwrap();
    let mut s = MemStore::default();
    let Step::Call(c) = decide(&mut e, &mut s, 1, &req("/opaque/x", "opaque-1"), T0) else {
        panic!()
    };
    assert_eq!(
        c.body
            .as_deref()
            .map(|b| String::from_utf8_lossy(b).contains("token=opaque-1")),
        Some(true)
    );
    assert_eq!(
        decide(&mut e, &mut s, 2, &req("/opaque/y", "opaque-1"), T0),
        Step::Wait
    );
    let ans = format!(
        r#"{{"active":true,"sub":"u1","scope":"read","exp":{}}}"#,
        T0 / 1000 + 600
    );
    let steps = e.on_callout_body(c.id, 200, &[], ans.as_bytes(), T0, &mut s);
    assert_eq!(steps.len(), 2);
    assert!(steps.iter().all(|(_, st)| is_allow(st)), "{steps:?}");
    assert!(
        is_allow(&decide(
            &mut e,
            &mut s,
            3,
            &req("/opaque/z", "opaque-1"),
            T0 + 1000
        )),
        "cached"
    );

    let Step::Call(c) = decide(&mut e, &mut s, 4, &req("/opaque/x", "revoked"), T0) else {
        panic!()
    };
    let steps = e.on_callout_body(c.id, 200, &[], br#"{"active":false}"#, T0, &mut s);
    assert_eq!(status(&steps[0].1), 401);
    assert_eq!(
        status(&decide(
            &mut e,
            &mut s,
            5,
            &req("/opaque/x", "revoked"),
            T0 + 1000
        )),
        401,
        "negative cache"
    );
    assert!(matches!(
        decide(&mut e, &mut s, 6, &req("/opaque/x", "revoked"), T0 + 6000),
        Step::Call(_)
    ));
}

#[test]
fn a_bad_token_is_remembered_briefly_instead_of_verified_again() {
    let mut e = Engine::from_json(&cfg(json!({"inline": {"keys": [p256_jwk("k1")]}}))).unwrap();
    let mut s = MemStore::default();
    let mut tok = es256("k1", "read");
    tok.push('A'); // breaks the signature
    assert_eq!(
        status(&decide(&mut e, &mut s, 1, &req("/read/x", &tok), T0)),
        401
    );
    let Step::Respond(r) = decide(&mut e, &mut s, 2, &req("/read/x", &tok), T0 + 1000) else {
        panic!()
    };
    assert_eq!((r.status, r.reason), (401, "token_inactive_cached"));
    let Step::Respond(r) = decide(&mut e, &mut s, 3, &req("/read/x", &tok), T0 + 6000) else {
        panic!()
    };
    assert_ne!(
        r.reason, "token_inactive_cached",
        "verified again after the TTL"
    );
}

#[test]
fn sender_constrained_tokens_are_refused() {
    let mut e = Engine::from_json(&cfg(json!({"inline": {"keys": [p256_jwk("k1")]}}))).unwrap();
    let mut s = MemStore::default();
    let Step::Call(c) = decide(&mut e, &mut s, 1, &req("/opaque/x", "dpop-bound"), T0) else {
        panic!()
    };
    let ans = br#"{"active":true,"sub":"u1","cnf":{"jkt":"0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}}"#;
    let steps = e.on_callout_body(c.id, 200, &[], ans, T0, &mut s);
    assert_eq!(
        status(&steps[0].1),
        401,
        "no proof of possession is checked, so no pass"
    );
}

#[test]
fn claim_headers_are_set_and_their_client_copies_stripped() {
    let cfg = serde_json::to_vec(&json!({
        "jwt": {"providers": [{"issuer": ISS, "audiences": ["api"], "jwks": {"inline": {"keys": [p256_jwk("k1")]}},
                               "claim_headers": {"X-Scope": "scope"}}]},
        "routes": [{"match": {"path_prefix": "/read/"}, "policy": "api"}]
    }))
    .unwrap();
    let mut e = Engine::from_json(&cfg).unwrap();
    let mut s = MemStore::default();
    let mut h = req("/read/x", &es256("k1", "read write"));
    h.push(("x-scope".into(), "admin".into()));
    let Step::Allow(a) = decide(&mut e, &mut s, 1, &h, T0) else {
        panic!()
    };
    assert_eq!(a.remove, vec!["x-scope".to_string()]);
    assert!(
        a.set
            .iter()
            .any(|(n, v)| n == "x-scope" && v == "read write"),
        "{:?}",
        a.set
    );
}

fn file_cfg() -> Vec<u8> {
    serde_json::to_vec(&json!({
        "jwt": {"providers": [
            {"issuer": ISS, "audiences": ["api"], "jwks": {"inline": {"keys": [p256_jwk("inline")]}}},
            {"issuer": ISS, "audiences": ["api"], "jwks": {"file": "/run/keys/jwks.json"}, "clock_skew_s": 0}
        ]},
        "routes": [{"match": {"path_prefix": "/read/"}, "policy": "api", "require_scopes": ["read"]}]
    }))
    .unwrap()
}

/// A second P-256 key, published under the same kid as `p256_private`'s in some tests.
fn other_p256() -> p256::ecdsa::SigningKey {
    p256::ecdsa::SigningKey::from_slice(&[8u8; 32]).unwrap()
}

fn other_p256_jwk(kid: &str) -> Value {
    let p = other_p256().verifying_key().to_sec1_point(false);
    let b = p.as_bytes();
    json!({"kty": "EC", "crv": "P-256", "kid": kid,
           "x": URL_SAFE_NO_PAD.encode(&b[1..33]), "y": URL_SAFE_NO_PAD.encode(&b[33..65])})
}

fn es256_with(key: &p256::ecdsa::SigningKey, kid: &str) -> String {
    let b = |v: &Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap());
    let claims =
        json!({"iss": ISS, "aud": "api", "sub": "u1", "exp": T0 / 1000 + 600, "scope": "read"});
    let signed = format!("{}.{}", b(&json!({"alg": "ES256", "kid": kid})), b(&claims));
    let sig: p256::ecdsa::Signature = p256::ecdsa::signature::Signer::sign(key, signed.as_bytes());
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(sig.to_bytes()))
}

#[test]
fn file_providers_are_listed_for_the_host_and_refused_where_there_is_no_filesystem() {
    let e = Engine::from_json(&file_cfg()).unwrap();
    let files = e.jwks_files();
    assert_eq!(
        files,
        [crate::JwksFile {
            provider: 1,
            path: "/run/keys/jwks.json".into(),
            field: "jwt.providers[1].jwks.file".into(),
        }]
    );
    let refused = crate::tokens::refuse_jwks_files(&files, "Envoy");
    assert_eq!(refused.len(), 1);
    assert!(
        refused[0]
            .to_string()
            .starts_with("jwt.providers[1].jwks.file: Envoy gives wasm filters no filesystem"),
        "{refused:?}"
    );
    assert!(refused[0].problem.contains("jwks.inline"), "{refused:?}");
}

#[test]
fn a_file_key_set_is_empty_until_the_host_hands_it_in() {
    let mut e = Engine::from_json(&file_cfg()).unwrap();
    let mut s = MemStore::default();
    let a = es256_with(&p256_private(), "k");
    // Never a callout for a file: no keys means 401, at once.
    assert_eq!(
        status(&decide(&mut e, &mut s, 1, &req("/read/x", &a), T0)),
        401
    );
    assert!(e.background(T0, &mut s).is_empty());
    assert_eq!(e.set_jwks(1, &jwks_doc("k")), Ok(1));
    assert!(is_allow(&decide(
        &mut e,
        &mut s,
        2,
        &req("/read/x", &a),
        T0
    )));
}

#[test]
fn a_rewritten_key_file_replaces_the_keys_and_unseats_cached_tokens() {
    let mut e = Engine::from_json(&file_cfg()).unwrap();
    let mut s = MemStore::default();
    let a = es256_with(&p256_private(), "k");
    let b = es256_with(&other_p256(), "k");
    e.set_jwks(1, &jwks_doc("k")).unwrap();
    assert!(is_allow(&decide(
        &mut e,
        &mut s,
        1,
        &req("/read/x", &a),
        T0
    )));
    assert!(
        is_allow(&decide(&mut e, &mut s, 2, &req("/read/x", &a), T0 + 1)),
        "cached"
    );
    assert_eq!(
        status(&decide(&mut e, &mut s, 3, &req("/read/x", &b), T0)),
        401
    );
    // Key B replaces key A under the same kid: A's cached verification must not outlive it.
    // (B's refusal above is remembered for INVALID_JWT_TTL_MS, as after any key change.)
    let later = T0 + api::INVALID_JWT_TTL_MS + 1;
    let doc_b = serde_json::to_vec(&json!({"keys": [other_p256_jwk("k")]})).unwrap();
    assert_eq!(e.set_jwks(1, &doc_b), Ok(1));
    assert_eq!(
        status(&decide(&mut e, &mut s, 4, &req("/read/x", &a), later)),
        401
    );
    assert!(is_allow(&decide(
        &mut e,
        &mut s,
        5,
        &req("/read/x", &b),
        later
    )));
    // Garbage keeps the last good set.
    for bad in [
        &b"{\"keys\": [{\"kty\": \"RSA\""[..],
        b"",
        b"{\"keys\": []}",
    ] {
        assert!(matches!(
            e.set_jwks(1, bad),
            Err(crate::JwksFileError::Jwks(_))
        ));
    }
    assert!(is_allow(&decide(
        &mut e,
        &mut s,
        6,
        &req("/read/x", &b),
        later + 1
    )));
    assert_eq!(
        status(&decide(&mut e, &mut s, 7, &req("/read/x", &a), later + 1)),
        401
    );
    // Only file providers take a key set from the host.
    assert_eq!(
        e.set_jwks(0, &jwks_doc("k")),
        Err(crate::JwksFileError::NotAFileProvider(0))
    );
    assert_eq!(
        e.set_jwks(7, &jwks_doc("k")),
        Err(crate::JwksFileError::NotAFileProvider(7))
    );
}

#[test]
fn the_same_keys_again_keep_cached_tokens() {
    let one = crate::jwks::parse(&jwks_doc("k")).unwrap();
    let again = crate::jwks::parse(&jwks_doc("k")).unwrap();
    let renamed = crate::jwks::parse(&jwks_doc("k2")).unwrap();
    let other =
        crate::jwks::parse(&serde_json::to_vec(&json!({"keys": [other_p256_jwk("k")]})).unwrap())
            .unwrap();
    assert_eq!(one.fingerprint, again.fingerprint);
    assert_ne!(one.fingerprint, renamed.fingerprint);
    assert_ne!(one.fingerprint, other.fingerprint);
}
