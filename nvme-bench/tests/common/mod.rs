//! Shared by the fio cross-check tests: installing Debian's fio, running
//! it and nvme-bench on the same job in scratch directories, reading their
//! JSON documents, and comparing the key paths and types of two fio-format
//! JSON documents.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

pub fn ensure_fio() -> String {
    if Command::new("fio")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        return "fio".into();
    }
    assert!(apt_install("fio"), "apt-get install fio failed");
    "fio".into()
}

/// `apt-get install PKG` (waiting up to 10 minutes for another apt run's
/// lock), once more after `apt-get update` if it fails; whether it worked.
pub fn apt_install(pkg: &str) -> bool {
    let apt = |args: &[&str]| {
        Command::new("apt-get")
            .args(["-o", "DPkg::Lock::Timeout=600"])
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success())
    };
    apt(&["install", "-y", "-q", pkg])
        || (apt(&["update", "-q"]) && apt(&["install", "-y", "-q", pkg]))
}

pub fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Every key path with its type; job array elements as `jobs[]`; the
/// contents of `bins` (keys are latency values) and `nvme_bench` skipped.
pub fn paths(v: &Value, at: String, out: &mut BTreeMap<String, &'static str>) {
    out.insert(at.clone(), kind(v));
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                if k == "nvme_bench" {
                    continue;
                }
                let p = format!("{at}/{k}");
                // Key sets that depend on what the job set: the values
                // must be strings (checked below), the keys are free.
                if k == "bins" || k == "job options" || k == "global options" {
                    out.insert(p, kind(x));
                    continue;
                }
                paths(x, p, out);
            }
        }
        Value::Array(a) => {
            for x in a {
                paths(x, format!("{at}[]"), out);
            }
        }
        _ => {}
    }
}

/// stdout of `cmd args` (which must succeed), one JSON document.
pub fn run_json(cmd: &str, args: &[&str]) -> Value {
    let out = run_stdout(cmd, args);
    // Only JSON on stdout: the whole of it must parse.
    serde_json::from_slice(&out).unwrap_or_else(|e| {
        panic!(
            "{cmd}: stdout is not one JSON document ({e}):\n{}",
            String::from_utf8_lossy(&out)
        )
    })
}

/// Every key path of `ours` (outside `nvme_bench`) that `theirs` lacks or
/// types differently, as readable lines.
pub fn shape_mismatches(theirs: &Value, ours: &Value) -> Vec<String> {
    let mut tp = BTreeMap::new();
    paths(theirs, String::new(), &mut tp);
    let mut op = BTreeMap::new();
    paths(ours, String::new(), &mut op);
    let mut bad = Vec::new();
    for (p, k) in &op {
        match tp.get(p) {
            None => bad.push(format!("{p}: missing in fio's output")),
            Some(t) if t != k => bad.push(format!("{p}: ours {k}, fio's {t}")),
            _ => {}
        }
    }
    bad
}

/// A fresh scratch directory under the target dir, for one test.
pub fn scratch(tag: &str) -> std::path::PathBuf {
    let d = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Run `cmd args` in `dir`; stdout must be one JSON document. Returns the
/// document and stderr.
pub fn run_json_in(dir: &std::path::Path, cmd: &str, args: &[&str]) -> (Value, String) {
    let o = Command::new(cmd)
        .args(args)
        .current_dir(dir)
        .output()
        .expect(cmd);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(
        o.status.success(),
        "{cmd} {args:?} failed: {}\n{err}",
        String::from_utf8_lossy(&o.stdout)
    );
    let v = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "{cmd}: stdout is not one JSON document ({e}):\n{}",
            String::from_utf8_lossy(&o.stdout)
        )
    });
    (v, err)
}

/// Names of the files in `dir`, sorted.
pub fn file_names(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// A JSON document with every object's keys in document order, whatever
/// serde_json's features (its `Value` sorts keys unless `preserve_order`
/// is on, which would make an order check pass vacuously).
pub enum Ordered {
    Obj(Vec<(String, Ordered)>),
    Arr(Vec<Ordered>),
    Leaf,
}

impl<'de> serde::Deserialize<'de> for Ordered {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Ordered;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("JSON")
            }
            fn visit_bool<E>(self, _: bool) -> Result<Ordered, E> {
                Ok(Ordered::Leaf)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Ordered, E> {
                Ok(Ordered::Leaf)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Ordered, E> {
                Ok(Ordered::Leaf)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Ordered, E> {
                Ok(Ordered::Leaf)
            }
            fn visit_str<E>(self, _: &str) -> Result<Ordered, E> {
                Ok(Ordered::Leaf)
            }
            fn visit_unit<E>(self) -> Result<Ordered, E> {
                Ok(Ordered::Leaf)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<Ordered, A::Error> {
                let mut v = Vec::new();
                while let Some(x) = a.next_element()? {
                    v.push(x);
                }
                Ok(Ordered::Arr(v))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<Ordered, A::Error> {
                let mut v = Vec::new();
                while let Some((k, x)) = a.next_entry::<String, Ordered>()? {
                    v.push((k, x));
                }
                Ok(Ordered::Obj(v))
            }
        }
        d.deserialize_any(V)
    }
}

/// Parse a tool's stdout keeping key order (anything fio prints before
/// the document, such as its "note:" lines, is skipped).
pub fn ordered(stdout: &[u8]) -> Ordered {
    let at = stdout
        .iter()
        .position(|&b| b == b'{')
        .expect("a JSON object");
    serde_json::from_slice(&stdout[at..]).expect("JSON")
}

/// Key order: for every object both documents have at the same path (job
/// array elements pairwise), the keys both have must come in the same
/// order. Returns readable lines for the objects that differ. `nvme_bench`
/// and `bins` (keys are latency values) are skipped.
pub fn order_mismatches(theirs: &Ordered, ours: &Ordered) -> Vec<String> {
    fn walk(t: &Ordered, o: &Ordered, at: &str, out: &mut Vec<String>) {
        match (t, o) {
            (Ordered::Obj(tm), Ordered::Obj(om)) => {
                let has = |m: &Vec<(String, Ordered)>, k: &String| m.iter().any(|(x, _)| x == k);
                let tk: Vec<&String> = tm.iter().map(|e| &e.0).filter(|k| has(om, k)).collect();
                let ok: Vec<&String> = om.iter().map(|e| &e.0).filter(|k| has(tm, k)).collect();
                if tk != ok {
                    out.push(format!("{at}:\n  fio : {tk:?}\n  ours: {ok:?}"));
                }
                for (k, tv) in tm {
                    if k == "nvme_bench" || k == "bins" {
                        continue;
                    }
                    if let Some((_, ov)) = om.iter().find(|(x, _)| x == k) {
                        walk(tv, ov, &format!("{at}/{k}"), out);
                    }
                }
            }
            (Ordered::Arr(ta), Ordered::Arr(oa)) => {
                for (i, (tv, ov)) in ta.iter().zip(oa).enumerate() {
                    walk(tv, ov, &format!("{at}[{i}]"), out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(theirs, ours, "", &mut out);
    out
}

/// stdout of `cmd args` (which must succeed).
pub fn run_stdout(cmd: &str, args: &[&str]) -> Vec<u8> {
    let o = Command::new(cmd).args(args).output().expect(cmd);
    assert!(
        o.status.success(),
        "{cmd} failed: {}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    o.stdout
}

/// nvme-bench, the binary under test.
pub const BENCH: &str = env!("CARGO_BIN_EXE_nvme-bench");

/// Tests that time both tools share the machine: one at a time (each test
/// binary has its own lock).
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// The JSON document on `cmd`'s stdout `out`: fio prints its warnings and
/// error lines before it, which are skipped (the document starts the
/// output or a line).
pub fn json_in(cmd: &str, out: &str) -> Value {
    let at = if out.starts_with('{') {
        0
    } else {
        out.find("\n{").map_or(0, |i| i + 1)
    };
    serde_json::from_str(&out[at..]).unwrap_or_else(|e| panic!("{cmd}: no JSON ({e}):\n{out}"))
}

/// Run `dir/job.fio` with `cmd` (and `--eta=never` for nvme-bench), JSON
/// output, `extra` before the job file, in `dir`; whether or not it
/// succeeds. Returns (exit success, the JSON document, stderr).
pub fn run_job(dir: &Path, cmd: &str, extra: &[&str]) -> (bool, Value, String) {
    let mut c = Command::new(cmd);
    c.current_dir(dir).arg("--output-format=json");
    if cmd == BENCH {
        c.arg("--eta=never");
    }
    let o = c.args(extra).arg("job.fio").output().expect(cmd);
    let v = json_in(cmd, &String::from_utf8_lossy(&o.stdout));
    (
        o.status.success(),
        v,
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// The same job file run by fio and by nvme-bench, each in a fresh scratch
/// directory `{tag}-fio`, `{tag}-ours` (relative file names land there):
/// `job` is written there as job.fio and run with JSON output, `extra` and
/// (nvme-bench) `--eta=never`; each run must succeed. Returns [fio's,
/// ours] documents, stderr and directories.
pub fn both_json(tag: &str, job: &str, extra: &[&str]) -> [(Value, String, PathBuf); 2] {
    both_json_after(tag, job, extra, &|_| {})
}

/// [`both_json`], with `setup` run in each directory before the tool.
pub fn both_json_after(
    tag: &str,
    job: &str,
    extra: &[&str],
    setup: &dyn Fn(&Path),
) -> [(Value, String, PathBuf); 2] {
    let fio = ensure_fio();
    let mut out = Vec::new();
    for (who, cmd) in [("fio", fio.as_str()), ("ours", BENCH)] {
        let dir = scratch(&format!("{tag}-{who}"));
        std::fs::write(dir.join("job.fio"), job).unwrap();
        setup(&dir);
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

/// Each job's (name, job_runtime ms).
pub fn runtimes(v: &Value) -> Vec<(String, u64)> {
    v["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| {
            (
                j["jobname"].as_str().unwrap().to_string(),
                j["job_runtime"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// The job files (`*.fio`) of the package's directory `sub`, sorted.
pub fn job_files(sub: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(sub);
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "fio"))
        .collect();
    v.sort();
    v
}

/// The lines both tools print before a run that describe its jobs.
pub fn header_lines(out: &str) -> Vec<String> {
    out.lines()
        .filter(|l| l.contains(": (g=") || *l == "..." || l.starts_with("Starting "))
        .map(str::to_string)
        .collect()
}

/// strace, installed with apt-get when missing (for tests that compare
/// the system calls both tools make).
pub fn ensure_strace() -> String {
    let ok = || {
        Command::new("strace")
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !ok() {
        apt_install("strace");
    }
    assert!(ok(), "strace is needed (apt-get install strace)");
    "strace".into()
}

/// A loop device over a sparse file (root and `losetup`), detached on drop.
pub struct Loop {
    pub dev: String,
    backing: PathBuf,
}

impl Loop {
    pub fn new(dir: &Path, size: u64) -> Option<Loop> {
        let backing = dir.join("loop.img");
        let f = std::fs::File::create(&backing).ok()?;
        f.set_len(size).ok()?;
        let o = Command::new("losetup")
            .args(["-f", "--show"])
            .arg(&backing)
            .output()
            .ok()?;
        if !o.status.success() {
            eprintln!(
                "losetup failed (not root?): {}",
                String::from_utf8_lossy(&o.stderr)
            );
            return None;
        }
        let dev = String::from_utf8_lossy(&o.stdout).trim().to_string();
        Some(Loop { dev, backing })
    }
    /// 512-byte blocks the backing file has allocated.
    pub fn allocated(&self) -> u64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(&self.backing).unwrap().blocks()
    }
    /// Fill the device (so a discard has something to free).
    pub fn fill(&self) {
        let st = Command::new("dd")
            .args(["if=/dev/urandom", "bs=1M", "oflag=direct", "status=none"])
            .arg(format!("of={}", self.dev))
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        // dd stops at the device's end with "No space left": fine.
        let _ = st;
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.dev]).status();
    }
}
