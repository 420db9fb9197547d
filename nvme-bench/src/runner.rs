//! One job on one thread: open the engine, then issue, commit and reap
//! until the workload (and its verify pass) is done.
//!
//! Timing, for every engine (docs/fio-compat.md has the table):
//! * `prep` — just before the engine's `queue` call (after any buffer fill);
//! * `issue` — when `commit` returns (the batch is in the device's or
//!   kernel's hands);
//! * `complete` — when `reap` returns the completion (one clock read per reap).
//!
//! slat = issue − prep; clat = complete − issue; lat = complete − prep.
//! psync does the I/O inside `queue`: no slat, clat = lat = the syscall.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::Duration;

use nvme_core::Controller;
use nvme_vfio::VfioDevice;

use crate::clock::Instant;
use crate::engine::{self, Done, Engine};
use crate::error::{Error, Result};
use crate::gen::{Gen, Rng};
use crate::options::{cont, Dir, EngineKind, FadviseHint, Job, Verify, NDIR};
use crate::stats::{DepthHist, DirStats, LatStat};
use crate::sys;
use crate::verify;

pub const ST_SETUP: u8 = 0;
pub const ST_RAMP: u8 = 1;
pub const ST_RUN: u8 = 2;
pub const ST_VERIFY: u8 = 3;
pub const ST_DONE: u8 = 4;

/// Live counters the status line reads.
#[derive(Default, Debug)]
pub struct Progress {
    pub ios: [AtomicU64; NDIR],
    pub bytes: [AtomicU64; NDIR],
    pub state: AtomicU8,
    /// Bytes the workload is to move (0: time-based).
    pub planned_bytes: AtomicU64,
    /// Set by the run for a `--status-interval` report: the job puts a
    /// copy of its statistics so far in `snap` and clears the flag (and
    /// leaves its final result there when it ends).
    pub snap_req: std::sync::atomic::AtomicBool,
    pub snap: std::sync::Mutex<Option<JobResult>>,
    /// With steady-state detection: where the measured phase began (at
    /// the start, and again when the statistics are reset), for the
    /// group loop's check (steadystate.rs).
    pub epoch: std::sync::Mutex<Option<crate::steadystate::Epoch>>,
}

/// Where a job's I/O goes.
pub enum Target {
    Nvme {
        ctrl: Controller<VfioDevice>,
        nsid: u32,
    },
    Path(String),
}

pub struct RunCtx {
    pub job: Job,
    pub clone: u32,
    pub groupid: u32,
    pub progress: Arc<Progress>,
    /// Set when an ending job's `exitall`/`exit_what` names this one (terminate.rs).
    pub exitall: Arc<std::sync::atomic::AtomicBool>,
    /// fio's thread number (1-based over the run, clones counted): the
    /// `.N` of the job's log files.
    pub number: u32,
    /// How many job instances the run has (fio's `thread_number` at the end
    /// of parsing).
    pub threads: u32,
    pub target: Target,
    pub cpus: Option<Vec<usize>>,
    pub interval: Option<(Duration, Sender<String>)>,
    pub seed: u64,
    /// The job's file could not be laid out (fio: the job does not run),
    /// and the error number to report (0: EIO).
    pub setup_error: Option<(String, i32)>,
}

/// Everything a job measured.
#[derive(Clone, Debug)]
pub struct JobResult {
    pub job: Job,
    pub clone: u32,
    pub groupid: u32,
    pub dirs: [DirStats; NDIR],
    /// The measured phase (after ramp), including the verify pass (fio's
    /// `total_run_time`, the JSON's `job_runtime`).
    pub runtime: Duration,
    /// Per direction (read, write, trim), fio's `runtime[ddir]`: the workload
    /// phase counts for each direction the job does and moved bytes in; the
    /// verify pass counts for reads (backend.c `update_runtime`). So a
    /// write+verify job's write rate is over the write phase and its read
    /// rate over the read-back.
    pub dir_runtime: [Duration; NDIR],
    /// From thread start.
    pub elapsed: Duration,
    pub usage: sys::Usage,
    pub depth: DepthHist,
    pub error: Option<String>,
    /// fio's error number of the error that ended the job (EIO 5, EILSEQ
    /// 84 for verify failures, ETIMEDOUT 110 for a passed deadline); 0 if
    /// none did (errors counted under `continue_on_error` do not).
    pub errno: i32,
    /// Errors counted under `continue_on_error` (fio's `total_err`).
    pub total_err: u64,
    /// The first of them (fio's `first_error`).
    pub first_error: i32,
    pub extras: serde_json::Value,
    pub verified: u64,
    pub cpus: Option<Vec<usize>>,
    pub pid: u32,
    /// fio's `latency_qd` at the end (`latency_depth`): the depth
    /// `latency_target` settled on, else `iodepth`.
    pub lat_depth: u32,
    /// fio's steady-state report (set by the run once the job is joined).
    pub steadystate: Option<crate::steadystate::Report>,
    /// `block_error_percentiles`: fio's `ts.block_infos`, one word per
    /// trim block of the region (state and trim count, stats.rs).
    pub block_infos: Option<Vec<u32>>,
}

impl JobResult {
    fn new(ctx: &RunCtx) -> Self {
        JobResult {
            job: ctx.job.clone(),
            clone: ctx.clone,
            groupid: ctx.groupid,
            dirs: Default::default(),
            runtime: Duration::ZERO,
            dir_runtime: [Duration::ZERO; NDIR],
            elapsed: Duration::ZERO,
            usage: sys::Usage::default(),
            depth: DepthHist::default(),
            error: None,
            errno: 0,
            total_err: 0,
            first_error: 0,
            extras: serde_json::Value::Null,
            verified: 0,
            lat_depth: ctx.job.iodepth,
            cpus: ctx.cpus.clone(),
            pid: std::process::id(),
            steadystate: None,
            block_infos: None,
        }
    }
}

/// Run one job to the end. Never panics on bad input: errors land in
/// `JobResult::error`.
pub fn run_job(ctx: RunCtx) -> JobResult {
    let t0 = Instant::now();
    let mut res = JobResult::new(&ctx);
    let r = match &ctx.setup_error {
        Some((e, errno)) => {
            res.errno = *errno;
            Err(Error::msg(e.clone()))
        }
        None => run_inner(&ctx, &mut res),
    };
    // Whatever way the job ended, the histograms hold every sample.
    for d in res.dirs.iter_mut() {
        d.slat.settle();
        d.clat.settle();
        d.lat.settle();
        for (_, p) in d.prios.iter_mut() {
            p.settle();
        }
    }
    if let Err(e) = r {
        if res.error.is_none() {
            res.error = Some(e.to_string());
            if res.errno == 0 {
                res.errno = libc::EIO;
            }
        }
    }
    res.elapsed = t0.elapsed();
    *ctx.progress.snap.lock().unwrap_or_else(|p| p.into_inner()) = Some(res.clone());
    ctx.progress.state.store(ST_DONE, Ordering::Relaxed);
    res
}

fn open_engine(
    ctx: &RunCtx,
    slots: usize,
    buf_len: usize,
    plan: Option<&crate::files::Plan>,
) -> Result<Box<dyn Engine>> {
    let job = &ctx.job;
    if job.zbd {
        let p = match &ctx.target {
            Target::Path(p) => Some(p.as_str()),
            Target::Nvme { .. } => None,
        };
        return Err(Error::msg(crate::zones::refusal(p)));
    }
    let want = match plan {
        // Several files: each as big as its region (fio's real_file_size).
        Some(p) => Some(p.files[0].offset + p.files[0].io_size),
        None => job.size.and_then(|s| match s {
            crate::options::Amount::Bytes(b) => Some(b.saturating_add(job.offset.resolve(0))),
            _ => None,
        }),
    };
    if job.offload {
        // options.rs `validate` lets offload through for these only.
        if let (Target::Path(p), EngineKind::Psync | EngineKind::Libaio | EngineKind::IoUring) =
            (&ctx.target, job.ioengine)
        {
            return Ok(Box::new(engine::offload::Offload::open(
                p,
                job.open_flags(),
                job.rw.opens_rw(),
                want,
                slots,
                buf_len,
                job.iodepth as usize,
            )?));
        }
        return Err(Error::msg(
            "internal: io_submit_mode=offload with this engine",
        ));
    }
    Ok(match (&ctx.target, job.ioengine) {
        (Target::Nvme { ctrl, nsid }, EngineKind::NvmeVfio) => {
            Box::new(engine::nvme::NvmeEngine::open(
                ctrl,
                *nsid,
                job,
                slots,
                buf_len,
                "nvme-vfio",
                ctrl.platform_info().pci_address().to_string(),
            )?)
        }
        (Target::Path(_), EngineKind::Null | EngineKind::NvmeModel) => {
            let size = match job.size {
                Some(crate::options::Amount::Bytes(b)) => b
                    .checked_add(job.offset.resolve(b))
                    .ok_or_else(|| Error::msg("offset + size overflows"))?,
                _ => {
                    return Err(Error::msg(format!(
                        "you need to specify size= (ioengine={} needs size=: it has no file)",
                        job.ioengine.name()
                    )))
                }
            };
            if job.ioengine == EngineKind::Null {
                Box::new(engine::null::Null::open(size, slots, buf_len, job.iodepth)?)
            } else {
                Box::new(engine::model::open(job, size, slots, buf_len)?)
            }
        }
        (Target::Path(p), EngineKind::IoUring) => Box::new(engine::uring::PlainUring::open(
            job, p, want, slots, buf_len,
        )?),
        (Target::Path(p), EngineKind::IoUringCmd) => {
            Box::new(engine::uring::CmdUring::open(job, p, slots, buf_len)?)
        }
        (Target::Path(p), EngineKind::Libaio) => Box::new(engine::libaio::Libaio::open(
            p,
            job.open_flags(),
            job.rw.opens_rw(),
            want,
            slots,
            buf_len,
        )?),
        (Target::Path(p), EngineKind::Psync) => Box::new(engine::psync::Psync::open(
            p,
            job.open_flags(),
            job.rw.opens_rw(),
            want,
            slots,
            buf_len,
        )?),
        _ => return Err(Error::msg("internal: engine and target do not match")),
    })
}

/// What a slot's I/O is: direction, offset, length, verify generation,
/// whether it counts (not ramp), and its prepared / issued / completed
/// (sync engines) times.
#[derive(Copy, Clone)]
struct SlotIo {
    dir: Dir,
    /// The file (several files) and whether the I/O reads back a logged
    /// block (fio's IO_U_F_VER_LIST: the verify pass or verify_backlog).
    file: usize,
    vlist: bool,
    off: u64,
    len: usize,
    gen: u32,
    count: bool,
    prep: Instant,
    issue: Instant,
    done: Instant,
    /// The I/O's priority (fio's io_u->ioprio).
    prio: u16,
}

#[derive(Copy, Clone, PartialEq, Eq)]
enum Mode {
    Workload,
    Verify,
}

#[allow(clippy::needless_range_loop)] // d indexes several per-direction arrays
fn run_inner(ctx: &RunCtx, res: &mut JobResult) -> Result<()> {
    let job = &ctx.job;
    if let Some(c) = &ctx.cpus {
        sys::pin_current_thread(c)?;
    }
    crate::numa::apply(job)?;
    let max_bs = job.max_bs() as usize;
    let depth_cfg = job.iodepth as usize;
    // Several files (or `filesize`): fio's per-file sizes and regions,
    // after layout (the same seed as layout's, for `filesize` ranges).
    let plan = if crate::files::multi(job) {
        Some(crate::files::planned(
            job,
            job.randseed.wrapping_add(u64::from(ctx.clone)),
        )?)
    } else {
        None
    };
    // fio: ioprio_set before the engine opens (backend.c).
    crate::prio::set_thread_prio(job)?;
    let mut eng = open_engine(ctx, depth_cfg, max_bs, plan.as_ref())?;
    // Several files: each opens when fio's file choice first takes it
    // (get_next_file) and closes when done with, so at most `openfiles`
    // (and the first, which the engine opened) are open at once. The
    // engine's place of a closed file takes the next one opened.
    let on_files = job.ioengine.on_files();
    let mut places = Places::new(plan.as_ref().map_or(1, |p| p.files.len()));
    let file_paths: Vec<(String, u64)> = plan.as_ref().map_or_else(Vec::new, |p| {
        p.files
            .iter()
            .map(|f| (f.path.clone(), f.offset + f.io_size))
            .collect()
    });
    let sync = eng.is_sync();
    // io_submit_mode=offload (engine/offload.rs): the workers stamp issue
    // and completion; slat is recorded at completion.
    let offload = job.offload;
    // fio records no slat for a synchronous engine's I/O (psync), offloaded
    // or not.
    let offload_slat = offload && job.ioengine != EngineKind::Psync;
    let may_busy = eng.may_be_busy();
    let depth = if sync { 1 } else { depth_cfg };

    // The region (of the first file, when there are several).
    let dev = eng.size();
    let lbs = eng.block_size();
    let base = match &plan {
        Some(p) => p.files[0].offset,
        None => job.offset.resolve(dev),
    };
    if base % lbs != 0 {
        return Err(Error::msg(format!(
            "offset {base} is not a multiple of the {lbs}-byte logical block"
        )));
    }
    if job.min_bs() % lbs != 0 {
        return Err(Error::msg(format!(
            "block size {} is not a multiple of the {lbs}-byte logical block",
            job.min_bs()
        )));
    }
    let len = match (&plan, job.size) {
        (Some(p), _) => p.files[0].io_size,
        (None, Some(s)) => s.resolve(dev),
        (None, None) => dev.saturating_sub(base),
    };
    if base.checked_add(len).is_none_or(|end| end > dev) {
        return Err(Error::msg(format!(
            "offset {base} + size {len} is past the end of the target ({dev} bytes)"
        )));
    }
    if plan.is_none() && len < max_bs as u64 {
        return Err(Error::msg(format!(
            "the region ({len} bytes) is smaller than the block size ({max_bs})"
        )));
    }
    if job.time_based && job.runtime.is_none() {
        return Err(Error::msg("time_based needs a runtime"));
    }
    // block_error_percentiles: fio's ts.block_infos (filesetup.c), one
    // per trim block of the file's region, at most 8192.
    if job.block_error_percentiles {
        let n = len / job.bs_trim.max(1);
        if n == 0 || n > crate::stats::MAX_BLOCK_INFOS as u64 {
            res.errno = libc::EINVAL;
            return Err(Error::msg(format!(
                "cannot calculate block histogram with {n} trim blocks, maximum {}",
                crate::stats::MAX_BLOCK_INFOS
            )));
        }
        res.block_infos = Some(vec![0; n as usize]);
    }
    // zonemode=strided: the generator draws within one zone's range.
    let zones = if plan.is_none() {
        job.strided_zones()
    } else {
        None
    };
    let mut strided = zones.map(|z| crate::gen::Strided::new(z, base, dev, len, job.time_based));
    let gen_len = zones.map_or(len, |(_, range, _)| range);
    let mut gen = Gen::new(job, base, gen_len.max(1), ctx.seed);
    if plan.is_none() && strided.is_none() {
        // fio's own random choices on its random map with varying sizes
        // (gen.rs FioRand), seeded as fio seeds this job.
        let deterministic = job.randrepeat || job.randseed_set;
        gen.follow_fio(
            job,
            crate::gen::FioSeed {
                randseed: if deterministic {
                    job.randseed
                } else {
                    ctx.seed
                },
                repeatable: job.randrepeat,
                reseed: job.randrepeat && !job.randseed_set,
                thread: ctx.number,
                taus64: job.taus64,
            },
            dev.saturating_sub(base),
            sync,
        );
    }
    let regions: Vec<(u64, u64)> = plan
        .iter()
        .flat_map(|p| p.files.iter().map(|f| (f.offset, f.io_size)))
        .collect();
    let mut multi = plan.map(|p| crate::files::Running::new(job, p, ctx.seed));
    // The file of the I/O picked last (several files), its loops done.
    let mut cur_file = 0usize;
    let mut passes = 0u32;
    // I/Os picked when the current loop over the files began.
    let mut pass_start_ios = 0u64;

    // fio's td_io_open_file: drop the cached pages of the job's range
    // (`invalidate`, default 1; a failure is only a warning, as fio), then
    // give the access-pattern hint (`fadvise_hint`, errors ignored as fio).
    // With several files this happens per file as each opens (below).
    if let (Some(f), None) = (eng.file(), &multi) {
        open_hints(job, f, base, len);
    }
    // fio's loop_cache_invalidate: a time-based buffered job drops the
    // cache again at each new pass over its region, so every pass reads
    // the device as the first did.
    let reinvalidate =
        job.invalidate && job.time_based && !job.direct && eng.file().is_some() && multi.is_none();

    // Verify bookkeeping: the blocks written and not yet read back, and
    // the generation last written to each (verify.rs `Written`).
    let verifying = job.verify != Verify::None;
    let mixed = job.rw.has_read() && job.rw.has_write();
    let vbs = job.bs[0];
    let writes = job.rw.has_write();
    let mut written = if verifying && writes {
        let r = if regions.is_empty() {
            vec![(base, len)]
        } else {
            regions.clone()
        };
        let fifo = job.rw.random() && !job.norandommap;
        Some(verify::Written::new(&r, vbs, fifo, job.verify_only).map_err(Error::msg)?)
    } else {
        None
    };
    // fio's thread_main: a job that writes and verifies runs cycles of a
    // workload pass (at most `size` bytes, fio's do_io) then a verify pass
    // over what that pass wrote (do_verify), while fio's keep_running
    // holds: every loop of `loops`, for ever when time_based. A runtime
    // that ends a pass ends the job (fio's terminate): no verify follows.
    let cycling = verifying && writes && job.do_verify && !job.verify_only;
    let mut terminated = false;
    let mut cycles_done = 0u32;
    let pattern: Option<Vec<u8>> = (job.verify == Verify::Pattern
        || (job.verify == Verify::Meta && !job.verify_pattern.is_empty()))
    .then(|| job.verify_pattern.clone());
    let vhash = match job.verify {
        Verify::Hash(h) => Some(h),
        _ => None,
    };
    // verify_interval (fio's fixup_options and get_hdr_inc): a header every
    // `interval` bytes; fio fails a job whose interval cannot hold its
    // header ("Blocksize too small", EINVAL).
    let interval = job.verify_interval_eff();
    if verifying && interval <= crate::options::fio_verify_header_len(job.verify) {
        res.errno = libc::EINVAL;
        return Err(Error::msg(format!(
            "Blocksize too small: verify_interval {interval} cannot hold the verify header"
        )));
    }
    let vspec = verify::Spec {
        pattern: pattern.as_deref(),
        hash: vhash,
        meta: job.verify == Verify::Meta,
        interval: interval as usize,
        fatal: job.verify_fatal,
    };
    let vseed = ctx.seed;

    // dedupe_percentage / buffer_compress_percentage: every write's buffer
    // filled afresh (dedupe.rs).
    let mut dedupe = if writes && !verifying {
        let size = match job.size {
            Some(crate::options::Amount::Bytes(b)) => b,
            _ => 0,
        };
        crate::dedupe::Dedupe::new(job, size, ctx.number, ctx.threads)
    } else {
        None
    };
    // Non-verify writes carry random bytes (fio's default buffer contents).
    // `buffer_pattern`: the pattern repeated instead.
    if writes && !verifying && !job.buffer_pattern.is_empty() {
        for s in 0..depth {
            for (i, b) in eng.buf_mut(s).iter_mut().enumerate() {
                *b = job.buffer_pattern[i % job.buffer_pattern.len()];
            }
        }
    } else if writes && !verifying {
        let mut r = Rng::new(ctx.seed ^ 0x5555);
        for s in 0..depth {
            for w in eng.buf_mut(s).chunks_mut(8) {
                let v = r.next_u64().to_le_bytes();
                w.copy_from_slice(&v[..w.len()]);
            }
        }
    }

    // fio's scramble_buffers (on by default; off for verify writes, whose
    // contents are the verify header): see `scramble_buffer`.
    // (Not with dedupe/compress buffers: fio's TD_F_COMPRESS.)
    let scramble = job.scramble_buffers && !verifying && dedupe.is_none();

    let bsub = if job.iodepth_batch_submit == 0 {
        depth
    } else {
        (job.iodepth_batch_submit as usize).min(depth)
    };
    let cmin = (job.iodepth_batch_complete_min as usize).min(depth);
    let cmax = if job.iodepth_batch_complete_max == 0 {
        depth
    } else {
        (job.iodepth_batch_complete_max as usize).min(depth)
    };

    let now0 = Instant::now();
    let mut free: Vec<usize> = (0..depth).rev().collect();
    // Per slot: the I/O it carries (one array of records, one bounds check).
    let mut sl = vec![
        SlotIo {
            dir: Dir::Read,
            file: 0,
            vlist: false,
            off: 0,
            len: 0,
            gen: 0,
            count: false,
            prep: now0,
            issue: now0,
            done: now0,
            prio: 0,
        };
        depth
    ];
    // I/O priorities: the job's default and cmdprio's per-I/O choice; the
    // engine is told each I/O's when either is in use.
    let def_prio = crate::prio::default_prio(job);
    let mut cmdprio = crate::prio::CmdPrio::new(job);
    if let Some(c) = &cmdprio {
        for (d, order) in c.order.iter().enumerate() {
            res.dirs[d].prios = order
                .iter()
                .map(|&p| (p, crate::stats::LatStat::new()))
                .collect();
        }
    }
    let prio_io = def_prio != 0 || cmdprio.is_some();
    let mut queued: Vec<usize> = Vec::with_capacity(depth);
    let mut done: Vec<Done> = Vec::with_capacity(depth);
    let mut inflight = 0usize;
    // Slots whose I/O passed its deadline (reported, counted) while the
    // device still holds the buffer: busy until the late completion.
    let mut held = 0usize;
    // When the job decided to stop with I/Os outstanding, and the reap
    // deadline last given to the engine.
    let mut stopped_at: Option<Instant> = None;
    let mut engine_until: Option<Instant> = None;
    let drain_bound = eng.io_timeout().map_or(Duration::from_secs(30), |t| {
        t * 3 / 2 + Duration::from_secs(1)
    });
    let mut left_outstanding = false;

    let ramp = job.ramp_time;
    let mut state = if ramp.is_zero() { ST_RUN } else { ST_RAMP };
    ctx.progress.state.store(state, Ordering::Relaxed);
    // Bytes to move: `io_size` (else `size`), `loops` times; `number_ios`
    // caps the I/O count (times loops, as fio's exceeds_number_ios).
    // A pass over one file moves its whole blocks only (fio ends the pass
    // when the next I/O would not fit): 300000 bytes at bs=512 are 585
    // I/Os, not a 586th wrapped to the start.
    let unit = match job.blockalign {
        Some(ba) if job.rw.random() => ba.max(1),
        _ => job.min_bs().max(1),
    };
    let io_limit = job
        .io_size
        .unwrap_or(multi.as_ref().map_or(len / unit * unit, |m| m.plan.size))
        .saturating_mul(u64::from(job.loops));
    let ios_limit = job.number_ios.saturating_mul(u64::from(job.loops));
    // A verify cycle's workload pass (fio's do_io) ends when its files
    // are done or when the bytes queued reach `total_bytes`: `size` (or
    // `io_size` if larger for random writes without a random map), twice
    // that with verify_backlog (the read-backs count). fio counts them
    // when the engine queues them (io_queue_event, FIO_Q_QUEUED), so on a
    // sync engine only done files end a pass: a time-based job on one
    // file never verifies (fio: "verification read phase will never
    // start"). One file is done after `size` bytes of the workload, but
    // for time_based and random offsets without a map (never done).
    let pass_size = multi.as_ref().map_or(len / unit * unit, |m| m.plan.size);
    let mut cycle_limit = pass_size;
    if writes && job.rw.random() && job.norandommap {
        cycle_limit = cycle_limit.max(job.io_size.unwrap_or(0));
    }
    if verifying && writes && job.verify_backlog > 0 {
        cycle_limit = cycle_limit.saturating_add(pass_size);
    }
    let one_file_done =
        multi.is_none() && !(job.time_based || (job.rw.random() && job.norandommap));
    let pass_over = |queued: u64, work: u64| {
        (!sync && queued >= cycle_limit) || (one_file_done && work >= pass_size)
    };
    // This pass's bytes: all queued, and the workload's own.
    let (mut cycle_issued, mut cycle_work) = (0u64, 0u64);
    // verify_backlog: the reads left in the current batch, the direction
    // of the last completed I/O (fio's verify_batch, last_ddir), and the
    // read-back of a pick that waits for a slot.
    let mut vbatch = 0u64;
    let mut last_done: Option<Dir> = None;
    let mut pending_v: Option<(usize, u32)> = None;
    // Several files: a pass ends when every file is done, unless fio
    // starts a file over instead (time_based, random or on one file).
    let files_end_pass = !(job.time_based && (job.rw.random() || regions.len() == 1));
    let planned = if job.time_based { 0 } else { io_limit };
    ctx.progress.planned_bytes.store(planned, Ordering::Relaxed);
    let mut run_start = now0;
    let ramp_end = now0 + ramp;
    let mut usage0 = sys::thread_usage();
    let mut mode = if job.verify_only && writes {
        Mode::Verify
    } else {
        Mode::Workload
    };
    if mode == Mode::Verify {
        state = ST_VERIFY;
        ctx.progress.state.store(state, Ordering::Relaxed);
    }
    // When the verify pass started (the workload phase ends there).
    // When the current pass (workload or verify) began, whether a verify
    // pass ran, and the time of the passes before this one (fio's
    // update_runtime after each do_io and do_verify).
    let mut phase_start = now0;
    let mut verify_ran = mode == Mode::Verify;
    let (mut work_done, mut verify_done) = (Duration::ZERO, Duration::ZERO);
    // The generation of the block the verify pass picked last.
    let mut vgen = verify::ANY_GEN;
    let mut stop = false;
    let mut issued_bytes = 0u64;
    let mut issued_ios = [0u64; NDIR];
    let mut issued_dir_bytes = [0u64; NDIR];
    // `rate_iops` and `rate` (bytes/s) per direction (none for trims).
    let rate = [job.rate_iops[0], job.rate_iops[1], None];
    let rate_bw = [job.rate[0], job.rate[1], None];
    // `rate_process=poisson`: the I/O rate a direction is held to (fio
    // turns `rate` into I/Os of the smallest block size), the due time of
    // its next I/O after `run_start`, and the generator of the gaps.
    let poisson_iops: [Option<f64>; NDIR] = std::array::from_fn(|d| {
        if !job.rate_poisson {
            return None;
        }
        match (rate_bw[d], rate[d]) {
            (Some(b), _) => Some(b as f64 / job.min_bs().max(1) as f64),
            (None, Some(n)) => Some(n as f64),
            (None, None) => None,
        }
    });
    let mut poisson_due = [Duration::ZERO; NDIR];
    // Any rate limit at all (skips the per-I/O due-time arithmetic).
    let rated = rate.iter().chain(rate_bw.iter()).any(Option::is_some)
        || poisson_iops.iter().any(Option::is_some);
    let mut poisson_rng = Rng::new(ctx.seed ^ 0x9e37_79b9_7f4a_7c15);
    let mut pending: Option<(Dir, u64, u64)> = None;

    // Averaging windows (fio's 500 ms) and the interval log.
    const WINDOW: Duration = Duration::from_millis(500);
    let mut next_window = run_start + WINDOW;
    let mut win_base = [(0u64, 0u64); NDIR];
    let (ival, itx) = match &ctx.interval {
        Some((d, tx)) => (*d, Some(tx.clone())),
        None => (Duration::from_secs(3600 * 24 * 365), None),
    };
    let mut next_ival = run_start + ival;
    let mut logs = crate::logs::Logs::open(job, ctx.number, !sync, now0.to_std())?;
    let mut deferred = Deferred::new(depth, itx.is_some());
    deferred.off = [job.disable_slat, job.disable_clat, job.disable_lat];
    deferred.prio_on = job.cmdprio.on();
    deferred.prio_lat = job.lat_percentiles;
    let mut ival_base = [(0u64, 0u64); NDIR];
    let mut ival_clat = [LatStat::new(), LatStat::new(), LatStat::new()];
    // What the live counters (the status line) were last given, per
    // direction: the job's counts are published once per reaped batch.
    let mut published = [(0u64, 0u64); NDIR];
    // The live counters' values (what this thread last stored).
    let mut shown: [(u64, u64); NDIR] = std::array::from_fn(|d| {
        (
            ctx.progress.ios[d].load(Ordering::Relaxed),
            ctx.progress.bytes[d].load(Ordering::Relaxed),
        )
    });

    // The newest timestamp taken for an I/O (commit or reap) since the last
    // loop turn: the loop's own clock then reuses it instead of reading the
    // clock again (it is at most one turn old; a turn that took none reads
    // the clock). Saves one clock read per I/O at iodepth_batch_submit=1.
    let mut fresh: Option<Instant> = None;
    // fio's thinktime (backend.c handle_thinktime): after every
    // `thinktime_blocks` I/Os (completed, or issued with
    // `thinktime_blocks_type=issue`) of the workload, the I/Os in flight
    // are finished, then the job spins `thinktime_spin` and sleeps the
    // rest of `thinktime`. `think_at`: the count that called for a pause
    // (while the queue drains), `think_last`: the count at the last one.
    let thinking = !job.thinktime.is_zero();
    let (mut think_count, mut think_last, mut think_at) = (0u64, 0u64, None::<u64>);
    let mut min_rate = crate::minrate::MinRate::new(job, now0);
    let mut flow = crate::flow::JobFlow::new(job);
    // `runtime` in the loop clock's unit.
    let runtime_ns = job
        .runtime
        .map(|d| d.as_nanos().min(u128::from(u64::MAX)) as u64);
    // latency_target's depth search (lat_target.rs), started with the
    // measured phase (fio's lat_target_init at the job's start, checked
    // out of ramp only).
    let mut lt = crate::lat_target::LatTarget::new(job, now0);
    // lat_target's final run starts: statistics reset as at ramp's end.
    let mut lat_reset = false;
    // The steady state's turns, engine calls inlined (`Fast`), when nothing
    // the job uses needs the general loop.
    let fast_ok = fast_allowed(job, sync, may_busy)
        && !prio_io
        && !rated
        && flow.is_none()
        && multi.is_none()
        && logs.is_none()
        && min_rate.is_none()
        && !reinvalidate
        && strided.is_none()
        // (scramble_buffers touches each write's buffer; `cycle_issued`
        // matters only to verify cycles, which the fast path never runs.)
        && !(writes && scramble)
        // (dedupe/compress fill each write's buffer; offload's workers
        // stamp the times.)
        && dedupe.is_none()
        && !offload
        && lt.is_none()
        // (steady-state detection samples the live counters once a second
        // and stops the job through `exitall`: the general loop.)
        && job.ss_secs() == 0
        // (split trimwrite passes and per-block trim counts: the general
        // loop.)
        && !gen.is_split()
        // (fio's random choices for a mixed job, or an I/O that may not be
        // placed: the general loop.)
        && !gen.needs_general_loop()
        && res.block_infos.is_none();
    // Steady-state detection: the epoch and the live counters then.
    let publish_epoch = |at: Instant, shown: &[(u64, u64); NDIR], reset: bool| {
        if job.ss_secs() > 0 {
            *ctx.progress.epoch.lock().unwrap_or_else(|p| p.into_inner()) =
                Some(crate::steadystate::Epoch {
                    at: at.to_std(),
                    ios: shown.iter().map(|s| s.0).sum(),
                    bytes: shown.iter().map(|s| s.1).sum(),
                    reset,
                });
        }
    };
    if state != ST_RAMP {
        publish_epoch(now0, &shown, false);
    }
    loop {
        if fast_ok
            && state == ST_RUN
            && mode == Mode::Workload
            && !stop
            && held == 0
            && pending.is_none()
            && queued.is_empty()
        {
            // The reap deadline the general turn would give the engine.
            let until = runtime_ns.map(|rt| run_start.add_nanos(rt));
            if until != engine_until {
                engine_until = until;
                eng.set_deadline(until.map(Instant::to_std));
            }
            let mut f = Fast {
                gen: &mut gen,
                sl: &mut sl,
                free: &mut free,
                queued: &mut queued,
                deferred: &mut deferred,
                res,
                ival_clat: &mut ival_clat,
                job,
                progress: &ctx.progress,
                exitall: &ctx.exitall,
                published: &mut published,
                shown: &mut shown,
                inflight,
                held,
                issued_bytes,
                issued_dir_bytes,
                issued_ios,
                issued_total: issued_ios.iter().sum(),
                depth,
                bsub,
                max_bs: max_bs as u64,
                cmin,
                cmax,
                next_event: next_window.min(next_ival).min(until.unwrap_or(next_ival)),
                bytes_limit: if job.time_based { u64::MAX } else { io_limit },
                ios_limit: if ios_limit > 0 { ios_limit } else { u64::MAX },
                trim_counts: !job.rw.has_write(),
                stop,
                fresh,
                next_publish: Instant::ORIGIN,
            };
            let r = eng.run_fast(&mut f);
            publish_progress(f.progress, f.res, f.published, f.shown);
            (inflight, held, stop, fresh) = (f.inflight, f.held, f.stop, f.fresh);
            (issued_bytes, issued_dir_bytes, issued_ios) =
                (f.issued_bytes, f.issued_dir_bytes, f.issued_ios);
            if let Some(r) = r {
                r?;
            }
        }
        let now = fresh.take().unwrap_or_else(Instant::now);
        if let Some(l) = &mut lt {
            if l.drain && inflight == 0 && queued.is_empty() {
                l.drained(now);
                lat_reset = std::mem::take(&mut l.reset);
            }
            if l.done && !stop {
                stop = true;
            }
            let moved = res.dirs.iter().any(|d| d.bytes > 0);
            if state == ST_RUN && mode == Mode::Workload && moved && !stop {
                l.check(now);
            }
        }
        if lat_reset {
            // fio's reset_all_stats: the byte and I/O counts that bound
            // the job restart too (and so does its runtime).
            issued_bytes = 0;
            issued_ios = [0; NDIR];
            issued_dir_bytes = [0; NDIR];
        }
        if (state == ST_RAMP && now >= ramp_end) || std::mem::take(&mut lat_reset) {
            publish_epoch(now, &shown, true);
            state = ST_RUN;
            ctx.progress.state.store(state, Ordering::Relaxed);
            for d in res.dirs.iter_mut() {
                d.reset();
            }
            published = [(0, 0); NDIR];
            res.depth = DepthHist::default();
            run_start = now;
            next_window = now + WINDOW;
            next_ival = now + ival;
            win_base = [(0, 0); NDIR];
            ival_base = [(0, 0); NDIR];
            usage0 = sys::thread_usage();
        }
        if ctx.progress.snap_req.load(Ordering::Relaxed) {
            // A --status-interval report: the statistics so far.
            deferred.flush(res, &mut ival_clat);
            for d in res.dirs.iter_mut() {
                d.slat.settle();
                d.clat.settle();
                d.lat.settle();
            }
            let mut s = res.clone();
            let t = if state == ST_RAMP {
                Duration::ZERO
            } else {
                now.saturating_duration_since(run_start)
            };
            s.runtime = t;
            for d in 0..NDIR {
                if res.dirs[d].bytes > 0 {
                    s.dir_runtime[d] = t;
                }
            }
            s.usage = sys::thread_usage() - usage0;
            s.elapsed = now.saturating_duration_since(now0);
            *ctx.progress.snap.lock().unwrap_or_else(|p| p.into_inner()) = Some(s);
            ctx.progress.snap_req.store(false, Ordering::Relaxed);
        }
        if state == ST_RUN || state == ST_VERIFY {
            if now >= next_window {
                for d in 0..NDIR {
                    let st = &mut res.dirs[d];
                    let (i0, b0) = win_base[d];
                    let secs = WINDOW.as_secs_f64();
                    if job_dir_used(job, d) {
                        st.bw_samples.push((st.bytes - b0) as f64 / 1024.0 / secs);
                        st.iops_samples.push((st.ios - i0) as f64 / secs);
                    }
                    win_base[d] = (st.ios, st.bytes);
                }
                next_window += WINDOW;
                if next_window < now {
                    next_window = now + WINDOW;
                }
            }
            if now >= next_ival {
                deferred.flush(res, &mut ival_clat);
                ival_clat.iter_mut().for_each(LatStat::settle);
                if let Some(tx) = &itx {
                    let line =
                        interval_line(ctx, res, &ival_base, &ival_clat, now - run_start, ival);
                    let _ = tx.send(line);
                }
                for d in 0..NDIR {
                    ival_base[d] = (res.dirs[d].ios, res.dirs[d].bytes);
                    ival_clat[d].reset();
                }
                next_ival += ival;
                if next_ival < now {
                    next_ival = now + ival;
                }
            }
        }
        // rate_min / rate_iops_min (minrate.rs).
        if let (Some(m), false, ST_RUN) = (&mut min_rate, stop, state) {
            let done = [0, 1].map(|d| (res.dirs[d].ios, res.dirs[d].bytes));
            if let Some(e) = m.check(now, done) {
                res.error = Some(e);
                res.errno = libc::EIO;
                stop = true;
            }
        }
        // Workload end conditions.
        if !stop && ctx.exitall.load(Ordering::Relaxed) {
            stop = true;
            terminated = true;
        }
        if !stop && (state == ST_RUN || state == ST_VERIFY) {
            // fio checks the runtime in the verify pass too (do_verify).
            if let Some(rt) = runtime_ns {
                if now.nanos_since(run_start) >= rt {
                    stop = true;
                    terminated = true;
                }
            }
        }
        if mode == Mode::Workload && !stop {
            if cycling && pass_over(cycle_issued, cycle_work) {
                stop = true;
            }
            if !job.time_based && state == ST_RUN && issued_bytes >= io_limit {
                stop = true;
            }
            if ios_limit > 0 && state == ST_RUN && issued_ios.iter().sum::<u64>() >= ios_limit {
                stop = true;
            }
        }

        // Issue.
        let mut rate_wait: Option<Instant> = None;
        // fio's FIO_Q_BUSY (the null engine between a commit and a reap).
        let mut busy = may_busy && eng.busy();
        if thinking
            && mode == Mode::Workload
            && think_at.is_none()
            && think_count >= think_last + u64::from(job.thinktime_blocks)
        {
            think_at = Some(think_count);
        }
        if queued.is_empty() {
            places.submitted();
        }
        while !stop
            && !busy
            && think_at.is_none()
            && inflight + queued.len() < depth
            && queued.len() < bsub
            // latency_target: at most its depth in flight, none while
            // draining (fio's queue_full with latency_qd).
            && lt
                .as_ref()
                .is_none_or(|l| !l.drain && inflight + queued.len() < l.qd as usize)
        {
            if mode == Mode::Workload && state == ST_RUN {
                let bytes_done = !job.time_based && issued_bytes >= io_limit;
                let ios_done = ios_limit > 0 && issued_ios.iter().sum::<u64>() >= ios_limit;
                if bytes_done || ios_done {
                    stop = true;
                    break;
                }
            }
            if mode == Mode::Workload && cycling && pass_over(cycle_issued, cycle_work) {
                stop = true;
                break;
            }
            // This I/O reads back a block of the log during the workload
            // (verify_backlog): its file and generation.
            let mut vpick: Option<(usize, u32)> = None;
            let (dir, off, bs) = match mode {
                Mode::Workload => match pending.take() {
                    Some(p) => {
                        vpick = pending_v.take();
                        p
                    }
                    None => match written
                        .as_mut()
                        .and_then(|w| backlog_next(w, &mut vbatch, last_done, job))
                    {
                        Some((f, o, g)) => {
                            vpick = Some((f, g));
                            (Dir::Read, o, vbs)
                        }
                        None => {
                            // flow/flow_id: ahead of its share, the job waits
                            // for its I/Os, sleeps flow_sleep, checks again.
                            if let Some(f) = &mut flow {
                                if f.exceeded() {
                                    let sleep = Duration::from_micros(f.sleep_us);
                                    rate_wait = Some(if inflight == 0 { now + sleep } else { now });
                                    break;
                                }
                            }
                            let mut d = gen.next_dir();
                            // fio's rate_ddir: a mixed job whose drawn
                            // direction is ahead of its rate takes the other
                            // one if that is not (a direction without a rate
                            // never is), so `rate=,100k` holds the writes and
                            // lets the reads run free.
                            if rated && mixed && state == ST_RUN {
                                let due = |d: Dir| -> Option<Instant> {
                                    let i = d as usize;
                                    let by_ios = rate[i].map(|r| {
                                        run_start
                                            + Duration::from_secs_f64(
                                                issued_ios[i] as f64 / r as f64,
                                            )
                                    });
                                    let by_bytes = rate_bw[i].map(|r| {
                                        run_start
                                            + Duration::from_secs_f64(
                                                issued_dir_bytes[i] as f64 / r as f64,
                                            )
                                    });
                                    match poisson_iops[i] {
                                        Some(_) => Some(run_start + poisson_due[i]),
                                        None => by_ios.into_iter().chain(by_bytes).max(),
                                    }
                                };
                                let ahead = |d: Dir| due(d).is_some_and(|t| now < t);
                                let other = match d {
                                    Dir::Read => Dir::Write,
                                    Dir::Write => Dir::Read,
                                    Dir::Trim => Dir::Trim,
                                };
                                let share = if other == Dir::Read {
                                    job.rwmixread
                                } else {
                                    100 - job.rwmixread
                                };
                                if other != d && share > 0 && ahead(d) && !ahead(other) {
                                    d = other;
                                    gen.set_dir(d);
                                }
                            }
                            let bs = gen.pick_bs(d);
                            let (off, bs) = match &mut multi {
                                None if gen.is_split() => match gen.pick_split(d, bs) {
                                    Some(x) => x,
                                    None => {
                                        // A split trimwrite's pass ends when its
                                        // next I/O starts at or past the region's
                                        // end (fio's get_next_offset fails): the
                                        // next loop starts over, if any is left.
                                        // (A pass that placed no I/O ends the job.)
                                        passes += 1;
                                        if passes < job.loops && gen.split_moved() {
                                            gen.restart();
                                            continue;
                                        }
                                        stop = true;
                                        break;
                                    }
                                },
                                None => match &mut strided {
                                    None => match gen.pick_io(bs) {
                                        // fio's fill_io_u failed (only on
                                        // fio's streams: Gen::may_end): the
                                        // loop is over (the file is done);
                                        // the next one picks anew.
                                        (_, 0) if gen.take_next_loop() => continue,
                                        (_, 0) => {
                                            stop = true;
                                            break;
                                        }
                                        x => x,
                                    },
                                    Some(z) => match z.pick(&mut gen, d, bs) {
                                        Some(x) => x,
                                        None => {
                                            // fio's fill_io_u: past the file's end.
                                            stop = true;
                                            break;
                                        }
                                    },
                                },
                                Some(m) => {
                                    // Closes from a new loop first: a file reopened below keeps its
                                    // new place.
                                    places.closed(&mut m.picker.closed);
                                    let mut open_err: Option<Error> = None;
                                    let mut opened = |f: usize| {
                                        if !on_files || open_err.is_some() {
                                            return;
                                        }
                                        if let Err(e) =
                                            place_file(job, &mut *eng, &mut places, &file_paths, f)
                                        {
                                            open_err = Some(e);
                                            return;
                                        }
                                        if let Some(file) = eng.file_at(places.efile[f]) {
                                            let (o, l) = regions[f];
                                            open_hints(job, file, o, l);
                                        }
                                    };
                                    let next = m.next(bs, &mut opened);
                                    if let Some(e) = open_err {
                                        return Err(e);
                                    }
                                    places.closed(&mut m.picker.closed);
                                    match next {
                                        Some((f, off, len)) => {
                                            cur_file = f;
                                            (off, len)
                                        }
                                        None => {
                                            // Every file is done: the loop ends
                                            // (fio's do_io); another follows
                                            // while loops remain, time_based
                                            // runs, or io_size is not reached.
                                            passes += 1;
                                            // A loop that placed no I/O ends
                                            // the job (fio: no bytes done).
                                            let moved =
                                                std::mem::replace(&mut pass_start_ios, m.picked)
                                                    < m.picked;
                                            if cycling && files_end_pass {
                                                // The cycle's workload ends
                                                // here; its verify pass next.
                                                terminated |= !moved;
                                                stop = true;
                                                break;
                                            }
                                            let more = moved
                                                && (job.time_based
                                                    || passes < job.loops
                                                    || (job.io_size.is_some()
                                                        && io_limit.saturating_sub(issued_bytes)
                                                            >= max_bs as u64));
                                            if more && passes < u32::MAX {
                                                m.reset();
                                                continue;
                                            }
                                            stop = true;
                                            break;
                                        }
                                    }
                                }
                            };
                            if reinvalidate && gen.take_new_pass() {
                                if let Some(f) = eng.file() {
                                    invalidate_warn(job, f, base, len);
                                }
                            }
                            (d, off, bs)
                        }
                    },
                },
                Mode::Verify => match written.as_mut().and_then(verify::Written::next) {
                    Some((f, o, g)) => {
                        // A file closed since its writes opens again for
                        // its reads; the one read before closes.
                        if multi.is_some() && on_files && f != cur_file {
                            places.close(cur_file);
                            place_file(job, &mut *eng, &mut places, &file_paths, f)?;
                        }
                        cur_file = f;
                        vgen = g;
                        (Dir::Read, o, vbs)
                    }
                    None => {
                        stop = true;
                        break;
                    }
                },
            };
            if let Some((f, _)) = vpick {
                cur_file = f;
            }
            if rated && mode == Mode::Workload && state == ST_RUN && vpick.is_none() {
                let due_iops = rate[dir as usize].map(|r| {
                    run_start + Duration::from_secs_f64(issued_ios[dir as usize] as f64 / r as f64)
                });
                // `rate`: bytes per second.
                let due_bw = rate_bw[dir as usize].map(|r| {
                    run_start
                        + Duration::from_secs_f64(issued_dir_bytes[dir as usize] as f64 / r as f64)
                });
                let due = match poisson_iops[dir as usize] {
                    Some(_) => Some(run_start + poisson_due[dir as usize]),
                    None => due_iops.into_iter().chain(due_bw).max(),
                };
                if let Some(due) = due {
                    if now < due {
                        pending = Some((dir, off, bs));
                        rate_wait = Some(due);
                        break;
                    }
                }
            }
            let Some(slot) = free.pop() else {
                pending = Some((dir, off, bs));
                pending_v = vpick;
                break;
            };
            let len_io = bs as usize;
            if let (Dir::Write, Some(w)) = (dir, written.as_mut()) {
                let Some(g) = w.wrote(cur_file, off) else {
                    return Err(Error::msg(format!(
                        "internal: verify write at offset {off} outside the job's blocks"
                    )));
                };
                verify::fill(&mut eng.buf_mut(slot)[..len_io], off, vseed, g, &vspec);
            } else if dir == Dir::Write && scramble {
                scramble_buffer(&mut eng.buf_mut(slot)[..len_io], off, now0.elapsed());
            }
            if let (Some(d), Dir::Write) = (&mut dedupe, dir) {
                d.fill(&mut eng.buf_mut(slot)[..len_io]);
            }
            let gen = match (mode, vpick) {
                (Mode::Verify, _) => vgen,
                (_, Some((_, g))) => g,
                _ => verify::ANY_GEN,
            };
            let Some(si) = sl.get_mut(slot) else {
                return Err(Error::msg(format!("internal: slot {slot} out of range")));
            };
            si.dir = dir;
            si.file = cur_file;
            si.vlist = mode == Mode::Verify || vpick.is_some();
            si.off = off;
            si.len = len_io;
            si.gen = gen;
            si.count = state != ST_RAMP;
            si.prio = def_prio;
            if prio_io {
                let pick = cmdprio.as_mut().and_then(|c| c.pick(dir, len_io as u64));
                if let Some(p) = pick {
                    si.prio = p;
                }
                eng.set_ioprio(slot, def_prio, pick);
            }
            si.prep = Instant::now();
            if multi.is_some() {
                if on_files && places.efile[cur_file] == NO_FILE {
                    // A read-back of a file closed since its writes opens
                    // it again (fio's get_next_verify: td_io_open_file).
                    place_file(job, &mut *eng, &mut places, &file_paths, cur_file)?;
                    if let Some(f) = eng.file_at(places.efile[cur_file]) {
                        let (o, l) = regions[cur_file];
                        open_hints(job, f, o, l);
                    }
                }
                eng.set_file(slot, places.efile[cur_file]);
            }
            if let Err(e) = eng.queue(slot, dir, off, len_io) {
                free.push(slot);
                res.error = Some(format!(
                    "{} of {len_io} bytes at offset {off}: {e}",
                    dir_name(dir)
                ));
                res.errno = libc::EIO;
                stop = true;
                break;
            }
            if sync {
                sl[slot].done = Instant::now();
            }
            if mode == Mode::Workload {
                cycle_issued += bs;
                if vpick.is_none() {
                    cycle_work += bs;
                }
            }
            // Read-backs are not the workload's I/O (fio's io_issues skip
            // IO_U_F_VER_LIST).
            if mode == Mode::Workload && state == ST_RUN && vpick.is_none() {
                // fio's io_bytes_exceeded: a job that writes counts its
                // writes only (trimwrite's trims do not use up `size`).
                if !(dir == Dir::Trim && job.rw.has_write()) {
                    issued_bytes += bs;
                }
                issued_dir_bytes[dir as usize] += bs;
                issued_ios[dir as usize] += 1;
                if job.thinktime_by_issue {
                    think_count += 1;
                }
                if let Some(r) = poisson_iops[dir as usize] {
                    // An exponential gap with mean 1/r: -ln(U)/r, U in (0, 1].
                    let u = 1.0 - poisson_rng.unit();
                    let gap = (-u.ln() / r).min(3600.0);
                    poisson_due[dir as usize] += Duration::from_secs_f64(gap);
                }
            }
            queued.push(slot);
        }
        if !queued.is_empty() {
            if !sync {
                eng.commit()?;
            }
            if may_busy {
                busy = eng.busy();
            }
            let t = Instant::now();
            fresh = Some(t);
            let n = queued.len();
            deferred.room_for_slat(n, res, &mut ival_clat);
            for &s in &queued {
                let si = &mut sl[s];
                si.issue = if sync { si.prep } else { t };
                if si.count && !sync && !offload {
                    deferred.slat.push((si.dir, si.prep, t));
                }
            }
            inflight += n;
            res.depth.submit[DepthHist::batch_idx(n)] += 1;
            // Offloaded, each I/O runs alone on its worker (fio: depth 1).
            let level = if offload { 1 } else { inflight };
            res.depth.level[DepthHist::level_idx(level)] += n as u64;
            queued.clear();
        }

        if stop && inflight + held > 0 {
            // Draining, bounded: I/Os still in flight get until their
            // deadline has surely been checked (1.5 x nvme_io_timeout + 1 s;
            // 30 s without one); I/Os already past it only HELD_GRACE.
            let now = Instant::now();
            let at = *stopped_at.get_or_insert(now);
            let give_up = if inflight == 0 {
                at + HELD_GRACE
            } else {
                at + drain_bound
            };
            if now >= give_up {
                left_outstanding = true;
                break;
            }
            if engine_until != Some(give_up) {
                engine_until = Some(give_up);
                eng.set_deadline(engine_until.map(Instant::to_std));
            }
        } else {
            // The engine's reap returns by the end of the ramp or runtime
            // even if the device does not answer.
            let until = match (state, mode, runtime_ns) {
                (ST_RAMP, _, _) => Some(ramp_end),
                (ST_RUN, Mode::Workload, Some(rt)) => Some(run_start.add_nanos(rt)),
                _ => None,
            };
            if until != engine_until {
                engine_until = until;
                eng.set_deadline(until.map(Instant::to_std));
            }
        }
        if let (Some(b), false, 0) = (think_at, stop, inflight) {
            // Drained: think, no further than the end of the runtime.
            let now = Instant::now();
            let mut pause = job.thinktime;
            if let (ST_RUN, Some(rt)) = (state, job.runtime) {
                pause = pause.min((run_start + rt).saturating_duration_since(now));
            }
            let spin = job.thinktime_spin.min(pause);
            while Instant::now().saturating_duration_since(now) < spin {
                std::hint::spin_loop();
            }
            if pause > spin {
                std::thread::sleep(pause - spin);
            }
            think_last = b;
            think_at = None;
            continue;
        }
        if inflight == 0 && held == 0 {
            if stop {
                let go_on = cycling && !terminated && res.error.is_none();
                if mode == Mode::Workload && go_on {
                    // fio's do_verify: the cached pages of the files go
                    // first, so the read-back comes from the storage.
                    if let Some(f) = eng.file() {
                        if multi.is_none() {
                            invalidate_warn(job, f, base, len);
                        }
                    }
                    for (i, &(o, l)) in regions.iter().enumerate() {
                        if let Some(f) = places.efile.get(i).and_then(|&k| eng.file_at(k)) {
                            invalidate_warn(job, f, o, l);
                        }
                    }
                    mode = Mode::Verify;
                    state = ST_VERIFY;
                    ctx.progress.state.store(state, Ordering::Relaxed);
                    let t = Instant::now();
                    work_done += t.saturating_duration_since(phase_start.max(run_start));
                    phase_start = t;
                    verify_ran = true;
                    stop = false;
                    continue;
                }
                if mode == Mode::Verify && go_on {
                    // fio's keep_running: another cycle while loops are
                    // left, for ever when time_based, or while io_size is
                    // not reached (reads of the verify passes count).
                    cycles_done += 1;
                    let moved: u64 = res.dirs.iter().map(|d| d.bytes).sum();
                    // Without io_size, fio's limit is `size`, which the
                    // pass just moved (or the files are done).
                    let limit = job.io_size.unwrap_or(0);
                    let ios: u64 = res.dirs.iter().map(|d| d.ios).sum();
                    let more = job.time_based
                        || cycles_done < job.loops
                        || (moved < limit
                            && limit - moved >= max_bs as u64
                            && (ios_limit == 0 || ios < ios_limit));
                    if more {
                        let t = Instant::now();
                        verify_done += t.saturating_duration_since(phase_start);
                        phase_start = t;
                        // The next pass starts where fio's
                        // clear_io_state puts it: each file from its start.
                        mode = Mode::Workload;
                        state = ST_RUN;
                        ctx.progress.state.store(state, Ordering::Relaxed);
                        (cycle_issued, cycle_work) = (0, 0);
                        gen.restart();
                        if let Some(m) = &mut multi {
                            m.reset();
                        }
                        if let Some(w) = &mut written {
                            w.prune();
                        }
                        stop = false;
                        continue;
                    }
                }
                break;
            }
            if let Some(due) = rate_wait {
                let now = Instant::now();
                if due > now + Duration::from_micros(200) {
                    std::thread::sleep(due - now - Duration::from_micros(100));
                }
            }
            continue;
        }
        let lat_full = lt
            .as_ref()
            .is_some_and(|l| l.drain || inflight + queued.len() >= l.qd as usize);
        let full = inflight >= depth
            || stop
            || busy
            || think_at.is_some()
            || rate_wait.is_some()
            || free.is_empty()
            || lat_full;
        if !full {
            continue;
        }
        let min = if think_at.is_some() || lt.as_ref().is_some_and(|l| l.drain) {
            // fio's io_u_quiesce: everything in flight, before the pause.
            inflight
        } else if rate_wait.is_some() {
            0
        } else {
            cmin.min(inflight)
        };
        let max = cmax.min(inflight + held).max(1);
        if deferred.is_empty() || min == 0 {
            eng.reap(min, max, &mut done)?;
        } else {
            // Nothing to reap yet means the device is busy with our I/Os:
            // record the deferred samples now, then wait.
            eng.reap(0, max, &mut done)?;
            if done.is_empty() {
                deferred.flush(res, &mut ival_clat);
                eng.reap(min, max, &mut done)?;
            }
        }
        if done.is_empty() {
            continue;
        }
        let t = Instant::now();
        fresh = Some(t);
        res.depth.complete[DepthHist::batch_idx(done.len())] += 1;
        deferred.room_for_done(done.len(), res, &mut ival_clat);
        if offload {
            deferred.room_for_slat(done.len(), res, &mut ival_clat);
        }
        for dn in done.drain(..) {
            let s = dn.slot;
            if s >= sl.len() {
                return Err(Error::msg(format!("engine returned unknown slot {s}")));
            }
            if dn.late {
                // The buffer of an I/O reported at its deadline is back.
                held -= 1;
                free.push(s);
                continue;
            }
            let mut si = sl[s];
            let mut tc = if sync { si.done } else { t };
            if offload {
                if let Some((issued, completed)) = eng.times(s) {
                    (si.issue, tc) = (issued, completed);
                    if si.count && offload_slat {
                        deferred.slat.push((si.dir, si.prep, issued));
                    }
                }
            }
            let dir = si.dir;
            let failed = dn.res.is_err();
            last_done = Some(dir);
            if let (Dir::Write, Some(w)) = (dir, written.as_mut()) {
                w.landed(si.file, si.off, !failed);
            }
            match dn.res {
                Err(e) => {
                    if job.fill_device && matches!(dn.errno, libc::ENOSPC | libc::EDQUOT) {
                        // fio's io_u error path under fill_device: the
                        // full file system ends the job (terminated: no
                        // verify pass follows), the error cleared.
                        eprintln!(
                            "nvme-bench: io_u error in job '{}' (#{}): {} of {} bytes at offset {}: {e} (fill_device: the file system is full, the job ends)",
                            job.name,
                            res.clone,
                            dir_name(dir),
                            si.len,
                            si.off
                        );
                        stop = true;
                        terminated = true;
                    } else if note_io_error(job, res, &si, dn.errno, &e) {
                        stop = true;
                    }
                }
                Ok(()) => {
                    // A mixed job's own reads are not checked, only its
                    // read-back (fio: a read is verified when it comes from
                    // the verify list, or when the job does not write).
                    if dir == Dir::Read && verifying && (si.vlist || !mixed) {
                        let b = &eng.buf_mut(s)[..si.len];
                        let checked = verify::check(b, si.off, vseed, si.gen, &vspec);
                        for e in &checked.logged {
                            // fio logs these and lets the block through
                            // (verify.rs `check`).
                            eprintln!(
                                "nvme-bench: job '{}' (#{}): verify failed (not counted: fio decides a block by its last interval): block of {} bytes at offset {}: {e}",
                                job.name, res.clone, si.len, si.off
                            );
                        }
                        match checked.failed {
                            None => res.verified += 1,
                            Some(e) => {
                                let mut msg = format!(
                                    "verify failed: block of {} bytes at offset {} ({:#x}): {e}",
                                    si.len, si.off, si.off
                                );
                                if job.verify_dump {
                                    let path = match &multi {
                                        Some(m) => {
                                            m.plan.files.get(si.file).map(|f| f.path.as_str())
                                        }
                                        None => job.filename.as_deref(),
                                    };
                                    msg += &verify::dump(
                                        path.unwrap_or(&job.name),
                                        b,
                                        si.off,
                                        vseed,
                                        si.gen,
                                        &vspec,
                                    );
                                }
                                // verify_fatal: fio's fio_mark_td_terminate
                                // after the failure is noted (counted under
                                // continue_on_error=verify, not an error).
                                if note_error(job, res, cont::VERIFY, libc::EILSEQ, msg, true)
                                    || job.verify_fatal
                                {
                                    stop = true;
                                }
                            }
                        }
                    }
                }
            }
            if si.count {
                let st = &mut res.dirs[dir as usize];
                // A failed I/O counts in total_ios (fio's total_io_u, and
                // so in IOPS) but moves no bytes and has no latency sample.
                st.ios += 1;
                if !failed {
                    if dir == Dir::Trim {
                        if let Some(b) = &mut res.block_infos {
                            // fio's trim_block_info (io_u.c), from
                            // account_io_completion: out of ramp only.
                            crate::stats::trim_block(
                                b,
                                si.off.saturating_sub(base) / job.bs_trim.max(1),
                            );
                        }
                    }
                    deferred.done.push((dir, si.prep, si.issue, tc, si.prio));
                    if let (Some(l), false, Mode::Workload) = (&mut lt, job.disable_lat, mode) {
                        // fio's account_io_completion: total latency.
                        if let Err(e) = l.completed(tc.nanos_since(si.prep)) {
                            if res.error.is_none() {
                                res.error = Some(e);
                                res.errno = libc::ETIMEDOUT;
                            }
                            stop = true;
                        }
                    }
                    if let Some(l) = &mut logs {
                        l.io(
                            dir,
                            si.len as u64,
                            si.off,
                            si.prep.to_std(),
                            si.issue.to_std(),
                            tc.to_std(),
                            si.prio,
                        );
                    }
                    st.bytes += si.len as u64;
                }
            }
            if dn.held {
                held += 1;
            } else {
                free.push(s);
            }
            inflight -= 1;
            if mode == Mode::Workload && !job.thinktime_by_issue {
                think_count += 1;
            }
        }
        publish_progress(&ctx.progress, res, &mut published, &mut shown);
    }
    let end = Instant::now();
    if left_outstanding {
        // Name what the device still holds; the job ends on an error
        // (ETIMEDOUT) rather than waiting for ever.
        let mut busy = vec![true; depth];
        for &f in &free {
            busy[f] = false;
        }
        let names: Vec<String> = (0..depth)
            .filter(|&s| busy[s])
            .map(|s| {
                format!(
                    "{} at LBA {} ({} bytes at offset {})",
                    dir_name(sl[s].dir),
                    sl[s].off / lbs,
                    sl[s].len,
                    sl[s].off
                )
            })
            .collect();
        let msg = format!(
            "{} command{} still outstanding {} (waited {:?}): {}",
            names.len(),
            if names.len() == 1 { "" } else { "s" },
            if job.runtime.is_some_and(|rt| end - run_start >= rt) {
                "after runtime"
            } else {
                "at the end of the job"
            },
            stopped_at.map_or(Duration::ZERO, |a| end - a),
            names.join(", ")
        );
        res.error = Some(match res.error.take() {
            Some(e) => format!("{e}; {msg}"),
            None => msg,
        });
        if res.errno == 0 {
            res.errno = libc::ETIMEDOUT;
        }
    }
    deferred.flush(res, &mut ival_clat);
    if let Some(l) = logs.take() {
        l.finish(end.to_std())?;
    }
    res.runtime = end.saturating_duration_since(run_start);
    if let Some(l) = &lt {
        res.lat_depth = l.qd;
    }
    match mode {
        Mode::Workload => work_done += end.saturating_duration_since(phase_start.max(run_start)),
        Mode::Verify => verify_done += end.saturating_duration_since(phase_start),
    }
    let workload = work_done;
    if job.rw.has_read() && res.dirs[0].bytes > 0 {
        res.dir_runtime[0] += workload;
    }
    if job.rw.has_write() && res.dirs[1].bytes > 0 {
        res.dir_runtime[1] += workload;
    }
    if job.rw.has_trim() && res.dirs[2].bytes > 0 {
        res.dir_runtime[2] += workload;
    }
    if verify_ran {
        res.dir_runtime[0] += verify_done;
    }
    res.usage = sys::thread_usage() - usage0;
    // The bandwidth and IOPS samples are whole windows only, as fio's
    // (its helper thread samples every `bw_avg_time`): a job shorter than
    // one window has none, and its report has no bw/iops line, as fio's.
    ival_clat.iter_mut().for_each(LatStat::settle);
    if let Some(tx) = &itx {
        let _ = tx.send(interval_line(
            ctx,
            res,
            &ival_base,
            &ival_clat,
            end - run_start,
            end.saturating_duration_since(next_ival - ival),
        ));
    }
    res.extras = eng.extras();
    Ok(())
}

/// fio's `td_io_open_file` on a file: drop the cached pages of its range
/// (`invalidate`, default 1; a failure is only a warning, as fio), then
/// give the access-pattern hint (`fadvise_hint`, errors ignored as fio).
/// Where each of a job's several files sits in the engine (see
/// `run_inner`): `efile[f]`, or `NO_FILE` while closed.
const NO_FILE: usize = usize::MAX;

struct Places {
    efile: Vec<usize>,
    free: Vec<usize>,
    /// Places of files closed while I/Os queued but not yet submitted may
    /// still name their descriptors: free once the queue is submitted.
    later: Vec<usize>,
    count: usize,
}

impl Places {
    fn new(n: usize) -> Places {
        let mut efile = vec![NO_FILE; n.max(1)];
        efile[0] = 0;
        Places {
            efile,
            free: Vec::new(),
            later: Vec::new(),
            count: 1,
        }
    }
    /// File f closed: its place is given back (the engine's first, its own
    /// file, stays).
    fn close(&mut self, f: usize) {
        if let Some(k) = self.efile.get_mut(f) {
            if *k != NO_FILE && *k != 0 {
                self.later.push(*k);
                *k = NO_FILE;
            }
        }
    }
    fn closed(&mut self, list: &mut Vec<usize>) {
        for f in list.drain(..) {
            self.close(f);
        }
    }
    /// The queue was submitted: closed places can take other files.
    fn submitted(&mut self) {
        self.free.append(&mut self.later);
    }
}

/// Open file `f` of the job's list into a free place of the engine (or a
/// new one), unless it is open.
fn place_file(
    job: &Job,
    eng: &mut dyn Engine,
    places: &mut Places,
    paths: &[(String, u64)],
    f: usize,
) -> Result<()> {
    if places.efile.get(f).is_none_or(|&k| k != NO_FILE) {
        return Ok(());
    }
    let Some((path, want)) = paths.get(f) else {
        return Ok(());
    };
    let (file, _, _) = engine::open_file(path, job.open_flags(), job.rw.has_write(), Some(*want))?;
    let k = match places.free.pop() {
        Some(k) => {
            eng.replace_file(k, file)?;
            k
        }
        None => {
            eng.add_file(file)?;
            places.count += 1;
            places.count - 1
        }
    };
    places.efile[f] = k;
    Ok(())
}

/// fio's `small_content_scramble` (io_u.c), so a device that dedupes sees
/// each write's blocks differ: in every 512-byte block, the block's file
/// offset (8 bytes, native order) at one of its 8 cache lines picked from
/// the time and offset, and the I/O's start time (seconds, nanoseconds) in
/// bytes 48..64.
fn scramble_buffer(buf: &mut [u8], off: u64, t: Duration) {
    let (sec, nsec) = (t.as_secs(), u64::from(t.subsec_nanos()));
    let line = ((nsec ^ off) & 7) as usize * 64;
    let mut boff = off;
    for blk in buf.chunks_exact_mut(512) {
        blk[line..line + 8].copy_from_slice(&boff.to_ne_bytes());
        blk[48..56].copy_from_slice(&sec.to_ne_bytes());
        blk[56..64].copy_from_slice(&nsec.to_ne_bytes());
        boff = boff.wrapping_add(512);
    }
}

fn open_hints(job: &Job, f: &std::fs::File, off: u64, len: u64) {
    if job.invalidate {
        invalidate_warn(job, f, off, len);
    }
    let advice = match job.fadvise_hint {
        FadviseHint::None => None,
        FadviseHint::Workload if job.rw.random() => Some(libc::POSIX_FADV_RANDOM),
        FadviseHint::Workload | FadviseHint::Sequential => Some(libc::POSIX_FADV_SEQUENTIAL),
        FadviseHint::Random => Some(libc::POSIX_FADV_RANDOM),
        FadviseHint::Normal => Some(libc::POSIX_FADV_NORMAL),
    };
    if let Some(a) = advice {
        let _ = engine::fadvise(f, off, len, a);
    }
}

/// Invalidate the job's range; a failure is a warning on stderr (fio:
/// "cache invalidation of FILE failed").
fn invalidate_warn(job: &Job, f: &std::fs::File, off: u64, len: u64) {
    if let Err(e) = engine::invalidate_cache(f, off, len) {
        eprintln!(
            "nvme-bench: cache invalidation of {} failed: {e}",
            job.filename.as_deref().unwrap_or("?")
        );
    }
}

/// How long a job that stops waits for I/Os already past their deadline
/// (reported, counted) to hand their buffers back before naming them.
const HELD_GRACE: Duration = Duration::from_millis(250);

/// Errors printed on stderr per job, at most (fio prints every one).
const ERRORS_SHOWN: u64 = 20;

/// An I/O the engine reported failed: [`note_error`] with fio's error type
/// for its direction and a message naming the I/O. Returns true when the
/// job must stop.
#[cold]
fn note_io_error(job: &Job, res: &mut JobResult, si: &SlotIo, errno: i32, e: &str) -> bool {
    let kind = match si.dir {
        // fio's td_error_type: EILSEQ is a verify error whatever the
        // direction, anything else not a read a write error.
        _ if errno == libc::EILSEQ => cont::VERIFY,
        Dir::Read => cont::READ,
        Dir::Write | Dir::Trim => cont::WRITE,
    };
    let msg = format!(
        "{} of {} bytes at offset {}: {e}",
        dir_name(si.dir),
        si.len,
        si.off
    );
    note_error(job, res, kind, errno, msg, false)
}

/// fio's td_non_fatal_error: the error type is in `continue_on_error` and
/// the error in that type's `ignore_error` list (default EIO and EILSEQ;
/// ETIMEDOUT too, fio has no deadline of its own).
fn non_fatal(job: &Job, kind: u8, errno: i32) -> bool {
    if job.continue_on_error & kind == 0 {
        return false;
    }
    let t = kind.trailing_zeros() as usize;
    match job.ignore_error.get(t).and_then(Option::as_ref) {
        Some(list) => list.contains(&errno),
        None => matches!(errno, libc::EIO | libc::EILSEQ | libc::ETIMEDOUT),
    }
}

/// One failed I/O (or verify), fio's `io_completed` + `td_non_fatal_error`:
/// a non-fatal error ([`non_fatal`]) is counted (`total_err`,
/// `first_error`), printed only with `error_dump` unless it is a verify
/// failure (`verify_failure`, which fio always reports), and the job goes on;
/// otherwise it ends the job with its error number (and, as fio's
/// io_queue_event, is counted too when its type is in `continue_on_error`).
/// Returns true when the job must stop.
fn note_error(
    job: &Job,
    res: &mut JobResult,
    kind: u8,
    errno: i32,
    msg: String,
    verify_failure: bool,
) -> bool {
    let counted = job.continue_on_error & kind != 0;
    if counted {
        res.total_err += 1;
        if res.first_error == 0 {
            res.first_error = errno;
        }
    }
    if non_fatal(job, kind, errno) {
        // fio's verify.c reports a failed block whatever error_dump says;
        // __io_u_log_error prints a failed I/O only with error_dump.
        if (job.error_dump || verify_failure) && res.total_err <= ERRORS_SHOWN {
            eprintln!(
                "nvme-bench: io_u error in job '{}' (#{}): {msg}{}",
                job.name,
                res.clone,
                if res.total_err == ERRORS_SHOWN {
                    " (further errors are counted, not shown)"
                } else {
                    ""
                }
            );
        }
        false
    } else {
        if res.error.is_none() {
            res.error = Some(msg);
            res.errno = errno;
        }
        true
    }
}

/// fio's check_get_verify (io_u.c) for `verify_backlog`: once the log
/// holds a multiple of `verify_backlog` blocks and the last completed I/O
/// was not a read, a batch of `verify_backlog_batch` (default
/// `verify_backlog`) read-backs starts; each takes the first logged block,
/// unless its write is still in flight (then the workload goes on).
fn backlog_next(
    w: &mut verify::Written,
    batch: &mut u64,
    last_done: Option<Dir>,
    job: &Job,
) -> Option<(usize, u64, u32)> {
    let n = w.logged();
    if job.verify_backlog == 0 || n == 0 {
        return None;
    }
    if *batch == 0 {
        if n % job.verify_backlog != 0 || last_done == Some(Dir::Read) {
            return None;
        }
        *batch = match job.verify_backlog_batch {
            0 => job.verify_backlog,
            b => u64::from(b),
        };
    }
    let got = w.next()?;
    *batch -= 1;
    Some(got)
}

fn job_dir_used(job: &Job, d: usize) -> bool {
    match d {
        0 => job.rw.has_read() || job.verify != Verify::None,
        1 => job.rw.has_write(),
        _ => job.rw.has_trim(),
    }
}

fn dir_name(d: Dir) -> &'static str {
    match d {
        Dir::Read => "read",
        Dir::Write => "write",
        Dir::Trim => "trim",
    }
}

/// Latency samples taken on the I/O path and recorded into the histograms
/// later: when the engine has nothing to reap (the device is working on our
/// I/Os, so the recording costs the measured I/O nothing), when the buffer
/// fills up, and before any figure is read. On the path only the timestamps
/// are taken; the subtractions, the HdrHistogram records and the running
/// sums (about 400 instructions an I/O, three series) are not. On a slow CPU
/// (a TCG guest runs ~10x slower than the host) that work otherwise delays
/// every resubmission; see docs/performance.md, run 10. Every sample is
/// recorded exactly once, so the figures are the same.
struct Deferred {
    /// (direction, prepared, issued): slat.
    slat: Vec<(Dir, Instant, Instant)>,
    /// (direction, prepared, issued, completed): clat and lat.
    done: Vec<(Dir, Instant, Instant, Instant, u16)>,
    cap: usize,
    /// An interval log is written: clat also goes to its per-interval series.
    ival_on: bool,
    /// `disable_slat`, `disable_clat`, `disable_lat` (`gtod_reduce`): the
    /// series is not recorded (fio reports it empty).
    off: [bool; 3],
    /// cmdprio: per-priority statistics are kept (of total latency with
    /// `lat_percentiles`, fio's add_lat_sample, else of clat).
    prio_on: bool,
    prio_lat: bool,
}

impl Deferred {
    fn new(depth: usize, ival_on: bool) -> Self {
        let cap = (2 * depth).max(64);
        Deferred {
            slat: Vec::with_capacity(cap),
            done: Vec::with_capacity(cap),
            cap,
            ival_on,
            off: [false; 3],
            prio_on: false,
            prio_lat: false,
        }
    }

    fn is_empty(&self) -> bool {
        self.slat.is_empty() && self.done.is_empty()
    }

    /// Record everything held into the job's statistics (and the interval
    /// clat series when an interval log is being written).
    fn flush(&mut self, res: &mut JobResult, ival: &mut [LatStat; NDIR]) {
        let [no_slat, no_clat, no_lat] = self.off;
        for (d, p, i) in self.slat.drain(..) {
            if !no_slat {
                res.dirs[d as usize].slat.record_fast(i.nanos_since(p));
            }
        }
        for (d, p, i, t, prio) in self.done.drain(..) {
            let st = &mut res.dirs[d as usize];
            let clat = t.nanos_since(i);
            if !no_clat {
                st.clat.record_fast(clat);
                if self.prio_on && !self.prio_lat {
                    st.record_prio(prio, clat);
                }
            }
            if !no_lat {
                let lat = t.nanos_since(p);
                st.lat.record_fast(lat);
                if self.prio_on && self.prio_lat {
                    st.record_prio(prio, lat);
                }
            }
            if self.ival_on {
                ival[d as usize].record_fast(clat);
            }
        }
    }

    /// Flush unless the slat buffer has room for `n` more samples, so the
    /// buffers never grow (allocate) on the I/O path. Batches are at most
    /// the queue depth, which is at most half the capacity.
    #[inline]
    fn room_for_slat(&mut self, n: usize, res: &mut JobResult, ival: &mut [LatStat; NDIR]) {
        if self.slat.len() + n > self.cap {
            self.flush(res, ival);
        }
    }

    /// The same for the completion buffer.
    #[inline]
    fn room_for_done(&mut self, n: usize, res: &mut JobResult, ival: &mut [LatStat; NDIR]) {
        if self.done.len() + n > self.cap {
            self.flush(res, ival);
        }
    }
}

/// One NDJSON line: this interval's figures, not cumulative ones.
fn interval_line(
    ctx: &RunCtx,
    res: &JobResult,
    base: &[(u64, u64); NDIR],
    clat: &[LatStat; NDIR],
    at: Duration,
    span: Duration,
) -> String {
    let secs = span.as_secs_f64().max(1e-9);
    let dir = |d: usize| {
        let ios = res.dirs[d].ios - base[d].0;
        let bytes = res.dirs[d].bytes - base[d].1;
        let c = &clat[d];
        serde_json::json!({
            "ios": ios,
            "bytes": bytes,
            "iops": ios as f64 / secs,
            "bw_bytes": bytes as f64 / secs,
            "clat_ns": {
                "min": c.min(), "max": c.max, "mean": c.mean(),
                "p50": c.percentile(50.0), "p99": c.percentile(99.0), "p99.9": c.percentile(99.9),
            },
        })
    };
    serde_json::json!({
        "time_ms": at.as_millis() as u64,
        "interval_ms": span.as_millis() as u64,
        "jobname": ctx.job.name,
        "job": ctx.clone,
        "groupid": ctx.groupid,
        "ioengine": ctx.job.ioengine.name(),
        "read": dir(0),
        "write": dir(1),
        "trim": dir(2),
    })
    .to_string()
}

/// The job loop's steady state, run with the engine's calls inlined.
///
/// `run_inner` is one large function whose loop keeps a hundred values
/// live across calls through `dyn Engine`; most of its ~600 instructions a
/// turn are those values going to and from the stack, and the checks for
/// features the job does not use. For the common job (no rate, flow,
/// thinktime, verify, per-I/O logs, several files, `rate_min`, strided
/// zones, scrambled write buffers; an engine that is never busy) in its
/// measured phase,
/// the engine runs the same turns here instead ([`Engine::run_fast`] calls
/// [`fast_turns`] with its own type, so `queue`, `commit` and `reap` are
/// static calls): pick each I/O of a batch (`iodepth_batch_submit`), take
/// its `prep`, queue it; commit, take `issue`;
/// and when the queue is full reap and account the completions, exactly
/// as the general loop does for such a job (the same clock reads, the same
/// order, the same deferred latency samples, depth histograms and live
/// counters). It hands back to the general loop at the top of a turn (with
/// that turn's timestamp) whenever the general loop would do anything
/// else: a 500 ms window or an interval-log line is due, the runtime is
/// up, the size or `number_ios` is near, a status snapshot is asked
/// for, `exitall` is set, an I/O failed or passed its deadline.
/// `NVME_BENCH_NO_FAST=1` turns it off (tests compare both).
pub struct Fast<'a> {
    gen: &'a mut Gen,
    sl: &'a mut [SlotIo],
    free: &'a mut Vec<usize>,
    queued: &'a mut Vec<usize>,
    deferred: &'a mut Deferred,
    res: &'a mut JobResult,
    ival_clat: &'a mut [LatStat; NDIR],
    job: &'a Job,
    progress: &'a Progress,
    exitall: &'a std::sync::atomic::AtomicBool,
    published: &'a mut [(u64, u64); NDIR],
    shown: &'a mut [(u64, u64); NDIR],
    inflight: usize,
    held: usize,
    issued_bytes: u64,
    issued_dir_bytes: [u64; NDIR],
    issued_ios: [u64; NDIR],
    issued_total: u64,
    depth: usize,
    /// iodepth_batch_submit (I/Os per commit).
    bsub: usize,
    max_bs: u64,
    cmin: usize,
    cmax: usize,
    /// The general loop's next timed duty (window, interval line, runtime end).
    next_event: Instant,
    /// `issued_bytes` at which the workload stops (`u64::MAX`: time-based).
    bytes_limit: u64,
    /// `number_ios` (`u64::MAX`: none).
    ios_limit: u64,
    /// A trim uses up `size` (the job does not write; fio's io_bytes_exceeded).
    trim_counts: bool,
    stop: bool,
    fresh: Option<Instant>,
    /// When the live counters are next published.
    next_publish: Instant,
}

/// How often the fast path publishes the live counters.
const PUBLISH_NS: u64 = 1_000_000;

/// Publish the job's counts to its live counters (read by the ETA line and
/// status output) where they moved since `published`.
#[inline(always)]
fn publish_progress(
    progress: &Progress,
    res: &JobResult,
    published: &mut [(u64, u64); NDIR],
    shown: &mut [(u64, u64); NDIR],
) {
    for d in 0..NDIR {
        let st = &res.dirs[d];
        let (i0, b0) = published[d];
        if st.ios != i0 {
            // Only this thread writes its job's counters: a plain store
            // of the running total (no locked read-modify-write, ~20
            // cycles each).
            shown[d].0 += st.ios - i0;
            shown[d].1 += st.bytes - b0;
            progress.ios[d].store(shown[d].0, Ordering::Relaxed);
            progress.bytes[d].store(shown[d].1, Ordering::Relaxed);
            published[d] = (st.ios, st.bytes);
        }
    }
}

/// Whether the job's configuration lets its measured phase use [`Fast`].
fn fast_allowed(job: &Job, sync: bool, may_busy: bool) -> bool {
    !sync
        && !may_busy
        && job.thinktime.is_zero()
        && job.verify == Verify::None
        && std::env::var_os("NVME_BENCH_NO_FAST").is_none_or(|v| v.is_empty() || v == "0")
}

/// An engine whose completions the fast path takes one at a time, as the
/// engine consumes them (see `NvmeEngine::reap_each`).
pub trait FastEngine: Engine {
    /// [`Engine::reap`], handing each completion to `emit`; returns how
    /// many.
    fn reap_each(&mut self, min: usize, max: usize, emit: impl FnMut(Done)) -> Result<usize>;
}

/// One completion in the fast path: the general loop's handling of a
/// `Done`. Its entry in `deferred.done` gets the batch's completion time
/// after the reap (`fast_turns`). An unknown slot is noted in `bad`.
#[inline(always)]
fn on_done(f: &mut Fast<'_>, dn: Done, bad: &mut Option<usize>) {
    let s = dn.slot;
    let Some(&si) = f.sl.get(s) else {
        *bad = Some(s);
        return;
    };
    if dn.late {
        f.held -= 1;
        f.free.push(s);
        return;
    }
    let dir = si.dir;
    let mut failed = false;
    if let Err(e) = dn.res {
        failed = true;
        if note_io_error(f.job, f.res, &si, dn.errno, &e) {
            f.stop = true;
        }
    }
    if si.count {
        let st = &mut f.res.dirs[dir as usize];
        st.ios += 1;
        if !failed {
            // (The completion time is filled in after the reap.)
            f.deferred.done.push((dir, si.prep, si.issue, si.issue, 0));
            st.bytes += si.len as u64;
        }
    }
    if dn.held {
        f.held += 1;
    } else {
        f.free.push(s);
    }
    f.inflight -= 1;
}

/// The turns of the general loop for a [`Fast`] job; see there. Returns at
/// the top of a turn (its timestamp in `f.fresh`) or after a reaped batch.
#[inline(always)]
pub fn fast_turns<E: FastEngine>(eng: &mut E, f: &mut Fast<'_>) -> Result<()> {
    loop {
        let now = match f.fresh.take() {
            Some(t) => t,
            None => Instant::now(),
        };
        if now >= f.next_event
            || f.issued_bytes >= f.bytes_limit
            || f.issued_total >= f.ios_limit
            || f.progress.snap_req.load(Ordering::Relaxed)
            || f.exitall.load(Ordering::Relaxed)
        {
            f.fresh = Some(now);
            return Ok(());
        }
        if f.inflight < f.depth {
            // One batch of up to iodepth_batch_submit I/Os, one commit, as
            // the general loop's issue loop.
            let room = (f.depth - f.inflight).min(f.bsub);
            // The general loop may stop inside a batch (size or number_ios
            // reached before one of its I/Os): near that point it takes the
            // turn. (With one I/O per batch this is the check above.)
            if room > 1 {
                let more = room as u64 - 1;
                if f.issued_total.saturating_add(more) >= f.ios_limit
                    || f.issued_bytes.saturating_add(more.saturating_mul(f.max_bs)) >= f.bytes_limit
                {
                    f.fresh = Some(now);
                    return Ok(());
                }
            }
            while f.queued.len() < room {
                let d = f.gen.pick_dir();
                let bs = f.gen.pick_bs(d);
                let (off, bs) = f.gen.pick_io(bs);
                let Some(slot) = f.free.pop() else {
                    return Err(Error::msg("internal: no free slot below the queue depth"));
                };
                let len_io = bs as usize;
                let Some(si) = f.sl.get_mut(slot) else {
                    return Err(Error::msg(format!("internal: slot {slot} out of range")));
                };
                si.dir = d;
                si.off = off;
                si.len = len_io;
                si.gen = verify::ANY_GEN;
                si.count = true;
                si.prep = Instant::now();
                if let Err(e) = eng.queue(slot, d, off, len_io) {
                    f.free.push(slot);
                    f.res.error = Some(format!(
                        "{} of {len_io} bytes at offset {off}: {e}",
                        dir_name(d)
                    ));
                    f.res.errno = libc::EIO;
                    f.stop = true;
                    break;
                }
                if d != Dir::Trim || f.trim_counts {
                    f.issued_bytes += bs;
                }
                f.issued_dir_bytes[d as usize] += bs;
                f.issued_ios[d as usize] += 1;
                f.issued_total += 1;
                f.queued.push(slot);
            }
            let n = f.queued.len();
            if n > 0 {
                eng.commit()?;
                let t = Instant::now();
                f.fresh = Some(t);
                f.deferred.room_for_slat(n, f.res, f.ival_clat);
                for &s in f.queued.iter() {
                    let si = &mut f.sl[s];
                    si.issue = t;
                    f.deferred.slat.push((si.dir, si.prep, t));
                }
                f.inflight += n;
                f.res.depth.submit[DepthHist::batch_idx(n)] += 1;
                f.res.depth.level[DepthHist::level_idx(f.inflight)] += n as u64;
                f.queued.clear();
            }
            if f.stop {
                return Ok(());
            }
        }
        if f.inflight < f.depth && !f.free.is_empty() {
            continue;
        }
        let min = f.cmin.min(f.inflight);
        let max = f.cmax.min(f.inflight + f.held).max(1);
        // Each completion is handled as the driver consumes it (no `Done`
        // vector); its completion time, read once for the batch after the
        // reap as in the general loop (and fio), is filled in after.
        f.deferred.room_for_done(max, f.res, f.ival_clat);
        let mut mark = f.deferred.done.len();
        let mut bad = None;
        let mut n = eng.reap_each(
            if f.deferred.is_empty() { min } else { 0 },
            max,
            #[inline(always)]
            |dn| on_done(f, dn, &mut bad),
        )?;
        if n == 0 && min > 0 && !f.deferred.is_empty() {
            // Idle: record the deferred latencies while the device works.
            f.deferred.flush(f.res, f.ival_clat);
            mark = 0;
            n = eng.reap_each(
                min,
                max,
                #[inline(always)]
                |dn| on_done(f, dn, &mut bad),
            )?;
        }
        if let Some(s) = bad {
            return Err(Error::msg(format!("engine returned unknown slot {s}")));
        }
        if n == 0 {
            continue;
        }
        let t = Instant::now();
        f.fresh = Some(t);
        f.res.depth.complete[DepthHist::batch_idx(n)] += 1;
        for e in &mut f.deferred.done[mark..] {
            e.3 = t;
        }
        // The live counters (ETA line, status) at most once a millisecond
        // here, not per reaped batch; and when the fast path hands back.
        if t >= f.next_publish {
            f.next_publish = t.add_nanos(PUBLISH_NS);
            publish_progress(f.progress, f.res, f.published, f.shown);
        }
        if f.stop || f.held > 0 {
            return Ok(());
        }
    }
}
