//! Every way to submit a command: reads and writes (the one-command case
//! inline, requests over MDTS split into a group), raw submissions into
//! caller-managed memory, vectored commands, and commands without data.

use crate::buffer::DmaBuf;
use crate::cmd::{io_opcode, SubmissionEntry};
use crate::controller::Namespace;
use crate::error::{Error, Rejected};
use crate::hw::{Hardware, Iova};
use crate::units::{ByteCount, Lba};

use super::validate::{check_range, Span};
use super::{IoQueuePair, MAX_DSM_RANGES};

impl<H: Hardware> IoQueuePair<H> {
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
    ) -> Result<(), Rejected<DmaBuf<H::Dma>>> {
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
    ) -> Result<(), Rejected<DmaBuf<H::Dma>>> {
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
    ) -> Result<(), Rejected<DmaBuf<H::Dma>>> {
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
    ) -> Result<(), Rejected<DmaBuf<H::Dma>>> {
        if let Err(error) = self.rules.optional(self.rules.oncs.compare(), "Compare") {
            return Err(Rejected { error, buf });
        }
        self.submit_data(io_opcode::COMPARE, ns, lba, buf, tag, false)
    }

    /// Submit a flush of the namespace's volatile write cache.
    pub fn submit_flush(&mut self, ns: &Namespace, tag: u64) -> Result<(), Error> {
        self.rules.namespace(ns)?;
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
        let r = &self.rules;
        r.optional(r.oncs.write_zeroes(), "Write Zeroes")?;
        r.namespace(ns)?;
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
        let r = &self.rules;
        r.optional(r.oncs.dataset_management(), "Dataset Management")?;
        r.namespace(ns)?;
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
                            // The range list goes into this slot's list page.
        self.submit_simple(cmd, tag, |qp, cid| Some(qp.lists.dsm_ranges(cid, ranges)))
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
            return Err(self.queue_full());
        };
        if let Some(prp1) = fill(self, cid) {
            cmd.set_prps(prp1, Iova(0));
        }
        cmd.set_cid(cid);
        self.cmds.start_single(cid, tag, None, self.deadlines.gen);
        self.push(&cmd);
        self.publish_unless_batching();
        Ok(())
    }

    /// A data command: the one-command case inline, checks included;
    /// anything else out of line.
    #[inline(always)]
    pub(super) fn submit_data(
        &mut self,
        opcode: u8,
        ns: &Namespace,
        lba: Lba,
        buf: DmaBuf<H::Dma>,
        tag: u64,
        fua: bool,
    ) -> Result<(), Rejected<DmaBuf<H::Dma>>> {
        let blocks = match self.rules.data(ns, lba, &buf) {
            Ok(b) => b,
            Err(error) => return Err(reject(error, buf)),
        };
        let len = buf.len();
        // One compare for both `len == 0` (wraps to the top) and
        // `len > max_transfer`; the out-of-line path sorts them out.
        if len.wrapping_sub(1) >= self.rules.max_transfer {
            return self.submit_split(opcode, ns, lba, buf, tag, fua, blocks);
        }
        // One command: the common case, no group bookkeeping.
        let Some(cid) = self.take_cids(1) else {
            return Err(reject(self.queue_full(), buf));
        };
        let (p1, p2) = self.lists.prps(cid, buf.iova(), len);
        let words =
            SubmissionEntry::rw_words(opcode, ns.nsid(), cid, lba.0, blocks as u32, fua, p1, p2);
        self.cmds.slot(cid).hold(tag, Some(buf), self.deadlines.gen);
        self.push_words(words);
        self.publish_unless_batching();
        Ok(())
    }

    #[cold]
    #[inline(never)]
    fn queue_full(&self) -> Error {
        Error::QueueFull {
            outstanding: self.outstanding(),
        }
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
    ) -> Result<(), Rejected<DmaBuf<H::Dma>>> {
        let len = buf.len();
        if len == 0 {
            let error = self.rules.data_error(ns, lba, &buf);
            return Err(Rejected { error, buf });
        }
        // Split at MDTS; every piece is a whole number of blocks because
        // MDTS is a power-of-two multiple of 4 KiB.
        let max_transfer = self.rules.max_transfer;
        let pieces = len.div_ceil(max_transfer);
        let max_pieces = usize::from(self.sq.entries()) - 1;
        if pieces > max_pieces {
            let error = Error::TooLarge {
                len,
                max: max_transfer * max_pieces,
            };
            return Err(Rejected { error, buf });
        }
        let Some(head) = self.take_cids(pieces) else {
            return Err(Rejected {
                error: self.queue_full(),
                buf,
            });
        };
        let iova = buf.iova();
        self.cmds.start_group(
            head,
            pieces as u16,
            tag,
            Some(buf),
            None,
            self.deadlines.gen,
        );
        let piece_blocks = ((max_transfer as u64) >> ns.block_shift()).max(1);
        let mut cid = head;
        for i in 0..pieces {
            if i > 0 {
                cid = self.cmds.pop_cid().expect("take_cids reserved enough");
                self.cmds.join_group(cid, head);
            }
            let first = i as u64 * piece_blocks;
            let n = piece_blocks.min(blocks - first);
            let mut cmd = SubmissionEntry::rw(opcode, ns.nsid(), lba.0 + first, n as u32, fua);
            cmd.set_cid(cid);
            let off = first << ns.block_shift();
            let bytes = (n << ns.block_shift()) as usize;
            let (p1, p2) = self.lists.prps(cid, iova.add(off), bytes);
            cmd.set_prps(p1, p2);
            self.push(&cmd);
        }
        self.publish_unless_batching();
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
    #[allow(unsafe_code)]
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
    #[allow(unsafe_code)]
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
        let span = Span::OneCommand {
            what: "raw",
            hint: "",
        };
        let blocks = self.rules.transfer(ns, lba, len.0, iova, span)?;
        let Some(cid) = self.take_cids(1) else {
            return Err(self.queue_full());
        };
        let mut cmd = SubmissionEntry::rw(opcode, ns.nsid(), lba.0, blocks as u32, false);
        cmd.set_cid(cid);
        let (p1, p2) = self.lists.prps(cid, iova, len.0);
        cmd.set_prps(p1, p2);
        self.cmds.start_single(cid, tag, None, self.deadlines.gen);
        self.push(&cmd);
        self.publish_unless_batching();
        Ok(())
    }

    /// Submit a vectored read: the windows of `bufs`, in order, receive
    /// consecutive blocks starting at `lba`, in one command (at most
    /// [`IoQueuePair::max_transfer_bytes`] in all, and
    /// [`MAX_SEGMENTS`](crate::MAX_SEGMENTS) buffers). Uses SGLs when the
    /// controller supports them; otherwise a PRP list, which needs every
    /// buffer but the first to start on a 4 KiB page and every buffer but
    /// the last to end on one.
    pub fn submit_readv(
        &mut self,
        ns: &Namespace,
        lba: Lba,
        bufs: Vec<DmaBuf<H::Dma>>,
        tag: u64,
    ) -> Result<(), Rejected<Vec<DmaBuf<H::Dma>>>> {
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
    ) -> Result<(), Rejected<Vec<DmaBuf<H::Dma>>>> {
        self.submit_vectored(io_opcode::WRITE, ns, lba, bufs, tag)
    }

    fn submit_vectored(
        &mut self,
        opcode: u8,
        ns: &Namespace,
        lba: Lba,
        bufs: Vec<DmaBuf<H::Dma>>,
        tag: u64,
    ) -> Result<(), Rejected<Vec<DmaBuf<H::Dma>>>> {
        let blocks = match self.rules.vectored(ns, lba, &bufs) {
            Ok(b) => b,
            Err(error) => return Err(Rejected { error, buf: bufs }),
        };
        let Some(cid) = self.take_cids(1) else {
            return Err(Rejected {
                error: self.queue_full(),
                buf: bufs,
            });
        };
        let mut cmd = SubmissionEntry::rw(opcode, ns.nsid(), lba.0, blocks as u32, false);
        cmd.set_cid(cid);
        self.lists.vectored(cid, &bufs, self.rules.sgls, &mut cmd);
        self.cmds
            .start_group(cid, 1, tag, None, Some(bufs), self.deadlines.gen);
        self.push(&cmd);
        self.publish_unless_batching();
        Ok(())
    }

    /// Reserve `n` command ids: pops the group head and leaves `n - 1` on
    /// the free list for the caller to pop. `None` if not enough are free.
    #[inline]
    fn take_cids(&mut self, n: usize) -> Option<u16> {
        if self.cmds.free() < n || self.sq.is_full() {
            return None;
        }
        self.cmds.pop_cid()
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
}

#[cold]
#[inline(never)]
fn reject<D: crate::hw::DmaRegion>(error: Error, buf: DmaBuf<D>) -> Rejected<DmaBuf<D>> {
    Rejected { error, buf }
}
