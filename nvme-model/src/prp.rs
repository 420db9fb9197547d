//! PRP data pointers: turning PRP1/PRP2 (and PRP lists) into IOVA segments,
//! and moving data between those segments and model buffers.

use super::dma::DmaTable;
use super::faults::Status;

/// A contiguous piece of a transfer: (IOVA, length).
pub(crate) type Segment = (u64, usize);

/// Walk the PRP entries of a `len`-byte transfer with memory page size
/// `page` (from CC.MPS), following the rules of NVMe 1.4 §4.3:
///
/// - PRP1 may have any dword-aligned offset; it covers up to the end of its page.
/// - If the rest fits in one page, PRP2 is a page-aligned data pointer.
/// - Otherwise PRP2 points to a PRP list (qword-aligned offset allowed).
///   Every entry is a page-aligned data pointer, except that the last entry
///   of a list page, when more entries are needed, is a page-aligned pointer
///   to the next list page.
///
/// Reading a list page is itself DMA and can fault (Data Transfer Error).
pub(crate) fn segments(
    dma: &mut DmaTable,
    page: usize,
    prp1: u64,
    prp2: u64,
    len: usize,
) -> Result<Vec<Segment>, Status> {
    let mask = page as u64 - 1;
    if len == 0 {
        return Ok(Vec::new());
    }
    if prp1 & 3 != 0 {
        return Err(Status::PRP_OFFSET_INVALID);
    }
    let first = len.min(page - (prp1 & mask) as usize);
    let mut segs = Vec::with_capacity(1 + (len - first).div_ceil(page));
    segs.push((prp1, first));
    let mut left = len - first;
    if left == 0 {
        return Ok(segs);
    }
    if left <= page {
        if prp2 & mask != 0 {
            return Err(Status::PRP_OFFSET_INVALID);
        }
        segs.push((prp2, left));
        return Ok(segs);
    }
    // PRP2 is a list pointer.
    if prp2 & 7 != 0 {
        return Err(Status::PRP_OFFSET_INVALID);
    }
    let mut list = prp2;
    loop {
        let entries_in_page = (page - (list & mask) as usize) / 8;
        let needed = left.div_ceil(page);
        // If everything left fits in this list page, read just those entries;
        // otherwise the last slot is a chain pointer.
        let (count, chained) = if needed <= entries_in_page {
            (needed, false)
        } else {
            (entries_in_page, true)
        };
        let mut raw = vec![0u8; count * 8];
        dma.read(list, &mut raw)
            .map_err(|_| Status::DATA_TRANSFER_ERROR)?;
        let entries: Vec<u64> = raw
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect();
        let data_entries = if chained { count - 1 } else { count };
        for &e in &entries[..data_entries] {
            if e & mask != 0 {
                return Err(Status::PRP_OFFSET_INVALID);
            }
            let n = left.min(page);
            segs.push((e, n));
            left -= n;
        }
        if !chained {
            debug_assert_eq!(left, 0);
            return Ok(segs);
        }
        let next = entries[count - 1];
        if next & mask != 0 {
            return Err(Status::PRP_OFFSET_INVALID);
        }
        list = next;
    }
}

/// Device → host: scatter `data` over `segs`.
pub(crate) fn to_host(dma: &mut DmaTable, segs: &[Segment], data: &[u8]) -> Result<(), Status> {
    let mut off = 0;
    for &(iova, n) in segs {
        dma.write(iova, &data[off..off + n])
            .map_err(|_| Status::DATA_TRANSFER_ERROR)?;
        off += n;
    }
    Ok(())
}

/// Host → device: gather `segs` into `out`.
pub(crate) fn from_host(
    dma: &mut DmaTable,
    segs: &[Segment],
    out: &mut [u8],
) -> Result<(), Status> {
    let mut off = 0;
    for &(iova, n) in segs {
        dma.read(iova, &mut out[off..off + n])
            .map_err(|_| Status::DATA_TRANSFER_ERROR)?;
        off += n;
    }
    Ok(())
}

/// Translate every segment without moving data (for [`super::Backing::Null`]).
pub(crate) fn check(dma: &mut DmaTable, segs: &[Segment], write: bool) -> Result<(), Status> {
    for &(iova, n) in segs {
        dma.check(iova, n, write)
            .map_err(|_| Status::DATA_TRANSFER_ERROR)?;
    }
    Ok(())
}
