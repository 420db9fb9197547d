//! NVM command set I/O commands: Read, Write, Compare, Flush, Write Zeroes,
//! Dataset Management.

use nvme_core::cmd::{io_opcode, SubmissionEntry};

use super::faults::Status;
use super::prp;
use super::state::{Done, Inner};

/// ONCS bits the model implements.
pub(crate) const ONCS_COMPARE: u16 = 1 << 0;
pub(crate) const ONCS_DSM: u16 = 1 << 2;
pub(crate) const ONCS_WRITE_ZEROES: u16 = 1 << 3;

pub(crate) fn execute(s: &mut Inner, sqe: &SubmissionEntry) -> Done {
    match execute_inner(s, sqe) {
        Ok(()) => Done::ok(0),
        Err(status) => Done::err(status),
    }
}

fn execute_inner(s: &mut Inner, sqe: &SubmissionEntry) -> Result<(), Status> {
    if (sqe.cdw0 >> 8) & 3 != 0 {
        return Err(Status::INVALID_FIELD); // fused operations are not supported
    }
    let op = sqe.opcode();
    let oncs = s.cfg.oncs;
    let supported = match op {
        io_opcode::FLUSH | io_opcode::WRITE | io_opcode::READ => true,
        io_opcode::COMPARE => oncs & ONCS_COMPARE != 0,
        io_opcode::WRITE_ZEROES => oncs & ONCS_WRITE_ZEROES != 0,
        io_opcode::DATASET_MANAGEMENT => oncs & ONCS_DSM != 0,
        _ => false,
    };
    if !supported {
        return Err(Status::INVALID_OPCODE);
    }
    if op == io_opcode::FLUSH && sqe.nsid == u32::MAX {
        return Ok(()); // flush all namespaces: nothing is volatile here
    }
    let ns = sqe
        .nsid
        .checked_sub(1)
        .map(|i| i as usize)
        .filter(|&i| i < s.namespaces.len() && s.namespaces[i].attached)
        .ok_or(Status::INVALID_NAMESPACE)?;
    match op {
        io_opcode::FLUSH => Ok(()),
        io_opcode::READ | io_opcode::WRITE | io_opcode::COMPARE => read_write(s, ns, sqe),
        io_opcode::WRITE_ZEROES => write_zeroes(s, ns, sqe),
        io_opcode::DATASET_MANAGEMENT => dataset_management(s, ns, sqe),
        _ => unreachable!("checked above"),
    }
}

fn slba(sqe: &SubmissionEntry) -> u64 {
    u64::from(sqe.cdw10) | (u64::from(sqe.cdw11) << 32)
}

fn nlb(sqe: &SubmissionEntry) -> u64 {
    u64::from(sqe.cdw12 & 0xffff) + 1
}

fn read_write(s: &mut Inner, ns: usize, sqe: &SubmissionEntry) -> Result<(), Status> {
    let op = sqe.opcode();
    let (slba, nlb) = (slba(sqe), nlb(sqe));
    if (sqe.cdw12 >> 26) & 0xf != 0 {
        return Err(Status::INVALID_FIELD); // PRINFO: no protection information
    }
    let bs = s.namespaces[ns].block_size;
    let len = nlb as usize * bs;
    if s.max_transfer().is_some_and(|max| len > max) {
        return Err(Status::INVALID_FIELD);
    }
    if !s.namespaces[ns].in_range(slba, nlb) {
        return Err(Status::LBA_OUT_OF_RANGE);
    }
    let segs = s.data_segments(sqe, len)?;
    let stores = s.namespaces[ns].stores_data();
    match op {
        io_opcode::READ => {
            if stores {
                let mut buf = vec![0u8; len];
                s.namespaces[ns].read(slba, &mut buf);
                prp::to_host(&mut s.dma, &segs, &buf)?;
            } else {
                prp::check(&mut s.dma, &segs, true)?;
            }
            s.health.host_reads += 1;
            s.health.bytes_read += len as u128;
        }
        io_opcode::WRITE => {
            // FUA (bit 30) needs nothing: every write is already "durable".
            if stores {
                let mut buf = vec![0u8; len];
                prp::from_host(&mut s.dma, &segs, &mut buf)?;
                s.namespaces[ns].write(slba, &buf);
            } else {
                prp::check(&mut s.dma, &segs, false)?;
            }
            s.health.host_writes += 1;
            s.health.bytes_written += len as u128;
        }
        io_opcode::COMPARE => {
            let mut host = vec![0u8; len];
            prp::from_host(&mut s.dma, &segs, &mut host)?;
            s.health.host_reads += 1;
            s.health.bytes_read += len as u128;
            if stores {
                let mut media = vec![0u8; len];
                s.namespaces[ns].read(slba, &mut media);
                if media != host {
                    return Err(Status::COMPARE_FAILURE);
                }
            }
        }
        _ => unreachable!(),
    }
    Ok(())
}

fn write_zeroes(s: &mut Inner, ns: usize, sqe: &SubmissionEntry) -> Result<(), Status> {
    let (slba, nlb) = (slba(sqe), nlb(sqe));
    if (sqe.cdw12 >> 26) & 0xf != 0 {
        return Err(Status::INVALID_FIELD);
    }
    if !s.namespaces[ns].in_range(slba, nlb) {
        return Err(Status::LBA_OUT_OF_RANGE);
    }
    s.namespaces[ns].zero(slba, nlb);
    Ok(())
}

fn dataset_management(s: &mut Inner, ns: usize, sqe: &SubmissionEntry) -> Result<(), Status> {
    let ranges = (sqe.cdw10 & 0xff) as usize + 1;
    let deallocate = sqe.cdw11 & (1 << 2) != 0;
    let raw = s.fetch_from_host(sqe, ranges * 16)?;
    if !deallocate {
        return Ok(()); // attributes only (IDR/IDW): hints, nothing to do
    }
    let list: Vec<(u64, u64)> = raw
        .chunks_exact(16)
        .map(|r| {
            let len = u32::from_le_bytes(r[4..8].try_into().expect("4 bytes"));
            let slba = u64::from_le_bytes(r[8..16].try_into().expect("8 bytes"));
            (slba, u64::from(len))
        })
        .collect();
    if list
        .iter()
        .any(|&(slba, n)| !s.namespaces[ns].in_range(slba, n))
    {
        return Err(Status::LBA_OUT_OF_RANGE);
    }
    for (slba, n) in list {
        s.namespaces[ns].zero(slba, n);
    }
    Ok(())
}
