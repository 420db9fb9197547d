//! Bringing a controller up, as named steps in the spec's order: check
//! what the controller can do, reset it and map its memory buffer, enable
//! the admin queue, identify, negotiate I/O queues, turn on shadow
//! doorbells, discover namespaces. [`BringUp`] owns what the steps share;
//! if a step fails after the controller was enabled, dropping it disables
//! the controller before the admin queue memory is freed (and leaks that
//! memory if the disable is not confirmed).
//!
//! Also here: disabling a controller (CC.EN = 0, bounded by CAP.TO), which
//! teardown and error paths share.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::cmb::{self, Cmb, CmbLayout};
use crate::cmd::{admin_opcode, cns, feature, CompletionEntry, SubmissionEntry};
use crate::error::Error;
use crate::hw::{DmaRegion, Hardware};
use crate::identify::{IdentifyController, IdentifyNamespace, IDENTIFY_SIZE};
use crate::regs::{Acq, Aqa, Asq, Cap, Cc, Csts, Version};
use crate::ring::{Shadow, ShadowPages};

use super::admin::AdminQueue;
use super::{AdminState, ControllerOptions, DbBuf, Namespace, Shared, PAGE_SIZE, PRP_LIST_LIMIT};

/// DMA domains: one per controller brought up in this process, so buffers
/// and namespaces of one controller are refused by another's queues.
static NEXT_DOMAIN: AtomicU64 = AtomicU64::new(1);

/// A controller being brought up.
pub(super) struct BringUp<'a, H: Hardware> {
    hw: &'a H,
    cap: Cap,
    version: Version,
    opts: &'a ControllerOptions,
    /// The CMB as discovered (reported even when not used for queues).
    cmb_layout: Option<CmbLayout>,
    /// The mapped CMB, when submission queues go there.
    cmb: Option<Arc<Cmb<H>>>,
    /// Set once the controller is enabled: it may use this memory from then on.
    admin: Option<AdminQueue<H>>,
    /// Shadow doorbell pages, once handed to the controller.
    dbbuf: Option<DbBuf<H>>,
    /// Set when an admin command leaves the controller in an unknown state.
    dead: AtomicBool,
}

impl<'a, H: Hardware> BringUp<'a, H> {
    /// Read CAP and VS and check the controller can be driven: NVM command
    /// set, 4 KiB pages.
    pub(super) fn check_capabilities(
        hw: &'a H,
        opts: &'a ControllerOptions,
    ) -> Result<Self, Error> {
        let cap = hw.read_reg::<Cap>();
        if cap.0 == u64::MAX {
            return Err(Error::DeviceGone);
        }
        let version = hw.read_reg::<Version>();
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
        Ok(Self::resume(hw, opts, cap, version))
    }

    /// A bring-up whose capabilities are known: after `check_capabilities`,
    /// or for a controller brought up before (a reset), whose memory buffer,
    /// if submission queues use it, stays mapped (queue pairs keep their
    /// rings in it).
    pub(super) fn resume(
        hw: &'a H,
        opts: &'a ControllerOptions,
        cap: Cap,
        version: Version,
    ) -> Self {
        BringUp {
            hw,
            cap,
            version,
            opts,
            cmb_layout: None,
            cmb: None,
            admin: None,
            dbbuf: None,
            dead: AtomicBool::new(false),
        }
    }

    /// After a reset stopped the controller: program the memory buffer's
    /// controller base address again (a function reset clears CMBMSC), and
    /// check it is where it was.
    pub(super) fn reprogram_cmb(&mut self, was: Option<CmbLayout>) -> Result<(), Error> {
        let Some(was) = was else {
            return Ok(());
        };
        let now = cmb::discover(self.hw, self.cap)?;
        if now != Some(was) {
            return Err(Error::Unsupported(format!(
                "the controller memory buffer changed across the reset ({was:?} -> {now:?})"
            )));
        }
        Ok(())
    }

    /// What a reset keeps: the new admin queue, shadow pages and the
    /// queue pairs granted.
    pub(super) fn into_admin_state(mut self, granted: u16) -> Result<AdminState<H>, Error> {
        let queue = self.admin.take().ok_or(Error::Dead)?;
        Ok(AdminState {
            queue: Some(queue),
            dbbuf: self.dbbuf.take(),
            granted,
        })
    }

    /// Disable the controller (a reset of its queues), then find its
    /// memory buffer and, if submission queues may go there, program and
    /// map it (while the controller is disabled, as the spec requires).
    pub(super) fn reset_and_map_cmb(&mut self) -> Result<(), Error> {
        disable(self.hw, self.cap)?;
        self.cmb_layout = match cmb::discover(self.hw, self.cap) {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!("controller memory buffer not usable: {e}");
                None
            }
        };
        self.cmb = match self.cmb_layout {
            Some(layout) if self.opts.cmb_queues && layout.sz.sqs() => {
                match Cmb::map(self.hw, layout) {
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
        Ok(())
    }

    /// Program the admin queue and CC, enable the controller and wait for
    /// CSTS.RDY.
    pub(super) fn enable_admin_queue(&mut self) -> Result<(), Error> {
        let (hw, cap) = (self.hw, self.cap);
        let entries = self
            .opts
            .admin_queue_entries
            .clamp(2, 4096)
            .min(cap.max_queue_entries().min(4096) as u16);
        let admin = AdminQueue::new(hw, cap, entries)?;
        hw.write_reg(Aqa {
            sq_entries: entries,
            cq_entries: entries,
        });
        hw.write_reg(Asq(admin.sq.iova().0));
        hw.write_reg(Acq(admin.cq.iova().0));
        let cc = Cc::DRIVER;
        hw.write_reg(cc);
        // From here on the controller may use the admin queue memory: an
        // error must disable it before that memory is freed (or leak it).
        self.admin = Some(admin);
        hw.write_reg(Cc { enable: true, ..cc });
        wait_ready(hw, cap, true)
    }

    /// Run one admin command on the enabled admin queue.
    fn admin(
        &mut self,
        cmd: SubmissionEntry,
        what: &'static str,
    ) -> Result<CompletionEntry, Error> {
        let q = self.admin.as_mut().ok_or(Error::Dead)?;
        q.run(self.hw, cmd, what, self.opts.admin_timeout, &self.dead)
    }

    /// Run an admin command that fills the scratch page; its first `N` bytes.
    fn admin_data<const N: usize>(
        &mut self,
        cmd: impl FnOnce(crate::hw::Iova) -> SubmissionEntry,
        what: &'static str,
    ) -> Result<Box<[u8; N]>, Error> {
        let scratch = self.admin.as_ref().ok_or(Error::Dead)?.scratch_iova();
        self.admin(cmd(scratch), what)?;
        Ok(self.admin.as_ref().ok_or(Error::Dead)?.scratch_bytes::<N>())
    }

    /// Identify Controller; refuse entry sizes the driver cannot use.
    pub(super) fn identify(&mut self) -> Result<IdentifyController, Error> {
        let data = self.admin_data::<IDENTIFY_SIZE>(
            |scratch| SubmissionEntry::identify(cns::CONTROLLER, 0, scratch),
            "Identify Controller",
        )?;
        let identify = IdentifyController::parse(&data);
        if identify.sqes_min() > 6 || identify.cqes_min() > 4 {
            return Err(Error::Unsupported(format!(
                "controller requires SQ/CQ entries of 2^{}/2^{} bytes; the driver uses 64/16",
                identify.sqes_min(),
                identify.cqes_min()
            )));
        }
        Ok(identify)
    }

    /// Set Features (Number of Queues): the I/O queue pairs granted, at
    /// most what the options ask for.
    pub(super) fn negotiate_queues(&mut self) -> Result<u16, Error> {
        let want = self.opts.io_queue_pairs.max(1);
        let cqe = self.admin(
            SubmissionEntry::set_number_of_queues(want, want),
            "Set Features (Number of Queues)",
        )?;
        let nsqa = (cqe.result & 0xffff) as u16;
        let ncqa = (cqe.result >> 16) as u16;
        Ok(nsqa.min(ncqa).saturating_add(1).min(want))
    }

    /// Doorbell Buffer Config, when the options want it and the controller
    /// has it: hand the controller a shadow doorbell page and an EventIdx
    /// page. The controller applies them to every queue that exists, the
    /// admin queue included (QEMU seeds each shadow slot with its current
    /// value), so from here on the admin rings publish through their shadow
    /// slots too (and still always write MMIO: admin commands are rare).
    /// A refusal only leaves shadow doorbells off.
    pub(super) fn enable_shadow_doorbells(
        &mut self,
        identify: &IdentifyController,
    ) -> Result<(), Error> {
        if !self.opts.shadow_doorbells || !identify.oacs.doorbell_buffer_config() {
            return Ok(());
        }
        let pages = Arc::new(ShadowPages {
            doorbells: self.hw.alloc_dma(PAGE_SIZE)?,
            eventidx: self.hw.alloc_dma(PAGE_SIZE)?,
        });
        let mut cmd = SubmissionEntry::new(admin_opcode::DOORBELL_BUFFER_CONFIG, 0);
        cmd.set_prps(pages.doorbells.iova(), pages.eventidx.iova());
        let dbbuf = DbBuf {
            pages,
            stride: self.cap.doorbell_stride(),
        };
        match self.admin(cmd, "Doorbell Buffer Config") {
            Ok(_) => {}
            // Refused with a status: the controller does not use the pages.
            Err(e @ Error::Command { .. }) => {
                tracing::warn!("shadow doorbells not enabled: {e}");
                return Ok(());
            }
            // Any other failure: it may, so they are leaked rather than freed.
            Err(e) => {
                std::mem::forget(dbbuf);
                return Err(e);
            }
        }
        if let (Some(sq), Some(cq)) = (dbbuf.slot(0, true, true), dbbuf.slot(0, false, true)) {
            let admin = self.admin.as_mut().ok_or(Error::Dead)?;
            admin.sq.set_shadow(Some(sq));
            admin.cq.set_shadow(Some(cq));
        }
        self.dbbuf = Some(dbbuf);
        Ok(())
    }

    /// Asynchronous Event Configuration: report every SMART/health critical
    /// warning, and the notices the controller supports of those the
    /// driver handles (namespace attribute changed, firmware activation).
    /// A controller that refuses only leaves its defaults in place.
    pub(super) fn configure_async_events(
        &mut self,
        identify: &IdentifyController,
    ) -> Result<(), Error> {
        let cdw11 = 0xff | (identify.oaes & 0x300);
        let cmd = SubmissionEntry::set_features(feature::ASYNC_EVENT_CONFIG, cdw11);
        match self.admin(cmd, "Set Features (Asynchronous Event Configuration)") {
            Ok(_) => Ok(()),
            Err(e @ Error::Command { .. }) => {
                tracing::warn!("asynchronous event configuration refused: {e}");
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// The active namespaces (the Active Namespace List from NVMe 1.1, else
    /// 1..=NN), each identified, in a new DMA domain.
    pub(super) fn discover_namespaces(
        &mut self,
        identify: &IdentifyController,
    ) -> Result<(Vec<Namespace>, u64), Error> {
        let nsids: Vec<u32> = if self.version >= Version::new(1, 1, 0) {
            self.admin_data::<IDENTIFY_SIZE>(
                |scratch| SubmissionEntry::identify(cns::ACTIVE_NAMESPACES, 0, scratch),
                "Identify (Active Namespace List)",
            )?
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
            let data = self.admin_data::<IDENTIFY_SIZE>(
                |scratch| SubmissionEntry::identify(cns::NAMESPACE, nsid, scratch),
                "Identify Namespace",
            )?;
            let id = IdentifyNamespace::parse(&data);
            namespaces.extend(Namespace::from_identify(nsid, id, domain));
        }
        Ok((namespaces, domain))
    }

    /// Everything the steps produced, for the controller's shared state
    /// (which also takes the hardware this bring-up borrowed).
    pub(super) fn finish_parts(
        mut self,
        identify: IdentifyController,
        granted: u16,
        namespaces: Vec<Namespace>,
        domain: u64,
    ) -> Parts<H> {
        let max_transfer = identify
            .max_transfer_bytes(self.cap.min_page_size())
            .unwrap_or(PRP_LIST_LIMIT)
            .min(PRP_LIST_LIMIT);
        tracing::info!(
            model = %identify.model,
            serial = %identify.serial,
            version = %self.version,
            io_queue_pairs = granted,
            max_transfer,
            namespaces = namespaces.len(),
            "controller ready"
        );
        Parts {
            cap: self.cap,
            version: self.version,
            admin: self.admin.take(),
            identify,
            namespaces,
            granted,
            max_transfer,
            cmb_layout: self.cmb_layout,
            cmb: self.cmb.take(),
            dbbuf: self.dbbuf.take(),
            domain,
            dead: self.dead.load(Ordering::Relaxed),
            opts: self.opts.clone(),
        }
    }
}

/// What a finished bring-up hands to the controller's shared state.
pub(super) struct Parts<H: Hardware> {
    cap: Cap,
    version: Version,
    admin: Option<AdminQueue<H>>,
    identify: IdentifyController,
    namespaces: Vec<Namespace>,
    granted: u16,
    max_transfer: usize,
    cmb_layout: Option<CmbLayout>,
    cmb: Option<Arc<Cmb<H>>>,
    dbbuf: Option<DbBuf<H>>,
    domain: u64,
    dead: bool,
    opts: ControllerOptions,
}

impl<H: Hardware> Parts<H> {
    /// The shared state of the controller behind `hw` (the hardware the
    /// bring-up ran on).
    pub(super) fn with_hardware(self, hw: H) -> Shared<H> {
        Shared {
            hw,
            cap: self.cap,
            version: self.version,
            admin: Mutex::new(AdminState {
                queue: self.admin,
                dbbuf: self.dbbuf,
                granted: self.granted,
            }),
            epoch: AtomicU64::new(0),
            removed: AtomicBool::new(false),
            recent_errors: Mutex::new((Vec::new(), 0)),
            identify: self.identify,
            namespaces: self.namespaces,
            qid_in_use: Mutex::new(vec![false; usize::from(self.granted) + 1]),
            max_transfer: self.max_transfer,
            cmb_layout: self.cmb_layout,
            cmb: self.cmb,
            domain: self.domain,
            dead: AtomicBool::new(self.dead),
            torn_down: false,
            opts: self.opts,
        }
    }
}

impl<H: Hardware> Drop for BringUp<'_, H> {
    /// Bring-up failed after the controller was enabled: disable it before
    /// the admin queue (and shadow pages) are freed, or leak them.
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

impl<H: Hardware> DbBuf<H> {
    /// The shadow slots of queue `qid` (SQ tail if `sq`, else CQ head), or
    /// `None` if the pages do not reach that far.
    pub(super) fn slot(&self, qid: u16, sq: bool, always_mmio: bool) -> Option<Shadow<H::Dma>> {
        let off = (2 * usize::from(qid) + usize::from(!sq)) * self.stride;
        Shadow::new(&self.pages, off, always_mmio)
    }
}

/// Clear CC.EN and wait for CSTS.RDY = 0, bounded by CAP.TO.
pub(super) fn disable<H: Hardware>(hw: &H, cap: Cap) -> Result<(), Error> {
    let cc = hw.read_reg::<Cc>();
    let csts = hw.read_reg::<Csts>();
    if csts.is_all_ones() {
        return Err(Error::DeviceGone);
    }
    if cc.enable {
        if !csts.ready() && !csts.fatal() {
            // Enabling in progress: the spec wants RDY=1 before EN is cleared.
            let _ = wait_ready(hw, cap, true);
        }
        hw.write_reg(Cc {
            enable: false,
            ..cc
        });
    }
    wait_ready(hw, cap, false)
}

/// Wait until CSTS.RDY == `want`, bounded by CAP.TO; fail fast on CFS
/// while enabling and on an all-ones read.
fn wait_ready<H: Hardware>(hw: &H, cap: Cap, want: bool) -> Result<(), Error> {
    let timeout: Duration = cap.ready_timeout();
    let start = Instant::now();
    loop {
        let csts = hw.read_reg::<Csts>();
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
