//! fio's human-readable output.

use std::fmt::Write;

use super::{fmt_bytes_iec, num2str, Unit, Units};
use crate::options::{Job, Verify};
use crate::stats::{latency_buckets, series, LatStat, LAT_BUCKETS};

/// `t: (g=0): rw=randrw, bs=(R) 4096B-4096B, (W) 4096B-4096B, (T) 4096B-4096B, ioengine=io_uring, iodepth=4`
/// The lines fio prints before it runs a job set: each job's header (once
/// per job, `...` under a cloned one), then `Starting N processes` (or
/// threads, with `thread`, as fio counts them; nvme-bench always runs
/// threads).
pub fn start_lines(set: &crate::options::JobSet) -> Vec<String> {
    let mut out = Vec::new();
    let (mut threads, mut procs) = (0u64, 0u64);
    for j in &set.jobs {
        out.push(job_header(j, j.groupid as usize));
        if j.numjobs > 1 {
            out.push("...".to_string());
        }
        if j.thread {
            threads += u64::from(j.numjobs);
        } else {
            procs += u64::from(j.numjobs);
        }
    }
    let mut s = "Starting ".to_string();
    if threads > 0 {
        s += &format!("{threads} thread{}", if threads > 1 { "s" } else { "" });
    }
    if procs > 0 {
        if threads > 0 {
            s += " and ";
        }
        s += &format!("{procs} process{}", if procs > 1 { "es" } else { "" });
    }
    out.push(s);
    out
}

pub fn job_header(j: &Job, gid: usize) -> String {
    // Sizes as fio prints them (4096B, 16.0KiB); trim takes its own
    // (`bs=r,w,t`), else the last value given, which is the write one
    // (as `bsrange`/`bssplit` here, which take no trim value).
    let b =
        |(lo, hi): (u64, u64)| format!("{}-{}", fmt_bytes_iec(lo as f64), fmt_bytes_iec(hi as f64));
    let (r, w) = (b(j.bs_bounds(0)), b(j.bs_bounds(1)));
    let t = if j.bssplit[1].is_empty() && j.bsrange[1].is_none() {
        b((j.bs_trim, j.bs_trim))
    } else {
        w.clone()
    };
    format!(
        "{}: (g={gid}): rw={}, bs=(R) {r}, (W) {w}, (T) {t}, ioengine={}, iodepth={}",
        j.name,
        j.rw.name(),
        j.ioengine_name,
        j.iodepth,
    )
}

/// fio's display_lat unit choice.
fn lat_unit(s: &LatStat) -> (&'static str, f64) {
    let (min, max, dev) = (s.min() as f64, s.max as f64, s.stddev());
    if min > 2_000_000.0 && max > 99_999_999.0 && dev > 1_000_000.0 {
        ("msec", 1e6)
    } else if min > 2000.0 && max > 99_999.0 && dev > 1000.0 {
        ("usec", 1e3)
    } else {
        ("nsec", 1.0)
    }
}

fn lat_line(out: &mut String, name: &str, s: &LatStat) {
    if s.n == 0 {
        return;
    }
    let (u, div) = lat_unit(s);
    // fio divides min and max as integers (nsec_to_usec), then num2str's
    // six digits.
    let d = div as u64;
    let _ = writeln!(
        out,
        "    {name:>4} ({u}): min={}, max={}, avg={:5.02}, stdev={:5.02}",
        super::num2str_fixed(s.min() / d, 6),
        super::num2str_fixed(s.max / d, 6),
        s.mean() / div,
        s.stddev() / div
    );
}

/// fio's `percentile_precision`: the most decimals among the listed
/// percentiles (fio counts the digits written after the dot; the shortest
/// form of each value is what is counted here).
fn precision(list: &[f64]) -> usize {
    list.iter()
        .map(|p| {
            let t = format!("{p}");
            t.split_once('.').map_or(0, |(_, f)| f.len())
        })
        .max()
        .unwrap_or(0)
}

fn pct_block(out: &mut String, name: &str, s: &LatStat, list: &[f64]) {
    if s.n == 0 || list.is_empty() {
        return;
    }
    let vals: Vec<u64> = list.iter().map(|p| s.percentile(*p)).collect();
    let minv = *vals.iter().min().unwrap_or(&0);
    let maxv = *vals.iter().max().unwrap_or(&0);
    let (unit, scale) = if minv > 2_000_000 && maxv > 99_999_999 {
        ("msec", 2)
    } else if minv > 2000 && maxv > 99_999 {
        ("usec", 1)
    } else {
        ("nsec", 0)
    };
    let _ = write!(out, "    {name} percentiles ({unit}):\n     |");
    // fio's widths: the value column fits the largest value (at least 5),
    // the percentile column the list's precision; as many as fit in 73.
    let div = [1u64, 1000, 1_000_000][scale];
    let time_width = 5.max(((maxv / div) as f64).log10() as usize + 1);
    let prec = precision(list);
    let per_line = (73 / (prec + 10 + time_width)).max(1);
    for (j, (p, v)) in list.iter().zip(&vals).enumerate() {
        if j != 0 && j % per_line == 0 {
            out.push_str("     |");
        }
        let mut v = *v;
        for _ in 0..scale {
            v = v.div_ceil(1000);
        }
        let last = j == list.len() - 1;
        let _ = write!(
            out,
            " {p:w$.prec$}th=[{v:time_width$}]{}",
            if last { '\n' } else { ',' },
            w = prec + 3
        );
        if !last && j % per_line == per_line - 1 {
            out.push('\n');
        }
    }
}

fn dir_block(out: &mut String, u: &Unit, d: usize, group_bw: f64) {
    let st = &u.dirs[d];
    if st.ios == 0 {
        return;
    }
    let name = match d {
        _ if u.mixed => "mixed",
        0 => "read",
        1 => "write",
        _ => "trim",
    };
    let units = Units::of(&u.job);
    let (bw1, bw2) = units.bw(u.bw_bytes(d));
    let _ = writeln!(
        out,
        "  {name}: IOPS={}, BW={bw1} ({bw2})({}/{}msec){}",
        num2str(u.iops(d)),
        units.bytes(st.bytes as f64).0,
        u.dir_runtime_ms(d),
        // fio's zbd_write_status, on every write line.
        if d == 1 && !u.mixed {
            "; 0 zone resets"
        } else {
            ""
        }
    );
    lat_line(out, "slat", &st.slat);
    lat_line(out, "clat", &st.clat);
    lat_line(out, "lat", &st.lat);
    // fio's per-priority lines (stat.c show_ddir_status), with two or more
    // priorities that completed I/Os.
    let by_prio = st.prios_with_samples() >= 2;
    let ptype = if u.job.lat_percentiles { "lat" } else { "clat" };
    if by_prio {
        for (p, s) in &st.prios {
            lat_line(out, &format!("{ptype} prio {}/{}", p >> 13, p & 7), s);
        }
    }
    if u.job.clat_percentiles {
        pct_block(out, "clat", &st.clat, u.job.percentiles());
    }
    if u.job.lat_percentiles {
        pct_block(out, "lat", &st.lat, u.job.percentiles());
    }
    if by_prio && (u.job.clat_percentiles || u.job.lat_percentiles) {
        let total = if u.job.lat_percentiles {
            st.lat.n
        } else {
            st.clat.n
        };
        for (p, s) in st.prios.iter().filter(|(_, s)| s.n > 0) {
            let name = format!(
                "{ptype} prio {}/{} ({:.2}% of IOs)",
                p >> 13,
                p & 7,
                100.0 * s.n as f64 / total.max(1) as f64
            );
            pct_block(out, &name, s, u.job.percentiles());
        }
    }
    if !st.bw_samples.is_empty() {
        let (bmin, bmax, bmean, bdev) = series(&st.bw_samples);
        let per = if group_bw > 0.0 {
            (bmean * 1024.0 * u.jobs as f64 / group_bw * 100.0).min(100.0)
        } else {
            100.0
        };
        // fio: KiB (kB with kb_base=1000; Kibit/kbit with unit_base=1),
        // MiB once the mean passes kb_base squared; min and max integers.
        let kb = if units.si_first { 1000.0 } else { 1024.0 };
        let m = if units.bits { 8.0 } else { 1.0 };
        let (mut bmin, mut bmax, mut bmean, mut bdev) = (
            (bmin as u64) as f64 * m,
            (bmax as u64) as f64 * m,
            bmean * m,
            bdev * m,
        );
        let mut unit = match (units.bits, units.si_first) {
            (true, false) => "Kibit",
            (true, true) => "kbit",
            (false, false) => "KiB",
            (false, true) => "kB",
        };
        if bmean > kb * kb {
            bmin /= kb;
            bmax /= kb;
            bmean /= kb;
            bdev /= kb;
            unit = if units.bits { "Mibit" } else { "MiB" };
        }
        let _ = writeln!(
            out,
            "   bw ({unit:>5}/s): min={:5}, max={:5}, per={per:3.2}%, avg={bmean:5.02}, stdev={bdev:5.02}, samples={}",
            bmin as u64,
            bmax as u64,
            st.bw_samples.len()
        );
    }
    if !st.iops_samples.is_empty() {
        let (imin, imax, imean, idev) = series(&st.iops_samples);
        let _ = writeln!(
            out,
            "   iops        : min={:5}, max={:5}, avg={imean:5.02}, stdev={idev:5.02}, samples={}",
            imin as u64,
            imax as u64,
            st.iops_samples.len()
        );
    }
}

fn pct_row(keys: &[&str], counts: &[u64; 7]) -> String {
    let total: u64 = counts.iter().sum::<u64>().max(1);
    keys.iter()
        .zip(counts)
        .map(|(k, c)| format!("{k}={:.1}%", *c as f64 * 100.0 / total as f64))
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn unit_block(out: &mut String, u: &Unit, group_bw: [f64; crate::options::NDIR]) {
    // fio: `err= 5 (file:..., func=io_u error, error=Input/output error)`
    // when the job ended on an error.
    let verror = if u.errno != 0 {
        format!(" (func=io_u error, error={})", super::strerror(u.errno))
    } else {
        String::new()
    };
    let _ = writeln!(
        out,
        "{}: (groupid={}, jobs={}): err={:2}{verror}: pid={}: {}",
        u.name,
        u.groupid,
        u.jobs,
        u.errno,
        u.pid,
        super::ctime(std::time::SystemTime::now())
    );
    if let Some(e) = &u.error {
        let _ = writeln!(out, "  error: {e}");
    }
    dir_block(out, u, 0, group_bw[0]);
    dir_block(out, u, 1, group_bw[1]);
    dir_block(out, u, 2, group_bw[2]);
    // Latency buckets over reads, writes and trims.
    let mut all = LatStat::new();
    for d in &u.dirs {
        all.merge(&d.clat);
    }
    if all.n > 0 {
        let b = latency_buckets(&all);
        for (i, (unit, _, _)) in LAT_BUCKETS.iter().enumerate() {
            let nz: Vec<String> = b[i]
                .iter()
                .filter(|(_, p)| *p > 0.0)
                .map(|(k, p)| format!("{k}={p:.2}%"))
                .collect();
            for chunk in nz.chunks(5) {
                let _ = writeln!(out, "  lat ({unit})   : {}", chunk.join(", "));
            }
        }
    }
    let (usr, sys) = u.cpu_pct();
    let _ = writeln!(
        out,
        "  cpu          : usr={usr:.2}%, sys={sys:.2}%, ctx={}, majf={}, minf={}",
        u.ctx, u.majf, u.minf
    );
    let _ = writeln!(
        out,
        "  IO depths    : {}",
        pct_row(&super::json::LEVEL_KEYS, &u.depth.level)
    );
    let _ = writeln!(
        out,
        "     submit    : {}",
        pct_row(&super::json::BATCH_KEYS, &u.depth.submit)
    );
    let _ = writeln!(
        out,
        "     complete  : {}",
        pct_row(&super::json::BATCH_KEYS, &u.depth.complete)
    );
    let _ = writeln!(
        out,
        "     issued rwts: total={},{},{},0 short=0,0,0,0 dropped=0,0,0,0",
        u.dirs[0].ios, u.dirs[1].ios, u.dirs[2].ios
    );
    if u.job.continue_on_error != 0 {
        let _ = writeln!(
            out,
            "     errors    : total={}, first_error={}/<{}>",
            u.total_err,
            u.first_error,
            super::strerror(u.first_error)
        );
    }
    let _ = writeln!(
        out,
        "     latency   : target={}, window={}, percentile={:.2}%, depth={}",
        u.job.latency_target.map_or(0, |t| t.as_nanos() as u64),
        u.job.latency_window.as_micros() as u64,
        u.job.latency_percentile,
        u.lat_depth
    );
    if let Some(b) = &u.block_infos {
        block_infos(out, b, u.job.percentiles());
    }
    if let Some(r) = &u.steadystate {
        // fio's show_ss_normal: the means of the window, bandwidth from
        // KiB (kB with kb_base=1000) in fio's 4 significant figures.
        let kb = u.job.kb_base.max(1);
        let pow2 = kb.is_power_of_two();
        let unit = if Units::of(&u.job).bits {
            "bit/s"
        } else {
            "B/s"
        };
        let _ = writeln!(
            out,
            "  steadystate  : attained={}, bw={} ({}), iops={}, {}",
            if r.attained { "yes" } else { "no" },
            super::num2str_units(r.bw_mean() / kb, 4, kb, pow2, unit),
            super::num2str_units(r.bw_mean() / kb, 4, kb, !pow2, unit),
            super::num2str_units(r.iops_mean(), 4, 1, false, ""),
            r.criterion_line()
        );
    }
    if u.job.verify != Verify::None {
        let _ = writeln!(out, "     verify    : {} blocks verified", u.verified);
    }
}

pub fn render(us: &[Unit], to_file: bool) -> String {
    let mut out = String::new();
    if to_file {
        let mut seen = Vec::new();
        for u in us {
            if !seen.contains(&u.name) {
                let _ = writeln!(out, "{}", job_header(&u.job, u.groupid as usize));
                seen.push(u.name.clone());
            }
        }
    }
    out.push('\n');
    let mut gids: Vec<u32> = us.iter().map(|u| u.groupid).collect();
    gids.dedup();
    for u in us {
        unit_block(&mut out, u, super::json::group_bw(us, u.groupid));
    }
    for g in gids {
        let _ = writeln!(out, "\nRun status group {g} (all jobs):");
        for (d, name) in [(0, "READ"), (1, "WRITE"), (2, "TRIM")] {
            let members: Vec<&Unit> = us
                .iter()
                .filter(|u| u.groupid == g && u.dirs[d].ios > 0)
                .collect();
            if members.is_empty() {
                continue;
            }
            let name = if members.iter().any(|u| u.mixed) {
                "MIXED"
            } else {
                name
            };
            let total_bw: f64 = members.iter().map(|u| u.bw_bytes(d)).sum();
            let min_bw = members
                .iter()
                .map(|u| u.bw_bytes(d))
                .fold(f64::INFINITY, f64::min);
            let max_bw = members.iter().map(|u| u.bw_bytes(d)).fold(0.0, f64::max);
            let io: u64 = members.iter().map(|u| u.dirs[d].bytes).sum();
            let rmin = members
                .iter()
                .map(|u| u.dir_runtime_ms(d))
                .min()
                .unwrap_or(0);
            let rmax = members
                .iter()
                .map(|u| u.dir_runtime_ms(d))
                .max()
                .unwrap_or(0);
            // A group line takes its units from the group's first job.
            let units = Units::of(&members[0].job);
            let (t1, t2) = units.bw(total_bw);
            let (lo1, lo2) = units.bw(min_bw);
            let (hi1, hi2) = units.bw(max_bw);
            let (io1, io2) = units.bytes(io as f64);
            let _ = writeln!(
                out,
                "{name:>7}: bw={t1} ({t2}), {lo1}-{hi1} ({lo2}-{hi2}), io={io1} ({io2}), run={rmin}-{rmax}msec",
            );
        }
    }
    out
}

/// fio's `show_block_infos` (stat.c): the trim-count percentiles, wrapped
/// as fio wraps them (a new `   |` line when an entry would pass 75
/// columns), then the block states. With every block unwritten fio prints
/// the heading, an empty `   |` and its states line on the same line; its
/// counts there are uninitialised memory in fio 3.33 (zeros in practice):
/// zeros here.
fn block_infos(out: &mut String, infos: &[u32], list: &[f64]) {
    let calc = crate::stats::block_percentiles(infos, list);
    out.push_str("  block lifetime percentiles :\n   |");
    let mut pos = 0;
    let (pcts, states) = calc.unwrap_or_default();
    for (i, (p, v)) in pcts.iter().enumerate() {
        let end = if i + 1 == pcts.len() { '\n' } else { ',' };
        let s = format!(" {p:3.2}th={v}{end}");
        if pos + s.len() > 75 {
            pos = 0;
            out.push_str("\n   |");
        }
        out.push_str(&s);
        pos += s.len();
    }
    out.push_str("        states               :");
    for (i, (name, n)) in crate::stats::BLOCK_STATES.iter().zip(states).enumerate() {
        let end = if i + 1 == states.len() { '\n' } else { ',' };
        out.push_str(&format!(" {name}={n}{end}"));
    }
}
