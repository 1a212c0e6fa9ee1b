//! The legacy ggml whisper model format (`ggml-*.bin`), checked in Rust
//! before whisper.cpp sees the file.
//!
//! whisper.cpp's loader trusts its input: an unknown `ftype` hits a
//! `GGML_ASSERT` (abort), a huge vocabulary or name length throws
//! `std::bad_alloc` through the C ABI (abort), a file cut inside the last
//! tensor loads "successfully" with garbage weights, and a file with no
//! tensors at all loads as an "empty model for testing". So the whole file
//! is walked here first: header, mel filters, vocabulary and every tensor
//! header, with each tensor's name, shape, type and byte length compared
//! against what the loader will allocate (the table in [`expected_tensors`]
//! mirrors `whisper_model_load` in whisper.cpp). Tensor data is skipped,
//! not read, so checking a 3 GB model costs a few thousand small reads.
//!
//! Layout (all little endian):
//! ```text
//! u32 magic "ggml" | 11 x i32 hparams | i32 n_mel, i32 n_fft, f32[n_mel*n_fft]
//! | i32 n_tokens, n_tokens x (u32 len, bytes) | tensors until EOF:
//!   i32 n_dims, i32 name_len, i32 type, i32 ne[n_dims], name, data
//! ```

use std::collections::{HashMap, HashSet};
use std::io::{BufReader, Read, Seek};
use std::path::Path;

/// `GGML_FILE_MAGIC`: "ggml" read as a little-endian u32.
pub const GGML_MAGIC: u32 = 0x6767_6d6c;
/// The GGUF container's magic ("GGUF"); whisper.cpp does not read GGUF.
const GGUF_MAGIC: u32 = 0x4655_4747;
/// `GGML_QNT_VERSION_FACTOR`: the quantization version is folded into ftype.
const QNT_VERSION_FACTOR: i32 = 1000;
/// Frequency bins of whisper's 400-point FFT.
pub const N_FFT_BINS: i32 = 201;
/// whisper's 30 s window: 1500 encoder positions.
const MAX_AUDIO_CTX: i32 = 1500;
/// The decoder context of every published whisper model.
const MAX_TEXT_CTX: i32 = 448;
/// Vocabulary sizes whisper.cpp knows the special tokens of (English-only,
/// multilingual, large-v3). Other sizes index its language table out of
/// bounds.
const VOCAB_SIZES: [i32; 3] = [51864, 51865, 51866];
/// No BPE token of a real vocabulary comes near this.
const MAX_TOKEN_BYTES: u32 = 1024;
/// Longest tensor name in the layout is about 45 bytes.
const MAX_NAME_BYTES: i32 = 256;

/// A ggml tensor element type, with its block geometry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GgmlType {
    pub id: u32,
    pub name: &'static str,
    /// Elements per block.
    pub block: u64,
    /// Bytes per block.
    pub block_bytes: u64,
}

pub const F32: GgmlType = GgmlType {
    id: 0,
    name: "f32",
    block: 1,
    block_bytes: 4,
};
pub const F16: GgmlType = GgmlType {
    id: 1,
    name: "f16",
    block: 1,
    block_bytes: 2,
};
const Q4_0: GgmlType = GgmlType {
    id: 2,
    name: "q4_0",
    block: 32,
    block_bytes: 18,
};
const Q4_1: GgmlType = GgmlType {
    id: 3,
    name: "q4_1",
    block: 32,
    block_bytes: 20,
};
const Q5_0: GgmlType = GgmlType {
    id: 6,
    name: "q5_0",
    block: 32,
    block_bytes: 22,
};
const Q5_1: GgmlType = GgmlType {
    id: 7,
    name: "q5_1",
    block: 32,
    block_bytes: 24,
};
const Q8_0: GgmlType = GgmlType {
    id: 8,
    name: "q8_0",
    block: 32,
    block_bytes: 34,
};
const Q2_K: GgmlType = GgmlType {
    id: 10,
    name: "q2_k",
    block: 256,
    block_bytes: 84,
};
const Q3_K: GgmlType = GgmlType {
    id: 11,
    name: "q3_k",
    block: 256,
    block_bytes: 110,
};
const Q4_K: GgmlType = GgmlType {
    id: 12,
    name: "q4_k",
    block: 256,
    block_bytes: 144,
};
const Q5_K: GgmlType = GgmlType {
    id: 13,
    name: "q5_k",
    block: 256,
    block_bytes: 176,
};
const Q6_K: GgmlType = GgmlType {
    id: 14,
    name: "q6_k",
    block: 256,
    block_bytes: 210,
};
const BF16: GgmlType = GgmlType {
    id: 30,
    name: "bf16",
    block: 1,
    block_bytes: 2,
};

/// The weight type of a file's `ftype` (`ggml_ftype_to_ggml_type`), for
/// the ftypes whisper models are published in. Anything else would make
/// whisper.cpp abort.
fn weight_type(ftype: i32) -> Option<GgmlType> {
    Some(match ftype {
        0 => F32,
        1 => F16,
        2 => Q4_0,
        3 => Q4_1,
        7 => Q8_0,
        8 => Q5_0,
        9 => Q5_1,
        10 => Q2_K,
        11 => Q3_K,
        12 => Q4_K,
        13 => Q5_K,
        14 => Q6_K,
        24 => BF16,
        _ => return None,
    })
}

/// The hyperparameters at the top of the file, in file order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HParams {
    pub n_vocab: i32,
    pub n_audio_ctx: i32,
    pub n_audio_state: i32,
    pub n_audio_head: i32,
    pub n_audio_layer: i32,
    pub n_text_ctx: i32,
    pub n_text_state: i32,
    pub n_text_head: i32,
    pub n_text_layer: i32,
    pub n_mels: i32,
    pub ftype: i32,
}

impl HParams {
    /// Byte offset of each field, for tests that corrupt one.
    pub const OFFSET_N_VOCAB: usize = 4;
    pub const OFFSET_N_AUDIO_STATE: usize = 12;
    pub const OFFSET_N_TEXT_HEAD: usize = 32;
    pub const OFFSET_FTYPE: usize = 44;
    /// Where the mel filters start.
    pub const END: usize = 48;

    pub fn multilingual(&self) -> bool {
        self.n_vocab >= 51865
    }

    /// The weight type, once the quantization version is removed.
    pub fn weight_type(&self) -> Option<GgmlType> {
        weight_type(self.ftype % QNT_VERSION_FACTOR)
    }

    fn as_array(&self) -> [(&'static str, i32); 11] {
        [
            ("n_vocab", self.n_vocab),
            ("n_audio_ctx", self.n_audio_ctx),
            ("n_audio_state", self.n_audio_state),
            ("n_audio_head", self.n_audio_head),
            ("n_audio_layer", self.n_audio_layer),
            ("n_text_ctx", self.n_text_ctx),
            ("n_text_state", self.n_text_state),
            ("n_text_head", self.n_text_head),
            ("n_text_layer", self.n_text_layer),
            ("n_mels", self.n_mels),
            ("ftype", self.ftype),
        ]
    }

    pub fn to_le_bytes(self) -> Vec<u8> {
        self.as_array()
            .iter()
            .flat_map(|(_, v)| v.to_le_bytes())
            .collect()
    }
}

/// What is wrong with a model file. Offsets are bytes from the start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("the file is empty")]
    Empty,
    #[error("bad magic {found:#010x}: not a ggml whisper model (expected \"ggml\")")]
    BadMagic { found: u32 },
    #[error("this is a GGUF file; whisper.cpp needs the ggml .bin format (ggml-<size>.bin)")]
    Gguf,
    #[error("the file ends at byte {offset} inside {what}: truncated download?")]
    Truncated { offset: u64, what: &'static str },
    #[error("hyperparameter {name} = {value} is out of range ({expected})")]
    BadHparam {
        name: &'static str,
        value: i64,
        expected: &'static str,
    },
    #[error("unsupported weight format (ftype {ftype})")]
    UnsupportedFtype { ftype: i32 },
    #[error("mel filter bank is {n_mel} x {n_fft}, expected {expected_mels} x 201")]
    BadMelFilters {
        n_mel: i32,
        n_fft: i32,
        expected_mels: i32,
    },
    #[error("vocabulary of {count} tokens does not fit n_vocab {n_vocab}")]
    BadVocabSize { count: i64, n_vocab: i32 },
    #[error("vocabulary token {index} claims {len} bytes")]
    TokenTooLong { index: usize, len: u32 },
    #[error("tensor header at byte {offset} is malformed ({what} = {value})")]
    BadTensorHeader {
        offset: u64,
        what: &'static str,
        value: i64,
    },
    #[error("unknown tensor {name:?}")]
    UnknownTensor { name: String },
    #[error("tensor {name:?} appears twice")]
    DuplicateTensor { name: String },
    #[error("tensor {name:?} has shape {found:?}, expected {expected:?}")]
    TensorShape {
        name: String,
        found: [i64; 4],
        expected: [i64; 4],
    },
    #[error("tensor {name:?} is stored as type {found}, expected {expected}")]
    TensorType {
        name: String,
        found: u32,
        expected: &'static str,
    },
    #[error("{missing} of {total} tensors are missing, for example {example:?}")]
    MissingTensors {
        missing: usize,
        total: usize,
        example: String,
    },
    #[error("{extra} unexpected bytes after the last tensor")]
    TrailingBytes { extra: u64 },
}

/// One tensor the loader allocates: its type and `ne` (innermost first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TensorSpec {
    pub ty: GgmlType,
    pub ne: [i64; 4],
}

impl TensorSpec {
    fn elements(&self) -> u64 {
        self.ne.iter().map(|&n| n as u64).product()
    }

    /// Bytes of data in the file (`ggml_nbytes`).
    pub fn bytes(&self) -> u64 {
        self.elements() / self.ty.block * self.ty.block_bytes
    }

    /// `n_dims` as the converter writes it: trailing 1s dropped.
    pub fn n_dims(&self) -> usize {
        self.ne.iter().rposition(|&n| n != 1).map_or(1, |i| i + 1)
    }
}

fn spec(ty: GgmlType, dims: &[i32]) -> TensorSpec {
    let mut ne = [1i64; 4];
    for (slot, &d) in ne.iter_mut().zip(dims) {
        *slot = i64::from(d);
    }
    TensorSpec { ty, ne }
}

/// Every tensor `whisper_model_load` creates, in its order, for `hp` with
/// weight type `w` (matrices) and `v` (the convolutions: f16 unless the
/// whole model is f32).
pub fn expected_tensors(hp: &HParams, w: GgmlType) -> Vec<(String, TensorSpec)> {
    let v = if w == F32 { F32 } else { F16 };
    let (sa, st) = (hp.n_audio_state, hp.n_text_state);
    let mut out: Vec<(String, TensorSpec)> = vec![
        (
            "encoder.positional_embedding".into(),
            spec(F32, &[sa, hp.n_audio_ctx]),
        ),
        ("encoder.conv1.weight".into(), spec(v, &[3, hp.n_mels, sa])),
        ("encoder.conv1.bias".into(), spec(F32, &[1, sa])),
        ("encoder.conv2.weight".into(), spec(v, &[3, sa, sa])),
        ("encoder.conv2.bias".into(), spec(F32, &[1, sa])),
        ("encoder.ln_post.weight".into(), spec(F32, &[sa])),
        ("encoder.ln_post.bias".into(), spec(F32, &[sa])),
    ];
    let block = |prefix: &str, s: i32, out: &mut Vec<(String, TensorSpec)>| {
        let t = |n: &str, sp: TensorSpec| (format!("{prefix}.{n}"), sp);
        out.extend([
            t("mlp_ln.weight", spec(F32, &[s])),
            t("mlp_ln.bias", spec(F32, &[s])),
            t("mlp.0.weight", spec(w, &[s, 4 * s])),
            t("mlp.0.bias", spec(F32, &[4 * s])),
            t("mlp.2.weight", spec(w, &[4 * s, s])),
            t("mlp.2.bias", spec(F32, &[s])),
            t("attn_ln.weight", spec(F32, &[s])),
            t("attn_ln.bias", spec(F32, &[s])),
            t("attn.query.weight", spec(w, &[s, s])),
            t("attn.query.bias", spec(F32, &[s])),
            t("attn.key.weight", spec(w, &[s, s])),
            t("attn.value.weight", spec(w, &[s, s])),
            t("attn.value.bias", spec(F32, &[s])),
            t("attn.out.weight", spec(w, &[s, s])),
            t("attn.out.bias", spec(F32, &[s])),
        ]);
    };
    for i in 0..hp.n_audio_layer {
        block(&format!("encoder.blocks.{i}"), sa, &mut out);
    }
    out.extend([
        (
            "decoder.positional_embedding".into(),
            spec(F32, &[st, hp.n_text_ctx]),
        ),
        (
            "decoder.token_embedding.weight".into(),
            spec(w, &[st, hp.n_vocab]),
        ),
        ("decoder.ln.weight".into(), spec(F32, &[st])),
        ("decoder.ln.bias".into(), spec(F32, &[st])),
    ]);
    for i in 0..hp.n_text_layer {
        let prefix = format!("decoder.blocks.{i}");
        block(&prefix, st, &mut out);
        let t = |n: &str, sp: TensorSpec| (format!("{prefix}.{n}"), sp);
        out.extend([
            t("cross_attn_ln.weight", spec(F32, &[st])),
            t("cross_attn_ln.bias", spec(F32, &[st])),
            t("cross_attn.query.weight", spec(w, &[st, st])),
            t("cross_attn.query.bias", spec(F32, &[st])),
            t("cross_attn.key.weight", spec(w, &[st, st])),
            t("cross_attn.value.weight", spec(w, &[st, st])),
            t("cross_attn.value.bias", spec(F32, &[st])),
            t("cross_attn.out.weight", spec(w, &[st, st])),
            t("cross_attn.out.bias", spec(F32, &[st])),
        ]);
    }
    out
}

/// What a checked model file holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelInfo {
    pub hparams: HParams,
    pub weight_type: &'static str,
    pub tensors: usize,
    pub file_bytes: u64,
}

fn check_hparams(hp: &HParams) -> Result<GgmlType, FormatError> {
    let range = |name, value: i32, ok: bool, expected| {
        if ok {
            Ok(())
        } else {
            Err(FormatError::BadHparam {
                name,
                value: i64::from(value),
                expected,
            })
        }
    };
    range(
        "n_vocab",
        hp.n_vocab,
        VOCAB_SIZES.contains(&hp.n_vocab),
        "51864, 51865 or 51866",
    )?;
    range(
        "n_audio_ctx",
        hp.n_audio_ctx,
        (1..=MAX_AUDIO_CTX).contains(&hp.n_audio_ctx),
        "1..=1500",
    )?;
    range(
        "n_text_ctx",
        hp.n_text_ctx,
        (1..=MAX_TEXT_CTX).contains(&hp.n_text_ctx),
        "1..=448",
    )?;
    for (name, v) in [
        ("n_audio_state", hp.n_audio_state),
        ("n_text_state", hp.n_text_state),
    ] {
        range(name, v, (1..=8192).contains(&v), "1..=8192")?;
    }
    for (name, v) in [
        ("n_audio_layer", hp.n_audio_layer),
        ("n_text_layer", hp.n_text_layer),
    ] {
        range(name, v, (1..=64).contains(&v), "1..=64")?;
    }
    // whisper.cpp only `assert`s this, which release builds compile out.
    range(
        "n_text_state",
        hp.n_text_state,
        hp.n_text_state == hp.n_audio_state,
        "equal to n_audio_state",
    )?;
    for (name, v, s) in [
        ("n_audio_head", hp.n_audio_head, hp.n_audio_state),
        ("n_text_head", hp.n_text_head, hp.n_text_state),
    ] {
        range(name, v, v >= 1 && s % v == 0, "a divisor of the state size")?;
    }
    range(
        "n_mels",
        hp.n_mels,
        hp.n_mels == 80 || hp.n_mels == 128,
        "80 or 128",
    )?;
    if hp.ftype < 0 {
        return Err(FormatError::UnsupportedFtype { ftype: hp.ftype });
    }
    let w = hp
        .weight_type()
        .ok_or(FormatError::UnsupportedFtype { ftype: hp.ftype })?;
    // Quantized rows must be whole blocks.
    if w.block > 1 && !(hp.n_audio_state as u64).is_multiple_of(w.block) {
        return Err(FormatError::BadHparam {
            name: "n_audio_state",
            value: i64::from(hp.n_audio_state),
            expected: "a multiple of the quantization block",
        });
    }
    Ok(w)
}

/// A reader that knows where it is and how long the file is, so every
/// short read names what was being read.
struct Cursor<R> {
    inner: R,
    pos: u64,
    len: u64,
}

impl<R: Read + Seek> Cursor<R> {
    fn bytes<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], CheckError> {
        let mut buf = [0u8; N];
        self.fill(&mut buf, what)?;
        Ok(buf)
    }

    fn fill(&mut self, buf: &mut [u8], what: &'static str) -> Result<(), CheckError> {
        if self.pos + buf.len() as u64 > self.len {
            return Err(FormatError::Truncated {
                offset: self.len,
                what,
            }
            .into());
        }
        self.inner.read_exact(buf).map_err(CheckError::Io)?;
        self.pos += buf.len() as u64;
        Ok(())
    }

    fn i32(&mut self, what: &'static str) -> Result<i32, CheckError> {
        Ok(i32::from_le_bytes(self.bytes(what)?))
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, CheckError> {
        Ok(u32::from_le_bytes(self.bytes(what)?))
    }

    fn skip(&mut self, n: u64, what: &'static str) -> Result<(), CheckError> {
        if self.pos.saturating_add(n) > self.len {
            return Err(FormatError::Truncated {
                offset: self.len,
                what,
            }
            .into());
        }
        let step = i64::try_from(n).map_err(|_| FormatError::Truncated {
            offset: self.len,
            what,
        })?;
        self.inner
            .seek(std::io::SeekFrom::Current(step))
            .map_err(CheckError::Io)?;
        self.pos += n;
        Ok(())
    }
}

/// Checking failed: the file is malformed, or reading it failed.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error(transparent)]
    Format(#[from] FormatError),
    #[error("read error: {0}")]
    Io(#[source] std::io::Error),
}

/// Walks the whole file at `path`; see the module docs.
pub fn check_file(path: &Path) -> Result<ModelInfo, CheckError> {
    let file = std::fs::File::open(path).map_err(CheckError::Io)?;
    let len = file.metadata().map_err(CheckError::Io)?.len();
    check(BufReader::with_capacity(64 * 1024, file), len)
}

/// [`check_file`] over any seekable reader of `len` bytes.
pub fn check<R: Read + Seek>(inner: R, len: u64) -> Result<ModelInfo, CheckError> {
    if len == 0 {
        return Err(FormatError::Empty.into());
    }
    let mut r = Cursor { inner, pos: 0, len };
    let magic = r.u32("the magic")?;
    if magic == GGUF_MAGIC {
        return Err(FormatError::Gguf.into());
    }
    if magic != GGML_MAGIC {
        return Err(FormatError::BadMagic { found: magic }.into());
    }
    let mut f = [0i32; 11];
    for v in &mut f {
        *v = r.i32("the hyperparameters")?;
    }
    let hp = HParams {
        n_vocab: f[0],
        n_audio_ctx: f[1],
        n_audio_state: f[2],
        n_audio_head: f[3],
        n_audio_layer: f[4],
        n_text_ctx: f[5],
        n_text_state: f[6],
        n_text_head: f[7],
        n_text_layer: f[8],
        n_mels: f[9],
        ftype: f[10],
    };
    let w = check_hparams(&hp)?;

    let n_mel = r.i32("the mel filters")?;
    let n_fft = r.i32("the mel filters")?;
    if n_mel != hp.n_mels || n_fft != N_FFT_BINS {
        return Err(FormatError::BadMelFilters {
            n_mel,
            n_fft,
            expected_mels: hp.n_mels,
        }
        .into());
    }
    r.skip(
        u64::from(n_mel as u32) * u64::from(n_fft as u32) * 4,
        "the mel filters",
    )?;

    let count = r.i32("the vocabulary size")?;
    if count < 0 || count > hp.n_vocab {
        return Err(FormatError::BadVocabSize {
            count: i64::from(count),
            n_vocab: hp.n_vocab,
        }
        .into());
    }
    for index in 0..count as usize {
        let len = r.u32("the vocabulary")?;
        if len > MAX_TOKEN_BYTES {
            return Err(FormatError::TokenTooLong { index, len }.into());
        }
        r.skip(u64::from(len), "the vocabulary")?;
    }

    let expected: HashMap<String, TensorSpec> = expected_tensors(&hp, w).into_iter().collect();
    let mut seen: HashSet<String> = HashSet::with_capacity(expected.len());
    // The loader stops at the first header it cannot read whole, so up to
    // 11 stray bytes would be ignored by it; they are still not a model.
    while r.pos < r.len {
        let at = r.pos;
        if r.len - at < 12 {
            // Too short for a header: stray bytes after a complete model,
            // or a model cut off.
            if seen.len() == expected.len() {
                return Err(FormatError::TrailingBytes { extra: r.len - at }.into());
            }
            return Err(FormatError::Truncated {
                offset: r.len,
                what: "a tensor header",
            }
            .into());
        }
        let n_dims = r.i32("a tensor header")?;
        let name_len = r.i32("a tensor header")?;
        let ttype = r.i32("a tensor header")?;
        if !(1..=4).contains(&n_dims) {
            return Err(bad_header(at, "n_dims", n_dims));
        }
        if !(1..=MAX_NAME_BYTES).contains(&name_len) {
            return Err(bad_header(at, "name length", name_len));
        }
        let mut ne = [1i64; 4];
        for slot in ne.iter_mut().take(n_dims as usize) {
            let d = r.i32("a tensor shape")?;
            if d < 1 {
                return Err(bad_header(at, "dimension", d));
            }
            *slot = i64::from(d);
        }
        let mut name = vec![0u8; name_len as usize];
        r.fill(&mut name, "a tensor name")?;
        let name = String::from_utf8_lossy(&name).into_owned();
        let Some(want) = expected.get(&name) else {
            return Err(FormatError::UnknownTensor { name }.into());
        };
        if !seen.insert(name.clone()) {
            return Err(FormatError::DuplicateTensor { name }.into());
        }
        if ne != want.ne {
            return Err(FormatError::TensorShape {
                name,
                found: ne,
                expected: want.ne,
            }
            .into());
        }
        if u32::try_from(ttype).ok() != Some(want.ty.id) {
            return Err(FormatError::TensorType {
                name,
                found: ttype as u32,
                expected: want.ty.name,
            }
            .into());
        }
        r.skip(want.bytes(), "tensor data")?;
    }
    if seen.len() != expected.len() {
        let example = expected
            .keys()
            .find(|k| !seen.contains(*k))
            .cloned()
            .unwrap_or_default();
        return Err(FormatError::MissingTensors {
            missing: expected.len() - seen.len(),
            total: expected.len(),
            example,
        }
        .into());
    }
    Ok(ModelInfo {
        hparams: hp,
        weight_type: w.name,
        tensors: seen.len(),
        file_bytes: len,
    })
}

fn bad_header(offset: u64, what: &'static str, value: i32) -> CheckError {
    FormatError::BadTensorHeader {
        offset,
        what,
        value: i64::from(value),
    }
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tensor_bytes_follow_block_geometry() {
        let t = spec(Q5_0, &[384, 1536]);
        assert_eq!(t.bytes(), 384 / 32 * 22 * 1536);
        assert_eq!(spec(F32, &[1, 384]).n_dims(), 2);
        assert_eq!(spec(F32, &[384]).n_dims(), 1);
        assert_eq!(spec(F16, &[3, 80, 384]).n_dims(), 3);
    }

    #[test]
    fn tensor_count_matches_the_loader_formula() {
        let hp = HParams {
            n_vocab: 51865,
            n_audio_ctx: 1500,
            n_audio_state: 384,
            n_audio_head: 6,
            n_audio_layer: 4,
            n_text_ctx: 448,
            n_text_state: 384,
            n_text_head: 6,
            n_text_layer: 4,
            n_mels: 80,
            ftype: 1,
        };
        // 7 encoder tensors + 15 per encoder block + 4 decoder + 24 per
        // decoder block (whisper.cpp sizes its context from the same sums).
        assert_eq!(expected_tensors(&hp, F16).len(), 7 + 15 * 4 + 4 + 24 * 4);
        assert_eq!(check_hparams(&hp), Ok(F16));
        let q = HParams { ftype: 2008, ..hp };
        assert_eq!(check_hparams(&q), Ok(Q5_0));
        let bad = HParams { ftype: 4, ..hp };
        assert_eq!(
            check_hparams(&bad),
            Err(FormatError::UnsupportedFtype { ftype: 4 })
        );
    }
}
