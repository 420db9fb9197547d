//! Tests of the driver (bring-up, admin commands, I/O queue pairs, PRPs,
//! ownership and teardown) against the in-process controller model.
//!
//! The model is only the stage here: every assertion is about what the
//! driver did (what it programmed, which commands it sent, which memory it
//! freed and when), observed through the model's counters and fault log or
//! through a register-recording wrapper around it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nvme_core::cmd::{admin_opcode, feature, io_opcode};
use nvme_core::regs::{offset, Aqa, Cc, Csts, ShutdownNotification, ShutdownStatus};
use nvme_core::{
    ByteCount, Completion, Controller, ControllerOptions, DmaBuf, DmaRegion, Error, Hardware,
    HwError, IoError, IoQueuePair, Iova, Lba, NoDeviceMemory, NvmeStatus, Rejected, StatusCodeType,
    PAGE_SIZE,
};
use nvme_model::{
    DmaFaultKind, ModelConfig, ModelController, ModelDma, ModelDoorbell, NamespaceConfig, Status,
};

type Ctrl = Controller<ModelController>;
type Qp = IoQueuePair<ModelController>;
type Buf = DmaBuf<ModelDma>;

/// Tag the synchronous helpers use (io.rs `SYNC_TAG`).
const SYNC_TAG: u64 = u64::MAX;

const ADMIN_TIMEOUT: Duration = Duration::from_millis(150);
const IO_TIMEOUT: Duration = Duration::from_millis(150);
const SHUTDOWN_TIMEOUT: Duration = Duration::from_millis(150);
/// CAP.TO = 1 in the model's default configuration.
const CAP_TIMEOUT: Duration = Duration::from_millis(500);

// ----- helpers ---------------------------------------------------------------

fn opts() -> ControllerOptions {
    ControllerOptions {
        admin_queue_entries: 16,
        io_queue_pairs: 4,
        admin_timeout: ADMIN_TIMEOUT,
        io_timeout: IO_TIMEOUT,
        shutdown_timeout: SHUTDOWN_TIMEOUT,
        ..ControllerOptions::default()
    }
}

/// Two namespaces: NSID 1 with 512-byte blocks, NSID 2 with 4096-byte blocks.
fn cfg() -> ModelConfig {
    ModelConfig {
        namespaces: vec![
            NamespaceConfig::new(1 << 20, 512),
            NamespaceConfig::new(1 << 12, 4096),
        ],
        ..ModelConfig::default()
    }
}

fn up_with(cfg: ModelConfig, opts: ControllerOptions) -> (ModelController, Ctrl) {
    let model = ModelController::new(cfg);
    let c = Controller::init(model.clone(), opts).expect("controller init");
    (model, c)
}

fn up() -> (ModelController, Ctrl) {
    up_with(cfg(), opts())
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(37).wrapping_add(seed) ^ (i >> 10) as u8)
        .collect()
}

fn filled<H: Hardware<Dma = ModelDma>>(c: &Controller<H>, len: usize, seed: u8) -> Buf {
    let mut b = c.alloc_buffer(ByteCount(len)).unwrap();
    b.copy_from_slice(&pattern(len, seed));
    b
}

/// Poll until `n` completions arrived (the model completes inside the
/// doorbell write, so a few polls are plenty).
fn reap(qp: &mut Qp, n: usize) -> Vec<Completion<ModelDma>> {
    let mut out = Vec::new();
    for _ in 0..1000 {
        if out.len() >= n {
            break;
        }
        qp.poll(n - out.len(), |c| out.push(c));
    }
    assert_eq!(out.len(), n, "expected {n} completions");
    out
}

/// No DMA error of any kind happened and the controller never went fatal.
fn assert_clean(model: &ModelController) {
    let st = model.stats();
    assert_eq!(
        st.dma_use_after_free,
        0,
        "use after free: {:?}",
        model.dma_fault_log()
    );
    assert_eq!(st.dma_errors, 0, "DMA errors: {:?}", model.dma_fault_log());
    assert_eq!(st.invalid_doorbell_writes, 0);
    assert!(!model.peek_csts().fatal(), "controller fatal status");
}

/// Identity of a buffer (it was handed back, not replaced).
fn id(b: &Buf) -> (u64, usize, usize) {
    (b.iova().0, b.offset(), b.len())
}

// ----- a register-recording Hardware wrapper ----------------------------------

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Ev {
    Read32(usize, u32),
    Read64(usize, u64),
    Write32(usize, u32),
    Write64(usize, u64),
}

/// The model, with every register access logged in order.
#[derive(Clone)]
struct Rec {
    hw: ModelController,
    log: Arc<Mutex<Vec<Ev>>>,
}

impl Rec {
    fn new(hw: ModelController) -> Self {
        Rec {
            hw,
            log: Arc::default(),
        }
    }
    fn push(&self, e: Ev) {
        self.log.lock().unwrap().push(e);
    }
    fn take(&self) -> Vec<Ev> {
        std::mem::take(&mut *self.log.lock().unwrap())
    }
}

// SAFETY: forwards to the model (see its impl), only recording what passes.
unsafe impl Hardware for Rec {
    type Dma = ModelDma;
    type Doorbell = ModelDoorbell;
    type DeviceMem = NoDeviceMemory;
    type Info = ();
    fn info(&self) {}

    fn read32(&self, off: usize) -> u32 {
        let v = self.hw.read32(off);
        self.push(Ev::Read32(off, v));
        v
    }
    fn read64(&self, off: usize) -> u64 {
        let v = self.hw.read64(off);
        self.push(Ev::Read64(off, v));
        v
    }
    fn write32(&self, off: usize, v: u32) {
        self.push(Ev::Write32(off, v));
        self.hw.write32(off, v);
    }
    fn write64(&self, off: usize, v: u64) {
        self.push(Ev::Write64(off, v));
        self.hw.write64(off, v);
    }
    fn doorbell(&self, off: usize) -> Result<ModelDoorbell, HwError> {
        self.hw.doorbell(off)
    }
    fn alloc_dma(&self, len: usize) -> Result<ModelDma, HwError> {
        self.hw.alloc_dma(len)
    }
    fn map_device_memory(&self, bar: u8, off: u64, len: u64) -> Result<NoDeviceMemory, HwError> {
        self.hw.map_device_memory(bar, off, len)
    }
    fn bar_address(&self, bar: u8) -> Result<u64, HwError> {
        self.hw.bar_address(bar)
    }
    fn delay_us(&self, micros: u64) {
        self.hw.delay_us(micros);
    }
}

fn cc_writes(log: &[Ev]) -> Vec<(usize, Cc)> {
    log.iter()
        .enumerate()
        .filter_map(|(i, e)| match *e {
            Ev::Write32(offset::CC, v) => Some((i, Cc::from_bits(v))),
            _ => None,
        })
        .collect()
}

fn csts_reads(log: &[Ev]) -> Vec<(usize, Csts)> {
    log.iter()
        .enumerate()
        .filter_map(|(i, e)| match *e {
            Ev::Read32(offset::CSTS, v) => Some((i, Csts(v))),
            _ => None,
        })
        .collect()
}

// ----- static properties ------------------------------------------------------

fn assert_send<T: Send>() {}
fn assert_send_sync<T: Send + Sync>() {}

/// Implemented twice for `Sync` types, so naming the method is ambiguous
/// (a compile error) exactly when `T: Sync`.
trait AmbiguousIfSync<A> {
    fn not_sync() {}
}
impl<T: ?Sized> AmbiguousIfSync<()> for T {}
struct IsSync;
impl<T: ?Sized + Sync> AmbiguousIfSync<IsSync> for T {}

// Compile-time: IoQueuePair is not Sync (this line does not compile if it is).
const _: fn() = || <Qp as AmbiguousIfSync<_>>::not_sync();

#[test]
fn queue_pair_is_send_not_sync_and_controller_is_send_sync() {
    assert_send::<Qp>();
    assert_send::<Completion<ModelDma>>();
    assert_send::<Buf>();
    assert_send::<Rejected<DmaBuf<ModelDma>>>();
    assert_send::<IoError<ModelDma>>();
    assert_send_sync::<Ctrl>();
    <Qp as AmbiguousIfSync<_>>::not_sync();
}

// ----- bring-up -----------------------------------------------------------------

#[test]
fn init_parses_identify_and_discovers_namespaces() {
    let model_cfg = ModelConfig {
        serial: "SER-4242".into(),
        model: "driver test model".into(),
        mdts: 5,
        ..cfg()
    };
    let (model, c) = up_with(model_cfg, opts());
    let id = c.identify();
    assert_eq!(id.serial, "SER-4242");
    assert_eq!(id.model, "driver test model");
    assert_eq!(id.mdts, 5);
    assert_eq!(id.nn, 2);
    assert_eq!(c.max_transfer_bytes(), PAGE_SIZE << 5);
    assert_eq!(c.version().major(), 1);
    assert_eq!(c.version().minor(), 4);
    assert_eq!(c.max_queue_entries(), 2048);
    assert!(c.status().ready());

    let ns: Vec<(u32, u64, u64, u16)> = c
        .namespaces()
        .iter()
        .map(|n| (n.nsid(), n.block_size(), n.blocks(), n.metadata_size()))
        .collect();
    assert_eq!(ns, [(1, 512, 1 << 20, 0), (2, 4096, 1 << 12, 0)]);
    assert_eq!(c.namespace(2).unwrap().size_bytes(), 4096 << 12);
    match c.namespace(3) {
        Err(Error::NoSuchNamespace { nsid: 3, active }) => assert_eq!(active, [1, 2]),
        other => panic!("expected NoSuchNamespace, got {other:?}"),
    }
    // A fresh Identify Namespace agrees with the cached one.
    let fresh = c.identify_namespace(2).unwrap();
    assert_eq!(&fresh, c.namespace(2).unwrap().identify());
    assert_clean(&model);
}

#[test]
fn number_of_queues_granted_is_capped_by_the_controller() {
    let model_cfg = ModelConfig {
        max_io_queue_pairs: 3,
        ..cfg()
    };
    let (model, c) = up_with(
        model_cfg,
        ControllerOptions {
            io_queue_pairs: 8,
            ..opts()
        },
    );
    assert_eq!(c.io_queue_pairs_granted(), 3);
    assert_eq!(model.granted_queues(), Some((3, 3)));
    assert_eq!(c.number_of_queues().unwrap(), (3, 3));

    let mut qps: Vec<Qp> = (0..3).map(|_| c.create_io_queue_pair(8).unwrap()).collect();
    let mut qids: Vec<u16> = qps.iter().map(|q| q.qid()).collect();
    qids.sort_unstable();
    assert_eq!(qids, [1, 2, 3]);
    match c.create_io_queue_pair(8) {
        Err(Error::NoQueuePairs { granted: 3 }) => {}
        other => panic!("expected NoQueuePairs, got {:?}", other.map(|q| q.qid())),
    }
    // Dropping one frees its qid for reuse.
    let gone = qps.remove(1).qid();
    let again = c.create_io_queue_pair(8).unwrap();
    assert_eq!(again.qid(), gone);
    assert_clean(&model);
}

#[test]
fn number_of_queues_granted_is_what_was_asked_when_fewer() {
    let (model, c) = up_with(
        cfg(),
        ControllerOptions {
            io_queue_pairs: 2,
            ..opts()
        },
    );
    assert_eq!(c.io_queue_pairs_granted(), 2);
    assert_eq!(model.granted_queues(), Some((2, 2)));
    let _a = c.create_io_queue_pair(4).unwrap();
    let _b = c.create_io_queue_pair(4).unwrap();
    assert!(matches!(
        c.create_io_queue_pair(4),
        Err(Error::NoQueuePairs { granted: 2 })
    ));
}

#[test]
fn controller_configuration_as_programmed() {
    let rec = Rec::new(ModelController::new(cfg()));
    let c = Controller::init(rec.clone(), opts()).unwrap();
    // What the model holds now.
    let cc = Cc::from_bits(rec.hw.read32(offset::CC));
    assert_eq!(
        cc,
        Cc {
            enable: true,
            ..Cc::DRIVER
        }
    );
    // Cc::DRIVER is what the spec needs here: NVM command set, 4 KiB pages,
    // round robin, no shutdown, 64/16-byte entries.
    assert_eq!(
        (cc.css, cc.mps, cc.ams, cc.shn, cc.iosqes, cc.iocqes),
        (0, 0, 0, ShutdownNotification::None, 6, 4)
    );
    assert_eq!(
        Aqa::from_bits(rec.hw.read32(offset::AQA)),
        Aqa {
            sq_entries: 16,
            cq_entries: 16
        }
    );
    assert!(rec.hw.enable_error().is_none());
    // CC was fully configured before EN went to 1 (and EN=1 written once).
    let log = rec.take();
    let writes = cc_writes(&log);
    let first_en = writes.iter().position(|(_, cc)| cc.enable).unwrap();
    assert!(first_en > 0, "CC must be configured with EN=0 first");
    let (_, before) = writes[first_en - 1];
    assert_eq!(
        Cc {
            enable: true,
            ..before
        },
        writes[first_en].1
    );
    assert_eq!(writes.iter().filter(|(_, cc)| cc.enable).count(), 1);
    // Admin queue registers written before enabling.
    let en_at = writes[first_en].0;
    for reg in [offset::ASQ, offset::ACQ] {
        let at = log
            .iter()
            .position(|e| matches!(e, Ev::Write64(o, _) if *o == reg))
            .expect("ASQ/ACQ written");
        assert!(at < en_at);
    }
    drop(c);
}

#[test]
fn a_controller_left_enabled_is_disabled_before_reprogramming() {
    let model = ModelController::new(cfg());
    // A previous user left it enabled with its own admin queue.
    let old_sq = model.alloc_dma(4096).unwrap();
    let old_cq = model.alloc_dma(4096).unwrap();
    model.write32(
        offset::AQA,
        Aqa {
            sq_entries: 4,
            cq_entries: 4,
        }
        .to_bits(),
    );
    model.write64(offset::ASQ, old_sq.iova().0);
    model.write64(offset::ACQ, old_cq.iova().0);
    model.write32(
        offset::CC,
        Cc {
            enable: true,
            css: 0,
            mps: 0,
            ams: 0,
            shn: ShutdownNotification::None,
            iosqes: 6,
            iocqes: 4,
        }
        .to_bits(),
    );
    assert!(model.is_running() && model.peek_csts().ready());

    let rec = Rec::new(model.clone());
    let c = Controller::init(rec.clone(), opts()).unwrap();
    let log = rec.take();
    let writes = cc_writes(&log);
    let (disable_at, first) = writes[0];
    assert!(!first.enable, "first CC write must clear EN, got {first:?}");
    // RDY=0 observed after the disable and before the admin queue is reprogrammed.
    let aqa_at = log
        .iter()
        .position(|e| matches!(e, Ev::Write32(offset::AQA, _)))
        .unwrap();
    assert!(disable_at < aqa_at);
    assert!(csts_reads(&log)
        .iter()
        .any(|&(i, s)| i > disable_at && i < aqa_at && !s.ready()));
    // The driver's admin queue is the one in use: admin commands work and
    // the old queue memory can go without the controller noticing.
    drop(old_sq);
    drop(old_cq);
    assert_eq!(c.number_of_queues().unwrap(), (4, 4));
    let mut qp = c.create_io_queue_pair(8).unwrap();
    qp.flush(c.namespace(1).unwrap()).unwrap();
    assert_clean(&model);
}

#[test]
fn fatal_controller_fails_at_enable() {
    let model = ModelController::new(cfg());
    model.set_fatal();
    match Controller::init(model.clone(), opts()) {
        Err(Error::ControllerFatal(csts)) => assert!(csts.fatal()),
        other => panic!("expected ControllerFatal, got {other:?}"),
    }
    assert_eq!(model.dma_regions_live(), 0, "nothing leaked");
    assert_clean_uaf(&model);
}

fn assert_clean_uaf(model: &ModelController) {
    assert_eq!(
        model.dma_use_after_free(),
        0,
        "use after free: {:?}",
        model.dma_fault_log()
    );
}

#[test]
fn device_gone_before_init() {
    let model = ModelController::new(cfg());
    model.device_gone();
    assert!(matches!(
        Controller::init(model.clone(), opts()),
        Err(Error::DeviceGone)
    ));
    assert_eq!(model.dma_regions_live(), 0);
}

#[test]
fn device_gone_during_an_admin_command() {
    let (model, c) = up();
    model.device_gone();
    let t = Instant::now();
    assert!(matches!(c.smart_log(), Err(Error::DeviceGone)));
    assert!(t.elapsed() < ADMIN_TIMEOUT, "noticed before the timeout");
    assert!(matches!(c.smart_log(), Err(Error::Dead)));
    assert!(matches!(c.create_io_queue_pair(4), Err(Error::Dead)));
    // It cannot be shown to have stopped: the admin queue is leaked, not freed.
    let live = model.dma_regions_live();
    drop(c);
    assert_eq!(model.dma_regions_live(), live);
    assert_clean_uaf(&model);
}

#[test]
fn ready_and_shutdown_after_several_csts_reads() {
    let model_cfg = ModelConfig {
        ready_delay_reads: 25,
        shutdown_delay_reads: 7,
        ..cfg()
    };
    let model = ModelController::new(model_cfg);
    let rec = Rec::new(model.clone());
    let c = Controller::init(rec.clone(), opts()).unwrap();
    {
        let mut qp = c.create_io_queue_pair(4).unwrap();
        let ns = c.namespace(1).unwrap();
        let b = qp.write(ns, Lba(3), filled(&c, 512, 1)).unwrap();
        drop(b);
    }
    rec.take();
    c.shutdown().expect("shutdown");
    // Shutdown was waited for (SHST went occurring → complete) before EN=0.
    let log = rec.take();
    let writes = cc_writes(&log);
    let shn_at = writes
        .iter()
        .find(|(_, cc)| cc.shn == ShutdownNotification::Normal && cc.enable)
        .map(|&(i, _)| i)
        .expect("CC.SHN = normal written with EN still 1");
    let off_at = writes
        .iter()
        .find(|(_, cc)| !cc.enable)
        .map(|&(i, _)| i)
        .expect("EN cleared");
    assert!(shn_at < off_at);
    let shst: Vec<ShutdownStatus> = csts_reads(&log)
        .iter()
        .filter(|&&(i, _)| i > shn_at && i < off_at)
        .map(|(_, s)| s.shutdown_status())
        .collect();
    assert!(shst.contains(&ShutdownStatus::Occurring));
    assert_eq!(shst.last(), Some(&ShutdownStatus::Complete));
    assert!(!model.is_running());
    assert_eq!(model.dma_regions_live(), 0);
    assert_clean(&model);
}

#[test]
fn ready_that_never_comes_is_a_ready_timeout() {
    let model = ModelController::new(ModelConfig {
        ready_delay_reads: u32::MAX,
        ..cfg()
    });
    let t = Instant::now();
    match Controller::init(model.clone(), opts()) {
        Err(Error::ReadyTimeout {
            want_ready: true,
            timeout,
            csts,
        }) => {
            assert_eq!(timeout, CAP_TIMEOUT);
            assert!(!csts.ready());
        }
        other => panic!("expected ReadyTimeout, got {other:?}"),
    }
    let took = t.elapsed();
    assert!(took >= CAP_TIMEOUT && took < 10 * CAP_TIMEOUT, "{took:?}");
    assert_clean_uaf(&model);
}

#[test]
fn dma_allocation_failure_at_init_is_reported() {
    let model = ModelController::new(cfg());
    model.fail_dma_allocs(1);
    assert!(matches!(
        Controller::init(model.clone(), opts()),
        Err(Error::Hardware(_))
    ));
    assert_eq!(model.dma_regions_live(), 0);
    // And the same model comes up on the next try.
    let c = Controller::init(model.clone(), opts()).unwrap();
    assert_eq!(c.namespaces().len(), 2);
}

/// Bring-up fails on an admin command that never completes. The command is
/// still in flight on the controller and will DMA into the scratch page and
/// the admin CQ when it runs, so the driver must not free them while the
/// controller may still run (it must disable it first, or leak).
#[test]
fn init_admin_timeout_does_not_free_memory_the_command_targets() {
    let model = ModelController::new(cfg());
    model.hold_completions(0, true);
    match Controller::init(model.clone(), opts()) {
        Err(Error::Timeout { command, .. }) => assert_eq!(command, "Identify Controller"),
        other => panic!("expected Timeout, got {other:?}"),
    }
    // The held Identify runs now (a slow controller finally answering).
    model.hold_completions(0, false);
    assert_eq!(
        model.dma_use_after_free(),
        0,
        "the controller wrote into admin memory the driver had freed: {:?}",
        model.dma_fault_log()
    );
}

// ----- admin commands --------------------------------------------------------------

#[test]
fn smart_log_counts_the_io_we_did() {
    let (model, c) = up();
    let before = c.smart_log().unwrap();
    assert_eq!(
        (before.host_read_commands, before.host_write_commands),
        (0, 0)
    );
    assert_eq!(before.available_spare, 100);
    let ns = c.namespace(1).unwrap();
    let mut qp = c.create_io_queue_pair(8).unwrap();
    let mut b = filled(&c, 4096, 3);
    for lba in [0, 8, 16] {
        b = qp.write(ns, Lba(lba), b).unwrap();
    }
    for lba in [0, 8] {
        b = qp.read(ns, Lba(lba), b).unwrap();
    }
    qp.flush(ns).unwrap();
    let smart = c.smart_log().unwrap();
    assert_eq!(smart.host_write_commands, 3);
    assert_eq!(smart.host_read_commands, 2);
    assert_eq!(smart.data_units_written, 1); // 12 KiB = 24 units of 512 B → 1 (thousands, rounded up)
    assert_eq!(smart.data_units_read, 1);
    assert_eq!(smart.media_errors, 0);
    assert_eq!(smart.error_log_entries, 0);
    assert_clean(&model);
}

#[test]
fn error_log_shows_an_injected_failure() {
    let (model, c) = up();
    assert!(c.error_log().unwrap().is_empty());
    let ns = c.namespace(1).unwrap();
    let mut qp = c.create_io_queue_pair(8).unwrap();
    model.fail_next(io_opcode::READ, Status::UNRECOVERED_READ_ERROR);
    let b = c.alloc_buffer(ByteCount(1024)).unwrap();
    qp.submit_read(ns, Lba(77), b, 5).unwrap();
    let done = reap(&mut qp, 1).pop().unwrap();
    let st = done.status.unwrap_err().nvme().expect("a device status");
    assert_eq!(done.tag, 5);

    let log = c.error_log().unwrap();
    assert_eq!(log.len(), 1, "{log:?}");
    let e = &log[0];
    assert_eq!(e.error_count, 1);
    assert_eq!(e.sqid, qp.qid());
    assert_eq!((e.lba, e.nsid), (77, 1));
    assert!(e.cid < qp.entries());
    let logged = e.status.unwrap_err();
    assert_eq!((logged.sct, logged.sc), (st.sct, st.sc));
    assert_eq!(logged.name(), Some("Unrecovered Read Error"));
    // The model posts no More bit (it has no way to inject one); the entry
    // is in the log regardless.
    assert!(!st.more);
    let smart = c.smart_log().unwrap();
    assert_eq!((smart.media_errors, smart.error_log_entries), (1, 1));
}

#[test]
fn get_and_set_features() {
    let (model, c) = up();
    assert_eq!(c.get_features(feature::VOLATILE_WRITE_CACHE, 0).unwrap(), 1);
    c.set_features(feature::VOLATILE_WRITE_CACHE, 0).unwrap();
    assert!(!model.write_cache_enabled());
    assert_eq!(c.get_features(feature::VOLATILE_WRITE_CACHE, 0).unwrap(), 0);
    c.set_features(feature::VOLATILE_WRITE_CACHE, 1).unwrap();
    assert!(model.write_cache_enabled());
    assert_eq!(c.number_of_queues().unwrap(), (4, 4));

    // A feature the controller refuses is a command error, not a dead controller.
    match c.set_features(feature::ARBITRATION, 0) {
        Err(Error::Command { command, status }) => {
            assert_eq!(command, "Set Features");
            assert!(status.is(NvmeStatus::INVALID_FIELD) && status.dnr);
        }
        other => panic!("expected a command error, got {other:?}"),
    }
    model.fail_next_admin(admin_opcode::GET_FEATURES, Status::INTERNAL_ERROR);
    let e = c
        .get_features(feature::VOLATILE_WRITE_CACHE, 0)
        .unwrap_err();
    assert_eq!(e.nvme_status().unwrap().name(), Some("Internal Error"));
    assert_eq!(c.get_features(feature::VOLATILE_WRITE_CACHE, 0).unwrap(), 1);
    c.create_io_queue_pair(4).unwrap();
    assert_clean(&model);
}

#[test]
fn admin_timeout_makes_the_controller_dead() {
    let (model, c) = up();
    model.hold_completions(0, true);
    let t = Instant::now();
    match c.get_features(feature::VOLATILE_WRITE_CACHE, 0) {
        Err(Error::Timeout { command, timeout }) => {
            assert_eq!(command, "Get Features");
            assert_eq!(timeout, ADMIN_TIMEOUT);
        }
        other => panic!("expected Timeout, got {other:?}"),
    }
    assert!(t.elapsed() >= ADMIN_TIMEOUT);
    let admin_before = model.stats().admin(admin_opcode::GET_FEATURES);
    let t = Instant::now();
    assert!(matches!(
        c.get_features(feature::VOLATILE_WRITE_CACHE, 0),
        Err(Error::Dead)
    ));
    assert!(matches!(c.smart_log(), Err(Error::Dead)));
    assert!(matches!(c.error_log(), Err(Error::Dead)));
    assert!(matches!(c.identify_namespace(1), Err(Error::Dead)));
    assert!(matches!(c.create_io_queue_pair(8), Err(Error::Dead)));
    assert!(t.elapsed() < ADMIN_TIMEOUT, "Dead is reported at once");
    assert_eq!(
        model.stats().admin(admin_opcode::GET_FEATURES),
        admin_before,
        "nothing more was submitted"
    );
    assert_eq!(model.stats().admin(admin_opcode::CREATE_IO_CQ), 0);
    // Teardown disables (dropping the held command) and only then frees.
    drop(c);
    assert!(!model.is_running());
    assert_eq!(model.dma_regions_live(), 0);
    model.hold_completions(0, false);
    assert_clean_uaf(&model);
}

// ----- I/O -----------------------------------------------------------------------------

#[test]
fn submit_and_poll_return_tags_and_buffers() {
    let (model, c) = up();
    let ns = c.namespace(1).unwrap();
    let mut qp = c.create_io_queue_pair(16).unwrap();
    let bufs: Vec<Buf> = (0..4).map(|i| filled(&c, 4096, i as u8)).collect();
    let ids: Vec<_> = bufs.iter().map(id).collect();
    for (i, b) in bufs.into_iter().enumerate() {
        qp.submit_write(ns, Lba(1000 + 8 * i as u64), b, 100 + i as u64)
            .unwrap();
    }
    assert_eq!(qp.outstanding(), 4);
    let cq_db = model.stats().cq_doorbells(qp.qid());
    let done = reap(&mut qp, 4);
    assert_eq!(
        model.stats().cq_doorbells(qp.qid()),
        cq_db,
        "4 consumed entries are within the CQ's slack: no head doorbell yet"
    );
    assert_eq!(qp.outstanding(), 0);
    for (i, c) in done.iter().enumerate() {
        assert_eq!(c.tag, 100 + i as u64);
        assert_eq!(c.status, Ok(()));
        let b = c.buf.as_ref().unwrap();
        assert_eq!(id(b), ids[i], "the same buffer came back");
        assert_eq!(&b[..], &pattern(4096, i as u8)[..]);
        assert_eq!(
            model.read_blocks(1, 1000 + 8 * i as u64, 8),
            pattern(4096, i as u8)
        );
    }
    // Read them back in reverse order into fresh buffers.
    for i in (0..4u64).rev() {
        let b = c.alloc_buffer(ByteCount(4096)).unwrap();
        qp.submit_read(ns, Lba(1000 + 8 * i), b, 200 + i).unwrap();
    }
    qp.submit_flush(ns, 300).unwrap();
    let done = reap(&mut qp, 5);
    let tags: Vec<u64> = done.iter().map(|c| c.tag).collect();
    assert_eq!(tags, [203, 202, 201, 200, 300]);
    for c in &done[..4] {
        let seed = (c.tag - 200) as u8;
        assert_eq!(&c.buf.as_ref().unwrap()[..], &pattern(4096, seed)[..]);
    }
    assert!(done[4].buf.is_none() && done[4].status.is_ok());
    // Nothing left.
    assert_eq!(qp.poll(16, |_| panic!("no more completions")), 0);
    assert_clean(&model);
}

#[test]
fn sync_read_write_flush_on_both_block_sizes() {
    let (model, c) = up();
    let mut qp = c.create_io_queue_pair(8).unwrap();
    for (nsid, lba, len) in [(1u32, 12345u64, 2048usize), (2, 77, 8192)] {
        let ns = c.namespace(nsid).unwrap();
        let w = filled(&c, len, nsid as u8);
        let wid = id(&w);
        let w = qp.write(ns, Lba(lba), w).unwrap();
        assert_eq!(id(&w), wid);
        let bs = ns.block_size();
        assert_eq!(
            model.read_blocks(nsid, lba, len as u64 / bs),
            pattern(len, nsid as u8)
        );
        // Neighbours untouched.
        assert!(model.read_blocks(nsid, lba - 1, 1).iter().all(|&b| b == 0));
        assert!(model
            .read_blocks(nsid, lba + len as u64 / bs, 1)
            .iter()
            .all(|&b| b == 0));
        let r = qp
            .read(ns, Lba(lba), c.alloc_buffer(ByteCount(len)).unwrap())
            .unwrap();
        assert_eq!(&r[..], &pattern(len, nsid as u8)[..]);
        qp.flush(ns).unwrap();
    }
    let st = model.stats();
    assert_eq!(
        (
            st.io(io_opcode::WRITE),
            st.io(io_opcode::READ),
            st.io(io_opcode::FLUSH)
        ),
        (2, 2, 2)
    );
    assert_eq!(qp.outstanding(), 0);
    assert_clean(&model);
}

/// Write then read back `len` bytes through a window at `off` of a
/// `cap`-byte buffer; check the data, the LBA, the bytes around the window,
/// and that the model saw no DMA error.
fn prp_round_trip(
    model: &ModelController,
    c: &Ctrl,
    qp: &mut Qp,
    cap: usize,
    off: usize,
    len: usize,
) {
    let ns = c.namespace(1).unwrap();
    let lba = 4096 + off as u64;
    let data = pattern(len, (off as u8) ^ (len >> 12) as u8);

    let mut w = c.alloc_buffer(ByteCount(cap)).unwrap();
    w.set_window(0, cap).unwrap();
    w.fill(0x5a);
    w.set_window(off, len).unwrap();
    w.copy_from_slice(&data);
    let w = qp.write(ns, Lba(lba), w).unwrap();
    assert_eq!((w.offset(), w.len()), (off, len));
    assert_eq!(
        model.read_blocks(1, lba, (len / 512) as u64),
        data,
        "write cap={cap} off={off} len={len}"
    );

    let mut r = c.alloc_buffer(ByteCount(cap)).unwrap();
    r.set_window(0, cap).unwrap();
    r.fill(0xa5);
    r.set_window(off, len).unwrap();
    let mut r = qp.read(ns, Lba(lba), r).unwrap();
    assert!(r[..] == data[..], "read cap={cap} off={off} len={len}");
    r.set_window(0, cap).unwrap();
    assert!(
        r[..off].iter().all(|&b| b == 0xa5),
        "bytes before the window"
    );
    assert!(
        r[off + len..].iter().all(|&b| b == 0xa5),
        "bytes after the window"
    );
    let st = model.stats();
    assert_eq!(
        (st.dma_errors, st.dma_use_after_free),
        (0, 0),
        "cap={cap} off={off} len={len}: {:?}",
        model.dma_fault_log()
    );
}

#[test]
fn prp_shapes_one_page_two_pages_lists_and_offsets() {
    let (model, c) = up();
    let mut qp = c.create_io_queue_pair(8).unwrap();
    let max = c.max_transfer_bytes();
    assert_eq!(max, PAGE_SIZE << 7, "model MDTS 7");
    for (cap, off, len) in [
        (4096, 0, 512),          // part of one page
        (4096, 0, 4096),         // one page
        (4096, 3072, 512),       // one page, offset, ends at the page end
        (8192, 0, 8192),         // two pages: PRP2 is a data pointer
        (8192, 512, 4096),       // offset crossing one page boundary
        (8192, 4092, 4096),      // 4 bytes in page one, the rest in page two
        (12288, 4092, 8192),     // offset, three pages: a two-entry list
        (65536, 0, 65536),       // list of 15
        (69632, 1028, 65536),    // offset window, list of 16
        (max, 0, max),           // the largest transfer
        (max + 4096, 2048, max), // the largest transfer starting mid-page
        (max + 4096, 4, max),    // … and 4 bytes in
    ] {
        prp_round_trip(&model, &c, &mut qp, cap, off, len);
    }
    assert_clean(&model);
}

#[test]
fn prp_list_of_a_full_page_without_mdts() {
    // MDTS 0 = no limit: the driver caps at one PRP list page (2 MiB).
    let (model, c) = up_with(ModelConfig { mdts: 0, ..cfg() }, opts());
    let max = c.max_transfer_bytes();
    assert_eq!(max, 512 * PAGE_SIZE);
    let mut qp = c.create_io_queue_pair(4).unwrap();
    prp_round_trip(&model, &c, &mut qp, max, 0, max); // PRP1 + 511 list entries
    prp_round_trip(&model, &c, &mut qp, max + 4096, 4, max); // PRP1 + 512 list entries
                                                             // One block more than MDTS: split in two, each piece a valid PRP shape.
    let reads = model.stats().io(io_opcode::READ);
    prp_round_trip(&model, &c, &mut qp, max + 4096, 4, max + 512);
    assert_eq!(model.stats().io(io_opcode::READ), reads + 2);
    assert_clean(&model);
}

#[test]
fn requests_larger_than_mdts_are_split_and_complete_as_one() {
    let (model, c) = up_with(
        ModelConfig {
            mdts: 2, // 16 KiB
            ..cfg()
        },
        opts(),
    );
    let max = c.max_transfer_bytes();
    assert_eq!(max, 16384);
    let ns = c.namespace(1).unwrap();
    let mut qp = c.create_io_queue_pair(8).unwrap();

    // 40 KiB starting 4 bytes into the buffer: pieces of 16 + 16 + 8 KiB.
    let len = 40 * 1024;
    let st0 = model.stats();
    prp_round_trip(&model, &c, &mut qp, len + 4096, 4, len);
    let st1 = model.stats();
    assert_eq!(st1.io(io_opcode::WRITE) - st0.io(io_opcode::WRITE), 3);
    assert_eq!(st1.io(io_opcode::READ) - st0.io(io_opcode::READ), 3);

    // Async: one completion per request, after its last piece.
    let w = filled(&c, len, 8);
    let wid = id(&w);
    qp.submit_write(ns, Lba(300), w, 77).unwrap();
    assert_eq!(qp.outstanding(), 3, "three command slots in use");
    let done = reap(&mut qp, 1);
    assert_eq!((done[0].tag, done[0].status), (77, Ok(())));
    assert_eq!(id(done[0].buf.as_ref().unwrap()), wid);
    assert_eq!(qp.outstanding(), 0);
    assert_eq!(qp.poll(8, |_| panic!("one completion only")), 0);
    assert_eq!(
        model.read_blocks(1, 300, (len / 512) as u64),
        pattern(len, 8)
    );

    // A failing piece fails the whole request; the buffer still comes back.
    model.fail_next(io_opcode::READ, Status::UNRECOVERED_READ_ERROR);
    let r = c.alloc_buffer(ByteCount(len)).unwrap();
    let rid = id(&r);
    qp.submit_read(ns, Lba(300), r, 78).unwrap();
    let done = reap(&mut qp, 1).pop().unwrap();
    assert_eq!(done.tag, 78);
    assert_eq!(
        done.status.unwrap_err().nvme().and_then(|s| s.name()),
        Some("Unrecovered Read Error")
    );
    assert_eq!(id(done.buf.as_ref().unwrap()), rid);
    assert_eq!(qp.outstanding(), 0);

    // Not enough free slots for all pieces: QueueFull, buffer back, nothing sent.
    for i in 0..5u64 {
        qp.submit_flush(ns, i).unwrap();
    }
    let before = model.stats().io_commands;
    let w = filled(&c, len, 9);
    let Rejected { error, buf } = qp.submit_write(ns, Lba(0), w, 1).unwrap_err();
    assert!(
        matches!(error, Error::QueueFull { outstanding: 5 }),
        "{error:?}"
    );
    assert_eq!(model.stats().io_commands, before);
    assert_eq!(reap(&mut qp, 5).len(), 5);
    qp.write(ns, Lba(0), buf).unwrap();

    // Teardown with a split request in flight: delete, then free; no UAF.
    model.hold_completions(qp.qid(), true);
    qp.submit_read(ns, Lba(0), c.alloc_buffer(ByteCount(len)).unwrap(), 1)
        .unwrap();
    assert_eq!(model.held_commands(qp.qid()), 3);
    let base = model.dma_regions_live() - 4; // CQ, SQ, PRP pages, the buffer
    drop(qp);
    assert_eq!(model.dma_regions_live(), base);
    assert_clean(&model);
}

#[test]
fn queue_full_hands_the_buffer_back_and_recovers_after_poll() {
    let (model, c) = up();
    let ns = c.namespace(1).unwrap();
    let mut qp = c.create_io_queue_pair(4).unwrap();
    assert_eq!(qp.entries(), 4);
    for i in 0..3u64 {
        qp.submit_write(ns, Lba(i * 8), filled(&c, 4096, i as u8), i)
            .unwrap();
    }
    assert_eq!(qp.outstanding(), 3);
    let st0 = model.stats();
    let extra = filled(&c, 4096, 9);
    let extra_id = id(&extra);
    let Rejected { error, buf } = qp.submit_write(ns, Lba(100), extra, 3).unwrap_err();
    assert!(
        matches!(error, Error::QueueFull { outstanding: 3 }),
        "{error:?}"
    );
    assert_eq!(id(&buf), extra_id);
    assert_eq!(&buf[..], &pattern(4096, 9)[..], "buffer untouched");
    assert!(matches!(
        qp.submit_flush(ns, 4),
        Err(Error::QueueFull { outstanding: 3 })
    ));
    // Sync I/O on a busy queue is refused too, with the buffer back.
    let IoError { error, buf } = qp.read(ns, Lba(0), buf).unwrap_err();
    assert!(matches!(error, Error::Busy { outstanding: 3 }));
    let buf = buf.expect("buffer handed back");
    assert_eq!(id(&buf), extra_id);
    assert!(matches!(qp.flush(ns), Err(Error::Busy { outstanding: 3 })));
    let st1 = model.stats();
    assert_eq!(st1.io_commands, st0.io_commands, "nothing was submitted");
    assert_eq!(st1.sq_doorbells(qp.qid()), st0.sq_doorbells(qp.qid()));

    let done = reap(&mut qp, 3);
    assert_eq!(done.iter().map(|c| c.tag).collect::<Vec<_>>(), [0, 1, 2]);
    qp.submit_write(ns, Lba(100), buf, 3).unwrap();
    let done = reap(&mut qp, 1);
    assert_eq!(done[0].tag, 3);
    assert_eq!(model.read_blocks(1, 100, 8), pattern(4096, 9));
    assert_clean(&model);
}

#[test]
fn ring_wraps_many_times_with_phase_flips() {
    let (model, c) = up();
    let ns = c.namespace(1).unwrap();
    for entries in [2u32, 3, 4, 7] {
        let mut qp = c.create_io_queue_pair(entries).unwrap();
        let depth = entries as usize - 1;
        let mut bufs: Vec<Buf> = (0..depth)
            .map(|_| c.alloc_buffer(ByteCount(512)).unwrap())
            .collect();
        let mut tag = 0u64;
        let mut round = 0;
        while tag < 1000 {
            round += 1;
            // Vary the batch size so head/tail/phase hit every slot offset.
            let batch = 1 + round % depth;
            let mut expect = Vec::new();
            for b in bufs.drain(..batch) {
                let mut b = b;
                let lba = tag % 4096;
                b.copy_from_slice(&pattern(512, tag as u8));
                qp.submit_write(ns, Lba(lba), b, tag).unwrap();
                expect.push(tag);
                tag += 1;
            }
            let done = reap(&mut qp, batch);
            assert_eq!(done.iter().map(|c| c.tag).collect::<Vec<_>>(), expect);
            for d in done {
                assert_eq!(d.status, Ok(()), "tag {}", d.tag);
                bufs.push(d.buf.unwrap());
            }
        }
        assert!(tag as usize >= 1000, "{tag}");
        for t in (tag - 20)..tag {
            assert_eq!(model.read_blocks(1, t % 4096, 1), pattern(512, t as u8));
        }
        // Synchronous I/O keeps working after all those wraps.
        let b = qp
            .read(ns, Lba((tag - 1) % 4096), bufs.pop().unwrap())
            .unwrap();
        assert_eq!(&b[..], &pattern(512, (tag - 1) as u8)[..]);
        assert_eq!(qp.outstanding(), 0);
    }
    assert_clean(&model);
}

#[test]
fn cids_are_reused_while_other_commands_are_in_flight() {
    let (model, c) = up();
    let ns = c.namespace(1).unwrap();
    let mut qp = c.create_io_queue_pair(4).unwrap();
    for i in 0..4u64 {
        model.write_blocks(1, i, &pattern(512, 10 + i as u8));
    }
    // A fails, so the error log tells us its CID.
    model.fail_next(io_opcode::READ, Status::UNRECOVERED_READ_ERROR);
    for i in 0..3u64 {
        qp.submit_read(ns, Lba(i), c.alloc_buffer(ByteCount(512)).unwrap(), i)
            .unwrap();
    }
    let a = reap(&mut qp, 1).pop().unwrap();
    assert_eq!(a.tag, 0);
    assert!(a.status.is_err());
    let cid_a = c.error_log().unwrap()[0].cid;
    // D goes into A's freed slot while B and C are still unreaped.
    model.fail_next(io_opcode::READ, Status::UNRECOVERED_READ_ERROR);
    qp.submit_read(ns, Lba(3), c.alloc_buffer(ByteCount(512)).unwrap(), 3)
        .unwrap();
    let log = c.error_log().unwrap();
    assert_eq!(log[0].lba, 3);
    assert_eq!(log[0].cid, cid_a, "D reuses A's CID");
    let rest = reap(&mut qp, 3);
    assert_eq!(rest.iter().map(|c| c.tag).collect::<Vec<_>>(), [1, 2, 3]);
    for c in &rest[..2] {
        assert_eq!(c.status, Ok(()));
        assert_eq!(
            &c.buf.as_ref().unwrap()[..],
            &pattern(512, 10 + c.tag as u8)[..]
        );
    }
    assert!(rest[2].status.is_err() && rest[2].buf.is_some());
    // Keep going: the reused CIDs stay consistent.
    for i in 0..50u64 {
        let b = qp
            .read(ns, Lba(i % 4), c.alloc_buffer(ByteCount(512)).unwrap())
            .unwrap();
        assert_eq!(&b[..], &pattern(512, 10 + (i % 4) as u8)[..]);
    }
    assert_eq!(model.stats().dma_use_after_free, 0);
}

#[test]
fn invalid_requests_are_rejected_before_anything_is_submitted() {
    let (model, c) = up();
    let (other_model, other) = up();
    let ns1 = c.namespace(1).unwrap();
    let ns2 = c.namespace(2).unwrap();
    let mut qp = c.create_io_queue_pair(8).unwrap();
    let st0 = model.stats();

    let check = |r: Result<(), Rejected<DmaBuf<ModelDma>>>, want: &dyn Fn(&Error) -> bool, bid| {
        let Rejected { error, buf } = r.expect_err("must be rejected");
        assert!(want(&error), "unexpected error {error:?}");
        assert_eq!(id(&buf), bid, "the same buffer is handed back");
        buf
    };

    // LBA range past the end, and one that overflows u64.
    let b = c.alloc_buffer(ByteCount(4096)).unwrap();
    let bid = id(&b);
    let b = check(
        qp.submit_read(ns1, Lba(ns1.blocks() - 7), b, 1),
        &|e| {
            matches!(e, Error::LbaOutOfRange { nsid: 1, lba, blocks: 8, size }
            if *lba == ns1.blocks() - 7 && *size == ns1.blocks())
        },
        bid,
    );
    let b = check(
        qp.submit_write(ns1, Lba(u64::MAX - 2), b, 1),
        &|e| matches!(e, Error::LbaOutOfRange { .. }),
        bid,
    );
    // The last 8 blocks are fine (checked below, after the counters).
    // 4096 bytes on a 4096-byte namespace, one block past the end.
    let b = check(
        qp.submit_read(ns2, Lba(ns2.blocks()), b, 1),
        &|e| matches!(e, Error::LbaOutOfRange { nsid: 2, .. }),
        bid,
    );

    // Lengths that are not whole blocks.
    let mut odd = c.alloc_buffer(ByteCount(1000)).unwrap();
    let odd_id = id(&odd);
    let odd_b = check(
        qp.submit_write(ns1, Lba(0), odd, 1),
        &|e| {
            matches!(
                e,
                Error::UnalignedLength {
                    len: 1000,
                    block_size: 512
                }
            )
        },
        odd_id,
    );
    odd = odd_b;
    let half = {
        let mut h = c.alloc_buffer(ByteCount(4096)).unwrap();
        h.set_window(0, 2048).unwrap();
        h
    };
    let half_id = id(&half);
    check(
        qp.submit_read(ns2, Lba(0), half, 1),
        &|e| {
            matches!(
                e,
                Error::UnalignedLength {
                    len: 2048,
                    block_size: 4096
                }
            )
        },
        half_id,
    );

    // An empty window, at an LBA that is in range and at the very end (the
    // fast path lets an empty buffer through its checks; the transfer-size
    // compare must catch it).
    for lba in [Lba(0), Lba(ns1.blocks())] {
        let mut e = c.alloc_buffer(ByteCount(4096)).unwrap();
        e.set_window(0, 0).unwrap();
        let eid = id(&e);
        check(
            qp.submit_read(ns1, lba, e, 1),
            &|e| matches!(e, Error::UnalignedLength { len: 0, .. }),
            eid,
        );
    }

    // Larger than the queue can carry even split at MDTS.
    let limit = c.max_transfer_bytes() * (usize::from(qp.entries()) - 1);
    let big = c.alloc_buffer(ByteCount(limit + 512)).unwrap();
    let big_id = id(&big);
    check(
        qp.submit_write(ns1, Lba(0), big, 1),
        &|e| matches!(e, Error::TooLarge { len, max } if *len == limit + 512 && *max == limit),
        big_id,
    );

    // A misaligned window cannot even be selected; the old window stays.
    let mut w = c.alloc_buffer(ByteCount(8192)).unwrap();
    assert!(matches!(
        w.set_window(2, 512),
        Err(Error::MisalignedBuffer { .. })
    ));
    assert!(matches!(
        w.set_window(4096, 8192),
        Err(Error::InvalidArgument(_))
    ));
    assert_eq!((w.offset(), w.len()), (0, 8192));

    // A buffer of another controller (other DMA domain), both directions.
    let foreign = other.alloc_buffer(ByteCount(4096)).unwrap();
    let fid = id(&foreign);
    let foreign = check(
        qp.submit_write(ns1, Lba(0), foreign, 1),
        &|e| matches!(e, Error::ForeignBuffer),
        fid,
    );
    let mut other_qp = other.create_io_queue_pair(4).unwrap();
    let other_ns = other.namespace(1).unwrap();
    let mine = c.alloc_buffer(ByteCount(4096)).unwrap();
    let mid = id(&mine);
    check(
        other_qp.submit_read(other_ns, Lba(0), mine, 1),
        &|e| matches!(e, Error::ForeignBuffer),
        mid,
    );

    // The synchronous calls refuse the same way and hand the buffer back.
    let IoError { error, buf } = qp.read(ns1, Lba(0), foreign).unwrap_err();
    assert!(matches!(error, Error::ForeignBuffer));
    assert_eq!(id(&buf.unwrap()), fid);
    let IoError { error, buf } = qp.write(ns1, Lba(0), odd).unwrap_err();
    assert!(matches!(error, Error::UnalignedLength { .. }));
    assert_eq!(id(&buf.unwrap()), odd_id);

    // Nothing reached either controller's queues.
    let st1 = model.stats();
    assert_eq!(st1.io_commands, st0.io_commands);
    assert_eq!(st1.sq_doorbells(qp.qid()), st0.sq_doorbells(qp.qid()));
    assert_eq!(other_model.stats().io_commands.values().sum::<u64>(), 0);
    assert_eq!(qp.outstanding(), 0);
    assert_eq!(qp.poll(8, |_| panic!("nothing was submitted")), 0);

    // And the boundary cases that are valid do go through.
    let b = qp.read(ns1, Lba(ns1.blocks() - 8), b).unwrap();
    assert_eq!(id(&b), bid);
    let mut b = b;
    b.set_window(0, 4096).unwrap();
    qp.read(ns2, Lba(ns2.blocks() - 1), b).unwrap();
    assert_clean(&model);
}

#[test]
fn error_completions_carry_status_and_buffer() {
    let (model, c) = up();
    let ns = c.namespace(1).unwrap();
    let mut qp = c.create_io_queue_pair(8).unwrap();
    // Every failure to the caller (transparent retries: tests/retries.rs).
    qp.set_max_retries(0);

    model.fail_next(io_opcode::READ, Status::UNRECOVERED_READ_ERROR);
    let b = c.alloc_buffer(ByteCount(4096)).unwrap();
    let bid = id(&b);
    qp.submit_read(ns, Lba(8), b, 42).unwrap();
    let done = reap(&mut qp, 1).pop().unwrap();
    assert_eq!(done.tag, 42);
    let st = done.status.unwrap_err().nvme().expect("a device status");
    assert_eq!(
        (st.sct, st.sc, st.dnr),
        (StatusCodeType::MediaError, 0x81, false)
    );
    assert_eq!(st.name(), Some("Unrecovered Read Error"));
    assert_eq!(id(done.buf.as_ref().unwrap()), bid);

    // Synchronous read: IoError with the command status and the buffer.
    model.fail_next(io_opcode::READ, Status::UNRECOVERED_READ_ERROR);
    let IoError { error, buf } = qp.read(ns, Lba(8), done.buf.unwrap()).unwrap_err();
    match &error {
        Error::Command { command, status } => {
            assert_eq!(*command, "Read");
            assert_eq!(status.name(), Some("Unrecovered Read Error"));
        }
        other => panic!("expected a command error, got {other:?}"),
    }
    assert_eq!(error.nvme_status().unwrap().sc, 0x81);
    let b = buf.expect("buffer handed back after an error completion");
    assert_eq!(id(&b), bid);

    model.fail_next(io_opcode::WRITE, Status::WRITE_FAULT);
    let IoError { error, buf } = qp.write(ns, Lba(8), b).unwrap_err();
    assert!(
        matches!(&error, Error::Command { command: "Write", status } if status.name() == Some("Write Fault")),
        "{error:?}"
    );
    let b = buf.unwrap();

    model.fail_next(io_opcode::FLUSH, Status::INTERNAL_ERROR);
    assert!(matches!(
        qp.flush(ns),
        Err(Error::Command {
            command: "Flush",
            ..
        })
    ));
    // The queue is fine afterwards.
    qp.write(ns, Lba(8), b).unwrap();
    assert_eq!(qp.outstanding(), 0);
    assert_eq!(model.stats().injected_failures, 4);
}

#[test]
fn queue_pair_creation_size_checks() {
    let (model, c) = up_with(ModelConfig { mqes: 63, ..cfg() }, opts());
    assert!(matches!(
        c.create_io_queue_pair(1),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        c.create_io_queue_pair(65),
        Err(Error::InvalidArgument(_))
    ));
    let mut big = c.create_io_queue_pair(64).unwrap();
    assert_eq!(big.entries(), 64);
    let ns = c.namespace(1).unwrap();
    for i in 0..63u64 {
        big.submit_read(ns, Lba(i), c.alloc_buffer(ByteCount(512)).unwrap(), i)
            .unwrap();
    }
    assert!(big
        .submit_read(ns, Lba(0), c.alloc_buffer(ByteCount(512)).unwrap(), 99)
        .is_err());
    assert_eq!(reap(&mut big, 63).len(), 63);
    assert_eq!(model.stats().admin(admin_opcode::CREATE_IO_CQ), 1);
}

#[test]
fn failed_queue_pair_creation_cleans_up() {
    let (model, c) = up();
    let base = model.dma_regions_live();

    model.fail_dma_allocs(1);
    assert!(matches!(c.create_io_queue_pair(8), Err(Error::Hardware(_))));
    assert_eq!(model.dma_regions_live(), base);

    model.fail_next_admin(admin_opcode::CREATE_IO_CQ, Status::INVALID_QUEUE_SIZE);
    match c.create_io_queue_pair(8) {
        Err(Error::Command { command, .. }) => assert_eq!(command, "Create I/O Completion Queue"),
        other => panic!("{:?}", other.map(|q| q.qid())),
    }
    assert_eq!(model.dma_regions_live(), base);

    model.fail_next_admin(admin_opcode::CREATE_IO_SQ, Status::INVALID_QUEUE_SIZE);
    match c.create_io_queue_pair(8) {
        Err(Error::Command { command, .. }) => assert_eq!(command, "Create I/O Submission Queue"),
        other => panic!("{:?}", other.map(|q| q.qid())),
    }
    assert_eq!(model.io_queues(), (vec![], vec![]), "its CQ was deleted");
    assert_eq!(model.dma_regions_live(), base);

    // The qid was released each time and the controller is fine.
    let mut qp = c.create_io_queue_pair(8).unwrap();
    assert_eq!(qp.qid(), 1);
    qp.flush(c.namespace(1).unwrap()).unwrap();
    assert_clean(&model);
}

/// Create I/O CQ times out: the command is still in flight and names the
/// new CQ's memory. The driver may free that memory only after the
/// controller was shown to have stopped.
#[test]
fn create_timeout_does_not_free_queue_memory_the_controller_may_own() {
    let (model, c) = up();
    let base = model.dma_regions_live();
    model.hold_completions(0, true);
    assert!(matches!(
        c.create_io_queue_pair(8),
        Err(Error::Timeout { .. })
    ));
    assert!(
        !model.is_running() || model.dma_regions_live() > base,
        "the controller still runs with a Create I/O CQ in flight, yet the queue memory \
         it names was freed (live regions {} = before {})",
        model.dma_regions_live(),
        base
    );
    model.hold_completions(0, false);
    assert_clean_uaf(&model);
}

// ----- ownership and teardown -----------------------------------------------------

#[test]
fn dropping_a_pair_with_commands_in_flight_deletes_the_sq_before_freeing() {
    let (model, c) = up();
    let ns = c.namespace(1).unwrap();
    let admin_only = model.dma_regions_live();
    let mut qp = c.create_io_queue_pair(8).unwrap();
    let qid = qp.qid();
    let with_pair = model.dma_regions_live();
    assert_eq!(with_pair, admin_only + 3, "CQ, SQ, PRP pages");

    model.write_blocks(1, 0, &pattern(8192, 1));
    model.hold_completions(qid, true);
    for i in 0..3u64 {
        qp.submit_read(ns, Lba(i * 8), c.alloc_buffer(ByteCount(4096)).unwrap(), i)
            .unwrap();
    }
    // A list-PRP write too, so its PRP list page is in flight.
    qp.submit_write(ns, Lba(64), filled(&c, 16384, 7), 3)
        .unwrap();
    assert_eq!(model.held_commands(qid), 4);
    assert_eq!(model.dma_regions_live(), with_pair + 4);
    assert_eq!(qp.poll(8, |_| panic!("held")), 0);

    drop(qp);
    let st = model.stats();
    assert_eq!(st.admin(admin_opcode::DELETE_IO_SQ), 1);
    assert_eq!(st.admin(admin_opcode::DELETE_IO_CQ), 1);
    assert_eq!(model.held_commands(qid), 0, "aborted by the SQ deletion");
    assert_eq!(model.io_queues(), (vec![], vec![]));
    assert_eq!(model.dma_regions_live(), admin_only, "everything freed");
    assert_eq!(
        model.read_blocks(1, 64, 32),
        vec![0; 16384],
        "the held write never ran"
    );
    // Releasing the hold now finds nothing to run.
    model.hold_completions(qid, false);
    assert_clean(&model);
    // The controller is fine and the qid is free again.
    let mut qp = c.create_io_queue_pair(8).unwrap();
    assert_eq!(qp.qid(), qid);
    qp.flush(ns).unwrap();
}

#[test]
fn dropping_a_pair_on_a_dead_controller_disables_it_then_frees() {
    let (model, c) = up();
    let ns = c.namespace(1).unwrap();
    let admin_only = model.dma_regions_live();
    let mut qp = c.create_io_queue_pair(8).unwrap();
    model.hold_completions(qp.qid(), true);
    qp.submit_read(ns, Lba(0), c.alloc_buffer(ByteCount(4096)).unwrap(), 1)
        .unwrap();
    // Kill the controller through an admin timeout.
    model.hold_completions(0, true);
    assert!(matches!(c.smart_log(), Err(Error::Timeout { .. })));
    model.hold_completions(0, false);
    assert!(model.is_running());

    drop(qp); // Delete SQ → Dead → emergency disable → RDY=0 → free.
    assert!(!model.is_running(), "the controller was disabled");
    assert_eq!(model.dma_regions_live(), admin_only);
    model.hold_completions(1, false);
    assert_clean_uaf(&model);
    drop(c);
    assert_eq!(model.dma_regions_live(), 0);
    assert_clean_uaf(&model);
}

#[test]
fn sync_timeout_keeps_the_buffer_until_the_command_completes() {
    // Report only: the command completes when the device completes it.
    let (model, c) = up_with(
        cfg(),
        ControllerOptions {
            timeout_policy: nvme_core::TimeoutPolicy::Report,
            ..opts()
        },
    );
    let ns = c.namespace(1).unwrap();
    let mut qp = c.create_io_queue_pair(8).unwrap();
    model.write_blocks(1, 40, &pattern(4096, 4));
    let b = c.alloc_buffer(ByteCount(4096)).unwrap();
    let bid = id(&b);
    let live = model.dma_regions_live();
    model.hold_completions(qp.qid(), true);
    let t = Instant::now();
    let IoError { error, buf } = qp.read(ns, Lba(40), b).unwrap_err();
    assert!(t.elapsed() >= IO_TIMEOUT);
    assert!(
        matches!(error, Error::IoTimeout { command: "Read", timeout, abort_requested: false }
            if timeout == IO_TIMEOUT),
        "{error:?}"
    );
    // An I/O timeout does not make the controller unusable.
    assert!(c.smart_log().is_ok());
    assert!(
        buf.is_none(),
        "the device may still write it: kept by the pair"
    );
    assert_eq!(qp.outstanding(), 1);
    assert_eq!(model.dma_regions_live(), live, "not freed");

    // Busy until it is reaped.
    let IoError { error, buf } = qp
        .read(ns, Lba(0), c.alloc_buffer(ByteCount(512)).unwrap())
        .unwrap_err();
    assert!(matches!(error, Error::Busy { outstanding: 1 }));
    assert!(buf.is_some());
    assert!(matches!(qp.flush(ns), Err(Error::Busy { .. })));

    model.hold_completions(qp.qid(), false);
    let done = reap(&mut qp, 1).pop().unwrap();
    assert_eq!(done.tag, SYNC_TAG);
    assert_eq!(done.status, Ok(()));
    let b = done.buf.expect("the buffer comes back in the completion");
    assert_eq!(id(&b), bid);
    assert_eq!(&b[..], &pattern(4096, 4)[..]);
    assert_eq!(qp.outstanding(), 0);
    qp.read(ns, Lba(40), b).unwrap();
    assert_clean(&model);
}

/// The controller hangs (admin commands never complete) and ignores CC.EN=0.
/// Nothing can prove it stopped, so the driver must leak rather than free
/// memory the device may still write — and when the held commands do run
/// later, they must not hit freed memory.
#[test]
fn hung_controller_that_ignores_disable_gets_its_memory_leaked_not_freed() {
    let (model, c) = up();
    let ns = c.namespace(1).unwrap();
    let mut qp = c.create_io_queue_pair(8).unwrap();
    let qid = qp.qid();
    model.write_blocks(1, 0, &pattern(4096, 2));
    model.hold_completions(qid, true);
    qp.submit_read(ns, Lba(0), c.alloc_buffer(ByteCount(4096)).unwrap(), 1)
        .unwrap();
    qp.submit_read(ns, Lba(0), c.alloc_buffer(ByteCount(65536)).unwrap(), 2)
        .unwrap();
    qp.submit_write(ns, Lba(100), filled(&c, 8192, 3), 3)
        .unwrap();
    let live = model.dma_regions_live();

    model.ignore_disable(true);
    model.hold_completions(0, true);
    let t = Instant::now();
    drop(qp); // Delete SQ times out; the disable is ignored.
    assert!(t.elapsed() >= ADMIN_TIMEOUT);
    assert!(model.is_running(), "the model ignored the disable");
    assert_eq!(
        model.dma_regions_live(),
        live,
        "rings, PRP pages and in-flight buffers must be leaked"
    );
    assert!(matches!(c.create_io_queue_pair(8), Err(Error::Dead)));

    // The controller finally runs the held I/O. The driver forbade its DMA
    // before the disable it could not confirm, so every access faults
    // (and had it got through, the memory is leaked, not freed).
    model.hold_completions(qid, false);
    assert_clean_uaf(&model);
    let faults = model.dma_fault_log();
    assert!(!faults.is_empty());
    assert!(
        faults
            .iter()
            .all(|f| f.kind == DmaFaultKind::BusMasterDisabled),
        "{faults:?}"
    );
    assert_ne!(model.read_blocks(1, 100, 16), pattern(8192, 3));
    // …and the held Delete SQ, into the admin queue.
    model.hold_completions(0, true);
    model.hold_completions(0, false);
    assert_clean_uaf(&model);

    // The last handle goes: the admin queue cannot be freed either.
    drop(c);
    assert!(model.is_running());
    assert_eq!(model.dma_regions_live(), live);
    assert_clean_uaf(&model);
}

#[test]
fn the_last_handle_or_pair_shuts_down_and_frees_everything() {
    let model = ModelController::new(ModelConfig {
        shutdown_delay_reads: 3,
        ..cfg()
    });
    let rec = Rec::new(model.clone());
    let c = Controller::init(rec.clone(), opts()).unwrap();
    let ns_id = 1;
    let mut qp = c.create_io_queue_pair(8).unwrap();
    let keep = c.namespace(ns_id).unwrap().clone();
    let mut b = c.alloc_buffer(ByteCount(4096)).unwrap();
    b.copy_from_slice(&pattern(4096, 0x77));
    rec.take();
    drop(c);
    // The pair keeps the controller alive and usable.
    assert!(model.is_running());
    assert!(
        cc_writes(&rec.take()).is_empty(),
        "no shutdown while a pair lives"
    );
    let b = qp.write(&keep, Lba(9), b).unwrap();
    let b = qp.read(&keep, Lba(9), b).unwrap();
    assert_eq!(&b[..], &pattern(4096, 0x77)[..]);
    drop(b);

    drop(qp);
    assert!(!model.is_running());
    assert_eq!(model.dma_regions_live(), 0);
    let log = rec.take();
    let writes = cc_writes(&log);
    assert_eq!(writes.len(), 2, "{writes:?}");
    let (shn_at, shn) = writes[0];
    assert!(shn.enable && shn.shn == ShutdownNotification::Normal);
    let (off_at, off) = writes[1];
    assert!(!off.enable);
    let last_shst = csts_reads(&log)
        .into_iter()
        .filter(|&(i, _)| i > shn_at && i < off_at)
        .map(|(_, s)| s.shutdown_status())
        .next_back();
    assert_eq!(last_shst, Some(ShutdownStatus::Complete));
    // RDY=0 confirmed after EN=0.
    assert!(csts_reads(&log)
        .iter()
        .any(|&(i, s)| i > off_at && !s.ready()));
    assert_clean(&model);
}

#[test]
fn shutdown_is_refused_while_in_use_and_works_after() {
    let (model, c) = up();
    let c2 = c.clone();
    let mut qp = c.create_io_queue_pair(8).unwrap();
    match c.shutdown() {
        Err(Error::InUse { others }) => assert_eq!(others, 2),
        other => panic!("expected InUse, got {other:?}"),
    }
    assert!(model.is_running());
    qp.flush(c2.namespace(1).unwrap()).unwrap();
    drop(qp);
    assert!(model.is_running(), "c2 still holds it");
    c2.shutdown().expect("shutdown");
    assert!(!model.is_running());
    assert_eq!(model.dma_regions_live(), 0);
    assert_clean(&model);
}

#[test]
fn shutdown_that_never_completes_still_disables_and_frees() {
    let (model, c) = up_with(
        ModelConfig {
            shutdown_delay_reads: u32::MAX,
            ..cfg()
        },
        opts(),
    );
    let t = Instant::now();
    match c.shutdown() {
        Err(Error::Timeout { command, timeout }) => {
            assert_eq!(command, "normal shutdown (CC.SHN)");
            assert_eq!(timeout, SHUTDOWN_TIMEOUT);
        }
        other => panic!("expected Timeout, got {other:?}"),
    }
    assert!(t.elapsed() >= SHUTDOWN_TIMEOUT);
    assert!(!model.is_running());
    assert_eq!(model.dma_regions_live(), 0);
}

#[test]
fn queue_pairs_move_to_other_threads() {
    let (model, c) = up();
    let pairs: Vec<Qp> = (0..4)
        .map(|_| c.create_io_queue_pair(16).unwrap())
        .collect();
    std::thread::scope(|s| {
        for (i, mut qp) in pairs.into_iter().enumerate() {
            let c = c.clone();
            s.spawn(move || {
                let ns = c.namespace(1).unwrap().clone();
                let mut b = c.alloc_buffer(ByteCount(4096)).unwrap();
                for n in 0..50u64 {
                    b.copy_from_slice(&pattern(4096, (i as u8) ^ n as u8));
                    b = qp.write(&ns, Lba((i as u64) * 10_000 + n * 8), b).unwrap();
                }
                drop(qp);
            });
        }
    });
    for i in 0..4u64 {
        for n in [0u64, 49] {
            assert_eq!(
                model.read_blocks(1, i * 10_000 + n * 8, 8),
                pattern(4096, (i as u8) ^ n as u8)
            );
        }
    }
    assert_eq!(model.io_queues(), (vec![], vec![]));
    assert_clean(&model);
}

// ----- reopen ----------------------------------------------------------------------

#[test]
fn reopen_on_the_same_model() {
    let model = ModelController::new(cfg());
    let old_buf;
    {
        let c = Controller::init(model.clone(), opts()).unwrap();
        let mut qp = c.create_io_queue_pair(8).unwrap();
        let ns = c.namespace(1).unwrap();
        old_buf = qp.write(ns, Lba(500), filled(&c, 8192, 21)).unwrap();
    }
    assert!(!model.is_running());
    assert_eq!(
        model.dma_regions_live(),
        1,
        "only the caller's buffer remains"
    );

    let c = Controller::init(model.clone(), opts()).unwrap();
    let ns = c.namespace(1).unwrap();
    let mut qp = c.create_io_queue_pair(8).unwrap();
    assert_eq!(qp.qid(), 1);
    let b = qp
        .read(ns, Lba(500), c.alloc_buffer(ByteCount(8192)).unwrap())
        .unwrap();
    assert_eq!(&b[..], &pattern(8192, 21)[..]);
    // A buffer of the previous instance belongs to another DMA domain.
    let r = qp.submit_write(ns, Lba(0), old_buf, 0).unwrap_err();
    assert!(matches!(r.error, Error::ForeignBuffer));
    drop(r);
    drop(b);
    drop(qp);
    drop(c);
    assert_eq!(model.dma_regions_live(), 0);
    assert_clean(&model);
}

// ----- optional commands (ONCS) ------------------------------------------------

#[test]
fn optional_commands_work_when_supported_and_are_refused_before_submission_when_not() {
    // Supported: Write Zeroes, Deallocate, Compare (match and mismatch), FUA.
    let (model, c) = up();
    let ns = c.namespace(1).unwrap().clone();
    let mut qp = c.create_io_queue_pair(8).unwrap();
    let b = qp.write(&ns, Lba(100), filled(&c, 4096, 9)).unwrap();
    qp.compare(&ns, Lba(100), b).unwrap();
    let mut bad = filled(&c, 4096, 9);
    bad[100] ^= 1;
    let e = qp.compare(&ns, Lba(100), bad).unwrap_err();
    assert_eq!(
        e.error.nvme_status().unwrap().name(),
        Some("Compare Failure")
    );
    assert!(e.buf.is_some(), "a failed compare hands the buffer back");
    qp.write_zeroes(&ns, Lba(100), 4).unwrap();
    assert!(model.read_blocks(1, 100, 4).iter().all(|&b| b == 0));
    assert_eq!(
        model.read_blocks(1, 104, 4),
        pattern(4096, 9)[2048..].to_vec()
    );
    qp.write_fua(&ns, Lba(200), filled(&c, 1024, 3)).unwrap();
    assert_eq!(model.read_blocks(1, 200, 2), pattern(1024, 3));
    qp.deallocate(&ns, &[(Lba(200), 2), (Lba(104), 4)]).unwrap();
    assert!(model.read_blocks(1, 104, 4).iter().all(|&b| b == 0));
    assert!(model.read_blocks(1, 200, 2).iter().all(|&b| b == 0));
    // Bad ranges are refused before anything is submitted.
    let before = model.stats();
    assert!(matches!(
        qp.deallocate(&ns, &[]),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        qp.deallocate(&ns, &[(Lba(ns.blocks()), 1)]),
        Err(Error::LbaOutOfRange { .. })
    ));
    assert!(matches!(
        qp.write_zeroes(&ns, Lba(0), 0),
        Err(Error::InvalidArgument(_))
    ));
    assert_eq!(
        model.stats().io(io_opcode::DATASET_MANAGEMENT),
        before.io(io_opcode::DATASET_MANAGEMENT)
    );
    assert_clean(&model);

    // Not supported (ONCS = 0): a typed error, and the controller never sees it.
    let (model, c) = up_with(ModelConfig { oncs: 0, ..cfg() }, opts());
    let ns = c.namespace(1).unwrap().clone();
    let mut qp = c.create_io_queue_pair(8).unwrap();
    let unsupported = |e: &Error| matches!(e, Error::Unsupported(m) if m.contains("ONCS"));
    assert!(unsupported(&qp.write_zeroes(&ns, Lba(0), 1).unwrap_err()));
    assert!(unsupported(
        &qp.deallocate(&ns, &[(Lba(0), 1)]).unwrap_err()
    ));
    let e = qp.compare(&ns, Lba(0), filled(&c, 512, 1)).unwrap_err();
    assert!(unsupported(&e.error) && e.buf.is_some(), "{e}");
    let r = qp
        .submit_compare(&ns, Lba(0), filled(&c, 512, 1), 5)
        .unwrap_err();
    assert!(unsupported(&r.error));
    for op in [
        io_opcode::WRITE_ZEROES,
        io_opcode::DATASET_MANAGEMENT,
        io_opcode::COMPARE,
    ] {
        assert_eq!(
            model.stats().io(op),
            0,
            "opcode {op:#x} reached the controller"
        );
    }
    assert_eq!(qp.outstanding(), 0);
    assert_clean(&model);
}

#[test]
fn batched_doorbells_publish_once_per_batch() {
    let (model, c) = up();
    let ns = c.namespace(1).unwrap().clone();
    let mut qp = c.create_io_queue_pair(16).unwrap();
    qp.set_doorbell_batching(true);
    let before = model.stats().sq_doorbells(qp.qid());
    for (i, b) in c
        .alloc_buffers(8, ByteCount(512))
        .unwrap()
        .into_iter()
        .enumerate()
    {
        qp.submit_read(&ns, Lba(i as u64), b, i as u64).unwrap();
    }
    assert_eq!(
        model.stats().sq_doorbells(qp.qid()),
        before,
        "nothing published before ring/poll"
    );
    assert_eq!(model.stats().io(io_opcode::READ), 0);
    let done = reap(&mut qp, 8);
    assert_eq!(done.len(), 8);
    assert_eq!(
        model.stats().sq_doorbells(qp.qid()),
        before + 1,
        "one doorbell for the batch"
    );
    assert_eq!(qp.stats().sq_doorbell.updates, 1);
    assert_clean(&model);
}

#[test]
fn vectored_io_with_prp_lists_when_the_controller_has_no_sgls() {
    let (model, c) = up();
    assert!(!c.identify().sgls.supported(), "the model offers no SGLs");
    let ns = c.namespace(1).unwrap().clone();
    let mut qp = c.create_io_queue_pair(8).unwrap();
    // Three buffers that meet on page boundaries: 1 page from an offset of
    // 3072 (ends on a boundary), 2 pages, then 512 bytes.
    let mut a = c.alloc_buffer(ByteCount(8192)).unwrap();
    a.set_window(3072, 1024).unwrap();
    let b = c.alloc_buffer(ByteCount(8192)).unwrap();
    let mut last = c.alloc_buffer(ByteCount(4096)).unwrap();
    last.set_window(0, 512).unwrap();
    let data = pattern(1024 + 8192 + 512, 4);
    let mut bufs = vec![a, b, last];
    let mut off = 0;
    for x in bufs.iter_mut() {
        let n = x.len();
        x.copy_from_slice(&data[off..off + n]);
        off += n;
    }
    qp.submit_writev(&ns, Lba(40), bufs, 1).unwrap();
    let done = reap(&mut qp, 1);
    assert!(done[0].status.is_ok(), "{:?}", done[0].status);
    let back = done
        .into_iter()
        .next()
        .unwrap()
        .bufs
        .expect("the buffers come back");
    assert_eq!(back.len(), 3);
    assert_eq!(model.read_blocks(1, 40, data.len() as u64 / 512), data);
    // Read it back vectored, into the same buffers.
    let mut back = back;
    for x in back.iter_mut() {
        x.fill(0);
    }
    qp.submit_readv(&ns, Lba(40), back, 2).unwrap();
    let done = reap(&mut qp, 1);
    let back = done.into_iter().next().unwrap().bufs.unwrap();
    let joined: Vec<u8> = back.iter().flat_map(|x| x.iter().copied()).collect();
    assert_eq!(joined, data);
    // Not meeting on a page boundary: refused before submission, buffers back.
    let mut odd = c.alloc_buffer(ByteCount(4096)).unwrap();
    odd.set_window(0, 1024).unwrap();
    let before = model.stats().io(io_opcode::WRITE);
    let r = qp
        .submit_writev(
            &ns,
            Lba(0),
            vec![odd, c.alloc_buffer(ByteCount(512)).unwrap()],
            3,
        )
        .unwrap_err();
    assert!(
        matches!(r.error, Error::Unsupported(ref m) if m.contains("SGL")),
        "{}",
        r.error
    );
    assert_eq!(r.buf.len(), 2);
    assert_eq!(model.stats().io(io_opcode::WRITE), before);
    assert!(matches!(
        qp.submit_readv(&ns, Lba(0), Vec::new(), 4)
            .unwrap_err()
            .error,
        Error::InvalidArgument(_)
    ));
    assert_clean(&model);
}

#[test]
fn raw_submission_with_caller_managed_dma_memory() {
    let (model, c) = up();
    let ns = c.namespace(1).unwrap().clone();
    let mut qp = c.create_io_queue_pair(8).unwrap();
    // Memory the engine manages itself: a region straight from the platform.
    let src = c.alloc_dma(8192).unwrap();
    let dst = c.alloc_dma(8192).unwrap();
    let data = pattern(6144, 8);
    // SAFETY: `src` is 8192 bytes, valid for writes; no command uses it yet.
    unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), src.as_ptr().add(1024), data.len()) };
    // SAFETY: both regions come from this controller's hardware, stay alive
    // and untouched until their completions are reaped below.
    unsafe {
        qp.submit_write_raw(&ns, Lba(64), src.iova().add(1024), ByteCount(6144), 7)
            .unwrap();
    }
    let done = reap(&mut qp, 1);
    assert_eq!(
        (done[0].tag, done[0].status, done[0].buf.is_none()),
        (7, Ok(()), true)
    );
    assert_eq!(model.read_blocks(1, 64, 12), data);
    // SAFETY: as above.
    unsafe {
        qp.submit_read_raw(&ns, Lba(64), dst.iova(), ByteCount(6144), 8)
            .unwrap();
    }
    let done = reap(&mut qp, 1);
    assert_eq!(done[0].status, Ok(()));
    let mut back = vec![0u8; 6144];
    // SAFETY: the read completed; `dst` is 8192 bytes.
    unsafe { std::ptr::copy_nonoverlapping(dst.as_ptr(), back.as_mut_ptr(), back.len()) };
    assert_eq!(back, data);
    // Checks still apply: misaligned, partial block, past the end, over MDTS.
    // SAFETY: none of these reaches the controller (each is refused).
    unsafe {
        assert!(matches!(
            qp.submit_read_raw(&ns, Lba(0), dst.iova().add(2), ByteCount(512), 1),
            Err(Error::MisalignedBuffer { .. })
        ));
        assert!(matches!(
            qp.submit_read_raw(&ns, Lba(0), dst.iova(), ByteCount(100), 1),
            Err(Error::UnalignedLength { .. })
        ));
        assert!(matches!(
            qp.submit_read_raw(&ns, Lba(ns.blocks()), dst.iova(), ByteCount(512), 1),
            Err(Error::LbaOutOfRange { .. })
        ));
        let over = c.max_transfer_bytes() + 512;
        assert!(matches!(
            qp.submit_read_raw(&ns, Lba(0), dst.iova(), ByteCount(over), 1),
            Err(Error::InvalidArgument(_))
        ));
    }
    assert_eq!(qp.outstanding(), 0);
    drop(qp);
    drop((src, dst));
    assert_clean(&model);
}

#[test]
fn a_namespace_from_another_controller_is_refused_before_submission() {
    // Controller A's namespace 1 has 4096-byte blocks; B's has 512. With
    // A's geometry on B, a 4 KiB buffer would be 1 block to the driver and
    // 8 blocks' worth of DMA to B's namespace 2... so it must be refused.
    let (_ma, a) = up_with(
        ModelConfig {
            namespaces: vec![NamespaceConfig::new(1 << 12, 4096)],
            ..cfg()
        },
        opts(),
    );
    let (mb, b) = up();
    let foreign = a.namespace(1).unwrap().clone();
    let mut qp = b.create_io_queue_pair(8).unwrap();
    let before = mb.stats();
    let r = qp
        .submit_write(
            &foreign,
            Lba(0),
            b.alloc_buffer(ByteCount(4096)).unwrap(),
            1,
        )
        .unwrap_err();
    assert!(
        matches!(r.error, Error::InvalidArgument(ref m) if m.contains("different controller")),
        "{}",
        r.error
    );
    assert!(matches!(qp.flush(&foreign), Err(Error::InvalidArgument(_))));
    assert!(matches!(
        qp.write_zeroes(&foreign, Lba(0), 1),
        Err(Error::InvalidArgument(_))
    ));
    // SAFETY: refused before anything is submitted.
    let raw = unsafe { qp.submit_read_raw(&foreign, Lba(0), Iova(0x1000), ByteCount(4096), 2) };
    assert!(matches!(raw, Err(Error::InvalidArgument(_))));
    assert_eq!(mb.stats().io(io_opcode::WRITE), before.io(io_opcode::WRITE));
    assert_eq!(mb.stats().io(io_opcode::FLUSH), before.io(io_opcode::FLUSH));
    assert_eq!(qp.outstanding(), 0);
    // Its own namespace works.
    let own = b.namespace(1).unwrap().clone();
    qp.write(&own, Lba(0), b.alloc_buffer(ByteCount(4096)).unwrap())
        .unwrap();
    assert_clean(&mb);
}

#[test]
fn cq_head_doorbells_are_deferred_but_the_cq_never_fills() {
    for shadow in [false, true] {
        let model = ModelController::new(ModelConfig::default());
        let opts = ControllerOptions {
            shadow_doorbells: shadow,
            ..ControllerOptions::default()
        };
        let c = Controller::init(model.clone(), opts).unwrap();
        let ns = c.namespace(1).unwrap().clone();
        let entries = 16u16;
        let mut qp = c.create_io_queue_pair(u32::from(entries)).unwrap();
        let depth = usize::from(entries) - 1; // the most a pair allows
        let mut bufs = c.alloc_buffers(depth, ByteCount(4096)).unwrap();
        let total = 1000u64;
        let (mut submitted, mut completed) = (0u64, 0u64);
        while completed < total {
            while submitted < total {
                let Some(b) = bufs.pop() else { break };
                qp.submit_read(&ns, Lba(submitted % 64 * 8), b, submitted)
                    .unwrap();
                submitted += 1;
            }
            // Reap a few at a time, like a busy caller.
            qp.poll(3, |c| {
                assert_eq!(c.status, Ok(()));
                bufs.push(c.buf.unwrap());
                completed += 1;
            });
        }
        let st = model.stats();
        assert_eq!(st.cq_full_stalls, 0, "the controller always had room");
        let mmio = qp.stats().cq_doorbell.mmio_writes;
        let updates = qp.stats().cq_doorbell.updates;
        // CQ of 32 entries, 16 of slack: one head update per >= 16 entries.
        assert!(
            updates <= total / 16 && updates >= total / 32,
            "shadow={shadow}: {updates} CQ head updates for {total} completions"
        );
        assert!(mmio <= updates);
        if !shadow {
            assert_eq!(st.cq_doorbells(qp.qid()), mmio);
        }
        assert_eq!(qp.outstanding(), 0);
        assert_clean(&model);
    }
}

#[test]
fn without_room_for_a_larger_cq_every_poll_acknowledges() {
    // MQES + 1 = 16: the CQ cannot be larger than the SQ, so no slack.
    let model = ModelController::new(ModelConfig {
        mqes: 15,
        ..ModelConfig::default()
    });
    let c = Controller::init(model.clone(), ControllerOptions::default()).unwrap();
    let ns = c.namespace(1).unwrap().clone();
    let mut qp = c.create_io_queue_pair(16).unwrap();
    let mut polls = 0;
    for i in 0..40u64 {
        let b = c.alloc_buffer(ByteCount(4096)).unwrap();
        qp.submit_read(&ns, Lba(i * 8), b, i).unwrap();
        while qp.poll(1, drop) == 0 {}
        polls += 1;
    }
    assert_eq!(qp.stats().cq_doorbell.updates, polls);
    assert_eq!(model.stats().cq_full_stalls, 0);
    assert_clean(&model);
}

// ----- shadow doorbells on a reused queue id ----------------------------------

/// A controller with Doorbell Buffer Config, MDTS = 8 KiB (so 16 KiB
/// requests split in two commands).
fn dbbuf_up() -> (ModelController, Ctrl) {
    let (model, c) = up_with(
        ModelConfig {
            oacs: nvme_model::OACS_DBBUF,
            mdts: 1,
            ..cfg()
        },
        opts(),
    );
    assert!(c.shadow_doorbells(), "the model offers shadow doorbells");
    (model, c)
}

/// Verified synchronous writes and reads (whole and split) on `qp`.
fn verified_rounds(c: &Ctrl, qp: &mut Qp, ns: &nvme_core::Namespace, ops: u64, seed: u8) {
    for i in 0..ops {
        let len = if i % 2 == 0 { 4096 } else { 16384 };
        let lba = Lba(i * 64);
        let w = filled(c, len, seed.wrapping_add(i as u8));
        let w = qp.write(ns, lba, w).map_err(|e| e.error).expect("write");
        let r = qp
            .read(ns, lba, c.alloc_buffer(ByteCount(len)).unwrap())
            .map_err(|e| e.error)
            .expect("read");
        assert_eq!(&r[..], &w[..], "op {i}: read back what was written");
    }
}

#[test]
fn a_reused_queue_id_gets_fresh_shadow_doorbell_slots() {
    // The sequence: a pair of 4 entries does five writes (its SQ
    // tail and the controller's EventIdx end at 5 mod 4 = 1, after a wrap),
    // is dropped, and a pair of 16 entries gets the same queue id. Its
    // first write moves the tail 0 -> 1: with the old queue's EventIdx
    // still in the slot the EventIdx rule says "no MMIO needed" and the
    // controller never looks. Then several more rounds of other sizes.
    let (model, c) = dbbuf_up();
    let ns = c.namespace(1).unwrap().clone();
    let mut qp = c.create_io_queue_pair(4).unwrap();
    let qid = qp.qid();
    for i in 0..5u64 {
        let b = filled(&c, 4096, i as u8);
        qp.write(&ns, Lba(i * 8), b).map_err(|e| e.error).unwrap();
    }
    assert!(
        model.stats().shadow_reads > 0,
        "the shadow slots are in use"
    );
    drop(qp);
    for (round, entries) in [16u32, 4, 64, 8, 3].into_iter().enumerate() {
        let mut qp = c.create_io_queue_pair(entries).unwrap();
        assert_eq!(qp.qid(), qid, "round {round}: the id is reused");
        verified_rounds(&c, &mut qp, &ns, 6, round as u8 * 16);
        assert_eq!(qp.outstanding(), 0, "round {round}");
    }
    assert_clean(&model);
}

#[test]
fn a_pair_recreated_while_another_is_busy_works() {
    let (model, c) = dbbuf_up();
    let ns = c.namespace(1).unwrap().clone();
    let mut busy = c.create_io_queue_pair(32).unwrap();
    // Commands in flight on `busy`, held by the controller.
    model.hold_completions(busy.qid(), true);
    for i in 0..8u64 {
        let b = filled(&c, 4096, i as u8);
        busy.submit_write(&ns, Lba(4096 + i * 8), b, i).unwrap();
    }
    for entries in [8u32, 16, 4] {
        let mut qp = c.create_io_queue_pair(entries).unwrap();
        verified_rounds(&c, &mut qp, &ns, 5, entries as u8);
        drop(qp);
    }
    model.hold_completions(busy.qid(), false);
    let done = reap(&mut busy, 8);
    assert!(done.iter().all(|d| d.status.is_ok()));
    assert_clean(&model);
}

// ----- queue pair: refusals, misbehaving devices, thread properties --------------

/// A namespace formatted with metadata is refused on the data path
/// (before anything reaches the device), with the buffer handed back.
#[test]
fn namespaces_with_metadata_are_refused_with_the_buffer() {
    let model = ModelController::new(ModelConfig {
        namespaces: vec![NamespaceConfig::default().with_metadata(8)],
        ..ModelConfig::default()
    });
    let c = Controller::init(model.clone(), ControllerOptions::default()).unwrap();
    let ns = c.namespace(1).unwrap().clone();
    // The driver took the format from Identify Namespace.
    assert_eq!((ns.block_size(), ns.metadata_size()), (512, 8));
    let mut qp = c.create_io_queue_pair(8).unwrap();
    let buf = c.alloc_buffer(ByteCount(4096)).unwrap();
    let r = qp.submit_read(&ns, Lba(0), buf, 1).unwrap_err();
    assert!(
        matches!(&r.error, Error::Unsupported(m) if m.contains("metadata")),
        "{}",
        r.error
    );
    assert_eq!(r.buf.len(), 4096);
    assert_eq!(qp.outstanding(), 0);
    assert_eq!(qp.stats().commands, 0);
    assert_eq!(
        model.stats().io(io_opcode::READ),
        0,
        "nothing reached the device"
    );
}

/// A device that completes the head piece of a split request twice
/// must not get the buffer released before the other pieces are done,
/// nor break the bookkeeping.
#[test]
fn repeated_completions_do_not_release_a_split_request_early() {
    let model = ModelController::new(ModelConfig {
        mdts: 1, // 8 KiB per command
        ..ModelConfig::default()
    });
    let c = Controller::init(model.clone(), ControllerOptions::default()).unwrap();
    let ns = c.namespace(1).unwrap().clone();
    let mut qp = c.create_io_queue_pair(16).unwrap();
    let qid = qp.qid();
    // Hold the model's completions: the test decides what the device posts.
    model.hold_completions(qid, true);
    qp.submit_read(
        &ns,
        Lba(0),
        c.alloc_buffer(ByteCount(3 * 8192)).unwrap(),
        42,
    )
    .unwrap();
    // Three pieces of 16 blocks; the driver's group head is the first.
    let pieces = model.held_command_list(qid);
    assert_eq!(
        pieces
            .iter()
            .map(|p| (p.opcode, p.slba))
            .collect::<Vec<_>>(),
        [
            (io_opcode::READ, 0),
            (io_opcode::READ, 16),
            (io_opcode::READ, 32)
        ]
    );
    let head = pieces[0].cid;
    let children = [pieces[1].cid, pieces[2].cid];
    let mut out = Vec::new();
    // The device posted one completion entry (`posted`); the driver reaps
    // it. True if that finished a request.
    let mut deliver = |qp: &mut Qp, posted: bool| {
        assert!(posted, "the model posted the entry");
        let before = out.len();
        assert_eq!(qp.poll(usize::MAX, |c| out.push(c)), 1, "one entry reaped");
        out.len() > before
    };
    // Head twice, then the first child: still one piece outstanding.
    assert!(!deliver(&mut qp, model.complete_held(qid, head)));
    assert!(
        !deliver(&mut qp, model.post_completion(qid, head, Status::SUCCESS)),
        "repeated head completion ignored"
    );
    assert!(
        !deliver(&mut qp, model.complete_held(qid, children[0])),
        "buffer must not come back early"
    );
    // A repeat of the finished child is ignored too.
    assert!(!deliver(
        &mut qp,
        model.post_completion(qid, children[0], Status::SUCCESS)
    ));
    assert!(
        deliver(&mut qp, model.complete_held(qid, children[1])),
        "the last piece completes the request"
    );
    // Afterwards nothing is in flight; more repeats are ignored.
    assert!(!deliver(
        &mut qp,
        model.post_completion(qid, head, Status::SUCCESS)
    ));
    assert_eq!(qp.outstanding(), 0);
    assert_eq!(out.len(), 1);
    let done = &out[0];
    assert_eq!(
        (done.tag, done.status, done.buf.is_some()),
        (42, Ok(()), true)
    );
    assert_eq!(model.held_commands(qid), 0);
    model.hold_completions(qid, false);
    assert_eq!(model.stats().injected_completions, 3);
    assert_clean(&model);
}

/// A queue pair moves to the thread that uses it (`Send`) but is never
/// shared between threads (`!Sync`), and a buffer moves with its command:
/// the compiler derives all of it (no `unsafe impl`).
#[test]
fn a_queue_pair_is_send_and_not_sync() {
    fn send<T: Send>() {}
    send::<IoQueuePair<ModelController>>();
    send::<DmaBuf<ModelDma>>();
    // Resolves only if exactly one impl applies: with `Sync` both would.
    trait AmbiguousIfSync<A> {
        fn check() {}
    }
    impl<T: ?Sized> AmbiguousIfSync<()> for T {}
    impl<T: ?Sized + Sync> AmbiguousIfSync<u8> for T {}
    <IoQueuePair<ModelController> as AmbiguousIfSync<_>>::check();
}
