//! The TTS cache around real espeak-ng: a synthesis round trip, the second
//! request served from memory with no engine call, a cold start from disk
//! in a new cache (a process restart), corrupt and truncated entries as
//! misses, a cancelled synthesis left uncached, and the disk bound.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use voxgate_gateway::audio::SayConfig;
use voxgate_stt_tts::espeak::EspeakTts;
use voxgate_stt_tts::tts::{TtsBackend, TtsChunk, TtsEngine, TtsRequest, TtsStream};
use voxgate_stt_tts::tts_cache::{CacheIdentity, CachedTts, TtsCacheConfig};

/// Counts the calls that reach the wrapped engine.
struct Counting<E> {
    inner: E,
    calls: Arc<AtomicU32>,
}

impl<E: TtsEngine> TtsEngine for Counting<E> {
    fn synthesize(&self, request: TtsRequest) -> TtsStream {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.synthesize(request)
    }
}

/// A scratch directory removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let p =
            std::env::temp_dir().join(format!("voxgate-tts-cache-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("scratch");
        Self(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn espeak_cache(dir: &Path) -> (CachedTts<Counting<EspeakTts>>, Arc<AtomicU32>) {
    let calls = Arc::new(AtomicU32::new(0));
    let engine = Counting {
        inner: EspeakTts::default(),
        calls: calls.clone(),
    };
    let cache = CachedTts::new(
        engine,
        CacheIdentity::espeak(&SayConfig::default()),
        TtsCacheConfig::in_data_dir(dir),
    )
    .expect("cache");
    (cache, calls)
}

fn request(text: &str, rate: u32) -> TtsRequest {
    TtsRequest {
        text: text.into(),
        voice: None,
        language: Some("en-US".into()),
        sample_rate: rate,
    }
}

async fn collect(stream: &mut TtsStream) -> Vec<TtsChunk> {
    let mut out = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(10), stream.next_chunk()).await {
            Ok(Some(item)) => out.push(item.expect("chunk")),
            Ok(None) => return out,
            Err(_) => panic!("stream hung"),
        }
    }
}

fn pcm(chunks: &[TtsChunk]) -> Vec<i16> {
    chunks.iter().flat_map(|c| c.samples.clone()).collect()
}

const PROMPT: &str = "Your balance is twelve dollars and fifty cents.";

#[tokio::test]
async fn espeak_round_trip_then_a_memory_hit_without_an_engine_call() {
    let scratch = Scratch::new("memory");
    let (cache, calls) = espeak_cache(&scratch.0);
    let first = collect(&mut cache.synthesize(request(PROMPT, 8_000))).await;
    let audio = pcm(&first);
    assert!(first.iter().all(|c| c.sample_rate == 8_000));
    let seconds = audio.len() as f32 / 8_000.0;
    assert!((1.5..6.0).contains(&seconds), "{seconds} s of speech");
    let loud = audio.iter().filter(|s| s.unsigned_abs() > 1_000).count();
    assert!(
        loud > audio.len() / 10,
        "mostly silence: {loud} loud samples"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let s = cache.stats();
    assert_eq!((s.misses, s.stores, s.hits()), (1, 1, 0));
    assert_eq!(s.memory_bytes, audio.len() as u64 * 2);

    let second = collect(&mut cache.synthesize(request(PROMPT, 8_000))).await;
    assert_eq!(pcm(&second), audio);
    assert!(second.iter().enumerate().all(|(i, c)| c.seq == i as u32));
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "a hit must not call the engine"
    );
    assert_eq!(cache.stats().memory_hits, 1);

    // Another rate is another entry.
    let wide = collect(&mut cache.synthesize(request(PROMPT, 16_000))).await;
    assert!(wide.iter().all(|c| c.sample_rate == 16_000));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_new_cache_starts_warm_from_disk() {
    let scratch = Scratch::new("disk");
    let audio = {
        let (cache, calls) = espeak_cache(&scratch.0);
        let audio = pcm(&collect(&mut cache.synthesize(request(PROMPT, 16_000))).await);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        let path = cache.entry_path(&request(PROMPT, 16_000)).expect("path");
        assert!(path.starts_with(scratch.0.join("tts-cache")));
        assert!(path.exists());
        audio
    };
    // A "restart": a new cache over the same directory.
    let (cache, calls) = espeak_cache(&scratch.0);
    assert!(cache.stats().disk_bytes > audio.len() as u64 * 2);
    let again = pcm(&collect(&mut cache.synthesize(request(PROMPT, 16_000))).await);
    assert_eq!(again, audio);
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    let s = cache.stats();
    assert_eq!((s.disk_hits, s.memory_hits, s.misses), (1, 0, 0));
    // Loaded into memory on the way.
    let third = pcm(&collect(&mut cache.synthesize(request(PROMPT, 16_000))).await);
    assert_eq!(third, audio);
    assert_eq!(cache.stats().memory_hits, 1);
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn corrupt_and_truncated_entries_are_misses_and_are_replaced() {
    let scratch = Scratch::new("corrupt");
    let path = {
        let (cache, _) = espeak_cache(&scratch.0);
        collect(&mut cache.synthesize(request(PROMPT, 8_000))).await;
        cache.entry_path(&request(PROMPT, 8_000)).expect("path")
    };
    let good = std::fs::read(&path).expect("entry");
    for damage in ["flip", "truncate"] {
        let mut bad = good.clone();
        match damage {
            "flip" => {
                let at = bad.len() - 100;
                bad[at] ^= 0x55;
            }
            _ => bad.truncate(bad.len() / 2),
        }
        std::fs::write(&path, &bad).expect("damage");
        let (cache, calls) = espeak_cache(&scratch.0);
        let audio = pcm(&collect(&mut cache.synthesize(request(PROMPT, 8_000))).await);
        assert!(!audio.is_empty());
        assert_eq!(calls.load(Ordering::SeqCst), 1, "{damage}: must synthesise");
        let s = cache.stats();
        assert_eq!((s.corrupt, s.misses, s.disk_hits), (1, 1, 0), "{damage}");
        // The bad entry was replaced by a good one.
        assert_eq!(std::fs::read(&path).expect("entry"), good, "{damage}");
    }
}

#[tokio::test]
async fn a_cancelled_synthesis_is_not_cached() {
    let scratch = Scratch::new("cancel");
    let (cache, calls) = espeak_cache(&scratch.0);
    let long = "This is a long announcement that keeps going for several seconds \
                so that the caller can barge in before it ends.";
    let mut stream = cache.synthesize(request(long, 8_000));
    let first = tokio::time::timeout(Duration::from_secs(10), stream.next_chunk())
        .await
        .expect("first chunk")
        .expect("some")
        .expect("ok");
    assert_eq!(first.seq, 0);
    stream.cancel();
    drop(stream);
    // Give the cache task time to notice; it must not store.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let s = cache.stats();
    assert_eq!((s.stores, s.memory_entries), (0, 0));
    assert!(!cache
        .entry_path(&request(long, 8_000))
        .expect("path")
        .exists());
    collect(&mut cache.synthesize(request(long, 8_000))).await;
    assert_eq!(calls.load(Ordering::SeqCst), 2, "the retry is a miss");
    assert_eq!(cache.stats().stores, 1);
}

/// A deterministic engine for the bound tests: one second of a tone per
/// request, the tone's pitch from the text length.
struct Tone;

impl TtsEngine for Tone {
    fn synthesize(&self, request: TtsRequest) -> TtsStream {
        let (stream, backend) = TtsStream::channel(request.sample_rate);
        tokio::spawn(tone(request, backend));
        stream
    }
}

async fn tone(request: TtsRequest, out: TtsBackend) {
    let rate = request.sample_rate;
    let hz = 200.0 + 10.0 * request.text.len() as f32;
    let samples: Vec<i16> = (0..rate)
        .map(|i| (5000.0 * (i as f32 * hz * std::f32::consts::TAU / rate as f32).sin()) as i16)
        .collect();
    out.send(Ok(TtsChunk {
        seq: 0,
        samples,
        sample_rate: rate,
    }))
    .await;
}

#[tokio::test]
async fn bounds_evict_the_least_recently_used() {
    let scratch = Scratch::new("bounds");
    // One entry is 16 000 bytes of PCM plus the header.
    let config = TtsCacheConfig {
        memory_bytes: 40_000,
        disk_bytes: 40_000,
        dir: Some(scratch.0.join("tts-cache")),
        chunk_ms: 100,
    };
    let cache = CachedTts::new(Tone, CacheIdentity::new("tone", ""), config).expect("cache");
    for text in ["one", "three", "seven"] {
        collect(&mut cache.synthesize(request(text, 8_000))).await;
        // Distinct modification times.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let s = cache.stats();
    assert_eq!((s.stores, s.memory_entries), (3, 2));
    assert!(s.memory_bytes <= 40_000 && s.disk_bytes <= 40_000, "{s:?}");
    let exists = |t: &str| cache.entry_path(&request(t, 8_000)).expect("path").exists();
    assert!(!exists("one") && exists("three") && exists("seven"));
    // "three" is in memory still: a hit. "one" is gone: a miss.
    collect(&mut cache.synthesize(request("three", 8_000))).await;
    collect(&mut cache.synthesize(request("one", 8_000))).await;
    let s = cache.stats();
    assert_eq!((s.memory_hits, s.misses), (1, 4));
}

/// Speaks one chunk, then fails.
struct Breaks;

impl TtsEngine for Breaks {
    fn synthesize(&self, request: TtsRequest) -> TtsStream {
        let (stream, backend) = TtsStream::channel(request.sample_rate);
        tokio::spawn(async move {
            let ok = backend
                .send(Ok(TtsChunk {
                    seq: 0,
                    samples: vec![100; 800],
                    sample_rate: request.sample_rate,
                }))
                .await;
            if ok {
                backend
                    .send(Err(voxgate_stt_tts::EngineError::ConnectionLost {
                        reason: "provider went away".into(),
                    }))
                    .await;
            }
        });
        stream
    }
}

#[tokio::test]
async fn a_failed_synthesis_is_passed_on_and_not_cached() {
    let scratch = Scratch::new("failed");
    let cache = CachedTts::new(
        Breaks,
        CacheIdentity::new("breaks", ""),
        TtsCacheConfig::in_data_dir(&scratch.0),
    )
    .expect("cache");
    for _ in 0..2 {
        let mut stream = cache.synthesize(request("hello", 8_000));
        let first = stream.next_chunk().await.expect("chunk").expect("ok");
        assert_eq!(first.samples.len(), 800);
        assert!(matches!(
            stream.next_chunk().await,
            Some(Err(voxgate_stt_tts::EngineError::ConnectionLost { .. }))
        ));
        assert!(stream.next_chunk().await.is_none());
    }
    let s = cache.stats();
    assert_eq!((s.misses, s.stores, s.hits()), (2, 0, 0));
    assert!(!cache
        .entry_path(&request("hello", 8_000))
        .expect("path")
        .exists());
}
