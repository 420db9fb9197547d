//! The device handle: config space, BAR0 access, doorbells, and the
//! `nvme_core::Hardware` implementation. Opening it is `open.rs`.

use std::fs::File;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard};

use nvme_core::{Doorbell, Hardware, HwError, MemoryType};

use crate::container::Container;
use crate::devmem::{MemBar, VfioDeviceMemory};
use crate::dma::{DmaBuffer, DmaStats};
use crate::error::VfioError;
use crate::iova::IovaRange;
use crate::open::OpenOptions;
use crate::pci::PciAddress;
use crate::region::{rw_write, Bar, MappingRecord, RegionIo};
use crate::removal::Watcher;
use crate::sys::{Mmap, Reg32};
use crate::sysfs::SysfsDevice;
use crate::wc::{self, BarResource, VfioWcSupport};

/// PCI command register offset and bits.
const PCI_COMMAND: u64 = 0x04;
const PCI_COMMAND_MEMORY: u16 = 1 << 1;
const PCI_COMMAND_MASTER: u16 = 1 << 2;

/// An NVMe PCI function opened through VFIO. Implements [`Hardware`].
///
/// Cheap to clone (all clones share one open device). Doorbells and DMA
/// buffers keep what they need alive, so they may outlive this handle.
///
/// Its read-only facts (address, IDs, IOMMU, mappings and their memory
/// types, DMA statistics, config space reads) are on [`VfioDeviceInfo`],
/// which this type dereferences to and which a live
/// `nvme_core::Controller` hands out (`Controller::platform_info`) without
/// giving access to the registers.
#[derive(Clone, Debug)]
pub struct VfioDevice {
    info: VfioDeviceInfo,
}

/// What is known about an opened device, without access to its registers
/// or DMA: cheap to clone (it shares the open device).
#[derive(Clone, Debug)]
pub struct VfioDeviceInfo {
    inner: Arc<DeviceInner>,
}

impl std::ops::Deref for VfioDevice {
    type Target = VfioDeviceInfo;
    fn deref(&self) -> &VfioDeviceInfo {
        &self.info
    }
}

/// The VFIO device fd and where PCI config space lies in it.
///
/// The fd can be closed while the device handle lives on: when the device
/// is removed (`removal.rs`), accesses through it fail at once (`gone`),
/// then the file is dropped so the kernel can complete the removal. The
/// lock is taken only by the pread/pwrite routes, ioctls and the close,
/// never by the mapped register and doorbell accesses.
#[derive(Debug)]
pub(crate) struct DeviceFd {
    /// The fd `VFIO_GROUP_GET_DEVICE_FD` returned (pread/pwrite, mmap);
    /// `None` once released.
    file: RwLock<Option<File>>,
    /// Set when removal starts: every access through the fd fails from then on.
    gone: AtomicBool,
    /// Offset of the config-space region in the fd.
    config_offset: u64,
    /// Size of the config-space region.
    config_size: u64,
}

/// The device fd for a caller that has checked it is still open.
pub(crate) struct FileRef<'a>(RwLockReadGuard<'a, Option<File>>);

impl std::ops::Deref for FileRef<'_> {
    type Target = File;
    fn deref(&self) -> &File {
        match self.0.as_ref() {
            Some(f) => f,
            None => unreachable!("FileRef is only made for an open fd"),
        }
    }
}

/// Field order is teardown order (Rust drops fields top to bottom), after
/// `Drop::drop` has cleared Bus Master:
/// 1. `watcher`: stop and join the removal watcher thread (it holds
///    clones of the mappings and of the device fd, released with it);
/// 2. `bar0`: munmap BAR0 (doorbells hold an `Arc<DeviceInner>`, so none is left);
/// 3. `device`: close the device fd (vfio-pci disables and, if it can, resets the function);
/// 4. `container`: drop our `Arc`; when the last DMA buffer is gone too,
///    unset the container, close the group fd, close the container fd.
///
/// Built once, complete, by the last step of the bring-up (`open.rs`).
#[derive(Debug)]
pub(crate) struct DeviceInner {
    /// The removal watcher (`None` if it could not be started).
    pub(crate) watcher: Option<Watcher>,
    pub(crate) bar0: Bar,
    /// Memory BARs other than BAR0, mapped by the WC plan (unmapped before
    /// the device fd closes).
    pub(crate) mem_bars: Vec<MemBar>,
    pub(crate) device: Arc<DeviceFd>,
    pub(crate) container: Arc<Container>,
    pub(crate) address: PciAddress,
    pub(crate) sysfs: SysfsDevice,
    pub(crate) vendor_id: u16,
    pub(crate) device_id: u16,
    pub(crate) bar_sizes: [u64; 6],
    /// sysfs `resource` lines of BAR0..BAR5 (CPU physical addresses).
    pub(crate) bar_resources: [Option<BarResource>; 6],
    /// Bus addresses of the memory BARs from config space.
    pub(crate) bar_bus: [Option<u64>; 6],
    /// IOVA ranges withheld from the allocator (the device's own BARs).
    pub(crate) iova_reserved: Vec<IovaRange>,
    /// The mapping report: BAR0 ranges, then each memory BAR's.
    pub(crate) records: Vec<MappingRecord>,
    /// Result of the vfio WC probe (route 1).
    pub(crate) vfio_wc: VfioWcSupport,
    pub(crate) reset_done: bool,
    pub(crate) reset_supported: bool,
    pub(crate) num_irqs: u32,
}

impl Drop for DeviceInner {
    fn drop(&mut self) {
        if self.is_removed() {
            tracing::debug!("{}: closing a removed VFIO device", self.address);
            return;
        }
        // Stop the function from mastering the bus before anything is torn
        // down (vfio-pci also does this on release; doing it here first
        // makes it independent of when the kernel releases the fd).
        match self.device.config_read_u16(PCI_COMMAND) {
            Ok(cmd) => {
                if let Err(e) = self
                    .device
                    .config_write_u16(PCI_COMMAND, cmd & !PCI_COMMAND_MASTER)
                {
                    tracing::warn!("{}: clearing Bus Master at close failed: {e}", self.address);
                }
            }
            Err(e) => tracing::warn!(
                "{}: reading the command register at close failed: {e}",
                self.address
            ),
        }
        tracing::debug!("{}: closing VFIO device", self.address);
    }
}

impl DeviceInner {
    /// Whether the device was removed (see `removal.rs`).
    pub(crate) fn is_removed(&self) -> bool {
        self.watcher
            .as_ref()
            .is_some_and(|w| w.removal.is_removed())
            || self.device.is_gone()
    }

    /// Every BAR mapping of the device (what removal replaces).
    pub(crate) fn all_maps(bar0: &Bar, mem_bars: &[MemBar]) -> Vec<Arc<Mmap>> {
        let mut v: Vec<Arc<Mmap>> = bar0.maps().to_vec();
        for m in mem_bars {
            v.extend(m.maps());
        }
        v
    }

    /// The last bring-up step: enable Memory Space and Bus Master in the PCI
    /// command register. On failure the caller drops `self`, whose `Drop`
    /// clears Bus Master again.
    /// Bus Master Enable on or off, the rest of the command register as
    /// it is (read back: a write the config space dropped is an error).
    pub(crate) fn set_bus_master(&self, on: bool) -> Result<(), VfioError> {
        let cmd = self.device.config_read_u16(PCI_COMMAND)?;
        let want = if on {
            cmd | PCI_COMMAND_MASTER
        } else {
            cmd & !PCI_COMMAND_MASTER
        };
        if want != cmd {
            self.device.config_write_u16(PCI_COMMAND, want)?;
        }
        let now = self.device.config_read_u16(PCI_COMMAND)?;
        if now & PCI_COMMAND_MASTER == want & PCI_COMMAND_MASTER {
            Ok(())
        } else {
            Err(VfioError::Access {
                what: "config space",
                offset: PCI_COMMAND,
                len: 2,
                reason: format!("the command register reads {now:#06x} after writing {want:#06x}"),
            })
        }
    }

    pub(crate) fn enable_bus_master(&self) -> Result<(), VfioError> {
        let cmd = self.device.config_read_u16(PCI_COMMAND)?;
        self.device
            .config_write_u16(PCI_COMMAND, cmd | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER)
    }
}

impl DeviceFd {
    pub(crate) fn new(file: File, config_offset: u64, config_size: u64) -> DeviceFd {
        DeviceFd {
            file: RwLock::new(Some(file)),
            gone: AtomicBool::new(false),
            config_offset,
            config_size,
        }
    }

    fn gone_error() -> io::Error {
        io::Error::new(
            io::ErrorKind::NotConnected,
            "the device was removed (its VFIO fd is closed)",
        )
    }

    /// The open fd, or an error once the device is gone.
    pub(crate) fn file(&self) -> io::Result<FileRef<'_>> {
        if self.is_gone() {
            return Err(Self::gone_error());
        }
        let g = self.file.read().unwrap_or_else(|e| e.into_inner());
        if g.is_none() {
            return Err(Self::gone_error());
        }
        Ok(FileRef(g))
    }

    /// Run `f` on the open fd (an error once the device is gone).
    pub(crate) fn with_file<R>(&self, f: impl FnOnce(&File) -> R) -> io::Result<R> {
        Ok(f(&*self.file()?))
    }

    /// Removal started: accesses through the fd fail from now on.
    pub(crate) fn mark_gone(&self) {
        self.gone.store(true, Ordering::Release);
    }

    pub(crate) fn is_gone(&self) -> bool {
        self.gone.load(Ordering::Acquire)
    }

    /// Close the fd (after waiting for accesses in progress); whether it
    /// was still open.
    pub(crate) fn release(&self) -> bool {
        self.mark_gone();
        let f = self.file.write().unwrap_or_else(|e| e.into_inner()).take();
        f.is_some()
    }

    pub(crate) fn config_read(&self, offset: u64, buf: &mut [u8]) -> Result<(), VfioError> {
        let len = buf.len();
        let err = |reason: String| VfioError::Access {
            what: "config space",
            offset,
            len,
            reason,
        };
        if offset
            .checked_add(len as u64)
            .is_none_or(|e| e > self.config_size)
        {
            return Err(err(format!(
                "beyond the {:#x}-byte config space",
                self.config_size
            )));
        }
        match self.read_at(buf, self.config_offset + offset) {
            Ok(n) if n == len => Ok(()),
            Ok(n) => Err(err(format!("short read ({n} bytes)"))),
            Err(e) => Err(err(e.to_string())),
        }
    }

    pub(crate) fn config_write(&self, offset: u64, buf: &[u8]) -> Result<(), VfioError> {
        let err = |reason: String| VfioError::Access {
            what: "config space",
            offset,
            len: buf.len(),
            reason,
        };
        if offset
            .checked_add(buf.len() as u64)
            .is_none_or(|e| e > self.config_size)
        {
            return Err(err(format!(
                "beyond the {:#x}-byte config space",
                self.config_size
            )));
        }
        rw_write(self, self.config_offset + offset, buf).map_err(err)
    }

    pub(crate) fn config_read_u16(&self, offset: u64) -> Result<u16, VfioError> {
        let mut b = [0u8; 2];
        self.config_read(offset, &mut b)?;
        Ok(u16::from_le_bytes(b))
    }

    pub(crate) fn config_write_u16(&self, offset: u64, v: u16) -> Result<(), VfioError> {
        self.config_write(offset, &v.to_le_bytes())
    }
}

impl VfioDeviceInfo {
    /// The PCI address.
    pub fn pci_address(&self) -> PciAddress {
        self.inner.address
    }
    /// PCI vendor id (from config space).
    pub fn vendor_id(&self) -> u16 {
        self.inner.vendor_id
    }
    /// PCI device id (from config space).
    pub fn device_id(&self) -> u16 {
        self.inner.device_id
    }
    /// IOMMU group number.
    pub fn iommu_group(&self) -> u32 {
        self.inner.container.group_number
    }
    /// IOMMU backend in use: `VFIO_TYPE1v2_IOMMU` (3) or `VFIO_TYPE1_IOMMU` (1).
    pub fn iommu_type(&self) -> u32 {
        self.inner.container.iommu_type
    }
    /// Usable IOVA ranges (from the kernel, or a conservative default).
    pub fn iova_ranges(&self) -> &[IovaRange] {
        &self.inner.container.iova_ranges
    }
    /// False when the kernel did not report IOVA ranges and a conservative
    /// default (39-bit, minus the x86 MSI window) is in use.
    pub fn iova_ranges_reported(&self) -> bool {
        self.inner.container.iova_ranges_reported
    }
    /// Sizes of BAR0..BAR5 in bytes (0 = absent; the upper half of a 64-bit BAR is 0).
    pub fn bar_sizes(&self) -> [u64; 6] {
        self.inner.bar_sizes
    }
    /// What sysfs said at open (driver, class, group peers).
    pub fn sysfs(&self) -> &SysfsDevice {
        &self.inner.sysfs
    }
    /// Whether VFIO_DEVICE_RESET was issued at open.
    pub fn was_reset(&self) -> bool {
        self.inner.reset_done
    }
    /// Whether the device supports VFIO_DEVICE_RESET.
    pub fn reset_supported(&self) -> bool {
        self.inner.reset_supported
    }
    /// Number of interrupt indexes VFIO reports (we poll for completions;
    /// the request and error indexes are used to learn of removal).
    pub fn num_irqs(&self) -> u32 {
        self.inner.num_irqs
    }
    /// Whether the kernel's request interrupt (it wants the device back)
    /// and error interrupt (AER) are registered, as (request, error).
    pub fn removal_channels(&self) -> (bool, bool) {
        self.inner
            .watcher
            .as_ref()
            .map_or((false, false), |w| w.removal.channels)
    }
    /// Whether the device was removed (hot-unplug, unbind, or it vanished).
    pub fn is_removed(&self) -> bool {
        self.inner.is_removed()
    }
    /// Uncorrectable PCIe errors VFIO reported through its error interrupt.
    pub fn aer_events(&self) -> u64 {
        self.inner
            .watcher
            .as_ref()
            .map_or(0, |w| w.removal.aer_events())
    }
    /// How every range of BAR0 and of the other memory BARs is reached
    /// (vfio mmap, pread/pwrite, sysfs `resourceN_wc`), with the memory
    /// type each asked for, obtained and (where the platform can tell)
    /// was verified to have, and a note on any fallback.
    pub fn mappings(&self) -> &[MappingRecord] {
        &self.inner.records
    }
    /// What the vfio write-combining probe (route 1) found.
    pub fn vfio_wc_support(&self) -> &VfioWcSupport {
        &self.inner.vfio_wc
    }
    /// sysfs `resource` line of BAR `bar` (CPU physical addresses).
    pub fn bar_resource(&self, bar: u8) -> Option<BarResource> {
        self.inner
            .bar_resources
            .get(bar as usize)
            .copied()
            .flatten()
    }
    /// IOVA ranges withheld from DMA allocation (the device's BARs).
    pub fn iova_reserved(&self) -> &[IovaRange] {
        &self.inner.iova_reserved
    }
    /// The bus address the device decodes for BAR `bar` (what
    /// [`Hardware::bar_address`] calls, with the typed error).
    pub fn bar_bus_address(&self, bar: u8) -> Result<u64, VfioError> {
        let i = bar as usize;
        let bus = self.inner.bar_bus.get(i).copied().flatten();
        let phys = self
            .inner
            .bar_resources
            .get(i)
            .copied()
            .flatten()
            .filter(|r| r.is_mem())
            .map(|r| r.start);
        bus.or(phys).ok_or(VfioError::DeviceMemory {
            address: self.inner.address,
            bar,
            offset: 0,
            len: 0,
            reason: "not an assigned memory BAR (no address in config space or sysfs)".into(),
        })
    }
    /// Whether any DMA buffer so far got hugepages.
    pub fn hugepages_used(&self) -> bool {
        self.inner
            .container
            .counters
            .hugepages_used
            .load(Ordering::Relaxed)
    }
    /// Live DMA buffers and bytes.
    pub fn dma_stats(&self) -> DmaStats {
        let c = &self.inner.container.counters;
        DmaStats {
            regions: c.regions.load(Ordering::Relaxed),
            bytes: c.bytes.load(Ordering::Relaxed),
            hugepage_regions: c.huge_regions.load(Ordering::Relaxed),
            hugepage_bytes: c.huge_bytes.load(Ordering::Relaxed),
            allocations: c.allocations.load(Ordering::Relaxed),
        }
    }

    /// One line for tools: [`DmaStats`] plus whether hugepages were ever
    /// obtained and the IOVA ranges in use.
    pub fn dma_summary(&self) -> String {
        let ranges: Vec<String> = self
            .iova_ranges()
            .iter()
            .map(|r| format!("{:#x}..={:#x}", r.start, r.end))
            .collect();
        let reserved: Vec<String> = self
            .iova_reserved()
            .iter()
            .map(|r| format!("{:#x}..={:#x}", r.start, r.end))
            .collect();
        format!(
            "{}; hugepages used: {}; IOMMU type {}; IOVA ranges {}{}; withheld (device BARs): {}",
            self.dma_stats(),
            if self.hugepages_used() { "yes" } else { "no" },
            match self.iommu_type() {
                crate::VFIO_TYPE1V2_IOMMU => "Type1v2",
                crate::VFIO_TYPE1_IOMMU => "Type1",
                _ => "?",
            },
            ranges.join(", "),
            if self.iova_ranges_reported() {
                ""
            } else {
                " (assumed)"
            },
            if reserved.is_empty() {
                "none".to_string()
            } else {
                reserved.join(", ")
            }
        )
    }

    /// Read `buf.len()` bytes of PCI config space at `offset`.
    pub fn config_read(&self, offset: u16, buf: &mut [u8]) -> Result<(), VfioError> {
        self.inner.device.config_read(u64::from(offset), buf)
    }
    /// Read a little-endian u16 from config space.
    pub fn config_read_u16(&self, offset: u16) -> Result<u16, VfioError> {
        self.inner.device.config_read_u16(u64::from(offset))
    }
    /// Read a little-endian u32 from config space.
    pub fn config_read_u32(&self, offset: u16) -> Result<u32, VfioError> {
        let mut b = [0u8; 4];
        self.config_read(offset, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }
}

impl VfioDevice {
    /// Open the PCI function at `address` through VFIO, with default
    /// [`OpenOptions`] (the same as `OpenOptions::new().open(address)`).
    ///
    /// Steps: sysfs checks (device exists, IOMMU group, bound to vfio-pci,
    /// group viable) → `/dev/vfio/vfio` (API version, Type1v2/Type1) →
    /// `/dev/vfio/<group>` (viable, attach, set IOMMU, IOVA ranges) → device
    /// fd → **VFIO_DEVICE_RESET** if the device supports it (a function-level
    /// reset, so the controller starts from a clean state before `nvme-core`
    /// touches it; skip with [`OpenOptions::reset`]) → map BAR0 → enable
    /// Memory Space and Bus Master in the PCI command register.
    pub fn open(address: PciAddress) -> Result<VfioDevice, VfioError> {
        OpenOptions::new().open(address)
    }

    /// Wrap a device the bring-up has built.
    pub(crate) fn from_inner(inner: DeviceInner) -> VfioDevice {
        VfioDevice {
            info: VfioDeviceInfo {
                inner: Arc::new(inner),
            },
        }
    }

    /// Map `len` bytes at `offset` of BAR `bar` (what
    /// [`Hardware::map_device_memory`] calls, with the typed error).
    pub fn map_device_memory_at(
        &self,
        bar: u8,
        offset: u64,
        len: u64,
    ) -> Result<VfioDeviceMemory, VfioError> {
        let err = |reason: String| VfioError::DeviceMemory {
            address: self.info.inner.address,
            bar,
            offset,
            len,
            reason,
        };
        let size = *self
            .inner
            .bar_sizes
            .get(bar as usize)
            .ok_or_else(|| err("there are only BARs 0..=5".into()))?;
        if len == 0 || offset.checked_add(len).is_none_or(|e| e > size) {
            return Err(err(format!(
                "range is empty or beyond the {size:#x}-byte BAR"
            )));
        }
        let found = if bar == 0 {
            self.info.inner.bar0.window(offset, len)
        } else {
            match self.info.inner.mem_bars.iter().find(|m| m.index == bar) {
                Some(m) => m.window(offset, len),
                None => return Err(err("not a mapped memory BAR".into())),
            }
        };
        let (map, off, memory_type) =
            found.ok_or_else(|| err("the range is not inside one mmappable area".into()))?;
        let len = usize::try_from(len).map_err(|_| err("too large".into()))?;
        Ok(VfioDeviceMemory {
            map,
            off,
            len,
            bar,
            bar_offset: offset,
            memory_type,
            _keep: Arc::clone(&self.info.inner) as Arc<dyn Send + Sync>,
        })
    }
    /// Allocate zeroed DMA memory (what [`Hardware::alloc_dma`] calls, with
    /// the typed error).
    pub fn allocate_dma(&self, len: usize) -> Result<DmaBuffer, VfioError> {
        DmaBuffer::allocate(&self.info.inner.container, len)
    }

    /// A doorbell handle for the register at `offset` in BAR0 (what
    /// [`Hardware::doorbell`] calls, with the typed error).
    pub fn doorbell_at(&self, offset: usize) -> Result<VfioDoorbell, VfioError> {
        let bar = &self.info.inner.bar0;
        let off = offset as u64;
        if let Some((reg, mt)) = bar.reg32(off) {
            return Ok(VfioDoorbell {
                kind: DoorbellKind::Mmio {
                    reg,
                    _dev: Arc::clone(&self.info.inner),
                },
                wc: mt == MemoryType::WriteCombining,
                offset,
                memory_type: mt,
            });
        }
        if !bar.check(off, 4) {
            return Err(VfioError::Access {
                what: "BAR0 doorbell",
                offset: off,
                len: 4,
                reason: format!("misaligned or beyond the {:#x}-byte BAR", bar.size),
            });
        }
        tracing::warn!(
            "{}: doorbell at BAR0+{offset:#x} is not mmappable; using pwrite (slow)",
            self.info.inner.address
        );
        Ok(VfioDoorbell {
            kind: DoorbellKind::Pwrite {
                dev: Arc::clone(&self.info.inner),
                at: bar.file_offset + off,
            },
            wc: false,
            offset,
            memory_type: MemoryType::Uncached,
        })
    }

    fn reg_error(&self, op: &str, offset: usize, e: &str) {
        if self.info.inner.is_removed() {
            return; // all ones / dropped, as the removal contract says
        }
        tracing::error!("{}: {op} BAR0+{offset:#x}: {e}", self.info.inner.address);
    }
}

/// A doorbell register: a pointer into the BAR0 mapping (one volatile store
/// per ring), or, when the page is not mmappable, a `pwrite` on the device fd.
pub struct VfioDoorbell {
    kind: DoorbellKind,
    wc: bool,
    offset: usize,
    memory_type: MemoryType,
}

enum DoorbellKind {
    /// `_dev` keeps the device (and so the mapping, fd and container) alive
    /// and makes teardown order independent of when doorbells are dropped.
    Mmio {
        reg: Reg32,
        _dev: Arc<DeviceInner>,
    },
    Pwrite {
        dev: Arc<DeviceInner>,
        at: u64,
    },
}

impl VfioDoorbell {
    /// Offset of the register in BAR0.
    pub fn offset(&self) -> usize {
        self.offset
    }
    /// True when ringing is a store through the mapping (false: pwrite fallback).
    pub fn is_mmio(&self) -> bool {
        matches!(self.kind, DoorbellKind::Mmio { .. })
    }
    /// Memory type of the mapping the store goes through.
    pub fn memory_type(&self) -> MemoryType {
        self.memory_type
    }
}

impl std::fmt::Debug for VfioDoorbell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VfioDoorbell")
            .field("offset", &format_args!("{:#x}", self.offset))
            .field("mmio", &self.is_mmio())
            .field("memory_type", &self.memory_type)
            .finish()
    }
}

impl Doorbell for VfioDoorbell {
    #[inline]
    fn ring(&mut self, value: u32) {
        match &self.kind {
            DoorbellKind::Mmio { reg, .. } => {
                reg.write(value);
                if self.wc {
                    nvme_core::wc_flush();
                }
            }
            DoorbellKind::Pwrite { dev, at } => {
                if let Err(e) = rw_write(&*dev.device, *at, &value.to_ne_bytes()) {
                    if !dev.is_removed() {
                        tracing::error!("{}: doorbell pwrite: {e}", dev.address);
                    }
                }
            }
        }
    }
}

/// Register access failures cannot be returned through [`Hardware`]: they
/// are logged, reads return all-ones (what a PCI read of a dead device
/// returns, which `nvme-core` already has to treat as "controller gone"), and
/// writes are dropped. They only happen for offsets outside BAR0 or when the
/// kernel refuses a pread/pwrite.
// SAFETY: the device sits alone in an IOMMU container of its own (type1):
// it can reach host memory only at IOVAs this value mapped for the
// `DmaBuffer`s it handed out, each unmapped before its memory is released.
#[allow(unsafe_code)]
unsafe impl Hardware for VfioDevice {
    type Dma = DmaBuffer;
    type Doorbell = VfioDoorbell;
    type DeviceMem = VfioDeviceMemory;
    type Info = VfioDeviceInfo;

    fn function_reset(&self) -> Result<(), HwError> {
        if !self.info.inner.reset_supported {
            return Err(HwError::msg(format!(
                "{}: the device does not support VFIO_DEVICE_RESET",
                self.info.inner.address
            )));
        }
        self.info
            .inner
            .device
            .with_file(crate::sys::device_reset)
            .and_then(|r| r)
            .map_err(|e| {
                HwError::msg(format!(
                    "{}: VFIO_DEVICE_RESET failed: {e}",
                    self.info.inner.address
                ))
            })
    }
    fn set_bus_master(&self, enable: bool) -> Result<(), HwError> {
        let inner = &self.info.inner;
        if inner.is_removed() {
            return Err(HwError::msg(format!(
                "{}: the device was removed",
                inner.address
            )));
        }
        inner.set_bus_master(enable).map_err(|e| {
            HwError::msg(format!(
                "{}: switching Bus Master Enable {} failed: {e}",
                inner.address,
                if enable { "on" } else { "off" }
            ))
        })
    }
    fn info(&self) -> VfioDeviceInfo {
        self.info.clone()
    }

    #[inline]
    fn read32(&self, offset: usize) -> u32 {
        self.info
            .inner
            .bar0
            .read32(&*self.info.inner.device, offset as u64)
            .unwrap_or_else(|e| {
                self.reg_error("read32", offset, &e);
                u32::MAX
            })
    }

    #[inline]
    fn read64(&self, offset: usize) -> u64 {
        self.info
            .inner
            .bar0
            .read64(&*self.info.inner.device, offset as u64)
            .unwrap_or_else(|e| {
                self.reg_error("read64", offset, &e);
                u64::MAX
            })
    }

    #[inline]
    fn write32(&self, offset: usize, value: u32) {
        if let Err(e) = self
            .inner
            .bar0
            .write32(&*self.info.inner.device, offset as u64, value)
        {
            self.reg_error("write32", offset, &e);
        }
    }

    #[inline]
    fn write64(&self, offset: usize, value: u64) {
        if let Err(e) = self
            .inner
            .bar0
            .write64(&*self.info.inner.device, offset as u64, value)
        {
            self.reg_error("write64", offset, &e);
        }
    }

    fn doorbell(&self, offset: usize) -> Result<VfioDoorbell, HwError> {
        Ok(self.doorbell_at(offset)?)
    }

    fn map_device_memory(
        &self,
        bar: u8,
        offset: u64,
        len: u64,
    ) -> Result<VfioDeviceMemory, HwError> {
        Ok(self.map_device_memory_at(bar, offset, len)?)
    }

    fn bar_address(&self, bar: u8) -> Result<u64, HwError> {
        Ok(self.bar_bus_address(bar)?)
    }

    /// From the store-width quirk table (`wc::STORE_QUIRKS` in this crate),
    /// keyed by PCI vendor/device (8 bytes for devices not listed).
    fn max_device_store(&self) -> usize {
        wc::max_store_for(self.info.inner.vendor_id, self.info.inner.device_id)
    }

    fn alloc_dma(&self, len: usize) -> Result<DmaBuffer, HwError> {
        Ok(self.allocate_dma(len)?)
    }

    /// Called once, from the device's watcher thread, when VFIO's request
    /// interrupt fires (the kernel wants the device back: hot-unplug or
    /// unbind) or an access to a BAR mapping faulted (the device is gone),
    /// after every BAR mapping reads all ones and writes nowhere; the device
    /// fd is closed right after it returns. Called at once if that already
    /// happened. Never called if the watcher could not be started (logged
    /// at open).
    fn watch_removal(&self, on_removal: Box<dyn Fn() + Send + Sync + 'static>) {
        match &self.info.inner.watcher {
            Some(w) => w.removal.set_hook(on_removal),
            None => drop(on_removal),
        }
    }
}

// `Hardware` requires Send + Sync; `Doorbell` requires Send.
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<VfioDevice>();
    assert_send_sync::<VfioDoorbell>();
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_convert_to_hw_error() {
        let e: HwError = VfioError::InvalidDmaLength { len: 0 }.into();
        assert!(e.to_string().contains("invalid DMA allocation length 0"));
        // The typed error survives, also through nvme_core::Error.
        assert!(matches!(
            e.downcast_ref::<VfioError>(),
            Some(VfioError::InvalidDmaLength { len: 0 })
        ));
        let core: nvme_core::Error = e.into();
        let nvme_core::Error::Hardware(hw) = &core else {
            panic!("{core:?}")
        };
        assert!(hw.downcast_ref::<VfioError>().is_some());
    }
}
