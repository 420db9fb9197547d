//! Options of fio 3.33's examples numa.fio, libpmem.fio, disk-zone-profile.fio,
//! latency-profile.fio, cmdprio-*.fio and filecreate-ioengine.fio, each run
//! side by side with fio 3.33 and compared on what both do: the system
//! calls they make (under strace), the bytes they write, the offsets they
//! touch.

mod common;

use std::path::Path;
use std::process::Command;

use common::{ensure_fio, ensure_strace, json_in, scratch};

const BENCH: &str = env!("CARGO_BIN_EXE_nvme-bench");

/// Run `cmd args` in `dir` under `strace -f -e trace=CALLS`; returns
/// (success, stdout, the trace).
fn traced(dir: &Path, calls: &str, cmd: &str, args: &[&str]) -> (bool, String, String) {
    let log = dir.join("strace.out");
    let o = Command::new(ensure_strace())
        .args(["-f", "-qq", "-o"])
        .arg(&log)
        .args(["-e", &format!("trace={calls}"), cmd])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    let trace = std::fs::read_to_string(&log).unwrap_or_default();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        trace,
    )
}

/// `dir/j.fio` run quietly (`--output=/dev/null`) by fio and by nvme-bench,
/// each under [`traced`]: [fio's, ours] (success, trace).
fn traced_both(dir: &Path, calls: &str, fio: &str) -> [(bool, String); 2] {
    [fio, BENCH].map(|cmd| {
        let (ok, _, trace) = traced(dir, calls, cmd, &["j.fio", "--output=/dev/null"]);
        (ok, trace)
    })
}

/// `dir/NAME` run quietly (`--output=/dev/null`) by `cmd`, which must
/// succeed.
fn run_quiet(dir: &Path, cmd: &str, name: &str) {
    let o = Command::new(cmd)
        .args([name, "--output=/dev/null"])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(o.status.success(), "{cmd}: {o:?}");
}

/// The call of a strace line without its pid and result.
fn call_of(line: &str) -> &str {
    let l = line.trim();
    // strace -f -o: "PID call(...) = R"
    let l = l.split_once(' ').map_or(l, |(p, rest)| {
        if p.bytes().all(|c| c.is_ascii_digit()) {
            rest.trim_start()
        } else {
            l
        }
    });
    l.rsplit_once(" = ").map_or(l, |(c, _)| c).trim_end()
}

/// What a job's NUMA setup did: `sched_setaffinity` of the calling thread
/// (cpus) and `set_mempolicy` (mode, first mask word). libnuma's own probe
/// at load (MPOL_PREFERRED_MANY, then MPOL_DEFAULT to undo it) is left out.
fn numa_calls(trace: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut skip_default = false;
    for l in trace.lines() {
        let c = call_of(l);
        if let Some(a) = c.strip_prefix("sched_setaffinity(0, ") {
            // "sched_setaffinity(0, 128, [0 1])": the set, not its size.
            let set = a.split_once(", ").map_or(a, |(_, s)| s);
            out.push(format!("sched_setaffinity {}", set.trim_end_matches(')')));
        } else if let Some(a) = c.strip_prefix("set_mempolicy(") {
            let mode = a.split(',').next().unwrap_or("");
            if mode == "MPOL_PREFERRED_MANY" {
                skip_default = true;
                continue;
            }
            if skip_default && mode == "MPOL_DEFAULT" {
                skip_default = false;
                continue;
            }
            let word = a
                .split_once('[')
                .and_then(|(_, m)| m.split([',', ']']).next())
                .unwrap_or("");
            let word = u64::from_str_radix(word.trim().trim_start_matches("0x"), 16).unwrap_or(0);
            out.push(format!("set_mempolicy {mode} {word:#x}"));
        }
    }
    out
}

fn node0_cpus() -> String {
    let l = std::fs::read_to_string("/sys/devices/system/node/node0/cpulist").unwrap();
    let mut v = Vec::new();
    for part in l.trim().split(',') {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        v.extend(a.parse::<usize>().unwrap()..=b.parse::<usize>().unwrap());
    }
    format!(
        "[{}]",
        v.iter()
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join(" ")
    )
}

/// numa_cpu_nodes and numa_mem_policy: the job thread pins itself to the
/// node's CPUs and sets the memory policy, as fio's job does through
/// libnuma (the same calls, modes and node masks).
#[test]
fn numa_like_fio() {
    let fio = ensure_fio();
    if !Path::new("/sys/devices/system/node/node0").exists() {
        eprintln!("no NUMA node 0 in sysfs: skipped");
        return;
    }
    let cpus = node0_cpus();
    let dir = scratch("numa-like-fio");
    std::fs::write(dir.join("nf"), vec![0u8; 64 << 10]).unwrap();
    let cases = [
        ("bind:0", "MPOL_BIND 0x1"),
        ("interleave:0", "MPOL_INTERLEAVE 0x1"),
        ("interleave", "MPOL_INTERLEAVE 0x1"),
        ("prefer:0", "MPOL_PREFERRED 0x1"),
        ("local", "MPOL_LOCAL 0x0"),
        ("default", ""),
    ];
    for (policy, want) in cases {
        let job = format!(
            "[j]\nioengine=psync\nrw=read\nbs=4k\nsize=64k\nfilename=nf\n\
             numa_cpu_nodes=0\nnuma_mem_policy={policy}\n"
        );
        std::fs::write(dir.join("j.fio"), job).unwrap();
        let calls = "sched_setaffinity,set_mempolicy";
        let [(fok, ftrace), (ook, otrace)] = traced_both(&dir, calls, &fio);
        assert!(fok && ook, "{policy}: fio ok {fok}, ours ok {ook}");
        let (theirs, ours) = (numa_calls(&ftrace), numa_calls(&otrace));
        let mut expect = vec![format!("sched_setaffinity {cpus}")];
        if !want.is_empty() {
            expect.push(format!("set_mempolicy {want}"));
        }
        assert_eq!(theirs, expect, "fio, {policy}:\n{ftrace}");
        assert_eq!(ours, expect, "nvme-bench, {policy}:\n{otrace}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A node the host lacks: fio's run (not `--parse-only`) drops the job
/// after printing the headers of the jobs before it, and fails before any
/// I/O (numa.fio's job2 on a one-node host).
#[test]
fn numa_missing_node_drops_the_job_like_fio() {
    let fio = ensure_fio();
    let online = std::fs::read_to_string("/sys/devices/system/node/online").unwrap_or_default();
    // A node number above every node the host has.
    let missing = online
        .trim()
        .split([',', '-'])
        .filter_map(|n| n.parse::<u32>().ok())
        .max()
        .unwrap_or(0)
        + 1;
    let dir = scratch("numa-missing-node");
    for opt in [
        format!("numa_cpu_nodes=0-{missing}"),
        format!("numa_mem_policy=interleave:0-{missing}"),
        format!("numa_mem_policy=bind:{missing}"),
    ] {
        let job = format!(
            "[global]\nioengine=psync\nrw=read\nbs=4k\nsize=64k\n\
             [job1]\nfilename=f1\nnuma_cpu_nodes=0\n[job2]\nfilename=f2\n{opt}\n"
        );
        std::fs::write(dir.join("j.fio"), job).unwrap();
        for cmd in [fio.as_str(), BENCH] {
            let o = Command::new(cmd)
                .arg("--parse-only")
                .arg("j.fio")
                .current_dir(&dir)
                .output()
                .unwrap();
            assert!(o.status.success(), "{cmd} --parse-only {opt}");
        }
        let mut heads = Vec::new();
        for cmd in [fio.as_str(), BENCH] {
            let o = Command::new(cmd)
                .arg("j.fio")
                .current_dir(&dir)
                .output()
                .unwrap();
            let err = String::from_utf8_lossy(&o.stderr).into_owned();
            assert!(!o.status.success(), "{cmd} {opt}: ran");
            assert!(err.contains("job job2 dropped"), "{cmd} {opt}: {err}");
            assert!(
                !dir.join("f1").exists() && !dir.join("f2").exists(),
                "{cmd} {opt}: did I/O"
            );
            let out = String::from_utf8_lossy(&o.stdout).into_owned();
            heads.push(
                out.lines()
                    .filter(|l| l.contains(": (g=") || l.starts_with("Starting"))
                    .map(str::to_string)
                    .collect::<Vec<_>>(),
            );
        }
        assert_eq!(heads[0], heads[1], "{opt}: header lines (fio, ours)");
        assert_eq!(heads[1].len(), 1, "{opt}: job1's header only");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The O_SYNC / O_DSYNC / O_DIRECT flags of a trace's opens of `file`.
fn open_flags(trace: &str, file: &str) -> Vec<String> {
    let mut v: Vec<String> = trace
        .lines()
        .map(call_of)
        .filter(|c| c.starts_with("openat(") && c.contains(&format!("\"{file}\"")))
        .flat_map(|c| {
            c.split([',', '|', ' ', ')'])
                .filter(|f| matches!(*f, "O_SYNC" | "O_DSYNC" | "O_DIRECT"))
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect();
    v.sort();
    v.dedup();
    v
}

/// `sync`: the job's file is opened O_SYNC (`sync=1`/`sync`) or O_DSYNC
/// (`dsync`), with O_DIRECT for `direct=1`, as fio's generic_open_file.
#[test]
fn sync_opens_like_fio() {
    let fio = ensure_fio();
    let dir = scratch("sync-like-fio");
    std::fs::write(dir.join("sf"), vec![0u8; 64 << 10]).unwrap();
    for (sync, direct, engine) in [
        ("1", 0, "psync"),
        ("sync", 1, "libaio"),
        ("dsync", 0, "io_uring"),
        ("0", 1, "psync"),
        ("none", 0, "libaio"),
    ] {
        let job = format!(
            "[j]\nioengine={engine}\nrw=write\nbs=4k\nsize=64k\nfilename=sf\n\
             sync={sync}\ndirect={direct}\n"
        );
        std::fs::write(dir.join("j.fio"), job).unwrap();
        let [(fok, ft), (ook, ot)] = traced_both(&dir, "openat", &fio);
        assert!(fok && ook, "sync={sync}");
        let (theirs, ours) = (open_flags(&ft, "sf"), open_flags(&ot, "sf"));
        assert!(
            ft.contains("\"sf\"") && ot.contains("\"sf\""),
            "both open sf:\n{ft}\n{ot}"
        );
        assert_eq!(ours, theirs, "sync={sync} direct={direct} {engine}");
        let want_sync = match sync {
            "1" | "sync" => Some("O_SYNC"),
            "dsync" => Some("O_DSYNC"),
            _ => None,
        };
        assert_eq!(
            ours.iter().any(|f| f != "O_DIRECT"),
            want_sync.is_some(),
            "{ours:?}"
        );
        if let Some(w) = want_sync {
            assert!(ours.iter().any(|f| f == w), "{ours:?}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// What a written file's 512-byte blocks must hold.
#[derive(Clone, Copy, Debug)]
enum Fill {
    /// buffer_pattern=0xaa, not scrambled: the pattern only.
    Pattern,
    /// buffer_pattern=0xaa, scrambled: each block's offset at one of its 8
    /// cache lines, a time in bytes 48..64, the pattern elsewhere but in
    /// the first 8 bytes of each cache line.
    PatternScrambled,
    /// Random contents, scrambled: each block's offset at one of its
    /// cache lines.
    RandomScrambled,
}

/// The first way `data` differs from `fill`.
fn fill_check(data: &[u8], fill: Fill) -> Result<(), String> {
    for (i, blk) in data.chunks(512).enumerate() {
        let boff = (i * 512) as u64;
        if let Fill::Pattern = fill {
            if let Some(p) = blk.iter().position(|&b| b != 0xaa) {
                return Err(format!("block {i}: byte {p} is not the pattern"));
            }
            continue;
        }
        if !(0..8).any(|k| blk[k * 64..k * 64 + 8] == boff.to_ne_bytes()) {
            return Err(format!("block {i}: its offset {boff} is in no cache line"));
        }
        if let Fill::PatternScrambled = fill {
            for (p, &b) in blk.iter().enumerate() {
                // An earlier write through the same buffer may have left
                // its stamp in another line's first 8 bytes.
                let stamped = (48..64).contains(&p) || p % 64 < 8;
                if !stamped && b != 0xaa {
                    return Err(format!("block {i}: byte {p} is not the pattern"));
                }
            }
        }
    }
    Ok(())
}

/// `scramble_buffers` (on by default in fio): each write's buffer carries
/// its offset and a time in every 512-byte block (fio's
/// small_content_scramble); `scramble_buffers=0` writes the buffer as is,
/// and `buffer_pattern` turns scrambling off unless a later
/// `scramble_buffers=1` turns it on again (fio's str_buffer_pattern_cb).
#[test]
fn scramble_buffers_like_fio() {
    let fio = ensure_fio();
    let dir = scratch("scramble-like-fio");
    for (opts, fill) in [
        ("", Fill::RandomScrambled),
        ("scramble_buffers=1\n", Fill::RandomScrambled),
        ("buffer_pattern=0xaa\n", Fill::Pattern),
        (
            "buffer_pattern=0xaa\nscramble_buffers=1\n",
            Fill::PatternScrambled,
        ),
        ("scramble_buffers=1\nbuffer_pattern=0xaa\n", Fill::Pattern),
        ("buffer_pattern=0xaa\nscramble_buffers=0\n", Fill::Pattern),
    ] {
        for (who, cmd) in [("fio", fio.as_str()), ("nvme-bench", BENCH)] {
            let _ = std::fs::remove_file(dir.join("wf"));
            let job =
                format!("[j]\nioengine=psync\nrw=write\nbs=4k\nsize=64k\nfilename=wf\n{opts}");
            std::fs::write(dir.join("j.fio"), job).unwrap();
            run_quiet(&dir, cmd, "j.fio");
            let data = std::fs::read(dir.join("wf")).unwrap();
            assert_eq!(data.len(), 64 << 10, "{who}");
            if let Err(e) = fill_check(&data, fill) {
                panic!("{who} {opts:?}: {e}");
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A log's lines split into their fields.
fn log_rows(path: &Path) -> Vec<Vec<u64>> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| {
            l.split(',')
                .map(|f| {
                    let f = f.trim();
                    f.strip_prefix("0x")
                        .map_or_else(|| f.parse(), |h| u64::from_str_radix(h, 16))
                        .unwrap()
                })
                .collect()
        })
        .collect()
}

/// Run `job` with `cmd` in `dir`; the (direction, offset, length) of each
/// I/O, in order, from its `write_lat_log` with `log_offset=1`.
fn offsets_of(dir: &Path, cmd: &str, job: &str) -> Vec<(u64, u64, u64)> {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.file_name().unwrap().to_string_lossy().starts_with("zl_") {
            std::fs::remove_file(p).unwrap();
        }
    }
    std::fs::write(
        dir.join("z.fio"),
        format!("{job}write_lat_log=zl\nlog_offset=1\n"),
    )
    .unwrap();
    run_quiet(dir, cmd, "z.fio");
    log_rows(&dir.join("zl_lat.1.log"))
        .into_iter()
        .map(|r| {
            assert_eq!(r.len(), 6, "time, lat, dir, bs, offset, prio: {r:?}");
            (r[2], r[4], r[3])
        })
        .collect()
}

/// zonemode=strided: the offsets fio 3.33 touches, in order for
/// sequential jobs and as a multiset (each block as often) for random
/// ones, compared from both tools' latency logs with log_offset=1.
#[test]
fn strided_zones_like_fio() {
    let fio = ensure_fio();
    let dir = scratch("strided-like-fio");
    std::fs::write(dir.join("zf"), vec![0u8; 4 << 20]).unwrap();
    let cases = [
        // disk-zone-profile.fio's shape: 64k of every 256k, wrapping at
        // the end until the file's size was read.
        ("rw=read\nbs=16k\nzonesize=64k\nzoneskip=192k\n", true),
        // zonesize above zonerange: the range is read again.
        (
            "rw=read\nbs=16k\nzonesize=128k\nzonerange=64k\nzoneskip=64k\nsize=1m\n",
            true,
        ),
        // zonesize below zonerange: the next visit goes on where the last
        // left off; from an offset.
        (
            "rw=write\nbs=8k\nzonesize=32k\nzonerange=96k\nzoneskip=32k\noffset=512k\nsize=1m\n",
            true,
        ),
        // A zone that reaches past the file's end ends the job.
        ("rw=read\nbs=16k\nzonesize=64k\nzoneskip=1300k\n", true),
        (
            "rw=randread\nbs=4k\nzonesize=64k\nzoneskip=192k\nsize=1m\n",
            false,
        ),
        (
            "rw=randwrite\nbs=4k\nzonesize=128k\nzonerange=64k\nzoneskip=448k\nsize=1m\n",
            false,
        ),
    ];
    for (opts, ordered) in cases {
        let job = format!("[z]\nioengine=psync\nfilename=zf\nzonemode=strided\n{opts}");
        let mut theirs = offsets_of(&dir, &fio, &job);
        let mut ours = offsets_of(&dir, BENCH, &job);
        assert!(theirs.len() > 8, "{opts}: {theirs:?}");
        if !ordered {
            theirs.sort_unstable();
            ours.sort_unstable();
        }
        assert_eq!(ours, theirs, "{opts}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// log_offset: fio's column order (`time, value, direction, bs, offset,
/// prio`), the I/O's offset per I/O, 0 in averaged windows; without it no
/// offset column.
#[test]
fn log_offset_like_fio() {
    let fio = ensure_fio();
    let dir = scratch("log-offset-like-fio");
    for extra in ["log_offset=1\n", "log_offset=1\nlog_avg_msec=50\n", ""] {
        let mut shapes = Vec::new();
        for cmd in [fio.as_str(), BENCH] {
            for e in std::fs::read_dir(&dir).unwrap() {
                let p = e.unwrap().path();
                if p.extension().is_some_and(|x| x == "log") {
                    std::fs::remove_file(p).unwrap();
                }
            }
            let job = format!(
                "[j]\nioengine=psync\nrw=write\nbs=4k\nsize=256k\nfilename=lf\n\
                 write_lat_log=l\nwrite_bw_log=l\nwrite_iops_log=l\n{extra}"
            );
            std::fs::write(dir.join("j.fio"), job).unwrap();
            run_quiet(&dir, cmd, "j.fio");
            let mut shape = Vec::new();
            for log in ["l_lat.1.log", "l_clat.1.log", "l_bw.1.log", "l_iops.1.log"] {
                let rows = log_rows(&dir.join(log));
                let cols: Vec<usize> = rows.iter().map(Vec::len).collect();
                let offsets: Vec<u64> = if extra.is_empty() {
                    Vec::new()
                } else {
                    rows.iter().map(|r| r[4]).collect()
                };
                // Per-I/O offsets as the I/Os went: 0, 4k, 8k, ...
                let per_io = !extra.contains("avg");
                if per_io && !extra.is_empty() {
                    let want: Vec<u64> = (0..rows.len() as u64).map(|i| i * 4096).collect();
                    assert_eq!(offsets, want, "{cmd} {log} {extra:?}");
                }
                if !per_io {
                    assert!(offsets.iter().all(|&o| o == 0), "{cmd} {log}");
                }
                shape.push((
                    log,
                    cols.first().copied(),
                    cols.iter().all(|&c| c == cols[0]),
                ));
            }
            shapes.push(shape);
        }
        assert_eq!(shapes[0], shapes[1], "{extra:?}: (log, columns, all alike)");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The JSON document in a run's output (fio may print an error line
/// before it).
fn json_of(cmd: &str, dir: &Path, args: &[&str]) -> serde_json::Value {
    let o = Command::new(cmd)
        .args(args)
        .arg("--output-format=json")
        .current_dir(dir)
        .output()
        .unwrap();
    json_in(cmd, &String::from_utf8_lossy(&o.stdout))
}

/// latency_target: fio's depth search. The reported fields
/// (latency_depth/target/window/percentile, fio's units), the depth the
/// I/Os ran at, the early end once the depth is found, and the
/// ETIMEDOUT failure with latency_percentile=100.
#[test]
fn latency_target_like_fio() {
    let fio = ensure_fio();
    let dir = scratch("latency-target-like-fio");
    std::fs::write(dir.join("lf"), vec![0u8; 16 << 20]).unwrap();
    let lat = |v: &serde_json::Value| {
        let j = &v["jobs"][0];
        (
            j["latency_depth"].as_u64().unwrap(),
            j["latency_target"].as_u64().unwrap(),
            j["latency_window"].as_u64().unwrap(),
            j["latency_percentile"].as_f64().unwrap(),
        )
    };
    // Always on target: the depth doubles up to iodepth (1, 2, 4, 8, 16),
    // then one more window at 16 (statistics reset) and the job ends,
    // long before its runtime.
    let met = [
        "--name=l",
        "--ioengine=null",
        "--size=1t",
        "--bs=4k",
        "--rw=randread",
        "--iodepth=16",
        "--time_based",
        "--runtime=5",
        "--latency_target=1s",
        "--latency_window=50ms",
    ];
    for cmd in [fio.as_str(), BENCH] {
        let v = json_of(cmd, &dir, &met);
        assert_eq!(lat(&v), (16, 1_000_000_000, 50_000, 100.0), "{cmd}");
        let rt = v["jobs"][0]["job_runtime"].as_u64().unwrap();
        assert!(
            (40..1000).contains(&rt),
            "{cmd}: ran {rt} ms after the reset"
        );
        let o = Command::new(cmd)
            .args(met)
            .current_dir(&dir)
            .output()
            .unwrap();
        let line = String::from_utf8_lossy(&o.stdout)
            .lines()
            .find(|l| l.trim_start().starts_with("latency   :"))
            .map(str::trim)
            .map(str::to_string);
        assert_eq!(
            line.as_deref(),
            Some("latency   : target=1000000000, window=50000, percentile=100.00%, depth=16"),
            "{cmd}"
        );
    }
    // Never on target (1 µs on direct disk reads), 99.9%: the depth stays
    // at 1 the whole runtime, whatever iodepth allows.
    let missed = [
        "--name=l",
        "--ioengine=libaio",
        "--direct=1",
        "--filename=lf",
        "--bs=4k",
        "--rw=randread",
        "--iodepth=16",
        "--time_based",
        "--runtime=400ms",
        "--latency_target=1",
        "--latency_window=20ms",
        "--latency_percentile=99.9",
    ];
    for cmd in [fio.as_str(), BENCH] {
        let v = json_of(cmd, &dir, &missed);
        assert_eq!(lat(&v), (1, 1000, 20_000, 99.9), "{cmd}");
        let j = &v["jobs"][0];
        assert_eq!(j["iodepth_level"]["1"].as_f64(), Some(100.0), "{cmd}: {j}");
        assert!(j["job_runtime"].as_u64().unwrap() >= 350, "{cmd}");
        assert_eq!(j["error"].as_u64(), Some(0), "{cmd}");
    }
    // latency_percentile=100: a late I/O at depth 1 fails the job.
    let fatal: Vec<&str> = missed[..missed.len() - 1].to_vec();
    for cmd in [fio.as_str(), BENCH] {
        let v = json_of(cmd, &dir, &fatal);
        let j = &v["jobs"][0];
        assert_eq!(j["error"].as_u64(), Some(110), "{cmd}: ETIMEDOUT");
        assert!(j["read"]["total_ios"].as_u64().unwrap() <= 16, "{cmd}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// random_generator=lfsr: every block exactly once per pass, even with
/// norandommap (fio's LFSR needs no map), from both tools' logs.
#[test]
fn lfsr_every_block_once_like_fio() {
    let fio = ensure_fio();
    let dir = scratch("lfsr-like-fio");
    std::fs::write(dir.join("zf"), vec![0u8; 1 << 20]).unwrap();
    let job = "[l]\nioengine=psync\nfilename=zf\nrw=randread\nbs=4k\nsize=1m\n\
               norandommap=1\nrandom_generator=lfsr\n";
    for cmd in [fio.as_str(), BENCH] {
        let mut offs: Vec<u64> = offsets_of(&dir, cmd, job).iter().map(|x| x.1).collect();
        assert_eq!(offs.len(), 256, "{cmd}");
        let in_order = offs.clone();
        offs.sort_unstable();
        let want: Vec<u64> = (0..256).map(|i| i * 4096).collect();
        assert_eq!(offs, want, "{cmd}: every block once");
        assert_ne!(in_order, want, "{cmd}: in a random order");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Many files per job (filecreate-ioengine.fio's nrfiles=31250): files
/// open when used and close when done, so 5000 files at openfiles=1 run
/// under `ulimit -n 64` in both tools, with every file written (or laid
/// out and read) in full.
#[test]
fn many_files_open_on_demand_like_fio() {
    let fio = ensure_fio();
    for (tag, opts, dir_name) in [
        (
            "create",
            "rw=write\ncreate_on_open=1\nfallocate=none\n",
            "write",
        ),
        ("layout", "rw=read\n", "read"),
    ] {
        for (who, cmd) in [("fio", fio.as_str()), ("nvme-bench", BENCH)] {
            let dir = scratch(&format!("many-files-{tag}-{who}"));
            std::fs::write(
                dir.join("j.fio"),
                format!(
                    "[m]\nioengine=psync\nbs=4k\nfilesize=4k\nnrfiles=5000\nopenfiles=1\n{opts}"
                ),
            )
            .unwrap();
            let o = Command::new("sh")
                .args([
                    "-c",
                    "ulimit -n 64 && exec \"$0\" j.fio --output-format=json",
                    cmd,
                ])
                .current_dir(&dir)
                .output()
                .unwrap();
            let out = String::from_utf8_lossy(&o.stdout);
            assert!(
                o.status.success(),
                "{who} {tag}: {}{out}",
                String::from_utf8_lossy(&o.stderr)
            );
            let v = json_in(who, &out);
            let j = &v["jobs"][0];
            assert_eq!(j["error"].as_u64(), Some(0), "{who} {tag}");
            assert_eq!(j[dir_name]["total_ios"].as_u64(), Some(5000), "{who} {tag}");
            let files: Vec<u64> = std::fs::read_dir(&dir)
                .unwrap()
                .map(|e| e.unwrap())
                .filter(|e| e.file_name().to_string_lossy().starts_with("m."))
                .map(|e| e.metadata().unwrap().len())
                .collect();
            assert_eq!(files.len(), 5000, "{who} {tag}");
            assert!(files.iter().all(|&l| l == 4096), "{who} {tag}");
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    // A hostile count is refused with the limit, not run out of memory.
    let dir = scratch("many-files-limit");
    for job in ["nrfiles=2000000\n", "nrfiles=1000000\nnumjobs=8\n"] {
        std::fs::write(
            dir.join("j.fio"),
            format!("[m]\nioengine=psync\nbs=4k\n{job}"),
        )
        .unwrap();
        let o = Command::new(BENCH)
            .args(["--parse-only", "j.fio"])
            .current_dir(&dir)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            !o.status.success() && err.contains("memory"),
            "{job}: {err}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
