//! The whisper engine through the real whisper.cpp, on a tiny model file
//! the tests generate (no real weights can be downloaded here): loading,
//! inference on real audio, session behaviour, and a clean error for every
//! kind of missing or corrupt model file.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use url::Url;
use voxgate_stt_tts::stt::{SttConfig, SttEngine, SttEvent, SttSession, Transcript};
use voxgate_stt_tts::whisper::ggml::{FormatError, HParams};
use voxgate_stt_tts::whisper::testmodel::TinyModel;
use voxgate_stt_tts::whisper::{WhisperConfig, WhisperError, WhisperModel, WhisperStt};
use voxgate_stt_tts::worker::{serve_worker_until, Engines, PoolConfig, WorkerPool, WorkerToken};
use voxgate_stt_tts::{EngineError, ErrorCode};

/// A directory of its own under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "voxgate-whisper-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        Self(dir)
    }

    fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, bytes).expect("write");
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Small and quick: no temperature fallback, few tokens per segment.
fn test_config() -> WhisperConfig {
    WhisperConfig {
        threads: 2,
        max_concurrent_decodes: 1,
        max_segment_ms: 30_000,
        best_of: 1,
        temperature_fallback: false,
        max_tokens_per_segment: 24,
    }
}

fn load_tiny(dir: &TempDir, config: WhisperConfig) -> Arc<WhisperModel> {
    let path = dir.file("ggml-tiny-test.bin", &TinyModel::default().to_bytes());
    Arc::new(WhisperModel::load(&path, config).expect("the generated model loads"))
}

/// `ms` of a 440 Hz tone with a little deterministic noise, at 16 kHz.
fn speechish(ms: u64) -> Vec<i16> {
    let n = (16 * ms) as usize;
    let mut x: u32 = 12345;
    (0..n)
        .map(|i| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            let noise = ((x >> 16) as i32 % 600 - 300) as f32;
            let tone = 6000.0 * (i as f32 * 440.0 * std::f32::consts::TAU / 16000.0).sin();
            (tone + noise) as i16
        })
        .collect()
}

async fn push_all(session: &SttSession, pcm: &[i16]) {
    for frame in pcm.chunks(320) {
        session.push_audio(frame).await.expect("push");
    }
}

async fn next_final(session: &mut SttSession) -> Transcript {
    let event = tokio::time::timeout(Duration::from_secs(60), session.next_event())
        .await
        .expect("an event in time")
        .expect("the stream is open")
        .expect("not an error");
    match event {
        SttEvent::Final(t) => t,
        other => panic!("expected a final, got {other:?}"),
    }
}

async fn stream_ends(session: &mut SttSession) {
    let end = tokio::time::timeout(Duration::from_secs(10), session.next_event())
        .await
        .expect("the stream ends in time");
    assert!(end.is_none(), "nothing after the last final: {end:?}");
}

fn assert_sane(t: &Transcript, start_ms: u64, end_ms: u64) {
    assert_eq!((t.start_ms, t.end_ms), (start_ms, end_ms), "{t:?}");
    assert!((0.0..=1.0).contains(&t.confidence), "{t:?}");
    for w in &t.words {
        assert!(
            start_ms <= w.start_ms && w.start_ms <= w.end_ms && w.end_ms <= end_ms,
            "{w:?}"
        );
        assert!((0.0..=1.0).contains(&w.confidence), "{w:?}");
        assert!(!w.text.is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tiny_model_loads_and_transcribes_a_second_of_audio() {
    let dir = TempDir::new();
    let model = load_tiny(&dir, test_config());
    let info = model.info();
    assert_eq!(info.weight_type, "f16");
    assert!(info.hparams.multilingual());

    let stt = WhisperStt::new(model);
    let mut session = stt.open(SttConfig::default()).await.expect("open");
    push_all(&session, &speechish(1000)).await;
    session.end_of_stream().await.expect("end");
    let t = next_final(&mut session).await;
    // Random weights: the words are nonsense, but the pipeline ran whisper
    // end to end and the result is well formed.
    assert_sane(&t, 0, 1000);
    stream_ends(&mut session).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_utterance_longer_than_the_window_is_cut_into_finals() {
    let dir = TempDir::new();
    let model = load_tiny(
        &dir,
        WhisperConfig {
            max_segment_ms: 1000,
            ..test_config()
        },
    );
    let stt = WhisperStt::new(model);
    let mut session = stt.open(SttConfig::default()).await.expect("open");
    push_all(&session, &speechish(2500)).await;
    session.end_of_stream().await.expect("end");
    assert_sane(&next_final(&mut session).await, 0, 1000);
    assert_sane(&next_final(&mut session).await, 1000, 2000);
    assert_sane(&next_final(&mut session).await, 2000, 2500);
    stream_ends(&mut session).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_audio_and_very_short_audio_give_an_empty_final() {
    let dir = TempDir::new();
    let stt = WhisperStt::new(load_tiny(&dir, test_config()));

    let mut empty = stt.open(SttConfig::default()).await.expect("open");
    empty.end_of_stream().await.expect("end");
    let t = next_final(&mut empty).await;
    assert_eq!((t.text.as_str(), t.start_ms, t.end_ms), ("", 0, 0));
    assert_eq!(t.confidence, 0.0);
    stream_ends(&mut empty).await;

    // Under whisper's 100 ms minimum: decoded, nothing recognised.
    let mut short = stt.open(SttConfig::default()).await.expect("open");
    push_all(&short, &speechish(60)).await;
    short.end_of_stream().await.expect("end");
    let t = next_final(&mut short).await;
    assert_eq!((t.text.as_str(), t.start_ms, t.end_ms), ("", 0, 60));
    stream_ends(&mut short).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_session_configs_are_refused_at_open() {
    let dir = TempDir::new();
    let stt = WhisperStt::new(load_tiny(&dir, test_config()));

    let e = stt
        .open(SttConfig {
            sample_rate: 8000,
            language: "en-US".into(),
        })
        .await
        .expect_err("8 kHz is refused");
    assert_eq!(e.code(), ErrorCode::InvalidRequest, "{e}");
    assert!(!e.retryable());
    assert!(e.to_string().contains("16000"), "{e}");

    for tag in ["xx-YY", "en\0", "toolong"] {
        let e = stt
            .open(SttConfig {
                sample_rate: 16000,
                language: tag.into(),
            })
            .await
            .expect_err("unknown language");
        assert!(
            matches!(e, EngineError::Stt(WhisperError::UnknownLanguage { .. })),
            "{tag:?}: {e}"
        );
    }
    // Multilingual model: German and auto-detection are both fine.
    for tag in ["de-DE", "auto", ""] {
        stt.open(SttConfig {
            sample_rate: 16000,
            language: tag.into(),
        })
        .await
        .expect(tag);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_english_only_model_takes_only_english() {
    let dir = TempDir::new();
    let mut tiny = TinyModel::default();
    tiny.hparams.n_vocab = 51864;
    let path = dir.file("ggml-tiny.en-test.bin", &tiny.to_bytes());
    let model = Arc::new(WhisperModel::load(&path, test_config()).expect("loads"));
    assert!(!model.info().hparams.multilingual());
    assert_eq!(model.language_for("en-GB").expect("en"), Some("en"));
    assert_eq!(model.language_for("auto").expect("auto"), Some("en"));
    assert!(matches!(
        model.language_for("fr-FR"),
        Err(WhisperError::EnglishOnlyModel { .. })
    ));
    let t = model
        .transcribe(&speechish(500), "en")
        .await
        .expect("decode");
    assert_sane(&t, 0, 500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_sessions_release_the_decoder_for_the_next() {
    let dir = TempDir::new();
    // One decoder state: a leaked permit or state would hang the next one.
    let stt = WhisperStt::new(load_tiny(&dir, test_config()));
    for _ in 0..3 {
        let session = stt.open(SttConfig::default()).await.expect("open");
        push_all(&session, &speechish(1000)).await;
        session.end_of_stream().await.expect("end");
        tokio::time::sleep(Duration::from_millis(5)).await;
        drop(session);
    }
    let mut session = stt.open(SttConfig::default()).await.expect("open");
    push_all(&session, &speechish(800)).await;
    session.end_of_stream().await.expect("end");
    assert_sane(&next_final(&mut session).await, 0, 800);

    // Two at once with one state: the second waits its turn, both finish.
    let mut a = stt.open(SttConfig::default()).await.expect("open a");
    let mut b = stt.open(SttConfig::default()).await.expect("open b");
    push_all(&a, &speechish(700)).await;
    push_all(&b, &speechish(900)).await;
    a.end_of_stream().await.expect("end a");
    b.end_of_stream().await.expect("end b");
    let (ta, tb) = tokio::join!(next_final(&mut a), next_final(&mut b));
    assert_sane(&ta, 0, 700);
    assert_sane(&tb, 0, 900);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whisper_serves_over_the_worker_protocol() {
    let dir = TempDir::new();
    let stt = WhisperStt::new(load_tiny(&dir, test_config()));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let stop = CancellationToken::new();
    let engines = Engines {
        stt: Some(Arc::new(stt)),
        tts: None,
        nlu: None,
    };
    tokio::spawn(serve_worker_until(
        listener,
        WorkerToken::new("t"),
        engines,
        stop.clone(),
    ));
    let url = Url::parse(&format!("ws://{addr}/v1/worker")).expect("url");
    let pool = WorkerPool::new(PoolConfig::new(vec![url], WorkerToken::new("t"))).expect("pool");
    let mut session = pool.open(SttConfig::default()).await.expect("open");
    push_all(&session, &speechish(1000)).await;
    session.end_of_stream().await.expect("end");
    assert_sane(&next_final(&mut session).await, 0, 1000);
    stop.cancel();
}

/// Loads `bytes` as a model and returns the format problem it must have.
fn corrupt(dir: &TempDir, name: &str, bytes: &[u8]) -> FormatError {
    let path = dir.file(name, bytes);
    match WhisperModel::load(&path, test_config()) {
        Err(WhisperError::ModelCorrupt { problem, path: p }) => {
            assert_eq!(p, path);
            problem
        }
        other => panic!("{name}: expected a corrupt-model error, got {other:?}"),
    }
}

fn with_i32(mut bytes: Vec<u8>, at: usize, v: i32) -> Vec<u8> {
    bytes[at..at + 4].copy_from_slice(&v.to_le_bytes());
    bytes
}

/// Where the first tensor header starts in a generated model.
fn first_tensor_offset(bytes: &[u8]) -> usize {
    let mut at = HParams::END + 8 + 80 * 201 * 4;
    let count = i32::from_le_bytes(bytes[at..at + 4].try_into().expect("4")) as usize;
    at += 4;
    for _ in 0..count {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4")) as usize;
        at += 4 + len;
    }
    at
}

#[test]
fn missing_unreadable_and_corrupt_models_are_clean_errors_at_load() {
    let dir = TempDir::new();
    let good = TinyModel::default().to_bytes();

    let missing = dir.0.join("nope.bin");
    let e = WhisperModel::load(&missing, test_config()).expect_err("missing");
    assert!(
        matches!(&e, WhisperError::ModelMissing { path } if path == &missing),
        "{e}"
    );
    assert!(
        e.to_string().contains("voxgate models fetch whisper"),
        "{e}"
    );

    let e = WhisperModel::load(&dir.0, test_config()).expect_err("a directory");
    assert!(matches!(e, WhisperError::ModelUnreadable { .. }), "{e}");

    assert_eq!(corrupt(&dir, "empty.bin", &[]), FormatError::Empty);
    assert!(matches!(
        corrupt(&dir, "magic.bin", &with_i32(good.clone(), 0, 0x1234_5678)),
        FormatError::BadMagic { found: 0x1234_5678 }
    ));
    let mut gguf = good.clone();
    gguf[..4].copy_from_slice(b"GGUF");
    assert_eq!(corrupt(&dir, "gguf.bin", &gguf), FormatError::Gguf);
    assert!(matches!(
        corrupt(&dir, "html.bin", b"<!DOCTYPE html><html>Not Found</html>"),
        FormatError::BadMagic { .. }
    ));

    // Truncated: in the header, the filters, the vocabulary, a tensor
    // header, and inside the last tensor's data (which whisper.cpp itself
    // would load as garbage).
    let tensors_at = first_tensor_offset(&good);
    for (what, len) in [
        ("hparams", 20),
        ("filters", HParams::END + 100),
        ("vocab", tensors_at - 3),
        ("tensor header", tensors_at + 6),
        ("last tensor", good.len() - 1),
    ] {
        assert!(
            matches!(
                corrupt(&dir, &format!("cut-{len}.bin"), &good[..len]),
                FormatError::Truncated { .. }
            ),
            "truncated in the {what}"
        );
    }

    // Hyperparameters whisper.cpp would abort or misbehave on.
    assert!(matches!(
        corrupt(
            &dir,
            "state.bin",
            &with_i32(good.clone(), HParams::OFFSET_N_AUDIO_STATE, 24)
        ),
        FormatError::BadHparam {
            name: "n_text_state",
            ..
        }
    ));
    assert!(matches!(
        corrupt(
            &dir,
            "heads.bin",
            &with_i32(good.clone(), HParams::OFFSET_N_TEXT_HEAD, 3)
        ),
        FormatError::BadHparam {
            name: "n_text_head",
            ..
        }
    ));
    assert!(matches!(
        corrupt(
            &dir,
            "vocab.bin",
            &with_i32(good.clone(), HParams::OFFSET_N_VOCAB, 60000)
        ),
        FormatError::BadHparam {
            name: "n_vocab",
            ..
        }
    ));
    for ftype in [4, 99, -1, 1005] {
        assert!(
            matches!(
                corrupt(
                    &dir,
                    &format!("ftype{ftype}.bin"),
                    &with_i32(good.clone(), HParams::OFFSET_FTYPE, ftype)
                ),
                FormatError::UnsupportedFtype { .. }
            ),
            "ftype {ftype}"
        );
    }

    // A vocabulary count larger than the model's, and a token claiming 2 GB.
    let vocab_at = HParams::END + 8 + 80 * 201 * 4;
    assert!(matches!(
        corrupt(
            &dir,
            "tokens.bin",
            &with_i32(good.clone(), vocab_at, 1 << 30)
        ),
        FormatError::BadVocabSize { .. }
    ));
    assert!(matches!(
        corrupt(
            &dir,
            "token.bin",
            &with_i32(good.clone(), vocab_at + 4, i32::MAX)
        ),
        FormatError::TokenTooLong { index: 0, .. }
    ));

    // Tensors: a renamed one, a wrong type, a wrong shape, none at all,
    // and bytes after the last.
    let mut renamed = good.clone();
    let name_at = tensors_at + 12 + 2 * 4;
    renamed[name_at] = b'X';
    assert!(matches!(
        corrupt(&dir, "renamed.bin", &renamed),
        FormatError::UnknownTensor { .. }
    ));
    assert!(matches!(
        corrupt(
            &dir,
            "ttype.bin",
            &with_i32(good.clone(), tensors_at + 8, 1)
        ),
        FormatError::TensorType { .. }
    ));
    assert!(matches!(
        corrupt(
            &dir,
            "shape.bin",
            &with_i32(good.clone(), tensors_at + 12, 17)
        ),
        FormatError::TensorShape { .. }
    ));
    assert!(matches!(
        corrupt(&dir, "dims.bin", &with_i32(good.clone(), tensors_at, 9)),
        FormatError::BadTensorHeader { what: "n_dims", .. }
    ));
    assert!(matches!(
        corrupt(&dir, "no-tensors.bin", &good[..tensors_at]),
        FormatError::MissingTensors { .. }
    ));
    let mut trailing = good.clone();
    trailing.extend_from_slice(&[0u8; 5]);
    assert_eq!(
        corrupt(&dir, "trailing.bin", &trailing),
        FormatError::TrailingBytes { extra: 5 }
    );
    trailing.extend_from_slice(&[0u8; 64]);
    assert!(matches!(
        corrupt(&dir, "trailing-zeros.bin", &trailing),
        FormatError::BadTensorHeader { what: "n_dims", .. }
    ));

    // And the untouched file still loads: the checks are not just refusing
    // everything.
    let ok = dir.file("good.bin", &good);
    WhisperModel::load(&ok, test_config()).expect("the good file loads");
}

/// A one-route HTTP/1.1 server on 127.0.0.1: `GET /<name>` answers `body`,
/// anything else 404. Returns its base URL.
async fn serve_file(name: &'static str, body: Vec<u8>) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let body = Arc::new(body);
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let body = body.clone();
            tokio::spawn(async move {
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let line = String::from_utf8_lossy(&req);
                let wanted = format!("GET /{name} ");
                let (head, payload): (String, &[u8]) = if line.starts_with(&wanted) {
                    (
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n",
                            body.len()
                        ),
                        &body[..],
                    )
                } else {
                    (
                        "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                            .to_owned(),
                        &[],
                    )
                };
                let _ = sock.write_all(head.as_bytes()).await;
                // Several writes, so the client sees a streamed body.
                for part in payload.chunks(64 * 1024) {
                    if sock.write_all(part).await.is_err() {
                        return;
                    }
                }
                let _ = sock.shutdown().await;
            });
        }
    });
    format!("http://{addr}")
}

mod fetch {
    use super::*;
    use voxgate_stt_tts::whisper::fetch::{fetch, sha256_hex, FetchError, FetchRequest};

    fn request(dir: &TempDir, size: &str, base_url: &str, sha256: Option<String>) -> FetchRequest {
        FetchRequest {
            size: size.into(),
            dir: dir.0.join("models/whisper"),
            base_url: base_url.into(),
            force: false,
            sha256,
        }
    }

    fn leftovers(dir: &TempDir) -> Vec<String> {
        std::fs::read_dir(dir.0.join("models/whisper"))
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    #[tokio::test]
    async fn a_matching_download_is_verified_and_renamed_into_place() {
        let dir = TempDir::new();
        let body = TinyModel::default().to_bytes();
        let digest = sha256_hex(&body);
        let base = serve_file("ggml-custom-tiny.bin", body.clone()).await;
        let req = request(&dir, "custom-tiny", &base, Some(digest.to_uppercase()));
        let mut calls = 0;
        let got = fetch(&req, |_, total| {
            calls += 1;
            assert_eq!(total, Some(body.len() as u64));
        })
        .await
        .expect("fetched");
        assert!(!got.already_present);
        assert_eq!(got.sha256, digest);
        assert_eq!(got.bytes, body.len() as u64);
        assert!(calls > 1, "progress is reported while streaming");
        assert_eq!(std::fs::read(&got.path).expect("read"), body);
        assert_eq!(leftovers(&dir), vec!["ggml-custom-tiny.bin".to_owned()]);
        // The fetched file is a model the engine loads.
        WhisperModel::load(&got.path, test_config()).expect("loads");

        let again = fetch(&req, |_, _| {}).await.expect("present");
        assert!(again.already_present);
    }

    #[tokio::test]
    async fn a_mismatch_deletes_the_download() {
        let dir = TempDir::new();
        let body = TinyModel::default().to_bytes();
        let base = serve_file("ggml-custom-tiny.bin", body).await;
        let wrong = "0".repeat(64);
        let e = fetch(&request(&dir, "custom-tiny", &base, Some(wrong)), |_, _| {})
            .await
            .expect_err("mismatch");
        assert!(matches!(e, FetchError::HashMismatch { .. }), "{e}");
        assert!(e.to_string().contains("SHA-256 mismatch"), "{e}");
        assert!(leftovers(&dir).is_empty(), "{:?}", leftovers(&dir));
    }

    #[tokio::test]
    async fn a_known_size_is_checked_against_the_built_in_table() {
        let dir = TempDir::new();
        // A mirror serving something else under the official name.
        let base = serve_file("ggml-tiny.bin", TinyModel::default().to_bytes()).await;
        let e = fetch(&request(&dir, "tiny", &base, None), |_, _| {})
            .await
            .expect_err("not the real tiny model");
        match e {
            FetchError::HashMismatch { expected, .. } => assert_eq!(
                expected,
                "be07e048e1e599ad46341c8d2a135645097a538221678b7acdd1b1919c6e1b21"
            ),
            other => panic!("{other}"),
        }
        assert!(leftovers(&dir).is_empty());

        let e = fetch(
            &request(&dir, "tiny", &base, Some("0".repeat(64))),
            |_, _| {},
        )
        .await
        .expect_err("no override for known sizes");
        assert!(matches!(e, FetchError::DigestOverride { .. }), "{e}");
    }

    #[tokio::test]
    async fn http_errors_and_bad_sizes_are_reported() {
        let dir = TempDir::new();
        let base = serve_file("ggml-other.bin", vec![1, 2, 3]).await;
        let e = fetch(&request(&dir, "base.en", &base, None), |_, _| {})
            .await
            .expect_err("404");
        assert!(
            matches!(e, FetchError::HttpStatus { status: 404, .. }),
            "{e}"
        );
        for size in ["huge", "../etc", ""] {
            let e = fetch(&request(&dir, size, &base, None), |_, _| {})
                .await
                .expect_err(size);
            assert!(matches!(e, FetchError::UnknownSize { .. }), "{size}: {e}");
        }
        let e = fetch(
            &request(&dir, "custom", &base, Some("xyz".into())),
            |_, _| {},
        )
        .await
        .expect_err("bad digest");
        assert!(matches!(e, FetchError::BadDigest), "{e}");
        assert!(leftovers(&dir).is_empty());
    }
}
