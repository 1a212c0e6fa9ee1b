//! The LLM client and the worker pool against the provider simulator on
//! 127.0.0.1: streaming, structured output, malformed streams, 429 with
//! Retry-After, 5xx, first-token deadline versus a stalled stream, and
//! scripted STT/TTS/NLU with injected faults.

use std::path::Path;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use url::Url;
use voxgate_stt_tts::llm::{ApiKey, LlmClient, LlmConfig, LlmError, StructuredMode};
use voxgate_stt_tts::nlu::{IntentSpec, NluRequest, SlotKind, SlotSpec, SlotValue};
use voxgate_stt_tts::simulator::{audio_fingerprint, spawn_simulator, Script, SimulatorHandle};
use voxgate_stt_tts::stt::{SttConfig, SttEngine, SttEvent};
use voxgate_stt_tts::tts::{TtsEngine, TtsRequest};
use voxgate_stt_tts::worker::{PoolConfig, WorkerPool, WorkerToken};
use voxgate_stt_tts::EngineError;

const TOKEN: &str = "sim-token";

fn script(extra_stages: &str) -> Script {
    let text = format!(
        r#"{{
        "seed": 1,
        "stt": {{"fingerprint_seconds": 0.5,
                 "transcripts": [{{"fingerprint": "{fp}", "text": "I want to pay my bill"}}],
                 "default": {{"text": "sorry what", "confidence": 0.3}}}},
        "nlu": {{"results": [{{"utterance": "pay twenty dollars tomorrow",
                              "result": {{"intent": "pay_bill", "confidence": 0.93,
                                          "slots": {{"amount": {{"kind": "amount", "value": {{"value": "20", "currency": "USD"}}}},
                                                     "date": {{"kind": "date", "value": {{"form": "relative", "days": 1}}}}}},
                                          "reply": "Paying 20 dollars tomorrow."}}}}]}},
        "tts": {{"voice": {{"kind": "tone", "hz": 440, "ms_per_char": 50}}, "chunk_ms": 100}},
        "stages": {{{extra_stages}}}
    }}"#,
        fp = audio_fingerprint(&speech(), 16_000, 0.5)
    );
    Script::from_json(&text, Path::new(".")).expect("script")
}

/// The "recording" the script knows: two seconds of a 300 Hz tone.
fn speech() -> Vec<i16> {
    (0..32_000)
        .map(|i| (6000.0 * (i as f32 * 300.0 * std::f32::consts::TAU / 16_000.0).sin()) as i16)
        .collect()
}

async fn start(script: Script) -> (std::net::SocketAddr, SimulatorHandle, CancellationToken) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let stop = CancellationToken::new();
    let handle = spawn_simulator(listener, script, WorkerToken::new(TOKEN), stop.clone());
    (addr, handle, stop)
}

fn request() -> NluRequest {
    NluRequest {
        utterance: "pay twenty dollars tomorrow".into(),
        history: vec![],
        intents: vec![
            IntentSpec {
                name: "pay_bill".into(),
                description: "pay a bill".into(),
                examples: vec!["pay my bill".into()],
                slots: vec![
                    SlotSpec {
                        name: "amount".into(),
                        kind: SlotKind::Amount,
                    },
                    SlotSpec {
                        name: "date".into(),
                        kind: SlotKind::Date,
                    },
                ],
            },
            IntentSpec {
                name: "agent".into(),
                description: "a human".into(),
                examples: vec![],
                slots: vec![],
            },
        ],
        language: Some("en-US".into()),
    }
}

fn client(
    addr: std::net::SocketAddr,
    mode: StructuredMode,
    tune: impl FnOnce(&mut LlmConfig),
) -> LlmClient {
    let mut config = LlmConfig::new(
        Url::parse(&format!("http://{addr}/v1/")).expect("url"),
        "sim-model",
    );
    config.api_key = Some(ApiKey::new("sk-tenant-secret"));
    config.mode = mode;
    tune(&mut config);
    LlmClient::new(config).expect("client")
}

fn assert_pay_bill(r: &voxgate_stt_tts::nlu::IntentResult) {
    assert_eq!(r.intent.as_deref(), Some("pay_bill"));
    assert!((r.confidence - 0.93).abs() < 1e-3, "{r:?}");
    assert_eq!(
        r.slots.get("amount"),
        Some(&SlotValue::Amount {
            value: "20".into(),
            currency: Some("USD".into())
        })
    );
    assert_eq!(r.reply.as_deref(), Some("Paying 20 dollars tomorrow."));
}

#[tokio::test]
async fn llm_streaming_json_schema_and_tool_call() {
    let (addr, sim, _stop) = start(script(
        r#""llm": {"first": {"fixed_ms": 120}, "per_chunk": {"uniform_ms": [1, 5]}}"#,
    ))
    .await;
    for mode in [StructuredMode::JsonSchema, StructuredMode::ToolCall] {
        let c = client(addr, mode, |_| {});
        let mut tokens = 0;
        let out = c
            .classify_streaming(&request(), |_| tokens += 1)
            .await
            .expect("classify");
        assert_pay_bill(&out.result);
        assert!(tokens > 3, "streamed in pieces: {tokens}");
        // The role-only chunk comes at once; the first token after 120 ms.
        assert!(
            out.first_token >= Duration::from_millis(110),
            "{:?}",
            out.first_token
        );
        assert!(out.total >= out.first_token);
        let once = c.classify(&request()).await.expect("non-streaming");
        assert_pay_bill(&once.result);
    }
    assert_eq!(sim.llm_requests(), 4);
    // Unknown utterances answer `none`.
    let c = client(addr, StructuredMode::JsonSchema, |_| {});
    let mut other = request();
    other.utterance = "what's the weather".into();
    let out = c
        .classify_streaming(&other, |_| {})
        .await
        .expect("classify");
    assert_eq!(out.result.intent, None);
}

#[tokio::test]
async fn llm_malformed_stream_is_typed() {
    let (addr, _sim, _stop) = start(script(r#""llm": {"faults": {"garbage_at_chunk": 1}}"#)).await;
    let err = client(addr, StructuredMode::JsonSchema, |_| {})
        .classify_streaming(&request(), |_| {})
        .await
        .expect_err("garbage");
    assert!(matches!(err, LlmError::MalformedStream(_)), "{err}");
    assert!(err.retryable());
}

#[tokio::test]
async fn llm_429_carries_retry_after_and_5xx_is_a_server_error() {
    let (addr, sim, _stop) = start(script(
        r#""llm": {"faults": {"http_status": 429, "retry_after_s": 3, "times": 1}}"#,
    ))
    .await;
    let c = client(addr, StructuredMode::JsonSchema, |_| {});
    match c.classify_streaming(&request(), |_| {}).await {
        Err(LlmError::RateLimited { retry_after }) => {
            assert_eq!(retry_after, Some(Duration::from_secs(3)))
        }
        other => panic!("{other:?}"),
    }
    // `times: 1`: the retry goes through.
    assert_pay_bill(
        &c.classify_streaming(&request(), |_| {})
            .await
            .expect("retry")
            .result,
    );
    assert_eq!(sim.llm_requests(), 2);

    let (addr, _sim, _stop) = start(script(r#""llm": {"faults": {"http_status": 503}}"#)).await;
    let err = client(addr, StructuredMode::JsonSchema, |_| {})
        .classify(&request())
        .await
        .expect_err("503");
    assert!(matches!(err, LlmError::Server { status: 503 }), "{err}");
    assert!(err.retryable());
}

#[tokio::test]
async fn first_token_deadline_is_not_a_read_timeout() {
    let (addr, _sim, _stop) = start(script(r#""llm": {"first": {"fixed_ms": 600}}"#)).await;
    let c = client(addr, StructuredMode::JsonSchema, |c| {
        c.first_token_deadline = Duration::from_millis(200);
        c.read_timeout = Duration::from_secs(5);
    });
    let err = c
        .classify_streaming(&request(), |_| {})
        .await
        .expect_err("late");
    assert!(
        matches!(err, LlmError::FirstTokenDeadline { deadline } if deadline == Duration::from_millis(200)),
        "{err}"
    );

    // Tokens flow, then stall: that is a read timeout.
    let (addr, _sim, _stop) =
        start(script(r#""llm": {"faults": {"stall_after_chunks": 2}}"#)).await;
    let c = client(addr, StructuredMode::JsonSchema, |c| {
        c.first_token_deadline = Duration::from_secs(2);
        c.read_timeout = Duration::from_millis(200);
    });
    let err = c
        .classify_streaming(&request(), |_| {})
        .await
        .expect_err("stalled");
    assert!(matches!(err, LlmError::ReadTimeout { .. }), "{err}");

    // A slow start (headers late) also counts against the first token.
    let (addr, _sim, _stop) = start(script(r#""llm": {"faults": {"slow_start_ms": 500}}"#)).await;
    let c = client(addr, StructuredMode::JsonSchema, |c| {
        c.first_token_deadline = Duration::from_millis(150)
    });
    assert!(matches!(
        c.classify(&request()).await,
        Err(LlmError::FirstTokenDeadline { .. })
    ));
}

#[tokio::test]
async fn the_api_key_is_sent_but_never_logged() {
    let (addr, _sim, _stop) = start(script("")).await;
    let c = client(addr, StructuredMode::JsonSchema, |_| {});
    assert!(!format!("{c:?}").contains("sk-tenant-secret"));
    assert!(c.classify(&request()).await.is_ok());
}

fn sim_pool(addr: std::net::SocketAddr, copies: usize) -> WorkerPool {
    let url = Url::parse(&format!("ws://{addr}/v1/worker")).expect("url");
    WorkerPool::new(PoolConfig::new(vec![url; copies], WorkerToken::new(TOKEN))).expect("pool")
}

#[tokio::test]
async fn scripted_stt_by_fingerprint_with_a_disconnect_fault() {
    // The first STT session drops after its partial; the pool moves to the
    // second entry (the same simulator) and replays.
    let (addr, sim, _stop) = start(script(
        r#""stt": {"faults": {"disconnect_after_chunks": 1, "times": 1}}"#,
    ))
    .await;
    let pool = sim_pool(addr, 2);
    let mut stt = pool.open(SttConfig::default()).await.expect("open");
    for frame in speech().chunks(320) {
        stt.push_audio(frame).await.expect("push");
    }
    stt.end_of_stream().await.expect("end");
    let mut finals = Vec::new();
    while let Some(e) = tokio::time::timeout(Duration::from_secs(5), stt.next_event())
        .await
        .expect("in time")
    {
        if let SttEvent::Final(t) = e.expect("no error") {
            finals.push(t);
        }
    }
    assert_eq!(finals.len(), 1);
    assert_eq!(finals[0].text, "I want to pay my bill");
    assert_eq!(finals[0].words.len(), 6);
    assert_eq!(finals[0].end_ms, 2000);
    assert_eq!(sim.stt_sessions(), 2, "one failover");

    // Unknown audio gets the default transcript.
    let mut stt = pool.open(SttConfig::default()).await.expect("open");
    stt.push_audio(&[5; 16_000]).await.expect("push");
    stt.end_of_stream().await.expect("end");
    let mut last = None;
    while let Some(e) = stt.next_event().await {
        last = Some(e.expect("event"));
    }
    assert!(matches!(last, Some(SttEvent::Final(t)) if t.text == "sorry what"));
}

#[tokio::test]
async fn scripted_tts_stall_and_garbage() {
    let req = TtsRequest {
        text: "hello there".into(),
        voice: None,
        language: None,
        sample_rate: 16_000,
    };
    let (addr, _sim, _stop) = start(script(r#""tts": {"first": {"fixed_ms": 30}}"#)).await;
    let mut tts = sim_pool(addr, 1).synthesize(req.clone());
    let mut samples = 0;
    while let Some(c) = tts.next_chunk().await {
        let c = c.expect("chunk");
        assert!(c.samples.len() <= 1600);
        samples += c.samples.len();
    }
    // 11 characters at 50 ms: 0.55 s.
    assert_eq!(samples, 8_800);

    let (addr, _sim, _stop) = start(script(r#""tts": {"faults": {"garbage_at_chunk": 1}}"#)).await;
    let mut tts = sim_pool(addr, 1).synthesize(req.clone());
    assert!(tts.next_chunk().await.expect("first").is_ok());
    match tts.next_chunk().await {
        Some(Err(EngineError::Protocol(_))) => {}
        other => panic!("{other:?}"),
    }

    let (addr, _sim, _stop) =
        start(script(r#""tts": {"faults": {"stall_after_chunks": 2}}"#)).await;
    let mut tts = sim_pool(addr, 1).synthesize(req);
    assert!(tts.next_chunk().await.expect("1").is_ok());
    assert!(tts.next_chunk().await.expect("2").is_ok());
    let stalled = tokio::time::timeout(Duration::from_millis(300), tts.next_chunk()).await;
    assert!(stalled.is_err(), "the third chunk never comes");
    tts.cancel();
    assert!(
        tts.next_chunk().await.is_none(),
        "cancel ends the stream at once"
    );
}

#[tokio::test]
async fn scripted_nlu_streams_tokens_then_the_result() {
    use voxgate_stt_tts::nlu::{IntentEngine, NluEvent};
    let (addr, _sim, _stop) = start(script(r#""nlu": {"first": {"fixed_ms": 50}}"#)).await;
    let pool = sim_pool(addr, 1);
    let mut s = IntentEngine::classify(&pool, request());
    let mut tokens = String::new();
    let result = loop {
        match s.next_event().await.expect("event").expect("ok") {
            NluEvent::Token(t) => tokens.push_str(&t),
            NluEvent::Result(r) => break r,
        }
    };
    assert_pay_bill(&result);
    assert!(tokens.contains("\"pay_bill\""), "{tokens}");
    // An utterance with no script entry falls back to the lexical classifier.
    let mut other = request();
    other.utterance = "pay my bill please".into();
    let r = IntentEngine::classify(&pool, other)
        .result()
        .await
        .expect("result");
    assert_eq!(r.intent.as_deref(), Some("pay_bill"));
}

#[tokio::test]
async fn speech_endpoint_streams_pcm_and_stalls_on_request() {
    voxgate_gateway::crypto::install_crypto_provider();
    let (addr, _sim, _stop) = start(script(
        r#""speech": {"faults": {"stall_after_bytes": 10000, "times": 1}}"#,
    ))
    .await;
    let http = reqwest::Client::new();
    let url = format!("http://{addr}/v1/audio/speech");
    let body = serde_json::json!({"model": "tts-1", "input": "hello there", "voice": "alloy", "response_format": "pcm"});
    // First request: 10000 bytes, then nothing.
    let mut resp = http.post(&url).json(&body).send().await.expect("send");
    assert_eq!(resp.headers()["x-sample-rate"], "24000");
    let mut got = 0;
    loop {
        match tokio::time::timeout(Duration::from_millis(300), resp.chunk()).await {
            Ok(Ok(Some(b))) => got += b.len(),
            Ok(other) => panic!("{other:?}"),
            Err(_) => break,
        }
    }
    assert_eq!(got, 10_000);
    // Second: the whole clip, 0.55 s at 24 kHz.
    let all = http
        .post(&url)
        .json(&body)
        .send()
        .await
        .expect("send")
        .bytes()
        .await
        .expect("body");
    assert_eq!(all.len(), 13_200 * 2);
    let bad = http
        .post(&url)
        .json(&serde_json::json!({"input": "x", "response_format": "mp3"}))
        .send()
        .await
        .expect("send");
    assert_eq!(bad.status(), 400);
}
