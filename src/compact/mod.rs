//! The compact backend (feature `compact`): per-shard open-addressing slot tables of 8-byte weak
//! slots over slab arenas of 40-byte records, intrusive-keyed timeout heaps holding the strong
//! references, lock-free lookups and one-word handles.
//!
//! - `id`: the packed words (slot, reference word, time word) and tick arithmetic;
//! - `slots`: the slot table (lock-free probing, reaping, in-place rebuild, growth);
//! - `arena`: the record chunks, free list, and the shard's counted pointer;
//! - `pages`: the slot arrays' allocation, on huge pages where the system allows;
//! - `rc`: the record, its references, and the last-reference path;
//! - `heap`: the timeout heaps;
//! - `shard`: the operations of one shard;
//! - `handle`: the user's handle.
//!
//! The protocol and its invariants C1..C11 are in `design/concurrency.md`; the byte layouts and the
//! per-flow arithmetic in `design/memory.md`.
#![deny(unsafe_code)] // mod.rs has none; the files that need it (slots, arena, rc, heap, pages) allow it explicitly

mod arena;
mod handle;
mod heap;
mod id;
mod pages;
mod rc;
mod readers;
mod shard;
mod slots;

use std::hash::{BuildHasher, Hash};
use std::time::Duration;

pub use handle::CompactFlow;
use shard::{Common, Defaults, Full, Make, Palette, Shard};

use crate::capacity::Occupancy;
use crate::hash::shard_of;
use crate::stats::{Counters, Event};
use crate::sync::atomic::{AtomicUsize, Ordering};
use crate::sync::Arc;
use crate::{
    CapacityPolicy, Config, ConfigError, DefaultHashBuilder, ExpiryMode, FlowTable, GetOrInsert, Stats, TableFull,
    Timestamp,
};
use arena::ShardPtr;

// Private-state loom models (the file is `#![cfg(flowtable_loom)]`; see `scripts/loom.sh`).
#[cfg(test)]
#[path = "tests/loom_rc.rs"]
mod loom_rc;

/// What `make_room` achieved.
enum Room {
    /// A flow left and its room is reserved for the caller.
    Handed,
    /// A flow left and its room went back to the pool.
    Freed,
    /// Nothing could go.
    None,
}

/// Keys per batch step of `get_batch` (hashes and prefetches of one step are in flight together).
const BATCH: usize = 16;

/// The compact backend (feature `compact`).
///
/// See [`FlowTable`] for the contract, `design/memory.md` for the bytes per flow (about 53 for a
/// [`FlowKeyV4`](crate::FlowKeyV4) and an 8-byte value) and `design/concurrency.md` for the
/// protocol.
///
/// `stats().probe_mean` / `probe_max` count the slots visited by the writers' searches (creation,
/// `insert`, `remove`: every creation is an unsuccessful search, the longest kind); lock-free
/// lookups are not counted, so that they write no shared cache line.
///
/// Limits: at most 2^28 - 2 records per shard; at most 256 distinct timeouts per table (more map
/// to the nearest longer one); under [`CapacityPolicy::Evict`] a shard is scanned once per quarter
/// of its flows evicted.
pub struct CompactFlowTable<K, V, S = DefaultHashBuilder> {
    shards: Box<[ShardPtr<K, V>]>,
    bits: u32,
    hasher: S,
    common: Arc<Common<K, V>>,
    defaults: Defaults,
    /// Where the next `expire` starts (so budgets are spread over shards).
    cursor: AtomicUsize,
}

impl<K, V, S> CompactFlowTable<K, V, S>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Send + Sync + 'static,
    S: BuildHasher + Clone + Send + Sync + 'static,
{
    #[inline]
    fn shard(&self, hash: u64) -> &Shard<K, V> {
        &self.shards[shard_of(hash, self.bits)]
    }

    /// Bytes held by the table's structures: slot arrays (retired ones included), record chunks,
    /// heaps, and the shard headers.
    pub fn memory_bytes(&self) -> usize {
        self.shards.iter().map(|s| s.memory() + std::mem::size_of::<Shard<K, V>>()).sum()
    }

    /// Counts a refused flow.
    fn refuse(&self) -> TableFull {
        self.common.counters.add(Event::RejectedFull);
        TableFull { max_flows: self.common.occ.max() }
    }

    /// Whether a creation refused for room should try again (under [`CapacityPolicy::Evict`]):
    /// after `make_room` made room (handing it to `room` when it can), or once more when nothing
    /// could be evicted (another exit may have freed room meanwhile).
    fn room_for_retry(&self, now: Timestamp, room: &mut bool, retried: &mut bool) -> bool {
        if self.common.occ.policy() != CapacityPolicy::Evict {
            return false;
        }
        match self.make_room(now) {
            Room::Handed => {
                *room = true;
                true
            }
            Room::Freed => true,
            Room::None => !std::mem::replace(retried, true),
        }
    }

    /// At the maximum, under [`CapacityPolicy::Evict`]: makes room for one flow, first by
    /// expiring a flow past its deadline, else by evicting the least recently seen flow of the
    /// lowest class. The room of the flow that goes is handed to the caller, so that a racing
    /// creation cannot take it.
    ///
    /// Cost: each shard's candidate is the front of its eviction queues (`shard/victims.rs`), and
    /// each shard publishes lower bounds on its next deadline and its candidates (B), so an
    /// eviction reads O(shards) atomics and usually locks one shard to choose, plus a scan of a
    /// shard per quarter of its flows evicted.
    fn make_room(&self, now: Timestamp) -> Room {
        let hash = |k: &K| self.hash_key(k);
        let n = self.shards.len();
        // Relaxed: only spreads the starting shard.
        let start = self.cursor.fetch_add(1, Ordering::Relaxed);
        for i in 0..n {
            match self.shards[(start + i) & (n - 1)].reclaim(now, &hash) {
                (_, true) => return Room::Handed,
                (left, false) if left > 0 => return Room::Freed,
                _ => {}
            }
        }
        // A candidate that another thread evicted (or that changed) first is rescanned: each
        // failure means someone else made progress, so this ends while candidates exist.
        loop {
            // The shard with the lowest bound first, then every other shard whose bound does not
            // put all its candidates after the best so far (B): usually one shard is asked.
            let first = (0..n).min_by_key(|&i| self.shards[i].front_bound()).unwrap_or(0);
            let mut best: Option<(shard::Victim, usize)> = self.shards[first].victim().map(|v| (v, first));
            for i in (0..n).filter(|&i| i != first) {
                // `u64::MAX`: the shard has no candidate.
                let bound = self.shards[i].front_bound();
                let beaten = |(b, _): &(shard::Victim, usize)| bound > id::order_bound(b.order.0, b.order.1);
                if bound == u64::MAX || best.as_ref().is_some_and(beaten) {
                    continue;
                }
                if let Some(v) = self.shards[i].victim() {
                    if best.as_ref().map_or(true, |(b, _)| id::evicts_before(v.order, b.order)) {
                        best = Some((v, i));
                    }
                }
            }
            let Some((v, i)) = best else { return Room::None };
            if self.shards[i].evict(v.idx, v.gen, &hash) {
                return Room::Handed;
            }
            crate::sync::thread::yield_now();
        }
    }

    /// The hashes of `chunk` (at most [`BATCH`] keys), after prefetching, for each key, its home
    /// slot (and the next line when the home ends its line) and then both lines of the record
    /// named by the first slot of its run whose tag matches: the misses of the whole chunk are in
    /// flight together before any probe (`get_batch`, `get_or_insert_batch`).
    fn hash_and_prefetch(&self, chunk: &[K], g: &readers::ReadGuard<'_>) -> [u64; BATCH] {
        let mut hashes = [0u64; BATCH];
        for (h, k) in hashes.iter_mut().zip(chunk) {
            *h = self.hash_key(k);
            prefetch(self.shard(*h).home_addr(*h, g));
        }
        for h in &hashes[..chunk.len()] {
            if let Some(p) = self.shard(*h).home_record_addr(*h, g) {
                prefetch(p);
                // Both lines of a record that crosses a line boundary (`Arena::try_ref`).
                prefetch(arena::Arena::<K, V>::last_byte(p.cast()));
            }
        }
        hashes
    }

    /// Asserts the invariants of every shard (does nothing in release builds).
    #[doc(hidden)]
    pub fn debug_validate(&self) {
        #[cfg(any(test, debug_assertions))]
        for s in self.shards.iter() {
            s.validate();
        }
    }
}

/// Issues a prefetch of the cache line at `p` (a no-op off x86-64).
#[inline(always)]
fn prefetch(p: *const u8) {
    slots::prefetch(p);
}

impl<K, V, S> FlowTable<K, V> for CompactFlowTable<K, V, S>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Send + Sync + 'static,
    S: BuildHasher + Clone + Send + Sync + 'static,
{
    type Handle = CompactFlow<K, V>;
    type Hasher = S;
    const NAME: &'static str = "compact";
    const TICK: Duration = id::TICK;
    const MAX_TIMEOUT: Duration = id::MAX_TIMEOUT;

    fn with_config(config: Config<K, V, S>) -> Result<Self, ConfigError> {
        let shards = config.shards;
        let expected = if config.capacity > 0 {
            config.capacity
        } else if config.max_flows != usize::MAX {
            config.max_flows
        } else {
            0
        };
        let per_shard = (expected / shards).min(id::slot::MAX_RECORDS as usize);
        // A little room over the mean, so that no shard grows at the expected size.
        let per_shard = per_shard + per_shard / 64 + if expected > 0 { 16 } else { 0 };
        let common = Arc::new(Common {
            listener: config.listener,
            counters: Counters::new(),
            occ: Occupancy::new(config.max_flows, config.capacity_policy, config.emergency),
            palette: Palette::new(id::timeout_ms(config.idle_timeout)),
            timeout: config.idle_timeout,
            births: AtomicUsize::new(0),
            readers: readers::Readers::new(),
        });
        let cap = slots::Slots::cap_for(per_shard);
        let shards: Box<[ShardPtr<K, V>]> =
            (0..shards).map(|_| ShardPtr::new(Shard::new(cap, per_shard, Arc::clone(&common)))).collect();
        Ok(CompactFlowTable {
            bits: shards.len().trailing_zeros(),
            shards,
            hasher: config.hasher,
            common,
            defaults: Defaults { tmo: 0, held: config.expiry_mode == ExpiryMode::WhileHeld },
            cursor: AtomicUsize::new(0),
        })
    }

    #[inline]
    fn hash_key(&self, key: &K) -> u64 {
        self.hasher.hash_one(key)
    }

    #[inline]
    fn get_hashed(&self, key: &K, hash: u64, now: Timestamp) -> Option<Self::Handle> {
        debug_assert_eq!(hash, self.hash_key(key), "get_hashed: hash is not the table's hash of the key");
        self.shard(hash).lookup(key, hash, id::ms_floor(now)).map(CompactFlow)
    }

    fn get_batch(&self, keys: &[K], now: Timestamp, out: &mut Vec<Option<Self::Handle>>) {
        out.clear();
        out.reserve(keys.len());
        let t = id::ms_floor(now);
        // One read section for the whole batch (C1).
        let g = self.common.readers.enter();
        for chunk in keys.chunks(BATCH) {
            let hashes = self.hash_and_prefetch(chunk, &g);
            // Probe and take references (atomic RMWs are fences: after all prefetches).
            for (h, k) in hashes.iter().zip(chunk) {
                out.push(self.shard(*h).lookup_in(k, *h, t, &g).map(CompactFlow));
            }
        }
    }

    fn get_or_insert_with_hashed<F: FnOnce() -> V>(
        &self,
        key: K,
        hash: u64,
        now: Timestamp,
        init: F,
    ) -> Result<GetOrInsert<Self::Handle>, TableFull> {
        debug_assert_eq!(
            hash,
            self.hash_key(&key),
            "get_or_insert_with_hashed: hash is not the table's hash of the key"
        );
        let mut make = Make { init: Some(init), ready: None, room: false };
        let mut key = key;
        let mut retried = false;
        let result = loop {
            match self.shard(hash).get_or_insert(key, hash, now, self.defaults, &mut make) {
                Ok((r, created)) => break Ok(GetOrInsert { flow: CompactFlow(r), created }),
                Err(Full(Some(k))) if self.room_for_retry(now, &mut make.room, &mut retried) => key = k,
                Err(_) => break Err(self.refuse()),
            }
        };
        if make.room {
            self.common.occ.release(); // handed-over room that was not needed after all
        }
        result
    }

    fn get_or_insert_batch<F: FnMut(usize) -> V>(
        &self,
        keys: &[K],
        now: Timestamp,
        mut init: F,
        out: &mut Vec<Result<GetOrInsert<Self::Handle>, TableFull>>,
    ) where
        K: Clone,
    {
        out.clear();
        out.reserve(keys.len());
        for (c, chunk) in keys.chunks(BATCH).enumerate() {
            // A read section of its own for the prefetches (C1): the creations below take the
            // shard lock, which is not waited for inside one.
            let hashes = self.hash_and_prefetch(chunk, &self.common.readers.enter());
            for (i, (h, k)) in hashes.iter().zip(chunk).enumerate() {
                let at = c * BATCH + i;
                out.push(self.get_or_insert_with_hashed(k.clone(), *h, now, || init(at)));
            }
        }
    }

    fn insert(&self, key: K, value: V, now: Timestamp) -> Result<(Self::Handle, Option<Self::Handle>), TableFull> {
        let hash = self.hash_key(&key);
        let (mut key, mut value) = (key, value);
        let (mut room, mut retried) = (false, false);
        let result = loop {
            match self.shard(hash).insert(key, hash, value, now, self.defaults, &mut room) {
                Ok((r, old)) => break Ok((CompactFlow(r), old.map(CompactFlow))),
                Err(Full(Some((k, v)))) if self.room_for_retry(now, &mut room, &mut retried) => (key, value) = (k, v),
                Err(_) => break Err(self.refuse()),
            }
        };
        if room {
            self.common.occ.release();
        }
        result
    }

    fn remove(&self, key: &K) -> Option<Self::Handle> {
        let hash = self.hash_key(key);
        self.shard(hash).remove(key, hash).map(CompactFlow)
    }

    fn expire(&self, now: Timestamp, budget: usize) -> usize {
        let n = self.shards.len();
        // Relaxed: only spreads the starting shard. Bit-reversed, so that calls close in time
        // (two workers expiring together) start half the shards apart.
        let c = self.cursor.fetch_add(1, Ordering::Relaxed);
        let bits = n.trailing_zeros();
        let start = if bits == 0 { 0 } else { c.reverse_bits() >> (usize::BITS - bits) };
        let hash = |k: &K| self.hash_key(k);
        let mut total = 0;
        let mut panic = None;
        // Shards whose lock was busy at the first visit (another thread expiring or creating
        // there), visited again after the others; only tracked up to 128 shards.
        let mut busy = 0u128;
        let mut pass = |i: usize, first: bool, total: &mut usize, busy: &mut u128| {
            let s = &self.shards[(start + i) & (n - 1)];
            let left = budget - *total;
            // A panicking listener costs no other shard its pass; the first panic is re-raised.
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                if first && n <= 128 {
                    s.try_expire(now, left, &hash)
                } else {
                    Some(s.expire(now, left, &hash))
                }
            })) {
                Ok(Some(k)) => *total += k,
                Ok(None) => *busy |= 1 << i,
                Err(p) => {
                    panic.get_or_insert(p);
                }
            }
        };
        for i in 0..n {
            if total >= budget {
                break;
            }
            pass(i, true, &mut total, &mut busy);
        }
        for i in 0..n.min(128) {
            if total >= budget {
                break;
            }
            if busy & (1 << i) != 0 {
                pass(i, false, &mut total, &mut busy);
            }
        }
        if let Some(p) = panic {
            std::panic::resume_unwind(p);
        }
        total
    }

    fn clear(&self) -> usize {
        self.shards.iter().map(|s| s.clear()).sum()
    }

    fn len(&self) -> usize {
        self.common.occ.live()
    }

    fn stats(&self) -> Stats {
        let mut st = self.common.counters.snapshot(self.len());
        st.emergency = self.common.occ.in_emergency();
        st.memory_bytes = self.memory_bytes();
        let (mut probes, mut lookups, mut max) = (0, 0, 0);
        for s in self.shards.iter() {
            let (p, l, m) = s.probe_stats();
            st.created += s.created();
            probes += p;
            lookups += l;
            max = max.max(m);
        }
        st.probe_mean = if lookups == 0 { 0.0 } else { probes as f64 / lookups as f64 };
        st.probe_max = max;
        st
    }

    fn for_each<F: FnMut(&Self::Handle)>(&self, now: Timestamp, mut f: F) {
        let t = id::ms_floor(now);
        // A snapshot of every shard first, so that flows `f` adds are not visited.
        let (mut found, mut other) = (Vec::new(), Vec::new());
        for s in self.shards.iter() {
            s.collect(t, &mut found, &mut other);
            other.clear(); // outside the lock: may drop last references
        }
        for r in found {
            f(&CompactFlow(r));
        }
    }

    #[cfg(feature = "rayon")]
    fn par_expire(&self, now: Timestamp, budget: usize) -> usize {
        use rayon::prelude::*;
        let n = self.shards.len();
        let hash = |k: &K| self.hash_key(k);
        (0..n)
            .into_par_iter()
            .map(|i| {
                let share = budget / n + usize::from(i < budget % n);
                self.shards[i].expire(now, share, &hash)
            })
            .sum()
    }

    #[cfg(feature = "rayon")]
    fn par_for_each<F: Fn(&Self::Handle) + Send + Sync>(&self, now: Timestamp, f: F) {
        use rayon::prelude::*;
        let t = id::ms_floor(now);
        self.shards.par_iter().for_each(|s| {
            let (mut found, mut other) = (Vec::new(), Vec::new());
            s.collect(t, &mut found, &mut other);
            drop(other);
            for r in found {
                f(&CompactFlow(r));
            }
        });
    }
}

impl<K, V, S> Drop for CompactFlowTable<K, V, S> {
    fn drop(&mut self) {
        // Every flow leaves (cause `Removed`) and every timer is released; the shards themselves
        // go when their last record does (C8).
        for s in self.shards.iter() {
            s.drop_table();
        }
    }
}

#[cfg(all(test, not(flowtable_loom)))]
mod tests {
    use super::*;
    use crate::{FlowHandle, FlowKeyV4, FlowTableBuilder};

    #[test]
    fn handle_is_one_word() {
        assert_eq!(std::mem::size_of::<CompactFlow<FlowKeyV4, u64>>(), std::mem::size_of::<usize>());
        assert_eq!(std::mem::size_of::<Option<CompactFlow<FlowKeyV4, u64>>>(), std::mem::size_of::<usize>());
        fn bounds<T: Send + Sync + 'static>() {}
        bounds::<CompactFlow<FlowKeyV4, u64>>();
    }

    /// Expiry returns a batch's records to the free list under one lock hold after their
    /// contents are dropped: a value whose `Drop` panics mid-batch reaches the caller only once
    /// every other record is back on the free list and every other value was dropped once.
    #[test]
    fn a_panicking_value_drop_in_an_expiry_batch_loses_no_record() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static DROPS: AtomicUsize = AtomicUsize::new(0);
        struct V(u64);
        impl Drop for V {
            fn drop(&mut self) {
                DROPS.fetch_add(1, Ordering::SeqCst);
                if self.0 == 40 {
                    panic!("a value's Drop panics");
                }
            }
        }
        let t0 = Timestamp::from_secs(10);
        let later = t0 + Duration::from_secs(2);
        let t: CompactFlowTable<u64, V> =
            FlowTableBuilder::new().shards(1).idle_timeout(Duration::from_secs(1)).build().unwrap();
        for k in 0..100u64 {
            t.get_or_insert_with(k, t0, || V(k)).unwrap();
        }
        let bytes = t.memory_bytes();
        let held = t.get(&7, t0).unwrap(); // keeps flow 7's record and value past its expiry
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| t.expire(later, usize::MAX)));
        assert!(r.is_err(), "the Drop's panic reaches the caller");
        assert!(t.is_empty());
        assert_eq!(t.stats().expired, 100);
        assert_eq!(DROPS.load(Ordering::SeqCst), 99, "every value but the held one dropped once");
        t.debug_validate();
        // The 99 freed records (the panicking one's too) are reused: no new chunk, no growth.
        for k in 100..199u64 {
            t.get_or_insert_with(k, later, || V(k)).unwrap();
        }
        assert_eq!(t.memory_bytes(), bytes);
        assert_eq!((*held).0, 7, "a handle keeps its flow readable after expiry");
        drop(held);
        assert_eq!(DROPS.load(Ordering::SeqCst), 100);
        drop(t);
        assert_eq!(DROPS.load(Ordering::SeqCst), 199);
    }

    /// A table with an hour's idle timeout holding flows 0..2,000 created at `t0`, and its bytes.
    fn table_before_churn(t0: Timestamp) -> (CompactFlowTable<u64, u64>, usize) {
        let t: CompactFlowTable<u64, u64> =
            FlowTableBuilder::new().shards(2).idle_timeout(Duration::from_secs(3600)).build().unwrap();
        for k in 0..2000u64 {
            t.get_or_insert_with(k, t0, || k).unwrap();
        }
        let steady = t.memory_bytes();
        (t, steady)
    }

    /// After the churn: memory stayed near its start, and flows 0..2,000 are intact and expire
    /// on time (an hour after `t0`).
    fn check_after_churn(t: &CompactFlowTable<u64, u64>, steady: usize, t0: Timestamp) {
        assert_eq!(t.len(), 2000);
        t.debug_validate();
        let after = t.memory_bytes();
        // Lazy deletion without a purge would hold every departed record (15-20 MB) here.
        assert!(after < 4 * steady, "memory grew from {steady} to {after} bytes under churn");
        for k in 0..2000u64 {
            assert_eq!(*t.get(&k, t0).unwrap(), k);
        }
        assert_eq!(t.expire(t0 + Duration::from_secs(3600), usize::MAX), 2000);
        assert!(t.is_empty());
        t.debug_validate();
    }

    /// Flows that leave long before their timeout (removed, replaced) do not keep their records
    /// allocated until it passes: the heap purges their entries once they are a third of it, so
    /// the table's memory stays near that of its live flows under any amount of churn.
    #[test]
    fn departed_flows_do_not_pile_up_in_the_heap() {
        let now = Timestamp::from_secs(10);
        let (t, steady) = table_before_churn(now);
        // 400,000 flows come and go (a third by `insert` replacing them), 2,000 stay.
        for round in 0..200u64 {
            let base = 10_000 + round * 2000;
            for k in base..base + 2000 {
                t.get_or_insert_with(k, now, || k).unwrap();
            }
            for k in (base..base + 2000).step_by(3) {
                t.insert(k, 0, now).unwrap();
            }
            for k in base..base + 2000 {
                assert!(t.remove(&k).is_some());
            }
        }
        check_after_churn(&t, steady, now);
    }

    /// A flow whose timeout was shortened (a firewall on FIN) expires through its side entry; its
    /// main entry, filed under the long timeout, must not keep the record until then either.
    #[test]
    fn flows_expired_early_by_a_shorter_timeout_do_not_pile_up() {
        let t0 = Timestamp::from_secs(10);
        let (t, steady) = table_before_churn(t0);
        let mut now = t0;
        for round in 0..200u64 {
            let base = 10_000 + round * 2000;
            for k in base..base + 2000 {
                let f = t.get_or_insert_with(k, now, || k).unwrap().flow;
                f.set_timeout(Duration::from_secs(1));
            }
            now = now + Duration::from_secs(1);
            assert_eq!(t.expire(now, usize::MAX), 2000, "round {round}");
        }
        check_after_churn(&t, steady, t0);
    }

    #[test]
    fn basic_lifecycle() {
        let t: CompactFlowTable<u64, u64> =
            FlowTableBuilder::new().shards(2).idle_timeout(Duration::from_secs(1)).build().unwrap();
        let now = Timestamp::from_secs(10);
        for k in 0..1000u64 {
            let r = t.get_or_insert_with(k, now, || k * 2).unwrap();
            assert!(r.created);
        }
        assert_eq!(t.len(), 1000);
        for k in 0..1000u64 {
            assert_eq!(*t.get(&k, now).unwrap(), k * 2);
        }
        t.debug_validate();
        let h = t.get(&7, now).unwrap();
        assert!(h.touch(now + Duration::from_millis(500)));
        assert_eq!(t.expire(now + Duration::from_millis(1000), usize::MAX), 999);
        assert_eq!(t.len(), 1);
        assert!(t.get(&8, now).is_none());
        assert_eq!(t.expire(now + Duration::from_millis(1500), usize::MAX), 1);
        assert!(!h.touch(now + Duration::from_millis(1600)));
        assert_eq!(*h, 14);
        t.debug_validate();
        for k in 0..1000u64 {
            assert!(t.get_or_insert_with(k, now + Duration::from_secs(5), || k).unwrap().created);
        }
        assert_eq!(t.remove(&5).map(|h| *h), Some(5));
        assert_eq!(t.clear(), 999);
        t.debug_validate();
    }
}
