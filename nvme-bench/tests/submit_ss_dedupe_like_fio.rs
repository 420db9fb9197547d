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

/// Run `cmd args` in `dir` with a time limit; `None` if it did not end in
/// time (killed) or failed. fio 3.33's own offload runs at times never end
/// (its workqueue at exit; more often the deeper the queue): a stuck fio run
/// is retried, never waited for.
fn run_limited(dir: &std::path::Path, cmd: &str, args: &[&str], limit_s: u64) -> Option<Value> {
    use std::process::{Command, Stdio};
    let out = dir.join("out.json");
    let mut child = Command::new(cmd)
        .args(args)
        .current_dir(dir)
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .expect(cmd);
    let t0 = std::time::Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            if !st.success() {
                return None;
            }
            return serde_json::from_slice(&std::fs::read(&out).unwrap()).ok();
        }
        if t0.elapsed().as_secs() >= limit_s {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// A job file by both tools (fio retried up to 4 times when it hangs).
fn both_limited(tag: &str, job: &str) -> [Value; 2] {
    let fio = ensure_fio();
    let mut out = Vec::new();
    for (who, cmd) in [("fio", fio.as_str()), ("ours", BENCH)] {
        let dir = scratch(&format!("ssd-{tag}-{who}"));
        std::fs::write(dir.join("job.fio"), job).unwrap();
        let args: &[&str] = if who == "ours" {
            &["--output-format=json", "--eta=never", "job.fio"]
        } else {
            // One process (threads): a stuck run dies with its kill.
            &["--output-format=json", "--thread", "job.fio"]
        };
        let tries = if who == "fio" { 4 } else { 1 };
        let v = (0..tries)
            .find_map(|_| run_limited(&dir, cmd, args, 20))
            .unwrap_or_else(|| panic!("{who} did not run {tag}"));
        out.push(v);
    }
    let ours = out.pop().unwrap();
    [out.pop().unwrap(), ours]
}

/// io_submit_mode=offload (rate-submit.c), as fixed-rate-submission.fio and
/// poisson-rate-submission.fio: the same I/O count, the asked IOPS (even
/// or Poisson spacing), every I/O at depth 1 on its worker, and slat (the
/// hand-over to the worker) and clat sampled for every I/O.
#[test]
fn offload_submits_at_the_rate_like_fio() {
    let _s = serial();
    for process in ["linear", "poisson"] {
        let job = format!(
            "[o]\nfilename=ofile\nsize=512k\nbs=4k\nrw=randread\nioengine=libaio\n\
             iodepth=2\nio_submit_mode=offload\nrate_iops=400\nrate_process={process}\n"
        );
        let [t, o] = both_limited(&format!("offload-{process}"), &job);
        for (who, v) in [("fio", &t), ("ours", &o)] {
            let j = &v["jobs"][0];
            let r = &j["read"];
            let ios = r["total_ios"].as_u64().unwrap();
            assert_eq!(ios, 128, "{process}: {who} did {ios} I/Os");
            let iops = r["iops"].as_f64().unwrap();
            let tol = if process == "linear" { 0.15 } else { 0.45 };
            assert!(
                (iops - 400.0).abs() <= 400.0 * tol,
                "{process}: {who} ran {iops:.0} IOPS, not 400"
            );
            assert_eq!(
                r["slat_ns"]["N"].as_u64(),
                Some(128),
                "{process}: {who} slat"
            );
            assert_eq!(
                r["clat_ns"]["N"].as_u64(),
                Some(128),
                "{process}: {who} clat"
            );
            let d1 = j["iodepth_level"]["1"].as_f64().unwrap();
            assert!(d1 >= 99.0, "{process}: {who} depth 1 only {d1}%");
        }
    }
}

/// Distinct 4 KiB blocks of the files, and how many blocks.
fn distinct_blocks(files: &[PathBuf]) -> (usize, usize) {
    let mut seen = std::collections::HashSet::new();
    let mut n = 0;
    for f in files {
        let d = std::fs::read(f).unwrap();
        for b in d.chunks(4096) {
            seen.insert(b.to_vec());
            n += 1;
        }
    }
    (seen.len(), n)
}

/// dedupe-global.fio's options (at 8 MiB a file): the share of distinct
/// 4 KiB blocks in each file and in both together, as fio's, for
/// dedupe_mode=working_set with dedupe_global=1 (pages repeat across the
/// files: together less unique than each alone), without it, and
/// dedupe_mode=repeat.
#[test]
fn dedupe_blocks_repeat_like_fio() {
    let _s = serial();
    let base = "[global]\nioengine=libaio\niodepth=16\nsize=8m\ndedupe_mode=working_set\n\
                dedupe_global=1\ndedupe_percentage=50\nblocksize=4k\nrw=write\n\
                buffer_compress_percentage=50\ndedupe_working_set_percentage=50\n[a]\n[b]\n";
    for (tag, job) in [
        ("global", base.to_string()),
        ("local", base.replace("dedupe_global=1", "dedupe_global=0")),
        ("repeat", base.replace("=working_set", "=repeat")),
    ] {
        let [(_, td), (_, od)] = both(&format!("dedupe-{tag}"), &job, &[]);
        let ratio = |d: &PathBuf, names: &[&str]| {
            let files: Vec<PathBuf> = names.iter().map(|n| d.join(n)).collect();
            let (u, n) = distinct_blocks(&files);
            assert_eq!(n, names.len() * 2048, "{tag}: {d:?} {names:?}");
            u as f64 / n as f64
        };
        for names in [&["a.0.0"][..], &["b.0.0"], &["a.0.0", "b.0.0"]] {
            let (t, o) = (ratio(&td, names), ratio(&od, names));
            assert!(
                (t - o).abs() < 0.06,
                "{tag} {names:?}: distinct blocks fio {t:.3}, ours {o:.3}"
            );
        }
        // Compressible: half of each 512-byte chunk is zeros.
        let d = std::fs::read(od.join("a.0.0")).unwrap();
        let zeros = d.iter().filter(|&&b| b == 0).count() as f64 / d.len() as f64;
        assert!(
            (0.49..0.52).contains(&zeros),
            "{tag}: zero bytes {zeros:.3}"
        );
    }
}
