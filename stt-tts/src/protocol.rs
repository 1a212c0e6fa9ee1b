//! The voxgate worker protocol's messages and frame codec (pure; the
//! sockets live in [`crate::worker`]). See `docs/worker-protocol.md`.
//!
//! Text frames carry JSON control messages tagged by `type`; binary frames
//! carry mono 16-bit little-endian PCM at the rate named in `start` (STT
//! input) or in the preceding `tts_chunk` (TTS output).

use crate::error::ErrorCode;
use crate::nlu::{IntentResult, NluRequest};
use crate::stt::{SttConfig, Transcript};
use crate::tts::TtsRequest;

/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u32 = 1;
/// Largest frame either side accepts, in bytes.
pub const MAX_FRAME_BYTES: usize = 1 << 20;

/// What kind of session a `start` opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionKind {
    Stt,
    Tts,
    Nlu,
}

/// The session a `start` asks for, tagged by `kind`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SessionConfig {
    Stt(SttConfig),
    Tts(TtsRequest),
    Nlu(NluRequest),
}

impl SessionConfig {
    pub fn kind(&self) -> SessionKind {
        match self {
            Self::Stt(_) => SessionKind::Stt,
            Self::Tts(_) => SessionKind::Tts,
            Self::Nlu(_) => SessionKind::Nlu,
        }
    }
}

/// Client → worker control messages.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    /// Opens a session on this connection.
    Start {
        version: u32,
        #[serde(flatten)]
        session: SessionConfig,
    },
    /// STT: no more audio.
    End,
    /// Drops the current session at once.
    Cancel,
    Ping {
        seq: u64,
    },
    Pong {
        seq: u64,
    },
}

/// Worker → client control messages.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum WorkerMessage {
    /// The session is open.
    Ready {
        version: u32,
        kind: SessionKind,
    },
    Partial(Transcript),
    Final(Transcript),
    /// STT: the last final has been sent.
    End,
    /// Metadata of the binary frame that follows.
    TtsChunk {
        seq: u32,
        samples: u32,
        sample_rate: u32,
    },
    /// TTS: the speech is complete.
    TtsEnd {
        chunks: u32,
        samples: u64,
    },
    /// NLU: a piece of generated text (first-token observable).
    Token {
        text: String,
    },
    Intent(IntentResult),
    Error {
        code: ErrorCode,
        message: String,
        retryable: bool,
    },
    Ping {
        seq: u64,
    },
    /// `active_sessions` is the worker's load, for least-loaded choice.
    Pong {
        seq: u64,
        #[serde(default)]
        active_sessions: u32,
    },
}

impl WorkerMessage {
    /// The `type` tag, for error messages.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Ready { .. } => "ready",
            Self::Partial(_) => "partial",
            Self::Final(_) => "final",
            Self::End => "end",
            Self::TtsChunk { .. } => "tts_chunk",
            Self::TtsEnd { .. } => "tts_end",
            Self::Token { .. } => "token",
            Self::Intent(_) => "intent",
            Self::Error { .. } => "error",
            Self::Ping { .. } => "ping",
            Self::Pong { .. } => "pong",
        }
    }
}

/// A frame that could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("malformed control frame at `{path}`: {reason}")]
    Malformed { path: String, reason: String },
    #[error("protocol version {got} is not supported (this build speaks {PROTOCOL_VERSION})")]
    UnsupportedVersion { got: u32 },
    #[error("audio frame of {0} bytes is not whole 16-bit samples")]
    OddAudioLength(usize),
    #[error("expected {expected}, got {got}")]
    Unexpected {
        expected: &'static str,
        got: &'static str,
    },
    #[error("frame of {0} bytes is over the limit")]
    TooLarge(usize),
}

fn decode<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, ProtocolError> {
    if text.len() > MAX_FRAME_BYTES {
        return Err(ProtocolError::TooLarge(text.len()));
    }
    let de = &mut serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| ProtocolError::Malformed {
        path: e.path().to_string(),
        reason: e.inner().to_string(),
    })
}

/// Decodes a client text frame.
pub fn decode_client(text: &str) -> Result<ClientMessage, ProtocolError> {
    let msg: ClientMessage = decode(text)?;
    if let ClientMessage::Start { version, .. } = &msg {
        check_version(*version)?;
    }
    Ok(msg)
}

/// Decodes a worker text frame.
pub fn decode_worker(text: &str) -> Result<WorkerMessage, ProtocolError> {
    let msg: WorkerMessage = decode(text)?;
    if let WorkerMessage::Ready { version, .. } = &msg {
        check_version(*version)?;
    }
    Ok(msg)
}

fn check_version(got: u32) -> Result<(), ProtocolError> {
    if got == PROTOCOL_VERSION {
        Ok(())
    } else {
        Err(ProtocolError::UnsupportedVersion { got })
    }
}

/// Encodes a message as JSON text. Our message types always serialise.
pub fn encode<T: serde::Serialize>(msg: &T) -> String {
    serde_json::to_string(msg).unwrap_or_else(|_| {
        r#"{"type":"error","code":"engine_failed","message":"unencodable message","retryable":false}"#
            .to_owned()
    })
}

/// PCM to the binary frame layout (16-bit little-endian).
pub fn pcm_to_bytes(pcm: &[i16]) -> Vec<u8> {
    pcm.iter().flat_map(|s| s.to_le_bytes()).collect()
}

/// A binary frame back to PCM.
pub fn bytes_to_pcm(bytes: &[u8]) -> Result<Vec<i16>, ProtocolError> {
    if bytes.len() > MAX_FRAME_BYTES {
        return Err(ProtocolError::TooLarge(bytes.len()));
    }
    if !bytes.len().is_multiple_of(2) {
        return Err(ProtocolError::OddAudioLength(bytes.len()));
    }
    Ok(bytes
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_is_flat_json() {
        let msg = ClientMessage::Start {
            version: PROTOCOL_VERSION,
            session: SessionConfig::Stt(SttConfig::default()),
        };
        let text = encode(&msg);
        assert_eq!(
            text,
            r#"{"type":"start","version":1,"kind":"stt","sample_rate":16000,"language":"en-US"}"#
        );
        assert_eq!(decode_client(&text).expect("decode"), msg);
        let tts = r#"{"type":"start","version":1,"kind":"tts","text":"hi","sample_rate":8000}"#;
        match decode_client(tts).expect("tts") {
            ClientMessage::Start {
                session: SessionConfig::Tts(r),
                ..
            } => assert_eq!(
                (r.text.as_str(), r.sample_rate, r.voice),
                ("hi", 8000, None)
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn worker_messages_round_trip() {
        for msg in [
            WorkerMessage::Ready {
                version: 1,
                kind: SessionKind::Tts,
            },
            WorkerMessage::TtsChunk {
                seq: 3,
                samples: 320,
                sample_rate: 16000,
            },
            WorkerMessage::Error {
                code: ErrorCode::Overloaded,
                message: "busy".into(),
                retryable: true,
            },
            WorkerMessage::Pong {
                seq: 9,
                active_sessions: 2,
            },
            WorkerMessage::End,
            WorkerMessage::Intent(IntentResult::no_match()),
        ] {
            assert_eq!(decode_worker(&encode(&msg)).expect("decode"), msg);
        }
    }

    #[test]
    fn garbage_is_a_typed_error() {
        for bad in [
            "",
            "{",
            "null",
            "[1,2]",
            r#"{"type":"warp"}"#,
            r#"{"type":"ping"}"#,
            "\u{0}",
        ] {
            assert!(
                matches!(decode_client(bad), Err(ProtocolError::Malformed { .. })),
                "{bad:?}"
            );
            assert!(
                matches!(decode_worker(bad), Err(ProtocolError::Malformed { .. })),
                "{bad:?}"
            );
        }
        let e = decode_client(
            r#"{"type":"start","version":1,"kind":"stt","sample_rate":"x","language":"en"}"#,
        )
        .expect_err("bad rate");
        assert!(e.to_string().contains("expected u32"), "{e}");
        assert_eq!(
            decode_client(
                r#"{"type":"start","version":7,"kind":"stt","sample_rate":1,"language":"en"}"#
            ),
            Err(ProtocolError::UnsupportedVersion { got: 7 })
        );
        assert_eq!(
            bytes_to_pcm(&[1, 2, 3]),
            Err(ProtocolError::OddAudioLength(3))
        );
        assert_eq!(
            bytes_to_pcm(&pcm_to_bytes(&[1, -2, i16::MAX])).expect("pcm"),
            vec![1, -2, i16::MAX]
        );
    }
}
