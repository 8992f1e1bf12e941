//! Sealed values (the OIDC session cookie and login state) and the generator of the
//! unpredictable values a login needs (state binding, nonce, PKCE verifier, AEAD nonces).
//!
//! Why not the host's randomness: Traefik's WASI random is deterministic — the same sequence
//! in every instance and after every restart (DESIGN §5). So every value is derived with
//! HMAC-SHA256 under a key that comes from the operator's secret, over per-instance data the
//! host supplies, a counter, the time and the request. Without the secret nothing derived
//! here can be predicted; with the same inputs twice (which the counter rules out within an
//! instance) the outputs only repeat.
//!
//! Sealing is ChaCha20-Poly1305 (ring): in wasm it is faster than AES-GCM, which has no
//! hardware support there. The AEAD nonce is synthetic — an HMAC over fresh generator output
//! and the plaintext — so even two instances with identical seeds never encrypt two different
//! plaintexts under one nonce.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use ring::hmac;

/// One HMAC-SHA256 over the concatenation of `parts`.
fn mac(key: &hmac::Key, parts: &[&[u8]]) -> hmac::Tag {
    let mut ctx = hmac::Context::with_key(key);
    for p in parts {
        ctx.update(p);
    }
    ctx.sign()
}

/// A key for `label`, derived from an operator secret (HMAC-SHA256 as a PRF, keyed by the
/// secret: the secret is at least 32 bytes, so no stretching is needed).
fn derive(secret: &[u8], label: &str) -> [u8; 32] {
    let k = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let mut out = [0u8; 32];
    out.copy_from_slice(mac(&k, &[b"barbican/v1/", label.as_bytes()]).as_ref());
    out
}

/// A deterministic generator keyed by the operator's secret: see the module comment.
pub struct Entropy {
    key: hmac::Key,
    state: [u8; 32],
    counter: u64,
}

impl std::fmt::Debug for Entropy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Entropy(..)")
    }
}

impl Entropy {
    pub fn new(secret: &[u8]) -> Entropy {
        Entropy {
            key: hmac::Key::new(hmac::HMAC_SHA256, &derive(secret, "entropy")),
            state: [0; 32],
            counter: 0,
        }
    }

    /// Mixes host data into the state: per-instance data at start (clock, host randomness,
    /// ids), request data later. Unpredictable data helps; predictable data never hurts.
    pub fn mix(&mut self, data: &[u8]) {
        let t = mac(&self.key, &[b"mix", &self.state, data]);
        self.state.copy_from_slice(t.as_ref());
    }

    /// Fills `out` with fresh output. `now` is mixed in.
    pub fn fill(&mut self, now: u64, out: &mut [u8]) {
        for chunk in out.chunks_mut(32) {
            self.counter = self.counter.wrapping_add(1);
            let t = mac(
                &self.key,
                &[
                    b"out",
                    &self.state,
                    &self.counter.to_le_bytes(),
                    &now.to_le_bytes(),
                ],
            );
            let n = chunk.len();
            chunk.copy_from_slice(t.as_ref().get(..n).unwrap_or_default());
        }
        // Ratchet: an observer of outputs learns nothing about the state used for the next.
        let t = mac(
            &self.key,
            &[b"ratchet", &self.state, &self.counter.to_le_bytes()],
        );
        self.state.copy_from_slice(t.as_ref());
    }

    /// `n` bytes of output, base64url.
    pub fn token(&mut self, now: u64, n: usize) -> String {
        let mut b = vec![0u8; n];
        self.fill(now, &mut b);
        URL_SAFE_NO_PAD.encode(b)
    }
}

struct Key {
    /// A one-byte hint of which secret sealed a value, so opening tries the right key first.
    id: u8,
    aead: LessSafeKey,
    nonce: hmac::Key,
}

/// Seals and opens values for one purpose under the current and previous secrets.
pub struct Sealer {
    purpose: &'static str,
    /// Current key first.
    keys: Vec<Key>,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sealer({}, {} keys)", self.purpose, self.keys.len())
    }
}

const TAG_LEN: usize = 16;

impl Sealer {
    /// `secrets`: current first. A value sealed for one purpose never opens for another.
    pub fn new<S: AsRef<[u8]>>(secrets: &[S], purpose: &'static str) -> Sealer {
        let keys = secrets
            .iter()
            .filter_map(|s| {
                let s = s.as_ref();
                let id = derive(s, "key-id").first().copied().unwrap_or(0);
                let k = derive(s, &format!("aead/{purpose}"));
                let aead = LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, &k).ok()?);
                let nonce = hmac::Key::new(hmac::HMAC_SHA256, &derive(s, "aead-nonce"));
                Some(Key { id, aead, nonce })
            })
            .collect();
        Sealer { purpose, keys }
    }

    /// Encrypts and authenticates `plaintext` under the current secret; base64url text.
    /// `fresh` must be new generator output for each call.
    pub fn seal(&self, plaintext: &[u8], fresh: &[u8]) -> Option<String> {
        let key = self.keys.first()?;
        let t = mac(&key.nonce, &[fresh, plaintext]);
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(t.as_ref().get(..NONCE_LEN)?);
        let mut buf = Vec::with_capacity(1 + NONCE_LEN + plaintext.len() + TAG_LEN);
        buf.push(key.id);
        buf.extend_from_slice(&nonce);
        let mut body = plaintext.to_vec();
        key.aead
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(self.purpose.as_bytes()),
                &mut body,
            )
            .ok()?;
        buf.extend_from_slice(&body);
        Some(URL_SAFE_NO_PAD.encode(buf))
    }

    /// The plaintext of a value this sealer (any of its secrets) made, or `None` for
    /// anything else: tampered, truncated, sealed for another purpose or under an unknown
    /// secret.
    pub fn open(&self, sealed: &str) -> Option<Vec<u8>> {
        let raw = URL_SAFE_NO_PAD.decode(sealed).ok()?;
        let (&id, rest) = raw.split_first()?;
        if rest.len() < NONCE_LEN + TAG_LEN {
            return None;
        }
        let (nonce, body) = rest.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().ok()?;
        // Only the secret whose hint the value carries can have sealed it.
        for key in self.keys.iter().filter(|k| k.id == id) {
            let mut buf = body.to_vec();
            if let Ok(pt) = key.aead.open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(self.purpose.as_bytes()),
                &mut buf,
            ) {
                return Some(pt.to_vec());
            }
        }
        None
    }
}

/// Equality that takes the same time wherever the inputs differ, for values compared with
/// attacker input (the login binding, the per-worker cache's credentials). Lengths are not
/// secret. Eight bytes at a time: slice equality would call wasi-libc's `memcmp`, which goes
/// byte by byte and stops at the first difference, and a cached JWT hit compares the whole
/// token (~500 bytes).
pub fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let word = |s: &[u8], i: usize| {
        s.get(i..i + 8)
            .and_then(|c| <[u8; 8]>::try_from(c).ok())
            .map_or(0, u64::from_ne_bytes)
    };
    let whole = a.len() - a.len() % 8;
    let mut diff = 0u64;
    let mut i = 0;
    while i < whole {
        diff |= word(a, i) ^ word(b, i);
        i += 8;
    }
    while i < a.len() {
        diff |= u64::from(a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0));
        i += 1;
    }
    std::hint::black_box(diff) == 0
}

/// The PKCE S256 challenge of a verifier (RFC 7636 §4.2).
pub fn pkce_challenge(verifier: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes());
    URL_SAFE_NO_PAD.encode(d.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    const S1: &[u8] = b"0123456789abcdef0123456789abcdef-one";
    const S2: &[u8] = b"0123456789abcdef0123456789abcdef-two";

    #[test]
    fn seals_and_opens_with_current_and_previous_secret() {
        let old = Sealer::new(&[S1], "session");
        let rotated = Sealer::new(&[S2, S1], "session");
        let v = old.seal(b"hello", b"fresh-1").unwrap();
        assert_eq!(rotated.open(&v).unwrap(), b"hello");
        let v2 = rotated.seal(b"hi", b"fresh-2").unwrap();
        assert_eq!(rotated.open(&v2).unwrap(), b"hi");
        // The old instance does not know the new secret.
        assert!(old.open(&v2).is_none());
        // Dropping the old secret ends its values.
        assert!(Sealer::new(&[S2], "session").open(&v).is_none());
    }

    #[test]
    fn refuses_tampering_truncation_and_other_purposes() {
        let s = Sealer::new(&[S1], "session");
        let v = s.seal(b"{\"sub\":\"alice\"}", b"f").unwrap();
        let mut raw = URL_SAFE_NO_PAD.decode(&v).unwrap();
        for i in 0..raw.len() {
            raw[i] ^= 1;
            assert!(s.open(&URL_SAFE_NO_PAD.encode(&raw)).is_none(), "bit {i}");
            raw[i] ^= 1;
        }
        assert!(s.open(&v[..v.len() - 2]).is_none());
        assert!(s.open("").is_none());
        assert!(s.open("!!!").is_none());
        assert!(s.open("AAAA").is_none());
        assert!(Sealer::new(&[S1], "state").open(&v).is_none());
    }

    #[test]
    fn nonces_differ_for_the_same_plaintext() {
        let s = Sealer::new(&[S1], "session");
        let mut e = Entropy::new(S1);
        let a = s.seal(b"x", &e.token(1, 16).into_bytes()).unwrap();
        let b = s.seal(b"x", &e.token(1, 16).into_bytes()).unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn entropy_depends_on_secret_seed_counter_and_time() {
        let mut a = Entropy::new(S1);
        let mut b = Entropy::new(S1);
        assert_eq!(a.token(5, 16), b.token(5, 16), "deterministic by design");
        assert_ne!(a.token(5, 16), a.token(5, 16), "the counter moves");
        let mut c = Entropy::new(S1);
        c.mix(b"instance 2");
        let mut d = Entropy::new(S1);
        assert_ne!(c.token(5, 16), d.token(5, 16));
        let mut f = Entropy::new(S2);
        assert_ne!(d.token(9, 40), f.token(9, 40));
        assert_eq!(d.token(9, 40).len(), 54);
    }

    #[test]
    fn constant_time_compare_and_pkce() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"abcd"));
        // RFC 7636 appendix B.
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }
}
