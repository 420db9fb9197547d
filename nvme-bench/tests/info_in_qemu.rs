//! `nvme-bench info` and `smoke` against QEMU's emulated NVMe in the guest.

use std::time::Duration;

use fixtures::{guest_file_for_binary, Guest, GuestConfig, NvmeController};

const BENCH: &str = env!("CARGO_BIN_EXE_nvme-bench");
const T: Duration = Duration::from_secs(300);

#[test]
fn info_and_smoke_in_qemu() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("bench-info-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let img = dir.join("disk.raw");
    let cfg = GuestConfig::default()
        .nvme(
            NvmeController::raw_file(&img, 128 << 20)
                .with_serial("bench-info")
                .with_mdts(5)
                .with_max_ioqpairs(3)
                .with_cmb(16, false),
        )
        .file(guest_file_for_binary(BENCH));
    let mut g = Guest::boot(cfg).expect("boot");
    let bdf = g.nvme_bdf(0).to_string();

    // Not bound to vfio-pci yet: a clear error, not a panic.
    let out = g.run(&format!("nvme-bench info {bdf}"), T).unwrap();
    let err = out.stderr_str();
    assert_ne!(out.status, 0);
    assert!(
        err.contains("vfio-pci") && err.contains("driver_override"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");

    let out = g
        .run(&format!("bind-vfio {bdf} && nvme-bench info {bdf}"), T)
        .unwrap();
    let info = out.stdout_str();
    assert!(out.success(), "{info}{}", out.stderr_str());
    for want in [
        format!("Controller {bdf}"),
        "model            : QEMU NVMe Ctrl".to_string(),
        "serial           : bench-info".to_string(),
        "MDTS             : 5 (128 KiB per command)".to_string(),
        "I/O queue pairs  : 3 granted".to_string(),
        "ns 1           262144 blocks x   512 B".to_string(),
    ] {
        assert!(info.contains(&want), "missing {want:?} in:\n{info}");
    }
    // The CMB: found, holding the submission queues, mapped write-combining
    // (verified from the kernel's PAT table), and shadow doorbells on.
    for want in [
        "CMB              : 16 MiB in BAR2",
        "SQs in the CMB, mapped WriteCombining",
        "shadow doorbells : on",
    ] {
        assert!(info.contains(want), "missing {want:?} in:\n{info}");
    }
    let bar2 = info
        .lines()
        .find(|l| l.trim_start().starts_with("BAR2"))
        .unwrap_or_else(|| panic!("no BAR2 mapping line:\n{info}"));
    assert!(
        bar2.contains("obtained WriteCombining") && bar2.contains("verified WriteCombining"),
        "{bar2}"
    );
    // Every BAR0 range is reported with the type it asked for and got.
    let bar0: Vec<&str> = info
        .lines()
        .filter(|l| l.trim_start().starts_with("BAR0"))
        .collect();
    assert!(!bar0.is_empty(), "{info}");
    // The register page is uncached, always; the doorbell range asks for
    // write-combining and, on this kernel, says why it got uncached.
    for l in &bar0 {
        if l.contains("doorbells") {
            assert!(
                l.contains("requested WriteCombining, obtained Uncached"),
                "{l}"
            );
            assert!(l.contains("not prefetchable"), "{l}");
        } else {
            assert!(l.contains("requested Uncached, obtained Uncached"), "{l}");
        }
    }
    let out = g
        .run(&format!("nvme-bench smoke {bdf} --bytes 6291456"), T)
        .unwrap();
    let so = out.stdout_str();
    assert!(out.success(), "{so}{}", out.stderr_str());
    assert!(so.contains("smoke: ok: wrote and verified 6.0 MiB"), "{so}");
    g.shutdown().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
