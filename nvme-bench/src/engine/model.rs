//! `ioengine=nvme-model`: our driver (nvme-core) against the in-process
//! software controller (crate nvme-model), no device and no VFIO. The
//! model processes each SQ tail doorbell synchronously, inside the store,
//! and posts the completions; so, like fio's `null`, it measures software:
//! the job loop, the driver's whole submit and complete path (SQ entries,
//! PRPs, doorbells, CQ phase tags) and the model's command handling.
//!
//! One model controller per job, with one namespace of 512-byte blocks
//! covering `offset + size` (so the job needs `size`, as `null`). Its
//! storage is `Backing::Null` (no data moves: reads leave the buffer as it
//! was), except with `verify`, where it is `Sparse` (writes are kept and
//! read back). The engine is the nvme-vfio engine's code ([`NvmeEngine`]):
//! the same queue sizing, batching (`iodepth_batch_submit`) and timing,
//! and the same `nvme_*` options (queue size, shadow doorbells, CMB queues
//! — the model has no CMB, so the driver falls back as on such a device —,
//! I/O timeout and its policy).

use nvme_core::{Controller, ControllerOptions};
use nvme_model::{Backing, ModelConfig, ModelController, NamespaceConfig};

use super::nvme::NvmeEngine;
use crate::error::{Error, Result};
use crate::options::{Job, Verify};

/// Logical block size of the model's namespace.
const BLOCK: u64 = 512;

/// `size`: offset + size of the job, in bytes.
pub fn open(
    job: &Job,
    size: u64,
    slots: usize,
    buf_len: usize,
) -> Result<NvmeEngine<ModelController>> {
    let blocks = size.div_ceil(BLOCK);
    let mut ns = NamespaceConfig::new(blocks, BLOCK as u32);
    ns.backing = if job.verify == Verify::None {
        Backing::Null
    } else {
        Backing::Sparse
    };
    let cfg = ModelConfig {
        namespaces: vec![ns],
        ..ModelConfig::default()
    };
    // The job's controller options, as nvme-vfio applies them (run.rs
    // nvme_wants): the model has one controller per job, so no sharing.
    let mut opts = ControllerOptions::default();
    if let Some(c) = job.nvme_cmb_queues {
        opts.cmb_queues = c;
    }
    if let Some(s) = job.nvme_shadow_doorbells {
        opts.shadow_doorbells = s;
    }
    if let Some(p) = job.nvme_timeout_policy {
        opts.timeout_policy = p;
    }
    let ctrl = Controller::init(ModelController::new(cfg), opts)
        .map_err(|e| Error::msg(format!("nvme-model: controller bring-up: {e}")))?;
    NvmeEngine::open(
        &ctrl,
        1,
        job,
        slots,
        buf_len,
        "nvme-model",
        "nvme-model (in-process)".into(),
    )
}
