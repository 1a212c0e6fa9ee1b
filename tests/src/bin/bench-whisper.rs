//! The whisper benchmark: real-time factor (decode time / audio time) of
//! the local STT engine, through the same path sessions use.
//!
//! The model is `VOXGATE_WHISPER_MODEL`, else
//! `<VOXGATE_DATA_DIR or ./data>/models/whisper/ggml-base.en.bin`. When no
//! real model is there (no weights can be downloaded on the build
//! machines), the JSON says so, and the tiny generated test model's figure
//! is reported instead, labelled as such: it has random weights and one
//! layer, so it measures the pipeline's overhead, not whisper's speed.
//!
//! Audio: an espeak-ng sentence at 16 kHz (a tone if espeak-ng is
//! missing). One warm-up decode, then `--runs` timed ones (default 3).
//! Prints one JSON document and writes it to `--out` when given.

// A benchmark times itself with the real clock.
#![allow(clippy::disallowed_methods)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use serde_json::{json, Value};
use voxgate_stt_tts::whisper::testmodel::TinyModel;
use voxgate_stt_tts::whisper::{self, WhisperConfig, WhisperModel};

const SENTENCE: &str = "Hello, I would like to check the balance of my account and then \
                        speak to someone about a payment I made last Tuesday.";

struct Opts {
    runs: usize,
    out: Option<PathBuf>,
}

fn opts() -> anyhow::Result<Opts> {
    let mut o = Opts { runs: 3, out: None };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--runs" => {
                o.runs = args
                    .next()
                    .context("--runs N")?
                    .parse()
                    .context("--runs N")?;
            }
            "--out" => o.out = Some(args.next().context("--out FILE")?.into()),
            other => anyhow::bail!("unknown argument {other} (--runs N, --out FILE)"),
        }
    }
    o.runs = o.runs.max(1);
    Ok(o)
}

async fn audio() -> (Vec<i16>, &'static str) {
    let cfg = voxgate_gateway::audio::SayConfig::default();
    match voxgate_gateway::audio::synthesize(
        SENTENCE,
        &cfg,
        16_000,
        voxgate_gateway::audio::SpeechCache::global(),
    )
    .await
    {
        Ok(pcm) if !pcm.is_empty() => (pcm.to_vec(), "espeak-ng en-us sentence"),
        _ => {
            let pcm = (0..16_000 * 4)
                .map(|i| {
                    (6000.0 * (i as f32 * 440.0 * std::f32::consts::TAU / 16000.0).sin()) as i16
                })
                .collect();
            (pcm, "440 Hz tone (espeak-ng unavailable)")
        }
    }
}

async fn measure(model: Arc<WhisperModel>, pcm: &[i16], runs: usize) -> anyhow::Result<Value> {
    let audio_s = pcm.len() as f64 / 16_000.0;
    // Warm-up: first-touch page faults and allocator growth.
    let warm = model
        .transcribe(pcm, "en")
        .await
        .context("warm-up decode")?;
    let mut rtfs = Vec::with_capacity(runs);
    let mut decode_ms = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t0 = Instant::now();
        model.transcribe(pcm, "en").await.context("decode")?;
        let s = t0.elapsed().as_secs_f64();
        decode_ms.push(s * 1000.0);
        rtfs.push(s / audio_s);
    }
    let mean = rtfs.iter().sum::<f64>() / rtfs.len() as f64;
    let min = rtfs.iter().copied().fold(f64::INFINITY, f64::min);
    let max = rtfs.iter().copied().fold(0.0, f64::max);
    Ok(json!({
        "audio_s": audio_s,
        "runs": runs,
        "decode_ms": decode_ms,
        "rtf_mean": mean,
        "rtf_min": min,
        "rtf_max": max,
        "warmup_text": warm.text,
        "model": {
            "weights": model.info().weight_type,
            "n_audio_layer": model.info().hparams.n_audio_layer,
            "n_audio_state": model.info().hparams.n_audio_state,
            "file_bytes": model.info().file_bytes,
        },
    }))
}

fn real_model_path() -> PathBuf {
    if let Some(p) = std::env::var_os(whisper::MODEL_ENV) {
        return PathBuf::from(p);
    }
    let data =
        std::env::var_os("VOXGATE_DATA_DIR").map_or_else(|| PathBuf::from("./data"), PathBuf::from);
    whisper::model_path(&data, whisper::DEFAULT_SIZE)
}

async fn load(path: &Path, config: WhisperConfig) -> anyhow::Result<Arc<WhisperModel>> {
    let path = path.to_owned();
    let model = tokio::task::spawn_blocking(move || WhisperModel::load(&path, config)).await??;
    Ok(Arc::new(model))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let o = opts()?;
    let (pcm, audio_kind) = audio().await;
    let config = WhisperConfig::default();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());

    let path = real_model_path();
    let real = if path.is_file() {
        match load(&path, config.clone()).await {
            Ok(model) => match measure(model, &pcm, o.runs).await {
                Ok(v) => json!({ "present": true, "path": path, "result": v }),
                Err(e) => json!({ "present": true, "path": path, "error": format!("{e:#}") }),
            },
            Err(e) => json!({ "present": true, "path": path, "error": format!("{e:#}") }),
        }
    } else {
        json!({
            "present": false,
            "path": path,
            "note": "no real whisper model here: set VOXGATE_WHISPER_MODEL or run `voxgate models fetch whisper base.en`; only the generated test model was measured",
        })
    };

    let dir = std::env::temp_dir().join(format!("voxgate-bench-whisper-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let tiny_path = dir.join("ggml-tiny-generated.bin");
    TinyModel::default().write(&tiny_path)?;
    // Random weights never stop on their own: without fallback and with a
    // token cap, each decode does a bounded, repeatable amount of work.
    let tiny_config = WhisperConfig {
        temperature_fallback: false,
        max_tokens_per_segment: 64,
        ..config.clone()
    };
    let tiny = match load(&tiny_path, tiny_config).await {
        Ok(model) => measure(model, &pcm, o.runs).await,
        Err(e) => Err(e),
    };
    let _ = std::fs::remove_dir_all(&dir);
    let tiny = match tiny {
        Ok(v) => v,
        Err(e) => json!({ "error": format!("{e:#}") }),
    };

    let doc = json!({
        "benchmark": "whisper real-time factor (decode time / audio time; below 1 is faster than real time)",
        "audio": audio_kind,
        "machine": { "cores": cores },
        "config": {
            "threads": config.threads,
            "max_concurrent_decodes": config.max_concurrent_decodes,
            "best_of": config.best_of,
            "temperature_fallback": config.temperature_fallback,
        },
        "real_model": real,
        "generated_test_model": {
            "note": "NOT a speech model: the tiny generated test file (random weights, 1 layer each side, state 16, at most 64 tokens per segment, no temperature fallback). Its figure is whisper.cpp's pipeline overhead (mel, encoder over the 30 s window, decoder loop), not a real model's speed.",
            "result": tiny,
        },
    });
    let text = serde_json::to_string_pretty(&doc)?;
    println!("{text}");
    if let Some(out) = o.out {
        std::fs::write(&out, format!("{text}\n")).with_context(|| out.display().to_string())?;
    }
    Ok(())
}
