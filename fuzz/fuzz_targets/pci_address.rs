//! PCI addresses from the user (command line, job files, sysfs names).
//!
//! Asserts: `PciAddress::parse` never panics; an accepted address has
//! device <= 0x1f and function <= 7 and agrees with `PciAddress::new`;
//! Display (the sysfs form) parses back to the same address; `FromStr`
//! is `parse`; an error names the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nvme_vfio::{PciAddress, VfioError};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let r = PciAddress::parse(s);
    match &r {
        Ok(a) => {
            assert!(a.device <= 0x1f && a.function <= 7);
            assert_eq!(
                PciAddress::new(a.domain, a.bus, a.device, a.function).ok(),
                Some(*a)
            );
            let shown = a.to_string();
            assert_eq!(PciAddress::parse(&shown).ok(), Some(*a), "{shown}");
            assert_eq!(s.parse::<PciAddress>().ok(), Some(*a));
        }
        Err(VfioError::InvalidPciAddress { input, .. }) => assert_eq!(input, s),
        Err(e) => panic!("unexpected error kind {e:?}"),
    }
    let _ = r.map_err(|e| e.to_string());
});
