//! fio's value parsers in nvme-bench (options.rs): sizes with units
//! (`parse_size`, kb_base=1024 and the KiB=1000 quirk), amounts (`50%`),
//! times, CPU lists, verify patterns, file lists, the nvme-vfio filename
//! (`trtype=PCIe traddr=… ns=…`) and comment stripping.
//!
//! Asserts: no panic or overflow; a plain decimal `n` parses to `n`;
//! `n<unit>` is `n * multiplier` exactly or an error (never wrapped);
//! percentages are within 0..=100; times are finite and at most 1e9 units;
//! CPU lists are sorted, deduplicated, non-empty and <= 4095, and bounded
//! by the ranges written; patterns are non-empty and no longer than the
//! text; `strip_comment` leaves no `;`/`#` and is idempotent.
#![no_main]

include!("bench_options.rs");

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use options::*;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };

    if let Ok(v) = parse_size(s) {
        let t = s.trim();
        if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
            assert_eq!(Some(v), t.parse::<u64>().ok(), "{t}");
        }
    }
    // Exact multipliers: a number and a unit picked from the input.
    if let Some((&sel, rest)) = data.split_first() {
        if rest.len() >= 8 {
            let n = u64::from_le_bytes(rest[..8].try_into().unwrap()) >> (sel % 64);
            let units: [(&str, u128); 12] = [
                ("", 1),
                ("k", 1 << 10),
                ("KB", 1 << 10),
                ("m", 1 << 20),
                ("g", 1 << 30),
                ("t", 1 << 40),
                ("p", 1 << 50),
                ("KiB", 1000),
                ("MiB", 1_000_000),
                ("GiB", 1_000_000_000),
                ("TiB", 1_000_000_000_000),
                ("PiB", 1_000_000_000_000_000),
            ];
            let (u, m) = units[usize::from(sel) % units.len()];
            let want = u128::from(n) * m;
            let got = parse_size(&format!("{n}{u}")).ok();
            if want <= u128::from(u64::MAX) {
                assert_eq!(got.map(u128::from), Some(want), "{n}{u}");
            } else {
                assert_eq!(got, None, "{n}{u} must not wrap");
            }
            let hex = parse_size(&format!("0x{n:x}")).ok();
            assert_eq!(hex, Some(n));
        }
    }
    match parse_amount(s) {
        Ok(Amount::Percent(p)) => {
            assert!((0.0..=100.0).contains(&p));
            let _ = Amount::Percent(p).resolve(u64::MAX);
        }
        Ok(Amount::Bytes(b)) => assert_eq!(Amount::Bytes(b).resolve(0), b),
        Err(_) => {}
    }
    for unit in [
        Duration::from_nanos(1),
        Duration::from_secs(1),
        Duration::from_secs(86400),
    ] {
        if let Ok(d) = parse_time(s, unit) {
            assert!(d <= Duration::from_secs(86400) * 1_000_000_000);
        }
    }
    if let Ok(cpus) = parse_cpus(s) {
        assert!(!cpus.is_empty());
        assert!(cpus.windows(2).all(|w| w[0] < w[1]), "sorted, deduplicated");
        assert!(*cpus.last().unwrap() <= 4095);
    }
    if let Ok(p) = parse_pattern(s) {
        assert!(p.len() <= s.len().max(4));
    }
    if let Ok(name) = split_files(s) {
        assert!(!name.is_empty() && name.len() <= s.len());
    }
    let _ = parse_nvme_target(s);
    let c = strip_comment(s);
    assert!(!c.contains([';', '#']));
    assert_eq!(strip_comment(c), c);
});
