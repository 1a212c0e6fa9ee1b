//! End-to-end SIP over loopback: raw SIP text over UDP (and TCP) to a
//! real `sip::Server` on 127.0.0.1:0. Nothing leaves 127.0.0.1.
#![allow(clippy::unwrap_used, clippy::too_many_arguments)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::mpsc;
use voxgate_gateway::call::{
    BoxFuture, CallEvent, CallHandle, CallHandler, CallRouter, IncomingCall, RouteDecision,
};
use voxgate_gateway::media::MediaConfig;
use voxgate_gateway::rtp::ports::PortAllocator;
use voxgate_gateway::sip::{RingingConfig, Server, SipServerConfig};

/// Records every event of every call it handles.
struct Recorder {
    events: mpsc::UnboundedSender<CallEvent>,
}

impl CallHandler for Recorder {
    fn handle(&self, mut call: CallHandle) -> BoxFuture<'static, ()> {
        let events = self.events.clone();
        Box::pin(async move {
            while let Some(ev) = call.next_event().await {
                let end = matches!(ev, CallEvent::Ended { .. });
                let _ = events.send(ev);
                if end {
                    break;
                }
            }
        })
    }
}

struct Router {
    handler: Arc<Recorder>,
}

impl CallRouter for Router {
    fn route(&self, call: &IncomingCall) -> RouteDecision {
        if call.did == "404" {
            RouteDecision::Reject {
                status: 404,
                reason: "No such number".into(),
            }
        } else {
            RouteDecision::Answer(self.handler.clone())
        }
    }
}

struct Harness {
    server: Server,
    sock: UdpSocket,
    events: mpsc::UnboundedReceiver<CallEvent>,
    rtp: UdpSocket,
}

/// Each server gets its own 100 media ports, as the tests run at once.
static NEXT_PORTS: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(42000);

async fn start(ringing: RingingConfig) -> Harness {
    let base = NEXT_PORTS.fetch_add(100, std::sync::atomic::Ordering::Relaxed);
    let ports = PortAllocator::new(base..=base + 99).expect("ports");
    let media = MediaConfig::new("127.0.0.1".parse().unwrap(), ports);
    let mut cfg = SipServerConfig::new("127.0.0.1:0".parse().unwrap(), media);
    cfg.ringing = ringing;
    cfg.drain_timeout = Duration::from_secs(2);
    let (tx, events) = mpsc::unbounded_channel();
    let router = Arc::new(Router {
        handler: Arc::new(Recorder { events: tx }),
    });
    let server = Server::start(cfg, router).await.expect("server starts");
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let rtp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    Harness {
        server,
        sock,
        events,
        rtp,
    }
}

impl Harness {
    fn me(&self) -> SocketAddr {
        self.sock.local_addr().unwrap()
    }

    async fn send(&self, text: &str) {
        self.sock
            .send_to(text.as_bytes(), self.server.local_addr())
            .await
            .unwrap();
    }

    /// The next SIP message we get, or panics after 3 s.
    async fn recv(&self) -> String {
        let mut buf = vec![0u8; 65535];
        let (n, _) = tokio::time::timeout(Duration::from_secs(3), self.sock.recv_from(&mut buf))
            .await
            .expect("a SIP message within 3 s")
            .unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    /// Responses until one with `status` (skipping others, e.g. 100).
    async fn expect(&self, status: u16) -> String {
        for _ in 0..10 {
            let m = self.recv().await;
            if m.starts_with(&format!("SIP/2.0 {status} ")) {
                return m;
            }
            // An in-dialog request from the server would be a bug here.
            assert!(m.starts_with("SIP/2.0 1"), "expected {status}, got:\n{m}");
        }
        panic!("no {status}");
    }

    fn offer(&self, codecs: &str) -> String {
        let port = self.rtp.local_addr().unwrap().port();
        format!(
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=audio {port} RTP/AVP {codecs}\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=sendrecv\r\n"
        )
    }

    fn request(
        &self,
        method: &str,
        uri: &str,
        call_id: &str,
        cseq: u32,
        to_tag: Option<&str>,
        extra: &str,
        body: &str,
    ) -> String {
        let me = self.me();
        let to = match to_tag {
            Some(t) => format!("<{uri}>;tag={t}"),
            None => format!("<{uri}>"),
        };
        let ct = if body.is_empty() {
            String::new()
        } else {
            "Content-Type: application/sdp\r\n".into()
        };
        // CANCEL shares the INVITE's branch (RFC 3261 §9.1).
        let branch_method = if method == "CANCEL" { "INVITE" } else { method };
        let branch = format!("z9hG4bK-{call_id}-{cseq}-{branch_method}");
        format!(
            "{method} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch={branch};rport\r\nMax-Forwards: 70\r\n\
             From: <sip:alice@127.0.0.1>;tag=alice1\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\n\
             Contact: <sip:alice@{me}>\r\n{extra}{ct}Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
    }
}

fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    msg.split("\r\n").find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn to_tag(msg: &str) -> String {
    let to = header(msg, "To").expect("To");
    to.split(";tag=")
        .nth(1)
        .expect("a To tag")
        .split(';')
        .next()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn options_gets_200_with_allow_and_accept() {
    let h = start(RingingConfig::default()).await;
    let uri = format!("sip:{}", h.server.local_addr());
    h.send(&h.request("OPTIONS", &uri, "opt1", 1, None, "", ""))
        .await;
    let r = h.expect(200).await;
    assert!(header(&r, "Allow").unwrap().contains("INVITE"), "{r}");
    assert_eq!(header(&r, "Accept"), Some("application/sdp"));
    assert!(
        header(&r, "Via").unwrap().contains("received=")
            || header(&r, "Via").unwrap().contains("rport="),
        "{r}"
    );
    h.server.shutdown().await;
}

#[tokio::test]
async fn invite_ack_bye() {
    let mut h = start(RingingConfig::default()).await;
    let uri = format!("sip:100@{}", h.server.local_addr());
    let offer = h.offer("0 101");
    h.send(&h.request("INVITE", &uri, "call1", 1, None, "", &offer))
        .await;
    assert!(h.recv().await.starts_with("SIP/2.0 100 "));
    assert!(h.recv().await.starts_with("SIP/2.0 180 "));
    let ok = h.expect(200).await;
    assert!(ok.contains("m=audio "), "{ok}");
    assert!(ok.contains("RTP/AVP 0"), "{ok}");
    assert!(header(&ok, "Contact").is_some());
    let tag = to_tag(&ok);
    assert_eq!(h.server.active_calls(), 1);
    h.send(&h.request("ACK", &uri, "call1", 1, Some(&tag), "", ""))
        .await;
    // The server streams RTP to the address of our offer once answered.
    let mut buf = [0u8; 2048];
    let (n, _) = tokio::time::timeout(Duration::from_secs(2), h.rtp.recv_from(&mut buf))
        .await
        .expect("RTP")
        .unwrap();
    assert!(n >= 12 && buf[0] >> 6 == 2, "an RTP packet");
    // INFO DTMF in the dialog.
    let info_body = "Signal=5\r\nDuration=160\r\n";
    let info = h
        .request("INFO", &uri, "call1", 2, Some(&tag), "", "")
        .replace(
            "Content-Length: 0\r\n\r\n",
            &format!(
                "Content-Type: application/dtmf-relay\r\nContent-Length: {}\r\n\r\n{info_body}",
                info_body.len()
            ),
        );
    h.send(&info).await;
    h.expect(200).await;
    let dtmf = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            if let Some(CallEvent::Dtmf(d)) = h.events.recv().await {
                return d.digit;
            }
        }
    })
    .await
    .expect("a DTMF event");
    assert_eq!(dtmf, '5');
    h.send(&h.request("BYE", &uri, "call1", 3, Some(&tag), "", ""))
        .await;
    h.expect(200).await;
    let ended = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            if let Some(CallEvent::Ended { .. }) = h.events.recv().await {
                return;
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the handler saw the end");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(h.server.active_calls(), 0);
    h.server.shutdown().await;
}

#[tokio::test]
async fn reinvite_hold_then_resume() {
    let mut h = start(RingingConfig {
        enabled: false,
        delay: Duration::ZERO,
    })
    .await;
    let uri = format!("sip:100@{}", h.server.local_addr());
    h.send(&h.request("INVITE", &uri, "hold1", 1, None, "", &h.offer("8 101")))
        .await;
    let ok = h.expect(200).await;
    assert!(ok.contains("RTP/AVP 8"), "PCMA chosen: {ok}");
    let tag = to_tag(&ok);
    h.send(&h.request("ACK", &uri, "hold1", 1, Some(&tag), "", ""))
        .await;
    let held = h.offer("8 101").replace("a=sendrecv", "a=sendonly");
    h.send(&h.request("INVITE", &uri, "hold1", 2, Some(&tag), "", &held))
        .await;
    let ok2 = h.expect(200).await;
    assert!(ok2.contains("a=recvonly"), "{ok2}");
    h.send(&h.request("ACK", &uri, "hold1", 2, Some(&tag), "", ""))
        .await;
    let got_hold = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            if let Some(CallEvent::Hold) = h.events.recv().await {
                return;
            }
        }
    })
    .await;
    assert!(got_hold.is_ok(), "Hold event");
    h.send(&h.request(
        "INVITE",
        &uri,
        "hold1",
        3,
        Some(&tag),
        "",
        &h.offer("0 101"),
    ))
    .await;
    let ok3 = h.expect(200).await;
    assert!(ok3.contains("RTP/AVP 0"), "codec change to PCMU: {ok3}");
    h.send(&h.request("ACK", &uri, "hold1", 3, Some(&tag), "", ""))
        .await;
    h.send(&h.request("BYE", &uri, "hold1", 4, Some(&tag), "", ""))
        .await;
    h.expect(200).await;
    h.server.shutdown().await;
}

#[tokio::test]
async fn late_offer_gets_our_offer_and_takes_the_answer_in_ack() {
    let h = start(RingingConfig {
        enabled: false,
        delay: Duration::ZERO,
    })
    .await;
    let uri = format!("sip:100@{}", h.server.local_addr());
    h.send(&h.request("INVITE", &uri, "late1", 1, None, "", ""))
        .await;
    let ok = h.expect(200).await;
    assert!(
        ok.contains("m=audio ") && header(&ok, "Content-Type") == Some("application/sdp"),
        "{ok}"
    );
    let tag = to_tag(&ok);
    let answer = h.offer("0 101");
    h.send(&h.request("ACK", &uri, "late1", 1, Some(&tag), "", &answer))
        .await;
    let mut buf = [0u8; 2048];
    let got = tokio::time::timeout(Duration::from_secs(2), h.rtp.recv_from(&mut buf)).await;
    assert!(got.is_ok(), "RTP flows after the ACK's answer");
    h.send(&h.request("BYE", &uri, "late1", 2, Some(&tag), "", ""))
        .await;
    h.expect(200).await;
    h.server.shutdown().await;
}

#[tokio::test]
async fn cancel_gets_487() {
    let h = start(RingingConfig {
        enabled: true,
        delay: Duration::from_secs(10),
    })
    .await;
    let uri = format!("sip:100@{}", h.server.local_addr());
    h.send(&h.request("INVITE", &uri, "cancel1", 1, None, "", &h.offer("0")))
        .await;
    h.expect(180).await;
    h.send(&h.request("CANCEL", &uri, "cancel1", 1, None, "", ""))
        .await;
    let mut statuses = Vec::new();
    for _ in 0..2 {
        let m = h.recv().await;
        statuses.push((
            m[8..11].to_string(),
            header(&m, "CSeq").unwrap_or_default().to_string(),
        ));
    }
    assert!(
        statuses.contains(&("200".into(), "1 CANCEL".into())),
        "{statuses:?}"
    );
    assert!(
        statuses.contains(&("487".into(), "1 INVITE".into())),
        "{statuses:?}"
    );
    h.server.shutdown().await;
}

#[tokio::test]
async fn unknown_dialog_gets_481() {
    let h = start(RingingConfig::default()).await;
    let uri = format!("sip:100@{}", h.server.local_addr());
    h.send(&h.request("BYE", &uri, "nodialog", 5, Some("nosuchtag"), "", ""))
        .await;
    h.expect(481).await;
    h.server.shutdown().await;
}

#[tokio::test]
async fn unsupported_methods_get_405_or_501() {
    let h = start(RingingConfig::default()).await;
    let uri = format!("sip:{}", h.server.local_addr());
    h.send(&h.request("REGISTER", &uri, "reg1", 1, None, "", ""))
        .await;
    let r = h.expect(405).await;
    assert!(header(&r, "Allow").is_some());
    h.send(&h.request("FROBNICATE", &uri, "frob1", 1, None, "", ""))
        .await;
    h.expect(501).await;
    h.server.shutdown().await;
}

#[tokio::test]
async fn max_forwards_zero_for_elsewhere_gets_483() {
    let h = start(RingingConfig::default()).await;
    // The URI names another host; nothing is sent there, it is only text.
    let req = h
        .request(
            "INVITE",
            "sip:100@elsewhere.invalid",
            "mf1",
            1,
            None,
            "",
            &h.offer("0"),
        )
        .replace("Max-Forwards: 70", "Max-Forwards: 0");
    h.send(&req).await;
    h.expect(483).await;
    h.server.shutdown().await;
}

#[tokio::test]
async fn malformed_request_gets_400_with_reason() {
    let h = start(RingingConfig::default()).await;
    let uri = format!("sip:100@{}", h.server.local_addr());
    let bad = h
        .request("OPTIONS", &uri, "bad1", 1, None, "", "")
        .replace("CSeq: 1 OPTIONS", "CSeq: 1 INVITE");
    h.send(&bad).await;
    let r = h.recv().await;
    assert!(
        r.starts_with("SIP/2.0 400 CSeq Method Does Not Match"),
        "{r}"
    );
    h.server.shutdown().await;
}

#[tokio::test]
async fn no_common_codec_gets_488_and_router_rejects_404() {
    let h = start(RingingConfig::default()).await;
    let uri = format!("sip:100@{}", h.server.local_addr());
    h.send(&h.request("INVITE", &uri, "g729", 1, None, "", &h.offer("18")))
        .await;
    h.expect(488).await;
    let uri404 = format!("sip:404@{}", h.server.local_addr());
    h.send(&h.request("INVITE", &uri404, "r404", 1, None, "", &h.offer("0")))
        .await;
    h.expect(404).await;
    h.server.shutdown().await;
}

#[tokio::test]
async fn draining_refuses_new_calls_with_503_and_ends_calls_with_bye() {
    let h = start(RingingConfig {
        enabled: false,
        delay: Duration::ZERO,
    })
    .await;
    let uri = format!("sip:100@{}", h.server.local_addr());
    h.send(&h.request("INVITE", &uri, "d1", 1, None, "", &h.offer("0")))
        .await;
    let ok = h.expect(200).await;
    let tag = to_tag(&ok);
    h.send(&h.request("ACK", &uri, "d1", 1, Some(&tag), "", ""))
        .await;
    h.server.begin_drain();
    h.send(&h.request("INVITE", &uri, "d2", 1, None, "", &h.offer("0")))
        .await;
    let r = h.expect(503).await;
    assert!(header(&r, "Retry-After").is_some(), "{r}");
    // After the 2 s drain timeout the live call gets a BYE.
    let bye = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let m = h.recv().await;
            if m.starts_with("BYE ") {
                return m;
            }
        }
    })
    .await
    .expect("a BYE after the drain timeout");
    assert!(header(&bye, "Call-ID") == Some("d1"), "{bye}");
    h.server.shutdown().await;
}

#[tokio::test]
async fn options_over_tcp_on_the_same_port() {
    let h = start(RingingConfig::default()).await;
    let mut tcp = TcpStream::connect(h.server.local_addr()).await.unwrap();
    let me = tcp.local_addr().unwrap();
    let req = format!(
        "OPTIONS sip:{} SIP/2.0\r\nVia: SIP/2.0/TCP {me};branch=z9hG4bK-tcp1\r\nMax-Forwards: 70\r\n\
         From: <sip:alice@127.0.0.1>;tag=t1\r\nTo: <sip:{}>\r\nCall-ID: tcp1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
        h.server.local_addr(),
        h.server.local_addr()
    );
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(3), tcp.read(&mut buf))
        .await
        .expect("TCP answer")
        .unwrap();
    let r = String::from_utf8_lossy(&buf[..n]);
    assert!(r.starts_with("SIP/2.0 200 "), "{r}");
    h.server.shutdown().await;
}
