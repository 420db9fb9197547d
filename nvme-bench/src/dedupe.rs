//! Write buffer contents as fio's `fill_io_buffer` (io_u.c) and dedupe.c
//! make them for `buffer_compress_percentage` and `dedupe_percentage`:
//! every write gets a fresh buffer (fio turns `refill_buffers` on for a
//! compress percentage), built from a "page" seed in chunks of
//! `buffer_compress_chunk` bytes, each (100 - compress)% random bytes then
//! zeros (or `buffer_pattern`), as `__fill_random_buf_percentage`.
//!
//! Which page: a new (unique) one, or, for `dedupe_percentage`% of the
//! writes (fio's `get_buf_state`), an earlier one: `dedupe_mode=repeat`
//! the last unique page, `working_set` a random one of the working set,
//! `dedupe_working_set_percentage`% of the job's size in pages: the job's
//! first unique pages, or with `dedupe_global=1` the first pages of every
//! job of the run, the set split evenly between them (dedupe.c
//! `init_dedupe_working_set_seeds`). Unique page `k` of job number `t` has
//! the same contents in every job, so pages repeat across jobs as in fio.
//! The bytes are not fio's (its generator differs); the share of duplicate
//! blocks is.

use crate::gen::Rng;
use crate::options::{DedupeMode, Job};

pub struct Dedupe {
    perc: u32,
    /// Working-set page seeds (`dedupe_mode=working_set`).
    ws: Option<Vec<u64>>,
    compress: u32,
    chunk: usize,
    pattern: Vec<u8>,
    choose: Rng,
    index: Rng,
    /// This job's thread number (1-based) and its next unique page.
    thread: u32,
    next_page: u64,
    prev: u64,
    base: u64,
}

fn page_seed(base: u64, thread: u32, page: u64) -> u64 {
    let mut z = base ^ (u64::from(thread) << 40) ^ page.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Dedupe {
    /// For a writing job with either percentage set; `thread` is the job's
    /// thread number (1-based), `threads` how many the run has.
    pub fn new(job: &Job, size: u64, thread: u32, threads: u32) -> Option<Dedupe> {
        if job.dedupe_percentage == 0 && job.compress_percentage == 0 {
            return None;
        }
        let base = job.randseed ^ 0xded0_0000_0000_0000_u64.rotate_left(7);
        let ws =
            (job.dedupe_percentage > 0 && job.dedupe_mode == DedupeMode::WorkingSet).then(|| {
                let bs = job.bs[1].max(1);
                let n = (size * u64::from(job.dedupe_working_set_percentage) / 100 / bs).max(1);
                let threads = threads.max(1);
                let per = (n / u64::from(threads)).max(1);
                (0..n)
                    .map(|i| {
                        let b = i / per;
                        if job.dedupe_global {
                            let t = ((u64::from(thread) - 1 + b) % u64::from(threads)) as u32 + 1;
                            page_seed(base, t, i - b * per)
                        } else {
                            page_seed(base, thread, i)
                        }
                    })
                    .collect()
            });
        Some(Dedupe {
            perc: job.dedupe_percentage,
            ws,
            compress: job.compress_percentage,
            chunk: job.compress_chunk.max(1) as usize,
            pattern: job.buffer_pattern.clone(),
            choose: Rng::new(job.randseed ^ u64::from(thread) ^ 0x0ded_0ded),
            index: Rng::new(job.randseed ^ u64::from(thread) ^ 0x1d1d_0ded),
            thread,
            next_page: 0,
            prev: page_seed(base, thread, 0),
            base,
        })
    }

    fn unique(&mut self) -> u64 {
        let s = page_seed(self.base, self.thread, self.next_page);
        self.next_page += 1;
        self.prev = s;
        s
    }

    /// Fill one write's buffer.
    pub fn fill(&mut self, buf: &mut [u8]) {
        let seed = match self.perc {
            0 => self.unique(),
            // fio: every buffer from the same state.
            100 => self.prev,
            p => {
                let v = self.choose.below(100) as u32 + 1;
                if v <= p {
                    match &self.ws {
                        Some(ws) => ws[self.index.below(ws.len() as u64) as usize],
                        None => self.prev,
                    }
                } else {
                    self.unique()
                }
            }
        };
        let mut r = Rng::new(seed);
        for c in buf.chunks_mut(self.chunk) {
            let rand_len = c.len() * (100 - self.compress as usize) / 100;
            let (a, b) = c.split_at_mut(rand_len);
            for w in a.chunks_mut(8) {
                let v = r.next_u64().to_le_bytes();
                w.copy_from_slice(&v[..w.len()]);
            }
            if self.pattern.is_empty() {
                b.fill(0);
            } else {
                for (i, x) in b.iter_mut().enumerate() {
                    *x = self.pattern[i % self.pattern.len()];
                }
            }
        }
    }
}
