//! DMA memory: anonymous (optionally hugetlb) memory mapped into the IOMMU.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use nvme_core::{DmaRegion, Iova};

use crate::container::Container;
use crate::error::VfioError;
use crate::sys::{self, Mmap};

/// Hugepage size we ask for (`MAP_HUGE_2MB`).
pub const HUGEPAGE_SIZE: usize = 2 << 20;

/// Statistics over the live DMA buffers of one device.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct DmaStats {
    /// Live buffers.
    pub regions: u64,
    /// Bytes mapped into the IOMMU by live buffers.
    pub bytes: u64,
    /// Live buffers backed by hugepages.
    pub hugepage_regions: u64,
    /// Bytes of those.
    pub hugepage_bytes: u64,
    /// Buffers allocated since open (including freed ones).
    pub allocations: u64,
}

/// Zeroed memory the device can DMA to and from, contiguous in IOVA space.
///
/// Dropping it removes the IOMMU mapping first, then unmaps the memory, then
/// returns the IOVA range. If the IOMMU unmap fails the memory is leaked on
/// purpose (the device might still write to it).
pub struct DmaBuffer {
    /// `Some` until drop.
    mem: Option<Mmap>,
    iova: u64,
    /// Rounded request (multiple of 4096) reported by `len()`.
    len: usize,
    /// Mapped length (multiple of the page size used).
    map_len: u64,
    huge: bool,
    container: Arc<Container>,
}

// `DmaRegion` requires Send; `Mmap` is Send and Sync (see `sys`).
const _: () = {
    const fn is_send_sync<T: Send + Sync>() {}
    is_send_sync::<DmaBuffer>();
};

impl std::fmt::Debug for DmaBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DmaBuffer")
            .field("ptr", &self.as_ptr())
            .field("iova", &Iova(self.iova))
            .field("len", &self.len)
            .field("mapped_len", &self.map_len)
            .field("hugepages", &self.huge)
            .finish()
    }
}

impl std::fmt::Display for DmaStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} buffers, {} KiB mapped ({} buffers / {} KiB on 2 MiB hugepages), {} allocations since open",
            self.regions,
            self.bytes / 1024,
            self.hugepage_regions,
            self.hugepage_bytes / 1024,
            self.allocations
        )
    }
}

fn round_up(x: u64, to: u64) -> Option<u64> {
    Some(x.checked_add(to - 1)? & !(to - 1))
}

impl DmaBuffer {
    pub(crate) fn allocate(container: &Arc<Container>, len: usize) -> Result<DmaBuffer, VfioError> {
        let bad = || VfioError::InvalidDmaLength { len };
        if len == 0 || len > isize::MAX as usize / 2 {
            return Err(bad());
        }
        let len4k = round_up(len as u64, 4096).ok_or_else(bad)?;
        let page = container.iommu_page;
        let mut huge = false;
        let mut mem = None;
        if container.use_hugepages && len4k >= HUGEPAGE_SIZE as u64 && page <= HUGEPAGE_SIZE as u64
        {
            let l = round_up(len4k, HUGEPAGE_SIZE as u64).ok_or_else(bad)?;
            match Mmap::anonymous(l as usize, true) {
                Ok(m) => {
                    huge = true;
                    mem = Some(m);
                }
                Err(e) => {
                    tracing::debug!("no 2 MiB hugepages for {l:#x} bytes ({e}); using normal pages")
                }
            }
        }
        let mem = match mem {
            Some(m) => m,
            None => {
                let l = round_up(len4k, page).ok_or_else(bad)?;
                let m = Mmap::anonymous(l as usize, false)
                    .map_err(|source| VfioError::DmaAlloc { len: l, source })?;
                // MAP_POPULATE already faulted the pages in; mlock keeps them
                // resident. VFIO_IOMMU_MAP_DMA pins them anyway, so a failure
                // here (RLIMIT_MEMLOCK) is not fatal.
                if let Err(e) = m.mlock() {
                    tracing::debug!(
                        "mlock of {l:#x} bytes of DMA memory failed ({e}); relying on VFIO pinning"
                    );
                }
                m
            }
        };
        let map_len = mem.len() as u64;
        let align = if huge { HUGEPAGE_SIZE as u64 } else { page };
        let iova = lock(container)
            .alloc(map_len, align)
            .ok_or(VfioError::IovaExhausted { len: map_len })?;
        if let Err(source) = sys::map_dma(&container.container, &mem, iova) {
            let _ = lock(container).free(iova, map_len);
            return Err(VfioError::DmaMap {
                len: map_len,
                iova,
                memlock_limit: sys::memlock_limit(),
                source,
            });
        }
        let c = &container.counters;
        c.regions.fetch_add(1, Ordering::Relaxed);
        c.bytes.fetch_add(map_len, Ordering::Relaxed);
        c.allocations.fetch_add(1, Ordering::Relaxed);
        if huge {
            c.huge_regions.fetch_add(1, Ordering::Relaxed);
            c.huge_bytes.fetch_add(map_len, Ordering::Relaxed);
            c.hugepages_used.store(true, Ordering::Relaxed);
        }
        tracing::trace!("DMA buffer {len4k:#x} bytes at IOVA {iova:#x} (mapped {map_len:#x}, hugepages: {huge})");
        Ok(DmaBuffer {
            mem: Some(mem),
            iova,
            len: len4k as usize,
            map_len,
            huge,
            container: Arc::clone(container),
        })
    }

    /// True when backed by 2 MiB hugepages.
    pub fn is_hugepage(&self) -> bool {
        self.huge
    }

    /// Bytes actually mapped (≥ `len()`; rounded to the page size used).
    pub fn mapped_len(&self) -> u64 {
        self.map_len
    }
}

fn lock(c: &Container) -> std::sync::MutexGuard<'_, crate::iova::IovaAllocator> {
    c.iova
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

// SAFETY: see the type's documentation: a pre-faulted, locked, zeroed
// mapping of `len` bytes (4096-aligned), IOMMU-mapped contiguously at a
// 4096-aligned IOVA; dropped as IOMMU unmap, then munmap.
#[allow(unsafe_code)]
unsafe impl DmaRegion for DmaBuffer {
    #[inline]
    fn as_ptr(&self) -> *mut u8 {
        self.mem.as_ref().map_or(std::ptr::null_mut(), Mmap::as_ptr)
    }
    #[inline]
    fn iova(&self) -> Iova {
        Iova(self.iova)
    }
    #[inline]
    fn len(&self) -> usize {
        self.len
    }
}

impl Drop for DmaBuffer {
    fn drop(&mut self) {
        let c = &self.container;
        match sys::unmap_dma(&c.container, self.iova, self.map_len) {
            Ok(n) if n == self.map_len => {
                drop(self.mem.take()); // munmap, now that the device cannot reach it
                if let Err(e) = lock(c).free(self.iova, self.map_len) {
                    tracing::error!("IOVA allocator: {e}");
                }
                c.counters.regions.fetch_sub(1, Ordering::Relaxed);
                c.counters.bytes.fetch_sub(self.map_len, Ordering::Relaxed);
                if self.huge {
                    c.counters.huge_regions.fetch_sub(1, Ordering::Relaxed);
                    c.counters
                        .huge_bytes
                        .fetch_sub(self.map_len, Ordering::Relaxed);
                }
            }
            other => {
                // The device may still reach this memory: never give it back.
                tracing::error!(
                    "VFIO_IOMMU_UNMAP_DMA of IOVA {:#x}+{:#x} returned {other:?}; leaking the buffer",
                    self.iova,
                    self.map_len
                );
                std::mem::forget(self.mem.take());
            }
        }
    }
}
