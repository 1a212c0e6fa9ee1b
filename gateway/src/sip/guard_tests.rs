//! One test per RFC 4475 torture message: guard first, then rsipstack's
//! parser on what the guard lets through. The bytes are fed directly; no
//! traffic is sent to the example addresses inside them.

use super::*;
use rsipstack::sip::prelude::*;
use rsipstack::sip::SipMessage;
use rsipstack::transaction::key::{TransactionKey, TransactionRole};

fn load(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/../../shared/testdata/rfc4475/{name}.dat",
        env!("CARGO_MANIFEST_DIR")
    );
    let path = if std::path::Path::new(&path).exists() {
        path
    } else {
        format!("/work/shared/testdata/rfc4475/{name}.dat")
    };
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn verdict(name: &str) -> Verdict {
    inspect(&load(name), &GuardConfig::default())
}

/// The guard passes it and rsipstack parses it into a request whose
/// transaction key can be built.
fn passes_request(name: &str) -> rsipstack::sip::Request {
    let Verdict::Pass(bytes) = verdict(name) else {
        panic!("{name}: {:?}", verdict(name))
    };
    match SipMessage::try_from(&bytes[..]) {
        Ok(SipMessage::Request(req)) => {
            req.call_id_header()
                .unwrap_or_else(|e| panic!("{name}: call-id {e}"));
            req.cseq_header()
                .and_then(|c| c.seq())
                .unwrap_or_else(|e| panic!("{name}: cseq {e}"));
            req.top_via_header()
                .and_then(|v| v.typed())
                .unwrap_or_else(|e| panic!("{name}: via {e}"));
            TransactionKey::from_request(&req, TransactionRole::Server)
                .unwrap_or_else(|e| panic!("{name}: transaction key {e}"));
            req
        }
        other => panic!("{name}: {other:?}"),
    }
}

fn passes_response(name: &str) -> rsipstack::sip::Response {
    let Verdict::Pass(bytes) = verdict(name) else {
        panic!("{name}: {:?}", verdict(name))
    };
    match SipMessage::try_from(&bytes[..]) {
        Ok(SipMessage::Response(r)) => r,
        other => panic!("{name}: {other:?}"),
    }
}

/// The guard answers it with `status`; the answer is itself a response
/// rsipstack can parse (when the request had the headers to echo).
fn rejects(name: &str, status: u16) -> Rejection {
    match verdict(name) {
        Verdict::Reject(r) => {
            assert_eq!(r.status, status, "{name}: {}", r.reason);
            assert!(!r.reason.is_empty());
            let text = String::from_utf8_lossy(&r.response).into_owned();
            assert!(text.starts_with(&format!("SIP/2.0 {status} ")), "{text}");
            assert!(text.ends_with("Content-Length: 0\r\n\r\n"));
            r
        }
        other => panic!("{name}: expected {status}, got {other:?}"),
    }
}

fn drops(name: &str) {
    assert!(
        matches!(verdict(name), Verdict::Drop(_)),
        "{name}: {:?}",
        verdict(name)
    );
}

// 3.1.1 valid messages

#[test]
fn wsinv_parses() {
    let req = passes_request("wsinv");
    assert_eq!(req.method, rsipstack::sip::Method::Invite);
    assert_eq!(
        req.call_id_header()
            .map(|c| c.value().to_string())
            .ok()
            .as_deref(),
        Some("wsinv.ndaksdj@192.0.2.1")
    );
    // rsipstack reads the tags only once the guard removed the LWS.
    assert_eq!(
        req.from_header()
            .and_then(|f| f.tag())
            .ok()
            .flatten()
            .map(|t| t.to_string())
            .as_deref(),
        Some("98asjd8")
    );
    assert_eq!(
        req.to_header()
            .and_then(|f| f.tag())
            .ok()
            .flatten()
            .map(|t| t.to_string())
            .as_deref(),
        Some("1918181833n")
    );
    assert_eq!(req.cseq_header().and_then(|c| c.seq()).ok(), Some(9));
    assert!(!req.body.is_empty());
}

#[test]
fn intmeth_unknown_method_gets_501() {
    // rsipstack cannot represent extension methods; the guard answers.
    let r = rejects("intmeth", 501);
    assert!(String::from_utf8_lossy(&r.response).contains("\r\nAllow: "));
}

#[test]
fn esc01_parses() {
    passes_request("esc01");
}

#[test]
fn escnull_parses() {
    passes_request("escnull");
}

#[test]
fn esc02_percent_in_method_is_an_unknown_method() {
    rejects("esc02", 501);
}

#[test]
fn lwsdisp_parses() {
    passes_request("lwsdisp");
}

#[test]
fn longreq_parses() {
    let req = passes_request("longreq");
    assert!(req.to_string().len() > 3000);
}

#[test]
fn dblreq_trailing_octets_are_ignored() {
    let Verdict::Pass(bytes) = verdict("dblreq") else {
        panic!()
    };
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.starts_with("REGISTER "));
    assert!(!text.contains("INVITE sip:joe"));
    passes_request("dblreq");
}

#[test]
fn semiuri_parses() {
    passes_request("semiuri");
}

#[test]
fn transports_parses() {
    passes_request("transports");
}

#[test]
fn mpart01_parses() {
    let req = passes_request("mpart01");
    assert!(!req.body.is_empty());
}

#[test]
fn unreason_parses() {
    let r = passes_response("unreason");
    assert_eq!(u16::from(r.status_code.clone()), 200);
}

#[test]
fn noreason_parses() {
    let r = passes_response("noreason");
    assert_eq!(u16::from(r.status_code.clone()), 100);
}

// 3.1.2 invalid messages

#[test]
fn badinv01_extraneous_separators() {
    rejects("badinv01", 400);
}

#[test]
fn clerr_content_length_too_large() {
    rejects("clerr", 400);
}

#[test]
fn ncl_negative_content_length() {
    rejects("ncl", 400);
}

#[test]
fn scalar02_overlarge_scalars() {
    rejects("scalar02", 400);
}

#[test]
fn scalarlg_response_is_dropped() {
    drops("scalarlg");
}

#[test]
fn quotbal_unterminated_quote() {
    rejects("quotbal", 400);
}

#[test]
fn ltgtruri_angle_brackets_in_request_uri() {
    rejects("ltgtruri", 400);
}

#[test]
fn lwsruri_lws_in_request_uri() {
    rejects("lwsruri", 400);
}

#[test]
fn lwsstart_multiple_sp_in_request_line() {
    rejects("lwsstart", 400);
}

#[test]
fn trws_trailing_sp_in_request_line() {
    rejects("trws", 400);
}

#[test]
fn escruri_escaped_headers_in_request_uri() {
    rejects("escruri", 400);
}

#[test]
fn baddate_non_gmt_date() {
    rejects("baddate", 400);
}

#[test]
fn regbadct_unbracketed_contact_with_headers() {
    rejects("regbadct", 400);
}

#[test]
fn badaspec_spaces_in_addr_spec() {
    rejects("badaspec", 400);
}

#[test]
fn baddn_unquoted_display_name() {
    rejects("baddn", 400);
}

#[test]
fn badvers_gets_505() {
    rejects("badvers", 505);
}

#[test]
fn mismatch01_cseq_method_differs() {
    rejects("mismatch01", 400);
}

#[test]
fn mismatch02_unknown_method_and_mismatch() {
    rejects("mismatch02", 400);
}

#[test]
fn bigcode_response_is_dropped() {
    drops("bigcode");
}

// 3.2 transaction layer

#[test]
fn badbranch_is_handled() {
    passes_request("badbranch");
}

// 3.3 application layer

#[test]
fn insuf_missing_headers() {
    let r = rejects("insuf", 400);
    assert!(r.reason.contains("Missing"), "{}", r.reason);
}

#[test]
fn unkscm_unknown_scheme_gets_416() {
    rejects("unkscm", 416);
}

#[test]
fn novelsc_im_scheme_gets_416() {
    rejects("novelsc", 416);
}

#[test]
fn unksm2_unknown_schemes_in_headers_are_accepted() {
    passes_request("unksm2");
}

#[test]
fn bext01_unknown_extension_gets_420_with_unsupported() {
    let r = rejects("bext01", 420);
    let text = String::from_utf8_lossy(&r.response).into_owned();
    assert!(
        text.contains("\r\nUnsupported: nothingSupportsThis, nothingSupportsThisEither\r\n"),
        "{text}"
    );
}

#[test]
fn invut_unknown_content_type_gets_415() {
    let r = rejects("invut", 415);
    assert!(String::from_utf8_lossy(&r.response).contains("\r\nAccept: application/sdp\r\n"));
}

#[test]
fn regaut01_parses_for_the_server_to_refuse() {
    // The server answers REGISTER with 405; the guard lets it through.
    passes_request("regaut01");
}

#[test]
fn multi01_duplicate_single_value_headers() {
    rejects("multi01", 400);
}

#[test]
fn mcl01_several_content_lengths() {
    rejects("mcl01", 400);
}

#[test]
fn bcast_response_with_two_vias_is_dropped() {
    drops("bcast");
}

#[test]
fn zeromf_is_answered_normally() {
    let req = passes_request("zeromf");
    assert_eq!(
        req.max_forwards_header()
            .map(|m| m.value().trim().to_string())
            .ok(),
        Some("0".into())
    );
}

#[test]
fn cparam01_parses() {
    passes_request("cparam01");
}

#[test]
fn cparam02_parses() {
    passes_request("cparam02");
}

#[test]
fn regescrt_parses() {
    passes_request("regescrt");
}

#[test]
fn sdp01_accept_without_sdp_gets_406() {
    rejects("sdp01", 406);
}

// 3.4 backward compatibility

#[test]
fn inv2543_without_from_tag_gets_400() {
    // rsipstack needs a From tag for its transaction key and would drop
    // the request unanswered; we answer 400 instead.
    let r = rejects("inv2543", 400);
    assert!(r.reason.contains("Tag"), "{}", r.reason);
}

#[test]
fn every_torture_file_has_a_test() {
    let dir = std::path::Path::new("/work/shared/testdata/rfc4475");
    let alt = format!(
        "{}/../../shared/testdata/rfc4475",
        env!("CARGO_MANIFEST_DIR")
    );
    let dir = if std::path::Path::new(&alt).exists() {
        std::path::PathBuf::from(alt)
    } else {
        dir.into()
    };
    let names: Vec<String> = std::fs::read_dir(&dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().into_string().ok())
                .filter_map(|n| n.strip_suffix(".dat").map(String::from))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(names.len(), 49);
    let me = include_str!("guard_tests.rs");
    for n in names {
        assert!(me.contains(&format!("\"{n}\"")), "no test for {n}");
    }
}

// Beyond RFC 4475

#[test]
fn oversized_datagram_is_dropped() {
    let mut big = load("longreq");
    big.extend(std::iter::repeat_n(b'x', 9000));
    assert_eq!(
        inspect(&big, &GuardConfig::default()),
        Verdict::Drop(DropReason::TooLarge)
    );
}

#[test]
fn keepalive_is_recognised() {
    assert_eq!(
        inspect(b"\r\n\r\n", &GuardConfig::default()),
        Verdict::Keepalive
    );
}

#[test]
fn garbage_is_dropped_without_panic() {
    for junk in [
        &b"\x00\x01\x02"[..],
        b"INVITE",
        b"\r\n\r\nSIP/2.0",
        b"SIP/2.0 200 OK\r\n\r\n",
        &[0xff; 40],
    ] {
        assert!(matches!(
            inspect(junk, &GuardConfig::default()),
            Verdict::Drop(_)
        ));
    }
}

#[test]
fn invalid_ack_is_dropped_not_answered() {
    let msg = b"ACK  sip:a@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bK1\r\n\r\n";
    assert!(matches!(
        inspect(msg, &GuardConfig::default()),
        Verdict::Drop(_)
    ));
}

#[test]
fn framing_uses_content_length() {
    let msg = b"OPTIONS sip:a@127.0.0.1 SIP/2.0\r\nContent-Length: 3\r\n\r\nabcOPTIONS";
    assert_eq!(frame(msg, 65535), Frame::Complete(msg.len() - 7));
    assert_eq!(frame(&msg[..20], 65535), Frame::Incomplete);
    assert_eq!(
        frame(b"OPTIONS sip:a SIP/2.0\r\nVia: x\r\n\r\n", 65535),
        Frame::Invalid
    );
    assert_eq!(frame(b"\r\n\r\n", 65535), Frame::Complete(4));
}

#[test]
fn parameter_lws_is_tightened_for_rsipstack() {
    assert_eq!(
        tighten("\"J \\\" R\" <sip:a@h> ; tag = 98", false),
        "\"J \\\" R\" <sip:a@h>;tag=98"
    );
    assert_eq!(
        tighten(
            "SIP  / 2.0  / TCP     spindle.example.com   ;  branch  =   z9",
            true
        ),
        "SIP/2.0/TCP spindle.example.com;branch=z9"
    );
    assert_eq!(
        tighten("\"a ; b\" <sip:x;lr>", false),
        "\"a ; b\" <sip:x;lr>"
    );
}
