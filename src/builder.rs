//! Building a table: [`FlowTableBuilder`] and the [`Config`] every backend is made from.
#![forbid(unsafe_code)]

use std::fmt;
use std::hash::BuildHasher;
use std::marker::PhantomData;
use std::time::Duration;

use crate::hash::{default_hasher, DefaultHashBuilder};
use crate::listener::{Listener, RemovalEvent};
use crate::{CapacityPolicy, Emergency, ExpiryMode, FlowTable};

/// The largest shard count a table accepts.
pub const MAX_SHARDS: usize = 1 << 16;

/// Why a table could not be built.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// The shard count must be a power of two (1, 2, 4, ...).
    ShardsNotPowerOfTwo(usize),
    /// More shards than [`MAX_SHARDS`].
    TooManyShards(usize),
    /// `max_flows` was zero.
    ZeroMaxFlows,
    /// The backend cannot hold this many flows.
    MaxFlowsTooLarge {
        /// What was asked for.
        requested: usize,
        /// The backend's limit.
        limit: usize,
    },
    /// Emergency watermarks must satisfy `low < high <= max_flows`, with a non-zero timeout.
    BadWatermarks(Emergency),
    /// The idle timeout is zero or longer than the backend can represent.
    BadTimeout {
        /// What was asked for.
        requested: Duration,
        /// The longest timeout the backend supports.
        limit: Duration,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::ShardsNotPowerOfTwo(n) => write!(f, "shard count {n} is not a power of two"),
            ConfigError::TooManyShards(n) => write!(f, "shard count {n} is over the limit of {MAX_SHARDS}"),
            ConfigError::ZeroMaxFlows => f.write_str("max_flows must be at least 1"),
            ConfigError::MaxFlowsTooLarge { requested, limit } => {
                write!(f, "max_flows {requested} is over this backend's limit of {limit}")
            }
            ConfigError::BadWatermarks(e) => write!(
                f,
                "emergency watermarks need low < high <= max_flows and a non-zero timeout (got low {}, high {}, timeout {:?})",
                e.low, e.high, e.timeout
            ),
            ConfigError::BadTimeout { requested, limit } => {
                write!(f, "idle timeout {requested:?} must be above zero and at most {limit:?}")
            }
        }
    }
}

impl std::error::Error for ConfigError {}

/// A validated table configuration; backends are built from it by [`FlowTable::with_config`].
pub struct Config<K, V, S = DefaultHashBuilder> {
    /// Shard count, a power of two.
    pub shards: usize,
    /// How many flows to make room for up front.
    pub capacity: usize,
    /// The most flows the table holds at once; beyond it new flows are refused.
    pub max_flows: usize,
    /// The idle timeout of a new flow.
    pub idle_timeout: Duration,
    /// What a timeout does, for new flows.
    pub expiry_mode: ExpiryMode,
    /// The key hasher.
    pub hasher: S,
    /// The removal listener.
    pub listener: Option<Listener<K, V>>,
    /// What happens to a new flow at `max_flows`.
    pub capacity_policy: CapacityPolicy,
    /// Emergency mode, if any.
    pub emergency: Option<Emergency>,
}

impl<K, V, S: Clone> Clone for Config<K, V, S> {
    fn clone(&self) -> Self {
        Config {
            shards: self.shards,
            capacity: self.capacity,
            max_flows: self.max_flows,
            idle_timeout: self.idle_timeout,
            expiry_mode: self.expiry_mode,
            hasher: self.hasher.clone(),
            listener: self.listener.clone(),
            capacity_policy: self.capacity_policy,
            emergency: self.emergency,
        }
    }
}

impl<K, V, S> fmt::Debug for Config<K, V, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("shards", &self.shards)
            .field("capacity", &self.capacity)
            .field("max_flows", &self.max_flows)
            .field("idle_timeout", &self.idle_timeout)
            .field("expiry_mode", &self.expiry_mode)
            .field("listener", &self.listener.is_some())
            .field("capacity_policy", &self.capacity_policy)
            .field("emergency", &self.emergency)
            .finish_non_exhaustive()
    }
}

/// The default shard count: four per core, rounded up to a power of two.
pub fn default_shards() -> usize {
    let cores = std::thread::available_parallelism().map_or(4, |n| n.get());
    (cores * 4).next_power_of_two().min(MAX_SHARDS)
}

/// Builds a table of any backend.
///
/// # Examples
///
/// ```
/// use flowtable::{ConfigError, DefaultFlowTable, FlowKeyV4, FlowTable, FlowTableBuilder};
/// use std::time::Duration;
///
/// let table: DefaultFlowTable<FlowKeyV4, u64> = FlowTableBuilder::new()
///     .shards(16)
///     .max_flows(1 << 20)
///     .idle_timeout(Duration::from_secs(30))
///     .build()?;
/// assert!(table.is_empty());
///
/// let err = FlowTableBuilder::<FlowKeyV4, u64>::new().shards(12).build_default().err();
/// assert_eq!(err, Some(ConfigError::ShardsNotPowerOfTwo(12)));
/// # Ok::<(), ConfigError>(())
/// ```
#[must_use]
pub struct FlowTableBuilder<K, V, S = DefaultHashBuilder> {
    config: Config<K, V, S>,
    _marker: PhantomData<fn(K, V)>,
}

impl<K, V> FlowTableBuilder<K, V, DefaultHashBuilder> {
    /// A builder with the defaults: [`default_shards`], no preallocation, no flow limit, a 60 s
    /// idle timeout, [`ExpiryMode::Remove`], a randomly seeded ahash, no listener.
    pub fn new() -> Self {
        FlowTableBuilder {
            config: Config {
                shards: default_shards(),
                capacity: 0,
                max_flows: usize::MAX,
                idle_timeout: Duration::from_secs(60),
                expiry_mode: ExpiryMode::Remove,
                hasher: default_hasher(),
                listener: None,
                capacity_policy: CapacityPolicy::Reject,
                emergency: None,
            },
            _marker: PhantomData,
        }
    }
}

impl<K, V> Default for FlowTableBuilder<K, V, DefaultHashBuilder> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K, V, S> FlowTableBuilder<K, V, S> {
    /// The number of shards; must be a power of two (checked by `build`).
    pub fn shards(mut self, n: usize) -> Self {
        self.config.shards = n;
        self
    }
    /// Room for this many flows up front (a hint).
    pub fn capacity(mut self, n: usize) -> Self {
        self.config.capacity = n;
        self
    }
    /// The most flows the table holds; beyond it new flows get
    /// [`TableFull`](crate::TableFull).
    pub fn max_flows(mut self, n: usize) -> Self {
        self.config.max_flows = n;
        self
    }
    /// The idle timeout of new flows (each flow can change its own with `set_timeout`).
    pub fn idle_timeout(mut self, d: Duration) -> Self {
        self.config.idle_timeout = d;
        self
    }
    /// What a timeout does (per table; each flow can override it).
    pub fn expiry_mode(mut self, mode: ExpiryMode) -> Self {
        self.config.expiry_mode = mode;
        self
    }
    /// What happens to a new flow at `max_flows`: refuse it (the default) or evict another.
    pub fn capacity_policy(mut self, policy: CapacityPolicy) -> Self {
        self.config.capacity_policy = policy;
        self
    }
    /// Emergency mode: from `high` live flows until the table drains to `low`, new flows get
    /// `timeout` (checked by `build`: `low < high <= max_flows`).
    pub fn emergency(mut self, high: usize, low: usize, timeout: Duration) -> Self {
        self.config.emergency = Some(Emergency { high, low, timeout });
        self
    }
    /// The removal listener, called exactly once for every flow that leaves the table.
    pub fn listener<F>(mut self, f: F) -> Self
    where
        F: Fn(RemovalEvent<'_, K, V>) + Send + Sync + 'static,
    {
        self.config.listener = Some(std::sync::Arc::new(f));
        self
    }
    /// Another key hasher. Use a randomly seeded one for traffic from the internet.
    pub fn hasher<S2: BuildHasher>(self, hasher: S2) -> FlowTableBuilder<K, V, S2> {
        let c = self.config;
        FlowTableBuilder {
            config: Config {
                shards: c.shards,
                capacity: c.capacity,
                max_flows: c.max_flows,
                idle_timeout: c.idle_timeout,
                expiry_mode: c.expiry_mode,
                hasher,
                listener: c.listener,
                capacity_policy: c.capacity_policy,
                emergency: c.emergency,
            },
            _marker: PhantomData,
        }
    }

    /// The validated configuration (the checks every backend shares).
    pub fn into_config(self) -> Result<Config<K, V, S>, ConfigError> {
        let c = &self.config;
        if c.shards == 0 || !c.shards.is_power_of_two() {
            return Err(ConfigError::ShardsNotPowerOfTwo(c.shards));
        }
        if c.shards > MAX_SHARDS {
            return Err(ConfigError::TooManyShards(c.shards));
        }
        if c.max_flows == 0 {
            return Err(ConfigError::ZeroMaxFlows);
        }
        if c.idle_timeout.is_zero() {
            return Err(ConfigError::BadTimeout { requested: c.idle_timeout, limit: Duration::MAX });
        }
        if let Some(e) = c.emergency {
            if e.low >= e.high || e.high > c.max_flows || e.timeout.is_zero() {
                return Err(ConfigError::BadWatermarks(e));
            }
        }
        Ok(self.config)
    }

    /// Builds a table of backend `T`.
    pub fn build<T: FlowTable<K, V, Hasher = S>>(self) -> Result<T, ConfigError> {
        T::with_config(self.into_config()?)
    }

    /// Builds a table of the default backend (see [`DefaultFlowTable`](crate::DefaultFlowTable)).
    pub fn build_default(self) -> Result<crate::DefaultFlowTable<K, V, S>, ConfigError>
    where
        crate::DefaultFlowTable<K, V, S>: FlowTable<K, V, Hasher = S>,
    {
        self.build()
    }
}
