//! Where the next I/O goes: direction, size and offset, from fio's options.

use crate::options::{Dir, Distribution, Job, Rw};

/// xoshiro256** seeded through splitmix64: fast, and the same sequence for
/// the same seed (randrepeat).
#[derive(Clone, Debug)]
pub struct Rng([u64; 4]);

impl Rng {
    pub fn new(seed: u64) -> Self {
        let mut x = seed;
        let mut next = || {
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        Rng([next(), next(), next(), next()])
    }
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.0;
        let r = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        r
    }
    /// Uniform in 0..n (n > 0).
    #[inline]
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
    /// Uniform in [0, 1).
    #[inline]
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A full-period LCG modulo the next power of two, skipping values past
/// `n`: visits every block once per pass in a scrambled order with no
/// memory (fio's random map, without the bitmap).
#[derive(Clone, Debug)]
struct Perm {
    n: u64,
    mask: u64,
    x: u64,
    c: u64,
}

impl Perm {
    fn new(n: u64, seed: u64) -> Self {
        let m = n.next_power_of_two().max(2);
        Perm {
            n,
            mask: m - 1,
            x: seed & (m - 1),
            c: (seed.rotate_left(17) | 1) & (m - 1) | 1,
        }
    }
    #[inline]
    fn next(&mut self) -> u64 {
        loop {
            self.x = self
                .x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(self.c)
                & self.mask;
            if self.x < self.n {
                return self.x;
            }
        }
    }
}

/// fio's random map for jobs whose block sizes vary (`bssplit`,
/// `bsrange`, different read and write sizes): a bit per smallest block
/// (fio's axmap). An I/O takes a random block, or the next free one after
/// it when that is taken; it is then cut to the run of free blocks it
/// starts (io_u.c `mark_random_map`), so a pass moves every byte of the
/// region exactly once, in I/Os that are sometimes shorter than drawn.
/// (With one block size the permutation above does the same without
/// memory.)
#[derive(Clone, Debug)]
struct BlockMap {
    bits: Vec<u64>,
    n: u64,
    free: u64,
}

impl BlockMap {
    /// The most blocks mapped (a 128 MiB bitmap); larger regions keep the
    /// permutation.
    const MAX_BLOCKS: u64 = 1 << 30;

    fn new(n: u64) -> Self {
        BlockMap {
            bits: vec![0; n.div_ceil(64) as usize],
            n,
            free: n,
        }
    }
    fn is_free(&self, b: u64) -> bool {
        self.bits[(b / 64) as usize] & (1 << (b % 64)) == 0
    }
    /// The first free block at or after `b`, else from the start.
    fn next_free(&self, b: u64) -> Option<u64> {
        let scan = |from: u64, to: u64| -> Option<u64> {
            let mut w = from / 64;
            let mut mask = !0u64 << (from % 64);
            while w * 64 < to {
                let free = !self.bits[w as usize] & mask;
                if free != 0 {
                    let b = w * 64 + u64::from(free.trailing_zeros());
                    return (b < to).then_some(b);
                }
                w += 1;
                mask = !0;
            }
            None
        };
        scan(b, self.n).or_else(|| scan(0, b.min(self.n)))
    }
    /// Take up to `max` free blocks from `b` (stopping at the first taken
    /// one or the end); returns how many were taken (at least 1: `b` is
    /// free).
    fn take_run(&mut self, b: u64, max: u64) -> u64 {
        let mut k = 0;
        while k < max && b + k < self.n && self.is_free(b + k) {
            let i = b + k;
            self.bits[(i / 64) as usize] |= 1 << (i % 64);
            k += 1;
        }
        self.free -= k;
        k
    }
    /// `take_run(b, 1)`: take block `b` if it is free.
    #[inline]
    fn take_one(&mut self, b: u64) {
        if b < self.n {
            let (w, bit) = ((b / 64) as usize, 1u64 << (b % 64));
            if self.bits[w] & bit == 0 {
                self.bits[w] |= bit;
                self.free -= 1;
            }
        }
    }
    fn reset(&mut self) {
        self.bits.iter_mut().for_each(|w| *w = 0);
        self.free = self.n;
    }
}

/// Zipf over `n` items (Gray et al., as fio's lib/zipf.c), rank 0 hottest.
#[derive(Clone, Debug)]
pub(crate) struct Zipf {
    n: u64,
    theta: f64,
    zetan: f64,
    alpha: f64,
    eta: f64,
}

impl Zipf {
    pub(crate) fn new(n: u64, theta: f64) -> Self {
        // fio caps the items the zeta sum runs over (ZIPF_MAX_GEN).
        let gen = n.min(10_000_000);
        let zetan: f64 = (1..=gen).map(|i| 1.0 / (i as f64).powf(theta)).sum();
        let zeta2 = 1.0 + 0.5f64.powf(theta);
        let alpha = 1.0 / (1.0 - theta);
        let eta = (1.0 - (2.0 / n as f64).powf(1.0 - theta)) / (1.0 - zeta2 / zetan);
        Zipf {
            n,
            theta,
            zetan,
            alpha,
            eta,
        }
    }
    pub(crate) fn next(&self, rng: &mut Rng) -> u64 {
        let u = rng.unit();
        let uz = u * self.zetan;
        let v = if uz < 1.0 {
            0
        } else if uz < 1.0 + 0.5f64.powf(self.theta) {
            1
        } else {
            (self.n as f64 * (self.eta * u - self.eta + 1.0).powf(self.alpha)) as u64
        };
        v.min(self.n - 1)
    }
}

/// fio 3.33's sequential `trimwrite` when the trim size (`bs`'s third
/// value) differs from the write size (io_u.c `set_rw_ddir`,
/// `get_next_seq_offset`): trims and writes each walk the region on their
/// own, in their own block size (fio's `last_pos[ddir]`), and the next
/// I/O is a trim exactly when the last write started where the last trim
/// did (`last_start[DDIR_WRITE] == last_start[DDIR_TRIM]`), else a write.
/// With 16 KiB trims and 512 B writes (fio's mtd.fio) that is: trim 0,
/// write 0, trim 16k, writes 512..16k (32 of them), trim 32k, writes to
/// 32k, ..., until the next trim would start at the region's end; with
/// larger writes than trims: trim 0, write 0, trim 512, then writes to
/// the end. Checked against `fio --debug=io` (tests/mtd_like_fio.rs).
#[derive(Clone, Debug, Default)]
struct Split {
    /// Next offset (region-relative) of trims `[0]` and writes `[1]`.
    pos: [u64; 2],
    /// Where the last trim and the last write started (fio's
    /// `last_start`, -1 as `None` at a pass's start).
    last: [Option<u64>; 2],
}

/// Next-I/O generator of one job.
#[derive(Clone)]
pub struct Gen {
    rw: Rw,
    rwmixread: u32,
    bs: [u64; 2],
    bs_trim: u64,
    bssplit: [Vec<(u64, u32)>; 2],
    bsrange: [Option<(u64, u64)>; 2],
    /// `trimwrite`/`randtrimwrite`: the offset just trimmed, to be written
    /// next (fio's `last_start[DDIR_TRIM]`).
    trimmed: Option<u64>,
    /// Sequential `trimwrite` with a trim size other than the write size.
    split: Option<Split>,
    /// Region start and length in bytes.
    pub base: u64,
    pub len: u64,
    unit: u64,
    blocks: u64,
    seq_pos: u64,
    rng: Rng,
    perm: Option<Perm>,
    /// fio's random map, when block sizes vary (then `perm` is `None`).
    map: Option<BlockMap>,
    zipf: Option<Zipf>,
    scatter: u64,
    /// Offsets handed out (to tell where a new pass over the region starts).
    drawn: u64,
    /// The next `drawn` at which the permutation starts a pass (a multiple
    /// of `blocks`: a countdown instead of a division per I/O).
    pass_at: u64,
    /// A new pass over the region started since `take_new_pass` last looked.
    new_pass: bool,
    /// `random_distribution` other than random/zipf.
    skew: Skew,
    /// `rw=...:N`: sequential: bytes skipped after each I/O; random: I/Os
    /// per random offset (sequential in between).
    modifier: u64,
    /// Random mode with a modifier: (I/Os left in the run, next offset).
    run: Option<(u64, u64)>,
    /// `rw=read:-N`: N, and the end of the last I/O (region-relative).
    back: u64,
    last_end: u64,
}

/// fio's `zonemode=strided` over one file (io_u.c
/// `setup_strided_zone_mode` and `get_next_seq_offset`): I/O goes to a
/// zone of `range` bytes at `zone` until `size` bytes were moved there
/// (over the range again if `size` is larger), then the zone moves on by
/// `range + skip`, back to the job's start offset once it is at or past
/// the file's end. Sequential I/O runs on from its last position in the
/// zone; random I/O draws in the zone (the random map afresh each
/// `range` bytes). An I/O that would end past the file's end ends the job,
/// as fio's `fill_io_u` failing does.
#[derive(Clone, Debug)]
pub struct Strided {
    size: u64,
    range: u64,
    skip: u64,
    /// fio's `get_start_offset`: the job's offset.
    start: u64,
    /// fio's `real_file_size`.
    end: u64,
    /// `io_size + start`: a time-based sequential job starts its zone over
    /// there (fio's `get_next_seq_offset`).
    io_end: u64,
    time_based: bool,
    /// fio's `f->file_offset`: the zone's start.
    zone: u64,
    /// fio's `td->zone_bytes`: bytes in this zone, both directions.
    zone_bytes: u64,
    /// fio's `f->last_pos` per direction.
    last_pos: [u64; 3],
}

impl Strided {
    pub fn new(
        (size, range, skip): (u64, u64, u64),
        start: u64,
        end: u64,
        io_len: u64,
        time_based: bool,
    ) -> Self {
        Strided {
            size,
            range: range.max(1),
            skip,
            start,
            end,
            io_end: start.saturating_add(io_len),
            time_based,
            zone: start,
            zone_bytes: 0,
            last_pos: [start; 3],
        }
    }

    /// Offset and length of the next I/O of `dir` drawn as `bs` bytes;
    /// `None`: it would not fit before the file's end, and the job ends.
    /// `gen` is the job's generator over a region of `range` bytes.
    pub fn pick(&mut self, gen: &mut Gen, dir: Dir, bs: u64) -> Option<(u64, u64)> {
        let d = dir as usize;
        if self.zone_bytes >= self.size {
            self.zone_bytes = 0;
            self.zone = self
                .zone
                .saturating_add(self.range.saturating_add(self.skip));
            if self.zone >= self.end {
                self.zone = self.start;
            }
            self.last_pos[d] = self.zone;
        }
        if self.last_pos[d] >= self.zone.saturating_add(self.range) {
            self.last_pos[d] = self.zone;
        }
        if self.zone_bytes % self.range == 0 {
            self.last_pos = [self.zone; 3];
            gen.fresh_pass(self.zone);
        }
        let (off, len) = if gen.rw.random() {
            gen.base = self.zone;
            gen.pick_io(bs)
        } else {
            if self.time_based && self.last_pos[d] >= self.io_end {
                self.last_pos[d] = self.zone;
            }
            (self.last_pos[d], bs)
        };
        if off.checked_add(len).is_none_or(|e| e > self.end) {
            return None;
        }
        self.last_pos[d] = off + len;
        self.zone_bytes += len;
        Some((off, len))
    }
}

/// fio's other distributions (lib/zipf.c pareto, lib/gauss.c, zoned).
#[derive(Clone, Debug)]
enum Skew {
    None,
    /// `pareto:h`: rank = (n-1) * u^(ln h / ln (1-h)), scattered.
    Pareto(f64),
    /// `normal:dev`: centred on the middle, deviation in % of the region.
    Normal(f64),
    /// Cumulative (access %, first block, blocks) per zone.
    Zoned(Vec<(u32, u64, u64)>),
}

impl Gen {
    pub fn new(job: &Job, base: u64, len: u64, seed: u64) -> Self {
        let random = job.rw.random();
        // `blockalign`: random offsets are its multiples (fio turns the
        // random map off then).
        let unit = match job.blockalign {
            Some(ba) if random => ba.max(1),
            _ => job.min_bs(),
        };
        let blocks = (len / unit).max(1);
        let zipf = match job.random_distribution {
            Distribution::Zipf(t) if random => Some(Zipf::new(blocks, t)),
            _ => None,
        };
        let skew = match &job.random_distribution {
            _ if !random => Skew::None,
            Distribution::Pareto(h) => Skew::Pareto(h.ln() / (1.0 - h).ln()),
            Distribution::Normal(d) => Skew::Normal(*d),
            Distribution::Zoned(z) => {
                let mut acc = 0u32;
                let mut first = 0u64;
                let mut zones = Vec::new();
                for (i, (a, r)) in z.iter().enumerate() {
                    acc += a;
                    let n = if i + 1 == z.len() {
                        blocks - first
                    } else {
                        (blocks * u64::from(*r) / 100).min(blocks - first)
                    };
                    zones.push((acc, first, n));
                    first += n;
                }
                Skew::Zoned(zones)
            }
            _ => Skew::None,
        };
        // random_generator=lfsr: fio's LFSR visits every block once per
        // pass by itself, map or not (norandommap, blockalign), and never
        // cuts an I/O short (it marks no map).
        let perm = (random
            && (!job.norandommap || job.lfsr)
            && (job.blockalign.is_none() || job.lfsr)
            && zipf.is_none()
            && matches!(skew, Skew::None))
        .then(|| Perm::new(blocks, seed ^ 0xa5a5_5a5a_dead_beef));
        let varying = job.min_bs() != job.max_bs();
        let map = (perm.is_some() && varying && !job.lfsr && blocks <= BlockMap::MAX_BLOCKS)
            .then(|| BlockMap::new(blocks));
        let perm = if map.is_some() { None } else { perm };
        Gen {
            rw: job.rw,
            rwmixread: job.rwmixread,
            bs: job.bs,
            bs_trim: job.bs_trim,
            trimmed: None,
            split: (job.rw == Rw::TrimWrite && job.bs_trim != job.bs[1]).then(Split::default),
            bssplit: job.bssplit.clone(),
            bsrange: job.bsrange,
            base,
            len,
            unit,
            blocks,
            seq_pos: 0,
            rng: Rng::new(seed),
            perm,
            map,
            zipf,
            scatter: seed | 1,
            drawn: 0,
            pass_at: blocks,
            new_pass: false,
            skew,
            modifier: job.rw_modifier,
            run: None,
            back: job.rw_back,
            last_end: 0,
        }
    }

    pub fn pick_dir(&mut self) -> Dir {
        if let Some(sp) = &self.split {
            // fio's set_rw_ddir: a trim when the last write began where
            // the last trim did (and at the start, both unset).
            return if sp.last[0] == sp.last[1] {
                Dir::Trim
            } else {
                Dir::Write
            };
        }
        match self.rw {
            Rw::Trim | Rw::RandTrim => Dir::Trim,
            // fio's set_rw_ddir: a trim, then a write of the same block.
            Rw::TrimWrite | Rw::RandTrimWrite => {
                if self.trimmed.is_some() {
                    Dir::Write
                } else {
                    Dir::Trim
                }
            }
            Rw::Read | Rw::RandRead => Dir::Read,
            Rw::Write | Rw::RandWrite => Dir::Write,
            Rw::Rw | Rw::RandRw => {
                if self.rng.below(100) < u64::from(self.rwmixread) {
                    Dir::Read
                } else {
                    Dir::Write
                }
            }
        }
    }

    pub fn pick_bs(&mut self, d: Dir) -> u64 {
        if d == Dir::Trim {
            return self.bs_trim;
        }
        let split = &self.bssplit[d as usize];
        if split.is_empty() {
            if let Some((lo, hi)) = self.bsrange[d as usize] {
                // A multiple of min (as fio aligns them), uniformly among
                // those in [min, max].
                return lo * (1 + self.rng.below(hi / lo));
            }
            return self.bs[d as usize];
        }
        let r = self.rng.below(100) as u32;
        let mut acc = 0;
        for (b, p) in split {
            acc += p;
            if r < acc {
                return *b;
            }
        }
        split.last().map_or(self.bs[d as usize], |x| x.0)
    }

    /// Whether a new pass over the region started (sequential: back at the
    /// start; random map: every block was handed out once) since the last
    /// call. fio's `loop_cache_invalidate` runs there for time-based jobs.
    /// Random offsets without a map (`norandommap`, zipf) have no passes.
    pub fn take_new_pass(&mut self) -> bool {
        std::mem::take(&mut self.new_pass)
    }

    /// Byte offset (absolute) and length for an I/O drawn as `bs` bytes:
    /// the length is `bs` except under fio's random map with varying
    /// block sizes, where the I/O is cut to the free blocks it starts.
    pub fn pick_io(&mut self, bs: u64) -> (u64, u64) {
        if self.rw.random() && self.modifier <= 1 {
            if let Some(map) = &mut self.map {
                if map.free == 0 {
                    // Every block was moved once: a new pass (fio resets
                    // the map of a time-based job; a sized one has stopped
                    // before this).
                    map.reset();
                    self.new_pass = true;
                }
                let drawn = self.rng.below(self.blocks);
                let b = if map.is_free(drawn) {
                    drawn
                } else {
                    map.next_free(drawn).unwrap_or(drawn)
                };
                let got = if bs == self.unit {
                    // One block (a fixed block size): no run to measure.
                    map.take_one(b);
                    1
                } else {
                    let want = bs.div_ceil(self.unit).max(1);
                    map.take_run(b, want).max(1)
                };
                self.drawn += 1;
                return (self.base + b * self.unit, (got * self.unit).min(bs));
            }
        }
        (self.pick_offset(bs), bs)
    }

    /// Byte offset (absolute) for an I/O of `bs` bytes.
    pub fn pick_offset(&mut self, bs: u64) -> u64 {
        if let Some(o) = self.trimmed.take() {
            return o;
        }
        let off = self.draw_offset(bs);
        if matches!(self.rw, Rw::TrimWrite | Rw::RandTrimWrite) {
            self.trimmed = Some(off);
        }
        off
    }

    fn draw_offset(&mut self, bs: u64) -> u64 {
        // rw=randread:N: N I/Os per random offset, sequential in between.
        if self.rw.random() && self.modifier > 1 {
            if let Some((left, next)) = self.run {
                if left > 0 && next + bs <= self.base + self.len {
                    self.run = Some((left - 1, next + bs));
                    self.drawn += 1;
                    return next;
                }
            }
        }
        let block = if self.rw.random() {
            if !matches!(self.skew, Skew::None) {
                self.skewed()
            } else if let Some(z) = &self.zipf {
                // Spread the hot ranks over the device, like fio's hashing.
                let r = z.next(&mut self.rng);
                r.wrapping_mul(0x9e37_79b9_7f4a_7c15 ^ self.scatter) % self.blocks
            } else if let Some(p) = &mut self.perm {
                // Every `blocks` draws is one pass of the random map.
                // (`drawn` grows by one per call here, from 0: it meets
                // every multiple of `blocks`.)
                if self.drawn == self.pass_at {
                    self.pass_at += self.blocks;
                    self.new_pass = true;
                }
                p.next()
            } else {
                self.rng.below(self.blocks)
            }
        } else if self.back > 0 {
            // fio's get_next_seq_offset with a negative ddir_seq_add: the
            // first I/O at the start, then each one `back` bytes before the
            // end of the previous; stepping below the start wraps to
            // `back` bytes before the region's end.
            let mut pos = self.last_end;
            if pos != 0 {
                pos = match pos.checked_sub(self.back) {
                    Some(p) if p < self.len => p,
                    _ => {
                        self.new_pass = true;
                        self.len.saturating_sub(self.back)
                    }
                };
            }
            let pos = pos.min(self.len.saturating_sub(bs));
            self.last_end = pos + bs;
            self.drawn += 1;
            return self.base + pos;
        } else {
            let b = self.seq_pos;
            if b == 0 && self.drawn > 0 {
                self.new_pass = true;
            }
            // rw=write:8k: skip 8k after each I/O.
            self.seq_pos += (bs + self.modifier).div_ceil(self.unit).max(1);
            if self.seq_pos * self.unit + bs > self.len {
                // Wrap for the next one.
                if self.seq_pos * self.unit >= self.len {
                    self.seq_pos = 0;
                }
            }
            b
        };
        self.drawn += 1;
        let mut off = block * self.unit;
        if off + bs > self.len {
            off = (self.len.saturating_sub(bs) / self.unit) * self.unit;
            if !self.rw.random() {
                self.seq_pos = 0;
            }
        }
        if self.rw.random() && self.modifier > 1 {
            self.run = Some((self.modifier - 2, self.base + off + bs));
        }
        self.base + off
    }

    /// The same generator over another region of the same length (one
    /// file of several): its own random stream and map order.
    pub fn moved(&self, base: u64, seed: u64) -> Gen {
        let mut g = self.clone();
        g.base = base;
        g.rng = Rng::new(seed);
        g.scatter = seed | 1;
        if let Some(p) = &mut g.perm {
            *p = Perm::new(p.n, seed ^ 0xa5a5_5a5a_dead_beef);
        }
        g.restart();
        g
    }

    /// A new pass over a region of the same length at `base`: the random
    /// map starts afresh (a new order), as fio's `fio_file_reset` does when
    /// a strided zone begins.
    pub fn fresh_pass(&mut self, base: u64) {
        self.base = base;
        self.restart();
        if let Some(p) = &mut self.perm {
            *p = Perm::new(p.n, self.rng.next_u64());
        }
    }

    /// Whether this is a sequential `trimwrite` with a trim size other
    /// than the write size: its I/Os come from [`Gen::pick_split`].
    pub fn is_split(&self) -> bool {
        self.split.is_some()
    }

    /// The next I/O of a split `trimwrite` (see [`Split`]), `None` once
    /// the pass is over: its direction's next block starts at or runs
    /// past the region's end (fio's get_next_offset fails, and the loop
    /// ends). [`Gen::restart`] begins the next pass.
    pub fn pick_split(&mut self, d: Dir, bs: u64) -> Option<(u64, u64)> {
        let sp = self.split.as_mut()?;
        let i = usize::from(d != Dir::Trim);
        let off = sp.pos[i];
        if off >= self.len || off.checked_add(bs)? > self.len {
            return None;
        }
        sp.pos[i] = off + bs;
        sp.last[i] = Some(off);
        self.drawn += 1;
        Some((self.base + off, bs))
    }

    /// Whether this pass of a split `trimwrite` placed an I/O.
    pub fn split_moved(&self) -> bool {
        self.drawn > 0
    }

    /// Start a new pass over the region (fio's `fio_file_reset`).
    pub fn restart(&mut self) {
        if let Some(sp) = &mut self.split {
            *sp = Split::default();
        }
        self.seq_pos = 0;
        self.drawn = 0;
        self.pass_at = self.blocks;
        self.run = None;
        self.new_pass = false;
        if let Some(m) = &mut self.map {
            m.reset();
        }
    }

    /// fio's offset and length for one file of several (io_u.c
    /// `get_next_offset`): `None` once this pass is used up — sequential:
    /// the next block does not fit before the region's end; the random
    /// map: every block was handed out — and the file is done. Random
    /// offsets without a map never run out. `restart` begins the next pass.
    pub fn pick_io_once(&mut self, bs: u64) -> Option<(u64, u64)> {
        if bs > self.len {
            // No block of this size fits (fio: past the file's end).
            return None;
        }
        if self.rw.random() {
            if self.modifier <= 1 {
                if self.perm.is_some() && self.drawn >= self.blocks {
                    return None;
                }
                if self.map.as_ref().is_some_and(|m| m.free == 0) {
                    return None;
                }
            }
        } else if self.seq_pos * self.unit + bs > self.len || (self.seq_pos == 0 && self.drawn > 0)
        {
            return None;
        }
        Some(self.pick_io(bs))
    }

    fn skewed(&mut self) -> u64 {
        let n = self.blocks;
        match &self.skew {
            Skew::Pareto(pow) => {
                let r = ((n - 1) as f64 * self.rng.unit().powf(*pow)) as u64;
                r.wrapping_mul(0x9e37_79b9_7f4a_7c15 ^ self.scatter) % n
            }
            Skew::Normal(dev) => {
                // fio's gauss: a sum of uniforms, centred on the middle.
                let g: f64 = (0..12).map(|_| self.rng.unit()).sum::<f64>() - 6.0;
                let x = n as f64 / 2.0 + g * n as f64 * dev / 100.0;
                (x.max(0.0) as u64).min(n - 1)
            }
            Skew::Zoned(z) => {
                let p = self.rng.below(100) as u32;
                let &(_, first, cnt) = z
                    .iter()
                    .find(|(acc, _, cnt)| p < *acc && *cnt > 0)
                    .or_else(|| z.iter().rev().find(|(_, _, c)| *c > 0))
                    .unwrap_or(&(100, 0, 1));
                first + self.rng.below(cnt.max(1))
            }
            Skew::None => self.rng.below(n),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_map_covers_every_block_once() {
        let mut p = Perm::new(1000, 42);
        let mut seen = vec![false; 1000];
        for _ in 0..1000 {
            let x = p.next() as usize;
            assert!(!seen[x], "block {x} twice in one pass");
            seen[x] = true;
        }
        assert!(seen.iter().all(|s| *s));
    }

    /// fio's random map with varying sizes: one pass moves every byte of
    /// the region exactly once, cutting I/Os at blocks already moved.
    #[test]
    fn block_map_moves_every_byte_once_per_pass() {
        let job =
            crate::options::parse_str("[j]\nrw=randread\nbssplit=4k/50:16k/30:64k/20\nsize=8m\n")
                .unwrap()
                .jobs
                .remove(0);
        let len = 8 << 20;
        let mut g = Gen::new(&job, 0, len, 7);
        assert!(g.map.is_some());
        let mut seen = vec![false; (len / 4096) as usize];
        let (mut moved, mut ios, mut cut) = (0, 0, 0);
        while moved < len {
            let bs = g.pick_bs(Dir::Read);
            let (off, n) = g.pick_io(bs);
            assert!(n > 0 && n <= bs && off % 4096 == 0 && off + n <= len);
            cut += u64::from(n < bs);
            for b in off / 4096..(off + n) / 4096 {
                assert!(!seen[b as usize], "block {b} twice in one pass");
                seen[b as usize] = true;
            }
            moved += n;
            ios += 1;
        }
        assert_eq!(moved, len);
        assert!(seen.iter().all(|s| *s));
        assert!(cut > 0 && ios > len / (19 << 10), "{ios} I/Os, {cut} cut");
        assert!(!g.take_new_pass());
        g.pick_io(4096);
        assert!(g.take_new_pass(), "the next I/O starts a new pass");
    }

    /// The permutation (one block size) marks a new pass at the first I/O
    /// of every pass, `blocks` I/Os apart, and again from the start after
    /// `restart`.
    #[test]
    fn permutation_marks_each_pass() {
        let job = crate::options::parse_str("[p]\nrw=randread\nbs=4k\n")
            .unwrap()
            .jobs
            .remove(0);
        let blocks = 37u64;
        let mut g = Gen::new(&job, 0, blocks * 4096, 3);
        assert!(g.perm.is_some() && g.map.is_none());
        let mut marks = Vec::new();
        for i in 0..4 * blocks + 5 {
            g.pick_io(4096);
            if g.take_new_pass() {
                marks.push(i);
            }
            if i == 3 * blocks + 1 {
                g.restart();
            }
        }
        // I/O number `blocks` starts pass 2, `2 * blocks` pass 3; after the
        // restart (following I/O 3 * blocks + 1) counting begins again.
        let r = 3 * blocks + 2;
        assert_eq!(marks, vec![blocks, 2 * blocks, 3 * blocks, r + blocks]);
    }

    #[test]
    fn zipf_is_skewed() {
        let z = Zipf::new(10_000, 1.2);
        let mut rng = Rng::new(1);
        let mut hot = 0;
        for _ in 0..10_000 {
            if z.next(&mut rng) < 100 {
                hot += 1;
            }
        }
        // 1% of the items take far more than 1% of the accesses.
        assert!(hot > 5000, "{hot}");
    }

    #[test]
    fn bsrange_sizes_are_uniform_multiples_of_the_minimum() {
        let job = crate::options::parse_str("[j]\nfilename=x\nrw=randrw\nbsrange=4k-16k,8k-8k\n")
            .unwrap()
            .jobs
            .remove(0);
        assert_eq!(job.bsrange, [Some((4096, 16384)), Some((8192, 8192))]);
        assert_eq!((job.min_bs(), job.max_bs()), (4096, 16384));
        let mut g = Gen::new(&job, 0, 64 << 20, 3);
        let mut seen = std::collections::BTreeMap::new();
        for _ in 0..20_000 {
            let bs = g.pick_bs(Dir::Read);
            *seen.entry(bs).or_insert(0u32) += 1;
            let off = g.pick_offset(bs);
            assert!(off % 4096 == 0 && off + bs <= 64 << 20);
            assert_eq!(g.pick_bs(Dir::Write), 8192);
        }
        // Every multiple of 4k in [4k, 16k], each drawn about equally.
        let keys: Vec<u64> = seen.keys().copied().collect();
        assert_eq!(keys, [4096, 8192, 12288, 16384]);
        for b in keys {
            assert!((4500..5500).contains(&seen[&b]), "{seen:?}");
        }
    }

    #[test]
    fn offsets_stay_in_region_and_aligned() {
        let job = crate::options::parse_str("[j]\nfilename=x\nrw=randrw\nbssplit=4k/50:64k/50\n")
            .unwrap()
            .jobs
            .remove(0);
        let mut g = Gen::new(&job, 1 << 20, 10 << 20, 7);
        for _ in 0..10_000 {
            let d = g.pick_dir();
            let bs = g.pick_bs(d);
            let off = g.pick_offset(bs);
            assert!(off >= 1 << 20 && off + bs <= 11 << 20);
            assert_eq!(off % 4096, 0);
        }
        let job = crate::options::parse_str("[j]\nfilename=x\nrw=write\nbs=4k\n")
            .unwrap()
            .jobs
            .remove(0);
        let mut g = Gen::new(&job, 0, 16384, 7);
        let v: Vec<(u64, bool)> = (0..6)
            .map(|_| (g.pick_offset(4096), g.take_new_pass()))
            .collect();
        assert_eq!(
            v,
            [
                (0, false),
                (4096, false),
                (8192, false),
                (12288, false),
                (0, true),
                (4096, false)
            ]
        );
        // The random map: a new pass every `blocks` offsets.
        let job = crate::options::parse_str("[j]\nfilename=x\nrw=randread\nbs=4k\n")
            .unwrap()
            .jobs
            .remove(0);
        let mut g = Gen::new(&job, 0, 8 * 4096, 7);
        let passes: Vec<bool> = (0..17)
            .map(|_| {
                g.pick_offset(4096);
                g.take_new_pass()
            })
            .collect();
        let at: Vec<usize> = (0..17).filter(|&i| passes[i]).collect();
        assert_eq!(at, [8, 16]);
    }

    /// `rw=read:-8k` over 64k in 4k blocks: the offsets fio 3.33 issues
    /// (`fio --debug=io`, io_u.c get_next_seq_offset): the start, then
    /// backwards from 8k before the end; 60k is never read.
    #[test]
    fn backwards_like_fio() {
        let job = crate::options::parse_str("[j]\nfilename=x\nrw=read:-8k\nbs=4k\n")
            .unwrap()
            .jobs
            .remove(0);
        let mut g = Gen::new(&job, 0, 65536, 7);
        let v: Vec<u64> = (0..17).map(|_| g.pick_offset(4096) / 1024).collect();
        assert_eq!(
            v,
            [0, 56, 52, 48, 44, 40, 36, 32, 28, 24, 20, 16, 12, 8, 4, 0, 56]
        );
        for bad in ["rw=read:-2k", "rw=read:-8k\noffset=4k"] {
            let e = crate::options::parse_str(&format!("[j]\nfilename=x\nbs=4k\n{bad}\n"));
            assert!(e.is_err(), "{bad}");
        }
    }
}
