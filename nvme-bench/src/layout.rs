//! fio's file layout (filesetup.c `setup_files` / `extend_file`): before any
//! job runs, a regular file that a kernel-engine job needs and that is
//! missing or shorter than `offset + size` is laid out, one job after the
//! other (fio's default `create_serialize=1`), outside every job's
//! statistics.
//!
//! * A job that reads (or writes with `overwrite=1`) gets the file written
//!   out in full: unlinked, created with `O_TRUNC`, preallocated as
//!   `fallocate=` says, truncated to the size, then written from offset 0
//!   in chunks of the job's largest write block size with fresh random
//!   bytes per chunk (fio's `fill_io_buffer` default), fsynced
//!   (`create_fsync=1`, the default), and the extension's cached pages
//!   dropped (`POSIX_FADV_DONTNEED`). So a read of a fresh file measures
//!   the device, not holes.
//! * A job that only writes gets the file unlinked, created and
//!   preallocated (`fallocate=native` by default; `none` leaves it empty).
//! * `create_on_open=1` skips all of it: the job's open creates the file.
//!
//! Block devices and files already long enough are left alone.
//!
//! `fill_device=1` without `size=` ([`size_unset`]): a regular file's job
//! is sized past the file system's free space and writes until ENOSPC
//! (fio's size of -1, its ENOSPC cleared by the runner); its file is
//! unlinked and created as fio's extend_file does, never preallocated.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;

use crate::error::{Error, Result};
use crate::gen::Rng;
#[cfg(test)]
use crate::options::EngineKind;
use crate::options::{Amount, Fallocate, Job};

/// fio's setup_files for a single-file job without `size=` (`files::plan`
/// does it for several files): a regular file that is missing or empty
/// fails the job ("you need to specify size=", EINVAL), but with
/// `fill_device`, where the job's size becomes what the file system can
/// hold: its free blocks (statvfs `f_bfree`, as root may use the reserved
/// ones) plus the file's own length when it is kept, rounded up to the
/// block size, plus one block, so that the writes end at ENOSPC as
/// fio's (whose size is -1) rather than at the size. A block device is
/// left to its own size (fio: `fill_device` there writes the device once).
/// Errors are (message, errno).
pub fn size_unset(job: &mut Job) -> std::result::Result<(), (String, i32)> {
    use std::os::unix::ffi::OsStrExt;
    if !job.ioengine.on_files() || job.size.is_some() || crate::files::multi(job) {
        return Ok(());
    }
    let Some(path) = job.filename.clone() else {
        return Ok(());
    };
    let len = match std::fs::metadata(&path) {
        Ok(md) if !md.is_file() => return Ok(()),
        Ok(md) => md.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => return Err((format!("{path}: {e}"), e.raw_os_error().unwrap_or(0))),
    };
    if !job.fill_device {
        if len == 0 {
            return Err((
                format!("{}: you need to specify size=", job.name),
                libc::EINVAL,
            ));
        }
        return Ok(());
    }
    // fio's extend_file: a write job (without overwrite/file_append)
    // unlinks its file before creating it again.
    let unlink = job.rw.has_write() && !job.overwrite && !job.file_append;
    if unlink && len > 0 {
        if let Err(e) = std::fs::remove_file(&path) {
            return Err((
                format!("{path}: unlink: {e}"),
                e.raw_os_error().unwrap_or(0),
            ));
        }
    }
    let kept = if unlink { 0 } else { len };
    let dir = match std::path::Path::new(&path).parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| (format!("{path}: NUL in the path"), libc::EINVAL))?;
    // SAFETY: a zeroed statvfs is a valid value to be overwritten.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a NUL-terminated path and `st` a valid statvfs for
    // the call to fill.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        let e = std::io::Error::last_os_error();
        return Err((
            format!("statvfs {}: {e}", dir.display()),
            e.raw_os_error().unwrap_or(0),
        ));
    }
    #[allow(clippy::useless_conversion)] // the field types differ between targets
    let free = u64::from(st.f_bfree).saturating_mul(u64::from(st.f_frsize));
    let bs = job.max_bs().max(1);
    let size = kept
        .saturating_add(free)
        .div_ceil(bs)
        .saturating_mul(bs)
        .saturating_add(bs);
    job.size = Some(Amount::Bytes(size));
    Ok(())
}

/// Lay out `job`'s file if fio would. Returns the bytes of the file laid
/// out (fio's "Laying out IO file (1 file / NMiB)"), or `None` when
/// nothing was to be done.
pub fn prepare(job: &Job, seed: u64) -> Result<Option<u64>> {
    if !job.ioengine.on_files() {
        return Ok(None);
    }
    let Some(path) = job.filename.as_deref() else {
        return Ok(None);
    };
    create_work_dirs(std::slice::from_ref(&path.to_string()))?;
    let (exists, old_len) = match std::fs::metadata(path) {
        Ok(md) if !md.is_file() => return Ok(None),
        Ok(md) => (true, md.len()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (false, 0),
        Err(e) => return Err(Error::msg(format!("{path}: {e}"))),
    };
    // Only a size in bytes says how long the file must be (a percentage is
    // of the file as it is).
    let Some(Amount::Bytes(size)) = job.size else {
        return Ok(None);
    };
    let offset = job.offset.resolve(old_len);
    let needed = offset
        .checked_add(size)
        .ok_or_else(|| Error::msg(format!("{path}: offset {offset} + size {size} overflows")))?;
    if (exists && needed <= old_len) || job.create_on_open {
        return Ok(None);
    }
    lay_out(job, path, old_len, needed, seed)?;
    // fio's message for fill_device counts its size of -1.
    Ok(Some(if job.fill_device { u64::MAX } else { needed }))
}

/// Lay out each of a job's several files that needs it (fio: every file
/// marked to extend, in order). Returns how many files were laid out and
/// fio's total for its message (each file's `offset + io_size`), or `None`.
pub fn prepare_files(
    job: &Job,
    plan: &crate::files::Plan,
    seed: u64,
) -> Result<Option<(usize, u64)>> {
    if !job.ioengine.on_files() {
        return Ok(None);
    }
    let mut n = 0usize;
    let mut total = 0u64;
    for (i, f) in plan.files.iter().enumerate() {
        if !f.extend {
            continue;
        }
        let old_len = match std::fs::metadata(&f.path) {
            Ok(md) => md.len(),
            Err(_) => 0,
        };
        let needed = f.offset + f.io_size;
        lay_out(job, &f.path, old_len, needed, seed.wrapping_add(i as u64))?;
        n += 1;
        total += needed;
    }
    Ok((n > 0).then_some((n, total)))
}

/// fio's `create_work_dirs`: the missing directories of the job's first
/// file name with a `/` are created (mode 0700). Only the first: fio sets
/// its "created" flag after one name, so a later file in another missing
/// directory fails to open, in fio as here.
pub fn create_work_dirs(paths: &[String]) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    let Some(p) = paths.iter().find(|p| p.contains('/')) else {
        return Ok(());
    };
    if let Some(d) = std::path::Path::new(p).parent() {
        if !d.as_os_str().is_empty() && !d.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(d)
                .map_err(|e| Error::msg(format!("create directory {}: {e}", d.display())))?;
        }
    }
    Ok(())
}

/// Write out or create one file of `needed` bytes (`old_len` now).
fn lay_out(job: &Job, path: &str, old_len: u64, needed: u64, seed: u64) -> Result<()> {
    // Not fio's: a missing (or regular) file directly in /dev is a device
    // node that is not there, e.g. a namespace whose driver is not bound
    // yet. fio would create a regular file in devtmpfs and write gigabytes
    // into RAM; nvme-bench refuses. (Directories under /dev, such as
    // /dev/shm, are file systems like any other.)
    if std::path::Path::new(path).parent() == Some(std::path::Path::new("/dev")) {
        return Err(Error::msg(format!(
            "{path} is not a device node ({}): not creating or writing a regular file in /dev; \
             bind the device's kernel driver first, or, when an exec_prerun does that, set \
             create_serialize=0 so the job's files are set up after it runs",
            if old_len == 0 && std::fs::metadata(path).is_err() {
                "it does not exist"
            } else {
                "a regular file is there"
            }
        )));
    }
    // fio's extend_file: `file_append` keeps a write job's file (no
    // unlink, no rewrite).
    let new_layout = job.rw.has_read() || (job.rw.has_write() && job.overwrite && !job.file_append);
    let unlink = job.rw.has_write() && !job.overwrite && !job.file_append;
    let err = |what: &str, e: std::io::Error| Error::msg(format!("laying out {path}: {what}: {e}"));
    if unlink || new_layout {
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(err("unlink", e)),
        }
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(new_layout)
        .mode(0o644)
        .open(path)
        .map_err(|e| err("open", e))?;
    // fio's fallocate_file: nothing under fill_device.
    if !job.fill_device {
        preallocate(&f, job.fallocate, needed).map_err(|e| err("fallocate", e))?;
    }
    if !new_layout {
        return Ok(());
    }
    // fio: fill_device leaves the length to the writes (its size is -1).
    if !job.fill_device {
        f.set_len(needed).map_err(|e| err("ftruncate", e))?;
    }
    let chunk = job.bs_bounds(1).1.clamp(1, 64 << 20).min(needed.max(1)) as usize;
    let mut buf = vec![0u8; chunk];
    let mut rng = Rng::new(seed ^ 0x1a70_0f17);
    let mut left = needed;
    while left > 0 {
        let n = (chunk as u64).min(left) as usize;
        for w in buf[..n].chunks_mut(8) {
            let v = rng.next_u64().to_le_bytes();
            w.copy_from_slice(&v[..w.len()]);
        }
        match f.write_all(&buf[..n]) {
            Ok(()) => {}
            // fio's extend_file: ENOSPC/EDQUOT ends a fill_device layout.
            Err(e)
                if job.fill_device
                    && matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT)) =>
            {
                break;
            }
            Err(e) => return Err(err("write", e)),
        }
        left -= n as u64;
    }
    if job.create_fsync {
        f.sync_all().map_err(|e| err("fsync", e))?;
    }
    // fio drops the cached pages of the extension only (old length on);
    // `invalidate` at the job's open drops the job's whole range.
    drop_cache(&f, old_len, needed - old_len).map_err(|e| err("fadvise", e))?;
    Ok(())
}

/// fio's `fallocate_file`: `native` ignores failure (fio falls back to no
/// preallocation); the others report it.
fn preallocate(f: &std::fs::File, mode: Fallocate, len: u64) -> std::io::Result<()> {
    let fd = f.as_raw_fd();
    let len =
        libc::off_t::try_from(len).map_err(|_| std::io::Error::from_raw_os_error(libc::EFBIG))?;
    if len == 0 {
        return Ok(());
    }
    match mode {
        Fallocate::None => Ok(()),
        Fallocate::Native => {
            // SAFETY: fd is an open file descriptor owned by `f`; fallocate
            // only reads its scalar arguments.
            let _ = unsafe { libc::fallocate(fd, 0, 0, len) };
            Ok(())
        }
        Fallocate::Keep => {
            // SAFETY: as above.
            let r = unsafe { libc::fallocate(fd, libc::FALLOC_FL_KEEP_SIZE, 0, len) };
            if r != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        }
        Fallocate::Posix => {
            // SAFETY: as above; posix_fallocate returns an error number.
            let r = unsafe { libc::posix_fallocate(fd, 0, len) };
            if r != 0 {
                return Err(std::io::Error::from_raw_os_error(r));
            }
            Ok(())
        }
        Fallocate::Truncate => f.set_len(len as u64),
    }
}

/// Drop the cached pages of `len` bytes at `off` of a regular file
/// (`POSIX_FADV_DONTNEED`; clean pages only, as fio).
pub fn drop_cache(f: &std::fs::File, off: u64, len: u64) -> std::io::Result<()> {
    let off =
        libc::off_t::try_from(off).map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    let len =
        libc::off_t::try_from(len).map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: the fd is open and owned by `f`; the call takes scalars only.
    let r = unsafe { libc::posix_fadvise(f.as_raw_fd(), off, len, libc::POSIX_FADV_DONTNEED) };
    if r != 0 {
        return Err(std::io::Error::from_raw_os_error(r));
    }
    Ok(())
}

/// fio's message for `n` laid-out files of `bytes` in all.
pub fn message_files(job_name: &str, n: usize, bytes: u64) -> String {
    let s = if n > 1 { "s" } else { "" };
    let total = if n > 1 { "total " } else { "" };
    format!(
        "{job_name}: Laying out IO file{s} ({n} file{s} / {total}{}MiB)",
        bytes >> 20
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::Rw;
    use std::os::unix::fs::MetadataExt;

    fn scratch(tag: &str) -> std::path::PathBuf {
        let d =
            std::env::temp_dir().join(format!("nvme-bench-layout-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn job(path: &std::path::Path, rw: Rw, size: u64) -> Job {
        Job {
            name: "j".into(),
            filename: Some(path.to_str().unwrap().to_string()),
            rw,
            size: Some(Amount::Bytes(size)),
            ..Job::default()
        }
    }

    /// Allocated bytes (st_blocks is in 512-byte units).
    fn allocated(p: &std::path::Path) -> u64 {
        std::fs::metadata(p).unwrap().blocks() * 512
    }

    #[test]
    fn a_read_job_gets_its_file_written_out() {
        let d = scratch("read");
        let p = d.join("f");
        let j = Job {
            offset: Amount::Bytes(1 << 20),
            ..job(&p, Rw::RandRead, 3 << 20)
        };
        assert_eq!(prepare(&j, 1).unwrap(), Some(4 << 20));
        let data = std::fs::read(&p).unwrap();
        assert_eq!(data.len(), 4 << 20);
        // Written, not sparse: blocks allocated, and no all-zero 4 KiB block.
        assert!(allocated(&p) >= 4 << 20, "{}", allocated(&p));
        assert!(data.chunks(4096).all(|c| c.iter().any(|&b| b != 0)));
        // Long enough now: nothing more to do.
        assert_eq!(prepare(&j, 1).unwrap(), None);
        // A shorter existing file is laid out anew, whole.
        std::fs::write(&p, vec![0u8; 8192]).unwrap();
        assert_eq!(prepare(&j, 2).unwrap(), Some(4 << 20));
        let data = std::fs::read(&p).unwrap();
        assert!(data[..8192].iter().any(|&b| b != 0));
        let _ = std::fs::remove_dir_all(d);
    }

    #[test]
    fn write_jobs_create_on_open_and_fallocate() {
        let d = scratch("write");
        let p = d.join("w");
        // A write job: created and preallocated (posix), not written.
        let j = Job {
            fallocate: Fallocate::Posix,
            ..job(&p, Rw::Write, 1 << 20)
        };
        assert_eq!(prepare(&j, 1).unwrap(), Some(1 << 20));
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 1 << 20);
        assert!(allocated(&p) >= 1 << 20);
        std::fs::remove_file(&p).unwrap();
        // fallocate=none: just created, empty.
        let j = Job {
            fallocate: Fallocate::None,
            ..job(&p, Rw::RandWrite, 1 << 20)
        };
        assert_eq!(prepare(&j, 1).unwrap(), Some(1 << 20));
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 0);
        // overwrite=1: written out like a read job's.
        let j = Job {
            overwrite: true,
            fallocate: Fallocate::None,
            ..job(&p, Rw::Write, 1 << 20)
        };
        assert_eq!(prepare(&j, 1).unwrap(), Some(1 << 20));
        assert!(std::fs::read(&p).unwrap().iter().any(|&b| b != 0));
        // create_on_open: nothing before the job.
        let q = d.join("later");
        let j = Job {
            create_on_open: true,
            ..job(&q, Rw::Read, 1 << 20)
        };
        assert_eq!(prepare(&j, 1).unwrap(), None);
        assert!(!q.exists());
        // Not for nvme-vfio, not for block devices, not without a size.
        let j = Job {
            ioengine: EngineKind::NvmeVfio,
            ..job(&q, Rw::Read, 1 << 20)
        };
        assert_eq!(prepare(&j, 1).unwrap(), None);
        let j = Job {
            size: None,
            ..job(&q, Rw::Read, 1 << 20)
        };
        assert_eq!(prepare(&j, 1).unwrap(), None);
        assert!(!q.exists());
        let _ = std::fs::remove_dir_all(d);
    }
}
