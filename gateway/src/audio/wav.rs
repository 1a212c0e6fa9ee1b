//! WAV files: decoding prompts of any common format with `hound`, and
//! writing 16-bit mono recordings.
//!
//! Decoding accepts 8, 16, 24 and 32-bit integer PCM and 32-bit float, any
//! number of channels (mixed down to mono) and any rate; the result is float
//! mono at the file's own rate, ready for [`super::resample`].

use std::fs::File;
use std::io::{BufWriter, Cursor, Read};
use std::path::Path;

use super::AudioFrame;

/// Prompts longer than this are refused: a longer file is almost surely a
/// mistake, and decoding it would hold a lot of memory per call.
pub const MAX_WAV_SECONDS: u32 = 15 * 60;

/// Why a WAV file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum WavError {
    #[error("file not found")]
    NotFound,
    #[error("I/O error: {0}")]
    Io(#[source] std::io::Error),
    #[error("not a WAV file: {0}")]
    NotWav(&'static str),
    #[error("unsupported WAV format: {0}")]
    Unsupported(&'static str),
    #[error("malformed WAV file: {0}")]
    Malformed(&'static str),
    #[error("the file is {seconds} s long; the limit is {MAX_WAV_SECONDS} s")]
    TooLong { seconds: u64 },
    #[error("frame at {got} Hz written to a {expected} Hz recording")]
    RateMismatch { expected: u32, got: u32 },
}

impl WavError {
    fn from_io(e: std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::NotFound {
            WavError::NotFound
        } else {
            WavError::Io(e)
        }
    }
}

impl From<hound::Error> for WavError {
    fn from(e: hound::Error) -> Self {
        match e {
            hound::Error::IoError(io) => WavError::from_io(io),
            hound::Error::FormatError(m @ ("no RIFF tag found" | "no WAVE tag found")) => {
                WavError::NotWav(m)
            }
            hound::Error::FormatError(
                m @ ("bits per sample is not 8 or 16" | "bits per sample is not 32"),
            ) => WavError::Unsupported(m),
            hound::Error::FormatError(m) => WavError::Malformed(m),
            hound::Error::Unsupported => WavError::Unsupported(
                "compressed or unknown encoding (only PCM and IEEE float are read)",
            ),
            hound::Error::TooWide | hound::Error::InvalidSampleFormat => {
                WavError::Unsupported("sample width not supported")
            }
            hound::Error::UnfinishedSample => WavError::Malformed("unfinished sample"),
        }
    }
}

/// Reading from memory can only fail on truncation, whatever kind of I/O
/// error hound reports it as.
fn decode_error(e: hound::Error) -> WavError {
    match e {
        hound::Error::IoError(_) => WavError::Malformed("the file ends inside a header or sample"),
        other => other.into(),
    }
}

/// Decoded audio: mono float samples in [-1, 1] at the file's rate.
#[derive(Debug, Clone, PartialEq)]
pub struct WavAudio {
    pub samples: Vec<f32>,
    pub sample_rate: u32,
    /// Channels in the file before the mix-down.
    pub channels: u16,
    pub bits_per_sample: u16,
    pub float: bool,
}

/// Reads and decodes a WAV file. Blocking: call it from
/// `spawn_blocking` in async code.
pub fn load_wav(path: &Path) -> Result<WavAudio, WavError> {
    let mut bytes = Vec::new();
    File::open(path)
        .map_err(WavError::from_io)?
        .read_to_end(&mut bytes)
        .map_err(WavError::from_io)?;
    decode_wav(&bytes)
}

/// Decodes a WAV file held in memory.
pub fn decode_wav(bytes: &[u8]) -> Result<WavAudio, WavError> {
    let reader = hound::WavReader::new(Cursor::new(bytes)).map_err(decode_error)?;
    let spec = reader.spec();
    if spec.channels == 0 {
        return Err(WavError::Malformed("zero channels"));
    }
    if spec.sample_rate == 0 {
        return Err(WavError::Malformed("sample rate 0"));
    }
    let frames = reader.duration() as u64;
    let seconds = frames / spec.sample_rate as u64;
    if seconds > MAX_WAV_SECONDS as u64 {
        return Err(WavError::TooLong { seconds });
    }
    let channels = spec.channels as usize;
    let interleaved: Vec<f32> = match (spec.sample_format, spec.bits_per_sample) {
        (hound::SampleFormat::Float, 32) => reader
            .into_samples::<f32>()
            .collect::<Result<_, _>>()
            .map_err(decode_error)?,
        (hound::SampleFormat::Int, bits @ (8 | 16 | 24 | 32)) => {
            let scale = 1.0 / (1u64 << (bits - 1)) as f64;
            reader
                .into_samples::<i32>()
                .map(|s| s.map(|v| (v as f64 * scale) as f32))
                .collect::<Result<_, _>>()
                .map_err(decode_error)?
        }
        (hound::SampleFormat::Float, _) => {
            return Err(WavError::Unsupported("float samples other than 32-bit"))
        }
        (hound::SampleFormat::Int, _) => {
            return Err(WavError::Unsupported(
                "integer samples other than 8/16/24/32-bit",
            ))
        }
    };
    let samples = if channels == 1 {
        interleaved
    } else {
        let inv = 1.0 / channels as f32;
        interleaved
            .chunks_exact(channels)
            .map(|frame| frame.iter().sum::<f32>() * inv)
            .collect()
    };
    Ok(WavAudio {
        samples,
        sample_rate: spec.sample_rate,
        channels: spec.channels,
        bits_per_sample: spec.bits_per_sample,
        float: spec.sample_format == hound::SampleFormat::Float,
    })
}

/// Rewrites the RIFF and `data` sizes of a WAV that was streamed to a pipe.
///
/// A writer that cannot seek back (espeak-ng `--stdout`) leaves placeholder
/// sizes near 2 GiB in the header; hound would then read past the end and
/// fail. The sizes are clamped to the bytes actually present, cut to whole
/// sample frames.
pub fn fix_streamed_sizes(bytes: &mut [u8]) {
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return;
    }
    let riff_len = (bytes.len() - 8) as u32;
    if le_u32(bytes, 4) > riff_len {
        bytes[4..8].copy_from_slice(&riff_len.to_le_bytes());
    }
    let mut block_align = 1usize;
    let mut pos = 12usize;
    while pos + 8 <= bytes.len() {
        let id = [bytes[pos], bytes[pos + 1], bytes[pos + 2], bytes[pos + 3]];
        let len = le_u32(bytes, pos + 4) as usize;
        let body = pos + 8;
        if &id == b"fmt " && body + 14 <= bytes.len() {
            block_align =
                (u16::from_le_bytes([bytes[body + 12], bytes[body + 13]]) as usize).max(1);
        }
        if &id == b"data" {
            let available = bytes.len() - body;
            if len > available {
                let fixed = (available / block_align * block_align) as u32;
                bytes[pos + 4..pos + 8].copy_from_slice(&fixed.to_le_bytes());
            }
            return;
        }
        // Chunks are padded to an even length.
        pos = body.saturating_add(len).saturating_add(len & 1);
    }
}

fn le_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// The WAV format of recordings: 16-bit mono PCM.
fn recording_spec(sample_rate: u32) -> hound::WavSpec {
    hound::WavSpec {
        channels: 1,
        sample_rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    }
}

/// Writes a recording as 16-bit mono WAV, frame by frame. Blocking I/O.
/// Call [`WavRecorder::finalize`] at the end so the header gets the real
/// length; a recorder dropped without it still fixes the header on drop,
/// ignoring errors.
pub struct WavRecorder {
    writer: hound::WavWriter<BufWriter<File>>,
    sample_rate: u32,
    samples: u64,
}

impl WavRecorder {
    /// Creates (or truncates) `path`.
    pub fn create(path: &Path, sample_rate: u32) -> Result<Self, WavError> {
        if sample_rate == 0 {
            return Err(WavError::Malformed("sample rate 0"));
        }
        let file = File::create(path).map_err(WavError::from_io)?;
        let writer = hound::WavWriter::new(BufWriter::new(file), recording_spec(sample_rate))?;
        Ok(Self {
            writer,
            sample_rate,
            samples: 0,
        })
    }

    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    /// Samples written so far.
    pub fn samples_written(&self) -> u64 {
        self.samples
    }

    pub fn write_samples(&mut self, samples: &[i16]) -> Result<(), WavError> {
        let mut w = self.writer.get_i16_writer(samples.len() as u32);
        for &s in samples {
            w.write_sample(s);
        }
        w.flush()?;
        self.samples += samples.len() as u64;
        Ok(())
    }

    /// Appends a frame; its rate must be the recording's.
    pub fn write_frame(&mut self, frame: &AudioFrame) -> Result<(), WavError> {
        if frame.sample_rate != self.sample_rate {
            return Err(WavError::RateMismatch {
                expected: self.sample_rate,
                got: frame.sample_rate,
            });
        }
        self.write_samples(&frame.samples)
    }

    /// Writes the final header and closes the file.
    pub fn finalize(self) -> Result<(), WavError> {
        self.writer.finalize()?;
        Ok(())
    }
}

/// Writes `samples` to `path` as one 16-bit mono WAV file.
pub fn write_wav(path: &Path, samples: &[i16], sample_rate: u32) -> Result<(), WavError> {
    let mut rec = WavRecorder::create(path, sample_rate)?;
    rec.write_samples(samples)?;
    rec.finalize()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("voxgate-wav-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    /// Writes one second of a 500 Hz sine at half scale (left) and, for
    /// stereo, its negative quarter (right), in the given format.
    fn write_test_file(path: &Path, channels: u16, rate: u32, bits: u16, float: bool) {
        let spec = hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: bits,
            sample_format: if float {
                hound::SampleFormat::Float
            } else {
                hound::SampleFormat::Int
            },
        };
        let mut w = hound::WavWriter::create(path, spec).expect("create");
        for i in 0..rate {
            let v = 0.5 * (2.0 * std::f64::consts::PI * 500.0 * i as f64 / rate as f64).sin();
            for ch in 0..channels {
                let x = if ch == 0 { v } else { -v / 2.0 };
                if float {
                    w.write_sample(x as f32).expect("write");
                } else {
                    let max = ((1i64 << (bits - 1)) - 1) as f64;
                    let q = (x * max).round() as i32;
                    match bits {
                        8 => w.write_sample(q as i8).expect("write"),
                        16 => w.write_sample(q as i16).expect("write"),
                        _ => w.write_sample(q).expect("write"),
                    }
                }
            }
        }
        w.finalize().expect("finalize");
    }

    #[test]
    fn decodes_every_supported_format() {
        let dir = temp_dir("formats");
        let cases = [
            (1, 8_000, 8, false),
            (1, 16_000, 16, false),
            (2, 44_100, 16, false),
            (1, 48_000, 24, false),
            (2, 22_050, 32, false),
            (1, 11_025, 32, true),
            (2, 96_000, 32, true),
        ];
        for (channels, rate, bits, float) in cases {
            let path = dir.join(format!("t-{channels}-{rate}-{bits}-{float}.wav"));
            write_test_file(&path, channels, rate, bits, float);
            let audio = load_wav(&path).expect("load");
            assert_eq!(audio.sample_rate, rate);
            assert_eq!(audio.channels, channels);
            assert_eq!(audio.bits_per_sample, bits);
            assert_eq!(audio.float, float);
            assert_eq!(audio.samples.len(), rate as usize);
            // Mono: peak 0.5. Stereo mean of v and -v/2: peak 0.125.
            let peak = audio.samples.iter().fold(0.0f32, |m, s| m.max(s.abs()));
            let want = if channels == 1 { 0.5 } else { 0.125 };
            let tolerance = if bits == 8 { 0.02 } else { 0.002 };
            assert!((peak - want).abs() < tolerance, "{path:?}: peak {peak}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn typed_errors() {
        let dir = temp_dir("errors");
        assert!(matches!(
            load_wav(&dir.join("absent.wav")),
            Err(WavError::NotFound)
        ));
        let text = dir.join("text.wav");
        std::fs::write(&text, b"this is not audio at all, just some text").expect("write");
        assert!(matches!(load_wav(&text), Err(WavError::NotWav(_))));
        let short = dir.join("short.wav");
        std::fs::write(&short, b"RIF").expect("write");
        assert!(matches!(load_wav(&short), Err(WavError::Malformed(_))));
        // A-law (format code 6) is a valid WAV that we do not read.
        let mut alaw = Vec::new();
        alaw.extend_from_slice(b"RIFF");
        alaw.extend_from_slice(&(4u32 + 8 + 16 + 8 + 4).to_le_bytes());
        alaw.extend_from_slice(b"WAVEfmt ");
        alaw.extend_from_slice(&16u32.to_le_bytes());
        for v in [6u16, 1] {
            alaw.extend_from_slice(&v.to_le_bytes());
        }
        alaw.extend_from_slice(&8000u32.to_le_bytes());
        alaw.extend_from_slice(&8000u32.to_le_bytes());
        for v in [1u16, 8] {
            alaw.extend_from_slice(&v.to_le_bytes());
        }
        alaw.extend_from_slice(b"data");
        alaw.extend_from_slice(&4u32.to_le_bytes());
        alaw.extend_from_slice(&[0xd5; 4]);
        assert!(
            matches!(decode_wav(&alaw), Err(WavError::Unsupported(_))),
            "{:?}",
            decode_wav(&alaw)
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn recorder_round_trip() {
        let dir = temp_dir("rec");
        let path = dir.join("rec.wav");
        let mut rec = WavRecorder::create(&path, 8_000).expect("create");
        let frame = AudioFrame {
            samples: (0..160).map(|i| (i * 100) as i16).collect(),
            sample_rate: 8_000,
        };
        rec.write_frame(&frame).expect("write");
        rec.write_frame(&frame).expect("write");
        assert!(matches!(
            rec.write_frame(&AudioFrame::silence(16_000)),
            Err(WavError::RateMismatch { .. })
        ));
        assert_eq!(rec.samples_written(), 320);
        rec.finalize().expect("finalize");
        let reader = hound::WavReader::open(&path).expect("open");
        assert_eq!(reader.spec(), recording_spec(8_000));
        let samples: Vec<i16> = reader
            .into_samples::<i16>()
            .collect::<Result<_, _>>()
            .expect("read");
        assert_eq!(samples.len(), 320);
        assert_eq!(&samples[..160], &frame.samples[..]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn streamed_header_is_repaired() {
        let mut bytes = Vec::new();
        {
            let mut w = hound::WavWriter::new(Cursor::new(&mut bytes), recording_spec(22_050))
                .expect("new");
            for i in 0..1000 {
                w.write_sample(i as i16).expect("write");
            }
            w.finalize().expect("finalize");
        }
        // Fake what a pipe writer leaves behind, plus a torn last sample.
        bytes[4..8].copy_from_slice(&0x7fff_f024u32.to_le_bytes());
        bytes[40..44].copy_from_slice(&0x7fff_f000u32.to_le_bytes());
        bytes.push(0x12);
        fix_streamed_sizes(&mut bytes);
        let audio = decode_wav(&bytes).expect("decode");
        assert_eq!(audio.samples.len(), 1000);
        // Garbage never panics.
        for len in 0..60 {
            let mut b = bytes[..len.min(bytes.len())].to_vec();
            fix_streamed_sizes(&mut b);
            let _ = decode_wav(&b);
        }
    }
}
