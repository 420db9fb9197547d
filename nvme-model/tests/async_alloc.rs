//! The async adapter allocates nothing per command once it is built: its
//! result table is sized when the adapter is made (one cell per queue
//! slot), so submitting and completing commands only reuses it.
//!
//! A test binary of its own because it installs a counting global
//! allocator. The controller model allocates on its side of the doorbell
//! (queues of held commands, PRP segments, stored blocks); that is the
//! device's work, not the driver's, so the test wraps the model in a
//! [`Hardware`] that stops counting while the model runs.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use nvme_core::async_io::AsyncQueuePair;
use nvme_core::{
    ByteCount, Controller, ControllerOptions, DmaBuf, Doorbell, Hardware, HwError, Lba,
    NoDeviceMemory,
};
use nvme_model::{ModelConfig, ModelController, ModelDma, ModelDoorbell, NamespaceConfig};

// ----- a per-thread counting allocator ---------------------------------------

#[path = "support/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::{allocations, in_device, CountingAlloc};

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

// ----- the model, with its own work not counted --------------------------------

#[derive(Clone, Debug)]
struct Uncounted(ModelController);

#[derive(Debug)]
struct UncountedDoorbell(ModelDoorbell);

impl Doorbell for UncountedDoorbell {
    fn ring(&mut self, value: u32) {
        in_device(|| self.0.ring(value));
    }
}

// SAFETY: every method forwards to the model unchanged (the doorbell too),
// so the model's guarantees (its `unsafe impl Hardware`) carry over.
unsafe impl Hardware for Uncounted {
    type Dma = ModelDma;
    type Doorbell = UncountedDoorbell;
    type DeviceMem = NoDeviceMemory;
    type Info = ();
    fn info(&self) {}
    fn read32(&self, offset: usize) -> u32 {
        in_device(|| self.0.read32(offset))
    }
    fn read64(&self, offset: usize) -> u64 {
        in_device(|| self.0.read64(offset))
    }
    fn write32(&self, offset: usize, value: u32) {
        in_device(|| self.0.write32(offset, value));
    }
    fn write64(&self, offset: usize, value: u64) {
        in_device(|| self.0.write64(offset, value));
    }
    fn doorbell(&self, offset: usize) -> Result<UncountedDoorbell, HwError> {
        in_device(|| self.0.doorbell(offset)).map(UncountedDoorbell)
    }
    fn map_device_memory(&self, bar: u8, off: u64, len: u64) -> Result<NoDeviceMemory, HwError> {
        in_device(|| self.0.map_device_memory(bar, off, len))
    }
    fn bar_address(&self, bar: u8) -> Result<u64, HwError> {
        in_device(|| self.0.bar_address(bar))
    }
    fn alloc_dma(&self, len: usize) -> Result<ModelDma, HwError> {
        in_device(|| self.0.alloc_dma(len))
    }
    fn delay_us(&self, micros: u64) {
        in_device(|| self.0.delay_us(micros));
    }
}

// ----- the test -------------------------------------------------------------------

/// Queue entries: at most `ENTRIES - 1` commands in flight.
const ENTRIES: u32 = 8;
const DEPTH: usize = ENTRIES as usize - 1;
const ROUNDS: usize = 50;

/// Poll `futs` round-robin until all are ready, allocating nothing.
fn run_all<F: Future + Unpin>(futs: &mut [Option<F>; DEPTH]) -> [Option<F::Output>; DEPTH] {
    let mut out: [Option<F::Output>; DEPTH] = std::array::from_fn(|_| None);
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..1_000_000 {
        let mut pending = 0;
        for (slot, o) in futs.iter_mut().zip(out.iter_mut()) {
            if let Some(f) = slot {
                match Pin::new(f).poll(&mut cx) {
                    Poll::Ready(v) => {
                        *o = Some(v);
                        *slot = None;
                    }
                    Poll::Pending => pending += 1,
                }
            }
        }
        if pending == 0 {
            return out;
        }
    }
    panic!("futures did not finish");
}

#[test]
fn no_allocation_per_command_after_construction() {
    // The counter works: an allocation on this thread is seen.
    let n = allocations();
    std::hint::black_box(Box::new(1u64));
    assert_eq!(allocations(), n + 1, "the counting allocator is installed");

    let model = ModelController::new(ModelConfig {
        namespaces: vec![NamespaceConfig::new(4096, 512)],
        ..ModelConfig::default()
    });
    let ctrl = Controller::init(Uncounted(model.clone()), ControllerOptions::default()).unwrap();
    let ns = ctrl.namespace(1).unwrap().clone();
    let aqp = AsyncQueuePair::new(ctrl.create_io_queue_pair(ENTRIES).unwrap());
    let mut bufs: [Option<DmaBuf<ModelDma>>; DEPTH] =
        std::array::from_fn(|_| Some(ctrl.alloc_buffer(ByteCount(4096)).unwrap()));

    // Every round fills the queue: writes, then reads of the same blocks,
    // then a flush.
    let before = allocations();
    for round in 0..ROUNDS {
        let mut writes: [_; DEPTH] = std::array::from_fn(|i| {
            let mut b = bufs[i].take().unwrap();
            b.fill((round + i) as u8);
            Some(aqp.write(&ns, Lba(i as u64 * 8), b))
        });
        for (i, r) in run_all(&mut writes).into_iter().enumerate() {
            bufs[i] = Some(r.unwrap().unwrap());
        }
        let mut reads: [_; DEPTH] = std::array::from_fn(|i| {
            let mut b = bufs[i].take().unwrap();
            b.fill(0);
            Some(aqp.read(&ns, Lba(i as u64 * 8), b))
        });
        for (i, r) in run_all(&mut reads).into_iter().enumerate() {
            let b = r.unwrap().unwrap();
            assert!(b.iter().all(|&x| x == (round + i) as u8), "round {round}");
            bufs[i] = Some(b);
        }
        let mut flush = std::pin::pin!(aqp.flush(&ns));
        let mut cx = Context::from_waker(Waker::noop());
        while flush.as_mut().poll(&mut cx).is_pending() {}
    }
    let commands = ROUNDS * (2 * DEPTH + 1);
    assert_eq!(
        allocations() - before,
        0,
        "heap allocations by the driver over {commands} commands"
    );
    assert_eq!(aqp.in_flight(), 0);
    let qp = aqp.into_inner();
    assert_eq!(qp.stats().completions, commands as u64);
    assert_eq!(model.dma_use_after_free(), 0);
}
