//! Active namespaces and their geometry.

use crate::identify::IdentifyNamespace;

/// An active namespace and the geometry I/O needs.
///
/// Only a [`Controller`](crate::Controller) makes these, and their fields are private: the
/// block size and count decide how many bytes the device moves for a
/// command, so a forged or edited geometry could make it DMA past a
/// buffer. A namespace also remembers its controller, and a queue pair of
/// another controller refuses it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Namespace {
    nsid: u32,
    block_size: u64,
    block_shift: u32,
    blocks: u64,
    metadata_size: u16,
    identify: IdentifyNamespace,
    domain: u64,
    /// `domain` if the data path can use this namespace as it is (no
    /// metadata), else 0 (never a domain): one compare on the hot path.
    io_domain: u64,
}

impl Namespace {
    /// The namespace `nsid` described by `id`, for the controller with DMA
    /// domain `domain`; `None` (logged) if it is inactive or its LBA format
    /// is not one the driver can use.
    pub(super) fn from_identify(nsid: u32, id: IdentifyNamespace, domain: u64) -> Option<Self> {
        if !id.is_active() {
            return None;
        }
        let Some(fmt) = id.current_format().filter(|f| (9..=16).contains(&f.lbads)) else {
            tracing::warn!(
                nsid,
                flbas = id.flbas,
                "namespace has an invalid LBA format; skipped"
            );
            return None;
        };
        Some(Namespace {
            nsid,
            block_size: fmt.block_size(),
            block_shift: u32::from(fmt.lbads),
            blocks: id.nsze,
            metadata_size: fmt.metadata_size,
            identify: id,
            domain,
            io_domain: if fmt.metadata_size == 0 { domain } else { 0 },
        })
    }

    /// Namespace ID.
    #[inline]
    pub fn nsid(&self) -> u32 {
        self.nsid
    }
    /// Bytes per logical block (a power of two).
    #[inline]
    pub fn block_size(&self) -> u64 {
        self.block_size
    }
    /// log2 of the block size.
    #[inline]
    pub fn block_shift(&self) -> u32 {
        self.block_shift
    }
    /// Size in logical blocks (NSZE): valid LBAs are `0..blocks()`.
    #[inline]
    pub fn blocks(&self) -> u64 {
        self.blocks
    }
    /// Metadata bytes per block in the current format (the driver needs 0).
    #[inline]
    pub fn metadata_size(&self) -> u16 {
        self.metadata_size
    }
    /// The full Identify Namespace data.
    pub fn identify(&self) -> &IdentifyNamespace {
        &self.identify
    }
    /// Size in bytes.
    pub fn size_bytes(&self) -> u64 {
        self.blocks * self.block_size
    }
    pub(crate) fn domain(&self) -> u64 {
        self.domain
    }
    #[inline]
    pub(crate) fn io_domain(&self) -> u64 {
        self.io_domain
    }
}
