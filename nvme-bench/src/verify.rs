//! verify=crc32c|pattern|md5|sha*|crc32|meta: every block carries a
//! header (magic, length, offset, seed, generation) and a checksum, so a
//! block written to the wrong place (misplaced), an older write (stale),
//! data of another run (foreign seed) and corrupted bytes are each caught
//! and named.
//!
//! Layout (little-endian): magic 0..4, length 4..8, offset 8..16, seed
//! 16..24, generation 24..28. With crc32c (and pattern) bytes 28..32 hold
//! the CRC32C of bytes 0..28 and of the data after the header (32..). With
//! a digest (`verify=md5` etc., [`HashKind`]) bytes 28..32 name the digest
//! (`0x4853_0000 + index`) and the digest follows at 32, taken over bytes
//! 0..32 and the data after it; the header is then 32 + the digest's
//! length. With `verify=meta` (fio's VERIFY_HDR_ONLY) bytes 28..32 hold
//! the CRC32C of bytes 0..28 only: the header is checked, and the data
//! only against `verify_pattern` when one is given (else it is not
//! checked, as fio's). Like fio's own headers, this format is ours: fio
//! cannot check nvme-bench's blocks nor the reverse.
//!
//! `verify_interval=N` (fio's get_hdr_inc): a block is N-byte intervals,
//! each with its own header (length N, offset of the interval) and
//! checksum over that interval, checked on its own; the pattern runs on
//! across the intervals from the block's first byte.

use crate::gen::Rng;
use crate::hash;
use crate::options::HashKind;

const MAGIC: u32 = 0x424d_564e; // "NVMB"
pub const HEADER: usize = 32;

/// The header's length for a block checked with `hash` (None: crc32c).
pub fn header_len(hash: Option<HashKind>) -> usize {
    HEADER + hash.map_or(0, HashKind::len)
}

fn hash_code(h: HashKind) -> u32 {
    let i = HashKind::ALL.iter().position(|x| *x == h).unwrap_or(0);
    0x4853_0000 + i as u32
}

/// The digest of a block's header fields (0..32) and its data.
fn block_digest(h: HashKind, buf: &[u8]) -> Vec<u8> {
    let hl = header_len(Some(h));
    // The digests take one slice: hash a copy with the digest field left out.
    let mut m = Vec::with_capacity(buf.len() - h.len());
    m.extend_from_slice(&buf[..HEADER]);
    m.extend_from_slice(&buf[hl..]);
    hash::digest(h, &m)
}

/// Any generation is accepted (a read job checking an earlier run's data).
pub const ANY_GEN: u32 = u32::MAX;

/// How a job's blocks are made and checked.
#[derive(Clone, Copy, Default)]
pub struct Spec<'a> {
    /// The data after each header (None: random bytes from the seed).
    pub pattern: Option<&'a [u8]>,
    /// A digest in place of crc32c.
    pub hash: Option<HashKind>,
    /// `verify=meta`: the header's own CRC, the data unchecked but for
    /// the pattern.
    pub meta: bool,
    /// Bytes per header (`verify_interval`; 0: the whole block).
    pub interval: usize,
    /// `verify_fatal`: as fio's verify_io_u, the first interval that
    /// fails decides the block (no later interval is checked).
    pub fatal: bool,
}

impl Spec<'_> {
    fn pattern(&self) -> Option<&[u8]> {
        self.pattern.filter(|p| !p.is_empty())
    }
    fn step(&self, len: usize) -> usize {
        if self.interval == 0 || self.interval > len {
            len.max(1)
        } else {
            self.interval
        }
    }
}

/// Fill a block to be written at `offset`: a header every
/// `spec.interval` bytes.
pub fn fill(buf: &mut [u8], offset: u64, seed: u64, generation: u32, spec: &Spec) {
    let step = spec.step(buf.len());
    for (k, c) in buf.chunks_mut(step).enumerate() {
        let at = k * step;
        fill_one(c, offset + at as u64, seed, generation, at, spec);
    }
}

/// One interval: `phase` is its place in the block (the pattern's).
fn fill_one(buf: &mut [u8], offset: u64, seed: u64, generation: u32, phase: usize, spec: &Spec) {
    let len = buf.len();
    let hash = spec.hash;
    let hl = header_len(hash).min(len);
    match spec.pattern() {
        Some(p) => {
            for (i, b) in buf[hl..].iter_mut().enumerate() {
                *b = p[(phase + hl + i) % p.len()];
            }
        }
        None => {
            let mut r = Rng::new(seed ^ offset.rotate_left(20) ^ u64::from(generation) << 40);
            for w in buf[hl..].chunks_mut(8) {
                let v = r.next_u64().to_le_bytes();
                w.copy_from_slice(&v[..w.len()]);
            }
        }
    }
    if len < header_len(hash) {
        return;
    }
    buf[0..4].copy_from_slice(&MAGIC.to_le_bytes());
    buf[4..8].copy_from_slice(&(len as u32).to_le_bytes());
    buf[8..16].copy_from_slice(&offset.to_le_bytes());
    buf[16..24].copy_from_slice(&seed.to_le_bytes());
    buf[24..28].copy_from_slice(&generation.to_le_bytes());
    match hash {
        None if spec.meta => {
            let crc = crc32c::crc32c(&buf[..28]);
            buf[28..32].copy_from_slice(&crc.to_le_bytes());
        }
        None => {
            let crc = block_crc(buf);
            buf[28..32].copy_from_slice(&crc.to_le_bytes());
        }
        Some(h) => {
            buf[28..32].copy_from_slice(&hash_code(h).to_le_bytes());
            let d = block_digest(h, buf);
            buf[HEADER..hl].copy_from_slice(&d);
        }
    }
}

fn block_crc(buf: &[u8]) -> u32 {
    let c = crc32c::crc32c(&buf[..28]);
    crc32c::crc32c_append(c, &buf[HEADER..])
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}
fn u64_at(b: &[u8], i: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[i..i + 8]);
    u64::from_le_bytes(a)
}

/// The header's magic (the block is at least [`HEADER`] bytes): an error
/// unless a verify job of ours wrote the block.
fn check_magic(buf: &[u8]) -> Result<(), String> {
    let magic = u32_at(buf, 0);
    if magic != MAGIC {
        Err(format!(
            "no verify header (magic {magic:#010x}, expected {MAGIC:#010x}): never written by a verify job, or overwritten"
        ))
    } else {
        Ok(())
    }
}

/// The header's own fields (the interval is at least [`HEADER`] bytes):
/// length, offset, seed and, unless `expect_gen` is [`ANY_GEN`], the
/// generation must be those this job wrote there. An error names the
/// first that is not. Shared by [`check`] and [`dump`].
fn check_fields(buf: &[u8], offset: u64, seed: u64, expect_gen: u32) -> Result<(), String> {
    let len = u32_at(buf, 4) as usize;
    if len != buf.len() {
        return Err(format!(
            "header length {len} differs from the block size {}",
            buf.len()
        ));
    }
    let at = u64_at(buf, 8);
    if at != offset {
        return Err(format!(
            "misplaced: this block was written for offset {at} ({at:#x})"
        ));
    }
    let s = u64_at(buf, 16);
    if s != seed {
        return Err(format!(
            "stale: data of another run (seed {s:#x}, this job's is {seed:#x})"
        ));
    }
    let g = u32_at(buf, 24);
    if expect_gen != ANY_GEN && g != expect_gen {
        return Err(format!(
            "stale: generation {g} on the medium, the last write was generation {expect_gen}"
        ));
    }
    Ok(())
}

/// What checking a block found: `failed`, the failure that fails the
/// I/O; `logged`, failures fio reports and lets through (see [`check`]).
#[derive(Debug, Default)]
pub struct Checked {
    pub failed: Option<String>,
    pub logged: Vec<String>,
}

/// Check a block read from `offset`. `expect_gen` is the generation this
/// job last wrote there ([`ANY_GEN`]: unknown).
///
/// With intervals, each is checked on its own and a failure names the
/// interval (fio's "at file ... offset O, length N"), as fio's
/// verify_io_u: a header that fails (magic, length, offset, seed,
/// generation; with meta its CRC) fails the block at once; a checksum or
/// pattern that fails is reported, but the next interval's result takes
/// its place, so only the last interval's data decides (fio 3.33 to 3.42
/// without `verify_fatal`): a data failure in an earlier interval is
/// `logged`, not `failed`. With `verify_fatal` the first failure decides.
pub fn check(buf: &[u8], offset: u64, seed: u64, expect_gen: u32, spec: &Spec) -> Checked {
    let step = spec.step(buf.len());
    let mut out = Checked::default();
    for (k, c) in buf.chunks(step).enumerate() {
        let at = k * step;
        let name = |e: String| {
            if step < buf.len() {
                format!(
                    "interval {k} (offset {}, length {}): {e}",
                    offset + at as u64,
                    c.len()
                )
            } else {
                e
            }
        };
        match check_one(c, offset + at as u64, seed, expect_gen, at, spec) {
            Ok(()) => out.logged.extend(out.failed.take()),
            Err((true, e)) => {
                out.logged.extend(out.failed.take());
                out.failed = Some(name(e));
                return out;
            }
            Err((false, e)) => {
                let e = name(e);
                out.logged.extend(out.failed.replace(e));
                if spec.fatal {
                    return out;
                }
            }
        }
    }
    out
}

/// One interval; a failure says whether it is the header's (true: fio
/// returns at once) or the data's.
fn check_one(
    buf: &[u8],
    offset: u64,
    seed: u64,
    expect_gen: u32,
    phase: usize,
    spec: &Spec,
) -> Result<(), (bool, String)> {
    let hash = spec.hash;
    let hl = header_len(hash);
    let hdr = |m: String| Err((true, m));
    let data = |m: String| Err((false, m));
    if buf.len() < hl {
        return hdr(format!(
            "block of {} bytes is too short to verify",
            buf.len()
        ));
    }
    check_magic(buf).map_err(|e| (true, e))?;
    check_fields(buf, offset, seed, expect_gen).map_err(|e| (true, e))?;
    match hash {
        None if spec.meta => {
            let crc = u32_at(buf, 28);
            let want = crc32c::crc32c(&buf[..28]);
            if crc != want {
                return hdr(format!(
                    "corrupted header: crc32c {want:#010x} over the header, header says {crc:#010x}"
                ));
            }
        }
        None => {
            let crc = u32_at(buf, 28);
            let want = block_crc(buf);
            if crc != want {
                return data(format!(
                    "corrupted: crc32c {want:#010x} over the block, header says {crc:#010x}"
                ));
            }
        }
        Some(h) => {
            let code = u32_at(buf, 28);
            if code != hash_code(h) {
                let other = HashKind::ALL
                    .iter()
                    .find(|x| hash_code(**x) == code)
                    .map_or("crc32c or another tool's", |x| x.name());
                return data(format!(
                    "verify type mismatch: the block was written with verify={other}, this job checks {}",
                    h.name()
                ));
            }
            let want = block_digest(h, buf);
            if buf[HEADER..hl] != want[..] {
                return data(format!(
                    "corrupted: {} {} over the block, header says {}",
                    h.name(),
                    hex(&want),
                    hex(&buf[HEADER..hl])
                ));
            }
        }
    }
    if let Some(p) = spec.pattern() {
        for (i, b) in buf[hl..].iter().enumerate() {
            let want = p[(phase + hl + i) % p.len()];
            if *b != want {
                return data(format!(
                    "pattern mismatch at byte {}: got {b:#04x}, wanted {want:#04x}",
                    hl + i
                ));
            }
        }
    }
    Ok(())
}

/// `verify_dump`: a failed block goes to files named as fio's dump_buf
/// (`BASENAME.OFFSET.TYPE` in the working directory). When the block's
/// header is its own (magic, length, offset, seed and, if known, the
/// generation) the data is what differs: the block read goes to
/// `.received` and the block this job wrote there, made again, to
/// `.expected`; otherwise the header failed and the block read goes to
/// `.hdr_fail`, as fio. Returns fio's lines naming the files.
#[allow(clippy::too_many_arguments)]
pub fn dump(
    path: &str,
    buf: &[u8],
    offset: u64,
    seed: u64,
    expect_gen: u32,
    spec: &Spec,
) -> String {
    let base = std::path::Path::new(path)
        .file_name()
        .map_or_else(|| path.to_string(), |b| b.to_string_lossy().into_owned());
    // The first interval's header (the whole block's without intervals).
    let first = &buf[..spec.step(buf.len()).min(buf.len())];
    let own = first.len() >= HEADER
        && check_magic(first).is_ok()
        && check_fields(first, offset, seed, expect_gen).is_ok();
    let mut files: Vec<(&str, Vec<u8>)> = Vec::new();
    if own {
        let gen = if expect_gen == ANY_GEN {
            u32_at(buf, 24)
        } else {
            expect_gen
        };
        let mut want = vec![0u8; buf.len()];
        fill(&mut want, offset, seed, gen, spec);
        files.push(("received", buf.to_vec()));
        files.push(("expected", want));
    } else {
        files.push(("hdr_fail", buf.to_vec()));
    }
    let mut out = String::new();
    for (kind, data) in files {
        let name = format!("{base}.{offset}.{kind}");
        match std::fs::write(&name, &data) {
            Ok(()) => out += &format!("\n       {kind} data dumped as {name}"),
            Err(e) => out += &format!("\n       could not dump {kind} data as {name}: {e}"),
        }
    }
    out
}

/// The blocks a verifying job wrote, as fio's io_piece log (iolog.c
/// `log_io_piece`): each write logs its block; the verify pass (and
/// `verify_backlog`) reads logged blocks back and takes them off. Also the
/// generation last written to each block, so a stale block is caught.
///
/// fio keeps a list in write order when the file has a random map (random
/// I/O without `norandommap`), else a tree by (file, offset) that keeps
/// one entry per block: `fifo` picks the first, the lowest pending block
/// the second.
pub struct Written {
    /// Per file: the region's first byte and its first block index.
    regions: Vec<(u64, u64)>,
    bs: u64,
    nblocks: u64,
    gens: Vec<u32>,
    pending: Vec<u64>,
    /// Logged blocks whose write has not completed (fio's IP_F_IN_FLIGHT).
    flying: Vec<u64>,
    npending: u64,
    /// No pending block below this index (tree order).
    lowest: u64,
    fifo: Option<std::collections::VecDeque<u32>>,
}

/// Blocks a verifying job can track (the generation array's bound).
pub const MAX_BLOCKS: u64 = 64 << 20;

impl Written {
    /// `regions`: per file, (first byte, length) of the job's I/O there.
    /// `all`: every block is logged from the start with any generation
    /// (`verify_only`, checking an earlier run's data).
    pub fn new(regions: &[(u64, u64)], bs: u64, fifo: bool, all: bool) -> Result<Self, String> {
        let bs = bs.max(1);
        let mut r = Vec::with_capacity(regions.len());
        let mut n = 0u64;
        for &(off, len) in regions {
            r.push((off, n));
            n = n.saturating_add(len / bs);
        }
        if n > MAX_BLOCKS {
            return Err(format!(
                "verify over {n} blocks: too many to track (at most 64 Mi blocks)"
            ));
        }
        let words = n.div_ceil(64) as usize;
        let mut w = Written {
            regions: r,
            bs,
            nblocks: n,
            gens: vec![if all { ANY_GEN } else { 0 }; n as usize],
            pending: vec![0; words],
            flying: vec![0; words],
            npending: 0,
            lowest: 0,
            fifo: fifo.then(std::collections::VecDeque::new),
        };
        if all {
            for i in 0..n {
                w.log(i);
            }
        }
        Ok(w)
    }

    fn index(&self, file: usize, off: u64) -> Option<u64> {
        let &(start, first) = self.regions.get(file)?;
        let i = first + off.checked_sub(start)? / self.bs;
        let end = self.regions.get(file + 1).map_or(self.nblocks, |&(_, f)| f);
        (i < end).then_some(i)
    }

    fn log(&mut self, i: u64) {
        let (w, b) = ((i / 64) as usize, i % 64);
        if self.pending[w] & (1 << b) == 0 {
            self.pending[w] |= 1 << b;
            self.npending += 1;
            self.lowest = self.lowest.min(i);
            if let Some(q) = &mut self.fifo {
                q.push_back(i as u32);
            }
        }
    }

    fn unlog(&mut self, i: u64) -> bool {
        let (w, b) = ((i / 64) as usize, i % 64);
        let was = self.pending[w] & (1 << b) != 0;
        self.pending[w] &= !(1 << b);
        if was {
            self.npending -= 1;
        }
        was
    }

    /// A write of the block at `off` of `file` is issued: logged, in
    /// flight, and its new generation (None: the offset is outside the
    /// job's blocks).
    pub fn wrote(&mut self, file: usize, off: u64) -> Option<u32> {
        let i = self.index(file, off)?;
        let g = self.gens[i as usize].wrapping_add(1).max(1);
        self.gens[i as usize] = g;
        self.log(i);
        self.flying[(i / 64) as usize] |= 1 << (i % 64);
        Some(g)
    }

    /// The write of that block completed; a failed one is taken off the
    /// log (fio's `unlog_io_piece`).
    pub fn landed(&mut self, file: usize, off: u64, ok: bool) {
        if let Some(i) = self.index(file, off) {
            self.flying[(i / 64) as usize] &= !(1 << (i % 64));
            if !ok {
                self.unlog(i);
            }
        }
    }

    /// Blocks logged and not yet read back (fio's `io_hist_len`).
    pub fn logged(&self) -> u64 {
        self.npending
    }

    fn is_flying(&self, i: u64) -> bool {
        self.flying[(i / 64) as usize] & (1 << (i % 64)) != 0
    }

    /// The next logged block to read back: (file, offset, generation),
    /// taken off the log. None also when the first logged block's write
    /// is still in flight (fio's get_next_verify: "nothing").
    pub fn next(&mut self) -> Option<(usize, u64, u32)> {
        let i = loop {
            if self.npending == 0 {
                return None;
            }
            match &self.fifo {
                Some(q) => {
                    let i = u64::from(*q.front()?);
                    if self.is_flying(i) && self.pending[(i / 64) as usize] & (1 << (i % 64)) != 0 {
                        return None;
                    }
                    if let Some(q) = &mut self.fifo {
                        q.pop_front();
                    }
                    if self.unlog(i) {
                        break i;
                    }
                }
                None => {
                    let mut w = (self.lowest / 64) as usize;
                    while w < self.pending.len() && self.pending[w] == 0 {
                        w += 1;
                    }
                    let word = *self.pending.get(w)?;
                    let i = w as u64 * 64 + u64::from(word.trailing_zeros());
                    self.lowest = i;
                    if self.is_flying(i) {
                        return None;
                    }
                    self.unlog(i);
                    self.lowest = i + 1;
                    break i;
                }
            }
        };
        let f = self.regions.partition_point(|&(_, first)| first <= i) - 1;
        let (start, first) = self.regions[f];
        Some((f, start + (i - first) * self.bs, self.gens[i as usize]))
    }

    /// Forget every logged block (fio's `prune_io_piece_log`).
    pub fn prune(&mut self) {
        self.pending.iter_mut().for_each(|w| *w = 0);
        self.flying.iter_mut().for_each(|w| *w = 0);
        self.npending = 0;
        self.lowest = 0;
        if let Some(q) = &mut self.fifo {
            q.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The failure of a check, as a Result.
    fn check(buf: &[u8], offset: u64, seed: u64, g: u32, spec: &Spec) -> Result<(), String> {
        match super::check(buf, offset, seed, g, spec).failed {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn sp<'a>(pattern: Option<&'a [u8]>, hash: Option<HashKind>) -> Spec<'a> {
        Spec {
            pattern,
            hash,
            ..Spec::default()
        }
    }

    #[test]
    fn intervals_and_meta() {
        let p = [0xaa, 0x55, 0x5a, 0xa5];
        let meta = Spec {
            pattern: Some(&p),
            meta: true,
            interval: 512,
            ..Spec::default()
        };
        let mut b = vec![0u8; 4096];
        fill(&mut b, 65536, 7, 1, &meta);
        assert!(check(&b, 65536, 7, 1, &meta).is_ok());
        // Each interval has its own header: offset and length of its own.
        assert_eq!(u64_at(&b, 512 + 8), 65536 + 512);
        assert_eq!(u32_at(&b, 512 + 4), 512);
        // The pattern runs on across the intervals (fio's phase).
        assert_eq!(b[512 + 32], p[(512 + 32) % 4]);
        // A data byte in the second interval: the pattern catches it, but
        // as fio's the last interval decides: reported, not failed.
        let mut c = b.clone();
        c[700] ^= 1;
        let r = super::check(&c, 65536, 7, 1, &meta);
        assert!(r.failed.is_none(), "{r:?}");
        assert_eq!(r.logged.len(), 1);
        assert!(
            r.logged[0].starts_with("interval 1 (offset 66048, length 512): pattern mismatch"),
            "{r:?}"
        );
        // In the last interval it fails the block.
        c[4000] ^= 1;
        let r = super::check(&c, 65536, 7, 1, &meta);
        assert!(r.failed.is_some_and(|e| e.starts_with("interval 7")));
        assert_eq!(r.logged.len(), 1);
        // A header byte of the second interval: its CRC catches it, even
        // without a pattern (meta checks headers only).
        let nopat = Spec {
            pattern: None,
            ..meta
        };
        fill(&mut b, 65536, 7, 1, &nopat);
        let mut c = b.clone();
        c[700] ^= 1;
        assert!(check(&c, 65536, 7, 1, &nopat).is_ok());
        c[512 + 30] ^= 1;
        let e = check(&c, 65536, 7, 1, &nopat).unwrap_err();
        assert!(
            e.contains("interval 1") && e.contains("corrupted header"),
            "{e}"
        );
        // One header per block (no interval): the same change is data.
        let whole = Spec {
            interval: 0,
            ..nopat
        };
        fill(&mut b, 65536, 7, 1, &whole);
        b[512 + 9] ^= 1;
        assert!(check(&b, 65536, 7, 1, &whole).is_ok());
        // A block copied to another offset: misplaced.
        fill(&mut b, 65536, 7, 1, &meta);
        let e = check(&b, 0, 7, 1, &meta).unwrap_err();
        assert!(e.contains("misplaced"), "{e}");
    }

    #[test]
    fn catches_each_kind() {
        let mut b = vec![0u8; 4096];
        fill(&mut b, 8192, 7, 3, &sp(None, None));
        assert!(check(&b, 8192, 7, 3, &sp(None, None)).is_ok());
        assert!(check(&b, 8192, 7, ANY_GEN, &sp(None, None)).is_ok());
        assert!(check(&b, 4096, 7, 3, &sp(None, None))
            .unwrap_err()
            .contains("misplaced"));
        assert!(check(&b, 8192, 7, 4, &sp(None, None))
            .unwrap_err()
            .contains("stale"));
        assert!(check(&b, 8192, 8, 3, &sp(None, None))
            .unwrap_err()
            .contains("another run"));
        let mut c = b.clone();
        c[1000] ^= 1;
        assert!(check(&c, 8192, 7, 3, &sp(None, None))
            .unwrap_err()
            .contains("corrupted"));
        assert!(check(&[0u8; 4096], 0, 7, 3, &sp(None, None))
            .unwrap_err()
            .contains("no verify header"));
        let p = [0xde, 0xad];
        fill(&mut b, 0, 7, 1, &sp(Some(&p), None));
        assert!(check(&b, 0, 7, 1, &sp(Some(&p), None)).is_ok());
        assert_eq!(b[100], 0xde);
    }

    #[test]
    fn digests_catch_each_kind() {
        for h in HashKind::ALL {
            let mut b = vec![0u8; 512];
            fill(&mut b, 4096, 7, 2, &sp(None, Some(h)));
            assert!(check(&b, 4096, 7, 2, &sp(None, Some(h))).is_ok(), "{h:?}");
            assert!(check(&b, 0, 7, 2, &sp(None, Some(h)))
                .unwrap_err()
                .contains("misplaced"));
            for at in [5, HEADER + 1, 511] {
                let mut c = b.clone();
                c[at] ^= 0x10;
                let e = check(&c, 4096, 7, 2, &sp(None, Some(h))).unwrap_err();
                assert!(
                    e.contains("corrupted") || e.contains("length"),
                    "{h:?} {at}: {e}"
                );
            }
            let other = if h == HashKind::Md5 {
                HashKind::Sha1
            } else {
                HashKind::Md5
            };
            let e = check(&b, 4096, 7, 2, &sp(None, Some(other))).unwrap_err();
            assert!(
                e.contains(&format!("written with verify={}", h.name())),
                "{e}"
            );
            let e = check(&b, 4096, 7, 2, &sp(None, None)).unwrap_err();
            assert!(e.contains("corrupted: crc32c"), "{e}");
            let p = [1, 2, 3];
            fill(&mut b, 4096, 7, 2, &sp(Some(&p), Some(h)));
            assert!(check(&b, 4096, 7, 2, &sp(Some(&p), Some(h))).is_ok());
        }
    }

    #[test]
    fn written_log_orders() {
        // Tree order (lowest first, one entry per block) over two files.
        let mut w = Written::new(&[(0, 4096 * 4), (8192, 4096 * 2)], 4096, false, false).unwrap();
        assert_eq!(w.wrote(1, 8192 + 4096), Some(1));
        assert_eq!(w.wrote(0, 4096 * 2), Some(1));
        assert_eq!(w.wrote(0, 4096 * 2), Some(2));
        assert_eq!(w.wrote(0, 4096 * 4), None);
        assert_eq!(w.npending, 2);
        // The lowest block's write is in flight: nothing yet.
        assert_eq!(w.next(), None);
        w.landed(0, 8192, true);
        assert_eq!(w.next(), Some((0, 8192, 2)));
        assert_eq!(w.wrote(0, 0), Some(1));
        w.landed(0, 0, true);
        assert_eq!(w.next(), Some((0, 0, 1)));
        assert_eq!(w.next(), None);
        w.landed(1, 12288, true);
        assert_eq!(w.next(), Some((1, 12288, 1)));
        assert_eq!(w.next(), None);
        // Write order (fio's list).
        let mut w = Written::new(&[(0, 4096 * 4)], 4096, true, false).unwrap();
        w.wrote(0, 12288);
        w.wrote(0, 0);
        w.landed(0, 0, true);
        assert_eq!(w.next(), None);
        w.landed(0, 12288, true);
        assert_eq!(w.next(), Some((0, 12288, 1)));
        assert_eq!(w.next(), Some((0, 0, 1)));
        w.wrote(0, 4096);
        w.landed(0, 4096, false);
        assert_eq!(w.logged(), 0);
        w.wrote(0, 8192);
        assert_eq!(w.logged(), 1);
        w.prune();
        assert_eq!(w.next(), None);
        let mut w = Written::new(&[(0, 4096 * 2)], 4096, false, true).unwrap();
        assert_eq!(w.next(), Some((0, 0, ANY_GEN)));
        assert_eq!(w.next(), Some((0, 4096, ANY_GEN)));
    }
}
