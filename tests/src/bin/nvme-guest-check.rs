//! Runs inside the QEMU guest: drives the emulated controller through our
//! driver and prints what it found, one `key=value` per line, for the host
//! side of the tests to assert on. Exits non-zero on any failed check.

use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand};
use nvme_core::{Controller, ControllerOptions, Error, Namespace};
use nvme_tests::{check_pattern, fill_pattern, Rng};
use nvme_vfio::VfioHw;

#[derive(Parser)]
#[command(about = "Guest-side checks for the userspace NVMe driver")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

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

type Ctrl = Controller<VfioHw>;
type Failure = Box<dyn std::error::Error>;

fn open(addr: &str) -> Result<Ctrl, Failure> {
    Ok(nvme_vfio::open_controller(
        addr,
        ControllerOptions::default(),
    )?)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
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
        Cmd::Reopen { addr, times } => reopen(&addr, times),
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
        println!("ns{}.blocks={}", ns.nsid, ns.blocks);
        println!("ns{}.block_size={}", ns.nsid, ns.block_size);
        println!("ns{}.bytes={}", ns.nsid, ns.size_bytes());
    }
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
    let bs = ns.block_size as usize;
    let chunk_blocks = (c.max_transfer_bytes() / bs) as u64;
    let mut lba = r.lba;
    let end = r.lba + r.blocks;
    let start = Instant::now();
    while lba < end {
        let n = chunk_blocks.min(end - lba);
        let mut buf = c.alloc_buffer(n as usize * bs)?;
        if write {
            fill_pattern(&mut buf, r.seed, lba, bs);
            qp.write(&ns, lba, buf)?;
        } else {
            let buf = qp.read(&ns, lba, buf)?;
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
        let bs = ns.block_size as usize;
        let max_blocks = (max / bs) as u64;
        // The first ops pin the edges: one block, the largest transfer, and
        // a buffer starting mid-page so the PRP offset and list are exercised.
        let blocks = match op {
            0 => 1,
            1 => max_blocks,
            _ => rng.range(1, max_blocks),
        };
        let len = blocks as usize * bs;
        let lba = rng.range(0, ns.blocks - blocks);
        let woff = match op {
            0 | 1 => 0,
            2 => 4096 - 4,
            _ => (rng.range(0, 1023) * 4) as usize,
        };
        let roff = (rng.range(0, 1023) * 4) as usize;
        let seed_op = seed.wrapping_mul(1_000_003).wrapping_add(u64::from(op));

        let mut wbuf = c.alloc_buffer(woff + len)?;
        wbuf.set_window(woff, len)?;
        fill_pattern(&mut wbuf, seed_op, lba, bs);
        let pages = (woff % 4096 + len).div_ceil(4096);
        if pages > 1 {
            multi_page += 1;
        }
        if pages > 2 {
            prp_list += 1;
        }
        qp.write(ns, lba, wbuf)?;
        let mut rbuf = c.alloc_buffer(roff + len)?;
        rbuf.set_window(roff, len)?;
        let rbuf = qp.read(ns, lba, rbuf)?;
        check_pattern(&rbuf, seed_op, lba, bs).map_err(|e| {
            format!(
                "op {op} (ns {}, lba {lba}, {blocks} blocks, offsets w{woff}/r{roff}): {e}",
                ns.nsid
            )
        })?;
        bytes += 2 * len as u64;
    }
    // One large buffer (hugepage-backed when the guest has hugepages): a
    // largest-size transfer from its far end, verified.
    let ns = &c.namespaces()[0];
    let bs = ns.block_size as usize;
    let len = (max / bs) * bs;
    let mut big = c.alloc_buffer(4 << 20)?;
    let off = (4 << 20) - len - 4096 + 8;
    big.set_window(off, len)?;
    fill_pattern(&mut big, seed ^ 0xb16, 0, bs);
    let hugepage_regions = c.hardware().dma_stats().hugepage_regions;
    let big = qp.write(ns, 0, big)?;
    let mut back = c.alloc_buffer(len)?;
    back.as_mut_slice().fill(0xa5);
    let back = qp.read(ns, 0, back)?;
    check_pattern(&back, seed ^ 0xb16, 0, bs).map_err(|e| format!("large buffer: {e}"))?;
    drop(big);
    println!("hugepage_regions={hugepage_regions}");
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
    let bs = ns.block_size as usize;
    let mut qp = c.create_io_queue_pair(16)?;

    let buf = c.alloc_buffer(bs)?;
    let r = qp.read(&ns, ns.blocks, buf).map_err(|e| e.error);
    expect_err("lba_past_end", r, |e| {
        matches!(e, Error::LbaOutOfRange { .. })
    })?;

    let buf = c.alloc_buffer(2 * bs)?;
    let r = qp.write(&ns, ns.blocks - 1, buf).map_err(|e| e.error);
    expect_err("range_crossing_end", r, |e| {
        matches!(e, Error::LbaOutOfRange { .. })
    })?;

    let buf = c.alloc_buffer(bs + 4)?;
    let r = qp.read(&ns, 0, buf).map_err(|e| e.error);
    expect_err("partial_block", r, |e| {
        matches!(e, Error::UnalignedLength { .. })
    })?;

    // More than one queue's worth of MDTS-sized commands: refused.
    let per_queue = c.max_transfer_bytes() * (usize::from(qp.entries()) - 1);
    let buf = c.alloc_buffer(per_queue + bs)?;
    let r = qp.read(&ns, 0, buf).map_err(|e| e.error);
    expect_err("over_queue_capacity", r, |e| {
        matches!(e, Error::TooLarge { .. })
    })?;

    // Over MDTS: split into several commands that complete as one, verified.
    let len = 3 * c.max_transfer_bytes() + bs;
    let before = qp.stats().commands;
    let mut w = c.alloc_buffer(len)?;
    fill_pattern(&mut w, 77, 8, bs);
    qp.write(&ns, 8, w)?;
    let r = qp.read(&ns, 8, c.alloc_buffer(len)?)?;
    check_pattern(&r, 77, 8, bs).map_err(|e| format!("split transfer: {e}"))?;
    println!("split_commands={}", qp.stats().commands - before);

    let mut buf = c.alloc_buffer(2 * bs)?;
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
    let mut w = c.alloc_buffer(bs)?;
    fill_pattern(&mut w, 99, ns.blocks - 1, bs);
    qp.write(&ns, ns.blocks - 1, w)?;
    let r = qp.read(&ns, ns.blocks - 1, c.alloc_buffer(bs)?)?;
    check_pattern(&r, 99, ns.blocks - 1, bs)?;
    println!("after_errors=ok");
    Ok(())
}

fn reopen(addr: &str, times: u32) -> Result<(), Failure> {
    for i in 0..times {
        let t = Instant::now();
        let c = open(addr)?;
        let ns = c.namespaces()[0].clone();
        let bs = ns.block_size as usize;
        let mut qp = c.create_io_queue_pair(8)?;
        let n = (c.max_transfer_bytes() / bs).min(8);
        let lba = u64::from(i) * n as u64;
        let mut w = c.alloc_buffer(n * bs)?;
        fill_pattern(&mut w, 1000 + u64::from(i), lba, bs);
        qp.write(&ns, lba, w)?;
        let r = qp.read(&ns, lba, c.alloc_buffer(n * bs)?)?;
        check_pattern(&r, 1000 + u64::from(i), lba, bs)?;
        drop(qp);
        c.shutdown()?;
        println!("reopen.{i}=ok ms={}", t.elapsed().as_millis());
    }
    Ok(())
}
