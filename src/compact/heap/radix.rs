//! The main timer structure of a shard: a radix heap of record indices (4 bytes per entry) keyed
//! by the deadline each record is filed under, which the record itself stores.
//!
//! A radix heap is a monotone priority queue: every key pushed is at least `last`, the key of the
//! latest redistribution (smaller keys are filed beside `last`, as due at once). Bucket 0 holds the
//! entries whose key is at most `last`; bucket `b >= 1` those whose key first differs from `last`
//! in bit `b - 1` (counting from the least significant), so bucket `b` holds keys in
//! `(last, last + 2^b)`. When bucket 0 is empty the first non-empty bucket's smallest key (kept
//! per bucket) becomes `last` and that bucket's entries move to lower buckets. An entry moves at
//! most 32 times in all, and the moves read independent records, so the reads overlap (the
//! redistribution prefetches a block's records before reading them). A binary heap's sift-down,
//! by contrast, is a chain of dependent record reads: on a table larger than the caches, about 20
//! DRAM round trips per expired flow.
//!
//! Entries live in 128-byte blocks (30 entries, a link and a count) from a pool of chunks that
//! never move; a bucket is a linked list of blocks, filled at its head. Freed blocks go back to the
//! pool, so at steady size nothing is allocated.
//!
//! All of it runs under the shard lock; no atomics here.
#![forbid(unsafe_code)]

/// Entries per block.
#[cfg(not(flowtable_loom))]
const PER_BLOCK: usize = 30;
/// Entries per block under loom: two, so that a model with a handful of timers spans several
/// blocks (and an expiry pass gives the shard lock up between them, C10a).
#[cfg(flowtable_loom)]
const PER_BLOCK: usize = 2;
/// No block.
const NIL: u32 = u32::MAX;
/// Buckets: 0 (at most `last`) and one per bit of a `u32` key.
const BUCKETS: usize = 33;
/// Block ids are `chunk << CHUNK_SHIFT | offset`.
const CHUNK_SHIFT: u32 = 16;
/// The largest chunk, in blocks (a chunk made by `reserve` may be larger, up to `1 << CHUNK_SHIFT`).
const MAX_CHUNK: usize = 2048;
/// The first chunk, in blocks.
const MIN_CHUNK: usize = 4;

/// 128 bytes: two cache lines.
#[derive(Clone, Copy)]
#[repr(C)]
struct Block {
    next: u32,
    len: u32,
    items: [u32; PER_BLOCK],
}

const EMPTY_BLOCK: Block = Block { next: NIL, len: 0, items: [0; PER_BLOCK] };

/// Blocks in chunks that never move; a free list threaded through `next`.
#[derive(Default)]
struct Pool {
    chunks: Vec<Box<[Block]>>,
    free: Option<u32>,
    /// Blocks in all chunks.
    total: usize,
}

impl Pool {
    #[inline]
    fn get(&self, id: u32) -> &Block {
        &self.chunks[(id >> CHUNK_SHIFT) as usize][(id & ((1 << CHUNK_SHIFT) - 1)) as usize]
    }

    #[inline]
    fn get_mut(&mut self, id: u32) -> &mut Block {
        &mut self.chunks[(id >> CHUNK_SHIFT) as usize][(id & ((1 << CHUNK_SHIFT) - 1)) as usize]
    }

    /// Adds a chunk of `n` blocks to the free list.
    fn add_chunk(&mut self, n: usize) {
        let n = n.clamp(1, 1 << CHUNK_SHIFT);
        let c = self.chunks.len() as u32;
        assert!(c < (1 << (32 - CHUNK_SHIFT)) - 1, "timer pool: too many chunks");
        let mut chunk = vec![EMPTY_BLOCK; n].into_boxed_slice();
        for (i, b) in chunk.iter_mut().enumerate() {
            b.next = if i + 1 < n { c << CHUNK_SHIFT | (i as u32 + 1) } else { self.free.unwrap_or(NIL) };
        }
        self.free = Some(c << CHUNK_SHIFT);
        self.chunks.push(chunk);
        self.total += n;
    }

    fn alloc(&mut self) -> u32 {
        if self.free.is_none() {
            // Geometric up to MAX_CHUNK: small tables stay small, large ones waste < MAX_CHUNK.
            self.add_chunk((self.total / 2).clamp(MIN_CHUNK, MAX_CHUNK));
        }
        let id = self.free.expect("a chunk was just added");
        let b = self.get_mut(id);
        let next = b.next;
        b.next = NIL;
        b.len = 0;
        self.free = (next != NIL).then_some(next);
        id
    }

    fn release(&mut self, id: u32) {
        let free = self.free.unwrap_or(NIL);
        self.get_mut(id).next = free;
        self.free = Some(id);
    }

    fn memory(&self) -> usize {
        self.total * std::mem::size_of::<Block>() + self.chunks.capacity() * std::mem::size_of::<Box<[Block]>>()
    }
}

#[derive(Clone, Copy)]
struct Bucket {
    /// The block being filled (the list runs from it through `next`).
    head: u32,
    /// The smallest key in the bucket (`u32::MAX` when empty); unused for bucket 0.
    min: u32,
    /// The block holding an entry with key `min` (entries never move between blocks of a list).
    min_block: u32,
}

const EMPTY_BUCKET: Bucket = Bucket { head: NIL, min: u32::MAX, min_block: NIL };

/// What [`Radix::pop_due`] found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Pop {
    /// An entry whose key is due.
    Item(u32),
    /// Nothing is due.
    Nothing,
    /// The call's redistribution work ran out first; due entries may remain.
    Later,
}

/// A radix heap of `u32` entries whose keys the caller computes (`key`), and whose entries name
/// memory the redistribution may prefetch (`addr`).
pub(crate) struct Radix {
    buckets: [Bucket; BUCKETS],
    /// The entries of a bucket being redistributed, not yet moved (keys at least `last`); a list
    /// of blocks, `NIL` when none. Pops move it a block at a time.
    pending: u32,
    last: u32,
    len: usize,
    pool: Pool,
}

impl std::fmt::Debug for Radix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Radix").field("len", &self.len).field("last", &self.last).finish_non_exhaustive()
    }
}

impl Default for Radix {
    fn default() -> Self {
        Radix::with_capacity(0)
    }
}

/// The bucket of key `k` when the heap's last key is `last`.
#[inline]
fn bucket_of(k: u32, last: u32) -> usize {
    if k <= last {
        0
    } else {
        (32 - (k ^ last).leading_zeros()) as usize
    }
}

impl Radix {
    /// A heap with room for `n` entries before its first allocation after this one.
    pub(crate) fn with_capacity(n: usize) -> Self {
        let mut pool = Pool::default();
        if n > 0 {
            // Every bucket may hold one partly filled block.
            let blocks = n.div_ceil(PER_BLOCK) + BUCKETS;
            let mut left = blocks;
            while left > 0 {
                let c = left.min(1 << CHUNK_SHIFT);
                pool.add_chunk(c);
                left -= c;
            }
        }
        Radix { buckets: [EMPTY_BUCKET; BUCKETS], pending: NIL, last: 0, len: 0, pool }
    }

    /// Entries filed.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Bytes held (every block of the pool, used or free, and the chunk directory).
    pub(crate) fn memory(&self) -> usize {
        self.pool.memory()
    }

    /// Files `item` under key `k` (a key below the last one is filed as due at once).
    pub(crate) fn push(&mut self, item: u32, k: u32) {
        let b = bucket_of(k, self.last);
        self.append(b, item);
        let bk = &mut self.buckets[b];
        if k < bk.min {
            bk.min = k;
            bk.min_block = bk.head; // `append` put the entry in the head block
        }
        self.len += 1;
    }

    fn append(&mut self, b: usize, item: u32) {
        let head = self.buckets[b].head;
        let head = if head == NIL || self.pool.get(head).len as usize == PER_BLOCK {
            let id = self.pool.alloc();
            self.pool.get_mut(id).next = head;
            self.buckets[b].head = id;
            id
        } else {
            head
        };
        let blk = self.pool.get_mut(head);
        blk.items[blk.len as usize] = item;
        blk.len += 1;
    }

    /// Takes one entry of bucket `b`, if any.
    fn take(&mut self, b: usize) -> Option<u32> {
        let head = self.buckets[b].head;
        if head == NIL {
            return None;
        }
        let blk = self.pool.get_mut(head);
        blk.len -= 1;
        let item = blk.items[blk.len as usize];
        if blk.len == 0 {
            let next = blk.next;
            self.pool.release(head);
            self.buckets[b].head = next;
            if next == NIL {
                self.buckets[b] = EMPTY_BUCKET;
            }
        }
        self.len -= 1;
        Some(item)
    }

    /// The smallest key of an entry, if any: exact except that entries filed beside `last` (a key
    /// below it when pushed) count as `last`.
    pub(crate) fn peek_key(&self) -> Option<u32> {
        if self.buckets[0].head != NIL || self.pending != NIL {
            return Some(self.last);
        }
        self.buckets[1..].iter().find(|b| b.head != NIL).map(|b| b.min)
    }

    /// Pops an entry whose key is at most `now_key`, if there is one. `key` gives an entry's key,
    /// `addr` the memory `key` reads (prefetched ahead of the reads). `work` is how many blocks
    /// of a redistribution this call may still move; when it runs out before an entry is found,
    /// the answer is [`Pop::Later`] and the redistribution resumes at the next call.
    pub(crate) fn pop_due(
        &mut self,
        now_key: u32,
        key: impl Fn(u32) -> u32,
        addr: impl Fn(u32) -> *const u8,
        work: &mut usize,
    ) -> Pop {
        if now_key < self.last {
            // Time went back: only bucket 0 may hold keys this small (pending entries are at
            // least `last`).
            return self.take_where(0, |e| key(e) <= now_key).map_or(Pop::Nothing, Pop::Item);
        }
        loop {
            if self.buckets[0].head != NIL {
                break;
            }
            if self.pending != NIL {
                if *work == 0 {
                    return Pop::Later;
                }
                *work -= 1;
                self.move_pending_block(&key, &addr);
                continue;
            }
            let Some(b) = (1..BUCKETS).find(|&b| self.buckets[b].head != NIL) else { return Pop::Nothing };
            if self.buckets[b].min > now_key {
                return Pop::Nothing;
            }
            // Bucket b's smallest key becomes the last one; its entries all belong to lower
            // buckets now, and move there a block at a time (the block holding the smallest key
            // first, so that the first step already yields a due entry).
            self.last = self.buckets[b].min;
            let bk = std::mem::replace(&mut self.buckets[b], EMPTY_BUCKET);
            self.pending = self.front_load(bk.head, bk.min_block);
        }
        let item = self.take(0).expect("bucket 0 is not empty");
        // The next entries of bucket 0 are popped next: fetch their records meanwhile.
        let head = self.buckets[0].head;
        if head != NIL {
            let blk = self.pool.get(head);
            if blk.len >= 4 {
                super::super::slots::prefetch(addr(blk.items[blk.len as usize - 4]));
            }
        }
        Pop::Item(item)
    }

    /// The list starting at `head` with block `first` moved to its front.
    fn front_load(&mut self, head: u32, first: u32) -> u32 {
        if first == NIL || first == head {
            return head;
        }
        let mut id = head;
        while id != NIL {
            let next = self.pool.get(id).next;
            if next == first {
                let after = self.pool.get(first).next;
                self.pool.get_mut(id).next = after;
                self.pool.get_mut(first).next = head;
                return first;
            }
            id = next;
        }
        head
    }

    /// Moves the entries of the first pending block to the buckets they belong to (all keys in
    /// it are at least `last`).
    fn move_pending_block(&mut self, key: &impl Fn(u32) -> u32, addr: &impl Fn(u32) -> *const u8) {
        let id = self.pending;
        let blk = *self.pool.get(id);
        self.pool.release(id);
        self.pending = blk.next;
        if blk.next != NIL {
            super::super::slots::prefetch((self.pool.get(blk.next) as *const Block).cast());
        }
        let items = &blk.items[..blk.len as usize];
        for &e in items {
            super::super::slots::prefetch(addr(e));
        }
        for &e in items {
            let k = key(e);
            debug_assert!(k >= self.last, "radix heap: pending key below last");
            self.len -= 1;
            self.push(e, k);
        }
    }

    /// Takes one entry of bucket `b` that `pred` selects (a linear scan of the bucket).
    fn take_where(&mut self, b: usize, pred: impl Fn(u32) -> bool) -> Option<u32> {
        let head = self.buckets[b].head;
        let mut id = head;
        while id != NIL {
            let blk = self.pool.get(id);
            if let Some(pos) = blk.items[..blk.len as usize].iter().position(|&e| pred(e)) {
                let item = blk.items[pos];
                // Fill the hole with the head block's last entry, then drop that one.
                let hb = self.pool.get(head);
                let moved = hb.items[hb.len as usize - 1];
                self.pool.get_mut(id).items[pos] = moved;
                let took = self.take(b);
                debug_assert_eq!(took, Some(moved));
                return Some(item);
            }
            id = blk.next;
        }
        None
    }

    /// Removes every entry `pred` selects into `out` (O(n)); the others keep their places' keys.
    pub(crate) fn remove_where(&mut self, pred: impl Fn(u32) -> bool, key: impl Fn(u32) -> u32, out: &mut Vec<u32>) {
        let mut keep = Vec::new();
        self.drain_into(&mut keep);
        for e in keep {
            if pred(e) {
                out.push(e);
            } else {
                self.push(e, key(e));
            }
        }
    }

    /// Re-files every entry under new keys (after the keys were recomputed): `last` restarts at 0.
    pub(crate) fn rebuild(&mut self, key: impl Fn(u32) -> u32) {
        let mut all = Vec::with_capacity(self.len);
        self.drain_into(&mut all);
        self.last = 0;
        for e in all {
            self.push(e, key(e));
        }
    }

    /// Takes every entry out.
    pub(crate) fn drain_into(&mut self, out: &mut Vec<u32>) {
        self.drain(|e| out.push(e));
    }

    /// Takes every entry out, handing each to `f`; the blocks go back to the pool.
    pub(crate) fn drain(&mut self, mut f: impl FnMut(u32)) {
        let pending = std::mem::replace(&mut self.pending, NIL);
        for b in 0..=BUCKETS {
            let mut id = if b < BUCKETS { std::mem::replace(&mut self.buckets[b], EMPTY_BUCKET).head } else { pending };
            while id != NIL {
                let blk = self.pool.get(id);
                blk.items[..blk.len as usize].iter().for_each(|&e| f(e));
                let next = blk.next;
                self.pool.release(id);
                id = next;
            }
        }
        self.len = 0;
    }

    /// Calls `f` on every entry.
    pub(crate) fn for_each(&self, mut f: impl FnMut(u32)) {
        for head in self.buckets.iter().map(|b| b.head).chain(std::iter::once(self.pending)) {
            let mut id = head;
            while id != NIL {
                let blk = self.pool.get(id);
                blk.items[..blk.len as usize].iter().for_each(|&e| f(e));
                id = blk.next;
            }
        }
    }

    /// Asserts the radix order (C10): every entry in the bucket its key belongs to, no key below
    /// its bucket's minimum, the count right.
    #[cfg(any(test, debug_assertions))]
    pub(crate) fn validate(&self, key: impl Fn(u32) -> u32) {
        let mut n = 0;
        for (b, bk) in self.buckets.iter().enumerate() {
            let mut id = bk.head;
            while id != NIL {
                let blk = self.pool.get(id);
                assert!(blk.len as usize <= PER_BLOCK && (blk.len > 0 || id != bk.head || blk.next == NIL));
                for &e in &blk.items[..blk.len as usize] {
                    let k = key(e);
                    assert_eq!(bucket_of(k, self.last), b, "C10: radix entry in the wrong bucket");
                    assert!(b == 0 || k >= bk.min, "C10: radix key below its bucket's minimum");
                    n += 1;
                }
                id = blk.next;
            }
        }
        let mut id = self.pending;
        while id != NIL {
            let blk = self.pool.get(id);
            for &e in &blk.items[..blk.len as usize] {
                assert!(key(e) >= self.last, "C10: pending radix key below last");
                n += 1;
            }
            id = blk.next;
        }
        assert_eq!(n, self.len, "C10: radix count");
    }
}

#[cfg(all(test, not(flowtable_loom)))]
mod tests {
    use super::*;

    fn null(_: u32) -> *const u8 {
        std::ptr::null()
    }

    /// Pops with unlimited redistribution work.
    fn pop(h: &mut Radix, now: u32, keys: &[u32]) -> Option<u32> {
        match h.pop_due(now, |e| keys[e as usize], null, &mut usize::MAX.clone()) {
            Pop::Item(e) => Some(e),
            Pop::Nothing => None,
            Pop::Later => unreachable!("unlimited work"),
        }
    }

    /// With one block of work per call, a storm of equal keys is popped completely, each call
    /// moving at most one block; nothing is lost or popped twice.
    #[test]
    fn bounded_work_per_call() {
        let n = 3000u32;
        let keys: Vec<u32> = (0..n).map(|i| if i % 2 == 0 { 500 } else { 400 + i % 200 }).collect();
        let mut h = Radix::with_capacity(0);
        for i in 0..n {
            h.push(i, keys[i as usize]);
        }
        let (mut got, mut laters) = (Vec::new(), 0);
        loop {
            let mut work = 1;
            match h.pop_due(550, |e| keys[e as usize], null, &mut work) {
                Pop::Item(e) => got.push(e),
                Pop::Later => laters += 1,
                Pop::Nothing => break,
            }
            h.validate(|e| keys[e as usize]);
        }
        let due = (0..n).filter(|&i| keys[i as usize] <= 550).count();
        assert!(laters > 0, "the work limit was never reached");
        assert_eq!(got.len(), due);
        got.sort_unstable();
        got.dedup();
        assert_eq!(got.len(), due);
    }

    /// Pushes while a redistribution is pending (an expiry pass that gave the shard lock up
    /// between blocks of work lets creations file timers meanwhile): every key at least `last`
    /// finds its bucket, one below it is due at once, and every due entry is popped exactly once.
    #[test]
    fn pushes_while_a_redistribution_is_pending() {
        let mut keys: Vec<u32> = (0..3000u32).map(|i| 1000 + i.wrapping_mul(2_654_435_761) % 5000).collect();
        let mut h = Radix::with_capacity(0);
        for (i, &k) in keys.iter().enumerate() {
            h.push(i as u32, k);
        }
        let (now, mut got, mut pushed) = (4000u32, Vec::new(), 0);
        loop {
            let mut work = 1;
            match h.pop_due(now, |e| keys[e as usize], null, &mut work) {
                Pop::Item(e) => got.push(e),
                Pop::Nothing => break,
                Pop::Later => {
                    assert!(h.pending != NIL, "work ran out with nothing pending");
                    // A creation files a timer: mostly later than `last`, now and then earlier.
                    let e = keys.len() as u32;
                    let k = if pushed % 5 == 0 { h.last.saturating_sub(7) } else { h.last + 1 + (pushed * 37) % 9000 };
                    keys.push(k);
                    h.push(e, k);
                    pushed += 1;
                }
            }
            h.validate(|e| keys[e as usize]);
        }
        assert!(pushed > 10, "few pushes landed during a redistribution ({pushed})");
        let mut due: Vec<u32> = (0..keys.len() as u32).filter(|&e| keys[e as usize] <= now).collect();
        got.sort_unstable();
        due.sort_unstable();
        assert_eq!(got, due, "every due entry, once");
        assert_eq!(h.len(), keys.len() - due.len());
    }

    /// Pops everything due at each step of a rising clock, checking order and completeness
    /// against a sorted model.
    #[test]
    fn pops_due_entries_in_key_order() {
        let n = 5000u32;
        let keys: Vec<u32> = (0..n).map(|i| i.wrapping_mul(2_654_435_761) % 100_000).collect();
        let mut h = Radix::with_capacity(0);
        for i in 0..n {
            h.push(i, keys[i as usize]);
        }
        h.validate(|e| keys[e as usize]);
        let mut popped = Vec::new();
        let mut now = 0;
        while now < 100_000 {
            now += 777;
            let mut prev = 0;
            while let Some(e) = pop(&mut h, now, &keys) {
                let k = keys[e as usize];
                assert!(k <= now && k >= prev, "key {k} out of order (prev {prev}, now {now})");
                prev = k;
                popped.push(e);
            }
            h.validate(|e| keys[e as usize]);
            assert!(h.peek_key().map_or(true, |k| k > now));
        }
        popped.sort_unstable();
        assert_eq!(popped, (0..n).collect::<Vec<_>>());
        assert_eq!(h.len(), 0);
    }

    /// Pushes between pops (refiling as the expiry pass does), keys below `last`, time going back.
    #[test]
    fn interleaved_pushes_and_time_going_back() {
        let mut keys = vec![0u32; 100];
        let mut h = Radix::with_capacity(10);
        for (i, k) in keys.iter_mut().enumerate() {
            *k = 1000 + i as u32 * 10;
            h.push(i as u32, *k);
        }
        // Pop up to 1500, refile every popped entry 2000 later.
        let mut refiled = Vec::new();
        while let Some(e) = pop(&mut h, 1500, &keys) {
            refiled.push(e);
        }
        assert_eq!(refiled.len(), 51);
        for &e in &refiled {
            keys[e as usize] += 2000;
            h.push(e, keys[e as usize]);
        }
        h.validate(|e| keys[e as usize]);
        // An entry filed below `last` is due at once, and found when time goes back.
        keys.push(5);
        h.push(100, 5);
        assert_eq!(pop(&mut h, 10, &keys), Some(100));
        assert_eq!(pop(&mut h, 10, &keys), None);
        let mut all = Vec::new();
        while let Some(e) = pop(&mut h, u32::MAX, &keys) {
            all.push(e);
        }
        all.sort_unstable();
        assert_eq!(all, (0..100).collect::<Vec<_>>());
        // Every block went back to the pool and is reused.
        let mem = h.memory();
        for i in 0..100 {
            h.push(i, 10_000 + i);
        }
        assert_eq!(h.memory(), mem);
    }

    #[test]
    fn remove_where_and_rebuild_keep_the_rest() {
        let keys: Vec<u32> = (0..300).map(|i| 50 + (i * 37) % 300).collect();
        let mut h = Radix::with_capacity(300);
        for i in 0..300 {
            h.push(i, keys[i as usize]);
        }
        assert!(pop(&mut h, 60, &keys).is_some());
        let mut out = Vec::new();
        h.remove_where(|e| e % 3 == 0, |e| keys[e as usize], &mut out);
        h.validate(|e| keys[e as usize]);
        let shifted: Vec<u32> = keys.iter().map(|k| k + 7).collect();
        h.rebuild(|e| shifted[e as usize]);
        h.validate(|e| shifted[e as usize]);
        let mut rest = Vec::new();
        h.drain_into(&mut rest);
        assert_eq!(rest.len() + out.len(), 299);
        assert!(out.iter().all(|e| e % 3 == 0) && rest.iter().all(|e| e % 3 != 0));
    }
}
