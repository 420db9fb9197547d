//! The async adapter (`nvme_core::async_io`) against the controller model:
//! concurrency, backpressure, dropped futures, errors, split requests.
//! Allocation-freedom per command is in `async_alloc.rs` (its own binary,
//! for its counting allocator).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use nvme_core::async_io::AsyncQueuePair;
use nvme_core::cmd::io_opcode;
use nvme_core::{ByteCount, Controller, ControllerOptions, Error, Lba, Namespace};
use nvme_model::{ModelConfig, ModelController, NamespaceConfig, Status};

/// Counts wake-ups.
#[derive(Default)]
struct CountingWaker(AtomicUsize);

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

/// Poll every future round-robin until all are ready (a tiny executor).
fn join_all<F: Future>(futs: Vec<F>, waker: &Waker) -> Vec<F::Output> {
    let mut futs: Vec<Pin<Box<F>>> = futs.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = futs.iter().map(|_| None).collect();
    let mut cx = Context::from_waker(waker);
    for _round in 0..1_000_000 {
        let mut pending = 0;
        for (f, o) in futs.iter_mut().zip(out.iter_mut()) {
            if o.is_none() {
                match f.as_mut().poll(&mut cx) {
                    Poll::Ready(v) => *o = Some(v),
                    Poll::Pending => pending += 1,
                }
            }
        }
        if pending == 0 {
            return out.into_iter().map(Option::unwrap).collect();
        }
    }
    panic!("futures did not finish");
}

fn block_on<F: Future>(f: F) -> F::Output {
    join_all(vec![f], Waker::noop()).pop().unwrap()
}

fn setup() -> (ModelController, Controller<ModelController>, Namespace) {
    let cfg = ModelConfig {
        namespaces: vec![NamespaceConfig::new(4096, 512)],
        ..ModelConfig::default()
    };
    let hw = ModelController::new(cfg);
    let ctrl = Controller::init(hw.clone(), ControllerOptions::default()).unwrap();
    let ns = ctrl.namespace(1).unwrap().clone();
    (hw, ctrl, ns)
}

#[test]
fn concurrent_writes_then_reads() {
    let (hw, ctrl, ns) = setup();
    let aqp = AsyncQueuePair::new(ctrl.create_io_queue_pair(16).unwrap());
    let mut bufs = ctrl.alloc_buffers(12, ByteCount(4096)).unwrap();
    for (i, b) in bufs.iter_mut().enumerate() {
        b.fill(i as u8 + 1);
    }
    let writes: Vec<_> = bufs
        .into_iter()
        .enumerate()
        .map(|(i, b)| aqp.write(&ns, Lba(i as u64 * 8), b))
        .collect();
    let bufs: Vec<_> = join_all(writes, Waker::noop())
        .into_iter()
        .map(Result::unwrap)
        .collect();
    for i in 0..12u64 {
        assert!(hw
            .read_blocks(1, i * 8, 8)
            .iter()
            .all(|&x| x == i as u8 + 1));
    }
    block_on(aqp.flush(&ns)).unwrap();
    let reads: Vec<_> = bufs
        .into_iter()
        .enumerate()
        .map(|(i, mut b)| {
            b.fill(0);
            aqp.read(&ns, Lba((11 - i as u64) * 8), b)
        })
        .collect();
    for (i, b) in join_all(reads, Waker::noop()).into_iter().enumerate() {
        let b = b.unwrap();
        assert!(b.iter().all(|&x| x == 12 - i as u8), "buffer {i}");
    }
    assert_eq!(aqp.in_flight(), 0);
    let qp = aqp.into_inner();
    assert_eq!(qp.stats().completions, 25);
    assert_eq!(hw.dma_use_after_free(), 0);
}

#[test]
fn dropped_in_flight_future_keeps_its_buffer_until_completion() {
    let (hw, ctrl, ns) = setup();
    let aqp = AsyncQueuePair::new(ctrl.create_io_queue_pair(8).unwrap());
    let qid = aqp.with_queue_pair(|q| q.qid());
    let regions = hw.dma_regions_live();
    let buf = ctrl.alloc_buffer(ByteCount(4096)).unwrap();
    assert_eq!(hw.dma_regions_live(), regions + 1);
    hw.hold_completions(qid, true);
    {
        let mut fut = Box::pin(aqp.read(&ns, Lba(0), buf));
        let mut cx = Context::from_waker(Waker::noop());
        assert!(fut.as_mut().poll(&mut cx).is_pending()); // submitted
        assert!(fut.as_mut().poll(&mut cx).is_pending()); // held by the model
        assert_eq!(aqp.in_flight(), 1);
    } // dropped with its command in flight
    assert_eq!(aqp.abandoned(), 1);
    // The buffer is still alive: the queue pair holds it.
    assert_eq!(hw.dma_regions_live(), regions + 1);
    // The device now writes it (the held read executes).
    hw.hold_completions(qid, false);
    assert_eq!(aqp.drive(), 1);
    assert_eq!((aqp.abandoned(), aqp.in_flight()), (0, 0));
    assert_eq!(
        hw.dma_regions_live(),
        regions,
        "buffer released on completion"
    );
    assert_eq!(hw.dma_use_after_free(), 0);
    // The cell is usable again.
    let b = block_on(aqp.read(&ns, Lba(8), ctrl.alloc_buffer(ByteCount(4096)).unwrap())).unwrap();
    assert_eq!(b.len(), 4096);
    assert_eq!(hw.dma_use_after_free(), 0);
}

#[test]
fn dropped_after_completion_frees_the_cell() {
    let (hw, ctrl, ns) = setup();
    let aqp = AsyncQueuePair::new(ctrl.create_io_queue_pair(4).unwrap());
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..10 {
        let mut fut = Box::pin(aqp.read(&ns, Lba(0), ctrl.alloc_buffer(ByteCount(512)).unwrap()));
        assert!(fut.as_mut().poll(&mut cx).is_pending()); // submitted
        aqp.drive(); // completed into its cell, never collected
        assert_eq!(aqp.in_flight(), 0);
    }
    // 10 > 3 cells: each drop returned its cell.
    assert!(block_on(aqp.read(&ns, Lba(0), ctrl.alloc_buffer(ByteCount(512)).unwrap())).is_ok());
    assert_eq!(hw.dma_use_after_free(), 0);
}

#[test]
fn queue_full_is_backpressure_not_an_error() {
    let (hw, ctrl, ns) = setup();
    // 4 entries: at most 3 commands in flight.
    let aqp = AsyncQueuePair::new(ctrl.create_io_queue_pair(4).unwrap());
    let qid = aqp.with_queue_pair(|q| q.qid());
    let bufs = ctrl.alloc_buffers(10, ByteCount(512)).unwrap();
    let mut futs: Vec<_> = bufs
        .into_iter()
        .enumerate()
        .map(|(i, b)| Box::pin(aqp.read(&ns, Lba(i as u64), b)))
        .collect();
    // With completions held, one round submits 3 and holds 7 back.
    hw.hold_completions(qid, true);
    let counter = Arc::new(CountingWaker::default());
    let waker = Waker::from(counter.clone());
    let mut cx = Context::from_waker(&waker);
    for f in &mut futs {
        assert!(f.as_mut().poll(&mut cx).is_pending());
    }
    assert_eq!(aqp.in_flight(), 3);
    assert_eq!(hw.held_commands(qid), 3);
    assert_eq!(
        counter.0.load(Ordering::Relaxed),
        10,
        "every pending future re-woke"
    );
    hw.hold_completions(qid, false);
    let outs = join_all(futs, &waker);
    assert!(outs.iter().all(Result::is_ok));
    assert_eq!(aqp.in_flight(), 0);
    assert_eq!(aqp.with_queue_pair(|q| q.stats().completions), 10);
    assert_eq!(hw.dma_use_after_free(), 0);
}

#[test]
fn errors_hand_the_buffer_back() {
    let (hw, ctrl, ns) = setup();
    let aqp = AsyncQueuePair::new(ctrl.create_io_queue_pair(8).unwrap());
    // Rejected before submission: past the end of the namespace.
    let e = block_on(aqp.read(
        &ns,
        Lba(ns.blocks()),
        ctrl.alloc_buffer(ByteCount(512)).unwrap(),
    ))
    .unwrap_err();
    assert!(matches!(e.error, Error::LbaOutOfRange { .. }), "{e}");
    assert!(e.buf.is_some());
    // Failed by the controller (retries off: see tests/retries.rs for them).
    aqp.with_queue_pair(|q| q.set_max_retries(0));
    hw.fail_next(io_opcode::READ, Status::UNRECOVERED_READ_ERROR);
    let e =
        block_on(aqp.read(&ns, Lba(0), ctrl.alloc_buffer(ByteCount(512)).unwrap())).unwrap_err();
    assert!(e.error.nvme_status().is_some(), "{e}");
    assert!(e.buf.is_some());
    // The pair still works.
    assert!(block_on(aqp.write(&ns, Lba(0), e.buf.unwrap())).is_ok());
}

#[test]
fn split_reads_on_a_recreated_queue_with_shadow_doorbells() {
    // Shadow doorbells on, MDTS = 8 KiB: each 32 KiB read is 4 commands.
    let hw = ModelController::new(ModelConfig {
        namespaces: vec![NamespaceConfig::new(4096, 512)],
        oacs: nvme_model::OACS_DBBUF,
        mdts: 1,
        ..ModelConfig::default()
    });
    let ctrl = Controller::init(hw.clone(), ControllerOptions::default()).unwrap();
    assert!(ctrl.shadow_doorbells());
    let ns = ctrl.namespace(1).unwrap().clone();
    for (round, entries) in [8u32, 32, 6, 16].into_iter().enumerate() {
        let aqp = AsyncQueuePair::new(ctrl.create_io_queue_pair(entries).unwrap());
        let seed = round as u8 * 8 + 1;
        let mut bufs = ctrl.alloc_buffers(3, ByteCount(32768)).unwrap();
        for (i, b) in bufs.iter_mut().enumerate() {
            b.fill(seed + i as u8);
        }
        let writes: Vec<_> = bufs
            .into_iter()
            .enumerate()
            .map(|(i, b)| aqp.write(&ns, Lba(i as u64 * 64), b))
            .collect();
        let written = join_all(writes, Waker::noop());
        assert!(written.iter().all(Result::is_ok), "round {round}");
        let reads: Vec<_> = (0..3)
            .map(|i| {
                let b = ctrl.alloc_buffer(ByteCount(32768)).unwrap();
                aqp.read(&ns, Lba(i as u64 * 64), b)
            })
            .collect();
        for (i, r) in join_all(reads, Waker::noop()).into_iter().enumerate() {
            let b = r.unwrap();
            assert!(b.iter().all(|&x| x == seed + i as u8), "round {round}");
        }
        let qp = aqp.into_inner();
        let st = qp.stats();
        assert!(st.commands >= 24, "round {round}: reads split: {st:?}");
        assert_eq!(qp.outstanding(), 0);
    }
    assert_eq!(hw.stats().invalid_doorbell_writes, 0);
    assert_eq!(hw.dma_use_after_free(), 0);
}
