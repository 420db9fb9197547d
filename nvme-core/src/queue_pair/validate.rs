//! What a transfer must satisfy before it reaches the device, whichever
//! path submits it: the inline fast path, the split path, raw (caller
//! managed memory) and vectored submissions share these rules.

use crate::buffer::{DmaBuf, DATA_ALIGN};
use crate::controller::{Namespace, PAGE_SIZE};
use crate::error::Error;
use crate::hw::{DmaRegion, Iova};
use crate::identify::Oncs;
use crate::units::Lba;

use super::MAX_SEGMENTS;

/// How much one request may carry.
#[derive(Copy, Clone)]
pub(super) enum Span {
    /// Any length: requests over MDTS are split (the split path bounds the
    /// pieces by the queue's free slots).
    Split,
    /// One command, at most MDTS: `what` names the submission in the error,
    /// `hint` says what to do instead.
    OneCommand {
        what: &'static str,
        hint: &'static str,
    },
}

/// The limits of one queue pair's controller.
pub(super) struct Rules {
    /// The DMA domain of the controller: buffers and namespaces must share it.
    pub(super) domain: u64,
    /// Largest transfer of one command (MDTS).
    pub(super) max_transfer: usize,
    /// Optional NVM commands the controller supports.
    pub(super) oncs: Oncs,
    /// The controller takes SGLs for NVM commands (and the options allow them).
    pub(super) sgls: bool,
}

impl Rules {
    /// All the rules for one buffer, evaluated branch-light for the hot
    /// path; the precise error is worked out out of line only when one
    /// fails. Returns the block count.
    #[inline(always)]
    pub(super) fn data<D: DmaRegion>(
        &self,
        ns: &Namespace,
        lba: Lba,
        buf: &DmaBuf<D>,
    ) -> Result<u64, Error> {
        let len = buf.len() as u64;
        // The block size is a power of two: mask and shift, no division.
        let blocks = len >> ns.block_shift();
        // Not checked here: a buffer's IOVA is always dword-aligned (its
        // constructor and `set_window` ensure it), and an empty buffer
        // passes these checks but is caught by the transfer-size check of
        // the caller (`len - 1 < max_transfer`), whose slow path refuses it.
        debug_assert!(buf.iova().0 % DATA_ALIGN as u64 == 0);
        let ok = (buf.domain() == self.domain)
            & (ns.io_domain() == self.domain)
            & (len & (ns.block_size() - 1) == 0)
            & lba
                .0
                .checked_add(blocks)
                .is_some_and(|end| end <= ns.blocks());
        if ok {
            Ok(blocks)
        } else {
            Err(self.data_error(ns, lba, buf))
        }
    }

    /// Which rule of [`Rules::data`] failed (or the empty buffer it lets
    /// through), as an error.
    #[cold]
    #[inline(never)]
    pub(super) fn data_error<D: DmaRegion>(
        &self,
        ns: &Namespace,
        lba: Lba,
        buf: &DmaBuf<D>,
    ) -> Error {
        let r = self
            .buffer(buf)
            .and_then(|()| self.transfer(ns, lba, buf.len(), buf.iova(), Span::Split));
        match r {
            Err(e) => e,
            Ok(_) => Error::InvalidArgument("data transfer check failed".into()),
        }
    }

    /// The buffer must belong to this controller's DMA space.
    fn buffer<D: DmaRegion>(&self, buf: &DmaBuf<D>) -> Result<(), Error> {
        if buf.domain() != self.domain {
            return Err(Error::ForeignBuffer);
        }
        Ok(())
    }

    /// The rules for `len` bytes at `iova` to or from `lba`: the namespace
    /// is usable, the length is whole blocks, within `span`, the address
    /// dword-aligned (PRP rule), the blocks inside the namespace. Returns
    /// the block count.
    pub(super) fn transfer(
        &self,
        ns: &Namespace,
        lba: Lba,
        len: usize,
        iova: Iova,
        span: Span,
    ) -> Result<u64, Error> {
        self.namespace(ns)?;
        // The block size is a power of two: mask and shift, no division.
        if len == 0 || len as u64 & (ns.block_size() - 1) != 0 {
            return Err(Error::UnalignedLength {
                len,
                block_size: ns.block_size(),
            });
        }
        if let Span::OneCommand { what, hint } = span {
            if len > self.max_transfer {
                return Err(Error::InvalidArgument(format!(
                    "{what} transfer of {len} bytes exceeds one command's limit of {} bytes \
                     (MDTS){hint}",
                    self.max_transfer
                )));
            }
        }
        if iova.0 % DATA_ALIGN as u64 != 0 {
            return Err(Error::MisalignedBuffer { iova });
        }
        let blocks = len as u64 >> ns.block_shift();
        check_range(ns, lba, blocks)?;
        Ok(blocks)
    }

    /// The rules for a vectored command: 1..=[`MAX_SEGMENTS`] non-empty,
    /// dword-aligned buffers of this controller, then [`Rules::transfer`]
    /// for their total as one command; without SGLs the buffers must also
    /// meet on page boundaries (what PRPs can describe).
    pub(super) fn vectored<D: DmaRegion>(
        &self,
        ns: &Namespace,
        lba: Lba,
        bufs: &[DmaBuf<D>],
    ) -> Result<u64, Error> {
        if bufs.is_empty() || bufs.len() > MAX_SEGMENTS {
            return Err(Error::InvalidArgument(format!(
                "a vectored command takes 1..={MAX_SEGMENTS} buffers, not {}",
                bufs.len()
            )));
        }
        let mut total = 0usize;
        for b in bufs {
            self.buffer(b)?;
            if b.is_empty() || b.iova().0 % 4 != 0 || b.len() % 4 != 0 {
                return Err(Error::MisalignedBuffer { iova: b.iova() });
            }
            total += b.len();
        }
        let span = Span::OneCommand {
            what: "vectored",
            hint: "; vectored commands are not split: submit several",
        };
        let blocks = self.transfer(ns, lba, total, bufs[0].iova(), span)?;
        if !self.sgls {
            let page = PAGE_SIZE as u64;
            let n = bufs.len();
            for (i, b) in bufs.iter().enumerate() {
                let starts_ok = i == 0 || b.iova().0 % page == 0;
                let ends_ok = i + 1 == n || (b.iova().0 + b.len() as u64) % page == 0;
                if !starts_ok || !ends_ok {
                    return Err(Error::Unsupported(format!(
                        "buffer {i} of this vectored command is not page-aligned where it meets its \
                         neighbours; without SGLs (SGLS) that cannot be described with PRPs"
                    )));
                }
            }
        }
        Ok(blocks)
    }

    /// The namespace must come from this controller (its geometry decides
    /// how much the device transfers) and need no metadata.
    #[inline]
    pub(super) fn namespace(&self, ns: &Namespace) -> Result<(), Error> {
        if ns.domain() != self.domain {
            return Err(Error::InvalidArgument(format!(
                "namespace {} belongs to a different controller; use this controller's namespaces",
                ns.nsid()
            )));
        }
        if ns.metadata_size() != 0 {
            return Err(Error::Unsupported(format!(
                "namespace {} uses {} bytes of metadata per block; metadata is not supported yet",
                ns.nsid(),
                ns.metadata_size()
            )));
        }
        Ok(())
    }

    /// The controller must support the optional command `what` (`supported`
    /// is its ONCS bit).
    pub(super) fn optional(&self, supported: bool, what: &str) -> Result<(), Error> {
        if supported {
            Ok(())
        } else {
            Err(Error::Unsupported(format!(
                "the controller does not support {what} (Identify Controller ONCS)"
            )))
        }
    }
}

/// `blocks` blocks from `lba` must lie inside the namespace.
pub(super) fn check_range(ns: &Namespace, lba: Lba, blocks: u64) -> Result<(), Error> {
    if lba
        .0
        .checked_add(blocks)
        .is_none_or(|end| end > ns.blocks())
    {
        return Err(Error::LbaOutOfRange {
            nsid: ns.nsid(),
            lba: lba.0,
            blocks,
            size: ns.blocks(),
        });
    }
    Ok(())
}
