//! The decision cache: a per-worker direct-mapped table in front of a cross-worker store.
//!
//! Both levels are *direct-mapped*: an entry lives in slot `hash mod capacity`, and a new
//! entry overwrites whatever was there. That bounds entries and bytes without any
//! bookkeeping, which matters for Envoy's shared data: it never evicts by itself
//! (DESIGN §5), so a keyed-by-hash store would grow without bound. A collision costs one
//! extra IdP call, never a wrong answer: every entry carries its full key and is checked.

use crate::Millis;

/// SHA-256 of the credentials and what the decision depends on: names a decision in the
/// cross-worker store, so raw cookies never sit in shared memory.
pub type Key = [u8; 32];

/// Identity headers of an allow, shared between the cache and the steps built from it
/// (a cached allow is served without copying them).
pub type Headers = std::sync::Arc<[(String, String)]>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Allow,
    Deny,
}

/// One cached decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub kind: Kind,
    /// Served without asking the IdP until then.
    pub fresh_until: Millis,
    /// Allow entries only: served while the IdP is unreachable until then (never past a
    /// token's `exp`). Equal to `fresh_until` for deny entries.
    pub stale_until: Millis,
    /// Deny entries: the status to answer with.
    pub status: u16,
    /// Allow: identity headers for the upstream. Deny: headers for the client.
    pub headers: Headers,
}

impl Entry {
    pub fn is_fresh(&self, now: Millis) -> bool {
        now < self.fresh_until
    }

    pub fn is_servable_stale(&self, now: Millis) -> bool {
        self.kind == Kind::Allow && now < self.stale_until
    }

    /// Encoded form for the cross-worker store: the key first, so a reader can tell whose
    /// entry occupies a slot.
    pub fn encode(&self, key: &Key) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            64 + self
                .headers
                .iter()
                .map(|(n, v)| n.len() + v.len() + 8)
                .sum::<usize>(),
        );
        out.push(FORMAT_VERSION);
        out.extend_from_slice(key);
        out.push(match self.kind {
            Kind::Allow => 1,
            Kind::Deny => 2,
        });
        out.extend_from_slice(&self.fresh_until.to_le_bytes());
        out.extend_from_slice(&self.stale_until.to_le_bytes());
        out.extend_from_slice(&self.status.to_le_bytes());
        let n = u16::try_from(self.headers.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&n.to_le_bytes());
        for (name, value) in self.headers.iter().take(usize::from(n)) {
            put_str(&mut out, name);
            put_str(&mut out, value);
        }
        out
    }

    /// Decodes a slot's bytes; `None` when empty, foreign (another key), or malformed.
    pub fn decode(bytes: &[u8], key: &Key) -> Option<Entry> {
        let mut r = Reader { b: bytes };
        if r.u8()? != FORMAT_VERSION || r.take(32)? != key.as_slice() {
            return None;
        }
        let kind = match r.u8()? {
            1 => Kind::Allow,
            2 => Kind::Deny,
            _ => return None,
        };
        let fresh_until = u64::from_le_bytes(r.take(8)?.try_into().ok()?);
        let stale_until = u64::from_le_bytes(r.take(8)?.try_into().ok()?);
        let status = u16::from_le_bytes(r.take(2)?.try_into().ok()?);
        let n = u16::from_le_bytes(r.take(2)?.try_into().ok()?);
        let mut headers = Vec::with_capacity(usize::from(n).min(64));
        for _ in 0..n {
            headers.push((r.string()?, r.string()?));
        }
        if !r.b.is_empty() {
            return None;
        }
        Some(Entry {
            kind,
            fresh_until,
            stale_until,
            status,
            headers: headers.into(),
        })
    }

    /// Approximate size, for the per-entry byte bound.
    pub fn size(&self) -> usize {
        59 + self
            .headers
            .iter()
            .map(|(n, v)| n.len() + v.len() + 4)
            .sum::<usize>()
    }
}

const FORMAT_VERSION: u8 = 1;

fn put_str(out: &mut Vec<u8>, s: &str) {
    // Header values are bounded far below 64 KiB by max_entry_bytes; truncation is
    // impossible after the size check, and a corrupt slot only decodes to None.
    let len = u16::try_from(s.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(s.as_bytes().get(..usize::from(len)).unwrap_or_default());
}

struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.b.len() < n {
            return None;
        }
        let (head, tail) = self.b.split_at(n);
        self.b = tail;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1)?.first().copied()
    }
    fn string(&mut self) -> Option<String> {
        let len = u16::from_le_bytes(self.take(2)?.try_into().ok()?);
        String::from_utf8(self.take(usize::from(len))?.to_vec()).ok()
    }
}

/// The cross-worker store: Envoy shared data in the filter, a map in tests and the CLI.
/// Reads and writes whole slots; no compare-and-swap is needed since any writer's value is
/// a valid decision for the slot's key.
pub trait SharedStore {
    fn get(&self, slot: &str) -> Option<Vec<u8>>;
    fn set(&mut self, slot: &str, value: &[u8]);
}

/// An in-memory [`SharedStore`].
#[derive(Debug, Default, Clone)]
pub struct MemStore {
    pub map: std::collections::HashMap<String, Vec<u8>>,
}

impl SharedStore for MemStore {
    fn get(&self, slot: &str) -> Option<Vec<u8>> {
        self.map.get(slot).cloned()
    }
    fn set(&mut self, slot: &str, value: &[u8]) {
        self.map.insert(slot.to_string(), value.to_vec());
    }
}

fn slot_index(key: &Key, capacity: u64) -> u64 {
    let mut first = [0u8; 8];
    first.copy_from_slice(key.get(..8).unwrap_or(&[0; 8]));
    u64::from_le_bytes(first) % capacity.max(1)
}

/// The store slot name for a key.
pub fn slot_name(key: &Key, capacity: u64) -> String {
    format!("barbican.cache.{}", slot_index(key, capacity))
}

/// The per-worker level. Keyed by the credential material itself and compared byte for
/// byte, so a hit needs no cryptographic hash: the hot path of a cached allow stays cheap.
#[derive(Debug)]
pub struct LocalCache<T = Entry> {
    slots: Vec<Option<LocalSlot<T>>>,
}

/// What a per-worker cache can hold: anything that knows until when it may answer.
pub trait Fresh {
    fn is_fresh(&self, now: Millis) -> bool;
}

impl Fresh for Entry {
    fn is_fresh(&self, now: Millis) -> bool {
        Entry::is_fresh(self, now)
    }
}

#[derive(Debug, Clone)]
struct LocalSlot<T> {
    material: Box<[u8]>,
    entry: T,
    /// After this the worker re-reads the shared store, so a sign-out seen by another
    /// worker reaches this one within `local_ttl`.
    trust_until: Millis,
}

/// Spreads slots only. A crafted collision merely evicts (the material is compared in full),
/// so no keyed hash is needed here. Eight bytes per step (FxHash's mix): the material is a
/// whole token, often a kilobyte, and a byte-wise hash was the largest single cost of a
/// cached request (measured natively; more so in Traefik's wasm runtime).
///
/// Over at most the first 32 and the last 96 bytes, and the length: a token's signature and a
/// session key's credentials are at its end, and hashing all of a kilobyte token was still
/// ~1,100 native instructions of a cached request's ~8,000.
fn fnv1a(bytes: &[u8]) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let h = (bytes.len() as u64).wrapping_mul(K);
    match bytes.len().checked_sub(96) {
        Some(cut) if cut > 32 => {
            let (head, tail) = (bytes.get(..32), bytes.get(cut..));
            words(words(h, head.unwrap_or_default()), tail.unwrap_or_default())
        }
        _ => words(h, bytes),
    }
}

fn words(mut h: u64, bytes: &[u8]) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mix = |h: u64, w: u64| (h.rotate_left(5) ^ w).wrapping_mul(K);
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        h = mix(
            h,
            <[u8; 8]>::try_from(c).map(u64::from_le_bytes).unwrap_or(0),
        );
    }
    let mut tail = [0u8; 8];
    for (d, s) in tail.iter_mut().zip(chunks.remainder()) {
        *d = *s;
    }
    mix(h, u64::from_le_bytes(tail))
}

impl<T: Clone + Fresh> LocalCache<T> {
    pub fn new(capacity: usize) -> Self {
        LocalCache {
            slots: vec![None; capacity],
        }
    }

    fn index(&self, material: &[u8]) -> Option<usize> {
        if self.slots.is_empty() {
            return None;
        }
        usize::try_from(fnv1a(material) % self.slots.len() as u64).ok()
    }

    /// A fresh, trusted entry for `material`.
    pub fn get(&self, material: &[u8], now: Millis) -> Option<&T> {
        let slot = self.slots.get(self.index(material)?)?.as_ref()?;
        (*slot.material == *material && now < slot.trust_until && slot.entry.is_fresh(now))
            .then_some(&slot.entry)
    }

    pub fn put(&mut self, material: &[u8], entry: T, trust_until: Millis) {
        if let Some(i) = self.index(material) {
            if let Some(s) = self.slots.get_mut(i) {
                *s = Some(LocalSlot {
                    material: material.into(),
                    entry,
                    trust_until,
                });
            }
        }
    }

    pub fn remove(&mut self, material: &[u8]) {
        if let Some(i) = self.index(material) {
            if let Some(s) = self.slots.get_mut(i) {
                if s.as_ref().is_some_and(|x| *x.material == *material) {
                    *s = None;
                }
            }
        }
    }

    /// Number of occupied slots (for tests and stats).
    pub fn len(&self) -> usize {
        self.slots.iter().filter(|s| s.is_some()).count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry {
        Entry {
            kind: Kind::Allow,
            fresh_until: 1000,
            stale_until: 5000,
            status: 0,
            headers: vec![
                ("x-authentik-username".into(), "alice".into()),
                ("x-authentik-groups".into(), "a|b".into()),
            ]
            .into(),
        }
    }

    #[test]
    fn encode_decode_round_trip_and_foreign_keys_are_misses() {
        let k = [7u8; 32];
        let bytes = entry().encode(&k);
        assert_eq!(Entry::decode(&bytes, &k), Some(entry()));
        assert_eq!(Entry::decode(&bytes, &[8u8; 32]), None);
        assert_eq!(Entry::decode(&[], &k), None);
        for cut in 0..bytes.len() {
            assert_eq!(Entry::decode(&bytes[..cut], &k), None, "truncated at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(Entry::decode(&longer, &k), None);
    }

    #[test]
    fn local_cache_is_bounded_and_checks_keys() {
        let mut c = LocalCache::new(4);
        for i in 0..100u8 {
            c.put(&[i; 32], entry(), 10_000);
        }
        assert!(c.len() <= 4);
        let mut c = LocalCache::new(1);
        c.put(&[1; 32], entry(), 10_000);
        c.put(&[2; 32], entry(), 10_000);
        assert!(
            c.get(&[1; 32], 0).is_none(),
            "overwritten slot must not answer for the old key"
        );
        assert!(c.get(&[2; 32], 0).is_some());
        assert!(c.get(&[2; 32], 1000).is_none(), "not fresh");
        c.remove(&[1; 32]);
        assert!(
            c.get(&[2; 32], 0).is_some(),
            "removing another key leaves the slot"
        );
        c.remove(&[2; 32]);
        assert!(c.is_empty());
    }

    #[test]
    fn local_trust_window_expires_before_freshness() {
        let mut c = LocalCache::new(8);
        c.put(&[3; 32], entry(), 100);
        assert!(c.get(&[3; 32], 99).is_some());
        assert!(c.get(&[3; 32], 100).is_none());
    }

    #[test]
    fn zero_capacity_local_cache_holds_nothing() {
        let mut c = LocalCache::new(0);
        c.put(&[3; 32], entry(), 100);
        assert!(c.get(&[3; 32], 0).is_none());
    }

    #[test]
    fn slots_are_bounded_by_capacity() {
        for i in 0..=255u8 {
            let name = slot_name(&[i; 32], 10);
            let n: u64 = name.rsplit('.').next().unwrap().parse().unwrap();
            assert!(n < 10);
        }
    }
}
