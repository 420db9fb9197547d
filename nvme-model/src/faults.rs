//! Completion statuses the model posts, fault-injection switches and the
//! counters tests read back.

use std::collections::{HashMap, HashSet, VecDeque};

use nvme_core::StatusCodeType;

/// A completion status as the model encodes it (SCT, SC, DNR).
///
/// Build one from the constants here, from [`Status::new`], or from the
/// `(StatusCodeType, u8)` pairs in [`nvme_core::NvmeStatus`].
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct Status {
    /// Status Code Type (3 bits).
    pub sct: u8,
    /// Status Code.
    pub sc: u8,
    /// Do Not Retry.
    pub dnr: bool,
    /// More: the Error Information log has more about this failure.
    pub more: bool,
}

impl Status {
    /// Successful Completion.
    pub const SUCCESS: Status = Status::new(0, 0x00);
    /// Invalid Command Opcode.
    pub const INVALID_OPCODE: Status = Status::new(0, 0x01).with_dnr();
    /// Invalid Field in Command.
    pub const INVALID_FIELD: Status = Status::new(0, 0x02).with_dnr();
    /// Data Transfer Error (what the model posts on an IOMMU-style DMA fault).
    pub const DATA_TRANSFER_ERROR: Status = Status::new(0, 0x04);
    /// Internal Error.
    pub const INTERNAL_ERROR: Status = Status::new(0, 0x06);
    /// Command Abort Requested.
    pub const ABORT_REQUESTED: Status = Status::new(0, 0x07);
    /// Command Aborted due to SQ Deletion.
    pub const ABORTED_SQ_DELETION: Status = Status::new(0, 0x08);
    /// Invalid Namespace or Format.
    pub const INVALID_NAMESPACE: Status = Status::new(0, 0x0b).with_dnr();
    /// Command Sequence Error.
    pub const COMMAND_SEQUENCE_ERROR: Status = Status::new(0, 0x0c).with_dnr();
    /// PRP Offset Invalid.
    pub const PRP_OFFSET_INVALID: Status = Status::new(0, 0x13).with_dnr();
    /// LBA Out of Range (NVM command set, SCT 0).
    pub const LBA_OUT_OF_RANGE: Status = Status::new(0, 0x80).with_dnr();
    /// Completion Queue Invalid.
    pub const CQ_INVALID: Status = Status::new(1, 0x00).with_dnr();
    /// Invalid Queue Identifier.
    pub const INVALID_QUEUE_ID: Status = Status::new(1, 0x01).with_dnr();
    /// Invalid Queue Size.
    pub const INVALID_QUEUE_SIZE: Status = Status::new(1, 0x02).with_dnr();
    /// Asynchronous Event Request Limit Exceeded.
    pub const AER_LIMIT_EXCEEDED: Status = Status::new(1, 0x05).with_dnr();
    /// Invalid Log Page.
    pub const INVALID_LOG_PAGE: Status = Status::new(1, 0x09).with_dnr();
    /// Invalid Queue Deletion.
    pub const INVALID_QUEUE_DELETION: Status = Status::new(1, 0x0c).with_dnr();
    /// Feature Identifier Not Saveable.
    pub const FEATURE_NOT_SAVEABLE: Status = Status::new(1, 0x0d).with_dnr();
    /// Write Fault (media error, for injection).
    pub const WRITE_FAULT: Status = Status::new(2, 0x80);
    /// Unrecovered Read Error (media error, for injection).
    pub const UNRECOVERED_READ_ERROR: Status = Status::new(2, 0x81);
    /// Compare Failure.
    pub const COMPARE_FAILURE: Status = Status::new(2, 0x85);

    /// A status with DNR clear.
    pub const fn new(sct: u8, sc: u8) -> Self {
        Status {
            sct,
            sc,
            dnr: false,
            more: false,
        }
    }
    /// The same status with DNR set.
    pub const fn with_dnr(self) -> Self {
        Status { dnr: true, ..self }
    }
    /// With the More bit: the Error Information log says more.
    pub const fn with_more(self) -> Self {
        Status { more: true, ..self }
    }
    /// SCT 0, SC 0.
    pub const fn is_success(self) -> bool {
        self.sct == 0 && self.sc == 0
    }
    /// The 16-bit status word of a completion entry, phase tag in bit 0.
    pub const fn to_field(self, phase: bool) -> u16 {
        (phase as u16)
            | ((self.sc as u16) << 1)
            | (((self.sct & 7) as u16) << 9)
            | ((self.more as u16) << 14)
            | ((self.dnr as u16) << 15)
    }
}

impl From<(StatusCodeType, u8)> for Status {
    fn from((sct, sc): (StatusCodeType, u8)) -> Self {
        Status::new(sct.raw(), sc)
    }
}

/// Which kind of queue a command arrived on (opcodes overlap between them).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum QueueKind {
    Admin,
    Io,
}

/// Switches set through the [`super::ModelController`] handle.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    /// SQ ids whose commands are fetched but not executed until released.
    pub held_sqs: HashSet<u16>,
    /// Queued one-shot failures, consumed first-match-first.
    pub fail_next: VecDeque<(QueueKind, u8, Status)>,
    /// Register reads return all ones; writes and doorbells are dropped.
    pub device_gone: bool,
    /// CC.EN 1 -> 0 is stored but the controller keeps running.
    pub ignore_disable: bool,
    /// The next this-many `alloc_dma` calls fail.
    pub dma_alloc_failures: u32,
}

impl Faults {
    /// Remove and return the injected status for this command, if any.
    pub fn take_failure(&mut self, kind: QueueKind, opcode: u8) -> Option<Status> {
        let i = self
            .fail_next
            .iter()
            .position(|&(k, op, _)| k == kind && op == opcode)?;
        self.fail_next.remove(i).map(|(_, _, s)| s)
    }
}

/// A command held on an SQ ([`super::ModelController::held_command_list`]).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct HeldCommand {
    /// Command identifier.
    pub cid: u16,
    /// Opcode.
    pub opcode: u8,
    /// Namespace ID.
    pub nsid: u32,
    /// CDW10–11 as a 64-bit value: the starting LBA of an I/O command that
    /// has one (Read, Write, Compare, Write Zeroes).
    pub slba: u64,
}

/// A snapshot of the model's counters ([`super::ModelController::stats`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ModelStats {
    /// Admin commands fetched, by opcode.
    pub admin_commands: HashMap<u8, u64>,
    /// I/O commands fetched, by opcode.
    pub io_commands: HashMap<u8, u64>,
    /// SQ tail doorbell writes (MMIO stores), by SQ id.
    pub sq_doorbell_writes: HashMap<u16, u64>,
    /// CQ head doorbell writes (MMIO stores), by CQ id.
    pub cq_doorbell_writes: HashMap<u16, u64>,
    /// Doorbell writes dropped (controller disabled, fatal, or device gone).
    pub ignored_doorbell_writes: u64,
    /// Invalid doorbell writes (value out of range); each sets CSTS.CFS.
    pub invalid_doorbell_writes: u64,
    /// Doorbell writes for a queue that does not exist; ignored, as QEMU
    /// does (the spec allows an Invalid Doorbell Register event).
    pub doorbells_without_queue: u64,
    /// Register reads through `read32`/`read64`.
    pub register_reads: u64,
    /// Register writes through `write32`/`write64` (doorbells excluded).
    pub register_writes: u64,
    /// DMA accesses to addresses that are not mapped (includes use-after-free).
    pub dma_errors: u64,
    /// DMA accesses to a region that was allocated and then freed.
    pub dma_use_after_free: u64,
    /// Completions that found their CQ full and had to wait for the head doorbell.
    pub cq_full_stalls: u64,
    /// Completion entries written to CQ memory.
    pub completions_posted: u64,
    /// Commands completed with a status from `fail_next`.
    pub injected_failures: u64,
    /// Completion entries posted by `post_completion` (no command behind them).
    pub injected_completions: u64,
    /// `alloc_dma` calls that succeeded.
    pub dma_allocs: u64,
    /// DMA regions dropped.
    pub dma_frees: u64,
    /// Sum of the microseconds the driver asked `delay_us` to wait.
    pub delay_us_total: u64,
    /// Shadow doorbell values read (Doorbell Buffer Config on).
    pub shadow_reads: u64,
    /// Times CC.EN was cleared while I/O queues existed and the device
    /// could still master the bus (a reset that did not first forbid DMA).
    pub disables_while_mastering: u64,
    /// Asynchronous events delivered (AER completions).
    pub events_delivered: u64,
    /// Events dropped because the host had not enabled them (Set Features
    /// Asynchronous Event Configuration).
    pub events_not_enabled: u64,
}

impl ModelStats {
    /// Admin commands fetched with this opcode.
    pub fn admin(&self, opcode: u8) -> u64 {
        self.admin_commands.get(&opcode).copied().unwrap_or(0)
    }
    /// I/O commands fetched with this opcode.
    pub fn io(&self, opcode: u8) -> u64 {
        self.io_commands.get(&opcode).copied().unwrap_or(0)
    }
    /// SQ tail doorbell writes for `qid`.
    pub fn sq_doorbells(&self, qid: u16) -> u64 {
        self.sq_doorbell_writes.get(&qid).copied().unwrap_or(0)
    }
    /// CQ head doorbell writes for `qid`.
    pub fn cq_doorbells(&self, qid: u16) -> u64 {
        self.cq_doorbell_writes.get(&qid).copied().unwrap_or(0)
    }
    /// All doorbell writes.
    pub fn doorbell_writes(&self) -> u64 {
        self.sq_doorbell_writes.values().sum::<u64>()
            + self.cq_doorbell_writes.values().sum::<u64>()
    }
}
