//! What the gateway says happened on a call: read from its call record
//! (`GET /v1/tenants/{t}/calls/{id}`): the AI node's decisions with
//! intents and confidences, the fallbacks and their reasons, the per-stage
//! latencies, and the call's disposition in eval terms. Pure.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::manifest::Disposition;

/// One policy decision of an AI node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// `confident`, `low_confidence`, `sensitive_intent`, `asked_for_human`,
    /// `no_input`, `dtmf`, `max_turns`, `failure`.
    pub rule: String,
    /// `route`, `reprompt`, `repeat`, `escalate`, `menu`.
    pub action: String,
    pub intent: Option<String>,
    pub confidence: Option<f64>,
    pub text: String,
}

/// A latency or provider fallback.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FallbackEvent {
    /// `fallback_dtmf` or `fallback_agent`, when known.
    pub outcome: Option<String>,
    /// `deadline`, `provider_error`, `stall`, `circuit_open`, …
    pub reason: String,
    pub text: String,
    /// When it happened, ms since the call entered the flow (about the
    /// answer): the node's entry plus the record's offset.
    pub at_call_ms: u64,
}

/// A node visit, for the report's timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepView {
    pub node: String,
    pub entered_ms: u64,
    pub outcome: Option<String>,
    /// The AI records, as `kind: text`.
    pub notes: Vec<String>,
}

/// Everything the eval needs from one call record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GatewayOutcome {
    pub record_id: String,
    pub flow_version: u64,
    /// The record's own disposition (`completed`, `transferred`, …).
    pub record_disposition: Option<String>,
    /// The eval disposition; `None` when it fits none (a tenant fallback).
    pub disposition: Option<Disposition>,
    pub decisions: Vec<Decision>,
    pub fallbacks: Vec<FallbackEvent>,
    /// Stage name → each turn's figure, ms (`stt_final`, `nlu_first_token`,
    /// `tts_first_byte`, `turn`, …), as the gateway measured them.
    pub stages: BTreeMap<String, Vec<u64>>,
    /// What the STT heard, turn by turn.
    pub transcripts: Vec<String>,
    pub timeline: Vec<StepView>,
}

fn tag(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => ["kind", "type", "reason"]
            .iter()
            .find_map(|k| o.get(*k).and_then(Value::as_str).map(str::to_owned))
            .or_else(|| o.keys().next().cloned()),
        _ => None,
    }
}

const ACTIONS: [&str; 5] = ["route", "reprompt", "repeat", "escalate", "menu"];

/// The decision's action. The record's `detail.action` can be shadowed by
/// a rule field of the same name (the `dtmf` rule's key action), so the
/// record text ("… → escalate") decides when the detail does not.
fn action_of(detail: &Value, text: &str) -> String {
    if let Some(a) = detail["action"].as_str().filter(|a| ACTIONS.contains(a)) {
        return a.to_owned();
    }
    text.rsplit_once('→')
        .and_then(|(_, after)| after.split_whitespace().next())
        .filter(|a| ACTIONS.contains(a))
        .unwrap_or("unknown")
        .to_owned()
}

/// Reads a call record.
pub fn from_record(record: &Value) -> GatewayOutcome {
    let mut decisions = Vec::new();
    let mut fallbacks = Vec::new();
    let mut stages: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut timeline = Vec::new();
    let mut transcripts = Vec::new();
    let mut ai_outcomes = Vec::new();
    let steps = record["timeline"].as_array().cloned().unwrap_or_default();
    for step in &steps {
        let outcome = step["outcome"].as_str().map(str::to_owned);
        let is_ai = step["type"] == "ai";
        if is_ai {
            if let Some(o) = &outcome {
                ai_outcomes.push(o.clone());
            }
        }
        let entered = step["entered_ms"].as_u64().unwrap_or(0);
        let mut notes = Vec::new();
        for r in step["ai"].as_array().into_iter().flatten() {
            let kind = r["kind"].as_str().unwrap_or_default();
            let text = r["text"].as_str().unwrap_or_default().to_owned();
            let d = &r["detail"];
            match kind {
                "decision" => decisions.push(Decision {
                    rule: d["rule"].as_str().unwrap_or("unknown").to_owned(),
                    action: action_of(d, &text),
                    intent: d["intent"].as_str().map(str::to_owned),
                    confidence: d["confidence"].as_f64(),
                    text: text.clone(),
                }),
                "fallback" => fallbacks.push(FallbackEvent {
                    outcome: d["fallback"].as_str().map(|f| format!("fallback_{f}")),
                    reason: tag(&d["reason"]).unwrap_or_else(|| "unknown".into()),
                    text: text.clone(),
                    at_call_ms: entered + r["at_ms"].as_u64().unwrap_or(0),
                }),
                "transcript" => transcripts.push(d["text"].as_str().unwrap_or_default().to_owned()),
                "turn" => {
                    for (stage, v) in d.as_object().into_iter().flatten() {
                        if let Some(ms) = v.as_u64() {
                            stages.entry(stage.clone()).or_default().push(ms);
                        }
                    }
                }
                _ => {}
            }
            notes.push(format!("{kind}: {text}"));
        }
        for n in step["notes"].as_array().into_iter().flatten() {
            if let Some(n) = n.as_str() {
                notes.push(n.to_owned());
            }
        }
        timeline.push(StepView {
            node: step["node"].as_str().unwrap_or_default().to_owned(),
            entered_ms: entered,
            outcome,
            notes,
        });
    }
    let record_disposition = record["disposition"].as_str().map(str::to_owned);
    GatewayOutcome {
        record_id: record["id"].as_str().unwrap_or_default().to_owned(),
        flow_version: record["version"].as_u64().unwrap_or(0),
        disposition: disposition(&ai_outcomes, record_disposition.as_deref()),
        record_disposition,
        decisions,
        fallbacks,
        stages,
        transcripts,
        timeline,
    }
}

/// The eval disposition: how the AI node(s) left, else how the call ended.
pub fn disposition(ai_outcomes: &[String], record: Option<&str>) -> Option<Disposition> {
    for o in ai_outcomes {
        match o.as_str() {
            "escalate" => return Some(Disposition::Escalated),
            "fallback_dtmf" => return Some(Disposition::FallbackDtmf),
            "fallback_agent" => return Some(Disposition::FallbackAgent),
            _ => {}
        }
    }
    let resolved = ai_outcomes.iter().any(|o| o != "error");
    match record {
        _ if resolved => Some(Disposition::Contained),
        Some("caller_hung_up") => Some(Disposition::HungUp),
        Some("completed") => Some(Disposition::Contained),
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_record_gives_decisions_fallbacks_stages_and_the_disposition() {
        let r = json!({"id": "vx1", "version": 3, "disposition": "transferred", "timeline": [
            {"node": "ask", "type": "ai", "entered_ms": 0, "outcome": "escalate", "ai": [
                {"at_ms": 10, "kind": "turn", "text": "…", "detail": {"stt_final": 120, "turn": 640}},
                {"at_ms": 11, "kind": "decision", "text": "complaint → escalate",
                 "detail": {"rule": "sensitive_intent", "intent": "complaint", "confidence": 0.91, "action": "escalate"}},
                {"at_ms": 12, "kind": "fallback", "text": "nlu took 2000 ms",
                 "detail": {"fallback": "dtmf", "reason": {"kind": "deadline", "stage": "nlu"}}}
            ]},
            {"node": "agent", "type": "transfer", "entered_ms": 900, "notes": ["blind"]}
        ]});
        let o = from_record(&r);
        assert_eq!(o.flow_version, 3);
        assert_eq!(o.disposition, Some(Disposition::Escalated));
        assert_eq!(o.decisions[0].intent.as_deref(), Some("complaint"));
        assert_eq!(o.decisions[0].confidence, Some(0.91));
        assert_eq!(o.fallbacks[0].reason, "deadline");
        assert_eq!(o.fallbacks[0].outcome.as_deref(), Some("fallback_dtmf"));
        assert_eq!(o.fallbacks[0].at_call_ms, 12);
        assert_eq!(o.stages["turn"], [640]);
        assert_eq!(o.timeline[1].notes, ["blind"]);
    }

    #[test]
    fn the_action_comes_from_the_text_when_the_detail_hides_it() {
        let d = json!({"rule": "dtmf", "digit": "0", "action": {"agent": null}});
        assert_eq!(action_of(&d, "key 0 means Agent → escalate"), "escalate");
        assert_eq!(action_of(&json!({"action": "route"}), ""), "route");
        assert_eq!(action_of(&json!({}), "no arrow"), "unknown");
    }

    #[test]
    fn dispositions() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            disposition(&s(&["balance"]), Some("caller_hung_up")),
            Some(Disposition::Contained)
        );
        assert_eq!(
            disposition(&s(&[]), Some("caller_hung_up")),
            Some(Disposition::HungUp)
        );
        assert_eq!(
            disposition(&s(&["fallback_agent"]), Some("transferred")),
            Some(Disposition::FallbackAgent)
        );
        assert_eq!(disposition(&s(&[]), Some("fallback")), None);
    }
}
