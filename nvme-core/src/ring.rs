//! Submission and completion rings, shared by the admin and I/O queues,
//! and the doorbell writer (MMIO register plus shadow slot) they publish
//! through.
//!
//! Ring memory is DMA memory the device reads (SQ) or writes (CQ); it is
//! only ever touched through raw pointers with volatile accesses, never
//! through references, because the device changes it behind our back.

use std::sync::Arc;

use crate::barrier;
use crate::cmb::{Cmb, CmbSlice};
use crate::cmd::{CompletionEntry, SubmissionEntry};
use crate::error::Error;
use crate::hw::{DmaRegion, Doorbell, Hardware, Iova};

/// The EventIdx rule for shadow doorbells: after moving a doorbell value
/// from `old` to `new`, an MMIO write is needed only if the controller's
/// `event_idx` lies in `[old, new)` (mod 2^16), i.e. the controller asked to
/// be told once the value passes it. Linux's `nvme_dbbuf_need_event`.
#[inline]
pub(crate) fn need_event(event_idx: u16, new: u16, old: u16) -> bool {
    new.wrapping_sub(event_idx).wrapping_sub(1) < new.wrapping_sub(old)
}

/// The two pages of Doorbell Buffer Config: shadow doorbell values the
/// host writes, EventIdx values the controller writes. Shared (by `Arc`)
/// by the controller and every ring that publishes through them.
pub(crate) struct ShadowPages<D: DmaRegion> {
    pub(crate) doorbells: D,
    pub(crate) eventidx: D,
}

/// One doorbell's slots in the shadow doorbell and EventIdx pages.
pub(crate) struct Shadow<D: DmaRegion> {
    pages: Arc<ShadowPages<D>>,
    /// Byte offset of the slot in both pages (4-aligned).
    offset: usize,
    /// Ring the MMIO doorbell every time (admin queue), whatever EventIdx says.
    always_mmio: bool,
}

impl<D: DmaRegion> Shadow<D> {
    /// The slots at `offset`, if both pages hold a dword there.
    pub(crate) fn new(
        pages: &Arc<ShadowPages<D>>,
        offset: usize,
        always_mmio: bool,
    ) -> Option<Self> {
        let fits = |r: &D| offset % 4 == 0 && offset + 4 <= r.len();
        (fits(&pages.doorbells) && fits(&pages.eventidx)).then(|| Shadow {
            pages: Arc::clone(pages),
            offset,
            always_mmio,
        })
    }

    /// Put both slots in the state of a queue that has never been rung: 0,
    /// matching a new ring's tail/head and [`DoorbellWriter::last`]. Called
    /// before the queue is created, while the controller does not look at
    /// these slots. Without it a reused queue id inherits the previous
    /// queue's values: a stale EventIdx makes the EventIdx rule skip the
    /// MMIO doorbell for good, and a stale shadow head is taken as the new
    /// CQ's head.
    pub(crate) fn clear(&self) {
        self.pages.doorbells.write_u32(self.offset, 0);
        self.pages.eventidx.write_u32(self.offset, 0);
    }

    /// Publish `new` in the shadow slot; true if the MMIO doorbell must
    /// be written too.
    #[inline]
    fn update(&self, new: u16, old: u16) -> bool {
        // The controller reads the shadow slot and writes EventIdx
        // concurrently: both accessors are volatile.
        self.pages.doorbells.write_u32(self.offset, u32::from(new));
        // The shadow store must be visible before we read EventIdx
        // (store -> load ordering needs a full fence).
        barrier::full();
        let ei = self.pages.eventidx.read_u32(self.offset) as u16;
        self.always_mmio || need_event(ei, new, old)
    }
}

/// MMIO doorbell writes and the ones shadow doorbells made unnecessary.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct DoorbellStats {
    /// Doorbell values written (one per tail or head publication).
    pub updates: u64,
    /// MMIO doorbell stores actually made.
    pub mmio_writes: u64,
}

/// One doorbell register plus, once shadow doorbells are on, its shadow
/// slot: publishing a new value goes through the EventIdx rule and counts
/// what it did. Shared by the submission and completion rings.
pub(crate) struct DoorbellWriter<H: Hardware> {
    doorbell: H::Doorbell,
    shadow: Option<Shadow<H::Dma>>,
    /// The value last published.
    pub(crate) last: u16,
    pub(crate) stats: DoorbellStats,
}

impl<H: Hardware> DoorbellWriter<H> {
    fn new(hw: &H, offset: usize) -> Result<Self, Error> {
        Ok(DoorbellWriter {
            doorbell: hw.doorbell(offset)?,
            shadow: None,
            last: 0,
            stats: DoorbellStats::default(),
        })
    }

    /// Write `value`: to the shadow slot if there is one, and to the MMIO
    /// register unless EventIdx says the controller does not need it.
    #[inline]
    fn write(&mut self, value: u16) {
        self.stats.updates += 1;
        let mmio = match &self.shadow {
            Some(sh) => sh.update(value, self.last),
            None => true,
        };
        self.last = value;
        if mmio {
            self.stats.mmio_writes += 1;
            self.doorbell.ring(u32::from(value));
        }
    }
}

/// Where a submission ring lives. Held for its `Drop`: it keeps the ring
/// memory alive (and returns CMB space) for as long as the ring exists.
#[allow(dead_code)]
enum SqMemory<H: Hardware> {
    /// Host memory the device reads by DMA.
    Host(H::Dma),
    /// The controller's own memory buffer.
    Cmb(CmbSlice<H>),
}

/// How SQ entries are stored.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum StoreKind {
    /// Host memory: a plain store of the entry.
    Host,
    /// Device memory: 8-byte volatile stores, then a WC drain before the doorbell.
    Device8,
    /// Device memory: 16-byte non-temporal stores (x86_64), then `sfence`.
    Device16,
}

/// A submission ring: the host produces at `tail`, the device consumes up
/// to the `sq_head` it reports in completions.
pub(crate) struct SqRing<H: Hardware> {
    mem: SqMemory<H>,
    base: *mut SubmissionEntry,
    device_addr: Iova,
    store: StoreKind,
    entries: u16,
    tail: u16,
    /// `next(tail)`, kept so the full check and the push share one wrap.
    next_tail: u16,
    head: u16,
    pub(crate) doorbell: DoorbellWriter<H>,
}

// SAFETY: `base` points into `mem`, which the ring owns; moving the ring to
// another thread moves sole access to that memory with it (`H::Dma` and
// `H::Doorbell` are `Send`). No `&self` method mutates through `base`.
unsafe impl<H: Hardware> Send for SqRing<H> {}

impl<H: Hardware> SqRing<H> {
    pub(crate) fn new(hw: &H, entries: u16, doorbell_offset: usize) -> Result<Self, Error> {
        let mem = hw.alloc_dma(usize::from(entries) * std::mem::size_of::<SubmissionEntry>())?;
        let doorbell = DoorbellWriter::new(hw, doorbell_offset)?;
        let base = mem.as_ptr().cast::<SubmissionEntry>();
        Ok(SqRing {
            device_addr: mem.iova(),
            mem: SqMemory::Host(mem),
            base,
            store: StoreKind::Host,
            entries,
            tail: 0,
            next_tail: next_index(0, entries),
            head: 0,
            doorbell,
        })
    }

    /// A ring in the controller memory buffer.
    pub(crate) fn new_in_cmb(
        hw: &H,
        cmb: &Arc<Cmb<H>>,
        entries: u16,
        doorbell_offset: usize,
    ) -> Result<Self, Error> {
        let bytes = usize::from(entries) * std::mem::size_of::<SubmissionEntry>();
        let slice = Cmb::alloc(cmb, bytes)?;
        let doorbell = DoorbellWriter::new(hw, doorbell_offset)?;
        let store = if hw.max_device_store() >= 16 && cfg!(target_arch = "x86_64") {
            StoreKind::Device16
        } else {
            StoreKind::Device8
        };
        Ok(SqRing {
            base: slice.as_ptr().cast::<SubmissionEntry>(),
            device_addr: slice.device_address(),
            mem: SqMemory::Cmb(slice),
            store,
            entries,
            tail: 0,
            next_tail: next_index(0, entries),
            head: 0,
            doorbell,
        })
    }

    /// Route doorbell updates through a shadow slot from now on (or, with
    /// `None`, through the MMIO register alone).
    pub(crate) fn set_shadow(&mut self, shadow: Option<Shadow<H::Dma>>) {
        self.doorbell.shadow = shadow;
    }

    /// Back to the state of a new ring (after a controller reset, before the
    /// queue is created again): tail, head and the last published tail 0.
    /// The entries themselves need no clearing: the device reads only up to
    /// the tail it is told.
    pub(crate) fn reset(&mut self) {
        self.tail = 0;
        self.next_tail = next_index(0, self.entries);
        self.head = 0;
        self.doorbell.last = 0;
    }

    /// The address the controller uses for the ring (IOVA, or CMB address).
    pub(crate) fn iova(&self) -> Iova {
        self.device_addr
    }

    /// True if the ring is in the controller memory buffer.
    pub(crate) fn in_cmb(&self) -> bool {
        matches!(self.mem, SqMemory::Cmb(_))
    }

    pub(crate) fn entries(&self) -> u16 {
        self.entries
    }

    /// True when one more entry would make tail == head (ring full).
    #[inline]
    pub(crate) fn is_full(&self) -> bool {
        self.next_tail == self.head
    }

    /// True if entries were pushed since the last doorbell update.
    #[inline]
    pub(crate) fn unpublished(&self) -> bool {
        self.tail != self.doorbell.last
    }

    /// Record the device's reported head (from a completion entry).
    #[inline]
    pub(crate) fn set_head(&mut self, head: u16) {
        if head < self.entries {
            self.head = head;
        }
    }

    /// Write `entry` at the tail and advance it. The caller checked `is_full`.
    #[inline]
    pub(crate) fn push(&mut self, entry: &SubmissionEntry) {
        self.push_words(entry.words());
    }

    /// Write an entry given as its eight little-endian words (see
    /// [`SubmissionEntry::words`]) at the tail and advance it. The caller
    /// checked `is_full`.
    #[inline(always)]
    pub(crate) fn push_words(&mut self, words: [u64; 8]) {
        debug_assert!(!self.is_full());
        // SAFETY: `tail < entries` and the ring memory holds `entries`
        // 64-byte slots, 64-byte aligned (host rings: alloc_dma gives
        // 4096-aligned memory of at least that size; CMB rings: the CMB
        // allocator hands out 4096-aligned slices of at least that size
        // inside the mapped window). The device does not read this slot until
        // the doorbell says so, and we hold `&mut self`.
        unsafe {
            let slot = self.base.add(usize::from(self.tail));
            match self.store {
                StoreKind::Host | StoreKind::Device8 => store_words_8(slot, words),
                StoreKind::Device16 => store_words_16(slot, words),
            }
        }
        self.tail = self.next_tail;
        self.next_tail = next_index(self.tail, self.entries);
    }

    /// Make everything pushed so far visible to the controller: order the
    /// entry stores before the doorbell, then write the new tail.
    #[inline]
    pub(crate) fn publish_tail(&mut self) {
        if self.store == StoreKind::Host {
            barrier::before_doorbell();
        } else {
            // Device-memory (possibly WC, possibly non-temporal) stores are
            // weakly ordered: drain them before the doorbell.
            barrier::wc_flush();
        }
        self.doorbell.write(self.tail);
    }
}

/// The ring index after `i` in a ring of `entries` slots.
#[inline]
fn next_index(i: u16, entries: u16) -> u16 {
    if i + 1 >= entries {
        0
    } else {
        i + 1
    }
}

/// Store a 64-byte entry, given as its eight little-endian words, with
/// 8-byte volatile stores: the widest QEMU's controller (and any device)
/// accepts in device memory, and for a host ring the words go straight from
/// registers into the slot.
///
/// # Safety
/// `dst` must be valid for a 64-byte write and 8-byte aligned.
#[inline(always)]
unsafe fn store_words_8(dst: *mut SubmissionEntry, words: [u64; 8]) {
    let dst = dst.cast::<u64>();
    for (i, w) in words.into_iter().enumerate() {
        // SAFETY: `dst` per the function contract; i < 8 keeps it in bounds.
        unsafe { dst.add(i).write_volatile(w) };
    }
}

/// Copy a 64-byte entry into device memory with 16-byte non-temporal stores
/// (for devices known to accept them; see `Hardware::max_device_store`).
///
/// # Safety
/// `dst` must be valid for a 64-byte write and 16-byte aligned.
#[inline]
unsafe fn store_words_16(dst: *mut SubmissionEntry, words: [u64; 8]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{__m128i, _mm_loadu_si128, _mm_stream_si128};
        let src = words.as_ptr().cast::<__m128i>();
        let dst = dst.cast::<__m128i>();
        for i in 0..4 {
            // SAFETY: SSE2 is part of the x86_64 baseline; `src` is readable
            // for 64 bytes (unaligned load); `dst` is valid and 16-aligned per
            // the function contract; i < 4 keeps both in bounds.
            unsafe { _mm_stream_si128(dst.add(i), _mm_loadu_si128(src.add(i))) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    // SAFETY: same contract, narrower stores.
    unsafe {
        store_words_8(dst, words)
    }
}

/// A completion ring: the device produces entries with a phase tag that
/// flips on every wrap; the host consumes at `head`.
pub(crate) struct CqRing<H: Hardware> {
    mem: H::Dma,
    base: *const CompletionEntry,
    entries: u16,
    head: u16,
    phase: bool,
    pub(crate) doorbell: DoorbellWriter<H>,
}

// SAFETY: as for SqRing: `base` points into memory the ring owns.
unsafe impl<H: Hardware> Send for CqRing<H> {}

impl<H: Hardware> CqRing<H> {
    pub(crate) fn new(hw: &H, entries: u16, doorbell_offset: usize) -> Result<Self, Error> {
        let mem = hw.alloc_dma(usize::from(entries) * std::mem::size_of::<CompletionEntry>())?;
        let doorbell = DoorbellWriter::new(hw, doorbell_offset)?;
        let base = mem.as_ptr().cast::<CompletionEntry>().cast_const();
        Ok(CqRing {
            mem,
            base,
            entries,
            head: 0,
            phase: true,
            doorbell,
        })
    }

    pub(crate) fn entries(&self) -> u16 {
        self.entries
    }

    pub(crate) fn iova(&self) -> Iova {
        self.mem.iova()
    }

    /// The entry at the head if the device has posted it.
    #[inline]
    pub(crate) fn peek(&self) -> Option<CompletionEntry> {
        self.read_head::<true>()
    }

    /// As [`CqRing::peek`], for the I/O path: loads only the fields an I/O
    /// completion uses (DW0, SQ head, CID; the status word from the phase
    /// check), and returns DW1 and the SQ id as 0.
    #[inline]
    pub(crate) fn peek_io(&self) -> Option<CompletionEntry> {
        self.read_head::<false>()
    }

    #[inline(always)]
    fn read_head<const WHOLE: bool>(&self) -> Option<CompletionEntry> {
        // SAFETY: `head < entries` and the ring memory holds `entries`
        // 16-byte slots. The device writes this memory concurrently, so we
        // read it with volatile loads through a raw pointer: first the
        // status word (which holds the phase tag), then, once the tag says
        // the entry is new, the rest of it.
        unsafe {
            let slot = self.base.add(usize::from(self.head));
            let status = std::ptr::read_volatile(std::ptr::addr_of!((*slot).status));
            if (status & 1 == 1) != self.phase {
                return None;
            }
            barrier::after_phase_read();
            if WHOLE {
                return Some(std::ptr::read_volatile(slot));
            }
            Some(CompletionEntry {
                result: std::ptr::read_volatile(std::ptr::addr_of!((*slot).result)),
                dw1: 0,
                sq_head: std::ptr::read_volatile(std::ptr::addr_of!((*slot).sq_head)),
                sq_id: 0,
                cid: std::ptr::read_volatile(std::ptr::addr_of!((*slot).cid)),
                status,
            })
        }
    }

    /// Consume the head entry.
    #[inline]
    pub(crate) fn advance(&mut self) {
        self.head += 1;
        if self.head == self.entries {
            self.head = 0;
            self.phase = !self.phase;
        }
    }

    /// Route doorbell updates through a shadow slot from now on (or, with
    /// `None`, through the MMIO register alone).
    pub(crate) fn set_shadow(&mut self, shadow: Option<Shadow<H::Dma>>) {
        self.doorbell.shadow = shadow;
    }

    /// Back to the state of a new ring (after a controller reset, before the
    /// queue is created again): head 0, phase 1, and every entry zeroed so
    /// no old entry's phase tag reads as new. Only while the controller has
    /// no queue on this memory.
    pub(crate) fn reset(&mut self) {
        for off in (0..self.mem.len()).step_by(8) {
            self.mem.write_u64(off, 0);
        }
        self.head = 0;
        self.phase = true;
        self.doorbell.last = 0;
    }

    /// Tell the device how far we have consumed: write the new head.
    #[inline]
    pub(crate) fn publish_head(&mut self) {
        self.doorbell.write(self.head);
    }
}

#[cfg(test)]
mod tests {
    use super::need_event;

    /// The spec's rule, stated directly: the controller wants an MMIO write
    /// when the doorbell moved from `old` to `new` past `event_idx`, i.e.
    /// `event_idx` is one of old, old+1, ..., new-1 (mod 2^16). Walk that
    /// sequence once and mark it.
    fn crossed_set(new: u16, old: u16) -> Vec<bool> {
        let mut set = vec![false; 1 << 16];
        let mut v = old;
        while v != new {
            set[usize::from(v)] = true;
            v = v.wrapping_add(1);
        }
        set
    }

    #[test]
    fn need_event_matches_the_spec_rule() {
        // Every event_idx, for distances new-old spread over the whole u16
        // range (small ones densely), around several bases including the wrap.
        let distances = (0u16..64)
            .chain((64..=u16::MAX).step_by(977))
            .chain([u16::MAX]);
        let distances: Vec<u16> = distances.collect();
        for old in [0u16, 1, 1000, 65_000, 65_535] {
            for &d in &distances {
                let new = old.wrapping_add(d);
                let set = crossed_set(new, old);
                for e in 0..=u16::MAX {
                    assert_eq!(
                        need_event(e, new, old),
                        set[usize::from(e)],
                        "ei={e} new={new} old={old}"
                    );
                }
            }
        }
    }

    #[test]
    fn need_event_over_all_u16_distances() {
        // The closed form over every (new - old, event_idx - old) pair in a
        // strided sweep of the full u16 x u16 space.
        for d in (0..=u16::MAX).step_by(7) {
            for x in (0..=u16::MAX).step_by(13) {
                let old = 12345u16;
                let new = old.wrapping_add(d);
                let ei = old.wrapping_add(x);
                assert_eq!(need_event(ei, new, old), x < d, "d={d} x={x}");
            }
        }
    }
}
