//! The loom build's key map (in place of `map.rs`, which wraps DashMap): `HashMap` shards behind
//! shim mutexes, with the same methods and semantics.
//!
//! DashMap's own shard locks are a custom `RwLock` on `parking_lot_core` that loom cannot see, so under
//! `--cfg flowtable_loom` the backend is built on this map instead, and the models check this crate's
//! protocol (R1-R6 of `design/concurrency.md`) rather than DashMap's locking. Reads take the same lock as
//! writes here (a stricter schedule than DashMap's read lock, which only copies a `Weak` out).
//!
//! As in `map.rs`, closures run under a shard lock: they must never drop a strong reference to a
//! record and never call user code (R5).
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};

use crate::sync::{Mutex, Weak};

/// One shard: the entries of the keys that hash to it.
type Shard<K, T, S> = Mutex<HashMap<K, Weak<T>, S>>;

/// The loom build's map: `HashMap` shards behind shim (loom) mutexes, with DashMap's semantics
/// for the methods the backend uses (a shard write lock per call; reads take the same lock).
pub(super) struct WeakMap<K, T, S> {
    shards: Box<[Shard<K, T, S>]>,
    hasher: S,
}

impl<K: Hash + Eq + Clone, T, S: BuildHasher + Clone> WeakMap<K, T, S> {
    pub(super) fn new(capacity: usize, shards: usize, hasher: S) -> Self {
        let n = shards.max(2).next_power_of_two();
        let per = capacity / n;
        WeakMap {
            shards: (0..n).map(|_| Mutex::new(HashMap::with_capacity_and_hasher(per, hasher.clone()))).collect(),
            hasher,
        }
    }

    fn shard(&self, key: &K) -> &Shard<K, T, S> {
        &self.shards[(self.hasher.hash_one(key) as usize) & (self.shards.len() - 1)]
    }

    pub(super) fn get(&self, key: &K) -> Option<Weak<T>> {
        self.shard(key).lock().get(key).cloned()
    }

    pub(super) fn compute<R>(&self, key: K, f: impl FnOnce(&mut Option<Weak<T>>) -> R) -> R {
        let mut shard = self.shard(&key).lock();
        let mut slot = shard.get(&key).cloned();
        let r = f(&mut slot);
        match slot {
            Some(w) => {
                shard.insert(key, w);
            }
            None => {
                shard.remove(&key);
            }
        }
        r
    }

    pub(super) fn remove_if_same(&self, key: &K, target: *const T) -> bool {
        let mut shard = self.shard(key).lock();
        let same = match shard.get(key) {
            // Mutant `removal_by_key`: the identity check is skipped (R3).
            Some(w) => std::ptr::eq(w.as_ptr(), target) || crate::sync::mutant("removal_by_key"),
            None => false,
        };
        if same {
            shard.remove(key);
        }
        same
    }

    pub(super) fn remove_if_dead(&self, key: &K) -> bool {
        let mut shard = self.shard(key).lock();
        let dead = shard.get(key).is_some_and(|w| w.strong_count() == 0);
        if dead {
            shard.remove(key);
        }
        dead
    }

    pub(super) fn snapshot(&self) -> Vec<Weak<T>> {
        let mut out = Vec::new();
        for s in self.shards.iter() {
            out.extend(s.lock().values().cloned());
        }
        out
    }

    /// Bytes of the map's tables: capacity times entry size plus a control byte (as `map.rs`).
    pub(super) fn bytes(&self) -> usize {
        self.shards.iter().map(|s| s.lock().capacity()).sum::<usize>() * (std::mem::size_of::<(K, Weak<T>)>() + 1)
    }

    pub(super) fn entries(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }
}
