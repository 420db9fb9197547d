//! Asynchronous events (issue #13): the driver keeps Asynchronous Event
//! Requests outstanding, hands events to the user with the log page they
//! name, re-arms, so the next event of the same type is delivered too; and
//! after a reset the requests are outstanding again.

use nvme_core::{AsyncEventKind, Controller, ControllerOptions};
use nvme_model::{ModelConfig, ModelController};

#[test]
fn smart_warnings_are_delivered_with_their_log_and_the_next_one_too() {
    let model = ModelController::new(ModelConfig::default());
    let c = Controller::init(model.clone(), ControllerOptions::default()).unwrap();
    // AERL 3 in the model: 4 outstanding.
    assert_eq!(model.aers_outstanding(), 4);
    assert!(c.poll_events().unwrap().is_empty());
    model.set_critical_warning(0x02); // temperature
    let ev = c.poll_events().unwrap();
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(ev[0].kind, AsyncEventKind::SmartHealth);
    assert_eq!(ev[0].log_page, 0x02);
    assert_eq!(ev[0].smart.as_ref().map(|s| s.critical_warning), Some(0x02));
    assert_eq!(model.aers_outstanding(), 4, "re-armed");
    // The log was read: the next SMART event comes through as well.
    model.set_critical_warning(0x06);
    let ev = c.poll_events().unwrap();
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(ev[0].smart.as_ref().map(|s| s.critical_warning), Some(0x06));
    // Events raised during other admin commands are kept for the next call.
    model.raise_event(2, 0x00, 0x04); // notice: namespace attribute changed
    let _ = c.smart_log().unwrap();
    let ev = c.poll_events().unwrap();
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!((ev[0].kind, ev[0].log_page), (AsyncEventKind::Notice, 0x04));
    assert_eq!(model.stats().events_delivered, 3);
}

#[test]
fn requests_are_outstanding_again_after_a_reset() {
    let model = ModelController::new(ModelConfig::default());
    let c = Controller::init(model.clone(), ControllerOptions::default()).unwrap();
    c.reset().unwrap();
    assert_eq!(model.aers_outstanding(), 4);
    model.set_critical_warning(0x01);
    let ev = c.poll_events().unwrap();
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].kind, AsyncEventKind::SmartHealth);
}

#[test]
fn a_resized_namespace_is_reported_and_rescanned() {
    use nvme_core::{ByteCount, Error, Lba};
    let model = ModelController::new(ModelConfig::default());
    let c = Controller::init(model.clone(), ControllerOptions::default()).unwrap();
    let old = c.namespace(1).unwrap().clone();
    let mut qp = c.create_io_queue_pair(8).unwrap();
    assert!(model.resize_namespace(1, old.blocks() / 2));
    let ev = c.poll_events().unwrap();
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!((ev[0].kind, ev[0].log_page), (AsyncEventKind::Notice, 0x04));
    assert_eq!(ev[0].changed_namespaces, Some(vec![1]));
    let new = c.rescan_namespaces().unwrap();
    assert_eq!(new[0].nsid(), 1);
    assert_eq!(new[0].blocks(), old.blocks() / 2);
    // The new geometry is checked by the driver; the old one past the new
    // end gets the controller's typed status.
    let past = Lba(old.blocks() / 2);
    let r = qp.read(&new[0], past, c.alloc_buffer(ByteCount(512)).unwrap());
    assert!(matches!(r.unwrap_err().error, Error::LbaOutOfRange { .. }));
    let r = qp.read(&old, past, c.alloc_buffer(ByteCount(512)).unwrap());
    let e = r.unwrap_err();
    assert_eq!(
        e.error.nvme_status().and_then(|s| s.name()),
        Some("LBA Out of Range"),
        "{}",
        e.error
    );
    // The next change is reported too.
    assert!(model.resize_namespace(1, old.blocks() / 4));
    let ev = c.poll_events().unwrap();
    assert_eq!(ev[0].changed_namespaces, Some(vec![1]));
}

#[test]
fn a_failure_with_the_more_bit_makes_the_driver_read_the_error_log() {
    use nvme_core::cmd::{admin_opcode, io_opcode};
    use nvme_core::{ByteCount, Lba};
    use nvme_model::Status;
    let model = ModelController::new(ModelConfig::default());
    let c = Controller::init(model.clone(), ControllerOptions::default()).unwrap();
    let ns = c.namespace(1).unwrap().clone();
    let mut qp = c.create_io_queue_pair(8).unwrap();
    let logs = model.stats().admin(admin_opcode::GET_LOG_PAGE);
    model.fail_next(io_opcode::READ, Status::UNRECOVERED_READ_ERROR.with_more());
    qp.submit_read(&ns, Lba(77), c.alloc_buffer(ByteCount(512)).unwrap(), 1)
        .unwrap();
    let mut got = Vec::new();
    for _ in 0..1000 {
        qp.poll(4, |d| got.push(d));
    }
    let st = got[0].status.unwrap_err().nvme().expect("device status");
    assert!(st.more);
    assert_eq!(
        model.stats().admin(admin_opcode::GET_LOG_PAGE),
        logs + 1,
        "log read once"
    );
    let errs = c.recent_errors();
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!((errs[0].lba, errs[0].sqid), (77, qp.qid()));
    assert!(c.recent_errors().is_empty(), "taken");
    // A failure without More reads nothing.
    model.fail_next(io_opcode::READ, Status::UNRECOVERED_READ_ERROR);
    qp.submit_read(&ns, Lba(78), c.alloc_buffer(ByteCount(512)).unwrap(), 2)
        .unwrap();
    for _ in 0..1000 {
        qp.poll(4, drop);
    }
    assert_eq!(model.stats().admin(admin_opcode::GET_LOG_PAGE), logs + 1);
}

#[test]
fn a_tiny_admin_queue_keeps_room_for_commands() {
    // Two entries: one usable slot, which an event request must not take.
    let model = ModelController::new(ModelConfig::default());
    let c = Controller::init(
        model.clone(),
        ControllerOptions {
            admin_queue_entries: 2,
            ..ControllerOptions::default()
        },
    )
    .unwrap();
    assert_eq!(model.aers_outstanding(), 0);
    assert!(c.smart_log().is_ok());
    let c3 = Controller::init(
        ModelController::new(ModelConfig::default()),
        ControllerOptions {
            admin_queue_entries: 4,
            ..ControllerOptions::default()
        },
    )
    .unwrap();
    assert!(c3.smart_log().is_ok());
    assert!(c3.poll_events().unwrap().is_empty());
    assert!(c3.smart_log().is_ok());
}

#[test]
fn a_vanished_namespace_is_reported_and_io_to_it_gets_a_typed_error() {
    use nvme_core::{ByteCount, Lba};
    use nvme_model::NamespaceConfig;
    let model = ModelController::new(ModelConfig {
        namespaces: vec![
            NamespaceConfig::new(1 << 16, 512),
            NamespaceConfig::new(1 << 12, 4096),
        ],
        ..ModelConfig::default()
    });
    let c = Controller::init(model.clone(), ControllerOptions::default()).unwrap();
    let gone = c.namespace(2).unwrap().clone();
    let mut qp = c.create_io_queue_pair(8).unwrap();
    assert!(model.detach_namespace(2));
    let ev = c.poll_events().unwrap();
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(ev[0].changed_namespaces, Some(vec![2]));
    // The rescan no longer lists it; I/O through the old value gets the
    // controller's typed status.
    let now = c.rescan_namespaces().unwrap();
    assert_eq!(now.iter().map(|n| n.nsid()).collect::<Vec<_>>(), vec![1]);
    let e = qp
        .read(&gone, Lba(0), c.alloc_buffer(ByteCount(4096)).unwrap())
        .unwrap_err();
    assert_eq!(
        e.error.nvme_status().and_then(|s| s.name()),
        Some("Invalid Namespace or Format"),
        "{}",
        e.error
    );
    assert!(e.buf.is_some());
    // The other namespace works on.
    qp.read(&now[0], Lba(0), c.alloc_buffer(ByteCount(512)).unwrap())
        .unwrap();
}
