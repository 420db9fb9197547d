//! Pre-flight checks against sysfs, before any device node is opened.
//!
//! Everything here reads files and symlinks under a configurable root
//! (normally `/sys`) so the checks and their error messages can be tested
//! against a fake tree.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::error::{PeerDevice, VfioError};
use crate::pci::PciAddress;

/// PCI class code of an NVMe controller (mass storage / NVM / NVMe).
pub(crate) const NVME_CLASS: u32 = 0x01_08_02;

/// What sysfs says about a PCI function that passed the checks.
#[derive(Clone, Debug)]
pub struct SysfsDevice {
    /// The function.
    pub address: PciAddress,
    /// `<root>/bus/pci/devices/<address>`.
    pub path: PathBuf,
    /// The bound driver (always a vfio-pci driver once the checks passed).
    pub driver: Option<String>,
    /// Vendor id from sysfs.
    pub vendor: Option<u16>,
    /// Device id from sysfs.
    pub device: Option<u16>,
    /// 24-bit class code from sysfs.
    pub class: Option<u32>,
    /// IOMMU group number.
    pub iommu_group: u32,
    /// The other functions in the same IOMMU group.
    pub group_peers: Vec<PeerDevice>,
}

/// Check that `address` exists, is an NVMe controller (PCI class 0x010802,
/// unless `allow_any_class`), has an IOMMU group, is bound to vfio-pci, and
/// that no other device in its group is bound to a host driver.
///
/// The class comes first: nothing else matters for a function this driver
/// must not touch, and this runs before any VFIO node is opened, so a
/// non-NVMe function is never opened or reset (vfio-pci resets a function
/// when its device fd is opened, and `open` issues VFIO_DEVICE_RESET).
/// The IOMMU group is checked before the driver: without an IOMMU, binding to
/// vfio-pci fails, so the bind commands would not help.
pub(crate) fn probe(
    sysfs_root: &Path,
    address: &PciAddress,
    allow_any_class: bool,
) -> Result<SysfsDevice, VfioError> {
    let path = sysfs_root.join("bus/pci/devices").join(address.to_string());
    if !path.exists() {
        return Err(VfioError::DeviceNotFound {
            address: *address,
            path,
            nvme_devices: list_nvme_devices(sysfs_root),
        });
    }
    let driver = link_name(&path.join("driver"))?;
    let vendor = read_hex(&path.join("vendor")).map(|v| v as u16);
    let device = read_hex(&path.join("device")).map(|v| v as u16);
    let class = read_hex(&path.join("class")).map(|v| v as u32);
    if class != Some(NVME_CLASS) && !allow_any_class {
        return Err(VfioError::NotNvme {
            address: *address,
            class,
            vendor,
            device,
        });
    }

    let iommu_group = match link_name(&path.join("iommu_group"))? {
        Some(name) => name.parse::<u32>().map_err(|_| VfioError::Sysfs {
            path: path.join("iommu_group"),
            source: io::Error::new(
                io::ErrorKind::InvalidData,
                format!("group name {name:?} is not a number"),
            ),
        })?,
        None => {
            let groups_dir = sysfs_root.join("kernel/iommu_groups");
            let groups_present = fs::read_dir(&groups_dir)
                .map(|mut d| d.next().is_some())
                .unwrap_or(false);
            return Err(VfioError::NoIommuGroup {
                address: *address,
                groups_dir,
                groups_present,
            });
        }
    };

    if !driver.as_deref().is_some_and(is_vfio_driver) {
        let block_devices = if driver.as_deref() == Some("nvme") {
            kernel_nvme_names(&path)
        } else {
            Vec::new()
        };
        return Err(VfioError::NotBoundToVfio {
            address: *address,
            driver,
            sysfs_root: sysfs_root.to_path_buf(),
            block_devices,
        });
    }

    let group_peers = group_peers(sysfs_root, iommu_group, address)?;
    let blockers = viability_blockers(&group_peers);
    if !blockers.is_empty() {
        return Err(VfioError::GroupNotViable {
            address: *address,
            group: iommu_group,
            blockers,
            sysfs_root: sysfs_root.to_path_buf(),
        });
    }

    Ok(SysfsDevice {
        address: *address,
        path,
        driver,
        vendor,
        device,
        class,
        iommu_group,
        group_peers,
    })
}

/// True for vfio-pci and its variant drivers (`*vfio-pci`, `*vfio_pci`).
pub(crate) fn is_vfio_driver(name: &str) -> bool {
    name == "vfio-pci" || name.ends_with("vfio-pci") || name.ends_with("vfio_pci")
}

/// Drivers the kernel accepts in a viable VFIO group besides vfio ones.
fn allowed_in_group(driver: &str) -> bool {
    is_vfio_driver(driver) || driver == "pci-stub" || driver == "pcieport"
}

/// The peers whose driver makes the group non-viable.
pub(crate) fn viability_blockers(peers: &[PeerDevice]) -> Vec<PeerDevice> {
    peers
        .iter()
        .filter(|p| p.driver.as_deref().is_some_and(|d| !allowed_in_group(d)))
        .cloned()
        .collect()
}

/// The other devices in IOMMU group `group`, with their drivers.
pub(crate) fn group_peers(
    sysfs_root: &Path,
    group: u32,
    me: &PciAddress,
) -> Result<Vec<PeerDevice>, VfioError> {
    let dir = sysfs_root
        .join("kernel/iommu_groups")
        .join(group.to_string())
        .join("devices");
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(VfioError::Sysfs { path: dir, source }),
    };
    let me = me.to_string();
    let mut peers = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == me {
            continue;
        }
        let driver = link_name(&entry.path().join("driver")).unwrap_or(None);
        peers.push(PeerDevice {
            address: name,
            driver,
        });
    }
    peers.sort_by(|a, b| a.address.cmp(&b.address));
    Ok(peers)
}

/// NVMe controllers (class 0x010802) under `<root>/bus/pci/devices`, with drivers.
pub(crate) fn list_nvme_devices(sysfs_root: &Path) -> Vec<PeerDevice> {
    let Ok(entries) = fs::read_dir(sysfs_root.join("bus/pci/devices")) else {
        return Vec::new();
    };
    let mut out: Vec<PeerDevice> = entries
        .flatten()
        .filter(|e| read_hex(&e.path().join("class")) == Some(u64::from(NVME_CLASS)))
        .map(|e| PeerDevice {
            address: e.file_name().to_string_lossy().into_owned(),
            driver: link_name(&e.path().join("driver")).unwrap_or(None),
        })
        .collect();
    out.sort_by(|a, b| a.address.cmp(&b.address));
    out
}

/// `nvme0`, … under `<dev>/nvme/` when the kernel driver owns the device.
fn kernel_nvme_names(dev: &Path) -> Vec<String> {
    let Ok(entries) = fs::read_dir(dev.join("nvme")) else {
        return Vec::new();
    };
    let mut v: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// The last component of a symlink's target; `None` if there is no link.
fn link_name(link: &Path) -> Result<Option<String>, VfioError> {
    match fs::read_link(link) {
        Ok(target) => Ok(target.file_name().map(|n| n.to_string_lossy().into_owned())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(VfioError::Sysfs {
            path: link.to_path_buf(),
            source,
        }),
    }
}

/// A sysfs hex attribute such as `0x1b36\n`.
fn read_hex(path: &Path) -> Option<u64> {
    let s = fs::read_to_string(path).ok()?;
    let s = s.trim();
    u64::from_str_radix(s.strip_prefix("0x").unwrap_or(s), 16).ok()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// A temporary directory removed on drop (no extra dependency).
    pub(crate) struct TempDir(pub PathBuf);
    impl TempDir {
        pub(crate) fn new(tag: &str) -> TempDir {
            use std::sync::atomic::{AtomicUsize, Ordering};
            static N: AtomicUsize = AtomicUsize::new(0);
            let p = std::env::temp_dir().join(format!(
                "nvme-vfio-test-{tag}-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = fs::remove_dir_all(&p);
            fs::create_dir_all(&p).unwrap();
            TempDir(p)
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    /// Builder for a fake `/sys`.
    pub(crate) struct FakeSys(pub TempDir);
    impl FakeSys {
        pub(crate) fn new() -> FakeSys {
            let t = TempDir::new("sysfs");
            fs::create_dir_all(t.0.join("bus/pci/devices")).unwrap();
            fs::create_dir_all(t.0.join("kernel/iommu_groups")).unwrap();
            fs::create_dir_all(t.0.join("bus/pci/drivers")).unwrap();
            FakeSys(t)
        }
        pub(crate) fn root(&self) -> &Path {
            &self.0 .0
        }
        pub(crate) fn device(
            &self,
            addr: &str,
            class: u32,
            driver: Option<&str>,
            group: Option<u32>,
        ) {
            let d = self.root().join("bus/pci/devices").join(addr);
            fs::create_dir_all(&d).unwrap();
            fs::write(d.join("class"), format!("{class:#08x}\n")).unwrap();
            fs::write(d.join("vendor"), "0x1b36\n").unwrap();
            fs::write(d.join("device"), "0x0010\n").unwrap();
            if let Some(drv) = driver {
                let dd = self.root().join("bus/pci/drivers").join(drv);
                fs::create_dir_all(&dd).unwrap();
                symlink(&dd, d.join("driver")).unwrap();
            }
            if let Some(g) = group {
                let gd = self.root().join("kernel/iommu_groups").join(g.to_string());
                fs::create_dir_all(gd.join("devices")).unwrap();
                symlink(&gd, d.join("iommu_group")).unwrap();
                symlink(&d, gd.join("devices").join(addr)).unwrap();
            }
        }
    }

    fn addr(s: &str) -> PciAddress {
        s.parse().unwrap()
    }

    #[test]
    fn good_device() {
        let s = FakeSys::new();
        s.device("0000:01:00.0", NVME_CLASS, Some("vfio-pci"), Some(7));
        s.device("0000:00:1c.0", 0x060400, Some("pcieport"), Some(7));
        s.device("0000:02:00.0", NVME_CLASS, None, Some(7));
        let d = probe(s.root(), &addr("01:00.0"), false).unwrap();
        assert_eq!(d.iommu_group, 7);
        assert_eq!(d.driver.as_deref(), Some("vfio-pci"));
        assert_eq!(d.vendor, Some(0x1b36));
        assert_eq!(d.device, Some(0x0010));
        assert_eq!(d.class, Some(NVME_CLASS));
        assert_eq!(d.group_peers.len(), 2);
        assert_eq!(d.group_peers[0].address, "0000:00:1c.0");
        assert_eq!(d.group_peers[0].driver.as_deref(), Some("pcieport"));
    }

    #[test]
    fn missing_device_lists_nvme_controllers() {
        let s = FakeSys::new();
        s.device("0000:03:00.0", NVME_CLASS, Some("nvme"), Some(3));
        s.device("0000:04:00.0", NVME_CLASS, Some("vfio-pci"), Some(4));
        s.device("0000:00:02.0", 0x030000, Some("i915"), Some(1));
        let e = probe(s.root(), &addr("0000:01:00.0"), false).unwrap_err();
        match &e {
            VfioError::DeviceNotFound { nvme_devices, .. } => assert_eq!(nvme_devices.len(), 2),
            other => panic!("{other:?}"),
        }
        let m = e.to_string();
        assert!(m.contains("no PCI device 0000:01:00.0"), "{m}");
        assert!(m.contains("0000:03:00.0 (driver nvme)"), "{m}");
        assert!(m.contains("0000:04:00.0 (driver vfio-pci)"), "{m}");
        assert!(!m.contains("0000:00:02.0"), "{m}");

        let empty = FakeSys::new();
        let m = probe(empty.root(), &addr("0000:01:00.0"), false)
            .unwrap_err()
            .to_string();
        assert!(m.contains("no NVMe controllers"), "{m}");
    }

    #[test]
    fn bound_to_nvme_says_kernel_owns_it() {
        let s = FakeSys::new();
        s.device("0000:01:00.0", NVME_CLASS, Some("nvme"), Some(5));
        fs::create_dir_all(s.root().join("bus/pci/devices/0000:01:00.0/nvme/nvme0")).unwrap();
        let e = probe(s.root(), &addr("0000:01:00.0"), false).unwrap_err();
        assert!(matches!(&e, VfioError::NotBoundToVfio { driver: Some(d), .. } if d == "nvme"));
        let m = e.to_string();
        let root = s.root().display();
        assert!(m.contains("kernel nvme driver (/dev/nvme0)"), "{m}");
        assert!(m.contains("data in use"), "{m}");
        assert!(
            m.contains(&format!(
                "echo vfio-pci | sudo tee {root}/bus/pci/devices/0000:01:00.0/driver_override"
            )),
            "{m}"
        );
        assert!(
            m.contains(&format!(
                "echo 0000:01:00.0 | sudo tee {root}/bus/pci/devices/0000:01:00.0/driver/unbind"
            )),
            "{m}"
        );
        assert!(
            m.contains(&format!(
                "echo 0000:01:00.0 | sudo tee {root}/bus/pci/drivers_probe"
            )),
            "{m}"
        );
        assert!(m.contains("modprobe vfio-pci"), "{m}");
    }

    #[test]
    fn unbound_device_gets_bind_commands_without_unbind() {
        let s = FakeSys::new();
        s.device("0000:01:00.0", NVME_CLASS, None, Some(5));
        let m = probe(s.root(), &addr("0000:01:00.0"), false)
            .unwrap_err()
            .to_string();
        assert!(m.contains("not bound to any driver"), "{m}");
        assert!(m.contains("driver_override"), "{m}");
        assert!(!m.contains("unbind"), "{m}");
        assert!(m.contains("drivers_probe"), "{m}");
    }

    #[test]
    fn no_iommu_group() {
        let s = FakeSys::new();
        s.device("0000:01:00.0", NVME_CLASS, Some("nvme"), None);
        let e = probe(s.root(), &addr("0000:01:00.0"), false).unwrap_err();
        assert!(matches!(
            e,
            VfioError::NoIommuGroup {
                groups_present: false,
                ..
            }
        ));
        let m = e.to_string();
        assert!(m.contains("iommu_groups is empty"), "{m}");
        assert!(m.contains("intel_iommu=on"), "{m}");
        assert!(m.contains("amd_iommu=on"), "{m}");
        assert!(m.contains("VT-d"), "{m}");
        assert!(m.contains("AMD-Vi"), "{m}");
    }

    #[test]
    fn group_with_host_driver_is_not_viable() {
        let s = FakeSys::new();
        s.device("0000:01:00.0", NVME_CLASS, Some("vfio-pci"), Some(9));
        s.device("0000:01:00.1", 0x040300, Some("snd_hda_intel"), Some(9));
        s.device("0000:00:1c.0", 0x060400, Some("pcieport"), Some(9));
        s.device("0000:01:00.2", 0x0c0330, None, Some(9));
        let e = probe(s.root(), &addr("0000:01:00.0"), false).unwrap_err();
        match &e {
            VfioError::GroupNotViable {
                group: 9, blockers, ..
            } => {
                assert_eq!(
                    blockers,
                    &[PeerDevice {
                        address: "0000:01:00.1".into(),
                        driver: Some("snd_hda_intel".into())
                    }]
                );
            }
            other => panic!("{other:?}"),
        }
        let m = e.to_string();
        assert!(m.contains("IOMMU group 9"), "{m}");
        assert!(m.contains("0000:01:00.1 (driver snd_hda_intel)"), "{m}");
        assert!(m.contains("0000:01:00.1/driver/unbind"), "{m}");
        assert!(!m.contains("1c.0"), "{m}");
    }

    #[test]
    fn vfio_driver_names() {
        assert!(is_vfio_driver("vfio-pci"));
        assert!(is_vfio_driver("mlx5_vfio_pci"));
        assert!(!is_vfio_driver("nvme"));
        assert!(!is_vfio_driver("vfio"));
    }

    #[test]
    fn class_is_checked_first() {
        // Wrong class: refused with the class named, even though everything
        // else (vfio-pci, a viable group) would let it be opened.
        let s = FakeSys::new();
        s.device("0000:05:00.0", 0x010601, Some("vfio-pci"), Some(6));
        let e = probe(s.root(), &addr("0000:05:00.0"), false).unwrap_err();
        assert!(
            matches!(
                e,
                VfioError::NotNvme {
                    class: Some(0x010601),
                    vendor: Some(0x1b36),
                    device: Some(0x0010),
                    ..
                }
            ),
            "{e:?}"
        );
        let m = e.to_string();
        assert!(
            m.contains("class 0x010601 (SATA AHCI), not an NVMe controller (class 0x010802)"),
            "{m}"
        );
        assert!(m.contains("only drives NVMe controllers"), "{m}");
        assert!(m.contains("before opening or resetting"), "{m}");
        assert!(m.contains("allow_any_class(true)"), "{m}");
        // Before the other checks: no group, no driver, still NotNvme.
        s.device("0000:06:00.0", 0x010000, None, None);
        let m = probe(s.root(), &addr("0000:06:00.0"), false)
            .unwrap_err()
            .to_string();
        assert!(m.contains("class 0x010000 (SCSI storage controller"), "{m}");
        // The escape hatch passes the class check; the others still apply.
        let d = probe(s.root(), &addr("0000:05:00.0"), true).unwrap();
        assert_eq!(d.class, Some(0x010601));
        let e = probe(s.root(), &addr("0000:06:00.0"), true).unwrap_err();
        assert!(matches!(e, VfioError::NoIommuGroup { .. }), "{e:?}");
    }

    #[test]
    fn class_absent_is_not_nvme() {
        let s = FakeSys::new();
        s.device("0000:01:00.0", NVME_CLASS, Some("vfio-pci"), Some(2));
        fs::remove_file(s.root().join("bus/pci/devices/0000:01:00.0/class")).unwrap();
        let e = probe(s.root(), &addr("0000:01:00.0"), false).unwrap_err();
        assert!(matches!(e, VfioError::NotNvme { class: None, .. }), "{e:?}");
        let m = e.to_string();
        assert!(m.contains("unknown class"), "{m}");
        assert!(m.contains("not an NVMe controller"), "{m}");
    }

    #[test]
    fn nvme_class_passes() {
        let s = FakeSys::new();
        s.device("0000:01:00.0", NVME_CLASS, Some("vfio-pci"), Some(2));
        let d = probe(s.root(), &addr("0000:01:00.0"), false).unwrap();
        assert_eq!(d.class, Some(NVME_CLASS));
        // A class file without the 0x prefix, as some fakes write it.
        fs::write(
            s.root().join("bus/pci/devices/0000:01:00.0/class"),
            "010802\n",
        )
        .unwrap();
        assert!(probe(s.root(), &addr("0000:01:00.0"), false).is_ok());
    }

    #[test]
    fn class_names() {
        assert_eq!(VfioError::pci_class_name(0x010802), Some("NVMe"));
        assert_eq!(VfioError::pci_class_name(0x010601), Some("SATA AHCI"));
        assert_eq!(VfioError::pci_class_name(0x01018a), Some("IDE"));
        assert_eq!(
            VfioError::pci_class_name(0x018002),
            Some("other mass storage")
        );
        assert_eq!(VfioError::pci_class_name(0xff0000), None);
    }
}
