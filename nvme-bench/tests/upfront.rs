//! Up-front checks (issue #13): a file the run must write (`--output`,
//! `--plot`) is opened before the first I/O, so an unwritable path fails
//! the run before any file is laid out or written, not after the run with
//! its results lost.

mod common;

use std::process::Command;

use common::scratch;

const BENCH: &str = env!("CARGO_BIN_EXE_nvme-bench");

#[test]
fn unwritable_output_or_plot_fails_before_any_io() {
    for flag in ["--output", "--plot"] {
        let d = scratch(&format!("upfront-{}", flag.trim_start_matches('-')));
        let target = d.join("data.bin");
        let bad = d.join("no-such-dir").join("out");
        let o = Command::new(BENCH)
            .arg(format!("{flag}={}", bad.display()))
            .args(["--eta=never", "--name=w", "--ioengine=psync", "--rw=write"])
            .args(["--bs=4k", "--size=1m"])
            .arg(format!("--filename={}", target.display()))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{flag}: run succeeded: {err}");
        assert!(err.contains(flag), "{flag}: {err}");
        // Nothing was created, laid out or written.
        assert!(
            !target.exists(),
            "{flag}: the target file was created before the output check: {err}"
        );
        // A read job's file would have been laid out (written) first.
        let o = Command::new(BENCH)
            .arg(format!("{flag}={}", bad.display()))
            .args(["--eta=never", "--name=r", "--ioengine=psync", "--rw=read"])
            .args(["--bs=4k", "--size=1m"])
            .arg(format!("--filename={}", target.display()))
            .output()
            .unwrap();
        assert!(!o.status.success());
        assert!(!target.exists(), "{flag}: the read job's file was laid out");
        let _ = std::fs::remove_dir_all(&d);
    }
}

#[test]
fn writable_output_still_gets_the_report() {
    let d = scratch("upfront-ok");
    let out = d.join("out.json");
    let o = Command::new(BENCH)
        .arg(format!("--output={}", out.display()))
        .args(["--output-format=json", "--eta=never", "--name=n"])
        .args(["--ioengine=null", "--size=1m", "--bs=4k"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let j: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(j["jobs"][0]["read"]["total_ios"], 256);
    let _ = std::fs::remove_dir_all(&d);
}
