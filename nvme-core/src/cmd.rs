//! Submission and completion queue entries and command builders.

use crate::hw::Iova;

/// Admin command opcodes.
pub mod admin_opcode {
    /// Delete I/O Submission Queue.
    pub const DELETE_IO_SQ: u8 = 0x00;
    /// Create I/O Submission Queue.
    pub const CREATE_IO_SQ: u8 = 0x01;
    /// Get Log Page.
    pub const GET_LOG_PAGE: u8 = 0x02;
    /// Delete I/O Completion Queue.
    pub const DELETE_IO_CQ: u8 = 0x04;
    /// Create I/O Completion Queue.
    pub const CREATE_IO_CQ: u8 = 0x05;
    /// Identify.
    pub const IDENTIFY: u8 = 0x06;
    /// Abort.
    pub const ABORT: u8 = 0x08;
    /// Set Features.
    pub const SET_FEATURES: u8 = 0x09;
    /// Get Features.
    pub const GET_FEATURES: u8 = 0x0a;
    /// Asynchronous Event Request.
    pub const ASYNC_EVENT_REQUEST: u8 = 0x0c;
    /// Doorbell Buffer Config.
    pub const DOORBELL_BUFFER_CONFIG: u8 = 0x7c;
}

/// NVM command set I/O opcodes.
pub mod io_opcode {
    /// Flush.
    pub const FLUSH: u8 = 0x00;
    /// Write.
    pub const WRITE: u8 = 0x01;
    /// Read.
    pub const READ: u8 = 0x02;
    /// Compare.
    pub const COMPARE: u8 = 0x05;
    /// Write Zeroes.
    pub const WRITE_ZEROES: u8 = 0x08;
    /// Dataset Management.
    pub const DATASET_MANAGEMENT: u8 = 0x09;
}

/// Feature identifiers used by the driver.
pub mod feature {
    /// Arbitration.
    pub const ARBITRATION: u8 = 0x01;
    /// Power Management.
    pub const POWER_MANAGEMENT: u8 = 0x02;
    /// Temperature Threshold.
    pub const TEMPERATURE_THRESHOLD: u8 = 0x04;
    /// Volatile Write Cache.
    pub const VOLATILE_WRITE_CACHE: u8 = 0x06;
    /// Number of Queues.
    pub const NUMBER_OF_QUEUES: u8 = 0x07;
    /// Interrupt Coalescing.
    pub const INTERRUPT_COALESCING: u8 = 0x08;
    /// Asynchronous Event Configuration: which events the controller reports.
    pub const ASYNC_EVENT_CONFIG: u8 = 0x0b;
}

/// Log page identifiers.
pub mod log_page {
    /// Error Information.
    pub const ERROR_INFORMATION: u8 = 0x01;
    /// SMART / Health Information.
    pub const SMART_HEALTH: u8 = 0x02;
    /// Firmware Slot Information.
    pub const FIRMWARE_SLOT: u8 = 0x03;
    /// Changed Namespace List.
    pub const CHANGED_NAMESPACES: u8 = 0x04;
}

/// Identify CNS values.
pub mod cns {
    /// Identify Namespace.
    pub const NAMESPACE: u8 = 0x00;
    /// Identify Controller.
    pub const CONTROLLER: u8 = 0x01;
    /// Active Namespace ID list.
    pub const ACTIVE_NAMESPACES: u8 = 0x02;
}

/// A 64-byte submission queue entry.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct SubmissionEntry {
    /// CDW0: opcode (7:0), fused (9:8), PSDT (15:14), command identifier (31:16).
    pub cdw0: u32,
    /// Namespace identifier.
    pub nsid: u32,
    /// CDW2.
    pub cdw2: u32,
    /// CDW3.
    pub cdw3: u32,
    /// Metadata pointer.
    pub mptr: u64,
    /// Data pointer: PRP entry 1.
    pub prp1: u64,
    /// Data pointer: PRP entry 2.
    pub prp2: u64,
    /// CDW10.
    pub cdw10: u32,
    /// CDW11.
    pub cdw11: u32,
    /// CDW12.
    pub cdw12: u32,
    /// CDW13.
    pub cdw13: u32,
    /// CDW14.
    pub cdw14: u32,
    /// CDW15.
    pub cdw15: u32,
}

const _: () = assert!(std::mem::size_of::<SubmissionEntry>() == 64);
const _: () = assert!(std::mem::align_of::<SubmissionEntry>() == 8);

impl SubmissionEntry {
    /// The entry as eight little-endian 64-bit words, in memory order
    /// (computed from the fields, so a caller storing them needs no copy of
    /// the struct in memory).
    #[inline(always)]
    pub fn words(&self) -> [u64; 8] {
        let pair = |lo: u32, hi: u32| (u64::from(hi) << 32 | u64::from(lo)).to_le();
        [
            pair(self.cdw0, self.nsid),
            pair(self.cdw2, self.cdw3),
            self.mptr.to_le(),
            self.prp1.to_le(),
            self.prp2.to_le(),
            pair(self.cdw10, self.cdw11),
            pair(self.cdw12, self.cdw13),
            pair(self.cdw14, self.cdw15),
        ]
    }

    /// A command with this opcode and namespace, everything else zero.
    pub const fn new(opcode: u8, nsid: u32) -> Self {
        SubmissionEntry {
            cdw0: opcode as u32,
            nsid,
            cdw2: 0,
            cdw3: 0,
            mptr: 0,
            prp1: 0,
            prp2: 0,
            cdw10: 0,
            cdw11: 0,
            cdw12: 0,
            cdw13: 0,
            cdw14: 0,
            cdw15: 0,
        }
    }
    /// The opcode.
    pub const fn opcode(&self) -> u8 {
        (self.cdw0 & 0xff) as u8
    }
    /// The command identifier.
    pub const fn cid(&self) -> u16 {
        (self.cdw0 >> 16) as u16
    }
    /// Set the command identifier.
    pub fn set_cid(&mut self, cid: u16) {
        self.cdw0 = (self.cdw0 & 0xffff) | (u32::from(cid) << 16);
    }
    /// Set the PRP data pointer.
    pub fn set_prps(&mut self, prp1: Iova, prp2: Iova) {
        self.prp1 = prp1.0;
        self.prp2 = prp2.0;
    }

    /// Identify with the given CNS; data goes to `buf` (one 4 KiB page).
    pub fn identify(cns: u8, nsid: u32, buf: Iova) -> Self {
        let mut e = Self::new(admin_opcode::IDENTIFY, nsid);
        e.prp1 = buf.0;
        e.cdw10 = u32::from(cns);
        e
    }

    /// Get Log Page: `dwords` dwords of log `lid` from byte `offset` into `buf`
    /// (at most one page; the caller sets PRP2 for more).
    pub fn get_log_page(lid: u8, nsid: u32, dwords: u32, offset: u64, buf: Iova) -> Self {
        let numd = dwords.saturating_sub(1);
        let mut e = Self::new(admin_opcode::GET_LOG_PAGE, nsid);
        e.prp1 = buf.0;
        e.cdw10 = u32::from(lid) | ((numd & 0xffff) << 16);
        e.cdw11 = numd >> 16;
        e.cdw12 = offset as u32;
        e.cdw13 = (offset >> 32) as u32;
        e
    }

    /// Set Features.
    pub fn set_features(fid: u8, cdw11: u32) -> Self {
        let mut e = Self::new(admin_opcode::SET_FEATURES, 0);
        e.cdw10 = u32::from(fid);
        e.cdw11 = cdw11;
        e
    }

    /// Get Features (current value).
    pub fn get_features(fid: u8, cdw11: u32) -> Self {
        let mut e = Self::new(admin_opcode::GET_FEATURES, 0);
        e.cdw10 = u32::from(fid);
        e.cdw11 = cdw11;
        e
    }

    /// Set Features / Number of Queues: request `sq` submission and `cq`
    /// completion queues (counts, not 0-based).
    pub fn set_number_of_queues(sq: u16, cq: u16) -> Self {
        Self::set_features(
            feature::NUMBER_OF_QUEUES,
            u32::from(sq.saturating_sub(1)) | (u32::from(cq.saturating_sub(1)) << 16),
        )
    }

    /// Create I/O Completion Queue, physically contiguous, interrupts off.
    pub fn create_io_cq(qid: u16, entries: u16, base: Iova) -> Self {
        let mut e = Self::new(admin_opcode::CREATE_IO_CQ, 0);
        e.prp1 = base.0;
        e.cdw10 = u32::from(qid) | (u32::from(entries.saturating_sub(1)) << 16);
        e.cdw11 = 1; // PC=1, IEN=0, IV=0
        e
    }

    /// Create I/O Submission Queue bound to completion queue `cqid`.
    pub fn create_io_sq(qid: u16, entries: u16, base: Iova, cqid: u16) -> Self {
        let mut e = Self::new(admin_opcode::CREATE_IO_SQ, 0);
        e.prp1 = base.0;
        e.cdw10 = u32::from(qid) | (u32::from(entries.saturating_sub(1)) << 16);
        e.cdw11 = 1 | (u32::from(cqid) << 16); // PC=1, QPRIO=urgent(0)
        e
    }

    /// Delete I/O Submission Queue.
    pub fn delete_io_sq(qid: u16) -> Self {
        let mut e = Self::new(admin_opcode::DELETE_IO_SQ, 0);
        e.cdw10 = u32::from(qid);
        e
    }

    /// Abort command `cid` of submission queue `sqid`.
    pub fn abort(sqid: u16, cid: u16) -> Self {
        let mut e = Self::new(admin_opcode::ABORT, 0);
        e.cdw10 = u32::from(sqid) | (u32::from(cid) << 16);
        e
    }

    /// Delete I/O Completion Queue.
    pub fn delete_io_cq(qid: u16) -> Self {
        let mut e = Self::new(admin_opcode::DELETE_IO_CQ, 0);
        e.cdw10 = u32::from(qid);
        e
    }

    /// Read or Write of `blocks` logical blocks at `slba`. NLB is 16 bits
    /// (0-based): callers keep `blocks` in `1..=65536` (the I/O path checks
    /// transfers against MDTS long before that).
    pub fn rw(opcode: u8, nsid: u32, slba: u64, blocks: u32, fua: bool) -> Self {
        debug_assert!((1..=65536).contains(&blocks), "NLB out of range: {blocks}");
        let mut e = Self::new(opcode, nsid);
        e.cdw10 = slba as u32;
        e.cdw11 = (slba >> 32) as u32;
        e.cdw12 = (blocks.saturating_sub(1) & 0xffff) | (u32::from(fua) << 30);
        e
    }

    /// The words (see [`SubmissionEntry::words`]) of
    /// `rw(opcode, nsid, slba, blocks, fua)` with command id `cid` and PRPs
    /// `prp1`, `prp2`, computed directly: the I/O path stores these without
    /// building the struct.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn rw_words(
        opcode: u8,
        nsid: u32,
        cid: u16,
        slba: u64,
        blocks: u32,
        fua: bool,
        prp1: Iova,
        prp2: Iova,
    ) -> [u64; 8] {
        debug_assert!((1..=65536).contains(&blocks), "NLB out of range: {blocks}");
        let cdw12 = (blocks.wrapping_sub(1) & 0xffff) | (u32::from(fua) << 30);
        [
            (u64::from(nsid) << 32 | u64::from(cid) << 16 | u64::from(opcode)).to_le(),
            0,
            0,
            prp1.0.to_le(),
            prp2.0.to_le(),
            slba.to_le(),
            u64::from(cdw12).to_le(),
            0,
        ]
    }

    /// Flush.
    pub fn flush(nsid: u32) -> Self {
        Self::new(io_opcode::FLUSH, nsid)
    }
}

/// A 16-byte completion queue entry.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct CompletionEntry {
    /// DW0: command-specific result.
    pub result: u32,
    /// DW1: command-specific.
    pub dw1: u32,
    /// SQ head pointer at the time of completion.
    pub sq_head: u16,
    /// SQ the command came from.
    pub sq_id: u16,
    /// Command identifier.
    pub cid: u16,
    /// Phase tag (bit 0) and status field (15:1).
    pub status: u16,
}

const _: () = assert!(std::mem::size_of::<CompletionEntry>() == 16);

impl CompletionEntry {
    /// The phase tag.
    pub const fn phase(&self) -> bool {
        self.status & 1 == 1
    }
    /// The status field, decoded. `Ok(())` for success.
    #[inline]
    pub fn status(&self) -> Result<(), crate::status::NvmeStatus> {
        crate::status::NvmeStatus::from_field(self.status)
    }
}

#[cfg(test)]
#[allow(unsafe_code)]
mod tests {
    use super::*;

    #[test]
    fn words_are_the_entry_in_memory_order() {
        let mut e = SubmissionEntry::rw(0x02, 7, 0x1122_3344_5566_7788, 8, true);
        e.set_cid(0xbeef);
        e.set_prps(crate::hw::Iova(0x1000), crate::hw::Iova(0x2000));
        e.cdw3 = 3;
        e.cdw15 = 15;
        // SAFETY: SubmissionEntry is repr(C), 64 bytes, 8-aligned, no padding.
        let raw: [u64; 8] = unsafe { std::mem::transmute(e) };
        assert_eq!(e.words(), raw);
    }

    #[test]
    fn rw_words_match_the_built_entry() {
        for (op, nsid, cid, slba, blocks, fua) in [
            (0x02u8, 1u32, 0u16, 0u64, 1u32, false),
            (0x01, 0xffff_fffe, 0xffff, u64::MAX - 7, 65536, true),
            (0x02, 7, 0x1234, 0x1122_3344_5566_7788, 8, true),
            (0x05, 2, 1, 1 << 40, 256, false),
        ] {
            let (p1, p2) = (crate::hw::Iova(0xdead_b000), crate::hw::Iova(0x1_0000_2000));
            let mut e = SubmissionEntry::rw(op, nsid, slba, blocks, fua);
            e.set_cid(cid);
            e.set_prps(p1, p2);
            assert_eq!(
                SubmissionEntry::rw_words(op, nsid, cid, slba, blocks, fua, p1, p2),
                e.words(),
                "op {op:#x} nsid {nsid} cid {cid} slba {slba} blocks {blocks} fua {fua}"
            );
        }
    }

    #[test]
    fn field_offsets_match_the_spec() {
        let e = SubmissionEntry::new(0, 0);
        let base = &e as *const _ as usize;
        assert_eq!(&e.nsid as *const _ as usize - base, 4);
        assert_eq!(&e.mptr as *const _ as usize - base, 16);
        assert_eq!(&e.prp1 as *const _ as usize - base, 24);
        assert_eq!(&e.prp2 as *const _ as usize - base, 32);
        assert_eq!(&e.cdw10 as *const _ as usize - base, 40);
        assert_eq!(&e.cdw15 as *const _ as usize - base, 60);
        let c = CompletionEntry::default();
        let base = &c as *const _ as usize;
        assert_eq!(&c.sq_head as *const _ as usize - base, 8);
        assert_eq!(&c.cid as *const _ as usize - base, 12);
        assert_eq!(&c.status as *const _ as usize - base, 14);
    }

    #[test]
    fn builders_encode_fields() {
        let mut rw = SubmissionEntry::rw(io_opcode::WRITE, 1, 0x1_2345_6789, 8, true);
        rw.set_cid(0xbeef);
        assert_eq!(rw.opcode(), 0x01);
        assert_eq!(rw.cid(), 0xbeef);
        assert_eq!(rw.cdw10, 0x2345_6789);
        assert_eq!(rw.cdw11, 1);
        assert_eq!(rw.cdw12, 7 | (1 << 30));
        let q = SubmissionEntry::set_number_of_queues(4, 4);
        assert_eq!(q.cdw10, 7);
        assert_eq!(q.cdw11, 0x0003_0003);
        let sq = SubmissionEntry::create_io_sq(3, 256, Iova(0x1000), 3);
        assert_eq!(sq.cdw10, 3 | (255 << 16));
        assert_eq!(sq.cdw11, 1 | (3 << 16));
        let log =
            SubmissionEntry::get_log_page(log_page::SMART_HEALTH, 0xffff_ffff, 128, 0, Iova(0));
        assert_eq!(log.cdw10, 2 | (127 << 16));
    }
}
