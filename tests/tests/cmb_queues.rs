//! Submission queues in the Controller Memory Buffer, end to end in the
//! QEMU guest: the NVMe 1.4 CMB (CMBMSC/CBA) and the legacy one, verified
//! I/O with SQs in the CMB cross-checked through the kernel's nvme driver,
//! the option that keeps queues in host memory, and the IOPS of both
//! (QEMU emulates WC, so this is no statement about WC speed on hardware).

mod common;
use common::*;

use fixtures::{guest_file_for_binary, Guest, GuestConfig, NvmeController};

#[test]
fn submission_queues_in_the_cmb() {
    let dir = scratch_dir("cmb");
    let cfg = GuestConfig::default()
        .nvme(
            NvmeController::raw_file(dir.join("v14.raw"), 64 << 20)
                .with_cmb(16, false)
                .with_serial("cmb-v14"),
        )
        .nvme(
            NvmeController::raw_file(dir.join("legacy.raw"), 64 << 20)
                .with_cmb(16, true)
                .with_serial("cmb-legacy"),
        )
        .file(guest_file_for_binary(CHECK));
    let mut g = Guest::boot(cfg).expect("boot");
    let (a, b) = (g.nvme_bdf(0).to_string(), g.nvme_bdf(1).to_string());
    run_ok(&mut g, &format!("bind-vfio {a} && bind-vfio {b}"));

    // QEMU sets CAP.CMBS in legacy mode too, so both are driven with the
    // 1.4 protocol (CBA = the BAR's bus address), which is correct under
    // QEMU's legacy matching rule (the BAR address) as well.
    for (bdf, mode, seed) in [(&a, "1.4", 3u64), (&b, "legacy-cmb=on", 4)] {
        let id = kv(&run_ok(&mut g, &format!("nvme-guest-check identify {bdf}")));
        assert_eq!(id["cmb"], "present", "{id:?}");
        assert_eq!(id["cmb.scheme"], "V14", "{mode}: {id:?}");
        assert_eq!(id["cmb.size"], (16u64 << 20).to_string(), "{id:?}");
        assert_eq!(id["cmb.sqs"], "true");
        assert_eq!(id["cmb.cqs"], "false", "QEMU allows only SQs in its CMB");
        assert_eq!(id["cmb.sq_in_cmb"], "true", "{id:?}");
        assert_eq!(id["cmb.memory_type"], "Some(WriteCombining)", "{id:?}");
        assert_eq!(id["qp.sq_in_cmb"], "true", "{id:?}");

        // Verified random round trips and concurrent threads with SQs in the CMB.
        let rt = kv(&run_ok(
            &mut g,
            &format!("nvme-guest-check roundtrip {bdf} --seed {seed} --ops 32"),
        ));
        assert!(rt["roundtrip"].starts_with("ok"), "{rt:?}");
        assert_eq!(rt["sq_in_cmb"], "true", "{rt:?}");
        let so = run_ok(
            &mut g,
            &format!("nvme-guest-check threads {bdf} --threads 3 --ops 60"),
        );
        assert!(so.contains("threads=ok n=3"), "{so}");

        // The option keeps queues in host memory.
        let id = kv(&run_ok(
            &mut g,
            &format!("nvme-guest-check --no-cmb identify {bdf}"),
        ));
        assert_eq!(id["cmb.sq_in_cmb"], "false", "{id:?}");
        assert_eq!(id["qp.sq_in_cmb"], "false", "{id:?}");

        // Verified QD32 random reads, CMB queues vs host-memory queues.
        let cmb = run_ok(
            &mut g,
            &format!("nvme-guest-check iops {bdf} --qd 32 --seconds 2"),
        );
        let host = run_ok(
            &mut g,
            &format!("nvme-guest-check --no-cmb iops {bdf} --qd 32 --seconds 2"),
        );
        assert!(cmb.contains("verified=yes sq_in_cmb=true"), "{cmb}");
        assert!(host.contains("verified=yes sq_in_cmb=false"), "{host}");
        // The CQ is twice the SQ (66 and 33 entries): consumed entries are
        // acknowledged once 33 have gathered, so one head doorbell covers
        // 33..=64 completions (polls reap up to 32), not one per poll.
        for out in [&cmb, &host] {
            let reads = word(out, "reads");
            let cq_updates = word(out, "cq_doorbell_updates");
            assert!(reads > 100, "{out}");
            assert!(
                cq_updates * 30 <= reads && cq_updates * 70 >= reads,
                "CQ head doorbells not deferred as expected: {out}"
            );
        }
        eprintln!("{mode} CMB: {}", cmb.trim());
        eprintln!("{mode} host: {}", host.trim());
    }

    // Data written with SQs in the CMB, read back by the kernel, both modes.
    for bdf in [&a, &b] {
        run_ok(
            &mut g,
            &format!("nvme-guest-check write-pattern {bdf} --lba 4000 --blocks 256 --seed 66"),
        );
        run_ok(&mut g, &format!("bind-nvme {bdf}"));
        kernel_check_pattern(&mut g, bdf, 4000, 256, 66);
    }
    g.shutdown().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
