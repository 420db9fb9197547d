//! Completion queue entries (16 bytes from the device) and status decode.
//!
//! Asserts: `NvmeStatus::from_field` is `Ok` exactly when SCT and SC are 0
//! (whatever the phase, CRD, M and DNR bits); an error's fields re-encode
//! to the status word (phase aside); SCT's `raw()` is 3 bits; `name()` is
//! `Some` for SC 0/SCT 0 never reached as an error; Display/Debug never
//! panic and Display starts with the name (or "unknown status");
//! `CompletionEntry::{phase, status}` agree with the raw word.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nvme_core::cmd::CompletionEntry;
use nvme_core::{CommandError, NvmeStatus};

fn check_word(word: u16) {
    let r = NvmeStatus::from_field(word);
    let sc = (word >> 1) & 0xff;
    let sct = (word >> 9) & 0x7;
    assert_eq!(r.is_ok(), sc == 0 && sct == 0, "word {word:#06x}");
    if let Err(s) = r {
        assert!(s.sct.raw() <= 7);
        assert!(s.crd <= 3);
        let back = (u16::from(s.sc) << 1)
            | (u16::from(s.sct.raw()) << 9)
            | (u16::from(s.crd) << 12)
            | (u16::from(s.more) << 14)
            | (u16::from(s.dnr) << 15);
        assert_eq!(back, word & !1, "re-encode {word:#06x}");
        let text = s.to_string();
        match s.name() {
            Some(n) => assert!(text.starts_with(n)),
            None => assert!(text.starts_with("unknown status")),
        }
        assert_eq!(text.contains("DNR"), s.dnr);
        let _ = format!("{s:?}");
        assert!(s.is((s.sct, s.sc)));
        let ce = CommandError::from(s);
        assert_eq!(ce.nvme(), Some(s));
        let _ = ce.to_string();
    }
}

fuzz_target!(|data: &[u8]| {
    for chunk in data.chunks(16) {
        let mut raw = [0u8; 16];
        raw[..chunk.len()].copy_from_slice(chunk);
        let w = |o: usize| u32::from_le_bytes(raw[o..o + 4].try_into().unwrap());
        let h = |o: usize| u16::from_le_bytes([raw[o], raw[o + 1]]);
        let e = CompletionEntry {
            result: w(0),
            dw1: w(4),
            sq_head: h(8),
            sq_id: h(10),
            cid: h(12),
            status: h(14),
        };
        assert_eq!(e.phase(), e.status & 1 == 1);
        assert_eq!(e.status(), NvmeStatus::from_field(e.status));
        check_word(e.status);
        let _ = format!("{e:?}");
    }
});
