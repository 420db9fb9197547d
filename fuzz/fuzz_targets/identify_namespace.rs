//! Identify Namespace (CNS 00h): 4096 bytes from the device.
//!
//! Asserts: parsing never panics and is deterministic; there are
//! `min(NLBAF + 1, 64)` LBA formats and no more (the count is a device byte:
//! the allocation is bounded by the page, not the field); each format's
//! fields come from its dword; `current_format` is the format at
//! `format_index` (FLBAS bits 3:0 and 6:5); `block_size` never panics and
//! is `2^LBADS` whenever that fits in a u64.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nvme_core::identify::{IdentifyNamespace, IDENTIFY_SIZE};

fuzz_target!(|data: &[u8]| {
    let mut b = [0u8; IDENTIFY_SIZE];
    let n = data.len().min(IDENTIFY_SIZE);
    b[..n].copy_from_slice(&data[..n]);
    let ns = IdentifyNamespace::parse(&b);
    assert_eq!(ns, IdentifyNamespace::parse(&b), "deterministic");

    let nlbaf = usize::from(b[25]) + 1;
    assert_eq!(ns.lba_formats.len(), nlbaf.min(64));
    for (i, f) in ns.lba_formats.iter().enumerate() {
        let o = 128 + 4 * i;
        let v = u32::from_le_bytes(b[o..o + 4].try_into().unwrap());
        assert_eq!(u32::from(f.metadata_size), v & 0xffff);
        assert_eq!(u32::from(f.lbads), (v >> 16) & 0xff);
        assert!(f.relative_performance <= 3);
        let bs = f.block_size();
        if f.lbads < 64 {
            assert_eq!(bs, 1u64 << f.lbads);
        }
    }
    let idx = ns.format_index();
    assert!(idx < 64, "FLBAS gives 6 bits of index");
    assert_eq!(ns.current_format(), ns.lba_formats.get(idx).copied());
    assert_eq!(ns.is_active(), ns.nsze != 0);
    assert_eq!(&ns.nguid[..], &b[104..120]);
    assert_eq!(&ns.eui64[..], &b[120..128]);
    let _ = format!("{ns:?}");
});
