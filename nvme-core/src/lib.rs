//! NVMe spec types and driver logic, with no OS dependency.
//!
//! - [`regs`], [`cmd`], [`status`], [`identify`]: the spec as typed values.
//! - [`hw`]: the narrow trait through which the driver reaches hardware.
//! - [`Controller`]: bring-up, admin commands, orderly teardown.
//! - [`IoQueuePair`]: one submission/completion queue pair, owned by one thread.
//! - [`DmaBuf`]: DMA memory whose ownership moves into a command and back.

// Queue entries are written to device-visible memory as native `repr(C)`
// structs; NVMe is little-endian.
#[cfg(target_endian = "big")]
compile_error!("nvme-core supports little-endian targets only (x86_64, aarch64)");

pub mod async_io;
pub mod barrier;
pub mod buffer;
pub mod cmb;
pub mod cmd;
pub mod controller;
#[cfg(test)]
mod driver_tests;
pub mod error;
pub mod hw;
pub mod identify;
pub mod io;
#[cfg(any(test, feature = "model"))]
pub mod model;
pub mod queue;
pub mod regs;
pub mod status;
pub mod units;

pub use buffer::{DmaBuf, MAX_BUFFER};
pub use controller::{CmbStatus, Controller, ControllerOptions, Namespace};
pub use error::{Error, IoError, Rejected};
pub use hw::{
    DeviceMemory, DmaRegion, Doorbell, Hardware, HwError, Iova, MemoryType, NoDeviceMemory,
};
pub use io::{Completion, IoQueuePair, QueueStats, RejectedVec, MAX_SEGMENTS};
pub use queue::{need_event, DoorbellStats};
pub use status::NvmeStatus;
pub use units::{ByteCount, Lba};
