//! The NOC hook over a real policy book, breaker registry and admission.

use std::time::Duration;

use serde_json::json;

use super::*;
use crate::budget::BreakerConfig;
use crate::tenant::AiLimits;

fn paths(issues: &[Issue]) -> Vec<(&str, &str)> {
    issues.iter().map(|i| (i.path.as_str(), i.code)).collect()
}

#[test]
fn the_defaults_are_a_valid_policy_of_their_own() {
    let rt = AiRuntimeState::default();
    let defaults = rt.defaults();
    assert_eq!(rt.validate(&defaults), Ok(defaults.clone()));
    // An empty document is the defaults too: absent fields default.
    assert_eq!(rt.validate(&json!({})), Ok(defaults));
}

#[test]
fn a_policy_put_through_the_hook_is_what_the_next_turn_reads() {
    let rt = AiRuntimeState::default();
    assert_eq!(rt.policies.get("acme").limits, AiLimits::default());
    let doc = json!({
        "limits": {"max_concurrent": 7},
        "budgets": {"nlu_first_token": {"soft_ms": 400, "hard_ms": 900}, "fallback": "agent"},
        "breaker": {"failures": 2, "window_ms": 10000, "cooldown_ms": 15000, "probes": 1},
        "providers": {"stt": ["deepgram", "local"]}
    });
    let normalized = rt.validate(&doc).expect("valid");
    // Normalized: every field present, the ones sent as sent.
    assert_eq!(normalized["limits"]["burst"], json!(100));
    assert_eq!(normalized["limits"]["max_concurrent"], json!(7));
    rt.apply("acme", &normalized);

    let p = rt.policies.get("acme");
    assert_eq!(p.limits.max_concurrent, 7);
    assert_eq!(p.budgets.nlu_first_token.hard_ms, 900);
    assert_eq!(p.default_fallback().outcome(), "fallback_agent");
    assert_eq!(p.providers.stt, ["deepgram", "local"]);
    // The tenant's breakers run with its settings; others keep the default.
    assert_eq!(rt.breakers.tenant_config("acme").failures, 2);
    assert_eq!(rt.breakers.tenant_config("other"), BreakerConfig::default());
    assert_eq!(rt.policies.get("other").limits, AiLimits::default());
}

#[test]
fn every_unknown_field_is_reported_with_its_path() {
    let rt = AiRuntimeState::default();
    let doc = json!({
        "limitz": {},
        "breaker": {"failures": 2, "cooldown": 5},
        "budgets": {"turn": {"hard_ms": 4000, "soft": 100}},
        "escalation": {"max_turns": 4}
    });
    let issues = rt.validate(&doc).expect_err("unknown fields");
    assert_eq!(
        paths(&issues),
        [
            ("/limitz", "unknown_field"),
            ("/breaker/cooldown", "unknown_field"),
            ("/budgets/turn/soft", "unknown_field"),
        ]
    );
    assert!(
        issues[1].message.contains("cooldown_ms"),
        "names what is expected: {}",
        issues[1].message
    );
}

#[test]
fn a_wrong_type_names_its_path() {
    let rt = AiRuntimeState::default();
    let issues = rt
        .validate(&json!({"budgets": {"stt_final": {"hard_ms": "fast"}}}))
        .expect_err("type");
    assert_eq!(
        paths(&issues),
        [("/budgets/stt_final/hard_ms", "invalid_value")]
    );
    let issues = rt
        .validate(&json!({"providers": {"tts": ["a", 3]}}))
        .expect_err("type");
    assert_eq!(paths(&issues), [("/providers/tts/1", "invalid_value")]);
    let issues = rt
        .validate(&json!({"budgets": {"fallback": "voicemail"}}))
        .expect_err("enum");
    assert_eq!(paths(&issues), [("/budgets/fallback", "invalid_value")]);
    assert!(rt.validate(&json!([1, 2])).is_err());
}

#[test]
fn every_range_problem_is_reported_with_unknown_fields_first() {
    let rt = AiRuntimeState::default();
    let doc = json!({
        "extra": true,
        "escalation": {"confidence_threshold": 1.5},
        "budgets": {"turn": {"soft_ms": 6000, "hard_ms": 5000}, "stall_ms": 10},
        "limits": {"burst": 0}
    });
    let issues = rt.validate(&doc).expect_err("invalid");
    assert_eq!(
        paths(&issues),
        [
            ("/extra", "unknown_field"),
            ("/escalation/confidence_threshold", "out_of_range"),
            ("/budgets/turn/soft_ms", "out_of_range"),
            ("/budgets/stall_ms", "out_of_range"),
            ("/limits", "out_of_range"),
        ]
    );
}

#[test]
fn health_shows_sessions_breakers_and_counts() {
    let rt = AiRuntimeState::default();
    let policy = NocPolicy {
        breaker: BreakerConfig {
            failures: 2,
            window_ms: 60_000,
            cooldown_ms: 30_000,
            probes: 1,
        },
        limits: AiLimits {
            max_concurrent: 5,
            ..AiLimits::default()
        },
        ..NocPolicy::default()
    };
    rt.apply_policy("acme", policy.clone());
    let t0 = voxgate_gateway::clock::now();
    let _session = rt
        .admission
        .try_admit("acme", &policy.limits)
        .expect("admitted");
    rt.breakers.handle_failure(t0, "acme", Provider::Nlu, "nlu");
    rt.breakers.handle_failure(t0, "acme", Provider::Nlu, "nlu");
    rt.breakers.handle_failure(t0, "acme", Provider::Stt, "stt");
    rt.record_fallback("acme", "deadline_nlu_first_token");
    rt.record_fallback("acme", "deadline_nlu_first_token");
    rt.record_escalation("acme", "asked_for_human");

    let h = rt.health_at(t0 + Duration::from_millis(1_000), "acme");
    assert_eq!((h.active_sessions, h.max_concurrent), (1, 5));
    let states: Vec<_> = h
        .breakers
        .iter()
        .map(|b| (b.provider.as_str(), b.state, b.failures, b.retry_in_ms))
        .collect();
    assert_eq!(
        states,
        [
            ("stt", ApiBreakerState::Closed, Some(1), None),
            ("nlu", ApiBreakerState::Open, None, Some(29_000)),
            ("tts", ApiBreakerState::Closed, Some(0), None),
        ]
    );
    assert_eq!(h.fallbacks.get("deadline_nlu_first_token"), Some(&2));
    assert_eq!(h.escalations.get("asked_for_human"), Some(&1));
    // Another tenant sees none of it.
    let other = rt.health_at(t0, "other");
    assert_eq!(other.active_sessions, 0);
    assert!(other
        .breakers
        .iter()
        .all(|b| b.state == ApiBreakerState::Closed));
    assert!(other.fallbacks.is_empty());
}

#[test]
fn the_breaker_gauge_is_exported_per_tenant_and_provider() {
    let rt = AiRuntimeState::default();
    let t0 = voxgate_gateway::clock::now();
    for _ in 0..BreakerConfig::default().failures {
        rt.breakers.handle_failure(t0, "acme", Provider::Tts, "tts");
    }
    rt.breakers.handle_success(t0, "acme", Provider::Stt, "stt");
    let text = rt.encode_metrics();
    assert!(
        text.contains("# TYPE voxgate_ai_breaker_state gauge"),
        "{text}"
    );
    assert!(
        text.contains(r#"voxgate_ai_breaker_state{tenant="acme",provider="tts",name="tts"} 2"#),
        "{text}"
    );
    assert!(
        text.contains(r#"voxgate_ai_breaker_state{tenant="acme",provider="stt",name="stt"} 0"#),
        "{text}"
    );
}

#[test]
fn a_policy_may_only_name_configured_providers_and_health_lists_each() {
    let rt = AiRuntimeState::default();
    rt.set_configured_providers(ProviderChoices {
        stt: vec!["deepgram".into(), "whisper".into()],
        nlu: vec!["embedding".into()],
        tts: vec!["espeak".into()],
    });
    assert!(rt
        .validate(&json!({"providers": {"stt": ["whisper", "deepgram"]}}))
        .is_ok());
    let issues = rt
        .validate(&json!({"providers": {"stt": ["whisper", "google"], "tts": ["polly"]}}))
        .expect_err("unknown names");
    assert_eq!(
        paths(&issues),
        [
            ("/providers/stt/1", "unknown_provider"),
            ("/providers/tts/0", "unknown_provider")
        ]
    );
    assert!(
        issues[0].message.contains("deepgram, whisper"),
        "{issues:?}"
    );

    let t0 = voxgate_gateway::clock::now();
    rt.breakers
        .handle_failure(t0, "acme", Provider::Stt, "deepgram");
    let h = rt.health_at(t0, "acme");
    let listed: Vec<(&str, &str)> = h
        .breakers
        .iter()
        .map(|b| (b.provider.as_str(), b.name.as_str()))
        .collect();
    assert_eq!(
        listed,
        [
            ("stt", "deepgram"),
            ("stt", "whisper"),
            ("nlu", "embedding"),
            ("tts", "espeak")
        ]
    );
    assert_eq!(h.breakers[0].failures, Some(1));
    assert_eq!(h.breakers[1].failures, Some(0));
}
