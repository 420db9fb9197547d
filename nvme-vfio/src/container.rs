//! The VFIO container and group: IOMMU setup, IOVA space, DMA map/unmap.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Mutex;

use vfio_bindings::bindings::vfio::{
    VFIO_TYPE1v2_IOMMU, VFIO_API_VERSION, VFIO_GROUP_FLAGS_VIABLE, VFIO_TYPE1_IOMMU,
};

use crate::caps::{parse_iommu_info, rd_u32, IommuCaps, IOMMU_INFO_LEN};
use crate::error::{PeerDevice, VfioError};
use crate::iova::{IovaAllocator, IovaRange};
use crate::sys;
use crate::sysfs::{is_vfio_driver, SysfsDevice};

/// Lowest IOVA handed out: keeps 0 and small addresses unmapped so a zero or
/// garbage PRP faults in the IOMMU instead of hitting a buffer.
pub(crate) const IOVA_MIN: u64 = 1 << 20;

/// Assumed aperture when the kernel does not report IOVA ranges (pre-5.4):
/// 39 bits (the smallest common VT-d / SMMU width), minus the x86 MSI window.
fn default_iova_ranges() -> Vec<IovaRange> {
    vec![
        IovaRange {
            start: 0,
            end: 0xfedf_ffff,
        },
        IovaRange {
            start: 0xfef0_0000,
            end: (1 << 39) - 1,
        },
    ]
}

/// Counters behind `dma_stats()`.
#[derive(Default, Debug)]
pub(crate) struct Counters {
    pub regions: AtomicU64,
    pub bytes: AtomicU64,
    pub huge_regions: AtomicU64,
    pub huge_bytes: AtomicU64,
    pub allocations: AtomicU64,
    pub hugepages_used: AtomicBool,
}

/// An open VFIO container with one group attached and the IOMMU set.
///
/// Shared (`Arc`) by the device and by every DMA buffer, so the IOMMU context
/// outlives every mapping in it. Dropped last: see `Drop`.
#[derive(Debug)]
pub(crate) struct Container {
    /// `/dev/vfio/N`. Declared before `container` so it is closed first.
    pub group: File,
    /// `/dev/vfio/vfio`.
    pub container: File,
    pub group_number: u32,
    pub iommu_type: u32,
    /// Smallest IOMMU page size.
    pub iommu_page: u64,
    pub iova_ranges: Vec<IovaRange>,
    pub iova_ranges_reported: bool,
    pub iova: Mutex<IovaAllocator>,
    pub counters: Counters,
    pub use_hugepages: bool,
}

fn open_node(path: &Path) -> io::Result<File> {
    OpenOptions::new().read(true).write(true).open(path)
}

fn permission(path: &Path) -> VfioError {
    VfioError::PermissionDenied {
        path: path.to_path_buf(),
        euid: sys::euid(),
        memlock_limit: sys::memlock_limit(),
    }
}

impl Container {
    /// Open the container and the device's group, check viability, attach,
    /// select the Type1(v2) IOMMU and read its capabilities.
    pub(crate) fn open(
        dev_vfio: &Path,
        sysfs_root: &Path,
        dev: &SysfsDevice,
        use_hugepages: bool,
    ) -> Result<Container, VfioError> {
        let container = open_container_node(dev_vfio)?;
        let iommu_type = check_api_and_pick_iommu(&container)?;
        let group = open_group_node(dev_vfio, dev)?;
        check_group_viable(&group, dev, sysfs_root)?;
        sys::group_set_container(&group, &container)?;
        sys::set_iommu(&container, iommu_type)?;
        let (iommu_page, iova_ranges, iova_ranges_reported) =
            iova_space(&container, dev.iommu_group, iommu_type)?;
        let iova = Mutex::new(IovaAllocator::new(&iova_ranges, IOVA_MIN));
        Ok(Container {
            group,
            container,
            group_number: dev.iommu_group,
            iommu_type,
            iommu_page,
            iova_ranges,
            iova_ranges_reported,
            iova,
            counters: Counters::default(),
            use_hugepages,
        })
    }
}

/// Open `/dev/vfio/vfio`; a missing node means vfio-pci is not loaded.
fn open_container_node(dev_vfio: &Path) -> Result<File, VfioError> {
    let cpath = dev_vfio.join("vfio");
    open_node(&cpath).map_err(|e| match e.raw_os_error() {
        Some(libc::ENOENT) => VfioError::VfioNotLoaded {
            path: cpath.clone(),
        },
        Some(libc::EACCES) | Some(libc::EPERM) => permission(&cpath),
        _ => VfioError::Open {
            path: cpath.clone(),
            source: e,
        },
    })
}

/// Check the VFIO API version and pick the IOMMU type: Type1v2, else Type1.
fn check_api_and_pick_iommu(container: &File) -> Result<u32, VfioError> {
    let version = sys::get_api_version(container)?;
    if version != VFIO_API_VERSION as i32 {
        return Err(VfioError::ApiVersion {
            got: version,
            expected: VFIO_API_VERSION,
        });
    }
    if sys::check_extension(container, VFIO_TYPE1v2_IOMMU).unwrap_or(false) {
        Ok(VFIO_TYPE1v2_IOMMU)
    } else if sys::check_extension(container, VFIO_TYPE1_IOMMU).unwrap_or(false) {
        tracing::info!("VFIO Type1v2 IOMMU not offered; using Type1");
        Ok(VFIO_TYPE1_IOMMU)
    } else {
        Err(VfioError::NoType1Iommu)
    }
}

/// Open `/dev/vfio/<group>`, telling no-IOMMU mode, a missing node, missing
/// permissions and a group held by another process apart.
fn open_group_node(dev_vfio: &Path, dev: &SysfsDevice) -> Result<File, VfioError> {
    let group_number = dev.iommu_group;
    let gpath = dev_vfio.join(group_number.to_string());
    open_node(&gpath).map_err(|e| match e.raw_os_error() {
        Some(libc::ENOENT) if dev_vfio.join(format!("noiommu-{group_number}")).exists() => {
            VfioError::NoIommuMode {
                path: dev_vfio.join(format!("noiommu-{group_number}")),
            }
        }
        Some(libc::ENOENT) => VfioError::GroupNodeMissing {
            address: dev.address,
            group: group_number,
            path: gpath.clone(),
        },
        Some(libc::EACCES) | Some(libc::EPERM) => permission(&gpath),
        Some(libc::EBUSY) => VfioError::GroupBusy {
            path: gpath.clone(),
            group: group_number,
        },
        _ => VfioError::Open {
            path: gpath.clone(),
            source: e,
        },
    })
}

/// `VFIO_GROUP_GET_STATUS`: the kernel's word on viability.
fn check_group_viable(group: &File, dev: &SysfsDevice, sysfs_root: &Path) -> Result<(), VfioError> {
    let flags = sys::group_status(group)?;
    if flags & VFIO_GROUP_FLAGS_VIABLE != 0 {
        return Ok(());
    }
    // The sysfs pre-check passed, so name every peer with a non-vfio driver.
    let blockers: Vec<PeerDevice> = dev
        .group_peers
        .iter()
        .filter(|p| p.driver.as_deref().is_some_and(|d| !is_vfio_driver(d)))
        .cloned()
        .collect();
    Err(VfioError::GroupNotViable {
        address: dev.address,
        group: dev.iommu_group,
        blockers,
        sysfs_root: sysfs_root.to_path_buf(),
    })
}

/// The IOMMU's page size and usable IOVA ranges (a conservative default
/// when the kernel reports none), and whether the ranges were reported.
fn iova_space(
    container: &File,
    group_number: u32,
    iommu_type: u32,
) -> Result<(u64, Vec<IovaRange>, bool), VfioError> {
    let caps = iommu_info(container)?;
    let host_page = sys::page_size() as u64;
    let iommu_page = match caps.pgsizes {
        0 => host_page,
        p => (1u64 << p.trailing_zeros()).max(host_page),
    }
    .max(4096);
    let iova_ranges_reported = caps.iova_ranges.is_some();
    let iova_ranges = caps.iova_ranges.unwrap_or_else(default_iova_ranges);
    tracing::debug!(
        "VFIO container: group {group_number}, IOMMU type {iommu_type}, page {iommu_page:#x}, IOVA ranges {iova_ranges:x?} (reported: {iova_ranges_reported}), DMA mappings available {:?}",
        caps.dma_avail
    );
    Ok((iommu_page, iova_ranges, iova_ranges_reported))
}

/// `VFIO_IOMMU_GET_INFO` with argsz grow-and-retry.
fn iommu_info(container: &File) -> Result<IommuCaps, VfioError> {
    let mut len = IOMMU_INFO_LEN;
    for _ in 0..4 {
        let mut buf = vec![0u8; len];
        sys::iommu_get_info(container, &mut buf)?;
        let want = rd_u32(&buf, 0).unwrap_or(0) as usize;
        if want > buf.len() && want <= 64 * 1024 {
            len = want;
            continue;
        }
        return parse_iommu_info(&buf)
            .map(|(_, caps)| caps)
            .map_err(|reason| VfioError::CapChain {
                what: "IOMMU info",
                reason,
            });
    }
    Err(VfioError::CapChain {
        what: "IOMMU info",
        reason: "argsz kept growing".into(),
    })
}

impl Drop for Container {
    /// Runs when the device and every DMA buffer are gone (each holds an
    /// `Arc`), so no IOMMU mapping is left: detach the group from the
    /// container, then close the group fd, then the container fd (field
    /// order). Closing the fds alone would also release everything; the
    /// explicit unset just makes the order visible and reportable.
    fn drop(&mut self) {
        if let Err(e) = sys::group_unset_container(&self.group) {
            tracing::warn!(
                "VFIO_GROUP_UNSET_CONTAINER on group {} failed: {e}",
                self.group_number
            );
        }
    }
}
