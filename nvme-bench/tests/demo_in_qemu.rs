//! The README's main job, `scripts/demo`'s job file (nvme-bench/jobs/demo.fio),
//! run as the demo runs it, in one guest boot: every job of it completes
//! without an error and moves data, our driver's and the kernel's io_uring
//! paths alike (1 s per job here; the demo's default is 10). The file's
//! exec_prerun hands the controller to vfio-pci and back to the kernel's
//! nvme driver between groups, so `/dev/nvme0n1` exists only from the
//! io_uring groups on.

use std::time::{Duration, Instant};

use fixtures::{guest_file_for_binary, Guest, GuestConfig, GuestFile, NvmeController};
use serde_json::Value;

const BENCH: &str = env!("CARGO_BIN_EXE_nvme-bench");

#[test]
fn the_demo_job_file_runs_every_job_in_qemu() {
    let t0 = Instant::now();
    let demo = concat!(env!("CARGO_MANIFEST_DIR"), "/jobs/demo.fio");
    let cfg = GuestConfig::default()
        .nvme(NvmeController::null(8 << 30).with_serial("demo"))
        .cmdline("nvme.poll_queues=2")
        .file(guest_file_for_binary(BENCH))
        .file(GuestFile::new(std::path::Path::new(demo), "/root/demo.fio"));
    let mut g = Guest::boot(cfg).expect("boot");
    let out = g
        .run(
            "export RUNTIME=1 BDF=0000:01:00.0 TRADDR=0000.01.00.0; \
             nvme-bench /root/demo.fio --eta=never --output-format=json",
            Duration::from_secs(600),
        )
        .expect("agent");
    let (so, se) = (out.stdout_str(), out.stderr_str());
    assert!(out.success(), "the demo job file failed:\n{se}\n{so}");
    let j: Value = serde_json::from_str(&so).unwrap_or_else(|e| panic!("not JSON ({e}):\n{so}"));
    let jobs = j["jobs"].as_array().expect("jobs");
    let names: Vec<&str> = jobs.iter().filter_map(|x| x["jobname"].as_str()).collect();
    assert_eq!(
        names,
        [
            "nvme-vfio-qd1",
            "nvme-vfio-qd32",
            "io_uring-qd1",
            "io_uring-qd32",
            "io_uring-hipri-qd1",
            "io_uring-hipri-qd32",
            "io_uring_cmd-qd1",
            "io_uring_cmd-qd32"
        ],
        "{so}"
    );
    for x in jobs {
        let name = x["jobname"].as_str().unwrap_or("?");
        assert_eq!(x["error"], 0, "{name}: {x}\n{se}");
        assert!(
            x["read"]["total_ios"].as_u64().unwrap_or(0) > 0,
            "{name} read nothing: {x}"
        );
    }
    // Nothing was created in /dev: the block device the io_uring jobs read
    // is the kernel's node, not a regular file laid out before it appeared.
    let ty = g
        .run("stat -c %F /dev/nvme0n1", Duration::from_secs(30))
        .expect("agent")
        .stdout_str();
    assert!(ty.contains("block special"), "/dev/nvme0n1: {ty}");
    eprintln!(
        "demo job file in the guest: {:.1} s",
        t0.elapsed().as_secs_f64()
    );
}
