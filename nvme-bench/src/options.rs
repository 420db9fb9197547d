//! fio's job language: INI job files and `--name=` command lines, fio's
//! number and time parsers (kb_base=1024), and the option table.

use std::path::Path;
use std::time::Duration;

use crate::error::{Error, Result};

/// Direction of one I/O.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Dir {
    Read = 0,
    Write = 1,
    /// A discard: BLKDISCARD on a block device, Dataset Management
    /// deallocate on nvme-vfio.
    Trim = 2,
}

/// Directions a job's statistics are kept for (read, write, trim).
pub const NDIR: usize = 3;

/// `dedupe_mode`: where a deduplicated write's contents come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DedupeMode {
    /// The last unique buffer (fio's default).
    Repeat,
    /// A random page of the working set.
    WorkingSet,
}

/// `exit_what`: the jobs an `exitall` job's end stops (fio's
/// `fio_terminate_threads`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitWhat {
    /// The jobs of its reporting group (fio's default).
    Group,
    /// Every job that has started running (the current stonewall set).
    Stonewall,
    /// Every job, including those of later stonewall groups.
    All,
}

/// `steadystate` / `ss`: the criterion that ends a job once its I/O has
/// settled (fio's steadystate.h `FIO_SS_*` bits), checked over a rolling
/// window of `ss_dur` one-second samples (steadystate.rs).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SteadyState {
    /// IOPS samples (`iops`, `iops_slope`), else bandwidth (`bw`, `bw_slope`).
    pub iops: bool,
    /// The least-squares slope (`*_slope`), else the largest deviation
    /// from the mean.
    pub slope: bool,
    /// The limit is a percentage of the mean (`:10%`), else absolute (IOPS,
    /// or bytes/s).
    pub pct: bool,
    pub limit: f64,
}

impl Default for SteadyState {
    /// fio's default, `iops_slope:0.01%` (applies when only `ss_dur` is set).
    fn default() -> Self {
        SteadyState {
            iops: true,
            slope: true,
            pct: true,
            limit: 0.01,
        }
    }
}

/// The longest `ss_dur` taken: fio keeps two arrays of that many 8-byte
/// samples (here 16 MB at the bound, about 11.6 days).
pub const MAX_SS_DUR_SECS: u64 = 1_000_000;

/// `rw=` (fio's names).
#[allow(clippy::enum_variant_names)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Rw {
    Read,
    Write,
    RandRead,
    RandWrite,
    Rw,
    RandRw,
    Trim,
    RandTrim,
    /// Trim a block, then write it (fio's `trimwrite`).
    TrimWrite,
    RandTrimWrite,
}

impl Rw {
    pub fn random(self) -> bool {
        matches!(
            self,
            Rw::RandRead | Rw::RandWrite | Rw::RandRw | Rw::RandTrim | Rw::RandTrimWrite
        )
    }
    pub fn has_read(self) -> bool {
        matches!(self, Rw::Read | Rw::RandRead | Rw::Rw | Rw::RandRw)
    }
    pub fn has_write(self) -> bool {
        matches!(
            self,
            Rw::Write | Rw::RandWrite | Rw::Rw | Rw::RandRw | Rw::TrimWrite | Rw::RandTrimWrite
        )
    }
    /// The job's file is opened for writing (fio: O_RDWR for writes and
    /// trims; BLKDISCARD needs a writable descriptor).
    pub fn opens_rw(self) -> bool {
        self.has_write() || self.has_trim()
    }
    pub fn has_trim(self) -> bool {
        matches!(
            self,
            Rw::Trim | Rw::RandTrim | Rw::TrimWrite | Rw::RandTrimWrite
        )
    }
    pub fn name(self) -> &'static str {
        match self {
            Rw::Read => "read",
            Rw::Write => "write",
            Rw::RandRead => "randread",
            Rw::RandWrite => "randwrite",
            Rw::Rw => "rw",
            Rw::RandRw => "randrw",
            Rw::Trim => "trim",
            Rw::RandTrim => "randtrim",
            Rw::TrimWrite => "trimwrite",
            Rw::RandTrimWrite => "randtrimwrite",
        }
    }
    /// fio's status-line letter.
    pub fn letter(self) -> char {
        match self {
            Rw::Read => 'R',
            Rw::RandRead => 'r',
            Rw::Write | Rw::TrimWrite => 'W',
            Rw::RandWrite | Rw::RandTrimWrite => 'w',
            Rw::Rw => 'M',
            Rw::RandRw => 'm',
            Rw::Trim => 'D',
            Rw::RandTrim => 'd',
        }
    }
}

/// `ioengine=`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum EngineKind {
    NvmeVfio,
    IoUring,
    IoUringCmd,
    Psync,
    /// fio's `null`: no I/O, every I/O completes at once.
    Null,
    /// Linux native AIO (io_submit/io_getevents).
    Libaio,
    /// Our driver against the in-process controller model (no device).
    NvmeModel,
}

impl EngineKind {
    pub fn name(self) -> &'static str {
        match self {
            EngineKind::NvmeVfio => "nvme-vfio",
            EngineKind::IoUring => "io_uring",
            EngineKind::IoUringCmd => "io_uring_cmd",
            EngineKind::Psync => "psync",
            EngineKind::Null => "null",
            EngineKind::Libaio => "libaio",
            EngineKind::NvmeModel => "nvme-model",
        }
    }
    /// Engines that do their I/O on a kernel file or block device by name
    /// (fio's default file name applies; files are laid out).
    pub fn on_files(self) -> bool {
        matches!(
            self,
            EngineKind::Psync | EngineKind::IoUring | EngineKind::Libaio
        )
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Distribution {
    Random,
    Zipf(f64),
    /// `pareto:h` (fio's lib/zipf.c pareto), 0 < h < 1.
    Pareto(f64),
    /// `normal:dev` (fio's gauss): deviation in percent of the region.
    Normal(f64),
    /// `zoned:60/10:30/20:...`: (percent of accesses, percent of the region) per zone.
    Zoned(Vec<(u32, u32)>),
}

/// `zoned:` zones: `access%/range%` separated by `:`; each sum must be 100.
pub fn parse_zones(s: &str) -> Result<Vec<(u32, u32)>> {
    // fio's split_parse_ddir + zone_split_ddir: parts `access/range`; an
    // empty part ends the list; a range that is missing, empty or 0 is
    // "missing" and gets an equal share of what the others leave.
    let mut z: Vec<(u32, Option<u32>)> = Vec::new();
    for part in s.split(':') {
        if part.is_empty() {
            break;
        }
        let (a, r) = match part.split_once('/') {
            Some((a, r)) => (a, Some(r)),
            None => (part, None),
        };
        let p = |x: &str| -> Result<u32> {
            let v: u32 = x
                .trim()
                .parse()
                .map_err(|_| Error::msg(format!("zone '{part}': bad percentage")))?;
            if v > 100 {
                return Err(Error::msg(format!("zone '{part}': over 100%")));
            }
            Ok(v)
        };
        let r = match r.map(str::trim) {
            None | Some("") => None,
            Some(r) => Some(p(r)?).filter(|&v| v > 0),
        };
        z.push((p(a)?, r));
        if z.len() > 256 {
            return Err(Error::msg("more than 256 zones"));
        }
    }
    let a: u32 = z.iter().map(|x| x.0).sum();
    let r: u32 = z.iter().filter_map(|x| x.1).sum();
    let missing = z.iter().filter(|x| x.1.is_none()).count() as u32;
    if z.is_empty() || a != 100 || r > 100 {
        return Err(Error::msg(format!(
            "zones '{s}' add up to {a}% of accesses and {r}% of the range: accesses must add up to 100%, ranges to at most 100%"
        )));
    }
    let share = (100 - r).checked_div(missing).unwrap_or(0);
    let z: Vec<(u32, u32)> = z
        .into_iter()
        .map(|(a, r)| (a, r.unwrap_or(share)))
        .collect();
    let r: u32 = z.iter().map(|x| x.1).sum();
    if r != 100 {
        return Err(Error::msg(format!(
            "zones '{s}' cover {r}% of the range: fio leaves the rest unused, which is not supported here (make the ranges add up to 100%)"
        )));
    }
    Ok(z)
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Verify {
    None,
    Crc32c,
    Pattern,
    /// A cryptographic digest or CRC-32 of the block (`verify=md5`, ...).
    Hash(HashKind),
    /// `verify=meta` (fio's VERIFY_HDR_ONLY): only the header (magic,
    /// length, offset, seed, generation and the header's own CRC32C) is
    /// checked, and the data against `verify_pattern` when one is given.
    Meta,
}

/// The digests `verify=` can name besides crc32c (computed in hash.rs).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum HashKind {
    Md5,
    Sha1,
    Sha256,
    Sha512,
    Sha3_224,
    Sha3_256,
    Sha3_384,
    Sha3_512,
    Crc32,
}

impl HashKind {
    pub const ALL: [HashKind; 9] = [
        HashKind::Md5,
        HashKind::Sha1,
        HashKind::Sha256,
        HashKind::Sha512,
        HashKind::Sha3_224,
        HashKind::Sha3_256,
        HashKind::Sha3_384,
        HashKind::Sha3_512,
        HashKind::Crc32,
    ];
    /// fio's name for it (`verify=` value).
    pub fn name(self) -> &'static str {
        match self {
            HashKind::Md5 => "md5",
            HashKind::Sha1 => "sha1",
            HashKind::Sha256 => "sha256",
            HashKind::Sha512 => "sha512",
            HashKind::Sha3_224 => "sha3-224",
            HashKind::Sha3_256 => "sha3-256",
            HashKind::Sha3_384 => "sha3-384",
            HashKind::Sha3_512 => "sha3-512",
            HashKind::Crc32 => "crc32",
        }
    }
    /// The digest's length in bytes.
    pub fn len(self) -> usize {
        match self {
            HashKind::Md5 => 16,
            HashKind::Sha1 => 20,
            HashKind::Sha3_224 => 28,
            HashKind::Sha256 | HashKind::Sha3_256 => 32,
            HashKind::Sha3_384 => 48,
            HashKind::Sha512 | HashKind::Sha3_512 => 64,
            HashKind::Crc32 => 4,
        }
    }
}

/// `fallocate=`: how a file being laid out is preallocated (fio's
/// `fallocate_file`).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Fallocate {
    /// No preallocation (`none`, `0`).
    None,
    /// `posix_fallocate(3)` (`posix`, `1`).
    Posix,
    /// `fallocate(2)` with mode 0; failure is ignored, as fio (the default).
    Native,
    /// `fallocate(2)` with `FALLOC_FL_KEEP_SIZE`.
    Keep,
    /// `ftruncate(2)` to the size.
    Truncate,
}

/// `clocksource=`: the clock the job loop reads (fio's gettime.c). fio's
/// clock is process-wide: the last job that sets it decides.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ClockSource {
    /// The CPU's time-stamp counter, calibrated once.
    Cpu,
    /// `clock_gettime(CLOCK_MONOTONIC)`.
    ClockGettime,
    /// `gettimeofday(2)`.
    Gettimeofday,
}

/// `fadvise_hint=`: the access-pattern advice given at open.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum FadviseHint {
    /// `0`: none.
    None,
    /// `1` (default): random or sequential, from `rw`.
    Workload,
    Random,
    Sequential,
    Normal,
}

/// `continue_on_error=`: which I/O errors do not stop the job (fio's
/// `error_type` bits: read 1, write 2, verify 4).
pub mod cont {
    pub const READ: u8 = 1;
    pub const WRITE: u8 = 2;
    pub const VERIFY: u8 = 4;
}

/// fio's `continue_on_error` values: `none`/`0`, `read`, `write`, `io`
/// (read and write), `verify`, `all`/`1`.
pub fn parse_continue_on_error(v: &str) -> Result<u8> {
    Ok(match v.trim().to_ascii_lowercase().as_str() {
        "none" | "0" | "false" => 0,
        "read" => cont::READ,
        "write" => cont::WRITE,
        "io" => cont::READ | cont::WRITE,
        "verify" => cont::VERIFY,
        "all" | "1" | "true" | "" => cont::READ | cont::WRITE | cont::VERIFY,
        o => {
            return Err(Error::msg(format!(
                "option 'continue_on_error={o}': none, read, write, io, verify or all"
            )))
        }
    })
}

/// fio's str2error (options.c): the error names `ignore_error` takes, errno
/// 1 to 34 in order (EILSEQ and the rest are given by number).
const ERROR_NAMES: [&str; 34] = [
    "EPERM", "ENOENT", "ESRCH", "EINTR", "EIO", "ENXIO", "E2BIG", "ENOEXEC", "EBADF", "ECHILD",
    "EAGAIN", "ENOMEM", "EACCES", "EFAULT", "ENOTBLK", "EBUSY", "EEXIST", "EXDEV", "ENODEV",
    "ENOTDIR", "EISDIR", "EINVAL", "ENFILE", "EMFILE", "ENOTTY", "ETXTBSY", "EFBIG", "ENOSPC",
    "ESPIPE", "EROFS", "EMLINK", "EPIPE", "EDOM", "ERANGE",
];

/// fio's str_ignore_error_cb and ignore_error_type: `read,write,verify`
/// lists separated by commas, entries by colons, each a name fio's
/// str2error knows (E...) or a number (atoi, sign dropped); an empty entry
/// ends its list. A non-empty list replaces fio's default (EIO, EILSEQ)
/// for its type and sets that type in `continue_on_error`.
pub fn parse_ignore_error(v: &str, job: &mut Job) -> Result<()> {
    for (t, list) in v.trim().split(',').enumerate() {
        if t >= 3 {
            return Err(Error::msg(format!(
                "option 'ignore_error={v}': Illegal error type"
            )));
        }
        let mut errs = Vec::new();
        for name in list.split(':') {
            if name.is_empty() {
                break;
            }
            let n = if name.starts_with('E') {
                ERROR_NAMES
                    .iter()
                    .position(|e| *e == name)
                    .map_or(0, |i| i as i32 + 1)
            } else {
                atoi(name).saturating_abs()
            };
            if n == 0 {
                return Err(Error::msg(format!(
                    "option 'ignore_error={v}': Unknown error {name}, please use number value"
                )));
            }
            errs.push(n);
        }
        if !errs.is_empty() {
            job.continue_on_error |= 1 << t;
            job.ignore_error[t] = Some(errs);
        }
    }
    Ok(())
}

/// C's atoi: leading blanks, a sign, then the digits there are (0 if none).
fn atoi(s: &str) -> i32 {
    let s = s.trim_start();
    let (neg, digits) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let mut n: i64 = 0;
    for b in digits.bytes().take_while(u8::is_ascii_digit) {
        n = (n * 10 + i64::from(b - b'0')).min(i64::from(i32::MAX));
    }
    (if neg { -n } else { n }) as i32
}

/// A size that may be a percentage of the file or device.
#[derive(Copy, Clone, Debug, PartialEq)]
pub enum Amount {
    Bytes(u64),
    Percent(f64),
}

impl Amount {
    pub fn resolve(self, total: u64) -> u64 {
        match self {
            Amount::Bytes(b) => b,
            Amount::Percent(p) => (total as f64 * p / 100.0) as u64,
        }
    }
}

/// fio's default `percentile_list`.
pub const DEFAULT_PERCENTILES: [f64; 17] = [
    1.0, 5.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95,
    99.99,
];

/// fio's `ioprio_value`: class (0 taken as best effort, 2) and level.
pub fn ioprio_value(class: u32, level: u32) -> u16 {
    let class = if class == 0 { 2 } else { class.min(3) };
    ((class << 13) | level.min(7)) as u16
}

/// One `cmdprio_bssplit` entry: block size, percentage, and the priority
/// of the advanced format (`bs/perc/class/level`), `None` for the simple.
#[derive(Clone, Debug, PartialEq)]
pub struct PrioSplit {
    pub bs: u64,
    pub perc: u32,
    pub prio: Option<u16>,
}

/// fio's cmdprio options (engines/cmdprio.h), per direction (read, write).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CmdPrio {
    pub percentage: [u32; 2],
    /// `cmdprio_class`, 0 when not written (fio then takes RT, 1).
    pub class: [u32; 2],
    pub level: [u32; 2],
    /// `cmdprio_bssplit` as written, and its non-zero entries per
    /// direction sorted by block size (fio's split_parse_prio_ddir).
    pub bssplit_str: Option<String>,
    pub bssplit: [Vec<PrioSplit>; 2],
}

impl CmdPrio {
    /// Any cmdprio mode is in use (fio's CMDPRIO_MODE_PERC or _BSSPLIT).
    pub fn on(&self) -> bool {
        self.percentage.iter().any(|&p| p > 0)
            || self
                .bssplit_str
                .as_deref()
                .is_some_and(|s| !s.trim().is_empty())
    }
}

/// One direction of `cmdprio_bssplit`: `bs/perc[/class/level]:...`.
fn parse_prio_split(s: &str) -> Result<Vec<PrioSplit>> {
    let mut out = Vec::new();
    for e in s.split(':') {
        if e.is_empty() {
            break;
        }
        let mut f = e.split('/');
        let bs = parse_size(f.next().unwrap_or(""))
            .map_err(|_| Error::msg("invalid cmdprio_bssplit format"))?;
        let num = |x: Option<&str>| -> Result<Option<u32>> {
            match x.map(str::trim) {
                None | Some("") => Ok(None),
                Some(t) => t
                    .parse::<u32>()
                    .map(Some)
                    .map_err(|_| Error::msg("invalid cmdprio_bssplit format")),
            }
        };
        let perc = num(f.next())?.unwrap_or(0).min(100);
        let class = num(f.next())?;
        let level = num(f.next())?;
        if f.next().is_some() {
            return Err(Error::msg("invalid cmdprio_bssplit format"));
        }
        let prio = match (class, level) {
            (None, None) => None,
            (Some(c), Some(l)) => Some(ioprio_value(c.min(3), l.min(7))),
            _ => return Err(Error::msg("invalid cmdprio_bssplit format")),
        };
        if perc > 0 {
            out.push(PrioSplit { bs, perc, prio });
        }
    }
    if out.len() > 64 {
        return Err(Error::msg("too many cmdprio_bssplit entries"));
    }
    out.sort_by_key(|e| e.bs);
    // fio: the entries of one block size may not add up to more than 100.
    for g in out.chunk_by(|a, b| a.bs == b.bs) {
        if g.iter().map(|e| e.perc).sum::<u32>() > 100 {
            let bs = g.first().map_or(0, |e| e.bs);
            return Err(Error::msg(format!(
                "cmdprio_bssplit total percentage for bs: {bs} exceeds 100"
            )));
        }
    }
    Ok(out)
}

/// `cmdprio_bssplit`: `read[,write]` (fio's str_split_parse: one part
/// applies to both; a trim part is ignored).
fn parse_cmdprio_bssplit(s: &str) -> Result<[Vec<PrioSplit>; 2]> {
    let s = s.trim();
    let mut parts = s.splitn(3, ',');
    let r = parts.next().unwrap_or("");
    match parts.next() {
        None => {
            let v = parse_prio_split(r)?;
            Ok([v.clone(), v])
        }
        Some(w) => Ok([parse_prio_split(r)?, parse_prio_split(w)?]),
    }
}

/// An integer option with fio's minval/maxval.
fn parse_ranged(s: &str, lo: u32, hi: u32) -> Result<u32> {
    match s.trim().parse::<u32>() {
        Ok(v) if (lo..=hi).contains(&v) => Ok(v),
        Ok(v) if v < lo => Err(Error::msg(format!(
            "min value out of range: {v} (min={lo})"
        ))),
        _ => Err(Error::msg(format!(
            "'{s}': out of range (min={lo}, max={hi})"
        ))),
    }
}

/// One job, every option resolved to its meaning.
#[derive(Clone, Debug, PartialEq)]
pub struct Job {
    pub name: String,
    /// `ioengine` as written (fio's header line shows it: `sync`, `psync`).
    pub ioengine_name: String,
    /// `thread`: fio's header says `Starting N threads` (we always run threads).
    pub thread: bool,
    /// `new_group`: a new reporting group, run with the jobs before it.
    pub new_group: bool,
    /// `loops`: passes over the region (non-time-based).
    pub loops: u32,
    /// `startdelay`: the job starts this long after its group (a random
    /// value in `lo..=hi` for a range).
    pub startdelay: (Duration, Duration),
    /// `io_size` (`io_limit`): bytes to move, instead of `size`.
    pub io_size: Option<u64>,
    /// `number_ios`: I/Os to issue at most (0: no limit).
    pub number_ios: u64,
    /// `blockalign`: random offsets are multiples of this (per direction as fio: one value).
    pub blockalign: Option<u64>,
    /// `kb_base`: 1024 (default) or 1000 (SI: `4k` = 4000).
    pub kb_base: u64,
    /// `unit_base=1`: rates in bits in the normal report (fio's 8 and 0,
    /// the default, are bytes).
    pub unit_base_bits: bool,
    /// `disable_slat`, `disable_clat`, `disable_lat` (`gtod_reduce` sets all three).
    pub disable_slat: bool,
    pub disable_clat: bool,
    pub disable_lat: bool,
    /// `buffer_pattern`: write buffers carry this instead of random bytes.
    pub buffer_pattern: Vec<u8>,
    /// `rate`: bytes per second per direction.
    pub rate: [Option<u64>; 2],
    /// The third (trim) value of `rate` / `rate_iops` (`rate=R,W,T`): a
    /// job that trims refuses any rate, so it only has to be valid.
    pub rate_trim: [Option<u64>; 2],
    /// `rate_process=poisson`: exponentially distributed gaps between
    /// rate-limited I/Os instead of even spacing (fio's `linear`).
    pub rate_poisson: bool,
    /// `unified_rw_reporting=mixed` (1): one `mixed` direction in the
    /// reports, reads and writes summed.
    pub unified_rw: bool,
    /// `rw=...:N`: sequential: bytes skipped after each I/O; random: a new
    /// random offset every N I/Os, sequential in between.
    pub rw_modifier: u64,
    /// `rw=read:-N`: bytes to seek back after each sequential I/O.
    pub rw_back: u64,
    /// `zonemode=zbd`: parsed; the job is refused when it starts (zones.rs).
    pub zbd: bool,
    /// `zonesize`/`zonerange`/`zoneskip` were given.
    pub zone_sizes_set: bool,
    /// `zonemode=strided`: I/O in zones of `zone_size` bytes over
    /// `zone_range`, then a jump of `zone_range + zone_skip` (gen.rs
    /// `Strided`).
    pub strided: bool,
    pub zone_size: u64,
    pub zone_range: u64,
    pub zone_skip: u64,
    /// `wait_for`: start when this job (all its clones) has finished.
    pub wait_for: Option<String>,
    /// `exitall`: when this job ends, every other job is stopped (and
    /// later groups do not run their I/O).
    pub exitall: bool,
    /// `io_submit_mode=offload`: I/O goes to a pool of `iodepth` submit
    /// threads (engine/offload.rs).
    pub offload: bool,
    /// `dedupe_percentage`, `dedupe_mode`, `dedupe_working_set_percentage`,
    /// `dedupe_global`, `buffer_compress_percentage`, `buffer_compress_chunk`
    /// (dedupe.rs).
    pub dedupe_percentage: u32,
    pub dedupe_mode: DedupeMode,
    pub dedupe_working_set_percentage: u32,
    pub dedupe_global: bool,
    pub compress_percentage: u32,
    pub compress_chunk: u64,
    /// `exit_what`: which jobs an exitall stops (fio's TERMINATE_*).
    pub exit_what: ExitWhat,
    /// `thinktime` (µs by default): a pause after every `thinktime_blocks`
    /// I/Os, once those in flight are done; `thinktime_spin` of it busy.
    pub thinktime: Duration,
    pub thinktime_spin: Duration,
    pub thinktime_blocks: u32,
    /// `thinktime_blocks_type=issue`: count issued I/Os, not completed.
    pub thinktime_by_issue: bool,
    /// `write_bw_log`, `write_lat_log`, `write_iops_log` and their knobs.
    pub logs: crate::logs::LogOpts,
    /// `prio` and `prioclass`: the job's default I/O priority (fio's
    /// `ioprio_set` on the job's thread); `None` when not written.
    pub ioprio: Option<u32>,
    pub ioprio_class: Option<u32>,
    /// `cmdprio_*` (libaio and io_uring): per-I/O priorities.
    pub cmdprio: CmdPrio,
    /// fio's reporting group: a new one at each `stonewall` or `new_group`
    /// after the first job (computed when the set is built).
    pub groupid: u32,
    pub filename: Option<String>,
    /// `directory`: prefix of relative file names (and of the default one).
    pub directory: Option<String>,
    /// `nrfiles`/`nr_files`: files per job when no `filename` names them
    /// (fio's `filename_format` names; a `filename` list sets the count).
    pub nrfiles: u32,
    /// `filesize`: each file's size (low, high; a range draws each size).
    pub filesize: Option<(u64, u64)>,
    /// `openfiles`: at most this many files open at once (0: all).
    pub openfiles: u32,
    /// `filename_format`: the names of files without a `filename`
    /// (fio's default `$jobname.$jobnum.$filenum`).
    pub filename_format: Option<String>,
    /// `file_service_type`: which file the next I/O goes to.
    pub file_service: FileService,
    /// `unique_filename`: fio prefixes generated names with the client's
    /// address in client/server mode only; nvme-bench has no such mode, so
    /// it changes no name (as a local fio run).
    pub unique_filename: bool,
    /// The files this clone of the job uses, in order (set by `run` from
    /// `files_for`; empty before).
    pub files: Vec<String>,
    /// `file_append`: each regular file's I/O starts at its end (fio's
    /// `get_start_offset`), not at `offset`.
    pub file_append: bool,
    /// Several files: each file's (offset, bytes) and the job's byte count
    /// per loop, as sized before layout (set by `run`; `files::plan`).
    pub planned: Option<(Vec<(u64, u64)>, u64)>,
    pub ioengine: EngineKind,
    pub stonewall: bool,
    pub rw: Rw,
    pub rwmixread: u32,
    /// Block size per direction (read, write).
    pub bs: [u64; 2],
    /// The trim size (`bs`'s third value; otherwise the write size).
    pub bs_trim: u64,
    /// `bssplit`: (size, percent) per direction; empty = use `bs`.
    pub bssplit: [Vec<(u64, u32)>; 2],
    /// `bsrange`: (min, max) per direction; each I/O's size is a multiple
    /// of min (fio aligns to it), uniformly among those up to max.
    /// `bssplit` wins over it, as in fio.
    pub bsrange: [Option<(u64, u64)>; 2],
    pub size: Option<Amount>,
    pub offset: Amount,
    pub iodepth: u32,
    pub iodepth_batch_submit: u32,
    pub iodepth_batch_complete_min: u32,
    pub iodepth_batch_complete_max: u32,
    pub numjobs: u32,
    pub runtime: Option<Duration>,
    pub time_based: bool,
    pub ramp_time: Duration,
    /// `steadystate` / `ss` (its criterion; used only with `ss_dur`).
    pub ss: SteadyState,
    /// `steadystate_duration` / `ss_dur`: the window, in whole seconds as
    /// fio keeps it (0: no steady-state detection).
    pub ss_dur: Duration,
    /// `steadystate_ramp_time` / `ss_ramp`: sampling starts a second after it.
    pub ss_ramp: Duration,
    pub cpus_allowed: Option<Vec<usize>>,
    pub cpus_allowed_split: bool,
    /// `numa_cpu_nodes`: run on the CPUs of these NUMA nodes (a libnuma
    /// node string, checked against the host when the job set is run).
    pub numa_cpu_nodes: Option<String>,
    /// `numa_mem_policy`: the job thread's memory policy (numa.rs).
    pub numa_mem_policy: Option<MemPolicy>,
    /// `sync`: O_SYNC or O_DSYNC at open (0: neither).
    pub sync_io: i32,
    /// `scramble_buffers` (fio's default 1): each write stamps its offset
    /// and a time into every 512-byte block of its buffer (runner.rs).
    pub scramble_buffers: bool,
    /// `latency_target` (µs without a unit) and its `latency_window`,
    /// `latency_percentile`, `latency_run`: fio's depth search
    /// (lat_target.rs).
    pub latency_target: Option<Duration>,
    pub latency_window: Duration,
    pub latency_percentile: f64,
    pub latency_run: bool,
    /// `random_generator=lfsr`: random offsets visit every block exactly
    /// once per pass even with `norandommap` (fio's LFSR needs no map).
    pub lfsr: bool,
    /// `random_generator=tausworthe64`: fio's 64-bit generator (taus258)
    /// for the streams that follow `random_generator` (gen.rs `FioRand`).
    pub taus64: bool,
    pub norandommap: bool,
    pub randrepeat: bool,
    pub randseed: u64,
    /// `randseed` was given: fio then turns `randrepeat` off (init.c
    /// `fixup_options`) and seeds the offsets from it too.
    pub randseed_set: bool,
    pub random_distribution: Distribution,
    pub rate_iops: [Option<u64>; 2],
    /// `rate_min`/`rate_iops_min`/`rate_cycle` (ms): see minrate.rs.
    pub rate_min: [Option<u64>; 2],
    pub rate_iops_min: [Option<u64>; 2],
    pub rate_cycle_ms: u64,
    /// `unlink`: remove the job's file when the job ends (a regular file).
    pub unlink: bool,
    /// `flow`, `flow_id`, `flow_sleep` (µs): see flow.rs.
    pub flow: u32,
    pub flow_id: u32,
    pub flow_sleep_us: u64,
    pub verify: Verify,
    pub verify_pattern: Vec<u8>,
    pub do_verify: bool,
    pub verify_only: bool,
    /// `verify_backlog`: read back logged blocks once this many are
    /// logged (0: off), `verify_backlog_batch` of them at a time (0: as
    /// many as `verify_backlog`).
    pub verify_backlog: u64,
    pub verify_backlog_batch: u32,
    /// `verify_dump`: a failed block is written to `FILE.OFFSET.received`
    /// and `.expected` (or `.hdr_fail`), as fio.
    pub verify_dump: bool,
    /// `block_error_percentiles`: per trim block (`bs`'s trim size) of the
    /// job's file, count its trims and keep its state; reported as fio's
    /// `block lifetime percentiles` (stat.c `show_block_infos`) and the
    /// JSON's `block` object.
    pub block_error_percentiles: bool,
    /// `verify_interval`: a verify header every this many bytes of a block
    /// (0: unset, one per block); see [`Job::verify_interval_eff`].
    pub verify_interval: u64,
    /// `fill_device` (`fill_fs`): without `size=`, a regular file's job
    /// writes until the file system is full (ENOSPC ends it, no error).
    pub fill_device: bool,
    /// `create_serialize` (default 1): files are laid out before any job
    /// starts; 0: each job lays out its own when it starts.
    pub create_serialize: bool,
    /// `offset_increment`: clone N of `numjobs` starts N times this much
    /// past `offset` (fio's `subjob_number * offset_increment`).
    pub offset_increment: u64,
    pub group_reporting: bool,
    pub percentile_list: Vec<f64>,
    pub clat_percentiles: bool,
    pub lat_percentiles: bool,
    pub direct: bool,
    /// `create_on_open`: no layout before the job; the job's open creates
    /// the file (fio: reads of what is not there then fail).
    pub create_on_open: bool,
    /// `fallocate`: preallocation when a file is laid out.
    pub fallocate: Fallocate,
    /// `overwrite`: a write job lays its file out (writes it) too.
    pub overwrite: bool,
    /// `create_fsync`: fsync a laid-out file (default 1).
    pub create_fsync: bool,
    /// `invalidate`: drop the file's cached pages at the job's start and,
    /// time-based and buffered, at each new pass over the region (default 1).
    pub invalidate: bool,
    pub fadvise_hint: FadviseHint,
    /// `clocksource=` (None: not set, fio's default choice).
    pub clocksource: Option<ClockSource>,
    pub hipri: bool,
    pub fixedbufs: bool,
    pub registerfiles: bool,
    pub sqthread_poll: bool,
    pub sqthread_poll_cpu: Option<u32>,
    pub nvme_queue_size: Option<u32>,
    pub nvme_cmb_queues: Option<bool>,
    pub nvme_shadow_doorbells: Option<bool>,
    pub nvme_pin: bool,
    /// `nvme_delay_submit`: a submission only writes its SQ entry; the SQ
    /// doorbell is written when the engine next polls for completions (as
    /// SPDK's fio engine, `delay_cmd_submit`). Off: at each commit.
    pub nvme_delay_submit: bool,
    /// `nvme_io_timeout`: the driver's per-command deadline (`Some(0)`:
    /// none; `None`: the driver's default, 30 s).
    pub nvme_io_timeout: Option<Duration>,
    /// `nvme_timeout_policy`: what the driver does past the deadline.
    pub nvme_timeout_policy: Option<nvme_core::TimeoutPolicy>,
    /// `continue_on_error`: `cont::*` bits of the error types that are
    /// counted instead of ending the job (0: the first error ends it).
    pub continue_on_error: u8,
    /// `ignore_error`: per type (read, write, verify) the error numbers
    /// that type continues on, instead of fio's default EIO and EILSEQ.
    pub ignore_error: [Option<Vec<i32>>; 3],
    /// `error_dump`: print each error continued on (fio's default: no).
    pub error_dump: bool,
    /// `verify_fatal`: the first verify failure ends the job.
    pub verify_fatal: bool,
    /// `verify_async`: fio's verify threads (the outcome is inline verify's).
    pub verify_async: u32,
    pub exec_prerun: Option<String>,
    pub exec_postrun: Option<String>,
    pub description: Option<String>,
    /// Options as written in this job's own section (fio's "job options").
    pub set_options: OptList,
}

/// fio's `file_service_type` (io_u.c `__get_next_file`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FileService {
    /// `random[:N]`: a file drawn uniformly, used for N I/Os.
    Random(u32),
    /// `roundrobin[:N]` (default, N=1): the next file every N I/Os.
    RoundRobin(u32),
    /// `sequential`: one file until it is done, then the next.
    Sequential,
    /// `zipf[:theta[:center]]`, `pareto[:h[:center]]`,
    /// `normal|gauss[:dev[:center]]`: a skewed choice; files are never
    /// done (their offsets start over), the job ends on its byte count.
    Zipf(f64, Option<f64>),
    Pareto(f64, Option<f64>),
    Gauss(f64, Option<f64>),
}

impl FileService {
    /// fio's `__FIO_FSERVICE_NONUNIFORM`.
    pub fn nonuniform(&self) -> bool {
        matches!(
            self,
            FileService::Zipf(..) | FileService::Pareto(..) | FileService::Gauss(..)
        )
    }
}

impl Default for Job {
    fn default() -> Self {
        Job {
            name: String::new(),
            ioengine_name: "psync".into(),
            thread: false,
            new_group: false,
            loops: 1,
            startdelay: (Duration::ZERO, Duration::ZERO),
            io_size: None,
            number_ios: 0,
            blockalign: None,
            kb_base: 1024,
            unit_base_bits: false,
            disable_slat: false,
            disable_clat: false,
            disable_lat: false,
            buffer_pattern: Vec::new(),
            rate: [None, None],
            rw_modifier: 0,
            rw_back: 0,
            rate_min: [None, None],
            rate_iops_min: [None, None],
            rate_cycle_ms: 1000,
            unlink: false,
            flow: 0,
            flow_id: 0,
            flow_sleep_us: 0,
            zbd: false,
            zone_sizes_set: false,
            strided: false,
            zone_size: 0,
            zone_range: 0,
            zone_skip: 0,
            wait_for: None,
            exitall: false,
            exit_what: ExitWhat::Group,
            offload: false,
            dedupe_percentage: 0,
            dedupe_mode: DedupeMode::Repeat,
            dedupe_working_set_percentage: 5,
            dedupe_global: false,
            compress_percentage: 0,
            compress_chunk: 512,
            rate_trim: [None, None],
            thinktime: Duration::ZERO,
            thinktime_spin: Duration::ZERO,
            thinktime_blocks: 1,
            thinktime_by_issue: false,
            logs: crate::logs::LogOpts {
                per_job: true,
                ..Default::default()
            },
            ioprio: None,
            ioprio_class: None,
            cmdprio: CmdPrio::default(),
            groupid: 0,
            filename: None,
            directory: None,
            nrfiles: 1,
            filesize: None,
            openfiles: 0,
            filename_format: None,
            file_service: FileService::RoundRobin(1),
            unique_filename: true,
            files: Vec::new(),
            file_append: false,
            planned: None,
            ioengine: EngineKind::Psync,
            stonewall: false,
            rw: Rw::Read,
            rwmixread: 50,
            bs: [4096, 4096],
            bs_trim: 4096,
            bssplit: [Vec::new(), Vec::new()],
            bsrange: [None, None],
            size: None,
            offset: Amount::Bytes(0),
            iodepth: 1,
            iodepth_batch_submit: 1,
            iodepth_batch_complete_min: 1,
            iodepth_batch_complete_max: 0,
            numjobs: 1,
            runtime: None,
            time_based: false,
            ramp_time: Duration::ZERO,
            ss: SteadyState::default(),
            ss_dur: Duration::ZERO,
            ss_ramp: Duration::ZERO,
            cpus_allowed: None,
            cpus_allowed_split: false,
            numa_cpu_nodes: None,
            numa_mem_policy: None,
            sync_io: 0,
            scramble_buffers: true,
            latency_target: None,
            latency_window: Duration::ZERO,
            latency_percentile: 100.0,
            latency_run: false,
            lfsr: false,
            taus64: false,
            norandommap: false,
            randrepeat: true,
            randseed: 0x89,
            randseed_set: false,
            random_distribution: Distribution::Random,
            rate_iops: [None, None],
            rate_poisson: false,
            unified_rw: false,
            verify: Verify::None,
            verify_pattern: Vec::new(),
            do_verify: true,
            verify_only: false,
            verify_backlog: 0,
            verify_backlog_batch: 0,
            verify_dump: false,
            block_error_percentiles: false,
            verify_interval: 0,
            fill_device: false,
            create_serialize: true,
            offset_increment: 0,
            group_reporting: false,
            percentile_list: DEFAULT_PERCENTILES.to_vec(),
            clat_percentiles: true,
            lat_percentiles: false,
            direct: false,
            create_on_open: false,
            fallocate: Fallocate::Native,
            overwrite: false,
            create_fsync: true,
            invalidate: true,
            fadvise_hint: FadviseHint::Workload,
            clocksource: None,
            hipri: false,
            fixedbufs: false,
            registerfiles: false,
            sqthread_poll: false,
            sqthread_poll_cpu: None,
            nvme_queue_size: None,
            nvme_cmb_queues: None,
            nvme_shadow_doorbells: None,
            nvme_pin: true,
            nvme_delay_submit: true,
            nvme_io_timeout: None,
            nvme_timeout_policy: None,
            continue_on_error: 0,
            ignore_error: [None, None, None],
            error_dump: false,
            verify_fatal: false,
            verify_async: 0,
            exec_prerun: None,
            exec_postrun: None,
            description: None,
            set_options: OptList::default(),
        }
    }
}

impl Job {
    /// The steady-state window in seconds (fio divides `ss_dur`, kept in
    /// microseconds, by 10^6): 0 when the job has no steady-state check.
    pub fn ss_secs(&self) -> u64 {
        self.ss_dur.as_secs()
    }
    /// O_DIRECT at open: `direct`, except for a job that trims (fio's
    /// file_setup skips the open flags, O_DIRECT included, when td_trim).
    pub fn open_direct(&self) -> bool {
        self.direct && !self.rw.has_trim()
    }
    /// fio's strided zones as it runs them: (zone size, zone range, zone
    /// skip), the range defaulting to the size; none when `openfiles` is
    /// above 1 (fio's fixup_options then turns zonemode=strided off).
    pub fn strided_zones(&self) -> Option<(u64, u64, u64)> {
        (self.strided && self.zone_size > 0 && self.openfiles <= 1).then(|| {
            let range = if self.zone_range == 0 {
                self.zone_size
            } else {
                self.zone_range
            };
            (self.zone_size, range, self.zone_skip)
        })
    }
    /// The extra flags of a job's file open (fio's `generic_open_file`):
    /// O_DIRECT for `direct`, O_SYNC/O_DSYNC for `sync`, none for a job
    /// that trims.
    pub fn open_flags(&self) -> i32 {
        if self.rw.has_trim() {
            return 0;
        }
        (if self.open_direct() {
            libc::O_DIRECT
        } else {
            0
        }) | self.sync_io
    }
    /// The verify interval in effect (fio's fixup_options): a
    /// `verify_interval` above the write block size is the block size, and
    /// one that does not divide it (or none) becomes the block size (fio's
    /// gcd of the smallest and largest write size; verify here needs one
    /// fixed size).
    pub fn verify_interval_eff(&self) -> u64 {
        let bs = self.bs_bounds(1).0.max(1);
        let mut vi = self.verify_interval;
        if vi > bs {
            vi = bs;
        } else if self.rw.has_read() && vi > self.bs_bounds(0).0 {
            vi = self.bs_bounds(0).0;
        }
        if vi == 0 || bs % vi != 0 {
            vi = bs;
        }
        vi
    }
    /// Largest transfer this job issues.
    pub fn max_bs(&self) -> u64 {
        let mut m = self.bs[0].max(self.bs[1]);
        if self.rw.has_trim() {
            m = m.max(self.bs_trim);
        }
        for s in &self.bssplit {
            for (b, _) in s {
                m = m.max(*b);
            }
        }
        for (_, hi) in self.bsrange.iter().flatten() {
            m = m.max(*hi);
        }
        m
    }
    /// Smallest and largest transfer of direction `d` (0 read, 1 write),
    /// as fio's job header shows them.
    pub fn bs_bounds(&self, d: usize) -> (u64, u64) {
        if !self.bssplit[d].is_empty() {
            let it = self.bssplit[d].iter().map(|x| x.0);
            (
                it.clone().min().unwrap_or(self.bs[d]),
                it.max().unwrap_or(self.bs[d]),
            )
        } else if let Some(r) = self.bsrange[d] {
            r
        } else {
            (self.bs[d], self.bs[d])
        }
    }

    /// Smallest transfer (the unit offsets are aligned to).
    pub fn min_bs(&self) -> u64 {
        let mut m = u64::MAX;
        if self.rw.has_trim() {
            m = self.bs_trim;
        }
        for d in [Dir::Read, Dir::Write] {
            let used = match d {
                Dir::Read => self.rw.has_read() || self.verify != Verify::None,
                Dir::Write => self.rw.has_write(),
                Dir::Trim => false,
            };
            if !used {
                continue;
            }
            let i = d as usize;
            if let (true, Some((lo, _))) = (self.bssplit[i].is_empty(), self.bsrange[i]) {
                m = m.min(lo);
            } else if self.bssplit[i].is_empty() {
                m = m.min(self.bs[i]);
            } else {
                for (b, _) in &self.bssplit[i] {
                    m = m.min(*b);
                }
            }
        }
        if m == u64::MAX {
            self.bs[0]
        } else {
            m
        }
    }
    pub fn percentiles(&self) -> &[f64] {
        &self.percentile_list
    }
}

/// Options as a section wrote them, in fio's order for the JSON's "job
/// options" / "global options": the order written, except that a job
/// file's `filename` goes last (fio sorts a job-file section's options by
/// parse priority, stably, and `filename` has the lowest; command-line
/// options are parsed one by one, unsorted). A repeated option keeps its
/// first place and takes the last value.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OptList(Vec<(String, String)>);

impl OptList {
    pub fn insert(&mut self, k: String, v: String) {
        match self.0.iter_mut().find(|(x, _)| *x == k) {
            Some(e) => e.1 = v,
            None => self.0.push((k, v)),
        }
    }
    pub fn get(&self, k: &str) -> Option<&String> {
        self.0.iter().find(|(x, _)| x == k).map(|(_, v)| v)
    }
    pub fn contains_key(&self, k: &str) -> bool {
        self.get(k).is_some()
    }
    pub fn clear(&mut self) {
        self.0.clear();
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn iter(&self) -> impl Iterator<Item = (&String, &String)> {
        self.0.iter().map(|(k, v)| (k, v))
    }
}

impl<'a> IntoIterator for &'a OptList {
    type Item = (&'a String, &'a String);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (String, String)>,
        fn(&'a (String, String)) -> (&'a String, &'a String),
    >;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(k, v)| (k, v))
    }
}

/// Global (command-line) settings, fio's names.
#[derive(Clone, Debug, Default)]
pub struct Globals {
    pub output: Option<String>,
    pub formats: Formats,
    pub status_interval: Option<Duration>,
    pub eta: Eta,
    pub sections: Vec<String>,
    pub parse_only: bool,
    /// nvme-bench: per-interval NDJSON file.
    pub interval_log: Option<String>,
    /// nvme-bench: SVG comparison plot.
    pub plot: Option<String>,
    /// nvme-bench: side-by-side table even for one job.
    pub compare: bool,
    /// fio's `--terse-version` (2..=5; 3 unless given).
    pub terse_version: u8,
    /// fio's `--bandwidth-log`: agg-{read,write,trim}_bw.log.
    pub bandwidth_log: bool,
    /// fio's `--readonly`: jobs that write are refused.
    pub readonly: bool,
    /// fio's `--warnings-fatal`.
    pub warnings_fatal: bool,
    /// fio's `--eta-newline=T`: the status line ends with a newline every T.
    pub eta_newline: Option<Duration>,
}

#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Formats {
    pub normal: bool,
    pub json: bool,
    pub json_plus: bool,
    pub terse: bool,
}

#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub enum Eta {
    #[default]
    Auto,
    Always,
    Never,
}

/// What a parse yields: the jobs in order, plus the `[global]` options as
/// written (for "global options" in the JSON).
#[derive(Clone, Debug, Default)]
pub struct JobSet {
    pub jobs: Vec<Job>,
    pub global_options: OptList,
}

// ---------------------------------------------------------------- numbers

/// fio's `str_to_decimal` with kb_base=1024: `k`/`kb`/`K` = 1024, and (fio's
/// compatibility quirk) `KiB` = 1000. Also `0x` hex. No suffix: bytes.
pub fn parse_size(s: &str) -> Result<u64> {
    let t = s.trim();
    // A '-' after the first character is arithmetic (a leading one is a
    // sign). Skip the first *character*: a job file may hold any UTF-8.
    let after_first = t.char_indices().nth(1).map_or("", |(i, _)| &t[i..]);
    if t.contains(['*', '+', '/', '%', '(', ')']) || after_first.contains('-') {
        return crate::expr::eval(t, kb_base());
    }
    parse_size_plain(t, kb_base())
}

thread_local! {
    /// The `kb_base` of the job whose options are being parsed (fio
    /// parses `kb_base` before the section's other options).
    static KB_BASE: std::cell::Cell<u64> = const { std::cell::Cell::new(1024) };
}

fn kb_base() -> u64 {
    KB_BASE.with(|k| k.get())
}

/// A number with fio's unit suffixes (no arithmetic).
pub fn parse_size_plain(s: &str, kb_base: u64) -> Result<u64> {
    let t = s.trim();
    if t.is_empty() {
        return Err(Error::msg("empty number"));
    }
    if let Some(h) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        return u64::from_str_radix(h, 16).map_err(|_| Error::msg(format!("bad number '{s}'")));
    }
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, suf) = t.split_at(split);
    if num.is_empty() {
        return Err(Error::msg(format!("bad number '{s}'")));
    }
    let suf_l = suf.to_ascii_lowercase();
    // fio's get_mult_bytes: with kb_base=1024 `k`/`kb` are 1024 and the
    // `KiB` forms (its quirk) 1000; with kb_base=1000 the other way round.
    let other = if kb_base == 1000 { 1024 } else { 1000 };
    let (p, base) = match suf_l.as_str() {
        "" | "b" => (0, 1024u64),
        "k" | "kb" => (1, kb_base),
        "m" | "mb" => (2, kb_base),
        "g" | "gb" => (3, kb_base),
        "t" | "tb" => (4, kb_base),
        "p" | "pb" => (5, kb_base),
        "kib" => (1, other),
        "mib" => (2, other),
        "gib" => (3, other),
        "tib" => (4, other),
        "pib" => (5, other),
        _ => return Err(Error::msg(format!("bad unit '{suf}' in '{s}'"))),
    };
    let mult = base.pow(p);
    if num.contains('.') {
        return Err(fraction_error(
            s,
            num,
            " byte(s)",
            "a whole number with a smaller unit (1536m, not 1.5g)",
        ));
    }
    let v: u64 = num
        .parse()
        .map_err(|_| Error::msg(format!("bad number '{s}'")))?;
    v.checked_mul(mult)
        .ok_or_else(|| Error::msg(format!("number '{s}' too large")))
}

/// A number with a fraction (`1.5g`, `runtime=2.5`). fio 3.33 reads it as
/// its integer part without the unit (parse.c `str_to_decimal`: `strtoll`,
/// then the unit is looked for at the '.', where there is none): `1.5g` is
/// 1 byte, `2.5m` is 2 seconds. Taking the fraction would run a different
/// job from fio's on the same file, and fio's reading is surely not what
/// was meant: refuse, and say how to write it.
fn fraction_error(s: &str, num: &str, unit: &str, instead: &str) -> Error {
    let whole = num
        .split('.')
        .next()
        .filter(|w| !w.is_empty())
        .unwrap_or("0");
    Error::msg(format!(
        "'{}': fio reads a number with a fraction as its integer part without the unit \
         ({whole}{unit} here), so nvme-bench does not take it; write {instead}",
        s.trim()
    ))
}

/// A size or a percentage (`size=50%`).
pub fn parse_amount(s: &str) -> Result<Amount> {
    let t = s.trim();
    if let Some(p) = t.strip_suffix('%') {
        let v: f64 = p
            .trim()
            .parse()
            .map_err(|_| Error::msg(format!("bad percentage '{s}'")))?;
        if !(0.0..=100.0).contains(&v) {
            return Err(Error::msg(format!("percentage '{s}' outside 0..100")));
        }
        return Ok(Amount::Percent(v));
    }
    parse_size(t).map(Amount::Bytes)
}

/// fio's time values: a bare number is in `default_unit`; suffixes
/// `ns`/`us`/`ms`/`s`/`m`/`h`/`d`.
pub fn parse_time(s: &str, default_unit: Duration) -> Result<Duration> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, suf) = t.split_at(split);
    if num.contains('.') {
        let unit = if default_unit == Duration::from_secs(1) {
            " s"
        } else {
            " (in the option's default unit)"
        };
        return Err(fraction_error(
            s,
            num,
            unit,
            "a whole number with a smaller unit (1500ms, not 1.5s)",
        ));
    }
    let v: f64 = num
        .parse()
        .map_err(|_| Error::msg(format!("bad time '{s}'")))?;
    let unit = match suf.to_ascii_lowercase().as_str() {
        "" => default_unit,
        "ns" => Duration::from_nanos(1),
        "us" | "usec" => Duration::from_micros(1),
        "ms" | "msec" => Duration::from_millis(1),
        "s" | "sec" => Duration::from_secs(1),
        "m" | "min" => Duration::from_secs(60),
        "h" => Duration::from_secs(3600),
        "d" => Duration::from_secs(86400),
        _ => return Err(Error::msg(format!("bad time unit '{suf}' in '{s}'"))),
    };
    if v < 0.0 || !v.is_finite() || v > 1e9 {
        return Err(Error::msg(format!("bad time '{s}'")));
    }
    Ok(unit.mul_f64(v))
}

/// fio's `str_steadystate_cb` (options.c) after its option parser: the
/// criterion is the text before the first `,` (else `:`), exactly one of
/// `iops`, `iops_slope`, `bw`, `bw_slope` (case matters, as in fio); the
/// threshold follows the first `:`. With a `%` (what follows it is
/// ignored, as fio's) it is a percentage of the mean; else IOPS, or for
/// bandwidth a size in bytes/s with fio's units (`10m`). A threshold fio
/// would read differently from what it says (`1+2` read as 1, `1.5` bytes
/// read as 1) is refused.
pub fn parse_steadystate(v: &str) -> Result<SteadyState> {
    let v = v.trim();
    let name_end = v.find(',').or_else(|| v.find(':')).unwrap_or(v.len());
    let (iops, slope) = match &v[..name_end] {
        "iops" => (true, false),
        "iops_slope" => (true, true),
        "bw" => (false, false),
        "bw_slope" => (false, true),
        o => {
            return Err(Error::msg(format!(
                "'{o}': the criterion is iops, iops_slope, bw or bw_slope"
            )))
        }
    };
    let Some((_, post)) = v.split_once(':') else {
        return Err(Error::msg(
            "steadystate threshold must be specified in addition to criterion (iops:10%)",
        ));
    };
    let post = post.trim();
    let float = |t: &str| -> Result<f64> {
        let t = t.trim();
        if let Some(h) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
            return u64::from_str_radix(h, 16)
                .map(|x| x as f64)
                .map_err(|_| Error::msg(format!("bad threshold '{t}'")));
        }
        // (fio's sscanf takes `nan` and `inf` too; a limit that is not a
        // finite number means nothing here.)
        t.parse::<f64>()
            .ok()
            .filter(|x| x.is_finite())
            .ok_or_else(|| Error::msg(format!("bad threshold '{t}'")))
    };
    let (pct, limit) = match post.split_once('%') {
        Some((n, _)) => (true, float(n)?),
        None if iops => (false, float(post)?),
        None => {
            let (neg, t) = match post.strip_prefix('-') {
                Some(t) => (true, t),
                None => (false, post),
            };
            let b = parse_size(t)? as f64;
            (false, if neg { -b } else { b })
        }
    };
    Ok(SteadyState {
        iops,
        slope,
        pct,
        limit,
    })
}

/// fio's td_steadystate_init check, made on a real run only (fio's
/// `--parse-only` does not): the jobs of a reporting group (same
/// `groupid`, whether or not `group_reporting` is set) must have the same
/// steady-state settings (what fio keeps: the window in whole seconds; for
/// a job with a window, the criterion and `ss_ramp`). The index of the
/// first job that differs from one before it in its group.
pub fn steadystate_conflict(jobs: &[Job]) -> Option<usize> {
    let key = |j: &Job| {
        let secs = j.ss_secs();
        if secs == 0 {
            (0, None, 0)
        } else {
            (secs, Some(j.ss), j.ss_ramp.as_micros())
        }
    };
    // Equal to every earlier job of its group: equal to the first.
    let mut first = std::collections::BTreeMap::new();
    jobs.iter().position(|j| {
        let k = key(j);
        *first.entry(j.groupid).or_insert(k) != k
    })
}

/// Files one job may use at most. Files open only when used and close
/// when done (at most `openfiles` at once), so the bound is memory: each
/// file keeps its name, region and offset generator (a few hundred bytes,
/// about what fio keeps per file), so 1 Mi files take some hundreds of MiB
/// per job. `MAX_JOB_FILES` bounds a job's clones together.
pub const MAX_FILES: u32 = 1 << 20;
pub const MAX_JOB_FILES: u64 = 1 << 22;

/// fio's `filesize`: a size, or a range `low-high` (each file's size drawn
/// in it); at least 1 byte.
fn parse_filesize(s: &str) -> Result<(u64, u64)> {
    let t = s.trim();
    let after_first = t.char_indices().nth(1).map_or(0, |(i, _)| i);
    let range = t[after_first..]
        .find('-')
        .map(|i| i + after_first)
        .and_then(|i| {
            let lo = parse_size_plain(&t[..i], kb_base()).ok()?;
            let hi = parse_size_plain(&t[i + 1..], kb_base()).ok()?;
            Some((lo, hi))
        });
    let (lo, hi) = match range {
        Some((lo, hi)) => (lo.min(hi), lo.max(hi)),
        None => {
            let v = parse_size(t)?;
            (v, v)
        }
    };
    if lo == 0 {
        return Err(Error::msg("a file size must be at least 1 byte"));
    }
    Ok((lo, hi))
}

/// fio's `file_service_type` (options.c `str_fst_cb`).
fn parse_file_service(s: &str) -> Result<FileService> {
    let (kind, post) = match s.split_once(':') {
        Some((k, p)) => (k.trim(), Some(p.trim())),
        None => (s.trim(), None),
    };
    let count = |p: Option<&str>| -> Result<u32> {
        match p {
            None => Ok(1),
            // fio's atoi: 0 leaves the count at 0 - 1, i.e. for ever.
            Some(p) => p
                .parse::<u32>()
                .map(|n| if n == 0 { u32::MAX } else { n })
                .map_err(|_| Error::msg(format!("bad count '{p}'"))),
        }
    };
    // `value[:center]` of the skewed kinds.
    let distr = |p: Option<&str>, def: f64| -> Result<(f64, Option<f64>)> {
        let Some(p) = p else { return Ok((def, None)) };
        let (v, c) = match p.split_once(':') {
            Some((v, c)) => (v, Some(c)),
            None => (p, None),
        };
        let v: f64 = v
            .trim()
            .parse()
            .map_err(|_| Error::msg(format!("bad value '{v}'")))?;
        let c = match c {
            Some(c) => {
                let c: f64 = c
                    .trim()
                    .parse()
                    .map_err(|_| Error::msg(format!("bad center '{c}'")))?;
                if !(0.0..=1.0).contains(&c) {
                    return Err(Error::msg(
                        "distribution center out of range (0 <= center <= 1.0)",
                    ));
                }
                Some(c)
            }
            None => None,
        };
        if !v.is_finite() {
            return Err(Error::msg(format!("bad value '{v}'")));
        }
        Ok((v, c))
    };
    Ok(match kind {
        "random" => FileService::Random(count(post)?),
        "roundrobin" => FileService::RoundRobin(count(post)?),
        "sequential" => {
            count(post)?;
            FileService::Sequential
        }
        "zipf" => {
            let (t, c) = distr(post, 1.1)?;
            if t == 1.0 || t <= 0.0 {
                return Err(Error::msg("zipf theta must be > 0 and not 1.0"));
            }
            FileService::Zipf(t, c)
        }
        "pareto" => {
            let (h, c) = distr(post, 0.2)?;
            if !(h > 0.0 && h < 1.0) {
                return Err(Error::msg("pareto input out of range (0 < input < 1.0)"));
            }
            FileService::Pareto(h, c)
        }
        "normal" | "gauss" => {
            let (d, c) = distr(post, 0.0)?;
            if !(0.0..100.0).contains(&d) {
                return Err(Error::msg(
                    "normal deviation out of range (0 <= input < 100.0)",
                ));
            }
            FileService::Gauss(d, c)
        }
        _ => {
            return Err(Error::msg(
                "expected random, roundrobin, sequential, zipf, pareto, normal or gauss",
            ))
        }
    })
}

fn parse_bool(s: &str) -> Result<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "" | "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(Error::msg(format!("expected 0 or 1, got '{s}'"))),
    }
}

fn parse_u32(s: &str) -> Result<u32> {
    let v = parse_size(s)?;
    u32::try_from(v).map_err(|_| Error::msg(format!("'{s}' too large")))
}

/// `a,b` → per-direction values; `a` alone applies to both; `,b` sets write only.
/// `per_dir` with fio's third, trim, value (`R,W,T`); a single value
/// sets all three.
fn per_dir3<T: Copy>(
    s: &str,
    f: impl Fn(&str) -> Result<T>,
    cur: [T; 2],
    cur_trim: T,
) -> Result<([T; 2], T)> {
    let mut parts = s.split(',');
    let (r, w, t) = (parts.next(), parts.next(), parts.next());
    if parts.next().is_some() {
        return Err(Error::msg(format!(
            "'{s}': at most three values (read,write,trim)"
        )));
    }
    let (r, w, t) = match (r, w, t) {
        (Some(r), None, None) => {
            let v = f(r)?;
            return Ok(([v, v], v));
        }
        (r, w, t) => (r.unwrap_or(""), w.unwrap_or(""), t.unwrap_or("")),
    };
    let mut out = cur;
    let mut trim = cur_trim;
    if !r.trim().is_empty() {
        out[0] = f(r)?;
    }
    if !w.trim().is_empty() {
        out[1] = f(w)?;
    }
    if !t.trim().is_empty() {
        trim = f(t)?;
    }
    Ok((out, trim))
}

/// A percentage, 0 to 100.
fn parse_percent(s: &str) -> Result<u32> {
    match s.trim().trim_end_matches('%').parse::<u32>() {
        Ok(v) if v <= 100 => Ok(v),
        _ => Err(Error::msg(format!("'{s}': a percentage, 0 to 100"))),
    }
}

fn per_dir<T: Copy>(s: &str, f: impl Fn(&str) -> Result<T>, cur: [T; 2]) -> Result<[T; 2]> {
    let mut out = cur;
    match s.split_once(',') {
        None => {
            let v = f(s)?;
            out = [v, v];
        }
        Some((r, w)) => {
            if !r.trim().is_empty() {
                out[0] = f(r)?;
            }
            if !w.trim().is_empty() {
                out[1] = f(w)?;
            }
            if w.contains(',') {
                return Err(Error::msg(format!(
                    "'{s}': trim values are not supported (reads and writes only)"
                )));
            }
        }
    }
    Ok(out)
}

fn parse_bs(s: &str) -> Result<u64> {
    if s.contains('-') || s.contains(':') {
        return Err(Error::msg(format!(
            "'{s}': bs takes sizes, not ranges; use bsrange=min-max (or bssplit)"
        )));
    }
    let v = parse_size(s)?;
    // Multiples of 512 are checked in `validate` (ioengine=null takes any).
    if v == 0 {
        return Err(Error::msg("block size 0"));
    }
    Ok(v)
}

/// One direction of `bsrange`: `min-max` (sizes with fio's units).
fn parse_bsrange_one(s: &str) -> Result<(u64, u64)> {
    let (a, b) = s
        .split_once('-')
        .ok_or_else(|| Error::msg(format!("bsrange '{s}': expected min-max, e.g. 4k-64k")))?;
    let (lo, hi) = (parse_bs(a)?, parse_bs(b)?);
    if lo > hi {
        return Err(Error::msg(format!("bsrange '{s}': min is larger than max")));
    }
    Ok((lo, hi))
}

fn parse_bssplit_one(s: &str) -> Result<Vec<(u64, u32)>> {
    let mut out = Vec::new();
    let mut unspecified = Vec::new();
    for part in s.split(':').filter(|p| !p.trim().is_empty()) {
        let (b, p) = match part.split_once('/') {
            Some((b, p)) => (b, Some(p)),
            None => (part, None),
        };
        let b = parse_bs(b)?;
        match p {
            Some(p) if !p.trim().is_empty() => {
                let p: u32 = p
                    .trim()
                    .parse()
                    .map_err(|_| Error::msg(format!("bad percentage in bssplit '{part}'")))?;
                out.push((b, p));
            }
            _ => unspecified.push(b),
        }
    }
    let total: u32 = out.iter().map(|x| x.1).sum();
    if total > 100 {
        return Err(Error::msg(format!("bssplit '{s}' adds up to {total}%")));
    }
    // fio: entries without a percentage share what is left equally.
    if !unspecified.is_empty() {
        let share = (100 - total) / unspecified.len() as u32;
        let n = unspecified.len();
        for (i, b) in unspecified.into_iter().enumerate() {
            let extra = if i == n - 1 {
                (100 - total) - share * n as u32
            } else {
                0
            };
            out.push((b, share + extra));
        }
    }
    let total: u32 = out.iter().map(|x| x.1).sum();
    if total != 100 {
        return Err(Error::msg(format!(
            "bssplit '{s}' adds up to {total}%, not 100%"
        )));
    }
    Ok(out)
}

pub fn parse_cpus(s: &str) -> Result<Vec<usize>> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a, b),
            None => (part, part),
        };
        let a: usize = a
            .trim()
            .parse()
            .map_err(|_| Error::msg(format!("bad CPU '{part}'")))?;
        let b: usize = b
            .trim()
            .parse()
            .map_err(|_| Error::msg(format!("bad CPU '{part}'")))?;
        if b < a || b > 4095 {
            return Err(Error::msg(format!("bad CPU range '{part}'")));
        }
        out.extend(a..=b);
    }
    if out.is_empty() {
        return Err(Error::msg("empty CPU list"));
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// A libnuma node string as fio passes it to `numa_parse_nodestring`:
/// `all`, or node numbers and ranges (`0`, `0-1`, `0,2-3`). Only the
/// syntax is checked here; whether the host has the nodes is checked when
/// the job set is run (numa.rs), as fio checks only on a real parse.
/// `None` is `all`. Other libnuma forms (`!`, `+`) are refused.
pub fn parse_nodes(s: &str) -> Result<Option<Vec<u32>>> {
    let t = s.trim();
    if t == "all" {
        return Ok(None);
    }
    let mut out = Vec::new();
    for part in t.split(',') {
        let part = part.trim();
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let num = |x: &str| -> Result<u32> {
            let x = x.trim();
            if x.is_empty() || !x.bytes().all(|c| c.is_ascii_digit()) {
                return Err(Error::msg(format!(
                    "bad NUMA node list '{t}': node numbers and ranges (0,2-3) or 'all'"
                )));
            }
            x.parse::<u32>()
                .ok()
                .filter(|&n| n < MAX_NUMA_NODES)
                .ok_or_else(|| {
                    Error::msg(format!(
                        "NUMA node '{x}' out of range (at most {})",
                        MAX_NUMA_NODES - 1
                    ))
                })
        };
        let (a, b) = (num(a)?, num(b)?);
        if b < a {
            return Err(Error::msg(format!("bad NUMA node range '{part}'")));
        }
        out.extend(a..=b);
    }
    out.sort_unstable();
    out.dedup();
    Ok(Some(out))
}

/// Nodes a libnuma node mask holds (its 1024 bits).
pub const MAX_NUMA_NODES: u32 = 1024;

/// `numa_mem_policy`: fio's modes and the libnuma call each makes.
#[derive(Clone, Debug, PartialEq)]
pub enum MemPolicy {
    /// `default`: fio makes no call.
    Default,
    /// `prefer:N`: `numa_set_preferred(N)`.
    Prefer(u32),
    /// `bind:NODES`: `numa_set_membind`.
    Bind(String),
    /// `interleave[:NODES]` (all nodes without a list): `numa_set_interleave_mask`.
    Interleave(String),
    /// `local`: `numa_set_localalloc`.
    Local,
}

/// fio's `str_numa_mpol_cb`: `mode[:nodes]`.
pub fn parse_mem_policy(s: &str) -> Result<MemPolicy> {
    let t = s.trim();
    let (mode, nodes) = match t.split_once(':') {
        Some((m, n)) => (m, Some(n)),
        None => (t, None),
    };
    let checked = |n: &str| -> Result<String> {
        parse_nodes(n)?;
        Ok(n.trim().to_string())
    };
    match (mode, nodes) {
        ("default", None) => Ok(MemPolicy::Default),
        ("local", None) => Ok(MemPolicy::Local),
        ("default" | "local", Some(_)) => Err(Error::msg(format!(
            "'{t}': no node list for '{mode}' (fio: NO nodelist for 'local')"
        ))),
        ("prefer", Some(n)) if !n.is_empty() && n.bytes().all(|c| c.is_ascii_digit()) => n
            .parse::<u32>()
            .ok()
            .filter(|&v| v < MAX_NUMA_NODES)
            .map(MemPolicy::Prefer)
            .ok_or_else(|| Error::msg(format!("'{t}': node out of range"))),
        ("prefer", _) => Err(Error::msg(format!(
            "'{t}': one node is needed for 'prefer'"
        ))),
        ("bind", Some(n)) => Ok(MemPolicy::Bind(checked(n)?)),
        ("bind", None) => Err(Error::msg(format!(
            "'{t}': a nodelist is needed for 'bind'"
        ))),
        ("interleave", n) => Ok(MemPolicy::Interleave(checked(n.unwrap_or("all"))?)),
        _ => Err(Error::msg(format!(
            "'{t}': memory policy should be: default, prefer, bind, interleave, local"
        ))),
    }
}

/// `verify_pattern`: `0x` hex bytes, or a quoted string, or both joined with `,`... kept simple:
/// one hex number or one quoted string.
pub fn parse_pattern(s: &str) -> Result<Vec<u8>> {
    let t = s.trim();
    if let Some(h) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        if h.is_empty() || !h.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(Error::msg(format!("bad hex pattern '{s}'")));
        }
        let h = if h.len() % 2 == 1 {
            format!("0{h}")
        } else {
            h.to_string()
        };
        return (0..h.len())
            .step_by(2)
            .map(|i| {
                u8::from_str_radix(&h[i..i + 2], 16)
                    .map_err(|_| Error::msg(format!("bad hex pattern '{s}'")))
            })
            .collect();
    }
    for q in ['"', '\''] {
        if t.len() >= 2 && t.starts_with(q) && t.ends_with(q) {
            return Ok(t.as_bytes()[1..t.len() - 1].to_vec());
        }
    }
    if let Ok(v) = t.parse::<u32>() {
        // fio stores a decimal pattern as the integer's bytes, little-endian,
        // without leading zero bytes.
        let b = v.to_le_bytes();
        let n = 4 - (v.leading_zeros() / 8) as usize;
        return Ok(b[..n.max(1)].to_vec());
    }
    Err(Error::msg(format!(
        "verify_pattern '{s}': use 0xHEX, a decimal number or a quoted string (%o is not supported)"
    )))
}

/// fio's smallest `verify_interval`: twice its 40-byte verify_header.
pub const VERIFY_INTERVAL_MIN: u64 = 80;

/// fio's header length for a verify type (verify.c `hdr_size`: its
/// 40-byte verify_header and the checksum's own header). A verify interval
/// not above it fails the job in fio ("Blocksize too small"); nvme-bench's
/// headers are never longer, so the same check is made with fio's sizes.
pub fn fio_verify_header_len(v: Verify) -> u64 {
    40 + match v {
        Verify::None | Verify::Meta | Verify::Pattern => 0,
        Verify::Crc32c => 4,
        Verify::Hash(h) => match h {
            HashKind::Md5 => 16,
            HashKind::Sha1 => 20,
            // fio's vhdr_sha256 and vhdr_sha512 hold 64 and 128 bytes.
            HashKind::Sha256 => 64,
            HashKind::Sha512 => 128,
            HashKind::Sha3_224 => 28,
            HashKind::Sha3_256 => 32,
            HashKind::Sha3_384 => 48,
            HashKind::Sha3_512 => 64,
            HashKind::Crc32 => 4,
        },
    }
}

// ------------------------------------------------------------ option table

/// fio options that nvme-bench knows but does not implement: a clear error.
pub const UNSUPPORTED: &[&str] = &[
    "bs_unaligned",
    "bs_is_seq_rand",
    "fsync",
    "fdatasync",
    "end_fsync",
    "fsync_on_close",
    "write_barrier",
    "verify_offset",
    "verify_state_save",
    "verify_state_load",
    "experimental_verify",
    "trim_percentage",
    "write_iolog",
    "read_iolog",
    "replay_no_stall",
    "pre_read",
    "refill_buffers",
    "zero_buffers",
    "iomem",
    "mem",
    "iomem_align",
    "hugepage-size",
    "lockmem",
    "nice",
    "cpumask",
    "percentage_random",
    "allrandrepeat",
    "rwmixcycle",
    "iodepth_low",
    "serialize_overlap",
    "offset_align",
    "size_increment",
    "exitall_on_error",
    "disable_bw_measurement",
    "stats",
    "cgroup",
    "uid",
    "gid",
    "atomic",
    "md_per_io_size",
    "pi_act",
    "pi_chk",
    "apptag",
    "apptag_mask",
    "uncached",
    "nowait",
    "force_async",
    "sqthread_poll_cpu_mask",
    "trim_backlog",
    "trim_verify_zero",
    "significant_figures",
    "ioscheduler",
    "lat_percentiles_only",
    "slat_percentiles",
    "write_hint",
    "unlink_each_loop",
    "readfua",
    "writefua",
    "deac",
    // fio 3.33 options (fio --cmdhelp=all, and their aliases) not listed
    // above: a job naming one is refused as unsupported, not unknown.
    "allow_file_create",
    "allow_mounted_write",
    "bwavgtime",
    "cgroup_nodelete",
    "cgroup_weight",
    "create_only",
    "disk_util",
    "gtod_cpu",
    "iopsavgtime",
    "lockfile",
    "log_alternate_epoch",
    "log_alternate_epoch_clock_id",
    "log_compression",
    "log_compression_cpus",
    "log_entries",
    "log_store_compressed",
    "log_unix_epoch",
    "max_latency",
    "merge_blktrace_file",
    "merge_blktrace_iters",
    "merge_blktrace_scalars",
    "opendir",
    "profile",
    "rate_ignore_thinktime",
    "read_iolog_chunked",
    "replay_align",
    "replay_redirect",
    "replay_scale",
    "replay_skip",
    "replay_time_scale",
    "rw_sequencer",
    "sync_file_range",
    "thinktime_iotime",
    "trim_backlog_batch",
    "zonecapacity",
    "verifysort",
    "verifysort_nr",
    "verify_async_cpus",
    "softrandommap",
    "percentage_sequential",
    "flow_watermark",
    "gpu_dev_id",
];

/// Every option this tool implements, for `--cmdhelp`-like listings and docs.
pub const SUPPORTED: &[&str] = &[
    "name",
    "block_error_percentiles",
    "io_submit_mode",
    "rate_min",
    "rate_iops_min",
    "rate_cycle",
    "flow",
    "flow_id",
    "flow_sleep",
    "unlink",
    "zonemode",
    "zonesize",
    "zonerange",
    "zoneskip",
    "max_open_zones",
    "job_max_open_zones",
    "zone_reset_threshold",
    "zone_reset_frequency",
    "read_beyond_wp",
    "ignore_zone_limits",
    "nonvectored",
    "description",
    "filename",
    "directory",
    "nrfiles",
    "nr_files",
    "openfiles",
    "file_service_type",
    "filename_format",
    "unique_filename",
    "file_append",
    "ioengine",
    "stonewall",
    "rw",
    "readwrite",
    "rwmixread",
    "rwmixwrite",
    "bs",
    "blocksize",
    "bssplit",
    "bsrange",
    "blocksize_range",
    "size",
    "filesize",
    "offset",
    "iodepth",
    "iodepth_batch_submit",
    "iodepth_batch",
    "iodepth_batch_complete_min",
    "iodepth_batch_complete",
    "iodepth_batch_complete_max",
    "numjobs",
    "runtime",
    "timeout",
    "time_based",
    "ramp_time",
    "steadystate",
    "ss",
    "steadystate_duration",
    "ss_dur",
    "steadystate_ramp_time",
    "ss_ramp",
    "cpus_allowed",
    "cpus_allowed_policy",
    "numa_cpu_nodes",
    "numa_mem_policy",
    "sync",
    "scramble_buffers",
    "latency_target",
    "latency_window",
    "latency_percentile",
    "latency_run",
    "random_generator",
    "norandommap",
    "randrepeat",
    "randseed",
    "random_distribution",
    "rate_iops",
    "rate_process",
    "unified_rw_reporting",
    "verify",
    "verify_pattern",
    "do_verify",
    "verify_only",
    "verify_backlog",
    "verify_backlog_batch",
    "verify_dump",
    "verify_interval",
    "fill_device",
    "fill_fs",
    "create_serialize",
    "offset_increment",
    "group_reporting",
    "percentile_list",
    "clat_percentiles",
    "lat_percentiles",
    "direct",
    "create_on_open",
    "fallocate",
    "overwrite",
    "create_fsync",
    "invalidate",
    "fadvise_hint",
    "thread",
    "hipri",
    "fixedbufs",
    "registerfiles",
    "sqthread_poll",
    "sqthread_poll_cpu",
    "cmd_type",
    "exec_prerun",
    "exec_postrun",
    "nvme_queue_size",
    "nvme_cmb_queues",
    "nvme_shadow_doorbells",
    "nvme_pin",
    "nvme_delay_submit",
    "nvme_io_timeout",
    "nvme_timeout_policy",
    "continue_on_error",
    "ignore_error",
    "error_dump",
    "verify_fatal",
    "verify_async",
    "kb_base",
    "unit_base",
    "loops",
    "startdelay",
    "io_size",
    "io_limit",
    "number_ios",
    "blockalign",
    "ba",
    "gtod_reduce",
    "clocksource",
    "disable_slat",
    "disable_clat",
    "disable_lat",
    "buffer_pattern",
    "buffered",
    "rate",
    "new_group",
    "wait_for",
    "exitall",
    "exit_what",
    "buffer_compress_percentage",
    "buffer_compress_chunk",
    "dedupe_percentage",
    "dedupe_mode",
    "dedupe_working_set_percentage",
    "dedupe_global",
    "thinktime",
    "thinktime_spin",
    "thinktime_blocks",
    "thinktime_blocks_type",
    "write_bw_log",
    "write_lat_log",
    "write_iops_log",
    "log_avg_msec",
    "log_max_value",
    "log_offset",
    "per_job_logs",
    "write_hist_log",
    "log_hist_msec",
    "log_hist_coarseness",
    "prio",
    "prioclass",
    "cmdprio_percentage",
    "cmdprio",
    "cmdprio_class",
    "cmdprio_bssplit",
    "log_prio",
];

/// fio's option aliases (options.c `.alias`): alias -> option name.
pub const ALIASES: &[(&str, &str)] = &[
    ("readwrite", "rw"),
    ("iodepth_batch_submit", "iodepth_batch"),
    ("iodepth_batch_complete", "iodepth_batch_complete_min"),
    ("io_limit", "io_size"),
    ("fill_fs", "fill_device"),
    ("fileoffset", "offset"),
    ("blocksize", "bs"),
    ("blockalign", "ba"),
    ("blocksize_range", "bsrange"),
    ("blocksize_unaligned", "bs_unaligned"),
    ("nr_files", "nrfiles"),
    ("timeout", "runtime"),
    ("iomem", "mem"),
    ("mem_align", "iomem_align"),
    ("ratemin", "rate_min"),
    ("ratecycle", "rate_cycle"),
    ("wait_for_previous", "stonewall"),
    ("disable_bw", "disable_bw_measurement"),
    ("ss", "steadystate"),
    ("ss_dur", "steadystate_duration"),
    ("ss_ramp", "steadystate_ramp_time"),
];

/// The name fio knows an option by (an alias's option; any other name
/// as it is).
pub fn canonical(name: &str) -> &str {
    ALIASES
        .iter()
        .find(|(a, _)| *a == name)
        .map_or(name, |(_, o)| o)
}

/// Apply one `key=value` to `job`. An alias is the option it names, as
/// in fio.
pub fn apply(job: &mut Job, key: &str, val: Option<&str>) -> Result<()> {
    let key = canonical(key.trim());
    // fio's `$pagesize`, `$mb_memory`, `$ncpus`, replaced before parsing.
    let expanded = val.map(crate::expr::keywords);
    let val = expanded.as_deref();
    let v = val.map(str::trim).unwrap_or("");
    KB_BASE.with(|k| k.set(job.kb_base));
    let need = || -> Result<&str> {
        if val.is_none() || v.is_empty() {
            Err(Error::msg(format!("option '{key}' needs a value")))
        } else {
            Ok(v)
        }
    };
    let ctx = |e: Error| Error::msg(format!("option '{key}={v}': {e}"));
    match key {
        "name" => job.name = need()?.to_string(),
        "description" => job.description = Some(v.to_string()),
        "filename" => job.filename = Some(need()?.to_string()),
        "directory" => job.directory = Some(need()?.to_string()),
        "unit_base" => {
            job.unit_base_bits = match need()? {
                "0" | "8" => false,
                "1" => true,
                s => {
                    return Err(Error::msg(format!(
                        "option '{key}={s}': 0 (auto: bytes), 8 (bytes) or 1 (bits)"
                    )))
                }
            }
        }
        "kb_base" => {
            job.kb_base = match parse_size_plain(need()?, 1024).map_err(ctx)? {
                b @ (1000 | 1024) => b,
                _ => return Err(Error::msg(format!("option 'kb_base={v}': 1000 or 1024"))),
            }
        }
        "loops" => {
            let n = parse_u32(need()?).map_err(ctx)?;
            if n == 0 {
                return Err(Error::msg(format!("option 'loops={v}': at least 1")));
            }
            job.loops = n;
        }
        "startdelay" => {
            let s = need()?;
            let t = |x: &str| parse_time(x, Duration::from_secs(1)).map_err(ctx);
            job.startdelay = match s.split_once('-') {
                Some((a, b)) => {
                    let (a, b) = (t(a)?, t(b)?);
                    if a > b {
                        return Err(Error::msg(format!(
                            "option 'startdelay={s}': the range's low end is above its high end"
                        )));
                    }
                    (a, b)
                }
                None => {
                    let d = t(s)?;
                    (d, d)
                }
            };
        }
        "io_size" | "io_limit" => {
            let b = parse_size(need()?).map_err(ctx)?;
            job.io_size = (b > 0).then_some(b);
        }
        "number_ios" => job.number_ios = parse_size(need()?).map_err(ctx)?,
        "blockalign" | "ba" => {
            // fio takes `r,w`; offsets are drawn per job here, so both
            // must agree.
            let [r, w] = per_dir(need()?, parse_bs, [0, 0]).map_err(ctx)?;
            if r != w && r != 0 && w != 0 {
                return Err(Error::msg(format!(
                    "option 'blockalign={v}': different read and write alignments are not supported"
                )));
            }
            job.blockalign = Some(r.max(w));
        }
        "gtod_reduce" => {
            if parse_bool(v).map_err(ctx)? {
                job.disable_slat = true;
                job.disable_clat = true;
                job.disable_lat = true;
            }
        }
        "disable_slat" => job.disable_slat = parse_bool(v).map_err(ctx)?,
        "disable_clat" => job.disable_clat = parse_bool(v).map_err(ctx)?,
        "disable_lat" => job.disable_lat = parse_bool(v).map_err(ctx)?,
        "buffer_pattern" => {
            job.buffer_pattern = parse_pattern(need()?).map_err(ctx)?;
            // fio's str_buffer_pattern_cb: the pattern is written as is.
            job.scramble_buffers = false;
        }
        "buffered" => job.direct = !parse_bool(v).map_err(ctx)?,
        "rate" => {
            let (r, t) = per_dir3(need()?, |s| parse_size(s).map(Some), [None, None], None)
                .map_err(ctx)?;
            job.rate = r.map(|x| x.filter(|&n| n > 0));
            job.rate_trim[0] = t.filter(|&n| n > 0);
        }
        "new_group" => job.new_group = parse_bool(v).map_err(ctx)?,
        "wait_for" => job.wait_for = Some(need()?.to_string()),
        "exitall" => job.exitall = parse_bool(v).map_err(ctx)?,
        "dedupe_percentage" => job.dedupe_percentage = parse_percent(need()?).map_err(ctx)?,
        "dedupe_working_set_percentage" => {
            job.dedupe_working_set_percentage = parse_percent(need()?).map_err(ctx)?
        }
        "buffer_compress_percentage" => {
            job.compress_percentage = parse_percent(need()?).map_err(ctx)?
        }
        "buffer_compress_chunk" => job.compress_chunk = parse_size(need()?).map_err(ctx)?,
        "dedupe_global" => job.dedupe_global = parse_bool(v).map_err(ctx)?,
        "dedupe_mode" => {
            job.dedupe_mode = match need()? {
                "repeat" => DedupeMode::Repeat,
                "working_set" => DedupeMode::WorkingSet,
                o => {
                    return Err(Error::msg(format!(
                        "option 'dedupe_mode={o}': repeat or working_set"
                    )))
                }
            }
        }
        "exit_what" => {
            job.exit_what = match need()? {
                "group" => ExitWhat::Group,
                "stonewall" => ExitWhat::Stonewall,
                "all" => ExitWhat::All,
                o => {
                    return Err(Error::msg(format!(
                        "option 'exit_what={o}': group, stonewall or all"
                    )))
                }
            }
        }
        "thinktime" => job.thinktime = parse_time(need()?, Duration::from_micros(1)).map_err(ctx)?,
        "thinktime_spin" => {
            job.thinktime_spin = parse_time(need()?, Duration::from_micros(1)).map_err(ctx)?
        }
        "thinktime_blocks" => {
            let b = parse_u32(need()?).map_err(ctx)?;
            if b == 0 {
                return Err(Error::msg(format!(
                    "option 'thinktime_blocks={v}': must be at least 1"
                )));
            }
            job.thinktime_blocks = b;
        }
        "thinktime_blocks_type" => {
            job.thinktime_by_issue = match need()? {
                "complete" => false,
                "issue" => true,
                other => {
                    return Err(Error::msg(format!(
                        "option 'thinktime_blocks_type={other}': complete or issue"
                    )))
                }
            }
        }
        // fio: the value is the log's prefix; without one, the job's name.
        "write_bw_log" => job.logs.bw = Some(v.to_string()),
        "write_lat_log" => job.logs.lat = Some(v.to_string()),
        "write_iops_log" => job.logs.iops = Some(v.to_string()),
        "log_avg_msec" => job.logs.avg_msec = u64::from(parse_u32(need()?).map_err(ctx)?),
        "log_max_value" => job.logs.max_value = parse_bool(v).map_err(ctx)?,
        "log_offset" => job.logs.offset = parse_bool(v).map_err(ctx)?,
        "log_prio" => job.logs.prio = parse_bool(v).map_err(ctx)?,
        "prio" => job.ioprio = Some(parse_ranged(need()?, 0, 7).map_err(ctx)?),
        "prioclass" => job.ioprio_class = Some(parse_ranged(need()?, 0, 3).map_err(ctx)?),
        "cmdprio_percentage" => {
            job.cmdprio.percentage =
                per_dir(need()?, |s| parse_ranged(s, 0, 100), job.cmdprio.percentage)
                    .map_err(ctx)?
        }
        "cmdprio_class" => {
            job.cmdprio.class =
                per_dir(need()?, |s| parse_ranged(s, 1, 3), job.cmdprio.class).map_err(ctx)?
        }
        "cmdprio" => {
            job.cmdprio.level =
                per_dir(need()?, |s| parse_ranged(s, 0, 7), job.cmdprio.level).map_err(ctx)?
        }
        "cmdprio_bssplit" => {
            let s = need()?;
            job.cmdprio.bssplit = parse_cmdprio_bssplit(s).map_err(ctx)?;
            job.cmdprio.bssplit_str = Some(s.to_string());
        }
        "per_job_logs" => job.logs.per_job = parse_bool(v).map_err(ctx)?,
        "write_hist_log" => job.logs.hist = Some(v.to_string()),
        "log_hist_msec" => job.logs.hist_msec = u64::from(parse_u32(need()?).map_err(ctx)?),
        "log_hist_coarseness" => {
            let c = parse_u32(need()?).map_err(ctx)?;
            if c > 6 {
                return Err(Error::msg(format!(
                    "option 'log_hist_coarseness={v}': must be 0 to 6 (as fio)"
                )));
            }
            job.logs.hist_coarseness = c;
        }
        "nrfiles" | "nr_files" => {
            let n = parse_u32(need()?).map_err(ctx)?;
            if n == 0 || n > MAX_FILES {
                return Err(Error::msg(format!(
                    "option '{key}={v}': must be 1..{MAX_FILES} (each file's state takes memory while the job runs)"
                )));
            }
            job.nrfiles = n;
        }
        "openfiles" => job.openfiles = parse_u32(need()?).map_err(ctx)?,
        "filename_format" => job.filename_format = Some(need()?.to_string()),
        "unique_filename" => job.unique_filename = parse_bool(v).map_err(ctx)?,
        "file_append" => job.file_append = parse_bool(v).map_err(ctx)?,
        "file_service_type" => job.file_service = parse_file_service(need()?).map_err(ctx)?,
        "filesize" => job.filesize = Some(parse_filesize(need()?).map_err(ctx)?),
        "ioengine" => {
            job.ioengine_name = need()?.to_string();
            job.ioengine = match need()? {
                "nvme-vfio" | "nvme_vfio" | "nvme" | "spdk" => EngineKind::NvmeVfio,
                "io_uring" => EngineKind::IoUring,
                "io_uring_cmd" => EngineKind::IoUringCmd,
                "psync" | "pvsync" | "sync" => EngineKind::Psync,
                "null" => EngineKind::Null,
                "libaio" => EngineKind::Libaio,
                "nvme-model" | "nvme_model" => EngineKind::NvmeModel,
                other => {
                    return Err(Error::msg(format!(
                "ioengine '{other}' is not supported (nvme-vfio, io_uring, io_uring_cmd, libaio, psync, null, nvme-model)"
            )))
                }
            }
        }
        "stonewall" | "wait_for_previous" => job.stonewall = parse_bool(v).map_err(ctx)?,
        "rw" | "readwrite" => {
            let (s, modifier) = match need()?.split_once(':') {
                Some((m, n)) => (m.trim(), Some(n.trim())),
                None => (v, None),
            };
            job.rw_back = 0;
            job.rw_modifier = match modifier {
                // fio: sequential I/O seeks back that much after each I/O
                // (`rw=read:-8k`: reads the region backwards).
                Some(n) if n.starts_with('-') && !s.starts_with("rand") => {
                    job.rw_back = parse_size(&n[1..]).map_err(ctx)?;
                    0
                }
                // fio: a count of I/Os for random modes, bytes for sequential.
                Some(n) if !n.is_empty() => parse_size(n).map_err(ctx)?,
                _ => 0,
            };
            job.rw = match s {
                "read" => Rw::Read,
                "write" => Rw::Write,
                "randread" => Rw::RandRead,
                "randwrite" => Rw::RandWrite,
                "rw" | "readwrite" => Rw::Rw,
                "randrw" => Rw::RandRw,
                "trim" => Rw::Trim,
                "randtrim" => Rw::RandTrim,
                "trimwrite" => Rw::TrimWrite,
                "randtrimwrite" => Rw::RandTrimWrite,
                _ => return Err(Error::msg(format!("option 'rw={s}': unknown mode"))),
            }
        }
        "rwmixread" => {
            let p = parse_u32(need()?).map_err(ctx)?;
            if p > 100 {
                return Err(Error::msg(format!("option 'rwmixread={v}': over 100")));
            }
            job.rwmixread = p;
        }
        "rwmixwrite" => {
            let p = parse_u32(need()?).map_err(ctx)?;
            if p > 100 {
                return Err(Error::msg(format!("option 'rwmixwrite={v}': over 100")));
            }
            job.rwmixread = 100 - p;
        }
        "bs" | "blocksize" => {
            // fio's `read,write,trim`: one value sets all three, two leave
            // trim at the write size (as fio shows it: `(T)` = `(W)`).
            let s = need()?;
            let (rw, t) = match s.match_indices(',').nth(1) {
                Some((i, _)) => (&s[..i], Some(&s[i + 1..])),
                None => (s, None),
            };
            job.bs = per_dir(rw, parse_bs, job.bs).map_err(ctx)?;
            job.bs_trim = match t {
                Some(t) if !t.trim().is_empty() => parse_bs(t.trim()).map_err(ctx)?,
                _ => job.bs[1],
            };
        }
        "bsrange" | "blocksize_range" => {
            let cur = job.bsrange;
            let v =
                per_dir(need()?, |p| parse_bsrange_one(p.trim()).map(Some), cur).map_err(ctx)?;
            job.bsrange = v;
        }
        "bssplit" => {
            let s = need()?;
            let (r, w) = match s.split_once(',') {
                Some((r, w)) => (r, Some(w)),
                None => (s, None),
            };
            let rv = parse_bssplit_one(r).map_err(ctx)?;
            let wv = match w {
                Some(w) if !w.trim().is_empty() => parse_bssplit_one(w).map_err(ctx)?,
                _ => rv.clone(),
            };
            job.bssplit = [rv, wv];
        }
        "size" => job.size = Some(parse_amount(need()?).map_err(ctx)?),
        "offset" => job.offset = parse_amount(need()?).map_err(ctx)?,
        "iodepth" => {
            let d = parse_u32(need()?).map_err(ctx)?;
            if d == 0 || d > 65535 {
                return Err(Error::msg(format!(
                    "option 'iodepth={v}': must be 1..65535"
                )));
            }
            job.iodepth = d;
        }
        "iodepth_batch_submit" | "iodepth_batch" => {
            job.iodepth_batch_submit = parse_u32(need()?).map_err(ctx)?
        }
        "iodepth_batch_complete_min" | "iodepth_batch_complete" => {
            job.iodepth_batch_complete_min = parse_u32(need()?).map_err(ctx)?
        }
        "iodepth_batch_complete_max" => {
            job.iodepth_batch_complete_max = parse_u32(need()?).map_err(ctx)?
        }
        "numjobs" => {
            let n = parse_u32(need()?).map_err(ctx)?;
            if n == 0 || n > 1024 {
                return Err(Error::msg(format!("option 'numjobs={v}': must be 1..1024")));
            }
            job.numjobs = n;
        }
        "runtime" | "timeout" => {
            let d = parse_time(need()?, Duration::from_secs(1)).map_err(ctx)?;
            job.runtime = (!d.is_zero()).then_some(d);
        }
        "time_based" => job.time_based = parse_bool(v).map_err(ctx)?,
        "ramp_time" => job.ramp_time = parse_time(need()?, Duration::from_secs(1)).map_err(ctx)?,
        "steadystate" | "ss" => job.ss = parse_steadystate(need()?).map_err(ctx)?,
        "steadystate_duration" | "ss_dur" => {
            let d = parse_time(need()?, Duration::from_secs(1)).map_err(ctx)?;
            if d.as_secs() > MAX_SS_DUR_SECS {
                return Err(Error::msg(format!(
                    "option '{key}={v}': at most {MAX_SS_DUR_SECS}s"
                )));
            }
            // fio keeps microseconds, then whole seconds of them.
            job.ss_dur = Duration::from_micros(d.as_micros() as u64);
        }
        "steadystate_ramp_time" | "ss_ramp" => {
            let d = parse_time(need()?, Duration::from_secs(1)).map_err(ctx)?;
            job.ss_ramp = Duration::from_micros(d.as_micros().min(u128::from(u64::MAX)) as u64);
        }
        "cpus_allowed" => job.cpus_allowed = Some(parse_cpus(need()?).map_err(ctx)?),
        "cpus_allowed_policy" => {
            job.cpus_allowed_split = match need()? {
                "shared" => false,
                "split" => true,
                o => {
                    return Err(Error::msg(format!(
                        "option 'cpus_allowed_policy={o}': shared or split"
                    )))
                }
            }
        }
        "numa_cpu_nodes" => {
            let n = need()?;
            parse_nodes(n).map_err(ctx)?;
            job.numa_cpu_nodes = Some(n.trim().to_string());
        }
        "numa_mem_policy" => job.numa_mem_policy = Some(parse_mem_policy(need()?).map_err(ctx)?),
        "sync" => {
            job.sync_io = match need()?.trim() {
                "none" | "0" => 0,
                "sync" | "1" => libc::O_SYNC,
                "dsync" => libc::O_DSYNC,
                o => return Err(Error::msg(format!("option 'sync={o}': none, 0, sync, 1 or dsync"))),
            }
        }
        "scramble_buffers" => job.scramble_buffers = parse_bool(v).map_err(ctx)?,
        "latency_target" | "latency_window" if need()?.trim().to_ascii_lowercase().ends_with("ns") => {
            // fio 3.33 reads these in µs whatever the unit: its
            // latency_target=1500ns is 1500 µs.
            return Err(Error::msg(format!(
                "option '{key}={v}': fio 3.33 reads an 'ns' value here as microseconds; write it in us (or without a unit)"
            )));
        }
        "latency_target" => {
            let d = parse_time(need()?, Duration::from_micros(1)).map_err(ctx)?;
            job.latency_target = (!d.is_zero()).then_some(d);
        }
        "latency_window" => {
            job.latency_window = parse_time(need()?, Duration::from_micros(1)).map_err(ctx)?
        }
        "latency_percentile" => {
            let p: f64 = need()?
                .trim()
                .trim_end_matches('%')
                .parse()
                .map_err(|_| Error::msg(format!("option '{key}={v}': a percentage")))?;
            if !(0.0..=100.0).contains(&p) {
                return Err(Error::msg(format!("option '{key}={v}': between 0 and 100")));
            }
            job.latency_percentile = p;
        }
        "latency_run" => job.latency_run = parse_bool(v).map_err(ctx)?,
        "random_generator" => {
            (job.lfsr, job.taus64) = match need()?.trim() {
                "tausworthe" => (false, false),
                "tausworthe64" => (false, true),
                "lfsr" => (true, false),
                o => {
                    return Err(Error::msg(format!(
                        "option 'random_generator={o}': tausworthe, lfsr or tausworthe64"
                    )))
                }
            }
        }
        "norandommap" => job.norandommap = parse_bool(v).map_err(ctx)?,
        "randrepeat" => job.randrepeat = parse_bool(v).map_err(ctx)?,
        "randseed" => {
            // (fio: a randseed makes the run repeatable whatever
            // randrepeat says; `randrepeat` keeps what was written, which
            // fio's seeding reads before it turns it off.)
            job.randseed = parse_size(need()?).map_err(ctx)?;
            job.randseed_set = true;
        }
        "random_distribution" => {
            let s = need()?;
            job.random_distribution = if s == "random" {
                Distribution::Random
            } else if let Some(t) = s.strip_prefix("zipf:") {
                let theta: f64 = t
                    .parse()
                    .map_err(|_| Error::msg(format!("option '{key}={s}': bad theta")))?;
                if !(theta > 0.0 && theta.is_finite()) || theta == 1.0 {
                    return Err(Error::msg(format!(
                        "option '{key}={s}': zipf theta must be > 0 and not 1"
                    )));
                }
                Distribution::Zipf(theta)
            } else if let Some(t) = s.strip_prefix("pareto:") {
                let h: f64 = t
                    .parse()
                    .map_err(|_| Error::msg(format!("option '{key}={s}': bad h")))?;
                if !(h > 0.0 && h < 1.0) {
                    return Err(Error::msg(format!(
                        "option '{key}={s}': pareto h must be between 0 and 1"
                    )));
                }
                Distribution::Pareto(h)
            } else if let Some(t) = s.strip_prefix("normal:") {
                let d: f64 = t
                    .parse()
                    .map_err(|_| Error::msg(format!("option '{key}={s}': bad deviation")))?;
                if !(d > 0.0 && d <= 100.0) {
                    return Err(Error::msg(format!(
                        "option '{key}={s}': normal deviation must be in (0, 100] percent"
                    )));
                }
                Distribution::Normal(d)
            } else if let Some(t) = s.strip_prefix("zoned:") {
                Distribution::Zoned(parse_zones(t).map_err(ctx)?)
            } else if s == "zipf" {
                return Err(Error::msg(format!(
                    "option '{key}=zipf': give the exponent, e.g. zipf:1.2"
                )));
            } else {
                return Err(Error::msg(format!(
                    "option '{key}={s}': random, zipf:θ, pareto:h, normal:dev or zoned:... (zoned_abs is not supported)"
                )));
            };
        }
        "unlink" => job.unlink = parse_bool(v).map_err(ctx)?,
        "flow" => {
            // fio's FLOW_MAX_WEIGHT.
            let w = parse_u32(need()?).map_err(ctx)?;
            if w > 1000 {
                return Err(Error::msg(format!("option 'flow={v}': at most 1000")));
            }
            job.flow = w;
        }
        "flow_id" => job.flow_id = parse_u32(need()?).map_err(ctx)?,
        "flow_sleep" => {
            job.flow_sleep_us = u64::from(parse_u32(need()?).map_err(ctx)?);
        }
        "rate_min" | "ratemin" => {
            let r = per_dir(need()?, |s| parse_size(s).map(Some), [None, None]).map_err(ctx)?;
            job.rate_min = r.map(|x| x.filter(|&n| n > 0));
        }
        "rate_iops_min" => {
            let r = per_dir(need()?, |s| parse_size(s).map(Some), [None, None]).map_err(ctx)?;
            job.rate_iops_min = r.map(|x| x.filter(|&n| n > 0));
        }
        "rate_cycle" | "ratecycle" => job.rate_cycle_ms = u64::from(parse_u32(need()?).map_err(ctx)?),
        "rate_iops" => {
            let (r, t) = per_dir3(need()?, |s| parse_size(s).map(Some), [None, None], None)
                .map_err(ctx)?;
            job.rate_iops = r.map(|x| x.filter(|&n| n > 0));
            job.rate_trim[1] = t.filter(|&n| n > 0);
        }
        "unified_rw_reporting" => {
            job.unified_rw = match need()? {
                "0" | "none" => false,
                "1" | "mixed" => true,
                s @ ("2" | "both") => {
                    return Err(Error::msg(format!(
                        "option '{key}={s}': not supported yet (0/none or 1/mixed are)"
                    )))
                }
                s => {
                    return Err(Error::msg(format!(
                        "option '{key}={s}': none, mixed or both (0, 1, 2)"
                    )))
                }
            }
        }
        "rate_process" => {
            job.rate_poisson = match need()? {
                "linear" => false,
                "poisson" => true,
                s => return Err(Error::msg(format!("option '{key}={s}': linear or poisson"))),
            }
        }
        "verify" => {
            job.verify = match need()? {
                "0" | "null" => Verify::None,
                "crc32c" | "crc32c-intel" => Verify::Crc32c,
                "pattern" => Verify::Pattern,
                "meta" => Verify::Meta,
                o => match HashKind::ALL.iter().find(|h| h.name() == o) {
                    Some(h) => Verify::Hash(*h),
                    None => {
                        return Err(Error::msg(format!(
                            "option 'verify={o}' is not supported (crc32c, pattern, md5, sha1, \
                             sha256, sha512, sha3-224, sha3-256, sha3-384, sha3-512, crc32; \
                             meta; not crc64, crc16, crc7, xxhash)"
                        )))
                    }
                },
            }
        }
        "verify_pattern" => job.verify_pattern = parse_pattern(need()?).map_err(ctx)?,
        "do_verify" => job.do_verify = parse_bool(v).map_err(ctx)?,
        "verify_only" => job.verify_only = parse_bool(v).map_err(ctx)?,
        "verify_backlog" => job.verify_backlog = parse_size(need()?).map_err(ctx)?,
        "verify_backlog_batch" => job.verify_backlog_batch = parse_u32(need()?).map_err(ctx)?,
        "verify_dump" => job.verify_dump = parse_bool(v).map_err(ctx)?,
        "block_error_percentiles" => {
            job.block_error_percentiles = parse_bool(v).map_err(ctx)?
        }
        "verify_interval" => {
            let n = parse_size(need()?).map_err(ctx)?;
            // fio's minval: twice its verify_header (40 bytes).
            if n < VERIFY_INTERVAL_MIN {
                return Err(Error::msg(format!(
                    "verify_interval: min value out of range: {n} ({VERIFY_INTERVAL_MIN} min)"
                )));
            }
            job.verify_interval = n;
        }
        "fill_device" | "fill_fs" => job.fill_device = parse_bool(v).map_err(ctx)?,
        "create_serialize" => job.create_serialize = parse_bool(v).map_err(ctx)?,
        "offset_increment" => {
            job.offset_increment = match parse_amount(need()?).map_err(ctx)? {
                Amount::Bytes(b) => b,
                Amount::Percent(_) => {
                    return Err(Error::msg(format!(
                        "option 'offset_increment={v}': in percent is not supported (bytes only)"
                    )))
                }
            }
        }
        "group_reporting" => job.group_reporting = parse_bool(v).map_err(ctx)?,
        "percentile_list" => {
            let mut l = Vec::new();
            for p in need()?.split(':').filter(|p| !p.trim().is_empty()) {
                let x: f64 = p
                    .trim()
                    .parse()
                    .map_err(|_| Error::msg(format!("option '{key}': bad percentile '{p}'")))?;
                if !(0.0..=100.0).contains(&x) {
                    return Err(Error::msg(format!(
                        "option '{key}': percentile {x} outside 0..100"
                    )));
                }
                l.push(x);
            }
            if l.is_empty() || l.len() > 20 {
                return Err(Error::msg(format!(
                    "option '{key}': 1 to 20 percentiles (fio's limit)"
                )));
            }
            l.sort_by(f64::total_cmp);
            job.percentile_list = l;
        }
        "clat_percentiles" => job.clat_percentiles = parse_bool(v).map_err(ctx)?,
        "lat_percentiles" => job.lat_percentiles = parse_bool(v).map_err(ctx)?,
        "direct" => job.direct = parse_bool(v).map_err(ctx)?,
        "create_on_open" => job.create_on_open = parse_bool(v).map_err(ctx)?,
        "overwrite" => job.overwrite = parse_bool(v).map_err(ctx)?,
        "create_fsync" => job.create_fsync = parse_bool(v).map_err(ctx)?,
        "invalidate" => job.invalidate = parse_bool(v).map_err(ctx)?,
        "clocksource" => {
            job.clocksource = Some(match need()? {
                "cpu" => ClockSource::Cpu,
                "clock_gettime" => ClockSource::ClockGettime,
                "gettimeofday" => ClockSource::Gettimeofday,
                o => {
                    return Err(Error::msg(format!(
                        "option 'clocksource={o}': cpu, clock_gettime or gettimeofday"
                    )))
                }
            })
        }
        "fadvise_hint" => {
            job.fadvise_hint = match need()? {
                "0" => FadviseHint::None,
                "1" => FadviseHint::Workload,
                "random" => FadviseHint::Random,
                "sequential" => FadviseHint::Sequential,
                "normal" => FadviseHint::Normal,
                o => {
                    return Err(Error::msg(format!(
                        "option 'fadvise_hint={o}': 0, 1, random, sequential or normal"
                    )))
                }
            }
        }
        "fallocate" => {
            job.fallocate = match need()? {
                "none" | "0" => Fallocate::None,
                "posix" | "1" => Fallocate::Posix,
                "native" => Fallocate::Native,
                "keep" => Fallocate::Keep,
                "truncate" => Fallocate::Truncate,
                o => {
                    return Err(Error::msg(format!(
                        "option 'fallocate={o}': none, posix, native, keep, truncate, 0 or 1"
                    )))
                }
            }
        }
        "thread" => job.thread = parse_bool(v).map_err(ctx)?,
        "hipri" => job.hipri = parse_bool(v).map_err(ctx)?,
        "fixedbufs" => job.fixedbufs = parse_bool(v).map_err(ctx)?,
        "registerfiles" => job.registerfiles = parse_bool(v).map_err(ctx)?,
        "sqthread_poll" => job.sqthread_poll = parse_bool(v).map_err(ctx)?,
        "sqthread_poll_cpu" => job.sqthread_poll_cpu = Some(parse_u32(need()?).map_err(ctx)?),
        "cmd_type" => {
            if need()? != "nvme" {
                return Err(Error::msg(format!(
                    "option 'cmd_type={v}': only nvme is supported"
                )));
            }
        }
        "exec_prerun" => job.exec_prerun = Some(need()?.to_string()),
        "exec_postrun" => job.exec_postrun = Some(need()?.to_string()),
        "nvme_queue_size" => {
            let n = parse_u32(need()?).map_err(ctx)?;
            if n < 2 {
                return Err(Error::msg(format!("option '{key}={v}': at least 2")));
            }
            job.nvme_queue_size = Some(n);
        }
        "nvme_cmb_queues" => job.nvme_cmb_queues = Some(parse_bool(v).map_err(ctx)?),
        "nvme_shadow_doorbells" => job.nvme_shadow_doorbells = Some(parse_bool(v).map_err(ctx)?),
        "nvme_pin" => job.nvme_pin = parse_bool(v).map_err(ctx)?,
        "nvme_delay_submit" => job.nvme_delay_submit = parse_bool(v).map_err(ctx)?,
        "nvme_io_timeout" => {
            job.nvme_io_timeout = Some(parse_time(need()?, Duration::from_secs(1)).map_err(ctx)?)
        }
        "nvme_timeout_policy" => {
            job.nvme_timeout_policy = Some(match need()? {
                "report" => nvme_core::TimeoutPolicy::Report,
                "abort" => nvme_core::TimeoutPolicy::Abort,
                o => {
                    return Err(Error::msg(format!(
                        "option 'nvme_timeout_policy={o}': report or abort"
                    )))
                }
            })
        }
        "continue_on_error" => job.continue_on_error = parse_continue_on_error(v)?,
        "ignore_error" => parse_ignore_error(v, job)?,
        "error_dump" => job.error_dump = parse_bool(v)?,
        "verify_fatal" => job.verify_fatal = parse_bool(v)?,
        // fio's verify threads: the blocks are verified inline, with the
        // same outcome (verify_async_cpus stays unsupported).
        "verify_async" => job.verify_async = parse_u32(v)?,
        // fio adds its tiobench profile's options to every job's option
        // table: `threads=N` sets that profile's thread count (used only
        // under `--profile=tiobench`) and changes nothing in the job, so
        // fio accepts it anywhere with an integer. The same here.
        "threads" => {
            parse_u32(need()?).map_err(ctx)?;
        }
        // Submission happens in the job's own thread: fio's `inline`.
        "zonemode" => {
            job.zbd = match need()? {
                "none" => {
                    job.strided = false;
                    false
                }
                "zbd" => {
                    job.strided = false;
                    true
                }
                "strided" => {
                    job.strided = true;
                    false
                }
                o => {
                    return Err(Error::msg(format!(
                        "option 'zonemode={o}': none, strided or zbd"
                    )))
                }
            }
        }
        "zonesize" | "zonerange" | "zoneskip" => {
            let b = parse_size(need()?).map_err(ctx)?;
            match key {
                "zonesize" => job.zone_size = b,
                "zonerange" => job.zone_range = b,
                _ => job.zone_skip = b,
            }
            job.zone_sizes_set = true;
        }
        // fio's zbd options: they act only under zonemode=zbd, which is
        // refused when the job starts (see zones.rs).
        "max_open_zones" | "job_max_open_zones" | "zone_reset_frequency" => {
            parse_size_plain(need()?, 1).map_err(ctx)?;
        }
        "zone_reset_threshold" => {
            let t: f64 = need()?.parse().map_err(|_| Error::msg(format!("option '{key}={v}': a fraction")))?;
            if !(0.0..=1.0).contains(&t) {
                return Err(Error::msg(format!("option '{key}={v}': between 0 and 1")));
            }
        }
        "read_beyond_wp" | "ignore_zone_limits" => {
            parse_bool(v).map_err(ctx)?;
        }
        // The io_uring engines always submit non-vectored commands
        // (IORING_OP_READ/WRITE, NVME_URING_CMD_IO): fio's choice when the
        // kernel has them, and its value for nonvectored=1.
        "nonvectored" => match need()? {
            "1" | "-1" => {}
            "0" => {
                return Err(Error::msg(
                    "option 'nonvectored=0': vectored io_uring commands are not supported (the io_uring engines submit non-vectored ones)",
                ))
            }
            o => return Err(Error::msg(format!("option 'nonvectored={o}': 1, 0 or -1"))),
        },
        "io_submit_mode" => {
            job.offload = match need()? {
                "inline" => false,
                "offload" => true,
                o => {
                    return Err(Error::msg(format!(
                        "option 'io_submit_mode={o}': inline or offload"
                    )))
                }
            }
        }
        k if UNSUPPORTED.contains(&k) => {
            return Err(Error::msg(format!(
                "fio option '{k}' is not supported by nvme-bench (see docs/fio-compat.md)"
            )))
        }
        k => return Err(Error::msg(format!("unknown option '{k}'"))),
    }
    Ok(())
}

/// fio's `fixup_options()` for the batch knobs, applied once the job is
/// complete: values fio corrects silently are corrected the same way here.
///
/// * `iodepth_batch_submit` 0 or above `iodepth` becomes `iodepth`
///   (init.c: `if (o->iodepth_batch > o->iodepth || !o->iodepth_batch)`).
/// * `iodepth_batch_complete_max` below `iodepth_batch_complete_min` becomes
///   the minimum (init.c); 0 stays "up to the queue depth" (nvme-bench's
///   default, see docs/fio-compat.md).
/// * Both completion bounds above `iodepth` are capped to it: fio caps them
///   to the I/Os in flight on every reap (`td_io_getevents`: `max` to
///   `cur_depth`; backend.c: `min` to `cur_depth`), which never exceeds
///   `iodepth`; the runner caps to what is in flight as well.
pub fn fixup(job: &mut Job) {
    let depth = job.iodepth;
    if job.iodepth_batch_submit == 0 || job.iodepth_batch_submit > depth {
        job.iodepth_batch_submit = depth;
    }
    job.iodepth_batch_complete_min = job.iodepth_batch_complete_min.min(depth);
    if job.iodepth_batch_complete_max != 0 {
        job.iodepth_batch_complete_max = job
            .iodepth_batch_complete_max
            .max(job.iodepth_batch_complete_min)
            .min(depth);
    }
}

/// fio's file list (options.c `get_next_str`): `a:b` names two files,
/// `\:` is a colon in a name, empty names are skipped. Returns the
/// names, unescaped.
/// fio's fixup_options check on a real parse (not `--parse-only`): a job
/// with `block_error_percentiles` on several files. Returns the job's
/// index and its file count.
pub fn block_hist_conflict(jobs: &[Job]) -> Option<(usize, u64)> {
    jobs.iter().enumerate().find_map(|(i, job)| {
        if !job.block_error_percentiles {
            return None;
        }
        let n = job_file_count(job);
        (n != 1).then_some((i, n))
    })
}

/// The files a job names (`filename`'s list), else `nrfiles`.
fn job_file_count(job: &Job) -> u64 {
    match job.filename.as_deref() {
        Some(f) if job.ioengine != EngineKind::NvmeVfio => {
            split_files(f).map_or(1, |v| v.len() as u64)
        }
        _ => u64::from(job.nrfiles),
    }
}

/// Least common multiple (0 if either is 0 or it overflows).
fn lcm(a: u64, b: u64) -> u64 {
    let (mut x, mut y) = (a, b);
    while y != 0 {
        (x, y) = (y, x % y);
    }
    if x == 0 {
        return 0;
    }
    (a / x).checked_mul(b).unwrap_or(0)
}

pub fn split_files(s: &str) -> Result<Vec<String>> {
    let mut parts = vec![String::new()];
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        match c {
            '\\' if it.peek() == Some(&':') => {
                it.next();
                parts.last_mut().expect("non-empty").push(':');
            }
            ':' => parts.push(String::new()),
            c => parts.last_mut().expect("non-empty").push(c),
        }
    }
    parts.retain(|p| !p.is_empty());
    if parts.is_empty() {
        return Err(Error::msg(format!("filename '{s}' names no file")));
    }
    if parts.len() > MAX_FILES as usize {
        return Err(Error::msg(format!(
            "filename '{s}' names {} files: at most {MAX_FILES} per job",
            parts.len()
        )));
    }
    Ok(parts)
}

/// fio's `make_filename` (init.c): `filename_format` with `$jobname`,
/// `$jobnum`, `$filenum` and `$clientuid` replaced (case-insensitively,
/// each as often as it occurs; `$clientuid` is empty outside fio's
/// client/server mode), or `jobname.jobnum.filenum` without one.
pub fn make_filename(job: &Job, jobnum: u32, filenum: u32) -> String {
    let fmt = match job.filename_format.as_deref() {
        Some(f) if !f.is_empty() => f,
        _ => return format!("{}.{jobnum}.{filenum}", job.name),
    };
    let mut buf = fmt.to_string();
    let subs = [
        ("$jobname", job.name.clone()),
        ("$jobnum", jobnum.to_string()),
        ("$filenum", filenum.to_string()),
        ("$clientuid", String::new()),
    ];
    for (kw, val) in subs {
        // Every occurrence, left to right; text put in is not scanned
        // again (fio rescans, and loops for ever on a value holding its
        // own keyword).
        let mut out = String::with_capacity(buf.len());
        let mut rest = buf.as_str();
        while let Some(at) = rest.to_ascii_lowercase().find(kw) {
            out.push_str(&rest[..at]);
            out.push_str(&val);
            rest = &rest[at + kw.len()..];
        }
        out.push_str(rest);
        buf = out;
    }
    buf
}

/// The files clone `clone` of a kernel-engine job uses, as fio names them:
/// the `filename` list (unescaped; every clone shares it), or by default
/// `nrfiles` names from `filename_format` (`jobname.clone.N`); a relative
/// name goes under `directory` when one is set.
pub fn files_for(job: &Job, clone: u32) -> Result<Vec<String>> {
    let names = match &job.filename {
        Some(f) => split_files(f)?,
        None => (0..job.nrfiles)
            .map(|i| make_filename(job, clone, i))
            .collect(),
    };
    // fio's `set_name_idx`: `directory` is a list too; default names of
    // clone N go under its entry N (mod the count), a `filename` list
    // under the first.
    let dir = match &job.directory {
        Some(d) => {
            let dirs = split_files(d)?;
            let i = if job.filename.is_some() {
                0
            } else {
                clone as usize % dirs.len()
            };
            Some(dirs[i].clone())
        }
        None => None,
    };
    Ok(names
        .into_iter()
        .map(|name| match &dir {
            Some(d) if !name.starts_with('/') => format!("{}/{name}", d.trim_end_matches('/')),
            _ => name,
        })
        .collect())
}

/// The first file of `files_for` (the one file of most jobs).
#[cfg(test)]
pub fn file_for(job: &Job, clone: u32) -> Result<String> {
    Ok(files_for(job, clone)?.remove(0))
}

/// Checks that need the whole job.
pub fn validate(job: &Job) -> Result<()> {
    let n = &job.name;
    // cmdprio_* are options of fio's libaio and io_uring engines.
    let cp = &job.cmdprio;
    let cp_written =
        cp.on() || cp.class != [0, 0] || cp.level != [0, 0] || cp.bssplit_str.is_some();
    if cp_written && !matches!(job.ioengine, EngineKind::Libaio | EngineKind::IoUring) {
        return Err(Error::msg(format!(
            "job '{n}': cmdprio options need ioengine=libaio or io_uring (fio's engine options)"
        )));
    }
    if cp.percentage.iter().any(|&p| p > 0)
        && cp
            .bssplit_str
            .as_deref()
            .is_some_and(|s| !s.trim().is_empty())
    {
        return Err(Error::msg(format!(
            "{n}: cmdprio_percentage and cmdprio_bssplit options are mutually exclusive"
        )));
    }
    // ioengine=null (and nvme-model) without size=: fio accepts the job and
    // fails it when it starts ("you need to specify size="); so does the runner.
    // Block sizes: multiples of 512 but for ioengine=null, which moves no
    // data (fio's null engine takes any size: netio_multicast.fio's bs=64).
    if job.ioengine != EngineKind::Null {
        let mut all: Vec<u64> = vec![job.bs[0], job.bs[1]];
        if job.rw.has_trim() {
            all.push(job.bs_trim);
        }
        all.extend(job.bssplit.iter().flatten().map(|x| x.0));
        all.extend(job.bsrange.iter().flatten().flat_map(|&(a, b)| [a, b]));
        all.extend(job.blockalign);
        if let Some(b) = all.into_iter().find(|b| b % 512 != 0) {
            return Err(Error::msg(format!(
                "job '{n}': block size {b} is not a multiple of 512 (only ioengine=null takes any size)"
            )));
        }
    }
    // Dedupe and compressible buffers (dedupe.rs), with fio's checks
    // (init.c fixup_options).
    if job.dedupe_percentage > 0 || job.compress_percentage > 0 {
        let multi = job.files.len() > 1
            || ((job.filesize.is_some() || job.file_append) && !job.files.is_empty());
        if job.verify != Verify::None {
            return Err(Error::msg(format!(
                "job '{n}': dedupe_percentage/buffer_compress_percentage with verify is not supported"
            )));
        }
        if job.dedupe_percentage > 0 && job.compress_percentage == 0 {
            return Err(Error::msg(format!(
                "job '{n}': dedupe_percentage without buffer_compress_percentage is not supported (fio then does not refill buffers unless refill_buffers, which nvme-bench does not take)"
            )));
        }
        if job.compress_chunk == 0 {
            return Err(Error::msg(format!(
                "job '{n}': buffer_compress_chunk must be > 0"
            )));
        }
        if job.dedupe_percentage > 0 && job.dedupe_mode == DedupeMode::WorkingSet {
            if !matches!(job.size, Some(Amount::Bytes(_))) {
                return Err(Error::msg(format!(
                    "job '{n}': pregenerated dedupe working set requires size to be set"
                )));
            }
            if multi || job.nrfiles > 1 {
                return Err(Error::msg(format!(
                    "job '{n}': dedupe working set mode supported with single file per job"
                )));
            }
            if job.dedupe_working_set_percentage + job.dedupe_percentage > 100 {
                return Err(Error::msg(format!(
                    "job '{n}': impossible to reach expected dedupe percentage {} since {} percentage of size is reserved to dedupe working set (those are unique pages)",
                    job.dedupe_percentage, job.dedupe_working_set_percentage
                )));
            }
        }
    }
    // io_submit_mode=offload (engine/offload.rs): workers doing
    // pread/pwrite on the job's one file. fio 3.33 caps a synchronous
    // engine's depth at 1, and its offload run then never ends at
    // iodepth > 1 (psync and null, as tried): refused rather than copied.
    if job.offload {
        let multi = job.files.len() > 1
            || ((job.filesize.is_some() || job.file_append) && !job.files.is_empty());
        let why = match job.ioengine {
            EngineKind::Libaio | EngineKind::IoUring => None,
            EngineKind::Psync if job.iodepth > 1 => {
                Some("with a synchronous engine needs iodepth=1 (fio 3.33 hangs deeper)")
            }
            EngineKind::Psync => None,
            _ => Some("is supported with ioengine=libaio, io_uring and psync only"),
        };
        let why = why.or(multi.then_some("needs a job on one file (no nrfiles, filesize)"));
        if let Some(w) = why {
            return Err(Error::msg(format!("job '{n}': io_submit_mode=offload {w}")));
        }
    }
    // `sync` is an open flag: the nvme-vfio engine opens no file, and
    // would need FUA writes to mean the same; refused rather than ignored.
    if job.sync_io != 0 && job.ioengine == EngineKind::NvmeVfio {
        return Err(Error::msg(format!(
            "job '{n}': sync (O_SYNC/O_DSYNC) is a file open flag; ioengine=nvme-vfio opens no file"
        )));
    }
    // Every clone keeps its own files' state (options.rs MAX_FILES).
    let nfiles = match job.filename.as_deref() {
        Some(f) if job.ioengine != EngineKind::NvmeVfio => {
            split_files(f).map_or(1, |v| v.len() as u64)
        }
        _ => u64::from(job.nrfiles),
    };
    if nfiles * u64::from(job.numjobs) > MAX_JOB_FILES {
        return Err(Error::msg(format!(
            "job '{n}': {nfiles} files x numjobs={} is more than {MAX_JOB_FILES} files \
             (each file's state takes memory while the job runs)",
            job.numjobs
        )));
    }
    // fio's fixup_options: a job gives its rates in bytes or in I/Os, not
    // both (in any directions).
    if job.rate.iter().any(Option::is_some) && job.rate_iops.iter().any(Option::is_some) {
        return Err(Error::msg(format!(
            "job '{n}': rate and rate_iops are mutually exclusive"
        )));
    }
    // fio's fixup_options checks for the minimum rates.
    if job.rate_min.iter().any(Option::is_some) && job.rate_iops_min.iter().any(Option::is_some) {
        return Err(Error::msg(format!(
            "job '{n}': rate_min and rate_iops_min are mutually exclusive"
        )));
    }
    for d in 0..2 {
        let over =
            |r: Option<u64>, min: Option<u64>| matches!((r, min), (Some(r), Some(m)) if r < m);
        if over(job.rate[d], job.rate_min[d]) || over(job.rate_iops[d], job.rate_iops_min[d]) {
            return Err(Error::msg(format!(
                "job '{n}': minimum rate exceeds rate, ddir {d}"
            )));
        }
    }
    if job.zone_sizes_set && !job.zbd && !job.strided {
        // fio refuses zonesize under zonemode=none and ignores zonerange
        // and zoneskip there: refused, as surely a missing zonemode.
        return Err(Error::msg(format!(
            "job '{n}': zonesize/zonerange/zoneskip need zonemode=strided (or zbd); \
             fio: --zonemode=none and --zonesize are not compatible"
        )));
    }
    if job.strided {
        if job.zone_size == 0 {
            return Err(Error::msg(format!(
                "job '{n}': zonesize must be specified when using zonemode=strided"
            )));
        }
        // fio's strided walk is one file's (and several files sharing one
        // zone counter is not followed here); the sequential modifiers,
        // trims and verify are not followed either.
        let several = job.ioengine != EngineKind::NvmeVfio
            && job
                .filename
                .as_deref()
                .is_some_and(|f| split_files(f).is_ok_and(|v| v.len() > 1));
        let why = if several || job.nrfiles > 1 {
            Some("several files")
        } else if job.rw_modifier > 0 || job.rw_back > 0 {
            Some("an rw=...:N modifier")
        } else if job.rw.has_trim() {
            Some("trims")
        } else if job.verify != Verify::None {
            Some("verify")
        } else if job.loops > 1 {
            Some("loops")
        } else {
            None
        };
        if let Some(w) = why {
            return Err(Error::msg(format!(
                "job '{n}': zonemode=strided with {w}: not supported"
            )));
        }
    }
    if job.rw_back > 0 {
        // fio's backwards walk (io_u.c get_next_seq_offset) is followed for
        // a region starting at 0 and seeks of at least a block; past that
        // fio mixes absolute and relative offsets.
        if job.rw_back < job.max_bs() || job.offset.resolve(u64::MAX) != 0 {
            return Err(Error::msg(format!(
                "job '{n}': rw=...:-{} needs offset=0 and a seek back of at least the block size",
                job.rw_back
            )));
        }
    }
    if !matches!(job.ioengine, EngineKind::Null | EngineKind::NvmeModel)
        && job.filename.is_none()
        && !job.ioengine.on_files()
    {
        // psync/io_uring default to fio's `jobname.N.0` (see `file_for`).
        return Err(Error::msg(format!("job '{n}': no filename given")));
    }
    if let Some(d) = &job.directory {
        // A list like `filename` (`a:b`); one that names nothing (`:`) is
        // an error here, not when the job opens its files.
        split_files(d).map_err(|e| Error::msg(format!("job '{n}': directory: {e}")))?;
    }
    let nfiles = match &job.filename {
        Some(f) if job.ioengine != EngineKind::NvmeVfio => split_files(f)
            .map_err(|e| Error::msg(format!("job '{n}': {e}")))?
            .len(),
        Some(_) => 1,
        None => job.nrfiles as usize,
    };
    if job.verify != Verify::None
        && job.verify_backlog > 0
        && job.openfiles > 0
        && (job.openfiles as usize) < nfiles
    {
        // fio's read-backs reopen closed files past `openfiles`, after
        // which its file choice stops early (3 files, openfiles=1: 32 of
        // 48 writes): not followed here.
        return Err(Error::msg(format!(
            "job '{n}': verify_backlog with openfiles below the number of files is not supported"
        )));
    }
    if nfiles > 1 || job.filesize.is_some() || job.file_append {
        let what = if nfiles > 1 {
            "several files per job"
        } else if job.filesize.is_some() {
            "filesize"
        } else {
            "file_append"
        };
        if !(job.ioengine.on_files() || job.ioengine == EngineKind::Null)
            || job.ioengine == EngineKind::IoUringCmd
        {
            return Err(Error::msg(format!(
                "job '{n}': {what} with ioengine={} is not supported (psync, libaio, io_uring, null)",
                job.ioengine.name()
            )));
        }
        if matches!(job.size, Some(Amount::Percent(_))) || matches!(job.offset, Amount::Percent(_))
        {
            return Err(Error::msg(format!(
                "job '{n}': size= or offset= in percent with {what} is not supported"
            )));
        }
    }
    let kernel = matches!(job.ioengine, EngineKind::IoUring | EngineKind::IoUringCmd);
    for (set, opt) in [
        (job.hipri, "hipri"),
        (job.fixedbufs, "fixedbufs"),
        (job.registerfiles, "registerfiles"),
        (job.sqthread_poll, "sqthread_poll"),
    ] {
        if set && !kernel {
            return Err(Error::msg(format!(
                "job '{n}': option '{opt}' applies to io_uring and io_uring_cmd only, not {}",
                job.ioengine.name()
            )));
        }
    }
    if job.ioengine == EngineKind::IoUringCmd && job.fixedbufs {
        return Err(Error::msg(format!(
            "job '{n}': fixedbufs with io_uring_cmd is not supported by nvme-bench"
        )));
    }
    let nvme_knob = job.nvme_queue_size.is_some()
        || job.nvme_cmb_queues.is_some()
        || job.nvme_shadow_doorbells.is_some()
        || job.nvme_io_timeout.is_some()
        || job.nvme_timeout_policy.is_some();
    if nvme_knob && !matches!(job.ioengine, EngineKind::NvmeVfio | EngineKind::NvmeModel) {
        return Err(Error::msg(format!(
            "job '{n}': nvme_* options apply to ioengine=nvme-vfio and nvme-model only"
        )));
    }
    if job.offset_increment > 0 && matches!(job.offset, Amount::Percent(_)) {
        return Err(Error::msg(format!(
            "job '{n}': offset_increment with offset= in percent is not supported"
        )));
    }
    if job.fill_device && !job.rw.has_write() {
        // fio lays such a file out until ENOSPC, then reads it.
        return Err(Error::msg(format!(
            "job '{n}': fill_device on a job that does not write is not supported"
        )));
    }
    if job.fill_device && (job.nrfiles > 1 || job.filesize.is_some()) {
        return Err(Error::msg(format!(
            "job '{n}': fill_device with several files or filesize is not supported"
        )));
    }
    if job.verify == Verify::Pattern && job.verify_pattern.is_empty() {
        return Err(Error::msg(format!(
            "job '{n}': verify=pattern needs verify_pattern"
        )));
    }
    if job.verify != Verify::None {
        for d in 0..2 {
            if !job.bssplit[d].is_empty() {
                return Err(Error::msg(format!(
                    "job '{n}': verify with bssplit is not supported"
                )));
            }
            if job.bsrange[d].is_some() {
                return Err(Error::msg(format!(
                    "job '{n}': verify with bsrange is not supported"
                )));
            }
        }
        if job.bs[0] != job.bs[1] {
            return Err(Error::msg(format!(
                "job '{n}': verify needs the same block size for reads and writes"
            )));
        }
        if job.bs[0] < 512 {
            return Err(Error::msg(format!("job '{n}': verify needs bs >= 512")));
        }
    }
    if job.rw.has_trim() {
        let what = if job.verify != Verify::None {
            Some("verify")
        } else if job.bssplit.iter().any(|s| !s.is_empty()) {
            Some("bssplit")
        } else if job.bsrange.iter().any(Option::is_some) {
            Some("bsrange")
        } else if job
            .rate
            .iter()
            .chain(&job.rate_iops)
            .chain(&job.rate_trim)
            .any(Option::is_some)
        {
            Some("rate/rate_iops")
        } else {
            None
        };
        if let Some(w) = what {
            return Err(Error::msg(format!(
                "job '{n}': {w} with rw={} is not supported",
                job.rw.name()
            )));
        }
        if job.rw.has_write() && job.bs_trim != job.bs[1] {
            // fio's sequential trimwrite with two sizes (io_u.c
            // set_rw_ddir; gen.rs `Split`) is supported on its own: the
            // settings that would change where its passes end are not.
            let why = if job.rw == Rw::RandTrimWrite {
                Some("rw=randtrimwrite")
            } else if job_file_count(job) > 1
                || job.nrfiles > 1
                || job.files.len() > 1
                || job.filesize.is_some()
                || job.file_append
            {
                Some("several files, filesize or file_append")
            } else if job.time_based {
                Some("time_based")
            } else if job.number_ios > 0 {
                Some("number_ios")
            } else if job.io_size.is_some() {
                Some("io_size")
            } else if job.rw_modifier > 0 || job.rw_back > 0 {
                Some("an rw=trimwrite:N modifier")
            } else if let Some(Amount::Bytes(b)) = job.size {
                let lcm = lcm(job.bs_trim, job.bs[1]);
                // fio issues a pass's last I/O past `size` (up to the
                // file's end) when it does not divide: not done here.
                (lcm == 0 || b % lcm != 0).then_some("a size that is not a multiple of both")
            } else if matches!(job.size, Some(Amount::Percent(_))) {
                Some("size in percent")
            } else {
                None
            };
            if let Some(w) = why {
                return Err(Error::msg(format!(
                    "job '{n}': rw={} with a trim block size other than the write's (bs={},{}) \
                     and {w} is not supported",
                    job.rw.name(),
                    job.bs[1],
                    job.bs_trim
                )));
            }
        }
    }
    if job.ioengine == EngineKind::Psync && job.iodepth > 1 {
        // fio accepts and ignores it; so do we, but the depth shown is 1.
    }
    Ok(())
}

// ----------------------------------------------------------------- parsing

/// Raw sections in order: (name, [(key, value)]).
pub type Section = (String, Vec<(String, Option<String>)>);

/// fio's `strip_blank_end` (parse.c): a value ends at its first `;` or
/// `#`, whether or not it is inside quotes, and trailing blanks go.
/// fio applies it to every job-file line and to every command-line job
/// option's value (`--filename=a;b` names the file `a`), but not to
/// `--name=` on the command line.
pub fn strip_comment(s: &str) -> &str {
    let cut = s.find([';', '#']).unwrap_or(s.len());
    s[..cut].trim_end()
}

fn expand_env(line: &str) -> Result<String> {
    let mut out = String::new();
    let mut rest = line;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let j = after
            .find('}')
            .ok_or_else(|| Error::msg(format!("unterminated ${{ in '{line}'")))?;
        let var = &after[..j];
        let val = std::env::var(var)
            .map_err(|_| Error::msg(format!("environment variable '{var}' is not set")))?;
        out.push_str(&val);
        rest = &after[j + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn parse_ini_into(
    text: &str,
    origin: &Path,
    sections: &mut Vec<Section>,
    depth: usize,
) -> Result<()> {
    if depth > 8 {
        return Err(Error::msg("include nesting too deep"));
    }
    for (ln, raw) in text.lines().enumerate() {
        let where_ = || format!("{}:{}", origin.display(), ln + 1);
        // fio cuts every job-file line at its first `;` or `#` (quotes do
        // not protect them), before anything else looks at it.
        let line = strip_comment(raw).trim();
        if line.is_empty() {
            continue;
        }
        let line = expand_env(line).map_err(|e| Error::msg(format!("{}: {e}", where_())))?;
        if let Some(inc) = line.strip_prefix("include ") {
            let p = origin.parent().unwrap_or(Path::new(".")).join(inc.trim());
            let t = std::fs::read_to_string(&p)
                .map_err(|e| Error::msg(format!("{}: include {}: {e}", where_(), p.display())))?;
            parse_ini_into(&t, &p, sections, depth + 1)?;
            continue;
        }
        if line.starts_with('[') {
            let name = line
                .strip_prefix('[')
                .and_then(|l| l.strip_suffix(']'))
                .ok_or_else(|| Error::msg(format!("{}: bad section header '{line}'", where_())))?;
            if name.trim().is_empty() {
                return Err(Error::msg(format!("{}: empty section name", where_())));
            }
            sections.push((name.trim().to_string(), Vec::new()));
            continue;
        }
        let Some(sec) = sections.last_mut() else {
            return Err(Error::msg(format!(
                "{}: option '{line}' outside any [section]",
                where_()
            )));
        };
        match line.split_once('=') {
            Some((k, v)) => sec
                .1
                .push((k.trim().to_string(), Some(v.trim().to_string()))),
            None => sec.1.push((line.trim().to_string(), None)),
        }
    }
    Ok(())
}

/// Parse INI text (a job file).
pub fn parse_job_file_text(text: &str, origin: &Path, sections: &mut Vec<Section>) -> Result<()> {
    let start = sections.len();
    parse_ini_into(text, origin, sections, 0)?;
    // fio parses a job-file section's options sorted by priority (stably);
    // of ours only `filename` differs (lowest): it goes last, which is
    // where fio's JSON lists it.
    for sec in &mut sections[start..] {
        // kb_base goes first (fio's priority for it is high): the
        // section's sizes are read in its base.
        sec.1.sort_by_key(|(k, _)| match k.as_str() {
            "kb_base" => 0,
            "filename" => 2,
            _ => 1,
        });
    }
    Ok(())
}

/// Turn sections into jobs: `[global]` options apply to the jobs after them.
fn build(sections: Vec<Section>, only: &[String]) -> Result<JobSet> {
    let mut set = JobSet::default();
    let mut global = Job::default();
    for (name, opts) in sections {
        if name == "global" {
            for (k, v) in &opts {
                apply(&mut global, k, v.as_deref())?;
                // fio lists only options given with a value.
                if let Some(v) = v {
                    set.global_options.insert(k.clone(), v.clone());
                }
            }
            continue;
        }
        let mut job = global.clone();
        job.name = name.clone();
        job.set_options.clear();
        for (k, v) in &opts {
            apply(&mut job, k, v.as_deref())
                .map_err(|e| Error::msg(format!("job '{name}': {e}")))?;
            if let Some(v) = v {
                job.set_options.insert(k.clone(), v.clone());
            }
        }
        if !only.is_empty() && !only.contains(&name) {
            continue;
        }
        fixup(&mut job);
        validate(&job)?;
        if let Some(w) = &job.wait_for {
            if !set.jobs.iter().any(|j| &j.name == w) {
                return Err(Error::msg(format!(
                    "job '{name}': wait_for={w}: no job of that name before it"
                )));
            }
        }
        // fio's add_job: stonewall or new_group start a reporting group
        // when jobs came before.
        job.groupid = match set.jobs.last() {
            Some(prev) if job.stonewall || job.new_group => prev.groupid + 1,
            Some(prev) => prev.groupid,
            None => 0,
        };
        set.jobs.push(job);
    }
    if set.jobs.is_empty() {
        return Err(Error::msg("no jobs defined"));
    }
    Ok(set)
}

/// Parse a whole command line (without argv[0]): fio's global flags, job
/// files, and `--name=` jobs.
pub fn parse_command_line(args: &[String]) -> Result<(Globals, JobSet)> {
    let mut g = Globals {
        formats: Formats {
            normal: true,
            ..Formats::default()
        },
        terse_version: 3,
        ..Globals::default()
    };
    let mut sections: Vec<Section> = Vec::new();
    let mut cli: Vec<Section> = Vec::new();
    // Options before the first --name= are global (fio's behaviour).
    cli.push(("global".to_string(), Vec::new()));
    let mut it = args.iter().peekable();
    while let Some(a) = it.next() {
        if let Some(rest) = a.strip_prefix("--") {
            let (k, v) = match rest.split_once('=') {
                Some((k, v)) => (k.to_string(), Some(v.to_string())),
                None => (rest.to_string(), None),
            };
            // Global flags taking a value may also take it as the next argument.
            let takes = [
                "output",
                "output-format",
                "status-interval",
                "eta",
                "section",
                "interval-log",
                "plot",
                "terse-version",
                "eta-newline",
            ];
            let v = if v.is_none() && takes.contains(&k.as_str()) {
                Some(
                    it.next()
                        .ok_or_else(|| Error::msg(format!("--{k} needs a value")))?
                        .clone(),
                )
            } else {
                v
            };
            match k.as_str() {
                "output" => g.output = v,
                "output-format" => {
                    let mut f = Formats::default();
                    for part in v.as_deref().unwrap_or("").split(',') {
                        match part.trim() {
                            "normal" => f.normal = true,
                            "json" => f.json = true,
                            "json+" => {
                                f.json = true;
                                f.json_plus = true
                            }
                            "terse" => f.terse = true,
                            o => {
                                return Err(Error::msg(format!(
                                    "--output-format: unknown format '{o}'"
                                )))
                            }
                        }
                    }
                    g.formats = f;
                }
                "status-interval" => {
                    let d = parse_time(v.as_deref().unwrap_or(""), Duration::from_secs(1))?;
                    if d < Duration::from_millis(10) {
                        return Err(Error::msg("--status-interval below 10 ms"));
                    }
                    g.status_interval = Some(d);
                }
                "eta" => {
                    g.eta = match v.as_deref() {
                        Some("auto") => Eta::Auto,
                        Some("always") => Eta::Always,
                        Some("never") => Eta::Never,
                        o => {
                            return Err(Error::msg(format!(
                                "--eta: auto, always or never, not {o:?}"
                            )))
                        }
                    }
                }
                "section" => g.sections.push(v.unwrap_or_default()),
                "parse-only" => g.parse_only = true,
                "interval-log" => g.interval_log = v,
                "plot" => g.plot = v,
                "compare" => g.compare = true,
                "minimal" => {
                    g.formats = Formats {
                        terse: true,
                        ..Formats::default()
                    }
                }
                "terse-version" => {
                    g.terse_version = match v.as_deref().map(str::trim) {
                        Some("2") => 2,
                        Some("3") => 3,
                        Some("4") => 4,
                        Some("5") => 5,
                        o => {
                            return Err(Error::msg(format!(
                                "--terse-version: bad terse version format {o:?} (2, 3, 4 or 5)"
                            )))
                        }
                    }
                }
                "bandwidth-log" => g.bandwidth_log = true,
                "readonly" => g.readonly = true,
                "warnings-fatal" => g.warnings_fatal = true,
                "eta-newline" => {
                    let t = parse_time(v.as_deref().unwrap_or(""), Duration::from_secs(1))
                        .map_err(|e| Error::msg(format!("--eta-newline: {e}")))?;
                    // fio keeps milliseconds: less than one is refused.
                    if t < Duration::from_millis(1) {
                        return Err(Error::msg("--eta-newline: eta new line time too short"));
                    }
                    g.eta_newline = Some(t);
                }
                "name" => {
                    let n = v.ok_or_else(|| Error::msg("--name needs a value"))?;
                    cli.push((n.clone(), vec![("name".to_string(), Some(n))]));
                }
                _ => {
                    // A job option: fio cuts its value at `;` or `#`, as
                    // in a job file.
                    let v = v.map(|v| strip_comment(&v).to_string());
                    cli.last_mut().expect("non-empty").1.push((k, v))
                }
            }
        } else if a == "-" {
            let mut t = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut t)?;
            parse_job_file_text(&t, Path::new("<stdin>"), &mut sections)?;
        } else {
            let p = Path::new(a);
            let t =
                std::fs::read_to_string(p).map_err(|e| Error::msg(format!("job file {a}: {e}")))?;
            parse_job_file_text(&t, p, &mut sections)?;
        }
    }
    // Command-line jobs come after the file's; a leading global block of
    // command-line options applies to them (and, like fio, to nothing else).
    let cli_global_empty = cli[0].1.is_empty();
    if cli.len() > 1 || !cli_global_empty {
        if cli.len() == 1 && !sections.is_empty() {
            // Only options, no --name: they override every file job (fio merges
            // command-line options into the file's global section).
            let g_opts = cli.remove(0).1;
            let at = sections
                .iter()
                .position(|s| s.0 != "global")
                .unwrap_or(sections.len());
            sections.insert(at, ("global".to_string(), g_opts));
        } else {
            sections.extend(cli);
        }
    }
    let set = build(sections, &g.sections)?;
    Ok((g, set))
}

/// Parse one job file's text (tests).
#[cfg(test)]
pub fn parse_str(text: &str) -> Result<JobSet> {
    let mut sections = Vec::new();
    parse_job_file_text(text, Path::new("<text>"), &mut sections)?;
    build(sections, &[])
}

/// Parse `trtype=PCIe traddr=0000.01.00.0 ns=1` (SPDK's fio plugin form;
/// `:` may appear escaped as `\:` or plainly). Returns (PCI address, nsid).
pub fn parse_nvme_target(s: &str) -> Result<(String, u32)> {
    let mut traddr = None;
    let mut ns = 1u32;
    let mut trtype = None;
    for kv in s.split_whitespace() {
        let (k, v) = kv.split_once('=').ok_or_else(|| {
            Error::msg(format!(
                "nvme-vfio filename: expected key=value, got '{kv}'"
            ))
        })?;
        match k.to_ascii_lowercase().as_str() {
            "trtype" => trtype = Some(v.to_string()),
            "traddr" => traddr = Some(v.to_string()),
            "ns" => {
                ns = v
                    .parse()
                    .map_err(|_| Error::msg(format!("nvme-vfio filename: bad ns '{v}'")))?
            }
            _ => {
                return Err(Error::msg(format!(
                    "nvme-vfio filename: unknown key '{k}' (trtype, traddr, ns)"
                )))
            }
        }
    }
    if let Some(t) = &trtype {
        if !t.eq_ignore_ascii_case("pcie") {
            return Err(Error::msg(format!(
                "nvme-vfio filename: trtype={t} is not supported (PCIe only)"
            )));
        }
    }
    let a = traddr.ok_or_else(|| {
        Error::msg(format!(
            "nvme-vfio filename '{s}': expected 'trtype=PCIe traddr=0000.01.00.0 ns=1'"
        ))
    })?;
    let a = a.replace("\\:", ":");
    // 0000.01.00.0 → 0000:01:00.0 (the last dot stays: it separates the function).
    let parts: Vec<&str> = a.split(['.', ':']).collect();
    let addr = match parts.as_slice() {
        [d, b, s, f] => format!("{d}:{b}:{s}.{f}"),
        [b, s, f] => format!("0000:{b}:{s}.{f}"),
        _ => {
            return Err(Error::msg(format!(
                "nvme-vfio filename: bad traddr '{a}' (e.g. 0000.01.00.0)"
            )))
        }
    };
    if ns == 0 {
        return Err(Error::msg("nvme-vfio filename: ns must be 1 or more"));
    }
    Ok((addr, ns))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_follow_fio_kb_base_1024() {
        assert_eq!(parse_size("4k").unwrap(), 4096);
        assert_eq!(parse_size("4K").unwrap(), 4096);
        assert_eq!(parse_size("4kb").unwrap(), 4096);
        assert_eq!(parse_size("4KiB").unwrap(), 4000); // fio's compat quirk
        assert_eq!(parse_size("1m").unwrap(), 1 << 20);
        assert_eq!(parse_size("1g").unwrap(), 1 << 30);
        assert_eq!(parse_size("2t").unwrap(), 2 << 40);
        assert_eq!(parse_size("512").unwrap(), 512);
        assert_eq!(parse_size("0x1000").unwrap(), 4096);
        // fio reads 1.5k as 1: refused, naming fio's reading.
        let e = parse_size("1.5k").unwrap_err().to_string();
        assert!(e.contains("1 byte(s) here"), "{e}");
        let e = parse_time("2.5m", Duration::from_secs(1))
            .unwrap_err()
            .to_string();
        assert!(e.contains("2 s here"), "{e}");
        assert!(parse_size("4q").is_err());
        assert!(parse_size("").is_err());
        assert!(parse_size("k").is_err());
        assert!(parse_size("99999999999999999999").is_err());
        assert_eq!(parse_amount("50%").unwrap(), Amount::Percent(50.0));
        assert!(parse_amount("150%").is_err());
    }

    /// fio cuts a job-file line at its first `;` or `#`, quotes or not
    /// (checked against fio 3.33: `filename=q"x;y".dat` makes `q"x`,
    /// `filename=h#x.dat;z` makes `h`).
    #[test]
    fn trailing_comments_are_cut_like_fio() {
        let set = parse_str(
            "[global]\nsize=64k ; trailing\nbs=4k # hash\n\
             [j1] ; the first job\nfilename=ic2.dat ; scratch file\nnumjobs=4 ; four\n\
             rw=write\n[j2]\nfilename=q\"x;y\".dat\n[j3]\nfilename=h#x.dat;z\n\
             description=\"a ; b\"\n",
        )
        .unwrap();
        let j = &set.jobs;
        assert_eq!(j[0].name, "j1");
        assert_eq!(j[0].filename.as_deref(), Some("ic2.dat"));
        assert_eq!(j[0].numjobs, 4);
        assert_eq!(j[0].size, Some(Amount::Bytes(64 << 10)));
        assert_eq!(j[0].bs, [4096, 4096]);
        assert_eq!(j[1].filename.as_deref(), Some("q\"x"));
        assert_eq!(j[2].filename.as_deref(), Some("h"));
        assert_eq!(j[2].description.as_deref(), Some("\"a"));
        // "job options" shows the cut value, as fio's JSON does.
        assert_eq!(
            j[0].set_options.get("filename").map(String::as_str),
            Some("ic2.dat")
        );
        assert_eq!(
            set.global_options.get("size").map(String::as_str),
            Some("64k")
        );
        // Command line: job options are cut too, --name= is not.
        let args: Vec<String> = ["--name=a;b", "--filename=x;y.dat", "--size=8k ; c"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let (_, set) = parse_command_line(&args).unwrap();
        assert_eq!(set.jobs[0].name, "a;b");
        assert_eq!(set.jobs[0].filename.as_deref(), Some("x"));
        assert_eq!(set.jobs[0].size, Some(Amount::Bytes(8 << 10)));
    }

    /// fio's default file names (`jobname.clone.N`, under `directory`),
    /// `\:` escapes, filename lists (empty names skipped, the count set by
    /// the list whatever `nrfiles` says) and `filename_format`.
    #[test]
    fn file_names_like_fio() {
        let set =
            parse_str("[a]\nnumjobs=2\n[b]\ndirectory=d/\n[c]\nfilename=x\\:y\ndirectory=d\n")
                .unwrap();
        let j = &set.jobs;
        assert_eq!(file_for(&j[0], 0).unwrap(), "a.0.0");
        assert_eq!(file_for(&j[0], 1).unwrap(), "a.1.0");
        assert_eq!(file_for(&j[1], 0).unwrap(), "d/b.0.0");
        assert_eq!(file_for(&j[2], 0).unwrap(), "d/x:y");
        let set = parse_str("[c]\nfilename=:c1::c2\\:x:\nnrfiles=5\n").unwrap();
        assert_eq!(files_for(&set.jobs[0], 3).unwrap(), ["c1", "c2:x"]);
        let set =
            parse_str("[n]\nnumjobs=3\ndirectory=a:b\n[m]\nfilename=f\ndirectory=a:b\n").unwrap();
        assert_eq!(files_for(&set.jobs[0], 0).unwrap(), ["a/n.0.0"]);
        assert_eq!(files_for(&set.jobs[0], 1).unwrap(), ["b/n.1.0"]);
        assert_eq!(files_for(&set.jobs[0], 2).unwrap(), ["a/n.2.0"]);
        assert_eq!(files_for(&set.jobs[1], 1).unwrap(), ["a/f"]);
        let set = parse_str("[n]\nnrfiles=3\ndirectory=d\n").unwrap();
        assert_eq!(
            files_for(&set.jobs[0], 1).unwrap(),
            ["d/n.1.0", "d/n.1.1", "d/n.1.2"]
        );
        let set = parse_str(
            "[f]\nnrfiles=2\nfilename_format=$JobName/$jobnum.$filenum.$filenum$clientuid\n",
        )
        .unwrap();
        assert_eq!(files_for(&set.jobs[0], 4).unwrap(), ["f/4.0.0", "f/4.1.1"]);
        assert!(parse_str("[c]\nfilename=::\n").is_err());
        assert!(parse_str("[c]\nnrfiles=0\n").is_err());
        // Engines that need a device still need a filename.
        assert!(parse_str("[c]\nioengine=io_uring_cmd\n").is_err());
        assert!(parse_str("[c]\nioengine=io_uring_cmd\nfilename=/dev/ng0n1:/dev/ng1n1\n").is_err());
    }

    /// `file_service_type` and `filesize` values as fio parses them.
    #[test]
    fn file_options_like_fio() {
        let j = |s: &str| parse_str(&format!("[j]\nfilename=f\n{s}")).map(|s| s.jobs[0].clone());
        let fst = |s: &str| j(&format!("file_service_type={s}")).map(|j| j.file_service);
        assert_eq!(fst("random").unwrap(), FileService::Random(1));
        assert_eq!(fst("roundrobin:3").unwrap(), FileService::RoundRobin(3));
        assert_eq!(fst("random:0").unwrap(), FileService::Random(u32::MAX));
        assert_eq!(fst("sequential").unwrap(), FileService::Sequential);
        assert_eq!(fst("zipf").unwrap(), FileService::Zipf(1.1, None));
        assert_eq!(
            fst("pareto:0.5:0.2").unwrap(),
            FileService::Pareto(0.5, Some(0.2))
        );
        assert_eq!(fst("gauss:3").unwrap(), FileService::Gauss(3.0, None));
        for bad in [
            "zipf:1",
            "pareto:0",
            "normal:100",
            "zipf:1.2:2",
            "rr",
            "random:x",
        ] {
            assert!(fst(bad).is_err(), "{bad}");
        }
        assert_eq!(j("filesize=1m").unwrap().filesize, Some((1 << 20, 1 << 20)));
        assert_eq!(j("filesize=8k-4k").unwrap().filesize, Some((4096, 8192)));
        assert_eq!(j("filesize=2*4k").unwrap().filesize, Some((8192, 8192)));
        assert!(j("filesize=0").is_err());
        assert_eq!(j("filesize=1m").unwrap().size, None);
    }

    #[test]
    fn times_follow_fio() {
        let s = Duration::from_secs(1);
        assert_eq!(parse_time("10", s).unwrap(), Duration::from_secs(10));
        assert_eq!(parse_time("2m", s).unwrap(), Duration::from_secs(120));
        assert_eq!(parse_time("500ms", s).unwrap(), Duration::from_millis(500));
        assert_eq!(parse_time("100us", s).unwrap(), Duration::from_micros(100));
        assert_eq!(parse_time("1h", s).unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_time("1d", s).unwrap(), Duration::from_secs(86400));
        assert!(parse_time("1y", s).is_err());
        assert!(parse_time("x", s).is_err());
    }

    /// fio's examples/fio-rand-read.fio and friends, as shipped with fio.
    #[test]
    fn fio_example_job_files() {
        let set = parse_str(
            "; fio-rand-read.job for fiotest\n\
             \n\
             [global]\n\
             name=fio-rand-read\n\
             filename=fio-rand-read\n\
             rw=randread\n\
             bs=4K\n\
             direct=0\n\
             numjobs=1\n\
             time_based\n\
             runtime=900\n\
             \n\
             [file1]\n\
             size=10G\n\
             ioengine=libaio\n\
             iodepth=16\n",
        );
        // libaio is one of ours now, named as written.
        let set = set.unwrap();
        assert_eq!(set.jobs[0].ioengine, EngineKind::Libaio);
        assert_eq!(set.jobs[0].ioengine_name, "libaio");

        let set = parse_str(
            "[global]\nname=fio-rand-read\nfilename=fio-rand-read\nrw=randread\nbs=4K\n\
             direct=0\nnumjobs=1\ntime_based\nruntime=900\n\n[file1]\nsize=10G\n\
             ioengine=io_uring\niodepth=16\n",
        )
        .unwrap();
        let j = &set.jobs[0];
        assert_eq!(j.name, "file1");
        assert_eq!(j.rw, Rw::RandRead);
        assert_eq!(j.bs, [4096, 4096]);
        assert!(!j.direct);
        assert!(j.time_based);
        assert_eq!(j.runtime, Some(Duration::from_secs(900)));
        assert_eq!(j.size, Some(Amount::Bytes(10 << 30)));
        assert_eq!(j.iodepth, 16);
        assert_eq!(j.ioengine, EngineKind::IoUring);
        assert_eq!(
            set.global_options.get("rw").map(String::as_str),
            Some("randread")
        );
        assert_eq!(j.set_options.get("iodepth").map(String::as_str), Some("16"));
        assert!(!j.set_options.contains_key("rw"));
    }

    /// fio's examples/ssd-test.fio shape: global + several stonewalled jobs.
    #[test]
    fn ssd_test_shape() {
        let set = parse_str(
            "# Do some important numbers on SSD drives, to gauge what kind of\n\
             [global]\nbs=4k\nioengine=psync\niodepth=4\nsize=10g\ndirect=1\nruntime=60\n\
             filename=/mount-point-of-ssd/ssd.test.file\n\n\
             [seq-read]\nrw=read\nstonewall\n\n\
             [rand-read]\nrw=randread\nstonewall\n\n\
             [seq-write]\nrw=write\nstonewall\n\n\
             [rand-write]\nrw=randwrite\nstonewall\n",
        )
        .unwrap();
        let names: Vec<_> = set.jobs.iter().map(|j| j.name.as_str()).collect();
        assert_eq!(names, ["seq-read", "rand-read", "seq-write", "rand-write"]);
        assert!(set.jobs.iter().all(|j| j.stonewall && j.direct));
        assert_eq!(set.jobs[3].rw, Rw::RandWrite);
        assert_eq!(set.jobs[0].runtime, Some(Duration::from_secs(60)));
    }

    #[test]
    fn bssplit_and_mix() {
        let set = parse_str(
            "[j]\nfilename=/dev/x\nrw=randrw\nrwmixread=70\nbssplit=4k/10:64k/50:32k/40\n",
        )
        .unwrap();
        let j = &set.jobs[0];
        assert_eq!(j.rwmixread, 70);
        assert_eq!(j.bssplit[0], vec![(4096, 10), (65536, 50), (32768, 40)]);
        assert_eq!(j.bssplit[1], j.bssplit[0]);
        // fio: blank percentages share the rest.
        let set = parse_str("[j]\nfilename=x\nbssplit=4k/50:8k/:16k/,4k\n").unwrap();
        assert_eq!(
            set.jobs[0].bssplit[0],
            vec![(4096, 50), (8192, 25), (16384, 25)]
        );
        assert_eq!(set.jobs[0].bssplit[1], vec![(4096, 100)]);
        assert!(parse_str("[j]\nfilename=x\nbssplit=4k/60:8k/60\n").is_err());
        let set = parse_str("[j]\nfilename=x\nbs=4k,64k\nrwmixwrite=30\n").unwrap();
        assert_eq!(set.jobs[0].bs, [4096, 65536]);
        assert_eq!(set.jobs[0].rwmixread, 70);
    }

    #[test]
    fn trim_workloads_parse_like_fio() {
        let j = |t: &str| parse_str(&format!("[j]\nfilename=x\n{t}")).map(|mut s| s.jobs.remove(0));
        let a = j("rw=trim\nbs=4k,8k\n").unwrap();
        assert_eq!((a.rw, a.bs, a.bs_trim), (Rw::Trim, [4096, 8192], 8192));
        assert!(a.rw.has_trim() && !a.rw.has_write() && !a.rw.has_read());
        let a = j("rw=randtrimwrite\nbs=16k\n").unwrap();
        assert_eq!((a.bs_trim, a.min_bs(), a.max_bs()), (16384, 16384, 16384));
        assert!(a.rw.random() && a.rw.has_write());
        let a = j("rw=trim\nbs=4k,8k,64k\n").unwrap();
        assert_eq!((a.bs_trim, a.max_bs(), a.min_bs()), (65536, 65536, 65536));
        assert_eq!(a.rw.letter(), 'D');
        for (t, want) in [
            ("rw=trim\nverify=md5\n", "verify with rw=trim"),
            (
                "rw=randtrim\nbssplit=4k/50:8k/50\n",
                "bssplit with rw=randtrim",
            ),
            ("rw=trim\nrate=1m\n", "rate/rate_iops with rw=trim"),
            (
                "rw=randtrimwrite\nbs=4k,4k,8k\n",
                "and rw=randtrimwrite is not supported",
            ),
            (
                "rw=trimwrite\nbs=4k,4k,8k\ntime_based\nruntime=1\n",
                "and time_based",
            ),
            (
                "rw=trimwrite\nbs=4k,4k,8k\nsize=12k\n",
                "not a multiple of both",
            ),
            ("rw=trimwrite\nbs=4k,4k,8k\nnrfiles=2\n", "several files"),
            ("rw=trimwrite\nbs=4k,4k,8k\nfilename=a:b\n", "several files"),
        ] {
            let e = j(t).unwrap_err().to_string();
            assert!(e.contains(want), "{t}: {e}");
        }
        // fio's sequential trimwrite with two sizes (mtd.fio).
        let a = j("rw=trimwrite\nbs=512,512,16k\nsize=64k\nblock_error_percentiles=1\n").unwrap();
        assert_eq!(
            (a.bs[1], a.bs_trim, a.block_error_percentiles),
            (512, 16384, true)
        );
        assert!(j("rw=trim\nbs=4k,4k,bogus\n").is_err());
    }

    /// Found by the job_file fuzz target: `directory=:` passed the checks
    /// and only failed when the job came to open its files.
    #[test]
    fn a_directory_list_naming_nothing_is_refused_up_front() {
        let e = parse_str("[j]\nioengine=psync\ndirectory=:\n").unwrap_err();
        assert!(e.to_string().contains("names no file"), "{e}");
        assert!(parse_str("[j]\nioengine=psync\ndirectory=a:b\n").is_ok());
    }

    #[test]
    fn unknown_and_unsupported_are_clear_errors() {
        let e = parse_str("[j]\nfilename=x\nbogus_opt=1\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown option 'bogus_opt'"), "{e}");
        let e = parse_str("[j]\nfilename=x\nfsync=1\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("fio option 'fsync' is not supported"), "{e}");
        let e = parse_str("[j]\nfilename=x\nverify=xxhash\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("verify=xxhash"), "{e}");
        // psync/io_uring default to fio's file names; a device engine
        // cannot.
        let e = parse_str("[j]\nioengine=nvme-vfio\nrw=read\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("no filename"), "{e}");
        let e = parse_str("[j]\nfilename=x\nhipri=1\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("hipri"), "{e}");
        let e = parse_str("[j]\nfilename=x\nbs=4k-16k\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("ranges"), "{e}");
        assert!(parse_str("bs=4k\n").is_err());
        assert!(parse_str("[j]\nfilename=x\niodepth=0\n").is_err());
    }

    #[test]
    fn command_line_form() {
        let args: Vec<String> = [
            "--output-format=json+",
            "--ioengine=io_uring",
            "--direct=1",
            "--name=a",
            "--filename=/dev/nvme0n1",
            "--rw=randread",
            "--iodepth=32",
            "--hipri",
            "--name=b",
            "--filename=trtype=PCIe traddr=0000.01.00.0 ns=1",
            "--ioengine=nvme-vfio",
            "--nvme_queue_size=256",
            "--nvme_cmb_queues=0",
            "--stonewall",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let (g, set) = parse_command_line(&args).unwrap();
        assert!(g.formats.json && g.formats.json_plus && !g.formats.normal);
        assert_eq!(set.jobs.len(), 2);
        assert_eq!(set.jobs[0].ioengine, EngineKind::IoUring);
        assert!(set.jobs[0].hipri && set.jobs[0].direct);
        assert_eq!(set.jobs[1].ioengine, EngineKind::NvmeVfio);
        assert_eq!(set.jobs[1].nvme_queue_size, Some(256));
        assert_eq!(set.jobs[1].nvme_cmb_queues, Some(false));
        assert!(set.jobs[1].stonewall && !set.jobs[0].stonewall);
        let (addr, ns) = parse_nvme_target(set.jobs[1].filename.as_deref().unwrap()).unwrap();
        assert_eq!((addr.as_str(), ns), ("0000:01:00.0", 1));
    }

    #[test]
    fn misc_options() {
        let set = parse_str(
            "[global]\nfilename=f\n[j]\ncpus_allowed=0,5,8-10\ncpus_allowed_policy=split\n\
             percentile_list=99.9:50:99\nrandom_distribution=zipf:1.2\nrate_iops=1000\n\
             verify=crc32c\nrw=write\nramp_time=2s\nrandseed=1234\nnorandommap\n\
             iodepth=8\niodepth_batch_submit=4\niodepth_batch_complete_min=2\n\
             iodepth_batch_complete_max=8\noffset=1m\nsize=50%\n",
        )
        .unwrap();
        let j = &set.jobs[0];
        assert_eq!(j.cpus_allowed.as_deref(), Some(&[0, 5, 8, 9, 10][..]));
        assert!(j.cpus_allowed_split);
        assert_eq!(j.percentile_list, vec![50.0, 99.0, 99.9]);
        assert_eq!(j.random_distribution, Distribution::Zipf(1.2));
        assert_eq!(j.rate_iops, [Some(1000), Some(1000)]);
        assert_eq!(j.verify, Verify::Crc32c);
        assert_eq!(j.ramp_time, Duration::from_secs(2));
        assert_eq!(j.randseed, 1234);
        assert!(j.norandommap);
        assert_eq!(j.offset, Amount::Bytes(1 << 20));
        assert_eq!(j.size, Some(Amount::Percent(50.0)));
        assert_eq!(
            parse_pattern("0xdeadbeef").unwrap(),
            vec![0xde, 0xad, 0xbe, 0xef]
        );
        assert_eq!(parse_pattern("\"abc\"").unwrap(), b"abc".to_vec());
        assert!(parse_str("[j]\nfilename=f\nrandom_distribution=pareto:1.5\n").is_err());
        assert!(parse_str("[j]\nfilename=f\nrandom_distribution=zoned:50/50:40/50\n").is_err());
        assert!(parse_str("[j]\nfilename=f\nrandom_distribution=zoned:50/x\n").is_err());
    }

    /// `ss` as fio's str_steadystate_cb reads it; `ss_dur` in whole
    /// seconds; the reporting-group check.
    #[test]
    fn steadystate_options_like_fio() {
        let ss = |v: &str| parse_steadystate(v);
        let c = |iops, slope, pct, limit| SteadyState {
            iops,
            slope,
            pct,
            limit,
        };
        assert_eq!(ss("iops:10%").unwrap(), c(true, false, true, 10.0));
        assert_eq!(ss("iops_slope: 0.3 %x").unwrap(), c(true, true, true, 0.3));
        assert_eq!(ss("bw:10m").unwrap(), c(false, false, false, 10485760.0));
        assert_eq!(ss("bw_slope:1k").unwrap(), c(false, true, false, 1024.0));
        assert_eq!(ss("bw:-2k").unwrap(), c(false, false, false, -2048.0));
        assert_eq!(ss("iops:0x10").unwrap(), c(true, false, false, 16.0));
        assert_eq!(ss("iops:1e2%").unwrap(), c(true, false, true, 100.0));
        for bad in [
            "IOPS:10%",
            "iops",
            "iops:",
            "iops:%",
            "iops,5",
            "iops:10%,x",
            "iops_slopes:1",
            "bw:1.5",
            "iops:1+2",
            "iops:nan",
            "iops:inf%",
            "",
            ":",
            "\u{4d2}:1",
        ] {
            assert!(ss(bad).is_err(), "{bad:?}");
        }
        let job = |extra: &str| {
            parse_str(&format!("[j]\nfilename=f\n{extra}\n"))
                .unwrap()
                .jobs
        };
        let j = &job("ss_dur=1500ms\nss_ramp=250ms")[0];
        assert_eq!((j.ss_secs(), j.ss_ramp), (1, Duration::from_millis(250)));
        assert_eq!(j.ss, SteadyState::default());
        assert_eq!(job("ss_dur=999ms")[0].ss_secs(), 0);
        assert!(parse_str("[j]\nfilename=f\nss_dur=1000001\n").is_err());
        assert!(parse_str("[j]\nfilename=f\nss_dur=-1\n").is_err());
        let set = |t: &str| {
            parse_str(&format!("[global]\nfilename=f\n{t}"))
                .unwrap()
                .jobs
        };
        assert_eq!(
            steadystate_conflict(&set("[a]\nss_dur=2\n[b]\nss_dur=2\n")),
            None
        );
        assert_eq!(steadystate_conflict(&set("[a]\nss_dur=2\n[b]\n")), Some(1));
        assert_eq!(
            steadystate_conflict(&set("[a]\nss_dur=2\n[b]\nnew_group\n")),
            None
        );
        // Without a window, the criterion and ramp are not kept (fio).
        assert_eq!(
            steadystate_conflict(&set("[a]\nss=iops:1%\n[b]\nss_ramp=3\n")),
            None
        );
        assert_eq!(
            steadystate_conflict(&set("[a]\nss_dur=2\n[b]\nss_dur=2\nss=bw:1\n")),
            Some(1)
        );
    }

    /// fio's examples' options: $-keywords and arithmetic, kb_base first
    /// in its section, rw modifiers, loops/io_size/number_ios, groups.
    #[test]
    fn examples_options() {
        let set = parse_str(
            "[global]\nfilename=f\nbs=$pagesize\n[a]\nsize=4k\nkb_base=1000\n\
             rw=randread:8\nloops=3\nio_size=(1+2)*4k\nnumber_ios=$ncpus*10\n\
             [b]\nnew_group\nrw=write:8k\nstartdelay=1-2\nwait_for=a\nblockalign=8k\n\
             random_distribution=zoned:60/10:40/90\ngtod_reduce=1\n",
        )
        .unwrap();
        let (a, b) = (&set.jobs[0], &set.jobs[1]);
        assert_eq!(a.bs[0], crate::expr::page_size());
        assert_eq!(a.size, Some(Amount::Bytes(4000)));
        assert_eq!((a.rw, a.rw_modifier, a.loops), (Rw::RandRead, 8, 3));
        assert_eq!(a.io_size, Some(12000));
        assert_eq!(a.number_ios, crate::expr::ncpus() * 10);
        assert_eq!((a.groupid, b.groupid), (0, 1));
        assert_eq!((b.rw, b.rw_modifier), (Rw::Write, 8192));
        assert_eq!(
            b.startdelay,
            (Duration::from_secs(1), Duration::from_secs(2))
        );
        assert_eq!(b.wait_for.as_deref(), Some("a"));
        assert_eq!(b.blockalign, Some(8192));
        assert!(b.disable_clat && b.disable_slat && b.disable_lat);
        for bad in [
            "[j]\nfilename=f\nwait_for=nobody\n",
            "[j]\nfilename=f\nkb_base=1001\n",
            "[j]\nfilename=f\nsize=(1+\n",
            "[j]\nfilename=f\nloops=0\n",
            "[j]\nfilename=f\nstartdelay=2-1\n",
            "[j]\nfilename=f\nsize=1/0\n",
        ] {
            assert!(parse_str(bad).is_err(), "{bad}");
        }
    }

    /// fio caps the batch knobs instead of refusing them (init.c
    /// fixup_options, ioengines.c td_io_getevents).
    #[test]
    fn batch_knobs_are_capped_like_fio() {
        let j = |s: &str| parse_str(&format!("[j]\nfilename=f\n{s}")).unwrap().jobs[0].clone();
        let a = j("iodepth=4\niodepth_batch_submit=8\n");
        assert_eq!(a.iodepth_batch_submit, 4);
        // 0 means iodepth, as fio.
        assert_eq!(j("iodepth=16\niodepth_batch=0\n").iodepth_batch_submit, 16);
        // Below iodepth: kept.
        assert_eq!(j("iodepth=16\niodepth_batch=3\n").iodepth_batch_submit, 3);
        let b = j("iodepth=8\niodepth_batch_complete_min=32\niodepth_batch_complete_max=64\n");
        assert_eq!(
            (b.iodepth_batch_complete_min, b.iodepth_batch_complete_max),
            (8, 8)
        );
        // max below min is raised to min (fio), not refused.
        let c = j("iodepth=8\niodepth_batch_complete_min=4\niodepth_batch_complete_max=2\n");
        assert_eq!(
            (c.iodepth_batch_complete_min, c.iodepth_batch_complete_max),
            (4, 4)
        );
        // Unset max stays 0 (up to the depth); the global section's value
        // is fixed up per job against that job's iodepth.
        let set = parse_str(
            "[global]\nfilename=f\niodepth_batch_submit=16\n[a]\niodepth=4\n[b]\niodepth=32\n",
        )
        .unwrap();
        assert_eq!(set.jobs[0].iodepth_batch_submit, 4);
        assert_eq!(set.jobs[1].iodepth_batch_submit, 16);
        assert_eq!(set.jobs[0].iodepth_batch_complete_max, 0);
        // The JSON's "job options" still shows what the user wrote.
        assert_eq!(
            a.set_options
                .get("iodepth_batch_submit")
                .map(String::as_str),
            Some("8")
        );
    }

    #[test]
    fn nvme_targets() {
        assert_eq!(
            parse_nvme_target("trtype=PCIe traddr=0000.04.00.0 ns=2").unwrap(),
            ("0000:04:00.0".to_string(), 2)
        );
        assert_eq!(
            parse_nvme_target("traddr=0000\\:01\\:00.0").unwrap(),
            ("0000:01:00.0".to_string(), 1)
        );
        assert!(parse_nvme_target("trtype=RDMA traddr=1.2.3.4").is_err());
        assert!(parse_nvme_target("/dev/nvme0n1").is_err());
    }

    #[test]
    fn sizes_starting_with_a_multibyte_character_are_errors_not_panics() {
        // Found by the fio_units fuzz target: byte-indexing past the first
        // character panicked inside 'Ӓ'.
        assert!(parse_size("\u{4d2}s4k").is_err());
        assert!(parse_size("é-1").is_err());
    }
}
