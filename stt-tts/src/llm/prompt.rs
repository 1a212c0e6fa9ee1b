//! What voxgate asks an LLM and how its answer is read back: pure
//! functions over JSON, shared by the client and the simulator.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::nlu::slots::extract;
use crate::nlu::{DateValue, IntentResult, NluRequest, SlotKind, SlotValue, Speaker};

/// The name the model uses when no intent fits.
pub const NO_INTENT: &str = "none";
/// The function name in tool-call mode.
pub const TOOL_NAME: &str = "classify_intent";

/// How the model is made to answer in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StructuredMode {
    /// `response_format: {type: json_schema}` (OpenAI, vLLM, llama.cpp,
    /// recent Ollama).
    JsonSchema,
    /// A forced tool call whose arguments are the answer.
    ToolCall,
}

/// Every slot name of the set, with its kind (the first kind wins when two
/// intents disagree).
fn slot_kinds(req: &NluRequest) -> BTreeMap<String, SlotKind> {
    let mut out = BTreeMap::new();
    for i in &req.intents {
        for s in &i.slots {
            out.entry(s.name.clone()).or_insert(s.kind);
        }
    }
    out
}

/// The JSON schema of the answer: strict-mode compatible (every property
/// required, no extra properties; absent slots are `null`).
pub fn answer_schema(req: &NluRequest) -> Value {
    let mut names: Vec<Value> = req.intents.iter().map(|i| json!(i.name)).collect();
    names.push(json!(NO_INTENT));
    let slots = slot_kinds(req);
    let slot_props: serde_json::Map<String, Value> = slots
        .keys()
        .map(|k| (k.clone(), json!({"type": ["string", "null"]})))
        .collect();
    json!({
        "type": "object",
        "properties": {
            "intent": {"type": "string", "enum": names},
            "confidence": {"type": "number", "minimum": 0, "maximum": 1},
            "slots": {
                "type": "object",
                "properties": slot_props,
                "required": slots.keys().collect::<Vec<_>>(),
                "additionalProperties": false
            },
            "reply": {"type": ["string", "null"]}
        },
        "required": ["intent", "confidence", "slots", "reply"],
        "additionalProperties": false
    })
}

fn system_prompt(req: &NluRequest) -> String {
    let mut s = String::from(
        "You route phone calls. Pick the caller's intent from the list, or \"none\" if none fits. \
         Give a confidence from 0 to 1, fill the slots you hear (digits as digits, amounts as \
         numbers, dates as YYYY-MM-DD or words like \"tomorrow\", yes/no as \"yes\" or \"no\"), \
         null otherwise, and an optional short reply to speak. Answer only with the JSON object.\n\nIntents:\n",
    );
    for i in &req.intents {
        s.push_str(&format!("- {}: {}", i.name, i.description));
        if !i.examples.is_empty() {
            s.push_str(&format!(" Examples: {}.", i.examples.join("; ")));
        }
        if !i.slots.is_empty() {
            let slots: Vec<String> = i
                .slots
                .iter()
                .map(|sl| format!("{} ({:?})", sl.name, sl.kind).to_lowercase())
                .collect();
            s.push_str(&format!(" Slots: {}.", slots.join(", ")));
        }
        s.push('\n');
    }
    if let Some(lang) = &req.language {
        s.push_str(&format!(
            "The caller speaks {lang}; reply in that language.\n"
        ));
    }
    s
}

/// The chat-completions request body.
pub fn request_body(
    req: &NluRequest,
    model: &str,
    mode: StructuredMode,
    stream: bool,
    temperature: f32,
    max_tokens: u32,
) -> Value {
    let mut messages = vec![json!({"role": "system", "content": system_prompt(req)})];
    for t in &req.history {
        let role = match t.speaker {
            Speaker::Caller => "user",
            Speaker::Bot => "assistant",
        };
        messages.push(json!({"role": role, "content": t.text}));
    }
    messages.push(json!({"role": "user", "content": req.utterance}));
    let mut body = json!({
        "model": model,
        "messages": messages,
        "stream": stream,
        "temperature": temperature,
        "max_tokens": max_tokens,
    });
    let schema = answer_schema(req);
    match mode {
        StructuredMode::JsonSchema => {
            body["response_format"] = json!({
                "type": "json_schema",
                "json_schema": {"name": "intent_result", "strict": true, "schema": schema}
            });
        }
        StructuredMode::ToolCall => {
            body["tools"] = json!([{
                "type": "function",
                "function": {
                    "name": TOOL_NAME,
                    "description": "Report the caller's intent",
                    "parameters": schema
                }
            }]);
            body["tool_choice"] = json!({"type": "function", "function": {"name": TOOL_NAME}});
        }
    }
    body
}

/// Why the model's answer could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnswerError {
    #[error("the answer is not JSON: {0}")]
    NotJson(String),
    #[error("the answer lacks `{0}` or has the wrong type")]
    Field(&'static str),
    #[error("the model chose intent {0:?}, which is not in the set")]
    UnknownIntent(String),
}

/// Reads the model's JSON answer into an [`IntentResult`]; slot values
/// are parsed by the slot's kind, falling back to text.
pub fn parse_answer(text: &str, req: &NluRequest) -> Result<IntentResult, AnswerError> {
    // Some servers wrap JSON in a code fence even in JSON mode.
    let trimmed = text
        .trim()
        .trim_start_matches("```json")
        .trim_start_matches("```")
        .trim_end_matches("```")
        .trim();
    let v: Value =
        serde_json::from_str(trimmed).map_err(|e| AnswerError::NotJson(e.to_string()))?;
    let intent = v
        .get("intent")
        .and_then(Value::as_str)
        .ok_or(AnswerError::Field("intent"))?;
    let confidence = v
        .get("confidence")
        .and_then(Value::as_f64)
        .ok_or(AnswerError::Field("confidence"))?;
    let intent = if intent == NO_INTENT || intent.is_empty() {
        None
    } else if req.intents.iter().any(|i| i.name == intent) {
        Some(intent.to_owned())
    } else {
        return Err(AnswerError::UnknownIntent(intent.to_owned()));
    };
    let kinds = slot_kinds(req);
    let mut slots = BTreeMap::new();
    if let Some(map) = v.get("slots").and_then(Value::as_object) {
        for (name, value) in map {
            let text = match value {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => if *b { "yes" } else { "no" }.to_owned(),
                _ => continue,
            };
            let kind = kinds.get(name).copied().unwrap_or(SlotKind::Text);
            let value = extract(kind, &text).unwrap_or(SlotValue::Text(text));
            slots.insert(name.clone(), value);
        }
    }
    let reply = v
        .get("reply")
        .and_then(Value::as_str)
        .filter(|r| !r.trim().is_empty())
        .map(str::to_owned);
    Ok(IntentResult {
        confidence: if intent.is_some() {
            confidence.clamp(0.0, 1.0) as f32
        } else {
            0.0
        },
        intent,
        alternatives: Vec::new(),
        slots,
        reply,
        engine: Some("llm".to_owned()),
    })
}

/// A slot value as words the slot parsers read back (the simulator
/// answers with these).
pub fn slot_text(value: &SlotValue) -> String {
    match value {
        SlotValue::Digits(d) => d.clone(),
        SlotValue::Amount { value, currency } => match currency {
            Some(c) => format!("{value} {c}"),
            None => value.clone(),
        },
        SlotValue::Date(DateValue::Full { year, month, day }) => {
            format!("{year:04}-{month:02}-{day:02}")
        }
        SlotValue::Date(DateValue::MonthDay { month, day }) => {
            const M: [&str; 12] = [
                "january",
                "february",
                "march",
                "april",
                "may",
                "june",
                "july",
                "august",
                "september",
                "october",
                "november",
                "december",
            ];
            let m = M
                .get(usize::from(month.saturating_sub(1)))
                .copied()
                .unwrap_or("january");
            format!("{m} {day}")
        }
        SlotValue::Date(DateValue::Relative { days }) => match days {
            0 => "today".into(),
            1 => "tomorrow".into(),
            -1 => "yesterday".into(),
            n => format!("in {n} days"),
        },
        SlotValue::Date(DateValue::Weekday { weekday, next }) => {
            const D: [&str; 7] = [
                "monday",
                "tuesday",
                "wednesday",
                "thursday",
                "friday",
                "saturday",
                "sunday",
            ];
            let d = D.get(usize::from(*weekday)).copied().unwrap_or("monday");
            if *next {
                format!("next {d}")
            } else {
                d.to_owned()
            }
        }
        SlotValue::YesNo(b) => if *b { "yes" } else { "no" }.into(),
        SlotValue::Text(t) => t.clone(),
    }
}

/// The JSON answer a model would give for `result`.
pub fn answer_json(result: &IntentResult, req: Option<&NluRequest>) -> String {
    let mut slots = serde_json::Map::new();
    if let Some(req) = req {
        for name in slot_kinds(req).keys() {
            slots.insert(name.clone(), Value::Null);
        }
    }
    for (k, v) in &result.slots {
        slots.insert(k.clone(), json!(slot_text(v)));
    }
    json!({
        "intent": result.intent.as_deref().unwrap_or(NO_INTENT),
        "confidence": result.confidence,
        "slots": slots,
        "reply": result.reply,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nlu::{IntentSpec, SlotSpec};

    fn req() -> NluRequest {
        NluRequest {
            utterance: "pay 20 dollars tomorrow".into(),
            history: vec![],
            intents: vec![IntentSpec {
                name: "pay_bill".into(),
                description: "pay".into(),
                examples: vec!["pay my bill".into()],
                slots: vec![
                    SlotSpec {
                        name: "amount".into(),
                        kind: SlotKind::Amount,
                    },
                    SlotSpec {
                        name: "date".into(),
                        kind: SlotKind::Date,
                    },
                ],
            }],
            language: None,
        }
    }

    #[test]
    fn answers_round_trip_through_json() {
        let mut slots = BTreeMap::new();
        slots.insert(
            "amount".into(),
            SlotValue::Amount {
                value: "20".into(),
                currency: Some("USD".into()),
            },
        );
        slots.insert(
            "date".into(),
            SlotValue::Date(DateValue::Relative { days: 1 }),
        );
        let r = IntentResult {
            intent: Some("pay_bill".into()),
            confidence: 0.9,
            alternatives: vec![],
            slots,
            reply: Some("Sure.".into()),
            engine: Some("llm".into()),
        };
        let text = answer_json(&r, Some(&req()));
        assert_eq!(parse_answer(&text, &req()).expect("parse"), r);
    }

    #[test]
    fn bad_answers_are_typed() {
        let r = req();
        assert!(matches!(
            parse_answer("{nope", &r),
            Err(AnswerError::NotJson(_))
        ));
        assert_eq!(
            parse_answer(r#"{"confidence":1}"#, &r),
            Err(AnswerError::Field("intent"))
        );
        assert_eq!(
            parse_answer(r#"{"intent":"fly","confidence":1}"#, &r),
            Err(AnswerError::UnknownIntent("fly".into()))
        );
        let none = parse_answer(
            "```json\n{\"intent\":\"none\",\"confidence\":0.8,\"slots\":{},\"reply\":null}\n```",
            &r,
        )
        .expect("none");
        assert_eq!(none.intent, None);
        assert_eq!(none.confidence, 0.0);
    }

    #[test]
    fn schema_and_modes() {
        let r = req();
        let body = request_body(&r, "m", StructuredMode::JsonSchema, true, 0.0, 200);
        assert_eq!(
            body["response_format"]["json_schema"]["schema"]["properties"]["intent"]["enum"],
            json!(["pay_bill", "none"])
        );
        assert_eq!(body["messages"].as_array().map(Vec::len), Some(2));
        let tools = request_body(&r, "m", StructuredMode::ToolCall, false, 0.0, 200);
        assert_eq!(tools["tool_choice"]["function"]["name"], json!(TOOL_NAME));
        assert_eq!(tools["stream"], json!(false));
    }
}
