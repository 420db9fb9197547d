//! Issue #13 in the guest: `nvme-bench bind` refuses a function that is not
//! an NVMe controller and one whose disks are in use (a virtio disk with a
//! mounted filesystem, a SATA disk on AHCI), still binds the NVMe
//! controller, and `nvme-bench info` refuses a non-NVMe function bound to
//! vfio-pci before VFIO opens or resets it (checked with the kernel's
//! function tracer, with the NVMe open as the positive control).

use std::time::Duration;

use fixtures::{guest_file_for_binary, Backend, Disk, Guest, GuestConfig, NvmeController};

const BENCH: &str = env!("CARGO_BIN_EXE_nvme-bench");
const T: Duration = Duration::from_secs(300);

/// Kernel functions that run when vfio-pci opens (and resets) a device.
const TRACED: &[&str] = &[
    "vfio_pci_core_enable",
    "pci_try_reset_function",
    "__pci_reset_function_locked",
    "pci_reset_bus_function",
];

fn driver_of(g: &mut Guest, bdf: &str) -> String {
    let out = g
        .run(
            &format!("basename \"$(readlink /sys/bus/pci/devices/{bdf}/driver)\" 2>/dev/null || echo none"),
            T,
        )
        .unwrap();
    let d = out.stdout_str().trim().to_string();
    if d.is_empty() || d == "." {
        "none".into()
    } else {
        d
    }
}

/// The vfio/reset functions the tracer saw nvme-bench call since the last
/// call (the trace is cleared each time).
fn traced_calls(g: &mut Guest) -> Vec<String> {
    let out = g
        .run_ok(
            "cd /sys/kernel/debug/tracing && cat trace | grep -v '^#' | grep nvme-bench; echo > trace",
            T,
        )
        .unwrap();
    out.stdout_str()
        .lines()
        .filter(|l| TRACED.iter().any(|f| l.contains(f)))
        .map(str::to_string)
        .collect()
}

#[test]
fn bind_refuses_non_nvme_and_in_use_devices() {
    let t0 = std::time::Instant::now();
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("bind-safety-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let vimg = dir.join("virtio.raw");
    let _ = std::fs::remove_file(&vimg);
    // ext4 made on the host when mkfs.ext4 is there, else ext2 by busybox in the guest.
    let host_ext4 = std::process::Command::new("mkfs.ext4")
        .args(["-q", "-F", "-E", "nodiscard"])
        .arg(&vimg)
        .arg("32M")
        .status()
        .is_ok_and(|s| s.success());
    let cfg = GuestConfig::default()
        .nvme(NvmeController::null(64 << 20).with_serial("bind-safety"))
        .disk(Disk::virtio_blk(Backend::raw_file(&vimg, 32 << 20)))
        .disk(Disk::ahci_sata(Backend::null(64 << 20)))
        .file(guest_file_for_binary(BENCH));
    let mut g = Guest::boot(cfg).expect("boot");
    let nvme = g.nvme_bdf(0).to_string();
    let virtio = g.disk_bdf(0).to_string();
    let ahci = g.disk_bdf(1).to_string();
    eprintln!("nvme {nvme}, virtio {virtio}, ahci {ahci}");

    // The virtio disk, mounted, with a file on it.
    let vd = g
        .run_ok(
            &format!("ls /sys/bus/pci/devices/{virtio}/virtio*/block/"),
            T,
        )
        .unwrap()
        .stdout_str()
        .trim()
        .to_string();
    assert!(vd.starts_with("vd"), "{vd}");
    if !host_ext4 {
        g.run_ok(&format!("mke2fs -q /dev/{vd}"), T).unwrap();
    }
    g.run_ok(
        &format!(
            "mkdir -p /mnt/v && mount /dev/{vd} /mnt/v && echo before > /mnt/v/before && sync"
        ),
        T,
    )
    .unwrap();
    assert_eq!(driver_of(&mut g, &virtio), "virtio-pci");
    let ahci_driver = driver_of(&mut g, &ahci);

    // The function tracer watches vfio-pci's open/reset path.
    let setup = format!(
        "cd /sys/kernel/debug/tracing && echo 0 > tracing_on && echo nop > current_tracer && \
         : > set_ftrace_filter && for f in {}; do echo $f >> set_ftrace_filter 2>/dev/null; done; \
         cat set_ftrace_filter; echo function > current_tracer && echo > trace && echo 1 > tracing_on",
        TRACED.join(" ")
    );
    let out = g.run_ok(&setup, T).unwrap();
    assert!(
        out.stdout_str().contains("vfio_pci_core_enable"),
        "function tracer filter: {}",
        out.stdout_str()
    );

    // bind on the virtio disk: refused for its class; with --force-class,
    // refused for the mounted filesystem. Nothing moved.
    let out = g.run(&format!("nvme-bench bind {virtio}"), T).unwrap();
    let err = out.stderr_str();
    assert_ne!(
        out.status,
        0,
        "bind {virtio} succeeded: {}{err}",
        out.stdout_str()
    );
    assert!(
        err.contains("PCI class 0x010000") && err.contains("not an NVMe controller"),
        "{err}"
    );
    assert!(err.contains("--force-class"), "{err}");
    let out = g
        .run(&format!("nvme-bench bind --force-class {virtio}"), T)
        .unwrap();
    let err = out.stderr_str();
    assert_ne!(
        out.status, 0,
        "bind --force-class {virtio} succeeded: {err}"
    );
    assert!(
        err.contains(&format!("/dev/{vd}: mounted on /mnt/v")),
        "{err}"
    );
    assert_eq!(driver_of(&mut g, &virtio), "virtio-pci");
    let out = g
        .run_ok(
            "grep ' /mnt/v ' /proc/self/mountinfo && cat /mnt/v/before && \
             echo after > /mnt/v/after && sync && echo 3 > /proc/sys/vm/drop_caches && cat /mnt/v/after",
            T,
        )
        .unwrap();
    let s = out.stdout_str();
    assert!(s.contains("before\nafter"), "{s}");
    let dmesg = g.run_ok("dmesg", T).unwrap().stdout_str();
    assert!(
        !dmesg.contains("EXT4-fs error") && !dmesg.contains("Aborting journal"),
        "{dmesg}"
    );

    // bind on the AHCI controller: refused for its class; its driver (none:
    // the guest kernel has no AHCI driver) is unchanged and it is not vfio's.
    let out = g.run(&format!("nvme-bench bind {ahci}"), T).unwrap();
    let err = out.stderr_str();
    assert_ne!(out.status, 0, "bind {ahci} succeeded: {err}");
    assert!(
        err.contains("PCI class 0x010601 (SATA AHCI), not an NVMe controller"),
        "{err}"
    );
    assert_eq!(driver_of(&mut g, &ahci), ahci_driver);
    assert!(traced_calls(&mut g).is_empty());

    // The NVMe controller (namespace not mounted) still binds and opens;
    // the tracer sees vfio-pci open and reset it (the positive control).
    let out = g
        .run(
            &format!("nvme-bench bind {nvme} && nvme-bench info {nvme}"),
            T,
        )
        .unwrap();
    assert!(out.success(), "{}{}", out.stdout_str(), out.stderr_str());
    assert!(
        out.stdout_str().contains(&format!("Controller {nvme}")),
        "{}",
        out.stdout_str()
    );
    assert_eq!(driver_of(&mut g, &nvme), "vfio-pci");
    let calls = traced_calls(&mut g);
    assert!(
        calls.iter().any(|l| l.contains("vfio_pci_core_enable")),
        "the tracer did not see the NVMe open: {calls:?}"
    );

    // The AHCI function bound to vfio-pci by hand (bypassing nvme-bench):
    // info refuses it from the sysfs probe, before VFIO opens or resets it.
    g.run_ok(&format!("bind-vfio {ahci}"), T).unwrap();
    let out = g.run(&format!("nvme-bench info {ahci}"), T).unwrap();
    let err = out.stderr_str();
    let calls = traced_calls(&mut g);
    assert_ne!(out.status, 0, "info {ahci} succeeded: {}", out.stdout_str());
    assert!(
        calls.is_empty(),
        "vfio-pci opened/reset the AHCI function: {calls:?}\n{err}"
    );
    assert!(
        err.contains("class 0x010601 (SATA AHCI), not an NVMe controller (class 0x010802)"),
        "{err}"
    );
    assert!(err.contains("before opening or resetting"), "{err}");
    g.run_ok("umount /mnt/v", T).unwrap();
    g.shutdown().unwrap();
    eprintln!("bind safety test: {:.1} s", t0.elapsed().as_secs_f64());
}
