//! Linux VFIO backend for nvme-core.
