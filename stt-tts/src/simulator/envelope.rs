//! Codec-robust audio matching for the simulator's STT: a speech-energy
//! envelope (20 ms frames of log energy) and a similarity between two.
//!
//! Audio that went through a real call (WAV → 8 kHz G.711 → RTP → 16 kHz
//! resample) keeps none of its bytes, so the exact fingerprint misses; its
//! loudness contour survives. Trimming the silence at both ends makes the
//! match independent of how much leading silence the gateway streamed,
//! and clipping below a floor relative to the peak makes it independent
//! of the codec's noise floor. Plain sums only: an utterance is at most
//! [`MAX_SECONDS`], a few thousand multiply-adds per lag.

/// Audio beyond this is not looked at (a session's buffer is bounded).
pub const MAX_SECONDS: u32 = 30;
/// Frame length.
pub const FRAME_MS: u32 = 20;
/// Frames below `peak - FLOOR_DB` are silence: trimmed at the ends,
/// clipped to the floor inside.
const FLOOR_DB: f32 = 35.0;
/// A peak frame quieter than this (dB re 1 LSB², about RMS 32 of 32767)
/// is silence, not speech.
const MIN_PEAK_DB: f32 = 30.0;
/// An envelope flatter than this (standard deviation, dB) is steady noise
/// or a tone, not speech.
const MIN_SPREAD_DB: f32 = 2.0;
/// Shorter voiced spans than this are not matched.
const MIN_FRAMES: usize = 10;
/// Lag searched either way (±100 ms).
const MAX_LAG_FRAMES: usize = 5;
/// Durations further apart than this ratio never match.
const MAX_DURATION_RATIO: f32 = 1.25;

/// The envelope of one utterance: voiced frames only, smoothed, then
/// normalised to zero mean and unit variance.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    frames: Vec<f32>,
}

impl Envelope {
    /// The envelope of mono 16-bit PCM at `rate`, or `None` for audio with
    /// no speech-like energy contour (silence, steady noise, too short).
    pub fn of(pcm: &[i16], rate: u32) -> Option<Envelope> {
        let frame = (rate as usize * FRAME_MS as usize / 1000).max(1);
        let limit = (rate as usize).saturating_mul(MAX_SECONDS as usize);
        let pcm = &pcm[..pcm.len().min(limit)];
        let db: Vec<f32> = pcm
            .chunks_exact(frame)
            .map(|c| {
                let energy = c.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / c.len() as f64;
                (10.0 * (energy + 1.0).log10()) as f32
            })
            .collect();
        let peak = db.iter().copied().fold(f32::MIN, f32::max);
        if peak < MIN_PEAK_DB {
            return None;
        }
        let floor = peak - FLOOR_DB;
        let first = db.iter().position(|&d| d >= floor)?;
        let last = db.iter().rposition(|&d| d >= floor)?;
        let voiced: Vec<f32> = db[first..=last].iter().map(|&d| d.max(floor)).collect();
        if voiced.len() < MIN_FRAMES {
            return None;
        }
        // A three-frame moving average: the codec and resampler smear
        // energy across frame edges a little.
        let smooth: Vec<f32> = (0..voiced.len())
            .map(|i| {
                let lo = i.saturating_sub(1);
                let hi = (i + 2).min(voiced.len());
                voiced[lo..hi].iter().sum::<f32>() / (hi - lo) as f32
            })
            .collect();
        let n = smooth.len() as f32;
        let mean = smooth.iter().sum::<f32>() / n;
        let spread = (smooth.iter().map(|d| (d - mean).powi(2)).sum::<f32>() / n).sqrt();
        if spread < MIN_SPREAD_DB {
            return None;
        }
        Some(Envelope {
            frames: smooth.iter().map(|d| (d - mean) / spread).collect(),
        })
    }

    /// Voiced duration in frames.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// Never true: an envelope has at least `MIN_FRAMES` frames.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// How alike two envelopes are, in [-1, 1]: the best normalised
    /// cross-correlation over ±100 ms of lag, divided by the longer
    /// length so that a partial overlap counts less. 0 when the durations
    /// differ by more than a ratio of 1.25.
    pub fn similarity(&self, other: &Envelope) -> f32 {
        let (a, b) = (&self.frames, &other.frames);
        let (short, long) = (a.len().min(b.len()), a.len().max(b.len()));
        if short == 0 || long as f32 > short as f32 * MAX_DURATION_RATIO {
            return 0.0;
        }
        let mut best = f32::MIN;
        for lag in -(MAX_LAG_FRAMES as isize)..=MAX_LAG_FRAMES as isize {
            let sum: f32 = a
                .iter()
                .enumerate()
                .filter_map(|(i, x)| {
                    let j = usize::try_from(i as isize + lag).ok()?;
                    b.get(j).map(|y| x * y)
                })
                .sum();
            best = best.max(sum / long as f32);
        }
        best
    }
}

#[cfg(test)]
#[path = "envelope_tests.rs"]
mod tests;
