//! Paired tests against fio 3.33 for exit_what and a third (trim) `rate`
//! value (exitwhat.fio), io_submit_mode=offload (fixed-rate- and
//! poisson-rate-submission.fio), steady state (steadystate.fio) and dedupe
//! buffers (dedupe-global.fio).

mod common;

use std::path::PathBuf;

use common::{ensure_fio, run_json_in, scratch};
use serde_json::Value;

const BENCH: &str = env!("CARGO_BIN_EXE_nvme-bench");

/// Timing-sensitive tests run one at a time (the host has few CPUs).
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// The same job file run by both tools, each in a fresh directory:
/// (fio's, ours) JSON documents and directories.
fn both(tag: &str, job: &str, extra: &[&str]) -> [(Value, PathBuf); 2] {
    let fio = ensure_fio();
    let mut out = Vec::new();
    for (who, cmd) in [("fio", fio.as_str()), ("ours", BENCH)] {
        let dir = scratch(&format!("ssd-{tag}-{who}"));
        std::fs::write(dir.join("job.fio"), job).unwrap();
        let mut args = vec!["--output-format=json"];
        if who == "ours" {
            args.push("--eta=never");
        }
        args.extend_from_slice(extra);
        args.push("job.fio");
        let (v, _) = run_json_in(&dir, cmd, &args);
        out.push((v, dir));
    }
    let ours = out.pop().unwrap();
    let theirs = out.pop().unwrap();
    [theirs, ours]
}

/// Each job's (name, job_runtime ms).
fn runtimes(v: &Value) -> Vec<(String, u64)> {
    v["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| {
            (
                j["jobname"].as_str().unwrap().to_string(),
                j["job_runtime"].as_u64().unwrap(),
            )
        })
        .collect()
}

const EXIT_JOB: &str = "[global]\nfilename=ewfile\nsize=1m\nbs=4k\nioengine=psync\nrw=read\n\
    exitall=1\ntime_based\n\
    [short]\nnew_group=1\nruntime=300ms\nexit_what=WHAT\n\
    [long]\nnew_group=1\nruntime=2s\n\
    [later]\nstonewall\nruntime=2s\n";

/// exit_what (libfio.c fio_terminate_threads): `group` stops only the
/// ending job's reporting group, so `long` (its own group) runs its 2 s;
/// `stonewall` stops every running job (`long` too) but the next stonewall
/// set runs; `all` stops everything, and `later` never runs.
#[test]
fn exit_what_stops_what_fio_stops() {
    let _s = serial();
    // (long ran in full, later ran in full) per exit_what.
    for (what, long_full, later_full) in [
        ("group", true, true),
        ("stonewall", false, true),
        ("all", false, false),
    ] {
        let job = EXIT_JOB.replace("WHAT", what);
        let [(t, _), (o, _)] = both(&format!("exit-{what}"), &job, &[]);
        for (who, v) in [("fio", &t), ("ours", &o)] {
            let rt = runtimes(v);
            let got = |n: &str| rt.iter().find(|(j, _)| j == n).unwrap().1;
            let (long, later) = (got("long"), got("later"));
            assert_eq!(
                long >= 1800,
                long_full,
                "exit_what={what}: {who}'s long ran {long} ms ({rt:?})"
            );
            assert!(
                long >= 250,
                "exit_what={what}: {who}'s long ran {long} ms ({rt:?})"
            );
            assert_eq!(
                later >= 1800,
                later_full,
                "exit_what={what}: {who}'s later ran {later} ms ({rt:?})"
            );
            if !later_full {
                assert!(later < 50, "exit_what={what}: {who}'s later ran {later} ms");
            }
        }
    }
}

/// fio's exitall is global (options.c str_exitall_cb sets
/// exitall_on_terminate): one job with exitall=1 makes every job's end stop
/// its group, so `short` (without exitall) ending stops `long`.
#[test]
fn exitall_anywhere_applies_to_every_job_like_fio() {
    let _s = serial();
    let job = "[global]\nfilename=gfile\nsize=1m\nbs=4k\nioengine=psync\nrw=read\ntime_based\n\
               [short]\nruntime=300ms\n[long]\nexitall=1\nruntime=2s\n";
    let [(t, _), (o, _)] = both("exit-global", job, &[]);
    for (who, v) in [("fio", &t), ("ours", &o)] {
        let rt = runtimes(v);
        let long = rt.iter().find(|(j, _)| j == "long").unwrap().1;
        assert!(
            (250..1000).contains(&long),
            "{who}: long ran {long} ms, not stopped with short ({rt:?})"
        );
    }
}

/// `rate=R,W,T`: the third (trim) value is taken, the read and write rates
/// hold as in fio.
#[test]
fn rate_with_a_trim_value_like_fio() {
    let _s = serial();
    let job = "[r]\nfilename=rfile\nsize=4m\nbs=4k\nioengine=psync\nrw=randrw\ntime_based\n\
               runtime=1s\nrate=200k,100k,300k\n";
    let [(t, _), (o, _)] = both("rate3", job, &[]);
    for (who, v) in [("fio", &t), ("ours", &o)] {
        let j = &v["jobs"][0];
        let (r, w) = (
            j["read"]["bw"].as_f64().unwrap(),
            j["write"]["bw"].as_f64().unwrap(),
        );
        assert!(
            (170.0..230.0).contains(&r),
            "{who}: read {r} KiB/s, not 200"
        );
        assert!(
            (80.0..120.0).contains(&w),
            "{who}: write {w} KiB/s, not 100"
        );
    }
}
