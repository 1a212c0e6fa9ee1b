//! Calls from sipp to a live `voxgate serve`, one gateway per test.

use std::time::Duration;

use voxgate_tests::gateway::dtmf_digits_logged;
use voxgate_tests::{wait_until, Gateway, GatewayOptions, Metrics, Sipp};

fn gateway_with_env(env: &[(&str, &str)]) -> Gateway {
    let opts = GatewayOptions {
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    };
    Gateway::start_with(opts).expect("start voxgate serve")
}

fn metrics_when(gw: &Gateway, what: &str, pred: impl Fn(&Metrics) -> bool) -> Metrics {
    wait_until(Duration::from_secs(5), || {
        gw.metrics().ok().filter(|m| pred(m))
    })
    .unwrap_or_else(|| {
        panic!(
            "metrics never showed {what}:\n{}",
            gw.metrics()
                .map(|m| m.names().join("\n"))
                .unwrap_or_default()
        )
    })
}

fn completed(m: &Metrics) -> f64 {
    m.with_labels("voxgate_calls_total", &[("outcome", "Completed")])
}

#[test]
fn basic_call_carries_audio_both_ways_and_caller_hangs_up() {
    let gw = Gateway::start().expect("start");
    let run = Sipp::new("basic_audio.xml", gw.sip_addr())
        .run()
        .expect("sipp");
    run.assert_success();
    let m = metrics_when(&gw, "a completed call", |m| completed(m) >= 1.0);
    // g711a.pcap holds 236 contiguous PCMA packets.
    let rx = m.value("voxgate_rtp_packets_rx_total");
    assert!(rx >= 230.0, "gateway received {rx} RTP packets of 236");
    assert_eq!(
        m.value("voxgate_rtp_packets_lost_total"),
        0.0,
        "loss on loopback"
    );
    // The greeting alone lasts well over a second (50 packets/s).
    let tx = m.value("voxgate_rtp_packets_tx_total");
    assert!(tx >= 50.0, "gateway sent only {tx} RTP packets");
    assert_eq!(completed(&m), 1.0);
    assert_eq!(m.value("voxgate_calls_active"), 0.0);
}

#[test]
fn rfc4733_dtmf_from_pcap_is_detected() {
    let gw = Gateway::start().expect("start");
    let run = Sipp::new("dtmf_pcap.xml", gw.sip_addr())
        .run()
        .expect("sipp");
    run.assert_success();
    let m = metrics_when(&gw, "3 DTMF digits", |m| {
        m.value("voxgate_dtmf_digits_total") >= 3.0
    });
    assert_eq!(
        m.value("voxgate_dtmf_digits_total"),
        3.0,
        "each digit counted once (end packets are sent 3 times)"
    );
    assert_eq!(
        dtmf_digits_logged(&gw.log_lines()),
        "12#",
        "digits in the gateway log:\n{}",
        gw.log_text()
    );
}

#[test]
fn late_offer_gets_sdp_in_200_and_answer_in_ack() {
    let gw = Gateway::start().expect("start");
    let run = Sipp::new("late_offer.xml", gw.sip_addr())
        .run()
        .expect("sipp");
    run.assert_success();
    let m = metrics_when(&gw, "a completed call", |m| completed(m) >= 1.0);
    let rx = m.value("voxgate_rtp_packets_rx_total");
    assert!(
        rx >= 230.0,
        "gateway received {rx} RTP packets of 236 after the ACK answer"
    );
    assert!(
        m.value("voxgate_rtp_packets_tx_total") >= 50.0,
        "gateway sent no audio after a late offer"
    );
}

#[test]
fn cancel_before_answer_gets_487() {
    let gw = gateway_with_env(&[("VOXGATE_SIP_RING_MS", "10000")]);
    let run = Sipp::new("cancel.xml", gw.sip_addr()).run().expect("sipp");
    run.assert_success();
    let m = metrics_when(&gw, "a cancelled call", |m| {
        m.with_labels("voxgate_calls_total", &[("outcome", "Cancelled")]) >= 1.0
    });
    assert_eq!(m.value("voxgate_calls_active"), 0.0);
    assert_eq!(completed(&m), 0.0, "a cancelled call was answered");
    // No media was ever set up towards the caller.
    assert_eq!(m.value("voxgate_rtp_packets_tx_total"), 0.0);
}

#[test]
fn gateway_hangs_up_a_call_without_rtp() {
    let gw = gateway_with_env(&[("VOXGATE_RTP_TIMEOUT_S", "2")]);
    let run = Sipp::new("bye_from_gateway.xml", gw.sip_addr())
        .timeout(Duration::from_secs(25))
        .run()
        .expect("sipp");
    run.assert_success();
    // sipp got a BYE and answered it; it must have come after the timeout,
    // not right after the answer.
    assert!(
        run.elapsed >= Duration::from_secs(2),
        "BYE came after {:?}",
        run.elapsed
    );
    let m = metrics_when(&gw, "no active call", |m| {
        m.value("voxgate_calls_active") == 0.0
    });
    assert_eq!(m.value("voxgate_calls_active"), 0.0);
}

#[test]
fn options_answers_200_with_allow() {
    let gw = Gateway::start().expect("start");
    let run = Sipp::new("options.xml", gw.sip_addr()).run().expect("sipp");
    run.assert_success();
    let ok = run
        .received()
        .into_iter()
        .find(|m| m.trim_start().starts_with("SIP/2.0 200"))
        .unwrap_or_else(|| panic!("no 200 in trace\n{}", run.report()));
    let allow = ok
        .lines()
        .find_map(|l| {
            l.split_once(':')
                .filter(|(n, _)| n.trim().eq_ignore_ascii_case("allow"))
                .map(|(_, v)| v.to_string())
        })
        .unwrap_or_else(|| panic!("200 has no Allow header:\n{ok}"));
    for method in ["INVITE", "ACK", "BYE", "CANCEL", "OPTIONS"] {
        assert!(
            allow.split(',').any(|m| m.trim() == method),
            "Allow lacks {method}: {allow}"
        );
    }
}

fn rejects_codec(pt: &str, rtpmap: &str) {
    let gw = Gateway::start().expect("start");
    let run = Sipp::new("reject_codec.xml", gw.sip_addr())
        .key("pt", pt)
        .key("rtpmap", rtpmap)
        .run()
        .expect("sipp");
    run.assert_success();
    let m = metrics_when(&gw, "a 488", |m| {
        m.with_labels("voxgate_sip_responses_total", &[("status", "488")]) >= 1.0
    });
    assert_eq!(m.value("voxgate_calls_active"), 0.0);
    assert_eq!(
        m.with_labels("voxgate_sip_responses_total", &[("status", "200")]),
        0.0
    );
}

#[test]
fn g729_only_offer_gets_488() {
    rejects_codec("18", "18 G729/8000");
}

#[test]
fn opus_only_offer_gets_488() {
    rejects_codec("111", "111 opus/48000/2");
}

#[test]
fn reinvite_holds_and_resumes() {
    let gw = Gateway::start().expect("start");
    let run = Sipp::new("hold.xml", gw.sip_addr()).run().expect("sipp");
    run.assert_success();
    let oks: Vec<String> = run
        .received()
        .into_iter()
        .filter(|m| m.trim_start().starts_with("SIP/2.0 200") && m.contains("INVITE"))
        .collect();
    let for_cseq = |n: u32| {
        oks.iter()
            .find(|m| {
                m.lines().any(|l| {
                    l.to_ascii_lowercase().starts_with("cseq:")
                        && l.contains(&format!(" {n} INVITE"))
                })
            })
            .cloned()
            .unwrap_or_else(|| panic!("no 200 for CSeq {n} INVITE\n{}", run.report()))
    };
    let hold = for_cseq(2);
    assert!(
        hold.contains("a=recvonly") || hold.contains("a=inactive"),
        "hold answer:\n{hold}"
    );
    let resume = for_cseq(3);
    for held in ["a=recvonly", "a=inactive", "a=sendonly"] {
        assert!(
            !resume.contains(held),
            "resume answer still held ({held}):\n{resume}"
        );
    }
    let m = metrics_when(&gw, "a completed call", |m| completed(m) >= 1.0);
    assert_eq!(completed(&m), 1.0);
}
