//! all-MiniLM-L6-v2 on the CPU through candle: loading (with the sha256
//! check) and sentence embedding, pooled as sentence-transformers does
//! (mean over the attention mask, then L2 normalisation), so the vectors
//! match the published model's and cosine similarity is a dot product.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use sha2::{Digest, Sha256};
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

/// The sha256 of `model.safetensors` as published upstream
/// (sentence-transformers/all-MiniLM-L6-v2 on Hugging Face). The PyPI wheel
/// must carry exactly that file.
pub const MODEL_SHA256: &str = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db";

/// The files a model directory must hold.
pub const MODEL_FILES: [&str; 3] = ["model.safetensors", "tokenizer.json", "config.json"];

/// The embedding width of all-MiniLM-L6-v2.
pub const EMBEDDING_DIM: usize = 384;

/// Longest input in tokens, as sentence-transformers configures the model;
/// caller utterances are far shorter.
const MAX_TOKENS: usize = 256;

/// Texts embedded in one forward pass. Padding makes a batch as long as its
/// longest text, so a bound keeps one long example from inflating many
/// short ones and caps the activation memory.
const MAX_BATCH: usize = 32;

/// Why the model could not be loaded. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("the all-MiniLM-L6-v2 model directory {} does not exist (run `make models`)", dir.display())]
    MissingDir { dir: PathBuf },
    #[error("the all-MiniLM-L6-v2 model file {} is missing (run `make models`)", path.display())]
    MissingFile { path: PathBuf },
    #[error("reading {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "REFUSED {}: sha256 {actual} is not the published all-MiniLM-L6-v2 \
         model.safetensors ({expected}); the file is corrupt or another model",
        path.display()
    )]
    ChecksumMismatch {
        path: PathBuf,
        expected: &'static str,
        actual: String,
    },
    #[error("{} is not a BERT config: {source}", path.display())]
    Config {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{} has hidden size {found}, all-MiniLM-L6-v2 has {EMBEDDING_DIM}", path.display())]
    WrongShape { path: PathBuf, found: usize },
    #[error("{} is not a usable tokenizer: {source}", path.display())]
    Tokenizer {
        path: PathBuf,
        #[source]
        source: tokenizers::Error,
    },
    #[error("loading the weights from {}: {source}", path.display())]
    Weights {
        path: PathBuf,
        #[source]
        source: candle_core::Error,
    },
}

/// Why texts could not be embedded.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    #[error("tokenizing: {0}")]
    Tokenize(#[source] tokenizers::Error),
    #[error("running the model: {0}")]
    Inference(#[from] candle_core::Error),
    #[error("the model returned no embedding")]
    NoOutput,
    #[error("the embedding task failed: {reason}")]
    TaskFailed { reason: String },
}

/// A unit-length sentence embedding.
pub type Embedding = Vec<f32>;

/// The loaded model. Immutable, so one instance serves every thread.
pub struct MiniLm {
    bert: BertModel,
    tokenizer: Tokenizer,
    device: Device,
}

impl std::fmt::Debug for MiniLm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MiniLm").finish_non_exhaustive()
    }
}

fn read(path: &Path) -> Result<Vec<u8>, ModelError> {
    std::fs::read(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => ModelError::MissingFile {
            path: path.to_owned(),
        },
        _ => ModelError::Read {
            path: path.to_owned(),
            source,
        },
    })
}

/// Checks that `dir` holds every model file, without reading them: the
/// cheap check a caller makes before deciding on the fallback.
pub fn check_present(dir: &Path) -> Result<(), ModelError> {
    if !dir.is_dir() {
        return Err(ModelError::MissingDir {
            dir: dir.to_owned(),
        });
    }
    for name in MODEL_FILES {
        let path = dir.join(name);
        if !path.is_file() {
            return Err(ModelError::MissingFile { path });
        }
    }
    Ok(())
}

/// The lower-case hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl MiniLm {
    /// Loads the model from `dir` (`model.safetensors`, `tokenizer.json`,
    /// `config.json`), refusing weights whose sha256 is not
    /// [`MODEL_SHA256`]. Reads and hashes ~90 MB: call it once at startup,
    /// on a blocking thread.
    pub fn load(dir: &Path) -> Result<Self, ModelError> {
        check_present(dir)?;
        let weights_path = dir.join("model.safetensors");
        let weights = read(&weights_path)?;
        let actual = sha256_hex(&weights);
        if actual != MODEL_SHA256 {
            return Err(ModelError::ChecksumMismatch {
                path: weights_path,
                expected: MODEL_SHA256,
                actual,
            });
        }

        let config_path = dir.join("config.json");
        let config_bytes = read(&config_path)?;
        let config: Config =
            serde_json::from_slice(&config_bytes).map_err(|source| ModelError::Config {
                path: config_path.clone(),
                source,
            })?;
        // The config is not covered by the checksum; a wrong width would
        // only fail later, deep inside a matmul.
        let hidden = config_hidden_size(&config_bytes);
        if hidden != Some(EMBEDDING_DIM) {
            return Err(ModelError::WrongShape {
                path: config_path,
                found: hidden.unwrap_or(0),
            });
        }

        let tokenizer_path = dir.join("tokenizer.json");
        let mut tokenizer = Tokenizer::from_bytes(read(&tokenizer_path)?).map_err(|source| {
            ModelError::Tokenizer {
                path: tokenizer_path.clone(),
                source,
            }
        })?;
        // The shipped tokenizer pads every input to 128 tokens; pad a batch
        // only to its longest text instead, the attention mask hides the rest.
        tokenizer.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            ..PaddingParams::default()
        }));
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: MAX_TOKENS,
                ..TruncationParams::default()
            }))
            .map_err(|source| ModelError::Tokenizer {
                path: tokenizer_path,
                source,
            })?;

        let device = Device::Cpu;
        let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, &device).map_err(
            |source| ModelError::Weights {
                path: dir.join("model.safetensors"),
                source,
            },
        )?;
        let bert = BertModel::load(vb, &config).map_err(|source| ModelError::Weights {
            path: dir.join("model.safetensors"),
            source,
        })?;
        Ok(Self {
            bert,
            tokenizer,
            device,
        })
    }

    /// Embeds `texts`, in order, in batches. CPU-bound: call it on a
    /// blocking thread.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Embedding>, EmbedError> {
        let mut out = Vec::with_capacity(texts.len());
        for chunk in texts.chunks(MAX_BATCH) {
            out.extend(self.embed_batch(chunk)?);
        }
        Ok(out)
    }

    fn embed_batch(&self, texts: &[&str]) -> Result<Vec<Embedding>, EmbedError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(EmbedError::Tokenize)?;
        let len = encodings.first().map_or(0, |e| e.get_ids().len());
        let mut ids = Vec::with_capacity(texts.len() * len);
        let mut mask = Vec::with_capacity(texts.len() * len);
        for e in &encodings {
            ids.extend_from_slice(e.get_ids());
            mask.extend_from_slice(e.get_attention_mask());
        }
        let shape = (texts.len(), len);
        let ids = Tensor::from_vec(ids, shape, &self.device)?;
        let mask = Tensor::from_vec(mask, shape, &self.device)?;
        let token_types = ids.zeros_like()?;
        let hidden = self.bert.forward(&ids, &token_types, Some(&mask))?;

        // Mean over the real tokens only: padding must not pull the
        // average towards whatever the model outputs for [PAD].
        let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
        let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
        let counts = mask.sum(1)?.clamp(1e-9f32, f32::MAX)?;
        let mean = summed.broadcast_div(&counts)?;
        let norms = mean
            .sqr()?
            .sum_keepdim(1)?
            .sqrt()?
            .clamp(1e-12f32, f32::MAX)?;
        let unit = mean.broadcast_div(&norms)?;
        Ok(unit.to_vec2::<f32>()?)
    }
}

/// `hidden_size` from a config.json, read apart from candle's config type
/// (whose fields are private).
fn config_hidden_size(bytes: &[u8]) -> Option<usize> {
    #[derive(serde::Deserialize)]
    struct Shape {
        hidden_size: usize,
    }
    serde_json::from_slice::<Shape>(bytes)
        .ok()
        .map(|s| s.hidden_size)
}

/// The cosine similarity of two unit vectors.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}
