//! Runs inside the QEMU guest: opens a controller with nvme-vfio, maps a
//! device-memory window (the whole CMB BAR), and prints the mapping report
//! and the live PAT entries of every range as `key=value` lines, for
//! `tests/tests/write_combining.rs`. Exits 1 on an inconsistency (a record
//! that disagrees with PAT, a register page that is not uncached, a window
//! whose type differs from its record), 2 when the device cannot be opened.

#![deny(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use nvme_core::{DeviceMemory, Hardware, MemoryType};
use nvme_vfio::{OpenOptions, PatEntry, PatList, PciAddress, RangePurpose};

const PAT_LIST: &str = "/sys/kernel/debug/x86/pat_memtype_list";

#[derive(Parser)]
#[command(about = "Guest-side write-combining checks for nvme-vfio")]
struct Cli {
    /// PCI address of the controller (bound to vfio-pci).
    addr: String,
    /// BAR to map as device memory (all of it); skipped when the BAR is empty.
    #[arg(long, default_value_t = 2)]
    bar: u8,
    /// Map this BAR through vfio before the WC plan runs (negative test).
    #[arg(long)]
    touch_bar_first: Option<u8>,
}

fn pat_entries() -> Option<PatList> {
    std::fs::read_to_string(PAT_LIST)
        .ok()
        .map(|t| PatList::parse(&t))
}

/// Comma-joined PAT types over `[start, end)`, `none` if no entry, `-` if no list.
fn pat_kinds(pat: &Option<PatList>, start: u64, end: u64) -> (String, Vec<PatEntry>) {
    match pat {
        None => ("-".into(), Vec::new()),
        Some(e) => {
            let hits = e.overlapping(start, end);
            let mut k: Vec<String> = hits.iter().map(|h| h.kind.clone()).collect();
            k.dedup();
            if k.is_empty() {
                ("none".into(), hits)
            } else {
                (k.join(","), hits)
            }
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let addr = match PciAddress::parse(&cli.addr) {
        Ok(a) => a,
        Err(e) => {
            println!("open=error {e}");
            return ExitCode::from(2);
        }
    };
    let mut opts = OpenOptions::new();
    if let Some(b) = cli.touch_bar_first {
        opts.touch_bar_first(b);
    }
    let dev = match opts.open(addr) {
        Ok(d) => d,
        Err(e) => {
            println!("open=error {e}");
            return ExitCode::from(2);
        }
    };
    let mut bad: Vec<String> = Vec::new();
    println!("open=ok");
    println!("vendor={:#06x}", dev.vendor_id());
    println!("device={:#06x}", dev.device_id());
    println!("max_device_store={}", dev.max_device_store());
    println!("vfio_wc={:?}", dev.vfio_wc_support());
    for b in 0..6u8 {
        if let Ok(a) = dev.bar_address(b) {
            println!("bar{b}.address={a:#x}");
        }
    }
    println!("dma={}", dev.dma_summary());

    // The device-memory window, mapped while the PAT list is read below.
    let sizes = dev.bar_sizes();
    let size = sizes.get(cli.bar as usize).copied().unwrap_or(0);
    let window = if size > 0 {
        match dev.map_device_memory(cli.bar, 0, size) {
            Ok(w) => Some(w),
            Err(e) => {
                bad.push(format!("map_device_memory(BAR{}): {e}", cli.bar));
                None
            }
        }
    } else {
        println!("devmem=none");
        None
    };
    if let Some(w) = &window {
        println!("devmem.bar={}", cli.bar);
        println!("devmem.len={:#x}", w.len());
        println!("devmem.type={:?}", w.memory_type());
        // 8-byte stores (QEMU's limit), a fence, read back.
        let mut ok = true;
        for i in 0..64usize {
            let v = 0x5a5a_0000_0000_0000u64 | i as u64;
            ok &= w.write64(i * 8, v);
        }
        nvme_core::wc_flush();
        for i in 0..64usize {
            ok &= w.read64(i * 8) == Some(0x5a5a_0000_0000_0000u64 | i as u64);
        }
        println!("devmem.roundtrip={}", if ok { "ok" } else { "mismatch" });
        if !ok {
            bad.push("device-memory round trip mismatch".into());
        }
    }

    let pat = pat_entries();
    println!(
        "pat_list={}",
        if pat.is_some() {
            "readable"
        } else {
            "unreadable"
        }
    );
    let mut pat_lines: Vec<PatEntry> = Vec::new();
    for (i, m) in dev.mappings().iter().enumerate() {
        println!("mapping.{i}={m}");
        println!("mapping.{i}.bar={}", m.bar);
        println!("mapping.{i}.offset={:#x}", m.offset);
        println!("mapping.{i}.len={:#x}", m.len);
        println!("mapping.{i}.purpose={}", m.purpose);
        println!("mapping.{i}.requested={:?}", m.requested);
        println!("mapping.{i}.obtained={:?}", m.obtained);
        println!(
            "mapping.{i}.verified={}",
            m.verified.map_or("none".to_string(), |v| format!("{v:?}"))
        );
        println!("mapping.{i}.route={}", m.route);
        println!("mapping.{i}.note={}", m.note);
        let live = dev
            .bar_resource(m.bar)
            .map(|r| pat_kinds(&pat, r.start + m.offset, r.start + m.offset + m.len));
        if let Some((kinds, hits)) = live {
            println!("mapping.{i}.pat={kinds}");
            for h in hits {
                if !pat_lines.contains(&h) {
                    pat_lines.push(h);
                }
            }
            // Consistency: a mapped range's obtained type matches live PAT.
            if m.route != nvme_vfio::MappingRoute::VfioRegionRw && pat.is_some() {
                let want = match m.obtained {
                    MemoryType::WriteCombining => "write-combining",
                    _ => "uncached-minus",
                };
                if kinds != want {
                    bad.push(format!(
                        "mapping.{i}: obtained {:?} but PAT says {kinds}",
                        m.obtained
                    ));
                }
            }
        }
        if m.mismatch() {
            bad.push(format!(
                "mapping.{i}: verified type differs from obtained: {m}"
            ));
        }
        if m.purpose == RangePurpose::Registers && m.obtained != MemoryType::Uncached {
            bad.push(format!("mapping.{i}: register page is not uncached: {m}"));
        }
        if m.bar == cli.bar && m.purpose == RangePurpose::DeviceMemory {
            if let Some(w) = &window {
                if w.memory_type() != m.obtained {
                    bad.push(format!(
                        "window type {:?} differs from its record {m}",
                        w.memory_type()
                    ));
                }
            }
        }
    }
    for l in &pat_lines {
        println!("pat.line={l}");
    }
    drop(window);
    if bad.is_empty() {
        println!("check=ok");
        ExitCode::SUCCESS
    } else {
        for b in &bad {
            println!("check.error={b}");
        }
        println!("check=failed");
        ExitCode::from(1)
    }
}
