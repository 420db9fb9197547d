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
    /// lib/axmap.c `axmap_isset`: a block past the map is not set.
    #[inline]
    fn isset(&self, b: u64) -> bool {
        self.bits
            .get((b / 64) as usize)
            .is_some_and(|w| w & (1 << (b % 64)) != 0)
    }
    /// lib/axmap.c `axmap_set_nr`: set up to `nr` blocks from `b`, one
    /// 64-block word at a time, stopping at the first one already set;
    /// returns how many were set. As fio's, a run is cut by a set block
    /// but not by the map's end inside its last word (fio's
    /// `__axmap_set` computes that cut and does not use it).
    fn set_nr(&mut self, mut b: u64, mut nr: u64) -> u64 {
        let mut set = 0;
        while nr > 0 {
            let bit = b % 64;
            let want = nr.min(64 - bit);
            let got = match self.bits.get_mut((b / 64) as usize) {
                Some(w) if b <= self.n => {
                    // axmap_set_fn: the free run from `bit`, up to `want`.
                    let mask = if want == 64 {
                        !0
                    } else {
                        ((1u64 << want) - 1) << bit
                    };
                    let overlap = *w & mask;
                    let run = if overlap == 0 {
                        want
                    } else {
                        u64::from(overlap.trailing_zeros()) - bit
                    };
                    if run > 0 {
                        let m = if run == 64 {
                            !0
                        } else {
                            ((1u64 << run) - 1) << bit
                        };
                        *w |= m;
                        // (Blocks past the map's end are not counted.)
                        self.free -= run.min(self.n.saturating_sub(b));
                    }
                    run
                }
                _ => 0,
            };
            set += got;
            if got != want {
                break;
            }
            nr -= got;
            b += got;
        }
        set
    }
}

/// fio's tausworthe generators (lib/rand.h `__rand32`, `__rand64`;
/// lib/rand.c `__init_rand32`, `__init_rand64`), for the streams of a job
/// that follows fio's random map (see [`FioRand`]).
#[derive(Clone, Debug)]
enum Taus {
    /// taus88, fio's `random_generator=tausworthe` (the default).
    T88([u32; 3]),
    /// taus258, `random_generator=tausworthe64`.
    T258([u64; 5]),
}

impl Taus {
    /// lib/rand.c `init_rand_seed`: the 32-bit generator takes the seed's
    /// low 32 bits.
    fn new(seed: u64, use64: bool) -> Taus {
        // `(2^31) + (2^17) + (2^7)` in fio's C is 29 + 19 + 5 (`^` is xor).
        const X0: u64 = 53;
        let mut t = if use64 {
            let lcg = |x: u64| x.wrapping_mul(6_906_969_069) ^ seed;
            let at_least = |x: u64, m: u64| if x < m { x + m } else { x };
            let s1 = at_least(lcg(X0), 1);
            let s2 = at_least(lcg(s1), 7);
            let s3 = at_least(lcg(s2), 15);
            let s4 = at_least(lcg(s3), 33);
            let s5 = at_least(lcg(s4), 49);
            Taus::T258([s1, s2, s3, s4, s5])
        } else {
            let seed = seed as u32;
            let lcg = |x: u32| x.wrapping_mul(69069) ^ seed;
            let at_least = |x: u32, m: u32| if x < m { x + m } else { x };
            let s1 = at_least(lcg(X0 as u32), 1);
            let s2 = at_least(lcg(s1), 7);
            let s3 = at_least(lcg(s2), 15);
            Taus::T88([s1, s2, s3])
        };
        for _ in 0..6 {
            t.next();
        }
        t
    }
    /// lib/rand.h `__rand`.
    #[inline]
    fn next(&mut self) -> u64 {
        match self {
            Taus::T88(s) => {
                #[inline(always)]
                fn step(s: u32, a: u32, b: u32, c: u32, d: u32) -> u32 {
                    ((s & c) << d) ^ (((s << a) ^ s) >> b)
                }
                s[0] = step(s[0], 13, 19, 4_294_967_294, 12);
                s[1] = step(s[1], 2, 25, 4_294_967_288, 4);
                s[2] = step(s[2], 3, 11, 4_294_967_280, 17);
                u64::from(s[0] ^ s[1] ^ s[2])
            }
            Taus::T258(s) => {
                let x = ((s[0] << 1) ^ s[0]) >> 53;
                s[0] = ((s[0] & 18_446_744_073_709_551_614) << 10) ^ x;
                let x = ((s[1] << 24) ^ s[1]) >> 50;
                s[1] = ((s[1] & 18_446_744_073_709_551_104) << 5) ^ x;
                let x = ((s[2] << 3) ^ s[2]) >> 23;
                s[2] = ((s[2] & 18_446_744_073_709_547_520) << 29) ^ x;
                let x = ((s[3] << 5) ^ s[3]) >> 24;
                s[3] = ((s[3] & 18_446_744_073_709_420_544) << 23) ^ x;
                let x = ((s[4] << 3) ^ s[4]) >> 33;
                s[4] = ((s[4] & 18_446_744_073_701_163_008) << 8) ^ x;
                s[0] ^ s[1] ^ s[2] ^ s[3] ^ s[4]
            }
        }
    }
    /// fio's `r / (rand_max + 1.0)` for a draw `r` of this generator (a
    /// 32-bit draw converts exactly, and more cheaply, from a u32).
    #[inline]
    fn frac(&self, r: u64) -> f64 {
        match self {
            Taus::T88(_) => f64::from(r as u32) / 4_294_967_296.0,
            Taus::T258(_) => r as f64 / 18_446_744_073_709_551_616.0,
        }
    }
    /// lib/rand.h `rand_max`.
    #[inline]
    fn max(&self) -> u64 {
        match self {
            Taus::T88(_) => u64::from(u32::MAX),
            Taus::T258(_) => u64::MAX,
        }
    }
    /// lib/rand.h `rand_between`: `start..=end`.
    fn between(&mut self, start: u64, end: u64) -> u64 {
        let r = self.next();
        let n = (end - start + 1) as f64;
        match self {
            Taus::T88(_) => start + u64::from((n * (r as f64 / 4_294_967_296.0)) as u32),
            Taus::T258(_) => start + (n * (r as f64 / 18_446_744_073_709_551_616.0)) as u64,
        }
    }
}

/// How fio seeds a job's generators (init.c `setup_random_seeds`,
/// `td_fill_rand_seeds`).
#[derive(Clone, Copy, Debug)]
pub struct FioSeed {
    /// `randseed` (fio's default 0x89).
    pub randseed: u64,
    /// `randrepeat` as written (fio's `rand_repeatable` when it seeds, in
    /// `setup_random_seeds`, before `fixup_options` clears it for a
    /// `randseed`): the offsets are seeded from the thread number alone.
    pub repeatable: bool,
    /// fio's `rand_repeatable` after `fixup_options` (`randrepeat` without
    /// `randseed`): every loop starts the streams over (`clear_io_state`),
    /// the offsets again from the thread number alone.
    pub reseed: bool,
    /// fio's `td->thread_number`: 1-based over the run, clones counted.
    pub thread: u32,
    /// `random_generator=tausworthe64`.
    pub taus64: bool,
}

impl FioSeed {
    /// fio's `rand_seeds[]` (init.c `setup_random_seeds`): the seed is
    /// multiplied by 0x9e370001 four times, then seed `i` is
    /// `seed * thread_number + i`, the seed multiplied again after each.
    fn seeds(&self) -> [u64; 7] {
        let mut seed = self.randseed;
        for _ in 0..4 {
            seed = seed.wrapping_mul(0x9e37_0001);
        }
        let mut out = [0u64; 7];
        for (i, o) in out.iter_mut().enumerate() {
            *o = seed
                .wrapping_mul(u64::from(self.thread))
                .wrapping_add(i as u64);
            seed = seed.wrapping_mul(0x9e37_0001);
        }
        out
    }
}

/// fio.h's seed indices.
const FIO_RAND_BS_OFF: usize = 0;
const FIO_RAND_BS1_OFF: usize = 1;
const FIO_RAND_MIX_OFF: usize = 4;
const FIO_RAND_BLOCK_OFF: usize = 6;
/// init.c `FIO_RANDSEED`: a repeatable job's offset seed, times its
/// thread number.
const FIO_RANDSEED: u64 = 0xb189_9bed;

/// fio's own random choices for a job on fio's random map with varying
/// block sizes (`rw=randread`/`randwrite`/`randrw` with `bssplit`,
/// `bsrange` or different read and write sizes): its generators
/// (`random_state` for offsets, `bsrange_state[ddir]` for sizes,
/// `rwmix_state` for directions), seeded as fio seeds them, and drawn in
/// fio's order (io_u.c `fill_io_u`: direction, offset, size, then the
/// mark in the map). So the job issues fio 3.33's sequence of offsets and
/// lengths, and so its number of I/Os. One block size keeps the cheap
/// permutation ([`Perm`]), whose totals are fio's already.
#[derive(Clone, Debug)]
struct FioRand {
    seed: FioSeed,
    /// `verify` is set: writes draw their sizes from the read seed
    /// (init.c `td_fill_rand_seeds_internal`).
    verify: bool,
    random: Taus,
    bsrange: [Taus; 2],
    rwmix: Taus,
    /// io_u.c `get_rw_ddir` for `randrw`: fio's `rwmix_ddir`,
    /// `rwmix_issues`, `io_issues[]`, and `rwmix[]` (read, write %).
    mixed: bool,
    mix_pct: [u64; 2],
    rwmix_dir: Dir,
    rwmix_issues: u64,
    issues: [u64; 2],
    /// The next I/O's direction.
    dir: Dir,
    /// The last I/O could not be placed and another loop follows.
    again: bool,
    /// Per direction (read, write): fio's `min_bs`, `max_bs` (also its
    /// `ba`: the unit its offsets are drawn in and marked in), and the
    /// `bssplit` sorted by percentage as fio sorts it (`bs_cmp`).
    min_bs: [u64; 2],
    max_bs: [u64; 2],
    split: [Vec<(u64, u32)>; 2],
    /// fio's `rw_min_bs`: the map's unit.
    unit: u64,
    /// io_u.c `last_block` per direction: the region's length in its unit.
    lastb: [u64; 2],
    /// fio's `real_file_size` less the region's start.
    file_end: u64,
    time_based: bool,
    /// The engine completes each I/O as it is queued (fio's
    /// FIO_Q_COMPLETED: then do_io counts no bytes issued, and a loop
    /// ends only when fill_io_u fails).
    sync: bool,
    /// Loops after this one (`loops`), and the bytes of this one.
    loops_left: u32,
    loop_bytes: u64,
    /// `NVME_BENCH_TRACE_IO`: each I/O's direction, offset and length.
    trace: Option<std::sync::Arc<std::sync::Mutex<std::io::BufWriter<std::fs::File>>>>,
}

impl FioRand {
    /// init.c `td_fill_rand_seeds` (and its `_internal`), the streams a
    /// random map job uses.
    fn seed_streams(&mut self) {
        let seeds = self.seed.seeds();
        let use64 = self.seed.taus64;
        let read = seeds[FIO_RAND_BS_OFF];
        let write = if self.verify {
            read
        } else {
            seeds[FIO_RAND_BS1_OFF]
        };
        self.bsrange = [Taus::new(read, use64), Taus::new(write, use64)];
        self.rwmix = Taus::new(seeds[FIO_RAND_MIX_OFF], false);
        let block = if self.seed.repeatable {
            FIO_RANDSEED.wrapping_mul(u64::from(self.seed.thread))
        } else {
            seeds[FIO_RAND_BLOCK_OFF]
        };
        self.random = Taus::new(block, use64);
    }

    /// A new loop (libfio.c `clear_io_state`): a repeatable job's streams
    /// start over; `rwmix_issues` is cleared (`reset_io_counters`).
    fn new_loop(&mut self) {
        if self.seed.reseed {
            self.seed_streams();
        }
        self.rwmix_issues = 0;
        self.loop_bytes = 0;
    }

    /// io_u.c `get_rw_ddir` for a mixed job: a new draw once this
    /// direction's issues reach `rwmix_issues` (`get_rand_ddir`); on a
    /// switch, `set_rwmix_bytes` with the old direction still current.
    #[inline(never)]
    fn rw_dir(&mut self) -> Dir {
        let cur = self.rwmix_dir as usize;
        if self.issues[cur] >= self.rwmix_issues {
            let v = self.rwmix.between(1, 100);
            let d = if v <= self.mix_pct[0] {
                Dir::Read
            } else {
                Dir::Write
            };
            if d != self.rwmix_dir {
                self.rwmix_issues = self.issues[cur] * self.mix_pct[cur ^ 1] / 100;
            }
            self.rwmix_dir = d;
        }
        self.dir = self.rwmix_dir;
        self.dir
    }

    /// io_u.c `__get_next_rand_offset` (random_distribution=random): a
    /// block in `0..lastb`, or the map's next free one after it (wrapping);
    /// `None` when the map is full.
    fn rand_block(&mut self, map: &BlockMap, lastb: u64) -> Option<u64> {
        let r = self.random.next();
        let b = (lastb as f64 * self.random.frac(r)) as u64;
        if !map.isset(b) {
            return Some(b);
        }
        map.next_free(b)
    }

    /// io_u.c `get_next_buflen` for a drawn offset `off` in a region of
    /// `len` bytes (`io_u_fits`); `None`: not even the smallest fits.
    fn buflen(&mut self, i: usize, off: u64, len: u64) -> Option<u64> {
        let (min, max) = (self.min_bs[i], self.max_bs[i]);
        if min == max {
            return Some(min);
        }
        let fits = |l: u64| off.checked_add(l).is_some_and(|e| e <= len);
        if !fits(min) {
            return None;
        }
        let st = &mut self.bsrange[i];
        let cut = st.max() / 100;
        // fio draws until one fits; a size that never does (a bssplit
        // whose only fitting size has 0%) would spin for ever there.
        for _ in 0..100_000 {
            let r = st.next();
            let mut b = 0u64;
            if self.split[i].is_empty() {
                b = min + (max as f64 * st.frac(r)) as u64;
            } else {
                let mut perc = 0u64;
                for &(bs, p) in &self.split[i] {
                    if p == 0 {
                        continue;
                    }
                    b = bs;
                    perc += u64::from(p);
                    if r / perc <= cut && fits(b) {
                        break;
                    }
                }
            }
            if min.is_power_of_two() {
                b &= !(min - 1);
            } else {
                b -= b % min;
            }
            b = b.min(max);
            if fits(b) {
                return (b > 0).then_some(b);
            }
        }
        Some(min)
    }

    /// The next I/O on a region of `len` bytes: [`FioRand::try_fill`];
    /// where that fails, fio's loop ends (the file is done) and `None`;
    /// `again` says whether another loop follows, whose first I/O is
    /// picked anew (its direction too). `new_pass`: the map started over.
    fn fill(
        &mut self,
        map: &mut BlockMap,
        len: u64,
        new_pass: &mut bool,
    ) -> Option<(Dir, u64, u64)> {
        let Some((off, n)) = self.try_fill(map, len, new_pass) else {
            self.again = self.time_based || self.loops_left > 0;
            if self.again {
                self.end_loop(map, new_pass);
            }
            return None;
        };
        let d = self.dir;
        self.issues[(d as usize).min(1)] += 1;
        self.loop_bytes += n;
        if !self.time_based {
            if !self.sync && self.loop_bytes >= len {
                // fio's do_io: a loop ends once the bytes queued reach the
                // size (counted only for I/O the engine queues).
                self.end_loop(map, new_pass);
            } else if self.sync && map.free == 0 {
                // On a sync engine the loop goes on to the next
                // fill_io_u, which draws a direction and an offset,
                // finds the map full and fails: the file is done.
                if self.mixed {
                    self.rw_dir();
                }
                self.random.next();
                self.end_loop(map, new_pass);
            }
        }
        Some((d, off, n))
    }

    /// The end of a loop over the region (backend.c `thread_main`'s next
    /// turn: `clear_io_state`, and the file reopened resets its map).
    fn end_loop(&mut self, map: &mut BlockMap, new_pass: &mut bool) {
        if !self.time_based {
            self.loops_left = self.loops_left.saturating_sub(1);
        }
        self.new_loop();
        map.reset();
        *new_pass = true;
    }

    /// io_u.c `fill_io_u` for this I/O's direction, on a region of `len`
    /// bytes: the offset (`get_next_offset`), its size
    /// (`get_next_buflen`), and the mark in the map that may cut it
    /// (`mark_random_map`). Region-relative offset and length; `None`
    /// where fio's `fill_io_u` fails.
    fn try_fill(
        &mut self,
        map: &mut BlockMap,
        len: u64,
        new_pass: &mut bool,
    ) -> Option<(u64, u64)> {
        let i = (self.dir as usize).min(1);
        let unit = self.min_bs[i];
        // last_block: the region in this direction's unit.
        let lastb = self.lastb[i];
        if lastb == 0 {
            return None;
        }
        let b = match self.rand_block(map, lastb) {
            Some(b) => b,
            // get_next_rand_block: a time-based job starts the map over.
            None if self.time_based => {
                map.reset();
                *new_pass = true;
                self.rand_block(map, lastb)?
            }
            None => return None,
        };
        // get_next_offset: the map's next free block may lie past the
        // region in a direction whose unit is larger than the map's.
        let off = b.checked_mul(unit)?;
        if off >= len || off >= self.file_end {
            return None;
        }
        let mut n = self.buflen(i, off, len)?;
        if off + n > self.file_end {
            return None;
        }
        // mark_random_map, in this direction's unit.
        let got = map.set_nr(off / unit, n.div_ceil(unit));
        if got > 0 && got * unit < n {
            n = got * unit;
        }
        Some((off, n))
    }

    /// `NVME_BENCH_TRACE_IO`: write the I/O (absolute offset).
    #[cold]
    fn trace(&self, d: Dir, off: u64, n: u64) {
        if let Some(t) = &self.trace {
            use std::io::Write;
            let name = if d == Dir::Read { "read" } else { "write" };
            if let Ok(mut w) = t.lock() {
                let _ = writeln!(w, "{name} {off} {n}");
            }
        }
    }
}

/// [`Gen::pick_io`] on fio's streams: absolute offset and length, a
/// length of 0 where fio's `fill_io_u` fails. Out of line, so that the
/// permutation's path through `pick_io` stays as it was.
#[inline(never)]
fn fio_pick(
    f: &mut FioRand,
    map: &mut BlockMap,
    base: u64,
    len: u64,
    new_pass: &mut bool,
) -> (u64, u64) {
    match f.fill(map, len, new_pass) {
        Some((d, o, n)) => {
            if f.trace.is_some() {
                f.trace(d, base + o, n);
            }
            (base + o, n)
        }
        None => (base, 0),
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
    /// fio's own generators for the map's offsets, sizes and directions
    /// ([`Gen::follow_fio`]).
    fio: Option<Box<FioRand>>,
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
            fio: None,
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

    /// Draw offsets, sizes and directions as fio 3.33 does ([`FioRand`]),
    /// if this job is on fio's random map with varying block sizes
    /// (`rw=randread`/`randwrite`/`randrw`, `random_distribution=random`)
    /// and its only region is this one. `file_end`: how far the target
    /// goes past the region's start (fio's `real_file_size`).
    pub fn follow_fio(&mut self, job: &Job, seed: FioSeed, file_end: u64, sync: bool) {
        if self.map.is_none()
            || !matches!(self.rw, Rw::RandRead | Rw::RandWrite | Rw::RandRw)
            || self.modifier > 1
            || !matches!(job.random_distribution, Distribution::Random)
        {
            return;
        }
        let (r, w) = (job.bs_bounds(0), job.bs_bounds(1));
        // fio's rw_min_bs, over the three directions: the map's unit. A
        // trim takes the write's split or range, else its own size.
        let trim = if !job.bssplit[1].is_empty() || job.bsrange[1].is_some() {
            w.0
        } else {
            job.bs_trim
        };
        let unit = r.0.min(w.0).min(trim).max(1);
        let n = self.len / unit;
        if n == 0 || n > BlockMap::MAX_BLOCKS || r.0 == 0 || w.0 == 0 {
            return;
        }
        if self.map.as_ref().is_some_and(|m| m.n != n) {
            self.map = Some(BlockMap::new(n));
        }
        let sorted = |d: usize| {
            let mut v = job.bssplit[d].clone();
            // fio's qsort by percentage (bs_cmp; glibc's is stable).
            v.sort_by_key(|x| x.1);
            v
        };
        let trace = std::env::var_os("NVME_BENCH_TRACE_IO")
            .filter(|p| !p.is_empty())
            .and_then(|p| {
                let mut p = std::path::PathBuf::from(p).into_os_string();
                p.push(format!(".{}", seed.thread));
                std::fs::File::create(p).ok()
            })
            .map(|f| std::sync::Arc::new(std::sync::Mutex::new(std::io::BufWriter::new(f))));
        let mut f = FioRand {
            seed,
            verify: job.verify != crate::options::Verify::None,
            random: Taus::new(0, false),
            bsrange: [Taus::new(0, false), Taus::new(0, false)],
            rwmix: Taus::new(0, false),
            mixed: self.rw == Rw::RandRw,
            mix_pct: [
                u64::from(job.rwmixread.min(100)),
                u64::from(100 - job.rwmixread.min(100)),
            ],
            rwmix_dir: Dir::Read,
            rwmix_issues: 0,
            issues: [0; 2],
            dir: if self.rw == Rw::RandWrite {
                Dir::Write
            } else {
                Dir::Read
            },
            again: false,
            min_bs: [r.0, w.0],
            max_bs: [r.1, w.1],
            split: [sorted(0), sorted(1)],
            unit,
            lastb: [self.len / r.0, self.len / w.0],
            file_end,
            time_based: job.time_based,
            sync,
            loops_left: job.loops.saturating_sub(1),
            loop_bytes: 0,
            trace,
        };
        f.seed_streams();
        self.fio = Some(Box::new(f));
    }

    /// Whether fio's `fill_io_u` can fail before the region is moved
    /// (then [`Gen::pick_io`] gives no I/O and the loop, or the job, ends):
    /// following fio, a direction
    /// whose smallest size is larger than the map's unit draws and marks
    /// its offsets in its own unit, and may land past the region.
    pub fn may_end(&self) -> bool {
        self.fio.as_ref().is_some_and(|f| {
            let uses = [self.rw != Rw::RandWrite, self.rw != Rw::RandRead];
            (0..2).any(|i| uses[i] && f.min_bs[i] != f.unit)
        })
    }

    /// The direction drawn was changed (fio's `rate_ddir`): it is the one
    /// of the next I/O, and fio's current mix direction.
    pub fn set_dir(&mut self, d: Dir) {
        if let Some(f) = self.fio.as_deref_mut() {
            f.dir = d;
            if f.mixed {
                f.rwmix_dir = d;
            }
        }
    }

    /// After [`Gen::pick_io`] gave no I/O (length 0, where fio's
    /// `fill_io_u` fails; see [`Gen::may_end`]): whether another loop
    /// follows, whose first I/O is to be picked anew, direction first.
    /// Else the job is done.
    pub fn take_next_loop(&mut self) -> bool {
        self.fio
            .as_deref_mut()
            .is_some_and(|f| std::mem::take(&mut f.again))
    }

    /// [`Gen::pick_dir`], or fio's direction for a mixed job on fio's
    /// streams (io_u.c `get_rw_ddir`), for the general loop. Only that
    /// takes such a job ([`Gen::needs_general_loop`]): `pick_dir`, inlined
    /// in the fast path, stays as it was; and so does this for a job
    /// that is not mixed (the check is in the mixed arm alone).
    #[inline(never)]
    pub fn next_dir(&mut self) -> Dir {
        self.dir::<true>()
    }

    /// A job the fast path must leave to the general loop: its I/O may
    /// not be placed ([`Gen::may_end`]), or its directions are fio's
    /// ([`Gen::next_dir`]).
    pub fn needs_general_loop(&self) -> bool {
        self.may_end() || self.fio.as_ref().is_some_and(|f| f.mixed)
    }

    pub fn pick_dir(&mut self) -> Dir {
        self.dir::<false>()
    }

    /// [`Gen::pick_dir`]; `FIO`: a mixed job on fio's streams takes fio's
    /// direction ([`Gen::next_dir`]).
    #[inline(always)]
    fn dir<const FIO: bool>(&mut self) -> Dir {
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
                if FIO {
                    if let Some(f) = self.fio.as_deref_mut() {
                        return f.rw_dir();
                    }
                }
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
                if self.fio.is_some() {
                    // fio draws the size after the offset (pick_io); the
                    // size returned here is not used.
                    return hi;
                }
                // A multiple of min (as fio aligns them), uniformly among
                // those in [min, max].
                return lo * (1 + self.rng.below(hi / lo));
            }
            return self.bs[d as usize];
        }
        if self.fio.is_some() {
            // fio draws the size after the offset (pick_io); the size
            // returned here is not used.
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
                if let Some(f) = self.fio.as_deref_mut() {
                    self.drawn += 1;
                    return fio_pick(f, map, self.base, self.len, &mut self.new_pass);
                }
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
        if let Some(f) = self.fio.as_deref_mut() {
            f.new_loop();
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

    /// The first job of a job file given as text.
    fn one_job(text: &str) -> crate::options::Job {
        crate::options::parse_str(text).unwrap().jobs.remove(0)
    }

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
        let job = one_job("[j]\nrw=randread\nbssplit=4k/50:16k/30:64k/20\nsize=8m\n");
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
        let job = one_job("[p]\nrw=randread\nbs=4k\n");
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

    /// fio's streams and seeds (lib/rand.c, init.c, io_u.c): the first
    /// I/Os of `rw=randread size=32m bssplit=4k/50:16k/30:64k/20`, job 1,
    /// fio's default seeds, as fio 3.33 issues them (its `write_iolog`).
    #[test]
    fn fio_streams_issue_fios_first_ios() {
        let job = one_job("[j]\nrw=randread\nbssplit=4k/50:16k/30:64k/20\nsize=32m\n");
        let len = 32 << 20;
        let mut g = Gen::new(&job, 0, len, 7);
        let seed = FioSeed {
            randseed: 0x89,
            repeatable: true,
            reseed: true,
            thread: 1,
            taus64: false,
        };
        g.follow_fio(&job, seed, len, true);
        assert!(g.fio.is_some() && !g.may_end());
        let v: Vec<(u64, u64)> = (0..5)
            .map(|_| {
                let bs = g.pick_bs(Dir::Read);
                g.pick_io(bs)
            })
            .collect();
        assert_eq!(
            v,
            [
                (2_023_424, 65536),
                (24_838_144, 4096),
                (28_291_072, 4096),
                (15_769_600, 16384),
                (13_484_032, 4096)
            ]
        );
        // One block size keeps the permutation.
        let job = one_job("[j]\nrw=randread\nbs=4k\nsize=32m\n");
        let mut g = Gen::new(&job, 0, len, 7);
        g.follow_fio(&job, seed, len, true);
        assert!(g.fio.is_none() && g.perm.is_some());
    }

    /// lib/axmap.c `axmap_set_nr`: a run up to the first block set, word
    /// by word; inside the last word it runs past the map's end as fio's.
    #[test]
    fn set_nr_like_axmap() {
        let mut m = BlockMap::new(100);
        assert_eq!(m.set_nr(62, 3), 3);
        assert_eq!(m.set_nr(63, 4), 0);
        assert_eq!(m.set_nr(60, 4), 2);
        assert_eq!(m.free, 95);
        assert!(m.isset(64) && !m.isset(65) && !m.isset(1000));
        assert_eq!(m.set_nr(98, 4), 4);
        assert_eq!(m.free, 93);
        assert_eq!(m.next_free(99), Some(0));
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
        let job = one_job("[j]\nfilename=x\nrw=randrw\nbsrange=4k-16k,8k-8k\n");
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
        let job = one_job("[j]\nfilename=x\nrw=randrw\nbssplit=4k/50:64k/50\n");
        let mut g = Gen::new(&job, 1 << 20, 10 << 20, 7);
        for _ in 0..10_000 {
            let d = g.pick_dir();
            let bs = g.pick_bs(d);
            let off = g.pick_offset(bs);
            assert!(off >= 1 << 20 && off + bs <= 11 << 20);
            assert_eq!(off % 4096, 0);
        }
        let job = one_job("[j]\nfilename=x\nrw=write\nbs=4k\n");
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
        let job = one_job("[j]\nfilename=x\nrw=randread\nbs=4k\n");
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
        let job = one_job("[j]\nfilename=x\nrw=read:-8k\nbs=4k\n");
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
