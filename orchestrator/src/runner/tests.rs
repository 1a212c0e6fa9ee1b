//! The runner over a fake call (no SIP) and the provider simulator over
//! real sockets: the test plays the media task, pushing the caller's
//! espeak-ng speech every 20 ms and pulling the turn stream's packets.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use voxgate_flows::driver::AiRunner;
use voxgate_flows::interpreter::ActionResult;
use voxgate_flows::model::AiNode;
use voxgate_gateway::audio::{synthesize, AudioFrame, SayConfig, SpeechCache};
use voxgate_gateway::call::{
    BoxFuture, CallControl, CallError, CallEvent, CallHandle, CallInfo, IncomingCall, PlaybackId,
    PlaybackSource, TransferError, TransferOutcome, TransferRequest, TurnStream,
};
use voxgate_gateway::media::turns::TurnSource;
use voxgate_stt_tts::simulator::{spawn_simulator, Script};
use voxgate_stt_tts::worker::{PoolConfig, WorkerPool, WorkerToken};

use super::*;

struct FakeCall {
    info: CallInfo,
    audio: Mutex<Option<mpsc::Receiver<AudioFrame>>>,
    stream: Arc<Mutex<Option<TurnStream>>>,
}

impl CallControl for FakeCall {
    fn info(&self) -> &CallInfo {
        &self.info
    }
    fn start_playback(&self, _source: PlaybackSource) -> Result<PlaybackId, CallError> {
        Ok(1)
    }
    fn stop_playback(&self) {}
    fn start_turn_stream(&self, stream: TurnStream) -> Result<PlaybackId, CallError> {
        *self.stream.lock().expect("lock") = Some(stream);
        Ok(2)
    }
    fn subscribe_audio(&self) -> mpsc::Receiver<AudioFrame> {
        self.audio
            .lock()
            .expect("lock")
            .take()
            .unwrap_or_else(|| mpsc::channel(1).1)
    }
    fn transfer(
        &self,
        _request: TransferRequest,
    ) -> BoxFuture<'_, Result<TransferOutcome, TransferError>> {
        Box::pin(async { Err(TransferError::CallGone) })
    }
    fn hangup(&self) {}
}

fn info() -> CallInfo {
    CallInfo {
        incoming: IncomingCall {
            call_id: "c1".into(),
            did: "5000".into(),
            caller_id: "100".into(),
            from_uri: "sip:100@127.0.0.1".into(),
            trunk: "local".into(),
            source: SocketAddr::from(([127, 0, 0, 1], 5062)),
        },
        voxgate_id: "vg-1".into(),
        codec: "PCMU",
        sample_rate: 8_000,
    }
}

pub(super) fn node() -> AiNode {
    serde_json::from_value(json!({
        "intents": [{"name": "balance", "examples": ["what is my balance"],
                     "reply": "Your balance is twelve euros."}]
    }))
    .expect("node")
}

async fn simulator(script: Value) -> (String, CancellationToken) {
    let script = Script::from_json(&script.to_string(), std::path::Path::new(".")).expect("script");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let stop = CancellationToken::new();
    spawn_simulator(listener, script, WorkerToken::new("t"), stop.clone());
    (format!("ws://{addr}"), stop)
}

fn runner(url: &str) -> AiNodeRunner {
    let pool = WorkerPool::new(PoolConfig::new(
        vec![url::Url::parse(url).expect("url")],
        WorkerToken::new("t"),
    ))
    .expect("pool");
    AiNodeRunner::new(
        AiEngines {
            stt: Arc::new(pool.clone()),
            nlu: Arc::new(pool.clone()),
            tts: Arc::new(pool),
            names: EngineNames::default(),
        },
        ConversationConfig::default(),
        Arc::new(PolicyBook::default()),
        Arc::new(BreakerRegistry::default()),
        Arc::new(AdmissionControl::new()),
        Arc::new(AiMetrics::new()),
    )
}

/// Runs the node `params` with `r` on a fake call whose caller says
/// `speech` (8 kHz) after half a second of silence: the node's result and
/// the level of every packet the turn stream sent.
pub(super) async fn run_node(
    r: &AiNodeRunner,
    params: &AiNode,
    speech: &[i16],
) -> (ActionResult, Vec<f64>) {
    let mut caller = vec![0i16; 8 * 500];
    caller.extend_from_slice(speech);
    let (tx, rx) = mpsc::channel(50);
    let stream = Arc::new(Mutex::new(None));
    let fake = Arc::new(FakeCall {
        info: info(),
        audio: Mutex::new(Some(rx)),
        stream: stream.clone(),
    });
    let (_events_tx, events_rx) = mpsc::channel::<CallEvent>(8);
    let mut call = CallHandle::new(fake, events_rx);
    let stop_media = CancellationToken::new();
    let media_task = tokio::spawn(media(caller, tx, stream, stop_media.clone()));
    let vars = BTreeMap::from([("tenant".to_string(), Value::from("acme"))]);
    let result = tokio::time::timeout(
        Duration::from_secs(30),
        r.run(&mut call, "ask", params, &vars),
    )
    .await
    .expect("the node ends");
    stop_media.cancel();
    let levels = media_task.await.expect("media");
    (result, levels)
}

/// Plays the media task for `secs`: the caller's audio in, the turn
/// stream's packets out. Returns the level of every packet sent.
async fn media(
    caller: Vec<i16>,
    tx: mpsc::Sender<AudioFrame>,
    stream: Arc<Mutex<Option<TurnStream>>>,
    stop: CancellationToken,
) -> Vec<f64> {
    let mut source: Option<TurnSource> = None;
    let mut levels = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let mut frames = caller.chunks(160).map(<[i16]>::to_vec);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return levels,
            _ = tick.tick() => {}
        }
        let samples = frames.next().unwrap_or_else(|| vec![0; 160]);
        let _ = tx.try_send(AudioFrame {
            samples,
            sample_rate: 8_000,
        });
        if source.is_none() {
            source = stream.lock().expect("lock").take().map(TurnSource::new);
        }
        let level = source
            .as_mut()
            .and_then(|s| s.next_frame(voxgate_gateway::clock::now()))
            .map_or(0.0, |f| {
                let sum: f64 = f.samples.iter().map(|x| f64::from(*x).powi(2)).sum();
                (sum / f.samples.len() as f64).sqrt()
            });
        levels.push(level);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spoken_question_is_answered_and_the_node_leaves_on_its_intent() {
    let (url, stop_sim) = simulator(json!({
        "stt": {"default": {"text": "what is my balance"}},
        "nlu": {"results": [{"utterance": "what is my balance",
                             "result": {"intent": "balance", "confidence": 0.93}}]},
        "tts": {"voice": {"kind": "tone", "hz": 440.0, "ms_per_char": 40}},
        "stages": {"nlu": {"first": {"fixed_ms": 50}}}
    }))
    .await;
    let speech = synthesize(
        "what is my balance",
        &SayConfig::default(),
        8_000,
        SpeechCache::global(),
    )
    .await
    .expect("espeak-ng speaks");
    let r = runner(&url);
    let (result, levels) = run_node(&r, &node(), &speech).await;
    stop_sim.cancel();
    let ActionResult::Ai {
        outcome,
        variables,
        records,
    } = result
    else {
        panic!("an AI result: {result:?}")
    };
    assert_eq!(outcome, "balance", "{records:?}");
    assert_eq!(variables["ai.transcript"], "what is my balance");
    assert_eq!(variables["ai.transcript_ref"], "vg-1#ask");
    assert!(records.iter().any(|r| r.kind == "turn"), "{records:?}");
    // The reply tone went out before the node left.
    let loud = levels.iter().filter(|l| **l > 1000.0).count();
    assert!(loud >= 40, "{loud} loud packets");
}

#[test]
fn a_tenant_orders_the_configured_providers_and_unknown_names_are_skipped() {
    let configured = ["deepgram".to_string(), "whisper".to_string()];
    assert_eq!(
        super::ordered(&configured, &[]),
        ["deepgram", "whisper"],
        "no preference: the configured order"
    );
    assert_eq!(
        super::ordered(&configured, &["whisper".into(), "deepgram".into()]),
        ["whisper", "deepgram"]
    );
    assert_eq!(
        super::ordered(&configured, &["whisper".into()]),
        ["whisper"],
        "only what the tenant chose"
    );
    assert_eq!(
        super::ordered(&configured, &["google".into()]),
        ["deepgram", "whisper"],
        "a name no longer configured does not leave the tenant without one"
    );
}

#[test]
fn a_call_uses_the_engines_of_the_providers_it_was_admitted_to() {
    let pool = |host: &str| {
        Arc::new(
            WorkerPool::new(PoolConfig::new(
                vec![url::Url::parse(&format!("ws://{host}:9")).expect("url")],
                WorkerToken::new("t"),
            ))
            .expect("pool"),
        )
    };
    let (primary, backup) = (pool("127.0.0.1"), pool("127.0.0.2"));
    let runner = AiNodeRunner::new(
        AiEngines {
            stt: primary.clone(),
            nlu: primary.clone(),
            tts: primary.clone(),
            names: EngineNames {
                stt: "worker".into(),
                nlu: "worker".into(),
                tts: "worker".into(),
            },
        },
        ConversationConfig::default(),
        Arc::new(PolicyBook::default()),
        Arc::new(BreakerRegistry::default()),
        Arc::new(AdmissionControl::new()),
        Arc::new(AiMetrics::new()),
    )
    .with_alternates(Alternates {
        stt: vec![("backup".into(), backup.clone())],
        ..Alternates::default()
    });
    assert_eq!(runner.provider_names().stt, ["worker", "backup"]);
    let wants_backup = ProviderChoices {
        stt: vec!["backup".into(), "worker".into()],
        ..ProviderChoices::default()
    };
    let candidates = runner.candidates(&wants_backup);
    assert_eq!(
        candidates[0],
        (
            Provider::Stt,
            vec!["backup".to_string(), "worker".to_string()]
        )
    );
    assert_eq!(candidates[1], (Provider::Nlu, vec!["worker".to_string()]));
    let admitted = [crate::budget::Admitted {
        provider: Provider::Stt,
        name: "backup".into(),
        admission: crate::budget::Admission::Allowed,
    }];
    let engines = runner.engines_for(&admitted);
    let same = |a: &Arc<dyn voxgate_stt_tts::stt::SttEngine>, b: &Arc<WorkerPool>| {
        std::ptr::eq(Arc::as_ptr(a) as *const (), Arc::as_ptr(b) as *const ())
    };
    assert!(same(&engines.stt, &backup));
    assert_eq!(engines.names.stt, "backup");
    assert_eq!(engines.names.nlu, "worker");
    let engines = runner.engines_for(&[]);
    assert!(same(&engines.stt, &primary));
}
