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

use crate::budget::{Admitted, BreakerRegistry, Provider};
use crate::metrics::AiMetrics;
use crate::tenant::{AdmissionControl, PolicyBook, ProviderChoices};
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

/// More providers of each kind beside the primary ones of [`AiEngines`],
/// in the configured order. A tenant's NOC policy (`providers`) orders
/// them; a call takes the first whose circuit breaker lets it through.
#[derive(Clone, Default)]
pub struct Alternates {
    pub stt: Vec<(String, Arc<dyn SttEngine>)>,
    pub nlu: Vec<(String, Arc<dyn IntentEngine>)>,
    pub tts: Vec<(String, Arc<dyn TtsEngine>)>,
}

/// The providers to try for one engine kind, best first: the tenant's
/// order among the configured ones, or the configured order when the
/// tenant names none of them.
fn ordered(configured: &[String], preferred: &[String]) -> Vec<String> {
    let mine: Vec<String> = preferred
        .iter()
        .filter(|p| configured.contains(p))
        .cloned()
        .collect();
    if mine.is_empty() {
        configured.to_vec()
    } else {
        mine
    }
}

fn pick<E: ?Sized>(primary: (&str, &Arc<E>), more: &[(String, Arc<E>)], name: &str) -> Arc<E> {
    more.iter()
        .find(|(n, _)| n == name)
        .map_or_else(|| primary.1.clone(), |(_, e)| e.clone())
}

/// Everything the runner shares across calls.
pub struct AiNodeRunner {
    engines: AiEngines,
    alternates: Alternates,
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
            alternates: Alternates::default(),
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

    /// Adds the providers a tenant may prefer over the primary ones.
    pub fn with_alternates(mut self, alternates: Alternates) -> Self {
        self.alternates = alternates;
        self
    }

    /// The configured provider names of each kind, primary first.
    pub fn provider_names(&self) -> ProviderChoices {
        let names = |primary: &str, more: Vec<&String>| {
            std::iter::once(primary.to_string())
                .chain(more.into_iter().cloned())
                .collect()
        };
        let a = &self.alternates;
        ProviderChoices {
            stt: names(
                &self.engines.names.stt,
                a.stt.iter().map(|x| &x.0).collect(),
            ),
            nlu: names(
                &self.engines.names.nlu,
                a.nlu.iter().map(|x| &x.0).collect(),
            ),
            tts: names(
                &self.engines.names.tts,
                a.tts.iter().map(|x| &x.0).collect(),
            ),
        }
    }

    /// The providers a call of a tenant with `preferred` tries, per kind.
    fn candidates(&self, preferred: &ProviderChoices) -> Vec<(Provider, Vec<String>)> {
        let configured = self.provider_names();
        vec![
            (Provider::Stt, ordered(&configured.stt, &preferred.stt)),
            (Provider::Nlu, ordered(&configured.nlu, &preferred.nlu)),
            (Provider::Tts, ordered(&configured.tts, &preferred.tts)),
        ]
    }

    /// The engines of the providers a call was admitted to.
    fn engines_for(&self, admitted: &[Admitted]) -> AiEngines {
        let e = &self.engines;
        let a = &self.alternates;
        let name = |p: Provider, primary: &str| {
            admitted
                .iter()
                .find(|x| x.provider == p)
                .map_or_else(|| primary.to_string(), |x| x.name.clone())
        };
        let names = EngineNames {
            stt: name(Provider::Stt, &e.names.stt),
            nlu: name(Provider::Nlu, &e.names.nlu),
            tts: name(Provider::Tts, &e.names.tts),
        };
        AiEngines {
            stt: pick((&e.names.stt, &e.stt), &a.stt, &names.stt),
            nlu: pick((&e.names.nlu, &e.nlu), &a.nlu, &names.nlu),
            tts: pick((&e.names.tts, &e.tts), &a.tts, &names.tts),
            names,
        }
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
