//! Sample-rate conversion with rubato's synchronous FFT resampler, framed
//! into exact 20 ms output frames.
//!
//! One [`Resampler`] serves both whole clips ([`resample`]) and streams fed
//! frame by frame (the AI pipeline: 8 kHz → 16 kHz towards STT, 22.05 or
//! 24 kHz → 8 kHz from TTS). Input of any length goes in with
//! [`Resampler::push`]; whole 20 ms frames at the output rate come out of
//! [`Resampler::pop_frame`]. The FFT block is about 20 ms of input, so the
//! added latency stays near one frame plus half a block.

use std::collections::VecDeque;

use rubato::audioadapter_buffers::direct::SequentialSlice;
use rubato::{Fft, FixedSync, Resampler as _, WindowFunction};

use super::AudioFrame;

/// Lowest and highest sample rates we accept, in Hz. Outside this range a
/// rate is a configuration mistake or a corrupt header, not audio.
pub const MIN_RATE: u32 = 1_000;
pub const MAX_RATE: u32 = 192_000;

/// Why a resampler could not be built or run.
#[derive(Debug, thiserror::Error)]
pub enum ResampleError {
    #[error("unsupported sample rate {0} Hz (accepted: {MIN_RATE}..={MAX_RATE})")]
    UnsupportedRate(u32),
    #[error("cannot build a {from} Hz -> {to} Hz resampler: {source}")]
    Construction {
        from: u32,
        to: u32,
        #[source]
        source: rubato::ResamplerConstructionError,
    },
    #[error("resampling failed: {0}")]
    Process(#[from] rubato::ResampleError),
    #[error("internal buffer size error: {0}")]
    Buffer(#[from] rubato::audioadapter_buffers::SizeError),
}

struct Engine {
    fft: Fft<f32>,
    chunk_in: usize,
    out_buf: Vec<f32>,
}

/// A mono resampler from one fixed rate to another, producing exact 20 ms
/// frames. Equal rates pass samples through untouched.
pub struct Resampler {
    from: u32,
    to: u32,
    engine: Option<Engine>,
    /// Input not yet handed to rubato (less than one chunk).
    pending: Vec<f32>,
    /// Resampled samples waiting to be framed.
    output: VecDeque<i16>,
    /// Output samples of startup delay still to drop.
    to_trim: usize,
    /// Input samples pushed so far.
    consumed: u64,
    /// Output samples queued so far (after the delay was trimmed).
    produced: u64,
    finished: bool,
}

impl std::fmt::Debug for Resampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resampler")
            .field("from", &self.from)
            .field("to", &self.to)
            .field("consumed", &self.consumed)
            .field("produced", &self.produced)
            .field("finished", &self.finished)
            .finish()
    }
}

fn check_rate(rate: u32) -> Result<(), ResampleError> {
    if (MIN_RATE..=MAX_RATE).contains(&rate) {
        Ok(())
    } else {
        Err(ResampleError::UnsupportedRate(rate))
    }
}

/// Converts a float sample in [-1, 1] to 16-bit PCM, clipping overshoot.
pub(crate) fn f32_to_i16(x: f32) -> i16 {
    let scaled = (x * 32768.0).round();
    scaled.clamp(i16::MIN as f32, i16::MAX as f32) as i16
}

/// Converts 16-bit PCM to a float sample in [-1, 1).
pub(crate) fn i16_to_f32(x: i16) -> f32 {
    x as f32 / 32768.0
}

impl Resampler {
    /// A resampler from `from` Hz to `to` Hz.
    pub fn new(from: u32, to: u32) -> Result<Self, ResampleError> {
        check_rate(from)?;
        check_rate(to)?;
        let engine = if from == to {
            None
        } else {
            // One FFT block per chunk, sized to about 20 ms of input: rubato
            // rounds it up to a multiple of the smallest block that keeps the
            // ratio exact (441 input samples for 44.1 kHz -> 8 kHz).
            let hint = (from / 50).max(1) as usize;
            let fft = Fft::<f32>::new_custom(
                from as usize,
                to as usize,
                hint,
                1,
                1,
                WindowFunction::BlackmanHarris2,
                FixedSync::Both,
            )
            .map_err(|source| ResampleError::Construction { from, to, source })?;
            let chunk_in = fft.input_frames_next();
            let out_buf = vec![0.0; fft.output_frames_max()];
            Some(Engine {
                fft,
                chunk_in,
                out_buf,
            })
        };
        let to_trim = engine.as_ref().map_or(0, |e| e.fft.output_delay());
        Ok(Self {
            from,
            to,
            engine,
            pending: Vec::new(),
            output: VecDeque::new(),
            to_trim,
            consumed: 0,
            produced: 0,
            finished: false,
        })
    }

    pub fn input_rate(&self) -> u32 {
        self.from
    }

    pub fn output_rate(&self) -> u32 {
        self.to
    }

    /// Samples of output a 20 ms frame holds.
    pub fn output_frame_len(&self) -> usize {
        AudioFrame::samples_per_frame(self.to)
    }

    /// Feeds 16-bit input samples at the input rate.
    pub fn push(&mut self, samples: &[i16]) -> Result<(), ResampleError> {
        self.push_with(samples.len(), samples.iter().map(|&s| i16_to_f32(s)))
    }

    /// Feeds float input samples in [-1, 1] at the input rate.
    pub fn push_f32(&mut self, samples: &[f32]) -> Result<(), ResampleError> {
        self.push_with(samples.len(), samples.iter().copied())
    }

    fn push_with(
        &mut self,
        n: usize,
        samples: impl Iterator<Item = f32>,
    ) -> Result<(), ResampleError> {
        if self.finished {
            // A finished stream has been padded and truncated to its exact
            // length; more input would be misaligned, so start afresh.
            self.reset();
        }
        self.consumed += n as u64;
        match &self.engine {
            None => {
                self.output.extend(samples.map(f32_to_i16));
                self.produced += n as u64;
                Ok(())
            }
            Some(_) => {
                self.pending.extend(samples);
                self.run_full_chunks()
            }
        }
    }

    fn run_full_chunks(&mut self) -> Result<(), ResampleError> {
        let Some(chunk_in) = self.engine.as_ref().map(|e| e.chunk_in) else {
            return Ok(());
        };
        // Moved out for the loop so chunks are borrowed, not copied.
        let mut pending = std::mem::take(&mut self.pending);
        let mut start = 0;
        let mut result = Ok(());
        while pending.len() - start >= chunk_in {
            let end = start + chunk_in;
            result = self.run_chunk(&pending[start..end], None);
            if result.is_err() {
                break;
            }
            start = end;
        }
        pending.drain(..start);
        self.pending = pending;
        result
    }

    /// Runs one chunk through rubato; `partial` is the number of real
    /// samples when the chunk is shorter than a full one (rubato pads with
    /// silence).
    fn run_chunk(&mut self, chunk: &[f32], partial: Option<usize>) -> Result<(), ResampleError> {
        let Some(engine) = self.engine.as_mut() else {
            return Ok(());
        };
        // `chunk` is always a full chunk (padded); rubato reads only
        // `partial` samples of it when the stream is ending.
        let input = SequentialSlice::new(chunk, 1, chunk.len())?;
        let out_len = engine.out_buf.len();
        let mut output = SequentialSlice::new_mut(&mut engine.out_buf[..], 1, out_len)?;
        let indexing = partial.map(|p| rubato::Indexing::new().partial_len(p));
        let (_, written) =
            engine
                .fft
                .process_into_buffer(&input, &mut output, indexing.as_ref())?;
        let mut produced = &engine.out_buf[..written];
        if self.to_trim > 0 {
            let drop = self.to_trim.min(produced.len());
            self.to_trim -= drop;
            produced = &produced[drop..];
        }
        self.produced += produced.len() as u64;
        self.output.extend(produced.iter().map(|&x| f32_to_i16(x)));
        Ok(())
    }

    /// The output length the input pushed so far corresponds to.
    fn expected_output(&self) -> u64 {
        (self.consumed * self.to as u64 + self.from as u64 / 2) / self.from as u64
    }

    /// Ends the stream: flushes what rubato still holds and trims the output
    /// to exactly `input * to / from` samples. Pushing again afterwards
    /// starts a new stream.
    pub fn finish(&mut self) -> Result<(), ResampleError> {
        if self.finished {
            return Ok(());
        }
        if self.engine.is_some() {
            let rest = std::mem::take(&mut self.pending);
            if !rest.is_empty() {
                let chunk_in = self.engine.as_ref().map_or(rest.len(), |e| e.chunk_in);
                let mut chunk = rest.clone();
                chunk.resize(chunk_in, 0.0);
                self.run_chunk(&chunk, Some(rest.len()))?;
            }
            let expected = self.expected_output();
            let chunk_in = self.engine.as_ref().map_or(0, |e| e.chunk_in);
            let silence = vec![0.0f32; chunk_in];
            // Each flush chunk yields a whole block of output, so this loop
            // runs at most a few times (the delay is half a block).
            while self.produced < expected {
                let before = self.produced;
                self.run_chunk(&silence, Some(0))?;
                if self.produced == before {
                    // Cannot happen with fixed-size output; never spin.
                    break;
                }
            }
            let excess = self.produced.saturating_sub(expected) as usize;
            let keep = self.output.len().saturating_sub(excess);
            self.output.truncate(keep);
            self.produced = self.produced.min(expected);
        }
        self.finished = true;
        Ok(())
    }

    /// Forgets all state, ready for an unrelated stream at the same rates.
    pub fn reset(&mut self) {
        if let Some(engine) = self.engine.as_mut() {
            engine.fft.reset();
            self.to_trim = engine.fft.output_delay();
        }
        self.pending.clear();
        self.output.clear();
        self.consumed = 0;
        self.produced = 0;
        self.finished = false;
    }

    /// Output samples ready, whole frames or not.
    pub fn queued(&self) -> usize {
        self.output.len()
    }

    /// The next whole 20 ms frame at the output rate. After [`finish`],
    /// the last partial frame comes out padded with silence.
    ///
    /// [`finish`]: Resampler::finish
    pub fn pop_frame(&mut self) -> Option<AudioFrame> {
        let n = self.output_frame_len();
        if n == 0 || self.output.is_empty() {
            return None;
        }
        if self.output.len() < n && !self.finished {
            return None;
        }
        let take = n.min(self.output.len());
        let mut samples: Vec<i16> = self.output.drain(..take).collect();
        samples.resize(n, 0);
        Some(AudioFrame {
            samples,
            sample_rate: self.to,
        })
    }

    /// Takes every queued output sample, unframed.
    pub fn drain_samples(&mut self) -> Vec<i16> {
        self.output.drain(..).collect()
    }
}

/// Resamples a whole clip of 16-bit PCM; the result has exactly
/// `round(len * to / from)` samples.
pub fn resample(samples: &[i16], from: u32, to: u32) -> Result<Vec<i16>, ResampleError> {
    let mut r = Resampler::new(from, to)?;
    r.push(samples)?;
    r.finish()?;
    Ok(r.drain_samples())
}

/// Resamples a whole clip of float samples into 16-bit PCM.
pub fn resample_f32(samples: &[f32], from: u32, to: u32) -> Result<Vec<i16>, ResampleError> {
    let mut r = Resampler::new(from, to)?;
    r.push_f32(samples)?;
    r.finish()?;
    Ok(r.drain_samples())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sine(freq: f32, rate: u32, n: usize, amp: f32) -> Vec<i16> {
        (0..n)
            .map(|i| {
                let t = i as f32 / rate as f32;
                f32_to_i16(amp * (2.0 * std::f32::consts::PI * freq * t).sin())
            })
            .collect()
    }

    /// Frequency from rising zero crossings over the steady middle part.
    pub(crate) fn zero_crossing_freq(samples: &[i16], rate: u32) -> f64 {
        let skip = samples.len() / 10;
        let body = &samples[skip..samples.len() - skip];
        let rising: Vec<usize> = body
            .windows(2)
            .enumerate()
            .filter(|(_, w)| w[0] < 0 && w[1] >= 0)
            .map(|(i, _)| i)
            .collect();
        assert!(rising.len() > 2, "no oscillation found");
        let span = (rising[rising.len() - 1] - rising[0]) as f64;
        (rising.len() - 1) as f64 * rate as f64 / span
    }

    /// Relative power at `freq` (Goertzel), normalised by the signal energy.
    pub(crate) fn goertzel_ratio(samples: &[i16], rate: u32, freq: f64) -> f64 {
        let w = 2.0 * std::f64::consts::PI * freq / rate as f64;
        let coeff = 2.0 * w.cos();
        let (mut s1, mut s2) = (0.0f64, 0.0f64);
        let mut energy = 0.0f64;
        for &x in samples {
            let x = x as f64;
            energy += x * x;
            let s0 = x + coeff * s1 - s2;
            s2 = s1;
            s1 = s0;
        }
        let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
        power / (energy * samples.len() as f64 / 2.0)
    }

    #[test]
    fn sine_44k1_to_8k_keeps_frequency_and_duration() {
        let input = sine(1000.0, 44_100, 44_100, 0.5);
        let out = resample(&input, 44_100, 8_000).expect("resample");
        // Duration: exactly one second, well within one 20 ms frame.
        assert!((out.len() as i64 - 8_000).abs() <= 160, "len {}", out.len());
        assert_eq!(out.len(), 8_000);
        let f = zero_crossing_freq(&out, 8_000);
        assert!((f - 1000.0).abs() < 2.0, "frequency {f}");
        assert!(goertzel_ratio(&out[800..7200], 8_000, 1000.0) > 0.9);
        assert!(goertzel_ratio(&out[800..7200], 8_000, 1500.0) < 0.01);
        // Level preserved (no gain or loss beyond a dB or so).
        let peak = out[800..7200]
            .iter()
            .map(|s| s.unsigned_abs())
            .max()
            .unwrap_or(0);
        assert!((14_000..=18_500).contains(&peak), "peak {peak}");
    }

    #[test]
    fn aliasing_tone_is_filtered_on_downsampling() {
        // 6 kHz cannot exist at 8 kHz; it must be removed, not folded to 2 kHz.
        let input = sine(6000.0, 44_100, 22_050, 0.5);
        let out = resample(&input, 44_100, 8_000).expect("resample");
        let rms = (out.iter().map(|&s| (s as f64).powi(2)).sum::<f64>() / out.len() as f64).sqrt();
        assert!(rms < 300.0, "rms {rms}");
    }

    #[test]
    fn streaming_frames_are_exact_and_match_rate() {
        for (from, to) in [
            (8_000, 16_000),
            (22_050, 8_000),
            (24_000, 8_000),
            (16_000, 8_000),
            (11_025, 8_000),
        ] {
            let mut r = Resampler::new(from, to).expect("new");
            let in_frame = AudioFrame::samples_per_frame(from);
            let input = sine(440.0, from, in_frame * 50, 0.3);
            let mut frames = Vec::new();
            for chunk in input.chunks(in_frame) {
                r.push(chunk).expect("push");
                while let Some(f) = r.pop_frame() {
                    frames.push(f);
                }
            }
            r.finish().expect("finish");
            while let Some(f) = r.pop_frame() {
                frames.push(f);
            }
            let out_frame = AudioFrame::samples_per_frame(to);
            assert!(frames
                .iter()
                .all(|f| f.samples.len() == out_frame && f.sample_rate == to));
            // One second in, one second out (to within one frame).
            let total = frames.len() * out_frame;
            let expected = input.len() * to as usize / from as usize;
            assert!(
                total.abs_diff(expected) <= out_frame,
                "{from}->{to}: {total} vs {expected}"
            );
            let all: Vec<i16> = frames
                .iter()
                .flat_map(|f| f.samples.iter().copied())
                .collect();
            let f = zero_crossing_freq(&all[..expected], to);
            assert!((f - 440.0).abs() < 2.0, "{from}->{to}: {f} Hz");
        }
    }

    #[test]
    fn streaming_latency_is_about_one_frame() {
        let mut r = Resampler::new(8_000, 16_000).expect("new");
        let mut pushed = 0;
        let mut got = None;
        for i in 0..10 {
            r.push(&[1000; 160]).expect("push");
            pushed += 1;
            if r.pop_frame().is_some() {
                got = Some(i);
                break;
            }
        }
        assert!(
            got.is_some() && pushed <= 3,
            "first frame after {pushed} input frames"
        );
    }

    #[test]
    fn equal_rates_pass_through() {
        let input = sine(300.0, 8_000, 500, 0.2);
        assert_eq!(resample(&input, 8_000, 8_000).expect("resample"), input);
    }

    #[test]
    fn short_and_empty_clips() {
        assert!(resample(&[], 44_100, 8_000).expect("empty").is_empty());
        let out = resample(&[5000; 100], 44_100, 8_000).expect("short");
        assert_eq!(out.len(), 18);
    }

    #[test]
    fn rejects_absurd_rates() {
        assert!(matches!(
            Resampler::new(0, 8_000),
            Err(ResampleError::UnsupportedRate(0))
        ));
        assert!(matches!(
            Resampler::new(8_000, 1_000_000),
            Err(ResampleError::UnsupportedRate(_))
        ));
    }

    #[test]
    fn reuse_after_finish_starts_a_new_stream() {
        let mut r = Resampler::new(16_000, 8_000).expect("new");
        r.push(&[0; 1600]).expect("push");
        r.finish().expect("finish");
        assert_eq!(r.drain_samples().len(), 800);
        r.push(&[0; 320]).expect("push");
        r.finish().expect("finish");
        assert_eq!(r.drain_samples().len(), 160);
    }
}
