//! Faults against QEMU's controller, one boot (issue #13):
//! * a namespace whose every request takes 3 s (`null-co`, `latency-ns`)
//!   and a job with `runtime=2`, `nvme_io_timeout=1s`: nvme-bench ends a
//!   few seconds after its runtime instead of hanging, counts the
//!   timeouts as errors (ETIMEDOUT), names the commands still outstanding
//!   and exits non-zero;
//! * media errors (a raw file behind `blkdebug` failing reads of one
//!   sector): with `continue_on_error=read` the error is counted and every
//!   other read succeeds; without it the job stops at the error (EIO), as
//!   fio;
//! * numjobs beyond the controller's queue pairs (`max_ioqpairs=1`,
//!   numjobs=2) and `smoke` past the end of the namespace are refused
//!   before any I/O: the write job's target still holds zeros.

use std::time::{Duration, Instant};

use fixtures::{guest_file_for_binary, Backend, Guest, GuestConfig, NvmeController};
use serde_json::Value;

const BENCH: &str = env!("CARGO_BIN_EXE_nvme-bench");
const T: Duration = Duration::from_secs(300);
const SLOW: &str = "0000:01:00.0";
const BAD: &str = "0000:02:00.0";
const ONE_QP: &str = "0000:03:00.0";
/// The sector blkdebug fails reads of: byte 1 MiB, the 257th 4 KiB block.
const BAD_SECTOR: u64 = 2048;

fn target(bdf: &str) -> String {
    format!(
        "'--filename=trtype=PCIe traddr={} ns=1'",
        bdf.replace(':', ".")
    )
}

fn json(out: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}):\n{out}"))
}

#[test]
fn faults_in_qemu() {
    let t0 = Instant::now();
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("bench-faults-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad_img = dir.join("bad.raw");
    let qp_img = dir.join("oneqp.raw");
    let _ = std::fs::remove_file(&qp_img);
    let cfg = GuestConfig::default()
        .nvme(NvmeController::new(Backend::slow_null(
            64 << 20,
            Duration::from_secs(3),
        )))
        .nvme(NvmeController::new(Backend::blkdebug(
            &bad_img,
            16 << 20,
            &[BAD_SECTOR],
            &[],
        )))
        .nvme(NvmeController::raw_file(&qp_img, 16 << 20).with_max_ioqpairs(1))
        .file(guest_file_for_binary(BENCH));
    let mut g = Guest::boot(cfg).expect("boot");
    eprintln!("boot: {:?}", t0.elapsed());
    let sh = |g: &mut Guest, cmd: &str| g.run(cmd, T).expect("agent");
    for bdf in [SLOW, BAD, ONE_QP] {
        let out = sh(&mut g, &format!("bind-vfio {bdf}"));
        assert!(out.success(), "{bdf}: {}", out.stderr_str());
    }
    let common = "--output-format=json --eta=never --bs=4k";

    // --- Refused before any I/O: numjobs beyond the granted queue pairs,
    // smoke past the end.
    let out = sh(
        &mut g,
        &format!(
            "nvme-bench {common} --name=w --ioengine=nvme-vfio {} --rw=write --size=1m --numjobs=2",
            target(ONE_QP)
        ),
    );
    let err = out.stderr_str();
    assert!(!out.success(), "numjobs=2 on one queue pair ran: {err}");
    assert!(
        err.contains("grants 1") && err.contains("nothing was run"),
        "{err}"
    );
    let out = sh(
        &mut g,
        &format!("nvme-bench smoke {ONE_QP} --bytes 1073741824"),
    );
    let err = out.stderr_str();
    assert!(!out.success(), "smoke past the end succeeded: {err}");
    assert!(err.contains("more than namespace 1 holds"), "{err}");
    let data = std::fs::read(&qp_img).unwrap();
    assert!(
        data.iter().all(|&b| b == 0),
        "a refused run wrote to the device (first non-zero byte at {:?})",
        data.iter().position(|&b| b != 0)
    );

    // --- Media errors: one bad sector in a 2 MiB sequential read.
    let read = format!(
        "nvme-bench {common} --name=m --ioengine=nvme-vfio {} --rw=read --size=2m --iodepth=4",
        target(BAD)
    );
    // error_dump=1: each continued-on error printed (fio's default is 0).
    let out = sh(
        &mut g,
        &format!("{read} --continue_on_error=read --error_dump=1"),
    );
    assert!(out.success(), "{}", out.stderr_str());
    let j = json(&out.stdout_str());
    let r = &j["jobs"][0];
    // fio (stat.c) reports a job that continued past errors with its
    // first error as "error"; the exit status stays 0.
    assert_eq!(r["error"], 5, "{r}");
    assert_eq!(r["total_err"], 1, "{r}");
    assert_eq!(r["first_error"], 5, "{r}");
    assert_eq!(r["read"]["total_ios"], 512, "{r}");
    assert_eq!(
        r["read"]["io_bytes"],
        511 * 4096,
        "every other read succeeded: {r}"
    );
    assert_eq!(r["read"]["clat_ns"]["N"], 511, "{r}");
    let err = out.stderr_str();
    assert!(
        err.contains("offset 1048576") && err.contains("Unrecovered Read Error"),
        "{err}"
    );
    let out = sh(&mut g, &read);
    assert!(!out.success(), "a media error did not fail the job");
    let j = json(&out.stdout_str());
    let r = &j["jobs"][0];
    assert_eq!(r["error"], 5, "{r}");
    assert!(r.get("total_err").is_none(), "{r}");
    // Stopped at the error: the blocks after it (and their window of
    // iodepth in flight) were not all read.
    assert!(r["read"]["io_bytes"].as_u64().unwrap() < 511 * 4096, "{r}");
    assert!(r["read"]["total_ios"].as_u64().unwrap() < 512, "{r}");

    // --- A device slower than the deadline: the job ends near its runtime.
    let slow = format!(
        "nvme-bench {common} --name=s --ioengine=nvme-vfio {} --rw=randread --size=1m --iodepth=4 \
         --runtime=2 --time_based --nvme_io_timeout=1s",
        target(SLOW)
    );
    for (cont, want_total_err) in [("--continue_on_error=all", true), ("", false)] {
        let t = Instant::now();
        let out = sh(&mut g, &format!("{slow} {cont}"));
        let took = t.elapsed();
        let err = out.stderr_str();
        eprintln!("slow device, {cont:?}: {took:?}\n{err}");
        assert!(took < Duration::from_secs(20), "{cont}: took {took:?}");
        assert!(
            !out.success(),
            "{cont}: exit 0 with commands outstanding: {err}"
        );
        let j = json(&out.stdout_str());
        let r = &j["jobs"][0];
        assert_eq!(r["error"], 110, "{cont}: ETIMEDOUT: {r}");
        assert!(
            err.contains("still outstanding") && err.contains("read at LBA"),
            "{cont}: {err}"
        );
        assert!(
            r["nvme_bench"]["engine"]["timeouts"].as_u64().unwrap() >= 1,
            "{r}"
        );
        if want_total_err {
            // Every reported timeout is an error counted in total_ios.
            let n = r["total_err"].as_u64().unwrap();
            assert!(n >= 1, "{r}");
            assert_eq!(r["read"]["total_ios"].as_u64().unwrap(), n, "{r}");
            assert_eq!(r["first_error"], 110, "{r}");
            assert!(err.contains("after runtime"), "{err}");
            assert!(r["job_runtime"].as_u64().unwrap() >= 2000, "{r}");
        }
    }
    // The controller still works afterwards (the late completions were
    // collected or the queues deleted).
    let out = sh(
        &mut g,
        &format!(
            "nvme-bench {common} --name=after --ioengine=nvme-vfio {} --rw=read --size=4k --nvme_io_timeout=10s",
            target(SLOW)
        ),
    );
    assert!(out.success(), "{}", out.stderr_str());
    g.shutdown().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!("faults_in_qemu: {:?}", t0.elapsed());
}
