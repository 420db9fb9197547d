//! Several files per job, side by side with Debian's fio 3.33: the files
//! each tool creates (names and sizes, `ls` of its scratch directory after
//! the run) and the bytes and I/Os each job moves per direction.
//!
//! A write job with `fallocate=none` creates its files empty and each
//! sequential write extends one, so the sizes left behind show how the
//! I/O was spread over the files (`file_service_type`, `openfiles`).

mod common;

use common::{both_json_after, ensure_fio, run_json_in, scratch};
use serde_json::Value;

const BENCH: &str = env!("CARGO_BIN_EXE_nvme-bench");

/// The scratch directory's files and sizes, the job file left out.
fn ls(dir: &std::path::Path) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name() != "job.fio")
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                e.metadata().unwrap().len(),
            )
        })
        .collect();
    v.sort();
    v
}

/// Per job: (name, read io_bytes, read total_ios, write io_bytes, write
/// total_ios).
fn amounts(v: &Value) -> Vec<(String, u64, u64, u64, u64)> {
    v["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| {
            let n = |d: &str, k: &str| j[d][k].as_u64().unwrap_or(0);
            (
                j["jobname"].as_str().unwrap_or("").to_string(),
                n("read", "io_bytes"),
                n("read", "total_ios"),
                n("write", "io_bytes"),
                n("write", "total_ios"),
            )
        })
        .collect()
}

struct Side {
    files: Vec<(String, u64)>,
    /// The first byte of each file (0 if empty), in `files` order.
    first: Vec<u8>,
    amounts: Vec<(String, u64, u64, u64, u64)>,
}

/// Run `job` with both tools, each in a fresh directory.
fn both(tag: &str, job: &str) -> [Side; 2] {
    both_after(tag, job, &|_| {})
}

/// `both`, with `setup` run in each directory first.
fn both_after(tag: &str, job: &str, setup: &dyn Fn(&std::path::Path)) -> [Side; 2] {
    both_json_after(&format!("files-{tag}"), job, &[], setup).map(|(v, _, dir)| {
        let files = ls(&dir);
        let first = files
            .iter()
            .map(|(n, _)| {
                use std::io::Read;
                let mut b = [0u8; 1];
                let _ = std::fs::File::open(dir.join(n)).and_then(|mut f| f.read(&mut b));
                b[0]
            })
            .collect();
        let _ = std::fs::remove_dir_all(&dir);
        Side {
            first,
            files,
            amounts: amounts(&v),
        }
    })
}

/// Both tools leave the same files and move the same amounts.
fn same(tag: &str, job: &str) -> Side {
    let [t, o] = both(tag, job);
    assert_eq!(o.files, t.files, "{tag}: files (ours, fio's)");
    assert_eq!(o.amounts, t.amounts, "{tag}: amounts (ours, fio's)");
    t
}

const GLOBAL: &str = "[global]\nioengine=psync\nbs=4k\n";

/// nrfiles=3 over size=4m: 1398101 bytes each (size / nrfiles, not a
/// multiple of bs), laid out at that size; a sequential read stops at each
/// file's last whole block (1023 I/Os, not 1024), loops=2 twice that.
#[test]
fn nrfiles_split_size_like_fio() {
    for (tag, extra) in [("one", ""), ("loops", "loops=2\n")] {
        let job = format!("{GLOBAL}size=4m\n[j]\nrw=read\nnrfiles=3\n{extra}");
        let s = same(&format!("split-{tag}"), &job);
        assert_eq!(
            s.files,
            (0..3)
                .map(|i| (format!("j.0.{i}"), 1398101))
                .collect::<Vec<_>>()
        );
        let loops = if extra.is_empty() { 1 } else { 2 };
        assert_eq!(s.amounts[0].1, loops * 1023 * 4096);
    }
    // size/nrfiles not a whole number: each file the quotient (fio adds
    // a block to the first files only when the remainder holds one).
    let s = same(
        "split-odd",
        &format!("{GLOBAL}size=40k\n[j]\nrw=randread\nnrfiles=3\n"),
    );
    assert!(s.files.iter().all(|f| f.1 == 13653), "{:?}", s.files);
}

/// A filename list: the names (`\:` a colon in one), size split between
/// them; every clone of a numjobs job shares the list.
#[test]
fn filename_lists_like_fio() {
    let job =
        format!("{GLOBAL}size=3m\n[l]\nrw=randread\nfilename=a.dat:b\\:c.dat::d.dat\nnumjobs=2\n");
    let s = same("list", &job);
    let names: Vec<&str> = s.files.iter().map(|f| f.0.as_str()).collect();
    assert_eq!(names, ["a.dat", "b:c.dat", "d.dat"]);
    assert!(s.files.iter().all(|f| f.1 == 1 << 20));
    // A random read over three files of 256 blocks each: every block once.
    assert_eq!(s.amounts[0].1, 3 << 20);
    // multi-file.fio's case: a random write over two named files.
    same(
        "list-write",
        "[global]\nioengine=psync\nbs=8k\nsize=16m\n[two-files]\nrw=randwrite\nfilename=fileA.dat:fileB.dat\n",
    );
}

/// filename_format's keywords (any case; $clientuid is empty outside
/// client/server mode), per clone and file number, under `directory`.
#[test]
fn filename_format_like_fio() {
    let job = format!(
        "{GLOBAL}size=64k\n[fmt]\nrw=read\nnumjobs=2\nnrfiles=2\n\
         filename_format=$JOBNAME-$jobnum-f$filenum$clientuid.dat\n"
    );
    let s = same("format", &job);
    let names: Vec<&str> = s.files.iter().map(|f| f.0.as_str()).collect();
    assert_eq!(
        names,
        [
            "fmt-0-f0.dat",
            "fmt-0-f1.dat",
            "fmt-1-f0.dat",
            "fmt-1-f1.dat"
        ]
    );
    // unique_filename changes nothing without client/server mode.
    same(
        "format-unique",
        &format!("{GLOBAL}size=64k\n[u]\nrw=read\nnrfiles=2\nunique_filename=0\n"),
    );
}

/// Each file_service_type spreads a write job's I/O over its files as fio
/// does; the sizes the files grow to show it.
#[test]
fn file_service_types_like_fio() {
    let job = |svc: &str, extra: &str| {
        format!(
            "{GLOBAL}[w]\nrw=write\nfallocate=none\nnrfiles=4\nfilesize=1m\nsize=40k\n\
             file_service_type={svc}\n{extra}"
        )
    };
    // 10 I/Os: one file each in turn; four each; one file to its end.
    for (svc, sizes) in [
        ("roundrobin", [12, 12, 8, 8]),
        ("roundrobin:4", [16, 16, 8, 0]),
        ("sequential", [40, 0, 0, 0]),
    ] {
        let s = same(&format!("svc-{}", svc.replace(':', "-")), &job(svc, ""));
        let got: Vec<u64> = s.files.iter().map(|f| f.1 >> 10).collect();
        assert_eq!(got, sizes, "{svc}");
    }
    // openfiles=2: the first two files until they are done, then the rest.
    let s = same(
        "svc-openfiles",
        &format!("{GLOBAL}[w]\nrw=write\nfallocate=none\nnrfiles=4\nfilesize=16k\nopenfiles=2\n"),
    );
    assert!(s.files.iter().all(|f| f.1 == 16384));
    let s = same(
        "svc-openfiles-cut",
        &format!(
            "{GLOBAL}[w]\nrw=write\nfallocate=none\nnrfiles=4\nfilesize=16k\nsize=40k\nopenfiles=2\n"
        ),
    );
    // Two files to their end (32k), then one I/O each on the other two.
    let got: Vec<u64> = s.files.iter().map(|f| f.1 >> 10).collect();
    assert_eq!(got, [16, 16, 4, 4]);
    // The random kinds: the same amounts and files, the spread drawn.
    for svc in [
        "random",
        "random:2",
        "zipf:1.2",
        "pareto:0.3",
        "normal:20",
        "gauss",
    ] {
        let [t, o] = both(
            &format!("svc-{}", svc.replace([':', '.'], "-")),
            &job(svc, ""),
        );
        assert_eq!(o.amounts, t.amounts, "{svc}");
        let names = |s: &Side| s.files.iter().map(|f| f.0.clone()).collect::<Vec<_>>();
        assert_eq!(names(&o), names(&t), "{svc}");
        let total: u64 = o.files.iter().map(|f| f.1).sum();
        assert!(total >= 40 << 10, "{svc}: {:?}", o.files);
        if svc.starts_with("random") {
            // 10 I/Os drawn uniformly (in pairs): more than one file.
            assert!(o.files.iter().filter(|f| f.1 > 0).count() > 1, "{svc}");
        }
    }
}

/// filesize: each file that size (size= then caps the bytes moved); a range
/// draws each file's size in it, a multiple of the block size.
#[test]
fn filesize_like_fio() {
    let s = same(
        "fsize",
        &format!("{GLOBAL}[f]\nrw=read\nnrfiles=4\nfilesize=256k\n"),
    );
    assert!(s.files.iter().all(|f| f.1 == 256 << 10));
    assert_eq!(s.amounts[0].1, 1 << 20);
    let s = same(
        "fsize-capped",
        &format!("{GLOBAL}[f]\nrw=randread\nnrfiles=2\nfilesize=1m\nsize=1m\n"),
    );
    assert!(s.files.iter().all(|f| f.1 == 1 << 20));
    assert_eq!(s.amounts[0].1, 1 << 20);
    // One file with filesize.
    same(
        "fsize-one",
        &format!("{GLOBAL}[f]\nrw=write\nfilesize=96k\n"),
    );
    let [t, o] = both(
        "fsize-range",
        &format!("{GLOBAL}[f]\nrw=read\nnrfiles=6\nfilesize=64k-256k\n"),
    );
    for s in [&t, &o] {
        assert_eq!(s.files.len(), 6);
        for (_, len) in &s.files {
            assert!((64 << 10..=256 << 10).contains(len) && len % 4096 == 0);
        }
        let sum: u64 = s.files.iter().map(|f| f.1).sum();
        assert_eq!(s.amounts[0].1, sum);
    }
}

/// libaio and io_uring put each I/O on its own file (an fd per slot), at
/// depth: the write spread is fio's.
#[test]
fn engines_write_every_file_like_fio() {
    for engine in ["libaio", "io_uring"] {
        for extra in ["", "registerfiles=1\n"] {
            if engine == "libaio" && !extra.is_empty() {
                continue;
            }
            let job = format!(
                "[global]\nioengine={engine}\niodepth=4\nbs=4k\n[w]\nrw=write\nfallocate=none\n\
                 nrfiles=3\nfilesize=64k\nsize=100k\n{extra}"
            );
            let s = same(&format!("eng-{engine}-{}", extra.len()), &job);
            let got: Vec<u64> = s.files.iter().map(|f| f.1 >> 10).collect();
            assert_eq!(got, [36, 32, 32], "{engine} {extra}");
            // Reads of the laid-out files, every block of each.
            let job = format!(
                "[global]\nioengine={engine}\niodepth=4\nbs=4k\n[r]\nrw=randread\n\
                 nrfiles=3\nfilesize=64k\n{extra}"
            );
            let s = same(&format!("engr-{engine}-{}", extra.len()), &job);
            assert_eq!(s.amounts[0].1, (3 * 64) << 10);
        }
    }
}

/// The null engine has no files but still splits its I/O per file.
#[test]
fn null_engine_splits_like_fio() {
    let s = same(
        "null",
        "[global]\nioengine=null\nbs=4k\nsize=4m\n[n]\nrw=read\nnrfiles=3\n",
    );
    assert!(s.files.is_empty());
    assert_eq!(s.amounts[0].1, 1023 * 4096);
}

/// fio's layout message for several files.
#[test]
fn layout_message_like_fio() {
    let fio = ensure_fio();
    let job = format!("{GLOBAL}[lay]\nrw=read\nnrfiles=3\nfilesize=1m\n");
    let mut lines = Vec::new();
    for (who, cmd) in [("fio", fio.as_str()), ("ours", BENCH)] {
        let dir = scratch(&format!("files-msg-{who}"));
        std::fs::write(dir.join("job.fio"), &job).unwrap();
        let o = std::process::Command::new(cmd)
            .args(["--eta=never", "job.fio"])
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(o.status.success());
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        lines.push(
            out.lines()
                .filter(|l| l.contains("Laying out"))
                .map(str::to_string)
                .collect::<Vec<_>>(),
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
    assert_eq!(
        lines[0],
        ["lay: Laying out IO files (3 files / total 3MiB)"]
    );
    assert_eq!(lines[1], lines[0]);
}

/// Values fio refuses, and what nvme-bench cannot do, are clear errors.
#[test]
fn bad_file_options_are_errors() {
    for (job, want) in [
        ("nrfiles=0", "nrfiles"),
        ("file_service_type=bogus", "file_service_type"),
        ("file_service_type=zipf:1", "zipf"),
        ("file_service_type=pareto:1.5", "pareto"),
        ("filesize=0", "filesize"),
    ] {
        let dir = scratch("files-bad");
        std::fs::write(
            dir.join("job.fio"),
            format!("[global]\nioengine=psync\nsize=64k\n[b]\nrw=read\n{job}\n"),
        )
        .unwrap();
        let o = std::process::Command::new(BENCH)
            .args(["--parse-only", "job.fio"])
            .current_dir(&dir)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{job}: accepted");
        assert!(err.contains(want), "{job}: {err}");
    }
}

/// Files smaller than a block: fio moves nothing and ends; so do we, and
/// a time-based job over them (where fio 3.33 spins until killed with a
/// skewed file_service_type) ends at once rather than spin.
#[test]
fn files_smaller_than_a_block_end_the_job() {
    let job = format!("{GLOBAL}size=8k\n[t]\nrw=randread\nnrfiles=4\n");
    let s = same("tiny", &job);
    assert_eq!(s.amounts[0].1, 0);
    let dir = scratch("files-tiny-tb");
    std::fs::write(
        dir.join("job.fio"),
        format!("{job}file_service_type=zipf\ntime_based=1\nruntime=30\n"),
    )
    .unwrap();
    let t0 = std::time::Instant::now();
    let mut child = std::process::Command::new(BENCH)
        .args(["--output-format=json", "--eta=never", "job.fio"])
        .current_dir(&dir)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let st = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if t0.elapsed() > std::time::Duration::from_secs(20) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("a time-based job over files smaller than a block did not end");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert!(st.success());
    let _ = std::fs::remove_dir_all(&dir);
}

/// `directory` is a list too (clone N of a job with default names under
/// entry N mod the count, a `filename` under the first; every entry must
/// exist), and the missing directories of a job's first file name are
/// created, as fio's `create_work_dirs`.
#[test]
fn directory_lists_and_missing_dirs_like_fio() {
    let job = format!(
        "{GLOBAL}size=64k\nrw=read\ndirectory=d1:d2\n[j]\nnumjobs=3\n[k]\nfilename=f\nnumjobs=2\n\
         [m]\ndirectory=.\nfilename=x/y/f:x/g\n"
    );
    let mut sides = Vec::new();
    for (who, cmd) in [("fio", ensure_fio()), ("ours", BENCH.to_string())] {
        let dir = scratch(&format!("files-dirs-{who}"));
        std::fs::write(dir.join("job.fio"), &job).unwrap();
        // fio refuses a directory= entry that does not exist.
        let o = std::process::Command::new(&cmd)
            .args(["--output-format=json", "job.fio"])
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(!o.status.success(), "{who}: ran without d1, d2");
        std::fs::create_dir(dir.join("d1")).unwrap();
        std::fs::create_dir(dir.join("d2")).unwrap();
        let (v, _) = run_json_in(&dir, &cmd, &["--output-format=json", "job.fio"]);
        let mut found = Vec::new();
        for e in walk(&dir) {
            found.push(e);
        }
        found.sort();
        sides.push((found, amounts(&v)));
        let _ = std::fs::remove_dir_all(&dir);
    }
    assert_eq!(sides[1], sides[0]);
    assert_eq!(
        sides[0].0,
        ["d1/f", "d1/j.0.0", "d1/j.2.0", "d2/j.1.0", "job.fio", "x/g", "x/y/f"]
    );
}

/// Every file under `dir`, relative.
fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    out
}

/// file_append: each regular file's I/O starts at its end as it was
/// before layout (a write job's file is kept and extended; a read job's is
/// laid out anew at end + size and read from the old end).
#[test]
fn file_append_like_fio() {
    let job = format!(
        "{GLOBAL}[w]\nrw=write\nfile_append=1\nfilename=a.dat:b.dat:c.dat\nsize=96k\n\
         [r]\nstonewall\nrw=read\nfile_append=1\nfilename=r.dat\nsize=64k\n"
    );
    let setup = |d: &std::path::Path| {
        std::fs::write(d.join("a.dat"), vec![7u8; 1 << 20]).unwrap();
        std::fs::write(d.join("b.dat"), vec![7u8; 64 << 10]).unwrap();
        std::fs::write(d.join("r.dat"), vec![7u8; 64 << 10]).unwrap();
    };
    let [t, o] = both_after("append", &job, &setup);
    assert_eq!(o.files, t.files);
    assert_eq!(o.amounts, t.amounts);
    // The write job's existing files keep their data (no unlink).
    assert_eq!(&t.first[..2], [7, 7]);
    assert_eq!(o.first[..2], t.first[..2]);
    assert_eq!(
        t.files,
        [
            ("a.dat".to_string(), (1 << 20) + (32 << 10)),
            ("b.dat".to_string(), 96 << 10),
            ("c.dat".to_string(), 32 << 10),
            ("r.dat".to_string(), 128 << 10)
        ]
    );
}

/// Varying block sizes under the random map: each file's blocks are all
/// read once (I/Os cut to the free blocks), so the bytes are fio's (the
/// I/O count is drawn).
#[test]
fn random_map_with_varying_sizes_covers_each_file_like_fio() {
    let [t, o] = both(
        "bsrange",
        "[global]\nioengine=psync\n[r]\nrw=randread\nbsrange=4k-16k\nnrfiles=2\nsize=2m\n",
    );
    assert_eq!(o.files, t.files);
    assert_eq!(t.amounts[0].1, 2 << 20);
    assert_eq!(o.amounts[0].1, t.amounts[0].1);
}

/// Not fio's: a job file naming a device node that is not there (e.g.
/// `/dev/nvme0n1` before the namespace's driver is bound) is refused with
/// what to do; fio would create a regular file in /dev (devtmpfs, RAM) and
/// lay out the whole size into it. Nothing is left in /dev, reads and
/// writes alike, with fio's default create_serialize and without it.
#[test]
fn a_missing_device_node_is_not_created_in_dev() {
    let name = format!("/dev/nvme-bench-test-{}", std::process::id());
    for extra in [
        &["--rw=read"][..],
        &["--rw=randwrite"][..],
        &["--rw=read", "--create_serialize=0"][..],
    ] {
        let mut args = vec![
            "--name=x".to_string(),
            format!("--filename={name}"),
            "--size=1m".to_string(),
            "--output-format=json".to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let o = std::process::Command::new(common::BENCH)
            .args(&args)
            .output()
            .unwrap();
        let created = std::path::Path::new(&name).exists();
        let _ = std::fs::remove_file(&name);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!created, "{extra:?}: {name} was created: {err}");
        assert!(!o.status.success(), "{extra:?}: the job ran: {err}");
        assert!(
            err.contains("is not a device node") && err.contains("create_serialize=0"),
            "{extra:?}: {err}"
        );
    }
}
