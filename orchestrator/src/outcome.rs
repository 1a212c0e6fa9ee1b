//! How a finished AI node answers the flow driver: the outcome edge and
//! the `ai.*` variables, from a policy [`Decision`] or a budget
//! [`FallbackDecision`].

use std::collections::BTreeMap;

use serde_json::Value;
use voxgate_flows::interpreter::ActionResult;
use voxgate_stt_tts::nlu::SlotValue;

use crate::budget::FallbackDecision;
use crate::policy::Decision;

/// What the node learned from the caller's last turn.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LastTurn {
    pub transcript: String,
    pub intent: Option<String>,
    pub confidence: f64,
    pub slots: BTreeMap<String, SlotValue>,
}

fn slot_json(v: &SlotValue) -> Value {
    match v {
        SlotValue::Digits(s) | SlotValue::Text(s) => Value::from(s.as_str()),
        SlotValue::Amount { value, .. } => Value::from(value.as_str()),
        SlotValue::YesNo(b) => Value::from(*b),
        SlotValue::Date(d) => serde_json::to_value(d).unwrap_or(Value::Null),
    }
}

fn variables(
    last: Option<&LastTurn>,
    turns: u32,
    reason: &str,
    detail: String,
) -> BTreeMap<String, Value> {
    let mut v = BTreeMap::new();
    v.insert("ai.turns".to_string(), Value::from(turns));
    v.insert("ai.reason".to_string(), Value::from(reason));
    v.insert("ai.reason_detail".to_string(), Value::from(detail));
    if let Some(last) = last {
        v.insert(
            "ai.transcript".to_string(),
            Value::from(last.transcript.as_str()),
        );
        v.insert(
            "ai.intent".to_string(),
            last.intent.as_deref().map_or(Value::Null, Value::from),
        );
        // Rounded so that 0.41 stays 0.41 in templates, not 0.4099999.
        v.insert(
            "ai.confidence".to_string(),
            Value::from((last.confidence * 1000.0).round() / 1000.0),
        );
        for (name, value) in &last.slots {
            v.insert(format!("ai.slots.{name}"), slot_json(value));
        }
    }
    v
}

/// The node's answer for a policy decision that leaves the node; `None`
/// when the decision keeps the conversation going.
pub fn from_decision(
    decision: &Decision,
    last: Option<&LastTurn>,
    turns: u32,
) -> Option<ActionResult> {
    let outcome = decision.outcome()?.to_string();
    Some(ActionResult::Ai {
        outcome,
        variables: variables(last, turns, decision.rule.code(), decision.to_string()),
        records: Vec::new(),
    })
}

/// The node's answer for a budget or provider fallback.
pub fn from_fallback(
    fallback: &FallbackDecision,
    last: Option<&LastTurn>,
    turns: u32,
) -> ActionResult {
    ActionResult::Ai {
        outcome: fallback.fallback.outcome().to_string(),
        variables: variables(last, turns, &fallback.reason.code(), fallback.to_string()),
        records: Vec::new(),
    }
}

/// The node's answer when the caller hangs up in it: what was learned so
/// far, for the timeline and the variables.
pub fn from_hangup(last: Option<&LastTurn>, turns: u32) -> ActionResult {
    ActionResult::Ai {
        outcome: voxgate_flows::interpreter::AI_CALLER_HUNG_UP.to_string(),
        variables: variables(last, turns, "caller_hung_up", "the caller hung up".into()),
        records: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::budget::{Fallback, FallbackReason, Stage};
    use crate::policy::{PolicyAction, Rule};

    fn last() -> LastTurn {
        LastTurn {
            transcript: "pay 12.50 on account 1234".into(),
            intent: Some("pay_bill".into()),
            confidence: 0.8123,
            slots: BTreeMap::from([
                (
                    "amount".to_string(),
                    SlotValue::Amount {
                        value: "12.50".into(),
                        currency: None,
                    },
                ),
                ("account".to_string(), SlotValue::Digits("1234".into())),
            ]),
        }
    }

    #[test]
    fn a_route_sets_the_ai_variables() {
        let d = Decision {
            rule: Rule::Confident {
                intent: "pay_bill".into(),
                confidence: 0.8123,
                threshold: 0.6,
            },
            action: PolicyAction::Route("pay_bill".into()),
        };
        let Some(ActionResult::Ai {
            outcome, variables, ..
        }) = from_decision(&d, Some(&last()), 2)
        else {
            panic!("leaves")
        };
        assert_eq!(outcome, "pay_bill");
        assert_eq!(variables["ai.intent"], "pay_bill");
        assert_eq!(variables["ai.confidence"], 0.812);
        assert_eq!(variables["ai.turns"], 2);
        assert_eq!(variables["ai.reason"], "confident");
        assert_eq!(variables["ai.slots.amount"], "12.50");
        assert_eq!(variables["ai.slots.account"], "1234");
        assert_eq!(variables["ai.transcript"], "pay 12.50 on account 1234");
    }

    #[test]
    fn a_reprompt_stays_and_a_fallback_records_its_reason() {
        let stay = Decision {
            rule: Rule::NoInput { count: 1, max: 2 },
            action: PolicyAction::Reprompt,
        };
        assert!(from_decision(&stay, None, 1).is_none());
        let fb = FallbackDecision {
            fallback: Fallback::Agent,
            reason: FallbackReason::Deadline {
                stage: Stage::Turn,
                elapsed_ms: 5_000,
                hard_ms: 5_000,
            },
        };
        let ActionResult::Ai {
            outcome, variables, ..
        } = from_fallback(&fb, None, 3)
        else {
            panic!("ai result")
        };
        assert_eq!(outcome, "fallback_agent");
        assert_eq!(variables["ai.reason"], "deadline_turn");
        assert_eq!(
            variables["ai.reason_detail"],
            "turn took 5000 ms >= hard 5000 ms → fallback_agent"
        );
        assert!(!variables.contains_key("ai.intent"));
    }
}
