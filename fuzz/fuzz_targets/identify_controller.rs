//! Identify Controller (CNS 01h): 4096 bytes from the device.
//!
//! Asserts: parsing never panics and is deterministic; the ASCII fields
//! carry no trailing blanks/NULs; the SQES/CQES nibbles recombine to the
//! raw bytes; `max_transfer_bytes` is `None` for MDTS 0 and otherwise
//! either the exact `page << MDTS` or `None` (never a wrapped value).
#![no_main]

use libfuzzer_sys::fuzz_target;
use nvme_core::identify::{IdentifyController, IDENTIFY_SIZE};

fuzz_target!(|data: &[u8]| {
    let mut b = [0u8; IDENTIFY_SIZE];
    let n = data.len().min(IDENTIFY_SIZE);
    b[..n].copy_from_slice(&data[..n]);
    let id = IdentifyController::parse(&b);
    assert_eq!(id, IdentifyController::parse(&b), "deterministic");

    assert_eq!(id.vid, u16::from_le_bytes([b[0], b[1]]));
    assert_eq!(id.mdts, b[77]);
    assert_eq!(id.nn, u32::from_le_bytes(b[516..520].try_into().unwrap()));
    for s in [&id.serial, &id.model, &id.firmware, &id.subnqn] {
        assert!(!s.ends_with([' ', '\0']), "{s:?} not trimmed");
    }
    assert!(id.serial.len() <= 20 * 3 && id.model.len() <= 40 * 3 && id.firmware.len() <= 8 * 3);
    assert!(id.subnqn.len() <= 256 * 3);
    assert_eq!(id.sqes_min() | (id.sqes_max() << 4), id.sqes);
    assert_eq!(id.cqes_min() | (id.cqes_max() << 4), id.cqes);
    let _ = id.has_volatile_write_cache();
    let o = id.oacs;
    let _ = (
        o.security(),
        o.format_nvm(),
        o.firmware(),
        o.namespace_management(),
        o.doorbell_buffer_config(),
    );
    let c = id.oncs;
    let _ = (
        c.compare(),
        c.write_zeroes(),
        c.dataset_management(),
        c.write_uncorrectable(),
        c.save_features(),
        c.reservations(),
        c.timestamp(),
        c.verify(),
        c.copy(),
    );
    assert!(!id.sgls.dword_aligned() || id.sgls.supported());

    // Every page size CAP.MPSMIN can give (2^12..=2^27), plus odd ones.
    let pages = (12..=27).map(|s| 1usize << s).chain([1, 512, usize::MAX]);
    for page in pages {
        let got = id.max_transfer_bytes(page);
        if id.mdts == 0 {
            assert_eq!(got, None, "MDTS 0 is 'no limit'");
            continue;
        }
        // u128 holds page << MDTS exactly for MDTS < 64 (page < 2^64);
        // from 64 on it never fits (page >= 1). (Not checked_shl: it
        // checks only the shift amount; this oracle had the bug it hunts.)
        let exact = (id.mdts < 64)
            .then(|| (page as u128) << id.mdts)
            .filter(|&v| v <= usize::MAX as u128);
        match got {
            Some(v) => assert_eq!(
                Some(v as u128),
                exact,
                "page {page} << MDTS {} wrapped",
                id.mdts
            ),
            None => assert_eq!(
                exact, None,
                "page {page} << MDTS {} fits but gave None",
                id.mdts
            ),
        }
    }
    let _ = format!("{id:?}");
});
