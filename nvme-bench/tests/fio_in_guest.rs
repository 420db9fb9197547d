//! Debian's fio inside the QEMU guest, as the kernel-path peer: fio and
//! nvme-bench run the same job file (io_uring, direct, 4 KiB random reads)
//! on the emulated controller through the kernel's nvme driver. Every key
//! path our JSON promises must exist in fio's with the same type, and the
//! two tools' figures for the same workload must agree within a sane
//! factor. Then the controller moves to vfio-pci and nvme-bench runs the
//! same workload on our driver, in the same boot.

mod common;

use std::time::{Duration, Instant};

use common::{ensure_fio, shape_mismatches};
use fixtures::{guest_file_for_binary, Guest, GuestConfig, GuestFile, NvmeController};
use serde_json::Value;

const BENCH: &str = env!("CARGO_BIN_EXE_nvme-bench");
const T: Duration = Duration::from_secs(300);
const BDF: &str = "0000:01:00.0";

fn json(out: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not one JSON document ({e}):\n{out}"))
}

fn which(cmd: &str) -> String {
    let o = std::process::Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

#[test]
fn fio_and_nvme_bench_agree_in_the_guest() {
    let t0 = Instant::now();
    let fio = which(&ensure_fio());
    assert!(fio.starts_with('/'), "fio not found: {fio:?}");
    let job = "[global]\nioengine=io_uring\ndirect=1\nfilename=/dev/nvme0n1\nsize=256m\n\
               bs=4k\nruntime=2\ntime_based\nrw=randread\n\n[qd8]\niodepth=8\n";
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("fio-in-guest-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let jobfile = dir.join("peer.fio");
    std::fs::write(&jobfile, job).unwrap();
    let cfg = GuestConfig::default()
        .nvme(NvmeController::null(1 << 30).with_serial("fio-peer"))
        .file(guest_file_for_binary(BENCH))
        .file(guest_file_for_binary(&fio))
        .file(GuestFile::new(&jobfile, "/root/peer.fio"));
    let mut g = Guest::boot(cfg).expect("boot");
    let sh = |g: &mut Guest, cmd: &str| {
        let out = g.run(cmd, T).expect("agent");
        assert!(
            out.success(),
            "`{cmd}`:\n{}\n{}",
            out.stdout_str(),
            out.stderr_str()
        );
        out.stdout_str()
    };

    // The kernel's nvme driver owns the controller for the kernel-path runs.
    let out = sh(&mut g, &format!("nvme-bench unbind {BDF}"));
    assert!(out.contains("/dev/nvme0n1"), "{out}");
    let version = sh(&mut g, "fio --version");
    assert!(version.starts_with("fio-"), "{version}");

    let theirs = json(&sh(&mut g, "fio --output-format=json /root/peer.fio"));
    let ours = json(&sh(
        &mut g,
        "nvme-bench --output-format=json --eta=never /root/peer.fio",
    ));
    let bad = shape_mismatches(&theirs, &ours);
    assert!(
        bad.is_empty(),
        "{} mismatches against fio in the guest:\n{}",
        bad.len(),
        bad.join("\n")
    );
    // Disk stats of the device, in both, for the I/O each tool did.
    for (who, doc) in [("fio", &theirs), ("nvme-bench", &ours)] {
        let d = &doc["disk_util"][0];
        assert_eq!(d["name"], "nvme0n1", "{who}: {}", doc["disk_util"]);
        let ios = d["read_ios"].as_u64().unwrap();
        let total = doc["jobs"][0]["read"]["total_ios"].as_u64().unwrap();
        // fio samples disk stats on a 250 ms timer, so its window may end
        // early; ours is exact (counters read around the job group).
        let low = if who == "fio" { total * 4 / 5 } else { total };
        assert!(
            ios >= low && ios <= total + total / 20 + 16,
            "{who}: disk saw {ios} reads, the job reported {total}"
        );
    }
    let fio_iops = theirs["jobs"][0]["read"]["iops"].as_f64().unwrap();
    let our_iops = ours["jobs"][0]["read"]["iops"].as_f64().unwrap();
    let fio_p50 = theirs["jobs"][0]["read"]["clat_ns"]["percentile"]["50.000000"]
        .as_f64()
        .unwrap();
    let our_p50 = ours["jobs"][0]["read"]["clat_ns"]["percentile"]["50.000000"]
        .as_f64()
        .unwrap();
    eprintln!(
        "io_uring QD8 in the guest: fio {fio_iops:.0} IOPS (clat p50 {:.1} us), \
         nvme-bench {our_iops:.0} IOPS (clat p50 {:.1} us)",
        fio_p50 / 1e3,
        our_p50 / 1e3
    );
    assert!(fio_iops > 100.0 && our_iops > 100.0);
    // Same kernel path, same device, same workload: the two tools must
    // measure the same thing (a wrong unit or a lost I/O would be far out).
    assert!(
        (0.33..3.0).contains(&(our_iops / fio_iops)),
        "IOPS: fio {fio_iops:.0}, nvme-bench {our_iops:.0}"
    );
    assert!(
        (0.33..3.0).contains(&(our_p50 / fio_p50)),
        "clat p50: fio {fio_p50} ns, nvme-bench {our_p50} ns"
    );
    // The I/O count the kernel saw agrees with what nvme-bench reported.
    let before: u64 = sh(&mut g, "cat /sys/block/nvme0n1/stat")
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let again = json(&sh(
        &mut g,
        "nvme-bench --output-format=json --eta=never --runtime=1 --ramp_time=0 /root/peer.fio",
    ));
    let after: u64 = sh(&mut g, "cat /sys/block/nvme0n1/stat")
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let reported = again["jobs"][0]["read"]["total_ios"].as_u64().unwrap();
    let seen = after - before;
    assert!(
        reported <= seen && seen <= reported + 16,
        "nvme-bench reported {reported} reads, the kernel counted {seen}"
    );

    // Our driver on the same controller, same workload (filename swapped).
    sh(&mut g, &format!("nvme-bench bind {BDF}"));
    let vfio = json(&sh(
        &mut g,
        "nvme-bench --output-format=json --eta=never /root/peer.fio \
         '--filename=trtype=PCIe traddr=0000.01.00.0 ns=1' --ioengine=nvme-vfio",
    ));
    let vfio_iops = vfio["jobs"][0]["read"]["iops"].as_f64().unwrap();
    assert_eq!(vfio["jobs"][0]["job options"]["ioengine"], "nvme-vfio");
    assert!(vfio_iops > 100.0, "{vfio}");
    eprintln!(
        "nvme-vfio QD8 in the guest: {vfio_iops:.0} IOPS ({:.1}x fio's io_uring)",
        vfio_iops / fio_iops
    );
    g.shutdown().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!("fio_in_guest: {:.0} s", t0.elapsed().as_secs_f64());
}
