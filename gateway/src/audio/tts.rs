//! Speech from espeak-ng, run as a subprocess.
//!
//! espeak-ng is GPL, so voxgate never links it: it runs
//! `espeak-ng --stdout -v VOICE -s WPM -p PITCH -- TEXT` with no shell in
//! between, reads the WAV it prints (22050 Hz mono), and resamples it to the
//! call rate. The text goes after `--`, so text that looks like an option is
//! spoken, not obeyed.
//!
//! Rendered prompts are kept in a small in-memory [`SpeechCache`], bounded
//! in bytes. It is deliberately simple: the stt-tts TTS cache (not built
//! yet: shared, on disk, for every provider) is to replace it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use super::resample::{resample_f32, ResampleError};
use super::wav::{decode_wav, fix_streamed_sizes, WavError};
use crate::call::CallError;

/// Longest text one request may speak, in characters.
pub const MAX_TEXT_CHARS: usize = 5_000;
/// espeak-ng's accepted speaking rates, words per minute.
pub const RATE_WPM_RANGE: std::ops::RangeInclusive<u32> = 80..=450;
/// How long one synthesis may take before it is killed.
pub const SYNTHESIS_TIMEOUT: Duration = Duration::from_secs(20);
/// Default bound of the process-wide prompt cache.
pub const DEFAULT_CACHE_BYTES: usize = 16 * 1024 * 1024;

/// How to run espeak-ng.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SayConfig {
    /// espeak-ng voice name, for example `en-us` or `fr`.
    pub voice: String,
    /// Speaking rate in words per minute; clamped to [`RATE_WPM_RANGE`].
    pub rate_wpm: u32,
    /// Pitch 0-99; clamped.
    pub pitch: u32,
    /// The espeak-ng executable, looked up on `PATH` when it has no slash.
    pub binary: PathBuf,
}

impl Default for SayConfig {
    fn default() -> Self {
        Self {
            voice: "en-us".to_owned(),
            rate_wpm: 160,
            pitch: 50,
            binary: PathBuf::from("espeak-ng"),
        }
    }
}

/// Why speech could not be produced.
#[derive(Debug, thiserror::Error)]
pub enum TtsError {
    #[error("espeak-ng binary {binary:?} not found; install espeak-ng or set its path")]
    BinaryNotFound { binary: PathBuf },
    #[error("cannot run {binary:?}: {source}")]
    Spawn {
        binary: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("espeak-ng exited with status {status:?}: {stderr}")]
    Failed { status: Option<i32>, stderr: String },
    #[error("espeak-ng took longer than {SYNTHESIS_TIMEOUT:?}")]
    Timeout,
    #[error("invalid voice name {0:?}")]
    InvalidVoice(String),
    #[error("text of {chars} characters is over the limit of {MAX_TEXT_CHARS}")]
    TextTooLong { chars: usize },
    #[error("espeak-ng printed no usable WAV: {0}")]
    BadOutput(#[from] WavError),
    #[error(transparent)]
    Resample(#[from] ResampleError),
    #[error("the synthesis task failed")]
    Task,
}

impl From<TtsError> for CallError {
    fn from(e: TtsError) -> Self {
        CallError::Tts(e.to_string())
    }
}

/// Voice names are words, dialect suffixes and variant paths
/// (`en-us`, `mb/mb-fr1`, `en+f3`); nothing that escapes espeak's data dir.
fn check_voice(voice: &str) -> Result<(), TtsError> {
    let ok = !voice.is_empty()
        && voice.len() <= 64
        && !voice.starts_with(['-', '/'])
        && !voice.contains("..")
        && voice
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '+' | '/'));
    if ok {
        Ok(())
    } else {
        Err(TtsError::InvalidVoice(voice.to_owned()))
    }
}

/// What one rendered prompt is keyed by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SpeechKey {
    pub voice: String,
    pub rate_wpm: u32,
    pub pitch: u32,
    pub text: String,
    pub sample_rate: u32,
}

impl SpeechKey {
    fn cost(&self, samples: usize) -> usize {
        self.voice.len() + self.text.len() + samples * std::mem::size_of::<i16>() + 64
    }
}

/// Counters of a [`SpeechCache`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    pub entries: usize,
    pub bytes: usize,
}

struct Entry {
    samples: Arc<[i16]>,
    cost: usize,
    last_used: u64,
}

#[derive(Default)]
struct CacheInner {
    entries: HashMap<SpeechKey, Entry>,
    bytes: usize,
    tick: u64,
    hits: u64,
    misses: u64,
}

/// A least-recently-used cache of rendered prompts, bounded in bytes.
///
/// Two requests for the same missing prompt at once both render it; the
/// second insert wins. That costs a little CPU, never a wrong result.
pub struct SpeechCache {
    max_bytes: usize,
    inner: Mutex<CacheInner>,
}

impl SpeechCache {
    pub fn new(max_bytes: usize) -> Self {
        Self {
            max_bytes,
            inner: Mutex::new(CacheInner::default()),
        }
    }

    /// The process-wide cache [`super::open_source`] uses.
    pub fn global() -> &'static SpeechCache {
        static CACHE: OnceLock<SpeechCache> = OnceLock::new();
        CACHE.get_or_init(|| SpeechCache::new(DEFAULT_CACHE_BYTES))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CacheInner> {
        // The inner state stays consistent at every await-free step, so a
        // panic elsewhere while holding the lock leaves nothing half done.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn get(&self, key: &SpeechKey) -> Option<Arc<[i16]>> {
        let mut inner = self.lock();
        inner.tick += 1;
        let tick = inner.tick;
        match inner.entries.get_mut(key) {
            Some(e) => {
                e.last_used = tick;
                let samples = e.samples.clone();
                inner.hits += 1;
                Some(samples)
            }
            None => {
                inner.misses += 1;
                None
            }
        }
    }

    pub fn insert(&self, key: SpeechKey, samples: Arc<[i16]>) {
        let cost = key.cost(samples.len());
        if cost > self.max_bytes {
            return;
        }
        let mut inner = self.lock();
        inner.tick += 1;
        let tick = inner.tick;
        if let Some(old) = inner.entries.remove(&key) {
            inner.bytes -= old.cost;
        }
        while inner.bytes + cost > self.max_bytes {
            let Some(oldest) = inner
                .entries
                .iter()
                .min_by_key(|(_, e)| e.last_used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some(e) = inner.entries.remove(&oldest) {
                inner.bytes -= e.cost;
            }
        }
        inner.bytes += cost;
        inner.entries.insert(
            key,
            Entry {
                samples,
                cost,
                last_used: tick,
            },
        );
    }

    pub fn stats(&self) -> CacheStats {
        let inner = self.lock();
        CacheStats {
            hits: inner.hits,
            misses: inner.misses,
            entries: inner.entries.len(),
            bytes: inner.bytes,
        }
    }
}

/// Runs espeak-ng once and returns its mono float samples and their rate.
pub async fn render_espeak(text: &str, config: &SayConfig) -> Result<(Vec<f32>, u32), TtsError> {
    check_voice(&config.voice)?;
    let chars = text.chars().count();
    if chars > MAX_TEXT_CHARS {
        return Err(TtsError::TextTooLong { chars });
    }
    let rate = config
        .rate_wpm
        .clamp(*RATE_WPM_RANGE.start(), *RATE_WPM_RANGE.end());
    let pitch = config.pitch.min(99);
    let mut cmd = tokio::process::Command::new(&config.binary);
    cmd.arg("--stdout")
        .arg("-v")
        .arg(&config.voice)
        .arg("-s")
        .arg(rate.to_string())
        .arg("-p")
        .arg(pitch.to_string())
        .arg("--")
        .arg(text)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = cmd.spawn().map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            TtsError::BinaryNotFound {
                binary: config.binary.clone(),
            }
        } else {
            TtsError::Spawn {
                binary: config.binary.clone(),
                source,
            }
        }
    })?;
    let output = tokio::time::timeout(SYNTHESIS_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| TtsError::Timeout)?
        .map_err(|source| TtsError::Spawn {
            binary: config.binary.clone(),
            source,
        })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr)
            .chars()
            .take(400)
            .collect::<String>();
        return Err(TtsError::Failed {
            status: output.status.code(),
            stderr: stderr.trim().to_owned(),
        });
    }
    let mut wav = output.stdout;
    fix_streamed_sizes(&mut wav);
    let audio = decode_wav(&wav)?;
    Ok((audio.samples, audio.sample_rate))
}

/// Speaks `text` with `config` at `sample_rate`, through `cache`.
/// Empty or blank text yields no samples without running espeak-ng.
pub async fn synthesize(
    text: &str,
    config: &SayConfig,
    sample_rate: u32,
    cache: &SpeechCache,
) -> Result<Arc<[i16]>, TtsError> {
    if text.trim().is_empty() {
        return Ok(Arc::from(Vec::new()));
    }
    let key = SpeechKey {
        voice: config.voice.clone(),
        rate_wpm: config.rate_wpm,
        pitch: config.pitch,
        text: text.to_owned(),
        sample_rate,
    };
    if let Some(hit) = cache.get(&key) {
        return Ok(hit);
    }
    let (samples, rate) = render_espeak(text, config).await?;
    let pcm = tokio::task::spawn_blocking(move || resample_f32(&samples, rate, sample_rate))
        .await
        .map_err(|_| TtsError::Task)??;
    let pcm: Arc<[i16]> = Arc::from(pcm);
    cache.insert(key, pcm.clone());
    Ok(pcm)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(text: &str, rate: u32) -> SpeechKey {
        SpeechKey {
            voice: "en".into(),
            rate_wpm: 160,
            pitch: 50,
            text: text.into(),
            sample_rate: rate,
        }
    }

    #[test]
    fn cache_evicts_least_recently_used_by_bytes() {
        let one = key("a", 8_000).cost(1000);
        let cache = SpeechCache::new(one * 2 + 10);
        cache.insert(key("a", 8_000), Arc::from(vec![0i16; 1000]));
        cache.insert(key("b", 8_000), Arc::from(vec![0i16; 1000]));
        assert!(cache.get(&key("a", 8_000)).is_some()); // a is now the most recent
        cache.insert(key("c", 8_000), Arc::from(vec![0i16; 1000]));
        assert!(cache.get(&key("b", 8_000)).is_none());
        assert!(cache.get(&key("a", 8_000)).is_some());
        assert!(cache.get(&key("c", 8_000)).is_some());
        let stats = cache.stats();
        assert_eq!(stats.entries, 2);
        assert!(stats.bytes <= one * 2 + 10);
        // Too big to ever fit: not cached, nothing evicted.
        cache.insert(key("huge", 8_000), Arc::from(vec![0i16; 100_000]));
        assert_eq!(cache.stats().entries, 2);
        // The target rate is part of the key.
        assert!(cache.get(&key("a", 16_000)).is_none());
    }

    #[test]
    fn voice_names_are_checked() {
        for ok in ["en", "en-us", "mb/mb-fr1", "en+f3", "pt_BR"] {
            assert!(check_voice(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-x", "/etc/passwd", "../../x", "en us", "en;rm"] {
            assert!(check_voice(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn missing_binary_is_a_typed_error() {
        let config = SayConfig {
            binary: PathBuf::from("/nonexistent/espeak-ng-voxgate"),
            ..SayConfig::default()
        };
        let err = render_espeak("hello", &config)
            .await
            .expect_err("must fail");
        assert!(matches!(err, TtsError::BinaryNotFound { .. }), "{err}");
        assert!(matches!(CallError::from(err), CallError::Tts(_)));
    }

    fn espeak_available() -> bool {
        std::process::Command::new("espeak-ng")
            .arg("--version")
            .output()
            .is_ok()
    }

    #[tokio::test]
    async fn espeak_round_trip_rate_duration_and_cache() {
        if !espeak_available() {
            panic!("espeak-ng is not installed: apt-get install -y espeak-ng");
        }
        let cache = SpeechCache::new(4 * 1024 * 1024);
        let config = SayConfig::default();
        let text = "Welcome to voxgate. Please press one for sales.";
        let a = synthesize(text, &config, 8_000, &cache)
            .await
            .expect("synthesize");
        // About 8 words at 160 wpm: some 2.5 to 5 seconds with pauses.
        let seconds = a.len() as f64 / 8_000.0;
        assert!((1.5..8.0).contains(&seconds), "{seconds} s");
        let peak = a.iter().map(|s| s.unsigned_abs()).max().unwrap_or(0);
        assert!(peak > 3_000, "speech too quiet: peak {peak}");
        assert_eq!(cache.stats().misses, 1);
        let b = synthesize(text, &config, 8_000, &cache)
            .await
            .expect("cached");
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(cache.stats().hits, 1);
        // Rate is right: the same text at 16 kHz is twice the samples.
        let c = synthesize(text, &config, 16_000, &cache)
            .await
            .expect("16k");
        assert!(
            (c.len() as f64 / a.len() as f64 - 2.0).abs() < 0.01,
            "{} vs {}",
            c.len(),
            a.len()
        );
        assert_eq!(cache.stats().misses, 2);
    }

    #[tokio::test]
    async fn text_that_looks_like_options_is_spoken() {
        if !espeak_available() {
            panic!("espeak-ng is not installed: apt-get install -y espeak-ng");
        }
        let cache = SpeechCache::new(1024 * 1024);
        let pcm = synthesize("--version -w /tmp/x", &SayConfig::default(), 8_000, &cache)
            .await
            .expect("spoken");
        assert!(pcm.len() > 8_000 / 2, "only {} samples", pcm.len());
    }

    #[tokio::test]
    async fn espeak_native_rate_is_22050() {
        if !espeak_available() {
            panic!("espeak-ng is not installed: apt-get install -y espeak-ng");
        }
        let (samples, rate) = render_espeak("one two three", &SayConfig::default())
            .await
            .expect("render");
        assert_eq!(rate, 22_050);
        assert!(!samples.is_empty());
    }

    #[tokio::test]
    async fn blank_text_is_silence_without_a_process() {
        let config = SayConfig {
            binary: PathBuf::from("/nonexistent/espeak"),
            ..SayConfig::default()
        };
        let cache = SpeechCache::new(1024);
        assert!(synthesize("   ", &config, 8_000, &cache)
            .await
            .expect("blank")
            .is_empty());
    }
}
