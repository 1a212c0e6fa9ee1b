//! Audio as the rest of voxgate sees it: 20 ms frames of 16-bit PCM with an
//! explicit sample rate.

/// Frame length used everywhere in the media path.
pub const FRAME_MS: u32 = 20;

/// One frame of mono 16-bit PCM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioFrame {
    pub samples: Vec<i16>,
    pub sample_rate: u32,
}

impl AudioFrame {
    /// Samples in one 20 ms frame at `sample_rate`.
    pub const fn samples_per_frame(sample_rate: u32) -> usize {
        (sample_rate * FRAME_MS / 1000) as usize
    }

    /// A frame of silence at `sample_rate`.
    pub fn silence(sample_rate: u32) -> Self {
        Self { samples: vec![0; Self::samples_per_frame(sample_rate)], sample_rate }
    }
}

/// A producer of 20 ms frames at a fixed rate, chosen when it is opened.
/// The media driver pulls one frame per packet time; `None` means the
/// source has ended.
pub trait FrameSource: Send {
    fn sample_rate(&self) -> u32;
    fn next_frame(&mut self) -> Option<AudioFrame>;
}
