//! A per-thread counting global allocator, shared by the overhead
//! benchmark and the async allocation test (included with `#[path]`; each
//! binary installs it as its `#[global_allocator]`).
//!
//! Every heap allocation (alloc, alloc_zeroed, realloc) of the calling
//! thread is counted, except inside [`in_device`]: the model's own work on
//! the other side of a doorbell is not the driver's.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

pub struct CountingAlloc;

thread_local! {
    /// Allocations made by this thread outside the model.
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
    /// The thread is inside the model (its allocations are not counted).
    static IN_DEVICE: Cell<bool> = const { Cell::new(false) };
}

fn count_allocation() {
    // `try_with`: during thread teardown the slots may be gone already.
    if !IN_DEVICE.try_with(Cell::get).unwrap_or(true) {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
    }
}

// SAFETY: every method forwards to the system allocator with the caller's
// arguments unchanged, so `System`'s guarantees carry over; the counters
// are const-initialised thread-local `Cell`s (no lazy init, no
// destructor), so counting never allocates or re-enters the allocator.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_allocation();
        // SAFETY: forwarded unchanged; the caller upholds `alloc`'s contract.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count_allocation();
        // SAFETY: forwarded unchanged.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged: `ptr` came from this allocator, i.e.
        // from `System`, with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_allocation();
        // SAFETY: forwarded unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Heap allocations made so far by the calling thread outside the model.
pub fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

/// Run `f` as the device: its allocations are not counted.
pub fn in_device<R>(f: impl FnOnce() -> R) -> R {
    let was = IN_DEVICE.with(|d| d.replace(true));
    let r = f();
    IN_DEVICE.with(|d| d.set(was));
    r
}
