//! The decision cache: a per-worker direct-mapped table in front of a cross-worker store.
//!
//! Both levels have a fixed number of slots: the per-worker one is *direct-mapped* (an entry
//! lives in slot `hash mod capacity` and a new entry overwrites whatever was there), the
//! cross-worker one *two-way set-associative* (each key may sit in either of two slots, see
//! [`ways`]). That bounds entries and bytes without any bookkeeping, which matters for
//! Envoy's shared data: it never evicts by itself (DESIGN §5), so a keyed-by-hash store
//! would grow without bound. A collision costs one extra IdP call, never a wrong answer:
//! every entry carries its full key and is checked. The second way matters during an IdP
//! outage: a session whose entry a colliding one evicted has no stale allow left to serve.

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

fn slot_index(key: &Key, bytes: std::ops::Range<usize>, capacity: u64) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(key.get(bytes).unwrap_or(&[0; 8]));
    u64::from_le_bytes(word) % capacity.max(1)
}

fn slot_name(index: u64) -> String {
    format!("barbican.cache.{index}")
}

/// The two slots (ways) a key may occupy in the cross-worker store, the first read first.
///
/// Two-way and *skewed*: the first way is what the direct-mapped store used (the digest's
/// first 8 bytes modulo the capacity, so entries written before keep answering), the second
/// comes from the next 8 bytes, so each key has its own pair instead of sharing a fixed one
/// (`i`, `i ^ 1`) with every key in it, which spreads load better: simulated for 128
/// sessions written once into 300 slots, sessions left without an entry averaged 23
/// direct-mapped, 10 with fixed pairs, 7 skewed (100 runs). The slots are still the
/// `capacity` names `barbican.cache.0 .. capacity - 1`, so memory stays bounded as before.
/// With one slot both ways are that slot.
pub fn ways(key: &Key, capacity: u64) -> [u64; 2] {
    let first = slot_index(key, 0..8, capacity);
    let second = slot_index(key, 8..16, capacity);
    if second == first {
        [first, (first + 1) % capacity.max(1)]
    } else {
        [first, second]
    }
}

/// A key's entry in the cross-worker store: one host call when it sits in the first way
/// (the common case), two otherwise or on a miss.
pub fn store_get(store: &dyn SharedStore, key: &Key, capacity: u64) -> Option<Entry> {
    let [a, b] = ways(key, capacity);
    let read = |i| {
        store
            .get(&slot_name(i))
            .and_then(|v| Entry::decode(&v, key))
    };
    read(a).or_else(|| (b != a).then(|| read(b)).flatten())
}

/// Writes a key's entry into the way that already holds the key, else the way whose
/// `stale_until` ends first (an empty, foreign-format or fully expired way counts as ended):
/// a live allow in its grace window outlives one whose grace is over. Written after an IdP
/// answer, so the reads this costs (one when the first way holds the key, else two) are
/// off the hot path. Concurrent writers may rarely leave a key in both ways: reads take the
/// first, [`store_remove`] clears both.
pub fn store_put(
    store: &mut dyn SharedStore,
    key: &Key,
    entry: &Entry,
    capacity: u64,
    now: Millis,
) {
    let [a, b] = ways(key, capacity);
    let mut slot = a;
    if b != a {
        let first = store.get(&slot_name(a));
        if owner(first.as_deref()).map(|o| o.0) != Some(key.as_slice()) {
            let second = store.get(&slot_name(b));
            let ends = |o: Option<(&[u8], Millis)>| o.map_or(0, |o| o.1).max(now);
            let (oa, ob) = (owner(first.as_deref()), owner(second.as_deref()));
            if ob.map(|o| o.0) == Some(key.as_slice()) || ends(ob) < ends(oa) {
                slot = b;
            }
        }
    }
    store.set(&slot_name(slot), &entry.encode(key));
}

/// Clears every way holding the key (a sign-out), and no other: the key's partner in a
/// way keeps its entry.
pub fn store_remove(store: &mut dyn SharedStore, key: &Key, capacity: u64) {
    let [a, b] = ways(key, capacity);
    for i in [a, b].into_iter().take(if b != a { 2 } else { 1 }) {
        let name = slot_name(i);
        let held = store.get(&name);
        if owner(held.as_deref()).map(|o| o.0) == Some(key.as_slice()) {
            store.set(&name, &[]);
        }
    }
}

/// Whose entry a slot holds and until when it may answer at all (`stale_until`), read from
/// the encoded header without decoding the rest; `None` for an empty or malformed slot.
fn owner(bytes: Option<&[u8]>) -> Option<(&[u8], Millis)> {
    let mut r = Reader { b: bytes? };
    if r.u8()? != FORMAT_VERSION {
        return None;
    }
    let key = r.take(32)?;
    r.take(9)?; // kind, fresh_until
    let stale_until = u64::from_le_bytes(r.take(8)?.try_into().ok()?);
    Some((key, stale_until))
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
        // Compared whole, in time that depends on the length only (`seal::same`): how far two
        // credentials agree is nobody's business.
        (crate::seal::same(&slot.material, material)
            && now < slot.trust_until
            && slot.entry.is_fresh(now))
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

    #[test]
    fn material_is_compared_whole() {
        use crate::seal::same as same_material;
        let a: Vec<u8> = (0..=255u8).cycle().take(517).collect();
        assert!(same_material(&a, &a.clone()));
        assert!(same_material(b"", b""));
        for i in [0, 7, 8, 511, 512, 516] {
            let mut b = a.clone();
            b[i] ^= 1;
            assert!(!same_material(&a, &b), "{i}");
        }
        assert!(!same_material(&a, &a[..516]));
    }

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
            for cap in [1, 2, 3, 10, 300] {
                let [a, b] = ways(&[i; 32], cap);
                assert!(a < cap && b < cap);
                assert_eq!(
                    a != b,
                    cap > 1,
                    "two distinct ways whenever there are two slots"
                );
            }
        }
        assert_eq!(slot_name(7), "barbican.cache.7");
    }

    /// A digest whose ways in a 10-slot store are `first` and `second`; `tag` tells keys apart.
    fn key(first: u64, second: u64, tag: u8) -> Key {
        let mut k = [tag; 32];
        k[..8].copy_from_slice(&first.to_le_bytes());
        k[8..16].copy_from_slice(&second.to_le_bytes());
        k
    }

    fn allow(stale_until: Millis) -> Entry {
        Entry {
            fresh_until: stale_until / 2,
            stale_until,
            ..entry()
        }
    }

    /// Counts host calls, as Envoy's shared data would see them.
    #[derive(Default)]
    struct Counting {
        store: MemStore,
        gets: std::cell::Cell<usize>,
        sets: usize,
    }

    impl SharedStore for Counting {
        fn get(&self, slot: &str) -> Option<Vec<u8>> {
            self.gets.set(self.gets.get() + 1);
            self.store.get(slot)
        }
        fn set(&mut self, slot: &str, value: &[u8]) {
            self.sets += 1;
            self.store.set(slot, value);
        }
    }

    #[test]
    fn two_keys_sharing_a_pair_both_stay() {
        let (k1, k2) = (key(3, 5, 1), key(3, 5, 2));
        assert_eq!(ways(&k1, 10), [3, 5]);
        let mut s = Counting::default();
        store_put(&mut s, &k1, &allow(5000), 10, 0);
        store_put(&mut s, &k2, &allow(9000), 10, 0);
        assert_eq!(store_get(&s, &k1, 10), Some(allow(5000)));
        assert_eq!(store_get(&s, &k2, 10), Some(allow(9000)));
        // Rewriting a key stays in its way: no second copy, the partner kept.
        store_put(&mut s, &k2, &allow(9500), 10, 100);
        assert_eq!(s.store.map.len(), 2);
        assert_eq!(store_get(&s, &k1, 10), Some(allow(5000)));
        assert_eq!(store_get(&s, &k2, 10), Some(allow(9500)));
    }

    #[test]
    fn a_third_key_evicts_the_entry_whose_stale_window_ends_first() {
        let (k1, k2, k3) = (key(3, 5, 1), key(3, 5, 2), key(3, 5, 3));
        let mut s = MemStore::default();
        store_put(&mut s, &k1, &allow(9000), 10, 0);
        store_put(&mut s, &k2, &allow(5000), 10, 0);
        store_put(&mut s, &k3, &allow(7000), 10, 0);
        assert_eq!(store_get(&s, &k1, 10), Some(allow(9000)));
        assert_eq!(store_get(&s, &k2, 10), None, "its grace ended first");
        assert_eq!(store_get(&s, &k3, 10), Some(allow(7000)));
        // Past k3's grace, k3 is the one replaced although it was written later.
        store_put(&mut s, &k2, &allow(20_000), 10, 8000);
        assert_eq!(store_get(&s, &k1, 10), Some(allow(9000)));
        assert_eq!(store_get(&s, &k3, 10), None);
        // A key sharing only one slot with others takes its other, empty one.
        let k4 = key(5, 8, 4);
        store_put(&mut s, &k4, &allow(1000), 10, 8000);
        assert_eq!(
            s.map.get("barbican.cache.8"),
            Some(&allow(1000).encode(&k4))
        );
        assert_eq!(store_get(&s, &k1, 10), Some(allow(9000)));
        assert_eq!(store_get(&s, &k2, 10), Some(allow(20_000)));
    }

    #[test]
    fn removal_clears_only_the_way_holding_the_key() {
        let (k1, k2, k3) = (key(3, 5, 1), key(3, 5, 2), key(3, 5, 3));
        let mut s = MemStore::default();
        store_put(&mut s, &k1, &allow(9000), 10, 0);
        store_put(&mut s, &k2, &allow(9000), 10, 0);
        store_remove(&mut s, &k3, 10);
        assert!(store_get(&s, &k1, 10).is_some() && store_get(&s, &k2, 10).is_some());
        store_remove(&mut s, &k2, 10);
        assert_eq!(store_get(&s, &k2, 10), None);
        assert_eq!(store_get(&s, &k1, 10), Some(allow(9000)));
        // The emptied way is the one a new key takes, over a live entry.
        store_put(&mut s, &k3, &allow(100), 10, 0);
        assert_eq!(s.map.get("barbican.cache.5"), Some(&allow(100).encode(&k3)));
        assert_eq!(store_get(&s, &k1, 10), Some(allow(9000)));
        // A copy left in both ways by concurrent writers goes as well.
        let k5 = key(6, 7, 5);
        s.map
            .insert("barbican.cache.6".into(), allow(9000).encode(&k5));
        s.map
            .insert("barbican.cache.7".into(), allow(9000).encode(&k5));
        store_remove(&mut s, &k5, 10);
        assert_eq!(store_get(&s, &k5, 10), None);
        assert_eq!(s.map.get("barbican.cache.7").map(Vec::len), Some(0));
    }

    #[test]
    fn another_keys_entry_is_never_returned() {
        let (k1, k2) = (key(3, 5, 1), key(3, 5, 2));
        let mut s = MemStore::default();
        store_put(&mut s, &k1, &allow(9000), 10, 0);
        s.map
            .insert("barbican.cache.5".into(), b"not an entry".to_vec());
        assert_eq!(store_get(&s, &k2, 10), None);
        // A malformed slot counts as empty: the next key takes it over a live entry.
        store_put(&mut s, &k2, &allow(100), 10, 0);
        assert_eq!(store_get(&s, &k1, 10), Some(allow(9000)));
        assert_eq!(store_get(&s, &k2, 10), Some(allow(100)));
        // One slot: both ways are that slot, and the newest key owns it.
        let mut one = MemStore::default();
        store_put(&mut one, &k1, &allow(9000), 1, 0);
        store_put(&mut one, &k2, &allow(100), 1, 0);
        assert_eq!(one.map.len(), 1);
        assert_eq!(store_get(&one, &k1, 1), None);
        assert_eq!(store_get(&one, &k2, 1), Some(allow(100)));
    }

    #[test]
    fn host_calls_per_operation() {
        let (k1, k2) = (key(3, 5, 1), key(3, 5, 2));
        let mut s = Counting::default();
        let calls = |s: &mut Counting, f: &dyn Fn(&mut Counting)| {
            let before = (s.gets.get(), s.sets);
            f(s);
            (s.gets.get() - before.0, s.sets - before.1)
        };
        let miss = calls(&mut s, &|s| assert!(store_get(s, &k1, 10).is_none()));
        assert_eq!(miss, (2, 0));
        let first_put = calls(&mut s, &|s| store_put(s, &k1, &allow(9000), 10, 0));
        assert_eq!(first_put, (2, 1));
        let hit_first_way = calls(&mut s, &|s| assert!(store_get(s, &k1, 10).is_some()));
        assert_eq!(hit_first_way, (1, 0));
        let rewrite = calls(&mut s, &|s| store_put(s, &k1, &allow(9500), 10, 0));
        assert_eq!(rewrite, (1, 1));
        calls(&mut s, &|s| store_put(s, &k2, &allow(9000), 10, 0));
        let hit_second_way = calls(&mut s, &|s| assert!(store_get(s, &k2, 10).is_some()));
        assert_eq!(hit_second_way, (2, 0));
        let remove = calls(&mut s, &|s| store_remove(s, &k2, 10));
        assert_eq!(remove, (2, 1));
    }
}
