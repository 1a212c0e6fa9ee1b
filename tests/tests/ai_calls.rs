//! The AI node end to end: real `voxgate serve`, real SIP calls (the
//! built-in softphone playing espeak-ng speech and recording what it
//! hears), and the provider simulator (a test double of the remote STT,
//! NLU and TTS providers, speaking the real worker protocol over real
//! sockets) with fixed scripted latencies and faults.
//!
//! The simulator's TTS speaks a 440 Hz tone, so the bot's audio is easy to
//! find in the recording; the flow's own prompts (menus) are espeak-ng.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{json, Value};
use voxgate_tests::ai::{
    admin_key, ai_records, api_get, call, caller_audio, change_policy, frame_levels,
    gateway_with_simulator, last_call_record, path, publish, step, temp, CallRun, Part, Simulator,
    Spoken,
};
use voxgate_tests::sipp::Sipp;
use voxgate_tests::{wait_until, Gateway};

/// One AI call at a time: the timing checks should measure the gateway,
/// not two gateways fighting over two cores.
static SERIAL: Mutex<()> = Mutex::new(());

const NUMBER: &str = "5000";

/// A frame louder than this is audio, not silence.
const LOUD: f64 = 500.0;

/// The agent node of [`flow`]: a blind transfer to a port nobody answers
/// (the tests that need an agent put a sipp UAS behind a bridged one).
fn unanswered_agent() -> Value {
    json!({"type": "transfer", "mode": "blind", "target": "sip:agent@127.0.0.1:9",
           "timeout_ms": 1000})
}

fn flow(ai: Value) -> Value {
    flow_with_agent(ai, unanswered_agent())
}

/// The test flow; `agent` is the transfer node the escalations take, to
/// which the context headers are added.
fn flow_with_agent(ai: Value, mut agent: Value) -> Value {
    agent["headers"] = json!({"X-Voxgate-Intent": "${ai.intent}", "X-Voxgate-Confidence": "${ai.confidence}",
                              "X-Voxgate-Transcript": "${ai.transcript_ref}"});
    agent["edges"] = json!({"failed": "bye"});
    let mut ask = json!({
        "type": "ai",
        "intents": [
            {"name": "balance", "examples": ["what is my balance"], "reply": "Your balance is twelve euros."},
            {"name": "complaint", "examples": ["I want to complain"]}
        ],
        "escalate_intents": ["complaint"],
        "edges": {"balance": "thanks", "escalate": "agent", "fallback_dtmf": "menu", "error": "bye"}
    });
    if let (Some(a), Some(extra)) = (ask.as_object_mut(), ai.as_object()) {
        for (k, v) in extra {
            a.insert(k.clone(), v.clone());
        }
    }
    json!({"id": "care", "name": "Care", "entry": "ask", "nodes": {
        "ask": ask,
        "thanks": {"type": "say", "text": "Thank you.", "edges": {"next": "bye"}},
        "menu": {"type": "menu", "prompt": {"say": "Press one for billing, two for anything else."},
                 "options": ["1", "2"], "timeout_ms": 3000, "max_retries": 0,
                 "edges": {"1": "bye", "2": "bye", "no_input": "bye"}},
        "agent": agent,
        "bye": {"type": "hangup"}
    }})
}

fn script(transcript: &str, nlu: Value, stages: Value) -> Value {
    json!({
        "seed": 1,
        "stt": {"default": {"text": transcript, "confidence": 0.95}},
        "nlu": nlu,
        "tts": {"voice": {"kind": "tone", "hz": 440.0, "ms_per_char": 40}, "chunk_ms": 100},
        "stages": stages
    })
}

fn balance_nlu() -> Value {
    json!({"results": [
        {"utterance": "what is my balance", "result": {"intent": "balance", "confidence": 0.93}},
        {"utterance": "I want to complain", "result": {"intent": "complaint", "confidence": 0.9}}
    ]})
}

fn fast_stages() -> Value {
    json!({
        "stt": {"first": {"fixed_ms": 30}, "per_chunk": {"fixed_ms": 30}},
        "nlu": {"first": {"fixed_ms": 60}},
        "tts": {"first": {"fixed_ms": 40}}
    })
}

struct World {
    gw: Gateway,
    key: String,
    dir: voxgate_tests::TempDir,
    _sim: Simulator,
}

fn world(name: &str, script: Value, ai: Value) -> World {
    world_with_flow(name, script, flow(ai))
}

fn world_with_flow(name: &str, script: Value, flow: Value) -> World {
    let dir = temp(name).expect("temp dir");
    let sim = Simulator::start(&script).expect("simulator starts");
    let gw = gateway_with_simulator(&sim, dir.path()).expect("gateway starts");
    let key = admin_key(&gw).expect("admin key");
    publish(&gw, &key, dir.path(), &flow, NUMBER).expect("flow published");
    World {
        gw,
        key,
        dir,
        _sim: sim,
    }
}

impl World {
    /// Caller audio made of `parts` (espeak-ng speech and silences).
    fn speaks(&self, parts: &[Part]) -> (PathBuf, Spoken) {
        caller_audio(self.dir.path(), "caller", parts).expect("caller audio")
    }

    /// The caller says `text` after 600 ms, then stays quiet `then_ms`.
    fn says(&self, text: &'static str, then_ms: u32) -> (PathBuf, Spoken) {
        self.speaks(&[Part::Silence(600), Part::Say(text), Part::Silence(then_ms)])
    }

    /// The caller says `text`, waits 5 s for the bot, and says it again.
    fn says_twice(&self, text: &'static str) -> (PathBuf, Spoken) {
        self.speaks(&[
            Part::Silence(600),
            Part::Say(text),
            Part::Silence(5000),
            Part::Say(text),
            Part::Silence(5000),
        ])
    }

    /// Calls the number playing `wav`, recording into `heard.wav`.
    fn dial(&self, wav: &Path, hangup: &str) -> CallRun {
        call(
            &self.gw,
            NUMBER,
            wav,
            &self.dir.path().join("heard.wav"),
            hangup,
        )
        .expect("call")
    }
}

/// Index of the first loud frame at or after `from` (20 ms frames).
fn first_loud(levels: &[f64], from: usize) -> Option<usize> {
    levels
        .iter()
        .skip(from)
        .position(|l| *l > LOUD)
        .map(|i| i + from)
}

#[test]
fn happy_path_the_intent_resolves_the_reply_is_heard_and_the_flow_follows_the_intent() {
    let _one = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let w = world(
        "ai-happy",
        script("what is my balance", balance_nlu(), fast_stages()),
        json!({}),
    );
    let (wav, spoken) = w.says("what is my balance", 6000);
    let run = w.dial(&wav, "12s");
    assert_eq!(
        run.summary["disposition"]["kind"], "answered",
        "{}",
        run.summary
    );

    let record = last_call_record(&w.gw, &w.key).expect("record");
    assert_eq!(path(&record), ["ask", "thanks", "bye"], "{record}");
    let ask = step(&record, "ask").expect("ask step");
    assert_eq!(ask["outcome"], "balance", "{ask}");
    assert_eq!(ask["changed"]["ai.intent"], "balance");
    assert_eq!(ask["changed"]["ai.transcript"], "what is my balance");
    let decisions = ai_records(ask, "decision");
    assert!(
        decisions.iter().any(|d| {
            d["text"].as_str().is_some_and(|t| {
                t.contains("confidence 0.93 >= 0.60") && t.ends_with("route balance")
            })
        }),
        "{ask}"
    );
    // The reply (the simulator's tone) arrives on RTP after the caller
    // finished speaking.
    let levels = frame_levels(&run.heard);
    let speech_end = (spoken.spans[0].1 / 20) as usize;
    let reply = first_loud(&levels, speech_end).expect("the reply is heard on RTP");
    let reply_frames = levels[reply..].iter().take_while(|l| **l > LOUD).count();
    // "Your balance is twelve euros." is 29 characters of 40 ms tone.
    assert!(
        reply_frames >= 40,
        "reply heard for {} ms only",
        reply_frames * 20
    );
    let turn = ai_records(ask, "turn");
    assert!(
        turn.first().is_some_and(|t| t["detail"]["turn"].is_u64()
            && t["detail"]["stt_final"].is_u64()
            && t["detail"]["nlu_first_token"].is_u64()),
        "the turn's latency breakdown is in the timeline: {ask}"
    );
    let m = w.gw.metrics().expect("metrics");
    assert!(
        m.value("voxgate_ai_turn_ms_count") >= 1.0,
        "turn_ms observed"
    );
    assert!(m.value("voxgate_ai_stt_final_ms_count") >= 1.0);
    assert!(m.value("voxgate_ai_nlu_first_token_ms_count") >= 1.0);
}

#[test]
fn an_nlu_stall_before_the_first_token_falls_back_to_the_dtmf_menu_within_the_hard_threshold() {
    let _one = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let stages = json!({
        "stt": {"first": {"fixed_ms": 30}, "per_chunk": {"fixed_ms": 30}},
        "nlu": {"first": {"fixed_ms": 20000}},
        "tts": {"first": {"fixed_ms": 40}}
    });
    let w = world(
        "ai-stall",
        script("what is my balance", balance_nlu(), stages),
        json!({}),
    );
    let (wav, spoken) = w.says("what is my balance", 9000);
    let run = w.dial(&wav, "12s");
    assert_eq!(
        run.summary["disposition"]["kind"], "answered",
        "{}",
        run.summary
    );
    let record = last_call_record(&w.gw, &w.key).expect("record");
    let nodes = path(&record);
    assert_eq!(&nodes[..2], ["ask", "menu"], "{record}");
    let ask = step(&record, "ask").expect("ask step");
    assert_eq!(ask["outcome"], "fallback_dtmf");
    assert_eq!(ask["changed"]["ai.reason"], "deadline_nlu_first_token");
    // Reaction: from the request to the intent engine (the transcript
    // record) to the fallback record, against the default 3000 ms hard
    // threshold of the NLU first token.
    let asked = ai_records(ask, "transcript")[0]["at_ms"]
        .as_u64()
        .expect("at");
    let fallback = &ai_records(ask, "fallback")[0];
    let fell = fallback["at_ms"].as_u64().expect("at");
    let reaction = fell - asked;
    assert!(
        (2999..=3020).contains(&reaction),
        "fallback {reaction} ms after the request (hard 3000 ms + 20)"
    );
    assert_eq!(fallback["detail"]["reason"]["hard_ms"], 3000, "{fallback}");
    let elapsed = fallback["detail"]["reason"]["elapsed_ms"]
        .as_u64()
        .expect("elapsed");
    assert!((3000..=3020).contains(&elapsed), "{fallback}");
    // A filler was played once at the soft threshold (700 ms).
    assert_eq!(ai_records(ask, "filler").len(), 1, "{ask}");
    // The menu prompt is heard after the fallback: audio well after the
    // caller stopped speaking and the filler ended.
    let levels = frame_levels(&run.heard);
    let after = (spoken.spans[0].1 as usize + 700 + 3000 + 400) / 20;
    assert!(
        first_loud(&levels, after).is_some(),
        "the DTMF menu is heard after the fallback"
    );
    let m = w.gw.metrics().expect("metrics");
    assert_eq!(
        m.with_labels(
            "voxgate_ai_fallbacks_total",
            &[("tenant", "acme"), ("reason", "deadline_nlu_first_token")]
        ),
        1.0
    );
}

#[test]
fn an_stt_disconnect_mid_utterance_takes_the_fallback() {
    let _one = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let stages = json!({
        "stt": {"first": {"fixed_ms": 30}, "faults": {"disconnect_after_chunks": 1}},
        "nlu": {"first": {"fixed_ms": 60}},
        "tts": {"first": {"fixed_ms": 40}}
    });
    let w = world(
        "ai-stt-drop",
        script(
            "what is my balance please tell me now",
            balance_nlu(),
            stages,
        ),
        json!({}),
    );
    let (wav, _) = w.says(
        "what is my balance, please tell me my balance right now",
        6000,
    );
    let run = w.dial(&wav, "10s");
    assert_eq!(
        run.summary["disposition"]["kind"], "answered",
        "{}",
        run.summary
    );
    let record = last_call_record(&w.gw, &w.key).expect("record");
    let ask = step(&record, "ask").expect("ask step");
    assert_eq!(ask["outcome"], "fallback_dtmf", "{ask}");
    // The lost worker is reported at once (one worker: nothing to fail
    // over to), not found later by the stall watchdog.
    assert_eq!(ask["changed"]["ai.reason"], "stt_error", "{ask}");
    assert_eq!(path(&record)[1], "menu");
}

#[test]
fn barge_in_stops_the_bot_on_the_rtp_leg_and_no_old_turn_audio_follows() {
    let _one = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let greeting = "Welcome to the care line. This is a long greeting that keeps going so that the caller has time to interrupt it somewhere in the middle of all these words.";
    let w = world(
        "ai-barge",
        script("what is my balance", balance_nlu(), fast_stages()),
        json!({"greeting": greeting}),
    );
    let (wav, spoken) = w.speaks(&[
        Part::Silence(2000),
        Part::Say("what is my balance, what is my balance"),
        Part::Silence(6000),
    ]);
    let run = w.dial(&wav, "11s");
    assert_eq!(
        run.summary["disposition"]["kind"], "answered",
        "{}",
        run.summary
    );
    let record = last_call_record(&w.gw, &w.key).expect("record");
    let ask = step(&record, "ask").expect("ask step");
    let barge = ai_records(ask, "barge_in");
    let cut = barge
        .iter()
        .find(|r| r["detail"]["silence_after_ms"].is_u64())
        .unwrap_or_else(|| panic!("the gate reported the cut: {ask}"));
    let silence_after = cut["detail"]["silence_after_ms"].as_u64().expect("ms");
    assert!(
        silence_after <= 150,
        "silence {silence_after} ms after the bump"
    );

    // On the wire: the greeting tone plays from the start, stops after the
    // caller starts speaking, and none of it comes back. The next audio is
    // the reply to the new turn, after the caller's utterance ended.
    let levels = frame_levels(&run.heard);
    let start = first_loud(&levels, 0).expect("the greeting is heard");
    let stop = levels[start..]
        .iter()
        .position(|l| *l <= LOUD)
        .map(|i| i + start)
        .expect("the greeting stops");
    let speech_start = (spoken.spans[0].0 / 20) as usize;
    let speech_end = (spoken.spans[0].1 / 20) as usize;
    // The greeting (160 characters of 40 ms) would last 6.4 s.
    assert!(
        stop > speech_start && stop < speech_start + 75,
        "greeting stopped at {} ms, caller spoke from {} ms",
        stop * 20,
        speech_start * 20
    );
    if let Some(next) = first_loud(&levels, stop) {
        assert!(
            next >= speech_end,
            "audio at {} ms before the caller finished ({} ms): old turn leaked",
            next * 20,
            speech_end * 20
        );
    }
    let m = w.gw.metrics().expect("metrics");
    assert!(m.value("voxgate_ai_barge_in_to_silence_ms_count") >= 1.0);
}

#[test]
fn a_sensitive_intent_goes_straight_to_the_agent_edge_with_context() {
    let _one = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let w = world(
        "ai-sensitive",
        script("I want to complain", balance_nlu(), fast_stages()),
        json!({}),
    );
    let (wav, _) = w.says("I want to complain", 5000);
    let _run = w.dial(&wav, "8s");
    let record = last_call_record(&w.gw, &w.key).expect("record");
    assert_eq!(&path(&record)[..2], ["ask", "agent"], "{record}");
    let ask = step(&record, "ask").expect("ask step");
    assert_eq!(ask["outcome"], "escalate");
    assert_eq!(ask["changed"]["ai.reason"], "sensitive_intent");
    assert_eq!(ask["changed"]["ai.intent"], "complaint");
    assert!(ask["changed"]["ai.transcript_ref"]
        .as_str()
        .is_some_and(|r| r.ends_with("#ask")));
    let d = ai_records(ask, "decision");
    assert_eq!(
        d[0]["text"], "sensitive intent complaint (confidence 0.90) → escalate",
        "{ask}"
    );
    let m = w.gw.metrics().expect("metrics");
    assert_eq!(
        m.with_labels(
            "voxgate_ai_escalations_total",
            &[("tenant", "acme"), ("rule", "sensitive_intent")]
        ),
        1.0
    );
}

#[test]
fn low_confidence_reprompts_then_escalates_to_an_agent_who_gets_the_context() {
    let _one = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let nlu = json!({"default": {"intent": "balance", "confidence": 0.41}});
    // The agent: a sipp UAS that answers the bridged transfer.
    let agent = Sipp::new("agent_uas.xml", "127.0.0.1:9".parse().expect("addr"))
        .timeout(Duration::from_secs(40))
        .spawn()
        .expect("sipp agent starts");
    let target = format!("sip:agent@127.0.0.1:{}", agent.local_port());
    let w = world_with_flow(
        "ai-low",
        script("mumble mumble", nlu, fast_stages()),
        flow_with_agent(
            json!({"max_reprompts": 1}),
            json!({"type": "transfer", "mode": "bridged", "target": target, "timeout_ms": 5000}),
        ),
    );
    let (wav, _) = w.says_twice("mumble mumble");
    let _run = w.dial(&wav, "15s");
    let record = last_call_record(&w.gw, &w.key).expect("record");
    let ask = step(&record, "ask").expect("ask step");
    assert_eq!(ask["outcome"], "escalate", "{ask}");
    let texts: Vec<&str> = ai_records(ask, "decision")
        .iter()
        .filter_map(|d| d["text"].as_str())
        .collect();
    assert_eq!(
        texts,
        [
            "intent balance, confidence 0.41 < 0.60, reprompt 1/1 → reprompt",
            "intent balance, confidence 0.41 < 0.60, 1/1 reprompts used → escalate"
        ],
        "{ask}"
    );
    assert_eq!(ask["changed"]["ai.turns"], 2);
    assert_eq!(path(&record)[1], "agent");
    let transcript_ref = ask["changed"]["ai.transcript_ref"]
        .as_str()
        .expect("transcript ref")
        .to_string();

    // The agent's phone got the INVITE with the conversation's context,
    // answered, and was hung up on when the caller left.
    let agent = agent.wait().expect("sipp agent ends");
    agent.assert_success();
    let invite = agent
        .received()
        .into_iter()
        .find(|m| m.trim_start().starts_with("INVITE "))
        .unwrap_or_else(|| panic!("the agent got no INVITE\n{}", agent.report()));
    let header = |name: &str| {
        invite
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().to_string())
            })
            .unwrap_or_else(|| panic!("{name} missing from the agent's INVITE:\n{invite}"))
    };
    assert_eq!(header("X-Voxgate-Intent"), "balance");
    assert_eq!(header("X-Voxgate-Confidence"), "0.41");
    assert_eq!(header("X-Voxgate-Transcript"), transcript_ref);
    assert!(transcript_ref.ends_with("#ask"), "{transcript_ref}");
    assert!(header("X-Voxgate-Call-Id").len() >= 32);
}

/// Breaker settings small enough for a test: two breaches open it for
/// twelve seconds (longer than a call), and one good probe closes it.
fn quick_breaker(policy: &mut Value) {
    policy["breaker"] =
        json!({"failures": 2, "window_ms": 60000, "cooldown_ms": 12000, "probes": 1});
    policy["budgets"]["nlu_first_token"] = json!({"soft_ms": null, "hard_ms": 500});
}

#[test]
fn the_circuit_breaker_trips_after_repeated_stalls_sends_calls_to_the_fallback_and_recovers() {
    let _one = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    // The intent engine stalls before its first token for the first two
    // requests, then behaves.
    let stages = json!({
        "stt": {"first": {"fixed_ms": 30}, "per_chunk": {"fixed_ms": 30}},
        "nlu": {"first": {"fixed_ms": 60}, "faults": {"stall_after_chunks": 0, "times": 2}},
        "tts": {"first": {"fixed_ms": 40}}
    });
    let w = world(
        "ai-breaker",
        script("what is my balance", balance_nlu(), stages),
        json!({}),
    );
    change_policy(&w.gw, &w.key, quick_breaker).expect("policy set");
    let (wav, _) = w.says("what is my balance", 3000);
    let one_call = |n: u32| {
        let heard = w.dir.path().join(format!("heard-{n}.wav"));
        call(&w.gw, NUMBER, &wav, &heard, "6s").expect("call");
        let record = last_call_record(&w.gw, &w.key).expect("record");
        step(&record, "ask").expect("ask step").clone()
    };
    let nlu_state = || {
        let (status, health) = api_get(&w.gw, &w.key, "/v1/tenants/acme/health").expect("health");
        assert_eq!(status, 200, "{health}");
        health["breakers"]
            .as_array()
            .and_then(|b| b.iter().find(|b| b["provider"] == "nlu"))
            .map(|b| b["state"].as_str().unwrap_or("").to_string())
            .unwrap_or_else(|| panic!("no nlu breaker in {health}"))
    };

    // Two stalls: each a hard breach of the 500 ms budget.
    for n in 1..=2 {
        let ask = one_call(n);
        assert_eq!(
            ask["outcome"],
            "fallback_dtmf",
            "call {n} ({} intent requests): {ask}",
            w._sim.nlu_sessions()
        );
        assert_eq!(ask["changed"]["ai.reason"], "deadline_nlu_first_token");
    }
    assert_eq!(w._sim.nlu_sessions(), 2);
    assert_eq!(nlu_state(), "open");
    let m = w.gw.metrics().expect("metrics");
    assert!(
        m.names()
            .iter()
            .any(|n| n.starts_with("voxgate_ai_breaker_state")),
        "breaker gauge on /metrics"
    );

    // Open: the next call skips the AI node at once, without opening an
    // STT stream, and hears the DTMF menu.
    let streams = w._sim.stt_sessions();
    let ask = one_call(3);
    assert_eq!(ask["outcome"], "fallback_dtmf", "{ask}");
    assert_eq!(ask["changed"]["ai.reason"], "nlu_circuit_open", "{ask}");
    assert_eq!(w._sim.stt_sessions(), streams, "no STT stream while open");

    assert_eq!(nlu_state(), "open");

    // After the cool-down a probe call goes through (the engine behaves
    // again), and its success closes the circuit.
    wait_until(Duration::from_secs(15), || {
        (nlu_state() == "half_open").then_some(())
    })
    .expect("half-open after the cool-down");
    let ask = one_call(4);
    assert_eq!(ask["outcome"], "balance", "{ask}");
    assert_eq!(nlu_state(), "closed");
}

#[test]
fn a_policy_change_through_the_api_takes_effect_on_the_next_turn_of_a_live_call() {
    let _one = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    // Every answer is unsure (a reprompt), and the intent engine takes
    // 900 ms to its first token: inside the default 3000 ms budget.
    let nlu = json!({"default": {"intent": "balance", "confidence": 0.41}});
    let stages = json!({
        "stt": {"first": {"fixed_ms": 30}, "per_chunk": {"fixed_ms": 30}},
        "nlu": {"first": {"fixed_ms": 900}},
        "tts": {"first": {"fixed_ms": 40}}
    });
    let w = world(
        "ai-policy",
        script("mumble mumble", nlu, stages),
        json!({"max_reprompts": 3}),
    );
    let (wav, _) = w.says_twice("mumble mumble");
    std::thread::scope(|s| {
        let caller = s.spawn(|| call(&w.gw, NUMBER, &wav, &w.dir.path().join("heard.wav"), "14s"));
        // Once the first turn's intent request has answered, the NOC
        // tightens the budget to 500 ms, mid-call.
        wait_until(Duration::from_secs(10), || {
            let m = w.gw.metrics().ok()?;
            (m.value("voxgate_ai_nlu_first_token_ms_count") >= 1.0).then_some(())
        })
        .expect("the first turn's intent request");
        change_policy(&w.gw, &w.key, |p| {
            p["budgets"]["nlu_first_token"] = json!({"soft_ms": 300, "hard_ms": 500});
        })
        .expect("policy changed");
        caller.join().expect("caller thread").expect("call");
    });
    let record = last_call_record(&w.gw, &w.key).expect("record");
    let ask = step(&record, "ask").expect("ask step");
    // Turn 1 ran under the old budget (900 ms was fine: a reprompt);
    // turn 2 under the new one (900 ms > 500 ms: the fallback).
    let decisions = ai_records(ask, "decision");
    assert_eq!(decisions.len(), 1, "{ask}");
    assert!(decisions[0]["text"]
        .as_str()
        .is_some_and(|t| t.ends_with("→ reprompt")));
    assert_eq!(ask["outcome"], "fallback_dtmf", "{ask}");
    assert_eq!(ask["changed"]["ai.reason"], "deadline_nlu_first_token");
    let fallback = &ai_records(ask, "fallback")[0];
    assert_eq!(fallback["detail"]["reason"]["hard_ms"], 500, "{fallback}");
    assert_eq!(ai_records(ask, "transcript").len(), 2, "{ask}");
    assert_eq!(ai_records(ask, "policy").len(), 1, "{ask}");
}
