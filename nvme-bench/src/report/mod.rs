//! Reports: fio's normal text, fio's JSON (json / json+), and the
//! side-by-side comparison (table + SVG).

pub mod compare;
pub mod json;
pub mod normal;
pub mod terse;

use std::io::Write;
use std::time::{Duration, SystemTime};

use crate::error::{Error, Result};
use crate::options::{Globals, Job, JobSet, NDIR};
use crate::runner::JobResult;
use crate::stats::{DepthHist, DirStats};

/// What one report block covers: one job instance, or (group_reporting)
/// every job of a group.
#[derive(Clone, Debug)]
pub struct Unit {
    pub name: String,
    pub groupid: u32,
    pub jobs: usize,
    pub job: Job,
    pub dirs: [DirStats; NDIR],
    /// fio's `total_run_time` (`job_runtime`): of a group_reporting
    /// group, the sum of its jobs' (stat.c `sum_thread_stats`).
    pub runtime: Duration,
    /// fio's `runtime[ddir]`: of a group, the longest job's.
    pub dir_runtime: [Duration; NDIR],
    /// Wall time of the measured phase (of a group: the longest job's),
    /// for the comparison table's rates.
    pub wall: Duration,
    pub elapsed: Duration,
    pub usr_us: u64,
    pub sys_us: u64,
    pub ctx: u64,
    pub majf: u64,
    pub minf: u64,
    pub depth: DepthHist,
    pub errno: i32,
    pub error: Option<String>,
    pub total_err: u64,
    pub first_error: i32,
    pub extras: Vec<serde_json::Value>,
    pub pid: u32,
    pub verified: u64,
    pub cpus: Option<Vec<usize>>,
    /// fio's `latency_depth` (of a group: the last job's, as fio's).
    pub lat_depth: u32,
    /// `unified_rw_reporting=mixed`: `dirs[0]` holds reads and writes
    /// together and is reported as `mixed`.
    pub mixed: bool,
    /// fio's steady-state report (of a group: its last job's, which keeps
    /// the group's samples).
    pub steadystate: Option<crate::steadystate::Report>,
    /// `block_error_percentiles`' per-block words (of a group: its last
    /// job's, as fio's `__show_run_stats` copies each job's in turn).
    pub block_infos: Option<Vec<u32>>,
}

impl Unit {
    fn from(r: &JobResult) -> Unit {
        Unit {
            name: r.job.name.clone(),
            groupid: r.groupid,
            jobs: 1,
            job: r.job.clone(),
            dirs: r.dirs.clone(),
            runtime: r.runtime,
            dir_runtime: r.dir_runtime,
            wall: r.runtime,
            elapsed: r.elapsed,
            usr_us: r.usage.user_us,
            sys_us: r.usage.sys_us,
            ctx: r.usage.ctx,
            majf: r.usage.majf,
            minf: r.usage.minf,
            depth: r.depth.clone(),
            errno: shown_errno(r),
            error: r.error.clone(),
            total_err: r.total_err,
            first_error: r.first_error,
            extras: vec![r.extras.clone()],
            pid: r.pid,
            verified: r.verified,
            cpus: r.cpus.clone(),
            lat_depth: r.lat_depth,
            mixed: false,
            steadystate: r.steadystate.clone(),
            block_infos: r.block_infos.clone(),
        }
    }
    fn merge(&mut self, r: &JobResult) {
        self.jobs += 1;
        for d in 0..NDIR {
            self.dirs[d].merge(&r.dirs[d]);
        }
        self.runtime += r.runtime;
        self.wall = self.wall.max(r.runtime);
        for d in 0..NDIR {
            self.dir_runtime[d] = self.dir_runtime[d].max(r.dir_runtime[d]);
        }
        self.elapsed = self.elapsed.max(r.elapsed);
        self.usr_us += r.usage.user_us;
        self.sys_us += r.usage.sys_us;
        self.ctx += r.usage.ctx;
        self.majf += r.usage.majf;
        self.minf += r.usage.minf;
        self.depth.merge(&r.depth);
        self.lat_depth = r.lat_depth;
        if self.errno == 0 {
            self.errno = shown_errno(r);
            self.error = r.error.clone();
        }
        self.total_err += r.total_err;
        if self.first_error == 0 {
            self.first_error = r.first_error;
        }
        self.extras.push(r.extras.clone());
        self.verified += r.verified;
        self.steadystate = r.steadystate.clone();
        self.block_infos = r.block_infos.clone();
    }
    /// Milliseconds of the measured phase, `job_runtime` (at least 1).
    pub fn runtime_ms(&self) -> u64 {
        (self.runtime.as_millis() as u64).max(1)
    }
    /// Milliseconds of direction `d`, rounded up as fio's `update_runtime`.
    pub fn dir_runtime_ms(&self, d: usize) -> u64 {
        (self.dir_runtime[d].as_micros() as u64)
            .div_ceil(1000)
            .max(1)
    }
    pub fn bw_bytes(&self, d: usize) -> f64 {
        self.dirs[d].bytes as f64 / self.dir_runtime[d].as_secs_f64().max(1e-3)
    }
    pub fn iops(&self, d: usize) -> f64 {
        self.dirs[d].ios as f64 / self.dir_runtime[d].as_secs_f64().max(1e-3)
    }
    /// CPU use in percent of `job_runtime` (of a group: the sum of the
    /// jobs' runtimes, as fio's JSON).
    pub fn cpu_pct(&self) -> (f64, f64) {
        let rt = self.runtime.as_micros().max(1) as f64;
        (
            self.usr_us as f64 * 100.0 / rt,
            self.sys_us as f64 * 100.0 / rt,
        )
    }
}

/// Report units in run order, merging group_reporting groups.
pub fn units(results: &[JobResult]) -> Vec<Unit> {
    let mut out: Vec<Unit> = Vec::new();
    for r in results {
        if r.job.group_reporting {
            if let Some(u) = out
                .iter_mut()
                .find(|u| u.groupid == r.groupid && u.job.group_reporting)
            {
                u.merge(r);
                continue;
            }
        }
        out.push(Unit::from(r));
    }
    for u in out.iter_mut().filter(|u| u.job.unified_rw) {
        // fio's unified_rw_reporting=mixed: the directions are summed into
        // one, over the longer of their runtimes.
        for d in 1..NDIR {
            let w = std::mem::take(&mut u.dirs[d]);
            u.dirs[0].merge(&w);
            u.dir_runtime[0] = u.dir_runtime[0].max(u.dir_runtime[d]);
            u.dir_runtime[d] = Duration::ZERO;
        }
        u.mixed = true;
    }
    out
}

/// The reports fio would print for these results, in fio's order when
/// several formats are asked for: terse, JSON, normal. Also what a
/// `--status-interval` report prints, from the statistics so far.
pub fn render(
    g: &Globals,
    set: &JobSet,
    us: &[Unit],
    disks: &[crate::diskstats::DiskUtil],
    started: SystemTime,
) -> Result<String> {
    let mut text = String::new();
    if g.formats.terse {
        text.push_str(&terse::render(us, disks, g.terse_version));
    }
    if g.formats.json {
        let mut d = json::document(g, set, us, started);
        if !disks.is_empty() {
            d["disk_util"] = crate::diskstats::json(disks);
        }
        text.push_str(&serde_json::to_string_pretty(&d).map_err(|e| Error::msg(e.to_string()))?);
        text.push('\n');
    }
    if g.formats.normal {
        text.push_str(&normal::render(us, g.output.is_some()));
        if !disks.is_empty() {
            // fio's show_disk_util starts with a blank line.
            text.push('\n');
        }
        text.push_str(&crate::diskstats::render(disks));
    }
    Ok(text)
}

/// Write every requested report.
pub fn emit(
    g: &Globals,
    set: &JobSet,
    results: &[JobResult],
    disks: &[crate::diskstats::DiskUtil],
    started: SystemTime,
    out_file: Option<std::fs::File>,
) -> Result<()> {
    let us = units(results);
    let text = render(g, set, &us, disks, started)?;
    // The comparison table is nvme-bench's own: it never goes where fio's
    // report goes, but to stderr (stdout and --output carry fio's
    // formats); and there only with `--compare`, or for several jobs when
    // stderr is a terminal. fio writes nothing to stderr on a clean run, and
    // tools that drive it (fio-plot's bench-fio) take anything there as a
    // failure.
    use std::io::IsTerminal;
    let want = g.compare || (us.len() > 1 && std::io::stderr().is_terminal());
    let table = want.then(|| compare::table(&us));
    match (&g.output, out_file) {
        (Some(p), f) => {
            // Opened (created) by `run::run` before the first I/O.
            let mut f = match f {
                Some(f) => f,
                None => std::fs::File::create(p)
                    .map_err(|e| Error::msg(format!("--output {p}: {e}")))?,
            };
            f.write_all(text.as_bytes())
                .map_err(|e| Error::msg(format!("--output {p}: {e}")))?;
        }
        (None, _) => {
            let mut o = std::io::stdout().lock();
            o.write_all(text.as_bytes())?;
        }
    }
    if let Some(t) = &table {
        eprint!("\n{t}");
    }
    std::io::stdout().flush()?;
    if let Some(p) = &g.plot {
        compare::svg(&us, p)?;
        eprintln!("nvme-bench: plot written to {p}");
    }
    Ok(())
}

/// fio's `num2str(num, maxlen, base, pow2, units)` (lib/num2str.c): `num`
/// in units of `base` (1, or kb_base for a number already in KiB/kB),
/// divided by 1000 (1024 with `pow2`) until it has at most `maxlen` digits,
/// decimals in the room left, then the prefix (`k`/`Ki`, ...) and `unit`
/// (`B/s`, or `bit/s`: the number times 8).
pub fn num2str_units(mut num: u64, maxlen: usize, base: u64, pow2: bool, unit: &str) -> String {
    const SI: [&str; 7] = ["", "k", "M", "G", "T", "P", "E"];
    const IEC: [&str; 7] = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];
    let prefix = if pow2 { IEC } else { SI };
    let thousand: u64 = if pow2 { 1024 } else { 1000 };
    let mut post = 0usize;
    let mut b = base;
    while b > 1 {
        b /= thousand;
        post += 1;
    }
    if unit.starts_with("bit") {
        num = num.wrapping_mul(8);
    }
    let mut modulo: Option<u64> = None;
    let mut carry = false;
    while post < prefix.len() {
        if num.to_string().len() <= maxlen {
            break;
        }
        let m = num % thousand;
        modulo = Some(m);
        num /= thousand;
        carry = m >= thousand / 2;
        post += 1;
    }
    if post >= prefix.len() {
        post = 0;
    }
    let Some(m) = modulo else {
        return format!("{num}{}{unit}", prefix[post]);
    };
    let digits = num.to_string().len();
    if maxlen <= digits + 1 {
        if carry {
            num += 1;
        }
        return format!("{num}{}{unit}", prefix[post]);
    }
    let prec = maxlen - digits - 1;
    let frac = format!("{:.*}", prec, m as f64 / thousand as f64);
    if frac.starts_with('1') {
        num += 1;
    }
    format!("{num}.{}{}{unit}", &frac[2..], prefix[post])
}

/// fio's `num2str(num, maxlen, 1, 0, N2S_NONE)` (lib/num2str.c): an
/// integer in at most `maxlen` digits (the `.` counted), divided by 1000
/// (k, M, ...) until it fits, with as many decimals as room is left:
/// `338333`, `3997.5k`, `12345k`.
pub fn num2str_fixed(mut num: u64, maxlen: usize) -> String {
    const PREFIX: [&str; 7] = ["", "k", "M", "G", "T", "P", "E"];
    let mut post = 0usize;
    let mut modulo: Option<u64> = None;
    let mut carry = false;
    while post < PREFIX.len() {
        if num.to_string().len() <= maxlen {
            break;
        }
        let m = num % 1000;
        modulo = Some(m);
        num /= 1000;
        carry = m >= 500;
        post += 1;
    }
    if post >= PREFIX.len() {
        post = 0;
    }
    let Some(m) = modulo else {
        return format!("{num}{}", PREFIX[post]);
    };
    let digits = num.to_string().len();
    if maxlen <= digits + 1 {
        if carry {
            num += 1;
        }
        return format!("{num}{}", PREFIX[post]);
    }
    let prec = maxlen - digits - 1;
    let frac = format!("{:.*}", prec, m as f64 / 1000.0);
    if frac.starts_with('1') {
        num += 1;
    }
    format!("{num}.{}{}", &frac[2..], PREFIX[post])
}

/// fio's num2str for counts: 5247, 21.0k, 210k, 1.23M.
pub fn num2str(v: f64) -> String {
    fio_scale(v, 1000.0, &["", "k", "M", "G", "T"])
}

/// fio's num2str with 4 significant figures: divide by `base` while the
/// integer part has more than 4 digits, then show as many decimals as fit
/// in 4 digits (`5247`, `21.0k`, `288k`, `1234k`, `82.1MiB`, `1123MiB`).
fn fio_scale(v: f64, base: f64, suf: &[&str]) -> String {
    let mut x = v;
    let mut i = 0;
    while x >= 10_000.0 && i + 1 < suf.len() {
        x /= base;
        i += 1;
    }
    if i == 0 {
        return format!("{}{}", x.round() as u64, suf[0]);
    }
    if x < 10.0 {
        format!("{x:.2}{}", suf[i])
    } else if x < 100.0 {
        format!("{x:.1}{}", suf[i])
    } else {
        format!("{x:.0}{}", suf[i])
    }
}

/// How a job's normal report writes rates and sizes: fio's `kb_base`
/// (1000: SI units first, IEC in parentheses) and `unit_base` (1: rates
/// in bits).
#[derive(Clone, Copy, Debug)]
pub struct Units {
    pub si_first: bool,
    pub bits: bool,
}

impl Units {
    pub fn of(job: &Job) -> Units {
        Units {
            si_first: job.kb_base == 1000,
            bits: job.unit_base_bits,
        }
    }
    /// A rate as (primary, secondary): `82.1MiB/s` and `86.1MB/s`.
    pub fn bw(self, bps: f64) -> (String, String) {
        let (iec, si) = if self.bits {
            let b = bps * 8.0;
            (
                fio_scale(
                    b,
                    1024.0,
                    &["bit", "Kibit", "Mibit", "Gibit", "Tibit", "Pibit"],
                ),
                fio_scale(b, 1000.0, &["bit", "kbit", "Mbit", "Gbit", "Tbit", "Pbit"]),
            )
        } else {
            (fmt_bytes_iec(bps), fmt_bytes_si(bps))
        };
        self.order(format!("{iec}/s"), format!("{si}/s"))
    }
    /// A size as (primary, secondary): `4096KiB` and `4194kB`.
    pub fn bytes(self, b: f64) -> (String, String) {
        self.order(fmt_bytes_iec(b), fmt_bytes_si(b))
    }
    fn order(self, iec: String, si: String) -> (String, String) {
        if self.si_first {
            (si, iec)
        } else {
            (iec, si)
        }
    }
}

/// Bytes per second in IEC units: `82.1MiB/s`.
pub fn fmt_bw_iec(bps: f64) -> String {
    format!("{}/s", fmt_bytes_iec(bps))
}

pub fn fmt_bytes_iec(b: f64) -> String {
    fio_scale(b, 1024.0, &["B", "KiB", "MiB", "GiB", "TiB", "PiB"])
}

pub fn fmt_bytes_si(b: f64) -> String {
    fio_scale(b, 1000.0, &["B", "kB", "MB", "GB", "TB", "PB"])
}

/// ctime()-style local time: `Mon Nov 23 21:22:19 2026`.
pub fn ctime(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as libc::time_t;
    // SAFETY: tm is plain data, filled by localtime_r from a valid time_t.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are valid for the call.
    if unsafe { libc::localtime_r(&secs, &mut tm) }.is_null() {
        return String::new();
    }
    let mut buf = [0u8; 64];
    let fmt = c"%a %b %e %H:%M:%S %Y";
    // SAFETY: buf is writable for its length; fmt is NUL-terminated; tm valid.
    let n = unsafe { libc::strftime(buf.as_mut_ptr().cast(), buf.len(), fmt.as_ptr(), &tm) };
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// `strerror(3)` text without Rust's " (os error N)" suffix, as fio prints it.
/// fio's sum_thread_stats: a job with `continue_on_error` that no error
/// ended reports its `first_error` as its error (`"error"`, `err=`).
fn shown_errno(r: &JobResult) -> i32 {
    if r.errno == 0 && r.job.continue_on_error != 0 {
        r.first_error
    } else {
        r.errno
    }
}

pub fn strerror(errno: i32) -> String {
    if errno == 0 {
        return "Success".into();
    }
    let s = std::io::Error::from_raw_os_error(errno).to_string();
    match s.rfind(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn num2str_fixed_like_fio() {
        assert_eq!(super::num2str_fixed(621, 6), "621");
        assert_eq!(super::num2str_fixed(338_333, 6), "338333");
        assert_eq!(super::num2str_fixed(3_997_512, 6), "3997.5k");
        assert_eq!(super::num2str_fixed(12_345_478, 6), "12345k");
        assert_eq!(super::num2str_fixed(12_345_678, 6), "12346k");
        assert_eq!(super::num2str_fixed(1_000_000, 6), "1000.0k");
        assert_eq!(super::num2str_fixed(1_999_999, 6), "2000.0k");
    }

    #[test]
    fn num2str_units_like_fio() {
        use super::num2str_units as n;
        // fio's steadystate line: bw_mean / kb_base in KiB (and, its
        // quirk, the same number as kB).
        assert_eq!(n(4001, 4, 1024, true, "B/s"), "4001KiB/s");
        assert_eq!(n(4001, 4, 1024, false, "B/s"), "4001kB/s");
        assert_eq!(n(12_345, 4, 1024, true, "B/s"), "12.1MiB/s");
        assert_eq!(n(4001, 4, 1000, false, "B/s"), "4001kB/s");
        assert_eq!(n(4001, 4, 1000, true, "B/s"), "4001KiB/s");
        assert_eq!(n(4001, 4, 1024, true, "bit/s"), "31.3Mibit/s");
        assert_eq!(n(1000, 4, 1, false, ""), "1000");
        assert_eq!(n(2_054_335, 4, 1, false, ""), "2054k");
        assert_eq!(n(1_876_543, 4, 1, false, ""), "1877k");
        for x in [621, 338_333, 3_997_512, 12_345_478, 1_999_999] {
            assert_eq!(n(x, 6, 1, false, ""), super::num2str_fixed(x, 6));
        }
    }
}
