//! VFIO info buffers (filled by the kernel, shaped by the device):
//! `vfio_region_info` and `vfio_iommu_type1_info` with their capability
//! chains, through nvme-vfio's `fuzzing` feature entry points.
//!
//! Asserts: no panic, no loop, no allocation driven by a count field (a
//! chain has at most 64 capabilities, each 4-byte aligned, strictly
//! forward, with its 8-byte header inside `min(len, argsz)`; every
//! sparse-mmap area / IOVA range lies inside the buffer, so their count is
//! bounded by its length); IOVA ranges have `start <= end`; parsing is
//! deterministic; a buffer without the CAPS flag has no capabilities.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nvme_vfio::fuzzing;

fuzz_target!(|data: &[u8]| {
    // The first byte picks which first-capability offset to try on the
    // bare chain walker; the rest is the buffer.
    let Some((&sel, buf)) = data.split_first() else {
        return;
    };

    match fuzzing::region_info(buf) {
        Ok(r) => {
            assert!(buf.len() >= 32);
            assert_eq!(fuzzing::region_info(buf), Ok(r.clone()));
            if r.flags & 8 == 0 || r.cap_offset == 0 {
                assert!(r.sparse.is_none() && !r.msix_mappable);
            }
            if let Some(areas) = &r.sparse {
                let valid = buf.len().min(r.argsz as usize);
                // The capability sits at or after cap_offset; its count
                // word ends at +12, the last of n areas at +16+16n.
                let need = if areas.is_empty() {
                    12
                } else {
                    16 + 16 * areas.len()
                };
                assert!(r.cap_offset as usize + need <= valid);
            }
        }
        Err(e) => assert!(!e.is_empty()),
    }

    match fuzzing::iommu_info(buf) {
        Ok(i) => {
            assert!(buf.len() >= 20, "cap_offset ends at byte 20");
            if i.flags & 1 == 0 {
                assert_eq!(i.pgsizes, 0);
            }
            if let Some(ranges) = &i.iova_ranges {
                let valid = buf.len().min(i.argsz as usize);
                let need = if ranges.is_empty() {
                    12
                } else {
                    16 + 16 * ranges.len()
                };
                assert!(i.cap_offset as usize + need <= valid);
                assert!(ranges.iter().all(|r| r.start <= r.end));
            }
            if i.flags & 2 == 0 || i.cap_offset == 0 {
                assert!(i.iova_ranges.is_none() && i.dma_avail.is_none());
            }
        }
        Err(e) => assert!(!e.is_empty()),
    }

    let first = u32::from(sel) * 4 % (buf.len() as u32 + 8).max(1);
    if let Ok(chain) = fuzzing::cap_chain(buf, first) {
        assert!(chain.len() <= 64);
        let mut prev = None;
        for &(_, off) in &chain {
            assert!(off % 4 == 0 && off + 8 <= buf.len());
            if let Some(p) = prev {
                assert!(off > p, "chain goes forward");
            }
            prev = Some(off);
        }
        if first == 0 {
            assert!(chain.is_empty());
        }
    }
});
