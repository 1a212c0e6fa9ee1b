//! Worker-protocol overhead per 20 ms audio frame.
//!
//! A worker from `worker::serve_worker_until` with a trivial STT engine
//! (it only counts samples) listens on 127.0.0.1; clients stream 20 ms
//! frames of 16 kHz PCM (640 bytes) over real websockets as fast as they
//! can, end the stream and wait for the final. Both ends run in this
//! process, so the process CPU time (from /proc/self/task/*/schedstat)
//! covers the client and the worker side of every frame: the reported cost
//! per frame is the protocol's whole cost on one machine (encode, send,
//! receive, decode, hand to the engine), and frames per second per core is
//! its inverse. Prints one JSON document and writes it to `--out`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use url::Url;
use voxgate_stt_tts::protocol::{SessionConfig, WorkerMessage};
use voxgate_stt_tts::stt::{
    BoxFuture, SttBackend, SttConfig, SttEngine, SttEvent, SttInput, SttSession, Transcript,
};
use voxgate_stt_tts::worker::{connect, serve_worker_until, Engines, WorkerToken};
use voxgate_stt_tts::EngineError;

const FRAME: usize = 320;
const TOKEN: &str = "bench-token";

/// Counts samples; answers one final with the count at the end.
struct CountingStt;

async fn count(mut io: SttBackend) {
    let mut samples = 0u64;
    loop {
        let input = tokio::select! {
            _ = io.cancel.cancelled() => return,
            i = io.input.recv() => i,
        };
        match input {
            Some(SttInput::Audio(pcm)) => samples += pcm.len() as u64,
            Some(SttInput::End) => {
                let ms = samples / 16;
                let _ = io
                    .events
                    .send(Ok(SttEvent::Final(Transcript {
                        text: samples.to_string(),
                        confidence: 1.0,
                        start_ms: 0,
                        end_ms: ms,
                        words: vec![],
                    })))
                    .await;
                return;
            }
            None => return,
        }
    }
}

impl SttEngine for CountingStt {
    fn open(&self, _config: SttConfig) -> BoxFuture<'_, Result<SttSession, EngineError>> {
        Box::pin(async move {
            let (session, backend) = SttSession::channel();
            tokio::spawn(count(backend));
            Ok(session)
        })
    }
}

/// Process CPU time: the sum of every thread's time on CPU from
/// `/proc/self/task/*/schedstat` (nanoseconds; the tokio workers live for
/// the whole run), else utime + stime from `/proc/self/stat` (10 ms ticks).
fn cpu_time() -> anyhow::Result<Duration> {
    let mut ns = 0u64;
    let mut threads = 0;
    for task in std::fs::read_dir("/proc/self/task")? {
        let path = task?.path().join("schedstat");
        if let Ok(text) = std::fs::read_to_string(path) {
            if let Some(Ok(n)) = text.split_whitespace().next().map(str::parse::<u64>) {
                ns += n;
                threads += 1;
            }
        }
    }
    if threads > 0 {
        return Ok(Duration::from_nanos(ns));
    }
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // Fields after the command name, which is in parentheses.
    let rest = stat.rsplit_once(')').context("stat format")?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 =
        f.get(11).context("utime")?.parse::<u64>()? + f.get(12).context("stime")?.parse::<u64>()?;
    Ok(Duration::from_secs_f64(ticks as f64 / clock_ticks() as f64))
}

fn clock_ticks() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

/// One client session: `frames` frames (one per `pace` when paced, else
/// as fast as the socket takes them), then the final.
async fn session(url: Url, frames: usize, pace: Option<Duration>) -> anyhow::Result<()> {
    let token = WorkerToken::new(TOKEN);
    let mut conn = connect(&url, &token, Duration::from_secs(5)).await?;
    conn.start(
        SessionConfig::Stt(SttConfig::default()),
        Duration::from_secs(5),
    )
    .await?;
    let pcm: Vec<i16> = (0..FRAME).map(|i| (i as i16) * 37).collect();
    let mut ticker = pace.map(tokio::time::interval);
    for _ in 0..frames {
        if let Some(t) = ticker.as_mut() {
            t.tick().await;
        }
        conn.send_audio(&pcm).await?;
    }
    conn.send(&voxgate_stt_tts::protocol::ClientMessage::End)
        .await?;
    loop {
        match conn.recv_message().await? {
            WorkerMessage::Final(t) => {
                anyhow::ensure!(
                    t.text == (frames * FRAME).to_string(),
                    "the worker counted {} samples, sent {}",
                    t.text,
                    frames * FRAME
                );
                break;
            }
            WorkerMessage::Partial(_) => {}
            other => anyhow::bail!("unexpected {other:?}"),
        }
    }
    conn.close().await;
    Ok(())
}

async fn run(
    url: &Url,
    sessions: usize,
    frames: usize,
    pace: Option<Duration>,
) -> anyhow::Result<Value> {
    let cpu0 = cpu_time()?;
    let t0 = voxgate_tests::now();
    let mut tasks = Vec::new();
    for _ in 0..sessions {
        tasks.push(tokio::spawn(session(url.clone(), frames, pace)));
    }
    for t in tasks {
        t.await??;
    }
    let wall = voxgate_tests::now().duration_since(t0).as_secs_f64();
    let cpu = (cpu_time()? - cpu0).as_secs_f64();
    let total = (sessions * frames) as f64;
    let per_core = if cpu > 0.0 { total / cpu } else { f64::NAN };
    Ok(json!({
        "mode": if pace.is_some() { "paced, one frame per 20 ms per session (real time)" } else { "flood, as fast as the socket takes frames" },
        "sessions": sessions,
        "frames_per_session": frames,
        "frames": total as u64,
        "wall_s": (wall * 1000.0).round() / 1000.0,
        "cpu_s": (cpu * 1000.0).round() / 1000.0,
        "cpu_us_per_frame": (cpu * 1e6 / total * 10.0).round() / 10.0,
        "frames_per_s_per_core": per_core.round(),
        "realtime_streams_per_core": (per_core / 50.0).round(),
        "frames_per_s_wall": (total / wall).round(),
    }))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let mut frames = 50_000usize;
    let mut session_counts = vec![1usize, 16];
    let mut paced_sessions = 200usize;
    let mut paced_seconds = 5usize;
    let mut out: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--frames" => frames = args.next().context("--frames N")?.parse()?,
            "--sessions" => {
                session_counts = args
                    .next()
                    .context("--sessions N,M")?
                    .split(',')
                    .map(|s| s.trim().parse())
                    .collect::<Result<_, _>>()?
            }
            "--paced-sessions" => {
                paced_sessions = args.next().context("--paced-sessions N")?.parse()?
            }
            "--paced-seconds" => {
                paced_seconds = args.next().context("--paced-seconds N")?.parse()?
            }
            "--out" => out = Some(args.next().context("--out FILE")?.into()),
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let stop = CancellationToken::new();
    let engines = Engines {
        stt: Some(Arc::new(CountingStt)),
        tts: None,
        nlu: None,
    };
    let server = tokio::spawn(serve_worker_until(
        listener,
        WorkerToken::new(TOKEN),
        engines,
        stop.clone(),
    ));
    let url = Url::parse(&format!("ws://{addr}/"))?;
    // Warm-up, untimed.
    session(url.clone(), 200, None).await?;
    let mut runs = Vec::new();
    for &n in &session_counts {
        runs.push(run(&url, n, frames, None).await?);
    }
    if paced_sessions > 0 && paced_seconds > 0 {
        let pace = Some(Duration::from_millis(20));
        runs.push(run(&url, paced_sessions, paced_seconds * 50, pace).await?);
    }
    stop.cancel();
    let _ = server.await;
    let doc = json!({
        "bench": "worker",
        "what": "worker protocol cost per 20 ms 16 kHz frame (640 bytes), client and worker in one process, trivial STT engine",
        "frame_ms": 20,
        "frame_bytes": FRAME * 2,
        "runs": runs,
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "cpu_clock": "sum of /proc/self/task/*/schedstat (client and worker threads)",
    });
    let text = serde_json::to_string_pretty(&doc)?;
    println!("{text}");
    if let Some(path) = out {
        std::fs::write(&path, format!("{text}\n")).with_context(|| format!("writing {path:?}"))?;
    }
    Ok(())
}
