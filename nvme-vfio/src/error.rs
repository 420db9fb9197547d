//! The crate's error type. Every variant's message says what to do about it.

use std::fmt::Write as _;
use std::io;
use std::path::PathBuf;

use crate::pci::PciAddress;

/// Another PCI function (in an IOMMU group, or on the system) and its driver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerDevice {
    /// Its PCI address as sysfs spells it.
    pub address: String,
    /// The kernel driver bound to it, if any.
    pub driver: Option<String>,
}

impl PeerDevice {
    fn describe(&self) -> String {
        match &self.driver {
            Some(d) => format!("{} (driver {d})", self.address),
            None => format!("{} (no driver)", self.address),
        }
    }
}

/// Everything that can go wrong opening or driving a device through VFIO.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VfioError {
    /// The PCI address string could not be parsed.
    #[error("invalid PCI address {input:?}: {reason} (expected DDDD:BB:DD.F, BB:DD.F or DDDD.BB.DD.F, e.g. 0000:01:00.0)")]
    InvalidPciAddress {
        /// What was given.
        input: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// No such PCI function in sysfs.
    #[error("{}", device_not_found(address, path, nvme_devices))]
    DeviceNotFound {
        /// The address asked for.
        address: PciAddress,
        /// The sysfs directory that does not exist.
        path: PathBuf,
        /// NVMe controllers (class 0x010802) that do exist.
        nvme_devices: Vec<PeerDevice>,
    },

    /// The function's PCI class is not NVMe (0x010802): refused by the sysfs
    /// checks, before any VFIO node is opened, so it was not reset.
    #[error("{}", not_nvme(address, *class, *vendor, *device))]
    NotNvme {
        /// The function.
        address: PciAddress,
        /// Its 24-bit class code (`None`: sysfs has no readable `class`).
        class: Option<u32>,
        /// Its vendor id, if readable.
        vendor: Option<u16>,
        /// Its device id, if readable.
        device: Option<u16>,
    },

    /// The device is not bound to vfio-pci.
    #[error("{}", not_bound(address, driver.as_deref(), sysfs_root, block_devices))]
    NotBoundToVfio {
        /// The device.
        address: PciAddress,
        /// The driver it is bound to, if any.
        driver: Option<String>,
        /// The sysfs root the commands refer to (normally /sys).
        sysfs_root: PathBuf,
        /// Kernel NVMe controller names (`nvme0`) when bound to `nvme`.
        block_devices: Vec<String>,
    },

    /// The device has no IOMMU group: the IOMMU is off.
    #[error("{}", no_iommu(address, groups_dir, *groups_present))]
    NoIommuGroup {
        /// The device.
        address: PciAddress,
        /// `/sys/kernel/iommu_groups`.
        groups_dir: PathBuf,
        /// Whether that directory has any groups in it.
        groups_present: bool,
    },

    /// Other devices in the IOMMU group are bound to host drivers.
    #[error("{}", not_viable(address, *group, blockers, sysfs_root))]
    GroupNotViable {
        /// The device asked for.
        address: PciAddress,
        /// Its IOMMU group.
        group: u32,
        /// Devices in the group bound to a driver VFIO does not accept.
        blockers: Vec<PeerDevice>,
        /// The sysfs root the commands refer to (normally /sys).
        sysfs_root: PathBuf,
    },

    /// `/dev/vfio/vfio` does not exist.
    #[error("{} does not exist: the VFIO modules are not loaded; run `sudo modprobe vfio-pci` (and bind the device to vfio-pci)", path.display())]
    VfioNotLoaded {
        /// The missing container device node.
        path: PathBuf,
    },

    /// `/dev/vfio/N` does not exist although the device has a group.
    #[error("{} does not exist although {address} is in IOMMU group {group}: check that the device is bound to vfio-pci (`ls -l /sys/bus/pci/devices/{address}/driver`) and that udev created the node (`ls -l /dev/vfio`)", path.display())]
    GroupNodeMissing {
        /// The device.
        address: PciAddress,
        /// Its group.
        group: u32,
        /// The missing node.
        path: PathBuf,
    },

    /// No permission to open a VFIO device node.
    #[error("{}", permission(path, *euid, *memlock_limit))]
    PermissionDenied {
        /// The node that could not be opened.
        path: PathBuf,
        /// The effective user id of this process.
        euid: u32,
        /// RLIMIT_MEMLOCK of this process, bytes (`None` = unlimited/unknown).
        memlock_limit: Option<u64>,
    },

    /// The group is open in another process.
    #[error("{} is busy: IOMMU group {group} is already in use by another process (a VM, or another instance of this driver); find it with `sudo fuser -v {}` and stop it", path.display(), path.display())]
    GroupBusy {
        /// The group node.
        path: PathBuf,
        /// The group number.
        group: u32,
    },

    /// The kernel speaks a different VFIO API version.
    #[error("VFIO API version mismatch: the kernel reports {got}, this driver needs {expected}")]
    ApiVersion {
        /// What VFIO_GET_API_VERSION returned.
        got: i32,
        /// VFIO_API_VERSION.
        expected: u32,
    },

    /// VFIO runs in unsafe no-IOMMU mode (`/dev/vfio/noiommu-N`).
    #[error("VFIO is in no-IOMMU mode ({} exists): this driver needs a real IOMMU to confine DMA; enable VT-d/AMD-Vi in the firmware, boot with `intel_iommu=on` or `amd_iommu=on`, and unset vfio's enable_unsafe_noiommu_mode", path.display())]
    NoIommuMode {
        /// The no-IOMMU group node.
        path: PathBuf,
    },

    /// Neither TYPE1v2 nor TYPE1 IOMMU support.
    #[error("the VFIO container supports neither the Type1v2 nor the Type1 IOMMU backend (is this a no-IOMMU setup? boot with intel_iommu=on / amd_iommu=on, or load vfio_iommu_type1)")]
    NoType1Iommu,

    /// The VFIO device is not a PCI device or lacks regions.
    #[error("{address}: {reason}")]
    UnsupportedDevice {
        /// The device.
        address: PciAddress,
        /// What is missing.
        reason: String,
    },

    /// A sysfs read failed unexpectedly.
    #[error("reading {}: {source}", path.display())]
    Sysfs {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },

    /// Opening a device node failed for an unexpected reason.
    #[error("opening {}: {source}", path.display())]
    Open {
        /// The node.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },

    /// An ioctl failed.
    #[error("{op} failed: {source}")]
    Ioctl {
        /// The ioctl (and target) that failed.
        op: &'static str,
        /// The OS error.
        source: io::Error,
    },

    /// A capability chain returned by the kernel is malformed.
    #[error("malformed {what} capability chain: {reason}")]
    CapChain {
        /// Which info structure.
        what: &'static str,
        /// What is wrong.
        reason: String,
    },

    /// `alloc_dma` was asked for an impossible length.
    #[error("invalid DMA allocation length {len}")]
    InvalidDmaLength {
        /// The requested length.
        len: usize,
    },

    /// No free IOVA range is large enough.
    #[error("no free IOVA range of {len:#x} bytes left in the IOMMU's address space")]
    IovaExhausted {
        /// The (rounded) length.
        len: u64,
    },

    /// Allocating host memory for DMA failed.
    #[error("allocating {len:#x} bytes of DMA memory: {source}")]
    DmaAlloc {
        /// The (rounded) length.
        len: u64,
        /// The OS error.
        source: io::Error,
    },

    /// VFIO_IOMMU_MAP_DMA failed.
    #[error("{}", dma_map(*len, *iova, *memlock_limit, source))]
    DmaMap {
        /// The length.
        len: u64,
        /// The IOVA.
        iova: u64,
        /// RLIMIT_MEMLOCK, bytes (`None` = unlimited/unknown).
        memlock_limit: Option<u64>,
        /// The OS error.
        source: io::Error,
    },

    /// Mapping a BAR failed.
    #[error("mapping BAR{bar} of {address} (offset {offset:#x}, {len:#x} bytes): {source}")]
    BarMap {
        /// The device.
        address: PciAddress,
        /// BAR index.
        bar: u8,
        /// Offset in the BAR.
        offset: u64,
        /// Length.
        len: u64,
        /// The OS error.
        source: io::Error,
    },

    /// A device-memory window could not be mapped or a BAR has no address.
    #[error("{address}: device memory BAR{bar} offset {offset:#x} ({len:#x} bytes): {reason}")]
    DeviceMemory {
        /// The device.
        address: PciAddress,
        /// BAR index.
        bar: u8,
        /// Offset in the BAR.
        offset: u64,
        /// Length asked for.
        len: u64,
        /// What is wrong.
        reason: String,
    },

    /// A config-space or region access was out of range or failed.
    #[error("{what} at offset {offset:#x} ({len} bytes): {reason}")]
    Access {
        /// Which region.
        what: &'static str,
        /// Offset in the region.
        offset: u64,
        /// Access width.
        len: usize,
        /// Why it failed.
        reason: String,
    },
}

impl VfioError {
    /// A short name for a 24-bit PCI class code (class, subclass,
    /// programming interface), e.g. `"SATA AHCI"` for 0x010601; `None` if
    /// not known. Used in [`VfioError::NotNvme`]'s message.
    pub fn pci_class_name(class: u32) -> Option<&'static str> {
        Some(match class {
            0x01_08_02 => "NVMe",
            0x01_06_01 => "SATA AHCI",
            0x01_06_00 | 0x01_06_02 => "SATA",
            0x01_00_00 => "SCSI storage controller, e.g. virtio-blk or virtio-scsi",
            0x01_07_00 | 0x01_07_01 => "SAS",
            0x01_04_00 => "RAID",
            0x01_05_20 | 0x01_05_30 => "ATA (ADMA)",
            0x01_08_00 | 0x01_08_01 => "non-volatile memory, not NVMe",
            0x01_08_03 => "NVMe administrative interface",
            0x01_80_00..=0x01_80_ff => "other mass storage",
            0x02_00_00 => "Ethernet",
            0x03_00_00 => "VGA display",
            0x04_03_00 => "audio",
            0x06_00_00 => "host bridge",
            0x06_04_00 | 0x06_04_01 => "PCI bridge",
            0x0c_03_30 => "USB xHCI",
            _ => match class >> 16 {
                0x01 if class >> 8 == 0x0101 => "IDE",
                0x01 => "mass storage",
                0x02 => "network",
                0x03 => "display",
                0x06 => "bridge",
                0x0c => "serial bus",
                _ => return None,
            },
        })
    }
}

impl From<VfioError> for nvme_core::HwError {
    fn from(e: VfioError) -> Self {
        nvme_core::HwError::new(e)
    }
}

fn bind_commands(root: &std::path::Path, address: &str, bound: bool) -> String {
    let root = root.display();
    let mut s = String::new();
    let _ = writeln!(s, "    sudo modprobe vfio-pci");
    let _ = writeln!(
        s,
        "    echo vfio-pci | sudo tee {root}/bus/pci/devices/{address}/driver_override"
    );
    if bound {
        let _ = writeln!(
            s,
            "    echo {address} | sudo tee {root}/bus/pci/devices/{address}/driver/unbind"
        );
    }
    let _ = write!(
        s,
        "    echo {address} | sudo tee {root}/bus/pci/drivers_probe"
    );
    s
}

fn device_not_found(address: &PciAddress, path: &std::path::Path, nvme: &[PeerDevice]) -> String {
    let mut s = format!("no PCI device {address}: {} does not exist", path.display());
    if nvme.is_empty() {
        s.push_str("; no NVMe controllers (PCI class 0x010802) were found either (check `lspci -D -d ::0108`)");
    } else {
        s.push_str("; NVMe controllers (PCI class 0x010802) present: ");
        s.push_str(
            &nvme
                .iter()
                .map(PeerDevice::describe)
                .collect::<Vec<_>>()
                .join(", "),
        );
    }
    s
}

fn not_nvme(
    address: &PciAddress,
    class: Option<u32>,
    vendor: Option<u16>,
    device: Option<u16>,
) -> String {
    let what = match class {
        Some(c) => match VfioError::pci_class_name(c) {
            Some(n) => format!("class {c:#08x} ({n})"),
            None => format!("class {c:#08x}"),
        },
        None => "of unknown class (no readable sysfs `class` file)".to_string(),
    };
    let ids = match (vendor, device) {
        (Some(v), Some(d)) => format!(" [{v:04x}:{d:04x}]"),
        _ => String::new(),
    };
    format!(
        "{address}{ids} is {what}, not an NVMe controller (class 0x010802): this driver only drives NVMe \
         controllers, so it refused before opening or resetting the device. Check the address (`lspci -D -d ::0108` \
         lists NVMe controllers). If this really is an NVMe controller that reports another class, open it with \
         nvme_vfio::OpenOptions::allow_any_class(true)"
    )
}

fn not_bound(
    address: &PciAddress,
    driver: Option<&str>,
    root: &std::path::Path,
    blk: &[String],
) -> String {
    let addr = address.to_string();
    let mut s = match driver {
        Some("nvme") => {
            let names = if blk.is_empty() {
                String::new()
            } else {
                format!(
                    " ({})",
                    blk.iter()
                        .map(|n| format!("/dev/{n}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            format!(
                "{addr} is bound to the kernel nvme driver{names}: the kernel owns it and its namespaces may hold \
                 mounted filesystems or data in use. Make sure nothing uses it (unmount, stop users), then bind it to vfio-pci:\n"
            )
        }
        Some(d) => format!("{addr} is bound to driver {d}, not vfio-pci; bind it to vfio-pci:\n"),
        None => format!("{addr} is not bound to any driver; bind it to vfio-pci:\n"),
    };
    s.push_str(&bind_commands(root, &addr, driver.is_some()));
    s
}

fn no_iommu(address: &PciAddress, groups_dir: &std::path::Path, present: bool) -> String {
    let state = if present {
        format!("{} has groups, but not for this device (is it behind a bridge the IOMMU does not cover?)", groups_dir.display())
    } else {
        format!(
            "{} is empty, so the IOMMU is not enabled",
            groups_dir.display()
        )
    };
    format!(
        "{address} has no IOMMU group: {state}. Enable VT-d (Intel) or AMD-Vi (AMD) in the firmware setup and boot with \
         `intel_iommu=on` or `amd_iommu=on` (plus `iommu=pt` if you like) on the kernel command line; on arm64 the SMMU must be enabled"
    )
}

fn not_viable(
    address: &PciAddress,
    group: u32,
    blockers: &[PeerDevice],
    root: &std::path::Path,
) -> String {
    let mut s = format!(
        "IOMMU group {group} (of {address}) is not viable: every device in the group must be bound to vfio-pci \
         (or pci-stub, or have no driver) before any of them can be used through VFIO."
    );
    if blockers.is_empty() {
        let _ = write!(
            s,
            " Inspect the group with `ls -l {}/kernel/iommu_groups/{group}/devices`.",
            root.display()
        );
    } else {
        let _ = writeln!(
            s,
            " Other devices in the group: {}. Unbind them from their drivers (or bind them to vfio-pci too), e.g.:",
            blockers.iter().map(PeerDevice::describe).collect::<Vec<_>>().join(", ")
        );
        let cmds: Vec<String> = blockers
            .iter()
            .map(|b| bind_commands(root, &b.address, b.driver.is_some()))
            .collect();
        s.push_str(&cmds.join("\n"));
        s.push_str("\nor move the NVMe device to a slot with an IOMMU group of its own.");
    }
    s
}

fn fmt_limit(limit: Option<u64>) -> String {
    match limit {
        None => "unlimited".to_string(),
        Some(l) => format!("{} KiB", l / 1024),
    }
}

fn permission(path: &std::path::Path, euid: u32, memlock: Option<u64>) -> String {
    let p = path.display();
    format!(
        "permission denied opening {p} (running as uid {euid}): run as root, or give your user the node with \
         `sudo chown $USER {p}`, or add a udev rule such as \
         `SUBSYSTEM==\"vfio\", OWNER=\"<user>\"` in /etc/udev/rules.d/99-vfio.rules; a non-root user also needs \
         a locked-memory limit (`ulimit -l`, now {}) large enough for all DMA memory",
        fmt_limit(memlock)
    )
}

fn dma_map(len: u64, iova: u64, memlock: Option<u64>, source: &io::Error) -> String {
    let mut s = format!("VFIO_IOMMU_MAP_DMA of {len:#x} bytes at IOVA {iova:#x} failed: {source}");
    if source.raw_os_error() == Some(libc::ENOMEM) {
        let _ = write!(
            s,
            "; the IOMMU pins DMA memory and charges it to the locked-memory limit (RLIMIT_MEMLOCK, now {}): \
             raise it (`ulimit -l`, /etc/security/limits.conf) or run as root",
            fmt_limit(memlock)
        );
    } else if source.raw_os_error() == Some(libc::ENOSPC) {
        s.push_str("; the IOMMU's limit on the number of DMA mappings is reached (vfio_iommu_type1 dma_entry_limit)");
    }
    s
}
