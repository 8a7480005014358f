//! Creations in flight: what makes `get_or_insert_with` atomic per key while `init` runs outside
//! every lock.
//!
//! The first caller that finds no live flow registers the key here and runs `init` with no lock
//! held; later callers for the same key find the registration and wait for it. A creator that
//! finishes (or panics) unregisters the key and wakes its waiters, who look the key up again.
#![forbid(unsafe_code)]

use crate::sync::{Arc, Condvar, Mutex, MutexGuard};

/// One creation in flight; waiters block on it.
#[derive(Debug)]
pub(super) struct Waiter {
    done: Mutex<bool>,
    cv: Condvar,
}

impl Waiter {
    fn new() -> Self {
        Waiter { done: Mutex::new(false), cv: Condvar::new() }
    }
    /// Blocks until the creation finished or was abandoned.
    pub(super) fn wait(&self) {
        let mut done = self.done.lock();
        while !*done {
            done = self.cv.wait(done);
        }
    }
    fn complete(&self) {
        *self.done.lock() = true;
        self.cv.notify_all();
    }
}

type Stripe<K> = Vec<(K, Arc<Waiter>)>;

/// Registrations, striped by key hash. A stripe holds the few keys being created at one moment.
pub(super) struct Pending<K> {
    stripes: Box<[Mutex<Stripe<K>>]>,
}

/// What the registration step decided.
pub(super) enum Claim {
    /// Another caller is creating the flow: wait on this, then look again.
    Wait(Arc<Waiter>),
    /// This caller creates the flow; finish or abandon through [`Pending::release`].
    Create(Arc<Waiter>),
}

impl<K: Eq> Pending<K> {
    pub(super) fn new(stripes: usize) -> Self {
        Pending { stripes: (0..stripes.max(1).next_power_of_two()).map(|_| Mutex::new(Vec::new())).collect() }
    }

    /// Locks the stripe of `hash`. The caller re-checks the map under it, then calls [`claim`].
    pub(super) fn lock(&self, hash: u64) -> MutexGuard<'_, Stripe<K>> {
        self.stripes[(hash as usize) & (self.stripes.len() - 1)].lock()
    }

    /// Registers `key` for creation unless someone else is creating it.
    pub(super) fn claim(stripe: &mut Stripe<K>, key: &K, make_key: impl FnOnce() -> K) -> Claim {
        if let Some((_, w)) = stripe.iter().find(|(k, _)| k == key) {
            return Claim::Wait(Arc::clone(w));
        }
        let w = Arc::new(Waiter::new());
        stripe.push((make_key(), Arc::clone(&w)));
        Claim::Create(w)
    }

    /// Unregisters a creation (finished or abandoned) and wakes its waiters.
    pub(super) fn release(&self, hash: u64, waiter: &Arc<Waiter>) {
        {
            let mut stripe = self.lock(hash);
            if let Some(i) = stripe.iter().position(|(_, w)| Arc::ptr_eq(w, waiter)) {
                stripe.swap_remove(i);
            }
        }
        waiter.complete();
    }
}
