//! First-sight JWT verification cost: `barbican::jwt::verify` on one token per algorithm,
//! timed over many iterations after a warm-up (V8 tiers wasm up from Liftoff to TurboFan).
//!
//! Prints one JSON object:
//! `{"RS256": {"us": median µs per verify, "cpu_us", "wall_us", "min_wall_us", "first_us",
//! "iterations", "batches", "token_bytes"}, ...}` ("us" is the CPU-time figure when the host
//! provides the process CPU clock, as node's WASI does).
//!
//! Keys are the fixed test keys of src/jwks/tests.rs (generated for tests only); that module
//! is cfg(test), so the few lines needed are repeated here.

use barbican::jwks::KeySet;
use barbican::jwt::{self, Validation};
use barbican::{config, tokens};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use rsa::pkcs8::DecodePrivateKey;
use rsa::traits::PublicKeyParts;
use serde_json::{json, Value};
use sha2::Sha256;
use std::hint::black_box;
use std::time::{Duration, Instant};

/// The 2048-bit RSA test key of src/jwks/tests.rs (PKCS#8 DER, base64).
const RSA_PKCS8: &str = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQCu1+6TrI9sJ9vr2T+6/b55m0GFHYIo5cS+fu5eZBIUmL4goYjuuKQO9EhleZO6hGzfHYMoa2vJC8kKyPZarIC0SRQatlfBp/JsE7WALrMPmz8zaowNXusB7rPOrmSa+67mo82QESyCgkAGlQI8Ez+kXWFav4WWwgt4OL8hJvKe8nAnAgOdq0/209xzQ77jsQ/WuG+z1QsFniiP02Q/eyiuo09xCKRjeMvcyntjbpmRWI2fiv5pqkBWzTD7CD5tOPM+kQ9BGfJaDAo4o7cBY2xNHr/2Ky4RYvjK7hv9jSKoGBI2WDOuEjx285nYNH/U080HvUO2SQQp14H56VYiMW6tAgMBAAECggEAUWiMFqlBjE/Qx7M7R8MO1YtTCfpv2MAHB9WNAlkgzANEf2gHHHPPO4FFVi4x+SXglVAl+gNuR8lbfdCNWDG6qXbfTAK7wJkEuIrCtyDHUcxstHF3LWCVFqzAfsrXYAww5wW82EgOy+N+kTH/PN6PguXRxxGmz0ehVIRDhdmfHR8pA6ob6/iJqCrF1W7bexOHuQxqHO/+YcgON3vxv+dgxglvrvb3DihzlAg7u7kkWvMwcAUgQEpRI9/eyGbREcL8ctyT8TgaHM1GbDEGt6TIYJz+VTQY7B7i1rintmKa1Arigb373hWsRPJs8YDffUmfDmN0wdSL64ECr+sd0yQKhwKBgQDyN/LMTePTPiF0eq8Hf+apbL867CLsl19Car6I38sQCj2RoJXpQcOKbxE2HV42AH3rDs0JOtUJRUcTlTZY1z8EBPspIKnyzs+GKz4a68l2r+NOWOgPKktXhbsmKF+i34PIP/kcyW2RyGaIh+IyyZtWHAz+RDZ/JqdMuuUji++BzwKBgQC4yqCQCJyh/n1GlV2aQgtAkYdRZuSmas1m/E2dI0ys8Gd0i7hzjUPVFluGTPtvhA45BBNUrCMewzmbG3Nk4N1DAevZvLhWc3hShoUkaV2sMdtOKKhictU2A7G6zMxWzuUMsXGaodVeZUFEAOEMLe5WLTF9FhRVc8RY7Vab/48SwwKBgQC7JGUQWuG6VZetkhhnd/d0UZQSZ124ZF/yRdz+jcIrm23kdSk+NlRpQdUPdXNTz9953E6oYe81IXR/+doqm+uRJHQVW6pS8ly+ceyjCif27oB2CRUKmofpkGZ/XdQ+V+lOr7a9+hcQ+r/Vnv8ydDfzOOsFDRj59phuHTxq0XR0WwKBgHEEbGLrAXEKBnBu1cqMbflViB8/AMTPOUStNoLOngx/E6bx9SOm2D+w5tUiq/yuFUzFs1Tr2qbr24WDqnWeGXTr7eVDSLKG+KXwY+m7D3FLJMeOkj1z4fahF8gZjTfiXa//rm1WYPrUjrAaoYkjZksKZOQN5u3EWefRcFEEYeqlAoGAU95JnCkihJoZcdB+YO9gdnMUCUZOeH2/fJgPDeRa8Jb8iZ2aHhJLsrnCtaOcQoiZYnOQPzelkw3r5vd+n++f/ahbfxqkELLdkYl4FzOjMbL8Y8WQKEJQ5TNZUyJokqH2e6oWx45EiIVIAXl4iZbhIHipgvSeozl2Q6RYmr0H6lk=";

const NOW: u64 = 1_700_000_000;
const ISS: &str = "https://auth.lan/application/o/sonarr/";

/// Measured batches per algorithm (the median is reported) and the time each one lasts.
const BATCHES: usize = 7;
const BATCH_TIME: Duration = Duration::from_millis(250);
const WARMUP_TIME: Duration = Duration::from_millis(400);

fn b64u(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

fn rsa_private() -> rsa::PrivateKey {
    let der = STANDARD.decode(RSA_PKCS8).expect("test key base64");
    rsa::PrivateKey::from_pkcs8_der(&der).expect("test key PKCS#8")
}

fn p256_private() -> p256::ecdsa::SigningKey {
    p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).expect("p256 test key")
}

fn ed25519_private() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[5u8; 32])
}

/// A JWKS like an IdP's: one key per algorithm, each with a `kid` and `alg`.
fn jwks_doc() -> Value {
    let r = rsa_private().to_public_key();
    let p = p256_private().verifying_key().to_sec1_point(false);
    let p = p.as_bytes();
    let doc = json!({"keys": [
        {"kty": "RSA", "kid": "rsa", "use": "sig", "alg": "RS256",
         "n": b64u(&r.n().to_be_bytes_trimmed_vartime()),
         "e": b64u(&r.e().to_be_bytes_trimmed_vartime())},
        {"kty": "EC", "crv": "P-256", "kid": "p256", "use": "sig", "alg": "ES256",
         "x": b64u(&p[1..33]), "y": b64u(&p[33..65])},
        {"kty": "OKP", "crv": "Ed25519", "kid": "ed", "use": "sig", "alg": "EdDSA",
         "x": b64u(ed25519_private().verifying_key().as_bytes())},
    ]});
    doc
}

fn sign(alg: &str, msg: &[u8]) -> Vec<u8> {
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
        "EdDSA" => ed25519_dalek::Signer::sign(&ed25519_private(), msg)
            .to_bytes()
            .to_vec(),
        other => unreachable!("no signer for {other}"),
    }
}

/// An RFC 9068 access token shaped like the test IdP's.
fn token(alg: &str, kid: &str) -> String {
    let header = json!({"alg": alg, "kid": kid, "typ": "at+jwt"});
    let claims: Value = json!({
        "iss": ISS, "aud": "sonarr-api", "sub": "api-admin", "client_id": "api-admin",
        "username": "api-admin", "jti": "5b0b7c0e4f9f4c1c9b0d3f5e2a7c8d90",
        "iat": NOW, "exp": NOW + 600, "scope": "read write", "groups": ["admins", "users"]});
    let signed = format!(
        "{}.{}",
        b64u(&serde_json::to_vec(&header).expect("json")),
        b64u(&serde_json::to_vec(&claims).expect("json"))
    );
    let sig = sign(alg, signed.as_bytes());
    format!("{signed}.{}", b64u(&sig))
}

/// The key set and validation rules exactly as the filter builds them from its configuration
/// (a provider with an inline JWKS), so the bench follows the filter's own code path.
/// The Barbican config the bench verifies under: one provider with the test keys inline.
fn bench_config() -> Value {
    json!({
        "jwt": {"providers": [{"name": "bench", "issuer": ISS, "audiences": ["sonarr-api"],
                               "algorithms": ["RS256", "ES256", "EdDSA"],
                               "jwks": {"inline": jwks_doc()}}]},
        "routes": [{"match": {"path_prefix": "/"}, "policy": "api", "accept": ["jwt"]}],
    })
}

fn provider() -> (KeySet, Validation) {
    let cfg = bench_config();
    let cfg = config::parse(&serde_json::to_vec(&cfg).expect("json"))
        .unwrap_or_else(|e| unreachable!("bench config refused: {e:?}"));
    let p = tokens::providers(cfg.jwt.as_ref())
        .into_iter()
        .next()
        .expect("one provider");
    let keys = p.keys.as_deref().cloned().expect("inline JWKS parsed");
    (keys, p.validation)
}

fn verify_n(tok: &str, keys: &KeySet, v: &Validation, n: u64) {
    for _ in 0..n {
        let r = jwt::verify(black_box(tok), black_box(keys), v, NOW);
        assert!(black_box(r).is_ok(), "verification failed");
    }
}

/// The process's CPU time (WASI `clock_time_get(PROCESS_CPUTIME_ID)`; node answers it with
/// getrusage). Steadier than wall time on a machine other jobs share; `None` natively.
#[cfg(all(target_arch = "wasm32", target_os = "wasi"))]
fn cpu_now() -> Option<Duration> {
    #[link(wasm_import_module = "wasi_snapshot_preview1")]
    extern "C" {
        fn clock_time_get(id: u32, precision: u64, time: *mut u64) -> u16;
    }
    let mut t = 0u64;
    // SAFETY: a WASI preview1 import writing one u64 through a valid pointer.
    let errno = unsafe { clock_time_get(2, 1, &mut t) };
    (errno == 0).then(|| Duration::from_nanos(t))
}

#[cfg(not(all(target_arch = "wasm32", target_os = "wasi")))]
fn cpu_now() -> Option<Duration> {
    None
}

fn measure(alg: &str, kid: &str, keys: &KeySet, v: &Validation) -> Value {
    let tok = token(alg, kid);
    // The very first call runs baseline-compiled (Liftoff) code: what a fresh VM pays once.
    let t = Instant::now();
    verify_n(&tok, keys, v, 1);
    let first_us = t.elapsed().as_secs_f64() * 1e6;
    // Warm-up: V8 tiers hot wasm functions up to TurboFan.
    let t = Instant::now();
    let mut warm = 0u64;
    while t.elapsed() < WARMUP_TIME {
        verify_n(&tok, keys, v, 1);
        warm += 1;
    }
    let per_batch =
        ((warm as f64 * BATCH_TIME.as_secs_f64() / WARMUP_TIME.as_secs_f64()) as u64).max(5);
    let mut wall: Vec<f64> = Vec::with_capacity(BATCHES);
    let mut cpu: Vec<f64> = Vec::with_capacity(BATCHES);
    for _ in 0..BATCHES {
        let c = cpu_now();
        let t = Instant::now();
        verify_n(&tok, keys, v, per_batch);
        wall.push(t.elapsed().as_secs_f64() * 1e6 / per_batch as f64);
        if let (Some(c0), Some(c1)) = (c, cpu_now()) {
            cpu.push((c1 - c0).as_secs_f64() * 1e6 / per_batch as f64);
        }
    }
    wall.sort_by(f64::total_cmp);
    cpu.sort_by(f64::total_cmp);
    let r1 = |x: f64| (x * 10.0).round() / 10.0;
    let median = |xs: &[f64]| xs.get(xs.len() / 2).copied().map(r1);
    json!({
        // CPU time per verify when the host gives it, else wall time.
        "us": median(&cpu).or(median(&wall)),
        "cpu_us": median(&cpu),
        "wall_us": median(&wall),
        "min_wall_us": r1(wall[0]),
        "first_us": r1(first_us),
        "iterations": per_batch * BATCHES as u64,
        "batches": BATCHES,
        "token_bytes": tok.len(),
    })
}

/// Median µs per call of `f` (CPU time when the host gives it) over batches after a warm-up.
fn time_us(mut f: impl FnMut() -> bool) -> f64 {
    let t = Instant::now();
    let mut warm = 0u64;
    while t.elapsed() < WARMUP_TIME {
        assert!(black_box(f()), "verification failed");
        warm += 1;
    }
    let n = ((warm as f64 * BATCH_TIME.as_secs_f64() / WARMUP_TIME.as_secs_f64()) as u64).max(5);
    let mut xs: Vec<f64> = (0..BATCHES)
        .map(|_| {
            let (c, t) = (cpu_now(), Instant::now());
            for _ in 0..n {
                assert!(black_box(f()), "verification failed");
            }
            match (c, cpu_now()) {
                (Some(c0), Some(c1)) => (c1 - c0).as_secs_f64(),
                _ => t.elapsed().as_secs_f64(),
            }
        })
        .map(|s| s * 1e6 / n as f64)
        .collect();
    xs.sort_by(f64::total_cmp);
    (xs[xs.len() / 2] * 10.0).round() / 10.0
}

/// The signature check alone (SHA-256 of the signing input included, no JOSE parsing), per
/// reviewed crate: which one is fastest in V8 for each algorithm. The `rsa`, `p256` and
/// `ed25519-dalek` keys are parsed once outside the loop (they can be cached per key set);
/// ring's API parses the public key on every call.
fn crates() -> Value {
    use ring::signature as rs;
    let msg = b"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJiZW5jaCJ9".repeat(8);
    let rsa_pub = rsa_private().to_public_key();
    let (n, e) = (
        rsa_pub.n().to_be_bytes_trimmed_vartime().to_vec(),
        rsa_pub.e().to_be_bytes_trimmed_vartime().to_vec(),
    );
    let rsa_sig = sign("RS256", &msg);
    let rsa_vk = rsa::pkcs1v15::VerifyingKey::<Sha256>::new(rsa_pub.clone());
    let rsa_sig_t = rsa::pkcs1v15::Signature::try_from(rsa_sig.as_slice()).expect("sig");
    let ec_sig = sign("ES256", &msg);
    let ec_vk = *p256_private().verifying_key();
    let ec_pt = ec_vk.to_sec1_point(false).as_bytes().to_vec();
    let ec_sig_t = p256::ecdsa::Signature::from_slice(&ec_sig).expect("sig");
    let ed_sig = sign("EdDSA", &msg);
    let ed_vk = ed25519_private().verifying_key();
    let ed_pk = ed_vk.as_bytes().to_vec();
    let ed_sig_t = ed25519_dalek::Signature::from_slice(&ed_sig).expect("sig");
    json!({
        "RS256_ring": time_us(|| rs::RsaPublicKeyComponents { n: &n, e: &e }
            .verify(&rs::RSA_PKCS1_2048_8192_SHA256, &msg, &rsa_sig).is_ok()),
        "RS256_rsa": time_us(|| rsa::signature::Verifier::verify(&rsa_vk, &msg, &rsa_sig_t).is_ok()),
        "ES256_ring": time_us(|| rs::UnparsedPublicKey::new(&rs::ECDSA_P256_SHA256_FIXED, &ec_pt)
            .verify(&msg, &ec_sig).is_ok()),
        "ES256_p256": time_us(|| p256::ecdsa::signature::Verifier::verify(&ec_vk, &msg, &ec_sig_t).is_ok()),
        "EdDSA_ring": time_us(|| rs::UnparsedPublicKey::new(&rs::ED25519, &ed_pk)
            .verify(&msg, &ed_sig).is_ok()),
        "EdDSA_dalek": time_us(|| ed_vk.verify_strict(&msg, &ed_sig_t).is_ok()),
    })
}

fn main() {
    // bench/verify-envoy's plugin configuration: the same config and tokens, verified
    // inside Envoy.
    if std::env::args().any(|a| a == "--fixture") {
        let tokens: serde_json::Map<String, Value> =
            [("RS256", "rsa"), ("ES256", "p256"), ("EdDSA", "ed")]
                .iter()
                .map(|(alg, kid)| ((*alg).to_owned(), Value::String(token(alg, kid))))
                .collect();
        println!(
            "{}",
            json!({"config": bench_config(), "now_s": NOW, "tokens": tokens})
        );
        return;
    }
    let (keys, v) = provider();
    let mut out = serde_json::Map::new();
    for (alg, kid) in [("RS256", "rsa"), ("ES256", "p256"), ("EdDSA", "ed")] {
        out.insert(alg.into(), measure(alg, kid, &keys, &v));
    }
    if std::env::args().any(|a| a == "--crates") {
        out.insert("crates".into(), crates());
    }
    println!("{}", Value::Object(out));
}
