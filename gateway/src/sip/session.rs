//! The tokio driver of one inbound call: it feeds the sans-IO [`Uas`] with
//! what rsipstack's transactions deliver, carries out what the core asks
//! (responses, BYE), and wires the call to its [`MediaSession`] and its
//! handler.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use rsipstack::sip::{Method, Request, SipMessage};
use rsipstack::transaction::key::{TransactionKey, TransactionRole};
use rsipstack::transaction::transaction::{Transaction, TransactionEvent, TransactionEventSender};
use rsipstack::transport::{SipAddr, SipConnection};
use tokio::sync::mpsc;

use super::control::{ControlCommand, SipControl};
use super::msg::{self, DialogInfo};
use super::server::Shared;
use super::trunk::TrunkConfig;
use super::uas::{
    Body, Decision, EndReason, InDialogMethod, OutRequest, Reply, TxId, Uas, UasConfig, UasEvent,
};
use crate::call::{CallEvent, CallHandle, CallInfo, IncomingCall, RouteDecision};
use crate::clock;
use crate::dtmf::DtmfSource;
use crate::media::{MediaEvent, MediaParams, MediaSession};
use crate::metrics::{self, CallOutcome, OutcomeLabel};
use crate::sdp::{LocalMedia, NegotiatedMedia, SdpSession};

/// What reaches a call task.
#[allow(clippy::large_enum_variant)]
pub(crate) enum CallInput {
    /// A message the transaction `TxId` delivered (ACK, CANCEL).
    TxMessage(TxId, SipMessage),
    /// A new in-dialog request.
    Request(Box<Transaction>),
    /// The server's drain timeout is over: end the call.
    Drain,
    /// The final status of transfer `id`'s REFER, `None` if none came.
    ReferAnswer(u64, Option<u16>),
    /// What the INVITE to transfer `id`'s agent reported.
    Agent(u64, super::uac::AgentEvent),
}

#[path = "session_transfer.rs"]
mod transfer_glue;

/// A server transaction we answer through its event channel.
struct TxHandle {
    request: Request,
    sender: TransactionEventSender,
}

const SDP: &str = "application/sdp";

/// Drives `tx` (retransmissions, timers) in its own task and forwards what
/// it delivers as [`CallInput::TxMessage`].
fn pump(mut tx: Transaction, id: TxId, inputs: mpsc::UnboundedSender<CallInput>) -> TxHandle {
    let handle = TxHandle {
        request: tx.original.clone(),
        sender: tx.tu_sender.clone(),
    };
    tokio::spawn(async move {
        while let Some(m) = tx.receive().await {
            if inputs.send(CallInput::TxMessage(id, m)).is_err() {
                break;
            }
        }
    });
    handle
}

fn params_of(n: &NegotiatedMedia) -> MediaParams {
    MediaParams {
        remote: n.remote,
        codec: n.codec,
        payload_type: n.payload_type,
        dtmf_payload_type: n.dtmf_payload_type,
        ptime_ms: n.ptime_ms,
        send: n.direction.sends() && !n.remote.ip().is_unspecified(),
        recv: n.direction.receives(),
    }
}

fn has_sdp(req: &Request) -> bool {
    !req.body.is_empty()
        && msg::header(req, "Content-Type")
            .map(|c| msg::media_type(&c) == SDP)
            .unwrap_or(false)
}

struct Call {
    shared: Arc<Shared>,
    trunk: TrunkConfig,
    uas: Uas,
    our_tag: String,
    txs: HashMap<TxId, TxHandle>,
    next_tx: TxId,
    inputs: mpsc::UnboundedSender<CallInput>,
    connection: Option<SipConnection>,
    peer: SocketAddr,
    dialog: Option<DialogInfo>,
    media: Option<Arc<MediaSession>>,
    media_started: bool,
    /// The negotiated media to switch on once the 200 goes out: until the
    /// call is answered we receive but send nothing.
    send_on_answer: Option<MediaParams>,
    sdp: SdpSession,
    local: Option<LocalMedia>,
    on_hold: bool,
    /// A re-INVITE without SDP: our offer went in its 200, the answer
    /// comes in its ACK.
    reoffer_tx: Option<TxId>,
    incoming: IncomingCall,
    handler: Option<Arc<dyn crate::call::CallHandler>>,
    events: Option<mpsc::Sender<CallEvent>>,
    control: Option<Arc<SipControl>>,
    control_tx: mpsc::UnboundedSender<ControlCommand>,
    codec: &'static str,
    /// Transfers in progress or still cleaning up their agent leg.
    transfers: Vec<transfer_glue::ActiveTransfer>,
    next_transfer: u64,
    /// A REFER went out on the caller's dialog, so NOTIFYs are expected.
    refer_sent: bool,
    /// A transfer succeeded: the call counts as transferred.
    transferred: bool,
}

#[allow(clippy::too_many_arguments)]
pub(crate) async fn run(
    shared: Arc<Shared>,
    tx: Transaction,
    trunk: TrunkConfig,
    source: SocketAddr,
    uas_cfg: UasConfig,
    our_tag: String,
    inputs: mpsc::UnboundedSender<CallInput>,
    mut input_rx: mpsc::UnboundedReceiver<CallInput>,
) {
    let invite = tx.original.clone();
    let from = msg::header(&invite, "From").unwrap_or_default();
    let caller_uri = msg::header(&invite, "P-Asserted-Identity")
        .map(|p| msg::uri_of(&p))
        .unwrap_or_else(|| msg::uri_of(&from));
    let incoming = IncomingCall {
        call_id: msg::call_id(&invite),
        did: msg::user_of(&invite.uri.to_string()),
        caller_id: msg::user_of(&caller_uri),
        from_uri: msg::uri_of(&from),
        trunk: trunk.name.clone(),
        source,
    };
    let connection = tx.connection.clone();
    let (control_tx, mut control_rx) = mpsc::unbounded_channel();
    let mut call = Call {
        shared,
        trunk,
        uas: Uas::new(uas_cfg, 0),
        our_tag,
        txs: HashMap::new(),
        next_tx: 1,
        inputs: inputs.clone(),
        connection,
        peer: source,
        dialog: None,
        media: None,
        media_started: false,
        send_on_answer: None,
        sdp: SdpSession::with_random_id(),
        local: None,
        on_hold: false,
        reoffer_tx: None,
        incoming,
        handler: None,
        events: None,
        control: None,
        control_tx,
        codec: "PCMU",
        transfers: Vec::new(),
        next_transfer: 0,
        refer_sent: false,
        transferred: false,
    };
    call.txs.insert(0, pump(tx, 0, inputs));
    call.flush().await;

    let decision = call.decide(&invite).await;
    if let Err(e) = call.uas.handle_decision(clock::now(), decision) {
        tracing::warn!(error = %e, "routing decision refused");
    }
    call.flush().await;

    let mut media_events = call.media.as_ref().and_then(|m| m.take_events());
    // A transfer may outlive the caller's leg briefly: a CANCELled agent
    // leg waits for its final response.
    while !call.uas.is_terminated() || call.transfer_pending() {
        let deadline = [call.uas.poll_timeout(), call.transfer_timeout()]
            .into_iter()
            .flatten()
            .min()
            .map(tokio::time::Instant::from_std);
        tokio::select! {
            input = input_rx.recv() => match input {
                Some(input) => call.handle_input(input).await,
                None => break,
            },
            _ = async { match deadline { Some(d) => tokio::time::sleep_until(d).await, None => std::future::pending().await } } => {
                let now = clock::now();
                call.uas.handle_timeout(now);
                call.handle_transfer_timeout(now);
            }
            ev = async { match media_events.as_mut() { Some(rx) => rx.recv().await, None => std::future::pending().await } } => {
                match ev {
                    Some(ev) => call.handle_media(ev),
                    None => media_events = None,
                }
            }
            cmd = control_rx.recv() => if let Some(cmd) = cmd { call.handle_command(cmd).await },
        }
        call.flush().await;
    }
    call.flush().await;
    call.end_transfers();
    if let Some(media) = &call.media {
        media.close();
    }
}

impl Call {
    /// Routes the call and prepares media; the decision for the core.
    async fn decide(&mut self, invite: &Request) -> Decision {
        let reject = |status: u16| Decision::Reject {
            status,
            reason: None,
            headers: Vec::new(),
        };
        let handler = match self.shared.router.route(&self.incoming) {
            RouteDecision::Reject { status, reason } => {
                return Decision::Reject {
                    status,
                    reason: Some(reason),
                    headers: Vec::new(),
                }
            }
            RouteDecision::Answer(h) => h,
        };
        let mut media_cfg = self.shared.cfg.media.clone();
        media_cfg.rfc4733 = media_cfg.rfc4733 && self.trunk.dtmf.rfc4733;
        media_cfg.inband_dtmf = media_cfg.inband_dtmf && self.trunk.dtmf.inband;
        let media = match MediaSession::bind(media_cfg).await {
            Ok(m) => Arc::new(m),
            Err(e) => {
                tracing::error!(error = %e, "no media port for a call");
                return Decision::Reject {
                    status: 503,
                    reason: None,
                    headers: vec![("Retry-After".into(), "5".into())],
                };
            }
        };
        let ip = self
            .shared
            .cfg
            .public_ip
            .unwrap_or(self.shared.cfg.media.local_ip);
        let ip = if ip.is_unspecified() {
            self.shared.local.ip()
        } else {
            ip
        };
        let mut local = LocalMedia::new(ip, media.local_port());
        local.telephone_event = self.trunk.dtmf.rfc4733;
        let sdp = if has_sdp(invite) {
            let offer = String::from_utf8_lossy(&invite.body).into_owned();
            match self.sdp.answer(&offer, &local) {
                Ok((answer, negotiated)) => {
                    let params = params_of(&negotiated);
                    if let Err(e) = media.start(MediaParams {
                        send: false,
                        ..params
                    }) {
                        tracing::warn!(error = %e, "media did not start");
                        return reject(500);
                    }
                    self.send_on_answer = Some(params);
                    self.media_started = true;
                    self.codec = negotiated.codec.name();
                    answer
                }
                Err(e) => return reject(e.sip_status()),
            }
        } else {
            // Late offer (RFC 3261 §13.2.1): our offer goes in the 200.
            self.sdp.offer(&local)
        };
        self.local = Some(local);
        self.media = Some(media);
        self.handler = Some(handler);
        let transport = if self.connection.as_ref().is_some_and(|c| c.is_reliable()) {
            "TCP"
        } else {
            "UDP"
        };
        self.dialog = Some(DialogInfo::from_invite(
            invite,
            &self.our_tag,
            self.peer,
            self.shared.contact_host.clone(),
            transport,
        ));
        Decision::Answer {
            sdp: sdp.into_bytes(),
        }
    }

    async fn handle_input(&mut self, input: CallInput) {
        let now = clock::now();
        match input {
            CallInput::TxMessage(id, SipMessage::Request(req)) => match req.method {
                Method::Ack if id == 0 => {
                    let sdp = (!req.body.is_empty()).then(|| req.body.clone());
                    if let Err(e) = self.uas.handle_ack(now, sdp) {
                        tracing::debug!(error = %e, "ACK ignored");
                    }
                }
                Method::Ack if self.reoffer_tx == Some(id) => {
                    self.reoffer_tx = None;
                    let answer = String::from_utf8_lossy(&req.body).into_owned();
                    self.apply_answer(&answer);
                }
                Method::Cancel => {
                    if let Err(e) = self.uas.handle_cancel(now) {
                        tracing::debug!(error = %e, "CANCEL ignored");
                    }
                }
                _ => {}
            },
            CallInput::TxMessage(_, SipMessage::Response(_)) => {}
            CallInput::Request(tx) => {
                let Some(tx) = self.agent_request(*tx) else {
                    return;
                };
                let id = self.next_tx;
                self.next_tx += 1;
                let method = tx.original.method;
                self.txs.insert(id, pump(tx, id, self.inputs.clone()));
                let kind = match method {
                    Method::Bye => {
                        if let Err(e) = self.uas.handle_bye(now, id) {
                            tracing::debug!(error = %e, "BYE refused");
                        }
                        return;
                    }
                    Method::Invite => InDialogMethod::ReInvite,
                    Method::Info => InDialogMethod::Info,
                    Method::Refer => InDialogMethod::Refer,
                    Method::Notify => InDialogMethod::Notify,
                    Method::Options => InDialogMethod::Options,
                    _ => {
                        let status = if method == Method::Ack { return } else { 405 };
                        self.respond(Reply {
                            tx: id,
                            status,
                            reason: None,
                            body: Body::None,
                            headers: vec![("Allow".into(), super::ALLOW.into())],
                        });
                        return;
                    }
                };
                if let Err(e) = self.uas.handle_in_dialog(now, id, kind) {
                    tracing::debug!(error = %e, "in-dialog request refused");
                }
            }
            CallInput::Drain => self.uas.handle_hangup(now, 503),
            CallInput::ReferAnswer(id, status) => self.handle_refer_answer(id, status),
            CallInput::Agent(id, ev) => self.handle_agent(id, ev),
        }
    }

    async fn handle_command(&mut self, cmd: ControlCommand) {
        match cmd {
            ControlCommand::Hangup => self.uas.handle_hangup(clock::now(), 480),
            ControlCommand::Transfer(request, reply) => self.start_transfer(request, reply).await,
        }
    }

    /// A digit the trunk accepts: counted, logged and handed to the handler.
    fn emit_dtmf(&mut self, d: crate::dtmf::DtmfEvent) {
        metrics::global().dtmf_digits_total.inc();
        tracing::info!(call = %self.incoming.call_id, digit = %d.digit, source = ?d.source, duration_ms = d.duration.as_millis() as u64, "dtmf");
        self.emit(CallEvent::Dtmf(d));
    }

    fn handle_media(&mut self, ev: MediaEvent) {
        match ev {
            MediaEvent::Dtmf(d) => {
                let allowed = match d.source {
                    DtmfSource::Rfc4733 => self.trunk.dtmf.rfc4733,
                    DtmfSource::Inband => self.trunk.dtmf.inband,
                    DtmfSource::Info => self.trunk.dtmf.info,
                };
                if allowed {
                    self.emit_dtmf(d);
                }
            }
            MediaEvent::PlaybackFinished { id, stopped } => {
                if let Some(id) = self.control.as_ref().and_then(|c| c.finished(id)) {
                    self.emit(CallEvent::PlaybackFinished { id, stopped });
                }
            }
            MediaEvent::RtpTimeout => {
                tracing::info!(call_id = %self.incoming.call_id, "no RTP from the caller")
            }
            MediaEvent::RtpResumed | MediaEvent::RtcpBye => {}
        }
    }

    fn emit(&self, ev: CallEvent) {
        if let Some(events) = &self.events {
            if events.try_send(ev).is_err() {
                tracing::warn!("call event dropped: the handler is not reading its events");
            }
        }
    }

    /// Applies an SDP answer to our offer (late offer, or a re-INVITE
    /// without SDP).
    fn apply_answer(&mut self, answer: &str) -> bool {
        let (Some(media), Ok(negotiated)) = (self.media.clone(), self.sdp.accept_answer(answer))
        else {
            return false;
        };
        self.apply_media(&media, &negotiated)
    }

    fn apply_media(&mut self, media: &MediaSession, negotiated: &NegotiatedMedia) -> bool {
        let params = params_of(negotiated);
        let result = if self.media_started {
            media.update(params)
        } else {
            media.start(params)
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "media parameters refused");
            return false;
        }
        self.media_started = true;
        self.codec = negotiated.codec.name();
        if negotiated.on_hold != self.on_hold {
            self.on_hold = negotiated.on_hold;
            self.emit(if negotiated.on_hold {
                CallEvent::Hold
            } else {
                CallEvent::Resume
            });
        }
        true
    }

    /// Sends everything the core queued and acts on its events.
    async fn flush(&mut self) {
        loop {
            let mut progressed = false;
            while let Some(r) = self.uas.poll_response() {
                progressed = true;
                self.respond(r);
            }
            while let Some(OutRequest::Bye) = self.uas.poll_request() {
                progressed = true;
                self.send_bye();
            }
            while let Some(ev) = self.uas.poll_event() {
                progressed = true;
                self.handle_event(ev);
            }
            progressed |= self.drive_transfers();
            if !progressed {
                break;
            }
        }
    }

    fn handle_event(&mut self, ev: UasEvent) {
        match ev {
            UasEvent::Answered => {}
            UasEvent::Confirmed { sdp } => {
                if let Some(sdp) = sdp {
                    let answer = String::from_utf8_lossy(&sdp).into_owned();
                    if !self.media_started && !self.apply_answer(&answer) {
                        tracing::info!(
                            "late-offer answer in the ACK was not acceptable; hanging up"
                        );
                        self.uas.handle_hangup(clock::now(), 488);
                        return;
                    }
                }
                self.start_handler();
            }
            UasEvent::InDialog { tx, method } => self.answer_in_dialog(tx, method),
            UasEvent::Terminated(reason) => {
                self.transfer_caller_gone();
                let outcome = match reason {
                    EndReason::RemoteBye | EndReason::LocalBye if self.transferred => {
                        CallOutcome::Transferred
                    }
                    EndReason::Rejected(_) => CallOutcome::Rejected,
                    EndReason::Cancelled => CallOutcome::Cancelled,
                    EndReason::NoAck => CallOutcome::Failed,
                    EndReason::RemoteBye | EndReason::LocalBye => CallOutcome::Completed,
                };
                metrics::global()
                    .calls_total
                    .get_or_create(&OutcomeLabel { outcome })
                    .inc();
                let text = match reason {
                    EndReason::Rejected(s) => format!("rejected with {s}"),
                    EndReason::Cancelled => "cancelled by the caller".into(),
                    EndReason::RemoteBye => "the caller hung up".into(),
                    EndReason::LocalBye => "hung up".into(),
                    EndReason::NoAck => "no ACK for our answer".into(),
                };
                self.emit(CallEvent::Ended { reason: text });
                self.events = None;
            }
        }
    }

    fn start_handler(&mut self) {
        let (Some(handler), Some(media)) = (self.handler.take(), self.media.clone()) else {
            return;
        };
        let info = CallInfo {
            incoming: self.incoming.clone(),
            voxgate_id: uuid::Uuid::new_v4().to_string(),
            codec: self.codec,
            sample_rate: crate::media::MEDIA_SAMPLE_RATE,
        };
        let (events_tx, events_rx) = mpsc::channel(256);
        let control = Arc::new(SipControl::new(
            info,
            media,
            events_tx.clone(),
            self.control_tx.clone(),
            self.shared.cfg.say.clone(),
        ));
        self.events = Some(events_tx);
        self.control = Some(control.clone());
        let handle = CallHandle::new(control, events_rx);
        let control_tx = self.control_tx.clone();
        tokio::spawn(async move {
            handler.handle(handle).await;
            // A handler that returns has finished with the call.
            let _ = control_tx.send(ControlCommand::Hangup);
        });
    }

    fn answer_in_dialog(&mut self, tx: TxId, method: InDialogMethod) {
        let Some(req) = self.txs.get(&tx).map(|h| h.request.clone()) else {
            return;
        };
        let mut reply = Reply {
            tx,
            status: 200,
            reason: None,
            body: Body::None,
            headers: Vec::new(),
        };
        match method {
            InDialogMethod::ReInvite => {
                let (Some(media), Some(local)) = (self.media.clone(), self.local.clone()) else {
                    reply.status = 500;
                    return self.in_dialog_reply(reply);
                };
                if has_sdp(&req) {
                    let offer = String::from_utf8_lossy(&req.body).into_owned();
                    match self.sdp.answer(&offer, &local) {
                        Ok((answer, negotiated)) => {
                            if self.apply_media(&media, &negotiated) {
                                reply.body = Body::Sdp(answer.into_bytes());
                            } else {
                                reply.status = 488;
                            }
                        }
                        Err(e) => reply.status = e.sip_status(),
                    }
                } else {
                    reply.body = Body::Sdp(self.sdp.offer(&local).into_bytes());
                    self.reoffer_tx = Some(tx);
                }
            }
            InDialogMethod::Info => {
                let ct = msg::header(&req, "Content-Type")
                    .map(|c| msg::media_type(&c))
                    .unwrap_or_default();
                if ct == "application/dtmf-relay" || ct == "application/dtmf" {
                    match crate::dtmf::info::parse_body(&ct, &req.body) {
                        Ok(ev) if self.trunk.dtmf.info => self.emit_dtmf(ev),
                        Ok(_) => {} // this trunk does not take INFO DTMF
                        Err(_) => reply.status = 400,
                    }
                } else if !req.body.is_empty() {
                    reply.status = 415;
                    reply.headers.push((
                        "Accept".into(),
                        "application/dtmf-relay, application/dtmf".into(),
                    ));
                }
            }
            InDialogMethod::Options => reply.headers.push(("Allow".into(), super::ALLOW.into())),
            // We do not take transfers from the carrier.
            InDialogMethod::Refer => reply.status = 603,
            InDialogMethod::Notify => reply.status = self.answer_notify(&req),
        }
        self.in_dialog_reply(reply);
    }

    fn in_dialog_reply(&mut self, reply: Reply) {
        if let Err(e) = self.uas.handle_in_dialog_reply(clock::now(), reply) {
            tracing::debug!(error = %e, "in-dialog reply dropped");
        }
    }

    fn respond(&mut self, r: Reply) {
        let Some(handle) = self.txs.get(&r.tx) else {
            return;
        };
        let is_invite = handle.request.method == Method::Invite;
        let mut extra = r.headers.clone();
        if is_invite && (r.status > 100 && r.status < 300) {
            extra.push((
                "Contact".into(),
                format!("<sip:voxgate@{}>", self.shared.contact_host),
            ));
        }
        if is_invite && (200..300).contains(&r.status) {
            extra.push(("Allow".into(), super::ALLOW.into()));
            if let (Some(params), Some(media)) = (self.send_on_answer.take(), self.media.as_ref()) {
                if let Err(e) = media.update(params) {
                    tracing::warn!(error = %e, "media did not switch to sending");
                }
            }
        }
        let body = match &r.body {
            Body::Sdp(b) => Some((SDP, b.clone())),
            Body::None => None,
        };
        let resp = msg::response(
            &self.shared.endpoint,
            &handle.request,
            r.status,
            Some(&self.our_tag),
            &extra,
            body,
        );
        Shared::count_response(r.status);
        if handle.sender.send(TransactionEvent::Respond(resp)).is_err() {
            tracing::debug!(status = r.status, "transaction gone before its response");
        }
    }

    fn send_bye(&mut self) {
        let Some(req) = self
            .dialog
            .as_ref()
            .and_then(|d| d.request("BYE", &[], None))
        else {
            return;
        };
        let endpoint = self.shared.endpoint.clone();
        let connection = self.connection.clone();
        let peer = self.peer;
        tokio::spawn(async move {
            if let Err(e) = send_request(endpoint, req, connection, peer).await {
                tracing::debug!(error = %e, "BYE failed");
            }
        });
    }
}

/// Sends `req` on a new client transaction through `connection` to
/// `peer`, and waits for its final response.
pub(crate) async fn send_request(
    endpoint: Arc<rsipstack::transaction::endpoint::EndpointInner>,
    req: Request,
    connection: Option<SipConnection>,
    peer: SocketAddr,
) -> Result<Option<rsipstack::sip::Response>, rsipstack::Error> {
    let key = TransactionKey::from_request(&req, TransactionRole::Client)?;
    let mut tx = Transaction::new_client(key, req, endpoint, connection);
    tx.destination = Some(SipAddr::from(peer));
    tx.send().await?;
    while let Some(m) = tx.receive().await {
        if let SipMessage::Response(r) = m {
            if u16::from(r.status_code.clone()) >= 200 {
                return Ok(Some(r));
            }
        }
    }
    Ok(None)
}
