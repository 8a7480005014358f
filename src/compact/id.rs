//! The packed words of the compact backend: the slot word, a record's reference word and its time
//! word, with their `SHIFT`/`MASK` constants and the tick arithmetic (wraparound-safe `u32` ticks).
//!
//! See `design/memory.md` for the byte-by-byte layouts and `design/concurrency.md` (compact section)
//! for who may change which bits.
#![forbid(unsafe_code)]

use std::time::Duration;

use crate::{FlowClass, FlowStatus, Timestamp};

// === time ===

/// The tick: 1 ms. Times are kept in whole milliseconds since the caller's epoch (44 bits, 557
/// years; later times saturate); deadlines are `u64` milliseconds, `u64::MAX` meaning never.
pub(crate) const TICK: Duration = Duration::from_millis(1);
const TICK_NS: u64 = 1_000_000;
/// The largest last-seen time a record stores.
pub(crate) const LAST_MAX: u64 = (1 << LAST_BITS) - 1;
const LAST_BITS: u32 = 44;
/// A deadline that never comes (timeout `Duration::MAX`).
pub(crate) const NEVER: u64 = u64::MAX;
/// The longest finite timeout (longer ones are clamped to it; `Duration::MAX` means never).
pub(crate) const MAX_TIMEOUT: Duration = Duration::from_millis(1 << 52);

/// `now` rounded up to a tick (to stamp last-seen: a flow never expires early).
#[inline]
pub(crate) fn ms_ceil(now: Timestamp) -> u64 {
    now.as_nanos().div_ceil(TICK_NS).min(LAST_MAX)
}

/// `now` rounded down to a tick (to compare with deadlines: `d > now` iff `d > floor(now)`).
/// `Timestamp::MAX` is after every deadline, the never-deadline included.
#[inline]
pub(crate) fn ms_floor(now: Timestamp) -> u64 {
    if now == Timestamp::MAX {
        u64::MAX
    } else {
        now.as_nanos() / TICK_NS
    }
}

/// A timeout in whole ticks, rounded up (at least 1); `NEVER` for `Duration::MAX`.
pub(crate) fn timeout_ms(d: Duration) -> u64 {
    if d == Duration::MAX {
        return NEVER;
    }
    let t = d.min(MAX_TIMEOUT).as_nanos().div_ceil(u128::from(TICK_NS));
    (t as u64).max(1)
}

/// The deadline of a flow last seen at `last` with timeout `timeout` (ms).
#[inline]
pub(crate) fn deadline(last: u64, timeout: u64) -> u64 {
    if timeout == NEVER {
        NEVER
    } else {
        last.saturating_add(timeout).min(NEVER - 1)
    }
}

/// A deadline as a timestamp.
pub(crate) fn deadline_ts(d: u64) -> Timestamp {
    if d == NEVER {
        Timestamp::MAX
    } else {
        Timestamp::from_millis(d)
    }
}

/// A timeout as a duration.
pub(crate) fn timeout_duration(t: u64) -> Duration {
    if t == NEVER {
        Duration::MAX
    } else {
        Duration::from_millis(t)
    }
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

/// A record's time word: `last_seen:44 | birth:6 | status:3 | while_held:1 | class:2 | timeout:8`,
/// where `timeout` indexes the table's timeout palette ([`Palette`](super::shard::Palette)) and
/// `birth` is the table's creation counter modulo 64 (it orders flows last seen in the same
/// millisecond, for eviction).
///
/// Every status change and every touch is a compare-and-swap on this one word (C4).
pub(crate) mod timew {
    use super::LAST_BITS;
    const LAST_MASK: u64 = (1 << LAST_BITS) - 1;
    const BIRTH_SHIFT: u32 = LAST_BITS;
    pub(crate) const STATUS_SHIFT: u32 = 50;
    pub(crate) const STATUS_MASK: u64 = 7 << STATUS_SHIFT;
    pub(crate) const HELD_BIT: u64 = 1 << 53;
    pub(crate) const CLASS_SHIFT: u32 = 54;
    pub(crate) const CLASS_MASK: u64 = 3 << CLASS_SHIFT;
    pub(crate) const TIMEOUT_SHIFT: u32 = 56;
    pub(crate) const TIMEOUT_MASK: u64 = 0xFF << TIMEOUT_SHIFT;

    /// Internal statuses beyond [`FlowStatus`](crate::FlowStatus)'s five.
    pub(crate) const ACTIVE: u64 = 0;
    /// Being created: the key is written, the value is not (`init` runs).
    pub(crate) const PENDING: u64 = 5;
    /// A creation abandoned (its `init` panicked, or `insert` took the key): never was a flow.
    pub(crate) const CANCELLED: u64 = 6;
    /// `PENDING`, and another caller of `get_or_insert_with` waits for it under the shard's
    /// condition variable: the creator's activation, which takes no lock otherwise, takes the lock
    /// to wake it (C13).
    pub(crate) const WAITED: u64 = 7;

    /// Whether status `s` is a creation in flight (`PENDING` or `WAITED`).
    #[inline]
    pub(crate) fn creating(s: u64) -> bool {
        s == PENDING || s == WAITED
    }
    /// Whether a record of status `s` holds a value: its creation completed (C6).
    #[inline]
    pub(crate) fn has_value(s: u64) -> bool {
        !creating(s) && s != CANCELLED
    }

    #[inline]
    pub(crate) fn last(w: u64) -> u64 {
        w & LAST_MASK
    }
    #[inline]
    pub(crate) fn status(w: u64) -> u64 {
        (w & STATUS_MASK) >> STATUS_SHIFT
    }
    /// The creation counter (mod 64) of the flow.
    #[inline]
    pub(crate) fn birth(w: u64) -> u8 {
        ((w >> BIRTH_SHIFT) & 63) as u8
    }
    /// The palette index of the timeout.
    #[inline]
    pub(crate) fn tmo(w: u64) -> u8 {
        (w >> TIMEOUT_SHIFT) as u8
    }
    #[inline]
    pub(crate) fn with_last(w: u64, t: u64) -> u64 {
        (w & !LAST_MASK) | t
    }
    #[inline]
    pub(crate) fn with_status(w: u64, s: u64) -> u64 {
        (w & !STATUS_MASK) | (s << STATUS_SHIFT)
    }
    #[inline]
    pub(crate) fn with_tmo(w: u64, t: u8) -> u64 {
        (w & !TIMEOUT_MASK) | (u64::from(t) << TIMEOUT_SHIFT)
    }
    #[inline]
    pub(crate) fn with_class(w: u64, c: u8) -> u64 {
        (w & !CLASS_MASK) | (u64::from(c) << CLASS_SHIFT)
    }
    pub(crate) fn new(last: u64, birth: u8, status: u64, held: bool, tmo: u8) -> u64 {
        let w = (last & LAST_MASK)
            | (u64::from(birth & 63) << BIRTH_SHIFT)
            | (status << STATUS_SHIFT)
            | (u64::from(tmo) << TIMEOUT_SHIFT);
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
        timew::PENDING | timew::WAITED | timew::CANCELLED => FlowStatus::Removed,
        s => FlowStatus::from_bits(s),
    }
}

/// Whether flow `a` goes before flow `b` in eviction order: lower class, then less recently seen,
/// then (same millisecond) created earlier, by the birth counter compared modulo 64.
pub(crate) fn evicts_before(a: (FlowClass, u64, u8), b: (FlowClass, u64, u8)) -> bool {
    if (a.0, a.1) != (b.0, b.1) {
        return (a.0, a.1) < (b.0, b.1);
    }
    a.2.wrapping_sub(b.2) & 63 >= 32
}

/// `(class, last seen)` packed so that integer order is eviction order, birth aside: the
/// shards' lower bounds on their candidates (`Bounds::front`).
pub(crate) fn order_bound(class: FlowClass, last: u64) -> u64 {
    (class as u64) << LAST_BITS | (last & LAST_MAX)
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
    fn ticks_round_the_right_way() {
        assert_eq!(ms_ceil(Timestamp::from_nanos(1)), 1);
        assert_eq!(ms_floor(Timestamp::from_nanos(999_999)), 0);
        assert_eq!(ms_floor(Timestamp::MAX), u64::MAX);
        assert_eq!(timeout_ms(Duration::MAX), NEVER);
        assert_eq!(deadline(5, NEVER), NEVER);
        assert_eq!(deadline_ts(deadline(1_000, 30_000)), Timestamp::from_millis(31_000));
    }

    #[test]
    fn time_word_fields_are_independent() {
        let w = timew::new(LAST_MAX, 63, timew::PENDING, true, 255);
        assert_eq!((timew::last(w), timew::status(w), timew::tmo(w)), (LAST_MAX, timew::PENDING, 255));
        assert_eq!(timew::birth(w), 63);
        assert_eq!(timew::birth(timew::with_last(w, 5)), 63);
        assert!(w & timew::HELD_BIT != 0);
        let w = timew::with_class(timew::with_status(w, timew::ACTIVE), 2);
        assert_eq!(class(w), FlowClass::Established);
        assert_eq!(timew::tmo(w), 255);
        assert_eq!(timew::last(timew::with_last(w, 7)), 7);
    }
}
