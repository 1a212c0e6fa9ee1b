//! Intent recognition: an utterance, the conversation so far and the AI
//! node's intent set in; an [`IntentResult`] out.
//!
//! Engines that stream (LLMs) report [`NluEvent::Token`]s before the result,
//! so the orchestrator can enforce a first-token deadline instead of a read
//! timeout. Engines that do not stream send the result alone.

pub mod embedding;
pub mod lexical;
pub mod slots;

use std::collections::BTreeMap;

use tokio::sync::mpsc;
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::error::EngineError;

/// The kinds of slot an intent can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SlotKind {
    Digits,
    Amount,
    Date,
    YesNo,
    Text,
}

/// One slot of an intent.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SlotSpec {
    pub name: String,
    pub kind: SlotKind,
}

/// One intent the AI node can route on.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IntentSpec {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub examples: Vec<String>,
    #[serde(default)]
    pub slots: Vec<SlotSpec>,
}

/// Who said a turn of the conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Speaker {
    Caller,
    Bot,
}

/// One turn of the conversation so far.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Turn {
    pub speaker: Speaker,
    pub text: String,
}

/// What an intent engine is asked.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NluRequest {
    pub utterance: String,
    #[serde(default)]
    pub history: Vec<Turn>,
    pub intents: Vec<IntentSpec>,
    #[serde(default)]
    pub language: Option<String>,
}

/// A calendar date as said, not yet resolved against today's date (the
/// caller knows the call's time zone and "now"; the engine does not).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "form", rename_all = "snake_case")]
pub enum DateValue {
    /// A full date: `2024-05-03`, `3/5/2024` read as day/month.
    Full { year: i32, month: u8, day: u8 },
    /// A day of a month without a year: `May 3rd`, `the 3rd of May`.
    MonthDay { month: u8, day: u8 },
    /// Days from today: today 0, tomorrow 1, yesterday -1.
    Relative { days: i32 },
    /// A weekday, 0 = Monday; `next` when said as "next Monday".
    Weekday { weekday: u8, next: bool },
}

/// A filled slot.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum SlotValue {
    /// Digits only, in order: "one two 3 4" is `"1234"`.
    Digits(String),
    /// A decimal amount as text (`"12.50"`) so money never goes through
    /// floating point, with a currency when one was said.
    Amount {
        value: String,
        currency: Option<String>,
    },
    Date(DateValue),
    YesNo(bool),
    Text(String),
}

/// One candidate intent and its score.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct IntentScore {
    pub intent: String,
    /// 0..1.
    pub confidence: f32,
}

/// What an intent engine decided.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct IntentResult {
    /// The best intent; `None` when nothing in the set matched at all.
    pub intent: Option<String>,
    /// 0..1.
    pub confidence: f32,
    /// The runners-up, best first (the winner is not repeated).
    #[serde(default)]
    pub alternatives: Vec<IntentScore>,
    #[serde(default)]
    pub slots: BTreeMap<String, SlotValue>,
    /// A reply to speak, when the engine writes one (LLMs do).
    #[serde(default)]
    pub reply: Option<String>,
    /// Which engine answered: [`embedding::EMBEDDING_ENGINE`],
    /// [`lexical::LEXICAL_FALLBACK_ENGINE`], `llm`, … so that a call record
    /// shows when the fallback decided. Absent from older peers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<String>,
}

impl IntentResult {
    /// No intent matched.
    pub fn no_match() -> Self {
        Self {
            intent: None,
            confidence: 0.0,
            alternatives: Vec::new(),
            slots: BTreeMap::new(),
            reply: None,
            engine: None,
        }
    }
}

/// What an intent stream reports.
#[derive(Debug, Clone, PartialEq)]
pub enum NluEvent {
    /// A piece of generated text (LLM token); the first one is the
    /// first-token moment.
    Token(String),
    /// The decision; the stream ends after it.
    Result(IntentResult),
}

/// The caller's end of one classification.
pub struct NluStream {
    events: mpsc::Receiver<Result<NluEvent, EngineError>>,
    cancel: CancellationToken,
    _guard: DropGuard,
}

impl std::fmt::Debug for NluStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NluStream").finish_non_exhaustive()
    }
}

/// The engine's end of a classification.
#[derive(Debug)]
pub struct NluBackend {
    pub events: mpsc::Sender<Result<NluEvent, EngineError>>,
    pub cancel: CancellationToken,
}

impl NluBackend {
    /// Sends unless cancelled; returns whether to go on.
    pub async fn send(&self, item: Result<NluEvent, EngineError>) -> bool {
        tokio::select! {
            biased;
            _ = self.cancel.cancelled() => false,
            sent = self.events.send(item) => sent.is_ok(),
        }
    }
}

impl NluStream {
    /// A connected pair of caller and engine ends.
    pub fn channel() -> (NluStream, NluBackend) {
        let (tx, rx) = mpsc::channel(64);
        let cancel = CancellationToken::new();
        (
            NluStream {
                events: rx,
                cancel: cancel.clone(),
                _guard: cancel.clone().drop_guard(),
            },
            NluBackend { events: tx, cancel },
        )
    }

    /// A stream holding one finished item.
    pub fn ready(item: Result<IntentResult, EngineError>) -> NluStream {
        let (stream, backend) = Self::channel();
        let _ = backend.events.try_send(item.map(NluEvent::Result));
        stream
    }

    /// The next event; `None` at the end.
    pub async fn next_event(&mut self) -> Option<Result<NluEvent, EngineError>> {
        if self.cancel.is_cancelled() {
            return None;
        }
        tokio::select! {
            biased;
            _ = self.cancel.cancelled() => None,
            item = self.events.recv() => item,
        }
    }

    /// Reads to the end and returns the result, skipping tokens.
    pub async fn result(mut self) -> Result<IntentResult, EngineError> {
        while let Some(item) = self.next_event().await {
            if let NluEvent::Result(r) = item? {
                return Ok(r);
            }
        }
        Err(EngineError::ConnectionLost {
            reason: "the intent stream ended without a result".into(),
        })
    }

    /// Stops at once.
    pub fn cancel(&self) {
        self.cancel.cancel();
    }
}

/// An intent engine.
pub trait IntentEngine: Send + Sync {
    /// Starts classifying `request`. Must be called within a tokio runtime.
    fn classify(&self, request: NluRequest) -> NluStream;
}
