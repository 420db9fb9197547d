//! Submit-and-wait helpers: one command on an idle queue pair, polled to
//! completion within the controller's `io_timeout`. A timeout leaves the
//! buffer with the queue pair (the device may still write it).

use std::time::Instant;

use crate::buffer::DmaBuf;
use crate::cmd::io_opcode;
use crate::controller::{Namespace, TimeoutPolicy};
use crate::error::{Error, IoError, Rejected};
use crate::hw::Hardware;
use crate::status::CommandError;
use crate::units::Lba;

use super::{Completion, IoQueuePair};

/// Tag used by the blocking helpers.
const SYNC_TAG: u64 = u64::MAX;

/// The blocking data commands: name, what errors call the command, opcode
/// and FUA, each the submit-and-wait form of a `submit_*` method.
macro_rules! blocking_data_commands {
    ($($(#[$doc:meta])* $name:ident => ($what:literal, $opcode:expr, $fua:expr);)*) => {
        impl<H: Hardware> IoQueuePair<H> {
            $(
                $(#[$doc])*
                pub fn $name(
                    &mut self,
                    ns: &Namespace,
                    lba: Lba,
                    buf: DmaBuf<H::Dma>,
                ) -> Result<DmaBuf<H::Dma>, IoError<H::Dma>> {
                    self.sync_data($what, $opcode, $fua, ns, lba, buf)
                }
            )*
        }
    };
}

blocking_data_commands! {
    /// Read `buf.len()` bytes at `lba` and wait. The queue must be idle.
    read => ("Read", io_opcode::READ, false);
    /// Write `buf` at `lba` and wait. The queue must be idle.
    write => ("Write", io_opcode::WRITE, false);
    /// Force Unit Access write, and wait. The queue must be idle.
    write_fua => ("Write (FUA)", io_opcode::WRITE, true);
    /// Compare `buf` with the blocks at `lba`, and wait. A mismatch is
    /// `Error::Command` with status "Compare Failure".
    compare => ("Compare", io_opcode::COMPARE, false);
}

impl<H: Hardware> IoQueuePair<H> {
    /// Flush and wait. The queue must be idle.
    pub fn flush(&mut self, ns: &Namespace) -> Result<(), Error> {
        self.sync_simple("Flush", |qp| qp.submit_flush(ns, SYNC_TAG))
    }

    /// Write Zeroes and wait. The queue must be idle.
    pub fn write_zeroes(&mut self, ns: &Namespace, lba: Lba, blocks: u32) -> Result<(), Error> {
        self.sync_simple("Write Zeroes", |qp| {
            qp.submit_write_zeroes(ns, lba, blocks, SYNC_TAG)
        })
    }

    /// Deallocate (trim) `ranges` and wait. The queue must be idle.
    pub fn deallocate(&mut self, ns: &Namespace, ranges: &[(Lba, u32)]) -> Result<(), Error> {
        self.sync_simple("Dataset Management (deallocate)", |qp| {
            qp.submit_deallocate(ns, ranges, SYNC_TAG)
        })
    }

    /// Submit with `submit`, then wait for that one command (the queue must
    /// be idle). A failure the controller allows a retry for (DNR clear) is
    /// submitted again, up to the pair's `max_retries`. A timeout leaves the
    /// buffer with the queue pair.
    fn sync<T>(
        &mut self,
        what: &'static str,
        mut buf: Option<DmaBuf<H::Dma>>,
        mut submit: impl FnMut(&mut Self, Option<DmaBuf<H::Dma>>) -> Result<(), IoError<H::Dma>>,
        done: impl FnOnce(Option<DmaBuf<H::Dma>>) -> T,
    ) -> Result<T, IoError<H::Dma>> {
        if self.outstanding() != 0 {
            return Err(Rejected {
                error: Error::Busy {
                    outstanding: self.outstanding(),
                },
                buf,
            });
        }
        let mut retries = 0u8;
        loop {
            submit(self, buf.take())?;
            let c = self.wait_one(what)?;
            return match c.status {
                Ok(()) => Ok(done(c.buf)),
                Err(CommandError::Device(status)) if !status.dnr && retries < self.max_retries => {
                    retries += 1;
                    tracing::debug!(what, %status, retries, "retrying");
                    buf = c.buf;
                    continue;
                }
                Err(CommandError::Device(status)) => Err(Rejected {
                    error: Error::Command {
                        command: what,
                        status,
                    },
                    buf: c.buf,
                }),
                Err(CommandError::DeviceRemoved) => Err(Rejected {
                    error: Error::DeviceRemoved,
                    buf: c.buf,
                }),
                Err(CommandError::ControllerReset) => Err(Rejected {
                    error: Error::ControllerReset { command: what },
                    buf: c.buf,
                }),
                Err(CommandError::TimedOut { after }) => Err(Rejected {
                    error: Error::IoTimeout {
                        command: what,
                        timeout: after,
                        abort_requested: self.shared.opts.timeout_policy != TimeoutPolicy::Report,
                    },
                    buf: None,
                }),
            };
        }
    }

    /// Poll until the one command in flight completes (or its deadline
    /// is reported).
    fn wait_one(&mut self, what: &'static str) -> Result<Completion<H::Dma>, IoError<H::Dma>> {
        // The pair's deadline check reports the command (poll hands over a
        // TimedOut completion); the wall clock here only covers a pair whose
        // deadlines were turned off.
        let timeout = self.io_timeout().unwrap_or(self.shared.opts.io_timeout);
        let start = Instant::now();
        let mut finished = None;
        let mut spins: u32 = 0;
        loop {
            self.poll(1, |c| finished = Some(c));
            if let Some(c) = finished.take() {
                return Ok(c);
            }
            spins = spins.wrapping_add(1);
            if self.io_timeout().is_none() && spins % 1024 == 0 && start.elapsed() > timeout {
                return Err(Rejected {
                    error: Error::IoTimeout {
                        command: what,
                        timeout,
                        abort_requested: false,
                    },
                    buf: None,
                });
            }
            // No `spin_loop()` (PAUSE): a completion wait on a polled queue
            // wants the lowest detection latency, as SPDK's pollers do; see
            // the note in nvme-bench's engine for what PAUSE costs under TCG.
        }
    }

    fn sync_data(
        &mut self,
        what: &'static str,
        opcode: u8,
        fua: bool,
        ns: &Namespace,
        lba: Lba,
        buf: DmaBuf<H::Dma>,
    ) -> Result<DmaBuf<H::Dma>, IoError<H::Dma>> {
        if opcode == io_opcode::COMPARE {
            if let Err(error) = self.rules.optional(self.rules.oncs.compare(), "Compare") {
                return Err(Rejected {
                    error,
                    buf: Some(buf),
                });
            }
        }
        self.sync(
            what,
            Some(buf),
            |qp, b| {
                let b = b.expect("data commands carry a buffer");
                qp.submit_data(opcode, ns, lba, b, SYNC_TAG, fua)
                    .map_err(IoError::from)
            },
            |b| b.expect("data completions carry their buffer"),
        )
    }

    fn sync_simple(
        &mut self,
        what: &'static str,
        mut submit: impl FnMut(&mut Self) -> Result<(), Error>,
    ) -> Result<(), Error> {
        self.sync(
            what,
            None,
            |qp, _| submit(qp).map_err(|error| Rejected { error, buf: None }),
            |_| (),
        )
        .map_err(|e| e.error)
    }
}
