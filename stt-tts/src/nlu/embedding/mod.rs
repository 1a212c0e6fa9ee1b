//! The embedding intent classifier: all-MiniLM-L6-v2 (candle, CPU) embeds
//! the utterance; cosine similarity to each intent's example phrases and
//! description, calibrated into a confidence (see `docs/nlu.md`).
//!
//! ```text
//!  NluRequest ──► intent-set key (sha256 of names, descriptions, examples)
//!                   │ hit                       │ miss
//!                   ▼                           ▼
//!            LRU of embedded sets ◄── embed every phrase (batched, once)
//!                   │
//!  utterance ──► embed (one forward pass) ──► score::classify ──► IntentResult
//! ```
//!
//! Inference is CPU-bound and runs on tokio's blocking pool; a turn embeds
//! only the utterance once its intent set is cached.
//!
//! - [`model`]: loading with the sha256 check, batched embedding, pooling.
//! - [`score`]: aggregation per intent and the calibration (pure).

pub mod model;
pub mod score;

use std::num::NonZeroUsize;
use std::path::Path;
use std::sync::{Arc, Mutex};

use lru::LruCache;
use sha2::{Digest, Sha256};

use super::lexical::{LexicalIntentEngine, LEXICAL_FALLBACK_ENGINE};
use super::{IntentEngine, IntentResult, IntentSpec, NluEvent, NluRequest, NluStream};
use crate::error::EngineError;
pub use model::{EmbedError, MiniLm, ModelError, MODEL_SHA256};
use score::IntentVectors;

/// The name this engine answers under ([`IntentResult::engine`]).
pub const EMBEDDING_ENGINE: &str = "minilm-embedding";

/// Intent sets whose embeddings are kept. A tenant's flows use a handful
/// of AI nodes; each set is a few kB per phrase (384 floats).
pub const DEFAULT_CACHE_SETS: NonZeroUsize = match NonZeroUsize::new(64) {
    Some(n) => n,
    None => NonZeroUsize::MIN,
};

/// What identifies an intent set's embeddings: everything that is embedded,
/// nothing else (slots do not change the vectors).
type SetKey = [u8; 32];

fn set_key(intents: &[IntentSpec]) -> SetKey {
    let mut h = Sha256::new();
    // Length prefixes keep ("ab","c") apart from ("a","bc").
    let mut field = |s: &str| {
        h.update((s.len() as u64).to_le_bytes());
        h.update(s.as_bytes());
    };
    for i in intents {
        field(&i.name);
        field(&i.description);
        field(&i.examples.len().to_string());
        for e in &i.examples {
            field(e);
        }
    }
    h.finalize().into()
}

/// The text that stands for an intent besides its examples.
fn description_text(spec: &IntentSpec) -> String {
    if spec.description.trim().is_empty() {
        spec.name.replace(['_', '-'], " ")
    } else {
        spec.description.clone()
    }
}

/// The embedding classifier. Cloning shares the model and the cache.
#[derive(Clone)]
pub struct EmbeddingIntentEngine {
    model: Arc<MiniLm>,
    cache: Arc<Mutex<LruCache<SetKey, Arc<Vec<IntentVectors>>>>>,
}

impl std::fmt::Debug for EmbeddingIntentEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddingIntentEngine")
            .field("cached_sets", &self.cached_sets())
            .finish_non_exhaustive()
    }
}

impl EmbeddingIntentEngine {
    /// An engine over a loaded model, keeping `cache_sets` intent sets.
    pub fn new(model: Arc<MiniLm>, cache_sets: NonZeroUsize) -> Self {
        Self {
            model,
            cache: Arc::new(Mutex::new(LruCache::new(cache_sets))),
        }
    }

    /// Loads the model from `dir` (blocking; see [`MiniLm::load`]).
    pub fn load(dir: &Path) -> Result<Self, ModelError> {
        Ok(Self::new(Arc::new(MiniLm::load(dir)?), DEFAULT_CACHE_SETS))
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, LruCache<SetKey, Arc<Vec<IntentVectors>>>> {
        // The cache holds no invariant a panicking holder could break.
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many intent sets are cached.
    pub fn cached_sets(&self) -> usize {
        self.cache().len()
    }

    /// The embeddings of `intents`, from the cache or computed now in one
    /// batched pass. Blocking.
    pub fn prepare(&self, intents: &[IntentSpec]) -> Result<Arc<Vec<IntentVectors>>, EmbedError> {
        let key = set_key(intents);
        if let Some(hit) = self.cache().get(&key) {
            return Ok(Arc::clone(hit));
        }
        // Computed outside the lock: two turns racing on a new set both
        // embed it, which costs time once but never blocks other sets.
        let vectors = Arc::new(self.embed_set(intents)?);
        self.cache().put(key, Arc::clone(&vectors));
        Ok(vectors)
    }

    fn embed_set(&self, intents: &[IntentSpec]) -> Result<Vec<IntentVectors>, EmbedError> {
        let descriptions: Vec<String> = intents.iter().map(description_text).collect();
        let mut texts: Vec<&str> = Vec::new();
        for (spec, d) in intents.iter().zip(&descriptions) {
            texts.extend(spec.examples.iter().map(String::as_str));
            texts.push(d);
        }
        // Batches of similar length waste less on padding.
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|i| texts[*i].len());
        let sorted: Vec<&str> = order.iter().map(|i| texts[*i]).collect();
        let embedded = self.model.embed(&sorted)?;
        let mut by_text: Vec<Option<model::Embedding>> = vec![None; texts.len()];
        for (slot, e) in order.into_iter().zip(embedded) {
            by_text[slot] = Some(e);
        }
        let mut next = by_text.into_iter();
        let mut out = Vec::with_capacity(intents.len());
        for spec in intents {
            let examples = next.by_ref().take(spec.examples.len()).flatten().collect();
            let description = next.next().flatten();
            out.push(IntentVectors {
                examples,
                description,
            });
        }
        Ok(out)
    }

    /// Every intent's raw (uncalibrated) score for `utterance`, in set
    /// order: what the calibration is fitted on. Blocking.
    pub fn raw_scores(
        &self,
        intents: &[IntentSpec],
        utterance: &str,
    ) -> Result<Vec<f32>, EmbedError> {
        let vectors = self.prepare(intents)?;
        let embedded = self.model.embed(&[utterance])?;
        let u = embedded.first().ok_or(EmbedError::NoOutput)?;
        Ok(score::raw_scores(u, &vectors))
    }

    /// Classifies one request. Blocking (runs the model).
    pub fn classify_blocking(&self, request: &NluRequest) -> Result<IntentResult, EmbedError> {
        let utterance = request.utterance.trim();
        if utterance.is_empty() || request.intents.is_empty() {
            return Ok(IntentResult {
                engine: Some(EMBEDDING_ENGINE.to_owned()),
                ..IntentResult::no_match()
            });
        }
        let vectors = self.prepare(&request.intents)?;
        let embedded = self.model.embed(&[utterance])?;
        let Some(u) = embedded.first() else {
            return Err(EmbedError::NoOutput);
        };
        Ok(IntentResult {
            engine: Some(EMBEDDING_ENGINE.to_owned()),
            ..score::classify(&request.intents, &vectors, utterance, u)
        })
    }
}

impl IntentEngine for EmbeddingIntentEngine {
    fn classify(&self, request: NluRequest) -> NluStream {
        let (stream, backend) = NluStream::channel();
        let engine = self.clone();
        tokio::spawn(async move {
            let work = tokio::task::spawn_blocking(move || engine.classify_blocking(&request));
            let joined = tokio::select! {
                biased;
                // The blocking pass cannot be interrupted; its result is
                // simply dropped.
                _ = backend.cancel.cancelled() => return,
                joined = work => joined,
            };
            let item = match joined {
                Ok(Ok(result)) => Ok(NluEvent::Result(result)),
                Ok(Err(e)) => Err(EngineError::from(e)),
                Err(join) => Err(EngineError::from(EmbedError::TaskFailed {
                    reason: join.to_string(),
                })),
            };
            backend.send(item).await;
        });
        stream
    }
}

/// Which classifier [`build_intent_engine`] chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NluEngineKind {
    Embedding,
    /// The model is absent: the lexical classifier answers instead.
    LexicalFallback,
}

impl NluEngineKind {
    /// The name results and logs carry.
    pub fn name(self) -> &'static str {
        match self {
            Self::Embedding => EMBEDDING_ENGINE,
            Self::LexicalFallback => LEXICAL_FALLBACK_ENGINE,
        }
    }
}

/// The intent engine to serve, and which one it is.
pub struct BuiltIntentEngine {
    pub engine: Arc<dyn IntentEngine>,
    pub kind: NluEngineKind,
    /// Why the fallback was chosen.
    pub fallback_reason: Option<ModelError>,
}

impl std::fmt::Debug for BuiltIntentEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BuiltIntentEngine")
            .field("kind", &self.kind)
            .field("fallback_reason", &self.fallback_reason)
            .finish_non_exhaustive()
    }
}

/// The embedding engine when the model in `dir` is there; the lexical
/// classifier, labelled `lexical-fallback`, when the directory or a file is
/// missing. A model that is present but fails its checksum or does not
/// load is an error, not a reason to fall back: it is a broken install
/// that an operator must see. Blocking (loads ~90 MB).
pub fn build_intent_engine(dir: &Path) -> Result<BuiltIntentEngine, ModelError> {
    match EmbeddingIntentEngine::load(dir) {
        Ok(engine) => {
            tracing::info!(engine = EMBEDDING_ENGINE, dir = %dir.display(), "intent engine: all-MiniLM-L6-v2 loaded");
            Ok(BuiltIntentEngine {
                engine: Arc::new(engine),
                kind: NluEngineKind::Embedding,
                fallback_reason: None,
            })
        }
        Err(e @ (ModelError::MissingDir { .. } | ModelError::MissingFile { .. })) => {
            tracing::warn!(
                engine = LEXICAL_FALLBACK_ENGINE,
                "intent engine: {e}; answering with the LEXICAL FALLBACK classifier"
            );
            Ok(BuiltIntentEngine {
                engine: Arc::new(LexicalIntentEngine),
                kind: NluEngineKind::LexicalFallback,
                fallback_reason: Some(e),
            })
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, description: &str, examples: &[&str]) -> IntentSpec {
        IntentSpec {
            name: name.into(),
            description: description.into(),
            examples: examples.iter().map(|e| (*e).to_owned()).collect(),
            slots: Vec::new(),
        }
    }

    #[test]
    fn the_set_key_covers_what_is_embedded_and_only_that() {
        let a = [spec("a", "d", &["x", "y"])];
        let mut slots = a.clone();
        slots[0].slots.push(crate::nlu::SlotSpec {
            name: "n".into(),
            kind: crate::nlu::SlotKind::Digits,
        });
        assert_eq!(set_key(&a), set_key(&slots));
        assert_ne!(set_key(&a), set_key(&[spec("a", "d", &["x", "z"])]));
        assert_ne!(set_key(&a), set_key(&[spec("a", "d", &["xy"])]));
        assert_ne!(
            set_key(&[spec("ab", "", &[])]),
            set_key(&[spec("a", "b", &[])])
        );
    }

    #[test]
    fn an_intent_without_description_is_described_by_its_name() {
        assert_eq!(
            description_text(&spec("order_status", "", &[])),
            "order status"
        );
        assert_eq!(
            description_text(&spec("x", "Where is my parcel", &[])),
            "Where is my parcel"
        );
    }

    #[test]
    fn a_missing_model_falls_back_to_the_labelled_lexical_engine() {
        let dir = std::env::temp_dir().join("voxgate-no-such-minilm-dir");
        let built = build_intent_engine(&dir).expect("a missing model falls back");
        assert_eq!(built.kind, NluEngineKind::LexicalFallback);
        assert_eq!(built.kind.name(), "lexical-fallback");
        assert!(matches!(
            built.fallback_reason,
            Some(ModelError::MissingDir { .. })
        ));
    }
}
