//! Removal notifications: why a flow left the table, and the listener that is told.
//!
//! # Exactly once
//! Every flow that enters the table leaves it exactly once, and the listener is called exactly once
//! for it, with the cause. A flow leaves when it is expired, removed (`remove`, `clear`, or the table
//! being dropped), replaced by `insert`, or evicted. In [`ExpiryMode::WhileHeld`](crate::ExpiryMode)
//! a flow whose timeout passed leaves when its last handle is dropped, and the listener runs on the
//! thread that dropped it.
//!
//! The listener never runs under a lock of the table: it may call the table again (re-insert the key,
//! look up another flow) without deadlocking. It must not panic; if it does, the table stays
//! consistent (the flow has already left, the counters are right) and the panic propagates to the
//! caller of the operation that ran it.
#![forbid(unsafe_code)]

use crate::Timestamp;

/// Why a flow left the table.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum RemovalCause {
    /// Its idle timeout passed.
    Expired,
    /// `remove`, `clear`, or the table was dropped.
    Removed,
    /// `insert` put a new flow under the same key.
    Replaced,
    /// The capacity policy made room for a new flow.
    Evicted,
}

/// What the listener is told about a flow that left the table.
#[derive(Debug)]
#[non_exhaustive]
pub struct RemovalEvent<'a, K, V> {
    /// The flow's key.
    pub key: &'a K,
    /// The flow's value.
    pub value: &'a V,
    /// Why it left.
    pub cause: RemovalCause,
    /// When a packet last touched it (its creation time if none did).
    pub last_seen: Timestamp,
    /// Its idle deadline at the moment it left.
    pub deadline: Timestamp,
}

/// A removal listener: any `Fn(RemovalEvent<K, V>) + Send + Sync`.
pub type Listener<K, V> = std::sync::Arc<dyn Fn(RemovalEvent<'_, K, V>) + Send + Sync>;

/// Calls `listener` on every event, even if one call panics; the first panic is re-raised after all
/// have run, so a panicking listener never costs another flow its notification.
pub(crate) fn notify_each<K, V, I>(listener: Option<&Listener<K, V>>, events: I)
where
    I: IntoIterator,
    I::Item: AsEvent<K, V>,
{
    let Some(listener) = listener else { return };
    let mut first_panic = None;
    for item in events {
        let call = std::panic::AssertUnwindSafe(|| listener(item.as_event()));
        if let Err(p) = std::panic::catch_unwind(call) {
            first_panic.get_or_insert(p);
        }
    }
    if let Some(p) = first_panic {
        std::panic::resume_unwind(p);
    }
}

/// Something that can describe itself as a [`RemovalEvent`] (a backend's record and cause).
pub(crate) trait AsEvent<K, V> {
    fn as_event(&self) -> RemovalEvent<'_, K, V>;
}
