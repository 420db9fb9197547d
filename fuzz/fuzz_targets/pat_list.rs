//! The x86 PAT reservation list (`pat_memtype_list`, kernel text).
//!
//! Asserts: `PatList::parse` never panics; `overlapping` returns exactly
//! the entries that overlap the range, in order; every entry round-trips
//! through its Display form (`PAT: [mem 0x…-0x…] kind`); parsing the
//! Display of all entries gives the same list.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nvme_vfio::PatList;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let list = PatList::parse(text);
    assert_eq!(list, PatList::parse(text), "deterministic");
    // Everything but entries starting at u64::MAX (empty by construction).
    let all = list.overlapping(0, u64::MAX);
    for e in &all {
        assert!(e.start < u64::MAX && e.end > 0);
        assert_eq!(e.kind, e.kind.trim());
        let line = e.to_string();
        let again = PatList::parse(&line).overlapping(0, u64::MAX);
        assert_eq!(again, vec![e.clone()], "{line:?} round trip");
        let _ = e.memory_type();
        // A probe inside the entry finds it.
        if e.start < e.end {
            assert!(list.overlapping(e.start, e.start + 1).contains(e));
        }
    }
    let joined: String = all.iter().map(|e| format!("{e}\n")).collect();
    assert_eq!(PatList::parse(&joined).overlapping(0, u64::MAX), all);
    // Some probes from the input's own numbers.
    for w in data.chunks_exact(16).take(4) {
        let a = u64::from_le_bytes(w[..8].try_into().unwrap());
        let b = u64::from_le_bytes(w[8..].try_into().unwrap());
        let hits = list.overlapping(a, b);
        let want: Vec<_> = all
            .iter()
            .filter(|e| e.start < b && a < e.end)
            .cloned()
            .collect();
        assert_eq!(hits, want);
    }
});
