//! The record arena of one shard: fixed-size chunks that never move, each aligned to its own size
//! with a header at its start, so that a record finds its shard by masking its address (no
//! per-record pointer). Records are named by a `u32` index; freed records go on an intrusive free
//! list (threaded through their time words) and are reused.
//!
//! Also here: [`ShardPtr`], the counted pointer that keeps a shard (and so its arena) alive while
//! the table or any record of the shard is (C8).
#![allow(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]

use std::alloc::{alloc, dealloc, handle_alloc_error, Layout};
use std::marker::PhantomData;
use std::mem::{align_of, size_of};
use std::ptr::NonNull;

use super::id::refw;
use super::id::slot::MAX_RECORDS;
use super::rc::{Creation, Record, RecordRef};
use super::shard::Shard;
use crate::sync::atomic::{AtomicPtr, AtomicU32, Ordering};
use crate::sync::CachePadded;

/// Chunks per directory block, and blocks in the directory.
const BLOCK: usize = 1024;

/// No next free record.
pub(crate) const NONE: u32 = u32::MAX;

#[repr(C)]
struct ChunkHeader {
    /// The shard owning the chunk.
    owner: *const (),
    /// The index of the chunk's first record.
    first: u32,
}

/// The geometry of a chunk of `Record<K, V>`s.
struct Geometry<K, V>(PhantomData<(K, V)>);

impl<K, V> Geometry<K, V> {
    const REC: usize = size_of::<Record<K, V>>();
    /// Bytes (and alignment) of a chunk: 1 MiB, or more for records so large that fewer than 256
    /// would fit. Large, so that the allocator's per-allocation cost of an aligned chunk (a page
    /// for an `mmap`ed one) is small; records are initialised as they are handed out, so untouched
    /// pages of a young chunk cost no memory.
    const BYTES: usize = {
        let need = (size_of::<ChunkHeader>() + 64) + Self::REC * 256;
        if need > 1 << 20 {
            need.next_power_of_two()
        } else {
            1 << 20
        }
    };
    /// Offset of the first record.
    const OFFSET: usize = {
        let a = align_of::<Record<K, V>>();
        let h = size_of::<ChunkHeader>();
        h.div_ceil(a) * a
    };
    /// Records per chunk.
    const PER: usize = (Self::BYTES - Self::OFFSET) / Self::REC;

    fn layout() -> Layout {
        Layout::from_size_align(Self::BYTES, Self::BYTES).expect("chunk layout")
    }
}

type Block = [AtomicPtr<u8>; BLOCK];

/// One shard's records.
pub(crate) struct Arena<K, V> {
    /// The owning shard, set once right after the shard is boxed.
    owner: AtomicPtr<()>,
    /// Two-level chunk directory; pointers are published with Release before any slot names a
    /// record in them and never change afterwards (C6).
    top: Box<[AtomicPtr<Block>]>,
    /// Records handed out so far (the bump index); written under the shard lock.
    /// Its own cache lines: lookups read `top`, not this.
    len: CachePadded<AtomicU32>,
    _marker: PhantomData<Record<K, V>>,
}

// SAFETY: the arena hands out `&Record`s whose shared use is synchronised by their atomics, and
// its raw pointers are to memory it owns.
unsafe impl<K: Send + Sync, V: Send + Sync> Send for Arena<K, V> {}
// SAFETY: as above.
unsafe impl<K: Send + Sync, V: Send + Sync> Sync for Arena<K, V> {}

impl<K, V> Arena<K, V> {
    pub(crate) fn new() -> Self {
        let chunks = (MAX_RECORDS as usize).div_ceil(Geometry::<K, V>::PER);
        let blocks = chunks.div_ceil(BLOCK);
        Arena {
            owner: AtomicPtr::new(std::ptr::null_mut()),
            top: (0..blocks).map(|_| AtomicPtr::new(std::ptr::null_mut())).collect(),
            len: CachePadded(AtomicU32::new(0)),
            _marker: PhantomData,
        }
    }

    fn chunk(&self, c: usize) -> *mut u8 {
        // Acquire: pairs with the Release publication of the block and chunk (C6).
        let b = self.top[c / BLOCK].load(Ordering::Acquire);
        assert!(!b.is_null(), "record index beyond the arena");
        // SAFETY: a non-null block pointer is a live `Box<Block>` owned by the arena (C6).
        let p = unsafe { (*b)[c % BLOCK].load(Ordering::Acquire) };
        assert!(!p.is_null(), "record index beyond the arena");
        p
    }

    /// Where record `idx` lies, in a chunk already allocated (not dereferenced).
    #[inline]
    fn ptr(&self, idx: u32) -> *const Record<K, V> {
        let per = Geometry::<K, V>::PER;
        let (c, i) = (idx as usize / per, idx as usize % per);
        let base = self.chunk(c);
        // SAFETY: `base` is a live chunk with room for `PER` records from `OFFSET` (C6), and
        // `i < PER`, so the offset stays inside it.
        unsafe { base.add(Geometry::<K, V>::OFFSET + i * Geometry::<K, V>::REC).cast::<Record<K, V>>() }
    }

    /// The record at `idx`, which was handed out by `alloc` (any slot or heap entry names only such).
    #[inline]
    pub(crate) fn get(&self, idx: u32) -> &Record<K, V> {
        // SAFETY: a record handed out by `alloc` is initialised (C6); chunks are freed only when
        // the arena drops, which `&self` outlives.
        unsafe { &*self.ptr(idx) }
    }

    /// A reference to record `idx` if it still has generation `gen` and is alive (C2).
    #[inline]
    pub(crate) fn try_ref(&self, idx: u32, gen: u8) -> Option<RecordRef<K, V>> {
        let rec = self.get(idx);
        // Half the records cross a cache-line boundary (40 bytes from a 16-byte offset), and then
        // the key or the value lies in the second line: fetch it while the CAS below waits for the
        // first, instead of missing on it after.
        super::slots::prefetch(Self::last_byte(rec));
        // SAFETY: `rec` lives in this arena and `try_acquire` took one count for the new ref.
        rec.try_acquire(gen).then(|| unsafe { RecordRef::adopt(rec) })
    }

    /// Makes record `idx`, just handed out by `alloc` under the shard lock, a `PENDING` record of
    /// `key` with time word `time` whose main-heap entry will be filed under key `filed`, and
    /// returns the creator's reference. The entry's count is taken here too: the caller pushes
    /// the entry into the heap (`Timers::push_created`) under the same hold of the lock (C9).
    pub(crate) fn create(&self, idx: u32, key: K, time: u64, filed: u32) -> Creation<K, V> {
        let rec = self.get(idx);
        debug_assert_eq!(refw::rc(rec.refs_word()), 0);
        // SAFETY: `idx` was just allocated to the caller, so the record is unpublished and its
        // previous key was dropped (C6).
        unsafe { rec.write_key(key) };
        rec.set_time(time);
        // Release: publishes the key to any reader that takes a reference (C5).
        rec.revive_filed(filed);
        // SAFETY: `revive_filed` took the count the new ref owns (and the heap entry's); this is
        // the record's only `Creation` for this lifetime (C9).
        unsafe { Creation::new(RecordRef::adopt(rec)) }
    }

    /// The address of record `idx`, for prefetching (no dereference).
    #[inline]
    pub(crate) fn addr(&self, idx: u32) -> *const u8 {
        self.ptr(idx).cast()
    }

    /// The address of the last byte of `rec`, for prefetching its second cache line when it
    /// crosses into one (no dereference).
    #[inline]
    pub(crate) fn last_byte(rec: *const Record<K, V>) -> *const u8 {
        rec.cast::<u8>().wrapping_add(size_of::<Record<K, V>>() - 1)
    }

    /// Hands out a free record (shard lock held: `free` is the lock-protected free-list head).
    /// `None` when the shard holds the most records a slot can name.
    pub(crate) fn alloc(&self, free: &mut u32) -> Option<u32> {
        if *free != NONE {
            let idx = *free;
            *free = self.get(idx).time_word() as u32;
            if *free != NONE {
                // The next allocation reads this record's link and writes the record: start the
                // miss now, so that it overlaps the caller's work instead of stalling the next
                // creation under the lock.
                super::slots::prefetch(self.addr(*free));
            }
            return Some(idx);
        }
        let idx = self.len.load(Ordering::Relaxed);
        if idx >= MAX_RECORDS {
            return None;
        }
        let per = Geometry::<K, V>::PER;
        let (c, i) = (idx as usize / per, idx as usize % per);
        if i == 0 {
            self.new_chunk(c, idx);
        }
        // SAFETY: chunk `c` is live and has room for `PER` records from `OFFSET`; record `i` was
        // never handed out, so no one else refers to it (C6).
        unsafe {
            self.chunk(c)
                .add(Geometry::<K, V>::OFFSET + i * Geometry::<K, V>::REC)
                .cast::<Record<K, V>>()
                .write(Record::vacant());
        }
        // Release: a reader that learns the index (through a slot) sees the record initialised.
        self.len.store(idx + 1, Ordering::Release);
        if i + 1 < per {
            // The next allocation writes the next record (not yet handed out, so only its address
            // is taken): fetch its line now, as above.
            super::slots::prefetch(Self::last_byte(self.ptr(idx + 1)));
        }
        Some(idx)
    }

    fn new_chunk(&self, c: usize, first: u32) {
        let owner = self.owner.load(Ordering::Relaxed);
        assert!(!owner.is_null(), "arena used before its shard was boxed");
        let layout = Geometry::<K, V>::layout();
        // SAFETY: the layout has a non-zero size.
        let base = unsafe { alloc(layout) };
        if base.is_null() {
            handle_alloc_error(layout);
        }
        // SAFETY: `base` is a fresh allocation of `BYTES` bytes aligned to `BYTES`; the header fits
        // at its start by construction of `Geometry`. Records are initialised by `alloc`, one by
        // one, before they are handed out (C6).
        unsafe { base.cast::<ChunkHeader>().write(ChunkHeader { owner, first }) };
        let slot = &self.top[c / BLOCK];
        let mut b = slot.load(Ordering::Relaxed);
        if b.is_null() {
            let block: Box<Block> = Box::new(std::array::from_fn(|_| AtomicPtr::new(std::ptr::null_mut())));
            b = Box::into_raw(block);
            // Release: readers that see the block see it initialised (C6).
            slot.store(b, Ordering::Release);
        }
        // SAFETY: `b` is a live block owned by the arena.
        let entry = unsafe { &(*b)[c % BLOCK] };
        // Release: readers that see the chunk see its header and records initialised (C6).
        entry.store(base, Ordering::Release);
    }

    /// Puts record `idx` (contents dropped) on the free list (shard lock held).
    pub(crate) fn free(&self, free: &mut u32, idx: u32) {
        self.get(idx).set_time(u64::from(*free));
        *free = idx;
    }

    /// The shard and index of a record, found through its chunk's header.
    pub(crate) fn locate(rec: *const Record<K, V>) -> (*const Shard<K, V>, u32) {
        let base = (rec as usize) & !(Geometry::<K, V>::BYTES - 1);
        // SAFETY: every record lives in a chunk aligned to `BYTES` whose header is at its start and
        // is initialised before any record of it is handed out; the record is alive, so the chunk
        // is (C6, C8).
        let h = unsafe { &*(base as *const ChunkHeader) };
        let i = ((rec as usize) - base - Geometry::<K, V>::OFFSET) / Geometry::<K, V>::REC;
        (h.owner.cast(), h.first + i as u32)
    }

    /// Bytes held by records handed out (rounded up to pages), chunk headers and the directory.
    /// The untouched tail of the youngest chunk is address space only, and is not counted.
    pub(crate) fn memory(&self) -> usize {
        let len = self.len.load(Ordering::Relaxed) as usize;
        let per = Geometry::<K, V>::PER;
        let chunks = len.div_ceil(per);
        let full = len / per;
        let tail = len % per;
        let tail_bytes = if tail == 0 {
            0
        } else {
            (Geometry::<K, V>::OFFSET + tail * Geometry::<K, V>::REC).next_multiple_of(4096)
        };
        full * Geometry::<K, V>::BYTES + tail_bytes + chunks.div_ceil(BLOCK) * size_of::<Block>() + self.top.len() * 8
    }

    /// Records handed out so far (live, dead or free).
    #[cfg(any(test, debug_assertions))]
    pub(crate) fn len(&self) -> u32 {
        self.len.load(Ordering::Relaxed)
    }

    /// Asserts the free list's shape (C6, C8) under the shard lock: every free record was handed
    /// out, holds no reference, and appears once. Returns the free list's length.
    #[cfg(any(test, debug_assertions))]
    pub(crate) fn validate(&self, free: u32) -> usize {
        let len = self.len();
        let mut n = 0usize;
        let mut i = free;
        while i != NONE {
            assert!(i < len, "C6: free record {i} beyond the arena ({len})");
            assert_eq!(refw::rc(self.get(i).refs_word()), 0, "C9: free record {i} still referenced");
            n += 1;
            assert!(n <= len as usize, "free list has a cycle");
            i = self.get(i).time_word() as u32;
        }
        n
    }

    /// Records per chunk (for tests and docs).
    #[allow(dead_code)]
    pub(crate) fn per_chunk() -> usize {
        Geometry::<K, V>::PER
    }
}

impl<K, V> Drop for Arena<K, V> {
    fn drop(&mut self) {
        let layout = Geometry::<K, V>::layout();
        for b in self.top.iter() {
            // Acquire: pairs with the publication (`&mut self` already excludes other users).
            let b = b.load(Ordering::Acquire);
            if b.is_null() {
                continue;
            }
            // SAFETY: a non-null block pointer came from `Box::into_raw` and is freed only here.
            let block = unsafe { Box::from_raw(b) };
            for c in block.iter() {
                let p = c.load(Ordering::Relaxed);
                if !p.is_null() {
                    // SAFETY: `p` was allocated with `layout` in `new_chunk`; records hold no
                    // contents any more (every record is free when the shard drops, C8) and need no drop.
                    unsafe { dealloc(p, layout) };
                }
            }
        }
    }
}

/// A counted pointer to a boxed shard. The table holds one count per shard and every allocated
/// record holds one (C8); the shard is freed when the count reaches zero.
pub(crate) struct ShardPtr<K, V> {
    ptr: NonNull<Shard<K, V>>,
}

// SAFETY: a shard is `Sync` (its shared state is atomics and a mutex), and the count is atomic.
unsafe impl<K: Send + Sync, V: Send + Sync> Send for ShardPtr<K, V> {}
// SAFETY: as above.
unsafe impl<K: Send + Sync, V: Send + Sync> Sync for ShardPtr<K, V> {}

impl<K, V> ShardPtr<K, V> {
    /// Boxes `shard` (whose count starts at `TABLE_COUNT`: this pointer's) and tells its arena
    /// where it lives.
    pub(crate) fn new(shard: Shard<K, V>) -> Self {
        let ptr = NonNull::from(Box::leak(Box::new(shard)));
        let me = ShardPtr { ptr };
        me.arena.owner.store(ptr.as_ptr().cast(), Ordering::Relaxed);
        me
    }
}

impl<K, V> std::ops::Deref for ShardPtr<K, V> {
    type Target = Shard<K, V>;
    fn deref(&self) -> &Shard<K, V> {
        // SAFETY: our count keeps the shard allocated (C8).
        unsafe { self.ptr.as_ref() }
    }
}

impl<K, V> Drop for ShardPtr<K, V> {
    fn drop(&mut self) {
        let n = self.table_count();
        // SAFETY: we own the table's count, `n` once the allocations not yet added are taken off
        // (C8), and use the shard no more.
        unsafe { release_shard_by(self.ptr.as_ptr(), n) }
    }
}

/// The shard of a live record.
///
/// # Safety
/// - `rec` is a record of a live arena whose count the caller keeps from being released (the
///   record is allocated: alive, or dead but not yet freed), so its shard is alive (C8).
pub(crate) unsafe fn shard_of_record<'a, K, V>(rec: *const Record<K, V>) -> (&'a Shard<K, V>, u32) {
    let (s, idx) = Arena::<K, V>::locate(rec);
    // SAFETY: the record's allocation holds a count of its shard (C8).
    (unsafe { &*s }, idx)
}

/// Drops one count of a shard, freeing it at zero.
///
/// # Safety
/// - The caller owns one count of the shard at `ptr` and uses neither after the call.
pub(crate) unsafe fn release_shard<K, V>(ptr: *const Shard<K, V>) {
    // SAFETY: the caller's obligations.
    unsafe { release_shard_by(ptr, 1) }
}

/// Drops `n` counts of a shard, freeing it at zero.
///
/// # Safety
/// - The caller owns `n` counts of the shard at `ptr` and uses neither after the call.
unsafe fn release_shard_by<K, V>(ptr: *const Shard<K, V>, n: u64) {
    // SAFETY: our counts keep the shard allocated until this decrement.
    let refs = unsafe { &(*ptr).refs };
    // Release: our uses of the shard happen before it is freed (as `Arc::drop`).
    if refs.fetch_sub(n, Ordering::Release) == n {
        // Acquire load rather than a fence (ThreadSanitizer does not model fences).
        let _ = refs.load(Ordering::Acquire);
        // SAFETY: the count reached zero: no table and no record uses the shard any more; it came
        // from `Box::leak` in `ShardPtr::new` (C8).
        drop(unsafe { Box::from_raw(ptr.cast_mut()) });
    }
}

#[cfg(all(test, not(flowtable_loom)))]
mod tests {
    use super::*;

    #[test]
    fn geometry_of_the_target_record() {
        type R = Record<crate::FlowKeyV4, u64>;
        assert_eq!(size_of::<R>(), 40);
        assert_eq!(Geometry::<crate::FlowKeyV4, u64>::BYTES, 1 << 20);
        assert_eq!(Geometry::<crate::FlowKeyV4, u64>::PER, ((1 << 20) - 16) / 40);
    }
}
