//! The sans-IO call-control core of one inbound call (the UAS side).
//!
//! rsipstack owns the transactions: it retransmits our final responses,
//! absorbs retransmitted requests and answers CANCEL itself. This core sits
//! above them and decides *what* the call does: when to ring, when to
//! answer, which in-dialog request is legal in which state, when to give up
//! waiting for the ACK, and when to send BYE.
//!
//! Inputs are `handle_*(now, ..)`; outputs are drained with
//! [`Uas::poll_response`], [`Uas::poll_request`], [`Uas::poll_event`] and
//! [`Uas::poll_timeout`]. Timers are [`UasTimer`]s in a deadline table.
//!
//! ```text
//!  INVITE ─► Proceeding ──180──► Early ──200──► Accepted ──ACK──► Confirmed
//!               │  │               │  │            │                 │
//!        reject │  └── CANCEL ─────┘  │   no ACK/BYE│         BYE either way
//!               ▼                     ▼            ▼                 ▼
//!                            Terminated
//! ```

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Identifies one server transaction, assigned by the driver.
pub type TxId = u64;

/// The timers of one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UasTimer {
    /// The configured ringing period is over: send the 200.
    Answer,
    /// No ACK for our 2xx within 64*T1 (RFC 3261 §13.3.1.4): send BYE.
    AckTimeout,
}

const TIMERS: usize = 2;

impl UasTimer {
    const fn index(self) -> usize {
        match self {
            UasTimer::Answer => 0,
            UasTimer::AckTimeout => 1,
        }
    }
    const ALL: [UasTimer; TIMERS] = [UasTimer::Answer, UasTimer::AckTimeout];
}

/// Timing of the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UasConfig {
    /// Send 180 Ringing before answering.
    pub send_ringing: bool,
    /// Wait this long between the INVITE and the 200.
    pub answer_delay: Duration,
    /// How long to wait for the ACK of our 2xx (64*T1 = 32 s).
    pub ack_timeout: Duration,
}

impl Default for UasConfig {
    fn default() -> Self {
        Self {
            send_ringing: true,
            answer_delay: Duration::ZERO,
            ack_timeout: Duration::from_secs(32),
        }
    }
}

/// What a response carries in its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    None,
    /// An SDP answer, or our offer for a late-offer INVITE.
    Sdp(Vec<u8>),
}

/// A response for the driver to send on transaction `tx`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub tx: TxId,
    pub status: u16,
    /// A reason phrase other than the standard one, if any.
    pub reason: Option<String>,
    pub body: Body,
    /// Extra headers, for example `Retry-After`.
    pub headers: Vec<(String, String)>,
}

/// A request the call sends within its dialog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutRequest {
    Bye,
}

/// Why the call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// Refused before answer (router decision, 488, drain...).
    Rejected(u16),
    /// The caller cancelled before we answered.
    Cancelled,
    /// The caller sent BYE.
    RemoteBye,
    /// We sent BYE.
    LocalBye,
    /// We answered but no ACK came.
    NoAck,
}

/// What happened, for the driver and the handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UasEvent {
    /// The 200 went out.
    Answered,
    /// The ACK arrived; `sdp` is the answer of a late-offer call.
    Confirmed {
        sdp: Option<Vec<u8>>,
    },
    /// A legal in-dialog request the driver must answer itself (INFO,
    /// re-INVITE) through [`Uas::handle_in_dialog_reply`].
    InDialog {
        tx: TxId,
        method: InDialogMethod,
    },
    Terminated(EndReason),
}

/// In-dialog requests handed to the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InDialogMethod {
    ReInvite,
    Info,
    Refer,
    Notify,
    Options,
}

/// How the router and media setup decided the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Answer with this SDP (an answer, or our offer if the INVITE had none).
    Answer { sdp: Vec<u8> },
    Reject {
        status: u16,
        reason: Option<String>,
        headers: Vec<(String, String)>,
    },
}

/// An input the current state does not accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UasError {
    #[error("in state {state}: expected {expected}, got {got}")]
    Unexpected {
        state: &'static str,
        expected: &'static str,
        got: &'static str,
    },
}

/// Waiting for the routing decision (100 Trying is out).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proceeding {
    invite: TxId,
}

/// 180 sent or the answer delay running; the 200 is scheduled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Early {
    invite: TxId,
    sdp: Vec<u8>,
}

/// 200 sent, waiting for the ACK (RFC 6026's name for this state).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// We want to hang up as soon as the ACK arrives.
    hangup_pending: bool,
}

/// ACK received: the dialog is up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confirmed {
    /// A re-INVITE we are still answering.
    reinvite: Option<TxId>,
}

/// The call is over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Terminated {
    pub reason: EndReason,
}

/// The state of the call, one type per RFC 3261 state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UasState {
    Proceeding(Proceeding),
    Early(Early),
    Accepted(Accepted),
    Confirmed(Confirmed),
    Terminated(Terminated),
}

impl UasState {
    pub const fn name(&self) -> &'static str {
        match self {
            UasState::Proceeding(_) => "Proceeding",
            UasState::Early(_) => "Early",
            UasState::Accepted(_) => "Accepted",
            UasState::Confirmed(_) => "Confirmed",
            UasState::Terminated(_) => "Terminated",
        }
    }
}

/// One inbound call's control state machine.
#[derive(Debug)]
pub struct Uas {
    cfg: UasConfig,
    state: UasState,
    deadlines: [Option<Instant>; TIMERS],
    responses: VecDeque<Reply>,
    requests: VecDeque<OutRequest>,
    events: VecDeque<UasEvent>,
}

fn reply(tx: TxId, status: u16) -> Reply {
    Reply {
        tx,
        status,
        reason: None,
        body: Body::None,
        headers: Vec::new(),
    }
}

impl Uas {
    /// A new call for the INVITE on transaction `invite`; queues 100 Trying.
    pub fn new(cfg: UasConfig, invite: TxId) -> Self {
        let mut uas = Self {
            cfg,
            state: UasState::Proceeding(Proceeding { invite }),
            deadlines: [None; TIMERS],
            responses: VecDeque::new(),
            requests: VecDeque::new(),
            events: VecDeque::new(),
        };
        uas.responses.push_back(reply(invite, 100));
        uas
    }

    pub fn state(&self) -> &UasState {
        &self.state
    }

    pub fn is_terminated(&self) -> bool {
        matches!(self.state, UasState::Terminated(_))
    }

    fn unexpected(&self, expected: &'static str, got: &'static str) -> UasError {
        UasError::Unexpected {
            state: self.state.name(),
            expected,
            got,
        }
    }

    fn terminate(&mut self, reason: EndReason) {
        self.deadlines = [None; TIMERS];
        self.state = UasState::Terminated(Terminated { reason });
        self.events.push_back(UasEvent::Terminated(reason));
    }

    /// The routing and media decision for the INVITE.
    pub fn handle_decision(&mut self, now: Instant, decision: Decision) -> Result<(), UasError> {
        let UasState::Proceeding(p) = &self.state else {
            return Err(self.unexpected("nothing (the call is decided)", "a routing decision"));
        };
        let invite = p.invite;
        match decision {
            Decision::Reject {
                status,
                reason,
                headers,
            } => {
                self.responses.push_back(Reply {
                    tx: invite,
                    status,
                    reason,
                    body: Body::None,
                    headers,
                });
                self.terminate(EndReason::Rejected(status));
            }
            Decision::Answer { sdp } => {
                if self.cfg.send_ringing {
                    self.responses.push_back(reply(invite, 180));
                }
                self.state = UasState::Early(Early { invite, sdp });
                self.deadlines[UasTimer::Answer.index()] = Some(now + self.cfg.answer_delay);
                if self.cfg.answer_delay.is_zero() {
                    self.handle_timeout(now);
                }
            }
        }
        Ok(())
    }

    /// CANCEL for the INVITE (rsipstack has answered the CANCEL itself).
    pub fn handle_cancel(&mut self, _now: Instant) -> Result<(), UasError> {
        let invite = match &self.state {
            UasState::Proceeding(p) => p.invite,
            UasState::Early(e) => e.invite,
            // RFC 3261 §9.2: CANCEL after the final response has no effect.
            UasState::Accepted(_) | UasState::Confirmed(_) | UasState::Terminated(_) => {
                return Ok(())
            }
        };
        self.responses.push_back(reply(invite, 487));
        self.terminate(EndReason::Cancelled);
        Ok(())
    }

    /// The ACK of our 2xx, with its body (the late-offer answer).
    pub fn handle_ack(&mut self, _now: Instant, sdp: Option<Vec<u8>>) -> Result<(), UasError> {
        match &mut self.state {
            UasState::Accepted(a) => {
                let hangup = a.hangup_pending;
                self.deadlines[UasTimer::AckTimeout.index()] = None;
                self.state = UasState::Confirmed(Confirmed { reinvite: None });
                self.events.push_back(UasEvent::Confirmed { sdp });
                if hangup {
                    self.requests.push_back(OutRequest::Bye);
                    self.terminate(EndReason::LocalBye);
                }
                Ok(())
            }
            // The ACK of a re-INVITE's 2xx.
            UasState::Confirmed(_) => Ok(()),
            _ => Err(self.unexpected("no ACK before our 2xx", "ACK")),
        }
    }

    /// BYE from the caller on transaction `tx`.
    pub fn handle_bye(&mut self, _now: Instant, tx: TxId) -> Result<(), UasError> {
        match &self.state {
            // RFC 3261 §15: the caller may BYE before its ACK.
            UasState::Accepted(_) | UasState::Confirmed(_) => {
                self.responses.push_back(reply(tx, 200));
                self.terminate(EndReason::RemoteBye);
                Ok(())
            }
            UasState::Terminated(_) => {
                self.responses.push_back(reply(tx, 481));
                Err(self.unexpected("nothing (the call is over)", "BYE"))
            }
            _ => {
                self.responses.push_back(reply(tx, 481));
                Err(self.unexpected("CANCEL before the dialog is confirmed", "BYE"))
            }
        }
    }

    /// An in-dialog INFO, re-INVITE, REFER, NOTIFY or OPTIONS on `tx`.
    pub fn handle_in_dialog(
        &mut self,
        _now: Instant,
        tx: TxId,
        method: InDialogMethod,
    ) -> Result<(), UasError> {
        match &mut self.state {
            UasState::Confirmed(c) => {
                if method == InDialogMethod::ReInvite {
                    if c.reinvite.is_some() {
                        // RFC 3261 §14.2: one offer at a time.
                        self.responses.push_back(reply(tx, 491));
                        return Ok(());
                    }
                    c.reinvite = Some(tx);
                }
                self.events.push_back(UasEvent::InDialog { tx, method });
                Ok(())
            }
            UasState::Accepted(_) if method != InDialogMethod::ReInvite => {
                self.events.push_back(UasEvent::InDialog { tx, method });
                Ok(())
            }
            UasState::Accepted(_) => {
                self.responses.push_back(Reply {
                    headers: vec![("Retry-After".into(), "1".into())],
                    ..reply(tx, 500)
                });
                Ok(())
            }
            _ => {
                self.responses.push_back(reply(tx, 481));
                Err(self.unexpected("a confirmed dialog", "an in-dialog request"))
            }
        }
    }

    /// The driver's answer to an [`UasEvent::InDialog`] request.
    pub fn handle_in_dialog_reply(&mut self, _now: Instant, reply: Reply) -> Result<(), UasError> {
        if let UasState::Confirmed(c) = &mut self.state {
            if c.reinvite == Some(reply.tx) {
                c.reinvite = None;
            }
        }
        if self.is_terminated() && reply.status >= 200 && reply.status < 300 {
            return Err(self.unexpected(
                "nothing (the call is over)",
                "a 2xx to an in-dialog request",
            ));
        }
        self.responses.push_back(reply);
        Ok(())
    }

    /// We want the call to end: refuse it if unanswered, else BYE.
    pub fn handle_hangup(&mut self, _now: Instant, status_if_unanswered: u16) {
        match &mut self.state {
            UasState::Proceeding(Proceeding { invite }) | UasState::Early(Early { invite, .. }) => {
                let invite = *invite;
                self.responses
                    .push_back(reply(invite, status_if_unanswered));
                self.terminate(EndReason::Rejected(status_if_unanswered));
            }
            // RFC 3261 §15: the UAS waits for the ACK before its BYE.
            UasState::Accepted(a) => a.hangup_pending = true,
            UasState::Confirmed(_) => {
                self.requests.push_back(OutRequest::Bye);
                self.terminate(EndReason::LocalBye);
            }
            UasState::Terminated(_) => {}
        }
    }

    /// Fires every timer whose deadline has passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        for timer in UasTimer::ALL {
            let i = timer.index();
            if self.deadlines[i].is_some_and(|d| d <= now) {
                self.deadlines[i] = None;
                self.fire(now, timer);
            }
        }
    }

    fn fire(&mut self, now: Instant, timer: UasTimer) {
        match (timer, &self.state) {
            (UasTimer::Answer, UasState::Early(e)) => {
                let (invite, sdp) = (e.invite, e.sdp.clone());
                self.responses.push_back(Reply {
                    body: Body::Sdp(sdp),
                    ..reply(invite, 200)
                });
                self.state = UasState::Accepted(Accepted {
                    hangup_pending: false,
                });
                self.deadlines[UasTimer::AckTimeout.index()] = Some(now + self.cfg.ack_timeout);
                self.events.push_back(UasEvent::Answered);
            }
            (UasTimer::AckTimeout, UasState::Accepted(_)) => {
                self.requests.push_back(OutRequest::Bye);
                self.terminate(EndReason::NoAck);
            }
            _ => {}
        }
    }

    pub fn poll_response(&mut self) -> Option<Reply> {
        self.responses.pop_front()
    }

    pub fn poll_request(&mut self) -> Option<OutRequest> {
        self.requests.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<UasEvent> {
        self.events.pop_front()
    }

    /// The earliest pending deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadlines.iter().flatten().min().copied()
    }

    /// Which timer is due at the earliest deadline, for logs and tests.
    pub fn next_timer(&self) -> Option<(UasTimer, Instant)> {
        UasTimer::ALL
            .iter()
            .filter_map(|t| self.deadlines[t.index()].map(|d| (*t, d)))
            .min_by_key(|(_, d)| *d)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
#[path = "uas_tests.rs"]
mod tests;
