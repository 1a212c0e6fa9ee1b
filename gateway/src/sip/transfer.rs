//! Call transfers: the sans-IO core that decides blind (REFER, RFC 3515)
//! and bridged (B2BUA) transfers, plus the `message/sipfrag` (RFC 3420)
//! parser and the checks on targets and context headers.
//!
//! The call task (`session`) feeds [`Transfer`] with what happens on the
//! wire (`handle_*(now, ..)`) and carries out the [`TransferAction`]s it
//! hands back through [`Transfer::poll_action`]; the one deadline of the
//! current state is [`Transfer::poll_timeout`].
//!
//! ```text
//!  blind:   Referring ──2xx──► Subscribed ──NOTIFY 2xx──► Done (BYE caller, Referred)
//!              │ ≥300/timeout      │ NOTIFY ≥300 / timeout
//!              ▼                   ▼
//!             Done (error, the call stays up)
//!
//!  bridged: Calling ──2xx──► Bridged ──BYE either side──► Done (Bridged)
//!              │ timeout / caller gone
//!              ▼
//!           Cancelling (CANCEL once a 1xx came; BYE a late 2xx) ──► Done
//! ```

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::call::{TransferError, TransferMode, TransferOutcome};

/// A parsed `message/sipfrag` body: the status line of the transferee's
/// call to the target. Headers and body after the line are ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipFrag {
    pub status: u16,
    pub reason: String,
}

impl SipFrag {
    pub fn is_final(&self) -> bool {
        self.status >= 200
    }
}

/// Why a sipfrag body could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SipFragError {
    #[error("empty sipfrag body")]
    Empty,
    #[error("sipfrag body is not UTF-8 text")]
    NotText,
    #[error("sipfrag does not start with a status line")]
    NotAStatusLine,
    #[error("unsupported SIP version {0:?} in sipfrag")]
    BadVersion(String),
    #[error("invalid status code {0:?} in sipfrag")]
    BadStatus(String),
}

/// Parses the status line of a `message/sipfrag` body (`SIP/2.0 200 OK`).
/// Leading blank lines are tolerated; a request line or garbage is an error.
pub fn parse_sipfrag(body: &[u8]) -> Result<SipFrag, SipFragError> {
    let text = std::str::from_utf8(body).map_err(|_| SipFragError::NotText)?;
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .ok_or(SipFragError::Empty)?;
    let mut parts = line.splitn(3, [' ', '\t']);
    let version = parts.next().unwrap_or_default();
    if !version.to_ascii_uppercase().starts_with("SIP/") {
        return Err(SipFragError::NotAStatusLine);
    }
    if !version.eq_ignore_ascii_case("SIP/2.0") {
        return Err(SipFragError::BadVersion(version.to_string()));
    }
    let code = parts.next().unwrap_or_default();
    let status = match code.parse::<u16>() {
        Ok(s) if code.len() == 3 && (100..=699).contains(&s) => s,
        _ => return Err(SipFragError::BadStatus(code.to_string())),
    };
    Ok(SipFrag {
        status,
        reason: parts.next().unwrap_or_default().trim().to_string(),
    })
}

/// Whether an `Event` header value names the `refer` package (RFC 3515 §2.4.4).
pub fn is_refer_event(value: &str) -> bool {
    value
        .split(';')
        .next()
        .is_some_and(|e| e.trim().eq_ignore_ascii_case("refer"))
}

/// Whether a `Subscription-State` value is `terminated`.
pub fn is_terminated(subscription_state: &str) -> bool {
    subscription_state
        .split(';')
        .next()
        .is_some_and(|s| s.trim().eq_ignore_ascii_case("terminated"))
}

/// Checks a transfer target. Blind transfers take `sip:`, `sips:` and
/// `tel:` URIs (sent verbatim); bridged transfers only `sip:`/`sips:`,
/// as there is no outbound proxy to route a `tel:` number through yet.
pub fn check_target(target: &str, mode: TransferMode) -> Result<(), TransferError> {
    let invalid = |why: &str| Err(TransferError::InvalidTarget(format!("{target:?}: {why}")));
    if target.is_empty() || target.len() > 512 {
        return invalid("empty or longer than 512 bytes");
    }
    if target.bytes().any(|b| {
        b.is_ascii_whitespace() || b.is_ascii_control() || b == b'<' || b == b'>' || b == b'"'
    }) {
        return invalid("spaces, quotes, <, > and control characters are not allowed");
    }
    let Some((scheme, rest)) = target.split_once(':') else {
        return invalid("not a URI");
    };
    let scheme = scheme.to_ascii_lowercase();
    match (scheme.as_str(), mode) {
        ("sip" | "sips", _) => {
            let host = rest.rsplit_once('@').map(|(_, h)| h).unwrap_or(rest);
            let host = host.split([';', '?']).next().unwrap_or_default();
            if host.is_empty() || host.starts_with(':') {
                return invalid("no host");
            }
            Ok(())
        }
        ("tel", TransferMode::Blind) if !rest.is_empty() => Ok(()),
        ("tel", TransferMode::Bridged) => invalid(
            "tel: targets need an outbound gateway, which bridged transfers do not have yet",
        ),
        _ => invalid("only sip:, sips: and (blind) tel: URIs are supported"),
    }
}

/// Checks context headers before they go into a request: names are SIP
/// tokens and values hold no line breaks, so nothing can be injected.
pub fn check_headers(headers: &[(String, String)]) -> Result<(), TransferError> {
    const RESERVED: &[&str] = &[
        "via",
        "from",
        "to",
        "call-id",
        "cseq",
        "contact",
        "content-length",
        "content-type",
        "max-forwards",
        "route",
        "record-route",
        "refer-to",
        "referred-by",
        "x-voxgate-call-id",
    ];
    for (name, value) in headers {
        let token = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b));
        if !token || RESERVED.contains(&name.to_ascii_lowercase().as_str()) {
            return Err(TransferError::InvalidTarget(format!(
                "context header name {name:?} is not allowed"
            )));
        }
        if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
            return Err(TransferError::InvalidTarget(format!(
                "context header {name} has a line break"
            )));
        }
    }
    Ok(())
}

/// What the driver must do for the transfer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransferAction {
    /// CANCEL the INVITE to the agent.
    CancelAgent,
    /// BYE the agent's dialog.
    ByeAgent,
    /// The agent answered: accept its SDP, start its media, stop the
    /// caller's playback and bridge; report a failure with
    /// [`Transfer::handle_bridge_failed`].
    StartBridge,
    /// BYE the caller's leg: the call has been handed over.
    HangupCaller,
    /// The result for the handler's `transfer` future. The transfer may
    /// still need a few actions after it (a CANCEL's outcome, for example).
    Finish(Result<TransferOutcome, TransferError>),
}

/// REFER sent, waiting for its final response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Referring {
    deadline: Instant,
}

/// REFER accepted: waiting for the NOTIFY with a final sipfrag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribed {
    deadline: Instant,
    /// A NOTIFY has arrived (a timeout is then `Timeout`, not `NoNotify`).
    notified: bool,
}

/// INVITE sent to the agent, ringing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Calling {
    deadline: Instant,
    provisional: bool,
}

/// We gave up on the agent; the INVITE transaction is still finishing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cancelling {
    /// CANCEL is sent only after a provisional response (RFC 3261 §9.1).
    cancel_sent: bool,
}

/// The agent answered; the two legs are bridged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bridged {
    answered_after: Duration,
}

/// The state of one transfer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransferState {
    Referring(Referring),
    Subscribed(Subscribed),
    Calling(Calling),
    Cancelling(Cancelling),
    Bridged(Bridged),
    Done,
}

impl TransferState {
    pub const fn name(&self) -> &'static str {
        match self {
            TransferState::Referring(_) => "Referring",
            TransferState::Subscribed(_) => "Subscribed",
            TransferState::Calling(_) => "Calling",
            TransferState::Cancelling(_) => "Cancelling",
            TransferState::Bridged(_) => "Bridged",
            TransferState::Done => "Done",
        }
    }
}

/// One transfer of the caller, blind or bridged.
#[derive(Debug)]
pub struct Transfer {
    state: TransferState,
    started: Instant,
    timeout: Duration,
    actions: VecDeque<TransferAction>,
}

impl Transfer {
    /// A blind transfer whose REFER has just been sent.
    pub fn blind(now: Instant, timeout: Duration) -> Self {
        Self::new(
            now,
            timeout,
            TransferState::Referring(Referring {
                deadline: now + timeout,
            }),
        )
    }

    /// A bridged transfer whose INVITE to the agent has just been sent.
    pub fn bridged(now: Instant, ring_timeout: Duration) -> Self {
        Self::new(
            now,
            ring_timeout,
            TransferState::Calling(Calling {
                deadline: now + ring_timeout,
                provisional: false,
            }),
        )
    }

    fn new(now: Instant, timeout: Duration, state: TransferState) -> Self {
        Self {
            state,
            started: now,
            timeout,
            actions: VecDeque::new(),
        }
    }

    pub fn state(&self) -> &TransferState {
        &self.state
    }

    /// Nothing is left to do; the driver may drop the transfer.
    pub fn is_done(&self) -> bool {
        self.state == TransferState::Done
    }

    /// The two legs are bridged.
    pub fn is_bridged(&self) -> bool {
        matches!(self.state, TransferState::Bridged(_))
    }

    fn finish(&mut self, result: Result<TransferOutcome, TransferError>) {
        self.actions.push_back(TransferAction::Finish(result));
    }

    fn fail(&mut self, error: TransferError) {
        self.finish(Err(error));
        self.state = TransferState::Done;
    }

    /// The final response to our REFER; `None` when none came (timeout or
    /// transport failure).
    pub fn handle_refer_response(&mut self, now: Instant, status: Option<u16>) {
        let TransferState::Referring(_) = self.state else {
            return;
        };
        match status {
            None => self.fail(TransferError::Timeout),
            Some(s) if s < 200 => {}
            Some(s) if s < 300 => {
                self.state = TransferState::Subscribed(Subscribed {
                    deadline: now + self.timeout,
                    notified: false,
                })
            }
            Some(s) => self.fail(TransferError::Rejected { status: s }),
        }
    }

    /// A NOTIFY of the refer subscription, already answered 200 by the
    /// driver. It may overtake the 202 of the REFER.
    pub fn handle_notify(&mut self, now: Instant, frag: &SipFrag, terminated: bool) {
        if !matches!(
            self.state,
            TransferState::Referring(_) | TransferState::Subscribed(_)
        ) {
            return;
        }
        match frag.status {
            200..=299 => {
                self.actions.push_back(TransferAction::HangupCaller);
                self.finish(Ok(TransferOutcome::Referred));
                self.state = TransferState::Done;
            }
            300.. => self.fail(TransferError::Rejected {
                status: frag.status,
            }),
            // The subscription ended without a final status: we will never
            // learn how the transfer went.
            _ if terminated => self.fail(TransferError::Timeout),
            _ => {
                self.state = TransferState::Subscribed(Subscribed {
                    deadline: now + self.timeout,
                    notified: true,
                })
            }
        }
    }

    /// A response to the INVITE to the agent other than a 2xx.
    pub fn handle_agent_response(&mut self, now: Instant, status: u16) {
        match (&mut self.state, status) {
            (TransferState::Calling(c), 100..=199) => c.provisional = true,
            (TransferState::Calling(_), 200..=299) => {
                self.state = TransferState::Bridged(Bridged {
                    answered_after: now.saturating_duration_since(self.started),
                });
                self.actions.push_back(TransferAction::StartBridge);
            }
            (TransferState::Calling(_), 408 | 480) => self.fail(TransferError::NoAnswer),
            (TransferState::Calling(_), _) => self.fail(TransferError::Rejected { status }),
            (TransferState::Cancelling(c), 100..=199) if !c.cancel_sent => {
                c.cancel_sent = true;
                self.actions.push_back(TransferAction::CancelAgent);
            }
            (TransferState::Cancelling(_), 100..=199) => {}
            // The agent answered as we cancelled: hang that call up.
            (TransferState::Cancelling(_), 200..=299) => {
                self.actions.push_back(TransferAction::ByeAgent);
                self.state = TransferState::Done;
            }
            (TransferState::Cancelling(_), _) => self.state = TransferState::Done,
            _ => {}
        }
    }

    /// The agent's INVITE transaction ended without a final response.
    pub fn handle_agent_gone(&mut self, _now: Instant) {
        match self.state {
            TransferState::Calling(_) => self.fail(TransferError::NoAnswer),
            TransferState::Cancelling(_) => self.state = TransferState::Done,
            _ => {}
        }
    }

    /// Bridging the answered agent failed (SDP or media): we hang up on
    /// the agent; the caller stays.
    pub fn handle_bridge_failed(&mut self, _now: Instant) {
        if let TransferState::Bridged(_) = self.state {
            self.actions.push_back(TransferAction::ByeAgent);
            self.fail(TransferError::Rejected { status: 488 });
        }
    }

    /// The agent sent BYE on its leg.
    pub fn handle_agent_bye(&mut self, _now: Instant) {
        if let TransferState::Bridged(b) = &self.state {
            let answered_after = b.answered_after;
            self.actions.push_back(TransferAction::HangupCaller);
            self.finish(Ok(TransferOutcome::Bridged {
                agent_answered_after: answered_after,
            }));
            self.state = TransferState::Done;
        }
    }

    /// The caller's leg ended (BYE, drain, local hangup).
    pub fn handle_caller_gone(&mut self, _now: Instant) {
        match &self.state {
            TransferState::Referring(_) | TransferState::Subscribed(_) => {
                self.fail(TransferError::CallGone)
            }
            TransferState::Calling(c) => {
                let provisional = c.provisional;
                self.cancel(provisional);
                self.finish(Err(TransferError::CallGone));
            }
            TransferState::Bridged(b) => {
                let answered_after = b.answered_after;
                self.actions.push_back(TransferAction::ByeAgent);
                self.finish(Ok(TransferOutcome::Bridged {
                    agent_answered_after: answered_after,
                }));
                self.state = TransferState::Done;
            }
            TransferState::Cancelling(_) | TransferState::Done => {}
        }
    }

    fn cancel(&mut self, provisional: bool) {
        if provisional {
            self.actions.push_back(TransferAction::CancelAgent);
        }
        self.state = TransferState::Cancelling(Cancelling {
            cancel_sent: provisional,
        });
    }

    /// Fires the current state's deadline if it has passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.poll_timeout().is_none_or(|d| d > now) {
            return;
        }
        match &self.state {
            TransferState::Referring(_) => self.fail(TransferError::Timeout),
            TransferState::Subscribed(s) if s.notified => self.fail(TransferError::Timeout),
            TransferState::Subscribed(_) => self.fail(TransferError::NoNotify),
            TransferState::Calling(c) => {
                let provisional = c.provisional;
                self.cancel(provisional);
                self.finish(Err(TransferError::NoAnswer));
            }
            _ => {}
        }
    }

    /// The deadline of the current state.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match &self.state {
            TransferState::Referring(r) => Some(r.deadline),
            TransferState::Subscribed(s) => Some(s.deadline),
            TransferState::Calling(c) => Some(c.deadline),
            _ => None,
        }
    }

    pub fn poll_action(&mut self) -> Option<TransferAction> {
        self.actions.pop_front()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
#[path = "transfer_tests.rs"]
mod tests;
