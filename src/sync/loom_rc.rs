//! `Arc`/`Weak` for loom builds, in safe code on loom's primitives (loom has no `Weak`:
//! tokio-rs/loom#156, #385).
//!
//! # Design
//! The value lives in a `loom::sync::Arc<T>` (*value arc*). Every strong handle owns one clone of it;
//! one more clone sits in the allocation's `slot` (a loom `Mutex<Option<..>>`) for as long as the
//! strong count is non-zero. The strong count is a loom atomic; weak handles hold only the allocation
//! (a `loom::sync::Arc<Inner<T>>`), which outlives the value for as long as any weak handle lives.
//!
//! - `clone`: `fetch_add` on the count (the caller already holds a strong handle, so it is > 0).
//! - `drop` of a strong handle: drops its value-arc clone *first*, then `fetch_sub`; the handle that
//!   takes the count from 1 to 0 takes the slot's clone out (under the slot mutex) and drops it after
//!   unlocking. That clone is then the last one, so `T` is dropped exactly there: on the thread, and
//!   at the moment, the strong count reached zero, as with `std::sync::Arc`.
//! - `Weak::upgrade`: a CAS loop on the count that never increments from 0 (so loom explores the
//!   upgrade-versus-last-drop race), then a clone of the slot's value arc. Once the CAS succeeded the
//!   count cannot reach 0 before this handle is dropped, and the slot is emptied only after it reached
//!   0, so the slot is full; an empty slot there would be a use after free, and panics.
//! - `try_unwrap`: CAS 1 → 0, then the slot's clone is dropped and the value arc unwrapped.
//!
//! The slot mutex is an artefact of the emulation: it is only ever taken last (never while waiting
//! for another lock), and `T` is never dropped under it, so it adds no lock-order edge to the
//! crate's protocol. Loom's own `Arc` leak check still applies to the value and the allocation.
//!
//! Mutant `upgrade_no_cas` (see [`super::loom_mutant`]) makes `upgrade` a load followed by a
//! `fetch_add`, the classic check-then-act bug that revives a count that reached zero.
#![forbid(unsafe_code)]

use std::fmt;
use std::ops::Deref;

use loom::sync::atomic::{fence, AtomicUsize, Ordering};
use loom::sync::Arc as LoomArc;
use loom::sync::Mutex as LoomMutex;

/// The shared allocation: strong count, the value while it lives, and the value's address.
struct Inner<T> {
    /// Strong handles alive. Never incremented from 0.
    strong: AtomicUsize,
    /// The value's slot clone: `Some` exactly while `strong > 0` (taken by the handle that made it 0).
    slot: LoomMutex<Option<LoomArc<T>>>,
    /// The value's address, for `as_ptr` after the value is gone (identity comparisons only).
    addr: usize,
}

/// A strong reference (the loom build's `std::sync::Arc`).
pub(crate) struct Arc<T> {
    /// `Some` until this handle is dropped or unwrapped.
    value: Option<LoomArc<T>>,
    inner: LoomArc<Inner<T>>,
}

/// A weak reference (the loom build's `std::sync::Weak`).
pub(crate) struct Weak<T> {
    inner: LoomArc<Inner<T>>,
}

impl<T> Arc<T> {
    pub(crate) fn new(value: T) -> Self {
        let value = LoomArc::new(value);
        let addr = LoomArc::as_ptr(&value) as usize;
        let inner = LoomArc::new(Inner {
            strong: AtomicUsize::new(1),
            slot: LoomMutex::new(Some(LoomArc::clone(&value))),
            addr,
        });
        Arc { value: Some(value), inner }
    }

    fn value(&self) -> &LoomArc<T> {
        self.value.as_ref().expect("loom Arc used after drop")
    }

    pub(crate) fn downgrade(this: &Self) -> Weak<T> {
        Weak { inner: LoomArc::clone(&this.inner) }
    }

    pub(crate) fn ptr_eq(a: &Self, b: &Self) -> bool {
        LoomArc::ptr_eq(&a.inner, &b.inner)
    }

    pub(crate) fn as_ptr(this: &Self) -> *const T {
        LoomArc::as_ptr(this.value())
    }

    #[allow(dead_code)]
    pub(crate) fn strong_count(this: &Self) -> usize {
        this.inner.strong.load(Ordering::Acquire)
    }

    /// The value, if `this` is the only strong handle (weak handles then see the value gone).
    pub(crate) fn try_unwrap(mut this: Self) -> Result<T, Self> {
        // Acquire: every other handle's drop (Release) happens before we own the value.
        if this.inner.strong.compare_exchange(1, 0, Ordering::Acquire, Ordering::Relaxed).is_err() {
            return Err(this);
        }
        let value = this.value.take().expect("loom Arc used after drop");
        drop(take_slot(&this.inner));
        drop(this); // `value` is None: no second decrement
        match LoomArc::try_unwrap(value) {
            Ok(v) => Ok(v),
            Err(_) => panic!("loom Arc::try_unwrap: the value has another owner with the count at 0"),
        }
    }
}

/// Empties the slot of an allocation whose count reached 0; the caller drops the clone after the
/// slot lock is released.
fn take_slot<T>(inner: &Inner<T>) -> Option<LoomArc<T>> {
    let taken = inner.slot.lock().unwrap_or_else(|e| e.into_inner()).take();
    assert!(taken.is_some(), "loom Arc: the value was released twice");
    taken
}

impl<T> Clone for Arc<T> {
    fn clone(&self) -> Self {
        // Relaxed: the caller's handle keeps the count above 0 (as std).
        self.inner.strong.fetch_add(1, Ordering::Relaxed);
        Arc { value: Some(LoomArc::clone(self.value())), inner: LoomArc::clone(&self.inner) }
    }
}

impl<T> Drop for Arc<T> {
    fn drop(&mut self) {
        let Some(value) = self.value.take() else { return };
        drop(value); // before the decrement, so the slot's clone is the last one at 0
                     // Release: this handle's uses happen before the value's drop (as std).
        if self.inner.strong.fetch_sub(1, Ordering::Release) != 1 {
            return;
        }
        fence(Ordering::Acquire);
        let last = take_slot(&self.inner);
        drop(last); // `T` is dropped here, outside the slot lock
    }
}

impl<T> Deref for Arc<T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.value()
    }
}

impl<T: fmt::Debug> fmt::Debug for Arc<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<T> Weak<T> {
    pub(crate) fn upgrade(&self) -> Option<Arc<T>> {
        let strong = &self.inner.strong;
        if super::loom_mutant::active("upgrade_no_cas") {
            // Mutant: check, then act (may revive a count that reached 0).
            if strong.load(Ordering::Acquire) == 0 {
                return None;
            }
            strong.fetch_add(1, Ordering::Acquire);
        } else {
            let mut n = strong.load(Ordering::Relaxed);
            loop {
                if n == 0 {
                    return None;
                }
                // Acquire: pairs with the Release of drops, as std's upgrade.
                match strong.compare_exchange_weak(n, n + 1, Ordering::Acquire, Ordering::Relaxed) {
                    Ok(_) => break,
                    Err(cur) => n = cur,
                }
            }
        }
        let value = self.inner.slot.lock().unwrap_or_else(|e| e.into_inner()).as_ref().map(LoomArc::clone);
        let value = value.expect("loom Weak::upgrade: the value was already dropped (use after free)");
        Some(Arc { value: Some(value), inner: LoomArc::clone(&self.inner) })
    }

    #[allow(dead_code)]
    pub(crate) fn ptr_eq(a: &Self, b: &Self) -> bool {
        LoomArc::ptr_eq(&a.inner, &b.inner)
    }

    /// The value's address (valid for comparisons even after the value is gone, as std).
    pub(crate) fn as_ptr(&self) -> *const T {
        self.inner.addr as *const T
    }

    pub(crate) fn strong_count(&self) -> usize {
        self.inner.strong.load(Ordering::Acquire)
    }
}

impl<T> Clone for Weak<T> {
    fn clone(&self) -> Self {
        Weak { inner: LoomArc::clone(&self.inner) }
    }
}

impl<T> fmt::Debug for Weak<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(Weak)")
    }
}

/// Models of the stand-in itself (run by `scripts/loom.sh` from the library's loom-built unit tests).
#[cfg(all(test, flowtable_loom))]
mod tests {
    use loom::sync::atomic::{AtomicUsize, Ordering};
    use loom::sync::Arc as LoomArc;
    use loom::thread;

    use super::{Arc, Weak};

    /// A value that counts its drops.
    struct Tracked(LoomArc<AtomicUsize>);

    impl Drop for Tracked {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::Release);
        }
    }

    fn model(f: impl Fn() + Sync + Send + 'static) {
        super::super::loom_mutant::set_from_env();
        loom::model(f);
    }

    fn drops(counter: &LoomArc<AtomicUsize>) -> usize {
        counter.load(Ordering::Acquire)
    }

    /// `upgrade` races the drop of the last strong handle: it gets the live value or nothing; the
    /// value is dropped exactly once, when the count reaches 0, and never seen after.
    /// Mutants: upgrade_no_cas
    #[test]
    fn loom_rc_upgrade_vs_last_drop() {
        model(|| {
            let counter = LoomArc::new(AtomicUsize::new(0));
            let strong = Arc::new(Tracked(LoomArc::clone(&counter)));
            let weak: Weak<Tracked> = Arc::downgrade(&strong);
            let c2 = LoomArc::clone(&counter);
            let upgrader = thread::spawn(move || {
                if let Some(s) = weak.upgrade() {
                    assert_eq!(drops(&c2), 0, "upgrade returned a dropped value");
                    assert!(Arc::strong_count(&s) >= 1);
                    drop(s);
                }
                let again = weak.upgrade();
                let dropped = drops(&c2);
                assert!(again.is_none() || dropped == 0, "second upgrade {:?}, drops {dropped}", again.is_some());
            });
            drop(strong);
            upgrader.join().unwrap();
            assert_eq!(drops(&counter), 1, "the value must be dropped exactly once");
        });
    }

    /// `try_unwrap` races `upgrade` and a clone's drop: exactly one owner gets the value out or
    /// drops it; an upgrade after the count reached 0 fails.
    /// Mutants: upgrade_no_cas
    #[test]
    fn loom_rc_try_unwrap_vs_upgrade() {
        model(|| {
            let counter = LoomArc::new(AtomicUsize::new(0));
            let strong = Arc::new(Tracked(LoomArc::clone(&counter)));
            let weak = Arc::downgrade(&strong);
            let c2 = LoomArc::clone(&counter);
            let upgrader = thread::spawn(move || {
                let up = weak.upgrade();
                if up.is_some() {
                    assert_eq!(drops(&c2), 0, "upgrade returned a dropped value");
                }
                drop(up);
                assert!(Weak::ptr_eq(&weak, &weak.clone()));
            });
            match Arc::try_unwrap(strong) {
                Ok(v) => {
                    assert_eq!(drops(&counter), 0);
                    drop(v);
                }
                Err(s) => drop(s),
            }
            upgrader.join().unwrap();
            assert_eq!(drops(&counter), 1, "the value must be dropped exactly once");
        });
    }
}
