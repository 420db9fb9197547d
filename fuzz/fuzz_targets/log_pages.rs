//! Log pages: SMART / Health (02h, 512 bytes) and Error Information (01h,
//! 64-byte entries), as `Controller::{smart_log, error_log}` parse them.
//! (nvme-core has no Firmware Slot log parser: nothing to fuzz there.)
//!
//! Asserts: no panic; fields are the little-endian bytes at their spec
//! offsets; an entry's status decodes exactly as `NvmeStatus::from_field`
//! of its status word (and re-encodes to it, phase bit aside).
#![no_main]

use libfuzzer_sys::fuzz_target;
use nvme_core::identify::{ErrorLogEntry, SmartLog, ERROR_LOG_ENTRY_SIZE, SMART_LOG_SIZE};
use nvme_core::NvmeStatus;

fn le128(b: &[u8], o: usize) -> u128 {
    u128::from_le_bytes(b[o..o + 16].try_into().unwrap())
}

fuzz_target!(|data: &[u8]| {
    let mut smart = [0u8; SMART_LOG_SIZE];
    let n = data.len().min(SMART_LOG_SIZE);
    smart[..n].copy_from_slice(&data[..n]);
    let s = SmartLog::parse(&smart);
    assert_eq!(s.critical_warning, smart[0]);
    assert_eq!(
        s.temperature_kelvin,
        u16::from_le_bytes([smart[1], smart[2]])
    );
    assert_eq!(s.data_units_read, le128(&smart, 32));
    assert_eq!(s.error_log_entries, le128(&smart, 176));
    let _ = format!("{s:?}");

    // The error log: up to a 4 KiB page of 64-byte entries, the way
    // Controller::error_log walks it.
    for chunk in data.chunks_exact(ERROR_LOG_ENTRY_SIZE).take(64) {
        let e = ErrorLogEntry::parse(chunk);
        assert_eq!(
            e.error_count,
            u64::from_le_bytes(chunk[0..8].try_into().unwrap())
        );
        assert_eq!(
            e.nsid,
            u32::from_le_bytes(chunk[24..28].try_into().unwrap())
        );
        let word = u16::from_le_bytes([chunk[12], chunk[13]]);
        assert_eq!(e.status, NvmeStatus::from_field(word));
        if let Err(st) = e.status {
            let back = (u16::from(st.sc) << 1)
                | (u16::from(st.sct.raw()) << 9)
                | (u16::from(st.crd) << 12)
                | (u16::from(st.more) << 14)
                | (u16::from(st.dnr) << 15);
            assert_eq!(back, word & !1);
            let _ = st.to_string();
        }
        let _ = format!("{e:?}");
    }
});
