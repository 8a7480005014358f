//! The contract: [`FlowTable`] and [`FlowHandle`]. This is the one place that defines behaviour;
//! every backend implements it and the conformance suite in `tests/` checks it on each.
//!
//! # The semantics every backend keeps
//!
//! - **Visibility.** [`get`](FlowTable::get) returns a flow only if it is [`Active`](FlowStatus::Active)
//!   and, in [`ExpiryMode::Remove`], its deadline (`last_seen + timeout`) is after `now` — whether or
//!   not an [`expire`](FlowTable::expire) pass has run. A removed, replaced, evicted or expired flow is
//!   never handed out again.
//! - **Atomic creation.** [`get_or_insert_with`](FlowTable::get_or_insert_with) is atomic per key:
//!   concurrent callers with one key all get the same flow, `init` runs for exactly one of them, and
//!   the caller learns whether it created the flow. `init` runs outside every lock of the table.
//! - **Identity.** Every removal is by identity, never by key alone: a stale timer never removes a
//!   newer flow that reuses the key.
//! - **Touch vs. expiry.** A [`touch`](FlowHandle::touch) that races with expiry is either applied (the
//!   flow stays) or reports `false` (the flow expired); never both, never lost.
//! - **Exactly-once removal.** Each flow leaves the table once, with one
//!   [`RemovalCause`](crate::RemovalCause), and the listener is called once for it, outside locks.
//! - **Handles.** A handle keeps its flow's key and value readable after expiry, removal, replacement
//!   and after the table is dropped.
//! - **Any thread expires.** `expire` expires flows whatever thread created them; a worker that stops
//!   or exits never keeps its flows alive.
//! - **Time** is the caller's: no method reads a clock. `now` going backwards never expires a flow
//!   early and never panics.
#![forbid(unsafe_code)]

use std::fmt;
use std::hash::BuildHasher;
use std::ops::Deref;
use std::time::Duration;

use crate::{Config, ConfigError, ExpiryMode, FlowClass, FlowStatus, Stats, Timestamp};

/// A new flow was refused because the table holds its maximum number of flows.
///
/// Every existing flow is left untouched.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct TableFull {
    /// The table's maximum.
    pub max_flows: usize,
}

impl fmt::Display for TableFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "flow table full ({} flows)", self.max_flows)
    }
}

impl std::error::Error for TableFull {}

/// What [`FlowTable::get_or_insert_with`] found or made.
#[derive(Clone, Debug)]
pub struct GetOrInsert<H> {
    /// The flow.
    pub flow: H,
    /// Whether this call created it (and ran `init`).
    pub created: bool,
}

/// A reference to one flow: what a packet carries in its metadata.
///
/// Cloning and dropping a handle never takes a lock of the table. A handle keeps the flow's key and
/// value alive and readable whatever happens to the flow in the table; [`status`](Self::status)
/// says whether it is still there. The value is reached through `Deref` or [`value`](Self::value);
/// mutate it through interior mutability (atomics, a lock) of your choosing.
///
/// # Examples
///
/// A TCP flow's life as a firewall sees it: a short timeout and the embryonic class until the
/// handshake completes, a long one once established, a short one again on FIN.
///
/// ```
/// use flowtable::{DefaultFlowTable, FlowClass, FlowHandle, FlowKeyV4, FlowStatus, FlowTable, FlowTableBuilder, Timestamp, Zone, proto};
/// use std::time::Duration;
///
/// let table: DefaultFlowTable<FlowKeyV4, ()> =
///     FlowTableBuilder::new().idle_timeout(Duration::from_secs(5)).build()?;
/// let (key, _dir) = FlowKeyV4::new(proto::TCP, [10, 0, 0, 1].into(), 40000, [10, 0, 0, 2].into(), 443, Zone::DEFAULT);
/// let t = |s| Timestamp::from_secs(s);
///
/// let flow = table.get_or_insert_with(key, t(0), || ())?.flow; // SYN
/// assert_eq!((flow.class(), flow.expires_at()), (FlowClass::Embryonic, t(5)));
///
/// assert!(flow.touch(t(1))); // the handshake completes
/// flow.set_class(FlowClass::Established);
/// flow.set_timeout(Duration::from_secs(3600));
/// assert_eq!(flow.expires_at(), t(3601));
///
/// assert!(flow.touch(t(60))); // FIN
/// flow.set_class(FlowClass::Closing);
/// flow.set_timeout(Duration::from_secs(10));
/// assert_eq!(table.expire(t(69), 100), 0);
/// assert_eq!(table.expire(t(70), 100), 1);
///
/// // The handle outlives the flow; a new connection on the same key is a different flow.
/// assert_eq!(flow.status(), FlowStatus::Expired);
/// assert!(!flow.touch(t(71)));
/// let again = table.get_or_insert_with(key, t(71), || ())?.flow;
/// assert!(!again.same_flow(&flow));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait FlowHandle<K, V>: Clone + Send + Sync + 'static + Deref<Target = V> {
    /// The flow's key.
    fn key(&self) -> &K;
    /// The flow's value.
    fn value(&self) -> &V;
    /// Records a packet at `now`: the idle deadline becomes `now + timeout` (it never moves
    /// backwards). O(1), lock-free, no timer entry is moved.
    ///
    /// Succeeds exactly when [`get`](FlowTable::get) at `now` could return this flow: it returns
    /// `false`, and changes nothing, if the flow left the table or (in [`ExpiryMode::Remove`]) its
    /// deadline is already past at `now`. A touch racing with an expiry pass is either applied or
    /// refused, never both.
    fn touch(&self, now: Timestamp) -> bool;
    /// The flow's idle timeout.
    fn timeout(&self) -> Duration;
    /// Changes the flow's idle timeout (for example on a TCP state change). The new deadline is
    /// `last_seen + timeout`; a shorter one takes effect at once for visibility and for expiry.
    /// `Duration::MAX` means never; other timeouts over the backend's
    /// [`MAX_TIMEOUT`](FlowTable::MAX_TIMEOUT) are clamped to it.
    fn set_timeout(&self, timeout: Duration);
    /// When a packet last touched the flow (its creation time if none did).
    fn last_seen(&self) -> Timestamp;
    /// The idle deadline: `last_seen + timeout`, rounded up to the backend's tick;
    /// [`Timestamp::MAX`] for a flow that never expires.
    fn expires_at(&self) -> Timestamp;
    /// Where the flow stands.
    fn status(&self) -> FlowStatus;
    /// What the flow's timeout does.
    fn expiry_mode(&self) -> ExpiryMode;
    /// Overrides the table's expiry mode for this flow.
    fn set_expiry_mode(&self, mode: ExpiryMode);
    /// The flow's eviction class.
    fn class(&self) -> FlowClass;
    /// Sets the flow's eviction class: one atomic store.
    fn set_class(&self, class: FlowClass);
    /// Whether two handles refer to the same flow (not merely the same key).
    fn same_flow(&self, other: &Self) -> bool;
}

/// A concurrent flow table: a map from a flow key to a shared flow record with an idle timeout.
///
/// See the [module documentation](self) for the semantics every backend keeps, and
/// [`FlowTableBuilder`](crate::FlowTableBuilder) to make one.
///
/// # Examples
///
/// ```
/// use flowtable::{DefaultFlowTable, FlowHandle, FlowKeyV4, FlowTable, FlowTableBuilder, Timestamp, Zone, proto};
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use std::time::Duration;
///
/// let table: DefaultFlowTable<FlowKeyV4, AtomicU64> =
///     FlowTableBuilder::new().idle_timeout(Duration::from_secs(30)).build()?;
/// let (key, _dir) = FlowKeyV4::new(proto::UDP, [10, 0, 0, 1].into(), 5353, [10, 0, 0, 2].into(), 53, Zone::DEFAULT);
///
/// let t0 = Timestamp::from_secs(100);
/// let r = table.get_or_insert_with(key, t0, || AtomicU64::new(0))?;
/// assert!(r.created);
/// r.flow.fetch_add(1, Ordering::Relaxed); // a packet
///
/// let t1 = t0 + Duration::from_secs(10);
/// let flow = table.get(&key, t1).expect("still live");
/// flow.touch(t1);
/// assert_eq!(flow.expires_at(), t1 + Duration::from_secs(30));
///
/// // Nothing is visible past the deadline, even before an expiry pass...
/// let late = t1 + Duration::from_secs(31);
/// assert!(table.get(&key, late).is_none());
/// // ...and the pass makes it leave the table.
/// assert_eq!(table.expire(late, 100), 1);
/// assert_eq!(flow.load(Ordering::Relaxed), 1); // the handle still reads it
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait FlowTable<K, V>: Sized + Send + Sync {
    /// The backend's flow handle.
    type Handle: FlowHandle<K, V>;
    /// The key hasher.
    type Hasher: BuildHasher;

    /// The backend's name, as benchmarks and summaries print it.
    const NAME: &'static str;
    /// The resolution of the backend's timestamps: deadlines are rounded up to it, so a flow
    /// expires at most one tick late and never early.
    const TICK: Duration;
    /// The longest idle timeout the backend represents. `Duration::MAX` is always accepted and
    /// means "never expires" (such a flow is expired only by `expire(Timestamp::MAX, ..)`).
    const MAX_TIMEOUT: Duration;

    /// Builds the table; backends add their own limits to the builder's checks.
    fn with_config(config: Config<K, V, Self::Hasher>) -> Result<Self, ConfigError>;

    /// The hash the table uses for `key`. The `*_hashed` methods take this value precomputed; a
    /// caller that has the NIC's RSS hash can pass it only if the table's hasher computes the same
    /// function.
    fn hash_key(&self, key: &K) -> u64;

    /// The live flow under `key` at `now`, or `None`.
    ///
    /// # Locking behaviour
    /// May briefly take a shard's read lock (dashmap backend) or none (compact backend).
    fn get(&self, key: &K, now: Timestamp) -> Option<Self::Handle> {
        self.get_hashed(key, self.hash_key(key), now)
    }

    /// [`get`](Self::get) with the key's hash precomputed (`hash == self.hash_key(key)`).
    fn get_hashed(&self, key: &K, hash: u64, now: Timestamp) -> Option<Self::Handle>;

    /// Looks up many keys at once, writing one result per key into `out` (which is cleared first).
    /// Backends that can overlap the memory accesses of several lookups do so.
    ///
    /// # Examples
    ///
    /// ```
    /// use flowtable::{DefaultFlowTable, FlowKeyV4, FlowTable, FlowTableBuilder, Timestamp, Zone, proto};
    ///
    /// let table: DefaultFlowTable<FlowKeyV4, &str> = FlowTableBuilder::new().build()?;
    /// let key = |port| FlowKeyV4::new(proto::TCP, [10, 0, 0, 1].into(), port, [10, 0, 0, 2].into(), 80, Zone::DEFAULT).0;
    /// let now = Timestamp::from_secs(1);
    /// table.get_or_insert_with(key(1000), now, || "known")?;
    ///
    /// let mut out = Vec::new(); // reused burst after burst: no allocation once it has grown
    /// table.get_batch(&[key(1000), key(1001)], now, &mut out);
    /// assert_eq!(out.iter().map(|f| f.as_ref().map(|f| **f)).collect::<Vec<_>>(), [Some("known"), None]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn get_batch(&self, keys: &[K], now: Timestamp, out: &mut Vec<Option<Self::Handle>>) {
        out.clear();
        out.extend(keys.iter().map(|k| self.get(k, now)));
    }

    /// The live flow under `key`, or a new one made from `init()` if there is none.
    ///
    /// Atomic per key: concurrent callers get the same flow and `init` runs for exactly one of them,
    /// outside every lock. If `init` panics, the table is left as it was and another caller may
    /// create the flow. At the maximum number of flows a new flow is refused with [`TableFull`].
    ///
    /// # Locking behaviour
    /// Takes the key's shard write lock briefly, never while `init` runs.
    fn get_or_insert_with<F: FnOnce() -> V>(
        &self,
        key: K,
        now: Timestamp,
        init: F,
    ) -> Result<GetOrInsert<Self::Handle>, TableFull> {
        let hash = self.hash_key(&key);
        self.get_or_insert_with_hashed(key, hash, now, init)
    }

    /// [`get_or_insert_with`](Self::get_or_insert_with) with the key's hash precomputed.
    ///
    /// # Examples
    ///
    /// A pipeline that dispatches packets to workers by the table's hash computes it once and
    /// passes it along:
    ///
    /// ```
    /// use flowtable::{DefaultFlowTable, FlowKeyV4, FlowTable, FlowTableBuilder, Timestamp, Zone, proto};
    ///
    /// let table: DefaultFlowTable<FlowKeyV4, u64> = FlowTableBuilder::new().build()?;
    /// let (key, _dir) = FlowKeyV4::new(proto::UDP, [10, 0, 0, 1].into(), 4000, [10, 0, 0, 2].into(), 53, Zone::DEFAULT);
    /// let hash = table.hash_key(&key);
    /// let worker = hash % 4; // the same hash picks the worker...
    /// let now = Timestamp::from_secs(1);
    /// let r = table.get_or_insert_with_hashed(key, hash, now, || worker)?; // ...and the table's shard
    /// assert!(r.created);
    /// assert_eq!(table.get_hashed(&key, hash, now).map(|f| *f), Some(worker));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn get_or_insert_with_hashed<F: FnOnce() -> V>(
        &self,
        key: K,
        hash: u64,
        now: Timestamp,
        init: F,
    ) -> Result<GetOrInsert<Self::Handle>, TableFull>;

    /// [`get_or_insert_with`](Self::get_or_insert_with) for many keys, in order, writing one result
    /// per key into `out` (which is cleared first). `init(i)` makes the value of a flow created
    /// for `keys[i]`, outside every lock.
    ///
    /// Each key is its own atomic `get_or_insert_with`: a key that appears twice is created at most
    /// once (the second finds the first's flow), and a refused key (`TableFull`) does not stop the
    /// keys after it. Backends that can overlap the memory accesses of several keys do so (the
    /// compact backend prefetches every key's slots, then creates): a worker that hands the table
    /// a burst of packets creates their flows faster than one call per packet would. If `init`
    /// panics, the panic propagates: `out` holds the results of the keys before it, that key has
    /// no flow, and the keys after it were not looked at.
    ///
    /// # Examples
    ///
    /// ```
    /// use flowtable::{DefaultFlowTable, FlowKeyV4, FlowTable, FlowTableBuilder, Timestamp, Zone, proto};
    ///
    /// let table: DefaultFlowTable<FlowKeyV4, u32> = FlowTableBuilder::new().build()?;
    /// let key = |port| FlowKeyV4::new(proto::TCP, [10, 0, 0, 1].into(), port, [10, 0, 0, 2].into(), 80, Zone::DEFAULT).0;
    /// let burst = [key(1000), key(1001), key(1000)];
    /// let mut out = Vec::new();
    /// table.get_or_insert_batch(&burst, Timestamp::from_secs(1), |i| i as u32, &mut out);
    /// let created = out.iter().map(|r| r.as_ref().map(|g| g.created).map_err(|e| *e));
    /// let created: Vec<bool> = created.collect::<Result<_, _>>()?;
    /// assert_eq!(created, [true, true, false]); // the third packet found the first one's flow
    /// assert_eq!(*out[2].as_ref().unwrap().flow, 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn get_or_insert_batch<F: FnMut(usize) -> V>(
        &self,
        keys: &[K],
        now: Timestamp,
        mut init: F,
        out: &mut Vec<Result<GetOrInsert<Self::Handle>, TableFull>>,
    ) where
        K: Clone,
    {
        out.clear();
        out.reserve(keys.len());
        for (i, k) in keys.iter().enumerate() {
            let r = self.get_or_insert_with(k.clone(), now, || init(i));
            out.push(r);
        }
    }

    /// Puts a new flow under `key`, replacing any flow there (which leaves with
    /// [`Replaced`](crate::RemovalCause::Replaced); its handles stay valid). Returns the new flow and
    /// the replaced one.
    ///
    /// # Examples
    ///
    /// ```
    /// use flowtable::{DefaultFlowTable, FlowHandle, FlowKeyV4, FlowStatus, FlowTable, FlowTableBuilder, Timestamp, Zone, proto};
    ///
    /// let table: DefaultFlowTable<FlowKeyV4, &str> = FlowTableBuilder::new().build()?;
    /// let (key, _dir) = FlowKeyV4::new(proto::TCP, [10, 0, 0, 1].into(), 1000, [10, 0, 0, 2].into(), 80, Zone::DEFAULT);
    /// let now = Timestamp::from_secs(1);
    /// let (first, none) = table.insert(key, "first", now)?;
    /// assert!(none.is_none());
    /// let (second, replaced) = table.insert(key, "second", now)?;
    /// let replaced = replaced.expect("the first flow was there");
    /// assert!(replaced.same_flow(&first));
    /// assert_eq!(*first, "first"); // its handles still read it...
    /// assert_eq!(first.status(), FlowStatus::Replaced); // ...and say why it left
    /// assert_eq!(table.get(&key, now).map(|f| *f), Some("second"));
    /// assert!(second.same_flow(&table.get(&key, now).unwrap()));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn insert(&self, key: K, value: V, now: Timestamp) -> Result<(Self::Handle, Option<Self::Handle>), TableFull>;

    /// Removes the flow under `key` and returns it, or `None` if there is no live flow.
    ///
    /// # Examples
    ///
    /// ```
    /// use flowtable::{DefaultFlowTable, FlowHandle, FlowKeyV4, FlowStatus, FlowTable, FlowTableBuilder, Timestamp, Zone, proto};
    ///
    /// let table: DefaultFlowTable<FlowKeyV4, u32> = FlowTableBuilder::new().build()?;
    /// let (key, _dir) = FlowKeyV4::new(proto::TCP, [10, 0, 0, 1].into(), 1000, [10, 0, 0, 2].into(), 80, Zone::DEFAULT);
    /// let now = Timestamp::from_secs(1);
    /// let held = table.get_or_insert_with(key, now, || 7)?.flow; // a packet still holds it
    /// let removed = table.remove(&key).expect("it was live");
    /// assert!(removed.same_flow(&held));
    /// assert!(table.get(&key, now).is_none() && table.remove(&key).is_none());
    /// assert_eq!((*held, held.status()), (7, FlowStatus::Removed));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn remove(&self, key: &K) -> Option<Self::Handle>;

    /// Expires up to `budget` flows whose deadline is at or before `now`, from every thread's
    /// timers; returns how many left the table in this call. Call it from any thread, as often as
    /// suits: it never blocks on a timer queue another thread is using.
    /// `expire(Timestamp::MAX, usize::MAX)` flushes every flow with cause `Expired`.
    ///
    /// In [`ExpiryMode::WhileHeld`] a due flow that some handle still holds stays (it leaves when
    /// the last handle is dropped) and is not counted.
    ///
    /// # Examples
    ///
    /// A worker expires between bursts with a budget, so that a storm of due flows is spread over
    /// many calls instead of stalling one burst:
    ///
    /// ```
    /// use flowtable::{DefaultFlowTable, FlowKeyV4, FlowTable, FlowTableBuilder, Timestamp, Zone, proto};
    /// use std::time::Duration;
    ///
    /// let table: DefaultFlowTable<FlowKeyV4, ()> =
    ///     FlowTableBuilder::new().idle_timeout(Duration::from_secs(10)).build()?;
    /// let t0 = Timestamp::from_secs(100);
    /// for port in 0..300 {
    ///     let (key, _dir) = FlowKeyV4::new(proto::UDP, [10, 0, 0, 1].into(), port, [10, 0, 0, 2].into(), 53, Zone::DEFAULT);
    ///     table.get_or_insert_with(key, t0, || ())?;
    /// }
    /// assert_eq!(table.expire(t0 + Duration::from_secs(9), 128), 0); // nothing due yet
    /// let late = t0 + Duration::from_secs(10);
    /// let passes: Vec<usize> = std::iter::from_fn(|| Some(table.expire(late, 128))).take(4).collect();
    /// assert_eq!(passes, [128, 128, 44, 0]);
    /// assert!(table.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn expire(&self, now: Timestamp, budget: usize) -> usize;

    /// Removes every flow (cause [`Removed`](crate::RemovalCause::Removed)); returns how many.
    fn clear(&self) -> usize;

    /// How many flows are in the table. O(1), no locks.
    fn len(&self) -> usize;

    /// Whether the table holds no flow.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The table's counters.
    ///
    /// # Examples
    ///
    /// ```
    /// use flowtable::{DefaultFlowTable, FlowKeyV4, FlowTable, FlowTableBuilder, Timestamp, Zone, proto};
    /// use std::time::Duration;
    ///
    /// let table: DefaultFlowTable<FlowKeyV4, u8> =
    ///     FlowTableBuilder::new().idle_timeout(Duration::from_secs(5)).build()?;
    /// let key = |port| FlowKeyV4::new(proto::TCP, [10, 0, 0, 1].into(), port, [10, 0, 0, 2].into(), 80, Zone::DEFAULT).0;
    /// let t0 = Timestamp::from_secs(1);
    /// for port in [1, 2, 3] {
    ///     table.get_or_insert_with(key(port), t0, || 0)?;
    /// }
    /// table.remove(&key(1));
    /// table.expire(t0 + Duration::from_secs(5), usize::MAX);
    /// let s = table.stats();
    /// assert_eq!((s.created, s.removed, s.expired, s.live), (3, 1, 2, 0));
    /// assert!(s.memory_bytes > 0); // the table's own structures: index, records, timers
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn stats(&self) -> Stats;

    /// Calls `f` on every flow that is active at `now`, one shard at a time. Weakly consistent:
    /// flows added or removed while it runs may or may not be seen. `f` runs outside every lock.
    ///
    /// # Examples
    ///
    /// ```
    /// use flowtable::{DefaultFlowTable, FlowKeyV4, FlowTable, FlowTableBuilder, Timestamp, Zone, proto};
    ///
    /// let table: DefaultFlowTable<FlowKeyV4, u64> = FlowTableBuilder::new().build()?;
    /// let now = Timestamp::from_secs(1);
    /// for (port, bytes) in [(1, 100), (2, 250)] {
    ///     let (key, _dir) = FlowKeyV4::new(proto::TCP, [10, 0, 0, 1].into(), port, [10, 0, 0, 2].into(), 80, Zone::DEFAULT);
    ///     table.get_or_insert_with(key, now, || bytes)?;
    /// }
    /// let mut total = 0;
    /// table.for_each(now, |flow| total += **flow);
    /// assert_eq!(total, 350);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn for_each<F: FnMut(&Self::Handle)>(&self, now: Timestamp, f: F);

    /// [`expire`](Self::expire) over all shards in parallel on rayon's pool, `budget` in total.
    #[cfg(feature = "rayon")]
    fn par_expire(&self, now: Timestamp, budget: usize) -> usize;

    /// [`for_each`](Self::for_each) over all shards in parallel on rayon's pool.
    #[cfg(feature = "rayon")]
    fn par_for_each<F: Fn(&Self::Handle) + Send + Sync>(&self, now: Timestamp, f: F);
}
