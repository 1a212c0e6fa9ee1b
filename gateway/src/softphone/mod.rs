//! The SIP UAC behind `voxgate call`: for tests, demos, QA and the eval
//! replay runner, which drives [`run`] in-process for many calls at once.
//!
//! # Layout
//! - [`options`]: [`CallOptions`] in, [`CallSummary`] out, and the small
//!   parsers the CLI uses.
//! - `log`: the pure pieces: the response log, the silence test.
//! - `uac`: the driver: one rsipstack endpoint (its own UDP socket) and one
//!   [`crate::media::MediaSession`] per call.
//!
//! # A call
//! INVITE with our SDP offer (digest auth on 401/407 by rsipstack) →
//! final answer or [`CallOptions::timeout`] (then CANCEL) → on 2xx: start
//! RTP, play [`CallOptions::play`], record what arrives, send the digits
//! after [`CallOptions::dtmf_delay`] → BYE after
//! [`CallOptions::hangup_after`], unless the far end sends BYE first.
//!
//! Each call has its own socket, so concurrent calls share no SIP state.
//! Not supported: re-INVITEs from the far end (answered 488), REFER
//! (answered 603), TCP/TLS (UDP only).

mod log;
pub mod options;
mod uac;

pub use options::{
    parse_duration, validate_digits, CallOptions, CallSummary, Credentials, Disposition,
    DurationParseError, HangupBy, InvalidDigit, ReceivedDigit, RtpSummary,
};
pub use uac::run;

use crate::call::CallError;
use crate::media::MediaError;
use crate::sdp::SdpError;

/// Why a call could not be made or finished. A rejected or unanswered call
/// is not an error: it is a [`Disposition`] in the [`CallSummary`].
#[derive(Debug, thiserror::Error)]
pub enum SoftphoneError {
    #[error("invalid SIP URI {uri:?}: {reason}")]
    InvalidUri { uri: String, reason: String },
    #[error(transparent)]
    InvalidDigit(#[from] InvalidDigit),
    /// The SIP stack failed (bind, send, malformed answer).
    #[error("SIP: {0}")]
    Sip(#[source] Box<rsipstack::Error>),
    #[error("media: {0}")]
    Media(#[from] MediaError),
    #[error("audio to play: {0}")]
    Audio(#[from] CallError),
    /// The call was answered with SDP we cannot use; we hung up.
    #[error("the answer's SDP is unusable: {0}")]
    Sdp(#[from] SdpError),
    /// The 2xx carried no SDP answer; we hung up.
    #[error("the 2xx answer carried no SDP")]
    NoAnswerSdp,
    #[error("recording {}: {source}", path.display())]
    Record {
        path: std::path::PathBuf,
        source: crate::audio::WavError,
    },
}

impl From<rsipstack::Error> for SoftphoneError {
    fn from(e: rsipstack::Error) -> Self {
        SoftphoneError::Sip(Box::new(e))
    }
}
