//! Each in-process engine `[ai]` can name, built by [`build::engines`]
//! from its configuration text and run through a real turn of the node:
//! whisper on a generated tiny model, the embedding classifier on the real
//! all-MiniLM-L6-v2, Deepgram and OpenAI speech against the provider
//! simulator's endpoints on 127.0.0.1. The engines a test does not look at
//! are the simulator's, over the worker protocol.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use voxgate_flows::interpreter::{ActionResult, AiRecord};
use voxgate_flows::model::AiNode;
use voxgate_gateway::audio::{synthesize, SayConfig, SpeechCache};
use voxgate_gateway::config::ai::AiConfig;
use voxgate_gateway::config::GatewayConfig;
use voxgate_stt_tts::simulator::{spawn_simulator, Script, SimulatorHandle};
use voxgate_stt_tts::tts_cache::TtsCacheConfig;
use voxgate_stt_tts::whisper::testmodel::TinyModel;
use voxgate_stt_tts::worker::WorkerToken;

use super::tests::{node, run_node};
use super::*;

const TOKEN: &str = "t";
const DG_KEY: &str = "dg-test-key";
const SPEECH_KEY: &str = "sk-speech-test";

/// A directory of its own under the system temp dir, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        #[allow(clippy::disallowed_methods)]
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir = std::env::temp_dir().join(format!(
            "voxgate-engines-{name}-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Self(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Sim {
    addr: std::net::SocketAddr,
    handle: SimulatorHandle,
    stop: CancellationToken,
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Sim {
    fn ws(&self) -> String {
        format!("ws://{}", self.addr)
    }
}

/// The simulator: every utterance is heard as `heard`, which the NLU
/// script resolves to `balance`; TTS is a tone.
async fn sim(heard: &str) -> Sim {
    let script = json!({
        "stt": {"default": {"text": heard}},
        "nlu": {"results": [{"utterance": heard,
                             "result": {"intent": "balance", "confidence": 0.93}}]},
        "tts": {"voice": {"kind": "tone", "hz": 440.0, "ms_per_char": 40}}
    });
    let script = Script::from_json(&script.to_string(), Path::new(".")).expect("script");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let stop = CancellationToken::new();
    let handle = spawn_simulator(listener, script, WorkerToken::new(TOKEN), stop.clone());
    Sim { addr, handle, stop }
}

fn ai(text: &str) -> AiConfig {
    match GatewayConfig::from_toml_str(text) {
        Ok(c) => c.ai,
        Err(e) => panic!("{text}\n{e}"),
    }
}

fn env(var: &str) -> Option<String> {
    match var {
        "VOXGATE_WORKER_TOKEN" => Some(TOKEN.into()),
        "DG_TEST_KEY" => Some(DG_KEY.into()),
        "SPEECH_TEST_KEY" => Some(SPEECH_KEY.into()),
        _ => None,
    }
}

fn built(ai: &AiConfig, data_dir: &Path) -> AiEngines {
    build::engines(
        ai,
        &SayConfig::default(),
        &TtsCacheConfig::default(),
        data_dir,
        env,
    )
    .expect("engines build")
    .expect("STT is configured")
}

fn runner(engines: AiEngines, conversation: ConversationConfig) -> AiNodeRunner {
    AiNodeRunner::new(
        engines,
        conversation,
        Arc::new(PolicyBook::default()),
        Arc::new(BreakerRegistry::default()),
        Arc::new(AdmissionControl::new()),
        Arc::new(AiMetrics::new()),
    )
}

async fn say(text: &str) -> Vec<i16> {
    synthesize(text, &SayConfig::default(), 8_000, SpeechCache::global())
        .await
        .expect("espeak-ng speaks")
        .to_vec()
}

fn parts(
    result: ActionResult,
) -> (
    String,
    std::collections::BTreeMap<String, Value>,
    Vec<AiRecord>,
) {
    match result {
        ActionResult::Ai {
            outcome,
            variables,
            records,
        } => (outcome, variables, records),
        other => panic!("an AI result: {other:?}"),
    }
}

/// The all-MiniLM-L6-v2 directory, as the stt-tts embedding tests find it.
fn minilm_dir() -> PathBuf {
    let dir = std::env::var_os("VOXGATE_MINILM_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/models/all-MiniLM-L6-v2")
        });
    assert!(
        dir.join("model.safetensors").is_file(),
        "the all-MiniLM-L6-v2 model is not in {}: run `make models` (or set VOXGATE_MINILM_DIR)",
        dir.display()
    );
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whisper_from_config_hears_the_caller_in_process() {
    let scratch = Scratch::new("whisper");
    let model = scratch.0.join("ggml-tiny-test.bin");
    TinyModel::default().write(&model).expect("tiny model");
    let sim = sim("unused").await;
    let engines = built(
        &ai(&format!(
            "[ai.stt]\nprovider = \"whisper\"\nmodel = {:?}\nthreads = 1\nlanguage = \"en\"\n\
             [ai.nlu]\nprovider = \"lexical\"\n\
             [ai.tts]\nprovider = \"worker\"\nworkers = [\"{}\"]\n",
            model.display().to_string(),
            sim.ws()
        )),
        &scratch.0,
    );
    assert_eq!(engines.names.stt, "whisper");
    let r = runner(engines, ConversationConfig::default());
    // One turn, whatever the tiny model makes of it: no reprompt.
    let mut params: AiNode = node();
    params.max_reprompts = Some(0);
    params.max_silences = Some(0);
    params.max_turns = Some(1);
    let (result, _) = run_node(&r, &params, &say("what is my balance").await).await;
    let (outcome, variables, records) = parts(result);
    // whisper's final reached the turn: a transcript record (its words
    // are nonsense from random weights), and no STT fallback.
    assert!(
        records.iter().any(|r| r.kind == "transcript"),
        "{outcome} {records:?}"
    );
    let reason = variables
        .get("ai.reason")
        .and_then(Value::as_str)
        .unwrap_or("");
    assert!(!reason.starts_with("stt_"), "{reason}: {records:?}");
    assert_eq!(sim.handle.stt_sessions(), 0, "the simulator heard nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deepgram_from_config_transcribes_the_turn() {
    let sim = sim("what is my balance").await;
    let engines = built(
        &ai(&format!(
            "[ai.stt]\nprovider = \"deepgram\"\nurl = \"ws://{addr}/v1/listen\"\n\
             api_key_env = \"DG_TEST_KEY\"\nmodel = \"nova-3\"\n\
             [ai.nlu]\nprovider = \"worker\"\nworkers = [\"{ws}\"]\n\
             [ai.tts]\nprovider = \"worker\"\nworkers = [\"{ws}\"]\n",
            addr = sim.addr,
            ws = sim.ws()
        )),
        Path::new("unused"),
    );
    assert_eq!(engines.names.stt, "deepgram");
    let r = runner(engines, ConversationConfig::default());
    let (result, _) = run_node(&r, &node(), &say("what is my balance").await).await;
    let (outcome, variables, records) = parts(result);
    assert_eq!(outcome, "balance", "{records:?}");
    assert_eq!(variables["ai.transcript"], "what is my balance");
    assert!(sim.handle.deepgram_sessions() >= 1);
    assert_eq!(sim.handle.stt_sessions(), 0, "not the worker protocol");
    let (auth, query) = sim.handle.last_listen_request().expect("a listen request");
    assert_eq!(auth.as_deref(), Some(format!("Token {DG_KEY}").as_str()));
    assert!(query.contains("model=nova-3"), "{query}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedding_from_config_classifies_a_paraphrase() {
    // Not an example phrase word for word: the lexical classifier would
    // not be sure of it, the embedding model is.
    let heard = "how much money do I have left";
    let sim = sim(heard).await;
    let engines = built(
        &ai(&format!(
            "[ai.stt]\nprovider = \"worker\"\nworkers = [\"{ws}\"]\n\
             [ai.nlu]\nprovider = \"embedding\"\nmodel_dir = {dir:?}\n\
             [ai.tts]\nprovider = \"worker\"\nworkers = [\"{ws}\"]\n",
            ws = sim.ws(),
            dir = minilm_dir().display().to_string()
        )),
        Path::new("unused"),
    );
    assert_eq!(engines.names.nlu, "minilm-embedding");
    let r = runner(engines, ConversationConfig::default());
    let mut params: AiNode = node();
    params.max_reprompts = Some(0);
    let (result, _) = run_node(&r, &params, &say(heard).await).await;
    let (outcome, variables, records) = parts(result);
    assert_eq!(outcome, "balance", "{records:?}");
    assert_eq!(variables["ai.intent"], "balance");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedding_without_its_model_falls_back_to_lexical_under_that_label() {
    let sim = sim("what is my balance").await;
    let scratch = Scratch::new("no-minilm");
    // The default model dir under an empty data dir.
    let engines = built(
        &ai(&format!(
            "[ai.stt]\nprovider = \"worker\"\nworkers = [\"{ws}\"]\n\
             [ai.tts]\nprovider = \"worker\"\nworkers = [\"{ws}\"]\n",
            ws = sim.ws()
        )),
        &scratch.0,
    );
    assert_eq!(engines.names.nlu, "lexical-fallback");
    let r = runner(engines, ConversationConfig::default());
    let (result, _) = run_node(&r, &node(), &say("what is my balance").await).await;
    let (outcome, _, records) = parts(result);
    assert_eq!(outcome, "balance", "{records:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_speech_from_config_speaks_the_reply_and_caches_it() {
    let sim = sim("what is my balance").await;
    let scratch = Scratch::new("speech");
    let text = format!(
        "[ai.stt]\nprovider = \"worker\"\nworkers = [\"{ws}\"]\n\
         [ai.nlu]\nprovider = \"worker\"\nworkers = [\"{ws}\"]\n\
         [ai.tts]\nprovider = \"openai\"\nurl = \"http://{addr}/v1/\"\n\
         api_key_env = \"SPEECH_TEST_KEY\"\nvoice = \"nova\"\n",
        ws = sim.ws(),
        addr = sim.addr
    );
    let cache = TtsCacheConfig::in_data_dir(&scratch.0);
    let build_one = || {
        build::engines(&ai(&text), &SayConfig::default(), &cache, &scratch.0, env)
            .expect("engines build")
            .expect("STT is configured")
    };
    let engines = build_one();
    assert_eq!(engines.names.tts, "openai");
    let r = runner(engines, ConversationConfig::default());
    let speech = say("what is my balance").await;
    let (result, levels) = run_node(&r, &node(), &speech).await;
    let (outcome, _, records) = parts(result);
    assert_eq!(outcome, "balance", "{records:?}");
    // "Your balance is twelve euros." at 40 ms a character: over a second
    // of tone went out on the turn stream.
    let loud = levels.iter().filter(|l| **l > 1000.0).count();
    assert!(loud >= 40, "{loud} loud packets");
    let requests = sim.handle.speech_requests();
    assert!(requests >= 1);
    assert_eq!(
        sim.handle.last_speech_auth().as_deref(),
        Some(format!("Bearer {SPEECH_KEY}").as_str())
    );
    // A second call, a new process's engines over the same data dir: the
    // reply comes from the disk cache, not the provider.
    let r = runner(build_one(), ConversationConfig::default());
    let (result, levels) = run_node(&r, &node(), &speech).await;
    assert_eq!(parts(result).0, "balance");
    assert!(levels.iter().filter(|l| **l > 1000.0).count() >= 40);
    assert_eq!(
        sim.handle.speech_requests(),
        requests,
        "served from the cache"
    );
}

#[tokio::test]
async fn startup_errors_name_the_model_or_the_variable() {
    let scratch = Scratch::new("errors");
    let build = |text: &str| {
        build::engines(
            &ai(text),
            &SayConfig::default(),
            &TtsCacheConfig::default(),
            &scratch.0,
            env,
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_else(|| panic!("{text}: expected an error"))
    };
    let default_model = scratch.0.join("models/whisper/ggml-base.en.bin");
    assert_eq!(
        build("[ai.stt]\nprovider = \"whisper\"\n"),
        format!(
            "ai.stt.model: the whisper model {} does not exist; fetch it with \
             `voxgate models fetch whisper base.en` (or set [ai.stt] model)",
            default_model.display()
        )
    );
    let small = scratch.0.join("ggml-small.bin");
    assert!(build(&format!(
        "[ai.stt]\nprovider = \"whisper\"\nmodel = {:?}\n",
        small.display().to_string()
    ))
    .contains("`voxgate models fetch whisper small`"));
    let corrupt = scratch.0.join("ggml-tiny.bin");
    std::fs::write(&corrupt, b"not a model").expect("write");
    let err = build(&format!(
        "[ai.stt]\nprovider = \"whisper\"\nmodel = {:?}\n",
        corrupt.display().to_string()
    ));
    assert!(
        err.starts_with("ai.stt: whisper model") && err.contains("not a usable ggml"),
        "{err}"
    );
    assert_eq!(
        build("[ai.stt]\nprovider = \"deepgram\"\napi_key_env = \"DG_UNSET_KEY\"\n"),
        "ai.stt.api_key_env: the environment variable DG_UNSET_KEY is not set"
    );
    assert_eq!(
        build(
            "[ai.stt]\nprovider = \"deepgram\"\napi_key_env = \"DG_TEST_KEY\"\n\
             [ai.tts]\nprovider = \"openai\"\nurl = \"https://api.openai.com/v1/\"\n\
             api_key_env = \"OPENAI_UNSET_KEY\"\n"
        ),
        "ai.tts.api_key_env: the environment variable OPENAI_UNSET_KEY is not set"
    );
    // A model that is there but broken is an install to fix, not a reason
    // to fall back.
    let broken = scratch.0.join("broken-minilm");
    std::fs::create_dir_all(&broken).expect("dir");
    for f in ["model.safetensors", "tokenizer.json", "config.json"] {
        std::fs::write(broken.join(f), b"{}").expect("write");
    }
    let err = build(&format!(
        "[ai.stt]\nprovider = \"deepgram\"\napi_key_env = \"DG_TEST_KEY\"\n\
         [ai.nlu]\nprovider = \"embedding\"\nmodel_dir = {:?}\n",
        broken.display().to_string()
    ));
    assert!(err.starts_with("ai.nlu.model_dir: "), "{err}");
}
