//! Key fixtures shared by the JWKS and JWT tests: fixed keys (generated for these tests
//! only, never used anywhere else), a signer per algorithm, and JWKS documents built from them.

use super::*;
use base64::engine::general_purpose::STANDARD;
use rsa::pkcs8::DecodePrivateKey;
use rsa::traits::PublicKeyParts;
use serde_json::{json, Value};

/// A 2048-bit RSA test key (PKCS#8 DER, base64).
const RSA_PKCS8: &str = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQCu1+6TrI9sJ9vr2T+6/b55m0GFHYIo5cS+fu5eZBIUmL4goYjuuKQO9EhleZO6hGzfHYMoa2vJC8kKyPZarIC0SRQatlfBp/JsE7WALrMPmz8zaowNXusB7rPOrmSa+67mo82QESyCgkAGlQI8Ez+kXWFav4WWwgt4OL8hJvKe8nAnAgOdq0/209xzQ77jsQ/WuG+z1QsFniiP02Q/eyiuo09xCKRjeMvcyntjbpmRWI2fiv5pqkBWzTD7CD5tOPM+kQ9BGfJaDAo4o7cBY2xNHr/2Ky4RYvjK7hv9jSKoGBI2WDOuEjx285nYNH/U080HvUO2SQQp14H56VYiMW6tAgMBAAECggEAUWiMFqlBjE/Qx7M7R8MO1YtTCfpv2MAHB9WNAlkgzANEf2gHHHPPO4FFVi4x+SXglVAl+gNuR8lbfdCNWDG6qXbfTAK7wJkEuIrCtyDHUcxstHF3LWCVFqzAfsrXYAww5wW82EgOy+N+kTH/PN6PguXRxxGmz0ehVIRDhdmfHR8pA6ob6/iJqCrF1W7bexOHuQxqHO/+YcgON3vxv+dgxglvrvb3DihzlAg7u7kkWvMwcAUgQEpRI9/eyGbREcL8ctyT8TgaHM1GbDEGt6TIYJz+VTQY7B7i1rintmKa1Arigb373hWsRPJs8YDffUmfDmN0wdSL64ECr+sd0yQKhwKBgQDyN/LMTePTPiF0eq8Hf+apbL867CLsl19Car6I38sQCj2RoJXpQcOKbxE2HV42AH3rDs0JOtUJRUcTlTZY1z8EBPspIKnyzs+GKz4a68l2r+NOWOgPKktXhbsmKF+i34PIP/kcyW2RyGaIh+IyyZtWHAz+RDZ/JqdMuuUji++BzwKBgQC4yqCQCJyh/n1GlV2aQgtAkYdRZuSmas1m/E2dI0ys8Gd0i7hzjUPVFluGTPtvhA45BBNUrCMewzmbG3Nk4N1DAevZvLhWc3hShoUkaV2sMdtOKKhictU2A7G6zMxWzuUMsXGaodVeZUFEAOEMLe5WLTF9FhRVc8RY7Vab/48SwwKBgQC7JGUQWuG6VZetkhhnd/d0UZQSZ124ZF/yRdz+jcIrm23kdSk+NlRpQdUPdXNTz9953E6oYe81IXR/+doqm+uRJHQVW6pS8ly+ceyjCif27oB2CRUKmofpkGZ/XdQ+V+lOr7a9+hcQ+r/Vnv8ydDfzOOsFDRj59phuHTxq0XR0WwKBgHEEbGLrAXEKBnBu1cqMbflViB8/AMTPOUStNoLOngx/E6bx9SOm2D+w5tUiq/yuFUzFs1Tr2qbr24WDqnWeGXTr7eVDSLKG+KXwY+m7D3FLJMeOkj1z4fahF8gZjTfiXa//rm1WYPrUjrAaoYkjZksKZOQN5u3EWefRcFEEYeqlAoGAU95JnCkihJoZcdB+YO9gdnMUCUZOeH2/fJgPDeRa8Jb8iZ2aHhJLsrnCtaOcQoiZYnOQPzelkw3r5vd+n++f/ahbfxqkELLdkYl4FzOjMbL8Y8WQKEJQ5TNZUyJokqH2e6oWx45EiIVIAXl4iZbhIHipgvSeozl2Q6RYmr0H6lk=";

pub(crate) fn rsa_private() -> rsa::PrivateKey {
    rsa::PrivateKey::from_pkcs8_der(&STANDARD.decode(RSA_PKCS8).unwrap()).unwrap()
}

pub(crate) fn p256_private() -> p256::ecdsa::SigningKey {
    p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap()
}

pub(crate) fn p384_private() -> p384::ecdsa::SigningKey {
    p384::ecdsa::SigningKey::from_slice(&[9u8; 48]).unwrap()
}

pub(crate) fn ed25519_private() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[5u8; 32])
}

fn b64u(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

pub(crate) fn rsa_jwk(kid: &str) -> Value {
    let k = rsa_private().to_public_key();
    json!({"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
           "n": b64u(&k.n().to_be_bytes_trimmed_vartime()), "e": b64u(&k.e().to_be_bytes_trimmed_vartime())})
}

pub(crate) fn rsa_jwk_any_alg(kid: &str) -> Value {
    let mut j = rsa_jwk(kid);
    j.as_object_mut().unwrap().remove("alg");
    j
}

pub(crate) fn p256_jwk(kid: &str) -> Value {
    let p = p256_private().verifying_key().to_sec1_point(false);
    let b = p.as_bytes();
    json!({"kty": "EC", "crv": "P-256", "kid": kid, "x": b64u(&b[1..33]), "y": b64u(&b[33..65])})
}

pub(crate) fn p384_jwk(kid: &str) -> Value {
    let p = p384_private().verifying_key().to_sec1_point(false);
    let b = p.as_bytes();
    json!({"kty": "EC", "crv": "P-384", "kid": kid, "x": b64u(&b[1..49]), "y": b64u(&b[49..97])})
}

pub(crate) fn ed25519_jwk(kid: &str) -> Value {
    json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": b64u(ed25519_private().verifying_key().as_bytes())})
}

pub(crate) fn set_of(keys: Vec<Value>) -> KeySet {
    parse(&serde_json::to_vec(&json!({ "keys": keys })).unwrap()).unwrap()
}

/// All four test keys, kids "rsa", "p256", "p384", "ed".
pub(crate) fn all_keys() -> KeySet {
    set_of(vec![
        rsa_jwk_any_alg("rsa"),
        p256_jwk("p256"),
        p384_jwk("p384"),
        ed25519_jwk("ed"),
    ])
}

#[test]
fn every_supported_key_type_parses() {
    let set = all_keys();
    assert_eq!(set.keys.len(), 4);
    assert_eq!(set.skipped, 0);
    assert_eq!(format!("{:?}", set.keys[0].key), "RSA");
}

#[test]
fn unusable_keys_are_skipped_not_fatal() {
    let set = set_of(vec![
        rsa_jwk("good"),
        json!({"kty": "RSA", "kid": "enc", "use": "enc", "n": "AQAB", "e": "AQAB"}),
        json!({"kty": "oct", "k": "c2VjcmV0"}),
        json!({"kty": "EC", "crv": "secp256k1", "x": "AA", "y": "AA"}),
        json!({"kty": "EC", "crv": "P-256", "x": "AAAA", "y": "AAAA"}),
        json!({"kty": "RSA", "n": b64u(&[0xff; 128]), "e": "AQAB"}),
        json!({"kty": "OKP", "crv": "X25519", "x": b64u(&[1; 32])}),
        json!("not an object"),
    ]);
    assert_eq!(set.keys.len(), 1);
    assert_eq!(set.skipped, 7);
}

#[test]
fn a_key_whose_alg_does_not_fit_its_type_is_skipped() {
    let mut k = p256_jwk("x");
    k["alg"] = json!("RS256");
    let doc = serde_json::to_vec(&json!({ "keys": [k] })).unwrap();
    assert_eq!(
        parse(&doc).unwrap_err(),
        JwksError::NoUsableKey { published: 1 }
    );
}

#[test]
fn broken_documents_are_errors() {
    assert!(matches!(parse(b"not json"), Err(JwksError::NotJson(_))));
    assert_eq!(parse(b"{}").unwrap_err(), JwksError::NoKeysArray);
    assert_eq!(
        parse(br#"{"keys": []}"#).unwrap_err(),
        JwksError::NoUsableKey { published: 0 }
    );
    let many: Vec<Value> = (0..65).map(|i| ed25519_jwk(&i.to_string())).collect();
    assert_eq!(
        parse(&serde_json::to_vec(&json!({ "keys": many })).unwrap()).unwrap_err(),
        JwksError::TooManyKeys
    );
    assert_eq!(
        parse(&vec![b' '; MAX_JWKS_BYTES + 1]).unwrap_err(),
        JwksError::TooLarge
    );
}
