//! Controller Memory Buffer: discovery, the mapped window, and slices of it
//! for submission queues.
//!
//! Two schemes address the CMB:
//! - NVMe 1.4 (CAP.CMBS = 1): CMBLOC/CMBSZ read 0 until CMBMSC.CRE is set;
//!   the host then programs CMBMSC.CBA (the address the controller matches
//!   data pointers against) and sets CMSE, and checks CMBSTS.CBAI.
//! - Legacy (CAP.CMBS = 0, CMBSZ non-zero): the controller matches against
//!   its BAR's bus address.
//!
//! In both, the driver uses "BAR bus address + CMB offset" as the CMB's
//! device address (in the 1.4 scheme by programming exactly that into CBA),
//! so queue base addresses in Create I/O SQ are CMB addresses, not IOVAs,
//! and they match under either rule. QEMU sets CAP.CMBS even with
//! `legacy-cmb=on` (where it matches against the BAR address and ignores
//! CBA), so such a controller is driven with the 1.4 protocol and works the
//! same. The registers cannot tell the two apart reliably: QEMU clears
//! CMBLOC/CMBSZ whenever CMBMSC is written with CRE = 0, in either mode.

use std::sync::{Arc, Mutex};

use crate::error::Error;
use crate::hw::{DeviceMemory, Hardware, Iova, MemoryType};
use crate::regs::{Cap, CmbLoc, CmbMsc, CmbSts, CmbSz};

/// Which addressing scheme the controller uses for its CMB.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum CmbScheme {
    /// NVMe 1.4 CMBMSC/CBA protocol.
    V14,
    /// Pre-1.4: addresses are the BAR's bus address.
    Legacy,
}

/// Where the CMB is and what it may hold.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct CmbLayout {
    /// Addressing scheme.
    pub scheme: CmbScheme,
    /// BAR holding the CMB (CMBLOC.BIR).
    pub bar: u8,
    /// Offset of the CMB inside that BAR.
    pub bar_offset: u64,
    /// Size in bytes.
    pub size: u64,
    /// Device address of the CMB's first byte.
    pub bus_address: u64,
    /// The raw CMBSZ (SQS, CQS, LISTS, RDS, WDS).
    pub sz: CmbSz,
}

/// Run the discovery protocol. Returns `None` when there is no CMB.
/// Leaves CMBMSC programmed (1.4 scheme) so the controller decodes the range.
pub(crate) fn discover<H: Hardware>(hw: &H, cap: Cap) -> Result<Option<CmbLayout>, Error> {
    let scheme = if cap.cmbs() {
        // CMBLOC/CMBSZ read 0 until CRE is set.
        hw.write_reg(CmbMsc {
            cre: true,
            ..CmbMsc::default()
        });
        CmbScheme::V14
    } else {
        CmbScheme::Legacy
    };
    let loc = hw.read_reg::<CmbLoc>();
    let sz = hw.read_reg::<CmbSz>();
    if sz.sz() == 0 || sz.0 == u32::MAX || !sz.szu_is_defined() {
        if sz.sz() != 0 && sz.0 != u32::MAX {
            tracing::warn!(szu = sz.szu(), "CMBSZ.SZU is reserved; CMB not used");
        }
        if scheme == CmbScheme::V14 {
            hw.write_reg(CmbMsc::default());
        }
        return Ok(None);
    }
    let bar_offset = u64::from(loc.ofst()) * sz.unit_bytes();
    let size = sz.size_bytes();
    let bar_address = hw.bar_address(loc.bir())?;
    let bus_address = bar_address + bar_offset;
    if scheme == CmbScheme::V14 {
        hw.write_reg(CmbMsc {
            cre: true,
            cmse: true,
            cba: bus_address,
        });
        let sts = hw.read_reg::<CmbSts>();
        if sts.cbai() {
            hw.write_reg(CmbMsc::default());
            return Err(Error::Unsupported(format!(
                "controller rejected CMB base address {bus_address:#x} (CMBSTS.CBAI)"
            )));
        }
    }
    Ok(Some(CmbLayout {
        scheme,
        bar: loc.bir(),
        bar_offset,
        size,
        bus_address,
        sz,
    }))
}

/// Turn the CMB's memory space off again (1.4 scheme), at teardown.
pub(crate) fn disable<H: Hardware>(hw: &H, layout: &CmbLayout) {
    if layout.scheme == CmbScheme::V14 {
        hw.write_reg(CmbMsc::default());
    }
}

const CMB_ALIGN: usize = 4096;

/// The mapped CMB plus a first-fit allocator of 4 KiB-aligned slices.
pub(crate) struct Cmb<H: Hardware> {
    window: H::DeviceMem,
    layout: CmbLayout,
    /// Free ranges `(offset, len)`, sorted, coalesced.
    free: Mutex<Vec<(usize, usize)>>,
}

impl<H: Hardware> Cmb<H> {
    pub(crate) fn map(hw: &H, layout: CmbLayout) -> Result<Arc<Self>, Error> {
        let window = hw.map_device_memory(layout.bar, layout.bar_offset, layout.size)?;
        let len = window.len().min(layout.size as usize);
        Ok(Arc::new(Cmb {
            window,
            layout,
            free: Mutex::new(vec![(0, len)]),
        }))
    }

    pub(crate) fn memory_type(&self) -> MemoryType {
        self.window.memory_type()
    }

    /// Take `len` bytes (rounded up to 4 KiB) of the CMB.
    pub(crate) fn alloc(this: &Arc<Self>, len: usize) -> Result<CmbSlice<H>, Error> {
        let len = len.div_ceil(CMB_ALIGN) * CMB_ALIGN;
        let mut free = this.free.lock().unwrap_or_else(|p| p.into_inner());
        let Some(i) = free.iter().position(|&(_, l)| l >= len) else {
            return Err(Error::Unsupported(format!(
                "controller memory buffer has no {len} free bytes left"
            )));
        };
        let (off, l) = free[i];
        if l == len {
            free.remove(i);
        } else {
            free[i] = (off + len, l - len);
        }
        Ok(CmbSlice {
            cmb: this.clone(),
            offset: off,
            len,
        })
    }

    fn release(&self, offset: usize, len: usize) {
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        let i = free.partition_point(|&(o, _)| o < offset);
        free.insert(i, (offset, len));
        // Coalesce with the neighbours.
        if i + 1 < free.len() && free[i].0 + free[i].1 == free[i + 1].0 {
            free[i].1 += free[i + 1].1;
            free.remove(i + 1);
        }
        if i > 0 && free[i - 1].0 + free[i - 1].1 == free[i].0 {
            free[i - 1].1 += free[i].1;
            free.remove(i);
        }
    }
}

/// A slice of the CMB, returned to it on drop.
pub(crate) struct CmbSlice<H: Hardware> {
    cmb: Arc<Cmb<H>>,
    offset: usize,
    len: usize,
}

impl<H: Hardware> CmbSlice<H> {
    /// Host pointer to the slice (in the mapped window).
    pub(crate) fn as_ptr(&self) -> *mut u8 {
        // The slice lies inside the window: the allocator only hands out
        // ranges of `[0, window.len())`.
        self.cmb.window.as_ptr().wrapping_add(self.offset)
    }
    /// Device address of the slice.
    pub(crate) fn device_address(&self) -> Iova {
        Iova(self.cmb.layout.bus_address + self.offset as u64)
    }
}

impl<H: Hardware> Drop for CmbSlice<H> {
    fn drop(&mut self) {
        self.cmb.release(self.offset, self.len);
    }
}

#[cfg(test)]
#[allow(unsafe_code)]
mod tests {
    use super::*;
    use crate::hw::{DmaRegion, Doorbell, HwError};
    use crate::regs::offset;
    use std::collections::HashMap;

    /// A register file that behaves like a CMB-capable controller and
    /// records every access.
    struct RecHw {
        regs: Mutex<HashMap<usize, u64>>,
        log: Mutex<Vec<String>>,
        v14: bool,
        loc: u32,
        sz: u32,
        reject_cba: bool,
        window: Mutex<Vec<u64>>,
        rings: Arc<Mutex<Vec<u32>>>,
    }

    struct Win(*mut u8, usize);
    // SAFETY: test-only; points into a Vec the test keeps alive and only
    // one thread uses.
    unsafe impl Send for Win {}
    // SAFETY: as above.
    unsafe impl Sync for Win {}
    // SAFETY: test-only; the window is a Vec of `len` bytes the test keeps
    // alive for as long as the Cmb that uses it.
    unsafe impl DeviceMemory for Win {
        fn as_ptr(&self) -> *mut u8 {
            self.0
        }
        fn len(&self) -> usize {
            self.1
        }
        fn memory_type(&self) -> MemoryType {
            MemoryType::WriteCombining
        }
    }

    struct NoDma;
    // SAFETY: an empty region: nothing can be read or written through it.
    unsafe impl DmaRegion for NoDma {
        fn as_ptr(&self) -> *mut u8 {
            std::ptr::null_mut()
        }
        fn iova(&self) -> Iova {
            Iova(0)
        }
        fn len(&self) -> usize {
            0
        }
    }

    struct RecBell(Arc<Mutex<Vec<u32>>>);
    impl Doorbell for RecBell {
        fn ring(&mut self, value: u32) {
            self.0.lock().unwrap().push(value);
        }
    }

    impl RecHw {
        fn new(v14: bool, loc: u32, sz: u32) -> Self {
            RecHw {
                regs: Mutex::new(HashMap::new()),
                log: Mutex::new(Vec::new()),
                v14,
                loc,
                sz,
                reject_cba: false,
                window: Mutex::new(vec![0u64; 64 * 1024 / 8]),
                rings: Arc::new(Mutex::new(Vec::new())),
            }
        }
        fn log(&self) -> Vec<String> {
            self.log.lock().unwrap().clone()
        }
        fn cre(&self) -> bool {
            self.regs
                .lock()
                .unwrap()
                .get(&offset::CMBMSC)
                .copied()
                .unwrap_or(0)
                & 1
                == 1
        }
    }

    const BAR2: u64 = 0x8_0000_0000;

    // SAFETY: test-only: there is no device behind it; its regions are empty.
    unsafe impl Hardware for RecHw {
        type Dma = NoDma;
        type Doorbell = RecBell;
        type DeviceMem = Win;
        type Info = ();
        fn info(&self) {}
        fn read32(&self, off: usize) -> u32 {
            self.log.lock().unwrap().push(format!("r32 {off:#x}"));
            let visible = !self.v14 || self.cre();
            match off {
                offset::CMBLOC if visible => self.loc,
                offset::CMBSZ if visible => self.sz,
                offset::CMBSTS => u32::from(self.reject_cba),
                _ => 0,
            }
        }
        fn read64(&self, off: usize) -> u64 {
            self.log.lock().unwrap().push(format!("r64 {off:#x}"));
            0
        }
        fn write32(&self, off: usize, v: u32) {
            self.log
                .lock()
                .unwrap()
                .push(format!("w32 {off:#x} {v:#x}"));
        }
        fn write64(&self, off: usize, v: u64) {
            self.log
                .lock()
                .unwrap()
                .push(format!("w64 {off:#x} {v:#x}"));
            self.regs.lock().unwrap().insert(off, v);
        }
        fn doorbell(&self, _offset: usize) -> Result<RecBell, HwError> {
            Ok(RecBell(self.rings.clone()))
        }
        fn alloc_dma(&self, _len: usize) -> Result<NoDma, HwError> {
            Err(HwError::msg("no DMA in this fake"))
        }
        fn map_device_memory(&self, bar: u8, off: u64, len: u64) -> Result<Win, HwError> {
            self.log
                .lock()
                .unwrap()
                .push(format!("map bar{bar} {off:#x}+{len:#x}"));
            let mut w = self.window.lock().unwrap();
            let len = (len as usize).min(w.len() * 8);
            Ok(Win(w.as_mut_ptr().cast(), len))
        }
        fn bar_address(&self, bar: u8) -> Result<u64, HwError> {
            assert_eq!(bar, 2);
            Ok(BAR2)
        }
    }

    // QEMU-like CMB: BAR2 offset 0, 64 KiB in 4 KiB units (SZU 0), SQS|LISTS|RDS|WDS.
    const LOC: u32 = 2;
    const SZ: u32 = (16 << 12) | 0b11101;

    #[test]
    fn v14_protocol_sets_cre_reads_layout_then_programs_cba() {
        let hw = RecHw::new(true, LOC, SZ);
        let cap = Cap(1 << 57);
        let l = discover(&hw, cap).unwrap().expect("a CMB");
        assert_eq!(l.scheme, CmbScheme::V14);
        assert_eq!(
            (l.bar, l.bar_offset, l.size, l.bus_address),
            (2, 0, 64 << 10, BAR2)
        );
        assert!(l.sz.sqs() && !l.sz.cqs());
        assert_eq!(
            hw.log(),
            vec![
                "w64 0x50 0x1".to_string(),
                "r32 0x38".into(),
                "r32 0x3c".into(),
                format!("w64 0x50 {:#x}", BAR2 | 0b11),
                "r32 0x58".into(),
            ]
        );
    }

    #[test]
    fn v14_without_cmb_clears_cre_again() {
        let hw = RecHw::new(true, 0, 0);
        assert_eq!(discover(&hw, Cap(1 << 57)).unwrap(), None);
        assert_eq!(
            hw.log(),
            vec!["w64 0x50 0x1", "r32 0x38", "r32 0x3c", "w64 0x50 0x0"]
        );
    }

    #[test]
    fn legacy_scheme_reads_registers_and_never_touches_cmbmsc() {
        // Offset 4 units of 1 MiB (SZU 2) into BAR2.
        let hw = RecHw::new(false, 2 | (4 << 12), (8 << 12) | (2 << 8) | 1);
        let l = discover(&hw, Cap(0)).unwrap().expect("a CMB");
        assert_eq!(l.scheme, CmbScheme::Legacy);
        assert_eq!(l.bar_offset, 4 << 20);
        assert_eq!(l.size, 8 << 20);
        assert_eq!(l.bus_address, BAR2 + (4 << 20));
        assert!(
            hw.log().iter().all(|e| !e.contains("0x50")),
            "{:?}",
            hw.log()
        );
    }

    /// Found with fuzz/registers: a reserved SZU (9..=15) made OFST and SZ
    /// times the unit overflow; such a CMB is not used.
    #[test]
    fn reserved_size_unit_is_no_cmb() {
        for szu in 7..=15u32 {
            let (loc, sz) = (2 | (0xf_ffff << 12), (0xf_ffff << 12) | (szu << 8) | 1);
            assert_eq!(discover(&RecHw::new(false, loc, sz), Cap(0)).unwrap(), None);
            let hw = RecHw::new(true, loc, sz);
            assert_eq!(discover(&hw, Cap(1 << 57)).unwrap(), None);
            assert_eq!(
                hw.log().last().unwrap(),
                "w64 0x50 0x0",
                "CRE cleared again"
            );
        }
    }

    #[test]
    fn rejected_base_address_is_an_error_and_disables() {
        let mut hw = RecHw::new(true, LOC, SZ);
        hw.reject_cba = true;
        let e = discover(&hw, Cap(1 << 57)).unwrap_err();
        assert!(e.to_string().contains("CBAI"), "{e}");
        assert_eq!(hw.log().last().unwrap(), "w64 0x50 0x0");
    }

    #[test]
    fn allocator_aligns_reuses_and_coalesces() {
        let hw = RecHw::new(true, LOC, SZ);
        let l = discover(&hw, Cap(1 << 57)).unwrap().unwrap();
        let cmb = Cmb::map(&hw, l).unwrap();
        let a = Cmb::alloc(&cmb, 100).unwrap();
        let b = Cmb::alloc(&cmb, 8192).unwrap();
        assert_eq!(a.device_address(), Iova(BAR2));
        assert_eq!(b.device_address(), Iova(BAR2 + 4096));
        let rest = Cmb::alloc(&cmb, (64 << 10) - 3 * 4096).unwrap();
        assert!(Cmb::alloc(&cmb, 1).is_err(), "CMB exhausted");
        drop(a);
        drop(b);
        let big = Cmb::alloc(&cmb, 3 * 4096).unwrap();
        assert_eq!(
            big.device_address(),
            Iova(BAR2),
            "freed neighbours coalesce"
        );
        drop((big, rest));
        assert_eq!(*cmb.free.lock().unwrap(), vec![(0, 64 << 10)]);
    }

    #[test]
    fn sq_entries_go_into_the_cmb_with_8_byte_stores_and_doorbell_follows() {
        use crate::cmd::SubmissionEntry;
        use crate::ring::SqRing;
        let hw = RecHw::new(true, LOC, SZ);
        let l = discover(&hw, Cap(1 << 57)).unwrap().unwrap();
        let cmb = Cmb::map(&hw, l).unwrap();
        let mut sq = SqRing::new_in_cmb(&hw, &cmb, 4, 0x1008).unwrap();
        assert!(sq.in_cmb());
        assert_eq!(sq.iova(), Iova(BAR2));
        let mut e = SubmissionEntry::rw(0x02, 1, 0x1234, 8, false);
        e.set_cid(7);
        sq.push(&e);
        sq.publish_tail();
        let w = hw.window.lock().unwrap();
        assert_eq!(w[0] as u32, 0x0007_0002, "opcode and CID in CDW0");
        assert_eq!((w[0] >> 32) as u32, 1, "NSID");
        assert_eq!(w[5] as u32, 0x1234, "SLBA in CDW10");
        assert_eq!(*hw.rings.lock().unwrap(), vec![1]);
    }
}
