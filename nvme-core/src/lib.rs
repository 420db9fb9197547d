//! NVMe spec types and driver logic, with no OS dependency.
//!
//! - [`Controller`]: bring-up, admin commands, orderly teardown.
//! - [`IoQueuePair`]: one submission/completion queue pair, owned by one thread.
//! - [`DmaBuf`]: DMA memory whose ownership moves into a command and back.
//! - [`Hardware`]: the narrow (unsafe) trait through which the driver
//!   reaches hardware: register MMIO, doorbells, DMA memory.
//! - [`async_io`]: a `Future` per command on top of a queue pair.
//! - [`regs`], [`cmd`], [`identify`]: the spec as typed values.
//!
//! Every other type is re-exported here; each has exactly one path.
//!
//! # Where `unsafe` lives
//!
//! The crate denies `unsafe_code`; it is allowed only in `barrier` (the
//! fence instructions), `buffer` (a `DmaBuf`'s byte slice), `hw` (the unsafe
//! traits and the region accessors built on their contracts), `ring` (SQ
//! and CQ ring memory), and on two items of the queue pair: its `Drop` (freeing device-visible memory
//! once the controller let go of it) and the `unsafe fn` raw submissions
//! whose contract the caller keeps. See `docs/architecture.md`.

#![deny(unsafe_code)]

// Queue entries are written to device-visible memory as native `repr(C)`
// structs; NVMe is little-endian.
#[cfg(target_endian = "big")]
compile_error!("nvme-core supports little-endian targets only (x86_64, aarch64)");

pub mod async_io;
#[allow(unsafe_code)]
mod barrier;
#[allow(unsafe_code)]
mod buffer;
mod cmb;
pub mod cmd;
mod controller;
mod error;
#[allow(unsafe_code)]
mod hw;
pub mod identify;
mod queue_pair;
pub mod regs;
#[allow(unsafe_code)]
mod ring;
mod status;
mod units;

pub use barrier::wc_flush;
pub use buffer::{DmaBuf, MAX_BUFFER};
pub use cmb::{CmbLayout, CmbScheme};
pub use controller::{
    AsyncEvent, AsyncEventKind, CmbStatus, Controller, ControllerOptions, Namespace, TimeoutPolicy,
    PAGE_SIZE,
};
pub use error::{Error, IoError, Rejected};
pub use hw::{
    DeviceMemory, DmaRegion, Doorbell, Hardware, HwError, Iova, MemoryType, NoDeviceMemory,
};
pub use queue_pair::{Completion, IoQueuePair, QueueStats, MAX_DSM_RANGES, MAX_SEGMENTS};
pub use ring::DoorbellStats;
pub use status::{CommandError, NvmeStatus, StatusCodeType};
pub use units::{ByteCount, Lba};
