//! Asynchronous events from QEMU's controller (issue #13): a SMART critical
//! warning set over QMP (`qom-set ... smart_critical_warning`) reaches the
//! user through `Controller::poll_events` with the SMART log, and so does
//! the next one (the driver read the log page and re-armed its requests).

mod common;
use common::*;

use std::time::{Duration, Instant};

use fixtures::{guest_file_for_binary, Guest, GuestConfig, NvmeController};

fn wait_for(g: &mut Guest, pat: &str) -> String {
    let t = Instant::now();
    loop {
        let out = run_ok(g, "cat /tmp/ev.out 2>/dev/null; true");
        if out.contains(pat) {
            return out;
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "no '{pat}' after 60 s: {out}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn smart_warnings_reach_the_user_in_qemu() {
    let cfg = GuestConfig::default()
        .nvme(NvmeController::null(64 << 20))
        .file(guest_file_for_binary(CHECK));
    let mut g = Guest::boot(cfg).expect("boot");
    let a = g.nvme_bdf(0).to_string();
    let id = g.nvme_device_id(0);
    run_ok(&mut g, &format!("bind-vfio {a}"));
    run_ok(
        &mut g,
        &format!("nvme-guest-check events {a} --seconds 90 --count 2 > /tmp/ev.out 2>&1 &"),
    );
    wait_for(&mut g, "events=armed");
    for (n, bits) in [(1, 2), (2, 6)] {
        g.qmp(&format!(
            r#"{{"execute": "qom-set", "arguments": {{"path": "/machine/peripheral/{id}", "property": "smart_critical_warning", "value": {bits}}}}}"#
        ))
        .expect("qom-set");
        let out = wait_for(&mut g, &format!("event.{n} "));
        let line = out
            .lines()
            .find(|l| l.starts_with(&format!("event.{n} ")))
            .unwrap()
            .to_string();
        assert!(line.contains("kind=SmartHealth"), "{line}");
        assert!(line.contains("log_page=2"), "{line}");
        assert!(line.contains(&format!("critical_warning={bits}")), "{line}");
        eprintln!("{line}");
    }
    wait_for(&mut g, "events=done count=2");
    g.shutdown().unwrap();
}
