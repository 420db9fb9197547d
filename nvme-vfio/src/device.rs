//! The device handle: opening, config space, BAR0 access, doorbells, and the
//! `nvme_core::hw::Hardware` implementation.

use std::ffi::CString;
use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use nvme_core::hw::{Doorbell, Hardware, HwError, MemoryType};
use vfio_bindings::bindings::vfio::VFIO_REGION_INFO_FLAG_MMAP;
use vfio_bindings::bindings::vfio::{
    VFIO_DEVICE_FLAGS_PCI, VFIO_DEVICE_FLAGS_RESET, VFIO_PCI_CONFIG_REGION_INDEX,
    VFIO_REGION_INFO_FLAG_READ, VFIO_REGION_INFO_FLAG_WRITE,
};

use crate::caps::{RegionCaps, RegionInfo};
use crate::container::Container;
use crate::devmem::{self, MemBar, PlanCtx, VfioDeviceMemory};
use crate::dma::{DmaBuffer, DmaStats};
use crate::error::VfioError;
use crate::iova::IovaRange;
use crate::pci::PciAddress;
use crate::region::{mmap_plan, query_region, rw_write, Bar, MappingRecord, Span};
use crate::sys::{self, Reg32};
use crate::sysfs::{self, SysfsDevice};
use crate::wc::{self, BarFacts, BarResource, PatSource, VfioWcSupport};

/// PCI command register offset and bits.
const PCI_COMMAND: u64 = 0x04;
const PCI_COMMAND_MEMORY: u16 = 1 << 1;
const PCI_COMMAND_MASTER: u16 = 1 << 2;

/// How to open a device. `OpenOptions::new().open(addr)` is the same as
/// [`VfioDevice::open`].
#[derive(Clone, Debug)]
pub struct OpenOptions {
    sysfs_root: PathBuf,
    dev_vfio: PathBuf,
    reset: bool,
    hugepages: bool,
    debugfs_root: PathBuf,
    write_combining: bool,
    touch_bar_first: Option<u8>,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            sysfs_root: "/sys".into(),
            dev_vfio: "/dev/vfio".into(),
            reset: true,
            hugepages: true,
            debugfs_root: "/sys/kernel/debug".into(),
            write_combining: true,
            touch_bar_first: None,
        }
    }
}

impl OpenOptions {
    /// Defaults: `/sys`, `/dev/vfio`, reset at open, hugepages when possible.
    pub fn new() -> Self {
        Self::default()
    }
    /// Where sysfs is mounted (tests point this at a fake tree).
    pub fn sysfs_root(&mut self, root: impl Into<PathBuf>) -> &mut Self {
        self.sysfs_root = root.into();
        self
    }
    /// Where the VFIO device nodes live (normally `/dev/vfio`).
    pub fn dev_vfio(&mut self, dir: impl Into<PathBuf>) -> &mut Self {
        self.dev_vfio = dir.into();
        self
    }
    /// Issue VFIO_DEVICE_RESET at open when the device supports it (default true).
    pub fn reset(&mut self, yes: bool) -> &mut Self {
        self.reset = yes;
        self
    }
    /// Try 2 MiB hugepages for DMA buffers of 2 MiB or more (default true).
    pub fn hugepages(&mut self, yes: bool) -> &mut Self {
        self.hugepages = yes;
        self
    }
    /// Where debugfs is mounted (default `/sys/kernel/debug`). The driver
    /// reads `x86/pat_memtype_list` there to verify memory types, only if it
    /// is present and readable; it never mounts anything.
    pub fn debugfs_root(&mut self, dir: impl Into<PathBuf>) -> &mut Self {
        self.debugfs_root = dir.into();
        self
    }
    /// Ask for write-combining for doorbells and device memory (default
    /// true); false maps everything uncached.
    pub fn write_combining(&mut self, yes: bool) -> &mut Self {
        self.write_combining = yes;
        self
    }
    /// Test and diagnostics knob: map BAR `bar` (1..=5) through vfio
    /// *before* the write-combining plan runs, the way an earlier user of
    /// the BAR would. On x86 vfio's mapping fixes the range's PAT type, so
    /// the later WC attempt is refused or downgraded; the driver must notice
    /// and fall back to uncached, and say so in [`VfioDevice::mappings`].
    pub fn touch_bar_first(&mut self, bar: u8) -> &mut Self {
        self.touch_bar_first = Some(bar);
        self
    }
    /// Run the sysfs checks only (exists, IOMMU group, bound to vfio-pci,
    /// group viable) without opening anything.
    pub fn check(&self, address: PciAddress) -> Result<SysfsDevice, VfioError> {
        sysfs::probe(&self.sysfs_root, &address)
    }
    /// Open the device. See [`VfioDevice::open`].
    pub fn open(&self, address: PciAddress) -> Result<VfioDevice, VfioError> {
        VfioDevice::open_with(address, self)
    }
}

/// An NVMe PCI function opened through VFIO. Implements [`Hardware`].
///
/// Cheap to clone (all clones share one open device). Doorbells and DMA
/// buffers keep what they need alive, so they may outlive this handle.
#[derive(Clone, Debug)]
pub struct VfioDevice {
    inner: Arc<DeviceInner>,
}

/// Field order is teardown order (Rust drops fields top to bottom), after
/// `Drop::drop` has cleared Bus Master:
/// 1. `bar0`: munmap BAR0 (doorbells hold an `Arc<DeviceInner>`, so none is left);
/// 2. `device`: close the device fd (vfio-pci disables and, if it can, resets the function);
/// 3. `container`: drop our `Arc`; when the last DMA buffer is gone too,
///    unset the container, close the group fd, close the container fd.
#[derive(Debug)]
struct DeviceInner {
    bar0: Bar,
    /// Memory BARs other than BAR0, mapped by the WC plan (unmapped before
    /// the device fd closes).
    mem_bars: Vec<MemBar>,
    device: File,
    container: Arc<Container>,
    address: PciAddress,
    sysfs: SysfsDevice,
    config_offset: u64,
    config_size: u64,
    vendor_id: u16,
    device_id: u16,
    bar_sizes: [u64; 6],
    /// sysfs `resource` lines of BAR0..BAR5 (CPU physical addresses).
    bar_resources: [Option<BarResource>; 6],
    /// Bus addresses of the memory BARs from config space.
    bar_bus: [Option<u64>; 6],
    /// IOVA ranges withheld from the allocator (the device's own BARs).
    iova_reserved: Vec<IovaRange>,
    /// The mapping report: BAR0 ranges, then each memory BAR's.
    records: Vec<MappingRecord>,
    /// Result of the vfio WC probe (route 1).
    vfio_wc: VfioWcSupport,
    reset_done: bool,
    reset_supported: bool,
    num_irqs: u32,
}

impl Drop for DeviceInner {
    fn drop(&mut self) {
        // Stop the function from mastering the bus before anything is torn
        // down (vfio-pci also does this on release; doing it here first
        // makes it independent of when the kernel releases the fd).
        match self.config_read_u16(PCI_COMMAND) {
            Ok(cmd) => {
                if let Err(e) = self.config_write_u16(PCI_COMMAND, cmd & !PCI_COMMAND_MASTER) {
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
    fn config_read(&self, offset: u64, buf: &mut [u8]) -> Result<(), VfioError> {
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
        use std::os::unix::fs::FileExt;
        match self.device.read_at(buf, self.config_offset + offset) {
            Ok(n) if n == len => Ok(()),
            Ok(n) => Err(err(format!("short read ({n} bytes)"))),
            Err(e) => Err(err(e.to_string())),
        }
    }

    fn config_write(&self, offset: u64, buf: &[u8]) -> Result<(), VfioError> {
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
        rw_write(&self.device, self.config_offset + offset, buf).map_err(err)
    }

    fn config_read_u16(&self, offset: u64) -> Result<u16, VfioError> {
        let mut b = [0u8; 2];
        self.config_read(offset, &mut b)?;
        Ok(u16::from_le_bytes(b))
    }

    fn config_write_u16(&self, offset: u64, v: u16) -> Result<(), VfioError> {
        self.config_write(offset, &v.to_le_bytes())
    }
}

impl VfioDevice {
    /// Open the PCI function at `address` through VFIO, with default
    /// [`OpenOptions`].
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

    /// [`VfioDevice::open`] with explicit options.
    pub fn open_with(address: PciAddress, opts: &OpenOptions) -> Result<VfioDevice, VfioError> {
        let sysfs = sysfs::probe(&opts.sysfs_root, &address)?;
        let container = Arc::new(Container::open(
            &opts.dev_vfio,
            &opts.sysfs_root,
            &sysfs,
            opts.hugepages,
        )?);

        let name = CString::new(address.to_string()).map_err(|_| VfioError::InvalidPciAddress {
            input: address.to_string(),
            reason: "contains NUL",
        })?;
        let device = sys::group_get_device_fd(&container.group, &name)?;
        let info = sys::device_get_info(&device)?;
        if info.flags & VFIO_DEVICE_FLAGS_PCI == 0 {
            return Err(VfioError::UnsupportedDevice {
                address,
                reason: "VFIO says this is not a PCI device".into(),
            });
        }
        if info.num_regions <= VFIO_PCI_CONFIG_REGION_INDEX {
            return Err(VfioError::UnsupportedDevice {
                address,
                reason: format!(
                    "VFIO reports only {} regions (no config space)",
                    info.num_regions
                ),
            });
        }

        let (cfg, _) = query_region(&device, VFIO_PCI_CONFIG_REGION_INDEX)?;

        let reset_supported = info.flags & VFIO_DEVICE_FLAGS_RESET != 0;
        let mut reset_done = false;
        if opts.reset && reset_supported {
            match sys::device_reset(&device) {
                Ok(()) => reset_done = true,
                Err(e) => tracing::warn!(
                    "{address}: VFIO_DEVICE_RESET failed ({e}); continuing without it"
                ),
            }
        } else if opts.reset {
            tracing::info!("{address}: device does not support VFIO_DEVICE_RESET; relying on the NVMe controller reset");
        }

        let mut bar_sizes = [0u64; 6];
        let mut regions: Vec<Option<(RegionInfo, RegionCaps)>> = vec![None; 6];
        for (i, size) in bar_sizes.iter_mut().enumerate() {
            match query_region(&device, i as u32) {
                Ok((ri, caps)) => {
                    *size = ri.size;
                    regions[i] = Some((ri, caps));
                }
                Err(e) => tracing::debug!("{address}: BAR{i} info: {e}"),
            }
        }
        let Some((b0, b0caps)) = regions[0].clone().filter(|(ri, _)| ri.size > 0) else {
            return Err(VfioError::UnsupportedDevice {
                address,
                reason: "BAR0 is absent or empty".into(),
            });
        };
        let rw = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE;
        if b0.flags & rw != rw {
            return Err(VfioError::UnsupportedDevice {
                address,
                reason: "BAR0 is not readable and writable".into(),
            });
        }

        // The write-combining plan runs before vfio maps, reads or writes any
        // memory BAR: on x86 the first mapping of a physical range fixes its
        // PAT type, and vfio's first access ioremaps the whole BAR uncached.
        let bar_resources = wc::read_bar_resources(&sysfs.path);
        let page = sys::page_size() as u64;
        let facts: Vec<BarFacts> = (0..6u8)
            .map(|i| {
                let (size, whole_mmap) = match &regions[i as usize] {
                    Some((ri, caps)) => (
                        ri.size,
                        ri.flags & VFIO_REGION_INFO_FLAG_MMAP != 0
                            && mmap_plan(ri, caps, page)
                                == [Span {
                                    start: 0,
                                    len: ri.size,
                                }],
                    ),
                    None => (0, false),
                };
                let wc_file = sysfs.path.join(format!("resource{i}_wc"));
                BarFacts {
                    index: i,
                    size,
                    resource: bar_resources[i as usize],
                    wc_file: wc_file.exists().then_some(wc_file),
                    whole_mmap,
                }
            })
            .collect();
        let vfio_wc = devmem::probe_vfio_wc(&device);
        let ctx = PlanCtx {
            pat: PatSource::new(&opts.debugfs_root),
            vfio: vfio_wc.clone(),
            wc_enabled: opts.write_combining,
        };
        let mut pre: Option<Bar> = None;
        if let Some(n) = opts.touch_bar_first.filter(|n| (1..6).contains(n)) {
            if let Some((ri, caps)) = &regions[n as usize] {
                tracing::info!(
                    "{address}: mapping BAR{n} through vfio before the WC plan (touch_bar_first)"
                );
                pre = Some(Bar::map(&device, &address, n, ri, caps));
            }
        }
        let mut mem_bars = Vec::new();
        for f in facts.iter().skip(1) {
            let Some((ri, caps)) = &regions[f.index as usize] else {
                continue;
            };
            // Memory BARs only (sysfs says so, or, without sysfs, VFIO can map it).
            let is_mem = match &f.resource {
                Some(r) => r.is_mem(),
                None => ri.flags & VFIO_REGION_INFO_FLAG_MMAP != 0,
            };
            if f.size == 0 || !is_mem {
                continue;
            }
            let pre_bar = if pre.as_ref().is_some_and(|b| b.index == f.index) {
                pre.take()
            } else {
                None
            };
            mem_bars.push(devmem::map_mem_bar(
                &ctx, &device, &address, f, ri, caps, pre_bar,
            ));
        }

        let bar0 = Bar::map(&device, &address, 0, &b0, &b0caps);
        let doorbell_why = wc::doorbell_reason(
            &facts[0],
            &vfio_wc,
            cfg!(any(target_arch = "x86_64", target_arch = "x86")),
        );
        let mut records =
            devmem::bar0_records(&ctx, &address, &facts[0], &bar0.records, &doorbell_why);
        for m in &mem_bars {
            records.extend(m.records.iter().cloned());
        }

        let mut inner = DeviceInner {
            bar0,
            mem_bars,
            device,
            container,
            address,
            sysfs,
            config_offset: cfg.offset,
            config_size: cfg.size,
            vendor_id: 0,
            device_id: 0,
            bar_sizes,
            bar_resources,
            bar_bus: [None; 6],
            iova_reserved: Vec::new(),
            records,
            vfio_wc,
            reset_done,
            reset_supported,
            num_irqs: info.num_irqs,
        };
        // Bus addresses of the BARs (config space as the device decodes it),
        // and keep the IOVA allocator out of every BAR range: the controller
        // takes a data pointer inside its CMB's bus range as a CMB address
        // before any IOMMU translation.
        let mut cfg_bars = [0u8; 0x28];
        if inner.config_read(0, &mut cfg_bars).is_ok() {
            inner.bar_bus = wc::parse_config_bars(&cfg_bars);
        }
        inner.iova_reserved =
            bar_iova_holes(&inner.bar_resources, &inner.bar_bus, &inner.bar_sizes);
        {
            let mut a = inner
                .container
                .iova
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            for r in &inner.iova_reserved {
                a.reserve(*r);
            }
        }
        let mut ids = [0u8; 4];
        inner.config_read(0, &mut ids)?;
        inner.vendor_id = u16::from_le_bytes([ids[0], ids[1]]);
        inner.device_id = u16::from_le_bytes([ids[2], ids[3]]);
        let cmd = inner.config_read_u16(PCI_COMMAND)?;
        inner.config_write_u16(PCI_COMMAND, cmd | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER)?;

        for m in &inner.records {
            tracing::debug!("{address}: {m}");
        }
        tracing::info!(
            "{address}: opened via VFIO (vendor {:04x} device {:04x}, IOMMU group {}, BAR0 {:#x} bytes, reset: {})",
            inner.vendor_id,
            inner.device_id,
            inner.container.group_number,
            inner.bar0.size,
            inner.reset_done
        );
        Ok(VfioDevice {
            inner: Arc::new(inner),
        })
    }

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
    /// Number of interrupt indexes VFIO reports (unused for now: we poll).
    pub fn num_irqs(&self) -> u32 {
        self.inner.num_irqs
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
    /// Map `len` bytes at `offset` of BAR `bar` (what
    /// [`Hardware::map_device_memory`] calls, with the typed error).
    pub fn map_device_memory_at(
        &self,
        bar: u8,
        offset: u64,
        len: u64,
    ) -> Result<VfioDeviceMemory, VfioError> {
        let err = |reason: String| VfioError::DeviceMemory {
            address: self.inner.address,
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
            self.inner.bar0.window(offset, len)
        } else {
            match self.inner.mem_bars.iter().find(|m| m.index == bar) {
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
            _keep: Arc::clone(&self.inner) as Arc<dyn Send + Sync>,
        })
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
        self.inner.config_read(u64::from(offset), buf)
    }
    /// Write `buf` to PCI config space at `offset`.
    pub fn config_write(&self, offset: u16, buf: &[u8]) -> Result<(), VfioError> {
        self.inner.config_write(u64::from(offset), buf)
    }
    /// Read a little-endian u16 from config space.
    pub fn config_read_u16(&self, offset: u16) -> Result<u16, VfioError> {
        self.inner.config_read_u16(u64::from(offset))
    }
    /// Read a little-endian u32 from config space.
    pub fn config_read_u32(&self, offset: u16) -> Result<u32, VfioError> {
        let mut b = [0u8; 4];
        self.config_read(offset, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }
    /// Write a little-endian u16 to config space.
    pub fn config_write_u16(&self, offset: u16, v: u16) -> Result<(), VfioError> {
        self.inner.config_write_u16(u64::from(offset), v)
    }

    /// Allocate zeroed DMA memory (what [`Hardware::alloc_dma`] calls, with
    /// the typed error).
    pub fn allocate_dma(&self, len: usize) -> Result<DmaBuffer, VfioError> {
        DmaBuffer::allocate(&self.inner.container, len)
    }

    /// A doorbell handle for the register at `offset` in BAR0 (what
    /// [`Hardware::doorbell`] calls, with the typed error).
    pub fn doorbell_at(&self, offset: usize) -> Result<VfioDoorbell, VfioError> {
        let bar = &self.inner.bar0;
        let off = offset as u64;
        if let Some((reg, mt)) = bar.reg32(off) {
            return Ok(VfioDoorbell {
                kind: DoorbellKind::Mmio {
                    reg,
                    _dev: Arc::clone(&self.inner),
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
            self.inner.address
        );
        Ok(VfioDoorbell {
            kind: DoorbellKind::Pwrite {
                dev: Arc::clone(&self.inner),
                at: bar.file_offset + off,
            },
            wc: false,
            offset,
            memory_type: MemoryType::Uncached,
        })
    }

    fn reg_error(&self, op: &str, offset: usize, e: &str) {
        tracing::error!("{}: {op} BAR0+{offset:#x}: {e}", self.inner.address);
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
                    nvme_core::barrier::wc_flush();
                }
            }
            DoorbellKind::Pwrite { dev, at } => {
                if let Err(e) = rw_write(&dev.device, *at, &value.to_ne_bytes()) {
                    tracing::error!("{}: doorbell pwrite: {e}", dev.address);
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
impl Hardware for VfioDevice {
    type Dma = DmaBuffer;
    type Doorbell = VfioDoorbell;
    type DeviceMem = VfioDeviceMemory;

    #[inline]
    fn read32(&self, offset: usize) -> u32 {
        self.inner
            .bar0
            .read32(&self.inner.device, offset as u64)
            .unwrap_or_else(|e| {
                self.reg_error("read32", offset, &e);
                u32::MAX
            })
    }

    #[inline]
    fn read64(&self, offset: usize) -> u64 {
        self.inner
            .bar0
            .read64(&self.inner.device, offset as u64)
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
            .write32(&self.inner.device, offset as u64, value)
        {
            self.reg_error("write32", offset, &e);
        }
    }

    #[inline]
    fn write64(&self, offset: usize, value: u64) {
        if let Err(e) = self
            .inner
            .bar0
            .write64(&self.inner.device, offset as u64, value)
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

    /// From [`wc::STORE_QUIRKS`], keyed by PCI vendor/device (8 bytes for
    /// devices not listed).
    fn max_device_store(&self) -> usize {
        wc::max_store_for(self.inner.vendor_id, self.inner.device_id)
    }

    fn alloc_dma(&self, len: usize) -> Result<DmaBuffer, HwError> {
        Ok(self.allocate_dma(len)?)
    }
}

/// The IOVA ranges to withhold: every memory BAR's range, at its sysfs
/// (CPU physical) address and at its config-space (bus) address when they
/// differ. The bus range's length is the BAR size VFIO reports.
pub(crate) fn bar_iova_holes(
    resources: &[Option<BarResource>; 6],
    bus: &[Option<u64>; 6],
    sizes: &[u64; 6],
) -> Vec<IovaRange> {
    let mut v = Vec::new();
    for i in 0..6 {
        let res = resources[i].filter(|r| r.is_mem());
        if let Some(r) = res {
            v.push(IovaRange {
                start: r.start,
                end: r.end,
            });
        }
        let len = res.map_or(sizes[i], |r| r.len());
        if let (Some(b), true) = (bus[i], len > 0) {
            if let Some(end) = b.checked_add(len - 1) {
                let r = IovaRange { start: b, end };
                if !v.contains(&r) {
                    v.push(r);
                }
            }
        }
    }
    v.sort_by_key(|r| r.start);
    v
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
    use crate::sysfs::tests::{FakeSys, TempDir};
    use crate::sysfs::NVME_CLASS;

    fn fake() -> (FakeSys, TempDir, PciAddress) {
        let s = FakeSys::new();
        s.device("0000:01:00.0", NVME_CLASS, Some("vfio-pci"), Some(4));
        (s, TempDir::new("devvfio"), "0000:01:00.0".parse().unwrap())
    }

    #[test]
    fn missing_dev_vfio_says_modprobe() {
        let (s, dev, addr) = fake();
        let e = OpenOptions::new()
            .sysfs_root(s.root())
            .dev_vfio(&dev.0)
            .open(addr)
            .unwrap_err();
        assert!(matches!(e, VfioError::VfioNotLoaded { .. }), "{e:?}");
        assert!(e.to_string().contains("modprobe vfio-pci"), "{e}");
    }

    #[test]
    fn non_vfio_node_is_an_ioctl_error_not_a_panic() {
        // A regular file where /dev/vfio/vfio should be: the first ioctl fails with ENOTTY.
        let (s, dev, addr) = fake();
        std::fs::write(dev.0.join("vfio"), b"").unwrap();
        let e = OpenOptions::new()
            .sysfs_root(s.root())
            .dev_vfio(&dev.0)
            .open(addr)
            .unwrap_err();
        assert!(
            matches!(
                e,
                VfioError::Ioctl {
                    op: "VFIO_GET_API_VERSION",
                    ..
                }
            ),
            "{e:?}"
        );
    }

    #[test]
    fn node_missing_and_noiommu_messages() {
        let dev = TempDir::new("devvfio");
        let addr: PciAddress = "0000:01:00.0".parse().unwrap();
        let e = VfioError::GroupNodeMissing {
            address: addr,
            group: 4,
            path: dev.0.join("4"),
        };
        assert!(e.to_string().contains("bound to vfio-pci"), "{e}");
        let e = VfioError::NoIommuMode {
            path: dev.0.join("noiommu-4"),
        };
        assert!(e.to_string().contains("intel_iommu=on"), "{e}");
    }

    #[test]
    fn sysfs_errors_come_first() {
        let s = FakeSys::new();
        let dev = TempDir::new("devvfio");
        let e = OpenOptions::new()
            .sysfs_root(s.root())
            .dev_vfio(&dev.0)
            .open("0000:09:00.0".parse().unwrap())
            .unwrap_err();
        assert!(matches!(e, VfioError::DeviceNotFound { .. }), "{e:?}");
        let (s, _dev, addr) = fake();
        let d = OpenOptions::new().sysfs_root(s.root()).check(addr).unwrap();
        assert_eq!(d.iommu_group, 4);
    }

    #[test]
    fn bar_holes_cover_sysfs_and_bus_addresses() {
        let res = wc::parse_resource_file(
            "0x00000000fe600000 0x00000000fe603fff 0x0000000000140204\n\
             0x0000000000000000 0x0000000000000000 0x0000000000000000\n\
             0x0000000800000000 0x0000000800ffffff 0x000000000014220c\n\
             0x000000000000c000 0x000000000000c0ff 0x0000000000040101\n",
        );
        let sizes = [0x4000, 0, 16 << 20, 0x100, 0, 0];
        // Same bus and CPU addresses (x86): one hole per memory BAR, I/O skipped.
        let bus = [
            Some(0xfe60_0000),
            None,
            Some(0x8_0000_0000),
            None,
            None,
            None,
        ];
        let h = bar_iova_holes(&res, &bus, &sizes);
        assert_eq!(
            h,
            vec![
                IovaRange {
                    start: 0xfe60_0000,
                    end: 0xfe60_3fff
                },
                IovaRange {
                    start: 0x8_0000_0000,
                    end: 0x8_00ff_ffff
                }
            ]
        );
        // A bus address different from the CPU address: both are withheld.
        let bus = [None, None, Some(0x4000_0000), None, None, None];
        let h = bar_iova_holes(&res, &bus, &sizes);
        assert_eq!(h.len(), 3);
        assert!(h.contains(&IovaRange {
            start: 0x4000_0000,
            end: 0x40ff_ffff
        }));
        // No sysfs at all: the bus address and VFIO's size.
        let h = bar_iova_holes(&[None; 6], &bus, &sizes);
        assert_eq!(
            h,
            vec![IovaRange {
                start: 0x4000_0000,
                end: 0x40ff_ffff
            }]
        );
        // The allocator built from the container's ranges never hands them out.
        let mut a = crate::iova::IovaAllocator::new(
            &[IovaRange {
                start: 0,
                end: (1 << 39) - 1,
            }],
            1 << 20,
        );
        for r in &h {
            a.reserve(*r);
        }
        while let Some(x) = a.alloc(1 << 24, 1 << 24) {
            assert!(x + (1 << 24) <= 0x4000_0000 || x > 0x40ff_ffff, "{x:#x}");
        }
    }

    #[test]
    fn errors_convert_to_hw_error() {
        let e: HwError = VfioError::InvalidDmaLength { len: 0 }.into();
        assert!(e.to_string().contains("invalid DMA allocation length 0"));
    }
}
