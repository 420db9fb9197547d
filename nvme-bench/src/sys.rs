//! Small OS helpers: CPU affinity and per-thread resource usage.

use crate::error::{Error, Result};

/// The CPUs this process may run on.
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data; zeroed is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: we pass the set's true size; the kernel writes within it.
    let r = unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if r != 0 {
        return vec![0];
    }
    let v: Vec<usize> = (0..libc::CPU_SETSIZE as usize)
        // SAFETY: i is below CPU_SETSIZE, the set's capacity.
        .filter(|&i| unsafe { libc::CPU_ISSET(i, &set) })
        .collect();
    if v.is_empty() {
        vec![0]
    } else {
        v
    }
}

/// `ioprio_set(IOPRIO_WHO_PROCESS, 0, value)`: the calling thread's I/O
/// priority.
pub fn ioprio_set_current(value: u16) -> std::io::Result<()> {
    // SAFETY: ioprio_set takes three integers and touches no memory.
    let r = unsafe { libc::syscall(libc::SYS_ioprio_set, 1, 0, libc::c_int::from(value)) };
    if r == -1 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Pin the calling thread to `cpus`.
pub fn pin_current_thread(cpus: &[usize]) -> Result<()> {
    // SAFETY: as above, an empty plain-data set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &c in cpus {
        if c >= libc::CPU_SETSIZE as usize {
            return Err(Error::msg(format!("CPU {c} out of range")));
        }
        // SAFETY: c is below CPU_SETSIZE.
        unsafe { libc::CPU_SET(c, &mut set) };
    }
    // SAFETY: pid 0 is the calling thread; the set is valid and sized.
    let r = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if r != 0 {
        return Err(Error::msg(format!(
            "cpus_allowed={cpus:?}: {}",
            std::io::Error::last_os_error()
        )));
    }
    Ok(())
}

/// Per-thread CPU times and counters.
#[derive(Clone, Copy, Debug, Default)]
pub struct Usage {
    pub user_us: u64,
    pub sys_us: u64,
    pub ctx: u64,
    pub majf: u64,
    pub minf: u64,
}

pub fn thread_usage() -> Usage {
    // SAFETY: rusage is plain data; getrusage fills it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to a rusage.
    let r = unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) };
    if r != 0 {
        return Usage::default();
    }
    let us = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    Usage {
        user_us: us(ru.ru_utime),
        sys_us: us(ru.ru_stime),
        ctx: (ru.ru_nvcsw + ru.ru_nivcsw) as u64,
        majf: ru.ru_majflt as u64,
        minf: ru.ru_minflt as u64,
    }
}

impl std::ops::Sub for Usage {
    type Output = Usage;
    fn sub(self, o: Usage) -> Usage {
        Usage {
            user_us: self.user_us.saturating_sub(o.user_us),
            sys_us: self.sys_us.saturating_sub(o.sys_us),
            ctx: self.ctx.saturating_sub(o.ctx),
            majf: self.majf.saturating_sub(o.majf),
            minf: self.minf.saturating_sub(o.minf),
        }
    }
}

/// Linux native AIO (`io_setup`/`io_submit`/`io_getevents`/`io_destroy`),
/// as fio's libaio engine uses it, through raw syscalls (no libaio C
/// library). The structures are the kernel's `linux/aio_abi.h` ones.
pub mod aio {
    use crate::error::{Error, Result};

    /// `IOCB_CMD_PREAD` / `IOCB_CMD_PWRITE`.
    pub const CMD_PREAD: u16 = 0;
    pub const CMD_PWRITE: u16 = 1;

    /// `struct iocb` (64 bytes). On little-endian machines `aio_key`
    /// comes before `aio_rw_flags` (the kernel's `PADDED` macro).
    #[cfg(target_endian = "little")]
    #[repr(C)]
    #[derive(Clone, Copy, Default, Debug)]
    pub struct Iocb {
        pub data: u64,
        pub key: u32,
        pub rw_flags: i32,
        pub opcode: u16,
        pub reqprio: i16,
        pub fildes: u32,
        pub buf: u64,
        pub nbytes: u64,
        pub offset: i64,
        pub reserved2: u64,
        pub flags: u32,
        pub resfd: u32,
    }

    /// `struct io_event` (32 bytes).
    #[repr(C)]
    #[derive(Clone, Copy, Default, Debug)]
    pub struct Event {
        pub data: u64,
        pub obj: u64,
        pub res: i64,
        pub res2: i64,
    }

    const _: () = assert!(std::mem::size_of::<Iocb>() == 64);
    const _: () = assert!(std::mem::size_of::<Event>() == 32);

    fn err(what: &str) -> Error {
        Error::msg(format!("{what}: {}", std::io::Error::last_os_error()))
    }

    /// An AIO context for `nr` requests in flight; destroyed on drop.
    pub struct Context(u64);

    impl Context {
        pub fn new(nr: u32) -> Result<Context> {
            let mut ctx: u64 = 0;
            // SAFETY: io_setup writes the context id to the u64 we pass,
            // which lives across the call.
            let r = unsafe {
                libc::syscall(
                    libc::SYS_io_setup,
                    libc::c_long::from(nr.max(1)),
                    &mut ctx as *mut u64,
                )
            };
            if r != 0 {
                return Err(err("io_setup"));
            }
            Ok(Context(ctx))
        }

        /// Submit `iocbs`; returns how many the kernel took (0 on EAGAIN).
        ///
        /// # Safety
        /// Each pointer must point to an `Iocb` whose buffer (`buf`,
        /// `nbytes`) stays valid and unused by anyone else, and which itself
        /// stays in place, until its completion is reaped.
        pub unsafe fn submit(&self, iocbs: &mut [*mut Iocb]) -> Result<usize> {
            if iocbs.is_empty() {
                return Ok(0);
            }
            // SAFETY: the caller guarantees the iocbs and their buffers;
            // the pointer array is valid for iocbs.len() entries.
            let r = unsafe {
                libc::syscall(
                    libc::SYS_io_submit,
                    self.0,
                    iocbs.len() as libc::c_long,
                    iocbs.as_mut_ptr(),
                )
            };
            if r < 0 {
                let e = std::io::Error::last_os_error();
                if e.raw_os_error() == Some(libc::EAGAIN) {
                    return Ok(0);
                }
                return Err(Error::msg(format!("io_submit: {e}")));
            }
            Ok(r as usize)
        }

        /// Wait for at least `min` and collect at most `out.len()` events.
        pub fn getevents(&self, min: usize, out: &mut [Event]) -> Result<usize> {
            loop {
                // SAFETY: `out` is valid for out.len() events; a null
                // timeout waits for `min`.
                let r = unsafe {
                    libc::syscall(
                        libc::SYS_io_getevents,
                        self.0,
                        min.min(out.len()) as libc::c_long,
                        out.len() as libc::c_long,
                        out.as_mut_ptr(),
                        std::ptr::null_mut::<libc::timespec>(),
                    )
                };
                if r >= 0 {
                    return Ok(r as usize);
                }
                if std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                    return Err(err("io_getevents"));
                }
            }
        }
    }

    impl Drop for Context {
        fn drop(&mut self) {
            // SAFETY: the context was set up by io_setup; io_destroy
            // waits for (or cancels) what is still in flight.
            unsafe { libc::syscall(libc::SYS_io_destroy, self.0) };
        }
    }
}

/// The CPU's time-stamp counter (x86-64 `rdtsc`); `None` elsewhere.
#[inline(always)]
pub fn rdtsc() -> Option<u64> {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: rdtsc reads a counter; it has no memory effects and every
        // x86-64 CPU has it.
        Some(unsafe { core::arch::x86_64::_rdtsc() })
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        None
    }
}

/// fio's `tsc_reliable` on x86 (arch-x86-common.h): CPUID leaf 0x80000007
/// EDX bit 8, the invariant TSC (constant rate in every P-, C- and T-state).
pub fn tsc_invariant() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use core::arch::x86_64::__cpuid;
        // Leaf 0x80000000 reports the highest extended leaf, checked
        // before 0x80000007 is read.
        let max = __cpuid(0x8000_0000).eax;
        if max < 0x8000_0007 {
            return false;
        }
        let edx = __cpuid(0x8000_0007).edx;
        edx & (1 << 8) != 0
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `clock_gettime(clk)` in nanoseconds.
#[inline]
pub fn clock_ns(clk: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid timespec the call writes; the clocks used here
    // (MONOTONIC, MONOTONIC_RAW) exist on every Linux we run on.
    unsafe { libc::clock_gettime(clk, &mut ts) };
    (ts.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(ts.tv_nsec as u64)
}

/// `gettimeofday` in nanoseconds (microsecond resolution).
#[inline]
pub fn gettimeofday_ns() -> u64 {
    let mut tv = libc::timeval {
        tv_sec: 0,
        tv_usec: 0,
    };
    // SAFETY: tv is a valid timeval the call writes; no timezone.
    unsafe { libc::gettimeofday(&mut tv, std::ptr::null_mut()) };
    (tv.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(tv.tv_usec as u64 * 1000)
}

/// `set_mempolicy(2)` for the calling thread: `mode` (MPOL_*) over
/// `nodes`, passed as libnuma passes it (a 1024-bit mask, maxnode 1025).
pub fn set_mempolicy(mode: i32, nodes: &[u32]) -> Result<()> {
    let mut mask = [0u64; 16];
    for &n in nodes {
        let n = n as usize;
        if n >= 1024 {
            return Err(Error::msg(format!("NUMA node {n} out of range")));
        }
        mask[n / 64] |= 1 << (n % 64);
    }
    // SAFETY: the mask is 1024 bits long and maxnode (1025) asks the kernel
    // to read 1024 bits of it; the call only reads the mask.
    let r = unsafe {
        libc::syscall(
            libc::SYS_set_mempolicy,
            mode as libc::c_long,
            mask.as_ptr(),
            1025 as libc::c_ulong,
        )
    };
    if r != 0 {
        return Err(Error::msg(format!(
            "set_mempolicy: {}",
            std::io::Error::last_os_error()
        )));
    }
    Ok(())
}
