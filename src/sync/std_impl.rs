//! The production primitives: std atomics and reference counts, parking_lot locks.
#![forbid(unsafe_code)]

#[allow(unused_imports)] // `Weak` is used by the dashmap backend only
pub(crate) use std::sync::{Arc, Weak};
#[allow(unused_imports)] // used by the dashmap backend
pub(crate) use std::thread_local;

/// `loom::lazy_static!`'s syntax for a static with a `const` initializer (std needs no laziness).
#[allow(unused_macros)] // used by the dashmap backend
macro_rules! lazy_static {
    ($(#[$attr:meta])* static ref $name:ident : $t:ty = $init:expr; $($rest:tt)*) => {
        $(#[$attr])* static $name: $t = $init;
        $crate::sync::lazy_static!($($rest)*);
    };
    () => {};
}
#[allow(unused_imports)] // used by the dashmap backend
pub(crate) use lazy_static;

#[allow(unused_imports)]
pub(crate) mod atomic {
    pub(crate) use std::sync::atomic::{
        fence, AtomicBool, AtomicI64, AtomicPtr, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering,
    };
}

/// `std::cell::UnsafeCell` with loom's closure API (`with` / `with_mut`), so that code written once
/// is checked by loom's cell-access tracking under `--cfg flowtable_loom`.
#[derive(Debug)]
#[allow(dead_code)]
pub(crate) struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

#[allow(dead_code)]
impl<T> UnsafeCell<T> {
    pub(crate) const fn new(value: T) -> Self {
        UnsafeCell(std::cell::UnsafeCell::new(value))
    }
    /// Calls `f` with a shared raw pointer to the contents.
    #[inline(always)]
    pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        f(self.0.get())
    }
    /// Calls `f` with a mutable raw pointer to the contents.
    #[inline(always)]
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}

#[allow(unused_imports)]
pub(crate) mod hint {
    pub(crate) use std::hint::spin_loop;
}

#[allow(unused_imports)]
pub(crate) mod thread {
    pub(crate) use std::thread::yield_now;
}

/// A mutex without poisoning: a panic while it is held leaves the data as it was.
#[derive(Debug, Default)]
pub(crate) struct Mutex<T>(parking_lot::Mutex<T>);

pub(crate) type MutexGuard<'a, T> = parking_lot::MutexGuard<'a, T>;

impl<T> Mutex<T> {
    pub(crate) fn new(value: T) -> Self {
        Mutex(parking_lot::Mutex::new(value))
    }
    pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
        self.0.lock()
    }
    #[allow(dead_code)] // used by the dashmap backend
    pub(crate) fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
        self.0.try_lock()
    }
}

/// Unlocks `guard`, handing the lock to a parked waiter if there is one (parking_lot's fair
/// unlock), rather than letting the unlocking thread take it back first.
#[allow(dead_code)] // used by the compact backend
pub(crate) fn unlock_fair<T>(guard: MutexGuard<'_, T>) {
    parking_lot::MutexGuard::unlock_fair(guard);
}

/// A condition variable paired with [`Mutex`].
#[derive(Debug, Default)]
pub(crate) struct Condvar(parking_lot::Condvar);

impl Condvar {
    pub(crate) fn new() -> Self {
        Condvar(parking_lot::Condvar::new())
    }
    pub(crate) fn wait<'a, T>(&self, mut guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
        self.0.wait(&mut guard);
        guard
    }
    pub(crate) fn notify_all(&self) {
        self.0.notify_all();
    }
}
