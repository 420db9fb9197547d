//! `rate_iops` limits the rate, per direction, as fio's does: a throttled
//! run reports close to the requested IOPS, far below what the same job
//! does unthrottled on the same file.

use std::process::Command;

use serde_json::Value;

const BENCH: &str = env!("CARGO_BIN_EXE_nvme-bench");

fn run(file: &str, rw: &str, extra: &[&str]) -> Value {
    let mut args = vec![
        "--name=rate".to_string(),
        "--ioengine=psync".into(),
        format!("--filename={file}"),
        "--size=8m".into(),
        "--bs=4k".into(),
        format!("--rw={rw}"),
        "--time_based".into(),
        "--output-format=json".into(),
        "--eta=never".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let o = Command::new(BENCH).args(&args).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn rate_iops_holds_each_direction_to_its_rate() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("rate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("data");
    let file = file.to_str().unwrap();
    let free = run(file, "randread", &["--runtime=1"]);
    let free_iops = free["jobs"][0]["read"]["iops"].as_f64().unwrap();
    assert!(free_iops > 2000.0, "unthrottled only {free_iops:.0} IOPS");

    let r = run(file, "randread", &["--runtime=2", "--rate_iops=200"]);
    let iops = r["jobs"][0]["read"]["iops"].as_f64().unwrap();
    assert!(
        (170.0..=230.0).contains(&iops),
        "rate_iops=200 gave {iops:.0} IOPS"
    );
    // fio's read,write form: the write rate applies to writes.
    let w = run(file, "randwrite", &["--runtime=2", "--rate_iops=5000,150"]);
    let iops = w["jobs"][0]["write"]["iops"].as_f64().unwrap();
    assert!(
        (125.0..=175.0).contains(&iops),
        "rate_iops=5000,150 gave {iops:.0} write IOPS"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
