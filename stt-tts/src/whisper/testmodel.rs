//! A generator of tiny but VALID ggml whisper model files, for tests and
//! the benchmark on machines that cannot download real weights.
//!
//! The file has real whisper geometry where whisper.cpp hard-codes it (the
//! multilingual vocabulary size with its special tokens, 80 mel bins, the
//! 1500-position audio window, the 448-token text window, a Slaney mel
//! filter bank for a 400-point FFT at 16 kHz) and tiny everywhere else
//! (state 16, 2 heads, 1 layer each side), with seeded random weights. It
//! loads and runs through the real whisper.cpp; what it "hears" is
//! nonsense.

use std::path::Path;

use super::ggml::{expected_tensors, HParams, TensorSpec, F16, F32, GGML_MAGIC, N_FFT_BINS};

/// How the tiny model is shaped and seeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TinyModel {
    pub hparams: HParams,
    pub seed: u64,
}

impl Default for TinyModel {
    fn default() -> Self {
        Self {
            hparams: HParams {
                n_vocab: 51865,
                n_audio_ctx: 1500,
                n_audio_state: 16,
                n_audio_head: 2,
                n_audio_layer: 1,
                n_text_ctx: 448,
                n_text_state: 16,
                n_text_head: 2,
                // Not 2: whisper.cpp treats 2-layer decoders as distilled
                // models and forces timestamps off.
                n_text_layer: 1,
                n_mels: 80,
                ftype: 1,
            },
            seed: 0x5eed_0f7e_57ab,
        }
    }
}

/// splitmix64: tiny, seedable, and stable across crate versions.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [-scale, scale).
    fn symmetric(&mut self, scale: f32) -> f32 {
        let unit = (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
        (unit * 2.0 - 1.0) * scale
    }
}

/// f32 to IEEE half, round to nearest; the weights here are small normal
/// numbers, so subnormal and overflow handling can be coarse.
fn f16_bits(x: f32) -> u16 {
    let bits = x.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exp = ((bits >> 23) & 0xff) as i32 - 127 + 15;
    let mant = bits & 0x7f_ffff;
    if exp <= 0 {
        return sign;
    }
    if exp >= 31 {
        return sign | 0x7c00;
    }
    let half = sign | ((exp as u16) << 10) | (mant >> 13) as u16;
    // Round half up on the dropped 13 bits; a carry into the exponent is
    // still the correctly rounded value.
    if mant & 0x1000 != 0 {
        half + 1
    } else {
        half
    }
}

fn hz_to_mel(hz: f64) -> f64 {
    // Slaney: linear below 1 kHz, logarithmic above.
    let f_sp = 200.0 / 3.0;
    if hz < 1000.0 {
        hz / f_sp
    } else {
        1000.0 / f_sp + (hz / 1000.0).ln() / (6.4f64.ln() / 27.0)
    }
}

fn mel_to_hz(mel: f64) -> f64 {
    let f_sp = 200.0 / 3.0;
    let min_log_mel = 1000.0 / f_sp;
    if mel < min_log_mel {
        mel * f_sp
    } else {
        1000.0 * ((mel - min_log_mel) * (6.4f64.ln() / 27.0)).exp()
    }
}

/// Slaney-normalised triangular filters, `n_mels` x 201, row-major: the
/// same kind of bank whisper's own model files carry.
pub fn mel_filters(n_mels: usize) -> Vec<f32> {
    let bins = N_FFT_BINS as usize;
    let sr = 16_000.0;
    let max_mel = hz_to_mel(sr / 2.0);
    let points: Vec<f64> = (0..n_mels + 2)
        .map(|i| mel_to_hz(max_mel * i as f64 / (n_mels + 1) as f64))
        .collect();
    let mut out = vec![0f32; n_mels * bins];
    for m in 0..n_mels {
        let (lo, mid, hi) = (points[m], points[m + 1], points[m + 2]);
        let norm = 2.0 / (hi - lo);
        for k in 0..bins {
            let f = k as f64 * sr / 400.0;
            let up = (f - lo) / (mid - lo);
            let down = (hi - f) / (hi - mid);
            out[m * bins + k] = (up.min(down).max(0.0) * norm) as f32;
        }
    }
    out
}

/// The text of token `i`: printable and unique, so decoded nonsense is at
/// least readable.
fn token_text(i: usize) -> Vec<u8> {
    if i < 95 {
        vec![b' ' + i as u8]
    } else {
        format!(" w{i}").into_bytes()
    }
}

impl TinyModel {
    /// The model file's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let hp = self.hparams;
        let mut out = Vec::with_capacity(4 << 20);
        out.extend_from_slice(&GGML_MAGIC.to_le_bytes());
        out.extend_from_slice(&hp.to_le_bytes());

        let n_mels = hp.n_mels.max(0) as usize;
        out.extend_from_slice(&hp.n_mels.to_le_bytes());
        out.extend_from_slice(&N_FFT_BINS.to_le_bytes());
        for v in mel_filters(n_mels) {
            out.extend_from_slice(&v.to_le_bytes());
        }

        // The text tokens; whisper.cpp names the special ones itself.
        let text_tokens = if hp.multilingual() { 50257 } else { 50256 };
        out.extend_from_slice(&(text_tokens as i32).to_le_bytes());
        for i in 0..text_tokens {
            let t = token_text(i);
            out.extend_from_slice(&(t.len() as u32).to_le_bytes());
            out.extend_from_slice(&t);
        }

        let w = hp.weight_type().unwrap_or(F16);
        let mut rng = Rng(self.seed);
        for (name, spec) in expected_tensors(&hp, w) {
            write_tensor(&mut out, &name, &spec, &mut rng);
        }
        out
    }

    /// Writes the model file to `path`.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        std::fs::write(path, self.to_bytes())
    }
}

fn write_tensor(out: &mut Vec<u8>, name: &str, spec: &TensorSpec, rng: &mut Rng) {
    let n_dims = spec.n_dims();
    out.extend_from_slice(&(n_dims as i32).to_le_bytes());
    out.extend_from_slice(&(name.len() as i32).to_le_bytes());
    out.extend_from_slice(&spec.ty.id.to_le_bytes());
    for &d in &spec.ne[..n_dims] {
        out.extend_from_slice(&(d as i32).to_le_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    let n: i64 = spec.ne.iter().product();
    // Layer norms start as identity so activations stay in range through
    // the random layers; everything else is small noise.
    let is_norm_weight = name.ends_with("ln.weight") || name.ends_with("ln_post.weight");
    let scale = if name.ends_with("bias") { 0.01 } else { 0.2 };
    for _ in 0..n {
        let v = if is_norm_weight {
            1.0
        } else {
            rng.symmetric(scale)
        };
        if spec.ty == F32 {
            out.extend_from_slice(&v.to_le_bytes());
        } else {
            out.extend_from_slice(&f16_bits(v).to_le_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::whisper::ggml::check;

    #[test]
    fn the_generated_file_passes_the_format_check() {
        let bytes = TinyModel::default().to_bytes();
        let info = check(std::io::Cursor::new(&bytes), bytes.len() as u64).expect("valid");
        assert_eq!(info.tensors, 7 + 15 + 4 + 24);
        assert_eq!(info.weight_type, "f16");
    }

    #[test]
    fn half_floats_round_trip_common_values() {
        assert_eq!(f16_bits(1.0), 0x3c00);
        assert_eq!(f16_bits(-2.0), 0xc000);
        assert_eq!(f16_bits(0.0), 0);
        assert_eq!(f16_bits(0.5), 0x3800);
    }

    #[test]
    fn mel_filters_cover_the_band_and_are_non_negative() {
        let f = mel_filters(80);
        assert_eq!(f.len(), 80 * 201);
        assert!(f.iter().all(|&v| v >= 0.0));
        for m in 0..80 {
            assert!(
                f[m * 201..(m + 1) * 201].iter().any(|&v| v > 0.0),
                "row {m}"
            );
        }
    }
}
