//! Tests of the queue pair's internals against the controller model.

use crate::cmd::CompletionEntry;
use crate::controller::{Controller, ControllerOptions};
use crate::model::{ModelConfig, ModelController};
use crate::units::{ByteCount, Lba};

/// A namespace formatted with metadata is refused on the data path
/// (before anything reaches the device), with the buffer handed back.
#[test]
fn namespaces_with_metadata_are_refused_with_the_buffer() {
    let model = ModelController::new(ModelConfig::default());
    let c = Controller::init(model.clone(), ControllerOptions::default()).unwrap();
    let ns = c.namespace(1).unwrap().with_metadata_for_test(8);
    let mut qp = c.create_io_queue_pair(8).unwrap();
    let buf = c.alloc_buffer(ByteCount(4096)).unwrap();
    let r = qp.submit_read(&ns, Lba(0), buf, 1).unwrap_err();
    assert!(
        matches!(&r.error, crate::Error::Unsupported(m) if m.contains("metadata")),
        "{}",
        r.error
    );
    assert_eq!(r.buf.len(), 4096);
    assert_eq!(qp.outstanding(), 0);
    assert_eq!(qp.stats().commands, 0);
}

/// A device that completes the head piece of a split request twice
/// must not get the buffer released before the other pieces are done,
/// nor break the bookkeeping.
#[test]
fn repeated_completions_do_not_release_a_split_request_early() {
    let model = ModelController::new(ModelConfig {
        mdts: 1, // 8 KiB per command
        ..ModelConfig::default()
    });
    let c = Controller::init(model.clone(), ControllerOptions::default()).unwrap();
    let ns = c.namespace(1).unwrap().clone();
    let mut qp = c.create_io_queue_pair(16).unwrap();
    // Hold the model's completions: we play the device's CQ ourselves.
    model.hold_completions(qp.qid(), true);
    qp.submit_read(
        &ns,
        Lba(0),
        c.alloc_buffer(ByteCount(3 * 8192)).unwrap(),
        42,
    )
    .unwrap();
    let pieces: Vec<u16> = (0..qp.cmds.slots.len() as u16)
        .filter(|&i| qp.cmds.slots[usize::from(i)].state != super::slots::SlotState::Free)
        .collect();
    assert_eq!(pieces.len(), 3);
    let head = qp.cmds.groups[usize::from(pieces[0])].group;
    let children: Vec<u16> = pieces.iter().copied().filter(|&p| p != head).collect();
    let mut out = Vec::new();
    let mut complete = |qp: &mut super::IoQueuePair<ModelController>, cid: u16| {
        let before = out.len();
        let cqe = CompletionEntry {
            cid,
            ..CompletionEntry::default()
        };
        let qid = qp.qid;
        qp.cmds
            .complete(qid, cqe.cid, cqe.status, cqe.result, &mut |c| out.push(c));
        out.len() > before
    };
    // Head twice, then the first child: still one piece outstanding.
    assert!(!complete(&mut qp, head));
    assert!(!complete(&mut qp, head), "repeated head completion ignored");
    assert!(
        !complete(&mut qp, children[0]),
        "buffer must not come back early"
    );
    // A repeat of the finished child is ignored too.
    assert!(!complete(&mut qp, children[0]));
    assert!(
        complete(&mut qp, children[1]),
        "the last piece completes the request"
    );
    // Afterwards nothing is in flight; more repeats are ignored.
    assert!(!complete(&mut qp, head));
    assert_eq!(qp.outstanding(), 0);
    assert_eq!(out.len(), 1);
    let done = &out[0];
    assert_eq!(
        (done.tag, done.status, done.buf.is_some()),
        (42, Ok(()), true)
    );
    model.hold_completions(qp.qid(), false);
}

/// A queue pair moves to the thread that uses it (`Send`) but is never
/// shared between threads (`!Sync`), and a buffer moves with its command:
/// the compiler derives all of it (no `unsafe impl`).
#[test]
fn a_queue_pair_is_send_and_not_sync() {
    fn send<T: Send>() {}
    send::<super::IoQueuePair<ModelController>>();
    send::<crate::DmaBuf<crate::model::ModelDma>>();
    // Resolves only if exactly one impl applies: with `Sync` both would.
    trait AmbiguousIfSync<A> {
        fn check() {}
    }
    impl<T: ?Sized> AmbiguousIfSync<()> for T {}
    impl<T: ?Sized + Sync> AmbiguousIfSync<u8> for T {}
    <super::IoQueuePair<ModelController> as AmbiguousIfSync<_>>::check();
}
