//! fio's command-line conventions that tools rely on, against Debian's fio:
//! `--version` (fio-plot's bench-fio looks for `fio-3` in it) and what a
//! run without arguments prints and returns.

mod common;

use std::process::Command;

const BENCH: &str = env!("CARGO_BIN_EXE_nvme-bench");

fn run(cmd: &str, args: &[&str]) -> (i32, String, String) {
    let o = Command::new(cmd).args(args).output().unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn version_reads_as_fio_3() {
    let fio = common::ensure_fio();
    let (fc, fout, _) = run(&fio, &["--version"]);
    assert_eq!(fc, 0);
    assert!(fout.starts_with("fio-3"), "fio says {fout:?}");
    for args in [&["--version"][..], &["-v"], &["--version", "job.fio"]] {
        let (c, out, _) = run(BENCH, args);
        assert_eq!(c, 0, "{args:?}");
        // fio's own version first (what fio's tools match), then ours.
        let want = format!("fio-3.33 (nvme-bench {})\n", env!("CARGO_PKG_VERSION"));
        assert_eq!(out, want, "{args:?}");
        assert!(out.starts_with(fout.trim_end()), "{out:?} vs fio {fout:?}");
    }
}

#[test]
fn no_arguments_behaves_like_fio() {
    let fio = common::ensure_fio();
    let (fc, fout, ferr) = run(&fio, &[]);
    let (c, out, err) = run(BENCH, &[]);
    assert_eq!(c, fc, "exit status: fio {fc}, ours {c}");
    // Version line first on stdout, then usage; the complaint on stderr.
    let first = |s: &str| s.lines().next().unwrap_or("").to_string();
    assert!(first(&out).starts_with(&first(&fout)), "{out}");
    assert!(out.lines().count() > 3, "{out}");
    assert_eq!(err.trim(), ferr.trim());
}
