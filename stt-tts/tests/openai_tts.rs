//! The OpenAI-compatible TTS adapter against the provider simulator's
//! `POST /v1/audio/speech` on 127.0.0.1: streamed chunks resampled to the
//! requested rate, 429 with Retry-After, 5xx and 4xx, and a stall that the
//! caller's deadline catches and cancellation ends at once.

use std::path::Path;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use voxgate_stt_tts::openai_tts::{OpenAiTts, OpenAiTtsConfig, OpenAiTtsError};
use voxgate_stt_tts::provider_key::ProviderKey;
use voxgate_stt_tts::simulator::{spawn_simulator, Script, SimulatorHandle};
use voxgate_stt_tts::tts::{TtsChunk, TtsEngine, TtsRequest, TtsStream};
use voxgate_stt_tts::worker::WorkerToken;
use voxgate_stt_tts::{Blame, EngineError};

fn script(speech_stage: &str) -> Script {
    let text = format!(
        r#"{{"seed": 1,
            "tts": {{"voice": {{"kind": "tone", "hz": 440, "ms_per_char": 50}}, "chunk_ms": 40}},
            "stages": {{"speech": {{{speech_stage}}}}}}}"#
    );
    Script::from_json(&text, Path::new(".")).expect("script")
}

async fn start(script: Script) -> (std::net::SocketAddr, SimulatorHandle, CancellationToken) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let stop = CancellationToken::new();
    let handle = spawn_simulator(listener, script, WorkerToken::new("unused"), stop.clone());
    (addr, handle, stop)
}

fn tts(addr: std::net::SocketAddr) -> OpenAiTts {
    OpenAiTts::new(OpenAiTtsConfig {
        base_url: format!("http://{addr}"),
        api_key: Some(ProviderKey::new("sk-test-secret")),
        api_key_env: None,
        model: "tts-1".into(),
        ..OpenAiTtsConfig::default()
    })
    .expect("tts")
}

fn request(text: &str, rate: u32) -> TtsRequest {
    TtsRequest {
        text: text.into(),
        voice: Some("alloy".into()),
        language: None,
        sample_rate: rate,
    }
}

/// Every item until the end, each within 5 s.
async fn drain(stream: &mut TtsStream) -> Vec<Result<TtsChunk, EngineError>> {
    let mut out = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(5), stream.next_chunk()).await {
            Ok(Some(item)) => out.push(item),
            Ok(None) => return out,
            Err(_) => panic!("stream hung after {} items", out.len()),
        }
    }
}

#[tokio::test]
async fn streams_chunks_resampled_to_the_requested_rate() {
    // 40 ms body pieces, 25 ms apart: the clip takes ~350 ms to arrive.
    let (addr, sim, _stop) = start(script(r#""per_chunk": {"fixed_ms": 25}"#)).await;
    let engine = tts(addr);
    let mut stream = engine.synthesize(request("hello there", 8_000));
    assert_eq!(stream.sample_rate(), 8_000);
    let mut chunks = Vec::new();
    let mut arrivals = Vec::new();
    while let Some(item) = tokio::time::timeout(Duration::from_secs(5), stream.next_chunk())
        .await
        .expect("no hang")
    {
        arrivals.push(voxgate_gateway::clock::now());
        chunks.push(item.expect("chunk"));
    }
    assert_eq!(sim.speech_requests(), 1);
    assert_eq!(
        sim.last_speech_auth().as_deref(),
        Some("Bearer sk-test-secret")
    );
    // 11 characters x 50 ms = 550 ms of 24 kHz tone, 4400 samples at 8 kHz.
    let samples: Vec<i16> = chunks.iter().flat_map(|c| c.samples.clone()).collect();
    assert_eq!(samples.len(), 4_400);
    assert!(chunks.iter().all(|c| c.sample_rate == 8_000));
    assert!(chunks.iter().enumerate().all(|(i, c)| c.seq == i as u32));
    // 100 ms chunks (the default), the last one possibly shorter.
    assert!(chunks[..chunks.len() - 1]
        .iter()
        .all(|c| c.samples.len() == 800));
    // Streamed, not buffered: the first chunk came well before the last.
    let spread = arrivals[arrivals.len() - 1].duration_since(arrivals[0]);
    assert!(spread >= Duration::from_millis(100), "spread {spread:?}");
    // Still a 440 Hz tone after resampling: ~2 x 440 x 0.55 zero crossings.
    let crossings = samples
        .windows(2)
        .filter(|w| (w[0] < 0) != (w[1] < 0))
        .count();
    assert!((440..=530).contains(&crossings), "{crossings} crossings");
}

#[tokio::test]
async fn a_429_carries_retry_after() {
    let (addr, _sim, _stop) = start(script(
        r#""faults": {"http_status": 429, "retry_after_s": 7, "times": 1}"#,
    ))
    .await;
    let engine = tts(addr);
    let items = drain(&mut engine.synthesize(request("hi", 16_000))).await;
    let [Err(err)] = items.as_slice() else {
        panic!("{items:?}");
    };
    assert!(
        matches!(err, EngineError::RateLimited { retry_after: Some(d) } if *d == Duration::from_secs(7)),
        "{err:?}"
    );
    assert!(err.retryable());
    // The next request is served.
    let items = drain(&mut engine.synthesize(request("hi", 16_000))).await;
    assert!(!items.is_empty() && items.iter().all(Result::is_ok));
}

#[tokio::test]
async fn server_errors_are_retryable_and_client_errors_are_not() {
    let (addr, _sim, _stop) = start(script(r#""faults": {"http_status": 500}"#)).await;
    let items = drain(&mut tts(addr).synthesize(request("hi", 8_000))).await;
    let [Err(err)] = items.as_slice() else {
        panic!("{items:?}");
    };
    assert!(
        matches!(
            err,
            EngineError::OpenAiTts(OpenAiTtsError::Server { status: 500 })
        ),
        "{err:?}"
    );
    assert!(err.retryable());
    assert_eq!(err.blame(), Blame::Provider);

    let (addr, _sim, _stop) = start(script(r#""faults": {"http_status": 400}"#)).await;
    let items = drain(&mut tts(addr).synthesize(request("hi", 8_000))).await;
    let [Err(err)] = items.as_slice() else {
        panic!("{items:?}");
    };
    assert!(
        matches!(
            err,
            EngineError::OpenAiTts(OpenAiTtsError::Rejected { status: 400, .. })
        ),
        "{err:?}"
    );
    assert!(!err.retryable());
}

#[tokio::test]
async fn a_stall_is_caught_by_the_callers_deadline_and_cancel_ends_it() {
    // 9600 bytes = 200 ms of 24 kHz audio, then silence on an open socket.
    let (addr, _sim, _stop) = start(script(r#""faults": {"stall_after_bytes": 9600}"#)).await;
    let engine = tts(addr);
    let mut stream = engine.synthesize(request("a fairly long sentence to speak", 8_000));
    let mut got = 0;
    let deadline = Duration::from_millis(400);
    loop {
        match tokio::time::timeout(deadline, stream.next_chunk()).await {
            Ok(Some(Ok(c))) => got += c.samples.len(),
            Ok(other) => panic!("the stream ended instead of stalling: {other:?}"),
            Err(_) => break,
        }
    }
    assert!(got >= 800, "only {got} samples before the stall");
    assert!(got < 1_600, "{got} samples: more than the provider sent");
    stream.cancel();
    let after = tokio::time::timeout(Duration::from_millis(100), stream.next_chunk())
        .await
        .expect("cancel must not hang");
    assert!(after.is_none());
}

#[tokio::test]
async fn the_key_is_not_in_debug_output() {
    let engine = tts("127.0.0.1:9".parse().expect("addr"));
    assert!(!format!("{engine:?}").contains("sk-test-secret"));
    assert!(!format!("{:?}", engine.config()).contains("sk-test-secret"));
}
