//! fio's steady-state detection (`steadystate` / `ss`, `ss_dur`,
//! `ss_ramp`; fio 3.33 steadystate.c), run by the run's group loop as
//! fio's helper thread runs it:
//!
//! - once a second (ticks from the group's start, fio's helper-thread
//!   timer; a job's end of `ramp_time` restarts them, fio's
//!   `helper_reset`), every job that is running (not ramping, not done)
//!   is sampled: the I/Os and bytes it completed since the previous tick,
//!   over the milliseconds since then, as IOPS and bytes/s (integers);
//! - a job's samples count once `ss_ramp` plus one second have passed
//!   since its start (fio's `epoch`, reset at the end of `ramp_time`);
//! - with `group_reporting`, the samples of a reporting group's running
//!   jobs are summed and kept by its last job; else each job keeps its own;
//! - the last `ss_dur` samples form a window; once it is full, each new
//!   sample computes the criterion: the largest deviation from the
//!   window's mean, or the least-squares slope, as a percentage of the
//!   mean (the slope's mean in whole units, as fio's integer division) or
//!   absolute; below the limit, the job (with `group_reporting`, every job
//!   of its group) is attained and terminated like an `exitall` stop;
//! - fio is built with `-ffast-math`: a criterion that is not a number
//!   (0/0: a one-second slope, or a zero mean) counts as attained, as in
//!   fio's binary.
//!
//! The report (`steadystate` in the JSON, the `steadystate  :` line) is
//! [`Report`].

use std::time::{Duration, Instant};

use crate::options::{Job, SteadyState};

/// The rolling window and its criterion: fio's `struct steadystate_data`
/// ring and `steadystate_slope` / `steadystate_deviation`, step for step
/// (the same integer sums, wrapping as fio's `uint64_t`s).
#[derive(Clone, Debug)]
pub struct Window {
    crit: SteadyState,
    dur: usize,
    head: usize,
    tail: usize,
    /// The samples, grown as they come (fio allocates `dur` zeros up
    /// front; a slot not yet written reads 0 here too).
    iops: Vec<u64>,
    bw: Vec<u64>,
    full: bool,
    sum_y: u64,
    sum_x: u64,
    sum_x_sq: u64,
    sum_xy: u64,
    oldest_y: u64,
    pub slope: f64,
    pub deviation: f64,
    pub criterion: f64,
}

impl Window {
    /// A window of `dur` (at least 1) samples.
    pub fn new(crit: SteadyState, dur: u64) -> Window {
        let d = dur.max(1);
        Window {
            crit,
            dur: d as usize,
            head: 0,
            tail: 0,
            iops: Vec::new(),
            bw: Vec::new(),
            full: false,
            sum_y: 0,
            sum_x: d.wrapping_mul(d - 1) / 2,
            sum_x_sq: (d - 1).wrapping_mul(d).wrapping_mul(2 * d - 1) / 6,
            sum_xy: 0,
            oldest_y: 0,
            slope: 0.0,
            deviation: 0.0,
            criterion: 0.0,
        }
    }

    fn put(v: &mut Vec<u64>, i: usize, x: u64) {
        match v.get_mut(i) {
            Some(s) => *s = x,
            None => {
                // Before the window fills, `tail` is the count so far.
                v.resize(i, 0);
                v.push(x);
            }
        }
    }

    fn y(&self, i: usize) -> u64 {
        let v = if self.crit.iops { &self.iops } else { &self.bw };
        v.get(i).copied().unwrap_or(0)
    }

    /// Add one sample (IOPS, bytes/s); true when the criterion is met.
    pub fn add(&mut self, iops: u64, bw: u64) -> bool {
        Self::put(&mut self.bw, self.tail, bw);
        Self::put(&mut self.iops, self.tail, iops);
        let new_val = if self.crit.iops { iops } else { bw };
        let dur = self.dur;
        if self.full || self.tail.wrapping_sub(self.head) == dur - 1 {
            if !self.full {
                // First time through.
                self.sum_y = 0;
                for i in 0..dur {
                    self.sum_y = self.sum_y.wrapping_add(self.y(i));
                    if self.crit.slope {
                        let j = (self.head + i) % dur;
                        self.sum_xy = self.sum_xy.wrapping_add((i as u64).wrapping_mul(self.y(j)));
                    }
                }
                self.full = true;
            } else {
                self.sum_y = self.sum_y.wrapping_sub(self.oldest_y).wrapping_add(new_val);
                if self.crit.slope {
                    self.sum_xy = self
                        .sum_xy
                        .wrapping_sub(self.sum_y)
                        .wrapping_add((dur as u64).wrapping_mul(new_val));
                }
            }
            self.oldest_y = self.y(self.head);
            let n = dur as f64;
            if self.crit.slope {
                // (sum_xy - sum_x * sum_y / n) / (sum_(x^2) - sum_x^2 / n),
                // the x values taken as equally spaced.
                let sx = self.sum_x as f64;
                self.slope = (self.sum_xy as f64 - sx * self.sum_y as f64 / n)
                    / (self.sum_x_sq as f64 - sx * sx / n);
                self.criterion = if self.crit.pct {
                    // fio divides the sum by the count in integers.
                    100.0 * self.slope / (self.sum_y / dur as u64) as f64
                } else {
                    self.slope
                };
                if met(self.criterion.abs(), self.crit.limit) {
                    return true;
                }
            } else {
                let mean = self.sum_y as f64 / n;
                self.deviation = 0.0;
                for i in 0..dur {
                    let diff = (self.y(i) as f64 - mean).abs();
                    if diff > self.deviation {
                        self.deviation = diff;
                    }
                }
                self.criterion = if self.crit.pct {
                    100.0 * self.deviation / mean
                } else {
                    self.deviation
                };
                if met(self.criterion, self.crit.limit) {
                    return true;
                }
            }
        }
        self.tail = (self.tail + 1) % dur;
        if self.tail <= self.head {
            self.head = (self.head + 1) % dur;
        }
        false
    }
}

/// fio's `criterion < limit` as its `-ffast-math` build evaluates it
/// (`comisd`, `jb`): true when below, and when not comparable (NaN).
fn met(criterion: f64, limit: f64) -> bool {
    matches!(
        criterion.partial_cmp(&limit),
        Some(std::cmp::Ordering::Less) | None
    )
}

/// What a job reports (fio's `ts->ss_*`, stat.c `show_ss_normal` and the
/// JSON `steadystate` object).
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    pub crit: SteadyState,
    pub dur: u64,
    pub attained: bool,
    /// The window filled at least once (fio's FIO_SS_BUFFER_FULL).
    pub full: bool,
    pub head: usize,
    /// `dur` samples each, in ring order (zeros where none came).
    pub iops: Vec<u64>,
    pub bw: Vec<u64>,
    pub slope: f64,
    pub deviation: f64,
    pub criterion: f64,
}

impl Report {
    /// The samples oldest first, as fio's JSON lists them: from `head`
    /// when attained or not yet full, else from the slot before it (fio
    /// advanced `head` past the oldest after the last check). (IOPS, bw.)
    pub fn ordered(&self) -> (Vec<u64>, Vec<u64>) {
        let n = self.dur as usize;
        if n == 0 {
            return (Vec::new(), Vec::new());
        }
        let j = if self.attained || !self.full {
            self.head
        } else if self.head == 0 {
            n - 1
        } else {
            self.head - 1
        };
        let at = |v: &Vec<u64>, k: usize| v.get(k).copied().unwrap_or(0);
        (0..n)
            .map(|l| (j + l) % n)
            .map(|k| (at(&self.iops, k), at(&self.bw, k)))
            .unzip()
    }

    fn mean(&self, v: &[u64]) -> u64 {
        if self.dur == 0 {
            return 0;
        }
        v.iter().fold(0u64, |a, &x| a.wrapping_add(x)) / self.dur
    }

    /// fio's steadystate_bw_mean: bytes/s over the whole window (integer).
    pub fn bw_mean(&self) -> u64 {
        self.mean(&self.bw)
    }

    /// fio's steadystate_iops_mean.
    pub fn iops_mean(&self) -> u64 {
        self.mean(&self.iops)
    }

    fn pct(&self) -> &'static str {
        if self.crit.pct {
            "%"
        } else {
            ""
        }
    }

    /// The JSON's `ss`: `iops:10.000000%`, `bw_slope:1048576.000000`
    /// (fio's `%s%s:%f%s` of the limit as a float).
    pub fn spec_text(&self) -> String {
        format!(
            "{}{}:{}{}",
            if self.crit.iops { "iops" } else { "bw" },
            if self.crit.slope { "_slope" } else { "" },
            c_float(f64::from(self.crit.limit as f32), 6),
            self.pct()
        )
    }

    /// The JSON's `criterion`: `0.067000%` (`%f` of it as a float).
    pub fn criterion_text(&self) -> String {
        format!(
            "{}{}",
            c_float(f64::from(self.criterion as f32), 6),
            self.pct()
        )
    }

    /// The end of fio's normal-output line: `iops mean dev=0.067%`.
    pub fn criterion_line(&self) -> String {
        format!(
            "{}{}={}{}",
            if self.crit.iops { "iops" } else { "bw" },
            if self.crit.slope {
                " slope"
            } else {
                " mean dev"
            },
            c_float(self.criterion, 3),
            self.pct()
        )
    }
}

/// C's `%.Nf` as glibc prints it, NaN and infinities included (a NaN from
/// 0/0 on x86 has its sign bit set: `-nan`).
pub fn c_float(x: f64, prec: usize) -> String {
    if x.is_nan() {
        "-nan".into()
    } else if x.is_infinite() {
        if x < 0.0 { "-inf" } else { "inf" }.into()
    } else {
        format!("{x:.prec$}")
    }
}

/// Where a job's measured phase began (fio's `epoch`): the instant and its
/// live counters' totals then. Published by the job (runner.rs) when it
/// starts running and again when its statistics are reset (end of
/// `ramp_time`, latency_target's final run): `reset`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Epoch {
    pub at: Instant,
    pub ios: u64,
    pub bytes: u64,
    pub reset: bool,
}

/// One job as the group loop sees it at a poll.
#[derive(Clone, Copy, Debug)]
pub struct Seen {
    /// Running (its workload or verify pass; not ramping, not done).
    pub running: bool,
    pub epoch: Option<Epoch>,
    /// Completed I/Os and bytes so far, every direction.
    pub ios: u64,
    pub bytes: u64,
}

#[derive(Clone, Debug)]
struct Member {
    groupid: u32,
    group_reporting: bool,
    crit: SteadyState,
    dur: u64,
    ramp_us: u128,
    ramp_over: bool,
    attained: bool,
    window: Option<Window>,
    epoch: Option<Epoch>,
    prev_time: Option<Instant>,
    prev_ios: u64,
    prev_bytes: u64,
}

/// fio's steadystate_check over one stonewall group's jobs (a reporting
/// group lies within one), in start order.
#[derive(Clone, Debug)]
pub struct Checker {
    members: Vec<Member>,
    /// Tick `k` is due at `base + k` seconds.
    base: Instant,
    next: u32,
}

const TICK: Duration = Duration::from_secs(1);

impl Checker {
    /// None when no job of the group checks for steady state. `base`: the
    /// group's start (fio's helper-thread timers start before the jobs).
    pub fn new(jobs: &[&Job], base: Instant) -> Option<Checker> {
        if jobs.iter().all(|j| j.ss_secs() == 0) {
            return None;
        }
        let mut members: Vec<Member> = jobs
            .iter()
            .map(|j| Member {
                groupid: j.groupid,
                group_reporting: j.group_reporting,
                crit: j.ss,
                dur: j.ss_secs(),
                ramp_us: j.ss_ramp.as_micros(),
                ramp_over: j.ss_ramp.as_micros() == 0,
                attained: false,
                window: None,
                epoch: None,
                prev_time: None,
                prev_ios: 0,
                prev_bytes: 0,
            })
            .collect();
        // fio's steadystate_setup: a job without group_reporting keeps its
        // own samples; in a group_reporting group, the last job does.
        let mut prev: Option<(u32, usize)> = None;
        let mut holders = Vec::new();
        for (i, m) in members.iter().enumerate() {
            if m.dur == 0 {
                continue;
            }
            if !m.group_reporting {
                holders.push(i);
                continue;
            }
            if let Some((g, p)) = prev {
                if g != m.groupid {
                    holders.push(p);
                }
            }
            prev = Some((m.groupid, i));
        }
        if let Some((_, p)) = prev {
            holders.push(p);
        }
        for i in holders {
            let m = &mut members[i];
            m.window = Some(Window::new(m.crit, m.dur));
        }
        Some(Checker {
            members,
            base,
            next: 1,
        })
    }

    /// When the next sample is due.
    pub fn due(&self) -> Instant {
        self.base + TICK * self.next
    }

    /// Called often (the group loop's turns): notes new epochs and, when
    /// a tick is due, samples. Returns the jobs (indices) to terminate.
    pub fn poll(&mut self, now: Instant, seen: &[Seen]) -> Vec<usize> {
        for (m, s) in self.members.iter_mut().zip(seen) {
            let Some(e) = s.epoch else { continue };
            if m.epoch.is_some_and(|o| o == e) {
                continue;
            }
            // fio's reset_all_stats: the epoch, the previous sample's
            // time, the I/O counters (but not the previous sample's
            // counts: 0 then, as fio skips a ramping job).
            m.epoch = Some(e);
            m.prev_time = Some(e.at);
            if e.reset {
                // fio's helper_reset: the timers start over.
                self.base = e.at;
                self.next = 1;
            }
        }
        let due = self.due();
        if now < due {
            return Vec::new();
        }
        self.next += 1;
        // Behind by more than a tick (fio: "clock jump?"): start over
        // from now.
        if now >= self.due() {
            self.base = now;
            self.next = 1;
        }
        self.tick(due, now, seen)
    }

    /// One steadystate_check: `nominal` is when the tick was due (the
    /// `ss_ramp` test uses it, so a late poll does not move a sample to
    /// another tick), `now` when it runs (the rates use it).
    pub fn tick(&mut self, nominal: Instant, now: Instant, seen: &[Seen]) -> Vec<usize> {
        let mut stop = Vec::new();
        let mut prev_gid: Option<u32> = None;
        let (mut g_bw, mut g_iops, mut g_over) = (0u64, 0u64, 0u32);
        for (i, &s) in seen.iter().enumerate().take(self.members.len()) {
            let m = &mut self.members[i];
            let (Some(e), Some(prev_time)) = (m.epoch, m.prev_time) else {
                continue;
            };
            if m.dur == 0 || !s.running || m.attained {
                continue;
            }
            if !m.group_reporting || prev_gid != Some(m.groupid) {
                (g_bw, g_iops, g_over) = (0, 0, 0);
            }
            prev_gid = Some(m.groupid);
            if !m.ramp_over
                && nominal.saturating_duration_since(e.at).as_micros() >= m.ramp_us + 1_000_000
            {
                m.ramp_over = true;
            }
            let ios = s.ios.saturating_sub(e.ios);
            let bytes = s.bytes.saturating_sub(e.bytes);
            // fio's mtime_since: whole milliseconds (fio would divide by
            // zero within one).
            let ms = (now.saturating_duration_since(prev_time).as_millis() as u64).max(1);
            m.prev_time = Some(now);
            if m.ramp_over {
                g_bw =
                    g_bw.wrapping_add(1000u64.wrapping_mul(bytes.wrapping_sub(m.prev_bytes)) / ms);
                g_iops =
                    g_iops.wrapping_add(1000u64.wrapping_mul(ios.wrapping_sub(m.prev_ios)) / ms);
                g_over += 1;
            }
            m.prev_ios = ios;
            m.prev_bytes = bytes;
            if g_over == 0 {
                continue;
            }
            let Some(w) = m.window.as_mut() else {
                // A group_reporting job that does not keep the group's
                // samples: the group's last job checks.
                continue;
            };
            if w.add(g_iops, g_bw) {
                if m.group_reporting {
                    let gid = m.groupid;
                    for (j, o) in self.members.iter_mut().enumerate() {
                        if o.groupid == gid {
                            o.attained = true;
                            stop.push(j);
                        }
                    }
                } else {
                    m.attained = true;
                    stop.push(i);
                }
            }
        }
        stop
    }

    /// Job `i`'s report (None without steady-state detection).
    pub fn report(&self, i: usize) -> Option<Report> {
        let m = self.members.get(i)?;
        if m.dur == 0 {
            return None;
        }
        let n = m.dur as usize;
        let pad = |v: &[u64]| {
            let mut v = v.to_vec();
            v.resize(n, 0);
            v
        };
        Some(match &m.window {
            Some(w) => Report {
                crit: m.crit,
                dur: m.dur,
                attained: m.attained,
                full: w.full,
                head: w.head,
                iops: pad(&w.iops),
                bw: pad(&w.bw),
                slope: w.slope,
                deviation: w.deviation,
                criterion: w.criterion,
            },
            None => Report {
                crit: m.crit,
                dur: m.dur,
                attained: m.attained,
                full: false,
                head: 0,
                iops: vec![0; n],
                bw: vec![0; n],
                slope: 0.0,
                deviation: 0.0,
                criterion: 0.0,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crit(iops: bool, slope: bool, pct: bool, limit: f64) -> SteadyState {
        SteadyState {
            iops,
            slope,
            pct,
            limit,
        }
    }

    #[test]
    fn deviation_like_fio() {
        // iops:10% over 3 samples. 100, 110, 95: mean 101.667, largest
        // deviation |110 - 101.667| = 8.333, 8.197% of the mean: attained
        // at the third sample.
        let mut w = Window::new(crit(true, false, true, 10.0), 3);
        assert!(!w.add(100, 0));
        assert!(!w.add(110, 0));
        assert!(w.add(95, 0));
        assert!((w.deviation - 8.333_333).abs() < 1e-5, "{}", w.deviation);
        assert!((w.criterion - 8.196_721).abs() < 1e-5, "{}", w.criterion);
        // 5% is not met by 100, 110, 95; the window then rolls: 110, 95,
        // 104 (mean 103, deviation 8, 7.767%), 95, 104, 100 (mean 99.667,
        // deviation 4.667, 4.682%): attained.
        let mut w = Window::new(crit(true, false, true, 5.0), 3);
        for y in [100, 110, 95] {
            assert!(!w.add(y, 0));
        }
        assert!((w.criterion - 8.196_721).abs() < 1e-5);
        assert!(!w.add(104, 0));
        assert!((w.criterion - 7.766_990).abs() < 1e-5, "{}", w.criterion);
        assert!(w.add(100, 0));
        assert!((w.deviation - 4.666_667).abs() < 1e-5, "{}", w.deviation);
        assert!((w.criterion - 4.682_274).abs() < 1e-5, "{}", w.criterion);
        // Absolute, on bandwidth: bw:3 over 2 samples; 10, 16: deviation 3
        // is not below 3; then 16, 14: 1, attained.
        let mut w = Window::new(crit(false, false, false, 3.0), 2);
        assert!(!w.add(0, 10));
        assert!(!w.add(0, 16));
        assert_eq!(w.criterion, 3.0);
        assert!(w.add(0, 14));
        assert_eq!(w.criterion, 1.0);
    }

    #[test]
    fn slope_like_fio() {
        // iops_slope over 4 samples 100, 102, 104, 106: x = 0..3, sum_x 6,
        // sum_x^2 14, sum_y 412, sum_xy 0*100+102+208+318 = 628; slope
        // (628 - 6*412/4) / (14 - 36/4) = 10/5 = 2; mean 412/4 = 103;
        // 1.942% of it.
        let mut w = Window::new(crit(true, true, true, 1.0), 4);
        for y in [100, 102, 104, 106] {
            assert!(!w.add(y, 0));
        }
        assert_eq!(w.slope, 2.0);
        assert!((w.criterion - 200.0 / 103.0).abs() < 1e-9);
        // Rolling (fio's incremental sums): 102, 104, 106, 105: sum_y 417,
        // sum_xy 0*102+104+212+315 = 631, slope (631 - 6*417/4)/5 = 1.1;
        // mean 417/4 = 104 in integers: 1.0577%.
        assert!(!w.add(105, 0));
        assert!((w.slope - 1.1).abs() < 1e-9, "{}", w.slope);
        assert!(
            (w.criterion - 110.0 / 104.0).abs() < 1e-9,
            "{}",
            w.criterion
        );
        // 104, 106, 105, 104: sum_y 419, sum_xy 106+210+312 = 628, slope
        // (628 - 628.5)/5 = -0.1, |-0.0962%| < 1%: attained.
        assert!(w.add(104, 0));
        assert!((w.slope + 0.1).abs() < 1e-9, "{}", w.slope);
        assert!((w.criterion + 10.0 / 104.0).abs() < 1e-9, "{}", w.criterion);
        // Absolute bw slope: 1000, 1000, 1000 is flat, but |0| < 0 fails.
        let mut w = Window::new(crit(false, true, false, 0.0), 3);
        for b in [1000, 1000, 1000, 1000] {
            assert!(!w.add(0, b));
        }
        assert_eq!(w.slope, 0.0);
    }

    #[test]
    fn nan_counts_as_attained_like_fios_fast_math() {
        // One sample: the slope is 0/0, which fio's -ffast-math build
        // takes as met; a zero mean does the same to a percentage.
        let mut w = Window::new(crit(true, true, true, 0.01), 1);
        assert!(w.add(5, 0));
        assert!(w.slope.is_nan());
        let mut w = Window::new(crit(true, false, true, 10.0), 2);
        assert!(!w.add(0, 0));
        assert!(w.add(0, 0));
        assert!(w.criterion.is_nan());
        assert_eq!(c_float(w.criterion, 6), "-nan");
    }

    #[test]
    fn report_order_and_text_like_fio() {
        // Not attained after 5 samples of a 3-window: fio's head points
        // past the oldest (30); the JSON starts there.
        let mut w = Window::new(crit(true, false, true, 0.0), 3);
        for y in [10, 20, 30, 40, 50] {
            assert!(!w.add(y, y * 4096));
        }
        let r = Report {
            crit: w.crit,
            dur: 3,
            attained: false,
            full: w.full,
            head: w.head,
            iops: w.iops.clone(),
            bw: w.bw.clone(),
            slope: w.slope,
            deviation: w.deviation,
            criterion: w.criterion,
        };
        assert_eq!(r.ordered().0, vec![30, 40, 50]);
        assert_eq!(r.ordered().1, vec![30 * 4096, 40 * 4096, 50 * 4096]);
        assert_eq!(r.iops_mean(), 40);
        assert_eq!(r.spec_text(), "iops:0.000000%");
        // Attained at its 4th sample (10, 20, 30: 50% < 60%): head is the
        // oldest.
        let mut w = Window::new(crit(true, false, true, 60.0), 3);
        for y in [1000, 10, 20] {
            assert!(!w.add(y, 0));
        }
        assert!(w.add(30, 0));
        let r = Report {
            attained: true,
            full: true,
            head: w.head,
            iops: w.iops.clone(),
            bw: w.bw.clone(),
            ..r
        };
        assert_eq!(r.ordered().0, vec![10, 20, 30]);
        // Not full: zeros after the samples so far.
        let r = Report {
            attained: false,
            full: false,
            head: 0,
            iops: vec![7, 0, 0],
            ..r
        };
        assert_eq!(r.ordered().0, vec![7, 0, 0]);
        assert_eq!(r.iops_mean(), 2);
        let r = Report {
            crit: crit(false, true, false, 1_048_576.0),
            criterion: -0.25,
            ..r
        };
        assert_eq!(r.spec_text(), "bw_slope:1048576.000000");
        assert_eq!(r.criterion_text(), "-0.250000");
        assert_eq!(r.criterion_line(), "bw slope=-0.250");
    }

    fn job(extra: &str) -> Job {
        let mut j = crate::options::parse_str(&format!("[j]\nfilename=x\n{extra}\n"))
            .unwrap()
            .jobs
            .remove(0);
        j.groupid = 0;
        j
    }

    #[test]
    fn checker_samples_after_ramp_and_terminates() {
        // ss_ramp=1s, 3 s window: the first sample counts at the first
        // tick 2 s or more after the epoch (0.1 s after the base): tick 3.
        let j = job("ss=iops:10%\nss_dur=3\nss_ramp=1");
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut c = Checker::new(&[&j], t0).unwrap();
        let e = Epoch {
            at: at(100),
            ios: 0,
            bytes: 0,
            reset: false,
        };
        let seen = |ios: u64| {
            [Seen {
                running: true,
                epoch: Some(e),
                ios,
                bytes: ios * 4096,
            }]
        };
        assert!(c.poll(at(50), &seen(0)).is_empty());
        // 1000 IOPS from the epoch on.
        let mut stopped_at = None;
        for k in 1..=8u64 {
            let t = at(k * 1000 + 5);
            let r = c.poll(t, &seen((k * 1000 - 100) * 1000 / 1000));
            if !r.is_empty() {
                assert_eq!(r, vec![0]);
                stopped_at = Some(k);
                break;
            }
        }
        assert_eq!(stopped_at, Some(5));
        let r = c.report(0).unwrap();
        assert!(r.attained && r.full);
        assert_eq!(r.ordered().0.len(), 3);
        assert!(r.ordered().0.iter().all(|&x| (990..=1000).contains(&x)));
    }

    #[test]
    fn group_reporting_pools_jobs_and_stops_them_all() {
        let a = job("ss=iops:10%\nss_dur=2\ngroup_reporting");
        let b = a.clone();
        let t0 = Instant::now();
        let mut c = Checker::new(&[&a, &b], t0).unwrap();
        let e = Epoch {
            at: t0,
            ios: 0,
            bytes: 0,
            reset: false,
        };
        let s = |ios| Seen {
            running: true,
            epoch: Some(e),
            ios,
            bytes: ios * 512,
        };
        c.poll(t0, &[s(0), s(0)]);
        assert!(c
            .poll(t0 + Duration::from_millis(1000), &[s(300), s(700)])
            .is_empty());
        let r = c.poll(t0 + Duration::from_millis(2000), &[s(600), s(1400)]);
        assert_eq!(r, vec![0, 1]);
        // The last job keeps the group's samples: 1000 IOPS together.
        assert_eq!(c.report(1).unwrap().ordered().0, vec![1000, 1000]);
        assert_eq!(c.report(0).unwrap().ordered().0, vec![0, 0]);
        assert!(c.report(0).unwrap().attained);
    }
}
