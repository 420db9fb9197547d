//! Media errors on chosen sectors (issue #13): QEMU's blkdebug fails reads
//! of two sectors of the namespace's image with EIO. Those reads, and only
//! those, fail with the named status "Unrecovered Read Error" and hand their
//! buffer back; every other block of the same run reads back correctly.

mod common;
use common::*;

use fixtures::{guest_file_for_binary, Backend, Guest, GuestConfig, NvmeController};

#[test]
fn media_errors_are_named_and_confined_in_qemu() {
    let dir = scratch_dir("media");
    let bad = [37u64, 200];
    let cfg = GuestConfig::default()
        .nvme(NvmeController::new(Backend::blkdebug(
            dir.join("m.raw"),
            16 << 20,
            &bad,
            &[],
        )))
        .file(guest_file_for_binary(CHECK));
    let mut g = Guest::boot(cfg).expect("boot");
    let a = g.nvme_bdf(0).to_string();
    run_ok(&mut g, &format!("bind-vfio {a}"));
    let so = run_ok(
        &mut g,
        &format!("nvme-guest-check media-errors {a} --lba 0 --blocks 256 --bad 37,200"),
    );
    eprintln!("{so}");
    let line = so
        .lines()
        .find(|l| l.starts_with("media_errors=ok"))
        .unwrap_or_else(|| panic!("{so}"));
    assert_eq!(word(line, "failed"), 2, "{line}");
    assert_eq!(word(line, "verified"), 254, "{line}");
    assert_eq!(
        so.lines()
            .filter(|l| l.starts_with("media_error lba="))
            .count(),
        2
    );
    g.shutdown().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
