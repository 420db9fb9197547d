//! fio 3.33's `ignore_error` and `error_dump`, paired with Debian's fio on
//! a 1 MiB tmpfs: a 2 MiB psync write fills it and every later write fails
//! with ENOSPC. With ENOSPC in the write list (by name or number) each is
//! counted (`total_err`, `first_error`), the job runs to its end and exits
//! 0, and fio reports `first_error` as the job's `error`; with the list not
//! naming it the first ENOSPC ends the job, and as fio's io_queue_event it
//! is still counted since write is now in `continue_on_error`. Bad names
//! (EILSEQ is not in fio's str2error table), and a fourth list, are
//! refused like fio. `error_dump=0` (fio's default) prints no per-error
//! line, `error_dump=1` one per error. `verify_fatal` and `verify_async`
//! are compared on a `verify_only` pass over two corrupted blocks.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

const BENCH: &str = env!("CARGO_BIN_EXE_nvme-bench");

/// A 1 MiB tmpfs, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn new(tag: &str) -> Tmpfs {
        let d = common::scratch(tag);
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
            .arg(&d)
            .status()
            .unwrap()
            .success();
        assert!(ok, "mount tmpfs on {}", d.display());
        Tmpfs(d)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Run `tool` writing 2 MiB to the tmpfs: (exit status, job JSON, stderr).
fn run(tool: &str, dir: &Path, extra: &[&str]) -> (i32, Value, String) {
    let _ = std::fs::remove_file(dir.join("f"));
    let o = Command::new(tool)
        .current_dir(dir)
        .args([
            "--name=j",
            "--filename=f",
            "--rw=write",
            "--bs=64k",
            "--size=2m",
            "--ioengine=psync",
            "--output-format=json",
        ])
        .args(extra)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    let j: Value = match out.find('{') {
        Some(i) => serde_json::from_str(&out[i..]).unwrap_or(Value::Null),
        None => Value::Null,
    };
    (o.status.code().unwrap_or(-1), j["jobs"][0].clone(), err)
}

fn summary(j: &Value) -> Vec<Value> {
    vec![
        j["error"].clone(),
        j["total_err"].clone(),
        j["first_error"].clone(),
        j["write"]["io_bytes"].clone(),
        j["write"]["total_ios"].clone(),
    ]
}

#[test]
fn ignore_error_like_fio() {
    let _g = common::serial();
    let fio = common::ensure_fio();
    let t = Tmpfs::new("ignore-error");
    let cases: &[(&[&str], i32)] = &[
        // ENOSPC listed for writes: 16 writes fit, 16 fail and are counted.
        (&["--ignore_error=,ENOSPC"], 0),
        (&["--ignore_error=,28"], 0),
        (&["--ignore_error=,-28"], 0),
        (&["--ignore_error=EIO,EIO:ENOSPC"], 0),
        // Not listed: the first ENOSPC ends the job (and is counted).
        (&["--ignore_error=,EIO"], 1),
        (&["--ignore_error=ENOSPC"], 1),
        (&["--continue_on_error=write"], 1),
        (&[], 1),
        // continue_on_error=all with ENOSPC listed.
        (&["--continue_on_error=all", "--ignore_error=,ENOSPC"], 0),
    ];
    for (extra, want) in cases {
        let (fc, fj, ferr) = run(&fio, &t.0, extra);
        let (c, j, err) = run(BENCH, &t.0, extra);
        assert_eq!(fc, *want, "fio {extra:?}: {ferr}");
        assert_eq!(c, fc, "exit status {extra:?}: {err}");
        assert_eq!(summary(&j), summary(&fj), "{extra:?}: fio {fj}\nours {j}");
    }
    let (_, j, _) = run(BENCH, &t.0, &["--ignore_error=,ENOSPC"]);
    assert_eq!(j["total_err"], 16, "{j}");
    assert_eq!(j["error"], 28, "{j}");
}

#[test]
fn ignore_error_refuses_bad_names_like_fio() {
    let fio = common::ensure_fio();
    let d = common::scratch("ignore-error-bad");
    for (v, msg) in [
        ("EIO:EILSEQ,EIO", "Unknown error EILSEQ"),
        (",EFOO", "Unknown error EFOO"),
        ("abc", "Unknown error abc"),
        (",,,EIO", "Illegal error type"),
    ] {
        let opt = format!("--ignore_error={v}");
        for tool in [fio.as_str(), BENCH] {
            let o = Command::new(tool)
                .current_dir(&d)
                .args(["--name=j", "--filename=f", "--size=64k", &opt])
                .output()
                .unwrap();
            let all = String::from_utf8_lossy(&o.stderr).into_owned()
                + &String::from_utf8_lossy(&o.stdout);
            assert!(!o.status.success(), "{tool} accepted {opt}: {all}");
            assert!(all.contains(msg), "{tool} {opt}: {all}");
        }
    }
}

#[test]
fn error_dump_like_fio() {
    let _g = common::serial();
    let fio = common::ensure_fio();
    let t = Tmpfs::new("error-dump");
    for (dump, lines) in [
        (None, 0),
        (Some("--error_dump=0"), 0),
        (Some("--error_dump=1"), 16),
    ] {
        let mut extra = vec!["--ignore_error=,ENOSPC"];
        extra.extend(dump);
        let (_, _, ferr) = run(&fio, &t.0, &extra);
        let (_, _, err) = run(BENCH, &t.0, &extra);
        let n = |s: &str| s.lines().filter(|l| l.contains("io_u error")).count();
        assert_eq!(n(&ferr), lines, "fio {dump:?}: {ferr}");
        assert_eq!(n(&err), n(&ferr), "{dump:?}: ours {err}");
    }
}

/// Each tool writes its own 64 KiB md5-verified file (`do_verify=0`), two
/// blocks are corrupted (5 and 9; with `intervals`, the data of the first
/// 512-byte interval of block 5 only), then a `verify_only` pass with
/// `extra` runs: (exit status, error, total_err, first_error, read io_bytes,
/// read total_ios).
fn verify_run(tool: &str, tag: &str, intervals: bool, extra: &[&str]) -> Vec<Value> {
    let d = common::scratch(tag);
    let mut base = vec![
        "--name=j",
        "--ioengine=psync",
        "--filename=f",
        "--size=64k",
        "--bs=4k",
        "--rw=write",
        "--verify=md5",
        "--output-format=json",
    ];
    if intervals {
        base.push("--verify_interval=512");
    }
    let run = |args: &[&str]| {
        let o = Command::new(tool)
            .current_dir(&d)
            .args(&base)
            .args(args)
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        let j: Value = match out.find('{') {
            Some(i) => serde_json::from_str(&out[i..]).unwrap_or(Value::Null),
            None => Value::Null,
        };
        (o.status.code().unwrap_or(-1), j["jobs"][0].clone())
    };
    let (c, _) = run(&["--do_verify=0"]);
    assert_eq!(c, 0, "{tool}: write pass");
    let mut b = std::fs::read(d.join("f")).unwrap();
    if intervals {
        b[5 * 4096 + 300] ^= 1;
    } else {
        b[5 * 4096 + 2000] ^= 1;
        b[9 * 4096 + 3000] ^= 1;
    }
    std::fs::write(d.join("f"), &b).unwrap();
    let mut args = vec!["--verify_only=1"];
    args.extend(extra);
    let (c, j) = run(&args);
    vec![
        Value::from(c),
        j["error"].clone(),
        j["total_err"].clone(),
        j["first_error"].clone(),
        j["read"]["io_bytes"].clone(),
        j["read"]["total_ios"].clone(),
    ]
}

#[test]
fn verify_fatal_like_fio() {
    let fio = common::ensure_fio();
    let cases: &[(bool, &[&str])] = &[
        (false, &["--continue_on_error=verify"]),
        (false, &["--continue_on_error=verify", "--verify_fatal=1"]),
        (false, &["--verify_fatal=1"]),
        (false, &[]),
        // An early interval's data: reported but the last interval decides
        // (the block passes), unless verify_fatal.
        (true, &["--continue_on_error=verify"]),
        (true, &["--continue_on_error=verify", "--verify_fatal=1"]),
    ];
    for (intervals, extra) in cases {
        let f = verify_run(&fio, "vfatal-fio", *intervals, extra);
        let o = verify_run(BENCH, "vfatal-ours", *intervals, extra);
        assert_eq!(o, f, "{extra:?} intervals {intervals}: [status, error, total_err, first_error, io_bytes, total_ios]");
    }
    // With verify_fatal the pass stops at block 5 (6 reads), error counted.
    let o = verify_run(
        BENCH,
        "vfatal-ours",
        false,
        &["--continue_on_error=verify", "--verify_fatal=1"],
    );
    assert_eq!(o, [0, 84, 1, 84, 24576, 6].map(Value::from).to_vec());
}

/// fio 3.33 with verify_async and a fatal verify error may hang or read one
/// block more (its verify threads race the submitter); with
/// continue_on_error=verify every block is read and the outcome is inline
/// verify's, which is what nvme-bench does.
#[test]
fn verify_async_like_fio() {
    let fio = common::ensure_fio();
    let extra = ["--continue_on_error=verify", "--verify_async=2"];
    let f = verify_run(&fio, "vasync-fio", false, &extra);
    let o = verify_run(BENCH, "vasync-ours", false, &extra);
    let inline = verify_run(BENCH, "vasync-inline", false, &extra[..1]);
    assert_eq!(
        o, f,
        "[status, error, total_err, first_error, io_bytes, total_ios]"
    );
    assert_eq!(o, inline);
    assert_eq!(o, [0, 84, 2, 84, 65536, 16].map(Value::from).to_vec());
}
