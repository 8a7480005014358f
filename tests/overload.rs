//! Overload and adversarial traffic: capacity policies, eviction order, emergency mode, floods,
//! expiry storms and hash flooding. Generic over the backends that implement every capacity policy.

mod common;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

use common::*;
use flowtable::{
    CapacityPolicy, ConfigError, Emergency, ExpiryMode, FlowClass, FlowHandle, FlowKeyV4, FlowTable, FlowTableBuilder,
    RemovalCause,
};

overload_backend_tests!(
    eviction_follows_the_fixed_order,
    eviction_order_is_exact_at_scale,
    expired_flows_are_reclaimed_first,
    a_deadline_moved_before_a_fruitless_reclaim_is_still_reclaimed,
    emergency_mode_shortens_new_timeouts,
    flood_never_evicts_busy_established_flows,
    expiry_storm_is_bounded_per_call,
    while_held_flows_leave_under_evict,
);

fn evicting(max: usize) -> (FlowTableBuilder<FlowKeyV4, u64>, Log<u64>) {
    let (b, log) = logged::<u64>();
    (b.max_flows(max).capacity_policy(CapacityPolicy::Evict).idle_timeout(secs(600)), log)
}

fn eviction_follows_the_fixed_order<B: Backend>() {
    let (b, log) = evicting(6);
    let t = build::<B, u64>(b).unwrap();
    // Two flows of each class; within a class the first is seen less recently.
    let classes = [FlowClass::Established, FlowClass::Closing, FlowClass::Embryonic];
    let mut id = 0;
    for (ci, class) in classes.iter().enumerate() {
        for j in 0..2 {
            let f = t.get_or_insert_with(key(id), ms(1_000 * (ci as u64 * 2 + j)), || u64::from(id)).unwrap().flow;
            f.set_class(*class);
            id += 1;
        }
    }
    // Established flow 0 is the least recently seen of all, but it goes last.
    let mut order = Vec::new();
    for n in 0..6u32 {
        let r = t.get_or_insert_with(key(100 + n), ms(20_000 + u64::from(n)), || 100 + u64::from(n)).unwrap();
        assert!(r.created);
        r.flow.set_class(FlowClass::Established); // new flows are answered at once here
        order.push(log.lock().unwrap().last().copied().unwrap());
    }
    // Embryonic 4, 5, then closing 2, 3, then established by recency: 0, 1.
    let want: Vec<(u64, RemovalCause)> = [4, 5, 2, 3, 0, 1].iter().map(|&i| (i, RemovalCause::Evicted)).collect();
    assert_eq!(order, want);
    let s = t.stats();
    assert_eq!((s.evicted, s.evicted_embryonic, s.evicted_closing, s.evicted_established), (6, 2, 2, 2));
    assert_eq!(s.rejected_full, 0);
    assert_eq!(t.len(), 6);
}

/// The fixed order at a size where the compact backend's eviction queues are bounded (a scan
/// keeps an eighth of a shard's flows per class) and rebuilt many times: thousands of evictions
/// among touches, class changes and removals, every victim checked against a model (the least
/// recently seen flow of the lowest class; every step is 1 ms later, so no two flows tie).
fn eviction_order_is_exact_at_scale<B: Backend>() {
    const MAX: u32 = 3_000;
    let (b, log) = evicting(MAX as usize);
    let t = build::<B, u64>(b.idle_timeout(secs(3_600))).unwrap();
    // The model: key id -> (class, last seen), and the same ordered for the eviction choice.
    let mut live: HashMap<u32, (u8, u64)> = HashMap::new();
    let mut order: BTreeSet<(u8, u64, u32)> = BTreeSet::new();
    let mut now = 1_000u64;
    for id in 0..MAX {
        now += 1;
        t.get_or_insert_with(key(id), ms(now), || u64::from(id)).unwrap();
        live.insert(id, (0, now));
        order.insert((0, now, id));
    }
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut fresh = MAX;
    let mut evictions = 0;
    for step in 0..30_000u32 {
        now += 1;
        let pick = |r: u64, live: &HashMap<u32, (u8, u64)>| -> Option<u32> {
            // A live id near a random one (ids are dense enough that few probes are needed).
            (0..64).map(|i| ((r as u32).wrapping_add(i)) % fresh).find(|id| live.contains_key(id))
        };
        let r = next();
        match r % 10 {
            0..=3 => {
                // A new flow: the table is full, so the model's first flow is evicted.
                let &(_, _, victim) = order.iter().next().unwrap();
                let id = fresh;
                fresh += 1;
                let g = t.get_or_insert_with(key(id), ms(now), || u64::from(id)).unwrap();
                assert!(g.created);
                let got = log.lock().unwrap().last().copied();
                assert_eq!(got, Some((u64::from(victim), RemovalCause::Evicted)), "step {step}");
                let (c, l) = live.remove(&victim).unwrap();
                order.remove(&(c, l, victim));
                live.insert(id, (0, now));
                order.insert((0, now, id));
                evictions += 1;
            }
            4..=6 => {
                if let Some(id) = pick(next(), &live) {
                    let f = t.get(&key(id), ms(now)).expect("live");
                    assert!(f.touch(ms(now)));
                    let (c, l) = live[&id];
                    order.remove(&(c, l, id));
                    live.insert(id, (c, now));
                    order.insert((c, now, id));
                }
            }
            7..=8 => {
                if let Some(id) = pick(next(), &live) {
                    let class =
                        [FlowClass::Embryonic, FlowClass::Closing, FlowClass::Established][(next() % 3) as usize];
                    t.get(&key(id), ms(now)).expect("live").set_class(class);
                    let (c, l) = live[&id];
                    order.remove(&(c, l, id));
                    live.insert(id, (class as u8, l));
                    order.insert((class as u8, l, id));
                }
            }
            _ => {
                if let Some(id) = pick(next(), &live) {
                    if r % 4 == 0 {
                        assert!(t.remove(&key(id)).is_some());
                        let (c, l) = live.remove(&id).unwrap();
                        order.remove(&(c, l, id));
                        // Refill to the maximum without an eviction.
                        let id = fresh;
                        fresh += 1;
                        assert!(t.get_or_insert_with(key(id), ms(now), || u64::from(id)).unwrap().created);
                        live.insert(id, (0, now));
                        order.insert((0, now, id));
                    }
                }
            }
        }
        if step % 64 == 0 {
            assert_eq!(t.len(), live.len(), "step {step}");
        }
    }
    assert!(evictions > 10_000, "{evictions}");
    assert_eq!(t.stats().evicted, evictions);
}

fn expired_flows_are_reclaimed_first<B: Backend>() {
    let (b, log) = evicting(3);
    let t = build::<B, u64>(b).unwrap();
    for i in 0..3 {
        t.get_or_insert_with(key(i), ms(0), || u64::from(i)).unwrap();
    }
    t.get(&key(1), ms(0)).unwrap().set_timeout(secs(5));
    // At 10 s, flow 1 is past its deadline: it goes (as expired), not an embryonic flow.
    assert!(t.get_or_insert_with(key(9), ms(10_000), || 9).unwrap().created);
    assert_eq!(causes(&log), vec![(1, RemovalCause::Expired)]);
    let s = t.stats();
    assert_eq!((s.reclaimed_expired, s.expired, s.evicted), (1, 1, 0));
    // Then the least recently seen embryonic flow.
    assert!(t.get_or_insert_with(key(10), ms(10_001), || 10).unwrap().created);
    assert_eq!(log.lock().unwrap().last(), Some(&(0, RemovalCause::Evicted)));
}

/// A reclaim that found nothing due must not make the table overlook a deadline that moved
/// earlier afterwards (the compact backend skips shards by a bound on their next deadline).
fn a_deadline_moved_before_a_fruitless_reclaim_is_still_reclaimed<B: Backend>() {
    let (b, log) = evicting(3);
    let t = build::<B, u64>(b).unwrap();
    for i in 0..3 {
        t.get_or_insert_with(key(i), ms(i.into()), || u64::from(i)).unwrap();
    }
    // At 10 s nothing is due: the least recently seen flow is evicted.
    assert!(t.get_or_insert_with(key(9), ms(10_000), || 9).unwrap().created);
    assert_eq!(causes(&log), vec![(0, RemovalCause::Evicted)]);
    // Flow 2's deadline moves to 5 s, before the time of that fruitless reclaim.
    t.get(&key(2), ms(10_000)).unwrap().set_timeout(secs(5));
    assert!(t.get_or_insert_with(key(10), ms(10_000), || 10).unwrap().created);
    assert_eq!(causes(&log)[1..], [(2, RemovalCause::Expired)], "flow 2 is reclaimed, flow 1 stays");
    assert!(t.get(&key(1), ms(10_000)).is_some());
    let s = t.stats();
    assert_eq!((s.reclaimed_expired, s.expired, s.evicted), (1, 1, 1));
}

fn emergency_mode_shortens_new_timeouts<B: Backend>() {
    let (b, _log) = logged::<u64>();
    assert!(matches!(
        build::<B, u64>(logged::<u64>().0.max_flows(10).emergency(4, 8, secs(1))).err(),
        Some(ConfigError::BadWatermarks(Emergency { high: 4, low: 8, .. }))
    ));
    let t = build::<B, u64>(b.max_flows(10).idle_timeout(secs(60)).emergency(8, 4, secs(2))).unwrap();
    let mut hs = Vec::new();
    for i in 0..10 {
        hs.push(t.get_or_insert_with(key(i), ms(0), || u64::from(i)).unwrap().flow);
    }
    // Flows created from the 8th on (high watermark) get the emergency timeout.
    let timeouts: Vec<u64> = hs.iter().map(|h| h.timeout().as_secs()).collect();
    assert_eq!(timeouts, [60, 60, 60, 60, 60, 60, 60, 2, 2, 2]);
    assert!(t.stats().emergency);
    assert_eq!(t.expire(ms(2_000), 100), 3);
    assert!(t.stats().emergency, "7 live: still above the low watermark");
    for i in 0..3 {
        t.remove(&key(i)).unwrap();
    }
    assert!(!t.stats().emergency, "4 live: drained to the low watermark");
    assert_eq!(t.get_or_insert_with(key(50), ms(2_000), || 50).unwrap().flow.timeout(), secs(60));
}

fn flood_never_evicts_busy_established_flows<B: Backend>() {
    // Two threads: one floods ten times the maximum in new keys (a SYN flood), the other keeps a
    // set of established flows busy. Every established flow survives and stays findable, and the
    // table never holds more than its maximum.
    let max = 2_000usize;
    let established = 500u32;
    let evicted_established = Arc::new(Mutex::new(Vec::new()));
    let ee = Arc::clone(&evicted_established);
    let t = build::<B, u64>(
        FlowTableBuilder::new()
            .shards(8)
            .max_flows(max)
            .capacity_policy(CapacityPolicy::Evict)
            .idle_timeout(secs(300))
            .listener(move |ev| {
                if *ev.value < 1_000_000 {
                    ee.lock().unwrap().push(*ev.value);
                }
            }),
    )
    .unwrap();
    for i in 0..established {
        let f = t.get_or_insert_with(key(i), ms(0), || u64::from(i)).unwrap().flow;
        f.set_class(FlowClass::Established);
    }
    let clock = AtomicUsize::new(1);
    let done = AtomicBool::new(false);
    let peak = AtomicUsize::new(0);
    let flooders = AtomicUsize::new(2);
    thread::scope(|s| {
        // Two flooders racing each other for the room eviction makes: with the victim's room
        // handed straight to the evicting creator, no new flow is ever refused.
        for f in 0..2u32 {
            let (t, clock, peak, done, flooders) = (&t, &clock, &peak, &done, &flooders);
            s.spawn(move || {
                for n in (f..(10 * max as u32)).step_by(2) {
                    let now = ms(clock.fetch_add(1, Ordering::Relaxed) as u64);
                    let r = t.get_or_insert_with(key(1_000_000 + n), now, || 1_000_000 + u64::from(n));
                    assert!(r.is_ok(), "the evicting table refused a new flow");
                    peak.fetch_max(t.len(), Ordering::Relaxed);
                }
                if flooders.fetch_sub(1, Ordering::SeqCst) == 1 {
                    done.store(true, Ordering::SeqCst);
                }
            });
        }
        s.spawn(|| {
            while !done.load(Ordering::SeqCst) {
                for i in 0..established {
                    let now = ms(clock.load(Ordering::Relaxed) as u64);
                    let f = t.get(&key(i), now).expect("an established flow disappeared");
                    assert!(f.touch(now));
                }
            }
        });
    });
    assert!(evicted_established.lock().unwrap().is_empty(), "established flows were evicted");
    assert!(peak.load(Ordering::Relaxed) <= max, "the table grew past its maximum");
    assert_eq!(t.len(), max);
    let s = t.stats();
    assert_eq!(s.evicted_established, 0);
    assert!(s.evicted_embryonic >= (9 * max) as u64, "{s:?}");
}

fn expiry_storm_is_bounded_per_call<B: Backend>() {
    // Many flows due in the same tick: each call does at most `budget` expirations, and repeated
    // calls drain the storm completely.
    let n = 50_000u32;
    let t = build::<B, u64>(FlowTableBuilder::new().shards(16).idle_timeout(secs(30))).unwrap();
    for i in 0..n {
        t.get_or_insert_with(key(i), ms(0), || u64::from(i)).unwrap();
    }
    let mut calls = 0;
    loop {
        let k = t.expire(ms(30_000), 1_000);
        assert!(k <= 1_000);
        if k == 0 {
            break;
        }
        calls += 1;
    }
    assert_eq!(calls, n as usize / 1_000);
    assert!(t.is_empty());
}

/// Keys crafted to collide under a fixed-seed hasher (all in one shard and one bucket group) are
/// spread out under the default, randomly seeded hasher.
#[test]
fn hash_flooding_keys_do_not_cluster_under_the_default_hasher() {
    let fixed = ahash::RandomState::with_seeds(1, 2, 3, 4);
    let target = fixed.hash_one(key(0)) >> 52; // top 12 bits: shard and first probe group
    let mut crafted = Vec::new();
    let mut i = 1u32;
    while crafted.len() < 200 {
        let k = key(i);
        if fixed.hash_one(k) >> 52 == target {
            crafted.push(k);
        }
        i += 1;
    }
    let default = flowtable::hash::default_hasher();
    let buckets: HashSet<u64> = crafted.iter().map(|k| default.hash_one(k) >> 52).collect();
    // 200 keys in 4096 buckets: random placement gives ~195 distinct; an attack would give 1.
    assert!(buckets.len() > 150, "crafted keys still cluster: {} buckets", buckets.len());
    let mut shards = [0usize; 16];
    for k in &crafted {
        shards[(default.hash_one(k) >> 60) as usize] += 1;
    }
    assert!(shards.iter().all(|&c| c < 40), "a shard got {shards:?}");
}

/// Regression: with `Evict`, the eviction queue's reference kept a released `WhileHeld` flow alive
/// after its last handle was dropped, so it never left the table.
fn while_held_flows_leave_under_evict<B: Backend>() {
    let (b, log) = evicting(10);
    let t = build::<B, u64>(b.idle_timeout(secs(10)).expiry_mode(ExpiryMode::WhileHeld)).unwrap();
    let held = t.get_or_insert_with(key(1), ms(0), || 1).unwrap().flow;
    drop(t.get_or_insert_with(key(2), ms(0), || 2).unwrap());
    assert_eq!(t.expire(ms(10_000), 100), 1, "the unheld flow leaves at the pass");
    assert_eq!(t.len(), 1);
    drop(held);
    assert_eq!(causes(&log), vec![(1, RemovalCause::Expired), (2, RemovalCause::Expired)]);
    assert!(t.is_empty());
    // A held, released flow is no eviction candidate (no strong reference of the table's is left
    // on it); it leaves when its last handle goes, and the table evicts the others meanwhile.
    let h = t.get_or_insert_with(key(3), ms(20_000), || 3).unwrap().flow;
    assert_eq!(t.expire(ms(30_000), 100), 0);
    for i in 0..10 {
        t.get_or_insert_with(key(100 + i), ms(30_000), || u64::from(100 + i)).unwrap();
    }
    assert_eq!(h.status(), flowtable::FlowStatus::Active);
    assert_eq!(t.len(), 10);
    drop(h);
    assert_eq!(t.len(), 9);
}
