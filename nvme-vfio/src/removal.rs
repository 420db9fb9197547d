//! Device removal (issue #13): VFIO's request and error interrupts, a
//! watcher thread per device, and what happens when the device goes.
//!
//! At open, an eventfd is registered for `VFIO_PCI_REQ_IRQ_INDEX` (the
//! kernel signals it when it wants the device back: hot-unplug, unbind) and,
//! where the kernel offers it (PCIe functions), one for
//! `VFIO_PCI_ERR_IRQ_INDEX` (an uncorrectable AER error). A third eventfd is
//! written by the SIGBUS handler (`sys`) when an access to one of the
//! device's BAR mappings faulted (surprise removal, link down). The watcher
//! thread (`nvme-vfio-watch <BDF>`) polls those plus a stop eventfd that the
//! device's teardown writes, then joins it.
//!
//! Removal (request interrupt, or a caught fault), in this order:
//! 1. pread/pwrite routes to the device fd fail at once (register reads
//!    through them return all ones), and every BAR mapping (BAR0 registers
//!    and doorbells, any CMB mapping) is replaced in place by private
//!    memory reading all ones: doorbell stores from other threads never
//!    fault and reach nothing;
//! 2. the hook `nvme-core` registered with `Hardware::watch_removal` is
//!    called once (right away, from `watch_removal`, if the removal came
//!    first);
//! 3. the device fd is closed. Nothing else holds it (the mappings no
//!    longer refer to it), so the kernel's removal completes while the
//!    process lives on; the group and container stay until the last DMA
//!    buffer is dropped.
//!
//! An AER error is logged and counted ([`crate::VfioDeviceInfo::aer_events`]),
//! and otherwise left to the driver: the kernel's recovery resets the link,
//! so the controller stops answering commands; `nvme-core` sees them pass
//! their deadlines and resets the controller (the path a reset behind its
//! back already takes). If the device does not come back, the kernel
//! removes it, which the request interrupt reports.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use vfio_bindings::bindings::vfio::{
    VFIO_IRQ_INFO_EVENTFD, VFIO_PCI_ERR_IRQ_INDEX, VFIO_PCI_REQ_IRQ_INDEX,
};

use crate::device::DeviceFd;
use crate::pci::PciAddress;
use crate::sys::{self, Mmap};

/// The removal hook `nvme-core` registers.
pub(crate) type Hook = Box<dyn Fn() + Send + Sync + 'static>;

enum HookState {
    /// Nothing registered yet, device present.
    Empty,
    Registered(Hook),
    /// The device was removed (and the hook, if any, called).
    Fired,
}

/// What the device and its watcher thread share (the thread holds no
/// reference to the device itself, so dropping the device ends it).
pub(crate) struct Removal {
    address: PciAddress,
    device: Arc<DeviceFd>,
    maps: Vec<Arc<Mmap>>,
    removed: AtomicBool,
    hook: Mutex<HookState>,
    aer_events: AtomicU64,
    /// What the kernel offered at open: (request, error) interrupts.
    pub(crate) channels: (bool, bool),
}

impl std::fmt::Debug for Removal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Removal")
            .field("removed", &self.is_removed())
            .field("request_irq", &self.channels.0)
            .field("error_irq", &self.channels.1)
            .finish()
    }
}

impl Removal {
    pub(crate) fn is_removed(&self) -> bool {
        self.removed.load(Ordering::Acquire)
    }

    pub(crate) fn aer_events(&self) -> u64 {
        self.aer_events.load(Ordering::Relaxed)
    }

    /// Register the hook; if the device is already gone, call it now.
    pub(crate) fn set_hook(&self, hook: Hook) {
        let mut st = self.hook.lock().unwrap_or_else(|e| e.into_inner());
        match *st {
            HookState::Fired => {
                drop(st);
                hook();
            }
            _ => *st = HookState::Registered(hook),
        }
    }

    /// The device is going away: steps 1–3 of the module docs, once.
    pub(crate) fn remove(&self, why: &str) {
        if self.removed.swap(true, Ordering::AcqRel) {
            return;
        }
        let t = Instant::now();
        tracing::error!("{}: device removal: {why}", self.address);
        self.device.mark_gone();
        for m in &self.maps {
            if let Err(e) = m.make_harmless() {
                tracing::error!(
                    "{}: replacing a BAR mapping ({:p}, {:#x} bytes) failed: {e}",
                    self.address,
                    m.as_ptr(),
                    m.len()
                );
            }
        }
        let hook = {
            let mut st = self.hook.lock().unwrap_or_else(|e| e.into_inner());
            match std::mem::replace(&mut *st, HookState::Fired) {
                HookState::Registered(h) => Some(h),
                _ => None,
            }
        };
        if let Some(h) = hook {
            h();
        }
        let closed = self.device.release();
        tracing::warn!(
            "{}: removal handled in {} us (device fd {})",
            self.address,
            t.elapsed().as_micros(),
            if closed {
                "closed"
            } else {
                "was already closed"
            }
        );
    }
}

/// The watcher thread and its stop eventfd; dropping it stops and joins it.
pub(crate) struct Watcher {
    pub(crate) removal: Arc<Removal>,
    stop: File,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.removal.fmt(f)
    }
}

/// An eventfd registered for interrupt `index`, if the kernel offers it.
fn register(device: &DeviceFd, address: &PciAddress, index: u32, name: &str) -> Option<File> {
    let r = device.with_file(|f| {
        let info = sys::device_get_irq_info(f, index)?;
        if info.count == 0 || info.flags & VFIO_IRQ_INFO_EVENTFD == 0 {
            return Ok(None);
        }
        let efd = sys::eventfd()?;
        sys::device_set_irq_eventfd(f, index, efd.as_fd())?;
        Ok::<_, std::io::Error>(Some(efd))
    });
    match r.and_then(|x| x) {
        Ok(Some(efd)) => Some(efd),
        Ok(None) => {
            tracing::info!("{address}: the kernel offers no {name} interrupt");
            None
        }
        Err(e) => {
            tracing::warn!("{address}: registering the {name} interrupt failed: {e}");
            None
        }
    }
}

fn drain(f: &File) {
    let mut b = [0u8; 8];
    let _ = (&*f).read(&mut b);
}

impl Watcher {
    /// Register the interrupts and start the thread. `maps` are every BAR
    /// mapping of the device. Failing to register only loses the feature
    /// (logged): the device still works.
    pub(crate) fn start(
        address: PciAddress,
        device: &Arc<DeviceFd>,
        maps: Vec<Arc<Mmap>>,
    ) -> std::io::Result<Watcher> {
        let req = register(device, &address, VFIO_PCI_REQ_IRQ_INDEX, "request");
        let err = register(device, &address, VFIO_PCI_ERR_IRQ_INDEX, "error (AER)");
        let fault = sys::eventfd()?;
        for m in &maps {
            m.notify_fault_to(fault.as_fd());
        }
        let stop = sys::eventfd()?;
        let removal = Arc::new(Removal {
            address,
            device: Arc::clone(device),
            maps,
            removed: AtomicBool::new(false),
            hook: Mutex::new(HookState::Empty),
            aer_events: AtomicU64::new(0),
            channels: (req.is_some(), err.is_some()),
        });
        let r = Arc::clone(&removal);
        let stop2 = stop.try_clone()?;
        let thread = std::thread::Builder::new()
            .name(format!("nvme-vfio-watch {address}"))
            .spawn(move || watch(&r, &stop2, req, err, fault))?;
        Ok(Watcher {
            removal,
            stop,
            thread: Some(thread),
        })
    }
}

fn watch(r: &Removal, stop: &File, req: Option<File>, err: Option<File>, fault: File) {
    // Index 0: stop, 1: fault, then the request and error eventfds if any.
    let mut fds: Vec<BorrowedFd<'_>> = vec![stop.as_fd(), fault.as_fd()];
    let req_i = req.as_ref().map(|f| {
        fds.push(f.as_fd());
        fds.len() - 1
    });
    let err_i = err.as_ref().map(|f| {
        fds.push(f.as_fd());
        fds.len() - 1
    });
    loop {
        let ready = match sys::poll_readable(&fds, -1) {
            Ok(v) => v,
            Err(e) => {
                tracing::error!("{}: removal watcher: poll: {e}; stopping", r.address);
                return;
            }
        };
        if ready[0] {
            return;
        }
        if ready[1] {
            drain(&fault);
            r.remove("an access to a BAR mapping faulted (SIGBUS): the device is gone");
        }
        if let (Some(i), Some(f)) = (req_i, &req) {
            if ready[i] {
                drain(f);
                r.remove("the kernel asks for the device back (VFIO request interrupt: hot-unplug or unbind)");
            }
        }
        if let (Some(i), Some(f)) = (err_i, &err) {
            if ready[i] {
                drain(f);
                let n = r.aer_events.fetch_add(1, Ordering::Relaxed) + 1;
                tracing::error!(
                    "{}: uncorrectable PCIe error reported (VFIO error interrupt, AER event {n}); \
                     commands that do not complete are timed out and the controller reset",
                    r.address
                );
            }
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = (&self.stop).write_all(&1u64.to_ne_bytes());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
