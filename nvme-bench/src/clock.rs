//! The job loop's clock, fio's `clocksource=` (gettime.c).
//!
//! * `cpu`: the CPU's time-stamp counter, calibrated once against
//!   `CLOCK_MONOTONIC` at start-up and scaled to nanoseconds with a
//!   multiply and a shift (no system call, no vDSO page, ~10 instructions);
//! * `clock_gettime`: `clock_gettime(CLOCK_MONOTONIC)` (as std's `Instant`);
//! * `gettimeofday`: `gettimeofday(2)` (microsecond resolution, wall clock).
//!
//! Default, as fio's `fio_clock_init`: `cpu` when the TSC is invariant
//! (CPUID 0x80000007 EDX bit 8, fio's `tsc_reliable` on x86) and calibrates,
//! else `clock_gettime`. fio also runs a cross-CPU monotonicity test
//! (`fio_monotonic_clocktest`) before choosing `cpu`; we do not. An invariant
//! TSC is synchronised across cores on the machines we know, and a negative
//! difference (a thread moved to a core whose counter is behind) is taken
//! as zero, never as a huge latency. `clocksource=cpu` on a CPU without an
//! invariant TSC is honoured with fio's warning ("may not be reliable").
//!
//! [`Instant`] mimics `std::time::Instant` (nanoseconds since an origin
//! taken at start-up) so the job loop reads one clock everywhere; it is
//! turned into a `std::time::Instant` only where one is handed out (engine
//! deadlines, the log writer).

use std::ops::{Add, AddAssign, Sub};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use crate::sys;

/// fio's `clocksource=` values.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Source {
    Cpu,
    ClockGettime,
    Gettimeofday,
}

const S_CGETTIME: u8 = 0;
const S_GTOD: u8 = 1;
const S_CPU: u8 = 2;

static SOURCE: AtomicU8 = AtomicU8::new(S_CGETTIME);
/// TSC ticks at the origin, and nanoseconds per tick << 32.
static TSC_START: AtomicU64 = AtomicU64::new(0);
static TSC_MULT: AtomicU64 = AtomicU64::new(0);
/// The source's raw nanoseconds at the origin (clock_gettime/gettimeofday).
static RAW_START: AtomicU64 = AtomicU64::new(0);
/// A std `Instant` and our reading taken together, for [`Instant::to_std`].
static ANCHOR: OnceLock<(std::time::Instant, u64)> = OnceLock::new();

/// What [`init`] chose.
#[derive(Copy, Clone, Debug)]
pub struct Chosen {
    pub source: Source,
    /// TSC ticks per second (cpu only).
    pub tsc_hz: Option<u64>,
}

/// Measure the TSC's rate against CLOCK_MONOTONIC over ~`span`; `None`
/// if there is no TSC or it does not advance.
fn calibrate(span: Duration) -> Option<u64> {
    // One (monotonic ns, tsc) pair read close together (retry when the
    // thread was interrupted between the two monotonic reads).
    let pair = || {
        let mut best = None;
        for _ in 0..16 {
            let a = sys::clock_ns(libc::CLOCK_MONOTONIC);
            let c = sys::rdtsc()?;
            let b = sys::clock_ns(libc::CLOCK_MONOTONIC);
            let w = b.saturating_sub(a);
            if best.is_none_or(|(bw, _, _)| w < bw) {
                best = Some((w, a + w / 2, c));
            }
            if w < 2_000 {
                break;
            }
        }
        best.map(|(_, t, c)| (t, c))
    };
    let (t0, c0) = pair()?;
    let want = span.as_nanos() as u64;
    while sys::clock_ns(libc::CLOCK_MONOTONIC).saturating_sub(t0) < want {
        std::hint::spin_loop();
    }
    let (t1, c1) = pair()?;
    let dt = t1.checked_sub(t0).filter(|&d| d > 0)?;
    let dc = c1.checked_sub(c0).filter(|&d| d > 0)?;
    let hz = (u128::from(dc) * 1_000_000_000 / u128::from(dt)) as u64;
    // Below 1 MHz: not a usable counter (e.g. one that stands still).
    (hz >= 1_000_000).then_some(hz)
}

/// Choose and set up the clock: `want` is the job file's `clocksource=`
/// (None: fio's default). Call once, before any job thread starts; later
/// calls change nothing and return the first choice.
pub fn init(want: Option<Source>) -> Chosen {
    static CHOSEN: OnceLock<Chosen> = OnceLock::new();
    *CHOSEN.get_or_init(|| {
        let invariant = sys::tsc_invariant();
        let mut chosen = Chosen {
            source: Source::ClockGettime,
            tsc_hz: None,
        };
        match want {
            Some(Source::Gettimeofday) => chosen.source = Source::Gettimeofday,
            Some(Source::ClockGettime) => {}
            Some(Source::Cpu) | None => {
                if want.is_some() && !invariant {
                    eprintln!("nvme-bench: clocksource=cpu may not be reliable");
                }
                if want.is_some() || invariant {
                    match calibrate(Duration::from_millis(20)) {
                        Some(hz) => {
                            chosen = Chosen {
                                source: Source::Cpu,
                                tsc_hz: Some(hz),
                            }
                        }
                        None if want.is_some() => eprintln!(
                            "nvme-bench: clocksource=cpu: no usable CPU clock, using clock_gettime"
                        ),
                        None => {}
                    }
                }
            }
        }
        match chosen.source {
            Source::Cpu => {
                let hz = chosen.tsc_hz.unwrap_or(1_000_000_000);
                let mult = ((1_000_000_000u128 << 32) / u128::from(hz)) as u64;
                TSC_MULT.store(mult, Ordering::Relaxed);
                TSC_START.store(sys::rdtsc().unwrap_or(0), Ordering::Relaxed);
                SOURCE.store(S_CPU, Ordering::Release);
            }
            Source::ClockGettime => {
                RAW_START.store(sys::clock_ns(libc::CLOCK_MONOTONIC), Ordering::Relaxed);
                SOURCE.store(S_CGETTIME, Ordering::Release);
            }
            Source::Gettimeofday => {
                RAW_START.store(sys::gettimeofday_ns(), Ordering::Relaxed);
                SOURCE.store(S_GTOD, Ordering::Release);
            }
        }
        let _ = ANCHOR.set((std::time::Instant::now(), Instant::now().0));
        chosen
    })
}

/// A reading of the chosen clock: nanoseconds since the origin.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(u64);

impl Instant {
    /// The clock's origin: no reading is earlier.
    pub const ORIGIN: Instant = Instant(0);

    #[inline(always)]
    pub fn now() -> Instant {
        match SOURCE.load(Ordering::Relaxed) {
            S_CPU => {
                let t = sys::rdtsc()
                    .unwrap_or(0)
                    .saturating_sub(TSC_START.load(Ordering::Relaxed));
                let m = TSC_MULT.load(Ordering::Relaxed);
                Instant(((u128::from(t) * u128::from(m)) >> 32) as u64)
            }
            S_GTOD => {
                Instant(sys::gettimeofday_ns().saturating_sub(RAW_START.load(Ordering::Relaxed)))
            }
            _ => Instant(
                sys::clock_ns(libc::CLOCK_MONOTONIC)
                    .saturating_sub(RAW_START.load(Ordering::Relaxed)),
            ),
        }
    }
    /// Nanoseconds from `earlier` to `self`, 0 if `earlier` is later.
    #[inline(always)]
    pub fn nanos_since(self, earlier: Instant) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
    /// `self` plus `ns` nanoseconds (saturating).
    #[inline(always)]
    pub fn add_nanos(self, ns: u64) -> Instant {
        Instant(self.0.saturating_add(ns))
    }
    pub fn saturating_duration_since(self, earlier: Instant) -> Duration {
        Duration::from_nanos(self.nanos_since(earlier))
    }
    pub fn elapsed(self) -> Duration {
        Instant::now().saturating_duration_since(self)
    }
    /// The same moment as a `std::time::Instant`.
    pub fn to_std(self) -> std::time::Instant {
        let (s, ours) = *ANCHOR.get_or_init(|| (std::time::Instant::now(), Instant::now().0));
        if self.0 >= ours {
            s + Duration::from_nanos(self.0 - ours)
        } else {
            s.checked_sub(Duration::from_nanos(ours - self.0))
                .unwrap_or(s)
        }
    }
}

fn dur_ns(d: Duration) -> u64 {
    d.as_nanos().min(u128::from(u64::MAX)) as u64
}

impl Add<Duration> for Instant {
    type Output = Instant;
    #[inline]
    fn add(self, d: Duration) -> Instant {
        Instant(self.0.saturating_add(dur_ns(d)))
    }
}

impl AddAssign<Duration> for Instant {
    #[inline]
    fn add_assign(&mut self, d: Duration) {
        *self = *self + d;
    }
}

impl Sub<Duration> for Instant {
    type Output = Instant;
    #[inline]
    fn sub(self, d: Duration) -> Instant {
        Instant(self.0.saturating_sub(dur_ns(d)))
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;
    /// Saturates at zero, as std's `Instant` does.
    #[inline]
    fn sub(self, o: Instant) -> Duration {
        self.saturating_duration_since(o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tsc_agrees_with_the_monotonic_clock() {
        let Some(hz) = calibrate(Duration::from_millis(10)) else {
            return; // no TSC on this machine
        };
        // Measure 50 ms both ways: within 0.5% (calibration over 10 ms,
        // a loaded 2-core host).
        let m0 = sys::clock_ns(libc::CLOCK_MONOTONIC);
        let c0 = sys::rdtsc().unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let m1 = sys::clock_ns(libc::CLOCK_MONOTONIC);
        let c1 = sys::rdtsc().unwrap();
        let by_tsc = (c1 - c0) as f64 * 1e9 / hz as f64;
        let by_mono = (m1 - m0) as f64;
        assert!(
            (by_tsc / by_mono - 1.0).abs() < 0.005,
            "{by_tsc} vs {by_mono}"
        );
    }

    #[test]
    fn arithmetic_saturates_like_std() {
        let a = Instant(1_000);
        let b = a + Duration::from_nanos(500);
        assert_eq!(b - a, Duration::from_nanos(500));
        assert_eq!(a - b, Duration::ZERO);
        assert_eq!(b.nanos_since(a), 500);
        assert_eq!(a.nanos_since(b), 0);
        assert_eq!(b - Duration::from_nanos(5_000), Instant(0));
    }
}
