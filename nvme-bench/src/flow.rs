//! fio's token-based flow control (`flow`, `flow_id`, `flow_sleep`;
//! fio's flow.c): jobs sharing a `flow_id` keep their I/O counts in the
//! ratio of their `flow` weights. Every job's weight joins its flow when the
//! job set is read (fio's `flow_init_job` runs in `add_job`, so jobs of
//! later groups count too) and leaves when the job ends, taking its count
//! with it. Before each I/O a job compares its share of the flow's count
//! with its share of the weight; when ahead it issues nothing: it waits for
//! its I/Os in flight, sleeps `flow_sleep` µs (fio's `io_u_quiesce` +
//! `usleep`) and checks again. When behind, its count and the flow's go up
//! by one.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::options::Job;

struct Flow {
    /// Starts at 1, as fio's.
    counter: AtomicU64,
    total_weight: AtomicU64,
}

static FLOWS: Mutex<BTreeMap<u32, Arc<Flow>>> = Mutex::new(BTreeMap::new());

fn flows() -> std::sync::MutexGuard<'static, BTreeMap<u32, Arc<Flow>>> {
    FLOWS.lock().unwrap_or_else(|p| p.into_inner())
}

/// Forgets every flow when dropped (the end of a run).
pub struct Registered;

impl Drop for Registered {
    fn drop(&mut self) {
        flows().clear();
    }
}

/// Add every job clone's weight to its flow (before any job runs).
#[must_use]
pub fn register(jobs: &[&Job]) -> Registered {
    let mut f = flows();
    for job in jobs.iter().filter(|j| j.flow > 0) {
        f.entry(job.flow_id)
            .or_insert_with(|| {
                Arc::new(Flow {
                    counter: AtomicU64::new(1),
                    total_weight: AtomicU64::new(0),
                })
            })
            .total_weight
            .fetch_add(u64::from(job.flow), Ordering::Relaxed);
    }
    Registered
}

/// One running job's side of its flow.
pub struct JobFlow {
    flow: Arc<Flow>,
    weight: u64,
    counter: u64,
    pub sleep_us: u64,
}

impl JobFlow {
    /// None when the job has no flow weight (or its flow was not registered).
    pub fn new(job: &Job) -> Option<Self> {
        if job.flow == 0 {
            return None;
        }
        let flow = flows().get(&job.flow_id)?.clone();
        Some(JobFlow {
            flow,
            weight: u64::from(job.flow),
            counter: 0,
            sleep_us: job.flow_sleep_us,
        })
    }

    /// fio's `flow_threshold_exceeded`: true when this job is ahead of its
    /// share (issue nothing now); otherwise counts one I/O.
    pub fn exceeded(&mut self) -> bool {
        let total = self.flow.counter.load(Ordering::Relaxed).max(1);
        let weights = self.flow.total_weight.load(Ordering::Relaxed).max(1);
        if self.counter as f64 / total as f64 > self.weight as f64 / weights as f64 {
            return true;
        }
        self.flow.counter.fetch_add(1, Ordering::Relaxed);
        self.counter += 1;
        false
    }
}

impl Drop for JobFlow {
    /// fio's `flow_exit_job`: the job's count and weight leave the flow.
    fn drop(&mut self) {
        let _ = self
            .flow
            .counter
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| {
                Some(c.saturating_sub(self.counter).max(1))
            });
        let _ = self
            .flow
            .total_weight
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |w| {
                Some(w.saturating_sub(self.weight))
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_follow_weights() {
        let set = crate::options::parse_str(
            "[a]\nfilename=x\nflow=1\nflow_id=77\n[b]\nfilename=y\nflow=3\nflow_id=77\n",
        )
        .unwrap();
        let reg = register(&set.jobs.iter().collect::<Vec<_>>());
        let mut a = JobFlow::new(&set.jobs[0]).unwrap();
        let mut b = JobFlow::new(&set.jobs[1]).unwrap();
        let (mut na, mut nb) = (0, 0);
        for _ in 0..4000 {
            if !a.exceeded() {
                na += 1;
            }
            if !b.exceeded() {
                nb += 1;
            }
        }
        let r = nb as f64 / na as f64;
        assert!((2.9..3.1).contains(&r), "{na} {nb}");
        drop(a);
        // b alone in the flow now: never ahead of its whole share.
        assert!((0..100).all(|_| !b.exceeded()));
        drop(reg);
        assert!(flows().is_empty());
    }
}
