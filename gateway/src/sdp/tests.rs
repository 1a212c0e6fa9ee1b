//! The negotiation table: offers shaped like those real equipment sends.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use super::*;

fn local() -> LocalMedia {
    LocalMedia::new(IpAddr::V4(Ipv4Addr::new(10, 1, 1, 1)), 40_000)
}

fn sdp(lines: &[&str]) -> String {
    let mut s = lines.join("\r\n");
    s.push_str("\r\n");
    s
}

/// A carrier SBC: PCMA first, G.729 too, telephone-event 0-15, maxptime.
fn carrier_offer() -> String {
    sdp(&[
        "v=0",
        "o=SBC 245817 29561 IN IP4 203.0.113.10",
        "s=SIP Media Capabilities",
        "c=IN IP4 203.0.113.20",
        "t=0 0",
        "m=audio 31234 RTP/AVP 8 0 18 101",
        "a=rtpmap:8 PCMA/8000",
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:18 G729/8000",
        "a=fmtp:18 annexb=no",
        "a=rtpmap:101 telephone-event/8000",
        "a=fmtp:101 0-15",
        "a=sendrecv",
        "a=ptime:20",
        "a=maxptime:40",
    ])
}

/// A desktop softphone: Opus and G.722 first, PCMU+PCMA, telephone-event/101,
/// media-level c=, rtcp and ssrc attributes, LF line ends.
fn softphone_offer() -> String {
    [
        "v=0",
        "o=- 3917253664 3917253664 IN IP4 10.0.0.23",
        "s=pjmedia",
        "b=AS:84",
        "t=0 0",
        "a=X-nat:0",
        "m=audio 4000 RTP/AVP 96 9 0 8 101",
        "c=IN IP4 10.0.0.23",
        "b=TIAS:64000",
        "a=rtcp:4001 IN IP4 10.0.0.23",
        "a=sendrecv",
        "a=rtpmap:96 opus/48000/2",
        "a=fmtp:96 useinbandfec=1",
        "a=rtpmap:9 G722/8000",
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:8 PCMA/8000",
        "a=rtpmap:101 telephone-event/8000",
        "a=fmtp:101 0-16",
        "a=ssrc:1234567 cname:4c1e0f2a",
        "",
    ]
    .join("\n")
}

fn lines(s: &str) -> Vec<&str> {
    s.split("\r\n").filter(|l| !l.is_empty()).collect()
}

fn m_lines(s: &str) -> Vec<&str> {
    lines(s)
        .into_iter()
        .filter(|l| l.starts_with("m="))
        .collect()
}

fn has(s: &str, line: &str) -> bool {
    lines(s).contains(&line)
}

#[test]
fn carrier_pcma_first_is_answered_with_pcma() {
    let (ans, media) = answer(&carrier_offer(), &local()).expect("answer");
    assert_eq!(media.codec, Codec::Pcma);
    assert_eq!(media.payload_type, 8);
    assert_eq!(media.dtmf_payload_type, Some(101));
    assert_eq!(
        media.remote,
        "203.0.113.20:31234".parse::<SocketAddr>().expect("addr")
    );
    assert_eq!(media.ptime_ms, 20);
    assert_eq!(media.direction, Direction::SendRecv);
    assert_eq!(media.remote_direction, Direction::SendRecv);
    assert!(!media.on_hold);
    assert_eq!(m_lines(&ans), ["m=audio 40000 RTP/AVP 8 101"]);
    for l in [
        "c=IN IP4 10.1.1.1",
        "a=rtpmap:8 PCMA/8000",
        "a=rtpmap:101 telephone-event/8000",
        "a=fmtp:101 0-15",
        "a=ptime:20",
        "a=sendrecv",
    ] {
        assert!(has(&ans, l), "missing {l} in\n{ans}");
    }
    assert!(lines(&ans)[1].starts_with("o=voxgate "));
    // The answer itself parses back.
    RemoteSdp::parse(&ans).expect("answer parses");
}

#[test]
fn softphone_offer_skips_opus_and_g722_and_keeps_dynamic_dtmf() {
    let (ans, media) = answer(&softphone_offer(), &local()).expect("answer");
    assert_eq!(media.codec, Codec::Pcmu);
    assert_eq!(media.payload_type, 0);
    assert_eq!(media.dtmf_payload_type, Some(101));
    assert_eq!(
        media.remote,
        "10.0.0.23:4000".parse::<SocketAddr>().expect("addr")
    );
    assert_eq!(m_lines(&ans), ["m=audio 40000 RTP/AVP 0 101"]);
    assert!(has(&ans, "a=fmtp:101 0-16"));
}

#[test]
fn dynamic_telephone_event_pt_is_echoed() {
    let offer = sdp(&[
        "v=0",
        "o=- 1 1 IN IP4 10.0.0.5",
        "s=-",
        "c=IN IP4 10.0.0.5",
        "t=0 0",
        "m=audio 5004 RTP/AVP 0 97",
        "a=rtpmap:97 telephone-event/8000",
        "a=rtpmap:0 PCMU/8000",
    ]);
    let (ans, media) = answer(&offer, &local()).expect("answer");
    assert_eq!(media.dtmf_payload_type, Some(97));
    assert_eq!(m_lines(&ans), ["m=audio 40000 RTP/AVP 0 97"]);
    assert!(has(&ans, "a=rtpmap:97 telephone-event/8000"));
    assert!(has(&ans, "a=fmtp:97 0-16"));
}

#[test]
fn static_payload_types_without_rtpmap_and_no_dtmf() {
    let offer = sdp(&[
        "v=0",
        "o=- 1 1 IN IP4 10.0.0.5",
        "s=-",
        "c=IN IP4 10.0.0.5",
        "t=0 0",
        "m=audio 5004 RTP/AVP 18 0",
    ]);
    let (ans, media) = answer(&offer, &local()).expect("answer");
    assert_eq!(media.codec, Codec::Pcmu);
    assert_eq!(media.dtmf_payload_type, None);
    assert_eq!(m_lines(&ans), ["m=audio 40000 RTP/AVP 0"]);
}

#[test]
fn opus_and_g722_only_is_no_common_codec() {
    let offer = sdp(&[
        "v=0",
        "o=- 5 5 IN IP4 10.0.0.9",
        "s=-",
        "c=IN IP4 10.0.0.9",
        "t=0 0",
        "m=audio 6000 RTP/AVP 111 9 101",
        "a=rtpmap:111 opus/48000/2",
        "a=rtpmap:9 G722/8000",
        "a=rtpmap:101 telephone-event/8000",
    ]);
    let err = answer(&offer, &local()).expect_err("no codec");
    assert_eq!(err, SdpError::NoCommonCodec);
    assert_eq!(err.sip_status(), 488);
}

#[test]
fn we_only_accept_codecs_we_listed() {
    let mut pcma_only = local();
    pcma_only.codecs = vec![Codec::Pcma];
    let offer = sdp(&[
        "v=0",
        "o=- 1 1 IN IP4 10.0.0.5",
        "s=-",
        "c=IN IP4 10.0.0.5",
        "t=0 0",
        "m=audio 5004 RTP/AVP 0",
    ]);
    assert_eq!(
        answer(&offer, &pcma_only).map(|(_, m)| m.codec),
        Err(SdpError::NoCommonCodec)
    );
    // An rtpmap that renames a static PT wins over the static table, and a
    // wrong clock rate disqualifies it.
    let renamed = sdp(&[
        "v=0",
        "o=- 1 1 IN IP4 10.0.0.5",
        "s=-",
        "c=IN IP4 10.0.0.5",
        "t=0 0",
        "m=audio 5004 RTP/AVP 0 8",
        "a=rtpmap:0 PCMU/16000",
        "a=rtpmap:8 PCMA/8000",
    ]);
    assert_eq!(
        answer(&renamed, &local()).map(|(_, m)| m.codec),
        Ok(Codec::Pcma)
    );
}

#[test]
fn telephone_event_disabled_locally_is_left_out() {
    let mut no_dtmf = local();
    no_dtmf.telephone_event = false;
    let (ans, media) = answer(&carrier_offer(), &no_dtmf).expect("answer");
    assert_eq!(media.dtmf_payload_type, None);
    assert_eq!(m_lines(&ans), ["m=audio 40000 RTP/AVP 8"]);
}

#[test]
fn sendonly_offer_is_hold_and_answered_recvonly() {
    let offer = carrier_offer().replace("a=sendrecv", "a=sendonly");
    let (ans, media) = answer(&offer, &local()).expect("answer");
    assert!(media.on_hold);
    assert_eq!(media.remote_direction, Direction::SendOnly);
    assert_eq!(media.direction, Direction::RecvOnly);
    assert!(has(&ans, "a=recvonly"));
}

#[test]
fn inactive_and_recvonly_are_mirrored() {
    let (answer_i, media) = answer(
        &carrier_offer().replace("a=sendrecv", "a=inactive"),
        &local(),
    )
    .expect("answer");
    assert!(media.on_hold);
    assert_eq!(media.direction, Direction::Inactive);
    assert!(has(&answer_i, "a=inactive"));
    let (answer_r, media) = answer(
        &carrier_offer().replace("a=sendrecv", "a=recvonly"),
        &local(),
    )
    .expect("answer");
    assert!(!media.on_hold);
    assert_eq!(media.direction, Direction::SendOnly);
    assert!(has(&answer_r, "a=sendonly"));
}

#[test]
fn session_level_direction_applies_unless_media_overrides() {
    let offer = sdp(&[
        "v=0",
        "o=- 1 1 IN IP4 10.0.0.5",
        "s=-",
        "c=IN IP4 10.0.0.5",
        "t=0 0",
        "a=sendonly",
        "m=audio 5004 RTP/AVP 0",
    ]);
    assert_eq!(
        answer(&offer, &local()).map(|(_, m)| m.remote_direction),
        Ok(Direction::SendOnly)
    );
    let overridden = offer.replace(
        "m=audio 5004 RTP/AVP 0\r\n",
        "m=audio 5004 RTP/AVP 0\r\na=sendrecv\r\n",
    );
    assert_eq!(
        answer(&overridden, &local()).map(|(_, m)| m.remote_direction),
        Ok(Direction::SendRecv)
    );
}

#[test]
fn rfc2543_null_address_is_hold() {
    let offer = carrier_offer().replace("c=IN IP4 203.0.113.20", "c=IN IP4 0.0.0.0");
    let (ans, media) = answer(&offer, &local()).expect("answer");
    assert!(media.on_hold);
    assert_eq!(media.remote_direction, Direction::SendRecv);
    assert_eq!(media.direction, Direction::RecvOnly);
    assert!(media.remote.ip().is_unspecified());
    assert!(has(&ans, "a=recvonly"));
    assert!(has(&ans, "c=IN IP4 10.1.1.1"));
}

#[test]
fn media_level_connection_overrides_session_level() {
    let offer = carrier_offer().replace(
        "m=audio 31234 RTP/AVP 8 0 18 101\r\n",
        "m=audio 31234 RTP/AVP 8 0 18 101\r\nc=IN IP4 203.0.113.99\r\n",
    );
    let (_, media) = answer(&offer, &local()).expect("answer");
    assert_eq!(
        media.remote.ip(),
        "203.0.113.99".parse::<IpAddr>().expect("ip")
    );
}

#[test]
fn ipv6_offer_and_answer() {
    let local6 = LocalMedia::new("2001:db8::1".parse().expect("ip"), 40_000);
    let offer = sdp(&[
        "v=0",
        "o=- 1 1 IN IP6 2001:db8::5",
        "s=-",
        "c=IN IP6 2001:db8::5",
        "t=0 0",
        "m=audio 5004 RTP/AVP 8",
    ]);
    let (ans, media) = answer(&offer, &local6).expect("answer");
    assert_eq!(
        media.remote,
        "[2001:db8::5]:5004".parse::<SocketAddr>().expect("addr")
    );
    assert!(has(&ans, "c=IN IP6 2001:db8::1"));
}

#[test]
fn ptime_30_is_honoured_and_maxptime_caps_ours() {
    let offer = carrier_offer().replace("a=ptime:20", "a=ptime:30");
    let (ans, media) = answer(&offer, &local()).expect("answer");
    assert_eq!(media.ptime_ms, 30);
    assert!(has(&ans, "a=ptime:30"));
    // No ptime in the offer: ours, but not above the offer's maxptime.
    let mut slow = local();
    slow.ptime_ms = 60;
    let offer = carrier_offer().replace("a=ptime:20\r\n", "");
    assert_eq!(answer(&offer, &slow).map(|(_, m)| m.ptime_ms), Ok(40));
    // Nonsense ptime falls back to ours.
    let offer = carrier_offer().replace("a=ptime:20", "a=ptime:7");
    assert_eq!(answer(&offer, &local()).map(|(_, m)| m.ptime_ms), Ok(20));
}

#[test]
fn other_media_lines_are_rejected_in_order() {
    let offer = sdp(&[
        "v=0",
        "o=- 7 7 IN IP4 10.0.0.8",
        "s=-",
        "c=IN IP4 10.0.0.8",
        "t=0 0",
        "m=video 5006 RTP/AVP 96 97",
        "a=rtpmap:96 H264/90000",
        "a=rtpmap:97 VP8/90000",
        "m=audio 5004 RTP/SAVP 0",
        "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz",
        "m=audio 5008 RTP/AVP 8 0 101",
        "a=rtpmap:101 telephone-event/8000",
        "m=application 5010 UDP/BFCP *",
    ]);
    let (ans, media) = answer(&offer, &local()).expect("answer");
    assert_eq!(
        m_lines(&ans),
        [
            "m=video 0 RTP/AVP 96 97",
            "m=audio 0 RTP/SAVP 0",
            "m=audio 40000 RTP/AVP 8 101",
            "m=application 0 UDP/BFCP *"
        ]
    );
    assert_eq!(media.remote.port(), 5008);
    assert_eq!(media.codec, Codec::Pcma);
    // Only the chosen line carries attributes.
    assert!(!ans.contains("H264"));
    assert!(!ans.contains("crypto"));
}

#[test]
fn a_disabled_audio_line_is_skipped() {
    let offer = sdp(&[
        "v=0",
        "o=- 7 7 IN IP4 10.0.0.8",
        "s=-",
        "c=IN IP4 10.0.0.8",
        "t=0 0",
        "m=audio 0 RTP/AVP 0",
        "m=audio 5008 RTP/AVP 0",
    ]);
    let (ans, media) = answer(&offer, &local()).expect("answer");
    assert_eq!(
        m_lines(&ans),
        ["m=audio 0 RTP/AVP 0", "m=audio 40000 RTP/AVP 0"]
    );
    assert_eq!(media.remote.port(), 5008);
}

#[test]
fn video_only_is_no_common_codec() {
    let offer = sdp(&[
        "v=0",
        "o=- 7 7 IN IP4 10.0.0.8",
        "s=-",
        "c=IN IP4 10.0.0.8",
        "t=0 0",
        "m=video 5006 RTP/AVP 96",
        "a=rtpmap:96 H264/90000",
    ]);
    assert_eq!(
        answer(&offer, &local()).map(|_| ()),
        Err(SdpError::NoCommonCodec)
    );
}

#[test]
fn garbage_is_malformed_never_a_panic() {
    let cases = [
        "hello",
        "v=0",
        "v=1\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nt=0 0\r\nm=audio 1 RTP/AVP 0\r\n",
        "v=0\r\no=- x 1 IN IP4 1.2.3.4\r\ns=-\r\nt=0 0\r\n",
        "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nt=0 0\r\nm=audio 99999 RTP/AVP 0\r\n",
        "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nt=0 0\r\nm=audio abc RTP/AVP 0\r\n",
        "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nt=0 0\r\n",
        "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nt=0 0\r\nm=audio 4000\r\n",
        "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n",
    ];
    for case in cases {
        let err = answer(case, &local()).map(|_| ()).expect_err(case);
        assert_eq!(err.sip_status(), 400, "{case:?}: {err}");
    }
    assert_eq!(answer("", &local()).map(|_| ()), Err(SdpError::Empty));
    assert_eq!(answer(" \r\n", &local()).map(|_| ()), Err(SdpError::Empty));
    let no_c = sdp(&[
        "v=0",
        "o=- 1 1 IN IP4 1.2.3.4",
        "s=-",
        "t=0 0",
        "m=audio 4000 RTP/AVP 0",
    ]);
    assert_eq!(
        answer(&no_c, &local()).map(|_| ()),
        Err(SdpError::MissingConnection { index: 0 })
    );
    let fqdn = sdp(&[
        "v=0",
        "o=- 1 1 IN IP4 1.2.3.4",
        "s=-",
        "c=IN IP4 media.carrier.test",
        "t=0 0",
        "m=audio 4000 RTP/AVP 0",
    ]);
    assert!(matches!(
        answer(&fqdn, &local()),
        Err(SdpError::UnsupportedAddress(_))
    ));
}

#[test]
fn random_bytes_never_panic() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(3264);
    let base = carrier_offer();
    for _ in 0..2_000 {
        let mut bytes = base.clone().into_bytes();
        for _ in 0..rng.random_range(1..8) {
            let i = rng.random_range(0..bytes.len());
            bytes[i] = rng.random_range(0x20..0x7f);
        }
        let cut = rng.random_range(0..=bytes.len());
        let text = String::from_utf8_lossy(&bytes[..cut]).into_owned();
        let _ = answer(&text, &local());
        let _ = accept_answer(&text, &local());
    }
}

#[test]
fn late_offer_round_trip() {
    // We offer in the 200; the softphone's answer comes in the ACK.
    let mut session = SdpSession::new(42);
    let our_offer = offer(&local(), &mut session);
    assert_eq!(m_lines(&our_offer), ["m=audio 40000 RTP/AVP 0 8 101"]);
    assert!(has(&our_offer, "o=voxgate 42 1 IN IP4 10.1.1.1"));
    for l in [
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:8 PCMA/8000",
        "a=rtpmap:101 telephone-event/8000",
        "a=fmtp:101 0-16",
        "a=ptime:20",
        "a=sendrecv",
    ] {
        assert!(has(&our_offer, l), "missing {l}");
    }
    // The far end answers with our own answer logic, preferring PCMA.
    let mut far = LocalMedia::new(IpAddr::V4(Ipv4Addr::new(10, 2, 2, 2)), 50_000);
    far.codecs = vec![Codec::Pcma];
    let (their_answer, their_view) = answer(&our_offer, &far).expect("far end answers");
    assert_eq!(their_view.codec, Codec::Pcma);
    assert_eq!(
        their_view.remote,
        "10.1.1.1:40000".parse::<SocketAddr>().expect("addr")
    );
    assert!(session.has_pending_offer());
    let media = session.accept_answer(&their_answer).expect("accept");
    assert!(!session.has_pending_offer());
    assert_eq!(media.codec, Codec::Pcma);
    assert_eq!(media.payload_type, 8);
    assert_eq!(media.dtmf_payload_type, Some(101));
    assert_eq!(
        media.remote,
        "10.2.2.2:50000".parse::<SocketAddr>().expect("addr")
    );
    assert_eq!(media.direction, Direction::SendRecv);
    assert_eq!(
        session.accept_answer(&their_answer),
        Err(SdpError::NoPendingOffer)
    );
    // The stateless variant agrees.
    assert_eq!(accept_answer(&their_answer, &local()), Ok(media));
}

#[test]
fn our_hold_offer_and_its_answer() {
    let mut session = SdpSession::new(9);
    let hold = session.offer_with_direction(&local(), Direction::SendOnly);
    assert!(has(&hold, "a=sendonly"));
    let (their_answer, their_view) = answer(
        &hold,
        &LocalMedia::new(IpAddr::V4(Ipv4Addr::new(10, 2, 2, 2)), 50_000),
    )
    .expect("answer");
    assert!(their_view.on_hold);
    assert!(has(&their_answer, "a=recvonly"));
    let media = session.accept_answer(&their_answer).expect("accept");
    assert_eq!(media.direction, Direction::SendOnly);
    assert!(!media.on_hold);
}

#[test]
fn answers_that_do_not_fit_our_offer() {
    let two = sdp(&[
        "v=0",
        "o=- 1 1 IN IP4 10.2.2.2",
        "s=-",
        "c=IN IP4 10.2.2.2",
        "t=0 0",
        "m=audio 5000 RTP/AVP 0",
        "m=video 0 RTP/AVP 96",
    ]);
    assert_eq!(
        accept_answer(&two, &local()),
        Err(SdpError::MediaCountMismatch {
            offered: 1,
            answered: 2
        })
    );
    let rejected = sdp(&[
        "v=0",
        "o=- 1 1 IN IP4 10.2.2.2",
        "s=-",
        "c=IN IP4 10.2.2.2",
        "t=0 0",
        "m=audio 0 RTP/AVP 0",
    ]);
    assert_eq!(
        accept_answer(&rejected, &local()),
        Err(SdpError::NoCommonCodec)
    );
    let foreign = sdp(&[
        "v=0",
        "o=- 1 1 IN IP4 10.2.2.2",
        "s=-",
        "c=IN IP4 10.2.2.2",
        "t=0 0",
        "m=audio 5000 RTP/AVP 18",
    ]);
    assert_eq!(
        accept_answer(&foreign, &local()),
        Err(SdpError::NoCommonCodec)
    );
}

#[test]
fn re_offer_changing_codec_bumps_the_version_once() {
    let mut session = SdpSession::new(777);
    let (first, media) = session.answer(&carrier_offer(), &local()).expect("answer");
    assert_eq!(media.codec, Codec::Pcma);
    assert!(has(&first, "o=voxgate 777 1 IN IP4 10.1.1.1"));
    // A session refresh with the same offer: same answer, same version.
    let (again, _) = session.answer(&carrier_offer(), &local()).expect("refresh");
    assert_eq!(again, first);
    // The carrier now prefers PCMU: our answer changes, the version moves.
    let reoffer = carrier_offer()
        .replace("RTP/AVP 8 0 18 101", "RTP/AVP 0 8 18 101")
        .replace("29561", "29562");
    let (second, media) = session.answer(&reoffer, &local()).expect("re-answer");
    assert_eq!(media.codec, Codec::Pcmu);
    assert!(has(&second, "o=voxgate 777 2 IN IP4 10.1.1.1"));
    assert_eq!(session.version(), 2);
    // Hold and resume are changes too.
    let (held, media) = session
        .answer(&reoffer.replace("a=sendrecv", "a=sendonly"), &local())
        .expect("hold");
    assert!(media.on_hold);
    assert!(has(&held, "o=voxgate 777 3 IN IP4 10.1.1.1"));
    let (resumed, media) = session.answer(&reoffer, &local()).expect("resume");
    assert!(!media.on_hold);
    assert!(has(&resumed, "o=voxgate 777 4 IN IP4 10.1.1.1"));
    assert_eq!(session.session_id(), 777);
}

#[test]
fn direction_algebra() {
    use Direction::*;
    for d in [SendRecv, SendOnly, RecvOnly, Inactive] {
        assert_eq!(d.mirror().mirror(), d);
        assert_eq!(Direction::from_attribute(d.as_str()), Some(d));
        assert_eq!(d.intersect(SendRecv), d);
        assert_eq!(d.intersect(Inactive), Inactive);
    }
    assert_eq!(SendOnly.mirror(), RecvOnly);
    assert_eq!(SendOnly.intersect(RecvOnly), Inactive);
    assert_eq!(Direction::from_attribute("rtcp-mux"), None);
}
