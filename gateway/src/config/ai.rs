//! `[ai]`: which engines the AI node uses, and the conversation settings
//! the flow does not set.
//!
//! Each engine kind is an enum tagged by `provider`, one variant per
//! provider, so a new provider is one variant here plus one arm where
//! `voxgate serve` builds the engines (`src/serve.rs`). Secrets are never
//! in the file: a provider names the environment variable that holds its
//! key or token (`token_env`, `api_key_env`), and `voxgate serve` reads it
//! before any socket is bound.
//!
//! Providers built elsewhere and not wired here yet (add one variant each):
//! STT `whisper` (local whisper-rs) and `deepgram`; NLU `embedding`
//! (candle sentence embeddings); TTS `openai` (`/v1/audio/speech`).

use serde::{Deserialize, Serialize};

use super::{ConfigError, Problem};

/// `[ai]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct AiConfig {
    pub stt: SttProviderConfig,
    pub nlu: NluProviderConfig,
    pub tts: TtsProviderConfig,
    pub conversation: ConversationSettings,
}

/// `[ai.stt]`. With `none`, every AI node takes its fallback at once
/// (reason `ai_unavailable`): there is nothing to hear the caller with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "provider", rename_all = "snake_case", deny_unknown_fields)]
pub enum SttProviderConfig {
    #[default]
    None,
    /// voxgate workers (or the provider simulator) over the worker protocol.
    Worker(WorkerEndpoints),
    // Slots: `Whisper(WhisperConfig)`, `Deepgram(DeepgramConfig)`.
}

/// `[ai.nlu]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "provider", rename_all = "snake_case", deny_unknown_fields)]
pub enum NluProviderConfig {
    /// The built-in lexical classifier over the node's example phrases.
    #[default]
    Lexical,
    /// An OpenAI-compatible chat-completions API.
    Llm(LlmEndpoint),
    Worker(WorkerEndpoints),
    // Slot: `Embedding(EmbeddingConfig)`.
}

/// `[ai.tts]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "provider", rename_all = "snake_case", deny_unknown_fields)]
pub enum TtsProviderConfig {
    /// espeak-ng with the `[tts]` voice settings.
    #[default]
    Espeak,
    Worker(WorkerEndpoints),
    // Slot: `Openai(OpenAiSpeechConfig)`.
}

fn default_token_env() -> String {
    "VOXGATE_WORKER_TOKEN".to_owned()
}

/// Workers reached over the worker protocol.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerEndpoints {
    /// `ws://host:port` of each worker.
    #[serde(default)]
    pub workers: Vec<String>,
    /// The environment variable holding the workers' bearer token.
    #[serde(default = "default_token_env")]
    pub token_env: String,
}

fn default_first_token_ms() -> u32 {
    1_500
}

/// An OpenAI-compatible API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlmEndpoint {
    /// The API root, for example `https://api.openai.com/v1/`.
    pub url: String,
    pub model: String,
    /// The environment variable holding the API key; none for local
    /// servers that take no key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_env: Option<String>,
    /// The client's own first-token limit; the tenant's NLU budget
    /// usually fires first.
    #[serde(default = "default_first_token_ms")]
    pub first_token_ms: u32,
}

/// `[ai.conversation]`: prompts and timers the flow does not set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConversationSettings {
    /// Caller silence after the bot spoke that counts as no input, ms.
    pub no_input_ms: u32,
    /// Audio before the VAD's speech start sent to STT, ms.
    pub preroll_ms: u32,
    /// VAD: speech needed to start an utterance, ms.
    pub min_speech_ms: u32,
    /// VAD: silence that ends an utterance, ms.
    pub end_silence_ms: u32,
    /// VAD: the longest utterance, ms.
    pub max_utterance_ms: u32,
    /// Barge-in: caller speech over the bot that interrupts it, ms.
    pub barge_in_ms: u32,
    /// Barge-in: words (not backchannel) that interrupt at once.
    pub barge_in_words: u32,
    /// Said at a soft latency threshold, once per turn.
    pub filler: String,
    /// Said after a low-confidence or failed turn.
    pub reprompt: String,
    /// Said after no input.
    pub no_input_prompt: String,
}

impl Default for ConversationSettings {
    fn default() -> Self {
        Self {
            no_input_ms: 6_000,
            preroll_ms: 400,
            min_speech_ms: 160,
            end_silence_ms: 700,
            max_utterance_ms: 15_000,
            barge_in_ms: 600,
            barge_in_words: 2,
            filler: "One moment, please.".to_owned(),
            reprompt: "Sorry, I did not get that. Could you say it again?".to_owned(),
            no_input_prompt: "Are you still there? How can I help you?".to_owned(),
        }
    }
}

fn invalid(key: &str, problem: Problem) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_owned(),
        problem,
    }
}

fn check_env_name(key: &str, name: &str) -> Result<(), ConfigError> {
    if name.is_empty() {
        return Err(invalid(key, Problem::Empty));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
    {
        return Err(invalid(key, Problem::NotEnvName(name.to_owned())));
    }
    Ok(())
}

fn check_workers(prefix: &str, w: &WorkerEndpoints) -> Result<(), ConfigError> {
    let key = format!("{prefix}.workers");
    if w.workers.is_empty() {
        return Err(invalid(&key, Problem::Empty));
    }
    for (i, url) in w.workers.iter().enumerate() {
        let rest = url
            .strip_prefix("ws://")
            .filter(|r| !r.is_empty() && !r.starts_with('/'));
        if rest.is_none() {
            return Err(invalid(
                &format!("{key}[{i}]"),
                Problem::BadUrl {
                    url: url.clone(),
                    expected: "ws://HOST:PORT",
                },
            ));
        }
    }
    check_env_name(&format!("{prefix}.token_env"), &w.token_env)
}

fn check_ms(key: &str, value: u32, min: u32, max: u32) -> Result<(), ConfigError> {
    super::check_range(key, value, min, max)
}

impl AiConfig {
    /// Checks every `[ai]` rule; the first broken one is returned.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let SttProviderConfig::Worker(w) = &self.stt {
            check_workers("ai.stt", w)?;
        }
        match &self.nlu {
            NluProviderConfig::Lexical => {}
            NluProviderConfig::Worker(w) => check_workers("ai.nlu", w)?,
            NluProviderConfig::Llm(l) => {
                let ok = (l.url.starts_with("http://") || l.url.starts_with("https://"))
                    && l.url.len() > "https://".len();
                if !ok {
                    return Err(invalid(
                        "ai.nlu.url",
                        Problem::BadUrl {
                            url: l.url.clone(),
                            expected: "http(s)://HOST/v1/",
                        },
                    ));
                }
                if l.model.trim().is_empty() {
                    return Err(invalid("ai.nlu.model", Problem::Empty));
                }
                if let Some(name) = &l.api_key_env {
                    check_env_name("ai.nlu.api_key_env", name)?;
                }
                check_ms("ai.nlu.first_token_ms", l.first_token_ms, 50, 60_000)?;
            }
        }
        if let TtsProviderConfig::Worker(w) = &self.tts {
            check_workers("ai.tts", w)?;
        }
        let c = &self.conversation;
        check_ms("ai.conversation.no_input_ms", c.no_input_ms, 500, 120_000)?;
        check_ms("ai.conversation.preroll_ms", c.preroll_ms, 0, 2_000)?;
        check_ms("ai.conversation.min_speech_ms", c.min_speech_ms, 20, 5_000)?;
        check_ms(
            "ai.conversation.end_silence_ms",
            c.end_silence_ms,
            100,
            10_000,
        )?;
        check_ms(
            "ai.conversation.max_utterance_ms",
            c.max_utterance_ms,
            1_000,
            120_000,
        )?;
        check_ms("ai.conversation.barge_in_ms", c.barge_in_ms, 0, 10_000)?;
        check_ms("ai.conversation.barge_in_words", c.barge_in_words, 1, 20)?;
        for (key, text) in [
            ("ai.conversation.filler", &c.filler),
            ("ai.conversation.reprompt", &c.reprompt),
            ("ai.conversation.no_input_prompt", &c.no_input_prompt),
        ] {
            if text.trim().is_empty() {
                return Err(invalid(key, Problem::Empty));
            }
        }
        Ok(())
    }

    /// The provider names, for logs: `stt=worker nlu=lexical tts=espeak`.
    pub fn describe(&self) -> String {
        let stt = match self.stt {
            SttProviderConfig::None => "none",
            SttProviderConfig::Worker(_) => "worker",
        };
        let nlu = match self.nlu {
            NluProviderConfig::Lexical => "lexical",
            NluProviderConfig::Llm(_) => "llm",
            NluProviderConfig::Worker(_) => "worker",
        };
        let tts = match self.tts {
            TtsProviderConfig::Espeak => "espeak",
            TtsProviderConfig::Worker(_) => "worker",
        };
        format!("stt={stt} nlu={nlu} tts={tts}")
    }
}
