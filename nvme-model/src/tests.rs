//! Tests of the model itself, driven only through the `Hardware` trait, the
//! way the driver drives it.

use nvme_core::cmd::{
    admin_opcode, cns, feature, io_opcode, log_page, CompletionEntry, SubmissionEntry,
};
use nvme_core::identify::{
    ErrorLogEntry, IdentifyController, IdentifyNamespace, SmartLog, IDENTIFY_SIZE,
};
use nvme_core::regs::{offset, Aqa, Cap, Cc, Csts, ShutdownNotification, ShutdownStatus};
use nvme_core::{DmaRegion, Doorbell, Hardware, Iova};
use nvme_core::{NvmeStatus, StatusCodeType};

use super::*;

// ----- raw DMA access helpers (the only unsafe in the tests) ---------------

fn write_bytes(r: &ModelDma, off: usize, data: &[u8]) {
    assert!(off + data.len() <= r.len());
    // SAFETY: the range is inside the region (checked above), which is live
    // for the duration of the borrow; no reference into it exists.
    unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), r.as_ptr().add(off), data.len()) };
}

fn read_bytes(r: &ModelDma, off: usize, len: usize) -> Vec<u8> {
    assert!(off + len <= r.len());
    let mut v = vec![0u8; len];
    // SAFETY: as in `write_bytes`.
    unsafe { std::ptr::copy_nonoverlapping(r.as_ptr().add(off), v.as_mut_ptr(), len) };
    v
}

fn sqe_bytes(e: &SubmissionEntry) -> [u8; 64] {
    let mut b = [0u8; 64];
    let dw = [e.cdw0, e.nsid, e.cdw2, e.cdw3];
    for (i, d) in dw.iter().enumerate() {
        b[4 * i..4 * i + 4].copy_from_slice(&d.to_le_bytes());
    }
    b[16..24].copy_from_slice(&e.mptr.to_le_bytes());
    b[24..32].copy_from_slice(&e.prp1.to_le_bytes());
    b[32..40].copy_from_slice(&e.prp2.to_le_bytes());
    let dw = [e.cdw10, e.cdw11, e.cdw12, e.cdw13, e.cdw14, e.cdw15];
    for (i, d) in dw.iter().enumerate() {
        b[40 + 4 * i..44 + 4 * i].copy_from_slice(&d.to_le_bytes());
    }
    b
}

fn cqe_at(r: &ModelDma, idx: usize) -> CompletionEntry {
    let b = read_bytes(r, idx * 16, 16);
    let d = |i: usize| u32::from_le_bytes(b[4 * i..4 * i + 4].try_into().unwrap());
    CompletionEntry {
        result: d(0),
        dw1: d(1),
        sq_head: d(2) as u16,
        sq_id: (d(2) >> 16) as u16,
        cid: d(3) as u16,
        status: (d(3) >> 16) as u16,
    }
}

fn status_of(c: &CompletionEntry) -> Option<(u8, u8)> {
    c.status().err().map(|s| (s.sct.raw(), s.sc))
}

fn code(s: Status) -> Option<(u8, u8)> {
    Some((s.sct, s.sc))
}

// ----- a minimal host side --------------------------------------------------

/// One SQ/CQ pair as a driver would run it.
struct Queue {
    qid: u16,
    size: u16,
    sq: ModelDma,
    cq: ModelDma,
    sq_db: ModelDoorbell,
    cq_db: ModelDoorbell,
    tail: u16,
    head: u16,
    phase: bool,
    next_cid: u16,
}

impl Queue {
    fn new(hw: &ModelController, qid: u16, size: u16) -> Queue {
        let cap = Cap(hw.read64(offset::CAP));
        Queue {
            qid,
            size,
            sq: hw.alloc_dma(size as usize * 64).unwrap(),
            cq: hw.alloc_dma(size as usize * 16).unwrap(),
            sq_db: hw.doorbell(cap.sq_tail_doorbell(qid)).unwrap(),
            cq_db: hw.doorbell(cap.cq_head_doorbell(qid)).unwrap(),
            tail: 0,
            head: 0,
            phase: true,
            next_cid: 0,
        }
    }

    /// Write an entry without ringing; returns its CID.
    fn push(&mut self, mut e: SubmissionEntry) -> u16 {
        let cid = self.next_cid;
        self.next_cid = self.next_cid.wrapping_add(1);
        e.set_cid(cid);
        write_bytes(&self.sq, self.tail as usize * 64, &sqe_bytes(&e));
        self.tail = (self.tail + 1) % self.size;
        cid
    }

    fn ring_sq(&mut self) {
        self.sq_db.ring(u32::from(self.tail));
    }

    fn submit(&mut self, e: SubmissionEntry) -> u16 {
        let cid = self.push(e);
        self.ring_sq();
        cid
    }

    /// Next completion if its phase tag says it is new (head not rung).
    fn poll(&mut self) -> Option<CompletionEntry> {
        let c = cqe_at(&self.cq, self.head as usize);
        if c.phase() != self.phase {
            return None;
        }
        self.head += 1;
        if self.head == self.size {
            self.head = 0;
            self.phase = !self.phase;
        }
        Some(c)
    }

    fn ring_cq(&mut self) {
        self.cq_db.ring(u32::from(self.head));
    }

    /// Submit, expect exactly one completion, release the CQ slot.
    fn exec(&mut self, e: SubmissionEntry) -> CompletionEntry {
        let cid = self.submit(e);
        let c = self.poll().expect("command completed synchronously");
        assert_eq!(c.cid, cid);
        assert_eq!(c.sq_id, self.qid);
        self.ring_cq();
        c
    }
}

const ADMIN_ENTRIES: u16 = 32;

fn cc_enabled() -> Cc {
    Cc {
        enable: true,
        ..Cc::DRIVER
    }
}

/// Program the admin queue and enable; returns the admin queue.
fn enable_with(hw: &ModelController, cc: Cc) -> Queue {
    let q = Queue::new(hw, 0, ADMIN_ENTRIES);
    hw.write32(
        offset::AQA,
        Aqa {
            sq_entries: ADMIN_ENTRIES,
            cq_entries: ADMIN_ENTRIES,
        }
        .to_bits(),
    );
    hw.write64(offset::ASQ, q.sq.iova().0);
    hw.write64(offset::ACQ, q.cq.iova().0);
    hw.write32(offset::CC, cc.to_bits());
    q
}

fn bring_up(cfg: ModelConfig) -> (ModelController, Queue) {
    let hw = ModelController::new(cfg);
    let admin = enable_with(&hw, cc_enabled());
    assert!(Csts(hw.read32(offset::CSTS)).ready());
    (hw, admin)
}

/// Create I/O CQ and SQ `qid` with `size` entries.
fn create_io_queue(hw: &ModelController, admin: &mut Queue, qid: u16, size: u16) -> Queue {
    let q = Queue::new(hw, qid, size);
    let c = admin.exec(SubmissionEntry::create_io_cq(qid, size, q.cq.iova()));
    assert_eq!(c.status(), Ok(()), "create CQ");
    let c = admin.exec(SubmissionEntry::create_io_sq(qid, size, q.sq.iova(), qid));
    assert_eq!(c.status(), Ok(()), "create SQ");
    q
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 9) as u8)
        .collect()
}

// ----- bring-up ---------------------------------------------------------------

#[test]
fn bring_up_ready_disable_and_shutdown() {
    let hw = ModelController::new(ModelConfig::default());
    let cap = Cap(hw.read64(offset::CAP));
    assert_eq!(cap.mqes(), 2047);
    assert!(cap.contiguous_queues_required());
    assert!(cap.supports_nvm_command_set());
    assert_eq!(hw.read32(offset::VS), 0x0001_0400);
    assert_eq!(
        (hw.read32(offset::CMBLOC), hw.read32(offset::CMBSZ)),
        (0, 0)
    );
    assert!(!Csts(hw.read32(offset::CSTS)).ready());

    let _admin = enable_with(&hw, cc_enabled());
    assert!(Csts(hw.read32(offset::CSTS)).ready());
    assert!(hw.is_running());

    // Normal shutdown completes at once.
    let cc = Cc {
        shn: ShutdownNotification::Normal,
        ..cc_enabled()
    };
    hw.write32(offset::CC, cc.to_bits());
    assert_eq!(
        Csts(hw.read32(offset::CSTS)).shutdown_status(),
        ShutdownStatus::Complete
    );

    // Disable: RDY and SHST clear, queues are gone.
    hw.write32(offset::CC, 0);
    let csts = Csts(hw.read32(offset::CSTS));
    assert!(!csts.ready() && !csts.fatal());
    assert_eq!(csts.shutdown_status(), ShutdownStatus::Normal);
    assert!(!hw.is_running());
    assert!(hw.stats().register_reads >= 5);
}

#[test]
fn ready_and_shutdown_can_take_several_csts_reads() {
    let cfg = ModelConfig {
        ready_delay_reads: 3,
        shutdown_delay_reads: 2,
        ..ModelConfig::default()
    };
    let hw = ModelController::new(cfg);
    let _admin = enable_with(&hw, cc_enabled());
    let reads: Vec<bool> = (0..5)
        .map(|_| Csts(hw.read32(offset::CSTS)).ready())
        .collect();
    assert_eq!(reads, [false, false, false, true, true]);
    let cc = Cc {
        shn: ShutdownNotification::Normal,
        ..cc_enabled()
    };
    hw.write32(offset::CC, cc.to_bits());
    let sh: Vec<ShutdownStatus> = (0..3)
        .map(|_| Csts(hw.read32(offset::CSTS)).shutdown_status())
        .collect();
    assert_eq!(
        sh,
        [
            ShutdownStatus::Occurring,
            ShutdownStatus::Occurring,
            ShutdownStatus::Complete
        ]
    );
}

#[test]
fn enable_with_bad_cc_sets_fatal_and_never_ready() {
    let hw = ModelController::default();
    let _admin = enable_with(
        &hw,
        Cc {
            iosqes: 7,
            ..cc_enabled()
        },
    );
    let csts = Csts(hw.read32(offset::CSTS));
    assert!(csts.fatal() && !csts.ready());
    assert!(hw.enable_error().unwrap().contains("IOSQES"));
    // Reset and retry with MPS beyond MPSMAX.
    hw.write32(offset::CC, 0);
    assert!(!Csts(hw.read32(offset::CSTS)).fatal());
    hw.write32(
        offset::CC,
        Cc {
            mps: 5,
            ..cc_enabled()
        }
        .to_bits(),
    );
    assert!(Csts(hw.read32(offset::CSTS)).fatal());
    assert!(hw.enable_error().unwrap().contains("MPS"));
}

// ----- admin commands -----------------------------------------------------------

#[test]
fn identify_structures_are_byte_exact() {
    let cfg = ModelConfig {
        namespaces: vec![
            NamespaceConfig::new(1 << 20, 512),
            NamespaceConfig::new(4096, 4096),
        ],
        serial: "SER123".into(),
        mdts: 5,
        ..ModelConfig::default()
    };
    let (hw, mut admin) = bring_up(cfg);
    let buf = hw.alloc_dma(IDENTIFY_SIZE).unwrap();

    let c = admin.exec(SubmissionEntry::identify(cns::CONTROLLER, 0, buf.iova()));
    assert_eq!(c.status(), Ok(()));
    let raw: [u8; IDENTIFY_SIZE] = read_bytes(&buf, 0, IDENTIFY_SIZE).try_into().unwrap();
    assert_eq!(&raw[0..2], &0x1b36u16.to_le_bytes());
    assert_eq!(&raw[4..24], b"SER123              ");
    assert_eq!((raw[512], raw[513]), (0x66, 0x44));
    let id = IdentifyController::parse(&raw);
    assert_eq!(id.vid, MODEL_VID);
    assert_eq!(id.serial, "SER123");
    assert_eq!(id.model, "nvme-core model controller");
    assert_eq!(id.firmware, "1.0");
    assert_eq!(id.mdts, 5);
    assert_eq!(id.ver, 0x0001_0400);
    assert_eq!(id.nn, 2);
    assert!(id.oncs.compare() && id.oncs.dataset_management() && id.oncs.write_zeroes());
    assert!(!id.oncs.reservations());
    assert!(id.has_volatile_write_cache());
    assert!(!id.sgls.supported());
    assert_eq!(id.elpe, 63);
    assert_eq!(id.subnqn, "nqn.2019-08.org.qemu:SER123");

    for (nsid, nsze, bs) in [(1u32, 1u64 << 20, 4096u64 / 8), (2, 4096, 4096)] {
        let c = admin.exec(SubmissionEntry::identify(cns::NAMESPACE, nsid, buf.iova()));
        assert_eq!(c.status(), Ok(()));
        let raw: [u8; IDENTIFY_SIZE] = read_bytes(&buf, 0, IDENTIFY_SIZE).try_into().unwrap();
        let ns = IdentifyNamespace::parse(&raw);
        assert_eq!((ns.nsze, ns.ncap, ns.nuse), (nsze, nsze, nsze));
        assert_eq!(ns.lba_formats.len(), 2);
        assert_eq!(ns.current_format().unwrap().block_size(), bs);
        assert_eq!(ns.dlfeat & 7, 1);
    }

    let c = admin.exec(SubmissionEntry::identify(cns::NAMESPACE, 3, buf.iova()));
    assert_eq!(status_of(&c), code(Status::INVALID_NAMESPACE));

    let c = admin.exec(SubmissionEntry::identify(
        cns::ACTIVE_NAMESPACES,
        0,
        buf.iova(),
    ));
    assert_eq!(c.status(), Ok(()));
    let list = read_bytes(&buf, 0, 12);
    assert_eq!(list, [1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0]);
    let c = admin.exec(SubmissionEntry::identify(
        cns::ACTIVE_NAMESPACES,
        1,
        buf.iova(),
    ));
    assert_eq!(c.status(), Ok(()));
    assert_eq!(read_bytes(&buf, 0, 8), [2, 0, 0, 0, 0, 0, 0, 0]);

    let c = admin.exec(SubmissionEntry::identify(0x10, 0, buf.iova()));
    assert_eq!(status_of(&c), code(Status::INVALID_FIELD));
    let c = admin.exec(SubmissionEntry::new(0xc0, 0));
    assert_eq!(status_of(&c), code(Status::INVALID_OPCODE));
    assert_eq!(hw.stats().admin(admin_opcode::IDENTIFY), 7);
}

#[test]
fn a_namespace_with_metadata_reports_it_in_its_current_lba_format() {
    let cfg = ModelConfig {
        namespaces: vec![
            NamespaceConfig::new(1 << 20, 512).with_metadata(8),
            NamespaceConfig::new(4096, 4096).with_metadata(64),
        ],
        ..ModelConfig::default()
    };
    let (hw, mut admin) = bring_up(cfg);
    let buf = hw.alloc_dma(IDENTIFY_SIZE).unwrap();
    for (nsid, lbads, ms) in [(1u32, 9u8, 8u16), (2, 12, 64)] {
        let c = admin.exec(SubmissionEntry::identify(cns::NAMESPACE, nsid, buf.iova()));
        assert_eq!(c.status(), Ok(()));
        let raw: [u8; IDENTIFY_SIZE] = read_bytes(&buf, 0, IDENTIFY_SIZE).try_into().unwrap();
        assert_eq!(
            (raw[25], raw[26], raw[27]),
            (2, 2, 0b10),
            "NLBAF, FLBAS, MC"
        );
        assert_eq!(
            &raw[136..140],
            &((u32::from(lbads) << 16) | u32::from(ms)).to_le_bytes()
        );
        let ns = IdentifyNamespace::parse(&raw);
        assert_eq!(ns.lba_formats.len(), 3);
        let f = ns.current_format().unwrap();
        assert_eq!((f.lbads, f.metadata_size), (lbads, ms));
        // The two formats without metadata are still listed.
        assert_eq!(ns.lba_formats[0].metadata_size, 0);
        assert_eq!(ns.lba_formats[1].metadata_size, 0);
    }
}

#[test]
fn identify_into_unmapped_memory_is_a_data_transfer_error() {
    let (hw, mut admin) = bring_up(ModelConfig::default());
    let c = admin.exec(SubmissionEntry::identify(cns::CONTROLLER, 0, Iova(0x1000)));
    assert_eq!(status_of(&c), code(Status::DATA_TRANSFER_ERROR));
    let st = hw.stats();
    assert_eq!((st.dma_errors, st.dma_use_after_free), (1, 0));
    assert_eq!(hw.dma_fault_log()[0].kind, DmaFaultKind::Unmapped);
}

#[test]
fn features_and_queue_creation_checks() {
    let cfg = ModelConfig {
        max_io_queue_pairs: 4,
        mqes: 255,
        ..ModelConfig::default()
    };
    let (hw, mut admin) = bring_up(cfg);
    // Number of Queues: min(requested, 4), 0-based.
    let c = admin.exec(SubmissionEntry::set_number_of_queues(8, 2));
    assert_eq!(c.status(), Ok(()));
    assert_eq!(c.result, 3 | (1 << 16));
    assert_eq!(hw.granted_queues(), Some((4, 2)));
    let c = admin.exec(SubmissionEntry::get_features(feature::NUMBER_OF_QUEUES, 0));
    assert_eq!(c.result, 3 | (1 << 16));
    // VWC on/off.
    let c = admin.exec(SubmissionEntry::set_features(
        feature::VOLATILE_WRITE_CACHE,
        0,
    ));
    assert_eq!(c.status(), Ok(()));
    assert!(!hw.write_cache_enabled());
    let c = admin.exec(SubmissionEntry::get_features(
        feature::VOLATILE_WRITE_CACHE,
        0,
    ));
    assert_eq!(c.result, 0);
    let c = admin.exec(SubmissionEntry::set_features(feature::ARBITRATION, 0));
    assert_eq!(status_of(&c), code(Status::INVALID_FIELD));

    let mem = hw.alloc_dma(256 * 64).unwrap();
    // SQ before its CQ.
    let c = admin.exec(SubmissionEntry::create_io_sq(1, 16, mem.iova(), 1));
    assert_eq!(status_of(&c), code(Status::CQ_INVALID));
    // CQ id beyond the two granted CQs.
    let c = admin.exec(SubmissionEntry::create_io_cq(3, 16, mem.iova()));
    assert_eq!(status_of(&c), code(Status::INVALID_QUEUE_ID));
    let c = admin.exec(SubmissionEntry::create_io_cq(0, 16, mem.iova()));
    assert_eq!(status_of(&c), code(Status::INVALID_QUEUE_ID));
    // Larger than MQES + 1, and a 1-entry queue.
    let c = admin.exec(SubmissionEntry::create_io_cq(1, 257, mem.iova()));
    assert_eq!(status_of(&c), code(Status::INVALID_QUEUE_SIZE));
    let c = admin.exec(SubmissionEntry::create_io_cq(1, 1, mem.iova()));
    assert_eq!(status_of(&c), code(Status::INVALID_QUEUE_SIZE));
    // Not page aligned.
    let c = admin.exec(SubmissionEntry::create_io_cq(1, 16, mem.iova().add(64)));
    assert_eq!(status_of(&c), code(Status::PRP_OFFSET_INVALID));

    let mut q = create_io_queue(&hw, &mut admin, 1, 16);
    // Same id twice.
    let c = admin.exec(SubmissionEntry::create_io_cq(1, 16, mem.iova()));
    assert_eq!(status_of(&c), code(Status::INVALID_QUEUE_ID));
    assert_eq!(hw.io_queues(), (vec![1], vec![1]));
    // Number of Queues after queues exist.
    let c = admin.exec(SubmissionEntry::set_number_of_queues(1, 1));
    assert_eq!(status_of(&c), code(Status::COMMAND_SEQUENCE_ERROR));
    // The queue works.
    assert_eq!(q.exec(SubmissionEntry::flush(1)).status(), Ok(()));
    // CQ still has an SQ.
    let c = admin.exec(SubmissionEntry::delete_io_cq(1));
    assert_eq!(status_of(&c), code(Status::INVALID_QUEUE_DELETION));
    assert_eq!(
        admin.exec(SubmissionEntry::delete_io_sq(1)).status(),
        Ok(())
    );
    let c = admin.exec(SubmissionEntry::delete_io_sq(1));
    assert_eq!(status_of(&c), code(Status::INVALID_QUEUE_ID));
    assert_eq!(
        admin.exec(SubmissionEntry::delete_io_cq(1)).status(),
        Ok(())
    );
    assert_eq!(hw.io_queues(), (vec![], vec![]));
}

#[test]
fn smart_log_counts_host_commands_and_error_log_records_failures() {
    let (hw, mut admin) = bring_up(ModelConfig::default());
    let mut q = create_io_queue(&hw, &mut admin, 1, 8);
    let buf = hw.alloc_dma(4096).unwrap();
    for _ in 0..3 {
        let mut w = SubmissionEntry::rw(io_opcode::WRITE, 1, 0, 8, false);
        w.set_prps(buf.iova(), Iova(0));
        assert_eq!(q.exec(w).status(), Ok(()));
    }
    let mut r = SubmissionEntry::rw(io_opcode::READ, 1, 0, 8, false);
    r.set_prps(buf.iova(), Iova(0));
    assert_eq!(q.exec(r).status(), Ok(()));
    // One failure for the error log.
    let mut bad = SubmissionEntry::rw(io_opcode::READ, 1, 1 << 40, 1, false);
    bad.set_prps(buf.iova(), Iova(0));
    let failed = q.exec(bad);
    assert_eq!(status_of(&failed), code(Status::LBA_OUT_OF_RANGE));

    let log = hw.alloc_dma(4096).unwrap();
    let c = admin.exec(SubmissionEntry::get_log_page(
        log_page::SMART_HEALTH,
        u32::MAX,
        128,
        0,
        log.iova(),
    ));
    assert_eq!(c.status(), Ok(()));
    let smart = SmartLog::parse(&read_bytes(&log, 0, 512).try_into().unwrap());
    assert_eq!(smart.host_write_commands, 3);
    assert_eq!(smart.host_read_commands, 1);
    assert_eq!(smart.data_units_written, 1); // 12 KiB rounds up to one unit
    assert_eq!(smart.error_log_entries, 1);
    assert_eq!(smart.available_spare, 100);

    let c = admin.exec(SubmissionEntry::get_log_page(
        log_page::ERROR_INFORMATION,
        0,
        32,
        0,
        log.iova(),
    ));
    assert_eq!(c.status(), Ok(()));
    let e = ErrorLogEntry::parse(&read_bytes(&log, 0, 64));
    assert_eq!(
        (e.error_count, e.sqid, e.cid, e.lba, e.nsid),
        (1, 1, failed.cid, 1 << 40, 1)
    );
    assert!(e.status.unwrap_err().is(NvmeStatus::LBA_OUT_OF_RANGE));

    let c = admin.exec(SubmissionEntry::get_log_page(0x70, 0, 32, 0, log.iova()));
    assert_eq!(status_of(&c), code(Status::INVALID_LOG_PAGE));
}

// ----- I/O ----------------------------------------------------------------------

#[test]
fn write_read_round_trip_with_prp_list_and_offset() {
    let (hw, mut admin) = bring_up(ModelConfig::default());
    let mut q = create_io_queue(&hw, &mut admin, 1, 16);
    // 64 KiB starting 512 bytes into the first page: 17 pages, so PRP2 is a list.
    let len = 64 * 1024;
    let data = hw.alloc_dma(len + 4096).unwrap();
    let list = hw.alloc_dma(4096).unwrap();
    let src = pattern(len, 7);
    write_bytes(&data, 512, &src);
    let first_page = data.iova().0;
    let entries: Vec<u8> = (1..=16u64)
        .flat_map(|p| (first_page + p * 4096).to_le_bytes())
        .collect();
    write_bytes(&list, 0, &entries);

    let mut w = SubmissionEntry::rw(io_opcode::WRITE, 1, 100, (len / 512) as u32, true);
    w.set_prps(data.iova().add(512), list.iova());
    assert_eq!(q.exec(w).status(), Ok(()));
    assert_eq!(hw.read_blocks(1, 100, 128), src);

    // Read it back into a fresh buffer through the same kind of list.
    let back = hw.alloc_dma(len + 4096).unwrap();
    let entries: Vec<u8> = (1..=16u64)
        .flat_map(|p| (back.iova().0 + p * 4096).to_le_bytes())
        .collect();
    write_bytes(&list, 0, &entries);
    let mut r = SubmissionEntry::rw(io_opcode::READ, 1, 100, (len / 512) as u32, false);
    r.set_prps(back.iova().add(512), list.iova());
    assert_eq!(q.exec(r).status(), Ok(()));
    assert_eq!(read_bytes(&back, 512, len), src);
    assert_eq!(
        read_bytes(&back, 0, 512),
        vec![0; 512],
        "nothing before PRP1's offset"
    );

    // Two pages exactly: PRP2 is a data pointer, not a list.
    let mut r2 = SubmissionEntry::rw(io_opcode::READ, 1, 100, 16, false);
    r2.set_prps(back.iova(), back.iova().add(4096 * 4));
    assert_eq!(q.exec(r2).status(), Ok(()));
    assert_eq!(read_bytes(&back, 4096 * 4, 4096), src[4096..8192]);
    let st = hw.stats();
    assert_eq!((st.io(io_opcode::WRITE), st.io(io_opcode::READ)), (1, 2));
    assert_eq!(st.dma_errors, 0);
}

#[test]
fn chained_prp_lists() {
    let cfg = ModelConfig {
        mdts: 0, // no limit
        namespaces: vec![NamespaceConfig::new(4096, 4096)],
        ..ModelConfig::default()
    };
    let (hw, mut admin) = bring_up(cfg);
    let mut q = create_io_queue(&hw, &mut admin, 1, 4);
    // 600 pages: PRP1 + 599 more; a list page holds 511 data entries + a chain pointer.
    let pages = 600usize;
    let data = hw.alloc_dma(pages * 4096).unwrap();
    let lists = hw.alloc_dma(2 * 4096).unwrap();
    let src = pattern(pages * 4096, 3);
    write_bytes(&data, 0, &src);
    let page = |i: usize| data.iova().0 + (i * 4096) as u64;
    let mut l0: Vec<u8> = (1..512).flat_map(|i| page(i).to_le_bytes()).collect();
    l0.extend_from_slice(&(lists.iova().0 + 4096).to_le_bytes());
    let l1: Vec<u8> = (512..pages).flat_map(|i| page(i).to_le_bytes()).collect();
    write_bytes(&lists, 0, &l0);
    write_bytes(&lists, 4096, &l1);
    let mut w = SubmissionEntry::rw(io_opcode::WRITE, 1, 10, pages as u32, false);
    w.set_prps(data.iova(), lists.iova());
    assert_eq!(q.exec(w).status(), Ok(()));
    assert_eq!(hw.read_blocks(1, 10, pages as u64), src);

    // A chain pointer that is not page aligned is a PRP Offset Invalid.
    write_bytes(&lists, 511 * 8, &(lists.iova().0 + 4096 + 8).to_le_bytes());
    let mut w = SubmissionEntry::rw(io_opcode::WRITE, 1, 10, pages as u32, false);
    w.set_prps(data.iova(), lists.iova());
    assert_eq!(status_of(&q.exec(w)), code(Status::PRP_OFFSET_INVALID));
}

#[test]
fn io_command_checks() {
    let cfg = ModelConfig {
        mdts: 2, // 16 KiB
        namespaces: vec![NamespaceConfig::new(1000, 512)],
        ..ModelConfig::default()
    };
    let (hw, mut admin) = bring_up(cfg);
    let mut q = create_io_queue(&hw, &mut admin, 1, 16);
    let buf = hw.alloc_dma(32 * 1024).unwrap();
    let rw = |op, nsid, slba, n| {
        let mut e = SubmissionEntry::rw(op, nsid, slba, n, false);
        e.set_prps(buf.iova(), buf.iova().add(4096));
        e
    };
    // Last block is fine, one past is not.
    assert_eq!(q.exec(rw(io_opcode::READ, 1, 999, 1)).status(), Ok(()));
    let c = q.exec(rw(io_opcode::READ, 1, 999, 2));
    assert_eq!(status_of(&c), code(Status::LBA_OUT_OF_RANGE));
    let s = c.status().unwrap_err();
    assert!(s.is(NvmeStatus::LBA_OUT_OF_RANGE) && s.dnr);
    assert_eq!(
        status_of(&q.exec(rw(io_opcode::WRITE, 1, u64::MAX, 1))),
        code(Status::LBA_OUT_OF_RANGE)
    );
    // Namespace.
    assert_eq!(
        status_of(&q.exec(rw(io_opcode::READ, 2, 0, 1))),
        code(Status::INVALID_NAMESPACE)
    );
    assert_eq!(
        status_of(&q.exec(rw(io_opcode::READ, 0, 0, 1))),
        code(Status::INVALID_NAMESPACE)
    );
    // MDTS: 16 KiB fine (PRP2 must then be a list, so just check the size error first).
    let c = q.exec(rw(io_opcode::READ, 1, 0, 33));
    assert_eq!(status_of(&c), code(Status::INVALID_FIELD));
    // PRP1 not dword aligned; PRP2 data pointer with an offset.
    let mut e = SubmissionEntry::rw(io_opcode::READ, 1, 0, 1, false);
    e.set_prps(buf.iova().add(2), Iova(0));
    assert_eq!(status_of(&q.exec(e)), code(Status::PRP_OFFSET_INVALID));
    let mut e = SubmissionEntry::rw(io_opcode::READ, 1, 0, 8, false);
    e.set_prps(buf.iova().add(512), buf.iova().add(4096 + 8));
    assert_eq!(status_of(&q.exec(e)), code(Status::PRP_OFFSET_INVALID));
    // Unknown opcode; SGL requested.
    assert_eq!(
        status_of(&q.exec(SubmissionEntry::new(0x7f, 1))),
        code(Status::INVALID_OPCODE)
    );
    let mut e = rw(io_opcode::READ, 1, 0, 1);
    e.cdw0 |= 1 << 14;
    assert_eq!(status_of(&q.exec(e)), code(Status::INVALID_FIELD));
}

#[test]
fn compare_write_zeroes_and_deallocate() {
    let (hw, mut admin) = bring_up(ModelConfig::default());
    let mut q = create_io_queue(&hw, &mut admin, 1, 16);
    let blk = pattern(4096, 9);
    hw.write_blocks(1, 0, &blk);
    hw.write_blocks(1, 64, &blk);
    assert_eq!(hw.stored_blocks(1), 16);
    let buf = hw.alloc_dma(4096).unwrap();
    write_bytes(&buf, 0, &blk);
    let mut cmp = SubmissionEntry::rw(io_opcode::COMPARE, 1, 0, 8, false);
    cmp.set_prps(buf.iova(), Iova(0));
    assert_eq!(q.exec(cmp).status(), Ok(()));
    write_bytes(&buf, 100, &[0xee]);
    let c = q.exec(cmp);
    let s = c.status().unwrap_err();
    assert_eq!((s.sct, s.sc), (StatusCodeType::MediaError, 0x85));

    // Write Zeroes blocks 0..8.
    let mut wz = SubmissionEntry::new(io_opcode::WRITE_ZEROES, 1);
    wz.cdw12 = 7;
    assert_eq!(q.exec(wz).status(), Ok(()));
    assert_eq!(hw.read_blocks(1, 0, 8), vec![0; 4096]);
    // DSM deallocate blocks 64..72, one range.
    let mut range = [0u8; 16];
    range[4..8].copy_from_slice(&8u32.to_le_bytes());
    range[8..16].copy_from_slice(&64u64.to_le_bytes());
    write_bytes(&buf, 0, &range);
    let mut dsm = SubmissionEntry::new(io_opcode::DATASET_MANAGEMENT, 1);
    dsm.prp1 = buf.iova().0;
    dsm.cdw11 = 1 << 2;
    assert_eq!(q.exec(dsm).status(), Ok(()));
    assert_eq!(hw.read_blocks(1, 64, 8), vec![0; 4096]);
    assert_eq!(hw.stored_blocks(1), 0);
    // Out of range deallocation.
    range[8..16].copy_from_slice(&(1u64 << 21).to_le_bytes());
    write_bytes(&buf, 0, &range);
    assert_eq!(status_of(&q.exec(dsm)), code(Status::LBA_OUT_OF_RANGE));
}

// ----- queue mechanics -------------------------------------------------------------

#[test]
fn phase_tag_flips_on_cq_wrap() {
    let (hw, mut admin) = bring_up(ModelConfig::default());
    let mut q = create_io_queue(&hw, &mut admin, 1, 4);
    let mut phases = Vec::new();
    let mut heads = Vec::new();
    for _ in 0..10 {
        let c = q.exec(SubmissionEntry::flush(1));
        assert_eq!(c.status(), Ok(()));
        phases.push(c.phase());
        heads.push(c.sq_head);
    }
    assert_eq!(
        phases,
        [true, true, true, true, false, false, false, false, true, true]
    );
    assert_eq!(heads, [1, 2, 3, 0, 1, 2, 3, 0, 1, 2]);
    // The slot after the newest entry still carries the old phase: not new.
    assert!(q.poll().is_none());
    assert_eq!(hw.stats().completions_posted, 10 + 2);
}

#[test]
fn full_cq_holds_completions_until_head_moves() {
    let (hw, mut admin) = bring_up(ModelConfig::default());
    // A 4-entry CQ holds at most 3 completions; SQ of 8.
    let q_mem = Queue::new(&hw, 1, 8);
    let cq = hw.alloc_dma(4 * 16).unwrap();
    assert_eq!(
        admin
            .exec(SubmissionEntry::create_io_cq(1, 4, cq.iova()))
            .status(),
        Ok(())
    );
    assert_eq!(
        admin
            .exec(SubmissionEntry::create_io_sq(1, 8, q_mem.sq.iova(), 1))
            .status(),
        Ok(())
    );
    let mut q = Queue {
        cq,
        size: 8,
        ..q_mem
    };
    // Submit 6 flushes with one doorbell.
    for _ in 0..6 {
        q.push(SubmissionEntry::flush(1));
    }
    q.ring_sq();
    let c4 = |q: &Queue, i: usize| cqe_at(&q.cq, i);
    assert!((0..3).all(|i| c4(&q, i).phase()));
    assert!(!c4(&q, 3).phase(), "the fourth slot must stay empty");
    assert_eq!(hw.stats().cq_full_stalls, 3);
    // Consume two: two more come in (slot 3, then slot 0 with the new phase).
    q.cq_db.ring(2);
    assert!(c4(&q, 3).phase());
    assert_eq!(c4(&q, 3).cid, 3);
    assert!(!c4(&q, 0).phase());
    assert_eq!(c4(&q, 0).cid, 4);
    // Consume the rest.
    q.cq_db.ring(1);
    assert_eq!(c4(&q, 1).cid, 5);
    assert!(!c4(&q, 1).phase());
    assert_eq!(hw.stats().completions_posted, 2 + 6);
    assert!(!hw.peek_csts().fatal());
}

#[test]
fn invalid_doorbell_writes_are_fatal() {
    let (hw, mut admin) = bring_up(ModelConfig::default());
    let cap = Cap(hw.read64(offset::CAP));
    let mut db = hw.doorbell(cap.sq_tail_doorbell(5)).unwrap();
    db.ring(1); // queue 5 does not exist: ignored, as QEMU does
    assert!(!hw.peek_csts().fatal());
    assert_eq!(hw.stats().doorbells_without_queue, 1);
    // A tail beyond the queue's size is fatal.
    admin.sq_db.ring(u32::from(ADMIN_ENTRIES));
    assert!(hw.peek_csts().fatal());
    assert_eq!(hw.stats().invalid_doorbell_writes, 1);
    // Doorbells are now ignored.
    admin.submit(SubmissionEntry::flush(1));
    assert!(admin.poll().is_none());
    assert_eq!(hw.stats().ignored_doorbell_writes, 1);
    // Reset clears CFS; a tail beyond the queue size is fatal again.
    hw.write32(offset::CC, 0);
    let mut admin = enable_with(&hw, cc_enabled());
    admin.sq_db.ring(u32::from(ADMIN_ENTRIES));
    assert!(hw.peek_csts().fatal());
    // Doorbells that do not exist at all are refused up front.
    assert!(hw.doorbell(0x1002).is_err());
    assert!(hw.doorbell(cap.sq_tail_doorbell(65)).is_err());
}

#[test]
fn doorbell_stride_is_honoured() {
    let (hw, mut admin) = bring_up(ModelConfig {
        dstrd: 2,
        ..ModelConfig::default()
    });
    let cap = Cap(hw.read64(offset::CAP));
    assert_eq!(cap.doorbell_stride(), 16);
    let mut q = create_io_queue(&hw, &mut admin, 3, 8);
    assert_eq!(q.exec(SubmissionEntry::flush(1)).status(), Ok(()));
    let st = hw.stats();
    assert_eq!((st.sq_doorbells(3), st.cq_doorbells(3)), (1, 1));
    assert!(hw.doorbell(0x1004).is_err());
}

// ----- fault injection ---------------------------------------------------------------

#[test]
fn hold_completions_defers_execution_until_release() {
    let (hw, mut admin) = bring_up(ModelConfig::default());
    let mut q = create_io_queue(&hw, &mut admin, 1, 8);
    let buf = hw.alloc_dma(4096).unwrap();
    write_bytes(&buf, 0, &pattern(4096, 1));
    hw.hold_completions(1, true);
    let mut w = SubmissionEntry::rw(io_opcode::WRITE, 1, 0, 8, false);
    w.set_prps(buf.iova(), Iova(0));
    let cid = q.submit(w);
    assert!(q.poll().is_none());
    assert_eq!(hw.held_commands(1), 1);
    assert_eq!(
        hw.read_blocks(1, 0, 8),
        vec![0; 4096],
        "held command has not run"
    );
    // Admin queue is not affected.
    assert!(admin.exec(SubmissionEntry::flush(0)).status().is_err());
    hw.hold_completions(1, false);
    let c = q.poll().expect("released");
    assert_eq!((c.cid, c.status()), (cid, Ok(())));
    assert_eq!(hw.read_blocks(1, 0, 8), pattern(4096, 1));
    assert_eq!(hw.held_commands(1), 0);
}

#[test]
fn held_commands_can_complete_out_of_order_and_completions_can_be_invented() {
    let (hw, mut admin) = bring_up(ModelConfig::default());
    let mut q = create_io_queue(&hw, &mut admin, 1, 8);
    let buf = hw.alloc_dma(8192).unwrap();
    hw.hold_completions(1, true);
    let mut cids = Vec::new();
    for (i, lba) in [0u64, 1 << 33].into_iter().enumerate() {
        let mut r = SubmissionEntry::rw(io_opcode::READ, 1, lba, 8, false);
        r.set_prps(buf.iova().add(i as u64 * 4096), Iova(0));
        cids.push(q.submit(r));
    }
    let held = hw.held_command_list(1);
    assert_eq!(
        held,
        [
            HeldCommand {
                cid: cids[0],
                opcode: io_opcode::READ,
                nsid: 1,
                slba: 0,
            },
            HeldCommand {
                cid: cids[1],
                opcode: io_opcode::READ,
                nsid: 1,
                slba: 1 << 33,
            },
        ]
    );
    assert!(hw.held_command_list(2).is_empty(), "no such SQ");
    // The second first: it runs (LBA out of range), the first stays held.
    assert!(hw.complete_held(1, cids[1]));
    let c = q.poll().expect("completed out of order");
    assert_eq!(
        (c.cid, status_of(&c)),
        (cids[1], code(Status::LBA_OUT_OF_RANGE))
    );
    assert!(!hw.complete_held(1, cids[1]), "no longer held");
    assert_eq!(hw.held_commands(1), 1);
    // A completion nobody asked for: as posted, with the SQ's head.
    assert!(hw.post_completion(1, cids[1], Status::SUCCESS));
    let c = q.poll().expect("invented completion posted");
    assert_eq!(
        (c.cid, c.sq_id, c.sq_head, c.status()),
        (cids[1], 1, 2, Ok(()))
    );
    assert!(!hw.post_completion(5, 0, Status::SUCCESS), "no such SQ");
    assert_eq!(hw.stats().injected_completions, 1);
    hw.hold_completions(1, false);
    let c = q.poll().expect("released");
    assert_eq!((c.cid, c.status()), (cids[0], Ok(())));
    assert!(q.poll().is_none());
    // Not while the controller is fatal.
    hw.hold_completions(1, true);
    let mut r = SubmissionEntry::rw(io_opcode::READ, 1, 0, 8, false);
    r.set_prps(buf.iova(), Iova(0));
    let cid = q.submit(r);
    hw.set_fatal();
    assert!(!hw.complete_held(1, cid));
    assert!(!hw.post_completion(1, cid, Status::SUCCESS));
}

#[test]
fn deleting_an_sq_aborts_its_held_commands() {
    let (hw, mut admin) = bring_up(ModelConfig::default());
    let mut q = create_io_queue(&hw, &mut admin, 1, 8);
    hw.hold_completions(1, true);
    let a = q.submit(SubmissionEntry::flush(1));
    let b = q.submit(SubmissionEntry::flush(1));
    assert!(q.poll().is_none());
    let c = admin.exec(SubmissionEntry::delete_io_sq(1));
    assert_eq!(c.status(), Ok(()));
    for cid in [a, b] {
        let c = q.poll().expect("aborted completion");
        assert_eq!(c.cid, cid);
        assert_eq!(status_of(&c), code(Status::ABORTED_SQ_DELETION));
    }
    assert_eq!(hw.held_commands(1), 0);
    q.ring_cq();
    assert_eq!(
        admin.exec(SubmissionEntry::delete_io_cq(1)).status(),
        Ok(())
    );
    // Releasing the hold later does nothing.
    hw.hold_completions(1, false);
    assert_eq!(hw.stats().completions_posted, 2 + 2 + 1 + 1);
}

#[test]
fn abort_command_aborts_a_held_command() {
    let (hw, mut admin) = bring_up(ModelConfig::default());
    let mut q = create_io_queue(&hw, &mut admin, 1, 8);
    hw.hold_completions(1, true);
    let cid = q.submit(SubmissionEntry::flush(1));
    let mut abort = SubmissionEntry::new(admin_opcode::ABORT, 0);
    abort.cdw10 = 1 | (u32::from(cid) << 16);
    let c = admin.exec(abort);
    assert_eq!((c.status(), c.result & 1), (Ok(()), 0));
    let c = q.poll().unwrap();
    assert_eq!(status_of(&c), code(Status::ABORT_REQUESTED));
    // Nothing left to abort.
    let c = admin.exec(abort);
    assert_eq!(c.result & 1, 1);
}

#[test]
fn freed_buffer_dma_is_detected_as_use_after_free() {
    let (hw, mut admin) = bring_up(ModelConfig::default());
    let mut q = create_io_queue(&hw, &mut admin, 1, 8);
    let buf = hw.alloc_dma(4096).unwrap();
    let live = hw.dma_regions_live();
    hw.hold_completions(1, true);
    let mut r = SubmissionEntry::rw(io_opcode::READ, 1, 0, 8, false);
    r.set_prps(buf.iova(), Iova(0));
    q.submit(r);
    drop(buf); // a buggy driver frees the buffer of an in-flight read
    assert_eq!(hw.dma_regions_live(), live - 1);
    hw.hold_completions(1, false);
    let c = q.poll().unwrap();
    assert_eq!(status_of(&c), code(Status::DATA_TRANSFER_ERROR));
    assert_eq!(hw.dma_use_after_free(), 1);
    let f = hw.dma_fault_log()[0];
    assert_eq!((f.kind, f.write), (DmaFaultKind::UseAfterFree, true));
}

#[test]
fn fail_next_injects_a_status_once() {
    let (hw, mut admin) = bring_up(ModelConfig::default());
    let mut q = create_io_queue(&hw, &mut admin, 1, 8);
    let buf = hw.alloc_dma(4096).unwrap();
    hw.fail_next(io_opcode::READ, Status::UNRECOVERED_READ_ERROR);
    hw.fail_next_admin(admin_opcode::IDENTIFY, NvmeStatus::INVALID_FIELD);
    let mut r = SubmissionEntry::rw(io_opcode::READ, 1, 0, 1, false);
    r.set_prps(buf.iova(), Iova(0));
    assert_eq!(
        q.exec(SubmissionEntry::flush(1)).status(),
        Ok(()),
        "other opcodes unaffected"
    );
    assert_eq!(status_of(&q.exec(r)), code(Status::UNRECOVERED_READ_ERROR));
    assert_eq!(q.exec(r).status(), Ok(()), "only once");
    let c = admin.exec(SubmissionEntry::identify(cns::CONTROLLER, 0, buf.iova()));
    assert_eq!(status_of(&c), code(Status::INVALID_FIELD));
    assert_eq!(hw.stats().injected_failures, 2);
}

#[test]
fn device_gone_reads_all_ones_and_drops_writes() {
    let (hw, mut admin) = bring_up(ModelConfig::default());
    hw.device_gone();
    assert!(Csts(hw.read32(offset::CSTS)).is_all_ones());
    assert_eq!(hw.read64(offset::CAP), u64::MAX);
    admin.submit(SubmissionEntry::flush(0));
    assert!(admin.poll().is_none());
    hw.write32(offset::CC, 0);
    assert!(hw.is_running(), "the disable never reached the device");
}

#[test]
fn ignore_disable_keeps_the_controller_running() {
    let (hw, mut admin) = bring_up(ModelConfig::default());
    let mut q = create_io_queue(&hw, &mut admin, 1, 8);
    hw.ignore_disable(true);
    hw.write32(offset::CC, 0);
    assert!(Csts(hw.read32(offset::CSTS)).ready());
    assert_eq!(hw.read32(offset::CC) & 1, 0);
    assert_eq!(
        q.exec(SubmissionEntry::flush(1)).status(),
        Ok(()),
        "queues still run"
    );
    hw.ignore_disable(false);
    hw.write32(offset::CC, 0); // EN already 0: no transition, still running
    assert!(hw.is_running());
}

#[test]
fn dma_allocations_are_tracked_and_can_fail() {
    let hw = ModelController::default();
    let a = hw.alloc_dma(1).unwrap();
    let b = hw.alloc_dma(8192).unwrap();
    assert_eq!((a.len(), b.len()), (4096, 8192));
    assert_eq!(a.as_ptr() as usize % 4096, 0);
    assert_eq!(read_bytes(&b, 0, 8192), vec![0; 8192]);
    assert!(
        b.iova().0 >= a.iova().0 + 8192,
        "a guard page separates regions"
    );
    assert_eq!(hw.dma_regions_live(), 2);
    hw.fail_dma_allocs(1);
    assert!(hw.alloc_dma(4096).is_err());
    assert!(hw.alloc_dma(4096).is_ok());
    drop(a);
    drop(b);
    assert_eq!(hw.dma_regions_live(), 0);
    let st = hw.stats();
    assert_eq!((st.dma_allocs, st.dma_frees), (3, 3));
}

#[test]
fn null_backing_moves_no_data_but_checks_addresses() {
    let cfg = ModelConfig {
        namespaces: vec![NamespaceConfig::new(1 << 30, 4096).with_backing(Backing::Null)],
        ..ModelConfig::default()
    };
    let (hw, mut admin) = bring_up(cfg);
    let mut q = create_io_queue(&hw, &mut admin, 1, 8);
    let buf = hw.alloc_dma(4096).unwrap();
    write_bytes(&buf, 0, &[0xaa; 16]);
    let mut r = SubmissionEntry::rw(io_opcode::READ, 1, 5, 1, false);
    r.set_prps(buf.iova(), Iova(0));
    assert_eq!(q.exec(r).status(), Ok(()));
    assert_eq!(read_bytes(&buf, 0, 16), vec![0xaa; 16]);
    r.prp1 = 0x10;
    assert_eq!(status_of(&q.exec(r)), code(Status::DATA_TRANSFER_ERROR));
}

#[test]
fn handles_work_across_threads() {
    let (hw, mut admin) = bring_up(ModelConfig::default());
    let queues: Vec<Queue> = (1..=4)
        .map(|qid| create_io_queue(&hw, &mut admin, qid, 16))
        .collect();
    std::thread::scope(|s| {
        for (i, mut q) in queues.into_iter().enumerate() {
            let hw = hw.clone();
            s.spawn(move || {
                let buf = hw.alloc_dma(4096).unwrap();
                write_bytes(&buf, 0, &pattern(4096, i as u8));
                for n in 0..100u64 {
                    let mut w = SubmissionEntry::rw(
                        io_opcode::WRITE,
                        1,
                        (i as u64) * 1000 + n * 8,
                        8,
                        false,
                    );
                    w.set_prps(buf.iova(), Iova(0));
                    assert_eq!(q.exec(w).status(), Ok(()));
                }
            });
        }
    });
    for i in 0..4u64 {
        assert_eq!(
            hw.read_blocks(1, i * 1000 + 99 * 8, 8),
            pattern(4096, i as u8)
        );
    }
    assert_eq!(hw.stats().io(io_opcode::WRITE), 400);
}
