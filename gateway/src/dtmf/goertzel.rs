//! In-band DTMF detection with the Goertzel algorithm on decoded PCM.
//!
//! Audio is cut into blocks of 12.75 ms (102 samples at 8 kHz, 204 at
//! 16 kHz). A block is a *hit* for a digit only if all of these hold:
//! - the strongest row and column tones are each above a floor;
//! - their ratio is within the twist limits (high group at most
//!   `reverse_twist_db` above the low group, at most `normal_twist_db` below);
//! - each is `relative_peak_db` above the other tones of its group;
//! - together they carry `tone_to_total` of the block's energy, which is
//!   what rejects speech: voiced sounds spread energy over many harmonics.
//!
//! A digit starts after `min_tone_blocks` hits in a row (about 38 ms) and
//! only after `min_gap_blocks` blocks without a hit since the last digit; it
//! ends after `min_gap_blocks` misses and is reported then, with its
//! duration.

use std::collections::VecDeque;
use std::f64::consts::TAU;
use std::time::Duration;

use super::{DtmfEvent, DtmfSource};

const ROWS: [f64; 4] = [697.0, 770.0, 852.0, 941.0];
const COLS: [f64; 4] = [1209.0, 1336.0, 1477.0, 1633.0];
const KEYPAD: [[char; 4]; 4] = [
    ['1', '2', '3', 'A'],
    ['4', '5', '6', 'B'],
    ['7', '8', '9', 'C'],
    ['*', '0', '#', 'D'],
];

/// Why a detector could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DetectorError {
    #[error("in-band DTMF detection needs 8000 or 16000 Hz, not {0}")]
    UnsupportedRate(u32),
}

/// Detector thresholds. [`DetectorConfig::new`] gives the tuned defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DetectorConfig {
    pub sample_rate: u32,
    /// Minimum mean-square power of each tone, in squared sample units.
    pub min_tone_power: f64,
    /// How far the high group may be below the low group.
    pub normal_twist_db: f64,
    /// How far the high group may be above the low group.
    pub reverse_twist_db: f64,
    /// How far each tone must exceed the others of its group.
    pub relative_peak_db: f64,
    /// Share of the block's power the two tones must carry.
    pub tone_to_total: f64,
    pub min_tone_blocks: u32,
    pub min_gap_blocks: u32,
}

impl DetectorConfig {
    pub fn new(sample_rate: u32) -> Self {
        Self {
            sample_rate,
            // A tone of peak amplitude 300 (about -40 dBFS).
            min_tone_power: 300.0 * 300.0 / 2.0,
            normal_twist_db: 8.0,
            reverse_twist_db: 4.0,
            relative_peak_db: 8.0,
            tone_to_total: 0.75,
            min_tone_blocks: 3,
            min_gap_blocks: 2,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// `quiet`: blocks without a hit before the current candidate run.
    Idle {
        quiet: u32,
        candidate: Option<(char, u32)>,
    },
    Active {
        digit: char,
        blocks: u32,
        misses: u32,
    },
}

/// Finds DTMF digits in a stream of PCM samples.
#[derive(Debug, Clone)]
pub struct InbandDetector {
    cfg: DetectorConfig,
    block: usize,
    coeffs: [f64; 8],
    s1: [f64; 8],
    s2: [f64; 8],
    energy: f64,
    filled: usize,
    state: State,
    events: VecDeque<DtmfEvent>,
}

impl InbandDetector {
    /// A detector with the default thresholds.
    pub fn new(sample_rate: u32) -> Result<Self, DetectorError> {
        Self::with_config(DetectorConfig::new(sample_rate))
    }

    pub fn with_config(cfg: DetectorConfig) -> Result<Self, DetectorError> {
        let block = match cfg.sample_rate {
            8000 => 102,
            16000 => 204,
            other => return Err(DetectorError::UnsupportedRate(other)),
        };
        let mut coeffs = [0.0; 8];
        for (i, f) in ROWS.iter().chain(COLS.iter()).enumerate() {
            coeffs[i] = 2.0 * (TAU * f / f64::from(cfg.sample_rate)).cos();
        }
        Ok(Self {
            cfg,
            block,
            coeffs,
            s1: [0.0; 8],
            s2: [0.0; 8],
            energy: 0.0,
            filled: 0,
            state: State::Idle {
                quiet: cfg.min_gap_blocks,
                candidate: None,
            },
            events: VecDeque::new(),
        })
    }

    fn block_duration(&self) -> Duration {
        Duration::from_micros(self.block as u64 * 1_000_000 / u64::from(self.cfg.sample_rate))
    }

    /// Feeds PCM at the configured rate.
    pub fn handle_samples(&mut self, pcm: &[i16]) {
        for &x in pcm {
            let x = f64::from(x);
            self.energy += x * x;
            for i in 0..8 {
                let s = x + self.coeffs[i] * self.s1[i] - self.s2[i];
                self.s2[i] = self.s1[i];
                self.s1[i] = s;
            }
            self.filled += 1;
            if self.filled == self.block {
                let hit = self.classify();
                self.s1 = [0.0; 8];
                self.s2 = [0.0; 8];
                self.energy = 0.0;
                self.filled = 0;
                self.step(hit);
            }
        }
    }

    /// The next digit found.
    pub fn poll_event(&mut self) -> Option<DtmfEvent> {
        self.events.pop_front()
    }

    /// The digit this block holds, if it passes every check.
    fn classify(&self) -> Option<char> {
        let n = self.block as f64;
        // Mean-square power of each tone: |X|^2 = (A n / 2)^2 and A^2 / 2
        // is the tone's mean square, so power = 2 |X|^2 / n^2.
        let mut power = [0.0f64; 8];
        for (i, p) in power.iter_mut().enumerate() {
            let (a, b) = (self.s1[i], self.s2[i]);
            *p = 2.0 * (a * a + b * b - self.coeffs[i] * a * b) / (n * n);
        }
        let total = self.energy / n;
        let (row, row_p) = strongest(&power[..4]);
        let (col, col_p) = strongest(&power[4..]);
        let c = &self.cfg;
        if row_p < c.min_tone_power || col_p < c.min_tone_power {
            return None;
        }
        let db = |x: f64| 10f64.powf(x / 10.0);
        if col_p > row_p * db(c.reverse_twist_db) || row_p > col_p * db(c.normal_twist_db) {
            return None;
        }
        let peak = db(c.relative_peak_db);
        let others_ok = |group: &[f64], best: usize, best_p: f64| {
            group
                .iter()
                .enumerate()
                .all(|(i, p)| i == best || p * peak <= best_p)
        };
        if !others_ok(&power[..4], row, row_p) || !others_ok(&power[4..], col, col_p) {
            return None;
        }
        if row_p + col_p < c.tone_to_total * total {
            return None;
        }
        Some(KEYPAD[row][col])
    }

    fn step(&mut self, hit: Option<char>) {
        let min_tone = self.cfg.min_tone_blocks;
        let min_gap = self.cfg.min_gap_blocks;
        self.state = match (self.state, hit) {
            (State::Idle { quiet, .. }, None) => State::Idle {
                quiet: quiet.saturating_add(1),
                candidate: None,
            },
            (State::Idle { quiet, candidate }, Some(d)) => {
                let (quiet, run) = match candidate {
                    Some((c, run)) if c == d => (quiet, run + 1),
                    // A different tone straight after another is no gap.
                    Some(_) => (0, 1),
                    None => (quiet, 1),
                };
                if run >= min_tone && quiet >= min_gap {
                    State::Active {
                        digit: d,
                        blocks: run,
                        misses: 0,
                    }
                } else {
                    State::Idle {
                        quiet,
                        candidate: Some((d, run)),
                    }
                }
            }
            (State::Active { digit, blocks, .. }, Some(d)) if d == digit => State::Active {
                digit,
                blocks: blocks + 1,
                misses: 0,
            },
            (
                State::Active {
                    digit,
                    blocks,
                    misses,
                },
                _,
            ) => {
                let misses = misses + 1;
                if misses >= min_gap {
                    self.events.push_back(DtmfEvent {
                        digit,
                        duration: self.block_duration() * blocks,
                        source: DtmfSource::Inband,
                    });
                    // Another digit's tone right after is not a gap.
                    let quiet = if hit.is_some() { 0 } else { misses };
                    State::Idle {
                        quiet,
                        candidate: hit.map(|d| (d, 1)),
                    }
                } else {
                    State::Active {
                        digit,
                        blocks,
                        misses,
                    }
                }
            }
        };
    }
}

fn strongest(group: &[f64]) -> (usize, f64) {
    let mut best = (0, f64::MIN);
    for (i, p) in group.iter().enumerate() {
        if *p > best.1 {
            best = (i, *p);
        }
    }
    best
}

#[cfg(test)]
mod tests;
