//! The models, generic over the backend. Each uses at most 3 threads (main included), one key and a
//! handful of operations. Invariants cite `design/concurrency.md`.

use flowtable::{CapacityPolicy, ExpiryMode, FlowHandle, FlowStatus, GetOrInsert, RemovalCause, Timestamp};
use loom::sync::Arc;
use loom::thread;

use crate::{Ctx, Table, T0, T_LATE, T_MID};

/// The key every model uses.
const K: u64 = 7;
/// A second key, for the capacity models.
const K2: u64 = 8;

fn unwrap_table<T>(table: Arc<T>) -> T {
    Arc::try_unwrap(table).unwrap_or_else(|_| panic!("table still shared after the joins"))
}

/// The end state of the models in which a new flow takes a key over: the new flow is active, `get`
/// finds it under `key` after every old deadline, and it is the table's only flow.
fn assert_new_flow_stands<T: Table>(table: &T, key: u64, new: &T::Handle) {
    assert_eq!(new.status(), FlowStatus::Active, "the new flow left");
    let seen = table.get(&key, T_LATE).expect("the new flow must be visible");
    assert!(seen.same_flow(new), "the map lost the new flow");
    assert_eq!(table.len(), 1);
}

/// Two threads `get_or_insert_with` one absent key: one flow, one `init`, both get it (R6).
pub fn get_or_insert_one_key<T: Table>() {
    let ctx = Ctx::new();
    let table = Arc::new(ctx.table::<T>(ExpiryMode::Remove));
    let (t2, c2) = (Arc::clone(&table), ctx.clone());
    let other = thread::spawn(move || t2.get_or_insert_with(K, T0, || c2.val(2)).expect("not full"));
    let mine = table.get_or_insert_with(K, T0, || ctx.val(1)).expect("not full");
    let theirs = other.join().unwrap();
    assert_eq!(ctx.made(), 1, "init ran more than once for one key");
    assert!(mine.flow.same_flow(&theirs.flow), "two flows for one key");
    assert_eq!(usize::from(mine.created) + usize::from(theirs.created), 1, "created must be true for exactly one");
    assert_eq!(table.len(), 1);
    let seen = table.get(&K, T0).expect("the created flow is visible");
    assert!(seen.same_flow(&mine.flow));
    drop((mine, theirs, seen));
    ctx.finish(unwrap_table(table));
}

/// `get` races the expiry of a flow that only the timer holds: `get` returns the live flow or
/// nothing, the value stays readable while the handle lives and is dropped exactly once, when the
/// last strong reference goes (R1, R3; the upgrade-versus-last-drop race of the weak map entry).
pub fn get_vs_expire<T: Table>() {
    let ctx = Ctx::new();
    let table = Arc::new(ctx.table::<T>(ExpiryMode::Remove));
    drop(table.get_or_insert_with(K, T0, || ctx.val(1)).expect("not full"));
    let (t2, c2) = (Arc::clone(&table), ctx.clone());
    let getter = thread::spawn(move || {
        let got = t2.get(&K, T_MID);
        if let Some(h) = &got {
            assert_eq!((h.id, *h.key()), (1, K), "get returned another flow");
            assert_eq!(c2.drops(), 0, "a handle's value was dropped");
        }
        got
    });
    let n = table.expire(T_LATE, 16);
    let got = getter.join().unwrap();
    assert_eq!(n, 1, "the due flow must expire, held or not");
    assert_eq!(ctx.events(), vec![(1, RemovalCause::Expired)]);
    assert_eq!(ctx.drops(), usize::from(got.is_none()), "the value must live exactly as long as a strong reference");
    if let Some(h) = got {
        assert_eq!(h.status(), FlowStatus::Expired);
        drop(h);
    }
    assert_eq!(ctx.drops(), 1, "the last handle's drop frees the value");
    assert!(table.get(&K, T_MID).is_none(), "an expired flow is visible again");
    ctx.finish(unwrap_table(table));
}

/// `WhileHeld`: a released flow's last handle is dropped (its exit runs in `Drop`) while another
/// thread's `get_or_insert_with` looks the key up: it finds the old flow (still held), or reaps the
/// dead entry and creates a new flow, which the old flow's exit must not remove (R3 identity, R5).
pub fn last_drop_vs_reinsert<T: Table>() {
    let ctx = Ctx::new();
    let table = Arc::new(ctx.table::<T>(ExpiryMode::WhileHeld));
    let h = table.get_or_insert_with(K, T0, || ctx.val(1)).expect("not full").flow;
    assert_eq!(table.expire(T_LATE, 16), 0, "a held WhileHeld flow stays");
    let dropper = thread::spawn(move || drop(h));
    let g = table.get_or_insert_with(K, T_LATE, || ctx.val(2)).expect("not full");
    dropper.join().unwrap();
    if g.created {
        assert_eq!(g.flow.id, 2);
        assert_eq!(ctx.events(), vec![(1, RemovalCause::Expired)], "the old flow leaves once, in its Drop");
    } else {
        assert_eq!(g.flow.id, 1, "an existing flow must be the old one");
        assert!(ctx.events().is_empty(), "a held flow left");
    }
    let seen = table.get(&K, T_LATE).expect("the flow g holds must be visible");
    assert!(seen.same_flow(&g.flow), "the map lost the flow g holds");
    assert_eq!(table.len(), 1);
    drop((g, seen));
    ctx.finish(unwrap_table(table));
}

/// `touch` races the expiry pass: applied (the pass sees the moved deadline and keeps the flow) or
/// refused (the flow expired), never both, never lost (R2).
pub fn touch_vs_expire<T: Table>() {
    let ctx = Ctx::new();
    let table = Arc::new(ctx.table::<T>(ExpiryMode::Remove));
    let h = table.get_or_insert_with(K, T0, || ctx.val(1)).expect("not full").flow;
    let h2 = h.clone();
    // T_MID + TIMEOUT > T_LATE: an applied touch keeps the flow alive at T_LATE.
    let toucher = thread::spawn(move || h2.touch(T_MID));
    let n = table.expire(T_LATE, 16);
    let touched = toucher.join().unwrap();
    assert_eq!(touched, n == 0, "touch applied = not expired (touched {touched}, expired {n})");
    assert_eq!(touched, h.status() == FlowStatus::Active, "status disagrees with the touch");
    assert_eq!(ctx.events().len(), n, "listener calls != flows expired");
    assert_eq!(table.get(&K, T_LATE).is_some(), touched, "visibility disagrees with the touch");
    drop(h);
    ctx.finish(unwrap_table(table));
}

/// One thread removes a flow and creates a new one under the same key while the expiry pass handles
/// the old flow's timer: the stale timer (or a late exit of the old flow) never removes or notifies
/// the new flow; the old one leaves exactly once (R3).
pub fn reinsert_vs_stale_timer<T: Table>() {
    let ctx = Ctx::new();
    let table = Arc::new(ctx.table::<T>(ExpiryMode::Remove));
    drop(table.get_or_insert_with(K, T0, || ctx.val(1)).expect("not full"));
    let (t2, c2) = (Arc::clone(&table), ctx.clone());
    let worker = thread::spawn(move || {
        let removed = t2.remove(&K).is_some();
        let g = t2.get_or_insert_with(K, T_LATE, || c2.val(2)).expect("not full");
        (removed, g)
    });
    let n = table.expire(T_LATE, 16);
    let (removed, g) = worker.join().unwrap();
    assert_eq!(usize::from(removed) + n, 1, "the old flow leaves exactly once");
    assert!(g.created && g.flow.id == 2, "the old flow was visible after its deadline");
    let cause = if removed { RemovalCause::Removed } else { RemovalCause::Expired };
    assert_eq!(ctx.events(), vec![(1, cause)]);
    assert_new_flow_stands(&*table, K, &g.flow);
    drop(g);
    ctx.finish(unwrap_table(table));
}

/// `remove` races the expiry pass on one due flow: the listener fires exactly once, with the cause of
/// the one exit that won, and the handle's status agrees (R3).
pub fn listener_once<T: Table>() {
    let ctx = Ctx::new();
    let table = Arc::new(ctx.table::<T>(ExpiryMode::Remove));
    let h = table.get_or_insert_with(K, T0, || ctx.val(1)).expect("not full").flow;
    let t2 = Arc::clone(&table);
    let remover = thread::spawn(move || t2.remove(&K).is_some());
    let n = table.expire(T_LATE, 16);
    let removed = remover.join().unwrap();
    assert_eq!(usize::from(removed) + n, 1, "one exit (removed {removed}, expired {n})");
    let (cause, status) = if removed {
        (RemovalCause::Removed, FlowStatus::Removed)
    } else {
        (RemovalCause::Expired, FlowStatus::Expired)
    };
    assert_eq!(ctx.events(), vec![(1, cause)]);
    assert_eq!(h.status(), status);
    assert_eq!(table.len(), 0);
    drop(h);
    ctx.finish(unwrap_table(table));
}

/// The table is dropped while another thread uses, then drops, the last handle of a released
/// `WhileHeld` flow: no deadlock, no double exit (`Removed` by the table's drop or `Expired` by the
/// handle's), the value is dropped once, nothing leaks (R3, R5).
///
/// `strict` also requires the listener to be called (exactly once, as `table.rs` promises); the
/// backends' models run it strict. Finding F1 in `design/concurrency.md` (fixed) was this failing on
/// the dashmap backend: the handle's `Drop` exit found the table gone after the table's `clear` found
/// the record's count already at 0, so nobody notified.
pub fn table_drop_with_handle<T: Table>(strict: bool) {
    let ctx = Ctx::new();
    let table = ctx.table::<T>(ExpiryMode::WhileHeld);
    let h = table.get_or_insert_with(K, T0, || ctx.val(1)).expect("not full").flow;
    assert_eq!(table.expire(T_LATE, 16), 0, "a held WhileHeld flow stays");
    let user = thread::spawn(move || {
        let touched = h.touch(T_LATE);
        h.set_timeout(crate::TIMEOUT / 2);
        assert_eq!(h.id, 1);
        drop(h);
        touched
    });
    drop(table);
    let touched = user.join().unwrap();
    let events = ctx.events();
    match events.as_slice() {
        [(1, RemovalCause::Expired)] => assert!(touched, "a flow active until its last handle refused a touch"),
        [(1, RemovalCause::Removed)] => {}
        [] if !strict => {}
        other => panic!("the flow must leave exactly once: {other:?}"),
    }
    assert_eq!(ctx.drops(), 1, "the value is dropped exactly once");
    assert_eq!(ctx.made(), 1);
}

/// `max_flows(1)`, `Reject`: two threads create flows under two keys: exactly one gets room, the
/// other `TableFull`; the count never exceeds the maximum (the occupancy reservation is atomic).
///
/// Two shards, and a second key whose hash differs from `K`'s in its top and its low bit, so that a
/// backend that shards by either puts the two creations in different shards (no shard lock
/// serialises them: the reservation itself must be atomic).
pub fn capacity_bound<T: Table>() {
    let ctx = Ctx::new();
    let table = Arc::new(ctx.builder(ExpiryMode::Remove).shards(2).max_flows(1).build::<T>().expect("valid config"));
    let (hk, bits) = (table.hash_key(&K), |h: u64| (h >> 63, h & 1));
    let k2 = (K + 1..K + 64).find(|k| {
        let (a, b) = (bits(hk), bits(table.hash_key(k)));
        a.0 != b.0 && a.1 != b.1
    });
    let k2 = k2.expect("a key in the other shard");
    let (t2, c2) = (Arc::clone(&table), ctx.clone());
    let other = thread::spawn(move || t2.get_or_insert_with(k2, T0, || c2.val(2)).ok());
    let mine = table.get_or_insert_with(K, T0, || ctx.val(1)).ok();
    let theirs = other.join().unwrap();
    assert_eq!(usize::from(mine.is_some()) + usize::from(theirs.is_some()), 1, "max_flows(1) admitted 0 or 2 flows");
    assert_eq!(table.len(), 1);
    drop((mine, theirs));
    ctx.finish(unwrap_table(table));
}

/// `max_flows(1)`, `Evict`: a creation under a second key must evict the one flow while another thread
/// removes that flow: it leaves exactly once (`Evicted` or `Removed`, R3), the count never exceeds
/// the maximum. `strict` also requires the creation to succeed, since the room is freed either way
/// (finding F2 in `design/concurrency.md`, fixed, was this failing).
pub fn evict_vs_remove<T: Table>(strict: bool) {
    let ctx = Ctx::new();
    let table = Arc::new(
        ctx.builder(ExpiryMode::Remove)
            .max_flows(1)
            .capacity_policy(CapacityPolicy::Evict)
            .build::<T>()
            .expect("valid config"),
    );
    let h = table.get_or_insert_with(K, T0, || ctx.val(1)).expect("not full").flow;
    let (t2, c2) = (Arc::clone(&table), ctx.clone());
    let creator = thread::spawn(move || t2.get_or_insert_with(K2, T_MID, || c2.val(2)).ok());
    let removed = table.remove(&K).is_some();
    let created = creator.join().unwrap();
    let cause = if removed { RemovalCause::Removed } else { RemovalCause::Evicted };
    assert_eq!(ctx.events(), vec![(1, cause)], "the first flow leaves exactly once");
    assert!(h.status() != FlowStatus::Active);
    assert!(table.len() <= 1);
    assert_eq!(table.len(), usize::from(created.is_some()));
    if strict {
        assert!(created.is_some(), "TableFull although the only flow left (removed {removed})");
    }
    drop((h, created));
    ctx.finish(unwrap_table(table));
}

/// `insert` replaces a flow while the expiry pass finds the old flow due: the old flow leaves exactly
/// once (`Replaced` if `insert` won and returned it, else `Expired`), and neither the pass nor the
/// old flow's exit ever removes the new flow (R3).
pub fn insert_vs_expire<T: Table>() {
    let ctx = Ctx::new();
    let table = Arc::new(ctx.table::<T>(ExpiryMode::Remove));
    let h = table.get_or_insert_with(K, T0, || ctx.val(1)).expect("not full").flow;
    let (t2, c2) = (Arc::clone(&table), ctx.clone());
    // At T_MID the old flow is visible, so a displacement is a replacement; its deadline is before
    // T_LATE, the new flow's is after.
    let inserter = thread::spawn(move || t2.insert(K, c2.val(2), T_MID).expect("not full"));
    let n = table.expire(T_LATE, 16);
    let (new, replaced) = inserter.join().unwrap();
    assert_eq!(usize::from(replaced.is_some()) + n, 1, "the old flow leaves exactly once");
    let cause = if replaced.is_some() { RemovalCause::Replaced } else { RemovalCause::Expired };
    assert_eq!(ctx.events(), vec![(1, cause)]);
    if let Some(old) = &replaced {
        assert!(old.same_flow(&h));
    }
    assert_new_flow_stands(&*table, K, &new);
    drop((h, new, replaced));
    ctx.finish(unwrap_table(table));
}

/// An expiry pass over many due flows with distinct deadlines races a creation in the same shard
/// under the key of one of them. On the compact backend the pass gives the shard lock up between
/// blocks of timer work (one block per hold under loom) and takes it back, so the creation may land
/// while a redistribution of the timers is pending. Every old flow leaves exactly once, as expired
/// (by the pass, or displaced by the creation since it is past its deadline), the new flow stays
/// and is the one the key finds (R1, R3, R5).
pub fn expiry_pass_vs_create<T: Table>() {
    const OLD: u32 = 6;
    const FIRST: u64 = 100;
    let ctx = Ctx::new();
    let table = Arc::new(ctx.table::<T>(ExpiryMode::Remove));
    for i in 0..OLD {
        // Flow i is due 10 s and i ms after T0: every deadline distinct, all before T_LATE.
        let at = Timestamp::from_nanos(T0.as_nanos() + u64::from(i) * 1_000_000);
        drop(table.get_or_insert_with(FIRST + u64::from(i), at, || ctx.val(100 + i)).expect("not full"));
    }
    let (t2, c2) = (Arc::clone(&table), ctx.clone());
    let creator = thread::spawn(move || t2.get_or_insert_with(FIRST, T_LATE, || c2.val(1)).expect("not full"));
    let n = table.expire(T_LATE, usize::MAX);
    let new = creator.join().unwrap();
    assert!(new.created, "a due flow was handed out");
    assert!(n == OLD as usize || n == OLD as usize - 1, "{n} flows expired by the pass");
    let mut events = ctx.events();
    events.sort_unstable_by_key(|e| e.0);
    let want: Vec<_> = (0..OLD).map(|i| (100 + i, RemovalCause::Expired)).collect();
    assert_eq!(events, want, "every old flow leaves once, as expired");
    assert_new_flow_stands(&*table, FIRST, &new.flow);
    drop(new);
    ctx.finish(unwrap_table(table));
}

/// Spawns a thread that creates the flow of `K` at `T0` (value 1) and returns what it got.
fn spawn_creation<T: Table>(table: &Arc<T>, ctx: &Ctx) -> thread::JoinHandle<GetOrInsert<T::Handle>> {
    let (t2, c2) = (Arc::clone(table), ctx.clone());
    thread::spawn(move || t2.get_or_insert_with(K, T0, || c2.val(1)).expect("not full"))
}

/// An expiry pass runs while a flow is being created whose deadline is already past the pass's
/// `now` (created at `T0`, due at `T_LATE`). The compact backend files a creation's timer before
/// `init` runs, so the pass may pop it mid-creation: it must file it again, not expire the
/// creation nor drop its timer (C13). Once created, the flow is invisible at `T_LATE`, and it
/// leaves exactly once, as expired, by this pass or the next (R1, R3).
pub fn expire_vs_creation<T: Table>() {
    let ctx = Ctx::new();
    let table = Arc::new(ctx.table::<T>(ExpiryMode::Remove));
    let creator = spawn_creation(&table, &ctx);
    let n = table.expire(T_LATE, 16);
    let made = creator.join().unwrap();
    assert!(made.created, "the key was absent");
    assert!(table.get(&K, T_LATE).is_none(), "a flow past its deadline is visible");
    let m = table.expire(T_LATE, 16);
    assert_eq!(n + m, 1, "the flow must expire exactly once ({n} + {m})");
    assert_eq!(ctx.events(), vec![(1, RemovalCause::Expired)]);
    assert_eq!(made.flow.status(), FlowStatus::Expired);
    assert_eq!(table.len(), 0);
    drop(made);
    ctx.finish(unwrap_table(table));
}

/// `clear` races a creation under an absent key. On the compact backend the creation's timer is
/// filed before `init` runs and the creation becomes active without the lock, possibly after
/// `clear` scanned the slots but before it drained the timers: `clear` must keep that timer (C13).
/// Either `clear` removed the flow (it was active when the scan met it) or the flow stands and
/// expires at its deadline; it leaves exactly once (R1, R3).
pub fn clear_vs_creation<T: Table>() {
    let ctx = Ctx::new();
    let table = Arc::new(ctx.table::<T>(ExpiryMode::Remove));
    let creator = spawn_creation(&table, &ctx);
    let cleared = table.clear();
    let made = creator.join().unwrap();
    assert!(made.created, "the key was absent");
    let expired = table.expire(T_LATE, 16);
    assert_eq!(cleared + expired, 1, "the flow leaves exactly once ({cleared} cleared, {expired} expired)");
    let cause = if cleared == 1 { RemovalCause::Removed } else { RemovalCause::Expired };
    assert_eq!(ctx.events(), vec![(1, cause)]);
    assert_eq!(table.len(), 0);
    drop(made);
    ctx.finish(unwrap_table(table));
}
