//! fio's terse output (`--minimal`, `--output-format=terse`): one line of
//! `;`-separated fields per job (or group_reporting group), versions 2 to
//! 5 (fio 3.33's stat.c `show_thread_status_terse_all`; 3 is the default).
//!
//! Field count and order are fio's; figures are ours. Field 2 of versions
//! 3-5 (fio's version string) says `nvme-bench-VERSION`, as the JSON's
//! "fio version" does.

use std::fmt::Write;

use super::Unit;
use crate::diskstats::DiskUtil;
use crate::stats::{latency_bucket_counts, series, LatStat};

/// fio's FIO_IO_U_LIST_MAX_LEN: the percentile fields per direction.
const PLIST_LEN: usize = 20;

/// fio's `rs->agg[ddir]` of a group: its bytes over its longest runtime
/// (bytes/s, integer arithmetic as fio's).
fn group_agg(us: &[Unit], gid: u32, d: usize) -> u64 {
    let members = us.iter().filter(|u| u.groupid == gid && u.dirs[d].ios > 0);
    let (mut bytes, mut max_run) = (0u64, 0u64);
    for u in members {
        bytes += u.dirs[d].bytes;
        max_run = max_run.max(u.dir_runtime_ms(d));
    }
    bytes.saturating_mul(1000).checked_div(max_run).unwrap_or(0)
}

/// `;min;max;mean;dev` in microseconds (zeros without samples).
fn lat_fields(out: &mut String, s: &LatStat) {
    if s.n == 0 {
        out.push_str(";0;0;0.000000;0.000000");
    } else {
        let _ = write!(
            out,
            ";{};{};{:.6};{:.6}",
            s.min() / 1000,
            s.max / 1000,
            s.mean() / 1000.0,
            s.stddev() / 1000.0
        );
    }
}

/// One direction (fio's `show_ddir_status_terse`): 0 read, 1 write, 2
/// trim; `None` gives fio's fields for no I/O.
fn ddir(out: &mut String, u: &Unit, d: Option<usize>, agg: u64, ver: u8) {
    let empty = crate::stats::DirStats::default();
    let st = d.map_or(&empty, |d| &u.dirs[d]);
    let runt = match d {
        Some(d) if st.ios > 0 => u.dir_runtime_ms(d),
        _ => 0,
    };
    let bw = st.bytes.saturating_mul(1000).checked_div(runt).unwrap_or(0) / 1024;
    let iops = st.ios.saturating_mul(1000).checked_div(runt).unwrap_or(0);
    let _ = write!(out, ";{};{bw};{iops};{runt}", st.bytes >> 10);
    lat_fields(out, &st.slat);
    lat_fields(out, &st.clat);
    let job = &u.job;
    let pct_of = if job.lat_percentiles {
        Some(&st.lat)
    } else if job.clat_percentiles {
        Some(&st.clat)
    } else {
        None
    };
    let list = match pct_of {
        Some(_) => job.percentiles(),
        None => &[],
    };
    for i in 0..PLIST_LEN {
        match (pct_of, list.get(i)) {
            (Some(s), Some(p)) => {
                let _ = write!(out, ";{p:.6}%={}", s.percentile(*p) / 1000);
            }
            _ => out.push_str(";0%=0"),
        }
    }
    lat_fields(out, &st.lat);
    if st.bw_samples.is_empty() {
        out.push_str(";0;0;0.000000%;0.000000;0.000000");
    } else {
        let (min, max, mean, dev) = series(&st.bw_samples);
        let mut p_of_agg = 100.0;
        if agg > 0 {
            p_of_agg = (mean * 100.0 / (agg / 1024) as f64).min(100.0);
        }
        let _ = write!(
            out,
            ";{};{};{p_of_agg:.6}%;{mean:.6};{dev:.6}",
            min as u64, max as u64
        );
    }
    if ver == 5 {
        let _ = write!(out, ";{}", st.bw_samples.len());
        if st.iops_samples.is_empty() {
            out.push_str(";0;0;0.000000;0.000000;0");
        } else {
            let (min, max, mean, dev) = series(&st.iops_samples);
            let _ = write!(
                out,
                ";{};{};{mean:.6};{dev:.6};{}",
                min as u64,
                max as u64,
                st.iops_samples.len()
            );
        }
    }
}

/// fio's `stat_calc_dist` (depths) and `stat_calc_lat` (latency buckets):
/// percent of the total, raised to `floor` when a bucket is not empty.
fn pct(c: u64, total: u64, floor: f64) -> f64 {
    if total == 0 {
        return 0.0;
    }
    let p = c as f64 * 100.0 / total as f64;
    if p < floor && c > 0 {
        floor
    } else {
        p
    }
}

/// One job's terse line (with its newline).
pub fn line(u: &Unit, us: &[Unit], disks: &[DiskUtil], ver: u8) -> String {
    let mut out = String::new();
    if ver == 2 {
        let _ = write!(out, "2;{};{};{}", u.name, u.groupid, u.errno);
    } else {
        let _ = write!(
            out,
            "{ver};nvme-bench-{};{};{};{}",
            env!("CARGO_PKG_VERSION"),
            u.name,
            u.groupid,
            u.errno
        );
    }
    ddir(&mut out, u, Some(0), group_agg(us, u.groupid, 0), ver);
    if !u.mixed {
        ddir(&mut out, u, Some(1), group_agg(us, u.groupid, 1), ver);
        if ver != 3 {
            ddir(&mut out, u, Some(2), group_agg(us, u.groupid, 2), ver);
        }
    }
    let (usr, sys) = u.cpu_pct();
    let _ = write!(out, ";{usr:.6}%;{sys:.6}%;{};{};{}", u.ctx, u.majf, u.minf);
    // IO depths, as the normal and JSON reports count them.
    let depth_total: u64 = u.depth.level.iter().sum();
    for c in u.depth.level {
        let _ = write!(out, ";{:.1}%", pct(c, depth_total, 0.1));
    }
    // Latency buckets over reads, writes and trims; the nanosecond ones are
    // folded into the first microsecond one (fio's stat_calc_lat_nu).
    let mut all = LatStat::new();
    for d in &u.dirs {
        all.merge(&d.clat);
    }
    let counts = latency_bucket_counts(&all);
    let total = all.n;
    let ns: u64 = counts[0].iter().sum();
    for (i, c) in counts[1].iter().enumerate() {
        let mut p = pct(*c, total, 0.01);
        if i == 0 && total > 0 {
            p += 100.0 * ns as f64 / total as f64;
        }
        let _ = write!(out, ";{p:.2}%");
    }
    for c in &counts[2] {
        let _ = write!(out, ";{:.2}%", pct(*c, total, 0.01));
    }
    if ver >= 3 {
        for d in disks {
            let _ = write!(
                out,
                ";{};{};{};{};{};{};{};{};{:.2}%",
                d.name,
                d.ios[0],
                d.ios[1],
                d.merges[0],
                d.merges[1],
                d.ticks[0],
                d.ticks[1],
                d.in_queue,
                d.util()
            );
        }
    }
    if u.job.continue_on_error != 0 {
        let _ = write!(out, ";{};{}", u.total_err, u.first_error);
    }
    if let Some(desc) = u.job.description.as_deref().filter(|d| !d.is_empty()) {
        if ver == 2 {
            out.push('\n');
        }
        let _ = write!(out, ";{desc}");
    }
    out.push('\n');
    out
}

/// Every unit's line, in report order.
pub fn render(us: &[Unit], disks: &[DiskUtil], ver: u8) -> String {
    us.iter().map(|u| line(u, us, disks, ver)).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn pct_floors_like_fio() {
        assert_eq!(super::pct(1, 10_000, 0.1), 0.1);
        assert_eq!(super::pct(0, 10_000, 0.1), 0.0);
        assert_eq!(super::pct(5, 10, 0.1), 50.0);
        assert_eq!(super::pct(3, 0, 0.1), 0.0);
    }
}
