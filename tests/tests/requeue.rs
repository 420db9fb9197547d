//! Queue pairs dropped and created again in the QEMU guest: the queue id is
//! reused, and the new queue must work whatever the old one left in the
//! shadow doorbell and EventIdx slots of that id (issue: a pair created
//! after another was dropped stalled forever with shadow doorbells on).
//! Rounds of create, verified synchronous and async I/O (whole and split
//! at MDTS), drop; queue sizes differ between rounds; shadow doorbells on
//! and off; SQs in host memory and in the CMB; and rounds run while another
//! pair does verified I/O throughout. The kernel's nvme driver reads back
//! what the last round wrote.

mod common;
use common::*;

use fixtures::{guest_file_for_binary, Guest, GuestConfig, NvmeController};

/// Rounds per run; sizes cycle through 16, 4, 64, 8, 32, 6 entries.
const ROUNDS: u32 = 6;

fn rounds(so: &str) -> Vec<&str> {
    so.lines()
        .filter(|l| l.starts_with("requeue.round"))
        .collect()
}

fn field<'a>(line: &'a str, key: &str) -> &'a str {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
}

#[test]
fn recreated_queue_pairs_work_in_qemu() {
    let dir = scratch_dir("requeue");
    let cfg = GuestConfig::default()
        // mdts=1: 8 KiB per command, so the larger requests split.
        .nvme(
            NvmeController::raw_file(dir.join("a.raw"), 64 << 20)
                .with_mdts(1)
                .with_serial("rq-host"),
        )
        // SQs in the controller memory buffer.
        .nvme(
            NvmeController::raw_file(dir.join("b.raw"), 64 << 20)
                .with_mdts(1)
                .with_cmb(16, false)
                .with_serial("rq-cmb"),
        )
        .file(guest_file_for_binary(CHECK));
    let mut g = Guest::boot(cfg).expect("boot");
    let (a, b) = (g.nvme_bdf(0).to_string(), g.nvme_bdf(1).to_string());
    run_ok(&mut g, &format!("bind-vfio {a} && bind-vfio {b}"));

    let cases = [
        (&a, "", true, false, false),
        (&a, "--no-shadow", false, false, false),
        (&a, "", true, true, false),
        (&a, "--no-shadow", false, true, false),
        (&b, "", true, false, true),
        (&b, "", true, true, true),
    ];
    for (bdf, flag, shadow, busy, cmb) in cases {
        let busy_flag = if busy { "--busy" } else { "" };
        let cmd = format!(
            "nvme-guest-check {flag} requeue {bdf} --rounds {ROUNDS} {busy_flag} --io-timeout 20"
        );
        let so = run_ok(&mut g, &cmd);
        let m = kv(&so);
        assert_eq!(m["shadow_doorbells"], shadow.to_string(), "{cmd}: {so}");
        assert_eq!(m["requeue"], format!("ok rounds={ROUNDS}"), "{cmd}: {so}");
        let rs = rounds(&so);
        assert_eq!(rs.len(), ROUNDS as usize, "{cmd}: {so}");
        // Without the busy pair every round reuses queue id 1 (the first
        // pair had it too); with it, the busy pair holds 1 and every round
        // reuses 2.
        let want_qid = if busy { "2" } else { "1" };
        let mut sizes = Vec::new();
        for r in &rs {
            assert_eq!(field(r, "qid"), want_qid, "{cmd}: {r}");
            assert_eq!(field(r, "sq_in_cmb"), cmb.to_string(), "{cmd}: {r}");
            // The split requests really split (MDTS = 8 KiB).
            assert!(
                field(r, "split_bytes").parse::<u64>().unwrap() > 8192,
                "{r}"
            );
            let (updates, mmio): (u64, u64) = (
                field(r, "sq_updates").parse().unwrap(),
                field(r, "sq_mmio").parse().unwrap(),
            );
            if !shadow {
                assert_eq!(updates, mmio, "{cmd}: {r}");
            }
            sizes.push(field(r, "entries").to_string());
        }
        sizes.dedup();
        assert!(sizes.len() > 1, "queue sizes differ between rounds");
        if busy {
            let ops: u64 = m["requeue.busy"]
                .strip_prefix("ok ops=")
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{cmd}: {so}"));
            assert!(ops > 0, "{cmd}: the busy pair did I/O: {so}");
        }
        eprintln!("{cmd}:\n{so}");
    }

    // The kernel reads back the last round's first block on controller a
    // (round 5: LBA 1024 + 5 * 2048, seed 7000 + 5 * 10).
    run_ok(&mut g, &format!("bind-nvme {a}"));
    kernel_check_pattern(&mut g, &a, 1024 + 5 * 2048, 1, 7000 + 5 * 10);
    g.shutdown().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
