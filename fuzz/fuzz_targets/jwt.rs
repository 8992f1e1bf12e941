//! JWT parse + verify against a real key set (RSA, P-256, Ed25519 and an HMAC secret), with
//! tokens the fuzzer assembles from parts and really signs, so the claim checks run. Oracle:
//! a token verifies only if a held key signed it for an algorithm that key fits, unaltered,
//! with the right issuer and audience, and not expired.
#![no_main]
use barbican::jwt::{verify, Alg, Validation};
use barbican_fuzz::{keys, TokenSpec, AUD, HMAC_SECRET, ISS, NOW_S};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn keyset() -> &'static barbican::jwks::KeySet {
    static K: OnceLock<barbican::jwks::KeySet> = OnceLock::new();
    K.get_or_init(|| barbican::jwks::parse(&keys().jwks_bytes()).expect("the test JWKS parses"))
}

fn validation(skew: u8, hmac: bool) -> Validation {
    Validation {
        issuer: ISS.into(),
        audiences: vec![AUD.into(), "other".into()],
        algorithms: vec![
            Alg::RS256,
            Alg::ES256,
            Alg::EdDSA,
            Alg::HS256,
            Alg::PS256,
            Alg::ES384,
        ],
        clock_skew_s: u64::from(skew),
        max_token_bytes: 16_384,
        required_claims: vec!["sub".into()],
        groups_claim: "groups".into(),
        hmac_secret: hmac.then(|| HMAC_SECRET.to_vec()),
        claim_headers: vec![("x-tenant".into(), "tenant".into())],
    }
}

fuzz_target!(|input: (TokenSpec, u8, bool, i16)| {
    let (spec, skew, hmac, clock) = input;
    let built = spec.build(None);
    let now = NOW_S.saturating_add_signed(i64::from(clock));
    let v = validation(skew, hmac);
    if let Ok(claims) = verify(&built.token, keyset(), &v, now) {
        assert!(
            built.genuine,
            "verified a token no held key signed: {spec:?}"
        );
        assert!(built.right_iss, "verified a wrong issuer: {spec:?}");
        assert!(claims.sub.is_some(), "verified without the required sub");
        assert!(
            claims.exp.saturating_add(u64::from(skew)) >= now,
            "verified an expired token: exp {} now {now}",
            claims.exp
        );
    }
});
