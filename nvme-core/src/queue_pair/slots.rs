//! Command slots: which command identifier (CID) is free, what each
//! command in flight carries (the caller's tag and buffer), and how
//! completion entries are accounted to requests: a lone command completes
//! its request at once; the pieces of a request split at MDTS (and a
//! vectored command, a group of one) complete it together.

use std::time::Duration;

use crate::buffer::DmaBuf;
use crate::hw::DmaRegion;
use crate::status::{CommandError, NvmeStatus};

use super::Completion;

/// What a command slot holds.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(super) enum SlotState {
    /// No command.
    Free,
    /// A lone command: everything about it is in the hot [`Slot`].
    Single,
    /// A piece of a request split at MDTS, or a vectored command: the
    /// [`GroupSlot`] of the same index says which group and how far along.
    Grouped,
    /// A lone command past its deadline, already reported as timed out:
    /// its buffer stays here until the device completes it.
    Expired,
}

/// Hot per-command state: all a lone command (the common case) needs, so
/// submit and complete touch one small record.
pub(super) struct Slot<D: DmaRegion> {
    pub(super) state: SlotState,
    /// The deadline generation the command was submitted in (see
    /// `IoQueuePair::check_deadlines`); a group's is on its head.
    gen: u32,
    tag: u64,
    buf: Option<DmaBuf<D>>,
}

impl<D: DmaRegion> Slot<D> {
    /// Make this free slot hold a lone command.
    #[inline(always)]
    pub(super) fn hold(&mut self, tag: u64, buf: Option<DmaBuf<D>>, gen: u32) {
        debug_assert!(self.state == SlotState::Free && self.buf.is_none());
        // The buffer first: moved straight from where it is into the slot.
        // A free slot holds no buffer: every path that frees a slot takes its
        // buffer first. So the old value is `None` and is not read (were the
        // invariant ever broken, a buffer would leak: its memory stays
        // allocated and mapped, which is safe, and the debug assertion above
        // catches it in tests).
        std::mem::forget(std::mem::replace(&mut self.buf, buf));
        self.state = SlotState::Single;
        self.gen = gen;
        self.tag = tag;
    }
}

impl<D: DmaRegion> Slot<D> {
    /// The device completed this lone command: free the slot and build the
    /// completion, buffer included.
    #[inline(always)]
    fn release(&mut self, status: u16, result: u32, more_info: &mut bool) -> Completion<D> {
        self.state = SlotState::Free;
        Completion {
            tag: self.tag,
            status: NvmeStatus::from_field(status).map_err(|e| {
                *more_info |= e.more;
                CommandError::Device(e)
            }),
            result,
            buf: self.buf.take(),
            bufs: None,
        }
    }
}

/// Cold per-command state, only for grouped commands. A request larger
/// than MDTS becomes a group of commands; the group's state lives in its
/// first slot (the head). A vectored command is a group of one.
pub(super) struct GroupSlot<D: DmaRegion> {
    /// The head slot of this command's group.
    pub(super) group: u16,
    /// Head only: commands of the group not yet completed.
    pending: u16,
    /// Head only: the head's own command has completed (a second completion
    /// for it, from a misbehaving device, is ignored).
    head_done: bool,
    /// Head only: the first error any command of the group reported.
    error: Option<NvmeStatus>,
    /// Head only: completion DW0 of the last command of the group.
    result: u32,
    /// Head only: the buffers of a vectored command.
    bufs: Option<Vec<DmaBuf<D>>>,
    /// Head only: the group was reported as timed out.
    timed_out: bool,
}

/// The command slots of one queue pair, indexed by CID, and the stack of
/// free CIDs. At most `entries - 1` commands are ever in flight.
pub(super) struct CommandSlots<D: DmaRegion> {
    pub(super) slots: Box<[Slot<D>]>,
    pub(super) groups: Box<[GroupSlot<D>]>,
    /// Free command identifiers: a stack, `free_cids[..nfree]`.
    free_cids: Box<[u16]>,
    nfree: usize,
    /// Requests completed back to the caller (a split request counts once).
    pub(super) completions: u64,
    /// A failed command's status had the More bit: the Error Information
    /// log says more (read at the pair's next deadline check).
    pub(super) more_info: bool,
}

impl<D: DmaRegion> CommandSlots<D> {
    /// Slots for a submission queue of `entries` entries.
    pub(super) fn new(entries: u16) -> Self {
        let slots = (0..entries)
            .map(|_| Slot {
                state: SlotState::Free,
                gen: 0,
                tag: 0,
                buf: None,
            })
            .collect();
        let groups = (0..entries)
            .map(|i| GroupSlot {
                group: i,
                pending: 0,
                head_done: false,
                error: None,
                result: 0,
                bufs: None,
                timed_out: false,
            })
            .collect();
        // At most entries - 1 commands can be in the ring at once.
        let free_cids: Box<[u16]> = (0..entries.saturating_sub(1)).rev().collect();
        let nfree = free_cids.len();
        CommandSlots {
            slots,
            groups,
            free_cids,
            nfree,
            completions: 0,
            more_info: false,
        }
    }

    /// Commands in flight.
    #[inline]
    pub(super) fn in_flight(&self) -> usize {
        self.free_cids.len() - self.nfree
    }

    /// Free CIDs.
    #[inline]
    pub(super) fn free(&self) -> usize {
        self.nfree
    }

    #[inline]
    pub(super) fn pop_cid(&mut self) -> Option<u16> {
        let top = self.nfree.checked_sub(1)?;
        self.nfree = top;
        self.free_cids.get(top).copied()
    }

    #[inline]
    fn push_cid(&mut self, cid: u16) {
        // Never more than n - 1 ids are free: every pushed id was popped.
        if let Some(s) = self.free_cids.get_mut(self.nfree) {
            *s = cid;
            self.nfree += 1;
        }
    }

    /// Make free slot `cid` hold a lone command.
    #[inline(always)]
    pub(super) fn start_single(&mut self, cid: u16, tag: u64, buf: Option<DmaBuf<D>>, gen: u32) {
        self.slots[usize::from(cid)].hold(tag, buf, gen);
    }

    /// Slot `cid`, to [`Slot::hold`] a lone command. (The hot path looks the
    /// slot up before its buffer moves, so the bounds check's panic path
    /// drops the buffer where it is: no copy of it on the way.)
    #[inline(always)]
    pub(super) fn slot(&mut self, cid: u16) -> &mut Slot<D> {
        &mut self.slots[usize::from(cid)]
    }

    /// The head of a group of `pieces` commands (a split request, or a
    /// vectored command with `pieces == 1` and its buffers in `bufs`).
    pub(super) fn start_group(
        &mut self,
        head: u16,
        pieces: u16,
        tag: u64,
        buf: Option<DmaBuf<D>>,
        bufs: Option<Vec<DmaBuf<D>>>,
        gen: u32,
    ) {
        let s = &mut self.slots[usize::from(head)];
        s.state = SlotState::Grouped;
        s.gen = gen;
        s.tag = tag;
        s.buf = buf;
        let g = &mut self.groups[usize::from(head)];
        g.group = head;
        g.pending = pieces;
        g.head_done = false;
        g.error = None;
        g.result = 0;
        g.bufs = bufs;
        g.timed_out = false;
    }

    /// Slot `cid` carries a later piece of the group headed by `head`.
    pub(super) fn join_group(&mut self, cid: u16, head: u16) {
        self.slots[usize::from(cid)].state = SlotState::Grouped;
        self.groups[usize::from(cid)].group = head;
    }

    /// Free `cid` and hand `completion` to the caller.
    #[inline(always)]
    fn hand_back(
        &mut self,
        cid: u16,
        completion: Completion<D>,
        f: &mut impl FnMut(Completion<D>),
    ) {
        self.push_cid(cid);
        self.completions += 1;
        f(completion);
    }

    /// Account one completion entry to its command; once the last piece of
    /// its request is in, hand the finished request to `f`. Entries for
    /// commands not in flight, or repeated for a piece already done, are
    /// ignored: a misbehaving device must not release a buffer early or
    /// break the bookkeeping.
    #[inline(always)]
    pub(super) fn complete(
        &mut self,
        qid: u16,
        cid: u16,
        status: u16,
        result: u32,
        f: &mut impl FnMut(Completion<D>),
    ) {
        match self.slots.get_mut(usize::from(cid)) {
            Some(slot) if slot.state == SlotState::Single => {
                let completion = slot.release(status, result, &mut self.more_info);
                self.hand_back(cid, completion, f);
            }
            _ => self.complete_grouped(qid, cid, status, result, f),
        }
    }

    /// [`CommandSlots::complete`] for grouped commands and strays.
    #[inline(never)]
    fn complete_grouped(
        &mut self,
        qid: u16,
        cid: u16,
        status: u16,
        result: u32,
        f: &mut impl FnMut(Completion<D>),
    ) {
        let i = usize::from(cid);
        if let Some(slot) = self.slots.get_mut(i) {
            if slot.state == SlotState::Expired {
                // The late completion of a command already reported as
                // timed out: now the device is done with its buffer.
                let completion = slot.release(status, result, &mut self.more_info);
                self.hand_back(cid, completion, f);
                return;
            }
        }
        if self
            .slots
            .get(i)
            .is_none_or(|s| s.state != SlotState::Grouped)
        {
            tracing::warn!(qid, cid, "completion for a command not in flight; ignored");
            return;
        }
        let g = &mut self.groups[i];
        let head = g.group;
        if head != cid {
            // A later piece of a split request: free its id now.
            self.slots[i].state = SlotState::Free;
            self.push_cid(cid);
        } else if g.head_done {
            tracing::warn!(qid, cid, "repeated completion for a command; ignored");
            return;
        } else {
            g.head_done = true;
        }
        let h = &mut self.groups[usize::from(head)];
        if let Err(e) = NvmeStatus::from_field(status) {
            self.more_info |= e.more;
            h.error.get_or_insert(e);
        }
        h.result = result;
        h.pending = h.pending.saturating_sub(1);
        if h.pending != 0 {
            return;
        }
        let (status, result, bufs) = (
            h.error.map_or(Ok(()), |e| Err(CommandError::Device(e))),
            h.result,
            h.bufs.take(),
        );
        let hs = &mut self.slots[usize::from(head)];
        hs.state = SlotState::Free;
        let completion = Completion {
            tag: hs.tag,
            status,
            result,
            buf: hs.buf.take(),
            bufs,
        };
        self.push_cid(head);
        self.completions += 1;
        f(completion);
    }

    /// Report every request in flight whose command `expired(gen)` says is
    /// past its deadline and not yet reported: a completion with
    /// [`CommandError::TimedOut`] and no buffer (the device still owns it),
    /// once per request. `on_expired` gets the CIDs of the commands still
    /// with the device (for Abort). Off the I/O path: runs only when a
    /// deadline check found something old enough.
    pub(super) fn expire(
        &mut self,
        after: Duration,
        mut expired: impl FnMut(u32) -> bool,
        f: &mut impl FnMut(Completion<D>),
        mut on_expired: impl FnMut(u16),
    ) -> usize {
        let mut n = 0;
        for i in 0..self.slots.len() {
            let slot = &self.slots[i];
            let report = match slot.state {
                SlotState::Single => expired(slot.gen),
                SlotState::Grouped => {
                    let g = &self.groups[i];
                    g.group as usize == i && !g.timed_out && expired(slot.gen)
                }
                SlotState::Free | SlotState::Expired => false,
            };
            if !report {
                continue;
            }
            let head = i as u16;
            if self.slots[i].state == SlotState::Single {
                self.slots[i].state = SlotState::Expired;
                on_expired(head);
            } else {
                self.groups[i].timed_out = true;
                for (j, s) in self.slots.iter().enumerate() {
                    let done = j == i && self.groups[i].head_done;
                    if s.state == SlotState::Grouped && self.groups[j].group == head && !done {
                        on_expired(j as u16);
                    }
                }
            }
            n += 1;
            f(Completion {
                tag: self.slots[i].tag,
                status: Err(CommandError::TimedOut { after }),
                result: 0,
                buf: None,
                bufs: None,
            });
        }
        n
    }

    /// Hand every request in flight back to its owner with `error` and its
    /// buffers, and free every slot. Only once the controller can no
    /// longer touch their memory (a reset stopped it, and the queues that
    /// held them are gone). A request already reported as timed out gets
    /// its final completion here.
    pub(super) fn fail_all(
        &mut self,
        error: CommandError,
        f: &mut impl FnMut(Completion<D>),
    ) -> usize {
        let mut n = 0;
        for i in 0..self.slots.len() {
            let head = match self.slots[i].state {
                SlotState::Free => continue,
                SlotState::Single | SlotState::Expired => true,
                SlotState::Grouped => self.groups[i].group as usize == i,
            };
            if !head {
                // A later piece of a split request: freed with its head.
                self.slots[i].state = SlotState::Free;
                self.push_cid(i as u16);
                continue;
            }
            let bufs = if self.slots[i].state == SlotState::Grouped {
                self.groups[i].bufs.take()
            } else {
                None
            };
            let s = &mut self.slots[i];
            s.state = SlotState::Free;
            let completion = Completion {
                tag: s.tag,
                status: Err(error),
                result: 0,
                buf: s.buf.take(),
                bufs,
            };
            self.push_cid(i as u16);
            self.completions += 1;
            n += 1;
            f(completion);
        }
        n
    }
}
