//! Call transfers end to end over loopback: raw UDP sockets act as the
//! caller (transferee) and as the agent, against a real `sip::Server` on
//! 127.0.0.1:0 whose handler calls `transfer`. Nothing leaves 127.0.0.1.
#![allow(clippy::disallowed_methods)] // test code times itself with the real clock
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use voxgate_gateway::call::{
    BoxFuture, CallEvent, CallHandle, CallHandler, CallRouter, IncomingCall, RouteDecision,
    TransferError, TransferMode, TransferOutcome, TransferRequest,
};
use voxgate_gateway::media::MediaConfig;
use voxgate_gateway::metrics::{self, CallOutcome, OutcomeLabel};
use voxgate_gateway::rtp::ports::PortAllocator;
use voxgate_gateway::sip::{RingingConfig, Server, SipServerConfig};

type TransferResult = Result<TransferOutcome, TransferError>;

/// Transfers every call it gets with `request`, reports the result, then
/// stays on the call until it ends.
struct Transferrer {
    request: TransferRequest,
    results: mpsc::UnboundedSender<TransferResult>,
}

impl CallHandler for Transferrer {
    fn handle(&self, mut call: CallHandle) -> BoxFuture<'static, ()> {
        let (request, results) = (self.request.clone(), self.results.clone());
        Box::pin(async move {
            let result = call.transfer(request).await;
            let _ = results.send(result);
            while let Some(ev) = call.next_event().await {
                if matches!(ev, CallEvent::Ended { .. }) {
                    break;
                }
            }
        })
    }
}

struct Router(Arc<Transferrer>);

impl CallRouter for Router {
    fn route(&self, _call: &IncomingCall) -> RouteDecision {
        RouteDecision::Answer(self.0.clone())
    }
}

static NEXT_PORTS: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(47000);

/// A raw SIP peer on a UDP socket, with an RTP socket beside it.
struct Peer {
    sip: UdpSocket,
    rtp: UdpSocket,
}

impl Peer {
    async fn new() -> Self {
        Self {
            sip: UdpSocket::bind("127.0.0.1:0").await.unwrap(),
            rtp: UdpSocket::bind("127.0.0.1:0").await.unwrap(),
        }
    }

    fn addr(&self) -> SocketAddr {
        self.sip.local_addr().unwrap()
    }

    fn sdp(&self) -> String {
        let port = self.rtp.local_addr().unwrap().port();
        format!(
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=audio {port} RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n"
        )
    }

    async fn recv_within(&self, wait: Duration) -> Option<(String, SocketAddr)> {
        let mut buf = vec![0u8; 65535];
        let (n, from) = tokio::time::timeout(wait, self.sip.recv_from(&mut buf))
            .await
            .ok()?
            .ok()?;
        Some((String::from_utf8_lossy(&buf[..n]).into_owned(), from))
    }

    /// The next message that starts with `start` (skipping others: 1xx,
    /// retransmissions), with its source, or panics after 5 s.
    async fn expect(&self, start: &str) -> (String, SocketAddr) {
        let until = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let left = until.saturating_duration_since(tokio::time::Instant::now());
            let Some((m, from)) = self.recv_within(left).await else {
                panic!("no {start:?} within 5 s")
            };
            if m.starts_with(start) {
                return (m, from);
            }
        }
    }

    /// Whether a message starting with `start` arrives within `wait`.
    async fn gets_within(&self, start: &str, wait: Duration) -> bool {
        let until = tokio::time::Instant::now() + wait;
        while let Some((m, _)) = self
            .recv_within(until.saturating_duration_since(tokio::time::Instant::now()))
            .await
        {
            if m.starts_with(start) {
                return true;
            }
        }
        false
    }

    async fn send(&self, text: &str, to: SocketAddr) {
        self.sip.send_to(text.as_bytes(), to).await.unwrap();
    }

    /// Answers `req` with `status`; `to_tag` is added to a To without one.
    async fn respond(
        &self,
        req: &str,
        from: SocketAddr,
        status: u16,
        to_tag: &str,
        extra: &str,
        body: &str,
    ) {
        let mut out = format!("SIP/2.0 {status} Whatever\r\n");
        for line in req.split("\r\n").skip(1).take_while(|l| !l.is_empty()) {
            let name = line
                .split(':')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase();
            if name == "to" && !line.contains("tag=") {
                out.push_str(&format!("{line};tag={to_tag}\r\n"));
            } else if ["via", "from", "to", "call-id", "cseq"].contains(&name.as_str()) {
                out.push_str(line);
                out.push_str("\r\n");
            }
        }
        let ct = if body.is_empty() {
            String::new()
        } else {
            "Content-Type: application/sdp\r\n".into()
        };
        out.push_str(&format!(
            "{extra}{ct}Content-Length: {}\r\n\r\n{body}",
            body.len()
        ));
        self.send(&out, from).await;
    }
}

fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    msg.split("\r\n")
        .take_while(|l| !l.is_empty())
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
}

fn sdp_port(msg: &str) -> u16 {
    let line = msg
        .split("\r\n")
        .find(|l| l.starts_with("m=audio "))
        .expect("an m=audio line");
    line.split(' ').nth(1).unwrap().parse().unwrap()
}

/// A server whose handler transfers with `request`, and a caller in an
/// answered call with it.
struct Call {
    server: Server,
    caller: Peer,
    results: mpsc::UnboundedReceiver<TransferResult>,
    tag: String,
    call_id: String,
    cseq: u32,
    /// Our RTP goes here: the server's port for the caller leg.
    media_port: u16,
}

async fn answered_call(request: TransferRequest) -> Call {
    let base = NEXT_PORTS.fetch_add(100, std::sync::atomic::Ordering::Relaxed);
    let ports = PortAllocator::new(base..=base + 99).expect("ports");
    let mut cfg = SipServerConfig::new(
        "127.0.0.1:0".parse().unwrap(),
        MediaConfig::new("127.0.0.1".parse().unwrap(), ports),
    );
    cfg.ringing = RingingConfig {
        enabled: false,
        delay: Duration::ZERO,
    };
    cfg.drain_timeout = Duration::from_secs(2);
    let (tx, results) = mpsc::unbounded_channel();
    let server = Server::start(
        cfg,
        Arc::new(Router(Arc::new(Transferrer {
            request,
            results: tx,
        }))),
    )
    .await
    .unwrap();
    let caller = Peer::new().await;
    let call_id = format!("xfer-{base}");
    let mut call = Call {
        server,
        caller,
        results,
        tag: String::new(),
        call_id,
        cseq: 1,
        media_port: 0,
    };
    let sdp = call.caller.sdp();
    call.send_request("INVITE", "", "application/sdp", &sdp)
        .await;
    let (ok, _) = call.caller.expect("SIP/2.0 200 ").await;
    call.tag = header(&ok, "To")
        .unwrap()
        .split(";tag=")
        .nth(1)
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    call.media_port = sdp_port(&ok);
    call.send_request("ACK", "", "", "").await;
    call
}

impl Call {
    fn server_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// A request from the caller in its dialog (CSeq counted here; ACK
    /// reuses the INVITE's).
    async fn send_request(&mut self, method: &str, extra: &str, content_type: &str, body: &str) {
        if method != "ACK" && method != "INVITE" {
            self.cseq += 1;
        }
        let (me, uri) = (
            self.caller.addr(),
            format!("sip:100@{}", self.server_addr()),
        );
        let to = if self.tag.is_empty() {
            format!("<{uri}>")
        } else {
            format!("<{uri}>;tag={}", self.tag)
        };
        let ct = if body.is_empty() {
            String::new()
        } else {
            format!("Content-Type: {content_type}\r\n")
        };
        let text = format!(
            "{method} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-{cid}-{seq}-{method};rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:alice@127.0.0.1>;tag=alice1\r\nTo: {to}\r\nCall-ID: {cid}\r\n\
             CSeq: {seq} {method}\r\nContact: <sip:alice@{me}>\r\n{extra}{ct}Content-Length: {len}\r\n\r\n{body}",
            cid = self.call_id,
            seq = self.cseq,
            len = body.len(),
        );
        self.caller.send(&text, self.server_addr()).await;
    }

    async fn notify(&mut self, frag: &str, state: &str) {
        let extra = format!("Event: refer\r\nSubscription-State: {state}\r\n");
        self.send_request("NOTIFY", &extra, "message/sipfrag", frag)
            .await;
        let (r, _) = self.caller.expect("SIP/2.0 ").await;
        assert!(r.starts_with("SIP/2.0 200 "), "NOTIFY answered 200: {r}");
        assert!(header(&r, "CSeq").unwrap().ends_with("NOTIFY"), "{r}");
    }

    async fn result(&mut self) -> TransferResult {
        tokio::time::timeout(Duration::from_secs(6), self.results.recv())
            .await
            .expect("a transfer result")
            .unwrap()
    }

    /// The caller's leg is still up: an in-dialog OPTIONS gets 200 and no
    /// BYE came.
    async fn assert_still_up(&mut self) {
        self.send_request("OPTIONS", "", "", "").await;
        let (r, _) = self.caller.expect("SIP/2.0 ").await;
        assert!(r.starts_with("SIP/2.0 200 "), "the call is still up: {r}");
        assert_eq!(self.server.active_calls(), 1);
    }

    async fn hang_up(mut self) {
        self.send_request("BYE", "", "", "").await;
        self.caller.expect("SIP/2.0 200 ").await;
        self.server.shutdown().await;
    }
}

fn request(mode: TransferMode, target: &str, timeout: Duration) -> TransferRequest {
    TransferRequest {
        mode,
        target: target.into(),
        headers: vec![("X-Voxgate-Intent".into(), "billing".into())],
        timeout,
    }
}

fn transferred_count() -> u64 {
    metrics::global()
        .calls_total
        .get_or_create(&OutcomeLabel {
            outcome: CallOutcome::Transferred,
        })
        .get()
}

#[tokio::test]
async fn blind_transfer_to_a_tel_uri_succeeds() {
    let mut call = answered_call(request(
        TransferMode::Blind,
        "tel:+33123456789",
        Duration::from_secs(5),
    ))
    .await;
    let (refer, from) = call.caller.expect("REFER ").await;
    assert!(
        refer.starts_with(&format!("REFER sip:alice@{} SIP/2.0", call.caller.addr())),
        "{refer}"
    );
    assert_eq!(
        header(&refer, "Refer-To"),
        Some("<tel:+33123456789>"),
        "{refer}"
    );
    assert!(
        header(&refer, "Referred-By")
            .unwrap()
            .contains("sip:voxgate@"),
        "{refer}"
    );
    assert!(
        header(&refer, "X-Voxgate-Call-Id").is_some_and(|v| v.len() >= 32),
        "{refer}"
    );
    assert_eq!(header(&refer, "X-Voxgate-Intent"), Some("billing"));
    assert_eq!(header(&refer, "Call-ID"), Some(call.call_id.as_str()));
    call.caller.respond(&refer, from, 202, "x", "", "").await;
    call.notify("SIP/2.0 100 Trying\r\n", "active;expires=60")
        .await;
    call.notify("SIP/2.0 200 OK\r\n", "terminated;reason=noresource")
        .await;
    let (bye, from) = call.caller.expect("BYE ").await;
    call.caller.respond(&bye, from, 200, "x", "", "").await;
    assert_eq!(call.result().await, Ok(TransferOutcome::Referred));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(call.server.active_calls(), 0);
    assert!(transferred_count() >= 1);
    call.server.shutdown().await;
}

#[tokio::test]
async fn blind_transfer_refused_with_603() {
    let mut call = answered_call(request(
        TransferMode::Blind,
        "sip:queue@127.0.0.1:5999",
        Duration::from_secs(5),
    ))
    .await;
    let (refer, from) = call.caller.expect("REFER ").await;
    assert_eq!(
        header(&refer, "Refer-To"),
        Some("<sip:queue@127.0.0.1:5999>")
    );
    call.caller.respond(&refer, from, 603, "x", "", "").await;
    assert_eq!(
        call.result().await,
        Err(TransferError::Rejected { status: 603 })
    );
    call.assert_still_up().await;
    call.hang_up().await;
}

#[tokio::test]
async fn blind_transfer_with_busy_sipfrag_keeps_the_call() {
    let mut call = answered_call(request(
        TransferMode::Blind,
        "tel:+33123456789",
        Duration::from_secs(5),
    ))
    .await;
    let (refer, from) = call.caller.expect("REFER ").await;
    call.caller.respond(&refer, from, 202, "x", "", "").await;
    call.notify("SIP/2.0 100 Trying", "active").await;
    call.notify("SIP/2.0 486 Busy Here\r\n", "terminated").await;
    assert_eq!(
        call.result().await,
        Err(TransferError::Rejected { status: 486 })
    );
    // A garbage sipfrag afterwards is refused, not fatal.
    call.send_request(
        "NOTIFY",
        "Event: refer\r\nSubscription-State: terminated\r\n",
        "message/sipfrag",
        "hello",
    )
    .await;
    let (r, _) = call.caller.expect("SIP/2.0 ").await;
    assert!(r.starts_with("SIP/2.0 400 "), "{r}");
    call.assert_still_up().await;
    call.hang_up().await;
}

#[tokio::test]
async fn blind_transfer_without_notify_times_out() {
    let mut call = answered_call(request(
        TransferMode::Blind,
        "tel:+33123456789",
        Duration::from_millis(800),
    ))
    .await;
    let (refer, from) = call.caller.expect("REFER ").await;
    call.caller.respond(&refer, from, 202, "x", "", "").await;
    assert_eq!(call.result().await, Err(TransferError::NoNotify));
    call.assert_still_up().await;
    call.hang_up().await;
}

/// A loud μ-law RTP packet (full-scale square wave).
fn rtp_packet(seq: u16) -> Vec<u8> {
    let mut p = vec![0x80, 0, (seq >> 8) as u8, seq as u8];
    p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend_from_slice(&0x1234_5678u32.to_be_bytes());
    p.extend((0..160).map(|i| if (i / 10) % 2 == 0 { 0x00 } else { 0x80 }));
    p
}

/// Sends loud RTP from `from` to `to` while waiting for `on` to receive a
/// loud packet (most payload bytes far from μ-law silence).
async fn loud_audio_flows(from: &UdpSocket, to: SocketAddr, on: &UdpSocket) -> bool {
    let mut buf = [0u8; 2048];
    for seq in 0..150u16 {
        from.send_to(&rtp_packet(seq), to).await.unwrap();
        let until = tokio::time::Instant::now() + Duration::from_millis(20);
        while let Ok(Ok((n, _))) = tokio::time::timeout_at(until, on.recv_from(&mut buf)).await {
            let loud = buf[12..n].iter().filter(|b| (**b & 0x7f) < 0x40).count();
            if n > 12 && loud > 100 {
                return true;
            }
        }
    }
    false
}

/// The INVITE the agent gets, checked, with its source.
async fn agent_invite(agent: &Peer) -> (String, SocketAddr) {
    let (invite, from) = agent.expect("INVITE ").await;
    assert!(
        invite.starts_with(&format!("INVITE sip:agent@{} SIP/2.0", agent.addr())),
        "{invite}"
    );
    assert!(
        header(&invite, "X-Voxgate-Call-Id").is_some_and(|v| v.len() >= 32),
        "{invite}"
    );
    assert_eq!(
        header(&invite, "X-Voxgate-Intent"),
        Some("billing"),
        "{invite}"
    );
    assert!(
        header(&invite, "From").unwrap().contains("sip:alice@"),
        "caller id in From: {invite}"
    );
    assert!(invite.contains("m=audio "), "{invite}");
    (invite, from)
}

#[tokio::test]
async fn bridged_transfer_relays_audio_and_caller_bye_reaches_the_agent() {
    let agent = Peer::new().await;
    let target = format!("sip:agent@{}", agent.addr());
    let mut call = answered_call(request(
        TransferMode::Bridged,
        &target,
        Duration::from_secs(5),
    ))
    .await;
    let (invite, from) = agent_invite(&agent).await;
    let offer_port = sdp_port(&invite);
    agent.respond(&invite, from, 180, "ag1", "", "").await;
    let contact = format!("Contact: <sip:agent@{}>\r\n", agent.addr());
    agent
        .respond(&invite, from, 200, "ag1", &contact, &agent.sdp())
        .await;
    let (ack, _) = agent.expect("ACK ").await;
    assert!(header(&ack, "To").unwrap().contains("tag=ag1"), "{ack}");
    // Caller → agent and agent → caller, decoded and re-encoded.
    let to_caller_leg = SocketAddr::from(([127, 0, 0, 1], call.media_port));
    let to_agent_leg = SocketAddr::from(([127, 0, 0, 1], offer_port));
    assert!(
        loud_audio_flows(&call.caller.rtp, to_caller_leg, &agent.rtp).await,
        "caller audio reaches the agent"
    );
    assert!(
        loud_audio_flows(&agent.rtp, to_agent_leg, &call.caller.rtp).await,
        "agent audio reaches the caller"
    );
    assert_eq!(call.server.active_calls(), 1, "a bridge is an active call");
    // The transfer resolves only when the bridge ends.
    assert!(call.results.try_recv().is_err());
    call.send_request("BYE", "", "", "").await;
    call.caller.expect("SIP/2.0 200 ").await;
    let (bye, from) = agent.expect("BYE ").await;
    assert!(header(&bye, "To").unwrap().contains("tag=ag1"), "{bye}");
    agent.respond(&bye, from, 200, "ag1", "", "").await;
    match call.result().await {
        Ok(TransferOutcome::Bridged {
            agent_answered_after,
        }) => assert!(agent_answered_after < Duration::from_secs(5)),
        other => panic!("expected Bridged, got {other:?}"),
    }
    assert!(transferred_count() >= 1);
    call.server.shutdown().await;
}

#[tokio::test]
async fn bridged_transfer_agent_bye_hangs_up_the_caller() {
    let agent = Peer::new().await;
    let target = format!("sip:agent@{}", agent.addr());
    let mut call = answered_call(request(
        TransferMode::Bridged,
        &target,
        Duration::from_secs(5),
    ))
    .await;
    let (invite, from) = agent_invite(&agent).await;
    let contact = format!("Contact: <sip:agent@{}>\r\n", agent.addr());
    agent
        .respond(&invite, from, 200, "ag2", &contact, &agent.sdp())
        .await;
    agent.expect("ACK ").await;
    // The agent hangs up: BYE in its dialog, to the server.
    let bye = format!(
        "BYE sip:voxgate@{srv} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-agbye;rport\r\nMax-Forwards: 70\r\n\
         From: {to};tag=ag2\r\nTo: {from_h}\r\nCall-ID: {cid}\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n",
        srv = call.server_addr(),
        me = agent.addr(),
        to = header(&invite, "To").unwrap(),
        from_h = header(&invite, "From").unwrap(),
        cid = header(&invite, "Call-ID").unwrap(),
    );
    agent.send(&bye, call.server_addr()).await;
    agent.expect("SIP/2.0 200 ").await;
    let (caller_bye, from) = call.caller.expect("BYE ").await;
    call.caller
        .respond(&caller_bye, from, 200, "x", "", "")
        .await;
    assert!(matches!(
        call.result().await,
        Ok(TransferOutcome::Bridged { .. })
    ));
    call.server.shutdown().await;
}

#[tokio::test]
async fn bridged_transfer_agent_busy_keeps_the_caller() {
    let agent = Peer::new().await;
    let target = format!("sip:agent@{}", agent.addr());
    let mut call = answered_call(request(
        TransferMode::Bridged,
        &target,
        Duration::from_secs(5),
    ))
    .await;
    let (invite, from) = agent_invite(&agent).await;
    agent.respond(&invite, from, 486, "ag3", "", "").await;
    agent.expect("ACK ").await;
    assert_eq!(
        call.result().await,
        Err(TransferError::Rejected { status: 486 })
    );
    call.assert_still_up().await;
    call.hang_up().await;
}

#[tokio::test]
async fn bridged_transfer_no_answer_sends_cancel() {
    let agent = Peer::new().await;
    let target = format!("sip:agent@{}", agent.addr());
    let mut call = answered_call(request(
        TransferMode::Bridged,
        &target,
        Duration::from_secs(1),
    ))
    .await;
    let (invite, from) = agent_invite(&agent).await;
    agent.respond(&invite, from, 180, "ag4", "", "").await;
    let (cancel, cfrom) = agent.expect("CANCEL ").await;
    assert_eq!(
        header(&cancel, "Via"),
        header(&invite, "Via"),
        "CANCEL shares the INVITE's branch"
    );
    assert!(header(&cancel, "CSeq").unwrap().ends_with("CANCEL"));
    agent.respond(&cancel, cfrom, 200, "ag4", "", "").await;
    agent.respond(&invite, from, 487, "ag4", "", "").await;
    agent.expect("ACK ").await;
    assert_eq!(call.result().await, Err(TransferError::NoAnswer));
    call.assert_still_up().await;
    call.hang_up().await;
}

#[tokio::test]
async fn caller_hangs_up_while_the_agent_rings() {
    let agent = Peer::new().await;
    let target = format!("sip:agent@{}", agent.addr());
    let mut call = answered_call(request(
        TransferMode::Bridged,
        &target,
        Duration::from_secs(10),
    ))
    .await;
    let (invite, from) = agent_invite(&agent).await;
    agent.respond(&invite, from, 180, "ag5", "", "").await;
    // Let the 180 reach the server before the caller leaves.
    tokio::time::sleep(Duration::from_millis(100)).await;
    call.send_request("BYE", "", "", "").await;
    call.caller.expect("SIP/2.0 200 ").await;
    let (cancel, cfrom) = agent.expect("CANCEL ").await;
    agent.respond(&cancel, cfrom, 200, "ag5", "", "").await;
    agent.respond(&invite, from, 487, "ag5", "", "").await;
    assert_eq!(call.result().await, Err(TransferError::CallGone));
    assert!(agent.gets_within("ACK ", Duration::from_secs(2)).await);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        call.server.active_calls(),
        0,
        "the call task ended once the agent leg was cleaned up"
    );
    call.server.shutdown().await;
}

#[tokio::test]
async fn bridged_transfer_to_tel_is_invalid() {
    let mut call = answered_call(request(
        TransferMode::Bridged,
        "tel:+33123456789",
        Duration::from_secs(1),
    ))
    .await;
    assert!(matches!(
        call.result().await,
        Err(TransferError::InvalidTarget(_))
    ));
    call.assert_still_up().await;
    call.hang_up().await;
}

#[tokio::test]
async fn drain_ends_a_bridge_with_bye_on_both_legs() {
    let agent = Peer::new().await;
    let target = format!("sip:agent@{}", agent.addr());
    let mut call = answered_call(request(
        TransferMode::Bridged,
        &target,
        Duration::from_secs(5),
    ))
    .await;
    let (invite, from) = agent_invite(&agent).await;
    let contact = format!("Contact: <sip:agent@{}>\r\n", agent.addr());
    agent
        .respond(&invite, from, 200, "ag6", &contact, &agent.sdp())
        .await;
    agent.expect("ACK ").await;
    call.server.begin_drain();
    // The bridged call keeps the server busy until the 2 s drain timeout.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(call.server.active_calls(), 1);
    let (bye, bfrom) = call.caller.expect("BYE ").await;
    call.caller.respond(&bye, bfrom, 200, "x", "", "").await;
    let (abye, afrom) = agent.expect("BYE ").await;
    agent.respond(&abye, afrom, 200, "ag6", "", "").await;
    assert!(matches!(
        call.result().await,
        Ok(TransferOutcome::Bridged { .. })
    ));
    call.server.shutdown().await;
}
