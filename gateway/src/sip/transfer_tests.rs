use super::*;

fn t0() -> Instant {
    Instant::now()
}

fn drain(t: &mut Transfer) -> Vec<TransferAction> {
    std::iter::from_fn(|| t.poll_action()).collect()
}

fn frag(status: u16) -> SipFrag {
    SipFrag {
        status,
        reason: String::new(),
    }
}

#[test]
fn sipfrag_status_lines() {
    assert_eq!(
        parse_sipfrag(b"SIP/2.0 100 Trying\r\n").unwrap(),
        SipFrag {
            status: 100,
            reason: "Trying".into()
        }
    );
    assert_eq!(parse_sipfrag(b"SIP/2.0 200 OK").unwrap().status, 200);
    assert_eq!(
        parse_sipfrag(b"\r\nsip/2.0 486 Busy Here\r\nContent-Length: 0\r\n\r\n")
            .unwrap()
            .status,
        486
    );
    assert_eq!(
        parse_sipfrag(b"SIP/2.0 603").unwrap(),
        SipFrag {
            status: 603,
            reason: String::new()
        }
    );
    assert!(parse_sipfrag(b"SIP/2.0 180 Ringing")
        .map(|f| !f.is_final())
        .unwrap());
}

#[test]
fn sipfrag_garbage_is_a_typed_error() {
    assert_eq!(parse_sipfrag(b""), Err(SipFragError::Empty));
    assert_eq!(parse_sipfrag(b"\r\n \r\n"), Err(SipFragError::Empty));
    assert_eq!(
        parse_sipfrag(&[0xff, 0xfe, 0x00]),
        Err(SipFragError::NotText)
    );
    assert_eq!(
        parse_sipfrag(b"INVITE sip:a@b SIP/2.0"),
        Err(SipFragError::NotAStatusLine)
    );
    assert_eq!(parse_sipfrag(b"hello"), Err(SipFragError::NotAStatusLine));
    assert_eq!(
        parse_sipfrag(b"SIP/3.0 200 OK"),
        Err(SipFragError::BadVersion("SIP/3.0".into()))
    );
    assert_eq!(
        parse_sipfrag(b"SIP/2.0 2000 OK"),
        Err(SipFragError::BadStatus("2000".into()))
    );
    assert_eq!(
        parse_sipfrag(b"SIP/2.0 099 x"),
        Err(SipFragError::BadStatus("099".into()))
    );
    assert_eq!(
        parse_sipfrag(b"SIP/2.0 +20 x"),
        Err(SipFragError::BadStatus("+20".into()))
    );
    assert_eq!(
        parse_sipfrag(b"SIP/2.0"),
        Err(SipFragError::BadStatus(String::new()))
    );
    // Arbitrary bytes never panic.
    for n in 0..=255u8 {
        let _ = parse_sipfrag(&[b'S', b'I', b'P', b'/', n, b' ', n, n, n]);
    }
}

#[test]
fn event_and_subscription_state() {
    assert!(is_refer_event("refer"));
    assert!(is_refer_event("Refer;id=93809824"));
    assert!(!is_refer_event("dialog"));
    assert!(is_terminated("terminated;reason=noresource"));
    assert!(!is_terminated("active;expires=60"));
}

#[test]
fn targets() {
    assert!(check_target("tel:+33123456789", TransferMode::Blind).is_ok());
    assert!(check_target("sip:agent@127.0.0.1:5099", TransferMode::Bridged).is_ok());
    assert!(check_target("sips:queue@pbx.invalid;transport=tls", TransferMode::Blind).is_ok());
    for bad in [
        "",
        "agent",
        "tel:+331",
        "sip:",
        "sip:a@",
        "http://x",
        "sip:a@h\r\nX: y",
        "sip:a b@h",
        "<sip:a@h>",
    ] {
        let blind_ok = bad == "tel:+331";
        assert_eq!(
            check_target(bad, TransferMode::Blind).is_ok(),
            blind_ok,
            "{bad}"
        );
        assert!(
            matches!(
                check_target(bad, TransferMode::Bridged),
                Err(TransferError::InvalidTarget(_))
            ),
            "{bad}"
        );
    }
}

#[test]
fn context_headers() {
    assert!(check_headers(&[("X-Voxgate-Intent".into(), "billing".into())]).is_ok());
    assert!(check_headers(&[("X-A".into(), "v\r\nVia: x".into())]).is_err());
    assert!(check_headers(&[("X A".into(), "v".into())]).is_err());
    assert!(check_headers(&[("Call-ID".into(), "v".into())]).is_err());
    assert!(check_headers(&[("x-voxgate-call-id".into(), "v".into())]).is_err());
}

#[test]
fn blind_success_hangs_up_the_caller() {
    let now = t0();
    let mut t = Transfer::blind(now, Duration::from_secs(5));
    t.handle_refer_response(now, Some(202));
    assert_eq!(t.state().name(), "Subscribed");
    t.handle_notify(now, &frag(100), false);
    assert!(drain(&mut t).is_empty());
    t.handle_notify(now, &frag(200), true);
    assert_eq!(
        drain(&mut t),
        [
            TransferAction::HangupCaller,
            TransferAction::Finish(Ok(TransferOutcome::Referred))
        ]
    );
    assert!(t.is_done());
}

#[test]
fn blind_failures() {
    let now = t0();
    let timeout = Duration::from_secs(5);
    let mut t = Transfer::blind(now, timeout);
    t.handle_refer_response(now, Some(603));
    assert_eq!(
        drain(&mut t),
        [TransferAction::Finish(Err(TransferError::Rejected {
            status: 603
        }))]
    );

    let mut t = Transfer::blind(now, timeout);
    t.handle_refer_response(now, Some(202));
    t.handle_notify(now, &frag(486), true);
    assert_eq!(
        drain(&mut t),
        [TransferAction::Finish(Err(TransferError::Rejected {
            status: 486
        }))]
    );

    let mut t = Transfer::blind(now, timeout);
    t.handle_timeout(now + timeout);
    assert_eq!(
        drain(&mut t),
        [TransferAction::Finish(Err(TransferError::Timeout))]
    );

    let mut t = Transfer::blind(now, timeout);
    t.handle_refer_response(now, Some(202));
    t.handle_timeout(now + timeout - Duration::from_millis(1));
    assert!(drain(&mut t).is_empty());
    t.handle_timeout(now + timeout);
    assert_eq!(
        drain(&mut t),
        [TransferAction::Finish(Err(TransferError::NoNotify))]
    );

    // Progress then silence: no final answer.
    let mut t = Transfer::blind(now, timeout);
    t.handle_refer_response(now, Some(202));
    t.handle_notify(now, &frag(180), false);
    t.handle_timeout(now + timeout);
    assert_eq!(
        drain(&mut t),
        [TransferAction::Finish(Err(TransferError::Timeout))]
    );

    // Subscription terminated before a final status.
    let mut t = Transfer::blind(now, timeout);
    t.handle_refer_response(now, Some(202));
    t.handle_notify(now, &frag(100), true);
    assert_eq!(
        drain(&mut t),
        [TransferAction::Finish(Err(TransferError::Timeout))]
    );

    let mut t = Transfer::blind(now, timeout);
    t.handle_refer_response(now, None);
    assert_eq!(
        drain(&mut t),
        [TransferAction::Finish(Err(TransferError::Timeout))]
    );

    let mut t = Transfer::blind(now, timeout);
    t.handle_caller_gone(now);
    assert_eq!(
        drain(&mut t),
        [TransferAction::Finish(Err(TransferError::CallGone))]
    );
}

#[test]
fn notify_may_overtake_the_202() {
    let now = t0();
    let mut t = Transfer::blind(now, Duration::from_secs(5));
    t.handle_notify(now, &frag(100), false);
    t.handle_refer_response(now, Some(202));
    assert_eq!(t.state().name(), "Subscribed");
    t.handle_notify(now, &frag(200), false);
    assert_eq!(drain(&mut t).len(), 2);
}

#[test]
fn bridged_answer_then_bye_either_side() {
    let now = t0();
    let mut t = Transfer::bridged(now, Duration::from_secs(20));
    t.handle_agent_response(now, 180);
    t.handle_agent_response(now + Duration::from_secs(3), 200);
    assert_eq!(drain(&mut t), [TransferAction::StartBridge]);
    assert!(t.is_bridged() && t.poll_timeout().is_none());
    t.handle_agent_bye(now + Duration::from_secs(60));
    let done = TransferOutcome::Bridged {
        agent_answered_after: Duration::from_secs(3),
    };
    assert_eq!(
        drain(&mut t),
        [
            TransferAction::HangupCaller,
            TransferAction::Finish(Ok(done.clone()))
        ]
    );

    let mut t = Transfer::bridged(now, Duration::from_secs(20));
    t.handle_agent_response(now + Duration::from_secs(3), 200);
    drain(&mut t);
    t.handle_caller_gone(now);
    assert_eq!(
        drain(&mut t),
        [TransferAction::ByeAgent, TransferAction::Finish(Ok(done))]
    );
}

#[test]
fn bridged_failures() {
    let now = t0();
    let ring = Duration::from_secs(20);
    for (status, error) in [
        (486, TransferError::Rejected { status: 486 }),
        (603, TransferError::Rejected { status: 603 }),
        (480, TransferError::NoAnswer),
        (408, TransferError::NoAnswer),
    ] {
        let mut t = Transfer::bridged(now, ring);
        t.handle_agent_response(now, 180);
        t.handle_agent_response(now, status);
        assert_eq!(drain(&mut t), [TransferAction::Finish(Err(error))]);
        assert!(t.is_done());
    }
    let mut t = Transfer::bridged(now, ring);
    t.handle_agent_response(now, 200);
    drain(&mut t);
    t.handle_bridge_failed(now);
    assert_eq!(
        drain(&mut t),
        [
            TransferAction::ByeAgent,
            TransferAction::Finish(Err(TransferError::Rejected { status: 488 }))
        ]
    );
}

#[test]
fn ring_timeout_cancels_after_a_provisional() {
    let now = t0();
    let ring = Duration::from_secs(20);
    let mut t = Transfer::bridged(now, ring);
    t.handle_agent_response(now, 180);
    t.handle_timeout(now + ring);
    assert_eq!(
        drain(&mut t),
        [
            TransferAction::CancelAgent,
            TransferAction::Finish(Err(TransferError::NoAnswer))
        ]
    );
    t.handle_agent_response(now + ring, 487);
    assert!(t.is_done());

    // No 1xx yet: the CANCEL waits for one (RFC 3261 §9.1).
    let mut t = Transfer::bridged(now, ring);
    t.handle_timeout(now + ring);
    assert_eq!(
        drain(&mut t),
        [TransferAction::Finish(Err(TransferError::NoAnswer))]
    );
    t.handle_agent_response(now + ring, 100);
    assert_eq!(drain(&mut t), [TransferAction::CancelAgent]);
    t.handle_agent_response(now + ring, 180);
    assert!(drain(&mut t).is_empty());
    // The agent answered anyway: BYE it.
    t.handle_agent_response(now + ring, 200);
    assert_eq!(drain(&mut t), [TransferAction::ByeAgent]);
    assert!(t.is_done());
}

#[test]
fn caller_gone_while_ringing() {
    let now = t0();
    let mut t = Transfer::bridged(now, Duration::from_secs(20));
    t.handle_agent_response(now, 180);
    t.handle_caller_gone(now);
    assert_eq!(
        drain(&mut t),
        [
            TransferAction::CancelAgent,
            TransferAction::Finish(Err(TransferError::CallGone))
        ]
    );
    t.handle_agent_gone(now);
    assert!(t.is_done());
}
