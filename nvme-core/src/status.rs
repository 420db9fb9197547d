//! NVMe completion status, decoded into something a person can read.

use std::fmt;

/// Status Code Type.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum StatusCodeType {
    /// 0: generic command status.
    Generic,
    /// 1: command specific status.
    CommandSpecific,
    /// 2: media and data integrity errors.
    MediaError,
    /// 3: path related status.
    Path,
    /// 4-6: reserved.
    Reserved(u8),
    /// 7: vendor specific.
    VendorSpecific,
}

impl StatusCodeType {
    fn from_raw(v: u8) -> Self {
        match v {
            0 => Self::Generic,
            1 => Self::CommandSpecific,
            2 => Self::MediaError,
            3 => Self::Path,
            7 => Self::VendorSpecific,
            n => Self::Reserved(n),
        }
    }
    /// The raw 3-bit value.
    pub fn raw(self) -> u8 {
        match self {
            Self::Generic => 0,
            Self::CommandSpecific => 1,
            Self::MediaError => 2,
            Self::Path => 3,
            Self::Reserved(n) => n,
            Self::VendorSpecific => 7,
        }
    }
}

/// A non-success status from a completion entry.
#[derive(Copy, Clone, PartialEq, Eq, Hash)]
pub struct NvmeStatus {
    /// SCT.
    pub sct: StatusCodeType,
    /// SC.
    pub sc: u8,
    /// CRD: command retry delay selector.
    pub crd: u8,
    /// M: more information in the Error Information log page.
    pub more: bool,
    /// DNR: do not retry; the same command would fail again.
    pub dnr: bool,
}

impl NvmeStatus {
    /// Generic: Invalid Field in Command.
    pub const INVALID_FIELD: (StatusCodeType, u8) = (StatusCodeType::Generic, 0x02);
    /// NVM: LBA Out of Range.
    pub const LBA_OUT_OF_RANGE: (StatusCodeType, u8) = (StatusCodeType::Generic, 0x80);

    /// Decode the 16-bit status word of a completion entry (phase in bit 0).
    #[inline]
    pub fn from_field(field: u16) -> Result<(), NvmeStatus> {
        // Success is SCT = 0 and SC = 0 (bits 11:1); test that first and
        // decode only an error, out of line.
        if field & 0x0ffe == 0 {
            return Ok(());
        }
        Self::decode(field)
    }

    #[cold]
    #[inline(never)]
    fn decode(field: u16) -> Result<(), NvmeStatus> {
        let sf = field >> 1;
        let sc = (sf & 0xff) as u8;
        let sct = ((sf >> 8) & 0x7) as u8;
        if sc == 0 && sct == 0 {
            return Ok(());
        }
        Err(NvmeStatus {
            sct: StatusCodeType::from_raw(sct),
            sc,
            crd: ((sf >> 11) & 0x3) as u8,
            more: (sf >> 13) & 1 == 1,
            dnr: (sf >> 14) & 1 == 1,
        })
    }

    /// True if this is the given (SCT, SC) pair.
    pub fn is(&self, code: (StatusCodeType, u8)) -> bool {
        self.sct == code.0 && self.sc == code.1
    }

    /// The spec's name for this status, or `None` for a code we do not know.
    pub fn name(&self) -> Option<&'static str> {
        use StatusCodeType::*;
        Some(match (self.sct, self.sc) {
            (Generic, 0x00) => "Successful Completion",
            (Generic, 0x01) => "Invalid Command Opcode",
            (Generic, 0x02) => "Invalid Field in Command",
            (Generic, 0x03) => "Command ID Conflict",
            (Generic, 0x04) => "Data Transfer Error",
            (Generic, 0x05) => "Commands Aborted due to Power Loss Notification",
            (Generic, 0x06) => "Internal Error",
            (Generic, 0x07) => "Command Abort Requested",
            (Generic, 0x08) => "Command Aborted due to SQ Deletion",
            (Generic, 0x09) => "Command Aborted due to Failed Fused Command",
            (Generic, 0x0a) => "Command Aborted due to Missing Fused Command",
            (Generic, 0x0b) => "Invalid Namespace or Format",
            (Generic, 0x0c) => "Command Sequence Error",
            (Generic, 0x0d) => "Invalid SGL Segment Descriptor",
            (Generic, 0x0e) => "Invalid Number of SGL Descriptors",
            (Generic, 0x0f) => "Data SGL Length Invalid",
            (Generic, 0x10) => "Metadata SGL Length Invalid",
            (Generic, 0x11) => "SGL Descriptor Type Invalid",
            (Generic, 0x12) => "Invalid Use of Controller Memory Buffer",
            (Generic, 0x13) => "PRP Offset Invalid",
            (Generic, 0x14) => "Atomic Write Unit Exceeded",
            (Generic, 0x15) => "Operation Denied",
            (Generic, 0x16) => "SGL Offset Invalid",
            (Generic, 0x18) => "Host Identifier Inconsistent Format",
            (Generic, 0x19) => "Keep Alive Timer Expired",
            (Generic, 0x1a) => "Keep Alive Timeout Invalid",
            (Generic, 0x1b) => "Command Aborted due to Preempt and Abort",
            (Generic, 0x1c) => "Sanitize Failed",
            (Generic, 0x1d) => "Sanitize In Progress",
            (Generic, 0x1e) => "SGL Data Block Granularity Invalid",
            (Generic, 0x1f) => "Command Not Supported for Queue in CMB",
            (Generic, 0x20) => "Namespace is Write Protected",
            (Generic, 0x21) => "Command Interrupted",
            (Generic, 0x22) => "Transient Transport Error",
            (Generic, 0x80) => "LBA Out of Range",
            (Generic, 0x81) => "Capacity Exceeded",
            (Generic, 0x82) => "Namespace Not Ready",
            (Generic, 0x83) => "Reservation Conflict",
            (Generic, 0x84) => "Format In Progress",
            (CommandSpecific, 0x00) => "Completion Queue Invalid",
            (CommandSpecific, 0x01) => "Invalid Queue Identifier",
            (CommandSpecific, 0x02) => "Invalid Queue Size",
            (CommandSpecific, 0x03) => "Abort Command Limit Exceeded",
            (CommandSpecific, 0x05) => "Asynchronous Event Request Limit Exceeded",
            (CommandSpecific, 0x06) => "Invalid Firmware Slot",
            (CommandSpecific, 0x07) => "Invalid Firmware Image",
            (CommandSpecific, 0x08) => "Invalid Interrupt Vector",
            (CommandSpecific, 0x09) => "Invalid Log Page",
            (CommandSpecific, 0x0a) => "Invalid Format",
            (CommandSpecific, 0x0b) => "Firmware Activation Requires Conventional Reset",
            (CommandSpecific, 0x0c) => "Invalid Queue Deletion",
            (CommandSpecific, 0x0d) => "Feature Identifier Not Saveable",
            (CommandSpecific, 0x0e) => "Feature Not Changeable",
            (CommandSpecific, 0x0f) => "Feature Not Namespace Specific",
            (CommandSpecific, 0x10) => "Firmware Activation Requires NVM Subsystem Reset",
            (CommandSpecific, 0x11) => "Firmware Activation Requires Controller Level Reset",
            (CommandSpecific, 0x12) => "Firmware Activation Requires Maximum Time Violation",
            (CommandSpecific, 0x13) => "Firmware Activation Prohibited",
            (CommandSpecific, 0x14) => "Overlapping Range",
            (CommandSpecific, 0x15) => "Namespace Insufficient Capacity",
            (CommandSpecific, 0x16) => "Namespace Identifier Unavailable",
            (CommandSpecific, 0x18) => "Namespace Already Attached",
            (CommandSpecific, 0x19) => "Namespace Is Private",
            (CommandSpecific, 0x1a) => "Namespace Not Attached",
            (CommandSpecific, 0x1b) => "Thin Provisioning Not Supported",
            (CommandSpecific, 0x1c) => "Controller List Invalid",
            (CommandSpecific, 0x80) => "Conflicting Attributes",
            (CommandSpecific, 0x81) => "Invalid Protection Information",
            (CommandSpecific, 0x82) => "Attempted Write to Read Only Range",
            (MediaError, 0x80) => "Write Fault",
            (MediaError, 0x81) => "Unrecovered Read Error",
            (MediaError, 0x82) => "End-to-end Guard Check Error",
            (MediaError, 0x83) => "End-to-end Application Tag Check Error",
            (MediaError, 0x84) => "End-to-end Reference Tag Check Error",
            (MediaError, 0x85) => "Compare Failure",
            (MediaError, 0x86) => "Access Denied",
            (MediaError, 0x87) => "Deallocated or Unwritten Logical Block",
            (Path, 0x00) => "Internal Path Error",
            (Path, 0x01) => "Asymmetric Access Persistent Loss",
            (Path, 0x02) => "Asymmetric Access Inaccessible",
            (Path, 0x03) => "Asymmetric Access Transition",
            (Path, 0x60) => "Controller Pathing Error",
            (Path, 0x70) => "Host Pathing Error",
            (Path, 0x71) => "Command Aborted By Host",
            _ => return None,
        })
    }
}

impl fmt::Display for NvmeStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => write!(f, "{n}")?,
            None => write!(f, "unknown status")?,
        }
        write!(f, " (SCT {:#x}, SC {:#04x}", self.sct.raw(), self.sc)?;
        if self.dnr {
            write!(f, ", DNR")?;
        }
        if self.more {
            write!(f, ", More: see the Error Information log")?;
        }
        write!(f, ")")
    }
}

impl fmt::Debug for NvmeStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NvmeStatus({self})")
    }
}

impl std::error::Error for NvmeStatus {}

/// Why a command did not succeed: the controller said so, or the driver
/// gave up waiting for it.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CommandError {
    /// The controller completed the command with this status.
    Device(NvmeStatus),
    /// The command passed its deadline without completing. The device
    /// still owns its memory: the buffer is not in this completion; it
    /// comes back in a second completion with the same tag once the device
    /// completes the command (after an Abort, or late), or is released
    /// when the queue pair is torn down.
    TimedOut {
        /// The deadline the command had.
        after: std::time::Duration,
    },
    /// The controller was reset while the command was in flight: it was
    /// not carried out, or not known to be; the buffer is back (the reset
    /// stopped the controller first). Submit it again if it should happen.
    ControllerReset,
    /// The device was removed (hot-unplug) or taken back by the kernel
    /// while the command was in flight; the buffer is back.
    DeviceRemoved,
}

impl CommandError {
    /// The controller's status, if the controller completed the command.
    pub fn nvme(&self) -> Option<NvmeStatus> {
        match self {
            CommandError::Device(s) => Some(*s),
            CommandError::TimedOut { .. }
            | CommandError::ControllerReset
            | CommandError::DeviceRemoved => None,
        }
    }
}

impl From<NvmeStatus> for CommandError {
    fn from(s: NvmeStatus) -> Self {
        CommandError::Device(s)
    }
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommandError::Device(s) => s.fmt(f),
            CommandError::TimedOut { after } => write!(
                f,
                "no completion within {after:?}; the device still owns the command's memory"
            ),
            CommandError::DeviceRemoved => write!(
                f,
                "the device was removed (hot-unplug, or the kernel took it back)"
            ),
            CommandError::ControllerReset => write!(
                f,
                "aborted by a controller reset (not carried out, or not known to be): submit \
                 it again"
            ),
        }
    }
}

impl std::error::Error for CommandError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_status_words() {
        assert_eq!(NvmeStatus::from_field(0), Ok(()));
        assert_eq!(
            NvmeStatus::from_field(1),
            Ok(()),
            "phase bit alone is success"
        );
        // LBA Out of Range with DNR: SC 0x80, SCT 0, DNR bit 14 of the status field.
        let word = ((0x80u16) << 1) | (1 << 15) | 1;
        let s = NvmeStatus::from_field(word).unwrap_err();
        assert!(s.is(NvmeStatus::LBA_OUT_OF_RANGE));
        assert!(s.dnr && !s.more);
        assert_eq!(s.to_string(), "LBA Out of Range (SCT 0x0, SC 0x80, DNR)");
        // Invalid Queue Identifier (SCT 1, SC 1).
        let s = NvmeStatus::from_field((1 | (1 << 8)) << 1).unwrap_err();
        assert_eq!(s.name(), Some("Invalid Queue Identifier"));
        // Unknown vendor code still prints its numbers.
        let s = NvmeStatus::from_field((0xc0 | (7 << 8)) << 1).unwrap_err();
        assert_eq!(s.to_string(), "unknown status (SCT 0x7, SC 0xc0)");
    }
}
