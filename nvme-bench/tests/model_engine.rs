//! `ioengine=nvme-model`: the driver against the in-process controller
//! model, no device. Every I/O goes through the driver's queue pair to the
//! model (its command count is the job's I/O count), writes are kept and
//! verified when `verify` asks, and a job without `size` is refused.

use std::process::Command;

use serde_json::Value;

const BENCH: &str = env!("CARGO_BIN_EXE_nvme-bench");

fn run(args: &[&str]) -> (bool, Value, String) {
    let mut a = vec![
        "--name=m",
        "--ioengine=nvme-model",
        "--output-format=json",
        "--eta=never",
    ];
    a.extend_from_slice(args);
    let o = Command::new(BENCH).args(&a).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    let v = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
    (o.status.success(), v, err)
}

#[test]
fn reads_go_through_the_driver_to_the_model() {
    for qd in ["1", "32"] {
        let depth = format!("--iodepth={qd}");
        let (ok, v, err) = run(&[
            "--size=64m",
            "--bs=4k",
            "--rw=randread",
            &depth,
            "--number_ios=5000",
        ]);
        assert!(ok, "qd{qd}: {err}");
        let j = &v["jobs"][0];
        assert_eq!(j["error"], 0, "qd{qd}");
        assert_eq!(j["read"]["total_ios"], 5000, "qd{qd}");
        assert_eq!(j["read"]["io_bytes"], 5000 * 4096, "qd{qd}");
        let e = &j["nvme_bench"]["engine"];
        assert_eq!(e["engine"], "nvme-model", "qd{qd}");
        assert_eq!(e["commands"], 5000, "qd{qd}: one NVMe command per I/O");
        assert_eq!(e["completions"], 5000, "qd{qd}");
        for k in ["slat_ns", "clat_ns", "lat_ns"] {
            assert_eq!(j["read"][k]["N"], 5000, "qd{qd} {k}");
        }
    }
}

#[test]
fn written_blocks_verify() {
    let (ok, v, err) = run(&[
        "--size=1m",
        "--bs=4k",
        "--rw=randwrite",
        "--iodepth=8",
        "--verify=crc32c",
    ]);
    assert!(ok, "{err}");
    let j = &v["jobs"][0];
    assert_eq!(j["error"], 0);
    assert_eq!(j["write"]["total_ios"], 256);
    // The verify pass reads back every block written.
    assert_eq!(j["read"]["total_ios"], 256);
}

#[test]
fn needs_size() {
    let (ok, _, err) = run(&["--rw=read"]);
    assert!(!ok);
    assert!(err.contains("ioengine=nvme-model needs size="), "{err}");
}

/// The driver's `nvme_*` options apply to the model's controller as to a
/// device's (and stay refused for engines without our driver).
#[test]
fn nvme_options_reach_the_driver() {
    for (opt, key, want) in [
        (
            "--nvme_shadow_doorbells=0",
            "shadow_doorbells",
            Value::from(false),
        ),
        (
            "--nvme_shadow_doorbells=1",
            "shadow_doorbells",
            Value::from(true),
        ),
        ("--nvme_queue_size=64", "queue_entries", Value::from(64)),
    ] {
        let (ok, v, err) = run(&["--size=64m", "--rw=randread", "--number_ios=1000", opt]);
        assert!(ok, "{opt}: {err}");
        assert_eq!(v["jobs"][0]["nvme_bench"]["engine"][key], want, "{opt}");
    }
    let o = Command::new(BENCH)
        .args([
            "--name=n",
            "--ioengine=null",
            "--size=1m",
            "--nvme_queue_size=64",
        ])
        .output()
        .unwrap();
    assert!(!o.status.success(), "null accepted nvme_queue_size");
}

/// The job loop's fast path (runner.rs `Fast`: the steady state with the
/// engine's calls inlined) takes exactly the general loop's turns: the same
/// I/Os, the same depth, submit and complete distributions (the model
/// completes inside the doorbell store, so they are deterministic), the
/// same doorbell counts, and every latency sample recorded once. Each job
/// runs with the fast path and with `NVME_BENCH_NO_FAST=1`.
#[test]
fn fast_path_takes_the_general_loops_turns() {
    let jobs: &[&[&str]] = &[
        &[
            "--size=64m",
            "--bs=4k",
            "--rw=randread",
            "--iodepth=32",
            "--number_ios=5000",
        ],
        &["--size=1m", "--bs=4k", "--rw=randread", "--iodepth=1"],
        &[
            "--size=2m",
            "--bsrange=4k-16k",
            "--rw=randrw",
            "--rwmixread=70",
            "--iodepth=8",
        ],
        &[
            "--size=1m",
            "--bs=8k",
            "--rw=read",
            "--iodepth=4",
            "--loops=2",
        ],
        &["--size=1m", "--bs=4k", "--rw=randtrim", "--iodepth=4"],
        // Batches (one doorbell per batch), ending inside a batch: 256
        // I/Os in batches of 24; 1000 in batches of 7.
        &[
            "--size=1m",
            "--bs=4k",
            "--rw=randread",
            "--iodepth=32",
            "--iodepth_batch_submit=24",
        ],
        &[
            "--size=64m",
            "--bs=4k",
            "--rw=randread",
            "--iodepth=16",
            "--iodepth_batch_submit=7",
            "--number_ios=1000",
        ],
        &[
            "--size=4m",
            "--bs=4k",
            "--rw=randwrite",
            "--iodepth=16",
            "--iodepth_batch_complete_min=4",
            "--iodepth_batch_complete_max=8",
            "--scramble_buffers=0",
        ],
    ];
    let pick = |j: &Value| {
        let mut out = Vec::new();
        for d in ["read", "write", "trim"] {
            for k in ["total_ios", "io_bytes", "short_ios"] {
                out.push(format!("{d}.{k}={}", j[d][k]));
            }
            for k in ["slat_ns", "clat_ns", "lat_ns"] {
                out.push(format!("{d}.{k}.N={}", j[d][k]["N"]));
            }
        }
        for k in [
            "iodepth_level",
            "iodepth_submit",
            "iodepth_complete",
            "error",
        ] {
            out.push(format!("{k}={}", j[k]));
        }
        let e = &j["nvme_bench"]["engine"];
        for k in [
            "commands",
            "completions",
            "sq_doorbell_updates",
            "sq_doorbell_mmio",
            "cq_doorbell_updates",
            "cq_doorbell_mmio",
        ] {
            out.push(format!("{k}={}", e[k]));
        }
        out
    };
    for args in jobs {
        let mut a = vec![
            "--name=m",
            "--ioengine=nvme-model",
            "--output-format=json",
            "--eta=never",
            "--randseed=11",
        ];
        a.extend_from_slice(args);
        let run = |no_fast: &str| {
            let o = Command::new(BENCH)
                .args(&a)
                .env("NVME_BENCH_NO_FAST", no_fast)
                .output()
                .unwrap();
            assert!(
                o.status.success(),
                "{args:?}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            let v: Value = serde_json::from_slice(&o.stdout).unwrap();
            pick(&v["jobs"][0])
        };
        let (fast, general) = (run("0"), run("1"));
        assert_eq!(
            fast, general,
            "{args:?}: fast path (left) vs general loop (right)"
        );
        let n = |s: &str| fast.iter().find(|x| x.starts_with(s)).cloned().unwrap();
        assert_ne!(n("commands="), "commands=0", "{args:?}");
    }
}

/// `nvme_delay_submit` (default on, SPDK's fio engine's `delay_cmd_submit`):
/// with fio's default `iodepth_batch_submit=1` a submission only writes its
/// SQ entry and the next reap's poll writes the doorbell once for all the
/// entries since, so at QD32 there is one SQ doorbell update per reap, not
/// per I/O; at QD1 every reap publishes the one I/O. `nvme_delay_submit=0`
/// writes it at each commit (one per I/O). Counts and bytes are the same
/// either way, and the general loop (`NVME_BENCH_NO_FAST=1`) does the same.
#[test]
fn delayed_submission_rings_once_per_reap() {
    let doorbells = |args: &[&str], no_fast: bool| {
        let mut a = vec![
            "--name=m",
            "--ioengine=nvme-model",
            "--output-format=json",
            "--eta=never",
            "--size=64m",
            "--bs=4k",
            "--rw=randread",
            "--number_ios=4000",
        ];
        a.extend_from_slice(args);
        let o = Command::new(BENCH)
            .args(&a)
            .env("NVME_BENCH_NO_FAST", if no_fast { "1" } else { "0" })
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        let j = &v["jobs"][0];
        assert_eq!(j["read"]["total_ios"], 4000, "{args:?}");
        assert_eq!(j["read"]["io_bytes"], 4000 * 4096, "{args:?}");
        let e = &j["nvme_bench"]["engine"];
        assert_eq!(e["commands"], 4000, "{args:?}");
        let complete_batches = j["iodepth_complete"].clone();
        (
            e["sq_doorbell_updates"].as_u64().unwrap(),
            e["delay_submit"].as_bool().unwrap(),
            complete_batches,
        )
    };
    for no_fast in [false, true] {
        let (n, delayed, batches) = doorbells(&["--iodepth=32"], no_fast);
        assert!(delayed);
        // The model completes at the doorbell: reaps of 32, one doorbell
        // each (plus the first fill's).
        assert!(
            n <= 4000 / 32 + 2,
            "no_fast={no_fast}: {n} doorbells, {batches}"
        );
        let (n, delayed, _) = doorbells(&["--iodepth=32", "--nvme_delay_submit=0"], no_fast);
        assert!(!delayed);
        assert_eq!(n, 4000, "no_fast={no_fast}: one doorbell per commit");
        let (n, _, _) = doorbells(&["--iodepth=1"], no_fast);
        assert_eq!(
            n, 4000,
            "no_fast={no_fast}: QD1, each reap publishes its I/O"
        );
    }
}
