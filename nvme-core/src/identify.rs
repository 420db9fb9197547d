//! Identify Controller / Namespace data and log pages, parsed from the
//! bytes the controller returns into safe structs.

fn le16(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes([b[off], b[off + 1]])
}
fn le32(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().expect("4 bytes"))
}
fn le64(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().expect("8 bytes"))
}
fn le128(b: &[u8], off: usize) -> u128 {
    u128::from_le_bytes(b[off..off + 16].try_into().expect("16 bytes"))
}
fn ascii(b: &[u8]) -> String {
    String::from_utf8_lossy(b)
        .trim_end_matches([' ', '\0'])
        .to_string()
}

/// Size of an Identify data structure.
pub const IDENTIFY_SIZE: usize = 4096;

/// Optional Admin Command Support (OACS).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Oacs(pub u16);
impl Oacs {
    /// Security Send/Receive.
    pub fn security(self) -> bool {
        self.0 & (1 << 0) != 0
    }
    /// Format NVM.
    pub fn format_nvm(self) -> bool {
        self.0 & (1 << 1) != 0
    }
    /// Firmware Download/Commit.
    pub fn firmware(self) -> bool {
        self.0 & (1 << 2) != 0
    }
    /// Namespace Management.
    pub fn namespace_management(self) -> bool {
        self.0 & (1 << 3) != 0
    }
    /// Doorbell Buffer Config (shadow doorbells).
    pub fn doorbell_buffer_config(self) -> bool {
        self.0 & (1 << 8) != 0
    }
}

/// Optional NVM Command Support (ONCS).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Oncs(pub u16);
impl Oncs {
    /// Compare.
    pub fn compare(self) -> bool {
        self.0 & (1 << 0) != 0
    }
    /// Write Uncorrectable.
    pub fn write_uncorrectable(self) -> bool {
        self.0 & (1 << 1) != 0
    }
    /// Dataset Management.
    pub fn dataset_management(self) -> bool {
        self.0 & (1 << 2) != 0
    }
    /// Write Zeroes.
    pub fn write_zeroes(self) -> bool {
        self.0 & (1 << 3) != 0
    }
    /// Save field in Set/Get Features.
    pub fn save_features(self) -> bool {
        self.0 & (1 << 4) != 0
    }
    /// Reservations.
    pub fn reservations(self) -> bool {
        self.0 & (1 << 5) != 0
    }
    /// Timestamp.
    pub fn timestamp(self) -> bool {
        self.0 & (1 << 6) != 0
    }
    /// Verify.
    pub fn verify(self) -> bool {
        self.0 & (1 << 7) != 0
    }
    /// Copy.
    pub fn copy(self) -> bool {
        self.0 & (1 << 8) != 0
    }
}

/// SGL Support (SGLS).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Sgls(pub u32);
impl Sgls {
    /// SGLs are supported for the NVM command set (any alignment requirement).
    pub fn supported(self) -> bool {
        self.0 & 0b11 != 0
    }
    /// SGLs require dword alignment and granularity.
    pub fn dword_aligned(self) -> bool {
        self.0 & 0b11 == 0b10
    }
}

/// Identify Controller data (CNS 01h), the fields the driver uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentifyController {
    /// PCI vendor ID.
    pub vid: u16,
    /// PCI subsystem vendor ID.
    pub ssvid: u16,
    /// Serial number.
    pub serial: String,
    /// Model number.
    pub model: String,
    /// Firmware revision.
    pub firmware: String,
    /// MDTS: max data transfer is `2^MDTS` minimum pages; 0 = no limit.
    pub mdts: u8,
    /// Controller ID.
    pub cntlid: u16,
    /// Version the controller reports in Identify (may be 0 on old devices).
    pub ver: u32,
    /// OACS.
    pub oacs: Oacs,
    /// Abort command limit (0-based).
    pub acl: u8,
    /// Asynchronous event request limit (0-based).
    pub aerl: u8,
    /// OAES: optional asynchronous events supported (bit 8 namespace
    /// attribute notices, bit 9 firmware activation notices, ...).
    pub oaes: u32,
    /// Error log page entries (0-based).
    pub elpe: u8,
    /// SQES: required (3:0) and maximum (7:4) SQ entry size, log2 bytes.
    pub sqes: u8,
    /// CQES: required (3:0) and maximum (7:4) CQ entry size, log2 bytes.
    pub cqes: u8,
    /// MAXCMD: max outstanding commands (0 = not reported).
    pub maxcmd: u16,
    /// NN: number of namespaces (highest NSID).
    pub nn: u32,
    /// ONCS.
    pub oncs: Oncs,
    /// VWC: volatile write cache present (bit 0).
    pub vwc: u8,
    /// SGLS.
    pub sgls: Sgls,
    /// NVM subsystem NQN.
    pub subnqn: String,
}

impl IdentifyController {
    /// Parse from the 4096-byte Identify Controller structure.
    pub fn parse(b: &[u8; IDENTIFY_SIZE]) -> Self {
        IdentifyController {
            vid: le16(b, 0),
            ssvid: le16(b, 2),
            serial: ascii(&b[4..24]),
            model: ascii(&b[24..64]),
            firmware: ascii(&b[64..72]),
            mdts: b[77],
            cntlid: le16(b, 78),
            ver: le32(b, 80),
            oacs: Oacs(le16(b, 256)),
            acl: b[258],
            aerl: b[259],
            oaes: le32(b, 92),
            elpe: b[262],
            sqes: b[512],
            cqes: b[513],
            maxcmd: le16(b, 514),
            nn: le32(b, 516),
            oncs: Oncs(le16(b, 520)),
            vwc: b[525],
            sgls: Sgls(le32(b, 536)),
            subnqn: ascii(&b[768..1024]),
        }
    }

    /// Required (minimum) SQ entry size, log2 bytes.
    pub fn sqes_min(&self) -> u8 {
        self.sqes & 0xf
    }
    /// Maximum SQ entry size, log2 bytes.
    pub fn sqes_max(&self) -> u8 {
        self.sqes >> 4
    }
    /// Required (minimum) CQ entry size, log2 bytes.
    pub fn cqes_min(&self) -> u8 {
        self.cqes & 0xf
    }
    /// Maximum CQ entry size, log2 bytes.
    pub fn cqes_max(&self) -> u8 {
        self.cqes >> 4
    }
    /// A volatile write cache is present.
    pub fn has_volatile_write_cache(&self) -> bool {
        self.vwc & 1 == 1
    }
    /// Largest transfer in bytes for the given minimum page size
    /// (`None` if MDTS is 0, "no limit", or if `page << MDTS` does not fit
    /// in a `usize`, no limit either).
    pub fn max_transfer_bytes(&self, min_page_size: usize) -> Option<usize> {
        if self.mdts == 0 {
            None
        } else {
            // Not `checked_shl`: it only checks the shift amount, and would
            // let e.g. 4096 << 52 wrap to Some(0).
            min_page_size.checked_mul(1usize.checked_shl(u32::from(self.mdts))?)
        }
    }
}

/// One LBA format.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct LbaFormat {
    /// Metadata bytes per block.
    pub metadata_size: u16,
    /// LBADS: data size is `2^lbads` bytes.
    pub lbads: u8,
    /// Relative performance (0 best).
    pub relative_performance: u8,
}

impl LbaFormat {
    /// Data bytes per logical block (`2^LBADS`; 0 for an LBADS of 64 or
    /// more, which is no block size: the driver uses only 9..=16).
    pub fn block_size(&self) -> u64 {
        1u64.checked_shl(u32::from(self.lbads)).unwrap_or(0)
    }
}

/// Identify Namespace data (CNS 00h), the fields the driver uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentifyNamespace {
    /// NSZE: namespace size in logical blocks.
    pub nsze: u64,
    /// NCAP: namespace capacity in logical blocks.
    pub ncap: u64,
    /// NUSE: namespace utilization in logical blocks.
    pub nuse: u64,
    /// NSFEAT.
    pub nsfeat: u8,
    /// FLBAS: formatted LBA size (index and extended-metadata bit).
    pub flbas: u8,
    /// DLFEAT: what a deallocated block reads back as.
    pub dlfeat: u8,
    /// NGUID.
    pub nguid: [u8; 16],
    /// EUI64.
    pub eui64: [u8; 8],
    /// Supported LBA formats (NLBAF + 1 of them).
    pub lba_formats: Vec<LbaFormat>,
}

impl IdentifyNamespace {
    /// Parse from the 4096-byte Identify Namespace structure.
    pub fn parse(b: &[u8; IDENTIFY_SIZE]) -> Self {
        let nlbaf = usize::from(b[25]) + 1;
        let lba_formats = (0..nlbaf.min(64))
            .map(|i| {
                let v = le32(b, 128 + 4 * i);
                LbaFormat {
                    metadata_size: (v & 0xffff) as u16,
                    lbads: ((v >> 16) & 0xff) as u8,
                    relative_performance: ((v >> 24) & 0x3) as u8,
                }
            })
            .collect();
        IdentifyNamespace {
            nsze: le64(b, 0),
            ncap: le64(b, 8),
            nuse: le64(b, 16),
            nsfeat: b[24],
            flbas: b[26],
            dlfeat: b[33],
            nguid: b[104..120].try_into().expect("16 bytes"),
            eui64: b[120..128].try_into().expect("8 bytes"),
            lba_formats,
        }
    }

    /// Index of the LBA format in use.
    pub fn format_index(&self) -> usize {
        usize::from(self.flbas & 0xf) | (usize::from((self.flbas >> 5) & 0x3) << 4)
    }

    /// The LBA format in use, if the index is valid.
    pub fn current_format(&self) -> Option<LbaFormat> {
        self.lba_formats.get(self.format_index()).copied()
    }

    /// A namespace that does not exist or is inactive reads back as zeros.
    pub fn is_active(&self) -> bool {
        self.nsze != 0
    }
}

/// SMART / Health Information (log page 02h).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmartLog {
    /// Critical warning bits.
    pub critical_warning: u8,
    /// Composite temperature in kelvin.
    pub temperature_kelvin: u16,
    /// Available spare, percent.
    pub available_spare: u8,
    /// Available spare threshold, percent.
    pub available_spare_threshold: u8,
    /// Percentage used.
    pub percentage_used: u8,
    /// Data units read (thousands of 512-byte units).
    pub data_units_read: u128,
    /// Data units written (thousands of 512-byte units).
    pub data_units_written: u128,
    /// Host read commands.
    pub host_read_commands: u128,
    /// Host write commands.
    pub host_write_commands: u128,
    /// Controller busy time, minutes.
    pub controller_busy_time: u128,
    /// Power cycles.
    pub power_cycles: u128,
    /// Power-on hours.
    pub power_on_hours: u128,
    /// Unsafe shutdowns.
    pub unsafe_shutdowns: u128,
    /// Media and data integrity errors.
    pub media_errors: u128,
    /// Number of error information log entries.
    pub error_log_entries: u128,
}

/// Size of the SMART / Health log page.
pub const SMART_LOG_SIZE: usize = 512;

impl SmartLog {
    /// Parse from the 512-byte log page.
    pub fn parse(b: &[u8; SMART_LOG_SIZE]) -> Self {
        SmartLog {
            critical_warning: b[0],
            temperature_kelvin: le16(b, 1),
            available_spare: b[3],
            available_spare_threshold: b[4],
            percentage_used: b[5],
            data_units_read: le128(b, 32),
            data_units_written: le128(b, 48),
            host_read_commands: le128(b, 64),
            host_write_commands: le128(b, 80),
            controller_busy_time: le128(b, 96),
            power_cycles: le128(b, 112),
            power_on_hours: le128(b, 128),
            unsafe_shutdowns: le128(b, 144),
            media_errors: le128(b, 160),
            error_log_entries: le128(b, 176),
        }
    }
}

/// One Error Information log entry (log page 01h).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErrorLogEntry {
    /// Error count (0 = entry unused).
    pub error_count: u64,
    /// Submission queue ID.
    pub sqid: u16,
    /// Command ID.
    pub cid: u16,
    /// The status the command completed with.
    pub status: Result<(), crate::status::NvmeStatus>,
    /// Parameter error location.
    pub parameter_error_location: u16,
    /// LBA.
    pub lba: u64,
    /// Namespace.
    pub nsid: u32,
}

/// Size of one Error Information log entry.
pub const ERROR_LOG_ENTRY_SIZE: usize = 64;

impl ErrorLogEntry {
    /// Parse one 64-byte entry.
    pub fn parse(b: &[u8]) -> Self {
        ErrorLogEntry {
            error_count: le64(b, 0),
            sqid: le16(b, 8),
            cid: le16(b, 10),
            status: crate::status::NvmeStatus::from_field(le16(b, 12)),
            parameter_error_location: le16(b, 14),
            lba: le64(b, 16),
            nsid: le32(b, 24),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_identify_controller() {
        let mut b = [0u8; IDENTIFY_SIZE];
        b[0..2].copy_from_slice(&0x1b36u16.to_le_bytes());
        b[4..24].copy_from_slice(b"deadbeef            ");
        b[24..64].copy_from_slice(b"QEMU NVMe Ctrl                          ");
        b[77] = 7;
        b[256] = 0x0a;
        b[257] = 0x01;
        b[512] = 0x66;
        b[513] = 0x44;
        b[516..520].copy_from_slice(&256u32.to_le_bytes());
        b[520] = 0x5f;
        b[536] = 0x01;
        let id = IdentifyController::parse(&b);
        assert_eq!(id.vid, 0x1b36);
        assert_eq!(id.serial, "deadbeef");
        assert_eq!(id.model, "QEMU NVMe Ctrl");
        assert_eq!(id.mdts, 7);
        assert_eq!(id.max_transfer_bytes(4096), Some(512 * 1024));
        assert!(id.oacs.doorbell_buffer_config() && id.oacs.format_nvm());
        assert_eq!((id.sqes_min(), id.sqes_max(), id.cqes_min()), (6, 6, 4));
        assert_eq!(id.nn, 256);
        assert!(id.oncs.compare() && id.oncs.write_zeroes() && !id.oncs.reservations());
        assert!(id.sgls.supported());
    }

    #[test]
    fn parses_identify_namespace_and_flbas() {
        let mut b = [0u8; IDENTIFY_SIZE];
        b[0..8].copy_from_slice(&2048u64.to_le_bytes());
        b[25] = 1; // two formats
        b[26] = 1; // using format 1
        b[128..132].copy_from_slice(&(9u32 << 16).to_le_bytes());
        b[132..136].copy_from_slice(&(12u32 << 16).to_le_bytes());
        let ns = IdentifyNamespace::parse(&b);
        assert_eq!(ns.nsze, 2048);
        assert_eq!(ns.lba_formats.len(), 2);
        assert_eq!(ns.current_format().unwrap().block_size(), 4096);
        assert!(ns.is_active());
        // Format index above 15 uses FLBAS bits 6:5.
        let ns2 = IdentifyNamespace {
            flbas: 0b0100_0001,
            ..ns
        };
        assert_eq!(ns2.format_index(), 0x21);
        assert_eq!(ns2.current_format(), None);
    }

    /// Found by fuzz/identify_controller: 4096 << 52 wrapped to Some(0).
    #[test]
    fn max_transfer_never_wraps() {
        let mut b = [0u8; IDENTIFY_SIZE];
        for (mdts, page, want) in [
            (52u8, 4096usize, None),
            (51, 4096, Some(1usize << 63)),
            (7, usize::MAX, None),
            (64, 1, None),
            (255, 4096, None),
            (1, 1 << 27, Some(1 << 28)),
        ] {
            b[77] = mdts;
            let id = IdentifyController::parse(&b);
            assert_eq!(id.max_transfer_bytes(page), want, "MDTS {mdts} page {page}");
        }
    }

    /// Found by fuzz/identify_namespace: LBADS >= 64 overflowed the shift.
    #[test]
    fn block_size_of_any_lbads() {
        let f = |lbads| LbaFormat {
            metadata_size: 0,
            lbads,
            relative_performance: 0,
        };
        assert_eq!(f(9).block_size(), 512);
        assert_eq!(f(63).block_size(), 1 << 63);
        assert_eq!(f(64).block_size(), 0);
        assert_eq!(f(255).block_size(), 0);
    }

    #[test]
    fn parses_smart_log() {
        let mut b = [0u8; SMART_LOG_SIZE];
        b[1..3].copy_from_slice(&300u16.to_le_bytes());
        b[3] = 100;
        b[64..80].copy_from_slice(&12345u128.to_le_bytes());
        let s = SmartLog::parse(&b);
        assert_eq!(s.temperature_kelvin, 300);
        assert_eq!(s.available_spare, 100);
        assert_eq!(s.host_read_commands, 12345);
    }
}
