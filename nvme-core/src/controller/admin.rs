//! The admin queue: one command at a time, polled to completion, with a
//! scratch page for the data of Identify and Get Log Page.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::cmd::{admin_opcode, CompletionEntry, SubmissionEntry};
use crate::error::Error;
use crate::hw::{DmaRegion, Hardware, Iova};
use crate::regs::{Cap, Csts};
use crate::ring::{CqRing, SqRing};

use super::events::AsyncEvent;
use super::PAGE_SIZE;

/// Command identifiers from here up are Asynchronous Event Requests; the
/// other admin commands use the ones below.
const AER_CID_BASE: u16 = 0xff00;

/// The admin queue pair plus a scratch page for identify and log data.
pub(crate) struct AdminQueue<H: Hardware> {
    pub(super) sq: SqRing<H>,
    pub(super) cq: CqRing<H>,
    scratch: H::Dma,
    next_cid: u16,
    /// Asynchronous Event Requests outstanding, by CID.
    aer_cids: Vec<u16>,
    /// Events their completions reported, not yet handed to the user.
    pub(super) events: VecDeque<AsyncEvent>,
}

/// Whether a failed admin command leaves the controller in an unknown
/// state (it then counts as dead): no answer in time, fatal status, or the
/// device gone. A command the controller answered with a status does not.
pub(super) fn kills_controller(e: &Error) -> bool {
    matches!(
        e,
        Error::Timeout { .. } | Error::ControllerFatal(_) | Error::DeviceGone
    )
}

impl<H: Hardware> AdminQueue<H> {
    pub(super) fn new(hw: &H, cap: Cap, entries: u16) -> Result<Self, Error> {
        Ok(AdminQueue {
            sq: SqRing::new(hw, entries, cap.sq_tail_doorbell(0))?,
            cq: CqRing::new(hw, entries, cap.cq_head_doorbell(0))?,
            scratch: hw.alloc_dma(PAGE_SIZE)?,
            next_cid: 0,
            aer_cids: Vec::new(),
            events: VecDeque::new(),
        })
    }

    /// The scratch page's device address (for a command's PRP1).
    pub(super) fn scratch_iova(&self) -> Iova {
        self.scratch.iova()
    }

    /// Run one command; a failure that leaves the controller in an unknown
    /// state sets `dead` ([`kills_controller`]).
    pub(super) fn run(
        &mut self,
        hw: &H,
        cmd: SubmissionEntry,
        what: &'static str,
        timeout: Duration,
        dead: &AtomicBool,
    ) -> Result<CompletionEntry, Error> {
        let r = self.exec(hw, cmd, what, timeout);
        if let Err(e) = &r {
            if kills_controller(e) {
                dead.store(true, Ordering::Relaxed);
            }
        }
        r
    }

    /// Submit one command and wait for its completion.
    fn exec(
        &mut self,
        hw: &H,
        mut cmd: SubmissionEntry,
        what: &'static str,
        timeout: Duration,
    ) -> Result<CompletionEntry, Error> {
        let cid = self.next_cid;
        self.next_cid = (self.next_cid + 1) % AER_CID_BASE;
        cmd.set_cid(cid);
        if self.sq.is_full() {
            return Err(Error::QueueFull {
                outstanding: usize::from(self.sq.entries()) - 1,
            });
        }
        self.sq.push(&cmd);
        self.sq.publish_tail();
        let start = Instant::now();
        let mut spins: u32 = 0;
        loop {
            if let Some(cqe) = self.cq.peek() {
                self.cq.advance();
                self.sq.set_head(cqe.sq_head);
                self.cq.publish_head();
                if cqe.cid != cid {
                    if !self.take_event(&cqe) {
                        tracing::warn!(cid = cqe.cid, "stale admin completion ignored");
                    }
                    continue;
                }
                return match cqe.status() {
                    Ok(()) => Ok(cqe),
                    Err(status) => Err(Error::Command {
                        command: what,
                        status,
                    }),
                };
            }
            spins += 1;
            if spins % 256 == 0 {
                let csts = hw.read_reg::<Csts>();
                if csts.is_all_ones() {
                    return Err(Error::DeviceGone);
                }
                if csts.fatal() {
                    return Err(Error::ControllerFatal(csts));
                }
                if start.elapsed() > timeout {
                    return Err(Error::Timeout {
                        command: what,
                        timeout,
                    });
                }
                hw.delay_us(10);
            } else {
                std::hint::spin_loop();
            }
        }
    }

    /// If `cqe` completes an outstanding Asynchronous Event Request, record
    /// its event (a request that ended with an error status, e.g. aborted
    /// by a reset, reports none) and say so.
    fn take_event(&mut self, cqe: &CompletionEntry) -> bool {
        let Some(i) = self.aer_cids.iter().position(|&c| c == cqe.cid) else {
            return false;
        };
        self.aer_cids.swap_remove(i);
        match cqe.status() {
            Ok(()) => self.events.push_back(AsyncEvent::from_dw0(cqe.result)),
            Err(status) => tracing::debug!(cid = cqe.cid, %status, "AER ended without an event"),
        }
        true
    }

    /// Take whatever the controller posted while no command waited (event
    /// completions), without waiting.
    pub(super) fn poll_events(&mut self) {
        while let Some(cqe) = self.cq.peek() {
            self.cq.advance();
            self.sq.set_head(cqe.sq_head);
            self.cq.publish_head();
            if !self.take_event(&cqe) {
                tracing::warn!(cid = cqe.cid, "stale admin completion ignored");
            }
        }
    }

    /// Keep `want` Asynchronous Event Requests outstanding (submitted, not
    /// waited for). Returns how many are outstanding.
    pub(super) fn arm_events(&mut self, want: usize) -> usize {
        // Leave room for the commands that must still get through: the
        // ring holds entries - 1, and outstanding requests are only known
        // to have left it once a completion reports the SQ head.
        let want = want.min(usize::from(self.sq.entries()).saturating_sub(2));
        let mut pushed = false;
        while self.aer_cids.len() < want && !self.sq.is_full() {
            let Some(cid) = (AER_CID_BASE..=u16::MAX).find(|c| !self.aer_cids.contains(c)) else {
                break;
            };
            let mut cmd = SubmissionEntry::new(admin_opcode::ASYNC_EVENT_REQUEST, 0);
            cmd.set_cid(cid);
            self.sq.push(&cmd);
            self.aer_cids.push(cid);
            pushed = true;
        }
        if pushed {
            self.sq.publish_tail();
        }
        self.aer_cids.len()
    }

    /// Copy the first `N` bytes out of the scratch page. Call only after a
    /// command that filled it completed: the device no longer writes it (a
    /// timed-out command makes the controller dead and no later command
    /// reuses the page).
    pub(super) fn scratch_bytes<const N: usize>(&self) -> Box<[u8; N]> {
        const { assert!(N <= PAGE_SIZE) };
        let mut out = Box::new([0u8; N]);
        self.scratch.read_at(0, &mut out[..]);
        out
    }
}
