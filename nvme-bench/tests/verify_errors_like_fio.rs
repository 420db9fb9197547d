//! Verify (and its error handling) side by side with Debian's fio 3.33,
//! for the examples of issue #14's verify family (e4defrag*.fio,
//! cross-stripe-verify.fio, ...): the same I/O counts and the same
//! detection of a changed block in both tools. Each tool checks its own
//! header format, so each re-reads only its own files.
//!
//! fio's cycle (backend.c thread_main): a job that writes and verifies
//! runs a workload pass, then reads back what that pass wrote, for each
//! loop; time_based repeats the cycle until the runtime, but only on an
//! engine that queues (a sync engine's pass on one file never ends: fio
//! warns "verification read phase will never start"); a runtime that ends
//! a pass ends the job without its verify pass.

mod common;

use std::path::Path;
use std::process::Command;

use common::{ensure_fio, run_job, scratch};
use serde_json::Value;

const BENCH: &str = env!("CARGO_BIN_EXE_nvme-bench");

/// Run `job` (written to `dir/job.fio`) with `cmd`; returns (exit
/// success, the JSON document, stderr).
fn run(dir: &Path, cmd: &str, job: &str, extra: &[&str]) -> (bool, Value, String) {
    std::fs::write(dir.join("job.fio"), job).unwrap();
    run_job(dir, cmd, extra)
}

/// (read ios, write ios, error) of the first job.
fn counts(v: &Value) -> (u64, u64, i64) {
    let j = &v["jobs"][0];
    (
        j["read"]["total_ios"].as_u64().unwrap(),
        j["write"]["total_ios"].as_u64().unwrap(),
        j["error"].as_i64().unwrap(),
    )
}

fn both(tag: &str, job: &str) -> Vec<(&'static str, (u64, u64, i64))> {
    let fio = ensure_fio();
    let mut out = Vec::new();
    for (who, cmd) in [("fio", fio.as_str()), ("ours", BENCH)] {
        let dir = scratch(&format!("{tag}-{who}"));
        let (_, v, err) = run(&dir, cmd, job, &[]);
        out.push((who, counts(&v)));
        eprintln!("{tag} {who}: {:?} {}", counts(&v), err.trim());
        let _ = std::fs::remove_dir_all(dir);
    }
    out
}

/// e4defrag*.fio: verify with `filesize` and several files (the
/// several-files path) reads back every block of every file, and a block
/// changed in the second file fails the check in both tools.
#[test]
fn verify_over_several_files_like_fio() {
    let job = "[j]\nioengine=psync\nnrfiles=2\nfilesize=256k\nbs=4k\nrw=write\nverify=crc32c\n";
    for (who, c) in both("vfiles", job) {
        assert_eq!(
            c,
            (128, 128, 0),
            "{who}: 2 files of 64 blocks, each read back"
        );
    }
    // Write only, change a byte of the second file's block 10, check.
    let fio = ensure_fio();
    for (who, cmd) in [("fio", fio.as_str()), ("ours", BENCH)] {
        let dir = scratch(&format!("vfiles-bad-{who}"));
        let w = format!("{job}do_verify=0\n");
        let (ok, v, err) = run(&dir, cmd, &w, &[]);
        assert!(ok, "{who}: {err}");
        assert_eq!(counts(&v), (0, 128, 0), "{who}");
        let f = dir.join("j.0.1");
        let mut data = std::fs::read(&f).unwrap_or_else(|e| panic!("{who}: {f:?}: {e}"));
        data[10 * 4096 + 2000] ^= 0x40;
        std::fs::write(&f, data).unwrap();
        let r = format!("{job}verify_only=1\n");
        let (ok, v, err) = run(&dir, cmd, &r, &[]);
        assert!(!ok, "{who}: a changed block must fail the job");
        let (reads, _, e) = counts(&v);
        assert_eq!(e, 84, "{who}: EILSEQ\n{err}");
        // Both read file 0's 64 blocks, then file 1 up to its block 10.
        assert_eq!(reads, 64 + 11, "{who}: reads up to the failure");
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// cross-stripe-verify.fio (loops=2): each loop writes, then reads back
/// what it wrote (fio's keep_running cycle), so two loops read twice.
#[test]
fn each_loop_verifies_like_fio() {
    let job =
        "[j]\nioengine=psync\nfilename=f\nsize=1m\nbs=4k\nrw=randwrite\nloops=2\nverify=crc32c\n";
    for (who, c) in both("vloops", job) {
        assert_eq!(c, (512, 512, 0), "{who}");
    }
}

/// e4defrag2.fio (time_based randrw with verify on libaio): write and
/// verify passes alternate until the runtime; the last pass, cut by the
/// runtime, is not read back. With psync, one file: never verified.
#[test]
fn time_based_verify_cycles_like_fio() {
    let job = "[j]\nioengine=libaio\niodepth=4\ndirect=1\nfilename=f\nsize=64k\nbs=4k\n\
               rw=write\ntime_based\nruntime=1s\nverify=crc32c\n";
    for (who, (r, w, e)) in both("vtb", job) {
        assert_eq!(e, 0, "{who}");
        assert!(w > 200, "{who}: {w} writes in 1 s");
        // Every pass of 16 writes is read back but the last, which the
        // runtime cuts in its write or its verify pass.
        assert!(r + 16 >= w && r <= w, "{who}: {r} reads, {w} writes");
    }
    let job = job.replace("libaio", "psync");
    for (who, (r, w, e)) in both("vtb-sync", &job) {
        assert_eq!((r, e), (0, 0), "{who}");
        assert!(w > 200, "{who}: {w} writes");
    }
}

/// A runtime that ends the write pass of a sized job ends the job: fio
/// terminates it, no verify pass follows.
#[test]
fn runtime_end_skips_verify_like_fio() {
    let job = "[j]\nioengine=psync\nfilename=f\nsize=1m\nbs=4k\nrw=write\nrate_iops=100\n\
               runtime=1s\nverify=crc32c\n";
    for (who, (r, w, e)) in both("vrt", job) {
        assert_eq!((r, e), (0, 0), "{who}");
        assert!((90..=110).contains(&w), "{who}: {w} writes");
    }
}

/// The directions of a job's I/Os in completion order, from its
/// per-I/O completion latency log (`write_lat_log`, third column).
fn directions(dir: &Path) -> String {
    let log = std::fs::read_to_string(dir.join("lg_clat.1.log")).unwrap();
    log.lines()
        .filter_map(|l| l.split(',').nth(2))
        .map(str::trim)
        .collect()
}

/// cross-stripe-verify.fio and enospc-pressure.fio: verify_backlog reads
/// back the logged blocks while the job writes. On psync both tools issue
/// the same sequence: N writes, a batch of reads (verify_backlog_batch,
/// default N), and so on, then the verify pass reads what is left.
#[test]
fn verify_backlog_interleaves_like_fio() {
    let fio = ensure_fio();
    for (tag, opts) in [
        ("b1", "rw=write\nverify_backlog=1\n"),
        (
            "b8",
            "rw=randwrite\nverify_backlog=8\nverify_backlog_batch=3\n",
        ),
        ("b5", "rw=write\nverify_backlog=5\nverify_backlog_batch=9\n"),
    ] {
        let job = format!(
            "[j]\nioengine=psync\nfilename=f\nsize=256k\nbs=4k\nverify=crc32c\n\
             write_lat_log=lg\n{opts}"
        );
        let mut seqs = Vec::new();
        for (who, cmd) in [("fio", fio.as_str()), ("ours", BENCH)] {
            let dir = scratch(&format!("vbacklog-{tag}-{who}"));
            let (ok, v, err) = run(&dir, cmd, &job, &[]);
            assert!(ok, "{who}: {err}");
            assert_eq!(counts(&v), (64, 64, 0), "{who} {tag}");
            seqs.push(directions(&dir));
            let _ = std::fs::remove_dir_all(dir);
        }
        assert!(seqs[0].starts_with("1"), "{tag}: {}", seqs[0]);
        assert_eq!(seqs[0], seqs[1], "{tag}: fio, then ours (0 read, 1 write)");
    }
    // With a backlog, a time-based psync job verifies as it goes.
    let job = "[j]\nioengine=psync\nfilename=f\nsize=64k\nbs=4k\nrw=write\nverify=crc32c\n\
               verify_backlog=16\ntime_based\nruntime=1s\n";
    for (who, (r, w, e)) in both("vbacklog-tb", job) {
        assert_eq!(e, 0, "{who}");
        assert!(
            w > 200 && r + 16 >= w && r <= w,
            "{who}: {r} reads, {w} writes"
        );
    }
}

/// cross-stripe-verify.fio, scaled down: offset_increment, a hole after
/// each write (`rw=write:112k`), io_size, verify_backlog, loops=2, two
/// clones: the same I/O counts in both tools.
#[test]
fn cross_stripe_verify_scaled_like_fio() {
    let job = "[global]\nbs=16k\ndirect=1\nrw=write:112k\nverify=crc32c\nfilename=dev\n\
               verify_backlog=1\noffset_increment=1m\nio_size=64k\noffset=120k\nverify_dump=1\n\
               loops=2\nioengine=psync\n[write-verify]\nnumjobs=2\n";
    let fio = ensure_fio();
    for (who, cmd) in [("fio", fio.as_str()), ("ours", BENCH)] {
        let dir = scratch(&format!("vstripe-{who}"));
        std::fs::write(dir.join("dev"), vec![0u8; 4 << 20]).unwrap();
        let (ok, v, err) = run(&dir, cmd, job, &[]);
        assert!(ok, "{who}: {err}");
        let jobs = v["jobs"].as_array().unwrap();
        assert_eq!(jobs.len(), 2, "{who}");
        for j in jobs {
            assert_eq!(j["write"]["total_ios"], 8, "{who}");
            assert_eq!(j["read"]["total_ios"], 8, "{who}");
            assert_eq!(j["error"], 0, "{who}");
        }
        // Clone 1 wrote at 1m + 120k, every 128k. A psync pass over a
        // file that is not done ends at io_size x loops (fio's
        // io_issue_bytes_exceeded): all 8 writes in the first loop, which
        // verify_backlog reads back; the second loop moves nothing.
        let data = std::fs::read(dir.join("dev")).unwrap();
        let written: Vec<usize> = (0..data.len() / 4096)
            .filter(|b| data[b * 4096..(b + 1) * 4096].iter().any(|&x| x != 0))
            .map(|b| b * 4096)
            .collect();
        let mut want = Vec::new();
        for c in 0..2usize {
            for i in 0..8usize {
                let o = c * (1 << 20) + (120 << 10) + i * (128 << 10);
                want.extend((0..4).map(|k| o + k * 4096));
            }
        }
        assert_eq!(written, want, "{who}: the blocks written");
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// offset_increment: clone N starts N x the increment past `offset`; the
/// blocks written are the same in both tools.
#[test]
fn offset_increment_like_fio() {
    let job = "[j]\nioengine=psync\nfilename=f\nsize=32k\noffset=8k\noffset_increment=64k\n\
               numjobs=3\nbs=4k\nrw=write\nbuffer_pattern=0xab\n";
    let fio = ensure_fio();
    let mut seen = Vec::new();
    for (who, cmd) in [("fio", fio.as_str()), ("ours", BENCH)] {
        let dir = scratch(&format!("voffinc-{who}"));
        std::fs::write(dir.join("f"), vec![0u8; 256 << 10]).unwrap();
        let (ok, _, err) = run(&dir, cmd, job, &[]);
        assert!(ok, "{who}: {err}");
        let data = std::fs::read(dir.join("f")).unwrap();
        let written: Vec<usize> = (0..data.len() / 4096)
            .filter(|b| data[b * 4096..(b + 1) * 4096].iter().any(|&x| x != 0))
            .collect();
        seen.push(written);
        let _ = std::fs::remove_dir_all(dir);
    }
    let want: Vec<usize> = [2usize, 18, 34].iter().flat_map(|&s| s..s + 8).collect();
    assert_eq!(seen[0], want, "fio");
    assert_eq!(seen[1], want, "ours");
}

/// verify_dump: a block whose data changed is dumped as
/// `FILE.OFFSET.received` (the block read) and `.expected` (what was
/// written); one whose header changed as `.hdr_fail`: the same files in
/// both tools.
#[test]
fn verify_dump_files_like_fio() {
    let fio = ensure_fio();
    let base = "[j]\nioengine=psync\nfilename=f\nsize=64k\nbs=4k\nrw=write\nverify=md5\n";
    for (who, cmd) in [("fio", fio.as_str()), ("ours", BENCH)] {
        let dir = scratch(&format!("vdump-{who}"));
        let (ok, _, err) = run(&dir, cmd, &format!("{base}do_verify=0\n"), &[]);
        assert!(ok, "{who}: {err}");
        let orig = std::fs::read(dir.join("f")).unwrap();
        let mut bad = orig.clone();
        bad[10 * 4096 + 2000] ^= 1; // data of block 10
        bad[12 * 4096] ^= 0xff; // the header's magic, block 12
        std::fs::write(dir.join("f"), &bad).unwrap();
        let r = format!("{base}verify_only=1\nverify_dump=1\ncontinue_on_error=verify\n");
        let (_, _, err) = run(&dir, cmd, &r, &[]);
        let mut names = common::file_names(&dir);
        names.retain(|n| n.starts_with("f."));
        assert_eq!(
            names,
            ["f.40960.expected", "f.40960.received", "f.49152.hdr_fail"],
            "{who}: {err}"
        );
        assert!(
            err.contains("received data dumped as f.40960.received"),
            "{who}: {err}"
        );
        let got = |n: &str| std::fs::read(dir.join(n)).unwrap();
        assert_eq!(got("f.40960.received"), &bad[40960..45056], "{who}");
        assert_eq!(got("f.49152.hdr_fail"), &bad[49152..53248], "{who}");
        // fio makes its header again with a new time: the data agrees.
        assert_eq!(
            got("f.40960.expected")[128..],
            orig[40960 + 128..45056],
            "{who}"
        );
        if who == "ours" {
            assert_eq!(got("f.40960.expected"), &orig[40960..45056]);
        }
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// verify_backlog with fewer `openfiles` than files: fio reopens closed
/// files for its read-backs and its file choice then stops early (3 files
/// of 16 blocks, openfiles=1: 32 writes, not 48); refused here, clearly.
#[test]
fn verify_backlog_under_openfiles_is_refused() {
    let dir = scratch("vbacklog-openfiles");
    let job = "[j]\nioengine=psync\nnrfiles=3\nfilesize=64k\nbs=4k\nrw=randwrite\n\
               verify=crc32c\nopenfiles=1\nverify_backlog=5\n";
    std::fs::write(dir.join("job.fio"), job).unwrap();
    let o = Command::new(BENCH)
        .args(["--parse-only", "job.fio"])
        .current_dir(&dir)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "accepted");
    assert!(err.contains("verify_backlog with openfiles"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}
