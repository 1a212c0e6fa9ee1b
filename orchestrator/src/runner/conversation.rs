//! The sans-IO core of one AI node visit: the frame pipeline, the turn
//! budget and the escalation policy chained, taking engine events with
//! `now` and handing out [`Command`]s for the driver to carry out.
//!
//! It never touches an engine, the call or the clock; the driver
//! ([`super::driver`]) owns the engine tasks and feeds their events back.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use voxgate_flows::interpreter::{ActionResult, AiRecord};
use voxgate_stt_tts::nlu::{IntentResult, IntentSpec, NluEvent, NluRequest, Speaker, Turn};
use voxgate_stt_tts::stt::SttEvent;
use voxgate_stt_tts::EngineError;

use crate::budget::{BudgetConfig, BudgetEvent, FallbackDecision, Provider, Stage, TurnBudget};
use crate::outcome::{self, LastTurn};
use crate::pipeline::{
    Frame, Pipeline, PipelineConfig, SystemFrame, TranscriptFrame, TurnId, VoiceScorer,
};
use crate::policy::{Decision, NodePolicy, PolicyAction, PolicyState, TurnOutcome};

/// Prompts and timers of a conversation that the flow does not set.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct ConversationConfig {
    pub pipeline: PipelineConfig,
    /// Caller audio kept from before the VAD's speech start, so STT hears
    /// the first syllable (the VAD reports a start only after its minimum
    /// speech time).
    pub preroll_ms: u32,
    /// Silence after the bot finished speaking that counts as no input.
    pub no_input_ms: u64,
    /// Spoken at a soft threshold, at most once per turn.
    pub filler: String,
    /// Spoken after a low-confidence or failed turn.
    pub reprompt: String,
    /// Spoken after no input.
    pub no_input_prompt: String,
    /// What the node says when the intent that resolved has no reply and
    /// the engine wrote none; empty: leave at once.
    pub default_reply: String,
}

impl Default for ConversationConfig {
    fn default() -> Self {
        Self {
            pipeline: PipelineConfig::default(),
            preroll_ms: 400,
            no_input_ms: 6_000,
            filler: "One moment, please.".into(),
            reprompt: "Sorry, I did not get that. Could you say it again?".into(),
            no_input_prompt: "Are you still there? How can I help you?".into(),
            default_reply: String::new(),
        }
    }
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Move the call's outbound gate to `turn`: older audio is dropped.
    SetTurn(TurnId),
    /// Open STT session `id`, first pushing `preroll` (16 kHz).
    OpenStt {
        id: u64,
        preroll: Vec<i16>,
    },
    /// More caller audio for session `id`.
    SttAudio {
        id: u64,
        samples: Vec<i16>,
    },
    /// The utterance ended: the session flushes its final.
    EndStt {
        id: u64,
    },
    CancelStt,
    /// Classify the utterance of `turn`.
    Classify {
        turn: TurnId,
        request: NluRequest,
    },
    CancelNlu,
    /// Speak `text` in `turn`; `last` when nothing more follows in it.
    Speak {
        turn: TurnId,
        text: String,
        last: bool,
    },
    /// Stop every synthesis in progress.
    CancelTts,
    /// A caller turn is starting: answer with [`Conversation::handle_policy`]
    /// if the tenant's NOC policy changed, so the turn runs under it.
    RefreshPolicy,
    /// Leave the node with this result.
    Finish(ActionResult),
}

/// A latency the driver turns into a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    Stage(Stage, u64),
    BargeInToSilence(u64),
}

/// Why the node is left, for the driver's breaker and metrics.
#[derive(Debug, Clone, PartialEq)]
pub enum Exit {
    Decision(Decision),
    Fallback(FallbackDecision),
    HungUp,
}

#[derive(Debug, Clone, PartialEq)]
enum Purpose {
    Greeting,
    Prompt,
    Filler,
    /// The reply of a decision that leaves the node: finish when played.
    Leave(Box<ActionResult>),
}

#[derive(Debug, Clone, PartialEq)]
struct Speech {
    turn: TurnId,
    purpose: Purpose,
    first_byte: bool,
}

#[derive(Debug, Clone, Default)]
struct Recognition {
    id: u64,
    ended: bool,
    text: String,
    confidence: f32,
}

/// One AI node visit.
pub struct Conversation<S: VoiceScorer> {
    config: ConversationConfig,
    pipeline: Pipeline<S>,
    budget: TurnBudget,
    policy: NodePolicy,
    /// A NOC policy change that takes effect when the next caller turn
    /// starts (never in the middle of one).
    pending_policy: Option<(NodePolicy, BudgetConfig)>,
    state: PolicyState,
    intents: Vec<IntentSpec>,
    replies: BTreeMap<String, String>,
    language: Option<String>,
    started: Instant,
    commands: VecDeque<Command>,
    measures: Vec<Measure>,
    /// This turn's stage latencies, recorded together once the reply
    /// starts.
    figures: BTreeMap<&'static str, u64>,
    records: Vec<AiRecord>,
    preroll: VecDeque<i16>,
    stt: Option<Recognition>,
    next_stt: u64,
    /// The turn whose utterance the intent engine is working on.
    nlu: Option<TurnId>,
    nlu_first: bool,
    speech: Option<Speech>,
    last_said: String,
    no_input_at: Option<Instant>,
    last: Option<LastTurn>,
    history: Vec<Turn>,
    exit: Option<Exit>,
    /// The `Finish` command has been issued; nothing more happens.
    done: bool,
}

/// What the node knows from the flow.
#[derive(Debug, Clone)]
pub struct NodeSetup {
    pub greeting: Option<String>,
    pub intents: Vec<IntentSpec>,
    /// Rendered replies per intent.
    pub replies: BTreeMap<String, String>,
    pub language: Option<String>,
    pub policy: NodePolicy,
    pub budgets: BudgetConfig,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl<S: VoiceScorer> Conversation<S> {
    pub fn new(scorer: S, config: ConversationConfig, setup: NodeSetup, now: Instant) -> Self {
        let mut me = Self {
            pipeline: Pipeline::new(scorer, config.pipeline.clone()),
            budget: TurnBudget::new(setup.budgets),
            policy: setup.policy,
            pending_policy: None,
            state: PolicyState::new(),
            intents: setup.intents,
            replies: setup.replies,
            language: setup.language,
            started: now,
            commands: VecDeque::new(),
            measures: Vec::new(),
            figures: BTreeMap::new(),
            records: Vec::new(),
            preroll: VecDeque::new(),
            stt: None,
            next_stt: 0,
            nlu: None,
            nlu_first: false,
            speech: None,
            last_said: String::new(),
            no_input_at: None,
            last: None,
            history: Vec::new(),
            exit: None,
            done: false,
            config,
        };
        match setup.greeting.filter(|g| !g.trim().is_empty()) {
            Some(g) => me.speak(now, g, Purpose::Greeting),
            None => me.no_input_at = Some(now + Duration::from_millis(me.config.no_input_ms)),
        }
        me
    }

    fn record(&mut self, now: Instant, kind: &str, text: String, detail: Value) {
        self.records.push(AiRecord {
            at_ms: ms(now.saturating_duration_since(self.started)),
            kind: kind.to_string(),
            text,
            detail,
        });
    }

    /// The next thing to do.
    pub fn poll_command(&mut self) -> Option<Command> {
        self.commands.pop_front()
    }

    fn measure(&mut self, now: Instant, stage: Stage, d: Duration) {
        let v = ms(d);
        self.measures.push(Measure::Stage(stage, v));
        self.figures.insert(stage.name(), v);
        if stage == Stage::Turn {
            let figures = std::mem::take(&mut self.figures);
            let text = figures
                .iter()
                .map(|(k, v)| format!("{k} {v} ms"))
                .collect::<Vec<_>>()
                .join(", ");
            let detail = serde_json::to_value(&figures).unwrap_or(Value::Null);
            self.record(now, "turn", text, detail);
        }
    }

    /// Latencies measured since the last call.
    pub fn take_measures(&mut self) -> Vec<Measure> {
        std::mem::take(&mut self.measures)
    }

    /// Why the node was left, once it was.
    pub fn exit(&self) -> Option<&Exit> {
        self.exit.as_ref()
    }

    /// Whether the `Finish` command has been issued.
    pub fn is_finished(&self) -> bool {
        self.done
    }

    pub fn current_turn(&self) -> TurnId {
        self.pipeline.current_turn()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.done {
            return None;
        }
        [
            self.pipeline.poll_timeout(),
            self.budget.poll_timeout(),
            self.no_input_at,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if self.done {
            return;
        }
        if self.pipeline.poll_timeout().is_some_and(|t| t <= now) {
            self.pipeline.handle_timeout(now);
            self.drain_pipeline(now);
        }
        if self.budget.poll_timeout().is_some_and(|t| t <= now) {
            self.budget.handle_timeout(now);
            self.drain_budget(now);
        }
        if self.no_input_at.is_some_and(|t| t <= now) {
            self.no_input_at = None;
            let d = self.state.handle_turn(&self.policy, TurnOutcome::NoInput);
            self.decide(now, d, None);
        }
    }

    /// Caller audio at 16 kHz.
    pub fn handle_caller_audio(&mut self, now: Instant, samples: &[i16]) {
        if self.done {
            return;
        }
        if let Some(r) = self.stt.as_ref().filter(|r| !r.ended) {
            self.commands.push_back(Command::SttAudio {
                id: r.id,
                samples: samples.to_vec(),
            });
        }
        let keep = self.config.preroll_ms as usize * 16;
        self.preroll.extend(samples.iter().copied());
        while self.preroll.len() > keep {
            self.preroll.pop_front();
        }
        self.pipeline.handle_caller_audio(now, samples);
        self.drain_pipeline(now);
    }

    pub fn handle_dtmf(&mut self, now: Instant, digit: char) {
        if self.done {
            return;
        }
        self.pipeline.handle_dtmf(now, digit);
        self.drain_pipeline(now);
    }

    pub fn handle_hangup(&mut self, now: Instant) {
        if self.done {
            return;
        }
        self.record(now, "hangup", "the caller hung up".into(), Value::Null);
        self.exit = Some(Exit::HungUp);
        self.done = true;
        self.cancel_all();
        // The conversation so far still goes to the timeline and the
        // variables.
        let result = outcome::from_hangup(self.last.as_ref(), self.state.turns);
        let result = self.with_records(result);
        self.commands.push_back(Command::Finish(result));
    }

    /// The tenant's NOC policy changed (after a [`Command::RefreshPolicy`]
    /// or at any time): it applies from the next caller turn.
    pub fn handle_policy(&mut self, policy: NodePolicy, budgets: BudgetConfig) {
        self.pending_policy = Some((policy, budgets));
    }

    /// A caller turn starts its clocks: under the newest policy.
    fn begin_turn(&mut self, now: Instant) {
        if let Some((policy, budgets)) = self.pending_policy.take() {
            if policy != self.policy || budgets != *self.budget.config() {
                self.record(
                    now,
                    "policy",
                    "the tenant's NOC policy changed: in force from this turn".into(),
                    json!({"budgets": &budgets, "policy": &policy}),
                );
            }
            self.policy = policy;
            self.budget.set_config(budgets);
        }
        self.budget.begin_turn();
    }

    pub fn handle_stt(&mut self, now: Instant, id: u64, event: Result<SttEvent, EngineError>) {
        if self.done || self.stt.as_ref().is_none_or(|r| r.id != id) {
            return;
        }
        match event {
            Err(e) => {
                self.budget.handle_provider_error(now, Provider::Stt, &e);
                self.drain_budget(now);
            }
            Ok(SttEvent::Partial(t)) => {
                self.budget.handle_progress(now, Provider::Stt);
                self.pipeline.handle_transcript(
                    now,
                    TranscriptFrame {
                        text: t.text,
                        confidence: t.confidence,
                        is_final: false,
                    },
                );
                self.drain_pipeline(now);
            }
            Ok(SttEvent::Final(t)) => {
                self.budget.handle_progress(now, Provider::Stt);
                let ended = match self.stt.as_mut() {
                    Some(r) => {
                        if !r.text.is_empty() && !t.text.is_empty() {
                            r.text.push(' ');
                        }
                        r.text.push_str(t.text.trim());
                        r.confidence = t.confidence;
                        r.ended
                    }
                    None => false,
                };
                // Finals before the end of the utterance are segments;
                // the first final after it settles the utterance.
                if ended {
                    self.settle_utterance(now);
                }
            }
        }
    }

    /// The STT session's event stream ended.
    pub fn handle_stt_closed(&mut self, now: Instant, id: u64) {
        if self.done || self.stt.as_ref().is_none_or(|r| r.id != id) {
            return;
        }
        if self.stt.as_ref().is_some_and(|r| r.ended) {
            self.settle_utterance(now);
        } else {
            let e = EngineError::ConnectionLost {
                reason: "the STT stream ended mid-utterance".into(),
            };
            self.budget.handle_provider_error(now, Provider::Stt, &e);
            self.drain_budget(now);
        }
    }

    fn settle_utterance(&mut self, now: Instant) {
        let Some(r) = self.stt.take() else { return };
        self.budget.handle_stream_closed(Provider::Stt);
        self.pipeline.handle_transcript(
            now,
            TranscriptFrame {
                text: r.text,
                confidence: r.confidence,
                is_final: true,
            },
        );
        self.drain_pipeline(now);
    }

    pub fn handle_nlu(&mut self, now: Instant, turn: TurnId, event: Result<NluEvent, EngineError>) {
        if self.done || self.nlu != Some(turn) {
            return;
        }
        match event {
            Err(e) => {
                self.budget.handle_provider_error(now, Provider::Nlu, &e);
                self.drain_budget(now);
            }
            Ok(NluEvent::Token(_)) => {
                self.nlu_first_token(now);
                self.budget.handle_progress(now, Provider::Nlu);
            }
            Ok(NluEvent::Result(result)) => {
                self.nlu_first_token(now);
                self.budget.handle_stream_closed(Provider::Nlu);
                self.nlu = None;
                self.understood(now, result);
            }
        }
    }

    /// The intent stream ended; without a result that is a failure.
    pub fn handle_nlu_closed(&mut self, now: Instant, turn: TurnId) {
        if self.done || self.nlu != Some(turn) {
            return;
        }
        let e = EngineError::ConnectionLost {
            reason: "the intent stream ended without a result".into(),
        };
        self.budget.handle_provider_error(now, Provider::Nlu, &e);
        self.drain_budget(now);
    }

    fn nlu_first_token(&mut self, now: Instant) {
        if !self.nlu_first {
            self.nlu_first = true;
            if let Some(d) = self.budget.handle_done(now, Stage::NluFirstToken) {
                self.measure(now, Stage::NluFirstToken, d);
            }
        }
    }

    /// A chunk of synthesised speech of `turn` arrived.
    pub fn handle_tts_chunk(&mut self, now: Instant, turn: TurnId) {
        let Some(s) = self.speech.as_mut().filter(|s| s.turn == turn) else {
            return;
        };
        if s.first_byte {
            self.budget.handle_progress(now, Provider::Tts);
            return;
        }
        s.first_byte = true;
        let filler = matches!(s.purpose, Purpose::Filler);
        if let Some(d) = self.budget.handle_done(now, Stage::TtsFirstByte) {
            self.measure(now, Stage::TtsFirstByte, d);
        }
        if !filler {
            if let Some(d) = self.budget.handle_done(now, Stage::Turn) {
                self.measure(now, Stage::Turn, d);
            }
        }
        self.budget.handle_stream_open(now, Provider::Tts);
    }

    /// The synthesis of `turn` ended (all of it was handed to playback).
    pub fn handle_tts_done(&mut self, _now: Instant, turn: TurnId) {
        if self.speech.as_ref().is_some_and(|s| s.turn == turn) {
            self.budget.handle_stream_closed(Provider::Tts);
        }
    }

    pub fn handle_tts_error(&mut self, now: Instant, turn: TurnId, error: &EngineError) {
        if self.done || self.speech.as_ref().is_none_or(|s| s.turn != turn) {
            return;
        }
        self.budget.handle_provider_error(now, Provider::Tts, error);
        self.drain_budget(now);
    }

    /// The last audio of `turn` went out on the wire.
    pub fn handle_played(&mut self, now: Instant, turn: TurnId) {
        let Some(s) = self.speech.take_if(|s| s.turn == turn) else {
            return;
        };
        self.pipeline.handle_bot_finished(now, turn);
        match s.purpose {
            Purpose::Leave(result) => self.finish(now, *result),
            Purpose::Filler => {}
            Purpose::Greeting | Purpose::Prompt => {
                if self.stt.is_none() && self.nlu.is_none() {
                    self.no_input_at = Some(now + Duration::from_millis(self.config.no_input_ms));
                }
            }
        }
    }

    /// How a turn bump ended on the wire (from the playback's gate).
    pub fn handle_cut(
        &mut self,
        now: Instant,
        turn: TurnId,
        silence_after: Duration,
        dropped: u64,
    ) {
        let after = ms(silence_after);
        self.measures.push(Measure::BargeInToSilence(after));
        self.record(
            now,
            "barge_in",
            format!("{turn}: silence on the wire {after} ms after the bump, {dropped} stale frames dropped"),
            json!({"turn": turn.0, "silence_after_ms": after, "dropped_frames": dropped}),
        );
    }

    fn drain_pipeline(&mut self, now: Instant) {
        while let Some(frame) = self.pipeline.poll_output() {
            if self.done {
                return;
            }
            match frame {
                Frame::System(SystemFrame::SpeechStarted { .. }) => {
                    self.no_input_at = None;
                    self.commands.push_back(Command::RefreshPolicy);
                    self.next_stt += 1;
                    if self.stt.is_some() {
                        self.commands.push_back(Command::CancelStt);
                    }
                    self.stt = Some(Recognition {
                        id: self.next_stt,
                        ..Recognition::default()
                    });
                    self.commands.push_back(Command::OpenStt {
                        id: self.next_stt,
                        preroll: self.preroll.iter().copied().collect(),
                    });
                }
                Frame::System(SystemFrame::EndOfUtterance { speech_ms, .. }) => {
                    if let Some(r) = self.stt.as_mut() {
                        r.ended = true;
                        self.commands.push_back(Command::EndStt { id: r.id });
                        if self.pipeline.bot_turn().is_none() {
                            self.begin_turn(now);
                            self.budget.handle_start(now, Stage::SttFinal);
                            self.budget.handle_start(now, Stage::Turn);
                            self.budget.handle_stream_open(now, Provider::Stt);
                        }
                        let _ = speech_ms;
                    }
                }
                Frame::System(SystemFrame::Interrupt { from, to }) => {
                    self.commands.push_back(Command::SetTurn(to));
                    self.commands.push_back(Command::CancelTts);
                    self.budget.handle_stream_closed(Provider::Tts);
                    if self.nlu.take().is_some() {
                        self.commands.push_back(Command::CancelNlu);
                        self.budget.handle_stream_closed(Provider::Nlu);
                    }
                    self.record(
                        now,
                        "barge_in",
                        format!("the caller interrupted {from}; now {to}"),
                        json!({"from": from.0, "to": to.0}),
                    );
                    if let Some(s) = self.speech.take() {
                        if let Purpose::Leave(result) = s.purpose {
                            // The decision stands; the caller just did not
                            // wait for its reply.
                            self.finish(now, *result);
                        }
                    }
                }
                Frame::System(SystemFrame::Dtmf(digit)) => self.dtmf(now, digit),
                Frame::Transcript(t) if t.is_final => self.transcribed(now, t),
                Frame::System(SystemFrame::End)
                | Frame::Transcript(_)
                | Frame::Audio { .. }
                | Frame::Intent { .. }
                | Frame::ReplyText { .. }
                | Frame::TtsAudio { .. } => {}
            }
        }
    }

    fn drain_budget(&mut self, now: Instant) {
        while let Some(ev) = self.budget.poll_event() {
            match ev {
                BudgetEvent::Filler { stage, elapsed_ms } => {
                    self.record(
                        now,
                        "filler",
                        format!(
                            "{} at {elapsed_ms} ms passed its soft threshold: filler",
                            stage.name()
                        ),
                        json!({"stage": stage, "elapsed_ms": elapsed_ms}),
                    );
                    if self.speech.is_none() {
                        let text = self.config.filler.clone();
                        self.speak(now, text, Purpose::Filler);
                    }
                }
                BudgetEvent::Fallback(fb) => {
                    if let Some(Speech {
                        purpose: Purpose::Leave(result),
                        ..
                    }) = self.speech.take()
                    {
                        // The decision was made; only its reply failed.
                        self.record(
                            now,
                            "fallback",
                            format!("{fb}; the reply is skipped"),
                            Value::Null,
                        );
                        self.finish(now, *result);
                        return;
                    }
                    self.record(
                        now,
                        "fallback",
                        fb.to_string(),
                        serde_json::to_value(&fb).unwrap_or(Value::Null),
                    );
                    let result = outcome::from_fallback(&fb, self.last.as_ref(), self.state.turns);
                    self.exit = Some(Exit::Fallback(fb));
                    self.done = true;
                    self.cancel_all();
                    let result = self.with_records(result);
                    self.commands.push_back(Command::Finish(result));
                    return;
                }
            }
        }
    }

    fn transcribed(&mut self, now: Instant, t: TranscriptFrame) {
        if let Some(d) = self.budget.handle_done(now, Stage::SttFinal) {
            self.measure(now, Stage::SttFinal, d);
        }
        self.budget.handle_stream_closed(Provider::Stt);
        let text = t.text.trim().to_string();
        self.record(
            now,
            "transcript",
            format!("caller: \"{text}\" (confidence {:.2})", t.confidence),
            json!({"text": text, "confidence": t.confidence}),
        );
        if text.is_empty() {
            let d = self.state.handle_turn(
                &self.policy,
                TurnOutcome::Failed {
                    what: "empty transcript",
                },
            );
            return self.decide(now, d, None);
        }
        self.history.push(Turn {
            speaker: Speaker::Caller,
            text: text.clone(),
        });
        self.last = Some(LastTurn {
            transcript: text.clone(),
            ..LastTurn::default()
        });
        // The intent stage has its own clock from here.
        if self
            .budget
            .deadline(crate::budget::Timer::Hard(Stage::Turn))
            .is_none()
        {
            self.begin_turn(now);
            self.budget.handle_start(now, Stage::Turn);
        }
        let turn = self.pipeline.current_turn();
        self.nlu = Some(turn);
        self.nlu_first = false;
        self.budget.handle_start(now, Stage::NluFirstToken);
        self.budget.handle_stream_open(now, Provider::Nlu);
        self.commands.push_back(Command::Classify {
            turn,
            request: NluRequest {
                utterance: text,
                history: self.history.clone(),
                intents: self.intents.clone(),
                language: self.language.clone(),
            },
        });
    }

    fn understood(&mut self, now: Instant, result: IntentResult) {
        let transcript = self
            .last
            .as_ref()
            .map(|l| l.transcript.clone())
            .unwrap_or_default();
        let confidence = f64::from(result.confidence);
        self.last = Some(LastTurn {
            transcript: transcript.clone(),
            intent: result.intent.clone(),
            confidence,
            slots: result.slots.clone(),
        });
        let d = self.state.handle_turn(
            &self.policy,
            TurnOutcome::Understood {
                transcript: &transcript,
                intent: result.intent.as_deref(),
                confidence,
            },
        );
        self.decide(now, d, Some(result));
    }

    fn dtmf(&mut self, now: Instant, digit: char) {
        match self.state.handle_dtmf(&self.policy, digit) {
            Some(d) => self.decide(now, d, None),
            None => self.record(
                now,
                "dtmf",
                format!("key {digit} has no meaning in this step"),
                json!({"digit": digit.to_string()}),
            ),
        }
    }

    fn decide(&mut self, now: Instant, d: Decision, result: Option<IntentResult>) {
        self.record(
            now,
            "decision",
            d.to_string(),
            serde_json::to_value(&d).unwrap_or(Value::Null),
        );
        match &d.action {
            PolicyAction::Route(intent) => {
                let reply = self
                    .replies
                    .get(intent)
                    .cloned()
                    .or_else(|| result.and_then(|r| r.reply))
                    .filter(|r| !r.trim().is_empty())
                    .unwrap_or_else(|| self.config.default_reply.clone());
                let leave = outcome::from_decision(&d, self.last.as_ref(), self.state.turns);
                self.exit = Some(Exit::Decision(d));
                match leave {
                    Some(r) if !reply.trim().is_empty() => {
                        self.speak(now, reply, Purpose::Leave(Box::new(r)))
                    }
                    Some(r) => self.finish(now, r),
                    None => {}
                }
            }
            PolicyAction::Escalate | PolicyAction::Menu => {
                let leave = outcome::from_decision(&d, self.last.as_ref(), self.state.turns);
                self.exit = Some(Exit::Decision(d));
                if let Some(r) = leave {
                    self.finish(now, r);
                }
            }
            PolicyAction::Reprompt => {
                let text = match d.rule {
                    crate::policy::Rule::NoInput { .. } => self.config.no_input_prompt.clone(),
                    _ => result
                        .and_then(|r| r.reply)
                        .filter(|r| !r.trim().is_empty())
                        .unwrap_or_else(|| self.config.reprompt.clone()),
                };
                self.speak(now, text, Purpose::Prompt);
            }
            PolicyAction::Repeat => {
                let text = if self.last_said.is_empty() {
                    self.config.reprompt.clone()
                } else {
                    self.last_said.clone()
                };
                self.speak(now, text, Purpose::Prompt);
            }
        }
    }

    /// Starts a bot turn saying `text`. A filler's turn is reused by the
    /// reply that follows it, so the reply queues behind the filler.
    fn speak(&mut self, now: Instant, text: String, purpose: Purpose) {
        self.no_input_at = None;
        let reuse = self
            .speech
            .as_ref()
            .filter(|s| matches!(s.purpose, Purpose::Filler))
            .map(|s| s.turn);
        let turn = match reuse {
            Some(t) => t,
            None => {
                let t = self.pipeline.begin_bot_turn(now);
                self.commands.push_back(Command::SetTurn(t));
                t
            }
        };
        let filler = matches!(purpose, Purpose::Filler);
        if !filler {
            self.last_said = text.clone();
            self.history.push(Turn {
                speaker: Speaker::Bot,
                text: text.clone(),
            });
        }
        // A reply behind a filler is timed from its own request; a late
        // filler chunk may count as its first byte, which only errs early.
        self.budget.handle_start(now, Stage::TtsFirstByte);
        self.speech = Some(Speech {
            turn,
            purpose,
            first_byte: false,
        });
        self.commands.push_back(Command::Speak {
            turn,
            text,
            last: !filler,
        });
    }

    fn finish(&mut self, now: Instant, result: ActionResult) {
        self.record(
            now,
            "exit",
            match &result {
                ActionResult::Ai { outcome, .. } => format!("leaves on {outcome}"),
                other => format!("leaves: {other:?}"),
            },
            Value::Null,
        );
        self.done = true;
        self.cancel_all();
        let result = self.with_records(result);
        self.commands.push_back(Command::Finish(result));
    }

    fn cancel_all(&mut self) {
        self.no_input_at = None;
        if self.stt.take().is_some() {
            self.commands.push_back(Command::CancelStt);
        }
        if self.nlu.take().is_some() {
            self.commands.push_back(Command::CancelNlu);
        }
    }

    fn with_records(&mut self, result: ActionResult) -> ActionResult {
        match result {
            ActionResult::Ai {
                outcome,
                variables,
                mut records,
            } => {
                records.extend(std::mem::take(&mut self.records));
                ActionResult::Ai {
                    outcome,
                    variables,
                    records,
                }
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests;
