//! Entry points for the cargo-fuzz targets in `fuzz/` (feature `fuzzing`,
//! off by default). Not an API: they expose the crate-private parsers of
//! the buffers VFIO fills (`caps.rs`) as plain data, nothing more.

use crate::caps;
use crate::iova::IovaRange;

pub use crate::caps::SparseArea;

/// What [`region_info`] found in a `vfio_region_info` buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionInfoParsed {
    /// `argsz`.
    pub argsz: u32,
    /// `flags`.
    pub flags: u32,
    /// `cap_offset`.
    pub cap_offset: u32,
    /// `size`.
    pub size: u64,
    /// `offset`.
    pub offset: u64,
    /// The sparse-mmap areas, if the chain had that capability.
    pub sparse: Option<Vec<SparseArea>>,
    /// The MSI-X-mappable capability was present.
    pub msix_mappable: bool,
}

/// Parse a region-info buffer and its capability chain, as
/// `VfioDevice` does after `VFIO_DEVICE_GET_REGION_INFO`.
pub fn region_info(buf: &[u8]) -> Result<RegionInfoParsed, String> {
    let (info, caps) = caps::parse_region_caps(buf)?;
    Ok(RegionInfoParsed {
        argsz: info.argsz,
        flags: info.flags,
        cap_offset: info.cap_offset,
        size: info.size,
        offset: info.offset,
        sparse: caps.sparse,
        msix_mappable: caps.msix_mappable,
    })
}

/// What [`iommu_info`] found in a `vfio_iommu_type1_info` buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IommuInfoParsed {
    /// `argsz`.
    pub argsz: u32,
    /// `flags`.
    pub flags: u32,
    /// `cap_offset`.
    pub cap_offset: u32,
    /// Supported IOMMU page sizes (0 if not reported).
    pub pgsizes: u64,
    /// Usable IOVA ranges, if reported.
    pub iova_ranges: Option<Vec<IovaRange>>,
    /// Remaining DMA mappings, if reported.
    pub dma_avail: Option<u32>,
}

/// Parse an IOMMU-info buffer and its capability chain, as the container
/// does after `VFIO_IOMMU_GET_INFO`.
pub fn iommu_info(buf: &[u8]) -> Result<IommuInfoParsed, String> {
    let (info, caps) = caps::parse_iommu_info(buf)?;
    Ok(IommuInfoParsed {
        argsz: info.argsz,
        flags: info.flags,
        cap_offset: info.cap_offset,
        pgsizes: caps.pgsizes,
        iova_ranges: caps.iova_ranges,
        dma_avail: caps.dma_avail,
    })
}

/// The capability chain alone: `(id, offset)` of each capability found.
pub fn cap_chain(buf: &[u8], first: u32) -> Result<Vec<(u16, usize)>, String> {
    let base = buf.as_ptr() as usize;
    Ok(caps::cap_chain(buf, first)?
        .into_iter()
        .map(|c| (c.id, c.bytes.as_ptr() as usize - base))
        .collect())
}
