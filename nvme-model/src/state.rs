//! Controller state behind the model lock: registers, enable/disable and
//! shutdown, queues, doorbells, fetching commands and posting completions.

use std::collections::{BTreeMap, VecDeque};

use nvme_core::cmd::SubmissionEntry;
use nvme_core::regs::{offset, Aqa, Cap, Cc};

use super::dma::DmaTable;
use super::faults::{Faults, ModelStats, QueueKind, Status};
use super::namespace::Namespace;
use super::prp::{self, Segment};
use super::{admin, io, ModelConfig};

/// CSTS bits.
pub(crate) const CSTS_RDY: u32 = 1 << 0;
pub(crate) const CSTS_CFS: u32 = 1 << 1;
const CSTS_SHST_MASK: u32 = 3 << 2;
const SHST_OCCURRING: u32 = 1 << 2;
const SHST_COMPLETE: u32 = 2 << 2;

/// Size of a submission / completion queue entry.
pub(crate) const SQE_SIZE: u64 = 64;
pub(crate) const CQE_SIZE: u64 = 16;

/// A submission queue.
pub(crate) struct Sq {
    pub base: u64,
    pub size: u16,
    pub head: u16,
    pub tail: u16,
    pub cqid: u16,
    /// Fetched while `hold_completions` was on; executed on release.
    pub held: VecDeque<SubmissionEntry>,
}

/// A completion queue.
pub(crate) struct Cq {
    pub base: u64,
    pub size: u16,
    pub head: u16,
    pub tail: u16,
    /// Phase tag the next entry is written with.
    pub phase: bool,
    /// Completions waiting for room (CQ full).
    pub pending: VecDeque<Pending>,
}

impl Cq {
    fn is_full(&self) -> bool {
        (self.tail + 1) % self.size == self.head
    }
}

/// A completion not yet written to CQ memory.
#[derive(Copy, Clone, Debug)]
pub(crate) struct Pending {
    result: u32,
    sq_head: u16,
    sq_id: u16,
    cid: u16,
    status: Status,
}

/// The result of executing a command.
#[derive(Copy, Clone, Debug)]
pub(crate) struct Done {
    pub status: Status,
    pub result: u32,
}

impl Done {
    pub fn ok(result: u32) -> Self {
        Done {
            status: Status::SUCCESS,
            result,
        }
    }
    pub fn err(status: Status) -> Self {
        Done { status, result: 0 }
    }
}

impl From<Status> for Done {
    fn from(s: Status) -> Self {
        Done::err(s)
    }
}

/// Whether a command completes now.
pub(crate) enum Exec {
    Complete(Done),
    /// Completes later, or never (Asynchronous Event Request).
    Deferred,
}

/// Lifetime counters for the SMART / Health log.
#[derive(Default)]
pub(crate) struct Health {
    pub bytes_read: u128,
    pub bytes_written: u128,
    pub host_reads: u128,
    pub host_writes: u128,
    pub media_errors: u128,
}

/// One Error Information log entry.
#[derive(Copy, Clone, Debug)]
pub(crate) struct ErrorRecord {
    pub count: u64,
    pub sqid: u16,
    pub cid: u16,
    pub status: Status,
    pub lba: u64,
    pub nsid: u32,
}

/// A decoded doorbell offset.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum DbTarget {
    SqTail(u16),
    CqHead(u16),
}

/// Everything behind the model lock.
pub(crate) struct Inner {
    pub cfg: ModelConfig,
    pub cap: Cap,
    pub dma: DmaTable,
    pub faults: Faults,
    pub stats: ModelStats,
    pub namespaces: Vec<Namespace>,
    pub health: Health,
    pub error_log: VecDeque<ErrorRecord>,
    error_count: u64,

    // Registers.
    pub cc: u32,
    pub csts: u32,
    pub aqa: u32,
    pub asq: u64,
    pub acq: u64,
    intms: u32,
    ready_countdown: Option<u32>,
    shutdown_countdown: Option<u32>,

    /// The controller is processing queues (CC.EN as the controller sees it).
    pub running: bool,
    /// Why the last enable failed, if it did.
    pub enable_error: Option<String>,
    /// Memory page size from CC.MPS at enable.
    pub page_size: usize,
    pub sqs: BTreeMap<u16, Sq>,
    pub cqs: BTreeMap<u16, Cq>,
    /// (SQs, CQs) granted by Set Features / Number of Queues (counts).
    pub granted_queues: Option<(u16, u16)>,
    /// Volatile write cache enabled.
    pub wce: bool,
    /// Asynchronous Event Requests outstanding (completed by events).
    pub aers: VecDeque<SubmissionEntry>,
    /// Events raised while no AER was outstanding or their type masked:
    /// (event type, completion DW0).
    pub pending_events: VecDeque<(u8, u32)>,
    /// Event types reported and not yet acknowledged by reading their log
    /// page (the controller reports no other event of that type until then).
    pub masked_events: Vec<u8>,
    /// SMART critical warning bits (SMART log byte 0).
    pub critical_warning: u8,
    /// Namespaces changed since the Changed Namespace List was last read.
    pub changed_namespaces: Vec<u32>,
    /// Asynchronous Event Configuration (Set Features 0Bh): which SMART
    /// warnings (bits 7:0) and notices (bit 8 namespace attribute) are
    /// reported; events not enabled are dropped, as a controller does.
    pub async_event_config: u32,
    /// Doorbell Buffer Config: IOVAs of the shadow doorbell page and the
    /// EventIdx page, once the host has set them (cleared by a reset).
    pub dbbuf: Option<(u64, u64)>,
}

impl Inner {
    pub fn new(cfg: ModelConfig) -> Self {
        let cap = cfg.cap();
        let namespaces = cfg.namespaces.iter().map(Namespace::new).collect();
        Inner {
            cap,
            dma: DmaTable::new(),
            faults: Faults::default(),
            stats: ModelStats::default(),
            namespaces,
            health: Health::default(),
            error_log: VecDeque::new(),
            error_count: 0,
            cc: 0,
            csts: 0,
            aqa: 0,
            asq: 0,
            acq: 0,
            intms: 0,
            ready_countdown: None,
            shutdown_countdown: None,
            running: false,
            enable_error: None,
            page_size: 4096,
            sqs: BTreeMap::new(),
            cqs: BTreeMap::new(),
            granted_queues: None,
            wce: cfg.vwc,
            aers: VecDeque::new(),
            pending_events: VecDeque::new(),
            masked_events: Vec::new(),
            critical_warning: 0,
            changed_namespaces: Vec::new(),
            async_event_config: 0,
            dbbuf: None,
            cfg,
        }
    }

    // ----- registers -------------------------------------------------------

    /// A register's value without side effects (no counting, no countdowns).
    pub fn peek32(&self, off: usize) -> u32 {
        match off {
            0x00 => self.cap.0 as u32,
            0x04 => (self.cap.0 >> 32) as u32,
            offset::VS => self.cfg.version,
            offset::INTMS | offset::INTMC => self.intms,
            offset::CC => self.cc,
            offset::CSTS => self.csts,
            offset::AQA => self.aqa,
            offset::ASQ => self.asq as u32,
            0x2c => (self.asq >> 32) as u32,
            offset::ACQ => self.acq as u32,
            0x34 => (self.acq >> 32) as u32,
            // CMBLOC, CMBSZ, NSSR, doorbells (write-only) and reserved space.
            _ => 0,
        }
    }

    pub fn read32(&mut self, off: usize) -> u32 {
        self.stats.register_reads += 1;
        if self.faults.device_gone {
            return u32::MAX;
        }
        if off == offset::CSTS {
            self.tick_csts();
        }
        self.peek32(off)
    }

    pub fn read64(&mut self, off: usize) -> u64 {
        self.stats.register_reads += 1;
        if self.faults.device_gone {
            return u64::MAX;
        }
        if off == offset::CSTS {
            self.tick_csts();
        }
        u64::from(self.peek32(off)) | (u64::from(self.peek32(off + 4)) << 32)
    }

    pub fn write32(&mut self, off: usize, v: u32) {
        if off >= offset::DOORBELLS {
            match self.decode_doorbell(off) {
                Some(t) => self.ring(t, v),
                None => self.stats.ignored_doorbell_writes += 1,
            }
            return;
        }
        self.stats.register_writes += 1;
        if self.faults.device_gone {
            return;
        }
        self.store32(off, v);
    }

    pub fn write64(&mut self, off: usize, v: u64) {
        self.stats.register_writes += 1;
        if self.faults.device_gone {
            return;
        }
        match off {
            offset::ASQ => self.asq = v,
            offset::ACQ => self.acq = v,
            _ => {
                self.store32(off, v as u32);
                self.store32(off + 4, (v >> 32) as u32);
            }
        }
    }

    fn store32(&mut self, off: usize, v: u32) {
        match off {
            offset::INTMS => self.intms |= v,
            offset::INTMC => self.intms &= !v,
            offset::CC => self.write_cc(v),
            offset::AQA => self.aqa = v,
            offset::ASQ => self.asq = (self.asq & !0xffff_ffff) | u64::from(v),
            0x2c => self.asq = (self.asq & 0xffff_ffff) | (u64::from(v) << 32),
            offset::ACQ => self.acq = (self.acq & !0xffff_ffff) | u64::from(v),
            0x34 => self.acq = (self.acq & 0xffff_ffff) | (u64::from(v) << 32),
            _ => {} // read-only or reserved
        }
    }

    /// A CSTS read: advance the "becomes ready / shutdown completes after N
    /// reads" countdowns.
    fn tick_csts(&mut self) {
        if let Some(n) = self.ready_countdown {
            if n == 0 {
                self.csts |= CSTS_RDY;
                self.ready_countdown = None;
            } else {
                self.ready_countdown = Some(n - 1);
            }
        }
        if let Some(n) = self.shutdown_countdown {
            if n == 0 {
                self.csts = (self.csts & !CSTS_SHST_MASK) | SHST_COMPLETE;
                self.shutdown_countdown = None;
            } else {
                self.shutdown_countdown = Some(n - 1);
            }
        }
    }

    fn write_cc(&mut self, v: u32) {
        let old = self.cc;
        self.cc = v;
        let (was_en, en) = (old & 1 == 1, v & 1 == 1);
        if en && !was_en {
            if self.running {
                // A disable was ignored earlier; start over from a clean state.
                self.reset();
            }
            self.enable();
        } else if was_en && !en {
            if self.dma.bus_master && self.sqs.keys().any(|&q| q != 0) {
                self.stats.disables_while_mastering += 1;
            }
            if self.faults.ignore_disable {
                tracing::debug!("model: ignoring CC.EN=0 (fault injection)");
            } else {
                self.reset();
                self.csts = 0;
            }
        }
        let (old_shn, shn) = ((old >> 14) & 3, (v >> 14) & 3);
        if shn != 0 && old_shn == 0 {
            self.shutdown_countdown = None;
            if self.cfg.shutdown_delay_reads == 0 {
                self.csts = (self.csts & !CSTS_SHST_MASK) | SHST_COMPLETE;
            } else {
                self.csts = (self.csts & !CSTS_SHST_MASK) | SHST_OCCURRING;
                self.shutdown_countdown = Some(self.cfg.shutdown_delay_reads);
            }
        } else if shn == 0 && old_shn != 0 {
            self.shutdown_countdown = None;
            self.csts &= !CSTS_SHST_MASK;
        }
    }

    /// Why CC / AQA / ASQ / ACQ cannot be used to enable, if they cannot.
    fn enable_check(&self) -> Result<(), String> {
        let cc = Cc::from_bits(self.cc);
        if cc.css != 0 {
            return Err(format!("CC.CSS {} is not the NVM command set", cc.css));
        }
        if cc.mps < self.cap.mpsmin() || cc.mps > self.cap.mpsmax() {
            return Err(format!(
                "CC.MPS {} outside CAP.MPSMIN..=MPSMAX {}..={}",
                cc.mps,
                self.cap.mpsmin(),
                self.cap.mpsmax()
            ));
        }
        if cc.iosqes != 6 || cc.iocqes != 4 {
            return Err(format!(
                "CC.IOSQES/IOCQES {}/{} (must be 6/4)",
                cc.iosqes, cc.iocqes
            ));
        }
        if cc.ams != 0 {
            return Err(format!("CC.AMS {} (only round robin)", cc.ams));
        }
        let aqa = Aqa::from_bits(self.aqa);
        if aqa.sq_entries < 2 || aqa.cq_entries < 2 {
            return Err(format!("AQA {aqa:?}: admin queues need at least 2 entries"));
        }
        let page_mask = (1u64 << (12 + cc.mps)) - 1;
        if self.asq == 0 || self.asq & page_mask != 0 {
            return Err(format!("ASQ {:#x} is zero or not page aligned", self.asq));
        }
        if self.acq == 0 || self.acq & page_mask != 0 {
            return Err(format!("ACQ {:#x} is zero or not page aligned", self.acq));
        }
        Ok(())
    }

    fn enable(&mut self) {
        if let Err(why) = self.enable_check() {
            tracing::warn!("model: enable refused: {why}");
            self.enable_error = Some(why);
            self.csts |= CSTS_CFS;
            return;
        }
        self.enable_error = None;
        let cc = Cc::from_bits(self.cc);
        let aqa = Aqa::from_bits(self.aqa);
        self.page_size = 1 << (12 + cc.mps);
        self.cqs.insert(0, Cq::new(self.acq, aqa.cq_entries));
        self.sqs.insert(0, Sq::new(self.asq, aqa.sq_entries, 0));
        self.running = true;
        if self.cfg.ready_delay_reads == 0 {
            self.csts |= CSTS_RDY;
        } else {
            self.ready_countdown = Some(self.cfg.ready_delay_reads);
        }
    }

    /// Controller reset: every queue and every held or deferred command is
    /// gone. Registers other than CSTS keep their values.
    fn reset(&mut self) {
        self.sqs.clear();
        self.cqs.clear();
        self.running = false;
        self.granted_queues = None;
        self.wce = self.cfg.vwc;
        // Outstanding AERs end with the reset; raised events stay.
        self.aers.clear();
        self.masked_events.clear();
        self.async_event_config = 0;
        self.dbbuf = None;
        self.ready_countdown = None;
        self.shutdown_countdown = None;
    }

    /// Set CSTS.CFS: the controller stops processing doorbells.
    pub fn fatal(&mut self, why: &str) {
        tracing::warn!("model: controller fatal status: {why}");
        self.csts |= CSTS_CFS;
    }

    // ----- doorbells -------------------------------------------------------

    /// Which doorbell lives at `off`, if any (stride from CAP.DSTRD; queues
    /// 0..=max_io_queue_pairs have doorbells, like QEMU's BAR).
    pub fn decode_doorbell(&self, off: usize) -> Option<DbTarget> {
        let rel = off.checked_sub(offset::DOORBELLS)?;
        let stride = self.cap.doorbell_stride();
        if rel % stride != 0 {
            return None;
        }
        let idx = rel / stride;
        let qid = u16::try_from(idx / 2).ok()?;
        if qid > self.cfg.max_io_queue_pairs {
            return None;
        }
        Some(if idx % 2 == 0 {
            DbTarget::SqTail(qid)
        } else {
            DbTarget::CqHead(qid)
        })
    }

    pub fn ring(&mut self, target: DbTarget, value: u32) {
        match target {
            DbTarget::SqTail(q) => *self.stats.sq_doorbell_writes.entry(q).or_default() += 1,
            DbTarget::CqHead(q) => *self.stats.cq_doorbell_writes.entry(q).or_default() += 1,
        }
        if self.faults.device_gone || !self.running || self.csts & CSTS_CFS != 0 {
            self.stats.ignored_doorbell_writes += 1;
            return;
        }
        match target {
            DbTarget::SqTail(qid) => {
                let Some(sq) = self.sqs.get_mut(&qid) else {
                    // As QEMU: logged and ignored (a host may ring a queue
                    // a reset just deleted, before it learns of the reset).
                    self.stats.doorbells_without_queue += 1;
                    return;
                };
                if value >= u32::from(sq.size) {
                    let size = sq.size;
                    return self.invalid_doorbell(format!("SQ {qid} tail {value} >= size {size}"));
                }
                sq.tail = value as u16;
                if qid == 0 {
                    // As QEMU: the admin queue's MMIO value is also the
                    // shadow value (hosts that never use the admin shadow).
                    self.store_shadow(DbTarget::SqTail(0), false, value);
                }
                self.process_sq(qid);
            }
            DbTarget::CqHead(qid) => {
                let Some(cq) = self.cqs.get_mut(&qid) else {
                    self.stats.doorbells_without_queue += 1;
                    return;
                };
                let size = u32::from(cq.size);
                let outstanding = (u32::from(cq.tail) + size - u32::from(cq.head)) % size;
                let advance = (value + size - u32::from(cq.head)) % size;
                if value >= size || advance > outstanding {
                    let (head, tail) = (cq.head, cq.tail);
                    return self.invalid_doorbell(format!(
                        "CQ {qid} head {value}: not in the posted range (head {head}, tail {tail}, size {size})"
                    ));
                }
                cq.head = value as u16;
                if qid == 0 {
                    self.store_shadow(DbTarget::CqHead(0), false, value);
                }
                self.drain_cq(qid);
            }
        }
    }

    /// An invalid doorbell write. The spec lets a controller report this
    /// through an Asynchronous Event (Invalid Doorbell Write Value) or treat
    /// it as fatal; the model sets CSTS.CFS so the mistake cannot go unseen.
    fn invalid_doorbell(&mut self, why: String) {
        self.stats.invalid_doorbell_writes += 1;
        self.fatal(&format!("invalid doorbell write: {why}"));
    }

    // ----- command processing ---------------------------------------------

    /// Fetch every entry between head and tail of SQ `qid` and execute it
    /// (or hold it).
    ///
    /// With shadow doorbells this runs only when an MMIO doorbell kicks it,
    /// as in QEMU: it then takes the tail from the shadow slot before each
    /// fetch and, after each command, publishes the tail it has consumed up
    /// to as the SQ's EventIdx (the host rings MMIO again only once its new
    /// tail passes that value).
    fn process_sq(&mut self, qid: u16) {
        loop {
            if !self.refresh_sq_tail(qid) {
                return;
            }
            let addr = {
                let Some(sq) = self.sqs.get_mut(&qid) else {
                    return;
                };
                if sq.head == sq.tail {
                    break;
                }
                let addr = sq.base + u64::from(sq.head) * SQE_SIZE;
                sq.head = (sq.head + 1) % sq.size;
                addr
            };
            let mut raw = [0u8; SQE_SIZE as usize];
            if self.dma.read(addr, &mut raw).is_err() {
                return self.fatal(&format!("SQ {qid}: fetching an entry at {addr:#x} faulted"));
            }
            let sqe = sqe_from_bytes(&raw);
            let counters = if qid == 0 {
                &mut self.stats.admin_commands
            } else {
                &mut self.stats.io_commands
            };
            *counters.entry(sqe.opcode()).or_default() += 1;
            if self.faults.held_sqs.contains(&qid) {
                if let Some(sq) = self.sqs.get_mut(&qid) {
                    sq.held.push_back(sqe);
                }
            } else {
                self.run(qid, sqe);
            }
            if let Some(tail) = self.sqs.get(&qid).map(|sq| sq.tail) {
                self.store_shadow(DbTarget::SqTail(qid), true, u32::from(tail));
            }
        }
        // Completions waiting for room may be postable now: the host may
        // have moved the CQ head in its shadow slot only.
        if let Some(cqid) = self.sqs.get(&qid).map(|sq| sq.cqid) {
            self.drain_cq(cqid);
        }
    }

    // ----- shadow doorbells (Doorbell Buffer Config) ----------------------

    /// Addresses of `target`'s shadow doorbell slot and EventIdx slot.
    fn shadow_slots(&self, target: DbTarget) -> Option<(u64, u64)> {
        let (dbs, eis) = self.dbbuf?;
        let idx = match target {
            DbTarget::SqTail(q) => 2 * u64::from(q),
            DbTarget::CqHead(q) => 2 * u64::from(q) + 1,
        };
        let off = idx * self.cap.doorbell_stride() as u64;
        Some((dbs + off, eis + off))
    }

    /// The host's value in `target`'s shadow slot, if shadow doorbells are
    /// on. A slot the model cannot read is fatal.
    fn load_shadow(&mut self, target: DbTarget) -> Option<u32> {
        let (db, _) = self.shadow_slots(target)?;
        let mut v = [0u8; 4];
        if self.dma.read(db, &mut v).is_err() {
            self.fatal(&format!(
                "{target:?}: reading the shadow doorbell at {db:#x} faulted"
            ));
            return None;
        }
        self.stats.shadow_reads += 1;
        Some(u32::from_le_bytes(v))
    }

    /// Write `v` to `target`'s EventIdx slot (`eventidx`) or shadow slot.
    fn store_shadow(&mut self, target: DbTarget, eventidx: bool, v: u32) {
        let Some((db, ei)) = self.shadow_slots(target) else {
            return;
        };
        let addr = if eventidx { ei } else { db };
        if self.dma.write(addr, &v.to_le_bytes()).is_err() {
            self.fatal(&format!(
                "{target:?}: writing the doorbell buffer at {addr:#x} faulted"
            ));
        }
    }

    /// Take SQ `qid`'s tail from its shadow slot (shadow doorbells on). An
    /// out-of-range value is an invalid doorbell write; false then.
    fn refresh_sq_tail(&mut self, qid: u16) -> bool {
        let Some(v) = self.load_shadow(DbTarget::SqTail(qid)) else {
            return self.csts & CSTS_CFS == 0;
        };
        let Some(sq) = self.sqs.get_mut(&qid) else {
            return false;
        };
        if v >= u32::from(sq.size) {
            let size = sq.size;
            self.invalid_doorbell(format!("SQ {qid} shadow tail {v} >= size {size}"));
            return false;
        }
        sq.tail = v as u16;
        true
    }

    /// Take CQ `cqid`'s head from its shadow slot (shadow doorbells on),
    /// checked like an MMIO head write. False if it was invalid.
    fn refresh_cq_head(&mut self, cqid: u16) -> bool {
        let Some(v) = self.load_shadow(DbTarget::CqHead(cqid)) else {
            return self.csts & CSTS_CFS == 0;
        };
        let Some(cq) = self.cqs.get_mut(&cqid) else {
            return false;
        };
        let size = u32::from(cq.size);
        let outstanding = (u32::from(cq.tail) + size - u32::from(cq.head)) % size;
        let advance = (v + size - u32::from(cq.head)) % size;
        if v >= size || advance > outstanding {
            let (head, tail) = (cq.head, cq.tail);
            self.invalid_doorbell(format!(
                "CQ {cqid} shadow head {v}: not in the posted range (head {head}, tail {tail}, size {size})"
            ));
            return false;
        }
        cq.head = v as u16;
        true
    }

    /// Doorbell Buffer Config: from now on every queue's doorbells have
    /// shadow slots. As QEMU, seed the slots of the queues that exist with
    /// their current values; queues created later get no seeding.
    pub fn set_dbbuf(&mut self, dbs: u64, eis: u64) {
        self.dbbuf = Some((dbs, eis));
        let sqs: Vec<(u16, u16)> = self.sqs.iter().map(|(&q, sq)| (q, sq.tail)).collect();
        let cqs: Vec<(u16, u16)> = self.cqs.iter().map(|(&q, cq)| (q, cq.head)).collect();
        for (q, tail) in sqs {
            self.store_shadow(DbTarget::SqTail(q), false, u32::from(tail));
        }
        for (q, head) in cqs {
            self.store_shadow(DbTarget::CqHead(q), false, u32::from(head));
        }
    }

    /// Execute one fetched command and post its completion.
    pub fn run(&mut self, sqid: u16, sqe: SubmissionEntry) {
        let kind = if sqid == 0 {
            QueueKind::Admin
        } else {
            QueueKind::Io
        };
        let done = if let Some(status) = self.faults.take_failure(kind, sqe.opcode()) {
            self.stats.injected_failures += 1;
            Done::err(status)
        } else {
            match kind {
                QueueKind::Admin => match admin::execute(self, &sqe) {
                    Exec::Complete(d) => d,
                    Exec::Deferred => return,
                },
                QueueKind::Io => io::execute(self, &sqe),
            }
        };
        self.complete(sqid, &sqe, done);
    }

    /// Execute everything held on SQ `qid` (hold switched off).
    pub fn release_held(&mut self, qid: u16) {
        let held = match self.sqs.get_mut(&qid) {
            Some(sq) => std::mem::take(&mut sq.held),
            None => return,
        };
        for sqe in held {
            self.run(qid, sqe);
        }
    }

    /// The controller processes queues (what a doorbell needs to do
    /// anything): running, not fatal, not gone.
    pub fn processing(&self) -> bool {
        !self.faults.device_gone && self.running && self.csts & CSTS_CFS == 0
    }

    /// Execute and complete the first command held on SQ `qid` with
    /// command id `cid`, ahead of the others.
    pub fn complete_held(&mut self, qid: u16, cid: u16) -> bool {
        if !self.processing() {
            return false;
        }
        let Some(sq) = self.sqs.get_mut(&qid) else {
            return false;
        };
        let Some(i) = sq.held.iter().position(|e| e.cid() == cid) else {
            return false;
        };
        let sqe = sq.held.remove(i).expect("position is in range");
        self.run(qid, sqe);
        true
    }

    /// Post a completion entry for `cid` on the CQ of SQ `sqid`, whether
    /// or not such a command was submitted.
    pub fn post_stray(&mut self, sqid: u16, cid: u16, done: Done) -> bool {
        if !self.processing() {
            return false;
        }
        let Some(sq) = self.sqs.get(&sqid) else {
            return false;
        };
        let p = Pending {
            result: done.result,
            sq_head: sq.head,
            sq_id: sqid,
            cid,
            status: done.status,
        };
        let cqid = sq.cqid;
        self.stats.injected_completions += 1;
        self.post(cqid, p);
        true
    }

    /// Post the completion of `sqe` from SQ `sqid`.
    pub fn complete(&mut self, sqid: u16, sqe: &SubmissionEntry, done: Done) {
        let Some(sq) = self.sqs.get(&sqid) else {
            return;
        };
        let p = Pending {
            result: done.result,
            sq_head: sq.head,
            sq_id: sqid,
            cid: sqe.cid(),
            status: done.status,
        };
        let cqid = sq.cqid;
        if !done.status.is_success() {
            self.log_error(sqid, sqe, done.status);
        }
        self.post(cqid, p);
    }

    fn post(&mut self, cqid: u16, p: Pending) {
        if !self.refresh_cq_head(cqid) {
            return;
        }
        let Some(cq) = self.cqs.get_mut(&cqid) else {
            return;
        };
        if !cq.pending.is_empty() || cq.is_full() {
            cq.pending.push_back(p);
            self.stats.cq_full_stalls += 1;
            return;
        }
        self.write_completion(cqid, p);
    }

    /// Write `p` at the CQ tail (the caller checked there is room).
    fn write_completion(&mut self, cqid: u16, p: Pending) {
        let Some(cq) = self.cqs.get_mut(&cqid) else {
            return;
        };
        let addr = cq.base + u64::from(cq.tail) * CQE_SIZE;
        let phase = cq.phase;
        cq.tail += 1;
        if cq.tail == cq.size {
            cq.tail = 0;
            cq.phase = !cq.phase;
        }
        let dwords = [
            p.result,
            0,
            u32::from(p.sq_head) | (u32::from(p.sq_id) << 16),
            u32::from(p.cid) | (u32::from(p.status.to_field(phase)) << 16),
        ];
        match self.dma.write_cqe(addr, dwords) {
            Ok(()) => self.stats.completions_posted += 1,
            Err(_) => self.fatal(&format!("CQ {cqid}: writing an entry at {addr:#x} faulted")),
        }
    }

    fn drain_cq(&mut self, cqid: u16) {
        if !self.refresh_cq_head(cqid) {
            return;
        }
        loop {
            let Some(cq) = self.cqs.get_mut(&cqid) else {
                return;
            };
            if cq.is_full() {
                return;
            }
            let Some(p) = cq.pending.pop_front() else {
                return;
            };
            self.write_completion(cqid, p);
        }
    }

    fn log_error(&mut self, sqid: u16, sqe: &SubmissionEntry, status: Status) {
        if status == Status::ABORTED_SQ_DELETION {
            return;
        }
        if status.sct == 2 {
            self.health.media_errors += 1;
        }
        self.error_count += 1;
        let lba = if sqid != 0 {
            u64::from(sqe.cdw10) | (u64::from(sqe.cdw11) << 32)
        } else {
            0
        };
        self.error_log.push_front(ErrorRecord {
            count: self.error_count,
            sqid,
            cid: sqe.cid(),
            status,
            lba,
            nsid: sqe.nsid,
        });
        self.error_log
            .truncate(usize::from(self.cfg.error_log_entries) + 1);
    }

    pub fn error_count(&self) -> u64 {
        self.error_count
    }

    // ----- asynchronous events ------------------------------------------

    /// Complete outstanding AERs with pending events whose type is not
    /// masked (each delivered event masks its type until its log is read).
    pub fn deliver_events(&mut self) {
        while !self.aers.is_empty() {
            let Some(i) = self
                .pending_events
                .iter()
                .position(|(t, _)| !self.masked_events.contains(t))
            else {
                return;
            };
            let (ty, dw0) = self.pending_events.remove(i).expect("found above");
            let sqe = self.aers.pop_front().expect("not empty");
            self.masked_events.push(ty);
            self.stats.events_delivered += 1;
            self.complete(0, &sqe, Done::ok(dw0));
        }
    }

    // ----- helpers for command handlers -----------------------------------

    /// Largest data transfer in bytes (MDTS), `None` for no limit.
    pub fn max_transfer(&self) -> Option<usize> {
        (self.cfg.mdts != 0).then(|| self.cap.min_page_size() << self.cfg.mdts)
    }

    /// The PRP segments of `sqe`'s `len`-byte data buffer.
    pub fn data_segments(
        &mut self,
        sqe: &SubmissionEntry,
        len: usize,
    ) -> Result<Vec<Segment>, Status> {
        if (sqe.cdw0 >> 14) & 3 != 0 {
            return Err(Status::INVALID_FIELD); // PSDT: SGLs are not supported
        }
        prp::segments(&mut self.dma, self.page_size, sqe.prp1, sqe.prp2, len)
    }

    /// Copy `data` into `sqe`'s data buffer.
    pub fn send_to_host(&mut self, sqe: &SubmissionEntry, data: &[u8]) -> Result<(), Status> {
        let segs = self.data_segments(sqe, data.len())?;
        prp::to_host(&mut self.dma, &segs, data)
    }

    /// Copy `len` bytes from `sqe`'s data buffer.
    pub fn fetch_from_host(
        &mut self,
        sqe: &SubmissionEntry,
        len: usize,
    ) -> Result<Vec<u8>, Status> {
        let segs = self.data_segments(sqe, len)?;
        let mut v = vec![0; len];
        prp::from_host(&mut self.dma, &segs, &mut v)?;
        Ok(v)
    }

    /// Queue IDs I/O queue creation may use: 1..=this.
    pub fn io_qid_limit(&self, sq: bool) -> u16 {
        match self.granted_queues {
            Some((s, c)) => {
                if sq {
                    s
                } else {
                    c
                }
            }
            None => self.cfg.max_io_queue_pairs,
        }
    }
}

impl Sq {
    pub fn new(base: u64, size: u16, cqid: u16) -> Self {
        Sq {
            base,
            size,
            head: 0,
            tail: 0,
            cqid,
            held: VecDeque::new(),
        }
    }
}

impl Cq {
    pub fn new(base: u64, size: u16) -> Self {
        Cq {
            base,
            size,
            head: 0,
            tail: 0,
            phase: true,
            pending: VecDeque::new(),
        }
    }
}

/// Decode a 64-byte little-endian submission queue entry.
pub(crate) fn sqe_from_bytes(b: &[u8; 64]) -> SubmissionEntry {
    let d = |i: usize| u32::from_le_bytes(b[4 * i..4 * i + 4].try_into().expect("4 bytes"));
    let q = |i: usize| u64::from(d(i)) | (u64::from(d(i + 1)) << 32);
    SubmissionEntry {
        cdw0: d(0),
        nsid: d(1),
        cdw2: d(2),
        cdw3: d(3),
        mptr: q(4),
        prp1: q(6),
        prp2: q(8),
        cdw10: d(10),
        cdw11: d(11),
        cdw12: d(12),
        cdw13: d(13),
        cdw14: d(14),
        cdw15: d(15),
    }
}
