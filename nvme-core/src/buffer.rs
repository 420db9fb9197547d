//! DMA buffers whose ownership moves into a command and back.
//!
//! A [`DmaBuf`] is the only safe way to give the device memory. Submitting a
//! command moves the buffer into the queue pair; the completion hands it
//! back. While the device may touch it, no safe code can read, write, free or
//! reuse it: there is simply no value left to do it with.
//!
//! Buffers are cut from DMA regions: one region per buffer
//! ([`crate::Controller::alloc_buffer`]) or many equal buffers from one
//! region ([`crate::Controller::alloc_buffers`], one IOMMU mapping, on
//! hugepages when the platform has them). The region is unmapped and freed
//! when its last buffer is dropped.

use std::fmt;
use std::sync::Arc;

use crate::error::Error;
use crate::hw::{DmaRegion, Iova};

/// Required alignment of a data buffer's start (PRP entries are dword aligned).
pub const DATA_ALIGN: usize = 4;

/// Largest buffer: sizes and offsets are kept in 32 bits, which keeps a
/// `DmaBuf` at 32 bytes (it is moved into and out of every command).
pub const MAX_BUFFER: usize = u32::MAX as usize;

/// DMA-able memory owned by the caller, with a window that I/O transfers.
pub struct DmaBuf<D: DmaRegion> {
    /// Keeps the region (and its IOMMU mapping) alive.
    region: Arc<D>,
    /// Device address of this buffer's first byte; the host address is the
    /// region's at the same offset (only CPU access needs it).
    iova: Iova,
    /// Bytes this buffer may use, from `iova`.
    cap: u32,
    /// The window that I/O transfers: `[off, off + len)`.
    off: u32,
    len: u32,
    /// Which controller's DMA space the IOVA belongs to.
    domain: u32,
}

impl<D: DmaRegion> DmaBuf<D> {
    /// The whole of `region`, for the controller with DMA domain `domain`.
    pub(crate) fn new(region: D, domain: u64) -> Self {
        let cap = region.len().min(MAX_BUFFER);
        Self::slice(Arc::new(region), 0, cap, domain)
    }

    /// Bytes `[start, start + cap)` of a shared region. Callers hand out
    /// non-overlapping slices only.
    /// Callers keep `cap <= MAX_BUFFER` and `domain <= u32::MAX`.
    pub(crate) fn slice(region: Arc<D>, start: usize, cap: usize, domain: u64) -> Self {
        assert!(start + cap <= region.len(), "slice inside its region");
        assert!(cap <= MAX_BUFFER && domain <= u64::from(u32::MAX));
        // The I/O path relies on this (PRP entries are dword aligned) and
        // does not check it per command; `set_window` keeps it.
        assert!(
            (region.iova().0 + start as u64) % DATA_ALIGN as u64 == 0,
            "DMA regions are 4096-aligned in IOVA space and slices start on dword boundaries"
        );
        DmaBuf {
            iova: region.iova().add(start as u64),
            cap: cap as u32,
            region,
            domain: domain as u32,
            off: 0,
            len: cap as u32,
        }
    }

    #[inline]
    pub(crate) fn domain(&self) -> u64 {
        u64::from(self.domain)
    }

    /// Bytes in the window (what an I/O command transfers).
    #[inline]
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// True if the window is empty.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes this buffer may use.
    pub fn capacity(&self) -> usize {
        self.cap as usize
    }

    /// Offset of the window in the buffer.
    pub fn offset(&self) -> usize {
        self.off as usize
    }

    /// Select the window `[offset, offset + len)` of the buffer that reads
    /// and writes transfer. `offset` must be a multiple of 4 (PRP rule).
    pub fn set_window(&mut self, offset: usize, len: usize) -> Result<(), Error> {
        let end = offset.checked_add(len);
        if end.is_none_or(|e| e > self.capacity()) {
            return Err(Error::InvalidArgument(format!(
                "window {offset}+{len} does not fit a {}-byte buffer",
                self.cap
            )));
        }
        if offset % DATA_ALIGN != 0 {
            return Err(Error::MisalignedBuffer {
                iova: self.iova.add(offset as u64),
            });
        }
        // Both fit in u32: they end within `cap`, which does.
        self.off = offset as u32;
        self.len = len as u32;
        Ok(())
    }

    /// Device address of the window's first byte.
    #[inline]
    pub fn iova(&self) -> Iova {
        self.iova.add(u64::from(self.off))
    }

    /// Host address of the window's first byte.
    #[inline]
    fn window_ptr(&self) -> *mut u8 {
        let start = (self.iova.0 - self.region.iova().0) as usize + self.off as usize;
        self.region.as_ptr().wrapping_add(start)
    }

    /// The window's bytes.
    #[inline]
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: this buffer's `cap` bytes lie inside the region at the
        // same offset as its IOVA (checked in `slice`), the region lives as
        // long as the Arc we hold, and the window is inside those bytes
        // (`set_window` checks). No other DmaBuf overlaps them. The device
        // does not access them now: a buffer the device may use has been
        // moved into a queue pair, so no `&self` to it can exist. u8 has no
        // invalid bit patterns.
        unsafe { std::slice::from_raw_parts(self.window_ptr(), self.len()) }
    }

    /// The window's bytes, writable.
    #[inline]
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_slice`; `&mut self` makes this the only reference.
        unsafe { std::slice::from_raw_parts_mut(self.window_ptr(), self.len()) }
    }

    /// Buffers sharing this one's region (1 if it has its own).
    pub fn region_users(&self) -> usize {
        Arc::strong_count(&self.region)
    }
}

impl<D: DmaRegion> std::ops::Deref for DmaBuf<D> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl<D: DmaRegion> std::ops::DerefMut for DmaBuf<D> {
    fn deref_mut(&mut self) -> &mut [u8] {
        self.as_mut_slice()
    }
}

impl<D: DmaRegion> fmt::Debug for DmaBuf<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DmaBuf")
            .field("iova", &self.iova())
            .field("len", &self.len)
            .field("capacity", &self.cap)
            .finish()
    }
}
