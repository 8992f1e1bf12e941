//! JSON Web Key Sets (RFC 7517/7518/8037): the IdP's public keys, parsed once per fetch.
//!
//! Keys that cannot be used for signature verification here (encryption keys, unknown key
//! types or curves, RSA moduli under 2048 bits) are skipped, not fatal: an IdP may publish
//! them next to the signing keys. A set with no usable key at all is an error, so a broken
//! fetch never replaces a good set.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::Deserialize;
use std::fmt;

/// A JOSE signature algorithm (RFC 7518 §3.1, RFC 8037), as a provider allows it and a
/// key is used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(clippy::upper_case_acronyms)]
pub enum Alg {
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    EdDSA,
    HS256,
    HS384,
    HS512,
}

impl Alg {
    /// The JOSE name; `none` and anything unknown give `None`.
    pub fn parse(s: &str) -> Option<Alg> {
        Some(match s {
            "RS256" => Alg::RS256,
            "RS384" => Alg::RS384,
            "RS512" => Alg::RS512,
            "PS256" => Alg::PS256,
            "PS384" => Alg::PS384,
            "PS512" => Alg::PS512,
            "ES256" => Alg::ES256,
            "ES384" => Alg::ES384,
            "EdDSA" => Alg::EdDSA,
            "HS256" => Alg::HS256,
            "HS384" => Alg::HS384,
            "HS512" => Alg::HS512,
            _ => return None,
        })
    }

    pub fn is_hmac(self) -> bool {
        matches!(self, Alg::HS256 | Alg::HS384 | Alg::HS512)
    }
}

/// A verification key, as the bytes ring verifies with. A point that is not on its curve
/// fails every verification (ring checks it then), so such a key never lets a token through.
#[derive(Clone)]
pub enum KeyMaterial {
    /// Modulus and exponent, big-endian, without leading zeros.
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    /// SEC1 uncompressed point (`04 || x || y`).
    P256(Vec<u8>),
    P384(Vec<u8>),
    Ed25519([u8; 32]),
}

impl fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyMaterial::Rsa { .. } => "RSA",
            KeyMaterial::P256(_) => "EC P-256",
            KeyMaterial::P384(_) => "EC P-384",
            KeyMaterial::Ed25519(_) => "OKP Ed25519",
        })
    }
}

impl KeyMaterial {
    /// Whether this key can verify `alg` (RFC 7518 §3.1, RFC 8037 §3.1).
    pub fn fits(&self, alg: Alg) -> bool {
        matches!(
            (self, alg),
            (
                KeyMaterial::Rsa { .. },
                Alg::RS256 | Alg::RS384 | Alg::RS512 | Alg::PS256 | Alg::PS384 | Alg::PS512
            ) | (KeyMaterial::P256(_), Alg::ES256)
                | (KeyMaterial::P384(_), Alg::ES384)
                | (KeyMaterial::Ed25519(_), Alg::EdDSA)
        )
    }
}

#[derive(Debug, Clone)]
pub struct Jwk {
    pub kid: Option<String>,
    /// The `alg` the key is bound to, when the set says so.
    pub alg: Option<Alg>,
    pub key: KeyMaterial,
}

#[derive(Debug, Clone, Default)]
pub struct KeySet {
    pub keys: Vec<Jwk>,
    /// How many published keys were skipped as unusable (for logs).
    pub skipped: usize,
    /// A hash of the usable keys' ids and material in order: equal sets (a refetch, a file
    /// rewritten with the same keys) keep the tokens verified against them; a replaced key,
    /// even under the same `kid`, does not. Computed once here, never per request.
    pub fingerprint: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum JwksError {
    TooLarge,
    NotJson(String),
    NoKeysArray,
    TooManyKeys,
    NoUsableKey { published: usize },
}

impl fmt::Display for JwksError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JwksError::TooLarge => write!(f, "JWKS larger than {MAX_JWKS_BYTES} bytes"),
            JwksError::NotJson(e) => write!(f, "JWKS is not valid JSON: {e}"),
            JwksError::NoKeysArray => f.write_str("JWKS has no \"keys\" array"),
            JwksError::TooManyKeys => write!(f, "JWKS has more than {MAX_KEYS} keys"),
            JwksError::NoUsableKey { published } => write!(
                f,
                "none of the {published} published keys is a usable signature key \
                 (RSA >= 2048 bits, EC P-256/P-384, OKP Ed25519)"
            ),
        }
    }
}

pub const MAX_JWKS_BYTES: usize = 256 * 1024;
pub const MAX_KEYS: usize = 64;
const MIN_RSA_BITS: usize = 2048;
const MAX_RSA_BITS: usize = 8192;

#[derive(Deserialize)]
struct RawSet {
    keys: Option<Vec<serde_json::Value>>,
}

#[derive(Deserialize)]
struct RawKey {
    kty: Option<String>,
    kid: Option<String>,
    alg: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    key_ops: Option<Vec<String>>,
    crv: Option<String>,
    n: Option<String>,
    e: Option<String>,
    x: Option<String>,
    y: Option<String>,
    /// Private parts: a set that carries them is a misconfiguration, but public use of
    /// the key is still correct; they are never read.
    #[serde(default)]
    d: Option<serde_json::Value>,
}

/// Parses a JWKS document.
pub fn parse(json: &[u8]) -> Result<KeySet, JwksError> {
    if json.len() > MAX_JWKS_BYTES {
        return Err(JwksError::TooLarge);
    }
    let raw: RawSet =
        serde_json::from_slice(json).map_err(|e| JwksError::NotJson(e.to_string()))?;
    let keys = raw.keys.ok_or(JwksError::NoKeysArray)?;
    if keys.len() > MAX_KEYS {
        return Err(JwksError::TooManyKeys);
    }
    let published = keys.len();
    let mut set = KeySet::default();
    for k in keys {
        match serde_json::from_value::<RawKey>(k).ok().and_then(parse_key) {
            Some(jwk) => set.keys.push(jwk),
            None => set.skipped += 1,
        }
    }
    if set.keys.is_empty() {
        return Err(JwksError::NoUsableKey { published });
    }
    set.fingerprint = fingerprint(&set.keys);
    Ok(set)
}

/// FNV-1a over each key's kid, alg and material, with separators: not a defence against a
/// chosen collision (the keys come from the operator or the IdP), only a change detector.
fn fingerprint(keys: &[Jwk]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325_u64;
    let mut eat = |bytes: &[u8]| {
        for b in bytes.iter().copied().chain([0xff]) {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    };
    for k in keys {
        eat(k.kid.as_deref().unwrap_or("").as_bytes());
        eat(&[k.alg.map_or(0xfe, |a| a as u8)]);
        match &k.key {
            KeyMaterial::Rsa { n, e } => {
                eat(b"RSA");
                eat(n);
                eat(e);
            }
            KeyMaterial::P256(p) => {
                eat(b"P-256");
                eat(p);
            }
            KeyMaterial::P384(p) => {
                eat(b"P-384");
                eat(p);
            }
            KeyMaterial::Ed25519(x) => {
                eat(b"Ed25519");
                eat(x);
            }
        }
    }
    h
}

fn b64(s: &Option<String>) -> Option<Vec<u8>> {
    let s = s.as_deref()?;
    if s.len() > 4096 {
        return None;
    }
    URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')).ok()
}

fn parse_key(k: RawKey) -> Option<Jwk> {
    let _ = &k.d;
    if k.use_.as_deref().is_some_and(|u| u != "sig") {
        return None;
    }
    if let Some(ops) = &k.key_ops {
        if !ops.iter().any(|o| o == "verify") {
            return None;
        }
    }
    let alg = match &k.alg {
        Some(a) => Some(Alg::parse(a)?),
        None => None,
    };
    let key = match (k.kty.as_deref()?, k.crv.as_deref()) {
        ("RSA", _) => {
            let n = b64(&k.n)?;
            let e = b64(&k.e)?;
            let n = strip_leading_zeros(&n).to_vec();
            let e = strip_leading_zeros(&e).to_vec();
            let bits = n.len() * 8;
            // ring verifies 2048..=8192-bit moduli with exponents of at most 33 bits.
            if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) || e.is_empty() || e.len() > 4 {
                return None;
            }
            KeyMaterial::Rsa { n, e }
        }
        ("EC", Some("P-256")) => {
            KeyMaterial::P256(sec1_uncompressed(&b64(&k.x)?, &b64(&k.y)?, 32)?)
        }
        ("EC", Some("P-384")) => {
            KeyMaterial::P384(sec1_uncompressed(&b64(&k.x)?, &b64(&k.y)?, 48)?)
        }
        ("OKP", Some("Ed25519")) => KeyMaterial::Ed25519(b64(&k.x)?.try_into().ok()?),
        _ => return None,
    };
    if let Some(a) = alg {
        if !key.fits(a) {
            return None;
        }
    }
    Some(Jwk {
        kid: k.kid,
        alg,
        key,
    })
}

fn strip_leading_zeros(b: &[u8]) -> &[u8] {
    let first = b.iter().position(|x| *x != 0).unwrap_or(b.len());
    b.get(first..).unwrap_or_default()
}

/// `04 || x || y`, each coordinate exactly `len` bytes (RFC 7518 §6.2.1.2).
fn sec1_uncompressed(x: &[u8], y: &[u8], len: usize) -> Option<Vec<u8>> {
    if x.len() != len || y.len() != len {
        return None;
    }
    let mut p = Vec::with_capacity(1 + 2 * len);
    p.push(4);
    p.extend_from_slice(x);
    p.extend_from_slice(y);
    Some(p)
}

#[cfg(test)]
pub(crate) mod tests;
