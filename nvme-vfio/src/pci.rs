//! PCI addresses (`domain:bus:device.function`).

use std::fmt;
use std::str::FromStr;

use crate::error::VfioError;

/// A PCI function address, e.g. `0000:01:00.0`.
///
/// Parses the three spellings in common use:
/// - `0000:01:00.0` (sysfs / `lspci -D`),
/// - `01:00.0` (`lspci`; domain 0),
/// - `0000.01.00.0` (SPDK's dotted form).
///
/// [`fmt::Display`] always prints the sysfs form (`{domain:04x}:{bus:02x}:{dev:02x}.{fn:x}`),
/// which is also the name VFIO knows the device by.
#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct PciAddress {
    /// PCI segment / domain (usually 0; VMD domains are 5 hex digits).
    pub domain: u32,
    /// Bus number.
    pub bus: u8,
    /// Device (slot) number, 0..=31.
    pub device: u8,
    /// Function number, 0..=7.
    pub function: u8,
}

impl PciAddress {
    /// Build an address from its parts, checking the device and function ranges.
    pub fn new(domain: u32, bus: u8, device: u8, function: u8) -> Result<Self, VfioError> {
        if device > 0x1f {
            return Err(invalid(
                &format!("{domain:04x}:{bus:02x}:{device:02x}.{function:x}"),
                "device number is above 0x1f",
            ));
        }
        if function > 7 {
            return Err(invalid(
                &format!("{domain:04x}:{bus:02x}:{device:02x}.{function:x}"),
                "function number is above 7",
            ));
        }
        Ok(PciAddress {
            domain,
            bus,
            device,
            function,
        })
    }

    /// Parse any of the accepted spellings (see the type docs).
    pub fn parse(input: &str) -> Result<Self, VfioError> {
        let s = input.trim();
        if s.is_empty() {
            return Err(invalid(input, "empty string"));
        }
        let (domain, bus, device, function) = if s.contains(':') {
            // DDDD:BB:DD.F or BB:DD.F
            let parts: Vec<&str> = s.split(':').collect();
            let (domain, bus, devfn) = match parts.as_slice() {
                [d, b, df] => (hex(input, d, 8, "domain")?, *b, *df),
                [b, df] => (0, *b, *df),
                _ => return Err(invalid(input, "wrong number of ':'-separated fields")),
            };
            let (dev, func) = devfn
                .split_once('.')
                .ok_or_else(|| invalid(input, "missing '.' between device and function"))?;
            (
                domain,
                hex(input, bus, 2, "bus")?,
                hex(input, dev, 2, "device")?,
                hex(input, func, 1, "function")?,
            )
        } else {
            // DDDD.BB.DD.F
            match s.split('.').collect::<Vec<_>>().as_slice() {
                [d, b, dev, f] => (
                    hex(input, d, 8, "domain")?,
                    hex(input, b, 2, "bus")?,
                    hex(input, dev, 2, "device")?,
                    hex(input, f, 1, "function")?,
                ),
                _ => return Err(invalid(input, "not in a recognised form")),
            }
        };
        if device > 0x1f {
            return Err(invalid(input, "device number is above 0x1f"));
        }
        if function > 7 {
            return Err(invalid(input, "function number is above 7"));
        }
        // `hex` bounded the digit counts, so these conversions cannot truncate.
        Ok(PciAddress {
            domain: domain as u32,
            bus: bus as u8,
            device: device as u8,
            function: function as u8,
        })
    }
}

fn invalid(input: &str, reason: &'static str) -> VfioError {
    VfioError::InvalidPciAddress {
        input: input.to_string(),
        reason,
    }
}

/// Parse 1..=`max_digits` hex digits.
fn hex(input: &str, field: &str, max_digits: usize, what: &'static str) -> Result<u64, VfioError> {
    if field.is_empty() || field.len() > max_digits || !field.bytes().all(|b| b.is_ascii_hexdigit())
    {
        let reason = match what {
            "domain" => "domain must be 1 to 8 hex digits",
            "bus" => "bus must be 1 or 2 hex digits",
            "device" => "device must be 1 or 2 hex digits",
            _ => "function must be one hex digit",
        };
        return Err(invalid(input, reason));
    }
    u64::from_str_radix(field, 16).map_err(|_| invalid(input, "not a hex number"))
}

impl FromStr for PciAddress {
    type Err = VfioError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PciAddress::parse(s)
    }
}

impl fmt::Display for PciAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04x}:{:02x}:{:02x}.{:x}",
            self.domain, self.bus, self.device, self.function
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> PciAddress {
        PciAddress::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn accepted_forms() {
        let want = PciAddress {
            domain: 0,
            bus: 1,
            device: 0,
            function: 0,
        };
        assert_eq!(p("0000:01:00.0"), want);
        assert_eq!(p("01:00.0"), want);
        assert_eq!(p("0000.01.00.0"), want);
        assert_eq!(p("  0000:01:00.0\n"), want);
        assert_eq!(
            p("0001:af:1f.7"),
            PciAddress {
                domain: 1,
                bus: 0xaf,
                device: 0x1f,
                function: 7
            }
        );
        assert_eq!(p("0000:AF:1F.7").bus, 0xaf);
        assert_eq!(p("10000:e1:00.0").domain, 0x10000);
        assert_eq!("0000:5e:00.1".parse::<PciAddress>().unwrap().function, 1);
    }

    #[test]
    fn display_is_sysfs_form() {
        assert_eq!(p("1:0.0").to_string(), "0000:01:00.0");
        assert_eq!(p("0000.3b.02.1").to_string(), "0000:3b:02.1");
        assert_eq!(p("10000:e1:00.0").to_string(), "10000:e1:00.0");
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "",
            "   ",
            "nvme0",
            "0000:01:00",
            "0000:01:00.",
            "0000:01:00.8",
            "0000:01:20.0",
            "0000:001:00.0",
            "0000:01:000.0",
            "0000:01:00.0.0",
            "0000:01:00:0",
            "g000:01:00.0",
            "0000::00.0",
            ":01:00.0",
            "0000:01:00.0:1",
            "0000.01.00",
            "01.00.0",
            "0000.01:00.0",
            "123456789:01:00.0",
            "0000:01:00.-1",
            "+1:00.0",
        ] {
            match PciAddress::parse(bad) {
                Err(VfioError::InvalidPciAddress { input, .. }) => assert_eq!(input, bad),
                other => panic!("{bad:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn error_message_shows_expected_forms() {
        let e = PciAddress::parse("0000:01:00.9").unwrap_err().to_string();
        assert!(e.contains("0000:01:00.9"), "{e}");
        assert!(e.contains("function"), "{e}");
        assert!(e.contains("DDDD:BB:DD.F"), "{e}");
    }

    #[test]
    fn new_checks_ranges() {
        assert!(PciAddress::new(0, 1, 0x1f, 7).is_ok());
        assert!(PciAddress::new(0, 1, 0x20, 0).is_err());
        assert!(PciAddress::new(0, 1, 0, 8).is_err());
    }
}
