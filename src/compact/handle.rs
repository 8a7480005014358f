//! The compact backend's flow handle: one strong reference to a record, one machine word.
#![forbid(unsafe_code)]

use std::fmt;
use std::ops::Deref;
use std::time::Duration;

use super::id::{self, timew};
use super::rc::{Record, RecordRef};
use super::shard::Palette;
use crate::{ExpiryMode, FlowClass, FlowHandle, FlowStatus, Timestamp};

/// A handle to a flow of a [`CompactFlowTable`](super::CompactFlowTable): one pointer to the flow's
/// record. Cloning and dropping it is one atomic operation on the record's own count; dropping the
/// last reference to a flow that left the table returns the record to its shard.
pub struct CompactFlow<K, V>(pub(super) RecordRef<K, V>);

impl<K, V> Clone for CompactFlow<K, V> {
    #[inline]
    fn clone(&self) -> Self {
        CompactFlow(self.0.clone())
    }
}

impl<K, V> Deref for CompactFlow<K, V> {
    type Target = V;
    #[inline]
    fn deref(&self) -> &V {
        self.0.value()
    }
}

impl<K: fmt::Debug, V: fmt::Debug> fmt::Debug for CompactFlow<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompactFlow")
            .field("key", self.0.key())
            .field("value", self.0.value())
            .field("status", &id::public_status(timew::status(self.word())))
            .finish()
    }
}

impl<K, V> CompactFlow<K, V> {
    fn word(&self) -> u64 {
        self.0.record().time_word()
    }
    fn palette(&self) -> &Palette {
        &self.0.shard().0.common.palette
    }
}

impl<K, V> FlowHandle<K, V> for CompactFlow<K, V>
where
    K: Eq + Clone + Send + Sync + 'static,
    V: Send + Sync + 'static,
{
    #[inline]
    fn key(&self) -> &K {
        self.0.key()
    }
    #[inline]
    fn value(&self) -> &V {
        self.0.value()
    }
    #[inline]
    fn touch(&self, now: Timestamp) -> bool {
        self.0.record().touch(id::ms_ceil(now), id::ms_floor(now), self.palette())
    }
    fn timeout(&self) -> Duration {
        id::timeout_duration(self.palette().get(timew::tmo(self.word())))
    }
    fn set_timeout(&self, timeout: Duration) {
        let pal = self.palette();
        let ms = id::timeout_ms(timeout);
        let i = pal.index(ms);
        let old = self.0.record().update_time(|w| Some(timew::with_tmo(w, i)));
        // A shorter timeout brings the timer forward now (lazy re-filing only moves timers later).
        if old.is_ok_and(|w| pal.get(i) < pal.get(timew::tmo(w))) {
            self.0.shard().0.advance(&self.0);
        }
    }
    fn last_seen(&self) -> Timestamp {
        Timestamp::from_millis(timew::last(self.word()))
    }
    fn expires_at(&self) -> Timestamp {
        id::deadline_ts(Record::<K, V>::deadline_of(self.word(), self.palette()))
    }
    fn status(&self) -> FlowStatus {
        id::public_status(timew::status(self.word()))
    }
    fn expiry_mode(&self) -> ExpiryMode {
        if self.word() & timew::HELD_BIT != 0 {
            ExpiryMode::WhileHeld
        } else {
            ExpiryMode::Remove
        }
    }
    fn set_expiry_mode(&self, mode: ExpiryMode) {
        let _ = self.0.record().update_time(|w| {
            Some(match mode {
                ExpiryMode::WhileHeld => w | timew::HELD_BIT,
                ExpiryMode::Remove => w & !timew::HELD_BIT,
            })
        });
    }
    fn class(&self) -> FlowClass {
        id::class(self.word())
    }
    fn set_class(&self, class: FlowClass) {
        self.0.shard().0.set_class(&self.0, class);
    }
    #[inline]
    fn same_flow(&self, other: &Self) -> bool {
        self.0.ptr_eq(&other.0)
    }
}
