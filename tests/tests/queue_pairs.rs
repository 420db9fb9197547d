//! Per-core queue pairs and the NVM command set, in the QEMU guest: threads
//! with their own queue pairs doing concurrent verified I/O, MDTS splitting
//! (mdts=1), 4096-byte LBAs, two namespaces, a controller that grants one
//! I/O queue pair, shadow doorbells on and off, and every command type,
//! cross-checked through the kernel's nvme driver where data is involved.

mod common;
use common::*;

use fixtures::{guest_file_for_binary, Backend, Guest, GuestConfig, Namespace, NvmeController};

#[test]
fn queue_pairs_and_commands_in_qemu() {
    let dir = scratch_dir("qp");
    let cfg = GuestConfig::default()
        // mdts=1: 8 KiB per command, so most requests split.
        .nvme(
            NvmeController::raw_file(dir.join("a.raw"), 64 << 20)
                .with_mdts(1)
                .with_serial("qp-split"),
        )
        // 4096-byte LBAs plus a second, 512-byte namespace.
        .nvme(
            NvmeController::raw_file(dir.join("b.raw"), 32 << 20)
                .with_block_size(4096)
                .with_namespace(Namespace::new(Backend::raw_file(
                    dir.join("b2.raw"),
                    16 << 20,
                )))
                .with_serial("qp-4k"),
        )
        // One I/O queue pair granted.
        .nvme(
            NvmeController::raw_file(dir.join("c.raw"), 16 << 20)
                .with_max_ioqpairs(1)
                .with_serial("qp-one"),
        )
        .file(guest_file_for_binary(CHECK));
    let mut g = Guest::boot(cfg).expect("boot");
    let (a, b, c) = (
        g.nvme_bdf(0).to_string(),
        g.nvme_bdf(1).to_string(),
        g.nvme_bdf(2).to_string(),
    );
    run_ok(
        &mut g,
        &format!("bind-vfio {a} && bind-vfio {b} && bind-vfio {c}"),
    );

    // Threads, each with its own queue pair, several commands in flight,
    // requests up to 3 x MDTS (split), with and without shadow doorbells.
    for shadow in [true, false] {
        let flag = if shadow { "" } else { "--no-shadow" };
        let so = run_ok(
            &mut g,
            &format!("nvme-guest-check {flag} threads {a} --threads 4 --ops 120 --depth 8"),
        );
        let m = kv(&so);
        assert_eq!(m["queue_pairs"], "4", "{so}");
        assert_eq!(m["shadow_doorbells"], shadow.to_string(), "{so}");
        for k in 0..4 {
            assert!(m[&format!("thread{k}")].starts_with("ok"), "{so}");
        }
        let db = so
            .lines()
            .find(|l| l.starts_with("doorbells "))
            .expect("doorbell line");
        let (updates, mmio) = (word(db, "sq_updates"), word(db, "sq_mmio"));
        if shadow {
            assert!(mmio <= updates, "{db}");
        } else {
            assert_eq!(
                mmio, updates,
                "without shadow doorbells every update is an MMIO write: {db}"
            );
        }
        let t = so.lines().find(|l| l.starts_with("threads=")).unwrap();
        // 4 threads x 120 write+read pairs; splitting makes it more commands.
        assert!(
            word(t, "commands") > 4 * 240,
            "mdts=1 must split requests: {t}"
        );
        eprintln!("shadow={shadow}: {db} | {t}");
    }

    // 4096-byte LBAs and the second namespace, concurrently.
    for nsid in [1, 2] {
        let so = run_ok(
            &mut g,
            &format!("nvme-guest-check threads {b} --threads 2 --ops 80 --nsid {nsid}"),
        );
        assert!(so.contains("threads=ok n=2"), "{so}");
    }

    // Asking for more queue pairs than the controller grants.
    let out = g
        .run(
            &format!("nvme-guest-check --queues 4 threads {c} --threads 2 --ops 10"),
            T,
        )
        .unwrap();
    let err = out.stderr_str();
    assert!(!out.success());
    assert!(
        err.contains("no I/O queue pair left") && err.contains("granted 1"),
        "{err}"
    );
    let so = run_ok(
        &mut g,
        &format!("nvme-guest-check --queues 4 threads {c} --threads 1 --ops 40"),
    );
    assert!(so.contains("threads=ok n=1"), "{so}");

    // Every command type, on both LBA sizes.
    for (bdf, nsid) in [(&a, 1), (&b, 1), (&b, 2)] {
        let so = run_ok(
            &mut g,
            &format!("nvme-guest-check commands {bdf} --nsid {nsid} --lba 2048"),
        );
        let m = kv(&so);
        assert!(m["write_zeroes"].starts_with("ok"), "{so}");
        assert!(m["deallocate"].starts_with("ok"), "{so}");
        assert_eq!(m["compare_match"], "ok", "{so}");
        assert!(m["compare_mismatch"].contains("Compare Failure"), "{so}");
        assert!(m["fua_write"].starts_with("ok"), "{so}");
        let batch = so.lines().find(|l| l.starts_with("batching=")).unwrap();
        assert_eq!(word(batch, "updates_before_poll"), 0, "{batch}");
        assert_eq!(
            word(batch, "updates_after_poll"),
            1,
            "8 batched submissions, one doorbell: {batch}"
        );
    }

    // Vectored I/O: with SGLs (QEMU offers them) any windows work; with
    // PRP lists only, odd windows are refused with a typed error and
    // page-aligned ones work.
    for bdf in [&a, &b] {
        let m = kv(&run_ok(&mut g, &format!("nvme-guest-check vectored {bdf}")));
        assert_eq!(m["sgls"], "true", "{m:?}");
        assert!(m["vectored.odd"].starts_with("ok segments=4"), "{m:?}");
        assert!(m["vectored.aligned"].starts_with("ok segments=3"), "{m:?}");
        let m = kv(&run_ok(
            &mut g,
            &format!("nvme-guest-check --no-sgl vectored {bdf}"),
        ));
        assert_eq!(m["sgls"], "false", "{m:?}");
        assert!(
            m["vectored.odd"].starts_with("unsupported") && m["vectored.odd"].contains("SGL"),
            "{m:?}"
        );
        assert!(m["vectored.aligned"].starts_with("ok segments=3"), "{m:?}");
    }

    // The kernel reads back what those commands left on controller a:
    // zeros after Write Zeroes (LBAs 2048..2064), the FUA pattern at 2096.
    run_ok(&mut g, &format!("bind-nvme {a}"));
    let so = run_ok(
        &mut g,
        &format!(
            "d=/dev/$(ls /sys/bus/pci/devices/{a}/nvme/*/ | grep -E '^nvme[0-9]+n1$'); \
             dd if=$d of=/tmp/z.bin bs=512 skip=2048 count=16 iflag=direct 2>/dev/null && \
             dd if=$d of=/tmp/f.bin bs=512 skip=2096 count=16 iflag=direct 2>/dev/null && \
             od -An -tx1 -v /tmp/z.bin | tr -d ' \\n' | tr -d 0 | wc -c && \
             nvme-guest-check check-file --file /tmp/f.bin --lba 2096 --block-size 512 --seed 14"
        ),
    );
    let mut lines = so.lines();
    assert_eq!(
        lines.next().map(str::trim),
        Some("0"),
        "non-zero bytes after Write Zeroes, via the kernel: {so}"
    );
    assert!(so.contains("check_file=ok blocks=16"), "{so}");
    g.shutdown().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
