//! rw=trim|randtrim|trimwrite|randtrimwrite side by side with Debian's fio
//! 3.33. On a block device (a loop device over a sparse scratch file: it
//! takes BLKDISCARD) both tools move the same bytes and I/Os per direction
//! (trimwrite: every block trimmed, then written), report them under the
//! JSON's `trim` object and the text's `trim:` / `TRIM:` lines, and the
//! discards really free the backing file's blocks. On a regular file both
//! fail the job with ENOTTY (25), as fio's BLKDISCARD ioctl does there.
//!
//! The block-device test needs root and `losetup`; without them it says so
//! and passes.

mod common;

use std::process::Command;

use common::{ensure_fio, run_job, scratch, Loop};
use serde_json::Value;

const BENCH: &str = env!("CARGO_BIN_EXE_nvme-bench");

fn dirs(j: &Value) -> Vec<(String, Value, Value)> {
    ["read", "write", "trim"]
        .iter()
        .map(|d| {
            (
                d.to_string(),
                j[*d]["io_bytes"].clone(),
                j[*d]["total_ios"].clone(),
            )
        })
        .collect()
}

#[test]
fn trims_on_a_block_device_like_fio() {
    let fio = ensure_fio();
    let base = scratch("trim-blk");
    let Some(lo) = Loop::new(&base, 32 << 20) else {
        eprintln!("no loop device: skipped");
        return;
    };
    let job = format!(
        "[global]\nfilename={}\nsize=8m\nbs=64k\n\
         [trim-seq]\nioengine=psync\nrw=trim\n\
         [trim-rand]\nstonewall\nioengine=psync\nrw=randtrim\n\
         [trimwrite]\nstonewall\nioengine=psync\nrw=trimwrite\n\
         [randtrimwrite]\nstonewall\nioengine=psync\nrw=randtrimwrite\n\
         [uring-trim]\nstonewall\nioengine=io_uring\niodepth=8\nrw=randtrim\noffset=8m\n\
         [aio-trimwrite]\nstonewall\nioengine=libaio\niodepth=4\nrw=trimwrite\noffset=16m\nbs=16k\nsize=2m\n",
        lo.dev
    );
    let mut docs = Vec::new();
    for (who, cmd) in [("fio", fio.as_str()), ("ours", BENCH)] {
        let dir = scratch(&format!("trim-blk-{who}"));
        std::fs::write(dir.join("job.fio"), &job).unwrap();
        let (ok, v, err) = run_job(&dir, cmd, &[]);
        assert!(ok, "{who} failed:\n{err}");
        // The text report names the trim direction as fio's does.
        let o = Command::new(cmd)
            .current_dir(&dir)
            .args(if cmd == BENCH {
                vec!["--eta=never", "job.fio"]
            } else {
                vec!["job.fio"]
            })
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        let lines: Vec<String> = text
            .lines()
            .filter(|l| l.contains("issued rwts") || l.trim_start().starts_with("TRIM:"))
            .map(|l| {
                let l = l.trim();
                if l.starts_with("TRIM:") {
                    // The group line's amount, not its (timed) rates.
                    let io = l.split(", ").find(|p| p.starts_with("io=")).unwrap_or("");
                    format!("TRIM: {io}")
                } else {
                    l.to_string()
                }
            })
            .collect();
        docs.push((v, lines));
        let _ = std::fs::remove_dir_all(dir);
    }
    let (t, o) = (&docs[0], &docs[1]);
    let (tj, oj) = (
        t.0["jobs"].as_array().unwrap(),
        o.0["jobs"].as_array().unwrap(),
    );
    assert_eq!(tj.len(), oj.len());
    for (a, b) in tj.iter().zip(oj) {
        let name = a["jobname"].as_str().unwrap();
        assert_eq!(a["jobname"], b["jobname"]);
        assert_eq!(a["error"], 0, "fio {name}");
        assert_eq!(b["error"], 0, "ours {name}");
        assert_eq!(
            dirs(a),
            dirs(b),
            "{name}: (dir, io_bytes, total_ios) fio vs ours"
        );
        assert!(b["trim"]["total_ios"].as_u64().unwrap() > 0, "{name}");
        assert!(b["trim"]["clat_ns"]["N"].as_u64().unwrap() > 0, "{name}");
    }
    assert_eq!(t.1, o.1, "issued rwts / TRIM lines");
    assert!(
        o.1.iter().any(|l| l.starts_with("TRIM: io=8192KiB")),
        "{:?}",
        o.1
    );

    // The discards are real: a filled device's backing file gives its
    // blocks back after our trim job over all of it.
    lo.fill();
    let before = lo.allocated();
    let dir = scratch("trim-blk-free");
    std::fs::write(
        dir.join("job.fio"),
        format!("[t]\nfilename={}\nrw=trim\nbs=1m\nioengine=psync\n", lo.dev),
    )
    .unwrap();
    let (ok, v, err) = run_job(&dir, BENCH, &[]);
    assert!(ok, "{err}");
    assert_eq!(v["jobs"][0]["trim"]["io_bytes"], 32 << 20);
    let after = lo.allocated();
    assert!(
        before >= (30 << 20) / 512 && after < before / 8,
        "backing file blocks: {before} before the trim, {after} after"
    );
    let _ = std::fs::remove_dir_all(dir);
    drop(lo);
    let _ = std::fs::remove_dir_all(base);
}

#[test]
fn trim_on_a_regular_file_fails_like_fio() {
    let fio = ensure_fio();
    for rw in ["trim", "randtrim", "trimwrite", "randtrimwrite"] {
        let job = format!("[t]\nfilename=t.dat\nsize=1m\nbs=64k\nioengine=psync\nrw={rw}\n");
        let mut seen = Vec::new();
        for (who, cmd) in [("fio", fio.as_str()), ("ours", BENCH)] {
            let dir = scratch(&format!("trim-file-{rw}-{who}"));
            std::fs::write(dir.join("job.fio"), &job).unwrap();
            let (ok, v, err) = run_job(&dir, cmd, &[]);
            assert!(!ok, "{who} {rw}: a trim on a regular file succeeded");
            let j = &v["jobs"][0];
            assert_eq!(j["error"], 25, "{who} {rw}: {err}");
            seen.push(dirs(j));
            let _ = std::fs::remove_dir_all(dir);
        }
        assert_eq!(seen[0], seen[1], "{rw}: fio vs ours");
    }
}
