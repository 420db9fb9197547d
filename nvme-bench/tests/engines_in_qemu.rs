//! The benchmark in the guest, one boot: every engine completes a short
//! run; verify passes on good data and fails loudly on data changed
//! between write and read (corrupted and misplaced blocks); `bind` refuses
//! a device with a mounted filesystem; bind/unbind move it back and forth.

use std::time::{Duration, Instant};

use fixtures::{guest_file_for_binary, Guest, GuestConfig, NvmeController};
use serde_json::Value;

const BENCH: &str = env!("CARGO_BIN_EXE_nvme-bench");
const T: Duration = Duration::from_secs(300);
const BDF: &str = "0000:01:00.0";
const TGT: &str = "--filename=trtype=PCIe traddr=0000.01.00.0 ns=1";

fn json(out: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}):\n{out}"))
}

#[test]
fn engines_and_verify_in_qemu() {
    let t0 = Instant::now();
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("bench-engines-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let img = dir.join("disk.raw");
    let cfg = GuestConfig::default()
        .nvme(NvmeController::raw_file(&img, 64 << 20).with_serial("bench-engines"))
        .cmdline("nvme.poll_queues=1")
        .file(guest_file_for_binary(BENCH));
    let mut g = Guest::boot(cfg).expect("boot");
    let sh = |g: &mut Guest, cmd: &str| g.run(cmd, T).expect("agent");

    // --- nvme-vfio: bind, a short read run, write + verify.
    let out = sh(&mut g, &format!("nvme-bench bind {BDF}"));
    assert!(out.success(), "{}{}", out.stdout_str(), out.stderr_str());
    assert!(
        out.stdout_str().contains("-> vfio-pci"),
        "{}",
        out.stdout_str()
    );
    let common = "--output-format=json --eta=never --size=8m --bs=4k";
    let out = sh(
        &mut g,
        &format!("nvme-bench {common} --name=r --ioengine=nvme-vfio '{TGT}' --rw=randread --iodepth=8 --runtime=1 --time_based"),
    );
    assert!(out.success(), "{}", out.stderr_str());
    let j = json(&out.stdout_str());
    let r = &j["jobs"][0];
    assert!(r["read"]["total_ios"].as_u64().unwrap() > 100, "{r}");
    // Latency samples are recorded off the I/O path (deferred); every
    // completed I/O must still be in each series exactly once.
    for series in ["slat_ns", "clat_ns", "lat_ns"] {
        assert_eq!(
            r["read"][series]["N"], r["read"]["total_ios"],
            "{series}: {r}"
        );
    }
    assert_eq!(r["job options"]["ioengine"], "nvme-vfio");
    assert_eq!(r["nvme_bench"]["engine"]["engine"], "nvme-vfio");
    let out = sh(
        &mut g,
        &format!("nvme-bench {common} --name=wv --ioengine=nvme-vfio '{TGT}' --rw=randwrite --iodepth=8 --verify=crc32c --randseed=7"),
    );
    assert!(out.success(), "{}", out.stderr_str());
    let j = json(&out.stdout_str());
    assert_eq!(
        j["jobs"][0]["nvme_bench"]["verified_blocks"], 2048,
        "{}",
        j["jobs"][0]
    );
    assert_eq!(j["jobs"][0]["error"], 0);

    // Corrupt one block between write and read: a plain (random-data) write
    // over block 16, then the verify pass of the same job alone.
    let out = sh(
        &mut g,
        &format!("nvme-bench --eta=never --name=x --ioengine=nvme-vfio '{TGT}' --rw=write --bs=4k --offset=64k --size=4k"),
    );
    assert!(out.success(), "{}", out.stderr_str());
    let out = sh(
        &mut g,
        &format!("nvme-bench {common} --name=wv --ioengine=nvme-vfio '{TGT}' --rw=randwrite --verify=crc32c --randseed=7 --verify_only"),
    );
    assert!(!out.success(), "verify passed on altered data");
    let err = out.stderr_str();
    assert!(
        err.contains("verify failed") && err.contains("at offset 65536"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    let j = json(&out.stdout_str());
    assert_eq!(j["jobs"][0]["error"], 84, "EILSEQ in the JSON");

    // --- Back to the kernel: unbind waits for the block devices.
    let out = sh(&mut g, &format!("nvme-bench unbind {BDF}"));
    assert!(out.success(), "{}{}", out.stdout_str(), out.stderr_str());
    assert!(
        out.stdout_str().contains("/dev/nvme0n1"),
        "{}",
        out.stdout_str()
    );

    // Misplaced: copy block 1 over block 5 behind the benchmark's back; a
    // fresh write+verify first so every block has a header.
    let out = sh(
        &mut g,
        &format!("nvme-bench {common} --name=wv2 --ioengine=io_uring --filename=/dev/nvme0n1 --direct=1 --rw=write --verify=crc32c --randseed=9 --iodepth=4"),
    );
    assert!(out.success(), "{}", out.stderr_str());
    let out = sh(
        &mut g,
        "dd if=/dev/nvme0n1 of=/dev/nvme0n1 bs=4096 skip=1 seek=5 count=1 conv=notrunc iflag=direct oflag=direct 2>&1",
    );
    assert!(out.success(), "{}", out.stdout_str());
    let out = sh(
        &mut g,
        &format!("nvme-bench {common} --name=wv2 --ioengine=io_uring --filename=/dev/nvme0n1 --direct=1 --rw=write --verify=crc32c --randseed=9 --verify_only"),
    );
    assert!(!out.success(), "verify passed on a misplaced block");
    let err = out.stderr_str();
    assert!(
        err.contains("misplaced") && err.contains("offset 4096"),
        "{err}"
    );

    // --- Every kernel engine completes a short run.
    for (name, opts) in [
        ("uring", "--ioengine=io_uring --filename=/dev/nvme0n1 --direct=1 --iodepth=8"),
        ("hipri", "--ioengine=io_uring --hipri --filename=/dev/nvme0n1 --direct=1 --iodepth=8"),
        ("fixed", "--ioengine=io_uring --fixedbufs --registerfiles --filename=/dev/nvme0n1 --direct=1 --iodepth=8"),
        ("sqpoll", "--ioengine=io_uring --sqthread_poll --filename=/dev/nvme0n1 --direct=1 --iodepth=4"),
        ("cmd", "--ioengine=io_uring_cmd --filename=/dev/ng0n1 --iodepth=8"),
        ("psync", "--ioengine=psync --filename=/dev/nvme0n1 --direct=1"),
    ] {
        let out = sh(
            &mut g,
            &format!("nvme-bench {common} --name={name} {opts} --rw=randread --runtime=1 --time_based"),
        );
        assert!(out.success(), "{name}: {}", out.stderr_str());
        let j = json(&out.stdout_str());
        let n = j["jobs"][0]["read"]["total_ios"].as_u64().unwrap();
        assert!(n > 10, "{name}: {n} I/Os");
        assert!(j["jobs"][0]["read"]["clat_ns"]["percentile"]["50.000000"].as_u64().unwrap() > 0);
    }

    // --- bind refuses a device holding a mounted filesystem.
    let out = sh(
        &mut g,
        &format!("mke2fs -q /dev/nvme0n1 && mkdir -p /mnt/t && mount /dev/nvme0n1 /mnt/t && nvme-bench bind {BDF}; echo rc=$?; umount /mnt/t"),
    );
    let so = out.stdout_str();
    let err = out.stderr_str();
    assert!(so.contains("rc=1"), "{so}{err}");
    assert!(
        err.contains("refusing") && err.contains("mounted on /mnt/t"),
        "{err}"
    );
    let out = sh(
        &mut g,
        &format!("readlink /sys/bus/pci/devices/{BDF}/driver"),
    );
    assert!(
        out.stdout_str().trim().ends_with("/nvme"),
        "{}",
        out.stdout_str()
    );
    g.shutdown().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!("engines_and_verify_in_qemu: {:?}", t0.elapsed());
}
