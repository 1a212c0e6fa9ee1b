//! The per-call media task: owns the RTP and RTCP sockets, feeds the
//! sans-IO cores and sleeps until their earliest deadline.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};

use super::turns::TurnSource;
use super::{
    AudioFrame, Command, DtmfMode, FrameSource, MediaConfig, MediaError, MediaEvent, MediaParams,
    MediaStats, PlaybackId,
};
use crate::clock;
use crate::codec::Codec;
use crate::dtmf::goertzel::InbandDetector;
use crate::dtmf::rfc4733::{Rfc4733Receiver, Rfc4733Sender};
use crate::dtmf::tone::ToneGenerator;
use crate::dtmf::DtmfEvent;
use crate::metrics::{self, DropLabel, DropReason};
use crate::rtp::jitter::JitterConfig;
use crate::rtp::{
    self, JitterBuffer, Pacer, PacerTick, PortLease, ReceiveOutcome, RtcpSession, RtpReceiver,
    RtpSender,
};

const FRAME: Duration = Duration::from_millis(20);
const FRAME_SAMPLES: usize = 160;
const CLOCK_RATE: u32 = 8000;
/// Silence after an in-band digit, so the far detector sees a gap.
const INBAND_GAP: Duration = Duration::from_millis(60);
/// Ports tried when a leased one turns out to be taken by someone else.
const BIND_ATTEMPTS: usize = 16;

/// Leases a port pair and binds RTP and RTCP on it.
pub(super) async fn bind_pair(
    cfg: &MediaConfig,
) -> Result<(UdpSocket, UdpSocket, PortLease), MediaError> {
    // Leases of ports we could not bind are held until we are done, so
    // the allocator hands out a different one each try.
    let mut taken = Vec::new();
    let mut last_err = None;
    for _ in 0..BIND_ATTEMPTS {
        let lease = cfg.ports.allocate()?;
        let rtp = UdpSocket::bind(SocketAddr::new(cfg.local_ip, lease.rtp_port())).await;
        let rtcp = UdpSocket::bind(SocketAddr::new(cfg.local_ip, lease.rtcp_port())).await;
        match (rtp, rtcp) {
            (Ok(a), Ok(b)) => return Ok((a, b, lease)),
            (Err(e), _) | (_, Err(e)) => {
                last_err = Some(MediaError::Bind {
                    port: lease.rtp_port(),
                    source: e,
                });
                taken.push(lease);
            }
        }
    }
    Err(last_err.unwrap_or(MediaError::Closed))
}

/// What a playback pulls its frames from.
pub(super) enum Playback {
    /// A finite source (a file, synthesised text, PCM, a bridge leg).
    Source(Box<dyn FrameSource>),
    /// Turn-tagged streaming speech, gated on the call's current turn.
    Turns(TurnSource),
}

enum Outgoing {
    Rfc4733(Rfc4733Sender),
    Tone(ToneGenerator),
}

enum Input {
    Command(Option<Command>),
    Rtp(std::io::Result<(usize, SocketAddr)>),
    Rtcp(std::io::Result<(usize, SocketAddr)>),
    Timer,
}

/// State of one running call leg.
struct Running {
    params: MediaParams,
    pacer: Pacer,
    receiver: RtpReceiver,
    jitter: JitterBuffer,
    rtcp: RtcpSession,
    last_rx: Instant,
    timed_out: bool,
    rtcp_remote: Option<SocketAddr>,
    media_samples: u64,
}

pub(super) struct Driver {
    cfg: MediaConfig,
    rtp: UdpSocket,
    rtcp: UdpSocket,
    _lease: PortLease,
    commands: mpsc::UnboundedReceiver<Command>,
    events: mpsc::UnboundedSender<MediaEvent>,
    stats_tx: watch::Sender<MediaStats>,
    run: Option<Running>,
    sender: RtpSender,
    rfc_rx: Rfc4733Receiver,
    /// Once the peer sends telephone-events, in-band detection stops, so
    /// a gateway that sends both does not double every digit.
    rfc_seen: bool,
    detector: Option<InbandDetector>,
    playback: Option<(PlaybackId, Playback)>,
    subscriber: Option<mpsc::Sender<AudioFrame>>,
    dtmf_queue: VecDeque<(char, Duration, DtmfMode)>,
    dtmf_out: Option<Outgoing>,
    talkspurt: bool,
    frame: [i16; FRAME_SAMPLES],
    pcm: Vec<i16>,
    payload: Vec<u8>,
    out: Vec<u8>,
    stats: MediaStats,
    lost_reported: u64,
    ticks: u64,
}

impl Driver {
    pub(super) fn new(
        cfg: MediaConfig,
        rtp: UdpSocket,
        rtcp: UdpSocket,
        lease: PortLease,
        commands: mpsc::UnboundedReceiver<Command>,
        events: mpsc::UnboundedSender<MediaEvent>,
        stats_tx: watch::Sender<MediaStats>,
    ) -> Self {
        let detector = if cfg.inband_dtmf {
            InbandDetector::new(CLOCK_RATE).ok()
        } else {
            None
        };
        Self {
            cfg,
            rtp,
            rtcp,
            _lease: lease,
            commands,
            events,
            stats_tx,
            run: None,
            sender: RtpSender::new_random(),
            rfc_rx: Rfc4733Receiver::new(CLOCK_RATE, Duration::from_millis(250)),
            rfc_seen: false,
            detector,
            playback: None,
            subscriber: None,
            dtmf_queue: VecDeque::new(),
            dtmf_out: None,
            talkspurt: true,
            frame: [0; FRAME_SAMPLES],
            pcm: Vec::with_capacity(FRAME_SAMPLES * 2),
            payload: Vec::with_capacity(FRAME_SAMPLES * 2),
            out: Vec::with_capacity(rtp::packet::MAX_DATAGRAM),
            stats: MediaStats::default(),
            lost_reported: 0,
            ticks: 0,
        }
    }

    pub(super) async fn run(mut self) {
        let mut rtp_buf = vec![0u8; 2048];
        let mut rtcp_buf = vec![0u8; 2048];
        loop {
            let deadline = self.next_deadline();
            let sleep = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
                    None => std::future::pending().await,
                }
            };
            let input = tokio::select! {
                c = self.commands.recv() => Input::Command(c),
                r = self.rtp.recv_from(&mut rtp_buf) => Input::Rtp(r),
                r = self.rtcp.recv_from(&mut rtcp_buf) => Input::Rtcp(r),
                _ = sleep => Input::Timer,
            };
            let now = clock::now();
            match input {
                Input::Command(None) | Input::Command(Some(Command::Close)) => break,
                Input::Command(Some(c)) => self.handle_command(now, c),
                Input::Rtp(Ok((n, from))) => self.handle_rtp(now, &rtp_buf[..n], from),
                Input::Rtcp(Ok((n, from))) => self.handle_rtcp(now, &rtcp_buf[..n], from),
                // Unconnected UDP sockets report little; a failed receive
                // (ICMP echo of an earlier send) is not fatal.
                Input::Rtp(Err(_)) | Input::Rtcp(Err(_)) | Input::Timer => {}
            }
            self.handle_timers(now);
        }
        if let Some((id, _)) = self.playback.take() {
            let _ = self
                .events
                .send(MediaEvent::PlaybackFinished { id, stopped: true });
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let r = self.run.as_ref()?;
        let mut d = r.pacer.poll_timeout().min(r.rtcp.poll_timeout());
        if r.params.recv {
            if let Some(j) = r.jitter.poll_timeout() {
                d = d.min(j);
            }
            if !r.timed_out {
                d = d.min(r.last_rx + self.cfg.rtp_timeout);
            }
        }
        if let Some(t) = self.rfc_rx.poll_timeout() {
            d = d.min(t);
        }
        Some(d)
    }

    fn emit(&self, e: MediaEvent) {
        let _ = self.events.send(e);
    }

    fn emit_dtmf(&self, d: DtmfEvent) {
        self.emit(MediaEvent::Dtmf(d));
    }

    fn handle_command(&mut self, now: Instant, c: Command) {
        match c {
            Command::Start(params) => self.start(now, params),
            Command::Play { id, source } => {
                if let Some((old, _)) = self.playback.replace((id, source)) {
                    self.emit(MediaEvent::PlaybackFinished {
                        id: old,
                        stopped: true,
                    });
                }
            }
            Command::StopPlayback => {
                if let Some((id, _)) = self.playback.take() {
                    self.emit(MediaEvent::PlaybackFinished { id, stopped: true });
                }
            }
            Command::Subscribe(tx) => self.subscriber = Some(tx),
            Command::Dtmf {
                digit,
                duration,
                mode,
            } => self.dtmf_queue.push_back((digit, duration, mode)),
            Command::Close => {}
        }
    }

    fn start(&mut self, now: Instant, params: MediaParams) {
        match self.run.as_mut() {
            None => {
                self.run = Some(Running {
                    params,
                    pacer: Pacer::new(now, FRAME, FRAME_SAMPLES as u64),
                    receiver: RtpReceiver::new(CLOCK_RATE, now),
                    jitter: JitterBuffer::new(JitterConfig::with_depth(Duration::from_millis(
                        u64::from(self.cfg.jitter_depth_ms.max(20)),
                    ))),
                    rtcp: RtcpSession::new(
                        now,
                        rtp::rtcp::DEFAULT_INTERVAL,
                        &format!("{:08x}@voxgate", self.sender.ssrc()),
                        CLOCK_RATE,
                    ),
                    last_rx: now,
                    timed_out: false,
                    rtcp_remote: None,
                    media_samples: 0,
                });
                self.talkspurt = true;
            }
            Some(r) => {
                let old = r.params;
                if old.remote != params.remote {
                    r.receiver.unlatch();
                    r.rtcp_remote = None;
                }
                if params.send && !old.send {
                    self.talkspurt = true;
                }
                if params.recv && !old.recv {
                    r.last_rx = now;
                    r.timed_out = false;
                }
                r.params = params;
            }
        }
    }

    fn handle_rtp(&mut self, now: Instant, datagram: &[u8], from: SocketAddr) {
        let Some(r) = self.run.as_mut() else { return };
        let m = metrics::global();
        let packet = match rtp::parse(datagram) {
            Ok(p) => p,
            Err(_) => {
                self.stats.packets_malformed += 1;
                m.rtp_dropped_total
                    .get_or_create(&DropLabel {
                        reason: DropReason::RtpMalformed,
                    })
                    .inc();
                return;
            }
        };
        if !r.params.recv {
            return;
        }
        let pt = packet.header.payload_type;
        let is_dtmf = r.params.dtmf_payload_type == Some(pt);
        // Decode the negotiated payload type, and the other static G.711
        // type too: some carriers switch without a re-INVITE.
        let codec = if pt == r.params.payload_type {
            Some(r.params.codec)
        } else if is_dtmf {
            None
        } else {
            Codec::from_payload_type(pt)
        };
        match r.receiver.handle_packet(
            now,
            from,
            &packet.header,
            packet.payload.len(),
            codec.is_some(),
        ) {
            ReceiveOutcome::Accepted { ext_seq, .. } => {
                m.rtp_packets_rx_total.inc();
                r.last_rx = now;
                if r.timed_out {
                    r.timed_out = false;
                    let _ = self.events.send(MediaEvent::RtpResumed);
                }
                if let Some(codec) = codec {
                    self.pcm.clear();
                    codec.decode(packet.payload, &mut self.pcm);
                    r.jitter.handle_packet(now, ext_seq, &self.pcm);
                } else if is_dtmf && self.cfg.rfc4733 {
                    self.rfc_seen = true;
                    if self
                        .rfc_rx
                        .handle_packet(now, packet.header.timestamp, packet.payload)
                        .is_err()
                    {
                        self.stats.packets_malformed += 1;
                    }
                    while let Some(d) = self.rfc_rx.poll_event() {
                        self.emit_dtmf(d);
                    }
                }
            }
            ReceiveOutcome::UnknownSource => {
                m.rtp_dropped_total
                    .get_or_create(&DropLabel {
                        reason: DropReason::RtpUnknownSource,
                    })
                    .inc();
            }
            ReceiveOutcome::Probation => {}
        }
    }

    fn handle_rtcp(&mut self, now: Instant, datagram: &[u8], from: SocketAddr) {
        let ssrc = self.sender.ssrc();
        let Some(r) = self.run.as_mut() else { return };
        match r.rtcp_remote {
            None => r.rtcp_remote = Some(from),
            Some(a) if a != from => return,
            Some(_) => {}
        }
        match r.rtcp.handle_packet(now, clock::wall_now(), datagram, ssrc) {
            Ok(input) => {
                if let Some(rep) = input.report {
                    metrics::global().rtp_jitter_ms.observe(rep.jitter_ms);
                    self.stats.remote_fraction_lost = Some(rep.fraction_lost);
                    self.stats.remote_jitter_ms = Some(rep.jitter_ms);
                    self.stats.rtt_ms = rep.rtt.map(|d| d.as_secs_f64() * 1000.0);
                }
                if input.bye {
                    self.emit(MediaEvent::RtcpBye);
                }
            }
            Err(_) => self.stats.packets_malformed += 1,
        }
    }

    fn handle_timers(&mut self, now: Instant) {
        let mut ticked = false;
        while let Some(tick) = self.run.as_mut().and_then(|r| r.pacer.poll_tick(now)) {
            self.send_tick(now, tick);
            ticked = true;
        }
        self.play_out(now);
        self.rfc_rx.handle_timeout(now);
        while let Some(d) = self.rfc_rx.poll_event() {
            self.emit_dtmf(d);
        }
        self.send_rtcp(now);
        if let Some(r) = self.run.as_mut() {
            if r.params.recv && !r.timed_out && now >= r.last_rx + self.cfg.rtp_timeout {
                r.timed_out = true;
                let _ = self.events.send(MediaEvent::RtpTimeout);
            }
        }
        if ticked {
            self.publish();
        }
    }

    /// Fills `self.frame` from the playback, or silence. This is the last
    /// stage before the packetizer: a turn stream drops stale turns here.
    fn pull_playback(&mut self, now: Instant) {
        self.frame = [0; FRAME_SAMPLES];
        let Some((id, playback)) = self.playback.as_mut() else {
            return;
        };
        let id = *id;
        let (next, ratio) = match playback {
            Playback::Source(source) => (
                source.next_frame(),
                (source.sample_rate() / CLOCK_RATE).max(1) as usize,
            ),
            Playback::Turns(turns) => (turns.next_frame(now), 1),
        };
        match next {
            Some(f) => {
                // Plain averaging decimation for 16/48 kHz sources; the
                // audio module resamples properly for anything else.
                for (i, out) in self.frame.iter_mut().enumerate() {
                    let chunk = f.samples.get(i * ratio..(i + 1) * ratio).unwrap_or(&[]);
                    if !chunk.is_empty() {
                        let sum: i32 = chunk.iter().map(|s| i32::from(*s)).sum();
                        *out = (sum / chunk.len() as i32) as i16;
                    }
                }
            }
            None => {
                self.playback = None;
                self.emit(MediaEvent::PlaybackFinished { id, stopped: false });
            }
        }
    }

    fn send_tick(&mut self, now: Instant, tick: PacerTick) {
        let m = metrics::global();
        m.rtp_pacing_jitter_ms
            .observe(tick.lateness.as_secs_f64() * 1000.0);
        self.ticks += 1;
        self.pull_playback(now);
        let Some(r) = self.run.as_mut() else { return };
        r.media_samples = tick.media_samples;
        let params = r.params;
        let target = r.receiver.latched().unwrap_or(params.remote);

        if self.dtmf_out.is_none() {
            if let Some((digit, duration, mode)) = self.dtmf_queue.pop_front() {
                self.dtmf_out = match mode {
                    DtmfMode::Rfc4733 => Rfc4733Sender::new(
                        digit,
                        duration,
                        CLOCK_RATE,
                        FRAME_SAMPLES as u16,
                        tick.media_samples,
                    )
                    .ok()
                    .map(Outgoing::Rfc4733),
                    DtmfMode::Inband => ToneGenerator::new(digit, CLOCK_RATE, duration, INBAND_GAP)
                        .ok()
                        .map(Outgoing::Tone),
                };
            }
        }
        if let Some(Outgoing::Tone(g)) = self.dtmf_out.as_mut() {
            g.fill(&mut self.frame);
            if g.is_done() {
                self.dtmf_out = None;
            }
        }
        if !params.send {
            self.talkspurt = true;
            return;
        }
        let written = if let Some(Outgoing::Rfc4733(s)) = self.dtmf_out.as_mut() {
            match (s.next_packet(), params.dtmf_payload_type) {
                (Some(p), Some(pt)) => Some(self.sender.write_packet(
                    pt,
                    p.marker,
                    p.start_samples,
                    &p.payload,
                    &mut self.out,
                )),
                _ => {
                    self.dtmf_out = None;
                    self.talkspurt = true;
                    None
                }
            }
        } else {
            None
        };
        let written = match written {
            Some(w) => w,
            None => {
                self.payload.clear();
                params.codec.encode(&self.frame, &mut self.payload);
                let marker = std::mem::take(&mut self.talkspurt);
                self.sender.write_packet(
                    params.payload_type,
                    marker,
                    tick.media_samples,
                    &self.payload,
                    &mut self.out,
                )
            }
        };
        if written.is_ok() && self.rtp.try_send_to(&self.out, target).is_ok() {
            m.rtp_packets_tx_total.inc();
        }
    }

    fn play_out(&mut self, now: Instant) {
        let Some(r) = self.run.as_mut() else { return };
        if !r.params.recv {
            return;
        }
        while let Some(out) = r.jitter.poll_output(now) {
            let samples = out.samples().unwrap_or(&[0; FRAME_SAMPLES]);
            if let Some(d) = self.detector.as_mut().filter(|_| !self.rfc_seen) {
                d.handle_samples(samples);
                while let Some(e) = d.poll_event() {
                    let _ = self.events.send(MediaEvent::Dtmf(e));
                }
            }
            if let Some(tx) = &self.subscriber {
                match tx.try_send(AudioFrame {
                    samples: samples.to_vec(),
                    sample_rate: CLOCK_RATE,
                }) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        self.stats.frames_dropped_subscriber += 1
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => self.subscriber = None,
                }
            }
        }
    }

    fn send_rtcp(&mut self, now: Instant) {
        let Some(r) = self.run.as_mut() else { return };
        let rtp_now = self.sender.rtp_timestamp(r.media_samples);
        match r.rtcp.poll_report(
            now,
            clock::wall_now(),
            rtp_now,
            &self.sender,
            &mut r.receiver,
            &mut self.out,
        ) {
            Ok(true) => {
                let target = r.rtcp_remote.unwrap_or_else(|| {
                    SocketAddr::new(
                        r.params.remote.ip(),
                        r.params.remote.port().saturating_add(1),
                    )
                });
                let _ = self.rtcp.try_send_to(&self.out, target);
                if r.receiver.ssrc().is_some() {
                    metrics::global()
                        .rtp_jitter_ms
                        .observe(r.receiver.jitter_ms());
                }
            }
            Ok(false) => {}
            Err(_) => {}
        }
    }

    fn publish(&mut self) {
        let Some(r) = self.run.as_ref() else { return };
        let rx = r.receiver.stats();
        let jb = r.jitter.stats();
        let s = &mut self.stats;
        s.packets_rx = rx.packets;
        s.packets_tx = self.sender.packets_sent();
        s.packets_lost = rx.lost;
        s.jitter_ms = r.receiver.jitter_ms();
        s.packets_ignored = rx.ignored_other_source;
        s.packets_late = jb.late;
        s.frames_concealed = jb.concealed;
        s.frames_skipped = r.pacer.skipped_total();
        s.latched_remote = r.receiver.latched();
        s.rtcp_reports_sent = r.rtcp.reports_sent();
        // Percentiles sort the window: once a second is plenty.
        if self.ticks % 50 == 1 {
            let ms = |d: Option<Duration>| d.map_or(0.0, |d| d.as_secs_f64() * 1000.0);
            s.pacing_p50_ms = ms(r.pacer.lateness_percentile(50.0));
            s.pacing_p99_ms = ms(r.pacer.lateness_percentile(99.0));
        }
        if rx.lost > self.lost_reported {
            metrics::global()
                .rtp_packets_lost_total
                .inc_by(rx.lost - self.lost_reported);
            self.lost_reported = rx.lost;
        }
        self.stats_tx.send_replace(self.stats);
    }
}
