//! Two media sessions on 127.0.0.1 talking to each other.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::timeout;

use super::*;
use crate::dtmf::DtmfSource;
use crate::rtp::packet::{self, OutgoingHeader};

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// One pool for every test in the process, so parallel tests never lease
/// the same port.
fn ports() -> Arc<PortAllocator> {
    static POOL: OnceLock<Arc<PortAllocator>> = OnceLock::new();
    POOL.get_or_init(|| PortAllocator::new(41000..=41999).expect("range"))
        .clone()
}

fn config() -> MediaConfig {
    MediaConfig {
        jitter_depth_ms: 40,
        ..MediaConfig::new(LOCAL, ports())
    }
}

/// A 1 kHz tone source of `frames` frames.
struct Tone {
    n: usize,
    frames: usize,
    rate: u32,
}

impl FrameSource for Tone {
    fn sample_rate(&self) -> u32 {
        self.rate
    }

    fn next_frame(&mut self) -> Option<AudioFrame> {
        if self.frames == 0 {
            return None;
        }
        self.frames -= 1;
        let len = AudioFrame::samples_per_frame(self.rate);
        let samples = (0..len)
            .map(|_| {
                self.n += 1;
                (10000.0
                    * (std::f64::consts::TAU * 1000.0 * self.n as f64 / f64::from(self.rate)).sin())
                    as i16
            })
            .collect();
        Some(AudioFrame {
            samples,
            sample_rate: self.rate,
        })
    }
}

/// Power share of 1 kHz in a frame (Goertzel), 0..=1.
fn tone_share(samples: &[i16]) -> f64 {
    let coeff = 2.0 * (std::f64::consts::TAU * 1000.0 / 8000.0).cos();
    let (mut s1, mut s2, mut e) = (0.0f64, 0.0f64, 0.0f64);
    for &x in samples {
        let x = f64::from(x);
        e += x * x;
        let s = x + coeff * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    let n = samples.len() as f64;
    let p = 2.0 * (s1 * s1 + s2 * s2 - coeff * s1 * s2) / (n * n);
    if e == 0.0 {
        0.0
    } else {
        p / (e / n)
    }
}

async fn pair(codec_a: Codec, codec_b: Codec) -> (MediaSession, MediaSession) {
    let a = MediaSession::bind(config()).await.expect("bind a");
    let b = MediaSession::bind(config()).await.expect("bind b");
    a.start(MediaParams::new(b.local_addr(), codec_a))
        .expect("start a");
    b.start(MediaParams::new(a.local_addr(), codec_b))
        .expect("start b");
    (a, b)
}

/// Frames from `rx` for `d`, counting those that carry the 1 kHz tone.
async fn count_tone_frames(rx: &mut mpsc::Receiver<AudioFrame>, d: Duration) -> (usize, usize) {
    let (mut all, mut tone) = (0, 0);
    let _ = timeout(d, async {
        while let Some(f) = rx.recv().await {
            assert_eq!(f.sample_rate, 8000);
            assert_eq!(f.samples.len(), 160);
            all += 1;
            if tone_share(&f.samples) > 0.9 {
                tone += 1;
            }
        }
    })
    .await;
    (all, tone)
}

async fn next_dtmf(
    events: &mut mpsc::UnboundedReceiver<MediaEvent>,
    d: Duration,
) -> Option<DtmfEvent> {
    timeout(d, async {
        loop {
            match events.recv().await {
                Some(MediaEvent::Dtmf(e)) => return Some(e),
                Some(_) => {}
                None => return None,
            }
        }
    })
    .await
    .ok()
    .flatten()
}

#[tokio::test]
async fn a_tone_played_on_one_side_is_heard_on_the_other() {
    for codec in [Codec::Pcmu, Codec::Pcma] {
        let (a, b) = pair(codec, codec).await;
        let mut heard = b.subscribe_audio();
        let mut a_events = a.take_events().expect("events");
        assert!(a.take_events().is_none());
        let id = a
            .start_playback(Box::new(Tone {
                n: 0,
                frames: 25,
                rate: 8000,
            }))
            .expect("play");
        let (all, tone) = count_tone_frames(&mut heard, Duration::from_millis(900)).await;
        assert!(all >= 35, "{codec:?}: only {all} frames in 900 ms");
        // 25 frames played; allow edges to be lost to the encoder warm-up.
        assert!(
            (22..=26).contains(&tone),
            "{codec:?}: {tone} tone frames of {all}"
        );
        let fin = timeout(Duration::from_secs(1), async {
            loop {
                if let Some(MediaEvent::PlaybackFinished { id: done, stopped }) =
                    a_events.recv().await
                {
                    return (done, stopped);
                }
            }
        })
        .await
        .expect("playback finished");
        assert_eq!(fin, (id, false));
        let sa = a.stats();
        let sb = b.stats();
        assert!(sa.packets_tx >= 40 && sb.packets_rx >= 40, "{sa:?} {sb:?}");
        assert_eq!(sb.latched_remote, Some(a.local_addr()));
        assert_eq!(sb.packets_lost, 0);
        assert!(sb.jitter_ms < 20.0, "{}", sb.jitter_ms);
        assert!(sa.pacing_p99_ms < 20.0, "{sa:?}");
    }
}

#[tokio::test]
async fn silence_is_sent_when_nothing_plays_and_nothing_on_hold() {
    let (a, b) = pair(Codec::Pcmu, Codec::Pcmu).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = b.stats().packets_rx;
    assert!(before >= 10, "silence keeps the stream alive: {before}");
    let mut hold = MediaParams::new(b.local_addr(), Codec::Pcmu);
    hold.send = false;
    a.update(hold).expect("hold");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let on_hold = b.stats().packets_rx;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(b.stats().packets_rx <= on_hold + 1, "no RTP on hold");
    a.update(MediaParams::new(b.local_addr(), Codec::Pcmu))
        .expect("resume");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        b.stats().packets_rx >= on_hold + 5,
        "RTP again after resume"
    );
}

#[tokio::test]
async fn rtp_timeout_is_reported_once_and_resumes() {
    let mut cfg = config();
    cfg.rtp_timeout = Duration::from_millis(300);
    let a = MediaSession::bind(config()).await.expect("a");
    let b = MediaSession::bind(cfg).await.expect("b");
    let mut hold = MediaParams::new(b.local_addr(), Codec::Pcmu);
    hold.send = false;
    a.start(hold).expect("a");
    b.start(MediaParams::new(a.local_addr(), Codec::Pcmu))
        .expect("b");
    let mut ev = b.take_events().expect("events");
    let got = timeout(Duration::from_secs(2), ev.recv())
        .await
        .expect("timeout event");
    assert_eq!(got, Some(MediaEvent::RtpTimeout));
    a.update(MediaParams::new(b.local_addr(), Codec::Pcmu))
        .expect("send");
    let got = timeout(Duration::from_secs(2), ev.recv())
        .await
        .expect("resumed event");
    assert_eq!(got, Some(MediaEvent::RtpResumed));
}

#[tokio::test]
async fn rfc4733_digits_end_to_end() {
    let (a, b) = pair(Codec::Pcmu, Codec::Pcmu).await;
    let mut ev = b.take_events().expect("events");
    for d in ['1', '#', '9', 'D'] {
        a.send_dtmf(d, Duration::from_millis(100), DtmfMode::Rfc4733)
            .expect("send");
    }
    let mut got = Vec::new();
    for _ in 0..4 {
        got.push(
            next_dtmf(&mut ev, Duration::from_secs(2))
                .await
                .expect("digit"),
        );
    }
    assert_eq!(got.iter().map(|e| e.digit).collect::<String>(), "1#9D");
    for e in &got {
        assert_eq!(e.source, DtmfSource::Rfc4733);
        assert_eq!(e.duration, Duration::from_millis(100));
    }
    assert!(
        next_dtmf(&mut ev, Duration::from_millis(400))
            .await
            .is_none(),
        "end packets deduped"
    );
    assert!(matches!(
        a.send_dtmf('x', Duration::from_millis(100), DtmfMode::Rfc4733),
        Err(MediaError::InvalidDigit('x'))
    ));
}

#[tokio::test]
async fn inband_digits_end_to_end() {
    for codec in [Codec::Pcmu, Codec::Pcma] {
        let (a, b) = pair(codec, codec).await;
        let mut ev = b.take_events().expect("events");
        for d in ['7', '0', '*'] {
            a.send_dtmf(d, Duration::from_millis(80), DtmfMode::Inband)
                .expect("send");
        }
        let mut got = String::new();
        for _ in 0..3 {
            let e = next_dtmf(&mut ev, Duration::from_secs(2))
                .await
                .expect("digit");
            assert_eq!(e.source, DtmfSource::Inband);
            assert!(e.duration >= Duration::from_millis(60), "{:?}", e.duration);
            got.push(e.digit);
        }
        assert_eq!(got, "70*", "{codec:?}");
    }
}

#[tokio::test]
async fn latches_onto_the_real_source_and_ignores_strangers() {
    let a = MediaSession::bind(config()).await.expect("a");
    let b = MediaSession::bind(config()).await.expect("b");
    // B believes (from SDP) that A is at a dead loopback port.
    let wrong: SocketAddr = (LOCAL, 9).into();
    a.start(MediaParams::new(b.local_addr(), Codec::Pcmu))
        .expect("a");
    b.start(MediaParams::new(wrong, Codec::Pcmu)).expect("b");
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A stranger sends valid RTP and garbage to B.
    let stranger = tokio::net::UdpSocket::bind((LOCAL, 0))
        .await
        .expect("stranger");
    let mut out = Vec::new();
    for seq in 0..5u16 {
        let h = OutgoingHeader {
            payload_type: 0,
            marker: false,
            sequence_number: seq,
            timestamp: 0,
            ssrc: 99,
        };
        packet::write(&h, &[0u8; 160], &mut out).expect("write");
        stranger.send_to(&out, b.local_addr()).await.expect("send");
    }
    stranger
        .send_to(&[1, 2, 3], b.local_addr())
        .await
        .expect("send");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sb = b.stats();
    assert_eq!(sb.latched_remote, Some(a.local_addr()));
    assert_eq!(sb.packets_ignored, 5);
    assert_eq!(sb.packets_malformed, 1);
    // B sends back to the latched address, not to the SDP one.
    let sa = a.stats();
    assert!(sa.packets_rx >= 10, "A hears B thanks to latching: {sa:?}");
    assert_eq!(sa.latched_remote, Some(b.local_addr()));
}

#[tokio::test]
async fn a_bridge_relays_audio_and_transcodes() {
    // Caller A on PCMU to leg B1; leg B2 on PCMA to agent C.
    let (a, b1) = pair(Codec::Pcmu, Codec::Pcmu).await;
    let (b2, c) = pair(Codec::Pcma, Codec::Pcma).await;
    let bridge = MediaSession::bridge(&b1, &b2).expect("bridge");
    let mut at_c = c.subscribe_audio();
    let mut at_a = a.subscribe_audio();
    a.start_playback(Box::new(Tone {
        n: 0,
        frames: 30,
        rate: 16000,
    }))
    .expect("play on a");
    c.start_playback(Box::new(Tone {
        n: 0,
        frames: 30,
        rate: 8000,
    }))
    .expect("play on c");
    let ((_, tone_c), (_, tone_a)) = tokio::join!(
        count_tone_frames(&mut at_c, Duration::from_millis(1200)),
        count_tone_frames(&mut at_a, Duration::from_millis(1200))
    );
    assert!(tone_c >= 25, "C heard {tone_c} tone frames from A");
    assert!(tone_a >= 25, "A heard {tone_a} tone frames from C");
    bridge.stop(&b1, &b2);
}

#[tokio::test]
async fn closing_gives_the_port_back() {
    let pool = PortAllocator::new(42000..=42003).expect("pool");
    let cfg = MediaConfig::new(LOCAL, pool.clone());
    let s = MediaSession::bind(cfg.clone()).await.expect("first");
    let t = MediaSession::bind(cfg.clone()).await.expect("second");
    assert!(matches!(
        MediaSession::bind(cfg.clone()).await,
        Err(MediaError::Ports(PortError::Exhausted { .. }))
    ));
    s.close();
    drop(t);
    timeout(Duration::from_secs(1), async {
        while pool.available() < 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("ports released");
    assert!(matches!(
        s.start(MediaParams::new((LOCAL, 9).into(), Codec::Pcmu)),
        Err(MediaError::Closed) | Ok(())
    ));
    let mut p = MediaParams::new((LOCAL, 9).into(), Codec::Pcmu);
    p.ptime_ms = 30;
    let u = MediaSession::bind(cfg).await.expect("again");
    assert!(matches!(u.start(p), Err(MediaError::UnsupportedPtime(30))));
}
