//! Decoding on the blocking pool: a fixed number of reusable whisper.cpp
//! decoder states, one decode per state at a time, and the conversion of
//! whisper's segments and tokens into a [`Transcript`].
//!
//! A decoder state holds the KV caches and compute buffers (tens to
//! hundreds of MB for real models), so states are made once and reused;
//! the semaphore bounds concurrent decodes to the number of states. A
//! decode whose caller goes away is aborted through whisper's abort
//! callback, and its state and permit come back when whisper.cpp returns.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;
use whisper_rs::{FullParams, SamplingStrategy, WhisperContext, WhisperState};

use super::error::WhisperError;
use crate::stt::{Transcript, Word};

/// A whisper language code, or `None` to let whisper detect it.
pub(crate) type Lang = Option<&'static str>;

/// The decode knobs taken from [`super::WhisperConfig`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    pub threads: i32,
    pub best_of: i32,
    pub temperature_fallback: bool,
    pub max_tokens: i32,
}

impl Settings {
    /// The parameters of every decode on one state, for one language.
    fn params(&self, lang: Lang, abort: Arc<AtomicBool>) -> FullParams<'static, 'static> {
        let mut p = FullParams::new(SamplingStrategy::Greedy {
            best_of: self.best_of,
        });
        p.set_n_threads(self.threads);
        p.set_language(lang);
        p.set_translate(false);
        // Each utterance stands alone: no text carried over from the last
        // caller's turn into this one's prompt.
        p.set_no_context(true);
        p.set_token_timestamps(true);
        p.set_print_special(false);
        p.set_print_progress(false);
        p.set_print_realtime(false);
        p.set_print_timestamps(false);
        p.set_suppress_blank(true);
        if !self.temperature_fallback {
            p.set_temperature_inc(0.0);
        }
        p.set_max_tokens(self.max_tokens);
        // whisper-rs boxes the closure and casts the pointer back to `F`,
        // so `F` must itself be the boxed trait object for the two to
        // agree. The box lives as long as this template (one per state
        // and language), not one per decode.
        let cb: Box<dyn FnMut() -> bool> = Box::new(move || abort.load(Ordering::Relaxed));
        p.set_abort_callback_safe::<_, Box<dyn FnMut() -> bool>>(Some(cb));
        p
    }
}

/// One decoder state with its abort flag and cached parameters.
struct Slot {
    state: WhisperState,
    abort: Arc<AtomicBool>,
    /// whisper-rs leaks the C string of every `set_language`, so the
    /// parameters are built once per language and cloned per decode.
    templates: HashMap<Lang, FullParams<'static, 'static>>,
}

/// The shared model and its decoder states.
pub(crate) struct Pool {
    ctx: WhisperContext,
    settings: Settings,
    idle: Mutex<Vec<Slot>>,
    permits: Arc<Semaphore>,
    token_eot: i32,
}

/// What whisper produced for one piece of audio; times in ms from its
/// start.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Decoded {
    pub segments: Vec<DecodedSegment>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DecodedSegment {
    pub start_ms: u64,
    pub end_ms: u64,
    pub text: String,
    pub tokens: Vec<DecodedToken>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DecodedToken {
    pub text: String,
    pub p: f32,
    pub start_ms: Option<u64>,
    pub end_ms: Option<u64>,
}

/// Sets the abort flag if the decode future is dropped before it ends.
struct AbortOnDrop(Option<Arc<AtomicBool>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(flag) = self.0.take() {
            flag.store(true, Ordering::Relaxed);
        }
    }
}

fn centis_to_ms(t: i64) -> Option<u64> {
    u64::try_from(t).ok().map(|c| c * 10)
}

impl Pool {
    /// Wraps `ctx` with up to `states` decoder states. One is made now, so
    /// a model whose state cannot be allocated fails at load time.
    pub fn new(
        ctx: WhisperContext,
        settings: Settings,
        states: usize,
    ) -> Result<Self, WhisperError> {
        let first = Self::new_slot(&ctx)?;
        let token_eot = ctx.token_eot();
        Ok(Self {
            ctx,
            settings,
            idle: Mutex::new(vec![first]),
            permits: Arc::new(Semaphore::new(states)),
            token_eot,
        })
    }

    fn new_slot(ctx: &WhisperContext) -> Result<Slot, WhisperError> {
        Ok(Slot {
            state: ctx.create_state().map_err(WhisperError::State)?,
            abort: Arc::new(AtomicBool::new(false)),
            templates: HashMap::new(),
        })
    }

    fn take_slot(&self) -> Result<Slot, WhisperError> {
        let popped = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        match popped {
            Some(slot) => Ok(slot),
            None => Self::new_slot(&self.ctx),
        }
    }

    fn put_back(&self, slot: Slot) {
        self.idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(slot);
    }

    /// Decodes `pcm` (16 kHz mono, -1..1). Waits for a free state first;
    /// dropping the future aborts the decode.
    pub async fn decode(
        self: Arc<Self>,
        pcm: Vec<f32>,
        lang: Lang,
    ) -> Result<Decoded, WhisperError> {
        if pcm.is_empty() {
            return Ok(Decoded::default());
        }
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| WhisperError::Cancelled)?;
        let mut slot = self.take_slot()?;
        slot.abort.store(false, Ordering::Relaxed);
        let mut guard = AbortOnDrop(Some(slot.abort.clone()));
        let pool = self.clone();
        let task = tokio::task::spawn_blocking(move || {
            let out = pool.run(&mut slot, &pcm, lang);
            pool.put_back(slot);
            drop(permit);
            out
        });
        let out = task.await.map_err(WhisperError::TaskFailed)?;
        guard.0 = None;
        out
    }

    fn run(&self, slot: &mut Slot, pcm: &[f32], lang: Lang) -> Result<Decoded, WhisperError> {
        let params = slot
            .templates
            .entry(lang)
            .or_insert_with(|| self.settings.params(lang, slot.abort.clone()))
            .clone();
        if let Err(e) = slot.state.full(params, pcm) {
            if slot.abort.load(Ordering::Relaxed) {
                return Err(WhisperError::Cancelled);
            }
            return Err(WhisperError::Decode(e));
        }
        let mut segments = Vec::new();
        for seg in slot.state.as_iter() {
            let text = seg
                .to_str_lossy()
                .map_err(WhisperError::Decode)?
                .into_owned();
            let mut tokens = Vec::new();
            for i in 0..seg.n_tokens() {
                let Some(tok) = seg.get_token(i) else {
                    continue;
                };
                if tok.token_id() >= self.token_eot {
                    continue;
                }
                let data = tok.token_data();
                tokens.push(DecodedToken {
                    text: tok
                        .to_str_lossy()
                        .map_err(WhisperError::Decode)?
                        .into_owned(),
                    p: data.p,
                    start_ms: centis_to_ms(data.t0),
                    end_ms: centis_to_ms(data.t1),
                });
            }
            segments.push(DecodedSegment {
                start_ms: centis_to_ms(seg.start_timestamp()).unwrap_or(0),
                end_ms: centis_to_ms(seg.end_timestamp()).unwrap_or(0),
                text,
                tokens,
            });
        }
        Ok(Decoded { segments })
    }
}

/// Builds the transcript of audio that started `offset_ms` into the
/// session and lasted `duration_ms`. The transcript spans exactly that
/// audio; whisper's own times are clamped into it (random or confused
/// models emit timestamps past the end). Words are whisper's BPE tokens
/// joined at leading spaces; confidence is the mean token probability.
pub(crate) fn to_transcript(decoded: &Decoded, offset_ms: u64, duration_ms: u64) -> Transcript {
    let clamp = |t: u64| t.min(duration_ms) + offset_ms;
    let mut text = String::new();
    let mut words: Vec<Word> = Vec::new();
    let mut probs: Vec<f32> = Vec::new();
    let mut current: Option<(Word, Vec<f32>)> = None;
    let close = |cur: &mut Option<(Word, Vec<f32>)>, words: &mut Vec<Word>| {
        if let Some((mut w, ps)) = cur.take() {
            w.confidence = mean(&ps);
            if !w.text.is_empty() {
                words.push(w);
            }
        }
    };
    for seg in &decoded.segments {
        let piece = seg.text.trim();
        if !piece.is_empty() {
            if !text.is_empty() {
                text.push(' ');
            }
            text.push_str(piece);
        }
        for tok in &seg.tokens {
            let p = if tok.p.is_finite() {
                tok.p.clamp(0.0, 1.0)
            } else {
                0.0
            };
            probs.push(p);
            let start = clamp(tok.start_ms.unwrap_or(seg.start_ms));
            let end = clamp(tok.end_ms.unwrap_or(seg.end_ms)).max(start);
            let starts_word = tok.text.starts_with(' ') || current.is_none();
            if starts_word {
                close(&mut current, &mut words);
                current = Some((
                    Word {
                        text: tok.text.trim().to_owned(),
                        start_ms: start,
                        end_ms: end,
                        confidence: 0.0,
                    },
                    vec![p],
                ));
            } else if let Some((w, ps)) = current.as_mut() {
                w.text.push_str(tok.text.trim_end());
                w.end_ms = end.max(w.start_ms);
                ps.push(p);
            }
        }
        // Words never span segments.
        close(&mut current, &mut words);
    }
    Transcript {
        text,
        confidence: mean(&probs),
        start_ms: offset_ms,
        end_ms: offset_ms + duration_ms,
        words,
    }
}

fn mean(ps: &[f32]) -> f32 {
    if ps.is_empty() {
        0.0
    } else {
        (ps.iter().sum::<f32>() / ps.len() as f32).clamp(0.0, 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tok(text: &str, p: f32, t: Option<(u64, u64)>) -> DecodedToken {
        DecodedToken {
            text: text.into(),
            p,
            start_ms: t.map(|x| x.0),
            end_ms: t.map(|x| x.1),
        }
    }

    #[test]
    fn tokens_join_into_words_with_offsets_and_clamping() {
        let d = Decoded {
            segments: vec![DecodedSegment {
                start_ms: 0,
                end_ms: 5000,
                text: " hello world".into(),
                tokens: vec![
                    tok(" hel", 0.8, Some((100, 300))),
                    tok("lo", 0.6, Some((300, 500))),
                    tok(" world", 0.4, Some((600, 9000))),
                ],
            }],
        };
        let t = to_transcript(&d, 2000, 1000);
        assert_eq!(t.text, "hello world");
        assert_eq!((t.start_ms, t.end_ms), (2000, 3000));
        assert_eq!(t.words.len(), 2);
        assert_eq!(t.words[0].text, "hello");
        assert_eq!((t.words[0].start_ms, t.words[0].end_ms), (2100, 2500));
        assert!((t.words[0].confidence - 0.7).abs() < 1e-6);
        // Past the end of the audio: clamped to it.
        assert_eq!((t.words[1].start_ms, t.words[1].end_ms), (2600, 3000));
        assert!((t.confidence - 0.6).abs() < 1e-6);
    }

    #[test]
    fn nothing_decoded_is_an_empty_transcript_over_the_audio() {
        let t = to_transcript(&Decoded::default(), 500, 80);
        assert_eq!(t.text, "");
        assert_eq!(t.confidence, 0.0);
        assert_eq!((t.start_ms, t.end_ms), (500, 580));
        assert!(t.words.is_empty());
    }

    #[test]
    fn missing_token_times_fall_back_to_the_segment() {
        let d = Decoded {
            segments: vec![DecodedSegment {
                start_ms: 200,
                end_ms: 400,
                text: "x".into(),
                tokens: vec![tok("x", f32::NAN, None)],
            }],
        };
        let t = to_transcript(&d, 0, 1000);
        assert_eq!((t.words[0].start_ms, t.words[0].end_ms), (200, 400));
        assert_eq!(t.words[0].confidence, 0.0);
    }
}
