//! verify=crc32c|pattern|md5|sha*|crc32: every block carries a header
//! (magic, length, offset, seed, generation) and a checksum over the whole
//! block, so a block written to the wrong place (misplaced), an older write
//! (stale), data of another run (foreign seed) and corrupted bytes are each
//! caught and named.
//!
//! Layout (little-endian): magic 0..4, length 4..8, offset 8..16, seed
//! 16..24, generation 24..28. With crc32c (and pattern) bytes 28..32 hold
//! the CRC32C of bytes 0..28 and of the data after the header (32..). With
//! a digest (`verify=md5` etc., [`HashKind`]) bytes 28..32 name the digest
//! (`0x4853_0000 + index`) and the digest follows at 32, taken over bytes
//! 0..32 and the data after it; the header is then 32 + the digest's
//! length. Like fio's own headers, this format is ours: fio cannot check
//! nvme-bench's blocks nor the reverse.

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

/// Fill a block to be written at `offset`.
pub fn fill(
    buf: &mut [u8],
    offset: u64,
    seed: u64,
    generation: u32,
    pattern: Option<&[u8]>,
    hash: Option<HashKind>,
) {
    let len = buf.len();
    let hl = header_len(hash);
    match pattern {
        Some(p) if !p.is_empty() => {
            for (i, b) in buf[hl..].iter_mut().enumerate() {
                *b = p[(hl + i) % p.len()];
            }
        }
        _ => {
            let mut r = Rng::new(seed ^ offset.rotate_left(20) ^ u64::from(generation) << 40);
            for w in buf[hl..].chunks_mut(8) {
                let v = r.next_u64().to_le_bytes();
                w.copy_from_slice(&v[..w.len()]);
            }
        }
    }
    buf[0..4].copy_from_slice(&MAGIC.to_le_bytes());
    buf[4..8].copy_from_slice(&(len as u32).to_le_bytes());
    buf[8..16].copy_from_slice(&offset.to_le_bytes());
    buf[16..24].copy_from_slice(&seed.to_le_bytes());
    buf[24..28].copy_from_slice(&generation.to_le_bytes());
    match hash {
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

/// Check a block read from `offset`. `expect_gen` is the generation this
/// job last wrote there ([`ANY_GEN`]: unknown).
pub fn check(
    buf: &[u8],
    offset: u64,
    seed: u64,
    expect_gen: u32,
    pattern: Option<&[u8]>,
    hash: Option<HashKind>,
) -> Result<(), String> {
    let hl = header_len(hash);
    if buf.len() < hl {
        return Err(format!(
            "block of {} bytes is too short to verify",
            buf.len()
        ));
    }
    let magic = u32_at(buf, 0);
    if magic != MAGIC {
        return Err(format!(
            "no verify header (magic {magic:#010x}, expected {MAGIC:#010x}): never written by a verify job, or overwritten"
        ));
    }
    match hash {
        None => {
            let crc = u32_at(buf, 28);
            let want = block_crc(buf);
            if crc != want {
                return Err(format!(
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
                return Err(format!(
                    "verify type mismatch: the block was written with verify={other}, this job checks {}",
                    h.name()
                ));
            }
            let want = block_digest(h, buf);
            if buf[HEADER..hl] != want[..] {
                return Err(format!(
                    "corrupted: {} {} over the block, header says {}",
                    h.name(),
                    hex(&want),
                    hex(&buf[HEADER..hl])
                ));
            }
        }
    }
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
    if let Some(p) = pattern.filter(|p| !p.is_empty()) {
        for (i, b) in buf[hl..].iter().enumerate() {
            if *b != p[(hl + i) % p.len()] {
                return Err(format!("pattern mismatch at byte {}", hl + i));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catches_each_kind() {
        let mut b = vec![0u8; 4096];
        fill(&mut b, 8192, 7, 3, None, None);
        assert!(check(&b, 8192, 7, 3, None, None).is_ok());
        assert!(check(&b, 8192, 7, ANY_GEN, None, None).is_ok());
        assert!(check(&b, 4096, 7, 3, None, None)
            .unwrap_err()
            .contains("misplaced"));
        assert!(check(&b, 8192, 7, 4, None, None)
            .unwrap_err()
            .contains("stale"));
        assert!(check(&b, 8192, 8, 3, None, None)
            .unwrap_err()
            .contains("another run"));
        let mut c = b.clone();
        c[1000] ^= 1;
        assert!(check(&c, 8192, 7, 3, None, None)
            .unwrap_err()
            .contains("corrupted"));
        assert!(check(&[0u8; 4096], 0, 7, 3, None, None)
            .unwrap_err()
            .contains("no verify header"));
        let p = [0xde, 0xad];
        fill(&mut b, 0, 7, 1, Some(&p), None);
        assert!(check(&b, 0, 7, 1, Some(&p), None).is_ok());
        assert_eq!(b[100], 0xde);
    }

    #[test]
    fn digests_catch_each_kind() {
        for h in HashKind::ALL {
            let mut b = vec![0u8; 512];
            fill(&mut b, 4096, 7, 2, None, Some(h));
            assert!(check(&b, 4096, 7, 2, None, Some(h)).is_ok(), "{h:?}");
            assert!(check(&b, 0, 7, 2, None, Some(h))
                .unwrap_err()
                .contains("misplaced"));
            for at in [5, HEADER + 1, 511] {
                let mut c = b.clone();
                c[at] ^= 0x10;
                let e = check(&c, 4096, 7, 2, None, Some(h)).unwrap_err();
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
            let e = check(&b, 4096, 7, 2, None, Some(other)).unwrap_err();
            assert!(
                e.contains(&format!("written with verify={}", h.name())),
                "{e}"
            );
            let e = check(&b, 4096, 7, 2, None, None).unwrap_err();
            assert!(e.contains("corrupted: crc32c"), "{e}");
            let p = [1, 2, 3];
            fill(&mut b, 4096, 7, 2, Some(&p), Some(h));
            assert!(check(&b, 4096, 7, 2, Some(&p), Some(h)).is_ok());
        }
    }
}
