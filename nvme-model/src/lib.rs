//! An in-process software NVMe controller that implements [`Hardware`].
//!
//! The model lets the driver logic of `nvme-core` (bring-up, admin
//! commands, queue rings, PRP lists, teardown) run in tests without a
//! device, with fault injection (`tests/driver.rs`, `tests/async_io.rs`),
//! and lets a benchmark measure the driver's own cost per I/O
//! (`benches/overhead.rs`, docs/driver-overhead.md). It uses only
//! nvme-core's public API, like any other [`Hardware`] implementation.
//!
//! # Example
//!
//! The driver on the model, through the async adapter
//! ([`nvme_core::async_io`]):
//!
//! ```
//! use std::future::Future;
//! use nvme_core::async_io::AsyncQueuePair;
//! use nvme_core::{ByteCount, Controller, ControllerOptions, Lba};
//! use nvme_model::ModelController;
//!
//! let ctrl = Controller::init(ModelController::default(), ControllerOptions::default()).unwrap();
//! let ns = ctrl.namespace(1).unwrap().clone();
//! let aqp = AsyncQueuePair::new(ctrl.create_io_queue_pair(16).unwrap());
//! let a = ctrl.alloc_buffer(ByteCount(4096)).unwrap();
//! let b = ctrl.alloc_buffer(ByteCount(4096)).unwrap();
//! let read_two = async {
//!     let fa = aqp.read(&ns, Lba(0), a);
//!     let fb = aqp.read(&ns, Lba(8), b);
//!     // Each future's poll also reaps the other's completion.
//!     Ok::<_, nvme_core::IoError<_>>((fa.await?, fb.await?))
//! };
//! // A minimal executor: poll until ready with a no-op waker.
//! let mut fut = std::pin::pin!(read_two);
//! let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
//! let (a, b) = loop {
//!     if let std::task::Poll::Ready(r) = fut.as_mut().poll(&mut cx) {
//!         break r.unwrap();
//!     }
//! };
//! assert_eq!((a.len(), b.len()), (4096, 4096));
//! ```
//!
//! # What it models
//!
//! - **Registers**: CAP (MQES, CQR=1, TO, DSTRD, CSS=NVM, MPSMIN/MPSMAX from
//!   [`ModelConfig`]), VS, INTMS/INTMC (stored, otherwise ignored), CC, CSTS,
//!   AQA, ASQ, ACQ; CMBLOC/CMBSZ and everything else read as 0.
//!   64-bit registers can be accessed as one 64-bit or two 32-bit accesses.
//! - **Enable/disable**: CC.EN 0→1 validates CC (CSS, MPS range, IOSQES=6,
//!   IOCQES=4, AMS), AQA and ASQ/ACQ; on failure it sets CSTS.CFS and never
//!   RDY, as QEMU does (the reason is in [`ModelController::enable_error`]).
//!   RDY appears at once or after [`ModelConfig::ready_delay_reads`] CSTS
//!   reads. CC.EN 1→0 is a controller reset: all queues and held commands
//!   vanish and CSTS becomes 0 (RDY, CFS and SHST clear).
//!   CC.SHN sets CSTS.SHST to complete (optionally via "occurring" for
//!   [`ModelConfig::shutdown_delay_reads`] CSTS reads); clearing SHN clears SHST.
//! - **Doorbells**: decoded with CAP.DSTRD. An SQ tail write processes
//!   every new entry synchronously, inside the doorbell store, and posts the
//!   completions (SQ head, SQ id, CID, status, phase tag) into CQ memory. A
//!   full CQ keeps completions back until its head doorbell moves
//!   ([`ModelStats::cq_full_stalls`]). An invalid doorbell write (value ≥
//!   queue size, CQ head beyond what was posted) sets CSTS.CFS: the spec
//!   also allows an Asynchronous Event instead, but a fatal status cannot go
//!   unnoticed in a test. A doorbell of a queue that does not exist is
//!   ignored and counted ([`ModelStats::doorbells_without_queue`]), as QEMU
//!   does: a host may ring a queue a reset just deleted. While CFS is set,
//!   the controller is disabled or the device is gone, doorbells are ignored.
//! - **Shadow doorbells** (Doorbell Buffer Config, on by default as in
//!   QEMU): an MMIO SQ doorbell makes the model take the tail from the
//!   shadow slot and write the SQ's EventIdx as it consumes entries; CQ
//!   heads are read from the shadow slot before posting. Slots of a queue
//!   created later are not seeded, so a host that reuses a queue id must
//!   clear them itself (as QEMU requires too).
//! - **DMA**: [`ModelDma`] regions get IOVAs from a bump allocator with a
//!   guard page after each region and are never reused; the model translates
//!   every PRP through its table. An access to an unmapped IOVA completes the
//!   command with Data Transfer Error (as an IOMMU fault would); an access to
//!   a freed region is also recorded as a use-after-free
//!   ([`ModelController::dma_use_after_free`]). A faulting SQ fetch or CQ
//!   write sets CSTS.CFS.
//! - **Admin commands**: Identify (CNS 0, 1, 2), Set/Get Features (Number of
//!   Queues, Volatile Write Cache; other features: Invalid Field), Create /
//!   Delete I/O SQ/CQ with the spec's checks, Get Log Page (Error
//!   Information, SMART / Health with real counters, Firmware Slot), Abort
//!   (of held commands), Asynchronous Event Request (accepted, never
//!   completed: the model raises no events). Other opcodes: Invalid Command
//!   Opcode.
//! - **NVM commands**: Read, Write (FUA accepted), Flush, Write Zeroes,
//!   Dataset Management (deallocate → zeros), Compare; checks MDTS, LBA
//!   range, NSID, PRINFO, PSDT and the PRP rules (offsets, lists, chained
//!   lists, CC.MPS page size).
//! - **Fault injection and observation** through [`ModelController`]:
//!   [`hold_completions`](ModelController::hold_completions) (and, while
//!   held, [`complete_held`](ModelController::complete_held) out of order),
//!   [`post_completion`](ModelController::post_completion) (a repeated or
//!   stray completion entry),
//!   [`fail_next`](ModelController::fail_next),
//!   [`set_fatal`](ModelController::set_fatal),
//!   [`device_gone`](ModelController::device_gone),
//!   [`ignore_disable`](ModelController::ignore_disable),
//!   [`fail_dma_allocs`](ModelController::fail_dma_allocs),
//!   [`stats`](ModelController::stats), namespace contents.
//!
//! # What it does not model
//!
//! Interrupts (MSI-X; IEN is accepted and ignored), the controller memory
//! buffer, SGLs (PSDT ≠ 0 is Invalid Field), metadata (a namespace can
//! report a metadata size in its LBA format,
//! [`NamespaceConfig::with_metadata`], but MPTR is ignored and no metadata
//! moves) and protection information, fused commands, namespace management, firmware update,
//! reservations, NVM subsystem reset, timing (every
//! command completes inside the doorbell write that submits it, unless held),
//! arbitration, or the ordering freedom of a real controller (it completes
//! in submission order). Deleting an SQ posts the aborts of its held
//! commands before the Delete completion but does not wait for completions
//! that are stuck behind a full CQ.
//!
//! # Concurrency
//!
//! One mutex guards all state; every register access, doorbell write and
//! DMA-region drop takes it. The model reads SQ entries and data with
//! `ptr::copy` and writes CQ entries with volatile dword stores (the dword
//! holding the phase tag last), never through references into DMA memory.
//!
//! # Where `unsafe` lives
//!
//! The crate denies `unsafe_code`; it is allowed only in `dma` (the fake
//! DMA memory: its allocation, the table copies in and out of it, and the
//! `unsafe impl`s of `Send`/`Sync`/[`nvme_core::DmaRegion`]), on the
//! `unsafe impl Hardware for ModelController`, and in the unit tests (raw
//! access to DMA regions).

#![deny(unsafe_code)]

mod admin;
#[allow(unsafe_code)]
mod dma;
mod faults;
mod io;
mod namespace;
mod prp;
mod state;

#[cfg(test)]
#[allow(unsafe_code)]
mod tests;

use std::sync::{Arc, Mutex, MutexGuard};

use nvme_core::regs::{offset, Cap, Csts};
use nvme_core::{Doorbell, Hardware, HwError};

pub use admin::{MODEL_SSVID, MODEL_VID, OACS_DBBUF};
pub use dma::{DmaFault, DmaFaultKind, ModelDma};
pub use faults::{HeldCommand, ModelStats, Status};
pub use namespace::{Backing, NamespaceConfig};

use faults::QueueKind;
use state::{DbTarget, Inner, CSTS_CFS};

/// Configuration of a [`ModelController`]. `Default` is a QEMU-like
/// controller with one sparse 1 GiB namespace of 512-byte blocks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelConfig {
    /// Namespaces; NSIDs are 1, 2, … in this order.
    pub namespaces: Vec<NamespaceConfig>,
    /// CAP.MQES: maximum queue entries, 0-based (2047 = 2048 entries).
    pub mqes: u16,
    /// MDTS: max transfer is `2^mdts` minimum pages; 0 = no limit.
    pub mdts: u8,
    /// CAP.DSTRD: doorbell stride is `4 << dstrd` bytes.
    pub dstrd: u8,
    /// CAP.TO in 500 ms units.
    pub timeout: u8,
    /// CAP.MPSMIN.
    pub mpsmin: u8,
    /// CAP.MPSMAX.
    pub mpsmax: u8,
    /// Most I/O queue pairs granted by Set Features / Number of Queues
    /// (also the highest queue ID with a doorbell). At least 1.
    pub max_io_queue_pairs: u16,
    /// Identify serial number (20 characters max).
    pub serial: String,
    /// Identify model number (40 characters max).
    pub model: String,
    /// Identify firmware revision (8 characters max).
    pub firmware: String,
    /// A volatile write cache is present (Identify VWC, feature 06h).
    pub vwc: bool,
    /// ONCS: optional NVM commands. The model implements Compare (bit 0),
    /// Dataset Management (bit 2) and Write Zeroes (bit 3); a command whose
    /// bit is clear is Invalid Command Opcode.
    pub oncs: u16,
    /// OACS reported in Identify. Of the optional admin commands only
    /// Doorbell Buffer Config ([`OACS_DBBUF`], bit 8) is implemented: with
    /// it the model keeps shadow doorbells as QEMU does (reads a queue's
    /// shadow tail or head only when an MMIO doorbell or a completion makes
    /// it look, writes an SQ's EventIdx as it consumes entries, and seeds
    /// no slot of a queue created afterwards).
    pub oacs: u16,
    /// SGLS reported in Identify (SGLs are not implemented; keep 0).
    pub sgls: u32,
    /// VS register and Identify VER.
    pub version: u32,
    /// CSTS reads that still show RDY=0 after CC.EN is set.
    pub ready_delay_reads: u32,
    /// CSTS reads that show SHST=occurring after CC.SHN is set.
    pub shutdown_delay_reads: u32,
    /// ELPE: Error Information log entries, 0-based.
    pub error_log_entries: u8,
    /// AERL: outstanding Asynchronous Event Requests, 0-based.
    pub aerl: u8,
    /// `delay_us` really sleeps (otherwise it only yields the thread).
    pub real_delays: bool,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            namespaces: vec![NamespaceConfig::default()],
            mqes: 2047,
            mdts: 7,
            dstrd: 0,
            timeout: 1,
            mpsmin: 0,
            mpsmax: 4,
            max_io_queue_pairs: 64,
            serial: "MODEL0001".to_string(),
            model: "nvme-core model controller".to_string(),
            firmware: "1.0".to_string(),
            vwc: true,
            oncs: io::ONCS_COMPARE | io::ONCS_DSM | io::ONCS_WRITE_ZEROES,
            oacs: OACS_DBBUF,
            sgls: 0,
            version: 0x0001_0400,
            ready_delay_reads: 0,
            shutdown_delay_reads: 0,
            error_log_entries: 63,
            aerl: 3,
            real_delays: false,
        }
    }
}

impl ModelConfig {
    /// The CAP register this configuration produces.
    pub fn cap(&self) -> Cap {
        Cap(u64::from(self.mqes)
            | (1 << 16) // CQR
            | (u64::from(self.timeout) << 24)
            | (u64::from(self.dstrd & 0xf) << 32)
            | (1 << 37) // CSS: NVM command set
            | (u64::from(self.mpsmin & 0xf) << 48)
            | (u64::from(self.mpsmax & 0xf) << 52))
    }
}

/// Shared state behind every handle, doorbell and DMA region.
pub(crate) struct Shared {
    inner: Mutex<Inner>,
    /// What the driver asked to be called when the device is removed.
    on_removal: Mutex<Option<RemovalHook>>,
}

type RemovalHook = Box<dyn Fn() + Send + Sync + 'static>;

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock (a failed assertion in a test) must
        // not turn every later access into a second panic.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The software NVMe controller. Cloning gives another handle to the same
/// controller (tests keep one to inject faults while the driver owns another).
#[derive(Clone)]
pub struct ModelController {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for ModelController {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.shared.lock();
        f.debug_struct("ModelController")
            .field("cc", &format_args!("{:#x}", s.cc))
            .field("csts", &Csts(s.csts))
            .field("io_sqs", &(s.sqs.len().saturating_sub(1)))
            .field("dma_regions", &s.dma.live_regions())
            .finish()
    }
}

impl Default for ModelController {
    fn default() -> Self {
        ModelController::new(ModelConfig::default())
    }
}

impl ModelController {
    /// A controller in the reset state (CC.EN = 0).
    ///
    /// Panics on a configuration the model cannot represent (block size
    /// other than 512/4096, no I/O queue pairs, MQES < 1, MPSMIN > MPSMAX).
    pub fn new(cfg: ModelConfig) -> Self {
        assert!(
            cfg.max_io_queue_pairs >= 1,
            "max_io_queue_pairs must be at least 1"
        );
        assert!(cfg.mqes >= 1, "MQES must allow at least 2 entries");
        assert!(
            cfg.mpsmin <= cfg.mpsmax && cfg.mpsmax <= 15,
            "bad MPSMIN/MPSMAX"
        );
        assert!(cfg.dstrd <= 15, "bad DSTRD");
        ModelController {
            shared: Arc::new(Shared {
                inner: Mutex::new(Inner::new(cfg)),
                on_removal: Mutex::new(None),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.shared.lock()
    }

    /// The configuration the controller was built with.
    pub fn config(&self) -> ModelConfig {
        self.lock().cfg.clone()
    }

    // ----- fault injection --------------------------------------------------

    /// While `hold` is true, commands on SQ `qid` (0 = admin) are fetched
    /// (the SQ head moves) but neither executed nor completed. Setting it
    /// back to false executes and completes them, in order — including any
    /// DMA to buffers the driver may have freed in between.
    pub fn hold_completions(&self, qid: u16, hold: bool) {
        let mut s = self.lock();
        if hold {
            s.faults.held_sqs.insert(qid);
        } else if s.faults.held_sqs.remove(&qid) && s.running && s.csts & CSTS_CFS == 0 {
            s.release_held(qid);
        }
    }

    /// Number of commands currently held on SQ `qid`.
    pub fn held_commands(&self, qid: u16) -> usize {
        self.lock().sqs.get(&qid).map_or(0, |sq| sq.held.len())
    }

    /// The commands currently held on SQ `qid`, in submission order.
    pub fn held_command_list(&self, qid: u16) -> Vec<HeldCommand> {
        self.lock().sqs.get(&qid).map_or_else(Vec::new, |sq| {
            sq.held
                .iter()
                .map(|e| HeldCommand {
                    cid: e.cid(),
                    opcode: e.opcode(),
                    nsid: e.nsid,
                    slba: u64::from(e.cdw10) | (u64::from(e.cdw11) << 32),
                })
                .collect()
        })
    }

    /// Execute and complete the command with id `cid` held on SQ `qid`
    /// now, ahead of the others (which stay held): a device completing out
    /// of order. False if no such command is held or the controller is not
    /// processing queues (disabled, fatal, gone).
    pub fn complete_held(&self, qid: u16, cid: u16) -> bool {
        self.lock().complete_held(qid, cid)
    }

    /// Post a completion entry with `status` for command id `cid` on the
    /// CQ of SQ `qid` without any command behind it: what a misbehaving
    /// device does when it completes a command twice or invents one. The
    /// entry carries the SQ's current head and is posted like any other
    /// (it waits if the CQ is full). False if there is no such SQ or the
    /// controller is not processing queues.
    pub fn post_completion(&self, qid: u16, cid: u16, status: impl Into<Status>) -> bool {
        let done = state::Done {
            status: status.into(),
            result: 0,
        };
        self.lock().post_stray(qid, cid, done)
    }

    /// Complete the next I/O command with `opcode` (on any I/O queue) with
    /// `status` instead of executing it. Calls queue up.
    pub fn fail_next(&self, opcode: u8, status: impl Into<Status>) {
        self.lock()
            .faults
            .fail_next
            .push_back((QueueKind::Io, opcode, status.into()));
    }

    /// Like [`fail_next`](Self::fail_next) for the next admin command with `opcode`.
    pub fn fail_next_admin(&self, opcode: u8, status: impl Into<Status>) {
        self.lock()
            .faults
            .fail_next
            .push_back((QueueKind::Admin, opcode, status.into()));
    }

    /// Set CSTS.CFS (controller fatal status). Doorbells are ignored from
    /// now on; a controller reset (CC.EN 1→0) clears it.
    pub fn set_fatal(&self) {
        self.lock().fatal("injected by set_fatal()");
    }

    /// Surprise removal: from now on every register read returns all ones
    /// and register and doorbell writes are dropped. DMA regions keep
    /// working (they are host memory).
    pub fn device_gone(&self) {
        self.lock().faults.device_gone = true;
    }

    /// Raise an asynchronous event, as a controller does: `event_type`
    /// (0 error, 1 SMART/health, 2 notice, ...), `info` and the log page
    /// that says more. It completes an outstanding Asynchronous Event
    /// Request at once, or waits for one; an event of a type already
    /// reported waits until the host reads that type's log page.
    pub fn raise_event(&self, event_type: u8, info: u8, log_page: u8) {
        let mut s = self.lock();
        let enabled = match event_type & 7 {
            1 => s.async_event_config & 0xff != 0,
            2 if info == 0 => s.async_event_config & (1 << 8) != 0,
            _ => true,
        };
        if !enabled {
            s.stats.events_not_enabled += 1;
            return;
        }
        let dw0 = u32::from(event_type & 7) | (u32::from(info) << 8) | (u32::from(log_page) << 16);
        s.pending_events.push_back((event_type & 7, dw0));
        if s.running && s.csts & state::CSTS_CFS == 0 {
            s.deliver_events();
        }
    }

    /// Set the SMART critical warning bits and raise the SMART/health
    /// event that reports them (what QEMU's `smart_critical_warning`
    /// property does): info 0 (reliability), log page 02h.
    pub fn set_critical_warning(&self, bits: u8) {
        self.lock().critical_warning = bits;
        self.raise_event(1, 0, 0x02);
    }

    /// Change namespace `nsid`'s size to `blocks` (sparse or null
    /// backing; a dense one can only shrink) and report it as a
    /// namespace-attribute-changed notice (log page 04h lists it).
    pub fn resize_namespace(&self, nsid: u32, blocks: u64) -> bool {
        {
            let mut s = self.lock();
            let Some(ns) = nsid
                .checked_sub(1)
                .and_then(|i| s.namespaces.get_mut(i as usize))
            else {
                return false;
            };
            if !ns.resize(blocks) {
                return false;
            }
            if !s.changed_namespaces.contains(&nsid) {
                s.changed_namespaces.push(nsid);
            }
        }
        self.raise_event(2, 0x00, 0x04);
        true
    }

    /// Detach namespace `nsid` (it becomes inactive: I/O to it fails with
    /// Invalid Namespace) and report it as a namespace-attribute-changed
    /// notice.
    pub fn detach_namespace(&self, nsid: u32) -> bool {
        {
            let mut s = self.lock();
            let Some(ns) = nsid
                .checked_sub(1)
                .and_then(|i| s.namespaces.get_mut(i as usize))
            else {
                return false;
            };
            ns.attached = false;
            if !s.changed_namespaces.contains(&nsid) {
                s.changed_namespaces.push(nsid);
            }
        }
        self.raise_event(2, 0x00, 0x04);
        true
    }

    /// Asynchronous Event Requests the controller holds.
    pub fn aers_outstanding(&self) -> usize {
        self.lock().aers.len()
    }

    /// Removal the platform announces (hot-unplug, or the kernel taking the
    /// device back, as VFIO's request interrupt says): the device goes
    /// ([`ModelController::device_gone`]), then the hook the driver
    /// registered with `Hardware::watch_removal` is called, from this
    /// thread. Returns whether a hook was registered.
    pub fn remove_device(&self) -> bool {
        self.device_gone();
        let hook = self
            .shared
            .on_removal
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        match hook {
            Some(f) => {
                f();
                true
            }
            None => false,
        }
    }

    /// While true, CC.EN 1→0 is stored in CC but ignored: RDY stays set and
    /// queues keep running (and may still DMA), so a driver that frees
    /// memory after a disable it could not confirm gets caught.
    pub fn ignore_disable(&self, ignore: bool) {
        self.lock().faults.ignore_disable = ignore;
    }

    /// Make the next `n` calls to `alloc_dma` fail.
    pub fn fail_dma_allocs(&self, n: u32) {
        self.lock().faults.dma_alloc_failures = n;
    }

    // ----- observation --------------------------------------------------------

    /// A snapshot of all counters.
    pub fn stats(&self) -> ModelStats {
        let s = self.lock();
        let mut st = s.stats.clone();
        st.dma_errors = s.dma.errors;
        st.dma_use_after_free = s.dma.use_after_free;
        st
    }

    /// DMA regions allocated and not yet dropped.
    pub fn dma_regions_live(&self) -> usize {
        self.lock().dma.live_regions()
    }

    /// DMA accesses (by any command, queue fetch or completion) to a region
    /// that had been freed. Tests assert this is 0.
    pub fn dma_use_after_free(&self) -> u64 {
        self.lock().dma.use_after_free
    }

    /// The first 256 DMA faults, oldest first.
    pub fn dma_fault_log(&self) -> Vec<DmaFault> {
        self.lock().dma.faults.clone()
    }

    /// CSTS without counting a register read or advancing delays.
    pub fn peek_csts(&self) -> Csts {
        Csts(self.lock().csts)
    }

    /// Why the last CC.EN 0→1 was refused, if it was.
    pub fn enable_error(&self) -> Option<String> {
        self.lock().enable_error.clone()
    }

    /// The controller is processing queues (enabled, as it sees itself).
    pub fn is_running(&self) -> bool {
        self.lock().running
    }

    /// IDs of the I/O submission and completion queues that exist.
    pub fn io_queues(&self) -> (Vec<u16>, Vec<u16>) {
        let s = self.lock();
        let sqs = s.sqs.keys().copied().filter(|&q| q != 0).collect();
        let cqs = s.cqs.keys().copied().filter(|&q| q != 0).collect();
        (sqs, cqs)
    }

    /// Number of Queues granted by Set Features (SQs, CQs), if it was set.
    pub fn granted_queues(&self) -> Option<(u16, u16)> {
        self.lock().granted_queues
    }

    /// Volatile write cache enabled (feature 06h).
    pub fn write_cache_enabled(&self) -> bool {
        self.lock().wce
    }

    // ----- namespace contents -----------------------------------------------

    /// Logical block size of namespace `nsid`. Panics if it does not exist.
    pub fn block_size(&self, nsid: u32) -> usize {
        let s = self.lock();
        s.namespaces[Self::ns_index(&s, nsid)].block_size
    }

    fn ns_index(s: &Inner, nsid: u32) -> usize {
        let i = nsid.wrapping_sub(1) as usize;
        assert!(i < s.namespaces.len(), "model: no namespace {nsid}");
        i
    }

    /// `count` blocks of namespace `nsid` from `lba`. Panics if out of range.
    pub fn read_blocks(&self, nsid: u32, lba: u64, count: u64) -> Vec<u8> {
        let s = self.lock();
        let ns = &s.namespaces[Self::ns_index(&s, nsid)];
        assert!(
            ns.in_range(lba, count),
            "model: blocks {lba}+{count} out of range"
        );
        let mut v = vec![0u8; count as usize * ns.block_size];
        ns.read(lba, &mut v);
        v
    }

    /// Store `data` (a whole number of blocks) at `lba` of namespace `nsid`.
    /// Panics if out of range.
    pub fn write_blocks(&self, nsid: u32, lba: u64, data: &[u8]) {
        let mut s = self.lock();
        let i = Self::ns_index(&s, nsid);
        let ns = &mut s.namespaces[i];
        assert!(
            data.len() % ns.block_size == 0,
            "model: not a whole number of blocks"
        );
        let count = (data.len() / ns.block_size) as u64;
        assert!(
            ns.in_range(lba, count),
            "model: blocks {lba}+{count} out of range"
        );
        ns.write(lba, data);
    }

    /// Blocks of namespace `nsid` that hold data (sparse backing: non-zero
    /// blocks; other backings: the namespace size).
    pub fn stored_blocks(&self, nsid: u32) -> u64 {
        let s = self.lock();
        s.namespaces[Self::ns_index(&s, nsid)].used_blocks()
    }
}

/// A doorbell of a [`ModelController`]; ringing it runs the controller.
pub struct ModelDoorbell {
    shared: Arc<Shared>,
    target: DbTarget,
}

impl std::fmt::Debug for ModelDoorbell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ModelDoorbell({:?})", self.target)
    }
}

impl Doorbell for ModelDoorbell {
    fn ring(&mut self, value: u32) {
        self.shared.lock().ring(self.target, value);
    }
}

// SAFETY: the model device reads and writes host memory only through its
// DMA table, which holds exactly the live regions `alloc_dma` handed out.
#[allow(unsafe_code)]
unsafe impl Hardware for ModelController {
    type Dma = ModelDma;
    type Doorbell = ModelDoorbell;
    type DeviceMem = nvme_core::NoDeviceMemory;
    type Info = ();
    fn info(&self) {}

    fn read32(&self, offset: usize) -> u32 {
        self.lock().read32(offset)
    }

    fn read64(&self, offset: usize) -> u64 {
        self.lock().read64(offset)
    }

    fn write32(&self, offset: usize, value: u32) {
        self.lock().write32(offset, value);
    }

    fn write64(&self, offset: usize, value: u64) {
        self.lock().write64(offset, value);
    }

    fn doorbell(&self, off: usize) -> Result<ModelDoorbell, HwError> {
        let target = self.lock().decode_doorbell(off).ok_or_else(|| {
            HwError::msg(format!(
                "model: no doorbell at BAR0 offset {off:#x} (doorbells start at {:#x})",
                offset::DOORBELLS
            ))
        })?;
        Ok(ModelDoorbell {
            shared: Arc::clone(&self.shared),
            target,
        })
    }

    fn map_device_memory(
        &self,
        bar: u8,
        _offset: u64,
        _len: u64,
    ) -> Result<nvme_core::NoDeviceMemory, HwError> {
        Err(HwError::msg(format!(
            "the model has no memory BAR {bar} (no CMB)"
        )))
    }

    fn bar_address(&self, bar: u8) -> Result<u64, HwError> {
        Err(HwError::msg(format!("the model has no BAR {bar} address")))
    }

    fn alloc_dma(&self, len: usize) -> Result<ModelDma, HwError> {
        {
            let mut s = self.lock();
            if s.faults.dma_alloc_failures > 0 {
                s.faults.dma_alloc_failures -= 1;
                return Err(HwError::msg(format!(
                    "model: injected DMA allocation failure ({len} bytes)"
                )));
            }
        }
        let dma = ModelDma::alloc(&self.shared, len).ok_or_else(|| {
            HwError::msg(format!("model: cannot allocate {len} bytes of DMA memory"))
        })?;
        self.lock().stats.dma_allocs += 1;
        Ok(dma)
    }

    fn set_bus_master(&self, enable: bool) -> Result<(), HwError> {
        let mut s = self.lock();
        if s.faults.device_gone {
            return Err(HwError::msg("model: the device is gone"));
        }
        s.dma.bus_master = enable;
        Ok(())
    }

    fn watch_removal(&self, on_removal: Box<dyn Fn() + Send + Sync + 'static>) {
        *self
            .shared
            .on_removal
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(on_removal);
    }

    fn delay_us(&self, micros: u64) {
        let real = {
            let mut s = self.lock();
            s.stats.delay_us_total += micros;
            s.cfg.real_delays
        };
        if real {
            std::thread::sleep(std::time::Duration::from_micros(micros));
        } else {
            std::thread::yield_now();
        }
    }
}
