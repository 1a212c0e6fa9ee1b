//! `voxgate models fetch whisper <size>`, and the whisper flags of
//! `voxgate worker`.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, Subcommand, ValueEnum};
use voxgate_gateway::config::{self, ConfigFlags};
use voxgate_stt_tts::whisper::fetch::{self, FetchError, FetchRequest};
use voxgate_stt_tts::whisper::{self, WhisperConfig, WhisperStt};

use crate::exit;

#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// Download a model into <data_dir>/models/<family>/ from its official
    /// source and verify its SHA-256; a mismatch deletes the file.
    Fetch(FetchArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ModelFamily {
    /// ggml whisper models (ggml-<size>.bin) for the local STT engine.
    Whisper,
}

#[derive(Debug, Args)]
pub struct FetchArgs {
    pub family: ModelFamily,
    /// tiny, tiny.en, base, base.en, small, small.en, medium, medium.en,
    /// large-v1, large-v2, large-v3, large-v3-turbo, or a quantized
    /// variant such as base.en-q5_1.
    pub size: String,
    /// Download from this base URL instead of the official repository (a
    /// mirror); the SHA-256 is checked all the same.
    #[arg(long, value_name = "URL", default_value = fetch::OFFICIAL_BASE_URL)]
    pub from: String,
    /// The SHA-256 of a file that is not in voxgate's table (for example a
    /// fine-tuned model on a mirror).
    #[arg(long, value_name = "HEX")]
    pub sha256: Option<String>,
    /// Download again even if a verified copy is present.
    #[arg(long)]
    pub force: bool,
    /// TOML config file whose data_dir to use [env: VOXGATE_CONFIG].
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// data_dir (overrides the config file).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<String>,
}

/// The local whisper engine behind `voxgate worker --engines stt`.
#[derive(Debug, Args)]
pub struct WhisperArgs {
    /// The ggml whisper model file for --engines stt (see `voxgate models
    /// fetch whisper`).
    #[arg(long, value_name = "PATH", env = whisper::MODEL_ENV)]
    pub whisper_model: Option<PathBuf>,
    /// whisper.cpp threads per decode (default: up to 4).
    #[arg(long, value_name = "N")]
    pub whisper_threads: Option<usize>,
    /// Decodes that may run at once, each with its own decoder state
    /// (default: cores / threads).
    #[arg(long, value_name = "N")]
    pub whisper_decodes: Option<usize>,
}

impl WhisperArgs {
    /// Loads the model, before the worker binds its socket. Errors are
    /// printed; the exit code comes back.
    pub async fn load(&self) -> Result<Arc<WhisperStt>, i32> {
        let Some(path) = self.whisper_model.clone() else {
            eprintln!(
                "voxgate: --engines stt needs --whisper-model PATH (or {}); fetch one with `voxgate models fetch whisper {}`",
                whisper::MODEL_ENV,
                whisper::DEFAULT_SIZE
            );
            return Err(exit::USAGE);
        };
        let config = WhisperConfig::sized(self.whisper_threads, self.whisper_decodes);
        let loaded = tokio::task::spawn_blocking(move || WhisperStt::load(&path, config)).await;
        match loaded {
            Ok(Ok(stt)) => Ok(Arc::new(stt)),
            Ok(Err(e)) => {
                eprintln!("voxgate: {e}");
                Err(exit::USAGE)
            }
            Err(e) => {
                eprintln!("voxgate: loading the whisper model: {e}");
                Err(exit::SOFTWARE)
            }
        }
    }
}

pub async fn run(cmd: ModelsCommand) -> i32 {
    match cmd {
        ModelsCommand::Fetch(args) => fetch_model(args).await,
    }
}

async fn fetch_model(args: FetchArgs) -> i32 {
    let ModelFamily::Whisper = args.family;
    let flags = ConfigFlags {
        data_dir: args.data_dir.clone(),
        ..ConfigFlags::default()
    };
    let config_file = args
        .config
        .clone()
        .or_else(|| std::env::var_os(config::env::CONFIG).map(PathBuf::from));
    let cfg = match config::load_from_process_env(config_file.as_deref(), &flags) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("voxgate: bad configuration: {e}");
            return exit::USAGE;
        }
    };
    let req = FetchRequest {
        size: args.size.clone(),
        dir: cfg.data_dir.join(whisper::MODELS_SUBDIR),
        base_url: args.from.clone(),
        force: args.force,
        sha256: args.sha256.clone(),
    };
    let mut shown = 0u64;
    let progress = |bytes: u64, total: Option<u64>| {
        // A line per 10 % (or per 100 MB without a length).
        let step = total.map_or(100 << 20, |t| (t / 10).max(1));
        if bytes / step > shown {
            shown = bytes / step;
            let mut err = std::io::stderr().lock();
            let _ = match total {
                Some(t) => writeln!(err, "  {} / {} MB", bytes >> 20, t >> 20),
                None => writeln!(err, "  {} MB", bytes >> 20),
            };
        }
    };
    eprintln!("fetching ggml-{}.bin from {}", args.size, args.from);
    match fetch::fetch(&req, progress).await {
        Ok(got) => {
            let verb = if got.already_present {
                "already present"
            } else {
                "downloaded"
            };
            println!(
                "{verb}: {} ({} bytes, sha256 {} verified)",
                got.path.display(),
                got.bytes,
                got.sha256
            );
            exit::OK
        }
        Err(e) => {
            eprintln!("voxgate: {e}");
            match e {
                FetchError::UnknownSize { .. }
                | FetchError::DigestOverride { .. }
                | FetchError::BadDigest
                | FetchError::BadUrl { .. } => exit::USAGE,
                FetchError::Http { .. } | FetchError::HttpStatus { .. } => exit::UNAVAILABLE,
                FetchError::HashMismatch { .. }
                | FetchError::ExistingMismatch { .. }
                | FetchError::TooLarge { .. }
                | FetchError::Io { .. } => exit::SOFTWARE,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Serves `body` for every request, once per connection.
    async fn serve(body: Vec<u8>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let mut buf = vec![0u8; 4096];
                let _ = sock.read(&mut buf).await;
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = sock.write_all(head.as_bytes()).await;
                let _ = sock.write_all(&body).await;
            }
        });
        format!("http://{addr}")
    }

    fn args(
        size: &str,
        from: String,
        data_dir: &std::path::Path,
        sha: Option<String>,
    ) -> FetchArgs {
        FetchArgs {
            family: ModelFamily::Whisper,
            size: size.into(),
            from,
            sha256: sha,
            force: false,
            config: None,
            data_dir: Some(data_dir.display().to_string()),
        }
    }

    fn worker_args(listen: String, model: Option<PathBuf>) -> crate::cli::WorkerArgs {
        crate::cli::WorkerArgs {
            listen,
            engines: vec!["stt".into(), "tts".into()],
            nlu_model: PathBuf::from("unused"),
            whisper: WhisperArgs {
                whisper_model: model,
                whisper_threads: Some(1),
                whisper_decodes: Some(1),
            },
            token: "t".into(),
        }
    }

    #[tokio::test]
    async fn a_worker_with_a_bad_model_stops_before_listening() {
        // The address is taken: a worker that bound first would fail with
        // UNAVAILABLE (69); one that checks the model first says USAGE (64).
        let taken = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = taken.local_addr().expect("addr").to_string();
        let dir = std::env::temp_dir().join(format!("voxgate-worker-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let corrupt = dir.join("ggml-broken.bin");
        std::fs::write(&corrupt, b"lmgg this is not a model").expect("write");

        for model in [None, Some(dir.join("missing.bin")), Some(corrupt)] {
            let code = crate::ai::worker(worker_args(addr.clone(), model.clone())).await;
            assert_eq!(code, exit::USAGE, "{model:?}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn fetch_exit_codes_follow_the_digest_check() {
        let dir = std::env::temp_dir().join(format!("voxgate-models-{}", std::process::id()));
        let body = b"not really a model".to_vec();
        let digest = fetch::sha256_hex(&body);
        let base = serve(body.clone()).await;
        // The table's digest for "tiny" cannot match these bytes.
        assert_eq!(
            fetch_model(args("tiny", base.clone(), &dir, None)).await,
            exit::SOFTWARE
        );
        let model_dir = dir.join(whisper::MODELS_SUBDIR);
        assert!(!model_dir.join("ggml-tiny.bin").exists());
        assert!(!model_dir.join("ggml-tiny.bin.part").exists());
        assert_eq!(
            fetch_model(args("mine", base.clone(), &dir, Some(digest))).await,
            exit::OK
        );
        assert_eq!(
            std::fs::read(model_dir.join("ggml-mine.bin")).expect("file"),
            body
        );
        assert_eq!(
            fetch_model(args("nope", base, &dir, None)).await,
            exit::USAGE
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
