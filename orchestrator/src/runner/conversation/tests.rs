use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use voxgate_flows::interpreter::ActionResult;
use voxgate_flows::model::{AiDtmfAction, AiNode};
use voxgate_stt_tts::nlu::{IntentResult, NluEvent};
use voxgate_stt_tts::stt::{SttEvent, Transcript};
use voxgate_stt_tts::EngineError;

use super::*;
use crate::budget::{BudgetConfig, Threshold};
use crate::pipeline::vad::tests::{loud, quiet, LoudnessScorer};
use crate::policy::{NodePolicy, TenantPolicy};

fn node() -> AiNode {
    AiNode {
        greeting: None,
        system_prompt: None,
        intents: Vec::new(),
        confidence_threshold: None,
        max_reprompts: Some(1),
        escalate_intents: vec!["complaint".into()],
        max_turns: None,
        max_silences: Some(1),
        dtmf: BTreeMap::from([("0".to_string(), AiDtmfAction::Agent)]),
        voice: None,
        language: None,
    }
}

fn budgets() -> BudgetConfig {
    BudgetConfig {
        nlu_first_token: Threshold {
            soft_ms: Some(300),
            hard_ms: 800,
        },
        ..BudgetConfig::default()
    }
}

fn conv(greeting: Option<&str>, t0: Instant) -> Conversation<LoudnessScorer> {
    let setup = NodeSetup {
        greeting: greeting.map(str::to_string),
        intents: Vec::new(),
        replies: BTreeMap::from([(
            "balance".to_string(),
            "Your balance is 12 euros.".to_string(),
        )]),
        language: None,
        policy: NodePolicy::resolve(&TenantPolicy::default(), &node()),
        budgets: budgets(),
    };
    Conversation::new(LoudnessScorer, ConversationConfig::default(), setup, t0)
}

fn drain(c: &mut Conversation<LoudnessScorer>) -> Vec<Command> {
    std::iter::from_fn(|| c.poll_command()).collect()
}

/// Feeds 20 ms frames of `audio`, advancing `now`, firing due timers.
fn feed(c: &mut Conversation<LoudnessScorer>, now: &mut Instant, audio: &[i16]) -> Vec<Command> {
    let mut out = Vec::new();
    for chunk in audio.chunks(320) {
        *now += Duration::from_millis(20);
        if c.poll_timeout().is_some_and(|t| t <= *now) {
            c.handle_timeout(*now);
        }
        c.handle_caller_audio(*now, chunk);
        out.extend(drain(c));
    }
    out
}

fn transcript(text: &str) -> Transcript {
    Transcript {
        text: text.into(),
        confidence: 0.9,
        start_ms: 0,
        end_ms: 1000,
        words: Vec::new(),
    }
}

fn result(intent: &str, confidence: f32) -> IntentResult {
    IntentResult {
        intent: Some(intent.into()),
        confidence,
        ..IntentResult::no_match()
    }
}

/// Caller speaks, STT answers `text`; returns the Classify turn.
fn utterance(c: &mut Conversation<LoudnessScorer>, now: &mut Instant, text: &str) -> TurnId {
    let cmds = feed(c, now, &loud(800));
    let id = cmds
        .iter()
        .find_map(|c| match c {
            Command::OpenStt { id, preroll } => {
                assert!(!preroll.is_empty(), "pre-roll goes first");
                Some(*id)
            }
            _ => None,
        })
        .expect("STT opens at speech start");
    assert!(cmds.iter().any(|c| matches!(c, Command::SttAudio { .. })));
    let cmds = feed(c, now, &quiet(800));
    assert!(cmds.contains(&Command::EndStt { id }), "{cmds:?}");
    *now += Duration::from_millis(50);
    c.handle_stt(*now, id, Ok(SttEvent::Final(transcript(text))));
    let cmds = drain(c);
    cmds.iter()
        .find_map(|c| match c {
            Command::Classify { turn, request } => {
                assert_eq!(request.utterance, text);
                Some(*turn)
            }
            _ => None,
        })
        .expect("the final goes to the intent engine")
}

/// How the node left: the fields of its `ActionResult::Ai`.
struct Left {
    outcome: String,
    variables: BTreeMap<String, Value>,
    records: Vec<AiRecord>,
}

/// The node's `Finish`, which must be an AI result.
#[track_caller]
fn left(cmds: &[Command]) -> Left {
    match finish(cmds) {
        Some(ActionResult::Ai {
            outcome,
            variables,
            records,
        }) => Left {
            outcome: outcome.clone(),
            variables: variables.clone(),
            records: records.clone(),
        },
        _ => panic!("the node leaves with an AI result: {cmds:?}"),
    }
}

fn finish(cmds: &[Command]) -> Option<&ActionResult> {
    cmds.iter().find_map(|c| match c {
        Command::Finish(r) => Some(r),
        _ => None,
    })
}

#[test]
fn a_confident_intent_speaks_its_reply_then_leaves_on_its_edge() {
    let t0 = Instant::now();
    let mut now = t0;
    let mut c = conv(Some("Hello, how can I help?"), t0);
    let cmds = drain(&mut c);
    assert_eq!(
        cmds,
        vec![
            Command::SetTurn(TurnId(1)),
            Command::Speak {
                turn: TurnId(1),
                text: "Hello, how can I help?".into(),
                last: true
            }
        ]
    );
    c.handle_tts_chunk(now, TurnId(1));
    c.handle_played(now, TurnId(1));
    let turn = utterance(&mut c, &mut now, "what is my balance");
    now += Duration::from_millis(100);
    c.handle_nlu(now, turn, Ok(NluEvent::Token("{".into())));
    c.handle_nlu(now, turn, Ok(NluEvent::Result(result("balance", 0.92))));
    let cmds = drain(&mut c);
    let reply = cmds
        .iter()
        .find_map(|c| match c {
            Command::Speak { turn, text, .. } => Some((*turn, text.clone())),
            _ => None,
        })
        .expect("the reply is spoken");
    assert_eq!(reply.1, "Your balance is 12 euros.");
    assert!(finish(&cmds).is_none(), "leaves only once the reply played");
    c.handle_tts_chunk(now, reply.0);
    c.handle_played(now + Duration::from_millis(900), reply.0);
    let cmds = drain(&mut c);
    let Left {
        outcome,
        variables,
        records,
    } = left(&cmds);
    assert_eq!(outcome, "balance");
    assert_eq!(variables["ai.intent"], "balance");
    assert_eq!(variables["ai.transcript"], "what is my balance");
    assert!(records
        .iter()
        .any(|r| r.kind == "decision" && r.text.contains("confidence 0.92 >= 0.60")));
    let measures = c.take_measures();
    assert!(measures
        .iter()
        .any(|m| matches!(m, Measure::Stage(Stage::SttFinal, _))));
    assert!(measures
        .iter()
        .any(|m| matches!(m, Measure::Stage(Stage::NluFirstToken, 100))));
    assert!(measures
        .iter()
        .any(|m| matches!(m, Measure::Stage(Stage::Turn, _))));
}

#[test]
fn an_nlu_stall_plays_one_filler_then_falls_back_at_the_hard_deadline() {
    let t0 = Instant::now();
    let mut now = t0;
    let mut c = conv(None, t0);
    let turn = utterance(&mut c, &mut now, "hello there");
    let asked = now;
    // Soft threshold: a filler, once.
    now = asked + Duration::from_millis(300);
    assert_eq!(c.poll_timeout(), Some(now));
    c.handle_timeout(now);
    let cmds = drain(&mut c);
    assert!(
        cmds.iter()
            .any(|c| matches!(c, Command::Speak { text, last: false, .. } if text == "One moment, please.")),
        "{cmds:?}"
    );
    // Hard threshold: the fallback, at the deadline itself.
    let hard = asked + Duration::from_millis(800);
    let mut t = c.poll_timeout().expect("a deadline");
    while t < hard {
        c.handle_timeout(t);
        drain(&mut c);
        t = c.poll_timeout().expect("a deadline");
    }
    assert_eq!(t, hard);
    c.handle_timeout(hard);
    let cmds = drain(&mut c);
    assert!(cmds.contains(&Command::CancelNlu));
    let Left {
        outcome, variables, ..
    } = left(&cmds);
    assert_eq!(outcome, "fallback_dtmf");
    assert_eq!(variables["ai.reason"], "deadline_nlu_first_token");
    // A late answer changes nothing.
    c.handle_nlu(hard, turn, Ok(NluEvent::Result(result("balance", 0.9))));
    assert!(drain(&mut c).is_empty());
    assert!(c.is_finished());
}

#[test]
fn an_stt_disconnect_mid_utterance_falls_back_at_once() {
    let t0 = Instant::now();
    let mut now = t0;
    let mut c = conv(None, t0);
    let cmds = feed(&mut c, &mut now, &loud(600));
    let id = cmds
        .iter()
        .find_map(|c| match c {
            Command::OpenStt { id, .. } => Some(*id),
            _ => None,
        })
        .expect("open");
    c.handle_stt(
        now,
        id,
        Err(EngineError::ConnectionLost {
            reason: "eof".into(),
        }),
    );
    let cmds = drain(&mut c);
    let Left {
        outcome, variables, ..
    } = left(&cmds);
    assert_eq!(outcome, "fallback_dtmf");
    assert_eq!(variables["ai.reason"], "stt_error");
    assert!(matches!(c.exit(), Some(Exit::Fallback(_))));
}

#[test]
fn caller_speech_over_the_bot_bumps_the_turn_and_cancels_tts() {
    let t0 = Instant::now();
    let mut now = t0;
    let mut c = conv(Some("A long greeting that goes on and on."), t0);
    drain(&mut c);
    c.handle_tts_chunk(now, TurnId(1));
    // 160 ms to start, 600 ms more to interrupt.
    let cmds = feed(&mut c, &mut now, &loud(900));
    assert!(cmds.contains(&Command::SetTurn(TurnId(2))), "{cmds:?}");
    assert!(cmds.contains(&Command::CancelTts));
    assert_eq!(c.current_turn(), TurnId(2));
    // The playback's gate reports the cut; it is measured and recorded.
    c.handle_cut(now, TurnId(2), Duration::from_millis(14), 30);
    assert!(c.take_measures().contains(&Measure::BargeInToSilence(14)));
    // The old turn finishing late means nothing.
    c.handle_played(now, TurnId(1));
    assert!(drain(&mut c).is_empty());
}

#[test]
fn low_confidence_reprompts_then_escalates_with_the_numbers_recorded() {
    let t0 = Instant::now();
    let mut now = t0;
    let mut c = conv(None, t0);
    let turn = utterance(&mut c, &mut now, "mumble");
    c.handle_nlu(now, turn, Ok(NluEvent::Result(result("balance", 0.41))));
    let cmds = drain(&mut c);
    let (speak_turn, text) = cmds
        .iter()
        .find_map(|c| match c {
            Command::Speak { turn, text, .. } => Some((*turn, text.clone())),
            _ => None,
        })
        .expect("a reprompt");
    assert_eq!(text, ConversationConfig::default().reprompt);
    c.handle_tts_chunk(now, speak_turn);
    c.handle_played(now, speak_turn);
    let turn = utterance(&mut c, &mut now, "mumble again");
    c.handle_nlu(now, turn, Ok(NluEvent::Result(result("balance", 0.41))));
    let cmds = drain(&mut c);
    let Left {
        outcome,
        variables,
        records,
    } = left(&cmds);
    assert_eq!(outcome, "escalate");
    assert_eq!(variables["ai.reason"], "low_confidence");
    assert_eq!(variables["ai.turns"], 2);
    let texts: Vec<&str> = records
        .iter()
        .filter(|r| r.kind == "decision")
        .map(|r| r.text.as_str())
        .collect();
    assert_eq!(
        texts,
        [
            "intent balance, confidence 0.41 < 0.60, reprompt 1/1 → reprompt",
            "intent balance, confidence 0.41 < 0.60, 1/1 reprompts used → escalate"
        ]
    );
}

#[test]
fn a_sensitive_intent_and_a_dtmf_zero_escalate_at_once() {
    let t0 = Instant::now();
    let mut now = t0;
    let mut c = conv(None, t0);
    let turn = utterance(&mut c, &mut now, "I want to complain");
    c.handle_nlu(now, turn, Ok(NluEvent::Result(result("complaint", 0.88))));
    let cmds = drain(&mut c);
    let Left {
        outcome, variables, ..
    } = left(&cmds);
    assert_eq!(outcome, "escalate");
    assert_eq!(variables["ai.reason"], "sensitive_intent");

    let mut c = conv(Some("Hi"), t0);
    drain(&mut c);
    c.handle_dtmf(t0, '0');
    let cmds = drain(&mut c);
    assert!(
        cmds.contains(&Command::SetTurn(TurnId(2))),
        "DTMF interrupts"
    );
    let Left { variables, .. } = left(&cmds);
    assert_eq!(variables["ai.reason"], "dtmf");
}

#[test]
fn silence_reprompts_then_escalates() {
    let t0 = Instant::now();
    let mut c = conv(None, t0);
    let first = c.poll_timeout().expect("no-input timer");
    assert_eq!(first, t0 + Duration::from_millis(6_000));
    c.handle_timeout(first);
    let cmds = drain(&mut c);
    let turn = cmds
        .iter()
        .find_map(|c| match c {
            Command::Speak { turn, text, .. } if text.contains("still there") => Some(*turn),
            _ => None,
        })
        .expect("a no-input prompt");
    c.handle_tts_chunk(first, turn);
    c.handle_tts_done(first, turn);
    c.handle_played(first, turn);
    let second = c.poll_timeout().expect("armed again");
    c.handle_timeout(second);
    let cmds = drain(&mut c);
    let Left {
        outcome, variables, ..
    } = left(&cmds);
    assert_eq!(outcome, "escalate");
    assert_eq!(variables["ai.reason"], "no_input");
}

#[test]
fn a_policy_change_applies_from_the_next_caller_turn_not_the_current_one() {
    let t0 = Instant::now();
    let mut now = t0;
    let mut c = conv(None, t0);
    // Turn 1 starts; the NOC tightens the intent budget while it runs.
    let cmds = feed(&mut c, &mut now, &loud(800));
    assert!(
        cmds.contains(&Command::RefreshPolicy),
        "a caller turn asks for the newest policy: {cmds:?}"
    );
    let tight = BudgetConfig {
        nlu_first_token: Threshold {
            soft_ms: None,
            hard_ms: 200,
        },
        ..budgets()
    };
    let policy = NodePolicy::resolve(&TenantPolicy::default(), &node());
    c.handle_policy(policy, tight);
    // A turn's clocks start when its utterance ends: the change made
    // while the caller spoke is in force for the turn.
    let _ = feed(&mut c, &mut now, &quiet(800));
    let id = 1;
    now += Duration::from_millis(50);
    c.handle_stt(now, id, Ok(SttEvent::Final(transcript("hello"))));
    let _ = drain(&mut c);
    let asked = now;
    assert_eq!(
        c.poll_timeout(),
        Some(asked + Duration::from_millis(200)),
        "the new 200 ms hard threshold, no 300 ms filler"
    );
    now = asked + Duration::from_millis(200);
    c.handle_timeout(now);
    let cmds = drain(&mut c);
    let Left {
        outcome, records, ..
    } = left(&cmds);
    assert_eq!(outcome, "fallback_dtmf");
    assert!(records.iter().any(|r| r.kind == "policy"), "{records:?}");
}

#[test]
fn a_policy_change_during_the_intent_request_waits_for_the_next_turn() {
    let t0 = Instant::now();
    let mut now = t0;
    let mut c = conv(None, t0);
    let _turn = utterance(&mut c, &mut now, "hello");
    let asked = now;
    let tight = BudgetConfig {
        nlu_first_token: Threshold {
            soft_ms: None,
            hard_ms: 100,
        },
        ..budgets()
    };
    c.handle_policy(
        NodePolicy::resolve(&TenantPolicy::default(), &node()),
        tight,
    );
    // The running turn keeps its 300 ms soft threshold.
    assert_eq!(c.poll_timeout(), Some(asked + Duration::from_millis(300)));
}

#[test]
fn a_hang_up_keeps_what_the_node_learned_for_the_timeline() {
    let t0 = Instant::now();
    let mut now = t0;
    let mut c = conv(None, t0);
    let turn = utterance(&mut c, &mut now, "mumble");
    now += Duration::from_millis(100);
    c.handle_nlu(now, turn, Ok(NluEvent::Result(result("balance", 0.2))));
    let _ = drain(&mut c);
    c.handle_hangup(now + Duration::from_millis(500));
    let cmds = drain(&mut c);
    let Left {
        outcome,
        variables,
        records,
    } = left(&cmds);
    assert_eq!(outcome, voxgate_flows::interpreter::AI_CALLER_HUNG_UP);
    assert_eq!(variables["ai.transcript"], "mumble");
    assert!(records.iter().any(|r| r.kind == "decision"), "{records:?}");
    assert!(records.iter().any(|r| r.kind == "hangup"), "{records:?}");
}
