//! What the fuzz targets share: fixed test keys that really sign (so the verifier gets past
//! the signature and runs its claim checks), tokens built from fuzzer-chosen parts, header
//! lists, and the engine configurations the whole-engine target drives.
//!
//! The keys are test keys, generated for these targets and the unit tests only (the RSA one
//! is `src/jwks/tests.rs`'s); nothing else uses them.

use arbitrary::Arbitrary;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use ring::signature::{self, KeyPair};
use serde_json::{json, Map, Value};
use std::sync::OnceLock;

/// 2023-11-14T22:13:20Z, the unit tests' clock.
pub const NOW_S: u64 = 1_700_000_000;
pub const NOW_MS: u64 = NOW_S * 1000;
pub const ISS: &str = "http://idp.test/realm/";
pub const AUD: &str = "api";
pub const HMAC_SECRET: &[u8] = b"fuzz-hmac-secret-0123456789abcdef";

const RSA_PKCS8: &str = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQCu1+6TrI9sJ9vr2T+6/b55m0GFHYIo5cS+fu5eZBIUmL4goYjuuKQO9EhleZO6hGzfHYMoa2vJC8kKyPZarIC0SRQatlfBp/JsE7WALrMPmz8zaowNXusB7rPOrmSa+67mo82QESyCgkAGlQI8Ez+kXWFav4WWwgt4OL8hJvKe8nAnAgOdq0/209xzQ77jsQ/WuG+z1QsFniiP02Q/eyiuo09xCKRjeMvcyntjbpmRWI2fiv5pqkBWzTD7CD5tOPM+kQ9BGfJaDAo4o7cBY2xNHr/2Ky4RYvjK7hv9jSKoGBI2WDOuEjx285nYNH/U080HvUO2SQQp14H56VYiMW6tAgMBAAECggEAUWiMFqlBjE/Qx7M7R8MO1YtTCfpv2MAHB9WNAlkgzANEf2gHHHPPO4FFVi4x+SXglVAl+gNuR8lbfdCNWDG6qXbfTAK7wJkEuIrCtyDHUcxstHF3LWCVFqzAfsrXYAww5wW82EgOy+N+kTH/PN6PguXRxxGmz0ehVIRDhdmfHR8pA6ob6/iJqCrF1W7bexOHuQxqHO/+YcgON3vxv+dgxglvrvb3DihzlAg7u7kkWvMwcAUgQEpRI9/eyGbREcL8ctyT8TgaHM1GbDEGt6TIYJz+VTQY7B7i1rintmKa1Arigb373hWsRPJs8YDffUmfDmN0wdSL64ECr+sd0yQKhwKBgQDyN/LMTePTPiF0eq8Hf+apbL867CLsl19Car6I38sQCj2RoJXpQcOKbxE2HV42AH3rDs0JOtUJRUcTlTZY1z8EBPspIKnyzs+GKz4a68l2r+NOWOgPKktXhbsmKF+i34PIP/kcyW2RyGaIh+IyyZtWHAz+RDZ/JqdMuuUji++BzwKBgQC4yqCQCJyh/n1GlV2aQgtAkYdRZuSmas1m/E2dI0ys8Gd0i7hzjUPVFluGTPtvhA45BBNUrCMewzmbG3Nk4N1DAevZvLhWc3hShoUkaV2sMdtOKKhictU2A7G6zMxWzuUMsXGaodVeZUFEAOEMLe5WLTF9FhRVc8RY7Vab/48SwwKBgQC7JGUQWuG6VZetkhhnd/d0UZQSZ124ZF/yRdz+jcIrm23kdSk+NlRpQdUPdXNTz9953E6oYe81IXR/+doqm+uRJHQVW6pS8ly+ceyjCif27oB2CRUKmofpkGZ/XdQ+V+lOr7a9+hcQ+r/Vnv8ydDfzOOsFDRj59phuHTxq0XR0WwKBgHEEbGLrAXEKBnBu1cqMbflViB8/AMTPOUStNoLOngx/E6bx9SOm2D+w5tUiq/yuFUzFs1Tr2qbr24WDqnWeGXTr7eVDSLKG+KXwY+m7D3FLJMeOkj1z4fahF8gZjTfiXa//rm1WYPrUjrAaoYkjZksKZOQN5u3EWefRcFEEYeqlAoGAU95JnCkihJoZcdB+YO9gdnMUCUZOeH2/fJgPDeRa8Jb8iZ2aHhJLsrnCtaOcQoiZYnOQPzelkw3r5vd+n++f/ahbfxqkELLdkYl4FzOjMbL8Y8WQKEJQ5TNZUyJokqH2e6oWx45EiIVIAXl4iZbhIHipgvSeozl2Q6RYmr0H6lk=";
const P256_PKCS8: &str = "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgTttS3J3AFrOddmogbJp7j/znCasngHy6sMSFfCTv7jShRANCAAQWIRDHYOjpDZaunhNrwy7c9r+I6Y1XVNXemi0OBZb/m42LtpNDjU7v9Y8J7Vwmjp9EiS/Y70lSnCUxFDPiGzvA";
const ED25519_SEED: [u8; 32] = [5; 32];

/// The three signing keys, built once per process.
pub struct Keys {
    rsa: signature::RsaKeyPair,
    p256: signature::EcdsaKeyPair,
    ed: signature::Ed25519KeyPair,
    rng: ring::rand::SystemRandom,
}

pub fn keys() -> &'static Keys {
    static K: OnceLock<Keys> = OnceLock::new();
    K.get_or_init(|| {
        let rng = ring::rand::SystemRandom::new();
        let der = |s: &str| STANDARD.decode(s).unwrap_or_default();
        #[allow(clippy::expect_used)]
        Keys {
            rsa: signature::RsaKeyPair::from_pkcs8(&der(RSA_PKCS8)).expect("rsa test key"),
            p256: signature::EcdsaKeyPair::from_pkcs8(
                &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                &der(P256_PKCS8),
                &rng,
            )
            .expect("p256 test key"),
            ed: signature::Ed25519KeyPair::from_seed_unchecked(&ED25519_SEED)
                .expect("ed25519 test key"),
            rng,
        }
    })
}

fn b64(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

impl Keys {
    /// The public JWKS: kids "rsa", "p256", "ed".
    pub fn jwks(&self) -> Value {
        let rsa: signature::RsaPublicKeyComponents<Vec<u8>> = self.rsa.public().into();
        let p = self.p256.public_key().as_ref();
        json!({"keys": [
            {"kty": "RSA", "kid": "rsa", "use": "sig", "alg": "RS256", "n": b64(&rsa.n), "e": b64(&rsa.e)},
            {"kty": "EC", "crv": "P-256", "kid": "p256", "x": b64(p.get(1..33).unwrap_or(&[])),
             "y": b64(p.get(33..65).unwrap_or(&[]))},
            {"kty": "OKP", "crv": "Ed25519", "kid": "ed", "x": b64(self.ed.public_key().as_ref())}
        ]})
    }

    pub fn jwks_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(&self.jwks()).unwrap_or_default()
    }

    /// The signature over `msg` by `who`; empty when signing fails (never expected).
    pub fn sign(&self, who: Signer, msg: &[u8]) -> Vec<u8> {
        match who {
            Signer::Rsa => {
                let mut sig = vec![0; self.rsa.public().modulus_len()];
                match self
                    .rsa
                    .sign(&signature::RSA_PKCS1_SHA256, &self.rng, msg, &mut sig)
                {
                    Ok(()) => sig,
                    Err(_) => Vec::new(),
                }
            }
            Signer::P256 => self
                .p256
                .sign(&self.rng, msg)
                .map(|s| s.as_ref().to_vec())
                .unwrap_or_default(),
            Signer::Ed => self.ed.sign(msg).as_ref().to_vec(),
            Signer::Hmac => hmac(HMAC_SECRET, msg),
            Signer::WrongHmac => hmac(b"not the secret", msg),
            Signer::Garbage => msg.iter().rev().take(64).copied().collect(),
        }
    }
}

fn hmac(secret: &[u8], msg: &[u8]) -> Vec<u8> {
    let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    ring::hmac::sign(&k, msg).as_ref().to_vec()
}

#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signer {
    Rsa,
    P256,
    Ed,
    Hmac,
    WrongHmac,
    Garbage,
}

impl Signer {
    /// The `alg` and `kid` this signer's tokens carry when the spec does not override them.
    pub fn alg_kid(self) -> (&'static str, Option<&'static str>) {
        match self {
            Signer::Rsa => ("RS256", Some("rsa")),
            Signer::P256 => ("ES256", Some("p256")),
            Signer::Ed => ("EdDSA", Some("ed")),
            Signer::Hmac | Signer::WrongHmac | Signer::Garbage => ("HS256", None),
        }
    }
}

/// A JSON value the fuzzer picks, shallow on purpose (depth is its own target: config).
#[derive(Arbitrary, Debug, Clone)]
pub enum Scalar {
    Null,
    Bool(bool),
    Int(i64),
    Uint(u64),
    Float(f64),
    Str(String),
    List(Vec<String>),
    Nums(Vec<i64>),
}

impl Scalar {
    pub fn to_json(&self) -> Value {
        match self {
            Scalar::Null => Value::Null,
            Scalar::Bool(b) => json!(b),
            Scalar::Int(i) => json!(i),
            Scalar::Uint(u) => json!(u),
            Scalar::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
            Scalar::Str(s) => json!(s),
            Scalar::List(l) => json!(l),
            Scalar::Nums(l) => json!(l),
        }
    }
}

/// A time claim: relative to now, absent, or an odd value.
#[derive(Arbitrary, Debug, Clone)]
pub enum Time {
    Rel(i32),
    Absent,
    Odd(Scalar),
}

impl Time {
    fn put(&self, claims: &mut Map<String, Value>, name: &str) {
        match self {
            Time::Rel(d) => {
                let t = i64::try_from(NOW_S).unwrap_or(0) + i64::from(*d);
                claims.insert(name.into(), json!(t));
            }
            Time::Absent => {}
            Time::Odd(s) => {
                claims.insert(name.into(), s.to_json());
            }
        }
    }
}

/// One token, described by parts: who signs it, what its header and claims say, and an
/// optional byte flip after signing.
#[derive(Arbitrary, Debug, Clone)]
pub struct TokenSpec {
    pub signer: Signer,
    pub alg: Option<String>,
    pub kid: Option<Option<String>>,
    pub typ: Option<String>,
    pub header_extra: Vec<(String, Scalar)>,
    pub right_iss: bool,
    pub iss: String,
    pub aud: Aud,
    pub exp: Time,
    pub nbf: Time,
    pub iat: Time,
    pub sub: Option<String>,
    pub scope: Option<Scalar>,
    pub groups: Option<Scalar>,
    pub nonce: Option<String>,
    pub claims_extra: Vec<(String, Scalar)>,
    /// (position, xor) applied to the finished token's bytes.
    pub flip: Option<(u16, u8)>,
    /// Replace the whole token with these bytes instead.
    pub raw: Option<String>,
}

#[derive(Arbitrary, Debug, Clone)]
pub enum Aud {
    Right,
    InList(Vec<String>),
    Other(Scalar),
    Absent,
}

/// A built token and what the verifier must conclude about it.
pub struct Built {
    pub token: String,
    /// Signed by a key the verifier holds, for an algorithm that key fits, unaltered.
    pub genuine: bool,
    pub right_iss: bool,
}

impl TokenSpec {
    /// The claims set, with `nonce` overriding the spec's when given.
    pub fn claims(&self, nonce: Option<&str>) -> Map<String, Value> {
        let mut c = Map::new();
        for (k, v) in &self.claims_extra {
            c.insert(k.clone(), v.to_json());
        }
        c.insert(
            "iss".into(),
            json!(if self.right_iss {
                ISS
            } else {
                self.iss.as_str()
            }),
        );
        match &self.aud {
            Aud::Right => {
                c.insert("aud".into(), json!(AUD));
            }
            Aud::InList(l) => {
                let mut l = l.clone();
                l.push(AUD.into());
                c.insert("aud".into(), json!(l));
            }
            Aud::Other(s) => {
                c.insert("aud".into(), s.to_json());
            }
            Aud::Absent => {
                c.remove("aud");
            }
        }
        self.exp.put(&mut c, "exp");
        self.nbf.put(&mut c, "nbf");
        self.iat.put(&mut c, "iat");
        if let Some(s) = &self.sub {
            c.insert("sub".into(), json!(s));
        }
        if let Some(s) = &self.scope {
            c.insert("scope".into(), s.to_json());
        }
        if let Some(g) = &self.groups {
            c.insert("groups".into(), g.to_json());
        }
        if let Some(n) = nonce.or(self.nonce.as_deref()) {
            c.insert("nonce".into(), json!(n));
        }
        c
    }

    /// Builds the token for issuer `iss` and audience `aud` claims as the spec says.
    pub fn build(&self, nonce: Option<&str>) -> Built {
        if let Some(raw) = &self.raw {
            return Built {
                token: raw.clone(),
                genuine: false,
                right_iss: false,
            };
        }
        let (alg, kid) = self.signer.alg_kid();
        let alg = self.alg.as_deref().unwrap_or(alg);
        let mut h = Map::new();
        for (k, v) in &self.header_extra {
            h.insert(k.clone(), v.to_json());
        }
        h.insert("alg".into(), json!(alg));
        match &self.kid {
            None => {
                if let Some(k) = kid {
                    h.insert("kid".into(), json!(k));
                }
            }
            Some(Some(k)) => {
                h.insert("kid".into(), json!(k));
            }
            Some(None) => {
                h.remove("kid");
            }
        }
        if let Some(t) = &self.typ {
            h.insert("typ".into(), json!(t));
        }
        let signed = format!(
            "{}.{}",
            b64(&serde_json::to_vec(&h).unwrap_or_default()),
            b64(&serde_json::to_vec(&self.claims(nonce)).unwrap_or_default())
        );
        let sig = keys().sign(self.signer, signed.as_bytes());
        let mut token = format!("{signed}.{}", b64(&sig)).into_bytes();
        let mut altered = false;
        if let Some((pos, x)) = self.flip {
            if x != 0 && !token.is_empty() {
                let i = usize::from(pos) % token.len();
                if let Some(b) = token.get_mut(i) {
                    *b ^= x;
                    altered = true;
                }
            }
        }
        let fits = matches!(
            (self.signer, alg),
            (Signer::Rsa, "RS256")
                | (Signer::P256, "ES256")
                | (Signer::Ed, "EdDSA")
                | (Signer::Hmac, "HS256")
        );
        Built {
            token: String::from_utf8_lossy(&token).into_owned(),
            genuine: fits && !altered,
            right_iss: self.right_iss,
        }
    }
}

/// A header list a fuzzer picks: names from a list the code cares about, or its own.
#[derive(Arbitrary, Debug, Clone)]
pub enum Name {
    Known(u8),
    Own(String),
}

pub const NAMES: &[&str] = &[
    ":method",
    ":path",
    ":authority",
    ":scheme",
    "host",
    "cookie",
    "authorization",
    "accept",
    "x-requested-with",
    "origin",
    "access-control-request-method",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-uri",
    "x-forwarded-method",
    "x-original-uri",
    "x-original-url",
    "x-authentik-username",
    "X_Authentik_Groups",
    "x-authentik-jwt",
    "remote-user",
    "remote-groups",
    "x-auth-request-user",
    "x-auth-request-groups",
    "x-auth-request-email",
    "x-trusted-user",
    "set-cookie",
    "location",
    "www-authenticate",
    "content-type",
    "x-authentik-uid",
    "x-authentik-email",
    "x-authentik-name",
    "x-authentik-groups",
    "remote-name",
    "remote-email",
    "x-auth-request-preferred-username",
    "x-auth-request-access-token",
    "x-tenant",
];

impl Name {
    pub fn get(&self) -> String {
        match self {
            Name::Known(i) => NAMES
                .get(usize::from(*i) % NAMES.len())
                .copied()
                .unwrap_or("x")
                .to_string(),
            Name::Own(s) => s.clone(),
        }
    }
}

pub fn header_list(h: &[(Name, String)]) -> Vec<(String, String)> {
    h.iter().map(|(n, v)| (n.get(), v.clone())).collect()
}
