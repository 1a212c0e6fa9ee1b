//! RFC 3264 offer/answer for one audio stream: PCMU, PCMA and
//! telephone-event/8000.
//!
//! `rtc-sdp` parses and prints the text; this module holds the semantics.
//! It is pure: no sockets, no clock.
//!
//! ```text
//!   INVITE with SDP                      INVITE without SDP (late offer)
//!   offer ──► answer() ──► 200 SDP       offer() ──► 200 SDP
//!                 │                          ACK SDP ──► accept_answer()
//!                 ▼                                         │
//!           NegotiatedMedia ◄───────────────────────────────┘
//!           (remote addr, codec + PT, DTMF PT, ptime, directions, hold)
//! ```
//!
//! - The answer follows the offerer's codec order among those we support and
//!   carries a single codec, plus telephone-event with the offerer's payload
//!   type.
//! - Every offered m-line is answered, in order; the ones we do not use
//!   (video, a second audio stream, SRTP) get port 0.
//! - Hold is `a=sendonly`/`a=inactive`, or the RFC 2543 `c=0.0.0.0`.
//! - [`SdpSession`] keeps our `o=` line: the version goes up exactly when the
//!   SDP we send changes.
//! - [`SdpError::sip_status`] tells the SIP layer what to answer on failure
//!   (488 for no common codec, 400 for malformed SDP).

mod build;
mod remote;
#[cfg(test)]
mod tests;

use std::net::{IpAddr, SocketAddr};

use crate::codec::Codec;

pub use remote::{RemoteMedia, RemoteSdp};

/// The payload type we offer telephone-event on.
pub const TELEPHONE_EVENT_PT: u8 = 101;
/// The events we offer and answer: the 16 DTMF digits and flash.
pub const TELEPHONE_EVENT_FMTP: &str = "0-16";
/// Packet times we accept from an offer, in ms; others fall back to ours.
pub const PTIME_RANGE_MS: std::ops::RangeInclusive<u32> = 10..=120;

/// What we can do on our side of a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalMedia {
    /// The address our RTP socket is reachable on (put in `c=` and `o=`).
    pub address: IpAddr,
    pub port: u16,
    /// Our codecs, most preferred first (used in our offers; an answer
    /// follows the offerer's order instead).
    pub codecs: Vec<Codec>,
    /// Whether we offer and accept RFC 4733 telephone-events.
    pub telephone_event: bool,
    /// Our packet time, used when the offer states none.
    pub ptime_ms: u32,
}

impl LocalMedia {
    /// PCMU and PCMA, telephone-event, 20 ms.
    pub fn new(address: IpAddr, port: u16) -> Self {
        Self {
            address,
            port,
            codecs: vec![Codec::Pcmu, Codec::Pcma],
            telephone_event: true,
            ptime_ms: 20,
        }
    }
}

/// A stream direction, as in `a=sendrecv` and friends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    /// The attribute name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    /// Parses an attribute name; `None` for any other attribute.
    pub fn from_attribute(name: &str) -> Option<Self> {
        match name {
            "sendrecv" => Some(Direction::SendRecv),
            "sendonly" => Some(Direction::SendOnly),
            "recvonly" => Some(Direction::RecvOnly),
            "inactive" => Some(Direction::Inactive),
            _ => None,
        }
    }

    /// The direction the other side sees: sendonly ↔ recvonly.
    pub const fn mirror(self) -> Self {
        match self {
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            d => d,
        }
    }

    pub const fn sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }

    pub const fn receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }

    /// The direction that does only what both allow.
    pub const fn intersect(self, other: Direction) -> Self {
        Self::from_flags(
            self.sends() && other.sends(),
            self.receives() && other.receives(),
        )
    }

    pub const fn from_flags(send: bool, recv: bool) -> Self {
        match (send, recv) {
            (true, true) => Direction::SendRecv,
            (true, false) => Direction::SendOnly,
            (false, true) => Direction::RecvOnly,
            (false, false) => Direction::Inactive,
        }
    }
}

impl std::fmt::Display for Direction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The outcome of a negotiation: what the media driver needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NegotiatedMedia {
    /// Where to send RTP. The IP is unspecified (`0.0.0.0`) on RFC 2543 hold.
    pub remote: SocketAddr,
    pub codec: Codec,
    /// The payload type of `codec` on the wire (normally its static one).
    pub payload_type: u8,
    /// The telephone-event payload type, if both sides support it.
    pub dtmf_payload_type: Option<u8>,
    pub ptime_ms: u32,
    /// Our direction: whether we may send and should expect to receive.
    pub direction: Direction,
    /// The direction the far end declared.
    pub remote_direction: Direction,
    /// The far end put the call on hold (sendonly, inactive, or c=0.0.0.0).
    pub on_hold: bool,
}

/// Why an SDP could not be negotiated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    #[error("empty SDP body")]
    Empty,
    #[error("malformed SDP: {reason}")]
    Malformed { reason: String },
    #[error("media line {index} has no connection address (c=)")]
    MissingConnection { index: usize },
    #[error("connection address {0:?} is not an IP address")]
    UnsupportedAddress(String),
    /// No audio stream we can use: no PCMU/PCMA over RTP/AVP, or no audio
    /// at all, or the answer rejected our audio stream.
    #[error("no common codec (we support PCMU and PCMA over RTP/AVP)")]
    NoCommonCodec,
    #[error("the answer has {answered} media lines, our offer had {offered}")]
    MediaCountMismatch { offered: usize, answered: usize },
    #[error("an answer arrived but no offer of ours is pending")]
    NoPendingOffer,
}

impl SdpError {
    /// The SIP status to refuse an offer with: 488 Not Acceptable Here when
    /// we understood it but share no codec, 400 when it is malformed.
    pub const fn sip_status(&self) -> u16 {
        match self {
            SdpError::NoCommonCodec => 488,
            _ => 400,
        }
    }
}

/// Our side of an SDP session across one dialog: the `o=` line, the last
/// SDP we sent, and an offer of ours awaiting its answer.
#[derive(Debug, Clone)]
pub struct SdpSession {
    session_id: u64,
    version: u64,
    /// The last SDP we sent, without its `o=` line, to tell whether the
    /// next one changed.
    last_sent: Option<String>,
    pending_offer: Option<(LocalMedia, Direction)>,
}

impl SdpSession {
    /// A session with this id; the first SDP carries version 1.
    pub fn new(session_id: u64) -> Self {
        Self {
            session_id,
            version: 1,
            last_sent: None,
            pending_offer: None,
        }
    }

    /// A session with a random 63-bit id.
    pub fn with_random_id() -> Self {
        Self::new(rand::random::<u64>() >> 1)
    }

    pub fn session_id(&self) -> u64 {
        self.session_id
    }

    /// The version of the last SDP sent (or of the first one to come).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Answers `offer`. A re-INVITE goes through here too: the version
    /// moves only if our answer differs from the last SDP we sent.
    pub fn answer(
        &mut self,
        offer: &str,
        local: &LocalMedia,
    ) -> Result<(String, NegotiatedMedia), SdpError> {
        let remote = RemoteSdp::parse(offer)?;
        let (desc, negotiated) = build::answer(&remote, local)?;
        self.pending_offer = None;
        Ok((self.stamp(desc, local.address), negotiated))
    }

    /// Our offer, sendrecv.
    pub fn offer(&mut self, local: &LocalMedia) -> String {
        self.offer_with_direction(local, Direction::SendRecv)
    }

    /// Our offer with a chosen direction (sendonly to put the far end on
    /// hold, for example). It is remembered for [`SdpSession::accept_answer`].
    pub fn offer_with_direction(&mut self, local: &LocalMedia, direction: Direction) -> String {
        let desc = build::offer(local, direction);
        self.pending_offer = Some((local.clone(), direction));
        self.stamp(desc, local.address)
    }

    /// Takes the answer to our pending offer.
    pub fn accept_answer(&mut self, answer: &str) -> Result<NegotiatedMedia, SdpError> {
        let (local, direction) = self
            .pending_offer
            .as_ref()
            .ok_or(SdpError::NoPendingOffer)?;
        let remote = RemoteSdp::parse(answer)?;
        let negotiated = build::accept(&remote, local, *direction)?;
        self.pending_offer = None;
        Ok(negotiated)
    }

    /// Whether an offer of ours awaits its answer.
    pub fn has_pending_offer(&self) -> bool {
        self.pending_offer.is_some()
    }

    fn stamp(&mut self, mut desc: rtc_sdp::SessionDescription, address: IpAddr) -> String {
        desc.origin = build::origin(self.session_id, 0, address);
        let body = without_origin(&desc.marshal());
        match &self.last_sent {
            Some(last) if *last != body => self.version += 1,
            _ => {}
        }
        self.last_sent = Some(body);
        desc.origin.session_version = self.version;
        desc.marshal()
    }
}

fn without_origin(sdp: &str) -> String {
    sdp.split("\r\n")
        .filter(|l| !l.starts_with("o="))
        .collect::<Vec<_>>()
        .join("\r\n")
}

/// Answers `offer` once, with a fresh [`SdpSession`]. For a dialog, keep an
/// `SdpSession` and call [`SdpSession::answer`], so re-INVITE answers keep
/// the same `o=` id and the right version.
pub fn answer(offer: &str, local: &LocalMedia) -> Result<(String, NegotiatedMedia), SdpError> {
    SdpSession::with_random_id().answer(offer, local)
}

/// Our sendrecv offer: for a late offer (INVITE without SDP: ours goes in
/// the 200, the answer comes in the ACK) and for the softphone's INVITE.
pub fn offer(local: &LocalMedia, session: &mut SdpSession) -> String {
    session.offer(local)
}

/// Takes the answer to an offer made from `local` with sendrecv. Prefer
/// [`SdpSession::accept_answer`], which remembers what was offered.
pub fn accept_answer(answer: &str, local: &LocalMedia) -> Result<NegotiatedMedia, SdpError> {
    let remote = RemoteSdp::parse(answer)?;
    build::accept(&remote, local, Direction::SendRecv)
}
