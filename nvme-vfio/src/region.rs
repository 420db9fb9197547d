//! VFIO device regions: info queries (with capability chains), mapping a BAR
//! while honouring sparse-mmap areas, and routing each register access either
//! to the mapping or to pread/pwrite on the device fd.

use std::fmt;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use nvme_core::MemoryType;
use vfio_bindings::bindings::vfio::VFIO_REGION_INFO_FLAG_MMAP;

use crate::caps::{parse_region_caps, rd_u32, wr_u32, RegionCaps, RegionInfo, REGION_INFO_LEN};
use crate::error::VfioError;
use crate::pci::PciAddress;
use crate::sys::{self, Mmap, Reg32};

/// Largest region-info buffer we are willing to allocate.
const MAX_INFO_LEN: usize = 64 * 1024;

/// `VFIO_DEVICE_GET_REGION_INFO` for `index`, growing the buffer until the
/// capability chain fits, then parsing it.
pub(crate) fn query_region(dev: &File, index: u32) -> Result<(RegionInfo, RegionCaps), VfioError> {
    let mut len = REGION_INFO_LEN;
    loop {
        let mut buf = vec![0u8; len];
        wr_u32(&mut buf, 8, index);
        sys::device_get_region_info(dev, &mut buf)?;
        let want = rd_u32(&buf, 0).unwrap_or(0) as usize;
        if want > buf.len() {
            if want > MAX_INFO_LEN || len >= MAX_INFO_LEN {
                return Err(VfioError::CapChain {
                    what: "region info",
                    reason: format!("kernel asks for a {want}-byte buffer"),
                });
            }
            len = want;
            continue;
        }
        return parse_region_caps(&buf).map_err(|reason| VfioError::CapChain {
            what: "region info",
            reason,
        });
    }
}

/// How a range of a BAR is reached.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum MappingRoute {
    /// `mmap` of the VFIO device fd at the region offset (uncached).
    VfioMmap,
    /// Not mappable (e.g. the MSI-X table): each access is a `pread`/`pwrite`
    /// on the VFIO device fd, performed by the kernel.
    VfioRegionRw,
    /// `mmap` of sysfs `resourceN_wc` (the BAR index), made before vfio
    /// touched the BAR.
    SysfsResourceWc(u8),
    /// `mmap` of a vfio dma-buf of the BAR with the WC memory attribute
    /// (cargo feature `dmabuf-wc`; an unmerged kernel proposal).
    VfioDmaBufWc,
}

impl fmt::Display for MappingRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MappingRoute::VfioMmap => f.write_str("vfio mmap"),
            MappingRoute::VfioRegionRw => f.write_str("vfio pread/pwrite"),
            MappingRoute::SysfsResourceWc(n) => write!(f, "sysfs resource{n}_wc"),
            MappingRoute::VfioDmaBufWc => f.write_str("vfio dma-buf (memattr WC)"),
        }
    }
}

/// What a range is used for, which decides the memory type it asks for.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RangePurpose {
    /// BAR0's register page: uncached, always.
    Registers,
    /// BAR0 past the register page (doorbells): write-combining if possible.
    Doorbells,
    /// Device memory (a CMB) in another BAR: write-combining if possible.
    DeviceMemory,
    /// Reached only through pread/pwrite (MSI-X table, PBA, unmappable).
    Unmapped,
}

impl fmt::Display for RangePurpose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RangePurpose::Registers => "registers",
            RangePurpose::Doorbells => "doorbells",
            RangePurpose::DeviceMemory => "device memory",
            RangePurpose::Unmapped => "not mapped",
        })
    }
}

/// One entry of the mapping report: a range of a BAR, how it is reached,
/// the memory type it asked for, got, and (where the platform can tell)
/// was verified to have.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MappingRecord {
    /// BAR index (0..=5).
    pub bar: u8,
    /// Offset of the range in the BAR.
    pub offset: u64,
    /// Length of the range.
    pub len: u64,
    /// What the range is used for.
    pub purpose: RangePurpose,
    /// The memory type asked for.
    pub requested: MemoryType,
    /// The memory type obtained (what the route gives, or what PAT
    /// verification found when it disagrees).
    pub obtained: MemoryType,
    /// The type the platform's own bookkeeping shows (x86:
    /// `pat_memtype_list`); `None` when it could not be checked.
    pub verified: Option<MemoryType>,
    /// How accesses get there.
    pub route: MappingRoute,
    /// Why the obtained type differs from the requested one, how it was
    /// verified, or why it could not be (empty when there is nothing to say).
    pub note: String,
}

impl MappingRecord {
    /// True when the verified type is known and differs from the obtained one.
    pub fn mismatch(&self) -> bool {
        self.verified.is_some_and(|v| v != self.obtained)
    }
}

impl fmt::Display for MappingRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "BAR{} {:#010x}..{:#010x} ({:#x} bytes) {}: requested {:?}, obtained {:?} via {}, verified {}",
            self.bar,
            self.offset,
            self.offset + self.len,
            self.len,
            self.purpose,
            self.requested,
            self.obtained,
            self.route,
            match self.verified {
                Some(v) => format!("{v:?}"),
                None => "no".into(),
            }
        )?;
        if self.mismatch() {
            f.write_str(" (MISMATCH)")?;
        }
        if !self.note.is_empty() {
            write!(f, "; {}", self.note)?;
        }
        Ok(())
    }
}

/// A range of a region, relative to the region start.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) struct Span {
    pub start: u64,
    pub len: u64,
}

/// Which parts of a region to mmap: nothing without the MMAP flag; the
/// sparse areas (trimmed inward to whole pages and to the region) when the
/// kernel lists them; else the whole region.
pub(crate) fn mmap_plan(info: &RegionInfo, caps: &RegionCaps, page: u64) -> Vec<Span> {
    if info.flags & VFIO_REGION_INFO_FLAG_MMAP == 0 || info.size == 0 {
        return Vec::new();
    }
    let Some(areas) = &caps.sparse else {
        return vec![Span {
            start: 0,
            len: info.size,
        }];
    };
    let mut v: Vec<Span> = areas
        .iter()
        .filter_map(|a| {
            let end = a.offset.checked_add(a.size)?.min(info.size);
            let start = a.offset.checked_add(page - 1)? & !(page - 1);
            let end = end & !(page - 1);
            (end > start).then(|| Span {
                start,
                len: end - start,
            })
        })
        .collect();
    v.sort_by_key(|s| s.start);
    // Drop overlaps (the kernel never reports them; be defensive).
    let mut out: Vec<Span> = Vec::with_capacity(v.len());
    for s in v {
        if out.last().is_none_or(|l| l.start + l.len <= s.start) {
            out.push(s);
        }
    }
    out
}

/// Where one access of `width` bytes at `offset` goes.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Route {
    /// Through mapping number `area`, at `off` inside it.
    Mmio { area: usize, off: usize },
    /// Through pread/pwrite on the device fd.
    Rw,
    /// Outside the region (or misaligned): an error.
    Invalid,
}

/// Route an access. Accesses must be naturally aligned and inside the region;
/// they go to a mapping only if the whole access lies inside one mapped span.
#[inline]
pub(crate) fn route(spans: &[Span], region_size: u64, offset: u64, width: u64) -> Route {
    let Some(end) = offset.checked_add(width) else {
        return Route::Invalid;
    };
    if width == 0 || offset % width != 0 || end > region_size {
        return Route::Invalid;
    }
    for (i, s) in spans.iter().enumerate() {
        if offset >= s.start && end <= s.start + s.len {
            return Route::Mmio {
                area: i,
                off: (offset - s.start) as usize,
            };
        }
    }
    Route::Rw
}

/// The report for one BAR: mapped spans and the gaps between them.
pub(crate) fn report(
    bar: u8,
    size: u64,
    mapped: &[(Span, MemoryType)],
    requested: MemoryType,
) -> Vec<MappingRecord> {
    let mut out = Vec::new();
    let mut at = 0;
    let rw = |offset: u64, len: u64| MappingRecord {
        bar,
        offset,
        len,
        purpose: RangePurpose::Unmapped,
        requested,
        obtained: MemoryType::Uncached,
        verified: None,
        route: MappingRoute::VfioRegionRw,
        note: String::new(),
    };
    for (s, mt) in mapped {
        if s.start > at {
            out.push(rw(at, s.start - at));
        }
        out.push(MappingRecord {
            bar,
            offset: s.start,
            len: s.len,
            purpose: if bar == 0 {
                RangePurpose::Registers
            } else {
                RangePurpose::DeviceMemory
            },
            requested,
            obtained: *mt,
            verified: None,
            route: MappingRoute::VfioMmap,
            note: String::new(),
        });
        at = s.start + s.len;
    }
    if size > at {
        out.push(rw(at, size - at));
    }
    out
}

/// A memory BAR: its mapped spans plus the device fd fallback.
#[derive(Debug)]
pub(crate) struct Bar {
    pub index: u8,
    pub size: u64,
    /// Offset of the region in the device fd.
    pub file_offset: u64,
    spans: Vec<Span>,
    maps: Vec<Arc<Mmap>>,
    types: Vec<MemoryType>,
    pub records: Vec<MappingRecord>,
}

impl Bar {
    /// Map what the kernel allows of BAR `index`. A span whose mmap fails is
    /// logged and left to the pread/pwrite route (slow but correct).
    pub(crate) fn map(
        dev: &File,
        address: &PciAddress,
        index: u8,
        info: &RegionInfo,
        caps: &RegionCaps,
    ) -> Bar {
        let page = sys::page_size() as u64;
        let plan = mmap_plan(info, caps, page);
        let mut spans = Vec::new();
        let mut maps = Vec::new();
        let mut types = Vec::new();
        for s in plan {
            let mapped = usize::try_from(s.len)
                .ok()
                .and_then(|len| info.offset.checked_add(s.start).map(|off| (off, len)))
                .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::InvalidInput))
                .and_then(|(off, len)| Mmap::file(dev, off, len));
            match mapped {
                Ok(m) => {
                    spans.push(s);
                    maps.push(Arc::new(m));
                    // vfio-pci maps BARs with pgprot_noncached(): UC- on x86,
                    // Device-nGnRnE on arm64.
                    types.push(MemoryType::Uncached);
                }
                Err(e) => tracing::warn!(
                    "{address}: mmap of BAR{index} {:#x}+{:#x} failed ({e}); using pread/pwrite for it",
                    s.start,
                    s.len
                ),
            }
        }
        let mapped: Vec<(Span, MemoryType)> =
            spans.iter().copied().zip(types.iter().copied()).collect();
        let records = report(index, info.size, &mapped, MemoryType::Uncached);
        Bar {
            index,
            size: info.size,
            file_offset: info.offset,
            spans,
            maps,
            types,
            records,
        }
    }

    /// The mappings (what removal replaces).
    pub(crate) fn maps(&self) -> &[Arc<Mmap>] {
        &self.maps
    }

    /// A doorbell-style register handle at `offset`, if it is in a mapping.
    pub(crate) fn reg32(&self, offset: u64) -> Option<(Reg32, MemoryType)> {
        match route(&self.spans, self.size, offset, 4) {
            Route::Mmio { area, off } => {
                Some((Reg32::new(&self.maps[area], off)?, self.types[area]))
            }
            _ => None,
        }
    }

    /// The mapping holding all of `[offset, offset+len)` and the offset of
    /// `offset` inside it, if one mapped span covers the range.
    pub(crate) fn window(&self, offset: u64, len: u64) -> Option<(Arc<Mmap>, usize, MemoryType)> {
        let end = offset.checked_add(len)?;
        self.spans
            .iter()
            .zip(&self.maps)
            .zip(&self.types)
            .find(|((s, _), _)| offset >= s.start && end <= s.start + s.len)
            .map(|((s, m), t)| (Arc::clone(m), (offset - s.start) as usize, *t))
    }

    /// Validate an access for the pread/pwrite route.
    pub(crate) fn check(&self, offset: u64, width: u64) -> bool {
        route(&self.spans, self.size, offset, width) != Route::Invalid
    }

    pub(crate) fn read32(&self, dev: &impl RegionIo, offset: u64) -> Result<u32, String> {
        match route(&self.spans, self.size, offset, 4) {
            Route::Mmio { area, off } => self.maps[area]
                .read32(off)
                .ok_or_else(|| "bad mapping offset".into()),
            Route::Rw => rw_read::<4>(dev, self.file_offset + offset).map(u32::from_ne_bytes),
            Route::Invalid => Err(self.invalid(offset, 4)),
        }
    }

    pub(crate) fn read64(&self, dev: &impl RegionIo, offset: u64) -> Result<u64, String> {
        match route(&self.spans, self.size, offset, 8) {
            Route::Mmio { area, off } => self.maps[area]
                .read64(off)
                .ok_or_else(|| "bad mapping offset".into()),
            Route::Rw => rw_read::<8>(dev, self.file_offset + offset).map(u64::from_ne_bytes),
            Route::Invalid => Err(self.invalid(offset, 8)),
        }
    }

    pub(crate) fn write32(&self, dev: &impl RegionIo, offset: u64, v: u32) -> Result<(), String> {
        match route(&self.spans, self.size, offset, 4) {
            Route::Mmio { area, off } => self.maps[area]
                .write32(off, v)
                .then_some(())
                .ok_or_else(|| "bad mapping offset".into()),
            Route::Rw => rw_write(dev, self.file_offset + offset, &v.to_ne_bytes()),
            Route::Invalid => Err(self.invalid(offset, 4)),
        }
    }

    pub(crate) fn write64(&self, dev: &impl RegionIo, offset: u64, v: u64) -> Result<(), String> {
        match route(&self.spans, self.size, offset, 8) {
            Route::Mmio { area, off } => self.maps[area]
                .write64(off, v)
                .then_some(())
                .ok_or_else(|| "bad mapping offset".into()),
            Route::Rw => rw_write(dev, self.file_offset + offset, &v.to_ne_bytes()),
            Route::Invalid => Err(self.invalid(offset, 8)),
        }
    }

    fn invalid(&self, offset: u64, width: u64) -> String {
        format!("BAR{} access of {width} bytes at {offset:#x} is misaligned or beyond the {:#x}-byte BAR", self.index, self.size)
    }
}

/// Positioned reads and writes on a device fd (a `File`, or the device's
/// `DeviceFd`, which fails them once the device is removed).
pub(crate) trait RegionIo {
    fn read_at(&self, buf: &mut [u8], at: u64) -> std::io::Result<usize>;
    fn write_at(&self, buf: &[u8], at: u64) -> std::io::Result<usize>;
}

impl RegionIo for File {
    fn read_at(&self, buf: &mut [u8], at: u64) -> std::io::Result<usize> {
        FileExt::read_at(self, buf, at)
    }
    fn write_at(&self, buf: &[u8], at: u64) -> std::io::Result<usize> {
        FileExt::write_at(self, buf, at)
    }
}

impl RegionIo for crate::device::DeviceFd {
    fn read_at(&self, buf: &mut [u8], at: u64) -> std::io::Result<usize> {
        FileExt::read_at(&*self.file()?, buf, at)
    }
    fn write_at(&self, buf: &[u8], at: u64) -> std::io::Result<usize> {
        FileExt::write_at(&*self.file()?, buf, at)
    }
}

/// One `pread` of exactly `N` bytes.
pub(crate) fn rw_read<const N: usize>(
    dev: &(impl RegionIo + ?Sized),
    at: u64,
) -> Result<[u8; N], String> {
    let mut b = [0u8; N];
    match dev.read_at(&mut b, at) {
        Ok(n) if n == N => Ok(b),
        Ok(n) => Err(format!("short pread at {at:#x}: {n} of {N} bytes")),
        Err(e) => Err(format!("pread at {at:#x}: {e}")),
    }
}

/// One `pwrite` of exactly `b.len()` bytes.
pub(crate) fn rw_write(dev: &(impl RegionIo + ?Sized), at: u64, b: &[u8]) -> Result<(), String> {
    match dev.write_at(b, at) {
        Ok(n) if n == b.len() => Ok(()),
        Ok(n) => Err(format!("short pwrite at {at:#x}: {n} of {} bytes", b.len())),
        Err(e) => Err(format!("pwrite at {at:#x}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::caps::SparseArea;

    const PAGE: u64 = 4096;

    fn info(size: u64, mmap: bool) -> RegionInfo {
        RegionInfo {
            flags: 3 | if mmap { VFIO_REGION_INFO_FLAG_MMAP } else { 0 },
            size,
            ..Default::default()
        }
    }

    fn sparse(a: &[(u64, u64)]) -> RegionCaps {
        RegionCaps {
            sparse: Some(
                a.iter()
                    .map(|&(offset, size)| SparseArea { offset, size })
                    .collect(),
            ),
            msix_mappable: false,
        }
    }

    #[test]
    fn plan_whole_region_sparse_and_none() {
        assert_eq!(
            mmap_plan(&info(0x4000, true), &RegionCaps::default(), PAGE),
            vec![Span {
                start: 0,
                len: 0x4000
            }]
        );
        assert_eq!(
            mmap_plan(&info(0x4000, false), &RegionCaps::default(), PAGE),
            vec![]
        );
        // QEMU NVMe with MSI-X table + PBA in the last page of a 16 KiB BAR.
        assert_eq!(
            mmap_plan(&info(0x4000, true), &sparse(&[(0, 0x3000)]), PAGE),
            vec![Span {
                start: 0,
                len: 0x3000
            }]
        );
        // Unaligned areas are trimmed inward; empty / outside areas dropped; sorted.
        assert_eq!(
            mmap_plan(
                &info(0x10000, true),
                &sparse(&[
                    (0x9800, 0x2000),
                    (0x100, 0x1000),
                    (0, 0),
                    (0x20000, 0x1000),
                    (0xf000, 0x8000)
                ]),
                PAGE
            ),
            vec![
                Span {
                    start: 0xa000,
                    len: 0x1000
                },
                Span {
                    start: 0xf000,
                    len: 0x1000
                }
            ]
        );
        // An empty sparse list means nothing is mappable.
        assert_eq!(mmap_plan(&info(0x4000, true), &sparse(&[]), PAGE), vec![]);
    }

    #[test]
    fn routing_with_sparse_areas() {
        // Mapped: [0, 0x2000) and [0x3000, 0x4000); gap (MSI-X) at [0x2000, 0x3000).
        let spans = [
            Span {
                start: 0,
                len: 0x2000,
            },
            Span {
                start: 0x3000,
                len: 0x1000,
            },
        ];
        let size = 0x4000;
        assert_eq!(route(&spans, size, 0x0, 4), Route::Mmio { area: 0, off: 0 });
        assert_eq!(
            route(&spans, size, 0x1000, 4),
            Route::Mmio {
                area: 0,
                off: 0x1000
            }
        );
        assert_eq!(
            route(&spans, size, 0x1ff8, 8),
            Route::Mmio {
                area: 0,
                off: 0x1ff8
            }
        );
        assert_eq!(route(&spans, size, 0x2000, 4), Route::Rw);
        assert_eq!(route(&spans, size, 0x2ffc, 4), Route::Rw);
        assert_eq!(
            route(&spans, size, 0x3004, 4),
            Route::Mmio { area: 1, off: 4 }
        );
        assert_eq!(
            route(&spans, size, 0x3ff8, 8),
            Route::Mmio {
                area: 1,
                off: 0xff8
            }
        );
        // Misaligned, zero-width, beyond the BAR, overflow.
        assert_eq!(route(&spans, size, 0x2, 4), Route::Invalid);
        assert_eq!(route(&spans, size, 0x4, 8), Route::Invalid);
        assert_eq!(route(&spans, size, 0x4000, 4), Route::Invalid);
        assert_eq!(route(&spans, size, 0x3ffc, 8), Route::Invalid);
        assert_eq!(route(&spans, size, 0, 0), Route::Invalid);
        assert_eq!(route(&spans, size, u64::MAX - 3, 4), Route::Invalid);
        // No mappings at all: everything in range goes through pread/pwrite.
        assert_eq!(route(&[], size, 0x1000, 4), Route::Rw);
    }

    #[test]
    fn report_covers_the_whole_bar() {
        let mapped = [
            (
                Span {
                    start: 0,
                    len: 0x2000,
                },
                MemoryType::Uncached,
            ),
            (
                Span {
                    start: 0x3000,
                    len: 0x1000,
                },
                MemoryType::Uncached,
            ),
        ];
        let r = report(0, 0x5000, &mapped, MemoryType::Uncached);
        let got: Vec<(u64, u64, MappingRoute)> =
            r.iter().map(|m| (m.offset, m.len, m.route)).collect();
        assert_eq!(
            got,
            vec![
                (0, 0x2000, MappingRoute::VfioMmap),
                (0x2000, 0x1000, MappingRoute::VfioRegionRw),
                (0x3000, 0x1000, MappingRoute::VfioMmap),
                (0x4000, 0x1000, MappingRoute::VfioRegionRw),
            ]
        );
        let s = r[0].to_string();
        assert!(
            s.contains("BAR0") && s.contains("vfio mmap") && s.contains("Uncached"),
            "{s}"
        );
        assert_eq!(report(0, 0x1000, &[], MemoryType::Uncached).len(), 1);
    }

    /// Sparse routing end to end, with an ordinary file standing in for the
    /// VFIO device fd (region at file offset 0x10000) and anonymous memory
    /// standing in for the mapped span.
    #[test]
    fn bar_access_falls_back_to_file_io_outside_mapped_span() {
        let dir = crate::sysfs::tests::TempDir::new("bar");
        let path = dir.0.join("dev");
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        f.set_len(0x20000).unwrap();
        let map = Arc::new(Mmap::anonymous(0x2000, false).unwrap());
        let bar = Bar {
            index: 0,
            size: 0x4000,
            file_offset: 0x10000,
            spans: vec![Span {
                start: 0,
                len: 0x2000,
            }],
            maps: vec![map.clone()],
            types: vec![MemoryType::Uncached],
            records: vec![],
        };
        bar.write32(&f, 0x14, 0xabcd).unwrap();
        assert_eq!(map.read32(0x14), Some(0xabcd));
        assert_eq!(bar.read32(&f, 0x14).unwrap(), 0xabcd);
        bar.write64(&f, 0x28, 0x1234_5678_9abc_def0).unwrap();
        assert_eq!(bar.read64(&f, 0x28).unwrap(), 0x1234_5678_9abc_def0);
        // Outside the span: goes to the file at region offset + offset.
        bar.write32(&f, 0x2004, 0x55aa).unwrap();
        let mut b = [0u8; 4];
        f.read_exact_at(&mut b, 0x12004).unwrap();
        assert_eq!(u32::from_ne_bytes(b), 0x55aa);
        assert_eq!(bar.read32(&f, 0x2004).unwrap(), 0x55aa);
        bar.write64(&f, 0x3ff8, 7).unwrap();
        assert_eq!(bar.read64(&f, 0x3ff8).unwrap(), 7);
        // Invalid accesses are errors, not panics.
        assert!(bar.read32(&f, 0x4000).is_err());
        assert!(bar.write64(&f, 0x4, 0).is_err());
        // Doorbell handles: only inside mapped spans.
        let (r, mt) = bar.reg32(0x1008).unwrap();
        assert_eq!(mt, MemoryType::Uncached);
        r.write(99);
        assert_eq!(map.read32(0x1008), Some(99));
        assert!(bar.reg32(0x2008).is_none());
        assert!(bar.check(0x2008, 4));
        assert!(!bar.check(0x2006, 4));
    }
}
