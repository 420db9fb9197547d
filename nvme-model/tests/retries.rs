//! Transparent retries (issue #13): a command the controller fails with a
//! status that allows a retry (DNR clear) is submitted again by the
//! blocking helpers and the async adapter, up to `max_retries`; a status
//! with DNR, retries turned off, or `poll` callers see the failure.

use std::future::Future;

use nvme_core::async_io::AsyncQueuePair;
use nvme_core::cmd::io_opcode;
use nvme_core::{ByteCount, Controller, ControllerOptions, Error, Lba};
use nvme_model::{ModelConfig, ModelController, Status};

fn up(max_retries: u8) -> (ModelController, Controller<ModelController>) {
    let model = ModelController::new(ModelConfig::default());
    let c = Controller::init(
        model.clone(),
        ControllerOptions {
            max_retries,
            ..ControllerOptions::default()
        },
    )
    .unwrap();
    (model, c)
}

fn failing(n: usize, model: &ModelController, status: Status) {
    for _ in 0..n {
        model.fail_next(io_opcode::READ, status);
    }
}

#[test]
fn a_retryable_failure_is_retried_until_it_succeeds() {
    let (model, c) = up(5);
    let ns = c.namespace(1).unwrap().clone();
    let mut qp = c.create_io_queue_pair(8).unwrap();
    failing(2, &model, Status::INTERNAL_ERROR); // no DNR
    qp.read(&ns, Lba(0), c.alloc_buffer(ByteCount(512)).unwrap())
        .expect("succeeds on the third try");
    assert_eq!(model.stats().io(io_opcode::READ), 3);
}

#[test]
fn retries_are_bounded_and_dnr_or_zero_means_none() {
    let (model, c) = up(5);
    let ns = c.namespace(1).unwrap().clone();
    let mut qp = c.create_io_queue_pair(8).unwrap();
    // Six failures: the first try and five retries all fail.
    failing(6, &model, Status::INTERNAL_ERROR);
    let e = qp
        .read(&ns, Lba(0), c.alloc_buffer(ByteCount(512)).unwrap())
        .unwrap_err();
    assert!(matches!(e.error, Error::Command { .. }), "{}", e.error);
    assert!(e.buf.is_some());
    assert_eq!(model.stats().io(io_opcode::READ), 6);
    // DNR: no retry.
    failing(1, &model, Status::INTERNAL_ERROR.with_dnr());
    assert!(qp
        .read(&ns, Lba(0), c.alloc_buffer(ByteCount(512)).unwrap())
        .is_err());
    assert_eq!(model.stats().io(io_opcode::READ), 7);
    // Retries off for this pair: the caller sees every failure.
    qp.set_max_retries(0);
    failing(1, &model, Status::INTERNAL_ERROR);
    assert!(qp
        .read(&ns, Lba(0), c.alloc_buffer(ByteCount(512)).unwrap())
        .is_err());
    assert_eq!(model.stats().io(io_opcode::READ), 8);
}

#[test]
fn poll_callers_see_each_failure() {
    let (model, c) = up(5);
    let ns = c.namespace(1).unwrap().clone();
    let mut qp = c.create_io_queue_pair(8).unwrap();
    failing(1, &model, Status::INTERNAL_ERROR);
    qp.submit_read(&ns, Lba(0), c.alloc_buffer(ByteCount(512)).unwrap(), 4)
        .unwrap();
    let mut got = Vec::new();
    while got.is_empty() {
        qp.poll(4, |d| got.push(d));
    }
    let st = got[0].status.unwrap_err().nvme().expect("device status");
    assert!(!st.dnr, "a retry was allowed, and the caller decides");
    assert_eq!(model.stats().io(io_opcode::READ), 1);
}

#[test]
fn async_futures_retry_too() {
    let (model, c) = up(5);
    let ns = c.namespace(1).unwrap().clone();
    let aqp = AsyncQueuePair::new(c.create_io_queue_pair(8).unwrap());
    failing(1, &model, Status::INTERNAL_ERROR);
    let fut = aqp.read(&ns, Lba(0), c.alloc_buffer(ByteCount(512)).unwrap());
    let mut fut = std::pin::pin!(fut);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    let r = loop {
        if let std::task::Poll::Ready(r) = fut.as_mut().poll(&mut cx) {
            break r;
        }
    };
    assert!(r.is_ok(), "{:?}", r.err());
    assert_eq!(model.stats().io(io_opcode::READ), 2);
}
