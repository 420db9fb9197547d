//! nvme-bench's fio job language (options.rs): a job file (INI, `${ENV}`
//! expansion, `include`) plus command-line options, through
//! `parse_command_line`, which also runs `apply` (every option),
//! `fixup` and `validate` on each job.
//!
//! Input: the job file text, then optionally a NUL and NUL-separated
//! command-line arguments (only `--…` ones are passed: a bare argument
//! would name a file to read, `-` would read stdin).
//!
//! Real files are never read from the input: the job file is written to a
//! private temporary directory (the parser reads it back from there), and
//! an input is skipped unless every `include` line it has (after comment
//! stripping and `${ENV}` expansion, exactly as the parser does it) names
//! one of the fixed files placed in that directory. The environment
//! variables a job can expand are set here (the demo job's RUNTIME,
//! TRADDR, BDF and a few FUZZ_* ones).
//!
//! Asserts: no panic, no unbounded allocation; on success there is a job;
//! every job validates, `fixup` is idempotent, block sizes are non-zero
//! multiples of 512, iodepth in 1..=65535 with the batch sizes within it,
//! bssplit shares add up to 100, CPU lists sorted and <= 4095, the
//! percentile list sorted within 0..=100, and parsing is deterministic (checked on every 8th input length).
#![no_main]

include!("bench_options.rs");

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use options::*;

/// Files an `include` may name (all in the private directory).
const INCLUDES: [(&str, &str); 4] = [
    ("inc-global.fio", "[global]\nbs=8k\niodepth=4\n"),
    (
        "inc-job.fio",
        "[inc-job]\nioengine=null\nsize=1m\nrw=randwrite\n",
    ),
    (
        "inc-nested.fio",
        "include inc-job.fio\n[nested]\nioengine=null\nsize=${FUZZ_SIZE}\n",
    ),
    ("inc-self.fio", "[self]\ninclude inc-self.fio\n"),
];

fn dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        // tmpfs when there is one: the job file is rewritten on every run.
        let shm = std::path::Path::new("/dev/shm");
        let base = if shm.is_dir() {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        let d = base.join(format!("nvme-fuzz-job-file.{}", std::process::id()));
        std::fs::create_dir_all(&d).expect("temp dir");
        for (name, text) in INCLUDES {
            std::fs::write(d.join(name), text).expect("include file");
        }
        for (k, v) in [
            ("RUNTIME", "1"),
            ("TRADDR", "0000.01.00.0"),
            ("BDF", "0000:01:00.0"),
            ("FUZZ_SIZE", "1m"),
            ("FUZZ_BS", "4k"),
            ("FUZZ_EMPTY", ""),
            ("FUZZ_INC", "inc-job.fio"),
        ] {
            std::env::set_var(k, v);
        }
        d
    })
}

/// The parser's `${VAR}` expansion (options.rs `expand_env`), to see what
/// a line becomes; `None` where the parser stops with an error.
fn expand(line: &str) -> Option<String> {
    let mut out = String::new();
    let mut rest = line;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let j = after.find('}')?;
        out.push_str(&std::env::var(&after[..j]).ok()?);
        rest = &after[j + 1..];
    }
    out.push_str(rest);
    Some(out)
}

/// Every include in `text` names one of ours (conservatively: any line
/// that mentions "include" at all must be exactly such a line).
fn includes_are_ours(text: &str) -> bool {
    for raw in text.lines() {
        let line = strip_comment(raw).trim();
        if line.is_empty() {
            continue;
        }
        // The parser stops with an error at a line it cannot expand.
        let Some(line) = expand(line) else {
            return true;
        };
        if line.contains("include") {
            match line.strip_prefix("include ") {
                Some(name) if INCLUDES.iter().any(|(n, _)| *n == name.trim()) => {}
                _ => return false,
            }
        }
    }
    true
}

fn check(set: &JobSet) {
    assert!(!set.jobs.is_empty());
    for job in &set.jobs {
        validate(job).expect("a parsed job validates");
        let mut again = job.clone();
        fixup(&mut again);
        assert_eq!(&again, job, "fixup is idempotent");
        for d in 0..2 {
            assert!(job.bs[d] > 0 && job.bs[d] % 512 == 0, "bs {:?}", job.bs);
            if !job.bssplit[d].is_empty() {
                let total: u32 = job.bssplit[d].iter().map(|x| x.1).sum();
                assert_eq!(total, 100);
                assert!(job.bssplit[d].iter().all(|(b, _)| *b > 0 && b % 512 == 0));
            }
            if let Some((lo, hi)) = job.bsrange[d] {
                assert!(lo <= hi && lo > 0);
            }
            let (lo, hi) = job.bs_bounds(d);
            assert!(lo <= hi);
        }
        assert!(job.min_bs() <= job.max_bs());
        assert!((1..=65535).contains(&job.iodepth));
        assert!(job.iodepth_batch_submit >= 1 && job.iodepth_batch_submit <= job.iodepth);
        assert!(job.iodepth_batch_complete_min <= job.iodepth);
        assert!(job.iodepth_batch_complete_max <= job.iodepth);
        assert!((1..=1024).contains(&job.numjobs));
        if let Some(c) = &job.cpus_allowed {
            assert!(!c.is_empty() && c.windows(2).all(|w| w[0] < w[1]) && c[c.len() - 1] <= 4095);
        }
        let p = job.percentiles();
        assert!(!p.is_empty() && p.len() <= 20);
        assert!(p.windows(2).all(|w| w[0] <= w[1]) && p.iter().all(|x| (0.0..=100.0).contains(x)));
        if let Some(Amount::Percent(x)) = job.size {
            assert!((0.0..=100.0).contains(&x));
        }
        if matches!(job.ioengine, EngineKind::Psync | EngineKind::IoUring) {
            let files = files_for(job, 0).expect("validated file names");
            assert!(!files.is_empty() && files.len() <= MAX_FILES as usize);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let mut parts = s.split('\0');
    let text = parts.next().unwrap_or("");
    if !includes_are_ours(text) {
        return;
    }
    let d = dir();
    let path = d.join("job.fio");
    std::fs::write(&path, text).expect("write job file");
    let mut args = vec![path.to_string_lossy().into_owned()];
    args.extend(
        parts
            .filter(|a| a.starts_with("--"))
            .take(32)
            .map(str::to_string),
    );

    let first = parse_command_line(&args);
    if let Ok((_, set)) = &first {
        check(set);
    }
    // Determinism on a sample of inputs (a second parse halves the speed).
    if data.len() % 8 != 0 {
        return;
    }
    let second = parse_command_line(&args);
    match (&first, &second) {
        (Ok((_, a)), Ok((_, b))) => {
            assert_eq!(a.jobs, b.jobs, "deterministic");
        }
        (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
        _ => panic!("parse is not deterministic"),
    }
});
