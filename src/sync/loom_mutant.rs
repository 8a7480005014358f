//! Injected bugs ("mutants") for the loom models, switched at run time (loom builds only).
//!
//! Each loom model is shown able to fail by running it with a known bug injected: the library checks
//! `crate::sync::mutant("name")` at the injection point, which is the constant `false` in normal
//! builds (so the check and the buggy branch compile away) and, under `--cfg flowtable_loom`, asks
//! this module. A model run selects at most one mutant, before `loom::model` starts, with [`set`]
//! or [`set_from_env`] (which reads `FLOWTABLE_LOOM_MUTANT`). The switch is process-wide: run one
//! mutant per process, as `scripts/loom.sh` does.
#![forbid(unsafe_code)]

use std::sync::Mutex as StdMutex;

/// Every mutant the library knows, with the bug it injects.
pub const MUTANTS: &[(&str, &str)] = &[
    (
        "init_no_recheck",
        "get_or_insert_with claims a creation without re-checking the map under the pending stripe lock",
    ),
    ("upgrade_no_cas", "Weak::upgrade is a load then fetch_add instead of a CAS loop that never increments 0"),
    ("removal_by_key", "an exit removes the map entry of its key whatever flow it refers to (no identity check)"),
    ("touch_plain_store", "touch checks visibility, then stores the new last-seen word instead of a CAS"),
    ("leave_plain_store", "try_leave checks Active, then stores the new status instead of a CAS"),
    ("expire_ignores_status", "the expiry pass expires a due record without checking it is still Active"),
    ("drop_exit_ignores_status", "a WhileHeld record's Drop runs the exit even if the flow already left"),
    ("reserve_check_then_add", "the occupancy reservation loads the count, compares, then adds (no CAS)"),
    ("compact_time_plain_store", "compact: a record's time word changes by load, check, store instead of a CAS"),
    ("compact_acquire_no_check", "compact: a reader takes a reference by fetch_add whatever the generation and count"),
    (
        "compact_leave_ignores_status",
        "compact: a transition out of ACTIVE succeeds whatever the status (a flow leaves twice)",
    ),
    (
        "compact_pending_ignored",
        "compact: get_or_insert_with does not wait for a creation in flight under the same key",
    ),
    (
        "compact_waiter_unflagged",
        "compact: a caller waiting for a creation in flight does not flag it WAITED (its creator does not wake it)",
    ),
    (
        "compact_clear_drops_activated",
        "compact: clear releases the timer of a creation that became active during clear (only creating ones are kept)",
    ),
    (
        "compact_creating_timer_stale",
        "compact: the expiry pass releases a timer popped while its flow is still being created, as if it had left",
    ),
];

/// The selected mutant (process-wide; not a loom object, so it is the same in every execution).
static ACTIVE: StdMutex<Option<&'static str>> = StdMutex::new(None);

/// Selects the mutant `name` (or none), for the models run after this call.
///
/// # Panics
/// If `name` is not in [`MUTANTS`] (`unknown loom mutant`), so that a typo cannot pass for a caught bug.
pub fn set(name: Option<&str>) {
    let name = name.map(|n| {
        MUTANTS.iter().find(|(m, _)| *m == n).map(|(m, _)| *m).unwrap_or_else(|| panic!("unknown loom mutant {n:?}"))
    });
    *ACTIVE.lock().unwrap_or_else(|e| e.into_inner()) = name;
}

/// Selects the mutant named by the environment variable `FLOWTABLE_LOOM_MUTANT` (none if it is unset
/// or empty); returns it. Models call this before `loom::model`.
///
/// # Panics
/// As [`set`].
pub fn set_from_env() -> Option<&'static str> {
    let name = std::env::var("FLOWTABLE_LOOM_MUTANT").ok().filter(|m| !m.is_empty());
    set(name.as_deref());
    get()
}

/// The selected mutant, if any.
pub fn get() -> Option<&'static str> {
    *ACTIVE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether the mutant `name` is selected (the injection points' check).
pub(crate) fn active(name: &'static str) -> bool {
    debug_assert!(MUTANTS.iter().any(|(m, _)| *m == name), "injection point names unknown mutant {name:?}");
    get() == Some(name)
}
