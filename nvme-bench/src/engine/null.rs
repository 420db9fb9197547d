//! fio's `null` engine: no I/O at all, every I/O completes at once. It
//! measures the tool (the job loop, the bookkeeping, the statistics). As
//! fio's engines/null.c: it needs `size` (there is no file to size it), no
//! file is opened or created, any block size goes. At `iodepth=1` the I/O
//! completes inside `queue` (fio reports no slat there); deeper, queued
//! I/Os complete at `commit` and are reaped by the next `reap`, and, as
//! fio's `null_queue` returns `FIO_Q_BUSY` while committed I/Os are not yet
//! reaped, the engine is [`Engine::busy`] from a commit to the next reap:
//! with fio's default `iodepth_batch_submit=1` the job runs one I/O at a
//! time whatever `iodepth` says (fio reports 100% at depth 1), and with
//! `iodepth_batch_submit=N` in batches of N.

use super::{AlignedBuf, Done, Engine};
use crate::error::Result;
use crate::options::Dir;

pub struct Null {
    bufs: Vec<AlignedBuf>,
    queued: Vec<usize>,
    done: Vec<usize>,
    size: u64,
    sync: bool,
}

impl Null {
    /// `size`: offset + size of the job (the whole "device").
    pub fn open(size: u64, slots: usize, buf_len: usize, iodepth: u32) -> Result<Self> {
        let bufs = (0..slots)
            .map(|_| AlignedBuf::new(buf_len))
            .collect::<Result<_>>()?;
        Ok(Null {
            bufs,
            queued: Vec::with_capacity(slots),
            done: Vec::with_capacity(slots),
            size,
            sync: iodepth <= 1,
        })
    }
}

impl Engine for Null {
    fn buf_mut(&mut self, slot: usize) -> &mut [u8] {
        self.bufs[slot].as_mut_slice()
    }
    #[inline]
    fn queue(&mut self, slot: usize, _dir: Dir, _offset: u64, _len: usize) -> Result<()> {
        if self.sync {
            self.done.push(slot);
        } else {
            self.queued.push(slot);
        }
        Ok(())
    }
    #[inline]
    fn commit(&mut self) -> Result<()> {
        if !self.queued.is_empty() {
            self.done.append(&mut self.queued);
        }
        Ok(())
    }
    fn reap(&mut self, _min: usize, max: usize, out: &mut Vec<Done>) -> Result<()> {
        let n = self.done.len().min(max.max(1));
        for &slot in &self.done[..n] {
            out.push(Done::ok(slot));
        }
        if n == self.done.len() {
            self.done.clear();
        } else {
            self.done.drain(..n);
        }
        Ok(())
    }
    fn busy(&self) -> bool {
        !self.sync && !self.done.is_empty()
    }
    fn may_be_busy(&self) -> bool {
        !self.sync
    }
    fn is_sync(&self) -> bool {
        self.sync
    }
    fn size(&self) -> u64 {
        self.size
    }
    fn block_size(&self) -> u64 {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completes_everything_at_once() {
        let mut e = Null::open(1 << 20, 4, 4096, 4).unwrap();
        assert!(!e.is_sync());
        let mut out = Vec::new();
        for s in 0..4 {
            e.queue(s, Dir::Read, 0, 4096).unwrap();
        }
        // Nothing completes before the commit.
        e.reap(0, 4, &mut out).unwrap();
        assert!(out.is_empty());
        assert!(!e.busy());
        e.commit().unwrap();
        // Committed and not reaped: fio's FIO_Q_BUSY.
        assert!(e.busy());
        e.reap(1, 2, &mut out).unwrap();
        assert_eq!(out.len(), 2);
        e.reap(1, 4, &mut out).unwrap();
        assert!(!e.busy());
        let slots: Vec<usize> = out.iter().map(|d| d.slot).collect();
        assert_eq!(slots, [0, 1, 2, 3]);
        assert!(out.iter().all(|d| d.res.is_ok()));
        let mut s = Null::open(1 << 20, 1, 4096, 1).unwrap();
        assert!(s.is_sync());
        s.queue(0, Dir::Write, 0, 4096).unwrap();
        let mut out = Vec::new();
        s.reap(1, 1, &mut out).unwrap();
        assert_eq!(out.len(), 1);
    }
}
