//! fio's `latency_target` queue-depth search (io_u.c `lat_target_*`,
//! backend.c `do_io`): the job starts at depth 1 and, every
//! `latency_window`, doubles the depth while at least `latency_percentile`
//! percent of the I/Os completed within `latency_target` (then bisects
//! between the last good and the first bad depth), or halves towards the
//! last good one when they did not. When a step leaves the depth where it
//! was, the job quiesces, resets its statistics and runs one more window
//! at that depth, then ends (unless `latency_run`). With
//! `latency_percentile=100` every late I/O steps down at once, and a late
//! I/O at depth 1 fails the job (ETIMEDOUT, fio's `lat_fatal`).

use crate::clock::Instant;
use crate::options::Job;
use std::time::Duration;

pub struct LatTarget {
    target_ns: u64,
    window: Duration,
    pct: f64,
    keep_running: bool,
    iodepth: u32,
    /// fio's `latency_qd`: the depth the job may use now.
    pub qd: u32,
    qd_high: u32,
    qd_low: u32,
    stable: u32,
    end_run: bool,
    cycle_start: Instant,
    ios: u64,
    failed: u64,
    /// fio's `io_u_quiesce`: issue nothing until the queue is empty; then
    /// a new cycle starts (`drained`).
    pub drain: bool,
    /// After the drain: reset the statistics (the final run at the depth
    /// found).
    pub reset: bool,
    /// The search is over: the job ends.
    pub done: bool,
}

impl LatTarget {
    /// fio's `lat_target_init`; `None` without `latency_target`.
    pub fn new(job: &Job, now: Instant) -> Option<LatTarget> {
        let t = job.latency_target?;
        Some(LatTarget {
            target_ns: t.as_nanos().min(u128::from(u64::MAX)) as u64,
            window: job.latency_window,
            pct: job.latency_percentile,
            keep_running: job.latency_run,
            iodepth: job.iodepth.max(1),
            qd: 1,
            qd_high: job.iodepth.max(1),
            qd_low: 1,
            stable: 0,
            end_run: false,
            cycle_start: now,
            ios: 0,
            failed: 0,
            drain: false,
            reset: false,
            done: false,
        })
    }

    fn new_cycle(&mut self, now: Instant) {
        self.cycle_start = now;
        self.ios = 0;
        self.failed = 0;
    }

    /// The queue is empty after a drain: the next cycle starts.
    pub fn drained(&mut self, now: Instant) {
        self.drain = false;
        self.new_cycle(now);
    }

    /// One completed I/O of total latency `lat_ns`. `Err`: fio's
    /// `lat_fatal` (late at depth 1 with `latency_percentile=100`).
    pub fn completed(&mut self, lat_ns: u64) -> Result<(), String> {
        self.ios += 1;
        if lat_ns > self.target_ns {
            if self.pct == 100.0 {
                if self.step_down() {
                    return Err(format!(
                        "latency of {lat_ns} nsec exceeds specified max ({} nsec)",
                        self.target_ns
                    ));
                }
            } else {
                self.failed += 1;
            }
        }
        Ok(())
    }

    /// fio's `__lat_target_failed`: `true` at depth 1 (nothing to step).
    fn step_down(&mut self) -> bool {
        if self.qd == 1 {
            return true;
        }
        self.qd_high = self.qd;
        if self.qd == self.qd_low {
            self.qd_low -= 1;
        }
        self.qd = (self.qd + self.qd_low) / 2;
        self.stable = 0;
        self.drain = true;
        false
    }

    /// fio's `lat_target_success`.
    fn step_up(&mut self, now: Instant) {
        let qd = self.qd;
        self.qd_low = self.qd;
        if self.qd + 1 == self.qd_high {
            self.stable += 1;
            if self.stable >= 3 {
                self.qd_high += 1;
                self.stable = 0;
            }
        }
        if self.qd_high != self.iodepth {
            self.qd = (self.qd + self.qd_high) / 2;
        } else {
            self.qd = self.qd.saturating_mul(2);
        }
        self.qd = self.qd.min(self.iodepth);
        if !self.keep_running && self.qd == qd {
            if self.end_run {
                self.done = true;
            } else {
                self.drain = true;
                self.reset = true;
                self.end_run = true;
                return;
            }
        }
        self.new_cycle(now);
    }

    /// fio's `lat_target_check`, once per turn of the job's loop after its
    /// first completion (not while draining: fio's quiesce blocks).
    pub fn check(&mut self, now: Instant) {
        if self.drain || now.saturating_duration_since(self.cycle_start) < self.window {
            return;
        }
        // 0 I/Os in the window: fio's 0/0 is NaN, below any percentile.
        let ok = (self.ios as f64 - self.failed as f64) / self.ios as f64 * 100.0;
        if ok >= self.pct {
            self.step_up(now);
        } else {
            // A drain, and a new cycle after it; at depth 1 nothing, and
            // the cycle runs on (fio checks it again each turn).
            let _ = self.step_down();
        }
    }
}
