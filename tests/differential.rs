//! Differential test: random operation sequences on a virtual clock, applied to each backend and to a
//! plain single-threaded model of the contract, comparing every observable result (lookups, creation
//! flags, replaced/removed flows, touch results, statuses, deadlines, expiry counts, lengths,
//! counters, and the listener's notifications).
//!
//! Times and timeouts stay on the millisecond grid, which every backend's tick divides, so the
//! model is exact. `FLOWTABLE_FUZZ_CASES` scales the run (`scripts/fuzz.sh` runs many more cases).

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use flowtable::{ExpiryMode, FlowHandle, FlowKeyV4, FlowStatus, FlowTable, FlowTableBuilder, RemovalCause, Timestamp};
use proptest::prelude::*;

const KEYS: u32 = 6;
const NEVER: u64 = u64::MAX;

#[derive(Clone, Debug)]
enum Op {
    Get(u32),
    GetOrInsert(u32),
    GetOrInsertBatch(Vec<u32>),
    Insert(u32),
    Remove(u32),
    Touch(usize),
    SetTimeout(usize, u64),
    Observe(usize),
    Drop(usize),
    Expire,
    Advance(u64),
    Back(u64),
    Clear,
}

fn op() -> impl Strategy<Value = Op> {
    let timeout = prop_oneof![Just(1_000u64), Just(5_000), Just(30_000), Just(NEVER)];
    prop_oneof![
        4 => (0..KEYS).prop_map(Op::Get),
        5 => (0..KEYS).prop_map(Op::GetOrInsert),
        1 => prop::collection::vec(0..KEYS, 0..40).prop_map(Op::GetOrInsertBatch),
        2 => (0..KEYS).prop_map(Op::Insert),
        2 => (0..KEYS).prop_map(Op::Remove),
        3 => any::<usize>().prop_map(Op::Touch),
        1 => (any::<usize>(), timeout).prop_map(|(h, t)| Op::SetTimeout(h, t)),
        2 => any::<usize>().prop_map(Op::Observe),
        2 => any::<usize>().prop_map(Op::Drop),
        3 => Just(Op::Expire),
        4 => (1..30u64).prop_map(|d| Op::Advance(d * 500)),
        1 => (1..10u64).prop_map(|d| Op::Back(d * 500)),
        1 => Just(Op::Clear),
    ]
}

/// One flow of the model.
#[derive(Debug)]
struct MFlow {
    id: u64,
    key: u32,
    last_seen: u64,
    timeout: u64,
    status: FlowStatus,
    /// WhileHeld: the timer fired while handles were held; the flow leaves with its last handle.
    released: bool,
}

/// The contract, single-threaded, for one table.
struct Model {
    flows: Vec<MFlow>,
    map: HashMap<u32, usize>,
    held: Vec<usize>,
    events: Vec<(u64, RemovalCause)>,
    max_flows: usize,
    timeout: u64,
    while_held: bool,
}

impl Model {
    fn deadline(&self, f: usize) -> u64 {
        let f = &self.flows[f];
        if f.timeout == NEVER {
            NEVER
        } else {
            f.last_seen + f.timeout
        }
    }
    fn visible(&self, f: usize, now: u64) -> bool {
        self.flows[f].status == FlowStatus::Active && (self.while_held || self.deadline(f) > now)
    }
    fn live(&self) -> usize {
        self.flows.iter().filter(|f| f.status == FlowStatus::Active).count()
    }
    fn leave(&mut self, f: usize, cause: RemovalCause) {
        let fl = &mut self.flows[f];
        assert_eq!(fl.status, FlowStatus::Active);
        fl.status = match cause {
            RemovalCause::Expired => FlowStatus::Expired,
            RemovalCause::Removed => FlowStatus::Removed,
            RemovalCause::Replaced => FlowStatus::Replaced,
            RemovalCause::Evicted => FlowStatus::Evicted,
        };
        self.events.push((fl.id, cause));
        if self.map.get(&fl.key) == Some(&f) {
            self.map.remove(&fl.key);
        }
    }
    fn visible_at(&self, k: u32, now: u64) -> Option<usize> {
        self.map.get(&k).copied().filter(|&f| self.visible(f, now))
    }
    fn create(&mut self, k: u32, id: u64, now: u64) -> usize {
        // An active flow under the key that is not visible leaves as expired.
        if let Some(old) = self.map.get(&k).copied() {
            if self.flows[old].status == FlowStatus::Active {
                self.leave(old, RemovalCause::Expired);
            }
        }
        self.flows.push(MFlow {
            id,
            key: k,
            last_seen: now,
            timeout: self.timeout,
            status: FlowStatus::Active,
            released: false,
        });
        let f = self.flows.len() - 1;
        self.map.insert(k, f);
        f
    }
    /// What `get_or_insert_with(k)` at `now` gives, the id `id` for a new flow (`Err` when full);
    /// the caller then holds the flow.
    fn get_or_insert(&mut self, k: u32, id: u64, now: u64) -> Result<(u64, bool), ()> {
        let r = match self.visible_at(k, now) {
            Some(f) => (f, false),
            None if self.live() >= self.max_flows => return Err(()),
            None => (self.create(k, id, now), true),
        };
        self.held.push(r.0);
        Ok((self.flows[r.0].id, r.1))
    }
    fn held_count(&self, f: usize) -> usize {
        self.held.iter().filter(|&&h| h == f).count()
    }
}

fn run<B: Backend>(ops: &[Op], max_flows: usize, while_held: bool) {
    let log: Arc<Mutex<Vec<(u64, RemovalCause)>>> = Arc::default();
    let sink = Arc::clone(&log);
    let mode = if while_held { ExpiryMode::WhileHeld } else { ExpiryMode::Remove };
    let table = FlowTableBuilder::<FlowKeyV4, u64>::new()
        .shards(2)
        .max_flows(max_flows)
        .idle_timeout(Duration::from_secs(10))
        .expiry_mode(mode)
        .listener(move |ev| sink.lock().unwrap().push((*ev.value, ev.cause)))
        .build::<T<B>>()
        .unwrap();
    let mut m = Model {
        flows: Vec::new(),
        map: HashMap::new(),
        held: Vec::new(),
        events: Vec::new(),
        max_flows,
        timeout: 10_000,
        while_held,
    };
    let mut handles: Vec<<T<B> as FlowTable<FlowKeyV4, u64>>::Handle> = Vec::new();
    let mut now = 1_000_000u64;
    let mut next_id = 0u64;
    let ts = |v: u64| Timestamp::from_millis(v);
    let find = |m: &Model, id: u64| m.flows.iter().position(|f| f.id == id).unwrap();

    for (step, op) in ops.iter().enumerate() {
        let ctx = || format!("step {step}: {op:?}");
        match *op {
            Op::Get(k) => {
                let got = table.get(&key(k), ts(now)).map(|h| {
                    let id = *h;
                    handles.push(h);
                    id
                });
                let want = m.visible_at(k, now).map(|f| m.flows[f].id);
                assert_eq!(got, want, "{}", ctx());
                if let Some(id) = want {
                    let f = find(&m, id);
                    m.held.push(f);
                }
            }
            Op::GetOrInsert(k) => {
                let id = next_id;
                next_id += 1;
                let got = table.get_or_insert_with(key(k), ts(now), || id).map(|r| {
                    let v = (*r.flow, r.created);
                    handles.push(r.flow);
                    v
                });
                let want = m.get_or_insert(k, id, now);
                assert_eq!(got.as_ref().map_err(|_| ()), want.as_ref().map_err(|_| ()), "{}", ctx());
            }
            Op::GetOrInsertBatch(ref ks) => {
                // Key by key, what `GetOrInsert` would give; ids `first + i` for a created flow.
                let first = next_id;
                next_id += ks.len() as u64;
                let keys: Vec<_> = ks.iter().map(|&k| key(k)).collect();
                let mut out = Vec::new();
                table.get_or_insert_batch(&keys, ts(now), |i| first + i as u64, &mut out);
                assert_eq!(out.len(), ks.len(), "{}", ctx());
                for (i, (&k, r)) in ks.iter().zip(out).enumerate() {
                    let id = first + i as u64;
                    let got = r.map(|r| {
                        let v = (*r.flow, r.created);
                        handles.push(r.flow);
                        v
                    });
                    let want = m.get_or_insert(k, id, now);
                    let at = format!("key {i} of the batch; {}", ctx());
                    assert_eq!(got.as_ref().map_err(|_| ()), want.as_ref().map_err(|_| ()), "{at}");
                }
            }
            Op::Insert(k) => {
                let id = next_id;
                next_id += 1;
                let got = table.insert(key(k), id, ts(now)).map(|(new, old)| {
                    let v = (*new, old.as_ref().map(|o| **o));
                    handles.push(new);
                    v
                });
                let vis = m.visible_at(k, now);
                let want = if vis.is_none() && m.live() >= m.max_flows {
                    Err(())
                } else {
                    if let Some(old) = vis {
                        m.leave(old, RemovalCause::Replaced);
                    }
                    let f = m.create(k, id, now);
                    m.held.push(f);
                    Ok((id, vis.map(|o| m.flows[o].id)))
                };
                assert_eq!(got.map_err(|_| ()), want, "{}", ctx());
            }
            Op::Remove(k) => {
                let got = table.remove(&key(k)).map(|h| *h);
                let want = match m.map.get(&k).copied() {
                    Some(f) if m.flows[f].status == FlowStatus::Active => {
                        m.leave(f, RemovalCause::Removed);
                        Some(m.flows[f].id)
                    }
                    _ => None,
                };
                assert_eq!(got, want, "{}", ctx());
            }
            Op::Touch(h) if !handles.is_empty() => {
                let i = h % handles.len();
                let f = m.held[i];
                let want = m.visible(f, now);
                if want {
                    m.flows[f].last_seen = m.flows[f].last_seen.max(now);
                }
                assert_eq!(handles[i].touch(ts(now)), want, "{}", ctx());
            }
            Op::SetTimeout(h, d) if !handles.is_empty() => {
                let i = h % handles.len();
                let f = m.held[i];
                m.flows[f].timeout = d;
                handles[i].set_timeout(if d == NEVER { Duration::MAX } else { Duration::from_millis(d) });
            }
            Op::Observe(h) if !handles.is_empty() => {
                let i = h % handles.len();
                let f = m.held[i];
                assert_eq!(handles[i].status(), m.flows[f].status, "{}", ctx());
                let dl = m.deadline(f);
                let want_dl = if dl == NEVER { Timestamp::MAX } else { ts(dl) };
                assert_eq!(handles[i].expires_at(), want_dl, "{}", ctx());
                assert_eq!(*handles[i], m.flows[f].id);
            }
            Op::Drop(h) if !handles.is_empty() => {
                let i = h % handles.len();
                drop(handles.swap_remove(i));
                let f = m.held.swap_remove(i);
                if m.flows[f].released && m.flows[f].status == FlowStatus::Active && m.held_count(f) == 0 {
                    m.leave(f, RemovalCause::Expired);
                }
            }
            Op::Expire => {
                let got = table.expire(ts(now), usize::MAX);
                let mut want = 0;
                for f in 0..m.flows.len() {
                    if m.flows[f].status != FlowStatus::Active || m.flows[f].released || m.deadline(f) > now {
                        continue;
                    }
                    if m.while_held && m.held_count(f) > 0 {
                        m.flows[f].released = true;
                    } else {
                        m.leave(f, RemovalCause::Expired);
                        want += 1;
                    }
                }
                assert_eq!(got, want, "{}", ctx());
            }
            Op::Advance(d) => now += d,
            Op::Back(d) => now -= d,
            Op::Clear => {
                let got = table.clear();
                let active: Vec<usize> =
                    m.map.values().copied().filter(|&f| m.flows[f].status == FlowStatus::Active).collect();
                for &f in &active {
                    m.leave(f, RemovalCause::Removed);
                }
                assert_eq!(got, active.len(), "{}", ctx());
            }
            _ => {}
        }
        let mut got_ev = std::mem::take(&mut *log.lock().unwrap());
        let mut want_ev = std::mem::take(&mut m.events);
        got_ev.sort_by_key(|e| e.0);
        want_ev.sort_by_key(|e| e.0);
        assert_eq!(got_ev, want_ev, "notifications after {}", ctx());
        assert_eq!(table.len(), m.live(), "len after {}", ctx());
    }
    let s = table.stats();
    let count = |st: FlowStatus| m.flows.iter().filter(|f| f.status == st).count() as u64;
    assert_eq!(s.created, m.flows.len() as u64);
    assert_eq!(
        (s.expired, s.removed, s.replaced),
        (count(FlowStatus::Expired), count(FlowStatus::Removed), count(FlowStatus::Replaced))
    );
}

/// Cases per property: 256, or `FLOWTABLE_FUZZ_CASES` (the fuzz step of `scripts/ci.sh` runs many).
fn cases() -> u32 {
    std::env::var("FLOWTABLE_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256)
}

macro_rules! differential {
    ($($backend:ident: $ty:ty),* $(,)?) => {$(
        mod $backend {
            use super::*;
            proptest! {
                #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]
                #[test]
                fn matches_model(ops in prop::collection::vec(op(), 1..120), max_flows in prop_oneof![Just(3usize), Just(1000)]) {
                    run::<$ty>(&ops, max_flows, false);
                }
                #[test]
                fn matches_model_while_held(ops in prop::collection::vec(op(), 1..120)) {
                    run::<$ty>(&ops, 1000, true);
                }
            }
        }
    )*};
}

#[cfg(feature = "dashmap")]
differential!(dashmap: common::Dash);
#[cfg(feature = "compact")]
differential!(compact: common::Compact);
