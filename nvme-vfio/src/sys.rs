//! Every system call that takes a raw pointer, and every raw pointer we keep.
//!
//! This is the only module with `unsafe` code. Each function wraps one kind
//! of call behind a safe signature whose types carry the invariant the call
//! needs (a borrowed fd that is open, a buffer of the size the kernel will
//! write, a mapping that is owned). The rest of the crate is safe Rust.
//!
//! The wrappers of ioctls whose failure ends the open return
//! [`VfioError::Ioctl`] named after the ioctl, so callers need no `map_err`;
//! the ones whose failure a caller tolerates or reports in its own words
//! (`check_extension`, `device_reset`, `group_unset_container`, DMA map and
//! unmap, device features) return the plain `io::Error`.
//!
//! ioctl numbers: VFIO uses `_IO(VFIO_TYPE, VFIO_BASE + n)` with
//! `VFIO_TYPE = ';'` and `VFIO_BASE = 100`, and passes the size in the
//! structure's `argsz` field instead of the ioctl number. `_IO(t, nr)` is
//! `(t << 8) | nr` on both x86_64 and arm64 (asm-generic/ioctl.h: direction
//! and size bits are 0 for `_IO`).

use std::ffi::CStr;
use std::fs::File;
use std::io;
use std::mem::size_of;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::Arc;

use vfio_bindings::bindings::vfio::{
    vfio_device_info, vfio_group_status, vfio_iommu_type1_dma_map, vfio_iommu_type1_dma_unmap,
    VFIO_DMA_MAP_FLAG_READ, VFIO_DMA_MAP_FLAG_WRITE,
};

use crate::caps::{IOMMU_INFO_LEN, REGION_INFO_LEN};
use crate::error::VfioError;

/// `_IO(';', 100 + n)`.
const fn vfio_io(n: u32) -> u64 {
    ((b';' as u64) << 8) | (100 + n) as u64
}

/// `VFIO_GET_API_VERSION`: `_IO(';', 100)`, on the container.
const VFIO_GET_API_VERSION: u64 = vfio_io(0);
/// `VFIO_CHECK_EXTENSION`: `_IO(';', 101)`, on the container.
const VFIO_CHECK_EXTENSION: u64 = vfio_io(1);
/// `VFIO_SET_IOMMU`: `_IO(';', 102)`, on the container.
const VFIO_SET_IOMMU: u64 = vfio_io(2);
/// `VFIO_GROUP_GET_STATUS`: `_IO(';', 103)`, on a group.
const VFIO_GROUP_GET_STATUS: u64 = vfio_io(3);
/// `VFIO_GROUP_SET_CONTAINER`: `_IO(';', 104)`, on a group.
const VFIO_GROUP_SET_CONTAINER: u64 = vfio_io(4);
/// `VFIO_GROUP_UNSET_CONTAINER`: `_IO(';', 105)`, on a group.
const VFIO_GROUP_UNSET_CONTAINER: u64 = vfio_io(5);
/// `VFIO_GROUP_GET_DEVICE_FD`: `_IO(';', 106)`, on a group.
const VFIO_GROUP_GET_DEVICE_FD: u64 = vfio_io(6);
/// `VFIO_DEVICE_GET_INFO`: `_IO(';', 107)`, on a device.
const VFIO_DEVICE_GET_INFO: u64 = vfio_io(7);
/// `VFIO_DEVICE_GET_REGION_INFO`: `_IO(';', 108)`, on a device.
const VFIO_DEVICE_GET_REGION_INFO: u64 = vfio_io(8);
/// `VFIO_DEVICE_RESET`: `_IO(';', 111)`, on a device.
const VFIO_DEVICE_RESET: u64 = vfio_io(11);
/// `VFIO_IOMMU_GET_INFO`: `_IO(';', 112)`, on the container.
const VFIO_IOMMU_GET_INFO: u64 = vfio_io(12);
/// `VFIO_IOMMU_MAP_DMA`: `_IO(';', 113)`, on the container.
const VFIO_IOMMU_MAP_DMA: u64 = vfio_io(13);
/// `VFIO_IOMMU_UNMAP_DMA`: `_IO(';', 114)`, on the container.
const VFIO_IOMMU_UNMAP_DMA: u64 = vfio_io(14);
/// `VFIO_DEVICE_FEATURE`: `_IO(';', 117)`, on a device (Linux 5.7+).
const VFIO_DEVICE_FEATURE: u64 = vfio_io(17);

/// `VFIO_DEVICE_FEATURE_GET` (flags bit 16).
pub(crate) const FEATURE_GET: u32 = 1 << 16;
/// `VFIO_DEVICE_FEATURE_SET` (flags bit 17).
#[cfg_attr(not(feature = "dmabuf-wc"), allow(dead_code))]
pub(crate) const FEATURE_SET: u32 = 1 << 17;
/// `VFIO_DEVICE_FEATURE_PROBE` (flags bit 18).
pub(crate) const FEATURE_PROBE: u32 = 1 << 18;
/// `VFIO_DEVICE_FEATURE_DMA_BUF` (merged in Linux 6.19).
pub(crate) const FEATURE_DMA_BUF: u32 = 11;

/// `MAP_HUGE_2MB` (`21 << MAP_HUGE_SHIFT`); not exported by libc for glibc targets.
const MAP_HUGE_2MB: libc::c_int = 21 << 26;

fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// A failed ioctl as the typed error: `op` names the ioctl.
fn named<T>(op: &'static str, r: io::Result<T>) -> Result<T, VfioError> {
    r.map_err(|source| VfioError::Ioctl { op, source })
}

/// An ioctl whose argument is an integer (or nothing).
fn ioctl_int(fd: &impl AsFd, req: u64, arg: libc::c_ulong) -> io::Result<libc::c_int> {
    let fd = fd.as_fd().as_raw_fd();
    // SAFETY: the only requests passed here (GET_API_VERSION,
    // CHECK_EXTENSION, SET_IOMMU, GROUP_UNSET_CONTAINER, DEVICE_RESET) take an
    // integer argument or none, which the kernel never dereferences; `fd` is
    // borrowed, so it is open for the call.
    cvt(unsafe { libc::ioctl(fd, req as _, arg) })
}

/// An ioctl whose argument points to `*arg`, which the kernel reads and/or
/// writes for at most `size_of::<T>()` bytes.
///
/// Kept private: each caller pairs a request with the one `T` it takes.
fn ioctl_struct<T>(fd: &impl AsFd, req: u64, arg: &mut T) -> io::Result<libc::c_int> {
    let fd = fd.as_fd().as_raw_fd();
    // SAFETY: `arg` is a valid, exclusively borrowed `T` for the duration of
    // the call; every caller passes the request whose argument type is `T`
    // (the kernel copies at most `argsz <= size_of::<T>()` bytes, or exactly
    // `sizeof(int)` for SET_CONTAINER with `T = c_int`).
    cvt(unsafe { libc::ioctl(fd, req as _, arg as *mut T) })
}

/// An ioctl on a variable-length info structure in `buf`, whose leading u32
/// is `argsz`; the kernel writes at most `argsz` bytes.
fn ioctl_buf(fd: &impl AsFd, req: u64, buf: &mut [u8], min_len: usize) -> io::Result<()> {
    if buf.len() < min_len || buf.len() > u32::MAX as usize {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    // argsz tells the kernel how much it may write.
    let argsz = buf.len() as u32;
    buf[..4].copy_from_slice(&argsz.to_ne_bytes());
    let fd = fd.as_fd().as_raw_fd();
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes, which is the
    // `argsz` we just stored; the VFIO info ioctls (GET_REGION_INFO,
    // IOMMU_GET_INFO) never copy more than `argsz` bytes back, and we checked
    // the buffer holds at least the fixed part of the structure.
    cvt(unsafe { libc::ioctl(fd, req as _, buf.as_mut_ptr()) }).map(|_| ())
}

/// `VFIO_GET_API_VERSION` on the container.
pub(crate) fn get_api_version(container: &impl AsFd) -> Result<i32, VfioError> {
    named(
        "VFIO_GET_API_VERSION",
        ioctl_int(container, VFIO_GET_API_VERSION, 0),
    )
}

/// `VFIO_CHECK_EXTENSION(ext)` on the container.
pub(crate) fn check_extension(container: &impl AsFd, ext: u32) -> io::Result<bool> {
    ioctl_int(container, VFIO_CHECK_EXTENSION, ext as libc::c_ulong).map(|r| r > 0)
}

/// `VFIO_SET_IOMMU(type)` on the container.
pub(crate) fn set_iommu(container: &impl AsFd, iommu_type: u32) -> Result<(), VfioError> {
    let r = ioctl_int(container, VFIO_SET_IOMMU, iommu_type as libc::c_ulong);
    named("VFIO_SET_IOMMU", r).map(|_| ())
}

/// `VFIO_GROUP_GET_STATUS`: the group's flags.
pub(crate) fn group_status(group: &impl AsFd) -> Result<u32, VfioError> {
    let mut st = vfio_group_status {
        argsz: size_of::<vfio_group_status>() as u32,
        flags: 0,
    };
    let r = ioctl_struct(group, VFIO_GROUP_GET_STATUS, &mut st);
    named("VFIO_GROUP_GET_STATUS", r)?;
    Ok(st.flags)
}

/// `VFIO_GROUP_SET_CONTAINER`: attach the group to the container.
pub(crate) fn group_set_container(
    group: &impl AsFd,
    container: &impl AsFd,
) -> Result<(), VfioError> {
    let mut fd: libc::c_int = container.as_fd().as_raw_fd();
    let r = ioctl_struct(group, VFIO_GROUP_SET_CONTAINER, &mut fd);
    named("VFIO_GROUP_SET_CONTAINER", r).map(|_| ())
}

/// `VFIO_GROUP_UNSET_CONTAINER`.
pub(crate) fn group_unset_container(group: &impl AsFd) -> io::Result<()> {
    ioctl_int(group, VFIO_GROUP_UNSET_CONTAINER, 0).map(|_| ())
}

/// `VFIO_GROUP_GET_DEVICE_FD(name)`: the device's fd, as a `File` for pread/pwrite.
pub(crate) fn group_get_device_fd(group: &impl AsFd, name: &CStr) -> Result<File, VfioError> {
    let gfd = group.as_fd().as_raw_fd();
    // SAFETY: `name` is a valid NUL-terminated string for the duration of the
    // call; the kernel only reads it.
    let r = cvt(unsafe { libc::ioctl(gfd, VFIO_GROUP_GET_DEVICE_FD as _, name.as_ptr()) });
    let fd = named("VFIO_GROUP_GET_DEVICE_FD", r)?;
    // SAFETY: on success the ioctl returns a new file descriptor that nothing
    // else owns; we take ownership of it exactly once.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// `VFIO_DEVICE_GET_INFO` (fixed part only; we use no device capabilities).
pub(crate) fn device_get_info(device: &impl AsFd) -> Result<vfio_device_info, VfioError> {
    let mut info = vfio_device_info {
        argsz: size_of::<vfio_device_info>() as u32,
        ..Default::default()
    };
    let r = ioctl_struct(device, VFIO_DEVICE_GET_INFO, &mut info);
    named("VFIO_DEVICE_GET_INFO", r)?;
    Ok(info)
}

/// `VFIO_DEVICE_GET_REGION_INFO` into `buf` (index at bytes 8..12 must be set).
pub(crate) fn device_get_region_info(device: &impl AsFd, buf: &mut [u8]) -> Result<(), VfioError> {
    let r = ioctl_buf(device, VFIO_DEVICE_GET_REGION_INFO, buf, REGION_INFO_LEN);
    named("VFIO_DEVICE_GET_REGION_INFO", r)
}

/// `VFIO_IOMMU_GET_INFO` into `buf`.
pub(crate) fn iommu_get_info(container: &impl AsFd, buf: &mut [u8]) -> Result<(), VfioError> {
    let r = ioctl_buf(container, VFIO_IOMMU_GET_INFO, buf, IOMMU_INFO_LEN);
    named("VFIO_IOMMU_GET_INFO", r)
}

/// `VFIO_DEVICE_RESET`.
pub(crate) fn device_reset(device: &impl AsFd) -> io::Result<()> {
    ioctl_int(device, VFIO_DEVICE_RESET, 0).map(|_| ())
}

/// `VFIO_IOMMU_MAP_DMA` of all of `mem` at `iova`, readable and writable by the device.
///
/// The caller must unmap (`unmap_dma`) before `mem` is dropped; `DmaBuffer`
/// is the only caller and its `Drop` does exactly that (and leaks the memory
/// if the unmap fails).
pub(crate) fn map_dma(container: &impl AsFd, mem: &Mmap, iova: u64) -> io::Result<()> {
    let mut m = vfio_iommu_type1_dma_map {
        argsz: size_of::<vfio_iommu_type1_dma_map>() as u32,
        flags: VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
        vaddr: mem.as_ptr() as u64,
        iova,
        size: mem.len() as u64,
    };
    ioctl_struct(container, VFIO_IOMMU_MAP_DMA, &mut m).map(|_| ())
}

/// `VFIO_IOMMU_UNMAP_DMA` of `[iova, iova+size)`; returns the size unmapped.
pub(crate) fn unmap_dma(container: &impl AsFd, iova: u64, size: u64) -> io::Result<u64> {
    let mut u = vfio_iommu_type1_dma_unmap {
        argsz: size_of::<vfio_iommu_type1_dma_unmap>() as u32,
        flags: 0,
        iova,
        size,
        ..Default::default()
    };
    ioctl_struct(container, VFIO_IOMMU_UNMAP_DMA, &mut u)?;
    Ok(u.size)
}

/// `VFIO_DEVICE_FEATURE` with `flags` (feature number and GET/SET/PROBE
/// bits) and `payload` after the 8-byte header; returns the ioctl's
/// non-negative result.
pub(crate) fn device_feature(
    device: &impl AsFd,
    flags: u32,
    payload: &[u8],
) -> io::Result<libc::c_int> {
    let mut buf = vec![0u8; 8 + payload.len()];
    let argsz =
        u32::try_from(buf.len()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    buf[..4].copy_from_slice(&argsz.to_ne_bytes());
    buf[4..8].copy_from_slice(&flags.to_ne_bytes());
    buf[8..].copy_from_slice(payload);
    let fd = device.as_fd().as_raw_fd();
    // SAFETY: `buf` is valid for reads and writes of `argsz` bytes, which is
    // what its header tells the kernel; VFIO_DEVICE_FEATURE never accesses
    // more than `argsz` bytes of its argument. `fd` is borrowed, so open.
    cvt(unsafe { libc::ioctl(fd, VFIO_DEVICE_FEATURE as _, buf.as_mut_ptr()) })
}

/// `VFIO_DEVICE_FEATURE` for a feature that returns a new file descriptor
/// (`VFIO_DEVICE_FEATURE_DMA_BUF`), which the caller then owns.
#[cfg(feature = "dmabuf-wc")]
pub(crate) fn device_feature_fd(
    device: &impl AsFd,
    flags: u32,
    payload: &[u8],
) -> io::Result<File> {
    let fd = device_feature(device, flags, payload)?;
    // SAFETY: on success this GET returns a new file descriptor (the dma-buf)
    // that nothing else owns; we take ownership of it exactly once.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// Effective user id (for error messages).
pub(crate) fn euid() -> u32 {
    // SAFETY: geteuid has no arguments and cannot fail.
    unsafe { libc::geteuid() }
}

/// RLIMIT_MEMLOCK soft limit in bytes; `None` if unlimited or unknown.
pub(crate) fn memlock_limit() -> Option<u64> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `r` is a valid, writable rlimit for the call.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut r) } == 0;
    #[allow(clippy::unnecessary_cast)] // rlim_t is u32 on some 32-bit targets
    (ok && r.rlim_cur != libc::RLIM_INFINITY).then_some(r.rlim_cur as u64)
}

/// The host page size.
pub(crate) fn page_size() -> usize {
    // SAFETY: sysconf only reads its integer argument.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 {
        p as usize
    } else {
        4096
    }
}

/// An owned `mmap` mapping, unmapped on drop.
///
/// Invariant: `ptr..ptr+len` is a live mapping created by this type and
/// unmapped only by its `Drop`.
#[derive(Debug)]
pub(crate) struct Mmap {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: `Mmap` owns its mapping like a `Box<[u8]>` owns its heap memory;
// the raw pointer is not tied to the creating thread. Shared access through
// `&Mmap` is by volatile loads/stores only (device registers), or through the
// raw pointer handed out by `as_ptr`, whose users synchronise themselves.
unsafe impl Send for Mmap {}
// SAFETY: see `Send`; `&Mmap` methods never create Rust references into the mapping.
unsafe impl Sync for Mmap {}

impl Mmap {
    /// Anonymous, zero-filled, pre-faulted private memory, excluded from
    /// `fork` children (so copy-on-write can never move a page the IOMMU has
    /// pinned). With `huge`, backed by 2 MiB hugetlb pages (`len` must be a
    /// multiple of 2 MiB); fails with ENOMEM when none are free.
    pub(crate) fn anonymous(len: usize, huge: bool) -> io::Result<Mmap> {
        if len == 0 {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        let mut flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE;
        if huge {
            flags |= libc::MAP_HUGETLB | MAP_HUGE_2MB;
        }
        // SAFETY: a fresh anonymous mapping at an address the kernel chooses
        // cannot alias any existing memory.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                -1,
                0,
            )
        };
        let map = Mmap::from_raw(p, len)?;
        // SAFETY: the range is exactly our own mapping; MADV_DONTFORK only
        // changes what a future fork copies.
        if unsafe { libc::madvise(map.ptr.as_ptr().cast(), len, libc::MADV_DONTFORK) } != 0 {
            return Err(io::Error::last_os_error()); // `map` is unmapped on return
        }
        Ok(map)
    }

    /// A shared mapping of `len` bytes of `file` at `offset` (a VFIO region).
    pub(crate) fn file(file: &File, offset: u64, len: usize) -> io::Result<Mmap> {
        let off = libc::off_t::try_from(offset)
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        if len == 0 {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        // SAFETY: a new shared mapping at a kernel-chosen address aliases no
        // Rust memory; `file` is open for the call (the mapping keeps its own
        // reference to the file afterwards).
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                off,
            )
        };
        Mmap::from_raw(p, len)
    }

    fn from_raw(p: *mut libc::c_void, len: usize) -> io::Result<Mmap> {
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr =
            NonNull::new(p.cast::<u8>()).ok_or_else(|| io::Error::from(io::ErrorKind::Other))?;
        Ok(Mmap { ptr, len })
    }

    /// Lock the pages in memory.
    pub(crate) fn mlock(&self) -> io::Result<()> {
        // SAFETY: the range is exactly our own live mapping; mlock does not
        // change its contents.
        cvt(unsafe { libc::mlock(self.ptr.as_ptr().cast(), self.len) }).map(|_| ())
    }

    /// Address of byte 0.
    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// A pointer to a naturally aligned `T` at `off`, if it lies inside the mapping.
    fn at<T>(&self, off: usize) -> Option<*mut T> {
        let w = size_of::<T>();
        if off % w != 0 || off.checked_add(w)? > self.len {
            return None;
        }
        // `off + w <= len`, so this stays inside the mapping (no unsafe needed
        // for wrapping_add; the result is only dereferenced by the callers).
        Some(self.ptr.as_ptr().wrapping_add(off).cast::<T>())
    }

    /// One volatile 32-bit load at `off` (`None` if out of range or misaligned).
    #[inline]
    pub(crate) fn read32(&self, off: usize) -> Option<u32> {
        let p = self.at::<u32>(off)?;
        // SAFETY: `at` checked that `p` is 4-byte aligned and inside our live mapping.
        Some(unsafe { p.read_volatile() })
    }

    /// One volatile 64-bit load at `off`.
    #[inline]
    pub(crate) fn read64(&self, off: usize) -> Option<u64> {
        let p = self.at::<u64>(off)?;
        // SAFETY: `at` checked that `p` is 8-byte aligned and inside our live mapping.
        Some(unsafe { p.read_volatile() })
    }

    /// One volatile 32-bit store at `off`; false if out of range or misaligned.
    #[inline]
    pub(crate) fn write32(&self, off: usize, v: u32) -> bool {
        let Some(p) = self.at::<u32>(off) else {
            return false;
        };
        // SAFETY: `at` checked that `p` is 4-byte aligned and inside our live
        // mapping, which is writable (PROT_WRITE).
        unsafe { p.write_volatile(v) };
        true
    }

    /// One volatile 64-bit store at `off`; false if out of range or misaligned.
    #[inline]
    pub(crate) fn write64(&self, off: usize, v: u64) -> bool {
        let Some(p) = self.at::<u64>(off) else {
            return false;
        };
        // SAFETY: `at` checked that `p` is 8-byte aligned and inside our live
        // mapping, which is writable (PROT_WRITE).
        unsafe { p.write_volatile(v) };
        true
    }
}

impl Drop for Mmap {
    fn drop(&mut self) {
        // SAFETY: we own this mapping and nothing uses it after drop (every
        // holder of a pointer into it also holds the owner, see `Reg32`).
        let r = unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
        if r != 0 {
            tracing::error!(
                "munmap({:p}, {:#x}) failed: {}",
                self.ptr,
                self.len,
                io::Error::last_os_error()
            );
        }
    }
}

/// A 32-bit register inside a shared `Mmap`, kept alive by an `Arc`.
///
/// This is what a doorbell holds: a plain pointer, so ringing is one store.
pub(crate) struct Reg32 {
    ptr: NonNull<u32>,
    _map: Arc<Mmap>,
}

// SAFETY: the pointer targets a mapping owned by the `Arc<Mmap>` we hold
// (which is Send + Sync), so it stays valid on any thread.
unsafe impl Send for Reg32 {}
// SAFETY: `write` takes `&self` and does one volatile store; concurrent
// stores to a device register are the caller's protocol, not a memory-safety issue.
unsafe impl Sync for Reg32 {}

impl Reg32 {
    /// The register at `off` in `map` (aligned and in range), or `None`.
    pub(crate) fn new(map: &Arc<Mmap>, off: usize) -> Option<Reg32> {
        let p = map.at::<u32>(off)?;
        Some(Reg32 {
            ptr: NonNull::new(p)?,
            _map: Arc::clone(map),
        })
    }

    /// One volatile 32-bit store.
    #[inline(always)]
    pub(crate) fn write(&self, v: u32) {
        // SAFETY: `new` checked alignment and bounds; `_map` keeps the
        // mapping alive for as long as `self` exists.
        unsafe { self.ptr.as_ptr().write_volatile(v) }
    }
}

impl std::fmt::Debug for Reg32 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Reg32({:p})", self.ptr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_numbers_match_linux_headers() {
        // Values from <linux/vfio.h> as computed by the C preprocessor.
        assert_eq!(VFIO_GET_API_VERSION, 0x3b64);
        assert_eq!(VFIO_CHECK_EXTENSION, 0x3b65);
        assert_eq!(VFIO_SET_IOMMU, 0x3b66);
        assert_eq!(VFIO_GROUP_GET_STATUS, 0x3b67);
        assert_eq!(VFIO_GROUP_SET_CONTAINER, 0x3b68);
        assert_eq!(VFIO_GROUP_UNSET_CONTAINER, 0x3b69);
        assert_eq!(VFIO_GROUP_GET_DEVICE_FD, 0x3b6a);
        assert_eq!(VFIO_DEVICE_GET_INFO, 0x3b6b);
        assert_eq!(VFIO_DEVICE_GET_REGION_INFO, 0x3b6c);
        assert_eq!(VFIO_DEVICE_RESET, 0x3b6f);
        assert_eq!(VFIO_IOMMU_GET_INFO, 0x3b70);
        assert_eq!(VFIO_IOMMU_MAP_DMA, 0x3b71);
        assert_eq!(VFIO_IOMMU_UNMAP_DMA, 0x3b72);
        assert_eq!(VFIO_DEVICE_FEATURE, 0x3b75);
    }

    #[test]
    fn anonymous_mapping_is_zeroed_and_bounds_checked() {
        let m = Mmap::anonymous(8192, false).unwrap();
        assert_eq!(m.len(), 8192);
        assert_eq!(m.as_ptr() as usize % 4096, 0);
        assert_eq!(m.read64(8184), Some(0));
        assert!(m.write32(4, 0xdead_beef));
        assert_eq!(m.read32(4), Some(0xdead_beef));
        assert!(m.write64(8, 0x1122_3344_5566_7788));
        assert_eq!(m.read64(8), Some(0x1122_3344_5566_7788));
        assert_eq!(m.read32(8190), None);
        assert_eq!(m.read32(8192), None);
        assert_eq!(m.read32(2), None);
        assert_eq!(m.read64(4), None);
        assert!(!m.write32(usize::MAX - 1, 0));
        let m = Arc::new(m);
        let r = Reg32::new(&m, 16).unwrap();
        r.write(7);
        assert_eq!(m.read32(16), Some(7));
        assert!(Reg32::new(&m, 8192).is_none());
        assert!(Reg32::new(&m, 3).is_none());
    }

    #[test]
    fn hugepage_mapping_fails_cleanly_or_works() {
        // Either there are free 2 MiB pages or we get an error; never a crash.
        if let Ok(m) = Mmap::anonymous(2 << 20, true) {
            assert_eq!(m.as_ptr() as usize % (2 << 20), 0);
            assert_eq!(m.read64(0), Some(0));
        }
    }
}
