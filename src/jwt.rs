//! Compact JWS access tokens (RFC 7519, RFC 9068): parse strictly, verify the signature
//! against the provider's key set, then check the claims.
//!
//! The order matters: nothing from the payload is trusted before the signature is, and the
//! algorithm comes from the provider's allowlist, never from the token alone — `none` is
//! never accepted and an HMAC algorithm is never checked against a public key (the classic
//! "HS256 signed with the RSA public key" forgery).

/// The algorithms live with the key sets (`jwks` owns them: a key is for one algorithm
/// family); re-exported here, where tokens name them.
pub use crate::jwks::Alg;
use crate::jwks::{KeyMaterial, KeySet};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::fmt;

/// Why a token was refused. The `Display` form is a stable reason code for logs; it never
/// contains token material.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum JwtError {
    TooLong,
    Malformed,
    BadHeader,
    /// A `crit` header: extensions we do not understand must not be ignored (RFC 7515 §4.1.11).
    CritUnsupported,
    BadType,
    UnknownAlg,
    AlgNotAllowed,
    /// No key with the token's `kid`: the set may need a refetch.
    UnknownKid,
    NoMatchingKey,
    BadSignature,
    BadPayload,
    Expired,
    NotYetValid,
    MissingExp,
    WrongIssuer,
    WrongAudience,
    MissingClaim,
}

impl fmt::Display for JwtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            JwtError::TooLong => "jwt_too_long",
            JwtError::Malformed => "jwt_malformed",
            JwtError::BadHeader => "jwt_bad_header",
            JwtError::CritUnsupported => "jwt_crit_unsupported",
            JwtError::BadType => "jwt_bad_typ",
            JwtError::UnknownAlg => "jwt_unknown_alg",
            JwtError::AlgNotAllowed => "jwt_alg_not_allowed",
            JwtError::UnknownKid => "jwt_unknown_kid",
            JwtError::NoMatchingKey => "jwt_no_matching_key",
            JwtError::BadSignature => "jwt_bad_signature",
            JwtError::BadPayload => "jwt_bad_payload",
            JwtError::Expired => "jwt_expired",
            JwtError::NotYetValid => "jwt_not_yet_valid",
            JwtError::MissingExp => "jwt_missing_exp",
            JwtError::WrongIssuer => "jwt_wrong_issuer",
            JwtError::WrongAudience => "jwt_wrong_audience",
            JwtError::MissingClaim => "jwt_missing_claim",
        })
    }
}

/// What a provider accepts.
#[derive(Debug, Clone)]
pub struct Validation {
    pub issuer: String,
    /// The token's `aud` must contain one of these.
    pub audiences: Vec<String>,
    pub algorithms: Vec<Alg>,
    pub clock_skew_s: u64,
    pub max_token_bytes: usize,
    pub required_claims: Vec<String>,
    pub groups_claim: String,
    /// Only with a configured shared secret may HS* tokens be accepted.
    pub hmac_secret: Option<Vec<u8>>,
    /// Lower-case header name → claim name, copied into [`Claims::extra`].
    pub claim_headers: Vec<(String, String)>,
}

/// The verified claims Barbican uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub sub: Option<String>,
    pub preferred_username: Option<String>,
    pub email: Option<String>,
    pub name: Option<String>,
    pub client_id: Option<String>,
    /// OpenID Connect id_tokens: the login's nonce.
    pub nonce: Option<String>,
    pub exp: u64,
    pub scopes: Vec<String>,
    pub groups: Vec<String>,
    /// Headers from [`Validation::claim_headers`].
    pub extra: Vec<(String, String)>,
}

/// Verifies `token` and returns its claims.
pub fn verify(token: &str, keys: &KeySet, v: &Validation, now_s: u64) -> Result<Claims, JwtError> {
    if token.len() > v.max_token_bytes {
        return Err(JwtError::TooLong);
    }
    let mut parts = token.split('.');
    let (Some(h64), Some(p64), Some(s64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed);
    };
    let header_bytes = decode_part(h64)?;
    let sig = decode_part(s64)?;
    if p64.is_empty() || sig.is_empty() {
        return Err(JwtError::Malformed);
    }
    let header: Header = serde_json::from_slice(&header_bytes).map_err(|_| JwtError::BadHeader)?;
    if header.crit.is_some() {
        return Err(JwtError::CritUnsupported);
    }
    if let Some(typ) = &header.typ {
        let t = typ.to_ascii_lowercase();
        if !matches!(
            t.as_str(),
            "jwt" | "at+jwt" | "application/at+jwt" | "application/jwt"
        ) {
            return Err(JwtError::BadType);
        }
    }
    let alg = Alg::parse(&header.alg).ok_or(JwtError::UnknownAlg)?;
    if !v.algorithms.contains(&alg) {
        return Err(JwtError::AlgNotAllowed);
    }
    let signed = token
        .get(..h64.len() + 1 + p64.len())
        .ok_or(JwtError::Malformed)?
        .as_bytes();

    if alg.is_hmac() {
        let secret = v.hmac_secret.as_deref().ok_or(JwtError::AlgNotAllowed)?;
        if !hmac_ok(alg, secret, signed, &sig) {
            return Err(JwtError::BadSignature);
        }
    } else {
        let candidates: Vec<&KeyMaterial> = keys
            .keys
            .iter()
            .filter(|k| match &header.kid {
                Some(kid) => k.kid.as_deref() == Some(kid.as_str()),
                None => true,
            })
            .filter(|k| k.alg.is_none_or(|a| a == alg) && k.key.fits(alg))
            .map(|k| &k.key)
            .take(4)
            .collect();
        if candidates.is_empty() {
            return Err(
                if header.kid.is_some() && !keys.keys.iter().any(|k| k.kid == header.kid) {
                    JwtError::UnknownKid
                } else {
                    JwtError::NoMatchingKey
                },
            );
        }
        if !candidates
            .iter()
            .any(|k| signature_ok(alg, k, signed, &sig))
        {
            return Err(JwtError::BadSignature);
        }
    }

    // Signature good: now the payload may be read.
    let payload = decode_part(p64)?;
    let Strict(claims) = serde_json::from_slice(&payload).map_err(|_| JwtError::BadPayload)?;
    check_claims(&claims, v, now_s)
}

fn decode_part(s: &str) -> Result<Vec<u8>, JwtError> {
    // Unpadded base64url only (RFC 7515 §2): '=' or the standard alphabet mean a sloppy or
    // crafted token.
    if !s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(JwtError::Malformed);
    }
    URL_SAFE_NO_PAD.decode(s).map_err(|_| JwtError::Malformed)
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    kid: Option<String>,
    typ: Option<String>,
    crit: Option<Value>,
}

fn signature_ok(alg: Alg, key: &KeyMaterial, signed: &[u8], sig: &[u8]) -> bool {
    use ring::signature as rs;
    let rsa = |params: &'static rs::RsaParameters, n: &Vec<u8>, e: &Vec<u8>| {
        rs::RsaPublicKeyComponents { n, e }
            .verify(params, signed, sig)
            .is_ok()
    };
    match (key, alg) {
        (KeyMaterial::Rsa { n, e }, Alg::RS256) => rsa(&rs::RSA_PKCS1_2048_8192_SHA256, n, e),
        (KeyMaterial::Rsa { n, e }, Alg::RS384) => rsa(&rs::RSA_PKCS1_2048_8192_SHA384, n, e),
        (KeyMaterial::Rsa { n, e }, Alg::RS512) => rsa(&rs::RSA_PKCS1_2048_8192_SHA512, n, e),
        (KeyMaterial::Rsa { n, e }, Alg::PS256) => rsa(&rs::RSA_PSS_2048_8192_SHA256, n, e),
        (KeyMaterial::Rsa { n, e }, Alg::PS384) => rsa(&rs::RSA_PSS_2048_8192_SHA384, n, e),
        (KeyMaterial::Rsa { n, e }, Alg::PS512) => rsa(&rs::RSA_PSS_2048_8192_SHA512, n, e),
        // JWS ECDSA signatures are r || s (RFC 7518 §3.4): ring's "FIXED" encoding.
        (KeyMaterial::P256(p), Alg::ES256) => {
            rs::UnparsedPublicKey::new(&rs::ECDSA_P256_SHA256_FIXED, p)
                .verify(signed, sig)
                .is_ok()
        }
        (KeyMaterial::P384(p), Alg::ES384) => {
            rs::UnparsedPublicKey::new(&rs::ECDSA_P384_SHA384_FIXED, p)
                .verify(signed, sig)
                .is_ok()
        }
        (KeyMaterial::Ed25519(k), Alg::EdDSA) => rs::UnparsedPublicKey::new(&rs::ED25519, k)
            .verify(signed, sig)
            .is_ok(),
        _ => false,
    }
}

/// HS256/384/512 against the configured secret; ring compares in constant time.
fn hmac_ok(alg: Alg, secret: &[u8], signed: &[u8], sig: &[u8]) -> bool {
    use ring::hmac;
    let algorithm = match alg {
        Alg::HS256 => hmac::HMAC_SHA256,
        Alg::HS384 => hmac::HMAC_SHA384,
        Alg::HS512 => hmac::HMAC_SHA512,
        _ => return false,
    };
    hmac::verify(&hmac::Key::new(algorithm, secret), signed, sig).is_ok()
}

/// A JSON object whose top-level keys must be unique: a payload with two `sub` or two `exp`
/// is ambiguous (different parsers pick different ones) and is refused.
pub(crate) struct Strict(pub Map<String, Value>);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Strict;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Strict, A::Error> {
                let mut out = Map::new();
                while let Some((k, v)) = m.next_entry::<String, Value>()? {
                    if out.contains_key(&k) {
                        return Err(de::Error::custom(format!("duplicate key {k:?}")));
                    }
                    out.insert(k, v);
                }
                Ok(Strict(out))
            }
        }
        d.deserialize_map(V)
    }
}

fn num(v: Option<&Value>) -> Result<Option<u64>, JwtError> {
    match v {
        None => Ok(None),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(x) => Ok(Some(x)),
            None => match n.as_f64() {
                // A time beyond 64 bits would saturate to "never expires": malformed.
                Some(f) if f.is_finite() && (0.0..9.0e18).contains(&f) => Ok(Some(f as u64)),
                _ => Err(JwtError::BadPayload),
            },
        },
        Some(_) => Err(JwtError::BadPayload),
    }
}

fn string(c: &Map<String, Value>, k: &str) -> Option<String> {
    c.get(k).and_then(Value::as_str).map(str::to_string)
}

/// A claim that is a string or an array of strings (`aud`, `scp`, `groups`).
fn strings(v: Option<&Value>, split_spaces: bool) -> Vec<String> {
    match v {
        Some(Value::String(s)) if split_spaces => s
            .split(' ')
            .filter(|x| !x.is_empty())
            .map(str::to_string)
            .collect(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    }
}

fn check_claims(c: &Map<String, Value>, v: &Validation, now: u64) -> Result<Claims, JwtError> {
    let exp = num(c.get("exp"))?.ok_or(JwtError::MissingExp)?;
    if now >= exp.saturating_add(v.clock_skew_s) {
        return Err(JwtError::Expired);
    }
    if let Some(nbf) = num(c.get("nbf"))? {
        if now.saturating_add(v.clock_skew_s) < nbf {
            return Err(JwtError::NotYetValid);
        }
    }
    if c.get("iss").and_then(Value::as_str) != Some(v.issuer.as_str()) {
        return Err(JwtError::WrongIssuer);
    }
    // RFC 7519 §4.1.3: a string or an array of strings; anything else is malformed, not
    // silently narrowed to its string members.
    if let Some(Value::Array(a)) = c.get("aud") {
        if !a.iter().all(Value::is_string) {
            return Err(JwtError::BadPayload);
        }
    }
    let aud = strings(c.get("aud"), false);
    if !v.audiences.iter().any(|a| aud.contains(a)) {
        return Err(JwtError::WrongAudience);
    }
    if v.required_claims
        .iter()
        .any(|k| c.get(k).is_none_or(Value::is_null))
    {
        return Err(JwtError::MissingClaim);
    }
    let mut scopes = strings(c.get("scope"), true);
    if scopes.is_empty() {
        scopes = strings(c.get("scp"), true);
    }
    Ok(Claims {
        sub: string(c, "sub"),
        preferred_username: string(c, "preferred_username"),
        email: string(c, "email"),
        name: string(c, "name"),
        client_id: string(c, "client_id").or_else(|| string(c, "azp")),
        nonce: string(c, "nonce"),
        exp,
        scopes,
        groups: strings(c.get(&v.groups_claim), false),
        extra: v
            .claim_headers
            .iter()
            .filter_map(|(h, claim)| {
                let text = match c.get(claim)? {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    Value::Array(a) if a.iter().all(Value::is_string) => a
                        .iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(","),
                    _ => return None,
                };
                // Never a header value that could split the request.
                (!text.is_empty() && !text.contains(['\r', '\n', '\0'])).then(|| (h.clone(), text))
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests;
