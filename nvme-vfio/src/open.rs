//! Opening a device: [`OpenOptions`] and the bring-up, one named step per
//! stage of [`VfioDevice::open`]. The steps run in this order, and the order
//! matters: the write-combining plan must run before vfio maps, reads or
//! writes any memory BAR, and Bus Master is enabled last.
//!
//! 1. `Bringup::new`: the sysfs checks (a function whose PCI class is not
//!    NVMe is refused here, before anything is opened or reset);
//! 2. `open_container`: `/dev/vfio/vfio` and the group (`Container::open`);
//! 3. `open_device_fd`: the device fd, its info and config-space region;
//! 4. `reset`: `VFIO_DEVICE_RESET` when asked for and supported;
//! 5. `query_bars`: VFIO's region info of BAR0..BAR5, BAR0 checked;
//! 6. `plan_and_map_bars`: the WC plan ([`WcPlan`]) made and carried out;
//! 7. `read_config_header`: vendor/device ids and the BARs' bus addresses;
//! 8. `reserve_bar_iovas`: the BARs' ranges withheld from IOVA allocation;
//! 9. `DeviceInner` built, complete, then `enable_bus_master`.

use std::ffi::CString;
use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;

use vfio_bindings::bindings::vfio::{
    vfio_device_info, VFIO_DEVICE_FLAGS_PCI, VFIO_DEVICE_FLAGS_RESET, VFIO_PCI_CONFIG_REGION_INDEX,
    VFIO_REGION_INFO_FLAG_READ, VFIO_REGION_INFO_FLAG_WRITE,
};

use crate::container::Container;
use crate::device::{DeviceFd, DeviceInner, VfioDevice};
use crate::devmem::{BarRegions, MappedBars, Region, WcPlan};
use crate::error::VfioError;
use crate::iova::IovaRange;
use crate::pci::PciAddress;
use crate::region::{query_region, Bar};
use crate::removal::Watcher;
use crate::sys;
use crate::sysfs::{self, SysfsDevice};
use crate::wc::{self, BarResource};

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
    allow_any_class: bool,
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
            allow_any_class: false,
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
    /// and fall back to uncached, and say so in [`VfioDeviceInfo::mappings`](crate::VfioDeviceInfo::mappings).
    pub fn touch_bar_first(&mut self, bar: u8) -> &mut Self {
        self.touch_bar_first = Some(bar);
        self
    }
    /// Open a function whatever PCI class it reports (default false: only
    /// class 0x010802, NVMe, is accepted, and any other function is refused
    /// with [`VfioError::NotNvme`] before anything is opened or reset).
    /// For NVMe controllers that report another class, such as Apple's
    /// (0x018002, which Linux's nvme driver matches by vendor and device id).
    /// The NVMe bring-up still refuses a device whose CAP register does not
    /// look like NVMe, but only after VFIO has opened and reset it.
    pub fn allow_any_class(&mut self, yes: bool) -> &mut Self {
        self.allow_any_class = yes;
        self
    }
    /// Run the sysfs checks only (exists, NVMe class, IOMMU group, bound to
    /// vfio-pci, group viable) without opening anything.
    pub fn check(&self, address: PciAddress) -> Result<SysfsDevice, VfioError> {
        sysfs::probe(&self.sysfs_root, &address, self.allow_any_class)
    }
    /// Open the device with these options: the steps of
    /// [`VfioDevice::open`], each a method of the bring-up below.
    pub fn open(&self, address: PciAddress) -> Result<VfioDevice, VfioError> {
        Bringup::new(self, address)?.run()
    }
}

/// What the bring-up steps share: the options, the address, and what sysfs
/// said. Each step returns what it produced; [`Bringup::run`] threads the
/// results through and builds the device from them once.
struct Bringup<'o> {
    opts: &'o OpenOptions,
    address: PciAddress,
    sysfs: SysfsDevice,
}

/// What the config-space header says, read once the BARs are mapped.
struct ConfigHeader {
    vendor_id: u16,
    device_id: u16,
    /// Bus addresses of the memory BARs (`None` if the header was unreadable).
    bar_bus: [Option<u64>; 6],
}

impl<'o> Bringup<'o> {
    /// Step 1: the sysfs checks (device exists, is an NVMe controller by
    /// its PCI class, IOMMU group, bound to vfio-pci, group viable), before
    /// any device node is opened, so before any reset.
    fn new(opts: &'o OpenOptions, address: PciAddress) -> Result<Self, VfioError> {
        let sysfs = sysfs::probe(&opts.sysfs_root, &address, opts.allow_any_class)?;
        Ok(Bringup {
            opts,
            address,
            sysfs,
        })
    }

    /// All the steps, in order; the device is built once, complete.
    fn run(self) -> Result<VfioDevice, VfioError> {
        let container = self.open_container()?;
        let (device, info) = self.open_device_fd(&container)?;
        let reset_supported = info.flags & VFIO_DEVICE_FLAGS_RESET != 0;
        let (reset_done, regions, bars) = {
            // Nothing can close the fd during the bring-up.
            let file = device.file().map_err(|source| VfioError::Ioctl {
                op: "VFIO_GROUP_GET_DEVICE_FD",
                source,
            })?;
            let reset_done = self.reset(&file, reset_supported);
            let (regions, bar0) = self.query_bars(&file)?;
            let bars = self.plan_and_map_bars(&file, &regions, &bar0);
            (reset_done, regions, bars)
        };
        let bar_sizes: [u64; 6] =
            std::array::from_fn(|i| regions[i].as_ref().map_or(0, |(ri, _)| ri.size));
        let header = self.read_config_header(&device)?;
        let iova_reserved =
            self.reserve_bar_iovas(&container, &bars.resources, &header.bar_bus, &bar_sizes);

        let address = self.address;
        let MappedBars {
            bar0,
            mem_bars,
            records,
            resources,
            vfio_wc,
        } = bars;
        let device = Arc::new(device);
        // The removal watcher: request/error interrupts and caught faults.
        let watcher = match Watcher::start(
            address,
            &device,
            DeviceInner::all_maps(&bar0, &mem_bars),
        ) {
            Ok(w) => {
                let (req, err) = w.removal.channels;
                tracing::debug!(
                    "{address}: removal watcher started (request interrupt: {req}, error interrupt: {err})"
                );
                Some(w)
            }
            Err(e) => {
                tracing::warn!("{address}: cannot start the removal watcher ({e}); removal will not be noticed");
                None
            }
        };
        let inner = DeviceInner {
            watcher,
            bar0,
            mem_bars,
            device,
            container,
            address,
            sysfs: self.sysfs,
            vendor_id: header.vendor_id,
            device_id: header.device_id,
            bar_sizes,
            bar_resources: resources,
            bar_bus: header.bar_bus,
            iova_reserved,
            records,
            vfio_wc,
            reset_done,
            reset_supported,
            num_irqs: info.num_irqs,
        };
        inner.enable_bus_master()?;

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
        Ok(VfioDevice::from_inner(inner))
    }

    /// Step 2: the container and the device's group, attached, with the
    /// IOMMU set (see `Container::open`).
    fn open_container(&self) -> Result<Arc<Container>, VfioError> {
        Ok(Arc::new(Container::open(
            &self.opts.dev_vfio,
            &self.opts.sysfs_root,
            &self.sysfs,
            self.opts.hugepages,
        )?))
    }

    /// Step 3: the device fd from the group, checked to be a PCI device with
    /// a config-space region, and that region's place in the fd.
    fn open_device_fd(
        &self,
        container: &Container,
    ) -> Result<(DeviceFd, vfio_device_info), VfioError> {
        let address = self.address;
        let name = CString::new(address.to_string()).map_err(|_| VfioError::InvalidPciAddress {
            input: address.to_string(),
            reason: "contains NUL",
        })?;
        let file = sys::group_get_device_fd(&container.group, &name)?;
        let info = sys::device_get_info(&file)?;
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
        let (cfg, _) = query_region(&file, VFIO_PCI_CONFIG_REGION_INDEX)?;
        Ok((DeviceFd::new(file, cfg.offset, cfg.size), info))
    }

    /// Step 4: VFIO_DEVICE_RESET, when the options ask for it and the device
    /// supports it. A failure is logged, not fatal. Returns whether it was done.
    fn reset(&self, device: &File, supported: bool) -> bool {
        let address = self.address;
        if self.opts.reset && supported {
            match sys::device_reset(device) {
                Ok(()) => return true,
                Err(e) => tracing::warn!(
                    "{address}: VFIO_DEVICE_RESET failed ({e}); continuing without it"
                ),
            }
        } else if self.opts.reset {
            tracing::info!("{address}: device does not support VFIO_DEVICE_RESET; relying on the NVMe controller reset");
        }
        false
    }

    /// Step 5: VFIO's info of BAR0..BAR5 (a failed query leaves the BAR
    /// out), and BAR0's, which must be present, readable and writable.
    fn query_bars(&self, device: &File) -> Result<(Vec<Option<Region>>, Region), VfioError> {
        let address = self.address;
        let mut regions: Vec<Option<Region>> = vec![None; 6];
        for (i, region) in regions.iter_mut().enumerate() {
            match query_region(device, i as u32) {
                Ok(r) => *region = Some(r),
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
        Ok((regions, (b0, b0caps)))
    }

    /// Step 6: make the write-combining plan and carry it out, before vfio
    /// maps, reads or writes any memory BAR (see [`WcPlan`]).
    fn plan_and_map_bars(&self, device: &File, regions: &BarRegions, bar0: &Region) -> MappedBars {
        let plan = WcPlan::new(
            device,
            &self.sysfs.path,
            regions,
            &self.opts.debugfs_root,
            self.opts.write_combining,
        );
        let pre = self.touch_bar_first(device, regions);
        plan.map_bars(device, &self.address, regions, bar0, pre)
    }

    /// The `touch_bar_first` test knob: map that BAR through vfio before the
    /// plan is carried out, the way an earlier user of the BAR would.
    fn touch_bar_first(&self, device: &File, regions: &BarRegions) -> Option<Bar> {
        let n = self.opts.touch_bar_first.filter(|n| (1..6).contains(n))?;
        let (ri, caps) = regions[n as usize].as_ref()?;
        tracing::info!(
            "{}: mapping BAR{n} through vfio before the WC plan (touch_bar_first)",
            self.address
        );
        Some(Bar::map(device, &self.address, n, ri, caps))
    }

    /// Step 7: the BARs' bus addresses (config space as the device decodes
    /// it; an unreadable header leaves them unknown) and the PCI ids.
    fn read_config_header(&self, device: &DeviceFd) -> Result<ConfigHeader, VfioError> {
        let mut cfg_bars = [0u8; 0x28];
        let bar_bus = if device.config_read(0, &mut cfg_bars).is_ok() {
            wc::parse_config_bars(&cfg_bars)
        } else {
            [None; 6]
        };
        let mut ids = [0u8; 4];
        device.config_read(0, &mut ids)?;
        Ok(ConfigHeader {
            vendor_id: u16::from_le_bytes([ids[0], ids[1]]),
            device_id: u16::from_le_bytes([ids[2], ids[3]]),
            bar_bus,
        })
    }

    /// Step 8: keep the IOVA allocator out of every BAR range: the
    /// controller takes a data pointer inside its CMB's bus range as a CMB
    /// address before any IOMMU translation. Returns the ranges withheld.
    fn reserve_bar_iovas(
        &self,
        container: &Container,
        resources: &[Option<BarResource>; 6],
        bus: &[Option<u64>; 6],
        sizes: &[u64; 6],
    ) -> Vec<IovaRange> {
        let reserved = bar_iova_holes(resources, bus, sizes);
        let mut a = container.iova.lock().unwrap_or_else(|e| e.into_inner());
        for r in &reserved {
            a.reserve(*r);
        }
        reserved
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sysfs::tests::{FakeSys, TempDir};
    use crate::sysfs::NVME_CLASS;
    use crate::wc;

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
    fn non_nvme_class_is_refused_before_any_node_is_opened() {
        // An AHCI function bound to vfio-pci in a viable group, and no
        // /dev/vfio at all: the class check must fail first (had the
        // bring-up gone on, it would be VfioNotLoaded from opening the
        // container, the step before the device fd and its reset).
        let s = FakeSys::new();
        s.device("0000:05:00.0", 0x010601, Some("vfio-pci"), Some(5));
        let dev = TempDir::new("devvfio");
        let addr: PciAddress = "0000:05:00.0".parse().unwrap();
        let e = OpenOptions::new()
            .sysfs_root(s.root())
            .dev_vfio(&dev.0)
            .open(addr)
            .unwrap_err();
        assert!(matches!(e, VfioError::NotNvme { .. }), "{e:?}");
        assert!(e.to_string().contains("SATA AHCI"), "{e}");
        let e = OpenOptions::new()
            .sysfs_root(s.root())
            .check(addr)
            .unwrap_err();
        assert!(matches!(e, VfioError::NotNvme { .. }), "{e:?}");
        // allow_any_class(true) goes on to the container.
        let e = OpenOptions::new()
            .sysfs_root(s.root())
            .dev_vfio(&dev.0)
            .allow_any_class(true)
            .open(addr)
            .unwrap_err();
        assert!(matches!(e, VfioError::VfioNotLoaded { .. }), "{e:?}");
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
}
