//! The loom models (`flowtable_loom_tests::models`) on the dashmap (reference) backend.
//!
//! Run with `scripts/loom.sh`, which also runs each model with the injected bugs listed on its
//! `/// Mutants:` line (names from `flowtable::sync::loom_mutant::MUTANTS`); each must make it fail.
//! Under loom, the backend's map is `src/reference/loom_map.rs` (DashMap's locks are invisible to
//! loom) and its `Arc`/`Weak` are `src/sync/loom_rc.rs`.
#![cfg(flowtable_loom)]

use flowtable::DashFlowTable;
use flowtable_loom_tests::{models, run_model, Val};

type Dash = DashFlowTable<u64, Val>;

/// Mutants: init_no_recheck
#[test]
fn get_or_insert_one_key() {
    run_model("dashmap/get_or_insert_one_key", models::get_or_insert_one_key::<Dash>);
}

/// Mutants: upgrade_no_cas
#[test]
fn get_vs_expire() {
    run_model("dashmap/get_vs_expire", models::get_vs_expire::<Dash>);
}

/// Mutants: removal_by_key, upgrade_no_cas
#[test]
fn last_drop_vs_reinsert() {
    run_model("dashmap/last_drop_vs_reinsert", models::last_drop_vs_reinsert::<Dash>);
}

/// Mutants: touch_plain_store
#[test]
fn touch_vs_expire() {
    run_model("dashmap/touch_vs_expire", models::touch_vs_expire::<Dash>);
}

/// Mutants: removal_by_key, expire_ignores_status, leave_plain_store
#[test]
fn reinsert_vs_stale_timer() {
    run_model("dashmap/reinsert_vs_stale_timer", models::reinsert_vs_stale_timer::<Dash>);
}

/// Mutants: leave_plain_store, expire_ignores_status
#[test]
fn listener_once() {
    run_model("dashmap/listener_once", models::listener_once::<Dash>);
}

/// Mutants: drop_exit_ignores_status, upgrade_no_cas
#[test]
fn table_drop_with_handle() {
    run_model("dashmap/table_drop_with_handle", || models::table_drop_with_handle::<Dash>(true));
}

/// Mutants: removal_by_key, leave_plain_store
#[test]
fn insert_vs_expire() {
    run_model("dashmap/insert_vs_expire", models::insert_vs_expire::<Dash>);
}

/// Mutants: reserve_check_then_add
#[test]
fn capacity_bound() {
    run_model("dashmap/capacity_bound", models::capacity_bound::<Dash>);
}

/// Mutants: leave_plain_store
#[test]
fn evict_vs_remove() {
    run_model("dashmap/evict_vs_remove", || models::evict_vs_remove::<Dash>(true));
}

/// Mutants: leave_plain_store
#[test]
fn expiry_pass_vs_create() {
    run_model("dashmap/expiry_pass_vs_create", models::expiry_pass_vs_create::<Dash>);
}
