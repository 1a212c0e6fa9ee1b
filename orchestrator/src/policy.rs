//! Escalation policy of one AI node: when to route on an intent, reprompt,
//! or hand the caller to an agent.
//!
//! [`TenantPolicy`] holds a tenant's defaults; [`NodePolicy::resolve`]
//! lays a node's own settings over them. [`PolicyState`] counts one
//! conversation and turns each caller turn into a [`Decision`]: the rule
//! that fired, its numbers, and the action, printable as
//! `confidence 0.41 < 0.60, 2/2 reprompts used → escalate`.
//!
//! Rules, in the order they are checked for an understood turn:
//! 1. asking for a human (a human intent, or a human phrase in the
//!    transcript) → escalate;
//! 2. a sensitive intent (node or tenant list) at or above the threshold →
//!    escalate;
//! 3. an intent at or above the threshold → route on it;
//! 4. the turn limit reached → escalate;
//! 5. below the threshold (or no intent) → reprompt, until `max_reprompts`
//!    reprompts have been used → escalate.
//!
//! No input counts silences (`max_silences` reprompts, then escalate);
//! failures (an empty transcript, an engine error the turn survived) count
//! consecutively (`max_failures`, then escalate).

use std::fmt;

use voxgate_flows::model::{AiDtmfAction, AiNode};

/// A tenant's defaults for every AI node.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct TenantPolicy {
    pub confidence_threshold: f64,
    pub max_reprompts: u32,
    pub max_turns: u32,
    pub max_silences: u32,
    pub max_failures: u32,
    /// Intents every node escalates, on top of the node's own list.
    pub escalate_intents: Vec<String>,
    /// Intents that mean "a human, please".
    pub human_intents: Vec<String>,
    /// Phrases in a transcript that mean "a human, please", lower-case.
    pub human_phrases: Vec<String>,
}

impl Default for TenantPolicy {
    fn default() -> Self {
        Self {
            confidence_threshold: 0.6,
            max_reprompts: 2,
            max_turns: 8,
            max_silences: 2,
            max_failures: 2,
            escalate_intents: Vec::new(),
            human_intents: vec!["agent".into(), "human".into(), "operator".into()],
            human_phrases: [
                "agent",
                "human",
                "real person",
                "operator",
                "representative",
                "someone real",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        }
    }
}

/// The settings one node runs with: the node's values over the tenant's.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct NodePolicy {
    pub confidence_threshold: f64,
    pub max_reprompts: u32,
    pub max_turns: u32,
    pub max_silences: u32,
    pub max_failures: u32,
    pub escalate_intents: Vec<String>,
    pub human_intents: Vec<String>,
    pub human_phrases: Vec<String>,
    pub dtmf: Vec<(String, AiDtmfAction)>,
}

impl NodePolicy {
    pub fn resolve(tenant: &TenantPolicy, node: &AiNode) -> Self {
        let mut escalate_intents = tenant.escalate_intents.clone();
        escalate_intents.extend(node.escalate_intents.iter().cloned());
        Self {
            confidence_threshold: node
                .confidence_threshold
                .unwrap_or(tenant.confidence_threshold)
                .clamp(0.0, 1.0),
            max_reprompts: node.max_reprompts.unwrap_or(tenant.max_reprompts),
            max_turns: node.max_turns.unwrap_or(tenant.max_turns).max(1),
            max_silences: node.max_silences.unwrap_or(tenant.max_silences),
            max_failures: tenant.max_failures,
            escalate_intents,
            human_intents: tenant.human_intents.clone(),
            human_phrases: tenant
                .human_phrases
                .iter()
                .map(|p| p.to_lowercase())
                .collect(),
            dtmf: node.dtmf.iter().map(|(k, v)| (k.clone(), *v)).collect(),
        }
    }
}

/// What told us the caller wants a human.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HumanCue {
    Intent(String),
    Phrase(String),
}

/// The rule that decided, with the numbers it compared.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum Rule {
    Confident {
        intent: String,
        confidence: f64,
        threshold: f64,
    },
    /// `used` reprompts of `max` were already spent before this turn.
    LowConfidence {
        intent: Option<String>,
        confidence: f64,
        threshold: f64,
        used: u32,
        max: u32,
    },
    SensitiveIntent {
        intent: String,
        confidence: f64,
    },
    AskedForHuman {
        cue: HumanCue,
    },
    MaxTurns {
        turns: u32,
        max: u32,
    },
    /// The `count`th silence of `max` allowed reprompts.
    NoInput {
        count: u32,
        max: u32,
    },
    /// The `count`th consecutive failure of `max` allowed.
    Failure {
        what: String,
        count: u32,
        max: u32,
    },
    Dtmf {
        digit: String,
        action: AiDtmfAction,
    },
}

/// What to do after a turn.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "action", content = "intent", rename_all = "snake_case")]
pub enum PolicyAction {
    /// Leave the node through this intent's edge.
    Route(String),
    /// Ask again and listen.
    Reprompt,
    /// Say the last reply again and listen.
    Repeat,
    /// Leave through `escalate`.
    Escalate,
    /// Leave through `fallback_dtmf` (the caller asked for the menu).
    Menu,
}

/// One policy decision: a typed record for the call log.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Decision {
    #[serde(flatten)]
    pub rule: Rule,
    pub action: PolicyAction,
}

impl Decision {
    /// The node outcome (edge name) when the decision leaves the node.
    pub fn outcome(&self) -> Option<&str> {
        match &self.action {
            PolicyAction::Route(intent) => Some(intent),
            PolicyAction::Escalate => Some("escalate"),
            PolicyAction::Menu => Some("fallback_dtmf"),
            PolicyAction::Reprompt | PolicyAction::Repeat => None,
        }
    }
}

impl Rule {
    /// A short code for `ai.reason`, the same as the record's `rule` tag.
    pub fn code(&self) -> &'static str {
        match self {
            Rule::Confident { .. } => "confident",
            Rule::LowConfidence { .. } => "low_confidence",
            Rule::SensitiveIntent { .. } => "sensitive_intent",
            Rule::AskedForHuman { .. } => "asked_for_human",
            Rule::MaxTurns { .. } => "max_turns",
            Rule::NoInput { .. } => "no_input",
            Rule::Failure { .. } => "failure",
            Rule::Dtmf { .. } => "dtmf",
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rule::Confident {
                intent,
                confidence,
                threshold,
            } => {
                write!(
                    f,
                    "intent {intent}, confidence {confidence:.2} >= {threshold:.2}"
                )
            }
            Rule::LowConfidence {
                intent,
                confidence,
                threshold,
                used,
                max,
            } => {
                match intent {
                    Some(i) => {
                        write!(f, "intent {i}, confidence {confidence:.2} < {threshold:.2}")?
                    }
                    None => write!(
                        f,
                        "no intent matched, confidence {confidence:.2} < {threshold:.2}"
                    )?,
                }
                if used < max {
                    write!(f, ", reprompt {}/{max}", used + 1)
                } else {
                    write!(f, ", {used}/{max} reprompts used")
                }
            }
            Rule::SensitiveIntent { intent, confidence } => {
                write!(f, "sensitive intent {intent} (confidence {confidence:.2})")
            }
            Rule::AskedForHuman {
                cue: HumanCue::Intent(i),
            } => write!(f, "caller asked for a human (intent {i})"),
            Rule::AskedForHuman {
                cue: HumanCue::Phrase(p),
            } => write!(f, "caller asked for a human (\"{p}\")"),
            Rule::MaxTurns { turns, max } => write!(f, "turn {turns}/{max}, turn limit reached"),
            Rule::NoInput { count, max } if count <= max => {
                write!(f, "no input, silence {count}/{max}")
            }
            Rule::NoInput { count, max } => write!(f, "no input, silence {count} > {max} allowed"),
            Rule::Failure { what, count, max } if count <= max => {
                write!(f, "{what}, failure {count}/{max}")
            }
            Rule::Failure { what, count, max } => {
                write!(f, "{what}, failure {count} > {max} allowed")
            }
            Rule::Dtmf { digit, action } => write!(f, "key {digit} means {action:?}"),
        }
    }
}

impl fmt::Display for PolicyAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolicyAction::Route(i) => write!(f, "route {i}"),
            PolicyAction::Reprompt => f.write_str("reprompt"),
            PolicyAction::Repeat => f.write_str("repeat"),
            PolicyAction::Escalate => f.write_str("escalate"),
            PolicyAction::Menu => f.write_str("menu"),
        }
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} → {}", self.rule, self.action)
    }
}

/// What one caller turn produced, as the policy sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum TurnOutcome<'a> {
    /// A transcript and the intent engine's answer on it.
    Understood {
        transcript: &'a str,
        intent: Option<&'a str>,
        confidence: f64,
    },
    /// The caller said nothing before the no-input timeout.
    NoInput,
    /// The turn produced nothing usable (an empty transcript, an engine
    /// error survived by retrying); `what` says which.
    Failed { what: &'a str },
}

/// The counters of one conversation in one node.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct PolicyState {
    pub turns: u32,
    pub reprompts: u32,
    pub silences: u32,
    pub consecutive_failures: u32,
}

fn contains_phrase(transcript: &str, phrase: &str) -> bool {
    let words: Vec<String> = transcript
        .split(|c: char| !c.is_alphanumeric() && c != '\'')
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect();
    let want: Vec<&str> = phrase.split_whitespace().collect();
    !want.is_empty()
        && words
            .windows(want.len())
            .any(|w| w.iter().zip(&want).all(|(a, b)| a == b))
}

impl PolicyState {
    pub fn new() -> Self {
        Self::default()
    }

    /// Decides after one caller turn.
    pub fn handle_turn(&mut self, policy: &NodePolicy, outcome: TurnOutcome<'_>) -> Decision {
        self.turns += 1;
        match outcome {
            TurnOutcome::Understood {
                transcript,
                intent,
                confidence,
            } => {
                self.consecutive_failures = 0;
                self.understood(policy, transcript, intent, confidence)
            }
            TurnOutcome::NoInput => {
                self.silences += 1;
                if let Some(d) = self.turn_limit(policy) {
                    return d;
                }
                let rule = Rule::NoInput {
                    count: self.silences,
                    max: policy.max_silences,
                };
                if self.silences > policy.max_silences {
                    Decision {
                        rule,
                        action: PolicyAction::Escalate,
                    }
                } else {
                    Decision {
                        rule,
                        action: PolicyAction::Reprompt,
                    }
                }
            }
            TurnOutcome::Failed { what } => {
                self.consecutive_failures += 1;
                if let Some(d) = self.turn_limit(policy) {
                    return d;
                }
                let rule = Rule::Failure {
                    what: what.to_string(),
                    count: self.consecutive_failures,
                    max: policy.max_failures,
                };
                if self.consecutive_failures > policy.max_failures {
                    Decision {
                        rule,
                        action: PolicyAction::Escalate,
                    }
                } else {
                    Decision {
                        rule,
                        action: PolicyAction::Reprompt,
                    }
                }
            }
        }
    }

    fn turn_limit(&self, policy: &NodePolicy) -> Option<Decision> {
        (self.turns >= policy.max_turns).then_some(Decision {
            rule: Rule::MaxTurns {
                turns: self.turns,
                max: policy.max_turns,
            },
            action: PolicyAction::Escalate,
        })
    }

    fn understood(
        &mut self,
        policy: &NodePolicy,
        transcript: &str,
        intent: Option<&str>,
        confidence: f64,
    ) -> Decision {
        let threshold = policy.confidence_threshold;
        let confident = intent.is_some() && confidence >= threshold;
        if let Some(i) = intent.filter(|i| confident && policy.human_intents.iter().any(|h| h == i))
        {
            return Decision {
                rule: Rule::AskedForHuman {
                    cue: HumanCue::Intent(i.to_string()),
                },
                action: PolicyAction::Escalate,
            };
        }
        if let Some(p) = policy
            .human_phrases
            .iter()
            .find(|p| contains_phrase(transcript, p))
        {
            return Decision {
                rule: Rule::AskedForHuman {
                    cue: HumanCue::Phrase(p.clone()),
                },
                action: PolicyAction::Escalate,
            };
        }
        if let Some(i) =
            intent.filter(|i| confident && policy.escalate_intents.iter().any(|e| e == i))
        {
            return Decision {
                rule: Rule::SensitiveIntent {
                    intent: i.to_string(),
                    confidence,
                },
                action: PolicyAction::Escalate,
            };
        }
        if let Some(i) = intent.filter(|_| confident) {
            return Decision {
                rule: Rule::Confident {
                    intent: i.to_string(),
                    confidence,
                    threshold,
                },
                action: PolicyAction::Route(i.to_string()),
            };
        }
        if let Some(d) = self.turn_limit(policy) {
            return d;
        }
        let rule = Rule::LowConfidence {
            intent: intent.map(str::to_string),
            confidence,
            threshold,
            used: self.reprompts,
            max: policy.max_reprompts,
        };
        if self.reprompts >= policy.max_reprompts {
            Decision {
                rule,
                action: PolicyAction::Escalate,
            }
        } else {
            self.reprompts += 1;
            Decision {
                rule,
                action: PolicyAction::Reprompt,
            }
        }
    }

    /// A key the caller pressed; `None` when the node gives it no meaning.
    pub fn handle_dtmf(&mut self, policy: &NodePolicy, digit: char) -> Option<Decision> {
        let key = digit.to_string();
        let action = policy
            .dtmf
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, a)| *a)?;
        let verdict = match action {
            AiDtmfAction::Agent => PolicyAction::Escalate,
            AiDtmfAction::Repeat => PolicyAction::Repeat,
            AiDtmfAction::Menu => PolicyAction::Menu,
        };
        Some(Decision {
            rule: Rule::Dtmf { digit: key, action },
            action: verdict,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn node() -> AiNode {
        AiNode {
            greeting: None,
            system_prompt: None,
            intents: Vec::new(),
            confidence_threshold: None,
            max_reprompts: None,
            escalate_intents: vec!["complaint".into()],
            max_turns: None,
            max_silences: Some(1),
            dtmf: BTreeMap::from([
                ("0".to_string(), AiDtmfAction::Agent),
                ("*".to_string(), AiDtmfAction::Repeat),
                ("9".to_string(), AiDtmfAction::Menu),
            ]),
            voice: None,
            language: None,
        }
    }

    fn understood<'a>(
        transcript: &'a str,
        intent: Option<&'a str>,
        confidence: f64,
    ) -> TurnOutcome<'a> {
        TurnOutcome::Understood {
            transcript,
            intent,
            confidence,
        }
    }

    #[test]
    fn node_settings_override_tenant_defaults() {
        let tenant = TenantPolicy {
            escalate_intents: vec!["fraud".into()],
            ..TenantPolicy::default()
        };
        let mut n = node();
        n.confidence_threshold = Some(0.75);
        n.max_turns = Some(3);
        let p = NodePolicy::resolve(&tenant, &n);
        assert_eq!(p.confidence_threshold, 0.75);
        assert_eq!(p.max_reprompts, 2, "the tenant's");
        assert_eq!(p.max_turns, 3);
        assert_eq!(p.max_silences, 1);
        assert_eq!(
            p.escalate_intents,
            vec!["fraud".to_string(), "complaint".to_string()]
        );
    }

    #[test]
    fn low_confidence_reprompts_up_to_n_then_escalates() {
        let p = NodePolicy::resolve(&TenantPolicy::default(), &node());
        let mut s = PolicyState::new();
        let d1 = s.handle_turn(&p, understood("pay the thing", Some("pay_bill"), 0.41));
        assert_eq!(d1.action, PolicyAction::Reprompt);
        assert_eq!(
            d1.to_string(),
            "intent pay_bill, confidence 0.41 < 0.60, reprompt 1/2 → reprompt"
        );
        let d2 = s.handle_turn(&p, understood("mumble", None, 0.0));
        assert_eq!(
            d2.to_string(),
            "no intent matched, confidence 0.00 < 0.60, reprompt 2/2 → reprompt"
        );
        let d3 = s.handle_turn(&p, understood("the thing", Some("pay_bill"), 0.41));
        assert_eq!(d3.action, PolicyAction::Escalate);
        assert_eq!(d3.outcome(), Some("escalate"));
        assert_eq!(
            d3.to_string(),
            "intent pay_bill, confidence 0.41 < 0.60, 2/2 reprompts used → escalate"
        );
        assert!(matches!(
            d3.rule,
            Rule::LowConfidence {
                used: 2,
                max: 2,
                ..
            }
        ));
    }

    #[test]
    fn a_confident_intent_routes() {
        let p = NodePolicy::resolve(&TenantPolicy::default(), &node());
        let mut s = PolicyState::new();
        let d = s.handle_turn(&p, understood("pay my bill", Some("pay_bill"), 0.6));
        assert_eq!(d.action, PolicyAction::Route("pay_bill".into()));
        assert_eq!(d.outcome(), Some("pay_bill"));
        assert_eq!(
            d.to_string(),
            "intent pay_bill, confidence 0.60 >= 0.60 → route pay_bill"
        );
    }

    #[test]
    fn sensitive_intents_and_human_requests_escalate() {
        let p = NodePolicy::resolve(&TenantPolicy::default(), &node());
        let d = PolicyState::new()
            .handle_turn(&p, understood("I want to complain", Some("complaint"), 0.9));
        assert_eq!(
            d.to_string(),
            "sensitive intent complaint (confidence 0.90) → escalate"
        );
        let d =
            PolicyState::new().handle_turn(&p, understood("speak to an agent", Some("agent"), 0.8));
        assert_eq!(
            d.rule,
            Rule::AskedForHuman {
                cue: HumanCue::Intent("agent".into())
            }
        );
        // A human phrase escalates even when the classifier missed it.
        let d = PolicyState::new().handle_turn(
            &p,
            understood("Can I talk to a real person?", Some("pay_bill"), 0.3),
        );
        assert_eq!(
            d.to_string(),
            "caller asked for a human (\"real person\") → escalate"
        );
        // "agents" is not "agent"; no false alarm on a substring.
        let d = PolicyState::new().handle_turn(
            &p,
            understood("my travel agents bill", Some("pay_bill"), 0.9),
        );
        assert_eq!(d.action, PolicyAction::Route("pay_bill".into()));
    }

    #[test]
    fn silences_reprompt_then_escalate() {
        let p = NodePolicy::resolve(&TenantPolicy::default(), &node());
        let mut s = PolicyState::new();
        let d = s.handle_turn(&p, TurnOutcome::NoInput);
        assert_eq!(d.to_string(), "no input, silence 1/1 → reprompt");
        let d = s.handle_turn(&p, TurnOutcome::NoInput);
        assert_eq!(d.to_string(), "no input, silence 2 > 1 allowed → escalate");
    }

    #[test]
    fn consecutive_failures_escalate_and_reset_on_success() {
        let p = NodePolicy::resolve(&TenantPolicy::default(), &node());
        let mut s = PolicyState::new();
        assert_eq!(
            s.handle_turn(
                &p,
                TurnOutcome::Failed {
                    what: "empty transcript"
                }
            )
            .action,
            PolicyAction::Reprompt
        );
        assert_eq!(
            s.handle_turn(
                &p,
                TurnOutcome::Failed {
                    what: "empty transcript"
                }
            )
            .action,
            PolicyAction::Reprompt
        );
        s.handle_turn(&p, understood("hmm", None, 0.0));
        assert_eq!(s.consecutive_failures, 0);
        s.handle_turn(&p, TurnOutcome::Failed { what: "stt error" });
        s.handle_turn(&p, TurnOutcome::Failed { what: "stt error" });
        let d = s.handle_turn(&p, TurnOutcome::Failed { what: "stt error" });
        assert_eq!(d.to_string(), "stt error, failure 3 > 2 allowed → escalate");
    }

    #[test]
    fn the_turn_limit_escalates_but_a_confident_last_turn_still_routes() {
        let mut n = node();
        n.max_turns = Some(2);
        n.max_reprompts = Some(5);
        let p = NodePolicy::resolve(&TenantPolicy::default(), &n);
        let mut s = PolicyState::new();
        s.handle_turn(&p, understood("eh", None, 0.0));
        let last = s
            .clone()
            .handle_turn(&p, understood("pay my bill", Some("pay_bill"), 0.9));
        assert_eq!(last.action, PolicyAction::Route("pay_bill".into()));
        let d = s.handle_turn(&p, understood("eh", None, 0.0));
        assert_eq!(d.to_string(), "turn 2/2, turn limit reached → escalate");
    }

    #[test]
    fn dtmf_keys_map_to_actions() {
        let p = NodePolicy::resolve(&TenantPolicy::default(), &node());
        let mut s = PolicyState::new();
        assert_eq!(
            s.handle_dtmf(&p, '0').map(|d| d.action),
            Some(PolicyAction::Escalate)
        );
        assert_eq!(
            s.handle_dtmf(&p, '*').map(|d| d.action),
            Some(PolicyAction::Repeat)
        );
        let menu = s.handle_dtmf(&p, '9').expect("mapped");
        assert_eq!(menu.outcome(), Some("fallback_dtmf"));
        assert_eq!(menu.to_string(), "key 9 means Menu → menu");
        assert!(s.handle_dtmf(&p, '5').is_none());
    }

    #[test]
    fn decisions_serialize_as_records() {
        let d = Decision {
            rule: Rule::LowConfidence {
                intent: None,
                confidence: 0.25,
                threshold: 0.6,
                used: 1,
                max: 2,
            },
            action: PolicyAction::Reprompt,
        };
        let v = serde_json::to_value(&d).expect("json");
        assert_eq!(v["rule"], "low_confidence");
        assert_eq!(v["used"], 1);
        assert_eq!(v["action"]["action"], "reprompt");
    }
}
