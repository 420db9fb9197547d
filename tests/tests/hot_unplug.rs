//! Hot-unplug under load (issue #13): a controller behind a
//! `pcie-root-port`, bound to vfio-pci and driven by two threads with
//! their own queue pairs, is removed from the host with QMP `device_del`.
//! The kernel asks for the device back through VFIO's request interrupt;
//! the driver must notice within seconds, hand every command in flight back
//! as `DeviceRemoved`, fail later calls with `Error::DeviceRemoved`, and let
//! go of the device so the removal completes (QEMU's `DEVICE_DELETED`)
//! while the process is still alive, then exit cleanly.
//!
//! Without the request interrupt the kernel logs "No device request channel
//! registered, blocked until released by user" and the removal waits for
//! the process to exit: this test then fails waiting for `DEVICE_DELETED`.

mod common;
use common::*;

use std::time::{Duration, Instant};

use fixtures::{guest_file_for_binary, Guest, GuestConfig, NvmeController};

/// Seconds the guest-side process stays alive after noticing the removal.
const LINGER: u64 = 20;

#[test]
fn hot_unplug_under_load_in_qemu() {
    let started = Instant::now();
    let dir = scratch_dir("unplug");
    let cfg = GuestConfig::default()
        .nvme(NvmeController::raw_file(dir.join("a.raw"), 16 << 20).with_serial("unplug"))
        .file(guest_file_for_binary(CHECK));
    let mut g = Guest::boot(cfg).expect("boot");
    let a = g.nvme_bdf(0).to_string();
    let id = g.nvme_device_id(0);
    run_ok(&mut g, &format!("bind-vfio {a}"));
    g.qmp_connect().expect("QMP");
    run_ok(
        &mut g,
        &format!(
            "rm -f /tmp/unplug.*; (nvme-guest-check unplug-load {a} --linger {LINGER} \
             >/tmp/unplug.out 2>/tmp/unplug.err; echo $? >/tmp/unplug.rc) \
             </dev/null >/dev/null 2>&1 & echo $! >/tmp/unplug.pid"
        ),
    );
    // Let the I/O get going.
    let t = Instant::now();
    loop {
        let so = run_ok(
            &mut g,
            "test -e /tmp/unplug.rc && cat /tmp/unplug.out /tmp/unplug.err; \
             test -e /tmp/unplug.ready && echo ready=yes; true",
        );
        assert!(!so.contains("result=failed"), "ended early: {so}");
        if so.contains("ready=yes") {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(120), "never started");
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(2));

    // Unplug from the host.
    run_ok(&mut g, "cut -d' ' -f1 /proc/uptime >/tmp/unplug.t0");
    // QEMU's device tree names the controller (the check the event wait
    // falls back to, below, relies on this form).
    let peripherals = |g: &mut fixtures::Guest| {
        g.qmp(r#"{"execute": "qom-list", "arguments": {"path": "/machine/peripheral"}}"#)
            .expect("qom-list")
    };
    let listed = |tree: &str| tree.contains(&format!("\"name\": \"{id}\""));
    let tree = peripherals(&mut g);
    assert!(listed(&tree), "{id} not in QEMU's peripherals: {tree}");
    let td = Instant::now();
    g.device_del(&id).expect("device_del");
    let ev = g
        .device_deleted_wait(&id, Duration::from_secs(90))
        .unwrap_or_else(|e| {
            // Twice in CI on a loaded 2-core host the guest had let the
            // function go (its kernel log says so) and no event came within
            // 90 s. Ask QEMU itself: a device gone from its tree was
            // deleted, whatever happened to the event; one still there
            // fails the test, with the guest's slot state.
            let tree = g
                .qmp(r#"{"execute": "qom-list", "arguments": {"path": "/machine/peripheral"}}"#)
                .unwrap_or_default();
            let out = g
                .run(
                    "cat /tmp/unplug.out /tmp/unplug.err; dmesg | tail -n 30; \
                     for f in /sys/bus/pci/slots/*/power /sys/bus/pci/slots/*/adapter; do \
                     echo \"$f $(cat $f)\"; done",
                    Duration::from_secs(30),
                )
                .map(|o| o.stdout_str())
                .unwrap_or_default();
            if !tree.is_empty() && !listed(&tree) {
                eprintln!(
                    "no DEVICE_DELETED event for {id} ({e}), but QEMU no longer has it: \
                     {tree}\n{out}"
                );
                return format!("(no event; {id} gone from /machine/peripheral)");
            }
            panic!("no DEVICE_DELETED for {id}: {e}\nQEMU's peripherals: {tree}\n{out}")
        });
    let deleted = td.elapsed();
    let tree = peripherals(&mut g);
    assert!(
        !listed(&tree),
        "{id} still in QEMU's peripherals after deletion: {tree}"
    );
    eprintln!(
        "DEVICE_DELETED {:.2} s after device_del: {ev}",
        deleted.as_secs_f64()
    );

    // The process is still alive (it lingers), and had already noticed.
    let so = run_ok(
        &mut g,
        "kill -0 $(cat /tmp/unplug.pid) && echo alive=yes; cat /tmp/unplug.rc 2>/dev/null; cat /tmp/unplug.out",
    );
    assert!(
        so.contains("alive=yes"),
        "the process exited before the unplug completed:\n{so}"
    );
    assert!(so.contains("removal=noticed"), "{so}");

    // It exits cleanly after lingering.
    let t = Instant::now();
    let rc = loop {
        let so = run_ok(&mut g, "cat /tmp/unplug.rc 2>/dev/null; true");
        if !so.trim().is_empty() {
            break so.trim().to_string();
        }
        assert!(
            t.elapsed() < Duration::from_secs(LINGER + 60),
            "the process did not exit"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    let so = run_ok(&mut g, "cat /tmp/unplug.out");
    let se = run_ok(&mut g, "cat /tmp/unplug.err");
    eprintln!("guest stdout:\n{so}\nguest stderr:\n{se}");
    assert_eq!(rc, "0", "exit status {rc}\n{so}\n{se}");
    assert!(so.contains("removal_channels request=true"), "{so}");
    let line = so
        .lines()
        .find(|l| l.starts_with("removal=noticed"))
        .unwrap_or_else(|| panic!("{so}"));
    assert!(word(line, "verified_blocks") > 0, "{line}");
    assert!(word(line, "in_flight_removed") > 0, "{line}");
    assert!(word(line, "drained_ms") < 5000, "{line}");
    let m = kv(&so);
    let noticed_ms: u64 = m["noticed_after_request_ms"].parse().unwrap();
    // Seen: ~50 ms (the guest removes the function at once); a native
    // pciehp attention button would add its 5 s delay.
    assert!(
        noticed_ms < 15_000,
        "noticed {noticed_ms} ms after device_del"
    );
    assert!(
        so.contains("sysfs_gone_after_notice_ms="),
        "the kernel did not finish the removal while the process lived:\n{so}"
    );
    assert!(so.contains("unplug_load=ok sysfs_gone=true"), "{so}");
    assert!(se.contains("exiting cleanly"), "{se}");
    assert!(!se.contains("panicked"), "{se}");

    // The kernel never had to wait for the process.
    let dmesg = run_ok(&mut g, "dmesg");
    for bad in [
        "No device request channel registered",
        "blocked until released by user",
        "blocked until device is released",
    ] {
        assert!(!dmesg.contains(bad), "dmesg says {bad:?}:\n{dmesg}");
    }
    let so = run_ok(
        &mut g,
        &format!("test -e /sys/bus/pci/devices/{a} && echo present; true"),
    );
    assert!(!so.contains("present"), "{a} is still there");
    eprintln!(
        "hot-unplug: DEVICE_DELETED after {:.2} s, noticed {noticed_ms} ms after device_del; test took {:.1} s",
        deleted.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    g.shutdown().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
