use super::*;

const INVITE: TxId = 1;

fn t0() -> Instant {
    // Tests take time as data; this is the only clock read, for an origin.
    crate::clock::now()
}

fn statuses(uas: &mut Uas) -> Vec<u16> {
    std::iter::from_fn(|| uas.poll_response())
        .map(|r| r.status)
        .collect()
}

fn events(uas: &mut Uas) -> Vec<UasEvent> {
    std::iter::from_fn(|| uas.poll_event()).collect()
}

fn answer() -> Decision {
    Decision::Answer {
        sdp: b"v=0\r\n".to_vec(),
    }
}

fn confirmed(now: Instant) -> Uas {
    let mut uas = Uas::new(UasConfig::default(), INVITE);
    uas.handle_decision(now, answer()).unwrap();
    uas.handle_ack(now, None).unwrap();
    statuses(&mut uas);
    events(&mut uas);
    uas
}

#[test]
fn answers_with_trying_ringing_ok_then_confirms_on_ack() {
    let now = t0();
    let mut uas = Uas::new(UasConfig::default(), INVITE);
    assert_eq!(uas.state().name(), "Proceeding");
    uas.handle_decision(now, answer()).unwrap();
    let replies: Vec<Reply> = std::iter::from_fn(|| uas.poll_response()).collect();
    assert_eq!(
        replies.iter().map(|r| r.status).collect::<Vec<_>>(),
        [100, 180, 200]
    );
    assert_eq!(replies[2].body, Body::Sdp(b"v=0\r\n".to_vec()));
    assert_eq!(uas.state().name(), "Accepted");
    assert_eq!(uas.next_timer().map(|t| t.0), Some(UasTimer::AckTimeout));
    uas.handle_ack(now, None).unwrap();
    assert_eq!(uas.state().name(), "Confirmed");
    assert_eq!(
        events(&mut uas),
        [UasEvent::Answered, UasEvent::Confirmed { sdp: None }]
    );
    assert_eq!(uas.poll_timeout(), None);
}

#[test]
fn answer_waits_for_the_ringing_delay() {
    let now = t0();
    let cfg = UasConfig {
        answer_delay: Duration::from_secs(2),
        ..UasConfig::default()
    };
    let mut uas = Uas::new(cfg, INVITE);
    uas.handle_decision(now, answer()).unwrap();
    assert_eq!(statuses(&mut uas), [100, 180]);
    assert_eq!(uas.state().name(), "Early");
    assert_eq!(
        uas.next_timer(),
        Some((UasTimer::Answer, now + Duration::from_secs(2)))
    );
    uas.handle_timeout(now + Duration::from_secs(1));
    assert!(uas.poll_response().is_none());
    uas.handle_timeout(now + Duration::from_secs(2));
    assert_eq!(statuses(&mut uas), [200]);
}

#[test]
fn ringing_can_be_off() {
    let now = t0();
    let cfg = UasConfig {
        send_ringing: false,
        ..UasConfig::default()
    };
    let mut uas = Uas::new(cfg, INVITE);
    uas.handle_decision(now, answer()).unwrap();
    assert_eq!(statuses(&mut uas), [100, 200]);
}

#[test]
fn late_offer_answer_comes_in_the_ack() {
    let now = t0();
    let mut uas = Uas::new(UasConfig::default(), INVITE);
    uas.handle_decision(now, answer()).unwrap();
    uas.handle_ack(now, Some(b"answer".to_vec())).unwrap();
    assert!(events(&mut uas).contains(&UasEvent::Confirmed {
        sdp: Some(b"answer".to_vec())
    }));
}

#[test]
fn rejection_terminates() {
    let now = t0();
    let mut uas = Uas::new(UasConfig::default(), INVITE);
    uas.handle_decision(
        now,
        Decision::Reject {
            status: 404,
            reason: None,
            headers: vec![],
        },
    )
    .unwrap();
    assert_eq!(statuses(&mut uas), [100, 404]);
    assert_eq!(
        events(&mut uas),
        [UasEvent::Terminated(EndReason::Rejected(404))]
    );
    assert!(uas.is_terminated());
}

#[test]
fn cancel_before_answer_gives_487() {
    let now = t0();
    let cfg = UasConfig {
        answer_delay: Duration::from_secs(5),
        ..UasConfig::default()
    };
    let mut uas = Uas::new(cfg, INVITE);
    uas.handle_decision(now, answer()).unwrap();
    uas.handle_cancel(now).unwrap();
    assert_eq!(statuses(&mut uas), [100, 180, 487]);
    assert_eq!(
        events(&mut uas),
        [UasEvent::Terminated(EndReason::Cancelled)]
    );
    assert_eq!(uas.poll_timeout(), None);
}

#[test]
fn cancel_after_answer_has_no_effect() {
    let now = t0();
    let mut uas = confirmed(now);
    uas.handle_cancel(now).unwrap();
    assert_eq!(uas.state().name(), "Confirmed");
    assert!(uas.poll_response().is_none());
}

#[test]
fn remote_bye_gets_200_and_ends() {
    let now = t0();
    let mut uas = confirmed(now);
    uas.handle_bye(now, 7).unwrap();
    let r = uas.poll_response().unwrap();
    assert_eq!((r.tx, r.status), (7, 200));
    assert_eq!(
        events(&mut uas),
        [UasEvent::Terminated(EndReason::RemoteBye)]
    );
}

#[test]
fn bye_before_ack_is_accepted() {
    let now = t0();
    let mut uas = Uas::new(UasConfig::default(), INVITE);
    uas.handle_decision(now, answer()).unwrap();
    uas.handle_bye(now, 2).unwrap();
    assert!(uas.is_terminated());
}

#[test]
fn bye_before_answer_is_a_typed_error_with_481() {
    let now = t0();
    let mut uas = Uas::new(UasConfig::default(), INVITE);
    let err = uas.handle_bye(now, 2).unwrap_err();
    assert_eq!(
        err,
        UasError::Unexpected {
            state: "Proceeding",
            expected: "CANCEL before the dialog is confirmed",
            got: "BYE"
        }
    );
    assert_eq!(statuses(&mut uas), [100, 481]);
    assert_eq!(uas.state().name(), "Proceeding");
}

#[test]
fn ack_before_answer_is_an_error() {
    let now = t0();
    let mut uas = Uas::new(UasConfig::default(), INVITE);
    assert!(matches!(
        uas.handle_ack(now, None),
        Err(UasError::Unexpected { got: "ACK", .. })
    ));
}

#[test]
fn second_decision_is_an_error() {
    let now = t0();
    let mut uas = Uas::new(UasConfig::default(), INVITE);
    uas.handle_decision(now, answer()).unwrap();
    assert!(uas.handle_decision(now, answer()).is_err());
}

#[test]
fn local_hangup_sends_bye_when_confirmed() {
    let now = t0();
    let mut uas = confirmed(now);
    uas.handle_hangup(now, 480);
    assert_eq!(uas.poll_request(), Some(OutRequest::Bye));
    assert_eq!(
        events(&mut uas),
        [UasEvent::Terminated(EndReason::LocalBye)]
    );
}

#[test]
fn local_hangup_before_ack_waits_for_it() {
    let now = t0();
    let mut uas = Uas::new(UasConfig::default(), INVITE);
    uas.handle_decision(now, answer()).unwrap();
    uas.handle_hangup(now, 480);
    assert_eq!(uas.poll_request(), None);
    uas.handle_ack(now, None).unwrap();
    assert_eq!(uas.poll_request(), Some(OutRequest::Bye));
    assert!(uas.is_terminated());
}

#[test]
fn local_hangup_before_answer_refuses() {
    let now = t0();
    let cfg = UasConfig {
        answer_delay: Duration::from_secs(5),
        ..UasConfig::default()
    };
    let mut uas = Uas::new(cfg, INVITE);
    uas.handle_decision(now, answer()).unwrap();
    uas.handle_hangup(now, 503);
    assert_eq!(statuses(&mut uas), [100, 180, 503]);
}

#[test]
fn missing_ack_times_out_with_bye() {
    let now = t0();
    let mut uas = Uas::new(UasConfig::default(), INVITE);
    uas.handle_decision(now, answer()).unwrap();
    let deadline = uas.poll_timeout().unwrap();
    assert_eq!(deadline, now + Duration::from_secs(32));
    uas.handle_timeout(deadline);
    assert_eq!(uas.poll_request(), Some(OutRequest::Bye));
    assert!(events(&mut uas).contains(&UasEvent::Terminated(EndReason::NoAck)));
}

#[test]
fn reinvite_is_handed_to_the_driver_and_overlap_gets_491() {
    let now = t0();
    let mut uas = confirmed(now);
    uas.handle_in_dialog(now, 5, InDialogMethod::ReInvite)
        .unwrap();
    assert_eq!(
        events(&mut uas),
        [UasEvent::InDialog {
            tx: 5,
            method: InDialogMethod::ReInvite
        }]
    );
    uas.handle_in_dialog(now, 6, InDialogMethod::ReInvite)
        .unwrap();
    assert_eq!(
        uas.poll_response().map(|r| (r.tx, r.status)),
        Some((6, 491))
    );
    uas.handle_in_dialog_reply(
        now,
        Reply {
            tx: 5,
            status: 200,
            reason: None,
            body: Body::None,
            headers: vec![],
        },
    )
    .unwrap();
    assert_eq!(
        uas.poll_response().map(|r| (r.tx, r.status)),
        Some((5, 200))
    );
    uas.handle_in_dialog(now, 8, InDialogMethod::ReInvite)
        .unwrap();
    assert_eq!(events(&mut uas).len(), 1);
}

#[test]
fn info_after_the_call_gets_481() {
    let now = t0();
    let mut uas = confirmed(now);
    uas.handle_bye(now, 2).unwrap();
    statuses(&mut uas);
    assert!(uas.handle_in_dialog(now, 3, InDialogMethod::Info).is_err());
    assert_eq!(statuses(&mut uas), [481]);
}
