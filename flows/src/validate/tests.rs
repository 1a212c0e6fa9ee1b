//! One test per validation rule.

use serde_json::json;

use super::*;

fn flow(nodes: serde_json::Value) -> Flow {
    serde_json::from_value(json!({"id": "f", "name": "F", "entry": "start", "nodes": nodes}))
        .expect("flow reads")
}

fn ctx() -> ValidationContext {
    ValidationContext {
        http: HttpAllowList {
            hosts: vec!["api.example.com".into(), "*.crm.example.net".into()],
            allow_private: false,
        },
    }
}

fn codes(report: &Report) -> Vec<(&str, &str)> {
    report
        .errors
        .iter()
        .map(|e| (e.node.as_deref().unwrap_or(""), e.code))
        .collect()
}

#[test]
fn a_good_flow_has_no_findings() {
    let f = flow(json!({
        "start": {"type": "say", "text": "Hello ${caller_id}", "edges": {"next": "menu"}},
        "menu": {"type": "menu", "prompt": {"say": "Press 1"}, "options": ["1"], "edges": {"1": "lookup", "no_input": "bye"}},
        "lookup": {"type": "http", "method": "GET", "url": "https://api.example.com/balance?n=${caller_id}",
                   "map": {"balance": "/balance"}, "edges": {"ok": "tell", "error": "bye"}},
        "tell": {"type": "say", "text": "Your balance is ${balance}", "edges": {"next": "bye"}},
        "bye": {"type": "hangup"}
    }));
    let r = validate(&f, &ctx());
    assert_eq!(r.errors, vec![]);
    assert_eq!(r.warnings, vec![]);
}

#[test]
fn missing_entry() {
    let f: Flow = serde_json::from_value(
        json!({"id": "f", "name": "F", "entry": "nope", "nodes": {"bye": {"type": "hangup"}}}),
    )
    .expect("reads");
    let r = validate(&f, &ctx());
    assert_eq!(r.errors[0].code, "missing_entry");
    assert_eq!(r.errors[0].path, "/entry");
}

#[test]
fn edge_to_missing_node() {
    let f = flow(json!({"start": {"type": "say", "text": "hi", "edges": {"next": "ghost"}}}));
    let r = validate(&f, &ctx());
    assert_eq!(codes(&r), [("start", "missing_target")]);
    assert_eq!(r.errors[0].path, "/nodes/start/edges/next");
}

#[test]
fn required_edge_missing_and_unknown_outcome() {
    let f = flow(json!({
        "start": {"type": "http", "method": "GET", "url": "https://api.example.com/x", "edges": {"ok": "bye", "maybe": "bye"}},
        "bye": {"type": "hangup"}
    }));
    let r = validate(&f, &ctx());
    let c = codes(&r);
    assert!(c.contains(&("start", "missing_edge")), "{c:?}");
    assert!(c.contains(&("start", "unknown_outcome")), "{c:?}");
}

#[test]
fn invalid_parameters() {
    let f = flow(json!({
        "start": {"type": "menu", "prompt": {"say": ""}, "options": ["1", "1", "x"], "timeout_ms": 10,
                  "edges": {"1": "bye", "x": "bye"}},
        "bye": {"type": "hangup"}
    }));
    let r = validate(&f, &ctx());
    let c = codes(&r);
    for code in [
        "missing_parameter",
        "duplicate",
        "invalid_parameter",
        "out_of_range",
    ] {
        assert!(c.contains(&("start", code)), "{code} missing from {c:?}");
    }
}

#[test]
fn variable_never_set_on_any_path() {
    let f = flow(json!({
        "start": {"type": "say", "text": "Balance ${balance}", "edges": {"next": "bye"}},
        "bye": {"type": "hangup"}
    }));
    let r = validate(&f, &ctx());
    assert_eq!(codes(&r), [("start", "unset_variable")]);
    assert_eq!(r.errors[0].path, "/nodes/start/text");
}

#[test]
fn variable_set_only_on_the_ok_edge_of_http_is_unset_after_error() {
    let f = flow(json!({
        "start": {"type": "http", "method": "GET", "url": "https://api.example.com/x", "map": {"balance": "/b"},
                  "edges": {"ok": "bye", "error": "sorry"}},
        "sorry": {"type": "say", "text": "Balance ${balance}", "edges": {"next": "bye"}},
        "bye": {"type": "hangup"}
    }));
    assert_eq!(codes(&validate(&f, &ctx())), [("sorry", "unset_variable")]);
}

#[test]
fn condition_variables_are_checked_too() {
    let f = flow(json!({
        "start": {"type": "condition", "branches": [{"outcome": "vip", "when": "tier == \"gold\""}],
                  "edges": {"vip": "bye", "else": "bye"}},
        "bye": {"type": "hangup"}
    }));
    assert_eq!(codes(&validate(&f, &ctx())), [("start", "unset_variable")]);
}

#[test]
fn loop_without_caller_input() {
    let f = flow(json!({
        "start": {"type": "set", "values": {"n": 1}, "edges": {"next": "check"}},
        "check": {"type": "condition", "branches": [{"outcome": "again", "when": "n > 0"}],
                  "edges": {"again": "start", "else": "bye"}},
        "bye": {"type": "hangup"}
    }));
    let r = validate(&f, &ctx());
    assert_eq!(
        r.errors.iter().filter(|e| e.code == "busy_loop").count(),
        1,
        "{:?}",
        r.errors
    );
}

#[test]
fn loop_through_a_menu_is_fine() {
    let f = flow(json!({
        "start": {"type": "menu", "prompt": {"say": "Press 1 to hear this again"}, "options": ["1", "2"],
                  "edges": {"1": "again", "2": "bye"}},
        "again": {"type": "say", "text": "Again", "edges": {"next": "start"}},
        "bye": {"type": "hangup"}
    }));
    assert_eq!(validate(&f, &ctx()).errors, vec![]);
}

#[test]
fn http_host_not_on_allow_list_and_private_addresses() {
    for url in [
        "https://evil.example.org/x",
        "http://127.0.0.1:8080/x",
        "http://10.0.0.5/x",
        "http://localhost/x",
        "http://[::1]/x",
        "ftp://api.example.com/x",
        "https://${host}/x",
    ] {
        let f = flow(json!({
            "start": {"type": "http", "method": "GET", "url": url, "edges": {"ok": "bye", "error": "bye"}},
            "bye": {"type": "hangup"}
        }));
        let r = validate(&f, &ctx());
        assert!(
            r.errors.iter().any(|e| e.code == "host_not_allowed"
                || e.code == "invalid_url"
                || e.code == "unset_variable"),
            "{url}: {:?}",
            r.errors
        );
    }
    let f = flow(json!({
        "start": {"type": "http", "method": "GET", "url": "https://a.crm.example.net/x", "edges": {"ok": "bye", "error": "bye"}},
        "bye": {"type": "hangup"}
    }));
    assert_eq!(validate(&f, &ctx()).errors, vec![]);
}

#[test]
fn private_hosts_need_an_explicit_opt_in() {
    let f = flow(json!({
        "start": {"type": "http", "method": "GET", "url": "http://127.0.0.1:8080/demo", "edges": {"ok": "bye", "error": "bye"}},
        "bye": {"type": "hangup"}
    }));
    let mut c = ctx();
    c.http.hosts.push("127.0.0.1".into());
    assert_eq!(codes(&validate(&f, &c)), [("start", "host_not_allowed")]);
    c.http.allow_private = true;
    assert_eq!(validate(&f, &c).errors, vec![]);
}

#[test]
fn unreachable_nodes_are_warnings() {
    let f = flow(json!({"start": {"type": "hangup"}, "orphan": {"type": "hangup"}}));
    let r = validate(&f, &ctx());
    assert!(r.is_valid());
    assert_eq!(r.warnings.len(), 1);
    assert_eq!(r.warnings[0].node.as_deref(), Some("orphan"));
}

#[test]
fn ai_node_needs_a_fallback_and_known_escalations() {
    let f = flow(json!({
        "start": {"type": "ai", "intents": [{"name": "balance", "examples": ["what is my balance"]}],
                  "escalate_intents": ["complaint"], "confidence_threshold": 1.5,
                  "edges": {"balance": "bye", "escalate": "bye", "error": "bye"}},
        "bye": {"type": "hangup"}
    }));
    let r = validate(&f, &ctx());
    let c = codes(&r);
    for code in ["missing_fallback", "unknown_intent", "out_of_range"] {
        assert!(c.contains(&("start", code)), "{code} missing from {c:?}");
    }
}

#[test]
fn transfer_target_and_headers() {
    let f = flow(json!({
        "start": {"type": "transfer", "mode": "blind", "target": "mailto:x", "headers": {"Subject": "x"},
                  "edges": {"failed": "bye"}},
        "bye": {"type": "hangup"}
    }));
    let r = validate(&f, &ctx());
    let c = codes(&r);
    assert_eq!(
        c.iter()
            .filter(|(_, code)| *code == "invalid_parameter")
            .count(),
        2,
        "{c:?}"
    );
}

#[test]
fn broken_template_and_bad_json_body() {
    let f = flow(json!({
        "start": {"type": "http", "method": "POST", "url": "https://api.example.com/x", "body": "{\"a\": ${b",
                  "edges": {"ok": "bye", "error": "bye"}},
        "bye": {"type": "hangup"}
    }));
    assert!(codes(&validate(&f, &ctx())).contains(&("start", "bad_template")));
    let f = flow(json!({
        "start": {"type": "http", "method": "POST", "url": "https://api.example.com/x", "body": "{\"a\": }",
                  "edges": {"ok": "bye", "error": "bye"}},
        "bye": {"type": "hangup"}
    }));
    assert!(codes(&validate(&f, &ctx())).contains(&("start", "invalid_parameter")));
}

#[test]
fn audio_paths_stay_in_the_prompt_folder() {
    let f = flow(
        json!({"start": {"type": "play", "audio": "../../etc/passwd", "edges": {"next": "bye"}}, "bye": {"type": "hangup"}}),
    );
    assert_eq!(
        codes(&validate(&f, &ctx())),
        [("start", "invalid_parameter")]
    );
}
