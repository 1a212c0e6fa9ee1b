//! The AI node runner: [`AiNodeRunner`] implements the flow driver's
//! [`AiRunner`] over a live call and the stt-tts engines.
//!
//! ```text
//!  call audio 8 kHz ─▶ resample 16 kHz ─▶ Conversation (VAD, turns, budget, policy)
//!                                              │ commands
//!        ┌───────────────┬─────────────────────┼──────────────────┐
//!     STT task        NLU task             TTS task ──TurnAudio──▶ call playback
//!        └── events ─────┴─────────────────────┘                 (gate drops old turns)
//! ```
//!
//! - [`build`]: the engines and settings `[ai]` asks for.
//! - [`conversation`]: the sans-IO core of one node visit.
//! - `driver`: the thin async loop over it; one task per engine session,
//!   all reporting into one channel, so the loop never waits on an engine.
//!
//! Before a conversation starts, the tenant's [`AdmissionControl`] (rate
//! and concurrency) and the per-(tenant, provider) circuit breakers are
//! asked; a refusal takes the node's fallback at once, with the reason.

pub mod build;
pub mod conversation;
mod driver;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;
use voxgate_flows::driver::AiRunner;
use voxgate_flows::interpreter::{ActionResult, AiRecord};
use voxgate_flows::model::AiNode;
use voxgate_gateway::call::{BoxFuture, CallHandle};
use voxgate_stt_tts::nlu::IntentEngine;
use voxgate_stt_tts::stt::SttEngine;
use voxgate_stt_tts::tts::TtsEngine;

use crate::budget::BreakerRegistry;
use crate::metrics::AiMetrics;
use crate::tenant::{AdmissionControl, PolicyBook};
pub use conversation::{Command, Conversation, ConversationConfig, Exit, Measure, NodeSetup};

/// The engines a conversation uses.
#[derive(Clone)]
pub struct AiEngines {
    pub stt: Arc<dyn SttEngine>,
    pub nlu: Arc<dyn IntentEngine>,
    pub tts: Arc<dyn TtsEngine>,
    /// Provider names for records and logs (`worker`, `lexical`, …).
    pub names: EngineNames,
}

/// The configured provider of each engine kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct EngineNames {
    pub stt: String,
    pub nlu: String,
    pub tts: String,
}

/// Everything the runner shares across calls.
pub struct AiNodeRunner {
    engines: AiEngines,
    config: ConversationConfig,
    book: Arc<PolicyBook>,
    breakers: Arc<BreakerRegistry>,
    admission: Arc<AdmissionControl>,
    metrics: Arc<AiMetrics>,
}

impl AiNodeRunner {
    pub fn new(
        engines: AiEngines,
        config: ConversationConfig,
        book: Arc<PolicyBook>,
        breakers: Arc<BreakerRegistry>,
        admission: Arc<AdmissionControl>,
        metrics: Arc<AiMetrics>,
    ) -> Self {
        Self {
            engines,
            config,
            book,
            breakers,
            admission,
            metrics,
        }
    }

    pub fn metrics(&self) -> &Arc<AiMetrics> {
        &self.metrics
    }
}

impl AiRunner for AiNodeRunner {
    fn run<'a>(
        &'a self,
        call: &'a mut CallHandle,
        node: &'a str,
        params: &'a AiNode,
        variables: &'a BTreeMap<String, Value>,
    ) -> BoxFuture<'a, ActionResult> {
        Box::pin(driver::run(self, call, node, params, variables))
    }
}

/// An immediate exit without a conversation (refused admission, an open
/// circuit, a call that cannot stream), with its reason.
fn refused(outcome: &str, reason: &str, detail: String) -> ActionResult {
    ActionResult::Ai {
        outcome: outcome.to_string(),
        variables: BTreeMap::from([
            ("ai.reason".to_string(), Value::from(reason)),
            ("ai.reason_detail".to_string(), Value::from(detail.clone())),
            ("ai.turns".to_string(), Value::from(0)),
        ]),
        records: vec![AiRecord {
            at_ms: 0,
            kind: "admission".into(),
            text: detail,
            detail: Value::Null,
        }],
    }
}

#[cfg(test)]
mod engine_tests;
#[cfg(test)]
mod tests;
