//! `[ai]`: which engines the AI node uses, and the conversation settings
//! the flow does not set.
//!
//! Each engine kind is an enum tagged by `provider`, one variant per
//! provider, so a new provider is one variant here plus one arm where the
//! engines are built (`orchestrator/src/runner/build.rs`). Secrets are
//! never in the file: a provider names the environment variable that holds
//! its key or token (`token_env`, `api_key_env`), and `voxgate serve`
//! reads it before any socket is bound.
//!
//! What this module checks is the text of the file. Whether a model file
//! is there and loads, and whether a named variable is set, is checked
//! when the engines are built, still before any socket is bound.
//!
//! The default intent engine is `embedding`: all-MiniLM-L6-v2 when its
//! model is in `<data_dir>/models/all-MiniLM-L6-v2`, else the lexical
//! classifier under the label `lexical-fallback`, so the defaults start on
//! a fresh machine (see docs/orchestrator.md).

use std::path::{Path, PathBuf};

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
    /// whisper.cpp in this process.
    Whisper(WhisperSettings),
    /// A Deepgram-compatible streaming `/v1/listen` websocket.
    Deepgram(DeepgramEndpoint),
}

/// `[ai.nlu]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "provider", rename_all = "snake_case", deny_unknown_fields)]
pub enum NluProviderConfig {
    /// The built-in lexical classifier over the node's example phrases.
    Lexical,
    /// The embedding classifier (all-MiniLM-L6-v2) in this process; the
    /// lexical classifier, labelled `lexical-fallback`, when the model is
    /// absent.
    Embedding(EmbeddingSettings),
    /// An OpenAI-compatible chat-completions API.
    Llm(LlmEndpoint),
    Worker(WorkerEndpoints),
}

impl Default for NluProviderConfig {
    fn default() -> Self {
        Self::Embedding(EmbeddingSettings::default())
    }
}

/// `[ai.tts]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "provider", rename_all = "snake_case", deny_unknown_fields)]
pub enum TtsProviderConfig {
    /// espeak-ng with the `[tts]` voice settings.
    #[default]
    Espeak,
    Worker(WorkerEndpoints),
    /// An OpenAI-compatible `/v1/audio/speech` API.
    Openai(SpeechEndpoint),
}

/// `provider = "whisper"`: the local whisper.cpp engine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct WhisperSettings {
    /// The ggml model file; default
    /// `<data_dir>/models/whisper/ggml-base.en.bin`, where `voxgate models
    /// fetch whisper base.en` puts it. A relative path is taken from the
    /// working directory, like `data_dir`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<PathBuf>,
    /// whisper.cpp threads per decode; default up to 4.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threads: Option<u32>,
    /// Decodes that may run at once, each with its own decoder state;
    /// default cores / threads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decodes: Option<u32>,
    /// A language (BCP 47, or `auto` to detect) used instead of the
    /// flow's; default the flow's language.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
}

/// Where the whisper model is when `[ai.stt] model` is not set.
pub const DEFAULT_WHISPER_MODEL: &str = "models/whisper/ggml-base.en.bin";

impl WhisperSettings {
    /// The model file: `model`, else the default under `data_dir`.
    pub fn model_path(&self, data_dir: &Path) -> PathBuf {
        self.model
            .clone()
            .unwrap_or_else(|| data_dir.join(DEFAULT_WHISPER_MODEL))
    }
}

fn default_deepgram_url() -> String {
    "wss://api.deepgram.com/v1/listen".to_owned()
}

fn default_deepgram_key_env() -> String {
    "DEEPGRAM_API_KEY".to_owned()
}

/// `provider = "deepgram"`: a Deepgram-compatible streaming STT service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeepgramEndpoint {
    /// The `ws://` or `wss://` listen endpoint.
    #[serde(default = "default_deepgram_url")]
    pub url: String,
    /// The environment variable holding the API key (sent as
    /// `Authorization: Token …`).
    #[serde(default = "default_deepgram_key_env")]
    pub api_key_env: String,
    /// For example `nova-3`; default the service's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// A language used instead of the flow's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
}

impl Default for DeepgramEndpoint {
    fn default() -> Self {
        Self {
            url: default_deepgram_url(),
            api_key_env: default_deepgram_key_env(),
            model: None,
            language: None,
        }
    }
}

/// Where the embedding model is when `[ai.nlu] model_dir` is not set.
pub const DEFAULT_EMBEDDING_MODEL_DIR: &str = "models/all-MiniLM-L6-v2";

/// `provider = "embedding"`: all-MiniLM-L6-v2 through candle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct EmbeddingSettings {
    /// The directory with `model.safetensors`, `tokenizer.json` and
    /// `config.json`; default `<data_dir>/models/all-MiniLM-L6-v2`, which
    /// `make models` fills.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_dir: Option<PathBuf>,
}

impl EmbeddingSettings {
    /// The model directory: `model_dir`, else the default under `data_dir`.
    pub fn model_dir(&self, data_dir: &Path) -> PathBuf {
        self.model_dir
            .clone()
            .unwrap_or_else(|| data_dir.join(DEFAULT_EMBEDDING_MODEL_DIR))
    }
}

fn default_speech_model() -> String {
    "gpt-4o-mini-tts".to_owned()
}

fn default_speech_voice() -> String {
    "alloy".to_owned()
}

/// `provider = "openai"`: an OpenAI-compatible speech API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpeechEndpoint {
    /// The API root, as for `[ai.nlu] provider = "llm"`: for example
    /// `https://api.openai.com/v1/`. Requests go to `…/v1/audio/speech`.
    pub url: String,
    #[serde(default = "default_speech_model")]
    pub model: String,
    /// Used when the flow names no voice.
    #[serde(default = "default_speech_voice")]
    pub voice: String,
    /// The environment variable holding the API key; none for local
    /// servers that take no key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_env: Option<String>,
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

fn check_http_url(key: &str, url: &str) -> Result<(), ConfigError> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"));
    if rest.is_some_and(|r| !r.is_empty() && !r.starts_with('/')) {
        return Ok(());
    }
    Err(invalid(
        key,
        Problem::BadUrl {
            url: url.to_owned(),
            expected: "http(s)://HOST/v1/",
        },
    ))
}

/// A language tag as whisper and Deepgram take it: `en`, `en-US`, `auto`.
fn check_language(key: &str, tag: &str) -> Result<(), ConfigError> {
    let ok = !tag.is_empty()
        && tag.len() <= 35
        && tag
            .split(['-', '_'])
            .all(|part| !part.is_empty() && part.chars().all(|c| c.is_ascii_alphanumeric()));
    if ok {
        Ok(())
    } else {
        Err(invalid(key, Problem::BadName(tag.to_owned())))
    }
}

fn check_whisper(w: &WhisperSettings) -> Result<(), ConfigError> {
    if w.model.as_ref().is_some_and(|m| m.as_os_str().is_empty()) {
        return Err(invalid("ai.stt.model", Problem::Empty));
    }
    if let Some(n) = w.threads {
        check_ms("ai.stt.threads", n, 1, 64)?;
    }
    if let Some(n) = w.decodes {
        check_ms("ai.stt.decodes", n, 1, 64)?;
    }
    if let Some(tag) = &w.language {
        check_language("ai.stt.language", tag)?;
    }
    Ok(())
}

fn check_deepgram(d: &DeepgramEndpoint) -> Result<(), ConfigError> {
    let rest = d
        .url
        .strip_prefix("ws://")
        .or_else(|| d.url.strip_prefix("wss://"));
    if !rest.is_some_and(|r| !r.is_empty() && !r.starts_with('/')) {
        return Err(invalid(
            "ai.stt.url",
            Problem::BadUrl {
                url: d.url.clone(),
                expected: "ws(s)://HOST/v1/listen",
            },
        ));
    }
    check_env_name("ai.stt.api_key_env", &d.api_key_env)?;
    if d.model.as_ref().is_some_and(|m| m.trim().is_empty()) {
        return Err(invalid("ai.stt.model", Problem::Empty));
    }
    if let Some(tag) = &d.language {
        check_language("ai.stt.language", tag)?;
    }
    Ok(())
}

fn check_speech(o: &SpeechEndpoint) -> Result<(), ConfigError> {
    check_http_url("ai.tts.url", &o.url)?;
    if o.model.trim().is_empty() {
        return Err(invalid("ai.tts.model", Problem::Empty));
    }
    if o.voice.trim().is_empty() {
        return Err(invalid("ai.tts.voice", Problem::Empty));
    }
    if let Some(name) = &o.api_key_env {
        check_env_name("ai.tts.api_key_env", name)?;
    }
    Ok(())
}

impl AiConfig {
    /// Checks every `[ai]` rule; the first broken one is returned.
    pub fn validate(&self) -> Result<(), ConfigError> {
        match &self.stt {
            SttProviderConfig::None => {}
            SttProviderConfig::Worker(w) => check_workers("ai.stt", w)?,
            SttProviderConfig::Whisper(w) => check_whisper(w)?,
            SttProviderConfig::Deepgram(d) => check_deepgram(d)?,
        }
        match &self.nlu {
            NluProviderConfig::Lexical => {}
            NluProviderConfig::Embedding(e) => {
                if e.model_dir
                    .as_ref()
                    .is_some_and(|d| d.as_os_str().is_empty())
                {
                    return Err(invalid("ai.nlu.model_dir", Problem::Empty));
                }
            }
            NluProviderConfig::Worker(w) => check_workers("ai.nlu", w)?,
            NluProviderConfig::Llm(l) => {
                check_http_url("ai.nlu.url", &l.url)?;
                if l.model.trim().is_empty() {
                    return Err(invalid("ai.nlu.model", Problem::Empty));
                }
                if let Some(name) = &l.api_key_env {
                    check_env_name("ai.nlu.api_key_env", name)?;
                }
                check_ms("ai.nlu.first_token_ms", l.first_token_ms, 50, 60_000)?;
            }
        }
        match &self.tts {
            TtsProviderConfig::Espeak => {}
            TtsProviderConfig::Worker(w) => check_workers("ai.tts", w)?,
            TtsProviderConfig::Openai(o) => check_speech(o)?,
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
            SttProviderConfig::Whisper(_) => "whisper",
            SttProviderConfig::Deepgram(_) => "deepgram",
        };
        let nlu = match self.nlu {
            NluProviderConfig::Lexical => "lexical",
            NluProviderConfig::Embedding(_) => "embedding",
            NluProviderConfig::Llm(_) => "llm",
            NluProviderConfig::Worker(_) => "worker",
        };
        let tts = match self.tts {
            TtsProviderConfig::Espeak => "espeak",
            TtsProviderConfig::Worker(_) => "worker",
            TtsProviderConfig::Openai(_) => "openai",
        };
        format!("stt={stt} nlu={nlu} tts={tts}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::GatewayConfig;

    fn parse(text: &str) -> AiConfig {
        match GatewayConfig::from_toml_str(text) {
            Ok(c) => c.ai,
            Err(e) => panic!("{text}: {e}"),
        }
    }

    fn error(text: &str) -> String {
        match GatewayConfig::from_toml_str(text) {
            Ok(c) => panic!("expected an error, got {:?}", c.ai),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn whisper_parses_with_defaults_and_names_its_default_model() {
        let ai = parse("[ai.stt]\nprovider = \"whisper\"\n");
        let SttProviderConfig::Whisper(w) = &ai.stt else {
            panic!("{:?}", ai.stt)
        };
        assert_eq!(w, &WhisperSettings::default());
        assert_eq!(
            w.model_path(Path::new("/srv/vg")),
            Path::new("/srv/vg/models/whisper/ggml-base.en.bin")
        );
        let ai = parse(
            "[ai.stt]\nprovider = \"whisper\"\nmodel = \"/m/ggml-tiny.bin\"\nthreads = 2\ndecodes = 1\nlanguage = \"de\"\n",
        );
        let SttProviderConfig::Whisper(w) = &ai.stt else {
            panic!("{:?}", ai.stt)
        };
        assert_eq!(w.model_path(Path::new("/x")), Path::new("/m/ggml-tiny.bin"));
        assert_eq!((w.threads, w.decodes), (Some(2), Some(1)));
        assert_eq!(w.language.as_deref(), Some("de"));
        assert_eq!(ai.describe(), "stt=whisper nlu=embedding tts=espeak");
    }

    #[test]
    fn whisper_settings_are_checked() {
        assert_eq!(
            error("[ai.stt]\nprovider = \"whisper\"\nthreads = 0\n"),
            "ai.stt.threads: 0 is outside 1..=64"
        );
        assert_eq!(
            error("[ai.stt]\nprovider = \"whisper\"\nmodel = \"\"\n"),
            "ai.stt.model: must not be empty"
        );
        assert!(
            error("[ai.stt]\nprovider = \"whisper\"\nlanguage = \"en US\"\n")
                .starts_with("ai.stt.language: ")
        );
        // An unknown key is refused, not ignored.
        assert!(error("[ai.stt]\nprovider = \"whisper\"\nsize = \"tiny\"\n").starts_with("ai.stt"));
    }

    #[test]
    fn deepgram_defaults_to_the_hosted_api_and_its_key_variable() {
        let ai = parse("[ai.stt]\nprovider = \"deepgram\"\nmodel = \"nova-3\"\n");
        let SttProviderConfig::Deepgram(d) = &ai.stt else {
            panic!("{:?}", ai.stt)
        };
        assert_eq!(d.url, "wss://api.deepgram.com/v1/listen");
        assert_eq!(d.api_key_env, "DEEPGRAM_API_KEY");
        assert_eq!(d.model.as_deref(), Some("nova-3"));
        assert_eq!(
            error("[ai.stt]\nprovider = \"deepgram\"\nurl = \"https://api.deepgram.com/v1/listen\"\n"),
            "ai.stt.url: \"https://api.deepgram.com/v1/listen\" is not a ws(s)://HOST/v1/listen URL"
        );
        assert_eq!(
            error("[ai.stt]\nprovider = \"deepgram\"\napi_key_env = \"dg_live_abc\"\n"),
            "ai.stt.api_key_env: \"dg_live_abc\" is not an environment variable name (A-Z, 0-9, _)"
        );
    }

    #[test]
    fn embedding_is_the_default_intent_engine_and_takes_a_model_dir() {
        let ai = AiConfig::default();
        let NluProviderConfig::Embedding(e) = &ai.nlu else {
            panic!("{:?}", ai.nlu)
        };
        assert_eq!(
            e.model_dir(Path::new("data")),
            Path::new("data/models/all-MiniLM-L6-v2")
        );
        let ai = parse("[ai.nlu]\nprovider = \"embedding\"\nmodel_dir = \"/opt/minilm\"\n");
        let NluProviderConfig::Embedding(e) = &ai.nlu else {
            panic!("{:?}", ai.nlu)
        };
        assert_eq!(e.model_dir(Path::new("data")), Path::new("/opt/minilm"));
        assert_eq!(
            error("[ai.nlu]\nprovider = \"embedding\"\nmodel_dir = \"\"\n"),
            "ai.nlu.model_dir: must not be empty"
        );
        // Another provider replaces the default's table whole.
        assert_eq!(
            parse("[ai.nlu]\nprovider = \"lexical\"\n").nlu,
            NluProviderConfig::Lexical
        );
    }

    #[test]
    fn openai_speech_parses_and_is_checked() {
        let ai = parse(
            "[ai.tts]\nprovider = \"openai\"\nurl = \"https://api.openai.com/v1/\"\napi_key_env = \"OPENAI_API_KEY\"\n",
        );
        let TtsProviderConfig::Openai(o) = &ai.tts else {
            panic!("{:?}", ai.tts)
        };
        assert_eq!(
            (o.model.as_str(), o.voice.as_str()),
            ("gpt-4o-mini-tts", "alloy")
        );
        assert_eq!(o.api_key_env.as_deref(), Some("OPENAI_API_KEY"));
        assert_eq!(ai.describe(), "stt=none nlu=embedding tts=openai");
        assert_eq!(
            error("[ai.tts]\nprovider = \"openai\"\n"),
            "ai.tts: missing field `url`"
        );
        assert_eq!(
            error("[ai.tts]\nprovider = \"openai\"\nurl = \"ws://x/\"\n"),
            "ai.tts.url: \"ws://x/\" is not a http(s)://HOST/v1/ URL"
        );
        assert_eq!(
            error("[ai.tts]\nprovider = \"openai\"\nurl = \"http://x/\"\nvoice = \" \"\n"),
            "ai.tts.voice: must not be empty"
        );
    }

    #[test]
    fn every_new_provider_round_trips_through_toml() {
        let ai = AiConfig {
            stt: SttProviderConfig::Deepgram(DeepgramEndpoint {
                url: "ws://127.0.0.1:9/v1/listen".into(),
                api_key_env: "DG_KEY".into(),
                model: Some("nova-3".into()),
                language: Some("en-US".into()),
            }),
            nlu: NluProviderConfig::Embedding(EmbeddingSettings {
                model_dir: Some("/opt/m".into()),
            }),
            tts: TtsProviderConfig::Openai(SpeechEndpoint {
                url: "http://127.0.0.1:9/".into(),
                model: "tts-1".into(),
                voice: "nova".into(),
                api_key_env: None,
            }),
            conversation: ConversationSettings::default(),
        };
        ai.validate().expect("valid");
        let cfg = GatewayConfig {
            ai,
            ..GatewayConfig::default()
        };
        let text = toml::to_string(&cfg).expect("toml");
        assert_eq!(GatewayConfig::from_toml_str(&text).expect("parses"), cfg);
    }
}
