//! An STT worker lost mid-utterance, over real websockets to the provider
//! simulator on 127.0.0.1, with the caller's audio paced in real time as a
//! call sends it: with one worker the loss is the session's error at once
//! (long before the AI node's 3 s stall watchdog would notice the
//! silence); with two, the session moves and the new worker hears the
//! utterance from its start.

use std::path::Path;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use url::Url;
use voxgate_gateway::clock::{self, Instant};
use voxgate_stt_tts::simulator::{audio_fingerprint, spawn_simulator, Script, SimulatorHandle};
use voxgate_stt_tts::stt::{SttConfig, SttEngine, SttEvent, SttSession};
use voxgate_stt_tts::worker::{PoolConfig, WorkerPool, WorkerToken};
use voxgate_stt_tts::EngineError;

const TOKEN: &str = "sim-token";
const TEXT: &str = "I want to pay my bill";

/// Three seconds of a 300 Hz tone: the utterance the script knows.
fn speech() -> Vec<i16> {
    (0..48_000)
        .map(|i| (6000.0 * (i as f32 * 300.0 * std::f32::consts::TAU / 16_000.0).sin()) as i16)
        .collect()
}

/// The simulator: the first STT session drops its connection as its first
/// frame (a partial, after 0.5 s of audio) goes out.
async fn start() -> (Url, SimulatorHandle, CancellationToken) {
    let text = format!(
        r#"{{"seed": 1,
            "stt": {{"fingerprint_seconds": 0.5,
                     "transcripts": [{{"fingerprint": "{fp}", "text": "{TEXT}"}}]}},
            "stages": {{"stt": {{"faults": {{"disconnect_after_chunks": 1, "times": 1}}}}}}}}"#,
        fp = audio_fingerprint(&speech(), 16_000, 0.5)
    );
    let script = Script::from_json(&text, Path::new(".")).expect("script");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let stop = CancellationToken::new();
    let handle = spawn_simulator(listener, script, WorkerToken::new(TOKEN), stop.clone());
    let url = Url::parse(&format!("ws://{addr}/v1/worker")).expect("url");
    (url, handle, stop)
}

#[derive(Debug)]
enum Seen {
    Partial,
    Final(String),
    Error(EngineError),
}

/// Feeds the utterance in 20 ms frames at real-time pace, then `End`, and
/// notes when each event came (ms after the first frame) and how much
/// audio had been sent by then. Stops at the first error.
async fn paced(session: &mut SttSession) -> Vec<(u64, usize, Seen)> {
    let audio = speech();
    let mut frames = audio.chunks(320);
    let mut sent_ms = 0usize;
    let mut ended = false;
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let started: Instant = clock::now();
    let mut seen = Vec::new();
    let deadline = tokio::time::sleep(Duration::from_secs(10));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            _ = &mut deadline => panic!("the session hung: {seen:?}"),
            _ = tick.tick(), if !ended => {
                match frames.next() {
                    Some(frame) => {
                        // A send into a session that already failed is fine:
                        // the error is read from the events.
                        let _ = session.push_audio(frame).await;
                        sent_ms += 20;
                    }
                    None => {
                        let _ = session.end_of_stream().await;
                        ended = true;
                    }
                }
            }
            ev = session.next_event() => {
                let at = clock::now().duration_since(started).as_millis() as u64;
                match ev {
                    None => return seen,
                    Some(Ok(SttEvent::Partial(_))) => seen.push((at, sent_ms, Seen::Partial)),
                    Some(Ok(SttEvent::Final(t))) => seen.push((at, sent_ms, Seen::Final(t.text))),
                    Some(Err(e)) => {
                        seen.push((at, sent_ms, Seen::Error(e)));
                        return seen;
                    }
                }
            }
        }
    }
}

#[tokio::test]
async fn a_lost_worker_mid_utterance_is_an_error_at_once() {
    let (url, sim, _stop) = start().await;
    let pool = WorkerPool::new(PoolConfig::new(vec![url], WorkerToken::new(TOKEN))).expect("pool");
    let mut session = pool.open(SttConfig::default()).await.expect("open");
    let seen = paced(&mut session).await;
    let [(partial_at, _, Seen::Partial), (error_at, sent_ms, Seen::Error(e))] = seen.as_slice()
    else {
        panic!("a partial, then an error: {seen:?}");
    };
    // Mid-utterance: the caller was still speaking (3 s of audio).
    assert!(*sent_ms < 2_000, "{sent_ms} ms of audio sent: {seen:?}");
    // At once: the worker hung up as the partial went out. The AI node's
    // stall watchdog would have waited 3 s of silence.
    let late = error_at - partial_at;
    assert!(late <= 500, "the error came {late} ms after the partial");
    assert!(matches!(e, EngineError::ConnectionLost { .. }), "{e:?}");
    assert!(e.retryable(), "{e:?}");
    assert_eq!(sim.stt_sessions(), 1, "nowhere else to go");
}

#[tokio::test]
async fn with_a_second_worker_the_session_moves_and_replays_the_utterance() {
    let (url, sim, _stop) = start().await;
    // The same simulator twice: the fault hits its first session only.
    let pool = WorkerPool::new(PoolConfig::new(
        vec![url.clone(), url],
        WorkerToken::new(TOKEN),
    ))
    .expect("pool");
    let mut session = pool.open(SttConfig::default()).await.expect("open");
    let seen = paced(&mut session).await;
    assert!(
        !seen.iter().any(|(_, _, s)| matches!(s, Seen::Error(_))),
        "{seen:?}"
    );
    // The transcript is keyed by the utterance's first 0.5 s, which the
    // first worker alone had heard: the new one got it by the replay.
    let finals: Vec<&str> = seen
        .iter()
        .filter_map(|(_, _, s)| match s {
            Seen::Final(t) => Some(t.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(finals, [TEXT], "{seen:?}");
    assert_eq!(sim.stt_sessions(), 2, "one failover");
}
