//! The eval-set manifest (`manifest.yaml` in a set folder): the calls, what
//! each caller says or keys, what we expect, and the set's pass thresholds.
//!
//! Parsing is strict (unknown fields are errors) and [`Manifest::validate`]
//! checks what serde cannot: one action per turn, known intents, unique call
//! ids. Every error names the call and the field.

use std::collections::BTreeSet;
use std::path::Path;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The file name of a set's manifest.
pub const MANIFEST_FILE: &str = "manifest.yaml";

/// Why a manifest cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a valid manifest: {source}")]
    Parse {
        path: String,
        source: Box<serde_saphyr::Error>,
    },
    #[error("{} problem(s) in the manifest:\n{}", .0.len(), .0.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Problem>),
}

/// One validation problem: where (`call bal-01, turns[2].say`) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub call: Option<String>,
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.call {
            Some(c) => write!(f, "call {c}, {}: {}", self.field, self.message),
            None => write!(f, "{}: {}", self.field, self.message),
        }
    }
}

/// A whole eval set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Short name, used in reports and JUnit suite names.
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// The tenant whose calls and flows the API is asked about.
    pub tenant: String,
    /// The flow JSON this set targets, relative to the set folder.
    pub flow: String,
    /// Defaults every call and text turn inherits.
    #[serde(default)]
    pub defaults: Defaults,
    /// Provider simulator settings for the whole set (a call may override).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub simulator: Option<SimulatorSettings>,
    #[serde(default)]
    pub thresholds: Thresholds,
    pub calls: Vec<Call>,
}

/// Call and turn defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    /// The number to dial.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub did: Option<String>,
    /// espeak-ng voice of text turns.
    #[serde(default = "default_voice")]
    pub voice: String,
    /// espeak-ng words per minute of text turns.
    #[serde(default = "default_rate")]
    pub rate: u32,
    /// Silence before each turn unless the turn says otherwise, ms.
    #[serde(default = "default_pause")]
    pub pause_ms: u32,
    /// Hang up this long after the answer unless the gateway does first, ms.
    #[serde(default = "default_hangup")]
    pub hangup_after_ms: u32,
}

fn default_voice() -> String {
    "en-us".into()
}
fn default_rate() -> u32 {
    160
}
fn default_pause() -> u32 {
    800
}
fn default_hangup() -> u32 {
    15_000
}

impl Default for Defaults {
    fn default() -> Self {
        Self {
            did: None,
            voice: default_voice(),
            rate: default_rate(),
            pause_ms: default_pause(),
            hangup_after_ms: default_hangup(),
        }
    }
}

/// Set-level pass thresholds; an unset threshold is not checked.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    /// Share of intent expectations met, 0..1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intent_accuracy: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalation_precision: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalation_recall: Option<f64>,
    /// Share of calls whose disposition is as expected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disposition_accuracy: Option<f64>,
    /// Share of calls that passed every expectation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_pass_rate: Option<f64>,
    /// The 95th percentile of the on-the-wire turn latency, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub turn_latency_p95_ms: Option<u64>,
}

/// Provider simulator behaviour (the test double of remote STT/NLU/TTS):
/// fixed delays per stage, and a stall for the slow-provider case. Used
/// when the runner is pointed at a gateway whose engines are the simulator.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SimulatorSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stt_first_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nlu_first_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tts_first_ms: Option<u64>,
    /// The NLU sends nothing after this many chunks (0: nothing at all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nlu_stall_after_chunks: Option<u32>,
}

impl SimulatorSettings {
    /// The simulator script's `stages` section.
    pub fn stages_json(&self) -> serde_json::Value {
        let delay = |ms: Option<u64>| serde_json::json!({"fixed_ms": ms.unwrap_or(0)});
        let mut nlu = serde_json::json!({"first": delay(self.nlu_first_ms)});
        if let Some(n) = self.nlu_stall_after_chunks {
            nlu["faults"] = serde_json::json!({"stall_after_chunks": n});
        }
        serde_json::json!({
            "stt": {"first": delay(self.stt_first_ms), "per_chunk": delay(self.stt_first_ms)},
            "nlu": nlu,
            "tts": {"first": delay(self.tts_first_ms)},
        })
    }
}

/// One scripted call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Call {
    /// Unique in the set; names the generated audio and the JUnit case.
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The number to dial (else `defaults.did`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub did: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hangup_after_ms: Option<u32>,
    /// Overrides the set's simulator settings for this call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub simulator: Option<SimulatorSettings>,
    pub turns: Vec<Turn>,
    #[serde(default)]
    pub expect: CallExpect,
}

/// One thing the caller does. Exactly one of `say`, `wav`, `dtmf`,
/// `silence_ms`, `noise_ms`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Turn {
    /// Text spoken by espeak-ng (`voxgate eval build`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub say: Option<String>,
    /// A recorded WAV, relative to the set folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wav: Option<String>,
    /// Keys pressed (RFC 4733), `0-9*#`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dtmf: Option<String>,
    /// The caller says nothing for this long.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub silence_ms: Option<u32>,
    /// Only background noise for this long (`noise` gives its colour).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noise_ms: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voice: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<u32>,
    /// Noise mixed under the speech (or alone, with `noise_ms`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noise: Option<Noise>,
    /// Silence before this turn, ms (else `defaults.pause_ms`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause_ms: Option<u32>,
    /// Start at this offset from the answer, ms, whatever the bot is doing:
    /// a barge-in on schedule. Must not go back before the previous turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_ms: Option<u32>,
    /// What was said, for WER when the STT is a real recognizer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<TurnExpect>,
}

/// Background noise made by sox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Noise {
    #[serde(default)]
    pub kind: NoiseKind,
    /// Speech-to-noise ratio in dB; with `noise_ms` the noise level is
    /// taken against a -20 dBFS reference speech level.
    pub snr_db: f64,
    /// Seed of the noise generator: the same seed gives the same file.
    #[serde(default)]
    pub seed: u32,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum NoiseKind {
    #[default]
    White,
    Pink,
    Brown,
}

impl NoiseKind {
    /// The sox `synth` noise type.
    pub fn sox_name(self) -> &'static str {
        match self {
            NoiseKind::White => "whitenoise",
            NoiseKind::Pink => "pinknoise",
            NoiseKind::Brown => "brownnoise",
        }
    }
}

/// What the AI node should decide after this turn.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TurnExpect {
    /// The intent the NLU should find.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intent: Option<String>,
    /// The intent's confidence is at least this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_confidence: Option<f64>,
    /// Whether this turn sends the caller to an agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalate: Option<bool>,
    /// The policy rule that escalates (`sensitive_intent`,
    /// `asked_for_human`, `low_confidence`, `no_input`, `dtmf`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// How the call should end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Disposition {
    /// The AI node resolved an intent and the flow ended without a person.
    Contained,
    /// The AI node sent the caller to an agent (`escalate`).
    Escalated,
    /// A latency or provider fallback to the keypad menu.
    FallbackDtmf,
    /// A latency or provider fallback to an agent.
    FallbackAgent,
    /// The caller hung up before the flow finished.
    HungUp,
}

impl Disposition {
    pub fn name(self) -> &'static str {
        match self {
            Disposition::Contained => "contained",
            Disposition::Escalated => "escalated",
            Disposition::FallbackDtmf => "fallback_dtmf",
            Disposition::FallbackAgent => "fallback_agent",
            Disposition::HungUp => "hung_up",
        }
    }
}

/// What the whole call should do.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CallExpect {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disposition: Option<Disposition>,
    /// No turn's on-the-wire latency (end of caller audio → first reply
    /// audio) above this, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_turn_latency_ms: Option<u64>,
    /// The fallback prompt is heard within this long after the caller's
    /// audio ended, ms (the slow-provider case).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_within_ms: Option<u64>,
}

/// Which action a turn carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TurnKind {
    Say,
    Wav,
    Dtmf,
    Silence,
    Noise,
}

impl Turn {
    /// The one action this turn carries, or how many it has.
    pub fn kind(&self) -> Result<TurnKind, usize> {
        let set = [
            (self.say.is_some(), TurnKind::Say),
            (self.wav.is_some(), TurnKind::Wav),
            (self.dtmf.is_some(), TurnKind::Dtmf),
            (self.silence_ms.is_some(), TurnKind::Silence),
            (self.noise_ms.is_some(), TurnKind::Noise),
        ];
        let chosen: Vec<TurnKind> = set.iter().filter(|(s, _)| *s).map(|(_, k)| *k).collect();
        match chosen.as_slice() {
            [one] => Ok(*one),
            other => Err(other.len()),
        }
    }
}

impl Call {
    pub fn did<'a>(&'a self, defaults: &'a Defaults) -> Option<&'a str> {
        self.did.as_deref().or(defaults.did.as_deref())
    }

    pub fn hangup_after_ms(&self, defaults: &Defaults) -> u32 {
        self.hangup_after_ms.unwrap_or(defaults.hangup_after_ms)
    }
}

impl Manifest {
    /// Parses YAML strictly; does not validate (see [`Manifest::load`]).
    pub fn parse(text: &str, path: &str) -> Result<Manifest, ManifestError> {
        serde_saphyr::from_str(text).map_err(|e| ManifestError::Parse {
            path: path.to_owned(),
            source: Box::new(e),
        })
    }

    /// Reads `SET/manifest.yaml`, parses and validates it.
    pub fn load(set_dir: &Path) -> Result<Manifest, ManifestError> {
        let path = set_dir.join(MANIFEST_FILE);
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(&path).map_err(|source| ManifestError::Read {
            path: shown.clone(),
            source,
        })?;
        let m = Manifest::parse(&text, &shown)?;
        m.validate(&known_intents(set_dir, &m))?;
        Ok(m)
    }

    /// Checks what serde cannot. `intents` are the names the flow's AI
    /// nodes know; empty skips the intent check.
    pub fn validate(&self, intents: &BTreeSet<String>) -> Result<(), ManifestError> {
        let mut problems = Vec::new();
        let mut top = |field: &str, message: String| {
            problems.push(Problem {
                call: None,
                field: field.into(),
                message,
            })
        };
        if self.name.trim().is_empty() {
            top("name", "must not be empty".into());
        }
        if self.calls.is_empty() {
            top("calls", "a set needs at least one call".into());
        }
        let t = &self.thresholds;
        for (field, v) in [
            ("thresholds.intent_accuracy", t.intent_accuracy),
            ("thresholds.escalation_precision", t.escalation_precision),
            ("thresholds.escalation_recall", t.escalation_recall),
            ("thresholds.disposition_accuracy", t.disposition_accuracy),
            ("thresholds.call_pass_rate", t.call_pass_rate),
        ] {
            if let Some(v) = v {
                if !(0.0..=1.0).contains(&v) {
                    top(field, format!("{v} is not between 0 and 1"));
                }
            }
        }
        let mut ids = BTreeSet::new();
        for call in &self.calls {
            let mut p = |field: String, message: String| {
                problems.push(Problem {
                    call: Some(call.id.clone()),
                    field,
                    message,
                })
            };
            if !valid_id(&call.id) {
                p("id".into(), "use letters, digits, '-' and '_' only".into());
            }
            if !ids.insert(call.id.clone()) {
                p("id".into(), "is used by another call".into());
            }
            if call.did(&self.defaults).is_none() {
                p("did".into(), "no did here and none in defaults".into());
            }
            if call.turns.is_empty() {
                p("turns".into(), "a call needs at least one turn".into());
            }
            let mut dtmf_turns = 0;
            for (i, turn) in call.turns.iter().enumerate() {
                let f = |name: &str| format!("turns[{i}].{name}");
                match turn.kind() {
                    Err(0) => p(
                        format!("turns[{i}]"),
                        "needs one of say, wav, dtmf, silence_ms, noise_ms".into(),
                    ),
                    Err(n) => p(
                        format!("turns[{i}]"),
                        format!("has {n} actions; give exactly one of say, wav, dtmf, silence_ms, noise_ms"),
                    ),
                    Ok(TurnKind::Say) => {
                        if turn.say.as_deref().is_some_and(|s| s.trim().is_empty()) {
                            p(f("say"), "must not be empty".into());
                        }
                    }
                    Ok(TurnKind::Wav) => {
                        if turn.wav.as_deref().is_some_and(|w| {
                            Path::new(w).is_absolute() || w.split('/').any(|c| c == "..")
                        }) {
                            p(f("wav"), "must be a path inside the set folder".into());
                        }
                    }
                    Ok(TurnKind::Dtmf) => {
                        dtmf_turns += 1;
                        let d = turn.dtmf.as_deref().unwrap_or_default();
                        if d.is_empty()
                            || !d.chars().all(|c| c.is_ascii_digit() || c == '*' || c == '#')
                        {
                            p(f("dtmf"), format!("{d:?} is not keys 0-9 * #"));
                        }
                    }
                    Ok(TurnKind::Noise) => {
                        if turn.noise.is_none() {
                            p(f("noise"), "noise_ms needs a noise block".into());
                        }
                    }
                    Ok(TurnKind::Silence) => {}
                }
                if turn.kind() != Ok(TurnKind::Say) && (turn.voice.is_some() || turn.rate.is_some())
                {
                    p(f("voice"), "voice and rate apply to say turns only".into());
                }
                if let Some(r) = turn.rate {
                    if !(80..=450).contains(&r) {
                        p(f("rate"), format!("{r} wpm is outside espeak-ng's 80-450"));
                    }
                }
                if let Some(n) = &turn.noise {
                    if !n.snr_db.is_finite() || !(-20.0..=60.0).contains(&n.snr_db) {
                        p(
                            f("noise.snr_db"),
                            format!("{} is not within -20..60 dB", n.snr_db),
                        );
                    }
                }
                if let Some(e) = &turn.expect {
                    if let Some(c) = e.min_confidence {
                        if !(0.0..=1.0).contains(&c) {
                            p(
                                f("expect.min_confidence"),
                                format!("{c} is not between 0 and 1"),
                            );
                        }
                    }
                    if let Some(intent) = &e.intent {
                        if !intents.is_empty() && !intents.contains(intent) {
                            p(
                                f("expect.intent"),
                                format!("{intent:?} is not an intent of the flow's AI nodes"),
                            );
                        }
                    }
                }
            }
            // The softphone sends one burst of digits per call.
            if dtmf_turns > 1 {
                p(
                    "turns".into(),
                    "at most one dtmf turn per call (put several keys in one)".into(),
                );
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ManifestError::Invalid(problems))
        }
    }
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// The intent names of every AI node of the set's flow; empty when the
/// flow cannot be read (the flow check reports that itself).
pub fn known_intents(set_dir: &Path, m: &Manifest) -> BTreeSet<String> {
    let Ok(text) = std::fs::read_to_string(set_dir.join(&m.flow)) else {
        return BTreeSet::new();
    };
    let Ok(flow) = serde_json::from_str::<voxgate_flows::Flow>(&text) else {
        return BTreeSet::new();
    };
    flow.nodes
        .values()
        .filter_map(|n| match &n.kind {
            voxgate_flows::NodeKind::Ai(a) => Some(a.intents.iter().map(|i| i.name.clone())),
            _ => None,
        })
        .flatten()
        .collect()
}

/// The manifest's JSON Schema, as committed in `schema/manifest.schema.json`.
pub fn json_schema() -> String {
    let schema = schemars::schema_for!(Manifest);
    let mut text = serde_json::to_string_pretty(&schema).unwrap_or_default();
    text.push('\n');
    text
}

#[cfg(test)]
#[path = "manifest_tests.rs"]
mod tests;

impl Manifest {
    /// Keeps only the calls whose id starts with one of `prefixes` (all
    /// when empty): a slice of the set, such as the slow-provider calls
    /// against a gateway whose simulator is scripted to be slow.
    pub fn select(&mut self, prefixes: &[String]) {
        if !prefixes.is_empty() {
            self.calls
                .retain(|c| prefixes.iter().any(|p| c.id.starts_with(p.as_str())));
        }
    }

    /// The simulator settings a call runs with: its own, else the set's.
    pub fn simulator_for<'a>(&'a self, call: &'a Call) -> Option<&'a SimulatorSettings> {
        call.simulator.as_ref().or(self.simulator.as_ref())
    }

    /// A provider-simulator script (`voxgate simulate --script`) for the
    /// selected calls: the stages of the first call's settings, and, as
    /// the STT's answer to audio no entry matches, the first reference
    /// transcript. [`Manifest::simulator_script_with_audio`] adds an entry
    /// per turn so each utterance is heard as its own text.
    pub fn simulator_script(&self) -> serde_json::Value {
        let settings = self
            .calls
            .first()
            .and_then(|c| self.simulator_for(c))
            .cloned()
            .unwrap_or_default();
        let text = self
            .calls
            .iter()
            .flat_map(|c| &c.turns)
            .find_map(|t| t.reference.clone().or_else(|| t.say.clone()))
            .unwrap_or_default();
        serde_json::json!({
            "seed": 1,
            "stt": {"default": {"text": text, "confidence": 0.95}},
            "tts": {"voice": {"kind": "tone", "hz": 440.0, "ms_per_char": 40}, "chunk_ms": 100},
            "stages": settings.stages_json(),
        })
    }

    /// [`Manifest::simulator_script`] plus, in `match: envelope` mode, a
    /// transcript entry per spoken turn keyed by its built WAV under
    /// `set_dir` (its reference, else its text): the simulator matches the
    /// audio it gets after G.711 and resampling by speech-energy envelope,
    /// so each caller is heard as what they said and intent accuracy
    /// measures the NLU and policy per turn. Turns whose WAV is not built
    /// (`voxgate eval build`) and turns without text (noise) have no entry;
    /// they get the default.
    pub fn simulator_script_with_audio(&self, set_dir: &Path) -> serde_json::Value {
        let mut script = self.simulator_script();
        let mut entries = Vec::new();
        let mut seen = BTreeSet::new();
        for call in &self.calls {
            for (i, turn) in call.turns.iter().enumerate() {
                let Some(text) = turn.reference.clone().or_else(|| turn.say.clone()) else {
                    continue;
                };
                let Some(job) = crate::render::job_for(set_dir, self, &call.id, i, turn) else {
                    continue;
                };
                if job.output.is_file() && seen.insert(job.output.clone()) {
                    entries.push(serde_json::json!({
                        "audio_file": job.output,
                        "text": text,
                        "confidence": 0.95,
                    }));
                }
            }
        }
        script["stt"]["match"] = "envelope".into();
        script["stt"]["transcripts"] = entries.into();
        script
    }
}
