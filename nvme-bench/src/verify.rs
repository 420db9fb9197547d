//! verify=crc32c|pattern: every block carries a header (magic, length,
//! offset, seed, generation) and a CRC32C over the whole block, so a block
//! written to the wrong place (misplaced), an older write (stale), data of
//! another run (foreign seed) and corrupted bytes are each caught and named.

use crate::gen::Rng;

const MAGIC: u32 = 0x424d_564e; // "NVMB"
pub const HEADER: usize = 32;

/// Any generation is accepted (a read job checking an earlier run's data).
pub const ANY_GEN: u32 = u32::MAX;

/// Fill a block to be written at `offset`.
pub fn fill(buf: &mut [u8], offset: u64, seed: u64, generation: u32, pattern: Option<&[u8]>) {
    let len = buf.len();
    match pattern {
        Some(p) if !p.is_empty() => {
            for (i, b) in buf[HEADER..].iter_mut().enumerate() {
                *b = p[(HEADER + i) % p.len()];
            }
        }
        _ => {
            let mut r = Rng::new(seed ^ offset.rotate_left(20) ^ u64::from(generation) << 40);
            for w in buf[HEADER..].chunks_mut(8) {
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
    let crc = block_crc(buf);
    buf[28..32].copy_from_slice(&crc.to_le_bytes());
}

fn block_crc(buf: &[u8]) -> u32 {
    let c = crc32c::crc32c(&buf[..28]);
    crc32c::crc32c_append(c, &buf[HEADER..])
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
) -> Result<(), String> {
    if buf.len() < HEADER {
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
    let crc = u32_at(buf, 28);
    let want = block_crc(buf);
    if crc != want {
        return Err(format!(
            "corrupted: crc32c {want:#010x} over the block, header says {crc:#010x}"
        ));
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
        for (i, b) in buf[HEADER..].iter().enumerate() {
            if *b != p[(HEADER + i) % p.len()] {
                return Err(format!("pattern mismatch at byte {}", HEADER + i));
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
        fill(&mut b, 8192, 7, 3, None);
        assert!(check(&b, 8192, 7, 3, None).is_ok());
        assert!(check(&b, 8192, 7, ANY_GEN, None).is_ok());
        assert!(check(&b, 4096, 7, 3, None)
            .unwrap_err()
            .contains("misplaced"));
        assert!(check(&b, 8192, 7, 4, None).unwrap_err().contains("stale"));
        assert!(check(&b, 8192, 8, 3, None)
            .unwrap_err()
            .contains("another run"));
        let mut c = b.clone();
        c[1000] ^= 1;
        assert!(check(&c, 8192, 7, 3, None)
            .unwrap_err()
            .contains("corrupted"));
        assert!(check(&[0u8; 4096], 0, 7, 3, None)
            .unwrap_err()
            .contains("no verify header"));
        let p = [0xde, 0xad];
        fill(&mut b, 0, 7, 1, Some(&p));
        assert!(check(&b, 0, 7, 1, Some(&p)).is_ok());
        assert_eq!(b[100], 0xde);
    }
}
