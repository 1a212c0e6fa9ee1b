//! A bank of RTP endpoints for the benchmark: one UDP socket per call.
//!
//! Each endpoint waits for the gateway's first packet, latches onto its
//! source address (the gateway sends and receives on one socket, RFC 4961
//! symmetric RTP) and from then on sends one 20 ms PCMU packet per packet
//! time for a fixed duration: faint PCMU silence, or a loop of the caller
//! audio it was given (the AI benchmark's speech). It counts what it sent
//! and what it received, and derives receive loss from RTP sequence numbers per SSRC, so loss is
//! measured in both directions without trusting either side's counters.
#![allow(clippy::disallowed_methods)] // test code times itself with the real clock

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::UdpSocket;

/// Totals over every endpoint of a bank.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct PeerStats {
    /// Endpoints that received at least one packet from the gateway.
    pub latched: u64,
    pub tx_packets: u64,
    pub rx_packets: u64,
    /// Packets the gateway's sequence numbers say were sent to us.
    pub rx_expected: u64,
    /// `rx_expected - rx_packets` (duplicates can make a stream negative;
    /// such streams count 0).
    pub rx_lost: u64,
}

/// Sequence tracking of one received SSRC (RFC 3550 A.1, simplified).
#[derive(Debug, Clone, Copy, Default)]
struct SeqTrack {
    ssrc: u32,
    base: u64,
    max_ext: u64,
    cycles: u64,
    last: u16,
    received: u64,
    started: bool,
}

impl SeqTrack {
    fn on_packet(&mut self, seq: u16) {
        if !self.started {
            *self = SeqTrack {
                ssrc: self.ssrc,
                base: u64::from(seq),
                max_ext: u64::from(seq),
                last: seq,
                started: true,
                ..Default::default()
            };
            self.received = 1;
            return;
        }
        self.received += 1;
        let delta = seq.wrapping_sub(self.last);
        if delta < 0x8000 {
            if seq < self.last {
                self.cycles += 1 << 16;
            }
            self.last = seq;
            self.max_ext = self.max_ext.max(self.cycles + u64::from(seq));
        }
    }

    fn expected(&self) -> u64 {
        if self.started {
            self.max_ext - self.base + 1
        } else {
            0
        }
    }
}

#[derive(Default)]
struct EndpointStats {
    latched: bool,
    tx: u64,
    finished: Vec<SeqTrack>,
    current: Option<SeqTrack>,
}

/// The bank: sockets bound on 127.0.0.1, driven by a small tokio runtime of
/// its own on one worker thread.
pub struct RtpPeerBank {
    ports: Vec<u16>,
    stats: Vec<Arc<Mutex<EndpointStats>>>,
    stop: Arc<AtomicBool>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl RtpPeerBank {
    /// Binds `n` sockets on ephemeral ports of 127.0.0.1. Each sends faint
    /// silence for `send_for` after it latched.
    pub fn start(n: usize, send_for: Duration) -> anyhow::Result<Self> {
        // PCMU silence with a faint pattern, so it is never all one value.
        let silence: Vec<u8> = (0..160)
            .map(|i| if i % 8 == 0 { 0xfe } else { 0xff })
            .collect();
        Self::start_playing(n, send_for, silence.into())
    }

    /// Like [`RtpPeerBank::start`], each endpoint sending `pcmu` (8 kHz
    /// G.711 µ-law, 160 bytes per packet, a partial last packet dropped)
    /// in a loop from the moment it latched. Endpoint i starts i/n of the
    /// way into the loop, so n callers do not all speak at once (calls
    /// placed at a high rate would otherwise talk in lockstep).
    pub fn start_playing(n: usize, send_for: Duration, pcmu: Arc<[u8]>) -> anyhow::Result<Self> {
        anyhow::ensure!(pcmu.len() >= 160, "at least one 20 ms packet of audio");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let stop = Arc::new(AtomicBool::new(false));
        let mut ports = Vec::with_capacity(n);
        let mut stats = Vec::with_capacity(n);
        for i in 0..n {
            let std_sock = std::net::UdpSocket::bind("127.0.0.1:0")?;
            std_sock.set_nonblocking(true)?;
            ports.push(std_sock.local_addr()?.port());
            let st = Arc::new(Mutex::new(EndpointStats::default()));
            stats.push(st.clone());
            let stop = stop.clone();
            let audio = pcmu.clone();
            let packets = pcmu.len() / 160;
            let first = i * packets / n.max(1);
            let ssrc = 0x5eed_0000u32.wrapping_add(i as u32);
            runtime.spawn(async move {
                if let Ok(sock) = runtime_socket(std_sock) {
                    endpoint(sock, st, stop, ssrc, send_for, (audio, first)).await;
                }
            });
        }
        Ok(Self {
            ports,
            stats,
            stop,
            runtime: Some(runtime),
        })
    }

    pub fn ports(&self) -> &[u16] {
        &self.ports
    }

    /// The totals so far.
    pub fn stats(&self) -> PeerStats {
        let mut t = PeerStats::default();
        for s in &self.stats {
            let s = match s.lock() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            t.latched += u64::from(s.latched);
            t.tx_packets += s.tx;
            for tr in s.finished.iter().chain(s.current.iter()) {
                t.rx_packets += tr.received;
                t.rx_expected += tr.expected();
                t.rx_lost += tr.expected().saturating_sub(tr.received);
            }
        }
        t
    }

    /// Stops every endpoint and the runtime.
    pub fn stop(mut self) -> PeerStats {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(2));
        }
        self.stats()
    }
}

impl Drop for RtpPeerBank {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

fn runtime_socket(s: std::net::UdpSocket) -> std::io::Result<UdpSocket> {
    UdpSocket::from_std(s)
}

async fn endpoint(
    sock: UdpSocket,
    st: Arc<Mutex<EndpointStats>>,
    stop: Arc<AtomicBool>,
    ssrc: u32,
    send_for: Duration,
    (audio, first): (Arc<[u8]>, usize),
) {
    let packets = audio.len() / 160;
    let mut next = first % packets.max(1);
    let mut buf = [0u8; 2048];
    let mut remote: Option<SocketAddr> = None;
    let mut send_until = None;
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut seq: u16 = 0;
    let mut ts: u32 = 0;
    let mut pkt = [0xffu8; 12 + 160];
    pkt[0] = 0x80;
    pkt[1] = 0; // PCMU
    pkt[8..12].copy_from_slice(&ssrc.to_be_bytes());
    let mut stop_check = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            r = sock.recv_from(&mut buf) => {
                let Ok((n, from)) = r else { continue };
                if n < 12 || buf[0] >> 6 != 2 || (buf[1] & 0x7f) >= 72 && (buf[1] & 0x7f) <= 79 {
                    continue; // not RTP, or RTCP
                }
                let rseq = u16::from_be_bytes([buf[2], buf[3]]);
                let rssrc = u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]);
                let mut s = match st.lock() { Ok(g) => g, Err(p) => p.into_inner() };
                if remote.is_none() {
                    remote = Some(from);
                    send_until = Some(tokio::time::Instant::now() + send_for);
                    s.latched = true;
                }
                match s.current.as_mut() {
                    Some(c) if c.ssrc == rssrc => c.on_packet(rseq),
                    _ => {
                        if let Some(c) = s.current.take() { s.finished.push(c); }
                        let mut c = SeqTrack { ssrc: rssrc, ..Default::default() };
                        c.on_packet(rseq);
                        s.current = Some(c);
                    }
                }
            }
            _ = tick.tick(), if remote.is_some() => {
                let (Some(to), Some(until)) = (remote, send_until) else { continue };
                if tokio::time::Instant::now() >= until { continue; }
                pkt[2..4].copy_from_slice(&seq.to_be_bytes());
                pkt[4..8].copy_from_slice(&ts.to_be_bytes());
                pkt[12..].copy_from_slice(&audio[next * 160..(next + 1) * 160]);
                next = (next + 1) % packets;
                if sock.send_to(&pkt, to).await.is_ok() {
                    let mut s = match st.lock() { Ok(g) => g, Err(p) => p.into_inner() };
                    s.tx += 1;
                }
                seq = seq.wrapping_add(1);
                ts = ts.wrapping_add(160);
            }
            _ = stop_check.tick() => {
                if stop.load(Ordering::Relaxed) { return; }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_tracking_counts_gaps_and_wraps() {
        let mut t = SeqTrack::default();
        for s in [65530u16, 65531, 65533, 65534, 65535, 0, 1, 3] {
            t.on_packet(s);
        }
        assert_eq!(t.received, 8);
        assert_eq!(t.expected(), 10);
        // reordering does not inflate expected
        t.on_packet(2);
        assert_eq!(t.expected(), 10);
    }

    #[test]
    fn bank_latches_and_echoes() {
        let bank = RtpPeerBank::start(2, Duration::from_millis(300)).expect("bank");
        let gw = std::net::UdpSocket::bind("127.0.0.1:0").expect("gw");
        gw.set_read_timeout(Some(Duration::from_millis(500)))
            .expect("timeout");
        let mut p = [0u8; 172];
        p[0] = 0x80;
        for seq in [1u16, 2, 4] {
            p[2..4].copy_from_slice(&seq.to_be_bytes());
            gw.send_to(&p, ("127.0.0.1", bank.ports()[0]))
                .expect("send");
        }
        let mut got = 0;
        let mut buf = [0u8; 2048];
        while let Ok((n, _)) = gw.recv_from(&mut buf) {
            assert_eq!(n, 172);
            got += 1;
        }
        let s = bank.stop();
        assert_eq!(s.latched, 1);
        assert_eq!(s.rx_packets, 3);
        assert_eq!(s.rx_expected, 4);
        assert_eq!(s.rx_lost, 1);
        assert!((10..=17).contains(&got), "sent {got} in 300 ms");
        assert_eq!(s.tx_packets, got);
    }
}
