//! Tokens signed here with the fixed test keys, and a corpus of forgeries that must fail.

use super::*;
use crate::jwks::tests::{
    all_keys, ed25519_private, p256_private, p384_private, rsa_jwk, rsa_private, set_of,
};
use serde_json::json;
use sha2::Sha256;

const NOW: u64 = 1_700_000_000;
const ISS: &str = "https://auth.lan/application/o/sonarr/";

fn validation() -> Validation {
    Validation {
        issuer: ISS.into(),
        audiences: vec!["sonarr-api".into()],
        algorithms: vec![Alg::RS256, Alg::PS256, Alg::ES256, Alg::ES384, Alg::EdDSA],
        clock_skew_s: 30,
        max_token_bytes: 8192,
        required_claims: vec!["sub".into()],
        groups_claim: "groups".into(),
        hmac_secret: None,
        claim_headers: vec![
            ("x-tenant".into(), "tenant".into()),
            ("x-roles".into(), "roles".into()),
        ],
    }
}

fn claims() -> Value {
    json!({"iss": ISS, "aud": "sonarr-api", "sub": "u1", "exp": NOW + 300, "iat": NOW,
           "scope": "read write", "groups": ["admins", "users"], "preferred_username": "alice"})
}

fn b64(v: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(v)
}

fn sign_bytes(alg: &str, msg: &[u8]) -> Vec<u8> {
    use rsa::signature::{SignatureEncoding, Signer};
    match alg {
        "RS256" => rsa::pkcs1v15::SigningKey::<Sha256>::new(rsa_private())
            .sign(msg)
            .to_vec(),
        "ES256" => {
            let s: p256::ecdsa::Signature =
                p256::ecdsa::signature::Signer::sign(&p256_private(), msg);
            s.to_bytes().to_vec()
        }
        "ES384" => {
            let s: p384::ecdsa::Signature =
                p384::ecdsa::signature::Signer::sign(&p384_private(), msg);
            s.to_bytes().to_vec()
        }
        "EdDSA" => ed25519_dalek::Signer::sign(&ed25519_private(), msg)
            .to_bytes()
            .to_vec(),
        other => panic!("no test signer for {other}"),
    }
}

/// A token with an arbitrary header and payload, signed by `signer`'s key.
fn token_with(header: &Value, payload: &Value, signer: &str) -> String {
    let signed = format!(
        "{}.{}",
        b64(&serde_json::to_vec(header).unwrap()),
        b64(&serde_json::to_vec(payload).unwrap())
    );
    let sig = sign_bytes(signer, signed.as_bytes());
    format!("{signed}.{}", b64(&sig))
}

fn token(alg: &str, kid: &str, payload: &Value) -> String {
    token_with(
        &json!({"alg": alg, "kid": kid, "typ": "at+jwt"}),
        payload,
        alg,
    )
}

fn check(t: &str) -> Result<Claims, JwtError> {
    verify(t, &all_keys(), &validation(), NOW)
}

#[test]
fn good_tokens_of_every_algorithm_verify() {
    for (alg, kid) in [
        ("RS256", "rsa"),
        ("ES256", "p256"),
        ("ES384", "p384"),
        ("EdDSA", "ed"),
    ] {
        let c = check(&token(alg, kid, &claims())).unwrap_or_else(|e| panic!("{alg}: {e}"));
        assert_eq!(c.sub.as_deref(), Some("u1"));
        assert_eq!(c.scopes, vec!["read", "write"]);
        assert_eq!(c.groups, vec!["admins", "users"]);
        assert_eq!(c.preferred_username.as_deref(), Some("alice"));
        assert_eq!(c.exp, NOW + 300);
    }
}

#[test]
fn key_is_found_by_type_when_the_token_has_no_kid() {
    let t = token_with(&json!({"alg": "ES256"}), &claims(), "ES256");
    assert!(check(&t).is_ok());
}

#[test]
fn alg_none_is_never_accepted() {
    let h = b64(br#"{"alg":"none","typ":"JWT"}"#);
    let p = b64(&serde_json::to_vec(&claims()).unwrap());
    assert_eq!(check(&format!("{h}.{p}.")), Err(JwtError::Malformed));
    assert_eq!(check(&format!("{h}.{p}.AAAA")), Err(JwtError::UnknownAlg));
    let h = b64(br#"{"alg":"None"}"#);
    assert_eq!(check(&format!("{h}.{p}.AAAA")), Err(JwtError::UnknownAlg));
}

#[test]
fn hs256_signed_with_the_rsa_public_key_is_refused() {
    // The classic confusion attack: the attacker signs with HMAC using the public key bytes.
    let public_pem_like = serde_json::to_vec(&rsa_jwk("rsa")).unwrap();
    let signed = format!(
        "{}.{}",
        b64(br#"{"alg":"HS256","kid":"rsa"}"#),
        b64(&serde_json::to_vec(&claims()).unwrap())
    );
    let mac = hmac_sha256::HMAC::mac(signed.as_bytes(), &public_pem_like);
    let t = format!("{signed}.{}", b64(&mac));
    assert_eq!(check(&t), Err(JwtError::AlgNotAllowed));
    // Even when HS256 is in the list, it needs a configured secret, never a JWKS key.
    let mut v = validation();
    v.algorithms.push(Alg::HS256);
    assert_eq!(
        verify(&t, &all_keys(), &v, NOW),
        Err(JwtError::AlgNotAllowed)
    );
}

#[test]
fn hs256_with_a_configured_secret_works() {
    let mut v = validation();
    v.algorithms = vec![Alg::HS256];
    v.hmac_secret = Some(b"0123456789abcdef0123456789abcdef".to_vec());
    let signed = format!(
        "{}.{}",
        b64(br#"{"alg":"HS256"}"#),
        b64(&serde_json::to_vec(&claims()).unwrap())
    );
    let good = format!(
        "{signed}.{}",
        b64(&hmac_sha256::HMAC::mac(
            signed.as_bytes(),
            b"0123456789abcdef0123456789abcdef"
        ))
    );
    assert!(verify(&good, &KeySet::default(), &v, NOW).is_ok());
    let bad = format!(
        "{signed}.{}",
        b64(&hmac_sha256::HMAC::mac(signed.as_bytes(), b"wrong"))
    );
    assert_eq!(
        verify(&bad, &KeySet::default(), &v, NOW),
        Err(JwtError::BadSignature)
    );
}

#[test]
fn hs384_and_hs512_verify_against_a_configured_secret() {
    // RFC 4231 test case 2 ("Jefe", "what do ya want for nothing?"): the MAC prefixes.
    let m384 = ring::hmac::sign(
        &ring::hmac::Key::new(ring::hmac::HMAC_SHA384, b"Jefe"),
        b"what do ya want for nothing?",
    );
    assert_eq!(m384.as_ref()[..4], [0xaf, 0x45, 0xd2, 0xe3]);
    let m512 = ring::hmac::sign(
        &ring::hmac::Key::new(ring::hmac::HMAC_SHA512, b"Jefe"),
        b"what do ya want for nothing?",
    );
    assert_eq!(m512.as_ref()[..4], [0x16, 0x4b, 0x7a, 0x7b]);
    assert!(hmac_ok(
        Alg::HS384,
        b"Jefe",
        b"what do ya want for nothing?",
        m384.as_ref()
    ));
    assert!(!hmac_ok(
        Alg::HS384,
        b"Jefe",
        b"what do ya want for nothing!",
        m384.as_ref()
    ));
    assert!(hmac_ok(
        Alg::HS512,
        b"Jefe",
        b"what do ya want for nothing?",
        m512.as_ref()
    ));
}

#[test]
fn unknown_kid_asks_for_a_refetch_and_tricky_kids_find_nothing() {
    assert_eq!(
        check(&token("ES256", "rotated-in", &claims())),
        Err(JwtError::UnknownKid)
    );
    for kid in [
        "../../etc/passwd",
        "' OR 1=1 --",
        "rsa\u{0}",
        "RSA",
        "p256 ",
    ] {
        assert_eq!(
            check(&token("ES256", kid, &claims())),
            Err(JwtError::UnknownKid),
            "{kid:?}"
        );
    }
}

#[test]
fn a_kid_of_the_wrong_key_type_does_not_verify() {
    // kid names the RSA key but the token is ES256.
    assert_eq!(
        check(&token_with(
            &json!({"alg": "ES256", "kid": "rsa"}),
            &claims(),
            "ES256"
        )),
        Err(JwtError::NoMatchingKey)
    );
}

#[test]
fn tampered_payload_or_signature_fails() {
    let t = token("RS256", "rsa", &claims());
    let mut parts: Vec<String> = t.split('.').map(str::to_string).collect();
    let mut evil = claims();
    evil["sub"] = json!("admin");
    parts[1] = b64(&serde_json::to_vec(&evil).unwrap());
    assert_eq!(check(&parts.join(".")), Err(JwtError::BadSignature));
    let mut sig = URL_SAFE_NO_PAD
        .decode(t.rsplit('.').next().unwrap())
        .unwrap();
    sig[10] ^= 1;
    let t2 = format!("{}.{}", t.rsplit_once('.').unwrap().0, b64(&sig));
    assert_eq!(check(&t2), Err(JwtError::BadSignature));
}

#[test]
fn signature_by_another_key_fails() {
    let other = set_of(vec![crate::jwks::tests::p256_jwk("p256")]);
    // Signed by p384's key but presented under p256's kid.
    let t = token_with(&json!({"alg": "ES384", "kid": "p256"}), &claims(), "ES384");
    assert_eq!(
        verify(&t, &other, &validation(), NOW),
        Err(JwtError::NoMatchingKey)
    );
    let t = token_with(&json!({"alg": "EdDSA", "kid": "ed"}), &claims(), "EdDSA");
    let mut ks = all_keys();
    ks.keys.retain(|k| k.kid.as_deref() != Some("ed"));
    ks.keys.push(crate::jwks::Jwk {
        kid: Some("ed".into()),
        alg: None,
        key: KeyMaterial::Ed25519(
            ed25519_dalek::SigningKey::from_bytes(&[6u8; 32])
                .verifying_key()
                .to_bytes(),
        ),
    });
    assert_eq!(
        verify(&t, &ks, &validation(), NOW),
        Err(JwtError::BadSignature)
    );
}

#[test]
fn time_claims_with_skew() {
    let mut c = claims();
    c["exp"] = json!(NOW - 31);
    assert_eq!(check(&token("ES256", "p256", &c)), Err(JwtError::Expired));
    c["exp"] = json!(NOW - 29);
    assert!(check(&token("ES256", "p256", &c)).is_ok(), "within skew");
    let mut c = claims();
    c["nbf"] = json!(NOW + 31);
    assert_eq!(
        check(&token("ES256", "p256", &c)),
        Err(JwtError::NotYetValid)
    );
    c["nbf"] = json!(NOW + 29);
    assert!(check(&token("ES256", "p256", &c)).is_ok());
    let mut c = claims();
    c.as_object_mut().unwrap().remove("exp");
    assert_eq!(
        check(&token("ES256", "p256", &c)),
        Err(JwtError::MissingExp)
    );
    c["exp"] = json!("tomorrow");
    assert_eq!(
        check(&token("ES256", "p256", &c)),
        Err(JwtError::BadPayload)
    );
    c["exp"] = json!(1.7e9 + 300.5);
    assert!(check(&token("ES256", "p256", &c)).is_ok(), "float exp");
}

#[test]
fn issuer_audience_and_required_claims() {
    let mut c = claims();
    c["iss"] = json!("https://evil.lan/application/o/sonarr/");
    assert_eq!(
        check(&token("ES256", "p256", &c)),
        Err(JwtError::WrongIssuer)
    );
    c["iss"] = json!(ISS.trim_end_matches('/'));
    assert_eq!(
        check(&token("ES256", "p256", &c)),
        Err(JwtError::WrongIssuer),
        "exact match"
    );
    let mut c = claims();
    c["aud"] = json!(["other", "sonarr-api"]);
    assert!(check(&token("ES256", "p256", &c)).is_ok());
    c["aud"] = json!(["other"]);
    assert_eq!(
        check(&token("ES256", "p256", &c)),
        Err(JwtError::WrongAudience)
    );
    c.as_object_mut().unwrap().remove("aud");
    assert_eq!(
        check(&token("ES256", "p256", &c)),
        Err(JwtError::WrongAudience)
    );
    let mut c = claims();
    c.as_object_mut().unwrap().remove("sub");
    assert_eq!(
        check(&token("ES256", "p256", &c)),
        Err(JwtError::MissingClaim)
    );
}

#[test]
fn scp_array_is_read_when_scope_is_absent() {
    let mut c = claims();
    c.as_object_mut().unwrap().remove("scope");
    c["scp"] = json!(["read"]);
    assert_eq!(
        check(&token("ES256", "p256", &c)).unwrap().scopes,
        vec!["read"]
    );
}

#[test]
fn malformed_compact_forms() {
    let t = token("ES256", "p256", &claims());
    let (h, rest) = t.split_once('.').unwrap();
    let (p, s) = rest.split_once('.').unwrap();
    for bad in [
        String::new(),
        "a.b".into(),
        format!("{t}.extra"),
        format!("{h}..{s}"),
        format!("{h}.{p}"),
        format!("{h}=.{p}.{s}"),
        format!("{h}.{p}.{s}="),
        format!("{h}+.{p}.{s}"),
        format!("!!.{p}.{s}"),
        format!(" {t}"),
    ] {
        assert!(check(&bad).is_err(), "{bad:?}");
    }
}

#[test]
fn oversize_tokens_are_refused_before_parsing() {
    let mut c = claims();
    c["pad"] = json!("x".repeat(9000));
    assert_eq!(check(&token("ES256", "p256", &c)), Err(JwtError::TooLong));
}

#[test]
fn duplicate_payload_keys_are_refused() {
    let h = b64(br#"{"alg":"ES256","kid":"p256"}"#);
    let payload = format!(
        r#"{{"iss":"{ISS}","aud":"sonarr-api","sub":"u1","sub":"admin","exp":{}}}"#,
        NOW + 300
    );
    let signed = format!("{h}.{}", b64(payload.as_bytes()));
    let t = format!("{signed}.{}", b64(&sign_bytes("ES256", signed.as_bytes())));
    assert_eq!(check(&t), Err(JwtError::BadPayload));
}

#[test]
fn duplicate_header_keys_are_refused() {
    let h = b64(br#"{"alg":"ES256","alg":"none","kid":"p256"}"#);
    let signed = format!("{h}.{}", b64(&serde_json::to_vec(&claims()).unwrap()));
    let t = format!("{signed}.{}", b64(&sign_bytes("ES256", signed.as_bytes())));
    assert_eq!(check(&t), Err(JwtError::BadHeader));
}

#[test]
fn crit_headers_and_foreign_types_are_refused() {
    let t = token_with(
        &json!({"alg": "ES256", "kid": "p256", "crit": ["exp"], "exp": 1}),
        &claims(),
        "ES256",
    );
    assert_eq!(check(&t), Err(JwtError::CritUnsupported));
    let t = token_with(
        &json!({"alg": "ES256", "kid": "p256", "typ": "JWE"}),
        &claims(),
        "ES256",
    );
    assert_eq!(check(&t), Err(JwtError::BadType));
    let t = token_with(
        &json!({"alg": "ES256", "kid": "p256", "typ": "JWT"}),
        &claims(),
        "ES256",
    );
    assert!(check(&t).is_ok());
}

#[test]
fn algorithms_outside_the_allowlist_are_refused() {
    let mut v = validation();
    v.algorithms = vec![Alg::ES256];
    let t = token("RS256", "rsa", &claims());
    assert_eq!(
        verify(&t, &all_keys(), &v, NOW),
        Err(JwtError::AlgNotAllowed)
    );
}

#[test]
fn payload_that_is_not_an_object_is_refused() {
    let t = token_with(
        &json!({"alg": "ES256", "kid": "p256"}),
        &json!([1, 2]),
        "ES256",
    );
    assert_eq!(check(&t), Err(JwtError::BadPayload));
}

#[test]
fn times_beyond_64_bits_and_mixed_audiences_are_malformed() {
    // Found by the jwt_authn differential test: these were accepted.
    let mut c = claims();
    c["exp"] = json!(1e20);
    assert_eq!(
        check(&token("ES256", "p256", &c)),
        Err(JwtError::BadPayload)
    );
    let mut c = claims();
    c["aud"] = json!(["sonarr-api", 5]);
    assert_eq!(
        check(&token("ES256", "p256", &c)),
        Err(JwtError::BadPayload)
    );
}

#[test]
fn mapped_claims_become_headers_without_line_breaks() {
    let mut c = claims();
    c["tenant"] = json!("acme");
    c["roles"] = json!(["a", "b"]);
    let got = check(&token("ES256", "p256", &c)).unwrap();
    assert_eq!(
        got.extra,
        vec![
            ("x-tenant".to_string(), "acme".to_string()),
            ("x-roles".to_string(), "a,b".to_string())
        ]
    );
    c["tenant"] = json!("acme\r\nx-evil: 1");
    c["roles"] = json!({"not": "a list"});
    assert!(check(&token("ES256", "p256", &c)).unwrap().extra.is_empty());
}
