//! Latency and throughput statistics: HdrHistogram from 1 ns (auto-resizing,
//! so a 60 s outlier is recorded as such), exact min/max/mean/stddev.

use hdrhistogram::Histogram;

/// One latency series (slat, clat or lat) in nanoseconds.
///
/// The job loop records with [`LatStat::record_fast`]: a value below
/// [`FAST_LIMIT`] only increments a counter at the index the HdrHistogram
/// would use (same layout: 1 ns lowest, 3 significant digits), and
/// [`LatStat::settle`] later moves the counts into `hist` with one
/// `record_n` per non-empty bucket. The histogram is then the same, bucket
/// for bucket, as one recorded value by value (the `fast_path_is_exact`
/// test), for a small fraction of the cost per sample.
#[derive(Clone, Debug)]
pub struct LatStat {
    pub hist: Histogram<u64>,
    /// Counts not yet in `hist`, by HdrHistogram index (empty until used).
    /// Samples held here: `n - hist.len()`.
    fast: Vec<u64>,
    pub n: u64,
    pub min: u64,
    pub max: u64,
    sum: u128,
    sumsq: u128,
}

impl Default for LatStat {
    fn default() -> Self {
        LatStat::new()
    }
}

impl LatStat {
    pub fn new() -> Self {
        // 1 ns .. 1 h to start with, 3 significant digits; auto-resize past it.
        let mut hist = Histogram::new_with_bounds(1, 3_600_000_000_000, 3)
            .expect("static histogram bounds are valid");
        hist.auto(true);
        LatStat {
            hist,
            fast: Vec::new(),
            n: 0,
            min: u64::MAX,
            max: 0,
            sum: 0,
            sumsq: 0,
        }
    }

    /// Record a sample straight into the histogram (tests compare the job
    /// loop's [`LatStat::record_fast`] with it).
    #[cfg(test)]
    pub fn record(&mut self, ns: u64) {
        let v = ns.max(1);
        // auto-resize: recording cannot fail for any u64 short of overflow.
        let _ = self.hist.record(v);
        self.n += 1;
        self.min = self.min.min(ns);
        self.max = self.max.max(ns);
        self.sum += u128::from(ns);
        self.sumsq += u128::from(ns) * u128::from(ns);
    }

    /// As [`LatStat::record`], but deferring the histogram part until
    /// [`LatStat::settle`]; `hist` and the percentiles are incomplete until then.
    #[inline(always)]
    pub fn record_fast(&mut self, ns: u64) {
        let v = ns.max(1);
        // HdrHistogram's index_for with unit magnitude 0 and 2048
        // sub-buckets (3 significant digits): bucket = 53 - lz(v | 2047),
        // index = ((bucket + 1) << 10) + (v >> bucket) - 1024. Past
        // FAST_LIMIT the index is past `fast` (and `fast` is empty until
        // the first sample): the slow path.
        let bucket = 53u32.wrapping_sub((v | 2047).leading_zeros());
        let idx = ((((bucket + 1) as u64) << 10) + (v >> (bucket & 63)) - 1024) as usize;
        match self.fast.get_mut(idx) {
            Some(c) => *c += 1,
            None => self.record_slow(v, idx),
        }
        self.n += 1;
        self.min = self.min.min(ns);
        self.max = self.max.max(ns);
        self.sum += u128::from(ns);
        self.sumsq += u128::from(ns) * u128::from(ns);
    }

    #[cold]
    #[inline(never)]
    fn record_slow(&mut self, v: u64, idx: usize) {
        if v < FAST_LIMIT {
            if self.fast.is_empty() {
                self.fast = vec![0; FAST_LEN];
            }
            self.fast[idx] += 1;
        } else {
            let _ = self.hist.record(v);
        }
    }

    /// Move what [`LatStat::record_fast`] counted into `hist`.
    pub fn settle(&mut self) {
        if self.is_settled() {
            return;
        }
        for (i, c) in self.fast.iter_mut().enumerate() {
            if *c > 0 {
                // HdrHistogram's value_for: the lowest value of the bucket,
                // which maps back to the same index.
                let b = (i >> 10) as i64 - 1;
                let (b, sub) = if b < 0 {
                    (0, i & 1023)
                } else {
                    (b as u32, (i & 1023) + 1024)
                };
                let _ = self.hist.record_n((sub as u64) << b, *c);
                *c = 0;
            }
        }
    }

    /// Nothing recorded with [`LatStat::record_fast`] is missing from `hist`.
    pub fn is_settled(&self) -> bool {
        self.n == self.hist.len()
    }

    pub fn merge(&mut self, o: &LatStat) {
        debug_assert!(o.is_settled() && self.is_settled());
        let _ = self.hist.add(&o.hist);
        self.n += o.n;
        self.min = self.min.min(o.min);
        self.max = self.max.max(o.max);
        self.sum += o.sum;
        self.sumsq += o.sumsq;
    }

    pub fn reset(&mut self) {
        *self = LatStat::new();
    }

    pub fn min(&self) -> u64 {
        if self.n == 0 {
            0
        } else {
            self.min
        }
    }
    pub fn mean(&self) -> f64 {
        if self.n == 0 {
            0.0
        } else {
            self.sum as f64 / self.n as f64
        }
    }
    /// Sample standard deviation (fio divides by N-1).
    pub fn stddev(&self) -> f64 {
        if self.n < 2 {
            return 0.0;
        }
        let n = self.n as f64;
        let mean = self.sum as f64 / n;
        let var = (self.sumsq as f64 - n * mean * mean) / (n - 1.0);
        var.max(0.0).sqrt()
    }
    /// Value at percentile `p` (0..100), in ns.
    pub fn percentile(&self, p: f64) -> u64 {
        debug_assert!(self.is_settled());
        if self.n == 0 {
            return 0;
        }
        self.hist
            .value_at_quantile(p / 100.0)
            .min(self.max)
            .max(self.min)
    }
}

/// Values below this go through [`LatStat::record_fast`]'s counters
/// (2^24 ns, 16.8 ms: HdrHistogram indexes below [`FAST_LEN`]); larger
/// ones, rare, are recorded into the histogram at once.
pub const FAST_LIMIT: u64 = 1 << 24;
const FAST_LEN: usize = 15 << 10;

/// fio's latency buckets: (unit label, bucket upper bounds in that unit, ns per unit).
pub const LAT_BUCKETS: [(&str, &[u64], u64); 3] = [
    ("nsec", &[2, 4, 10, 20, 50, 100, 250, 500, 750, 1000], 1),
    ("usec", &[2, 4, 10, 20, 50, 100, 250, 500, 750, 1000], 1_000),
    (
        "msec",
        &[2, 4, 10, 20, 50, 100, 250, 500, 750, 1000, 2000],
        1_000_000,
    ),
];

/// I/Os per fio latency bucket: [ns (10), us (10), ms (11) + ">=2000"].
pub fn latency_bucket_counts(s: &LatStat) -> [Vec<u64>; 3] {
    let mut counts: [Vec<u64>; 3] = [vec![0; 10], vec![0; 10], vec![0; 12]];
    for v in s.hist.iter_recorded() {
        let ns = s.hist.highest_equivalent(v.value_iterated_to()).min(s.max);
        let c = v.count_at_value();
        let mut placed = false;
        // A value belongs to the first unit whose top bucket it is below
        // (fio: nsec < 1000, usec < 1000 us, msec < 2000 ms, then ">=2000").
        'outer: for (u, (_, bounds, mult)) in LAT_BUCKETS.iter().enumerate() {
            for (i, b) in bounds.iter().enumerate() {
                if ns < b * mult {
                    counts[u][i] += c;
                    placed = true;
                    break 'outer;
                }
            }
        }
        if !placed {
            counts[2][11] += c;
        }
    }
    counts
}

/// Percent of I/Os per fio latency bucket: [ns buckets, us buckets, ms buckets + ">=2000"].
pub fn latency_buckets(s: &LatStat) -> [Vec<(String, f64)>; 3] {
    let counts = latency_bucket_counts(s);
    let total: u64 = s.n.max(1);
    let pct = |c: u64| {
        let p = c as f64 * 100.0 / total as f64;
        if c > 0 && p < 0.01 {
            0.01
        } else {
            p
        }
    };
    let mut out: [Vec<(String, f64)>; 3] = [Vec::new(), Vec::new(), Vec::new()];
    for (u, (_, bounds, _)) in LAT_BUCKETS.iter().enumerate() {
        for (i, b) in bounds.iter().enumerate() {
            out[u].push((b.to_string(), pct(counts[u][i])));
        }
    }
    out[2].push((">=2000".to_string(), pct(counts[2][11])));
    out
}

/// Counts per fio depth bucket: 1, 2, 4, 8, 16, 32, >=64 (`iodepth_level`),
/// and 0, 4, 8, 16, 32, 64, >=64 (`iodepth_submit` / `iodepth_complete`).
#[derive(Clone, Debug, Default)]
pub struct DepthHist {
    pub level: [u64; 7],
    pub submit: [u64; 7],
    pub complete: [u64; 7],
}

impl DepthHist {
    #[inline]
    pub fn level_idx(depth: usize) -> usize {
        match depth {
            0..=1 => 0,
            2..=3 => 1,
            4..=7 => 2,
            8..=15 => 3,
            16..=31 => 4,
            32..=63 => 5,
            _ => 6,
        }
    }
    #[inline]
    pub fn batch_idx(n: usize) -> usize {
        match n {
            0 => 0,
            1..=4 => 1,
            5..=8 => 2,
            9..=16 => 3,
            17..=32 => 4,
            33..=64 => 5,
            _ => 6,
        }
    }
    pub fn merge(&mut self, o: &DepthHist) {
        for i in 0..7 {
            self.level[i] += o.level[i];
            self.submit[i] += o.submit[i];
            self.complete[i] += o.complete[i];
        }
    }
}

/// Per-direction figures of one job.
#[derive(Clone, Debug, Default)]
pub struct DirStats {
    pub slat: LatStat,
    pub clat: LatStat,
    pub lat: LatStat,
    pub ios: u64,
    pub bytes: u64,
    /// Bandwidth samples in KiB/s and IOPS samples, one per averaging window.
    pub bw_samples: Vec<f64>,
    pub iops_samples: Vec<f64>,
    /// fio's clat_prio: completion latency (total latency with
    /// `lat_percentiles`) per I/O priority, for jobs with cmdprio options;
    /// the job's default priority first, then each cmdprio priority in the
    /// order fio's cmdprio.c assigns them. Empty otherwise.
    pub prios: Vec<(u16, LatStat)>,
}

impl DirStats {
    pub fn reset(&mut self) {
        let prios: Vec<(u16, LatStat)> = self
            .prios
            .iter()
            .map(|(p, _)| (*p, LatStat::new()))
            .collect();
        *self = DirStats::default();
        self.prios = prios;
    }
    /// Record a latency sample of priority `prio` (no-op without cmdprio).
    #[inline]
    pub fn record_prio(&mut self, prio: u16, ns: u64) {
        if let Some((_, s)) = self.prios.iter_mut().find(|(p, _)| *p == prio) {
            s.record_fast(ns);
        }
    }
    /// The priorities with samples, fio's `get_nr_prios_with_samples`.
    pub fn prios_with_samples(&self) -> usize {
        self.prios.iter().filter(|(_, s)| s.n > 0).count()
    }
    pub fn merge(&mut self, o: &DirStats) {
        // fio's clat_prio_stats_copy / alloc_or_get_clat_prio_index.
        for (p, st) in &o.prios {
            match self.prios.iter_mut().find(|(q, _)| q == p) {
                Some((_, mine)) => mine.merge(st),
                None => self.prios.push((*p, st.clone())),
            }
        }
        self.slat.merge(&o.slat);
        self.clat.merge(&o.clat);
        self.lat.merge(&o.lat);
        self.ios += o.ios;
        self.bytes += o.bytes;
        // Group: samples of concurrent jobs add up window by window.
        let n = self.bw_samples.len().max(o.bw_samples.len());
        self.bw_samples.resize(n, 0.0);
        self.iops_samples.resize(n, 0.0);
        for i in 0..o.bw_samples.len() {
            self.bw_samples[i] += o.bw_samples[i];
            self.iops_samples[i] += o.iops_samples[i];
        }
    }
}

/// min, max, mean, sample stddev of a series.
pub fn series(v: &[f64]) -> (f64, f64, f64, f64) {
    if v.is_empty() {
        return (0.0, 0.0, 0.0, 0.0);
    }
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    let sd = if v.len() > 1 {
        (v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (v.len() - 1) as f64).sqrt()
    } else {
        0.0
    };
    (min, max, mean, sd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn does_not_saturate() {
        let mut s = LatStat::new();
        for _ in 0..99 {
            s.record(10_000);
        }
        s.record(90_000_000_000); // 90 s
        assert_eq!(s.max, 90_000_000_000);
        let p = s.percentile(99.99);
        assert!(p > 89_000_000_000, "{p}");
        assert!(s.percentile(50.0) < 10_100);
        let mut big = LatStat::new();
        big.record(20_000_000_000_000); // 5.5 h: past the initial range
        assert!(big.percentile(100.0) >= 19_000_000_000_000);
    }

    #[test]
    fn fast_path_is_exact() {
        // Values across every fast bucket range and past FAST_LIMIT,
        // recorded both ways: same histogram bucket for bucket, same figures.
        let mut a = LatStat::new();
        let mut b = LatStat::new();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut vals = vec![0, 1, 2, 1023, 1024, 2047, 2048, 2049, 4095, 4096, 1 << 20];
        vals.extend([FAST_LIMIT - 1, FAST_LIMIT, FAST_LIMIT + 1, 1 << 40]);
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Log-uniform over 1 ns .. 2^36 ns.
            vals.push((x >> 28) >> (x % 37));
        }
        for &v in &vals {
            a.record(v);
            b.record_fast(v);
        }
        assert!(!b.is_settled());
        b.settle();
        assert!(b.is_settled());
        let ra: Vec<(u64, u64)> = a
            .hist
            .iter_recorded()
            .map(|v| (v.value_iterated_to(), v.count_at_value()))
            .collect();
        let rb: Vec<(u64, u64)> = b
            .hist
            .iter_recorded()
            .map(|v| (v.value_iterated_to(), v.count_at_value()))
            .collect();
        assert_eq!(ra, rb);
        for p in [1.0, 10.0, 50.0, 90.0, 99.0, 99.5, 99.9, 99.99, 100.0] {
            assert_eq!(a.percentile(p), b.percentile(p), "p{p}");
        }
        assert_eq!((a.n, a.min, a.max), (b.n, b.min, b.max));
        assert_eq!(a.mean(), b.mean());
        assert_eq!(a.stddev(), b.stddev());
        assert_eq!(a.hist.len(), b.hist.len());
    }

    #[test]
    fn mean_and_stddev() {
        let mut s = LatStat::new();
        for v in [100, 200, 300] {
            s.record(v);
        }
        assert_eq!(s.mean(), 200.0);
        assert!((s.stddev() - 100.0).abs() < 1e-9);
        assert_eq!(s.min(), 100);
    }

    #[test]
    fn buckets_like_fio() {
        let mut s = LatStat::new();
        s.record(300); // ns: 500 bucket
        s.record(30_000); // us: 50 bucket
        s.record(3_000_000); // ms: 4 bucket
        s.record(5_000_000_000); // >=2000 ms
        let b = latency_buckets(&s);
        let get = |u: usize, k: &str| b[u].iter().find(|x| x.0 == k).unwrap().1;
        assert_eq!(get(0, "500"), 25.0);
        assert_eq!(get(1, "50"), 25.0);
        assert_eq!(get(2, "4"), 25.0);
        assert_eq!(get(2, ">=2000"), 25.0);
    }
}

/// fio's `MAX_NR_BLOCK_INFOS`: `block_error_percentiles` keeps at most
/// this many trim blocks.
pub const MAX_BLOCK_INFOS: usize = 8192;

/// fio's block states (stat.h `enum block_info_state`), in its order, with
/// the names its reports give them. fio 3.33 never sets `written`.
pub const BLOCK_STATES: [&str; 5] = [
    "unwritten",
    "trimmed",
    "written",
    "trim failure",
    "write failure",
];
const BLOCK_TRIMMED: u32 = 1;
const BLOCK_TRIM_FAILURE: u32 = 3;
const STATE_SHIFT: u32 = 29;

fn block_state(b: u32) -> u32 {
    b >> STATE_SHIFT
}
fn block_trims(b: u32) -> u32 {
    b & ((1 << STATE_SHIFT) - 1)
}

/// fio's `trim_block_info` (io_u.c): a completed trim of block `idx` marks
/// it trimmed and counts one more trim, unless it is in a failure state.
/// (fio asserts the index is inside; an I/O past the last block is not
/// counted here.)
pub fn trim_block(infos: &mut [u32], idx: u64) {
    let Some(b) = usize::try_from(idx).ok().and_then(|i| infos.get_mut(i)) else {
        return;
    };
    if block_state(*b) >= BLOCK_TRIM_FAILURE {
        return;
    }
    *b = (BLOCK_TRIMMED << STATE_SHIFT) | (block_trims(*b) + 1);
}

/// (percentile, trim count) pairs and the count of blocks in each of
/// [`BLOCK_STATES`].
pub type BlockReport = (Vec<(f64, u32)>, [u32; 5]);

/// fio's `calc_block_percentiles` (stat.c): the blocks sorted by state
/// category (unwritten; trimmed or written; failed), then trim count, then
/// state; for each percentile `p` of `list` (up to fio's 20 entries, ended
/// by a 0), the trim count of the block at `p` percent of the blocks that
/// are not unwritten; and the count of blocks in each state. `None` when
/// every block is unwritten (or the list is empty): fio then prints no
/// percentiles and leaves the JSON's `block` out.
///
/// fio 3.33's comparison reads each 32-bit entry as 64 bits, taking in the
/// next entry: with any two trimmed blocks it fails its assertion (stat.c
/// `block_state_category`) and aborts. This is the comparison fio means.
/// At 100 percent fio reads one entry past the blocks, a zero (trim count
/// 0) below 8192 blocks: the same here.
pub fn block_percentiles(infos: &[u32], list: &[f64]) -> Option<BlockReport> {
    let cat = |b: u32| match block_state(b) {
        0 => 0,
        1 | 2 => 1,
        _ => 2,
    };
    let mut v = infos.to_vec();
    v.sort_by_key(|&b| (cat(b), block_trims(b), block_state(b)));
    let list: Vec<f64> = list
        .iter()
        .copied()
        .take(20)
        .take_while(|p| *p != 0.0)
        .collect();
    if list.is_empty() {
        return None;
    }
    let uninit = v.iter().take_while(|&&b| block_state(b) == 0).count();
    if uninit == v.len() {
        return None;
    }
    let n = v.len() - uninit;
    let pcts = list
        .iter()
        .map(|&p| {
            let idx = (p * n as f64 / 100.0) as usize + uninit;
            (p, v.get(idx).map_or(0, |&b| block_trims(b)))
        })
        .collect();
    let mut states = [0u32; 5];
    for b in &v {
        if let Some(s) = states.get_mut(block_state(*b) as usize) {
            *s += 1;
        }
    }
    Some((pcts, states))
}

#[cfg(test)]
mod block_tests {
    use super::*;

    #[test]
    fn block_percentiles_as_fio() {
        let mut b = vec![0u32; 4];
        assert!(block_percentiles(&b, &[50.0]).is_none());
        trim_block(&mut b, 0);
        let (p, s) = block_percentiles(&b, &[1.0, 50.0, 100.0]).unwrap();
        // At 100%, fio reads one past the blocks (0).
        assert_eq!(p, vec![(1.0, 1), (50.0, 1), (100.0, 0)]);
        assert_eq!(s, [3, 1, 0, 0, 0]);
        for _ in 0..3 {
            trim_block(&mut b, 1);
        }
        trim_block(&mut b, 2);
        trim_block(&mut b, 9);
        let (p, s) = block_percentiles(&b, &[1.0, 50.0, 99.0]).unwrap();
        // Not unwritten: trims 1, 1, 3 (index 0.03, 1.5, 2.97).
        assert_eq!(p, vec![(1.0, 1), (50.0, 1), (99.0, 3)]);
        assert_eq!(s, [1, 3, 0, 0, 0]);
    }
}
