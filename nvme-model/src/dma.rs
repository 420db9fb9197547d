//! The model's DMA space: host allocations, a fake IOMMU, and the only code
//! in the model that touches DMA memory.
//!
//! IOVAs come from a bump allocator that never reuses an address and leaves
//! a one-page hole after every region, so an access past the end of a region
//! or to a freed region faults instead of landing in a neighbour. Freed
//! ranges are remembered, so a fault can be classified as use-after-free.
//!
//! Every access happens with the model lock held, and a [`ModelDma`] is only
//! deallocated after it has been unmapped under that same lock: the model can
//! never touch memory that has gone back to the allocator.

use std::alloc::{self, Layout};
use std::collections::BTreeMap;
use std::ptr::NonNull;
use std::sync::Arc;

use nvme_core::{DmaRegion, Iova};

use super::Shared;

/// Alignment and granularity of every region.
pub(crate) const DMA_ALIGN: usize = 4096;
/// First IOVA handed out (nothing below it is ever mapped, so 0 faults).
const IOVA_BASE: u64 = 0x1_0000_0000;
/// Most fault records kept for [`super::ModelController::dma_fault_log`].
const FAULT_LOG_MAX: usize = 256;

/// A host pointer to the start of a DMA allocation.
#[derive(Copy, Clone, Debug)]
pub(crate) struct HostPtr(NonNull<u8>);

// SAFETY: a HostPtr names a heap allocation owned by exactly one ModelDma;
// the model only dereferences it under the model lock while the region is
// mapped (see `DmaTable::translate`), so moving the pointer value to another
// thread cannot create unsynchronised access from the model's side.
unsafe impl Send for HostPtr {}

// SAFETY: shared references to a HostPtr only copy the pointer value out
// (`ModelDma::as_ptr` through `&self`); they never dereference it. Access to
// the memory is governed as for `Send` above, and on the driver side by the
// ownership rules of `DmaBuf` and the rings.
unsafe impl Sync for HostPtr {}

/// Why a DMA access failed.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum DmaFaultKind {
    /// Nothing was ever mapped there (or the access ran off a region's end).
    Unmapped,
    /// The address belongs to a region that was freed.
    UseAfterFree,
    /// Bus Master Enable was off: the device may not start DMA at all.
    BusMasterDisabled,
}

/// One DMA access the model's IOMMU refused.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct DmaFault {
    /// First byte of the access.
    pub iova: Iova,
    /// Bytes accessed.
    pub len: usize,
    /// Whether the device was writing host memory.
    pub write: bool,
    /// What was wrong.
    pub kind: DmaFaultKind,
}

struct Mapping {
    len: usize,
    ptr: HostPtr,
}

/// IOVA → host memory table plus fault bookkeeping.
pub(crate) struct DmaTable {
    next_iova: u64,
    live: BTreeMap<u64, Mapping>,
    /// Freed ranges, start → end (exclusive).
    freed: BTreeMap<u64, u64>,
    pub faults: Vec<DmaFault>,
    pub errors: u64,
    pub use_after_free: u64,
    /// Bus Master Enable (the PCI command register's bit 2): while off,
    /// every access faults (`BusMasterDisabled`).
    pub bus_master: bool,
}

impl DmaTable {
    pub fn new() -> Self {
        DmaTable {
            next_iova: IOVA_BASE,
            live: BTreeMap::new(),
            freed: BTreeMap::new(),
            faults: Vec::new(),
            errors: 0,
            use_after_free: 0,
            bus_master: true,
        }
    }

    pub fn live_regions(&self) -> usize {
        self.live.len()
    }

    fn map(&mut self, ptr: HostPtr, len: usize) -> Iova {
        let iova = self.next_iova;
        self.next_iova += (len + DMA_ALIGN) as u64; // one-page hole after each region
        self.live.insert(iova, Mapping { len, ptr });
        Iova(iova)
    }

    fn unmap(&mut self, iova: Iova) {
        if let Some(m) = self.live.remove(&iova.0) {
            self.freed.insert(iova.0, iova.0 + m.len as u64);
        }
    }

    /// Host pointer for `[iova, iova + len)`, which must lie in one live region.
    fn translate(&mut self, iova: u64, len: usize, write: bool) -> Result<*mut u8, DmaFault> {
        if !self.bus_master {
            let fault = DmaFault {
                iova: Iova(iova),
                len,
                write,
                kind: DmaFaultKind::BusMasterDisabled,
            };
            self.errors += 1;
            if self.faults.len() < FAULT_LOG_MAX {
                self.faults.push(fault);
            }
            tracing::debug!(?fault, "model: DMA with bus mastering off");
            return Err(fault);
        }
        if let Some((&start, m)) = self.live.range(..=iova).next_back() {
            let off = (iova - start) as usize;
            if off.checked_add(len).is_some_and(|end| end <= m.len) {
                return Ok(m.ptr.0.as_ptr().wrapping_add(off));
            }
        }
        let freed = self
            .freed
            .range(..=iova)
            .next_back()
            .is_some_and(|(_, &end)| iova < end);
        let fault = DmaFault {
            iova: Iova(iova),
            len,
            write,
            kind: if freed {
                DmaFaultKind::UseAfterFree
            } else {
                DmaFaultKind::Unmapped
            },
        };
        self.errors += 1;
        if freed {
            self.use_after_free += 1;
        }
        if self.faults.len() < FAULT_LOG_MAX {
            self.faults.push(fault);
        }
        tracing::debug!(?fault, "model: DMA fault");
        Err(fault)
    }

    /// Device reads host memory: copy `buf.len()` bytes from `iova`.
    pub fn read(&mut self, iova: u64, buf: &mut [u8]) -> Result<(), DmaFault> {
        let src = self.translate(iova, buf.len(), false)?;
        // SAFETY: `translate` checked that [src, src + len) lies inside a live
        // allocation; allocations are freed only after `unmap`, which needs
        // `&mut self` under the model lock that we hold, so it stays valid for
        // this copy. `buf` is a distinct Rust buffer, so they do not overlap.
        unsafe { std::ptr::copy_nonoverlapping(src, buf.as_mut_ptr(), buf.len()) };
        Ok(())
    }

    /// Device writes host memory: copy `data` to `iova`.
    pub fn write(&mut self, iova: u64, data: &[u8]) -> Result<(), DmaFault> {
        let dst = self.translate(iova, data.len(), true)?;
        // SAFETY: as in `read`: the destination range is inside a live
        // allocation that cannot be freed while we hold the lock, and `data`
        // is a separate buffer.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), dst, data.len()) };
        Ok(())
    }

    /// Only translate (for backings that do not move data); faults are recorded.
    pub fn check(&mut self, iova: u64, len: usize, write: bool) -> Result<(), DmaFault> {
        self.translate(iova, len, write).map(|_| ())
    }

    /// Write one completion entry as four volatile dword stores, the dword
    /// holding the phase tag last, with a release fence before it, so a
    /// poller on another thread never sees the new phase with stale fields.
    pub fn write_cqe(&mut self, iova: u64, dwords: [u32; 4]) -> Result<(), DmaFault> {
        if iova % 16 != 0 {
            return self.check(u64::MAX, 16, true); // records an Unmapped fault
        }
        let dst = self.translate(iova, 16, true)?.cast::<u32>();
        for (i, &d) in dwords.iter().enumerate() {
            if i == 3 {
                std::sync::atomic::fence(std::sync::atomic::Ordering::Release);
            }
            // SAFETY: the 16 bytes at `dst` are inside a live allocation (see
            // `read`); `iova` is 16-byte aligned and allocations are 4096-byte
            // aligned, so `dst + i` is 4-byte aligned and in bounds.
            unsafe { std::ptr::write_volatile(dst.add(i), d.to_le()) };
        }
        Ok(())
    }
}

/// DMA memory handed out by the model's `alloc_dma`.
///
/// Zero-filled, 4096-aligned heap memory with a fake IOVA. Dropping it
/// unmaps the IOVA (so later device accesses fault and are recorded) and
/// then frees the memory.
pub struct ModelDma {
    ptr: HostPtr,
    len: usize,
    iova: Iova,
    shared: Arc<Shared>,
}

impl ModelDma {
    pub(crate) fn alloc(shared: &Arc<Shared>, len: usize) -> Option<ModelDma> {
        let len = len.max(1).checked_next_multiple_of(DMA_ALIGN)?;
        let layout = Layout::from_size_align(len, DMA_ALIGN).ok()?;
        // SAFETY: `layout` has non-zero size (len >= 4096).
        let raw = unsafe { alloc::alloc_zeroed(layout) };
        let ptr = HostPtr(NonNull::new(raw)?);
        let iova = shared.lock().dma.map(ptr, len);
        Some(ModelDma {
            ptr,
            len,
            iova,
            shared: Arc::clone(shared),
        })
    }
}

// SAFETY: `ptr` is a zeroed, 4096-aligned heap allocation of `len` bytes
// owned by this value; the IOVA range is the model's own, contiguous and
// 4096-aligned; dropping removes it from the model's DMA table (under the
// lock) before the memory is freed.
unsafe impl DmaRegion for ModelDma {
    fn as_ptr(&self) -> *mut u8 {
        self.ptr.0.as_ptr()
    }
    fn iova(&self) -> Iova {
        self.iova
    }
    fn len(&self) -> usize {
        self.len
    }
}

impl std::fmt::Debug for ModelDma {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelDma")
            .field("iova", &self.iova)
            .field("len", &self.len)
            .finish()
    }
}

impl Drop for ModelDma {
    fn drop(&mut self) {
        {
            let mut inner = self.shared.lock();
            inner.dma.unmap(self.iova);
            inner.stats.dma_frees += 1;
        }
        let layout =
            Layout::from_size_align(self.len, DMA_ALIGN).expect("layout was valid at alloc");
        // SAFETY: `ptr` came from `alloc_zeroed` with this same layout, is
        // freed exactly once (here), and was unmapped above under the model
        // lock, so the model cannot access it any more.
        unsafe { alloc::dealloc(self.ptr.0.as_ptr(), layout) };
    }
}
