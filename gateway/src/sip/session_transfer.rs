//! The call task's side of transfers: it starts a blind (REFER) or
//! bridged (INVITE to an agent) transfer, feeds the sans-IO
//! [`Transfer`] core with what arrives, and carries out its actions.
//! A child of `session`, so it works on the call task's own state.

use std::net::SocketAddr;
use std::sync::Arc;

use rsipstack::sip::{Method, Request, Response};
use rsipstack::transaction::transaction::{Transaction, TransactionEvent};
use tokio::sync::oneshot;

use super::super::msg::{self, DialogInfo};
use super::super::transfer::{self, Transfer, TransferAction};
use super::super::uac::{self, AgentEvent};
use super::{params_of, pump, send_request, Call, CallInput};
use crate::call::{CallControl, TransferError, TransferMode, TransferOutcome, TransferRequest};
use crate::clock;
use crate::media::{Bridge, MediaSession};
use crate::sdp::{LocalMedia, SdpSession};

type Reply = oneshot::Sender<Result<TransferOutcome, TransferError>>;

/// The INVITE leg to the agent of a bridged transfer.
pub(super) struct AgentLeg {
    invite: Request,
    call_id: String,
    local_tag: String,
    media: Arc<MediaSession>,
    sdp: SdpSession,
    /// Where the INVITE went.
    dest: Option<SocketAddr>,
    dialog: Option<DialogInfo>,
    bridge: Option<Bridge>,
}

/// One transfer of this call. After its result went to the handler it may
/// linger until its agent leg is cleaned up (a CANCEL's 487, a late 2xx).
pub(super) struct ActiveTransfer {
    id: u64,
    core: Transfer,
    reply: Option<Reply>,
    agent: Option<AgentLeg>,
}

impl Call {
    /// A `transfer` command from the handler.
    pub(super) async fn start_transfer(&mut self, request: TransferRequest, reply: Reply) {
        if let Some(previous) = self.transfers.iter().find(|t| t.reply.is_some()) {
            tracing::debug!(
                state = previous.core.state().name(),
                "transfer refused: another one runs"
            );
            let _ = reply.send(Err(TransferError::InvalidTarget(
                "another transfer of this call is in progress".into(),
            )));
            return;
        }
        if self.uas.is_terminated() || self.dialog.is_none() {
            let _ = reply.send(Err(TransferError::CallGone));
            return;
        }
        let checked = transfer::check_target(&request.target, request.mode)
            .and_then(|()| transfer::check_headers(&request.headers));
        if let Err(e) = checked {
            let _ = reply.send(Err(e));
            return;
        }
        let voxgate_id = self
            .control
            .as_ref()
            .map(|c| c.info().voxgate_id.clone())
            .unwrap_or_default();
        let mut headers = vec![("X-Voxgate-Call-Id".to_string(), voxgate_id)];
        headers.extend(request.headers.iter().cloned());
        self.next_transfer += 1;
        let id = self.next_transfer;
        match request.mode {
            TransferMode::Blind => self.start_blind(id, &request, headers, reply),
            TransferMode::Bridged => self.start_bridged(id, &request, headers, reply).await,
        }
    }

    fn start_blind(
        &mut self,
        id: u64,
        request: &TransferRequest,
        mut headers: Vec<(String, String)>,
        reply: Reply,
    ) {
        headers.insert(0, ("Refer-To".into(), format!("<{}>", request.target)));
        headers.insert(
            1,
            (
                "Referred-By".into(),
                format!("<sip:voxgate@{}>", self.shared.contact_host),
            ),
        );
        let Some(refer) = self
            .dialog
            .as_ref()
            .and_then(|d| d.request("REFER", &headers, None))
        else {
            let _ = reply.send(Err(TransferError::InvalidTarget(
                "the REFER could not be built".into(),
            )));
            return;
        };
        self.refer_sent = true;
        let (endpoint, connection, peer, inputs) = (
            self.shared.endpoint.clone(),
            self.connection.clone(),
            self.peer,
            self.inputs.clone(),
        );
        tokio::spawn(async move {
            let status = match send_request(endpoint, refer, connection, peer).await {
                Ok(r) => r.map(|r| u16::from(r.status_code)),
                Err(e) => {
                    tracing::debug!(error = %e, "REFER failed");
                    None
                }
            };
            let _ = inputs.send(CallInput::ReferAnswer(id, status));
        });
        let core = Transfer::blind(clock::now(), request.timeout);
        self.transfers.push(ActiveTransfer {
            id,
            core,
            reply: Some(reply),
            agent: None,
        });
    }

    async fn start_bridged(
        &mut self,
        id: u64,
        request: &TransferRequest,
        headers: Vec<(String, String)>,
        reply: Reply,
    ) {
        let media = match MediaSession::bind(self.shared.cfg.media.clone()).await {
            Ok(m) => Arc::new(m),
            Err(e) => {
                // No error variant fits "we have no port": the target was
                // fine, so report it as the agent side being unavailable.
                tracing::error!(error = %e, "no media port for the agent leg");
                let _ = reply.send(Err(TransferError::Rejected { status: 503 }));
                return;
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
        let local = LocalMedia::new(ip, media.local_port());
        let mut sdp = SdpSession::with_random_id();
        let offer = sdp.offer(&local);
        let built = uac::build_invite(
            &request.target,
            &self.incoming.caller_id,
            &self.shared.contact_host,
            &headers,
            &offer,
        );
        let Some(invite) = built else {
            let _ = reply.send(Err(TransferError::InvalidTarget(format!(
                "{:?}: the INVITE could not be built",
                request.target
            ))));
            return;
        };
        let dest = uac::target_addr(&request.target);
        if let Ok(mut calls) = self.shared.calls.lock() {
            calls.insert(
                (invite.call_id.clone(), invite.local_tag.clone()),
                self.inputs.clone(),
            );
        }
        uac::start_invite(
            self.shared.endpoint.clone(),
            invite.request.clone(),
            dest,
            id,
            self.inputs.clone(),
        );
        let leg = AgentLeg {
            invite: invite.request,
            call_id: invite.call_id,
            local_tag: invite.local_tag,
            media,
            sdp,
            dest,
            dialog: None,
            bridge: None,
        };
        let core = Transfer::bridged(clock::now(), request.timeout);
        self.transfers.push(ActiveTransfer {
            id,
            core,
            reply: Some(reply),
            agent: Some(leg),
        });
    }

    fn transfer_mut(&mut self, id: u64) -> Option<&mut ActiveTransfer> {
        self.transfers.iter_mut().find(|t| t.id == id)
    }

    pub(super) fn handle_refer_answer(&mut self, id: u64, status: Option<u16>) {
        // rsipstack answers a REFER that timed out (Timer F) with 408.
        let status = status.filter(|s| *s != 408);
        if let Some(t) = self.transfer_mut(id) {
            t.core.handle_refer_response(clock::now(), status);
        }
    }

    pub(super) fn handle_agent(&mut self, id: u64, ev: AgentEvent) {
        let via_host = self.shared.contact_host.clone();
        let Some(t) = self.transfer_mut(id) else {
            return;
        };
        let Some(leg) = t.agent.as_mut() else { return };
        let now = clock::now();
        match ev {
            AgentEvent::Sent(addr) => leg.dest = addr.or(leg.dest),
            AgentEvent::Response(r) => {
                let status = u16::from(r.status_code.clone());
                if (200..300).contains(&status) && leg.dialog.is_none() {
                    leg.dialog = agent_dialog(leg, &r, via_host);
                    if !t.core.is_bridged() {
                        // The SDP answer is read when the core asks to bridge.
                        leg.sdp_answer(&r);
                    }
                }
                t.core.handle_agent_response(now, status);
            }
            AgentEvent::Gone => t.core.handle_agent_gone(now),
        }
    }

    /// A NOTIFY on the caller's dialog; the status to answer it with.
    pub(super) fn answer_notify(&mut self, req: &Request) -> u16 {
        if !self.refer_sent {
            return 481; // no subscription of ours on this dialog
        }
        if !msg::header(req, "Event").is_some_and(|e| transfer::is_refer_event(&e)) {
            return 489;
        }
        let ct = msg::header(req, "Content-Type")
            .map(|c| msg::media_type(&c))
            .unwrap_or_default();
        if ct != "message/sipfrag" {
            return 415;
        }
        let frag = match transfer::parse_sipfrag(&req.body) {
            Ok(f) => f,
            Err(e) => {
                tracing::debug!(error = %e, "NOTIFY with an unreadable sipfrag");
                return 400;
            }
        };
        let terminated =
            msg::header(req, "Subscription-State").is_some_and(|s| transfer::is_terminated(&s));
        let now = clock::now();
        if let Some(t) = self.transfers.iter_mut().find(|t| t.agent.is_none()) {
            t.core.handle_notify(now, &frag, terminated);
        }
        200
    }

    /// Takes a request of an agent's dialog; gives back the others.
    pub(super) fn agent_request(&mut self, tx: Transaction) -> Option<Transaction> {
        let call_id = msg::call_id(&tx.original);
        let Some(i) = self
            .transfers
            .iter()
            .position(|t| t.agent.as_ref().is_some_and(|a| a.call_id == call_id))
        else {
            return Some(tx);
        };
        let method = tx.original.method;
        let request = tx.original.clone();
        let id = self.next_tx;
        self.next_tx += 1;
        let handle = pump(tx, id, self.inputs.clone());
        let status = match method {
            Method::Ack => return None,
            Method::Bye => {
                self.transfers[i].core.handle_agent_bye(clock::now());
                200
            }
            Method::Options | Method::Info | Method::Notify => 200,
            // Renegotiation on the agent leg is not supported yet.
            Method::Invite => 488,
            _ => 405,
        };
        let resp = msg::response(&self.shared.endpoint, &request, status, None, &[], None);
        super::Shared::count_response(status);
        let _ = handle.sender.send(TransactionEvent::Respond(resp));
        None
    }

    /// The caller's leg is over.
    pub(super) fn transfer_caller_gone(&mut self) {
        let now = clock::now();
        for t in &mut self.transfers {
            t.core.handle_caller_gone(now);
        }
    }

    pub(super) fn transfer_timeout(&self) -> Option<std::time::Instant> {
        self.transfers
            .iter()
            .filter_map(|t| t.core.poll_timeout())
            .min()
    }

    pub(super) fn handle_transfer_timeout(&mut self, now: std::time::Instant) {
        for t in &mut self.transfers {
            t.core.handle_timeout(now);
        }
    }

    /// A transfer still has work (an agent leg to clean up).
    pub(super) fn transfer_pending(&self) -> bool {
        !self.transfers.is_empty()
    }

    /// Carries out every queued transfer action; whether there was any.
    pub(super) fn drive_transfers(&mut self) -> bool {
        let mut progressed = false;
        let mut i = 0;
        while i < self.transfers.len() {
            while let Some(action) = self.transfers[i].core.poll_action() {
                progressed = true;
                self.act(i, action);
            }
            if self.transfers[i].core.is_done() {
                let t = self.transfers.remove(i);
                self.retire(t);
            } else {
                i += 1;
            }
        }
        progressed
    }

    fn act(&mut self, i: usize, action: TransferAction) {
        let now = clock::now();
        let endpoint = self.shared.endpoint.clone();
        let caller_media = self.media.clone();
        let t = &mut self.transfers[i];
        match action {
            TransferAction::CancelAgent => {
                let Some(leg) = t.agent.as_ref() else { return };
                match (uac::build_cancel(&leg.invite), leg.dest) {
                    (Some(cancel), Some(dest)) => {
                        tokio::spawn(async move {
                            if let Err(e) = send_request(endpoint, cancel, None, dest).await {
                                tracing::debug!(error = %e, "CANCEL to the agent failed");
                            }
                        });
                    }
                    _ => tracing::warn!(
                        "the agent INVITE cannot be cancelled: no CANCEL or no address"
                    ),
                }
            }
            TransferAction::ByeAgent => {
                let Some(leg) = t.agent.as_mut() else { return };
                if let (Some(bridge), Some(caller)) = (leg.bridge.take(), caller_media.as_ref()) {
                    bridge.stop(caller, &leg.media);
                }
                let Some((bye, peer)) = leg
                    .dialog
                    .as_ref()
                    .and_then(|d| Some((d.request("BYE", &[], None)?, d.peer)))
                else {
                    tracing::warn!("no dialog to send the agent a BYE in");
                    return;
                };
                tokio::spawn(async move {
                    if let Err(e) = send_request(endpoint, bye, None, peer).await {
                        tracing::debug!(error = %e, "BYE to the agent failed");
                    }
                });
            }
            TransferAction::StartBridge => {
                // The caller hears the agent now, not the bot. The stop is
                // queued before the bridge's own playback starts.
                if let Some(c) = &self.control {
                    c.stop_playback();
                }
                let bridged = match (t.agent.as_mut(), caller_media.as_ref()) {
                    (Some(leg), Some(caller)) => leg.bridge_with(caller),
                    _ => false,
                };
                if bridged {
                    self.transferred = true;
                } else {
                    t.core.handle_bridge_failed(now);
                }
            }
            TransferAction::HangupCaller => {
                self.transferred = true;
                self.uas.handle_hangup(now, 480);
            }
            TransferAction::Finish(result) => {
                if result.is_ok() {
                    self.transferred = true;
                }
                if let Some(reply) = t.reply.take() {
                    let _ = reply.send(result);
                }
            }
        }
    }

    /// Drops a finished transfer and its agent leg.
    fn retire(&mut self, mut t: ActiveTransfer) {
        if let Some(reply) = t.reply.take() {
            let _ = reply.send(Err(TransferError::CallGone));
        }
        let Some(mut leg) = t.agent.take() else {
            return;
        };
        if let (Some(bridge), Some(caller)) = (leg.bridge.take(), self.media.as_ref()) {
            bridge.stop(caller, &leg.media);
        }
        leg.media.close();
        if let Ok(mut calls) = self.shared.calls.lock() {
            calls.remove(&(leg.call_id.clone(), leg.local_tag.clone()));
        }
    }

    /// The call task ends: give up every transfer.
    pub(super) fn end_transfers(&mut self) {
        for t in std::mem::take(&mut self.transfers) {
            self.retire(t);
        }
    }
}

/// The agent's dialog from its 2xx; requests go to its Contact when that
/// is an IP address, else where the INVITE went.
fn agent_dialog(leg: &AgentLeg, response: &Response, via_host: String) -> Option<DialogInfo> {
    let contact = response
        .headers
        .iter()
        .find(|h| h.name().eq_ignore_ascii_case("Contact"))
        .map(|h| msg::uri_of(h.value()));
    let peer = contact.as_deref().and_then(uac::target_addr).or(leg.dest)?;
    Some(DialogInfo::from_uac(
        &leg.invite,
        response,
        peer,
        via_host,
        "UDP",
    ))
}

impl AgentLeg {
    fn sdp_answer(&mut self, response: &Response) {
        let answer = String::from_utf8_lossy(&response.body).into_owned();
        match self.sdp.accept_answer(&answer) {
            Ok(negotiated) => {
                if let Err(e) = self.media.start(params_of(&negotiated)) {
                    tracing::warn!(error = %e, "agent media did not start");
                }
            }
            Err(e) => tracing::warn!(error = %e, "the agent's SDP answer was refused"),
        }
    }

    /// Bridges the agent's media with the caller's; false if the agent's
    /// media never started (no acceptable SDP answer).
    fn bridge_with(&mut self, caller: &MediaSession) -> bool {
        if self.media.params().is_none() {
            return false;
        }
        match MediaSession::bridge(caller, &self.media) {
            Ok(b) => {
                self.bridge = Some(b);
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "bridging the agent failed");
                false
            }
        }
    }
}
