//! TTS time to first byte: espeak-ng cold (a cache miss) versus a hit in
//! the memory tier versus a hit in the disk tier of `CachedTts`.
//!
//! Each iteration speaks a distinct prompt at 8 kHz: first cold, then the
//! same prompt again (memory hit); then a new `CachedTts` over the same
//! directory (a process restart) serves every prompt from disk once.
//! Prints one JSON document and writes it to `--out`. Loopback-free: no
//! sockets at all.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use serde_json::{json, Value};
use voxgate_gateway::audio::SayConfig;
use voxgate_stt_tts::espeak::EspeakTts;
use voxgate_stt_tts::tts::{TtsEngine, TtsRequest};
use voxgate_stt_tts::tts_cache::{CacheIdentity, CachedTts, TtsCacheConfig};
use voxgate_tests::TempDir;

const RATE: u32 = 8_000;

fn request(i: usize) -> TtsRequest {
    TtsRequest {
        text: format!(
            "Prompt {i}: thank you for calling, your call is important to us, please hold."
        ),
        voice: None,
        language: Some("en-US".into()),
        sample_rate: RATE,
    }
}

/// Time to the first chunk, and to the end.
async fn measure(engine: &impl TtsEngine, req: TtsRequest) -> anyhow::Result<(Duration, Duration)> {
    let started = voxgate_tests::now();
    let mut stream = engine.synthesize(req);
    let mut first = None;
    while let Some(item) = stream.next_chunk().await {
        item.context("synthesis failed")?;
        first.get_or_insert_with(|| voxgate_tests::now().duration_since(started));
    }
    let first = first.context("no audio")?;
    Ok((first, voxgate_tests::now().duration_since(started)))
}

fn summary(mut xs: Vec<Duration>) -> Value {
    xs.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let pick = |q: f64| us(xs[((xs.len() as f64 - 1.0) * q).round() as usize]);
    let mean = xs.iter().map(|d| us(*d)).sum::<f64>() / xs.len() as f64;
    json!({
        "n": xs.len(),
        "p50_us": pick(0.5).round(),
        "p99_us": pick(0.99).round(),
        "max_us": pick(1.0).round(),
        "mean_us": mean.round(),
    })
}

fn cache(dir: &std::path::Path) -> anyhow::Result<CachedTts<EspeakTts>> {
    Ok(CachedTts::new(
        EspeakTts::default(),
        CacheIdentity::espeak(&SayConfig::default()),
        TtsCacheConfig::in_data_dir(dir),
    )?)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let mut n = 40usize;
    let mut out: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--iterations" => n = args.next().context("--iterations N")?.parse()?,
            "--out" => out = Some(args.next().context("--out FILE")?.into()),
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    anyhow::ensure!(n >= 1, "--iterations must be at least 1");
    let dir = TempDir::new("voxgate-bench-tts")?;
    let (mut cold, mut cold_total, mut memory) = (Vec::new(), Vec::new(), Vec::new());
    let warm = cache(dir.path())?;
    // One untimed synthesis so the first cold sample does not pay for
    // loading espeak-ng's data files from a cold page cache.
    measure(&warm, request(usize::MAX)).await?;
    for i in 0..n {
        let (first, total) = measure(&warm, request(i)).await?;
        cold.push(first);
        cold_total.push(total);
        memory.push(measure(&warm, request(i)).await?.0);
    }
    let warm_stats = warm.stats();
    drop(warm);
    let restarted = cache(dir.path())?;
    let mut disk = Vec::new();
    for i in 0..n {
        disk.push(measure(&restarted, request(i)).await?.0);
    }
    let disk_stats = restarted.stats();
    anyhow::ensure!(
        warm_stats.memory_hits == n as u64 && disk_stats.disk_hits == n as u64,
        "unexpected cache behaviour: {warm_stats:?} {disk_stats:?}"
    );
    let doc = json!({
        "bench": "tts",
        "what": "time to first chunk of CachedTts around espeak-ng, 8 kHz, 100 ms chunks",
        "engine": "espeak-ng",
        "sample_rate": RATE,
        "iterations": n,
        "cold_first_chunk": summary(cold),
        "cold_whole_clip": summary(cold_total),
        "memory_hit_first_chunk": summary(memory),
        "disk_hit_first_chunk": summary(disk),
        "cache_after_warm_run": warm_stats,
        "cache_after_restart": disk_stats,
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
    });
    let text = serde_json::to_string_pretty(&doc)?;
    println!("{text}");
    if let Some(path) = out {
        std::fs::write(&path, format!("{text}\n")).with_context(|| format!("writing {path:?}"))?;
    }
    Ok(())
}
