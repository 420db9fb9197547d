//! fio's per-job log files: `write_bw_log`, `write_lat_log`,
//! `write_iops_log`, with `log_avg_msec`, `log_max_value` and
//! `per_job_logs`. Lines are fio's: `time (ms), value, direction,
//! block size, priority` (priority 0), and with `log_offset` the I/O's
//! offset before the priority (0 in averaged windows). Names:
//! `<prefix>_bw.<N>.log`, `_lat`/`_clat`/`_slat`, `_iops` (N: the job's
//! number in the run, from 1, clones counted; no `.N` with
//! `per_job_logs=0`).
//!
//! `write_hist_log` (with `log_hist_msec`, `log_hist_coarseness`):
//! `<prefix>_clat_hist.<N>.log`, fio's completion-latency histogram log.
//! Each line is `time, direction, block size, count, count, ...`: the
//! completions of that direction since its previous line, in fio's 1856
//! latency bins (stat.c `plat_val_to_idx`), 2^coarseness bins summed per
//! field. As fio: a line is written when a completion comes at least
//! `log_hist_msec` after the previous line (the first window starts at the
//! first completion), none for the unfinished last window, and none at
//! all with `log_hist_msec=0` (the file stays empty).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::options::{Dir, Job, NDIR};

/// What `write_*_log` asked for: the prefix of each log (fio's default
/// prefix is the job name).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LogOpts {
    pub bw: Option<String>,
    pub lat: Option<String>,
    pub iops: Option<String>,
    /// `log_avg_msec`: 0 = a line per I/O.
    pub avg_msec: u64,
    pub max_value: bool,
    pub per_job: bool,
    /// `write_hist_log`: the prefix of the histogram log.
    pub hist: Option<String>,
    /// `log_hist_msec`: 0 = no lines.
    pub hist_msec: u64,
    /// `log_hist_coarseness`, 0..=6.
    pub hist_coarseness: u32,
    /// `log_offset`: a column with each I/O's offset before the last one
    /// (fio's `time, value, direction, bs, offset, prio`; 0 for windows).
    pub offset: bool,
    /// `log_prio`: the last column is the I/O's priority (`0x%04x`); without
    /// it, 1 for an I/O of the real-time class and 0 otherwise (fio's
    /// flush_samples).
    pub prio: bool,
}

impl LogOpts {
    pub fn any(&self) -> bool {
        self.bw.is_some() || self.lat.is_some() || self.iops.is_some() || self.hist.is_some()
    }
}

type W = Option<BufWriter<File>>;

#[derive(Default, Clone, Copy)]
struct Acc {
    n: u64,
    bytes: u64,
    sum: [u64; 3],
    max: [u64; 3],
}

pub struct Logs {
    start: Instant,
    avg: Option<Duration>,
    max_value: bool,
    // lat, clat, slat, bw, iops
    w: [W; 5],
    slat_on: bool,
    offset: bool,
    prio: bool,
    win_end: Instant,
    acc: [Acc; NDIR],
    hist: Option<Box<Hist>>,
}

/// fio's latency bins: `FIO_IO_U_PLAT_GROUP_NR` (29) groups of
/// `FIO_IO_U_PLAT_VAL` (64).
pub const PLAT_BITS: u32 = 6;
pub const PLAT_VAL: usize = 1 << PLAT_BITS;
pub const PLAT_NR: usize = 29 * PLAT_VAL;

/// fio's `plat_val_to_idx`: the bin of a latency in ns (values up to 2^6
/// exactly, then 64 bins per power of two; the last bin takes the rest).
pub fn plat_idx(ns: u64) -> usize {
    let msb = if ns == 0 { 0 } else { 63 - ns.leading_zeros() };
    if msb <= PLAT_BITS {
        return ns as usize;
    }
    let error_bits = msb - PLAT_BITS;
    let base = ((error_bits + 1) as usize) << PLAT_BITS;
    let offset = (PLAT_VAL - 1) & (ns >> error_bits) as usize;
    (base + offset).min(PLAT_NR - 1)
}

/// The histogram log's state.
struct Hist {
    w: BufWriter<File>,
    msec: u64,
    stride: usize,
    /// Per direction: completions per bin since the last line.
    counts: [Vec<u64>; NDIR],
    /// Per direction: ms (since the job's start) where the window began.
    last: [Option<u64>; NDIR],
}

impl Hist {
    fn io(&mut self, d: usize, bs: u64, clat_ns: u64, elapsed_ms: u64) {
        self.counts[d][plat_idx(clat_ns)] += 1;
        let last = *self.last[d].get_or_insert(elapsed_ms);
        if self.msec == 0 {
            return;
        }
        let window = elapsed_ms.saturating_sub(last);
        if window < self.msec {
            return;
        }
        let mut line = format!("{elapsed_ms}, {d}, {bs}");
        for chunk in self.counts[d].chunks(self.stride) {
            use std::fmt::Write as _;
            let _ = write!(line, ", {}", chunk.iter().sum::<u64>());
        }
        let _ = writeln!(self.w, "{line}");
        self.counts[d].iter_mut().for_each(|c| *c = 0);
        // As fio: the next window starts where this one should have ended.
        self.last[d] = Some(elapsed_ms - (window - self.msec));
    }
}

fn open(prefix: &str, kind: &str, n: Option<u32>) -> Result<W> {
    create(prefix, kind, n).map(Some)
}

fn create(prefix: &str, kind: &str, n: Option<u32>) -> Result<BufWriter<File>> {
    let name = match n {
        Some(n) => format!("{prefix}_{kind}.{n}.log"),
        None => format!("{prefix}_{kind}.log"),
    };
    let f = File::create(&name).map_err(|e| Error::msg(format!("log file {name}: {e}")))?;
    Ok(BufWriter::new(f))
}

impl Logs {
    /// The job's logs, created now; `number` is fio's thread number.
    pub fn open(job: &Job, number: u32, slat_on: bool, start: Instant) -> Result<Option<Logs>> {
        let o = &job.logs;
        if !o.any() {
            return Ok(None);
        }
        let n = o.per_job.then_some(number);
        let mut w: [W; 5] = [None, None, None, None, None];
        let prefix = |p: &String| {
            if p.is_empty() {
                job.name.clone()
            } else {
                p.clone()
            }
        };
        let (lat, bw, iops) = (
            o.lat.as_ref().map(prefix),
            o.bw.as_ref().map(prefix),
            o.iops.as_ref().map(prefix),
        );
        if let Some(p) = &lat {
            w[0] = open(p, "lat", n)?;
            w[1] = open(p, "clat", n)?;
            w[2] = open(p, "slat", n)?;
        }
        if let Some(p) = &bw {
            w[3] = open(p, "bw", n)?;
        }
        if let Some(p) = &iops {
            w[4] = open(p, "iops", n)?;
        }
        let avg = (o.avg_msec > 0).then(|| Duration::from_millis(o.avg_msec));
        let hist = match o.hist.as_ref().map(prefix) {
            Some(p) => Some(Box::new(Hist {
                w: create(&p, "clat_hist", n)?,
                msec: o.hist_msec,
                stride: 1 << o.hist_coarseness.min(6),
                counts: std::array::from_fn(|_| vec![0; PLAT_NR]),
                last: [None; NDIR],
            })),
            None => None,
        };
        Ok(Some(Logs {
            start,
            avg,
            max_value: o.max_value,
            w,
            slat_on,
            offset: o.offset,
            prio: o.prio,
            win_end: start + avg.unwrap_or_default(),
            acc: [Acc::default(); NDIR],
            hist,
        }))
    }

    /// One completed I/O (of priority `prio`, fio's io_u->ioprio).
    #[allow(clippy::too_many_arguments)] // one per column fio logs
    pub fn io(
        &mut self,
        dir: Dir,
        bs: u64,
        off: u64,
        prep: Instant,
        issue: Instant,
        done: Instant,
        prio: u16,
    ) {
        let ns = |d: Duration| d.as_nanos().min(u128::from(u64::MAX)) as u64;
        let (lat, clat, slat) = (ns(done - prep), ns(done - issue), ns(issue - prep));
        let d = dir as usize;
        if let Some(h) = &mut self.hist {
            let ms = (done - self.start).as_millis().min(u128::from(u64::MAX)) as u64;
            h.io(d, bs, clat, ms);
        }
        match self.avg {
            None => {
                let t = (done - self.start).as_millis();
                let bw = (bs as f64 * 1e9 / lat.max(1) as f64 / 1024.0) as u64;
                let vals = [lat, clat, slat, bw, 1];
                // fio's flush_samples: the priority with log_prio, else
                // whether it is of the real-time class.
                let p = if self.prio {
                    format!("0x{prio:04x}")
                } else {
                    u16::from(prio >> 13 == 1).to_string()
                };
                let tail = if self.offset {
                    format!("{bs}, {off}, {p}")
                } else {
                    format!("{bs}, {p}")
                };
                for (i, w) in self.w.iter_mut().enumerate() {
                    if i == 2 && !self.slat_on {
                        continue;
                    }
                    if let Some(w) = w {
                        let _ = writeln!(w, "{t}, {}, {d}, {tail}", vals[i]);
                    }
                }
            }
            Some(win) => {
                while done >= self.win_end {
                    self.flush_window(win);
                }
                let a = &mut self.acc[d];
                a.n += 1;
                a.bytes += bs;
                for (i, v) in [lat, clat, slat].into_iter().enumerate() {
                    a.sum[i] += v;
                    a.max[i] = a.max[i].max(v);
                }
            }
        }
    }

    fn flush_window(&mut self, win: Duration) {
        let t = (self.win_end - self.start).as_millis();
        self.write_window(t, Some(win));
        self.win_end += win;
    }

    /// Write the accumulated window stamped `t` ms and empty it. `rate_win`:
    /// the window was complete, so its bandwidth and IOPS are written too
    /// (over that length); `None` writes only the latencies.
    fn write_window(&mut self, t: u128, rate_win: Option<Duration>) {
        // Block size 0, offset 0 (with log_offset), priority 0.
        let tail = match (self.offset, self.prio) {
            (true, true) => "0, 0, 0x0000",
            (true, false) => "0, 0, 0",
            (false, true) => "0, 0x0000",
            (false, false) => "0, 0",
        };
        for d in 0..NDIR {
            let a = std::mem::take(&mut self.acc[d]);
            if a.n == 0 {
                continue;
            }
            for i in 0..3 {
                if i == 2 && !self.slat_on {
                    continue;
                }
                let v = if self.max_value {
                    a.max[i]
                } else {
                    a.sum[i] / a.n
                };
                if let Some(w) = &mut self.w[i] {
                    let _ = writeln!(w, "{t}, {v}, {d}, {tail}");
                }
            }
            let Some(win) = rate_win else { continue };
            let secs = win.as_secs_f64();
            if let Some(w) = &mut self.w[3] {
                let _ = writeln!(
                    w,
                    "{t}, {}, {d}, {tail}",
                    (a.bytes as f64 / 1024.0 / secs) as u64
                );
            }
            if let Some(w) = &mut self.w[4] {
                let _ = writeln!(w, "{t}, {}, {d}, {tail}", (a.n as f64 / secs) as u64);
            }
        }
    }

    /// End of the job at `end`: the last window, and everything to disk.
    ///
    /// As fio (stat.c `finalize_logs`): a window the job did not reach the
    /// end of is written for the latency logs only, stamped with the time
    /// the job ended, and not at all for bandwidth and IOPS (fio samples
    /// those only at whole windows). Stamping it with the window's end
    /// instead put a sample after the end of the job, and its rate over a
    /// whole window dragged fio-plot's graphs to zero at the end.
    pub fn finish(mut self, end: Instant) -> Result<()> {
        if let Some(win) = self.avg {
            // The window in progress ended before the job did: it is whole
            // (later windows had no I/O, so nothing to write for them).
            if end >= self.win_end {
                self.flush_window(win);
            }
            if self.acc.iter().any(|a| a.n > 0) {
                let t = end.saturating_duration_since(self.start).as_millis();
                self.write_window(t, None);
            }
        }
        for w in self.w.iter_mut().flatten() {
            w.flush()?;
        }
        if let Some(h) = &mut self.hist {
            h.w.flush()?;
        }
        Ok(())
    }
}
