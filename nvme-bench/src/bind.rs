//! `bind` / `unbind`: move a PCI NVMe function between the kernel nvme
//! driver and vfio-pci (like SPDK's setup.sh), refusing a function that is
//! not an NVMe controller (PCI class 0x010802; `--force-class` overrides)
//! and one whose block devices, whatever driver made them, hold a mounted
//! filesystem, swap, a dm/md/LVM holder or another user.

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

/// Where the checks look: `/sys`, `/proc` and `/dev` (unit tests use fakes).
#[derive(Clone, Debug)]
struct Roots {
    sys: PathBuf,
    proc: PathBuf,
    dev: PathBuf,
}

impl Default for Roots {
    fn default() -> Self {
        Roots {
            sys: "/sys".into(),
            proc: "/proc".into(),
            dev: "/dev".into(),
        }
    }
}

/// A sysfs hex attribute such as `0x010802`.
fn read_hex(p: &Path) -> Option<u32> {
    let s = std::fs::read_to_string(p).ok()?;
    let s = s.trim();
    u32::from_str_radix(s.strip_prefix("0x").unwrap_or(s), 16).ok()
}

/// PCI class code of an NVMe controller (mass storage / NVM / NVMe).
const NVME_CLASS: u32 = 0x01_08_02;

/// Why `bind`/`unbind` refused to touch a device.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// The function's PCI class is not NVMe.
    #[error("{}", not_nvme(.bdf, *.class, *.vendor, *.device, .driver.as_deref()))]
    NotNvme {
        /// The function.
        bdf: String,
        /// Its class code (`None`: no readable sysfs `class`).
        class: Option<u32>,
        /// Vendor id.
        vendor: Option<u32>,
        /// Device id.
        device: Option<u32>,
        /// Its current driver.
        driver: Option<String>,
    },
    /// Block devices of the function are in use.
    #[error("{}", in_use_msg(.bdf, .driver.as_deref(), .users))]
    InUse {
        /// The function.
        bdf: String,
        /// Its current driver.
        driver: Option<String>,
        /// Each user: (block device, what holds it).
        users: Vec<(String, String)>,
    },
}

impl From<BindError> for Error {
    fn from(e: BindError) -> Self {
        Error::msg(e.to_string())
    }
}

fn not_nvme(
    bdf: &str,
    class: Option<u32>,
    vendor: Option<u32>,
    device: Option<u32>,
    driver: Option<&str>,
) -> String {
    let what = match class {
        Some(c) => match nvme_vfio::VfioError::pci_class_name(c) {
            Some(n) => format!("PCI class {c:#08x} ({n})"),
            None => format!("PCI class {c:#08x}"),
        },
        None => "of unknown PCI class (no readable sysfs class file)".into(),
    };
    let ids = match (vendor, device) {
        (Some(v), Some(d)) => format!(" [{v:04x}:{d:04x}]"),
        _ => String::new(),
    };
    let drv = driver.map_or_else(|| "no driver".to_string(), |d| format!("driver {d}"));
    format!(
        "refusing to bind {bdf}{ids} ({drv}): it is {what}, not an NVMe controller (PCI class 0x010802). \
         nvme-bench only binds NVMe controllers; taking this function from its driver would pull its disks from \
         under the kernel. Check the address (`lspci -D -d ::0108` lists NVMe controllers). If it really is an \
         NVMe controller that reports another class, pass --force-class."
    )
}

fn in_use_msg(bdf: &str, driver: Option<&str>, users: &[(String, String)]) -> String {
    let mut s = format!(
        "refusing to unbind {bdf} from {}: its block devices are in use:",
        driver.unwrap_or("its driver")
    );
    for (d, why) in users {
        s.push_str(&format!("\n    {d}: {why}"));
    }
    s.push_str(
        "\nUnmount the filesystems, swapoff, stop the device-mapper/md/LVM users and programs \
         first (--force takes it anyway: the kernel loses the disk under its users, with data loss).",
    );
    s
}

/// A block device (disk or partition) that belongs to the function.
#[derive(Clone, Debug, PartialEq, Eq)]
struct BlockDev {
    /// Kernel name, e.g. `nvme0n1`, `vda1`, `sda`.
    name: String,
    /// `MAJ:MIN` from sysfs `dev` (hidden NVMe path devices have none).
    devnum: Option<String>,
    /// Its sysfs directory.
    sys: PathBuf,
}

fn is_block_dir(p: &Path) -> bool {
    std::fs::read_link(p.join("subsystem"))
        .ok()
        .is_some_and(|t| t.file_name().is_some_and(|n| n == "block"))
}

fn block_dev(p: &Path) -> Option<BlockDev> {
    if !is_block_dir(p) {
        return None;
    }
    Some(BlockDev {
        name: p.file_name()?.to_string_lossy().into_owned(),
        devnum: std::fs::read_to_string(p.join("dev"))
            .ok()
            .map(|s| s.trim().to_string()),
        sys: p.to_path_buf(),
    })
}

/// Every block device in the subtree at `dir` (real directories only, so
/// the `driver`, `subsystem`, `iommu_group`... links are not followed).
fn walk_blocks(dir: &Path, depth: usize, out: &mut Vec<BlockDev>, nvme_ctrls: &mut Vec<String>) {
    if depth > 16 {
        return;
    }
    let Ok(ents) = std::fs::read_dir(dir) else {
        return;
    };
    for e in ents.flatten() {
        if !e.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let p = e.path();
        if let Some(b) = block_dev(&p) {
            out.push(b);
        }
        if dir.file_name().is_some_and(|n| n == "nvme") {
            nvme_ctrls.push(e.file_name().to_string_lossy().into_owned());
        }
        walk_blocks(&p, depth + 1, out, nvme_ctrls);
    }
}

/// Every block device that belongs to the PCI function at `dev`, whatever
/// its driver: the disks and partitions in its sysfs subtree (NVMe
/// namespaces under `nvme/nvmeX/`, virtio-blk's `virtioN/block/vdX`,
/// SCSI/ATA `hostN/.../block/sdX`), plus the NVMe multipath heads
/// (`nvme-subsystem/*/nvmeXnY`) of its NVMe controllers.
fn block_devices(roots: &Roots, dev: &Path) -> Vec<BlockDev> {
    let mut out = Vec::new();
    let mut ctrls = Vec::new();
    walk_blocks(dev, 0, &mut out, &mut ctrls);
    if !ctrls.is_empty() {
        if let Ok(subs) = std::fs::read_dir(roots.sys.join("class/nvme-subsystem")) {
            for sub in subs.flatten() {
                let sp = sub.path();
                if !ctrls.iter().any(|c| sp.join(c).exists()) {
                    continue;
                }
                let Ok(ents) = std::fs::read_dir(&sp) else {
                    continue;
                };
                for e in ents.flatten() {
                    let p = e.path();
                    if let Some(b) = block_dev(&p) {
                        out.push(b);
                        walk_blocks(&p, 0, &mut out, &mut Vec::new());
                    }
                }
            }
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out.dedup_by(|a, b| a.name == b.name);
    out
}

/// Whether `/dev/<name>` can be opened exclusively (`O_EXCL` on a block
/// device): `Some(false)` when EBUSY (mounted, swap, md/dm, or a program
/// holds it exclusively), `None` when there is no such block node.
fn can_open_exclusively(roots: &Roots, b: &BlockDev) -> Option<bool> {
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let node = roots.dev.join(&b.name);
    if !std::fs::metadata(&node).is_ok_and(|m| m.file_type().is_block_device()) {
        return None;
    }
    match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_EXCL | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(&node)
    {
        Ok(_) => Some(true),
        Err(e) if e.raw_os_error() == Some(libc::EBUSY) => Some(false),
        Err(_) => None,
    }
}

/// Who uses `devs`: mounts (`mountinfo` by MAJ:MIN or source device),
/// swap, holders (dm, md, LVM), processes with the node open, exclusive
/// openers. One entry per (device, reason); empty when none.
fn users(roots: &Roots, devs: &[BlockDev]) -> Vec<(String, String)> {
    let mountinfo = std::fs::read_to_string(roots.proc.join("self/mountinfo")).unwrap_or_default();
    let swaps = std::fs::read_to_string(roots.proc.join("swaps")).unwrap_or_default();
    let fds = open_fds(roots);
    let mut out = Vec::new();
    for b in devs {
        let node = format!("/dev/{}", b.name);
        let before = out.len();
        for l in mountinfo.lines() {
            let f: Vec<&str> = l.split_whitespace().collect();
            let Some(sep) = f.iter().position(|x| *x == "-") else {
                continue;
            };
            let (Some(num), Some(at)) = (f.get(2), f.get(4)) else {
                continue;
            };
            let fstype = f.get(sep + 1).copied().unwrap_or("?");
            let source = f.get(sep + 2).copied().unwrap_or("");
            if b.devnum.as_deref() == Some(*num) || source == node {
                out.push((node.clone(), format!("mounted on {at} ({fstype})")));
            }
        }
        if swaps
            .lines()
            .any(|l| l.split_whitespace().next() == Some(node.as_str()))
        {
            out.push((node.clone(), "in use as swap".into()));
        }
        if let Ok(h) = std::fs::read_dir(b.sys.join("holders")) {
            let mut names: Vec<String> = h
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            if !names.is_empty() {
                out.push((
                    node.clone(),
                    format!(
                        "held by {} (device-mapper, md, LVM or similar)",
                        names.join(", ")
                    ),
                ));
            }
        }
        for (pid, comm) in fds
            .iter()
            .filter(|(_, _, t)| *t == node)
            .map(|(p, c, _)| (p, c))
        {
            out.push((node.clone(), format!("open by process {pid} ({comm})")));
        }
        if out.len() == before && can_open_exclusively(roots, b) == Some(false) {
            out.push((node.clone(), "open exclusively by another user".into()));
        }
    }
    out.dedup();
    out
}

/// (pid, comm, target) of every open file of other processes under `/dev`.
fn open_fds(roots: &Roots) -> Vec<(u32, String, String)> {
    let me = std::process::id();
    let mut out = Vec::new();
    let Ok(procs) = std::fs::read_dir(&roots.proc) else {
        return out;
    };
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else {
            continue;
        };
        let comm = std::fs::read_to_string(p.path().join("comm"))
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        for fd in fds.flatten() {
            if let Ok(t) = std::fs::read_link(fd.path()) {
                let t = t.to_string_lossy().into_owned();
                if t.starts_with("/dev/") {
                    out.push((pid, comm.clone(), t));
                }
            }
        }
    }
    out
}

/// Refuses a function whose PCI class is not NVMe unless `force_class`.
fn check_class(bdf: &str, dev: &Path, force_class: bool) -> std::result::Result<(), BindError> {
    let class = read_hex(&dev.join("class"));
    if class == Some(NVME_CLASS) || force_class {
        return Ok(());
    }
    Err(BindError::NotNvme {
        bdf: bdf.to_string(),
        class,
        vendor: read_hex(&dev.join("vendor")),
        device: read_hex(&dev.join("device")),
        driver: driver(dev),
    })
}

/// Refuses when any block device of the function is in use.
fn check_unused(roots: &Roots, bdf: &str, dev: &Path) -> std::result::Result<(), BindError> {
    let devs = block_devices(roots, dev);
    let users = users(roots, &devs);
    if users.is_empty() {
        return Ok(());
    }
    Err(BindError::InUse {
        bdf: bdf.to_string(),
        driver: driver(dev),
        users,
    })
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

/// nvme → vfio-pci. Refuses a function whose PCI class is not NVMe unless
/// `force_class`, and (unless `force`) one whose block devices, whatever
/// their driver, are mounted, swap, held by dm/md/LVM or open.
pub fn bind(addr: &str, force: bool, force_class: bool) -> Result<()> {
    let roots = Roots::default();
    let bdf = norm(addr)?;
    let dev = dev_dir(&bdf)?;
    check_class(&bdf, &dev, force_class)?;
    let cur = driver(&dev);
    if cur.as_deref() == Some("vfio-pci") {
        println!("{bdf}: already bound to vfio-pci");
        return Ok(());
    }
    if let Err(e) = check_unused(&roots, &bdf, &dev) {
        if !force {
            return Err(e.into());
        }
        eprintln!("nvme-bench: --force: {e}");
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
/// Refuses a function whose PCI class is not NVMe (binding the kernel nvme
/// driver by driver_override would probe it as NVMe, after taking it from
/// its own driver), and one whose block devices are in use.
pub fn unbind(addr: &str) -> Result<()> {
    let roots = Roots::default();
    let bdf = norm(addr)?;
    let dev = dev_dir(&bdf)?;
    let cur = driver(&dev);
    if cur.as_deref() != Some("nvme") {
        check_class(&bdf, &dev, false)?;
        check_unused(&roots, &bdf, &dev)?;
        if !Path::new("/sys/bus/pci/drivers/nvme").exists() {
            let _ = std::process::Command::new("modprobe").arg("nvme").status();
        }
        probe(&bdf, &dev, "nvme")?;
    }
    let t = Instant::now();
    loop {
        let devs: Vec<String> = block_devices(&roots, &dev)
            .into_iter()
            .map(|b| b.name)
            .filter(|d| roots.dev.join(d).exists())
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

    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;

    /// A fake /sys, /proc and /dev under a temporary directory.
    struct Fake {
        top: PathBuf,
        roots: Roots,
    }

    impl Fake {
        fn new(tag: &str) -> Fake {
            let top = std::env::temp_dir().join(format!("bind-test-{tag}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&top);
            let roots = Roots {
                sys: top.join("sys"),
                proc: top.join("proc"),
                dev: top.join("dev"),
            };
            for d in [&roots.sys, &roots.dev, &roots.proc.join("self")] {
                fs::create_dir_all(d).unwrap();
            }
            fs::create_dir_all(roots.sys.join("class/block")).unwrap();
            fs::write(roots.proc.join("self/mountinfo"), "").unwrap();
            fs::write(
                roots.proc.join("swaps"),
                "Filename Type Size Used Priority\n",
            )
            .unwrap();
            Fake { top, roots }
        }
        /// A PCI function directory with a class.
        fn pci(&self, rel: &str, class: Option<u32>) -> PathBuf {
            let d = self.roots.sys.join("devices").join(rel);
            fs::create_dir_all(&d).unwrap();
            if let Some(c) = class {
                fs::write(d.join("class"), format!("{c:#08x}\n")).unwrap();
            }
            fs::write(d.join("vendor"), "0x1af4\n").unwrap();
            fs::write(d.join("device"), "0x1042\n").unwrap();
            d
        }
        /// A block device directory (`subsystem` -> class/block, `dev`, `holders/`).
        fn block(&self, dir: &Path, devnum: &str) {
            fs::create_dir_all(dir.join("holders")).unwrap();
            symlink(self.roots.sys.join("class/block"), dir.join("subsystem")).unwrap();
            fs::write(dir.join("dev"), format!("{devnum}\n")).unwrap();
        }
        fn mountinfo(&self, text: &str) {
            fs::write(self.roots.proc.join("self/mountinfo"), text).unwrap();
        }
    }

    impl Drop for Fake {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.top);
        }
    }

    fn names(v: &[BlockDev]) -> Vec<&str> {
        v.iter().map(|b| b.name.as_str()).collect()
    }

    #[test]
    fn finds_block_devices_of_any_driver() {
        let f = Fake::new("walk");
        // virtio-blk: <fn>/virtio2/block/vda/vda1
        let v = f.pci("pci0000:00/0000:00:12.0/0000:03:00.0", Some(0x010000));
        let vda = v.join("virtio2/block/vda");
        f.block(&vda, "254:0");
        f.block(&vda.join("vda1"), "254:1");
        // Links are not followed (driver -> somewhere with block devices).
        let other = f.roots.sys.join("devices/virtual/block/loop0");
        f.block(&other, "7:0");
        symlink(f.roots.sys.join("devices/virtual"), v.join("driver")).unwrap();
        assert_eq!(names(&block_devices(&f.roots, &v)), ["vda", "vda1"]);

        // SCSI/ATA behind a host adapter: <fn>/ata1/host0/target0:0:0/0:0:0:0/block/sda
        let a = f.pci("pci0000:00/0000:00:13.0/0000:04:00.0", Some(0x010601));
        let sda = a.join("ata1/host0/target0:0:0/0:0:0:0/block/sda");
        f.block(&sda, "8:0");
        f.block(&sda.join("sda2"), "8:2");
        assert_eq!(names(&block_devices(&f.roots, &a)), ["sda", "sda2"]);

        // NVMe: <fn>/nvme/nvme0/nvme0n1 (+p1), and a multipath head in the
        // subsystem that contains nvme0 (and one that does not).
        let n = f.pci("pci0000:00/0000:00:10.0/0000:01:00.0", Some(NVME_CLASS));
        let ctrl = n.join("nvme/nvme0");
        f.block(&ctrl.join("nvme0c0n2"), "259:9");
        f.block(&ctrl.join("nvme0n1"), "259:0");
        f.block(&ctrl.join("nvme0n1/nvme0n1p1"), "259:1");
        let subs = f.roots.sys.join("devices/virtual/nvme-subsystem");
        fs::create_dir_all(subs.join("nvme-subsys0")).unwrap();
        symlink(&ctrl, subs.join("nvme-subsys0/nvme0")).unwrap();
        f.block(&subs.join("nvme-subsys0/nvme0n2"), "259:3");
        f.block(&subs.join("nvme-subsys0/nvme0n2/nvme0n2p1"), "259:4");
        fs::create_dir_all(subs.join("nvme-subsys1")).unwrap();
        f.block(&subs.join("nvme-subsys1/nvme1n1"), "259:5");
        fs::create_dir_all(f.roots.sys.join("class")).unwrap();
        symlink(&subs, f.roots.sys.join("class/nvme-subsystem")).unwrap();
        assert_eq!(
            names(&block_devices(&f.roots, &n)),
            ["nvme0c0n2", "nvme0n1", "nvme0n1p1", "nvme0n2", "nvme0n2p1"]
        );
    }

    #[test]
    fn users_are_mounts_swap_holders() {
        let f = Fake::new("users");
        let v = f.pci("0000:03:00.0", Some(0x010000));
        let vda = v.join("virtio2/block/vda");
        f.block(&vda, "254:0");
        f.block(&vda.join("vda1"), "254:1");
        f.block(&vda.join("vda2"), "254:2");
        f.block(&vda.join("vda3"), "254:3");
        let devs = block_devices(&f.roots, &v);
        assert!(users(&f.roots, &devs).is_empty());
        assert!(check_unused(&f.roots, "0000:03:00.0", &v).is_ok());

        // vda1 mounted (by MAJ:MIN), vda2 swap, vda3 held by dm-0; a btrfs
        // mount with an anonymous device number, by source name.
        f.mountinfo(
            "22 1 0:21 / /proc rw - proc proc rw\n\
             40 1 254:1 / /mnt/data rw,relatime - ext4 /dev/vda1 rw\n\
             41 1 0:45 / /mnt/b rw - btrfs /dev/vda rw\n",
        );
        fs::write(
            f.roots.proc.join("swaps"),
            "Filename Type Size Used Priority\n/dev/vda2 partition 1024 0 -2\n",
        )
        .unwrap();
        fs::create_dir_all(vda.join("vda3/holders/dm-0")).unwrap();
        let e = check_unused(&f.roots, "0000:03:00.0", &v).unwrap_err();
        match &e {
            BindError::InUse { users, .. } => assert_eq!(
                users,
                &[
                    (
                        "/dev/vda".to_string(),
                        "mounted on /mnt/b (btrfs)".to_string()
                    ),
                    (
                        "/dev/vda1".to_string(),
                        "mounted on /mnt/data (ext4)".to_string()
                    ),
                    ("/dev/vda2".to_string(), "in use as swap".to_string()),
                    (
                        "/dev/vda3".to_string(),
                        "held by dm-0 (device-mapper, md, LVM or similar)".to_string()
                    ),
                ]
            ),
            other => panic!("{other:?}"),
        }
        let m = e.to_string();
        assert!(m.contains("refusing to unbind 0000:03:00.0"), "{m}");
        assert!(m.contains("/dev/vda1: mounted on /mnt/data (ext4)"), "{m}");
        assert!(m.contains("Unmount"), "{m}");
    }

    #[test]
    fn class_check() {
        let f = Fake::new("class");
        let a = f.pci("0000:04:00.0", Some(0x010601));
        let e = check_class("0000:04:00.0", &a, false).unwrap_err();
        assert!(matches!(
            e,
            BindError::NotNvme {
                class: Some(0x010601),
                ..
            }
        ));
        let m = e.to_string();
        assert!(
            m.contains(
                "PCI class 0x010601 (SATA AHCI), not an NVMe controller (PCI class 0x010802)"
            ),
            "{m}"
        );
        assert!(m.contains("[1af4:1042] (no driver)"), "{m}");
        assert!(m.contains("--force-class"), "{m}");
        assert!(check_class("0000:04:00.0", &a, true).is_ok());
        let none = f.pci("0000:05:00.0", None);
        let m = check_class("0000:05:00.0", &none, false)
            .unwrap_err()
            .to_string();
        assert!(m.contains("unknown PCI class"), "{m}");
        let n = f.pci("0000:01:00.0", Some(NVME_CLASS));
        assert!(check_class("0000:01:00.0", &n, false).is_ok());
    }
}
