//! JSON compatibility against the real thing: Debian's fio and nvme-bench
//! run the same job file (io_uring on a host file, direct=1); every key
//! path of our JSON (outside `nvme_bench`) must exist in fio's with the same
//! type, and the figures must be within a sane factor of each other.

mod common;

use std::path::Path;

use common::{ensure_fio, order_mismatches, ordered, run_stdout, shape_mismatches};

const BENCH: &str = env!("CARGO_BIN_EXE_nvme-bench");

#[test]
fn json_matches_fio() {
    let fio = ensure_fio();
    let dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("fio-compat-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("data");
    let job = dir.join("compat.fio");
    std::fs::write(
        &job,
        format!(
            "[global]\nioengine=io_uring\ndirect=1\nfilename={}\nsize=32m\nbs=4k\n\
             runtime=2\ntime_based\n\n[randread]\nrw=randread\niodepth=8\n\n\
             [randwrite]\nrw=randwrite\niodepth=4\nstonewall\n",
            file.display()
        ),
    )
    .unwrap();
    let job = job.to_str().unwrap();
    for fmt in ["--output-format=json", "--output-format=json+"] {
        let theirs_raw = run_stdout(&fio, &[fmt, job]);
        let ours_raw = run_stdout(BENCH, &[fmt, "--eta=never", job]);
        let theirs: serde_json::Value = serde_json::from_slice(&theirs_raw).unwrap();
        // Only JSON on stdout: the whole of it must parse.
        let ours: serde_json::Value = serde_json::from_slice(&ours_raw)
            .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e})"));
        let bad = shape_mismatches(&theirs, &ours);
        assert!(
            bad.is_empty(),
            "{fmt}: {} mismatches:\n{}",
            bad.len(),
            bad.join("\n")
        );
        // Keys in fio's order (serde_json's preserve_order; objects built
        // in fio's order): iodepth_level 1, 2, 4, ..., percentiles 1, 5,
        // 10, ..., "job options" as written with filename last.
        let bad = order_mismatches(&ordered(&theirs_raw), &ordered(&ours_raw));
        assert!(
            bad.is_empty(),
            "{fmt}: key order differs from fio's in {} objects:\n{}",
            bad.len(),
            bad.join("\n")
        );
        for (k, v) in ours["global options"].as_object().unwrap() {
            assert!(v.is_string(), "global options.{k}: {v}");
        }
        // What consumers index must be there.
        for j in ours["jobs"].as_array().unwrap() {
            for (k, v) in j["job options"].as_object().unwrap() {
                assert!(v.is_string(), "job options.{k}: {v}");
            }
            for k in ["iodepth", "numjobs", "bs", "rw", "ioengine"] {
                assert!(j["job options"][k].is_string(), "job options.{k} in {j}");
            }
            let d = if j["jobname"] == "randread" {
                "read"
            } else {
                "write"
            };
            assert!(j[d]["clat_ns"]["percentile"]["99.000000"].is_u64());
            assert!(j[d]["lat_ns"]["mean"].is_f64());
            // Samples are recorded off the I/O path (deferred): each
            // completed I/O is in every latency series exactly once.
            assert!(j[d]["total_ios"].as_u64().unwrap() > 0, "{j}");
            for series in ["slat_ns", "clat_ns", "lat_ns"] {
                assert_eq!(j[d][series]["N"], j[d]["total_ios"], "{series}: {j}");
            }
        }
        assert!(ours["fio version"]
            .as_str()
            .unwrap()
            .starts_with("nvme-bench"));
        // Figures of the two within a sane factor (same file, same workload).
        for (i, d) in [(0, "read"), (1, "write")] {
            let a = theirs["jobs"][i][d]["iops"].as_f64().unwrap();
            let b = ours["jobs"][i][d]["iops"].as_f64().unwrap();
            assert!(a > 0.0 && b > 0.0, "{d}: iops fio {a}, ours {b}");
            let r = b / a;
            assert!((0.2..5.0).contains(&r), "{d}: iops fio {a:.0}, ours {b:.0}");
            let a = theirs["jobs"][i][d]["clat_ns"]["percentile"]["50.000000"]
                .as_f64()
                .unwrap();
            let b = ours["jobs"][i][d]["clat_ns"]["percentile"]["50.000000"]
                .as_f64()
                .unwrap();
            let r = b / a;
            assert!(
                (0.2..5.0).contains(&r),
                "{d}: median clat fio {a}, ours {b}"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The lines of fio's normal output that tools and people grep, in the same
/// shapes: the job header, the per-job block's key lines, the run-status
/// summary and the disk stats of the disk holding the file.
#[test]
fn normal_output_has_fios_shape() {
    let fio = ensure_fio();
    let dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("fio-normal-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("data");
    let job = dir.join("normal.fio");
    std::fs::write(
        &job,
        format!(
            "[global]\nioengine=io_uring\ndirect=1\nfilename={}\nsize=16m\nbs=4k\n\
             runtime=1\ntime_based\n\n[rr]\nrw=randread\niodepth=4\n",
            file.display()
        ),
    )
    .unwrap();
    let job = job.to_str().unwrap();
    let text = |cmd: &str, args: &[&str]| {
        let o = std::process::Command::new(cmd).args(args).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap()
    };
    let theirs = text(&fio, &[job]);
    let ours = text(BENCH, &["--eta=never", job]);
    // A line's shape: digits and unit-bearing numbers folded, so
    // "bw=1123MiB/s (1178MB/s)" and "bw=834MiB/s (874MB/s)" compare equal.
    fn shape(l: &str) -> String {
        let mut out = String::new();
        let mut prev_num = false;
        for c in l.chars() {
            let num = c.is_ascii_digit() || (prev_num && c == '.');
            if num {
                if !prev_num {
                    out.push('#');
                }
            } else {
                out.push(c);
            }
            prev_num = num;
        }
        // Units after a number vary with magnitude (k/M, KiB/MiB, usec/nsec).
        for u in [
            "KiB", "MiB", "GiB", "kB", "MB", "GB", "#k", "#M", "nsec", "usec", "msec",
        ] {
            out = out.replace(u, if u.starts_with('#') { "#" } else { "U" });
        }
        out
    }
    let wanted = |l: &str| {
        let t = l.trim_start();
        t.starts_with("rr: (g=0)")
            || t.starts_with("rr: (groupid=0")
            || t.starts_with("read: IOPS=")
            || t.starts_with("Run status group")
            || t.starts_with("READ: bw=")
            || t.starts_with("Disk stats")
            || t.contains(": ios=")
            || t.starts_with("issued rwts:")
            || t.starts_with("latency   :")
    };
    let pick = |s: &str| -> Vec<String> {
        s.lines()
            .filter(|l| wanted(l))
            .map(|l| {
                // pid and date differ by nature; keep the line's frame.
                let l = l.split(": pid=").next().unwrap();
                shape(l)
            })
            .collect()
    };
    let (t, o) = (pick(&theirs), pick(&ours));
    assert!(
        t.len() >= 8,
        "fio's output lacks lines we expect:\n{theirs}"
    );
    assert_eq!(t, o, "\nfio:\n{theirs}\nnvme-bench:\n{ours}");
    let _ = std::fs::remove_dir_all(&dir);
}
