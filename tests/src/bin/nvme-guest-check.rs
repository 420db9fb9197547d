//! Runs inside the QEMU guest: drives the emulated controller through our
//! driver and prints what it found, one `key=value` per line, for the host
//! side of the tests to assert on. Exits non-zero on any failed check.

#![deny(unsafe_code)]

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use nvme_core::{ByteCount, Controller, ControllerOptions, Error, Lba, Namespace};
use nvme_tests::{check_pattern, fill_pattern, Rng};
use nvme_vfio::VfioDevice;

#[derive(Parser)]
#[command(about = "Guest-side checks for the userspace NVMe driver")]
struct Cli {
    /// Do not use shadow doorbells even if the controller offers them.
    #[arg(long, global = true)]
    no_shadow: bool,
    /// Keep submission queues in host memory even if there is a CMB.
    #[arg(long, global = true)]
    no_cmb: bool,
    /// Use PRP lists only, even if the controller supports SGLs.
    #[arg(long, global = true)]
    no_sgl: bool,
    /// I/O queue pairs to ask the controller for.
    #[arg(long, global = true, default_value_t = 16)]
    queues: u16,
    #[command(subcommand)]
    cmd: Cmd,
}

static OPTIONS: std::sync::OnceLock<ControllerOptions> = std::sync::OnceLock::new();

#[derive(Subcommand)]
enum Cmd {
    /// Open the controller and print its identity, limits and namespaces.
    Identify { addr: String },
    /// Only open the device; print `open=ok` or the error (exit 2).
    Open { addr: String },
    /// Random write/read-back round trips, verified.
    Roundtrip {
        addr: String,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long, default_value_t = 64)]
        ops: u32,
    },
    /// Write the pattern of `seed` to LBAs `lba..lba+blocks`.
    WritePattern(Range),
    /// Read LBAs `lba..lba+blocks` and check them against the pattern.
    VerifyPattern(Range),
    /// Write the pattern to a file (for the kernel path: `dd` it to the device).
    GenPattern {
        #[arg(long)]
        out: String,
        #[arg(long)]
        lba: u64,
        #[arg(long)]
        blocks: u64,
        #[arg(long)]
        block_size: usize,
        #[arg(long)]
        seed: u64,
    },
    /// Check a file (read back through the kernel) against the pattern.
    CheckFile {
        #[arg(long)]
        file: String,
        #[arg(long)]
        lba: u64,
        #[arg(long)]
        block_size: usize,
        #[arg(long)]
        seed: u64,
    },
    /// Bad input must give the right typed error, and the controller must
    /// keep working afterwards.
    BadInput { addr: String },
    /// N threads, each with its own queue pair, doing concurrent verified
    /// I/O (several commands in flight each) on disjoint LBA ranges.
    Threads {
        addr: String,
        #[arg(long, default_value_t = 2)]
        threads: usize,
        #[arg(long, default_value_t = 200)]
        ops: u32,
        #[arg(long, default_value_t = 8)]
        depth: usize,
        #[arg(long, default_value_t = 1)]
        nsid: u32,
        #[arg(long, default_value_t = 5)]
        seed: u64,
    },
    /// Write Zeroes, Deallocate, Compare (match and mismatch), FUA write,
    /// and doorbell batching, each checked.
    Commands {
        addr: String,
        #[arg(long, default_value_t = 1)]
        nsid: u32,
        /// First LBA of the 4 regions of 16 blocks this uses.
        #[arg(long, default_value_t = 2048)]
        lba: u64,
    },
    /// Vectored write and read (several buffers per command), verified.
    Vectored {
        addr: String,
        #[arg(long, default_value_t = 3000)]
        lba: u64,
    },
    /// Verified random reads at a queue depth for a while; prints IOPS.
    Iops {
        addr: String,
        #[arg(long, default_value_t = 32)]
        qd: usize,
        #[arg(long, default_value_t = 3)]
        seconds: u64,
        /// Bytes of the namespace to prefill with the pattern and read from.
        #[arg(long, default_value_t = 8 << 20)]
        span: u64,
    },
    /// Rounds of create, verified I/O (synchronous and async, whole and
    /// split), drop, with queue sizes that differ between rounds (so queue
    /// ids are reused), optionally while another pair does I/O throughout.
    Requeue {
        addr: String,
        #[arg(long, default_value_t = 6)]
        rounds: u32,
        /// Run one more pair with verified I/O on another thread meanwhile.
        #[arg(long)]
        busy: bool,
        /// Per-command timeout of the synchronous helpers, in seconds.
        #[arg(long, default_value_t = 10)]
        io_timeout: u64,
    },
    /// A device slower than the I/O deadline (a null-co namespace with
    /// latency-ns): the deadline is reported through poll and the sync
    /// helper, the buffer comes back with the late completion, and the pair
    /// and controller go on working.
    Deadline {
        addr: String,
        /// The I/O deadline, in milliseconds.
        #[arg(long, default_value_t = 1000)]
        timeout_ms: u64,
        /// Timeout policy: report or abort.
        #[arg(long, default_value = "abort")]
        policy: String,
    },
    /// Threads with their own queue pairs write continuously while the
    /// controller is reset `resets` times (by the API, or by a sysfs
    /// function reset behind the driver's back); writes that come back
    /// "aborted by controller reset" are resubmitted. Writes the acknowledged
    /// value of every block to `--acked` for a check through the kernel.
    ResetLoad {
        addr: String,
        #[arg(long, default_value_t = 3)]
        threads: usize,
        #[arg(long, default_value_t = 3)]
        resets: u32,
        /// api or sysfs.
        #[arg(long, default_value = "api")]
        mode: String,
        #[arg(long, default_value = "/tmp/acked.txt")]
        acked: String,
    },
    /// Write the pattern to `blocks` blocks from `lba`, then read them back
    /// one block at a time, several in flight: blocks in `--bad` must fail
    /// with the named media error status, every other one must succeed and
    /// match.
    MediaErrors {
        addr: String,
        #[arg(long, default_value_t = 0)]
        lba: u64,
        #[arg(long, default_value_t = 256)]
        blocks: u64,
        /// Blocks (LBAs) whose reads fail.
        #[arg(long, value_delimiter = ',')]
        bad: Vec<u64>,
    },
    /// Poll asynchronous events for `seconds`, printing each as it comes
    /// (stdout is flushed per line), until `count` have come.
    Events {
        addr: String,
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        #[arg(long, default_value_t = 2)]
        count: usize,
    },
    /// Write continuously (4 KiB blocks over the first `blocks` blocks, a
    /// new value each pass) and append "lba value" to `--log` after each
    /// acknowledged write, until killed.
    WriteUntilKilled {
        addr: String,
        #[arg(long, default_value_t = 2048)]
        blocks: u64,
        #[arg(long)]
        log: String,
    },
    /// Read the blocks listed in an acked file through a block device and
    /// check each holds its acknowledged value.
    CheckAcked {
        #[arg(long)]
        file: String,
        #[arg(long)]
        dev: String,
        /// Also accept the next pass's value (a write submitted after the
        /// last acknowledged one, in flight when the writer stopped, may
        /// have landed; the writers cycle values 1..=250).
        #[arg(long)]
        or_next: bool,
    },
    /// Verified I/O on two threads with their own queue pairs until the
    /// device is removed under them (hot-unplug from the host): every
    /// command in flight must come back `DeviceRemoved`, later calls
    /// `Error::DeviceRemoved`. Then stays alive `linger` seconds holding
    /// the controller (the kernel must complete the removal meanwhile) and
    /// exits 0. If `/tmp/unplug.t0` holds the first field of `/proc/uptime`
    /// when the unplug was requested, the delay to noticing is printed.
    UnplugLoad {
        addr: String,
        /// Give up (and fail) if no removal came within this many seconds.
        #[arg(long, default_value_t = 120)]
        seconds: u64,
        /// Seconds to stay alive after the removal was noticed.
        #[arg(long, default_value_t = 15)]
        linger: u64,
        #[arg(long, default_value_t = 2)]
        threads: usize,
    },
    /// Open, do verified I/O, close; `times` times in a row.
    Reopen {
        addr: String,
        #[arg(long, default_value_t = 3)]
        times: u32,
    },
}

#[derive(clap::Args)]
struct Range {
    addr: String,
    #[arg(long, default_value_t = 1)]
    nsid: u32,
    #[arg(long)]
    lba: u64,
    #[arg(long)]
    blocks: u64,
    #[arg(long)]
    seed: u64,
}

type Ctrl = Controller<VfioDevice>;
type Failure = Box<dyn std::error::Error>;

fn open(addr: &str) -> Result<Ctrl, Failure> {
    let opts = OPTIONS.get().cloned().unwrap_or_default();
    Ok(nvme_vfio::open_controller(addr, opts)?)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let _ = OPTIONS.set(ControllerOptions {
        shadow_doorbells: !cli.no_shadow,
        cmb_queues: !cli.no_cmb,
        io_queue_pairs: cli.queues,
        use_sgls: !cli.no_sgl,
        ..ControllerOptions::default()
    });
    let r = match cli.cmd {
        Cmd::Identify { addr } => identify(&addr),
        Cmd::Open { addr } => match open(&addr) {
            Ok(_) => {
                println!("open=ok");
                Ok(())
            }
            Err(e) => {
                println!("open=error");
                println!("error={e}");
                return ExitCode::from(2);
            }
        },
        Cmd::Roundtrip { addr, seed, ops } => roundtrip(&addr, seed, ops),
        Cmd::WritePattern(r) => pattern_io(&r, true),
        Cmd::VerifyPattern(r) => pattern_io(&r, false),
        Cmd::GenPattern {
            out,
            lba,
            blocks,
            block_size,
            seed,
        } => {
            let mut data = vec![0u8; blocks as usize * block_size];
            fill_pattern(&mut data, seed, lba, block_size);
            std::fs::write(&out, &data).map_err(Into::into)
        }
        Cmd::CheckFile {
            file,
            lba,
            block_size,
            seed,
        } => std::fs::read(&file)
            .map_err(Failure::from)
            .and_then(|data| {
                if data.is_empty() || data.len() % block_size != 0 {
                    return Err(format!("{file}: {} bytes is not whole blocks", data.len()).into());
                }
                check_pattern(&data, seed, lba, block_size)?;
                println!("check_file=ok blocks={}", data.len() / block_size);
                Ok(())
            }),
        Cmd::BadInput { addr } => bad_input(&addr),
        Cmd::Threads {
            addr,
            threads,
            ops,
            depth,
            nsid,
            seed,
        } => threads_io(&addr, threads, ops, depth, nsid, seed),
        Cmd::Commands { addr, nsid, lba } => commands(&addr, nsid, lba),
        Cmd::Vectored { addr, lba } => vectored(&addr, lba),
        Cmd::Iops {
            addr,
            qd,
            seconds,
            span,
        } => iops(&addr, qd, seconds, span),
        Cmd::Reopen { addr, times } => reopen(&addr, times),
        Cmd::UnplugLoad {
            addr,
            seconds,
            linger,
            threads,
        } => unplug_load(&addr, seconds, linger, threads),
        Cmd::ResetLoad {
            addr,
            threads,
            resets,
            mode,
            acked,
        } => reset_load(&addr, threads, resets, &mode, &acked),
        Cmd::CheckAcked { file, dev, or_next } => check_acked(&file, &dev, or_next),
        Cmd::Events {
            addr,
            seconds,
            count,
        } => events(&addr, seconds, count),
        Cmd::MediaErrors {
            addr,
            lba,
            blocks,
            bad,
        } => media_errors(&addr, lba, blocks, &bad),
        Cmd::WriteUntilKilled { addr, blocks, log } => write_until_killed(&addr, blocks, &log),
        Cmd::Deadline {
            addr,
            timeout_ms,
            policy,
        } => deadline(&addr, timeout_ms, &policy),
        Cmd::Requeue {
            addr,
            rounds,
            busy,
            io_timeout,
        } => requeue(&addr, rounds, busy, io_timeout),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("FAILED: {e}");
            println!("result=failed");
            ExitCode::FAILURE
        }
    }
}

fn identify(addr: &str) -> Result<(), Failure> {
    let c = open(addr)?;
    let id = c.identify();
    println!("vid={:#06x}", id.vid);
    println!("serial={}", id.serial);
    println!("model={}", id.model);
    println!("firmware={}", id.firmware);
    println!("version={}", c.version());
    println!("mdts={}", id.mdts);
    println!("max_transfer={}", c.max_transfer_bytes());
    println!("max_queue_entries={}", c.max_queue_entries());
    println!("io_queue_pairs={}", c.io_queue_pairs_granted());
    println!("doorbell_stride={}", c.cap().doorbell_stride());
    println!("nn={}", id.nn);
    println!("oncs={:#x}", id.oncs.0);
    println!("vwc={}", id.has_volatile_write_cache());
    println!("namespaces={}", c.namespaces().len());
    for ns in c.namespaces() {
        println!("ns{}.blocks={}", ns.nsid(), ns.blocks());
        println!("ns{}.block_size={}", ns.nsid(), ns.block_size());
        println!("ns{}.bytes={}", ns.nsid(), ns.size_bytes());
    }
    match c.cmb() {
        None => println!("cmb=none"),
        Some(st) => {
            println!("cmb=present");
            println!("cmb.scheme={:?}", st.layout.scheme);
            println!("cmb.bar={}", st.layout.bar);
            println!("cmb.size={}", st.layout.size);
            println!("cmb.sqs={}", st.layout.sz.sqs());
            println!("cmb.cqs={}", st.layout.sz.cqs());
            println!("cmb.sq_in_cmb={}", st.sq_in_cmb);
            println!("cmb.memory_type={:?}", st.memory_type);
        }
    }
    let qp = c.create_io_queue_pair(16)?;
    println!("qp.sq_in_cmb={}", qp.sq_in_cmb());
    drop(qp);
    let smart = c.smart_log()?;
    println!("smart.temperature_kelvin={}", smart.temperature_kelvin);
    println!("smart.host_write_commands={}", smart.host_write_commands);
    let (sq, cq) = c.number_of_queues()?;
    println!("features.queues={sq},{cq}");
    println!("error_log_entries={}", c.error_log()?.len());
    Ok(())
}

/// Write or verify a range in chunks of the largest transfer.
fn pattern_io(r: &Range, write: bool) -> Result<(), Failure> {
    let c = open(&r.addr)?;
    let ns = c.namespace(r.nsid)?.clone();
    let mut qp = c.create_io_queue_pair(64)?;
    let bs = ns.block_size() as usize;
    let chunk_blocks = (c.max_transfer_bytes() / bs) as u64;
    let mut lba = r.lba;
    let end = r.lba + r.blocks;
    let start = Instant::now();
    while lba < end {
        let n = chunk_blocks.min(end - lba);
        let mut buf = c.alloc_buffer(ByteCount(n as usize * bs))?;
        if write {
            fill_pattern(&mut buf, r.seed, lba, bs);
            qp.write(&ns, Lba(lba), buf)?;
        } else {
            let buf = qp.read(&ns, Lba(lba), buf)?;
            check_pattern(&buf, r.seed, lba, bs)?;
        }
        lba += n;
    }
    if write {
        qp.flush(&ns)?;
    }
    println!(
        "{}=ok blocks={} ms={}",
        if write {
            "write_pattern"
        } else {
            "verify_pattern"
        },
        r.blocks,
        start.elapsed().as_millis()
    );
    Ok(())
}

fn roundtrip(addr: &str, seed: u64, ops: u32) -> Result<(), Failure> {
    let c = open(addr)?;
    let mut qp = c.create_io_queue_pair(32)?;
    let mut rng = Rng::new(seed);
    let max = c.max_transfer_bytes();
    let mut bytes = 0u64;
    let mut multi_page = 0u32;
    let mut prp_list = 0u32;
    for op in 0..ops {
        let ns: &Namespace =
            &c.namespaces()[rng.range(0, c.namespaces().len() as u64 - 1) as usize];
        let bs = ns.block_size() as usize;
        let max_blocks = (max / bs) as u64;
        // The first ops pin the edges: one block, the largest transfer, and
        // a buffer starting mid-page so the PRP offset and list are exercised.
        let blocks = match op {
            0 => 1,
            1 => max_blocks,
            _ => rng.range(1, max_blocks),
        };
        let len = blocks as usize * bs;
        let lba = rng.range(0, ns.blocks() - blocks);
        let woff = match op {
            0 | 1 => 0,
            2 => 4096 - 4,
            _ => (rng.range(0, 1023) * 4) as usize,
        };
        let roff = (rng.range(0, 1023) * 4) as usize;
        let seed_op = seed.wrapping_mul(1_000_003).wrapping_add(u64::from(op));

        let mut wbuf = c.alloc_buffer(ByteCount(woff + len))?;
        wbuf.set_window(woff, len)?;
        fill_pattern(&mut wbuf, seed_op, lba, bs);
        let pages = (woff % 4096 + len).div_ceil(4096);
        if pages > 1 {
            multi_page += 1;
        }
        if pages > 2 {
            prp_list += 1;
        }
        qp.write(ns, Lba(lba), wbuf)?;
        let mut rbuf = c.alloc_buffer(ByteCount(roff + len))?;
        rbuf.set_window(roff, len)?;
        let rbuf = qp.read(ns, Lba(lba), rbuf)?;
        check_pattern(&rbuf, seed_op, lba, bs).map_err(|e| {
            format!(
                "op {op} (ns {}, lba {lba}, {blocks} blocks, offsets w{woff}/r{roff}): {e}",
                ns.nsid()
            )
        })?;
        bytes += 2 * len as u64;
    }
    // One large buffer (hugepage-backed when the guest has hugepages): a
    // largest-size transfer from its far end, verified.
    let ns = &c.namespaces()[0];
    let bs = ns.block_size() as usize;
    let len = (max / bs) * bs;
    let mut big = c.alloc_buffer(ByteCount(4 << 20))?;
    let off = (4 << 20) - len - 4096 + 8;
    big.set_window(off, len)?;
    fill_pattern(&mut big, seed ^ 0xb16, 0, bs);
    let hugepage_regions = c.platform_info().dma_stats().hugepage_regions;
    let big = qp.write(ns, Lba(0), big)?;
    let mut back = c.alloc_buffer(ByteCount(len))?;
    back.as_mut_slice().fill(0xa5);
    let back = qp.read(ns, Lba(0), back)?;
    check_pattern(&back, seed ^ 0xb16, 0, bs).map_err(|e| format!("large buffer: {e}"))?;
    drop(big);
    println!("hugepage_regions={hugepage_regions}");
    println!("sq_in_cmb={}", qp.sq_in_cmb());
    println!("roundtrip=ok ops={ops} bytes={bytes} multi_page={multi_page} prp_list={prp_list}");
    Ok(())
}

/// Check that `r` failed with an error matching `want`, and print it.
fn expect_err<T>(case: &str, r: Result<T, Error>, want: fn(&Error) -> bool) -> Result<(), Failure> {
    match r {
        Ok(_) => Err(format!("{case}: succeeded, expected an error").into()),
        Err(e) if want(&e) => {
            println!("{case}={e}");
            Ok(())
        }
        Err(e) => Err(format!("{case}: wrong error: {e:?}").into()),
    }
}

fn bad_input(addr: &str) -> Result<(), Failure> {
    let c = open(addr)?;
    let ns = c.namespaces()[0].clone();
    let bs = ns.block_size() as usize;
    let mut qp = c.create_io_queue_pair(16)?;

    let buf = c.alloc_buffer(ByteCount(bs))?;
    let r = qp.read(&ns, Lba(ns.blocks()), buf).map_err(|e| e.error);
    expect_err("lba_past_end", r, |e| {
        matches!(e, Error::LbaOutOfRange { .. })
    })?;

    let buf = c.alloc_buffer(ByteCount(2 * bs))?;
    let r = qp
        .write(&ns, Lba(ns.blocks() - 1), buf)
        .map_err(|e| e.error);
    expect_err("range_crossing_end", r, |e| {
        matches!(e, Error::LbaOutOfRange { .. })
    })?;

    let buf = c.alloc_buffer(ByteCount(bs + 4))?;
    let r = qp.read(&ns, Lba(0), buf).map_err(|e| e.error);
    expect_err("partial_block", r, |e| {
        matches!(e, Error::UnalignedLength { .. })
    })?;

    // More than one queue's worth of MDTS-sized commands: refused.
    let per_queue = c.max_transfer_bytes() * (usize::from(qp.entries()) - 1);
    let buf = c.alloc_buffer(ByteCount(per_queue + bs))?;
    let r = qp.read(&ns, Lba(0), buf).map_err(|e| e.error);
    expect_err("over_queue_capacity", r, |e| {
        matches!(e, Error::TooLarge { .. })
    })?;

    // Over MDTS: split into several commands that complete as one, verified.
    let len = 3 * c.max_transfer_bytes() + bs;
    let before = qp.stats().commands;
    let mut w = c.alloc_buffer(ByteCount(len))?;
    fill_pattern(&mut w, 77, 8, bs);
    qp.write(&ns, Lba(8), w)?;
    let r = qp.read(&ns, Lba(8), c.alloc_buffer(ByteCount(len))?)?;
    check_pattern(&r, 77, 8, bs).map_err(|e| format!("split transfer: {e}"))?;
    println!("split_commands={}", qp.stats().commands - before);

    let mut buf = c.alloc_buffer(ByteCount(2 * bs))?;
    let r = buf.set_window(2, bs);
    expect_err("misaligned_buffer", r, |e| {
        matches!(e, Error::MisalignedBuffer { .. })
    })?;

    expect_err("no_such_namespace", c.namespace(4242).cloned(), |e| {
        matches!(e, Error::NoSuchNamespace { .. })
    })?;
    expect_err(
        "queue_too_big",
        c.create_io_queue_pair(c.max_queue_entries() + 1).map(drop),
        |e| matches!(e, Error::InvalidArgument(_)),
    )?;
    let mut extra = Vec::new();
    let granted = c.io_queue_pairs_granted();
    let over = loop {
        match c.create_io_queue_pair(2) {
            Ok(q) => extra.push(q),
            Err(e) => break Err::<(), _>(e),
        }
        if extra.len() > usize::from(granted) + 1 {
            break Ok(());
        }
    };
    expect_err("queue_pairs_exhausted", over, |e| {
        matches!(e, Error::NoQueuePairs { .. })
    })?;
    println!("queue_pairs_created={}", extra.len() + 1);
    drop(extra);

    // The controller is still fine: a verified round trip at the last LBA.
    let mut w = c.alloc_buffer(ByteCount(bs))?;
    fill_pattern(&mut w, 99, ns.blocks() - 1, bs);
    qp.write(&ns, Lba(ns.blocks() - 1), w)?;
    let r = qp.read(&ns, Lba(ns.blocks() - 1), c.alloc_buffer(ByteCount(bs))?)?;
    check_pattern(&r, 99, ns.blocks() - 1, bs)?;
    println!("after_errors=ok");
    Ok(())
}

fn reopen(addr: &str, times: u32) -> Result<(), Failure> {
    for i in 0..times {
        let t = Instant::now();
        let c = open(addr)?;
        let ns = c.namespaces()[0].clone();
        let bs = ns.block_size() as usize;
        let mut qp = c.create_io_queue_pair(8)?;
        let n = (c.max_transfer_bytes() / bs).min(8);
        let lba = u64::from(i) * n as u64;
        let mut w = c.alloc_buffer(ByteCount(n * bs))?;
        fill_pattern(&mut w, 1000 + u64::from(i), lba, bs);
        qp.write(&ns, Lba(lba), w)?;
        let r = qp.read(&ns, Lba(lba), c.alloc_buffer(ByteCount(n * bs))?)?;
        check_pattern(&r, 1000 + u64::from(i), lba, bs)?;
        drop(qp);
        c.shutdown()?;
        println!("reopen.{i}=ok ms={}", t.elapsed().as_millis());
    }
    Ok(())
}

/// Blocks per writer thread in `reset-load`.
const RESET_LOAD_BLOCKS: u64 = 512;

/// A `reset-load` writer's result: (LBA, acknowledged value) of every
/// block it wrote, writes resubmitted after a reset, writes acknowledged.
type WriterResult = (Vec<(u64, u8)>, u64, u64);

fn reset_load(
    addr: &str,
    threads: usize,
    resets: u32,
    mode: &str,
    acked_file: &str,
) -> Result<(), Failure> {
    use nvme_core::CommandError;
    use std::sync::atomic::{AtomicBool, Ordering};
    if mode != "api" && mode != "sysfs" {
        return Err(format!("mode {mode}: api or sysfs").into());
    }
    let opts = ControllerOptions {
        io_timeout: Duration::from_secs(1),
        ..OPTIONS.get().cloned().unwrap_or_default()
    };
    let c = nvme_vfio::open_controller(addr, opts)?;
    let ns = c.namespace(1)?.clone();
    let bs = ns.block_size() as usize;
    let mut qps = Vec::new();
    for _ in 0..threads {
        qps.push(c.create_io_queue_pair(32)?);
    }
    let stop = AtomicBool::new(false);
    let t0 = Instant::now();
    let results = std::thread::scope(|sc| {
        let handles: Vec<_> = qps
            .into_iter()
            .enumerate()
            .map(|(k, mut qp)| {
                let (c, ns, stop) = (&c, &ns, &stop);
                sc.spawn(move || -> Result<WriterResult, String> {
                    let base = k as u64 * RESET_LOAD_BLOCKS;
                    let mut acked = vec![0u8; RESET_LOAD_BLOCKS as usize];
                    let mut in_flight = std::collections::HashMap::new();
                    let mut bufs = c
                        .alloc_buffers(16, ByteCount(bs))
                        .map_err(|e| e.to_string())?;
                    let (mut next, mut value, mut again, mut done) = (0u64, 1u8, 0u64, 0u64);
                    let deadline = Instant::now() + Duration::from_secs(300);
                    while !stop.load(Ordering::Relaxed) || !in_flight.is_empty() {
                        if Instant::now() > deadline {
                            return Err(format!(
                                "thread {k}: {} writes never completed",
                                in_flight.len()
                            ));
                        }
                        if !stop.load(Ordering::Relaxed) {
                            while let Some(mut b) = bufs.pop() {
                                let i = next % RESET_LOAD_BLOCKS;
                                if in_flight.contains_key(&i) {
                                    bufs.push(b);
                                    break;
                                }
                                next += 1;
                                if i == 0 {
                                    value = value % 250 + 1;
                                }
                                b.fill(value);
                                qp.submit_write(ns, Lba(base + i), b, i)
                                    .map_err(|r| r.error.to_string())?;
                                in_flight.insert(i, value);
                            }
                        }
                        let mut back = Vec::new();
                        qp.poll(16, |d| back.push(d));
                        for d in back {
                            match d.status {
                                Ok(()) => {
                                    acked[d.tag as usize] = in_flight.remove(&d.tag).unwrap_or(0);
                                    bufs.push(d.buf.ok_or("no buffer")?);
                                    done += 1;
                                }
                                Err(CommandError::ControllerReset) => {
                                    again += 1;
                                    qp.submit_write(
                                        ns,
                                        Lba(base + d.tag),
                                        d.buf.ok_or("no buffer")?,
                                        d.tag,
                                    )
                                    .map_err(|r| r.error.to_string())?;
                                }
                                // A reset behind our back: the expired write
                                // comes back once the driver resets.
                                Err(CommandError::TimedOut { .. }) => {}
                                Err(e) => return Err(format!("thread {k} tag {}: {e}", d.tag)),
                            }
                        }
                    }
                    let list = acked
                        .iter()
                        .enumerate()
                        .filter(|(_, v)| **v != 0)
                        .map(|(i, v)| (base + i as u64, *v))
                        .collect();
                    Ok((list, again, done))
                })
            })
            .collect();
        for r in 0..resets {
            std::thread::sleep(Duration::from_millis(700));
            let t = Instant::now();
            let before = c.resets();
            if mode == "api" {
                if let Err(e) = c.reset() {
                    stop.store(true, Ordering::Relaxed);
                    return Err(format!("reset {r}: {e}"));
                }
            } else {
                let path = format!("/sys/bus/pci/devices/{addr}/reset");
                if let Err(e) = std::fs::write(&path, "1") {
                    stop.store(true, Ordering::Relaxed);
                    return Err(format!("{path}: {e}"));
                }
                // The driver notices when commands pass their deadline.
                while c.resets() == before && t.elapsed() < Duration::from_secs(30) {
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            println!(
                "reset.{r}=ok resets={} ms={}",
                c.resets(),
                t.elapsed().as_millis()
            );
        }
        std::thread::sleep(Duration::from_millis(700));
        stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        let (mut again, mut done) = (0, 0);
        for h in handles {
            let (list, a, d) = h.join().map_err(|_| "thread panicked".to_string())??;
            all.extend(list);
            again += a;
            done += d;
        }
        Ok((all, again, done))
    });
    let (acked, again, done) = results?;
    let text: String = acked.iter().map(|(l, v)| format!("{l} {v}\n")).collect();
    std::fs::write(acked_file, text)?;
    println!(
        "reset_load=ok mode={mode} resets={} acked_blocks={} writes={done} resubmitted={again} ms={}",
        c.resets(),
        acked.len(),
        t0.elapsed().as_millis()
    );
    Ok(())
}

/// What one `unplug-load` thread saw.
#[derive(Default)]
struct UnplugStats {
    /// Blocks written, read back and verified before the removal.
    verified: u64,
    /// Commands in flight at the removal that came back `DeviceRemoved`.
    removed_completions: u64,
    /// Whether a later synchronous read failed with `Error::DeviceRemoved`
    /// and handed its buffer back.
    later_call_removed: bool,
}

type VQueuePair = nvme_core::IoQueuePair<VfioDevice>;

/// Write a pattern, read it back, verify; `depth` commands in flight on
/// disjoint LBAs of `range`, until the device goes (or `stop`).
fn unplug_worker(
    c: &Ctrl,
    mut qp: VQueuePair,
    ns: &Namespace,
    range: (u64, u64),
    depth: usize,
    seed: u64,
    stop: &std::sync::atomic::AtomicBool,
) -> Result<(VQueuePair, UnplugStats), String> {
    use nvme_core::CommandError;
    use std::sync::atomic::Ordering;
    let bs = ns.block_size() as usize;
    let per_slot = (range.1 - range.0) / depth as u64;
    let bufs = c
        .alloc_buffers(depth, ByteCount(4 * bs))
        .map_err(|e| e.to_string())?;
    let mut rng = Rng::new(seed);
    let mut state = vec![(0u64, 0u64, 0u8); depth]; // (lba, seed, phase)
    let mut free: Vec<(usize, nvme_core::DmaBuf<nvme_vfio::DmaBuffer>)> =
        bufs.into_iter().enumerate().collect();
    let mut st = UnplugStats::default();
    let (mut in_flight, mut removed, mut n) = (0usize, false, 0u64);
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        if Instant::now() > deadline {
            return Err(format!("{in_flight} commands never came back"));
        }
        let stopping = removed || stop.load(Ordering::Relaxed);
        if stopping && in_flight == 0 {
            break;
        }
        while !removed && !stop.load(Ordering::Relaxed) {
            let Some((i, mut buf)) = free.pop() else {
                break;
            };
            let blocks = rng.range(1, 5);
            let lba = range.0 + i as u64 * per_slot + rng.range(0, per_slot - blocks);
            let s = seed ^ (n << 20) ^ i as u64;
            n += 1;
            buf.set_window(0, blocks as usize * bs)
                .map_err(|e| e.to_string())?;
            fill_pattern(&mut buf, s, lba, bs);
            state[i] = (lba, s, 0);
            match qp.submit_write(ns, Lba(lba), buf, i as u64) {
                Ok(()) => in_flight += 1,
                Err(r) if matches!(r.error, Error::DeviceRemoved) => {
                    removed = true;
                    free.push((i, r.buf));
                }
                Err(r) => return Err(format!("submit: {}", r.error)),
            }
        }
        let mut back = Vec::new();
        qp.poll(64, |d| back.push(d));
        for d in back {
            in_flight -= 1;
            let i = d.tag as usize;
            let buf = d.buf.ok_or("a data command came back without its buffer")?;
            match d.status {
                Ok(()) => {}
                Err(CommandError::DeviceRemoved) => {
                    removed = true;
                    st.removed_completions += 1;
                    free.push((i, buf));
                    continue;
                }
                Err(e) => return Err(format!("slot {i}: {e}")),
            }
            let (lba, s, phase) = state[i];
            if phase == 1 {
                check_pattern(&buf, s, lba, bs)?;
                st.verified += (buf.len() / bs) as u64;
                free.push((i, buf));
            } else if removed || stop.load(Ordering::Relaxed) {
                free.push((i, buf));
            } else {
                state[i].2 = 1;
                match qp.submit_read(ns, Lba(lba), buf, i as u64) {
                    Ok(()) => in_flight += 1,
                    Err(r) if matches!(r.error, Error::DeviceRemoved) => {
                        removed = true;
                        free.push((i, r.buf));
                    }
                    Err(r) => return Err(format!("submit: {}", r.error)),
                }
            }
        }
        if in_flight > 0 && !removed {
            std::thread::yield_now();
        }
    }
    if removed {
        let (_, buf) = free.pop().ok_or("no buffer left")?;
        match qp.read(ns, Lba(range.0), buf) {
            Err(e) if matches!(e.error, Error::DeviceRemoved) && e.buf.is_some() => {
                st.later_call_removed = true;
            }
            Err(e) => {
                return Err(format!(
                    "read after removal: {} (buffer back: {})",
                    e.error,
                    e.buf.is_some()
                ))
            }
            Ok(_) => return Err("a read after the removal succeeded".into()),
        }
    }
    Ok((qp, st))
}

fn unplug_load(addr: &str, seconds: u64, linger: u64, threads: usize) -> Result<(), Failure> {
    use std::sync::atomic::{AtomicBool, Ordering};
    let c = open(addr)?;
    let info = c.platform_info();
    let (req, err) = info.removal_channels();
    println!("removal_channels request={req} error={err}");
    let ns = c.namespace(1)?.clone();
    let mut qps = Vec::new();
    for _ in 0..threads {
        qps.push(c.create_io_queue_pair(32)?);
    }
    let span = ns.blocks() / threads as u64;
    let stop = AtomicBool::new(false);
    let t0 = Instant::now();
    let _ = std::fs::write("/tmp/unplug.ready", "1");
    println!("unplug_load=running threads={threads}");
    let (results, noticed) = std::thread::scope(|sc| {
        let handles: Vec<_> = qps
            .into_iter()
            .enumerate()
            .map(|(k, qp)| {
                let (c, ns, stop) = (&c, &ns, &stop);
                let range = (k as u64 * span, (k as u64 + 1) * span);
                sc.spawn(move || unplug_worker(c, qp, ns, range, 8, 77 + k as u64, stop))
            })
            .collect();
        let mut noticed = None;
        while t0.elapsed() < Duration::from_secs(seconds) {
            if info.is_removed() {
                noticed = Some(Instant::now());
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        // The workers end by themselves when they see the removal (their
        // commands come back `DeviceRemoved`); `stop` is for no removal.
        if noticed.is_none() {
            stop.store(true, Ordering::Relaxed);
        }
        let r: Vec<_> = handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("thread panicked".into())))
            .collect();
        (r, noticed)
    });
    let Some(noticed) = noticed else {
        return Err(format!("no removal within {seconds} s").into());
    };
    let drained_ms = noticed.elapsed().as_millis();
    // Delay from the host's unplug request, when it left the time
    // (`/proc/uptime`, 10 ms resolution).
    let uptime = |s: &str| s.split_whitespace().next()?.parse::<f64>().ok();
    if let (Some(t0), Some(now)) = (
        std::fs::read_to_string("/tmp/unplug.t0")
            .ok()
            .and_then(|s| uptime(&s)),
        std::fs::read_to_string("/proc/uptime")
            .ok()
            .and_then(|s| uptime(&s)),
    ) {
        let at_notice = now - noticed.elapsed().as_secs_f64();
        println!(
            "noticed_after_request_ms={}",
            ((at_notice - t0) * 1000.0).max(0.0) as u64
        );
    }
    let mut qps = Vec::new();
    let (mut verified, mut removed_completions) = (0, 0);
    for (k, r) in results.into_iter().enumerate() {
        let (qp, st) = r.map_err(|e| format!("thread {k}: {e}"))?;
        println!(
            "thread{k}=ok verified_blocks={} in_flight_removed={} later_call_removed={}",
            st.verified, st.removed_completions, st.later_call_removed
        );
        if !st.later_call_removed {
            return Err(format!("thread {k}: a later call did not say DeviceRemoved").into());
        }
        verified += st.verified;
        removed_completions += st.removed_completions;
        qps.push(qp);
    }
    // Controller-level calls say so too.
    match c.smart_log() {
        Err(Error::DeviceRemoved) => {}
        other => return Err(format!("smart_log after removal: {other:?}").into()),
    }
    match c.create_io_queue_pair(8) {
        Err(Error::DeviceRemoved) => {}
        Err(e) => return Err(format!("create_io_queue_pair after removal: {e}").into()),
        Ok(_) => return Err("create_io_queue_pair after removal succeeded".into()),
    }
    println!(
        "removal=noticed ms_since_start={} drained_ms={drained_ms} verified_blocks={verified} in_flight_removed={removed_completions}",
        (noticed - t0).as_millis()
    );
    // Stay alive holding everything: the kernel's removal must complete now.
    let sysfs = format!("/sys/bus/pci/devices/{addr}");
    let mut gone_ms = None;
    while noticed.elapsed() < Duration::from_secs(linger) {
        if gone_ms.is_none() && !std::path::Path::new(&sysfs).exists() {
            gone_ms = Some(noticed.elapsed().as_millis());
            println!("sysfs_gone_after_notice_ms={}", gone_ms.unwrap_or(0));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let t = Instant::now();
    drop(qps);
    drop(c);
    println!(
        "unplug_load=ok sysfs_gone={} dropped_ms={}",
        gone_ms.is_some(),
        t.elapsed().as_millis()
    );
    eprintln!(
        "the device was removed while in use; every command was handed back; exiting cleanly"
    );
    Ok(())
}

fn events(addr: &str, seconds: u64, count: usize) -> Result<(), Failure> {
    use std::io::Write;
    let c = open(addr)?;
    println!("events=armed");
    std::io::stdout().flush()?;
    let t = Instant::now();
    let mut n = 0;
    while n < count && t.elapsed() < Duration::from_secs(seconds) {
        for ev in c.poll_events()? {
            n += 1;
            println!(
                "event.{n} kind={:?} info={} log_page={} critical_warning={} ms={}",
                ev.kind,
                ev.info,
                ev.log_page,
                ev.smart
                    .as_ref()
                    .map_or(-1, |s| i32::from(s.critical_warning)),
                t.elapsed().as_millis()
            );
            std::io::stdout().flush()?;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    println!("events=done count={n}");
    Ok(())
}

fn media_errors(addr: &str, lba: u64, blocks: u64, bad: &[u64]) -> Result<(), Failure> {
    use nvme_core::CommandError;
    let c = open(addr)?;
    let ns = c.namespace(1)?.clone();
    let bs = ns.block_size() as usize;
    let mut qp = c.create_io_queue_pair(32)?;
    let seed = 77;
    // Every good block gets the pattern (blkdebug may fail writes to the
    // bad sectors too, so they are left as they are).
    for l in (lba..lba + blocks).filter(|l| !bad.contains(l)) {
        let mut w = c.alloc_buffer(ByteCount(bs))?;
        fill_pattern(&mut w, seed, l, bs);
        qp.write(&ns, Lba(l), w).map_err(|e| e.error)?;
    }
    let mut bufs = c.alloc_buffers(16, ByteCount(bs))?;
    let (mut next, mut done, mut failed_ok, mut verified) = (lba, 0u64, 0u64, 0u64);
    let t = Instant::now();
    while done < blocks {
        if t.elapsed() > Duration::from_secs(120) {
            return Err("reads did not finish".into());
        }
        while next < lba + blocks {
            let Some(b) = bufs.pop() else { break };
            qp.submit_read(&ns, Lba(next), b, next)
                .map_err(|r| r.error)?;
            next += 1;
        }
        let mut back = Vec::new();
        qp.poll(16, |d| back.push(d));
        for d in back {
            let l = d.tag;
            let buf = d.buf.ok_or("no buffer")?;
            match (d.status, bad.contains(&l)) {
                (Ok(()), false) => {
                    check_pattern(&buf, seed, l, bs)?;
                    verified += 1;
                }
                (Err(CommandError::Device(st)), true) => {
                    println!("media_error lba={l} status={st}");
                    if st.name() != Some("Unrecovered Read Error") {
                        return Err(
                            format!("LBA {l}: {st}, expected Unrecovered Read Error").into()
                        );
                    }
                    failed_ok += 1;
                }
                (st, is_bad) => {
                    return Err(format!("LBA {l}: {st:?} (bad sector: {is_bad})").into());
                }
            }
            done += 1;
            bufs.push(buf);
        }
    }
    println!("media_errors=ok failed={failed_ok} verified={verified}");
    Ok(())
}

fn write_until_killed(addr: &str, blocks: u64, log: &str) -> Result<(), Failure> {
    use std::io::Write;
    let c = open(addr)?;
    let ns = c.namespace(1)?.clone();
    let bs = ns.block_size() as usize;
    let mut qp = c.create_io_queue_pair(32)?;
    let mut out = std::fs::File::create(log)?;
    let mut bufs = c.alloc_buffers(16, ByteCount(bs))?;
    let mut values = std::collections::HashMap::new();
    let (mut next, mut value) = (0u64, 1u8);
    println!("writing");
    loop {
        while let Some(mut b) = bufs.pop() {
            let lba = next % blocks;
            if values.contains_key(&lba) {
                bufs.push(b);
                break;
            }
            if lba == 0 {
                value = value % 250 + 1;
            }
            next += 1;
            b.fill(value);
            qp.submit_write(&ns, Lba(lba), b, lba)
                .map_err(|r| r.error)?;
            values.insert(lba, value);
        }
        let mut done = Vec::new();
        qp.poll(16, |d| done.push(d));
        for d in done {
            d.status.map_err(|e| format!("LBA {}: {e}", d.tag))?;
            let v = values.remove(&d.tag).unwrap_or(0);
            // Acknowledged: say so before anything else happens.
            writeln!(out, "{} {v}", d.tag)?;
            bufs.push(d.buf.ok_or("no buffer")?);
        }
    }
}

fn check_acked(file: &str, dev: &str, or_next: bool) -> Result<(), Failure> {
    use std::io::{Read, Seek, SeekFrom};
    let mut d = std::fs::File::open(dev)?;
    let text = std::fs::read_to_string(file)?;
    let mut n = 0;
    for line in text.lines() {
        let mut w = line.split_whitespace();
        let (Some(l), Some(v)) = (w.next(), w.next()) else {
            continue;
        };
        let (lba, v): (u64, u8) = (l.parse()?, v.parse()?);
        let mut block = vec![0u8; 512];
        d.seek(SeekFrom::Start(lba * 512))?;
        d.read_exact(&mut block)?;
        let next = v % 250 + 1;
        let ok = block.iter().all(|&b| b == v) || (or_next && block.iter().all(|&b| b == next));
        if !ok {
            return Err(format!(
                "LBA {lba}: acknowledged {v}, the kernel reads {:?}..",
                &block[..8]
            )
            .into());
        }
        n += 1;
    }
    println!("check_acked=ok blocks={n}");
    Ok(())
}

fn deadline(addr: &str, timeout_ms: u64, policy: &str) -> Result<(), Failure> {
    use nvme_core::{CommandError, TimeoutPolicy};
    let timeout = Duration::from_millis(timeout_ms);
    let timeout_policy = match policy {
        "report" => TimeoutPolicy::Report,
        "abort" => TimeoutPolicy::Abort,
        p => return Err(format!("policy {p}: report or abort").into()),
    };
    let opts = ControllerOptions {
        io_timeout: timeout,
        timeout_policy,
        ..OPTIONS.get().cloned().unwrap_or_default()
    };
    let c = nvme_vfio::open_controller(addr, opts)?;
    let ns = c.namespace(1)?.clone();
    let mut qp = c.create_io_queue_pair(16)?;
    // Poll API: the deadline is reported, then the late completion comes
    // with the buffer.
    let t = Instant::now();
    qp.submit_read(&ns, Lba(0), c.alloc_buffer(ByteCount(4096))?, 11)
        .map_err(|r| r.error)?;
    let mut got = Vec::new();
    while got.len() < 2 && t.elapsed() < 20 * timeout {
        qp.poll(4, |comp| got.push((comp, t.elapsed())));
    }
    let Some((notice, at)) = got.first() else {
        return Err("no completion at all".into());
    };
    println!(
        "poll.notice tag={} status={:?} buf={} ms={}",
        notice.tag,
        notice.status,
        notice.buf.is_some(),
        at.as_millis()
    );
    if let Some((late, at)) = got.get(1) {
        println!(
            "poll.late tag={} ok={} buf={} ms={}",
            late.tag,
            late.status.is_ok(),
            late.buf.is_some(),
            at.as_millis()
        );
    }
    if !matches!(notice.status, Err(CommandError::TimedOut { .. })) || got.len() != 2 {
        return Err(format!("expected a deadline notice then the late completion: {got:?}").into());
    }
    // The sync helper: IoTimeout, buffer kept, then reaped late.
    let t = Instant::now();
    let e = qp
        .read(&ns, Lba(8), c.alloc_buffer(ByteCount(4096))?)
        .expect_err("a read slower than the deadline");
    println!(
        "sync.error ms={} buf={} msg={}",
        t.elapsed().as_millis(),
        e.buf.is_some(),
        e.error
    );
    if !matches!(e.error, Error::IoTimeout { .. }) {
        return Err(format!("expected IoTimeout, got {}", e.error).into());
    }
    let mut late = None;
    while late.is_none() && t.elapsed() < 20 * timeout {
        qp.poll(4, |comp| late = Some(comp));
    }
    let late = late.ok_or("the timed-out sync read never completed")?;
    println!(
        "sync.late tag={} buf={} ms={}",
        late.tag,
        late.buf.is_some(),
        t.elapsed().as_millis()
    );
    // The controller was not given up on; with a longer deadline the pair
    // completes a read on this slow device.
    c.smart_log()?;
    qp.set_io_timeout(Some(timeout * 20));
    let t = Instant::now();
    let b = qp
        .read(&ns, Lba(16), c.alloc_buffer(ByteCount(4096))?)
        .map_err(|e| e.error)?;
    println!(
        "after.read=ok zeros={} ms={}",
        b.iter().all(|&x| x == 0),
        t.elapsed().as_millis()
    );
    println!("deadline=ok");
    Ok(())
}

/// Run futures round-robin on this thread until all are ready (the
/// adapter's futures poll the queue themselves), or fail after `limit`.
fn join_all<F: std::future::Future>(
    futs: Vec<F>,
    limit: Duration,
) -> Result<Vec<F::Output>, Failure> {
    use std::task::{Context, Poll, Waker};
    let mut futs: Vec<_> = futs.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = futs.iter().map(|_| None).collect();
    let mut cx = Context::from_waker(Waker::noop());
    let t = Instant::now();
    loop {
        let mut pending = 0;
        for (f, o) in futs.iter_mut().zip(out.iter_mut()) {
            if o.is_none() {
                match f.as_mut().poll(&mut cx) {
                    Poll::Ready(v) => *o = Some(v),
                    Poll::Pending => pending += 1,
                }
            }
        }
        if pending == 0 {
            return Ok(out.into_iter().flatten().collect());
        }
        if t.elapsed() > limit {
            return Err(format!("{pending} async commands not done after {limit:?}").into());
        }
    }
}

/// One round of [`requeue`]: a fresh pair of `entries`, verified
/// synchronous I/O (one block, then `split` bytes that exceed MDTS), then
/// verified async I/O of the same shapes, then drop. Prints its counters.
fn requeue_round(
    c: &Ctrl,
    ns: &Namespace,
    round: u32,
    entries: u32,
    base: u64,
    limit: Duration,
) -> Result<(), Failure> {
    use nvme_core::async_io::AsyncQueuePair;
    let bs = ns.block_size() as usize;
    let mut qp = c.create_io_queue_pair(entries)?;
    let qid = qp.qid();
    let in_cmb = qp.sq_in_cmb();
    // The most one request may carry on this pair: at most entries - 1
    // commands of MDTS each.
    let most = c.max_transfer_bytes() * (entries as usize - 1);
    let split = (2 * c.max_transfer_bytes() + bs).min(most) / bs * bs;
    let sizes = [bs, split];
    let mut lba = base;
    for (k, &len) in sizes.iter().enumerate() {
        let seed = 7000 + u64::from(round) * 10 + k as u64;
        let mut w = c.alloc_buffer(ByteCount(len))?;
        fill_pattern(&mut w, seed, lba, bs);
        qp.write(ns, Lba(lba), w).map_err(|e| e.error)?;
        let r = qp
            .read(ns, Lba(lba), c.alloc_buffer(ByteCount(len))?)
            .map_err(|e| e.error)?;
        check_pattern(&r, seed, lba, bs)?;
        lba += (len / bs) as u64;
    }
    let sync_cmds = qp.stats().commands;
    // Async: several writes in flight at once, then their read-backs.
    let aqp = AsyncQueuePair::new(qp);
    let n = 3usize;
    let mut shapes = Vec::new();
    let mut writes = Vec::new();
    for k in 0..n {
        let len = sizes[k % 2];
        let seed = 8000 + u64::from(round) * 10 + k as u64;
        let mut w = c.alloc_buffer(ByteCount(len))?;
        fill_pattern(&mut w, seed, lba, bs);
        shapes.push((lba, len, seed));
        writes.push(aqp.write(ns, Lba(lba), w));
        lba += (len / bs) as u64;
    }
    for r in join_all(writes, limit)? {
        r.map_err(|e| e.error)?;
    }
    let mut reads = Vec::new();
    for &(l, len, _) in &shapes {
        reads.push(aqp.read(ns, Lba(l), c.alloc_buffer(ByteCount(len))?));
    }
    for (r, &(l, _, seed)) in join_all(reads, limit)?.into_iter().zip(&shapes) {
        check_pattern(&r.map_err(|e| e.error)?, seed, l, bs)?;
    }
    let qp = aqp.into_inner();
    let st = qp.stats();
    if qp.outstanding() != 0 {
        return Err(format!("round {round}: {} commands outstanding", qp.outstanding()).into());
    }
    println!(
        "requeue.round{round}=ok qid={qid} entries={entries} split_bytes={split} sync_commands={sync_cmds} \
         commands={} sq_updates={} sq_mmio={} sq_in_cmb={in_cmb}",
        st.commands, st.sq_doorbell.updates, st.sq_doorbell.mmio_writes
    );
    Ok(())
}

fn requeue(addr: &str, rounds: u32, busy: bool, io_timeout: u64) -> Result<(), Failure> {
    let limit = Duration::from_secs(io_timeout);
    let opts = ControllerOptions {
        io_timeout: limit,
        ..OPTIONS.get().cloned().unwrap_or_default()
    };
    let c = nvme_vfio::open_controller(addr, opts)?;
    let ns = c.namespace(1)?.clone();
    println!("shadow_doorbells={}", c.shadow_doorbells());
    // The first pair's five writes leave its SQ tail (and the controller's
    // EventIdx) at 1 after a wrap: the reproduction.
    let mut first = c.create_io_queue_pair(4)?;
    for i in 0..5u64 {
        let w = c.alloc_buffer(ByteCount(4096))?;
        first.write(&ns, Lba(i * 8), w).map_err(|e| e.error)?;
    }
    drop(first);
    let half = ns.blocks() / 2;
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|sc| -> Result<(), Failure> {
        let bg = if busy {
            let qp = c.create_io_queue_pair(64)?;
            let (c, ns, stop) = (&c, &ns, &stop);
            Some(sc.spawn(move || busy_worker(c, qp, ns, (half, ns.blocks()), stop)))
        } else {
            None
        };
        let sizes = [16u32, 4, 64, 8, 32, 6];
        let mut r = Ok(());
        for round in 0..rounds {
            let entries = sizes[round as usize % sizes.len()];
            let base = 1024 + u64::from(round) * 2048;
            r = requeue_round(&c, &ns, round, entries, base, limit);
            if r.is_err() {
                break;
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(h) = bg {
            let ops = h.join().map_err(|_| "busy thread panicked")??;
            println!("requeue.busy=ok ops={ops}");
        }
        r
    })?;
    println!("requeue=ok rounds={rounds}");
    Ok(())
}

/// Verified write/read-back pairs at depth 8 on its own pair until `stop`.
fn busy_worker(
    c: &Ctrl,
    mut qp: nvme_core::IoQueuePair<VfioDevice>,
    ns: &Namespace,
    range: (u64, u64),
    stop: &std::sync::atomic::AtomicBool,
) -> Result<u64, String> {
    let bs = ns.block_size() as usize;
    let depth = 8usize;
    let mut free = c
        .alloc_buffers(depth, ByteCount(2 * bs))
        .map_err(|e| e.to_string())?
        .into_iter()
        .enumerate()
        .collect::<Vec<_>>();
    let mut phase = [0u8; 8];
    let mut seeds = [0u64; 8];
    let (mut ops, mut n) = (0u64, 0u64);
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        if stop.load(std::sync::atomic::Ordering::Relaxed) && free.len() == depth {
            return Ok(ops);
        }
        if Instant::now() > deadline {
            return Err("busy pair made no progress to the end".into());
        }
        if !stop.load(std::sync::atomic::Ordering::Relaxed) {
            while let Some((i, mut b)) = free.pop() {
                n += 1;
                seeds[i] = 9000 + n;
                let lba = range.0 + i as u64 * 2;
                fill_pattern(&mut b, seeds[i], lba, bs);
                phase[i] = 0;
                qp.submit_write(ns, Lba(lba), b, i as u64)
                    .map_err(|r| r.error.to_string())?;
            }
        }
        let mut back = Vec::new();
        let mut failed = None;
        qp.poll(16, |comp| match comp.status {
            Ok(()) => back.push((comp.tag as usize, comp.buf.expect("data buffer"))),
            Err(st) => failed = Some(st.to_string()),
        });
        if let Some(f) = failed {
            return Err(f);
        }
        for (i, b) in back {
            let lba = range.0 + i as u64 * 2;
            if phase[i] == 0 {
                phase[i] = 1;
                qp.submit_read(ns, Lba(lba), b, i as u64)
                    .map_err(|r| r.error.to_string())?;
            } else {
                check_pattern(&b, seeds[i], lba, bs)?;
                ops += 1;
                free.push((i, b));
            }
        }
    }
}

/// One thread's share: a queue pair, `depth` commands in flight, each a
/// write of a fresh pattern followed (after it completes) by a read-back.
fn thread_worker(
    c: &Ctrl,
    mut qp: nvme_core::IoQueuePair<VfioDevice>,
    ns: &Namespace,
    range: (u64, u64),
    ops: u32,
    depth: usize,
    seed: u64,
) -> Result<nvme_core::QueueStats, String> {
    let bs = ns.block_size() as usize;
    let max_blocks = ((c.max_transfer_bytes() * 3) / bs).max(1) as u64; // includes split requests
    let slots = depth.min(usize::from(qp.entries()) - 1);
    // Each in-flight slot owns a disjoint sub-range so concurrent commands
    // never overlap; buffers come from one slab and cycle.
    let per_slot = (range.1 - range.0) / slots as u64;
    let bufs = c
        .alloc_buffers(slots, ByteCount(max_blocks as usize * bs))
        .map_err(|e| e.to_string())?;
    let mut rng = Rng::new(seed);
    // state per slot: (lba, blocks, seed, phase 0=writing 1=reading)
    let mut state = vec![(0u64, 0u64, 0u64, 0u8); slots];
    let mut free: Vec<(usize, nvme_core::DmaBuf<nvme_vfio::DmaBuffer>)> =
        bufs.into_iter().enumerate().collect();
    let mut done = 0u32;
    let mut started = 0u32;
    let mut failure: Option<String> = None;
    while done < ops && failure.is_none() {
        while started < ops {
            let Some((i, mut buf)) = free.pop() else {
                break;
            };
            let blocks = rng.range(1, max_blocks.min(per_slot));
            let lba = range.0 + i as u64 * per_slot + rng.range(0, per_slot - blocks);
            let s = seed ^ (u64::from(started) << 20) ^ i as u64;
            buf.set_window(0, blocks as usize * bs)
                .map_err(|e| e.to_string())?;
            fill_pattern(&mut buf, s, lba, bs);
            state[i] = (lba, blocks, s, 0);
            qp.submit_write(ns, Lba(lba), buf, i as u64)
                .map_err(|r| r.error.to_string())?;
            started += 1;
        }
        let mut resubmit = Vec::new();
        qp.poll(64, |comp| {
            let i = comp.tag as usize;
            let buf = comp.buf.expect("data commands return their buffer");
            if let Err(st) = comp.status {
                failure.get_or_insert(format!("slot {i}: {st}"));
                return;
            }
            resubmit.push((i, buf));
        });
        for (i, buf) in resubmit {
            let (lba, _blocks, s, phase) = state[i];
            if phase == 0 {
                state[i].3 = 1;
                qp.submit_read(ns, Lba(lba), buf, i as u64)
                    .map_err(|r| r.error.to_string())?;
            } else {
                check_pattern(&buf, s, lba, bs)?;
                done += 1;
                free.push((i, buf));
            }
        }
    }
    if let Some(f) = failure {
        return Err(f);
    }
    Ok(qp.stats())
}

fn threads_io(
    addr: &str,
    threads: usize,
    ops: u32,
    depth: usize,
    nsid: u32,
    seed: u64,
) -> Result<(), Failure> {
    let c = open(addr)?;
    let ns = c.namespace(nsid)?.clone();
    // Create every queue pair here, then move each into its own thread.
    let mut qps = Vec::new();
    for _ in 0..threads {
        qps.push(c.create_io_queue_pair(64)?);
    }
    println!("queue_pairs={}", qps.len());
    let span = ns.blocks() / threads as u64;
    let t = Instant::now();
    let results: Vec<Result<nvme_core::QueueStats, String>> = std::thread::scope(|sc| {
        let handles: Vec<_> = qps
            .into_iter()
            .enumerate()
            .map(|(k, qp)| {
                let (c, ns) = (&c, &ns);
                let range = (k as u64 * span, (k as u64 + 1) * span);
                sc.spawn(move || thread_worker(c, qp, ns, range, ops, depth, seed + k as u64))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("thread panicked".into())))
            .collect()
    });
    let mut total = nvme_core::QueueStats::default();
    for (k, r) in results.into_iter().enumerate() {
        let st = r.map_err(|e| format!("thread {k}: {e}"))?;
        println!(
            "thread{k}=ok commands={} completions={}",
            st.commands, st.completions
        );
        total.commands += st.commands;
        total.sq_doorbell.updates += st.sq_doorbell.updates;
        total.sq_doorbell.mmio_writes += st.sq_doorbell.mmio_writes;
        total.cq_doorbell.updates += st.cq_doorbell.updates;
        total.cq_doorbell.mmio_writes += st.cq_doorbell.mmio_writes;
    }
    println!("shadow_doorbells={}", c.shadow_doorbells());
    println!(
        "doorbells sq_updates={} sq_mmio={} cq_updates={} cq_mmio={}",
        total.sq_doorbell.updates,
        total.sq_doorbell.mmio_writes,
        total.cq_doorbell.updates,
        total.cq_doorbell.mmio_writes
    );
    println!(
        "threads=ok n={threads} ops_each={ops} commands={} ms={}",
        total.commands,
        t.elapsed().as_millis()
    );
    Ok(())
}

fn commands(addr: &str, nsid: u32, base: u64) -> Result<(), Failure> {
    let c = open(addr)?;
    let ns = c.namespace(nsid)?.clone();
    let bs = ns.block_size() as usize;
    let n = 16usize;
    let mut qp = c.create_io_queue_pair(32)?;
    let pattern =
        |seed: u64, lba: u64| -> Result<nvme_core::DmaBuf<nvme_vfio::DmaBuffer>, Failure> {
            let mut b = c.alloc_buffer(ByteCount(n * bs))?;
            fill_pattern(&mut b, seed, lba, bs);
            Ok(b)
        };

    // Write Zeroes: pattern, then zeroes, then the blocks read back as zeros.
    let l1 = base;
    qp.write(&ns, Lba(l1), pattern(11, l1)?)?;
    qp.write_zeroes(&ns, Lba(l1), n as u32)?;
    let r = qp.read(&ns, Lba(l1), c.alloc_buffer(ByteCount(n * bs))?)?;
    if r.iter().any(|&b| b != 0) {
        return Err("write zeroes: blocks do not read back as zeros".into());
    }
    println!("write_zeroes=ok lba={l1} blocks={n}");

    // Deallocate: what it reads back as is DLFEAT bits 2:0 (1: zeros, 2: ones, 0: not said).
    let l2 = base + n as u64;
    qp.write(&ns, Lba(l2), pattern(12, l2)?)?;
    qp.deallocate(&ns, &[(Lba(l2), n as u32)])?;
    let r = qp.read(&ns, Lba(l2), c.alloc_buffer(ByteCount(n * bs))?)?;
    let dlfeat = ns.identify().dlfeat & 0x7;
    let ok = match dlfeat {
        1 => r.iter().all(|&b| b == 0),
        2 => r.iter().all(|&b| b == 0xff),
        _ => true,
    };
    if !ok {
        return Err(format!("deallocate: DLFEAT {dlfeat} not honoured").into());
    }
    println!(
        "deallocate=ok dlfeat={dlfeat} zeros={}",
        r.iter().all(|&b| b == 0)
    );

    // Compare: the same data matches; one flipped byte is a Compare Failure.
    let l3 = base + 2 * n as u64;
    qp.write(&ns, Lba(l3), pattern(13, l3)?)?;
    qp.compare(&ns, Lba(l3), pattern(13, l3)?)?;
    println!("compare_match=ok");
    let mut bad = pattern(13, l3)?;
    bad[bs + 7] ^= 0x40;
    match qp.compare(&ns, Lba(l3), bad) {
        Ok(_) => return Err("compare of altered data succeeded".into()),
        Err(e) => {
            let st = e
                .error
                .nvme_status()
                .ok_or_else(|| format!("compare: not an NVMe status: {}", e.error))?;
            if st.name() != Some("Compare Failure") {
                return Err(format!("compare: wrong status {st}").into());
            }
            println!("compare_mismatch={}", e.error);
        }
    }

    // FUA write (the host test reads it back through the kernel).
    let l4 = base + 3 * n as u64;
    qp.write_fua(&ns, Lba(l4), pattern(14, l4)?)?;
    println!("fua_write=ok lba={l4} blocks={n} seed=14");

    // Doorbell batching: 8 submissions, one SQ doorbell update.
    qp.set_doorbell_batching(true);
    let before = qp.stats();
    let bufs = c.alloc_buffers(8, ByteCount(bs))?;
    for (i, b) in bufs.into_iter().enumerate() {
        qp.submit_read(&ns, Lba(l1 + i as u64), b, i as u64)
            .map_err(|r| r.error)?;
    }
    let mid = qp.stats();
    let mut got = 0;
    while got < 8 {
        qp.poll(8, |comp| {
            if comp.status.is_ok() {
                got += 1;
            }
        });
    }
    let after = qp.stats();
    println!(
        "batching=ok updates_before_poll={} updates_after_poll={} commands={}",
        mid.sq_doorbell.updates - before.sq_doorbell.updates,
        after.sq_doorbell.updates - before.sq_doorbell.updates,
        after.commands - before.commands
    );
    Ok(())
}

fn iops(addr: &str, qd: usize, seconds: u64, span: u64) -> Result<(), Failure> {
    let c = open(addr)?;
    let ns = c.namespaces()[0].clone();
    let bs = ns.block_size() as usize;
    let io = 4096usize.max(bs);
    let per_io = (io / bs) as u64;
    let blocks = (span / ns.block_size()).min(ns.blocks()) / per_io * per_io;
    let mut qp = c.create_io_queue_pair((qd as u32 + 1).max(2))?;
    // Prefill with the pattern (seed 31), in MDTS-sized writes.
    let chunk = (c.max_transfer_bytes() / bs) as u64;
    let mut lba = 0;
    while lba < blocks {
        let n = chunk.min(blocks - lba);
        let mut b = c.alloc_buffer(ByteCount(n as usize * bs))?;
        fill_pattern(&mut b, 31, lba, bs);
        qp.write(&ns, Lba(lba), b)?;
        lba += n;
    }
    let mut rng = Rng::new(9);
    let slots = blocks / per_io;
    let mut lbas = vec![0u64; qd];
    let bufs = c.alloc_buffers(qd, ByteCount(io))?;
    let start = Instant::now();
    let deadline = std::time::Duration::from_secs(seconds);
    let mut done = 0u64;
    let mut ready: Vec<(usize, nvme_core::DmaBuf<nvme_vfio::DmaBuffer>)> =
        bufs.into_iter().enumerate().collect();
    let mut failure: Option<String> = None;
    loop {
        let stop = start.elapsed() >= deadline;
        if !stop {
            while let Some((i, b)) = ready.pop() {
                lbas[i] = rng.range(0, slots - 1) * per_io;
                qp.submit_read(&ns, Lba(lbas[i]), b, i as u64)
                    .map_err(|r| r.error)?;
            }
        }
        qp.poll(qd, |comp| {
            let i = comp.tag as usize;
            let b = comp.buf.expect("reads return their buffer");
            if let Err(st) = comp.status {
                failure.get_or_insert(st.to_string());
            } else if let Err(e) = check_pattern(&b, 31, lbas[i], bs) {
                failure.get_or_insert(e);
            }
            done += 1;
            ready.push((i, b));
        });
        if let Some(f) = failure {
            return Err(f.into());
        }
        if stop && qp.outstanding() == 0 {
            break;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let st = qp.stats();
    println!(
        "iops={:.0} qd={qd} reads={done} verified=yes sq_in_cmb={} seconds={secs:.2} \
         sq_doorbell_mmio={} cq_doorbell_updates={} cq_doorbell_mmio={}",
        done as f64 / secs,
        qp.sq_in_cmb(),
        st.sq_doorbell.mmio_writes,
        st.cq_doorbell.updates,
        st.cq_doorbell.mmio_writes,
    );
    Ok(())
}

/// Buffers with the given (offset, len) windows.
fn segments(
    c: &Ctrl,
    shape: &[(usize, usize)],
) -> Result<Vec<nvme_core::DmaBuf<nvme_vfio::DmaBuffer>>, Failure> {
    shape
        .iter()
        .map(|&(off, len)| {
            let mut b = c.alloc_buffer(ByteCount(off + len))?;
            b.set_window(off, len)?;
            Ok(b)
        })
        .collect()
}

fn run_vec(
    qp: &mut nvme_core::IoQueuePair<VfioDevice>,
    write: bool,
    ns: &Namespace,
    lba: u64,
    bufs: Vec<nvme_core::DmaBuf<nvme_vfio::DmaBuffer>>,
) -> Result<Vec<nvme_core::DmaBuf<nvme_vfio::DmaBuffer>>, Error> {
    let r = if write {
        qp.submit_writev(ns, Lba(lba), bufs, 1)
    } else {
        qp.submit_readv(ns, Lba(lba), bufs, 1)
    };
    r.map_err(|r| r.error)?;
    let mut out = None;
    while out.is_none() {
        qp.poll(1, |c| out = Some(c));
    }
    let c = out.expect("one completion");
    match c.status {
        Ok(()) => {}
        Err(nvme_core::CommandError::Device(status)) => {
            return Err(Error::Command {
                command: "vectored",
                status,
            })
        }
        Err(e) => return Err(Error::InvalidArgument(format!("vectored: {e}"))),
    }
    Ok(c.bufs.expect("vectored completions carry their buffers"))
}

fn vectored(addr: &str, lba: u64) -> Result<(), Failure> {
    let c = open(addr)?;
    let ns = c.namespaces()[0].clone();
    let bs = ns.block_size() as usize;
    let mut qp = c.create_io_queue_pair(8)?;
    println!(
        "sgls={}",
        c.identify().sgls.supported() && c.options().use_sgls
    );
    // Odd sizes and offsets: only SGLs can describe these.
    let odd = [(0, bs * 2 - 24), (8, 24), (1028, bs * 3), (4092, bs)];
    // Page-aligned where they meet: PRPs can describe these too.
    let tail = match (1024 + 4096) % bs {
        0 => bs,
        r => bs - r,
    };
    let aligned = [(3072, 1024), (0, 4096), (0, tail)];
    for (name, shape) in [("odd", &odd[..]), ("aligned", &aligned[..])] {
        let total: usize = shape.iter().map(|s| s.1).sum();
        let blocks = (total / bs) as u64;
        let seed = 500 + shape.len() as u64;
        let mut expect = vec![0u8; total];
        fill_pattern(&mut expect, seed, lba, bs);
        let mut bufs = segments(&c, shape)?;
        let mut off = 0;
        for b in bufs.iter_mut() {
            let n = b.len();
            b.copy_from_slice(&expect[off..off + n]);
            off += n;
        }
        match run_vec(&mut qp, true, &ns, lba, bufs) {
            Ok(_) => {}
            Err(e @ Error::Unsupported(_)) => {
                println!("vectored.{name}=unsupported: {e}");
                continue;
            }
            Err(e) => return Err(e.into()),
        }
        // A plain read sees the blocks in order...
        let r = qp.read(&ns, Lba(lba), c.alloc_buffer(ByteCount(total))?)?;
        check_pattern(&r, seed, lba, bs).map_err(|e| format!("{name} writev: {e}"))?;
        // ...and a vectored read into other odd windows gets them back.
        let back = run_vec(&mut qp, false, &ns, lba, segments(&c, shape)?)?;
        let joined: Vec<u8> = back.iter().flat_map(|b| b.iter().copied()).collect();
        check_pattern(&joined, seed, lba, bs).map_err(|e| format!("{name} readv: {e}"))?;
        println!(
            "vectored.{name}=ok segments={} blocks={blocks}",
            shape.len()
        );
    }
    Ok(())
}
