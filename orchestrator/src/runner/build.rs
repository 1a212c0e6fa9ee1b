//! Builds the AI runner from the gateway's `[ai]` configuration: one arm
//! per provider. Secrets are read here, from the environment variables
//! the configuration names, and local models are loaded here, all before
//! `voxgate serve` binds anything: a missing model or key stops startup
//! with an error that names it. The construction shared with `voxgate
//! worker` lives in stt-tts (`WhisperStt::load`, `build_intent_engine`,
//! `CachedTts::espeak`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use url::Url;
use voxgate_gateway::audio::SayConfig;
use voxgate_gateway::config::ai::{
    AiConfig, ConversationSettings, DeepgramEndpoint, LlmEndpoint, NluProviderConfig,
    SpeechEndpoint, SttProviderConfig, TtsProviderConfig, WhisperSettings, WorkerEndpoints,
};
use voxgate_stt_tts::deepgram::{DeepgramConfig, DeepgramError, DeepgramStt};
use voxgate_stt_tts::llm::{ApiKey, LlmClient, LlmConfig};
use voxgate_stt_tts::nlu::embedding::{build_intent_engine, ModelError};
use voxgate_stt_tts::nlu::lexical::LexicalIntentEngine;
use voxgate_stt_tts::nlu::IntentEngine;
use voxgate_stt_tts::openai_tts::{OpenAiTts, OpenAiTtsConfig, OpenAiTtsError};
use voxgate_stt_tts::provider_key::ProviderKey;
use voxgate_stt_tts::stt::SttEngine;
use voxgate_stt_tts::tts::TtsEngine;
use voxgate_stt_tts::tts_cache::{CacheIdentity, CachedTts, TtsCacheConfig, TtsCacheError};
use voxgate_stt_tts::whisper::{self, WhisperConfig, WhisperError, WhisperStt};
use voxgate_stt_tts::worker::{PoolConfig, WorkerPool, WorkerToken};

use super::{AiEngines, ConversationConfig, EngineNames};
use crate::pipeline::{BargeInConfig, PipelineConfig, VadConfig};

/// Why the engines could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{key}: the environment variable {var} is not set")]
    MissingSecret { key: &'static str, var: String },
    #[error("{key}: {url:?} is not a URL: {reason}")]
    BadUrl {
        key: &'static str,
        url: String,
        reason: String,
    },
    #[error("{key}: {reason}")]
    Engine { key: &'static str, reason: String },
    #[error("ai.stt.model: the whisper model {path} does not exist; fetch it with `voxgate models fetch whisper {size}` (or set [ai.stt] model)")]
    WhisperModelMissing { path: PathBuf, size: String },
    #[error("ai.stt: {0}")]
    Whisper(#[source] WhisperError),
    #[error("ai.stt: {0}")]
    Deepgram(#[source] DeepgramError),
    #[error("ai.nlu.model_dir: {0}")]
    IntentModel(#[source] ModelError),
    #[error("ai.tts: {0}")]
    OpenAiSpeech(#[source] OpenAiTtsError),
    #[error("ai.tts: {0}")]
    TtsCache(#[source] TtsCacheError),
}

fn secret(
    key: &'static str,
    var: &str,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<String, BuildError> {
    env(var)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| BuildError::MissingSecret {
            key,
            var: var.to_string(),
        })
}

fn pool(
    key: &'static str,
    w: &WorkerEndpoints,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<WorkerPool, BuildError> {
    let token = secret(key, &w.token_env, env)?;
    let urls = w
        .workers
        .iter()
        .map(|u| {
            Url::parse(u).map_err(|e| BuildError::BadUrl {
                key,
                url: u.clone(),
                reason: e.to_string(),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    WorkerPool::new(PoolConfig::new(urls, WorkerToken::new(token))).map_err(|e| {
        BuildError::Engine {
            key,
            reason: e.to_string(),
        }
    })
}

fn llm(l: &LlmEndpoint, env: &impl Fn(&str) -> Option<String>) -> Result<LlmClient, BuildError> {
    let mut url = l.url.clone();
    if !url.ends_with('/') {
        url.push('/');
    }
    let base = Url::parse(&url).map_err(|e| BuildError::BadUrl {
        key: "ai.nlu.url",
        url: l.url.clone(),
        reason: e.to_string(),
    })?;
    let mut config = LlmConfig::new(base, l.model.clone());
    config.first_token_deadline = Duration::from_millis(u64::from(l.first_token_ms));
    if let Some(var) = &l.api_key_env {
        config.api_key = Some(ApiKey::new(secret("ai.nlu.api_key_env", var, env)?));
    }
    LlmClient::new(config).map_err(|e| BuildError::Engine {
        key: "ai.nlu",
        reason: e.to_string(),
    })
}

/// whisper.cpp from `[ai.stt]`. Blocking: it reads the whole model.
fn whisper(w: &WhisperSettings, data_dir: &Path) -> Result<WhisperStt, BuildError> {
    let path = w.model_path(data_dir);
    let config = WhisperConfig::sized(w.threads.map(|n| n as usize), w.decodes.map(|n| n as usize));
    let stt = WhisperStt::load(&path, config).map_err(|e| match e {
        WhisperError::ModelMissing { path } => {
            // `ggml-<size>.bin` is how `voxgate models fetch` names them.
            let size = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_prefix("ggml-"))
                .and_then(|n| n.strip_suffix(".bin"))
                .unwrap_or(whisper::DEFAULT_SIZE)
                .to_owned();
            BuildError::WhisperModelMissing { path, size }
        }
        e => BuildError::Whisper(e),
    })?;
    stt.with_language(w.language.clone())
        .map_err(BuildError::Whisper)
}

fn deepgram(
    d: &DeepgramEndpoint,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<DeepgramStt, BuildError> {
    let key = secret("ai.stt.api_key_env", &d.api_key_env, env)?;
    let config = DeepgramConfig {
        url: d.url.clone(),
        api_key: Some(ProviderKey::new(key)),
        // The key was read above, through `env`; never from elsewhere.
        api_key_env: None,
        model: d.model.clone(),
        language: d.language.clone(),
        ..DeepgramConfig::default()
    };
    DeepgramStt::new(config).map_err(BuildError::Deepgram)
}

/// The API root without a trailing `/v1/`: `[ai.tts] url` is written like
/// the LLM's (`https://api.openai.com/v1/`), the adapter adds
/// `v1/audio/speech` itself.
fn speech_root(url: &str) -> &str {
    let trimmed = url.trim_end_matches('/');
    trimmed.strip_suffix("/v1").unwrap_or(trimmed)
}

fn openai_speech(
    o: &SpeechEndpoint,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<OpenAiTts, BuildError> {
    let api_key = match &o.api_key_env {
        Some(var) => Some(ProviderKey::new(secret("ai.tts.api_key_env", var, env)?)),
        None => None,
    };
    let config = OpenAiTtsConfig {
        base_url: speech_root(&o.url).to_owned(),
        api_key,
        api_key_env: None,
        model: o.model.clone(),
        voice: o.voice.clone(),
        ..OpenAiTtsConfig::default()
    };
    OpenAiTts::new(config).map_err(BuildError::OpenAiSpeech)
}

/// The engines `[ai]` asks for; `None` when no STT is configured (AI
/// nodes then take their fallback with reason `ai_unavailable`, and no
/// model is loaded). Must run inside a tokio runtime: worker pools start
/// their health checks. Blocking while local models load (startup only).
/// Model paths left unset are under `data_dir`. Speech, local or remote,
/// goes through a cache (`tts_cache`: memory, and disk when it names a
/// directory), so a repeated prompt costs no synthesis.
pub fn engines(
    ai: &AiConfig,
    say: &SayConfig,
    tts_cache: &TtsCacheConfig,
    data_dir: &Path,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Option<AiEngines>, BuildError> {
    let (stt, stt_name): (Arc<dyn SttEngine>, &str) = match &ai.stt {
        SttProviderConfig::None => return Ok(None),
        SttProviderConfig::Worker(w) => {
            let p = pool("ai.stt", w, &env)?;
            p.spawn_health_checks();
            (Arc::new(p), "worker")
        }
        SttProviderConfig::Whisper(w) => (Arc::new(whisper(w, data_dir)?), "whisper"),
        SttProviderConfig::Deepgram(d) => (Arc::new(deepgram(d, &env)?), "deepgram"),
    };
    let (nlu, nlu_name): (Arc<dyn IntentEngine>, &str) = match &ai.nlu {
        NluProviderConfig::Lexical => (Arc::new(LexicalIntentEngine), "lexical"),
        NluProviderConfig::Embedding(e) => {
            // Absent: the lexical classifier, logged as `lexical-fallback`.
            let built =
                build_intent_engine(&e.model_dir(data_dir)).map_err(BuildError::IntentModel)?;
            (built.engine, built.kind.name())
        }
        NluProviderConfig::Llm(l) => (Arc::new(llm(l, &env)?), "llm"),
        NluProviderConfig::Worker(w) => {
            let p = pool("ai.nlu", w, &env)?;
            p.spawn_health_checks();
            (Arc::new(p), "worker")
        }
    };
    let (tts, tts_name): (Arc<dyn TtsEngine>, &str) = match &ai.tts {
        TtsProviderConfig::Espeak => {
            let cached = CachedTts::espeak(say, tts_cache.clone()).map_err(BuildError::TtsCache)?;
            (Arc::new(cached), "espeak")
        }
        TtsProviderConfig::Worker(w) => {
            let p = pool("ai.tts", w, &env)?;
            p.spawn_health_checks();
            (Arc::new(p), "worker")
        }
        TtsProviderConfig::Openai(o) => {
            let identity = CacheIdentity::new(
                "openai-speech",
                format!(
                    "url={};model={};voice={}",
                    speech_root(&o.url),
                    o.model,
                    o.voice
                ),
            );
            let cached = CachedTts::new(openai_speech(o, &env)?, identity, tts_cache.clone())
                .map_err(BuildError::TtsCache)?;
            (Arc::new(cached), "openai")
        }
    };
    Ok(Some(AiEngines {
        stt,
        nlu,
        tts,
        names: EngineNames {
            stt: stt_name.into(),
            nlu: nlu_name.into(),
            tts: tts_name.into(),
        },
    }))
}

/// The conversation settings of `[ai.conversation]`.
pub fn conversation(c: &ConversationSettings) -> ConversationConfig {
    ConversationConfig {
        pipeline: PipelineConfig {
            vad: VadConfig {
                min_speech_ms: c.min_speech_ms,
                end_silence_ms: c.end_silence_ms,
                max_utterance_ms: c.max_utterance_ms,
                ..VadConfig::default()
            },
            barge_in: BargeInConfig {
                min_speech_ms: c.barge_in_ms,
                min_words: c.barge_in_words,
                ..BargeInConfig::default()
            },
        },
        preroll_ms: c.preroll_ms,
        no_input_ms: u64::from(c.no_input_ms),
        filler: c.filler.clone(),
        reprompt: c.reprompt.clone(),
        no_input_prompt: c.no_input_prompt.clone(),
        default_reply: String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use voxgate_gateway::config::ai::WorkerEndpoints;

    #[tokio::test]
    async fn no_stt_means_no_runner_and_secrets_come_from_the_named_variable() {
        let say = SayConfig::default();
        assert!(engines(
            &AiConfig::default(),
            &say,
            &TtsCacheConfig::default(),
            Path::new("data"),
            |_| None
        )
        .expect("builds")
        .is_none());
        let ai = AiConfig {
            stt: SttProviderConfig::Worker(WorkerEndpoints {
                workers: vec!["ws://127.0.0.1:9".into()],
                token_env: "MY_TOKEN".into(),
            }),
            nlu: NluProviderConfig::Lexical,
            ..AiConfig::default()
        };
        let err = engines(
            &ai,
            &say,
            &TtsCacheConfig::default(),
            Path::new("data"),
            |_| None,
        )
        .err()
        .expect("no token");
        assert_eq!(
            err.to_string(),
            "ai.stt: the environment variable MY_TOKEN is not set"
        );
        let built = engines(
            &ai,
            &say,
            &TtsCacheConfig::default(),
            Path::new("data"),
            |v| (v == "MY_TOKEN").then(|| "t".to_string()),
        )
        .expect("builds")
        .expect("engines");
        assert_eq!(
            built.names,
            EngineNames {
                stt: "worker".into(),
                nlu: "lexical".into(),
                tts: "espeak".into()
            }
        );
    }
}
