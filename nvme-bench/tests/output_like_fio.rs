//! nvme-bench's output and informational command-line flags side by side
//! with Debian's fio 3.33 (issue #14, "Output" and "Command line"): terse
//! lines, a report per --status-interval, --showcmd, --cmdhelp, --enghelp,
//! --readonly, --warnings-fatal, --eta-newline, --bandwidth-log and the
//! normal report's layout. Figures differ between the tools; what fio makes
//! deterministic (names, counts, labels, layout, exit status) must agree.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{ensure_fio, scratch, serial};
use serde_json::Value;

const BENCH: &str = env!("CARGO_BIN_EXE_nvme-bench");

fn run_in(dir: &Path, cmd: &str, args: &[&str]) -> Output {
    Command::new(cmd)
        .args(args)
        .current_dir(dir)
        .output()
        .expect(cmd)
}

/// Both tools in their own fresh directory, `job` written there as
/// job.fio when given. Returns [fio's, ours] outputs and directories.
fn both(tag: &str, job: Option<&str>, args: &[&str]) -> [(Output, PathBuf); 2] {
    let fio = ensure_fio();
    let mut out = Vec::new();
    for (who, cmd) in [("fio", fio.as_str()), ("ours", BENCH)] {
        let dir = scratch(&format!("out-{tag}-{who}"));
        let mut a: Vec<&str> = args.to_vec();
        if let Some(j) = job {
            std::fs::write(dir.join("job.fio"), j).unwrap();
            a.push("job.fio");
        }
        out.push((run_in(&dir, cmd, &a), dir));
    }
    let ours = out.pop().unwrap();
    [out.pop().unwrap(), ours]
}

/// Both tools refuse `args` (no job file), saying `said` on stderr.
fn both_refuse(tag: &str, args: &[&str], said: &str) {
    let [(t, _), (o, _)] = both(tag, None, args);
    assert!(!t.status.success() && !o.status.success());
    assert!(text(&t.stderr).contains(said), "{}", text(&t.stderr));
    assert!(text(&o.stderr).contains(said), "{}", text(&o.stderr));
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn ok(o: &Output, who: &str) -> String {
    assert!(
        o.status.success(),
        "{who} failed ({:?}): {}\n{}",
        o.status,
        text(&o.stdout),
        text(&o.stderr)
    );
    text(&o.stdout)
}

// ------------------------------------------------------------------ terse

/// Which fields of a terse line fio makes deterministic, by position:
/// (index, how to compare). Layout of fio 3.33's
/// show_thread_status_terse_all for `ver`.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Cmp {
    Same,
    /// `P%=V`: the percentile label.
    Label,
    Any,
}

fn terse_layout(ver: u8, n_fields: usize) -> Vec<Cmp> {
    let mut v = Vec::new();
    if ver == 2 {
        v.extend([Cmp::Same, Cmp::Same, Cmp::Same, Cmp::Same]); // 2;name;gid;err
    } else {
        // ver;version;name;gid;err (the version string names the tool)
        v.extend([Cmp::Same, Cmp::Any, Cmp::Same, Cmp::Same, Cmp::Same]);
    }
    let dirs = if ver == 3 { 2 } else { 3 };
    for _ in 0..dirs {
        v.extend([Cmp::Same, Cmp::Any, Cmp::Any, Cmp::Any]); // KiB;bw;iops;runtime
        v.extend([Cmp::Any; 8]); // slat, clat
        v.extend([Cmp::Label; 20]); // percentiles
        v.extend([Cmp::Any; 4]); // lat
        v.extend([Cmp::Any; 5]); // bw
        if ver == 5 {
            v.extend([Cmp::Any; 6]); // bw samples, iops
        }
    }
    v.extend([Cmp::Any; 5]); // cpu
    v.extend([Cmp::Same; 7]); // IO depths (iodepth=1 here)
    v.extend([Cmp::Any; 22]); // latency buckets
                              // The rest: disk util (name, then figures), continue_on_error, description.
    while v.len() < n_fields {
        v.push(Cmp::Any);
    }
    v
}

fn terse_compare(theirs: &str, ours: &str, ver: u8, extra_same: &[usize]) {
    let t: Vec<&str> = theirs.lines().collect();
    let o: Vec<&str> = ours.lines().collect();
    assert_eq!(t.len(), o.len(), "lines:\nfio:\n{theirs}\nours:\n{ours}");
    for (lt, lo) in t.iter().zip(&o) {
        let ft: Vec<&str> = lt.split(';').collect();
        let fo: Vec<&str> = lo.split(';').collect();
        assert_eq!(
            ft.len(),
            fo.len(),
            "field count (v{ver})\nfio:  {lt}\nours: {lo}"
        );
        let lay = terse_layout(ver, ft.len());
        assert_eq!(lay.len(), ft.len(), "layout v{ver}");
        // The 22 latency buckets (nsec folded into the first usec one)
        // cover every I/O: about 100% in both, when the job did I/O.
        let header = if ver == 2 { 4 } else { 5 };
        let block = if ver == 5 { 47 } else { 41 };
        let dirs = if ver == 3 { 2 } else { 3 };
        let at = header + dirs * block + 5 + 7;
        let sum = |f: &[&str]| -> f64 {
            f[at..at + 22]
                .iter()
                .map(|x| x.trim_end_matches('%').parse::<f64>().unwrap())
                .sum()
        };
        let (st, so) = (sum(&ft), sum(&fo));
        if st > 0.0 {
            assert!((st - 100.0).abs() < 1.0, "fio's buckets sum to {st}: {lt}");
            assert!((so - 100.0).abs() < 1.0, "our buckets sum to {so}: {lo}");
        }
        for (i, (a, b)) in ft.iter().zip(&fo).enumerate() {
            let how = if extra_same.contains(&i) {
                Cmp::Same
            } else {
                lay[i]
            };
            match how {
                Cmp::Same => assert_eq!(a, b, "field {} (v{ver})\nfio:  {lt}\nours: {lo}", i + 1),
                Cmp::Label => assert_eq!(
                    a.split('=').next(),
                    b.split('=').next(),
                    "percentile label, field {} (v{ver})",
                    i + 1
                ),
                Cmp::Any => {}
            }
        }
    }
}

const TWO_JOBS: &str = "[global]\nioengine=psync\nfilename=data\nsize=256k\nbs=4k\n\
    [w]\nrw=write\n[r]\nstonewall\nrw=randread\n";

#[test]
fn terse_v3_matches_fio_field_by_field() {
    let _g = serial();
    let [(t, _), (o, _)] = both("terse3", Some(TWO_JOBS), &["--minimal"]);
    let (t, o) = (ok(&t, "fio"), ok(&o, "ours"));
    assert!(t.starts_with("3;fio-3.33;w;0;0;0;"), "{t}");
    terse_compare(&t, &o, 3, &[]);
    // --output-format=terse is the same thing.
    let [(t2, _), (o2, _)] = both("terse3b", Some(TWO_JOBS), &["--output-format=terse"]);
    terse_compare(&ok(&t2, "fio"), &ok(&o2, "ours"), 3, &[]);
}

#[test]
fn terse_versions_2_4_5_and_options_match_fio() {
    let _g = serial();
    for ver in [2u8, 4, 5] {
        let flag = format!("--terse-version={ver}");
        let [(t, _), (o, _)] = both(
            &format!("terse{ver}"),
            Some(TWO_JOBS),
            &["--minimal", &flag],
        );
        terse_compare(&ok(&t, "fio"), &ok(&o, "ours"), ver, &[]);
    }
    // Percentile lists, lat percentiles, continue_on_error and a description
    // add or change fields; mixed reporting drops the write block.
    let job = "[j]\nioengine=null\nsize=64k\nbs=4k\nrw=write\n\
        percentile_list=50:99.5\nlat_percentiles=1\ncontinue_on_error=all\n\
        description=a test\n";
    let [(t, _), (o, _)] = both("terse-opts", Some(job), &["--minimal"]);
    let (t, o) = (ok(&t, "fio"), ok(&o, "ours"));
    let n = t.trim_end().split(';').count();
    // continue_on_error's two fields and the description (the last three).
    terse_compare(&t, &o, 3, &[n - 3, n - 2, n - 1]);
    assert!(o.trim_end().ends_with(";0;0;a test"), "{o}");
    let mixed = "[j]\nioengine=null\nsize=64k\nbs=4k\nrw=randrw\nunified_rw_reporting=mixed\n";
    let [(t, _), (o, _)] = both("terse-mixed", Some(mixed), &["--minimal"]);
    let (t, o) = (ok(&t, "fio"), ok(&o, "ours"));
    assert_eq!(
        t.split(';').count(),
        o.split(';').count(),
        "fio: {t}\nours: {o}"
    );
}

#[test]
fn bad_terse_version_is_refused_as_fio() {
    both_refuse(
        "terse-bad",
        &[
            "--terse-version=7",
            "--name=x",
            "--ioengine=null",
            "--size=4k",
        ],
        "bad terse version format",
    );
}

#[test]
fn formats_come_in_fios_order() {
    let _g = serial();
    let args = [
        "--output-format=normal,json,terse",
        "--name=x",
        "--ioengine=null",
        "--size=64k",
    ];
    let [(t, _), (o, _)] = both("order", None, &args);
    for (out, who) in [(ok(&t, "fio"), "fio"), (ok(&o, "ours"), "ours")] {
        let terse = out.find("\n3;").expect(who);
        let json = out.find("\n{").expect(who);
        let normal = out.find("x: (groupid=0").expect(who);
        assert!(terse < json && json < normal, "{who}: {out}");
    }
}

// ------------------------------------------------------ status-interval

fn documents(s: &str) -> Vec<Value> {
    serde_json::Deserializer::from_str(s)
        .into_iter::<Value>()
        .collect::<Result<Vec<_>, _>>()
        .unwrap_or_else(|e| panic!("not a sequence of JSON documents ({e}):\n{s}"))
}

#[test]
fn json_document_per_status_interval_like_fio() {
    let _g = serial();
    let args = [
        "--output-format=json",
        "--status-interval=1",
        "--name=x",
        "--ioengine=null",
        "--size=100g",
        "--runtime=3",
        "--time_based",
    ];
    let [(t, _), (o, _)] = both("status-json", None, &args);
    let (t, o) = (documents(&ok(&t, "fio")), documents(&ok(&o, "ours")));
    // fio: one per second of the 3 s job (the last may fall after its end),
    // then the final one.
    assert!((3..=5).contains(&t.len()), "fio printed {}", t.len());
    assert!(
        o.len().abs_diff(t.len()) <= 1 && o.len() >= 3,
        "fio printed {} documents, nvme-bench {}",
        t.len(),
        o.len()
    );
    let keys = |v: &Value| -> Vec<String> {
        v.as_object()
            .unwrap()
            .keys()
            .filter(|k| *k != "nvme_bench")
            .cloned()
            .collect()
    };
    let mut last = 0;
    for d in &o {
        assert_eq!(keys(d), keys(&t[0]), "top-level keys");
        let job = &d["jobs"][0];
        assert_eq!(job["jobname"], "x");
        let rt = job["job_runtime"].as_u64().unwrap();
        assert!(rt >= last, "job_runtime goes back: {rt} after {last}");
        last = rt;
        assert!(job["read"]["total_ios"].as_u64().unwrap() > 0);
    }
    let first = o[0]["jobs"][0]["job_runtime"].as_u64().unwrap();
    assert!((500..=1600).contains(&first), "first report at {first} ms");
    assert!((2900..=3300).contains(&last), "final job_runtime {last}");
}

// ---------------------------------------------------- informational flags

#[test]
fn showcmd_prints_the_job_file_as_fio_does() {
    let job = "[global]\nioengine=null ; a comment\nsize=1m\n\n[a]\nreadwrite=randread\n\
        norandommap\nblocksize=8k\n[global]\niodepth=4\n[b]\ndescription=x y\nnumjobs=2\n";
    let [(t, _), (o, _)] = both("showcmd", Some(job), &["--showcmd"]);
    assert_eq!(ok(&o, "ours"), ok(&t, "fio"));
    // Command-line jobs: nothing, status 0.
    let [(t, _), (o, _)] = both("showcmd-cli", None, &["--showcmd", "--name=x", "--size=1m"]);
    assert_eq!(ok(&o, "ours"), ok(&t, "fio"));
}

/// `name : help` lines of fio's --cmdhelp / --enghelp listings.
fn listed(s: &str) -> Vec<String> {
    s.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(n, _)| n.trim().to_string())
        .filter(|n| !n.is_empty())
        .collect()
}

#[test]
fn cmdhelp_like_fio() {
    let [(t, _), (o, _)] = both("cmdhelp", None, &["--cmdhelp"]);
    let (t, o) = (ok(&t, "fio"), ok(&o, "ours"));
    // fio's options: the general ones and its kernel engines' own.
    let mut fio_opts = listed(&t);
    for e in ["io_uring_cmd", "libaio"] {
        let [(t, _), _] = both("cmdhelp-eng", None, &[&format!("--enghelp={e}")]);
        fio_opts.extend(listed(&text(&t.stdout)));
    }
    let supported: Vec<String> = o
        .lines()
        .filter(|l| l.contains(": supported"))
        .map(|l| l.split(':').next().unwrap().trim().to_string())
        .collect();
    assert!(supported.len() > 80, "{o}");
    for n in &supported {
        if !n.starts_with("nvme_") {
            assert!(
                fio_opts.contains(n),
                "we list '{n}' as supported, fio 3.33 has no such option"
            );
        }
    }
    // Listed once, by fio's name: no alias.
    assert!(!listed(&o)
        .iter()
        .any(|n| n == "readwrite" || n == "blocksize"));
    assert!(
        o.contains("bs_unaligned")
            && o.lines()
                .any(|l| l.starts_with("bs_unaligned") && l.contains("NOT supported"))
    );
    // One option, or its alias.
    for a in ["--cmdhelp=bs", "--cmdhelp=blocksize"] {
        let [(t, _), (o, _)] = both("cmdhelp1", None, &[a]);
        assert!(ok(&t, "fio").contains("bs: Block size unit"));
        let o = ok(&o, "ours");
        assert!(o.starts_with("                  bs: supported"), "{o}");
    }
    // Unknown: fio's message on stderr, status 0.
    let [(t, _), (o, _)] = both("cmdhelp-no", None, &["--cmdhelp=nosuch"]);
    ok(&t, "fio");
    ok(&o, "ours");
    assert_eq!(text(&o.stderr), text(&t.stderr));
}

#[test]
fn enghelp_like_fio() {
    let [(t, _), (o, _)] = both("enghelp", None, &["--enghelp"]);
    let (t, o) = (ok(&t, "fio"), ok(&o, "ours"));
    assert!(o.starts_with("Available IO engines:\n"));
    for e in o.lines().skip(1) {
        let e = e.trim();
        // Ours alone: the driver on a device and on the in-process model.
        if e != "nvme-vfio" && e != "nvme-model" {
            assert!(t.lines().any(|l| l.trim() == e), "fio has no engine {e}");
        }
    }
    // No options / unknown engine: status 1, fio's stdout line.
    for (a, code) in [
        ("--enghelp=null", 1),
        ("--enghelp=psync", 1),
        ("--enghelp=nosuch", 1),
    ] {
        let [(t, _), (o, _)] = both("enghelp1", None, &[a]);
        assert_eq!(t.status.code(), Some(code), "fio {a}");
        assert_eq!(o.status.code(), Some(code), "ours {a}");
        assert_eq!(text(&o.stdout), text(&t.stdout), "{a}");
    }
    // io_uring: what we list is fio's.
    let [(t, _), (o, _)] = both("enghelp-uring", None, &["--enghelp=io_uring"]);
    let fio_opts = listed(&ok(&t, "fio"));
    let ours = listed(&ok(&o, "ours"));
    assert!(!ours.is_empty());
    for n in ours {
        assert!(fio_opts.contains(&n), "fio's io_uring has no option {n}");
    }
}

#[test]
fn readonly_refuses_writes_like_fio() {
    let _g = serial();
    let args = [
        "--readonly",
        "--name=x",
        "--ioengine=psync",
        "--filename=data",
        "--size=64k",
        "--rw=write",
    ];
    let [(t, td), (o, od)] = both("ro-write", None, &args);
    assert_eq!(t.status.code(), Some(1));
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    assert!(text(&t.stderr).contains("read-only mode"));
    assert!(
        text(&o.stderr).contains("read-only mode"),
        "{}",
        text(&o.stderr)
    );
    assert!(!td.join("data").exists() && !od.join("data").exists());
    // A read job on a file that is not there: nothing is laid out, the
    // job fails (fio: error 2 in its terse line), status 1.
    let args = [
        "--readonly",
        "--minimal",
        "--name=x",
        "--ioengine=psync",
        "--filename=data",
        "--size=64k",
        "--rw=read",
    ];
    let [(t, td), (o, od)] = both("ro-read", None, &args);
    assert_eq!(t.status.code(), Some(1));
    assert_eq!(o.status.code(), Some(1));
    // The job's error is the open's errno, ENOENT, in both terse lines.
    let err_field = |out: &std::process::Output| {
        text(&out.stdout)
            .lines()
            .find(|l| l.starts_with("3;"))
            .and_then(|l| l.split(';').nth(4).map(str::to_string))
    };
    assert_eq!(
        err_field(&t).as_deref(),
        Some("2"),
        "fio: {}",
        text(&t.stdout)
    );
    assert_eq!(err_field(&o), err_field(&t), "ours: {}", text(&o.stdout));
    assert!(!td.join("data").exists());
    assert!(
        !od.join("data").exists(),
        "nvme-bench laid out a file under --readonly"
    );
    // On an existing file a read job runs, and leaves it as it was.
    let src = scratch("ro-src").join("data");
    std::fs::write(&src, vec![7u8; 65536]).unwrap();
    let f = format!("--filename={}", src.display());
    let args = [
        "--readonly",
        "--minimal",
        "--name=x",
        "--ioengine=psync",
        &f,
        "--size=64k",
        "--rw=read",
    ];
    let [(t, _), (o, _)] = both("ro-ok", None, &args);
    terse_compare(&ok(&t, "fio"), &ok(&o, "ours"), 3, &[]);
    assert_eq!(std::fs::read(&src).unwrap(), vec![7u8; 65536]);
}

#[test]
fn warnings_fatal_like_fio() {
    let _g = serial();
    // fio warns that time_based needs a runtime, drops it and runs.
    let args = [
        "--minimal",
        "--name=x",
        "--ioengine=null",
        "--size=64k",
        "--time_based",
    ];
    let [(t, _), (o, _)] = both("warn", None, &args);
    let (ts, os) = (ok(&t, "fio"), ok(&o, "ours"));
    assert!(text(&t.stderr).contains("time_based requires a runtime"));
    assert!(text(&o.stderr).contains("time_based requires a runtime"));
    terse_compare(&ts, &os, 3, &[]);
    let mut a = vec!["--warnings-fatal"];
    a.extend_from_slice(&args);
    let [(t, _), (o, _)] = both("warn-fatal", None, &a);
    assert_eq!(t.status.code(), Some(1));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stdout).is_empty(),
        "ran anyway: {}",
        text(&o.stdout)
    );
}

#[test]
fn eta_newline_keeps_a_status_line_every_period() {
    let _g = serial();
    let args = [
        "--eta=always",
        "--eta-newline=500ms",
        "--name=x",
        "--ioengine=null",
        "--size=100g",
        "--runtime=4",
        "--time_based",
    ];
    let [(t, _), (o, _)] = both("eta-nl", None, &args);
    ok(&t, "fio");
    ok(&o, "ours");
    // Lines ending in a newline that hold a status line (fio: on stdout;
    // nvme-bench: on stderr).
    let kept = |s: &str| s.split('\n').filter(|l| l.contains("Jobs: 1")).count();
    let (nt, no) = (kept(&text(&t.stdout)), kept(&text(&o.stderr)));
    assert!(nt >= 2, "fio kept {nt}");
    assert!(no >= 2, "nvme-bench kept {no} status lines");
    // Below a millisecond: refused by both.
    both_refuse(
        "eta-nl-0",
        &[
            "--eta-newline=0",
            "--name=x",
            "--ioengine=null",
            "--size=4k",
        ],
        "eta new line time too short",
    );
    let [(_, _), (o, _)] = both(
        "eta-nl-off",
        None,
        &args[..1]
            .iter()
            .chain(&args[2..])
            .copied()
            .collect::<Vec<_>>(),
    );
    assert!(kept(&text(&o.stderr)) <= 1);
}

#[test]
fn bandwidth_log_is_a_global_flag_writing_fios_agg_logs() {
    let _g = serial();
    // fio 3.33 samples only while it shows the ETA, hence --eta=always.
    let args = [
        "--bandwidth-log",
        "--eta=always",
        "--name=x",
        "--ioengine=null",
        "--size=100g",
        "--runtime=2",
        "--time_based",
        "--rw=randrw",
    ];
    let [(t, td), (o, od)] = both("agglog", None, &args);
    ok(&t, "fio");
    ok(&o, "ours");
    let mut counts = Vec::new();
    for dir in [&td, &od] {
        for (i, n) in ["agg-read_bw.log", "agg-write_bw.log", "agg-trim_bw.log"]
            .iter()
            .enumerate()
        {
            let s = std::fs::read_to_string(dir.join(n)).unwrap_or_else(|e| panic!("{n}: {e}"));
            let lines: Vec<&str> = s.lines().collect();
            assert!(lines.len() >= 2, "{}: {s:?}", dir.join(n).display());
            for l in &lines {
                let f: Vec<&str> = l.split(", ").collect();
                assert_eq!(f.len(), 5, "{l}");
                assert_eq!(f[2], i.to_string(), "{l}");
                let v: u64 = f[1].parse().unwrap();
                assert_eq!(v == 0, i == 2, "{n}: {l}");
                assert_eq!((f[3], f[4]), ("0", "0"));
            }
            counts.push(lines.len());
        }
    }
    assert!(
        counts[0].abs_diff(counts[3]) <= 2,
        "samples fio {} ours {}",
        counts[0],
        counts[3]
    );
}

// ---------------------------------------------------------- normal report

/// A line with its figures masked: digits (with a fraction and a k/M
/// suffix) become `#`, runs of spaces one space, units in parentheses `U`.
fn skeleton(l: &str) -> String {
    let mut out = String::new();
    let mut chars = l.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() {
            while chars
                .peek()
                .is_some_and(|c| c.is_ascii_digit() || *c == '.')
            {
                chars.next();
            }
            if chars.peek().is_some_and(|c| matches!(c, 'k' | 'M')) {
                chars.next();
            }
            out.push('#');
        } else if c == ' ' {
            while chars.peek() == Some(&' ') {
                chars.next();
            }
            out.push(' ');
        } else {
            out.push(c);
        }
    }
    for u in ["(nsec)", "(usec)", "(msec)"] {
        out = out.replace(u, "(U)");
    }
    // fio pads a small figure to its field width (`avg= 5.51` in usec,
    // `avg=2303.23` in nsec): the padding depends on the figure, not on
    // the layout.
    out = out.replace("= #", "=#");
    for u in [
        "KiB/s", "MiB/s", "GiB/s", "kB/s", "MB/s", "GB/s", "KiB", "MiB", "kB", "MB", "B/s",
    ] {
        out = out.replace(&format!("#{u}"), "#");
    }
    out
}

/// The report's lines whose layout does not depend on the figures.
fn layout_lines(s: &str) -> Vec<String> {
    s.lines()
        .filter(|l| {
            !(l.starts_with("fio-")
                || l.starts_with("nvme-bench-")
                || l.starts_with("     |")
                || l.starts_with("  lat (")
                || l.starts_with("  vda:")
                || l.contains("Laying out IO file"))
        })
        .map(skeleton)
        .collect()
}

#[test]
fn normal_report_layout_matches_fio() {
    let _g = serial();
    let job = "[global]\nioengine=psync\nfilename=data\nsize=256k\nbs=4k\n\
        [w]\nrw=write\nnumjobs=2\n[r]\nstonewall\nrw=read\nthread\n";
    let [(t, _), (o, _)] = both("normal", Some(job), &["--eta=never"]);
    let (t, o) = (ok(&t, "fio"), ok(&o, "ours"));
    // Short jobs: fio has no 500 ms bandwidth sample (no bw/iops lines).
    let drop_bw = |v: Vec<String>| -> Vec<String> {
        v.into_iter()
            .filter(|l| !l.starts_with(" bw (") && !l.starts_with(" iops "))
            .collect()
    };
    let (lt, lo) = (drop_bw(layout_lines(&t)), drop_bw(layout_lines(&o)));
    assert_eq!(lo, lt, "\nfio:\n{t}\nours:\n{o}");
    assert!(o.contains("; 0 zone resets\n"));
    assert!(o.contains("\n...\n"));
    assert!(o.contains("Starting 1 thread and 2 processes\n"), "{o}");
}

#[test]
fn bw_iops_lines_and_percentile_precision_like_fio() {
    let _g = serial();
    let args = [
        "--eta=never",
        "--name=x",
        "--ioengine=null",
        "--size=100g",
        "--runtime=2",
        "--time_based",
        "--rate_iops=200",
        "--percentile_list=50:99.5",
    ];
    let [(t, _), (o, _)] = both("bwline", None, &args);
    let (t, o) = (ok(&t, "fio"), ok(&o, "ours"));
    for (s, who) in [(&t, "fio"), (&o, "ours")] {
        let bw = s.lines().find(|l| l.starts_with("   bw (")).expect(who);
        assert!(bw.starts_with("   bw (  KiB/s): min=  "), "{who}: {bw}");
        let iops = s.lines().find(|l| l.starts_with("   iops")).expect(who);
        // min=%5llu: 200 IOPS is padded to five columns.
        assert!(iops.starts_with("   iops        : min=  "), "{who}: {iops}");
        assert!(s.contains("| 50.0th=["), "{who}: percentile precision: {s}");
        assert!(s.contains(", 99.5th=["), "{who}: {s}");
    }
}

#[test]
fn comparison_table_stays_off_stdout() {
    let _g = serial();
    let o = run_in(
        &scratch("table"),
        BENCH,
        &[
            "--eta=never",
            "--name=a",
            "--ioengine=null",
            "--size=64k",
            "--name=b",
            "--ioengine=null",
            "--size=64k",
        ],
    );
    let (out, err) = (ok(&o, "ours"), text(&o.stderr));
    // stderr is a pipe here, as under a tool that drives fio: nothing
    // there (bench-fio takes any stderr output as a failed run).
    assert!(!out.contains("nvme-bench comparison"), "{out}");
    assert!(err.trim().is_empty(), "stderr: {err}");
    // Asked for: on stderr, still not on stdout.
    let o = run_in(
        &scratch("table2"),
        BENCH,
        &[
            "--eta=never",
            "--compare",
            "--name=a",
            "--ioengine=null",
            "--size=64k",
            "--name=b",
            "--ioengine=null",
            "--size=64k",
        ],
    );
    let (out, err) = (ok(&o, "ours"), text(&o.stderr));
    assert!(!out.contains("nvme-bench comparison"), "{out}");
    assert!(err.contains("nvme-bench comparison"), "{err}");
}

/// Every job option fio 3.33 lists (`--cmdhelp=all`) is known to
/// nvme-bench — supported, or refused as unsupported, never "unknown" —
/// and docs/fio-compat.md's list of every fio option gives it the same
/// status.
#[test]
fn every_fio_option_is_known_and_documented() {
    let fio = ensure_fio();
    let o = Command::new(&fio).arg("--cmdhelp=all").output().unwrap();
    let names: Vec<String> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| l.trim_start().split([' ', ':']).next())
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .collect();
    assert!(names.len() > 200, "fio lists {} options", names.len());
    let docs = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/fio-compat.md"),
    )
    .unwrap();
    let section = docs
        .split("### Every fio 3.33 option")
        .nth(1)
        .expect("docs: the every-option section")
        .split("\n### ")
        .next()
        .unwrap();
    let (sup, uns) = section.split_once("Not supported").expect("two lists");
    let mut bad = Vec::new();
    for n in &names {
        let o = Command::new(BENCH)
            .arg(format!("--cmdhelp={n}"))
            .output()
            .unwrap();
        let said = format!("{}{}", text(&o.stdout), text(&o.stderr));
        let tick = format!("`{n}`");
        let listed = (sup.contains(&tick), uns.contains(&tick));
        if said.contains("No such command") {
            bad.push(format!("{n}: unknown to nvme-bench"));
        } else if said.contains("NOT supported") {
            if listed != (false, true) {
                bad.push(format!("{n}: unsupported, docs say {listed:?}"));
            }
        } else if listed != (true, false) {
            bad.push(format!("{n}: supported, docs say {listed:?}"));
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

/// fio lists each option in "global options" and "job options" under its
/// own name, whichever alias the job file used (`blocksize` is `bs`,
/// `readwrite` is `rw`, `ss` is `steadystate`, ...), with the value as
/// written; consumers such as fio-plot index those names.
#[test]
fn job_options_use_fios_names_for_aliases() {
    let job = "[global]\nfilename=aliasfile\nsize=1m\nioengine=psync\nnumber_ios=8\n\
        blocksize=4k\nreadwrite=randread\ntimeout=10\n\
        [j]\nss=iops:10%\nss_dur=2\nfileoffset=0\niodepth_batch_submit=1\nnr_files=1\n";
    let [(fio, _, _), (ours, _, _)] = common::both_json("aliases", job, &[]);
    for (what, a, b) in [
        (
            "global options",
            &fio["global options"],
            &ours["global options"],
        ),
        (
            "job options",
            &fio["jobs"][0]["job options"],
            &ours["jobs"][0]["job options"],
        ),
    ] {
        let a = a.as_object().unwrap();
        let b = b.as_object().unwrap();
        for (k, v) in a {
            assert_eq!(b.get(k), Some(v), "{what}.{k}: fio {a:?}, ours {b:?}");
        }
        for alias in [
            "blocksize",
            "readwrite",
            "timeout",
            "ss",
            "ss_dur",
            "fileoffset",
            "nr_files",
        ] {
            assert!(
                !b.contains_key(alias),
                "{what} lists the alias {alias}: {b:?}"
            );
        }
    }
}

/// A job file or command line fio refuses (an unknown option, a bad value,
/// a missing job file, an unknown command-line switch) ends with fio's exit
/// status, 1, in both tools, with or without `--parse-only`.
#[test]
fn refused_jobs_exit_like_fio() {
    let bad_opt = "[j]\nfilename=scratch.dat\nsize=1m\nfoo_bar=1\n";
    let bad_val = "[j]\nfilename=scratch.dat\nsize=1m\nrw=bogus\n";
    let cases: [(&str, Option<&str>, &[&str]); 8] = [
        ("exit-opt", Some(bad_opt), &[]),
        ("exit-opt-p", Some(bad_opt), &["--parse-only"]),
        ("exit-val", Some(bad_val), &[]),
        (
            "exit-missing",
            None,
            &["--parse-only", "no-such-job-file.fio"],
        ),
        (
            "exit-cl-opt",
            None,
            &[
                "--parse-only",
                "--name=x",
                "--size=1m",
                "--filename=s.dat",
                "--foo_bar=1",
            ],
        ),
        (
            "exit-cl-bs",
            None,
            &[
                "--parse-only",
                "--name=x",
                "--size=1m",
                "--filename=s.dat",
                "--bs=abc",
            ],
        ),
        (
            "exit-cl-rw",
            None,
            &["--name=x", "--size=1m", "--filename=s.dat", "--rw=bogus"],
        ),
        ("exit-switch", None, &["--zzz"]),
    ];
    for (tag, job, args) in cases {
        let [(t, _), (o, _)] = both(tag, job, args);
        assert_eq!(t.status.code(), Some(1), "fio {tag}: {}", text(&t.stderr));
        assert_eq!(
            o.status.code(),
            t.status.code(),
            "ours {tag}: {}",
            text(&o.stderr)
        );
    }
}

/// JSON `elapsed` is fio's: seconds since the jobs started (its genesis),
/// rounded up, when the report is written, the same in every job — two
/// stonewalled 1 s groups give 3 in both jobs (a job's own runtime gave 1).
#[test]
fn elapsed_counts_from_the_start_like_fio() {
    let job = "[global]\nfilename=scratch.dat\nsize=8m\nrw=read\nioengine=psync\n\
               runtime=1\ntime_based=1\n[a]\n[b]\nstonewall\n";
    let [(t, _), (o, _)] = both("elapsed", Some(job), &["--output-format=json"]);
    let el = |out: &Output, who: &str| -> Vec<u64> {
        let v: Value = serde_json::from_str(&ok(out, who)).unwrap();
        v["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|j| j["elapsed"].as_u64().unwrap())
            .collect()
    };
    let (t, o) = (el(&t, "fio"), el(&o, "ours"));
    assert_eq!(t.len(), 2);
    assert!(t[0] == t[1] && t[0] >= 2, "fio: {t:?}");
    assert_eq!(o, t, "ours {o:?}, fio {t:?}");
}
