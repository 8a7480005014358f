//! Hashing: the default seeded hasher, and how a hash picks a shard.
//!
//! The default is ahash with random seeds drawn once per table: the keys are chosen by whoever sends
//! packets, and a fixed seed would let an attacker precompute keys that all land in one shard and
//! one probe chain (HashDoS). Under `--cfg flowtable_loom` the seeds are fixed so that model runs are
//! deterministic.
//!
//! A caller that already has a hash of the key (the NIC's RSS hash) can pass it to the `*_hashed`
//! methods of [`FlowTable`](crate::FlowTable), provided the table was built with a `BuildHasher` that
//! computes the same function (see [`FlowTable::hash_key`](crate::FlowTable::hash_key)).
#![forbid(unsafe_code)]

use std::hash::{BuildHasher, Hash};

/// The default `BuildHasher`: ahash, randomly seeded per table.
pub type DefaultHashBuilder = ahash::RandomState;

/// A new default hasher: random seeds (fixed ones under loom).
pub fn default_hasher() -> DefaultHashBuilder {
    #[cfg(flowtable_loom)]
    {
        ahash::RandomState::with_seeds(1, 2, 3, 4)
    }
    #[cfg(not(flowtable_loom))]
    {
        ahash::RandomState::new()
    }
}

/// The 64-bit hash of `key` under `hasher`.
#[inline]
pub fn hash_one<K: Hash + ?Sized, S: BuildHasher>(hasher: &S, key: &K) -> u64 {
    hasher.hash_one(key)
}

/// The shard of a hash: its top `bits` bits, so that the low bits stay free for the slot index.
#[inline]
#[allow(dead_code)] // used by the compact backend
pub(crate) fn shard_of(hash: u64, bits: u32) -> usize {
    if bits == 0 {
        0
    } else {
        (hash >> (64 - bits)) as usize
    }
}

#[cfg(all(test, not(flowtable_loom)))]
mod tests {
    use super::*;

    #[test]
    fn shard_uses_high_bits() {
        assert_eq!(shard_of(u64::MAX, 4), 15);
        assert_eq!(shard_of(0x0fff_ffff_ffff_ffff, 4), 0);
        assert_eq!(shard_of(12345, 0), 0);
    }

    #[test]
    fn default_hashers_are_seeded_differently() {
        let (a, b) = (default_hasher(), default_hasher());
        let same = (0u64..64).filter(|k| hash_one(&a, k) == hash_one(&b, k)).count();
        assert!(same < 4, "two default hashers agree on {same} of 64 keys");
    }
}
