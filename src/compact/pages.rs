//! Slot arrays that the kernel may back with 2 MiB pages (transparent huge pages).
//!
//! A lookup in a table of ten million flows reads a random slot: a cache miss, and with 4 KiB
//! pages a TLB miss too, whose page walk (two-dimensional under a hypervisor) misses the cache
//! again. With 2 MiB pages the slot arrays of the whole table need a few dozen TLB entries, and
//! growth takes 512 times fewer page faults. Measured with `flowbench --flows 10000000`, slot
//! arrays on huge pages raised `insert` and `get` by about a tenth each (`design/memory.md`).
//!
//! Record chunks stay on base pages. On huge pages `get` at 10^7 gains about a tenth, but `insert`
//! loses more than that on the virtual machines this crate is measured on: a table's records are
//! first touched as it grows, and there a fresh 2 MiB page is often dear. The guest reports free
//! 2 MiB blocks to the host (virtio-balloon free page reporting) about two seconds after they are
//! freed, and the first touch of a reported block waits for the host to fault it back in (7 ms a
//! page, against 0.4 ms for a 2 MiB page freed a moment ago and 1.2 ms for 512 base pages, records
//! written included).
//! Measured figures: `design/memory.md`.
//!
//! The hint is `madvise(MADV_HUGEPAGE)`, honoured when the system's transparent huge page mode
//! is `madvise` or `always` (`/sys/kernel/mm/transparent_hugepage/enabled`) and ignored when it
//! is `never` or off Linux. It never changes what is allocated: the memory comes from the global
//! allocator in the same size (so a counting allocator sees the same bytes), only aligned to
//! 2 MiB when it is that large. Slot arrays are written whole when they are made, so huge pages
//! make no byte resident that base pages would not; only whole 2 MiB pages inside an allocation
//! are advised.
#![allow(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]

use std::alloc::{alloc, dealloc, handle_alloc_error, Layout};
use std::marker::PhantomData;
use std::mem::{align_of, size_of};
use std::ops::Deref;
use std::ptr::NonNull;

/// The size (and alignment) of a huge page on x86-64 and aarch64 with 4 KiB base pages.
const HUGE: usize = 2 << 20;

/// Advises the kernel to back the whole 2 MiB pages inside `[p, p + bytes)` with huge pages.
/// A hint: it may be ignored, and an error is ignored.
fn advise_huge(p: *mut u8, bytes: usize) {
    let start = (p as usize).next_multiple_of(HUGE);
    let end = (p as usize).saturating_add(bytes) / HUGE * HUGE;
    #[cfg(all(target_os = "linux", not(flowtable_loom), not(miri)))]
    if end > start {
        // SAFETY: `madvise` with `MADV_HUGEPAGE` changes no contents and no mapping, only how
        // future faults in the range are served; the range lies inside memory the caller owns,
        // page aligned.
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
        }
    }
    #[cfg(not(all(target_os = "linux", not(flowtable_loom), not(miri))))]
    let _ = (start, end);
}

/// A fixed-length array, allocated from the global allocator and, when it spans 2 MiB or more,
/// aligned to 2 MiB and advised to huge pages before its elements are written.
pub(crate) struct PageArray<T> {
    ptr: NonNull<T>,
    len: usize,
    _owns: PhantomData<T>,
}

// SAFETY: a `PageArray<T>` owns its elements as a `Box<[T]>` would.
unsafe impl<T: Send> Send for PageArray<T> {}
// SAFETY: shared access only hands out `&[T]`, as a `Box<[T]>` would.
unsafe impl<T: Sync> Sync for PageArray<T> {}

impl<T> PageArray<T> {
    fn layout(len: usize) -> Layout {
        let bytes = size_of::<T>().checked_mul(len).expect("PageArray: size overflow");
        let align = if bytes >= HUGE { HUGE } else { align_of::<T>() };
        Layout::from_size_align(bytes, align).expect("PageArray: layout")
    }

    /// An array of `len` elements, element `i` being `init(i)`.
    pub(crate) fn new(len: usize, mut init: impl FnMut(usize) -> T) -> Self {
        assert!(size_of::<T>() > 0 && len > 0, "PageArray: no zero-sized arrays");
        let layout = Self::layout(len);
        // SAFETY: the layout has a non-zero size (checked above).
        let base = unsafe { alloc(layout) };
        let Some(ptr) = NonNull::new(base.cast::<T>()) else { handle_alloc_error(layout) };
        advise_huge(base, layout.size());
        for i in 0..len {
            // SAFETY: `i < len`, inside the allocation, which is aligned for `T`; each element is
            // written once. `init` may panic: then the elements written so far are leaked with
            // the allocation (no element is dropped uninitialised).
            unsafe { ptr.as_ptr().add(i).write(init(i)) };
        }
        PageArray { ptr, len, _owns: PhantomData }
    }
}

impl<T> Deref for PageArray<T> {
    type Target = [T];
    #[inline]
    fn deref(&self) -> &[T] {
        // SAFETY: `ptr` holds `len` initialised elements (written in `new`) until `drop`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl<T> Drop for PageArray<T> {
    fn drop(&mut self) {
        // SAFETY: the `len` elements are initialised and dropped only here; the memory came from
        // `alloc` with the same layout.
        unsafe {
            std::ptr::drop_in_place(std::ptr::slice_from_raw_parts_mut(self.ptr.as_ptr(), self.len));
            dealloc(self.ptr.as_ptr().cast(), Self::layout(self.len));
        }
    }
}

#[cfg(all(test, not(flowtable_loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn small_and_large_arrays_hold_their_elements() {
        for len in [1, 3, 1000, HUGE / 8 + 5] {
            let a = PageArray::new(len, |i| i as u64 * 3);
            assert_eq!(a.len(), len);
            assert!(a.iter().enumerate().all(|(i, &v)| v == i as u64 * 3));
            let align = if len * 8 >= HUGE { HUGE } else { 8 };
            assert_eq!(a.as_ptr() as usize % align, 0);
        }
    }

    #[test]
    fn elements_are_dropped_once() {
        static DROPS: AtomicUsize = AtomicUsize::new(0);
        struct D(#[allow(dead_code)] u8);
        impl Drop for D {
            fn drop(&mut self) {
                DROPS.fetch_add(1, Ordering::Relaxed);
            }
        }
        drop(PageArray::new(17, |_| D(0)));
        assert_eq!(DROPS.load(Ordering::Relaxed), 17);
    }

    #[test]
    fn advice_outside_whole_huge_pages_is_a_no_op() {
        let mut v = vec![0u8; 4096];
        advise_huge(v.as_mut_ptr(), v.len());
        advise_huge(std::ptr::null_mut(), 0);
        assert!(v.iter().all(|&b| b == 0));
    }
}
