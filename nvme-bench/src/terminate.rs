//! fio's `exitall` / `exit_what` (libfio.c `fio_terminate_threads`): when
//! a job ends and any job of the run set `exitall` (fio's global
//! `exitall_on_terminate`), it stops the jobs its `exit_what` names:
//! `group`, those of its reporting group; `stonewall`, every job that has
//! reached its running state (those of the current stonewall set that are
//! running; not ones still waiting, ramping, or of later sets); `all`,
//! every job, so later stonewall sets start and stop at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use crate::options::ExitWhat;
use crate::runner::{Progress, ST_RUN};

/// One job instance (clone) of the run.
pub struct Slot {
    groupid: u32,
    /// The flag the job's loop checks (`RunCtx::exitall`).
    pub stop: Arc<AtomicBool>,
    /// Its progress, once its thread exists.
    progress: OnceLock<Arc<Progress>>,
}

/// Every job instance of the run, in start order.
pub struct Slots(Vec<Slot>);

impl Slots {
    pub fn new(groupids: impl Iterator<Item = u32>) -> Slots {
        Slots(
            groupids
                .map(|groupid| Slot {
                    groupid,
                    stop: Arc::default(),
                    progress: OnceLock::new(),
                })
                .collect(),
        )
    }

    /// Instance `i`'s stop flag, and records its progress.
    pub fn start(&self, i: usize, progress: &Arc<Progress>) -> Arc<AtomicBool> {
        let s = &self.0[i];
        let _ = s.progress.set(progress.clone());
        s.stop.clone()
    }

    /// A job of `groupid` ended with `exit_what = what`.
    pub fn terminate(&self, groupid: u32, what: ExitWhat) {
        for s in &self.0 {
            let hit = match what {
                ExitWhat::Group => s.groupid == groupid,
                ExitWhat::Stonewall => s
                    .progress
                    .get()
                    .is_some_and(|p| p.state.load(Ordering::Relaxed) >= ST_RUN),
                ExitWhat::All => true,
            };
            if hit {
                s.stop.store(true, Ordering::Relaxed);
            }
        }
    }
}
