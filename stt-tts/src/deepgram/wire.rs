//! Deepgram's live-transcription wire format, pure: the query string of
//! the upgrade request, the client's control messages, and the parsing of
//! server messages into [`ServerMessage`].
//!
//! Only the fields voxgate uses are read; unknown message types and fields
//! are ignored so that provider additions do not break calls.

use serde::Deserialize;
use url::Url;

use crate::stt::{Transcript, Word};

/// `{"type":"KeepAlive"}`: keeps an idle stream open (Deepgram closes a
/// stream that sends nothing for about 10 s).
pub const KEEP_ALIVE: &str = r#"{"type":"KeepAlive"}"#;
/// `{"type":"Finalize"}`: flush the audio received so far into finals.
pub const FINALIZE: &str = r#"{"type":"Finalize"}"#;
/// `{"type":"CloseStream"}`: finish, send the last results and metadata,
/// then close with code 1000.
pub const CLOSE_STREAM: &str = r#"{"type":"CloseStream"}"#;

/// What the upgrade request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenParams<'a> {
    pub sample_rate: u32,
    pub language: &'a str,
    pub model: Option<&'a str>,
    pub punctuate: bool,
    pub smart_format: bool,
    /// Silence (ms) that ends an utterance (`speech_final`); `None` turns
    /// Deepgram's endpointing off.
    pub endpointing_ms: Option<u32>,
    /// `UtteranceEnd` after this much silence between words.
    pub utterance_end_ms: Option<u32>,
}

/// `base` with the query parameters of a 16-bit mono PCM stream. Existing
/// query parameters of `base` are kept (a proxy may need its own).
pub fn listen_url(base: &Url, p: &ListenParams<'_>) -> Url {
    let mut url = base.clone();
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("encoding", "linear16")
            .append_pair("sample_rate", &p.sample_rate.to_string())
            .append_pair("channels", "1")
            .append_pair("interim_results", "true")
            .append_pair("language", p.language)
            .append_pair("punctuate", bool_str(p.punctuate));
        if p.smart_format {
            q.append_pair("smart_format", "true");
        }
        if let Some(model) = p.model {
            q.append_pair("model", model);
        }
        match p.endpointing_ms {
            Some(ms) => q.append_pair("endpointing", &ms.to_string()),
            None => q.append_pair("endpointing", "false"),
        };
        if let Some(ms) = p.utterance_end_ms {
            q.append_pair("utterance_end_ms", &ms.to_string());
        }
    }
    url
}

fn bool_str(b: bool) -> &'static str {
    if b {
        "true"
    } else {
        "false"
    }
}

/// A transcription result, already in voxgate's units.
#[derive(Debug, Clone, PartialEq)]
pub struct Results {
    pub transcript: Transcript,
    /// The segment will not change any more.
    pub is_final: bool,
    /// Deepgram's endpointing saw the end of an utterance.
    pub speech_final: bool,
    /// The answer to a `Finalize`.
    pub from_finalize: bool,
}

/// A message from the server.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerMessage {
    Results(Results),
    /// The summary sent before a normal close.
    Metadata {
        request_id: Option<String>,
    },
    UtteranceEnd,
    SpeechStarted,
    /// An error reported in a text frame before the socket closes.
    Error {
        code: String,
        message: String,
    },
    /// A message type this build does not know (ignored).
    Other,
}

/// Why a server frame could not be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WireError {
    #[error("not JSON: {0}")]
    NotJson(String),
    #[error("no `type` field")]
    NoType,
    #[error("`Results` is malformed: {0}")]
    BadResults(String),
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "type")]
    kind: Option<String>,
}

#[derive(Deserialize)]
struct RawResults {
    #[serde(default)]
    start: f64,
    #[serde(default)]
    duration: f64,
    #[serde(default)]
    is_final: bool,
    #[serde(default)]
    speech_final: bool,
    #[serde(default)]
    from_finalize: bool,
    channel: RawChannel,
}

#[derive(Deserialize)]
struct RawChannel {
    alternatives: Vec<RawAlternative>,
}

#[derive(Deserialize)]
struct RawAlternative {
    #[serde(default)]
    transcript: String,
    #[serde(default)]
    confidence: f32,
    #[serde(default)]
    words: Vec<RawWord>,
}

#[derive(Deserialize)]
struct RawWord {
    word: String,
    #[serde(default)]
    punctuated_word: Option<String>,
    start: f64,
    end: f64,
    #[serde(default)]
    confidence: f32,
}

#[derive(Deserialize)]
struct RawMetadata {
    #[serde(default)]
    request_id: Option<String>,
}

#[derive(Deserialize)]
struct RawError {
    #[serde(default)]
    variant: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

/// Seconds (as Deepgram sends them) to milliseconds; negative, NaN and
/// absurd values become 0 rather than wrapping.
fn ms(seconds: f64) -> u64 {
    if seconds.is_finite() && seconds > 0.0 {
        (seconds * 1000.0).round().min(u64::MAX as f64 / 2.0) as u64
    } else {
        0
    }
}

fn unit(x: f32) -> f32 {
    if x.is_finite() {
        x.clamp(0.0, 1.0)
    } else {
        0.0
    }
}

/// Parses one text frame.
pub fn parse_server(text: &str) -> Result<ServerMessage, WireError> {
    let envelope: Envelope =
        serde_json::from_str(text).map_err(|e| WireError::NotJson(e.to_string()))?;
    match envelope.kind.as_deref().ok_or(WireError::NoType)? {
        "Results" => {
            let raw: RawResults =
                serde_json::from_str(text).map_err(|e| WireError::BadResults(e.to_string()))?;
            let alt = raw
                .channel
                .alternatives
                .into_iter()
                .next()
                .ok_or_else(|| WireError::BadResults("no alternatives".into()))?;
            let start_ms = ms(raw.start);
            let words = alt
                .words
                .into_iter()
                .map(|w| Word {
                    text: w.punctuated_word.unwrap_or(w.word),
                    start_ms: ms(w.start),
                    end_ms: ms(w.end),
                    confidence: unit(w.confidence),
                })
                .collect();
            Ok(ServerMessage::Results(Results {
                transcript: Transcript {
                    text: alt.transcript,
                    confidence: unit(alt.confidence),
                    start_ms,
                    end_ms: ms(raw.start + raw.duration).max(start_ms),
                    words,
                },
                is_final: raw.is_final,
                speech_final: raw.speech_final,
                from_finalize: raw.from_finalize,
            }))
        }
        "Metadata" => {
            let raw: RawMetadata =
                serde_json::from_str(text).map_err(|e| WireError::NotJson(e.to_string()))?;
            Ok(ServerMessage::Metadata {
                request_id: raw.request_id,
            })
        }
        "UtteranceEnd" => Ok(ServerMessage::UtteranceEnd),
        "SpeechStarted" => Ok(ServerMessage::SpeechStarted),
        "Error" => {
            let raw: RawError =
                serde_json::from_str(text).map_err(|e| WireError::NotJson(e.to_string()))?;
            Ok(ServerMessage::Error {
                code: raw.variant.unwrap_or_default(),
                message: raw.description.or(raw.message).unwrap_or_default(),
            })
        }
        _ => Ok(ServerMessage::Other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_carries_the_stream_format() {
        let base = Url::parse("wss://api.deepgram.com/v1/listen").expect("url");
        let url = listen_url(
            &base,
            &ListenParams {
                sample_rate: 16_000,
                language: "en-US",
                model: Some("nova-3"),
                punctuate: true,
                smart_format: false,
                endpointing_ms: Some(300),
                utterance_end_ms: None,
            },
        );
        let q = url.query().expect("query");
        for part in [
            "encoding=linear16",
            "sample_rate=16000",
            "channels=1",
            "interim_results=true",
            "language=en-US",
            "punctuate=true",
            "model=nova-3",
            "endpointing=300",
        ] {
            assert!(q.contains(part), "{q} lacks {part}");
        }
        assert!(!q.contains("utterance_end_ms"));
    }

    #[test]
    fn results_become_transcripts() {
        let text = r#"{"type":"Results","channel_index":[0,1],"duration":1.5,"start":2.25,
            "is_final":true,"speech_final":false,"channel":{"alternatives":[{"transcript":"hello there",
            "confidence":0.97,"words":[{"word":"hello","start":2.3,"end":2.6,"confidence":0.99,
            "punctuated_word":"Hello"},{"word":"there","start":2.7,"end":3.1,"confidence":0.95}]}]},
            "metadata":{"request_id":"x"}}"#;
        let ServerMessage::Results(r) = parse_server(text).expect("parse") else {
            panic!("not results");
        };
        assert!(r.is_final && !r.speech_final && !r.from_finalize);
        assert_eq!(r.transcript.text, "hello there");
        assert_eq!((r.transcript.start_ms, r.transcript.end_ms), (2250, 3750));
        assert_eq!(r.transcript.words[0].text, "Hello");
        assert_eq!(
            (r.transcript.words[1].start_ms, r.transcript.words[1].end_ms),
            (2700, 3100)
        );
    }

    #[test]
    fn other_messages_and_garbage() {
        assert_eq!(
            parse_server(r#"{"type":"Metadata","request_id":"r1","duration":3.0}"#),
            Ok(ServerMessage::Metadata {
                request_id: Some("r1".into())
            })
        );
        assert_eq!(
            parse_server(r#"{"type":"SomethingNew"}"#),
            Ok(ServerMessage::Other)
        );
        assert!(matches!(
            parse_server("{\"type\":\"Results\",\u{1}"),
            Err(WireError::NotJson(_))
        ));
        assert!(matches!(
            parse_server(r#"{"type":"Results","channel":{"alternatives":[]}}"#),
            Err(WireError::BadResults(_))
        ));
        assert_eq!(parse_server(r#"{"a":1}"#), Err(WireError::NoType));
        assert!(matches!(
            parse_server(r#"{"type":"Error","variant":"DATA-0000","description":"bad audio"}"#),
            Ok(ServerMessage::Error { .. })
        ));
    }
}
