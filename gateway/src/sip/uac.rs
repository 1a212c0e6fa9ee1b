//! Outbound requests of a call: the INVITE to a transfer agent (a client
//! INVITE transaction on the server's rsipstack endpoint), its CANCEL,
//! and the target address of a SIP URI.
//!
//! Requests are written as text and parsed by rsipstack, like
//! [`super::msg::DialogInfo::request`]. rsipstack's client transaction
//! retransmits, runs timers A/B, and ACKs every final response itself
//! (`auto_ack_2xx`), so the call task only sees the responses.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use rsipstack::sip::prelude::*;
use rsipstack::sip::{Request, Response, SipMessage};
use rsipstack::transaction::endpoint::EndpointInner;
use rsipstack::transaction::key::{TransactionKey, TransactionRole};
use rsipstack::transaction::transaction::Transaction;
use rsipstack::transport::SipAddr;
use tokio::sync::mpsc;

use super::msg;
use super::session::CallInput;

/// What the agent's INVITE transaction reports to the call task.
#[derive(Debug)]
pub(crate) enum AgentEvent {
    /// The INVITE left for this address.
    Sent(Option<SocketAddr>),
    Response(Box<Response>),
    /// The transaction ended (after its final response, or without one).
    Gone,
}

/// An INVITE to an agent, and the identity of the dialog it may form.
pub(crate) struct AgentInvite {
    pub request: Request,
    pub call_id: String,
    /// Our From tag: incoming requests of the agent's dialog carry it as
    /// their To tag.
    pub local_tag: String,
}

/// Keeps what is safe in a URI user part; the caller id goes into our
/// From so the agent sees who is calling.
fn uri_user(caller_id: &str) -> String {
    let user: String = caller_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "+-_.!~*'()&=$,".contains(*c))
        .take(64)
        .collect();
    if user.is_empty() {
        "voxgate".into()
    } else {
        user
    }
}

/// Builds the INVITE to `target` (a checked `sip:`/`sips:` URI) offering
/// `sdp`, with `headers` added verbatim (checked by the caller).
pub(crate) fn build_invite(
    target: &str,
    caller_id: &str,
    via_host: &str,
    headers: &[(String, String)],
    sdp: &str,
) -> Option<AgentInvite> {
    let call_id = format!("{}@voxgate", msg::random_token());
    let local_tag = msg::random_token();
    let mut text = format!(
        "INVITE {target} SIP/2.0\r\nVia: SIP/2.0/UDP {via_host};branch=z9hG4bK{branch};rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:{user}@{via_host}>;tag={local_tag}\r\nTo: <{target}>\r\n\
         Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:voxgate@{via_host}>\r\nAllow: {allow}\r\n",
        branch = msg::random_token(),
        user = uri_user(caller_id),
        allow = super::ALLOW,
    );
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    text.push_str(&format!(
        "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    ));
    let request = Request::try_from(text.as_bytes()).ok()?;
    Some(AgentInvite {
        request,
        call_id,
        local_tag,
    })
}

/// The CANCEL of `invite` (RFC 3261 §9.1): same Request-URI, top Via,
/// From, To, Call-ID and CSeq number, and the same Route.
pub(crate) fn build_cancel(invite: &Request) -> Option<Request> {
    let seq = invite.cseq_header().ok()?.seq().ok()?;
    let mut text = format!(
        "CANCEL {uri} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\nFrom: {from}\r\nTo: {to}\r\n\
         Call-ID: {cid}\r\nCSeq: {seq} CANCEL\r\n",
        uri = invite.uri,
        via = msg::header(invite, "Via")?,
        from = msg::header(invite, "From")?,
        to = msg::header(invite, "To")?,
        cid = msg::call_id(invite),
    );
    for route in msg::headers(invite, "Route") {
        text.push_str(&format!("Route: {route}\r\n"));
    }
    text.push_str("Content-Length: 0\r\n\r\n");
    Request::try_from(text.as_bytes()).ok()
}

/// The address of a SIP URI whose host is an IP literal (port 5060 by
/// default). Other hosts are left to rsipstack's resolver.
pub(crate) fn target_addr(uri: &str) -> Option<SocketAddr> {
    let rest = uri.split_once(':')?.1;
    let hostport = rest.rsplit_once('@').map(|(_, h)| h).unwrap_or(rest);
    let hostport = hostport.split([';', '?']).next()?;
    if let Ok(addr) = hostport.parse::<SocketAddr>() {
        return Some(addr);
    }
    let host = hostport.trim_start_matches('[').trim_end_matches(']');
    host.parse::<IpAddr>()
        .ok()
        .map(|ip| SocketAddr::new(ip, 5060))
}

/// Sends the INVITE on a client transaction and reports its responses as
/// [`CallInput::Agent`] for leg `leg`.
pub(crate) fn start_invite(
    endpoint: Arc<EndpointInner>,
    invite: Request,
    destination: Option<SocketAddr>,
    leg: u64,
    inputs: mpsc::UnboundedSender<CallInput>,
) {
    tokio::spawn(async move {
        let report = |ev| inputs.send(CallInput::Agent(leg, ev)).is_ok();
        let key = match TransactionKey::from_request(&invite, TransactionRole::Client) {
            Ok(k) => k,
            Err(e) => {
                tracing::warn!(error = %e, "agent INVITE has no transaction key");
                report(AgentEvent::Gone);
                return;
            }
        };
        let mut tx = Transaction::new_client(key, invite, endpoint, None);
        tx.destination = destination.map(SipAddr::from);
        if let Err(e) = tx.send().await {
            tracing::warn!(error = %e, "agent INVITE could not be sent");
            report(AgentEvent::Gone);
            return;
        }
        let sent_to = tx
            .destination
            .as_ref()
            .and_then(|d| d.get_socketaddr().ok())
            .or(destination);
        if !report(AgentEvent::Sent(sent_to)) {
            return;
        }
        while let Some(m) = tx.receive().await {
            if let SipMessage::Response(r) = m {
                if !report(AgentEvent::Response(Box::new(r))) {
                    return;
                }
            }
        }
        report(AgentEvent::Gone);
    });
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn invite_and_cancel_match() {
        let headers = vec![
            ("X-Voxgate-Call-Id".to_string(), "v1".to_string()),
            ("X-Intent".into(), "billing".into()),
        ];
        let inv = build_invite(
            "sip:agent@127.0.0.1:5099",
            "+33 1 (23)",
            "127.0.0.1:5060",
            &headers,
            "v=0\r\n",
        )
        .unwrap();
        let text = inv.request.to_string();
        assert!(
            text.starts_with("INVITE sip:agent@127.0.0.1:5099 SIP/2.0\r\n"),
            "{text}"
        );
        assert_eq!(
            msg::header(&inv.request, "X-Intent").as_deref(),
            Some("billing")
        );
        assert_eq!(
            msg::from_tag(&inv.request).as_deref(),
            Some(inv.local_tag.as_str())
        );
        assert!(msg::header(&inv.request, "From")
            .unwrap()
            .starts_with("<sip:+331(23)@127.0.0.1:5060>"));
        let cancel = build_cancel(&inv.request).unwrap();
        assert_eq!(
            msg::header(&cancel, "Via"),
            msg::header(&inv.request, "Via")
        );
        assert_eq!(cancel.cseq_header().unwrap().seq().unwrap(), 1);
        assert_eq!(cancel.uri.to_string(), "sip:agent@127.0.0.1:5099");
    }

    #[test]
    fn target_addresses() {
        assert_eq!(
            target_addr("sip:a@127.0.0.1:5099"),
            Some("127.0.0.1:5099".parse().unwrap())
        );
        assert_eq!(
            target_addr("sip:127.0.0.1;transport=udp"),
            Some("127.0.0.1:5060".parse().unwrap())
        );
        assert_eq!(
            target_addr("sip:a@[::1]:5070"),
            Some("[::1]:5070".parse().unwrap())
        );
        assert_eq!(target_addr("sip:a@pbx.invalid"), None);
    }
}
