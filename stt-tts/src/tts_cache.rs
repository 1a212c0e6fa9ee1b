//! [`CachedTts`]: a cache in front of any [`TtsEngine`], so that repeated
//! prompts cost no synthesis.
//!
//! ```text
//!  request ─► key ─► memory LRU ──hit──► replay chunks
//!                       │miss
//!                       ▼
//!                  disk entry ──hit──► memory ─► replay chunks
//!                       │miss
//!                       ▼
//!                 inner engine ──chunk by chunk──► caller
//!                       │ completed (no error, no cancel)
//!                       ▼
//!                 memory + disk
//! ```
//!
//! The key covers the engine id and its settings (rate, pitch…), the voice,
//! the language, the output sample rate and the SHA-256 of the text. The
//! memory tier is an LRU bounded in bytes. The disk tier lives under
//! `<data_dir>/tts-cache/`: one file per entry, written to a temporary
//! file and renamed into place, with a header holding the rate, the sample
//! count and a SHA-256 of the audio; an entry that fails those checks is a
//! miss and is deleted. When the directory grows past its bound the entries
//! used least recently (file mtime, refreshed on every hit) go first.
//!
//! A cold synthesis is forwarded chunk by chunk as the engine makes it, so
//! the first byte is not delayed by caching; it is stored only once it
//! completed without error or cancellation (the store happens before the
//! stream reports its end, so a request made after the end always hits).
//! Two concurrent misses of the same text both synthesise; the second
//! store replaces the first.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use lru::LruCache;
use sha2::{Digest, Sha256};
use voxgate_gateway::audio::{SayConfig, MAX_RATE, MIN_RATE};

use crate::espeak::EspeakTts;
use crate::tts::{TtsBackend, TtsChunk, TtsEngine, TtsRequest, TtsStream};

/// The directory under the data dir.
pub const CACHE_DIR_NAME: &str = "tts-cache";
const MAGIC: &[u8; 4] = b"VXTC";
const FORMAT_VERSION: u8 = 1;
/// magic, version, 3 reserved, rate u32, samples u64, sha256.
const HEADER_LEN: usize = 4 + 1 + 3 + 4 + 8 + 32;
const ENTRY_EXT: &str = "pcm";

/// Cache bounds and place. `dir: None` keeps the cache in memory only.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TtsCacheConfig {
    /// Bound of the in-memory LRU, in bytes of PCM.
    pub memory_bytes: u64,
    /// Bound of the disk tier, in bytes of files.
    pub disk_bytes: u64,
    /// Usually `<data_dir>/tts-cache`.
    pub dir: Option<PathBuf>,
    /// Length of the chunks a hit is replayed in.
    pub chunk_ms: u32,
}

impl Default for TtsCacheConfig {
    fn default() -> Self {
        Self {
            memory_bytes: 32 * 1024 * 1024,
            disk_bytes: 512 * 1024 * 1024,
            dir: None,
            chunk_ms: 100,
        }
    }
}

impl TtsCacheConfig {
    /// The default bounds with the disk tier in `<data_dir>/tts-cache`.
    pub fn in_data_dir(data_dir: &Path) -> Self {
        Self {
            dir: Some(data_dir.join(CACHE_DIR_NAME)),
            ..Self::default()
        }
    }
}

/// What makes one engine's output differ from another's for the same
/// request: its id and settings (for espeak-ng, rate and pitch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheIdentity {
    pub engine: String,
    pub settings: String,
}

impl CacheIdentity {
    pub fn new(engine: impl Into<String>, settings: impl Into<String>) -> Self {
        Self {
            engine: engine.into(),
            settings: settings.into(),
        }
    }

    /// espeak-ng with `config`'s voice, rate and pitch.
    pub fn espeak(config: &SayConfig) -> Self {
        Self::new(
            "espeak-ng",
            format!(
                "voice={};rate={};pitch={}",
                config.voice, config.rate_wpm, config.pitch
            ),
        )
    }
}

/// Why the disk tier could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TtsCacheError {
    #[error("cannot use the TTS cache directory {path:?}: {source}")]
    Dir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A key: SHA-256 over every field that changes the audio.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TtsCacheKey([u8; 32]);

impl TtsCacheKey {
    pub fn new(identity: &CacheIdentity, request: &TtsRequest) -> Self {
        let text_hash = Sha256::digest(request.text.as_bytes());
        let mut h = Sha256::new();
        h.update(b"voxgate-tts-cache-v1");
        // Length-prefixed so that no two field lists hash alike.
        for field in [
            identity.engine.as_str(),
            identity.settings.as_str(),
            request.voice.as_deref().unwrap_or(""),
            request.language.as_deref().unwrap_or(""),
        ] {
            h.update((field.len() as u64).to_le_bytes());
            h.update(field.as_bytes());
        }
        h.update(request.sample_rate.to_le_bytes());
        h.update(text_hash);
        Self(h.finalize().into())
    }

    fn file_name(&self) -> String {
        format!("{}.{ENTRY_EXT}", hex::encode(self.0))
    }
}

/// A cached clip.
#[derive(Debug)]
struct Entry {
    rate: u32,
    samples: Arc<[i16]>,
}

impl Entry {
    fn bytes(&self) -> u64 {
        self.samples.len() as u64 * 2
    }
}

/// Counters, read with [`CachedTts::stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct TtsCacheStats {
    pub memory_hits: u64,
    pub disk_hits: u64,
    pub misses: u64,
    /// Completed syntheses stored.
    pub stores: u64,
    /// Disk entries that failed their checks and were removed.
    pub corrupt: u64,
    pub memory_entries: u64,
    pub memory_bytes: u64,
    pub disk_bytes: u64,
}

impl TtsCacheStats {
    pub fn hits(&self) -> u64 {
        self.memory_hits + self.disk_hits
    }
}

#[derive(Default)]
struct Counters {
    memory_hits: AtomicU64,
    disk_hits: AtomicU64,
    misses: AtomicU64,
    stores: AtomicU64,
    corrupt: AtomicU64,
    disk_bytes: AtomicU64,
}

struct Memory {
    lru: LruCache<TtsCacheKey, Arc<Entry>>,
    bytes: u64,
}

struct Shared {
    identity: CacheIdentity,
    config: TtsCacheConfig,
    memory: Mutex<Memory>,
    counters: Counters,
    temp_seq: AtomicU64,
}

/// A caching [`TtsEngine`] around `E`.
pub struct CachedTts<E> {
    inner: Arc<E>,
    shared: Arc<Shared>,
}

impl<E> std::fmt::Debug for CachedTts<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedTts")
            .field("identity", &self.shared.identity)
            .field("dir", &self.shared.config.dir)
            .finish()
    }
}

impl<E> Clone for CachedTts<E> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl CachedTts<EspeakTts> {
    /// espeak-ng with `say`'s voice, rate and pitch behind the cache: what
    /// `voxgate worker --engines tts` and the AI node's `[ai.tts] provider
    /// = "espeak"` both use.
    pub fn espeak(say: &SayConfig, config: TtsCacheConfig) -> Result<Self, TtsCacheError> {
        Self::new(
            EspeakTts::new(say.clone(), crate::espeak::DEFAULT_CHUNK_MS),
            CacheIdentity::espeak(say),
            config,
        )
    }
}

impl<E: TtsEngine + 'static> CachedTts<E> {
    /// Wraps `inner`. With a directory, creates it, removes temporary files
    /// a crash left behind and measures what is there.
    pub fn new(
        inner: E,
        identity: CacheIdentity,
        config: TtsCacheConfig,
    ) -> Result<Self, TtsCacheError> {
        let counters = Counters::default();
        if let Some(dir) = &config.dir {
            let size = prepare_dir(dir).map_err(|source| TtsCacheError::Dir {
                path: dir.clone(),
                source,
            })?;
            counters.disk_bytes.store(size, Ordering::Relaxed);
        }
        Ok(Self {
            inner: Arc::new(inner),
            shared: Arc::new(Shared {
                identity,
                config,
                memory: Mutex::new(Memory {
                    lru: LruCache::unbounded(),
                    bytes: 0,
                }),
                counters,
                temp_seq: AtomicU64::new(0),
            }),
        })
    }

    /// The wrapped engine.
    pub fn inner(&self) -> &E {
        &self.inner
    }

    pub fn stats(&self) -> TtsCacheStats {
        let c = &self.shared.counters;
        let (memory_entries, memory_bytes) = {
            let m = self.shared.lock_memory();
            (m.lru.len() as u64, m.bytes)
        };
        TtsCacheStats {
            memory_hits: c.memory_hits.load(Ordering::Relaxed),
            disk_hits: c.disk_hits.load(Ordering::Relaxed),
            misses: c.misses.load(Ordering::Relaxed),
            stores: c.stores.load(Ordering::Relaxed),
            corrupt: c.corrupt.load(Ordering::Relaxed),
            memory_entries,
            memory_bytes,
            disk_bytes: c.disk_bytes.load(Ordering::Relaxed),
        }
    }

    /// The path an entry for `request` is stored at (tests corrupt it).
    pub fn entry_path(&self, request: &TtsRequest) -> Option<PathBuf> {
        let key = TtsCacheKey::new(&self.shared.identity, request);
        self.shared
            .config
            .dir
            .as_ref()
            .map(|d| d.join(key.file_name()))
    }

    /// Forgets the memory tier (the disk tier stays).
    pub fn clear_memory(&self) {
        let mut m = self.shared.lock_memory();
        m.lru.clear();
        m.bytes = 0;
    }
}

impl Shared {
    fn lock_memory(&self) -> std::sync::MutexGuard<'_, Memory> {
        self.memory.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn memory_get(&self, key: &TtsCacheKey) -> Option<Arc<Entry>> {
        self.lock_memory().lru.get(key).cloned()
    }

    fn memory_put(&self, key: TtsCacheKey, entry: Arc<Entry>) {
        let size = entry.bytes();
        if size > self.config.memory_bytes {
            return;
        }
        let mut m = self.lock_memory();
        if let Some(old) = m.lru.put(key, entry) {
            m.bytes -= old.bytes();
        }
        m.bytes += size;
        while m.bytes > self.config.memory_bytes {
            match m.lru.pop_lru() {
                Some((_, old)) => m.bytes -= old.bytes(),
                None => break,
            }
        }
    }

    fn chunk_len(&self, rate: u32) -> usize {
        (rate as usize * self.config.chunk_ms.clamp(20, 1000) as usize / 1000).max(1)
    }
}

/// Creates `dir`, removes stale temporary files, returns the entries' size.
fn prepare_dir(dir: &Path) -> std::io::Result<u64> {
    std::fs::create_dir_all(dir)?;
    let mut total = 0;
    for item in std::fs::read_dir(dir)? {
        let item = item?;
        let path = item.path();
        let name = item.file_name();
        let name = name.to_string_lossy();
        if name.ends_with(".tmp") {
            let _ = std::fs::remove_file(&path);
        } else if name.ends_with(ENTRY_EXT) {
            total += item.metadata().map(|m| m.len()).unwrap_or(0);
        }
    }
    Ok(total)
}

fn encode_entry(entry: &Entry) -> Vec<u8> {
    let mut pcm = Vec::with_capacity(entry.samples.len() * 2);
    for s in entry.samples.iter() {
        pcm.extend_from_slice(&s.to_le_bytes());
    }
    let mut out = Vec::with_capacity(HEADER_LEN + pcm.len());
    out.extend_from_slice(MAGIC);
    out.push(FORMAT_VERSION);
    out.extend_from_slice(&[0; 3]);
    out.extend_from_slice(&entry.rate.to_le_bytes());
    out.extend_from_slice(&(entry.samples.len() as u64).to_le_bytes());
    out.extend_from_slice(&Sha256::digest(&pcm));
    out.extend_from_slice(&pcm);
    out
}

/// Why a disk entry was refused (it is then deleted).
#[derive(Debug, PartialEq, Eq)]
enum Corrupt {
    Header,
    Length,
    Checksum,
}

fn decode_entry(bytes: &[u8]) -> Result<Entry, Corrupt> {
    if bytes.len() < HEADER_LEN || &bytes[..4] != MAGIC || bytes[4] != FORMAT_VERSION {
        return Err(Corrupt::Header);
    }
    let word = |at: usize| -> [u8; 4] { [bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]] };
    let rate = u32::from_le_bytes(word(8));
    let mut count = [0u8; 8];
    count.copy_from_slice(&bytes[12..20]);
    let count = u64::from_le_bytes(count);
    if !(MIN_RATE..=MAX_RATE).contains(&rate) || count == 0 {
        return Err(Corrupt::Header);
    }
    let pcm = &bytes[HEADER_LEN..];
    if pcm.len() as u64 != count.saturating_mul(2) {
        return Err(Corrupt::Length);
    }
    if Sha256::digest(pcm)[..] != bytes[20..HEADER_LEN] {
        return Err(Corrupt::Checksum);
    }
    let samples: Vec<i16> = pcm
        .chunks_exact(2)
        .map(|p| i16::from_le_bytes([p[0], p[1]]))
        .collect();
    Ok(Entry {
        rate,
        samples: samples.into(),
    })
}

/// Reads one disk entry; a bad one is removed. Blocking.
fn read_disk(shared: &Shared, dir: &Path, key: &TtsCacheKey) -> Option<Entry> {
    let path = dir.join(key.file_name());
    let bytes = std::fs::read(&path).ok()?;
    match decode_entry(&bytes) {
        Ok(entry) => {
            // Refresh the mtime: eviction removes the least recently used.
            if let Ok(f) = std::fs::File::options().append(true).open(&path) {
                let _ = f.set_modified(voxgate_gateway::clock::wall_now());
            }
            Some(entry)
        }
        Err(why) => {
            tracing::warn!(path = %path.display(), ?why, "removing a corrupt TTS cache entry");
            if std::fs::remove_file(&path).is_ok() {
                sub_saturating(&shared.counters.disk_bytes, bytes.len() as u64);
            }
            shared.counters.corrupt.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

fn sub_saturating(counter: &AtomicU64, n: u64) {
    let _ = counter.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
        Some(v.saturating_sub(n))
    });
}

/// Writes one entry atomically, then evicts the oldest entries if the
/// directory is over its bound. Blocking.
fn write_disk(shared: &Shared, dir: &Path, key: &TtsCacheKey, entry: &Entry) {
    let bytes = encode_entry(entry);
    if bytes.len() as u64 > shared.config.disk_bytes {
        return;
    }
    let path = dir.join(key.file_name());
    let seq = shared.temp_seq.fetch_add(1, Ordering::Relaxed);
    let temp = dir.join(format!(
        ".{}.{}.{seq}.tmp",
        hex::encode(&key.0[..8]),
        std::process::id()
    ));
    // No fsync: a torn entry after a crash fails its checksum and is
    // dropped, which costs one synthesis, not a wrong prompt.
    if let Err(e) = std::fs::write(&temp, &bytes) {
        tracing::warn!(error = %e, "cannot write a TTS cache entry");
        let _ = std::fs::remove_file(&temp);
        return;
    }
    let replaced = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    if let Err(e) = std::fs::rename(&temp, &path) {
        tracing::warn!(error = %e, "cannot move a TTS cache entry into place");
        let _ = std::fs::remove_file(&temp);
        return;
    }
    let c = &shared.counters;
    sub_saturating(&c.disk_bytes, replaced);
    let total = c
        .disk_bytes
        .fetch_add(bytes.len() as u64, Ordering::Relaxed)
        + bytes.len() as u64;
    if total > shared.config.disk_bytes {
        evict_disk(shared, dir, &path);
    }
}

/// Removes the least recently used entries until the directory fits,
/// never the one just written.
fn evict_disk(shared: &Shared, dir: &Path, keep: &Path) {
    let Ok(items) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<(std::time::SystemTime, u64, PathBuf)> = items
        .filter_map(Result::ok)
        .filter(|i| i.file_name().to_string_lossy().ends_with(ENTRY_EXT))
        .filter_map(|i| {
            let m = i.metadata().ok()?;
            Some((m.modified().ok()?, m.len(), i.path()))
        })
        .collect();
    let mut total: u64 = entries.iter().map(|e| e.1).sum();
    entries.sort();
    for (_, len, path) in entries {
        if total <= shared.config.disk_bytes {
            break;
        }
        if path == keep {
            continue;
        }
        if std::fs::remove_file(&path).is_ok() {
            total -= len;
        }
    }
    shared.counters.disk_bytes.store(total, Ordering::Relaxed);
}

/// Replays a cached clip in chunks.
async fn replay(entry: Arc<Entry>, chunk_len: usize, out: TtsBackend) {
    for (seq, piece) in entry.samples.chunks(chunk_len).enumerate() {
        let chunk = TtsChunk {
            seq: seq as u32,
            samples: piece.to_vec(),
            sample_rate: entry.rate,
        };
        if !out.send(Ok(chunk)).await {
            return;
        }
    }
}

async fn serve<E: TtsEngine + 'static>(
    inner: Arc<E>,
    shared: Arc<Shared>,
    key: TtsCacheKey,
    request: TtsRequest,
    out: TtsBackend,
) {
    let rate = request.sample_rate;
    if let Some(dir) = shared.config.dir.clone() {
        let s = shared.clone();
        let found = tokio::task::spawn_blocking(move || read_disk(&s, &dir, &key))
            .await
            .ok()
            .flatten();
        if let Some(entry) = found.filter(|e| e.rate == rate) {
            shared.counters.disk_hits.fetch_add(1, Ordering::Relaxed);
            let entry = Arc::new(entry);
            shared.memory_put(key, entry.clone());
            replay(entry, shared.chunk_len(rate), out).await;
            return;
        }
    }
    shared.counters.misses.fetch_add(1, Ordering::Relaxed);
    let mut stream = inner.synthesize(request);
    let mut audio: Vec<i16> = Vec::new();
    let mut cacheable = true;
    loop {
        let item = tokio::select! {
            biased;
            // Dropping `stream` on return cancels the inner engine.
            _ = out.cancel.cancelled() => return,
            item = stream.next_chunk() => item,
        };
        match item {
            None => break,
            Some(Ok(chunk)) => {
                if chunk.sample_rate != rate {
                    cacheable = false;
                }
                if cacheable {
                    audio.extend_from_slice(&chunk.samples);
                }
                if !out.send(Ok(chunk)).await {
                    return;
                }
            }
            Some(Err(e)) => {
                out.send(Err(e)).await;
                return;
            }
        }
    }
    if !cacheable || audio.is_empty() || out.cancel.is_cancelled() {
        return;
    }
    let entry = Arc::new(Entry {
        rate,
        samples: audio.into(),
    });
    shared.memory_put(key, entry.clone());
    if let Some(dir) = shared.config.dir.clone() {
        let s = shared.clone();
        let _ = tokio::task::spawn_blocking(move || write_disk(&s, &dir, &key, &entry)).await;
    }
    shared.counters.stores.fetch_add(1, Ordering::Relaxed);
    // `out` drops here: the caller sees the end only after the store.
}

impl<E: TtsEngine + 'static> TtsEngine for CachedTts<E> {
    fn synthesize(&self, request: TtsRequest) -> TtsStream {
        if request.text.trim().is_empty() || !(MIN_RATE..=MAX_RATE).contains(&request.sample_rate) {
            // Nothing worth caching; the engine gives its own answer.
            return self.inner.synthesize(request);
        }
        let key = TtsCacheKey::new(&self.shared.identity, &request);
        let (stream, backend) = TtsStream::channel(request.sample_rate);
        if let Some(entry) = self.shared.memory_get(&key) {
            if entry.rate == request.sample_rate {
                self.shared
                    .counters
                    .memory_hits
                    .fetch_add(1, Ordering::Relaxed);
                let len = self.shared.chunk_len(entry.rate);
                tokio::spawn(replay(entry, len, backend));
                return stream;
            }
        }
        tokio::spawn(serve(
            self.inner.clone(),
            self.shared.clone(),
            key,
            request,
            backend,
        ));
        stream
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(text: &str, rate: u32) -> TtsRequest {
        TtsRequest {
            text: text.into(),
            voice: None,
            language: Some("en-US".into()),
            sample_rate: rate,
        }
    }

    #[test]
    fn keys_cover_every_field() {
        let id = CacheIdentity::new("e", "rate=1");
        let base = TtsCacheKey::new(&id, &request("hello", 8_000));
        assert_eq!(base, TtsCacheKey::new(&id, &request("hello", 8_000)));
        assert_ne!(base, TtsCacheKey::new(&id, &request("hello", 16_000)));
        assert_ne!(base, TtsCacheKey::new(&id, &request("hello!", 8_000)));
        let mut voiced = request("hello", 8_000);
        voiced.voice = Some("en-gb".into());
        assert_ne!(base, TtsCacheKey::new(&id, &voiced));
        assert_ne!(
            base,
            TtsCacheKey::new(&CacheIdentity::new("e", "rate=2"), &request("hello", 8_000))
        );
        // Field boundaries matter: "ab"+"" is not "a"+"b".
        assert_ne!(
            TtsCacheKey::new(&CacheIdentity::new("ab", ""), &request("x", 8_000)),
            TtsCacheKey::new(&CacheIdentity::new("a", "b"), &request("x", 8_000))
        );
    }

    #[test]
    fn entries_round_trip_and_refuse_damage() {
        let entry = Entry {
            rate: 8_000,
            samples: vec![1, -2, 300, i16::MIN].into(),
        };
        let bytes = encode_entry(&entry);
        assert_eq!(bytes.len(), HEADER_LEN + 8);
        let back = decode_entry(&bytes).expect("decode");
        assert_eq!((back.rate, &*back.samples), (8_000, &*entry.samples));
        let mut flipped = bytes.clone();
        flipped[HEADER_LEN + 1] ^= 1;
        assert_eq!(decode_entry(&flipped).err(), Some(Corrupt::Checksum));
        assert_eq!(
            decode_entry(&bytes[..bytes.len() - 1]).err(),
            Some(Corrupt::Length)
        );
        assert_eq!(decode_entry(&bytes[..10]).err(), Some(Corrupt::Header));
        let mut bad_rate = bytes.clone();
        bad_rate[8..12].copy_from_slice(&0u32.to_le_bytes());
        assert_eq!(decode_entry(&bad_rate).err(), Some(Corrupt::Header));
    }
}
