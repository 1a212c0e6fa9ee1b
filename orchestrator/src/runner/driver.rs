//! The async loop of one AI node visit: feeds the [`Conversation`] the
//! call's audio and events and the engine tasks' events, carries out its
//! commands, and sleeps until its next deadline.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use serde_json::Value;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use voxgate_flows::interpreter::ActionResult;
use voxgate_flows::model::{AiNode, SlotKind as FlowSlotKind};
use voxgate_flows::template::Template;
use voxgate_gateway::audio::Resampler;
use voxgate_gateway::call::{CallEvent, CallHandle, TurnAudio, TurnStream, TurnStreamHandle};
use voxgate_gateway::clock;
use voxgate_gateway::media::MEDIA_SAMPLE_RATE;
use voxgate_stt_tts::nlu::{IntentSpec, NluEvent, NluRequest, SlotKind, SlotSpec};
use voxgate_stt_tts::stt::{SttConfig, SttEvent, STT_SAMPLE_RATE};
use voxgate_stt_tts::tts::TtsRequest;
use voxgate_stt_tts::EngineError;

use super::conversation::{Command, Conversation, Exit, Measure, NodeSetup};
use super::{refused, AiEngines, AiNodeRunner};
use crate::budget::{Admitted, FallbackReason, Provider, Stage};
use crate::pipeline::{EarshotScorer, TurnId};
use crate::policy::NodePolicy;

/// What the engine tasks report.
enum EngineEvent {
    Stt {
        id: u64,
        event: Result<SttEvent, EngineError>,
    },
    SttClosed {
        id: u64,
    },
    Nlu {
        turn: TurnId,
        event: Result<NluEvent, EngineError>,
    },
    NluClosed {
        turn: TurnId,
    },
    TtsChunk {
        turn: TurnId,
    },
    TtsDone {
        turn: TurnId,
    },
    TtsError {
        turn: TurnId,
        error: EngineError,
    },
}

fn slot_kind(k: FlowSlotKind) -> SlotKind {
    match k {
        FlowSlotKind::Digits => SlotKind::Digits,
        FlowSlotKind::Amount => SlotKind::Amount,
        FlowSlotKind::Date => SlotKind::Date,
        FlowSlotKind::YesNo => SlotKind::YesNo,
        FlowSlotKind::Text => SlotKind::Text,
    }
}

fn render(text: &str, vars: &BTreeMap<String, Value>) -> String {
    Template::parse(text)
        .map(|t| t.render(vars))
        .unwrap_or_else(|_| text.to_string())
}

/// The provider a fallback blames, for its circuit breaker.
fn blamed(reason: &FallbackReason) -> Option<Provider> {
    match reason {
        FallbackReason::ProviderError { provider, .. }
        | FallbackReason::Stall { provider, .. }
        | FallbackReason::CircuitOpen { provider, .. } => Some(*provider),
        FallbackReason::Deadline { stage, .. } => match stage {
            Stage::SttFinal => Some(Provider::Stt),
            Stage::NluFirstToken => Some(Provider::Nlu),
            Stage::TtsFirstByte => Some(Provider::Tts),
            Stage::Turn => None,
        },
    }
}

/// Live engine sessions of the conversation.
#[derive(Default)]
struct Sessions {
    stt: Option<(u64, mpsc::UnboundedSender<SttInputCmd>, CancellationToken)>,
    nlu: Option<CancellationToken>,
    /// Syntheses in progress; the last one's completion gates the next in
    /// the same turn, so a reply queues behind its filler.
    tts: Vec<CancellationToken>,
    tts_tail: Option<(TurnId, watch::Receiver<bool>)>,
}

enum SttInputCmd {
    Audio(Vec<i16>),
    End,
}

pub(super) async fn run(
    runner: &AiNodeRunner,
    call: &mut CallHandle,
    node: &str,
    params: &AiNode,
    variables: &BTreeMap<String, Value>,
) -> ActionResult {
    let tenant = variables
        .get("tenant")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let m = &runner.metrics;
    let mut policy = runner.book.get(&tenant);
    let fallback = policy.default_fallback();
    let _permit = match runner.admission.try_admit(&tenant, &policy.limits) {
        Ok(p) => p,
        Err(refusal) => {
            m.fallback(&tenant, refusal.code());
            return refused(fallback.outcome(), refusal.code(), refusal.to_string());
        }
    };
    let now = clock::now();
    let admitted =
        match runner
            .breakers
            .admit_call(now, &tenant, &runner.candidates(&policy.providers))
        {
            Ok(a) => a,
            Err(reason) => {
                m.fallback(&tenant, &reason.code());
                return refused(fallback.outcome(), &reason.code(), reason.to_string());
            }
        };
    let engines = runner.engines_for(&admitted);

    let (stream, playback) = TurnStream::channel();
    if let Err(e) = call.control().start_turn_stream(playback) {
        m.fallback(&tenant, "playback_failed");
        return refused(
            fallback.outcome(),
            "playback_failed",
            format!("streaming playback: {e}"),
        );
    }
    let mut played = stream.gate.played();
    let mut audio = call.control().subscribe_audio();
    let mut audio_open = true;
    let mut upsample = match Resampler::new(MEDIA_SAMPLE_RATE, STT_SAMPLE_RATE) {
        Ok(r) => r,
        Err(e) => {
            return refused(fallback.outcome(), "internal", format!("resampler: {e}"));
        }
    };

    let setup = NodeSetup {
        greeting: params.greeting.as_deref().map(|g| render(g, variables)),
        intents: params
            .intents
            .iter()
            .map(|i| IntentSpec {
                name: i.name.clone(),
                description: i.description.clone(),
                examples: i.examples.clone(),
                slots: i
                    .slots
                    .iter()
                    .map(|s| SlotSpec {
                        name: s.name.clone(),
                        kind: slot_kind(s.kind),
                    })
                    .collect(),
            })
            .collect(),
        replies: params
            .intents
            .iter()
            .filter_map(|i| {
                i.reply
                    .as_ref()
                    .map(|r| (i.name.clone(), render(r, variables)))
            })
            .collect(),
        language: params.language.clone(),
        policy: NodePolicy::resolve(&policy.escalation, params),
        budgets: policy.budgets.clone(),
    };
    let mut conv = Conversation::new(
        EarshotScorer::new(),
        runner.config.clone(),
        setup,
        clock::now(),
    );
    let (events_tx, mut events) = mpsc::unbounded_channel::<EngineEvent>();
    let mut sessions = Sessions::default();
    let voice = params.voice.clone();
    let language = params.language.clone();

    let result = loop {
        // Carry out what the conversation asked for.
        let mut finished = None;
        while let Some(cmd) = conv.poll_command() {
            match cmd {
                Command::Finish(r) => {
                    finished = Some(r);
                    break;
                }
                Command::RefreshPolicy => {
                    let now_in_force = runner.book.get(&tenant);
                    if !Arc::ptr_eq(&now_in_force, &policy) {
                        policy = now_in_force;
                        conv.handle_policy(
                            NodePolicy::resolve(&policy.escalation, params),
                            policy.budgets.clone(),
                        );
                    }
                }
                cmd => execute(
                    &engines,
                    cmd,
                    &stream,
                    &events_tx,
                    &mut sessions,
                    voice.as_deref(),
                    language.as_deref(),
                ),
            }
        }
        for measure in conv.take_measures() {
            match measure {
                Measure::Stage(stage, ms) => m.stage(&tenant, stage.name(), ms),
                Measure::BargeInToSilence(ms) => m.stage(&tenant, "barge_in_to_silence", ms),
            }
        }
        if let Some(r) = finished {
            break r;
        }
        let deadline = conv.poll_timeout();
        let sleep = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            frame = audio.recv(), if audio_open => match frame {
                Some(f) => {
                    let now = clock::now();
                    if upsample.push(&f.samples).is_ok() {
                        while let Some(out) = upsample.pop_frame() {
                            conv.handle_caller_audio(now, &out.samples);
                        }
                    }
                }
                // The media session replaced our subscription or ended;
                // the call events say which.
                None => audio_open = false,
            },
            ev = call.next_event() => {
                let now = clock::now();
                match ev {
                    Some(CallEvent::Dtmf(d)) => conv.handle_dtmf(now, d.digit),
                    Some(CallEvent::Ended { .. }) | None => conv.handle_hangup(now),
                    Some(_) => {}
                }
            }
            Some(ev) = events.recv() => handle_engine(&mut conv, clock::now(), ev),
            changed = played.changed() => {
                if changed.is_ok() {
                    let turn = *played.borrow_and_update();
                    conv.handle_played(clock::now(), TurnId(turn));
                }
            }
            () = sleep => conv.handle_timeout(clock::now()),
        }
        let now = clock::now();
        for cut in stream.gate.take_cuts() {
            if cut.was_playing {
                conv.handle_cut(now, TurnId(cut.turn), cut.silence_after, cut.dropped_frames);
            }
        }
    };

    // Stop everything of this node: engines, and any audio still queued.
    stop_all(&mut sessions);
    call.stop_playback();
    drop(stream);
    report(runner, &tenant, conv.exit(), &admitted, clock::now());
    with_context(result, call, node)
}

/// Adds what a transfer needs to find the conversation again.
fn with_context(result: ActionResult, call: &CallHandle, node: &str) -> ActionResult {
    match result {
        ActionResult::Ai {
            outcome,
            mut variables,
            records,
        } => {
            variables.insert(
                "ai.transcript_ref".to_string(),
                Value::from(format!("{}#{node}", call.info().voxgate_id)),
            );
            variables.insert("ai.node".to_string(), Value::from(node));
            ActionResult::Ai {
                outcome,
                variables,
                records,
            }
        }
        other => other,
    }
}

/// Breakers and counters once the node is left.
fn report(
    runner: &AiNodeRunner,
    tenant: &str,
    exit: Option<&Exit>,
    admitted: &[Admitted],
    now: Instant,
) {
    let m = &runner.metrics;
    let failed = match exit {
        Some(Exit::Fallback(fb)) => {
            m.fallback(tenant, &fb.reason.code());
            blamed(&fb.reason)
        }
        Some(Exit::Decision(d)) => {
            if matches!(
                d.action,
                crate::policy::PolicyAction::Escalate | crate::policy::PolicyAction::Menu
            ) {
                m.escalation(tenant, d.rule.code());
            }
            None
        }
        Some(Exit::HungUp) | None => None,
    };
    for a in admitted {
        if Some(a.provider) == failed {
            runner
                .breakers
                .handle_failure(now, tenant, a.provider, &a.name);
        } else if !matches!(exit, Some(Exit::HungUp) | None) {
            runner
                .breakers
                .handle_success(now, tenant, a.provider, &a.name);
        }
    }
}

fn handle_engine<S: crate::pipeline::VoiceScorer>(
    conv: &mut Conversation<S>,
    now: Instant,
    ev: EngineEvent,
) {
    match ev {
        EngineEvent::Stt { id, event } => conv.handle_stt(now, id, event),
        EngineEvent::SttClosed { id } => conv.handle_stt_closed(now, id),
        EngineEvent::Nlu { turn, event } => conv.handle_nlu(now, turn, event),
        EngineEvent::NluClosed { turn } => conv.handle_nlu_closed(now, turn),
        EngineEvent::TtsChunk { turn } => conv.handle_tts_chunk(now, turn),
        EngineEvent::TtsDone { turn } => conv.handle_tts_done(now, turn),
        EngineEvent::TtsError { turn, error } => conv.handle_tts_error(now, turn, &error),
    }
}

fn stop_all(s: &mut Sessions) {
    if let Some((_, _, c)) = s.stt.take() {
        c.cancel();
    }
    if let Some(c) = s.nlu.take() {
        c.cancel();
    }
    for c in s.tts.drain(..) {
        c.cancel();
    }
    s.tts_tail = None;
}

fn execute(
    engines: &AiEngines,
    cmd: Command,
    stream: &TurnStreamHandle,
    events: &mpsc::UnboundedSender<EngineEvent>,
    s: &mut Sessions,
    voice: Option<&str>,
    language: Option<&str>,
) {
    match cmd {
        Command::SetTurn(turn) => stream.gate.set_turn(turn.0, clock::now()),
        Command::OpenStt { id, preroll } => {
            if let Some((_, _, c)) = s.stt.take() {
                c.cancel();
            }
            let (tx, rx) = mpsc::unbounded_channel();
            let cancel = CancellationToken::new();
            let config = SttConfig {
                sample_rate: STT_SAMPLE_RATE,
                language: language.unwrap_or("en-US").to_string(),
            };
            tokio::spawn(stt_task(
                engines.stt.clone(),
                config,
                id,
                preroll,
                rx,
                events.clone(),
                cancel.clone(),
            ));
            s.stt = Some((id, tx, cancel));
        }
        Command::SttAudio { id, samples } => {
            if let Some((sid, tx, _)) = &s.stt {
                if *sid == id {
                    let _ = tx.send(SttInputCmd::Audio(samples));
                }
            }
        }
        Command::EndStt { id } => {
            if let Some((sid, tx, _)) = &s.stt {
                if *sid == id {
                    let _ = tx.send(SttInputCmd::End);
                }
            }
        }
        Command::CancelStt => {
            if let Some((_, _, c)) = s.stt.take() {
                c.cancel();
            }
        }
        Command::Classify { turn, request } => {
            if let Some(c) = s.nlu.take() {
                c.cancel();
            }
            let cancel = CancellationToken::new();
            tokio::spawn(nlu_task(
                engines.nlu.clone(),
                request,
                turn,
                events.clone(),
                cancel.clone(),
            ));
            s.nlu = Some(cancel);
        }
        Command::CancelNlu => {
            if let Some(c) = s.nlu.take() {
                c.cancel();
            }
        }
        Command::Speak { turn, text, last } => {
            let cancel = CancellationToken::new();
            let after = s
                .tts_tail
                .take()
                .filter(|(t, _)| *t == turn)
                .map(|(_, rx)| rx);
            let (done_tx, done_rx) = watch::channel(false);
            s.tts_tail = Some((turn, done_rx));
            s.tts.retain(|c| !c.is_cancelled());
            s.tts.push(cancel.clone());
            let request = TtsRequest {
                text,
                voice: voice.map(str::to_string),
                language: language.map(str::to_string),
                sample_rate: MEDIA_SAMPLE_RATE,
            };
            tokio::spawn(tts_task(TtsJob {
                engine: engines.tts.clone(),
                request,
                turn,
                last,
                after,
                done: done_tx,
                audio: stream.audio.clone(),
                events: events.clone(),
                cancel,
            }));
        }
        Command::CancelTts => {
            for c in s.tts.drain(..) {
                c.cancel();
            }
            s.tts_tail = None;
        }
        // The loop in `run` handles these.
        Command::Finish(_) | Command::RefreshPolicy => {}
    }
}

async fn stt_task(
    engine: Arc<dyn voxgate_stt_tts::stt::SttEngine>,
    config: SttConfig,
    id: u64,
    preroll: Vec<i16>,
    mut input: mpsc::UnboundedReceiver<SttInputCmd>,
    events: mpsc::UnboundedSender<EngineEvent>,
    cancel: CancellationToken,
) {
    let opened = tokio::select! {
        _ = cancel.cancelled() => return,
        s = engine.open(config) => s,
    };
    let mut session = match opened {
        Ok(s) => s,
        Err(e) => {
            let _ = events.send(EngineEvent::Stt { id, event: Err(e) });
            return;
        }
    };
    if !preroll.is_empty() {
        if let Err(e) = session.push_audio(&preroll).await {
            let _ = events.send(EngineEvent::Stt { id, event: Err(e) });
            return;
        }
    }
    let mut input_open = true;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => {
                session.cancel();
                return;
            }
            cmd = input.recv(), if input_open => {
                let sent = match cmd {
                    Some(SttInputCmd::Audio(pcm)) => session.push_audio(&pcm).await,
                    Some(SttInputCmd::End) => {
                        input_open = false;
                        session.end_of_stream().await
                    }
                    None => return,
                };
                if let Err(e) = sent {
                    let _ = events.send(EngineEvent::Stt { id, event: Err(e) });
                    return;
                }
            }
            ev = session.next_event() => match ev {
                Some(event) => {
                    if events.send(EngineEvent::Stt { id, event }).is_err() {
                        return;
                    }
                }
                None => {
                    let _ = events.send(EngineEvent::SttClosed { id });
                    return;
                }
            },
        }
    }
}

async fn nlu_task(
    engine: Arc<dyn voxgate_stt_tts::nlu::IntentEngine>,
    request: NluRequest,
    turn: TurnId,
    events: mpsc::UnboundedSender<EngineEvent>,
    cancel: CancellationToken,
) {
    let mut stream = engine.classify(request);
    loop {
        let ev = tokio::select! {
            _ = cancel.cancelled() => {
                stream.cancel();
                return;
            }
            ev = stream.next_event() => ev,
        };
        match ev {
            Some(event) => {
                let is_result = matches!(event, Ok(NluEvent::Result(_)) | Err(_));
                if events.send(EngineEvent::Nlu { turn, event }).is_err() || is_result {
                    return;
                }
            }
            None => {
                let _ = events.send(EngineEvent::NluClosed { turn });
                return;
            }
        }
    }
}

struct TtsJob {
    engine: Arc<dyn voxgate_stt_tts::tts::TtsEngine>,
    request: TtsRequest,
    turn: TurnId,
    last: bool,
    /// Completion of the speech before this one in the same turn.
    after: Option<watch::Receiver<bool>>,
    done: watch::Sender<bool>,
    audio: mpsc::Sender<TurnAudio>,
    events: mpsc::UnboundedSender<EngineEvent>,
    cancel: CancellationToken,
}

/// Resolves once the speech before this one has finished (or was
/// cancelled); never when there is none to wait for.
async fn previous_done(after: &mut Option<watch::Receiver<bool>>) {
    match after.as_mut() {
        Some(rx) => {
            let _ = rx.wait_for(|d| *d).await;
        }
        None => std::future::pending().await,
    }
}

async fn tts_task(job: TtsJob) {
    let TtsJob {
        engine,
        request,
        turn,
        last,
        mut after,
        done,
        audio,
        events,
        cancel,
    } = job;
    let mut stream = engine.synthesize(request);
    let mut resampler: Option<Resampler> = None;
    // Audio synthesised while the speech before it still plays.
    let mut held: Vec<Vec<i16>> = Vec::new();
    let mut ended = false;
    loop {
        let item = tokio::select! {
            _ = cancel.cancelled() => {
                stream.cancel();
                return;
            }
            () = previous_done(&mut after) => {
                after = None;
                for p in held.drain(..) {
                    if audio.send(TurnAudio::Pcm { turn: turn.0, samples: p }).await.is_err() {
                        return;
                    }
                }
                if ended {
                    break;
                }
                continue;
            }
            item = stream.next_chunk(), if !ended => item,
        };
        match item {
            Some(Ok(chunk)) => {
                if events.send(EngineEvent::TtsChunk { turn }).is_err() {
                    return;
                }
                let pcm = match to_media_rate(&mut resampler, chunk.samples, chunk.sample_rate) {
                    Ok(p) => p,
                    Err(error) => {
                        let _ = events.send(EngineEvent::TtsError { turn, error });
                        return;
                    }
                };
                if after.is_some() {
                    held.push(pcm);
                } else if audio
                    .send(TurnAudio::Pcm {
                        turn: turn.0,
                        samples: pcm,
                    })
                    .await
                    .is_err()
                {
                    return;
                }
            }
            Some(Err(error)) => {
                let _ = events.send(EngineEvent::TtsError { turn, error });
                return;
            }
            None => {
                if let Some(r) = resampler.as_mut() {
                    if r.finish().is_ok() {
                        let tail = r.drain_samples();
                        if !tail.is_empty() {
                            held.push(tail);
                        }
                    }
                }
                ended = true;
                if after.is_none() {
                    break;
                }
            }
        }
    }
    for p in held.drain(..) {
        if audio
            .send(TurnAudio::Pcm {
                turn: turn.0,
                samples: p,
            })
            .await
            .is_err()
        {
            return;
        }
    }
    if last {
        let _ = audio.send(TurnAudio::End { turn: turn.0 }).await;
    }
    let _ = done.send(true);
    let _ = events.send(EngineEvent::TtsDone { turn });
}

/// Brings a TTS chunk to the call's rate.
fn to_media_rate(
    resampler: &mut Option<Resampler>,
    samples: Vec<i16>,
    rate: u32,
) -> Result<Vec<i16>, EngineError> {
    if rate == MEDIA_SAMPLE_RATE {
        return Ok(samples);
    }
    let r = match resampler {
        Some(r) => r,
        None => resampler.insert(Resampler::new(rate, MEDIA_SAMPLE_RATE)?),
    };
    r.push(&samples)?;
    Ok(r.drain_samples())
}
