//! Asynchronous events: what a controller reports on its own (SMART/health
//! warnings, errors, notices such as a namespace change), through the
//! Asynchronous Event Requests the driver keeps outstanding.

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changed_namespace_lists() {
        let mut page = vec![0u8; 4096];
        page[..4].copy_from_slice(&3u32.to_le_bytes());
        page[4..8].copy_from_slice(&7u32.to_le_bytes());
        assert_eq!(changed_namespace_list(&page), Some(vec![3, 7]));
        page[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(changed_namespace_list(&page), None);
        assert_eq!(changed_namespace_list(&[0u8; 4096]), Some(vec![]));
        assert_eq!(
            AsyncEvent::from_dw0(0x0004_0002).kind,
            AsyncEventKind::Notice
        );
    }
}

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
    /// For a namespace-changed notice: the namespaces whose Identify data
    /// changed (attached, detached, resized), from the Changed Namespace
    /// List; `None` if the controller says more than 1024 changed. Get
    /// their new geometry with `Controller::rescan_namespaces`.
    pub changed_namespaces: Option<Vec<u32>>,
}

/// Parse a Changed Namespace List log page (04h): NSIDs, zero-terminated;
/// `None` when its first entry is FFFFFFFFh (more than 1024 changed).
pub(crate) fn changed_namespace_list(page: &[u8]) -> Option<Vec<u32>> {
    let ids: Vec<u32> = page
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .take_while(|&n| n != 0)
        .collect();
    if ids.first() == Some(&u32::MAX) {
        return None;
    }
    Some(ids)
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
            changed_namespaces: Some(Vec::new()),
        }
    }
}
