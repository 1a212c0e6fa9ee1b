//! The tokio driver of one call leg's media: an RTP and an RTCP socket, and
//! the sans-IO cores of [`crate::rtp`] and [`crate::dtmf`] behind them.
//!
//! # Layout
//! - `mod.rs` (this file): the public contract, [`MediaSession`] and its
//!   config, parameters, events, stats and errors.
//! - `driver`: the one task per call that owns the sockets.
//! - [`turns`]: turn-tagged streaming playback; the stage before the
//!   packetizer drops frames of older turns (barge-in without leaks).
//! - `bridge`: [`Bridge`], decoded audio relayed between two sessions (the
//!   B2BUA leg of a bridged transfer); transcoding PCMU/PCMA falls out of
//!   decoding on one side and encoding on the other.
//!
//! # Contract
//! 1. [`MediaSession::bind`] leases an even port from the
//!    [`PortAllocator`], binds RTP on it and RTCP on port + 1 at
//!    [`MediaConfig::local_ip`], and spawns the driver. Put
//!    [`MediaSession::local_port`] into the SDP.
//! 2. [`MediaSession::start`] with the negotiated [`MediaParams`] starts
//!    sending (silence when nothing plays, so NATs and carriers see a live
//!    stream) and receiving. [`MediaSession::update`] applies a re-INVITE:
//!    codec change, hold (`send: false`), a new remote address.
//! 3. Media is symmetric: the driver sends to the first address RTP actually
//!    came from (latching) and ignores, and counts, other sources.
//! 4. Audio in both directions is 8 kHz mono 16-bit PCM in 20 ms
//!    [`AudioFrame`]s. Playback pulls one frame per packet time from a
//!    [`FrameSource`]; [`MediaSession::subscribe_audio`] yields the caller's
//!    audio after the jitter buffer, one frame every 20 ms once the first
//!    packet came (silence frames while the peer sends nothing).
//! 5. DTMF from RFC 4733 and, if enabled, the in-band detector arrives as
//!    [`MediaEvent::Dtmf`]. SIP INFO DTMF is the SIP layer's (see
//!    [`crate::dtmf::info`]).
//! 6. Dropping the session or [`MediaSession::close`] stops the driver and
//!    gives the port back.
//!
//! Every method is non-blocking: it queues a command to the driver.
//! Only `ptime_ms == 20` is supported, both ways: the jitter buffer plays
//! one packet per 20 ms, so a peer sending 30 ms packets would be played
//! too slowly and trimmed by overflow drops (not done: re-chunking).

mod bridge;
mod driver;
pub mod turns;

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};

pub use crate::audio::{AudioFrame, FrameSource};
pub use crate::call::PlaybackId;
use crate::codec::Codec;
use crate::dtmf::DtmfEvent;
use crate::rtp::{PortAllocator, PortError};
pub use bridge::{Bridge, ChannelSource};

/// The sample rate of every frame the media layer takes and gives.
pub const MEDIA_SAMPLE_RATE: u32 = 8000;

/// Per-process media settings, shared by every call.
#[derive(Debug, Clone)]
pub struct MediaConfig {
    /// The address to bind and to put in SDP `c=`.
    pub local_ip: IpAddr,
    pub ports: Arc<PortAllocator>,
    /// Jitter buffer depth; 40 to 60 ms suits most carriers.
    pub jitter_depth_ms: u32,
    /// No RTP for this long while receiving raises [`MediaEvent::RtpTimeout`].
    pub rtp_timeout: Duration,
    /// Run the Goertzel detector on received audio.
    pub inband_dtmf: bool,
    /// Accept RFC 4733 telephone-events.
    pub rfc4733: bool,
}

impl MediaConfig {
    /// Defaults: 60 ms jitter buffer, 30 s RTP timeout, both DTMF kinds on.
    pub fn new(local_ip: IpAddr, ports: Arc<PortAllocator>) -> Self {
        Self {
            local_ip,
            ports,
            jitter_depth_ms: 60,
            rtp_timeout: Duration::from_secs(30),
            inband_dtmf: true,
            rfc4733: true,
        }
    }
}

/// What offer/answer negotiated for the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaParams {
    /// The peer's RTP address from SDP (until latching finds the real one).
    pub remote: SocketAddr,
    pub codec: Codec,
    /// The payload type for `codec` (normally its static one).
    pub payload_type: u8,
    /// The telephone-event payload type, if negotiated.
    pub dtmf_payload_type: Option<u8>,
    /// Packet time; only 20 is supported for sending.
    pub ptime_ms: u32,
    /// We send RTP (false when the peer is `recvonly`/`inactive` or on hold).
    pub send: bool,
    /// We take RTP (false when the peer is `sendonly`... from its side, i.e.
    /// our direction is `sendonly` or `inactive`).
    pub recv: bool,
}

impl MediaParams {
    /// Send and receive `codec` with its static payload type, 20 ms.
    pub fn new(remote: SocketAddr, codec: Codec) -> Self {
        Self {
            remote,
            codec,
            payload_type: codec.payload_type(),
            dtmf_payload_type: Some(101),
            ptime_ms: 20,
            send: true,
            recv: true,
        }
    }
}

/// How [`MediaSession::send_dtmf`] sends a digit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DtmfMode {
    /// RFC 4733 telephone-event packets (needs `dtmf_payload_type`).
    Rfc4733,
    /// Tones mixed into the audio.
    Inband,
}

/// What the driver reports.
#[derive(Debug, Clone, PartialEq)]
pub enum MediaEvent {
    Dtmf(DtmfEvent),
    /// A playback reached its end (`stopped == false`), was stopped, or was
    /// replaced by a newer one (`stopped == true`).
    PlaybackFinished {
        id: PlaybackId,
        stopped: bool,
    },
    /// No RTP for [`MediaConfig::rtp_timeout`] while receiving. Reported
    /// once; [`MediaEvent::RtpResumed`] follows if packets come back.
    RtpTimeout,
    RtpResumed,
    /// The peer sent RTCP BYE.
    RtcpBye,
}

/// A snapshot of one session's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct MediaStats {
    pub packets_rx: u64,
    pub packets_tx: u64,
    /// Lost on the way to us (RFC 3550 cumulative).
    pub packets_lost: u64,
    /// Our interarrival jitter of the peer's stream, ms.
    pub jitter_ms: f64,
    /// Datagrams from sources other than the latched one.
    pub packets_ignored: u64,
    pub packets_malformed: u64,
    /// Played late (after their frame time) and dropped by the jitter buffer.
    pub packets_late: u64,
    /// Frames concealed by the jitter buffer.
    pub frames_concealed: u64,
    /// Outbound lateness against the 20 ms schedule over the last 10 s.
    pub pacing_p50_ms: f64,
    pub pacing_p99_ms: f64,
    /// Packet times skipped because the driver woke too late.
    pub frames_skipped: u64,
    /// Frames dropped because the audio subscriber did not keep up.
    pub frames_dropped_subscriber: u64,
    pub latched_remote: Option<SocketAddr>,
    /// What the peer reported about our stream in RTCP.
    pub remote_fraction_lost: Option<f64>,
    pub remote_jitter_ms: Option<f64>,
    pub rtt_ms: Option<f64>,
    pub rtcp_reports_sent: u64,
}

/// Why a media operation failed.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error(transparent)]
    Ports(#[from] PortError),
    #[error("binding UDP port {port}: {source}")]
    Bind { port: u16, source: std::io::Error },
    #[error("ptime {0} ms is not supported for sending (only 20)")]
    UnsupportedPtime(u32),
    #[error("playback sample rate {0} Hz is not supported (8000 or a multiple)")]
    UnsupportedSampleRate(u32),
    #[error("'{0}' is not a DTMF digit")]
    InvalidDigit(char),
    #[error("no telephone-event payload type was negotiated")]
    NoTelephoneEvent,
    #[error("the media session has not been started")]
    NotStarted,
    #[error("the media session is closed")]
    Closed,
}

/// A command from the handle to the driver.
enum Command {
    Start(MediaParams),
    Play {
        id: PlaybackId,
        source: driver::Playback,
    },
    StopPlayback,
    Subscribe(mpsc::Sender<AudioFrame>),
    Dtmf {
        digit: char,
        duration: Duration,
        mode: DtmfMode,
    },
    Close,
}

/// One call leg's media. Cheap handle over the driver task.
pub struct MediaSession {
    local_addr: SocketAddr,
    commands: mpsc::UnboundedSender<Command>,
    stats: watch::Receiver<MediaStats>,
    events: Mutex<Option<mpsc::UnboundedReceiver<MediaEvent>>>,
    params: Mutex<Option<MediaParams>>,
    next_playback: Arc<AtomicU64>,
}

impl std::fmt::Debug for MediaSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaSession")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl MediaSession {
    /// Leases a port pair, binds both sockets and spawns the driver. Must
    /// be called inside a tokio runtime.
    pub async fn bind(cfg: MediaConfig) -> Result<Self, MediaError> {
        let (rtp, rtcp, lease) = driver::bind_pair(&cfg).await?;
        let local_addr = rtp.local_addr().map_err(|source| MediaError::Bind {
            port: lease.rtp_port(),
            source,
        })?;
        let (commands, command_rx) = mpsc::unbounded_channel();
        let (event_tx, event_rx) = mpsc::unbounded_channel();
        let (stats_tx, stats) = watch::channel(MediaStats::default());
        let d = driver::Driver::new(cfg, rtp, rtcp, lease, command_rx, event_tx, stats_tx);
        tokio::spawn(d.run());
        Ok(Self {
            local_addr,
            commands,
            stats,
            events: Mutex::new(Some(event_rx)),
            params: Mutex::new(None),
            next_playback: Arc::new(AtomicU64::new(1)),
        })
    }

    /// The bound RTP address (RTCP is on port + 1).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn local_port(&self) -> u16 {
        self.local_addr.port()
    }

    fn send(&self, c: Command) -> Result<(), MediaError> {
        self.commands.send(c).map_err(|_| MediaError::Closed)
    }

    fn check(params: &MediaParams) -> Result<(), MediaError> {
        if params.ptime_ms != 20 {
            return Err(MediaError::UnsupportedPtime(params.ptime_ms));
        }
        Ok(())
    }

    /// Starts the stream with the negotiated parameters.
    pub fn start(&self, params: MediaParams) -> Result<(), MediaError> {
        Self::check(&params)?;
        *self.params.lock().unwrap_or_else(|p| p.into_inner()) = Some(params);
        self.send(Command::Start(params))
    }

    /// Applies renegotiated parameters (re-INVITE): codec, payload types,
    /// hold/resume, a new remote address (which also drops the latch).
    pub fn update(&self, params: MediaParams) -> Result<(), MediaError> {
        self.start(params)
    }

    /// The parameters last given to [`MediaSession::start`]/`update`.
    pub fn params(&self) -> Option<MediaParams> {
        *self.params.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Plays `source` from the next packet time, replacing any playback in
    /// progress. Its end is reported as [`MediaEvent::PlaybackFinished`].
    pub fn start_playback(&self, source: Box<dyn FrameSource>) -> Result<PlaybackId, MediaError> {
        let rate = source.sample_rate();
        if rate == 0 || !rate.is_multiple_of(MEDIA_SAMPLE_RATE) {
            return Err(MediaError::UnsupportedSampleRate(rate));
        }
        let id = self.next_playback.fetch_add(1, Ordering::Relaxed);
        self.send(Command::Play {
            id,
            source: driver::Playback::Source(source),
        })?;
        Ok(id)
    }

    /// Plays turn-tagged speech from `stream` (8 kHz), replacing any
    /// playback in progress, until the runner drops its sender. Frames of
    /// turns older than the stream's [`turns::TurnGate`] are dropped at the
    /// packet they would have gone out in.
    pub fn start_turn_stream(&self, stream: turns::TurnStream) -> Result<PlaybackId, MediaError> {
        let id = self.next_playback.fetch_add(1, Ordering::Relaxed);
        self.send(Command::Play {
            id,
            source: driver::Playback::Turns(turns::TurnSource::new(stream)),
        })?;
        Ok(id)
    }

    /// Stops the playback in progress, if any, at the next packet time.
    pub fn stop_playback(&self) {
        let _ = self.send(Command::StopPlayback);
    }

    /// The caller's decoded audio, 8 kHz, one frame per 20 ms. Each call
    /// replaces the previous subscriber. Frames are dropped (and counted)
    /// if the receiver falls more than a second behind.
    pub fn subscribe_audio(&self) -> mpsc::Receiver<AudioFrame> {
        let (tx, rx) = mpsc::channel(50);
        let _ = self.send(Command::Subscribe(tx));
        rx
    }

    /// The event stream. The first call takes it; later calls get `None`.
    pub fn take_events(&self) -> Option<mpsc::UnboundedReceiver<MediaEvent>> {
        self.events.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// Sends one digit. Digits queue behind one another.
    pub fn send_dtmf(
        &self,
        digit: char,
        duration: Duration,
        mode: DtmfMode,
    ) -> Result<(), MediaError> {
        if crate::dtmf::event_code(digit).is_none() {
            return Err(MediaError::InvalidDigit(digit));
        }
        let params = self.params().ok_or(MediaError::NotStarted)?;
        if mode == DtmfMode::Rfc4733 && params.dtmf_payload_type.is_none() {
            return Err(MediaError::NoTelephoneEvent);
        }
        self.send(Command::Dtmf {
            digit,
            duration,
            mode,
        })
    }

    /// The latest counters (refreshed every packet time).
    pub fn stats(&self) -> MediaStats {
        *self.stats.borrow()
    }

    /// Stops the driver and releases the port pair.
    pub fn close(&self) {
        let _ = self.send(Command::Close);
    }

    /// Relays decoded audio between `a` and `b` both ways, until
    /// [`Bridge::stop`] or either session closes. It takes over both
    /// sessions' audio subscription and playback.
    pub fn bridge(a: &MediaSession, b: &MediaSession) -> Result<Bridge, MediaError> {
        Bridge::start(a, b)
    }
}

impl Drop for MediaSession {
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Close);
    }
}

#[cfg(test)]
mod tests;
