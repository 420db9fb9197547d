//! I/O priorities side by side with fio 3.33 on a scratch file (libaio,
//! direct=1): `prio`/`prioclass` (ioprio_set on the job's thread),
//! `cmdprio_percentage`/`cmdprio_class`/`cmdprio` and `cmdprio_bssplit`
//! (aio_reqprio with IOCB_FLAG_IOPRIO, seen under strace), the per-priority
//! statistics of the JSON and normal outputs, and `log_prio`'s log column.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use common::{both_json, ensure_fio, ensure_strace, header_lines, scratch, BENCH};
use serde_json::Value;

/// fio's cmdprio-percentage.fio on a scratch file, smaller.
const PERC: &str = "[global]
filename=data
size=4m
direct=1

[randread]
rw=randread
bs=4k
ioengine=libaio
iodepth=8
prioclass=3
cmdprio_percentage=20
cmdprio_class=1
";

/// fio's cmdprio-bssplit.fio's advanced job with a default priority.
const BSSPLIT: &str = "[global]
filename=data
size=32m
direct=1
rw=randread
ioengine=libaio
iodepth=16

[cmdprio-adv-def]
prioclass=2
prio=7
bssplit=64k/40:1024k/60
cmdprio_bssplit=64k/25/1/1:64k/75/3/2:1024k/0
";

/// `job` run by `cmd` in `dir` under `strace -f -v`, tracing io_submit and
/// ioprio_set: the trace.
fn traced(dir: &Path, cmd: &str, job: &str) -> String {
    std::fs::write(dir.join("j.fio"), job).unwrap();
    let log = dir.join("strace.out");
    let o = Command::new(ensure_strace())
        .args(["-f", "-qq", "-v", "-s", "0", "-o"])
        .arg(&log)
        .args(["-e", "trace=io_submit,ioprio_set", cmd, "j.fio"])
        .arg("--output=/dev/null")
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    std::fs::read_to_string(&log).unwrap()
}

/// Of a trace: the ioprio_set calls (arguments), the number of iocbs, and
/// those carrying each priority (`aio_reqprio=...` with IOCB_FLAG_IOPRIO).
fn prio_calls(trace: &str) -> (Vec<String>, usize, Vec<(String, usize)>) {
    let sets: Vec<String> = trace
        .lines()
        .filter_map(|l| l.split_once("ioprio_set(").map(|(_, r)| r.to_string()))
        .collect();
    let mut n = 0;
    let mut by: std::collections::BTreeMap<String, usize> = Default::default();
    for l in trace.lines().filter(|l| l.contains("io_submit(")) {
        for cb in l.split("{aio_data=").skip(1) {
            n += 1;
            let flag = cb.contains("IOCB_FLAG_IOPRIO");
            let prio = cb.split_once("aio_reqprio=").map(|(_, r)| {
                r.split_once("), ")
                    .map_or(r.to_string(), |x| format!("{})", x.0))
            });
            match (flag, prio) {
                (true, Some(p)) => *by.entry(p).or_default() += 1,
                (false, None) => {}
                (f, p) => panic!("iocb with flag {f} and priority {p:?}: {cb}"),
            }
        }
    }
    (sets, n, by.into_iter().collect())
}

#[test]
fn cmdprio_percentage_reaches_the_kernel_like_fio() {
    let _g = common::serial();
    let fio = ensure_fio();
    let mut got = Vec::new();
    for (who, cmd) in [("fio", fio.as_str()), ("ours", BENCH)] {
        let dir = scratch(&format!("cmdprio-perc-{who}"));
        got.push(prio_calls(&traced(&dir, cmd, PERC)));
    }
    let (theirs, ours) = (&got[0], &got[1]);
    // The job thread's default priority: idle class, as fio.
    assert_eq!(ours.0, theirs.0, "ioprio_set calls");
    assert!(
        ours.0.iter().any(|s| s.contains("IOPRIO_CLASS_IDLE")),
        "{:?}",
        ours.0
    );
    assert_eq!(ours.1, theirs.1, "iocbs submitted");
    assert_eq!(ours.1, 1024);
    // The same priority on the high-priority I/Os, in about the same share.
    let names = |v: &[(String, usize)]| v.iter().map(|x| x.0.clone()).collect::<Vec<_>>();
    assert_eq!(names(&ours.2), names(&theirs.2), "priorities used");
    assert_eq!(names(&ours.2), ["IOPRIO_PRIO_VALUE(IOPRIO_CLASS_RT, 0)"]);
    let share = |x: &(Vec<String>, usize, Vec<(String, usize)>)| {
        100.0 * x.2.iter().map(|p| p.1).sum::<usize>() as f64 / x.1 as f64
    };
    let (s_fio, s_ours) = (share(theirs), share(ours));
    assert!(
        (s_ours - 20.0).abs() < 4.0 && (s_ours - s_fio).abs() < 6.0,
        "high-priority share: ours {s_ours:.1}%, fio's {s_fio:.1}%"
    );
}

#[test]
fn cmdprio_bssplit_reaches_the_kernel_like_fio() {
    let _g = common::serial();
    let fio = ensure_fio();
    let job = BSSPLIT.replace("size=32m", "size=16m");
    let mut got = Vec::new();
    for (who, cmd) in [("fio", fio.as_str()), ("ours", BENCH)] {
        let dir = scratch(&format!("cmdprio-bss-{who}"));
        got.push(prio_calls(&traced(&dir, cmd, &job)));
    }
    let (theirs, ours) = (&got[0], &got[1]);
    assert_eq!(ours.0, theirs.0, "ioprio_set calls");
    let names = |v: &[(String, usize)]| v.iter().map(|x| x.0.clone()).collect::<Vec<_>>();
    assert_eq!(names(&ours.2), names(&theirs.2), "priorities used");
    assert_eq!(
        names(&ours.2),
        [
            "IOPRIO_PRIO_VALUE(IOPRIO_CLASS_IDLE, 2)",
            "IOPRIO_PRIO_VALUE(IOPRIO_CLASS_RT, 1)"
        ]
    );
}

/// Key names and JSON types of an object, in order.
fn shape(v: &Value) -> Vec<(String, &'static str)> {
    v.as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), common::kind(v)))
        .collect()
}

fn check_prios(theirs: &Value, ours: &Value, want: &[(u64, u64)], lat: &str) {
    for (who, v) in [("fio", theirs), ("ours", ours)] {
        let d = &v["jobs"][0]["read"];
        let keys: Vec<&String> = d.as_object().unwrap().keys().collect();
        let at = keys.iter().position(|k| *k == "lat_ns").unwrap();
        assert_eq!(keys[at + 1], "prios", "{who}: prios after lat_ns: {keys:?}");
        let prios = d["prios"].as_array().unwrap();
        let classes: Vec<(u64, u64)> = prios
            .iter()
            .map(|p| {
                (
                    p["prioclass"].as_u64().unwrap(),
                    p["prio"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(classes, want, "{who}: priorities in fio's order");
        let n: u64 = prios.iter().map(|p| p[lat]["N"].as_u64().unwrap()).sum();
        assert_eq!(n, d["total_ios"].as_u64().unwrap(), "{who}: N adds up");
    }
    let (t, o) = (
        &theirs["jobs"][0]["read"]["prios"],
        &ours["jobs"][0]["read"]["prios"],
    );
    for (a, b) in t.as_array().unwrap().iter().zip(o.as_array().unwrap()) {
        assert_eq!(shape(b), shape(a), "a prios entry");
        assert_eq!(shape(&b[lat]), shape(&a[lat]), "its {lat}");
        let pk = |x: &Value| {
            x[lat]["percentile"]
                .as_object()
                .unwrap()
                .keys()
                .cloned()
                .collect::<Vec<_>>()
        };
        assert_eq!(pk(b), pk(a), "its percentiles");
    }
    let (t, o) = (&theirs["jobs"][0]["read"], &ours["jobs"][0]["read"]);
    let tk: Vec<&String> = t.as_object().unwrap().keys().collect();
    let ok: Vec<&String> = o.as_object().unwrap().keys().collect();
    assert_eq!(ok, tk, "read's keys");
}

#[test]
fn per_priority_json_like_fio() {
    let _g = common::serial();
    let [(theirs, _, d1), (ours, _, d2)] = both_json("cmdprio-json-perc", PERC, &[]);
    check_prios(&theirs, &ours, &[(3, 0), (1, 0)], "clat_ns");
    // The share of high-priority I/Os is near fio's.
    let share = |v: &Value| {
        let d = &v["jobs"][0]["read"];
        100.0 * d["prios"][1]["clat_ns"]["N"].as_f64().unwrap() / d["total_ios"].as_f64().unwrap()
    };
    let (a, b) = (share(&theirs), share(&ours));
    assert!(
        (b - 20.0).abs() < 4.0 && (a - b).abs() < 6.0,
        "ours {b:.1}%, fio's {a:.1}%"
    );
    for d in [d1, d2] {
        let _ = std::fs::remove_dir_all(d);
    }
    let [(theirs, _, d1), (ours, _, d2)] = both_json("cmdprio-json-bss", BSSPLIT, &[]);
    check_prios(&theirs, &ours, &[(2, 7), (1, 1), (3, 2)], "clat_ns");
    for d in [d1, d2] {
        let _ = std::fs::remove_dir_all(d);
    }
    // Two jobs reported as one group: the priorities merged (fio's
    // sum_thread_stats), and with lat_percentiles total latency, "lat_ns".
    for (extra, lat) in [
        ("group_reporting\nnumjobs=2", "clat_ns"),
        ("lat_percentiles=1", "lat_ns"),
    ] {
        let job = PERC.replace("[randread]", &format!("{extra}\n[randread]"));
        let [(theirs, _, d1), (ours, _, d2)] = both_json("cmdprio-json-grp", &job, &[]);
        check_prios(&theirs, &ours, &[(3, 0), (1, 0)], lat);
        for d in [d1, d2] {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// The normal output's per-priority lines: their names, in order (values
/// aside), as fio prints them.
#[test]
fn per_priority_normal_output_like_fio() {
    let _g = common::serial();
    let fio = ensure_fio();
    let mut got = Vec::new();
    for (who, cmd) in [("fio", fio.as_str()), ("ours", BENCH)] {
        let dir = scratch(&format!("cmdprio-normal-{who}"));
        std::fs::write(dir.join("j.fio"), PERC).unwrap();
        let o = Command::new(cmd)
            .arg("j.fio")
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(o.status.success());
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        let names: Vec<String> = out
            .lines()
            .filter(|l| l.contains(" prio "))
            .map(|l| {
                // "    clat prio 3/0 (usec): ..." / "... (79.83% of IOs) percentiles (usec):"
                let l = l.split(" (").next().unwrap().to_string();
                l
            })
            .collect();
        got.push(names);
        let _ = std::fs::remove_dir_all(dir);
    }
    assert_eq!(got[1], got[0]);
    assert_eq!(got[0].len(), 4, "{:?}", got[0]);
}

/// The log lines' columns: (field count, last column) of each line.
fn log_columns(path: &Path) -> (BTreeSet<usize>, BTreeSet<String>) {
    let s = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let mut n = BTreeSet::new();
    let mut last = BTreeSet::new();
    for l in s.lines() {
        let f: Vec<&str> = l.split(", ").collect();
        n.insert(f.len());
        last.insert(f.last().unwrap().to_string());
    }
    (n, last)
}

#[test]
fn log_prio_columns_like_fio() {
    let _g = common::serial();
    for (log_prio, offset) in [(1, 0), (0, 0), (1, 1)] {
        let job = PERC.replace(
            "[randread]",
            &format!("write_lat_log=pl\nlog_prio={log_prio}\nlog_offset={offset}\n[randread]"),
        );
        let [(_, _, d1), (_, _, d2)] = both_json("cmdprio-log", &job, &[]);
        for name in ["pl_lat.1.log", "pl_clat.1.log"] {
            let (t, o) = (log_columns(&d1.join(name)), log_columns(&d2.join(name)));
            assert_eq!(o, t, "{name} with log_prio={log_prio} log_offset={offset}");
            let want: BTreeSet<String> = if log_prio == 1 {
                ["0x2000", "0x6000"].map(String::from).into()
            } else {
                ["0", "1"].map(String::from).into()
            };
            assert_eq!(o.1, want);
        }
        for d in [d1, d2] {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// fio's two cmdprio examples, filename on a scratch file: nvme-bench
/// accepts them and `--parse-only` prints fio's header lines (fio's from
/// `--create_only=1`, as tests/fio_real_examples.rs).
#[test]
fn examples_parse_like_fio() {
    let fio = ensure_fio();
    let dir = scratch("cmdprio-examples");
    for ex in ["cmdprio-percentage.fio", "cmdprio-bssplit.fio"] {
        let src = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fio-3.33-examples")
            .join(ex);
        let job = std::fs::read_to_string(src)
            .unwrap()
            .replace("filename=/dev/sda", "filename=data\nsize=1m");
        std::fs::write(dir.join(ex), job).unwrap();
        let mut got = Vec::new();
        // fio prints its header lines on a run (`--create_only=1` lays
        // out the 1 MiB file and does no I/O), not with `--parse-only`.
        for (cmd, flag) in [(fio.as_str(), "--create_only=1"), (BENCH, "--parse-only")] {
            let o = Command::new(cmd)
                .args([flag, ex])
                .current_dir(&dir)
                .output()
                .unwrap();
            assert!(
                o.status.success(),
                "{cmd} {ex}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            got.push(header_lines(&String::from_utf8_lossy(&o.stdout)));
        }
        assert_eq!(got[1], got[0], "{ex}");
        assert!(!got[0].is_empty());
    }
    let _ = std::fs::remove_dir_all(dir);
}
