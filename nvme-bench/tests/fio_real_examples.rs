//! fio's own examples: the 86 job files of fio 3.33's `examples/` directory,
//! vendored unchanged under `tests/fio-3.33-examples/` (see its README).
//!
//! The rule (issue #14): for each example that Debian's fio 3.33 accepts
//! (`fio --parse-only`), nvme-bench accepts it unchanged but for a
//! mechanical swap, and `--parse-only` prints the same job header lines as
//! fio (`name: (g=N): rw=..., bs=(R) ..., ioengine=..., iodepth=N`, `...`
//! under cloned jobs, `Starting N processes`).
//!
//! The swap, applied to every file the same way:
//! - an `ioengine=` nvme-bench does not implement becomes `psync` (an
//!   engine that moves data to or from storage) or `null` (one that does no
//!   storage I/O: cpuio, exec, net, cpp_null); every option of the swapped
//!   engine (as `fio --enghelp=ENGINE` lists them) is dropped;
//! - a `filename=` that is absolute, or belongs to a swapped engine (a
//!   device, URL or pool), becomes a plain file name in the scratch
//!   directory; an absolute `directory=` is dropped (the scratch directory).
//!
//! Nothing else changes, and fio 3.33 must still accept the swapped file.
//!
//! fio's header lines come from `fio --create_only=1` in a scratch
//! directory. So that no example lays out its full size (several name
//! 10-100 GiB), fio's run gets a copy with each `size=`/`filesize=` over
//! 8 MiB lowered to 8m; sizes do not appear in the header lines, and
//! nvme-bench parses the uncapped file.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{ensure_fio, header_lines, job_files, scratch};

const BENCH: &str = env!("CARGO_BIN_EXE_nvme-bench");

/// Files fio 3.33 accepts that nvme-bench refuses (after the swap), and
/// why. "pending: X" marks work another branch is doing.
const REFUSED: &[(&str, &str)] = &[];

/// Files whose node lists fio checks against the host on a real parse
/// only (numa.fio: on a host without node 1 fio's run, `--create_only`
/// included, drops job2 and fails before any I/O). Their header lines are
/// compared with nvme-bench's run of the capped file, which checks the
/// same way, not with `--parse-only`, which (as fio's) does not.
const HOST_CHECKED: &[&str] = &["numa.fio"];

/// fio flags a file's `--create_only` run needs. filecreate-ioengine.fio:
/// 16 jobs of 31250 files overflow fio's default shared-memory pool for
/// file structures ("smalloc: OOM", then an assertion): a larger pool
/// (KiB) changes nothing else.
const FIO_FLAGS: &[(&str, &[&str])] = &[("filecreate-ioengine.fio", &["--alloc-size=262144"])];

/// The acceptance reached so far (of the files fio accepts): all of them
/// since mtd.fio (block_error_percentiles, trimwrite with bs=512,512,16384).
/// A regression fails the test.
const FLOOR_PCT: f64 = 100.0;

/// Engines nvme-bench implements (as fio spells them).
const OUR_ENGINES: &[&str] = &[
    "nvme-vfio",
    "nvme_vfio",
    "nvme",
    "io_uring",
    "io_uring_cmd",
    "libaio",
    "psync",
    "pvsync",
    "sync",
    "null",
];

/// fio engines that do no storage I/O: swapped for `null`.
const NO_STORAGE_IO: &[&str] = &["cpp_null", "cpuio", "exec", "net", "netsplice"];

/// Run `cmd args` in `dir`, at most `limit`; returns (success, stdout, stderr).
/// Output goes to files beside `dir`, read when the child is done. At the
/// limit the child is killed, and so is any process still working in `dir`:
/// fio's job processes (fio 3.33's `--create_only=1` of an
/// `io_submit_mode=offload` job never ends, in its own process group). What
/// was printed until then is returned.
fn run_in(dir: &Path, cmd: &str, args: &[&str], limit: Duration) -> (bool, String, String) {
    let (out, err) = (dir.with_extension("stdout"), dir.with_extension("stderr"));
    let mut child = Command::new(cmd)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .expect(cmd);
    let t0 = Instant::now();
    let ok = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st.success();
        }
        if t0.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            kill_working_in(dir);
            break false;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let read = |p: &Path| {
        let s = String::from_utf8_lossy(&std::fs::read(p).unwrap_or_default()).into_owned();
        let _ = std::fs::remove_file(p);
        s
    };
    (ok, read(&out), read(&err))
}

/// SIGKILL every process whose working directory is `dir` (a scratch
/// directory of this test).
fn kill_working_in(dir: &Path) {
    let Ok(d) = dir.canonicalize() else { return };
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if std::fs::read_link(e.path().join("cwd")).is_ok_and(|c| c == d) {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    }
}

/// `key` and `value` of an option line (`key` lowercased), or None for
/// comments, blank lines and section headers.
fn key_value(line: &str) -> Option<(String, String)> {
    let t = line.trim();
    if t.is_empty() || t.starts_with('#') || t.starts_with(';') || t.starts_with('[') {
        return None;
    }
    let (k, v) = t.split_once('=').unwrap_or((t, ""));
    Some((k.trim().to_ascii_lowercase(), v.trim().to_string()))
}

/// The options of fio's engine `name` (`fio --enghelp=NAME`; none when it
/// has none or is not built into this fio).
fn engine_options(fio: &str, name: &str, cache: &mut HashMap<String, Vec<String>>) -> Vec<String> {
    cache
        .entry(name.to_string())
        .or_insert_with(|| {
            let o = Command::new(fio)
                .arg(format!("--enghelp={name}"))
                .output()
                .expect("fio --enghelp");
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter(|l| !l.starts_with("fio:") && !l.starts_with("IO engine"))
                .filter_map(|l| l.split_whitespace().next())
                .filter(|w| {
                    w.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                })
                .map(str::to_ascii_lowercase)
                .collect()
        })
        .clone()
}

/// The swap described at the top; returns the swapped text and what was
/// swapped (empty when the file is used as shipped).
fn swap(fio: &str, text: &str, cache: &mut HashMap<String, Vec<String>>) -> (String, Vec<String>) {
    let mut swapped_engines = Vec::new();
    for line in text.lines() {
        if let Some((k, v)) = key_value(line) {
            if k == "ioengine"
                && !OUR_ENGINES.contains(&v.as_str())
                && !swapped_engines.contains(&v)
            {
                swapped_engines.push(v);
            }
        }
    }
    let mut drop_keys: Vec<String> = Vec::new();
    for e in &swapped_engines {
        drop_keys.extend(engine_options(fio, e, cache));
    }
    let mut notes = Vec::new();
    let mut out = String::new();
    for line in text.lines() {
        let Some((k, v)) = key_value(line) else {
            out.push_str(line);
            out.push('\n');
            continue;
        };
        let new = if k == "ioengine" && swapped_engines.contains(&v) {
            let to = if NO_STORAGE_IO.contains(&v.as_str()) {
                "null"
            } else {
                "psync"
            };
            notes.push(format!("ioengine={v} -> {to}"));
            Some(format!("ioengine={to}"))
        } else if drop_keys.contains(&k) {
            notes.push(format!("dropped {k}"));
            None
        } else if k == "filename" && (v.starts_with('/') || !swapped_engines.is_empty()) {
            let base = v.trim_end_matches('/').rsplit('/').next().unwrap_or("");
            let mut name: String = base
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            if name.is_empty() {
                name = "file".into();
            }
            if name != v {
                notes.push(format!("filename={v} -> {name}"));
            }
            Some(format!("filename={name}"))
        } else if k == "directory" && v.starts_with('/') {
            notes.push(format!("dropped directory={v}"));
            None
        } else {
            Some(line.to_string())
        };
        if let Some(l) = new {
            out.push_str(&l);
            out.push('\n');
        }
    }
    (out, notes)
}

/// A plain size (`100g`, `102404k`, `4096`) in bytes; None for anything
/// else (percentages, ranges), which is left alone.
fn plain_size(v: &str) -> Option<u64> {
    let v = v.split([' ', '\t', ';', '#']).next()?.to_ascii_lowercase();
    let digits: String = v.chars().take_while(|c| c.is_ascii_digit()).collect();
    let n: u64 = digits.parse().ok()?;
    let mult = match v[digits.len()..].trim_end_matches(['b', 'i']) {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        "p" => 1 << 50,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// `text` with every `size=`/`filesize=` above 8 MiB lowered to 8m (fio's
/// header run only).
fn capped(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        match key_value(line) {
            Some((k, v))
                if (k == "size" || k == "filesize")
                    && plain_size(&v).is_some_and(|n| n > 8 << 20) =>
            {
                out.push_str(&format!("{k}=8m\n"));
            }
            _ => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

#[test]
fn swap_is_mechanical() {
    let fio = ensure_fio();
    let mut cache = HashMap::new();
    let text = "[global]\nioengine=sg\nfilename=/dev/sdb\nbs=512\n\
                [a]\nsg_write_mode=verify_bytchk_01\nrw=write\ndirectory=/scratch\n\
                [b]\nioengine=cpuio\ncpuload=50\n";
    let (s, _) = swap(&fio, text, &mut cache);
    assert_eq!(
        s,
        "[global]\nioengine=psync\nfilename=sdb\nbs=512\n[a]\nrw=write\n[b]\nioengine=null\n"
    );
    let (s, notes) = swap(
        &fio,
        "[a]\nioengine=libaio\nfilename=x\nsize=100g\n",
        &mut cache,
    );
    assert!(notes.is_empty(), "{notes:?}");
    assert_eq!(capped(&s), "[a]\nioengine=libaio\nfilename=x\nsize=8m\n");
    assert_eq!(plain_size("102404k ; 100Mb+4k"), Some(102404 << 10));
    assert_eq!(plain_size("50%"), None);
}

#[test]
fn fio_333_examples_parse_like_fio() {
    let fio = ensure_fio();
    let mut cache = HashMap::new();
    let mut accepted_by_fio = 0;
    let mut accepted_by_us = 0;
    let mut failures = Vec::new();
    let mut refused = Vec::new();
    let mut swapped = Vec::new();
    for path in job_files("tests/fio-3.33-examples") {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&path).unwrap();
        let dir = scratch(&format!("real-examples-{name}"));
        let shipped = path.to_str().unwrap();
        let limit = Duration::from_secs(30);
        let (fio_ok, _, _) = run_in(&dir, &fio, &["--parse-only", shipped], limit);
        if !fio_ok {
            let _ = std::fs::remove_dir_all(&dir);
            continue;
        }
        accepted_by_fio += 1;
        let (text, notes) = swap(&fio, &text, &mut cache);
        std::fs::write(dir.join("job.fio"), &text).unwrap();
        // A relative directory= the file names must exist for fio's run
        // (1mbs_clients.fio: directory=tmp): made in the scratch directory.
        for line in text.lines() {
            if let Some((k, v)) = key_value(line) {
                if k == "directory" && !v.starts_with('/') && !v.contains("..") {
                    std::fs::create_dir_all(dir.join(v)).unwrap();
                }
            }
        }
        std::fs::write(dir.join("capped.fio"), capped(&text)).unwrap();
        if !notes.is_empty() {
            swapped.push(format!("{name}: {}", notes.join(", ")));
            let (ok, _, err) = run_in(&dir, &fio, &["--parse-only", "job.fio"], limit);
            if !ok {
                failures.push(format!("{name}: fio refuses the swapped file: {err}"));
                continue;
            }
        }
        let (ours_ok, ours_out, ours_err) =
            run_in(&dir, BENCH, &["--parse-only", "job.fio"], limit);
        let known = REFUSED.iter().find(|(f, _)| *f == name);
        if !ours_ok {
            match known {
                Some((_, why)) => refused.push(format!("{name}: {why}")),
                None => failures.push(format!("{name}: refused: {}", ours_err.trim())),
            }
            let _ = std::fs::remove_dir_all(&dir);
            continue;
        }
        accepted_by_us += 1;
        if known.is_some() {
            failures.push(format!("{name}: accepted now; take it off REFUSED"));
        }
        let mut fio_args = vec!["--create_only=1", "--eta=never"];
        if let Some((_, flags)) = FIO_FLAGS.iter().find(|(f, _)| *f == name) {
            fio_args.extend_from_slice(flags);
        }
        fio_args.push("capped.fio");
        let (_, fio_out, fio_err) = run_in(&dir, &fio, &fio_args, Duration::from_secs(60));
        let theirs = header_lines(&fio_out);
        let ours = if HOST_CHECKED.contains(&name.as_str()) {
            header_lines(&run_in(&dir, BENCH, &["capped.fio"], Duration::from_secs(60)).1)
        } else {
            header_lines(&ours_out)
        };
        if theirs.is_empty() {
            failures.push(format!("{name}: no header lines from fio: {fio_err}"));
        } else if theirs != ours {
            failures.push(format!(
                "{name}: header lines differ\n  fio:  {theirs:#?}\n  ours: {ours:#?}"
            ));
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
    let pct = 100.0 * accepted_by_us as f64 / accepted_by_fio.max(1) as f64;
    eprintln!(
        "fio 3.33 examples: nvme-bench accepts {accepted_by_us} of the {accepted_by_fio} files \
         fio accepts ({pct:.1}%)\nswapped: {swapped:#?}\nrefused: {refused:#?}"
    );
    assert_eq!(
        accepted_by_fio, 67,
        "fio 3.33 accepts 67 of its 86 examples"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(pct >= FLOOR_PCT, "acceptance {pct:.1}% below {FLOOR_PCT}%");
}

/// The options added for this corpus are accepted and refused as fio 3.33
/// accepts and refuses them (`--parse-only`), but for the listed cases
/// nvme-bench refuses on purpose.
#[test]
fn corpus_options_parse_like_fio() {
    let fio = ensure_fio();
    let dir = scratch("corpus-options");
    // (option lines, refused here although fio takes it: why)
    let cases: &[(&str, Option<&str>)] = &[
        ("threads=1", None),
        ("threads", None),
        ("threads=x", None),
        ("rw=read:-8k\nbs=4k", None),
        ("rw=write:-4k\nbs=4k", None),
        (
            "rw=read:-2k\nbs=4k",
            Some("a backwards seek shorter than a block"),
        ),
        (
            "rw=randread:-4",
            Some("a negative I/O count for random modes"),
        ),
        ("random_distribution=zoned:50/5:30/15:20/", None),
        ("random_distribution=zoned:100/", None),
        ("random_distribution=zoned:50/:50/", None),
        ("random_distribution=zoned:50/50::50/50", None),
        ("random_distribution=zoned:60/5:50/95", None),
        (
            "random_distribution=zoned:50/5:50/5",
            Some("ranges covering less than the region"),
        ),
        ("io_submit_mode=inline", None),
        ("io_submit_mode=bogus", None),
        ("io_submit_mode=offload", None),
        ("nonvectored=1", None),
        ("nonvectored=-1", None),
        ("nonvectored=0", Some("vectored io_uring commands")),
        (
            "zonemode=zbd\nzonesize=1m\nmax_open_zones=4\nread_beyond_wp=1",
            None,
        ),
        ("zonemode=zbd\nzone_reset_threshold=2", None),
        ("zonemode=zbd\njob_max_open_zones=x", None),
        ("zonemode=bogus", None),
        ("zonemode=none", None),
        ("zonemode=strided\nzonesize=1m", None),
        // fio refuses these on a run (fixup_options), not --parse-only.
        ("zonemode=strided", Some("no zonesize")),
        ("zonesize=1m", Some("zonesize under zonemode=none")),
        (
            "zonemode=strided\nzonesize=1m\nzonerange=2m\nzoneskip=1m",
            None,
        ),
        ("log_offset=1", None),
        ("random_generator=lfsr", None),
        ("random_generator=tausworthe64", None),
        ("random_generator=bogus", None),
        (
            "latency_target=500000\nlatency_window=5s\nlatency_percentile=99.9",
            None,
        ),
        ("latency_target=10ms\nlatency_run=1", None),
        ("latency_percentile=101", None),
        // fio 3.33 takes '1500ns' as 1500 us here.
        ("latency_target=1500ns", Some("an ns value fio reads as us")),
        ("sync=dsync", None),
        ("sync=bogus", None),
        ("scramble_buffers=0", None),
        ("numa_cpu_nodes=0", None),
        ("numa_mem_policy=interleave", None),
        // fio checks NUMA values only on a real parse, not --parse-only.
        ("numa_mem_policy=local:0", Some("a node list for 'local'")),
        ("numa_cpu_nodes=!0", Some("libnuma's '!' form")),
    ];
    let mut bad = Vec::new();
    for (opts, ours_refuses) in cases {
        let job = format!("[a]\nioengine=io_uring\nfilename=f\nsize=1m\nrw=randread\n{opts}\n");
        std::fs::write(dir.join("j.fio"), &job).unwrap();
        let limit = Duration::from_secs(30);
        let (fio_ok, _, _) = run_in(&dir, &fio, &["--parse-only", "j.fio"], limit);
        let (ours_ok, _, err) = run_in(&dir, BENCH, &["--parse-only", "j.fio"], limit);
        let want = fio_ok && ours_refuses.is_none();
        if ours_ok != want || (ours_refuses.is_some() && !fio_ok) {
            bad.push(format!("{opts:?}: fio {fio_ok}, ours {ours_ok} {err}"));
        }
    }
    assert!(bad.is_empty(), "{bad:#?}");
}

/// `rw=write:-N` writes the blocks fio writes: a zeroed 64 KiB file, 4 KiB
/// writes of 0xab, seeking back 8 KiB (or 12 KiB) after each; fio's walk
/// leaves the last block (or more) untouched.
#[test]
fn backwards_writes_like_fio() {
    let fio = ensure_fio();
    for back in ["8k", "12k"] {
        let job = format!(
            "[a]\nioengine=psync\nfilename=f\nsize=64k\nbs=4k\nrw=write:-{back}\n\
             buffer_pattern=0xab\n"
        );
        let mut maps = Vec::new();
        for (who, cmd) in [("fio", fio.as_str()), ("ours", BENCH)] {
            let dir = scratch(&format!("backwards-{who}-{back}"));
            std::fs::write(dir.join("j.fio"), &job).unwrap();
            std::fs::write(dir.join("f"), vec![0u8; 65536]).unwrap();
            let (ok, _, err) = run_in(&dir, cmd, &["j.fio"], Duration::from_secs(60));
            assert!(ok, "{who}: {err}");
            let data = std::fs::read(dir.join("f")).unwrap();
            let map: String = data
                .chunks(4096)
                .map(|c| if c.iter().all(|&b| b == 0) { '.' } else { 'w' })
                .collect();
            maps.push(map);
        }
        assert_eq!(maps[0], maps[1], "rw=write:-{back}: fio's, then ours");
        assert!(maps[0].contains('.'), "{}", maps[0]);
    }
}

/// zonemode=zbd: accepted as fio accepts it, refused when the job starts
/// with the reason (a regular file is not a zoned block device; fio
/// emulates zones there, nvme-bench does not).
#[test]
fn zbd_refused_at_run_time() {
    let dir = scratch("zbd");
    std::fs::write(
        dir.join("j.fio"),
        "[a]\nioengine=psync\nfilename=f\nsize=1m\nzonemode=zbd\nzonesize=256k\nrw=write\n",
    )
    .unwrap();
    let (ok, _, _) = run_in(
        &dir,
        BENCH,
        &["--parse-only", "j.fio"],
        Duration::from_secs(30),
    );
    assert!(ok);
    let (ok, out, err) = run_in(&dir, BENCH, &["j.fio"], Duration::from_secs(30));
    assert!(!ok, "{out}");
    assert!(
        err.contains("zonemode=zbd: f is not a zoned block device"),
        "{err}"
    );
}

/// ioengine=null without size=: fio accepts the file and fails the job
/// when it starts; so does nvme-bench.
#[test]
fn null_without_size_fails_at_start_like_fio() {
    let fio = ensure_fio();
    let dir = scratch("null-nosize");
    std::fs::write(
        dir.join("j.fio"),
        "[a]\nioengine=null\ntime_based\nruntime=1\n",
    )
    .unwrap();
    for cmd in [fio.as_str(), BENCH] {
        let limit = Duration::from_secs(30);
        let (ok, _, err) = run_in(&dir, cmd, &["--parse-only", "j.fio"], limit);
        assert!(ok, "{cmd}: {err}");
        let (ok, _, err) = run_in(&dir, cmd, &["j.fio"], limit);
        assert!(!ok, "{cmd}");
        assert!(err.contains("you need to specify size="), "{cmd}: {err}");
    }
}

/// `rate_min` / `rate_iops_min` (1mbs_clients.fio): a job below its
/// minimum fails with EIO at the first check (2 s settling, then a
/// `rate_cycle`), one that meets it runs on; the checks fio makes before a
/// run (a minimum above the rate; bytes and IOPS minimums together) too.
#[test]
fn rate_min_like_fio() {
    let fio = ensure_fio();
    let dir = scratch("ratemin");
    let base = "[a]\nioengine=null\nsize=100m\nbs=4k\ntime_based\nruntime=3500ms\n";
    // (option, fails at run time with this message)
    let cases: &[(&str, Option<&str>)] = &[
        (
            "rate_iops_min=1000000000",
            Some("rate_iops_min=1000000000 not met, got "),
        ),
        (
            "ratemin=1000g",
            Some("rate_min=1073741824000B/s not met, got "),
        ),
        ("rate_min=1k\nrate_cycle=500", None),
    ];
    for (opt, fails) in cases {
        std::fs::write(dir.join("j.fio"), format!("{base}{opt}\n")).unwrap();
        for cmd in [fio.as_str(), BENCH] {
            let t0 = Instant::now();
            let (ok, out, err) = run_in(
                &dir,
                cmd,
                &["--output-format=json", "j.fio"],
                Duration::from_secs(30),
            );
            let took = t0.elapsed();
            match fails {
                Some(msg) => {
                    assert!(!ok, "{cmd} {opt}");
                    assert!(err.contains(msg), "{cmd} {opt}: {err}");
                    // The first check that can fail comes 3 s in.
                    assert!(took >= Duration::from_millis(2900), "{cmd} {opt}: {took:?}");
                    let json = &out[out.find('{').unwrap()..];
                    let v: serde_json::Value = serde_json::from_str(json).unwrap();
                    assert_eq!(v["jobs"][0]["error"], 5, "{cmd} {opt}");
                }
                None => assert!(ok, "{cmd} {opt}: {err}"),
            }
        }
    }
    for opt in [
        "rate=100k\nratemin=200k",
        "rate_iops=10\nrate_iops_min=20",
        "ratemin=1k\nrate_iops_min=1",
    ] {
        std::fs::write(dir.join("j.fio"), format!("{base}{opt}\n")).unwrap();
        for cmd in [fio.as_str(), BENCH] {
            let (ok, _, _) = run_in(
                &dir,
                cmd,
                &["--parse-only", "j.fio"],
                Duration::from_secs(30),
            );
            let (ok2, _, _) = run_in(&dir, cmd, &["j.fio"], Duration::from_secs(30));
            assert!(!(ok && ok2), "{cmd} {opt}");
        }
    }
}

/// `unlink=1` (pmemblk.fio): the job's file is gone when it ends, in both
/// tools; `unlink=0` and another job's file stay.
#[test]
fn unlink_like_fio() {
    let fio = ensure_fio();
    for u in ["0", "1"] {
        let job = format!(
            "[a]\nioengine=psync\nfilename=u.dat\nsize=64k\nrw=write\nunlink={u}\n\
             [b]\nioengine=psync\nfilename=v.dat\nsize=64k\nrw=write\n"
        );
        let mut seen = Vec::new();
        for (who, cmd) in [("fio", fio.as_str()), ("ours", BENCH)] {
            let dir = scratch(&format!("unlink-{who}-{u}"));
            std::fs::write(dir.join("j.fio"), &job).unwrap();
            let (ok, _, err) = run_in(&dir, cmd, &["j.fio"], Duration::from_secs(60));
            assert!(ok, "{who}: {err}");
            seen.push((dir.join("u.dat").exists(), dir.join("v.dat").exists()));
        }
        assert_eq!(seen[0], seen[1], "unlink={u}: fio's, then ours");
        assert_eq!(seen[0], (u == "0", true), "unlink={u}");
    }
    // Several files per job: every one goes.
    let job = "[a]\nioengine=psync\nnrfiles=3\nsize=96k\nrw=write\nunlink=1\n";
    for (who, cmd) in [("fio", fio.as_str()), ("ours", BENCH)] {
        let dir = scratch(&format!("unlink-multi-{who}"));
        std::fs::write(dir.join("j.fio"), job).unwrap();
        let (ok, _, err) = run_in(&dir, cmd, &["j.fio"], Duration::from_secs(60));
        assert!(ok, "{who}: {err}");
        let left: Vec<String> = common::file_names(&dir)
            .into_iter()
            .filter(|n| n.starts_with("a."))
            .collect();
        assert!(left.is_empty(), "{who}: {left:?}");
    }
}

/// `flow` (flow.fio, butterfly.fio): two jobs of one flow with weights 1
/// and 3 do I/Os in the ratio 1:3 in both tools (with and without
/// `flow_sleep`); without weights, the ratio is whatever the speeds give.
#[test]
fn flow_like_fio() {
    let fio = ensure_fio();
    let dir = scratch("flow");
    for sleep in ["", "flow_sleep=100\n"] {
        let job = format!(
            "[global]\nioengine=null\nsize=1g\nbs=4k\ntime_based\nruntime=1\n{sleep}\
             [a]\nflow=1\n[b]\nflow=3\n"
        );
        std::fs::write(dir.join("j.fio"), &job).unwrap();
        for cmd in [fio.as_str(), BENCH] {
            let (v, _) = common::run_json_in(&dir, cmd, &["--output-format=json", "j.fio"]);
            let n: Vec<f64> = (0..2)
                .map(|i| v["jobs"][i]["read"]["total_ios"].as_f64().unwrap())
                .collect();
            let r = n[1] / n[0].max(1.0);
            assert!((2.8..3.2).contains(&r), "{cmd} {sleep:?}: {n:?}");
        }
    }
}

/// ioengine=null takes any block size (netio_multicast.fio's bs=64), and
/// moves what fio's null engine moves; other engines keep multiples of 512.
#[test]
fn null_any_block_size_like_fio() {
    let fio = ensure_fio();
    let dir = scratch("null-bs");
    // Sizes are multiples of the block sizes: for other sizes fio does one
    // I/O fewer than nvme-bench (it rounds the size down; a separate
    // difference, bs=512 size=300000 too).
    for (bs, rw) in [("64", "randwrite"), ("100", "read"), ("1000,3000", "rw")] {
        let job = format!("[a]\nioengine=null\nsize=600000\nbs={bs}\nrw={rw}\n");
        std::fs::write(dir.join("j.fio"), &job).unwrap();
        let mut got = Vec::new();
        for cmd in [fio.as_str(), BENCH] {
            let (v, _) = common::run_json_in(&dir, cmd, &["--output-format=json", "j.fio"]);
            let j = &v["jobs"][0];
            got.push(
                ["read", "write"].map(|d| (j[d]["io_bytes"].as_u64(), j[d]["total_ios"].as_u64())),
            );
        }
        if rw == "rw" {
            // A mix: the split follows each tool's draws; the total is set.
            let total = |g: &[(Option<u64>, Option<u64>); 2]| g[0].0.unwrap() + g[1].0.unwrap();
            assert!(total(&got[1]) >= 600000 - 3000, "{got:?}");
        } else {
            assert_eq!(got[0], got[1], "bs={bs}: fio's, then ours");
        }
    }
    std::fs::write(
        dir.join("j.fio"),
        "[a]\nioengine=psync\nfilename=f\nsize=64k\nbs=64\ndirect=1\n",
    )
    .unwrap();
    let (ok, _, err) = run_in(
        &dir,
        BENCH,
        &["--parse-only", "j.fio"],
        Duration::from_secs(30),
    );
    assert!(!ok && err.contains("not a multiple of 512"), "{err}");
}
