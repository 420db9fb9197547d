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
    // Paced jobs measure their own timing: one at a time, so the two
    // CPUs are not shared with another paced test.
    let _s = common::serial();
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

mod common;

/// The gaps between I/O completions in a per-I/O iops log
/// (`log_avg_msec=0`), in ms: their mean and coefficient of variation.
fn gaps(log: &std::path::Path) -> (usize, f64, f64) {
    let text = std::fs::read_to_string(log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
    let t: Vec<f64> = text
        .lines()
        .filter_map(|l| l.split(',').next()?.trim().parse().ok())
        .collect();
    let g: Vec<f64> = t.windows(2).map(|w| w[1] - w[0]).collect();
    let n = g.len().max(1) as f64;
    let mean = g.iter().sum::<f64>() / n;
    let var = g.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
    (g.len(), mean, var.sqrt() / mean.max(f64::MIN_POSITIVE))
}

/// `rate_process=poisson` keeps the mean rate but spaces I/Os with
/// exponential gaps (coefficient of variation about 1), as fio's does;
/// `linear` (the default) spaces them evenly. Both programs run the same
/// job and each one's per-I/O log is measured the same way.
#[test]
fn rate_process_poisson_spaces_ios_like_fio() {
    // Paced jobs measure their own timing: one at a time, so the two
    // CPUs are not shared with another paced test.
    let _s = common::serial();
    let fio = common::ensure_fio();
    let dir = common::scratch("poisson");
    for process in ["linear", "poisson"] {
        for (tool, prefix) in [(BENCH, "ours"), (fio.as_str(), "fio")] {
            let name = format!("{prefix}-{process}");
            let args = [
                format!("--name={name}"),
                "--ioengine=psync".into(),
                format!("--filename={name}.dat"),
                "--size=8m".into(),
                "--bs=4k".into(),
                "--rw=randread".into(),
                "--time_based".into(),
                "--runtime=3".into(),
                "--rate_iops=100".into(),
                format!("--rate_process={process}"),
                format!("--write_iops_log={name}"),
                "--log_avg_msec=0".into(),
                "--output-format=json".into(),
            ];
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let (v, _) = common::run_json_in(&dir, tool, &args);
            let iops = v["jobs"][0]["read"]["iops"].as_f64().unwrap();
            assert!(
                (70.0..=130.0).contains(&iops),
                "{tool} rate_process={process}: {iops:.0} IOPS for rate_iops=100"
            );
            let (n, mean, cv) = gaps(&dir.join(format!("{name}_iops.1.log")));
            assert!(n > 150, "{tool} {process}: only {n} gaps logged");
            let ok = match process {
                "linear" => cv < 0.35,
                _ => (0.7..=1.4).contains(&cv),
            };
            assert!(
                ok,
                "{tool} rate_process={process}: gaps mean {mean:.2} ms, coefficient of variation {cv:.2}"
            );
            eprintln!("{tool} {process}: {iops:.0} IOPS, {n} gaps, mean {mean:.2} ms, cv {cv:.2}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A rate on one direction of a mixed job holds that direction only: with
/// `rate=,100k` fio's writes run at 100 KiB/s while its reads run free
/// (io_u.c `rate_ddir` takes the other direction when the drawn one is
/// ahead of its rate). nvme-bench used to wait for the write's turn with
/// the read behind it, so both directions ran at 25 IOPS.
#[test]
fn a_rate_on_writes_leaves_reads_free_like_fio() {
    // Paced jobs measure their own timing: one at a time, so the two
    // CPUs are not shared with another paced test.
    let _s = common::serial();
    let fio = common::ensure_fio();
    for (who, cmd) in [("fio", fio.as_str()), ("ours", BENCH)] {
        let o = std::process::Command::new(cmd)
            .args([
                "--name=x",
                "--ioengine=null",
                "--size=1g",
                "--rw=randrw",
                "--rate=,100k",
                "--runtime=2",
                "--time_based",
                "--output-format=json",
            ])
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let j = &v["jobs"][0];
        let (r, w) = (
            j["read"]["iops"].as_f64().unwrap(),
            j["write"]["iops"].as_f64().unwrap(),
        );
        assert!((20.0..=30.0).contains(&w), "{who}: write {w} IOPS");
        assert!(r > 100.0 * w, "{who}: read {r} IOPS against write {w}");
    }
}

/// `rate` and `rate_iops` together are refused, as fio refuses them (in
/// any directions: fio's fixup_options); nvme-bench used to run the job.
#[test]
fn rate_and_rate_iops_are_refused_like_fio() {
    let fio = common::ensure_fio();
    for rates in [
        ["--rate=1m", "--rate_iops=100"],
        ["--rate=,1m", "--rate_iops=100"],
    ] {
        for (who, cmd) in [("fio", fio.as_str()), ("ours", BENCH)] {
            let o = std::process::Command::new(cmd)
                .args(["--name=x", "--ioengine=null", "--size=1m"])
                .args(rates)
                .output()
                .unwrap();
            let said = format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
            assert!(!o.status.success(), "{who} {rates:?}: ran");
            assert!(
                said.contains("rate and rate_iops are mutually exclusive"),
                "{who} {rates:?}: {said}"
            );
        }
    }
}
