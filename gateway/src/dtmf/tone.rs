//! In-band DTMF tone generation (for the softphone and tests).

use std::f64::consts::TAU;
use std::time::Duration;

use super::frequencies;

/// Why a tone could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ToneError {
    #[error("'{0}' is not a DTMF digit")]
    InvalidDigit(char),
    #[error("sample rate {0} Hz is too low for DTMF")]
    BadSampleRate(u32),
}

/// Default peak amplitude of each of the two tones: about -13 dBFS each.
pub const DEFAULT_AMPLITUDE: f64 = 7000.0;

/// A phase-continuous two-tone generator for one digit: `tone` of the
/// digit, then `gap` of silence, then done.
#[derive(Debug, Clone)]
pub struct ToneGenerator {
    step_low: f64,
    step_high: f64,
    phase_low: f64,
    phase_high: f64,
    amp_low: f64,
    amp_high: f64,
    tone_left: usize,
    gap_left: usize,
}

impl ToneGenerator {
    pub fn new(
        digit: char,
        sample_rate: u32,
        tone: Duration,
        gap: Duration,
    ) -> Result<Self, ToneError> {
        let (low, high) = frequencies(digit).ok_or(ToneError::InvalidDigit(digit))?;
        if sample_rate < 4000 {
            return Err(ToneError::BadSampleRate(sample_rate));
        }
        let sr = f64::from(sample_rate);
        let samples = |d: Duration| (d.as_secs_f64() * sr).round() as usize;
        Ok(Self {
            step_low: TAU * low / sr,
            step_high: TAU * high / sr,
            phase_low: 0.0,
            phase_high: 0.0,
            amp_low: DEFAULT_AMPLITUDE,
            amp_high: DEFAULT_AMPLITUDE,
            tone_left: samples(tone),
            gap_left: samples(gap),
        })
    }

    /// Peak amplitudes of the low (row) and high (column) tone.
    pub fn with_amplitudes(mut self, low: f64, high: f64) -> Self {
        self.amp_low = low;
        self.amp_high = high;
        self
    }

    /// Whether every tone and gap sample has been produced.
    pub fn is_done(&self) -> bool {
        self.tone_left == 0 && self.gap_left == 0
    }

    /// Writes the next `out.len()` samples (zeros once done).
    pub fn fill(&mut self, out: &mut [i16]) {
        for s in out.iter_mut() {
            if self.tone_left > 0 {
                self.tone_left -= 1;
                let v = self.amp_low * self.phase_low.sin() + self.amp_high * self.phase_high.sin();
                self.phase_low = (self.phase_low + self.step_low) % TAU;
                self.phase_high = (self.phase_high + self.step_high) % TAU;
                *s = v.clamp(-32768.0, 32767.0) as i16;
            } else {
                self.gap_left = self.gap_left.saturating_sub(1);
                *s = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tone_then_gap_then_done() {
        let mut g = ToneGenerator::new(
            '1',
            8000,
            Duration::from_millis(40),
            Duration::from_millis(20),
        )
        .expect("tone");
        let mut buf = [0i16; 160];
        g.fill(&mut buf);
        assert!(buf.iter().any(|s| s.unsigned_abs() > 5000));
        assert!(!g.is_done());
        g.fill(&mut buf);
        assert!(
            buf.iter().any(|s| s.unsigned_abs() > 5000),
            "second half of the tone"
        );
        assert!(!g.is_done(), "the gap is still to come");
        g.fill(&mut buf);
        assert!(buf.iter().all(|s| *s == 0), "the gap");
        assert!(g.is_done());
        assert!(ToneGenerator::new('x', 8000, Duration::ZERO, Duration::ZERO).is_err());
    }
}
