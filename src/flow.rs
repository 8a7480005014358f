//! What a flow is, as users see it: its status, its expiry mode and its eviction class.
//!
//! These types are shared by every backend; each backend stores them in its own compact form.
#![forbid(unsafe_code)]

/// Where a flow stands. Once a flow leaves [`FlowStatus::Active`] it never returns to it: a handle
/// keeps the flow readable, but the table will never hand it out again.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FlowStatus {
    /// In the table, findable.
    Active = 0,
    /// Left the table because its idle timeout passed.
    Expired = 1,
    /// Left the table through `remove` (or `clear`, or the table being dropped).
    Removed = 2,
    /// Left the table because `insert` put a new flow under its key.
    Replaced = 3,
    /// Left the table to make room for a new flow (capacity policy).
    Evicted = 4,
}

impl FlowStatus {
    /// Decodes the status stored in a backend's state word (only its three low bits are read).
    pub(crate) fn from_bits(bits: u64) -> FlowStatus {
        match bits & 7 {
            0 => FlowStatus::Active,
            1 => FlowStatus::Expired,
            2 => FlowStatus::Removed,
            3 => FlowStatus::Replaced,
            _ => FlowStatus::Evicted,
        }
    }
    /// The removal cause that a flow in this status left with, if it left.
    pub fn cause(self) -> Option<crate::RemovalCause> {
        use crate::RemovalCause as C;
        match self {
            FlowStatus::Active => None,
            FlowStatus::Expired => Some(C::Expired),
            FlowStatus::Removed => Some(C::Removed),
            FlowStatus::Replaced => Some(C::Replaced),
            FlowStatus::Evicted => Some(C::Evicted),
        }
    }
}

/// What a flow's idle timeout does (per table, with a per-flow override through the handle).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub enum ExpiryMode {
    /// The flow leaves the table when its idle timeout passes, whether or not handles to it are
    /// still held (they keep it readable). The default.
    #[default]
    Remove,
    /// When the idle timeout passes the table drops its own (strong) reference, but the flow stays
    /// findable for as long as some handle to it is alive; it leaves the table, with cause
    /// [`Expired`](crate::RemovalCause::Expired), when the last handle is dropped. The table's entry
    /// is then only a weak reference (the behaviour of the original design note).
    WhileHeld,
}

/// The eviction class of a flow, set by the caller (the table knows no TCP).
///
/// When the table is full and the capacity policy evicts, it evicts in the order: flows already
/// past their deadline, then [`Embryonic`](FlowClass::Embryonic), then
/// [`Closing`](FlowClass::Closing), then [`Established`](FlowClass::Established), least recently
/// seen first within a class (conntrack's early drop, Snort's pruning order).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum FlowClass {
    /// Not (yet) answered: a SYN without a reply, a one-way UDP probe. The default.
    #[default]
    Embryonic = 0,
    /// Tearing down (FIN seen, RST seen, time-wait).
    Closing = 1,
    /// Answered in both directions (conntrack's ASSURED).
    Established = 2,
}

impl FlowClass {
    pub(crate) fn from_bits(bits: u8) -> FlowClass {
        match bits & 3 {
            0 => FlowClass::Embryonic,
            1 => FlowClass::Closing,
            _ => FlowClass::Established,
        }
    }
}
