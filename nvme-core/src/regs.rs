//! Controller registers (BAR0) as value types with named fields.
//!
//! Bit positions and offsets live here and nowhere else: driver code reads
//! and writes registers through these types ([`Register`]: each type
//! carries its BAR0 offset, so an offset cannot meet the wrong layout).

use std::time::Duration;

/// Byte offsets of the controller registers in BAR0.
pub mod offset {
    /// Controller Capabilities (64-bit).
    pub const CAP: usize = 0x00;
    /// Version.
    pub const VS: usize = 0x08;
    /// Interrupt Mask Set.
    pub const INTMS: usize = 0x0c;
    /// Interrupt Mask Clear.
    pub const INTMC: usize = 0x10;
    /// Controller Configuration.
    pub const CC: usize = 0x14;
    /// Controller Status.
    pub const CSTS: usize = 0x1c;
    /// Admin Queue Attributes.
    pub const AQA: usize = 0x24;
    /// Admin Submission Queue base address (64-bit).
    pub const ASQ: usize = 0x28;
    /// Admin Completion Queue base address (64-bit).
    pub const ACQ: usize = 0x30;
    /// Controller Memory Buffer Location.
    pub const CMBLOC: usize = 0x38;
    /// Controller Memory Buffer Size.
    pub const CMBSZ: usize = 0x3c;
    /// Controller Memory Buffer Memory Space Control (64-bit, NVMe 1.4).
    pub const CMBMSC: usize = 0x50;
    /// Controller Memory Buffer Status (NVMe 1.4).
    pub const CMBSTS: usize = 0x58;
    /// First doorbell register.
    pub const DOORBELLS: usize = 0x1000;
}

#[inline]
const fn bits64(v: u64, lo: u32, width: u32) -> u64 {
    (v >> lo) & ((1u64 << width) - 1)
}

#[inline]
const fn bits32(v: u32, lo: u32, width: u32) -> u32 {
    (v >> lo) & ((1u32 << width) - 1)
}

/// CAP: Controller Capabilities.
#[derive(Copy, Clone, PartialEq, Eq)]
pub struct Cap(pub u64);

impl Cap {
    /// MQES: maximum queue entries supported, 0-based as in the register.
    pub const fn mqes(self) -> u16 {
        bits64(self.0, 0, 16) as u16
    }
    /// Maximum entries in one I/O queue (MQES + 1).
    pub const fn max_queue_entries(self) -> u32 {
        self.mqes() as u32 + 1
    }
    /// CQR: queues must be physically contiguous.
    pub const fn contiguous_queues_required(self) -> bool {
        bits64(self.0, 16, 1) == 1
    }
    /// TO: worst-case time to become ready, in 500 ms units.
    pub const fn to(self) -> u8 {
        bits64(self.0, 24, 8) as u8
    }
    /// TO as a duration (at least 500 ms, even if the controller says 0).
    pub fn ready_timeout(self) -> Duration {
        Duration::from_millis(500 * u64::from(self.to().max(1)))
    }
    /// DSTRD: doorbell stride exponent.
    pub const fn dstrd(self) -> u8 {
        bits64(self.0, 32, 4) as u8
    }
    /// Bytes between consecutive doorbells: `4 << DSTRD`.
    pub const fn doorbell_stride(self) -> usize {
        4usize << self.dstrd()
    }
    /// NSSRS: NVM subsystem reset supported.
    pub const fn nssrs(self) -> bool {
        bits64(self.0, 36, 1) == 1
    }
    /// CSS: command sets supported (bit 0 NVM, bit 6 I/O command sets, bit 7 admin only).
    pub const fn css(self) -> u8 {
        bits64(self.0, 37, 8) as u8
    }
    /// The NVM command set is supported.
    pub const fn supports_nvm_command_set(self) -> bool {
        self.css() & 1 == 1
    }
    /// MPSMIN: minimum memory page size is `2^(12 + MPSMIN)`.
    pub const fn mpsmin(self) -> u8 {
        bits64(self.0, 48, 4) as u8
    }
    /// MPSMAX: maximum memory page size is `2^(12 + MPSMAX)`.
    pub const fn mpsmax(self) -> u8 {
        bits64(self.0, 52, 4) as u8
    }
    /// Smallest memory page size in bytes.
    pub const fn min_page_size(self) -> usize {
        1usize << (12 + self.mpsmin() as u32)
    }
    /// Largest memory page size in bytes.
    pub const fn max_page_size(self) -> usize {
        1usize << (12 + self.mpsmax() as u32)
    }
    /// PMRS: persistent memory region supported.
    pub const fn pmrs(self) -> bool {
        bits64(self.0, 56, 1) == 1
    }
    /// CMBS: controller memory buffer supported (NVMe 1.4 CMBMSC protocol).
    pub const fn cmbs(self) -> bool {
        bits64(self.0, 57, 1) == 1
    }
    /// Byte offset in BAR0 of the submission queue `qid` tail doorbell.
    pub const fn sq_tail_doorbell(self, qid: u16) -> usize {
        offset::DOORBELLS + (2 * qid as usize) * self.doorbell_stride()
    }
    /// Byte offset in BAR0 of the completion queue `qid` head doorbell.
    pub const fn cq_head_doorbell(self, qid: u16) -> usize {
        offset::DOORBELLS + (2 * qid as usize + 1) * self.doorbell_stride()
    }
}

impl std::fmt::Debug for Cap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cap")
            .field("raw", &format_args!("{:#018x}", self.0))
            .field("mqes", &self.mqes())
            .field("cqr", &self.contiguous_queues_required())
            .field("to", &self.to())
            .field("dstrd", &self.dstrd())
            .field("css", &format_args!("{:#x}", self.css()))
            .field("mpsmin", &self.mpsmin())
            .field("mpsmax", &self.mpsmax())
            .field("cmbs", &self.cmbs())
            .finish()
    }
}

/// VS: NVMe version the controller implements.
#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(pub u32);

impl Version {
    /// Major version.
    pub const fn major(self) -> u16 {
        bits32(self.0, 16, 16) as u16
    }
    /// Minor version.
    pub const fn minor(self) -> u8 {
        bits32(self.0, 8, 8) as u8
    }
    /// Tertiary version.
    pub const fn tertiary(self) -> u8 {
        bits32(self.0, 0, 8) as u8
    }
    /// Build a version value.
    pub const fn new(major: u16, minor: u8, tertiary: u8) -> Self {
        Version(((major as u32) << 16) | ((minor as u32) << 8) | tertiary as u32)
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major(), self.minor(), self.tertiary())
    }
}

impl std::fmt::Debug for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Version({self})")
    }
}

/// CC.SHN shutdown notification values.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default)]
pub enum ShutdownNotification {
    /// No notification (0).
    #[default]
    None,
    /// Normal shutdown (1).
    Normal,
    /// Abrupt shutdown (2).
    Abrupt,
    /// Reserved value 3, kept so a read-modify-write preserves it.
    Reserved,
}

/// CC: Controller Configuration.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default)]
pub struct Cc {
    /// EN: enable.
    pub enable: bool,
    /// CSS: I/O command set selected (0 = NVM).
    pub css: u8,
    /// MPS: memory page size is `2^(12 + MPS)`.
    pub mps: u8,
    /// AMS: arbitration mechanism (0 = round robin).
    pub ams: u8,
    /// SHN: shutdown notification.
    pub shn: ShutdownNotification,
    /// IOSQES: I/O submission queue entry size, `2^n` bytes.
    pub iosqes: u8,
    /// IOCQES: I/O completion queue entry size, `2^n` bytes.
    pub iocqes: u8,
}

impl Cc {
    /// What this driver programs before enabling: NVM command set, 4 KiB
    /// pages (MPS 0), round robin, no shutdown, 64-byte SQ and 16-byte CQ
    /// entries; `enable` still clear.
    pub const DRIVER: Cc = Cc {
        enable: false,
        css: 0,
        mps: 0,
        ams: 0,
        shn: ShutdownNotification::None,
        iosqes: 6,
        iocqes: 4,
    };

    /// Decode a raw CC value.
    pub const fn from_bits(v: u32) -> Self {
        Cc {
            enable: bits32(v, 0, 1) == 1,
            css: bits32(v, 4, 3) as u8,
            mps: bits32(v, 7, 4) as u8,
            ams: bits32(v, 11, 3) as u8,
            shn: match bits32(v, 14, 2) {
                0 => ShutdownNotification::None,
                1 => ShutdownNotification::Normal,
                2 => ShutdownNotification::Abrupt,
                _ => ShutdownNotification::Reserved,
            },
            iosqes: bits32(v, 16, 4) as u8,
            iocqes: bits32(v, 20, 4) as u8,
        }
    }
    /// Encode as a raw CC value.
    pub const fn to_bits(self) -> u32 {
        let shn = match self.shn {
            ShutdownNotification::None => 0,
            ShutdownNotification::Normal => 1,
            ShutdownNotification::Abrupt => 2,
            ShutdownNotification::Reserved => 3,
        };
        (self.enable as u32)
            | ((self.css as u32 & 0x7) << 4)
            | ((self.mps as u32 & 0xf) << 7)
            | ((self.ams as u32 & 0x7) << 11)
            | (shn << 14)
            | ((self.iosqes as u32 & 0xf) << 16)
            | ((self.iocqes as u32 & 0xf) << 20)
    }
}

/// CSTS.SHST: shutdown status.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ShutdownStatus {
    /// Normal operation.
    Normal,
    /// Shutdown processing occurring.
    Occurring,
    /// Shutdown processing complete.
    Complete,
    /// Reserved value 3.
    Reserved,
}

/// CSTS: Controller Status.
#[derive(Copy, Clone, PartialEq, Eq)]
pub struct Csts(pub u32);

impl Csts {
    /// RDY: ready.
    pub const fn ready(self) -> bool {
        bits32(self.0, 0, 1) == 1
    }
    /// CFS: controller fatal status.
    pub const fn fatal(self) -> bool {
        bits32(self.0, 1, 1) == 1
    }
    /// SHST: shutdown status.
    pub const fn shutdown_status(self) -> ShutdownStatus {
        match bits32(self.0, 2, 2) {
            0 => ShutdownStatus::Normal,
            1 => ShutdownStatus::Occurring,
            2 => ShutdownStatus::Complete,
            _ => ShutdownStatus::Reserved,
        }
    }
    /// NSSRO: NVM subsystem reset occurred.
    pub const fn nssro(self) -> bool {
        bits32(self.0, 4, 1) == 1
    }
    /// A read of all ones means the device is gone (surprise removal, dead link).
    pub const fn is_all_ones(self) -> bool {
        self.0 == u32::MAX
    }
}

impl std::fmt::Debug for Csts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Csts")
            .field("raw", &format_args!("{:#x}", self.0))
            .field("rdy", &self.ready())
            .field("cfs", &self.fatal())
            .field("shst", &self.shutdown_status())
            .finish()
    }
}

/// AQA: Admin Queue Attributes (sizes are entry counts, not 0-based).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Aqa {
    /// Admin submission queue entries.
    pub sq_entries: u16,
    /// Admin completion queue entries.
    pub cq_entries: u16,
}

impl Aqa {
    /// Encode (the register holds 0-based 12-bit sizes; 0 entries, which
    /// is not a size, encodes as 1).
    pub const fn to_bits(self) -> u32 {
        ((self.sq_entries as u32).saturating_sub(1) & 0xfff)
            | (((self.cq_entries as u32).saturating_sub(1) & 0xfff) << 16)
    }
    /// Decode.
    pub const fn from_bits(v: u32) -> Self {
        Aqa {
            sq_entries: bits32(v, 0, 12) as u16 + 1,
            cq_entries: bits32(v, 16, 12) as u16 + 1,
        }
    }
}

/// CMBLOC: Controller Memory Buffer Location.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct CmbLoc(pub u32);

impl CmbLoc {
    /// BIR: which BAR holds the CMB.
    pub const fn bir(self) -> u8 {
        bits32(self.0, 0, 3) as u8
    }
    /// OFST: offset of the CMB in that BAR, in CMBSZ.SZU units.
    pub const fn ofst(self) -> u32 {
        bits32(self.0, 12, 20)
    }
}

/// CMBSZ: Controller Memory Buffer Size.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct CmbSz(pub u32);

impl CmbSz {
    /// SQS: submission queues may be in the CMB.
    pub const fn sqs(self) -> bool {
        bits32(self.0, 0, 1) == 1
    }
    /// CQS: completion queues may be in the CMB.
    pub const fn cqs(self) -> bool {
        bits32(self.0, 1, 1) == 1
    }
    /// LISTS: PRP/SGL lists may be in the CMB.
    pub const fn lists(self) -> bool {
        bits32(self.0, 2, 1) == 1
    }
    /// RDS: read data may be in the CMB.
    pub const fn rds(self) -> bool {
        bits32(self.0, 3, 1) == 1
    }
    /// WDS: write data may be in the CMB.
    pub const fn wds(self) -> bool {
        bits32(self.0, 4, 1) == 1
    }
    /// SZU: size unit is `4 KiB << (4 * SZU)`.
    pub const fn szu(self) -> u8 {
        bits32(self.0, 8, 4) as u8
    }
    /// SZ: size in SZU units.
    pub const fn sz(self) -> u32 {
        bits32(self.0, 12, 20)
    }
    /// SZU is one the spec defines (0..=6: 4 KiB to 64 GiB); 7..=15 are
    /// reserved.
    pub const fn szu_is_defined(self) -> bool {
        self.szu() <= 6
    }
    /// Size unit in bytes (saturating at `u64::MAX` for the reserved SZU
    /// values 13..=15, whose unit does not fit in 64 bits).
    pub const fn unit_bytes(self) -> u64 {
        if self.szu() > 12 {
            u64::MAX
        } else {
            4096u64 << (4 * self.szu() as u32)
        }
    }
    /// CMB size in bytes (saturating at `u64::MAX`: only a reserved SZU
    /// gets there).
    pub const fn size_bytes(self) -> u64 {
        (self.sz() as u64).saturating_mul(self.unit_bytes())
    }
}

/// CMBMSC: Controller Memory Buffer Memory Space Control (NVMe 1.4).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default)]
pub struct CmbMsc {
    /// CRE: capabilities registers enabled (CMBLOC/CMBSZ read non-zero).
    pub cre: bool,
    /// CMSE: controller memory space enabled.
    pub cmse: bool,
    /// CBA: controller base address (4 KiB aligned).
    pub cba: u64,
}

impl CmbMsc {
    /// Encode.
    pub const fn to_bits(self) -> u64 {
        (self.cre as u64) | ((self.cmse as u64) << 1) | (self.cba & !0xfff)
    }
    /// Decode.
    pub const fn from_bits(v: u64) -> Self {
        CmbMsc {
            cre: v & 1 == 1,
            cmse: (v >> 1) & 1 == 1,
            cba: v & !0xfff,
        }
    }
}

/// CMBSTS: Controller Memory Buffer Status.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct CmbSts(pub u32);

impl CmbSts {
    /// CBAI: controller base address invalid.
    pub const fn cbai(self) -> bool {
        self.0 & 1 == 1
    }
}

/// A controller register: its type knows where it lives in BAR0 and how
/// wide it is. Read and write registers by type, with
/// [`Hardware::read_reg`](crate::Hardware::read_reg) and
/// [`Hardware::write_reg`](crate::Hardware::write_reg).
pub trait Register: Sized {
    /// Byte offset in BAR0.
    const OFFSET: usize;
    /// 64 bits wide (else 32).
    const WIDE: bool;
    /// Decode a raw value (the low 32 bits for a 32-bit register).
    fn from_raw(raw: u64) -> Self;
    /// Encode as a raw value.
    fn to_raw(&self) -> u64;
}

/// ASQ: the admin submission queue's base address.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Asq(pub u64);

/// ACQ: the admin completion queue's base address.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Acq(pub u64);

macro_rules! registers {
    ($($ty:ident at $off:ident, $width:tt, |$r:ident| $from:expr, |$s:ident| $to:expr;)*) => {$(
        impl Register for $ty {
            const OFFSET: usize = offset::$off;
            const WIDE: bool = registers!(@wide $width);
            #[inline]
            fn from_raw($r: u64) -> Self {
                $from
            }
            #[inline]
            fn to_raw(&self) -> u64 {
                let $s = self;
                $to
            }
        }
    )*};
    (@wide 32) => { false };
    (@wide 64) => { true };
}

registers! {
    Cap at CAP, 64, |r| Cap(r), |s| s.0;
    Version at VS, 32, |r| Version(r as u32), |s| u64::from(s.0);
    Cc at CC, 32, |r| Cc::from_bits(r as u32), |s| u64::from(s.to_bits());
    Csts at CSTS, 32, |r| Csts(r as u32), |s| u64::from(s.0);
    Aqa at AQA, 32, |r| Aqa::from_bits(r as u32), |s| u64::from(s.to_bits());
    Asq at ASQ, 64, |r| Asq(r), |s| s.0;
    Acq at ACQ, 64, |r| Acq(r), |s| s.0;
    CmbLoc at CMBLOC, 32, |r| CmbLoc(r as u32), |s| u64::from(s.0);
    CmbSz at CMBSZ, 32, |r| CmbSz(r as u32), |s| u64::from(s.0);
    CmbMsc at CMBMSC, 64, |r| CmbMsc::from_bits(r), |s| s.to_bits();
    CmbSts at CMBSTS, 32, |r| CmbSts(r as u32), |s| u64::from(s.0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_fields_from_qemu_value() {
        // CAP as QEMU 7.2's nvme reports it with cmb: MQES 0x7ff, CQR, TO 0xf,
        // DSTRD 0, CSS NVM + I/O sets, MPSMIN 0, MPSMAX 4, CMBS.
        let raw: u64 = 0x7ff | (1 << 16) | (0xf << 24) | (0x41 << 37) | (4 << 52) | (1 << 57);
        let cap = Cap(raw);
        assert_eq!(cap.mqes(), 0x7ff);
        assert_eq!(cap.max_queue_entries(), 2048);
        assert!(cap.contiguous_queues_required());
        assert_eq!(cap.to(), 0xf);
        assert_eq!(cap.ready_timeout(), Duration::from_millis(7500));
        assert_eq!(cap.doorbell_stride(), 4);
        assert!(cap.supports_nvm_command_set());
        assert_eq!(cap.min_page_size(), 4096);
        assert_eq!(cap.max_page_size(), 65536);
        assert!(cap.cmbs());
        assert_eq!(cap.sq_tail_doorbell(0), 0x1000);
        assert_eq!(cap.cq_head_doorbell(0), 0x1004);
        assert_eq!(cap.sq_tail_doorbell(3), 0x1018);
        let wide = Cap(2u64 << 32);
        assert_eq!(wide.cq_head_doorbell(1), 0x1000 + 3 * 16);
    }

    #[test]
    fn cc_round_trips() {
        let cc = Cc {
            enable: true,
            css: 0,
            mps: 0,
            ams: 0,
            shn: ShutdownNotification::Normal,
            iosqes: 6,
            iocqes: 4,
        };
        assert_eq!(cc.to_bits(), 0x0046_4001);
        assert_eq!(Cc::from_bits(cc.to_bits()), cc);
        for raw in [0u32, 1 << 14, 2 << 14, 3 << 14] {
            assert_eq!(
                Cc::from_bits(raw).to_bits(),
                raw,
                "SHN {raw:#x} round-trips"
            );
        }
    }

    #[test]
    fn csts_and_aqa_and_cmb() {
        assert!(Csts(1).ready());
        assert!(Csts(2).fatal());
        assert_eq!(Csts(0b1000).shutdown_status(), ShutdownStatus::Complete);
        let aqa = Aqa {
            sq_entries: 32,
            cq_entries: 64,
        };
        assert_eq!(aqa.to_bits(), 0x003f_001f);
        assert_eq!(Aqa::from_bits(aqa.to_bits()), aqa);
        // 64 MiB CMB in 1 MiB units (SZU=2), SQS|LISTS|RDS|WDS.
        let sz = CmbSz((64 << 12) | (2 << 8) | 0b11101);
        assert!(sz.sqs() && !sz.cqs() && sz.lists() && sz.rds() && sz.wds());
        assert_eq!(sz.size_bytes(), 64 << 20);
        let msc = CmbMsc {
            cre: true,
            cmse: true,
            cba: 0xfe00_0000,
        };
        assert_eq!(CmbMsc::from_bits(msc.to_bits()), msc);
        assert_eq!(CmbLoc(0x2002).bir(), 2);
        assert_eq!(CmbLoc(0x2002).ofst(), 2);
        assert_eq!(Version(0x0001_0400).to_string(), "1.4.0");
    }

    /// Found by fuzz/registers: AQA with 0 entries underflowed, and CMBSZ
    /// with a reserved SZU overflowed (9..=12) or wrapped to 0 (13..=15).
    #[test]
    fn no_overflow_on_any_value() {
        let zero = Aqa {
            sq_entries: 0,
            cq_entries: 0,
        };
        assert_eq!(zero.to_bits(), 0);
        for szu in 0..=15u32 {
            let sz = CmbSz((0xf_ffff << 12) | (szu << 8));
            assert_eq!(sz.szu_is_defined(), szu <= 6);
            let exact = 0xf_ffffu128 * (4096u128 << (4 * szu));
            assert_eq!(
                u128::from(sz.size_bytes()),
                exact.min(u128::from(u64::MAX)),
                "SZU {szu}"
            );
            assert_ne!(sz.unit_bytes(), 0, "SZU {szu}");
        }
        assert_eq!(CmbSz((1 << 12) | (6 << 8)).size_bytes(), 64 << 30);
    }
}
