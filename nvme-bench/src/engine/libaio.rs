//! libaio: Linux native AIO (io_submit / io_getevents), as fio's libaio
//! engine. Asynchronous only with O_DIRECT (`direct=1`); buffered I/O
//! completes inside io_submit, as with fio.

use std::fs::File;
use std::os::fd::AsRawFd;

use super::{AlignedBuf, Done, Engine, Files};
use crate::error::Result;
use crate::options::Dir;
use crate::sys::aio::{Context, Event, Iocb, CMD_PREAD, CMD_PWRITE};

/// `IOCB_FLAG_IOPRIO` (linux/aio_abi.h): aio_reqprio holds a priority.
const IOCB_FLAG_IOPRIO: u32 = 1 << 1;

pub struct Libaio {
    // Dropped first: io_destroy waits for the I/Os using the buffers.
    ctx: Context,
    /// The job's files (fio's list), and the one of each slot.
    files: Files,
    bufs: Vec<AlignedBuf>,
    /// One iocb per slot, boxed so their addresses stay put.
    iocbs: Box<[Iocb]>,
    queued: Vec<*mut Iocb>,
    events: Vec<Event>,
    size: u64,
    lbs: u64,
    /// Trims done in `queue` (synchronously), reported by the next `reap`.
    trims: Vec<Done>,
    /// Per slot: the cmdprio priority of its next I/O (fio's libaio sets
    /// aio_reqprio and IOCB_FLAG_IOPRIO only for those).
    prio: Vec<Option<u16>>,
}

// SAFETY: the raw pointers point into `iocbs`, which this value owns.
unsafe impl Send for Libaio {}

impl Libaio {
    pub fn open(
        path: &str,
        flags: i32,
        write: bool,
        want: Option<u64>,
        slots: usize,
        buf_len: usize,
    ) -> Result<Self> {
        let (file, size, lbs, bufs) =
            super::open_with_bufs(path, flags, write, want, slots, buf_len)?;
        let ctx = Context::new(u32::try_from(slots).unwrap_or(u32::MAX))?;
        Ok(Libaio {
            ctx,
            files: Files::new(file, slots),
            bufs,
            iocbs: vec![Iocb::default(); slots].into_boxed_slice(),
            queued: Vec::with_capacity(slots),
            events: vec![Event::default(); slots.max(1)],
            size,
            lbs,
            trims: Vec::new(),
            prio: vec![None; slots],
        })
    }
}

impl Engine for Libaio {
    fn buf_mut(&mut self, slot: usize) -> &mut [u8] {
        self.bufs[slot].as_mut_slice()
    }
    fn queue(&mut self, slot: usize, dir: Dir, offset: u64, len: usize) -> Result<()> {
        if dir == Dir::Trim {
            // fio's libaio trims synchronously (FIO_ASYNCIO_SYNC_TRIM).
            let file = self.files.of_slot(slot);
            self.trims.push(super::trim_now(file, slot, offset, len));
            return Ok(());
        }
        let buf = self.bufs[slot].as_mut_ptr();
        let cb = &mut self.iocbs[slot];
        *cb = Iocb {
            data: slot as u64,
            opcode: match dir {
                Dir::Read => CMD_PREAD,
                // (Trims returned above.)
                Dir::Write | Dir::Trim => CMD_PWRITE,
            },
            fildes: self.files.of_slot(slot).as_raw_fd() as u32,
            buf: buf as u64,
            nbytes: len as u64,
            offset: i64::try_from(offset)
                .map_err(|_| crate::error::Error::msg(format!("offset {offset} too large")))?,
            ..Iocb::default()
        };
        if let Some(p) = self.prio.get(slot).copied().flatten() {
            cb.reqprio = p as i16;
            cb.flags |= IOCB_FLAG_IOPRIO;
        }
        self.queued.push(cb as *mut Iocb);
        Ok(())
    }
    fn set_ioprio(&mut self, slot: usize, _def: u16, cmd: Option<u16>) {
        if let Some(p) = self.prio.get_mut(slot) {
            *p = cmd;
        }
    }
    fn commit(&mut self) -> Result<()> {
        let mut at = 0;
        let mut idle = 0;
        while at < self.queued.len() {
            // SAFETY: each queued pointer is a slot's iocb in `self.iocbs`
            // (never moved), whose buffer is that slot's, handed to the
            // device until the slot's completion is reaped.
            let n = unsafe { self.ctx.submit(&mut self.queued[at..])? };
            at += n;
            if n == 0 {
                idle += 1;
                if idle > 1000 {
                    return Err(crate::error::Error::msg(
                        "io_submit: EAGAIN for 1000 tries in a row",
                    ));
                }
                std::thread::yield_now();
            }
        }
        self.queued.clear();
        Ok(())
    }
    fn reap(&mut self, min: usize, max: usize, out: &mut Vec<Done>) -> Result<()> {
        if super::reap_trims(&mut self.trims, max, out) {
            // Trims done in `queue` complete first, without waiting.
            return Ok(());
        }
        let max = max.clamp(1, self.events.len());
        let n = self.ctx.getevents(min, &mut self.events[..max])?;
        for e in &self.events[..n] {
            let slot = e.data as usize;
            let len = self.iocbs.get(slot).map_or(0, |c| c.nbytes) as i64;
            out.push(if e.res == len {
                Done::new(slot, Ok(()))
            } else if e.res < 0 {
                let errno = i32::try_from(-e.res).unwrap_or(libc::EIO);
                Done::failed(
                    slot,
                    errno,
                    format!("{}", std::io::Error::from_raw_os_error(errno)),
                )
            } else {
                Done::failed(
                    slot,
                    libc::EIO,
                    format!("short transfer: {} of {len} bytes", e.res),
                )
            });
        }
        Ok(())
    }
    fn size(&self) -> u64 {
        self.size
    }
    fn file(&self) -> Option<&File> {
        self.files.at(0)
    }
    fn add_file(&mut self, file: File) -> Result<()> {
        self.files.add(file);
        Ok(())
    }
    fn replace_file(&mut self, i: usize, file: File) -> Result<()> {
        self.files.replace(i, file)
    }
    fn set_file(&mut self, slot: usize, file: usize) {
        self.files.set(slot, file);
    }
    fn file_at(&self, i: usize) -> Option<&File> {
        self.files.at(i)
    }
    fn block_size(&self) -> u64 {
        self.lbs
    }
}
