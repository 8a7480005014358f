//! The production primitives: std atomics and reference counts, parking_lot locks.
#![forbid(unsafe_code)]

pub(crate) use std::sync::{Arc, Weak};
pub(crate) use std::thread_local;

/// `loom::lazy_static!`'s syntax for a static with a `const` initializer (std needs no laziness).
macro_rules! lazy_static {
    ($(#[$attr:meta])* static ref $name:ident : $t:ty = $init:expr; $($rest:tt)*) => {
        $(#[$attr])* static $name: $t = $init;
        $crate::sync::lazy_static!($($rest)*);
    };
    () => {};
}
pub(crate) use lazy_static;

#[allow(unused_imports)]
pub(crate) mod atomic {
    pub(crate) use std::sync::atomic::{
        fence, AtomicBool, AtomicI64, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering,
    };
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
    pub(crate) fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
        self.0.try_lock()
    }
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
