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
use std::os::fd::BorrowedFd;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{fence, AtomicI32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use vfio_bindings::bindings::vfio::{
    vfio_device_info, vfio_group_status, vfio_iommu_type1_dma_map, vfio_iommu_type1_dma_unmap,
    vfio_irq_info, VFIO_DMA_MAP_FLAG_READ, VFIO_DMA_MAP_FLAG_WRITE, VFIO_IRQ_SET_ACTION_TRIGGER,
    VFIO_IRQ_SET_DATA_EVENTFD,
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
/// `VFIO_DEVICE_GET_IRQ_INFO`: `_IO(';', 109)`, on a device.
const VFIO_DEVICE_GET_IRQ_INFO: u64 = vfio_io(9);
/// `VFIO_DEVICE_SET_IRQS`: `_IO(';', 110)`, on a device.
const VFIO_DEVICE_SET_IRQS: u64 = vfio_io(10);
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

/// `VFIO_DEVICE_GET_IRQ_INFO` of interrupt index `index`.
pub(crate) fn device_get_irq_info(device: &impl AsFd, index: u32) -> io::Result<vfio_irq_info> {
    let mut info = vfio_irq_info {
        argsz: size_of::<vfio_irq_info>() as u32,
        index,
        ..Default::default()
    };
    ioctl_struct(device, VFIO_DEVICE_GET_IRQ_INFO, &mut info)?;
    Ok(info)
}

/// `struct vfio_irq_set` followed by one eventfd (`data[]` of one `__s32`).
#[repr(C)]
struct IrqSetOneEventfd {
    argsz: u32,
    flags: u32,
    index: u32,
    start: u32,
    count: u32,
    fd: i32,
}

/// `VFIO_DEVICE_SET_IRQS` with `DATA_EVENTFD | ACTION_TRIGGER`, start 0,
/// count 1: the kernel signals `eventfd` when interrupt `index` fires (for
/// the request and error indexes: when it asks for the device back, or
/// reports an uncorrectable AER error). The kernel takes its own reference
/// to the eventfd; closing the device fd unregisters it.
pub(crate) fn device_set_irq_eventfd(
    device: &impl AsFd,
    index: u32,
    eventfd: BorrowedFd<'_>,
) -> io::Result<()> {
    let mut set = IrqSetOneEventfd {
        argsz: size_of::<IrqSetOneEventfd>() as u32,
        flags: VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER,
        index,
        start: 0,
        count: 1,
        fd: eventfd.as_raw_fd(),
    };
    // The layout is `struct vfio_irq_set` (20 bytes) then the fd.
    const _: () = assert!(size_of::<IrqSetOneEventfd>() == 24);
    ioctl_struct(device, VFIO_DEVICE_SET_IRQS, &mut set).map(|_| ())
}

/// A new non-blocking, close-on-exec eventfd, as a `File` (read and write
/// 8-byte counters with the ordinary `Read`/`Write`).
pub(crate) fn eventfd() -> io::Result<File> {
    // SAFETY: eventfd takes two integers and returns a new fd or -1.
    let fd = cvt(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) })?;
    // SAFETY: the fd is new and owned by nobody else; we take it once.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// `poll(2)` for readability on `fds` (-1 timeout: forever); returns which
/// are readable (or in error). EINTR counts as "nothing ready".
pub(crate) fn poll_readable(fds: &[BorrowedFd<'_>], timeout_ms: i32) -> io::Result<Vec<bool>> {
    let mut p: Vec<libc::pollfd> = fds
        .iter()
        .map(|f| libc::pollfd {
            fd: f.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    // SAFETY: `p` is a valid array of `p.len()` pollfds for the call; the
    // fds are borrowed, so open.
    let r = unsafe { libc::poll(p.as_mut_ptr(), p.len() as libc::nfds_t, timeout_ms) };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok(vec![false; p.len()]);
        }
        return Err(e);
    }
    Ok(p.iter().map(|x| x.revents != 0).collect())
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
/// unmapped only by its `Drop` (replacing its pages in place, as
/// [`Mmap::make_harmless`] and the SIGBUS handler do, keeps it live).
#[derive(Debug)]
pub(crate) struct Mmap {
    ptr: NonNull<u8>,
    len: usize,
    /// The slot of the SIGBUS guard registry this device mapping holds.
    guard: Option<usize>,
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
        let mut map = Mmap::from_raw(p, len)?;
        // Every file mapping this crate makes is of device memory (a BAR
        // through vfio, sysfs or a dma-buf): an access to it raises SIGBUS
        // once the device is gone, which the guard turns into all ones.
        map.guard = guard_register(map.ptr.as_ptr() as usize, len);
        Ok(map)
    }

    /// Make every later access harmless: atomically replace the pages with
    /// private anonymous memory filled with 0xFF (up to [`FILL_MAX`]
    /// bytes; zeros beyond), at the same addresses. Reads then return all
    /// ones, writes land in private memory, and the mapping no longer
    /// refers to the device (or holds its file open). Idempotent.
    pub(crate) fn make_harmless(&self) -> io::Result<()> {
        if remap_all_ones(self.ptr.as_ptr() as usize, self.len) {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// Have the SIGBUS handler write to `eventfd` (an eventfd that outlives
    /// this mapping) when it catches a fault in this mapping.
    pub(crate) fn notify_fault_to(&self, eventfd: BorrowedFd<'_>) {
        if let Some(i) = self.guard {
            GUARD[i]
                .notify
                .store(eventfd.as_raw_fd(), Ordering::Release);
        }
    }

    fn from_raw(p: *mut libc::c_void, len: usize) -> io::Result<Mmap> {
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr =
            NonNull::new(p.cast::<u8>()).ok_or_else(|| io::Error::from(io::ErrorKind::Other))?;
        Ok(Mmap {
            ptr,
            len,
            guard: None,
        })
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
        // Out of the registry before the range can be reused by another mapping.
        if let Some(i) = self.guard {
            guard_unregister(i);
        }
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

// ---------------------------------------------------------------------------
// Device mappings that went away: all ones instead of SIGBUS.
//
// An access to a vfio BAR mapping after the device was zapped (surprise
// removal, link down, a reset in progress) raises SIGBUS. The registry below
// holds the ranges of our device mappings; it is read by the signal handler,
// so it is a fixed array of atomics (no allocation, no lock), each slot
// guarded by a sequence counter so a reader never pairs the start of one
// registration with the length of another.

/// Registry slots: one per device mapping (a controller has a few).
const GUARD_SLOTS: usize = 64;
/// Bytes of a replaced mapping filled with 0xFF; the rest reads zeros (a
/// CMB's contents do not matter once the device is gone; registers and
/// doorbells live in the first pages of BAR0).
pub(crate) const FILL_MAX: usize = 16 << 20;

struct GuardSlot {
    /// Odd while a writer changes the slot.
    seq: AtomicUsize,
    start: AtomicUsize,
    /// 0: free.
    len: AtomicUsize,
    /// An eventfd to write to when a fault in this range was caught (-1: none).
    notify: AtomicI32,
}

#[allow(clippy::declare_interior_mutable_const)]
const FREE_SLOT: GuardSlot = GuardSlot {
    seq: AtomicUsize::new(0),
    start: AtomicUsize::new(0),
    len: AtomicUsize::new(0),
    notify: AtomicI32::new(-1),
};
static GUARD: [GuardSlot; GUARD_SLOTS] = [FREE_SLOT; GUARD_SLOTS];
/// Serializes registry writers (never taken by the handler).
static GUARD_WRITERS: Mutex<()> = Mutex::new(());
/// The SIGBUS disposition found when ours was installed (chained to).
static PREV_SIGBUS: OnceLock<libc::sigaction> = OnceLock::new();

/// Claim a slot for `[start, start+len)`; installs the handler on first use.
/// `None` (logged) when the registry is full: the mapping works, unguarded.
fn guard_register(start: usize, len: usize) -> Option<usize> {
    install_sigbus_handler();
    let _w = GUARD_WRITERS.lock().unwrap_or_else(|e| e.into_inner());
    let Some(i) = GUARD
        .iter()
        .position(|s| s.len.load(Ordering::Relaxed) == 0)
    else {
        tracing::warn!(
            "SIGBUS guard registry full ({GUARD_SLOTS} mappings); {start:#x}+{len:#x} is unguarded"
        );
        return None;
    };
    let s = &GUARD[i];
    s.seq.fetch_add(1, Ordering::AcqRel);
    s.start.store(start, Ordering::Release);
    s.notify.store(-1, Ordering::Release);
    s.len.store(len, Ordering::Release);
    s.seq.fetch_add(1, Ordering::AcqRel);
    Some(i)
}

fn guard_unregister(i: usize) {
    let _w = GUARD_WRITERS.lock().unwrap_or_else(|e| e.into_inner());
    let s = &GUARD[i];
    s.seq.fetch_add(1, Ordering::AcqRel);
    s.len.store(0, Ordering::Release);
    s.start.store(0, Ordering::Release);
    s.notify.store(-1, Ordering::Release);
    s.seq.fetch_add(1, Ordering::AcqRel);
}

/// The registered range holding `addr` and its notify fd, read consistently.
/// Async-signal-safe: atomics only, bounded retries (a writer interrupted
/// on this very thread would otherwise be waited for forever).
fn guard_lookup(addr: usize) -> Option<(usize, usize, i32)> {
    for s in GUARD.iter() {
        for _ in 0..64 {
            let a = s.seq.load(Ordering::Acquire);
            if a % 2 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let (start, len, fd) = (
                s.start.load(Ordering::Acquire),
                s.len.load(Ordering::Acquire),
                s.notify.load(Ordering::Acquire),
            );
            fence(Ordering::Acquire);
            if s.seq.load(Ordering::Acquire) != a {
                continue;
            }
            if len != 0 && addr >= start && addr - start < len {
                return Some((start, len, fd));
            }
            break;
        }
    }
    None
}

/// Replace `[addr, addr+len)` (page-aligned, ours) with private anonymous
/// memory holding 0xFF, atomically: the new pages are made and filled
/// elsewhere, then moved over the old mapping with one `mremap`, so a
/// concurrent reader sees either the old mapping or all ones, never zeros.
/// Async-signal-safe (mmap, mremap, munmap, plain stores). False on failure
/// (errno set).
fn remap_all_ones(addr: usize, len: usize) -> bool {
    // SAFETY: a fresh private anonymous mapping at a kernel-chosen address
    // aliases nothing.
    let tmp = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if tmp == libc::MAP_FAILED {
        return false;
    }
    // SAFETY: `tmp` is our fresh, writable mapping of `len >= fill` bytes.
    unsafe { std::ptr::write_bytes(tmp.cast::<u8>(), 0xFF, len.min(FILL_MAX)) };
    // SAFETY: moves our fresh mapping over `[addr, addr+len)`, which the
    // caller owns (an `Mmap` of exactly that range, or a range the registry
    // holds for one); the old pages there are device memory, never Rust
    // objects, so replacing them invalidates no reference.
    let r = unsafe {
        libc::mremap(
            tmp,
            len,
            len,
            libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED,
            addr as *mut libc::c_void,
        )
    };
    if r == libc::MAP_FAILED {
        // SAFETY: `tmp` is still our own mapping (mremap failed).
        unsafe { libc::munmap(tmp, len) };
        return false;
    }
    true
}

/// Install the SIGBUS handler once per process, remembering the previous
/// disposition (Rust's runtime installs one on the main thread for stack
/// overflows) to chain to for faults that are not ours.
fn install_sigbus_handler() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: a zeroed sigaction is a valid "query" buffer.
        let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: reading the current disposition into `old`.
        if unsafe { libc::sigaction(libc::SIGBUS, std::ptr::null(), &mut old) } != 0 {
            tracing::warn!(
                "SIGBUS guard not installed: sigaction: {}",
                io::Error::last_os_error()
            );
            return;
        }
        let _ = PREV_SIGBUS.set(old);
        // SAFETY: zeroed is valid; we fill handler, flags and mask below.
        let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
        sa.sa_sigaction = on_sigbus as *const () as usize;
        sa.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
        // SAFETY: `sa.sa_mask` is a valid sigset_t.
        unsafe { libc::sigemptyset(&mut sa.sa_mask) };
        // SAFETY: installing a handler whose body is async-signal-safe.
        if unsafe { libc::sigaction(libc::SIGBUS, &sa, std::ptr::null_mut()) } != 0 {
            tracing::warn!(
                "SIGBUS guard not installed: sigaction: {}",
                io::Error::last_os_error()
            );
        }
    });
}

/// The handler: a fault inside one of our device mappings replaces that
/// mapping with all ones, tells the device's watcher, and returns (the
/// access is retried and reads 0xFF..). Anything else goes to the previous
/// handler, or gets the default action.
extern "C" fn on_sigbus(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    let addr = if info.is_null() {
        0
    } else {
        // SAFETY: the kernel passes a valid siginfo for SA_SIGINFO handlers.
        unsafe { (*info).si_addr() as usize }
    };
    if addr != 0 {
        if let Some((start, len, fd)) = guard_lookup(addr) {
            if remap_all_ones(start, len) {
                if fd >= 0 {
                    let one: u64 = 1;
                    // SAFETY: write(2) of 8 bytes from a local; `fd` is an
                    // eventfd the device keeps open while the mapping lives.
                    unsafe { libc::write(fd, (&one as *const u64).cast(), 8) };
                }
                return;
            }
        }
    }
    chain_sigbus(sig, info, ctx);
}

fn chain_sigbus(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    if let Some(prev) = PREV_SIGBUS.get() {
        let h = prev.sa_sigaction;
        if h != libc::SIG_DFL && h != libc::SIG_IGN {
            if prev.sa_flags & libc::SA_SIGINFO != 0 {
                // SAFETY: with SA_SIGINFO the stored value is a three-argument handler.
                let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                    unsafe { std::mem::transmute(h) };
                f(sig, info, ctx);
            } else {
                // SAFETY: without SA_SIGINFO it is a one-argument handler.
                let f: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(h) };
                f(sig);
            }
            return;
        }
    }
    // Default action: restore it and let the fault happen again on return
    // (a signal sent by kill is raised again; it stays blocked until then).
    // SAFETY: zeroed is a valid sigaction with SIG_DFL (0) and no flags.
    let dfl: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: sigaction and raise are async-signal-safe.
    unsafe {
        libc::sigaction(libc::SIGBUS, &dfl, std::ptr::null_mut());
        if info.is_null() || (*info).si_code <= 0 {
            libc::raise(sig);
        }
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

    /// A shared file mapping whose file is then truncated: its pages past
    /// EOF raise SIGBUS on access, the way a zapped vfio BAR mapping does.
    fn truncated_mapping(name: &str, pages: usize) -> (Mmap, std::path::PathBuf) {
        let path =
            std::env::temp_dir().join(format!("nvme-vfio-sigbus-{name}-{}", std::process::id()));
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        let page = page_size();
        f.set_len((pages * page) as u64).unwrap();
        let m = Mmap::file(&f, 0, pages * page).unwrap();
        assert!(m.guard.is_some(), "file mappings are registered");
        assert!(m.write32(0, 0x1234_5678));
        assert_eq!(m.read32(0), Some(0x1234_5678));
        f.set_len(0).unwrap();
        (m, path)
    }

    #[test]
    fn sigbus_in_a_registered_mapping_reads_all_ones_and_notifies() {
        let (m, path) = truncated_mapping("read", 3);
        let efd = eventfd().unwrap();
        m.notify_fault_to(efd.as_fd());
        // Without the guard this read kills the test binary with SIGBUS.
        let page = page_size();
        assert_eq!(m.read32(page + 8), Some(u32::MAX));
        // The whole mapping was replaced: every page reads all ones, and
        // writes land in private memory.
        assert_eq!(m.read64(0), Some(u64::MAX));
        assert_eq!(m.read32(3 * page - 4), Some(u32::MAX));
        assert!(m.write32(16, 7));
        assert_eq!(m.read32(16), Some(7));
        // The watcher was told.
        use std::io::Read;
        let mut b = [0u8; 8];
        (&efd).read_exact(&mut b).unwrap();
        assert_eq!(u64::from_ne_bytes(b), 1);
        drop(m);
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn sigbus_on_write_is_caught_too() {
        let (m, path) = truncated_mapping("write", 1);
        assert!(m.write32(4, 9)); // faults, remapped, retried into private memory
        assert_eq!(m.read32(4), Some(9));
        assert_eq!(m.read32(0), Some(u32::MAX));
        drop(m);
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn make_harmless_replaces_in_place_and_unregisters_on_drop() {
        let (m, path) = truncated_mapping("harmless", 2);
        let (ptr, slot) = (m.as_ptr() as usize, m.guard.unwrap());
        m.make_harmless().unwrap();
        m.make_harmless().unwrap(); // idempotent
        assert_eq!(m.as_ptr() as usize, ptr);
        assert_eq!(m.read32(0), Some(u32::MAX));
        assert_eq!(
            guard_lookup(ptr).map(|(s, l, _)| (s, l)),
            Some((ptr, m.len()))
        );
        drop(m);
        assert_eq!(GUARD[slot].len.load(Ordering::Relaxed), 0);
        assert!(guard_lookup(ptr).is_none());
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn irq_ioctl_numbers_match_linux_headers() {
        assert_eq!(VFIO_DEVICE_GET_IRQ_INFO, 0x3b6d);
        assert_eq!(VFIO_DEVICE_SET_IRQS, 0x3b6e);
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
