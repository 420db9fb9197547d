//! Several files per job, as fio 3.33: how big each file is and where its
//! I/O goes (filesetup.c `setup_files`), and which file the next I/O goes
//! to (io_u.c `__get_next_file`, `file_service_type`, `openfiles`).
//!
//! A job uses this when it has more than one file (a `filename` list, or
//! `nrfiles` > 1) or a `filesize`; a job on one file without `filesize`
//! keeps the runner's one-region path.

use crate::error::{Error, Result};
use crate::gen::{Rng, Zipf};
use crate::options::{Amount, FileService, Job};

/// One file of a job: where its I/O goes and whether it must be laid out.
#[derive(Clone, Debug, PartialEq)]
pub struct FilePlan {
    pub path: String,
    /// fio's `file_offset`: the job's `offset`.
    pub offset: u64,
    /// fio's `io_size`: the bytes of the file the job's I/O covers, from
    /// `offset`.
    pub io_size: u64,
    /// The file is missing or shorter than `offset + io_size`: it is laid
    /// out before the job (fio's `fio_file_set_extend`).
    pub extend: bool,
}

/// The files of a job and fio's `size` after setup (the job's byte count
/// per loop: `size`, capped at the files' total, or that total).
#[derive(Clone, Debug)]
pub struct Plan {
    pub files: Vec<FilePlan>,
    pub size: u64,
}

/// Whether `job` runs on the several-files path.
pub fn multi(job: &Job) -> bool {
    job.files.len() > 1 || ((job.filesize.is_some() || job.file_append) && !job.files.is_empty())
}

/// The plan `run` made before layout (`Job::planned`), else a new one.
/// Offsets of `file_append` are of the files before layout, as fio's.
pub fn planned(job: &Job, seed: u64) -> Result<Plan> {
    match &job.planned {
        Some((regions, size)) if regions.len() == job.files.len() => Ok(Plan {
            files: job
                .files
                .iter()
                .zip(regions)
                .map(|(p, &(offset, io_size))| FilePlan {
                    path: p.clone(),
                    offset,
                    io_size,
                    extend: false,
                })
                .collect(),
            size: *size,
        }),
        _ => plan(job, seed),
    }
}

/// Size of a file or block device as fio's `get_file_sizes` sees it; 0 if
/// missing.
fn real_size(path: &str) -> Result<(u64, bool)> {
    use std::os::unix::fs::FileTypeExt;
    match std::fs::metadata(path) {
        Ok(md) if md.is_file() => Ok((md.len(), true)),
        Ok(md) if md.file_type().is_block_device() => {
            let f = std::fs::File::open(path).map_err(|e| Error::msg(format!("{path}: {e}")))?;
            Ok((crate::engine::file_geometry(&f)?.0, false))
        }
        Ok(_) => Err(Error::msg(format!(
            "{path}: not a regular file or block device"
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok((0, true)),
        Err(e) => Err(Error::msg(format!("{path}: {e}"))),
    }
}

/// fio's `setup_files` sizing, for the job's files (`job.files`) as they
/// are on disk now. `seed` draws the sizes of a `filesize` range (the
/// same seed gives the same sizes before and after layout).
pub fn plan(job: &Job, seed: u64) -> Result<Plan> {
    let n = job.files.len() as u64;
    if n == 0 {
        return Err(Error::msg("internal: a job without files"));
    }
    let fileless = !job.ioengine.on_files();
    let bs = job.min_bs().max(1);
    let size = match job.size {
        Some(Amount::Bytes(b)) => b,
        Some(Amount::Percent(_)) => {
            return Err(Error::msg("size= in percent with several files"));
        }
        None => 0,
    };
    let offset = match job.offset {
        Amount::Bytes(b) => b,
        Amount::Percent(_) => return Err(Error::msg("offset= in percent with several files")),
    };
    // size / nrfiles each, the first files one block more while the
    // remainder lasts.
    let fs = size / n;
    let mut extra = if job.filesize.is_none() {
        (size - fs * n) / bs
    } else {
        0
    };
    let mut rng = Rng::new(seed ^ 0xf11e_517e);
    let mut files = Vec::with_capacity(n as usize);
    let mut total = 0u64;
    let mut any_real = false;
    for path in &job.files {
        let (real, regular) = if fileless {
            (0, false)
        } else {
            real_size(path)?
        };
        any_real |= real > 0;
        // fio's get_start_offset: file_append starts at a file's end.
        let offset = if job.file_append && regular {
            real
        } else {
            offset
        };
        let err_offset = || {
            Error::msg(format!(
                "{path}: offset {offset} is past the end of the file"
            ))
        };
        let io_size = match job.filesize {
            None => {
                let mut s = fs;
                if extra > 0 {
                    extra -= 1;
                    s += bs;
                }
                if s == 0 {
                    if offset > real {
                        return Err(err_offset());
                    }
                    s = real - offset;
                }
                s
            }
            Some((lo, hi)) if real < lo || real > hi => {
                if offset > lo {
                    return Err(err_offset());
                }
                let want = if lo == hi {
                    lo
                } else {
                    // fio's get_rand_file_size.
                    let r = lo + ((hi - lo) as f64 * rng.unit()) as u64;
                    r - r % bs
                };
                want.saturating_sub(offset)
            }
            Some(_) => real.saturating_sub(offset),
        };
        total = total.saturating_add(io_size);
        let end = offset
            .checked_add(io_size)
            .ok_or_else(|| Error::msg(format!("{path}: offset + size overflows")))?;
        let extend = regular && !fileless && end > real && !job.create_on_open;
        if !regular && !fileless && end > real {
            return Err(Error::msg(format!(
                "{path}: offset {offset} + size {io_size} is past the end of the device ({real} bytes)"
            )));
        }
        files.push(FilePlan {
            path: path.clone(),
            offset,
            io_size,
            extend,
        });
    }
    if size == 0 && job.filesize.is_none() && !any_real {
        return Err(Error::msg(format!(
            "{}: you need to specify size=",
            job.name
        )));
    }
    let size = if size == 0 || size > total {
        total
    } else {
        size
    };
    if size < job.min_bs() {
        return Err(Error::msg("blocksize is larger than data set range"));
    }
    Ok(Plan { files, size })
}

/// fio's file choice for the next I/O: `file_service_type` over the
/// files not yet done, at most `openfiles` open at once (a file opens when
/// first chosen and closes when done).
pub struct Picker {
    kind: FileService,
    n: usize,
    open_limit: usize,
    done: Vec<bool>,
    open: Vec<bool>,
    nr_open: usize,
    nr_done: usize,
    /// fio's `file_service_file` and `file_service_left`.
    cur: Option<usize>,
    left: u32,
    /// fio's `next_file` (round robin, sequential).
    next: usize,
    rng: Rng,
    zipf: Option<Zipf>,
    /// Skewed kinds: their offset into the ranges (fio's `rand_off`).
    rand_off: u64,
    /// Files closed since the runner last looked (done, or a new loop):
    /// their descriptors can go.
    pub closed: Vec<usize>,
}

/// fio's `FIO_FSERVICE_SHIFT`: the skewed kinds draw over `n << 10`
/// ranges.
const SHIFT: u32 = 10;

impl Picker {
    pub fn new(job: &Job, n: usize, seed: u64) -> Picker {
        let mut rng = Rng::new(seed ^ 0x0f11_e5e1);
        let ranges = (n as u64) << SHIFT;
        let (zipf, center) = match job.file_service {
            FileService::Zipf(t, c) => (Some(Zipf::new(ranges, t)), c),
            FileService::Pareto(_, c) | FileService::Gauss(_, c) => (None, c),
            _ => (None, None),
        };
        let rand_off = match (job.file_service, center) {
            (_, Some(c)) if matches!(job.file_service, FileService::Gauss(..)) => {
                ((ranges as f64 * (c - 0.5)) as i64).rem_euclid(ranges as i64) as u64
            }
            (_, Some(c)) => (ranges as f64 * c) as u64,
            (FileService::Zipf(..) | FileService::Pareto(..), None) => rng.below(ranges),
            _ => 0,
        };
        let open_limit = match job.openfiles as usize {
            0 => n,
            o => o.min(n),
        };
        Picker {
            kind: job.file_service,
            n,
            open_limit,
            done: vec![false; n],
            open: vec![false; n],
            nr_open: 0,
            nr_done: 0,
            cur: None,
            left: 0,
            next: 0,
            rng,
            zipf,
            rand_off,
            closed: Vec::new(),
        }
    }

    /// The next file: `(index, opened)` (`opened`: it was opened now, so
    /// fio's open-time cache invalidation and fadvise apply), or `None`
    /// when every file is done.
    pub fn pick(&mut self) -> Option<(usize, bool)> {
        if self.nr_done >= self.n {
            return None;
        }
        if let Some(f) = self.cur {
            if self.open[f] {
                if self.kind == FileService::Sequential {
                    return Some((f, false));
                }
                if self.left > 0 {
                    self.left -= 1;
                    return Some((f, false));
                }
            }
        }
        // fio returns EBUSY when the chosen file is closed and `openfiles`
        // are open, then asks again after reaping; the files it then gets
        // are the same as asking again at once.
        let mut tries = 0u64;
        let f = loop {
            let f = match self.kind {
                FileService::RoundRobin(_) | FileService::Sequential => {
                    let f = self.next;
                    self.next = (self.next + 1) % self.n;
                    f
                }
                _ => self.draw(),
            };
            tries += 1;
            if self.done[f] {
                continue;
            }
            if self.open[f] || self.nr_open < self.open_limit {
                break f;
            }
            if tries > 1000 * self.n as u64 {
                // A skewed draw that almost never lands on an open file:
                // take the first open one rather than spin.
                break (0..self.n).find(|&i| self.open[i]).unwrap_or(f);
            }
        };
        let opened = !self.open[f];
        if opened {
            self.open[f] = true;
            self.nr_open += 1;
        }
        self.cur = Some(f);
        self.left = match self.kind {
            FileService::Random(nr) | FileService::RoundRobin(nr) => nr.saturating_sub(1),
            _ => 0,
        };
        Some((f, opened))
    }

    /// A file index from the random kinds (io_u.c `__get_next_fileno_rand`).
    fn draw(&mut self) -> usize {
        let ranges = (self.n as u64) << SHIFT;
        let v = match self.kind {
            FileService::Random(_) => return self.rng.below(self.n as u64) as usize,
            FileService::Zipf(..) => {
                let z = self.zipf.as_ref().expect("zipf set up for zipf");
                z.next(&mut self.rng)
            }
            FileService::Pareto(h, _) => {
                let pow = h.ln() / (1.0 - h).ln();
                ((ranges - 1) as f64 * self.rng.unit().powf(pow)) as u64
            }
            FileService::Gauss(dev, _) => {
                // fio's gauss_next: the mean of 12 uniforms over the ranges,
                // plus a deviation of `dev` percent of them.
                let sum: f64 = (0..12).map(|_| self.rng.unit()).sum::<f64>() / 12.0;
                let mut x = (sum * (ranges - 1) as f64) as i64;
                let sd = ((ranges as f64 * dev / 100.0).ceil() as i64).min(ranges as i64 / 2);
                if sd > 0 {
                    let mut d = (sd as f64 * self.rng.unit()) as i64 - sd / 2;
                    while d + x >= ranges as i64 || d + x < 0 {
                        d /= 2;
                    }
                    x += d;
                }
                x.max(0) as u64
            }
            FileService::RoundRobin(_) | FileService::Sequential => 0,
        };
        (((v + self.rand_off) % ranges) >> SHIFT) as usize
    }

    /// The file has no offsets left in this pass: done and closed (fio's
    /// `fio_file_set_done` + `td_io_close_file`).
    pub fn set_done(&mut self, f: usize) {
        if !self.done[f] {
            self.done[f] = true;
            self.nr_done += 1;
        }
        if self.open[f] {
            self.open[f] = false;
            self.nr_open -= 1;
            self.closed.push(f);
        }
    }

    /// A new loop (fio's `clear_io_state`): every file closed and not done.
    /// The round-robin position carries on, as fio's `next_file`.
    pub fn reset(&mut self) {
        self.done.iter_mut().for_each(|d| *d = false);
        for (f, o) in self.open.iter_mut().enumerate() {
            if std::mem::take(o) {
                self.closed.push(f);
            }
        }
        self.nr_done = 0;
        self.nr_open = 0;
        self.cur = None;
        self.left = 0;
    }
}

/// A running job's files: the plan, the file choice, and an offset
/// generator per file.
pub struct Running {
    pub plan: Plan,
    pub picker: Picker,
    gens: Vec<crate::gen::Gen>,
    nonuniform: bool,
    /// I/Os placed so far (all loops).
    pub picked: u64,
}

impl Running {
    pub fn new(job: &Job, plan: Plan, seed: u64) -> Running {
        let mut gens: Vec<crate::gen::Gen> = Vec::with_capacity(plan.files.len());
        for (i, f) in plan.files.iter().enumerate() {
            let s = seed.wrapping_add((i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
            // Files of one size share the set-up work (a zipf table).
            let g = match gens.iter().find(|g| g.len == f.io_size) {
                Some(t) => t.moved(f.offset, s),
                None => crate::gen::Gen::new(job, f.offset, f.io_size, s),
            };
            gens.push(g);
        }
        Running {
            picker: Picker::new(job, plan.files.len(), seed),
            plan,
            gens,
            nonuniform: job.file_service.nonuniform(),
            picked: 0,
        }
    }

    /// The file, offset and length of the next I/O drawn as `bs` bytes (io_u.c
    /// `set_io_u_file`): a file with no offset left is done (the skewed
    /// kinds start it over instead). `opened(i)` runs for each file opened
    /// on the way. `None`: every file is done (the loop ends).
    pub fn next(&mut self, bs: u64, mut opened: impl FnMut(usize)) -> Option<(usize, u64, u64)> {
        let mut resets = 0usize;
        loop {
            let (f, newly) = self.picker.pick()?;
            if newly {
                opened(f);
            }
            if let Some((off, len)) = self.gens[f].pick_io_once(bs) {
                self.picked += 1;
                return Some((f, off, len));
            }
            if self.nonuniform {
                self.gens[f].restart();
                resets += 1;
                if resets > 2 * self.gens.len() + 2 {
                    // No file holds a block of this size at all.
                    return None;
                }
            } else {
                self.picker.set_done(f);
            }
        }
    }

    /// The next loop over the files: all closed, not done, from the start.
    pub fn reset(&mut self) {
        self.picker.reset();
        for g in &mut self.gens {
            g.restart();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(service: FileService, openfiles: u32) -> Job {
        Job {
            file_service: service,
            openfiles,
            ..Job::default()
        }
    }

    /// The order fio's get_next_file gives, files marked done after `per`
    /// picks each.
    fn order(p: &mut Picker, n: usize, per: usize) -> Vec<usize> {
        let mut left = vec![per; n];
        let mut v = Vec::new();
        while let Some((f, _)) = p.pick() {
            v.push(f);
            left[f] -= 1;
            if left[f] == 0 {
                p.set_done(f);
            }
        }
        v
    }

    #[test]
    fn roundrobin_sequential_and_openfiles() {
        let mut p = Picker::new(&job(FileService::RoundRobin(1), 0), 3, 1);
        assert_eq!(order(&mut p, 3, 2), [0, 1, 2, 0, 1, 2]);
        let mut p = Picker::new(&job(FileService::RoundRobin(2), 0), 3, 1);
        assert_eq!(order(&mut p, 3, 2), [0, 0, 1, 1, 2, 2]);
        let mut p = Picker::new(&job(FileService::Sequential, 0), 3, 1);
        assert_eq!(order(&mut p, 3, 2), [0, 0, 1, 1, 2, 2]);
        // openfiles=2 of 4: the first two until done, then the others.
        let mut p = Picker::new(&job(FileService::RoundRobin(1), 2), 4, 1);
        assert_eq!(order(&mut p, 4, 2), [0, 1, 0, 1, 2, 3, 2, 3]);
        // Random with openfiles=1: one file at a time, each to its end.
        let mut p = Picker::new(&job(FileService::Random(1), 1), 4, 1);
        let v = order(&mut p, 4, 3);
        assert_eq!(v.len(), 12);
        for c in v.chunks(3) {
            assert!(c.iter().all(|&f| f == c[0]), "{v:?}");
        }
    }

    #[test]
    fn skewed_kinds_pick_every_file_in_range() {
        for k in [
            FileService::Zipf(1.2, None),
            FileService::Pareto(0.3, None),
            FileService::Gauss(20.0, Some(0.5)),
            FileService::Random(1),
        ] {
            let mut p = Picker::new(&job(k, 0), 5, 7);
            let mut seen = [0u32; 5];
            for _ in 0..5000 {
                let (f, _) = p.pick().unwrap();
                seen[f] += 1;
            }
            assert!(
                seen.iter().filter(|&&c| c > 0).count() >= 2,
                "{k:?}: {seen:?}"
            );
        }
    }
}
