//! The write-combining mapping plan: which memory type each range of the
//! device's BARs asks for, which route can give it on the running kernel,
//! and how to prove what a mapping actually got.
//!
//! Intents: BAR0's register page is uncached, always; the submission-queue
//! doorbells (the rest of BAR0) and device memory (the CMB in another BAR)
//! ask for write-combining (WC).
//!
//! Routes, in the order they are tried (see `docs/write-combining.md`):
//! 1. a vfio WC uAPI, detected at run time with `VFIO_DEVICE_FEATURE_PROBE`.
//!    None is merged upstream; the pending dma-buf memory-attribute proposal
//!    (`VFIO_DEVICE_FEATURE_DMA_BUF_MEMATTR`) is compiled only with the cargo
//!    feature `dmabuf-wc`, since its constants may still change;
//! 2. sysfs `resourceN_wc` (prefetchable BARs only, and only where the kernel
//!    can map PCI resources WC: x86 with PAT, arm64). On x86 the first
//!    mapping of a physical range fixes its PAT type, and vfio's own
//!    `mmap`/`pread`/`pwrite` of a BAR `ioremap`s the whole BAR uncached, so
//!    this mapping is made at open, before vfio touches the BAR;
//! 3. the uncached vfio `mmap` (always possible for mmappable BARs).
//!
//! BAR0 never gets a WC mapping from this code on x86: a WC reservation of
//! any part of BAR0 would make vfio's `ioremap` of the whole BAR (and so its
//! mapping of the register page) inherit WC.
//!
//! Proof: on x86, `/sys/kernel/debug/x86/pat_memtype_list` lists every PAT
//! reservation with the type it really got. After mapping a range, the
//! driver reads it (only if debugfs is already mounted and readable: it never
//! mounts anything) and records the verified type; a WC request that PAT
//! downgraded is dropped in favour of the uncached vfio mapping, and the
//! record says so.

use std::fmt;
use std::path::{Path, PathBuf};

use nvme_core::MemoryType;

/// `IORESOURCE_IO` in the flags column of sysfs `resource`.
#[cfg_attr(not(test), allow(dead_code))] // tests build I/O BARs with it
pub(crate) const IORESOURCE_IO: u64 = 0x100;
/// `IORESOURCE_MEM`.
pub(crate) const IORESOURCE_MEM: u64 = 0x200;
/// `IORESOURCE_PREFETCH`.
pub(crate) const IORESOURCE_PREFETCH: u64 = 0x2000;

/// Size of BAR0's register page: CAP … CMBMSC and friends, never WC.
pub(crate) const REGISTER_PAGE: u64 = 0x1000;

/// One BAR as sysfs `resource` describes it (CPU physical addresses).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct BarResource {
    /// First byte.
    pub start: u64,
    /// Last byte (inclusive, as sysfs prints it).
    pub end: u64,
    /// `IORESOURCE_*` flags.
    pub flags: u64,
}

impl BarResource {
    /// Length in bytes (0 for an absent BAR).
    pub fn len(&self) -> u64 {
        if self.start == 0 && self.end == 0 {
            0
        } else {
            self.end.saturating_sub(self.start).saturating_add(1)
        }
    }
    /// True for an absent BAR.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// A memory BAR.
    pub fn is_mem(&self) -> bool {
        self.flags & IORESOURCE_MEM != 0 && !self.is_empty()
    }
    /// A prefetchable memory BAR.
    pub fn is_prefetchable(&self) -> bool {
        self.is_mem() && self.flags & IORESOURCE_PREFETCH != 0
    }
}

/// Parse sysfs `resource`: the first six lines are BAR0..BAR5
/// (`0x<start> 0x<end> 0x<flags>`). Malformed lines give `None`.
pub(crate) fn parse_resource_file(text: &str) -> [Option<BarResource>; 6] {
    let mut out = [None; 6];
    for (slot, line) in out.iter_mut().zip(text.lines()) {
        let mut it = line
            .split_whitespace()
            .map(|w| u64::from_str_radix(w.strip_prefix("0x").unwrap_or(w), 16).ok());
        if let (Some(Some(start)), Some(Some(end)), Some(Some(flags))) =
            (it.next(), it.next(), it.next())
        {
            *slot = Some(BarResource { start, end, flags });
        }
    }
    out
}

/// Read `<device>/resource`.
pub(crate) fn read_bar_resources(dev_path: &Path) -> [Option<BarResource>; 6] {
    std::fs::read_to_string(dev_path.join("resource"))
        .map(|t| parse_resource_file(&t))
        .unwrap_or([None; 6])
}

/// Bus addresses of the memory BARs from the first 0x28 bytes of config
/// space (what the device decodes; `None` for I/O, absent or unassigned
/// BARs and for the upper half of a 64-bit BAR).
pub(crate) fn parse_config_bars(cfg: &[u8]) -> [Option<u64>; 6] {
    let mut out = [None; 6];
    let rd = |i: usize| -> Option<u32> {
        let o = 0x10 + 4 * i;
        Some(u32::from_le_bytes(cfg.get(o..o + 4)?.try_into().ok()?))
    };
    let mut i = 0;
    while i < 6 {
        let Some(lo) = rd(i) else { break };
        if lo & 1 != 0 {
            i += 1; // I/O BAR
            continue;
        }
        let is64 = (lo >> 1) & 3 == 2;
        let mut addr = u64::from(lo & !0xf);
        if is64 {
            addr |= u64::from(rd(i + 1).unwrap_or(0)) << 32;
        }
        if addr != 0 {
            out[i] = Some(addr);
        }
        i += if is64 { 2 } else { 1 };
    }
    out
}

/// One line of `pat_memtype_list`: `PAT: [mem 0x…-0x…] write-combining`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PatEntry {
    /// First byte.
    pub start: u64,
    /// One past the last byte (the kernel prints the exclusive end).
    pub end: u64,
    /// The PAT type name (`write-combining`, `uncached-minus`, …).
    pub kind: String,
}

impl PatEntry {
    /// The memory type this PAT type gives a CPU access.
    pub fn memory_type(&self) -> MemoryType {
        pat_memory_type(&self.kind)
    }
}

impl fmt::Display for PatEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "PAT: [mem {:#018x}-{:#018x}] {}",
            self.start, self.end, self.kind
        )
    }
}

/// The x86 PAT reservation list (`<debugfs>/x86/pat_memtype_list`), parsed:
/// the memory type each reserved physical range really got.
///
/// The driver checks every mapping against this list at open and reports
/// the outcome in [`VfioDevice::mappings`](crate::VfioDeviceInfo::mappings);
/// tools can read the list again (e.g. while a window is mapped) and compare.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PatList {
    entries: Vec<PatEntry>,
}

impl PatList {
    /// Parse the text of `pat_memtype_list` (the header line and anything
    /// unparsable are skipped).
    pub fn parse(text: &str) -> PatList {
        PatList {
            entries: parse_pat(text),
        }
    }

    /// The entries overlapping the physical range `[start, end)`, in list order.
    pub fn overlapping(&self, start: u64, end: u64) -> Vec<PatEntry> {
        pat_overlapping(&self.entries, start, end)
    }
}

/// Map a PAT type name to a [`MemoryType`].
pub(crate) fn pat_memory_type(kind: &str) -> MemoryType {
    match kind {
        "write-combining" => MemoryType::WriteCombining,
        "uncached-minus" | "uncached" => MemoryType::Uncached,
        _ => MemoryType::Unknown,
    }
}

/// Parse `pat_memtype_list` (the header line and anything unparsable are skipped).
pub(crate) fn parse_pat(text: &str) -> Vec<PatEntry> {
    text.lines()
        .filter_map(|l| {
            let rest = l.trim().strip_prefix("PAT: [mem ")?;
            let (range, kind) = rest.split_once(']')?;
            let (s, e) = range.split_once('-')?;
            let hex = |x: &str| u64::from_str_radix(x.trim().trim_start_matches("0x"), 16).ok();
            Some(PatEntry {
                start: hex(s)?,
                end: hex(e)?,
                kind: kind.trim().to_string(),
            })
        })
        .collect()
}

/// The entries overlapping `[start, end)`.
pub(crate) fn pat_overlapping(entries: &[PatEntry], start: u64, end: u64) -> Vec<PatEntry> {
    entries
        .iter()
        .filter(|e| e.start < end && start < e.end)
        .cloned()
        .collect()
}

/// What PAT says about one range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum PatVerdict {
    /// Every reservation overlapping the range has this type.
    Type(MemoryType, Vec<PatEntry>),
    /// Reservations of different types overlap the range.
    Mixed(Vec<PatEntry>),
    /// No reservation covers the range.
    NoEntry,
    /// The list cannot be read (why).
    Unavailable(String),
}

impl PatVerdict {
    pub(crate) fn entries(&self) -> &[PatEntry] {
        match self {
            PatVerdict::Type(_, e) | PatVerdict::Mixed(e) => e,
            _ => &[],
        }
    }
    /// The verified type, if PAT gives a single one.
    pub(crate) fn verified(&self) -> Option<MemoryType> {
        match self {
            PatVerdict::Type(t, _) => Some(*t),
            PatVerdict::Mixed(_) => Some(MemoryType::Unknown),
            _ => None,
        }
    }
    fn kinds(&self) -> String {
        let mut k: Vec<&str> = self.entries().iter().map(|e| e.kind.as_str()).collect();
        k.dedup();
        k.join("+")
    }
}

/// Where to find the PAT list (x86 only; elsewhere there is nothing to read).
#[derive(Clone, Debug)]
pub(crate) struct PatSource {
    /// `<debugfs>/x86/pat_memtype_list`, or `None` off x86.
    pub path: Option<PathBuf>,
}

impl PatSource {
    pub(crate) fn new(debugfs_root: &Path) -> PatSource {
        PatSource {
            path: cfg!(any(target_arch = "x86_64", target_arch = "x86"))
                .then(|| debugfs_root.join("x86/pat_memtype_list")),
        }
    }

    /// Check `[start, end)` (physical addresses).
    pub(crate) fn check(&self, start: u64, end: u64) -> PatVerdict {
        let Some(path) = &self.path else {
            return PatVerdict::Unavailable(
                "not verifiable on this architecture (no PAT list)".into(),
            );
        };
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                return PatVerdict::Unavailable(format!(
                "not verified: {} is not readable ({e}; mount debugfs and run as root to verify)",
                path.display()
            ))
            }
        };
        let hits = PatList::parse(&text).overlapping(start, end);
        let Some(first) = hits.first() else {
            return PatVerdict::NoEntry;
        };
        let t = first.memory_type();
        if hits.iter().all(|e| e.memory_type() == t) {
            PatVerdict::Type(t, hits)
        } else {
            PatVerdict::Mixed(hits)
        }
    }
}

/// Result of probing the vfio WC route (route 1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VfioWcSupport {
    /// The dma-buf memory-attribute route can give WC mappings.
    DmaBufMemattr,
    /// Not available, and why.
    Unavailable(String),
}

/// What the plan needs to know about one BAR.
#[derive(Clone, Debug, Default)]
pub(crate) struct BarFacts {
    pub index: u8,
    /// Size VFIO reports for the region.
    pub size: u64,
    /// sysfs `resource` line.
    pub resource: Option<BarResource>,
    /// `<device>/resource<N>_wc`, when it exists.
    pub wc_file: Option<PathBuf>,
    /// VFIO allows an mmap of the whole BAR (no sparse areas: no MSI-X table inside).
    pub whole_mmap: bool,
}

/// The route chosen for a BAR's WC intent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum WcChoice {
    /// Route 1: a vfio dma-buf with the WC memory attribute.
    VfioDmaBuf,
    /// Route 2: sysfs `resourceN_wc`.
    SysfsWc(PathBuf),
    /// Route 3 only (uncached vfio mmap), and why no WC route applies.
    Uncached(String),
}

fn vfio_reason(v: &VfioWcSupport) -> String {
    match v {
        VfioWcSupport::DmaBufMemattr => "vfio dma-buf WC route available".into(),
        VfioWcSupport::Unavailable(r) => r.clone(),
    }
}

/// Choose the WC route for a device-memory BAR (not BAR0).
pub(crate) fn choose_route(f: &BarFacts, vfio: &VfioWcSupport) -> WcChoice {
    let n = f.index;
    if n == 0 {
        return WcChoice::Uncached(
            "BAR0 holds the controller registers; this plan never maps it WC".into(),
        );
    }
    if let Some(r) = &f.resource {
        if !r.is_mem() {
            return WcChoice::Uncached(format!("BAR{n} is not a memory BAR"));
        }
    }
    if f.size == 0 {
        return WcChoice::Uncached(format!("BAR{n} is empty"));
    }
    if !f.whole_mmap {
        return WcChoice::Uncached(format!(
            "vfio does not allow mmap of all of BAR{n} (MSI-X table or PBA inside?): not mapping it WC"
        ));
    }
    if *vfio == VfioWcSupport::DmaBufMemattr {
        return WcChoice::VfioDmaBuf;
    }
    let prefetchable = f
        .resource
        .as_ref()
        .is_some_and(BarResource::is_prefetchable);
    if !prefetchable {
        return WcChoice::Uncached(format!(
            "BAR{n} is not prefetchable: no resource{n}_wc; {}",
            vfio_reason(vfio)
        ));
    }
    match &f.wc_file {
        Some(p) => WcChoice::SysfsWc(p.clone()),
        None => WcChoice::Uncached(format!(
            "no resource{n}_wc in sysfs (PAT disabled, or the architecture cannot map PCI resources WC); {}",
            vfio_reason(vfio)
        )),
    }
}

/// Why the doorbells (BAR0 past the register page) stay uncached.
pub(crate) fn doorbell_reason(bar0: &BarFacts, vfio: &VfioWcSupport, x86_pat: bool) -> String {
    let prefetchable = bar0
        .resource
        .as_ref()
        .is_some_and(BarResource::is_prefetchable);
    let sysfs = if !prefetchable {
        "BAR0 is not prefetchable: no resource0_wc".to_string()
    } else if bar0.wc_file.is_none() {
        "BAR0 is prefetchable but sysfs offers no resource0_wc".to_string()
    } else if x86_pat {
        "resource0_wc exists but is not used: on x86 the first mapping of a range fixes its PAT type, \
         and vfio's ioremap of the whole BAR0 would inherit WC over the register page"
            .to_string()
    } else {
        "resource0_wc is not used for BAR0 (the register page shares the BAR)".to_string()
    };
    let vfio = match vfio {
        VfioWcSupport::DmaBufMemattr if x86_pat => {
            "the vfio dma-buf WC route is not used for BAR0 on x86 (a WC reservation in BAR0 would \
             make vfio's own mapping of the register page WC too)"
                .to_string()
        }
        VfioWcSupport::DmaBufMemattr => {
            "WC doorbells through the vfio dma-buf route are not implemented yet".to_string()
        }
        VfioWcSupport::Unavailable(r) => r.clone(),
    };
    format!("{sysfs}; {vfio}")
}

/// One entry of the store-width quirk table.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) struct StoreQuirk {
    /// PCI vendor id.
    pub vendor: u16,
    /// PCI device id (`None`: every device of the vendor).
    pub device: Option<u16>,
    /// Widest single store into device memory, bytes.
    pub max_store: usize,
    /// Why.
    pub why: &'static str,
}

/// Widest device-memory store for devices not in [`STORE_QUIRKS`]: 8 bytes
/// (one 64-bit store) is what every PCIe device accepts.
pub(crate) const DEFAULT_MAX_STORE: usize = 8;

/// Known store widths, first match wins.
///
/// To let a device take wider stores (16 bytes: SSE `movntdq`/`movdqa`; 64
/// bytes: AVX-512 or `movdir64b`, which a WC mapping turns into one PCIe
/// write), add an entry with its vendor/device id and 16 or 64, after
/// checking that the device's CMB accepts such TLPs (the vendor's
/// documentation, or SPDK's quirk list). Only widen; an entry narrower than 8
/// would break the NVMe 64-bit register accesses the driver also does.
pub(crate) const STORE_QUIRKS: &[StoreQuirk] = &[StoreQuirk {
    vendor: 0x1b36,
    device: Some(0x0010),
    max_store: 8,
    why: "QEMU's emulated NVMe controller handles MMIO of at most 8 bytes",
}];

/// The widest store for `vendor:device`.
pub(crate) fn max_store_for(vendor: u16, device: u16) -> usize {
    STORE_QUIRKS
        .iter()
        .find(|q| q.vendor == vendor && q.device.is_none_or(|d| d == device))
        .map_or(DEFAULT_MAX_STORE, |q| q.max_store)
}

/// Describe a PAT verdict for a record note.
pub(crate) fn describe(v: &PatVerdict) -> String {
    match v {
        PatVerdict::Type(_, _) => format!("PAT: {}", v.kinds()),
        PatVerdict::Mixed(_) => format!("PAT: conflicting types {}", v.kinds()),
        PatVerdict::NoEntry => "not verified: no PAT entry covers the range".into(),
        PatVerdict::Unavailable(r) => r.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const QEMU_RESOURCE: &str = "\
0x00000000fe600000 0x00000000fe603fff 0x0000000000140204
0x0000000000000000 0x0000000000000000 0x0000000000000000
0x0000000800000000 0x0000000800ffffff 0x000000000014220c
0x0000000000000000 0x0000000000000000 0x0000000000000000
0x0000000000000000 0x0000000000000000 0x0000000000000000
0x0000000000000000 0x0000000000000000 0x0000000000000000
0x0000000000000000 0x0000000000000000 0x0000000000000000
";

    #[test]
    fn resource_file() {
        let r = parse_resource_file(QEMU_RESOURCE);
        let b0 = r[0].unwrap();
        assert_eq!((b0.start, b0.len()), (0xfe60_0000, 0x4000));
        assert!(b0.is_mem() && !b0.is_prefetchable());
        let b2 = r[2].unwrap();
        assert_eq!((b2.start, b2.len()), (0x8_0000_0000, 16 << 20));
        assert!(b2.is_prefetchable());
        assert!(r[1].unwrap().is_empty() && !r[1].unwrap().is_mem());
        assert_eq!(parse_resource_file("garbage\n0x1 0x2\n"), [None; 6]);
    }

    #[test]
    fn config_bars() {
        let mut cfg = vec![0u8; 64];
        // BAR0: 64-bit non-prefetchable at 0xfe600000; BAR2: 64-bit prefetchable at 8 GiB.
        cfg[0x10..0x14].copy_from_slice(&0xfe60_0004u32.to_le_bytes());
        cfg[0x18..0x1c].copy_from_slice(&0x0000_000cu32.to_le_bytes());
        cfg[0x1c..0x20].copy_from_slice(&0x8u32.to_le_bytes());
        // BAR4: I/O.
        cfg[0x20..0x24].copy_from_slice(&0xc001u32.to_le_bytes());
        let b = parse_config_bars(&cfg);
        assert_eq!(
            b,
            [
                Some(0xfe60_0000),
                None,
                Some(0x8_0000_0000),
                None,
                None,
                None
            ]
        );
        assert_eq!(parse_config_bars(&[0u8; 8]), [None; 6]);
    }

    const PAT: &str = "PAT memtype list:
PAT: [mem 0x00000000fe600000-0x00000000fe604000] uncached-minus
PAT: [mem 0x0000000800000000-0x0000000801000000] write-combining
PAT: [mem 0x00000000fed00000-0x00000000fed01000] uncached-minus
bogus line
";

    #[test]
    fn pat_parsing_and_overlap() {
        let e = parse_pat(PAT);
        assert_eq!(e.len(), 3);
        assert_eq!(e[1].start, 0x8_0000_0000);
        assert_eq!(e[1].end, 0x8_0100_0000);
        assert_eq!(e[1].memory_type(), MemoryType::WriteCombining);
        assert_eq!(e[0].memory_type(), MemoryType::Uncached);
        assert_eq!(pat_memory_type("write-back"), MemoryType::Unknown);
        assert_eq!(pat_overlapping(&e, 0x8_0000_1000, 0x8_0000_2000).len(), 1);
        assert_eq!(pat_overlapping(&e, 0xfe60_4000, 0xfe60_5000).len(), 0);
        assert_eq!(
            e[0].to_string(),
            "PAT: [mem 0x00000000fe600000-0x00000000fe604000] uncached-minus"
        );
    }

    #[test]
    fn pat_list_is_parse_pat_and_pat_overlapping() {
        let l = PatList::parse(PAT);
        let e = parse_pat(PAT);
        assert_eq!(
            l.overlapping(0x8_0000_1000, 0x8_0000_2000),
            pat_overlapping(&e, 0x8_0000_1000, 0x8_0000_2000)
        );
        assert_eq!(l.overlapping(0, u64::MAX), e);
        assert!(PatList::parse("").overlapping(0, u64::MAX).is_empty());
    }

    #[test]
    fn pat_source_verdicts() {
        let d = crate::sysfs::tests::TempDir::new("pat");
        std::fs::create_dir_all(d.0.join("x86")).unwrap();
        let src = PatSource::new(&d.0);
        if src.path.is_none() {
            return; // not x86
        }
        assert!(matches!(
            src.check(0, 0x1000),
            PatVerdict::Unavailable(r) if r.contains("not readable")
        ));
        let mixed =
            format!("{PAT}PAT: [mem 0x0000000800000000-0x0000000801000000] uncached-minus\n");
        std::fs::write(d.0.join("x86/pat_memtype_list"), PAT).unwrap();
        assert_eq!(
            src.check(0x8_0000_0000, 0x8_0100_0000).verified(),
            Some(MemoryType::WriteCombining)
        );
        assert_eq!(
            src.check(0xfe60_0000, 0xfe60_1000).verified(),
            Some(MemoryType::Uncached)
        );
        assert_eq!(src.check(0x1000, 0x2000), PatVerdict::NoEntry);
        std::fs::write(d.0.join("x86/pat_memtype_list"), mixed).unwrap();
        let v = src.check(0x8_0000_0000, 0x8_0100_0000);
        assert!(matches!(v, PatVerdict::Mixed(_)));
        assert!(
            describe(&v).contains("write-combining+uncached-minus"),
            "{}",
            describe(&v)
        );
    }

    fn facts(index: u8, prefetch: bool, wc_file: bool, whole: bool) -> BarFacts {
        BarFacts {
            index,
            size: 16 << 20,
            resource: Some(BarResource {
                start: 0x8_0000_0000,
                end: 0x8_00ff_ffff,
                flags: IORESOURCE_MEM | if prefetch { IORESOURCE_PREFETCH } else { 0 },
            }),
            wc_file: wc_file.then(|| PathBuf::from(format!("/sys/x/resource{index}_wc"))),
            whole_mmap: whole,
        }
    }

    fn none() -> VfioWcSupport {
        VfioWcSupport::Unavailable("vfio has no WC mmap uAPI on this kernel".into())
    }

    #[test]
    fn route_choice_table() {
        // Prefetchable with resource2_wc: sysfs route.
        assert_eq!(
            choose_route(&facts(2, true, true, true), &none()),
            WcChoice::SysfsWc("/sys/x/resource2_wc".into())
        );
        // The vfio route wins when the kernel offers it.
        assert_eq!(
            choose_route(&facts(2, true, true, true), &VfioWcSupport::DmaBufMemattr),
            WcChoice::VfioDmaBuf
        );
        assert_eq!(
            choose_route(&facts(2, false, false, true), &VfioWcSupport::DmaBufMemattr),
            WcChoice::VfioDmaBuf
        );
        // Not prefetchable: says so, and why vfio cannot help.
        match choose_route(&facts(2, false, false, true), &none()) {
            WcChoice::Uncached(r) => {
                assert!(
                    r.contains("BAR2 is not prefetchable: no resource2_wc"),
                    "{r}"
                );
                assert!(r.contains("no WC mmap uAPI"), "{r}");
            }
            other => panic!("{other:?}"),
        }
        // Prefetchable but no _wc file (PAT off).
        match choose_route(&facts(4, true, false, true), &none()) {
            WcChoice::Uncached(r) => assert!(r.contains("no resource4_wc"), "{r}"),
            other => panic!("{other:?}"),
        }
        // MSI-X inside: never WC.
        match choose_route(&facts(2, true, true, false), &VfioWcSupport::DmaBufMemattr) {
            WcChoice::Uncached(r) => assert!(r.contains("MSI-X"), "{r}"),
            other => panic!("{other:?}"),
        }
        // BAR0: never, even prefetchable with a _wc file and a vfio route.
        assert!(matches!(
            choose_route(&facts(0, true, true, true), &VfioWcSupport::DmaBufMemattr),
            WcChoice::Uncached(_)
        ));
        // I/O BAR and empty BAR.
        let mut io = facts(3, false, false, true);
        io.resource = Some(BarResource {
            start: 0xc000,
            end: 0xc0ff,
            flags: IORESOURCE_IO,
        });
        assert!(
            matches!(choose_route(&io, &none()), WcChoice::Uncached(r) if r.contains("not a memory BAR"))
        );
        let mut empty = facts(2, true, true, true);
        empty.size = 0;
        assert!(matches!(
            choose_route(&empty, &none()),
            WcChoice::Uncached(_)
        ));
    }

    #[test]
    fn doorbell_reasons() {
        let r = doorbell_reason(&facts(0, false, false, true), &none(), true);
        assert_eq!(
            r,
            "BAR0 is not prefetchable: no resource0_wc; vfio has no WC mmap uAPI on this kernel"
        );
        let r = doorbell_reason(&facts(0, true, true, true), &none(), true);
        assert!(
            r.contains("first mapping of a range fixes its PAT type"),
            "{r}"
        );
        let r = doorbell_reason(
            &facts(0, false, false, true),
            &VfioWcSupport::DmaBufMemattr,
            true,
        );
        assert!(r.contains("not used for BAR0 on x86"), "{r}");
        let r = doorbell_reason(
            &facts(0, false, false, true),
            &VfioWcSupport::DmaBufMemattr,
            false,
        );
        assert!(r.contains("not implemented"), "{r}");
    }

    #[test]
    fn store_quirks() {
        assert_eq!(max_store_for(0x1b36, 0x0010), 8);
        assert_eq!(max_store_for(0x144d, 0xa808), DEFAULT_MAX_STORE);
        assert!(STORE_QUIRKS.iter().all(|q| q.max_store >= 8));
    }
}
