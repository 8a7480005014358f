//! Shared test support: the list of backends every suite runs on, and small helpers.
//!
//! A suite is written once as generic functions over [`Backend`]; [`backend_tests!`] instantiates a
//! `#[test]` per function for every backend the enabled features provide. To add a backend, add a
//! `Backend` impl and one arm to the macro.
#![allow(dead_code)]

use std::fmt::Debug;
use std::hash::Hash;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flowtable::{
    proto, ConfigError, DefaultHashBuilder, FlowKeyV4, FlowTable, FlowTableBuilder, RemovalCause, RemovalEvent,
    Timestamp, Zone,
};

/// A backend family: its table type for any key and value.
pub trait Backend: 'static {
    type Table<K, V>: FlowTable<K, V, Hasher = DefaultHashBuilder> + 'static
    where
        K: Hash + Eq + Clone + Copy + Debug + Send + Sync + 'static,
        V: Send + Sync + 'static;
}

#[cfg(feature = "dashmap")]
pub struct Dash;

#[cfg(feature = "dashmap")]
impl Backend for Dash {
    type Table<K, V>
        = flowtable::DashFlowTable<K, V>
    where
        K: Hash + Eq + Clone + Copy + Debug + Send + Sync + 'static,
        V: Send + Sync + 'static;
}

#[cfg(feature = "compact")]
pub struct Compact;

#[cfg(feature = "compact")]
impl Backend for Compact {
    type Table<K, V>
        = flowtable::CompactFlowTable<K, V>
    where
        K: Hash + Eq + Clone + Copy + Debug + Send + Sync + 'static,
        V: Send + Sync + 'static;
}

/// Instantiates each listed generic test function `fn name<B: Backend>()` once per enabled backend.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        #[cfg(feature = "dashmap")]
        mod dashmap {
            $( #[test] fn $name() { super::$name::<$crate::common::Dash>(); } )*
        }
        #[cfg(feature = "compact")]
        mod compact {
            $( #[test] fn $name() { super::$name::<$crate::common::Compact>(); } )*
        }
    };
}

/// Like [`backend_tests!`], for the overload suite: only the backends that implement every capacity
/// policy (`CapacityPolicy::Evict`, emergency mode) are listed here.
#[macro_export]
macro_rules! overload_backend_tests {
    ($($name:ident),* $(,)?) => {
        #[cfg(feature = "dashmap")]
        mod dashmap {
            $( #[test] fn $name() { super::$name::<$crate::common::Dash>(); } )*
        }
        #[cfg(feature = "compact")]
        mod compact {
            $( #[test] fn $name() { super::$name::<$crate::common::Compact>(); } )*
        }
    };
}

/// The table type of backend `B` for the usual test key and value.
pub type T<B, V = u64> = <B as Backend>::Table<FlowKeyV4, V>;

/// A distinct IPv4 key per `i`.
pub fn key(i: u32) -> FlowKeyV4 {
    let a = Ipv4Addr::from(0x0a00_0000 | (i & 0x00ff_ffff));
    let b = Ipv4Addr::new(192, 0, 2, 1);
    FlowKeyV4::new(proto::UDP, a, 1000 + (i >> 24) as u16, b, 53, Zone::DEFAULT).0
}

/// Milliseconds on the virtual clock (tests stay on the millisecond grid, which every backend's tick
/// divides).
pub fn ms(v: u64) -> Timestamp {
    Timestamp::from_millis(v)
}

pub fn secs(v: u64) -> Duration {
    Duration::from_secs(v)
}

/// What a listener saw: (value, cause) in call order.
pub type Log<V> = Arc<Mutex<Vec<(V, RemovalCause)>>>;

/// A builder with a 10 s timeout and a listener that logs `(value, cause)`.
pub fn logged<V: Copy + Send + Sync + 'static>() -> (FlowTableBuilder<FlowKeyV4, V>, Log<V>) {
    let log: Log<V> = Arc::default();
    let sink = Arc::clone(&log);
    let b = FlowTableBuilder::new()
        .shards(4)
        .idle_timeout(secs(10))
        .listener(move |ev: RemovalEvent<'_, FlowKeyV4, V>| sink.lock().unwrap().push((*ev.value, ev.cause)));
    (b, log)
}

pub fn build<B: Backend, V: Send + Sync + 'static>(b: FlowTableBuilder<FlowKeyV4, V>) -> Result<T<B, V>, ConfigError> {
    b.build::<T<B, V>>()
}

pub fn causes<V: Copy + Ord>(log: &Log<V>) -> Vec<(V, RemovalCause)> {
    let mut v = log.lock().unwrap().clone();
    v.sort_by_key(|(x, _)| *x);
    v
}
