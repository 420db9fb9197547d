//! A process killed with SIGKILL in the middle of a write job (issue #13):
//! the controller is left enabled with queues and commands in flight. The
//! next open resets it and brings it up cleanly, and every write that was
//! acknowledged before the kill is on the medium (read back through our
//! driver after the reopen and through the kernel's nvme driver).

mod common;
use common::*;

use fixtures::{guest_file_for_binary, Guest, GuestConfig, NvmeController};

#[test]
fn kill9_mid_write_then_reopen_in_qemu() {
    let dir = scratch_dir("kill9");
    let cfg = GuestConfig::default()
        .nvme(NvmeController::raw_file(dir.join("a.raw"), 16 << 20).with_serial("k9"))
        .file(guest_file_for_binary(CHECK));
    let mut g = Guest::boot(cfg).expect("boot");
    let a = g.nvme_bdf(0).to_string();
    run_ok(&mut g, &format!("bind-vfio {a}"));
    // Blocks of 512 bytes: the log has one line per acknowledged write.
    run_ok(
        &mut g,
        &format!(
            "nvme-guest-check write-until-killed {a} --blocks 2048 --log /tmp/acked.txt \
             > /tmp/w.out 2>&1 & p=$!; sleep 4; kill -9 $p; wait $p; test -s /tmp/acked.txt"
        ),
    );
    let acked = run_ok(&mut g, "wc -l < /tmp/acked.txt");
    let n: u64 = acked.trim().parse().unwrap();
    assert!(n > 100, "only {n} writes acknowledged before the kill");
    // Only the last acknowledged value of each block counts; a write of the
    // next value that was in flight at the kill may have landed too.
    run_ok(
        &mut g,
        "awk '{v[$1]=$2} END {for (l in v) print l, v[l]}' /tmp/acked.txt > /tmp/last.txt",
    );
    // Reopen through our driver: bring-up must succeed on the controller
    // the killed process left enabled, and I/O works.
    run_ok(
        &mut g,
        &format!("nvme-guest-check write-pattern {a} --lba 8192 --blocks 16 --seed 3"),
    );
    run_ok(
        &mut g,
        &format!("nvme-guest-check verify-pattern {a} --lba 8192 --blocks 16 --seed 3"),
    );
    // The kernel reads every acknowledged write back (the check above
    // wrote past the blocks the killed job used).
    run_ok(&mut g, &format!("bind-nvme {a}"));
    let disk = kernel_disk(&mut g, &a);
    let so = run_ok(
        &mut g,
        &format!("nvme-guest-check check-acked --or-next --file /tmp/last.txt --dev {disk}"),
    );
    assert!(so.contains("check_acked=ok"), "{so}");
    eprintln!("{n} writes acknowledged before the kill; {so}");
    g.shutdown().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
