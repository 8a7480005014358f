//! The reference backend's flow handle: an `Arc` to the record.
#![forbid(unsafe_code)]

use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::ops::Deref;
use std::time::Duration;

use super::record::Record;
use crate::sync::Arc;
use crate::{ExpiryMode, FlowClass, FlowHandle, FlowStatus, Timestamp};

/// A handle to a flow of a [`DashFlowTable`](super::DashFlowTable): one `Arc`.
pub struct DashFlow<K, V, S = crate::DefaultHashBuilder>(pub(super) Arc<Record<K, V, S>>);

impl<K, V, S> Clone for DashFlow<K, V, S> {
    fn clone(&self) -> Self {
        DashFlow(Arc::clone(&self.0))
    }
}

impl<K, V, S> Deref for DashFlow<K, V, S> {
    type Target = V;
    fn deref(&self) -> &V {
        &self.0.value
    }
}

impl<K: fmt::Debug, V: fmt::Debug, S> fmt::Debug for DashFlow<K, V, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DashFlow")
            .field("key", &self.0.key)
            .field("value", &self.0.value)
            .field("status", &self.0.status())
            .field("last_seen", &self.0.last_seen())
            .finish()
    }
}

impl<K, V, S> FlowHandle<K, V> for DashFlow<K, V, S>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Send + Sync + 'static,
    S: BuildHasher + Clone + Send + Sync + 'static,
{
    fn key(&self) -> &K {
        &self.0.key
    }
    fn value(&self) -> &V {
        &self.0.value
    }
    fn touch(&self, now: Timestamp) -> bool {
        self.0.touch(now)
    }
    fn timeout(&self) -> Duration {
        self.0.timeout()
    }
    fn set_timeout(&self, timeout: Duration) {
        self.0.set_timeout(timeout);
        // A shorter timeout brings the timer forward now, so the flow leaves on time (the lazy
        // re-filing only ever moves timers later).
        if let Some(table) = self.0.table.upgrade() {
            table.timers.advance(self.0.queue, &self.0, self.0.deadline_ns());
        }
    }
    fn last_seen(&self) -> Timestamp {
        self.0.last_seen()
    }
    fn expires_at(&self) -> Timestamp {
        Timestamp::from_nanos(self.0.deadline_ns())
    }
    fn status(&self) -> FlowStatus {
        self.0.status()
    }
    fn expiry_mode(&self) -> ExpiryMode {
        self.0.expiry_mode()
    }
    fn set_expiry_mode(&self, mode: ExpiryMode) {
        self.0.set_expiry_mode(mode)
    }
    fn class(&self) -> FlowClass {
        self.0.class()
    }
    fn set_class(&self, class: FlowClass) {
        let old = self.0.set_class(class);
        if old != class {
            if let Some(table) = self.0.table.upgrade() {
                table.reclassed(&self.0, old);
            }
        }
    }
    fn same_flow(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}
