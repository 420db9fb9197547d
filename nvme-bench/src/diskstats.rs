//! fio's "Disk stats" section: for every kernel block device the run's
//! jobs read or wrote (a block device named as the filename, or the disk
//! holding a regular file), the change of `/sys/block/<dev>/stat` over the
//! run, formatted as fio formats it (`ios=`, `merge=`, `ticks=`,
//! `in_queue=`, `util=`) and as fio's JSON `disk_util` entries.

use std::fmt::Write as _;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::time::Instant;

use serde_json::{json, Value};

use crate::options::{EngineKind, Job};

/// `major:minor` of a Linux `dev_t` (glibc's encoding).
fn major_minor(dev: u64) -> (u64, u64) {
    let major = ((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0xfff);
    let minor = ((dev >> 12) & 0xffff_ff00) | (dev & 0xff);
    (major, minor)
}

/// The whole-disk name (`nvme0n1`, `vda`) holding `filename`, if it is on a
/// kernel block device.
fn disk_of(filename: &str) -> Option<String> {
    let md = std::fs::metadata(filename).ok()?;
    let dev = if md.file_type().is_block_device() {
        md.rdev()
    } else if md.is_file() {
        md.dev()
    } else {
        return None;
    };
    let (ma, mi) = major_minor(dev);
    let sys = std::fs::canonicalize(format!("/sys/dev/block/{ma}:{mi}")).ok()?;
    // A partition's statistics are also its disk's: report the disk.
    let disk = if sys.join("partition").exists() {
        sys.parent()?.to_path_buf()
    } else {
        sys
    };
    let name = disk.file_name()?.to_str()?.to_string();
    Path::new(&format!("/sys/block/{name}/stat"))
        .exists()
        .then_some(name)
}

fn read_stat(name: &str) -> Option<[u64; 11]> {
    let s = std::fs::read_to_string(format!("/sys/block/{name}/stat")).ok()?;
    let v: Vec<u64> = s
        .split_whitespace()
        .take(11)
        .map(|w| w.parse().unwrap_or(0))
        .collect();
    v.try_into().ok()
}

/// Counters of the run's disks at its start.
pub struct DiskSnapshot {
    start: Instant,
    disks: Vec<(String, [u64; 11])>,
}

/// One disk's change over the run (summed over the job groups that used it).
#[derive(Clone, Debug, Default)]
pub struct DiskUtil {
    pub name: String,
    pub ios: [u64; 2],
    pub merges: [u64; 2],
    pub ticks: [u64; 2],
    pub in_queue: u64,
    /// Milliseconds the disk was busy, and over how many it was watched.
    pub busy_ms: u64,
    pub watched_ms: u64,
}

impl DiskUtil {
    /// fio's `util`: busy time over watched time, in percent.
    pub fn util(&self) -> f64 {
        (self.busy_ms as f64 * 100.0 / self.watched_ms.max(1) as f64).min(100.0)
    }

    /// Add another window's change of the same disk.
    pub fn add(&mut self, o: &DiskUtil) {
        for d in 0..2 {
            self.ios[d] += o.ios[d];
            self.merges[d] += o.merges[d];
            self.ticks[d] += o.ticks[d];
        }
        self.in_queue += o.in_queue;
        self.busy_ms += o.busy_ms;
        self.watched_ms += o.watched_ms;
    }
}

/// Fold `more` into `all`, disk by disk.
pub fn accumulate(all: &mut Vec<DiskUtil>, more: Vec<DiskUtil>) {
    for m in more {
        match all.iter_mut().find(|d| d.name == m.name) {
            Some(d) => d.add(&m),
            None => all.push(m),
        }
    }
}

impl DiskSnapshot {
    /// The disks behind the jobs' files (kernel engines only: nvme-vfio
    /// bypasses the kernel's block layer), with their counters now.
    pub fn take<'a>(jobs: impl IntoIterator<Item = &'a Job>) -> DiskSnapshot {
        let mut disks: Vec<(String, [u64; 11])> = Vec::new();
        for j in jobs {
            if matches!(
                j.ioengine,
                EngineKind::NvmeVfio | EngineKind::Null | EngineKind::NvmeModel
            ) {
                continue;
            }
            let Some(f) = &j.filename else { continue };
            // One file per job: run.rs resolved (and unescaped) it.
            {
                if let Some(name) = disk_of(f) {
                    if !disks.iter().any(|(n, _)| *n == name) {
                        if let Some(st) = read_stat(&name) {
                            disks.push((name, st));
                        }
                    }
                }
            }
        }
        DiskSnapshot {
            start: Instant::now(),
            disks,
        }
    }

    /// The change since `take`.
    pub fn finish(&self) -> Vec<DiskUtil> {
        let ms = self.start.elapsed().as_millis() as u64;
        self.disks
            .iter()
            .filter_map(|(name, a)| {
                let b = read_stat(name)?;
                let d = |i: usize| b[i].saturating_sub(a[i]);
                Some(DiskUtil {
                    name: name.clone(),
                    ios: [d(0), d(4)],
                    merges: [d(1), d(5)],
                    ticks: [d(3), d(7)],
                    in_queue: d(10),
                    busy_ms: d(9),
                    watched_ms: ms,
                })
            })
            .collect()
    }
}

/// fio's normal-output section (empty when no kernel disk was used).
pub fn render(disks: &[DiskUtil]) -> String {
    let mut out = String::new();
    if disks.is_empty() {
        return out;
    }
    out.push_str("Disk stats (read/write):\n");
    for d in disks {
        let _ = writeln!(
            out,
            "  {}: ios={}/{}, merge={}/{}, ticks={}/{}, in_queue={}, util={:.2}%",
            d.name,
            d.ios[0],
            d.ios[1],
            d.merges[0],
            d.merges[1],
            d.ticks[0],
            d.ticks[1],
            d.in_queue,
            d.util()
        );
    }
    out
}

/// fio's JSON `disk_util` array.
pub fn json(disks: &[DiskUtil]) -> Value {
    Value::Array(
        disks
            .iter()
            .map(|d| {
                json!({
                    "name": d.name,
                    "read_ios": d.ios[0],
                    "write_ios": d.ios[1],
                    "read_merges": d.merges[0],
                    "write_merges": d.merges[1],
                    "read_ticks": d.ticks[0],
                    "write_ticks": d.ticks[1],
                    "in_queue": d.in_queue,
                    "util": d.util(),
                })
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_t_decoding_matches_glibc() {
        // makedev(259, 3) and makedev(8, 17) as glibc encodes them.
        let mk = |ma: u64, mi: u64| {
            ((ma & 0xffff_f000) << 32)
                | ((ma & 0xfff) << 8)
                | ((mi & 0xffff_ff00) << 12)
                | (mi & 0xff)
        };
        assert_eq!(major_minor(mk(259, 3)), (259, 3));
        assert_eq!(major_minor(mk(8, 17)), (8, 17));
        assert_eq!(major_minor(mk(4095, 1 << 20)), (4095, 1 << 20));
    }

    #[test]
    fn renders_like_fio() {
        let d = DiskUtil {
            name: "nvme0n1".into(),
            ios: [1234, 0],
            merges: [0, 0],
            ticks: [456, 0],
            in_queue: 456,
            busy_ms: 875,
            watched_ms: 1000,
        };
        assert_eq!(
            render(std::slice::from_ref(&d)),
            "Disk stats (read/write):\n  nvme0n1: ios=1234/0, merge=0/0, ticks=456/0, in_queue=456, util=87.50%\n"
        );
        assert_eq!(render(&[]), "");
        let mut all = vec![d.clone()];
        accumulate(
            &mut all,
            vec![
                d.clone(),
                DiskUtil {
                    name: "vda".into(),
                    ..d.clone()
                },
            ],
        );
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].ios, [2468, 0]);
        assert_eq!(all[0].util(), 87.5);
    }
}
