//! Relaying decoded audio between two media sessions.

use tokio::sync::mpsc;

use super::{AudioFrame, FrameSource, MediaError, MediaSession, PlaybackId, MEDIA_SAMPLE_RATE};

/// Frames queued in a relay beyond which the oldest are dropped, so clock
/// drift between the two legs cannot build up delay (3 = 60 ms).
const MAX_QUEUED: usize = 3;

/// A [`FrameSource`] fed by a channel of 8 kHz frames: silence when the
/// channel is momentarily empty, the end when it closes.
pub struct ChannelSource {
    rx: mpsc::Receiver<AudioFrame>,
}

impl ChannelSource {
    pub fn new(rx: mpsc::Receiver<AudioFrame>) -> Self {
        Self { rx }
    }
}

impl FrameSource for ChannelSource {
    fn sample_rate(&self) -> u32 {
        MEDIA_SAMPLE_RATE
    }

    fn next_frame(&mut self) -> Option<AudioFrame> {
        while self.rx.len() > MAX_QUEUED {
            let _ = self.rx.try_recv();
        }
        match self.rx.try_recv() {
            Ok(f) => Some(f),
            Err(mpsc::error::TryRecvError::Empty) => Some(AudioFrame::silence(MEDIA_SAMPLE_RATE)),
            Err(mpsc::error::TryRecvError::Disconnected) => None,
        }
    }
}

/// Two sessions' audio relayed both ways (see [`MediaSession::bridge`]).
/// Each side's decoded audio is played on the other, so PCMU on one leg
/// and PCMA on the other just works. DTMF is not relayed.
#[derive(Debug)]
pub struct Bridge {
    /// The playback ids on a and b, as reported in their
    /// `PlaybackFinished` events.
    pub playback_on_a: PlaybackId,
    pub playback_on_b: PlaybackId,
}

impl Bridge {
    pub(super) fn start(a: &MediaSession, b: &MediaSession) -> Result<Self, MediaError> {
        let from_a = a.subscribe_audio();
        let from_b = b.subscribe_audio();
        let playback_on_b = b.start_playback(Box::new(ChannelSource::new(from_a)))?;
        let playback_on_a = a.start_playback(Box::new(ChannelSource::new(from_b)))?;
        Ok(Self {
            playback_on_a,
            playback_on_b,
        })
    }

    /// Stops relaying: both playbacks end at their next packet time and the
    /// audio subscriptions close.
    pub fn stop(self, a: &MediaSession, b: &MediaSession) {
        a.stop_playback();
        b.stop_playback();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_source_fills_gaps_bounds_delay_and_ends() {
        let (tx, rx) = mpsc::channel(10);
        let mut src = ChannelSource::new(rx);
        assert_eq!(src.next_frame(), Some(AudioFrame::silence(8000)));
        for i in 0..6 {
            tx.try_send(AudioFrame {
                samples: vec![i; 160],
                sample_rate: 8000,
            })
            .expect("send");
        }
        // Oldest frames beyond the limit are dropped.
        assert_eq!(src.next_frame().map(|f| f.samples[0]), Some(3));
        drop(tx);
        let rest: Vec<i16> = std::iter::from_fn(|| src.next_frame())
            .map(|f| f.samples[0])
            .collect();
        assert_eq!(rest, [4, 5]);
    }
}
