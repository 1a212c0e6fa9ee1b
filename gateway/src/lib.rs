//! voxgate's telephony edge: SIP signalling, SDP negotiation, RTP media,
//! DTMF, codecs and call control.
//!
//! # Layout
//! - [`clock`]: the only module that reads the wall clock. Everything else is
//!   handed `now` as an argument.
//! - [`config`]: `GatewayConfig`, read from TOML, environment and flags and
//!   validated in full before any socket is bound.
//! - [`crypto`]: installs the one rustls crypto provider (ring).
//! - [`codec`]: G.711 μ-law and A-law.
//! - [`rtp`]: sans-IO RTP/RTCP: sessions with symmetric latching, the jitter
//!   buffer, the outbound pacer, RTCP SR/RR statistics, the port allocator.
//! - [`dtmf`]: one [`dtmf::DtmfEvent`] type fed by RFC 4733 telephone-events,
//!   SIP INFO bodies and an in-band Goertzel detector.
//! - [`sdp`]: RFC 3264 offer/answer for PCMU, PCMA and telephone-event.
//! - [`audio`]: 20 ms PCM frames, WAV sources resampled with rubato, and
//!   espeak-ng speech run as a subprocess.
//! - [`media`]: the tokio driver of one call's RTP socket.
//! - [`sip`]: the adapter over rsipstack, the pre-parse guard, the sans-IO UAS
//!   call-control core, trunk protection, transfers and the UAC.
//! - [`call`]: the call handle the rest of voxgate drives, and the routing
//!   hook that decides which handler answers a DID.
//! - [`demo`]: the built-in demo handler.
//! - [`softphone`]: the UAC behind `voxgate call`, for tests, demos and QA.
//! - [`metrics`] and [`http`]: Prometheus metrics, health and readiness.
//!
//! # The driver contract
//! Protocol cores (`rtp`, `dtmf`, `sdp`, `sip::uas`) are pure state machines.
//! They take `handle_*(now, input)` and hand work back through `poll_*()`:
//! a packet to send, an event, or the next deadline. They never touch a
//! socket or the clock. A thin tokio driver owns each socket: it feeds one
//! input, drains every output, then sleeps until the earliest deadline.

// Tests may start a virtual clock from the real one.
#![cfg_attr(test, allow(clippy::disallowed_methods))]

pub mod audio;
pub mod call;
pub mod clock;
pub mod codec;
pub mod config;
pub mod crypto;
pub mod demo;
pub mod dtmf;
pub mod http;
pub mod media;
pub mod metrics;
pub mod rtp;
pub mod sdp;
pub mod sip;
pub mod softphone;
