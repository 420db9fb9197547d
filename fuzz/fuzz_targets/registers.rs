//! Controller registers (BAR0 values from the device, and the values the
//! driver builds): CAP, VS, CC, CSTS, AQA, CMBLOC, CMBSZ, CMBMSC, CMBSTS.
//!
//! Asserts: no decoder or derived quantity panics or overflows on any raw
//! value (the fuzz build has overflow checks on); derived quantities are
//! exact (`ready_timeout` = 500 ms × max(TO, 1), page sizes, doorbell
//! offsets, CMB unit and size in bytes whenever the true value fits in a
//! u64); round trips: `Cc::from_bits(c.to_bits()) == c`,
//! `Cc::from_bits(v).to_bits() == v & CC_MASK`, the same for AQA and
//! CMBMSC, `Version::new(major, minor, ter)` and `Register::{from,to}_raw`.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use nvme_core::regs::*;

const CC_MASK: u32 = 0x00ff_fff1;

struct Input<'a>(&'a [u8]);
impl Input<'_> {
    fn u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        let n = self.0.len().min(8);
        b[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        u64::from_le_bytes(b)
    }
    fn u32(&mut self) -> u32 {
        self.u64() as u32
    }
}

fn round_trip<R: Register + PartialEq + std::fmt::Debug + Copy>(r: R) {
    assert_eq!(R::from_raw(r.to_raw()), r);
}

fuzz_target!(|data: &[u8]| {
    let mut inp = Input(data);

    // CAP
    let cap = Cap(inp.u64());
    assert_eq!(cap.max_queue_entries(), u32::from(cap.mqes()) + 1);
    assert_eq!(
        cap.ready_timeout(),
        Duration::from_millis(500) * u32::from(cap.to().max(1))
    );
    assert!(cap.dstrd() <= 15 && cap.mpsmin() <= 15 && cap.mpsmax() <= 15);
    assert_eq!(cap.doorbell_stride(), 4usize << cap.dstrd());
    assert_eq!(cap.min_page_size(), 1usize << (12 + cap.mpsmin()));
    assert_eq!(cap.max_page_size(), 1usize << (12 + cap.mpsmax()));
    let _ = (
        cap.contiguous_queues_required(),
        cap.nssrs(),
        cap.css(),
        cap.pmrs(),
        cap.cmbs(),
    );
    let _ = cap.supports_nvm_command_set();
    for qid in [0u16, 1, 2, 255, 1024, u16::MAX - 1, u16::MAX] {
        let sq = cap.sq_tail_doorbell(qid);
        let cq = cap.cq_head_doorbell(qid);
        assert_eq!(sq, 0x1000 + 2 * usize::from(qid) * cap.doorbell_stride());
        assert_eq!(cq, sq + cap.doorbell_stride());
    }
    let _ = format!("{cap:?}");
    assert_eq!(Cap::from_raw(cap.to_raw()), cap);

    // VS
    let vs = Version(inp.u32());
    assert_eq!(Version::new(vs.major(), vs.minor(), vs.tertiary()), vs);
    assert_eq!(
        vs.to_string(),
        format!("{}.{}.{}", vs.major(), vs.minor(), vs.tertiary())
    );
    let _ = format!("{vs:?}");
    round_trip(vs);

    // CC: raw -> struct -> raw keeps every defined bit; struct -> raw -> struct.
    let raw = inp.u32();
    let cc = Cc::from_bits(raw);
    assert_eq!(cc.to_bits(), raw & CC_MASK);
    assert_eq!(Cc::from_bits(cc.to_bits()), cc);
    round_trip(cc);
    // An arbitrary struct (out-of-range fields are masked, never overflow).
    let f = inp.u64().to_le_bytes();
    let shn = match f[6] & 3 {
        0 => ShutdownNotification::None,
        1 => ShutdownNotification::Normal,
        2 => ShutdownNotification::Abrupt,
        _ => ShutdownNotification::Reserved,
    };
    let any = Cc {
        enable: f[0] & 1 == 1,
        css: f[1],
        mps: f[2],
        ams: f[3],
        shn,
        iosqes: f[4],
        iocqes: f[5],
    };
    let bits = any.to_bits();
    assert_eq!(bits & !CC_MASK, 0);
    let back = Cc::from_bits(bits);
    assert_eq!(back.css, any.css & 7);
    assert_eq!(back.mps, any.mps & 0xf);
    assert_eq!(back.ams, any.ams & 7);
    assert_eq!(back.iosqes, any.iosqes & 0xf);
    assert_eq!(back.iocqes, any.iocqes & 0xf);
    assert_eq!((back.enable, back.shn), (any.enable, any.shn));
    let d = Cc::DRIVER;
    assert_eq!(Cc::from_bits(d.to_bits()), d);

    // CSTS
    let csts = Csts(inp.u32());
    let _ = (
        csts.ready(),
        csts.fatal(),
        csts.shutdown_status(),
        csts.nssro(),
        csts.is_all_ones(),
    );
    let _ = format!("{csts:?}");
    round_trip(csts);

    // AQA: raw -> struct -> raw keeps the two 12-bit fields; any struct encodes.
    let raw = inp.u32();
    let aqa = Aqa::from_bits(raw);
    assert!((1..=4096).contains(&aqa.sq_entries) && (1..=4096).contains(&aqa.cq_entries));
    assert_eq!(aqa.to_bits(), raw & 0x0fff_0fff);
    assert_eq!(Aqa::from_bits(aqa.to_bits()), aqa);
    round_trip(aqa);
    let any = Aqa {
        sq_entries: inp.u32() as u16,
        cq_entries: inp.u32() as u16,
    };
    let bits = any.to_bits();
    assert_eq!(bits & !0x0fff_0fff, 0);

    // CMBLOC / CMBSZ: the CMB's place and size, in bytes, from device values.
    let loc = CmbLoc(inp.u32());
    assert!(loc.bir() <= 7);
    assert!(loc.ofst() < 1 << 20);
    round_trip(loc);
    let sz = CmbSz(inp.u32());
    let _ = (sz.sqs(), sz.cqs(), sz.lists(), sz.rds(), sz.wds());
    assert!(sz.szu() <= 15 && sz.sz() < 1 << 20);
    let unit = sz.unit_bytes();
    let size = sz.size_bytes();
    let exact_unit = 4096u128 << (4 * u32::from(sz.szu()));
    let exact_size = exact_unit * u128::from(sz.sz());
    if exact_unit <= u128::from(u64::MAX) {
        assert_eq!(u128::from(unit), exact_unit, "SZU {}", sz.szu());
    }
    if exact_size <= u128::from(u64::MAX) {
        assert_eq!(
            u128::from(size),
            exact_size,
            "SZ {} SZU {}",
            sz.sz(),
            sz.szu()
        );
    }
    round_trip(sz);

    // CMBMSC / CMBSTS
    let raw = inp.u64();
    let msc = CmbMsc::from_bits(raw);
    assert_eq!(msc.to_bits(), raw & !0xffc);
    assert_eq!(CmbMsc::from_bits(msc.to_bits()), msc);
    assert_eq!(msc.cba & 0xfff, 0);
    round_trip(msc);
    let any = CmbMsc {
        cre: raw & 2 != 0,
        cmse: raw & 1 != 0,
        cba: inp.u64(),
    };
    assert_eq!(CmbMsc::from_bits(any.to_bits()).cba, any.cba & !0xfff);
    let sts = CmbSts(inp.u32());
    let _ = sts.cbai();
    round_trip(sts);
    round_trip(Asq(inp.u64()));
    round_trip(Acq(inp.u64()));
});
