//! Command deadlines on every I/O path (issue #13): a command the device
//! never completes is reported to its owner while polling, with a typed
//! timeout status and no buffer (the device still owns it); its buffer comes
//! back in a second completion when the device completes it; with the Abort
//! policy the driver asks the controller to abort it. The model's
//! `hold_completions` plays the device that does not answer.

use std::future::Future;
use std::time::{Duration, Instant};

use nvme_core::async_io::AsyncQueuePair;
use nvme_core::cmd::{admin_opcode, io_opcode};
use nvme_core::{
    ByteCount, CommandError, Completion, Controller, ControllerOptions, Error, IoQueuePair, Lba,
    TimeoutPolicy,
};
use nvme_model::{ModelConfig, ModelController, ModelDma, NamespaceConfig, Status};

const T: Duration = Duration::from_millis(200);

fn up(policy: TimeoutPolicy, mdts: u8) -> (ModelController, Controller<ModelController>) {
    let model = ModelController::new(ModelConfig {
        namespaces: vec![NamespaceConfig::new(1 << 16, 512)],
        mdts,
        ..ModelConfig::default()
    });
    let opts = ControllerOptions {
        io_timeout: T,
        admin_timeout: Duration::from_secs(2),
        timeout_policy: policy,
        ..ControllerOptions::default()
    };
    let c = Controller::init(model.clone(), opts).unwrap();
    (model, c)
}

/// Poll until `n` completions came or `limit` passed; each with the time
/// it arrived.
fn poll_for(
    qp: &mut IoQueuePair<ModelController>,
    n: usize,
    limit: Duration,
) -> Vec<(Completion<ModelDma>, Duration)> {
    let t = Instant::now();
    let mut out = Vec::new();
    while out.len() < n && t.elapsed() < limit {
        qp.poll(16, |c| out.push((c, t.elapsed())));
    }
    out
}

#[test]
fn a_command_the_device_never_completes_is_reported_then_returns_its_buffer() {
    let (model, c) = up(TimeoutPolicy::Report, 7);
    let ns = c.namespace(1).unwrap().clone();
    let mut qp = c.create_io_queue_pair(16).unwrap();
    model.hold_completions(qp.qid(), true);
    let buf = c.alloc_buffer(ByteCount(4096)).unwrap();
    qp.submit_read(&ns, Lba(8), buf, 42).unwrap();
    // The deadline is reported once: never before T; due by 1.25 T plus
    // polling (bounded loosely here: a busy test host delays threads).
    let got = poll_for(&mut qp, 2, 3 * T);
    assert_eq!(got.len(), 1, "one report, no more: {got:?}");
    let (notice, at) = &got[0];
    assert_eq!(notice.tag, 42);
    assert_eq!(notice.status, Err(CommandError::TimedOut { after: T }));
    assert!(notice.buf.is_none(), "the device still owns the buffer");
    assert!(*at >= T && *at < T * 5 / 2, "reported after {at:?}");
    assert_eq!(qp.outstanding(), 1);
    assert_eq!(model.stats().admin(admin_opcode::ABORT), 0, "Report only");
    // The device completes it late: the buffer comes back with the tag.
    model.hold_completions(qp.qid(), false);
    let got = poll_for(&mut qp, 1, T);
    assert_eq!(got.len(), 1);
    let (late, _) = &got[0];
    assert_eq!((late.tag, late.status), (42, Ok(())));
    assert!(late.buf.is_some());
    assert_eq!(qp.outstanding(), 0);
    // The pair and the controller go on working.
    qp.read(&ns, Lba(0), c.alloc_buffer(ByteCount(512)).unwrap())
        .unwrap();
    assert!(c.smart_log().is_ok());
}

#[test]
fn the_abort_policy_aborts_it_and_the_buffer_comes_back() {
    let (model, c) = up(TimeoutPolicy::Abort, 7);
    let ns = c.namespace(1).unwrap().clone();
    let mut qp = c.create_io_queue_pair(16).unwrap();
    model.hold_completions(qp.qid(), true);
    qp.submit_write(&ns, Lba(16), c.alloc_buffer(ByteCount(4096)).unwrap(), 7)
        .unwrap();
    let got = poll_for(&mut qp, 2, 3 * T);
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0].0.status, Err(CommandError::TimedOut { after: T }));
    assert!(got[0].0.buf.is_none());
    // The model aborts a held command: it completes with Command Abort
    // Requested, and now the buffer is back.
    let (done, _) = &got[1];
    assert_eq!(done.tag, 7);
    let st = done.status.unwrap_err().nvme().expect("a device status");
    assert_eq!(st.name(), Some("Command Abort Requested"), "{st}");
    assert!(done.buf.is_some());
    assert_eq!(model.stats().admin(admin_opcode::ABORT), 1);
    assert_eq!(qp.outstanding(), 0);
    model.hold_completions(qp.qid(), false);
    qp.write(&ns, Lba(16), c.alloc_buffer(ByteCount(4096)).unwrap())
        .unwrap();
}

#[test]
fn a_split_request_is_reported_once_and_every_piece_is_aborted() {
    // MDTS 8 KiB: a 32 KiB read is four commands.
    let (model, c) = up(TimeoutPolicy::Abort, 1);
    let ns = c.namespace(1).unwrap().clone();
    let mut qp = c.create_io_queue_pair(16).unwrap();
    model.hold_completions(qp.qid(), true);
    qp.submit_read(&ns, Lba(0), c.alloc_buffer(ByteCount(32768)).unwrap(), 9)
        .unwrap();
    let got = poll_for(&mut qp, 2, 3 * T);
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0].0.status, Err(CommandError::TimedOut { after: T }));
    assert_eq!(model.stats().admin(admin_opcode::ABORT), 4);
    let (done, _) = &got[1];
    assert_eq!(done.tag, 9);
    assert!(done.status.is_err() && done.buf.is_some());
    assert_eq!(qp.outstanding(), 0);
    assert_eq!(model.stats().io(io_opcode::READ), 4);
}

#[test]
fn commands_that_complete_in_time_are_never_reported() {
    let (model, c) = up(TimeoutPolicy::Abort, 7);
    let ns = c.namespace(1).unwrap().clone();
    let mut qp = c.create_io_queue_pair(32).unwrap();
    let mut bufs = c.alloc_buffers(16, ByteCount(4096)).unwrap();
    let t = Instant::now();
    let mut done = 0u64;
    let mut tag = 0u64;
    // Keep 16 in flight for three timeouts' worth of time.
    while t.elapsed() < 3 * T {
        while let Some(b) = bufs.pop() {
            qp.submit_read(&ns, Lba(tag % 1024 * 8), b, tag).unwrap();
            tag += 1;
        }
        qp.poll(8, |c| {
            assert_eq!(c.status, Ok(()), "tag {}", c.tag);
            bufs.push(c.buf.unwrap());
            done += 1;
        });
    }
    assert!(done > 100, "{done}");
    assert_eq!(model.stats().admin(admin_opcode::ABORT), 0);
}

#[test]
fn deadlines_can_be_turned_off_per_pair() {
    let (model, c) = up(TimeoutPolicy::Abort, 7);
    let ns = c.namespace(1).unwrap().clone();
    let mut qp = c.create_io_queue_pair(16).unwrap();
    qp.set_io_timeout(None);
    assert_eq!(qp.io_timeout(), None);
    model.hold_completions(qp.qid(), true);
    qp.submit_read(&ns, Lba(0), c.alloc_buffer(ByteCount(512)).unwrap(), 1)
        .unwrap();
    assert!(poll_for(&mut qp, 1, 3 * T).is_empty());
    // Back on: it is reported at the next checks.
    qp.set_io_timeout(Some(T));
    let got = poll_for(&mut qp, 2, 3 * T);
    assert_eq!(got[0].0.status, Err(CommandError::TimedOut { after: T }));
    model.hold_completions(qp.qid(), false);
}

#[test]
fn an_async_read_past_its_deadline_resolves_with_a_timeout() {
    let (model, c) = up(TimeoutPolicy::Report, 7);
    let ns = c.namespace(1).unwrap().clone();
    let qp = c.create_io_queue_pair(8).unwrap();
    let qid = qp.qid();
    let aqp = AsyncQueuePair::new(qp);
    model.hold_completions(qid, true);
    let fut = aqp.read(&ns, Lba(0), c.alloc_buffer(ByteCount(512)).unwrap());
    let mut fut = std::pin::pin!(fut);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    let t = Instant::now();
    let r = loop {
        if let std::task::Poll::Ready(r) = fut.as_mut().poll(&mut cx) {
            break r;
        }
        assert!(t.elapsed() < 3 * T, "the future never resolved");
    };
    let e = r.unwrap_err();
    assert!(
        matches!(
            e.error,
            Error::IoTimeout {
                command: "Read",
                ..
            }
        ),
        "{e}"
    );
    assert!(e.buf.is_none());
    assert!(t.elapsed() >= T);
    // The device still owns the buffer: the adapter keeps the cell until
    // the late completion, then the pair is idle again.
    assert_eq!(aqp.abandoned(), 1);
    model.hold_completions(qid, false);
    let t = Instant::now();
    while aqp.abandoned() != 0 && t.elapsed() < T {
        aqp.drive();
    }
    assert_eq!(aqp.abandoned(), 0);
    assert_eq!(aqp.in_flight(), 0);
    let _ = Status::SUCCESS;
}

#[test]
fn a_completion_that_arrives_while_the_abort_is_in_flight_is_delivered_once() {
    let (model, c) = up(TimeoutPolicy::Abort, 7);
    let ns = c.namespace(1).unwrap().clone();
    let mut qp = c.create_io_queue_pair(16).unwrap();
    let qid = qp.qid();
    model.hold_completions(qid, true);
    qp.submit_read(&ns, Lba(0), c.alloc_buffer(ByteCount(4096)).unwrap(), 3)
        .unwrap();
    // Hold the admin queue too: the driver's Abort is then in flight (and
    // its poll blocked on it) while, on another thread, the device
    // completes the read normally; then the Abort runs and finds nothing.
    model.hold_completions(0, true);
    let device = {
        let model = model.clone();
        std::thread::spawn(move || {
            let t = Instant::now();
            while model.held_commands(0) == 0 {
                assert!(t.elapsed() < 10 * T, "the driver never sent the Abort");
                std::thread::yield_now();
            }
            let cid = model.held_command_list(qid)[0].cid;
            assert!(model.complete_held(qid, cid), "the read completes");
            model.hold_completions(0, false); // now the Abort: nothing left
        })
    };
    let got = poll_for(&mut qp, 2, 10 * T);
    device.join().unwrap();
    let mut got = got;
    got.extend(poll_for(&mut qp, 1, T));
    assert_eq!(got.len(), 2, "the notice and the completion, once: {got:?}");
    assert_eq!(got[0].0.status, Err(CommandError::TimedOut { after: T }));
    assert!(got[0].0.buf.is_none());
    let (done, _) = &got[1];
    assert_eq!((done.tag, done.status), (3, Ok(())));
    assert!(done.buf.is_some());
    assert_eq!(model.stats().admin(admin_opcode::ABORT), 1);
    assert_eq!(qp.outstanding(), 0);
    assert_eq!(model.stats().dma_use_after_free, 0);
    model.hold_completions(qid, false);
    qp.read(&ns, Lba(0), c.alloc_buffer(ByteCount(512)).unwrap())
        .unwrap();
}
