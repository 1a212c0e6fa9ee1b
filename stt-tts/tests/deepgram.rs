//! The Deepgram-compatible STT adapter against the provider simulator's
//! `/v1/listen` on 127.0.0.1: interim then final results, the upgrade it
//! sends (auth header, query), and typed errors for a refused key, a 429,
//! a garbage frame and a disconnect mid-stream.

use std::path::Path;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use voxgate_stt_tts::deepgram::{DeepgramConfig, DeepgramError, DeepgramStt};
use voxgate_stt_tts::provider_key::ProviderKey;
use voxgate_stt_tts::simulator::{audio_fingerprint, spawn_simulator, Script, SimulatorHandle};
use voxgate_stt_tts::stt::{SttConfig, SttEngine, SttEvent, SttSession};
use voxgate_stt_tts::worker::WorkerToken;
use voxgate_stt_tts::{Blame, EngineError};

const KEY: &str = "dg-test-key-123";

/// Two seconds of a 300 Hz tone: the "recording" the script knows.
fn speech() -> Vec<i16> {
    (0..32_000)
        .map(|i| (6000.0 * (i as f32 * 300.0 * std::f32::consts::TAU / 16_000.0).sin()) as i16)
        .collect()
}

fn script(deepgram_stage: &str) -> Script {
    let text = format!(
        r#"{{"seed": 1,
            "stt": {{"fingerprint_seconds": 0.5,
                     "transcripts": [{{"fingerprint": "{fp}", "text": "I want to pay my bill", "confidence": 0.92}}]}},
            "stages": {{"deepgram": {{{deepgram_stage}}}}}}}"#,
        fp = audio_fingerprint(&speech(), 16_000, 0.5)
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

fn engine(addr: std::net::SocketAddr, key: Option<&str>) -> DeepgramStt {
    DeepgramStt::new(DeepgramConfig {
        url: format!("ws://{addr}/v1/listen"),
        api_key: key.map(ProviderKey::new),
        api_key_env: None,
        keep_alive_ms: 100,
        ..DeepgramConfig::default()
    })
    .expect("engine")
}

/// Streams the recording in 20 ms frames, ends it, and collects every
/// event until the session ends (bounded so a hang fails the test).
async fn run_session(session: &mut SttSession) -> Vec<Result<SttEvent, EngineError>> {
    for frame in speech().chunks(320) {
        if session.push_audio(frame).await.is_err() {
            break;
        }
    }
    let _ = session.end_of_stream().await;
    let mut events = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(5), session.next_event()).await {
            Ok(Some(e)) => events.push(e),
            Ok(None) => return events,
            Err(_) => panic!("session hung; events so far: {events:?}"),
        }
    }
}

#[tokio::test]
async fn partials_then_final_with_the_upgrade_deepgram_expects() {
    let (addr, sim, _stop) = start(script("")).await;
    let stt = engine(addr, Some(KEY));
    let mut session = stt.open(SttConfig::default()).await.expect("open");
    // Idle longer than the keep-alive interval first: the server must
    // accept KeepAlive and the stream must still work.
    tokio::time::sleep(Duration::from_millis(250)).await;
    let events = run_session(&mut session).await;
    let events: Vec<SttEvent> = events.into_iter().map(|e| e.expect("event")).collect();
    assert_eq!(events.len(), 2, "{events:?}");
    let SttEvent::Partial(partial) = &events[0] else {
        panic!("first is not a partial: {events:?}");
    };
    assert_eq!(partial.text, "I want to");
    let SttEvent::Final(fin) = &events[1] else {
        panic!("second is not a final: {events:?}");
    };
    assert_eq!(fin.text, "I want to pay my bill");
    assert!((fin.confidence - 0.92).abs() < 1e-3);
    assert_eq!((fin.start_ms, fin.end_ms), (0, 2000));
    assert_eq!(fin.words.len(), 6);
    assert_eq!(fin.words[0].text, "I");
    assert!(fin
        .words
        .windows(2)
        .all(|w| w[0].end_ms <= w[1].start_ms && w[1].end_ms <= 2000));

    let (auth, query) = sim.last_listen_request().expect("an upgrade");
    assert_eq!(auth.as_deref(), Some("Token dg-test-key-123"));
    for part in [
        "encoding=linear16",
        "sample_rate=16000",
        "channels=1",
        "interim_results=true",
        "language=en-US",
        "punctuate=true",
        "endpointing=300",
    ] {
        assert!(query.contains(part), "{query} lacks {part}");
    }
    assert_eq!(sim.deepgram_sessions(), 1);
}

#[tokio::test]
async fn the_key_stays_out_of_debug_and_errors() {
    let (addr, _sim, _stop) = start(script("")).await;
    let stt = engine(addr, Some(KEY));
    assert!(!format!("{stt:?}").contains(KEY));
    assert!(!format!("{:?}", stt.config()).contains(KEY));
    // No key: the (simulated) provider refuses the upgrade.
    let keyless = engine(addr, None);
    let err = keyless
        .open(SttConfig::default())
        .await
        .expect_err("refused");
    assert!(
        matches!(
            err,
            EngineError::Deepgram(DeepgramError::Unauthorized { status: 401 })
        ),
        "{err:?}"
    );
    assert!(!err.retryable());
    assert!(!err.to_string().contains(KEY));
}

#[tokio::test]
async fn a_429_on_upgrade_is_rate_limited() {
    let (addr, _sim, _stop) = start(script(
        r#""faults": {"http_status": 429, "retry_after_s": 3, "times": 1}"#,
    ))
    .await;
    let stt = engine(addr, Some(KEY));
    let err = stt
        .open(SttConfig::default())
        .await
        .expect_err("rate limited");
    assert!(
        matches!(err, EngineError::RateLimited { retry_after: Some(d) } if d == Duration::from_secs(3)),
        "{err:?}"
    );
    assert!(err.retryable());
    // Only the first upgrade was faulted.
    let mut session = stt.open(SttConfig::default()).await.expect("open");
    let events = run_session(&mut session).await;
    assert!(events.iter().all(Result::is_ok), "{events:?}");
}

#[tokio::test]
async fn a_disconnect_mid_stream_is_an_error_event() {
    let (addr, _sim, _stop) = start(script(r#""faults": {"disconnect_after_chunks": 1}"#)).await;
    let stt = engine(addr, Some(KEY));
    let mut session = stt.open(SttConfig::default()).await.expect("open");
    let events = run_session(&mut session).await;
    assert!(
        matches!(&events[0], Ok(SttEvent::Partial(t)) if t.text == "I want to"),
        "{events:?}"
    );
    let Some(Err(err)) = events.get(1) else {
        panic!("no error after the partial: {events:?}");
    };
    assert!(
        matches!(
            err,
            EngineError::Deepgram(DeepgramError::ConnectionLost { .. })
        ),
        "{err:?}"
    );
    assert_eq!(err.blame(), Blame::Provider);
    assert!(err.retryable());
    assert_eq!(events.len(), 2);
}

#[tokio::test]
async fn a_garbage_frame_is_a_typed_error() {
    let (addr, _sim, _stop) = start(script(r#""faults": {"garbage_at_chunk": 0}"#)).await;
    let stt = engine(addr, Some(KEY));
    let mut session = stt.open(SttConfig::default()).await.expect("open");
    let events = run_session(&mut session).await;
    let [Err(err)] = events.as_slice() else {
        panic!("expected one error: {events:?}");
    };
    assert!(
        matches!(err, EngineError::Deepgram(DeepgramError::Malformed { .. })),
        "{err:?}"
    );
    assert_eq!(err.blame(), Blame::Provider);
    assert!(err.retryable());
}

#[tokio::test]
async fn a_stalled_provider_misses_the_close_deadline() {
    let (addr, _sim, _stop) = start(script(r#""faults": {"stall_after_chunks": 1}"#)).await;
    let stt = DeepgramStt::new(DeepgramConfig {
        url: format!("ws://{addr}/v1/listen"),
        api_key: Some(ProviderKey::new(KEY)),
        api_key_env: None,
        close_timeout_ms: 300,
        ..DeepgramConfig::default()
    })
    .expect("engine");
    let mut session = stt.open(SttConfig::default()).await.expect("open");
    let events = run_session(&mut session).await;
    assert!(matches!(&events[0], Ok(SttEvent::Partial(_))), "{events:?}");
    assert!(
        matches!(
            events.get(1),
            Some(Err(EngineError::Deepgram(DeepgramError::Timeout { .. })))
        ),
        "{events:?}"
    );
}

#[tokio::test]
async fn a_slow_start_past_the_connect_timeout_is_a_timeout() {
    let (addr, _sim, _stop) =
        start(script(r#""faults": {"slow_start_ms": 600, "times": 1}"#)).await;
    let stt = DeepgramStt::new(DeepgramConfig {
        url: format!("ws://{addr}/v1/listen"),
        api_key: Some(ProviderKey::new(KEY)),
        api_key_env: None,
        connect_timeout_ms: 200,
        ..DeepgramConfig::default()
    })
    .expect("engine");
    let err = stt.open(SttConfig::default()).await.expect_err("too slow");
    assert!(
        matches!(err, EngineError::Deepgram(DeepgramError::Timeout { .. })),
        "{err:?}"
    );
    assert!(err.retryable());
}

#[tokio::test]
async fn wss_goes_through_tls() {
    // A plain TCP server: the TLS handshake must be attempted and fail,
    // rather than the URL being refused for want of TLS support.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            use tokio::io::AsyncWriteExt;
            let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
        }
    });
    let stt = DeepgramStt::new(DeepgramConfig {
        url: format!("wss://{addr}/v1/listen"),
        api_key: Some(ProviderKey::new(KEY)),
        api_key_env: None,
        connect_timeout_ms: 2_000,
        ..DeepgramConfig::default()
    })
    .expect("engine");
    let err = stt.open(SttConfig::default()).await.expect_err("not TLS");
    let EngineError::Deepgram(DeepgramError::Connect { source }) = &err else {
        panic!("{err:?}");
    };
    assert!(
        !matches!(
            source,
            tokio_tungstenite::tungstenite::Error::Url(
                tokio_tungstenite::tungstenite::error::UrlError::TlsFeatureNotEnabled
            )
        ),
        "{source:?}"
    );
    // rustls read the plain HTTP answer as a corrupt TLS record.
    assert!(
        matches!(
            source,
            tokio_tungstenite::tungstenite::Error::Io(e) if e.kind() == std::io::ErrorKind::InvalidData
        ),
        "{source:?}"
    );
    assert!(err.retryable());
}
