//! The reference backend's key map: `DashMap<K, Weak<Record>>` behind the small surface the backend
//! needs, so that the loom build can put a loom-visible map with the same surface in its place.
//!
//! Closures passed here run under a DashMap shard lock: they must never drop a strong reference to a
//! record (its `Drop` may need the same lock, R5) and never call user code.
#![forbid(unsafe_code)]

use std::hash::{BuildHasher, Hash};

use dashmap::mapref::entry::Entry;
use dashmap::DashMap;

use crate::sync::Weak;

/// A concurrent map from keys to weak references.
pub(super) struct WeakMap<K, T, S> {
    inner: DashMap<K, Weak<T>, S>,
}

impl<K: Hash + Eq + Clone, T, S: BuildHasher + Clone> WeakMap<K, T, S> {
    pub(super) fn new(capacity: usize, shards: usize, hasher: S) -> Self {
        // DashMap needs at least two shards.
        WeakMap { inner: DashMap::with_capacity_and_hasher_and_shard_amount(capacity, hasher, shards.max(2)) }
    }

    /// A copy of the weak reference under `key` (the shard's read lock is held only for the copy).
    pub(super) fn get(&self, key: &K) -> Option<Weak<T>> {
        self.inner.get(key).map(|r| r.value().clone())
    }

    /// Runs `f` on the entry of `key` under the shard's write lock; `f` may fill, replace or empty it.
    pub(super) fn compute<R>(&self, key: K, f: impl FnOnce(&mut Option<Weak<T>>) -> R) -> R {
        match self.inner.entry(key) {
            Entry::Occupied(mut o) => {
                let mut slot = Some(o.get().clone());
                let r = f(&mut slot);
                match slot {
                    Some(w) => {
                        if !Weak::ptr_eq(&w, o.get()) {
                            o.insert(w);
                        }
                    }
                    None => {
                        o.remove();
                    }
                }
                r
            }
            Entry::Vacant(v) => {
                let mut slot = None;
                let r = f(&mut slot);
                if let Some(w) = slot {
                    v.insert(w);
                }
                r
            }
        }
    }

    /// Removes the entry of `key` only if it refers to `target` (removal by identity, R3).
    pub(super) fn remove_if_same(&self, key: &K, target: *const T) -> bool {
        self.inner.remove_if(key, |_, w| std::ptr::eq(w.as_ptr(), target)).is_some()
    }

    /// Removes the entry of `key` only if its flow is gone (reaping a dead weak reference).
    pub(super) fn remove_if_dead(&self, key: &K) -> bool {
        self.inner.remove_if(key, |_, w| w.strong_count() == 0).is_some()
    }

    /// Copies every weak reference, one shard read lock at a time (never all shards at once).
    pub(super) fn snapshot(&self) -> Vec<Weak<T>> {
        self.inner.iter().map(|r| r.value().clone()).collect()
    }

    /// Bytes of the map's tables: capacity times entry size plus a control byte (hashbrown).
    pub(super) fn bytes(&self) -> usize {
        self.inner.capacity() * (std::mem::size_of::<(K, Weak<T>)>() + 1)
    }

    /// Entries, dead ones included.
    pub(super) fn entries(&self) -> usize {
        self.inner.len()
    }
}
