//! The driver against a fake call, on tokio's paused clock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use serde_json::json;
use tokio::sync::mpsc;
use voxgate_gateway::audio::AudioFrame;
use voxgate_gateway::call::{CallControl, CallError, CallInfo, IncomingCall, PlaybackId};
use voxgate_gateway::dtmf::{DtmfEvent, DtmfSource};

use super::*;
use crate::interpreter::{Disposition, FallbackPolicy};
use crate::model::Flow;

/// What the fake call was asked to do.
#[derive(Debug, Clone, PartialEq)]
enum Did {
    Play(String),
    Stop,
    Transfer(String, Vec<(String, String)>),
    Hangup,
}

/// A call whose playbacks take `play_ms` of (paused) time and whose caller
/// presses `keys` at the given offsets from the call start.
struct FakeCall {
    info: CallInfo,
    events: mpsc::Sender<CallEvent>,
    did: Mutex<Vec<Did>>,
    next_id: AtomicU64,
    play_ms: u64,
    transfer: Result<TransferOutcome, TransferError>,
}

impl CallControl for FakeCall {
    fn info(&self) -> &CallInfo {
        &self.info
    }

    fn start_playback(&self, source: PlaybackSource) -> Result<PlaybackId, CallError> {
        let what = match source {
            PlaybackSource::Say { text, .. } => text,
            PlaybackSource::Wav(p) => p.display().to_string(),
            PlaybackSource::Pcm { .. } => "pcm".into(),
        };
        self.did.lock().expect("lock").push(Did::Play(what));
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let tx = self.events.clone();
        let ms = self.play_ms;
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            let _ = tx
                .send(CallEvent::PlaybackFinished { id, stopped: false })
                .await;
        });
        Ok(id)
    }

    fn stop_playback(&self) {
        self.did.lock().expect("lock").push(Did::Stop);
    }

    fn subscribe_audio(&self) -> mpsc::Receiver<AudioFrame> {
        mpsc::channel(1).1
    }

    fn transfer(
        &self,
        request: TransferRequest,
    ) -> BoxFuture<'_, Result<TransferOutcome, TransferError>> {
        self.did
            .lock()
            .expect("lock")
            .push(Did::Transfer(request.target, request.headers));
        let r = self.transfer.clone();
        Box::pin(async move { r })
    }

    fn hangup(&self) {
        self.did.lock().expect("lock").push(Did::Hangup);
    }
}

fn info() -> CallInfo {
    CallInfo {
        incoming: IncomingCall {
            call_id: "c1".into(),
            did: "100".into(),
            caller_id: "5551234".into(),
            from_uri: "sip:5551234@127.0.0.1".into(),
            trunk: "default".into(),
            source: "127.0.0.1:5062".parse().expect("addr"),
        },
        voxgate_id: "vg-1".into(),
        codec: "PCMU",
        sample_rate: 8000,
    }
}

fn fake(
    play_ms: u64,
    keys: &[(u64, char)],
    transfer: Result<TransferOutcome, TransferError>,
) -> (CallHandle, Arc<FakeCall>) {
    let (tx, rx) = mpsc::channel(64);
    let control = Arc::new(FakeCall {
        info: info(),
        events: tx.clone(),
        did: Mutex::new(Vec::new()),
        next_id: AtomicU64::new(1),
        play_ms,
        transfer,
    });
    for &(at, digit) in keys {
        let tx = tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(at)).await;
            let _ = tx
                .send(CallEvent::Dtmf(DtmfEvent {
                    digit,
                    duration: Duration::from_millis(100),
                    source: DtmfSource::Rfc4733,
                }))
                .await;
        });
    }
    (CallHandle::new(control.clone(), rx), control)
}

fn env() -> FlowEnv {
    FlowEnv {
        http: FlowHttpClient::new().expect("client"),
        prompts_dir: PathBuf::from("/nonexistent/prompts"),
        cache_dir: std::env::temp_dir(),
        ai: Arc::new(UnavailableAi),
    }
}

fn tenant(allow_private: bool) -> TenantRuntime {
    TenantRuntime {
        tenant: "demo".into(),
        flow_id: "f".into(),
        version: 3,
        http: HttpAllowList {
            hosts: vec!["127.0.0.1".into()],
            allow_private,
        },
    }
}

fn interp(nodes: serde_json::Value) -> Interpreter {
    let flow: Flow =
        serde_json::from_value(json!({"id": "f", "name": "F", "entry": "start", "nodes": nodes}))
            .expect("flow");
    Interpreter::new(
        Arc::new(flow),
        &crate::interpreter::tests::call(),
        FallbackPolicy::default(),
        clock::now(),
    )
}

fn menu_flow() -> serde_json::Value {
    json!({
        "start": {"type": "menu", "prompt": {"say": "Press 1 or 2"}, "options": ["1", "2"], "timeout_ms": 3000, "max_retries": 1,
                  "edges": {"1": "one", "2": "agent", "no_input": "bye"}},
        "one": {"type": "say", "text": "You chose one", "edges": {"next": "bye"}},
        "agent": {"type": "transfer", "mode": "blind", "target": "tel:+15550100", "edges": {"failed": "bye"}},
        "bye": {"type": "hangup"}
    })
}

#[tokio::test(start_paused = true)]
async fn a_key_during_the_prompt_stops_it_and_chooses() {
    let (mut call, fake) = fake(2000, &[(500, '1')], Ok(TransferOutcome::Referred));
    let mut i = interp(menu_flow());
    run(&mut call, &mut i, &env(), &tenant(false), |_| {}).await;
    assert_eq!(i.finished(), Some(Disposition::Completed));
    let did = fake.did.lock().expect("lock").clone();
    assert_eq!(
        did,
        [
            Did::Play("Press 1 or 2".into()),
            Did::Stop,
            Did::Play("You chose one".into()),
            Did::Hangup
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn silence_reprompts_then_times_out_after_the_prompt_ends() {
    let (mut call, fake) = fake(1000, &[], Ok(TransferOutcome::Referred));
    let mut i = interp(menu_flow());
    let started = TokioInstant::now();
    run(&mut call, &mut i, &env(), &tenant(false), |_| {}).await;
    // Two prompts of 1 s, each followed by the 3 s wait for a key.
    assert_eq!(started.elapsed(), Duration::from_millis(8000));
    assert_eq!(i.timeline()[0].outcome.as_deref(), Some("no_input"));
    assert_eq!(fake.did.lock().expect("lock").last(), Some(&Did::Hangup));
}

#[tokio::test(start_paused = true)]
async fn keys_typed_ahead_during_a_say_are_not_lost() {
    let (mut call, fake) = fake(1000, &[(200, '2')], Ok(TransferOutcome::Referred));
    let mut i = interp(json!({
        "start": {"type": "say", "text": "Welcome", "edges": {"next": "menu"}},
        "menu": {"type": "menu", "prompt": {"say": "Press 1 or 2"}, "options": ["1", "2"], "edges": {"1": "bye", "2": "agent"}},
        "agent": {"type": "transfer", "mode": "blind", "target": "tel:+15550100", "edges": {"failed": "bye"}},
        "bye": {"type": "hangup"}
    }));
    run(&mut call, &mut i, &env(), &tenant(false), |_| {}).await;
    assert_eq!(i.finished(), Some(Disposition::Transferred));
    let did = fake.did.lock().expect("lock").clone();
    // The menu prompt is skipped: the caller already answered it.
    assert_eq!(did[0], Did::Play("Welcome".into()));
    assert!(
        matches!(&did[1], Did::Transfer(t, h) if t == "tel:+15550100" && h.iter().any(|(k, v)| k == "X-Voxgate-Flow" && v == "demo/f@3"))
    );
}

#[tokio::test(start_paused = true)]
async fn gather_stops_at_the_terminator() {
    let (mut call, _fake) = fake(
        500,
        &[(600, '4'), (900, '2'), (1200, '#')],
        Ok(TransferOutcome::Referred),
    );
    let mut i = interp(json!({
        "start": {"type": "gather", "variable": "pin", "max_digits": 6, "terminator": "#", "prompt": {"say": "PIN?"}, "edges": {"next": "bye"}},
        "bye": {"type": "hangup"}
    }));
    run(&mut call, &mut i, &env(), &tenant(false), |_| {}).await;
    assert_eq!(i.variables()["pin"], json!("42"));
}

#[tokio::test(start_paused = true)]
async fn a_failed_transfer_takes_its_edge_and_the_ai_falls_back_when_absent() {
    let (mut call, _fake) = fake(
        100,
        &[(50, '2')],
        Err(TransferError::Rejected { status: 486 }),
    );
    let mut i = interp(menu_flow());
    run(&mut call, &mut i, &env(), &tenant(false), |_| {}).await;
    assert_eq!(i.timeline()[1].outcome.as_deref(), Some("failed"));

    let (mut call, _fake) = fake(100, &[], Ok(TransferOutcome::Referred));
    let mut i = interp(json!({
        "start": {"type": "ai", "intents": [{"name": "x", "examples": ["x"]}],
                  "edges": {"escalate": "bye", "fallback_dtmf": "menu", "error": "bye"}},
        "menu": {"type": "say", "text": "Here is the menu", "edges": {"next": "bye"}},
        "bye": {"type": "hangup"}
    }));
    run(&mut call, &mut i, &env(), &tenant(false), |_| {}).await;
    assert_eq!(i.timeline()[0].outcome.as_deref(), Some("fallback_dtmf"));
    assert_eq!(i.variables()["ai.reason"], json!("ai_unavailable"));
}

#[tokio::test]
async fn http_nodes_map_replies_and_refuse_private_hosts() {
    let app = axum::Router::new().route(
        "/balance",
        axum::routing::get(|| async { axum::Json(json!({"account": {"balance": 17}})) }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    let nodes = json!({
        "start": {"type": "http", "method": "GET", "url": format!("http://{addr}/balance"), "map": {"balance": "/account/balance"},
                  "edges": {"ok": "bye", "error": "bye"}},
        "bye": {"type": "hangup"}
    });
    let (mut call, _fake) = fake(10, &[], Ok(TransferOutcome::Referred));
    let mut i = interp(nodes.clone());
    run(&mut call, &mut i, &env(), &tenant(true), |_| {}).await;
    assert_eq!(i.timeline()[0].outcome.as_deref(), Some("ok"));
    assert_eq!(i.variables()["balance"], json!(17));

    // The same request for a tenant without the private opt-in is refused.
    let (mut call, _fake) = fake(10, &[], Ok(TransferOutcome::Referred));
    let mut i = interp(nodes);
    run(&mut call, &mut i, &env(), &tenant(false), |_| {}).await;
    assert_eq!(i.timeline()[0].outcome.as_deref(), Some("error"));
    assert!(
        i.timeline()[0].notes[0].contains("private"),
        "{:?}",
        i.timeline()[0].notes
    );
}
