//! Admin commands: Identify, Set/Get Features, queue creation and deletion,
//! Get Log Page, Abort, Asynchronous Event Request.

use nvme_core::cmd::{admin_opcode, cns, feature, log_page, SubmissionEntry};
use nvme_core::identify::{ERROR_LOG_ENTRY_SIZE, IDENTIFY_SIZE, SMART_LOG_SIZE};

use super::faults::Status;
use super::state::{Cq, Done, Exec, Inner, Sq};

/// PCI vendor ID the model reports (Red Hat / QEMU).
pub const MODEL_VID: u16 = 0x1b36;
/// PCI subsystem vendor ID the model reports.
pub const MODEL_SSVID: u16 = 0x1af4;

const INVALID_INTERRUPT_VECTOR: Status = Status::new(1, 0x08).with_dnr();

pub(crate) fn execute(s: &mut Inner, sqe: &SubmissionEntry) -> Exec {
    if (sqe.cdw0 >> 8) & 3 != 0 {
        return Exec::Complete(Done::err(Status::INVALID_FIELD)); // fused
    }
    let r = match sqe.opcode() {
        admin_opcode::DELETE_IO_SQ => delete_sq(s, sqe),
        admin_opcode::CREATE_IO_SQ => create_sq(s, sqe),
        admin_opcode::GET_LOG_PAGE => get_log_page(s, sqe),
        admin_opcode::DELETE_IO_CQ => delete_cq(s, sqe),
        admin_opcode::CREATE_IO_CQ => create_cq(s, sqe),
        admin_opcode::IDENTIFY => identify(s, sqe),
        admin_opcode::ABORT => abort(s, sqe),
        admin_opcode::SET_FEATURES => set_features(s, sqe),
        admin_opcode::GET_FEATURES => get_features(s, sqe),
        admin_opcode::DOORBELL_BUFFER_CONFIG if s.cfg.oacs & OACS_DBBUF != 0 => {
            doorbell_buffer_config(s, sqe)
        }
        admin_opcode::ASYNC_EVENT_REQUEST => {
            // Outstanding until an event completes it (or a reset ends it).
            if s.aers.len() > usize::from(s.cfg.aerl) {
                Err(Status::AER_LIMIT_EXCEEDED)
            } else {
                s.aers.push_back(*sqe);
                s.deliver_events();
                return Exec::Deferred;
            }
        }
        _ => Err(Status::INVALID_OPCODE),
    };
    Exec::Complete(match r {
        Ok(result) => Done::ok(result),
        Err(status) => Done::err(status),
    })
}

/// OACS bit 8: Doorbell Buffer Config (shadow doorbells) is supported.
pub const OACS_DBBUF: u16 = 1 << 8;

/// Doorbell Buffer Config: PRP1 is the shadow doorbell page, PRP2 the
/// EventIdx page, each one page, page-aligned (QEMU's checks).
fn doorbell_buffer_config(s: &mut Inner, sqe: &SubmissionEntry) -> Result<u32, Status> {
    let (dbs, eis) = (sqe.prp1, sqe.prp2);
    let page = s.page_size as u64;
    if dbs == 0 || eis == 0 || dbs & (page - 1) != 0 || eis & (page - 1) != 0 {
        return Err(Status::INVALID_FIELD);
    }
    for addr in [dbs, eis] {
        if s.dma.check(addr, s.page_size, true).is_err() {
            return Err(Status::DATA_TRANSFER_ERROR);
        }
    }
    s.set_dbbuf(dbs, eis);
    Ok(0)
}

fn qid_and_size(sqe: &SubmissionEntry) -> (u16, u16) {
    ((sqe.cdw10 & 0xffff) as u16, (sqe.cdw10 >> 16) as u16)
}

fn check_queue_shape(s: &Inner, qsize0: u16, pc: bool, base: u64) -> Result<(), Status> {
    if qsize0 == 0 || qsize0 > s.cap.mqes() {
        return Err(Status::INVALID_QUEUE_SIZE);
    }
    if !pc {
        return Err(Status::INVALID_FIELD); // CAP.CQR = 1: queues must be contiguous
    }
    if base & (s.page_size as u64 - 1) != 0 {
        return Err(Status::PRP_OFFSET_INVALID);
    }
    Ok(())
}

fn create_cq(s: &mut Inner, sqe: &SubmissionEntry) -> Result<u32, Status> {
    let (qid, qsize0) = qid_and_size(sqe);
    if qid == 0 || qid > s.io_qid_limit(false) || s.cqs.contains_key(&qid) {
        return Err(Status::INVALID_QUEUE_ID);
    }
    check_queue_shape(s, qsize0, sqe.cdw11 & 1 == 1, sqe.prp1)?;
    // No interrupts: IEN is accepted and ignored, but only vector 0 exists.
    if sqe.cdw11 >> 16 != 0 {
        return Err(INVALID_INTERRUPT_VECTOR);
    }
    s.cqs.insert(qid, Cq::new(sqe.prp1, qsize0 + 1));
    Ok(0)
}

fn create_sq(s: &mut Inner, sqe: &SubmissionEntry) -> Result<u32, Status> {
    let (qid, qsize0) = qid_and_size(sqe);
    let cqid = (sqe.cdw11 >> 16) as u16;
    if cqid == 0 || !s.cqs.contains_key(&cqid) {
        return Err(Status::CQ_INVALID);
    }
    if qid == 0 || qid > s.io_qid_limit(true) || s.sqs.contains_key(&qid) {
        return Err(Status::INVALID_QUEUE_ID);
    }
    check_queue_shape(s, qsize0, sqe.cdw11 & 1 == 1, sqe.prp1)?;
    s.sqs.insert(qid, Sq::new(sqe.prp1, qsize0 + 1, cqid));
    Ok(0)
}

fn delete_sq(s: &mut Inner, sqe: &SubmissionEntry) -> Result<u32, Status> {
    let (qid, _) = qid_and_size(sqe);
    if qid == 0 || !s.sqs.contains_key(&qid) {
        return Err(Status::INVALID_QUEUE_ID);
    }
    // Commands fetched but not completed are aborted first, so their
    // completions reach the CQ before this command's.
    let held = s
        .sqs
        .get_mut(&qid)
        .map(|sq| std::mem::take(&mut sq.held))
        .unwrap_or_default();
    for cmd in held {
        s.complete(qid, &cmd, Done::err(Status::ABORTED_SQ_DELETION));
    }
    s.sqs.remove(&qid);
    Ok(0)
}

fn delete_cq(s: &mut Inner, sqe: &SubmissionEntry) -> Result<u32, Status> {
    let (qid, _) = qid_and_size(sqe);
    if qid == 0 || !s.cqs.contains_key(&qid) {
        return Err(Status::INVALID_QUEUE_ID);
    }
    if s.sqs.values().any(|sq| sq.cqid == qid) {
        return Err(Status::INVALID_QUEUE_DELETION);
    }
    s.cqs.remove(&qid);
    Ok(0)
}

fn abort(s: &mut Inner, sqe: &SubmissionEntry) -> Result<u32, Status> {
    let sqid = (sqe.cdw10 & 0xffff) as u16;
    let cid = (sqe.cdw10 >> 16) as u16;
    let victim = s.sqs.get_mut(&sqid).and_then(|sq| {
        let i = sq.held.iter().position(|c| c.cid() == cid)?;
        sq.held.remove(i)
    });
    match victim {
        Some(cmd) => {
            s.complete(sqid, &cmd, Done::err(Status::ABORT_REQUESTED));
            Ok(0) // DW0 bit 0 clear: the command was aborted
        }
        None => Ok(1), // not aborted
    }
}

// ----- features ------------------------------------------------------------

fn encode_queues(sqs: u16, cqs: u16) -> u32 {
    u32::from(sqs - 1) | (u32::from(cqs - 1) << 16)
}

fn set_features(s: &mut Inner, sqe: &SubmissionEntry) -> Result<u32, Status> {
    if sqe.cdw10 >> 31 == 1 {
        return Err(Status::FEATURE_NOT_SAVEABLE);
    }
    match (sqe.cdw10 & 0xff) as u8 {
        feature::NUMBER_OF_QUEUES => {
            let nsqr = sqe.cdw11 & 0xffff;
            let ncqr = sqe.cdw11 >> 16;
            if nsqr == 0xffff || ncqr == 0xffff {
                return Err(Status::INVALID_FIELD);
            }
            if s.sqs.len() > 1 || s.cqs.len() > 1 {
                return Err(Status::COMMAND_SEQUENCE_ERROR); // I/O queues exist
            }
            let max = u32::from(s.cfg.max_io_queue_pairs);
            let nsqa = (nsqr + 1).min(max) as u16;
            let ncqa = (ncqr + 1).min(max) as u16;
            s.granted_queues = Some((nsqa, ncqa));
            Ok(encode_queues(nsqa, ncqa))
        }
        feature::ASYNC_EVENT_CONFIG => {
            s.async_event_config = sqe.cdw11;
            Ok(0)
        }
        feature::VOLATILE_WRITE_CACHE => {
            if !s.cfg.vwc {
                return Err(Status::INVALID_FIELD);
            }
            s.wce = sqe.cdw11 & 1 == 1;
            Ok(0)
        }
        _ => Err(Status::INVALID_FIELD),
    }
}

fn get_features(s: &mut Inner, sqe: &SubmissionEntry) -> Result<u32, Status> {
    let sel = (sqe.cdw10 >> 8) & 7;
    let fid = (sqe.cdw10 & 0xff) as u8;
    if !matches!(
        fid,
        feature::NUMBER_OF_QUEUES | feature::VOLATILE_WRITE_CACHE
    ) || (fid == feature::VOLATILE_WRITE_CACHE && !s.cfg.vwc)
    {
        return Err(Status::INVALID_FIELD);
    }
    let max = s.cfg.max_io_queue_pairs;
    match (sel, fid) {
        // Capabilities: changeable, not saveable, not namespace specific.
        (3, _) => Ok(0b100),
        (0 | 2, feature::NUMBER_OF_QUEUES) => {
            let (sq, cq) = s.granted_queues.unwrap_or((max, max));
            Ok(encode_queues(sq, cq))
        }
        (1, feature::NUMBER_OF_QUEUES) => Ok(encode_queues(max, max)),
        (0 | 2, _) => Ok(u32::from(s.wce)),
        (1, _) => Ok(u32::from(s.cfg.vwc)),
        _ => Err(Status::INVALID_FIELD),
    }
}

// ----- identify ------------------------------------------------------------

fn put(b: &mut [u8], off: usize, bytes: &[u8]) {
    b[off..off + bytes.len()].copy_from_slice(bytes);
}

/// Space-padded ASCII field.
fn put_str(b: &mut [u8], off: usize, len: usize, s: &str) {
    let field = &mut b[off..off + len];
    field.fill(b' ');
    let n = s.len().min(len);
    field[..n].copy_from_slice(&s.as_bytes()[..n]);
}

fn identify(s: &mut Inner, sqe: &SubmissionEntry) -> Result<u32, Status> {
    let data = match (sqe.cdw10 & 0xff) as u8 {
        cns::CONTROLLER => identify_controller(s),
        cns::NAMESPACE => identify_namespace(s, sqe.nsid)?,
        cns::ACTIVE_NAMESPACES => {
            if sqe.nsid >= 0xffff_fffe {
                return Err(Status::INVALID_NAMESPACE);
            }
            let mut b = vec![0u8; IDENTIFY_SIZE];
            let ids = (1..=s.namespaces.len() as u32)
                .filter(|&id| id > sqe.nsid && s.namespaces[id as usize - 1].attached)
                .take(1024);
            for (i, id) in ids.enumerate() {
                put(&mut b, 4 * i, &id.to_le_bytes());
            }
            b
        }
        _ => return Err(Status::INVALID_FIELD),
    };
    s.send_to_host(sqe, &data)?;
    Ok(0)
}

/// The Identify Controller structure (NVMe 1.4 Figure 247).
pub(crate) fn identify_controller(s: &Inner) -> Vec<u8> {
    let c = &s.cfg;
    let mut b = vec![0u8; IDENTIFY_SIZE];
    put(&mut b, 0, &MODEL_VID.to_le_bytes());
    put(&mut b, 2, &MODEL_SSVID.to_le_bytes());
    put_str(&mut b, 4, 20, &c.serial);
    put_str(&mut b, 24, 40, &c.model);
    put_str(&mut b, 64, 8, &c.firmware);
    b[72] = 6; // RAB
    put(&mut b, 73, &[0x00, 0x54, 0x52]); // IEEE OUI (QEMU's 52:54:00)
    b[77] = c.mdts;
    put(&mut b, 78, &0u16.to_le_bytes()); // CNTLID
    put(&mut b, 80, &c.version.to_le_bytes());
    b[111] = 1; // CNTRLTYPE: I/O controller
    put(&mut b, 256, &c.oacs.to_le_bytes());
    b[258] = 3; // ACL
    b[259] = c.aerl;
    put(&mut b, 92, &(1u32 << 8).to_le_bytes()); // OAES: namespace attribute notices
    b[260] = 0b0000_0011; // FRMW: one slot, slot 1 read-only
    b[261] = 0b0000_0100; // LPA: extended data for Get Log Page
    b[262] = c.error_log_entries; // ELPE (0-based)
    put(&mut b, 266, &343u16.to_le_bytes()); // WCTEMP
    put(&mut b, 268, &373u16.to_le_bytes()); // CCTEMP
    b[512] = 0x66; // SQES
    b[513] = 0x44; // CQES
    put(&mut b, 516, &(s.namespaces.len() as u32).to_le_bytes()); // NN
    put(&mut b, 520, &c.oncs.to_le_bytes());
    // VWC: present, and Flush with NSID FFFFFFFFh supported.
    b[525] = if c.vwc { 0b111 } else { 0 };
    put(&mut b, 536, &c.sgls.to_le_bytes());
    let nqn = format!("nqn.2019-08.org.qemu:{}", c.serial);
    let n = nqn.len().min(255);
    put(&mut b, 768, &nqn.as_bytes()[..n]);
    put(&mut b, 2048, &2500u16.to_le_bytes()); // PSD0 max power: 25 W
    b
}

/// The Identify Namespace structure (NVMe 1.4 Figure 245).
pub(crate) fn identify_namespace(s: &Inner, nsid: u32) -> Result<Vec<u8>, Status> {
    let ns = nsid
        .checked_sub(1)
        .and_then(|i| s.namespaces.get(i as usize))
        .ok_or(Status::INVALID_NAMESPACE)?;
    let mut b = vec![0u8; IDENTIFY_SIZE];
    if !ns.attached {
        return Ok(b); // an inactive namespace: all zeros
    }
    put(&mut b, 0, &ns.blocks.to_le_bytes()); // NSZE
    put(&mut b, 8, &ns.blocks.to_le_bytes()); // NCAP
    put(&mut b, 16, &ns.blocks.to_le_bytes()); // NUSE
    let lbads: u32 = if ns.block_size == 4096 { 12 } else { 9 };
    if ns.metadata_size == 0 {
        b[25] = 1; // NLBAF: two formats (0-based)
        b[26] = if lbads == 12 { 1 } else { 0 }; // FLBAS
    } else {
        b[25] = 2; // NLBAF: a third format, the one in use
        b[26] = 2; // FLBAS: format 2, metadata in a separate buffer
        b[27] = 0b10; // MC: separate metadata buffer supported
        let lbaf2 = (lbads << 16) | u32::from(ns.metadata_size);
        put(&mut b, 136, &lbaf2.to_le_bytes()); // LBAF2: data size + MS
    }
    b[33] = 0b1001; // DLFEAT: deallocated blocks read as zeros; DEAC in Write Zeroes
    let mut nguid = [0u8; 16];
    nguid[..4].copy_from_slice(&nsid.to_be_bytes());
    nguid[4..8].copy_from_slice(b"MODL");
    put(&mut b, 104, &nguid);
    let eui = [
        0x52,
        0x54,
        0x00,
        0x00,
        (nsid >> 24) as u8,
        (nsid >> 16) as u8,
        (nsid >> 8) as u8,
        nsid as u8,
    ];
    put(&mut b, 120, &eui);
    put(&mut b, 128, &(9u32 << 16).to_le_bytes()); // LBAF0: 512 B
    put(&mut b, 132, &(12u32 << 16).to_le_bytes()); // LBAF1: 4 KiB
    Ok(b)
}

// ----- log pages -----------------------------------------------------------

fn get_log_page(s: &mut Inner, sqe: &SubmissionEntry) -> Result<u32, Status> {
    let lid = (sqe.cdw10 & 0xff) as u8;
    let numd = (sqe.cdw10 >> 16) | ((sqe.cdw11 & 0xffff) << 16);
    let len = (numd as usize + 1) * 4;
    let off = u64::from(sqe.cdw12) | (u64::from(sqe.cdw13) << 32);
    if off & 3 != 0 {
        return Err(Status::INVALID_FIELD);
    }
    if s.max_transfer().is_some_and(|max| len > max) {
        return Err(Status::INVALID_FIELD);
    }
    let page = match lid {
        log_page::ERROR_INFORMATION => error_log(s),
        log_page::SMART_HEALTH => smart_log(s),
        log_page::FIRMWARE_SLOT => firmware_log(s),
        log_page::CHANGED_NAMESPACES => {
            let mut b = vec![0u8; 4096];
            for (i, id) in s.changed_namespaces.iter().take(1024).enumerate() {
                put(&mut b, 4 * i, &id.to_le_bytes());
            }
            if sqe.cdw10 & (1 << 15) == 0 {
                s.changed_namespaces.clear();
            }
            b
        }
        _ => return Err(Status::INVALID_LOG_PAGE),
    };
    let off = usize::try_from(off)
        .ok()
        .filter(|&o| o <= page.len())
        .ok_or(Status::INVALID_FIELD)?;
    let mut data = vec![0u8; len];
    let n = (page.len() - off).min(len);
    data[..n].copy_from_slice(&page[off..off + n]);
    s.send_to_host(sqe, &data)?;
    // Reading the page without Retain Asynchronous Event (CDW10 bit 15)
    // acknowledges the events it reports: their type may be reported again.
    if sqe.cdw10 & (1 << 15) == 0 {
        let ty = match lid {
            log_page::ERROR_INFORMATION => Some(0),
            log_page::SMART_HEALTH => Some(1),
            log_page::CHANGED_NAMESPACES => Some(2),
            _ => None,
        };
        if let Some(ty) = ty {
            s.masked_events.retain(|&t| t != ty);
        }
        s.deliver_events();
    }
    Ok(0)
}

fn error_log(s: &Inner) -> Vec<u8> {
    let entries = usize::from(s.cfg.error_log_entries) + 1;
    let mut b = vec![0u8; entries * ERROR_LOG_ENTRY_SIZE];
    for (i, e) in s.error_log.iter().enumerate().take(entries) {
        let o = i * ERROR_LOG_ENTRY_SIZE;
        put(&mut b, o, &e.count.to_le_bytes());
        put(&mut b, o + 8, &e.sqid.to_le_bytes());
        put(&mut b, o + 10, &e.cid.to_le_bytes());
        put(&mut b, o + 12, &e.status.to_field(false).to_le_bytes());
        put(&mut b, o + 14, &0xffffu16.to_le_bytes()); // parameter error location: n/a
        put(&mut b, o + 16, &e.lba.to_le_bytes());
        put(&mut b, o + 24, &e.nsid.to_le_bytes());
    }
    b
}

fn smart_log(s: &Inner) -> Vec<u8> {
    let h = &s.health;
    let units = |bytes: u128| bytes.div_ceil(512).div_ceil(1000);
    let mut b = vec![0u8; SMART_LOG_SIZE];
    b[0] = s.critical_warning;
    put(&mut b, 1, &323u16.to_le_bytes()); // composite temperature, kelvin
    b[3] = 100; // available spare
    b[4] = 10; // available spare threshold
    put(&mut b, 32, &units(h.bytes_read).to_le_bytes());
    put(&mut b, 48, &units(h.bytes_written).to_le_bytes());
    put(&mut b, 64, &h.host_reads.to_le_bytes());
    put(&mut b, 80, &h.host_writes.to_le_bytes());
    put(&mut b, 112, &1u128.to_le_bytes()); // power cycles
    put(&mut b, 160, &h.media_errors.to_le_bytes());
    put(&mut b, 176, &u128::from(s.error_count()).to_le_bytes());
    b
}

fn firmware_log(s: &Inner) -> Vec<u8> {
    let mut b = vec![0u8; 512];
    b[0] = 1; // AFI: slot 1 active
    put_str(&mut b, 8, 8, &s.cfg.firmware);
    b
}
