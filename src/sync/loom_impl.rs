//! The model-checking primitives: loom's atomics, locks and `Arc`.
//!
//! Loom has no `Weak`: `Arc`/`Weak` here are `loom_rc`'s, reference counts on loom atomics (see
//! `design/concurrency.md`).
#![forbid(unsafe_code)]

pub(crate) use super::loom_rc::{Arc, Weak};
pub(crate) use loom::{lazy_static, thread_local};

#[allow(unused_imports)]
pub(crate) mod atomic {
    pub(crate) use loom::sync::atomic::{
        fence, AtomicBool, AtomicI64, AtomicPtr, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering,
    };
}

#[allow(unused_imports)]
pub(crate) use loom::cell::UnsafeCell;

#[allow(unused_imports)]
pub(crate) mod hint {
    pub(crate) use loom::thread::yield_now as spin_loop;
}

#[allow(unused_imports)]
pub(crate) mod thread {
    pub(crate) use loom::thread::yield_now;
}

/// A mutex without poisoning, as on the std side.
#[derive(Debug)]
pub(crate) struct Mutex<T>(loom::sync::Mutex<T>);

pub(crate) type MutexGuard<'a, T> = loom::sync::MutexGuard<'a, T>;

impl<T> Mutex<T> {
    pub(crate) fn new(value: T) -> Self {
        Mutex(loom::sync::Mutex::new(value))
    }
    pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
    #[allow(dead_code)] // used by the dashmap backend
    pub(crate) fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
        self.0.try_lock().ok()
    }
}

/// Unlocks `guard` (loom's mutex has no fair unlock; the model checks every order anyway).
#[allow(dead_code)] // used by the compact backend
pub(crate) fn unlock_fair<T>(guard: MutexGuard<'_, T>) {
    drop(guard);
}

/// A condition variable paired with [`Mutex`].
#[derive(Debug)]
pub(crate) struct Condvar(loom::sync::Condvar);

impl Condvar {
    pub(crate) fn new() -> Self {
        Condvar(loom::sync::Condvar::new())
    }
    pub(crate) fn wait<'a, T>(&self, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
        self.0.wait(guard).unwrap_or_else(|e| e.into_inner())
    }
    pub(crate) fn notify_all(&self) {
        self.0.notify_all();
    }
}
