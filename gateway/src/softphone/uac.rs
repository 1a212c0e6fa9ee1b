//! The softphone driver: one rsipstack endpoint and one media session per
//! call. See the module docs of [`crate::softphone`] for the call flow.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use rsipstack::dialog::authenticate::Credential;
use rsipstack::dialog::dialog::{Dialog, DialogState, DialogStateReceiver, TerminatedReason};
use rsipstack::dialog::dialog_layer::DialogLayer;
use rsipstack::dialog::invitation::InviteOption;
use rsipstack::dialog::invite_dialog::InviteDialog;
use rsipstack::sip::prelude::HeadersExt;
use rsipstack::sip::{Header, Method, Response, SipMessage, StatusCode, StatusCodeKind};
use rsipstack::transaction::endpoint::MessageInspector;
use rsipstack::transport::udp::UdpConnection;
use rsipstack::transport::{SipAddr, TransportLayer};
use rsipstack::EndpointBuilder;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::log::{is_silent, ResponseLog};
use super::options::{
    validate_digits, CallOptions, CallSummary, Disposition, HangupBy, ReceivedDigit, RtpSummary,
};
use super::SoftphoneError;
use crate::clock;
use crate::dtmf::{DtmfEvent, DtmfSource};
use crate::media::{
    DtmfMode, MediaConfig, MediaEvent, MediaParams, MediaSession, MEDIA_SAMPLE_RATE,
};
use crate::rtp::PortAllocator;
use crate::sdp::{LocalMedia, NegotiatedMedia, SdpSession};

/// RTP ports the softphone leases from when the caller gives no allocator:
/// far from the gateway's default 10000-20000.
const SOFTPHONE_RTP_PORTS: std::ops::RangeInclusive<u16> = 40000..=49999;
/// How many port pairs to try when one is taken by another process.
const BIND_ATTEMPTS: usize = 16;
/// How long to wait for the 487 after a CANCEL before giving up.
const CANCEL_GRACE: Duration = Duration::from_secs(2);
/// How long to wait for a BYE's answer.
const BYE_GRACE: Duration = Duration::from_secs(3);

fn port_allocator() -> Result<Arc<PortAllocator>, SoftphoneError> {
    static PORTS: OnceLock<Arc<PortAllocator>> = OnceLock::new();
    if let Some(p) = PORTS.get() {
        return Ok(p.clone());
    }
    let p = PortAllocator::new(SOFTPHONE_RTP_PORTS).map_err(crate::media::MediaError::from)?;
    Ok(PORTS.get_or_init(|| p).clone())
}

/// Records the status of every response to an INVITE, as it arrives.
struct ResponseRecorder(Arc<Mutex<ResponseLog>>);

impl MessageInspector for ResponseRecorder {
    fn before_send(&self, msg: SipMessage, _dest: Option<&SipAddr>) -> SipMessage {
        msg
    }

    fn after_received(&self, msg: SipMessage, _from: Option<&SipAddr>) -> SipMessage {
        if let SipMessage::Response(resp) = &msg {
            if let Ok(cseq) = resp.cseq_header() {
                if let (Ok(Method::Invite), Ok(seq)) = (cseq.method(), cseq.seq()) {
                    self.0
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .handle_response(seq, resp.status_code.code());
                }
            }
        }
        msg
    }
}

/// Events the dialog-state task passes to the call.
#[derive(Debug)]
enum DialogNote {
    InfoDtmf(DtmfEvent),
    Terminated(TerminatedReason),
}

/// Places one call and reports what happened. Rejected and unanswered calls
/// return `Ok` with the matching [`Disposition`]; `Err` means the call
/// could not be made or its media could not run.
pub async fn run(opts: CallOptions) -> Result<CallSummary, SoftphoneError> {
    let digits = validate_digits(&opts.dtmf)?;
    let target = parse_uri(&opts.target)?;
    let local_ip = opts.local_ip.unwrap_or_else(|| local_ip_for(&target));

    let cancel = CancellationToken::new();
    let result = run_call(&opts, digits, target, local_ip, cancel.clone()).await;
    cancel.cancel();
    result
}

async fn run_call(
    opts: &CallOptions,
    digits: String,
    target: rsipstack::sip::Uri,
    local_ip: IpAddr,
    cancel: CancellationToken,
) -> Result<CallSummary, SoftphoneError> {
    // SIP: our own UDP socket, so concurrent calls share nothing.
    let transport = TransportLayer::new(cancel.child_token());
    let udp = UdpConnection::create_connection(
        SocketAddr::new(local_ip, 0),
        None,
        Some(cancel.child_token()),
    )
    .await?;
    let local_sip = udp.get_addr().addr.clone();
    transport.add_transport(udp.into());
    let responses = Arc::new(Mutex::new(ResponseLog::default()));
    let endpoint = EndpointBuilder::new()
        .with_user_agent(concat!("voxgate-softphone/", env!("CARGO_PKG_VERSION")))
        .with_cancel_token(cancel.child_token())
        .with_transport_layer(transport)
        .with_inspector(Box::new(ResponseRecorder(responses.clone())))
        .with_option(rsipstack::transaction::endpoint::EndpointOption {
            callid_suffix: Some(local_ip.to_string()),
            ..Default::default()
        })
        .build();
    let mut incoming = endpoint.incoming_transactions()?;
    let dialog_layer = Arc::new(DialogLayer::new(endpoint.inner.clone()));
    let (state_tx, state_rx) = dialog_layer.new_dialog_state_channel();
    let endpoint_inner = endpoint.inner.clone();
    tokio::spawn(async move {
        let _ = endpoint_inner.serve().await;
    });
    let layer = dialog_layer.clone();
    tokio::spawn(async move {
        while let Some(mut tx) = incoming.recv().await {
            match layer.match_dialog(&tx) {
                Some(Dialog::Invite(mut d)) => {
                    tokio::spawn(async move {
                        let _ = d.handle(&mut tx).await;
                    });
                }
                _ if tx.original.method == Method::Ack => {}
                _ => {
                    let _ = tx.reply(StatusCode::CallTransactionDoesNotExist).await;
                }
            }
        }
    });
    let (note_tx, mut notes) = mpsc::unbounded_channel();
    tokio::spawn(watch_dialog(state_rx, note_tx));

    // Media first: its port goes into the offer.
    let media = bind_media(local_ip, opts).await?;
    let local_media = LocalMedia {
        address: local_ip,
        port: media.local_port(),
        codecs: vec![opts.codec],
        telephone_event: true,
        ptime_ms: 20,
    };
    let mut sdp = SdpSession::with_random_id();
    let offer = sdp.offer(&local_media);

    let from = match &opts.from {
        Some(f) => parse_uri(f)?,
        None => parse_uri(&format!("sip:voxgate@{local_ip}"))?,
    };
    let contact = parse_uri(&format!("sip:voxgate@{local_sip}"))?;
    let invite = InviteOption {
        caller: from,
        callee: target,
        contact,
        content_type: Some("application/sdp".to_owned()),
        offer: Some(offer.into_bytes()),
        credential: opts.credentials.as_ref().map(|c| Credential {
            username: c.username.clone(),
            password: c.password.clone(),
            realm: None,
            auth_username: None,
        }),
        ..Default::default()
    };

    let started = clock::now();
    let (dialog, handle) = dialog_layer.do_invite_async(invite, state_tx)?;
    let call_id = dialog.id().call_id.clone();
    let final_response = wait_final(&dialog, handle, opts.timeout).await;
    let setup_ms = millis(clock::now().saturating_duration_since(started));

    let mut summary = CallSummary {
        target: opts.target.clone(),
        call_id,
        responses: Vec::new(),
        disposition: Disposition::Timeout,
        codec: None,
        setup_ms,
        duration_ms: 0,
        hangup_by: None,
        rtp: RtpSummary::default(),
        dtmf_sent: String::new(),
        dtmf_mode: opts.dtmf_mode,
        dtmf_received: Vec::new(),
        recorded: None,
        received_audio: None,
    };
    let answer = match final_response {
        Some(resp) if resp.status_code.kind() == StatusCodeKind::Successful => resp,
        Some(resp) => {
            summary.disposition = Disposition::Rejected {
                code: resp.status_code.code(),
                reason: resp
                    .wire_reason
                    .clone()
                    .unwrap_or_else(|| resp.status_code.text().to_owned()),
            };
            summary.responses = responses_of(&responses);
            return Ok(summary);
        }
        None => {
            summary.responses = responses_of(&responses);
            return Ok(summary);
        }
    };
    summary.disposition = Disposition::Answered;

    let negotiated = match negotiate(&mut sdp, &answer) {
        Ok(n) => n,
        Err(e) => {
            bye(&dialog).await;
            return Err(e);
        }
    };
    summary.codec = Some(negotiated.codec.name());
    let answered_at = clock::now();
    let outcome = talk(opts, &digits, &dialog, &media, &negotiated, &mut notes).await;
    summary.duration_ms = millis(clock::now().saturating_duration_since(answered_at));

    let stats = media.stats();
    media.close();
    let talked = outcome?;
    let (audio, non_silent) = talked.recorder.await.unwrap_or_default();
    summary.hangup_by = Some(talked.hangup_by);
    summary.dtmf_sent = talked.sent;
    summary.dtmf_received = talked.received;
    summary.rtp = RtpSummary {
        packets_sent: stats.packets_tx,
        packets_received: stats.packets_rx,
        packets_lost: stats.packets_lost,
        jitter_ms: stats.jitter_ms,
        non_silent_frames_received: non_silent,
    };
    if let Some(path) = &opts.record {
        write_recording(path.clone(), &audio).await?;
        summary.recorded = Some(path.clone());
    }
    if opts.keep_audio {
        summary.received_audio = Some(audio);
    }
    summary.responses = responses_of(&responses);
    dialog_layer.remove_dialog(&dialog.id());
    Ok(summary)
}

fn responses_of(log: &Mutex<ResponseLog>) -> Vec<u16> {
    log.lock().unwrap_or_else(|p| p.into_inner()).statuses()
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Waits for the INVITE's final response; on timeout sends CANCEL and waits
/// a little for the 487 (still a timeout for the summary).
async fn wait_final(
    dialog: &InviteDialog,
    mut handle: tokio::task::JoinHandle<rsipstack::dialog::invitation::InviteAsyncResult>,
    timeout: Duration,
) -> Option<Response> {
    match tokio::time::timeout(timeout, &mut handle).await {
        Ok(Ok(Ok((_, resp)))) => resp,
        Ok(Ok(Err(e))) => {
            tracing::debug!(error = %e, "INVITE failed");
            None
        }
        Ok(Err(_)) => None,
        Err(_) => {
            let _ = dialog.cancel().await;
            if tokio::time::timeout(CANCEL_GRACE, &mut handle)
                .await
                .is_err()
            {
                handle.abort();
            }
            None
        }
    }
}

fn negotiate(sdp: &mut SdpSession, answer: &Response) -> Result<NegotiatedMedia, SoftphoneError> {
    if answer.body.is_empty() {
        return Err(SoftphoneError::NoAnswerSdp);
    }
    let text = String::from_utf8_lossy(&answer.body);
    Ok(sdp.accept_answer(&text)?)
}

async fn bye(dialog: &InviteDialog) {
    if tokio::time::timeout(BYE_GRACE, dialog.bye()).await.is_err() {
        tracing::debug!("no answer to BYE");
    }
}

async fn bind_media(local_ip: IpAddr, opts: &CallOptions) -> Result<MediaSession, SoftphoneError> {
    let ports = port_allocator()?;
    let mut cfg = MediaConfig::new(local_ip, ports);
    // The far end may legitimately send nothing for a while (a prompt
    // that has not started); only hangup_after ends the call.
    cfg.rtp_timeout = opts.hangup_after + Duration::from_secs(60);
    let mut last = None;
    for _ in 0..BIND_ATTEMPTS {
        match MediaSession::bind(cfg.clone()).await {
            Ok(m) => return Ok(m),
            Err(e @ crate::media::MediaError::Bind { .. }) => last = Some(e),
            Err(e) => return Err(e.into()),
        }
    }
    Err(last
        .map(SoftphoneError::from)
        .unwrap_or(SoftphoneError::NoAnswerSdp))
}

/// What the answered part of the call produced.
struct Talked {
    hangup_by: HangupBy,
    sent: String,
    received: Vec<ReceivedDigit>,
    /// The received audio and its count of non-silent frames, once the
    /// media session is closed.
    recorder: tokio::task::JoinHandle<(Vec<i16>, u64)>,
}

/// Runs the answered call: media, playback, digits, until hangup.
async fn talk(
    opts: &CallOptions,
    digits: &str,
    dialog: &InviteDialog,
    media: &MediaSession,
    negotiated: &NegotiatedMedia,
    notes: &mut mpsc::UnboundedReceiver<DialogNote>,
) -> Result<Talked, SoftphoneError> {
    let params = MediaParams {
        remote: negotiated.remote,
        codec: negotiated.codec,
        payload_type: negotiated.payload_type,
        dtmf_payload_type: negotiated.dtmf_payload_type,
        ptime_ms: 20,
        send: negotiated.direction.sends(),
        recv: negotiated.direction.receives(),
    };
    let mut media_events = media.take_events();
    let mut audio = media.subscribe_audio();
    let recorder = tokio::spawn(async move {
        let mut samples = Vec::new();
        let mut non_silent = 0u64;
        while let Some(frame) = audio.recv().await {
            if !is_silent(&frame.samples) {
                non_silent += 1;
            }
            samples.extend_from_slice(&frame.samples);
        }
        (samples, non_silent)
    });
    if let Err(e) = media.start(params) {
        bye(dialog).await;
        return Err(e.into());
    }
    if let Some(source) = &opts.play {
        let opened = crate::audio::open_source(
            source,
            MEDIA_SAMPLE_RATE,
            &crate::audio::SayConfig::default(),
        )
        .await;
        match opened.map(|s| media.start_playback(s)) {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                bye(dialog).await;
                return Err(e.into());
            }
            Err(e) => {
                bye(dialog).await;
                return Err(e.into());
            }
        }
    }

    let (sent_tx, sent_rx) = watch::channel(String::new());
    let sender = send_digits(opts, digits.to_owned(), dialog.clone(), media, sent_tx);
    tokio::pin!(sender);
    let mut sender_done = digits.is_empty();
    let hangup_at = tokio::time::sleep(opts.hangup_after);
    tokio::pin!(hangup_at);
    let mut received = Vec::new();
    let hangup_by = loop {
        tokio::select! {
            _ = &mut hangup_at => break HangupBy::Local,
            _ = &mut sender, if !sender_done => sender_done = true,
            note = notes.recv() => match note {
                Some(DialogNote::InfoDtmf(e)) => received.push(received_digit(e)),
                Some(DialogNote::Terminated(TerminatedReason::UasBye)) => break HangupBy::Remote,
                Some(DialogNote::Terminated(TerminatedReason::Timeout)) | None => break HangupBy::Timeout,
                Some(DialogNote::Terminated(_)) => break HangupBy::Remote,
            },
            ev = recv_media(&mut media_events) => match ev {
                Some(MediaEvent::Dtmf(e)) => received.push(received_digit(e)),
                Some(_) => {}
                None => media_events = None,
            },
        }
    };
    if hangup_by == HangupBy::Local {
        bye(dialog).await;
    }
    let sent = sent_rx.borrow().clone();
    Ok(Talked {
        hangup_by,
        sent,
        received,
        recorder,
    })
}

async fn recv_media(
    events: &mut Option<mpsc::UnboundedReceiver<MediaEvent>>,
) -> Option<MediaEvent> {
    match events {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

fn received_digit(e: DtmfEvent) -> ReceivedDigit {
    ReceivedDigit {
        digit: e.digit,
        source: e.source,
        duration_ms: millis(e.duration),
    }
}

/// Sends every digit in the chosen mode, paced by duration + gap, and
/// publishes the digits handed off so far.
async fn send_digits(
    opts: &CallOptions,
    digits: String,
    dialog: InviteDialog,
    media: &MediaSession,
    sent: watch::Sender<String>,
) {
    if digits.is_empty() {
        return;
    }
    tokio::time::sleep(opts.dtmf_delay).await;
    for digit in digits.chars() {
        let ok = match opts.dtmf_mode {
            DtmfSource::Rfc4733 => media
                .send_dtmf(digit, opts.dtmf_duration, DtmfMode::Rfc4733)
                .is_ok(),
            DtmfSource::Inband => media
                .send_dtmf(digit, opts.dtmf_duration, DtmfMode::Inband)
                .is_ok(),
            DtmfSource::Info => send_info(&dialog, digit, opts.dtmf_duration).await,
        };
        if ok {
            sent.send_modify(|s| s.push(digit));
        } else {
            tracing::warn!(%digit, mode = ?opts.dtmf_mode, "DTMF digit not sent");
        }
        tokio::time::sleep(opts.dtmf_duration + opts.dtmf_gap).await;
    }
}

/// One SIP INFO with `application/dtmf-relay`; true when answered 2xx.
async fn send_info(dialog: &InviteDialog, digit: char, duration: Duration) -> bool {
    let Ok(body) = crate::dtmf::info::build_dtmf_relay(digit, duration) else {
        return false;
    };
    let headers = vec![Header::ContentType("application/dtmf-relay".into())];
    match dialog.info(Some(headers), Some(body.into_bytes())).await {
        Ok(Some(resp)) => resp.status_code.kind() == StatusCodeKind::Successful,
        _ => false,
    }
}

/// Answers the far end's in-dialog requests and passes on what matters.
async fn watch_dialog(mut states: DialogStateReceiver, notes: mpsc::UnboundedSender<DialogNote>) {
    while let Some(state) = states.recv().await {
        match state {
            DialogState::Info(_, req, handle) => {
                let content_type = req
                    .headers
                    .iter()
                    .find_map(|h| match h {
                        Header::ContentType(ct) => Some(ct.value().to_owned()),
                        _ => None,
                    })
                    .unwrap_or_default();
                match crate::dtmf::info::parse_body(&content_type, &req.body) {
                    Ok(ev) => {
                        let _ = notes.send(DialogNote::InfoDtmf(ev));
                        let _ = handle.reply(StatusCode::OK).await;
                    }
                    Err(_) => {
                        let _ = handle.reply(StatusCode::UnsupportedMediaType).await;
                    }
                }
            }
            DialogState::Options(_, _, handle)
            | DialogState::Notify(_, _, handle)
            | DialogState::Message(_, _, handle) => {
                let _ = handle.reply(StatusCode::OK).await;
            }
            // Not supported by the softphone; see the module docs.
            DialogState::Updated(_, _, handle) => {
                let _ = handle.reply(StatusCode::NotAcceptableHere).await;
            }
            DialogState::Refer(_, _, handle) => {
                let _ = handle.reply(StatusCode::Decline).await;
            }
            DialogState::Terminated(_, reason) => {
                let _ = notes.send(DialogNote::Terminated(reason));
            }
            _ => {}
        }
    }
}

async fn write_recording(path: PathBuf, samples: &[i16]) -> Result<(), SoftphoneError> {
    let samples = samples.to_vec();
    let p = path.clone();
    let result = tokio::task::spawn_blocking(move || {
        crate::audio::write_wav(&p, &samples, MEDIA_SAMPLE_RATE)
    })
    .await;
    match result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(source)) => Err(SoftphoneError::Record { path, source }),
        Err(_) => Err(SoftphoneError::Record {
            path,
            source: crate::audio::WavError::Io(std::io::Error::other("the writing task failed")),
        }),
    }
}

fn parse_uri(text: &str) -> Result<rsipstack::sip::Uri, SoftphoneError> {
    let bad = |reason: String| SoftphoneError::InvalidUri {
        uri: text.to_owned(),
        reason,
    };
    let lower = text.trim().to_ascii_lowercase();
    if !lower.starts_with("sip:") || lower.contains(char::is_whitespace) {
        return Err(bad("expected sip:USER@HOST[:PORT]".to_owned()));
    }
    rsipstack::sip::Uri::try_from(text.trim()).map_err(|e| bad(e.to_string()))
}

/// 127.0.0.1 for a loopback target, the target's own address family's
/// first interface otherwise.
fn local_ip_for(target: &rsipstack::sip::Uri) -> IpAddr {
    match &target.host_with_port.host {
        rsipstack::sip::Host::IpAddr(ip) if ip.is_loopback() => *ip,
        _ => rsipstack::transport::SipConnection::resolve_bind_address(SocketAddr::new(
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            0,
        ))
        .ip(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn loopback_targets_use_loopback() {
        let uri = parse_uri("sip:1000@127.0.0.1:5060").unwrap();
        assert_eq!(local_ip_for(&uri), IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert!(parse_uri("not a uri").is_err());
    }

    #[tokio::test]
    async fn invalid_digits_fail_before_any_socket() {
        let mut opts = CallOptions::new("sip:1000@127.0.0.1:9");
        opts.dtmf = "12x".into();
        assert!(matches!(
            run(opts).await,
            Err(SoftphoneError::InvalidDigit(_))
        ));
    }

    /// A UDP peer that answers every INVITE with 486: the call is rejected,
    /// not failed, and the responses are logged in order.
    #[tokio::test]
    async fn rejected_call_reports_the_code() {
        let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let port = sock.local_addr().unwrap().port();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65535];
            loop {
                let Ok((n, from)) = sock.recv_from(&mut buf).await else {
                    return;
                };
                let text = String::from_utf8_lossy(&buf[..n]).to_string();
                if !text.starts_with("INVITE ") {
                    continue;
                }
                let header = |name: &str| {
                    text.lines()
                        .find(|l| {
                            l.to_ascii_lowercase()
                                .starts_with(&format!("{}:", name.to_ascii_lowercase()))
                        })
                        .unwrap_or("")
                        .to_owned()
                };
                for status in ["100 Trying", "486 Busy Here"] {
                    let to = if status.starts_with("486") {
                        format!("{};tag=uas1", header("To"))
                    } else {
                        header("To")
                    };
                    let resp = format!(
                        "SIP/2.0 {status}\r\n{}\r\n{}\r\n{to}\r\n{}\r\n{}\r\nContent-Length: 0\r\n\r\n",
                        header("Via"),
                        header("From"),
                        header("Call-ID"),
                        header("CSeq"),
                    );
                    let _ = sock.send_to(resp.as_bytes(), from).await;
                }
            }
        });
        let mut opts = CallOptions::new(format!("sip:1000@127.0.0.1:{port}"));
        opts.timeout = Duration::from_secs(5);
        let summary = run(opts).await.unwrap();
        assert_eq!(
            summary.disposition,
            Disposition::Rejected {
                code: 486,
                reason: "Busy Here".into()
            }
        );
        assert_eq!(summary.responses, vec![100, 486]);
        assert!(!summary.answered());
        assert_eq!(summary.duration_ms, 0);
    }

    /// Nobody answers: the call times out.
    #[tokio::test]
    async fn silent_peer_times_out() {
        let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let port = sock.local_addr().unwrap().port();
        let mut opts = CallOptions::new(format!("sip:1000@127.0.0.1:{port}"));
        opts.timeout = Duration::from_millis(600);
        let summary = run(opts).await.unwrap();
        assert_eq!(summary.disposition, Disposition::Timeout);
        assert!(summary.responses.is_empty());
        drop(sock);
    }
}
