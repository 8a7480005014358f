//! Eviction order for [`CapacityPolicy::Evict`](crate::CapacityPolicy): per eviction class, queues
//! of flows ordered by when they were last seen (least recently seen first).
//!
//! Like the timers, the order is lazy: a touch only stores into the record; when the head of a queue
//! turns out to have been seen since it was filed, it is filed again and the next head is tried. A
//! flow sits in the queue of its current class (`set_class` moves it) until it leaves the table.
//! Queues are striped like the timers (a flow uses its creator's stripe), and a victim is the oldest
//! head over all stripes of the lowest class that has one.
#![forbid(unsafe_code)]

use std::cmp::Reverse;

use priority_queue::PriorityQueue;

use super::timers::ByPtr;
use crate::sync::{Arc, CachePadded, Mutex};
use crate::FlowClass;

type Pq<T> = PriorityQueue<ByPtr<T>, Reverse<u64>, ahash::RandomState>;
/// One stripe: a queue per eviction class.
type Stripe<T> = CachePadded<[Mutex<Pq<T>>; 3]>;

const CLASSES: [FlowClass; 3] = [FlowClass::Embryonic, FlowClass::Closing, FlowClass::Established];

/// What eviction needs to know of a record.
pub(super) trait Evictable {
    /// Whether it is still in the table.
    fn is_active(&self) -> bool;
    /// Its class now.
    fn class_now(&self) -> FlowClass;
    /// When it was last seen, in the record's own unit.
    fn seen(&self) -> u64;
}

/// When the head of stripe `s`'s queue `q` was filed, and `s`: the oldest head is the minimum.
fn head<T>(s: usize, q: &Pq<T>) -> Option<(u64, usize)> {
    q.peek().map(|(_, p)| (p.0, s))
}

/// `[stripe][class]` queues.
pub(super) struct EvictionQueues<T> {
    stripes: Box<[Stripe<T>]>,
}

impl<T: Evictable> EvictionQueues<T> {
    pub(super) fn new(stripes: usize) -> Self {
        let q = || Mutex::new(PriorityQueue::with_hasher(ahash::RandomState::new()));
        EvictionQueues { stripes: (0..stripes.max(1)).map(|_| CachePadded([q(), q(), q()])).collect() }
    }

    pub(super) fn len(&self) -> usize {
        self.stripes.len()
    }

    /// Estimated bytes, as for the timer queues.
    pub(super) fn bytes(&self) -> usize {
        let per = std::mem::size_of::<(u64, ByPtr<T>, Reverse<u64>)>() + 9 + 16;
        self.stripes.iter().flat_map(|s| s.iter()).map(|q| q.lock().capacity() * per).sum()
    }

    /// Files `rec` under `class` in `stripe`.
    pub(super) fn file(&self, stripe: usize, class: FlowClass, rec: &Arc<T>) {
        self.stripes[stripe][class as usize].lock().push(ByPtr(Arc::clone(rec)), Reverse(rec.seen()));
    }

    /// Moves `rec` from `from` to its current class (a concurrent class change may leave a second
    /// entry; pops discard entries whose class is not the record's).
    pub(super) fn reclass(&self, stripe: usize, from: FlowClass, rec: &Arc<T>) -> Option<Arc<T>> {
        let old = self.stripes[stripe][from as usize].lock().remove(&ByPtr(Arc::clone(rec))).map(|(e, _)| e.0);
        if rec.is_active() {
            self.file(stripe, rec.class_now(), rec);
        }
        old // dropped by the caller, outside the lock
    }

    /// Takes `rec` out of every class queue of `stripe` (when it leaves the table).
    pub(super) fn unfile(&self, stripe: usize, rec: &Arc<T>) -> Vec<Arc<T>> {
        let key = ByPtr(Arc::clone(rec));
        self.stripes[stripe].iter().filter_map(|q| q.lock().remove(&key).map(|(e, _)| e.0)).collect()
    }

    /// The least recently seen active flow of the lowest class that has one, taken out of its queue.
    /// Entries found stale on the way are returned in `discard` (drop them outside every lock).
    pub(super) fn pop_victim(&self, discard: &mut Vec<Arc<T>>) -> Option<(Arc<T>, FlowClass)> {
        for class in CLASSES {
            loop {
                // The stripe whose head is oldest.
                let best =
                    (0..self.stripes.len()).filter_map(|s| head(s, &self.stripes[s][class as usize].lock())).min();
                // The scan takes one stripe's lock at a time, so a class can look empty while it
                // never was: another creator evicts the last entry of a stripe not yet scanned and
                // files its new flow in one already scanned. Only a scan under all the class's
                // locks at once (taken in stripe order; no other path holds two queue locks) says
                // the class is empty; without it, a flood from two threads could evict an
                // established flow (`tests/overload.rs`).
                let best = best.or_else(|| {
                    let all: Vec<_> = self.stripes.iter().map(|st| st[class as usize].lock()).collect();
                    all.iter().enumerate().filter_map(|(s, q)| head(s, q)).min()
                });
                let Some((_, s)) = best else { break };
                let mut q = self.stripes[s][class as usize].lock();
                let Some((item, Reverse(filed))) = q.pop() else { continue };
                let rec = item.0;
                if !rec.is_active() || rec.class_now() != class {
                    discard.push(rec);
                } else if rec.seen() > filed {
                    let seen = rec.seen();
                    q.push(ByPtr(rec), Reverse(seen));
                } else {
                    return Some((rec, class));
                }
            }
        }
        None
    }
}
