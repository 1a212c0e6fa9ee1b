//! `voxgate worker` and `voxgate simulate`.

use std::sync::Arc;

use voxgate_gateway::audio::SayConfig;
use voxgate_stt_tts::nlu::embedding::build_intent_engine;
use voxgate_stt_tts::simulator;
use voxgate_stt_tts::tts_cache::{CachedTts, TtsCacheConfig};
use voxgate_stt_tts::worker::{serve_worker, Engines, WorkerToken};

use crate::cli::{SimulateArgs, WorkerArgs};
use crate::exit;

fn listen_addr(text: &str) -> Result<std::net::SocketAddr, i32> {
    text.parse().map_err(|e| {
        eprintln!("voxgate: --listen {text}: {e}");
        exit::USAGE
    })
}

pub async fn worker(args: WorkerArgs) -> i32 {
    let addr = match listen_addr(&args.listen) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let mut engines = Engines {
        stt: None,
        tts: None,
        nlu: None,
    };
    for name in &args.engines {
        match name.trim() {
            // In memory only: a worker has no data dir of its own.
            "tts" => match CachedTts::espeak(&SayConfig::default(), TtsCacheConfig::default()) {
                Ok(cached) => engines.tts = Some(Arc::new(cached)),
                Err(e) => {
                    eprintln!("voxgate: the TTS cache: {e}");
                    return exit::SOFTWARE;
                }
            },
            "nlu" => {
                // Loading reads and hashes ~90 MB: off the async threads.
                let dir = args.nlu_model.clone();
                match tokio::task::spawn_blocking(move || build_intent_engine(&dir)).await {
                    Ok(Ok(built)) => {
                        tracing::info!(engine = built.kind.name(), "worker nlu engine");
                        engines.nlu = Some(built.engine);
                    }
                    Ok(Err(e)) => {
                        eprintln!("voxgate: --nlu-model {}: {e}", args.nlu_model.display());
                        return exit::USAGE;
                    }
                    Err(e) => {
                        eprintln!("voxgate: loading the intent model: {e}");
                        return exit::SOFTWARE;
                    }
                }
            }
            // Loaded before the socket is bound: a missing or corrupt
            // model stops the worker here with a clear error.
            "stt" => match args.whisper.load().await {
                Ok(stt) => engines.stt = Some(stt),
                Err(code) => return code,
            },
            other => {
                eprintln!("voxgate: --engines {other}: unknown engine (stt, tts, nlu)");
                return exit::USAGE;
            }
        }
    }
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("voxgate: binding {addr}: {e}");
            return exit::UNAVAILABLE;
        }
    };
    match listener.local_addr() {
        Ok(a) => tracing::info!("worker listening on {a}"),
        Err(e) => tracing::warn!("worker address: {e}"),
    }
    match serve_worker(listener, WorkerToken::new(args.token), engines).await {
        Ok(()) => exit::OK,
        Err(e) => {
            eprintln!("voxgate: {e}");
            exit::SOFTWARE
        }
    }
}

pub async fn simulate(args: SimulateArgs) -> i32 {
    let addr = match listen_addr(&args.listen) {
        Ok(a) => a,
        Err(code) => return code,
    };
    tracing::info!("simulator (a test double for remote providers) on {addr}");
    match simulator::simulate(addr, &args.script, WorkerToken::new(args.token)).await {
        Ok(()) => exit::OK,
        Err(e) => {
            eprintln!("voxgate: {e}");
            exit::UNAVAILABLE
        }
    }
}
