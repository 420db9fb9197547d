//! The kernel engines: io_uring (read/write on a block device or file,
//! O_DIRECT) and io_uring_cmd (NVMe passthrough on /dev/ngXnY with 128-byte
//! SQEs and 32-byte CQEs). Options: hipri (IORING_SETUP_IOPOLL: completions
//! are polled from the driver's poll queues), fixedbufs (registered
//! buffers, READ_FIXED/WRITE_FIXED), registerfiles (a fixed file table),
//! sqthread_poll (a kernel thread polls the SQ: no syscall to submit).

use std::fs::File;
use std::os::unix::io::AsRawFd;

use io_uring::{cqueue, opcode, squeue, types, IoUring};

use super::{AlignedBuf, Done, Engine};
use crate::error::{Error, Result};
use crate::options::{Dir, Job};

/// `NVME_URING_CMD_IO`: `_IOWR('N', 0x80, struct nvme_uring_cmd)` (72 bytes).
const NVME_URING_CMD_IO: u32 = (3 << 30) | (72 << 16) | (0x4e << 8) | 0x80;
/// `NVME_IOCTL_ID`: `_IO('N', 0x40)`, the namespace id of a device node.
const NVME_IOCTL_ID: libc::c_ulong = 0x4e40;

#[derive(Clone, Copy)]
pub struct Params {
    fd: i32,
    fixed_file: bool,
    /// The index of `fd` in the registered file table (`fixed_file`).
    fixed_idx: u32,
    fixed_bufs: bool,
    nsid: u32,
    lbs: u64,
    /// The SQE's ioprio (fio sets td->ioprio, or cmdprio's choice).
    ioprio: u16,
}

/// What differs between the two rings: how an SQE is made.
pub trait Flavor: Sized {
    type S: squeue::EntryMarker;
    type C: cqueue::EntryMarker;
    fn sqe(p: &Params, slot: usize, dir: Dir, off: u64, ptr: *mut u8, len: usize) -> Self::S;
    /// Map a CQE result to success or an error text.
    fn check(res: i32, len: usize) -> std::result::Result<(), String>;
}

pub struct Plain;
pub struct Cmd;

impl Flavor for Plain {
    type S = squeue::Entry;
    type C = cqueue::Entry;
    fn sqe(p: &Params, slot: usize, dir: Dir, off: u64, ptr: *mut u8, len: usize) -> squeue::Entry {
        let len32 = len as u32;
        macro_rules! build {
            ($fd:expr) => {
                match (dir, p.fixed_bufs) {
                    (Dir::Read, false) => opcode::Read::new($fd, ptr, len32)
                        .offset(off)
                        .ioprio(p.ioprio)
                        .build(),
                    (Dir::Write | Dir::Trim, false) => opcode::Write::new($fd, ptr, len32)
                        .offset(off)
                        .ioprio(p.ioprio)
                        .build(),
                    (Dir::Read, true) => opcode::ReadFixed::new($fd, ptr, len32, slot as u16)
                        .offset(off)
                        .ioprio(p.ioprio)
                        .build(),
                    (Dir::Write | Dir::Trim, true) => {
                        opcode::WriteFixed::new($fd, ptr, len32, slot as u16)
                            .offset(off)
                            .ioprio(p.ioprio)
                            .build()
                    }
                }
            };
        }
        let e = if p.fixed_file {
            build!(types::Fixed(p.fixed_idx))
        } else {
            build!(types::Fd(p.fd))
        };
        e.user_data(slot as u64)
    }
    fn check(res: i32, len: usize) -> std::result::Result<(), String> {
        if res < 0 {
            Err(std::io::Error::from_raw_os_error(-res).to_string())
        } else if res as usize != len {
            Err(format!("short transfer: {res} of {len} bytes"))
        } else {
            Ok(())
        }
    }
}

impl Flavor for Cmd {
    type S = squeue::Entry128;
    type C = cqueue::Entry32;
    fn sqe(
        p: &Params,
        slot: usize,
        dir: Dir,
        off: u64,
        ptr: *mut u8,
        len: usize,
    ) -> squeue::Entry128 {
        // struct nvme_uring_cmd (include/uapi/linux/nvme_ioctl.h).
        let mut c = [0u8; 80];
        c[0] = match dir {
            Dir::Read => 0x02,
            // (Trims never get here: `queue` does them itself.)
            Dir::Write | Dir::Trim => 0x01,
        };
        c[4..8].copy_from_slice(&p.nsid.to_le_bytes());
        c[24..32].copy_from_slice(&(ptr as u64).to_le_bytes());
        c[36..40].copy_from_slice(&(len as u32).to_le_bytes());
        let slba = off / p.lbs;
        let nlb = (len as u64 / p.lbs).saturating_sub(1) as u32;
        c[40..44].copy_from_slice(&(slba as u32).to_le_bytes());
        c[44..48].copy_from_slice(&((slba >> 32) as u32).to_le_bytes());
        c[48..52].copy_from_slice(&nlb.to_le_bytes());
        let e = if p.fixed_file {
            opcode::UringCmd80::new(types::Fixed(0), NVME_URING_CMD_IO)
                .cmd(c)
                .build()
        } else {
            opcode::UringCmd80::new(types::Fd(p.fd), NVME_URING_CMD_IO)
                .cmd(c)
                .build()
        };
        e.user_data(slot as u64)
    }
    fn check(res: i32, _len: usize) -> std::result::Result<(), String> {
        if res < 0 {
            Err(std::io::Error::from_raw_os_error(-res).to_string())
        } else if res > 0 {
            Err(format!("NVMe status {res:#x}"))
        } else {
            Ok(())
        }
    }
}

pub struct Uring<F: Flavor> {
    // Field order matters: the ring (and its registrations) goes before the
    // buffers the kernel may use.
    ring: IoUring<F::S, F::C>,
    /// The job's files (fio's list); `slot_file` picks one per slot.
    files: Vec<File>,
    slot_file: Vec<u32>,
    bufs: Vec<AlignedBuf>,
    lens: Vec<usize>,
    p: Params,
    inflight: usize,
    size: u64,
    kind: &'static str,
    iopoll: bool,
    sqpoll: bool,
    /// Trims done in `queue` (synchronously), reported by the next `reap`.
    trims: Vec<Done>,
    /// Per slot: the ioprio of its next SQE, once `set_ioprio` was called
    /// (`prio_on`); 0 otherwise.
    prio: Vec<u16>,
    prio_on: bool,
}

pub type PlainUring = Uring<Plain>;
pub type CmdUring = Uring<Cmd>;

fn build_ring<S: squeue::EntryMarker, C: cqueue::EntryMarker>(
    job: &Job,
    entries: u32,
) -> Result<IoUring<S, C>> {
    let mut b = IoUring::<S, C>::builder();
    if job.hipri {
        b.setup_iopoll();
    }
    if job.sqthread_poll {
        b.setup_sqpoll(1000);
        if let Some(cpu) = job.sqthread_poll_cpu {
            b.setup_sqpoll_cpu(cpu);
        }
    }
    b.build(entries.next_power_of_two().max(2)).map_err(|e| {
        Error::msg(format!(
            "io_uring setup ({} entries{}{}): {e}",
            entries,
            if job.hipri { ", IOPOLL" } else { "" },
            if job.sqthread_poll { ", SQPOLL" } else { "" }
        ))
    })
}

impl<F: Flavor> Uring<F> {
    #[allow(clippy::too_many_arguments)]
    fn finish(
        job: &Job,
        file: File,
        ring: IoUring<F::S, F::C>,
        p: Params,
        size: u64,
        kind: &'static str,
        slots: usize,
        buf_len: usize,
    ) -> Result<Self> {
        let mut bufs: Vec<AlignedBuf> = (0..slots)
            .map(|_| AlignedBuf::new(buf_len))
            .collect::<Result<_>>()?;
        if p.fixed_bufs {
            let iov: Vec<libc::iovec> = bufs
                .iter_mut()
                .map(|b| libc::iovec {
                    iov_base: b.as_mut_ptr().cast(),
                    iov_len: b.len(),
                })
                .collect();
            // SAFETY: the buffers live in `self.bufs`, which is dropped after
            // `self.ring` (field order), so they outlive the registration.
            unsafe { ring.submitter().register_buffers(&iov) }
                .map_err(|e| Error::msg(format!("io_uring register_buffers: {e}")))?;
        }
        if p.fixed_file {
            ring.submitter()
                .register_files(&[p.fd])
                .map_err(|e| Error::msg(format!("io_uring register_files: {e}")))?;
        }
        Ok(Uring {
            ring,
            files: vec![file],
            slot_file: vec![0; slots],
            bufs,
            lens: vec![0; slots],
            p,
            inflight: 0,
            size,
            kind,
            iopoll: job.hipri,
            sqpoll: job.sqthread_poll,
            trims: Vec::new(),
            prio: vec![0; slots],
            prio_on: false,
        })
    }
}

impl Uring<Plain> {
    pub fn open(
        job: &Job,
        path: &str,
        want: Option<u64>,
        slots: usize,
        buf_len: usize,
    ) -> Result<Self> {
        let (file, size, lbs) = super::open_file(path, job.open_flags(), job.rw.opens_rw(), want)?;
        if job.hipri && !job.direct {
            return Err(Error::msg(format!(
                "job '{}': hipri (polled I/O) needs direct=1",
                job.name
            )));
        }
        let ring = build_ring::<squeue::Entry, cqueue::Entry>(job, slots as u32)?;
        let p = Params {
            fd: file.as_raw_fd(),
            fixed_file: job.registerfiles,
            fixed_idx: 0,
            fixed_bufs: job.fixedbufs,
            nsid: 0,
            lbs,
            ioprio: 0,
        };
        Uring::finish(job, file, ring, p, size, "io_uring", slots, buf_len)
    }
}

impl Uring<Cmd> {
    pub fn open(job: &Job, path: &str, slots: usize, buf_len: usize) -> Result<Self> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(job.rw.opens_rw())
            .open(path)
            .map_err(|e| Error::msg(format!("open {path}: {e}")))?;
        // SAFETY: NVME_IOCTL_ID takes no argument and returns the nsid.
        let nsid = unsafe { libc::ioctl(file.as_raw_fd(), NVME_IOCTL_ID) };
        if nsid <= 0 {
            return Err(Error::msg(format!(
                "{path}: not an NVMe generic device (NVME_IOCTL_ID: {}); io_uring_cmd wants /dev/ngXnY",
                std::io::Error::last_os_error()
            )));
        }
        let (size, lbs) = ng_geometry(path)?;
        let ring = build_ring::<squeue::Entry128, cqueue::Entry32>(job, slots as u32)?;
        let p = Params {
            fd: file.as_raw_fd(),
            fixed_file: job.registerfiles,
            fixed_idx: 0,
            fixed_bufs: false,
            nsid: nsid as u32,
            lbs,
            ioprio: 0,
        };
        Uring::finish(job, file, ring, p, size, "io_uring_cmd", slots, buf_len)
    }
}

/// /dev/ngXnY → the block device nvmeXnY's size and logical block size.
fn ng_geometry(path: &str) -> Result<(u64, u64)> {
    let base = std::path::Path::new(path)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("");
    let blk = base
        .strip_prefix("ng")
        .map(|r| format!("nvme{r}"))
        .ok_or_else(|| Error::msg(format!("{path}: expected a /dev/ngXnY device")))?;
    let read = |f: &str| -> Result<u64> {
        let p = format!("/sys/block/{blk}/{f}");
        std::fs::read_to_string(&p)
            .map_err(|e| Error::msg(format!("{p}: {e}")))?
            .trim()
            .parse()
            .map_err(|_| Error::msg(format!("{p}: not a number")))
    };
    let lbs = read("queue/logical_block_size")?;
    let sectors = read("size")?;
    Ok((sectors * 512, lbs))
}

impl<F: Flavor> Engine for Uring<F> {
    fn buf_mut(&mut self, slot: usize) -> &mut [u8] {
        self.bufs[slot].as_mut_slice()
    }
    fn queue(&mut self, slot: usize, dir: Dir, offset: u64, len: usize) -> Result<()> {
        if len % self.p.lbs as usize != 0 || offset % self.p.lbs != 0 {
            return Err(Error::msg(format!(
                "I/O of {len} bytes at {offset} is not aligned to the {}-byte logical block",
                self.p.lbs
            )));
        }
        if dir == Dir::Trim {
            // fio's io_uring engines trim synchronously
            // (FIO_ASYNCIO_SYNC_TRIM): the ioctl here, the completion at
            // the next reap.
            let file = &self.files[self.slot_file[slot] as usize];
            self.trims.push(super::trim_now(file, slot, offset, len));
            return Ok(());
        }
        let ptr = self.bufs[slot].as_mut_ptr();
        let fi = self.slot_file[slot];
        let e = if fi == 0 && !self.prio_on {
            F::sqe(&self.p, slot, dir, offset, ptr, len)
        } else if fi == 0 {
            let p = Params {
                ioprio: self.prio.get(slot).copied().unwrap_or(0),
                ..self.p
            };
            F::sqe(&p, slot, dir, offset, ptr, len)
        } else {
            let p = Params {
                fd: self.files[fi as usize].as_raw_fd(),
                fixed_idx: fi,
                ioprio: self.prio.get(slot).copied().unwrap_or(0),
                ..self.p
            };
            F::sqe(&p, slot, dir, offset, ptr, len)
        };
        self.lens[slot] = len;
        loop {
            // SAFETY: the buffer (and, via field order, the file and fixed
            // registrations) stays alive and untouched by the job loop until
            // this slot's completion is reaped; Drop drains in-flight I/O.
            let pushed = unsafe { self.ring.submission().push(&e) };
            if pushed.is_ok() {
                break;
            }
            self.ring
                .submit()
                .map_err(|e| Error::msg(format!("io_uring_enter: {e}")))?;
        }
        self.inflight += 1;
        Ok(())
    }
    fn set_ioprio(&mut self, slot: usize, def: u16, cmd: Option<u16>) {
        if let Some(p) = self.prio.get_mut(slot) {
            *p = cmd.unwrap_or(def);
            self.prio_on = true;
        }
    }
    fn commit(&mut self) -> Result<()> {
        self.ring
            .submit()
            .map_err(|e| Error::msg(format!("io_uring_enter (submit): {e}")))?;
        Ok(())
    }
    fn reap(&mut self, min: usize, max: usize, out: &mut Vec<Done>) -> Result<()> {
        if super::reap_trims(&mut self.trims, max, out) {
            // Trims done in `queue` complete first, without waiting.
            return Ok(());
        }
        let mut got = 0;
        loop {
            let mut n = 0;
            for c in self.ring.completion().take(max - got) {
                let e: cqueue::Entry = c.into();
                let slot = e.user_data() as usize;
                let len = self.lens.get(slot).copied().unwrap_or(0);
                let r = e.result();
                let mut d = Done::new(slot, F::check(r, len));
                if r < 0 {
                    d.errno = -r;
                }
                out.push(d);
                n += 1;
            }
            got += n;
            self.inflight -= n.min(self.inflight);
            if got >= min || got >= max {
                return Ok(());
            }
            // One enter with GETEVENTS: waits for (or, with IOPOLL, polls
            // the driver's poll queue for) the completions still wanted.
            match self.ring.submit_and_wait(min - got) {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {}
                Err(e) => return Err(Error::msg(format!("io_uring_enter (wait): {e}"))),
            }
        }
    }
    fn size(&self) -> u64 {
        self.size
    }
    fn file(&self) -> Option<&File> {
        self.files.first()
    }
    fn add_file(&mut self, file: File) -> Result<()> {
        self.files.push(file);
        if self.p.fixed_file {
            // The registered table grows by unregistering and registering
            // every file again (setup only, before any I/O).
            let fds: Vec<i32> = self.files.iter().map(|f| f.as_raw_fd()).collect();
            let sub = self.ring.submitter();
            sub.unregister_files()
                .map_err(|e| Error::msg(format!("io_uring unregister_files: {e}")))?;
            sub.register_files(&fds)
                .map_err(|e| Error::msg(format!("io_uring register_files: {e}")))?;
        }
        Ok(())
    }
    fn replace_file(&mut self, i: usize, file: File) -> Result<()> {
        let fd = file.as_raw_fd();
        match self.files.get_mut(i) {
            Some(f) => *f = file,
            None => return Err(Error::msg(format!("no file {i} to replace"))),
        }
        if self.p.fixed_file {
            // The registered table's entry i now names the new file.
            let at = u32::try_from(i).map_err(|_| Error::msg("file index too large"))?;
            self.ring
                .submitter()
                .register_files_update(at, &[fd])
                .map_err(|e| Error::msg(format!("io_uring register_files_update: {e}")))?;
        }
        Ok(())
    }
    fn set_file(&mut self, slot: usize, file: usize) {
        self.slot_file[slot] = file.min(self.files.len() - 1) as u32;
    }
    fn file_at(&self, i: usize) -> Option<&File> {
        self.files.get(i)
    }
    fn block_size(&self) -> u64 {
        self.p.lbs
    }
    fn extras(&self) -> serde_json::Value {
        serde_json::json!({
            "engine": self.kind,
            "iopoll": self.iopoll,
            "sqpoll": self.sqpoll,
            "fixedbufs": self.p.fixed_bufs,
            "registerfiles": self.p.fixed_file,
        })
    }
}

impl<F: Flavor> Drop for Uring<F> {
    fn drop(&mut self) {
        // Never free buffers the kernel may still write: drain, or leak.
        let mut tries = 0;
        while self.inflight > 0 && tries < 1000 {
            let _ = self.ring.submit_and_wait(if self.iopoll { 0 } else { 1 });
            let n = self.ring.completion().count();
            self.inflight -= n.min(self.inflight);
            tries += 1;
        }
        if self.inflight > 0 {
            std::mem::forget(std::mem::take(&mut self.bufs));
        }
    }
}
