#![allow(clippy::unwrap_used)]

use super::*;

const GOOD: &str = r#"
name: tiny
tenant: acme
flow: flow.json
defaults: {did: "5000"}
thresholds: {intent_accuracy: 0.9, turn_latency_p95_ms: 2500}
simulator: {nlu_first_ms: 60}
calls:
  - id: bal-01
    turns:
      - say: what is my balance
        voice: en-gb
        rate: 140
        noise: {kind: pink, snr_db: 10, seed: 3}
        reference: what is my balance
        expect: {intent: balance, min_confidence: 0.6, escalate: false}
      - silence_ms: 4000
    expect: {disposition: contained, max_turn_latency_ms: 2000}
  - id: keys
    did: "5001"
    turns:
      - dtmf: "0"
        at_ms: 3000
    expect: {disposition: escalated}
"#;

fn intents() -> BTreeSet<String> {
    ["balance", "complaint"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

fn problems(yaml: &str) -> Vec<String> {
    match Manifest::parse(yaml, "m.yaml")
        .unwrap()
        .validate(&intents())
    {
        Ok(()) => vec![],
        Err(ManifestError::Invalid(p)) => p.iter().map(|p| p.to_string()).collect(),
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn a_good_manifest_parses_and_validates() {
    let m = Manifest::parse(GOOD, "m.yaml").unwrap();
    m.validate(&intents()).unwrap();
    assert_eq!(m.calls.len(), 2);
    assert_eq!(m.calls[0].did(&m.defaults), Some("5000"));
    assert_eq!(m.calls[1].did(&m.defaults), Some("5001"));
    assert_eq!(m.defaults.voice, "en-us");
    let t = &m.calls[0].turns[0];
    assert_eq!(t.kind(), Ok(TurnKind::Say));
    assert_eq!(t.noise.as_ref().unwrap().kind, NoiseKind::Pink);
    assert_eq!(m.calls[1].expect.disposition, Some(Disposition::Escalated));
}

#[test]
fn unknown_fields_are_refused() {
    let bad = GOOD.replace("min_confidence", "min_confidance");
    let err = Manifest::parse(&bad, "m.yaml").unwrap_err().to_string();
    assert!(err.contains("min_confidance"), "{err}");
}

#[test]
fn an_unknown_disposition_is_refused() {
    let bad = GOOD.replace("disposition: contained", "disposition: solved");
    assert!(Manifest::parse(&bad, "m.yaml").is_err());
}

#[test]
fn errors_name_the_call_and_the_field() {
    let bad = GOOD
        .replace("- silence_ms: 4000", "- {silence_ms: 4000, dtmf: \"1\"}")
        .replace("intent: balance", "intent: balanse")
        .replace("snr_db: 10", "snr_db: 99")
        .replace("dtmf: \"0\"", "dtmf: \"0x\"");
    let p = problems(&bad);
    assert!(p.contains(&"call bal-01, turns[1]: has 2 actions; give exactly one of say, wav, dtmf, silence_ms, noise_ms".to_string()), "{p:?}");
    assert!(
        p.iter()
            .any(|s| s.starts_with("call bal-01, turns[0].expect.intent:")),
        "{p:?}"
    );
    assert!(
        p.iter()
            .any(|s| s.starts_with("call bal-01, turns[0].noise.snr_db:")),
        "{p:?}"
    );
    assert!(
        p.iter().any(|s| s.starts_with("call keys, turns[0].dtmf:")),
        "{p:?}"
    );
}

#[test]
fn duplicate_ids_missing_did_and_bad_thresholds_are_reported() {
    let bad = GOOD
        .replace("id: keys", "id: bal-01")
        .replace("defaults: {did: \"5000\"}", "")
        .replace("intent_accuracy: 0.9", "intent_accuracy: 90");
    let p = problems(&bad);
    assert!(
        p.contains(&"call bal-01, id: is used by another call".to_string()),
        "{p:?}"
    );
    assert!(
        p.contains(&"call bal-01, did: no did here and none in defaults".to_string()),
        "{p:?}"
    );
    assert!(
        p.iter()
            .any(|s| s.starts_with("thresholds.intent_accuracy:")),
        "{p:?}"
    );
}

#[test]
fn wav_paths_stay_inside_the_set_and_one_dtmf_turn_per_call() {
    let bad = GOOD.replace(
        "- dtmf: \"0\"",
        "- wav: ../secret.wav\n      - dtmf: \"1\"\n      - dtmf: \"0\"",
    );
    let p = problems(&bad);
    assert!(
        p.iter().any(|s| s.starts_with("call keys, turns[0].wav:")),
        "{p:?}"
    );
    assert!(
        p.iter()
            .any(|s| s.starts_with("call keys, turns: at most one dtmf")),
        "{p:?}"
    );
}

#[test]
fn the_committed_schema_is_the_generated_one() {
    let committed = include_str!("../schema/manifest.schema.json");
    assert!(
        committed == json_schema(),
        "eval-sets/schema/manifest.schema.json is stale: run `voxgate eval schema > eval-sets/schema/manifest.schema.json`"
    );
}

#[test]
fn simulator_settings_become_script_stages() {
    let s = SimulatorSettings {
        nlu_first_ms: Some(20_000),
        nlu_stall_after_chunks: Some(0),
        ..Default::default()
    };
    let j = s.stages_json();
    assert_eq!(j["nlu"]["first"]["fixed_ms"], 20_000);
    assert_eq!(j["nlu"]["faults"]["stall_after_chunks"], 0);
    assert_eq!(j["tts"]["first"]["fixed_ms"], 0);
}

#[test]
fn select_keeps_calls_by_id_prefix_and_the_script_uses_their_settings() {
    let mut m = Manifest::parse(GOOD, "m.yaml").unwrap();
    m.calls[1].simulator = Some(SimulatorSettings {
        nlu_first_ms: Some(20_000),
        ..Default::default()
    });
    m.select(&["keys".into()]);
    assert_eq!(m.calls.len(), 1);
    let s = m.simulator_script();
    assert_eq!(s["stages"]["nlu"]["first"]["fixed_ms"], 20_000);
    let mut all = Manifest::parse(GOOD, "m.yaml").unwrap();
    all.select(&[]);
    assert_eq!(all.calls.len(), 2);
    assert_eq!(
        all.simulator_script()["stt"]["default"]["text"],
        "what is my balance"
    );
    assert_eq!(
        all.simulator_script()["stages"]["nlu"]["first"]["fixed_ms"],
        60
    );
}
