#![allow(clippy::unwrap_used)]

use super::*;
use crate::manifest::Manifest;
use crate::outcome::{Decision, FallbackEvent};

const SET: &str = r#"
name: t
tenant: a
flow: f.json
defaults: {did: "1"}
thresholds: {intent_accuracy: 0.9, escalation_recall: 1.0, turn_latency_p95_ms: 1500}
calls:
  - id: bal
    turns:
      - say: what is my balance
        reference: what is my balance
        expect: {intent: balance, min_confidence: 0.6, escalate: false}
    expect: {disposition: contained, max_turn_latency_ms: 1500}
  - id: angry
    turns:
      - say: I want to complain
        expect: {intent: complaint, escalate: true, reason: sensitive_intent}
    expect: {disposition: escalated}
"#;

fn decision(intent: &str, conf: f64, action: &str, rule: &str) -> Decision {
    Decision {
        rule: rule.into(),
        action: action.into(),
        intent: Some(intent.into()),
        confidence: Some(conf),
        text: String::new(),
    }
}

fn outcome(d: Decision, disp: Disposition) -> GatewayOutcome {
    GatewayOutcome {
        record_id: "x".into(),
        flow_version: 1,
        record_disposition: None,
        disposition: Some(disp),
        decisions: vec![d],
        fallbacks: vec![],
        stages: [("turn".to_string(), vec![400])].into(),
        transcripts: vec!["what is my balance".into()],
        timeline: vec![],
    }
}

fn wire(ms: u32) -> Vec<WireTurn> {
    vec![WireTurn {
        turn: 0,
        end_ms: 1000,
        reply_ms: Some(1000 + ms),
        latency_ms: Some(ms),
    }]
}

struct Run {
    m: Manifest,
    outcomes: Vec<GatewayOutcome>,
    wires: Vec<Vec<WireTurn>>,
}

impl Run {
    fn metrics(&self) -> (Metrics, Vec<Vec<Check>>) {
        let checks: Vec<Vec<Check>> = self
            .m
            .calls
            .iter()
            .zip(&self.outcomes)
            .zip(&self.wires)
            .map(|((c, o), w)| check_call(c, w, Some(o), None))
            .collect();
        let facts: Vec<CallFacts> = self
            .m
            .calls
            .iter()
            .enumerate()
            .map(|(i, c)| CallFacts {
                call: c,
                answered: true,
                wire: &self.wires[i],
                gw: Some(&self.outcomes[i]),
                checks: &checks[i],
                fallback_heard_ms: None,
            })
            .collect();
        (compute(&facts, true), checks)
    }
}

fn good() -> Run {
    Run {
        m: Manifest::parse(SET, "m").unwrap(),
        outcomes: vec![
            outcome(
                decision("balance", 0.93, "route", "confident"),
                Disposition::Contained,
            ),
            outcome(
                decision("complaint", 0.9, "escalate", "sensitive_intent"),
                Disposition::Escalated,
            ),
        ],
        wires: vec![wire(700), wire(900)],
    }
}

#[test]
fn a_good_run_passes_every_expectation_and_threshold() {
    let r = good();
    let (m, checks) = r.metrics();
    assert!(checks.iter().flatten().all(|c| c.pass), "{checks:?}");
    assert_eq!(m.intent_accuracy, Some(1.0));
    assert_eq!(m.escalation.precision, Some(1.0));
    assert_eq!(m.escalation.recall, Some(1.0));
    assert_eq!(m.containment_rate, Some(0.5));
    assert_eq!(m.call_pass_rate, Some(1.0));
    assert_eq!(m.wer, Some(0.0));
    assert_eq!(m.latency["wire_turn"].p50, 700);
    assert_eq!(m.latency["wire_turn"].p95, 900);
    assert_eq!(m.latency["gateway_turn"].count, 2);
    assert!(check_thresholds(&r.m.thresholds, &m).iter().all(|c| c.pass));
}

#[test]
fn a_missed_escalation_shows_in_the_confusion_matrix_recall_and_thresholds() {
    let mut r = good();
    r.outcomes[1] = outcome(
        decision("balance", 0.7, "route", "confident"),
        Disposition::Contained,
    );
    let (m, checks) = r.metrics();
    let failed: Vec<&str> = checks[1]
        .iter()
        .filter(|c| !c.pass)
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(
        failed,
        [
            "turns[0].intent",
            "turns[0].escalate",
            "turns[0].reason",
            "disposition"
        ]
    );
    assert_eq!(m.intent_accuracy, Some(0.5));
    assert_eq!(m.confusion["complaint"]["balance"], 1);
    assert_eq!(m.escalation.recall, Some(0.0));
    assert_eq!(m.escalation.precision, None, "nothing escalated");
    assert_eq!(m.call_pass_rate, Some(0.5));
    let t = check_thresholds(&r.m.thresholds, &m);
    let failed: Vec<&str> = t
        .iter()
        .filter(|c| !c.pass)
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(failed, ["intent_accuracy", "escalation_recall"]);
}

#[test]
fn slow_replies_fail_the_latency_expectation_and_no_data_fails_a_threshold() {
    let mut r = good();
    r.wires[0] = wire(2500);
    let (m, checks) = r.metrics();
    assert!(
        !checks[0]
            .iter()
            .find(|c| c.name == "max_turn_latency_ms")
            .unwrap()
            .pass
    );
    assert!(
        !check_thresholds(&r.m.thresholds, &m)
            .iter()
            .find(|c| c.name == "turn_latency_p95_ms")
            .unwrap()
            .pass
    );
    r.wires = vec![vec![], vec![]];
    let (m, _) = r.metrics();
    let t = check_thresholds(&r.m.thresholds, &m);
    let lat = t.iter().find(|c| c.name == "turn_latency_p95_ms").unwrap();
    assert!(!lat.pass && lat.actual == "no data");
}

#[test]
fn fallbacks_are_counted_by_reason() {
    let mut r = good();
    r.outcomes[0].fallbacks.push(FallbackEvent {
        outcome: Some("fallback_dtmf".into()),
        reason: "deadline".into(),
        text: String::new(),
        at_call_ms: 4000,
    });
    let (m, _) = r.metrics();
    assert_eq!(m.fallbacks_by_reason["deadline"], 1);
    assert_eq!(m.fallback_rate, Some(0.5));
}

#[test]
fn a_worse_run_regresses_against_the_baseline_and_the_same_run_does_not() {
    let base = good().metrics().0;
    assert!(regressions(&base, &base, &Tolerances::default()).is_empty());
    let mut r = good();
    r.outcomes[1] = outcome(
        decision("balance", 0.7, "route", "confident"),
        Disposition::Contained,
    );
    r.wires = vec![wire(1400), wire(1600)];
    let worse = r.metrics().0;
    let names: Vec<String> = regressions(&base, &worse, &Tolerances::default())
        .into_iter()
        .map(|r| r.metric)
        .collect();
    for want in [
        "intent_accuracy",
        "escalation_recall",
        "call_pass_rate",
        "latency.wire_turn.p95",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} in {names:?}");
    }
    // Better is never a regression.
    assert!(
        regressions(&worse, &base, &Tolerances::default())
            .iter()
            .all(|r| r.metric == "containment_rate"),
        "only containment, which the wrong routing raised"
    );
}

#[test]
fn wer_and_percentiles() {
    assert_eq!(wer("what is my balance", "What is my balance?"), 0.0);
    assert_eq!(wer("what is my balance", "what is balance"), 0.25);
    assert_eq!(wer("a b", "x y z"), 1.5);
    let p = percentiles((1..=100).collect());
    assert_eq!((p.p50, p.p95, p.p99, p.max), (50, 95, 99, 100));
    assert_eq!(percentiles(vec![]).count, 0);
}

#[test]
fn wire_turns_pair_each_waiting_turn_with_the_next_reply() {
    let spans = vec![
        TurnSpan {
            turn: 0,
            kind: "say".into(),
            start_ms: 500,
            end_ms: 1500,
            awaits_reply: true,
        },
        TurnSpan {
            turn: 1,
            kind: "silence".into(),
            start_ms: 1500,
            end_ms: 3000,
            awaits_reply: false,
        },
        TurnSpan {
            turn: 2,
            kind: "say".into(),
            start_ms: 3000,
            end_ms: 3600,
            awaits_reply: true,
        },
    ];
    let mut levels = vec![0.0; 300];
    levels[100..110].iter_mut().for_each(|l| *l = 3000.0);
    let w = wire_turns(&spans, &levels);
    assert_eq!(w[0].latency_ms, Some(500));
    assert_eq!(w[1].latency_ms, None, "nothing after the second turn");
}
