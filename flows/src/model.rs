//! The flow document.
//!
//! A flow is JSON: an `id`, a `name`, an `entry` node id, and `nodes` keyed
//! by id. Every node has a `type`, its typed parameters, an optional canvas
//! `position`, and `edges`: one named outgoing edge per outcome, each naming
//! the next node. Linear nodes (`play`, `say`, `set`, `gather`) have the one
//! outcome `next`.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A node id: letters, digits, `_` and `-`.
pub type NodeId = String;

/// The outcome every linear node has.
pub const NEXT: &str = "next";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Flow {
    /// Stable id of the flow within its tenant.
    pub id: String,
    /// A name for people.
    pub name: String,
    /// The node a call starts on.
    pub entry: NodeId,
    pub nodes: BTreeMap<NodeId, Node>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Node {
    #[serde(flatten)]
    pub kind: NodeKind,
    /// Where the canvas draws the node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<Position>,
    /// A label for the canvas; the id is shown when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Outcome name → next node id.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub edges: BTreeMap<String, NodeId>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Position {
    pub x: f64,
    pub y: f64,
}

/// The node types and their parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum NodeKind {
    Play(PlayNode),
    Say(SayNode),
    Menu(MenuNode),
    Gather(GatherNode),
    Http(HttpNode),
    Condition(ConditionNode),
    Set(SetNode),
    Ai(AiNode),
    Transfer(TransferNode),
    Hangup(HangupNode),
}

impl NodeKind {
    /// The `type` name as written in JSON.
    pub fn type_name(&self) -> &'static str {
        match self {
            NodeKind::Play(_) => "play",
            NodeKind::Say(_) => "say",
            NodeKind::Menu(_) => "menu",
            NodeKind::Gather(_) => "gather",
            NodeKind::Http(_) => "http",
            NodeKind::Condition(_) => "condition",
            NodeKind::Set(_) => "set",
            NodeKind::Ai(_) => "ai",
            NodeKind::Transfer(_) => "transfer",
            NodeKind::Hangup(_) => "hangup",
        }
    }

    /// Whether the node waits for the caller (digits or speech). A cycle
    /// through the graph must contain one, or it would loop forever.
    pub fn waits_for_caller(&self) -> bool {
        matches!(
            self,
            NodeKind::Menu(_) | NodeKind::Gather(_) | NodeKind::Ai(_)
        )
    }

    /// The outcomes this node can take, given its parameters, and whether
    /// an edge is required for each.
    pub fn outcomes(&self) -> Vec<Outcome> {
        let req = |name: &str| Outcome {
            name: name.to_string(),
            required: true,
        };
        let opt = |name: &str| Outcome {
            name: name.to_string(),
            required: false,
        };
        match self {
            NodeKind::Play(_) | NodeKind::Say(_) | NodeKind::Set(_) => vec![req(NEXT)],
            NodeKind::Gather(_) => vec![req(NEXT), opt("no_input")],
            NodeKind::Menu(m) => {
                let mut v: Vec<Outcome> = m.options.iter().map(|d| req(d)).collect();
                v.push(opt("no_input"));
                v.push(opt("no_match"));
                v
            }
            NodeKind::Http(_) => vec![req("ok"), req("error"), opt("timeout")],
            NodeKind::Condition(c) => {
                let mut v: Vec<Outcome> = c.branches.iter().map(|b| req(&b.outcome)).collect();
                v.push(req("else"));
                v
            }
            NodeKind::Ai(a) => {
                let mut v: Vec<Outcome> = a.intents.iter().map(|i| opt(&i.name)).collect();
                v.extend([
                    req("escalate"),
                    opt("fallback_dtmf"),
                    opt("fallback_agent"),
                    req("error"),
                ]);
                v
            }
            NodeKind::Transfer(_) => vec![req("failed"), opt("no_answer")],
            NodeKind::Hangup(_) => vec![],
        }
    }
}

/// One outcome of a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub name: String,
    pub required: bool,
}

/// Something to play: an audio file, a URL, or TTS text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Prompt {
    /// TTS text, with `${var}` templates.
    Say(String),
    /// An audio file in the tenant's prompt folder, or an http(s) URL.
    Play(String),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlayNode {
    /// An audio file in the tenant's prompt folder, or an http(s) URL.
    pub audio: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SayNode {
    /// Text with `${var}` templates.
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voice: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
}

fn default_timeout_ms() -> u64 {
    5000
}
fn default_inter_digit_ms() -> u64 {
    3000
}
fn default_retries() -> u32 {
    2
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MenuNode {
    pub prompt: Prompt,
    /// The valid choices: each one a digit string such as `"1"` or `"0"`
    /// (or several digits, such as `"10"`), with an edge of the same name.
    pub options: Vec<String>,
    /// How long to wait for the first digit.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// How long to wait between digits of a multi-digit choice.
    #[serde(default = "default_inter_digit_ms")]
    pub inter_digit_timeout_ms: u64,
    /// Reprompts after no input or a wrong digit before taking `no_input`
    /// or `no_match`.
    #[serde(default = "default_retries")]
    pub max_retries: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_input_prompt: Option<Prompt>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_match_prompt: Option<Prompt>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GatherNode {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<Prompt>,
    /// The variable the digits go into.
    pub variable: String,
    /// Stop after this many digits.
    pub max_digits: u32,
    #[serde(default)]
    pub min_digits: u32,
    /// A key that ends input early, usually `#`; it is not stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terminator: Option<char>,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    #[serde(default = "default_inter_digit_ms")]
    pub inter_digit_timeout_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

fn default_http_timeout_ms() -> u64 {
    3000
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpNode {
    pub method: HttpMethod,
    /// URL with `${var}` templates; its host must be on the tenant's
    /// allow-list.
    pub url: String,
    /// Header values may use templates.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// A JSON body template; values are JSON-escaped when rendered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    #[serde(default = "default_http_timeout_ms")]
    pub timeout_ms: u64,
    /// Variable → JSON pointer into the reply, for example
    /// `"balance": "/account/balance"`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub map: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Branch {
    /// The outcome (edge name) taken when `when` holds.
    pub outcome: String,
    /// An expression such as `balance > 100 && tier == "gold"`.
    pub when: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConditionNode {
    /// Checked in order; the first that holds wins, else `else`.
    pub branches: Vec<Branch>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SetNode {
    /// Variable → value; string values may use templates.
    pub values: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Intent {
    /// Also the name of the edge taken when the intent resolves.
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Example phrases for the classifier.
    #[serde(default)]
    pub examples: Vec<String>,
    /// Slots to extract, such as `amount` or `date`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub slots: Vec<Slot>,
    /// A reply spoken when the intent resolves, with templates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SlotKind {
    Digits,
    Amount,
    Date,
    YesNo,
    Text,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Slot {
    pub name: String,
    pub kind: SlotKind,
}

/// The AI node's parameters. Unset thresholds take the tenant's policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AiNode {
    /// What the assistant says first, with templates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub greeting: Option<String>,
    /// Instructions for an LLM engine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_prompt: Option<String>,
    pub intents: Vec<Intent>,
    /// Below this confidence the caller is reprompted, then escalated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence_threshold: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_reprompts: Option<u32>,
    /// Intents that go straight to an agent, such as `complaint`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub escalate_intents: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_turns: Option<u32>,
    /// No-input reprompts before escalating.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_silences: Option<u32>,
    /// Keys with a meaning during the conversation, for example
    /// `"0": "agent"`, `"*": "repeat"`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub dtmf: BTreeMap<String, AiDtmfAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voice: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AiDtmfAction {
    /// Escalate to an agent.
    Agent,
    /// Say the last reply again.
    Repeat,
    /// Leave through `fallback_dtmf`.
    Menu,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TransferMode {
    Blind,
    Bridged,
}

fn default_transfer_timeout_ms() -> u64 {
    30_000
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TransferNode {
    pub mode: TransferMode,
    /// A `sip:`/`sips:` URI or a `tel:` URI, with templates.
    pub target: String,
    /// Extra context headers; names must start with `X-`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    #[serde(default = "default_transfer_timeout_ms")]
    pub timeout_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HangupNode {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The built-in variables every call starts with.
pub const BUILTIN_VARIABLES: &[&str] = &[
    "caller_id",
    "did",
    "call_id",
    "tenant",
    "time",
    "hour",
    "weekday",
];

/// The JSON Schema of the flow document, served at `/v1/schema/flow.json`.
pub fn flow_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(Flow)).unwrap_or(serde_json::Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_flow_document() {
        let json = r#"{
          "id": "support", "name": "Support", "entry": "hello",
          "nodes": {
            "hello": {"type": "say", "text": "Hello ${caller_id}", "position": {"x": 10, "y": 20},
                      "edges": {"next": "menu"}},
            "menu": {"type": "menu", "prompt": {"say": "Press 1 or 2"}, "options": ["1", "2"],
                     "edges": {"1": "bye", "2": "bye"}},
            "bye": {"type": "hangup"}
          }
        }"#;
        let flow: Flow = serde_json::from_str(json).expect("reads");
        assert_eq!(flow.nodes.len(), 3);
        assert_eq!(flow.nodes["menu"].kind.type_name(), "menu");
        let menu_outcomes: Vec<_> = flow.nodes["menu"]
            .kind
            .outcomes()
            .into_iter()
            .map(|o| o.name)
            .collect();
        assert_eq!(menu_outcomes, ["1", "2", "no_input", "no_match"]);
        let back = serde_json::to_value(&flow).expect("writes");
        let again: Flow = serde_json::from_value(back).expect("reads again");
        assert_eq!(again, flow);
    }

    #[test]
    fn unknown_parameters_are_refused() {
        let json = r#"{"id":"f","name":"f","entry":"a","nodes":{"a":{"type":"say","txt":"typo"}}}"#;
        assert!(serde_json::from_str::<Flow>(json).is_err());
    }

    #[test]
    fn schema_names_every_node_type() {
        let schema = flow_schema().to_string();
        for t in [
            "play",
            "say",
            "menu",
            "gather",
            "http",
            "condition",
            "set",
            "ai",
            "transfer",
            "hangup",
        ] {
            assert!(schema.contains(&format!("\"{t}\"")), "schema lacks {t}");
        }
    }
}
