//! One I/O queue pair, owned by one thread.
//!
//! The pair is `Send` (create it anywhere, move it to the core that uses it)
//! but not `Sync`: every operation takes `&mut self`, so no two threads can
//! ever touch the same rings and no lock is needed. The submit and complete
//! paths do no allocation, take no lock and make no syscall.
//!
//! Buffers move in with [`IoQueuePair::submit_read`] /
//! [`IoQueuePair::submit_write`] and come back in the [`Completion`]. A
//! buffer whose command has not completed stays inside the pair, even on
//! timeout; dropping the pair deletes its queues on the controller (or, if
//! that fails, disables the controller) before any buffer is released, and
//! leaks them if the controller cannot be shown to have stopped.

use std::marker::PhantomData;
use std::mem::ManuallyDrop;
use std::sync::Arc;
use std::time::Instant;

use crate::buffer::{DmaBuf, DATA_ALIGN};
use crate::cmd::{io_opcode, SubmissionEntry};
use crate::controller::{Namespace, Shared, PAGE_SIZE};
use crate::error::{Error, IoError, Rejected};
use crate::hw::{DmaRegion, Hardware, Iova};
use crate::identify::Oncs;
use crate::queue::{CqRing, DoorbellStats, SqRing};
use crate::status::NvmeStatus;
use crate::units::{ByteCount, Lba};

/// A finished command.
pub struct Completion<D: DmaRegion> {
    /// The caller's token from submission.
    pub tag: u64,
    /// Success, or the controller's status.
    pub status: Result<(), NvmeStatus>,
    /// Completion DW0 (command specific).
    pub result: u32,
    /// The data buffer, back in the caller's hands.
    pub buf: Option<DmaBuf<D>>,
    /// The buffers of a vectored command, back in the caller's hands.
    pub bufs: Option<Vec<DmaBuf<D>>>,
}

impl<D: DmaRegion> std::fmt::Debug for Completion<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Completion")
            .field("tag", &self.tag)
            .field("status", &self.status)
            .field("buf", &self.buf)
            .finish()
    }
}

/// What a command slot holds.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum SlotState {
    /// No command.
    Free,
    /// A lone command: everything about it is in the hot [`Slot`].
    Single,
    /// A piece of a request split at MDTS, or a vectored command: the
    /// [`GroupSlot`] of the same index says which group and how far along.
    Grouped,
}

/// Hot per-command state: all a lone command (the common case) needs, so
/// submit and complete touch one small record.
struct Slot<D: DmaRegion> {
    state: SlotState,
    tag: u64,
    buf: Option<DmaBuf<D>>,
}

/// Cold per-command state, only for grouped commands. A request larger
/// than MDTS becomes a group of commands; the group's state lives in its
/// first slot (the head). A vectored command is a group of one.
struct GroupSlot<D: DmaRegion> {
    /// The head slot of this command's group.
    group: u16,
    /// Head only: commands of the group not yet completed.
    pending: u16,
    /// Head only: the head's own command has completed (a second completion
    /// for it, from a misbehaving device, is ignored).
    head_done: bool,
    /// Head only: the first error any command of the group reported.
    error: Option<NvmeStatus>,
    /// Head only: completion DW0 of the last command of the group.
    result: u32,
    /// Head only: the buffers of a vectored command.
    bufs: Option<Vec<DmaBuf<D>>>,
}

/// Counters of one queue pair (plain fields: only its owner touches them).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// NVMe commands submitted (a split request counts each piece).
    pub commands: u64,
    /// Completions delivered to the caller (a split request counts once).
    pub completions: u64,
    /// Submission queue tail doorbell updates and MMIO writes.
    pub sq_doorbell: DoorbellStats,
    /// Completion queue head doorbell updates and MMIO writes.
    pub cq_doorbell: DoorbellStats,
}

/// Largest number of buffers in one vectored command (one list page of
/// 16-byte SGL descriptors).
pub const MAX_SEGMENTS: usize = PAGE_SIZE / 16;

/// A vectored submission the queue refused: the error, and the buffers.
pub struct RejectedVec<D: DmaRegion> {
    /// Why.
    pub error: Error,
    /// The caller's buffers, untouched by the device.
    pub bufs: Vec<DmaBuf<D>>,
}

impl<D: DmaRegion> std::fmt::Debug for RejectedVec<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RejectedVec")
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

impl<D: DmaRegion> std::fmt::Display for RejectedVec<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.error.fmt(f)
    }
}

impl<D: DmaRegion> std::error::Error for RejectedVec<D> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

/// Tag used by the synchronous helpers.
const SYNC_TAG: u64 = u64::MAX;

/// Largest number of ranges in one Dataset Management command.
pub const MAX_DSM_RANGES: usize = 256;

/// An I/O submission/completion queue pair.
pub struct IoQueuePair<H: Hardware> {
    shared: Arc<Shared<H>>,
    qid: u16,
    // Everything the device may access is ManuallyDrop: Drop frees it only
    // after the controller confirmed the queues are gone.
    sq: ManuallyDrop<SqRing<H>>,
    cq: ManuallyDrop<CqRing<H>>,
    /// One 4 KiB PRP list (or DSM range) page per command slot.
    prp_mem: ManuallyDrop<H::Dma>,
    slots: ManuallyDrop<Box<[Slot<H::Dma>]>>,
    groups: ManuallyDrop<Box<[GroupSlot<H::Dma>]>>,
    /// Free command identifiers: a stack, `free_cids[..nfree]`.
    free_cids: Box<[u16]>,
    nfree: usize,
    max_transfer: usize,
    domain: u64,
    oncs: Oncs,
    /// The controller takes SGLs for NVM commands (and the options allow them).
    sgls: bool,
    /// Defer SQ doorbells until `ring()` / `poll()`.
    batch_doorbells: bool,
    /// CQ entries consumed but not yet acknowledged with a head doorbell.
    cq_unacked: u16,
    /// How many may stay unacknowledged: CQ entries minus SQ entries.
    cq_slack: u16,
    commands: u64,
    completions: u64,
    /// Not `Sync`: all access goes through `&mut self` on one thread.
    _not_sync: PhantomData<std::cell::Cell<()>>,
}

// SAFETY: the pair owns its rings, PRP pages and in-flight buffers outright
// (`H::Dma` is `Send`, SqRing/CqRing are `Send`); the shared controller state
// is `Sync` behind an Arc. Moving the pair moves sole access with it.
unsafe impl<H: Hardware> Send for IoQueuePair<H> {}

impl<H: Hardware> IoQueuePair<H> {
    pub(crate) fn create(shared: Arc<Shared<H>>, qid: u16, entries: u32) -> Result<Self, Error> {
        // The caller checked 2..=65535.
        let n = u16::try_from(entries).unwrap_or(u16::MAX);
        let hw = &shared.hw;
        let cap = shared.cap;
        // The CQ gets up to twice the SQ's entries: at most n - 1 commands
        // are ever outstanding, so with C entries the host may leave up to
        // C - n consumed entries unacknowledged and the controller still
        // always has room to post. That lets one CQ head doorbell cover many
        // polls (see `poll`).
        let cq_n = (2 * u32::from(n)).min(cap.max_queue_entries()).min(65535) as u16;
        let cq_slack = cq_n.saturating_sub(n);
        let mut cq = CqRing::new(hw, cq_n, cap.cq_head_doorbell(qid))?;
        let mut sq = match &shared.cmb {
            Some(cmb) => match SqRing::new_in_cmb(hw, cmb, n, cap.sq_tail_doorbell(qid)) {
                Ok(sq) => sq,
                Err(e) => {
                    tracing::debug!(qid, "SQ in host memory: {e}");
                    SqRing::new(hw, n, cap.sq_tail_doorbell(qid))?
                }
            },
            None => SqRing::new(hw, n, cap.sq_tail_doorbell(qid))?,
        };
        if let Some((s, c)) = shared.fresh_shadows(qid) {
            sq.set_shadow(s);
            cq.set_shadow(c);
        }
        let prp_mem = hw.alloc_dma(usize::from(n) * PAGE_SIZE)?;
        // A create that did not complete, or a CQ that could not be deleted
        // again, may leave the controller owning this memory: stop it first,
        // and leak the memory if it cannot be shown to have stopped.
        let abandon = |e: Error, cq: CqRing<H>, sq: SqRing<H>, prp: H::Dma| {
            if !shared.emergency_disable() {
                std::mem::forget((cq, sq, prp));
            }
            e
        };
        if let Err(e) = shared.admin_cmd(
            SubmissionEntry::create_io_cq(qid, cq_n, cq.iova()),
            "Create I/O Completion Queue",
        ) {
            if matches!(e, Error::Command { .. }) {
                return Err(e);
            }
            return Err(abandon(e, cq, sq, prp_mem));
        }
        if let Err(e) = shared.admin_cmd(
            SubmissionEntry::create_io_sq(qid, n, sq.iova(), qid),
            "Create I/O Submission Queue",
        ) {
            let cq_gone = matches!(e, Error::Command { .. })
                && shared
                    .admin_cmd(SubmissionEntry::delete_io_cq(qid), "Delete I/O CQ")
                    .is_ok();
            if cq_gone {
                return Err(e);
            }
            return Err(abandon(e, cq, sq, prp_mem));
        }
        let slots = (0..n)
            .map(|_| Slot {
                state: SlotState::Free,
                tag: 0,
                buf: None,
            })
            .collect();
        let groups = (0..n)
            .map(|i| GroupSlot {
                group: i,
                pending: 0,
                head_done: false,
                error: None,
                result: 0,
                bufs: None,
            })
            .collect();
        // At most n - 1 commands can be in the ring at once.
        let free_cids: Box<[u16]> = (0..n - 1).rev().collect();
        let nfree = free_cids.len();
        let max_transfer = shared.max_transfer;
        let domain = shared.domain;
        let oncs = shared.oncs();
        let sgls = shared.sgls_usable();
        Ok(IoQueuePair {
            shared,
            qid,
            sq: ManuallyDrop::new(sq),
            cq: ManuallyDrop::new(cq),
            prp_mem: ManuallyDrop::new(prp_mem),
            slots: ManuallyDrop::new(slots),
            groups: ManuallyDrop::new(groups),
            free_cids,
            nfree,
            max_transfer,
            domain,
            oncs,
            sgls,
            batch_doorbells: false,
            cq_unacked: 0,
            cq_slack,
            commands: 0,
            completions: 0,
            _not_sync: PhantomData,
        })
    }

    /// The queue identifier on the controller.
    pub fn qid(&self) -> u16 {
        self.qid
    }

    /// True if this pair's submission queue lives in the controller memory buffer.
    pub fn sq_in_cmb(&self) -> bool {
        self.sq.in_cmb()
    }

    /// Slots in the submission queue (one is always kept empty).
    pub fn entries(&self) -> u16 {
        self.sq.entries()
    }

    /// Commands submitted and not yet reaped.
    pub fn outstanding(&self) -> usize {
        usize::from(self.sq.entries()) - 1 - self.nfree
    }

    /// Largest transfer one NVMe command carries; larger requests are split.
    pub fn max_transfer_bytes(&self) -> usize {
        self.max_transfer
    }

    /// Counters: commands, completions, doorbell updates and MMIO writes.
    pub fn stats(&self) -> QueueStats {
        QueueStats {
            commands: self.commands,
            completions: self.completions,
            sq_doorbell: self.sq.doorbell.stats,
            cq_doorbell: self.cq.doorbell.stats,
        }
    }

    /// With batching on, submissions only write queue entries; the SQ
    /// doorbell is written once by [`IoQueuePair::ring`] or at the start of
    /// the next [`IoQueuePair::poll`]. Off (the default): every submission
    /// rings.
    pub fn set_doorbell_batching(&mut self, on: bool) {
        self.batch_doorbells = on;
        if !on {
            self.ring();
        }
    }

    /// Publish every submission not yet published, with one doorbell write.
    #[inline]
    pub fn ring(&mut self) {
        if self.sq.unpublished() {
            self.sq.ring();
        }
    }

    /// Submit a read of `buf.len()` bytes from `lba` into `buf`. Requests
    /// larger than [`IoQueuePair::max_transfer_bytes`] are split into
    /// several commands that complete as one.
    #[inline]
    pub fn submit_read(
        &mut self,
        ns: &Namespace,
        lba: Lba,
        buf: DmaBuf<H::Dma>,
        tag: u64,
    ) -> Result<(), Rejected<H::Dma>> {
        self.submit_data(io_opcode::READ, ns, lba, buf, tag, false)
    }

    /// Submit a write of `buf.len()` bytes from `buf` to `lba`.
    #[inline]
    pub fn submit_write(
        &mut self,
        ns: &Namespace,
        lba: Lba,
        buf: DmaBuf<H::Dma>,
        tag: u64,
    ) -> Result<(), Rejected<H::Dma>> {
        self.submit_data(io_opcode::WRITE, ns, lba, buf, tag, false)
    }

    /// Submit a Force Unit Access write: complete only once the data is on
    /// non-volatile media.
    #[inline]
    pub fn submit_write_fua(
        &mut self,
        ns: &Namespace,
        lba: Lba,
        buf: DmaBuf<H::Dma>,
        tag: u64,
    ) -> Result<(), Rejected<H::Dma>> {
        self.submit_data(io_opcode::WRITE, ns, lba, buf, tag, true)
    }

    /// Submit a Compare of `buf` against the blocks at `lba`; a mismatch
    /// completes with "Compare Failure".
    pub fn submit_compare(
        &mut self,
        ns: &Namespace,
        lba: Lba,
        buf: DmaBuf<H::Dma>,
        tag: u64,
    ) -> Result<(), Rejected<H::Dma>> {
        if !self.oncs.compare() {
            return Err(Rejected {
                error: unsupported("Compare"),
                buf,
            });
        }
        self.submit_data(io_opcode::COMPARE, ns, lba, buf, tag, false)
    }

    /// Submit a flush of the namespace's volatile write cache.
    pub fn submit_flush(&mut self, ns: &Namespace, tag: u64) -> Result<(), Error> {
        self.check_ns(ns)?;
        let cmd = SubmissionEntry::flush(ns.nsid());
        self.submit_simple(cmd, tag, |_, _| None)
    }

    /// Submit Write Zeroes of `blocks` blocks (1..=65536) at `lba`.
    pub fn submit_write_zeroes(
        &mut self,
        ns: &Namespace,
        lba: Lba,
        blocks: u32,
        tag: u64,
    ) -> Result<(), Error> {
        if !self.oncs.write_zeroes() {
            return Err(unsupported("Write Zeroes"));
        }
        self.check_ns(ns)?;
        if !(1..=65536).contains(&blocks) {
            return Err(Error::InvalidArgument(format!(
                "Write Zeroes covers 1..=65536 blocks per command, not {blocks}"
            )));
        }
        check_range(ns, lba, u64::from(blocks))?;
        let cmd = SubmissionEntry::rw(io_opcode::WRITE_ZEROES, ns.nsid(), lba.0, blocks, false);
        self.submit_simple(cmd, tag, |_, _| None)
    }

    /// Submit a Dataset Management deallocate (trim) of `ranges`
    /// (`(lba, blocks)` pairs, 1..=256 of them). What deallocated blocks
    /// read back as is the namespace's DLFEAT.
    pub fn submit_deallocate(
        &mut self,
        ns: &Namespace,
        ranges: &[(Lba, u32)],
        tag: u64,
    ) -> Result<(), Error> {
        if !self.oncs.dataset_management() {
            return Err(unsupported("Dataset Management"));
        }
        self.check_ns(ns)?;
        if ranges.is_empty() || ranges.len() > MAX_DSM_RANGES {
            return Err(Error::InvalidArgument(format!(
                "Dataset Management takes 1..={MAX_DSM_RANGES} ranges, not {}",
                ranges.len()
            )));
        }
        for &(lba, blocks) in ranges {
            if blocks == 0 {
                return Err(Error::InvalidArgument(format!("empty range at LBA {lba}")));
            }
            check_range(ns, lba, u64::from(blocks))?;
        }
        let mut cmd = SubmissionEntry::new(io_opcode::DATASET_MANAGEMENT, ns.nsid());
        cmd.cdw10 = ranges.len() as u32 - 1; // NR, 0-based
        cmd.cdw11 = 1 << 2; // AD: attribute deallocate
        self.submit_simple(cmd, tag, |qp, cid| {
            // The range list goes into this slot's list page.
            let page = usize::from(cid) * PAGE_SIZE;
            // SAFETY: slot `cid` owns bytes [cid*4096, cid*4096+4096) of
            // `prp_mem` (one page per slot); 256 ranges of 16 bytes fill at
            // most that page; the slot is free, so the device is not reading
            // it; the region is 4096-aligned so the u32/u64 stores are aligned.
            unsafe {
                let base = qp.prp_mem.as_ptr().add(page);
                for (i, &(lba, blocks)) in ranges.iter().enumerate() {
                    let d = base.add(i * 16);
                    d.cast::<u32>().write_volatile(0); // context attributes
                    d.add(4).cast::<u32>().write_volatile(blocks); // length in blocks
                    d.add(8).cast::<u64>().write_volatile(lba.0); // starting LBA
                }
            }
            Some(qp.prp_mem.iova().add(page as u64))
        })
    }

    /// Submit a command with no caller buffer. `fill` may put a data page in
    /// the slot's list page and return its address for PRP1.
    fn submit_simple(
        &mut self,
        mut cmd: SubmissionEntry,
        tag: u64,
        fill: impl FnOnce(&mut Self, u16) -> Option<Iova>,
    ) -> Result<(), Error> {
        let Some(cid) = self.take_cids(1) else {
            return Err(Error::QueueFull {
                outstanding: self.outstanding(),
            });
        };
        if let Some(prp1) = fill(self, cid) {
            cmd.set_prps(prp1, Iova(0));
        }
        cmd.set_cid(cid);
        self.start_single(cid, tag, None);
        self.push(&cmd);
        self.publish();
        Ok(())
    }

    /// Validate a data transfer; returns its block count. All checks are
    /// evaluated branch-light first; the precise error is worked out out of
    /// line only when one fails.
    #[inline(always)]
    fn check_data(&self, ns: &Namespace, lba: Lba, buf: &DmaBuf<H::Dma>) -> Result<u64, Error> {
        let len = buf.len() as u64;
        // The block size is a power of two: mask and shift, no division.
        let blocks = len >> ns.block_shift();
        // Not checked here: a buffer's IOVA is always dword-aligned (its
        // constructor and `set_window` ensure it), and an empty buffer
        // passes these checks but is caught by the transfer-size check of
        // the caller (`len - 1 < max_transfer`), whose slow path refuses it.
        debug_assert!(buf.iova().0 % DATA_ALIGN as u64 == 0);
        let ok = (buf.domain() == self.domain)
            & (ns.io_domain() == self.domain)
            & (len & (ns.block_size() - 1) == 0)
            & lba
                .0
                .checked_add(blocks)
                .is_some_and(|end| end <= ns.blocks());
        if ok {
            Ok(blocks)
        } else {
            Err(self.data_error(ns, lba, buf))
        }
    }

    /// Which check of [`IoQueuePair::check_data`] failed, as an error.
    #[cold]
    #[inline(never)]
    fn data_error(&self, ns: &Namespace, lba: Lba, buf: &DmaBuf<H::Dma>) -> Error {
        match self.check_data_slow(ns, lba, buf) {
            Err(e) => e,
            Ok(_) => Error::InvalidArgument("data transfer check failed".into()),
        }
    }

    fn check_data_slow(
        &self,
        ns: &Namespace,
        lba: Lba,
        buf: &DmaBuf<H::Dma>,
    ) -> Result<u64, Error> {
        if buf.domain() != self.domain {
            return Err(Error::ForeignBuffer);
        }
        self.check_ns(ns)?;
        let len = buf.len() as u64;
        // The block size is a power of two: mask and shift, no division.
        if len == 0 || len & (ns.block_size() - 1) != 0 {
            return Err(Error::UnalignedLength {
                len: buf.len(),
                block_size: ns.block_size(),
            });
        }
        if buf.iova().0 % 4 != 0 {
            return Err(Error::MisalignedBuffer { iova: buf.iova() });
        }
        let blocks = len >> ns.block_shift();
        check_range(ns, lba, blocks)?;
        Ok(blocks)
    }

    /// The namespace must come from this controller (its geometry decides
    /// how much the device transfers) and need no metadata.
    #[inline]
    fn check_ns(&self, ns: &Namespace) -> Result<(), Error> {
        if ns.domain() != self.domain {
            return Err(Error::InvalidArgument(format!(
                "namespace {} belongs to a different controller; use this controller's namespaces",
                ns.nsid()
            )));
        }
        if ns.metadata_size() != 0 {
            return Err(Error::Unsupported(format!(
                "namespace {} uses {} bytes of metadata per block; metadata is not supported yet",
                ns.nsid(),
                ns.metadata_size()
            )));
        }
        Ok(())
    }

    /// A data command: the one-command case inline, checks included;
    /// anything else out of line.
    #[inline(always)]
    fn submit_data(
        &mut self,
        opcode: u8,
        ns: &Namespace,
        lba: Lba,
        buf: DmaBuf<H::Dma>,
        tag: u64,
        fua: bool,
    ) -> Result<(), Rejected<H::Dma>> {
        let blocks = match self.check_data(ns, lba, &buf) {
            Ok(b) => b,
            Err(error) => return Err(reject(error, buf)),
        };
        let len = buf.len();
        // One compare for both `len == 0` (wraps to the top) and
        // `len > max_transfer`; the out-of-line path sorts them out.
        if len.wrapping_sub(1) >= self.max_transfer {
            return self.submit_split(opcode, ns, lba, buf, tag, fua, blocks);
        }
        // One command: the common case, no group bookkeeping.
        let Some(cid) = self.take_cids(1) else {
            return Err(self.queue_full(buf));
        };
        let (p1, p2) = self.build_prps(cid, buf.iova(), len);
        let words =
            SubmissionEntry::rw_words(opcode, ns.nsid(), cid, lba.0, blocks as u32, fua, p1, p2);
        // The slot is looked up before `buf` moves, so the bounds check's
        // panic path drops `buf` where it is: no copy of it on the way.
        let slot = &mut self.slots[usize::from(cid)];
        fill_single(slot, tag, Some(buf));
        self.push_words(words);
        self.publish();
        Ok(())
    }

    #[cold]
    #[inline(never)]
    fn queue_full(&self, buf: DmaBuf<H::Dma>) -> Rejected<H::Dma> {
        let error = Error::QueueFull {
            outstanding: self.outstanding(),
        };
        Rejected { error, buf }
    }

    /// A request larger than one command: split at MDTS into a group.
    #[inline(never)]
    #[allow(clippy::too_many_arguments)]
    fn submit_split(
        &mut self,
        opcode: u8,
        ns: &Namespace,
        lba: Lba,
        buf: DmaBuf<H::Dma>,
        tag: u64,
        fua: bool,
        blocks: u64,
    ) -> Result<(), Rejected<H::Dma>> {
        let len = buf.len();
        if len == 0 {
            let error = self.data_error(ns, lba, &buf);
            return Err(Rejected { error, buf });
        }
        // Split at MDTS; every piece is a whole number of blocks because
        // MDTS is a power-of-two multiple of 4 KiB.
        let pieces = len.div_ceil(self.max_transfer);
        let max_pieces = usize::from(self.sq.entries()) - 1;
        if pieces > max_pieces {
            let error = Error::TooLarge {
                len,
                max: self.max_transfer * max_pieces,
            };
            return Err(Rejected { error, buf });
        }
        let Some(head) = self.take_cids(pieces) else {
            let error = Error::QueueFull {
                outstanding: self.outstanding(),
            };
            return Err(Rejected { error, buf });
        };
        let iova = buf.iova();
        self.start_group(head, pieces as u16, tag, Some(buf));
        let piece_blocks = ((self.max_transfer as u64) >> ns.block_shift()).max(1);
        let mut cid = head;
        for i in 0..pieces {
            if i > 0 {
                cid = self.pop_cid().expect("take_cids reserved enough");
                self.slots[usize::from(cid)].state = SlotState::Grouped;
                self.groups[usize::from(cid)].group = head;
            }
            let first = i as u64 * piece_blocks;
            let n = piece_blocks.min(blocks - first);
            let mut cmd = SubmissionEntry::rw(opcode, ns.nsid(), lba.0 + first, n as u32, fua);
            cmd.set_cid(cid);
            let off = first << ns.block_shift();
            let (p1, p2) = self.build_prps(cid, iova.add(off), (n << ns.block_shift()) as usize);
            cmd.set_prps(p1, p2);
            self.push(&cmd);
        }
        self.publish();
        Ok(())
    }

    /// Submit a read into memory the caller manages itself (no [`DmaBuf`]).
    /// The completion comes back from [`IoQueuePair::poll`] with `buf: None`.
    /// One command: `len` must not exceed [`IoQueuePair::max_transfer_bytes`].
    ///
    /// # Safety
    ///
    /// The driver cannot see this memory, so the caller takes over the
    /// guarantee [`DmaBuf`] gives:
    /// - `[iova, iova + len)` is contiguous in this controller's IOVA space
    ///   (mapped for DMA by this controller's platform layer, e.g. from
    ///   `Hardware::alloc_dma` of the same hardware), 4-byte aligned;
    /// - the host memory behind it stays allocated and mapped, and nobody reads
    ///   or writes it, until the completion carrying `tag` has been returned by
    ///   `poll` (the device writes it at any time before that);
    /// - if the queue pair is dropped while the command is in flight, the
    ///   memory stays valid until the controller has been shut down (its last
    ///   handle and queue pair dropped), and if the driver reported that the
    ///   controller did not stop, it is never freed.
    pub unsafe fn submit_read_raw(
        &mut self,
        ns: &Namespace,
        lba: Lba,
        iova: Iova,
        len: ByteCount,
        tag: u64,
    ) -> Result<(), Error> {
        self.submit_raw(io_opcode::READ, ns, lba, iova, len, tag)
    }

    /// Submit a write from memory the caller manages itself.
    ///
    /// # Safety
    ///
    /// As for [`IoQueuePair::submit_read_raw`], except that the memory must
    /// only not be *written* (or freed) until the completion arrives.
    pub unsafe fn submit_write_raw(
        &mut self,
        ns: &Namespace,
        lba: Lba,
        iova: Iova,
        len: ByteCount,
        tag: u64,
    ) -> Result<(), Error> {
        self.submit_raw(io_opcode::WRITE, ns, lba, iova, len, tag)
    }

    fn submit_raw(
        &mut self,
        opcode: u8,
        ns: &Namespace,
        lba: Lba,
        iova: Iova,
        len: ByteCount,
        tag: u64,
    ) -> Result<(), Error> {
        let len = len.0;
        self.check_ns(ns)?;
        if len == 0 || len as u64 % ns.block_size() != 0 {
            return Err(Error::UnalignedLength {
                len,
                block_size: ns.block_size(),
            });
        }
        if len > self.max_transfer {
            return Err(Error::InvalidArgument(format!(
                "raw transfer of {len} bytes exceeds one command's limit of {} bytes (MDTS)",
                self.max_transfer
            )));
        }
        if iova.0 % 4 != 0 {
            return Err(Error::MisalignedBuffer { iova });
        }
        let blocks = len as u64 / ns.block_size();
        check_range(ns, lba, blocks)?;
        let Some(cid) = self.take_cids(1) else {
            return Err(Error::QueueFull {
                outstanding: self.outstanding(),
            });
        };
        let mut cmd = SubmissionEntry::rw(opcode, ns.nsid(), lba.0, blocks as u32, false);
        cmd.set_cid(cid);
        let (p1, p2) = self.build_prps(cid, iova, len);
        cmd.set_prps(p1, p2);
        self.start_single(cid, tag, None);
        self.push(&cmd);
        self.publish();
        Ok(())
    }

    /// Submit a vectored read: the windows of `bufs`, in order, receive
    /// consecutive blocks starting at `lba`, in one command (at most
    /// [`IoQueuePair::max_transfer_bytes`] in all, and [`MAX_SEGMENTS`]
    /// buffers). Uses SGLs when the controller supports them; otherwise a
    /// PRP list, which needs every buffer but the first to start on a 4 KiB
    /// page and every buffer but the last to end on one.
    pub fn submit_readv(
        &mut self,
        ns: &Namespace,
        lba: Lba,
        bufs: Vec<DmaBuf<H::Dma>>,
        tag: u64,
    ) -> Result<(), RejectedVec<H::Dma>> {
        self.submit_vectored(io_opcode::READ, ns, lba, bufs, tag)
    }

    /// Submit a vectored write: the windows of `bufs`, in order, go to
    /// consecutive blocks starting at `lba`, in one command.
    pub fn submit_writev(
        &mut self,
        ns: &Namespace,
        lba: Lba,
        bufs: Vec<DmaBuf<H::Dma>>,
        tag: u64,
    ) -> Result<(), RejectedVec<H::Dma>> {
        self.submit_vectored(io_opcode::WRITE, ns, lba, bufs, tag)
    }

    fn check_vectored(
        &self,
        ns: &Namespace,
        lba: Lba,
        bufs: &[DmaBuf<H::Dma>],
    ) -> Result<u64, Error> {
        if bufs.is_empty() || bufs.len() > MAX_SEGMENTS {
            return Err(Error::InvalidArgument(format!(
                "a vectored command takes 1..={MAX_SEGMENTS} buffers, not {}",
                bufs.len()
            )));
        }
        let mut total = 0usize;
        for b in bufs {
            if b.domain() != self.domain {
                return Err(Error::ForeignBuffer);
            }
            if b.is_empty() || b.iova().0 % 4 != 0 || b.len() % 4 != 0 {
                return Err(Error::MisalignedBuffer { iova: b.iova() });
            }
            total += b.len();
        }
        self.check_ns(ns)?;
        if total as u64 % ns.block_size() != 0 {
            return Err(Error::UnalignedLength {
                len: total,
                block_size: ns.block_size(),
            });
        }
        if total > self.max_transfer {
            return Err(Error::InvalidArgument(format!(
                "vectored transfer of {total} bytes exceeds one command's limit of {} bytes \
                 (MDTS); vectored commands are not split: submit several",
                self.max_transfer
            )));
        }
        if !self.sgls {
            let page = PAGE_SIZE as u64;
            let n = bufs.len();
            for (i, b) in bufs.iter().enumerate() {
                let starts_ok = i == 0 || b.iova().0 % page == 0;
                let ends_ok = i + 1 == n || (b.iova().0 + b.len() as u64) % page == 0;
                if !starts_ok || !ends_ok {
                    return Err(Error::Unsupported(format!(
                        "buffer {i} of this vectored command is not page-aligned where it meets its \
                         neighbours; without SGLs (SGLS) that cannot be described with PRPs"
                    )));
                }
            }
        }
        let blocks = total as u64 / ns.block_size();
        check_range(ns, lba, blocks)?;
        Ok(blocks)
    }

    fn submit_vectored(
        &mut self,
        opcode: u8,
        ns: &Namespace,
        lba: Lba,
        bufs: Vec<DmaBuf<H::Dma>>,
        tag: u64,
    ) -> Result<(), RejectedVec<H::Dma>> {
        let blocks = match self.check_vectored(ns, lba, &bufs) {
            Ok(b) => b,
            Err(error) => return Err(RejectedVec { error, bufs }),
        };
        let Some(cid) = self.take_cids(1) else {
            let error = Error::QueueFull {
                outstanding: self.outstanding(),
            };
            return Err(RejectedVec { error, bufs });
        };
        let mut cmd = SubmissionEntry::rw(opcode, ns.nsid(), lba.0, blocks as u32, false);
        cmd.set_cid(cid);
        let list_off = usize::from(cid) * PAGE_SIZE;
        let list_iova = self.prp_mem.iova().add(list_off as u64);
        // The list page: slot `cid` is free and owns bytes
        // [cid*4096, cid*4096 + 4096) of `prp_mem`; at most MAX_SEGMENTS
        // 16-byte SGL descriptors, or at most 512 PRP entries (the transfer
        // is at most max_transfer <= 2 MiB), fit in that page; the region is
        // 4096-aligned so the u32/u64 stores are aligned. The device reads
        // the page only after the doorbell.
        // SAFETY: `list_off + PAGE_SIZE <= prp_mem.len()` (one page per slot,
        // `cid < entries`), so the offset pointer stays inside the region.
        let list = unsafe { self.prp_mem.as_ptr().add(list_off) };
        if self.sgls {
            const DATA_BLOCK: u64 = 0x0;
            const LAST_SEGMENT: u64 = 0x3;
            cmd.cdw0 |= 1 << 14; // PSDT = 01b: SGLs for the data
            if let [b] = bufs.as_slice() {
                cmd.prp1 = b.iova().0;
                cmd.prp2 = b.len() as u64 | (DATA_BLOCK << 60);
            } else {
                for (i, b) in bufs.iter().enumerate() {
                    // SAFETY: the list page (see above) holds MAX_SEGMENTS
                    // descriptors and `i < bufs.len() <= MAX_SEGMENTS`.
                    unsafe {
                        let d = list.add(i * 16);
                        d.cast::<u64>().write_volatile(b.iova().0);
                        d.add(8)
                            .cast::<u64>()
                            .write_volatile(b.len() as u64 | (DATA_BLOCK << 60));
                    }
                }
                cmd.prp1 = list_iova.0;
                cmd.prp2 = (bufs.len() * 16) as u64 | (LAST_SEGMENT << 60);
            }
        } else {
            // PRP: PRP1 is the first byte; then every page boundary in order.
            let page = PAGE_SIZE as u64;
            let mut entries = 0usize;
            let mut second = 0u64;
            let first = bufs[0].iova().0;
            for (i, b) in bufs.iter().enumerate() {
                let start = b.iova().0;
                let end = start + b.len() as u64;
                let mut p = if i == 0 {
                    (start / page + 1) * page
                } else {
                    start
                };
                while p < end {
                    if entries == 0 {
                        second = p;
                    }
                    // SAFETY: the list page (see above) holds 512 entries and the
                    // transfer (<= max_transfer <= 2 MiB) has fewer page boundaries.
                    unsafe { list.cast::<u64>().add(entries).write_volatile(p) };
                    entries += 1;
                    p += page;
                }
            }
            cmd.prp1 = first;
            cmd.prp2 = match entries {
                0 => 0,
                1 => second,
                _ => list_iova.0,
            };
        }
        self.start_group(cid, 1, tag, None);
        self.groups[usize::from(cid)].bufs = Some(bufs);
        self.push(&cmd);
        self.publish();
        Ok(())
    }

    /// Reserve `n` command ids: pops the group head and leaves `n - 1` on
    /// the free list for the caller to pop. `None` if not enough are free.
    #[inline]
    fn take_cids(&mut self, n: usize) -> Option<u16> {
        if self.nfree < n || self.sq.is_full() {
            return None;
        }
        self.pop_cid()
    }

    #[inline]
    fn pop_cid(&mut self) -> Option<u16> {
        let top = self.nfree.checked_sub(1)?;
        self.nfree = top;
        self.free_cids.get(top).copied()
    }

    #[inline]
    fn push_cid(&mut self, cid: u16) {
        // Never more than n - 1 ids are free: every pushed id was popped.
        if let Some(s) = self.free_cids.get_mut(self.nfree) {
            *s = cid;
            self.nfree += 1;
        }
    }

    /// A lone command in slot `cid` (free, so its `buf` is `None`).
    #[inline]
    fn start_single(&mut self, cid: u16, tag: u64, buf: Option<DmaBuf<H::Dma>>) {
        fill_single(&mut self.slots[usize::from(cid)], tag, buf);
    }

    /// The head of a group of `pieces` commands (a split request, or a
    /// vectored command with `pieces == 1`).
    fn start_group(&mut self, head: u16, pieces: u16, tag: u64, buf: Option<DmaBuf<H::Dma>>) {
        let s = &mut self.slots[usize::from(head)];
        s.state = SlotState::Grouped;
        s.tag = tag;
        s.buf = buf;
        let g = &mut self.groups[usize::from(head)];
        g.group = head;
        g.pending = pieces;
        g.head_done = false;
        g.error = None;
        g.result = 0;
        g.bufs = None;
    }

    #[inline]
    fn push(&mut self, cmd: &SubmissionEntry) {
        self.push_words(cmd.words());
    }

    #[inline(always)]
    fn push_words(&mut self, words: [u64; 8]) {
        self.sq.push_words(words);
        self.commands += 1;
    }

    #[inline]
    fn publish(&mut self) {
        if !self.batch_doorbells {
            self.ring();
        }
    }

    /// PRP1/PRP2 for `len` bytes at `iova` (4 KiB memory pages). Transfers
    /// over two pages use this slot's list page; `len <= max_transfer`
    /// keeps the list within one page.
    #[inline]
    fn build_prps(&mut self, cid: u16, iova: Iova, len: usize) -> (Iova, Iova) {
        let page = PAGE_SIZE as u64;
        let in_page = iova.0 % page;
        if in_page + len as u64 <= page {
            return (iova, Iova(0));
        }
        let first_len = page - in_page;
        let second = iova.0 + first_len;
        let rest = len as u64 - first_len;
        let pages = rest.div_ceil(page) as usize;
        if pages == 1 {
            return (iova, Iova(second));
        }
        debug_assert!(pages <= PAGE_SIZE / 8);
        let list_off = usize::from(cid) * PAGE_SIZE;
        // SAFETY: slot `cid` owns bytes [cid*4096, cid*4096 + 4096) of
        // `prp_mem`, which holds one page per slot (`cid < entries`), and
        // `pages <= 512` entries of 8 bytes fit in that page because
        // `len <= max_transfer <= 2 MiB`. The slot is free, so the device is
        // not reading this list page now. The region is 4096-aligned, so the
        // u64 writes are aligned.
        unsafe {
            let list = self.prp_mem.as_ptr().add(list_off).cast::<u64>();
            for i in 0..pages {
                list.add(i).write_volatile(second + i as u64 * page);
            }
        }
        (iova, self.prp_mem.iova().add(list_off as u64))
    }

    /// Reap up to `max` completions, handing each to `f`. Returns how many
    /// NVMe completion entries were consumed. Publishes batched submissions
    /// first.
    ///
    /// The CQ head doorbell is written only once the consumed entries not
    /// yet acknowledged reach the CQ's slack (its entries beyond the SQ's):
    /// since at most SQ-entries − 1 commands are ever outstanding, the
    /// controller always has room to post, and one doorbell write covers
    /// many polls (every poll, if the controller allowed no larger CQ).
    #[inline]
    pub fn poll(&mut self, max: usize, mut f: impl FnMut(Completion<H::Dma>)) -> usize {
        self.ring();
        let mut n = 0;
        let mut sq_head = 0;
        while n < max {
            let Some(cqe) = self.cq.peek_io() else { break };
            self.cq.advance();
            sq_head = cqe.sq_head;
            n += 1;
            self.complete_piece(cqe.cid, cqe.status, cqe.result, &mut f);
        }
        if n > 0 {
            // The newest entry carries the newest SQ head.
            self.sq.set_head(sq_head);
            // n <= CQ entries: the controller posts no more than that
            // between two head doorbells.
            let n16 = u16::try_from(n).unwrap_or(u16::MAX);
            self.cq_unacked = self.cq_unacked.saturating_add(n16);
            if self.cq_unacked >= self.cq_slack {
                self.cq_unacked = 0;
                self.cq.ring();
            }
        }
        n
    }

    /// Account one completion entry to its command; once the last piece of
    /// its request is in, hand the finished request to `f`. Entries for
    /// commands not in flight, or repeated for a piece already done, are
    /// ignored: a misbehaving device must not release a buffer early or
    /// break the bookkeeping.
    #[inline(always)]
    fn complete_piece(
        &mut self,
        cid: u16,
        status: u16,
        result: u32,
        f: &mut impl FnMut(Completion<H::Dma>),
    ) {
        match self.slots.get_mut(usize::from(cid)) {
            Some(slot) if slot.state == SlotState::Single => {
                slot.state = SlotState::Free;
                let completion = Completion {
                    tag: slot.tag,
                    status: NvmeStatus::from_field(status),
                    result,
                    buf: slot.buf.take(),
                    bufs: None,
                };
                self.push_cid(cid);
                self.completions += 1;
                f(completion);
            }
            _ => self.complete_grouped(cid, status, result, f),
        }
    }

    /// [`IoQueuePair::complete_piece`] for grouped commands and strays.
    #[inline(never)]
    fn complete_grouped(
        &mut self,
        cid: u16,
        status: u16,
        result: u32,
        f: &mut impl FnMut(Completion<H::Dma>),
    ) {
        let i = usize::from(cid);
        if self
            .slots
            .get(i)
            .is_none_or(|s| s.state != SlotState::Grouped)
        {
            tracing::warn!(
                qid = self.qid,
                cid,
                "completion for a command not in flight; ignored"
            );
            return;
        }
        let g = &mut self.groups[i];
        let head = g.group;
        if head != cid {
            // A later piece of a split request: free its id now.
            self.slots[i].state = SlotState::Free;
            self.push_cid(cid);
        } else if g.head_done {
            tracing::warn!(
                qid = self.qid,
                cid,
                "repeated completion for a command; ignored"
            );
            return;
        } else {
            g.head_done = true;
        }
        let h = &mut self.groups[usize::from(head)];
        if let Err(e) = NvmeStatus::from_field(status) {
            h.error.get_or_insert(e);
        }
        h.result = result;
        h.pending = h.pending.saturating_sub(1);
        if h.pending != 0 {
            return;
        }
        let (status, result, bufs) = (h.error.map_or(Ok(()), Err), h.result, h.bufs.take());
        let hs = &mut self.slots[usize::from(head)];
        hs.state = SlotState::Free;
        let completion = Completion {
            tag: hs.tag,
            status,
            result,
            buf: hs.buf.take(),
            bufs,
        };
        self.push_cid(head);
        self.completions += 1;
        f(completion);
    }

    /// Submit with `submit`, then wait for that one command (the queue must
    /// be idle). A timeout leaves the buffer with the queue pair.
    fn sync<T>(
        &mut self,
        what: &'static str,
        buf: Option<DmaBuf<H::Dma>>,
        submit: impl FnOnce(&mut Self, Option<DmaBuf<H::Dma>>) -> Result<(), IoError<H::Dma>>,
        done: impl FnOnce(Option<DmaBuf<H::Dma>>) -> T,
    ) -> Result<T, IoError<H::Dma>> {
        if self.outstanding() != 0 {
            return Err(IoError {
                error: Error::Busy {
                    outstanding: self.outstanding(),
                },
                buf,
            });
        }
        submit(self, buf)?;
        let timeout = self.shared.opts.io_timeout;
        let start = Instant::now();
        let mut finished = None;
        let mut spins: u32 = 0;
        loop {
            self.poll(1, |c| finished = Some(c));
            if let Some(c) = finished.take() {
                return match c.status {
                    Ok(()) => Ok(done(c.buf)),
                    Err(status) => Err(IoError {
                        error: Error::Command {
                            command: what,
                            status,
                        },
                        buf: c.buf,
                    }),
                };
            }
            spins = spins.wrapping_add(1);
            if spins % 1024 == 0 && start.elapsed() > timeout {
                return Err(IoError {
                    error: Error::Timeout {
                        command: what,
                        timeout,
                    },
                    buf: None,
                });
            }
            // No `spin_loop()` (PAUSE): a completion wait on a polled queue
            // wants the lowest detection latency, as SPDK's pollers do; see
            // the note in nvme-bench's engine for what PAUSE costs under TCG.
        }
    }

    fn sync_data(
        &mut self,
        what: &'static str,
        opcode: u8,
        fua: bool,
        ns: &Namespace,
        lba: Lba,
        buf: DmaBuf<H::Dma>,
    ) -> Result<DmaBuf<H::Dma>, IoError<H::Dma>> {
        if opcode == io_opcode::COMPARE && !self.oncs.compare() {
            return Err(IoError {
                error: unsupported("Compare"),
                buf: Some(buf),
            });
        }
        self.sync(
            what,
            Some(buf),
            |qp, b| {
                let b = b.expect("data commands carry a buffer");
                qp.submit_data(opcode, ns, lba, b, SYNC_TAG, fua)
                    .map_err(IoError::from)
            },
            |b| b.expect("data completions carry their buffer"),
        )
    }

    fn sync_simple(
        &mut self,
        what: &'static str,
        submit: impl FnOnce(&mut Self) -> Result<(), Error>,
    ) -> Result<(), Error> {
        self.sync(
            what,
            None,
            |qp, _| submit(qp).map_err(|error| IoError { error, buf: None }),
            |_| (),
        )
        .map_err(|e| e.error)
    }

    /// Read `buf.len()` bytes at `lba` and wait. The queue must be idle.
    pub fn read(
        &mut self,
        ns: &Namespace,
        lba: Lba,
        buf: DmaBuf<H::Dma>,
    ) -> Result<DmaBuf<H::Dma>, IoError<H::Dma>> {
        self.sync_data("Read", io_opcode::READ, false, ns, lba, buf)
    }

    /// Write `buf` at `lba` and wait. The queue must be idle.
    pub fn write(
        &mut self,
        ns: &Namespace,
        lba: Lba,
        buf: DmaBuf<H::Dma>,
    ) -> Result<DmaBuf<H::Dma>, IoError<H::Dma>> {
        self.sync_data("Write", io_opcode::WRITE, false, ns, lba, buf)
    }

    /// Force Unit Access write, and wait. The queue must be idle.
    pub fn write_fua(
        &mut self,
        ns: &Namespace,
        lba: Lba,
        buf: DmaBuf<H::Dma>,
    ) -> Result<DmaBuf<H::Dma>, IoError<H::Dma>> {
        self.sync_data("Write (FUA)", io_opcode::WRITE, true, ns, lba, buf)
    }

    /// Compare `buf` with the blocks at `lba`, and wait. A mismatch is
    /// `Error::Command` with status "Compare Failure".
    pub fn compare(
        &mut self,
        ns: &Namespace,
        lba: Lba,
        buf: DmaBuf<H::Dma>,
    ) -> Result<DmaBuf<H::Dma>, IoError<H::Dma>> {
        self.sync_data("Compare", io_opcode::COMPARE, false, ns, lba, buf)
    }

    /// Flush and wait. The queue must be idle.
    pub fn flush(&mut self, ns: &Namespace) -> Result<(), Error> {
        self.sync_simple("Flush", |qp| qp.submit_flush(ns, SYNC_TAG))
    }

    /// Write Zeroes and wait. The queue must be idle.
    pub fn write_zeroes(&mut self, ns: &Namespace, lba: Lba, blocks: u32) -> Result<(), Error> {
        self.sync_simple("Write Zeroes", |qp| {
            qp.submit_write_zeroes(ns, lba, blocks, SYNC_TAG)
        })
    }

    /// Deallocate (trim) `ranges` and wait. The queue must be idle.
    pub fn deallocate(&mut self, ns: &Namespace, ranges: &[(Lba, u32)]) -> Result<(), Error> {
        self.sync_simple("Dataset Management (deallocate)", |qp| {
            qp.submit_deallocate(ns, ranges, SYNC_TAG)
        })
    }
}

/// Make free slot `s` hold a lone command.
#[inline(always)]
fn fill_single<D: DmaRegion>(s: &mut Slot<D>, tag: u64, buf: Option<DmaBuf<D>>) {
    debug_assert!(s.state == SlotState::Free && s.buf.is_none());
    // The buffer first: moved straight from where it is into the slot.
    // A free slot holds no buffer: every path that frees a slot takes its
    // buffer first. So the old value is `None` and is not read (were the
    // invariant ever broken, a buffer would leak: its memory stays
    // allocated and mapped, which is safe, and the debug assertion above
    // catches it in tests).
    std::mem::forget(std::mem::replace(&mut s.buf, buf));
    s.state = SlotState::Single;
    s.tag = tag;
}

#[cold]
#[inline(never)]
fn reject<D: DmaRegion>(error: Error, buf: DmaBuf<D>) -> Rejected<D> {
    Rejected { error, buf }
}

fn unsupported(what: &str) -> Error {
    Error::Unsupported(format!(
        "the controller does not support {what} (Identify Controller ONCS)"
    ))
}

fn check_range(ns: &Namespace, lba: Lba, blocks: u64) -> Result<(), Error> {
    if lba
        .0
        .checked_add(blocks)
        .is_none_or(|end| end > ns.blocks())
    {
        return Err(Error::LbaOutOfRange {
            nsid: ns.nsid(),
            lba: lba.0,
            blocks,
            size: ns.blocks(),
        });
    }
    Ok(())
}

impl<H: Hardware> Drop for IoQueuePair<H> {
    fn drop(&mut self) {
        // Delete SQ first: the controller completes or aborts every command
        // of it before answering, so afterwards nothing is in flight.
        let deleted = self
            .shared
            .admin_cmd(SubmissionEntry::delete_io_sq(self.qid), "Delete I/O SQ")
            .and_then(|_| {
                self.shared
                    .admin_cmd(SubmissionEntry::delete_io_cq(self.qid), "Delete I/O CQ")
            });
        let stopped = match deleted {
            Ok(_) => {
                self.shared.release_qid(self.qid);
                true
            }
            Err(e) => {
                tracing::warn!(
                    qid = self.qid,
                    "deleting I/O queues failed: {e}; disabling the controller"
                );
                self.shared.emergency_disable()
            }
        };
        if stopped {
            // SAFETY: each field is dropped exactly once, here, and never
            // used again (we are in Drop). The controller no longer accesses
            // this memory: its queues were deleted, or the controller was
            // disabled (CSTS.RDY = 0).
            unsafe {
                ManuallyDrop::drop(&mut self.slots);
                ManuallyDrop::drop(&mut self.groups);
                ManuallyDrop::drop(&mut self.prp_mem);
                ManuallyDrop::drop(&mut self.sq);
                ManuallyDrop::drop(&mut self.cq);
            }
        } else {
            tracing::error!(
                qid = self.qid,
                outstanding = self.outstanding(),
                "controller did not stop; leaking this queue pair's DMA memory rather than \
                 freeing memory it may still access"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::cmd::CompletionEntry;
    use crate::controller::{Controller, ControllerOptions};
    use crate::model::{ModelConfig, ModelController};
    use crate::units::{ByteCount, Lba};

    /// A namespace formatted with metadata is refused on the data path
    /// (before anything reaches the device), with the buffer handed back.
    #[test]
    fn namespaces_with_metadata_are_refused_with_the_buffer() {
        let model = ModelController::new(ModelConfig::default());
        let c = Controller::init(model.clone(), ControllerOptions::default()).unwrap();
        let ns = c.namespace(1).unwrap().with_metadata_for_test(8);
        let mut qp = c.create_io_queue_pair(8).unwrap();
        let buf = c.alloc_buffer(ByteCount(4096)).unwrap();
        let r = qp.submit_read(&ns, Lba(0), buf, 1).unwrap_err();
        assert!(
            matches!(&r.error, crate::Error::Unsupported(m) if m.contains("metadata")),
            "{}",
            r.error
        );
        assert_eq!(r.buf.len(), 4096);
        assert_eq!(qp.outstanding(), 0);
        assert_eq!(qp.stats().commands, 0);
    }

    /// A device that completes the head piece of a split request twice
    /// must not get the buffer released before the other pieces are done,
    /// nor break the bookkeeping.
    #[test]
    fn repeated_completions_do_not_release_a_split_request_early() {
        let model = ModelController::new(ModelConfig {
            mdts: 1, // 8 KiB per command
            ..ModelConfig::default()
        });
        let c = Controller::init(model.clone(), ControllerOptions::default()).unwrap();
        let ns = c.namespace(1).unwrap().clone();
        let mut qp = c.create_io_queue_pair(16).unwrap();
        // Hold the model's completions: we play the device's CQ ourselves.
        model.hold_completions(qp.qid(), true);
        qp.submit_read(
            &ns,
            Lba(0),
            c.alloc_buffer(ByteCount(3 * 8192)).unwrap(),
            42,
        )
        .unwrap();
        let pieces: Vec<u16> = (0..qp.slots.len() as u16)
            .filter(|&i| qp.slots[usize::from(i)].state != super::SlotState::Free)
            .collect();
        assert_eq!(pieces.len(), 3);
        let head = qp.groups[usize::from(pieces[0])].group;
        let children: Vec<u16> = pieces.iter().copied().filter(|&p| p != head).collect();
        let mut out = Vec::new();
        let mut complete = |qp: &mut super::IoQueuePair<ModelController>, cid: u16| {
            let before = out.len();
            let cqe = CompletionEntry {
                cid,
                ..CompletionEntry::default()
            };
            qp.complete_piece(cqe.cid, cqe.status, cqe.result, &mut |c| out.push(c));
            out.len() > before
        };
        // Head twice, then the first child: still one piece outstanding.
        assert!(!complete(&mut qp, head));
        assert!(!complete(&mut qp, head), "repeated head completion ignored");
        assert!(
            !complete(&mut qp, children[0]),
            "buffer must not come back early"
        );
        // A repeat of the finished child is ignored too.
        assert!(!complete(&mut qp, children[0]));
        assert!(
            complete(&mut qp, children[1]),
            "the last piece completes the request"
        );
        // Afterwards nothing is in flight; more repeats are ignored.
        assert!(!complete(&mut qp, head));
        assert_eq!(qp.outstanding(), 0);
        assert_eq!(out.len(), 1);
        let done = &out[0];
        assert_eq!(
            (done.tag, done.status, done.buf.is_some()),
            (42, Ok(()), true)
        );
        model.hold_completions(qp.qid(), false);
    }
}
