//! Every environment variable voxgate reads, in one place.
//!
//! Each configuration override names the TOML key it sets and how its text
//! is read, so an error can say both the variable and the key.

/// Path of the TOML config file, when `--config` is not given.
pub const CONFIG: &str = "VOXGATE_CONFIG";
pub const SIP_LISTEN: &str = "VOXGATE_SIP_LISTEN";
pub const SIP_RINGING: &str = "VOXGATE_SIP_RINGING";
pub const SIP_RING_MS: &str = "VOXGATE_SIP_RING_MS";
pub const SIP_MAX_MESSAGE_BYTES: &str = "VOXGATE_SIP_MAX_MESSAGE_BYTES";
pub const SIP_INVITE_RATE_PER_SECOND: &str = "VOXGATE_SIP_INVITE_RATE_PER_SECOND";
pub const SIP_INVITE_RATE_BURST: &str = "VOXGATE_SIP_INVITE_RATE_BURST";
pub const HTTP_LISTEN: &str = "VOXGATE_HTTP_LISTEN";
/// Where the canvas's built files are (`web/dist`).
pub const HTTP_UI_DIR: &str = "VOXGATE_HTTP_UI_DIR";
pub const DATA_DIR: &str = "VOXGATE_DATA_DIR";
pub const PUBLIC_IP: &str = "VOXGATE_PUBLIC_IP";
pub const RTP_PORTS: &str = "VOXGATE_RTP_PORTS";
pub const RTP_JITTER_MS: &str = "VOXGATE_RTP_JITTER_MS";
pub const RTP_TIMEOUT_S: &str = "VOXGATE_RTP_TIMEOUT_S";
pub const SHUTDOWN_DRAIN_TIMEOUT_S: &str = "VOXGATE_SHUTDOWN_DRAIN_TIMEOUT_S";
pub const TTS_VOICE: &str = "VOXGATE_TTS_VOICE";
pub const TTS_RATE: &str = "VOXGATE_TTS_RATE";
pub const TTS_PITCH: &str = "VOXGATE_TTS_PITCH";
pub const TTS_ESPEAK_PATH: &str = "VOXGATE_TTS_ESPEAK_PATH";
pub const DEMO_ENABLED: &str = "VOXGATE_DEMO_ENABLED";
pub const AI_STT_PROVIDER: &str = "VOXGATE_AI_STT_PROVIDER";
pub const AI_NLU_PROVIDER: &str = "VOXGATE_AI_NLU_PROVIDER";
pub const AI_TTS_PROVIDER: &str = "VOXGATE_AI_TTS_PROVIDER";
/// The default variable `[ai.*] token_env` names: the workers' token.
pub const AI_WORKER_TOKEN: &str = WORKER_TOKEN;
/// The `/v1` API base URL the admin commands (`voxgate flows …`) talk to.
pub const API_URL: &str = "VOXGATE_API_URL";
/// The API key the admin commands send as a bearer token.
pub const API_KEY: &str = "VOXGATE_API_KEY";
/// The bearer token of the worker protocol (`voxgate worker`, `voxgate simulate`).
pub const WORKER_TOKEN: &str = "VOXGATE_WORKER_TOKEN";
/// The tracing filter (not a config key): `RUST_LOG=voxgate=debug`.
pub const LOG: &str = "RUST_LOG";

/// How an override's text becomes a TOML value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    /// Taken verbatim; the key's own parser checks it.
    Text,
    /// An unsigned integer.
    Integer,
    /// `true`/`false`, `1`/`0`, `yes`/`no`, `on`/`off`.
    Bool,
}

/// One environment variable that overrides one config key.
#[derive(Debug, Clone, Copy)]
pub struct EnvOverride {
    pub var: &'static str,
    /// Dotted key path, as in the TOML file.
    pub key: &'static str,
    pub kind: ValueKind,
}

/// Every config key an environment variable can set. Trunks are only read
/// from the file.
pub const OVERRIDES: &[EnvOverride] = &[
    EnvOverride {
        var: SIP_LISTEN,
        key: "sip.listen",
        kind: ValueKind::Text,
    },
    EnvOverride {
        var: SIP_RINGING,
        key: "sip.ringing",
        kind: ValueKind::Bool,
    },
    EnvOverride {
        var: SIP_RING_MS,
        key: "sip.ring_ms",
        kind: ValueKind::Integer,
    },
    EnvOverride {
        var: SIP_MAX_MESSAGE_BYTES,
        key: "sip.max_message_bytes",
        kind: ValueKind::Integer,
    },
    EnvOverride {
        var: SIP_INVITE_RATE_PER_SECOND,
        key: "sip.invite_rate_per_source.per_second",
        kind: ValueKind::Integer,
    },
    EnvOverride {
        var: SIP_INVITE_RATE_BURST,
        key: "sip.invite_rate_per_source.burst",
        kind: ValueKind::Integer,
    },
    EnvOverride {
        var: HTTP_LISTEN,
        key: "http.listen",
        kind: ValueKind::Text,
    },
    EnvOverride {
        var: HTTP_UI_DIR,
        key: "http.ui_dir",
        kind: ValueKind::Text,
    },
    EnvOverride {
        var: DATA_DIR,
        key: "data_dir",
        kind: ValueKind::Text,
    },
    EnvOverride {
        var: PUBLIC_IP,
        key: "public_ip",
        kind: ValueKind::Text,
    },
    EnvOverride {
        var: RTP_PORTS,
        key: "rtp.ports",
        kind: ValueKind::Text,
    },
    EnvOverride {
        var: RTP_JITTER_MS,
        key: "rtp.jitter_ms",
        kind: ValueKind::Integer,
    },
    EnvOverride {
        var: RTP_TIMEOUT_S,
        key: "rtp.timeout_s",
        kind: ValueKind::Integer,
    },
    EnvOverride {
        var: SHUTDOWN_DRAIN_TIMEOUT_S,
        key: "shutdown.drain_timeout_s",
        kind: ValueKind::Integer,
    },
    EnvOverride {
        var: TTS_VOICE,
        key: "tts.voice",
        kind: ValueKind::Text,
    },
    EnvOverride {
        var: TTS_RATE,
        key: "tts.rate",
        kind: ValueKind::Integer,
    },
    EnvOverride {
        var: TTS_PITCH,
        key: "tts.pitch",
        kind: ValueKind::Integer,
    },
    EnvOverride {
        var: TTS_ESPEAK_PATH,
        key: "tts.espeak_path",
        kind: ValueKind::Text,
    },
    EnvOverride {
        var: DEMO_ENABLED,
        key: "demo.enabled",
        kind: ValueKind::Bool,
    },
    EnvOverride {
        var: AI_STT_PROVIDER,
        key: "ai.stt.provider",
        kind: ValueKind::Text,
    },
    EnvOverride {
        var: AI_NLU_PROVIDER,
        key: "ai.nlu.provider",
        kind: ValueKind::Text,
    },
    EnvOverride {
        var: AI_TTS_PROVIDER,
        key: "ai.tts.provider",
        kind: ValueKind::Text,
    },
];
