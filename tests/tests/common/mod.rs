//! Helpers shared by the guest tests (each test file is its own crate and
//! uses a different subset, hence the `dead_code` allowance).
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use fixtures::Guest;

/// The guest-side checker, copied into each guest.
pub const CHECK: &str = env!("CARGO_BIN_EXE_nvme-guest-check");
/// Upper bound for one guest command (TCG is slow; a hang still ends).
pub const T: Duration = Duration::from_secs(400);

/// Parse `key=value` lines.
pub fn kv(out: &str) -> HashMap<String, String> {
    out.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// Run a guest command that must succeed; its stdout.
pub fn run_ok(g: &mut Guest, cmd: &str) -> String {
    let out = g.run(cmd, T).unwrap_or_else(|e| panic!("`{cmd}`: {e}"));
    let so = out.stdout_str();
    assert!(
        out.success(),
        "`{cmd}` exited {}:\nstdout:\n{so}\nstderr:\n{}",
        out.status,
        out.stderr_str()
    );
    so
}

/// The value of `key=` inside a line of space-separated `k=v` words.
pub fn word(line: &str, key: &str) -> u64 {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
        .parse()
        .unwrap_or_else(|e| panic!("{key}= in {line:?}: {e}"))
}

/// A fresh directory for this test's image files.
pub fn scratch_dir(name: &str) -> PathBuf {
    let d =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The kernel's block device for namespace 1 of controller `bdf` (bound to `nvme`).
pub fn kernel_disk(g: &mut Guest, bdf: &str) -> String {
    let out = run_ok(
        g,
        &format!("ls /sys/bus/pci/devices/{bdf}/nvme/*/ | grep -E '^nvme[0-9]+n1$' | head -n1"),
    );
    let name = out.trim().to_string();
    assert!(
        name.starts_with("nvme"),
        "no namespace block device under {bdf}: {out:?}"
    );
    format!("/dev/{name}")
}

/// Through the kernel: read `count` 512-byte blocks at `skip` (O_DIRECT)
/// and check them against the pattern of `seed`.
pub fn kernel_check_pattern(g: &mut Guest, bdf: &str, skip: u64, count: u64, seed: u64) {
    let disk = kernel_disk(g, bdf);
    let so = run_ok(
        g,
        &format!(
            "dd if={disk} of=/tmp/k.bin bs=512 skip={skip} count={count} iflag=direct 2>/dev/null && \
             nvme-guest-check check-file --file /tmp/k.bin --lba {skip} --block-size 512 --seed {seed}"
        ),
    );
    assert!(
        so.contains(&format!("check_file=ok blocks={count}")),
        "{bdf}: {so}"
    );
}
