//! The driver's own cost per I/O, against a controller that completes every
//! command instantly.
//!
//! `cargo bench -p nvme-model --bench overhead` prints, for
//! 4 KiB reads at QD1 and QD32, with doorbell batching off and on, on one
//! queue pair (one thread) and on one queue pair per core (one thread each):
//! ns per I/O, I/Os per second, doorbell MMIO writes per I/O and heap
//! allocations per I/O (which must be 0). See `docs/driver-overhead.md`.
//!
//! # The instant controller
//!
//! [`FastHw`] wraps this crate's [`ModelController`] and hands everything to
//! it except the I/O queues' doorbells:
//!
//! - Bring-up, admin commands (Identify, Set Features, Create / Delete I/O
//!   SQ and CQ), shutdown, registers and DMA allocation go to the model, as
//!   in the driver tests.
//! - The admin SQ doorbell is snooped on its way to the model: the bench
//!   reads the new admin entries and remembers where each Create I/O SQ/CQ
//!   puts its ring (IOVA → host address through the regions `alloc_dma`
//!   handed out).
//! - An I/O SQ tail doorbell is a [`FastSq`]: on `ring(tail)` it walks the
//!   new SQ entries and writes one successful completion entry per command
//!   (CID, SQ head, SQ id, phase tag) into the CQ ring. No lock, no PRP
//!   translation, no data movement, no check of the command. The I/O CQ head
//!   doorbell does nothing.
//!
//! So the measured loop contains the driver's whole submit and complete
//! path plus about a dozen instructions per command of fake controller.
//!
//! # Modes
//!
//! - `--bench` (what `cargo bench` passes): the full table.
//! - no arguments (what `cargo test --benches` runs): a smoke run of a few
//!   thousand I/Os per case, no timing claims.
//! - `--case NAME --ios N [--warmup W]`: only that case, exactly N I/Os
//!   after W warm-up I/Os (default 0), once (for callgrind).
//!   NAME is e.g. `qd32-batch-1qp`; `--list` prints the names.

use std::collections::HashMap;
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use nvme_core::cmd::{admin_opcode, CompletionEntry, SubmissionEntry};
use nvme_core::regs::{offset, Cap};
use nvme_core::{
    ByteCount, Controller, ControllerOptions, DmaBuf, DmaRegion, Doorbell, Hardware, HwError,
    IoQueuePair, Lba, Namespace, NoDeviceMemory,
};
use nvme_model::{Backing, ModelConfig, ModelController, ModelDma, ModelDoorbell, NamespaceConfig};

// ----- heap allocation counter ------------------------------------------------

// Counts every heap allocation, per thread: a queue pair's loop is measured
// on its own thread, while other threads (another pair's setup or teardown
// through the model) may allocate.
#[path = "../tests/support/counting_alloc.rs"]
#[allow(dead_code)]
mod counting_alloc;
use counting_alloc::{allocations, CountingAlloc};

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

// ----- the instant controller ----------------------------------------------------

/// What the bench learned from register writes and admin commands.
#[derive(Default)]
struct Snoop {
    /// Every DMA region handed out: (IOVA, host address, length).
    regions: Vec<(u64, usize, usize)>,
    asq: u64,
    asq_entries: u16,
    admin_tail: u16,
    /// qid → (ring IOVA, entries, CQ id).
    sqs: HashMap<u16, (u64, u16, u16)>,
    /// qid → (ring IOVA, entries).
    cqs: HashMap<u16, (u64, u16)>,
}

impl Snoop {
    /// Host address of `[iova, iova + len)`, which must lie in one region.
    fn host(&self, iova: u64, len: usize) -> Option<usize> {
        self.regions.iter().rev().find_map(|&(start, host, rlen)| {
            let end = start + rlen as u64;
            (iova >= start && iova + len as u64 <= end).then(|| host + (iova - start) as usize)
        })
    }

    /// Read the admin entries from `admin_tail` up to `new_tail`.
    fn admin_entries(&mut self, new_tail: u16) {
        let entries = self.asq_entries;
        let base = self
            .host(self.asq, usize::from(entries) * 64)
            .expect("ASQ lies in a DMA region") as *const SubmissionEntry;
        while self.admin_tail != new_tail && self.admin_tail < entries {
            // SAFETY: the admin SQ ring holds `entries` 64-byte entries at
            // `base` (a live region the model handed out: the controller
            // still uses it) and `admin_tail < entries`. The driver wrote
            // the entry before ringing this doorbell and does not touch it
            // again until the command completes.
            let e = unsafe { base.add(usize::from(self.admin_tail)).read_volatile() };
            let qid = e.cdw10 as u16;
            let size = (e.cdw10 >> 16) as u16 + 1;
            match (e.cdw0 & 0xff) as u8 {
                admin_opcode::CREATE_IO_CQ => {
                    self.cqs.insert(qid, (e.prp1, size));
                }
                admin_opcode::CREATE_IO_SQ => {
                    self.sqs.insert(qid, (e.prp1, size, (e.cdw11 >> 16) as u16));
                }
                admin_opcode::DELETE_IO_SQ => {
                    self.sqs.remove(&qid);
                }
                admin_opcode::DELETE_IO_CQ => {
                    self.cqs.remove(&qid);
                }
                _ => {}
            }
            self.admin_tail = (self.admin_tail + 1) % entries;
        }
    }
}

/// The model for everything but the I/O queues, which complete instantly.
struct FastHw {
    model: ModelController,
    cap: Cap,
    snoop: Arc<Mutex<Snoop>>,
}

impl FastHw {
    fn new(model: ModelController) -> Self {
        let cap = model.config().cap();
        FastHw {
            model,
            cap,
            snoop: Arc::default(),
        }
    }
}

/// An I/O queue pair as the instant controller sees it.
struct FastQueue {
    sq: *const SubmissionEntry,
    sq_entries: u16,
    sq_head: u16,
    sq_id: u16,
    cq: *mut CompletionEntry,
    cq_entries: u16,
    cq_tail: u16,
    phase: bool,
}

// SAFETY: the pointers name the rings of one queue pair, which the driver
// moves between threads as a whole (with this doorbell inside it); only the
// thread that owns the pair rings the doorbell.
unsafe impl Send for FastQueue {}

/// The SQ tail doorbell of an I/O queue on the instant controller.
struct FastSq {
    qid: u16,
    snoop: Arc<Mutex<Snoop>>,
    queue: Option<FastQueue>,
}

impl FastSq {
    /// Find the rings the Create I/O SQ/CQ commands named (the doorbell is
    /// handed out before the queues are created, so this happens on the
    /// first ring).
    #[cold]
    fn resolve(&self) -> FastQueue {
        let s = self.snoop.lock().unwrap();
        let &(sq_iova, sq_entries, cqid) = s.sqs.get(&self.qid).expect("I/O SQ was created");
        let &(cq_iova, cq_entries) = s.cqs.get(&cqid).expect("its CQ was created");
        let sq = s
            .host(sq_iova, usize::from(sq_entries) * 64)
            .expect("SQ ring");
        let cq = s
            .host(cq_iova, usize::from(cq_entries) * 16)
            .expect("CQ ring");
        FastQueue {
            sq: sq as *const SubmissionEntry,
            sq_entries,
            sq_head: 0,
            sq_id: self.qid,
            cq: cq as *mut CompletionEntry,
            cq_entries,
            cq_tail: 0,
            phase: true,
        }
    }
}

impl FastQueue {
    /// Consume SQ entries up to `tail`, completing each one successfully.
    #[inline]
    fn run(&mut self, tail: u16) {
        assert!(tail < self.sq_entries, "SQ tail {tail} out of range");
        while self.sq_head != tail {
            // SAFETY: `sq_head < sq_entries` and the SQ ring holds that many
            // entries; the driver wrote the entry before this doorbell.
            let cdw0 = unsafe {
                std::ptr::addr_of!((*self.sq.add(usize::from(self.sq_head))).cdw0).read_volatile()
            };
            self.sq_head += 1;
            if self.sq_head == self.sq_entries {
                self.sq_head = 0;
            }
            let cqe = CompletionEntry {
                result: 0,
                dw1: 0,
                sq_head: self.sq_head,
                sq_id: self.sq_id,
                cid: (cdw0 >> 16) as u16,
                status: u16::from(self.phase),
            };
            // SAFETY: `cq_tail < cq_entries` and the CQ ring holds that many
            // 16-byte entries. The slot is free: at most `sq_entries - 1`
            // commands are outstanding and the CQ is as large as the SQ, so
            // the driver has consumed whatever was here on the last pass.
            // Same thread as the reader, so one store suffices.
            unsafe { self.cq.add(usize::from(self.cq_tail)).write_volatile(cqe) };
            self.cq_tail += 1;
            if self.cq_tail == self.cq_entries {
                self.cq_tail = 0;
                self.phase = !self.phase;
            }
        }
    }
}

/// Doorbells of the bench controller.
enum BenchDoorbell {
    /// Admin CQ head: straight to the model.
    Model(ModelDoorbell),
    /// Admin SQ tail: snooped, then to the model.
    AdminSq(ModelDoorbell, Arc<Mutex<Snoop>>),
    /// I/O SQ tail: completes instantly.
    IoSq(FastSq),
    /// I/O CQ head: nothing to do.
    IoCq,
}

impl Doorbell for BenchDoorbell {
    #[inline]
    fn ring(&mut self, value: u32) {
        match self {
            BenchDoorbell::IoSq(sq) => {
                let q = match &mut sq.queue {
                    Some(q) => q,
                    None => {
                        let q = sq.resolve();
                        sq.queue.insert(q)
                    }
                };
                q.run(value as u16);
            }
            BenchDoorbell::IoCq => {}
            BenchDoorbell::Model(db) => db.ring(value),
            BenchDoorbell::AdminSq(db, snoop) => {
                snoop.lock().unwrap().admin_entries(value as u16);
                db.ring(value);
            }
        }
    }
}

// SAFETY: the model handles DMA for the admin queue (see its impl); the
// instant I/O queues touch only the rings and slots of regions the model
// handed out, while they live.
unsafe impl Hardware for FastHw {
    type Dma = ModelDma;
    type Doorbell = BenchDoorbell;
    type DeviceMem = NoDeviceMemory;
    type Info = ();
    fn info(&self) {}

    fn read32(&self, offset: usize) -> u32 {
        self.model.read32(offset)
    }
    fn read64(&self, offset: usize) -> u64 {
        self.model.read64(offset)
    }
    fn write32(&self, off: usize, value: u32) {
        {
            let mut s = self.snoop.lock().unwrap();
            if off == offset::AQA {
                s.asq_entries = (value & 0xfff) as u16 + 1;
            } else if off == offset::CC && value & 1 == 0 {
                s.admin_tail = 0; // disabled: the admin queue starts over
            }
        }
        self.model.write32(off, value);
    }
    fn write64(&self, off: usize, value: u64) {
        if off == offset::ASQ {
            self.snoop.lock().unwrap().asq = value;
        }
        self.model.write64(off, value);
    }

    fn doorbell(&self, off: usize) -> Result<BenchDoorbell, HwError> {
        // Let the model validate the offset, and keep its doorbell for the
        // admin queue.
        let model_db = self.model.doorbell(off)?;
        let index = (off - offset::DOORBELLS) / self.cap.doorbell_stride();
        let (qid, is_cq) = ((index / 2) as u16, index % 2 == 1);
        Ok(match (qid, is_cq) {
            (0, false) => BenchDoorbell::AdminSq(model_db, self.snoop.clone()),
            (0, true) => BenchDoorbell::Model(model_db),
            (qid, false) => BenchDoorbell::IoSq(FastSq {
                qid,
                snoop: self.snoop.clone(),
                queue: None,
            }),
            (_, true) => BenchDoorbell::IoCq,
        })
    }

    fn alloc_dma(&self, len: usize) -> Result<ModelDma, HwError> {
        let d = self.model.alloc_dma(len)?;
        self.snoop
            .lock()
            .unwrap()
            .regions
            .push((d.iova().0, d.as_ptr() as usize, d.len()));
        Ok(d)
    }

    fn map_device_memory(&self, bar: u8, off: u64, len: u64) -> Result<NoDeviceMemory, HwError> {
        self.model.map_device_memory(bar, off, len)
    }
    fn bar_address(&self, bar: u8) -> Result<u64, HwError> {
        self.model.bar_address(bar)
    }
    fn delay_us(&self, micros: u64) {
        self.model.delay_us(micros);
    }
}

// ----- the measured loop -------------------------------------------------------

type Buf = DmaBuf<ModelDma>;

/// What one queue pair did in one run.
#[derive(Copy, Clone, Default)]
struct Run {
    ios: u64,
    elapsed: Duration,
    allocations: u64,
    sq_mmio: u64,
    cq_mmio: u64,
    errors: u64,
}

/// Keep `qd` 4 KiB reads in flight until `ios` have completed: each
/// completion's buffer is resubmitted at the next LBA. `bufs` holds the
/// `qd` buffers before and after; `ready` is scratch space of capacity `qd`.
/// Returns the completions that reported an error (expected 0).
#[inline(never)]
fn io_loop(
    qp: &mut IoQueuePair<FastHw>,
    ns: &Namespace,
    bufs: &mut Vec<Buf>,
    ready: &mut Vec<Buf>,
    qd: usize,
    ios: u64,
) -> u64 {
    let blocks_per_io = 4096 / ns.block_size();
    let last_lba = ns.blocks() - blocks_per_io;
    let mut lba = 0u64;
    let mut submitted = 0u64;
    let mut completed = 0u64;
    let mut errors = 0u64;
    let mut submit = |qp: &mut IoQueuePair<FastHw>, buf: Buf, submitted: &mut u64| {
        if let Err(r) = qp.submit_read(ns, Lba(lba), buf, *submitted) {
            panic!("submission refused: {}", r.error);
        }
        *submitted += 1;
        lba += blocks_per_io;
        if lba > last_lba {
            lba = 0;
        }
    };
    while submitted < ios.min(qd as u64) {
        let buf = bufs.pop().expect("qd buffers");
        submit(qp, buf, &mut submitted);
    }
    while completed < ios {
        qp.poll(qd, |c| {
            if c.status.is_err() {
                errors += 1;
            }
            ready.push(c.buf.expect("a read completes with its buffer"));
        });
        for buf in ready.drain(..) {
            completed += 1;
            if submitted < ios {
                submit(qp, buf, &mut submitted);
            } else {
                bufs.push(buf);
            }
        }
    }
    errors
}

/// One queue pair's run of `ios` I/Os at depth `qd`, after a warm-up.
fn run_queue(
    ctrl: &Controller<FastHw>,
    mut qp: IoQueuePair<FastHw>,
    qd: usize,
    batch: bool,
    warmup: u64,
    ios: u64,
    start: &Barrier,
) -> Run {
    let ns = ctrl.namespace(1).expect("namespace 1").clone();
    let mut bufs = ctrl.alloc_buffers(qd, ByteCount(4096)).expect("buffers");
    let mut ready = Vec::with_capacity(qd);
    qp.set_doorbell_batching(batch);
    io_loop(&mut qp, &ns, &mut bufs, &mut ready, qd, warmup);
    start.wait();
    let before = qp.stats();
    let allocs = allocations();
    let t = Instant::now();
    let errors = io_loop(&mut qp, &ns, &mut bufs, &mut ready, qd, ios);
    let elapsed = t.elapsed();
    let allocations = allocations() - allocs;
    let after = qp.stats();
    assert_eq!(after.completions - before.completions, ios);
    Run {
        ios,
        elapsed,
        allocations,
        sq_mmio: after.sq_doorbell.mmio_writes - before.sq_doorbell.mmio_writes,
        cq_mmio: after.cq_doorbell.mmio_writes - before.cq_doorbell.mmio_writes,
        errors,
    }
}

#[derive(Copy, Clone)]
struct Case {
    qd: usize,
    batch: bool,
    /// Queue pairs, one thread (pinned to its own CPU) each.
    pairs: usize,
}

impl Case {
    fn name(&self) -> String {
        format!(
            "qd{}-{}-{}qp",
            self.qd,
            if self.batch { "batch" } else { "nobatch" },
            self.pairs
        )
    }
}

fn controller() -> Controller<FastHw> {
    let cfg = ModelConfig {
        namespaces: vec![NamespaceConfig::new(1 << 24, 4096).with_backing(Backing::Null)],
        // No Doorbell Buffer Config: the instant I/O queues complete inside
        // the MMIO doorbell and keep no shadow slots (as in every figure
        // recorded in docs/driver-overhead.md).
        oacs: 0,
        ..ModelConfig::default()
    };
    let hw = FastHw::new(ModelController::new(cfg));
    let opts = ControllerOptions {
        io_queue_pairs: 4,
        ..ControllerOptions::default()
    };
    Controller::init(hw, opts).expect("controller bring-up")
}

/// Pin the calling thread to `cpu` (best effort; Linux only).
fn pin_to(cpu: usize) -> bool {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: `cpu_set_t` is plain data for which all zeroes is the
        // empty set; CPU_SET writes inside it (cpu is reduced modulo
        // CPU_SETSIZE); sched_setaffinity reads `size_of` bytes of it.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu % libc::CPU_SETSIZE as usize, &mut set);
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = cpu;
        false
    }
}

/// Run `case` once: every queue pair on its own pinned thread.
fn run_case(case: Case, warmup: u64, ios: u64) -> Vec<Run> {
    let ctrl = controller();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let start = Arc::new(Barrier::new(case.pairs));
    let handles: Vec<_> = (0..case.pairs)
        .map(|i| {
            let qp = ctrl.create_io_queue_pair(256).expect("queue pair");
            let ctrl = ctrl.clone();
            let start = start.clone();
            std::thread::spawn(move || {
                pin_to(i % cpus);
                run_queue(&ctrl, qp, case.qd, case.batch, warmup, ios, &start)
            })
        })
        .collect();
    handles
        .into_iter()
        .map(|h| h.join().expect("bench thread"))
        .collect()
}

struct Row {
    case: Case,
    /// Median of the repetitions.
    ns_per_io: f64,
    /// Best of the repetitions.
    best_ns_per_io: f64,
    iops: f64,
    sq_mmio: f64,
    cq_mmio: f64,
    allocs: u64,
}

/// Run `case` `reps` times; keep the median rep (by ns/IO).
fn measure(case: Case, warmup: u64, ios: u64, reps: usize) -> Row {
    let mut rows: Vec<Row> = (0..reps)
        .map(|_| {
            let runs = run_case(case, warmup, ios);
            let errors: u64 = runs.iter().map(|r| r.errors).sum();
            assert_eq!(errors, 0, "completions with an error status");
            let n = runs.len() as f64;
            let total: u64 = runs.iter().map(|r| r.ios).sum();
            Row {
                case,
                // Per queue pair (per core): each thread's time per I/O, averaged.
                best_ns_per_io: 0.0,
                ns_per_io: runs
                    .iter()
                    .map(|r| r.elapsed.as_nanos() as f64 / r.ios as f64)
                    .sum::<f64>()
                    / n,
                // Aggregate: every pair's I/Os over the slowest pair's time.
                iops: total as f64
                    / runs
                        .iter()
                        .map(|r| r.elapsed.as_secs_f64())
                        .fold(0.0, f64::max),
                sq_mmio: runs.iter().map(|r| r.sq_mmio).sum::<u64>() as f64 / total as f64,
                cq_mmio: runs.iter().map(|r| r.cq_mmio).sum::<u64>() as f64 / total as f64,
                allocs: runs.iter().map(|r| r.allocations).sum(),
            }
        })
        .collect();
    rows.sort_by(|a, b| a.ns_per_io.total_cmp(&b.ns_per_io));
    let best = rows[0].ns_per_io;
    let mut row = rows.swap_remove(reps / 2);
    row.best_ns_per_io = best;
    row
}

fn cases(pairs: &[usize]) -> Vec<Case> {
    let mut v = Vec::new();
    for &pairs in pairs {
        for qd in [1, 32] {
            for batch in [false, true] {
                v.push(Case { qd, batch, pairs });
            }
        }
    }
    v
}

fn print_row(r: &Row, ios: u64) {
    println!(
        "{:<18} {:>5} {:>7} {:>4} {:>9.1} {:>9.1} {:>12.2} {:>8.3} {:>8.3} {:>12}",
        r.case.name(),
        r.case.qd,
        if r.case.batch { "on" } else { "off" },
        r.case.pairs,
        r.ns_per_io,
        r.best_ns_per_io,
        r.iops / 1e6,
        r.sq_mmio,
        r.cq_mmio,
        format!("{}/{}", r.allocs, ios * r.case.pairs as u64),
    );
}

fn print_header() {
    println!(
        "{:<18} {:>5} {:>7} {:>4} {:>9} {:>9} {:>12} {:>8} {:>8} {:>12}",
        "case",
        "qd",
        "batch",
        "qps",
        "ns/IO",
        "best",
        "MIOPS (all)",
        "SQdb/IO",
        "CQdb/IO",
        "allocs/IOs"
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let all = cases(&[1, cpus.max(2)]);
    if args.iter().any(|a| a == "--list") {
        for c in &all {
            println!("{}", c.name());
        }
        return;
    }
    if let Some(name) = value("--case") {
        // Exactly N I/Os of one case, no warm-up (for callgrind).
        let ios: u64 = value("--ios").map_or(1_000_000, |s| s.parse().expect("--ios N"));
        let case = *all
            .iter()
            .find(|c| c.name() == name)
            .unwrap_or_else(|| panic!("no case {name}; --list shows them"));
        let warmup: u64 = value("--warmup").map_or(0, |s| s.parse().expect("--warmup N"));
        let runs = run_case(case, warmup, ios);
        let allocs: u64 = runs.iter().map(|r| r.allocations).sum();
        let ns = runs
            .iter()
            .map(|r| r.elapsed.as_nanos() as f64 / r.ios as f64)
            .sum::<f64>()
            / runs.len() as f64;
        println!(
            "{name}: {ios} I/Os per queue pair, {ns:.1} ns/IO, \
             {allocs} heap allocations in the loop"
        );
        assert_eq!(allocs, 0, "the I/O path allocated");
        return;
    }
    let bench = args.iter().any(|a| a == "--bench");
    let (warmup, ios, reps) = if bench {
        let ios = value("--ios").map_or(20_000_000, |s| s.parse().expect("--ios N"));
        (ios / 10, ios, 5)
    } else {
        (100, 5_000, 1) // smoke run under `cargo test --benches`
    };
    println!(
        "driver overhead: 4 KiB reads, instant controller, {ios} I/Os per queue pair, \
         median (and best) of {reps} runs; ns/IO per queue pair; {cpus} CPUs"
    );
    print_header();
    for case in all {
        let row = measure(case, warmup, ios, reps);
        print_row(&row, ios);
        assert_eq!(row.allocs, 0, "the I/O path allocated");
    }
}
