//! Controller bring-up, admin commands and orderly teardown.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::buffer::DmaBuf;
use crate::cmb::{self, Cmb, CmbLayout};
use crate::cmd::{cns, feature, log_page, CompletionEntry, SubmissionEntry};
use crate::error::Error;
use crate::hw::{DmaRegion, Hardware, MemoryType};
use crate::identify::{
    ErrorLogEntry, IdentifyController, IdentifyNamespace, SmartLog, ERROR_LOG_ENTRY_SIZE,
    IDENTIFY_SIZE, SMART_LOG_SIZE,
};
use crate::io::IoQueuePair;
use crate::queue::{CqRing, Shadow, SqRing};
use crate::regs::{offset, Aqa, Cap, Cc, Csts, ShutdownNotification, ShutdownStatus, Version};
use crate::units::ByteCount;

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
    /// How long a synchronous I/O may take.
    pub io_timeout: Duration,
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
            shutdown_timeout: Duration::from_secs(10),
            cmb_queues: true,
            shadow_doorbells: true,
            use_sgls: true,
        }
    }
}

/// An active namespace and the geometry I/O needs.
///
/// Only a [`Controller`] makes these, and their fields are private: the
/// block size and count decide how many bytes the device moves for a
/// command, so a forged or edited geometry could make it DMA past a
/// buffer. A namespace also remembers its controller, and a queue pair of
/// another controller refuses it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Namespace {
    nsid: u32,
    block_size: u64,
    block_shift: u32,
    blocks: u64,
    metadata_size: u16,
    identify: IdentifyNamespace,
    domain: u64,
    /// `domain` if the data path can use this namespace as it is (no
    /// metadata), else 0 (never a domain): one compare on the hot path.
    io_domain: u64,
}

impl Namespace {
    /// Namespace ID.
    #[inline]
    pub fn nsid(&self) -> u32 {
        self.nsid
    }
    /// Bytes per logical block (a power of two).
    #[inline]
    pub fn block_size(&self) -> u64 {
        self.block_size
    }
    /// log2 of the block size.
    #[inline]
    pub fn block_shift(&self) -> u32 {
        self.block_shift
    }
    /// Size in logical blocks (NSZE): valid LBAs are `0..blocks()`.
    #[inline]
    pub fn blocks(&self) -> u64 {
        self.blocks
    }
    /// Metadata bytes per block in the current format (the driver needs 0).
    #[inline]
    pub fn metadata_size(&self) -> u16 {
        self.metadata_size
    }
    /// The full Identify Namespace data.
    pub fn identify(&self) -> &IdentifyNamespace {
        &self.identify
    }
    /// Size in bytes.
    pub fn size_bytes(&self) -> u64 {
        self.blocks * self.block_size
    }
    pub(crate) fn domain(&self) -> u64 {
        self.domain
    }
    #[inline]
    pub(crate) fn io_domain(&self) -> u64 {
        self.io_domain
    }
    /// This namespace as if formatted with `ms` metadata bytes per block
    /// (the controller model has no metadata formats).
    #[cfg(test)]
    pub(crate) fn with_metadata_for_test(&self, ms: u16) -> Namespace {
        Namespace {
            metadata_size: ms,
            io_domain: if ms == 0 { self.domain } else { 0 },
            ..self.clone()
        }
    }
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

/// The admin queue pair plus a scratch page for identify and log data.
pub(crate) struct AdminQueue<H: Hardware> {
    sq: SqRing<H>,
    cq: CqRing<H>,
    scratch: H::Dma,
    next_cid: u16,
}

impl<H: Hardware> AdminQueue<H> {
    fn new(hw: &H, cap: Cap, entries: u16) -> Result<Self, Error> {
        Ok(AdminQueue {
            sq: SqRing::new(hw, entries, cap.sq_tail_doorbell(0))?,
            cq: CqRing::new(hw, entries, cap.cq_head_doorbell(0))?,
            scratch: hw.alloc_dma(PAGE_SIZE)?,
            next_cid: 0,
        })
    }

    /// Submit one command and wait for its completion.
    fn exec(
        &mut self,
        hw: &H,
        mut cmd: SubmissionEntry,
        what: &'static str,
        timeout: Duration,
    ) -> Result<CompletionEntry, Error> {
        let cid = self.next_cid;
        self.next_cid = self.next_cid.wrapping_add(1);
        cmd.set_cid(cid);
        if self.sq.is_full() {
            return Err(Error::QueueFull {
                outstanding: usize::from(self.sq.entries()) - 1,
            });
        }
        self.sq.push(&cmd);
        self.sq.ring();
        let start = Instant::now();
        let mut spins: u32 = 0;
        loop {
            if let Some(cqe) = self.cq.peek() {
                self.cq.advance();
                self.sq.set_head(cqe.sq_head);
                self.cq.ring();
                if cqe.cid != cid {
                    tracing::warn!(cid = cqe.cid, "stale admin completion ignored");
                    continue;
                }
                return match cqe.status() {
                    Ok(()) => Ok(cqe),
                    Err(status) => Err(Error::Command {
                        command: what,
                        status,
                    }),
                };
            }
            spins += 1;
            if spins % 256 == 0 {
                let csts = Csts(hw.read32(offset::CSTS));
                if csts.is_all_ones() {
                    return Err(Error::DeviceGone);
                }
                if csts.fatal() {
                    return Err(Error::ControllerFatal(csts));
                }
                if start.elapsed() > timeout {
                    return Err(Error::Timeout {
                        command: what,
                        timeout,
                    });
                }
                hw.delay_us(10);
            } else {
                std::hint::spin_loop();
            }
        }
    }

    /// Copy `len` bytes out of the scratch page (after a completed command).
    fn scratch_bytes<const N: usize>(&self) -> Box<[u8; N]> {
        const { assert!(N <= PAGE_SIZE) };
        let mut out = Box::new([0u8; N]);
        // SAFETY: the scratch region is at least PAGE_SIZE >= N bytes long and
        // the command that filled it has completed, so the device no longer
        // writes it (a timed-out command makes the controller dead and no
        // later command reuses the page). `out` is a distinct allocation.
        unsafe { std::ptr::copy_nonoverlapping(self.scratch.as_ptr(), out.as_mut_ptr(), N) };
        out
    }
}

static NEXT_DOMAIN: AtomicU64 = AtomicU64::new(1);

/// The two pages of Doorbell Buffer Config.
struct DbBuf<H: Hardware> {
    shadow: H::Dma,
    eventidx: H::Dma,
    stride: usize,
}

impl<H: Hardware> DbBuf<H> {
    /// The shadow slots of queue `qid` (SQ tail if `sq`, else CQ head), or
    /// `None` if the pages do not reach that far.
    fn slot(&self, qid: u16, sq: bool, always_mmio: bool) -> Option<Shadow> {
        let off = (2 * usize::from(qid) + usize::from(!sq)) * self.stride;
        if off + 4 > PAGE_SIZE {
            return None;
        }
        // SAFETY: `off + 4 <= PAGE_SIZE` and both regions are PAGE_SIZE
        // bytes, 4096-aligned, so the slots are in bounds and 4-aligned. The
        // pages live in `Shared`, which every queue holding a `Shadow`
        // keeps alive (admin queue: same struct; I/O queues: an Arc), and
        // are released only after the controller has stopped.
        unsafe {
            Some(Shadow::new(
                self.shadow.as_ptr().add(off).cast::<u32>(),
                self.eventidx.as_ptr().add(off).cast::<u32>(),
                always_mmio,
            ))
        }
    }
}

/// State shared by the controller handle and its I/O queue pairs.
pub(crate) struct Shared<H: Hardware> {
    pub(crate) hw: H,
    pub(crate) cap: Cap,
    version: Version,
    /// `None` only after teardown leaked it (controller did not stop).
    admin: Mutex<Option<AdminQueue<H>>>,
    identify: IdentifyController,
    namespaces: Vec<Namespace>,
    io_queues_granted: u16,
    qid_in_use: Mutex<Vec<bool>>,
    pub(crate) max_transfer: usize,
    /// The CMB as discovered (reported even when not used for queues).
    cmb_layout: Option<CmbLayout>,
    /// The mapped CMB, when submission queues go there.
    pub(crate) cmb: Option<Arc<Cmb<H>>>,
    /// Shadow doorbell and EventIdx pages, when enabled.
    dbbuf: Option<DbBuf<H>>,
    pub(crate) domain: u64,
    dead: AtomicBool,
    torn_down: bool,
    pub(crate) opts: ControllerOptions,
}

impl<H: Hardware> Shared<H> {
    fn admin(&self) -> MutexGuard<'_, Option<AdminQueue<H>>> {
        self.admin.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Run `f` on the admin queue, which must still be usable.
    fn with_admin<T>(
        &self,
        f: impl FnOnce(&mut AdminQueue<H>) -> Result<T, Error>,
    ) -> Result<T, Error> {
        if self.is_dead() {
            return Err(Error::Dead);
        }
        let mut guard = self.admin();
        let q = guard.as_mut().ok_or(Error::Dead)?;
        f(q)
    }

    pub(crate) fn is_dead(&self) -> bool {
        self.dead.load(Ordering::Relaxed)
    }

    pub(crate) fn mark_dead(&self) {
        self.dead.store(true, Ordering::Relaxed);
    }

    /// Run one admin command; failures that leave the controller in an
    /// unknown state mark it dead.
    pub(crate) fn admin_cmd(
        &self,
        cmd: SubmissionEntry,
        what: &'static str,
    ) -> Result<CompletionEntry, Error> {
        self.with_admin(|q| {
            exec_marking_dead(q, &self.hw, cmd, what, self.opts.admin_timeout, &self.dead)
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

    /// Shadow slots for a new I/O queue `qid`'s SQ and CQ, if shadow
    /// doorbells are on, cleared to the state of a queue never rung. Call
    /// before creating the queue: the slots of a queue id that was used
    /// before still hold that queue's last values (the controller does not
    /// reset them on Create; Linux likewise clears the pages on setup).
    pub(crate) fn fresh_shadows(&self, qid: u16) -> Option<(Shadow, Shadow)> {
        let d = self.dbbuf.as_ref()?;
        let (sq, cq) = (d.slot(qid, true, false)?, d.slot(qid, false, false)?);
        sq.clear();
        cq.clear();
        Some((sq, cq))
    }

    pub(crate) fn release_qid(&self, qid: u16) {
        let mut used = self.qid_in_use.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(slot) = used.get_mut(usize::from(qid)) {
            *slot = false;
        }
    }

    /// Stop all controller activity (CC.EN = 0) after a failure, so memory
    /// the controller might still access can be freed. Returns true only if
    /// the controller confirmed (CSTS.RDY = 0).
    pub(crate) fn emergency_disable(&self) -> bool {
        self.mark_dead();
        disable(&self.hw, self.cap).is_ok()
    }

    /// Normal shutdown, then disable; frees nothing itself.
    fn teardown(&mut self) -> Result<(), Error> {
        self.torn_down = true;
        let hw = &self.hw;
        let mut first_err = None;
        if !self.is_dead() {
            let mut cc = Cc::from_bits(hw.read32(offset::CC));
            cc.shn = ShutdownNotification::Normal;
            hw.write32(offset::CC, cc.to_bits());
            let deadline = Instant::now() + self.opts.shutdown_timeout;
            loop {
                let csts = Csts(hw.read32(offset::CSTS));
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

fn exec_marking_dead<H: Hardware>(
    q: &mut AdminQueue<H>,
    hw: &H,
    cmd: SubmissionEntry,
    what: &'static str,
    timeout: Duration,
    dead: &AtomicBool,
) -> Result<CompletionEntry, Error> {
    let r = q.exec(hw, cmd, what, timeout);
    if let Err(Error::Timeout { .. } | Error::ControllerFatal(_) | Error::DeviceGone) = &r {
        dead.store(true, Ordering::Relaxed);
    }
    r
}

impl<H: Hardware> Drop for Shared<H> {
    fn drop(&mut self) {
        if !self.torn_down {
            if let Err(e) = self.teardown() {
                tracing::warn!("controller teardown: {e}");
            }
        }
        // Free the admin queue only if the controller is provably stopped.
        let csts = Csts(self.hw.read32(offset::CSTS));
        let cc = Cc::from_bits(self.hw.read32(offset::CC));
        if csts.is_all_ones() || cc.enable || csts.ready() {
            tracing::error!(
                ?csts,
                "controller did not stop; leaking its admin queue and doorbell buffer \
                 memory rather than freeing memory it may still write"
            );
            let admin = self
                .admin
                .get_mut()
                .unwrap_or_else(|p| p.into_inner())
                .take();
            std::mem::forget(admin);
            // The controller writes EventIdx values into these pages.
            std::mem::forget(self.dbbuf.take());
        }
    }
}

/// Doorbell Buffer Config: hand the controller a shadow doorbell page and an
/// EventIdx page. The controller applies them to every queue that exists,
/// the admin queue included (QEMU seeds each shadow slot with its current
/// value), so from here on the admin rings publish through their shadow
/// slots too (and still always write MMIO: admin commands are rare).
fn setup_dbbuf<H: Hardware>(
    hw: &H,
    cap: Cap,
    admin: &mut AdminQueue<H>,
    timeout: Duration,
    dead: &AtomicBool,
) -> Result<DbBuf<H>, Error> {
    let buf: DbBuf<H> = DbBuf {
        shadow: hw.alloc_dma(PAGE_SIZE)?,
        eventidx: hw.alloc_dma(PAGE_SIZE)?,
        stride: cap.doorbell_stride(),
    };
    let mut cmd = SubmissionEntry::new(crate::cmd::admin_opcode::DOORBELL_BUFFER_CONFIG, 0);
    cmd.set_prps(buf.shadow.iova(), buf.eventidx.iova());
    if let Err(e) = exec_marking_dead(admin, hw, cmd, "Doorbell Buffer Config", timeout, dead) {
        // Refused with a status: the controller does not use the pages. Any
        // other failure: it may, so they are leaked rather than freed.
        if !matches!(e, Error::Command { .. }) {
            std::mem::forget(buf);
        }
        return Err(e);
    }
    if let (Some(sq), Some(cq)) = (buf.slot(0, true, true), buf.slot(0, false, true)) {
        admin.sq.set_shadow(sq);
        admin.cq.set_shadow(cq);
    }
    Ok(buf)
}

/// The admin queue of a controller being brought up after CC.EN = 1: if
/// bring-up fails, dropping this disables the controller before the queue
/// memory is freed, and leaks the memory if the disable is not confirmed.
struct EnabledAdmin<'a, H: Hardware> {
    hw: &'a H,
    cap: Cap,
    admin: Option<AdminQueue<H>>,
    /// Shadow doorbell pages, once handed to the controller.
    dbbuf: Option<DbBuf<H>>,
}

impl<H: Hardware> EnabledAdmin<'_, H> {
    fn disarm(mut self) -> (AdminQueue<H>, Option<DbBuf<H>>) {
        (self.admin.take().expect("armed"), self.dbbuf.take())
    }
}

impl<H: Hardware> Drop for EnabledAdmin<'_, H> {
    fn drop(&mut self) {
        if let Some(admin) = self.admin.take() {
            if disable(self.hw, self.cap).is_err() {
                tracing::error!(
                    "bring-up failed and the controller did not stop; leaking its admin queue"
                );
                std::mem::forget(admin);
                std::mem::forget(self.dbbuf.take());
            }
        }
    }
}

/// Clear CC.EN and wait for CSTS.RDY = 0, bounded by CAP.TO.
fn disable<H: Hardware>(hw: &H, cap: Cap) -> Result<(), Error> {
    let cc = Cc::from_bits(hw.read32(offset::CC));
    let csts = Csts(hw.read32(offset::CSTS));
    if csts.is_all_ones() {
        return Err(Error::DeviceGone);
    }
    if cc.enable {
        if !csts.ready() && !csts.fatal() {
            // Enabling in progress: the spec wants RDY=1 before EN is cleared.
            let _ = wait_ready(hw, cap, true);
        }
        hw.write32(
            offset::CC,
            Cc {
                enable: false,
                ..cc
            }
            .to_bits(),
        );
    }
    wait_ready(hw, cap, false)
}

/// Wait until CSTS.RDY == `want`, bounded by CAP.TO; fail fast on CFS
/// while enabling and on an all-ones read.
fn wait_ready<H: Hardware>(hw: &H, cap: Cap, want: bool) -> Result<(), Error> {
    let timeout = cap.ready_timeout();
    let start = Instant::now();
    loop {
        let csts = Csts(hw.read32(offset::CSTS));
        if csts.is_all_ones() {
            return Err(Error::DeviceGone);
        }
        if want && csts.fatal() {
            return Err(Error::ControllerFatal(csts));
        }
        if csts.ready() == want {
            return Ok(());
        }
        if start.elapsed() > timeout {
            return Err(Error::ReadyTimeout {
                want_ready: want,
                timeout,
                csts,
            });
        }
        hw.delay_us(1000);
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
    /// admin queue, configure and enable, identify, negotiate I/O queues and
    /// discover namespaces.
    pub fn init(hw: H, opts: ControllerOptions) -> Result<Self, Error> {
        let cap = Cap(hw.read64(offset::CAP));
        if cap.0 == u64::MAX {
            return Err(Error::DeviceGone);
        }
        let version = Version(hw.read32(offset::VS));
        tracing::debug!(?cap, %version, "controller capabilities");
        if !cap.supports_nvm_command_set() {
            return Err(Error::Unsupported(format!(
                "controller does not support the NVM command set (CAP.CSS = {:#x})",
                cap.css()
            )));
        }
        if cap.min_page_size() > PAGE_SIZE || cap.max_page_size() < PAGE_SIZE {
            return Err(Error::Unsupported(format!(
                "controller page sizes {}..={} exclude 4096",
                cap.min_page_size(),
                cap.max_page_size()
            )));
        }
        disable(&hw, cap)?;

        // The CMB is programmed while the controller is disabled.
        let cmb_layout = match cmb::discover(&hw, cap) {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!("controller memory buffer not usable: {e}");
                None
            }
        };
        let cmb = match cmb_layout {
            Some(layout) if opts.cmb_queues && layout.sz.sqs() => {
                match Cmb::map(&hw, layout) {
                    Ok(c) => {
                        tracing::info!(?layout, memory_type = ?c.memory_type(), "submission queues go to the CMB");
                        Some(c)
                    }
                    Err(e) => {
                        tracing::warn!("cannot map the controller memory buffer: {e}; queues stay in host memory");
                        None
                    }
                }
            }
            _ => None,
        };

        let admin_entries = opts
            .admin_queue_entries
            .clamp(2, 4096)
            .min(cap.max_queue_entries().min(4096) as u16);
        let admin = AdminQueue::new(&hw, cap, admin_entries)?;
        hw.write32(
            offset::AQA,
            Aqa {
                sq_entries: admin_entries,
                cq_entries: admin_entries,
            }
            .to_bits(),
        );
        hw.write64(offset::ASQ, admin.sq.iova().0);
        hw.write64(offset::ACQ, admin.cq.iova().0);
        let mut cc = Cc {
            enable: false,
            css: 0,
            mps: 0,
            ams: 0,
            shn: ShutdownNotification::None,
            iosqes: 6,
            iocqes: 4,
        };
        hw.write32(offset::CC, cc.to_bits());
        cc.enable = true;
        // From here on the controller may use the admin queue memory: an
        // error must disable it before that memory is freed (or leak it).
        let mut armed = EnabledAdmin {
            hw: &hw,
            cap,
            admin: Some(admin),
            dbbuf: None,
        };
        hw.write32(offset::CC, cc.to_bits());
        wait_ready(&hw, cap, true)?;
        let admin = armed.admin.as_mut().expect("armed");

        let dead = AtomicBool::new(false);
        let t = opts.admin_timeout;
        let scratch = admin.scratch.iova();
        exec_marking_dead(
            admin,
            &hw,
            SubmissionEntry::identify(cns::CONTROLLER, 0, scratch),
            "Identify Controller",
            t,
            &dead,
        )?;
        let identify = IdentifyController::parse(&admin.scratch_bytes::<IDENTIFY_SIZE>());
        if identify.sqes_min() > 6 || identify.cqes_min() > 4 {
            return Err(Error::Unsupported(format!(
                "controller requires SQ/CQ entries of 2^{}/2^{} bytes; the driver uses 64/16",
                identify.sqes_min(),
                identify.cqes_min()
            )));
        }

        let want = opts.io_queue_pairs.max(1);
        let granted = match exec_marking_dead(
            admin,
            &hw,
            SubmissionEntry::set_number_of_queues(want, want),
            "Set Features (Number of Queues)",
            t,
            &dead,
        ) {
            Ok(cqe) => {
                let nsqa = (cqe.result & 0xffff) as u16;
                let ncqa = (cqe.result >> 16) as u16;
                nsqa.min(ncqa).saturating_add(1).min(want)
            }
            Err(e) => return Err(e),
        };

        let dbbuf = if opts.shadow_doorbells && identify.oacs.doorbell_buffer_config() {
            match setup_dbbuf(&hw, cap, admin, t, &dead) {
                Ok(d) => Some(d),
                Err(e) => {
                    tracing::warn!("shadow doorbells not enabled: {e}");
                    if dead.load(Ordering::Relaxed) {
                        return Err(e);
                    }
                    None
                }
            }
        } else {
            None
        };
        armed.dbbuf = dbbuf;
        let admin = armed.admin.as_mut().expect("armed");

        let nsids: Vec<u32> = if version >= Version::new(1, 1, 0) {
            exec_marking_dead(
                admin,
                &hw,
                SubmissionEntry::identify(cns::ACTIVE_NAMESPACES, 0, scratch),
                "Identify (Active Namespace List)",
                t,
                &dead,
            )?;
            admin
                .scratch_bytes::<IDENTIFY_SIZE>()
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .take_while(|&n| n != 0)
                .collect()
        } else {
            (1..=identify.nn.min(1024)).collect()
        };
        // Buffers keep their domain in 32 bits; never hand one out twice.
        let domain = NEXT_DOMAIN
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |d| {
                (d < u64::from(u32::MAX)).then_some(d + 1)
            })
            .map_err(|_| {
                Error::Unsupported(
                    "this process has initialised 2^32 controllers; restart it".into(),
                )
            })?;
        let mut namespaces = Vec::new();
        for nsid in nsids {
            exec_marking_dead(
                admin,
                &hw,
                SubmissionEntry::identify(cns::NAMESPACE, nsid, scratch),
                "Identify Namespace",
                t,
                &dead,
            )?;
            let id = IdentifyNamespace::parse(&admin.scratch_bytes::<IDENTIFY_SIZE>());
            if !id.is_active() {
                continue;
            }
            let Some(fmt) = id.current_format().filter(|f| (9..=16).contains(&f.lbads)) else {
                tracing::warn!(
                    nsid,
                    flbas = id.flbas,
                    "namespace has an invalid LBA format; skipped"
                );
                continue;
            };
            namespaces.push(Namespace {
                nsid,
                block_size: fmt.block_size(),
                block_shift: u32::from(fmt.lbads),
                blocks: id.nsze,
                metadata_size: fmt.metadata_size,
                identify: id,
                domain,
                io_domain: if fmt.metadata_size == 0 { domain } else { 0 },
            });
        }

        let max_transfer = identify
            .max_transfer_bytes(cap.min_page_size())
            .unwrap_or(PRP_LIST_LIMIT)
            .min(PRP_LIST_LIMIT);
        let (admin, dbbuf) = armed.disarm();
        tracing::info!(
            model = %identify.model,
            serial = %identify.serial,
            %version,
            io_queue_pairs = granted,
            max_transfer,
            namespaces = namespaces.len(),
            "controller ready"
        );
        Ok(Controller {
            shared: Arc::new(Shared {
                hw,
                cap,
                version,
                admin: Mutex::new(Some(admin)),
                identify,
                namespaces,
                io_queues_granted: granted,
                qid_in_use: Mutex::new(vec![false; usize::from(granted) + 1]),
                max_transfer,
                cmb_layout,
                cmb,
                dbbuf,
                domain,
                dead,
                torn_down: false,
                opts,
            }),
        })
    }

    /// The platform layer.
    pub fn hardware(&self) -> &H {
        &self.shared.hw
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
            .find(|n| n.nsid == nsid)
            .ok_or_else(|| Error::NoSuchNamespace {
                nsid,
                active: self.shared.namespaces.iter().map(|n| n.nsid).collect(),
            })
    }
    /// I/O queue pairs the controller granted.
    pub fn io_queue_pairs_granted(&self) -> u16 {
        self.shared.io_queues_granted
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
        self.shared.dbbuf.is_some()
    }

    /// Options in force.
    pub fn options(&self) -> &ControllerOptions {
        &self.shared.opts
    }
    /// Current CSTS.
    pub fn status(&self) -> Csts {
        Csts(self.shared.hw.read32(offset::CSTS))
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
        if self.shared.is_dead() {
            return Err(Error::Dead);
        }
        let qid = {
            let mut used = self
                .shared
                .qid_in_use
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let Some(qid) = (1..used.len()).find(|&q| !used[q]) else {
                return Err(Error::NoQueuePairs {
                    granted: self.shared.io_queues_granted,
                });
            };
            used[qid] = true;
            qid as u16
        };
        IoQueuePair::create(self.shared.clone(), qid, entries).inspect_err(|_| {
            self.shared.release_qid(qid);
        })
    }

    /// Identify a namespace now (not the cached copy).
    pub fn identify_namespace(&self, nsid: u32) -> Result<IdentifyNamespace, Error> {
        let s = &self.shared;
        s.with_admin(|q| {
            let scratch = q.scratch.iova();
            exec_marking_dead(
                q,
                &s.hw,
                SubmissionEntry::identify(cns::NAMESPACE, nsid, scratch),
                "Identify Namespace",
                s.opts.admin_timeout,
                &s.dead,
            )?;
            Ok(IdentifyNamespace::parse(
                &q.scratch_bytes::<IDENTIFY_SIZE>(),
            ))
        })
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
        let s = &self.shared;
        s.with_admin(|q| {
            let scratch = q.scratch.iova();
            exec_marking_dead(
                q,
                &s.hw,
                SubmissionEntry::get_log_page(lid, 0xffff_ffff, (N / 4) as u32, 0, scratch),
                what,
                s.opts.admin_timeout,
                &s.dead,
            )?;
            Ok(q.scratch_bytes::<N>())
        })
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
