//! nvme-bench and Debian's fio on the same job files, on host files: what
//! fio's output makes deterministic (which files, how many jobs, bytes and
//! I/Os moved, per-direction runtimes) must agree; rates only within loose
//! sanity ratios (the two tools are timed on a shared machine).

mod common;

use common::{ensure_fio, file_names, run_json_in, scratch};
use serde_json::Value;

const BENCH: &str = env!("CARGO_BIN_EXE_nvme-bench");

/// Run the same job file with both tools, each in its own fresh directory
/// (relative file names land there). Returns (fio's, ours) documents and
/// directories.
fn both(tag: &str, job: &str, extra: &[&str]) -> [(Value, String, std::path::PathBuf); 2] {
    let fio = ensure_fio();
    let mut out = Vec::new();
    for (who, cmd) in [("fio", fio.as_str()), ("ours", BENCH)] {
        let dir = scratch(&format!("paired-{tag}-{who}"));
        std::fs::write(dir.join("job.fio"), job).unwrap();
        let mut args = vec!["--output-format=json"];
        if who == "ours" {
            args.push("--eta=never");
        }
        args.extend_from_slice(extra);
        args.push("job.fio");
        let (v, err) = run_json_in(&dir, cmd, &args);
        out.push((v, err, dir));
    }
    let ours = out.pop().unwrap();
    let theirs = out.pop().unwrap();
    [theirs, ours]
}

fn jobs(v: &Value) -> &Vec<Value> {
    v["jobs"].as_array().unwrap()
}

/// fio cuts job-file values at `;` and `#`: both tools must create the same
/// files and run the same number of jobs, moving the same bytes.
#[test]
fn trailing_comments_match_fio() {
    let job = "[global]\nsize=64k ; trailing\nbs=4k # hash\nioengine=psync\n\
               [j1] ; first\nfilename=ic2.dat ; scratch file\nnumjobs=2 ; two\nrw=write\n";
    let [(t, _, td), (o, _, od)] = both("comments", job, &[]);
    assert_eq!(file_names(&td), ["ic2.dat", "job.fio"]);
    assert_eq!(file_names(&od), file_names(&td));
    assert_eq!(jobs(&o).len(), jobs(&t).len());
    for (a, b) in jobs(&t).iter().zip(jobs(&o)) {
        assert_eq!(a["jobname"], b["jobname"]);
        assert_eq!(a["write"]["io_bytes"], b["write"]["io_bytes"]);
        assert_eq!(a["write"]["total_ios"], b["write"]["total_ios"]);
        assert_eq!(a["job options"]["filename"], b["job options"]["filename"]);
    }
    assert_eq!(t["global options"]["size"], o["global options"]["size"]);
    let _ = std::fs::remove_dir_all(td);
    let _ = std::fs::remove_dir_all(od);
}
