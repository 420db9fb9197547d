//! `clocksource=` (fio's gettime.c): `cpu` (the TSC, calibrated once),
//! `clock_gettime`, `gettimeofday`. Each must time a job as the wall clock
//! does, and both tools accept the same values and refuse others.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::ensure_fio;
use serde_json::Value;

const BENCH: &str = env!("CARGO_BIN_EXE_nvme-bench");

fn null_job(cmd: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "--name=cs",
        "--ioengine=null",
        "--size=64m",
        "--bs=4k",
        "--rw=randread",
        "--output-format=json",
    ];
    args.extend_from_slice(extra);
    Command::new(cmd).args(&args).output().unwrap()
}

/// A job paced by `rate_iops` (400 I/Os at 400/s: 1 s by the job's clock)
/// takes that long by the wall clock too, with every clock source: a TSC
/// scaled wrongly would pace (and report) in its own seconds. The job's
/// reported runtime must be ~1 s, no longer than the process's wall time
/// and at most 0.4 s shorter (start-up and report); gettimeofday's readings are whole microseconds, so every latency
/// it measures is a multiple of 1000 ns.
#[test]
fn every_clock_source_times_like_the_wall_clock() {
    for cs in ["cpu", "clock_gettime", "gettimeofday"] {
        let opt = format!("--clocksource={cs}");
        let t0 = Instant::now();
        let o = null_job(
            BENCH,
            &[&opt, "--rate_iops=400", "--number_ios=400", "--eta=never"],
        );
        let wall = t0.elapsed();
        assert!(
            o.status.success(),
            "{cs}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        let j = &v["jobs"][0];
        assert_eq!(j["read"]["total_ios"], 400, "{cs}");
        let rt = Duration::from_millis(j["job_runtime"].as_u64().unwrap());
        assert!(
            rt >= Duration::from_millis(950) && rt <= Duration::from_millis(1150),
            "{cs}: job_runtime {rt:?} for 400 I/Os at 400/s"
        );
        assert!(
            rt <= wall && wall - rt < Duration::from_millis(400),
            "{cs}: job_runtime {rt:?} against the wall time {wall:?}"
        );
        let clat = &j["read"]["clat_ns"];
        assert_eq!(clat["N"], 400, "{cs}");
        if cs == "gettimeofday" {
            for k in ["min", "max"] {
                let ns = clat[k].as_u64().unwrap();
                assert_eq!(
                    ns % 1000,
                    0,
                    "{cs}: clat {k} {ns} ns is not whole microseconds"
                );
            }
        }
    }
}

/// fio and nvme-bench accept the same three values and refuse another.
#[test]
fn clock_source_values_like_fio() {
    let fio = ensure_fio();
    for cmd in [fio.as_str(), BENCH] {
        for cs in ["cpu", "clock_gettime", "gettimeofday"] {
            let o = null_job(cmd, &[&format!("--clocksource={cs}"), "--number_ios=1000"]);
            assert!(
                o.status.success(),
                "{cmd} clocksource={cs}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
        let o = null_job(cmd, &["--clocksource=sundial", "--number_ios=1000"]);
        assert!(!o.status.success(), "{cmd} accepted clocksource=sundial");
    }
}
