//! The narrow interface through which the driver reaches hardware.
//!
//! `nvme-core` never touches an OS API. Everything it needs from the
//! platform is here: 32/64-bit register access to BAR0, doorbell handles,
//! and DMA-able memory with its device-visible address (IOVA).
//!
//! `nvme-vfio` implements [`Hardware`] for a real PCI function behind VFIO;
//! an in-process controller model can implement it for unit tests and
//! fault injection. Everything on the I/O path is generic (monomorphised),
//! never a trait object, so a doorbell write compiles to one store.

use std::fmt;

use crate::regs::Register;

/// A device-visible DMA address (an IOVA under an IOMMU).
///
/// Distinct from host virtual addresses and from byte counts so the two
/// cannot be swapped by accident.
#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[repr(transparent)]
pub struct Iova(pub u64);

impl Iova {
    /// The address `bytes` further on.
    #[inline]
    pub const fn add(self, bytes: u64) -> Iova {
        Iova(self.0.wrapping_add(bytes))
    }
}

impl fmt::Debug for Iova {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Iova({:#x})", self.0)
    }
}

impl fmt::Display for Iova {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

/// One region of memory the device can access by DMA.
///
/// # Safety
///
/// The driver builds slices, list pages and rings on these promises, so an
/// implementation that breaks one is unsound:
/// - `as_ptr()` is valid for reads and writes of `len()` bytes for as long as
///   the value lives, is aligned to at least 4096 bytes, and the region is
///   zero-filled when handed out. `as_ptr()`, `iova()` and `len()` return
///   the same values for the life of the value.
/// - The region is contiguous in IOVA space: byte `i` is at `iova() + i`,
///   and `iova()` is 4096-aligned.
/// - Dropping the value removes the device's access (IOMMU unmap) *before*
///   the memory is returned to the OS. The driver guarantees it drops a
///   region only when the controller can no longer use it.
///
/// The provided accessors (`read_at`, `read_u32`, `write_u32`, `write_u64`)
/// are how the driver reaches memory the device shares with it outside
/// data buffers (the admin scratch page, list pages, shadow doorbells):
/// bounds- and alignment-checked, volatile for single words.
pub unsafe trait DmaRegion: Send + Sync + 'static {
    /// Host virtual address of byte 0.
    fn as_ptr(&self) -> *mut u8;
    /// Device-visible address of byte 0.
    fn iova(&self) -> Iova;
    /// Size in bytes (a multiple of 4096).
    fn len(&self) -> usize;
    /// True when `len() == 0` (never, for a region handed out by `alloc_dma`).
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Copy `out.len()` bytes starting at `offset` out of the region.
    ///
    /// # Panics
    /// If the range is not inside the region (a driver bug, never input).
    fn read_at(&self, offset: usize, out: &mut [u8]) {
        let end = offset.checked_add(out.len());
        assert!(
            end.is_some_and(|e| e <= self.len()),
            "read inside the region"
        );
        // SAFETY: [offset, offset + out.len()) lies inside the region, which
        // is valid for reads for as long as `self` lives (trait contract);
        // `out` is a separate Rust buffer, so the two do not overlap.
        unsafe {
            std::ptr::copy_nonoverlapping(self.as_ptr().add(offset), out.as_mut_ptr(), out.len())
        };
    }

    /// Volatile load of the little-endian dword at `offset` (4-aligned).
    ///
    /// # Panics
    /// If the dword is not inside the region or not aligned (a driver bug).
    #[inline]
    fn read_u32(&self, offset: usize) -> u32 {
        assert!(
            offset % 4 == 0 && offset + 4 <= self.len(),
            "aligned dword inside the region"
        );
        // SAFETY: in bounds and 4-aligned (checked; the region is 4096-aligned);
        // volatile because the device may write it concurrently.
        u32::from_le(unsafe { self.as_ptr().add(offset).cast::<u32>().read_volatile() })
    }

    /// Volatile store of `value` as the little-endian dword at `offset` (4-aligned).
    ///
    /// # Panics
    /// If the dword is not inside the region or not aligned (a driver bug).
    #[inline]
    fn write_u32(&self, offset: usize, value: u32) {
        assert!(
            offset % 4 == 0 && offset + 4 <= self.len(),
            "aligned dword inside the region"
        );
        // SAFETY: in bounds and 4-aligned (checked; the region is 4096-aligned);
        // volatile because the device may read it concurrently.
        unsafe {
            self.as_ptr()
                .add(offset)
                .cast::<u32>()
                .write_volatile(value.to_le())
        };
    }

    /// Volatile store of `value` as the little-endian qword at `offset` (8-aligned).
    ///
    /// # Panics
    /// If the qword is not inside the region or not aligned (a driver bug).
    #[inline]
    fn write_u64(&self, offset: usize, value: u64) {
        assert!(
            offset % 8 == 0 && offset + 8 <= self.len(),
            "aligned qword inside the region"
        );
        // SAFETY: in bounds and 8-aligned (checked; the region is 4096-aligned);
        // volatile because the device may read it concurrently.
        unsafe {
            self.as_ptr()
                .add(offset)
                .cast::<u64>()
                .write_volatile(value.to_le())
        };
    }
}

/// A handle that writes one doorbell register.
///
/// `ring` must perform exactly one 32-bit store of `value` to the doorbell.
/// The caller (the queue code in `nvme-core`) has already issued the barrier
/// that orders its earlier stores to DMA memory before this store
/// (a release fence, or `sfence`/`dsb st`); an implementation whose doorbell
/// mapping is write-combining must itself flush after the store
/// ([`crate::wc_flush`]) so the store is not held in a WC buffer.
pub trait Doorbell: Send + 'static {
    /// Store `value` to the doorbell register.
    fn ring(&mut self, value: u32);
}

/// How the platform's mapping of one range of device memory behaves.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum MemoryType {
    /// Strongly ordered, uncached (x86 UC/UC-, arm64 Device-nGnRnE).
    Uncached,
    /// Write-combining (x86 WC, arm64 Normal-NC).
    WriteCombining,
    /// Not known (the platform could not tell).
    Unknown,
}

/// Device memory (a Controller Memory Buffer window) mapped into the host.
///
/// # Safety
///
/// `as_ptr()` is valid for volatile stores and loads of `len()` bytes for
/// as long as the value lives, and both return the same values for the
/// life of the value (the driver places rings in it on that promise).
/// The driver keeps its stores no wider than [`Hardware::max_device_store`].
/// The mapping is write-combining when `memory_type()` says so, in which
/// case the driver drains WC buffers before ringing a doorbell.
pub unsafe trait DeviceMemory: Send + Sync + 'static {
    /// Host virtual address of byte 0.
    fn as_ptr(&self) -> *mut u8;
    /// Bytes mapped.
    fn len(&self) -> usize;
    /// True when `len() == 0`.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The memory type this mapping actually got (verified where the
    /// platform can tell).
    fn memory_type(&self) -> MemoryType;
}

/// For platforms with no device-memory mappings (e.g. the controller model).
#[derive(Debug)]
pub enum NoDeviceMemory {}

// SAFETY: uninhabited: no value exists, so no method can be called.
unsafe impl DeviceMemory for NoDeviceMemory {
    fn as_ptr(&self) -> *mut u8 {
        match *self {}
    }
    fn len(&self) -> usize {
        match *self {}
    }
    fn memory_type(&self) -> MemoryType {
        match *self {}
    }
}

/// An error from the platform layer, carried through `nvme-core` errors.
///
/// It keeps the platform's own error value (e.g. `nvme_vfio::VfioError`,
/// whose message says how to fix the setup): [`HwError::downcast_ref`]
/// gets it back, and it displays as that error does.
pub struct HwError(HwErrorRepr);

enum HwErrorRepr {
    Message(String),
    Source(Box<dyn std::error::Error + Send + Sync + 'static>),
}

impl HwError {
    /// An error that is only a message (fakes and models).
    pub fn msg(message: impl Into<String>) -> Self {
        HwError(HwErrorRepr::Message(message.into()))
    }

    /// Wrap the platform's own error, keeping its type.
    pub fn new<E: std::error::Error + Send + Sync + 'static>(error: E) -> Self {
        HwError(HwErrorRepr::Source(Box::new(error)))
    }

    /// The platform's error, if it is an `E`.
    pub fn downcast_ref<E: std::error::Error + 'static>(&self) -> Option<&E> {
        match &self.0 {
            HwErrorRepr::Source(e) => e.downcast_ref::<E>(),
            HwErrorRepr::Message(_) => None,
        }
    }
}

impl fmt::Debug for HwError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            HwErrorRepr::Message(m) => f.debug_tuple("HwError").field(m).finish(),
            HwErrorRepr::Source(e) => f.debug_tuple("HwError").field(e).finish(),
        }
    }
}

impl fmt::Display for HwError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            HwErrorRepr::Message(m) => f.write_str(m),
            HwErrorRepr::Source(e) => e.fmt(f),
        }
    }
}

/// Transparent: the wrapped error's own source, so a chain of causes is
/// reported once.
impl std::error::Error for HwError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.0 {
            HwErrorRepr::Source(e) => e.source(),
            HwErrorRepr::Message(_) => None,
        }
    }
}

/// Register access, doorbells and DMA memory for one NVMe controller.
///
/// # Safety
///
/// The device behind an implementation reaches host memory only at IOVAs
/// of regions this same value handed out ([`Hardware::alloc_dma`]), and
/// only while they live (an IOMMU domain per controller, as VFIO gives):
/// the driver's ownership rules for DMA memory rest on that. Its
/// associated types uphold their own traits' contracts.
///
/// Register offsets are byte offsets into BAR0. Implementations must perform
/// each access as a single naturally aligned load/store of the given width
/// (QEMU's controller emulates nothing wider than 8 bytes). Register access
/// cannot fail: an implementation that cannot complete a read returns all
/// ones (what a PCIe read of a removed device returns), which the driver
/// treats as "device gone"; a write it cannot complete is logged and dropped.
pub unsafe trait Hardware: Send + Sync + 'static {
    /// DMA memory handed out by [`Hardware::alloc_dma`].
    type Dma: DmaRegion;
    /// Doorbell handle handed out by [`Hardware::doorbell`].
    type Doorbell: Doorbell;
    /// Device memory handed out by [`Hardware::map_device_memory`].
    type DeviceMem: DeviceMemory;
    /// Read-only facts about the platform device (its address, mappings,
    /// statistics) that a live controller may show its users: it must not
    /// give access to the registers or to DMA.
    type Info: Clone + Send + Sync + 'static;

    /// The facts [`Hardware::Info`] holds.
    fn info(&self) -> Self::Info;

    /// Read a 32-bit register.
    fn read32(&self, offset: usize) -> u32;
    /// Read a 64-bit register.
    fn read64(&self, offset: usize) -> u64;
    /// Write a 32-bit register.
    fn write32(&self, offset: usize, value: u32);
    /// Write a 64-bit register.
    fn write64(&self, offset: usize, value: u64);

    /// Read register `R` (its type knows its offset and width).
    #[inline]
    fn read_reg<R: Register>(&self) -> R {
        if R::WIDE {
            R::from_raw(self.read64(R::OFFSET))
        } else {
            R::from_raw(u64::from(self.read32(R::OFFSET)))
        }
    }

    /// Write register `R`.
    #[inline]
    fn write_reg<R: Register>(&self, value: R) {
        if R::WIDE {
            self.write64(R::OFFSET, value.to_raw());
        } else {
            self.write32(R::OFFSET, value.to_raw() as u32);
        }
    }

    /// A handle to the doorbell register at `offset` in BAR0
    /// (computed by the caller from CAP.DSTRD).
    fn doorbell(&self, offset: usize) -> Result<Self::Doorbell, HwError>;

    /// Allocate `len` bytes (rounded up to 4096) of zeroed DMA memory.
    fn alloc_dma(&self, len: usize) -> Result<Self::Dma, HwError>;

    /// Map `len` bytes at `offset` of memory BAR `bar` (the CMB), with the
    /// best memory type the platform can give (write-combining if it can).
    fn map_device_memory(&self, bar: u8, offset: u64, len: u64)
        -> Result<Self::DeviceMem, HwError>;

    /// The bus address the device decodes for BAR `bar` (the legacy CMB
    /// scheme matches data pointers against it; the NVMe 1.4 scheme
    /// programs it into CMBMSC.CBA).
    fn bar_address(&self, bar: u8) -> Result<u64, HwError>;

    /// Widest single store (bytes) the device accepts into device memory:
    /// a per-device property (QEMU's 1b36:0010 emulates at most 8 bytes).
    fn max_device_store(&self) -> usize {
        8
    }

    /// Reset the whole function (a PCI function-level reset, VFIO's
    /// `VFIO_DEVICE_RESET`), for when clearing CC.EN does not stop the
    /// controller. The default: not possible on this platform.
    fn function_reset(&self) -> Result<(), HwError> {
        Err(HwError::msg("this platform cannot reset the PCI function"))
    }

    /// Allow (`true`) or forbid (`false`) the device to start DMA: the PCI
    /// command register's Bus Master Enable. A reset forbids it before it
    /// clears CC.EN and allows it again before the controller is enabled,
    /// as the kernel's PCI core does around every function reset: a
    /// controller that fetches a command the host queued just before the
    /// reset then cannot start it (QEMU 7.2 does exactly that while it
    /// drains for CC.EN = 0 and completes the write after freeing its
    /// queue). The default: not possible on this platform (the reset goes
    /// on without it).
    fn set_bus_master(&self, enable: bool) -> Result<(), HwError> {
        let _ = enable;
        Err(HwError::msg(
            "this platform cannot switch the device's bus mastering",
        ))
    }

    /// Call `on_removal` (once, from any thread) when the platform learns
    /// that the device is going away: hot-unplug, or the kernel asking for
    /// it back (VFIO's request interrupt). By the time it is called the
    /// implementation must have made register and doorbell accesses
    /// harmless (they read all ones and write nowhere); the driver then
    /// stops using the device and fails everything with `DeviceRemoved`.
    /// The default: the platform cannot tell (nothing is ever called).
    fn watch_removal(&self, on_removal: Box<dyn Fn() + Send + Sync + 'static>) {
        drop(on_removal);
    }

    /// Sleep or yield for about `micros` microseconds while waiting on the
    /// controller during bring-up and admin commands (never on the I/O path).
    fn delay_us(&self, micros: u64) {
        std::thread::sleep(std::time::Duration::from_micros(micros));
    }
}
