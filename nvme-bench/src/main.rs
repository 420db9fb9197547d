//! nvme-bench: a fio-compatible benchmark that runs the userspace driver
//! (ioengine=nvme-vfio) and the kernel's io_uring paths side by side, plus
//! `info`, `smoke`, `bind` and `unbind`.
//!
//! `nvme-bench [fio options] [job files]` runs fio's job language;
//! see docs/fio-compat.md.

#![deny(unsafe_code)]

mod bind;
mod cli;
mod clock;
mod dedupe;
mod diskstats;
#[allow(unsafe_code)] // aligned buffers, block-device ioctls, io_uring and libaio submission
mod engine;
mod error;
#[allow(unsafe_code)] // sysconf for $pagesize/$mb_memory/$ncpus
mod expr;
mod files;
mod flow;
mod gen;
mod hash;
mod lat_target;
#[allow(unsafe_code)] // fallocate/fadvise
mod layout;
mod logs;
mod minrate;
mod numa;
mod options;
mod prio;
#[allow(unsafe_code)] // localtime_r/strftime
mod report;
mod run;
mod runner;
mod stats;
mod steadystate;
#[allow(unsafe_code)] // syscalls and ioctls
mod sys;
mod terminate;
mod verify;
mod zones;

use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand};
use nvme_core::{ByteCount, Controller, ControllerOptions, Lba};
use nvme_vfio::VfioDevice;

#[derive(Parser)]
#[command(
    version,
    about = "Userspace NVMe driver: inspect and benchmark a controller through VFIO",
    after_help = "Benchmark (fio's job language): nvme-bench [--output-format=normal|json|json+|terse] \
[--output=FILE] [--plot=FILE.svg] [--interval-log=FILE.ndjson] [--status-interval=T] \
[--eta=auto|always|never] [--parse-only] [JOBFILE...] [--name=JOB --option=value ...]\n\
See docs/fio-compat.md for the options, engines and output."
)]
struct Cli {
    /// Log level filter (also RUST_LOG), e.g. `debug` or `nvme_core=trace`.
    #[arg(long, global = true, default_value = "warn")]
    log: String,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Print controller and namespace identity, queue limits, MDTS, and each
    /// BAR mapping with the memory type it got.
    Info {
        /// PCI address, e.g. 0000:01:00.0 (the device must be bound to vfio-pci).
        addr: String,
    },
    /// Verified read/write smoke test: writes a pattern over a range with
    /// transfers of every size class, reads it back and compares.
    Smoke {
        /// PCI address of a device bound to vfio-pci. Its data in the range is overwritten.
        addr: String,
        /// Namespace.
        #[arg(long, default_value_t = 1)]
        nsid: u32,
        /// Bytes to cover, starting at LBA 0.
        #[arg(long, default_value_t = 16 << 20)]
        bytes: u64,
    },
    /// Hand a device from the kernel nvme driver to vfio-pci (refuses a
    /// function that is not an NVMe controller, and one whose block devices
    /// hold a mounted filesystem, swap, a dm/md/LVM user or an open file).
    Bind {
        /// PCI address, e.g. 0000:01:00.0.
        addr: String,
        /// Take it even if a namespace is in use (data loss if mounted!).
        #[arg(long)]
        force: bool,
        /// Bind even if the PCI class is not NVMe (0x010802), for NVMe
        /// controllers that report another class. Not implied by --force.
        #[arg(long)]
        force_class: bool,
    },
    /// Give a device back to the kernel nvme driver and wait for its block devices.
    Unbind {
        /// PCI address, e.g. 0000:01:00.0.
        addr: String,
    },
}

const SUBCOMMANDS: &[&str] = &["info", "smoke", "bind", "unbind", "help", "--help", "-h"];

/// The fio release whose job language and output nvme-bench follows.
const FIO_COMPAT: &str = "fio-3.33";

/// `--version`: fio's form first, so tools that check for `fio-3` (fio-plot's
/// bench-fio) accept it, then what this really is.
fn version_line() -> String {
    format!("{FIO_COMPAT} (nvme-bench {})", env!("CARGO_PKG_VERSION"))
}

/// fio with no arguments: its version and usage on stdout, "No job(s)
/// defined" on stderr, exit status 1.
fn no_arguments() -> ExitCode {
    println!("{}", version_line());
    println!(
        "nvme-bench [options] [job options] <job file(s)>\n\
         nvme-bench info|smoke|bind|unbind ...\n  \
         --output\t\tWrite output to file\n  \
         --output-format=type\tOutput format (normal,json,json+,terse)\n  \
         --version\t\tPrint version info and exit\n  \
         --help\t\tPrint this page (and the subcommands)\n  \
         --cmdhelp=cmd\t\tPrint command help, \"all\" for all of them (supported or not)\n  \
         --enghelp=engine\tPrint ioengine help, or list available ioengines\n  \
         --showcmd\t\tTurn a job file into command line options\n  \
         --minimal\t\tMinimal (terse) output\n  \
         --terse-version=t\tSet terse version output format (default 3, or 2, 4 or 5)\n  \
         --readonly\t\tTurn on safety read-only checks, preventing writes\n  \
         --warnings-fatal\tFio parser warnings are fatal\n  \
         --bandwidth-log\tGenerate aggregate bandwidth logs\n  \
         --eta-newline=t\tForce a new line for every 't' period passed\n  \
         --parse-only\t\tParse options only, don't start any IO\n  \
         --section=name\tOnly run specified section in job file\n  \
         --eta=when\t\tWhen ETA estimate should be printed (always, never, auto)\n  \
         --status-interval=t\tStatus every 't' period\n\
         See docs/fio-compat.md."
    );
    eprintln!("No job(s) defined");
    ExitCode::from(1)
}

/// fio mode: everything that is not a subcommand.
fn fio_main(args: &[String]) -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    // fio's informational flags: they print and exit without running.
    for a in args {
        let (k, v) = match a.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (a.as_str(), None),
        };
        match k {
            "--cmdhelp" => {
                let (out, err) = cli::cmdhelp(v);
                print!("{out}");
                eprint!("{err}");
                return ExitCode::SUCCESS;
            }
            "--enghelp" => {
                let (out, err, rc) = cli::enghelp(v);
                print!("{out}");
                eprint!("{err}");
                return ExitCode::from(rc);
            }
            "--showcmd" => {
                return match cli::showcmd(args) {
                    Ok(out) => {
                        print!("{out}");
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        eprintln!("nvme-bench: {e}");
                        ExitCode::from(1)
                    }
                };
            }
            _ => {}
        }
    }
    let (g, mut set) = match options::parse_command_line(args) {
        Ok(x) => x,
        Err(e) => {
            // fio's status for a job it refuses (bad option or value,
            // missing job file, unknown switch): 1.
            eprintln!("nvme-bench: {e}");
            return ExitCode::from(1);
        }
    };
    if g.readonly {
        if let Err(e) = cli::readonly_check(&set) {
            eprintln!("nvme-bench: {e}");
            return ExitCode::from(1);
        }
    }
    let warnings = cli::fixup_warnings(&mut set);
    for w in &warnings {
        eprintln!("nvme-bench: {w}");
    }
    if g.warnings_fatal && !warnings.is_empty() {
        return ExitCode::from(1);
    }
    if g.parse_only {
        // fio prints nothing here; nvme-bench prints what fio prints
        // before a run: the job headers and the Starting line.
        for l in report::normal::start_lines(&set) {
            println!("{l}");
        }
        return ExitCode::SUCCESS;
    }
    // fio checks NUMA node lists on a real parse only: a node this host
    // lacks drops the job, after the headers of the jobs before it, and
    // the run fails before any I/O.
    if let Some((i, why)) = numa::first_dropped(&set.jobs) {
        for j in &set.jobs[..i] {
            println!("{}", report::normal::job_header(j, j.groupid as usize));
            if j.numjobs > 1 {
                println!("...");
            }
        }
        for w in why {
            eprintln!("nvme-bench: {w}");
        }
        eprintln!("nvme-bench: job {} dropped", set.jobs[i].name);
        return ExitCode::FAILURE;
    }
    // fio's td_steadystate_init, likewise on a real parse only: a job
    // whose steady-state settings differ from an earlier job's of its
    // reporting group fails the run, after the headers up to its own.
    if let Some(i) = options::steadystate_conflict(&set.jobs) {
        for j in &set.jobs[..i] {
            println!("{}", report::normal::job_header(j, j.groupid as usize));
            if j.numjobs > 1 {
                println!("...");
            }
        }
        let j = &set.jobs[i];
        println!("{}", report::normal::job_header(j, j.groupid as usize));
        eprintln!(
            "nvme-bench: job '{}': job rejected: steadystate options must be consistent \
             within reporting groups",
            j.name
        );
        return ExitCode::FAILURE;
    }
    // fio's fixup_options (a real parse only): the block histogram
    // needs one file per job; nothing is printed before the message.
    if let Some((_, n)) = options::block_hist_conflict(&set.jobs) {
        eprintln!(
            "nvme-bench: block error histogram only available with a single file per job, \
             but {n} files provided"
        );
        return ExitCode::FAILURE;
    }
    match run::run(&g, &set) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("nvme-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() {
        return no_arguments();
    }
    // fio's --version (and -v); clap's -V too.
    if args
        .iter()
        .any(|a| matches!(a.as_str(), "--version" | "-v" | "-V"))
    {
        println!("{}", version_line());
        return ExitCode::SUCCESS;
    }
    let first = args.iter().find(|a| !a.starts_with("--log"));
    if !args.is_empty() && !first.is_some_and(|a| SUBCOMMANDS.contains(&a.as_str())) {
        return fio_main(&args);
    }
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&cli.log));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let r = match cli.cmd {
        Cmd::Info { addr } => info(&addr),
        Cmd::Smoke { addr, nsid, bytes } => smoke(&addr, nsid, bytes),
        Cmd::Bind {
            addr,
            force,
            force_class,
        } => bind::bind(&addr, force, force_class).map_err(Into::into),
        Cmd::Unbind { addr } => bind::unbind(&addr).map_err(Into::into),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("nvme-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

type Res = Result<(), Box<dyn std::error::Error>>;

fn open(addr: &str) -> Result<Controller<VfioDevice>, Box<dyn std::error::Error>> {
    Ok(nvme_vfio::open_controller(
        addr,
        ControllerOptions::default(),
    )?)
}

fn info(addr: &str) -> Res {
    let c = open(addr)?;
    let id = c.identify();
    let cap = c.cap();
    let hw = c.platform_info();
    println!("Controller {}", hw.pci_address());
    println!("  model            : {}", id.model);
    println!("  serial           : {}", id.serial);
    println!("  firmware         : {}", id.firmware);
    println!(
        "  PCI vendor       : {:#06x} (subsystem {:#06x})",
        id.vid, id.ssvid
    );
    println!("  NVMe version     : {}", c.version());
    println!("  controller id    : {}", id.cntlid);
    println!("  subsystem NQN    : {}", id.subnqn);
    println!("Limits");
    println!(
        "  MDTS             : {} ({} KiB per command)",
        id.mdts,
        c.max_transfer_bytes() / 1024
    );
    println!(
        "  queue entries    : {} max (CAP.MQES {})",
        c.max_queue_entries(),
        cap.mqes()
    );
    println!(
        "  I/O queue pairs  : {} granted (asked {})",
        c.io_queue_pairs_granted(),
        c.options().io_queue_pairs
    );
    println!("  doorbell stride  : {} bytes", cap.doorbell_stride());
    println!(
        "  page sizes       : {}..{} bytes",
        cap.min_page_size(),
        cap.max_page_size()
    );
    println!("  ready timeout    : {:?}", cap.ready_timeout());
    match c.cmb() {
        None => println!("  CMB              : none"),
        Some(st) => println!(
            "  CMB              : {} MiB in BAR{} at +{:#x} ({:?} scheme, bus address {:#x}); SQs {}{}",
            st.layout.size >> 20,
            st.layout.bar,
            st.layout.bar_offset,
            st.layout.scheme,
            st.layout.bus_address,
            if st.sq_in_cmb { "in the CMB" } else { "in host memory" },
            st.memory_type
                .map(|t| format!(", mapped {t:?}"))
                .unwrap_or_default()
        ),
    }
    println!(
        "  shadow doorbells : {}",
        if c.shadow_doorbells() {
            "on (Doorbell Buffer Config)"
        } else if id.oacs.doorbell_buffer_config() {
            "supported, off"
        } else {
            "not supported"
        }
    );
    println!(
        "  optional cmds    : compare={} write_zeroes={} dsm={} flush/vwc={} sgl={} shadow_doorbells={}",
        id.oncs.compare(),
        id.oncs.write_zeroes(),
        id.oncs.dataset_management(),
        id.has_volatile_write_cache(),
        id.sgls.supported(),
        id.oacs.doorbell_buffer_config()
    );
    println!("Namespaces ({} active of {})", c.namespaces().len(), id.nn);
    for ns in c.namespaces() {
        println!(
            "  ns {:<3} {:>14} blocks x {:>5} B = {:.2} GiB{}",
            ns.nsid(),
            ns.blocks(),
            ns.block_size(),
            ns.size_bytes() as f64 / (1u64 << 30) as f64,
            if ns.metadata_size() > 0 {
                format!(" (+{} B metadata)", ns.metadata_size())
            } else {
                String::new()
            }
        );
    }
    println!("Mappings");
    for m in hw.mappings() {
        println!("  {m}");
    }
    println!("DMA memory");
    println!("  {}", hw.dma_summary());
    let smart = c.smart_log()?;
    println!("Health");
    println!(
        "  temperature      : {} K, spare {}%, used {}%, critical warning {:#x}",
        smart.temperature_kelvin,
        smart.available_spare,
        smart.percentage_used,
        smart.critical_warning
    );
    c.shutdown()?;
    Ok(())
}

fn smoke(addr: &str, nsid: u32, bytes: u64) -> Res {
    let c = open(addr)?;
    let ns = c.namespace(nsid)?.clone();
    let bs = ns.block_size();
    let total_blocks = bytes / bs;
    // A range past the end is an error, not silently clamped: the caller
    // asked for coverage the device cannot give. Checked before any I/O.
    if total_blocks > ns.blocks() {
        return Err(format!(
            "--bytes {bytes} is more than namespace {nsid} holds ({} bytes: {} blocks of {bs})",
            ns.size_bytes(),
            ns.blocks()
        )
        .into());
    }
    if total_blocks == 0 {
        return Err(format!("--bytes {bytes} is less than one {bs}-byte block").into());
    }
    let mut qp = c.create_io_queue_pair(64)?;
    let max_blocks = (c.max_transfer_bytes() as u64 / bs).max(1);
    // Transfer sizes cycle through 1 block, a page, a few pages and MDTS.
    let sizes: Vec<u64> = [1, 4096 / bs, 16384 / bs, max_blocks]
        .into_iter()
        .map(|n| n.clamp(1, max_blocks))
        .collect();
    // A fresh seed each run, so stale data from an earlier run cannot pass.
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0x5eed, |d| d.as_nanos() as u64);
    let fill = |buf: &mut [u8], lba: u64| {
        for (i, block) in buf.chunks_mut(bs as usize).enumerate() {
            let tag = (lba + i as u64) ^ seed;
            for (j, w) in block.chunks_mut(8).enumerate() {
                w.copy_from_slice(
                    &(tag.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ j as u64).to_le_bytes(),
                );
            }
        }
    };
    let t = Instant::now();
    let (mut lba, mut k, mut cmds) = (0u64, 0usize, 0u64);
    while lba < total_blocks {
        let n = sizes[k % sizes.len()].min(total_blocks - lba);
        let mut buf = c.alloc_buffer(ByteCount((n * bs) as usize))?;
        fill(&mut buf, lba);
        qp.write(&ns, Lba(lba), buf)?;
        lba += n;
        k += 1;
        cmds += 1;
    }
    qp.flush(&ns)?;
    let wt = t.elapsed();
    let t = Instant::now();
    let (mut lba, mut k) = (0u64, 0usize);
    let mut expect = Vec::new();
    while lba < total_blocks {
        let n = sizes[(k + 1) % sizes.len()].min(total_blocks - lba);
        let buf = qp.read(&ns, Lba(lba), c.alloc_buffer(ByteCount((n * bs) as usize))?)?;
        expect.resize(buf.len(), 0);
        fill(&mut expect, lba);
        if buf[..] != expect[..] {
            let at = buf
                .iter()
                .zip(&expect)
                .position(|(a, b)| a != b)
                .unwrap_or(0);
            return Err(format!(
                "data mismatch at LBA {} (byte {} of a {}-block read)",
                lba + at as u64 / bs,
                at as u64 % bs,
                n
            )
            .into());
        }
        lba += n;
        k += 1;
        cmds += 1;
    }
    let rt = t.elapsed();
    let mib = (total_blocks * bs) as f64 / (1 << 20) as f64;
    println!(
        "smoke: ok: wrote and verified {mib:.1} MiB on ns {nsid} in {cmds} commands \
         (write {:.1} MiB/s, read+verify {:.1} MiB/s, synchronous QD1)",
        mib / wt.as_secs_f64(),
        mib / rt.as_secs_f64()
    );
    drop(qp);
    c.shutdown()?;
    Ok(())
}
