//! Capacity: the maximum number of flows, what happens at it, and the emergency mode.
//!
//! Shared by every backend: the occupancy count, the watermark logic and the policy live here once.
//!
//! - [`CapacityPolicy::Reject`] (default): a new flow at the maximum gets
//!   [`TableFull`](crate::TableFull); every existing flow is left untouched.
//! - [`CapacityPolicy::Evict`]: the table makes room, in the fixed order that variant's
//!   documentation states (users see it there; this module is private). This is
//!   conntrack's early drop and Snort's pruning order; an established flow that keeps receiving
//!   packets is never evicted while an embryonic one exists.
//! - [`Emergency`] mode: above a high watermark new flows get a shorter idle timeout, until the
//!   table drains below a low watermark (as Suricata does under a flood).
#![forbid(unsafe_code)]

use std::time::Duration;

use crate::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use crate::sync::striped::StripedCount;

/// What a table does with a new flow when it holds its maximum number of flows.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub enum CapacityPolicy {
    /// Refuse it with `TableFull`.
    #[default]
    Reject,
    /// Evict a flow to make room, in this order: a flow already past its deadline (it leaves as
    /// `Expired`), else the least recently seen [`Embryonic`](crate::FlowClass::Embryonic) flow,
    /// else the least recently seen [`Closing`](crate::FlowClass::Closing) one, else the least
    /// recently seen [`Established`](crate::FlowClass::Established) one (these leave as `Evicted`).
    Evict,
}

/// Emergency mode: from `high` live flows on, new flows get `timeout` as their idle timeout, until
/// the table drains to `low` live flows.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Emergency {
    /// Live flows at which emergency mode starts.
    pub high: usize,
    /// Live flows at which it ends (below `high`).
    pub low: usize,
    /// The idle timeout of flows created during emergency mode.
    pub timeout: Duration,
}

/// The live-flow count with its limit and the emergency state.
#[derive(Debug)]
pub(crate) struct Occupancy {
    /// The exact count, when the table has a maximum or watermarks.
    live: AtomicUsize,
    /// Per-thread counts, when it has neither: keeps the create and expiry paths of concurrent
    /// workers off one shared cache line, and most threads off locked instructions.
    stripes: Option<StripedCount>,
    max: usize,
    policy: CapacityPolicy,
    emergency: Option<Emergency>,
    in_emergency: AtomicBool,
}

impl Occupancy {
    pub(crate) fn new(max: usize, policy: CapacityPolicy, emergency: Option<Emergency>) -> Self {
        let stripes = (max == usize::MAX && emergency.is_none()).then(StripedCount::new);
        Occupancy { live: AtomicUsize::new(0), stripes, max, policy, emergency, in_emergency: AtomicBool::new(false) }
    }

    pub(crate) fn max(&self) -> usize {
        self.max
    }

    pub(crate) fn policy(&self) -> CapacityPolicy {
        self.policy
    }

    /// Flows in the table.
    pub(crate) fn live(&self) -> usize {
        if let Some(st) = &self.stripes {
            // A sum taken while flows come and go may be momentarily negative (a release counted
            // before its reservation): report 0 then.
            let n = st.sum();
            return if n > isize::MAX as usize { 0 } else { n };
        }
        // Relaxed: a count; it publishes no data.
        self.live.load(Ordering::Relaxed)
    }

    /// Takes room for one flow; `false` at the maximum.
    pub(crate) fn try_reserve(&self) -> bool {
        if let Some(st) = &self.stripes {
            st.add(1);
            return true;
        }
        if crate::sync::mutant("reserve_check_then_add") {
            // Mutant: check, then add (the maximum can be exceeded).
            if self.live.load(Ordering::Relaxed) >= self.max {
                return false;
            }
            self.live.fetch_add(1, Ordering::Relaxed);
            return true;
        }
        let ok = self.live.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| (n < self.max).then_some(n + 1));
        if let (Ok(n), Some(e)) = (ok, self.emergency) {
            if n + 1 >= e.high {
                self.in_emergency.store(true, Ordering::Relaxed);
            }
        }
        ok.is_ok()
    }

    /// Takes room for one flow even at the maximum (a replacement that frees one right after).
    #[cfg_attr(not(feature = "dashmap"), allow(dead_code))] // the compact backend hands rooms over instead
    pub(crate) fn force_reserve(&self) {
        if let Some(st) = &self.stripes {
            st.add(1);
            return;
        }
        self.live.fetch_add(1, Ordering::Relaxed);
    }

    /// Gives back the room of one flow.
    pub(crate) fn release(&self) {
        if let Some(st) = &self.stripes {
            st.sub(1);
            return;
        }
        let n = self.live.fetch_sub(1, Ordering::Relaxed) - 1;
        if let Some(e) = self.emergency {
            if n <= e.low {
                self.in_emergency.store(false, Ordering::Relaxed);
            }
        }
    }

    /// Whether emergency mode is on.
    pub(crate) fn in_emergency(&self) -> bool {
        self.in_emergency.load(Ordering::Relaxed)
    }

    /// The idle timeout for a flow created now.
    pub(crate) fn timeout_for_new(&self, normal: Duration) -> Duration {
        match self.emergency {
            Some(e) if self.in_emergency() => e.timeout.min(normal),
            _ => normal,
        }
    }
}

#[cfg(all(test, not(flowtable_loom)))]
mod tests {
    use super::*;

    #[test]
    fn watermarks_switch_emergency_mode_with_hysteresis() {
        let e = Emergency { high: 8, low: 4, timeout: Duration::from_secs(1) };
        let o = Occupancy::new(10, CapacityPolicy::Reject, Some(e));
        let normal = Duration::from_secs(60);
        for _ in 0..7 {
            assert!(o.try_reserve());
        }
        assert_eq!(o.timeout_for_new(normal), normal);
        assert!(o.try_reserve()); // 8 live: on
        assert_eq!(o.timeout_for_new(normal), Duration::from_secs(1));
        for _ in 0..3 {
            o.release(); // 5 live: still on (hysteresis)
        }
        assert!(o.in_emergency());
        o.release(); // 4 live: off
        assert!(!o.in_emergency());
        assert!(o.try_reserve() && o.try_reserve() && o.try_reserve());
        assert_eq!(o.live(), 7);
    }

    #[test]
    fn reserve_stops_at_the_maximum() {
        let o = Occupancy::new(2, CapacityPolicy::Reject, None);
        assert!(o.try_reserve() && o.try_reserve());
        assert!(!o.try_reserve());
        o.release();
        assert!(o.try_reserve());
    }

    #[test]
    fn unlimited_counts_are_striped_and_sum_across_threads() {
        let o = std::sync::Arc::new(Occupancy::new(usize::MAX, CapacityPolicy::Reject, None));
        assert!(o.stripes.is_some());
        for _ in 0..10 {
            assert!(o.try_reserve());
        }
        // Released on other threads than the one that reserved.
        let hs: Vec<_> = (0..4)
            .map(|_| {
                let o = std::sync::Arc::clone(&o);
                std::thread::spawn(move || {
                    o.release();
                    o.release();
                })
            })
            .collect();
        hs.into_iter().for_each(|h| h.join().unwrap());
        assert_eq!(o.live(), 2);
        o.force_reserve();
        assert_eq!(o.live(), 3);
        // A bounded table keeps one exact count.
        assert!(Occupancy::new(5, CapacityPolicy::Reject, None).stripes.is_none());
    }
}
