//! IOVA (device address) allocation.
//!
//! A first-fit allocator over the IOVA ranges the IOMMU reports as usable.
//! Freed ranges are coalesced with their neighbours and reused. Allocation
//! happens only in `alloc_dma` (never on the I/O path).

use std::collections::BTreeMap;

/// An inclusive range of IOVAs `[start, end]`, as VFIO reports them.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct IovaRange {
    /// First usable address.
    pub start: u64,
    /// Last usable address (inclusive).
    pub end: u64,
}

/// Errors from [`IovaAllocator::free`].
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum IovaFreeError {
    /// The range overlaps a range that is already free (double free) or is empty.
    #[error("IOVA range {start:#x}+{len:#x} is empty or overlaps a free range")]
    Overlap {
        /// Start.
        start: u64,
        /// Length.
        len: u64,
    },
}

/// First-fit IOVA allocator with coalescing free list.
#[derive(Debug, Clone)]
pub(crate) struct IovaAllocator {
    /// Free ranges: start -> last (inclusive). Disjoint and non-adjacent.
    free: BTreeMap<u64, u64>,
}

impl IovaAllocator {
    /// An allocator handing out addresses from `ranges`, never below `min`
    /// (keeping IOVA 0 and the low addresses unused makes a zero/garbage
    /// address in a command fault instead of hitting a buffer).
    pub(crate) fn new(ranges: &[IovaRange], min: u64) -> IovaAllocator {
        let mut a = IovaAllocator {
            free: BTreeMap::new(),
        };
        for r in ranges {
            let start = r.start.max(min);
            if start <= r.end {
                // Ranges from the kernel do not overlap; ignore any that would.
                let _ = a.insert_free(start, r.end);
            }
        }
        a
    }

    /// Remove `[r.start, r.end]` from the free list for good: addresses the
    /// device must never see as DMA addresses (its own BARs: a data pointer
    /// that falls into the CMB's bus range is taken as a CMB address by the
    /// controller, before any IOMMU translation). Call before allocating;
    /// ranges already handed out are not affected.
    pub(crate) fn reserve(&mut self, r: IovaRange) {
        if r.start > r.end {
            return;
        }
        let hit: Vec<(u64, u64)> = self
            .free
            .iter()
            .filter(|(&s, &l)| s <= r.end && r.start <= l)
            .map(|(&s, &l)| (s, l))
            .collect();
        for (s, l) in hit {
            self.free.remove(&s);
            if s < r.start {
                self.free.insert(s, r.start - 1);
            }
            if l > r.end {
                self.free.insert(r.end + 1, l);
            }
        }
    }

    /// Allocate `len` bytes aligned to `align` (a power of two). `None` if
    /// `len` is 0, `align` is not a power of two, or no free range fits.
    pub(crate) fn alloc(&mut self, len: u64, align: u64) -> Option<u64> {
        if len == 0 || !align.is_power_of_two() {
            return None;
        }
        let (start, last, at) = self.free.iter().find_map(|(&start, &last)| {
            let at = start.checked_add(align - 1)? & !(align - 1);
            let end = at.checked_add(len - 1)?;
            (at >= start && end <= last).then_some((start, last, at))
        })?;
        self.free.remove(&start);
        if at > start {
            self.free.insert(start, at - 1);
        }
        let end = at + (len - 1);
        if end < last {
            self.free.insert(end + 1, last);
        }
        Some(at)
    }

    /// Return `[start, start+len)` to the free list, merging with neighbours.
    pub(crate) fn free(&mut self, start: u64, len: u64) -> Result<(), IovaFreeError> {
        let last = len
            .checked_sub(1)
            .and_then(|l| start.checked_add(l))
            .ok_or(IovaFreeError::Overlap { start, len })?;
        self.insert_free(start, last)
            .map_err(|()| IovaFreeError::Overlap { start, len })
    }

    fn insert_free(&mut self, mut start: u64, mut last: u64) -> Result<(), ()> {
        // Overlap with the predecessor or successor?
        if let Some((&ps, &pl)) = self.free.range(..=start).next_back() {
            if pl >= start {
                return Err(());
            }
            if pl.checked_add(1) == Some(start) {
                self.free.remove(&ps);
                start = ps;
            }
        }
        if let Some((&ns, &nl)) = self.free.range(start..).next() {
            if ns <= last {
                return Err(());
            }
            if last.checked_add(1) == Some(ns) {
                self.free.remove(&ns);
                last = nl;
            }
        }
        self.free.insert(start, last);
        Ok(())
    }

    /// Total free bytes (saturating). Only tests look.
    #[cfg(test)]
    pub(crate) fn free_bytes(&self) -> u64 {
        self.free.iter().fold(0u64, |acc, (&s, &l)| {
            acc.saturating_add((l - s).saturating_add(1))
        })
    }

    /// The free ranges, in address order. Only tests look.
    #[cfg(test)]
    pub(crate) fn free_ranges(&self) -> Vec<IovaRange> {
        self.free
            .iter()
            .map(|(&start, &end)| IovaRange { start, end })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn x86_ranges() -> Vec<IovaRange> {
        vec![
            IovaRange {
                start: 0,
                end: 0xfedf_ffff,
            },
            IovaRange {
                start: 0xfef0_0000,
                end: (1 << 39) - 1,
            },
        ]
    }

    #[test]
    fn respects_min_and_alignment() {
        let mut a = IovaAllocator::new(&x86_ranges(), MIB);
        assert_eq!(a.alloc(4096, 4096), Some(MIB));
        assert_eq!(a.alloc(4096, 4096), Some(MIB + 4096));
        assert_eq!(a.alloc(2 * MIB, 2 * MIB), Some(2 * MIB));
        assert_eq!(a.alloc(4096, 4096), Some(MIB + 8192));
        assert_eq!(a.alloc(0, 4096), None);
        assert_eq!(a.alloc(4096, 3), None);
    }

    #[test]
    fn skips_reserved_hole() {
        // One range just below the MSI hole, then the big range above it.
        let mut a = IovaAllocator::new(
            &[
                IovaRange {
                    start: 0xfed0_0000,
                    end: 0xfedf_ffff,
                },
                IovaRange {
                    start: 0xfef0_0000,
                    end: 0xffff_ffff,
                },
            ],
            0,
        );
        assert_eq!(a.alloc(MIB, 4096), Some(0xfed0_0000));
        // Does not fit below the hole any more; must not straddle it.
        let x = a.alloc(2 * MIB, 4096).unwrap();
        assert_eq!(x, 0xfef0_0000);
        for r in a.free_ranges() {
            assert!(r.start > 0xfedf_ffff);
        }
    }

    #[test]
    fn frees_coalesce_and_are_reused() {
        let mut a = IovaAllocator::new(
            &[IovaRange {
                start: 0,
                end: 16 * 4096 - 1,
            }],
            0,
        );
        let total = a.free_bytes();
        let v: Vec<u64> = (0..16).map(|_| a.alloc(4096, 4096).unwrap()).collect();
        assert_eq!(a.alloc(4096, 4096), None);
        assert_eq!(a.free_bytes(), 0);
        // Free every other page, then the rest: should coalesce into one range.
        for &x in v.iter().step_by(2) {
            a.free(x, 4096).unwrap();
        }
        assert_eq!(a.free_ranges().len(), 8);
        assert_eq!(a.alloc(8192, 4096), None, "fragmented");
        for &x in v.iter().skip(1).step_by(2) {
            a.free(x, 4096).unwrap();
        }
        assert_eq!(
            a.free_ranges(),
            vec![IovaRange {
                start: 0,
                end: 16 * 4096 - 1
            }]
        );
        assert_eq!(a.free_bytes(), total);
        assert_eq!(a.alloc(16 * 4096, 4096), Some(0));
    }

    #[test]
    fn double_free_and_bad_free_are_rejected() {
        let mut a = IovaAllocator::new(
            &[IovaRange {
                start: 0x10000,
                end: 0x1ffff,
            }],
            0,
        );
        let x = a.alloc(0x1000, 0x1000).unwrap();
        a.free(x, 0x1000).unwrap();
        assert!(a.free(x, 0x1000).is_err());
        assert!(a.free(0x1f000, 0x2000).is_err(), "overlaps free tail");
        assert!(a.free(0x1000, 0).is_err());
        assert!(a.free(u64::MAX, 2).is_err());
    }

    #[test]
    fn top_of_address_space() {
        let mut a = IovaAllocator::new(
            &[IovaRange {
                start: u64::MAX - 0xfff,
                end: u64::MAX,
            }],
            0,
        );
        assert_eq!(a.alloc(0x1000, 0x1000), Some(u64::MAX - 0xfff));
        assert_eq!(a.alloc(0x1000, 0x1000), None);
        a.free(u64::MAX - 0xfff, 0x1000).unwrap();
        assert_eq!(a.free_bytes(), 0x1000);
        assert_eq!(a.alloc(0x2000, 0x1000), None);
    }

    #[test]
    fn reserved_bar_ranges_are_never_handed_out() {
        // QEMU q35: BAR0 below 4 GiB, a 16 MiB CMB BAR at 8 GiB, 39-bit aperture.
        let bar0 = IovaRange {
            start: 0xfe60_0000,
            end: 0xfe60_3fff,
        };
        let cmb = IovaRange {
            start: 0x8_0000_0000,
            end: 0x8_00ff_ffff,
        };
        let mut a = IovaAllocator::new(&x86_ranges(), MIB);
        let before = a.free_bytes();
        a.reserve(bar0);
        a.reserve(cmb);
        a.reserve(cmb); // twice: no effect
        a.reserve(IovaRange { start: 5, end: 4 }); // empty: ignored
        assert_eq!(a.free_bytes(), before - 0x4000 - (16 << 20));
        for r in a.free_ranges() {
            for hole in [bar0, cmb] {
                assert!(
                    r.end < hole.start || r.start > hole.end,
                    "{r:x?} overlaps {hole:x?}"
                );
            }
        }
        // Allocate the whole space in 1 GiB chunks (and the rest in 2 MiB):
        // nothing lands in a BAR.
        let overlaps =
            |x: u64, len: u64| [bar0, cmb].iter().any(|h| x <= h.end && h.start < x + len);
        let mut n = 0;
        while let Some(x) = a.alloc(1 << 30, 1 << 30) {
            assert!(!overlaps(x, 1 << 30), "{x:#x}");
            n += 1;
        }
        while let Some(x) = a.alloc(2 * MIB, 2 * MIB) {
            assert!(!overlaps(x, 2 * MIB), "{x:#x}");
            n += 1;
        }
        assert!(n > 500, "{n}");
        // A range straddling two free ranges and the hole between them.
        let mut b = IovaAllocator::new(&x86_ranges(), 0);
        b.reserve(IovaRange {
            start: 0xfed0_0000,
            end: 0xfef0_ffff,
        });
        assert_eq!(b.free_ranges()[0].end, 0xfecf_ffff);
        assert_eq!(b.free_ranges()[1].start, 0xfef1_0000);
    }

    #[test]
    fn alignment_padding_returns_to_free_list() {
        let mut a = IovaAllocator::new(
            &[IovaRange {
                start: 0x1000,
                end: 0x7f_ffff,
            }],
            0,
        );
        let big = a.alloc(2 * MIB, 2 * MIB).unwrap();
        assert_eq!(big, 2 * MIB);
        // The padding [0x1000, 2MiB) is still usable.
        assert_eq!(a.alloc(0x1000, 0x1000), Some(0x1000));
        a.free(big, 2 * MIB).unwrap();
        assert_eq!(a.alloc(4 * MIB, 2 * MIB), Some(2 * MIB));
    }
}
