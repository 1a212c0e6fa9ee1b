//! The flow interpreter: a sans-IO state machine that runs one call.
//!
//! The driver asks [`Interpreter::poll_action`] what to do (say this, collect
//! digits, call this URL, transfer, hang up), carries it out on the call,
//! and reports the result through [`Interpreter::handle_result`] with the
//! time it finished. The interpreter never touches the call, the network
//! or the clock. Nodes that need nothing from the call (`set`,
//! `condition`) run inside `handle_result` without producing an action.
//!
//! Failure is never dead air: an action that fails, an outcome with no
//! edge, or a runaway loop plays the tenant's apology and takes the
//! tenant's fallback (an agent or hangup).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;

use crate::expr::Condition;
use crate::model::{
    AiNode, Flow, HttpMethod, MenuNode, Node, NodeKind, Prompt, TransferMode, NEXT,
};
use crate::template::Template;

/// Steps that need nothing from the call, in a row, before the interpreter
/// decides the flow is looping and takes the fallback. Validation refuses
/// such loops; this is the guard for what validation cannot see.
const MAX_IMMEDIATE_STEPS: u32 = 256;

/// The facts a call starts with; they become the built-in variables.
#[derive(Debug, Clone)]
pub struct CallContext {
    pub caller_id: String,
    pub did: String,
    pub call_id: String,
    pub tenant: String,
    /// The local time the call started, RFC 3339.
    pub time: String,
    /// The local hour, 0–23, for opening-hours branches.
    pub hour: u8,
    /// `mon` … `sun`.
    pub weekday: String,
}

/// What to do when something unexpected happens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct FallbackPolicy {
    /// Spoken first.
    pub apology: String,
    pub action: FallbackAction,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FallbackAction {
    /// Transfer to this agent URI.
    Agent {
        target: String,
        mode: TransferMode,
    },
    Hangup,
}

impl Default for FallbackPolicy {
    fn default() -> Self {
        Self {
            apology: "Sorry, something went wrong on our side. Please call again later.".into(),
            action: FallbackAction::Hangup,
        }
    }
}

/// Something to play while collecting digits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PromptAction {
    Say {
        text: String,
        voice: Option<String>,
        language: Option<String>,
    },
    Play {
        audio: String,
    },
}

/// What the driver must do next.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Speak text; answer [`ActionResult::Done`].
    Say {
        text: String,
        voice: Option<String>,
        language: Option<String>,
    },
    /// Play an audio file or URL; answer [`ActionResult::Done`].
    Play { audio: String },
    /// Play the prompt (if any; stop it at the first key) and collect keys
    /// until `max_digits`, the terminator, or a timeout. Answer
    /// [`ActionResult::Digits`] or [`ActionResult::NoInput`].
    Collect {
        prompt: Option<PromptAction>,
        max_digits: u32,
        terminator: Option<char>,
        first_digit_timeout: Duration,
        inter_digit_timeout: Duration,
    },
    /// Make an HTTP request; answer [`ActionResult::HttpResponse`] or
    /// [`ActionResult::HttpFailed`].
    Http(HttpRequest),
    /// Transfer the caller; answer [`ActionResult::Transferred`] or
    /// [`ActionResult::TransferFailed`].
    Transfer {
        mode: TransferMode,
        target: String,
        headers: Vec<(String, String)>,
        timeout: Duration,
    },
    /// Run the AI node; answer [`ActionResult::Ai`].
    Ai {
        node: String,
        params: Box<AiNode>,
        variables: BTreeMap<String, Value>,
    },
    /// End the call; answer [`ActionResult::Done`].
    Hangup { reason: String },
}

#[derive(Debug, Clone, PartialEq)]
pub struct HttpRequest {
    pub method: HttpMethod,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<String>,
    pub timeout: Duration,
}

/// How an action ended.
#[derive(Debug, Clone, PartialEq)]
pub enum ActionResult {
    Done,
    Digits {
        digits: String,
    },
    NoInput,
    HttpResponse {
        status: u16,
        body: Option<Value>,
    },
    HttpFailed {
        timed_out: bool,
        reason: String,
    },
    /// The caller left this call through the transfer.
    Transferred,
    TransferFailed {
        no_answer: bool,
        reason: String,
    },
    /// The AI node ended on `outcome` (an intent, `escalate`,
    /// `fallback_dtmf`, `fallback_agent` or `error`), with the variables it
    /// sets (`ai.intent`, `ai.confidence`, slots …) and the records of
    /// what it decided and measured, for the call timeline.
    Ai {
        outcome: String,
        variables: BTreeMap<String, Value>,
        records: Vec<AiRecord>,
    },
    /// The action could not be carried out (speech synthesis failed, a
    /// file is missing, …).
    Failed {
        reason: String,
    },
    /// The caller hung up during the action.
    CallerHungUp,
}

/// The outcome of an [`ActionResult::Ai`] when the caller hung up during
/// the AI node: its variables and records are kept, then the call ends as
/// [`ActionResult::CallerHungUp`] does.
pub const AI_CALLER_HUNG_UP: &str = "caller_hung_up";

/// One thing an AI node decided or measured, for the call timeline: a
/// policy decision ("confidence 0.41 < 0.60, 2/2 reprompts used →
/// escalate"), a fallback and its reason, a filler, a barge-in, a turn's
/// latency breakdown.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AiRecord {
    /// Milliseconds since the node started.
    pub at_ms: u64,
    /// `decision`, `fallback`, `filler`, `barge_in`, `turn`, `dtmf`,
    /// `transcript`, `admission`, `policy`, `hangup`, `exit`.
    pub kind: String,
    /// The record for people.
    pub text: String,
    /// The record's numbers and inputs, as data.
    #[serde(skip_serializing_if = "Value::is_null")]
    pub detail: Value,
}

/// How the call left the flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Disposition {
    /// A hangup node ended the call.
    Completed,
    CallerHungUp,
    Transferred,
    /// The tenant fallback ended the call.
    Fallback,
}

/// One node visit, for the call's timeline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    pub node: String,
    #[serde(rename = "type")]
    pub node_type: &'static str,
    /// Milliseconds since the call entered the flow.
    pub entered_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exited_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub changed: BTreeMap<String, Value>,
    /// What happened, for people: "digits 7", "HTTP 200", "retry 1/2".
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// An AI node's decisions and measurements.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ai: Vec<AiRecord>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reprompt {
    NoInput,
    NoMatch,
}

#[derive(Debug, Clone, PartialEq)]
enum Phase {
    /// Waiting for the result of the action issued for `node`.
    AtNode {
        node: String,
        retries: u32,
    },
    /// Saying the apology; the fallback action follows.
    Apology,
    /// Waiting for the fallback transfer or hangup.
    FallbackAction {
        hanging_up: bool,
    },
    /// Waiting for a hangup node's hangup to finish.
    HangingUp,
    Finished(Disposition),
}

/// Runs one call through one version of a flow.
pub struct Interpreter {
    flow: Arc<Flow>,
    fallback: FallbackPolicy,
    vars: BTreeMap<String, Value>,
    phase: Phase,
    pending: Option<Action>,
    timeline: Vec<Step>,
    started: Instant,
}

impl Interpreter {
    /// Starts a call at the flow's entry node.
    pub fn new(
        flow: Arc<Flow>,
        call: &CallContext,
        fallback: FallbackPolicy,
        now: Instant,
    ) -> Self {
        let vars = BTreeMap::from([
            ("caller_id".to_string(), Value::from(call.caller_id.clone())),
            ("did".to_string(), Value::from(call.did.clone())),
            ("call_id".to_string(), Value::from(call.call_id.clone())),
            ("tenant".to_string(), Value::from(call.tenant.clone())),
            ("time".to_string(), Value::from(call.time.clone())),
            ("hour".to_string(), Value::from(call.hour)),
            ("weekday".to_string(), Value::from(call.weekday.clone())),
        ]);
        let entry = flow.entry.clone();
        let mut me = Self {
            flow,
            fallback,
            vars,
            phase: Phase::Finished(Disposition::Fallback),
            pending: None,
            timeline: Vec::new(),
            started: now,
        };
        me.enter(entry, now, 0);
        me
    }

    /// The action to carry out next, once. `None` while an action is in
    /// progress or after the call has left the flow.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.pending.take()
    }

    /// The disposition, once the call has left the flow.
    pub fn finished(&self) -> Option<Disposition> {
        match self.phase {
            Phase::Finished(d) => Some(d),
            _ => None,
        }
    }

    pub fn timeline(&self) -> &[Step] {
        &self.timeline
    }

    pub fn variables(&self) -> &BTreeMap<String, Value> {
        &self.vars
    }

    /// The node the call is on, if it is on one.
    pub fn current_node(&self) -> Option<&str> {
        match &self.phase {
            Phase::AtNode { node, .. } => Some(node),
            _ => None,
        }
    }

    fn ms(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.started).as_millis()).unwrap_or(u64::MAX)
    }

    fn node(&self, id: &str) -> Option<Node> {
        self.flow.nodes.get(id).cloned()
    }

    fn note(&mut self, text: impl Into<String>) {
        if let Some(step) = self.timeline.last_mut() {
            step.notes.push(text.into());
        }
    }

    fn set_var(&mut self, name: &str, value: Value) {
        if let Some(step) = self.timeline.last_mut() {
            step.changed.insert(name.to_string(), value.clone());
        }
        self.vars.insert(name.to_string(), value);
    }

    fn render(&self, text: &str) -> String {
        Template::parse(text)
            .map(|t| t.render(&self.vars))
            .unwrap_or_else(|_| text.to_string())
    }

    fn prompt_action(&self, prompt: &Prompt) -> PromptAction {
        match prompt {
            Prompt::Say(text) => PromptAction::Say {
                text: self.render(text),
                voice: None,
                language: None,
            },
            Prompt::Play(audio) => PromptAction::Play {
                audio: audio.clone(),
            },
        }
    }

    /// Records the exit of the current step.
    fn exit(&mut self, outcome: &str, now: Instant) {
        let ms = self.ms(now);
        if let Some(step) = self.timeline.last_mut() {
            if step.exited_ms.is_none() {
                step.exited_ms = Some(ms);
                step.outcome = Some(outcome.to_string());
            }
        }
    }

    /// Leaves the current node on `outcome`.
    fn follow(&mut self, node: &Node, outcome: &str, now: Instant, immediate: u32) {
        self.exit(outcome, now);
        match node.edges.get(outcome) {
            Some(next) => self.enter(next.clone(), now, immediate),
            None => self.take_fallback(&format!("no step is connected to \"{outcome}\""), now),
        }
    }

    /// Enters node `id` and runs it until it needs the call.
    fn enter(&mut self, id: String, now: Instant, immediate: u32) {
        let Some(node) = self.node(&id) else {
            self.take_fallback(&format!("step \"{id}\" does not exist"), now);
            return;
        };
        if immediate >= MAX_IMMEDIATE_STEPS {
            self.take_fallback("the flow looped without waiting for the caller", now);
            return;
        }
        self.timeline.push(Step {
            node: id.clone(),
            node_type: node.kind.type_name(),
            entered_ms: self.ms(now),
            exited_ms: None,
            outcome: None,
            changed: BTreeMap::new(),
            notes: Vec::new(),
            ai: Vec::new(),
        });
        self.phase = Phase::AtNode {
            node: id.clone(),
            retries: 0,
        };
        let action = match &node.kind {
            NodeKind::Set(s) => {
                for (k, v) in &s.values {
                    let value = match v {
                        Value::String(text) => Value::String(self.render(text)),
                        other => other.clone(),
                    };
                    self.set_var(k, value);
                }
                return self.follow(&node, NEXT, now, immediate + 1);
            }
            NodeKind::Condition(c) => {
                let mut outcome = "else".to_string();
                for b in &c.branches {
                    match Condition::parse(&b.when).and_then(|cond| cond.eval(&self.vars)) {
                        Ok(true) => {
                            outcome = b.outcome.clone();
                            break;
                        }
                        Ok(false) => {}
                        Err(e) => self.note(format!("branch \"{}\" not taken: {e}", b.outcome)),
                    }
                }
                return self.follow(&node, &outcome, now, immediate + 1);
            }
            NodeKind::Say(s) => Action::Say {
                text: self.render(&s.text),
                voice: s.voice.clone(),
                language: s.language.clone(),
            },
            NodeKind::Play(p) => Action::Play {
                audio: p.audio.clone(),
            },
            NodeKind::Menu(m) => self.menu_action(m, None),
            NodeKind::Gather(g) => Action::Collect {
                prompt: g.prompt.as_ref().map(|p| self.prompt_action(p)),
                max_digits: g.max_digits,
                terminator: g.terminator,
                first_digit_timeout: Duration::from_millis(g.timeout_ms),
                inter_digit_timeout: Duration::from_millis(g.inter_digit_timeout_ms),
            },
            NodeKind::Http(h) => {
                let body = h.body.as_ref().map(|b| {
                    Template::parse(b)
                        .map(|t| t.render_json_escaped(&self.vars))
                        .unwrap_or_else(|_| b.clone())
                });
                Action::Http(HttpRequest {
                    method: h.method,
                    url: self.render(&h.url),
                    headers: h
                        .headers
                        .iter()
                        .map(|(k, v)| (k.clone(), self.render(v)))
                        .collect(),
                    body,
                    timeout: Duration::from_millis(h.timeout_ms),
                })
            }
            NodeKind::Transfer(t) => Action::Transfer {
                mode: t.mode,
                target: self.render(&t.target),
                headers: t
                    .headers
                    .iter()
                    .map(|(k, v)| (k.clone(), self.render(v)))
                    .collect(),
                timeout: Duration::from_millis(t.timeout_ms),
            },
            NodeKind::Ai(a) => Action::Ai {
                node: id.clone(),
                params: Box::new(a.clone()),
                variables: self.vars.clone(),
            },
            NodeKind::Hangup(h) => {
                self.phase = Phase::HangingUp;
                Action::Hangup {
                    reason: h.reason.clone().unwrap_or_else(|| "flow ended".into()),
                }
            }
        };
        self.pending = Some(action);
    }

    fn menu_action(&self, m: &MenuNode, last: Option<Reprompt>) -> Action {
        let prompt = match last {
            Some(Reprompt::NoInput) => m.no_input_prompt.as_ref().unwrap_or(&m.prompt),
            Some(Reprompt::NoMatch) => m.no_match_prompt.as_ref().unwrap_or(&m.prompt),
            None => &m.prompt,
        };
        Action::Collect {
            prompt: Some(self.prompt_action(prompt)),
            max_digits: m.options.iter().map(|o| o.len() as u32).max().unwrap_or(1),
            terminator: None,
            first_digit_timeout: Duration::from_millis(m.timeout_ms),
            inter_digit_timeout: Duration::from_millis(m.inter_digit_timeout_ms),
        }
    }

    /// Reports how the pending action ended.
    pub fn handle_result(&mut self, now: Instant, result: ActionResult) {
        let result = match result {
            ActionResult::Ai {
                outcome,
                variables,
                records,
            } if outcome == AI_CALLER_HUNG_UP => {
                self.absorb_ai(variables, records);
                ActionResult::CallerHungUp
            }
            other => other,
        };
        if result == ActionResult::CallerHungUp {
            self.exit("caller_hung_up", now);
            self.phase = Phase::Finished(Disposition::CallerHungUp);
            self.pending = None;
            return;
        }
        match self.phase.clone() {
            Phase::Finished(_) => {}
            Phase::HangingUp => {
                self.exit("hangup", now);
                self.phase = Phase::Finished(Disposition::Completed);
            }
            Phase::Apology => self.fallback_action(now),
            Phase::FallbackAction { hanging_up } => {
                if let (
                    ActionResult::TransferFailed { reason, .. } | ActionResult::Failed { reason },
                    false,
                ) = (&result, hanging_up)
                {
                    self.note(format!("fallback transfer failed: {reason}"));
                    self.phase = Phase::FallbackAction { hanging_up: true };
                    self.pending = Some(Action::Hangup {
                        reason: "fallback transfer failed".into(),
                    });
                    return;
                }
                self.exit(if hanging_up { "hangup" } else { "transferred" }, now);
                self.phase = Phase::Finished(if matches!(result, ActionResult::Transferred) {
                    Disposition::Transferred
                } else {
                    Disposition::Fallback
                });
            }
            Phase::AtNode { node: id, retries } => {
                let Some(node) = self.node(&id) else {
                    return self.take_fallback(&format!("step \"{id}\" disappeared"), now);
                };
                self.node_result(&id, &node, retries, result, now);
            }
        }
    }

    fn node_result(
        &mut self,
        id: &str,
        node: &Node,
        retries: u32,
        result: ActionResult,
        now: Instant,
    ) {
        if let ActionResult::Failed { reason } = &result {
            return self.take_fallback(reason, now);
        }
        match (&node.kind, result) {
            (NodeKind::Say(_) | NodeKind::Play(_), ActionResult::Done) => {
                self.follow(node, NEXT, now, 0)
            }
            (NodeKind::Menu(m), r @ (ActionResult::Digits { .. } | ActionResult::NoInput)) => {
                let miss = match r {
                    ActionResult::Digits { digits } if m.options.contains(&digits) => {
                        self.note(format!("pressed {digits}"));
                        self.set_var("menu.choice", Value::from(digits.clone()));
                        return self.follow(node, &digits, now, 0);
                    }
                    ActionResult::Digits { digits } => {
                        self.note(format!("pressed {digits}: not a choice"));
                        Reprompt::NoMatch
                    }
                    _ => {
                        self.note("no input");
                        Reprompt::NoInput
                    }
                };
                if retries < m.max_retries {
                    self.note(format!("retry {}/{}", retries + 1, m.max_retries));
                    self.phase = Phase::AtNode {
                        node: id.to_string(),
                        retries: retries + 1,
                    };
                    self.pending = Some(self.menu_action(m, Some(miss)));
                } else {
                    self.follow(
                        node,
                        if miss == Reprompt::NoInput {
                            "no_input"
                        } else {
                            "no_match"
                        },
                        now,
                        0,
                    );
                }
            }
            (NodeKind::Gather(g), ActionResult::Digits { digits })
                if digits.len() as u32 >= g.min_digits.max(1) =>
            {
                self.note(format!("{} digits", digits.len()));
                self.set_var(&g.variable, Value::from(digits));
                self.follow(node, NEXT, now, 0);
            }
            (NodeKind::Gather(g), ActionResult::Digits { .. } | ActionResult::NoInput) => {
                if node.edges.contains_key("no_input") {
                    self.follow(node, "no_input", now, 0);
                } else {
                    self.set_var(&g.variable, Value::from(""));
                    self.follow(node, NEXT, now, 0);
                }
            }
            (NodeKind::Http(h), ActionResult::HttpResponse { status, body }) => {
                self.note(format!("HTTP {status}"));
                self.set_var("http.status", Value::from(status));
                if (200..300).contains(&status) {
                    for (var, pointer) in &h.map {
                        let value = body
                            .as_ref()
                            .and_then(|b| b.pointer(pointer))
                            .cloned()
                            .unwrap_or(Value::Null);
                        self.set_var(var, value);
                    }
                    self.follow(node, "ok", now, 0);
                } else {
                    self.follow(node, "error", now, 0);
                }
            }
            (NodeKind::Http(_), ActionResult::HttpFailed { timed_out, reason }) => {
                self.note(reason);
                self.set_var("http.status", Value::from(0));
                let outcome = if timed_out && node.edges.contains_key("timeout") {
                    "timeout"
                } else {
                    "error"
                };
                self.follow(node, outcome, now, 0);
            }
            (NodeKind::Transfer(_), ActionResult::Transferred) => {
                self.set_var("transfer.status", Value::from("transferred"));
                self.exit("transferred", now);
                self.phase = Phase::Finished(Disposition::Transferred);
            }
            (NodeKind::Transfer(_), ActionResult::TransferFailed { no_answer, reason }) => {
                self.note(reason);
                self.set_var(
                    "transfer.status",
                    Value::from(if no_answer { "no_answer" } else { "failed" }),
                );
                let outcome = if no_answer && node.edges.contains_key("no_answer") {
                    "no_answer"
                } else {
                    "failed"
                };
                self.follow(node, outcome, now, 0);
            }
            (
                NodeKind::Ai(_),
                ActionResult::Ai {
                    outcome,
                    variables,
                    records,
                },
            ) => {
                self.absorb_ai(variables, records);
                let outcome = match outcome.as_str() {
                    "fallback_dtmf" if !node.edges.contains_key("fallback_dtmf") => {
                        "fallback_agent".to_string()
                    }
                    "fallback_agent" if !node.edges.contains_key("fallback_agent") => {
                        "fallback_dtmf".to_string()
                    }
                    _ => outcome,
                };
                self.follow(node, &outcome, now, 0);
            }
            (kind, other) => {
                let reason = format!(
                    "unexpected result {other:?} for a {} step",
                    kind.type_name()
                );
                self.take_fallback(&reason, now);
            }
        }
    }

    /// An AI node's variables, and its records on its timeline step.
    fn absorb_ai(&mut self, variables: BTreeMap<String, Value>, records: Vec<AiRecord>) {
        for (k, v) in variables {
            self.set_var(&k, v);
        }
        if let Some(step) = self.timeline.last_mut() {
            step.ai.extend(records);
        }
    }

    /// Plays the apology and runs the tenant's fallback.
    fn take_fallback(&mut self, reason: &str, now: Instant) {
        tracing::warn!(reason, "flow fallback");
        self.exit("fallback", now);
        self.timeline.push(Step {
            node: "(fallback)".into(),
            node_type: "fallback",
            entered_ms: self.ms(now),
            exited_ms: None,
            outcome: None,
            changed: BTreeMap::new(),
            notes: vec![reason.to_string()],
            ai: Vec::new(),
        });
        if self.fallback.apology.trim().is_empty() {
            self.fallback_action(now);
        } else {
            self.phase = Phase::Apology;
            self.pending = Some(Action::Say {
                text: self.fallback.apology.clone(),
                voice: None,
                language: None,
            });
        }
    }

    fn fallback_action(&mut self, _now: Instant) {
        match self.fallback.action.clone() {
            FallbackAction::Agent { target, mode } => {
                self.phase = Phase::FallbackAction { hanging_up: false };
                self.pending = Some(Action::Transfer {
                    mode,
                    target,
                    headers: Vec::new(),
                    timeout: Duration::from_secs(30),
                });
            }
            FallbackAction::Hangup => {
                self.phase = Phase::FallbackAction { hanging_up: true };
                self.pending = Some(Action::Hangup {
                    reason: "fallback".into(),
                });
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
