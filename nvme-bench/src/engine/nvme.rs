//! nvme-vfio: our userspace driver. One I/O queue pair per job, created on
//! the job's (pinned) thread; `iodepth` DMA buffers from one region,
//! preallocated, cycling: a buffer moves into `submit_read`/`submit_write`
//! and comes back in the `Completion`. No allocation in the I/O loop.
//!
//! Timing (see docs/fio-compat.md): slat covers the `submit_*` call (SQ
//! entry written and, unless batched, the doorbell rung) plus the batch's
//! `ring()`; clat runs from its return to the poll that observes the CQE.

use std::time::{Duration, Instant};

use nvme_core::{
    ByteCount, CommandError, Controller, DmaBuf, Hardware, IoQueuePair, Lba, Namespace,
};

use super::{Done, Engine};
use crate::error::{Error, Result};
use crate::options::{Dir, Job};

type Buf<H> = DmaBuf<<H as Hardware>::Dma>;

/// The driver on any [`Hardware`]: `VfioDevice` for `ioengine=nvme-vfio`,
/// the in-process controller model for `ioengine=nvme-model`.
pub struct NvmeEngine<H: Hardware> {
    // The queue pair goes first: it must be gone before its controller handle.
    qp: IoQueuePair<H>,
    ns: Namespace,
    /// The namespace's logical block size (a power of two) and its log2.
    bs: u64,
    bs_shift: u32,
    slots: Vec<Option<Buf<H>>>,
    batching: bool,
    /// Batching, the doorbell written at each commit (not at the next poll).
    ring_at_commit: bool,
    /// Per slot: its I/O was reported at its deadline and the device still
    /// holds the buffer.
    timed_out: Vec<bool>,
    /// Per slot: a trim (Dataset Management deallocate) is in flight; the
    /// slot's buffer stays here (the command has none).
    trimming: Vec<bool>,
    /// `reap` returns by then (the job's runtime or drain end).
    until: Option<Instant>,
    /// I/Os reported at their deadline.
    timeouts: u64,
    /// Polls that found no completion while a reap waited for one (how
    /// much of the run was spent spinning on the device).
    empty_polls: u64,
    /// `ioengine` and controller for the `nvme_bench` JSON key.
    engine: &'static str,
    controller: String,
    ctrl: Controller<H>,
}

/// Queue entries for a job: enough for `iodepth` requests, each possibly
/// split at MDTS, plus the one slot NVMe keeps empty.
pub fn default_queue_size(job: &Job, max_transfer: usize, max_entries: u32) -> u32 {
    let pieces = (job.max_bs() as usize).div_ceil(max_transfer.max(4096)) as u32;
    (job.iodepth * pieces.max(1) + 1).max(32).min(max_entries)
}

impl<H: Hardware> NvmeEngine<H> {
    pub fn open(
        ctrl: &Controller<H>,
        nsid: u32,
        job: &Job,
        slots: usize,
        buf_len: usize,
        engine: &'static str,
        controller: String,
    ) -> Result<Self> {
        let ns = ctrl.namespace(nsid)?.clone();
        let bs = ns.block_size();
        if !bs.is_power_of_two() {
            return Err(Error::msg(format!(
                "namespace {nsid}: logical block size {bs} is not a power of two"
            )));
        }
        if ns.metadata_size() > 0 {
            return Err(Error::msg(format!(
                "namespace {nsid} is formatted with metadata; the driver needs 0"
            )));
        }
        let entries = match job.nvme_queue_size {
            Some(n) => n,
            None => default_queue_size(job, ctrl.max_transfer_bytes(), ctrl.max_queue_entries()),
        };
        let pieces = (job.max_bs() as usize).div_ceil(ctrl.max_transfer_bytes().max(4096)) as u32;
        if entries <= job.iodepth * pieces.max(1) {
            return Err(Error::msg(format!(
                "job '{}': nvme_queue_size={entries} cannot hold iodepth={} requests of {} bytes \
                 (the controller splits at {} bytes; one entry stays empty)",
                job.name,
                job.iodepth,
                job.max_bs(),
                ctrl.max_transfer_bytes()
            )));
        }
        let mut qp = ctrl
            .create_io_queue_pair(entries)
            .map_err(|e| Error::msg(format!("create I/O queue pair ({entries} entries): {e}")))?;
        // nvme_delay_submit (default): submissions only write SQ entries and
        // the doorbell is written by the next poll (a reap), as SPDK's own
        // fio engine does (delay_cmd_submit). Off: one doorbell per commit
        // (per I/O with iodepth_batch_submit=1).
        let batching = job.nvme_delay_submit || job.iodepth_batch_submit != 1;
        let ring_at_commit = batching && !job.nvme_delay_submit;
        qp.set_doorbell_batching(batching);
        // nvme_io_timeout (0: none); default the driver's.
        qp.set_io_timeout(Some(
            job.nvme_io_timeout.unwrap_or(ctrl.options().io_timeout),
        ));
        let bufs = ctrl.alloc_buffers(slots, ByteCount(buf_len))?;
        Ok(NvmeEngine {
            qp,
            ns,
            bs,
            bs_shift: bs.trailing_zeros(),
            slots: bufs.into_iter().map(Some).collect(),
            batching,
            ring_at_commit,
            timed_out: vec![false; slots],
            trimming: vec![false; slots],
            until: None,
            timeouts: 0,
            empty_polls: 0,
            engine,
            controller,
            ctrl: ctrl.clone(),
        })
    }
}

impl<H: Hardware> NvmeEngine<H> {
    /// A trim: one Dataset Management deallocate range of `blocks` LBAs.
    fn queue_trim(&mut self, slot: usize, lba: u64, blocks: u64) -> Result<()> {
        if self.slots.get(slot).is_none_or(Option::is_none) || self.trimming[slot] {
            return Err(Error::msg(format!("slot {slot} is busy")));
        }
        let n = u32::try_from(blocks)
            .map_err(|_| Error::msg(format!("trim of {blocks} blocks: too many for one range")))?;
        self.qp
            .submit_deallocate(&self.ns, &[(Lba(lba), n)], slot as u64)
            .map_err(|e| Error::msg(format!("trim at LBA {lba}: {e}")))?;
        self.trimming[slot] = true;
        Ok(())
    }
}

impl<H: Hardware> Engine for NvmeEngine<H> {
    fn buf_mut(&mut self, slot: usize) -> &mut [u8] {
        let b = self.slots[slot]
            .as_mut()
            .expect("the job loop only touches idle slots");
        let cap = b.capacity();
        // Reset the window to the whole buffer (capacity was set at allocation).
        let _ = b.set_window(0, cap);
        b
    }

    #[inline]
    fn queue(&mut self, slot: usize, dir: Dir, offset: u64, len: usize) -> Result<()> {
        let bs = self.bs;
        // bs is a power of two (checked at open): masks, not divisions.
        if (offset | len as u64) & (bs - 1) != 0 {
            return Err(Error::msg(format!(
                "I/O of {len} bytes at {offset} is not aligned to the {bs}-byte LBA"
            )));
        }
        if dir == Dir::Trim {
            return self.queue_trim(slot, offset / bs, len as u64 / bs);
        }
        let mut buf = self.slots[slot]
            .take()
            .ok_or_else(|| Error::msg(format!("slot {slot} is busy")))?;
        buf.set_window(0, len)?;
        let lba = offset >> self.bs_shift;
        let r = match dir {
            Dir::Read => self.qp.submit_read(&self.ns, Lba(lba), buf, slot as u64),
            // (Trims returned above.)
            Dir::Write | Dir::Trim => self.qp.submit_write(&self.ns, Lba(lba), buf, slot as u64),
        };
        r.map_err(|rej| {
            let e = Error::msg(format!("submit at LBA {lba}: {}", rej.error));
            self.slots[slot] = Some(rej.buf);
            e
        })
    }

    #[inline]
    fn commit(&mut self) -> Result<()> {
        if self.ring_at_commit {
            self.qp.publish();
        }
        Ok(())
    }

    #[inline]
    fn reap(&mut self, min: usize, max: usize, out: &mut Vec<Done>) -> Result<()> {
        crate::runner::FastEngine::reap_each(self, min, max, |d| out.push(d)).map(|_| ())
    }

    fn set_deadline(&mut self, until: Option<Instant>) {
        self.until = until;
    }
    fn run_fast(&mut self, f: &mut crate::runner::Fast<'_>) -> Option<Result<()>> {
        Some(crate::runner::fast_turns(self, f))
    }
    fn io_timeout(&self) -> Option<Duration> {
        self.qp.io_timeout()
    }
    fn size(&self) -> u64 {
        self.ns.size_bytes()
    }
    fn block_size(&self) -> u64 {
        self.ns.block_size()
    }
    fn extras(&self) -> serde_json::Value {
        let s = self.qp.stats();
        serde_json::json!({
            "engine": self.engine,
            "controller": self.controller,
            "nsid": self.ns.nsid(),
            "qid": self.qp.qid(),
            "queue_entries": self.qp.entries(),
            "sq_in_cmb": self.qp.sq_in_cmb(),
            "shadow_doorbells": self.ctrl.shadow_doorbells(),
            "doorbell_batching": self.batching,
            "delay_submit": self.batching && !self.ring_at_commit,
            "io_timeout_ms": self.qp.io_timeout().map_or(0, |t| t.as_millis() as u64),
            "timeout_policy": format!("{:?}", self.qp.timeout_policy()).to_lowercase(),
            "timeouts": self.timeouts,
            "empty_polls": self.empty_polls,
            "commands": s.commands,
            "completions": s.completions,
            "sq_doorbell_updates": s.sq_doorbell.updates,
            "sq_doorbell_mmio": s.sq_doorbell.mmio_writes,
            "cq_doorbell_updates": s.cq_doorbell.updates,
            "cq_doorbell_mmio": s.cq_doorbell.mmio_writes,
        })
    }
}

impl<H: Hardware> crate::runner::FastEngine for NvmeEngine<H> {
    /// [`Engine::reap`], handing each completion to `emit` as the driver
    /// consumes it (inlined into the driver's completion loop; no `Done`
    /// vector). Returns how many were handed over. The first poll is
    /// inlined into the caller (a reap that finds completions waiting, the
    /// common case, costs no call); the wait for more is not: its idle
    /// spin stays a small loop of its own.
    #[inline(always)]
    fn reap_each(&mut self, min: usize, max: usize, mut emit: impl FnMut(Done)) -> Result<usize> {
        let got = self.poll_once(max, &mut emit);
        if got >= min || got >= max {
            return Ok(got);
        }
        Ok(self.spin(min, max, got, &mut emit))
    }
}

impl<H: Hardware> NvmeEngine<H> {
    /// One poll of the queue pair for up to `max` completions, each handed
    /// to `emit`; returns how many.
    #[inline(always)]
    fn poll_once(&mut self, max: usize, emit: &mut impl FnMut(Done)) -> usize {
        let slots = &mut self.slots;
        let timed_out = &mut self.timed_out;
        let timeouts = &mut self.timeouts;
        let trimming = &mut self.trimming;
        let mut n = 0usize;
        // Each completion handed over is counted (a split request's
        // entries are one).
        macro_rules! out {
            ($d:expr) => {{
                n += 1;
                emit($d)
            }};
        }
        self.qp.poll(
            max,
            // Inlined into the driver's completion loop: the Completion
            // is not copied through a call per command.
            #[inline(always)]
            |c| {
                let slot = c.tag as usize;
                if slot >= slots.len() {
                    out!(Done::new(slot, Ok(())));
                    return;
                }
                if std::mem::take(&mut trimming[slot]) {
                    // A deallocate: no buffer to give back; a timeout is
                    // final (nothing of ours stays with the device).
                    out!(match c.status {
                        Ok(()) => Done::new(slot, Ok(())),
                        Err(CommandError::TimedOut { after }) => {
                            *timeouts += 1;
                            Done::failed(
                                slot,
                                libc::ETIMEDOUT,
                                format!("trim: no completion within {after:?} (nvme_io_timeout)"),
                            )
                        }
                        Err(s) => Done::new(slot, Err(format!("NVMe status: {s}"))),
                    });
                    return;
                }
                if let Err(CommandError::TimedOut { after }) = &c.status {
                    if c.buf.is_none() {
                        // Reported at the deadline; the buffer stays with
                        // the device until the late completion.
                        timed_out[slot] = true;
                        *timeouts += 1;
                        let mut d = Done::failed(
                            slot,
                            libc::ETIMEDOUT,
                            format!("no completion within {after:?} (nvme_io_timeout)"),
                        );
                        d.held = true;
                        out!(d);
                        return;
                    }
                }
                slots[slot] = c.buf;
                if std::mem::take(&mut timed_out[slot]) {
                    let mut d = Done::new(slot, Ok(()));
                    d.late = true;
                    out!(d);
                } else {
                    out!(Done::new(
                        slot,
                        c.status.map_err(|s| format!("NVMe status: {s}")),
                    ));
                }
            },
        );
        n
    }

    /// Poll until `min` completions (counting the `got` already handed
    /// over) or `max`, or the reap deadline passes.
    #[inline(never)]
    fn spin(
        &mut self,
        min: usize,
        max: usize,
        mut got: usize,
        emit: &mut impl FnMut(Done),
    ) -> usize {
        let mut spins = 0u32;
        let mut empty = u64::from(got == 0);
        loop {
            let n = self.poll_once(max - got, emit);
            got += n;
            empty += u64::from(n == 0);
            if got >= min || got >= max {
                self.empty_polls += empty;
                return got;
            }
            spins += 1;
            if spins % 1024 == 0 {
                if let Some(u) = self.until {
                    if Instant::now() >= u {
                        self.empty_polls += empty;
                        return got;
                    }
                }
            }
            // No `spin_loop()` (PAUSE) here, on purpose: this is a polled-mode
            // driver's completion wait, which should see a completion as soon
            // as it lands. PAUSE costs ~100+ cycles per iteration on recent
            // x86 parts, and under QEMU TCG it leaves the translated-code loop
            // and takes QEMU's big lock on every iteration, which stalls the
            // emulated controller: QD1 median clat 39.6 -> 20.6 us in the
            // demo guest (docs/performance.md, run 8).
        }
    }
}
