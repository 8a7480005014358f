//! The loom models (`flowtable_loom_tests::models`) on the compact backend.
//!
//! Run with `scripts/loom.sh`, which also runs each model with the injected bugs listed on its
//! `/// Mutants:` line (names from `flowtable::sync::loom_mutant::MUTANTS`); each must make it fail.
//! Under loom, every atomic, lock and `UnsafeCell` of the compact backend is loom's (`crate::sync`);
//! its private state machines have their own models in `src/compact/tests/loom_rc.rs`.
//!
//! `listener_once`, `insert_vs_expire` and `evict_vs_remove` race two exits of one flow, which the
//! compact backend serialises under its shard lock: what fails them is a flow leaving twice
//! (`compact_leave_ignores_status`), caught without any preemption. `capacity_bound` puts its two
//! creations in different shards, so only the atomic reservation keeps the maximum
//! (`reserve_check_then_add`). `table_drop_with_handle` and `evict_vs_remove` run in their strict
//! forms.
#![cfg(flowtable_loom)]

use flowtable::CompactFlowTable;
use flowtable_loom_tests::{models, run_model, Val};

type Compact = CompactFlowTable<u64, Val>;

/// Mutants: compact_pending_ignored, compact_waiter_unflagged
#[test]
fn get_or_insert_one_key() {
    run_model("compact/get_or_insert_one_key", models::get_or_insert_one_key::<Compact>);
}

/// Mutants: compact_acquire_no_check
#[test]
fn get_vs_expire() {
    run_model("compact/get_vs_expire", models::get_vs_expire::<Compact>);
}

/// Mutants: compact_acquire_no_check
#[test]
fn last_drop_vs_reinsert() {
    run_model("compact/last_drop_vs_reinsert", models::last_drop_vs_reinsert::<Compact>);
}

/// Mutants: compact_time_plain_store
#[test]
fn touch_vs_expire() {
    run_model("compact/touch_vs_expire", models::touch_vs_expire::<Compact>);
}

/// Mutants: compact_acquire_no_check
#[test]
fn reinsert_vs_stale_timer() {
    run_model("compact/reinsert_vs_stale_timer", models::reinsert_vs_stale_timer::<Compact>);
}

/// Mutants: compact_time_plain_store
#[test]
fn table_drop_with_handle() {
    run_model("compact/table_drop_with_handle", || models::table_drop_with_handle::<Compact>(true));
}

/// Mutants: compact_leave_ignores_status
#[test]
fn listener_once() {
    run_model("compact/listener_once", models::listener_once::<Compact>);
}

/// Mutants: compact_leave_ignores_status
#[test]
fn insert_vs_expire() {
    run_model("compact/insert_vs_expire", models::insert_vs_expire::<Compact>);
}

/// Mutants: reserve_check_then_add
#[test]
fn capacity_bound() {
    run_model("compact/capacity_bound", models::capacity_bound::<Compact>);
}

/// Mutants: compact_leave_ignores_status
#[test]
fn evict_vs_remove() {
    run_model("compact/evict_vs_remove", || models::evict_vs_remove::<Compact>(true));
}

/// Mutants: compact_leave_ignores_status
#[test]
fn expiry_pass_vs_create() {
    run_model("compact/expiry_pass_vs_create", models::expiry_pass_vs_create::<Compact>);
}

/// Mutants: compact_creating_timer_stale
#[test]
fn expire_vs_creation() {
    run_model("compact/expire_vs_creation", models::expire_vs_creation::<Compact>);
}

/// Mutants: compact_clear_drops_activated
#[test]
fn clear_vs_creation() {
    run_model("compact/clear_vs_creation", models::clear_vs_creation::<Compact>);
}
