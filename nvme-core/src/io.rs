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

use crate::buffer::DmaBuf;
use crate::cmd::{io_opcode, SubmissionEntry};
use crate::controller::{Namespace, Shared, PAGE_SIZE};
use crate::error::{Error, IoError, Rejected};
use crate::hw::{DmaRegion, Hardware, Iova};
use crate::queue::{CqRing, SqRing};
use crate::status::NvmeStatus;

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

struct Slot<D: DmaRegion> {
    busy: bool,
    tag: u64,
    buf: Option<DmaBuf<D>>,
}

/// Tag used by the synchronous helpers.
const SYNC_TAG: u64 = u64::MAX;

/// An I/O submission/completion queue pair.
pub struct IoQueuePair<H: Hardware> {
    shared: Arc<Shared<H>>,
    qid: u16,
    // Everything the device may access is ManuallyDrop: Drop frees it only
    // after the controller confirmed the queues are gone.
    sq: ManuallyDrop<SqRing<H>>,
    cq: ManuallyDrop<CqRing<H>>,
    /// One 4 KiB PRP list page per command slot.
    prp_mem: ManuallyDrop<H::Dma>,
    slots: ManuallyDrop<Box<[Slot<H::Dma>]>>,
    free_cids: Vec<u16>,
    max_transfer: usize,
    domain: u64,
    /// Not `Sync`: all access goes through `&mut self` on one thread.
    _not_sync: PhantomData<std::cell::Cell<()>>,
}

// SAFETY: the pair owns its rings, PRP pages and in-flight buffers outright
// (`H::Dma` is `Send`, SqRing/CqRing are `Send`); the shared controller state
// is `Sync` behind an Arc. Moving the pair moves sole access with it.
unsafe impl<H: Hardware> Send for IoQueuePair<H> {}

impl<H: Hardware> IoQueuePair<H> {
    pub(crate) fn create(shared: Arc<Shared<H>>, qid: u16, entries: u32) -> Result<Self, Error> {
        let n = entries as u16; // checked <= 65536 by the caller; 65536 wraps to 0
        let n = if entries == 65536 { u16::MAX } else { n };
        let hw = &shared.hw;
        let cap = shared.cap;
        let cq = CqRing::new(hw, n, cap.cq_head_doorbell(qid))?;
        let sq = match &shared.cmb {
            Some(cmb) => match SqRing::new_in_cmb(hw, cmb, n, cap.sq_tail_doorbell(qid)) {
                Ok(sq) => sq,
                Err(e) => {
                    tracing::debug!(qid, "SQ in host memory: {e}");
                    SqRing::new(hw, n, cap.sq_tail_doorbell(qid))?
                }
            },
            None => SqRing::new(hw, n, cap.sq_tail_doorbell(qid))?,
        };
        let prp_mem = hw.alloc_dma(usize::from(n) * PAGE_SIZE)?;
        shared.admin_cmd(
            SubmissionEntry::create_io_cq(qid, n, cq.iova()),
            "Create I/O Completion Queue",
        )?;
        if let Err(e) = shared.admin_cmd(
            SubmissionEntry::create_io_sq(qid, n, sq.iova(), qid),
            "Create I/O Submission Queue",
        ) {
            let _ = shared.admin_cmd(SubmissionEntry::delete_io_cq(qid), "Delete I/O CQ");
            return Err(e);
        }
        let slots = (0..n)
            .map(|_| Slot {
                busy: false,
                tag: 0,
                buf: None,
            })
            .collect();
        // At most n - 1 commands can be in the ring at once.
        let free_cids = (0..n - 1).rev().collect();
        let max_transfer = shared.max_transfer;
        let domain = shared.domain;
        Ok(IoQueuePair {
            shared,
            qid,
            sq: ManuallyDrop::new(sq),
            cq: ManuallyDrop::new(cq),
            prp_mem: ManuallyDrop::new(prp_mem),
            slots: ManuallyDrop::new(slots),
            free_cids,
            max_transfer,
            domain,
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
        usize::from(self.sq.entries()) - 1 - self.free_cids.len()
    }

    /// Largest transfer one command may carry.
    pub fn max_transfer_bytes(&self) -> usize {
        self.max_transfer
    }

    /// Submit a read of `buf.len()` bytes from `lba` into `buf`.
    #[inline]
    pub fn submit_read(
        &mut self,
        ns: &Namespace,
        lba: u64,
        buf: DmaBuf<H::Dma>,
        tag: u64,
    ) -> Result<(), Rejected<H::Dma>> {
        self.submit_rw(io_opcode::READ, ns, lba, buf, tag, false)
    }

    /// Submit a write of `buf.len()` bytes from `buf` to `lba`.
    #[inline]
    pub fn submit_write(
        &mut self,
        ns: &Namespace,
        lba: u64,
        buf: DmaBuf<H::Dma>,
        tag: u64,
    ) -> Result<(), Rejected<H::Dma>> {
        self.submit_rw(io_opcode::WRITE, ns, lba, buf, tag, false)
    }

    /// Submit a flush of the namespace's volatile write cache.
    pub fn submit_flush(&mut self, ns: &Namespace, tag: u64) -> Result<(), Error> {
        let cid = self.free_cids.pop().ok_or(Error::QueueFull {
            outstanding: self.outstanding(),
        })?;
        let mut cmd = SubmissionEntry::flush(ns.nsid);
        cmd.set_cid(cid);
        self.issue(cid, cmd, tag, None);
        Ok(())
    }

    fn check_rw(&self, ns: &Namespace, lba: u64, buf: &DmaBuf<H::Dma>) -> Result<u32, Error> {
        if buf.domain() != self.domain {
            return Err(Error::ForeignBuffer);
        }
        if ns.metadata_size != 0 {
            return Err(Error::Unsupported(format!(
                "namespace {} uses {} bytes of metadata per block; metadata is not supported yet",
                ns.nsid, ns.metadata_size
            )));
        }
        let len = buf.len();
        if len == 0 || len as u64 % ns.block_size != 0 {
            return Err(Error::UnalignedLength {
                len,
                block_size: ns.block_size,
            });
        }
        if len > self.max_transfer {
            return Err(Error::TooLarge {
                len,
                max: self.max_transfer,
            });
        }
        if buf.iova().0 % 4 != 0 {
            return Err(Error::MisalignedBuffer { iova: buf.iova() });
        }
        let blocks = len as u64 / ns.block_size;
        if lba.checked_add(blocks).is_none_or(|end| end > ns.blocks) {
            return Err(Error::LbaOutOfRange {
                nsid: ns.nsid,
                lba,
                blocks,
                size: ns.blocks,
            });
        }
        Ok(blocks as u32)
    }

    fn submit_rw(
        &mut self,
        opcode: u8,
        ns: &Namespace,
        lba: u64,
        buf: DmaBuf<H::Dma>,
        tag: u64,
        fua: bool,
    ) -> Result<(), Rejected<H::Dma>> {
        let blocks = match self.check_rw(ns, lba, &buf) {
            Ok(b) => b,
            Err(error) => return Err(Rejected { error, buf }),
        };
        let Some(cid) = self.free_cids.pop() else {
            let error = Error::QueueFull {
                outstanding: self.outstanding(),
            };
            return Err(Rejected { error, buf });
        };
        let mut cmd = SubmissionEntry::rw(opcode, ns.nsid, lba, blocks, fua);
        cmd.set_cid(cid);
        let (prp1, prp2) = self.build_prps(cid, buf.iova(), buf.len());
        cmd.set_prps(prp1, prp2);
        self.issue(cid, cmd, tag, Some(buf));
        Ok(())
    }

    /// PRP1/PRP2 for `len` bytes at `iova` (4 KiB memory pages). Transfers
    /// over two pages use this slot's list page; `len <= max_transfer`
    /// keeps the list within one page.
    #[inline]
    fn build_prps(&mut self, cid: u16, iova: Iova, len: usize) -> (Iova, Iova) {
        let page = PAGE_SIZE as u64;
        let first_len = page - (iova.0 % page);
        if len as u64 <= first_len {
            return (iova, Iova(0));
        }
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

    #[inline]
    fn issue(&mut self, cid: u16, cmd: SubmissionEntry, tag: u64, buf: Option<DmaBuf<H::Dma>>) {
        let slot = &mut self.slots[usize::from(cid)];
        slot.busy = true;
        slot.tag = tag;
        slot.buf = buf;
        self.sq.push(&cmd);
        self.sq.ring();
    }

    /// Reap up to `max` completions, handing each to `f`. Returns how many.
    /// One CQ head doorbell write covers the whole batch.
    #[inline]
    pub fn poll(&mut self, max: usize, mut f: impl FnMut(Completion<H::Dma>)) -> usize {
        let mut n = 0;
        while n < max {
            let Some(cqe) = self.cq.peek() else { break };
            self.cq.advance();
            self.sq.set_head(cqe.sq_head);
            n += 1;
            let Some(slot) = self.slots.get_mut(usize::from(cqe.cid)).filter(|s| s.busy) else {
                tracing::warn!(
                    qid = self.qid,
                    cid = cqe.cid,
                    "completion for a command not in flight; ignored"
                );
                continue;
            };
            slot.busy = false;
            let completion = Completion {
                tag: slot.tag,
                status: cqe.status(),
                result: cqe.result,
                buf: slot.buf.take(),
            };
            self.free_cids.push(cqe.cid);
            f(completion);
        }
        if n > 0 {
            self.cq.ring();
        }
        n
    }

    /// Wait for the one outstanding synchronous command.
    fn wait_sync(&mut self, what: &'static str) -> Result<Completion<H::Dma>, Error> {
        let timeout = self.shared.opts.io_timeout;
        let start = Instant::now();
        let mut done = None;
        let mut spins: u32 = 0;
        loop {
            self.poll(1, |c| done = Some(c));
            if let Some(c) = done.take() {
                return Ok(c);
            }
            spins = spins.wrapping_add(1);
            if spins % 1024 == 0 && start.elapsed() > timeout {
                return Err(Error::Timeout {
                    command: what,
                    timeout,
                });
            }
            std::hint::spin_loop();
        }
    }

    fn sync_rw(
        &mut self,
        write: bool,
        ns: &Namespace,
        lba: u64,
        buf: DmaBuf<H::Dma>,
    ) -> Result<DmaBuf<H::Dma>, IoError<H::Dma>> {
        if self.outstanding() != 0 {
            return Err(IoError {
                error: Error::Busy {
                    outstanding: self.outstanding(),
                },
                buf: Some(buf),
            });
        }
        let what = if write { "Write" } else { "Read" };
        if write {
            self.submit_write(ns, lba, buf, SYNC_TAG)?;
        } else {
            self.submit_read(ns, lba, buf, SYNC_TAG)?;
        }
        let c = self
            .wait_sync(what)
            .map_err(|error| IoError { error, buf: None })?;
        match c.status {
            Ok(()) => Ok(c.buf.expect("read/write completions carry their buffer")),
            Err(status) => Err(IoError {
                error: Error::Command {
                    command: what,
                    status,
                },
                buf: c.buf,
            }),
        }
    }

    /// Read `buf.len()` bytes at `lba` and wait. The queue must be idle.
    pub fn read(
        &mut self,
        ns: &Namespace,
        lba: u64,
        buf: DmaBuf<H::Dma>,
    ) -> Result<DmaBuf<H::Dma>, IoError<H::Dma>> {
        self.sync_rw(false, ns, lba, buf)
    }

    /// Write `buf` at `lba` and wait. The queue must be idle.
    pub fn write(
        &mut self,
        ns: &Namespace,
        lba: u64,
        buf: DmaBuf<H::Dma>,
    ) -> Result<DmaBuf<H::Dma>, IoError<H::Dma>> {
        self.sync_rw(true, ns, lba, buf)
    }

    /// Flush and wait. The queue must be idle.
    pub fn flush(&mut self, ns: &Namespace) -> Result<(), Error> {
        if self.outstanding() != 0 {
            return Err(Error::Busy {
                outstanding: self.outstanding(),
            });
        }
        self.submit_flush(ns, SYNC_TAG)?;
        let c = self.wait_sync("Flush")?;
        c.status.map_err(|status| Error::Command {
            command: "Flush",
            status,
        })
    }
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
