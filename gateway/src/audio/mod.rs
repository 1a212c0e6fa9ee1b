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
        Self {
            samples: vec![0; Self::samples_per_frame(sample_rate)],
            sample_rate,
        }
    }
}

/// A producer of 20 ms frames at a fixed rate, chosen when it is opened.
/// The media driver pulls one frame per packet time; `None` means the
/// source has ended.
pub trait FrameSource: Send {
    fn sample_rate(&self) -> u32;
    fn next_frame(&mut self) -> Option<AudioFrame>;
}

mod pcm;
mod resample;
mod tts;
mod wav;

pub use pcm::PcmSource;
pub use resample::{resample, resample_f32, ResampleError, Resampler, MAX_RATE, MIN_RATE};
pub use tts::{
    render_espeak, synthesize, CacheStats, SayConfig, SpeechCache, SpeechKey, TtsError,
    DEFAULT_CACHE_BYTES, MAX_TEXT_CHARS, RATE_WPM_RANGE, SYNTHESIS_TIMEOUT,
};
pub use wav::{
    decode_wav, fix_streamed_sizes, load_wav, write_wav, WavAudio, WavError, WavRecorder,
    MAX_WAV_SECONDS,
};

use std::path::{Path, PathBuf};

use crate::call::{CallError, PlaybackSource};

fn audio_error(path: &Path, reason: impl std::fmt::Display) -> CallError {
    CallError::Audio {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// Loads a WAV file and converts it to mono 16-bit PCM at `sample_rate`.
/// Blocking: file I/O and resampling.
pub fn load_wav_at(path: &Path, sample_rate: u32) -> Result<Vec<i16>, CallError> {
    let audio = load_wav(path).map_err(|e| audio_error(path, e))?;
    resample_f32(&audio.samples, audio.sample_rate, sample_rate).map_err(|e| audio_error(path, e))
}

/// Opens what a playback asks for as frames at `sample_rate`: a WAV file is
/// decoded and resampled, text is spoken by espeak-ng with `tts` (the
/// playback's voice and rate override it) through the process-wide
/// [`SpeechCache`], and PCM is resampled if its rate differs.
///
/// Decoding and resampling run on tokio's blocking pool.
pub async fn open_source(
    source: &PlaybackSource,
    sample_rate: u32,
    tts: &SayConfig,
) -> Result<Box<dyn FrameSource>, CallError> {
    match source {
        PlaybackSource::Wav(path) => {
            let owned = path.clone();
            let samples = tokio::task::spawn_blocking(move || load_wav_at(&owned, sample_rate))
                .await
                .map_err(|_| audio_error(path, "the decoding task failed"))??;
            Ok(Box::new(PcmSource::new(samples, sample_rate)))
        }
        PlaybackSource::Say {
            text,
            voice,
            rate_wpm,
        } => {
            let mut config = tts.clone();
            if let Some(voice) = voice {
                config.voice = voice.clone();
            }
            if let Some(rate) = rate_wpm {
                config.rate_wpm = *rate;
            }
            let samples = synthesize(text, &config, sample_rate, SpeechCache::global()).await?;
            Ok(Box::new(PcmSource::new(samples, sample_rate)))
        }
        PlaybackSource::Pcm {
            samples,
            sample_rate: rate,
        } if *rate == sample_rate => Ok(Box::new(PcmSource::new(samples.clone(), sample_rate))),
        PlaybackSource::Pcm {
            samples,
            sample_rate: rate,
        } => {
            let pcm_path = PathBuf::from("(in-memory PCM)");
            let (samples, from) = (samples.clone(), *rate);
            let out = tokio::task::spawn_blocking(move || resample(&samples, from, sample_rate))
                .await
                .map_err(|_| audio_error(&pcm_path, "the resampling task failed"))?
                .map_err(|e| audio_error(&pcm_path, e))?;
            Ok(Box::new(PcmSource::new(out, sample_rate)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn drain(mut src: Box<dyn FrameSource>) -> Vec<AudioFrame> {
        std::iter::from_fn(|| src.next_frame()).collect()
    }

    #[tokio::test]
    async fn open_wav_resamples_to_the_call_rate() {
        let dir = std::env::temp_dir().join(format!("voxgate-open-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("prompt.wav");
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: 44_100,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(&path, spec).expect("create");
        for i in 0..22_050 {
            let v =
                (8000.0 * (2.0 * std::f64::consts::PI * 1000.0 * i as f64 / 44_100.0).sin()) as i16;
            w.write_sample(v).expect("l");
            w.write_sample(v).expect("r");
        }
        w.finalize().expect("finalize");
        let frames = drain(
            open_source(&PlaybackSource::Wav(path), 8_000, &SayConfig::default())
                .await
                .expect("open"),
        );
        // Half a second at 8 kHz: 25 frames of 160.
        assert_eq!(frames.len(), 25);
        assert!(frames
            .iter()
            .all(|f| f.samples.len() == 160 && f.sample_rate == 8_000));
        let missing = open_source(
            &PlaybackSource::Wav(dir.join("nope.wav")),
            8_000,
            &SayConfig::default(),
        )
        .await;
        match missing {
            Err(CallError::Audio { path, reason }) => {
                assert!(path.ends_with("nope.wav"));
                assert_eq!(reason, "file not found");
            }
            Err(other) => panic!("unexpected error {other}"),
            Ok(_) => panic!("a missing file must fail"),
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn open_pcm_at_other_rate() {
        let samples: Arc<[i16]> = Arc::from(vec![1000i16; 16_000]);
        let src = PlaybackSource::Pcm {
            samples: samples.clone(),
            sample_rate: 16_000,
        };
        let frames = drain(
            open_source(&src, 8_000, &SayConfig::default())
                .await
                .expect("open"),
        );
        assert_eq!(frames.len(), 50);
        let same = PlaybackSource::Pcm {
            samples,
            sample_rate: 8_000,
        };
        assert_eq!(
            drain(
                open_source(&same, 8_000, &SayConfig::default())
                    .await
                    .expect("open")
            )
            .len(),
            100
        );
    }

    #[tokio::test]
    async fn open_say_with_a_missing_binary_is_a_tts_error() {
        let tts = SayConfig {
            binary: PathBuf::from("/nonexistent/espeak-ng"),
            ..SayConfig::default()
        };
        let src = PlaybackSource::Say {
            text: "hello there".into(),
            voice: None,
            rate_wpm: None,
        };
        assert!(matches!(
            open_source(&src, 8_000, &tts).await,
            Err(CallError::Tts(_))
        ));
    }

    #[tokio::test]
    async fn open_say_speaks() {
        let src = PlaybackSource::Say {
            text: "Thank you for calling.".into(),
            voice: Some("en".into()),
            rate_wpm: Some(180),
        };
        let frames = drain(
            open_source(&src, 8_000, &SayConfig::default())
                .await
                .expect("open"),
        );
        assert!(frames.len() > 25, "{} frames", frames.len());
    }
}
