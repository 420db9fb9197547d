//! fio's mtd.fio example, side by side with Debian's fio 3.33: its
//! `block_error_percentiles` and its `rw=trimwrite` with a trim block size
//! other than the write size (`blocksize=512,512,16384`).
//!
//! - Offsets: fio 3.33's sequential trimwrite walks trims and writes each
//!   in its own size, and trims again once the last write started where
//!   the last trim did (io_u.c `set_rw_ddir`): with 16 KiB trims, trim 0,
//!   write 0, trim 16k, 32 writes 512..16k, trim 32k, ... until the next
//!   trim would pass the region's end. Both tools' I/Os (direction,
//!   offset, length, in order) are compared: fio's from `--debug=io`'s
//!   `complete:` lines, nvme-bench's from its iops log with `log_offset`
//!   (a line per I/O; psync completes them in order). Also the amounts per
//!   direction in the JSON.
//! - `block_error_percentiles`: the JSON's `block` object (percentile keys
//!   and trim counts, the five states in fio's order) and the normal
//!   output's `block lifetime percentiles` / `states` lines, on jobs fio
//!   3.33 completes: at most one trimmed block, since fio's sort reads
//!   each 32-bit block word as 64 bits and asserts (stat.c
//!   `block_state_category`) once two are trimmed — mtd.fio itself among
//!   them; there, nvme-bench reports the counts fio means (checked here
//!   too, with fio's abort).
//!
//! Trims need a block device: a loop device over a sparse file (root and
//! `losetup`); without one, the tests that need it say so and pass.

mod common;

use std::path::Path;
use std::process::Command;

use common::{ensure_fio, json_in, order_mismatches, ordered, scratch, Loop, BENCH};
use serde_json::Value;

/// Run `cmd` on `dir/job.fio` with `args`; (success, stdout, stderr).
fn run(dir: &Path, cmd: &str, args: &[&str]) -> (bool, String, String) {
    let mut c = Command::new(cmd);
    c.current_dir(dir);
    if cmd == BENCH {
        c.arg("--eta=never");
    }
    let o = c.args(args).arg("job.fio").output().expect(cmd);
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// (io_bytes, total_ios) of read, write, trim of every job.
fn amounts(v: &Value) -> Vec<[(u64, u64); 3]> {
    v["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| {
            ["read", "write", "trim"].map(|d| {
                (
                    j[d]["io_bytes"].as_u64().unwrap(),
                    j[d]["total_ios"].as_u64().unwrap(),
                )
            })
        })
        .collect()
}

/// fio's `--debug=io` `complete:` lines as (ddir, offset, length);
/// ddir 0 read, 1 write, 2 trim.
fn fio_ios(debug: &str) -> Vec<(u64, u64, u64)> {
    debug
        .lines()
        .filter(|l| l.contains(" complete: io_u"))
        .map(|l| {
            let field = |k: &str| {
                let s = &l[l.find(k).unwrap() + k.len()..];
                let s = s.split([',', ' ']).next().unwrap();
                match s.strip_prefix("0x") {
                    Some(h) => u64::from_str_radix(h, 16).unwrap(),
                    None => s.parse().unwrap(),
                }
            };
            (field("ddir="), field("off="), field("len="))
        })
        .collect()
}

/// nvme-bench's iops log with log_offset (`time, 1, ddir, bs, offset,
/// prio`) as (ddir, offset, length).
fn our_ios(log: &str) -> Vec<(u64, u64, u64)> {
    log.lines()
        .map(|l| {
            let f: Vec<u64> = l.split(", ").map(|x| x.trim().parse().unwrap()).collect();
            (f[2], f[4], f[3])
        })
        .collect()
}

/// The normal output's block lines (heading to states).
fn block_lines(out: &str) -> Vec<String> {
    let mut v = Vec::new();
    let mut on = false;
    for l in out.lines() {
        if l.contains("block lifetime percentiles") {
            on = true;
        }
        if on {
            v.push(l.to_string());
            if l.contains("states               :") {
                on = false;
            }
        }
    }
    v
}

/// Sequential trimwrite with a trim size other than the write size
/// (mtd.fio's 512/16384 and the other way round), loops included: the
/// same I/Os in the same order as fio's, and the same amounts.
#[test]
fn split_trimwrite_offsets_like_fio() {
    let fio = ensure_fio();
    let base = scratch("mtd-split");
    let Some(lo) = Loop::new(&base, 1 << 20) else {
        eprintln!("no loop device: skipped");
        return;
    };
    for (bs, size, loops) in [
        ("512,512,16384", "64k", 4),
        ("512,16384,512", "64k", 2),
        ("4k,4k,8k", "32k", 1),
    ] {
        let job = format!(
            "[global]\nfilename={}\nioengine=psync\nignore_error=,EIO\nblocksize={bs}\n\
             size={size}\n[trimwrite]\nrw=trimwrite\nloops={loops}\n",
            lo.dev
        );
        let dir = scratch("mtd-split-run");
        // fio: its I/Os from --debug=io, its amounts from a JSON run.
        std::fs::write(dir.join("job.fio"), &job).unwrap();
        let (ok, dbg, err) = run(&dir, &fio, &["--debug=io"]);
        assert!(ok, "fio {bs}: {err}");
        let theirs = fio_ios(&dbg);
        let (ok, out, err) = run(&dir, &fio, &["--output-format=json"]);
        assert!(ok, "fio {bs}: {err}");
        let t_amounts = amounts(&json_in("fio", &out));
        // nvme-bench: an iops log with offsets.
        std::fs::write(
            dir.join("job.fio"),
            format!("{job}write_iops_log=tw\nlog_offset=1\n"),
        )
        .unwrap();
        let (ok, out, err) = run(&dir, BENCH, &["--output-format=json"]);
        assert!(ok, "nvme-bench {bs}: {err}");
        let o_amounts = amounts(&json_in("nvme-bench", &out));
        let ours = our_ios(&std::fs::read_to_string(dir.join("tw_iops.1.log")).unwrap());
        assert!(!theirs.is_empty(), "no fio I/Os in --debug=io:\n{dbg}");
        let first = theirs.iter().zip(&ours).position(|(a, b)| a != b);
        assert!(
            theirs == ours,
            "bs={bs}: I/Os differ (fio {} I/Os, ours {}; first difference at {first:?}: \
             fio {:?}, ours {:?})",
            theirs.len(),
            ours.len(),
            first.and_then(|i| theirs.get(i)),
            first.and_then(|i| ours.get(i)),
        );
        assert_eq!(t_amounts, o_amounts, "bs={bs}: amounts (read, write, trim)");
        eprintln!(
            "bs={bs} size={size} loops={loops}: {} I/Os alike, amounts {o_amounts:?}",
            ours.len()
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// `block_error_percentiles` on jobs fio 3.33 completes: the JSON's
/// `block` object (or its absence) and key order, and the normal output's
/// block lines, equal to fio's.
#[test]
fn block_error_percentiles_like_fio() {
    let fio = ensure_fio();
    let base = scratch("mtd-block");
    let lo = Loop::new(&base, 1 << 20);
    if lo.is_none() {
        eprintln!("no loop device: the block-device cases are skipped");
    }
    let file = base.join("f.dat");
    let mut cases: Vec<(String, &str)> = Vec::new();
    if let Some(lo) = &lo {
        let d = &lo.dev;
        // One block trimmed 4 times (loops); fio reads one entry past the
        // blocks at 100%.
        cases.push((
            format!("filename={d}\nsize=16k\nrw=trimwrite\nloops=4\npercentile_list=50:100\n"),
            "one block, 4 loops",
        ));
        // One trimmed, one unwritten.
        cases.push((
            format!("filename={d}\nsize=32k\nrw=trim\nnumber_ios=1\n"),
            "a trimmed and an unwritten block",
        ));
        // No trims: fio prints the heading and zero states, no JSON block.
        cases.push((format!("filename={d}\nsize=64k\nrw=write\n"), "no trims"));
    }
    // A regular file: the trim fails (ENOTTY, 25): no block trimmed.
    cases.push((
        format!("filename={}\nsize=64k\nrw=trimwrite\n", file.display()),
        "regular file",
    ));
    for (opts, what) in &cases {
        let job = format!(
            "[global]\nioengine=psync\nblocksize=512,512,16384\n\
             [j]\nblock_error_percentiles=1\n{opts}"
        );
        let dir = scratch("mtd-block-run");
        std::fs::write(dir.join("job.fio"), &job).unwrap();
        let mut docs = Vec::new();
        for cmd in [fio.as_str(), BENCH] {
            let (ok_j, json, err) = run(&dir, cmd, &["--output-format=json"]);
            let (ok_n, text, _) = run(&dir, cmd, &[]);
            assert_eq!(ok_j, ok_n, "{cmd} {what}: {err}");
            let v = json_in(cmd, &json);
            let j = &v["jobs"][0];
            docs.push((
                ok_j,
                j.get("block").cloned(),
                j["error"].clone(),
                amounts(&v),
                block_lines(&text),
                ordered(json.as_bytes()),
            ));
            let _ = std::fs::remove_file(&file);
        }
        let (t, o) = (&docs[0], &docs[1]);
        assert_eq!(t.0, o.0, "{what}: exit status");
        assert_eq!(t.1, o.1, "{what}: JSON block");
        assert_eq!(t.2, o.2, "{what}: error");
        assert_eq!(t.3, o.3, "{what}: amounts");
        assert!(!t.4.is_empty(), "{what}: no block lines from fio");
        assert_eq!(t.4, o.4, "{what}: normal output's block lines");
        let m = order_mismatches(&t.5, &o.5);
        assert!(m.is_empty(), "{what}: key order:\n{}", m.join("\n"));
        eprintln!("{what}: block {:?}, lines {:?}", o.1, o.4);
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// mtd.fio itself (as tests/fio_real_examples.rs swaps it: psync, the loop
/// device, mtd's `skip_bad` dropped): fio 3.33 does its I/O, then aborts on
/// its block sort's assertion; nvme-bench reports every trimwrite block
/// trimmed 4 times (its 4 loops). Without `block_error_percentiles` fio
/// completes: both tools move the same amounts in each of the three jobs.
#[test]
fn mtd_example_like_fio() {
    let fio = ensure_fio();
    let base = scratch("mtd-example");
    let Some(lo) = Loop::new(&base, 1 << 20) else {
        eprintln!("no loop device: skipped");
        return;
    };
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fio-3.33-examples/mtd.fio"),
    )
    .unwrap();
    let job: String = text
        .lines()
        .filter(|l| !l.starts_with("skip_bad"))
        .map(|l| match l {
            "filename=/dev/mtd0" => format!("filename={}", lo.dev),
            "ioengine=mtd" => "ioengine=psync".to_string(),
            _ => l.to_string(),
        })
        .map(|l| l + "\n")
        .collect();
    assert!(job.contains("ioengine=psync") && job.contains(&lo.dev));
    let dir = scratch("mtd-example-run");
    std::fs::write(dir.join("job.fio"), &job).unwrap();
    // fio 3.33: the assertion.
    let (ok, _, err) = run(&dir, &fio, &["--output-format=json"]);
    assert!(
        !ok && err.contains("block_state_category: Assertion"),
        "fio 3.33 was expected to abort on its block sort: {err}"
    );
    let (ok, out, err) = run(&dir, BENCH, &["--output-format=json"]);
    assert!(ok, "nvme-bench: {err}");
    let v = json_in("nvme-bench", &out);
    let tw = &v["jobs"][2];
    assert_eq!(tw["jobname"], "trimwrite");
    // 1 MiB in 16 KiB trim blocks, each trimmed once per loop.
    let b = &tw["block"];
    assert!(
        b["percentiles"]
            .as_object()
            .unwrap()
            .values()
            .all(|x| x == 4),
        "{b}"
    );
    assert_eq!(b["states"]["trimmed"], 64, "{b}");
    assert_eq!(b["states"]["unwritten"], 0, "{b}");
    let ours = amounts(&v);
    // The amounts, against fio's run without the option.
    let plain: String = job
        .lines()
        .filter(|l| !l.starts_with("block_error_percentiles"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(dir.join("job.fio"), &plain).unwrap();
    let (ok, out, err) = run(&dir, &fio, &["--output-format=json"]);
    assert!(ok, "fio without block_error_percentiles: {err}");
    let theirs = amounts(&json_in("fio", &out));
    assert_eq!(theirs, ours, "amounts per job (read, write, trim)");
    eprintln!("mtd.fio: amounts {ours:?}, trimwrite block {b}");
    let _ = std::fs::remove_dir_all(dir);
}

/// fio's limits: several files fail the run before anything is printed
/// (`--parse-only` takes them, as fio's); more than 8192 trim blocks fail
/// the job with EINVAL.
#[test]
fn block_error_percentiles_limits_like_fio() {
    let fio = ensure_fio();
    let dir = scratch("mtd-limits");
    std::fs::write(
        dir.join("job.fio"),
        "[j]\nnrfiles=2\nsize=64k\nrw=trimwrite\nblock_error_percentiles=1\n",
    )
    .unwrap();
    for cmd in [fio.as_str(), BENCH] {
        let (ok, _, _) = run(&dir, cmd, &["--parse-only"]);
        assert!(ok, "{cmd}: --parse-only");
        let (ok, out, err) = run(&dir, cmd, &[]);
        assert!(!ok, "{cmd}: several files ran");
        assert!(
            err.contains("block error histogram only available with a single file per job, but 2 files provided")
                || out.contains("block error histogram only available with a single file per job, but 2 files provided"),
            "{cmd}: {out}{err}"
        );
    }
    std::fs::write(
        dir.join("job.fio"),
        "[j]\nfilename=big.dat\nsize=64m\nbs=4k\nrw=write\nblock_error_percentiles=1\n",
    )
    .unwrap();
    for cmd in [fio.as_str(), BENCH] {
        let (ok, out, err) = run(&dir, cmd, &[]);
        assert!(!ok, "{cmd}: 16384 blocks ran");
        let all = format!("{out}{err}");
        assert!(
            all.contains("cannot calculate block histogram with 16384 trim blocks, maximum 8192"),
            "{cmd}: {all}"
        );
        let _ = std::fs::remove_file(dir.join("big.dat"));
    }
    let _ = std::fs::remove_dir_all(dir);
}
