//! Per-thread timeout queues: `priority_queue::PriorityQueue`s that hold the `Arc`s keeping idle
//! flows alive, ordered by deadline.
//!
//! Each thread files the timers of the flows it creates in its *home* queue (a pool of queues, one
//! per thread slot, so threads rarely share one). Any thread's `expire` drains every queue: its own
//! with a blocking lock, the others only if their lock is free at that moment, so an expiry pass
//! never waits for a busy worker and an idle or exited worker's flows still expire (R4).
//!
//! Deadlines are *lazy*: `touch` only stores into the record; when a timer pops and the record's
//! deadline has moved, the pass files it again at the new deadline.
#![forbid(unsafe_code)]

use std::cmp::Reverse;
use std::hash::{Hash, Hasher};

use priority_queue::PriorityQueue;

use crate::sync::atomic::{AtomicUsize, Ordering};
use crate::sync::{Arc, CachePadded, Mutex, MutexGuard};

/// An `Arc` compared and hashed by address: a timer entry is a flow's identity, not its key.
pub(super) struct ByPtr<T>(pub(super) Arc<T>);

impl<T> ByPtr<T> {
    fn addr(&self) -> usize {
        Arc::as_ptr(&self.0) as *const u8 as usize
    }
}

impl<T> PartialEq for ByPtr<T> {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}
impl<T> Eq for ByPtr<T> {}
impl<T> Hash for ByPtr<T> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.addr().hash(state);
    }
}

type Pq<T> = PriorityQueue<ByPtr<T>, Reverse<u64>, ahash::RandomState>;

/// The pool of timer queues.
pub(super) struct Timers<T> {
    queues: Box<[CachePadded<Mutex<Pq<T>>>]>,
}

/// A monotonically assigned slot number per thread; a thread's home queue is `slot % queues`.
fn thread_slot() -> usize {
    // Through the shim: under loom both are per-execution, so every execution numbers its threads alike.
    crate::sync::lazy_static! {
        static ref NEXT: AtomicUsize = AtomicUsize::new(0);
    }
    crate::sync::thread_local! {
        static SLOT: usize = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    SLOT.with(|s| *s)
}

/// What one queue's pass produced.
pub(super) struct Popped<T> {
    /// Entries whose deadline passed (the caller decides what each means).
    pub(super) due: Vec<Arc<T>>,
}

impl<T> Timers<T> {
    pub(super) fn new(queues: usize) -> Self {
        let n = queues.max(1).next_power_of_two();
        Timers {
            queues: (0..n)
                .map(|_| CachePadded(Mutex::new(PriorityQueue::with_hasher(ahash::RandomState::new()))))
                .collect(),
        }
    }

    pub(super) fn len(&self) -> usize {
        self.queues.len()
    }

    /// The calling thread's home queue.
    pub(super) fn home(&self) -> usize {
        thread_slot() & (self.queues.len() - 1)
    }

    /// Files `flow`'s timer at `deadline` in queue `q`, replacing any timer it had there.
    pub(super) fn push(&self, q: usize, flow: Arc<T>, deadline: u64) {
        // A record's timer is filed once; `push` returns a previous priority (no Arc) if it was not.
        self.queues[q].lock().push(ByPtr(flow), Reverse(deadline));
    }

    /// Takes `flow`'s timer out of queue `q`, returning the queue's `Arc` (drop it outside locks).
    pub(super) fn remove(&self, q: usize, flow: &Arc<T>) -> Option<Arc<T>> {
        let key = ByPtr(Arc::clone(flow));
        let removed = self.queues[q].lock().remove(&key).map(|(item, _)| item.0);
        drop(key);
        removed
    }

    /// Brings `flow`'s timer in queue `q` forward to `deadline` if it is later than that.
    pub(super) fn advance(&self, q: usize, flow: &Arc<T>, deadline: u64) {
        let key = ByPtr(Arc::clone(flow));
        self.queues[q].lock().change_priority_by(&key, |p| {
            if deadline < p.0 {
                p.0 = deadline;
            }
        });
    }

    /// Locks queue `q`: blocking if `wait`, else only if free.
    pub(super) fn lock(&self, q: usize, wait: bool) -> Option<MutexGuard<'_, Pq<T>>> {
        if wait {
            Some(self.queues[q].lock())
        } else {
            self.queues[q].try_lock()
        }
    }

    /// Pops up to `max` timers due at `now_ns` from a locked queue.
    pub(super) fn pop_due(pq: &mut Pq<T>, now_ns: u64, max: usize, out: &mut Popped<T>) {
        while out.due.len() < max {
            match pq.peek() {
                Some((_, Reverse(d))) if *d <= now_ns => {}
                _ => break,
            }
            if let Some((item, _)) = pq.pop() {
                out.due.push(item.0);
            }
        }
    }

    /// Files a timer again in a locked queue.
    pub(super) fn refile(pq: &mut Pq<T>, flow: Arc<T>, deadline: u64) {
        pq.push(ByPtr(flow), Reverse(deadline));
    }

    /// Takes every timer out of every queue (for `Drop` of the table).
    pub(super) fn drain_all(&self) -> Vec<Arc<T>> {
        let mut out = Vec::new();
        for q in self.queues.iter() {
            let mut pq = q.lock();
            out.extend(std::mem::take(&mut *pq).into_iter().map(|(item, _)| item.0));
        }
        out
    }

    /// Estimated bytes of the queues: per capacity slot an index-map entry (hash, item, priority),
    /// its index (8 bytes and a control byte) and two heap-position words.
    pub(super) fn bytes(&self) -> usize {
        let per = std::mem::size_of::<(u64, ByPtr<T>, Reverse<u64>)>() + 9 + 16;
        self.queues.iter().map(|q| q.lock().capacity() * per).sum()
    }

    /// Timers filed, over all queues.
    pub(super) fn total(&self) -> usize {
        self.queues.iter().map(|q| q.lock().len()).sum()
    }
}
