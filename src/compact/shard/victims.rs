//! The eviction order of one shard, for tables with [`CapacityPolicy::Evict`]: per flow class, a
//! queue of eviction candidates, least recently seen first, so that each eviction of a flood
//! costs amortised O(1) instead of a scan of the shard.
//!
//! All of it lives under the shard lock ([`Locked`](super::Locked)). Entries are lazy, like the
//! timers: a flow that was touched, changed class, left or was reused keeps its stale entry, which
//! is checked against the record when it reaches the front of its queue. What makes the front the
//! true candidate is this invariant (V), for each class `c` with queue `q` and bound `b`:
//!
//! > every eligible flow of class `c` last seen before `b` has an entry in `q` with its index and
//! > generation and a last-seen time no later than its own; `q` is sorted by last-seen time.
//!
//! - A scan of the shard builds the queues: every eligible flow if a class has at most
//!   [`keep`] of them (`b` is then `u64::MAX`), else the `keep` least recently seen, with `b` the
//!   last-seen time of the first flow left out.
//! - A touch only moves a flow's last-seen time later, so its old entry still satisfies V; when
//!   that entry reaches the front it is filed again under the new time (or dropped past `b`).
//! - A flow that enters a class (created, or `set_class`) is filed in that class's queue if it was
//!   last seen before `b` (under the shard lock: creation does it in `activate`, `set_class` calls
//!   [`Shard::class_changed`](super::Shard::class_changed) when the table evicts).
//! - At the front, an entry whose record has another generation, another class or is no longer a
//!   candidate (not active, or a released `WhileHeld` flow) is dropped. An entry whose record has
//!   the entry's last-seen time is then the least recently seen flow of its class (by V), ties
//!   in (last seen, birth) broken by queue order: filing order for entries filed since the last
//!   scan, unspecified among those the scan kept (its sort is unstable).
//! - An empty queue with a finite bound means flows of the class may exist beyond it: the shard
//!   is scanned again. Queues that grow past [`slack`] entries (stale ones piling up while the table
//!   is below its maximum) are dropped and rebuilt by the next eviction's scan.
//!
//! [`CapacityPolicy::Evict`]: crate::CapacityPolicy::Evict
#![forbid(unsafe_code)]

use std::collections::VecDeque;

use crate::FlowClass;

/// One queued candidate: its last-seen time (ms) and birth counter when filed, and its record.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) struct Cand {
    pub(crate) last: u64,
    pub(crate) birth: u8,
    pub(crate) idx: u32,
    pub(crate) gen: u8,
}

/// What a record says about a queued candidate when it reaches the front.
pub(crate) enum Check {
    /// Gone, reused, in another class, or no longer a candidate: drop the entry.
    Stale,
    /// Still a candidate of this class, last seen at this time (ms) and with this birth counter.
    Seen(u64, u8),
}

#[derive(Debug)]
struct ClassQueue {
    q: VecDeque<Cand>,
    /// See V in the module documentation; `u64::MAX`: every candidate of the class is queued.
    bound: u64,
}

impl ClassQueue {
    const fn new() -> Self {
        ClassQueue { q: VecDeque::new(), bound: 0 }
    }

    /// Files `c` in order (usually at the back: times mostly grow), if it falls before the bound.
    fn file(&mut self, c: Cand) {
        if c.last >= self.bound {
            return;
        }
        if self.q.back().map_or(true, |b| b.last <= c.last) {
            self.q.push_back(c);
        } else {
            let at = self.q.partition_point(|e| e.last <= c.last);
            self.q.insert(at, c);
        }
    }
}

/// The candidate queues of one shard.
#[derive(Debug)]
pub(crate) struct Victims {
    classes: [ClassQueue; 3],
    /// Whether the queues describe the shard (until the first scan, and after they were dropped,
    /// they do not, and nothing is filed).
    built: bool,
}

/// The classes in the order they are evicted.
const EVICTION_ORDER: [FlowClass; 3] = [FlowClass::Embryonic, FlowClass::Closing, FlowClass::Established];

/// How many candidates of a class a scan of a shard with `live` flows keeps. A flood rescans a
/// shard once per `keep` evictions: a quarter of the shard made floods at 10^4–10^6 flows 7–16%
/// faster than an eighth, for 16 bytes per kept entry (`design/robustness.md`).
pub(crate) fn keep(live: usize) -> usize {
    (live / 4).max(64)
}

/// The queue length past which the queues are dropped: a class's queue may hold every flow of
/// the shard (a flood makes them all embryonic), and stale entries up to a quarter more.
fn slack(live: usize) -> usize {
    live + live / 4 + 256
}

impl Victims {
    pub(crate) const fn new() -> Self {
        Victims { classes: [ClassQueue::new(), ClassQueue::new(), ClassQueue::new()], built: false }
    }

    /// Whether the queues describe the shard.
    pub(crate) fn built(&self) -> bool {
        self.built
    }

    /// Bytes held (the queues' capacity).
    pub(crate) fn memory(&self) -> usize {
        self.classes.iter().map(|c| c.q.capacity() * std::mem::size_of::<Cand>()).sum()
    }

    /// Forgets everything (the next eviction scans).
    pub(crate) fn reset(&mut self) {
        for c in &mut self.classes {
            c.q = VecDeque::new();
            c.bound = 0;
        }
        self.built = false;
    }

    /// Rebuilds the queues from a scan: every candidate of the shard, with its class.
    pub(crate) fn rebuild(&mut self, all: Vec<(FlowClass, Cand)>, live: usize) {
        let mut per: [Vec<Cand>; 3] = [Vec::new(), Vec::new(), Vec::new()];
        for (class, c) in all {
            per[class as usize].push(c);
        }
        let k = keep(live);
        for (queue, mut v) in self.classes.iter_mut().zip(per) {
            let key = |c: &Cand| (c.last, c.birth);
            queue.bound = if v.len() > k {
                v.select_nth_unstable_by_key(k, key);
                let bound = v[k].last;
                // Everything before position k sorts no later than v[k]; keep those strictly
                // before the bound's time (V), and the ones at it, which are harmless extras.
                v.truncate(k);
                v.shrink_to_fit();
                bound
            } else {
                u64::MAX
            };
            v.sort_unstable_by_key(key);
            queue.q = v.into();
        }
        self.built = true;
    }

    /// The first entry of the lowest class that has one, unchecked: right after
    /// [`rebuild`](Self::rebuild), the least candidate the scan saw.
    pub(crate) fn first(&self) -> Option<(FlowClass, Cand)> {
        EVICTION_ORDER.into_iter().find_map(|class| self.classes[class as usize].q.front().map(|&c| (class, c)))
    }

    /// Files a flow that entered `class` (created, or moved there by `set_class`).
    pub(crate) fn file(&mut self, class: FlowClass, c: Cand, live: usize) {
        if !self.built {
            return;
        }
        let q = &mut self.classes[class as usize];
        q.file(c);
        if q.q.len() > slack(live) {
            self.reset();
        }
    }

    /// The least recently seen candidate of the lowest class that has one, as `(class, entry)`
    /// with the entry's time and birth current; `Err(())` if the shard must be scanned first (a
    /// class may hold candidates beyond its queue). `check` reads a record.
    pub(crate) fn front(&mut self, check: impl Fn(&Cand, FlowClass) -> Check) -> Result<Option<(FlowClass, Cand)>, ()> {
        if !self.built {
            return Err(());
        }
        for class in EVICTION_ORDER {
            let queue = &mut self.classes[class as usize];
            while let Some(&e) = queue.q.front() {
                match check(&e, class) {
                    Check::Stale => {
                        queue.q.pop_front();
                    }
                    Check::Seen(last, birth) if last == e.last => {
                        return Ok(Some((class, Cand { birth, ..e })));
                    }
                    Check::Seen(last, birth) => {
                        // Touched since it was filed: file it again under its new time.
                        queue.q.pop_front();
                        queue.file(Cand { last, birth, ..e });
                    }
                }
            }
            if queue.bound != u64::MAX {
                return Err(());
            }
        }
        Ok(None)
    }
}

#[cfg(all(test, not(flowtable_loom)))]
mod tests {
    use super::*;

    fn cand(last: u64, idx: u32) -> Cand {
        Cand { last, birth: 0, idx, gen: 0 }
    }

    #[test]
    fn scan_keeps_the_least_recent_and_bounds_the_rest() {
        let mut v = Victims::new();
        let all_again =
            || (0..1000u32).map(|i| (FlowClass::Embryonic, cand(u64::from((i * 7919) % 1000), i))).collect();
        v.rebuild(all_again(), 1000);
        let q = &v.classes[0];
        assert_eq!(q.q.len(), keep(1000));
        assert_eq!(q.bound, keep(1000) as u64);
        assert!(q.q.iter().zip(q.q.iter().skip(1)).all(|(a, b)| a.last <= b.last));
        assert_eq!(v.classes[1].bound, u64::MAX, "an empty class is complete");
        assert_eq!(v.first().map(|(k, c)| (k, c.last)), Some((FlowClass::Embryonic, 0)));
        v.rebuild(vec![(FlowClass::Established, cand(0, 1)), (FlowClass::Closing, cand(9, 2))], 2);
        assert_eq!(v.first().map(|(k, c)| (k, c.idx)), Some((FlowClass::Closing, 2)), "lowest class first");
        v.rebuild(all_again(), 1000);
        // Flows filed past the bound are left out; before it, in order.
        v.file(FlowClass::Embryonic, cand(5_000, 5_000), 1000);
        assert_eq!(v.classes[0].q.len(), keep(1000));
        v.file(FlowClass::Embryonic, cand(3, 3_000), 1000);
        assert_eq!(v.classes[0].q.iter().position(|c| c.idx == 3_000), Some(4));
    }

    #[test]
    fn front_skips_stale_refiles_touched_and_asks_for_a_scan() {
        let mut v = Victims::new();
        assert!(v.front(|_, _| Check::Stale).is_err(), "not built: scan first");
        let all = vec![
            (FlowClass::Closing, cand(1, 1)),
            (FlowClass::Closing, cand(2, 2)),
            (FlowClass::Established, cand(0, 3)),
        ];
        v.rebuild(all, 3);
        // Flow 1 was touched at 5: flow 2 goes first, then 1.
        let seen = |c: &Cand, _: FlowClass| Check::Seen(if c.idx == 1 { 5 } else { c.last }, 0);
        assert_eq!(v.front(seen).unwrap().map(|(k, c)| (k, c.idx)), Some((FlowClass::Closing, 2)));
        // Flow 2 left: its entry is dropped; flow 1 is next, under its new time.
        let seen = |c: &Cand, _: FlowClass| if c.idx == 2 { Check::Stale } else { Check::Seen(c.last, 0) };
        assert_eq!(v.front(seen).unwrap().map(|(_, c)| (c.idx, c.last)), Some((1, 5)));
        // No closing flow left: the established one.
        let none = |c: &Cand, k: FlowClass| if k == FlowClass::Closing { Check::Stale } else { Check::Seen(c.last, 0) };
        assert_eq!(v.front(none).unwrap().map(|(k, c)| (k, c.idx)), Some((FlowClass::Established, 3)));
        // A bounded class whose queue ran dry needs a scan.
        let all: Vec<_> = (0..200u32).map(|i| (FlowClass::Embryonic, cand(u64::from(i), i))).collect();
        v.rebuild(all, 200);
        assert!(v.front(|_, _| Check::Stale).is_err());
    }

    #[test]
    fn stale_entries_past_the_slack_drop_the_queues() {
        let mut v = Victims::new();
        v.rebuild(Vec::new(), 0);
        for i in 0..slack(10) as u32 + 1 {
            v.file(FlowClass::Embryonic, cand(u64::from(i), i), 10);
        }
        assert!(!v.built());
    }
}
