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
//!
//! The module, along its seams:
//! - here: the pair, its creation and teardown, publishing submissions and
//!   polling completions;
//! - `submit`: every way to submit a command (the one-command fast path,
//!   splits at MDTS, raw, vectored, commands without data);
//! - `slots`: command identifiers, what each command in flight carries, and
//!   completion accounting;
//! - `data_ptr`: PRPs, PRP lists, SGL segments and DSM ranges in each
//!   slot's list page;
//! - `validate`: the transfer rules every submission path shares;
//! - `blocking`: submit-and-wait helpers.

mod blocking;
mod data_ptr;
mod slots;
mod submit;
mod validate;

use std::marker::PhantomData;
use std::mem::ManuallyDrop;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::buffer::DmaBuf;
use crate::controller::{Shared, TimeoutPolicy, PAGE_SIZE};
use crate::error::Error;
use crate::hw::{DmaRegion, Hardware};
use crate::regs::Csts;
use crate::ring::{CqRing, DoorbellStats, SqRing};
use crate::status::CommandError;

use data_ptr::ListPages;
use slots::CommandSlots;
use validate::Rules;

/// A finished command.
pub struct Completion<D: DmaRegion> {
    /// The caller's token from submission.
    pub tag: u64,
    /// Success, the controller's status, or a deadline passed (then `buf`
    /// is `None`: the same tag comes back once more, with the buffer, when
    /// the device completes the command).
    pub status: Result<(), CommandError>,
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
    /// One 4 KiB list page (PRP list, SGL segment, DSM ranges) per slot.
    lists: ManuallyDrop<ListPages<H::Dma>>,
    /// Command slots, with the buffers of commands in flight.
    cmds: ManuallyDrop<CommandSlots<H::Dma>>,
    rules: Rules,
    /// Defer SQ doorbells until `publish()` / `poll()`.
    batch_doorbells: bool,
    /// CQ entries consumed but not yet acknowledged with a head doorbell.
    cq_unacked: u16,
    /// How many may stay unacknowledged: CQ entries minus SQ entries.
    cq_slack: u16,
    /// The controller's reset epoch these queues were created in; when the
    /// controller's moves on, the next poll recovers (`recover`).
    epoch: u64,
    commands: u64,
    /// Deadlines: see [`IoQueuePair::check_deadlines`].
    deadlines: Deadlines,
    /// Transparent retries the blocking helpers and the async adapter make.
    max_retries: u8,
    /// Not `Sync`: all access goes through `&mut self` on one thread.
    _not_sync: PhantomData<std::cell::Cell<()>>,
}

impl<H: Hardware> IoQueuePair<H> {
    /// Build the rings and slots for queue `qid` and create the queues on
    /// the controller. The caller reserved `qid` and checked `entries`
    /// (2..=65535).
    pub(crate) fn create(shared: Arc<Shared<H>>, qid: u16, entries: u32) -> Result<Self, Error> {
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
        let lists = ListPages::new(hw.alloc_dma(usize::from(n) * PAGE_SIZE)?);
        let epoch = match shared.create_io_queues(qid, &mut cq, &mut sq) {
            Ok(epoch) => epoch,
            Err(e) => {
                if !e.memory_released {
                    // The controller may still use this memory: leak it.
                    std::mem::forget((cq, sq, lists));
                }
                return Err(e.error);
            }
        };
        let shared_timeout = shared.opts.io_timeout;
        let max_retries = shared.opts.max_retries;
        let rules = Rules {
            domain: shared.domain,
            max_transfer: shared.max_transfer,
            oncs: shared.oncs(),
            sgls: shared.sgls_usable(),
        };
        Ok(IoQueuePair {
            shared,
            qid,
            sq: ManuallyDrop::new(sq),
            cq: ManuallyDrop::new(cq),
            lists: ManuallyDrop::new(lists),
            cmds: ManuallyDrop::new(CommandSlots::new(n)),
            rules,
            batch_doorbells: false,
            cq_unacked: 0,
            cq_slack,
            epoch,
            commands: 0,
            deadlines: Deadlines::new(shared_timeout),
            max_retries,
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
        self.cmds.in_flight()
    }

    /// Largest transfer one NVMe command carries; larger requests are split.
    pub fn max_transfer_bytes(&self) -> usize {
        self.rules.max_transfer
    }

    /// Counters: commands, completions, doorbell updates and MMIO writes.
    pub fn stats(&self) -> QueueStats {
        QueueStats {
            commands: self.commands,
            completions: self.cmds.completions,
            sq_doorbell: self.sq.doorbell.stats,
            cq_doorbell: self.cq.doorbell.stats,
        }
    }

    /// With batching on, submissions only write queue entries; the SQ
    /// doorbell is written once by [`IoQueuePair::publish`] or at the start
    /// of the next [`IoQueuePair::poll`]. Off (the default): every
    /// submission publishes itself.
    pub fn set_doorbell_batching(&mut self, on: bool) {
        self.batch_doorbells = on;
        if !on {
            self.publish();
        }
    }

    /// Make every submission not yet visible to the controller visible,
    /// with one doorbell write.
    #[inline]
    pub fn publish(&mut self) {
        if self.sq.unpublished() {
            self.sq.publish_tail();
        }
    }

    /// After a submission: publish it unless doorbells are batched.
    #[inline]
    fn publish_unless_batching(&mut self) {
        if !self.batch_doorbells {
            self.publish();
        }
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
    #[inline(always)]
    pub fn poll(&mut self, max: usize, mut f: impl FnMut(Completion<H::Dma>)) -> usize {
        // One relaxed load of a read-mostly word: has the controller been
        // reset since these queues were created?
        if self.shared.epoch.load(Ordering::Relaxed) != self.epoch {
            return self.recover(&mut f);
        }
        self.publish();
        let mut n = 0;
        let mut sq_head = 0;
        while n < max {
            let Some(cqe) = self.cq.peek_io() else { break };
            self.cq.advance();
            sq_head = cqe.sq_head;
            n += 1;
            self.cmds
                .complete(self.qid, cqe.cid, cqe.status, cqe.result, &mut f);
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
                self.cq.publish_head();
            }
        }
        // Deadlines: a countdown here, a clock read only every
        // `CHECK_EVERY` polls.
        self.deadlines.countdown -= 1;
        if self.deadlines.countdown == 0 {
            n += self.check_deadlines(&mut f);
        }
        n
    }

    /// Change this pair's I/O deadline (from `ControllerOptions::io_timeout`);
    /// `None` turns deadlines off. Applies to commands already in flight too.
    pub fn set_io_timeout(&mut self, timeout: Option<Duration>) {
        self.deadlines.timeout = timeout.filter(|t| !t.is_zero());
    }

    /// Transparent retries (see `ControllerOptions::max_retries`) for this
    /// pair's blocking helpers and async futures; 0 turns them off.
    pub fn set_max_retries(&mut self, retries: u8) {
        self.max_retries = retries;
    }

    /// The transparent retries in force.
    pub fn max_retries(&self) -> u8 {
        self.max_retries
    }

    /// The I/O deadline in force, if any.
    pub fn io_timeout(&self) -> Option<Duration> {
        self.deadlines.timeout
    }

    /// What happens to a command past its deadline (the controller's
    /// [`ControllerOptions::timeout_policy`](crate::ControllerOptions)).
    pub fn timeout_policy(&self) -> TimeoutPolicy {
        self.shared.opts.timeout_policy
    }

    /// The deadline check, every `CHECK_EVERY` polls (which also reads the
    /// Error Information log when a failure's status had the More bit). No
    /// clock is read per
    /// command: each command records the *generation* it was submitted in;
    /// a generation ends (and the next begins) at most every quarter of
    /// the timeout, and the instant each began is kept, so a command of
    /// generation `g` was surely submitted before generation `g + 1` began.
    /// It has passed its deadline once that instant is a timeout ago.
    /// Expired requests are reported (`CommandError::TimedOut`, no buffer)
    /// and, per the controller's `TimeoutPolicy`, aborted. Returns the
    /// reports made (they count as consumed completions for `poll`).
    #[cold]
    #[inline(never)]
    fn check_deadlines(&mut self, f: &mut impl FnMut(Completion<H::Dma>)) -> usize {
        if self.cmds.more_info {
            // A failure said "see the Error Information log": read it now,
            // while the entry is there.
            self.cmds.more_info = false;
            self.shared.read_error_log();
        }
        let d = &mut self.deadlines;
        d.countdown = CHECK_EVERY;
        let Some(timeout) = d.timeout else {
            return 0;
        };
        if self.cmds.in_flight() == 0 {
            return 0;
        }
        let now = Instant::now();
        if now.saturating_duration_since(d.began[gen_slot(d.gen)]) < timeout / 4 {
            return 0;
        }
        d.gen = d.gen.wrapping_add(1);
        d.began[gen_slot(d.gen)] = now;
        let (gen, began) = (d.gen, d.began);
        let expired = |g: u32| {
            let age = gen.wrapping_sub(g);
            // Older than the kept history: at least GENERATIONS - 1
            // quarters of the timeout ago.
            age >= GENERATIONS as u32
                || (age >= 1
                    && now.saturating_duration_since(began[gen_slot(g.wrapping_add(1))]) >= timeout)
        };
        let mut abort = Vec::new();
        let policy = self.shared.opts.timeout_policy;
        let n = self.cmds.expire(timeout, expired, f, |cid| abort.push(cid));
        if n == 0 {
            return 0;
        }
        // A controller that is not running as we left it gets no Abort (it
        // cannot answer one): it is reset.
        let mut reset = !self.controller_running();
        if !reset && policy != TimeoutPolicy::Report {
            let mut declined = false;
            for cid in abort {
                let aborted = self.shared.abort(self.qid, cid);
                declined |= !aborted;
                tracing::warn!(qid = self.qid, cid, aborted, "I/O command timed out");
            }
            reset = policy == TimeoutPolicy::AbortThenReset && declined;
        }
        if reset {
            if let Err(e) = self.shared.reset_unless_past(Some(self.epoch)) {
                tracing::error!(qid = self.qid, "controller reset failed: {e}");
            }
        }
        n
    }

    /// After commands expired: is the controller running as we left it?
    /// Not if it reports fatal status (CSTS.CFS), or is not ready although
    /// we enabled it (reset under us, e.g. a function reset from outside).
    /// An all-ones read is re-read: a device that is gone stays all ones,
    /// and a reset would not help it (it counts as running here).
    #[cold]
    fn controller_running(&self) -> bool {
        let hw = &self.shared.hw;
        let mut csts = hw.read_reg::<Csts>();
        for _ in 0..3 {
            if !csts.is_all_ones() {
                break;
            }
            hw.delay_us(1000);
            csts = hw.read_reg::<Csts>();
        }
        if csts.is_all_ones() {
            tracing::error!(qid = self.qid, "device gone (registers read all ones)");
            return true;
        }
        let running = !csts.fatal() && csts.ready();
        if !running {
            tracing::warn!(qid = self.qid, ?csts, "controller not running as left");
        }
        running
    }

    /// The controller was reset: every command in flight goes back to its
    /// owner (the reset stopped the controller before the epoch moved, so
    /// nothing touches their memory any more), the rings start over, and
    /// the queues are created again with the same id. If that fails (the
    /// controller is dead or busy resetting again), the next poll tries
    /// again; submissions meanwhile come back at the next poll too.
    #[cold]
    #[inline(never)]
    fn recover(&mut self, f: &mut impl FnMut(Completion<H::Dma>)) -> usize {
        if self.shared.is_removed() {
            // Nothing to come back to: every command (also any submitted
            // since) is handed back at each poll; the epoch stays stale.
            return self.cmds.fail_all(CommandError::DeviceRemoved, f);
        }
        let n = self.cmds.fail_all(CommandError::ControllerReset, f);
        self.sq.reset();
        self.cq.reset();
        self.cq_unacked = 0;
        match self
            .shared
            .create_io_queues(self.qid, &mut self.cq, &mut self.sq)
        {
            Ok(epoch) => {
                tracing::info!(qid = self.qid, epoch, returned = n, "queue pair recovered");
                self.epoch = epoch;
            }
            Err(e) => {
                tracing::warn!(qid = self.qid, "recreating the queues failed: {}", e.error);
            }
        }
        n
    }
}

/// Polls between two deadline checks (each reads the clock once).
const CHECK_EVERY: u32 = 128;
/// Generations whose start is kept (a ring).
const GENERATIONS: usize = 8;

fn gen_slot(g: u32) -> usize {
    g as usize % GENERATIONS
}

/// A queue pair's deadline state (see `IoQueuePair::check_deadlines`).
struct Deadlines {
    timeout: Option<Duration>,
    /// The current generation: stamped on each command at submission.
    gen: u32,
    /// When generation `g` began, at `gen_slot(g)`.
    began: [Instant; GENERATIONS],
    /// Polls until the next check.
    countdown: u32,
}

impl Deadlines {
    fn new(timeout: Duration) -> Self {
        Deadlines {
            timeout: Some(timeout).filter(|t| !t.is_zero()),
            gen: 0,
            began: [Instant::now(); GENERATIONS],
            countdown: CHECK_EVERY,
        }
    }
}

impl<H: Hardware> Drop for IoQueuePair<H> {
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        // Deleting the SQ first makes the controller complete or abort every
        // command of it, so afterwards nothing is in flight.
        if self.shared.delete_io_queues(self.qid) {
            // SAFETY: each field is dropped exactly once, here, and never
            // used again (we are in Drop). The controller no longer accesses
            // this memory: its queues were deleted, or the controller was
            // disabled (CSTS.RDY = 0).
            unsafe {
                ManuallyDrop::drop(&mut self.cmds);
                ManuallyDrop::drop(&mut self.lists);
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
