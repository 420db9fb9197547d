//! `io_submit_mode=offload`: fio's rate-submit.c. The job thread prepares
//! each I/O (offset, buffer, rate pacing) and hands it to a pool of
//! `iodepth` submit workers; the job thread never waits for an I/O to
//! finish before it prepares the next, so a fixed `rate_iops` is kept
//! whatever the device's completion time.
//!
//! As fio: each worker does one I/O at a time (fio gives every worker a
//! private copy of the job's engine at `iodepth=1`, where libaio and
//! io_uring wait for each I/O as pread/pwrite do; here a worker does
//! pread/pwrite on the job's file, opened as the job opens it, O_DIRECT
//! included); an idle worker takes the next I/O (workqueue.c
//! `get_submit_worker`). The worker stamps the I/O's issue and completion
//! times: slat runs from preparation in the job thread to the worker's
//! issue (the hand-over included, as fio's `io_u_queued`), clat over the
//! worker's I/O ([`Engine::times`]).

use std::collections::VecDeque;
use std::fs::File;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Condvar, Mutex};

use super::{AlignedBuf, Done, Engine};
use crate::clock::Instant;
use crate::error::{Error, Result};
use crate::options::Dir;

/// One I/O handed to a worker.
struct Work {
    slot: usize,
    dir: Dir,
    offset: u64,
    len: usize,
    buf: AlignedBuf,
}

/// A worker's answer: the I/O, its buffer back, issue and completion times.
struct Finished {
    done: Done,
    buf: AlignedBuf,
    issued: Instant,
    completed: Instant,
}

/// The work list the workers take from (None: exit).
type Queue = Arc<(Mutex<Option<VecDeque<Work>>>, Condvar)>;

pub struct Offload {
    file: Arc<File>,
    bufs: Vec<Option<AlignedBuf>>,
    times: Vec<(Instant, Instant)>,
    queue: Queue,
    rx: Receiver<Finished>,
    workers: Vec<std::thread::JoinHandle<()>>,
    deadline: Option<std::time::Instant>,
    size: u64,
    lbs: u64,
    /// Bytes of an empty slice for `buf_mut` of a slot in flight.
    empty: [u8; 0],
}

impl Offload {
    /// `workers` submit threads (fio: `iodepth`), `slots` buffers.
    pub fn open(
        path: &str,
        flags: i32,
        write: bool,
        want: Option<u64>,
        slots: usize,
        buf_len: usize,
        workers: usize,
    ) -> Result<Self> {
        let (file, size, lbs, bufs) =
            super::open_with_bufs(path, flags, write, want, slots, buf_len)?;
        let file = Arc::new(file);
        let bufs = bufs.into_iter().map(Some).collect();
        let queue: Queue = Arc::new((Mutex::new(Some(VecDeque::new())), Condvar::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let mut handles = Vec::new();
        for i in 0..workers.max(1) {
            let (q, f, tx): (Queue, Arc<File>, Sender<Finished>) =
                (queue.clone(), file.clone(), tx.clone());
            let h = std::thread::Builder::new()
                .name(format!("submit-{i}"))
                .spawn(move || worker(&q, &f, &tx))
                .map_err(|e| Error::msg(format!("spawn submit worker: {e}")))?;
            handles.push(h);
        }
        Ok(Offload {
            file,
            bufs,
            times: vec![(Instant::now(), Instant::now()); slots],
            queue,
            rx,
            workers: handles,
            deadline: None,
            size,
            lbs,
            empty: [],
        })
    }

    fn take(&mut self, f: Finished, out: &mut Vec<Done>) {
        let s = f.done.slot;
        if let Some(b) = self.bufs.get_mut(s) {
            *b = Some(f.buf);
        }
        if let Some(t) = self.times.get_mut(s) {
            *t = (f.issued, f.completed);
        }
        out.push(f.done);
    }
}

fn worker(q: &Queue, file: &File, tx: &Sender<Finished>) {
    loop {
        let w = {
            let (m, cv) = &**q;
            let mut g = m.lock().unwrap_or_else(|p| p.into_inner());
            loop {
                match g.as_mut() {
                    None => return,
                    Some(list) => {
                        if let Some(w) = list.pop_front() {
                            break w;
                        }
                    }
                }
                g = cv.wait(g).unwrap_or_else(|p| p.into_inner());
            }
        };
        let Work {
            slot,
            dir,
            offset,
            len,
            mut buf,
        } = w;
        let issued = Instant::now();
        let done = super::psync::io_now(file, slot, dir, offset, buf.as_mut_slice(), len);
        let completed = Instant::now();
        let f = Finished {
            done,
            buf,
            issued,
            completed,
        };
        if tx.send(f).is_err() {
            return;
        }
    }
}

impl Drop for Offload {
    fn drop(&mut self) {
        let (m, cv) = &*self.queue;
        *m.lock().unwrap_or_else(|p| p.into_inner()) = None;
        cv.notify_all();
        for h in self.workers.drain(..) {
            let _ = h.join();
        }
    }
}

impl Engine for Offload {
    fn buf_mut(&mut self, slot: usize) -> &mut [u8] {
        match self.bufs.get_mut(slot).and_then(Option::as_mut) {
            Some(b) => b.as_mut_slice(),
            None => &mut self.empty,
        }
    }
    fn queue(&mut self, slot: usize, dir: Dir, offset: u64, len: usize) -> Result<()> {
        let buf = self
            .bufs
            .get_mut(slot)
            .and_then(Option::take)
            .ok_or_else(|| Error::msg(format!("internal: offload slot {slot} is busy")))?;
        let (m, cv) = &*self.queue;
        let mut g = m.lock().unwrap_or_else(|p| p.into_inner());
        let list = g
            .as_mut()
            .ok_or_else(|| Error::msg("internal: offload workers stopped"))?;
        list.push_back(Work {
            slot,
            dir,
            offset,
            len,
            buf,
        });
        drop(g);
        cv.notify_one();
        Ok(())
    }
    fn commit(&mut self) -> Result<()> {
        Ok(())
    }
    fn reap(&mut self, min: usize, max: usize, out: &mut Vec<Done>) -> Result<()> {
        let mut got = 0;
        while got < max {
            let f = if got < min {
                match self.deadline {
                    Some(d) => {
                        let left = d.saturating_duration_since(std::time::Instant::now());
                        match self.rx.recv_timeout(left) {
                            Ok(f) => f,
                            Err(RecvTimeoutError::Timeout) => break,
                            Err(RecvTimeoutError::Disconnected) => {
                                return Err(Error::msg("offload submit workers ended"))
                            }
                        }
                    }
                    None => self
                        .rx
                        .recv()
                        .map_err(|_| Error::msg("offload submit workers ended"))?,
                }
            } else {
                match self.rx.try_recv() {
                    Ok(f) => f,
                    Err(_) => break,
                }
            };
            self.take(f, out);
            got += 1;
        }
        Ok(())
    }
    fn size(&self) -> u64 {
        self.size
    }
    fn file(&self) -> Option<&File> {
        Some(&self.file)
    }
    fn block_size(&self) -> u64 {
        self.lbs
    }
    fn set_deadline(&mut self, until: Option<std::time::Instant>) {
        self.deadline = until;
    }
    fn times(&self, slot: usize) -> Option<(Instant, Instant)> {
        self.times.get(slot).copied()
    }
}
