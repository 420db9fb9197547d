//! psync: pread/pwrite, one I/O at a time, inside `queue`.

use std::fs::File;
use std::os::unix::fs::FileExt;

use super::{AlignedBuf, Done, Engine, Files};
use crate::error::Result;
use crate::options::Dir;

pub struct Psync {
    /// The job's files (fio's list), and the one of each slot.
    files: Files,
    bufs: Vec<AlignedBuf>,
    done: Vec<Done>,
    size: u64,
    lbs: u64,
}

impl Psync {
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
        Ok(Psync {
            files: Files::new(file, slots),
            bufs,
            done: Vec::new(),
            size,
            lbs,
        })
    }
}

/// One I/O done now, in the calling thread: a trim ([`super::trim_now`]),
/// or a pread/pwrite of `buf[..len]` at `offset`. psync's `queue`, and each
/// submit worker of `io_submit_mode=offload`.
pub(crate) fn io_now(
    file: &File,
    slot: usize,
    dir: Dir,
    offset: u64,
    buf: &mut [u8],
    len: usize,
) -> Done {
    if dir == Dir::Trim {
        return super::trim_now(file, slot, offset, len);
    }
    let b = &mut buf[..len];
    let r = match dir {
        Dir::Read => file.read_at(b, offset),
        // (Trims returned above.)
        Dir::Write | Dir::Trim => file.write_at(b, offset),
    };
    match r {
        Ok(n) if n == len => Done::new(slot, Ok(())),
        // fio: a short transfer that cannot be completed ("full resid")
        // is EIO.
        Ok(n) => Done::failed(
            slot,
            libc::EIO,
            format!("short {dir:?} at {offset}: {n} of {len} bytes"),
        ),
        Err(e) => Done::failed(
            slot,
            e.raw_os_error().unwrap_or(libc::EIO),
            format!("{dir:?} at {offset}: {e}"),
        ),
    }
}

impl Engine for Psync {
    fn buf_mut(&mut self, slot: usize) -> &mut [u8] {
        self.bufs[slot].as_mut_slice()
    }
    fn queue(&mut self, slot: usize, dir: Dir, offset: u64, len: usize) -> Result<()> {
        let file = self.files.of_slot(slot);
        let done = io_now(file, slot, dir, offset, self.bufs[slot].as_mut_slice(), len);
        self.done.push(done);
        Ok(())
    }
    fn commit(&mut self) -> Result<()> {
        Ok(())
    }
    fn reap(&mut self, _min: usize, _max: usize, out: &mut Vec<Done>) -> Result<()> {
        out.append(&mut self.done);
        Ok(())
    }
    fn is_sync(&self) -> bool {
        true
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
