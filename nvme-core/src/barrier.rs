//! Memory-ordering rules for talking to an NVMe controller, in one place.
//!
//! - Before a doorbell store, every earlier store to a submission queue entry
//!   (host memory or CMB) and to data buffers must be visible to the device:
//!   [`before_doorbell`].
//! - A store through a write-combining mapping may sit in a WC buffer until
//!   something drains it: [`wc_flush`] drains it.
//! - After reading a completion entry's phase bit, later reads of that entry
//!   must not be satisfied earlier: [`after_phase_read`].
//!
//! x86_64 is TSO: normal (write-back) stores are not reordered with a later
//! uncached store, so for host-memory queues a compiler fence suffices before
//! an uncached doorbell; WC stores are weakly ordered and need `sfence`.
//! aarch64 needs a real barrier in both cases (`dmb oshst` for normal memory,
//! `dsb st` to drain Normal-NC/WC).

#[cfg(not(target_arch = "aarch64"))]
use std::sync::atomic::{compiler_fence, Ordering};

/// Order earlier stores to host DMA memory (SQEs, PRP lists, write data)
/// before the next doorbell store to an uncached register.
#[inline(always)]
pub fn before_doorbell() {
    #[cfg(target_arch = "aarch64")]
    // SAFETY: `dmb oshst` is a barrier instruction with no memory operands;
    // it only constrains ordering.
    unsafe {
        std::arch::asm!("dmb oshst", options(nostack, preserves_flags));
    }
    #[cfg(not(target_arch = "aarch64"))]
    compiler_fence(Ordering::SeqCst);
}

/// Drain write-combining buffers: every earlier WC store reaches the device
/// before any later store. Use after SQE stores into a WC-mapped CMB and
/// after a doorbell store through a WC mapping.
#[inline(always)]
pub fn wc_flush() {
    // Miri cannot run inline assembly; a SeqCst fence is at least as strong
    // for the memory model it checks.
    #[cfg(miri)]
    std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    // SAFETY: `sfence` has no operands and only orders stores.
    unsafe {
        std::arch::asm!("sfence", options(nostack, preserves_flags));
    }
    #[cfg(all(target_arch = "aarch64", not(miri)))]
    // SAFETY: `dsb st` has no operands and only waits for stores to complete.
    unsafe {
        std::arch::asm!("dsb st", options(nostack, preserves_flags));
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
}

/// Full fence: earlier stores are visible before later loads (used between
/// a shadow doorbell store and the EventIdx load that follows it).
#[inline(always)]
pub fn full() {
    std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
}

/// After observing a new completion entry (its phase bit), order the reads
/// of the rest of the entry and of the data the command transferred.
#[inline(always)]
pub fn after_phase_read() {
    #[cfg(target_arch = "aarch64")]
    // SAFETY: `dmb oshld` has no operands and only orders loads.
    unsafe {
        std::arch::asm!("dmb oshld", options(nostack, preserves_flags));
    }
    #[cfg(not(target_arch = "aarch64"))]
    compiler_fence(Ordering::SeqCst);
}
