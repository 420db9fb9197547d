//! An adapter that lets any async executor drive an [`IoQueuePair`]: one
//! [`Future`] per command, no runtime dependency.
//!
//! The driver is polled-mode: nothing interrupts the host when a command
//! completes. So a pending future does the polling itself: every time it is
//! polled it reaps whatever completions the controller has posted (routing
//! each to the future it belongs to, by tag) and, if its own result is not
//! there yet, wakes itself (`cx.waker().wake_by_ref()`) so the executor
//! polls it again. An executor that runs only these futures therefore spins
//! on the completion queue, which is what a polled-mode driver does anyway;
//! an executor with other work interleaves it between polls.
//!
//! - A future submits its command on its first poll. When the queue is full
//!   (or every result slot is taken) it reaps completions, wakes itself and
//!   retries on the next poll: backpressure without errors.
//! - Submissions are not followed by an immediate reap, so with doorbell
//!   batching on ([`IoQueuePair::set_doorbell_batching`]) every future
//!   submitted in one round of the executor goes out with one doorbell write
//!   at the next reap.
//! - Results go to a table of per-command cells allocated once, when the
//!   adapter is built (one per queue slot): submitting and completing
//!   allocate nothing.
//! - Dropping a future whose command is in flight is safe: the buffer stays
//!   with the queue pair (where the command put it) until the completion
//!   arrives, and is dropped then. The device never writes memory that was
//!   handed back.
//!
//! The adapter is `!Sync` (it uses a `RefCell`), like the queue pair it
//! wraps: keep it on the thread that polls it. Futures borrow it, so
//! [`AsyncQueuePair::into_inner`] can only be called once they are all gone.
//!
//! # Example
//!
//! ```
//! use nvme_core::async_io::AsyncQueuePair;
//! use nvme_core::{ByteCount, DmaBuf, Hardware, IoError, Lba, Namespace};
//!
//! /// Read two blocks concurrently and return their buffers.
//! async fn read_two<H: Hardware>(
//!     aqp: &AsyncQueuePair<H>,
//!     ns: &Namespace,
//!     a: DmaBuf<H::Dma>,
//!     b: DmaBuf<H::Dma>,
//! ) -> Result<(DmaBuf<H::Dma>, DmaBuf<H::Dma>), IoError<H::Dma>> {
//!     let fa = aqp.read(ns, Lba(0), a);
//!     let fb = aqp.read(ns, Lba(8), b);
//!     // Any join combinator works; polling them one after the other too,
//!     // since each future's poll also reaps the other's completion.
//!     let a = fa.await?;
//!     let b = fb.await?;
//!     Ok((a, b))
//! }
//! ```
//!
//! `nvme-model`'s crate documentation runs this against its controller
//! model, with a minimal executor.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::buffer::DmaBuf;
use crate::controller::Namespace;
use crate::controller::TimeoutPolicy;
use crate::error::{Error, IoError, Rejected};
use crate::hw::{DmaRegion, Hardware};
use crate::queue_pair::{Completion, IoQueuePair};
use crate::status::CommandError;
use crate::units::Lba;

/// Tags the adapter gives its commands: this marker in the high bits, the
/// result-cell index in the low 32. Completions with other tags (commands
/// the caller submitted on the pair before wrapping it) are dropped.
const TAG_MARK: u64 = 0x4153_594e_0000_0000; // "ASYN"
const TAG_MASK: u64 = 0xffff_ffff_0000_0000;

/// One command's result cell.
enum ResultCell<D: DmaRegion> {
    /// Not in use.
    Free,
    /// Submitted; `abandoned` once its future was dropped.
    InFlight { abandoned: bool },
    /// Completed, waiting for its future to take the result.
    Done {
        status: Result<(), CommandError>,
        buf: Option<DmaBuf<D>>,
    },
}

struct Inner<H: Hardware> {
    qp: IoQueuePair<H>,
    cells: Vec<ResultCell<H::Dma>>,
    /// Free cell indices (capacity = cells.len(): pushes never reallocate).
    free: Vec<u32>,
    /// Commands in flight whose future was dropped.
    abandoned: usize,
}

impl<H: Hardware> Inner<H> {
    /// Reap completions and route them to their cells.
    fn reap(&mut self) -> usize {
        let Inner {
            qp,
            cells,
            free,
            abandoned,
        } = self;
        let max = cells.len().max(1);
        qp.poll(max, |c: Completion<H::Dma>| {
            let Some(i) = cell_index(c.tag, cells.len()) else {
                tracing::warn!(
                    tag = c.tag,
                    "completion with a tag the async adapter did not give; dropped"
                );
                return;
            };
            let timed_out = matches!(c.status, Err(CommandError::TimedOut { .. }));
            match cells[i] {
                // A deadline notice for a command whose future is gone:
                // keep waiting for the device's own completion.
                ResultCell::InFlight { abandoned: true } if timed_out => {}
                ResultCell::InFlight { abandoned: false } => {
                    cells[i] = ResultCell::Done {
                        status: c.status,
                        buf: c.buf,
                    };
                }
                ResultCell::InFlight { abandoned: true } => {
                    // Its future is gone: the device is done with the
                    // buffer, so it can go now (dropped with `c`).
                    cells[i] = ResultCell::Free;
                    free.push(i as u32);
                    *abandoned -= 1;
                }
                ResultCell::Free | ResultCell::Done { .. } => {
                    tracing::warn!(tag = c.tag, "completion for an idle async cell; dropped");
                }
            }
        })
    }
}

fn cell_index(tag: u64, cells: usize) -> Option<usize> {
    if tag & TAG_MASK != TAG_MARK {
        return None;
    }
    let i = (tag & !TAG_MASK) as usize;
    (i < cells).then_some(i)
}

/// An [`IoQueuePair`] whose commands are futures. See the [module
/// docs](self).
pub struct AsyncQueuePair<H: Hardware> {
    inner: RefCell<Inner<H>>,
}

impl<H: Hardware> AsyncQueuePair<H> {
    /// Wrap `qp`. It should be idle: completions of commands submitted
    /// before (with the caller's own tags) are dropped when they arrive.
    /// Allocates one result cell per queue slot, now and only now.
    pub fn new(qp: IoQueuePair<H>) -> Self {
        let n = usize::from(qp.entries().saturating_sub(1)).max(1);
        let mut cells = Vec::with_capacity(n);
        cells.resize_with(n, || ResultCell::Free);
        let free = (0..n as u32).rev().collect();
        AsyncQueuePair {
            inner: RefCell::new(Inner {
                qp,
                cells,
                free,
                abandoned: 0,
            }),
        }
    }

    /// Read `buf.len()` bytes at `lba` into `buf`. Resolves to the buffer,
    /// or the error with the buffer when it is safe to hand back.
    pub fn read<'a>(
        &'a self,
        ns: &'a Namespace,
        lba: Lba,
        buf: DmaBuf<H::Dma>,
    ) -> DataFuture<'a, H> {
        DataFuture(Command::new(self, Op::Read { ns, lba }, Some(buf)))
    }

    /// Write `buf` at `lba`. Resolves to the buffer.
    pub fn write<'a>(
        &'a self,
        ns: &'a Namespace,
        lba: Lba,
        buf: DmaBuf<H::Dma>,
    ) -> DataFuture<'a, H> {
        DataFuture(Command::new(self, Op::Write { ns, lba }, Some(buf)))
    }

    /// Flush the namespace's volatile write cache.
    pub fn flush<'a>(&'a self, ns: &'a Namespace) -> FlushFuture<'a, H> {
        FlushFuture(Command::new(self, Op::Flush { ns }, None))
    }

    /// Reap completions now (futures do this themselves when polled).
    /// Returns the completion entries consumed.
    pub fn drive(&self) -> usize {
        self.inner.borrow_mut().reap()
    }

    /// Commands submitted and not yet completed (including those of
    /// dropped futures).
    pub fn in_flight(&self) -> usize {
        self.inner.borrow().qp.outstanding()
    }

    /// Commands in flight whose future was dropped; their buffers are
    /// released when they complete (see [`AsyncQueuePair::drive`]).
    pub fn abandoned(&self) -> usize {
        self.inner.borrow().abandoned
    }

    /// Run `f` on the wrapped queue pair (statistics, doorbell batching).
    pub fn with_queue_pair<R>(&self, f: impl FnOnce(&mut IoQueuePair<H>) -> R) -> R {
        f(&mut self.inner.borrow_mut().qp)
    }

    /// The queue pair back. No future can exist any more (they borrow the
    /// adapter), but commands of dropped futures may still be in flight:
    /// their buffers stay in the pair and their completions come out of
    /// [`IoQueuePair::poll`] with tags the caller did not choose. To avoid
    /// that, call [`AsyncQueuePair::drive`] until
    /// [`AsyncQueuePair::in_flight`] is 0 first.
    pub fn into_inner(self) -> IoQueuePair<H> {
        self.inner.into_inner().qp
    }
}

impl<H: Hardware> std::fmt::Debug for AsyncQueuePair<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.inner.borrow();
        f.debug_struct("AsyncQueuePair")
            .field("qid", &inner.qp.qid())
            .field("in_flight", &inner.qp.outstanding())
            .field("abandoned", &inner.abandoned)
            .finish()
    }
}

#[derive(Copy, Clone)]
enum Op<'a> {
    Read { ns: &'a Namespace, lba: Lba },
    Write { ns: &'a Namespace, lba: Lba },
    Flush { ns: &'a Namespace },
}

impl Op<'_> {
    fn name(self) -> &'static str {
        match self {
            Op::Read { .. } => "Read",
            Op::Write { .. } => "Write",
            Op::Flush { .. } => "Flush",
        }
    }
}

enum State<D: DmaRegion> {
    /// Not submitted yet: the future holds the buffer.
    Unsubmitted(Option<DmaBuf<D>>),
    /// Submitted with result cell `cell`: the queue pair holds the buffer.
    Submitted(u32),
    /// The result was handed out.
    Finished,
}

/// What a command resolves to before the public futures shape it.
type Outcome<D> = Result<Option<DmaBuf<D>>, IoError<D>>;

/// The state machine shared by the public futures.
struct Command<'a, H: Hardware> {
    aqp: &'a AsyncQueuePair<H>,
    op: Op<'a>,
    state: State<H::Dma>,
    /// Transparent retries made so far (see `ControllerOptions::max_retries`).
    retries: u8,
}

impl<'a, H: Hardware> Command<'a, H> {
    fn new(aqp: &'a AsyncQueuePair<H>, op: Op<'a>, buf: Option<DmaBuf<H::Dma>>) -> Self {
        Command {
            aqp,
            op,
            state: State::Unsubmitted(buf),
            retries: 0,
        }
    }

    fn poll_command(&mut self, cx: &mut Context<'_>) -> Poll<Outcome<H::Dma>> {
        let poll = self.step();
        if poll.is_pending() {
            // Polled mode: nothing else will wake us. (After the borrow of
            // the adapter ended: the waker is the executor's code.)
            cx.waker().wake_by_ref();
        }
        poll
    }

    fn step(&mut self) -> Poll<Outcome<H::Dma>> {
        let mut inner = self.aqp.inner.borrow_mut();
        match &mut self.state {
            State::Finished => Poll::Ready(Err(IoError {
                error: Error::InvalidArgument("future polled after it completed".into()),
                buf: None,
            })),
            State::Unsubmitted(buf) => {
                let Some(cell) = inner.free.pop() else {
                    // Every cell is in use: make progress, retry next poll.
                    inner.reap();
                    return Poll::Pending;
                };
                let tag = TAG_MARK | u64::from(cell);
                let qp = &mut inner.qp;
                let submitted = match self.op {
                    Op::Read { ns, lba } | Op::Write { ns, lba } => {
                        let b = buf
                            .take()
                            .expect("an unsubmitted data command holds its buffer");
                        let r = if let Op::Read { .. } = self.op {
                            qp.submit_read(ns, lba, b, tag)
                        } else {
                            qp.submit_write(ns, lba, b, tag)
                        };
                        r.map_err(|Rejected { error, buf: b }| (error, Some(b)))
                    }
                    Op::Flush { ns } => qp.submit_flush(ns, tag).map_err(|e| (e, None)),
                };
                match submitted {
                    Ok(()) => {
                        inner.cells[cell as usize] = ResultCell::InFlight { abandoned: false };
                        self.state = State::Submitted(cell);
                        // No reap here: lets batched doorbells cover every
                        // submission of this executor round.
                        Poll::Pending
                    }
                    Err((error, b)) => {
                        inner.free.push(cell);
                        if let Error::QueueFull { .. } = error {
                            // Backpressure: keep the buffer, reap, retry.
                            *buf = b;
                            inner.reap();
                            return Poll::Pending;
                        }
                        self.state = State::Finished;
                        Poll::Ready(Err(IoError { error, buf: b }))
                    }
                }
            }
            State::Submitted(cell) => {
                let cell = *cell;
                let i = cell as usize;
                if !matches!(inner.cells[i], ResultCell::Done { .. }) {
                    inner.reap();
                }
                match std::mem::replace(&mut inner.cells[i], ResultCell::Free) {
                    ResultCell::Done { status, buf } => {
                        self.state = State::Finished;
                        let error = match status {
                            Ok(()) => {
                                inner.free.push(cell);
                                return Poll::Ready(Ok(buf));
                            }
                            Err(CommandError::Device(status))
                                if !status.dnr && self.retries < inner.qp.max_retries() =>
                            {
                                // The controller allows a retry: submit it
                                // again at the next poll, with its buffer.
                                inner.free.push(cell);
                                self.retries += 1;
                                self.state = State::Unsubmitted(buf);
                                return Poll::Pending;
                            }
                            Err(CommandError::Device(status)) => {
                                inner.free.push(cell);
                                Error::Command {
                                    command: self.op.name(),
                                    status,
                                }
                            }
                            Err(CommandError::DeviceRemoved) => {
                                inner.free.push(cell);
                                Error::DeviceRemoved
                            }
                            Err(CommandError::ControllerReset) => {
                                inner.free.push(cell);
                                Error::ControllerReset {
                                    command: self.op.name(),
                                }
                            }
                            Err(CommandError::TimedOut { after }) => {
                                // The device still owns the buffer: the cell
                                // stays in flight, as for a dropped future,
                                // until the device's own completion arrives.
                                inner.cells[i] = ResultCell::InFlight { abandoned: true };
                                inner.abandoned += 1;
                                Error::IoTimeout {
                                    command: self.op.name(),
                                    timeout: after,
                                    abort_requested: inner.qp.timeout_policy()
                                        != TimeoutPolicy::Report,
                                }
                            }
                        };
                        Poll::Ready(Err(IoError { error, buf }))
                    }
                    other => {
                        inner.cells[i] = other;
                        Poll::Pending
                    }
                }
            }
        }
    }
}

impl<H: Hardware> Drop for Command<'_, H> {
    fn drop(&mut self) {
        let State::Submitted(cell) = self.state else {
            // Unsubmitted: the buffer (if any) is ours and drops with us.
            return;
        };
        let mut inner = self.aqp.inner.borrow_mut();
        let i = cell as usize;
        match std::mem::replace(&mut inner.cells[i], ResultCell::Free) {
            ResultCell::InFlight { .. } => {
                // The device may still write the buffer, which the queue
                // pair holds: leave it there; `reap` drops it on completion.
                inner.cells[i] = ResultCell::InFlight { abandoned: true };
                inner.abandoned += 1;
            }
            ResultCell::Done { .. } | ResultCell::Free => {
                // Completed, never collected: the result (and buffer) drop
                // here, and the cell is free again.
                inner.free.push(cell);
            }
        }
    }
}

/// The future of [`AsyncQueuePair::read`] and [`AsyncQueuePair::write`].
#[must_use = "futures do nothing unless polled"]
pub struct DataFuture<'a, H: Hardware>(Command<'a, H>);

impl<H: Hardware> Future for DataFuture<'_, H> {
    type Output = Result<DmaBuf<H::Dma>, IoError<H::Dma>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // `Command` is `Unpin` (no self-references), so this is plain `&mut`.
        let cmd = &mut self.get_mut().0;
        let what = cmd.op.name();
        cmd.poll_command(cx).map(|r| {
            r.and_then(|buf| {
                buf.ok_or_else(|| IoError {
                    error: Error::InvalidArgument(format!("{what} completed without its buffer")),
                    buf: None,
                })
            })
        })
    }
}

/// The future of [`AsyncQueuePair::flush`].
#[must_use = "futures do nothing unless polled"]
pub struct FlushFuture<'a, H: Hardware>(Command<'a, H>);

impl<H: Hardware> Future for FlushFuture<'_, H> {
    type Output = Result<(), Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let cmd = &mut self.get_mut().0;
        cmd.poll_command(cx)
            .map(|r| r.map(|_| ()).map_err(|e| e.error))
    }
}

impl<H: Hardware> std::fmt::Debug for DataFuture<'_, H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataFuture")
            .field("op", &self.0.op.name())
            .finish_non_exhaustive()
    }
}

impl<H: Hardware> std::fmt::Debug for FlushFuture<'_, H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlushFuture").finish_non_exhaustive()
    }
}
