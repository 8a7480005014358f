//! Counters, kept striped so that threads working on different shards do not share a cache line.
#![forbid(unsafe_code)]

use crate::sync::atomic::{AtomicU64, Ordering};
use crate::sync::{striped, CachePadded};
use crate::{FlowClass, RemovalCause};

/// A snapshot of a table's counters. Counters are monotonic except `live`.
///
/// The snapshot is not atomic across counters: each is read once, while other threads may be
/// working.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct Stats {
    /// Flows in the table now (as [`FlowTable::len`](crate::FlowTable::len)).
    pub live: usize,
    /// Flows created by `get_or_insert_with` or `insert`.
    pub created: u64,
    /// Flows that left because their idle timeout passed.
    pub expired: u64,
    /// Flows that left through `remove`, `clear` or the table being dropped.
    pub removed: u64,
    /// Flows that left because `insert` replaced them.
    pub replaced: u64,
    /// Flows evicted by the capacity policy.
    pub evicted: u64,
    /// New flows refused because the table was full.
    pub rejected_full: u64,
    /// Evictions of embryonic flows (included in `evicted`).
    pub evicted_embryonic: u64,
    /// Evictions of closing flows (included in `evicted`).
    pub evicted_closing: u64,
    /// Evictions of established flows (included in `evicted`).
    pub evicted_established: u64,
    /// Flows already past their deadline that were expired on demand to make room for a new flow
    /// (included in `expired`).
    pub reclaimed_expired: u64,
    /// Whether emergency mode (shorter timeouts for new flows) is on.
    pub emergency: bool,
    /// Bytes held by the table's own structures (index, records of flows in the table, timers):
    /// counted exactly by the compact backend, estimated from capacities and entry sizes by the
    /// dashmap backend. Records that left the table but are still held by handles are not included.
    pub memory_bytes: usize,
    /// Mean probe length of lookups so far (slots visited per lookup); 0 where the backend has no probes.
    pub probe_mean: f64,
    /// Longest probe seen so far; 0 where the backend has no probes.
    pub probe_max: u64,
}

#[derive(Debug, Default)]
struct Stripe {
    created: AtomicU64,
    expired: AtomicU64,
    removed: AtomicU64,
    replaced: AtomicU64,
    evicted: AtomicU64,
    rejected_full: AtomicU64,
    evicted_class: [AtomicU64; 3],
    reclaimed: AtomicU64,
}

/// Event counters striped by shard. `live` is not kept here: each backend keeps it where its
/// capacity check needs it.
#[derive(Debug)]
pub(crate) struct Counters {
    stripes: Box<[CachePadded<Stripe>]>,
}

/// What a counter counts.
#[derive(Copy, Clone, Debug)]
#[cfg_attr(not(feature = "dashmap"), allow(dead_code))] // eviction: dashmap backend only so far
pub(crate) enum Event {
    Created,
    Left(RemovalCause),
    RejectedFull,
    /// A flow of this class was evicted (it also leaves with `Left(Evicted)`).
    Evicted(FlowClass),
    /// An expired flow was reclaimed to make room (it also leaves with `Left(Expired)`).
    Reclaimed,
}

impl Counters {
    pub(crate) fn new() -> Self {
        Counters { stripes: (0..striped::STRIPES).map(|_| CachePadded::default()).collect() }
    }

    /// Counts `event` in the calling thread's stripe (threads that count the same events do not
    /// share a cache line, and most count without a locked instruction: [`striped`]).
    #[inline]
    pub(crate) fn add(&self, event: Event) {
        let (i, owned) = striped::own_stripe();
        let s = &self.stripes[i];
        let c = match event {
            Event::Created => &s.created,
            Event::Left(RemovalCause::Expired) => &s.expired,
            Event::Left(RemovalCause::Removed) => &s.removed,
            Event::Left(RemovalCause::Replaced) => &s.replaced,
            Event::Left(RemovalCause::Evicted) => &s.evicted,
            Event::RejectedFull => &s.rejected_full,
            Event::Evicted(class) => &s.evicted_class[class as usize],
            Event::Reclaimed => &s.reclaimed,
        };
        striped::add_to(c, owned, 1);
    }

    /// Sums the stripes into a snapshot (with `live` given by the caller).
    pub(crate) fn snapshot(&self, live: usize) -> Stats {
        let mut st = Stats { live, ..Stats::default() };
        for s in self.stripes.iter() {
            st.created += s.created.load(Ordering::Relaxed);
            st.expired += s.expired.load(Ordering::Relaxed);
            st.removed += s.removed.load(Ordering::Relaxed);
            st.replaced += s.replaced.load(Ordering::Relaxed);
            st.evicted += s.evicted.load(Ordering::Relaxed);
            st.rejected_full += s.rejected_full.load(Ordering::Relaxed);
            st.evicted_embryonic += s.evicted_class[0].load(Ordering::Relaxed);
            st.evicted_closing += s.evicted_class[1].load(Ordering::Relaxed);
            st.evicted_established += s.evicted_class[2].load(Ordering::Relaxed);
            st.reclaimed_expired += s.reclaimed.load(Ordering::Relaxed);
        }
        st
    }
}
