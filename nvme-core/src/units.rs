//! Typed quantities for the I/O API: a logical block address and a byte
//! count are different things from each other, from a command tag and from
//! a device address ([`crate::Iova`]), so the compiler keeps them apart.
//! (Host virtual addresses appear only as raw pointers, a type of their own.)

use std::fmt;

/// A logical block address: an index into a namespace, in units of that
/// namespace's block size ([`crate::Namespace::block_size`]).
///
/// The I/O API takes only this type where it means an LBA:
///
/// ```
/// use nvme_core::{DmaBuf, Hardware, IoQueuePair, Lba, Namespace};
/// fn read_at_7<H: Hardware>(qp: &mut IoQueuePair<H>, ns: &Namespace, buf: DmaBuf<H::Dma>) {
///     let _ = qp.submit_read(ns, Lba(7), buf, /* tag */ 1);
/// }
/// ```
///
/// so a bare number (a tag, a byte offset) does not compile in its place:
///
/// ```compile_fail,E0308
/// use nvme_core::{DmaBuf, Hardware, IoQueuePair, Lba, Namespace};
/// fn read_at_7<H: Hardware>(qp: &mut IoQueuePair<H>, ns: &Namespace, buf: DmaBuf<H::Dma>) {
///     let _ = qp.submit_read(ns, 7u64, buf, /* tag */ 1);
/// }
/// ```
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(transparent)]
pub struct Lba(pub u64);

impl Lba {
    /// The LBA as a plain number.
    #[inline]
    pub const fn get(self) -> u64 {
        self.0
    }

    /// The LBA `blocks` further on, or `None` past `u64::MAX`.
    #[inline]
    pub const fn checked_add(self, blocks: u64) -> Option<Lba> {
        match self.0.checked_add(blocks) {
            Some(v) => Some(Lba(v)),
            None => None,
        }
    }
}

impl fmt::Display for Lba {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A number of bytes (a buffer or transfer length).
///
/// ```compile_fail,E0308
/// # fn f<H: nvme_core::Hardware>(c: &nvme_core::Controller<H>) {
/// let bufs = c.alloc_buffers(4096, 32); // count and size swapped: no
/// # }
/// ```
///
/// ```
/// # fn f<H: nvme_core::Hardware>(c: &nvme_core::Controller<H>) {
/// let bufs = c.alloc_buffers(32, nvme_core::ByteCount(4096));
/// # }
/// ```
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(transparent)]
pub struct ByteCount(pub usize);

impl ByteCount {
    /// The count as a plain number.
    #[inline]
    pub const fn get(self) -> usize {
        self.0
    }

    /// `n` KiB.
    pub const fn kib(n: usize) -> ByteCount {
        ByteCount(n * 1024)
    }

    /// `n` MiB.
    pub const fn mib(n: usize) -> ByteCount {
        ByteCount(n * 1024 * 1024)
    }
}

impl fmt::Display for ByteCount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} bytes", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lba_arithmetic_and_display() {
        assert_eq!(Lba(5).checked_add(3), Some(Lba(8)));
        assert_eq!(Lba(u64::MAX).checked_add(1), None);
        assert_eq!(Lba(42).to_string(), "42");
        assert_eq!(ByteCount::kib(4), ByteCount(4096));
        assert_eq!(ByteCount::mib(2).get(), 2 << 20);
        assert_eq!(ByteCount(512).to_string(), "512 bytes");
    }
}
