//! `GatewayConfig`: every key of the gateway, read from the embedded
//! defaults, a TOML file, the environment and command-line flags, and
//! validated in full before any socket is bound.
//!
//! Precedence, lowest first: [`DEFAULTS_TOML`] < `--config FILE` <
//! environment variables ([`env::OVERRIDES`]) < flags ([`ConfigFlags`]).
//! Every layer is merged into one TOML table first, so a value from the
//! environment or a flag is parsed and checked exactly like one from the
//! file, and every error names the key it is about.

pub mod ai;
pub mod env;
mod server;
#[cfg(test)]
mod tests;
mod types;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::dtmf::DtmfSource;
pub use types::{Cidr, CidrParseError, PortRange, PortRangeParseError};

/// The embedded defaults, as `voxgate config defaults` prints them. A unit
/// test keeps them equal to [`GatewayConfig::default`].
pub const DEFAULTS_TOML: &str = include_str!("config/defaults.toml");

/// The whole gateway configuration. Build it with [`load`] (or
/// [`GatewayConfig::from_toml_str`]), which also validates it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    pub data_dir: PathBuf,
    /// The address for SDP and Contact; see [`GatewayConfig::media_ip`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_ip: Option<IpAddr>,
    pub sip: SipConfig,
    pub http: HttpConfig,
    pub rtp: RtpConfig,
    pub shutdown: ShutdownConfig,
    pub tts: TtsConfig,
    pub demo: DemoConfig,
    pub ai: ai::AiConfig,
    pub trunks: Vec<TrunkConfig>,
}

/// `[sip]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SipConfig {
    /// UDP and TCP listen address; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Send 180 Ringing before the 200 OK.
    pub ringing: bool,
    /// How long to ring before answering, in ms.
    pub ring_ms: u32,
    /// Larger messages are dropped before parsing.
    pub max_message_bytes: u32,
    pub invite_rate_per_source: RateLimitConfig,
}

/// A token bucket: `per_second` tokens refill each second, up to `burst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    pub per_second: u32,
    pub burst: u32,
}

/// `[http]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    /// The canvas's built files (`make web`), served at `/ui/`. A relative
    /// path is taken from the working directory.
    pub ui_dir: PathBuf,
}

/// `[rtp]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RtpConfig {
    /// Media ports, `"LOW-HIGH"` in TOML.
    pub ports: PortRange,
    /// Receive jitter buffer depth, in ms.
    pub jitter_ms: u32,
    /// Silence on RTP for this long ends the call, in seconds.
    pub timeout_s: u32,
}

/// `[shutdown]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShutdownConfig {
    /// How long a drain waits for calls to end, in seconds.
    pub drain_timeout_s: u32,
}

/// `[tts]`: espeak-ng settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TtsConfig {
    pub voice: String,
    /// Words per minute.
    pub rate: u32,
    pub pitch: u32,
    pub espeak_path: PathBuf,
}

/// `[demo]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DemoConfig {
    pub enabled: bool,
    /// The DID of the demo flow (menu, assistant, agent, balance).
    pub flow_number: String,
    /// The DID of the DTMF echo test: a greeting, then each key read back.
    pub echo_number: String,
    /// Where the demo flow's agent transfer goes.
    pub agent_uri: String,
}

/// One `[[trunks]]` entry: who may send INVITEs, and how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrunkConfig {
    /// Also a metric label: letters, digits, `-` and `_` only.
    pub name: String,
    /// Source networks of this trunk.
    pub allow: Vec<Cidr>,
    /// When set, INVITEs must pass digest authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<TrunkAuth>,
    /// The DTMF sources listened to on this trunk.
    #[serde(default = "all_dtmf_sources")]
    pub dtmf: Vec<DtmfSource>,
}

/// `[trunks.auth]`: digest credentials the trunk must present.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrunkAuth {
    pub username: String,
    pub password: String,
    #[serde(default = "default_realm")]
    pub realm: String,
}

impl std::fmt::Debug for TrunkAuth {
    // Keeps the password out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrunkAuth")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("realm", &self.realm)
            .finish()
    }
}

fn all_dtmf_sources() -> Vec<DtmfSource> {
    vec![DtmfSource::Rfc4733, DtmfSource::Info, DtmfSource::Inband]
}

fn default_realm() -> String {
    "voxgate".to_owned()
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./data"),
            public_ip: None,
            sip: SipConfig::default(),
            http: HttpConfig::default(),
            rtp: RtpConfig::default(),
            shutdown: ShutdownConfig::default(),
            tts: TtsConfig::default(),
            demo: DemoConfig::default(),
            ai: ai::AiConfig::default(),
            trunks: vec![TrunkConfig {
                name: "local".to_owned(),
                allow: vec![
                    Cidr {
                        network: IpAddr::from([127, 0, 0, 0]),
                        prefix: 8,
                    },
                    Cidr {
                        network: IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]),
                        prefix: 128,
                    },
                ],
                auth: None,
                dtmf: all_dtmf_sources(),
            }],
        }
    }
}

impl Default for SipConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 5060)),
            ringing: true,
            ring_ms: 200,
            max_message_bytes: 65535,
            invite_rate_per_source: RateLimitConfig::default(),
        }
    }
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            per_second: 5,
            burst: 20,
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            ui_dir: PathBuf::from("web/dist"),
        }
    }
}

impl Default for RtpConfig {
    fn default() -> Self {
        Self {
            ports: PortRange {
                low: 10000,
                high: 20000,
            },
            jitter_ms: 60,
            timeout_s: 30,
        }
    }
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        Self {
            drain_timeout_s: 30,
        }
    }
}

impl Default for TtsConfig {
    fn default() -> Self {
        Self {
            voice: "en-us".to_owned(),
            rate: 160,
            pitch: 50,
            espeak_path: PathBuf::from("espeak-ng"),
        }
    }
}

impl Default for DemoConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            flow_number: "100".into(),
            echo_number: "1000".into(),
            agent_uri: "sip:agent@127.0.0.1:5070".into(),
        }
    }
}

impl SipConfig {
    pub fn ring_delay(&self) -> Duration {
        Duration::from_millis(u64::from(self.ring_ms))
    }
}

impl RtpConfig {
    pub fn jitter(&self) -> Duration {
        Duration::from_millis(u64::from(self.jitter_ms))
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_secs(u64::from(self.timeout_s))
    }
}

impl ShutdownConfig {
    pub fn drain_timeout(&self) -> Duration {
        Duration::from_secs(u64::from(self.drain_timeout_s))
    }
}

impl TtsConfig {
    /// The espeak-ng settings the audio module takes.
    pub fn say_config(&self) -> crate::audio::SayConfig {
        crate::audio::SayConfig {
            voice: self.voice.clone(),
            rate_wpm: self.rate,
            pitch: self.pitch,
            binary: self.espeak_path.clone(),
        }
    }
}

impl TrunkConfig {
    /// Whether `ip` is in this trunk's allow list.
    pub fn allows(&self, ip: IpAddr) -> bool {
        self.allow.iter().any(|c| c.contains(ip))
    }

    pub fn accepts_dtmf(&self, source: DtmfSource) -> bool {
        self.dtmf.contains(&source)
    }
}

/// Command-line overrides, the highest layer. Values are text so that a bad
/// flag is reported like a bad file value, naming its key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigFlags {
    pub sip_listen: Option<String>,
    pub http_listen: Option<String>,
    pub data_dir: Option<String>,
    pub rtp_ports: Option<String>,
    pub public_ip: Option<String>,
}

impl ConfigFlags {
    fn entries(&self) -> [(&'static str, &Option<String>); 5] {
        [
            ("sip.listen", &self.sip_listen),
            ("http.listen", &self.http_listen),
            ("data_dir", &self.data_dir),
            ("rtp.ports", &self.rtp_ports),
            ("public_ip", &self.public_ip),
        ]
    }
}

/// Why the configuration cannot be used. Every variant names the file, the
/// variable or the key at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {}: {source}", path.display())]
    Syntax {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    /// A value of the wrong type or form, or an unknown key.
    #[error("{key}: {message}")]
    Field { key: String, message: String },
    #[error("{key} (from {var}): {value:?} is not {}", kind_name(*.kind))]
    Env {
        var: &'static str,
        key: &'static str,
        value: String,
        kind: env::ValueKind,
    },
    /// A well-formed value that breaks a rule.
    #[error("{key}: {problem}")]
    Invalid { key: String, problem: Problem },
}

fn kind_name(kind: env::ValueKind) -> &'static str {
    match kind {
        env::ValueKind::Text => "text",
        env::ValueKind::Integer => "an unsigned integer",
        env::ValueKind::Bool => "a boolean (true/false)",
    }
}

impl ConfigError {
    /// The key (or for file errors, the path) the error is about.
    pub fn key(&self) -> String {
        match self {
            ConfigError::Read { path, .. } | ConfigError::Syntax { path, .. } => {
                path.display().to_string()
            }
            ConfigError::Field { key, .. } | ConfigError::Invalid { key, .. } => key.clone(),
            ConfigError::Env { key, .. } => (*key).to_owned(),
        }
    }
}

/// The rule a value breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("low port {0} must be even (RTP even, RTCP odd)")]
    OddLowPort(u16),
    #[error("low port must not be 0")]
    ZeroLowPort,
    #[error("range {low}-{high} must hold at least one RTP/RTCP port pair")]
    NoPortPair { low: u16, high: u16 },
    #[error("{value} is outside {min}..={max}")]
    OutOfRange { value: u64, min: u64, max: u64 },
    #[error("must not be empty")]
    Empty,
    #[error("{0} appears more than once")]
    Duplicate(String),
    #[error("{0:?} may only hold letters, digits, '-' and '_'")]
    BadName(String),
    #[error("overlaps {other}")]
    Conflict { other: &'static str },
    #[error("must be a concrete unicast address, not {0}")]
    NotUnicast(IpAddr),
    #[error("{0:?} is not an environment variable name (A-Z, 0-9, _)")]
    NotEnvName(String),
    #[error("{url:?} is not a {expected} URL")]
    BadUrl { url: String, expected: &'static str },
}

impl GatewayConfig {
    /// Parses and validates a TOML document, with no environment or flags.
    pub fn from_toml_str(text: &str) -> Result<Self, ConfigError> {
        let table = parse_table(text, Path::new("<string>"))?;
        from_table(table)
    }

    /// The address for SDP `c=` and Contact: `public_ip`, else the IP of
    /// `sip.listen`, else (listening on 0.0.0.0) the first non-loopback
    /// IPv4 interface, else 127.0.0.1.
    pub fn media_ip(&self) -> IpAddr {
        if let Some(ip) = self.public_ip {
            return ip;
        }
        rsipstack::transport::SipConnection::resolve_bind_address(self.sip.listen).ip()
    }

    /// The first trunk whose allow list holds `ip`.
    pub fn trunk_for_source(&self, ip: IpAddr) -> Option<&TrunkConfig> {
        self.trunks.iter().find(|t| t.allows(ip))
    }

    /// Checks every rule; the first broken one is returned.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, problem: Problem| {
            Err(ConfigError::Invalid {
                key: key.to_owned(),
                problem,
            })
        };
        if self.data_dir.as_os_str().is_empty() {
            return invalid("data_dir", Problem::Empty);
        }
        if let Some(ip) = self.public_ip {
            if ip.is_unspecified() || ip.is_multicast() {
                return invalid("public_ip", Problem::NotUnicast(ip));
            }
        }

        let sip = &self.sip;
        check_range("sip.ring_ms", sip.ring_ms, 0, 60_000)?;
        check_range("sip.max_message_bytes", sip.max_message_bytes, 1024, 65_535)?;
        check_range(
            "sip.invite_rate_per_source.per_second",
            sip.invite_rate_per_source.per_second,
            1,
            10_000,
        )?;
        check_range(
            "sip.invite_rate_per_source.burst",
            sip.invite_rate_per_source.burst,
            1,
            100_000,
        )?;

        let ports = self.rtp.ports;
        if ports.low == 0 {
            return invalid("rtp.ports", Problem::ZeroLowPort);
        }
        if ports.low & 1 == 1 {
            return invalid("rtp.ports", Problem::OddLowPort(ports.low));
        }
        if ports.high <= ports.low {
            return invalid(
                "rtp.ports",
                Problem::NoPortPair {
                    low: ports.low,
                    high: ports.high,
                },
            );
        }
        check_range("rtp.jitter_ms", self.rtp.jitter_ms, 0, 1000)?;
        check_range("rtp.timeout_s", self.rtp.timeout_s, 1, 3600)?;

        // SIP uses UDP and TCP on its port, HTTP uses TCP, RTP uses UDP.
        let sip_port = sip.listen.port();
        if sip_port != 0 && ports.contains(sip_port) {
            return invalid(
                "rtp.ports",
                Problem::Conflict {
                    other: "sip.listen",
                },
            );
        }
        if sip_port != 0
            && sip_port == self.http.listen.port()
            && ips_overlap(sip.listen.ip(), self.http.listen.ip())
        {
            return invalid(
                "http.listen",
                Problem::Conflict {
                    other: "sip.listen",
                },
            );
        }

        check_range(
            "shutdown.drain_timeout_s",
            self.shutdown.drain_timeout_s,
            0,
            3600,
        )?;

        let tts = &self.tts;
        if tts.voice.trim().is_empty() {
            return invalid("tts.voice", Problem::Empty);
        }
        check_range("tts.rate", tts.rate, 80, 450)?;
        check_range("tts.pitch", tts.pitch, 0, 99)?;
        if tts.espeak_path.as_os_str().is_empty() {
            return invalid("tts.espeak_path", Problem::Empty);
        }

        self.ai.validate()?;

        for (i, trunk) in self.trunks.iter().enumerate() {
            let key = |field: &str| format!("trunks[{i}].{field}");
            if trunk.name.is_empty() {
                return Err(ConfigError::Invalid {
                    key: key("name"),
                    problem: Problem::Empty,
                });
            }
            if !trunk
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(ConfigError::Invalid {
                    key: key("name"),
                    problem: Problem::BadName(trunk.name.clone()),
                });
            }
            if self.trunks[..i].iter().any(|t| t.name == trunk.name) {
                return Err(ConfigError::Invalid {
                    key: key("name"),
                    problem: Problem::Duplicate(trunk.name.clone()),
                });
            }
            if trunk.allow.is_empty() {
                return Err(ConfigError::Invalid {
                    key: key("allow"),
                    problem: Problem::Empty,
                });
            }
            if trunk.dtmf.is_empty() {
                return Err(ConfigError::Invalid {
                    key: key("dtmf"),
                    problem: Problem::Empty,
                });
            }
            for (j, source) in trunk.dtmf.iter().enumerate() {
                if trunk.dtmf[..j].contains(source) {
                    let name = format!("{source:?}").to_lowercase();
                    return Err(ConfigError::Invalid {
                        key: key("dtmf"),
                        problem: Problem::Duplicate(name),
                    });
                }
            }
            if let Some(auth) = &trunk.auth {
                for (field, value) in [
                    ("username", &auth.username),
                    ("password", &auth.password),
                    ("realm", &auth.realm),
                ] {
                    if value.is_empty() {
                        return Err(ConfigError::Invalid {
                            key: key(&format!("auth.{field}")),
                            problem: Problem::Empty,
                        });
                    }
                }
            }
        }
        Ok(())
    }
}

fn check_range(key: &str, value: u32, min: u32, max: u32) -> Result<(), ConfigError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(ConfigError::Invalid {
            key: key.to_owned(),
            problem: Problem::OutOfRange {
                value: value.into(),
                min: min.into(),
                max: max.into(),
            },
        })
    }
}

fn ips_overlap(a: IpAddr, b: IpAddr) -> bool {
    a == b || a.is_unspecified() || b.is_unspecified()
}

/// Loads the configuration from every layer and validates it.
///
/// `file` is the `--config` path (the caller resolves `VOXGATE_CONFIG`);
/// `env` looks a variable up, so tests can pass a map instead of the
/// process environment.
pub fn load(
    file: Option<&Path>,
    env: impl Fn(&str) -> Option<String>,
    flags: &ConfigFlags,
) -> Result<GatewayConfig, ConfigError> {
    let mut table = match file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_owned(),
                source,
            })?;
            parse_table(&text, path)?
        }
        None => toml::Table::new(),
    };
    for o in env::OVERRIDES {
        let Some(text) = env(o.var) else { continue };
        let value = env_value(o, text)?;
        set_key(&mut table, o.key, value);
    }
    for (key, value) in flags.entries() {
        if let Some(v) = value {
            set_key(&mut table, key, toml::Value::String(v.clone()));
        }
    }
    from_table(table)
}

/// Loads with the process environment: the usual entry point for binaries.
pub fn load_from_process_env(
    file: Option<&Path>,
    flags: &ConfigFlags,
) -> Result<GatewayConfig, ConfigError> {
    load(file, |var| std::env::var(var).ok(), flags)
}

fn parse_table(text: &str, path: &Path) -> Result<toml::Table, ConfigError> {
    text.parse::<toml::Table>()
        .map_err(|source| ConfigError::Syntax {
            path: path.to_owned(),
            source: Box::new(source),
        })
}

fn env_value(o: &env::EnvOverride, text: String) -> Result<toml::Value, ConfigError> {
    let bad = |value: String| ConfigError::Env {
        var: o.var,
        key: o.key,
        value,
        kind: o.kind,
    };
    match o.kind {
        env::ValueKind::Text => Ok(toml::Value::String(text)),
        env::ValueKind::Integer => match text.trim().parse::<u32>() {
            Ok(n) => Ok(toml::Value::Integer(i64::from(n))),
            Err(_) => Err(bad(text)),
        },
        env::ValueKind::Bool => match text.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(toml::Value::Boolean(true)),
            "false" | "0" | "no" | "off" => Ok(toml::Value::Boolean(false)),
            _ => Err(bad(text)),
        },
    }
}

/// Sets a dotted key, creating (or replacing non-table) parents.
fn set_key(table: &mut toml::Table, key: &str, value: toml::Value) {
    let mut parts: Vec<&str> = key.split('.').collect();
    let Some(last) = parts.pop() else { return };
    let mut cur = table;
    for part in parts {
        let entry = cur
            .entry(part.to_owned())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !entry.is_table() {
            *entry = toml::Value::Table(toml::Table::new());
        }
        let toml::Value::Table(next) = entry else {
            return;
        };
        cur = next;
    }
    cur.insert(last.to_owned(), value);
}

fn from_table(table: toml::Table) -> Result<GatewayConfig, ConfigError> {
    let cfg: GatewayConfig = serde_path_to_error::deserialize(table).map_err(|e| {
        let path = e.path().to_string();
        let message = e.inner().message().trim().to_owned();
        field_error(&path, message)
    })?;
    cfg.validate()?;
    Ok(cfg)
}

/// serde_path_to_error's path already ends at an unknown key; say so
/// plainly instead of listing every expected field.
fn field_error(path: &str, message: String) -> ConfigError {
    let key = if path == "." || path.is_empty() {
        "config".to_owned()
    } else {
        path.to_owned()
    };
    if message.starts_with("unknown field `") {
        return ConfigError::Field {
            key,
            message: "unknown key".to_owned(),
        };
    }
    ConfigError::Field { key, message }
}
