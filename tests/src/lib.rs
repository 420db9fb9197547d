//! Shared pieces of the end-to-end tests: a deterministic PRNG and the data
//! pattern written and verified by both our driver and the kernel path.
//!
//! Every logical block's content is a pure function of `(seed, lba, block
//! size)`, so a block written by one path (our driver, or the kernel through
//! `dd`) can be checked by the other without shipping the data around, and
//! a block written to the wrong LBA is caught, not only a corrupted one.

#![deny(unsafe_code)]

/// SplitMix64: small, fast, good enough for test data and random offsets.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }
}

/// Fill `buf` (a whole number of blocks) with the pattern of the blocks
/// starting at `lba`.
pub fn fill_pattern(buf: &mut [u8], seed: u64, lba: u64, block_size: usize) {
    for (i, block) in buf.chunks_mut(block_size).enumerate() {
        let this = lba + i as u64;
        let mut rng = Rng::new(seed ^ this.wrapping_mul(0x2545_f491_4f6c_dd1d));
        // The first 16 bytes name the block, so a misplaced block is obvious
        // in a hex dump.
        let mut header = [0u8; 16];
        header[..8].copy_from_slice(&this.to_le_bytes());
        header[8..].copy_from_slice(&seed.to_le_bytes());
        for (j, chunk) in block.chunks_mut(8).enumerate() {
            let word = if j < 2 {
                u64::from_le_bytes(header[j * 8..j * 8 + 8].try_into().expect("8 bytes"))
            } else {
                rng.next_u64()
            };
            chunk.copy_from_slice(&word.to_le_bytes()[..chunk.len()]);
        }
    }
}

/// Compare `buf` with the pattern; on mismatch, say which block and byte.
pub fn check_pattern(buf: &[u8], seed: u64, lba: u64, block_size: usize) -> Result<(), String> {
    let mut expect = vec![0u8; block_size];
    for (i, block) in buf.chunks(block_size).enumerate() {
        let this = lba + i as u64;
        fill_pattern(&mut expect[..block.len()], seed, this, block_size);
        if block != &expect[..block.len()] {
            let at = block
                .iter()
                .zip(&expect)
                .position(|(a, b)| a != b)
                .unwrap_or(0);
            let found_lba = u64::from_le_bytes(block[..8].try_into().expect("8 bytes"));
            let found_seed = u64::from_le_bytes(block[8..16].try_into().expect("8 bytes"));
            return Err(format!(
                "LBA {this}: byte {at} differs (found 0x{:02x}, want 0x{:02x}); the block's \
                 header names LBA {found_lba} seed {found_seed:#x}",
                block[at], expect[at]
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_depends_on_seed_and_lba() {
        let mut a = vec![0u8; 1024];
        fill_pattern(&mut a, 7, 10, 512);
        assert!(check_pattern(&a, 7, 10, 512).is_ok());
        let err = check_pattern(&a, 7, 11, 512).unwrap_err();
        assert!(err.contains("header names LBA 10"), "{err}");
        assert!(check_pattern(&a, 8, 10, 512).is_err());
        // Block 11 alone equals the second half of a two-block fill at 10.
        let mut b = vec![0u8; 512];
        fill_pattern(&mut b, 7, 11, 512);
        assert_eq!(&a[512..], &b[..]);
        a[700] ^= 1;
        let err = check_pattern(&a, 7, 10, 512).unwrap_err();
        assert!(err.starts_with("LBA 11: byte 188"), "{err}");
    }

    #[test]
    fn rng_range_is_inclusive_and_bounded() {
        let mut r = Rng::new(1);
        let mut seen = [false; 4];
        for _ in 0..1000 {
            let v = r.range(2, 5);
            assert!((2..=5).contains(&v));
            seen[(v - 2) as usize] = true;
        }
        assert!(seen.iter().all(|s| *s));
    }
}
