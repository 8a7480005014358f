//! The conformance suite: every semantic of the `FlowTable` contract (src/table.rs), generic over the
//! backend and run for each enabled one.

mod common;

use std::collections::HashSet;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex, OnceLock, Weak};
use std::thread;
use std::time::Duration;

use common::*;
use flowtable::{
    ConfigError, ExpiryMode, FlowClass, FlowHandle, FlowKeyV4, FlowStatus, FlowTable, FlowTableBuilder, RemovalCause,
    TableFull, Timestamp,
};

backend_tests!(
    builder_rejects_bad_config,
    get_or_insert_creates_once,
    get_never_returns_a_flow_past_its_deadline,
    touch_extends_and_never_moves_backwards,
    touch_fails_once_the_deadline_passed,
    expire_respects_budget_and_notifies_once,
    unbounded_expire_takes_every_due_flow_in_one_call,
    expire_refiles_touched_flows,
    insert_replaces_and_old_handle_stays_readable,
    remove_returns_the_flow_once,
    stale_timer_never_removes_newer_flow,
    reinsert_replaces_the_timer_too,
    set_timeout_shorter_and_longer,
    never_expiring_timeout,
    long_idle_gaps_and_clock_jumps,
    time_going_backwards_is_harmless,
    table_full_rejects_and_leaves_flows_untouched,
    stats_count_every_event,
    for_each_sees_active_flows_and_allows_reentry,
    listener_may_reenter_the_table,
    handles_outlive_the_table,
    while_held_mode_keeps_held_flows,
    while_held_per_flow_override,
    init_panic_leaves_table_consistent,
    init_may_reenter_expire_clear_and_insert,
    listener_panic_leaves_table_consistent,
    class_and_mode_round_trip,
    get_batch_matches_get,
    get_or_insert_batch_matches_one_call_per_key,
    get_or_insert_batch_when_full_and_when_init_panics,
    concurrent_get_or_insert_one_init_per_key,
    concurrent_get_or_insert_batch_one_init_per_key,
    lookups_race_expiry,
    touch_races_expiry,
    handles_dropped_on_other_threads,
    exited_and_idle_threads_flows_expire,
    clear_removes_everything,
    ipv6_and_mixed_family_keys,
    deadlines_stay_exact_across_weeks_of_time,
);

#[cfg(feature = "rayon")]
mod par {
    use super::*;
    backend_tests!(par_expire_and_for_each_cover_every_shard);
}

fn builder_rejects_bad_config<B: Backend>() {
    let b = || FlowTableBuilder::<FlowKeyV4, u64>::new();
    assert_eq!(build::<B, u64>(b().shards(3)).err(), Some(ConfigError::ShardsNotPowerOfTwo(3)));
    assert_eq!(build::<B, u64>(b().shards(0)).err(), Some(ConfigError::ShardsNotPowerOfTwo(0)));
    assert!(matches!(build::<B, u64>(b().shards(1 << 20)).err(), Some(ConfigError::TooManyShards(_))));
    assert_eq!(build::<B, u64>(b().max_flows(0)).err(), Some(ConfigError::ZeroMaxFlows));
    assert!(matches!(build::<B, u64>(b().idle_timeout(Duration::ZERO)).err(), Some(ConfigError::BadTimeout { .. })));
    for shards in [1, 2, 64] {
        assert!(build::<B, u64>(b().shards(shards)).is_ok());
    }
    assert!(build::<B, u64>(b().idle_timeout(Duration::MAX)).is_ok(), "Duration::MAX means never");
    let e = ConfigError::ShardsNotPowerOfTwo(3).to_string();
    assert!(e.contains("power of two"), "{e}");
}

fn get_or_insert_creates_once<B: Backend>() {
    let (b, log) = logged::<u64>();
    let t = build::<B, u64>(b).unwrap();
    assert!(t.get(&key(1), ms(0)).is_none());
    let r = t.get_or_insert_with(key(1), ms(0), || 7).unwrap();
    assert!(r.created);
    assert_eq!((*r.flow.key(), *r.flow.value(), *r.flow), (key(1), 7, 7));
    assert_eq!(r.flow.status(), FlowStatus::Active);
    let r2 = t.get_or_insert_with(key(1), ms(5), || panic!("init must not run for an existing flow")).unwrap();
    assert!(!r2.created);
    assert!(r2.flow.same_flow(&r.flow));
    assert!(t.get(&key(1), ms(6)).unwrap().same_flow(&r.flow));
    assert_eq!(t.len(), 1);
    assert!(log.lock().unwrap().is_empty());
}

fn get_never_returns_a_flow_past_its_deadline<B: Backend>() {
    let (b, _log) = logged::<u64>();
    let t = build::<B, u64>(b).unwrap();
    let f = t.get_or_insert_with(key(1), ms(1000), || 1).unwrap().flow;
    assert_eq!(f.expires_at(), ms(11_000));
    assert!(t.get(&key(1), ms(10_999)).is_some());
    // No expiry pass has run, yet the flow is not handed out at or after its deadline.
    assert!(t.get(&key(1), ms(11_000)).is_none());
    assert!(t.get(&key(1), ms(50_000)).is_none());
    // A new flow for the key replaces the invisible one, which leaves as expired.
    let g = t.get_or_insert_with(key(1), ms(11_000), || 2).unwrap();
    assert!(g.created);
    assert_eq!(f.status(), FlowStatus::Expired);
    assert_eq!(t.len(), 1);
}

fn touch_extends_and_never_moves_backwards<B: Backend>() {
    let (b, _log) = logged::<u64>();
    let t = build::<B, u64>(b).unwrap();
    let f = t.get_or_insert_with(key(1), ms(0), || 1).unwrap().flow;
    assert!(f.touch(ms(5_000)));
    assert_eq!(f.last_seen(), ms(5_000));
    assert_eq!(f.expires_at(), ms(15_000));
    assert!(f.touch(ms(2_000)), "an earlier touch is accepted but moves nothing");
    assert_eq!(f.expires_at(), ms(15_000));
    assert!(t.get(&key(1), ms(14_999)).is_some());
    assert!(t.get(&key(1), ms(15_000)).is_none());
}

fn touch_fails_once_the_deadline_passed<B: Backend>() {
    let (b, log) = logged::<u64>();
    let t = build::<B, u64>(b).unwrap();
    let f = t.get_or_insert_with(key(1), ms(0), || 1).unwrap().flow;
    assert!(!f.touch(ms(10_000)), "deadline reached: the flow is expired at this time");
    assert_eq!(f.expires_at(), ms(10_000));
    assert_eq!(t.expire(ms(10_000), 10), 1);
    assert!(!f.touch(ms(1_000)), "an expired flow is never revived");
    assert_eq!(f.status(), FlowStatus::Expired);
    assert_eq!(causes(&log), vec![(1, RemovalCause::Expired)]);
}

fn expire_respects_budget_and_notifies_once<B: Backend>() {
    let (b, log) = logged::<u64>();
    let t = build::<B, u64>(b).unwrap();
    let handles: Vec<_> =
        (0..100).map(|i| t.get_or_insert_with(key(i), ms(i as u64), || i as u64).unwrap().flow).collect();
    assert_eq!(t.expire(ms(9_999), 1000), 0);
    assert_eq!(t.expire(ms(20_000), 0), 0);
    assert_eq!(t.expire(ms(20_000), 30), 30);
    assert_eq!(t.len(), 70);
    assert_eq!(t.expire(ms(20_000), 1000), 70);
    assert_eq!(t.expire(ms(20_000), 1000), 0);
    assert!(t.is_empty());
    let got = causes(&log);
    assert_eq!(got, (0..100).map(|i| (i, RemovalCause::Expired)).collect::<Vec<_>>());
    for (i, h) in handles.iter().enumerate() {
        assert_eq!(h.status(), FlowStatus::Expired);
        assert_eq!(**h, i as u64, "an expired flow stays readable through its handle");
    }
}

/// Many distinct deadlines in one shard (the compact backend's radix heap redistributes its
/// timers over many steps): one unbounded call takes every due flow and no other.
fn unbounded_expire_takes_every_due_flow_in_one_call<B: Backend>() {
    let t = build::<B, u64>(FlowTableBuilder::new().shards(1).idle_timeout(secs(10))).unwrap();
    const N: u32 = 50_000;
    for i in 0..N {
        t.get_or_insert_with(key(i), ms(u64::from(i)), || u64::from(i)).unwrap();
    }
    // Flow i is due from 10_000 + i ms.
    assert_eq!(t.expire(ms(10_000 + 24_999), usize::MAX), 25_000);
    assert_eq!(t.len(), 25_000);
    assert!(t.get(&key(24_999), ms(10_000 + 24_999)).is_none());
    assert!(t.get(&key(25_000), ms(10_000 + 24_999)).is_some());
    assert_eq!(t.expire(ms(10_000 + 24_999), usize::MAX), 0);
    assert_eq!(t.expire(ms(10_000 + 49_999), usize::MAX), 25_000);
    assert!(t.is_empty());
}

fn expire_refiles_touched_flows<B: Backend>() {
    let (b, log) = logged::<u64>();
    let t = build::<B, u64>(b).unwrap();
    let f = t.get_or_insert_with(key(1), ms(0), || 1).unwrap().flow;
    assert!(f.touch(ms(8_000)));
    assert_eq!(t.expire(ms(10_000), 10), 0, "the timer moved with the touch");
    assert!(t.get(&key(1), ms(17_999)).is_some());
    assert_eq!(t.expire(ms(17_999), 10), 0);
    assert_eq!(t.expire(ms(18_000), 10), 1);
    assert_eq!(causes(&log), vec![(1, RemovalCause::Expired)]);
}

fn insert_replaces_and_old_handle_stays_readable<B: Backend>() {
    let (b, log) = logged::<u64>();
    let t = build::<B, u64>(b).unwrap();
    let (a, none) = t.insert(key(1), 1, ms(0)).unwrap();
    assert!(none.is_none());
    let (b2, old) = t.insert(key(1), 2, ms(1)).unwrap();
    let old = old.expect("the replaced flow is returned");
    assert!(old.same_flow(&a));
    assert_eq!((a.status(), *a), (FlowStatus::Replaced, 1));
    assert!(t.get(&key(1), ms(2)).unwrap().same_flow(&b2));
    assert!(!a.touch(ms(3)));
    assert_eq!(t.len(), 1);
    assert_eq!(causes(&log), vec![(1, RemovalCause::Replaced)]);
    // Replacing a flow that is past its deadline: it leaves as expired, and is not "replaced".
    let (_, old) = t.insert(key(1), 3, ms(20_000)).unwrap();
    assert!(old.is_none());
    assert_eq!(causes(&log), vec![(1, RemovalCause::Replaced), (2, RemovalCause::Expired)]);
}

fn remove_returns_the_flow_once<B: Backend>() {
    let (b, log) = logged::<u64>();
    let t = build::<B, u64>(b).unwrap();
    let f = t.get_or_insert_with(key(1), ms(0), || 1).unwrap().flow;
    let r = t.remove(&key(1)).expect("removed");
    assert!(r.same_flow(&f));
    assert_eq!(f.status(), FlowStatus::Removed);
    assert!(t.remove(&key(1)).is_none());
    assert!(t.get(&key(1), ms(1)).is_none());
    assert!(t.remove(&key(2)).is_none());
    assert_eq!(t.expire(ms(100_000), 10), 0, "a removed flow's timer does not fire");
    assert_eq!(causes(&log), vec![(1, RemovalCause::Removed)]);
    assert!(t.is_empty());
}

fn stale_timer_never_removes_newer_flow<B: Backend>() {
    let (b, log) = logged::<u64>();
    let t = build::<B, u64>(b).unwrap();
    t.get_or_insert_with(key(1), ms(0), || 1).unwrap();
    t.remove(&key(1)).unwrap();
    let n = t.get_or_insert_with(key(1), ms(5_000), || 2).unwrap().flow;
    n.set_timeout(secs(100));
    // The first flow's deadline (10 s) passes: nothing of the new flow may go.
    assert_eq!(t.expire(ms(20_000), 100), 0);
    assert!(t.get(&key(1), ms(20_000)).unwrap().same_flow(&n));
    assert_eq!(n.status(), FlowStatus::Active);
    assert_eq!(causes(&log), vec![(1, RemovalCause::Removed)]);
    // Same through expiry and re-creation in one pass's window.
    let t2 = build::<B, u64>(logged::<u64>().0).unwrap();
    t2.get_or_insert_with(key(9), ms(0), || 1).unwrap();
    let newer = t2.get_or_insert_with(key(9), ms(10_000), || 2).unwrap();
    assert!(newer.created, "the old flow was invisible at 10 s");
    assert_eq!(t2.expire(ms(15_000), 100), 0, "the old flow left already; its timer is stale");
    assert!(t2.get(&key(9), ms(15_000)).unwrap().same_flow(&newer.flow));
}

fn reinsert_replaces_the_timer_too<B: Backend>() {
    let (b, log) = logged::<u64>();
    let t = build::<B, u64>(b).unwrap();
    for i in 0..50 {
        t.insert(key(1), i, ms(i)).unwrap();
    }
    assert_eq!(t.len(), 1);
    assert_eq!(t.stats().replaced, 49);
    assert_eq!(t.expire(ms(10_048), 100), 0);
    assert_eq!(t.expire(ms(10_049), 100), 1);
    let got = causes(&log);
    assert_eq!(got.len(), 50);
    assert_eq!(got[49], (49, RemovalCause::Expired));
    assert!(t.is_empty());
}

fn set_timeout_shorter_and_longer<B: Backend>() {
    let (b, log) = logged::<u64>();
    let t = build::<B, u64>(b.idle_timeout(secs(100))).unwrap();
    let short = t.get_or_insert_with(key(1), ms(0), || 1).unwrap().flow;
    let long = t.get_or_insert_with(key(2), ms(0), || 2).unwrap().flow;
    short.set_timeout(secs(1));
    long.set_timeout(secs(200));
    assert_eq!(short.timeout(), secs(1));
    assert_eq!(short.expires_at(), ms(1_000));
    assert!(t.get(&key(1), ms(1_000)).is_none());
    assert!(t.get(&key(2), ms(150_000)).is_some());
    // The shorter timeout also makes the flow leave on time, not at its old deadline.
    assert_eq!(t.expire(ms(1_000), 100), 1);
    assert_eq!(t.expire(ms(100_000), 100), 0);
    assert_eq!(t.expire(ms(200_000), 100), 1);
    assert_eq!(causes(&log), vec![(1, RemovalCause::Expired), (2, RemovalCause::Expired)]);
}

fn never_expiring_timeout<B: Backend>() {
    let (b, log) = logged::<u64>();
    let t = build::<B, u64>(b.idle_timeout(Duration::MAX)).unwrap();
    let f = t.get_or_insert_with(key(1), ms(0), || 1).unwrap().flow;
    assert_eq!(f.expires_at(), Timestamp::MAX);
    let ten_years = Timestamp::from_secs(10 * 365 * 86_400);
    assert!(t.get(&key(1), ten_years).is_some());
    assert_eq!(t.expire(ten_years, 100), 0);
    // A flow switched to "never" and back.
    let g = t.get_or_insert_with(key(2), ms(0), || 2).unwrap().flow;
    g.set_timeout(secs(5));
    assert!(t.get(&key(2), ms(5_000)).is_none());
    assert_eq!(t.expire(ms(6_000), 100), 1);
    assert_eq!(t.expire(Timestamp::MAX, usize::MAX), 1, "expire at Timestamp::MAX flushes everything");
    assert!(t.is_empty());
    assert_eq!(causes(&log), vec![(1, RemovalCause::Expired), (2, RemovalCause::Expired)]);
}

fn long_idle_gaps_and_clock_jumps<B: Backend>() {
    // Captures merged from several years jump forwards and backwards by years: a flow idle for
    // longer than its timeout is never visible, whatever the size of the jump.
    let (b, log) = logged::<u64>();
    let t = build::<B, u64>(b.idle_timeout(secs(30))).unwrap();
    let year = 365 * 86_400;
    let t0 = Timestamp::from_secs(1_600_000_000);
    let f = t.get_or_insert_with(key(1), t0, || 1).unwrap().flow;
    for jump_days in [1u64, 20, 25, 49, 50, 100, 400, 4 * 365] {
        let later = Timestamp::from_secs(1_600_000_000 + jump_days * 86_400);
        assert!(t.get(&key(1), later).is_none(), "visible after {jump_days} idle days");
        assert!(!f.touch(later));
    }
    let later = Timestamp::from_secs(1_600_000_000 + 4 * year);
    let g = t.get_or_insert_with(key(1), later, || 2).unwrap();
    assert!(g.created);
    // Back to the earlier time: the new flow is visible (its deadline is later), the old one gone.
    assert!(t.get(&key(1), t0).unwrap().same_flow(&g.flow));
    assert_eq!(t.expire(t0, 100), 0, "a clock going back expires nothing");
    assert_eq!(t.expire(later + secs(30), 100), 1);
    assert_eq!(causes(&log), vec![(1, RemovalCause::Expired), (2, RemovalCause::Expired)]);
}

fn time_going_backwards_is_harmless<B: Backend>() {
    let (b, _log) = logged::<u64>();
    let t = build::<B, u64>(b).unwrap();
    let f = t.get_or_insert_with(key(1), ms(100_000), || 1).unwrap().flow;
    assert!(t.get(&key(1), ms(0)).is_some(), "a lookup before the flow's creation time still finds it");
    assert!(f.touch(ms(50_000)));
    assert_eq!(f.expires_at(), ms(110_000));
    assert_eq!(t.expire(ms(0), 100), 0);
    assert_eq!(t.expire(ms(109_999), 100), 0);
    let g = t.get_or_insert_with(key(2), ms(1), || 2).unwrap().flow;
    assert_eq!(g.expires_at(), ms(10_001));
    assert_eq!(t.len(), 2);
}

fn table_full_rejects_and_leaves_flows_untouched<B: Backend>() {
    let (b, log) = logged::<u64>();
    let t = build::<B, u64>(b.max_flows(10)).unwrap();
    let hs: Vec<_> = (0..10).map(|i| t.get_or_insert_with(key(i), ms(0), || i as u64).unwrap().flow).collect();
    let Err(err) = t.get_or_insert_with(key(10), ms(0), || panic!("no init when full")) else {
        panic!("a full table accepted a new flow")
    };
    assert_eq!(err, TableFull { max_flows: 10 });
    assert!(err.to_string().contains("full"));
    assert!(t.insert(key(11), 11, ms(0)).is_err());
    for (i, h) in hs.iter().enumerate() {
        assert!(t.get(&key(i as u32), ms(1)).unwrap().same_flow(h));
    }
    assert_eq!(t.stats().rejected_full, 2);
    // Replacing an existing flow does not grow the table, so it is allowed when full.
    assert!(t.insert(key(3), 33, ms(1)).unwrap().1.is_some());
    assert_eq!(t.len(), 10);
    t.remove(&key(0)).unwrap();
    assert!(t.get_or_insert_with(key(10), ms(2), || 10).unwrap().created);
    assert_eq!(t.len(), 10);
    assert_eq!(causes(&log), vec![(0, RemovalCause::Removed), (3, RemovalCause::Replaced)]);
}

fn stats_count_every_event<B: Backend>() {
    let (b, _log) = logged::<u64>();
    let t = build::<B, u64>(b).unwrap();
    for i in 0..10 {
        t.get_or_insert_with(key(i), ms(0), || 0).unwrap();
    }
    t.insert(key(0), 1, ms(0)).unwrap(); // replaced: 1, created: 11
    t.remove(&key(1)).unwrap(); // removed: 1
    t.get(&key(2), ms(0)).unwrap().touch(ms(5_000));
    assert_eq!(t.expire(ms(10_000), 100), 8); // expired: 8
    let s = t.stats();
    assert_eq!((s.live, s.created, s.expired, s.removed, s.replaced, s.evicted), (1, 11, 8, 1, 1, 0));
    assert_eq!(s.live, t.len());
}

fn for_each_sees_active_flows_and_allows_reentry<B: Backend>() {
    let (b, _log) = logged::<u64>();
    let t = build::<B, u64>(b).unwrap();
    for i in 0..100 {
        t.get_or_insert_with(key(i), ms(if i < 50 { 0 } else { 5_000 }), || i as u64).unwrap();
    }
    let mut seen = Vec::new();
    t.for_each(ms(12_000), |h| {
        seen.push(**h);
        // Re-entering the table from the callback must not deadlock.
        let _ = t.get(h.key(), ms(12_000));
        t.insert(key(1000 + **h as u32), 0, ms(12_000)).unwrap();
    });
    seen.sort_unstable();
    assert_eq!(seen, (50..100).collect::<Vec<u64>>(), "only flows active at 12 s");
}

fn listener_may_reenter_the_table<B: Backend>() {
    let slot: Arc<OnceLock<Weak<T<B>>>> = Arc::new(OnceLock::new());
    let s2 = Arc::clone(&slot);
    let reentered = Arc::new(AtomicUsize::new(0));
    let r2 = Arc::clone(&reentered);
    let t: Arc<T<B>> = Arc::new(
        build::<B, u64>(FlowTableBuilder::new().shards(4).idle_timeout(secs(10)).listener(move |ev| {
            if let Some(t) = s2.get().and_then(Weak::upgrade) {
                let k = *ev.key;
                assert!(t.get(&k, ms(0)).is_none(), "the leaving flow is no longer findable");
                if ev.cause == RemovalCause::Expired {
                    // Re-create the key from inside the listener (a re-opened NAT mapping).
                    t.insert(k, 1000 + *ev.value, ms(20_000)).unwrap();
                }
                let _ = t.len();
                r2.fetch_add(1, Ordering::SeqCst);
            }
        }))
        .unwrap(),
    );
    slot.set(Arc::downgrade(&t)).ok();
    for i in 0..20 {
        t.get_or_insert_with(key(i), ms(0), || i as u64).unwrap();
    }
    assert_eq!(t.expire(ms(10_000), 100), 20);
    assert_eq!(reentered.load(Ordering::SeqCst), 20);
    assert_eq!(t.len(), 20);
    assert_eq!(*t.get(&key(3), ms(20_000)).unwrap(), 1003);
    t.remove(&key(3)).unwrap();
    assert_eq!(reentered.load(Ordering::SeqCst), 21);
}

fn handles_outlive_the_table<B: Backend>() {
    let (b, log) = logged::<u64>();
    let t = build::<B, u64>(b).unwrap();
    let a = t.get_or_insert_with(key(1), ms(0), || 1).unwrap().flow;
    let e = t.get_or_insert_with(key(2), ms(0), || 2).unwrap().flow;
    assert_eq!(t.expire(ms(10_000), 1), 1);
    let clone = a.clone();
    drop(t);
    // Dropping the table removes what was left, exactly once.
    assert_eq!(causes(&log).len(), 2);
    for h in [&a, &clone, &e] {
        assert!(matches!(h.status(), FlowStatus::Removed | FlowStatus::Expired));
        assert!(!h.touch(ms(1)));
        h.set_timeout(secs(1));
    }
    assert_eq!((*a.key(), *a.value()), (key(1), 1));
    assert_eq!(*e, 2);
    // Dropped on another thread after the table is gone.
    thread::spawn(move || drop((a, clone, e))).join().unwrap();
}

fn while_held_mode_keeps_held_flows<B: Backend>() {
    let (b, log) = logged::<u64>();
    let t = build::<B, u64>(b.expiry_mode(ExpiryMode::WhileHeld)).unwrap();
    let held = t.get_or_insert_with(key(1), ms(0), || 1).unwrap().flow;
    assert_eq!(held.expiry_mode(), ExpiryMode::WhileHeld);
    drop(t.get_or_insert_with(key(2), ms(0), || 2).unwrap()); // nobody holds flow 2
                                                              // Past the deadline: the held flow stays findable, the unheld one leaves at the pass.
    assert!(t.get(&key(1), ms(30_000)).unwrap().same_flow(&held));
    assert_eq!(t.expire(ms(30_000), 100), 1);
    assert_eq!(causes(&log), vec![(2, RemovalCause::Expired)]);
    assert!(t.get(&key(2), ms(30_000)).is_none());
    let again = t.get(&key(1), ms(40_000)).expect("still held, still findable");
    assert_eq!(t.len(), 1);
    assert_eq!(held.status(), FlowStatus::Active);
    drop(again);
    drop(held);
    // The last handle went: the flow left, with cause Expired, exactly once.
    assert_eq!(causes(&log), vec![(1, RemovalCause::Expired), (2, RemovalCause::Expired)]);
    assert!(t.get(&key(1), ms(40_000)).is_none());
    assert!(t.is_empty());
    assert_eq!(t.stats().expired, 2);
    assert!(t.get_or_insert_with(key(1), ms(40_000), || 3).unwrap().created);
}

fn while_held_per_flow_override<B: Backend>() {
    let (b, log) = logged::<u64>();
    let t = build::<B, u64>(b).unwrap();
    let normal = t.get_or_insert_with(key(1), ms(0), || 1).unwrap().flow;
    let sticky = t.get_or_insert_with(key(2), ms(0), || 2).unwrap().flow;
    sticky.set_expiry_mode(ExpiryMode::WhileHeld);
    assert_eq!(t.expire(ms(10_000), 100), 1);
    assert_eq!(normal.status(), FlowStatus::Expired);
    assert!(t.get(&key(1), ms(10_000)).is_none());
    assert!(t.get(&key(2), ms(10_000)).is_some());
    assert!(sticky.touch(ms(12_000)), "a held WhileHeld flow can still be touched");
    drop(sticky);
    assert_eq!(causes(&log), vec![(1, RemovalCause::Expired), (2, RemovalCause::Expired)]);
    assert!(t.is_empty());
}

fn init_panic_leaves_table_consistent<B: Backend>() {
    let (b, log) = logged::<u64>();
    let t = build::<B, u64>(b.max_flows(1)).unwrap();
    let r = catch_unwind(AssertUnwindSafe(|| t.get_or_insert_with(key(1), ms(0), || panic!("init failed"))));
    assert!(r.is_err());
    assert!(t.is_empty());
    assert!(t.get(&key(1), ms(0)).is_none());
    // The reserved room was given back (max_flows is 1) and the key is free for another creator.
    let f = t.get_or_insert_with(key(1), ms(0), || 5).unwrap();
    assert!(f.created);
    assert_eq!(t.len(), 1);
    assert_eq!(t.stats().created, 1);
    assert!(log.lock().unwrap().is_empty());
    // Waiters blocked on a panicking creator wake up and one of them creates the flow.
    let t = build::<B, u64>(FlowTableBuilder::new().shards(4)).unwrap();
    let started = Barrier::new(2);
    let inits = AtomicUsize::new(0);
    thread::scope(|s| {
        s.spawn(|| {
            let _ = catch_unwind(AssertUnwindSafe(|| {
                t.get_or_insert_with(key(7), ms(0), || {
                    started.wait();
                    thread::sleep(Duration::from_millis(50));
                    panic!("creator dies");
                })
            }));
        });
        s.spawn(|| {
            started.wait();
            let r = t.get_or_insert_with(key(7), ms(0), || {
                inits.fetch_add(1, Ordering::SeqCst);
                9
            });
            assert_eq!(*r.unwrap().flow, 9);
        });
    });
    assert_eq!(inits.load(Ordering::SeqCst), 1);
    assert_eq!(t.len(), 1);
}

/// `init` runs with no lock held, so it may call back into the table. An expiry pass or a `clear`
/// that runs while a flow is being created leaves the creation alone (on the compact backend its
/// timer is already filed and is popped or drained there: design/concurrency.md, C13). The flow
/// then stands, is invisible from its deadline on, and leaves exactly once, as expired, at the
/// first pass after its deadline; an `insert` of the key from `init` wins, and the creation hands
/// out the inserted flow.
fn init_may_reenter_expire_clear_and_insert<B: Backend>() {
    let (b, log) = logged::<u64>();
    let t = build::<B, u64>(b).unwrap();
    // Created at 0 s, due at 10 s; inside `init`, passes at 20 s and at the end of time.
    let f = t
        .get_or_insert_with(key(1), ms(0), || {
            assert_eq!(t.expire(ms(20_000), 100), 0, "a creation in flight is not a flow yet");
            assert_eq!(t.expire(Timestamp::MAX, usize::MAX), 0);
            assert_eq!(t.clear(), 0);
            assert!(t.get(&key(1), ms(0)).is_none(), "a pending creation is never handed out");
            7
        })
        .unwrap();
    assert!(f.created);
    assert_eq!((*f.flow, t.len()), (7, 1));
    assert!(t.get(&key(1), ms(9_999)).is_some());
    assert!(t.get(&key(1), ms(20_000)).is_none(), "a flow past its deadline is visible");
    assert_eq!(t.expire(ms(20_000), 100), 1, "the first pass after the creation expires it");
    assert_eq!(f.flow.status(), FlowStatus::Expired);
    assert!(t.is_empty());
    assert_eq!(t.expire(Timestamp::MAX, usize::MAX), 0, "it left once");

    // A `clear` inside `init` keeps the creation's timer: the flow expires at its own deadline.
    let g = t
        .get_or_insert_with(key(2), ms(30_000), || {
            assert_eq!(t.clear(), 0);
            8
        })
        .unwrap();
    assert!(g.created);
    assert_eq!(t.expire(ms(39_999), 100), 0);
    assert_eq!(t.expire(ms(40_000), 100), 1);
    assert_eq!(g.flow.status(), FlowStatus::Expired);

    // An `insert` of the same key from `init` takes the key: its flow is the one handed out.
    let h = t
        .get_or_insert_with(key(3), ms(50_000), || {
            t.insert(key(3), 30, ms(50_000)).unwrap();
            31
        })
        .unwrap();
    assert!(!h.created, "the inserted flow was there first");
    assert_eq!((*h.flow, t.len()), (30, 1));
    assert_eq!(t.expire(ms(60_000), 100), 1);
    assert!(t.is_empty());
    assert_eq!(t.stats().created, 3, "created: key 1, key 2 and the insert of key 3");
    assert_eq!(causes(&log), vec![(7, RemovalCause::Expired), (8, RemovalCause::Expired), (30, RemovalCause::Expired)]);
}

fn listener_panic_leaves_table_consistent<B: Backend>() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c2 = Arc::clone(&calls);
    let t = build::<B, u64>(FlowTableBuilder::new().shards(4).idle_timeout(secs(10)).listener(move |ev| {
        c2.fetch_add(1, Ordering::SeqCst);
        if *ev.value == 0 {
            panic!("listener bug");
        }
    }))
    .unwrap();
    for i in 0..3 {
        t.get_or_insert_with(key(i), ms(0), || i as u64).unwrap();
    }
    let r = catch_unwind(AssertUnwindSafe(|| t.expire(ms(10_000), 100)));
    assert!(r.is_err(), "the listener's panic reaches the caller");
    assert_eq!(calls.load(Ordering::SeqCst), 3, "every flow that left was still notified");
    assert!(t.is_empty());
    assert_eq!(t.stats().expired, 3);
    assert_eq!(t.expire(ms(20_000), 100), 0);
    // The table still works, and locks were released.
    t.get_or_insert_with(key(0), ms(20_000), || 0).unwrap();
    assert!(catch_unwind(AssertUnwindSafe(|| t.remove(&key(0)))).is_err());
    assert!(t.is_empty());
    assert!(t.get_or_insert_with(key(1), ms(20_000), || 1).unwrap().created);
}

fn class_and_mode_round_trip<B: Backend>() {
    let t = build::<B, u64>(logged::<u64>().0).unwrap();
    let f = t.get_or_insert_with(key(1), ms(0), || 1).unwrap().flow;
    assert_eq!(f.class(), FlowClass::Embryonic);
    for c in [FlowClass::Established, FlowClass::Closing, FlowClass::Embryonic] {
        f.set_class(c);
        assert_eq!(f.class(), c);
        assert_eq!(f.expiry_mode(), ExpiryMode::Remove, "class bits do not disturb the mode");
    }
    f.set_expiry_mode(ExpiryMode::WhileHeld);
    f.set_class(FlowClass::Established);
    assert_eq!((f.expiry_mode(), f.class()), (ExpiryMode::WhileHeld, FlowClass::Established));
}

fn get_batch_matches_get<B: Backend>() {
    let t = build::<B, u64>(logged::<u64>().0).unwrap();
    for i in (0..200).step_by(2) {
        t.get_or_insert_with(key(i), ms(i as u64 * 100), || i as u64).unwrap();
    }
    let keys: Vec<_> = (0..200).map(key).collect();
    let mut out = vec![None; 3];
    let now = ms(15_000);
    t.get_batch(&keys, now, &mut out);
    assert_eq!(out.len(), keys.len());
    for (k, got) in keys.iter().zip(&out) {
        let want = t.get(k, now);
        assert_eq!(got.as_ref().map(|h| **h), want.as_ref().map(|h| **h), "{k:?}");
    }
    assert!(out.iter().flatten().count() > 10);
    t.get_batch(&[], now, &mut out);
    assert!(out.is_empty());
}

/// `get_or_insert_batch` gives, key by key, what `get_or_insert_with` would: existing flows found,
/// expired ones replaced, missing ones created with `init(i)`, a repeated key created once. Batches
/// longer than a backend's internal step (16 keys in the compact backend) included.
fn get_or_insert_batch_matches_one_call_per_key<B: Backend>() {
    let (b, log) = logged::<u64>();
    let t = build::<B, u64>(b).unwrap();
    // Even keys exist; those below 20 were created at 0 and are past their 10 s timeout at 15 s.
    for i in (0..100).step_by(2) {
        let at = if i < 20 { 0 } else { 10_000 };
        t.get_or_insert_with(key(i), ms(at), || 1_000 + u64::from(i)).unwrap();
    }
    let now = ms(15_000);
    let mut keys: Vec<_> = (0..100).map(key).collect();
    keys.extend([key(1), key(3), key(40)]); // repeats: created earlier in this batch / existing
    let mut out = Vec::new();
    let mut inits = Vec::new();
    t.get_or_insert_batch(
        &keys,
        now,
        |i| {
            inits.push(i);
            i as u64
        },
        &mut out,
    );
    assert_eq!(out.len(), keys.len());
    let mut want_inits = Vec::new();
    for (i, (k, r)) in keys.iter().zip(&out).enumerate() {
        let r = r.as_ref().expect("not full");
        let n = i as u32;
        assert_eq!(r.flow.key(), k);
        let (created, value) = match i {
            100 => (false, 1), // key(1), created at index 1
            101 => (false, 3), // key(3), created at index 3
            102 => (false, 1_040),
            _ if n % 2 == 1 || n < 20 => (true, u64::from(n)),
            _ => (false, 1_000 + u64::from(n)),
        };
        assert_eq!((r.created, *r.flow), (created, value), "key index {i}");
        if created {
            want_inits.push(i);
        }
        assert!(t.get(k, now).unwrap().same_flow(&r.flow), "key index {i}: the table holds what the batch returned");
    }
    assert_eq!(inits, want_inits, "init ran once per created flow, in key order, with the key's index");
    assert_eq!(t.len(), 100);
    // The ten expired flows left as expired, replaced by the batch.
    let expired = causes(&log).iter().filter(|(_, c)| *c == RemovalCause::Expired).count();
    assert_eq!(expired, 10);
    // `out` is cleared first; an empty batch gives no results.
    t.get_or_insert_batch(&[], now, |_| unreachable!("no key"), &mut out);
    assert!(out.is_empty());
}

/// At the maximum a batch refuses the new keys and still finds the existing ones after them; a
/// panicking `init` leaves the results before it, no flow for its key, and a consistent table.
fn get_or_insert_batch_when_full_and_when_init_panics<B: Backend>() {
    let t = build::<B, u64>(logged::<u64>().0.max_flows(5)).unwrap();
    for i in 0..4 {
        t.get_or_insert_with(key(i), ms(0), || u64::from(i)).unwrap();
    }
    let keys = [key(10), key(11), key(0), key(12), key(3)];
    let mut out = Vec::new();
    t.get_or_insert_batch(&keys, ms(1), |i| 100 + i as u64, &mut out);
    assert!(out[0].as_ref().unwrap().created, "the fifth flow fits");
    assert_eq!(out[1].as_ref().err(), Some(&TableFull { max_flows: 5 }));
    assert_eq!(*out[2].as_ref().unwrap().flow, 0, "existing flows are found after a refusal");
    assert_eq!(out[3].as_ref().err(), Some(&TableFull { max_flows: 5 }));
    assert!(!out[4].as_ref().unwrap().created);
    assert_eq!(t.len(), 5);

    let t = build::<B, u64>(logged::<u64>().0).unwrap();
    let keys: Vec<_> = (0..40).map(key).collect();
    let mut out = Vec::new();
    let caught = catch_unwind(AssertUnwindSafe(|| {
        t.get_or_insert_batch(
            &keys,
            ms(0),
            |i| {
                assert_ne!(i, 25, "init panics on key 25");
                i as u64
            },
            &mut out,
        )
    }));
    assert!(caught.is_err());
    assert_eq!(out.len(), 25, "results of the keys before the panic are kept");
    assert!(out.iter().all(|r| r.as_ref().is_ok_and(|g| g.created)));
    assert!(t.get(&key(25), ms(0)).is_none(), "no flow for the key whose init panicked");
    assert!(t.get(&key(26), ms(0)).is_none(), "keys after the panic were not looked at");
    assert_eq!(t.len(), 25);
    // The table goes on working for the same keys.
    t.get_or_insert_batch(&keys, ms(1), |i| i as u64, &mut out);
    assert_eq!(out.iter().filter(|r| r.as_ref().unwrap().created).count(), 15);
    assert_eq!(t.len(), 40);
}

/// Threads creating overlapping batches (each a rotation of the same keys, with repeats) agree on
/// one flow per key, and `init` runs once per key.
fn concurrent_get_or_insert_batch_one_init_per_key<B: Backend>() {
    let t = build::<B, u64>(FlowTableBuilder::new().shards(2)).unwrap();
    let nkeys = 40usize;
    let inits: Vec<AtomicUsize> = (0..nkeys).map(|_| AtomicUsize::new(0)).collect();
    let threads = 4;
    let barrier = Barrier::new(threads);
    let seen: Mutex<Vec<HashSet<u64>>> = Mutex::new(vec![HashSet::new(); nkeys]);
    thread::scope(|s| {
        for th in 0..threads {
            let (t, inits, barrier, seen) = (&t, &inits, &barrier, &seen);
            s.spawn(move || {
                // Each thread's batch: all keys from its own starting point, then a few again.
                let idx: Vec<usize> = (0..nkeys + 5).map(|j| (j + th * 7) % nkeys).collect();
                let keys: Vec<_> = idx.iter().map(|&k| key(k as u32)).collect();
                let mut out = Vec::new();
                barrier.wait();
                for _round in 0..50 {
                    t.get_or_insert_batch(
                        &keys,
                        ms(0),
                        |i| {
                            inits[idx[i]].fetch_add(1, Ordering::SeqCst);
                            thread::yield_now();
                            idx[i] as u64 * 1000 + th as u64
                        },
                        &mut out,
                    );
                    let mut seen = seen.lock().unwrap();
                    for (&k, r) in idx.iter().zip(&out) {
                        seen[k].insert(*r.as_ref().unwrap().flow);
                    }
                }
            });
        }
    });
    for (k, n) in inits.iter().enumerate() {
        assert_eq!(n.load(Ordering::SeqCst), 1, "key {k}: init ran more than once");
    }
    for (k, vals) in seen.lock().unwrap().iter().enumerate() {
        assert_eq!(vals.len(), 1, "key {k}: callers saw different flows {vals:?}");
    }
    assert_eq!(t.len(), nkeys);
}

fn concurrent_get_or_insert_one_init_per_key<B: Backend>() {
    let t = build::<B, u64>(FlowTableBuilder::new().shards(2)).unwrap();
    let inits: Vec<AtomicUsize> = (0..8).map(|_| AtomicUsize::new(0)).collect();
    let created = AtomicUsize::new(0);
    let threads = 8;
    let barrier = Barrier::new(threads);
    let seen: Mutex<Vec<Vec<u64>>> = Mutex::new(vec![Vec::new(); 8]);
    thread::scope(|s| {
        for th in 0..threads {
            let (t, inits, created, barrier, seen) = (&t, &inits, &created, &barrier, &seen);
            s.spawn(move || {
                barrier.wait();
                for round in 0..2000u64 {
                    let k = ((round + th as u64) % 8) as usize;
                    let r = t
                        .get_or_insert_with(key(k as u32), ms(0), || {
                            inits[k].fetch_add(1, Ordering::SeqCst);
                            thread::yield_now();
                            k as u64 * 1000 + th as u64
                        })
                        .unwrap();
                    created.fetch_add(usize::from(r.created), Ordering::SeqCst);
                    if round % 97 == 0 {
                        seen.lock().unwrap()[k].push(*r.flow);
                    }
                }
            });
        }
    });
    for (k, n) in inits.iter().enumerate() {
        assert_eq!(n.load(Ordering::SeqCst), 1, "key {k}: init ran more than once");
    }
    assert_eq!(created.load(Ordering::SeqCst), 8);
    for (k, vals) in seen.lock().unwrap().iter().enumerate() {
        let distinct: HashSet<_> = vals.iter().collect();
        assert!(distinct.len() <= 1, "key {k}: callers saw different flows {distinct:?}");
    }
    assert_eq!(t.len(), 8);
}

fn lookups_race_expiry<B: Backend>() {
    let left = Arc::new(AtomicUsize::new(0));
    let l2 = Arc::clone(&left);
    let t = build::<B, AtomicU64>(FlowTableBuilder::new().shards(4).idle_timeout(Duration::from_millis(50)).listener(
        move |ev: flowtable::RemovalEvent<'_, FlowKeyV4, AtomicU64>| {
            assert_ne!(ev.value.load(Ordering::SeqCst), u64::MAX, "notified twice");
            ev.value.store(u64::MAX, Ordering::SeqCst);
            l2.fetch_add(1, Ordering::SeqCst);
        },
    ))
    .unwrap();
    let clock = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let keys = 64u32;
    thread::scope(|s| {
        for th in 0..2u32 {
            let (t, clock, stop) = (&t, &clock, &stop);
            s.spawn(move || {
                let mut i = th;
                while !stop.load(Ordering::SeqCst) {
                    let now = ms(clock.load(Ordering::SeqCst));
                    let k = key(i % keys);
                    if let Some(h) = t.get(&k, now) {
                        assert_eq!(*h.key(), k);
                        assert!(h.expires_at() > now, "handed out a flow past its deadline");
                        let _ = h.load(Ordering::SeqCst);
                    } else if let Ok(r) = t.get_or_insert_with(k, now, || AtomicU64::new(u64::from(i))) {
                        r.flow.touch(now);
                    }
                    i = i.wrapping_add(7);
                }
            });
        }
        let (t, clock, stop) = (&t, &clock, &stop);
        s.spawn(move || {
            for step in 1..=400u64 {
                clock.store(step * 5, Ordering::SeqCst);
                t.expire(ms(step * 5), 16);
                thread::yield_now();
            }
            stop.store(true, Ordering::SeqCst);
        });
    });
    let created = t.stats().created as usize;
    t.expire(Timestamp::MAX, usize::MAX);
    assert!(t.is_empty());
    assert_eq!(left.load(Ordering::SeqCst), created, "every created flow left exactly once");
}

fn touch_races_expiry<B: Backend>() {
    for round in 0..200u64 {
        let t = build::<B, u64>(FlowTableBuilder::new().shards(1).idle_timeout(Duration::from_millis(10))).unwrap();
        let f = t.get_or_insert_with(key(1), ms(0), || 1).unwrap().flow;
        let last_ok = AtomicU64::new(0);
        let expire_at = 10 + round % 7;
        thread::scope(|s| {
            let (f, last_ok) = (&f, &last_ok);
            s.spawn(move || {
                for now in 1..=20u64 {
                    if f.touch(ms(now)) {
                        last_ok.fetch_max(now, Ordering::SeqCst);
                    } else {
                        break;
                    }
                }
            });
            let t = &t;
            s.spawn(move || t.expire(ms(expire_at), 10));
        });
        let last = last_ok.load(Ordering::SeqCst);
        if f.status() == FlowStatus::Expired {
            // Expired: every applied touch must have left the deadline at or before the pass.
            assert!(last + 10 <= expire_at, "round {round}: touch at {last} applied yet expired at {expire_at}");
        } else {
            assert_eq!(f.status(), FlowStatus::Active);
            assert!(last + 10 > expire_at, "round {round}: neither expired nor extended");
        }
    }
}

fn handles_dropped_on_other_threads<B: Backend>() {
    let left = Arc::new(Mutex::new(Vec::new()));
    let l2 = Arc::clone(&left);
    let t = build::<B, u64>(
        FlowTableBuilder::new().shards(4).idle_timeout(secs(1)).listener(move |ev| l2.lock().unwrap().push(*ev.value)),
    )
    .unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<Vec<_>>();
    thread::scope(|s| {
        s.spawn(move || {
            for batch in rx {
                drop(batch);
            }
        });
        for chunk in 0..20u64 {
            let hs: Vec<_> = (0..50u64)
                .map(|i| {
                    let id = chunk * 50 + i;
                    t.get_or_insert_with(key(id as u32), ms(chunk * 100), || id).unwrap().flow
                })
                .collect();
            if chunk % 3 == 0 {
                t.remove(&key((chunk * 50) as u32));
            }
            tx.send(hs).unwrap();
            t.expire(ms(chunk * 100), 20);
        }
        drop(tx);
    });
    t.expire(Timestamp::MAX, usize::MAX);
    let mut ids = left.lock().unwrap().clone();
    ids.sort_unstable();
    assert_eq!(ids, (0..1000).collect::<Vec<u64>>(), "each flow left exactly once");
    assert!(t.is_empty());
}

fn exited_and_idle_threads_flows_expire<B: Backend>() {
    let (b, log) = logged::<u64>();
    let t = build::<B, u64>(b).unwrap();
    // A worker that creates flows and exits.
    thread::scope(|s| {
        s.spawn(|| {
            for i in 0..100 {
                t.get_or_insert_with(key(i), ms(0), || i as u64).unwrap();
            }
        });
    });
    // A worker that creates flows and then sits idle while others expire.
    let idle = Barrier::new(2);
    let done = Barrier::new(2);
    thread::scope(|s| {
        s.spawn(|| {
            for i in 100..200 {
                t.get_or_insert_with(key(i), ms(0), || i as u64).unwrap();
            }
            idle.wait();
            done.wait();
        });
        idle.wait();
        let mut n = 0;
        for _ in 0..10 {
            n += t.expire(ms(10_000), 1000);
        }
        assert_eq!(n, 200, "an exited or idle worker's flows expire from any thread");
        done.wait();
    });
    assert_eq!(causes(&log).len(), 200);
    assert!(t.is_empty());
}

fn clear_removes_everything<B: Backend>() {
    let (b, log) = logged::<u64>();
    let t = build::<B, u64>(b).unwrap();
    let hs: Vec<_> = (0..100).map(|i| t.get_or_insert_with(key(i), ms(0), || i as u64).unwrap().flow).collect();
    assert_eq!(t.clear(), 100);
    assert!(t.is_empty());
    assert!(hs.iter().all(|h| h.status() == FlowStatus::Removed));
    assert_eq!(t.expire(Timestamp::MAX, usize::MAX), 0);
    assert_eq!(causes(&log), (0..100).map(|i| (i, RemovalCause::Removed)).collect::<Vec<_>>());
    assert_eq!(t.clear(), 0);
}

fn ipv6_and_mixed_family_keys<B: Backend>() {
    use flowtable::{proto, FlowKey, Zone};
    use std::net::IpAddr;
    let t = FlowTableBuilder::<FlowKey, u64>::new()
        .shards(4)
        .idle_timeout(secs(10))
        .build::<B::Table<FlowKey, u64>>()
        .unwrap();
    let a: IpAddr = "2001:db8::1".parse().unwrap();
    let b: IpAddr = "2001:db8::2".parse().unwrap();
    let c: IpAddr = "192.0.2.1".parse().unwrap();
    let d: IpAddr = "192.0.2.2".parse().unwrap();
    let (k6, _) = FlowKey::new(proto::TCP, a, 1, b, 2, Zone::DEFAULT).unwrap();
    let (k6r, _) = FlowKey::new(proto::TCP, b, 2, a, 1, Zone::DEFAULT).unwrap();
    let (k4, _) = FlowKey::new(proto::TCP, c, 1, d, 2, Zone::DEFAULT).unwrap();
    let (k4z, _) = FlowKey::new(proto::TCP, c, 1, d, 2, Zone::new(7).unwrap()).unwrap();
    assert!(t.get_or_insert_with(k6, ms(0), || 6).unwrap().created);
    assert!(!t.get_or_insert_with(k6r, ms(0), || 0).unwrap().created, "both directions are one flow");
    assert!(t.get_or_insert_with(k4, ms(0), || 4).unwrap().created);
    assert!(t.get_or_insert_with(k4z, ms(0), || 5).unwrap().created, "another zone is another flow");
    assert_eq!(t.len(), 3);
    assert_eq!(*t.get(&k6r, ms(1)).unwrap(), 6);
    assert_eq!(t.expire(ms(10_000), 10), 3);
}

#[cfg(feature = "rayon")]
fn par_expire_and_for_each_cover_every_shard<B: Backend>() {
    let (b, log) = logged::<u64>();
    let t = build::<B, u64>(b.shards(16)).unwrap();
    // Flows created from several threads land in several timer queues / shards.
    thread::scope(|s| {
        for th in 0..4u32 {
            let t = &t;
            s.spawn(move || {
                for i in 0..250u32 {
                    let id = th * 250 + i;
                    t.get_or_insert_with(key(id), ms(u64::from(id % 2) * 5_000), || u64::from(id)).unwrap();
                }
            });
        }
    });
    let seen = AtomicUsize::new(0);
    t.par_for_each(ms(12_000), |h| {
        assert!(**h % 2 == 1, "only flows active at 12 s");
        seen.fetch_add(1, Ordering::Relaxed);
    });
    assert_eq!(seen.load(Ordering::Relaxed), 500);
    assert_eq!(t.par_expire(ms(12_000), 100), 100, "the budget bounds a parallel pass too");
    assert_eq!(t.par_expire(ms(12_000), usize::MAX), 400);
    assert_eq!(t.par_expire(ms(20_000), usize::MAX), 500);
    assert!(t.is_empty());
    assert_eq!(causes(&log).len(), 1000);
}

/// Time runs for 120 days in steps of 7 to 31 hours while flows with timeouts from seconds to five
/// days (conntrack's established) come, get touched and go: every expiry pass expires exactly the
/// flows whose deadline passed, and every other flow stays visible. This crosses the coarse-time
/// windows of backends that keep deadlines relative to an epoch (the compact backend's heap keys are
/// 32-bit milliseconds from a per-shard epoch that moves every ~24.8 days).
fn deadlines_stay_exact_across_weeks_of_time<B: Backend>() {
    let (b, log) = logged::<u64>();
    let t = build::<B, u64>(b).unwrap();
    let hour = 3_600_000u64;
    let timeouts = [5_000u64, 3_600_000, 86_400_000, 432_000_000];
    let mut live: Vec<(u32, u64)> = Vec::new(); // (key, deadline ms)
    let mut handles = std::collections::HashMap::new();
    let mut now = 1_000_000_000u64;
    let end = now + 120 * 24 * hour;
    let mut next = 0u32;
    let mut step = 0u64;
    while now < end {
        for j in 0..4u32 {
            let k = next;
            next += 1;
            let to = timeouts[(k % 4) as usize];
            let f = t.get_or_insert_with(key(k), ms(now), || u64::from(k)).unwrap().flow;
            f.set_timeout(Duration::from_millis(to));
            live.push((k, now + to));
            if j == 3 && k % 8 == 3 {
                handles.insert(k, f); // five-day flows, half of them kept busy
            }
        }
        // Touch the long-lived flows that are still visible.
        for (k, dl) in live.iter_mut() {
            if let Some(h) = handles.get(k) {
                if *dl > now && h.touch(ms(now)) {
                    *dl = now + h.timeout().as_millis() as u64;
                }
            }
        }
        let due = live.iter().filter(|(_, dl)| *dl <= now).count();
        assert_eq!(t.expire(ms(now), usize::MAX), due, "at {now} ms");
        live.retain(|(_, dl)| *dl > now);
        for (k, dl) in &live {
            let f = t.get(&key(*k), ms(now)).unwrap_or_else(|| panic!("flow {k} (deadline {dl}) lost at {now}"));
            assert_eq!(f.expires_at(), ms(*dl));
        }
        assert_eq!(t.len(), live.len());
        step += 1;
        now += (7 + step % 25) * hour;
    }
    assert_eq!(log.lock().unwrap().len() as u32 + live.len() as u32, next);
    assert!(handles.keys().filter(|k| live.iter().any(|(l, _)| l == *k)).count() > 20, "busy flows were kept alive");
}
