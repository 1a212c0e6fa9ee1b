//! Sans-IO RTP and RTCP for one call leg.
//!
//! # Layout
//! - [`packet`]: parse and write datagrams with `rtc-rtp`; malformed input is
//!   an [`RtpError`], never a panic; no payload copies.
//! - [`sender`]: [`RtpSender`], the outbound stream state (random SSRC,
//!   sequence numbers, timestamps in samples, marker on talkspurt start).
//! - [`receiver`]: [`RtpReceiver`], the inbound stream state (symmetric RTP
//!   latching, extended sequence numbers, RFC 3550 jitter and loss).
//! - [`jitter`]: [`JitterBuffer`], fixed-depth playout with reordering,
//!   duplicate and late-packet drops and simple concealment.
//! - [`pacer`]: [`Pacer`], the outbound 20 ms schedule anchored at its start,
//!   with lateness percentiles and clean skip-ahead.
//! - [`rtcp`]: [`RtcpSession`], SR/RR every 5 s and parsing of the peer's.
//! - [`ports`]: [`PortAllocator`], even RTP ports with RTCP on port + 1.
//!
//! # Contract
//! Nothing here reads the clock or touches a socket. Every input carries
//! `now: Instant`; media time is counted in samples of the codec clock
//! (8 kHz for G.711). Cores expose `handle_*` for inputs and `poll_*` for
//! outputs and deadlines; `crate::media` is the driver that owns sockets.

pub mod jitter;
pub mod pacer;
pub mod packet;
pub mod ports;
pub mod receiver;
pub mod rtcp;
pub mod sender;

pub use jitter::{JitterBuffer, JitterConfig, JitterOutput, JitterStats};
pub use pacer::{Pacer, PacerTick};
pub use packet::{parse, RtpPacket};
pub use ports::{PortAllocator, PortError, PortLease};
pub use receiver::{ReceiveOutcome, RtpReceiver};
pub use rtcp::{RemoteReport, RtcpError, RtcpSession};
pub use sender::RtpSender;

/// Why an RTP datagram was refused.
#[derive(Debug, thiserror::Error)]
pub enum RtpError {
    #[error("RTP datagram of {len} bytes is shorter than a header")]
    TooShort { len: usize },
    #[error("RTP version {version}, expected 2")]
    BadVersion { version: u8 },
    #[error("RTP padding of {pad} bytes in a payload of {payload}")]
    BadPadding { pad: usize, payload: usize },
    #[error("RTP packet of {len} bytes is larger than a datagram")]
    TooLarge { len: usize },
    #[error("malformed RTP packet: {0}")]
    Malformed(#[source] rtc_shared::error::Error),
}
