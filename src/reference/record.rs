//! The reference backend's flow record and its state word.
//!
//! # The state word
//! `state` packs the flow's status (low 3 bits) and its last-seen time in microseconds, rounded up
//! (the other 61 bits: enough for 73,000 years). Every status change and every touch is a
//! compare-and-swap on this one word, which is what makes a touch racing with expiry either applied
//! or refused, never both (invariant R2 in `design/concurrency.md`).
#![forbid(unsafe_code)]

use std::time::Duration;

use crate::listener::{AsEvent, RemovalEvent};
use crate::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use crate::sync::{Arc, Weak};
use crate::time::duration_nanos;
use crate::{ExpiryMode, FlowClass, FlowStatus, RemovalCause, Timestamp};

use super::{Hooks, Shared};

const STATUS_BITS: u32 = 3;
const STATUS_MASK: u64 = (1 << STATUS_BITS) - 1;
const MODE_WHILE_HELD: u8 = 1;

/// `ns` rounded up to whole microseconds (so deadlines are never early).
fn ceil_us(t: Timestamp) -> u64 {
    t.as_nanos().div_ceil(1_000)
}

fn pack(last_seen_us: u64, status: FlowStatus) -> u64 {
    (last_seen_us << STATUS_BITS) | status as u64
}

fn last_seen_us(word: u64) -> u64 {
    word >> STATUS_BITS
}

/// What an expiry pass found when it popped a record's timer.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Due {
    /// The flow already left the table (removed, replaced...): the timer entry was stale.
    Stale,
    /// A touch moved the deadline to this many nanoseconds: file the timer again.
    Moved(u64),
    /// The flow has left the table as expired (this caller won the race and must notify).
    Expired,
    /// [`ExpiryMode::WhileHeld`]: the deadline passed; the table drops its strong reference and the
    /// flow leaves when its last handle does.
    Release,
}

/// One flow: what the map's `Weak` and the timer queue's `Arc` point to.
pub(crate) struct Record<K, V, S> {
    /// Status and last-seen time (see the module docs). Changes only by CAS.
    state: AtomicU64,
    /// The idle timeout in nanoseconds.
    timeout_ns: AtomicU64,
    /// Bit 0: expiry mode is `WhileHeld`; bits 1-2: eviction class.
    flags: AtomicU8,
    /// The timer queue that holds this record's timer (fixed at creation).
    pub(super) queue: usize,
    pub(crate) key: K,
    pub(crate) value: V,
    /// The table, for the `WhileHeld` exit in `Drop` and for `set_timeout`.
    pub(super) table: Weak<Shared<K, V, S>>,
    /// Counters, occupancy and listener, which outlive the table while records do.
    pub(super) hooks: Arc<Hooks<K, V>>,
}

impl<K, V, S> Record<K, V, S> {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        key: K,
        value: V,
        now: Timestamp,
        timeout: Duration,
        mode: ExpiryMode,
        queue: usize,
        table: Weak<Shared<K, V, S>>,
        hooks: Arc<Hooks<K, V>>,
    ) -> Self {
        let flags = if mode == ExpiryMode::WhileHeld { MODE_WHILE_HELD } else { 0 };
        Record {
            state: AtomicU64::new(pack(ceil_us(now), FlowStatus::Active)),
            timeout_ns: AtomicU64::new(duration_nanos(timeout)),
            flags: AtomicU8::new(flags),
            queue,
            key,
            value,
            table,
            hooks,
        }
    }

    pub(crate) fn status(&self) -> FlowStatus {
        // Acquire: pairs with the AcqRel CAS that changed the status.
        FlowStatus::from_bits(self.state.load(Ordering::Acquire) & STATUS_MASK)
    }

    pub(crate) fn last_seen(&self) -> Timestamp {
        Timestamp::from_micros(last_seen_us(self.state.load(Ordering::Acquire)))
    }

    pub(crate) fn timeout(&self) -> Duration {
        Duration::from_nanos(self.timeout_ns.load(Ordering::Relaxed))
    }

    fn deadline_of(&self, word: u64) -> u64 {
        (last_seen_us(word).saturating_mul(1_000)).saturating_add(self.timeout_ns.load(Ordering::Relaxed))
    }

    /// The deadline in nanoseconds.
    pub(crate) fn deadline_ns(&self) -> u64 {
        self.deadline_of(self.state.load(Ordering::Acquire))
    }

    pub(crate) fn expiry_mode(&self) -> ExpiryMode {
        if self.flags.load(Ordering::Relaxed) & MODE_WHILE_HELD != 0 {
            ExpiryMode::WhileHeld
        } else {
            ExpiryMode::Remove
        }
    }

    pub(crate) fn set_expiry_mode(&self, mode: ExpiryMode) {
        // Relaxed: an independent flag; the expiry pass reads it after its own Acquire of `state`.
        match mode {
            ExpiryMode::WhileHeld => self.flags.fetch_or(MODE_WHILE_HELD, Ordering::Relaxed),
            ExpiryMode::Remove => self.flags.fetch_and(!MODE_WHILE_HELD, Ordering::Relaxed),
        };
    }

    pub(crate) fn class(&self) -> FlowClass {
        FlowClass::from_bits(self.flags.load(Ordering::Relaxed) >> 1)
    }

    /// Sets the class; returns the previous one.
    pub(crate) fn set_class(&self, class: FlowClass) -> FlowClass {
        let old = self
            .flags
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |f| Some((f & MODE_WHILE_HELD) | ((class as u8) << 1)));
        match old {
            Ok(f) | Err(f) => FlowClass::from_bits(f >> 1),
        }
    }

    /// Last seen, in microseconds (the eviction queues' order).
    pub(super) fn last_seen_us(&self) -> u64 {
        last_seen_us(self.state.load(Ordering::Acquire))
    }

    pub(crate) fn set_timeout(&self, timeout: Duration) {
        // `duration_nanos` saturates: `Duration::MAX` (never) becomes a deadline of u64::MAX.
        self.timeout_ns.store(duration_nanos(timeout), Ordering::Relaxed);
    }

    /// Whether `get` may hand this flow out at `now` (invariant R1).
    pub(super) fn is_visible(&self, now: Timestamp) -> bool {
        self.visible_in(self.state.load(Ordering::Acquire), now)
    }

    fn visible_in(&self, w: u64, now: Timestamp) -> bool {
        if w & STATUS_MASK != FlowStatus::Active as u64 {
            return false;
        }
        self.expiry_mode() == ExpiryMode::WhileHeld || self.deadline_of(w) > now.as_nanos()
    }

    /// Records a packet at `now` (see [`FlowHandle::touch`](crate::FlowHandle::touch)).
    pub(crate) fn touch(&self, now: Timestamp) -> bool {
        let t = ceil_us(now);
        let mut w = self.state.load(Ordering::Acquire);
        loop {
            if !self.visible_in(w, now) {
                return false;
            }
            if last_seen_us(w) >= t {
                return true; // never move the deadline backwards (clock going back)
            }
            if crate::sync::mutant("touch_plain_store") {
                // Mutant: check, then store (R2 lost).
                self.state.store(pack(t, FlowStatus::Active), Ordering::Release);
                return true;
            }
            // AcqRel: the touch and the expiry pass's CAS are totally ordered on this word (R2).
            match self.state.compare_exchange_weak(w, pack(t, FlowStatus::Active), Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return true,
                Err(cur) => w = cur,
            }
        }
    }

    /// Moves the flow from `Active` to the status of `cause`; `true` for the one caller that does it
    /// (that caller owns the exit: map entry, counters, listener). Upholds R3.
    pub(super) fn try_leave(&self, cause: RemovalCause) -> bool {
        let to = match cause {
            RemovalCause::Expired => FlowStatus::Expired,
            RemovalCause::Removed => FlowStatus::Removed,
            RemovalCause::Replaced => FlowStatus::Replaced,
            RemovalCause::Evicted => FlowStatus::Evicted,
        };
        let mut w = self.state.load(Ordering::Acquire);
        loop {
            if w & STATUS_MASK != FlowStatus::Active as u64 {
                return false;
            }
            if crate::sync::mutant("leave_plain_store") {
                // Mutant: check, then store (R3 lost).
                self.state.store((w & !STATUS_MASK) | to as u64, Ordering::Release);
                return true;
            }
            match self.state.compare_exchange_weak(
                w,
                (w & !STATUS_MASK) | to as u64,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return true,
                Err(cur) => w = cur,
            }
        }
    }

    /// The expiry pass's decision for a popped timer (R2, R3).
    pub(super) fn try_expire(&self, now: Timestamp) -> Due {
        let mut w = self.state.load(Ordering::Acquire);
        loop {
            // Mutant `expire_ignores_status`: a record that already left is expired again (R3 lost).
            if w & STATUS_MASK != FlowStatus::Active as u64 && !crate::sync::mutant("expire_ignores_status") {
                return Due::Stale;
            }
            let deadline = self.deadline_of(w);
            if deadline > now.as_nanos() {
                return Due::Moved(deadline);
            }
            if self.expiry_mode() == ExpiryMode::WhileHeld {
                return Due::Release;
            }
            let expired = (w & !STATUS_MASK) | FlowStatus::Expired as u64;
            match self.state.compare_exchange_weak(w, expired, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Due::Expired,
                Err(cur) => w = cur,
            }
        }
    }

    /// The `Drop` path's exit: a `WhileHeld` flow still active when its last reference goes.
    fn leave_on_drop(&mut self) -> bool {
        // Relaxed: `&mut self`, no other reference exists (loom's atomics have no `get_mut`).
        let w = self.state.load(Ordering::Relaxed);
        // Mutant `drop_exit_ignores_status`: a flow that already left leaves again (R3 lost).
        if w & STATUS_MASK != FlowStatus::Active as u64 && !crate::sync::mutant("drop_exit_ignores_status") {
            return false;
        }
        self.state.store((w & !STATUS_MASK) | FlowStatus::Expired as u64, Ordering::Relaxed);
        true
    }
}

impl<K, V, S> super::evict::Evictable for Record<K, V, S> {
    fn is_active(&self) -> bool {
        self.status() == FlowStatus::Active
    }
    fn class_now(&self) -> FlowClass {
        self.class()
    }
    fn seen(&self) -> u64 {
        self.last_seen_us()
    }
}

/// A record with the cause it left for, ready to be shown to the listener.
pub(super) struct Exit<'a, K, V, S>(pub(super) &'a Record<K, V, S>, pub(super) RemovalCause);

impl<K, V, S> AsEvent<K, V> for Exit<'_, K, V, S> {
    fn as_event(&self) -> RemovalEvent<'_, K, V> {
        let r = self.0;
        RemovalEvent {
            key: &r.key,
            value: &r.value,
            cause: self.1,
            last_seen: r.last_seen(),
            deadline: Timestamp::from_nanos(r.deadline_ns()),
        }
    }
}

impl<K, V, S> Drop for Record<K, V, S> {
    fn drop(&mut self) {
        // Only a `WhileHeld` flow released by its timer reaches here still active: it leaves now,
        // on the thread that dropped its last handle, outside every lock of the table (R5).
        if !self.leave_on_drop() {
            return;
        }
        if let Some(table) = self.table.upgrade() {
            (table.drop_exit)(&table, self);
        }
        // Room, count and listener do not depend on the table still being there (F1).
        let this: &Self = self;
        this.hooks.complete_exit(this, RemovalCause::Expired);
    }
}
