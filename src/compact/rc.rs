//! A flow record and its reference counting: [`Record`] (40 bytes for a 16-byte key and an 8-byte
//! value), [`RecordRef`] (one strong reference, one machine word) and [`DeadRecord`] (the record
//! after its last reference went, owned by the thread that dropped it).
//!
//! The record's two words are described in [`id`](super::id): the reference word (`filed | rc |
//! gen`) and the time word (`last_seen | status | mode | class | timeout`).
#![allow(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]

use std::mem::MaybeUninit;
use std::ptr::NonNull;

use super::arena::{release_shard, shard_of_record, Arena};
use super::id::{self, refw, timew};
use super::shard::{Palette, Shard};
use crate::sync::atomic::{AtomicU64, Ordering};
use crate::sync::UnsafeCell;

/// One flow. Hot words first; key before value (a lookup reads the key, rarely the value).
#[repr(C)]
pub(crate) struct Record<K, V> {
    /// `filed | rc | gen` (see [`refw`]).
    refs: AtomicU64,
    /// `last_seen | status | mode | class | timeout` (see [`timew`]); while the record is free,
    /// the index of the next free record.
    time: AtomicU64,
    /// Initialised from allocation until the last reference goes (C6).
    key: UnsafeCell<MaybeUninit<K>>,
    /// Initialised while the status is not a creation's (`PENDING`, `WAITED`, `CANCELLED`, C6).
    value: UnsafeCell<MaybeUninit<V>>,
}

/// What the expiry pass decided about a popped timer.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Due {
    /// The flow already left the table: release the heap's reference.
    Stale,
    /// A touch moved the deadline to this time (ms): file the timer again.
    Moved(u64),
    /// The flow left as expired (this caller won, and must finish the exit).
    Expired,
    /// `WhileHeld`: the deadline passed; the heap drops its reference, the flow stays findable.
    Release,
    /// The flow is still being created (its timer is filed before `init` runs): file the timer
    /// again under the same deadline once the pass's hold of the lock ends (C13).
    Creating,
}

impl<K, V> Record<K, V> {
    /// A free record (never yet used).
    pub(crate) fn vacant() -> Self {
        Record {
            refs: AtomicU64::new(0),
            time: AtomicU64::new(0),
            key: UnsafeCell::new(MaybeUninit::uninit()),
            value: UnsafeCell::new(MaybeUninit::uninit()),
        }
    }

    // === reference word ===

    /// The reference word (Acquire: pairs with the Release of a publishing store).
    #[inline]
    pub(crate) fn refs_word(&self) -> u64 {
        self.refs.load(Ordering::Acquire)
    }

    /// The generation.
    #[inline]
    pub(crate) fn gen(&self) -> u8 {
        refw::gen(self.refs.load(Ordering::Acquire))
    }

    /// Takes a reference if the record still has generation `gen` and is alive (C2): the one way
    /// a reader that found a slot gets a reference.
    #[inline]
    pub(crate) fn try_acquire(&self, gen: u8) -> bool {
        if crate::sync::mutant("compact_acquire_no_check") {
            // Mutant: take the reference whatever the generation and count.
            self.refs.fetch_add(refw::RC_ONE, Ordering::Acquire);
            return true;
        }
        let mut w = self.refs.load(Ordering::Relaxed);
        loop {
            if refw::gen(w) != gen || refw::rc(w) == 0 {
                return false;
            }
            // Acquire on success: the key written before the record was published is visible (C5).
            match self.refs.compare_exchange_weak(w, w + refw::RC_ONE, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(cur) => w = cur,
            }
        }
    }

    /// Takes one more reference (the caller holds one), aborting past `RC_LIMIT` references as
    /// `Arc` does.
    #[inline]
    pub(crate) fn acquire(&self) {
        // Relaxed: as `Arc::clone`, the caller's reference keeps the record alive.
        let old = self.refs.fetch_add(refw::RC_ONE, Ordering::Relaxed);
        if refw::rc(old) >= refw::RC_LIMIT {
            std::process::abort();
        }
    }

    /// Drops one reference; `true` for the caller that dropped the last one.
    #[inline]
    pub(crate) fn release(&self) -> bool {
        // Release: this thread's uses of the record happen before its reuse (as `Arc::drop`).
        let old = self.refs.fetch_sub(refw::RC_ONE, Ordering::Release);
        debug_assert!(refw::rc(old) > 0);
        if refw::rc(old) != 1 {
            return false;
        }
        // Acquire (a load rather than a fence, which ThreadSanitizer does not model; as `Arc`
        // does under TSan): every other thread's use happens before we drop the contents.
        let _ = self.refs.load(Ordering::Acquire);
        true
    }

    /// Makes a freshly allocated record live with two references, the creator's and the one of
    /// its main-heap entry filed under `filed`, keeping its generation: one store where a revive
    /// and a separate count for the entry would take a store and a locked read-modify-write. Called
    /// after the key and time word are written, under the shard lock (the only writer of `filed`).
    pub(crate) fn revive_filed(&self, filed: u32) {
        let g = self.refs.load(Ordering::Relaxed) & !(refw::RC_MASK | refw::FILED_MASK);
        // Release: a reader whose `try_acquire` reads this (or a later RMW in its release
        // sequence) sees the key, even one that reached the record through a stale slot (C5). A
        // store is enough: nobody else writes a free record's reference word (a stale reader's
        // CAS fails on `rc = 0` and leaves it as it is, C2).
        self.refs.store(g | (2 * refw::RC_ONE) | u64::from(filed), Ordering::Release);
    }

    /// Bumps the generation: every slot naming the record is dead from now on (C2).
    pub(crate) fn bump_gen(&self) {
        // Release: pairs with readers' Acquire of `refs`; wraps off the top bits.
        self.refs.fetch_add(refw::GEN_ONE, Ordering::Release);
    }

    /// The deadline the heap filed the record under.
    #[inline]
    pub(crate) fn filed(&self) -> u32 {
        refw::filed(self.refs.load(Ordering::Relaxed))
    }

    /// Files the record under `deadline` (shard lock held: only the lock holder writes `filed`).
    pub(crate) fn set_filed(&self, deadline: u32) {
        let old = self.filed();
        // Relaxed: `filed` is read only under the shard lock; xor keeps concurrent `rc` changes.
        self.refs.fetch_xor(u64::from(old ^ deadline), Ordering::Relaxed);
    }

    // === time word ===

    #[inline]
    pub(crate) fn time_word(&self) -> u64 {
        // Acquire: pairs with the AcqRel CAS that last changed it.
        self.time.load(Ordering::Acquire)
    }

    /// Initialises the time word of a record being created (exclusive: not yet published).
    pub(crate) fn set_time(&self, w: u64) {
        // Relaxed: published by the Release store of the slot (C5).
        self.time.store(w, Ordering::Relaxed);
    }

    /// Changes the time word with `f` until it sticks or `f` declines.
    pub(crate) fn update_time(&self, mut f: impl FnMut(u64) -> Option<u64>) -> Result<u64, u64> {
        if crate::sync::mutant("compact_time_plain_store") {
            // Mutant: check, then store (a racing change is overwritten).
            let w = self.time.load(Ordering::Acquire);
            let Some(n) = f(w) else { return Err(w) };
            self.time.store(n, Ordering::Release);
            return Ok(w);
        }
        let mut w = self.time.load(Ordering::Acquire);
        loop {
            let Some(n) = f(w) else { return Err(w) };
            // AcqRel: every change of the time word is totally ordered with the others (C4).
            match self.time.compare_exchange_weak(w, n, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Ok(w),
                Err(cur) => w = cur,
            }
        }
    }

    /// The deadline (ms) a time word gives.
    #[inline]
    pub(crate) fn deadline_of(w: u64, pal: &Palette) -> u64 {
        id::deadline(timew::last(w), pal.get(timew::tmo(w)))
    }

    /// The current deadline (ms).
    pub(crate) fn deadline(&self, pal: &Palette) -> u64 {
        Self::deadline_of(self.time_word(), pal)
    }

    /// Whether a time word is visible at `now` (ms, floored): active, and held or not yet due (C7).
    #[inline]
    fn visible_word(w: u64, now: u64, pal: &Palette) -> bool {
        timew::status(w) == timew::ACTIVE && (w & timew::HELD_BIT != 0 || Self::deadline_of(w, pal) > now)
    }

    /// Records a packet: last-seen becomes `stamp` (ms, rounded up) unless later already (C4).
    /// `false`, changing nothing, unless `get` at `now` (ms, floored) could return the flow.
    #[inline]
    pub(crate) fn touch(&self, stamp: u64, now: u64, pal: &Palette) -> bool {
        let r = self.update_time(|w| {
            if !Self::visible_word(w, now, pal) || timew::last(w) >= stamp {
                None
            } else {
                Some(timew::with_last(w, stamp))
            }
        });
        match r {
            Ok(_) => true,
            Err(w) => Self::visible_word(w, now, pal),
        }
    }

    /// Moves the status from `from` to `to`; `true` for the one caller that does it (C4).
    pub(crate) fn transition(&self, from: u64, to: u64) -> bool {
        // Mutant `compact_leave_ignores_status`: an exit out of ACTIVE wins even if the flow left.
        let any = from == timew::ACTIVE && crate::sync::mutant("compact_leave_ignores_status");
        self.update_time(|w| (timew::status(w) == from || any).then(|| timew::with_status(w, to))).is_ok()
    }

    /// Leaves as expired if active and due at `now` (a displacing insert); `Err(true)` if it is
    /// active and not due (a touch revived it), `Err(false)` if it already left.
    pub(crate) fn leave_if_due(&self, now: u64, pal: &Palette) -> Result<(), bool> {
        match self.update_time(|w| {
            (timew::status(w) == timew::ACTIVE && Self::deadline_of(w, pal) <= now)
                .then(|| timew::with_status(w, crate::FlowStatus::Expired as u64))
        }) {
            Ok(_) => Ok(()),
            Err(w) => Err(timew::status(w) == timew::ACTIVE),
        }
    }

    /// The expiry pass's decision for a timer popped at `now` (ms) (C4).
    pub(crate) fn try_expire(&self, now: u64, pal: &Palette) -> Due {
        let mut due = Due::Stale;
        let _ = self.update_time(|w| {
            if timew::creating(timew::status(w)) && !crate::sync::mutant("compact_creating_timer_stale") {
                due = Due::Creating;
                return None;
            }
            if timew::status(w) != timew::ACTIVE {
                due = Due::Stale;
                return None;
            }
            let d = Self::deadline_of(w, pal);
            if d > now {
                due = Due::Moved(d);
                return None;
            }
            if w & timew::HELD_BIT != 0 {
                due = Due::Release;
                return None;
            }
            due = Due::Expired;
            Some(timew::with_status(w, crate::FlowStatus::Expired as u64))
        });
        due
    }

    /// Whether `get` may hand the flow out at `now` (ms, floored) (C7).
    #[inline]
    pub(crate) fn visible(&self, now: u64, pal: &Palette) -> bool {
        Self::visible_word(self.time_word(), now, pal)
    }

    // === contents ===

    /// The key.
    ///
    /// # Safety
    /// - The caller holds a reference to the record (a counted `rc`), taken after the record was
    ///   published, so the key is initialised and stays so (C6).
    #[inline]
    pub(crate) unsafe fn key(&self) -> &K {
        // SAFETY: initialised and not dropped while the caller's reference is counted (C6).
        self.key.with(|p| unsafe { (*p).assume_init_ref() })
    }

    /// The value.
    ///
    /// # Safety
    /// - The caller holds a reference to the record, and
    /// - the status is not a creation's (`timew::has_value`: the value is initialised, C6).
    #[inline]
    pub(crate) unsafe fn value(&self) -> &V {
        // SAFETY: initialised while the status says so and the caller's reference is counted (C6).
        self.value.with(|p| unsafe { (*p).assume_init_ref() })
    }

    /// Writes the key of a record being created.
    ///
    /// # Safety
    /// - The record is allocated to the caller and not yet published in any slot, so no one else
    ///   reads it; its previous key was dropped (C6).
    pub(crate) unsafe fn write_key(&self, key: K) {
        // SAFETY: exclusive access per the caller's obligation.
        self.key.with_mut(|p| unsafe { (*p).write(key) });
    }

    /// Writes the value of a record being created.
    ///
    /// # Safety
    /// - The caller created the record and its status is `PENDING`, `WAITED` or `CANCELLED` (no
    ///   reader reads the value then), or the record is not yet published.
    pub(crate) unsafe fn write_value(&self, value: V) {
        // SAFETY: no reader reads the value of a creating, cancelled or unpublished record (C6).
        self.value.with_mut(|p| unsafe { (*p).write(value) });
    }

    /// Moves the value back out of a record whose creation was cancelled after its value was
    /// written.
    ///
    /// # Safety
    /// - The caller created the record, wrote its value, and saw its status `CANCELLED` (set by
    ///   someone else); no one reads the value of a `CANCELLED` record (C6).
    pub(crate) unsafe fn take_value(&self) -> V {
        // SAFETY: initialised by the caller, unread by anyone else per the obligation.
        self.value.with_mut(|p| unsafe { (*p).assume_init_read() })
    }
}

/// One strong reference to a record: what a handle is. One word.
pub(crate) struct RecordRef<K, V> {
    ptr: NonNull<Record<K, V>>,
}

// SAFETY: a `RecordRef` gives shared access to `K` and `V` from any thread (as `Arc<(K, V)>`),
// and its count is atomic.
unsafe impl<K: Send + Sync, V: Send + Sync> Send for RecordRef<K, V> {}
// SAFETY: as above.
unsafe impl<K: Send + Sync, V: Send + Sync> Sync for RecordRef<K, V> {}

impl<K, V> RecordRef<K, V> {
    /// Wraps a reference the caller took (`try_acquire`, `acquire` or `revive_filed`).
    ///
    /// # Safety
    /// - `rec` is a record in a live arena, and one `rc` count was taken for this `RecordRef`
    ///   (which now owns it).
    #[inline]
    pub(crate) unsafe fn adopt(rec: &Record<K, V>) -> Self {
        RecordRef { ptr: NonNull::from(rec) }
    }

    #[inline]
    pub(crate) fn record(&self) -> &Record<K, V> {
        // SAFETY: our counted reference keeps the record allocated and its arena alive (C6, C8).
        unsafe { self.ptr.as_ref() }
    }

    #[inline]
    pub(crate) fn key(&self) -> &K {
        // SAFETY: we hold a counted reference to a published record (C6).
        unsafe { self.record().key() }
    }

    /// The value; `None` for a record still being created (or whose creation was abandoned).
    #[inline]
    pub(crate) fn value(&self) -> &V {
        debug_assert!(timew::has_value(timew::status(self.record().time_word())));
        // SAFETY: handles are only made of records past `PENDING` (C6, C9).
        unsafe { self.record().value() }
    }

    /// Gives the count away without releasing it (the heap keeps it as its own).
    pub(crate) fn into_raw(self) -> NonNull<Record<K, V>> {
        let p = self.ptr;
        std::mem::forget(self);
        p
    }

    #[inline]
    pub(crate) fn ptr_eq(&self, other: &Self) -> bool {
        self.ptr == other.ptr
    }

    /// The record's shard and index (through its chunk header).
    pub(crate) fn shard(&self) -> (&Shard<K, V>, u32) {
        // SAFETY: our counted reference keeps the record allocated, hence its shard (C8).
        unsafe { shard_of_record(self.ptr.as_ptr()) }
    }

    /// The record's index in its shard's arena.
    pub(crate) fn index(&self) -> u32 {
        Arena::<K, V>::locate(self.ptr.as_ptr()).1
    }
}

/// The creator's reference to a record being created: the only party that writes its value.
pub(crate) struct Creation<K, V> {
    r: RecordRef<K, V>,
    wrote: bool,
}

impl<K, V> Creation<K, V> {
    /// Wraps the creator's reference to a record just allocated and initialised as `PENDING`.
    ///
    /// # Safety
    /// - `r` is the only `Creation` ever made for this lifetime of the record (C9).
    pub(crate) unsafe fn new(r: RecordRef<K, V>) -> Self {
        Creation { r, wrote: false }
    }

    pub(crate) fn handle(&self) -> &RecordRef<K, V> {
        &self.r
    }

    /// Writes the value (once, while the record is `PENDING` or `WAITED`, or `CANCELLED` by an `insert` that
    /// took the key while `init` ran: the value is then taken back with [`take_back`](Self::take_back)).
    ///
    /// Regression (found by `threads_race_on_few_keys_at_a_small_maximum`): this asserted `PENDING`
    /// only, and panicked when an `insert` cancelled the creation during `init`.
    pub(crate) fn write_value(&mut self, value: V) {
        let s = timew::status(self.r.record().time_word());
        assert!(!self.wrote && !timew::has_value(s));
        // SAFETY: we are the record's only creator (C9), and only we move it out of PENDING or
        // WAITED to ACTIVE (after this write); until then, or once CANCELLED, no one reads the
        // value (C6).
        unsafe { self.r.record().write_value(value) };
        self.wrote = true;
    }

    /// Takes the value back if it was written and the creation was cancelled.
    pub(crate) fn take_back(&mut self) -> Option<V> {
        if !self.wrote || timew::status(self.r.record().time_word()) != timew::CANCELLED {
            return None;
        }
        self.wrote = false;
        // SAFETY: we wrote the value and the record is CANCELLED: no one else reads it (C6).
        Some(unsafe { self.r.record().take_value() })
    }

    /// The creator's reference, once the record is active (or later).
    pub(crate) fn into_ref(mut self) -> RecordRef<K, V> {
        debug_assert!(timew::has_value(timew::status(self.r.record().time_word())));
        self.wrote = false;
        // No clone and drop (two atomic read-modify-writes): the reference moves out, and the
        // `Creation`, which has nothing left to take back, is not dropped.
        let this = std::mem::ManuallyDrop::new(self);
        // SAFETY: `this` is never dropped or used again, so `r` is moved out exactly once.
        unsafe { std::ptr::read(&this.r) }
    }
}

impl<K, V> Drop for Creation<K, V> {
    fn drop(&mut self) {
        drop(self.take_back());
    }
}

/// A dead record finished by [`finish_dead`]: what is left is its return to the free list of
/// `shard` (at `idx`) and the drop of its count there.
pub(crate) struct Finished<K, V> {
    pub(crate) shard: *const Shard<K, V>,
    pub(crate) idx: u32,
    /// Whether the flow left the table here (`on_dead`).
    pub(crate) left: bool,
    /// The first panic of the listener or of a key's or value's `Drop`, for the caller to resume
    /// once the record is free.
    pub(crate) panic: Option<Box<dyn std::any::Any + Send>>,
}

/// Finishes a record whose last reference went, short of its return to the free list: its exit
/// if it was still in the table (`Shard::on_dead`, which may run the listener), then its
/// contents, with no lock held. A panic in either is caught and handed back, so that the record
/// is still freed (a panicking `Drop` leaks the rest of the contents, not the record).
pub(crate) fn finish_dead<K, V>(dead: DeadRecord<K, V>) -> Finished<K, V> {
    let (shard_ptr, idx) = Arena::<K, V>::locate(dead.ptr.as_ptr());
    // SAFETY: the record is allocated (not yet freed), so it holds a count of its shard (C8).
    let shard = unsafe { &*shard_ptr };
    let (left, mut panic) = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| shard.on_dead(&dead))) {
        Ok(left) => (left, None),
        Err(p) => (true, Some(p)), // it left before the listener ran
    };
    if let Err(p) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| dead.drop_contents())) {
        panic.get_or_insert(p);
    }
    Finished { shard: shard_ptr, idx, left, panic }
}

/// Finishes a record whose last reference went ([`finish_dead`]), returns it to the free list
/// and drops its count on the shard (C8). Returns whether the flow left the table here.
fn last_ref_gone<K, V>(dead: DeadRecord<K, V>) -> bool {
    let f = finish_dead(dead);
    // SAFETY: the record is not yet freed, so it still holds a count of its shard (C8).
    unsafe { &*f.shard }.free_record(f.idx);
    // SAFETY: the record's allocation owned one count of its shard; the record is free now and
    // the shard is not used after this call (C8).
    unsafe { release_shard(f.shard) };
    match f.panic {
        None => f.left,
        Some(p) => std::panic::resume_unwind(p),
    }
}

impl<K, V> Clone for RecordRef<K, V> {
    #[inline]
    fn clone(&self) -> Self {
        self.record().acquire();
        RecordRef { ptr: self.ptr }
    }
}

impl<K, V> RecordRef<K, V> {
    /// Drops this reference; the record if it was the last one, for the caller to finish as
    /// [`last_ref_gone`] would (`Shard::release_all`, which frees a batch under one lock hold).
    pub(crate) fn release_last(self) -> Option<DeadRecord<K, V>> {
        let ptr = self.ptr;
        std::mem::forget(self);
        // SAFETY: `self` owned one count, which this release consumes (it is forgotten above).
        let rec = unsafe { ptr.as_ref() };
        rec.release().then_some(DeadRecord { ptr })
    }
}

impl<K, V> Drop for RecordRef<K, V> {
    #[inline]
    fn drop(&mut self) {
        if self.record().release() {
            last_ref_gone(DeadRecord { ptr: self.ptr });
        }
    }
}

/// A record whose last reference went: owned by the thread that dropped it, which finishes its
/// exit (if any), drops its contents and returns it to its shard.
pub(crate) struct DeadRecord<K, V> {
    ptr: NonNull<Record<K, V>>,
}

impl<K, V> DeadRecord<K, V> {
    #[inline]
    pub(crate) fn record(&self) -> &Record<K, V> {
        // SAFETY: a dead record stays allocated until its shard frees it, after `drop_contents`
        // and the return to the free list, which consume `self` (C8).
        unsafe { self.ptr.as_ref() }
    }

    /// The key (still initialised).
    pub(crate) fn key(&self) -> &K {
        // SAFETY: the contents are dropped only by `drop_contents`, which consumes `self` (C6).
        unsafe { self.record().key() }
    }

    /// The value, if the creation completed.
    pub(crate) fn value(&self) -> Option<&V> {
        let s = timew::status(self.record().time_word());
        // SAFETY: as `key`; the status says whether the value was written (C6).
        timew::has_value(s).then(|| unsafe { self.record().value() })
    }

    /// Drops the key and (if written) the value; the record is then ready for the free list.
    pub(crate) fn drop_contents(self) -> NonNull<Record<K, V>> {
        let s = timew::status(self.record().time_word());
        let rec = self.record();
        // SAFETY: the last reference is gone (rc = 0), so no one else can read the contents, and
        // no reader can take a new reference (C2); the key is initialised, the value is when the
        // status says so (C6).
        unsafe {
            rec.key.with_mut(|p| (*p).assume_init_drop());
            if timew::has_value(s) {
                rec.value.with_mut(|p| (*p).assume_init_drop());
            }
        }
        self.ptr
    }
}
