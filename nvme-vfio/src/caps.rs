//! Parsing of the variable-length info structures VFIO returns
//! (`vfio_region_info`, `vfio_iommu_type1_info`) and their capability chains.
//!
//! Everything works on plain byte buffers, in native byte order, with every
//! offset bounds-checked, so a malformed chain is an error, never UB or a panic.

use crate::iova::IovaRange;

/// `struct vfio_info_cap_header` is 8 bytes: id u16, version u16 (unused: the
/// capabilities we parse have only version 1), next u32.
const CAP_HEADER_LEN: usize = 8;
/// Longest chain we follow before declaring a loop.
const MAX_CAPS: usize = 64;

pub(crate) fn rd_u16(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(
        b.get(off..off.checked_add(2)?)?.try_into().ok()?,
    ))
}
pub(crate) fn rd_u32(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(
        b.get(off..off.checked_add(4)?)?.try_into().ok()?,
    ))
}
pub(crate) fn rd_u64(b: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(
        b.get(off..off.checked_add(8)?)?.try_into().ok()?,
    ))
}
pub(crate) fn wr_u32(b: &mut [u8], off: usize, v: u32) {
    if let Some(s) = b.get_mut(off..off + 4) {
        s.copy_from_slice(&v.to_ne_bytes());
    }
}

/// One capability in a chain.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cap<'a> {
    pub id: u16,
    /// From the capability header to the end of the buffer (the capability's
    /// own parser bounds its length).
    pub bytes: &'a [u8],
}

/// Walk the chain starting at `first` (an offset from the start of `buf`; 0 = none).
pub(crate) fn cap_chain(buf: &[u8], first: u32) -> Result<Vec<Cap<'_>>, String> {
    let mut caps = Vec::new();
    let mut off = first as usize;
    while off != 0 {
        if caps.len() >= MAX_CAPS {
            return Err(format!("more than {MAX_CAPS} capabilities (loop?)"));
        }
        if off % 4 != 0 {
            return Err(format!("capability at misaligned offset {off:#x}"));
        }
        let end = off.checked_add(CAP_HEADER_LEN).ok_or("offset overflow")?;
        if end > buf.len() {
            return Err(format!(
                "capability header at {off:#x} runs past the {}-byte buffer",
                buf.len()
            ));
        }
        let id = rd_u16(buf, off).ok_or("short header")?;
        let next = rd_u32(buf, off + 4).ok_or("short header")? as usize;
        caps.push(Cap {
            id,
            bytes: &buf[off..],
        });
        if next != 0 && next <= off {
            return Err(format!(
                "capability at {off:#x} points backwards to {next:#x}"
            ));
        }
        off = next;
    }
    Ok(caps)
}

/// The fixed part of `struct vfio_region_info` (32 bytes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct RegionInfo {
    pub argsz: u32,
    pub flags: u32,
    pub index: u32,
    pub cap_offset: u32,
    pub size: u64,
    /// Offset of the region in the device fd (for pread/pwrite/mmap).
    pub offset: u64,
}

pub(crate) const REGION_INFO_LEN: usize = 32;

impl RegionInfo {
    pub(crate) fn parse(b: &[u8]) -> Result<RegionInfo, String> {
        let short = || {
            format!(
                "vfio_region_info needs {REGION_INFO_LEN} bytes, have {}",
                b.len()
            )
        };
        Ok(RegionInfo {
            argsz: rd_u32(b, 0).ok_or_else(short)?,
            flags: rd_u32(b, 4).ok_or_else(short)?,
            index: rd_u32(b, 8).ok_or_else(short)?,
            cap_offset: rd_u32(b, 12).ok_or_else(short)?,
            size: rd_u64(b, 16).ok_or_else(short)?,
            offset: rd_u64(b, 24).ok_or_else(short)?,
        })
    }
}

/// One mmappable area from `VFIO_REGION_INFO_CAP_SPARSE_MMAP`, relative to the region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SparseArea {
    /// Offset in the region.
    pub offset: u64,
    /// Length in bytes.
    pub size: u64,
}

/// Capabilities of a region that matter to us.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RegionCaps {
    /// `Some` when the kernel restricts mmap to these areas.
    pub sparse: Option<Vec<SparseArea>>,
    /// `VFIO_REGION_INFO_CAP_MSIX_MAPPABLE`: the MSI-X table may be mmapped.
    pub msix_mappable: bool,
}

/// Parse the capability chain of a region-info buffer (as filled by the kernel).
pub(crate) fn parse_region_caps(buf: &[u8]) -> Result<(RegionInfo, RegionCaps), String> {
    use vfio_bindings::bindings::vfio::{
        VFIO_REGION_INFO_CAP_MSIX_MAPPABLE, VFIO_REGION_INFO_CAP_SPARSE_MMAP,
        VFIO_REGION_INFO_FLAG_CAPS,
    };
    let info = RegionInfo::parse(buf)?;
    let mut caps = RegionCaps::default();
    if info.flags & VFIO_REGION_INFO_FLAG_CAPS == 0 || info.cap_offset == 0 {
        return Ok((info, caps));
    }
    let valid = buf.len().min(info.argsz as usize);
    for cap in cap_chain(&buf[..valid], info.cap_offset)? {
        match u32::from(cap.id) {
            VFIO_REGION_INFO_CAP_SPARSE_MMAP => caps.sparse = Some(parse_sparse_mmap(&cap)?),
            VFIO_REGION_INFO_CAP_MSIX_MAPPABLE => caps.msix_mappable = true,
            _ => {}
        }
    }
    Ok((info, caps))
}

/// `struct vfio_region_info_cap_sparse_mmap`: header, nr_areas u32, reserved
/// u32, then `nr_areas` × { offset u64, size u64 }.
pub(crate) fn parse_sparse_mmap(cap: &Cap<'_>) -> Result<Vec<SparseArea>, String> {
    let n = rd_u32(cap.bytes, 8).ok_or("sparse-mmap capability truncated")? as usize;
    let mut areas = Vec::with_capacity(n.min(64));
    for i in 0..n {
        let at = 16usize
            .checked_add(i.checked_mul(16).ok_or("overflow")?)
            .ok_or("overflow")?;
        let offset = rd_u64(cap.bytes, at)
            .ok_or_else(|| format!("sparse-mmap area {i} of {n} runs past the buffer"))?;
        let size = rd_u64(cap.bytes, at + 8)
            .ok_or_else(|| format!("sparse-mmap area {i} of {n} runs past the buffer"))?;
        areas.push(SparseArea { offset, size });
    }
    Ok(areas)
}

/// The fixed part of `struct vfio_iommu_type1_info` (24 bytes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct IommuInfo {
    pub argsz: u32,
    pub flags: u32,
    pub iova_pgsizes: u64,
    pub cap_offset: u32,
}

pub(crate) const IOMMU_INFO_LEN: usize = 24;

/// What we take from `VFIO_IOMMU_GET_INFO`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct IommuCaps {
    /// Supported IOMMU page sizes (bitmap); 0 if not reported.
    pub pgsizes: u64,
    /// Usable IOVA ranges, if the kernel reported them.
    pub iova_ranges: Option<Vec<IovaRange>>,
    /// Remaining number of DMA mappings allowed, if reported.
    pub dma_avail: Option<u32>,
}

pub(crate) fn parse_iommu_info(buf: &[u8]) -> Result<(IommuInfo, IommuCaps), String> {
    use vfio_bindings::bindings::vfio::{
        VFIO_IOMMU_INFO_CAPS, VFIO_IOMMU_INFO_PGSIZES, VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE,
        VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL,
    };
    let short = || {
        format!(
            "vfio_iommu_type1_info needs {IOMMU_INFO_LEN} bytes, have {}",
            buf.len()
        )
    };
    let info = IommuInfo {
        argsz: rd_u32(buf, 0).ok_or_else(short)?,
        flags: rd_u32(buf, 4).ok_or_else(short)?,
        iova_pgsizes: rd_u64(buf, 8).ok_or_else(short)?,
        cap_offset: rd_u32(buf, 16).ok_or_else(short)?,
    };
    let mut caps = IommuCaps::default();
    if info.flags & VFIO_IOMMU_INFO_PGSIZES != 0 {
        caps.pgsizes = info.iova_pgsizes;
    }
    if info.flags & VFIO_IOMMU_INFO_CAPS != 0 && info.cap_offset != 0 {
        let valid = buf.len().min(info.argsz as usize);
        for cap in cap_chain(&buf[..valid], info.cap_offset)? {
            match u32::from(cap.id) {
                VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE => {
                    caps.iova_ranges = Some(parse_iova_ranges(&cap)?)
                }
                VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL => caps.dma_avail = rd_u32(cap.bytes, 8),
                _ => {}
            }
        }
    }
    Ok((info, caps))
}

/// `struct vfio_iommu_type1_info_cap_iova_range`: header, nr_iovas u32,
/// reserved u32, then `nr_iovas` × { start u64, end u64 (inclusive) }.
pub(crate) fn parse_iova_ranges(cap: &Cap<'_>) -> Result<Vec<IovaRange>, String> {
    let n = rd_u32(cap.bytes, 8).ok_or("IOVA-range capability truncated")? as usize;
    let mut v = Vec::with_capacity(n.min(64));
    for i in 0..n {
        let at = 16usize
            .checked_add(i.checked_mul(16).ok_or("overflow")?)
            .ok_or("overflow")?;
        let start = rd_u64(cap.bytes, at)
            .ok_or_else(|| format!("IOVA range {i} of {n} runs past the buffer"))?;
        let end = rd_u64(cap.bytes, at + 8)
            .ok_or_else(|| format!("IOVA range {i} of {n} runs past the buffer"))?;
        if end < start {
            return Err(format!(
                "IOVA range {i} ends ({end:#x}) before it starts ({start:#x})"
            ));
        }
        v.push(IovaRange { start, end });
    }
    Ok(v)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Build a region-info buffer the way the kernel lays it out.
    pub(crate) fn region_buf(
        size: u64,
        offset: u64,
        sparse: Option<&[(u64, u64)]>,
        extra_cap_first: bool,
    ) -> Vec<u8> {
        let mut b = vec![0u8; REGION_INFO_LEN];
        wr_u32(&mut b, 4, 0x7 | if sparse.is_some() { 8 } else { 0 });
        b[16..24].copy_from_slice(&size.to_ne_bytes());
        b[24..32].copy_from_slice(&offset.to_ne_bytes());
        if let Some(areas) = sparse {
            let mut first = b.len() as u32;
            if extra_cap_first {
                // An unknown capability (type, id 2) first, then sparse-mmap.
                let at = b.len();
                b.extend_from_slice(&2u16.to_ne_bytes());
                b.extend_from_slice(&1u16.to_ne_bytes());
                b.extend_from_slice(&((at + 16) as u32).to_ne_bytes());
                b.extend_from_slice(&[0u8; 8]);
                first = at as u32;
            }
            b.extend_from_slice(&1u16.to_ne_bytes()); // SPARSE_MMAP
            b.extend_from_slice(&1u16.to_ne_bytes());
            b.extend_from_slice(&0u32.to_ne_bytes()); // last
            b.extend_from_slice(&(areas.len() as u32).to_ne_bytes());
            b.extend_from_slice(&0u32.to_ne_bytes());
            for (o, s) in areas {
                b.extend_from_slice(&o.to_ne_bytes());
                b.extend_from_slice(&s.to_ne_bytes());
            }
            wr_u32(&mut b, 12, first);
        }
        let len = b.len() as u32;
        wr_u32(&mut b, 0, len);
        b
    }

    #[test]
    fn region_without_caps() {
        let b = region_buf(0x4000, 0x1_0000_0000, None, false);
        let (info, caps) = parse_region_caps(&b).unwrap();
        assert_eq!(info.size, 0x4000);
        assert_eq!(info.offset, 0x1_0000_0000);
        assert_eq!(caps, RegionCaps::default());
    }

    #[test]
    fn region_sparse_mmap_qemu_nvme_like() {
        // QEMU NVMe: 16 KiB BAR0, MSI-X table + PBA in the last page.
        let b = region_buf(0x4000, 0, Some(&[(0, 0x3000)]), true);
        let (info, caps) = parse_region_caps(&b).unwrap();
        assert_eq!(info.cap_offset, REGION_INFO_LEN as u32);
        assert_eq!(
            caps.sparse,
            Some(vec![SparseArea {
                offset: 0,
                size: 0x3000
            }])
        );
        let b = region_buf(0x10000, 0, Some(&[(0, 0x2000), (0x3000, 0xd000)]), false);
        let (_, caps) = parse_region_caps(&b).unwrap();
        assert_eq!(caps.sparse.unwrap().len(), 2);
    }

    #[test]
    fn truncated_and_looping_chains_are_errors() {
        let b = region_buf(0x4000, 0, Some(&[(0, 0x3000), (0x3800, 0x800)]), false);
        // Cut the buffer in the middle of the second area.
        let mut cut = b[..b.len() - 4].to_vec();
        let l = cut.len() as u32;
        wr_u32(&mut cut, 0, l);
        assert!(parse_region_caps(&cut).unwrap_err().contains("runs past"));
        // Header past the end.
        let mut bad = b.clone();
        wr_u32(&mut bad, 12, 0x1000);
        assert!(parse_region_caps(&bad).is_err());
        // Self-loop.
        let mut lp = b.clone();
        wr_u32(&mut lp, REGION_INFO_LEN + 4, REGION_INFO_LEN as u32);
        assert!(parse_region_caps(&lp).unwrap_err().contains("backwards"));
        // Misaligned.
        let mut mis = b.clone();
        wr_u32(&mut mis, 12, 33);
        assert!(parse_region_caps(&mis).is_err());
        // Too short for the fixed part.
        assert!(parse_region_caps(&b[..20]).is_err());
        // Absurd area count.
        let mut huge = b;
        wr_u32(&mut huge, REGION_INFO_LEN + 8, u32::MAX);
        assert!(parse_region_caps(&huge).is_err());
    }

    #[test]
    fn iommu_info_iova_ranges() {
        let mut b = vec![0u8; IOMMU_INFO_LEN];
        wr_u32(&mut b, 4, 3); // PGSIZES | CAPS
        b[8..16].copy_from_slice(&0x4020_1000u64.to_ne_bytes());
        wr_u32(&mut b, 16, IOMMU_INFO_LEN as u32);
        // IOVA_RANGE cap, next -> DMA_AVAIL
        let next = (IOMMU_INFO_LEN + 16 + 32) as u32;
        b.extend_from_slice(&1u16.to_ne_bytes());
        b.extend_from_slice(&1u16.to_ne_bytes());
        b.extend_from_slice(&next.to_ne_bytes());
        b.extend_from_slice(&2u32.to_ne_bytes());
        b.extend_from_slice(&0u32.to_ne_bytes());
        for (s, e) in [(0u64, 0xfedf_ffffu64), (0xfef0_0000, 0x7f_ffff_ffff)] {
            b.extend_from_slice(&s.to_ne_bytes());
            b.extend_from_slice(&e.to_ne_bytes());
        }
        b.extend_from_slice(&3u16.to_ne_bytes());
        b.extend_from_slice(&1u16.to_ne_bytes());
        b.extend_from_slice(&0u32.to_ne_bytes());
        b.extend_from_slice(&65535u32.to_ne_bytes());
        let l = b.len() as u32;
        wr_u32(&mut b, 0, l);
        let (info, caps) = parse_iommu_info(&b).unwrap();
        assert_eq!(info.iova_pgsizes, 0x4020_1000);
        assert_eq!(caps.pgsizes, 0x4020_1000);
        assert_eq!(
            caps.iova_ranges,
            Some(vec![
                IovaRange {
                    start: 0,
                    end: 0xfedf_ffff
                },
                IovaRange {
                    start: 0xfef0_0000,
                    end: 0x7f_ffff_ffff
                }
            ])
        );
        assert_eq!(caps.dma_avail, Some(65535));

        // argsz smaller than the buffer: caps beyond argsz are not trusted.
        let mut small = b.clone();
        wr_u32(&mut small, 0, IOMMU_INFO_LEN as u32);
        assert!(parse_iommu_info(&small).is_err());

        // Inverted range.
        let mut inv = b;
        inv[IOMMU_INFO_LEN + 16..IOMMU_INFO_LEN + 24].copy_from_slice(&u64::MAX.to_ne_bytes());
        assert!(parse_iommu_info(&inv)
            .unwrap_err()
            .contains("before it starts"));
    }
}
