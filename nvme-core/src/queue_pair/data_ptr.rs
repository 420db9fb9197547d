//! Data pointers: how a command tells the device where its data is. Short
//! transfers fit in PRP1/PRP2; longer ones, vectored commands (PRP lists or
//! SGL segments) and Dataset Management ranges use a 4 KiB list page, one
//! per command slot, written here through [`ListPage`] (bounds-checked
//! volatile stores into the slot's own page; no `unsafe`).

use crate::buffer::DmaBuf;
use crate::cmd::SubmissionEntry;
use crate::controller::PAGE_SIZE;
use crate::hw::{DmaRegion, Iova};
use crate::units::Lba;

/// Entries of 8 bytes in one list page.
const LIST_WORDS: usize = PAGE_SIZE / 8;

/// One list page per command slot, in one DMA region.
pub(super) struct ListPages<D: DmaRegion> {
    mem: D,
}

/// The list page of one command slot. A slot's page is written only while
/// the slot is being filled for submission, when the device is not reading
/// it (it reads the page only after the doorbell, and is done with it when
/// the command completes).
pub(super) struct ListPage<'a, D: DmaRegion> {
    mem: &'a D,
    offset: usize,
}

impl<D: DmaRegion> ListPage<'_, D> {
    /// Store `value` as 8-byte entry `i` of the page.
    ///
    /// # Panics
    /// If `i` is not inside the page (callers size their lists first).
    #[inline]
    fn write(&self, i: usize, value: u64) {
        assert!(i < LIST_WORDS, "list entry inside its page");
        self.mem.write_u64(self.offset + 8 * i, value);
    }

    /// The page's device address.
    fn iova(&self) -> Iova {
        self.mem.iova().add(self.offset as u64)
    }
}

impl<D: DmaRegion> ListPages<D> {
    /// `mem` holds one page per command slot.
    pub(super) fn new(mem: D) -> Self {
        ListPages { mem }
    }

    fn page(&self, cid: u16) -> ListPage<'_, D> {
        ListPage {
            mem: &self.mem,
            offset: usize::from(cid) * PAGE_SIZE,
        }
    }

    /// PRP1/PRP2 for `len` bytes at `iova` (4 KiB memory pages). Transfers
    /// over two pages use slot `cid`'s list page; `len <= max_transfer`
    /// (at most 2 MiB) keeps the list within one page.
    #[inline]
    pub(super) fn prps(&self, cid: u16, iova: Iova, len: usize) -> (Iova, Iova) {
        let page = PAGE_SIZE as u64;
        let in_page = iova.0 % page;
        if in_page + len as u64 <= page {
            return (iova, Iova(0));
        }
        let first_len = page - in_page;
        let second = iova.0 + first_len;
        let rest = len as u64 - first_len;
        let pages = rest.div_ceil(page) as usize;
        if pages == 1 {
            return (iova, Iova(second));
        }
        let list = self.page(cid);
        for i in 0..pages {
            list.write(i, second + i as u64 * page);
        }
        (iova, list.iova())
    }

    /// Describe the windows of `bufs`, in order, in `cmd`'s data pointer:
    /// with SGLs (one Data Block descriptor, or a Last Segment list in slot
    /// `cid`'s page), or with PRPs (the caller checked that the buffers meet
    /// on page boundaries).
    pub(super) fn vectored(
        &self,
        cid: u16,
        bufs: &[DmaBuf<D>],
        sgls: bool,
        cmd: &mut SubmissionEntry,
    ) {
        let list = self.page(cid);
        if sgls {
            const DATA_BLOCK: u64 = 0x0;
            const LAST_SEGMENT: u64 = 0x3;
            cmd.cdw0 |= 1 << 14; // PSDT = 01b: SGLs for the data
            if let [b] = bufs {
                cmd.prp1 = b.iova().0;
                cmd.prp2 = b.len() as u64 | (DATA_BLOCK << 60);
            } else {
                for (i, b) in bufs.iter().enumerate() {
                    list.write(2 * i, b.iova().0);
                    list.write(2 * i + 1, b.len() as u64 | (DATA_BLOCK << 60));
                }
                cmd.prp1 = list.iova().0;
                cmd.prp2 = (bufs.len() * 16) as u64 | (LAST_SEGMENT << 60);
            }
            return;
        }
        // PRP: PRP1 is the first byte; then every page boundary in order.
        let page = PAGE_SIZE as u64;
        let mut entries = 0usize;
        let mut second = 0u64;
        for (i, b) in bufs.iter().enumerate() {
            let start = b.iova().0;
            let end = start + b.len() as u64;
            let mut p = if i == 0 {
                (start / page + 1) * page
            } else {
                start
            };
            while p < end {
                if entries == 0 {
                    second = p;
                }
                list.write(entries, p);
                entries += 1;
                p += page;
            }
        }
        cmd.prp1 = bufs.first().map_or(0, |b| b.iova().0);
        cmd.prp2 = match entries {
            0 => 0,
            1 => second,
            _ => list.iova().0,
        };
    }

    /// Write Dataset Management ranges (`(lba, blocks)`, at most 256) into
    /// slot `cid`'s page; its address, for PRP1.
    pub(super) fn dsm_ranges(&self, cid: u16, ranges: &[(Lba, u32)]) -> Iova {
        let list = self.page(cid);
        for (i, &(lba, blocks)) in ranges.iter().enumerate() {
            // Context attributes 0 (dword 0), length in blocks (dword 1),
            // starting LBA (dwords 2-3), little endian.
            list.write(2 * i, u64::from(blocks) << 32);
            list.write(2 * i + 1, lba.0);
        }
        list.iova()
    }
}
