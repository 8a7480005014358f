//! The packed words of the compact backend: the slot word, a record's reference word and its time
//! word, with their `SHIFT`/`MASK` constants and the tick arithmetic (wraparound-safe `u32` ticks).
//!
//! See `design/memory.md` for the byte-by-byte layouts and `design/concurrency.md` (compact section)
//! for who may change which bits.
#![forbid(unsafe_code)]

use std::time::Duration;

use crate::{FlowClass, FlowStatus, Timestamp};

// === ticks ===

/// The tick: 1 ms. Deadlines are kept in `u32` ticks (wrapping every 49.7 days).
pub(crate) const TICK: Duration = Duration::from_millis(1);
const TICK_NS: u64 = 1_000_000;

/// `now` rounded up to a tick (used to stamp last-seen: a flow never expires early).
#[inline]
pub(crate) fn tick_ceil(now: Timestamp) -> u32 {
    now.as_nanos().div_ceil(TICK_NS) as u32
}

/// `now` rounded down to a tick (used to compare with deadlines: `d > now` iff `d > floor(now)`).
#[inline]
pub(crate) fn tick_floor(now: Timestamp) -> u32 {
    (now.as_nanos() / TICK_NS) as u32
}

/// Whether tick `a` is after tick `b` (wraparound-safe while they are within 2^31 ticks).
#[inline]
pub(crate) fn after(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

/// The longest timeout a record can hold: `TIMEOUT_BITS` bits of ticks (18.6 hours).
pub(crate) const MAX_TIMEOUT_TICKS: u32 = (1 << TIMEOUT_BITS) - 1;

/// A timeout in whole ticks, rounded up and clamped to [`MAX_TIMEOUT_TICKS`] (at least 1).
pub(crate) fn timeout_ticks(d: Duration) -> u32 {
    let t = d.as_nanos().div_ceil(u128::from(TICK_NS));
    t.clamp(1, u128::from(MAX_TIMEOUT_TICKS)) as u32
}

/// The longest timeout, as a `Duration`.
pub(crate) fn max_timeout() -> Duration {
    Duration::from_millis(u64::from(MAX_TIMEOUT_TICKS))
}

/// Tick `t` expanded to a full timestamp, using `reference_ns` (a recent time of the table) to
/// recover the bits the `u32` dropped.
pub(crate) fn expand(t: u32, reference_ns: u64) -> Timestamp {
    let r = reference_ns / TICK_NS;
    let delta = t.wrapping_sub(r as u32) as i32;
    let full = (r as i64).saturating_add(i64::from(delta)).max(0) as u64;
    Timestamp::from_nanos(full.saturating_mul(TICK_NS))
}

// === slot word ===

/// A slot: `idx+1:28 | gen:8 | tag:28` (low to high). `EMPTY` ends a probe, `TOMB` does not.
pub(crate) mod slot {
    pub(crate) const EMPTY: u64 = 0;
    pub(crate) const TOMB: u64 = u64::MAX;
    pub(crate) const IDX_BITS: u32 = 28;
    const IDX_MASK: u64 = (1 << IDX_BITS) - 1;
    const GEN_SHIFT: u32 = IDX_BITS;
    pub(crate) const TAG_BITS: u32 = 28;
    const TAG_SHIFT: u32 = 36;
    /// Records per shard: the index is stored plus one, and the all-ones word is `TOMB`.
    pub(crate) const MAX_RECORDS: u32 = (1 << IDX_BITS) - 2;

    /// The slot tag of a hash: 28 bits that also fix the home position (so a rebuild needs no
    /// rehash).
    #[inline]
    pub(crate) fn tag_of(hash: u64) -> u32 {
        ((hash >> 8) & ((1 << TAG_BITS) - 1)) as u32
    }
    #[inline]
    pub(crate) fn pack(tag: u32, gen: u8, idx: u32) -> u64 {
        debug_assert!(idx < MAX_RECORDS);
        (u64::from(tag) << TAG_SHIFT) | (u64::from(gen) << GEN_SHIFT) | (u64::from(idx) + 1)
    }
    #[inline]
    pub(crate) fn is_live(s: u64) -> bool {
        s != EMPTY && s != TOMB
    }
    #[inline]
    pub(crate) fn idx(s: u64) -> u32 {
        ((s & IDX_MASK) - 1) as u32
    }
    #[inline]
    pub(crate) fn gen(s: u64) -> u8 {
        (s >> GEN_SHIFT) as u8
    }
    #[inline]
    pub(crate) fn tag(s: u64) -> u32 {
        (s >> TAG_SHIFT) as u32
    }
    /// The home position of `tag` in an array of `cap` slots (multiply-shift range reduction, so
    /// `cap` need not be a power of two).
    #[inline]
    pub(crate) fn home(tag: u32, cap: usize) -> usize {
        ((u64::from(tag) * cap as u64) >> TAG_BITS) as usize
    }
}

// === reference word ===

/// A record's reference word: `filed:32 | rc:24 | gen:8` (low to high).
///
/// - `filed`: the deadline the record is filed under in the shard's timeout heap (its heap key);
///   written only under the shard lock (by `fetch_xor`, so concurrent count changes are kept).
/// - `rc`: strong references (handles + the heap's one). Zero means dead: no reader may take one.
/// - `gen`: bumped when the flow leaves the table; a slot whose `gen` differs is dead.
pub(crate) mod refw {
    pub(crate) const FILED_MASK: u64 = 0xFFFF_FFFF;
    pub(crate) const RC_SHIFT: u32 = 32;
    pub(crate) const RC_ONE: u64 = 1 << RC_SHIFT;
    pub(crate) const RC_BITS: u32 = 24;
    pub(crate) const RC_MASK: u64 = ((1 << RC_BITS) - 1) << RC_SHIFT;
    /// Past this many references a clone aborts (as `Arc` does), long before `rc` could carry
    /// into `gen`.
    pub(crate) const RC_LIMIT: u64 = 1 << (RC_BITS - 1);
    pub(crate) const GEN_SHIFT: u32 = 56;
    pub(crate) const GEN_ONE: u64 = 1 << GEN_SHIFT;

    #[inline]
    pub(crate) fn rc(w: u64) -> u64 {
        (w & RC_MASK) >> RC_SHIFT
    }
    #[inline]
    pub(crate) fn gen(w: u64) -> u8 {
        (w >> GEN_SHIFT) as u8
    }
    #[inline]
    pub(crate) fn filed(w: u64) -> u32 {
        w as u32
    }
}

// === time word ===

const TIMEOUT_BITS: u32 = 26;

/// A record's time word: `last_seen:32 | status:3 | while_held:1 | class:2 | timeout:26`.
///
/// Every status change and every touch is a compare-and-swap on this one word (C4).
pub(crate) mod timew {
    use super::TIMEOUT_BITS;
    pub(crate) const STATUS_SHIFT: u32 = 32;
    pub(crate) const STATUS_MASK: u64 = 7 << STATUS_SHIFT;
    pub(crate) const HELD_BIT: u64 = 1 << 35;
    pub(crate) const CLASS_SHIFT: u32 = 36;
    pub(crate) const CLASS_MASK: u64 = 3 << CLASS_SHIFT;
    pub(crate) const TIMEOUT_SHIFT: u32 = 38;
    pub(crate) const TIMEOUT_MASK: u64 = ((1 << TIMEOUT_BITS) - 1) << TIMEOUT_SHIFT;

    /// Internal statuses beyond [`FlowStatus`](crate::FlowStatus)'s five.
    pub(crate) const ACTIVE: u64 = 0;
    /// Being created: the key is written, the value is not (`init` runs).
    pub(crate) const PENDING: u64 = 5;
    /// A creation abandoned (its `init` panicked, or `insert` took the key): never was a flow.
    pub(crate) const CANCELLED: u64 = 6;

    #[inline]
    pub(crate) fn last(w: u64) -> u32 {
        w as u32
    }
    #[inline]
    pub(crate) fn status(w: u64) -> u64 {
        (w & STATUS_MASK) >> STATUS_SHIFT
    }
    #[inline]
    pub(crate) fn timeout(w: u64) -> u32 {
        ((w & TIMEOUT_MASK) >> TIMEOUT_SHIFT) as u32
    }
    #[inline]
    pub(crate) fn deadline(w: u64) -> u32 {
        last(w).wrapping_add(timeout(w))
    }
    #[inline]
    pub(crate) fn with_last(w: u64, t: u32) -> u64 {
        (w & !0xFFFF_FFFF) | u64::from(t)
    }
    #[inline]
    pub(crate) fn with_status(w: u64, s: u64) -> u64 {
        (w & !STATUS_MASK) | (s << STATUS_SHIFT)
    }
    #[inline]
    pub(crate) fn with_timeout(w: u64, t: u32) -> u64 {
        (w & !TIMEOUT_MASK) | (u64::from(t) << TIMEOUT_SHIFT)
    }
    #[inline]
    pub(crate) fn with_class(w: u64, c: u8) -> u64 {
        (w & !CLASS_MASK) | (u64::from(c) << CLASS_SHIFT)
    }
    pub(crate) fn new(last: u32, status: u64, held: bool, timeout: u32) -> u64 {
        let w = u64::from(last) | (status << STATUS_SHIFT) | (u64::from(timeout) << TIMEOUT_SHIFT);
        if held {
            w | HELD_BIT
        } else {
            w
        }
    }
}

/// The public status of an internal status (pending and cancelled creations are never seen by
/// users holding a handle; they read as `Removed` if they ever are).
pub(crate) fn public_status(s: u64) -> FlowStatus {
    match s {
        timew::PENDING | timew::CANCELLED => FlowStatus::Removed,
        s => FlowStatus::from_bits(s),
    }
}

/// The class bits of a time word.
pub(crate) fn class(w: u64) -> FlowClass {
    FlowClass::from_bits(((w & timew::CLASS_MASK) >> timew::CLASS_SHIFT) as u8)
}

#[cfg(all(test, not(flowtable_loom)))]
mod tests {
    use super::*;

    #[test]
    fn slot_round_trips() {
        for (tag, gen, idx) in [(0, 0, 0), ((1 << 28) - 1, 255, slot::MAX_RECORDS - 1), (12345, 7, 99)] {
            let s = slot::pack(tag, gen, idx);
            assert!(slot::is_live(s));
            assert_eq!((slot::tag(s), slot::gen(s), slot::idx(s)), (tag, gen, idx));
        }
    }

    #[test]
    fn home_is_in_range() {
        for cap in [1usize, 7, 64, 1000, 1 << 20] {
            assert!(slot::home((1 << 28) - 1, cap) < cap);
            assert_eq!(slot::home(0, cap), 0);
        }
    }

    #[test]
    fn ticks_wrap_safely() {
        assert!(after(5, u32::MAX - 3));
        assert!(!after(u32::MAX - 3, 5));
        let t = Timestamp::from_millis(u64::from(u32::MAX) + 10);
        assert_eq!(expand(tick_ceil(t), t.as_nanos() - 5_000_000), t);
        assert_eq!(tick_ceil(Timestamp::from_nanos(1)), 1);
        assert_eq!(tick_floor(Timestamp::from_nanos(999_999)), 0);
    }

    #[test]
    fn time_word_fields_are_independent() {
        let w = timew::new(77, timew::PENDING, true, MAX_TIMEOUT_TICKS);
        assert_eq!((timew::last(w), timew::status(w), timew::timeout(w)), (77, timew::PENDING, MAX_TIMEOUT_TICKS));
        assert!(w & timew::HELD_BIT != 0);
        let w = timew::with_class(timew::with_status(w, timew::ACTIVE), 2);
        assert_eq!(class(w), FlowClass::Established);
        assert_eq!(timew::timeout(w), MAX_TIMEOUT_TICKS);
    }
}
