//! `bind` / `unbind`: move a PCI NVMe function between the kernel nvme
//! driver and vfio-pci (like SPDK's setup.sh), refusing to take a device
//! whose namespaces hold a mounted filesystem, swap or another user.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

fn norm(addr: &str) -> Result<String> {
    let a = addr.trim();
    let full = if a.len() == 7 {
        format!("0000:{a}")
    } else {
        a.to_string()
    };
    let ok = full.len() == 12
        && full.as_bytes()[4] == b':'
        && full.as_bytes()[7] == b':'
        && full.as_bytes()[10] == b'.'
        && full
            .chars()
            .enumerate()
            .all(|(i, c)| matches!(i, 4 | 7 | 10) || c.is_ascii_hexdigit());
    if !ok {
        return Err(Error::msg(format!(
            "'{addr}' is not a PCI address (DDDD:BB:DD.F, e.g. 0000:01:00.0)"
        )));
    }
    Ok(full.to_ascii_lowercase())
}

fn dev_dir(bdf: &str) -> Result<PathBuf> {
    let d = Path::new("/sys/bus/pci/devices").join(bdf);
    if !d.exists() {
        return Err(Error::msg(format!("no PCI device {bdf}")));
    }
    Ok(d)
}

fn driver(dev: &Path) -> Option<String> {
    std::fs::read_link(dev.join("driver"))
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
}

fn write(p: impl AsRef<Path>, v: &str) -> Result<()> {
    let p = p.as_ref();
    std::fs::write(p, v)
        .map_err(|e| Error::msg(format!("write '{}' to {}: {e}", v.trim(), p.display())))
}

/// Block devices (namespaces and their partitions) of the controller at `dev`.
fn block_devices(dev: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(ctrls) = std::fs::read_dir(dev.join("nvme")) else {
        return out;
    };
    for c in ctrls.flatten() {
        let cname = c.file_name().to_string_lossy().into_owned();
        let Ok(ents) = std::fs::read_dir(Path::new("/sys/class/nvme").join(&cname)) else {
            continue;
        };
        for e in ents.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.starts_with("nvme") && n.contains('n') && n != cname {
                out.push(n.clone());
                if let Ok(parts) = std::fs::read_dir(Path::new("/sys/block").join(&n)) {
                    for p in parts.flatten() {
                        let pn = p.file_name().to_string_lossy().into_owned();
                        if pn.starts_with(&n) && pn.contains('p') {
                            out.push(pn);
                        }
                    }
                }
            }
        }
    }
    // Multipath heads (nvmeXcYnZ paths show as nvmeXnZ) are covered by name.
    out.sort();
    out.dedup();
    out
}

/// Why the device must not be taken from the kernel, if anything.
fn in_use(devs: &[String]) -> Option<String> {
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let swaps = std::fs::read_to_string("/proc/swaps").unwrap_or_default();
    for d in devs {
        let node = format!("/dev/{d}");
        for l in mounts.lines() {
            let mut f = l.split_whitespace();
            if f.next() == Some(node.as_str()) {
                let at = f.next().unwrap_or("?");
                return Some(format!("{node} is mounted on {at}"));
            }
        }
        if swaps
            .lines()
            .any(|l| l.split_whitespace().next() == Some(node.as_str()))
        {
            return Some(format!("{node} is in use as swap"));
        }
        let holders = Path::new("/sys/class/block").join(d).join("holders");
        if let Ok(mut h) = std::fs::read_dir(&holders) {
            if let Some(Ok(x)) = h.next() {
                return Some(format!(
                    "{node} is held by {} (device-mapper, md or similar)",
                    x.file_name().to_string_lossy()
                ));
            }
        }
    }
    None
}

fn probe(bdf: &str, dev: &Path, to: &str) -> Result<()> {
    if let Some(cur) = driver(dev) {
        if cur == to {
            return Ok(());
        }
        write(dev.join("driver/unbind"), bdf)?;
    }
    write(dev.join("driver_override"), to)?;
    write("/sys/bus/pci/drivers_probe", bdf)?;
    match driver(dev) {
        Some(d) if d == to => Ok(()),
        d => Err(Error::msg(format!(
            "{bdf} did not bind to {to} (driver now: {})",
            d.unwrap_or_else(|| "none".into())
        ))),
    }
}

/// nvme → vfio-pci.
pub fn bind(addr: &str, force: bool) -> Result<()> {
    let bdf = norm(addr)?;
    let dev = dev_dir(&bdf)?;
    let cur = driver(&dev);
    if cur.as_deref() == Some("vfio-pci") {
        println!("{bdf}: already bound to vfio-pci");
        return Ok(());
    }
    let devs = block_devices(&dev);
    if let Some(why) = in_use(&devs) {
        if !force {
            return Err(Error::msg(format!(
                "refusing to unbind {bdf} from {}: {why}. Unmount it first.",
                cur.as_deref().unwrap_or("its driver")
            )));
        }
    }
    if !Path::new("/sys/bus/pci/drivers/vfio-pci").exists() {
        let _ = std::process::Command::new("modprobe")
            .arg("vfio-pci")
            .status();
        if !Path::new("/sys/bus/pci/drivers/vfio-pci").exists() {
            let _ = std::process::Command::new("/bin/load-vfio").status();
        }
        if !Path::new("/sys/bus/pci/drivers/vfio-pci").exists() {
            return Err(Error::msg(
                "the vfio-pci driver is not available (modprobe vfio-pci)",
            ));
        }
    }
    let group = std::fs::read_link(dev.join("iommu_group"))
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .ok_or_else(|| {
            Error::msg(format!(
                "{bdf} has no IOMMU group (boot with intel_iommu=on / amd_iommu=on)"
            ))
        })?;
    probe(&bdf, &dev, "vfio-pci")?;
    let node = Path::new("/dev/vfio").join(&group);
    let t = Instant::now();
    while !node.exists() {
        if t.elapsed() > Duration::from_secs(5) {
            return Err(Error::msg(format!("{} did not appear", node.display())));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    println!(
        "{bdf}: {} -> vfio-pci, IOMMU group {group} ({})",
        cur.as_deref().unwrap_or("no driver"),
        node.display()
    );
    Ok(())
}

/// vfio-pci (or none) → nvme; waits for the namespaces' block devices.
pub fn unbind(addr: &str) -> Result<()> {
    let bdf = norm(addr)?;
    let dev = dev_dir(&bdf)?;
    let cur = driver(&dev);
    if cur.as_deref() != Some("nvme") {
        if !Path::new("/sys/bus/pci/drivers/nvme").exists() {
            let _ = std::process::Command::new("modprobe").arg("nvme").status();
        }
        probe(&bdf, &dev, "nvme")?;
    }
    let t = Instant::now();
    loop {
        let devs: Vec<String> = block_devices(&dev)
            .into_iter()
            .filter(|d| Path::new("/dev").join(d).exists())
            .collect();
        if !devs.is_empty() {
            println!(
                "{bdf}: {} -> nvme, block devices: {}",
                cur.as_deref().unwrap_or("no driver"),
                devs.iter()
                    .map(|d| format!("/dev/{d}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            );
            return Ok(());
        }
        if t.elapsed() > Duration::from_secs(20) {
            return Err(Error::msg(format!(
                "{bdf} is bound to nvme but no namespace block device appeared in 20 s"
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn addresses() {
        assert_eq!(super::norm("01:00.0").unwrap(), "0000:01:00.0");
        assert_eq!(super::norm("0000:AF:00.1").unwrap(), "0000:af:00.1");
        assert!(super::norm("/dev/nvme0").is_err());
        assert!(super::norm("0000:01:00").is_err());
    }
}
