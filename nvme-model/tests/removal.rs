//! Surprise removal as the platform announces it (issue #13): every
//! command in flight comes back with `DeviceRemoved` and its buffer, new
//! submissions come back the same way at the next poll, admin commands and
//! resets fail with a typed error, nothing hangs and nothing panics.

use std::time::{Duration, Instant};

use nvme_core::{ByteCount, CommandError, Controller, ControllerOptions, Error, Lba};
use nvme_model::{ModelConfig, ModelController, NamespaceConfig};

#[test]
fn removal_fails_everything_typed_and_hands_buffers_back() {
    let model = ModelController::new(ModelConfig {
        namespaces: vec![NamespaceConfig::new(1 << 16, 512)],
        ..ModelConfig::default()
    });
    let c = Controller::init(
        model.clone(),
        ControllerOptions {
            admin_timeout: Duration::from_millis(300),
            ..ControllerOptions::default()
        },
    )
    .unwrap();
    let ns = c.namespace(1).unwrap().clone();
    let mut qp = c.create_io_queue_pair(16).unwrap();
    model.hold_completions(qp.qid(), true);
    for t in 0..3u64 {
        qp.submit_read(&ns, Lba(t * 8), c.alloc_buffer(ByteCount(4096)).unwrap(), t)
            .unwrap();
    }
    assert!(model.remove_device(), "the driver registered for removal");
    let mut got = Vec::new();
    let t = Instant::now();
    while got.len() < 3 && t.elapsed() < Duration::from_secs(2) {
        qp.poll(8, |d| got.push(d));
    }
    assert_eq!(got.len(), 3);
    for d in &got {
        assert_eq!(d.status, Err(CommandError::DeviceRemoved), "tag {}", d.tag);
        assert!(d.buf.is_some());
    }
    // A submission after the removal comes back at the next poll.
    qp.submit_write(&ns, Lba(0), c.alloc_buffer(ByteCount(512)).unwrap(), 9)
        .unwrap();
    let mut late = Vec::new();
    qp.poll(8, |d| late.push(d));
    assert_eq!(late.len(), 1);
    assert_eq!(
        (late[0].tag, late[0].status),
        (9, Err(CommandError::DeviceRemoved))
    );
    // Synchronous I/O, admin commands and resets say so too.
    let e = qp
        .read(&ns, Lba(0), c.alloc_buffer(ByteCount(512)).unwrap())
        .unwrap_err();
    assert!(matches!(e.error, Error::DeviceRemoved), "{}", e.error);
    assert!(e.buf.is_some());
    assert!(matches!(c.smart_log(), Err(Error::DeviceRemoved)));
    assert!(matches!(c.reset(), Err(Error::DeviceRemoved)));
    assert!(matches!(
        c.create_io_queue_pair(8),
        Err(Error::DeviceRemoved)
    ));
    // Dropping everything does not hang.
    let t = Instant::now();
    drop(qp);
    drop(c);
    assert!(t.elapsed() < Duration::from_secs(5));
    assert_eq!(model.stats().dma_use_after_free, 0);
    // A removed device can no longer reach memory: everything is freed,
    // nothing leaked.
    drop(got);
    drop(late);
    drop(e);
    assert_eq!(model.dma_regions_live(), 0);
}
