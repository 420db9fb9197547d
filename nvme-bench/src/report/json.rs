//! fio's JSON: the same keys, units and types (checked against Debian's
//! fio by tests/fio_json_compat.rs), extras under `nvme_bench`.

use std::time::SystemTime;

use serde_json::{json, Map, Value};

use super::Unit;
use crate::options::{Globals, JobSet, NDIR};
use crate::stats::{latency_buckets, series, LatStat};

fn lat_json(s: &LatStat, pcts: Option<&[f64]>, bins: bool) -> Value {
    let mut m = Map::new();
    m.insert("min".into(), json!(s.min()));
    m.insert("max".into(), json!(s.max));
    m.insert("mean".into(), json!(s.mean()));
    m.insert("stddev".into(), json!(s.stddev()));
    m.insert("N".into(), json!(s.n));
    if s.n > 0 {
        if let Some(p) = pcts {
            m.insert("percentile".into(), percentiles(s, p));
        }
        if bins {
            let mut b = Map::new();
            for v in s.hist.iter_recorded() {
                let val = s.hist.highest_equivalent(v.value_iterated_to()).min(s.max);
                b.insert(val.to_string(), json!(v.count_at_value()));
            }
            m.insert("bins".into(), Value::Object(b));
        }
    }
    Value::Object(m)
}

/// `{"99.000000": ns, ...}` — fio's "%f" keys.
pub fn percentiles(s: &LatStat, list: &[f64]) -> Value {
    let mut m = Map::new();
    for p in list {
        m.insert(format!("{p:.6}"), json!(s.percentile(*p)));
    }
    Value::Object(m)
}

fn dir_json(u: &Unit, d: usize, group_bw: f64, plus: bool) -> Value {
    let st = &u.dirs[d];
    let bw_bytes = if st.ios == 0 { 0.0 } else { u.bw_bytes(d) };
    let iops = if st.ios == 0 { 0.0 } else { u.iops(d) };
    let (bmin, bmax, bmean, bdev) = series(&st.bw_samples);
    let (imin, imax, imean, idev) = series(&st.iops_samples);
    let job = &u.job;
    let clat_p = job.clat_percentiles.then_some(job.percentiles());
    let lat_p = job.lat_percentiles.then_some(job.percentiles());
    let agg = if group_bw > 0.0 {
        (bmean * 1024.0 * u.jobs as f64 / group_bw * 100.0).min(100.0)
    } else {
        0.0
    };
    let v = json!({
        "io_bytes": st.bytes,
        "io_kbytes": st.bytes / 1024,
        "bw_bytes": bw_bytes as u64,
        "bw": (bw_bytes / 1024.0) as u64,
        "iops": iops,
        "runtime": if st.ios == 0 { 0 } else { u.dir_runtime_ms(d) },
        "total_ios": st.ios,
        "short_ios": 0,
        "drop_ios": 0,
        "slat_ns": lat_json(&st.slat, None, false),
        "clat_ns": lat_json(&st.clat, clat_p, plus),
        "lat_ns": lat_json(&st.lat, lat_p, plus && job.lat_percentiles),
        "bw_min": bmin as u64,
        "bw_max": bmax as u64,
        "bw_agg": if st.ios == 0 { 0.0 } else { agg },
        "bw_mean": bmean,
        "bw_dev": bdev,
        "bw_samples": st.bw_samples.len() as u64,
        "iops_min": imin as u64,
        "iops_max": imax as u64,
        "iops_mean": imean,
        "iops_stddev": idev,
        "iops_samples": st.iops_samples.len() as u64,
    });
    with_prios(v, st, job, plus)
}

/// fio's per-priority statistics (stat.c add_ddir_status_json): with two or
/// more priorities that completed I/Os, a "prios" array after "lat_ns",
/// one object per such priority in fio's order: "prioclass", "prio", and
/// its latencies under "clat_ns" ("lat_ns" with `lat_percentiles`).
fn with_prios(
    v: Value,
    st: &crate::stats::DirStats,
    job: &crate::options::Job,
    plus: bool,
) -> Value {
    if st.prios_with_samples() < 2 {
        return v;
    }
    let Value::Object(m) = v else { return v };
    let pcts = (job.clat_percentiles || job.lat_percentiles).then_some(job.percentiles());
    let name = if job.lat_percentiles {
        "lat_ns"
    } else {
        "clat_ns"
    };
    let arr: Vec<Value> = st
        .prios
        .iter()
        .filter(|(_, s)| s.n > 0)
        .map(|(p, s)| {
            let mut o = Map::new();
            o.insert("prioclass".into(), json!(u64::from(p >> 13)));
            o.insert("prio".into(), json!(u64::from(p & 7)));
            o.insert(name.into(), lat_json(s, pcts, plus));
            Value::Object(o)
        })
        .collect();
    let mut out = Map::new();
    for (k, val) in m {
        let after = k == "lat_ns";
        out.insert(k, val);
        if after {
            out.insert("prios".into(), Value::Array(arr.clone()));
        }
    }
    Value::Object(out)
}

fn pct_map(keys: &[&str], counts: &[u64; 7]) -> Value {
    let total: u64 = counts.iter().sum::<u64>().max(1);
    let mut m = Map::new();
    for (k, c) in keys.iter().zip(counts) {
        m.insert(k.to_string(), json!(*c as f64 * 100.0 / total as f64));
    }
    Value::Object(m)
}

pub const LEVEL_KEYS: [&str; 7] = ["1", "2", "4", "8", "16", "32", ">=64"];
pub const BATCH_KEYS: [&str; 7] = ["0", "4", "8", "16", "32", "64", ">=64"];

/// "job options": what the job's section set, plus (always) iodepth,
/// numjobs, bs, rw and ioengine, so fio-plot and friends find them.
fn job_options(u: &Unit) -> Value {
    let j = &u.job;
    let mut m = Map::new();
    for (k, v) in &j.set_options {
        // fio lists an option under its own name, not the alias written.
        m.insert(crate::options::canonical(k).to_string(), json!(v));
    }
    m.insert("name".into(), json!(j.name));
    let bs = if j.bs[0] == j.bs[1] {
        j.bs[0].to_string()
    } else {
        format!("{},{}", j.bs[0], j.bs[1])
    };
    let always = [
        ("iodepth", j.iodepth.to_string()),
        ("numjobs", j.numjobs.to_string()),
        ("bs", bs),
        ("rw", j.rw.name().to_string()),
        ("ioengine", j.ioengine.name().to_string()),
    ];
    for (k, v) in always {
        m.entry(k.to_string()).or_insert(json!(v));
    }
    Value::Object(m)
}

fn lat_buckets_json(u: &Unit) -> (Value, Value, Value) {
    // Over reads, writes and trims together (fio's io_u_lat).
    let mut all = LatStat::new();
    for d in &u.dirs {
        all.merge(&d.clat);
    }
    let b = latency_buckets(&all);
    let to = |v: &Vec<(String, f64)>| {
        let mut m = Map::new();
        for (k, p) in v {
            m.insert(k.clone(), json!(*p));
        }
        Value::Object(m)
    };
    (to(&b[0]), to(&b[1]), to(&b[2]))
}

pub fn job_json(u: &Unit, group_bw: [f64; NDIR], plus: bool) -> Value {
    let (usr, sys) = u.cpu_pct();
    let (lns, lus, lms) = lat_buckets_json(u);
    let job = &u.job;
    let mut extras = Map::new();
    extras.insert("version".into(), json!(env!("CARGO_PKG_VERSION")));
    extras.insert("ioengine".into(), json!(job.ioengine.name()));
    extras.insert("jobs".into(), json!(u.jobs));
    extras.insert("cpus_allowed".into(), json!(u.cpus));
    extras.insert(
        "engine".into(),
        if u.extras.len() == 1 {
            u.extras[0].clone()
        } else {
            Value::Array(u.extras.clone())
        },
    );
    if let Some(e) = &u.error {
        extras.insert("error_text".into(), json!(e));
    }
    if job.verify != crate::options::Verify::None {
        extras.insert("verified_blocks".into(), json!(u.verified));
    }
    // Total-latency percentiles always (fio has them only with lat_percentiles).
    for (d, name) in [(0, "read"), (1, "write"), (2, "trim")] {
        let name = if u.mixed { "mixed" } else { name };
        if u.dirs[d].ios > 0 {
            extras.insert(
                format!("{name}_lat_percentile_ns"),
                percentiles(&u.dirs[d].lat, job.percentiles()),
            );
        }
    }
    let mut m = Map::new();
    m.insert("jobname".into(), json!(u.name));
    m.insert("groupid".into(), json!(u.groupid));
    m.insert("error".into(), json!(u.errno));
    m.insert("eta".into(), json!(0));
    // fio: seconds since its genesis (the jobs' start), rounded up, when
    // the report is written; the same for every job.
    let elapsed = crate::run::elapsed_since_genesis()
        .unwrap_or_else(|| (u.elapsed.as_millis() as u64).div_ceil(1000));
    m.insert("elapsed".into(), json!(elapsed));
    m.insert("job options".into(), job_options(u));
    if u.mixed {
        // fio: `mixed` in place of read, write, trim and sync.
        m.insert("mixed".into(), dir_json(u, 0, group_bw[0], plus));
    } else {
        m.insert("read".into(), dir_json(u, 0, group_bw[0], plus));
        m.insert("write".into(), dir_json(u, 1, group_bw[1], plus));
        m.insert("trim".into(), dir_json(u, 2, group_bw[2], plus));
        m.insert(
            "sync".into(),
            json!({"total_ios": 0, "lat_ns": {"min": 0, "max": 0, "mean": 0.0, "stddev": 0.0, "N": 0}}),
        );
    }
    m.insert("job_runtime".into(), json!(u.runtime_ms()));
    m.insert("usr_cpu".into(), json!(usr));
    m.insert("sys_cpu".into(), json!(sys));
    m.insert("ctx".into(), json!(u.ctx));
    m.insert("majf".into(), json!(u.majf));
    m.insert("minf".into(), json!(u.minf));
    m.insert("iodepth_level".into(), pct_map(&LEVEL_KEYS, &u.depth.level));
    m.insert(
        "iodepth_submit".into(),
        pct_map(&BATCH_KEYS, &u.depth.submit),
    );
    m.insert(
        "iodepth_complete".into(),
        pct_map(&BATCH_KEYS, &u.depth.complete),
    );
    m.insert("latency_ns".into(), lns);
    m.insert("latency_us".into(), lus);
    m.insert("latency_ms".into(), lms);
    if job.continue_on_error != 0 {
        // fio adds these (after latency_ms) only with continue_on_error.
        m.insert("total_err".into(), json!(u.total_err));
        m.insert("first_error".into(), json!(u.first_error));
    }
    // fio's units: the target in ns, the window in µs.
    m.insert("latency_depth".into(), json!(u.lat_depth));
    m.insert(
        "latency_target".into(),
        json!(job.latency_target.map_or(0, |t| t.as_nanos() as u64)),
    );
    m.insert("latency_percentile".into(), json!(job.latency_percentile));
    m.insert(
        "latency_window".into(),
        json!(job.latency_window.as_micros() as u64),
    );
    // block_error_percentiles: fio's `block` object (stat.c
    // show_thread_status_json), only when some block is not unwritten.
    if let Some((pcts, states)) = u
        .block_infos
        .as_ref()
        .and_then(|b| crate::stats::block_percentiles(b, job.percentiles()))
    {
        let mut p = Map::new();
        for (k, v) in pcts {
            p.insert(format!("{k:.6}"), json!(v));
        }
        let mut st = Map::new();
        for (name, n) in crate::stats::BLOCK_STATES.iter().zip(states) {
            st.insert((*name).into(), json!(n));
        }
        m.insert(
            "block".into(),
            json!({ "percentiles": Value::Object(p), "states": Value::Object(st) }),
        );
    }
    if let Some(r) = &u.steadystate {
        m.insert("steadystate".into(), steadystate_json(r));
    }
    m.insert("nvme_bench".into(), Value::Object(extras));
    Value::Object(m)
}

/// fio's `steadystate` object (stat.c show_thread_status_json), its keys
/// in fio's order. fio writes a NaN as `-nan` (not JSON); serde_json
/// writes null.
fn steadystate_json(r: &crate::steadystate::Report) -> Value {
    let (iops, bw) = r.ordered();
    let mut data = Map::new();
    data.insert("bw_mean".into(), json!(r.bw_mean()));
    data.insert("iops_mean".into(), json!(r.iops_mean()));
    data.insert("iops".into(), json!(iops));
    data.insert("bw".into(), json!(bw));
    let mut m = Map::new();
    m.insert("ss".into(), json!(r.spec_text()));
    m.insert("duration".into(), json!(r.dur as i32));
    m.insert("attained".into(), json!(i32::from(r.attained)));
    m.insert("criterion".into(), json!(r.criterion_text()));
    m.insert("max_deviation".into(), json!(r.deviation));
    m.insert("slope".into(), json!(r.slope));
    m.insert("data".into(), Value::Object(data));
    Value::Object(m)
}

/// Sum of the bandwidths (bytes/s) per group and direction.
pub fn group_bw(us: &[Unit], gid: u32) -> [f64; NDIR] {
    let mut b = [0.0; NDIR];
    for u in us.iter().filter(|u| u.groupid == gid) {
        for (d, x) in b.iter_mut().enumerate() {
            if u.dirs[d].ios > 0 {
                *x += u.bw_bytes(d);
            }
        }
    }
    b
}

pub fn document(g: &Globals, set: &JobSet, us: &[Unit], started: SystemTime) -> Value {
    let ts = started
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let mut m = Map::new();
    m.insert(
        "fio version".into(),
        json!(format!("nvme-bench-{}", env!("CARGO_PKG_VERSION"))),
    );
    m.insert("timestamp".into(), json!(ts.as_secs()));
    m.insert("timestamp_ms".into(), json!(ts.as_millis() as u64));
    m.insert("time".into(), json!(super::ctime(started)));
    if !set.global_options.is_empty() {
        let mut go = Map::new();
        for (k, v) in &set.global_options {
            go.insert(crate::options::canonical(k).to_string(), json!(v));
        }
        m.insert("global options".into(), Value::Object(go));
    }
    let jobs: Vec<Value> = us
        .iter()
        .map(|u| job_json(u, group_bw(us, u.groupid), g.formats.json_plus))
        .collect();
    m.insert("jobs".into(), Value::Array(jobs));
    m.insert(
        "nvme_bench".into(),
        json!({
            "version": env!("CARGO_PKG_VERSION"),
            "comparison": super::compare::rows_json(us),
        }),
    );
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_keys_are_fio_format() {
        let mut s = LatStat::new();
        for i in 1..=1000 {
            s.record(i * 1000);
        }
        let v = percentiles(&s, &crate::options::DEFAULT_PERCENTILES);
        let o = v.as_object().unwrap();
        assert!(o.contains_key("99.000000"));
        assert!(o.contains_key("99.990000"));
        assert!(o.contains_key("1.000000"));
        assert_eq!(o.len(), 17);
        let p99 = o["99.000000"].as_u64().unwrap();
        assert!((989_000..=991_000).contains(&p99), "{p99}");
    }
}
