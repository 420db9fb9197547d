//! First light, end to end: our driver takes QEMU's emulated NVMe
//! controllers through vfio-pci in a q35 + intel-iommu guest, and the Linux
//! kernel's own nvme driver (and the host's view of the raw backing file)
//! cross-checks every byte.
//!
//! One boot holds all the checks, to keep the suite fast under TCG.

mod common;
use common::*;
use std::time::Instant;

use fixtures::{guest_file_for_binary, Guest, GuestConfig, Namespace, NvmeController};
use nvme_tests::check_pattern;

#[test]
fn first_light_in_qemu() {
    let t0 = Instant::now();
    let dir = scratch_dir("first-light");
    let img0 = dir.join("ctrl0.raw");
    let img1 = dir.join("ctrl1.raw");
    let img2 = dir.join("ctrl1-ns2.raw");
    const SIZE0: u64 = 64 << 20;
    const SIZE1: u64 = 32 << 20;
    const SIZE2: u64 = 48 << 20;
    let cfg = GuestConfig::default()
        // 512-byte LBAs, default MDTS (512 KiB): PRP lists up to 128 entries.
        .nvme(NvmeController::raw_file(&img0, SIZE0).with_serial("fl-first"))
        // 4096-byte LBAs, MDTS 2 (16 KiB), and a second 512-byte namespace.
        .nvme(
            NvmeController::raw_file(&img1, SIZE1)
                .with_block_size(4096)
                .with_serial("fl-second")
                .with_mdts(2)
                .with_namespace(Namespace::new(fixtures::Backend::raw_file(&img2, SIZE2))),
        )
        .file(guest_file_for_binary(CHECK))
        // 2 MiB hugepages for DMA buffers of 2 MiB and more.
        .cmdline("hugepages=16");
    let mut g = Guest::boot(cfg).expect("boot the guest");
    eprintln!("booted in {:?}", t0.elapsed());
    let b0 = g.nvme_bdf(0).to_string();
    let b1 = g.nvme_bdf(1).to_string();

    // Wrong PCI address: a typed error that says so, no panic.
    let out = g.run("nvme-guest-check open 0000:7f:1f.7", T).unwrap();
    let so = out.stdout_str();
    assert_eq!(out.status, 2, "{so}{}", out.stderr_str());
    assert!(so.contains("open=error"), "{so}");
    assert!(
        so.contains("0000:7f:1f.7"),
        "error should name the address: {so}"
    );
    assert!(
        !out.stderr_str().contains("panicked"),
        "{}",
        out.stderr_str()
    );

    // A device still bound to the kernel's nvme driver: refused, with the fix.
    run_ok(&mut g, &format!("bind-nvme {b0}"));
    let out = g.run(&format!("nvme-guest-check open {b0}"), T).unwrap();
    let so = out.stdout_str();
    assert_eq!(out.status, 2, "{so}{}", out.stderr_str());
    assert!(so.contains("nvme"), "{so}");
    assert!(
        so.contains("vfio-pci"),
        "error should say how to bind to vfio-pci: {so}"
    );
    assert!(
        so.contains("driver_override"),
        "error should give the bind commands: {so}"
    );

    // Kernel writes, our driver reads. The pattern goes to the device through
    // the kernel's block layer, bypassing the page cache.
    let disk = kernel_disk(&mut g, &b0);
    run_ok(
        &mut g,
        &format!(
            "nvme-guest-check gen-pattern --out /tmp/k.bin --lba 5000 --blocks 200 --block-size 512 --seed 43 && \
             dd if=/tmp/k.bin of={disk} bs=512 seek=5000 oflag=direct conv=fsync 2>&1"
        ),
    );
    run_ok(&mut g, &format!("bind-vfio {b0} && bind-vfio {b1}"));
    let so = run_ok(
        &mut g,
        &format!("nvme-guest-check verify-pattern {b0} --lba 5000 --blocks 200 --seed 43"),
    );
    assert!(so.contains("verify_pattern=ok"), "{so}");

    // Identify matches what QEMU was told.
    for (bdf, serial, ns1_size, ns1_bs, mdts) in [
        (&b0, "fl-first", SIZE0, 512u64, None),
        (&b1, "fl-second", SIZE1, 4096, Some(2u8)),
    ] {
        let id = kv(&run_ok(&mut g, &format!("nvme-guest-check identify {bdf}")));
        assert_eq!(id["vid"], "0x1b36");
        assert_eq!(id["serial"], serial);
        assert_eq!(id["model"], "QEMU NVMe Ctrl");
        assert_eq!(id["ns1.block_size"], ns1_bs.to_string());
        assert_eq!(id["ns1.blocks"], (ns1_size / ns1_bs).to_string());
        assert_eq!(id["ns1.bytes"], ns1_size.to_string());
        if let Some(m) = mdts {
            assert_eq!(id["mdts"], m.to_string());
            assert_eq!(id["max_transfer"], (4096usize << m).to_string());
        }
        let granted: u32 = id["io_queue_pairs"].parse().unwrap();
        assert!(granted >= 1, "{id:?}");
        assert!(id["version"].starts_with("1."), "{id:?}");
    }
    let id1 = kv(&run_ok(&mut g, &format!("nvme-guest-check identify {b1}")));
    assert_eq!(id1["namespaces"], "2");
    assert_eq!(id1["ns2.block_size"], "512");
    assert_eq!(id1["ns2.bytes"], SIZE2.to_string());

    // Random verified round trips: sizes from one block to MDTS, buffers
    // starting mid-page (PRP offsets and lists), all namespaces.
    for (bdf, seed) in [(&b0, 1u64), (&b1, 2)] {
        let kvs = kv(&run_ok(
            &mut g,
            &format!("nvme-guest-check roundtrip {bdf} --seed {seed} --ops 48"),
        ));
        assert!(kvs.contains_key("roundtrip"), "{kvs:?}");
        assert!(kvs["roundtrip"].starts_with("ok"), "{kvs:?}");
        assert_eq!(
            kvs["hugepage_regions"], "1",
            "the 4 MiB buffer should sit on hugepages: {kvs:?}"
        );
    }
    let so = run_ok(
        &mut g,
        &format!("nvme-guest-check roundtrip {b0} --seed 7 --ops 16"),
    );
    let prp: u32 = so
        .split_whitespace()
        .find_map(|w| w.strip_prefix("prp_list="))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(
        prp > 0,
        "round trips should include PRP-list transfers: {so}"
    );

    // Bad input gives typed errors, and the controller keeps working.
    let bad = kv(&run_ok(&mut g, &format!("nvme-guest-check bad-input {b0}")));
    assert!(
        bad["lba_past_end"].contains("past the end of namespace 1"),
        "{bad:?}"
    );
    assert!(
        bad["range_crossing_end"].contains("past the end"),
        "{bad:?}"
    );
    assert!(
        bad["partial_block"].contains("512-byte logical block size"),
        "{bad:?}"
    );
    assert!(bad["over_queue_capacity"].contains("exceeds"), "{bad:?}");
    // 3 x MDTS + 1 block, written and read back: 4 commands each way.
    assert_eq!(bad["split_commands"], "8", "{bad:?}");
    assert!(
        bad["misaligned_buffer"].contains("4-byte aligned"),
        "{bad:?}"
    );
    assert!(bad["no_such_namespace"].contains("4242"), "{bad:?}");
    assert!(bad["queue_pairs_exhausted"].contains("granted"), "{bad:?}");
    assert_eq!(bad["after_errors"], "ok");

    // Teardown leaves the controller reusable.
    let so = run_ok(&mut g, &format!("nvme-guest-check reopen {b1} --times 3"));
    assert!(so.contains("reopen.2=ok"), "{so}");

    // Our driver writes; the kernel's nvme driver reads back byte-identical.
    run_ok(
        &mut g,
        &format!("nvme-guest-check write-pattern {b0} --lba 1000 --blocks 300 --seed 42"),
    );
    run_ok(&mut g, &format!("bind-nvme {b0}"));
    kernel_check_pattern(&mut g, &b0, 1000, 300, 42);
    // And the same bytes are in the host's raw image behind the emulated device.
    g.shutdown().expect("guest shutdown");
    let raw = std::fs::read(&img0).unwrap();
    check_pattern(&raw[1000 * 512..1300 * 512], 42, 1000, 512)
        .expect("host image holds the pattern");
    check_pattern(&raw[5000 * 512..5200 * 512], 43, 5000, 512)
        .expect("kernel-written pattern on host image");
    eprintln!("first light: {:?} in all", t0.elapsed());
    let _ = std::fs::remove_dir_all(&dir);
}
