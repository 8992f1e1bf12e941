//! JWKS documents: arbitrary bytes → parse; a parsed set is then used to verify a fixed,
//! genuinely signed token of each algorithm (which verifies only if the set holds its key).
#![no_main]
use barbican::jwt::{verify, Alg, Validation};
use barbican_fuzz::{keys, Signer, TokenSpec, AUD, ISS, NOW_S};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn tokens() -> &'static Vec<String> {
    static T: OnceLock<Vec<String>> = OnceLock::new();
    T.get_or_init(|| {
        [Signer::Rsa, Signer::P256, Signer::Ed]
            .into_iter()
            .map(|s| {
                let mut u = arbitrary::Unstructured::new(&[]);
                let mut spec: TokenSpec =
                    arbitrary::Arbitrary::arbitrary(&mut u).expect("default spec");
                spec.signer = s;
                spec.right_iss = true;
                spec.aud = barbican_fuzz::Aud::Right;
                spec.exp = barbican_fuzz::Time::Rel(600);
                spec.sub = Some("u1".into());
                spec.raw = None;
                spec.flip = None;
                spec.build(None).token
            })
            .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    let _ = keys();
    let Ok(set) = barbican::jwks::parse(data) else {
        return;
    };
    let v = Validation {
        issuer: ISS.into(),
        audiences: vec![AUD.into()],
        algorithms: vec![Alg::RS256, Alg::ES256, Alg::EdDSA, Alg::PS256, Alg::ES384],
        clock_skew_s: 0,
        max_token_bytes: 16_384,
        required_claims: vec![],
        groups_claim: "groups".into(),
        hmac_secret: None,
        claim_headers: vec![],
    };
    for t in tokens() {
        let _ = verify(t, &set, &v, NOW_S);
    }
});
