//! The side-by-side comparison: one row per job (or group), a table and an
//! SVG with latency percentiles per job and IOPS per job.
//!
//! Latency here is fio's `lat` (submission + completion), the fair figure
//! across engines whose submission costs differ.

use plotters::prelude::*;
use serde_json::{json, Value};

use super::Unit;
use crate::error::{Error, Result};

pub struct Row {
    pub name: String,
    pub engine: String,
    pub rw: String,
    pub bs: u64,
    pub qd: u32,
    pub jobs: usize,
    pub iops: f64,
    pub mib_s: f64,
    /// ns
    pub mean: f64,
    pub p50: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    pub ok: bool,
    /// (percentile, ns) for the plot.
    pub curve: Vec<(f64, u64)>,
}

pub fn rows(us: &[Unit]) -> Vec<Row> {
    us.iter()
        .map(|u| {
            let mut lat = crate::stats::LatStat::new();
            for d in &u.dirs {
                lat.merge(&d.lat);
            }
            let ios: u64 = u.dirs.iter().map(|d| d.ios).sum();
            let secs = u.wall.as_secs_f64().max(1e-3);
            let bytes = u.dirs.iter().map(|d| d.bytes).sum::<u64>() as f64;
            let engine = match &u.extras.first() {
                Some(Value::Object(m)) if m.get("iopoll") == Some(&json!(true)) => {
                    format!("{} (hipri)", u.job.ioengine.name())
                }
                _ => u.job.ioengine.name().to_string(),
            };
            let curve = PLOT_PCTS
                .iter()
                .filter(|_| lat.n > 0)
                .map(|p| (*p, lat.percentile(*p)))
                .collect();
            Row {
                name: u.name.clone(),
                engine,
                rw: u.job.rw.name().to_string(),
                bs: u.job.bs[0],
                qd: u.job.iodepth,
                jobs: u.jobs,
                iops: ios as f64 / secs,
                mib_s: bytes / secs / (1 << 20) as f64,
                mean: lat.mean(),
                p50: lat.percentile(50.0),
                p99: lat.percentile(99.0),
                p999: lat.percentile(99.9),
                max: lat.max,
                ok: u.error.is_none(),
                curve,
            }
        })
        .collect()
}

const PLOT_PCTS: [f64; 12] = [
    1.0, 10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99,
];

pub fn rows_json(us: &[Unit]) -> Value {
    Value::Array(
        rows(us)
            .into_iter()
            .map(|r| {
                json!({
                    "jobname": r.name, "ioengine": r.engine, "rw": r.rw, "bs": r.bs,
                    "iodepth": r.qd, "jobs": r.jobs, "iops": r.iops, "mib_s": r.mib_s,
                    "lat_mean_ns": r.mean, "lat_p50_ns": r.p50, "lat_p99_ns": r.p99,
                    "lat_p99.9_ns": r.p999, "lat_max_ns": r.max, "ok": r.ok,
                })
            })
            .collect(),
    )
}

fn us(ns: f64) -> String {
    let u = ns / 1000.0;
    if u < 10.0 {
        format!("{u:.2}")
    } else if u < 1000.0 {
        format!("{u:.1}")
    } else {
        format!("{u:.0}")
    }
}

pub fn table(units: &[Unit]) -> String {
    let rs = rows(units);
    let w = rs.iter().map(|r| r.name.len()).max().unwrap_or(4).max(4);
    let mut out = String::new();
    out.push_str("nvme-bench comparison (lat = submission + completion, in usec)\n");
    out.push_str(&format!(
        "{:<w$}  {:<20} {:<9} {:>6} {:>4} {:>4} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}\n",
        "job",
        "engine",
        "rw",
        "bs",
        "QD",
        "jobs",
        "IOPS",
        "MiB/s",
        "lat avg",
        "p50",
        "p99",
        "p99.9",
        "max"
    ));
    for r in &rs {
        out.push_str(&format!(
            "{:<w$}  {:<20} {:<9} {:>6} {:>4} {:>4} {:>10.0} {:>9.1} {:>9} {:>9} {:>9} {:>9} {:>9}{}\n",
            r.name,
            r.engine,
            r.rw,
            if r.bs % 1024 == 0 { format!("{}k", r.bs / 1024) } else { r.bs.to_string() },
            r.qd,
            r.jobs,
            r.iops,
            r.mib_s,
            us(r.mean),
            us(r.p50 as f64),
            us(r.p99 as f64),
            us(r.p999 as f64),
            us(r.max as f64),
            if r.ok { "" } else { "  (error)" }
        ));
    }
    out
}

/// Two panels: latency percentiles per job (log scale), IOPS per job.
pub fn svg(units: &[Unit], path: &str) -> Result<()> {
    let rs = rows(units);
    let e = |x: String| Error::msg(format!("plot {path}: {x}"));
    let root = SVGBackend::new(path, (1200, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(x.to_string()))?;
    let (left, right) = root.split_horizontally(700);
    let nines = |p: f64| -(1.0 - p / 100.0).log10();
    let xmax = nines(99.99);
    let (mut ymin, mut ymax) = (f64::MAX, 0f64);
    for r in &rs {
        for (_, v) in &r.curve {
            let v = (*v as f64 / 1000.0).max(0.01);
            ymin = ymin.min(v);
            ymax = ymax.max(v);
        }
    }
    if ymin > ymax {
        ymin = 1.0;
        ymax = 10.0;
    }
    let mut ch = ChartBuilder::on(&left)
        .caption(
            "Latency percentiles (submission + completion)",
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..xmax * 1.02, (ymin * 0.8..ymax * 1.25).log_scale())
        .map_err(|x| e(x.to_string()))?;
    ch.configure_mesh()
        .x_desc("percentile")
        .y_desc("latency (usec)")
        .x_labels(6)
        .x_label_formatter(&|x| {
            let p = 100.0 * (1.0 - 10f64.powf(-*x));
            if p < 99.0 {
                format!("{p:.0}")
            } else {
                format!("{p:.2}")
            }
        })
        .draw()
        .map_err(|x| e(x.to_string()))?;
    for (i, r) in rs.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let pts: Vec<(f64, f64)> = r
            .curve
            .iter()
            .map(|(p, v)| (nines(*p), (*v as f64 / 1000.0).max(0.01)))
            .collect();
        ch.draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
            .map_err(|x| e(x.to_string()))?
            .label(format!("{} ({}, QD{})", r.name, r.engine, r.qd))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
        ch.draw_series(pts.into_iter().map(|p| Circle::new(p, 3, color.filled())))
            .map_err(|x| e(x.to_string()))?;
    }
    ch.configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 12))
        .draw()
        .map_err(|x| e(x.to_string()))?;

    // IOPS as horizontal bars: job names on the vertical axis, where long
    // names have room (they overlapped as labels under vertical bars).
    let n = rs.len().max(1) as u32;
    let imax = rs.iter().map(|r| r.iops).fold(1.0, f64::max);
    let name_px = rs
        .iter()
        .map(|r| r.name.len())
        .max()
        .unwrap_or(8)
        .clamp(8, 28) as u32
        * 7
        + 10;
    let mut ch = ChartBuilder::on(&right)
        .caption("IOPS", ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(name_px)
        .build_cartesian_2d(0.0..imax * 1.25, (0..n - 1).into_segmented())
        .map_err(|x| e(x.to_string()))?;
    let names: Vec<String> = rs.iter().map(|r| r.name.clone()).collect();
    ch.configure_mesh()
        .disable_y_mesh()
        .y_labels(n as usize)
        .y_label_formatter(&|y| match y {
            // Row 0 at the top, in the legend's order.
            SegmentValue::CenterOf(i) => names
                .get((n - 1 - *i) as usize)
                .cloned()
                .unwrap_or_default(),
            _ => String::new(),
        })
        .x_labels(5)
        .x_label_formatter(&|x| super::num2str(*x))
        .label_style(("sans-serif", 12))
        .draw()
        .map_err(|x| e(x.to_string()))?;
    for (k, r) in rs.iter().enumerate() {
        let i = n - 1 - k as u32;
        let color = Palette99::pick(k).to_rgba();
        ch.draw_series(std::iter::once(Rectangle::new(
            [
                (0.0, SegmentValue::Exact(i)),
                (r.iops, SegmentValue::Exact(i + 1)),
            ],
            color.filled(),
        )))
        .map_err(|x| e(x.to_string()))?;
        ch.draw_series(std::iter::once(Text::new(
            super::num2str(r.iops),
            (r.iops + imax * 0.02, SegmentValue::CenterOf(i)),
            ("sans-serif", 12),
        )))
        .map_err(|x| e(x.to_string()))?;
    }
    root.present().map_err(|x| e(x.to_string()))?;
    Ok(())
}
