//! Submission and completion rings, shared by the admin and I/O queues.
//!
//! Ring memory is DMA memory the device reads (SQ) or writes (CQ); it is
//! only ever touched through raw pointers with volatile accesses, never
//! through references, because the device changes it behind our back.

use crate::barrier;
use crate::cmd::{CompletionEntry, SubmissionEntry};
use crate::error::Error;
use crate::hw::{DmaRegion, Doorbell, Hardware, Iova};

/// A submission ring: the host produces at `tail`, the device consumes up
/// to the `sq_head` it reports in completions.
pub(crate) struct SqRing<H: Hardware> {
    mem: H::Dma,
    base: *mut SubmissionEntry,
    entries: u16,
    tail: u16,
    head: u16,
    doorbell: H::Doorbell,
}

// SAFETY: `base` points into `mem`, which the ring owns; moving the ring to
// another thread moves sole access to that memory with it (`H::Dma` and
// `H::Doorbell` are `Send`). No `&self` method mutates through `base`.
unsafe impl<H: Hardware> Send for SqRing<H> {}

impl<H: Hardware> SqRing<H> {
    pub(crate) fn new(hw: &H, entries: u16, doorbell_offset: usize) -> Result<Self, Error> {
        let mem = hw.alloc_dma(usize::from(entries) * std::mem::size_of::<SubmissionEntry>())?;
        let doorbell = hw.doorbell(doorbell_offset)?;
        let base = mem.as_ptr().cast::<SubmissionEntry>();
        Ok(SqRing {
            mem,
            base,
            entries,
            tail: 0,
            head: 0,
            doorbell,
        })
    }

    pub(crate) fn iova(&self) -> Iova {
        self.mem.iova()
    }

    pub(crate) fn entries(&self) -> u16 {
        self.entries
    }

    #[inline]
    fn next(&self, i: u16) -> u16 {
        if i + 1 == self.entries {
            0
        } else {
            i + 1
        }
    }

    /// True when one more entry would make tail == head (ring full).
    #[inline]
    pub(crate) fn is_full(&self) -> bool {
        self.next(self.tail) == self.head
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
        debug_assert!(!self.is_full());
        // SAFETY: `tail < entries` and the ring memory holds `entries`
        // 64-byte, 64-byte-aligned slots (alloc_dma gives 4096-aligned memory
        // of at least that size). The device does not read this slot until
        // the doorbell says so, and we hold `&mut self`.
        unsafe { std::ptr::write_volatile(self.base.add(usize::from(self.tail)), *entry) };
        self.tail = self.next(self.tail);
    }

    /// Publish everything pushed so far with one doorbell store.
    #[inline]
    pub(crate) fn ring(&mut self) {
        barrier::before_doorbell();
        self.doorbell.ring(u32::from(self.tail));
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
    doorbell: H::Doorbell,
}

// SAFETY: as for SqRing: `base` points into memory the ring owns.
unsafe impl<H: Hardware> Send for CqRing<H> {}

impl<H: Hardware> CqRing<H> {
    pub(crate) fn new(hw: &H, entries: u16, doorbell_offset: usize) -> Result<Self, Error> {
        let mem = hw.alloc_dma(usize::from(entries) * std::mem::size_of::<CompletionEntry>())?;
        let doorbell = hw.doorbell(doorbell_offset)?;
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

    pub(crate) fn iova(&self) -> Iova {
        self.mem.iova()
    }

    /// The entry at the head if the device has posted it.
    #[inline]
    pub(crate) fn peek(&self) -> Option<CompletionEntry> {
        // SAFETY: `head < entries` and the ring memory holds `entries`
        // 16-byte slots. The device writes this memory concurrently, so we
        // read it with volatile loads through a raw pointer: first the
        // status word (which holds the phase tag), then, once the tag says
        // the entry is new, the whole entry.
        unsafe {
            let slot = self.base.add(usize::from(self.head));
            let status = std::ptr::read_volatile(std::ptr::addr_of!((*slot).status));
            if (status & 1 == 1) != self.phase {
                return None;
            }
            barrier::after_phase_read();
            Some(std::ptr::read_volatile(slot))
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

    /// Tell the device how far we have consumed.
    #[inline]
    pub(crate) fn ring(&mut self) {
        self.doorbell.ring(u32::from(self.head));
    }
}
