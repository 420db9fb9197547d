//! I/O errors counted like fio (issue #13), against Debian's fio: a psync
//! read past the end of a short file (`create_on_open=1`, so nothing lays
//! it out) fails with EIO. Without `continue_on_error` the job stops at the
//! first error: `"error": 5`, the failed I/O in `total_ios` but not in
//! `io_bytes`, exit status 1, as fio. With `continue_on_error=read` every
//! error is counted (`total_err`, `first_error`), every other I/O succeeds,
//! the job finishes and exits 0. (fio 3.33 itself asserts on this exact
//! case with continue_on_error, so that half checks fio's documented
//! fields rather than a fio run.)

mod common;

use std::process::Command;

use common::scratch;
use serde_json::Value;

const BENCH: &str = env!("CARGO_BIN_EXE_nvme-bench");

/// The job: a psync read of 64 KiB of the file `small`, which nothing lays
/// out.
const JOB: &[&str] = &[
    "--name=x",
    "--filename=small",
    "--rw=read",
    "--bs=4k",
    "--size=64k",
    "--ioengine=psync",
    "--create_on_open=1",
];

/// Run `tool` on a fresh 16 KiB file, reading 64 KiB of it.
fn run(tool: &str, dir: &std::path::Path, extra: &[&str]) -> (i32, Value, String, String) {
    let f = dir.join("small");
    let _ = std::fs::remove_file(&f);
    std::fs::File::create(&f).unwrap().set_len(16384).unwrap();
    let o = Command::new(tool)
        .current_dir(dir)
        .args(JOB)
        .arg("--output-format=json")
        .args(extra)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    // fio may print its error line before the JSON.
    let j: Value = serde_json::from_str(&out[out.find('{').unwrap_or(0)..])
        .unwrap_or_else(|e| panic!("{tool}: not JSON ({e}): {out}"));
    (
        o.status.code().unwrap_or(-1),
        j,
        out,
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn first_error_stops_the_job_as_fio() {
    let fio = common::ensure_fio();
    let d = scratch("errors-stop");
    let (fc, fj, _, _) = run(&fio, &d, &[]);
    let (c, j, _, err) = run(BENCH, &d, &[]);
    let (f, o) = (&fj["jobs"][0], &j["jobs"][0]);
    assert_eq!(f["error"], 5, "fio: {f}");
    assert_eq!(o["error"], f["error"], "{err}");
    assert_eq!(c, fc, "exit status: fio {fc}, ours {c}: {err}");
    assert_ne!(c, 0);
    for k in ["total_ios", "io_bytes"] {
        assert_eq!(o["read"][k], f["read"][k], "read.{k}: ours {o}");
    }
    assert!(o.get("total_err").is_none() && f.get("total_err").is_none());
    // The normal output's err= field, as fio's: the number and its text.
    let o = Command::new(BENCH)
        .current_dir(&d)
        .args(JOB)
        .output()
        .unwrap();
    let so = String::from_utf8_lossy(&o.stdout);
    assert!(
        so.contains("err= 5 (") && so.contains("error=Input/output error): pid="),
        "{so}"
    );
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn continue_on_error_counts_errors() {
    let d = scratch("errors-continue");
    let (c, j, _, err) = run(BENCH, &d, &["--continue_on_error=read"]);
    let o = &j["jobs"][0];
    assert_eq!(c, 0, "{err}");
    // fio's sum_thread_stats reports first_error as the job's error when
    // continue_on_error is set (measured with fio 3.33 on ENOSPC in
    // tests/ignore_error_like_fio.rs); the exit status stays 0.
    assert_eq!(o["error"], 5, "{o}");
    // 4 blocks in the file, 12 past its end.
    assert_eq!(o["total_err"], 12, "{o}");
    assert_eq!(o["first_error"], 5, "{o}");
    assert_eq!(o["read"]["total_ios"], 16, "{o}");
    assert_eq!(o["read"]["io_bytes"], 16384, "{o}");
    assert_eq!(o["read"]["clat_ns"]["N"], 4, "latency of good I/Os only");
    // fio's key order: total_err and first_error right after latency_ms.
    let keys: Vec<&String> = o.as_object().unwrap().keys().collect();
    let at = keys.iter().position(|k| *k == "latency_ms").unwrap();
    assert_eq!(keys[at + 1], "total_err");
    assert_eq!(keys[at + 2], "first_error");
    // Writes still stop the job: only reads continue.
    let (c, j, _, _) = run(
        BENCH,
        &d,
        &["--continue_on_error=write", "--create_on_open=1"],
    );
    assert_ne!(c, 0);
    assert_eq!(j["jobs"][0]["error"], 5);
    assert_eq!(j["jobs"][0]["total_err"], 0);
    // Every fio spelling parses; a wrong one is refused.
    for v in ["none", "read", "write", "io", "verify", "all", "0", "1"] {
        let (c, _, _, err) = run(BENCH, &d, &[&format!("--continue_on_error={v}")]);
        assert!(c == 0 || c == 1, "{v}: {err}");
    }
    let o = Command::new(BENCH)
        .args([
            "--name=x",
            "--ioengine=null",
            "--size=1m",
            "--continue_on_error=most",
        ])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let _ = std::fs::remove_dir_all(&d);
}

/// A number with a fraction: fio 3.33 reads `runtime=1.5` as 1 s and
/// `size=1.5m` as 1 byte (the integer part, unit dropped). nvme-bench used
/// to take 1.5 s and 1.5 MiB, running a different job from fio's on the
/// same file without a word; it now refuses the value and names fio's
/// reading. The fio half checks that fio still reads it that way.
#[test]
fn fractions_are_refused_naming_fios_reading() {
    let fio = common::ensure_fio();
    let dir = scratch("errors-fraction");
    let o = Command::new(&fio)
        .current_dir(&dir)
        .args([
            "--name=x",
            "--ioengine=null",
            "--size=1m",
            "--runtime=1.5",
            "--time_based",
            "--output-format=json",
        ])
        .output()
        .unwrap();
    let j: Value = serde_json::from_slice(&o.stdout).unwrap();
    let ms = j["jobs"][0]["job_runtime"].as_u64().unwrap();
    assert!(
        (1000..1400).contains(&ms),
        "fio ran runtime=1.5 for {ms} ms"
    );
    let o = Command::new(&fio)
        .current_dir(&dir)
        .args(["--name=x", "--ioengine=null", "--size=1.5m", "--bs=512"])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&o.stderr);
    assert!(said.contains("1 < 512"), "fio on size=1.5m: {said}");

    for (opt, fios) in [
        ("--runtime=1.5", "1 s here"),
        ("--size=1.5m", "1 byte(s) here"),
    ] {
        let o = Command::new(BENCH)
            .current_dir(&dir)
            .args(["--name=x", "--ioengine=null", "--size=1m", "--time_based"])
            .arg(opt)
            .args(["--runtime=1", "--output-format=json"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        // The later --runtime=1 does not hide the bad value: options are
        // parsed as they come.
        assert!(!o.status.success(), "{opt} accepted: {err}");
        assert!(err.contains(fios), "{opt}: {err}");
    }
}
