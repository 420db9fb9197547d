//! Asynchronous events: what a controller reports on its own (SMART/health
//! warnings, errors, notices such as a namespace change), through the
//! Asynchronous Event Requests the driver keeps outstanding.

use crate::identify::SmartLog;

/// The kind of an asynchronous event (completion DW0 bits 2:0).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AsyncEventKind {
    /// An error status (log page 01h; e.g. an invalid doorbell write).
    Error,
    /// A SMART/health warning (log page 02h): see the critical warning bits.
    SmartHealth,
    /// A notice: namespace attribute changed (04h), firmware activation
    /// starting, telemetry, and others.
    Notice,
    /// I/O command set specific.
    IoCommandSet,
    /// Vendor specific.
    Vendor,
    /// A reserved type value.
    Reserved(u8),
}

/// One asynchronous event, with the log page it names already read (which
/// also lets the controller report the next event of its type).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AsyncEvent {
    /// What kind of event.
    pub kind: AsyncEventKind,
    /// Asynchronous event information (DW0 bits 15:8): which event of the kind.
    pub info: u8,
    /// The log page the event names (DW0 bits 23:16).
    pub log_page: u8,
    /// For a SMART/health event: the SMART log as read after it.
    pub smart: Option<SmartLog>,
}

impl AsyncEvent {
    /// Decode an Asynchronous Event Request's completion DW0.
    pub fn from_dw0(dw0: u32) -> Self {
        let kind = match dw0 & 7 {
            0 => AsyncEventKind::Error,
            1 => AsyncEventKind::SmartHealth,
            2 => AsyncEventKind::Notice,
            6 => AsyncEventKind::IoCommandSet,
            7 => AsyncEventKind::Vendor,
            t => AsyncEventKind::Reserved(t as u8),
        };
        AsyncEvent {
            kind,
            info: (dw0 >> 8) as u8,
            log_page: (dw0 >> 16) as u8,
            smart: None,
        }
    }
}
