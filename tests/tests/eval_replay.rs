//! Eval sets end to end: `voxgate eval run` replays a small set through a
//! real `voxgate serve` (real SIP, real RTP, the real flow and AI node)
//! whose STT/NLU/TTS are the provider simulator (the test double of the
//! remote providers, over the real worker protocol). It checks the
//! metrics against what the calls really did, that report.html and the
//! JUnit XML exist and parse, and that a run fails against a better
//! baseline.
//!
//! The simulator's script comes from `voxgate eval simulator-script`: its
//! STT hears each turn's built WAV, after G.711 and resampling, as that
//! turn's text (speech-envelope matching), so every call gets its own
//! intent. The scripted NLU misreads one utterance on purpose ("this
//! service is terrible" as balance): the `complaint-missed` call fails,
//! which the metrics must show.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::{json, Value};
use voxgate_tests::ai::{admin_key, gateway_with_simulator, publish, temp, Simulator};
use voxgate_tests::{repo_root, voxgate_bin};

const NUMBER: &str = "5400";

fn flow() -> Value {
    json!({"id": "eval-e2e", "name": "Eval e2e", "entry": "ask", "nodes": {
        "ask": {"type": "ai",
                "greeting": "Welcome to Acme.",
                "intents": [
                    {"name": "balance", "examples": ["what is my balance"], "reply": "Your balance is twelve euros."},
                    {"name": "complaint", "examples": ["I want to complain"]}
                ],
                "escalate_intents": ["complaint"],
                "dtmf": {"0": "agent"},
                "edges": {"balance": "thanks", "escalate": "agent", "fallback_dtmf": "bye", "error": "bye"}},
        "thanks": {"type": "say", "text": "Thank you.", "edges": {"next": "bye"}},
        "agent": {"type": "transfer", "mode": "blind", "target": "sip:agent@127.0.0.1:9",
                  "timeout_ms": 1000, "edges": {"failed": "bye"}},
        "bye": {"type": "hangup"}
    }})
}

const MANIFEST: &str = r#"
name: e2e
tenant: acme
flow: flow.json
defaults: {did: "5400", pause_ms: 2500, hangup_after_ms: 11000}
thresholds: {intent_accuracy: 0.7, turn_latency_p95_ms: 3000}
calls:
  - id: balance-plain
    turns:
      - say: what is my balance
        reference: what is my balance
        expect: {intent: balance, min_confidence: 0.6, escalate: false, reason: confident}
    expect: {disposition: contained, max_turn_latency_ms: 3000}
  - id: balance-noisy
    turns:
      - say: what is my balance
        voice: en-gb
        rate: 150
        noise: {kind: pink, snr_db: 15, seed: 4}
        expect: {intent: balance, escalate: false}
    expect: {disposition: contained}
  - id: barge-in
    turns:
      - say: what is my balance
        at_ms: 400
        expect: {intent: balance}
    expect: {disposition: contained}
  - id: keys-agent
    turns:
      - dtmf: "0"
        at_ms: 2500
        expect: {escalate: true, reason: dtmf}
    expect: {disposition: escalated}
  - id: complaint
    turns:
      - say: I want to complain
        expect: {intent: complaint, escalate: true, reason: sensitive_intent}
    expect: {disposition: escalated}
  - id: complaint-missed
    turns:
      - say: this service is terrible
        expect: {intent: complaint, escalate: true, reason: sensitive_intent}
    expect: {disposition: escalated}
"#;

/// `voxgate eval simulator-script`'s STT (an entry per built turn) with
/// this test's NLU answers and stage delays.
fn script(set: &Path) -> Value {
    let out = eval(&["simulator-script", &set.display().to_string()]);
    assert!(out.status.success(), "{}", text(&out));
    let generated: Value = serde_json::from_slice(&out.stdout).expect("script JSON");
    assert_eq!(generated["stt"]["match"], "envelope", "{generated}");
    let entries = generated["stt"]["transcripts"].as_array().expect("entries");
    // Every spoken turn: the DTMF call has none.
    assert_eq!(entries.len(), 5, "{generated}");
    json!({
        "seed": 1,
        "stt": generated["stt"],
        "nlu": {"results": [
            {"utterance": "what is my balance", "result": {"intent": "balance", "confidence": 0.93}},
            {"utterance": "I want to complain", "result": {"intent": "complaint", "confidence": 0.91}},
            {"utterance": "this service is terrible", "result": {"intent": "balance", "confidence": 0.8}}
        ]},
        "tts": {"voice": {"kind": "tone", "hz": 440.0, "ms_per_char": 40}, "chunk_ms": 100},
        "stages": {
            "stt": {"first": {"fixed_ms": 30}, "per_chunk": {"fixed_ms": 30}},
            "nlu": {"first": {"fixed_ms": 60}},
            "tts": {"first": {"fixed_ms": 40}}
        }
    })
}

fn eval(args: &[&str]) -> Output {
    Command::new(voxgate_bin())
        .arg("eval")
        .args(args)
        .output()
        .expect("voxgate eval runs")
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\n{}\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn read_json(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).expect("report.json")).expect("JSON")
}

/// A small XML well-formedness check: every tag closes in order and the
/// document has one root. Returns the number of `testcase` elements.
fn junit_cases(xml: &str) -> Result<usize, String> {
    let body = xml
        .strip_prefix("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n")
        .ok_or("no XML declaration")?;
    let mut stack: Vec<String> = Vec::new();
    let (mut cases, mut roots) = (0, 0);
    let mut rest = body;
    while let Some(start) = rest.find('<') {
        let end = rest[start..].find('>').ok_or("unclosed tag")? + start;
        let tag = &rest[start + 1..end];
        if let Some(name) = tag.strip_prefix('/') {
            if stack.pop().as_deref() != Some(name) {
                return Err(format!("</{name}> closes the wrong element"));
            }
        } else {
            let name = tag
                .split_whitespace()
                .next()
                .unwrap_or("")
                .trim_end_matches('/');
            if stack.is_empty() {
                roots += 1;
            }
            if name == "testcase" {
                cases += 1;
            }
            if !tag.ends_with('/') {
                stack.push(name.to_string());
            }
        }
        rest = &rest[end + 1..];
    }
    if !stack.is_empty() || roots != 1 {
        return Err(format!("unbalanced: open {stack:?}, {roots} roots"));
    }
    Ok(cases)
}

#[test]
fn the_shipped_sets_are_valid_with_at_least_60_calls() {
    let mut calls = 0;
    for set in ["l1-support", "telecom-care", "edge-cases"] {
        let dir = repo_root().join("eval-sets/sets").join(set);
        let out = eval(&["validate", &dir.display().to_string()]);
        assert!(out.status.success(), "{set}: {}", text(&out));
        let n: usize = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .nth(1)
            .and_then(|n| n.parse().ok())
            .expect("ok: N calls");
        calls += n;
    }
    assert!(calls >= 60, "{calls} calls in the shipped sets");
}

#[test]
fn a_small_set_replays_through_the_gateway_and_reports_what_happened() {
    let dir = temp("eval-e2e").expect("temp dir");
    let set = dir.path().join("set");
    std::fs::create_dir_all(&set).expect("set dir");
    std::fs::write(set.join("manifest.yaml"), MANIFEST).expect("manifest");
    std::fs::write(
        set.join("flow.json"),
        serde_json::to_vec_pretty(&flow()).expect("flow"),
    )
    .expect("flow file");

    let sim = Simulator::start(&script(&set)).expect("simulator starts");
    let gw = gateway_with_simulator(&sim, dir.path()).expect("gateway starts");
    let key = admin_key(&gw).expect("admin key");
    publish(&gw, &key, dir.path(), &flow(), NUMBER).expect("flow published");

    let set_arg = set.display().to_string();
    let target = format!("sip:{}", gw.sip_addr());
    let api = format!("http://{}", gw.http_addr());
    let run = |report: &Path, extra: &[&str]| {
        let report = report.display().to_string();
        let mut args = vec![
            "run",
            &set_arg,
            "--target",
            &target,
            "--api",
            &api,
            "--key",
            &key,
            "--concurrency",
            "3",
            "--report",
            &report,
            "--stt-engine",
            "simulator",
            "--nlu-engine",
            "simulator",
            "--tts-engine",
            "simulator (tone)",
        ];
        args.extend_from_slice(extra);
        eval(&args)
    };

    // The first run: thresholds met, exit 0.
    let a = dir.path().join("a");
    let out = run(&a, &[]);
    assert!(out.status.success(), "{}", text(&out));
    let r = read_json(&a.join("report.json"));
    let m = &r["metrics"];
    assert_eq!(m["calls"], 6, "{m}");
    assert_eq!(m["answered"], 6, "{m}");
    let calls = r["calls"].as_array().expect("calls");
    let call = |id: &str| calls.iter().find(|c| c["id"] == id).expect("call");
    for id in [
        "balance-plain",
        "balance-noisy",
        "barge-in",
        "keys-agent",
        "complaint",
    ] {
        assert_eq!(call(id)["passed"], true, "{}", call(id));
    }
    // Each caller was heard as what they said, through G.711 and the
    // resampler (the default transcript would be "what is my balance").
    let heard = |id: &str| {
        call(id)["gateway"]["transcripts"][0]
            .as_str()
            .unwrap_or("")
            .to_lowercase()
    };
    assert_eq!(
        heard("balance-noisy"),
        "what is my balance",
        "{}",
        call("balance-noisy")
    );
    assert_eq!(
        heard("complaint"),
        "i want to complain",
        "{}",
        call("complaint")
    );
    assert_eq!(
        heard("complaint-missed"),
        "this service is terrible",
        "{}",
        call("complaint-missed")
    );
    assert_eq!(call("complaint")["gateway"]["disposition"], "escalated");
    // The gateway's decisions, read from its call records.
    let plain = &call("balance-plain")["gateway"];
    assert_eq!(plain["decisions"][0]["intent"], "balance", "{plain}");
    assert_eq!(plain["disposition"], "contained");
    assert_eq!(call("keys-agent")["gateway"]["disposition"], "escalated");
    // The reply was measured on the wire.
    let wire = call("balance-plain")["wire"][0]["latency_ms"]
        .as_u64()
        .expect("a reply was heard");
    assert!(wire > 0 && wire <= 3000, "{wire} ms");
    // The deliberate miss: the NLU read the complaint as "balance".
    let missed = call("complaint-missed");
    assert_eq!(missed["passed"], false);
    assert_eq!(m["confusion"]["complaint"]["balance"], 1, "{m}");
    assert_eq!(m["confusion"]["complaint"]["complaint"], 1, "{m}");
    assert_eq!(m["confusion"]["balance"]["balance"], 3, "{m}");
    assert_eq!(m["escalation"]["true_positive"], 2, "{m}");
    assert_eq!(m["escalation"]["false_negative"], 1, "{m}");
    assert_eq!(m["escalation"]["false_positive"], 0, "{m}");
    assert_eq!(m["escalation"]["precision"], 1.0, "{m}");
    let recall = m["escalation"]["recall"].as_f64().expect("recall");
    assert!((recall - 2.0 / 3.0).abs() < 1e-9, "{m}");
    let total = m["intent_total"].as_u64().expect("intent_total");
    let correct = m["intent_correct"].as_u64().expect("intent_correct");
    assert_eq!(total, 5, "{m}");
    assert_eq!(correct, 4, "{m}");
    assert_eq!(m["intent_accuracy"], 0.8, "{m}");
    assert!(
        m["latency"]["wire_turn"]["count"].as_u64().unwrap_or(0) >= 3,
        "{m}"
    );
    assert!(
        m["latency"]["gateway_turn"]["count"].as_u64().unwrap_or(0) >= 3,
        "{m}"
    );
    assert!(
        r["engines_note"]
            .as_str()
            .unwrap_or("")
            .contains("SIMULATOR"),
        "{r}"
    );
    assert_eq!(r["passed"], true);

    // JUnit parses: a case per call and per threshold, the miss a failure.
    let junit = std::fs::read_to_string(a.join("junit.xml")).expect("junit.xml");
    assert_eq!(junit_cases(&junit), Ok(6 + 2), "{junit}");
    assert!(junit.contains("name=\"complaint-missed\""));
    assert!(
        junit.contains("<failure message=\"turns[0].intent: expected complaint, got balance\""),
        "{junit}"
    );
    // The HTML is one self-contained page.
    let html = std::fs::read_to_string(a.join("report.html")).expect("report.html");
    assert!(html.starts_with("<!DOCTYPE html>") && html.trim_end().ends_with("</html>"));
    assert!(html.contains("id=\"engines\"") && html.contains("SIMULATOR"));
    assert!(html.contains("<svg id=\"confusion\"") && html.contains("class=\"hist\""));
    assert!(html.contains("<audio controls") && html.contains("data:audio/wav;base64,UklGR"));
    for remote in ["src=\"http", "href=\"http", "<script", "<link"] {
        assert!(
            !html.contains(remote),
            "no {remote} in a self-contained report"
        );
    }

    // A baseline better than this run: the run regresses and fails.
    let mut better = r.clone();
    better["metrics"]["intent_accuracy"] = json!(1.0);
    better["metrics"]["escalation"]["recall"] = json!(1.0);
    let baseline = dir.path().join("better.json");
    std::fs::write(&baseline, better.to_string()).expect("baseline");
    let b = dir.path().join("b");
    let out = run(&b, &["--baseline", &baseline.display().to_string()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let rb = read_json(&b.join("report.json"));
    let regressed: Vec<&str> = rb["regressions"]
        .as_array()
        .expect("regressions")
        .iter()
        .filter_map(|g| g["metric"].as_str())
        .collect();
    assert!(regressed.contains(&"intent_accuracy"), "{regressed:?}");
    assert!(regressed.contains(&"escalation_recall"), "{regressed:?}");
    assert!(
        rb["thresholds"]
            .as_array()
            .expect("t")
            .iter()
            .all(|t| t["pass"] == true),
        "{rb}"
    );
    assert!(std::fs::read_to_string(b.join("junit.xml"))
        .expect("junit")
        .contains("regressions"));
    drop(gw);
}
