//! A [`FrameSource`] over PCM already in memory.

use std::sync::Arc;

use super::{AudioFrame, FrameSource};

/// Plays a buffer of mono 16-bit PCM as 20 ms frames; the last frame is
/// padded with silence.
#[derive(Debug, Clone)]
pub struct PcmSource {
    samples: Arc<[i16]>,
    sample_rate: u32,
    position: usize,
}

impl PcmSource {
    pub fn new(samples: impl Into<Arc<[i16]>>, sample_rate: u32) -> Self {
        Self {
            samples: samples.into(),
            sample_rate,
            position: 0,
        }
    }

    /// Samples not yet played.
    pub fn remaining(&self) -> usize {
        self.samples.len() - self.position
    }

    /// Frames in the whole buffer, counting the padded last one.
    pub fn total_frames(&self) -> usize {
        let n = AudioFrame::samples_per_frame(self.sample_rate);
        if n == 0 {
            0
        } else {
            self.samples.len().div_ceil(n)
        }
    }
}

impl FrameSource for PcmSource {
    fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    fn next_frame(&mut self) -> Option<AudioFrame> {
        let n = AudioFrame::samples_per_frame(self.sample_rate);
        if n == 0 || self.position >= self.samples.len() {
            return None;
        }
        let end = (self.position + n).min(self.samples.len());
        let mut samples = self.samples[self.position..end].to_vec();
        samples.resize(n, 0);
        self.position = end;
        Some(AudioFrame {
            samples,
            sample_rate: self.sample_rate,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_into_frames_and_pads_the_last() {
        let samples: Vec<i16> = (1..=400).collect();
        let mut src = PcmSource::new(samples, 8_000);
        assert_eq!(src.total_frames(), 3);
        let a = src.next_frame().expect("frame 1");
        let b = src.next_frame().expect("frame 2");
        let c = src.next_frame().expect("frame 3");
        assert!(src.next_frame().is_none());
        assert_eq!(a.samples.len(), 160);
        assert_eq!(a.samples[0], 1);
        assert_eq!(b.samples[0], 161);
        assert_eq!(c.samples[79], 400);
        assert!(c.samples[80..].iter().all(|&s| s == 0));
        assert_eq!(c.sample_rate, 8_000);
    }

    #[test]
    fn empty_buffer_ends_at_once() {
        let mut src = PcmSource::new(Vec::new(), 16_000);
        assert!(src.next_frame().is_none());
        assert_eq!(src.total_frames(), 0);
    }

    #[test]
    fn exact_multiple_has_no_padding_frame() {
        let mut src = PcmSource::new(vec![7i16; 640], 16_000);
        assert_eq!(src.next_frame().map(|f| f.samples.len()), Some(320));
        assert_eq!(src.next_frame().map(|f| f.samples.len()), Some(320));
        assert!(src.next_frame().is_none());
    }
}
