//! Shared by the fio cross-check tests: installing Debian's fio, and
//! comparing the key paths and types of two fio-format JSON documents.
#![allow(dead_code)]

use std::collections::BTreeMap;
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
    let st = Command::new("apt-get")
        .args(["install", "-y", "-q", "fio"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .expect("apt-get");
    if !st.success() {
        let _ = Command::new("apt-get").args(["update", "-q"]).status();
        let st = Command::new("apt-get")
            .args(["install", "-y", "-q", "fio"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .expect("apt-get");
        assert!(st.success(), "apt-get install fio failed");
    }
    "fio".into()
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

pub fn run_json(cmd: &str, args: &[&str]) -> Value {
    let o = Command::new(cmd).args(args).output().expect(cmd);
    assert!(
        o.status.success(),
        "{cmd} failed: {}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    // Only JSON on stdout: the whole of it must parse.
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "{cmd}: stdout is not one JSON document ({e}):\n{}",
            String::from_utf8_lossy(&o.stdout)
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
