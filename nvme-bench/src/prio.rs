//! I/O priorities as fio 3.33: `prio`/`prioclass` (the job's default,
//! set with `ioprio_set` on the job's thread: backend.c) and the per-I/O
//! `cmdprio_percentage`/`cmdprio_class`/`cmdprio` and `cmdprio_bssplit`
//! of the libaio and io_uring engines (engines/cmdprio.c).

use crate::error::{Error, Result};
use crate::options::{ioprio_value, Dir, Job};

/// fio's `td->ioprio`: the job's default priority, 0 when neither `prio`
/// nor `prioclass` is written.
pub fn default_prio(job: &Job) -> u16 {
    if job.ioprio.is_none() && job.ioprio_class.is_none() {
        return 0;
    }
    ioprio_value(job.ioprio_class.unwrap_or(0), job.ioprio.unwrap_or(0))
}

/// `ioprio_set(IOPRIO_WHO_PROCESS, 0, ...)` on the calling thread when the
/// job sets `prio` or `prioclass` (fio does it before the engine opens).
pub fn set_thread_prio(job: &Job) -> Result<()> {
    if job.ioprio.is_none() && job.ioprio_class.is_none() {
        return Ok(());
    }
    let v = default_prio(job);
    crate::sys::ioprio_set_current(v).map_err(|e| Error::msg(format!("ioprio_set: {e}")))
}

/// One block size of `cmdprio_bssplit`: its total percentage and its
/// (percentage, priority) entries.
struct BsPrio {
    bs: u64,
    tot: u32,
    prios: Vec<(u32, u16)>,
}

enum Mode {
    Perc([(u32, u16); 2]),
    Bssplit([Vec<BsPrio>; 2]),
}

/// The job's per-I/O priority choice (fio's `struct cmdprio`).
pub struct CmdPrio {
    mode: Mode,
    rng: u64,
    /// Per direction (read, write): fio's clat_prio array, the priorities
    /// its statistics are kept for, in order (the default first); empty
    /// for a direction without cmdprio.
    pub order: [Vec<u16>; 2],
}

impl CmdPrio {
    /// `None` when the job has no cmdprio option in use.
    pub fn new(job: &Job) -> Option<CmdPrio> {
        let o = &job.cmdprio;
        if !o.on() {
            return None;
        }
        let def = default_prio(job);
        let enabled = [job.rw.has_read(), job.rw.has_write()];
        // fio: cmdprio_class not set means real-time.
        let class = o.class.map(|c| if c == 0 { 1 } else { c });
        let implicit = [0, 1].map(|d| ioprio_value(class[d], o.level[d]));
        let mut order: [Vec<u16>; 2] = [Vec::new(), Vec::new()];
        let mut add = |d: usize, p: u16| {
            if order[d].is_empty() {
                order[d].push(def);
            }
            if !order[d].contains(&p) {
                order[d].push(p);
            }
        };
        let bss = o
            .bssplit_str
            .as_deref()
            .is_some_and(|s| !s.trim().is_empty());
        let mode = if bss {
            let mut out: [Vec<BsPrio>; 2] = [Vec::new(), Vec::new()];
            for d in 0..2 {
                if !enabled[d] {
                    continue;
                }
                for e in &o.bssplit[d] {
                    let p = e.prio.unwrap_or(implicit[d]);
                    add(d, p);
                    match out[d].last_mut() {
                        Some(b) if b.bs == e.bs => {
                            b.tot += e.perc;
                            b.prios.push((e.perc, p));
                        }
                        _ => out[d].push(BsPrio {
                            bs: e.bs,
                            tot: e.perc,
                            prios: vec![(e.perc, p)],
                        }),
                    }
                }
            }
            Mode::Bssplit(out)
        } else {
            let mut perc = [(0, 0); 2];
            for d in 0..2 {
                if o.percentage[d] == 0 || !enabled[d] {
                    continue;
                }
                perc[d] = (o.percentage[d], implicit[d]);
                add(d, implicit[d]);
            }
            Mode::Perc(perc)
        };
        Some(CmdPrio {
            mode,
            rng: 0x9E37_79B9_7F4A_7C15 ^ job.randseed,
            order,
        })
    }

    fn rand100(&mut self) -> u32 {
        // xorshift64*
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        ((x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 32) % 100) as u32
    }

    /// fio's `fio_cmdprio_set_ioprio`: the priority of this I/O when it is
    /// to carry a cmdprio one, `None` for the job's default.
    pub fn pick(&mut self, dir: Dir, len: u64) -> Option<u16> {
        let d = match dir {
            Dir::Read => 0,
            Dir::Write => 1,
            Dir::Trim => return None,
        };
        let p = match &self.mode {
            Mode::Perc(pe) => pe[d].0,
            Mode::Bssplit(b) => b[d].iter().find(|b| b.bs == len).map_or(0, |b| b.tot),
        };
        if p == 0 {
            return None;
        }
        let r = self.rand100();
        if r >= p {
            return None;
        }
        match &self.mode {
            Mode::Perc(pe) => Some(pe[d].1),
            Mode::Bssplit(b) => {
                let b = b[d].iter().find(|b| b.bs == len)?;
                let mut acc = 0;
                for &(perc, prio) in &b.prios {
                    acc += perc;
                    if r < acc {
                        return Some(prio);
                    }
                }
                None
            }
        }
    }
}
