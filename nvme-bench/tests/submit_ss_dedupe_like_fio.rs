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

/// A job with steady-state detection (steadystate.c): a null job held at
/// 1000 IOPS (`rate_iops` per job) for up to 30 s, `ss=SS`, `ss_dur=3s`
/// sampled after `ss_ramp=1s`.
fn ss_job(ss: &str, extra: &str) -> String {
    format!(
        "[ss]\nioengine=null\nsize=1g\nbs=4k\nrw=read\ntime_based\nruntime=30s\n\
         rate_iops=1000\nss={ss}\nss_dur=3s\nss_ramp=1s\n{extra}"
    )
}

/// fio's keys of the `steadystate` object, in its order (stat.c).
const SS_KEYS: [&str; 7] = [
    "ss",
    "duration",
    "attained",
    "criterion",
    "max_deviation",
    "slope",
    "data",
];
const SS_DATA_KEYS: [&str; 4] = ["bw_mean", "iops_mean", "iops", "bw"];

/// The `steadystate` objects of both tools have fio's keys in fio's order
/// with the same JSON types (`ss`/`criterion` strings, `duration`/
/// `attained` integers, `max_deviation`/`slope` floats, `data` with
/// integer means and `duration` integer samples each).
fn same_ss_shape(t: &Value, o: &Value, what: &str) {
    for (who, v) in [("fio", t), ("ours", o)] {
        // The documents keep their key order (sorted, `ctx` would be first).
        let first = v["jobs"][0].as_object().unwrap().keys().next().unwrap();
        assert_eq!(
            first, "jobname",
            "{what}: {who}'s keys are not in document order"
        );
        let ss = v["jobs"][0]["steadystate"]
            .as_object()
            .unwrap_or_else(|| panic!("{what}: {who} has no steadystate object"));
        let keys: Vec<&str> = ss.keys().map(String::as_str).collect();
        assert_eq!(keys, SS_KEYS, "{what}: {who}'s steadystate keys");
        let data = ss["data"].as_object().unwrap();
        let keys: Vec<&str> = data.keys().map(String::as_str).collect();
        assert_eq!(keys, SS_DATA_KEYS, "{what}: {who}'s steadystate data keys");
        let dur = ss["duration"].as_u64().unwrap() as usize;
        for k in ["iops", "bw"] {
            let a = data[k].as_array().unwrap();
            assert_eq!(a.len(), dur, "{what}: {who}'s {k} samples");
            assert!(a.iter().all(Value::is_u64), "{what}: {who}'s {k}: {a:?}");
        }
    }
    let kinds = |v: &Value| -> Vec<&'static str> {
        let ss = &v["jobs"][0]["steadystate"];
        SS_KEYS
            .iter()
            .map(|k| common::kind(&ss[*k]))
            .chain(SS_DATA_KEYS.iter().map(|k| common::kind(&ss["data"][*k])))
            .collect()
    };
    assert_eq!(kinds(o), kinds(t), "{what}: JSON types, ours vs fio's");
    for k in ["ss", "duration"] {
        assert_eq!(
            o["jobs"][0]["steadystate"][k], t["jobs"][0]["steadystate"][k],
            "{what}: {k}"
        );
    }
}

/// Each job's (attained, job_runtime ms, IOPS samples).
fn ss_outcome(v: &Value) -> (u64, u64, Vec<u64>) {
    let j = &v["jobs"][0];
    let ss = &j["steadystate"];
    (
        ss["attained"].as_u64().unwrap(),
        j["job_runtime"].as_u64().unwrap(),
        ss["data"]["iops"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap())
            .collect(),
    )
}

/// `ss=iops:10%` on a steady 1000 IOPS is met as soon as the 3 s window is
/// full: sampling starts a second after `ss_ramp`, so both tools stop the
/// 30 s job near 5 s (fio's helper ticks: 2 s of ramp and first tick, 3
/// samples), attained, with 3 samples of about 1000 IOPS.
#[test]
fn steadystate_attained_stops_the_job_like_fio() {
    let _s = serial();
    let [(t, _), (o, _)] = both("ss-met", &ss_job("iops:10%", ""), &[]);
    same_ss_shape(&t, &o, "iops:10%");
    let (ta, trt, tio) = ss_outcome(&t);
    let (oa, ort, oio) = ss_outcome(&o);
    for (who, a, rt, io) in [("fio", ta, trt, &tio), ("ours", oa, ort, &oio)] {
        assert_eq!(a, 1, "{who}: not attained ({rt} ms, {io:?})");
        assert!(
            (4000..6500).contains(&rt),
            "{who}: stopped after {rt} ms, not near 5 s"
        );
        assert!(
            io.iter().all(|x| (900..1100).contains(x)),
            "{who}: samples {io:?}"
        );
    }
    assert!(
        trt.abs_diff(ort) < 700,
        "job_runtime: fio {trt} ms, ours {ort} ms"
    );
}

/// `ss=bw_slope:0` (absolute: |slope| < 0 bytes/s) can never be met: both
/// tools run the job its whole runtime (6 s here), not attained, the
/// window full (3 samples of about 4 MB/s, oldest first).
#[test]
fn steadystate_not_attained_runs_on_like_fio() {
    let _s = serial();
    let job = ss_job("bw_slope:0", "").replace("runtime=30s", "runtime=6s");
    let [(t, _), (o, _)] = both("ss-unmet", &job, &[]);
    same_ss_shape(&t, &o, "bw_slope:0");
    for (who, v) in [("fio", &t), ("ours", &o)] {
        let (a, rt, io) = ss_outcome(v);
        assert_eq!(a, 0, "{who}: attained ({rt} ms)");
        assert!((5800..6500).contains(&rt), "{who}: ran {rt} ms, not 6 s");
        assert!(
            io.iter().all(|x| (900..1100).contains(x)),
            "{who}: samples {io:?}"
        );
        let bw: Vec<u64> = v["jobs"][0]["steadystate"]["data"]["bw"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap())
            .collect();
        assert!(
            bw.iter().all(|x| (3_700_000..4_500_000).contains(x)),
            "{who}: bw samples {bw:?}"
        );
        let c = v["jobs"][0]["steadystate"]["criterion"].as_str().unwrap();
        assert!(!c.ends_with('%'), "{who}: criterion {c}");
    }
}

/// With group_reporting the check pools the group: two jobs at 500 IOPS
/// each make samples of 1000 IOPS (kept by the group's last job), met
/// together, and both jobs stop (the group's job_runtime is their sum,
/// near 2 x 5 s).
#[test]
fn steadystate_group_reporting_pools_jobs_like_fio() {
    let _s = serial();
    let job = ss_job("iops:10%", "numjobs=2\ngroup_reporting\n")
        .replace("rate_iops=1000", "rate_iops=500");
    let [(t, _), (o, _)] = both("ss-group", &job, &[]);
    same_ss_shape(&t, &o, "group");
    let (ta, trt, tio) = ss_outcome(&t);
    let (oa, ort, oio) = ss_outcome(&o);
    for (who, v, a, rt, io) in [("fio", &t, ta, trt, &tio), ("ours", &o, oa, ort, &oio)] {
        assert_eq!(
            v["jobs"].as_array().unwrap().len(),
            1,
            "{who}: one group entry"
        );
        assert_eq!(a, 1, "{who}: not attained ({rt} ms, {io:?})");
        assert!(
            (8000..13000).contains(&rt),
            "{who}: the group ran {rt} ms, not near 2 x 5 s"
        );
        assert!(
            io.iter().all(|x| (900..1100).contains(x)),
            "{who}: group samples {io:?}"
        );
    }
    assert!(
        trt.abs_diff(ort) < 1400,
        "job_runtime: fio {trt} ms, ours {ort} ms"
    );
}

/// Run `cmd args` in `dir`: (success, stdout, stderr).
fn run_in(dir: &std::path::Path, cmd: &str, args: &[&str]) -> (bool, String, String) {
    let o = std::process::Command::new(cmd)
        .args(args)
        .current_dir(dir)
        .output()
        .expect(cmd);
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// How both tools read the options (short runs, nothing met): the `ss`
/// text of each criterion (its limit as fio keeps it: bandwidth in bytes/s
/// with units, blanks dropped, the default `iops_slope:0.01%` when only
/// `ss_dur` is set), the window in whole seconds (1500ms is 1), none
/// without a whole second of it; and the job files both refuse: an
/// unknown or upper-case criterion, no threshold, a `,` before the `:`,
/// and jobs of one reporting group with different settings.
#[test]
fn steadystate_options_like_fio() {
    let _s = serial();
    let specs: &[(&str, Option<(&str, u64)>)] = &[
        ("ss=iops:10%\nss_dur=2", Some(("iops:10.000000%", 2))),
        ("ss=bw:10m\nss_dur=2", Some(("bw:10485760.000000", 2))),
        (
            "ss=iops_slope:0.3 %\nss_dur=1500ms",
            Some(("iops_slope:0.300000%", 1)),
        ),
        (
            "ss=bw_slope: 1k\nss_dur=2\nss_ramp=1",
            Some(("bw_slope:1024.000000", 2)),
        ),
        (
            "steadystate=iops:1e2%\nsteadystate_duration=2",
            Some(("iops:100.000000%", 2)),
        ),
        ("ss_dur=2", Some(("iops_slope:0.010000%", 2))),
        ("ss=iops:5%\nss_dur=500ms", None),
        ("ss=iops:5%", None),
    ];
    let mut job =
        String::from("[global]\nioengine=null\nsize=1m\nrw=read\ntime_based\nruntime=300ms\n");
    for (i, (s, _)) in specs.iter().enumerate() {
        job.push_str(&format!("[j{i}]\nnew_group\n{s}\n"));
    }
    let [(t, _), (o, _)] = both("ss-opts", &job, &[]);
    for (i, (s, want)) in specs.iter().enumerate() {
        for (who, v) in [("fio", &t), ("ours", &o)] {
            let j = &v["jobs"][i];
            assert_eq!(j["jobname"], format!("j{i}"));
            let ss = &j["steadystate"];
            match want {
                None => assert!(ss.is_null(), "{s:?}: {who} has {ss}"),
                Some((text, dur)) => {
                    assert_eq!(ss["ss"].as_str(), Some(*text), "{s:?}: {who}");
                    assert_eq!(ss["duration"].as_u64(), Some(*dur), "{s:?}: {who}");
                    assert_eq!(ss["attained"].as_u64(), Some(0), "{s:?}: {who}");
                    assert_eq!(
                        ss["data"]["iops"].as_array().map(Vec::len),
                        Some(*dur as usize),
                        "{s:?}: {who}"
                    );
                }
            }
        }
    }
    let fio = ensure_fio();
    let base = "[global]\nioengine=null\nsize=1m\nrw=read\ntime_based\nruntime=100ms\n";
    for bad in [
        "[a]\nss=IOPS:10%\nss_dur=2\n",
        "[a]\nss=iops\nss_dur=2\n",
        "[a]\nss=iops:\nss_dur=2\n",
        "[a]\nss=iops_slopes:1%\nss_dur=2\n",
        "[a]\nss=iops,5\nss_dur=2\n",
        "[a]\nss_dur=2\n[b]\n",
        "[a]\nss_dur=2\n[b]\nss_dur=2\nss_ramp=1\n",
    ] {
        for (who, cmd) in [("fio", fio.as_str()), ("ours", BENCH)] {
            let dir = scratch(&format!("ssd-ss-bad-{who}"));
            std::fs::write(dir.join("job.fio"), format!("{base}{bad}")).unwrap();
            let (ok, out, err) = run_in(&dir, cmd, &["--output-format=json", "job.fio"]);
            assert!(!ok, "{who} ran {bad:?}:\n{out}\n{err}");
        }
    }
}

/// The normal output's `steadystate  :` line (stat.c show_ss_normal), from
/// a one-second window met at the first sample: the same words, units and
/// figures' shapes as fio's (`attained=yes, bw=4001KiB/s (4001kB/s),
/// iops=1000, iops mean dev=0.000%`), after the job's `latency` line.
#[test]
fn steadystate_normal_line_like_fio() {
    let _s = serial();
    let fio = ensure_fio();
    let job = ss_job("iops:10%", "")
        .replace("ss_dur=3s", "ss_dur=1")
        .replace("ss_ramp=1s", "ss_ramp=0");
    let mut lines = Vec::new();
    for (who, cmd) in [("fio", fio.as_str()), ("ours", BENCH)] {
        let dir = scratch(&format!("ssd-ss-normal-{who}"));
        std::fs::write(dir.join("job.fio"), &job).unwrap();
        let (ok, out, err) = run_in(&dir, cmd, &["--eta=never", "job.fio"]);
        assert!(ok, "{who}: {out}\n{err}");
        let all: Vec<&str> = out.lines().collect();
        let at = all
            .iter()
            .position(|l| l.starts_with("  steadystate  : "))
            .unwrap_or_else(|| panic!("{who}: no steadystate line:\n{out}"));
        assert!(
            all[at - 1].starts_with("     latency   : "),
            "{who}: {:?} before it",
            all[at - 1]
        );
        lines.push(all[at].to_string());
    }
    // Figures masked: digits and the decimal point.
    let shape = |l: &str| -> String {
        l.chars()
            .map(|c| {
                if c.is_ascii_digit() || c == '.' {
                    '9'
                } else {
                    c
                }
            })
            .collect::<String>()
            .split('9')
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join("#")
    };
    assert_eq!(
        shape(&lines[1]),
        shape(&lines[0]),
        "\nfio : {}\nours: {}",
        lines[0],
        lines[1]
    );
    for l in &lines {
        assert!(
            l.starts_with("  steadystate  : attained=yes, bw=")
                && l.contains("KiB/s (")
                && l.contains("kB/s), iops=")
                && l.contains(", iops mean dev=")
                && l.ends_with('%'),
            "{l}"
        );
    }
}
