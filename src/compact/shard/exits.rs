//! Flows leaving a shard in bulk: the expiry pass (and the reclaiming of an expired flow for
//! `CapacityPolicy::Evict`), the choice and eviction of a victim, `clear`, and the snapshot
//! `for_each` calls back over. Split from `shard.rs` to keep files short; same invariants.
#![forbid(unsafe_code)]

use super::*;
use crate::compact::heap::Popped;

/// The least redistribution work (blocks) an expiry call may do.
const WORK_MIN: usize = 8;

/// The most redistribution work (blocks of 30 timers, a few µs each on a table larger than the
/// caches) an expiry pass does in one hold of the shard lock, so that creations waiting for the
/// lock are not held up by a long redistribution (`design/benchmarks.md`, "Two threads on
/// `mixed` at 10^7"). One under loom, so that a model with a few dozen timers gives the lock up.
#[cfg(not(flowtable_loom))]
const HOLD_WORK: usize = 8;
#[cfg(flowtable_loom)]
const HOLD_WORK: usize = 1;

impl<K, V> Shard<K, V> {
    /// One expiry pass over this shard, up to `budget` flows. `hash` recomputes a key's hash
    /// (outside the lock) to clear expired flows' slots.
    pub(crate) fn expire(&self, now: Timestamp, budget: usize, hash: &dyn Fn(&K) -> u64) -> usize {
        self.expire_counting(now, budget, hash, &mut None, false).unwrap_or(0)
    }

    /// As `expire`, but `None` (and nothing done) if the shard lock is held by someone else at
    /// the start: the table's pass comes back to the shard after the others, so that two threads
    /// expiring at once work on different shards instead of queueing on the same one.
    pub(crate) fn try_expire(&self, now: Timestamp, budget: usize, hash: &dyn Fn(&K) -> u64) -> Option<usize> {
        self.expire_counting(now, budget, hash, &mut None, true)
    }

    /// Makes room at the maximum: expires one flow past its deadline, if there is one (counted
    /// as reclaimed as well as expired). Returns how many flows left, and whether the room of the
    /// expired one was handed to the caller (kept reserved) rather than released.
    pub(crate) fn reclaim(&self, now: Timestamp, hash: &dyn Fn(&K) -> u64) -> (usize, bool) {
        // B: no timer of this shard is due yet; no need for the lock.
        if id::ms_floor(now) < self.bounds.due.load(Ordering::Relaxed) {
            return (0, false);
        }
        let mut handed = Some(false);
        let n = self.expire_counting(now, 1, hash, &mut handed, false).unwrap_or(0);
        (n, handed == Some(true))
    }

    /// The expiry pass; `reclaim` is `Some` when it makes room for a creation (the first expired
    /// flow's room is then handed over, and `reclaim` becomes `Some(true)`).
    fn expire_counting(
        &self,
        now: Timestamp,
        budget: usize,
        hash: &dyn Fn(&K) -> u64,
        reclaim: &mut Option<bool>,
        try_first: bool,
    ) -> Option<usize> {
        let t = id::ms_floor(now);
        let mut first = try_first;
        let mut total = 0;
        let mut panic = None;
        // Blocks of radix redistribution this call may move (30 timers each): the call's work
        // stays proportional to its budget even when a million timers share one deadline. Once
        // spent, the call ends as soon as it has expired something, so it returns 0 only when
        // nothing is due.
        let mut work = (budget / 16).max(WORK_MIN);
        let mut stop = false;
        while total < budget && !stop {
            let mut expired: [Option<RecordRef<K, V>>; BATCH] = std::array::from_fn(|_| None);
            let mut released: [Option<RecordRef<K, V>>; BATCH] = std::array::from_fn(|_| None);
            let (mut ne, mut nr) = (0, 0);
            let want = (budget - total).min(BATCH);
            let mut extra = Vec::new(); // other timers of released flows (rare)
            let mut creating = Vec::new(); // timers of creations in flight, filed again (C13; rare)
            let mut held = 0; // blocks of redistribution moved in this hold
            let mut more = false; // the hold ended on its work bound, not for want of due flows
            {
                let mut guard = if std::mem::take(&mut first) { self.try_lock()? } else { self.lock() };
                let pal = &self.common.palette;
                guard.timers.rebase(&self.arena, t, |rec| rec.deadline(pal));
                // Arrays retired by growth are freed here once no lookup may probe them (C1).
                self.slots.reclaim(&mut guard.slots, &self.common.readers);
                while ne < want && nr < BATCH {
                    let g = &mut *guard;
                    let mut allowance = work.min(HOLD_WORK - held);
                    let before = allowance;
                    let popped = g.timers.pop_due(&self.arena, t, &mut allowance);
                    work -= before - allowance;
                    held += before - allowance;
                    let (r, from) = match popped {
                        Popped::Timer(r, from) => (r, from),
                        Popped::Nothing => {
                            // Upholds B: every timer left is due after `t`.
                            if self.evicting() {
                                self.raise_due(t);
                            }
                            break;
                        }
                        // The hold's bound, not the call's: end the batch if it has flows,
                        // else let the shard's waiters through and go on.
                        Popped::Later if work > 0 => {
                            if ne + nr > 0 {
                                more = true;
                                break;
                            }
                            self.refile_creating(&mut guard, &mut creating);
                            guard = self.yield_lock(guard);
                            held = 0;
                            continue;
                        }
                        Popped::Later if total + ne > 0 => {
                            stop = true;
                            break;
                        }
                        Popped::Later => {
                            work = WORK_MIN;
                            continue;
                        }
                    };
                    match r.record().try_expire(t, pal) {
                        Due::Moved(d) => self.file_timer(g, r, d, from),
                        Due::Creating => creating.push((r, from)),
                        Due::Release => {
                            g.timers.take_others(&self.arena, r.index(), from, &mut extra);
                            r.record().set_filed(UNFILED); // no timer holds it any more
                            released[nr] = Some(r);
                            nr += 1;
                        }
                        Due::Stale => {
                            g.timers.popped_stale();
                            released[nr] = Some(r);
                            nr += 1;
                        }
                        Due::Expired => {
                            r.record().bump_gen(); // Upholds C2.
                            if from == From::Side {
                                // Its main entry, filed under the longer timeout, stays behind.
                                g.timers.note_left(&self.arena, &mut extra);
                            }
                            // Upholds C12; when reclaiming, the first room goes to the caller.
                            let hand_over = matches!(reclaim, Some(false));
                            if hand_over {
                                *reclaim = Some(true);
                            } else {
                                self.common.unreserve();
                            }
                            expired[ne] = Some(r);
                            ne += 1;
                        }
                    }
                }
                self.refile_creating(&mut guard, &mut creating);
            }
            if ne == 0 && nr == 0 {
                break;
            }
            if ne > 0 {
                let mut slots = [0u64; BATCH];
                let rg = self.common.readers.enter();
                for (i, r) in expired[..ne].iter().enumerate() {
                    let r = r.as_ref().expect("filled");
                    let gen = r.record().gen().wrapping_sub(1);
                    let h = hash(r.key());
                    // Fetch the slot's line before taking the lock, not while holding it.
                    super::super::slots::prefetch(self.home_addr(h, &rg));
                    slots[i] = slot::pack(slot::tag_of(h), gen, r.index());
                }
                drop(rg);
                let mut g = self.lock();
                for v in &slots[..ne] {
                    self.clear_slot(&mut g, *v);
                }
            }
            for _ in expired[..ne].iter().flatten() {
                if reclaim.is_some() {
                    self.count(Event::Reclaimed);
                }
                self.count(Event::Left(RemovalCause::Expired));
            }
            let pal = &self.common.palette;
            let notified = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                notify_each(
                    self.common.listener.as_ref(),
                    expired[..ne].iter().flatten().map(|r| Exit(r, RemovalCause::Expired, pal)),
                )
            }));
            if let Err(p) = notified {
                panic.get_or_insert(p);
            }
            total += ne;
            // The timers' references, freed together; a `WhileHeld` flow whose last handle is
            // gone leaves here (`on_dead`), and counts. Its other timers (`extra`) go first, so
            // that its own reference is the last.
            let timers = expired[..ne].iter_mut().chain(&mut released[..nr]).map(|r| r.take().expect("filled"));
            total += self.release_all(extra.into_iter().chain(timers), &mut panic);
            if ne < want && nr < BATCH && !more {
                break;
            }
        }
        if let Some(p) = panic {
            std::panic::resume_unwind(p);
        }
        Some(total)
    }

    /// Files again, under their own deadlines, the timers of creations in flight that this hold
    /// of the lock popped or drained (C13). They are due at once, so the first pass after a creation
    /// completes expires the flow if its deadline passed meanwhile; kept out of the heap until the
    /// hold ends, so that a pass pops each of them at most once per hold (also at `now` =
    /// `u64::MAX`, where no later deadline exists).
    fn refile_creating(&self, w: &mut Locked, creating: &mut Vec<(RecordRef<K, V>, From)>) {
        for (r, from) in creating.drain(..) {
            let d = r.record().deadline(&self.common.palette);
            self.file_timer(w, r, d, from);
        }
    }

    /// Removes every flow of the shard (cause `Removed`) and releases every timer except those of
    /// creations still in flight; returns how many flows left.
    pub(crate) fn clear(&self) -> usize {
        let mut removed = Vec::new();
        let mut other = Vec::new();
        {
            let mut g = self.lock();
            let g = &mut *g;
            let arr = self.slots.array();
            for p in 0..arr.cap() {
                let v = arr.get(p);
                if !slot::is_live(v) {
                    continue;
                }
                let Some(r) = self.arena.try_ref(slot::idx(v), slot::gen(v)) else { continue };
                if r.record().transition(timew::ACTIVE, cause_status(RemovalCause::Removed)) {
                    r.record().bump_gen(); // Upholds C2.
                    self.common.unreserve(); // Upholds C12.
                    self.slots.clear(&mut g.slots, p, v);
                    removed.push((r, RemovalCause::Removed));
                } else {
                    other.push(r);
                }
            }
            let mut timers = Vec::new();
            g.timers.drain_into(&self.arena, &mut timers);
            let mut kept = Vec::new();
            for r in timers {
                // A creation in flight keeps its timer: it becomes a flow after `clear` (C13).
                // `Active` here means it was one during the scan above (which moved every active
                // flow out) and activated since, without the lock. Neither has a side entry
                // (`set_timeout` needs a handle and the lock), so each is filed in the main heap.
                let s = timew::status(r.record().time_word());
                let activated = s == timew::ACTIVE && !crate::sync::mutant("compact_clear_drops_activated");
                if activated || timew::creating(s) {
                    kept.push((r, From::Main));
                } else {
                    other.push(r);
                }
            }
            self.refile_creating(g, &mut kept);
            g.victims.reset();
            self.bounds.front.store(0, Ordering::Relaxed); // B: unknown until the next scan
        }
        self.finish_exits(&removed);
        let n = removed.len();
        let mut panic = None;
        self.release_all(removed.into_iter().map(|(r, _)| r).chain(other), &mut panic);
        if let Some(p) = panic {
            std::panic::resume_unwind(p);
        }
        n
    }

    /// The flows visible at tick `now`, collected under the lock (called back after it).
    pub(crate) fn collect(&self, now: u64, out: &mut Vec<RecordRef<K, V>>, defer: &mut Vec<RecordRef<K, V>>) {
        let _g = self.lock();
        let arr = self.slots.array();
        for p in 0..arr.cap() {
            let v = arr.get(p);
            if !slot::is_live(v) {
                continue;
            }
            if let Some(r) = self.arena.try_ref(slot::idx(v), slot::gen(v)) {
                if r.record().visible(now, &self.common.palette) {
                    out.push(r);
                } else {
                    defer.push(r);
                }
            }
        }
    }

    /// The eviction candidate of this shard: its active flow of the lowest class, least recently
    /// seen first, as `(class, last seen, birth)`, index and generation. The front of the shard's
    /// eviction queues ([`victims`](super::victims)), after a scan of the shard if they do not
    /// describe it. Reads the records' words without taking references (they are atomics in memory
    /// that stays allocated, C6); `evict` validates.
    pub(crate) fn victim(&self) -> Option<Victim> {
        let mut g = self.lock();
        let g = &mut *g;
        let check = |e: &victims::Cand, class: FlowClass| match self.candidate(e.idx, e.gen) {
            Some(w) if id::class(w) == class => victims::Check::Seen(timew::last(w), timew::birth(w)),
            _ => victims::Check::Stale,
        };
        let front = match g.victims.front(check) {
            Ok(f) => f,
            Err(()) => {
                g.victims.rebuild(self.candidates(), g.slots.live);
                // The scan's own best, in case the queues come out unusable (every kept candidate
                // of a class touched between the scan and the look at its front: touches do not
                // wait for the lock).
                let best = g.victims.first();
                g.victims.front(check).unwrap_or(best)
            }
        };
        // Upholds B: the front is the shard's least candidate now (u64::MAX: it has none).
        let bound = front.map_or(u64::MAX, |(class, c)| id::order_bound(class, c.last));
        self.bounds.front.store(bound, Ordering::Relaxed);
        front.map(|(class, c)| Victim { order: (class, c.last, c.birth), idx: c.idx, gen: c.gen })
    }

    /// A lower bound on the eviction order of the shard's candidates (B; read without the lock).
    pub(crate) fn front_bound(&self) -> u64 {
        self.bounds.front.load(Ordering::Relaxed)
    }

    /// The time word of record `idx` if it is still generation `gen` and an eviction candidate:
    /// active, and held by its timer (a `WhileHeld` flow its timer released holds no reference of
    /// the table's: it leaves with its last handle). Reads without taking a reference (C6).
    fn candidate(&self, idx: u32, gen: u8) -> Option<u64> {
        let rec = self.arena.get(idx);
        let a = rec.refs_word();
        let w = rec.time_word();
        let ok =
            refw::gen(a) == gen && refw::rc(a) != 0 && timew::status(w) == timew::ACTIVE && refw::filed(a) != UNFILED;
        ok.then_some(w)
    }

    /// Every eviction candidate of the shard, with its class (a scan of the slots, lock held).
    fn candidates(&self) -> Vec<(FlowClass, victims::Cand)> {
        /// Slots ahead whose records are prefetched: the records of a large shard are scattered
        /// in memory, and reading them one miss at a time was most of an eviction's cost. A
        /// shard of fewer slots than `FAR` keeps its records in cache, and the prefetches would
        /// only add work (7% fewer evictions/s at 10^4 flows).
        const AHEAD: usize = 16;
        const FAR: usize = 1 << 15;
        let arr = self.slots.array();
        let ahead = if arr.cap() >= FAR { AHEAD } else { 0 };
        let fetch = |p: usize| {
            let v = arr.get(p);
            if slot::is_live(v) {
                super::super::slots::prefetch(self.arena.addr(slot::idx(v)));
            }
        };
        (0..arr.cap().min(ahead)).for_each(fetch);
        let mut out = Vec::new();
        for p in 0..arr.cap() {
            if ahead > 0 && p + ahead < arr.cap() {
                fetch(p + ahead);
            }
            let v = arr.get(p);
            if !slot::is_live(v) {
                continue;
            }
            if let Some(w) = self.candidate(slot::idx(v), slot::gen(v)) {
                let c = victims::Cand {
                    last: timew::last(w),
                    birth: timew::birth(w),
                    idx: slot::idx(v),
                    gen: slot::gen(v),
                };
                out.push((id::class(w), c));
            }
        }
        out
    }

    /// Evicts the flow at `idx` if it still has generation `gen` and is active; its room is handed
    /// to the caller (kept reserved) when it does.
    pub(crate) fn evict(&self, idx: u32, gen: u8, hash: &dyn Fn(&K) -> u64) -> bool {
        let Some(r) = self.arena.try_ref(idx, gen) else { return false };
        let class = id::class(r.record().time_word());
        // The slot to clear, named before the lock: hashing the key is the user's code (`Hash`).
        let v = slot::pack(slot::tag_of(hash(r.key())), gen, idx);
        let mut purged = Vec::new(); // dropped after the lock (see `Timers::note_left`)
        let left = {
            let mut g = self.lock();
            let ok = r.record().transition(timew::ACTIVE, cause_status(RemovalCause::Evicted));
            if ok {
                r.record().bump_gen(); // Upholds C2.
                self.clear_slot(&mut g, v);
                g.timers.note_left(&self.arena, &mut purged);
            }
            ok
        };
        drop(purged);
        if left {
            self.count(Event::Evicted(class));
            self.count(Event::Left(RemovalCause::Evicted));
            notify_each(self.common.listener.as_ref(), [Exit(&r, RemovalCause::Evicted, &self.common.palette)]);
        }
        left
    }
}
