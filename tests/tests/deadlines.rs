//! Command deadlines against QEMU's controller (issue #13): a namespace on
//! `null-co` with `latency-ns` answers every request after 3 s, beyond a
//! 1 s deadline. Before deadlines, an async read spun in `poll()` for ever
//! and a sync read's Timeout claimed the controller was dead. Now the
//! deadline is reported through poll (typed, no buffer) between 1 and 1.5 s,
//! the buffer comes back with the late completion, the sync helper returns
//! IoTimeout, and the pair and the controller go on working; under both
//! timeout policies.

mod common;
use common::*;

use std::time::Duration;

use fixtures::{guest_file_for_binary, Backend, Guest, GuestConfig, NvmeController};

fn ms(line: &str) -> u64 {
    word(line, "ms")
}

#[test]
fn a_device_slower_than_the_deadline_in_qemu() {
    let cfg = GuestConfig::default()
        .nvme(NvmeController::new(Backend::slow_null(
            64 << 20,
            Duration::from_secs(3),
        )))
        .file(guest_file_for_binary(CHECK));
    let mut g = Guest::boot(cfg).expect("boot");
    let a = g.nvme_bdf(0).to_string();
    run_ok(&mut g, &format!("bind-vfio {a}"));
    for policy in ["report", "abort"] {
        let so = run_ok(
            &mut g,
            &format!("nvme-guest-check deadline {a} --timeout-ms 1000 --policy {policy}"),
        );
        eprintln!("policy {policy}:\n{so}");
        let line = |p: &str| {
            so.lines()
                .find(|l| l.starts_with(p))
                .unwrap_or_else(|| panic!("no {p} line: {so}"))
                .to_string()
        };
        let notice = line("poll.notice");
        assert!(notice.contains("TimedOut"), "{notice}");
        assert!(
            notice.contains("tag=11") && notice.contains("buf=false"),
            "{notice}"
        );
        // Due between 1 and 1.25 s (plus polling and a TCG guest's jitter);
        // what matters is that it comes after the deadline and before the
        // device's own answer at 3 s.
        let at = ms(&notice);
        assert!((1000..2900).contains(&at), "reported at {at} ms");
        let late = line("poll.late");
        assert!(
            late.contains("tag=11") && late.contains("buf=true"),
            "{late}"
        );
        // QEMU 7.2 declines Abort, so the late completion comes when the
        // device answers (about 3 s); an aborted one would come sooner.
        assert!(ms(&late) >= at, "{late}");
        let sync = line("sync.error");
        assert!(sync.contains("buf=false"), "{sync}");
        assert!(!sync.contains("treated as dead"), "{sync}");
        assert!((1000..2900).contains(&ms(&sync)), "{sync}");
        assert!(line("sync.late").contains("buf=true"));
        let after = line("after.read=ok");
        assert!(
            after.contains("zeros=true") && ms(&after) >= 2500,
            "{after}"
        );
        assert!(so.contains("deadline=ok"));
    }
    g.shutdown().unwrap();
}
