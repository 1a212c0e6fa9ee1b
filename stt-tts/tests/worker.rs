//! The worker protocol over real sockets on 127.0.0.1: round trips of all
//! three session kinds, auth, garbage, and STT failover when a worker dies.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use url::Url;
use voxgate_stt_tts::nlu::lexical::LexicalIntentEngine;
use voxgate_stt_tts::nlu::{IntentEngine, IntentSpec, NluEvent, NluRequest};
use voxgate_stt_tts::protocol::{ClientMessage, SessionConfig, WorkerMessage, PROTOCOL_VERSION};
use voxgate_stt_tts::stt::{
    BoxFuture, SttConfig, SttEngine, SttEvent, SttInput, SttSession, Transcript,
};
use voxgate_stt_tts::tts::{TtsChunk, TtsEngine, TtsRequest, TtsStream};
use voxgate_stt_tts::worker::{
    connect, serve_worker_until, Engines, Incoming, PoolConfig, WorkerError, WorkerPool,
    WorkerToken,
};
use voxgate_stt_tts::{EngineError, ErrorCode};

const TOKEN: &str = "test-token";

/// A scripted STT engine: a partial for every 8000 samples, and at the end
/// one final "heard N samples from W" (W = the worker's name).
struct CountingStt(&'static str);

impl SttEngine for CountingStt {
    fn open(&self, config: SttConfig) -> BoxFuture<'_, Result<SttSession, EngineError>> {
        let name = self.0;
        Box::pin(async move {
            let (session, mut io) = SttSession::channel();
            tokio::spawn(async move {
                let mut n = 0usize;
                let mut marks = 0usize;
                while let Some(input) = io.input.recv().await {
                    match input {
                        SttInput::Audio(pcm) => {
                            n += pcm.len();
                            while n / 8000 > marks {
                                marks += 1;
                                let t =
                                    transcript(&format!("partial {marks}"), n, config.sample_rate);
                                if io.events.send(Ok(SttEvent::Partial(t))).await.is_err() {
                                    return;
                                }
                            }
                        }
                        SttInput::End => {
                            let t = transcript(
                                &format!("heard {n} samples from {name}"),
                                n,
                                config.sample_rate,
                            );
                            let _ = io.events.send(Ok(SttEvent::Final(t))).await;
                            return;
                        }
                    }
                }
            });
            Ok(session)
        })
    }
}

fn transcript(text: &str, samples: usize, rate: u32) -> Transcript {
    Transcript {
        text: text.into(),
        confidence: 0.9,
        start_ms: 0,
        end_ms: samples as u64 * 1000 / u64::from(rate),
        words: vec![],
    }
}

/// A TTS engine of `len` ramp samples in chunks of 100.
struct RampTts;

impl TtsEngine for RampTts {
    fn synthesize(&self, request: TtsRequest) -> TtsStream {
        let (stream, out) = TtsStream::channel(request.sample_rate);
        tokio::spawn(async move {
            let total = request.text.len() * 100;
            let pcm: Vec<i16> = (0..total).map(|i| i as i16).collect();
            for (seq, c) in pcm.chunks(100).enumerate() {
                let chunk = TtsChunk {
                    seq: seq as u32,
                    samples: c.to_vec(),
                    sample_rate: request.sample_rate,
                };
                if !out.send(Ok(chunk)).await {
                    return;
                }
            }
        });
        stream
    }
}

async fn start_worker(name: &'static str) -> (Url, CancellationToken) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let stop = CancellationToken::new();
    let engines = Engines {
        stt: Some(Arc::new(CountingStt(name))),
        tts: Some(Arc::new(RampTts)),
        nlu: Some(Arc::new(LexicalIntentEngine)),
    };
    tokio::spawn(serve_worker_until(
        listener,
        WorkerToken::new(TOKEN),
        engines,
        stop.clone(),
    ));
    (
        Url::parse(&format!("ws://{addr}/v1/worker")).expect("url"),
        stop,
    )
}

fn pool(urls: Vec<Url>) -> WorkerPool {
    let mut config = PoolConfig::new(urls, WorkerToken::new(TOKEN));
    config.health_interval = Duration::from_millis(100);
    config.recovery_interval = Duration::from_millis(100);
    WorkerPool::new(config).expect("pool")
}

async fn next_stt(s: &mut SttSession) -> SttEvent {
    tokio::time::timeout(Duration::from_secs(5), s.next_event())
        .await
        .expect("an STT event in time")
        .expect("the stream is open")
        .expect("not an error")
}

#[tokio::test]
async fn stt_tts_and_nlu_round_trip() {
    let (url, _stop) = start_worker("a").await;
    let pool = pool(vec![url]);

    let mut stt = pool.open(SttConfig::default()).await.expect("open stt");
    for _ in 0..10 {
        stt.push_audio(&[100; 1600]).await.expect("push");
    }
    stt.end_of_stream().await.expect("end");
    assert!(matches!(next_stt(&mut stt).await, SttEvent::Partial(t) if t.text == "partial 1"));
    assert!(matches!(next_stt(&mut stt).await, SttEvent::Partial(t) if t.text == "partial 2"));
    match next_stt(&mut stt).await {
        SttEvent::Final(t) => {
            assert_eq!(t.text, "heard 16000 samples from a");
            assert_eq!(t.end_ms, 1000);
        }
        other => panic!("{other:?}"),
    }
    assert!(
        stt.next_event().await.is_none(),
        "the stream ends after the final"
    );

    let mut tts = pool.synthesize(TtsRequest {
        text: "hello".into(),
        voice: None,
        language: Some("en-US".into()),
        sample_rate: 8000,
    });
    let mut got = Vec::new();
    while let Some(chunk) = tts.next_chunk().await {
        let chunk = chunk.expect("chunk");
        assert_eq!(chunk.seq as usize, got.len() / 100);
        assert_eq!(chunk.sample_rate, 8000);
        got.extend(chunk.samples);
    }
    assert_eq!(got, (0..500).map(|i| i as i16).collect::<Vec<_>>());

    let request = NluRequest {
        utterance: "I want to check my balance".into(),
        history: vec![],
        intents: vec![
            IntentSpec {
                name: "balance".into(),
                description: "account balance".into(),
                examples: vec!["check my balance".into()],
                slots: vec![],
            },
            IntentSpec {
                name: "agent".into(),
                description: "a human".into(),
                examples: vec!["talk to an agent".into()],
                slots: vec![],
            },
        ],
        language: None,
    };
    let mut nlu = IntentEngine::classify(&pool, request);
    match nlu.next_event().await {
        Some(Ok(NluEvent::Result(r))) => {
            assert_eq!(r.intent.as_deref(), Some("balance"));
            assert!(r.confidence > 0.5, "{r:?}");
        }
        other => panic!("{other:?}"),
    }
    assert!(pool.status().iter().all(|s| s.in_flight == 0 && s.healthy));
}

#[tokio::test]
async fn a_missing_or_wrong_token_is_refused_with_401() {
    let (url, _stop) = start_worker("a").await;
    let err = connect(&url, &WorkerToken::new("wrong"), Duration::from_secs(2))
        .await
        .expect_err("refused");
    assert!(matches!(err, WorkerError::Unauthorized { .. }), "{err}");

    // A raw upgrade without any Authorization header.
    let addr = format!(
        "{}:{}",
        url.host_str().expect("host"),
        url.port().expect("port")
    );
    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("tcp");
    tcp.write_all(
        b"GET /v1/worker HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await
    .expect("write");
    let mut buf = vec![0u8; 256];
    let n = tcp.read(&mut buf).await.expect("read");
    let head = String::from_utf8_lossy(&buf[..n]);
    assert!(head.starts_with("HTTP/1.1 401"), "{head}");

    let good = connect(&url, &WorkerToken::new(TOKEN), Duration::from_secs(2)).await;
    assert!(good.is_ok());
}

#[tokio::test]
async fn garbage_frames_get_a_typed_error_and_the_connection_survives() {
    let (url, _stop) = start_worker("a").await;
    let mut conn = connect(&url, &WorkerToken::new(TOKEN), Duration::from_secs(2))
        .await
        .expect("connect");
    for garbage in [
        "{not json",
        r#"{"type":"teleport"}"#,
        r#"{"type":"start","version":99,"kind":"stt","sample_rate":16000,"language":"en"}"#,
    ] {
        conn.send_raw_text(garbage).await.expect("send");
        match conn.recv().await.expect("reply") {
            Incoming::Message(WorkerMessage::Error {
                code, retryable, ..
            }) => {
                assert!(
                    matches!(code, ErrorCode::BadFrame | ErrorCode::UnsupportedVersion),
                    "{code:?}"
                );
                assert!(!retryable);
            }
            other => panic!("{other:?}"),
        }
    }
    // Audio with no STT session, and audio of odd length.
    conn.send_audio(&[1, 2, 3]).await.expect("send");
    assert!(matches!(
        conn.recv().await.expect("reply"),
        Incoming::Message(WorkerMessage::Error {
            code: ErrorCode::UnexpectedMessage,
            ..
        })
    ));
    // Still usable.
    assert_eq!(conn.ping(Duration::from_secs(2)).await.expect("pong"), 0);
    conn.send(&ClientMessage::Start {
        version: PROTOCOL_VERSION,
        session: SessionConfig::Stt(SttConfig::default()),
    })
    .await
    .expect("start");
    assert!(matches!(
        conn.recv_message().await.expect("ready"),
        WorkerMessage::Ready { .. }
    ));
    assert_eq!(
        conn.ping(Duration::from_secs(2)).await.expect("pong"),
        1,
        "one active session"
    );
}

#[tokio::test]
async fn stt_fails_over_when_its_worker_dies_mid_stream() {
    let (a, stop_a) = start_worker("a").await;
    let (b, _stop_b) = start_worker("b").await;
    let pool = pool(vec![a, b]);
    let mut stt = pool.open(SttConfig::default()).await.expect("open");
    // Half a second, then wait for A's partial to know A has it.
    for _ in 0..5 {
        stt.push_audio(&[7; 1600]).await.expect("push");
    }
    assert!(matches!(next_stt(&mut stt).await, SttEvent::Partial(t) if t.text == "partial 1"));
    assert_eq!(pool.status()[0].in_flight, 1, "worker a serves the session");
    stop_a.cancel();
    tokio::time::sleep(Duration::from_millis(50)).await;
    for _ in 0..15 {
        stt.push_audio(&[7; 1600])
            .await
            .expect("push after the failure");
    }
    stt.end_of_stream().await.expect("end");
    let mut finals = Vec::new();
    while let Some(event) = tokio::time::timeout(Duration::from_secs(5), stt.next_event())
        .await
        .expect("in time")
    {
        if let SttEvent::Final(t) = event.expect("no error reaches the caller") {
            finals.push(t);
        }
    }
    assert_eq!(finals.len(), 1, "{finals:?}");
    // B got every sample: the buffered half second was replayed.
    assert_eq!(finals[0].text, "heard 32000 samples from b");
    assert_eq!(finals[0].end_ms, 2000);
    let status = pool.status();
    assert!(!status[0].healthy && status[0].failures >= 1, "{status:?}");
    assert!(status[1].healthy);
}

#[tokio::test]
async fn failed_workers_are_probed_back_to_health() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let url = Url::parse(&format!("ws://{addr}/")).expect("url");
    let pool = pool(vec![url]);
    let _checks = pool.spawn_health_checks();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(!pool.status()[0].healthy, "nothing listens yet");
    // Now a worker appears on that port.
    let listener = TcpListener::bind(addr).await.expect("rebind");
    let engines = Engines {
        stt: None,
        tts: None,
        nlu: Some(Arc::new(LexicalIntentEngine)),
    };
    tokio::spawn(serve_worker_until(
        listener,
        WorkerToken::new(TOKEN),
        engines,
        CancellationToken::new(),
    ));
    let mut healthy = false;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if pool.status()[0].healthy {
            healthy = true;
            break;
        }
    }
    assert!(healthy, "{:?}", pool.status());
    // An engine the worker lacks is a typed, non-retryable refusal.
    let err = pool
        .open(SttConfig::default())
        .await
        .expect_err("no stt here");
    assert!(
        matches!(
            err,
            EngineError::Remote {
                code: ErrorCode::UnsupportedKind,
                retryable: false,
                ..
            }
        ),
        "{err}"
    );
}
