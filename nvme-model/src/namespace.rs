//! Namespace media: logical blocks in memory.

use std::collections::HashMap;

/// How a namespace's blocks are stored.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default)]
pub enum Backing {
    /// Only blocks that hold non-zero data are stored (a map of block
    /// number → block); everything else reads as zeros. Memory grows with
    /// what is written, not with the namespace size.
    #[default]
    Sparse,
    /// One `Vec<u8>` of the whole namespace, allocated up front.
    Dense,
    /// Nothing is stored and no data moves: writes are discarded and reads
    /// leave the host buffer untouched (DMA addresses are still translated
    /// and checked). For measuring the driver's own per-I/O cost.
    Null,
}

/// One namespace of a [`super::ModelConfig`]; namespace IDs are 1, 2, … in
/// the order given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamespaceConfig {
    /// Size in logical blocks (NSZE = NCAP).
    pub blocks: u64,
    /// Logical block size in bytes: 512 or 4096.
    pub block_size: u32,
    /// Storage.
    pub backing: Backing,
    /// Metadata bytes per block reported in the current LBA format
    /// (separate buffer, not extended LBAs); 0 = none. Only reported: the
    /// model moves no metadata and ignores MPTR.
    pub metadata_size: u16,
}

impl NamespaceConfig {
    /// A sparse namespace of `blocks` blocks of `block_size` bytes.
    pub fn new(blocks: u64, block_size: u32) -> Self {
        NamespaceConfig {
            blocks,
            block_size,
            backing: Backing::Sparse,
            metadata_size: 0,
        }
    }
    /// The same namespace with another backing.
    pub fn with_backing(self, backing: Backing) -> Self {
        NamespaceConfig { backing, ..self }
    }
    /// The same namespace formatted with `metadata_size` metadata bytes per
    /// block (reported by Identify Namespace only; see
    /// [`metadata_size`](Self::metadata_size)).
    pub fn with_metadata(self, metadata_size: u16) -> Self {
        NamespaceConfig {
            metadata_size,
            ..self
        }
    }
}

impl Default for NamespaceConfig {
    /// 1 GiB of 512-byte blocks, sparse.
    fn default() -> Self {
        NamespaceConfig::new(1 << 21, 512)
    }
}

enum Storage {
    Sparse(HashMap<u64, Box<[u8]>>),
    Dense(Vec<u8>),
    Null,
}

/// A namespace's live state.
pub(crate) struct Namespace {
    /// Attached: false after `detach`, when the namespace is inactive (I/O
    /// to it fails with Invalid Namespace, Identify reports zeros).
    pub attached: bool,
    pub blocks: u64,
    pub block_size: usize,
    pub metadata_size: u16,
    storage: Storage,
}

impl Namespace {
    pub fn new(cfg: &NamespaceConfig) -> Self {
        assert!(
            cfg.block_size == 512 || cfg.block_size == 4096,
            "model namespaces support 512- or 4096-byte blocks, not {}",
            cfg.block_size
        );
        assert!(cfg.blocks > 0, "a namespace needs at least one block");
        let bs = cfg.block_size as usize;
        let storage = match cfg.backing {
            Backing::Sparse => Storage::Sparse(HashMap::new()),
            Backing::Dense => {
                let bytes = usize::try_from(cfg.blocks)
                    .ok()
                    .and_then(|b| b.checked_mul(bs))
                    .expect("dense namespace too large for memory");
                Storage::Dense(vec![0; bytes])
            }
            Backing::Null => Storage::Null,
        };
        Namespace {
            attached: true,
            blocks: cfg.blocks,
            block_size: bs,
            metadata_size: cfg.metadata_size,
            storage,
        }
    }

    /// Change the size (sparse and null backings only; a dense one keeps
    /// its memory, so it can only shrink). False if not possible.
    pub fn resize(&mut self, blocks: u64) -> bool {
        if blocks == 0 || (matches!(self.storage, Storage::Dense(_)) && blocks > self.blocks) {
            return false;
        }
        self.blocks = blocks;
        true
    }

    /// True if data really moves (not [`Backing::Null`]).
    pub fn stores_data(&self) -> bool {
        !matches!(self.storage, Storage::Null)
    }

    /// `lba .. lba + count` lies inside the namespace.
    pub fn in_range(&self, lba: u64, count: u64) -> bool {
        lba.checked_add(count).is_some_and(|end| end <= self.blocks)
    }

    /// Copy blocks into `out` (`out.len()` is a multiple of the block size).
    pub fn read(&self, lba: u64, out: &mut [u8]) {
        let bs = self.block_size;
        match &self.storage {
            Storage::Sparse(map) => {
                for (i, chunk) in out.chunks_mut(bs).enumerate() {
                    match map.get(&(lba + i as u64)) {
                        Some(b) => chunk.copy_from_slice(b),
                        None => chunk.fill(0),
                    }
                }
            }
            Storage::Dense(v) => {
                let start = lba as usize * bs;
                out.copy_from_slice(&v[start..start + out.len()]);
            }
            Storage::Null => out.fill(0),
        }
    }

    /// Store blocks from `data` (a multiple of the block size).
    pub fn write(&mut self, lba: u64, data: &[u8]) {
        let bs = self.block_size;
        match &mut self.storage {
            Storage::Sparse(map) => {
                for (i, chunk) in data.chunks(bs).enumerate() {
                    let key = lba + i as u64;
                    if chunk.iter().all(|&b| b == 0) {
                        map.remove(&key);
                    } else {
                        match map.get_mut(&key) {
                            Some(b) => b.copy_from_slice(chunk),
                            None => {
                                map.insert(key, chunk.into());
                            }
                        }
                    }
                }
            }
            Storage::Dense(v) => {
                let start = lba as usize * bs;
                v[start..start + data.len()].copy_from_slice(data);
            }
            Storage::Null => {}
        }
    }

    /// Zero `count` blocks (Write Zeroes, deallocate).
    pub fn zero(&mut self, lba: u64, count: u64) {
        let bs = self.block_size;
        match &mut self.storage {
            Storage::Sparse(map) => {
                if count < map.len() as u64 {
                    for key in lba..lba + count {
                        map.remove(&key);
                    }
                } else {
                    map.retain(|&k, _| k < lba || k >= lba + count);
                }
            }
            Storage::Dense(v) => {
                let start = lba as usize * bs;
                v[start..start + count as usize * bs].fill(0);
            }
            Storage::Null => {}
        }
    }

    /// Blocks currently holding data (NUSE for sparse; NSZE otherwise).
    pub fn used_blocks(&self) -> u64 {
        match &self.storage {
            Storage::Sparse(map) => map.len() as u64,
            _ => self.blocks,
        }
    }
}
