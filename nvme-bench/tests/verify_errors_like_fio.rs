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

use common::{ensure_fio, scratch};
use serde_json::Value;

const BENCH: &str = env!("CARGO_BIN_EXE_nvme-bench");

/// Run `job` (written to `dir/job.fio`) with `cmd`; returns (exit
/// success, the JSON document, stderr). fio's warnings and error lines
/// before the JSON on stdout are skipped.
fn run(dir: &Path, cmd: &str, job: &str, extra: &[&str]) -> (bool, Value, String) {
    std::fs::write(dir.join("job.fio"), job).unwrap();
    let mut c = Command::new(cmd);
    c.current_dir(dir).arg("--output-format=json");
    if cmd == BENCH {
        c.arg("--eta=never");
    }
    let o = c.args(extra).arg("job.fio").output().expect(cmd);
    let out = String::from_utf8_lossy(&o.stdout);
    let at = if out.starts_with('{') {
        0
    } else {
        out.find("\n{").map_or(0, |i| i + 1)
    };
    let v: Value =
        serde_json::from_str(&out[at..]).unwrap_or_else(|e| panic!("{cmd}: no JSON ({e}):\n{out}"));
    (
        o.status.success(),
        v,
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
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
