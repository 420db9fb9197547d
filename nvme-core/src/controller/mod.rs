//! The controller: its public handle, the state it shares with its queue
//! pairs, admin commands, creating and deleting I/O queues, and orderly
//! teardown. Bring-up is in `bringup`, the admin queue in `admin`,
//! namespaces in `namespace`.

mod admin;
mod bringup;
mod events;
mod namespace;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::buffer::DmaBuf;
use crate::cmb::{self, Cmb, CmbLayout};
use crate::cmd::{cns, feature, log_page, CompletionEntry, SubmissionEntry};
use crate::error::Error;
use crate::hw::{Hardware, Iova, MemoryType};
use crate::identify::{
    ErrorLogEntry, IdentifyController, IdentifyNamespace, SmartLog, ERROR_LOG_ENTRY_SIZE,
    IDENTIFY_SIZE, SMART_LOG_SIZE,
};
use crate::queue_pair::IoQueuePair;
use crate::regs::{Cap, Cc, Csts, ShutdownNotification, ShutdownStatus, Version};
use crate::ring::{CqRing, ShadowPages, SqRing};
use crate::units::ByteCount;

use admin::AdminQueue;
use bringup::{disable, BringUp};
pub use events::{AsyncEvent, AsyncEventKind};
pub use namespace::Namespace;

/// The memory page size the driver programs (CC.MPS = 0).
pub const PAGE_SIZE: usize = 4096;

/// The largest transfer one command may carry with the driver's one-page
/// PRP lists: PRP1 plus 512 list entries of 4 KiB.
const PRP_LIST_LIMIT: usize = 512 * PAGE_SIZE;

/// Tunables for [`Controller::init`].
#[derive(Clone, Debug)]
pub struct ControllerOptions {
    /// Admin queue entries (clamped to 2..=4096 and CAP.MQES + 1).
    pub admin_queue_entries: u16,
    /// I/O queue pairs to ask the controller for (Set Features, Number of Queues).
    pub io_queue_pairs: u16,
    /// How long an admin command may take.
    pub admin_timeout: Duration,
    /// The deadline of every I/O command, synchronous or not (per queue
    /// pair: [`IoQueuePair::set_io_timeout`]). Checked while polling: a
    /// command still outstanding between 1 and 1.25 times this after its
    /// submission (given polls at least every quarter of it) is reported
    /// with [`CommandError::TimedOut`](crate::CommandError::TimedOut), then
    /// handled per [`ControllerOptions::timeout_policy`].
    pub io_timeout: Duration,
    /// What to do with an I/O command past its deadline, after reporting it.
    pub timeout_policy: TimeoutPolicy,
    /// Transparent retries of a command the controller failed with a status
    /// that allows one (DNR clear), as the kernel's `nvme_max_retries`:
    /// done by the blocking helpers and the async adapter, which hold the
    /// request (per pair: [`IoQueuePair::set_max_retries`]); 0 hands every
    /// failure to the caller. `poll` users see each failure and decide
    /// ([`NvmeStatus::dnr`](crate::NvmeStatus)).
    pub max_retries: u8,
    /// How long a normal shutdown may take before we disable anyway.
    pub shutdown_timeout: Duration,
    /// Use shadow doorbells (Doorbell Buffer Config) when the controller
    /// supports them (OACS.DBCS): doorbell values go to host memory and the
    /// MMIO doorbell is written only when the controller's EventIdx asks.
    pub shadow_doorbells: bool,
    /// Use SGLs for vectored I/O when the controller supports them (SGLS);
    /// off: PRP lists only (vectored buffers must then meet on page boundaries).
    pub use_sgls: bool,
    /// Put I/O submission queues in the Controller Memory Buffer when the
    /// controller has one that may hold them (CMBSZ.SQS). Off: host memory.
    pub cmb_queues: bool,
}

impl Default for ControllerOptions {
    fn default() -> Self {
        ControllerOptions {
            admin_queue_entries: 32,
            io_queue_pairs: 16,
            admin_timeout: Duration::from_secs(10),
            io_timeout: Duration::from_secs(30),
            timeout_policy: TimeoutPolicy::Abort,
            max_retries: 5,
            shutdown_timeout: Duration::from_secs(10),
            cmb_queues: true,
            shadow_doorbells: true,
            use_sgls: true,
        }
    }
}

/// What the driver does with an I/O command past its deadline, after
/// reporting it to the owner (the SPDK timeout callback's choices).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TimeoutPolicy {
    /// Only report it; the command completes when the device completes it.
    Report,
    /// Also ask the controller to abort it (Abort, admin opcode 08h). An
    /// aborted command completes with "Command Abort Requested" and hands
    /// its buffer back; a controller may decline, and the command then
    /// completes when the device completes it.
    Abort,
    /// Abort it, and reset the controller if the abort is declined or
    /// fails (the kernel's escalation): every command in flight then comes
    /// back with `CommandError::ControllerReset` and its buffer.
    AbortThenReset,
}

/// What [`Controller::cmb`] reports.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct CmbStatus {
    /// Location, size, scheme and capabilities.
    pub layout: CmbLayout,
    /// I/O submission queues are placed in the CMB.
    pub sq_in_cmb: bool,
    /// The memory type of the host mapping, when mapped.
    pub memory_type: Option<MemoryType>,
}

/// The pages of Doorbell Buffer Config and the doorbell stride that
/// places each queue's slots in them.
struct DbBuf<H: Hardware> {
    pages: Arc<ShadowPages<H::Dma>>,
    stride: usize,
}

/// Asynchronous Event Requests to keep outstanding: AERL + 1, at most 4
/// (they hold admin queue slots).
fn aer_count(identify: &IdentifyController) -> usize {
    (usize::from(identify.aerl) + 1).min(4)
}

/// Creating I/O queues failed: why, and whether the memory given to the
/// controller for them may be freed.
pub(crate) struct QueueSetupError {
    pub(crate) error: Error,
    pub(crate) memory_released: bool,
}

/// What the admin mutex guards: the admin queue, and the state a controller
/// reset rebuilds together with it.
pub(crate) struct AdminState<H: Hardware> {
    /// `None` only after teardown leaked it (controller did not stop).
    queue: Option<AdminQueue<H>>,
    /// Shadow doorbell and EventIdx pages, when enabled.
    dbbuf: Option<DbBuf<H>>,
    /// I/O queue pairs the controller granted (Number of Queues).
    granted: u16,
}

/// State shared by the controller handle and its I/O queue pairs.
pub(crate) struct Shared<H: Hardware> {
    pub(crate) hw: H,
    pub(crate) cap: Cap,
    version: Version,
    /// The admin queue and what a reset rebuilds with it.
    admin: Mutex<AdminState<H>>,
    /// Bumped (Release) when a reset completed: queue pairs compare it with
    /// the value they last saw at every poll (one relaxed load) and recover.
    pub(crate) epoch: AtomicU64,
    /// The platform reported the device removed.
    removed: AtomicBool,
    /// Error Information log entries read since the owner last took them,
    /// and the highest error count seen.
    recent_errors: Mutex<(Vec<ErrorLogEntry>, u64)>,
    identify: IdentifyController,
    namespaces: Vec<Namespace>,
    qid_in_use: Mutex<Vec<bool>>,
    pub(crate) max_transfer: usize,
    /// The CMB as discovered (reported even when not used for queues).
    cmb_layout: Option<CmbLayout>,
    /// The mapped CMB, when submission queues go there.
    pub(crate) cmb: Option<Arc<Cmb<H>>>,
    pub(crate) domain: u64,
    dead: AtomicBool,
    torn_down: bool,
    pub(crate) opts: ControllerOptions,
}

impl<H: Hardware> Shared<H> {
    fn admin(&self) -> MutexGuard<'_, AdminState<H>> {
        self.admin.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Run `f` on the admin queue, which must still be usable.
    fn with_admin<T>(
        &self,
        f: impl FnOnce(&mut AdminQueue<H>) -> Result<T, Error>,
    ) -> Result<T, Error> {
        if self.is_removed() {
            return Err(Error::DeviceRemoved);
        }
        if self.is_dead() {
            return Err(Error::Dead);
        }
        let mut guard = self.admin();
        // Again under the lock: another thread's command may have found the
        // controller dead while this one waited.
        if self.is_dead() {
            return Err(Error::Dead);
        }
        let q = guard.queue.as_mut().ok_or(Error::Dead)?;
        f(q)
    }

    /// The platform says the device is going away: stop it if it still
    /// answers (so it no longer touches memory), mark everything failed,
    /// and move the epoch so every queue pair hands its commands back at
    /// its next poll (`CommandError::DeviceRemoved`).
    pub(crate) fn device_removed(&self) {
        tracing::error!("the device is being removed");
        self.removed.store(true, Ordering::Release);
        self.mark_dead();
        // Registers read all ones once the platform let go: that counts as
        // stopped (a device that is gone does no DMA).
        let _ = disable(&self.hw, self.cap);
        self.epoch.fetch_add(1, Ordering::Release);
    }

    /// Read the Error Information log (a failure's status had the More
    /// bit): keep and log the entries not seen before.
    pub(crate) fn read_error_log(&self) {
        let entries = (usize::from(self.identify.elpe) + 1).min(PAGE_SIZE / ERROR_LOG_ENTRY_SIZE);
        let page = match self.admin_data::<PAGE_SIZE>(
            |scratch| {
                SubmissionEntry::get_log_page(
                    log_page::ERROR_INFORMATION,
                    0xffff_ffff,
                    (PAGE_SIZE / 4) as u32,
                    0,
                    scratch,
                )
            },
            "Get Log Page (Error Information)",
        ) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!("reading the error log: {e}");
                return;
            }
        };
        let mut recent = self.recent_errors.lock().unwrap_or_else(|p| p.into_inner());
        let seen = recent.1;
        let mut new: Vec<ErrorLogEntry> = page
            .chunks_exact(ERROR_LOG_ENTRY_SIZE)
            .take(entries)
            .map(ErrorLogEntry::parse)
            .filter(|e| e.error_count > seen)
            .collect();
        new.sort_by_key(|e| e.error_count);
        for e in &new {
            tracing::warn!(?e, "controller error log");
        }
        recent.1 = new.last().map_or(seen, |e| e.error_count);
        recent.0.extend(new);
        let excess = recent.0.len().saturating_sub(64);
        recent.0.drain(..excess);
    }

    /// The device was removed.
    pub(crate) fn is_removed(&self) -> bool {
        self.removed.load(Ordering::Acquire)
    }

    pub(crate) fn is_dead(&self) -> bool {
        self.dead.load(Ordering::Relaxed)
    }

    fn mark_dead(&self) {
        self.dead.store(true, Ordering::Relaxed);
    }

    /// Run one admin command; failures that leave the controller in an
    /// unknown state mark it dead.
    pub(crate) fn admin_cmd(
        &self,
        cmd: SubmissionEntry,
        what: &'static str,
    ) -> Result<CompletionEntry, Error> {
        self.with_admin(|q| q.run(&self.hw, cmd, what, self.opts.admin_timeout, &self.dead))
    }

    /// Run an admin command that fills the scratch page (`cmd` gets its
    /// address); the first `N` bytes of it.
    fn admin_data<const N: usize>(
        &self,
        cmd: impl FnOnce(Iova) -> SubmissionEntry,
        what: &'static str,
    ) -> Result<Box<[u8; N]>, Error> {
        self.with_admin(|q| {
            let cmd = cmd(q.scratch_iova());
            q.run(&self.hw, cmd, what, self.opts.admin_timeout, &self.dead)?;
            Ok(q.scratch_bytes::<N>())
        })
    }

    /// SGLs may be used for NVM data pointers.
    pub(crate) fn sgls_usable(&self) -> bool {
        self.opts.use_sgls && self.identify.sgls.supported()
    }

    /// Optional NVM commands the controller supports.
    pub(crate) fn oncs(&self) -> crate::identify::Oncs {
        self.identify.oncs
    }

    /// Reserve the lowest free I/O queue id.
    fn reserve_qid(&self) -> Result<u16, Error> {
        let mut used = self.qid_in_use.lock().unwrap_or_else(|p| p.into_inner());
        let granted = self.admin().granted;
        let Some(qid) = (1..=usize::from(granted).min(used.len() - 1)).find(|&q| !used[q]) else {
            return Err(Error::NoQueuePairs { granted });
        };
        used[qid] = true;
        Ok(qid as u16)
    }

    fn release_qid(&self, qid: u16) {
        let mut used = self.qid_in_use.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(slot) = used.get_mut(usize::from(qid)) {
            *slot = false;
        }
    }

    /// Create I/O queues `qid` on the controller for `cq` and `sq` (new
    /// rings, or rings reset after a controller reset): first their shadow
    /// doorbell slots, cleared to the state of a queue never rung (the slots
    /// of a queue id used before still hold that queue's last values: the
    /// controller does not reset them on Create; Linux likewise clears the
    /// pages on setup), then Create I/O CQ, then Create I/O SQ, all under
    /// the admin lock, so no reset can come between. Returns the reset
    /// epoch the queues belong to.
    ///
    /// On failure, the error says whether the controller can be shown not
    /// to use the rings' memory: a create the controller refused with a
    /// status needs nothing undone (beyond deleting a CQ already created);
    /// anything else disables the controller, and if even that is not
    /// confirmed the memory must leak.
    pub(crate) fn create_io_queues(
        &self,
        qid: u16,
        cq: &mut CqRing<H>,
        sq: &mut SqRing<H>,
    ) -> Result<u64, QueueSetupError> {
        let fail = |error, memory_released| QueueSetupError {
            error,
            memory_released,
        };
        if self.is_dead() {
            return Err(fail(Error::Dead, true));
        }
        let mut state = self.admin();
        let shadows = state
            .dbbuf
            .as_ref()
            .and_then(|d| Some((d.slot(qid, true, false)?, d.slot(qid, false, false)?)));
        match shadows {
            Some((s, c)) => {
                s.clear();
                c.clear();
                sq.set_shadow(Some(s));
                cq.set_shadow(Some(c));
            }
            None => {
                sq.set_shadow(None);
                cq.set_shadow(None);
            }
        }
        let epoch = self.epoch.load(Ordering::Acquire);
        let Some(admin) = state.queue.as_mut() else {
            return Err(fail(Error::Dead, true));
        };
        let t = self.opts.admin_timeout;
        let create_cq = SubmissionEntry::create_io_cq(qid, cq.entries(), cq.iova());
        if let Err(error) = admin.run(
            &self.hw,
            create_cq,
            "Create I/O Completion Queue",
            t,
            &self.dead,
        ) {
            drop(state);
            let released = matches!(error, Error::Command { .. }) || self.emergency_disable();
            return Err(fail(error, released));
        }
        let create_sq = SubmissionEntry::create_io_sq(qid, sq.entries(), sq.iova(), qid);
        if let Err(error) = admin.run(
            &self.hw,
            create_sq,
            "Create I/O Submission Queue",
            t,
            &self.dead,
        ) {
            let cq_gone = matches!(error, Error::Command { .. })
                && admin
                    .run(
                        &self.hw,
                        SubmissionEntry::delete_io_cq(qid),
                        "Delete I/O CQ",
                        t,
                        &self.dead,
                    )
                    .is_ok();
            drop(state);
            let released = cq_gone || self.emergency_disable();
            return Err(fail(error, released));
        }
        Ok(epoch)
    }

    /// Ask the controller to abort command `cid` of submission queue
    /// `sqid`. True if the controller says it aborted it (the command then
    /// completes with "Command Abort Requested"); false if it declined or
    /// the Abort itself failed (logged).
    pub(crate) fn abort(&self, sqid: u16, cid: u16) -> bool {
        match self.admin_cmd(SubmissionEntry::abort(sqid, cid), "Abort") {
            // Completion DW0 bit 0: 1 = the command was not aborted.
            Ok(cqe) => cqe.result & 1 == 0,
            Err(e) => {
                tracing::warn!(sqid, cid, "Abort failed: {e}");
                false
            }
        }
    }

    /// Delete I/O queues `qid` (SQ first: the controller completes or
    /// aborts every command of it before answering, so afterwards nothing
    /// is in flight) and free the id; if deletion fails, disable the
    /// controller. True when the controller can be shown not to use the
    /// queues' memory any more.
    pub(crate) fn delete_io_queues(&self, qid: u16) -> bool {
        if self.is_removed() {
            // The device is gone (the platform made every access harmless
            // and gave it back to the kernel, which resets it): nothing to
            // delete, and it can no longer reach this memory.
            self.release_qid(qid);
            return true;
        }
        let deleted = self
            .admin_cmd(SubmissionEntry::delete_io_sq(qid), "Delete I/O SQ")
            .and_then(|_| self.admin_cmd(SubmissionEntry::delete_io_cq(qid), "Delete I/O CQ"));
        match deleted {
            Ok(_) => {
                self.release_qid(qid);
                true
            }
            Err(e) => {
                tracing::warn!(
                    qid,
                    "deleting I/O queues failed: {e}; disabling the controller"
                );
                self.emergency_disable()
            }
        }
    }

    /// Reset the controller and bring it up again, keeping this handle and
    /// every queue pair usable:
    /// 1. take the admin lock (no admin command or queue creation runs);
    /// 2. forbid the device to start DMA (Bus Master Enable off, where the
    ///    platform can: see [`Hardware::set_bus_master`]), so a command
    ///    the other threads queued just before cannot be started by the
    ///    controller while it stops;
    /// 3. stop the controller: CC.EN = 0 and CSTS.RDY = 0 within CAP.TO,
    ///    else a function reset and the same check; if it cannot be shown
    ///    stopped, it is dead (nothing it used may be freed, and it stays
    ///    unable to master the bus) and this fails;
    /// 4. allow DMA again and bring it up with the steps of `init` (admin
    ///    queue, Number of Queues, shadow doorbells, the CMB's base address
    ///    again);
    /// 5. bump the epoch. Each queue pair notices at its next poll, hands
    ///    every command it had in flight back to its owner with
    ///    [`CommandError::ControllerReset`](crate::CommandError) and its
    ///    buffer (the controller was stopped: it can no longer touch them),
    ///    and creates its queues again with the same id.
    pub(crate) fn reset(&self) -> Result<(), Error> {
        self.reset_unless_past(None)
    }

    /// [`Shared::reset`], unless the controller was reset since epoch
    /// `seen` (a queue pair that found the controller broken, when another
    /// pair's reset already fixed it: it recovers at its next poll).
    pub(crate) fn reset_unless_past(&self, seen: Option<u64>) -> Result<(), Error> {
        let mut state = self.admin();
        if self.is_removed() {
            return Err(Error::DeviceRemoved);
        }
        if seen.is_some_and(|e| e != self.epoch.load(Ordering::Acquire)) {
            return Ok(());
        }
        tracing::warn!("resetting the controller");
        let dma_forbidden = self.forbid_dma();
        let stopped = disable(&self.hw, self.cap).is_ok() || {
            match self.hw.function_reset() {
                Ok(()) => disable(&self.hw, self.cap).is_ok(),
                Err(e) => {
                    tracing::error!("controller did not stop and cannot be reset: {e}");
                    false
                }
            }
        };
        if !stopped {
            self.mark_dead();
            return Err(Error::Dead);
        }
        // Stopped: its old admin queue and shadow pages are no longer used.
        state.queue = None;
        state.dbbuf = None;
        if dma_forbidden {
            if let Err(e) = self.hw.set_bus_master(true) {
                tracing::error!("cannot allow the device's DMA again after the reset: {e}");
                self.mark_dead();
                return Err(Error::Hardware(e));
            }
        }
        let mut up = BringUp::resume(&self.hw, &self.opts, self.cap, self.version);
        let result = up
            .reprogram_cmb(self.cmb.as_ref().and(self.cmb_layout))
            .and_then(|()| up.enable_admin_queue())
            .and_then(|()| up.negotiate_queues())
            .and_then(|granted| {
                up.enable_shadow_doorbells(&self.identify)?;
                up.configure_async_events(&self.identify)?;
                Ok(granted)
            });
        match result.and_then(|granted| up.into_admin_state(granted)) {
            Ok(mut fresh) => {
                if let Some(q) = fresh.queue.as_mut() {
                    q.arm_events(aer_count(&self.identify));
                }
                *state = fresh;
                self.dead.store(false, Ordering::Relaxed);
                self.epoch.fetch_add(1, Ordering::Release);
                tracing::info!(granted = state.granted, "controller reset and ready");
                Ok(())
            }
            Err(e) => {
                // The bring-up's guard disabled the controller (or leaked
                // what it could not show unused).
                self.mark_dead();
                Err(e)
            }
        }
    }

    /// Stop all controller activity (CC.EN = 0) after a failure, so memory
    /// the controller might still access can be freed. Returns true only if
    /// the controller confirmed (CSTS.RDY = 0).
    pub(crate) fn emergency_disable(&self) -> bool {
        self.mark_dead();
        // A dead controller has no business touching memory: its bus
        // mastering stays off until a reset brings it back.
        self.forbid_dma();
        disable(&self.hw, self.cap).is_ok()
    }

    /// Bus Master Enable off (see [`Hardware::set_bus_master`]); false if
    /// the platform cannot (logged: the caller goes on without it).
    fn forbid_dma(&self) -> bool {
        match self.hw.set_bus_master(false) {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!("DMA stays allowed while the controller stops: {e}");
                false
            }
        }
    }

    /// Normal shutdown, then disable; frees nothing itself.
    fn teardown(&mut self) -> Result<(), Error> {
        self.torn_down = true;
        if self.is_removed() {
            return Err(Error::DeviceRemoved);
        }
        let hw = &self.hw;
        let mut first_err = None;
        if !self.is_dead() {
            let mut cc = hw.read_reg::<Cc>();
            cc.shn = ShutdownNotification::Normal;
            hw.write_reg(cc);
            let deadline = Instant::now() + self.opts.shutdown_timeout;
            loop {
                let csts = hw.read_reg::<Csts>();
                if csts.is_all_ones() {
                    first_err = Some(Error::DeviceGone);
                    break;
                }
                if csts.shutdown_status() == ShutdownStatus::Complete {
                    break;
                }
                if Instant::now() > deadline {
                    first_err = Some(Error::Timeout {
                        command: "normal shutdown (CC.SHN)",
                        timeout: self.opts.shutdown_timeout,
                    });
                    break;
                }
                hw.delay_us(1000);
            }
        }
        let disabled = disable(hw, self.cap);
        if let Some(layout) = &self.cmb_layout {
            cmb::disable(hw, layout);
        }
        match (first_err, disabled) {
            (Some(e), _) => Err(e),
            (None, r) => r,
        }
    }
}

impl<H: Hardware> Drop for Shared<H> {
    fn drop(&mut self) {
        if !self.torn_down {
            if let Err(e) = self.teardown() {
                tracing::warn!("controller teardown: {e}");
            }
        }
        // Free the admin queue only if the controller is provably stopped
        // (or removed: see `delete_io_queues`).
        let csts = self.hw.read_reg::<Csts>();
        let cc = self.hw.read_reg::<Cc>();
        if !self.is_removed() && (csts.is_all_ones() || cc.enable || csts.ready()) {
            tracing::error!(
                ?csts,
                "controller did not stop; leaking its admin queue and doorbell buffer \
                 memory rather than freeing memory it may still write"
            );
            let state = self.admin.get_mut().unwrap_or_else(|p| p.into_inner());
            std::mem::forget(state.queue.take());
            // The controller writes EventIdx values into these pages.
            std::mem::forget(state.dbbuf.take());
        }
    }
}

/// An NVMe controller, brought up and ready for admin and I/O commands.
///
/// Cloning is cheap (a reference count). I/O queue pairs keep the controller
/// alive; the controller is shut down (CC.SHN, then CC.EN = 0) when the
/// last handle and the last queue pair are gone, and only then is its DMA
/// memory released.
pub struct Controller<H: Hardware> {
    shared: Arc<Shared<H>>,
}

impl<H: Hardware> Clone for Controller<H> {
    fn clone(&self) -> Self {
        Controller {
            shared: self.shared.clone(),
        }
    }
}

impl<H: Hardware> Controller<H> {
    /// Reset and bring up the controller behind `hw`: disable, program the
    /// admin queue, configure and enable, identify, negotiate I/O queues,
    /// turn on shadow doorbells and discover namespaces.
    pub fn init(hw: H, opts: ControllerOptions) -> Result<Self, Error> {
        let mut up = BringUp::check_capabilities(&hw, &opts)?;
        up.reset_and_map_cmb()?;
        up.enable_admin_queue()?;
        let identify = up.identify()?;
        let granted = up.negotiate_queues()?;
        up.enable_shadow_doorbells(&identify)?;
        up.configure_async_events(&identify)?;
        let (namespaces, domain) = up.discover_namespaces(&identify)?;
        let shared = Arc::new(
            up.finish_parts(identify, granted, namespaces, domain)
                .with_hardware(hw),
        );
        shared.with_admin(|q| {
            q.arm_events(aer_count(&shared.identify));
            Ok(())
        })?;
        let weak = Arc::downgrade(&shared);
        shared.hw.watch_removal(Box::new(move || {
            if let Some(s) = weak.upgrade() {
                s.device_removed();
            }
        }));
        Ok(Controller { shared })
    }

    /// What the platform layer knows about the device (e.g. its PCI
    /// address, mappings and DMA statistics), without register access.
    pub fn platform_info(&self) -> H::Info {
        self.shared.hw.info()
    }
    /// Allocate a zeroed DMA region of at least `len` bytes in this
    /// controller's DMA space, for memory the caller manages itself (the
    /// `unsafe` raw submissions, [`IoQueuePair::submit_read_raw`]).
    pub fn alloc_dma(&self, len: usize) -> Result<H::Dma, Error> {
        Ok(self.shared.hw.alloc_dma(len)?)
    }
    /// CAP.
    pub fn cap(&self) -> Cap {
        self.shared.cap
    }
    /// VS.
    pub fn version(&self) -> Version {
        self.shared.version
    }
    /// Identify Controller data read at bring-up.
    pub fn identify(&self) -> &IdentifyController {
        &self.shared.identify
    }
    /// Active namespaces found at bring-up.
    pub fn namespaces(&self) -> &[Namespace] {
        &self.shared.namespaces
    }
    /// One active namespace.
    pub fn namespace(&self, nsid: u32) -> Result<&Namespace, Error> {
        self.shared
            .namespaces
            .iter()
            .find(|n| n.nsid() == nsid)
            .ok_or_else(|| Error::NoSuchNamespace {
                nsid,
                active: self.shared.namespaces.iter().map(|n| n.nsid()).collect(),
            })
    }
    /// I/O queue pairs the controller granted.
    pub fn io_queue_pairs_granted(&self) -> u16 {
        self.shared.admin().granted
    }
    /// Largest transfer of one I/O command, in bytes.
    pub fn max_transfer_bytes(&self) -> usize {
        self.shared.max_transfer
    }
    /// Largest I/O queue the controller supports (CAP.MQES + 1, at most 65536).
    pub fn max_queue_entries(&self) -> u32 {
        self.shared.cap.max_queue_entries()
    }
    /// The controller memory buffer, if the controller has one: where it
    /// is, what it may hold, whether I/O submission queues use it, and the
    /// memory type its mapping got.
    pub fn cmb(&self) -> Option<CmbStatus> {
        self.shared.cmb_layout.map(|layout| CmbStatus {
            layout,
            sq_in_cmb: self.shared.cmb.is_some(),
            memory_type: self.shared.cmb.as_ref().map(|c| c.memory_type()),
        })
    }

    /// True if shadow doorbells (Doorbell Buffer Config) are in use.
    pub fn shadow_doorbells(&self) -> bool {
        self.shared.admin().dbbuf.is_some()
    }

    /// Options in force.
    pub fn options(&self) -> &ControllerOptions {
        &self.shared.opts
    }
    /// Current CSTS.
    pub fn status(&self) -> Csts {
        self.shared.hw.read_reg::<Csts>()
    }

    /// Allocate a zeroed DMA buffer of at least `len` bytes (rounded up to
    /// 4096), usable with this controller's queue pairs. Its window starts
    /// covering exactly `len` bytes.
    pub fn alloc_buffer(&self, len: ByteCount) -> Result<DmaBuf<H::Dma>, Error> {
        let len = len.0;
        if len == 0 || len > crate::buffer::MAX_BUFFER {
            return Err(Error::InvalidArgument(format!(
                "buffer length {len}: a buffer holds 1..={} bytes",
                crate::buffer::MAX_BUFFER
            )));
        }
        let region = self.shared.hw.alloc_dma(len)?;
        let mut buf = DmaBuf::new(region, self.shared.domain);
        buf.set_window(0, len)?;
        Ok(buf)
    }

    /// Allocate `count` buffers of `size` bytes each (rounded up to a
    /// multiple of 4096) from one DMA region: one IOMMU mapping, on 2 MiB
    /// hugepages when the platform has them and the total is large enough.
    /// Each buffer's window starts covering `size` bytes.
    pub fn alloc_buffers(
        &self,
        count: usize,
        size: ByteCount,
    ) -> Result<Vec<DmaBuf<H::Dma>>, Error> {
        let size = size.0;
        if count == 0 || size == 0 {
            return Err(Error::InvalidArgument(
                "zero buffers or zero-sized buffers".into(),
            ));
        }
        let stride = size.div_ceil(PAGE_SIZE) * PAGE_SIZE;
        if stride > crate::buffer::MAX_BUFFER {
            return Err(Error::InvalidArgument(format!(
                "buffer size {size}: a buffer holds at most {} bytes",
                crate::buffer::MAX_BUFFER
            )));
        }
        let total = stride
            .checked_mul(count)
            .ok_or_else(|| Error::InvalidArgument(format!("{count} x {size} bytes overflows")))?;
        let region = Arc::new(self.shared.hw.alloc_dma(total)?);
        (0..count)
            .map(|i| {
                let mut b = DmaBuf::slice(region.clone(), i * stride, stride, self.shared.domain);
                b.set_window(0, size)?;
                Ok(b)
            })
            .collect()
    }

    /// Create an I/O queue pair with `entries` slots (2..=CAP.MQES+1, at most
    /// 65535: ring indices are 16-bit). Each slot also owns a 4 KiB PRP/SGL
    /// list page, so a queue costs `entries` x 4 KiB of DMA memory besides
    /// its rings.
    /// It is owned by the caller and can be moved to another thread.
    pub fn create_io_queue_pair(&self, entries: u32) -> Result<IoQueuePair<H>, Error> {
        let max = self.max_queue_entries().min(65535);
        if entries < 2 || entries > max {
            return Err(Error::InvalidArgument(format!(
                "queue size {entries} outside 2..={max} (CAP.MQES + 1)"
            )));
        }
        if self.shared.is_removed() {
            return Err(Error::DeviceRemoved);
        }
        if self.shared.is_dead() {
            return Err(Error::Dead);
        }
        let qid = self.shared.reserve_qid()?;
        IoQueuePair::create(self.shared.clone(), qid, entries).inspect_err(|_| {
            self.shared.release_qid(qid);
        })
    }

    /// Identify a namespace now (not the cached copy).
    pub fn identify_namespace(&self, nsid: u32) -> Result<IdentifyNamespace, Error> {
        let data = self.shared.admin_data::<IDENTIFY_SIZE>(
            |scratch| SubmissionEntry::identify(cns::NAMESPACE, nsid, scratch),
            "Identify Namespace",
        )?;
        Ok(IdentifyNamespace::parse(&data))
    }

    /// Reset the controller (see the steps in the crate docs'
    /// reliability section): it is stopped, brought up again, and every
    /// queue pair hands its in-flight commands back at its next poll with
    /// `CommandError::ControllerReset` and their buffers, then goes on
    /// working with the same queue id. Also the way back for a controller
    /// marked dead, if it can be stopped. Fails (and the controller stays
    /// dead) if it cannot be shown to have stopped.
    pub fn reset(&self) -> Result<(), Error> {
        self.shared.reset()
    }

    /// Error Information log entries the driver read since the last call
    /// (it reads the log when a failed command's status has the More bit,
    /// at that queue pair's next deadline check; at most the newest 64).
    pub fn recent_errors(&self) -> Vec<ErrorLogEntry> {
        let mut r = self
            .shared
            .recent_errors
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        std::mem::take(&mut r.0)
    }

    /// Resets so far (each queue pair recovers once per reset).
    pub fn resets(&self) -> u64 {
        self.shared.epoch.load(Ordering::Relaxed)
    }

    /// Asynchronous events the controller reported since the last call
    /// (SMART/health warnings, errors, notices), without waiting. The
    /// driver keeps up to AERL + 1 (at most 4) Asynchronous Event Requests
    /// outstanding and re-arms them; for each event it reads the log page
    /// the event names (as the spec requires before the controller reports
    /// the next event of that type) and, for SMART/health, hands that log
    /// over with the event. Call it now and then (it takes the admin lock).
    pub fn poll_events(&self) -> Result<Vec<AsyncEvent>, Error> {
        let s = &self.shared;
        let want = aer_count(&s.identify);
        s.with_admin(|q| {
            q.poll_events();
            let mut out = Vec::new();
            while let Some(mut ev) = q.events.pop_front() {
                // Read (and so acknowledge) the page the event names; the
                // command may bring more events into `q.events`.
                let lid = ev.log_page;
                let len = if lid == log_page::SMART_HEALTH {
                    SMART_LOG_SIZE
                } else {
                    PAGE_SIZE
                };
                let cmd = SubmissionEntry::get_log_page(
                    lid,
                    0xffff_ffff,
                    (len / 4) as u32,
                    0,
                    q.scratch_iova(),
                );
                match q.run(
                    &s.hw,
                    cmd,
                    "Get Log Page (event)",
                    s.opts.admin_timeout,
                    &s.dead,
                ) {
                    Ok(_) if lid == log_page::SMART_HEALTH => {
                        ev.smart = Some(SmartLog::parse(&q.scratch_bytes::<SMART_LOG_SIZE>()));
                    }
                    Ok(_) if lid == log_page::CHANGED_NAMESPACES => {
                        ev.changed_namespaces =
                            events::changed_namespace_list(&q.scratch_bytes::<PAGE_SIZE>()[..]);
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(lid, "reading the event's log page: {e}"),
                }
                out.push(ev);
            }
            q.arm_events(want);
            Ok(out)
        })
    }

    /// Identify the active namespaces again (after a namespace-changed
    /// event, or at any time): their current geometry, in this
    /// controller's DMA domain, for the caller to use from now on. The
    /// namespaces found at bring-up (`namespaces()`) stay as they were; I/O
    /// through a namespace that no longer exists fails with the
    /// controller's "Invalid Namespace or Format" status, and past a
    /// shrunk end with "LBA Out of Range".
    pub fn rescan_namespaces(&self) -> Result<Vec<Namespace>, Error> {
        let s = &self.shared;
        let page = s.admin_data::<IDENTIFY_SIZE>(
            |scratch| SubmissionEntry::identify(cns::ACTIVE_NAMESPACES, 0, scratch),
            "Identify (Active Namespace List)",
        )?;
        let nsids: Vec<u32> = page
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .take_while(|&n| n != 0)
            .collect();
        let mut out = Vec::new();
        for nsid in nsids {
            let id = self.identify_namespace(nsid)?;
            out.extend(Namespace::from_identify(nsid, id, s.domain));
        }
        Ok(out)
    }

    /// Get Features: the current value (completion DW0).
    pub fn get_features(&self, fid: u8, cdw11: u32) -> Result<u32, Error> {
        Ok(self
            .shared
            .admin_cmd(SubmissionEntry::get_features(fid, cdw11), "Get Features")?
            .result)
    }

    /// Set Features: returns completion DW0.
    pub fn set_features(&self, fid: u8, cdw11: u32) -> Result<u32, Error> {
        Ok(self
            .shared
            .admin_cmd(SubmissionEntry::set_features(fid, cdw11), "Set Features")?
            .result)
    }

    /// Number of Queues currently allocated: (submission, completion), counts.
    pub fn number_of_queues(&self) -> Result<(u16, u16), Error> {
        let v = self.get_features(feature::NUMBER_OF_QUEUES, 0)?;
        Ok(((v & 0xffff) as u16 + 1, (v >> 16) as u16 + 1))
    }

    fn get_log<const N: usize>(&self, lid: u8, what: &'static str) -> Result<Box<[u8; N]>, Error> {
        self.shared.admin_data::<N>(
            |scratch| SubmissionEntry::get_log_page(lid, 0xffff_ffff, (N / 4) as u32, 0, scratch),
            what,
        )
    }

    /// SMART / Health Information log (controller-wide).
    pub fn smart_log(&self) -> Result<SmartLog, Error> {
        let page =
            self.get_log::<SMART_LOG_SIZE>(log_page::SMART_HEALTH, "Get Log Page (SMART)")?;
        Ok(SmartLog::parse(&page))
    }

    /// Error Information log: up to 64 most recent entries, unused ones dropped.
    pub fn error_log(&self) -> Result<Vec<ErrorLogEntry>, Error> {
        let entries = (usize::from(self.identify().elpe) + 1).min(PAGE_SIZE / ERROR_LOG_ENTRY_SIZE);
        let page = self.get_log::<PAGE_SIZE>(
            log_page::ERROR_INFORMATION,
            "Get Log Page (Error Information)",
        )?;
        Ok(page
            .chunks_exact(ERROR_LOG_ENTRY_SIZE)
            .take(entries)
            .map(ErrorLogEntry::parse)
            .filter(|e| e.error_count != 0)
            .collect())
    }

    /// Shut the controller down now and report how it went. Fails (and
    /// leaves shutdown to the last drop) while I/O queue pairs or clones of
    /// this handle are alive.
    pub fn shutdown(self) -> Result<(), Error> {
        match Arc::try_unwrap(self.shared) {
            Ok(mut shared) => shared.teardown(),
            Err(shared) => Err(Error::InUse {
                others: Arc::strong_count(&shared) - 1,
            }),
        }
    }
}

impl<H: Hardware> std::fmt::Debug for Controller<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Controller")
            .field("model", &self.shared.identify.model)
            .field("serial", &self.shared.identify.serial)
            .field("version", &self.shared.version)
            .finish_non_exhaustive()
    }
}
