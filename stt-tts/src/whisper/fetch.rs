//! Downloading ggml whisper models from their official source, checked
//! against SHA-256 digests kept in this file.
//!
//! The file streams to `ggml-<size>.bin.part` next to its destination
//! while it is hashed; only a file whose digest matches is renamed into
//! place (an atomic rename in one directory), so a model path never holds
//! a partial or tampered file. A mismatch deletes the part file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

/// ggerganov's model repository on Hugging Face, the source whisper.cpp's
/// own download script uses.
pub const OFFICIAL_BASE_URL: &str = "https://huggingface.co/ggerganov/whisper.cpp/resolve/main";

/// The largest published model is 3.1 GB; anything much larger is not a
/// whisper model.
const MAX_BYTES: u64 = 4 << 30;

/// SHA-256 of each `ggml-<size>.bin`, as published by Hugging Face's LFS
/// details on the file pages of huggingface.co/ggerganov/whisper.cpp.
/// One exception: for `small` the official page was not found; the digest
/// is the one two copies of that repository publish for the same file
/// (macoron/whisper.cpp at the official commit 80da2d8, and
/// eaispart/whisper.cpp). A wrong digest can only make the download fail,
/// never accept a different file.
pub const KNOWN_MODELS: &[(&str, &str)] = &[
    (
        "tiny",
        "be07e048e1e599ad46341c8d2a135645097a538221678b7acdd1b1919c6e1b21",
    ),
    (
        "tiny.en",
        "921e4cf8686fdd993dcd081a5da5b6c365bfde1162e72b08d75ac75289920b1f",
    ),
    (
        "tiny-q5_1",
        "818710568da3ca15689e31a743197b520007872ff9576237bda97bd1b469c3d7",
    ),
    (
        "tiny.en-q8_0",
        "5bc2b3860aa151a4c6e7bb095e1fcce7cf12c7b020ca08dcec0c6d018bb7dd94",
    ),
    (
        "base",
        "60ed5bc3dd14eea856493d334349b405782ddcaf0028d4b5df4088345fba2efe",
    ),
    (
        "base.en",
        "a03779c86df3323075f5e796cb2ce5029f00ec8869eee3fdfb897afe36c6d002",
    ),
    (
        "base-q5_1",
        "422f1ae452ade6f30a004d7e5c6a43195e4433bc370bf23fac9cc591f01a8898",
    ),
    (
        "base.en-q5_1",
        "4baf70dd0d7c4247ba2b81fafd9c01005ac77c2f9ef064e00dcf195d0e2fdd2f",
    ),
    (
        "small",
        "1be3a9b2063867b937e64e2ec7483364a79917e157fa98c5d94b5c1fffea987b",
    ),
    (
        "small.en",
        "c6138d6d58ecc8322097e0f987c32f1be8bb0a18532a3f88f734d1bbf9c41e5d",
    ),
    (
        "small-q5_1",
        "ae85e4a935d7a567bd102fe55afc16bb595bdb618e11b2fc7591bc08120411bb",
    ),
    (
        "small.en-q5_1",
        "bfdff4894dcb76bbf647d56263ea2a96645423f1669176f4844a1bf8e478ad30",
    ),
    (
        "medium",
        "6c14d5adee5f86394037b4e4e8b59f1673b6cee10e3cf0b11bbdbee79c156208",
    ),
    (
        "medium.en",
        "cc37e93478338ec7700281a7ac30a10128929eb8f427dda2e865faa8f6da4356",
    ),
    (
        "large-v1",
        "7d99f41a10525d0206bddadd86760181fa920438b6b33237e3118ff6c83bb53d",
    ),
    (
        "large-v2",
        "9a423fe4d40c82774b6af34115b8b935f34152246eb19e80e376071d3f999487",
    ),
    (
        "large-v2-q5_0",
        "3a214837221e4530dbc1fe8d734f302af393eb30bd0ed046042ebf4baf70f6f2",
    ),
    (
        "large-v3",
        "64d182b440b98d5203c4f9bd541544d84c605196c4f7b845dfa11fb23594d1e2",
    ),
    (
        "large-v3-q5_0",
        "d75795ecff3f83b5faa89d1900604ad8c780abd5739fae406de19f23ecd98ad1",
    ),
    (
        "large-v3-turbo",
        "1fc70f774d38eb169993ac391eea357ef47c88757ef72ee5943879b7e8e2bc69",
    ),
    (
        "large-v3-turbo-q5_0",
        "394221709cd5ad1f40c46e6031ca61bce88931e6e088c188294c6d5a55ffa7e2",
    ),
];

/// The expected SHA-256 (hex) of `ggml-<size>.bin`.
pub fn known_sha256(size: &str) -> Option<&'static str> {
    KNOWN_MODELS
        .iter()
        .find(|(s, _)| *s == size)
        .map(|(_, h)| *h)
}

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Why a fetch failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("no known whisper model {size:?} (known sizes: {known}); for another file, give its SHA-256 with --sha256")]
    UnknownSize { size: String, known: String },
    #[error("{size} has a built-in SHA-256; --sha256 is only for files not in the table")]
    DigestOverride { size: String },
    #[error("--sha256 must be 64 hex digits")]
    BadDigest,
    #[error("bad download URL {url:?}")]
    BadUrl { url: String },
    #[error("downloading {url}: {source}")]
    Http {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{url} answered HTTP {status}")]
    HttpStatus { url: String, status: u16 },
    #[error("{url} sends more than {max} bytes; not a whisper model")]
    TooLarge { url: String, max: u64 },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "SHA-256 mismatch for {url}: expected {expected}, got {actual}; the download was deleted"
    )]
    HashMismatch {
        url: String,
        expected: String,
        actual: String,
    },
    #[error(
        "{path} exists but its SHA-256 is {actual}, not {expected}; remove it or pass --force"
    )]
    ExistingMismatch {
        path: PathBuf,
        expected: String,
        actual: String,
    },
}

/// What a fetch did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    pub path: PathBuf,
    pub bytes: u64,
    pub sha256: String,
    /// The file was already there with the right digest; nothing was
    /// downloaded.
    pub already_present: bool,
}

/// One download request.
#[derive(Debug, Clone)]
pub struct FetchRequest {
    pub size: String,
    /// The directory the file goes into (`<data_dir>/models/whisper`).
    pub dir: PathBuf,
    /// Where `ggml-<size>.bin` is fetched from: [`OFFICIAL_BASE_URL`] or a
    /// mirror (tests use a local server). The digest is checked either
    /// way.
    pub base_url: String,
    /// Download again even if a verified file is present.
    pub force: bool,
    /// The digest of a file that is not in [`KNOWN_MODELS`] (a fine-tuned
    /// model on a mirror). Refused for sizes in the table.
    pub sha256: Option<String>,
}

impl FetchRequest {
    /// The digest the download must have.
    pub fn expected_sha256(&self) -> Result<String, FetchError> {
        match (known_sha256(&self.size), &self.sha256) {
            (Some(_), Some(_)) => Err(FetchError::DigestOverride {
                size: self.size.clone(),
            }),
            (Some(known), None) => Ok(known.to_owned()),
            (None, Some(given)) => {
                let given = given.to_ascii_lowercase();
                if given.len() == 64 && given.bytes().all(|b| b.is_ascii_hexdigit()) {
                    Ok(given)
                } else {
                    Err(FetchError::BadDigest)
                }
            }
            (None, None) => Err(FetchError::UnknownSize {
                size: self.size.clone(),
                known: KNOWN_MODELS
                    .iter()
                    .map(|(s, _)| *s)
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> FetchError + '_ {
    move |source| FetchError::Io {
        path: path.to_owned(),
        source,
    }
}

async fn sha256_of_file(path: &Path) -> Result<(String, u64), FetchError> {
    use tokio::io::AsyncReadExt;
    let mut f = tokio::fs::File::open(path).await.map_err(io_err(path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = f.read(&mut buf).await.map_err(io_err(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok((hex::encode(hasher.finalize()), total))
}

/// Downloads and verifies `ggml-<size>.bin`; `progress` sees bytes so far
/// and the total when the server says it.
pub async fn fetch(
    req: &FetchRequest,
    mut progress: impl FnMut(u64, Option<u64>),
) -> Result<Fetched, FetchError> {
    let expected = req.expected_sha256()?;
    // The size becomes a file name: keep it to one plain path component.
    if req.size.is_empty()
        || !req
            .size
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        || req.size.starts_with('.')
    {
        return Err(FetchError::UnknownSize {
            size: req.size.clone(),
            known: "sizes are letters, digits, '.', '_' and '-'".into(),
        });
    }
    let file_name = format!("ggml-{}.bin", req.size);
    let dest = req.dir.join(&file_name);
    let part = req.dir.join(format!("{file_name}.part"));

    if !req.force && tokio::fs::try_exists(&dest).await.map_err(io_err(&dest))? {
        let (actual, bytes) = sha256_of_file(&dest).await?;
        if actual == expected {
            return Ok(Fetched {
                path: dest,
                bytes,
                sha256: actual,
                already_present: true,
            });
        }
        return Err(FetchError::ExistingMismatch {
            path: dest,
            expected,
            actual,
        });
    }

    let url = format!("{}/{file_name}", req.base_url.trim_end_matches('/'));
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        return Err(FetchError::BadUrl { url });
    }
    tokio::fs::create_dir_all(&req.dir)
        .await
        .map_err(io_err(&req.dir))?;

    let http = |source| FetchError::Http {
        url: url.clone(),
        source,
    };
    // reqwest is built without a default TLS provider and panics without one.
    voxgate_gateway::crypto::install_crypto_provider();
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(30))
        .read_timeout(Duration::from_secs(60))
        .user_agent(concat!("voxgate/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(http)?;
    let mut resp = client.get(&url).send().await.map_err(http)?;
    if !resp.status().is_success() {
        return Err(FetchError::HttpStatus {
            url,
            status: resp.status().as_u16(),
        });
    }
    let total = resp.content_length();
    if total.is_some_and(|t| t > MAX_BYTES) {
        return Err(FetchError::TooLarge {
            url,
            max: MAX_BYTES,
        });
    }

    let mut out = tokio::fs::File::create(&part)
        .await
        .map_err(io_err(&part))?;
    let mut hasher = Sha256::new();
    let mut bytes = 0u64;
    let streamed: Result<(), FetchError> = async {
        while let Some(chunk) = resp.chunk().await.map_err(http)? {
            bytes += chunk.len() as u64;
            if bytes > MAX_BYTES {
                return Err(FetchError::TooLarge {
                    url: url.clone(),
                    max: MAX_BYTES,
                });
            }
            hasher.update(&chunk);
            out.write_all(&chunk).await.map_err(io_err(&part))?;
            progress(bytes, total);
        }
        out.flush().await.map_err(io_err(&part))?;
        out.sync_all().await.map_err(io_err(&part))?;
        Ok(())
    }
    .await;
    drop(out);
    if let Err(e) = streamed {
        let _ = tokio::fs::remove_file(&part).await;
        return Err(e);
    }
    let actual = hex::encode(hasher.finalize());
    if actual != expected {
        let _ = tokio::fs::remove_file(&part).await;
        return Err(FetchError::HashMismatch {
            url,
            expected,
            actual,
        });
    }
    tokio::fs::rename(&part, &dest)
        .await
        .map_err(io_err(&dest))?;
    // Make the rename itself durable; failure here only risks losing the
    // (verified) file on a crash, so it is not an error.
    if let Ok(dir) = tokio::fs::File::open(&req.dir).await {
        let _ = dir.sync_all().await;
    }
    Ok(Fetched {
        path: dest,
        bytes,
        sha256: actual,
        already_present: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_table_is_well_formed() {
        let mut seen = std::collections::HashSet::new();
        for (size, hash) in KNOWN_MODELS {
            assert!(seen.insert(*size), "{size} twice");
            assert_eq!(hash.len(), 64, "{size}");
            assert!(hash
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        }
        assert_eq!(known_sha256("base.en").map(str::len), Some(64));
        assert_eq!(known_sha256("huge"), None);
    }
}
