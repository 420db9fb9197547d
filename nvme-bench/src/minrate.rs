//! `rate_min` / `rate_iops_min` / `rate_cycle`: a job that moves less than
//! its minimum over a cycle fails, as fio's `__check_min_rate` (backend.c):
//! nothing is checked in the first 2 s of the job; the first check only
//! records the counters; each later one, at least `rate_cycle` ms after
//! the previous, compares the rate over that span with the minimum (bytes
//! when `rate_min` is set for the direction, else I/Os) and fails the job
//! with EIO when below. A direction is checked once it has moved data.

use std::time::Duration;

use crate::clock::Instant;

use crate::options::Job;

pub struct MinRate {
    bytes: [u64; 2],
    iops: [u64; 2],
    cycle_ms: u128,
    start: Instant,
    /// Per direction: (when, I/Os, bytes) at the last check.
    last: [Option<(Instant, u64, u64)>; 2],
}

impl MinRate {
    /// None when the job sets no minimum.
    pub fn new(job: &Job, start: Instant) -> Option<Self> {
        let bytes = job.rate_min.map(|x| x.unwrap_or(0));
        let iops = job.rate_iops_min.map(|x| x.unwrap_or(0));
        if bytes == [0, 0] && iops == [0, 0] {
            return None;
        }
        Some(MinRate {
            bytes,
            iops,
            cycle_ms: u128::from(job.rate_cycle_ms),
            start,
            last: [None, None],
        })
    }

    /// `done[d]` = (I/Os, bytes) completed so far in direction `d`; an
    /// error message when a minimum is not met.
    pub fn check(&mut self, now: Instant, done: [(u64, u64); 2]) -> Option<String> {
        if now.saturating_duration_since(self.start) < Duration::from_millis(2000) {
            return None;
        }
        for (d, &(ios, bytes)) in done.iter().enumerate() {
            if bytes == 0 || (self.bytes[d] == 0 && self.iops[d] == 0) {
                continue;
            }
            if let Some((t, i0, b0)) = self.last[d] {
                let spent = now.saturating_duration_since(t).as_millis();
                if spent < self.cycle_ms || spent == 0 {
                    continue;
                }
                if self.bytes[d] > 0 {
                    let got = u128::from(bytes.saturating_sub(b0)) * 1000 / spent;
                    if got < u128::from(self.bytes[d]) {
                        return Some(format!(
                            "rate_min={}B/s not met, got {got}B/s",
                            self.bytes[d]
                        ));
                    }
                } else {
                    let got = u128::from(ios.saturating_sub(i0)) * 1000 / spent;
                    if got < u128::from(self.iops[d]) {
                        return Some(format!(
                            "rate_iops_min={} not met, got {got} IOPS",
                            self.iops[d]
                        ));
                    }
                }
            }
            self.last[d] = Some((now, ios, bytes));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(extra: &str) -> Job {
        crate::options::parse_str(&format!("[j]\nfilename=x\n{extra}\n"))
            .unwrap()
            .jobs
            .remove(0)
    }

    #[test]
    fn fio_check_schedule() {
        assert!(MinRate::new(&job(""), Instant::now()).is_none());
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut m = MinRate::new(&job("rate_min=1000"), t0).unwrap();
        // Settling: nothing checked before 2 s.
        assert_eq!(m.check(ms(1000), [(1, 10), (0, 0)]), None);
        // First check records only.
        assert_eq!(m.check(ms(2000), [(1, 10), (0, 0)]), None);
        // Under a cycle since the last: not checked.
        assert_eq!(m.check(ms(2500), [(1, 10), (0, 0)]), None);
        // 1000 bytes in 1 s: met.
        assert_eq!(m.check(ms(3000), [(2, 1010), (0, 0)]), None);
        // 999 bytes in 1 s: not met.
        assert_eq!(
            m.check(ms(4000), [(3, 2009), (0, 0)]).as_deref(),
            Some("rate_min=1000B/s not met, got 999B/s")
        );
        let mut m = MinRate::new(&job("rate_iops_min=,5\nrate_cycle=500"), t0).unwrap();
        assert_eq!(m.check(ms(2000), [(1, 10), (1, 10)]), None);
        assert_eq!(
            m.check(ms(2500), [(100, 10), (3, 30)]).as_deref(),
            Some("rate_iops_min=5 not met, got 4 IOPS")
        );
    }
}
