use super::*;
use crate::dtmf::tone::ToneGenerator;
use crate::dtmf::DIGITS;

const MS: Duration = Duration::from_millis(1);

/// A deterministic xorshift noise source with a Gaussian-ish shape.
struct Noise(u64);

impl Noise {
    fn uniform(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64 - 0.5
    }

    /// Roughly Gaussian with unit variance (sum of 12 uniforms).
    fn gauss(&mut self) -> f64 {
        (0..12).map(|_| self.uniform()).sum()
    }
}

/// Digits as tones of `tone` ms with `gap` ms between, high group scaled by
/// `twist_db` (negative: high group weaker, i.e. normal twist), white noise
/// at `snr_db` below the signal power.
fn signal(
    digits: &str,
    rate: u32,
    tone: u64,
    gap: u64,
    twist_db: f64,
    snr_db: Option<f64>,
) -> Vec<i16> {
    let mut out = Vec::new();
    let low = 6000.0;
    let high = low * 10f64.powf(twist_db / 20.0);
    for d in digits.chars() {
        let mut g = ToneGenerator::new(
            d,
            rate,
            Duration::from_millis(tone),
            Duration::from_millis(gap),
        )
        .expect("digit")
        .with_amplitudes(low, high);
        let n = ((tone + gap) * u64::from(rate) / 1000) as usize;
        let mut buf = vec![0i16; n];
        g.fill(&mut buf);
        out.extend_from_slice(&buf);
    }
    out.extend(std::iter::repeat_n(0, rate as usize / 10));
    if let Some(snr) = snr_db {
        let signal_power = (low * low + high * high) / 2.0;
        let sigma = (signal_power / 10f64.powf(snr / 10.0)).sqrt();
        let mut noise = Noise(0x9E37_79B9_7F4A_7C15);
        for s in out.iter_mut() {
            *s = (f64::from(*s) + sigma * noise.gauss()).clamp(-32768.0, 32767.0) as i16;
        }
    }
    out
}

fn detect_with(cfg: DetectorConfig, pcm: &[i16]) -> Vec<DtmfEvent> {
    let mut d = InbandDetector::with_config(cfg).expect("detector");
    let mut out = Vec::new();
    // Feed in 20 ms frames, as the media driver does.
    for chunk in pcm.chunks(AudioFrameLen::of(cfg.sample_rate)) {
        d.handle_samples(chunk);
        out.extend(std::iter::from_fn(|| d.poll_event()));
    }
    out
}

struct AudioFrameLen;
impl AudioFrameLen {
    fn of(rate: u32) -> usize {
        rate as usize / 50
    }
}

fn digits(events: &[DtmfEvent]) -> String {
    events.iter().map(|e| e.digit).collect()
}

#[test]
fn all_sixteen_digits_at_8_and_16_khz() {
    let all: String = DIGITS.iter().collect();
    for rate in [8000, 16000] {
        let ev = detect_with(
            DetectorConfig::new(rate),
            &signal(&all, rate, 70, 60, 0.0, None),
        );
        assert_eq!(digits(&ev), all, "at {rate} Hz");
        for e in &ev {
            assert_eq!(e.source, DtmfSource::Inband);
            // 70 ms of tone, measured in 12.75 ms blocks.
            assert!(
                e.duration >= 50 * MS && e.duration <= 80 * MS,
                "{:?}",
                e.duration
            );
        }
    }
}

#[test]
fn noisy_and_twisted_tones_are_found() {
    let all: String = DIGITS.iter().collect();
    for (twist, snr) in [(0.0, 15.0), (-6.0, 18.0), (3.0, 15.0), (-6.0, 15.0)] {
        let pcm = signal(&all, 8000, 60, 60, twist, Some(snr));
        assert_eq!(
            digits(&detect_with(DetectorConfig::new(8000), &pcm)),
            all,
            "twist {twist} dB, SNR {snr} dB"
        );
    }
}

#[test]
fn twist_beyond_the_limits_is_rejected() {
    // High group 12 dB below the low one, or 7 dB above it.
    for twist in [-12.0, 7.0] {
        let pcm = signal("159#", 8000, 80, 60, twist, None);
        assert_eq!(
            digits(&detect_with(DetectorConfig::new(8000), &pcm)),
            "",
            "twist {twist} dB"
        );
    }
}

#[test]
fn short_tones_and_short_gaps() {
    let cfg = DetectorConfig::new(8000);
    // 20 ms bursts are too short to be digits.
    assert_eq!(
        digits(&detect_with(cfg, &signal("123", 8000, 20, 60, 0.0, None))),
        ""
    );
    // 45 ms tones with 45 ms gaps are the fastest valid dialling.
    assert_eq!(
        digits(&detect_with(cfg, &signal("1234", 8000, 45, 45, 0.0, None))),
        "1234"
    );
    // A 10 ms dropout inside one long press is still one digit.
    assert_eq!(
        digits(&detect_with(cfg, &signal("55", 8000, 80, 10, 0.0, None))),
        "5"
    );
    // Two different digits with no gap: the second needs a gap first.
    assert_eq!(
        digits(&detect_with(cfg, &signal("12", 8000, 80, 0, 0.0, None))),
        "1"
    );
}

#[test]
fn silence_noise_and_single_tones_are_not_digits() {
    let cfg = DetectorConfig::new(8000);
    let mut noise = Noise(7);
    let white: Vec<i16> = (0..16000)
        .map(|_| (noise.gauss() * 3000.0) as i16)
        .collect();
    assert!(detect_with(cfg, &white).is_empty());
    assert!(detect_with(cfg, &vec![0; 8000]).is_empty());
    // A dial-tone-like single 440 Hz + 350 Hz pair and a lone 697 Hz tone.
    let tone = |f: &[f64]| -> Vec<i16> {
        (0..8000)
            .map(|i| {
                f.iter()
                    .map(|f| 8000.0 * (TAU * f * i as f64 / 8000.0).sin())
                    .sum::<f64>() as i16
            })
            .collect()
    };
    assert!(detect_with(cfg, &tone(&[350.0, 440.0])).is_empty());
    assert!(detect_with(cfg, &tone(&[697.0])).is_empty());
}

#[test]
fn unsupported_rates_are_errors() {
    assert_eq!(
        InbandDetector::new(44100).err(),
        Some(DetectorError::UnsupportedRate(44100))
    );
}

// --- speech ---------------------------------------------------------------

/// Speech from espeak-ng resampled to 8 kHz, normalised to a loud -3 dBFS
/// peak. Panics if espeak-ng is missing: install it (`apt-get install -y
/// espeak-ng`), the test must not pass by skipping.
fn speech(text: &str, voice: &str, pitch: u32, speed: u32) -> Vec<i16> {
    let out = std::process::Command::new("espeak-ng")
        .args([
            "--stdout",
            "-v",
            voice,
            "-p",
            &pitch.to_string(),
            "-s",
            &speed.to_string(),
            text,
        ])
        .output()
        .expect("espeak-ng must be installed for this test (apt-get install -y espeak-ng)");
    assert!(
        out.status.success(),
        "espeak-ng failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // espeak-ng streams its WAV with a placeholder data length, so read the
    // header by hand: the rate at byte 24, samples after the "data" tag.
    let wav = out.stdout;
    assert!(
        wav.len() > 44 && &wav[..4] == b"RIFF",
        "espeak-ng did not write a WAV"
    );
    let rate = u32::from_le_bytes([wav[24], wav[25], wav[26], wav[27]]);
    let data = wav
        .windows(4)
        .position(|w| w == b"data")
        .expect("data chunk")
        + 8;
    let samples: Vec<f64> = wav[data..]
        .chunks_exact(2)
        .map(|b| f64::from(i16::from_le_bytes([b[0], b[1]])))
        .collect();
    let low = lowpass(&samples, rate, 3600.0);
    // Linear interpolation at 8 kHz positions after the low-pass.
    let n_out = (low.len() as u64 * 8000 / u64::from(rate)) as usize;
    let mut res: Vec<f64> = (0..n_out)
        .map(|i| {
            let pos = i as f64 * f64::from(rate) / 8000.0;
            let j = pos as usize;
            let frac = pos - j as f64;
            let a = low[j.min(low.len() - 1)];
            let b = low[(j + 1).min(low.len() - 1)];
            a + (b - a) * frac
        })
        .collect();
    let peak = res.iter().fold(0.0f64, |m, s| m.max(s.abs())).max(1.0);
    for s in res.iter_mut() {
        *s *= 23000.0 / peak;
    }
    res.into_iter().map(|s| s as i16).collect()
}

/// A windowed-sinc FIR low-pass: naive, fine for a test.
fn lowpass(x: &[f64], rate: u32, cutoff: f64) -> Vec<f64> {
    let taps = 63;
    let fc = cutoff / f64::from(rate);
    let h: Vec<f64> = (0..taps)
        .map(|i| {
            let m = i as f64 - (taps - 1) as f64 / 2.0;
            let sinc = if m == 0.0 {
                2.0 * fc
            } else {
                (TAU * fc * m).sin() / (std::f64::consts::PI * m)
            };
            let w = 0.54 - 0.46 * (TAU * i as f64 / (taps - 1) as f64).cos();
            sinc * w
        })
        .collect();
    (0..x.len())
        .map(|n| {
            h.iter()
                .enumerate()
                .filter(|(k, _)| n >= *k)
                .map(|(k, c)| c * x[n - k])
                .sum()
        })
        .collect()
}

#[test]
fn speech_produces_no_digits() {
    let clips = [
        (
            "My account number is one two three four five six seven eight nine zero.",
            "en",
            50,
            160,
        ),
        (
            "Please call me back at five five five, zero one nine nine, after eight o'clock.",
            "en-us",
            80,
            140,
        ),
        (
            "Hello? Hello! Can you hear me? I would like to speak to an agent, please.",
            "en-gb",
            30,
            175,
        ),
        (
            "Mmmmm, aaaaah, ooooh, eeeeee, yes yes yes, no no no.",
            "en",
            99,
            120,
        ),
        (
            "Meine Nummer ist null sieben eins eins, vier drei zwei eins.",
            "de",
            40,
            150,
        ),
        (
            "Bonjour, je voudrais parler à quelqu'un, c'est le zéro six douze.",
            "fr",
            70,
            165,
        ),
        (
            "Seventy seven thousand, nine hundred and ninety nine point four.",
            "en-us",
            10,
            190,
        ),
    ];
    let mut naive_hits = 0;
    let mut total_secs = 0.0;
    for (text, voice, pitch, speed) in clips {
        let pcm = speech(text, voice, pitch, speed);
        assert!(
            pcm.len() > 8000,
            "espeak produced only {} samples for {text:?}",
            pcm.len()
        );
        total_secs += pcm.len() as f64 / 8000.0;
        let found = detect_with(DetectorConfig::new(8000), &pcm);
        assert!(
            found.is_empty(),
            "false digits {:?} in {voice} speech {text:?}",
            digits(&found)
        );
        // The same speech through a naive detector (strongest row + column
        // above a floor, one block, no twist / peak / energy-share checks)
        // must produce digits, or this test would prove nothing.
        let naive = DetectorConfig {
            normal_twist_db: 100.0,
            reverse_twist_db: 100.0,
            relative_peak_db: 0.0,
            tone_to_total: 0.0,
            min_tone_blocks: 1,
            min_gap_blocks: 1,
            ..DetectorConfig::new(8000)
        };
        naive_hits += detect_with(naive, &pcm).len();
    }
    assert!(total_secs > 15.0, "only {total_secs:.1} s of speech");
    assert!(
        naive_hits > 20,
        "a naive detector found only {naive_hits} digits in speech"
    );
}
