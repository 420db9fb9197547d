//! I/O engines: one per job thread, each owning `iodepth` buffers ("slots")
//! that cycle between the job loop and the device.
//!
//! The job loop calls [`Engine::queue`] for each I/O of a batch, then
//! [`Engine::commit`] once, then [`Engine::reap`]. Where slat and clat start
//! and stop is the loop's business (see `runner.rs` and docs/fio-compat.md).

pub mod libaio;
pub mod model;
pub mod null;
pub mod nvme;
pub mod offload;
pub mod psync;
pub mod uring;

use crate::error::Result;
use crate::options::Dir;

/// A finished I/O.
#[derive(Debug)]
pub struct Done {
    pub slot: usize,
    /// `Err`: the engine's description of the failure.
    pub res: std::result::Result<(), String>,
    /// fio's error number of a failure (EIO unless the engine knows it).
    pub errno: i32,
    /// The I/O's outcome is final (it passed its deadline: ETIMEDOUT) but
    /// its buffer is still with the device: the slot stays busy until a
    /// `late` `Done` for it.
    pub held: bool,
    /// The buffer of an I/O reported earlier as `held` is back: nothing to
    /// count, the slot is free again.
    pub late: bool,
}

impl Done {
    /// A completion: success, or a failure with EIO.
    pub fn new(slot: usize, res: std::result::Result<(), String>) -> Done {
        let errno = if res.is_err() { libc::EIO } else { 0 };
        Done {
            slot,
            res,
            errno,
            held: false,
            late: false,
        }
    }
    /// A success.
    #[inline]
    pub fn ok(slot: usize) -> Done {
        Done {
            slot,
            res: Ok(()),
            errno: 0,
            held: false,
            late: false,
        }
    }
    /// A failure with this error number.
    pub fn failed(slot: usize, errno: i32, msg: String) -> Done {
        Done {
            errno,
            ..Done::new(slot, Err(msg))
        }
    }
}

pub trait Engine {
    /// The slot's buffer (only while the slot is idle), its full capacity.
    fn buf_mut(&mut self, slot: usize) -> &mut [u8];
    /// Queue an I/O of `len` bytes at byte `offset`. Sync engines do it here.
    fn queue(&mut self, slot: usize, dir: Dir, offset: u64, len: usize) -> Result<()>;
    /// Hand everything queued to the device (one doorbell / one syscall).
    fn commit(&mut self) -> Result<()>;
    /// The priority of the slot's next I/O (until set again): the job's
    /// default `def` (fio's td->ioprio), and `cmd` when cmdprio chose one
    /// for this I/O. Sync engines ignore it (ioprio_set covers them).
    fn set_ioprio(&mut self, _slot: usize, _def: u16, _cmd: Option<u16>) {}
    /// Collect at least `min` (0: whatever is there) and at most `max` completions.
    fn reap(&mut self, min: usize, max: usize, out: &mut Vec<Done>) -> Result<()>;
    /// The engine takes no more I/O until the next `reap` (fio's
    /// `FIO_Q_BUSY`): the job loop stops issuing and reaps. Asked only of
    /// engines whose [`Engine::may_be_busy`] is true.
    fn busy(&self) -> bool {
        false
    }
    /// [`Engine::busy`] can ever be true (asked once, at open).
    fn may_be_busy(&self) -> bool {
        false
    }
    /// The I/O happens inside `queue` (psync): no submission latency, and
    /// the job loop does not call `commit` (there is nothing to hand over).
    fn is_sync(&self) -> bool {
        false
    }
    /// Run the job loop's steady state with this engine's calls inlined
    /// (`runner::fast_turns` with the engine's own type; see `runner::Fast`).
    /// `None`: the engine has no such path and the general loop runs.
    fn run_fast(&mut self, _f: &mut crate::runner::Fast<'_>) -> Option<Result<()>> {
        None
    }
    /// Bytes addressable on the target.
    fn size(&self) -> u64;
    /// The kernel file or block device the engine does its I/O on (for
    /// cache invalidation and fadvise hints); `None` for nvme-vfio.
    fn file(&self) -> Option<&std::fs::File> {
        None
    }
    /// Another file for the job's I/O (fio's files after the first): it
    /// gets the next index, 1, 2, ... Engines over one target refuse it.
    fn add_file(&mut self, _file: std::fs::File) -> Result<()> {
        Err(crate::error::Error::msg(
            "this engine does I/O on one target only",
        ))
    }
    /// Put `file` in place of the engine's file `i` (which closes it): a
    /// job with many files reuses the places of files it is done with, so
    /// only as many are open as fio's `openfiles` allows. I/Os in flight on
    /// the old one keep their own reference (the kernel's).
    fn replace_file(&mut self, _i: usize, _file: std::fs::File) -> Result<()> {
        Err(crate::error::Error::msg(
            "this engine does I/O on one target only",
        ))
    }
    /// The file (index into the job's list) the slot's next `queue` goes
    /// to; stays until set again. Engines over one target ignore it.
    fn set_file(&mut self, _slot: usize, _file: usize) {}
    /// File `i` of the job's list (0: `file()`).
    fn file_at(&self, i: usize) -> Option<&std::fs::File> {
        if i == 0 {
            self.file()
        } else {
            None
        }
    }
    /// Offsets and lengths must be multiples of this.
    fn block_size(&self) -> u64;
    /// `reap` returns (with what it has) once this instant passes, even
    /// if fewer than `min` completions came: the job's runtime ends while
    /// a device stalls. Engines that wait in the kernel ignore it.
    fn set_deadline(&mut self, _until: Option<std::time::Instant>) {}
    /// The per-command deadline the engine enforces, if any.
    fn io_timeout(&self) -> Option<std::time::Duration> {
        None
    }
    /// The issue and completion times of the slot's last reaped I/O, when
    /// the engine takes them itself (io_submit_mode=offload's workers).
    fn times(&self, _slot: usize) -> Option<(crate::clock::Instant, crate::clock::Instant)> {
        None
    }
    /// Engine-specific figures for the `nvme_bench` JSON key.
    fn extras(&self) -> serde_json::Value {
        serde_json::Value::Null
    }
}

/// A 4 KiB-aligned heap buffer for O_DIRECT I/O.
pub struct AlignedBuf {
    ptr: std::ptr::NonNull<u8>,
    len: usize,
}

// SAFETY: the buffer is plain heap memory owned by this value.
unsafe impl Send for AlignedBuf {}

impl AlignedBuf {
    pub fn new(len: usize) -> Result<Self> {
        let layout = std::alloc::Layout::from_size_align(len.max(4096), 4096)
            .map_err(|e| crate::error::Error::msg(format!("buffer of {len} bytes: {e}")))?;
        // SAFETY: the layout has a non-zero size.
        let p = unsafe { std::alloc::alloc_zeroed(layout) };
        let ptr = std::ptr::NonNull::new(p)
            .ok_or_else(|| crate::error::Error::msg(format!("out of memory for {len} bytes")))?;
        Ok(AlignedBuf {
            ptr,
            len: len.max(4096),
        })
    }
    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        self.ptr.as_ptr()
    }
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: ptr points to len initialized (zeroed) bytes we own, and
        // &mut self makes this the only access.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        let layout = std::alloc::Layout::from_size_align(self.len, 4096)
            .expect("layout was valid at allocation");
        // SAFETY: allocated in `new` with this very layout.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), layout) }
    }
}

/// Size and logical block size of a kernel block device or file.
pub fn file_geometry(f: &std::fs::File) -> Result<(u64, u64)> {
    use std::os::unix::fs::FileTypeExt;
    use std::os::unix::io::AsRawFd;
    let md = f.metadata()?;
    if md.file_type().is_block_device() {
        let mut size: u64 = 0;
        // SAFETY: BLKGETSIZE64 writes one u64 through the pointer.
        let r = unsafe { libc::ioctl(f.as_raw_fd(), BLKGETSIZE64, &mut size as *mut u64) };
        if r != 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        let mut lbs: libc::c_int = 0;
        // SAFETY: BLKSSZGET writes one int through the pointer.
        let r = unsafe { libc::ioctl(f.as_raw_fd(), BLKSSZGET, &mut lbs as *mut libc::c_int) };
        if r != 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        Ok((size, lbs.max(512) as u64))
    } else {
        Ok((md.len(), 512))
    }
}

const BLKSSZGET: libc::c_ulong = 0x1268;
const BLKGETSIZE64: libc::c_ulong = 0x8008_1272;

/// Open a kernel block device or a regular file for a job. A regular file
/// is not extended here: fio lays files out before the jobs start
/// (`crate::layout`); a file still shorter than the job's region (a
/// write-only job with `fallocate=none`, or `create_on_open=1`) grows by the
/// job's writes, and reads past its end fail, as in fio. The size the job
/// sees for a regular file is `want` when that is more than its length
/// (fio's `real_file_size`).
pub fn open_file(
    path: &str,
    flags: i32,
    write: bool,
    want: Option<u64>,
) -> Result<(std::fs::File, u64, u64)> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut o = std::fs::OpenOptions::new();
    o.read(true);
    let is_file = std::fs::metadata(path).map(|m| m.is_file()).unwrap_or(true);
    if write || is_file {
        o.write(true);
    }
    if is_file {
        o.create(true);
    }
    if flags != 0 {
        o.custom_flags(flags);
    }
    let f = o
        .open(path)
        .map_err(|e| crate::error::Error::msg(format!("open {path}: {e}")))?;
    let (mut size, lbs) = file_geometry(&f)?;
    if f.metadata()?.is_file() {
        size = size.max(want.unwrap_or(0));
    }
    Ok((f, size, lbs))
}

/// [`open_file`] and a buffer of `buf_len` bytes for each of `slots`: the
/// opening of the engines that do their I/O on the job's file from their
/// own buffers (psync, libaio, offload). Returns the file, its size, its
/// logical block size and the buffers.
pub(crate) fn open_with_bufs(
    path: &str,
    flags: i32,
    write: bool,
    want: Option<u64>,
    slots: usize,
    buf_len: usize,
) -> Result<(std::fs::File, u64, u64, Vec<AlignedBuf>)> {
    let (file, size, lbs) = open_file(path, flags, write, want)?;
    let bufs = (0..slots)
        .map(|_| AlignedBuf::new(buf_len))
        .collect::<Result<_>>()?;
    Ok((file, size, lbs, bufs))
}

/// The job's files (fio's list) and the one each slot's I/O goes to: the
/// file bookkeeping behind [`Engine::add_file`], [`Engine::replace_file`],
/// [`Engine::set_file`] and [`Engine::file_at`] for the engines that keep
/// plain files (psync, libaio).
pub(crate) struct Files {
    files: Vec<std::fs::File>,
    slot_file: Vec<usize>,
}

impl Files {
    /// `first` for every one of `slots`.
    pub(crate) fn new(first: std::fs::File, slots: usize) -> Files {
        Files {
            files: vec![first],
            slot_file: vec![0; slots],
        }
    }
    /// The file of `slot`'s I/O.
    pub(crate) fn of_slot(&self, slot: usize) -> &std::fs::File {
        &self.files[self.slot_file[slot]]
    }
    pub(crate) fn at(&self, i: usize) -> Option<&std::fs::File> {
        self.files.get(i)
    }
    pub(crate) fn add(&mut self, file: std::fs::File) {
        self.files.push(file);
    }
    pub(crate) fn replace(&mut self, i: usize, file: std::fs::File) -> Result<()> {
        match self.files.get_mut(i) {
            Some(f) => {
                *f = file;
                Ok(())
            }
            None => Err(crate::error::Error::msg(format!("no file {i} to replace"))),
        }
    }
    pub(crate) fn set(&mut self, slot: usize, file: usize) {
        self.slot_file[slot] = file.min(self.files.len() - 1);
    }
}

/// `BLKDISCARD`: `_IO(0x12, 119)`, discard a byte range of a block device.
const BLKDISCARD: libc::c_ulong = 0x1277;

/// fio's `os_trim` (os/os-linux.h): the `BLKDISCARD` ioctl over `len`
/// bytes at `off`. It is done on whatever the job opened, as fio does: on a
/// regular file the kernel answers ENOTTY ("Inappropriate ioctl for
/// device"), which fails the job with error 25 in both tools.
pub fn discard(f: &std::fs::File, off: u64, len: u64) -> std::io::Result<()> {
    use std::os::unix::io::AsRawFd;
    let range: [u64; 2] = [off, len];
    // SAFETY: BLKDISCARD reads two u64 (start, length) through the pointer,
    // which points at `range` for the whole call; the fd is owned by `f`.
    let r = unsafe { libc::ioctl(f.as_raw_fd(), BLKDISCARD, range.as_ptr()) };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// A trim done synchronously (fio's FIO_ASYNCIO_SYNC_TRIM for its kernel
/// engines, and psync): its completion.
pub fn trim_now(f: &std::fs::File, slot: usize, off: u64, len: usize) -> Done {
    match discard(f, off, len as u64) {
        Ok(()) => Done::new(slot, Ok(())),
        Err(e) => Done::failed(
            slot,
            e.raw_os_error().unwrap_or(libc::EIO),
            format!("trim at {off}: {e}"),
        ),
    }
}

/// The trims an engine did synchronously in `queue`, which its `reap`
/// reports first, without waiting: up to `max` (at least one) of them go to
/// `out`. False when there are none.
pub(crate) fn reap_trims(trims: &mut Vec<Done>, max: usize, out: &mut Vec<Done>) -> bool {
    if trims.is_empty() {
        return false;
    }
    let n = trims.len().min(max.max(1));
    out.extend(trims.drain(..n));
    true
}

/// `BLKFLSBUF`: `_IO(0x12, 97)`, flush a block device's buffer cache.
const BLKFLSBUF: libc::c_ulong = 0x1261;

/// fio's `__file_invalidate_cache`: drop the cached pages of `len` bytes at
/// `off` — `POSIX_FADV_DONTNEED` on a regular file, the `BLKFLSBUF` ioctl on
/// a block device (the whole device), nothing on anything else.
pub fn invalidate_cache(f: &std::fs::File, off: u64, len: u64) -> std::io::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    use std::os::unix::io::AsRawFd;
    let ft = f.metadata()?.file_type();
    if ft.is_file() {
        crate::layout::drop_cache(f, off, len)
    } else if ft.is_block_device() {
        // SAFETY: BLKFLSBUF takes no argument; the fd is open and owned by `f`.
        let r = unsafe { libc::ioctl(f.as_raw_fd(), BLKFLSBUF, 0) };
        if r != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    } else {
        Ok(())
    }
}

/// fio's `fadvise_hint` at open: `POSIX_FADV_RANDOM` / `_SEQUENTIAL` /
/// `_NORMAL` over the job's range of a regular file or block device.
pub fn fadvise(f: &std::fs::File, off: u64, len: u64, advice: libc::c_int) -> std::io::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    use std::os::unix::io::AsRawFd;
    let ft = f.metadata()?.file_type();
    if !(ft.is_file() || ft.is_block_device()) {
        return Ok(());
    }
    let bad = || std::io::Error::from_raw_os_error(libc::EINVAL);
    let off = libc::off_t::try_from(off).map_err(|_| bad())?;
    let len = libc::off_t::try_from(len).map_err(|_| bad())?;
    // SAFETY: the fd is open and owned by `f`; the call takes scalars only.
    let r = unsafe { libc::posix_fadvise(f.as_raw_fd(), off, len, advice) };
    if r != 0 {
        return Err(std::io::Error::from_raw_os_error(r));
    }
    Ok(())
}
