//! fio's own tools as clients: fio-plot's runner `bench-fio` drives
//! nvme-bench in place of fio (it runs whatever `fio` is first on PATH),
//! and `fio-plot` draws every one of its chart types from the results,
//! log graphs included.
//!
//! fio-plot (PyPI, pinned) is installed into a virtualenv kept under the
//! target directory, so only the first run downloads it.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::scratch;

const BENCH: &str = env!("CARGO_BIN_EXE_nvme-bench");
const FIO_PLOT: &str = "fio-plot==1.1.21";

/// The virtualenv's bin directory, with bench-fio and fio-plot in it.
fn ensure_fio_plot() -> PathBuf {
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fio-plot-venv");
    let bin = venv.join("bin");
    if bin.join("bench-fio").exists() && bin.join("fio-plot").exists() {
        return bin;
    }
    let mk = || {
        Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .is_ok_and(|s| s.success())
    };
    if !mk() {
        // Debian splits venv (ensurepip) into its own package.
        common::apt_install("python3-venv");
        let _ = std::fs::remove_dir_all(&venv);
        assert!(mk(), "python3 -m venv failed");
    }
    let st = Command::new(bin.join("pip"))
        .args(["install", "-q", FIO_PLOT])
        .status()
        .expect("pip");
    assert!(st.success(), "pip install {FIO_PLOT} failed");
    bin
}

fn run(cmd: &Path, args: &[&str], path: &str, dir: &Path) -> String {
    let o = Command::new(cmd)
        .args(args)
        .current_dir(dir)
        .env("PATH", path)
        .output()
        .expect("spawn");
    let out = format!(
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        o.status.success(),
        "{} {args:?} failed:\n{out}",
        cmd.display()
    );
    out
}

#[test]
fn bench_fio_drives_nvme_bench_and_fio_plot_draws_every_chart() {
    let bin = ensure_fio_plot();
    let dir = scratch("fio-plot");
    // `fio` on PATH is nvme-bench.
    let shim = dir.join("shim");
    std::fs::create_dir_all(&shim).unwrap();
    std::os::unix::fs::symlink(BENCH, shim.join("fio")).unwrap();
    let path = format!(
        "{}:{}:{}",
        shim.display(),
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let target = dir.join("target.img");
    std::fs::write(&target, vec![0u8; 16 << 20]).unwrap();
    let out = dir.join("out");
    let target_s = target.to_str().unwrap();
    let out_s = out.to_str().unwrap();
    let log = run(
        &bin.join("bench-fio"),
        &[
            "-d",
            target_s,
            "-t",
            "file",
            "-s",
            "16m",
            "-o",
            out_s,
            "-m",
            "randread",
            "randwrite",
            "--iodepth",
            "1",
            "4",
            "--numjobs",
            "1",
            "2",
            "--runtime",
            "2",
            "--time-based",
            "-e",
            "libaio",
            "--destructive",
            "--quiet",
        ],
        &path,
        &dir,
    );
    // bench-fio refuses a `fio` whose --version lacks "fio-3".
    assert!(!log.contains("Could not detect"), "{log}");
    let res = out.join("target.img").join("4k");
    for mode in ["randread", "randwrite"] {
        for (qd, nj) in [(1, 1), (1, 2), (4, 1), (4, 2)] {
            let json = res.join(format!("{mode}-{qd}-{nj}.json"));
            let text = std::fs::read_to_string(&json)
                .unwrap_or_else(|e| panic!("{}: {e}\n{log}", json.display()));
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            let jobs = v["jobs"].as_array().unwrap();
            assert_eq!(jobs.len(), nj, "{}", json.display());
            let d = if mode == "randread" { "read" } else { "write" };
            for j in jobs {
                assert!(j[d]["io_bytes"].as_u64().unwrap() > 0, "{}", json.display());
            }
            // Per-job logs for every job (bench-fio asks for bw, lat, iops).
            for n in 1..=nj {
                for kind in ["bw", "iops", "lat", "clat"] {
                    let l = res.join(format!("{mode}-iodepth-{qd}-numjobs-{nj}_{kind}.{n}.log"));
                    let t = std::fs::read_to_string(&l)
                        .unwrap_or_else(|e| panic!("{}: {e}", l.display()));
                    assert!(t.lines().count() >= 1, "{} is empty", l.display());
                }
            }
        }
    }
    // Every chart type fio-plot has.
    let res_s = res.to_str().unwrap();
    let charts: [(&str, Vec<&str>); 6] = [
        ("2d-qd", vec!["-l", "-r", "randread"]),
        ("2d-nj", vec!["-N", "-r", "randread"]),
        ("3d", vec!["-L", "-t", "iops", "-r", "randread"]),
        (
            "histogram",
            vec!["-H", "-r", "randread", "-d", "4", "-n", "1"],
        ),
        (
            "loggraph",
            vec![
                "-g",
                "-t",
                "bw",
                "iops",
                "lat",
                "-r",
                "randwrite",
                "-d",
                "1",
                "4",
                "-n",
                "1",
                "2",
            ],
        ),
        (
            "compare",
            vec!["-C", "-r", "randread", "-d", "4", "-n", "1"],
        ),
    ];
    for (name, args) in charts {
        let png = dir.join(format!("{name}.png"));
        let mut a = vec!["-i", res_s];
        if name == "compare" {
            // Two result sets side by side (the same one twice).
            a.push(res_s);
        }
        a.extend(["-T", name]);
        a.extend(args);
        a.extend(["-o", png.to_str().unwrap()]);
        let said = run(&bin.join("fio-plot"), &a, &path, &dir);
        let size = std::fs::metadata(&png)
            .unwrap_or_else(|e| panic!("{name}: no chart ({e}):\n{said}"))
            .len();
        assert!(size > 10_000, "{name}: {size}-byte chart:\n{said}");
        assert!(!said.contains("ERROR"), "{name}:\n{said}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
