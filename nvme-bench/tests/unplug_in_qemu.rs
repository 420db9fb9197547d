//! Hot-unplug during a benchmark (issue #13): nvme-bench runs a 60 s
//! time-based job on the nvme-vfio engine; the controller is removed with
//! QMP `device_del` after a few seconds. nvme-bench ends within a few
//! seconds with a clear error naming the removal, does not crash, and QEMU
//! reports the device deleted while nvme-bench is still running (the
//! removal does not wait for the process to exit).

use std::time::{Duration, Instant};

use fixtures::{guest_file_for_binary, Guest, GuestConfig, NvmeController};

const BENCH: &str = env!("CARGO_BIN_EXE_nvme-bench");
const T: Duration = Duration::from_secs(120);

fn run(g: &mut Guest, cmd: &str) -> String {
    let out = g.run(cmd, T).unwrap_or_else(|e| panic!("`{cmd}`: {e}"));
    assert!(out.success(), "`{cmd}`: {}", out.stderr_str());
    out.stdout_str()
}

#[test]
fn unplug_during_a_benchmark_in_qemu() {
    let cfg = GuestConfig::default()
        .nvme(NvmeController::null(256 << 20))
        .file(guest_file_for_binary(BENCH));
    let mut g = Guest::boot(cfg).expect("boot");
    let a = g.nvme_bdf(0).to_string();
    let id = g.nvme_device_id(0);
    g.qmp_connect().expect("qmp");
    run(&mut g, &format!("bind-vfio {a}"));
    let filename = format!("trtype=PCIe traddr={} ns=1", a.replace(':', "."));
    run(
        &mut g,
        &format!(
            "nvme-bench --eta=never --name=unplug --ioengine=nvme-vfio '--filename={filename}' \
             --rw=randread --bs=4k --iodepth=16 --time_based --runtime=60 \
             > /tmp/b.out 2> /tmp/b.err & echo $! > /tmp/b.pid; sleep 4; \
             test -d /proc/$(cat /tmp/b.pid)"
        ),
    );
    let t = Instant::now();
    g.device_del(&id).expect("device_del");
    g.device_deleted_wait(&id, Duration::from_secs(30))
        .expect("QEMU reports the device deleted");
    let deleted_after = t.elapsed();
    // Deleted while nvme-bench was still alive, or it ended promptly: in
    // either case the removal did not wait for the 60 s job.
    assert!(deleted_after < Duration::from_secs(15), "{deleted_after:?}");
    // nvme-bench ends within a few seconds, with an error, not a crash.
    let mut ended = false;
    while t.elapsed() < Duration::from_secs(20) {
        if run(
            &mut g,
            "test -d /proc/$(cat /tmp/b.pid) && echo alive || echo gone",
        )
        .trim()
            == "gone"
        {
            ended = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let ended_after = t.elapsed();
    assert!(
        ended,
        "nvme-bench still running {ended_after:?} after the unplug"
    );
    let err = run(&mut g, "cat /tmp/b.err");
    assert!(
        err.to_lowercase().contains("removed"),
        "the error names the removal: {err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    let dmesg = run(&mut g, "dmesg");
    assert!(
        !dmesg.contains("No device request channel"),
        "the kernel had to wait for the process"
    );
    eprintln!(
        "device deleted after {deleted_after:?}, nvme-bench ended after {ended_after:?}:\n{err}"
    );
    g.shutdown().unwrap();
}
