//! Errors: each one says what happened and what to do about it.

use std::time::Duration;

use crate::buffer::DmaBuf;
use crate::hw::{DmaRegion, HwError, Iova};
use crate::regs::Csts;
use crate::status::NvmeStatus;

/// Everything that can go wrong in `nvme-core`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The platform layer failed (mapping, DMA allocation, ...).
    #[error(transparent)]
    Hardware(#[from] HwError),

    /// CSTS.RDY did not reach the wanted value within CAP.TO.
    #[error(
        "controller did not become {} within {timeout:?} (CSTS {csts:?}); \
         reset the device (e.g. unbind/rebind or a PCI function reset) and retry",
        if *.want_ready { "ready" } else { "disabled" }
    )]
    ReadyTimeout {
        /// The RDY value waited for.
        want_ready: bool,
        /// How long we waited (CAP.TO).
        timeout: Duration,
        /// CSTS when we gave up.
        csts: Csts,
    },

    /// CSTS.CFS is set: the controller hit a fatal error.
    #[error(
        "controller fatal status (CSTS.CFS=1, CSTS {0:?}); it must be reset: \
         drop this controller and open the device again"
    )]
    ControllerFatal(Csts),

    /// Registers read back all ones.
    #[error("device reads back all ones: it was removed or its PCIe link is down")]
    DeviceGone,

    /// The controller completed a command with an error status.
    #[error("{command} failed: {status}")]
    Command {
        /// What we asked for.
        command: &'static str,
        /// What the controller said.
        status: NvmeStatus,
    },

    /// An I/O command passed its deadline. The controller is not marked
    /// dead for it: the queue pair goes on working.
    #[error(
        "{command} did not complete within {timeout:?}; the device still owns its buffer, \
         which the queue pair keeps until the command completes (poll it) or the pair is \
         dropped{}",
        if *abort_requested { "; an Abort was sent" } else { "" }
    )]
    IoTimeout {
        /// What we asked for.
        command: &'static str,
        /// The deadline.
        timeout: Duration,
        /// The timeout policy sent an Abort for it.
        abort_requested: bool,
    },

    /// The device was removed (hot-unplug) or taken back by the kernel.
    #[error(
        "the device was removed (hot-unplug, or the kernel took it back); drop this controller \
         and its queue pairs, and open the device again once it is back"
    )]
    DeviceRemoved,

    /// The controller was reset while the command was in flight; the
    /// buffer is back. The controller and the queue pair work again.
    #[error("{command} was aborted by a controller reset (not carried out, or not known to be): submit it again")]
    ControllerReset {
        /// What we asked for.
        command: &'static str,
    },

    /// An admin command (or shutdown) did not complete in time.
    #[error(
        "{command} did not complete within {timeout:?}; the controller is treated as dead: \
         drop it and open the device again"
    )]
    Timeout {
        /// What we asked for.
        command: &'static str,
        /// How long we waited.
        timeout: Duration,
    },

    /// An earlier failure made the controller unusable.
    #[error("controller is unusable after an earlier failure; drop it and open the device again")]
    Dead,

    /// The controller lacks something the driver needs.
    #[error("unsupported: {0}")]
    Unsupported(String),

    /// A caller-supplied value is out of range.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// The namespace is not active on this controller.
    #[error("namespace {nsid} is not an active namespace of this controller (active: {active:?})")]
    NoSuchNamespace {
        /// The NSID asked for.
        nsid: u32,
        /// The NSIDs that are active.
        active: Vec<u32>,
    },

    /// The LBA range is past the end of the namespace.
    #[error(
        "LBAs {lba}..{} are past the end of namespace {nsid}, which has {size} blocks \
         (last LBA {})",
        .lba.saturating_add(*.blocks), .size.saturating_sub(1)
    )]
    LbaOutOfRange {
        /// Namespace.
        nsid: u32,
        /// First LBA asked for.
        lba: u64,
        /// Number of blocks asked for.
        blocks: u64,
        /// Namespace size in blocks.
        size: u64,
    },

    /// The transfer length is not a whole number of blocks.
    #[error(
        "transfer of {len} bytes is not a positive multiple of the namespace's \
         {block_size}-byte logical block size"
    )]
    UnalignedLength {
        /// Bytes asked for.
        len: usize,
        /// The namespace's block size.
        block_size: u64,
    },

    /// The transfer is larger than this queue can carry at once, even
    /// split into MDTS-sized commands.
    #[error(
        "transfer of {len} bytes exceeds the {max} bytes this queue pair can carry at once \
         (MDTS-sized commands in every slot); use a larger queue or split the request"
    )]
    TooLarge {
        /// Bytes asked for.
        len: usize,
        /// The limit.
        max: usize,
    },

    /// The buffer does not meet the controller's alignment rule.
    #[error("buffer at IOVA {iova} is not 4-byte aligned, as NVMe PRP entries require")]
    MisalignedBuffer {
        /// Where the buffer starts.
        iova: Iova,
    },

    /// No free submission queue slot.
    #[error("queue full ({outstanding} commands outstanding); poll for completions, then retry")]
    QueueFull {
        /// Commands in flight.
        outstanding: usize,
    },

    /// The buffer was allocated for another controller's DMA space.
    #[error(
        "this buffer was allocated by a different controller; its IOVA means nothing \
         to this one: allocate buffers from the controller you submit to"
    )]
    ForeignBuffer,

    /// Every I/O queue the controller granted is already in use.
    #[error(
        "no I/O queue pair left: the controller granted {granted} and all are in use; \
         drop one or ask for fewer"
    )]
    NoQueuePairs {
        /// How many the controller granted.
        granted: u16,
    },

    /// Shutdown was asked for while queue pairs or other handles still use
    /// the controller.
    #[error(
        "controller still in use by {others} queue pair(s) or handle clone(s); drop them \
         first (the controller shuts down when the last one goes)"
    )]
    InUse {
        /// Other holders of the controller.
        others: usize,
    },

    /// A synchronous call needs the queue to be idle.
    #[error(
        "queue pair has {outstanding} commands outstanding; synchronous I/O needs an idle \
         queue: poll the outstanding commands first"
    )]
    Busy {
        /// Commands in flight.
        outstanding: usize,
    },
}

impl Error {
    /// The NVMe status, if the controller rejected the command.
    pub fn nvme_status(&self) -> Option<NvmeStatus> {
        match self {
            Error::Command { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// A submission the queue refused, or a synchronous command that failed:
/// the error, and the caller's buffer(s) handed back. `B` is what the
/// submission carried: a [`DmaBuf`] ([`IoQueuePair::submit_read`] and the
/// other data submissions), a `Vec` of them (vectored submissions), or
/// `Option<DmaBuf>` ([`IoError`]).
///
/// [`IoQueuePair::submit_read`]: crate::IoQueuePair::submit_read
pub struct Rejected<B> {
    /// Why.
    pub error: Error,
    /// The caller's buffer(s), untouched by the device.
    pub buf: B,
}

/// A failed synchronous I/O: the error, and the buffer if it is safe to
/// hand back. After a timeout the device may still write the buffer, so it
/// stays with the queue pair (`buf` is `None`) until the command completes
/// or the queue is torn down.
pub type IoError<D> = Rejected<Option<DmaBuf<D>>>;

impl<D: DmaRegion> From<Rejected<DmaBuf<D>>> for IoError<D> {
    fn from(r: Rejected<DmaBuf<D>>) -> Self {
        Rejected {
            error: r.error,
            buf: Some(r.buf),
        }
    }
}

impl<B> std::fmt::Debug for Rejected<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rejected")
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

impl<B> std::fmt::Display for Rejected<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.error.fmt(f)
    }
}

impl<B> std::error::Error for Rejected<B> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}
