//! The interpreter on a virtual clock with a scripted fake call.

use serde_json::json;

use super::*;

fn flow(nodes: serde_json::Value) -> Arc<Flow> {
    Arc::new(
        serde_json::from_value(json!({"id": "f", "name": "F", "entry": "start", "nodes": nodes}))
            .expect("flow reads"),
    )
}

/// The call every interpreter and driver test runs.
pub(crate) fn call() -> CallContext {
    CallContext {
        caller_id: "5551234".into(),
        did: "100".into(),
        call_id: "c1".into(),
        tenant: "demo".into(),
        time: "2026-12-02T10:00:00Z".into(),
        hour: 10,
        weekday: "wed".into(),
    }
}

/// A fake call: answers each action with the next scripted result after
/// `step` of virtual time, and records the actions it was asked for.
struct FakeCall {
    now: Instant,
    step: Duration,
    actions: Vec<Action>,
}

impl FakeCall {
    fn new() -> Self {
        Self {
            now: Instant::now(),
            step: Duration::from_millis(500),
            actions: Vec::new(),
        }
    }

    fn run(&mut self, interp: &mut Interpreter, script: impl IntoIterator<Item = ActionResult>) {
        let mut script = script.into_iter();
        while let Some(action) = interp.poll_action() {
            self.actions.push(action.clone());
            self.now += self.step;
            let result = match action {
                Action::Say { .. } | Action::Play { .. } | Action::Hangup { .. } => {
                    ActionResult::Done
                }
                _ => script
                    .next()
                    .expect("the script has a result for every input action"),
            };
            interp.handle_result(self.now, result);
        }
    }
}

fn path(interp: &Interpreter) -> Vec<(String, Option<String>)> {
    interp
        .timeline()
        .iter()
        .map(|s| (s.node.clone(), s.outcome.clone()))
        .collect()
}

fn said(fake: &FakeCall) -> Vec<String> {
    fake.actions
        .iter()
        .filter_map(|a| match a {
            Action::Say { text, .. } => Some(text.clone()),
            Action::Collect {
                prompt: Some(PromptAction::Say { text, .. }),
                ..
            } => Some(text.clone()),
            _ => None,
        })
        .collect()
}

fn support_flow() -> Arc<Flow> {
    flow(json!({
        "start": {"type": "say", "text": "Hello ${caller_id}", "edges": {"next": "menu"}},
        "menu": {"type": "menu", "prompt": {"say": "Press 1 for balance, 2 for an agent"}, "options": ["1", "2"],
                 "no_input_prompt": {"say": "I did not hear a key"}, "no_match_prompt": {"say": "That is not a choice"},
                 "edges": {"1": "lookup", "2": "agent", "no_input": "bye", "no_match": "bye"}},
        "lookup": {"type": "http", "method": "GET", "url": "http://api.example.com/b?n=${caller_id}",
                   "map": {"balance": "/account/balance"}, "edges": {"ok": "tell", "error": "sorry", "timeout": "slow"}},
        "tell": {"type": "say", "text": "Your balance is ${balance}", "edges": {"next": "bye"}},
        "sorry": {"type": "say", "text": "Balance unavailable", "edges": {"next": "bye"}},
        "slow": {"type": "say", "text": "Too slow", "edges": {"next": "bye"}},
        "agent": {"type": "transfer", "mode": "bridged", "target": "sip:agent@127.0.0.1", "headers": {"X-Caller": "${caller_id}"},
                  "edges": {"failed": "sorry"}},
        "bye": {"type": "hangup"}
    }))
}

#[test]
fn menu_http_and_templates_follow_the_path() {
    let mut fake = FakeCall::new();
    let mut i = Interpreter::new(support_flow(), &call(), FallbackPolicy::default(), fake.now);
    fake.run(
        &mut i,
        [
            ActionResult::Digits { digits: "1".into() },
            ActionResult::HttpResponse {
                status: 200,
                body: Some(json!({"account": {"balance": 42.5}})),
            },
        ],
    );
    assert_eq!(i.finished(), Some(Disposition::Completed));
    assert_eq!(
        said(&fake),
        [
            "Hello 5551234",
            "Press 1 for balance, 2 for an agent",
            "Your balance is 42.5"
        ]
    );
    let http = fake
        .actions
        .iter()
        .find_map(|a| match a {
            Action::Http(r) => Some(r.clone()),
            _ => None,
        })
        .expect("http action");
    assert_eq!(http.url, "http://api.example.com/b?n=5551234");
    assert_eq!(
        path(&i),
        [
            ("start".into(), Some("next".into())),
            ("menu".into(), Some("1".into())),
            ("lookup".into(), Some("ok".into())),
            ("tell".into(), Some("next".into())),
            ("bye".into(), Some("hangup".into())),
        ]
    );
    let lookup = &i.timeline()[2];
    assert_eq!(lookup.changed.get("balance"), Some(&json!(42.5)));
    assert_eq!(lookup.entered_ms, 1000);
    assert_eq!(lookup.exited_ms, Some(1500));
}

#[test]
fn menu_reprompts_then_takes_no_input() {
    let mut fake = FakeCall::new();
    let mut i = Interpreter::new(support_flow(), &call(), FallbackPolicy::default(), fake.now);
    fake.run(
        &mut i,
        [
            ActionResult::NoInput,
            ActionResult::Digits { digits: "7".into() },
            ActionResult::NoInput,
        ],
    );
    assert_eq!(
        said(&fake)[1..],
        [
            "Press 1 for balance, 2 for an agent",
            "I did not hear a key",
            "That is not a choice"
        ]
    );
    assert_eq!(path(&i)[1], ("menu".into(), Some("no_input".into())));
    assert_eq!(
        i.timeline()[1].notes,
        [
            "no input",
            "retry 1/2",
            "pressed 7: not a choice",
            "retry 2/2",
            "no input"
        ]
    );
}

#[test]
fn http_errors_and_timeouts_take_their_edges() {
    for (result, node) in [
        (
            ActionResult::HttpResponse {
                status: 500,
                body: None,
            },
            "sorry",
        ),
        (
            ActionResult::HttpFailed {
                timed_out: true,
                reason: "timed out after 3000 ms".into(),
            },
            "slow",
        ),
        (
            ActionResult::HttpFailed {
                timed_out: false,
                reason: "connection refused".into(),
            },
            "sorry",
        ),
    ] {
        let mut fake = FakeCall::new();
        let mut i = Interpreter::new(support_flow(), &call(), FallbackPolicy::default(), fake.now);
        fake.run(
            &mut i,
            [ActionResult::Digits { digits: "1".into() }, result],
        );
        assert_eq!(path(&i)[3].0, node);
        assert_eq!(i.finished(), Some(Disposition::Completed));
    }
}

#[test]
fn transfer_renders_headers_and_failure_takes_failed() {
    let mut fake = FakeCall::new();
    let mut i = Interpreter::new(support_flow(), &call(), FallbackPolicy::default(), fake.now);
    fake.run(
        &mut i,
        [
            ActionResult::Digits { digits: "2".into() },
            ActionResult::TransferFailed {
                no_answer: true,
                reason: "486 Busy".into(),
            },
        ],
    );
    let headers = fake.actions.iter().find_map(|a| match a {
        Action::Transfer { headers, .. } => Some(headers.clone()),
        _ => None,
    });
    assert_eq!(
        headers,
        Some(vec![("X-Caller".to_string(), "5551234".to_string())])
    );
    assert_eq!(path(&i)[2], ("agent".into(), Some("failed".into())));
    assert_eq!(i.variables()["transfer.status"], json!("no_answer"));
}

#[test]
fn a_successful_transfer_ends_the_flow() {
    let mut fake = FakeCall::new();
    let mut i = Interpreter::new(support_flow(), &call(), FallbackPolicy::default(), fake.now);
    fake.run(
        &mut i,
        [
            ActionResult::Digits { digits: "2".into() },
            ActionResult::Transferred,
        ],
    );
    assert_eq!(i.finished(), Some(Disposition::Transferred));
}

#[test]
fn failures_play_the_apology_and_take_the_tenant_fallback() {
    let f = flow(
        json!({"start": {"type": "play", "audio": "missing.wav", "edges": {"next": "bye"}}, "bye": {"type": "hangup"}}),
    );
    let policy = FallbackPolicy {
        apology: "Sorry about that".into(),
        action: FallbackAction::Agent {
            target: "sip:agents@127.0.0.1".into(),
            mode: TransferMode::Blind,
        },
    };
    let mut i = Interpreter::new(f, &call(), policy, Instant::now());
    assert_eq!(
        i.poll_action(),
        Some(Action::Play {
            audio: "missing.wav".into()
        })
    );
    i.handle_result(
        Instant::now(),
        ActionResult::Failed {
            reason: "missing.wav: no such file".into(),
        },
    );
    assert!(
        matches!(i.poll_action(), Some(Action::Say { text, .. }) if text == "Sorry about that")
    );
    i.handle_result(Instant::now(), ActionResult::Done);
    assert!(
        matches!(i.poll_action(), Some(Action::Transfer { target, .. }) if target == "sip:agents@127.0.0.1")
    );
    // The fallback agent is unreachable: hang up rather than leave silence.
    i.handle_result(
        Instant::now(),
        ActionResult::TransferFailed {
            no_answer: false,
            reason: "503".into(),
        },
    );
    assert!(matches!(i.poll_action(), Some(Action::Hangup { .. })));
    i.handle_result(Instant::now(), ActionResult::Done);
    assert_eq!(i.finished(), Some(Disposition::Fallback));
    assert_eq!(i.timeline()[1].node, "(fallback)");
}

#[test]
fn a_runtime_loop_is_cut_off() {
    // Validation refuses this flow; the interpreter must survive it anyway.
    let f = flow(json!({
        "start": {"type": "set", "values": {"n": 1}, "edges": {"next": "check"}},
        "check": {"type": "condition", "branches": [{"outcome": "again", "when": "n > 0"}], "edges": {"again": "start", "else": "start"}}
    }));
    let mut i = Interpreter::new(f, &call(), FallbackPolicy::default(), Instant::now());
    assert!(
        matches!(i.poll_action(), Some(Action::Say { .. })),
        "apology first"
    );
    i.handle_result(Instant::now(), ActionResult::Done);
    assert!(matches!(i.poll_action(), Some(Action::Hangup { .. })));
    assert!(i.timeline().len() <= MAX_IMMEDIATE_STEPS as usize + 2);
}

#[test]
fn conditions_sets_and_gather() {
    let f = flow(json!({
        "start": {"type": "gather", "variable": "account", "max_digits": 6, "min_digits": 4, "terminator": "#",
                  "prompt": {"say": "Enter your account"}, "edges": {"next": "mark", "no_input": "bye"}},
        "mark": {"type": "set", "values": {"greeting": "Account ${account}", "vip": true}, "edges": {"next": "route"}},
        "route": {"type": "condition", "branches": [
                    {"outcome": "gold", "when": "vip && account == \"1234\""},
                    {"outcome": "other", "when": "vip"}],
                  "edges": {"gold": "gold", "other": "bye", "else": "bye"}},
        "gold": {"type": "say", "text": "${greeting}, welcome back", "edges": {"next": "bye"}},
        "bye": {"type": "hangup"}
    }));
    let mut fake = FakeCall::new();
    let mut i = Interpreter::new(f.clone(), &call(), FallbackPolicy::default(), fake.now);
    fake.run(
        &mut i,
        [ActionResult::Digits {
            digits: "1234".into(),
        }],
    );
    assert_eq!(
        said(&fake),
        ["Enter your account", "Account 1234, welcome back"]
    );
    let mut fake = FakeCall::new();
    let mut i = Interpreter::new(f, &call(), FallbackPolicy::default(), fake.now);
    fake.run(
        &mut i,
        [ActionResult::Digits {
            digits: "12".into(),
        }],
    );
    assert_eq!(path(&i)[0], ("start".into(), Some("no_input".into())));
}

#[test]
fn the_caller_hanging_up_ends_the_flow_where_it_is() {
    let mut i = Interpreter::new(
        support_flow(),
        &call(),
        FallbackPolicy::default(),
        Instant::now(),
    );
    assert!(i.poll_action().is_some());
    i.handle_result(Instant::now(), ActionResult::CallerHungUp);
    assert_eq!(i.poll_action(), None);
    assert_eq!(i.finished(), Some(Disposition::CallerHungUp));
    assert_eq!(path(&i), [("start".into(), Some("caller_hung_up".into()))]);
}

#[test]
fn ai_outcomes_and_variables() {
    let f = flow(json!({
        "start": {"type": "ai", "intents": [{"name": "balance", "examples": ["my balance"]}],
                  "edges": {"balance": "bye", "escalate": "bye", "fallback_dtmf": "menu", "error": "bye"}},
        "menu": {"type": "menu", "prompt": {"say": "Press 1"}, "options": ["1"], "edges": {"1": "bye"}},
        "bye": {"type": "hangup"}
    }));
    let mut i = Interpreter::new(f, &call(), FallbackPolicy::default(), Instant::now());
    assert!(matches!(i.poll_action(), Some(Action::Ai { node, .. }) if node == "start"));
    let vars = BTreeMap::from([
        ("ai.intent".to_string(), json!("balance")),
        ("ai.confidence".to_string(), json!(0.3)),
    ]);
    // The orchestrator asks for an agent fallback, but only a DTMF fallback is connected.
    i.handle_result(
        Instant::now(),
        ActionResult::Ai {
            outcome: "fallback_agent".into(),
            variables: vars,
            records: Vec::new(),
        },
    );
    assert_eq!(i.current_node(), Some("menu"));
    assert_eq!(i.variables()["ai.confidence"], json!(0.3));
}

#[test]
fn a_hang_up_in_the_ai_node_keeps_its_variables_and_records() {
    let f = flow(json!({
        "start": {"type": "ai", "intents": [{"name": "balance", "examples": ["my balance"]}],
                  "edges": {"balance": "bye", "escalate": "bye", "fallback_dtmf": "bye", "error": "bye"}},
        "bye": {"type": "hangup"}
    }));
    let mut i = Interpreter::new(f, &call(), FallbackPolicy::default(), Instant::now());
    assert!(i.poll_action().is_some());
    i.handle_result(
        Instant::now(),
        ActionResult::Ai {
            outcome: AI_CALLER_HUNG_UP.into(),
            variables: BTreeMap::from([("ai.transcript".to_string(), json!("mumble"))]),
            records: vec![AiRecord {
                at_ms: 10,
                kind: "hangup".into(),
                text: "the caller hung up".into(),
                detail: Value::Null,
            }],
        },
    );
    assert_eq!(i.poll_action(), None);
    assert_eq!(i.finished(), Some(Disposition::CallerHungUp));
    assert_eq!(path(&i), [("start".into(), Some("caller_hung_up".into()))]);
    assert_eq!(i.variables()["ai.transcript"], json!("mumble"));
    assert_eq!(i.timeline()[0].ai.len(), 1);
}
