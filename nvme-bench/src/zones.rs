//! `zonemode=zbd`: accepted in job files (fio's examples use it) and
//! refused when a job starts, with the reason for its target.
//!
//! fio 3.33 drives zoned block devices (and emulates zones on regular
//! files); nvme-bench implements neither, so a zbd job never runs here.

use std::os::unix::fs::{FileTypeExt, MetadataExt};

/// Why a `zonemode=zbd` job cannot run on `path` (None: an NVMe namespace
/// through nvme-vfio).
pub fn refusal(path: Option<&str>) -> String {
    let Some(p) = path else {
        return "zonemode=zbd: zoned namespaces are not supported by the nvme-vfio engine".into();
    };
    let md = match std::fs::metadata(p) {
        Ok(m) => m,
        Err(_) => {
            return format!(
                "zonemode=zbd: {p} does not exist, and is not a zoned block device \
                 (nvme-bench does not emulate zones on regular files as fio does)"
            )
        }
    };
    if !md.file_type().is_block_device() {
        return format!(
            "zonemode=zbd: {p} is not a zoned block device \
             (nvme-bench does not emulate zones on regular files as fio does)"
        );
    }
    let dev = md.rdev();
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    let model = std::fs::read_to_string(format!("/sys/dev/block/{major}:{minor}/queue/zoned"))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "none".into());
    if model == "none" {
        format!("zonemode=zbd: {p} is not a zoned block device (queue/zoned: none)")
    } else {
        format!(
            "zonemode=zbd: {p} is a zoned block device ({model}), \
             but nvme-bench does not implement zoned I/O"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::refusal;

    #[test]
    fn reasons_name_the_target() {
        assert!(refusal(None).contains("nvme-vfio"));
        let f = std::env::temp_dir().join(format!("zbd-{}", std::process::id()));
        std::fs::write(&f, b"x").unwrap();
        let r = refusal(f.to_str());
        assert!(r.contains("is not a zoned block device"), "{r}");
        std::fs::remove_file(&f).unwrap();
        assert!(refusal(Some("/nonexistent/x")).contains("does not exist"));
        if std::path::Path::new("/dev/loop0").exists() {
            let r = refusal(Some("/dev/loop0"));
            assert!(r.contains("queue/zoned: none"), "{r}");
        }
    }
}
