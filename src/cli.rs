//! The command line: `voxgate serve`, `voxgate call`, `voxgate config`, and
//! the API wrappers (`flows`, `numbers`, `tenants`, `keys`, `policy`).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use voxgate_gateway::config::{env, ConfigFlags};
use voxgate_gateway::softphone::parse_duration;

#[derive(Debug, Parser)]
#[command(name = "voxgate", version, about = "AI voicebot orchestration gateway")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway: SIP on UDP+TCP, HTTP health and metrics.
    Serve(ServeArgs),
    /// Place one SIP call (a softphone for tests, demos and QA).
    Call(CallArgs),
    /// Check a config file, or print the embedded defaults.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Validate flow files offline, or push, publish and roll back flows.
    #[command(subcommand)]
    Flows(FlowsCommand),
    /// Route numbers (DIDs) to flows.
    #[command(subcommand)]
    Numbers(NumbersCommand),
    /// Create tenants (role admin).
    #[command(subcommand)]
    Tenants(TenantsCommand),
    /// Create API keys (role admin).
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Read and change a tenant's NOC policy (role noc or admin to change).
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Serve local engines over the worker websocket protocol, so AI
    /// compute can run on other machines.
    Worker(WorkerArgs),
    /// Run the provider simulator: a test double for remote paid STT, TTS
    /// and LLM services, with scripted answers, delays and faults.
    Simulate(SimulateArgs),
    /// Download and verify model files (whisper).
    #[command(subcommand)]
    Models(crate::models::ModelsCommand),
    /// Eval sets: build their audio, replay them through the gateway,
    /// report accuracy, escalation, containment and latency.
    #[command(subcommand)]
    Eval(crate::eval::EvalCommand),
}

#[derive(Debug, Args)]
pub struct WorkerArgs {
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9300")]
    pub listen: String,
    /// Engines to serve: stt (whisper, needs --whisper-model), tts
    /// (espeak-ng), nlu (the embedding intent classifier; the lexical
    /// fallback when its model is absent).
    #[arg(long, value_delimiter = ',', default_value = "tts,nlu")]
    pub engines: Vec<String>,
    /// The all-MiniLM-L6-v2 directory (`make models` fills the default).
    #[arg(
        long,
        value_name = "DIR",
        default_value = "data/models/all-MiniLM-L6-v2"
    )]
    pub nlu_model: PathBuf,
    #[command(flatten)]
    pub whisper: crate::models::WhisperArgs,
    /// The bearer token clients must send.
    #[arg(long, env = env::WORKER_TOKEN, hide_env_values = true)]
    pub token: String,
}

#[derive(Debug, Args)]
pub struct SimulateArgs {
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9400")]
    pub listen: String,
    /// The JSON script of transcripts, intents, audio, delays and faults
    /// (docs/worker-protocol.md).
    #[arg(long, value_name = "FILE")]
    pub script: PathBuf,
    /// The bearer token clients must send.
    #[arg(long, env = env::WORKER_TOKEN, hide_env_values = true)]
    pub token: String,
}

/// Where the `/v1` API is, and the key to use.
#[derive(Debug, Args)]
pub struct ApiArgs {
    /// The API base URL.
    #[arg(long, env = env::API_URL, default_value = "http://127.0.0.1:8080")]
    pub api: String,
    /// The API key (a bearer token).
    #[arg(long, env = env::API_KEY, hide_env_values = true)]
    pub key: String,
}

#[derive(Debug, Subcommand)]
pub enum FlowsCommand {
    /// Validate a flow file without a server; exit 1 when it has errors.
    Validate {
        file: PathBuf,
        /// A host the flow's http nodes may call (repeatable).
        #[arg(long = "allow-host")]
        allow_hosts: Vec<String>,
        /// Allow private and loopback addresses in http nodes.
        #[arg(long)]
        allow_private: bool,
    },
    /// Create or replace a flow's draft from a file.
    Push {
        file: PathBuf,
        #[arg(long)]
        tenant: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Publish the flow's draft as a new live version.
    Publish {
        flow: String,
        #[arg(long)]
        tenant: String,
        #[arg(long, default_value = "")]
        comment: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Make an older version live again.
    Rollback {
        flow: String,
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        version: u32,
        #[command(flatten)]
        api: ApiArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum NumbersCommand {
    /// Route DID to a flow of the tenant.
    Set {
        did: String,
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        flow: String,
        #[command(flatten)]
        api: ApiArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum TenantsCommand {
    /// Create a tenant.
    Create {
        id: String,
        #[arg(long)]
        name: String,
        #[command(flatten)]
        api: ApiArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key; its secret is printed once.
    Create {
        /// admin, noc, editor, qa or viewer.
        #[arg(long)]
        role: String,
        /// The tenant, for editor, qa and viewer keys.
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long, default_value = "")]
        label: String,
        #[command(flatten)]
        api: ApiArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Print the tenant's policy with its version and ETag (the defaults
    /// when it has none of its own).
    Get {
        tenant: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Replace the tenant's policy with FILE (`-` or absent: stdin). FILE
    /// is a policy document, or the output of `policy get` edited: then
    /// its `policy` is sent, and refused if someone changed the policy
    /// since (its `etag`).
    Set {
        tenant: String,
        file: Option<PathBuf>,
        /// Change only if the current ETag is this.
        #[arg(long)]
        if_match: Option<String>,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// List the tenant's policy changes, newest first.
    Audit {
        tenant: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Print the tenant's AI sessions, circuit breakers and fallbacks.
    Health {
        tenant: String,
        #[command(flatten)]
        api: ApiArgs,
    },
}

/// The config file and the flags that override config keys.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// TOML config file [env: VOXGATE_CONFIG].
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// sip.listen, UDP and TCP (port 0 picks a free port).
    #[arg(long, value_name = "ADDR")]
    pub sip_listen: Option<String>,
    /// http.listen.
    #[arg(long, value_name = "ADDR")]
    pub http_listen: Option<String>,
    /// data_dir.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<String>,
    /// rtp.ports, LOW-HIGH with LOW even.
    #[arg(long, value_name = "LOW-HIGH")]
    pub rtp_ports: Option<String>,
    /// public_ip, the address put into SDP.
    #[arg(long, value_name = "IP")]
    pub public_ip: Option<String>,
}

impl ConfigArgs {
    pub fn flags(&self) -> ConfigFlags {
        ConfigFlags {
            sip_listen: self.sip_listen.clone(),
            http_listen: self.http_listen.clone(),
            data_dir: self.data_dir.clone(),
            rtp_ports: self.rtp_ports.clone(),
            public_ip: self.public_ip.clone(),
        }
    }

    /// `--config`, else `VOXGATE_CONFIG`.
    pub fn config_file(&self) -> Option<PathBuf> {
        self.config
            .clone()
            .or_else(|| std::env::var_os(env::CONFIG).map(PathBuf::from))
    }
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Load FILE with the environment and flags, validate it, print "ok".
    Check {
        /// Print the effective configuration as TOML too.
        #[arg(long)]
        print: bool,
        #[command(flatten)]
        config: ConfigArgs,
        /// The file to check (same as --config).
        file: Option<PathBuf>,
    },
    /// Print the embedded defaults as TOML.
    Defaults,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum DtmfModeArg {
    Rfc4733,
    Info,
    Inband,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum CodecArg {
    Pcmu,
    Pcma,
}

fn duration(text: &str) -> Result<Duration, String> {
    parse_duration(text).map_err(|e| e.to_string())
}

#[derive(Debug, Args)]
pub struct CallArgs {
    /// The SIP URI to call, for example sip:1000@127.0.0.1:5060.
    pub target: String,
    /// WAV file to send once answered (any rate; resampled to 8 kHz).
    #[arg(long, value_name = "WAV")]
    pub play: Option<PathBuf>,
    /// DTMF digits to send, for example "1#".
    #[arg(long, default_value = "")]
    pub dtmf: String,
    #[arg(long, value_enum, default_value = "rfc4733")]
    pub dtmf_mode: DtmfModeArg,
    /// Wait after the answer before the first digit.
    #[arg(long, value_parser = duration, default_value = "2s")]
    pub dtmf_delay: Duration,
    /// How long each digit lasts.
    #[arg(long, value_parser = duration, default_value = "160ms")]
    pub dtmf_duration: Duration,
    /// Record what the far end sends (WAV, 8 kHz mono).
    #[arg(long, value_name = "WAV")]
    pub record: Option<PathBuf>,
    /// Hang up this long after the answer.
    #[arg(long, value_parser = duration, default_value = "20s")]
    pub hangup_after: Duration,
    /// The From URI.
    #[arg(long)]
    pub from: Option<String>,
    /// Digest username for 401/407 challenges.
    #[arg(long, requires = "password")]
    pub username: Option<String>,
    #[arg(long, requires = "username")]
    pub password: Option<String>,
    #[arg(long, value_enum, default_value = "pcmu")]
    pub codec: CodecArg,
    /// How long to wait for the call to be answered.
    #[arg(long, value_parser = duration, default_value = "10s")]
    pub timeout: Duration,
    /// Local address to bind (default: chosen from the target).
    #[arg(long, value_name = "IP")]
    pub local_ip: Option<std::net::IpAddr>,
    /// Print the summary as JSON (otherwise a short text report).
    #[arg(long)]
    pub json: bool,
}
