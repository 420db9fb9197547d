//! Write-combining where the kernel allows it, uncached where it must be,
//! and proof of which: nvme-vfio's mapping plan against QEMU's emulated NVMe
//! in a q35 + intel-iommu guest (Debian's 6.1 cloud kernel, PAT on), checked
//! against the kernel's own `pat_memtype_list`.
//!
//! One boot, two controllers: one with a 16 MiB CMB (BAR2, 64-bit
//! prefetchable, so sysfs offers `resource2_wc`), one without.

use std::collections::HashMap;
use std::time::Duration;

use fixtures::{guest_file_for_binary, Guest, GuestConfig, NvmeController};

const CHECK: &str = env!("CARGO_BIN_EXE_nvme-wc-check");
const T: Duration = Duration::from_secs(300);

fn kv(out: &str) -> HashMap<String, String> {
    out.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// Run the checker; print its output (the proof) to the test log.
fn check(g: &mut Guest, args: &str) -> (i32, String, HashMap<String, String>) {
    let cmd = format!("nvme-wc-check {args}");
    let out = g.run(&cmd, T).unwrap_or_else(|e| panic!("`{cmd}`: {e}"));
    let so = out.stdout_str();
    let se = out.stderr_str();
    eprintln!("--- {cmd} (exit {})\n{so}{se}", out.status);
    assert!(!se.contains("panicked"), "{se}");
    (out.status, so.clone(), kv(&so))
}

/// Index of the first record matching `bar` and `purpose`.
fn record(m: &HashMap<String, String>, bar: u8, purpose: &str) -> usize {
    (0..64)
        .find(|i| {
            m.get(&format!("mapping.{i}.bar")) == Some(&bar.to_string())
                && m.get(&format!("mapping.{i}.purpose")).map(String::as_str) == Some(purpose)
        })
        .unwrap_or_else(|| panic!("no BAR{bar} {purpose} record in {m:#?}"))
}

fn get<'a>(m: &'a HashMap<String, String>, i: usize, k: &str) -> &'a str {
    m.get(&format!("mapping.{i}.{k}"))
        .map(String::as_str)
        .unwrap_or_else(|| panic!("no mapping.{i}.{k}"))
}

#[test]
fn write_combining_in_qemu() {
    let cfg = GuestConfig::default()
        .nvme(NvmeController::null(64 << 20).with_cmb(16, false))
        .nvme(NvmeController::null(64 << 20))
        .file(guest_file_for_binary(CHECK));
    let mut g = Guest::boot(cfg).expect("boot the guest");
    let cmb = g.nvme_bdf(0).to_string();
    let plain = g.nvme_bdf(1).to_string();
    let out = g
        .run(&format!("bind-vfio {cmb} && bind-vfio {plain}"), T)
        .unwrap();
    assert!(out.success(), "{}", out.stderr_str());
    // The kernel side of the story, for the log.
    let out = g
        .run(
            &format!(
                "ls /sys/bus/pci/devices/{cmb}/ | grep resource; cat /sys/bus/pci/devices/{cmb}/resource | head -3"
            ),
            T,
        )
        .unwrap();
    let ls = out.stdout_str();
    eprintln!("--- sysfs of {cmb}\n{ls}");
    assert!(ls.contains("resource2_wc"), "{ls}");
    assert!(!ls.contains("resource0_wc"), "{ls}");

    // 1. CMB controller: BAR2 write-combining through resource2_wc, proven by
    //    PAT while the window is live; BAR0 registers uncached-minus.
    let (st, so, m) = check(&mut g, &cmb);
    assert_eq!(st, 0, "{so}");
    assert_eq!(m["check"], "ok");
    assert_eq!(m["pat_list"], "readable");
    assert_eq!(m["max_device_store"], "8");
    assert_eq!(m["devmem.type"], "WriteCombining");
    assert_eq!(m["devmem.len"], "0x1000000");
    assert_eq!(m["devmem.roundtrip"], "ok");
    let i = record(&m, 2, "device memory");
    assert_eq!(get(&m, i, "route"), "sysfs resource2_wc");
    assert_eq!(get(&m, i, "requested"), "WriteCombining");
    assert_eq!(get(&m, i, "obtained"), "WriteCombining");
    assert_eq!(get(&m, i, "verified"), "WriteCombining");
    assert_eq!(get(&m, i, "pat"), "write-combining");
    assert!(m[&format!("mapping.{i}")].contains("verified WriteCombining"));
    let r = record(&m, 0, "registers");
    assert_eq!(get(&m, r, "route"), "vfio mmap");
    assert_eq!(get(&m, r, "obtained"), "Uncached");
    assert_eq!(get(&m, r, "verified"), "Uncached");
    assert_eq!(get(&m, r, "pat"), "uncached-minus");
    let pat: Vec<&str> = so.lines().filter(|l| l.starts_with("pat.line=")).collect();
    assert!(
        pat.iter().any(|l| l.ends_with("write-combining")),
        "{pat:?}"
    );
    assert!(pat.iter().any(|l| l.ends_with("uncached-minus")), "{pat:?}");
    // The BAR2 address is withheld from IOVA allocation.
    let bar2: u64 =
        u64::from_str_radix(m["bar2.address"].trim_start_matches("0x"), 16).expect("bar2.address");
    assert!(
        m["dma"].contains(&format!("{bar2:#x}..=")),
        "BAR2 at {bar2:#x} should be withheld from IOVAs: {}",
        m["dma"]
    );

    // 2. Negative: BAR2 mapped through vfio first. The WC attempt is refused
    //    or downgraded by PAT, detected, and the window falls back to UC.
    let (st, so, m) = check(&mut g, &format!("{cmb} --touch-bar-first 2"));
    assert_eq!(st, 0, "{so}");
    assert_eq!(m["devmem.type"], "Uncached");
    assert_eq!(m["devmem.roundtrip"], "ok");
    let i = record(&m, 2, "device memory");
    assert_eq!(get(&m, i, "route"), "vfio mmap");
    assert_eq!(get(&m, i, "requested"), "WriteCombining");
    assert_eq!(get(&m, i, "obtained"), "Uncached");
    assert_eq!(get(&m, i, "verified"), "Uncached");
    assert_eq!(get(&m, i, "pat"), "uncached-minus");
    let note = get(&m, i, "note");
    assert!(
        note.contains("downgraded") || note.contains("refused"),
        "{note}"
    );
    assert!(
        note.contains("falling back to the uncached vfio mmap"),
        "{note}"
    );

    // 3. No CMB: the doorbells ask for WC and the record says why they are UC.
    let (st, so, m) = check(&mut g, &plain);
    assert_eq!(st, 0, "{so}");
    assert_eq!(m["devmem"], "none");
    let d = record(&m, 0, "doorbells");
    assert_eq!(get(&m, d, "requested"), "WriteCombining");
    assert_eq!(get(&m, d, "obtained"), "Uncached");
    assert_eq!(get(&m, d, "verified"), "Uncached");
    let note = get(&m, d, "note");
    assert!(
        note.contains("BAR0 is not prefetchable: no resource0_wc"),
        "{note}"
    );
    assert!(
        note.contains("vfio has no WC mmap uAPI on this kernel"),
        "{note}"
    );
    assert_eq!(get(&m, record(&m, 0, "registers"), "verified"), "Uncached");

    // Bad input: a typed error, not a panic.
    let (st, so, _) = check(&mut g, "0000:7f:1f.7");
    assert_eq!(st, 2, "{so}");
    assert!(so.contains("open=error"), "{so}");

    g.shutdown().expect("guest shutdown");
}
