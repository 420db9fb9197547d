//! DMA buffers whose ownership moves into a command and back.
//!
//! A [`DmaBuf`] is the only safe way to give the device memory. Submitting a
//! command moves the buffer into the queue pair; the completion hands it
//! back. While the device may touch it, no safe code can read, write, free or
//! reuse it: there is simply no value left to do it with.

use std::fmt;

use crate::error::Error;
use crate::hw::{DmaRegion, Iova};

/// Required alignment of a data buffer's start (PRP entries are dword aligned).
pub const DATA_ALIGN: usize = 4;

/// DMA-able memory owned by the caller, with a window that I/O transfers.
pub struct DmaBuf<D: DmaRegion> {
    region: D,
    /// Which controller's DMA space the IOVA belongs to.
    domain: u64,
    off: usize,
    len: usize,
}

impl<D: DmaRegion> DmaBuf<D> {
    /// Wrap a region allocated for the controller with DMA domain `domain`.
    /// The window covers the whole region.
    pub(crate) fn new(region: D, domain: u64) -> Self {
        let len = region.len();
        DmaBuf {
            region,
            domain,
            off: 0,
            len,
        }
    }

    pub(crate) fn domain(&self) -> u64 {
        self.domain
    }

    /// Bytes in the window (what an I/O command transfers).
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if the window is empty.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes in the whole underlying region.
    pub fn capacity(&self) -> usize {
        self.region.len()
    }

    /// Offset of the window in the region.
    pub fn offset(&self) -> usize {
        self.off
    }

    /// Select the window `[offset, offset + len)` of the region that reads
    /// and writes transfer. `offset` must be a multiple of 4 (PRP rule).
    pub fn set_window(&mut self, offset: usize, len: usize) -> Result<(), Error> {
        let end = offset.checked_add(len);
        if end.is_none_or(|e| e > self.region.len()) {
            return Err(Error::InvalidArgument(format!(
                "window {offset}+{len} does not fit a {}-byte buffer",
                self.region.len()
            )));
        }
        if offset % DATA_ALIGN != 0 {
            return Err(Error::MisalignedBuffer {
                iova: self.region.iova().add(offset as u64),
            });
        }
        self.off = offset;
        self.len = len;
        Ok(())
    }

    /// Device address of the window's first byte.
    #[inline]
    pub fn iova(&self) -> Iova {
        self.region.iova().add(self.off as u64)
    }

    /// The window's bytes.
    #[inline]
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: the region is valid for `region.len()` bytes for as long as
        // it lives (DmaRegion contract) and the window lies inside it
        // (`set_window` checks). The device does not access it now: a buffer
        // the device may use has been moved into a queue pair, so no `&self`
        // to it can exist. u8 has no invalid bit patterns.
        unsafe { std::slice::from_raw_parts(self.region.as_ptr().add(self.off), self.len) }
    }

    /// The window's bytes, writable.
    #[inline]
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_slice`; `&mut self` makes this the only reference.
        unsafe { std::slice::from_raw_parts_mut(self.region.as_ptr().add(self.off), self.len) }
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
            .field("capacity", &self.capacity())
            .finish()
    }
}
