//! Loom models of a record's two words: touch versus expiry on the time word (C4), and a reader's
//! `try_acquire` versus the table's exit and last release on the reference word (C2, C9).
//!
//! Run by `scripts/loom.sh` (with the injected bugs on each model's `/// Mutants:` line), or
//! `RUSTFLAGS="--cfg flowtable_loom" cargo test --release --features compact --lib loom_rc`.
#![cfg(flowtable_loom)]

use crate::compact::id::{timew, NEVER};
use crate::compact::rc::{Due, Record};
use crate::compact::shard::Palette;
use crate::sync::Arc;

fn record(last: u64, timeout_ms: u64) -> (Arc<Record<u64, u64>>, Arc<Palette>) {
    let pal = Arc::new(Palette::new(timeout_ms));
    let rec = Record::vacant();
    rec.set_time(timew::new(last, 0, timew::ACTIVE, false, 0));
    rec.revive_filed(0);
    assert!(!rec.release(), "one reference stays"); // the model's record: one reference, no entry
    (Arc::new(rec), pal)
}

/// Mutants: compact_time_plain_store
#[test]
fn touch_vs_expire_is_one_or_the_other() {
    crate::sync::loom_mutant::set_from_env();
    loom::model(|| {
        // Last seen at 100 ms, timeout 100 ms: due at 200.
        let (rec, pal) = record(100, 100);
        let (r2, p2) = (Arc::clone(&rec), Arc::clone(&pal));
        let toucher = loom::thread::spawn(move || r2.touch(150, 150, &p2));
        let due = rec.try_expire(200, &pal);
        let touched = toucher.join().unwrap();
        match due {
            // The pass won: the touch must have been refused.
            Due::Expired => assert!(!touched, "touch applied to an expired flow"),
            // The touch won: the pass saw the moved deadline.
            Due::Moved(d) => {
                assert!(touched);
                assert_eq!(d, 250);
            }
            other => panic!("unexpected {other:?}"),
        }
        let _ = NEVER;
    });
}

/// Mutants: compact_acquire_no_check
#[test]
fn reader_never_revives_a_released_record() {
    crate::sync::loom_mutant::set_from_env();
    loom::model(|| {
        let (rec, _pal) = record(0, 1000);
        let gen = rec.gen();
        let r2 = Arc::clone(&rec);
        // A reader that found the record's slot.
        let reader = loom::thread::spawn(move || {
            if r2.try_acquire(gen) {
                // It holds a reference: the record cannot have been freed under it.
                r2.release()
            } else {
                false
            }
        });
        // The table: the flow leaves (generation bumped), then the table drops its reference.
        rec.bump_gen();
        let table_last = rec.release();
        let reader_last = reader.join().unwrap();
        // Exactly one party dropped the last reference, so the record is freed exactly once.
        assert!(table_last ^ reader_last, "table_last={table_last} reader_last={reader_last}");
        // And no reference can be taken any more.
        assert!(!rec.try_acquire(gen) && !rec.try_acquire(gen.wrapping_add(1)));
    });
}
