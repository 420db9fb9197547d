//! The run: expand numjobs, split into stonewall groups, open controllers,
//! start a thread per job, show the status line, collect results, report.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nvme_core::ControllerOptions;

use crate::error::{Error, Result};
use crate::options::{Amount, EngineKind, Eta, Globals, JobSet, NDIR};
use crate::report;
use crate::runner::{self, JobResult, Progress, RunCtx, Target};
use crate::sys;

/// fio's genesis: when the first job threads start (after the jobs' serial
/// file set-up). JSON's `elapsed` counts from it.
static GENESIS: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

/// fio's `elapsed` (eta.c): whole seconds since genesis, rounded up, as
/// of now; `None` before any job started.
pub fn elapsed_since_genesis() -> Option<u64> {
    GENESIS
        .get()
        .map(|g| (g.elapsed().as_millis() as u64).div_ceil(1000))
}

/// Run everything; returns the results and whether every job succeeded.
pub fn run(g: &Globals, set: &JobSet) -> Result<bool> {
    let started = SystemTime::now();
    // The job loop's clock (fio's `clocksource`, process-wide: the last job
    // that sets it decides), chosen and calibrated before any job starts.
    crate::clock::init(
        set.jobs
            .iter()
            .rev()
            .find_map(|j| j.clocksource)
            .map(|c| match c {
                crate::options::ClockSource::Cpu => crate::clock::Source::Cpu,
                crate::options::ClockSource::ClockGettime => crate::clock::Source::ClockGettime,
                crate::options::ClockSource::Gettimeofday => crate::clock::Source::Gettimeofday,
            }),
    );
    // Every file the run writes is opened before the first I/O (fio opens
    // --output at startup): an unwritable path fails here, before any file
    // is laid out or any device written, not after the run.
    let out_file = match &g.output {
        Some(p) => {
            Some(std::fs::File::create(p).map_err(|e| Error::msg(format!("--output {p}: {e}")))?)
        }
        None => None,
    };
    if let Some(p) = &g.plot {
        std::fs::File::create(p).map_err(|e| Error::msg(format!("--plot {p}: {e}")))?;
    }
    // Groups: a stonewall job starts a new group.
    let mut groups: Vec<Vec<(crate::options::Job, u32)>> = Vec::new();
    for job in &set.jobs {
        if groups.is_empty() || job.stonewall {
            groups.push(Vec::new());
        }
        let grp = groups.last_mut().expect("pushed above");
        for c in 0..job.numjobs {
            let mut j = job.clone();
            // fio's get_start_offset: clone N starts N x offset_increment
            // further (validate refuses it with an offset in percent).
            if let (Amount::Bytes(b), inc @ 1..) = (j.offset, j.offset_increment) {
                let o = u64::from(c)
                    .checked_mul(inc)
                    .and_then(|x| x.checked_add(b))
                    .ok_or_else(|| {
                        Error::msg(format!("job '{}': offset_increment overflows", j.name))
                    })?;
                j.offset = Amount::Bytes(o);
            }
            // The file this clone uses, as fio names it (default
            // `jobname.N.0`, `directory`, `\:` unescaped).
            if j.ioengine.on_files() && c == 0 {
                // fio's `str_directory_cb`: every `directory` entry exists.
                if let Some(d) = &j.directory {
                    for d in crate::options::split_files(d)? {
                        if !std::path::Path::new(&d).is_dir() {
                            return Err(Error::msg(format!(
                                "job '{}': directory={d}: not a directory",
                                j.name
                            )));
                        }
                    }
                }
            }
            if j.ioengine.on_files() || j.ioengine == EngineKind::Null {
                // Every file of the clone (a `filename` list, or `nrfiles`
                // names from `filename_format`); `filename` is the first.
                j.files = crate::options::files_for(job, c)?;
                if j.ioengine.on_files() {
                    j.filename = j.files.first().cloned();
                }
            }
            grp.push((j, c));
        }
    }
    // fio registers flow weights when it reads the job file.
    let _flows =
        crate::flow::register(&groups.iter().flatten().map(|(j, _)| j).collect::<Vec<_>>());
    let mut ilog = match &g.interval_log {
        Some(p) => Some(std::io::BufWriter::new(
            std::fs::File::create(p).map_err(|e| Error::msg(format!("--interval-log {p}: {e}")))?,
        )),
        None => None,
    };
    // fio's --bandwidth-log: created at the start (all three, as fio).
    let mut agg = match g.bandwidth_log {
        true => Some(AggBwLog::create()?),
        false => None,
    };
    // --status-interval reports: a run-wide timer, as fio's.
    let run_t0 = Instant::now();
    // --eta-newline: when the last newline was kept, and whether the next
    // status line starts on a new line.
    let mut eta_nl: (Option<Instant>, bool) = (None, false);
    let mut next_report = g.status_interval.map(|d| run_t0 + d);
    // Queue pairs: without exec_prerun (which may hand devices around
    // between groups), every controller the set uses is opened once up
    // front and its granted I/O queue pairs compared with what each group
    // needs, so a set that cannot run is refused before any I/O (file
    // layout included). Each group checks again when it opens them.
    if !groups
        .iter()
        .flatten()
        .any(|(j, _)| j.exec_prerun.is_some() || j.exec_postrun.is_some())
    {
        let mut need: BTreeMap<String, (ControllerOptions, u16)> = BTreeMap::new();
        for grp in &groups {
            for (addr, (o, n)) in nvme_wants(grp)? {
                let e = need.entry(addr).or_insert((o, 0));
                e.1 = e.1.max(n);
            }
        }
        for (addr, (o, n)) in need {
            drop(open_checked(&addr, o, n)?);
        }
    }
    let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let show_eta = match g.eta {
        Eta::Always => true,
        Eta::Never => false,
        Eta::Auto => tty,
    };
    let status_every = g.status_interval.unwrap_or(Duration::from_secs(1));
    if g.formats.normal && g.output.is_none() {
        let mut lines = report::normal::start_lines(set);
        let starting = lines.pop().unwrap_or_default();
        for l in lines {
            println!("{l}");
        }
        println!("nvme-bench-{}", env!("CARGO_PKG_VERSION"));
        println!("{starting}");
    }
    // fio's file layout, before any job runs, one job after the other
    // (create_serialize=1, the default): a file a job needs is sized and
    // written out or created. A job with create_serialize=0 does it in its
    // own thread when it starts (fio's thread_main), after the groups
    // before it ran, alongside the other jobs of its group.
    // Per job: why its setup failed, and fio's error number for it (0: EIO).
    let mut setup_errors: Vec<Vec<Option<(String, i32)>>> = Vec::new();
    let say_layout = g.formats.normal && g.output.is_none();
    for grp in &mut groups {
        let mut errs = Vec::new();
        for (job, clone) in grp.iter_mut() {
            errs.push(if job.create_serialize {
                setup_job(job, *clone, g.readonly, say_layout)
            } else {
                None
            });
        }
        setup_errors.push(errs);
    }
    let cpus = sys::allowed_cpus();
    let mut results: Vec<JobResult> = Vec::new();
    let mut disks = Vec::new();
    // wait_for: per job name, how many of its clones are still running
    // (fio: a job with wait_for starts when the named job has finished).
    let finished: Arc<(std::sync::Mutex<BTreeMap<String, u32>>, std::sync::Condvar)> =
        Arc::new(Default::default());
    {
        let mut left = finished.0.lock().unwrap_or_else(|p| p.into_inner());
        for j in &set.jobs {
            *left.entry(j.name.clone()).or_insert(0) += j.numjobs;
        }
    }
    // fio's exitall / exit_what (terminate.rs): one stop flag per job
    // instance of the run.
    let exit_on_end = set.jobs.iter().any(|j| j.exitall);
    let exits = Arc::new(crate::terminate::Slots::new(
        groups.iter().flatten().map(|(j, _)| j.groupid),
    ));
    let mut slot_idx = 0usize;
    let threads = groups.iter().map(|g| g.len() as u32).sum::<u32>();
    let mut number = 0u32;
    for (grp, setup_errs) in groups.into_iter().zip(setup_errors) {
        // exec_prerun: before the group's jobs start (and after the
        // previous group's controllers are released).
        let mut seen = Vec::new();
        for (job, _) in &grp {
            if let Some(cmd) = &job.exec_prerun {
                if !seen.contains(&job.name) {
                    exec(cmd, &job.name, "exec_prerun")?;
                    seen.push(job.name.clone());
                }
            }
        }
        // The kernel disks this group uses, after exec_prerun (which may
        // have just given a device to the kernel).
        let disk_window = crate::diskstats::DiskSnapshot::take(grp.iter().map(|(j, _)| j));
        // Controllers: one per PCI address, asked for as many I/O queue
        // pairs as jobs use it.
        let mut ctrls: BTreeMap<String, nvme_core::Controller<nvme_vfio::VfioDevice>> =
            BTreeMap::new();
        let mut targets = Vec::new();
        for (addr, (o, n)) in nvme_wants(&grp)? {
            let c = open_checked(&addr, o, n)?;
            ctrls.insert(addr, c);
        }
        let mut nvme_idx = 0usize;
        for (job, clone) in &grp {
            let target = match job.ioengine {
                EngineKind::NvmeVfio => {
                    let (addr, nsid) =
                        crate::options::parse_nvme_target(job.filename.as_deref().unwrap_or(""))?;
                    Target::Nvme {
                        ctrl: ctrls[&addr].clone(),
                        nsid,
                    }
                }
                _ => Target::Path(job.filename.clone().unwrap_or_default()),
            };
            let pin = match &job.cpus_allowed {
                Some(list) if job.cpus_allowed_split => {
                    Some(vec![list[*clone as usize % list.len()]])
                }
                Some(list) => Some(list.clone()),
                None if job.ioengine == EngineKind::NvmeVfio && job.nvme_pin => {
                    let c = cpus[nvme_idx % cpus.len()];
                    nvme_idx += 1;
                    Some(vec![c])
                }
                None => None,
            };
            let seed = if job.randrepeat || job.randseed_set {
                job.randseed
                    .wrapping_add(u64::from(*clone).wrapping_mul(0x9e37_79b9))
            } else {
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64)
                    ^ (u64::from(*clone) << 32)
            };
            targets.push((job.clone(), *clone, target, pin, seed));
        }
        drop(ctrls);
        let (tx, rx) = mpsc::channel::<String>();
        let mut handles = Vec::new();
        let mut progs = Vec::new();
        // fio's steady-state check (steadystate.rs), its ticks from the
        // group's start; each job's stop flag, to end it when attained.
        GENESIS.get_or_init(Instant::now);
        let mut ss = crate::steadystate::Checker::new(
            &targets.iter().map(|t| &t.0).collect::<Vec<_>>(),
            Instant::now(),
        );
        let mut stops = Vec::new();
        for ((job, clone, target, pin, seed), setup_error) in targets.into_iter().zip(setup_errs) {
            let progress = Arc::new(Progress::default());
            let job_groupid = job.groupid;
            progs.push((job.clone(), progress.clone()));
            let exitall = exits.start(slot_idx, &progress);
            stops.push(exitall.clone());
            slot_idx += 1;
            let ctx = RunCtx {
                job,
                clone,
                groupid: job_groupid,
                progress,
                exitall,
                threads,
                number: {
                    number += 1;
                    number
                },
                target,
                cpus: pin,
                interval: g.interval_log.as_ref().map(|_| (status_every, tx.clone())),
                seed,
                setup_error,
            };
            let h = std::thread::Builder::new()
                .name(format!("job-{}", ctx.job.name))
                .spawn({
                    let finished = finished.clone();
                    let readonly = g.readonly;
                    let exits = exits.clone();
                    move || {
                        let name = ctx.job.name.clone();
                        let (exit_what, groupid) = (ctx.job.exit_what, ctx.groupid);
                        wait_to_start(&ctx.job, ctx.seed, &finished);
                        let mut ctx = ctx;
                        if !ctx.job.create_serialize && ctx.setup_error.is_none() {
                            ctx.setup_error =
                                setup_job(&mut ctx.job, ctx.clone, readonly, say_layout);
                        }
                        let unlink: Vec<String> = match &ctx.target {
                            Target::Path(_) if ctx.job.unlink && crate::files::multi(&ctx.job) => {
                                ctx.job.files.clone()
                            }
                            Target::Path(p) if ctx.job.unlink => vec![p.clone()],
                            _ => Vec::new(),
                        };
                        let r = runner::run_job(ctx);
                        // fio's `unlink` (close_and_free_files): a regular
                        // file goes when the job ends; a device stays.
                        for p in unlink {
                            if std::fs::symlink_metadata(&p).is_ok_and(|m| m.is_file()) {
                                let _ = std::fs::remove_file(&p);
                            }
                        }
                        // fio's exitall: this job's end terminates the jobs
                        // its exit_what names.
                        if exit_on_end {
                            exits.terminate(groupid, exit_what);
                        }
                        let (m, cv) = &*finished;
                        let mut left = m.lock().unwrap_or_else(|p| p.into_inner());
                        if let Some(n) = left.get_mut(&name) {
                            *n = n.saturating_sub(1);
                        }
                        cv.notify_all();
                        r
                    }
                })
                .map_err(|e| Error::msg(format!("spawn job thread: {e}")))?;
            handles.push(h);
        }
        drop(tx);
        // Status line and interval log while the group runs.
        let t0 = Instant::now();
        let mut last = (Instant::now(), snapshot(&progs));
        let mut next_status = Instant::now() + status_every;
        loop {
            while let Ok(line) = rx.try_recv() {
                if let Some(w) = &mut ilog {
                    let _ = writeln!(w, "{line}");
                }
            }
            if handles.iter().all(|h| h.is_finished()) {
                break;
            }
            let nap = ss.as_ref().map_or(Duration::from_millis(50), |c| {
                c.due()
                    .saturating_duration_since(Instant::now())
                    .min(Duration::from_millis(50))
            });
            std::thread::sleep(nap);
            if let Some(c) = &mut ss {
                let seen = ss_seen(&progs);
                for i in c.poll(Instant::now(), &seen) {
                    if let Some(f) = stops.get(i) {
                        f.store(true, Ordering::Relaxed);
                    }
                }
            }
            if let Some(a) = &mut agg {
                a.sample(run_t0, &progs)?;
            }
            if next_report.is_some_and(|t| Instant::now() >= t) {
                let text = interval_report(g, set, &results, &progs, ss.as_ref(), started)?;
                match out_file.as_ref() {
                    Some(f) => {
                        let mut w: &std::fs::File = f;
                        w.write_all(text.as_bytes())?
                    }
                    None => {
                        let mut o = std::io::stdout().lock();
                        o.write_all(text.as_bytes())?;
                        o.flush()?;
                    }
                }
                let every = g.status_interval.unwrap_or(status_every);
                next_report = next_report.map(|t| (t + every).max(Instant::now()));
            }
            if show_eta && Instant::now() >= next_status {
                let now = Instant::now();
                let snap = snapshot(&progs);
                let line = status_line(&progs, &last.1, &snap, now - last.0, t0.elapsed());
                // fio's --eta-newline=T (eta.c display_thread_status): a
                // display that finds more than T passed since the last
                // newline (or the first display) has the next one start on
                // a new line, keeping the current one.
                if eta_nl.1 {
                    eprintln!();
                    eta_nl.1 = false;
                }
                eprint!("\r{line}\x1b[K");
                match (eta_nl.0, g.eta_newline) {
                    (None, _) => eta_nl.0 = Some(now),
                    (Some(at), Some(t)) if now.duration_since(at) > t => {
                        eta_nl = (Some(now), true);
                    }
                    _ => {}
                }
                let _ = std::io::stderr().flush();
                last = (now, snap);
                next_status = now + status_every;
            }
        }
        if let Some(a) = &mut agg {
            a.group_done(&progs);
        }
        if show_eta {
            eprintln!();
        }
        for (i, h) in handles.into_iter().enumerate() {
            match h.join() {
                Ok(mut r) => {
                    r.steadystate = ss.as_ref().and_then(|c| c.report(i));
                    results.push(r)
                }
                Err(_) => return Err(Error::msg("a job thread panicked")),
            }
        }
        crate::diskstats::accumulate(&mut disks, disk_window.finish());
        while let Ok(line) = rx.try_recv() {
            if let Some(w) = &mut ilog {
                let _ = writeln!(w, "{line}");
            }
        }
        let mut seen = Vec::new();
        for (job, _) in &grp {
            if let Some(cmd) = &job.exec_postrun {
                if !seen.contains(&job.name) {
                    exec(cmd, &job.name, "exec_postrun")?;
                    seen.push(job.name.clone());
                }
            }
        }
    }
    if let Some(w) = &mut ilog {
        w.flush()?;
    }
    if let Some(a) = agg {
        a.finish()?;
    }
    for r in &results {
        if let Some(e) = &r.error {
            eprintln!("nvme-bench: job '{}' (#{}): {e}", r.job.name, r.clone);
        }
    }
    report::emit(g, set, &results, &disks, started, out_file)?;
    Ok(results.iter().all(|r| r.error.is_none()))
}

/// Before a job starts: `wait_for` (until every clone of the named job
/// has finished), then `startdelay` (a range draws from the job's seed).
fn wait_to_start(
    job: &crate::options::Job,
    seed: u64,
    finished: &(std::sync::Mutex<BTreeMap<String, u32>>, std::sync::Condvar),
) {
    if let Some(w) = &job.wait_for {
        let (m, cv) = finished;
        let mut left = m.lock().unwrap_or_else(|p| p.into_inner());
        while left.get(w).is_some_and(|n| *n > 0) {
            left = cv.wait(left).unwrap_or_else(|p| p.into_inner());
        }
    }
    let (lo, hi) = job.startdelay;
    let d = if hi > lo {
        let span = (hi - lo).as_nanos() as u64;
        lo + Duration::from_nanos(crate::gen::Rng::new(seed).below(span + 1))
    } else {
        lo
    };
    if !d.is_zero() {
        std::thread::sleep(d);
    }
}

/// The controllers a group's nvme-vfio jobs use: per PCI address, the
/// options they ask for and how many queue pairs (one per job).
fn nvme_wants(
    grp: &[(crate::options::Job, u32)],
) -> Result<BTreeMap<String, (ControllerOptions, u16)>> {
    let mut want: BTreeMap<String, (ControllerOptions, u16)> = BTreeMap::new();
    let mut policies: BTreeMap<String, nvme_core::TimeoutPolicy> = BTreeMap::new();
    for (job, _) in grp {
        if job.ioengine != EngineKind::NvmeVfio {
            continue;
        }
        let (addr, _) = crate::options::parse_nvme_target(job.filename.as_deref().unwrap_or(""))?;
        let e = want
            .entry(addr.clone())
            .or_insert_with(|| (ControllerOptions::default(), 0));
        e.1 += 1;
        if let Some(c) = job.nvme_cmb_queues {
            e.0.cmb_queues = c;
        }
        if let Some(s) = job.nvme_shadow_doorbells {
            e.0.shadow_doorbells = s;
        }
        // The policy is the controller's: jobs sharing one must agree.
        if let Some(p) = job.nvme_timeout_policy {
            if policies.insert(addr.clone(), p).is_some_and(|q| q != p) {
                return Err(Error::msg(format!(
                    "job '{}': nvme_timeout_policy differs between jobs on {addr} \
                     in one group (it is the controller's)",
                    job.name
                )));
            }
            e.0.timeout_policy = p;
        }
    }
    Ok(want)
}

/// Open a controller asking for `n` I/O queue pairs and refuse it, before
/// any job starts, if it grants fewer.
fn open_checked(
    addr: &str,
    mut o: ControllerOptions,
    n: u16,
) -> Result<nvme_core::Controller<nvme_vfio::VfioDevice>> {
    o.io_queue_pairs = n.max(1);
    let c = nvme_vfio::open_controller(addr, o)
        .map_err(|e| Error::msg(format!("nvme-vfio {addr}: {e}")))?;
    let granted = c.io_queue_pairs_granted();
    if granted < n {
        return Err(Error::msg(format!(
            "nvme-vfio {addr}: {n} jobs need {n} I/O queue pairs (one each), but the \
             controller grants {granted}; nothing was run (lower numjobs, or split the \
             jobs with stonewall)"
        )));
    }
    Ok(c)
}

fn exec(cmd: &str, job: &str, what: &str) -> Result<()> {
    let st = std::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(cmd)
        .stdout(std::process::Stdio::null())
        .status()
        .map_err(|e| Error::msg(format!("job '{job}': {what} '{cmd}': {e}")))?;
    if !st.success() {
        return Err(Error::msg(format!(
            "job '{job}': {what} '{cmd}' failed ({st})"
        )));
    }
    Ok(())
}

/// What the steady-state check reads of each job of the group.
fn ss_seen(progs: &[(crate::options::Job, Arc<Progress>)]) -> Vec<crate::steadystate::Seen> {
    progs
        .iter()
        .map(|(_, p)| {
            let st = p.state.load(Ordering::Relaxed);
            crate::steadystate::Seen {
                running: st == runner::ST_RUN || st == runner::ST_VERIFY,
                epoch: *p.epoch.lock().unwrap_or_else(|e| e.into_inner()),
                ios: p.ios.iter().map(|x| x.load(Ordering::Relaxed)).sum(),
                bytes: p.bytes.iter().map(|x| x.load(Ordering::Relaxed)).sum(),
            }
        })
        .collect()
}

type Snap = Vec<(u8, [u64; NDIR], [u64; NDIR])>;

fn snapshot(progs: &[(crate::options::Job, Arc<Progress>)]) -> Snap {
    progs
        .iter()
        .map(|(_, p)| {
            (
                p.state.load(Ordering::Relaxed),
                std::array::from_fn(|d| p.ios[d].load(Ordering::Relaxed)),
                std::array::from_fn(|d| p.bytes[d].load(Ordering::Relaxed)),
            )
        })
        .collect()
}

/// fio's `Jobs: 1 (f=1): [r(1)][24.8%][r=20.5MiB/s][r=5247 IOPS][eta 01m:31s]`.
fn status_line(
    progs: &[(crate::options::Job, Arc<Progress>)],
    prev: &Snap,
    cur: &Snap,
    dt: Duration,
    elapsed: Duration,
) -> String {
    let running = cur.iter().filter(|s| s.0 != runner::ST_DONE).count();
    // Run-length encoded job states.
    let mut states: Vec<(char, usize)> = Vec::new();
    for ((job, _), s) in progs.iter().zip(cur) {
        let c = match s.0 {
            runner::ST_SETUP => 'P',
            runner::ST_RAMP => '/',
            runner::ST_VERIFY => 'V',
            runner::ST_DONE => '_',
            _ => job.rw.letter(),
        };
        match states.last_mut() {
            Some((l, n)) if *l == c => *n += 1,
            _ => states.push((c, 1)),
        }
    }
    let st: Vec<String> = states.iter().map(|(c, n)| format!("{c}({n})")).collect();
    let secs = dt.as_secs_f64().max(1e-6);
    let mut bw = [0f64; NDIR];
    let mut iops = [0f64; NDIR];
    for (p, c) in prev.iter().zip(cur) {
        for d in 0..NDIR {
            bw[d] += (c.2[d].saturating_sub(p.2[d])) as f64 / secs;
            iops[d] += (c.1[d].saturating_sub(p.1[d])) as f64 / secs;
        }
    }
    // Progress and ETA from the longest job.
    let mut frac: f64 = 0.0;
    let mut eta = Duration::ZERO;
    let mut ramping = false;
    for ((job, p), s) in progs.iter().zip(cur) {
        if s.0 == runner::ST_RAMP {
            ramping = true;
        }
        let total = job.ramp_time + job.runtime.unwrap_or(Duration::ZERO);
        let (f, left) = if job.time_based {
            let f = (elapsed.as_secs_f64() / total.as_secs_f64().max(1e-6)).min(1.0);
            (f, total.saturating_sub(elapsed))
        } else {
            let planned = p.planned_bytes.load(Ordering::Relaxed).max(1) as f64;
            // Trims count toward `size` unless the job writes (trimwrite).
            let trims = if job.rw.has_write() { 0 } else { s.2[2] };
            let done = (s.2[0] + s.2[1] + trims) as f64;
            let f = (done / planned).min(1.0);
            let rate = (bw[0] + bw[1] + if job.rw.has_write() { 0.0 } else { bw[2] }).max(1.0);
            let mut left = Duration::from_secs_f64(((planned - done).max(0.0) / rate).min(1e7));
            if job.runtime.is_some() {
                left = left.min(total.saturating_sub(elapsed));
            }
            (f, left)
        };
        if s.0 != runner::ST_DONE {
            frac = frac.max(f);
            eta = eta.max(left);
        } else {
            frac = frac.max(1.0_f64.min(f.max(0.0)));
        }
    }
    let pct = if ramping {
        "-.-%".to_string()
    } else {
        format!("{:.1}%", frac * 100.0)
    };
    let mut rates = Vec::new();
    let mut iopss = Vec::new();
    let any_w = progs.iter().any(|(j, _)| j.rw.has_write());
    let any_r = progs.iter().any(|(j, _)| j.rw.has_read());
    let any_t = progs.iter().any(|(j, _)| j.rw.has_trim());
    if any_r || !(any_w || any_t) {
        rates.push(format!("r={}", report::fmt_bw_iec(bw[0])));
        iopss.push(format!("r={}", report::num2str(iops[0])));
    }
    if any_w {
        rates.push(format!("w={}", report::fmt_bw_iec(bw[1])));
        iopss.push(format!("w={}", report::num2str(iops[1])));
    }
    if any_t {
        rates.push(format!("t={}", report::fmt_bw_iec(bw[2])));
        iopss.push(format!("t={}", report::num2str(iops[2])));
    }
    let es = eta.as_secs();
    let eta_s = if es >= 3600 {
        format!("{:02}h:{:02}m:{:02}s", es / 3600, es / 60 % 60, es % 60)
    } else {
        format!("{:02}m:{:02}s", es / 60, es % 60)
    };
    format!(
        "Jobs: {running} (f={running}): [{}][{pct}][{}][{} IOPS][eta {eta_s}]",
        st.join(","),
        rates.join(","),
        iopss.join(",")
    )
}

/// fio's setup_files for one job (clone): its files sized (`size=` left
/// out: the files' own, or the file system's with `fill_device`) and laid
/// out. Returns why it failed and fio's error number for it (0: EIO).
fn setup_job(
    job: &mut crate::options::Job,
    clone: u32,
    readonly: bool,
    say_layout: bool,
) -> Option<(String, i32)> {
    let seed = job.randseed.wrapping_add(u64::from(clone));
    if readonly {
        // fio's --readonly: no file is written, laid out or extended.
        return readonly_layout_refusal(job);
    }
    if job.fill_device && crate::files::multi(job) {
        return Some((
            format!(
                "job '{}': fill_device with several files is not supported",
                job.name
            ),
            libc::EINVAL,
        ));
    }
    if let Err(e) = crate::layout::size_unset(job) {
        return Some(e);
    }
    let laid = if crate::files::multi(job) {
        // Sized once, before layout (the runner keeps these sizes and
        // offsets, as fio's setup_files).
        crate::layout::create_work_dirs(&job.files)
            .and_then(|()| crate::files::plan(job, seed))
            .and_then(|p| {
                job.planned = Some((
                    p.files.iter().map(|f| (f.offset, f.io_size)).collect(),
                    p.size,
                ));
                crate::layout::prepare_files(job, &p, seed)
            })
    } else {
        crate::layout::prepare(job, seed).map(|b| b.map(|b| (1, b)))
    };
    match laid {
        Ok(Some((n, bytes))) => {
            if say_layout {
                println!("{}", crate::layout::message_files(&job.name, n, bytes));
            }
            None
        }
        Ok(None) => None,
        Err(e) => Some((e.to_string(), 0)),
    }
}

/// fio's `--readonly` in place of the file layout: nothing is written. A
/// file shorter than the job's offset + size is not extended (fio's
/// "refusing extend of file due to read-only"; the job reads what there
/// is); a missing one makes the job fail, as fio's open does.
fn readonly_layout_refusal(job: &crate::options::Job) -> Option<(String, i32)> {
    if !job.ioengine.on_files() || job.create_on_open {
        return None;
    }
    let path = job.filename.as_deref()?;
    let Some(crate::options::Amount::Bytes(size)) = job.size else {
        return None;
    };
    match std::fs::metadata(path) {
        Ok(md) if !md.is_file() => None,
        Ok(md) => {
            let needed = job.offset.resolve(md.len()).saturating_add(size);
            if needed > md.len() {
                eprintln!("nvme-bench: {path}: refusing extend of file due to read-only");
            }
            None
        }
        // fio's failed open reports its errno (ENOENT for a missing file).
        Err(e) => Some((
            format!("open({path}): {e} (not laid out: read-only)"),
            e.raw_os_error().unwrap_or(0),
        )),
    }
}

/// One `--status-interval` report: every format asked for, from the
/// finished jobs' results and the running group's statistics so far.
fn interval_report(
    g: &Globals,
    set: &JobSet,
    done: &[JobResult],
    progs: &[(crate::options::Job, Arc<Progress>)],
    ss: Option<&crate::steadystate::Checker>,
    started: SystemTime,
) -> Result<String> {
    for (_, p) in progs {
        if p.state.load(Ordering::Relaxed) != runner::ST_DONE {
            p.snap_req.store(true, Ordering::Relaxed);
        }
    }
    // Each running job answers on its next loop turn; one blocked longer
    // (a rate-limit sleep) is shown as of its last answer.
    let until = Instant::now() + Duration::from_millis(250);
    while Instant::now() < until
        && progs.iter().any(|(_, p)| {
            p.snap_req.load(Ordering::Relaxed) && p.state.load(Ordering::Relaxed) != runner::ST_DONE
        })
    {
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut all: Vec<JobResult> = done.to_vec();
    for (i, (_, p)) in progs.iter().enumerate() {
        if let Some(mut r) = p.snap.lock().unwrap_or_else(|e| e.into_inner()).clone() {
            r.steadystate = ss.and_then(|c| c.report(i));
            all.push(r);
        }
    }
    let us = report::units(&all);
    report::render(g, set, &us, &[], started)
}

/// fio's aggregate bandwidth logs (`--bandwidth-log`): every 500 ms (fio's
/// `bwavgtime`), the KiB/s moved by all jobs since the last sample, per
/// direction, as `msec, KiB/s, ddir, 0, 0` lines in agg-read_bw.log,
/// agg-write_bw.log and agg-trim_bw.log (zeros while nothing trims).
struct AggBwLog {
    files: [std::io::BufWriter<std::fs::File>; 3],
    /// Bytes of the groups already finished.
    base: [u64; NDIR],
    prev_bytes: [u64; NDIR],
    prev_t: Instant,
}

impl AggBwLog {
    const NAMES: [&'static str; 3] = ["agg-read_bw.log", "agg-write_bw.log", "agg-trim_bw.log"];

    fn create() -> Result<AggBwLog> {
        let open = |n: &str| -> Result<std::io::BufWriter<std::fs::File>> {
            Ok(std::io::BufWriter::new(std::fs::File::create(n).map_err(
                |e| Error::msg(format!("--bandwidth-log {n}: {e}")),
            )?))
        };
        Ok(AggBwLog {
            files: [
                open(Self::NAMES[0])?,
                open(Self::NAMES[1])?,
                open(Self::NAMES[2])?,
            ],
            base: [0; NDIR],
            prev_bytes: [0; NDIR],
            prev_t: Instant::now(),
        })
    }

    fn bytes(&self, progs: &[(crate::options::Job, Arc<Progress>)]) -> [u64; NDIR] {
        let mut b = self.base;
        for (_, p) in progs {
            for (d, x) in b.iter_mut().enumerate() {
                *x += p.bytes[d].load(Ordering::Relaxed);
            }
        }
        b
    }

    fn sample(
        &mut self,
        t0: Instant,
        progs: &[(crate::options::Job, Arc<Progress>)],
    ) -> Result<()> {
        let now = Instant::now();
        let ms = now.duration_since(self.prev_t).as_millis() as u64;
        if ms <= 500 {
            return Ok(());
        }
        let cur = self.bytes(progs);
        let at = now.duration_since(t0).as_millis();
        for (d, (c, p)) in cur.iter().zip(self.prev_bytes).enumerate() {
            let diff = c.saturating_sub(p);
            let kib_s = diff.saturating_mul(1000) / ms / 1024;
            writeln!(self.files[d], "{at}, {kib_s}, {d}, 0, 0")?;
        }
        self.prev_bytes = cur;
        self.prev_t = now;
        Ok(())
    }

    fn group_done(&mut self, progs: &[(crate::options::Job, Arc<Progress>)]) {
        self.base = self.bytes(progs);
    }

    fn finish(mut self) -> Result<()> {
        for (f, n) in self.files.iter_mut().zip(Self::NAMES) {
            f.flush()
                .map_err(|e| Error::msg(format!("--bandwidth-log {n}: {e}")))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A trim job's status line shows its trim rate (fio's `t=`) and its
    /// progress counts trims (a trimwrite's counts its writes only).
    #[test]
    fn status_line_shows_trims() {
        let job = |rw: &str| {
            crate::options::parse_str(&format!("[j]\nfilename=x\nrw={rw}\nsize=1m\n"))
                .unwrap()
                .jobs
                .remove(0)
        };
        for (rw, letter, pct) in [
            ("randtrim", "d(1)", "50.0%"),
            ("trimwrite", "W(1)", "25.0%"),
        ] {
            let p = Arc::new(Progress::default());
            p.planned_bytes.store(1 << 20, Ordering::Relaxed);
            let progs = vec![(job(rw), p)];
            let prev: Snap = vec![(runner::ST_RUN, [0; NDIR], [0; NDIR])];
            let w = if rw == "trimwrite" { 256 << 10 } else { 0 };
            let cur: Snap = vec![(runner::ST_RUN, [0, w / 4096, 128], [0, w, 512 << 10])];
            let l = status_line(
                &progs,
                &prev,
                &cur,
                Duration::from_secs(1),
                Duration::from_secs(1),
            );
            assert!(l.contains(&format!("[{letter}][{pct}]")), "{rw}: {l}");
            assert!(
                l.contains("t=512KiB/s") && l.contains("t=128 IOPS"),
                "{rw}: {l}"
            );
            assert!(!l.contains("r="), "{rw}: {l}");
        }
    }
}
