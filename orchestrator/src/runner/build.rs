//! Builds the AI runner from the gateway's `[ai]` configuration: one arm
//! per provider. Secrets are read here, from the environment variables
//! the configuration names, before `voxgate serve` binds anything.

use std::sync::Arc;
use std::time::Duration;

use url::Url;
use voxgate_gateway::audio::SayConfig;
use voxgate_gateway::config::ai::{
    AiConfig, ConversationSettings, LlmEndpoint, NluProviderConfig, SttProviderConfig,
    TtsProviderConfig, WorkerEndpoints,
};
use voxgate_stt_tts::espeak::EspeakTts;
use voxgate_stt_tts::llm::{ApiKey, LlmClient, LlmConfig};
use voxgate_stt_tts::nlu::lexical::LexicalIntentEngine;
use voxgate_stt_tts::nlu::IntentEngine;
use voxgate_stt_tts::stt::SttEngine;
use voxgate_stt_tts::tts::TtsEngine;
use voxgate_stt_tts::tts_cache::{CacheIdentity, CachedTts, TtsCacheConfig};
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

/// The engines `[ai]` asks for; `None` when no STT is configured (AI
/// nodes then take their fallback with reason `ai_unavailable`). Must run
/// inside a tokio runtime: worker pools start their health checks.
/// Local TTS goes through a cache (`tts_cache`: memory, and disk when it
/// names a directory), so a repeated prompt costs no synthesis.
pub fn engines(
    ai: &AiConfig,
    say: &SayConfig,
    tts_cache: &TtsCacheConfig,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Option<AiEngines>, BuildError> {
    let (stt, stt_name): (Arc<dyn SttEngine>, &str) = match &ai.stt {
        SttProviderConfig::None => return Ok(None),
        SttProviderConfig::Worker(w) => {
            let p = pool("ai.stt", w, &env)?;
            p.spawn_health_checks();
            (Arc::new(p), "worker")
        }
    };
    let (nlu, nlu_name): (Arc<dyn IntentEngine>, &str) = match &ai.nlu {
        NluProviderConfig::Lexical => (Arc::new(LexicalIntentEngine), "lexical"),
        NluProviderConfig::Llm(l) => (Arc::new(llm(l, &env)?), "llm"),
        NluProviderConfig::Worker(w) => {
            let p = pool("ai.nlu", w, &env)?;
            p.spawn_health_checks();
            (Arc::new(p), "worker")
        }
    };
    let (tts, tts_name): (Arc<dyn TtsEngine>, &str) = match &ai.tts {
        TtsProviderConfig::Espeak => {
            let cached = CachedTts::new(
                EspeakTts::new(say.clone(), 100),
                CacheIdentity::espeak(say),
                tts_cache.clone(),
            )
            .map_err(|e| BuildError::Engine {
                key: "ai.tts",
                reason: e.to_string(),
            })?;
            (Arc::new(cached), "espeak")
        }
        TtsProviderConfig::Worker(w) => {
            let p = pool("ai.tts", w, &env)?;
            p.spawn_health_checks();
            (Arc::new(p), "worker")
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
            |_| None
        )
        .expect("builds")
        .is_none());
        let ai = AiConfig {
            stt: SttProviderConfig::Worker(WorkerEndpoints {
                workers: vec!["ws://127.0.0.1:9".into()],
                token_env: "MY_TOKEN".into(),
            }),
            ..AiConfig::default()
        };
        let err = engines(&ai, &say, &TtsCacheConfig::default(), |_| None)
            .err()
            .expect("no token");
        assert_eq!(
            err.to_string(),
            "ai.stt: the environment variable MY_TOKEN is not set"
        );
        let built = engines(&ai, &say, &TtsCacheConfig::default(), |v| {
            (v == "MY_TOKEN").then(|| "t".to_string())
        })
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
