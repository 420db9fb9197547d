//! Linux VFIO backend for `nvme-core`: drives a PCI NVMe controller from user
//! space through the VFIO type1 container/group API.
//!
//! ```no_run
//! use nvme_core::{Hardware, DmaRegion};
//! use nvme_vfio::{PciAddress, VfioDevice};
//!
//! let dev = VfioDevice::open("0000:01:00.0".parse::<PciAddress>()?)?;
//! let cap = dev.read64(0x00);             // NVMe CAP register
//! let sq = dev.alloc_dma(4096)?;          // zeroed, IOMMU-mapped
//! println!("CAP={cap:#x} SQ at IOVA {}", sq.iova());
//! for m in dev.mappings() { println!("{m}"); }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Layers
//!
//! Every module is private; what a user needs is re-exported here, so each
//! public type has one path (`nvme_vfio::Name`).
//!
//! - `pci`, `sysfs`: parse the PCI address ([`PciAddress`]) and check the
//!   system before opening anything (device present, IOMMU group, bound to
//!   vfio-pci, group viable; [`OpenOptions::check`] runs just these and
//!   returns a [`SysfsDevice`]). Every failure is a [`VfioError`] whose
//!   message says what to do.
//! - `open`: [`OpenOptions`] and the bring-up behind [`VfioDevice::open`],
//!   one named step each: sysfs checks → `open_container` →
//!   `open_device_fd` → `reset` → `query_bars` → `plan_and_map_bars` →
//!   `read_config_header` → `reserve_bar_iovas` → the device, built once →
//!   `enable_bus_master`.
//! - `container`: `/dev/vfio/vfio` + `/dev/vfio/<group>`: API version,
//!   Type1v2/Type1 IOMMU, viability, IOVA ranges ([`IovaRange`]; `iova`
//!   allocates in them).
//! - `region`: `VFIO_DEVICE_GET_REGION_INFO` with its capability chain
//!   (parsed in `caps`), BAR0 mapping honouring sparse-mmap areas, and the
//!   per-access route: the mapping when the access lies inside a mapped
//!   area, else `pread`/`pwrite` on the device fd. [`MappingRecord`]s report
//!   each range's route and memory type.
//! - `wc` (plan, PAT parsing, store-width quirks) and `devmem` (the plan as
//!   one value, `WcPlan`, and carrying it out): at open, before vfio touches
//!   any memory BAR, each range gets its intent (BAR0 register page
//!   uncached; doorbells and the CMB write-combining if possible) and the
//!   best route: a vfio WC uAPI probed at run time (dma-buf memattr, cargo
//!   feature `dmabuf-wc`; the result is a [`VfioWcSupport`]), sysfs
//!   `resourceN_wc` for prefetchable BARs, else the uncached vfio mmap.
//!   Every record is checked against x86's `pat_memtype_list` when it is
//!   readable ([`PatList`] parses it for tools that want to look again); see
//!   `docs/write-combining.md`. The device's BAR ranges
//!   ([`BarResource`]s) are withheld from IOVA allocation.
//! - `dma`: [`DmaBuffer`]: anonymous memory (2 MiB hugepages when possible),
//!   pre-faulted, locked, zeroed, mapped with `VFIO_IOMMU_MAP_DMA`; dropped
//!   as IOMMU unmap → munmap → IOVA free.
//! - `device`: [`VfioDevice`] ties it together and implements
//!   [`nvme_core::Hardware`]; [`VfioDoorbell`] is a pointer into the BAR0
//!   mapping, so ringing is one volatile store. The device fd sits behind
//!   a lock taken only by the pread/pwrite routes, ioctls and its close
//!   (never by mapped register or doorbell accesses), so removal can close
//!   it while the handle lives on.
//! - `removal`: device removal (issue #13). At open, eventfds are
//!   registered for VFIO's request interrupt (`VFIO_PCI_REQ_IRQ_INDEX`: the
//!   kernel wants the device back, hot-unplug or unbind) and, for PCIe
//!   functions, its error interrupt (`VFIO_PCI_ERR_IRQ_INDEX`, AER); a
//!   watcher thread per device (`nvme-vfio-watch <BDF>`, stopped and joined
//!   when the device is dropped) polls them and a fault eventfd written by
//!   the SIGBUS handler. On a request or a caught fault: accesses through
//!   the fd fail (reads give all ones), every BAR mapping (registers,
//!   doorbells, CMB) is replaced in place by private memory reading all
//!   ones, the hook from [`nvme_core::Hardware::watch_removal`] is called
//!   once, and the device fd is closed, so the kernel completes the removal
//!   while the process lives on ([`VfioDeviceInfo::is_removed`]). AER
//!   events are logged and counted ([`VfioDeviceInfo::aer_events`]) and
//!   left to `nvme-core`'s deadline and reset path; a device that does not
//!   come back is then removed by the kernel, which the request reports.
//! - SIGBUS guard (in `sys`): an access to a zapped vfio mapping (surprise
//!   removal, link down) raises SIGBUS. Every device mapping is recorded in
//!   a fixed registry of atomics (64 slots, seqlock per slot, readable from
//!   a signal handler); a handler installed once per process (chaining to
//!   the previous one, which for Rust binaries is std's stack-overflow
//!   handler) replaces a faulting registered mapping with all ones, tells
//!   the device's watcher, and returns so the access is retried; any other
//!   SIGBUS goes to the previous handler or the default action. A
//!   replacement fills up to 16 MiB with 0xFF (zeros beyond: a CMB's
//!   contents do not matter once the device is gone).
//!
//! # Where `unsafe` lives
//!
//! Only in the private `sys` module: the ioctls (including
//! `VFIO_DEVICE_GET_IRQ_INFO` and `VFIO_DEVICE_SET_IRQS`),
//! `mmap`/`mremap`/`munmap`/`mlock`/`madvise`, `eventfd` and `poll`,
//! taking ownership of the fds `VFIO_GROUP_GET_DEVICE_FD` and `eventfd`
//! return, the volatile loads/stores into mappings (bounds- and
//! alignment-checked), the SIGBUS handler (`sigaction`, chaining to the
//! previous handler, the async-signal-safe replacement of a mapping), and
//! the `Send`/`Sync` impls of the two types that hold raw pointers (`Mmap`,
//! `Reg32`). Every block carries a `// SAFETY:` comment.
//! Besides those, the crate's three implementations of `nvme-core`'s unsafe
//! traits (`Hardware` for [`VfioDevice`], `DmaRegion` for [`DmaBuffer`],
//! `DeviceMemory` for [`VfioDeviceMemory`]) are `unsafe impl`s, each with
//! the reason its contract holds. The crate root denies `unsafe_code`;
//! only `sys` and those three items are allowed it.
//!
//! # Lifetimes and teardown
//!
//! The container (IOMMU context) is shared by `Arc` between the device and
//! every DMA buffer; a doorbell holds an `Arc` to the device. So a buffer can
//! outlive the [`VfioDevice`] handle: its IOMMU mapping is removed before its
//! memory is released, and if that unmap fails the memory is leaked rather
//! than reused. When the last handle to the device goes: Bus Master is
//! cleared, BAR0 is unmapped, the device fd is closed; when the last buffer
//! goes too, the group is detached from the container and the group and
//! container fds are closed. The NVMe-level shutdown (CC.SHN) is
//! `nvme-core`'s job and must happen before. After a removal the device fd
//! is already closed and the mappings are private memory: dropping then
//! only unmaps them and frees the DMA buffers.

#![deny(unsafe_code)]

mod caps;
mod container;
mod device;
mod devmem;
mod dma;
mod error;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod iova;
mod open;
mod pci;
mod region;
mod removal;
#[allow(unsafe_code)]
mod sys;
mod sysfs;
mod wc;

pub use device::{VfioDevice, VfioDeviceInfo, VfioDoorbell};
pub use devmem::VfioDeviceMemory;
pub use dma::{DmaBuffer, DmaStats, HUGEPAGE_SIZE};
pub use error::{PeerDevice, VfioError};
pub use iova::IovaRange;
pub use open::OpenOptions;
pub use pci::PciAddress;
pub use region::{MappingRecord, MappingRoute, RangePurpose};
pub use sysfs::SysfsDevice;
pub use wc::{BarResource, PatEntry, PatList, VfioWcSupport};

/// `VFIO_TYPE1v2_IOMMU`, as returned by [`VfioDeviceInfo::iommu_type`].
pub const VFIO_TYPE1V2_IOMMU: u32 = vfio_bindings::bindings::vfio::VFIO_TYPE1v2_IOMMU;
/// `VFIO_TYPE1_IOMMU`, as returned by [`VfioDeviceInfo::iommu_type`].
pub const VFIO_TYPE1_IOMMU: u32 = vfio_bindings::bindings::vfio::VFIO_TYPE1_IOMMU;

/// Why [`open_controller`] failed: opening the device, or bringing up the controller.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The PCI/VFIO layer (address, sysfs, permissions, IOMMU, mapping).
    #[error(transparent)]
    Vfio(#[from] VfioError),
    /// The NVMe bring-up in `nvme-core`.
    #[error(transparent)]
    Nvme(#[from] nvme_core::Error),
}

/// Parse `addr`, open the device through VFIO (see [`VfioDevice::open`]) and
/// bring up the NVMe controller on it.
pub fn open_controller(
    addr: &str,
    opts: nvme_core::ControllerOptions,
) -> Result<nvme_core::Controller<VfioDevice>, OpenError> {
    let dev = VfioDevice::open(PciAddress::parse(addr)?)?;
    Ok(nvme_core::Controller::init(dev, opts)?)
}
