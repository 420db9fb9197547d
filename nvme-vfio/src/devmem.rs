//! Carrying out the write-combining plan of [`crate::wc`] at open, and the
//! device-memory windows handed out by `Hardware::map_device_memory`.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use nvme_core::{DeviceMemory, MemoryType};
use vfio_bindings::bindings::vfio::VFIO_REGION_INFO_FLAG_MMAP;

use crate::caps::{RegionCaps, RegionInfo};
use crate::pci::PciAddress;
use crate::region::{mmap_plan, Bar, MappingRecord, MappingRoute, RangePurpose, Span};
use crate::sys::{self, Mmap};
use crate::wc::{
    self, choose_route, describe, BarFacts, BarResource, PatSource, PatVerdict, VfioWcSupport,
    WcChoice, REGISTER_PAGE,
};

/// `VFIO_DEVICE_FEATURE_DMA_BUF_MEMATTR` and its WC value, from the pending
/// "vfio/pci: Add mmap() attributes to DMABUF feature" patch (v4, not
/// merged as of Linux 7.3-rc). The numbers may still change: this is why the
/// route sits behind the `dmabuf-wc` cargo feature.
#[cfg(feature = "dmabuf-wc")]
pub(crate) mod dmabuf_uapi {
    /// Feature number.
    pub const FEATURE_DMA_BUF_MEMATTR: u32 = 14;
    /// `VFIO_DEVICE_FEATURE_DMA_BUF_MEMATTR_WC`.
    pub const MEMATTR_WC: u32 = 1;
}

/// Route 1: is there a vfio uAPI for WC mappings? Probed, never assumed.
pub(crate) fn probe_vfio_wc(dev: &File) -> VfioWcSupport {
    let dmabuf = sys::device_feature(
        dev,
        sys::FEATURE_PROBE | sys::FEATURE_GET | sys::FEATURE_DMA_BUF,
        &[],
    );
    let state = match &dmabuf {
        Ok(_) => "VFIO_DEVICE_FEATURE_DMA_BUF is present".to_string(),
        Err(e) => format!("VFIO_DEVICE_FEATURE_DMA_BUF probe: {e}; it needs Linux 6.19+"),
    };
    #[cfg(feature = "dmabuf-wc")]
    {
        if dmabuf.is_ok() {
            match sys::device_feature(
                dev,
                sys::FEATURE_PROBE | sys::FEATURE_SET | dmabuf_uapi::FEATURE_DMA_BUF_MEMATTR,
                &[],
            ) {
                Ok(_) => return VfioWcSupport::DmaBufMemattr,
                Err(e) => {
                    return VfioWcSupport::Unavailable(format!(
                        "vfio has no WC mmap uAPI on this kernel ({state}; VFIO_DEVICE_FEATURE_DMA_BUF_MEMATTR probe: {e})"
                    ))
                }
            }
        }
        VfioWcSupport::Unavailable(format!("vfio has no WC mmap uAPI on this kernel ({state})"))
    }
    #[cfg(not(feature = "dmabuf-wc"))]
    VfioWcSupport::Unavailable(format!(
        "vfio has no WC mmap uAPI on this kernel ({state}; the dma-buf memattr WC route is not built: cargo feature dmabuf-wc)"
    ))
}

/// Route 1: a dma-buf of all of BAR `index`, set to WC, mapped.
#[cfg(feature = "dmabuf-wc")]
fn map_dmabuf_wc(dev: &File, index: u8, size: u64) -> Result<Mmap, String> {
    let len = usize::try_from(size).map_err(|_| "BAR too large to map".to_string())?;
    // struct vfio_device_feature_dma_buf + one vfio_region_dma_range.
    let mut p = Vec::with_capacity(32);
    p.extend_from_slice(&u32::from(index).to_ne_bytes());
    p.extend_from_slice(&((libc::O_RDWR | libc::O_CLOEXEC) as u32).to_ne_bytes());
    p.extend_from_slice(&0u32.to_ne_bytes());
    p.extend_from_slice(&1u32.to_ne_bytes());
    p.extend_from_slice(&0u64.to_ne_bytes());
    p.extend_from_slice(&size.to_ne_bytes());
    let buf = sys::device_feature_fd(dev, sys::FEATURE_GET | sys::FEATURE_DMA_BUF, &p)
        .map_err(|e| format!("VFIO_DEVICE_FEATURE_DMA_BUF: {e}"))?;
    use std::os::fd::AsRawFd;
    let mut a = Vec::with_capacity(8);
    a.extend_from_slice(&buf.as_raw_fd().to_ne_bytes());
    a.extend_from_slice(&dmabuf_uapi::MEMATTR_WC.to_ne_bytes());
    sys::device_feature(
        dev,
        sys::FEATURE_SET | dmabuf_uapi::FEATURE_DMA_BUF_MEMATTR,
        &a,
    )
    .map_err(|e| format!("VFIO_DEVICE_FEATURE_DMA_BUF_MEMATTR(WC): {e}"))?;
    Mmap::file(&buf, 0, len).map_err(|e| format!("mmap of the dma-buf: {e}"))
}

#[cfg(not(feature = "dmabuf-wc"))]
fn map_dmabuf_wc(_dev: &File, _index: u8, _size: u64) -> Result<Mmap, String> {
    Err("the dma-buf WC route is not built (cargo feature dmabuf-wc)".into())
}

/// Route 2: map all of `resourceN_wc`.
fn map_sysfs_wc(path: &std::path::Path, size: u64) -> Result<Mmap, String> {
    let len = usize::try_from(size).map_err(|_| "BAR too large to map".to_string())?;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| format!("open {}: {e}", path.display()))?;
    Mmap::file(&f, 0, len).map_err(|e| format!("mmap of {}: {e}", path.display()))
}

/// VFIO's info of one region: the fixed part and the capabilities.
pub(crate) type Region = (RegionInfo, RegionCaps);
/// VFIO's region info of BAR0..BAR5 (`None` where the query failed).
pub(crate) type BarRegions = [Option<Region>];

/// The write-combining plan of one device, made at open: what sysfs and
/// VFIO say about each BAR, what the vfio WC probe found, where PAT can be
/// read, and whether WC is wanted at all.
///
/// It is made, and carried out by [`WcPlan::map_bars`], before vfio maps,
/// reads or writes any memory BAR: on x86 the first mapping of a physical
/// range fixes its PAT type, and vfio's first access ioremaps the whole BAR
/// uncached.
pub(crate) struct WcPlan {
    /// BAR0..BAR5.
    facts: Vec<BarFacts>,
    ctx: PlanCtx,
}

/// What carrying out the plan produced.
pub(crate) struct MappedBars {
    pub bar0: Bar,
    /// The memory BARs other than BAR0.
    pub mem_bars: Vec<MemBar>,
    /// The mapping report: BAR0's ranges, then each memory BAR's.
    pub records: Vec<MappingRecord>,
    /// sysfs `resource` lines of BAR0..BAR5.
    pub resources: [Option<BarResource>; 6],
    /// What the vfio WC probe (route 1) found.
    pub vfio_wc: VfioWcSupport,
}

impl WcPlan {
    /// Gather the facts of BAR0..BAR5 from sysfs (`<device>/resource`,
    /// `resourceN_wc`) and from `regions`, and probe the vfio WC route.
    pub(crate) fn new(
        dev: &File,
        sysfs_path: &Path,
        regions: &BarRegions,
        debugfs_root: &Path,
        wc_enabled: bool,
    ) -> WcPlan {
        let bar_resources = wc::read_bar_resources(sysfs_path);
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
                let wc_file = sysfs_path.join(format!("resource{i}_wc"));
                BarFacts {
                    index: i,
                    size,
                    resource: bar_resources[i as usize],
                    wc_file: wc_file.exists().then_some(wc_file),
                    whole_mmap,
                }
            })
            .collect();
        let vfio = probe_vfio_wc(dev);
        WcPlan {
            facts,
            ctx: PlanCtx {
                pat: PatSource::new(debugfs_root),
                vfio,
                wc_enabled,
            },
        }
    }

    /// Carry out the plan: map each memory BAR past BAR0 (`pre` is the
    /// vfio mapping `touch_bar_first` made, if any), then BAR0 (`bar0` is
    /// its region info, already checked), and build the mapping report.
    pub(crate) fn map_bars(
        self,
        dev: &File,
        address: &PciAddress,
        regions: &BarRegions,
        bar0: &Region,
        mut pre: Option<Bar>,
    ) -> MappedBars {
        let mut mem_bars = Vec::new();
        for f in self.facts.iter().skip(1) {
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
            mem_bars.push(map_mem_bar(&self.ctx, dev, address, f, ri, caps, pre_bar));
        }

        let bar0 = Bar::map(dev, address, 0, &bar0.0, &bar0.1);
        let doorbell_why = wc::doorbell_reason(
            &self.facts[0],
            &self.ctx.vfio,
            cfg!(any(target_arch = "x86_64", target_arch = "x86")),
        );
        let mut records = bar0_records(
            &self.ctx,
            address,
            &self.facts[0],
            &bar0.records,
            &doorbell_why,
        );
        for m in &mem_bars {
            records.extend(m.records.iter().cloned());
        }
        MappedBars {
            bar0,
            mem_bars,
            records,
            resources: std::array::from_fn(|i| self.facts[i].resource),
            vfio_wc: self.ctx.vfio,
        }
    }
}

/// What the plan needs besides the BAR facts.
pub(crate) struct PlanCtx {
    pub pat: PatSource,
    pub vfio: VfioWcSupport,
    /// False: ask for uncached everywhere (OpenOptions::write_combining(false)).
    pub wc_enabled: bool,
}

impl PlanCtx {
    fn verify(&self, facts: &BarFacts, offset: u64, len: u64) -> PatVerdict {
        match facts.resource.filter(|r| r.is_mem()) {
            Some(r) => self.pat.check(r.start + offset, r.start + offset + len),
            None => PatVerdict::Unavailable(
                "not verified: physical address unknown (no sysfs resource)".into(),
            ),
        }
    }
}

/// A memory BAR other than BAR0, mapped according to the plan.
#[derive(Debug)]
pub(crate) struct MemBar {
    pub index: u8,
    pub size: u64,
    /// The WC mapping of the whole BAR, when one was obtained and kept.
    wc: Option<Arc<Mmap>>,
    /// The uncached vfio mapping, when no WC mapping was kept.
    uc: Option<Bar>,
    pub records: Vec<MappingRecord>,
}

impl MemBar {
    /// The mappings of this BAR (what removal replaces).
    pub(crate) fn maps(&self) -> Vec<Arc<Mmap>> {
        let mut v: Vec<Arc<Mmap>> = self.wc.iter().cloned().collect();
        if let Some(b) = &self.uc {
            v.extend(b.maps().iter().cloned());
        }
        v
    }

    /// The mapping covering `[offset, offset+len)`, the offset in it, and its type.
    pub(crate) fn window(&self, offset: u64, len: u64) -> Option<(Arc<Mmap>, usize, MemoryType)> {
        let end = offset.checked_add(len)?;
        if end > self.size {
            return None;
        }
        if let Some(m) = &self.wc {
            let obtained = self
                .records
                .first()
                .map_or(MemoryType::WriteCombining, |r| r.obtained);
            return Some((Arc::clone(m), usize::try_from(offset).ok()?, obtained));
        }
        let (m, off, _) = self.uc.as_ref()?.window(offset, len)?;
        // The obtained type of the record covering the range (verified by PAT).
        let t = self
            .records
            .iter()
            .find(|r| offset >= r.offset && end <= r.offset + r.len)
            .map_or(MemoryType::Uncached, |r| r.obtained);
        Some((m, off, t))
    }
}

/// Fill in the verification of a record from PAT.
fn apply_verdict(r: &mut MappingRecord, v: &PatVerdict) {
    r.verified = v.verified();
    if let Some(t) = r.verified {
        if t != r.obtained {
            r.obtained = t;
        }
    }
    let d = describe(v);
    if r.note.is_empty() {
        r.note = d;
    } else {
        r.note = format!("{}; {d}", r.note);
    }
}

/// Map BAR `facts.index` (not BAR0) by the plan. `pre` is a vfio mapping
/// made earlier (the `touch_bar_first` test knob), which the WC attempt will
/// then find claimed.
pub(crate) fn map_mem_bar(
    ctx: &PlanCtx,
    dev: &File,
    address: &PciAddress,
    facts: &BarFacts,
    info: &RegionInfo,
    caps: &RegionCaps,
    pre: Option<Bar>,
) -> MemBar {
    let n = facts.index;
    let size = facts.size;
    let requested = if ctx.wc_enabled {
        MemoryType::WriteCombining
    } else {
        MemoryType::Uncached
    };
    let choice = if ctx.wc_enabled {
        choose_route(facts, &ctx.vfio)
    } else {
        WcChoice::Uncached("write-combining disabled by OpenOptions::write_combining(false)".into())
    };
    let attempt = match &choice {
        WcChoice::SysfsWc(p) => Some((map_sysfs_wc(p, size), MappingRoute::SysfsResourceWc(n))),
        WcChoice::VfioDmaBuf => Some((map_dmabuf_wc(dev, n, size), MappingRoute::VfioDmaBufWc)),
        WcChoice::Uncached(_) => None,
    };
    let mut note = match &choice {
        WcChoice::Uncached(r) => r.clone(),
        _ => String::new(),
    };
    if let Some((res, route)) = attempt {
        match res {
            Ok(m) => {
                let v = ctx.verify(facts, 0, size);
                let mut rec = MappingRecord {
                    bar: n,
                    offset: 0,
                    len: size,
                    purpose: RangePurpose::DeviceMemory,
                    requested,
                    obtained: MemoryType::WriteCombining,
                    verified: None,
                    route,
                    note: String::new(),
                };
                match v.verified() {
                    Some(MemoryType::WriteCombining) | None => {
                        apply_verdict(&mut rec, &v);
                        tracing::debug!("{address}: {rec}");
                        return MemBar {
                            index: n,
                            size,
                            wc: Some(Arc::new(m)),
                            uc: None,
                            records: vec![rec],
                        };
                    }
                    Some(_) => {
                        drop(m);
                        note = format!(
                            "WC via {route} was downgraded ({}): an earlier mapping of this range \
                             (e.g. vfio's) fixed its PAT type; falling back to the uncached vfio mmap",
                            describe(&v)
                        );
                        tracing::warn!("{address}: BAR{n}: {note}");
                    }
                }
            }
            Err(e) => {
                note = format!(
                    "WC via {route} was refused ({e}): the range is claimed (e.g. by vfio) or the \
                     kernel forbids it; falling back to the uncached vfio mmap"
                );
                tracing::warn!("{address}: BAR{n}: {note}");
            }
        }
    }
    let bar = pre.unwrap_or_else(|| Bar::map(dev, address, n, info, caps));
    let mut records = bar.records.clone();
    for r in &mut records {
        r.requested = requested;
        r.note = note.clone();
        if r.route == MappingRoute::VfioMmap {
            let v = ctx.verify(facts, r.offset, r.len);
            apply_verdict(r, &v);
        }
        if r.mismatch() || (r.obtained != r.requested && requested == MemoryType::Uncached) {
            tracing::warn!("{address}: {r}");
        } else {
            tracing::debug!("{address}: {r}");
        }
    }
    MemBar {
        index: n,
        size,
        wc: None,
        uc: Some(bar),
        records,
    }
}

/// BAR0's records: the register page asks for uncached, the rest of the
/// mapped area (doorbells) for WC, which this plan never gives BAR0 (see
/// `wc::doorbell_reason`). Every mapped range is verified against PAT; a
/// register page that is not uncached is reported loudly.
pub(crate) fn bar0_records(
    ctx: &PlanCtx,
    address: &PciAddress,
    facts: &BarFacts,
    base: &[MappingRecord],
    doorbell_reason: &str,
) -> Vec<MappingRecord> {
    let mut out = Vec::new();
    for r in base {
        let mut pieces = vec![r.clone()];
        if r.offset < REGISTER_PAGE && r.offset + r.len > REGISTER_PAGE {
            let mut hi = r.clone();
            hi.offset = REGISTER_PAGE;
            hi.len = r.offset + r.len - REGISTER_PAGE;
            pieces[0].len = REGISTER_PAGE - r.offset;
            pieces.push(hi);
        }
        for mut p in pieces {
            p.purpose = match p.route {
                MappingRoute::VfioRegionRw => RangePurpose::Unmapped,
                _ if p.offset < REGISTER_PAGE => RangePurpose::Registers,
                _ => RangePurpose::Doorbells,
            };
            p.requested = if p.purpose == RangePurpose::Doorbells && ctx.wc_enabled {
                MemoryType::WriteCombining
            } else {
                MemoryType::Uncached
            };
            if p.purpose == RangePurpose::Doorbells && ctx.wc_enabled {
                p.note = doorbell_reason.to_string();
            }
            if p.route == MappingRoute::VfioMmap {
                let v = ctx.verify(facts, p.offset, p.len);
                apply_verdict(&mut p, &v);
            }
            if p.purpose == RangePurpose::Registers && p.obtained != MemoryType::Uncached {
                tracing::error!(
                    "{address}: BAR0 register page is not uncached: {p} (another mapping of BAR0 \
                     fixed its PAT type before vfio's)"
                );
            } else if p.mismatch() {
                tracing::warn!("{address}: {p}");
            }
            out.push(p);
        }
    }
    out
}

/// A window of device memory (a CMB), handed out by
/// `Hardware::map_device_memory`: a pointer into the BAR's WC mapping when
/// there is one, else into its uncached vfio mapping. Keeps the device (and
/// so the mapping) alive.
pub struct VfioDeviceMemory {
    pub(crate) map: Arc<Mmap>,
    pub(crate) off: usize,
    pub(crate) len: usize,
    pub(crate) bar: u8,
    pub(crate) bar_offset: u64,
    pub(crate) memory_type: MemoryType,
    /// Keeps the device open (and its teardown order) while the window lives.
    pub(crate) _keep: Arc<dyn Send + Sync>,
}

impl VfioDeviceMemory {
    /// BAR index.
    pub fn bar(&self) -> u8 {
        self.bar
    }
    /// Offset of byte 0 in the BAR.
    pub fn bar_offset(&self) -> u64 {
        self.bar_offset
    }
    fn at(&self, off: usize, w: usize) -> Option<usize> {
        (off.checked_add(w)? <= self.len).then_some(self.off + off)
    }
    /// One volatile 32-bit load at `off` (`None`: out of range or misaligned).
    pub fn read32(&self, off: usize) -> Option<u32> {
        self.map.read32(self.at(off, 4)?)
    }
    /// One volatile 64-bit load at `off`.
    pub fn read64(&self, off: usize) -> Option<u64> {
        self.map.read64(self.at(off, 8)?)
    }
    /// One volatile 32-bit store at `off`; false if out of range or misaligned.
    pub fn write32(&self, off: usize, v: u32) -> bool {
        self.at(off, 4).is_some_and(|o| self.map.write32(o, v))
    }
    /// One volatile 64-bit store at `off`; false if out of range or misaligned.
    pub fn write64(&self, off: usize, v: u64) -> bool {
        self.at(off, 8).is_some_and(|o| self.map.write64(o, v))
    }
}

impl std::fmt::Debug for VfioDeviceMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VfioDeviceMemory")
            .field("bar", &self.bar)
            .field("bar_offset", &format_args!("{:#x}", self.bar_offset))
            .field("len", &format_args!("{:#x}", self.len))
            .field("memory_type", &self.memory_type)
            .finish()
    }
}

// SAFETY: `map` is a live mapping of the BAR range that holds
// `[off, off + len)` (checked at creation), kept for as long as this value;
// pointer and length never change.
#[allow(unsafe_code)]
unsafe impl DeviceMemory for VfioDeviceMemory {
    fn as_ptr(&self) -> *mut u8 {
        // In bounds: `off + len` lies inside the mapping (checked at creation).
        self.map.as_ptr().wrapping_add(self.off)
    }
    fn len(&self) -> usize {
        self.len
    }
    fn memory_type(&self) -> MemoryType {
        self.memory_type
    }
}

const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<VfioDeviceMemory>();
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sysfs::tests::TempDir;
    use crate::wc::{BarResource, IORESOURCE_MEM, IORESOURCE_PREFETCH};
    use std::path::Path;
    use vfio_bindings::bindings::vfio::VFIO_REGION_INFO_FLAG_MMAP;

    const BAR2: u64 = 0x8_0000_0000;
    const SIZE: u64 = 0x10_0000;

    /// A fake device: `resource2_wc` is a plain file, the "vfio device fd" a
    /// plain file whose region for BAR2 starts at 0x20000, and the PAT list
    /// a file in a fake debugfs.
    struct Fake {
        dir: TempDir,
        dev: File,
    }

    impl Fake {
        fn new(wc_file: bool, pat: Option<&str>) -> Fake {
            let dir = TempDir::new("devmem");
            if wc_file {
                let f = File::create(dir.0.join("resource2_wc")).unwrap();
                f.set_len(SIZE).unwrap();
            }
            if let Some(p) = pat {
                std::fs::create_dir_all(dir.0.join("debug/x86")).unwrap();
                std::fs::write(dir.0.join("debug/x86/pat_memtype_list"), p).unwrap();
            }
            let dev = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(dir.0.join("devfd"))
                .unwrap();
            dev.set_len(0x20000 + SIZE).unwrap();
            Fake { dir, dev }
        }
        fn facts(&self, prefetch: bool) -> BarFacts {
            let p = self.dir.0.join("resource2_wc");
            BarFacts {
                index: 2,
                size: SIZE,
                resource: Some(BarResource {
                    start: BAR2,
                    end: BAR2 + SIZE - 1,
                    flags: IORESOURCE_MEM | if prefetch { IORESOURCE_PREFETCH } else { 0 },
                }),
                wc_file: p.exists().then_some(p),
                whole_mmap: true,
            }
        }
        fn ctx(&self, vfio: VfioWcSupport) -> PlanCtx {
            PlanCtx {
                pat: PatSource::new(&self.dir.0.join("debug")),
                vfio,
                wc_enabled: true,
            }
        }
    }

    fn region() -> (RegionInfo, RegionCaps) {
        (
            RegionInfo {
                flags: 3 | VFIO_REGION_INFO_FLAG_MMAP,
                index: 2,
                size: SIZE,
                offset: 0x20000,
                ..Default::default()
            },
            RegionCaps::default(),
        )
    }

    fn no_vfio() -> VfioWcSupport {
        VfioWcSupport::Unavailable("vfio has no WC mmap uAPI on this kernel".into())
    }

    fn pat_line(kind: &str) -> String {
        format!(
            "PAT memtype list:\nPAT: [mem {:#018x}-{:#018x}] {kind}\n",
            BAR2,
            BAR2 + SIZE
        )
    }

    fn x86() -> bool {
        cfg!(any(target_arch = "x86_64", target_arch = "x86"))
    }

    fn run(f: &Fake, prefetch: bool, vfio: VfioWcSupport) -> MemBar {
        let (info, caps) = region();
        let addr: PciAddress = "0000:01:00.0".parse().unwrap();
        map_mem_bar(
            &f.ctx(vfio),
            &f.dev,
            &addr,
            &f.facts(prefetch),
            &info,
            &caps,
            None,
        )
    }

    #[test]
    fn sysfs_wc_verified_by_pat() {
        let f = Fake::new(true, Some(&pat_line("write-combining")));
        let b = run(&f, true, no_vfio());
        assert_eq!(b.records.len(), 1);
        let r = &b.records[0];
        assert_eq!(r.route, MappingRoute::SysfsResourceWc(2));
        assert_eq!(r.requested, MemoryType::WriteCombining);
        assert_eq!(r.obtained, MemoryType::WriteCombining);
        if x86() {
            assert_eq!(r.verified, Some(MemoryType::WriteCombining));
            assert!(r.note.contains("PAT: write-combining"), "{r}");
        }
        let (m, off, t) = b.window(0x1000, 0x2000).unwrap();
        assert_eq!((off, t), (0x1000, MemoryType::WriteCombining));
        // The window reaches the resource file.
        assert!(m.write64(off, 0x55aa));
        let mut buf = [0u8; 8];
        use std::os::unix::fs::FileExt;
        File::open(f.dir.0.join("resource2_wc"))
            .unwrap()
            .read_exact_at(&mut buf, 0x1000)
            .unwrap();
        assert_eq!(u64::from_ne_bytes(buf), 0x55aa);
        assert!(b.window(SIZE - 0x1000, 0x2000).is_none());
    }

    #[test]
    fn sysfs_wc_downgraded_falls_back_to_uncached() {
        let f = Fake::new(true, Some(&pat_line("uncached-minus")));
        let b = run(&f, true, no_vfio());
        let r = &b.records[0];
        if !x86() {
            return;
        }
        assert_eq!(r.route, MappingRoute::VfioMmap);
        assert_eq!(r.requested, MemoryType::WriteCombining);
        assert_eq!(r.obtained, MemoryType::Uncached);
        assert_eq!(r.verified, Some(MemoryType::Uncached));
        assert!(r.note.contains("downgraded"), "{r}");
        assert!(r.note.contains("uncached-minus"), "{r}");
        // The window is the vfio mapping (the "device fd" file at 0x20000).
        let (m, off, t) = b.window(0, 0x1000).unwrap();
        assert_eq!(t, MemoryType::Uncached);
        assert!(m.write32(off + 8, 7));
        let mut buf = [0u8; 4];
        use std::os::unix::fs::FileExt;
        f.dev.read_exact_at(&mut buf, 0x20008).unwrap();
        assert_eq!(u32::from_ne_bytes(buf), 7);
    }

    #[test]
    fn unverifiable_wc_is_kept_and_says_why() {
        let f = Fake::new(true, None);
        let b = run(&f, true, no_vfio());
        let r = &b.records[0];
        assert_eq!(r.route, MappingRoute::SysfsResourceWc(2));
        assert_eq!(r.obtained, MemoryType::WriteCombining);
        assert_eq!(r.verified, None);
        assert!(r.note.contains("not") && r.note.contains("verif"), "{r}");
        assert!(r.to_string().contains("verified no"), "{r}");
    }

    #[test]
    fn refused_wc_falls_back() {
        // resource2_wc listed but unmappable (a directory stands in for it).
        let f = Fake::new(false, Some(&pat_line("uncached-minus")));
        std::fs::create_dir(f.dir.0.join("resource2_wc")).unwrap();
        let b = run(&f, true, no_vfio());
        let r = &b.records[0];
        assert_eq!(r.route, MappingRoute::VfioMmap);
        assert!(r.note.contains("refused"), "{r}");
        assert!(b.window(0, SIZE).is_some());
    }

    #[test]
    fn not_prefetchable_goes_straight_to_uncached() {
        let f = Fake::new(false, Some(&pat_line("uncached-minus")));
        let b = run(&f, false, no_vfio());
        let r = &b.records[0];
        assert_eq!(r.route, MappingRoute::VfioMmap);
        assert_eq!(r.obtained, MemoryType::Uncached);
        assert!(
            r.note.contains("BAR2 is not prefetchable: no resource2_wc"),
            "{r}"
        );
        assert!(r.note.contains("no WC mmap uAPI"), "{r}");
    }

    #[test]
    fn vfio_route_is_tried_first_and_falls_through_when_it_fails() {
        // Probe says the dma-buf route exists, but the "device" is a plain
        // file: the attempt fails and the record says so.
        let f = Fake::new(true, Some(&pat_line("uncached-minus")));
        let b = run(&f, true, VfioWcSupport::DmaBufMemattr);
        let r = &b.records[0];
        assert_eq!(r.route, MappingRoute::VfioMmap);
        assert!(r.note.contains("vfio dma-buf"), "{r}");
    }

    #[test]
    fn wc_disabled_asks_for_uncached() {
        let f = Fake::new(true, Some(&pat_line("uncached-minus")));
        let (info, caps) = region();
        let mut ctx = f.ctx(no_vfio());
        ctx.wc_enabled = false;
        let addr: PciAddress = "0000:01:00.0".parse().unwrap();
        let b = map_mem_bar(&ctx, &f.dev, &addr, &f.facts(true), &info, &caps, None);
        let r = &b.records[0];
        assert_eq!(
            (r.requested, r.obtained),
            (MemoryType::Uncached, MemoryType::Uncached)
        );
        assert!(r.note.contains("disabled"), "{r}");
    }

    #[test]
    fn bar0_split_and_verified() {
        let f = Fake::new(false, None);
        let pat = "PAT: [mem 0x00000000fe600000-0x00000000fe604000] uncached-minus\n";
        std::fs::create_dir_all(f.dir.0.join("debug/x86")).unwrap();
        std::fs::write(f.dir.0.join("debug/x86/pat_memtype_list"), pat).unwrap();
        let facts = BarFacts {
            index: 0,
            size: 0x4000,
            resource: Some(BarResource {
                start: 0xfe60_0000,
                end: 0xfe60_3fff,
                flags: IORESOURCE_MEM,
            }),
            wc_file: None,
            whole_mmap: false,
        };
        let base = crate::region::report(
            0,
            0x4000,
            &[(
                crate::region::Span {
                    start: 0,
                    len: 0x3000,
                },
                MemoryType::Uncached,
            )],
            MemoryType::Uncached,
        );
        let addr: PciAddress = "0000:01:00.0".parse().unwrap();
        let why = "BAR0 is not prefetchable: no resource0_wc; vfio has no WC mmap uAPI";
        let r = bar0_records(&f.ctx(no_vfio()), &addr, &facts, &base, why);
        let got: Vec<(u64, u64, RangePurpose, MemoryType)> = r
            .iter()
            .map(|m| (m.offset, m.len, m.purpose, m.requested))
            .collect();
        assert_eq!(
            got,
            vec![
                (0, 0x1000, RangePurpose::Registers, MemoryType::Uncached),
                (
                    0x1000,
                    0x2000,
                    RangePurpose::Doorbells,
                    MemoryType::WriteCombining
                ),
                (0x3000, 0x1000, RangePurpose::Unmapped, MemoryType::Uncached),
            ]
        );
        assert!(r.iter().all(|m| m.obtained == MemoryType::Uncached));
        assert!(r[1].note.starts_with(why), "{}", r[1]);
        if x86() {
            assert_eq!(r[0].verified, Some(MemoryType::Uncached));
            assert!(r[0].to_string().contains("verified Uncached"), "{}", r[0]);
        }
        let _ = Path::new("");
    }
}
