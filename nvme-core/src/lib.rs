//! NVMe spec types and driver logic, with no OS dependency.
pub mod barrier;
pub mod hw;
