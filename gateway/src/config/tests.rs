#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::io::Write;

use super::*;

fn no_env(_: &str) -> Option<String> {
    None
}

fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k| map.get(k).cloned()
}

fn temp_file(text: &str) -> tempfile_path::TempPath {
    tempfile_path::TempPath::with_contents(text)
}

/// A tiny temp-file helper, so the tests need no extra crate.
mod tempfile_path {
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicU32, Ordering};

    pub struct TempPath(PathBuf);

    impl TempPath {
        pub fn with_contents(text: &str) -> Self {
            static N: AtomicU32 = AtomicU32::new(0);
            let n = N.fetch_add(1, Ordering::Relaxed);
            let path = std::env::temp_dir()
                .join(format!("voxgate-config-{}-{n}.toml", std::process::id()));
            let mut f = std::fs::File::create(&path).unwrap();
            super::Write::write_all(&mut f, text.as_bytes()).unwrap();
            Self(path)
        }

        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempPath {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

fn invalid_key(text: &str) -> (String, String) {
    match GatewayConfig::from_toml_str(text) {
        Ok(c) => panic!("expected an error, got {c:?}"),
        Err(e) => (e.key(), e.to_string()),
    }
}

#[test]
fn embedded_defaults_match_default_impl() {
    let parsed = GatewayConfig::from_toml_str(DEFAULTS_TOML).unwrap();
    assert_eq!(parsed, GatewayConfig::default());
    assert_eq!(
        GatewayConfig::from_toml_str("").unwrap(),
        GatewayConfig::default()
    );
    GatewayConfig::default().validate().unwrap();
}

#[test]
fn default_values() {
    let c = GatewayConfig::default();
    assert_eq!(c.sip.listen, "0.0.0.0:5060".parse().unwrap());
    assert_eq!(c.http.listen, "127.0.0.1:8080".parse().unwrap());
    assert_eq!(c.data_dir, PathBuf::from("./data"));
    assert_eq!(
        c.rtp.ports,
        PortRange {
            low: 10000,
            high: 20000
        }
    );
    assert!(c.demo.enabled);
    assert_eq!(c.trunks.len(), 1);
    assert!(c.trunk_for_source("127.0.0.1".parse().unwrap()).is_some());
    assert!(c.trunk_for_source("::1".parse().unwrap()).is_some());
    assert!(c.trunk_for_source("10.0.0.1".parse().unwrap()).is_none());
}

#[test]
fn serialized_config_round_trips() {
    let mut c = GatewayConfig {
        public_ip: Some("10.0.0.7".parse().unwrap()),
        ..Default::default()
    };
    c.trunks[0].auth = Some(TrunkAuth {
        username: "u".into(),
        password: "p".into(),
        realm: "r".into(),
    });
    let text = toml::to_string(&c).unwrap();
    assert_eq!(GatewayConfig::from_toml_str(&text).unwrap(), c);
}

#[test]
fn precedence_defaults_file_env_flags() {
    let file = temp_file(
        r#"
data_dir = "/from/file"
[sip]
listen = "127.0.0.1:5070"
ring_ms = 10
[http]
listen = "127.0.0.1:8081"
[rtp]
ports = "30000-30100"
"#,
    );
    // File over defaults; untouched keys keep their defaults.
    let c = load(Some(file.path()), no_env, &ConfigFlags::default()).unwrap();
    assert_eq!(c.sip.listen, "127.0.0.1:5070".parse().unwrap());
    assert_eq!(c.sip.ring_ms, 10);
    assert!(c.sip.ringing);
    assert_eq!(c.data_dir, PathBuf::from("/from/file"));
    assert_eq!(c.rtp.jitter_ms, 60);

    // Environment over file.
    let env = env_of(&[
        (env::SIP_LISTEN, "127.0.0.1:5080"),
        (env::RTP_PORTS, "40000-40100"),
        (env::SIP_RINGING, "false"),
        (env::SIP_RING_MS, "0"),
        (env::DEMO_ENABLED, "no"),
        (env::SIP_INVITE_RATE_BURST, "3"),
    ]);
    let c = load(Some(file.path()), &env, &ConfigFlags::default()).unwrap();
    assert_eq!(c.sip.listen, "127.0.0.1:5080".parse().unwrap());
    assert_eq!(
        c.rtp.ports,
        PortRange {
            low: 40000,
            high: 40100
        }
    );
    assert!(!c.sip.ringing);
    assert_eq!(c.sip.ring_ms, 0);
    assert!(!c.demo.enabled);
    assert_eq!(
        c.sip.invite_rate_per_source,
        RateLimitConfig {
            per_second: 5,
            burst: 3
        }
    );
    assert_eq!(c.http.listen, "127.0.0.1:8081".parse().unwrap());

    // Flags over environment.
    let flags = ConfigFlags {
        sip_listen: Some("127.0.0.1:0".into()),
        http_listen: Some("127.0.0.1:0".into()),
        data_dir: Some("/from/flag".into()),
        rtp_ports: Some("50000-50010".into()),
        public_ip: Some("10.1.1.1".into()),
    };
    let c = load(Some(file.path()), &env, &flags).unwrap();
    assert_eq!(c.sip.listen, "127.0.0.1:0".parse().unwrap());
    assert_eq!(c.http.listen, "127.0.0.1:0".parse().unwrap());
    assert_eq!(c.data_dir, PathBuf::from("/from/flag"));
    assert_eq!(
        c.rtp.ports,
        PortRange {
            low: 50000,
            high: 50010
        }
    );
    assert_eq!(c.public_ip, Some("10.1.1.1".parse().unwrap()));
    assert_eq!(c.media_ip(), "10.1.1.1".parse::<IpAddr>().unwrap());
}

#[test]
fn env_overrides_have_unique_vars_and_valid_keys() {
    for (i, o) in env::OVERRIDES.iter().enumerate() {
        assert!(o.var.starts_with("VOXGATE_"), "{}", o.var);
        assert!(
            env::OVERRIDES[..i]
                .iter()
                .all(|p| p.var != o.var && p.key != o.key),
            "{}",
            o.var
        );
        // Every key must exist: setting it with a plausible value works.
        let value = match o.kind {
            env::ValueKind::Bool => "true",
            env::ValueKind::Integer => "1",
            env::ValueKind::Text => "x",
        };
        let env = env_of(&[(o.var, value)]);
        if let Err(ConfigError::Field { message, .. }) = load(None, &env, &ConfigFlags::default()) {
            assert_ne!(message, "unknown key", "{} -> {}", o.var, o.key);
        }
    }
}

#[test]
fn bad_env_value_names_var_and_key() {
    let env = env_of(&[(env::RTP_JITTER_MS, "lots")]);
    let err = load(None, &env, &ConfigFlags::default()).unwrap_err();
    assert_eq!(err.key(), "rtp.jitter_ms");
    assert!(err.to_string().contains("VOXGATE_RTP_JITTER_MS"), "{err}");
    let env = env_of(&[(env::DEMO_ENABLED, "maybe")]);
    assert_eq!(
        load(None, &env, &ConfigFlags::default()).unwrap_err().key(),
        "demo.enabled"
    );
}

#[test]
fn bad_flag_value_names_key() {
    let flags = ConfigFlags {
        sip_listen: Some("not-an-address".into()),
        ..Default::default()
    };
    let err = load(None, no_env, &flags).unwrap_err();
    assert_eq!(err.key(), "sip.listen", "{err}");
    let flags = ConfigFlags {
        rtp_ports: Some("10001-20000".into()),
        ..Default::default()
    };
    let err = load(None, no_env, &flags).unwrap_err();
    assert_eq!(
        err.to_string(),
        "rtp.ports: low port 10001 must be even (RTP even, RTCP odd)"
    );
}

#[test]
fn missing_and_broken_files() {
    let err = load(
        Some(Path::new("/nonexistent/voxgate.toml")),
        no_env,
        &ConfigFlags::default(),
    )
    .unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }), "{err}");
    let file = temp_file("[sip\nlisten = 1");
    let err = load(Some(file.path()), no_env, &ConfigFlags::default()).unwrap_err();
    assert!(matches!(err, ConfigError::Syntax { .. }), "{err}");
}

#[test]
fn unknown_keys_are_named() {
    assert_eq!(invalid_key("colour = 1").0, "colour");
    assert_eq!(
        invalid_key("[sip]\nlissten = \"0.0.0.0:5060\"").0,
        "sip.lissten"
    );
    assert_eq!(
        invalid_key("[sip.invite_rate_per_source]\nper_minute = 1").0,
        "sip.invite_rate_per_source.per_minute"
    );
    assert_eq!(
        invalid_key("[[trunks]]\nname = \"a\"\nallow = [\"10.0.0.0/8\"]\nextra = 1").0,
        "trunks[0].extra"
    );
    let (key, msg) = invalid_key("[bogus]\nx = 1");
    assert_eq!(key, "bogus");
    assert_eq!(msg, "bogus: unknown key");
}

#[test]
fn wrong_types_are_named() {
    assert_eq!(invalid_key("[sip]\nlisten = \"localhost\"").0, "sip.listen");
    assert_eq!(invalid_key("[sip]\nringing = \"yes\"").0, "sip.ringing");
    assert_eq!(invalid_key("[rtp]\nports = \"10000\"").0, "rtp.ports");
    assert_eq!(invalid_key("[rtp]\njitter_ms = -5").0, "rtp.jitter_ms");
    assert_eq!(invalid_key("public_ip = \"nope\"").0, "public_ip");
    assert_eq!(
        invalid_key("[[trunks]]\nname = \"a\"\nallow = [\"10.0.0.0/40\"]").0,
        "trunks[0].allow[0]"
    );
    assert_eq!(
        invalid_key("[[trunks]]\nname = \"a\"\nallow = [\"10.0.0.0/8\"]\ndtmf = [\"smoke\"]").0,
        "trunks[0].dtmf[0]"
    );
    assert_eq!(invalid_key("[[trunks]]\nname = \"a\"").0, "trunks[0]");
}

#[test]
fn rtp_port_rules() {
    assert_eq!(
        invalid_key("[rtp]\nports = \"10001-20000\"").1,
        "rtp.ports: low port 10001 must be even (RTP even, RTCP odd)"
    );
    assert_eq!(invalid_key("[rtp]\nports = \"0-100\"").0, "rtp.ports");
    let (key, msg) = invalid_key("[rtp]\nports = \"20000-20000\"");
    assert_eq!(key, "rtp.ports");
    assert!(msg.contains("20000-20000"), "{msg}");
    assert_eq!(invalid_key("[rtp]\nports = \"20000-10000\"").0, "rtp.ports");
    assert!(GatewayConfig::from_toml_str("[rtp]\nports = \"20000-20001\"").is_ok());
    // The SIP port must not fall inside the media range.
    let (key, msg) = invalid_key("[sip]\nlisten = \"0.0.0.0:10002\"");
    assert_eq!(key, "rtp.ports");
    assert!(msg.contains("sip.listen"), "{msg}");
}

#[test]
fn range_rules() {
    for (text, key) in [
        ("[rtp]\njitter_ms = 5000", "rtp.jitter_ms"),
        ("[rtp]\ntimeout_s = 0", "rtp.timeout_s"),
        ("[sip]\nring_ms = 600000", "sip.ring_ms"),
        ("[sip]\nmax_message_bytes = 100", "sip.max_message_bytes"),
        ("[sip]\nmax_message_bytes = 70000", "sip.max_message_bytes"),
        (
            "[sip.invite_rate_per_source]\nper_second = 0",
            "sip.invite_rate_per_source.per_second",
        ),
        (
            "[sip.invite_rate_per_source]\nburst = 0",
            "sip.invite_rate_per_source.burst",
        ),
        (
            "[shutdown]\ndrain_timeout_s = 99999",
            "shutdown.drain_timeout_s",
        ),
        ("[tts]\nrate = 10", "tts.rate"),
        ("[tts]\npitch = 100", "tts.pitch"),
    ] {
        let (k, msg) = invalid_key(text);
        assert_eq!(k, key, "{text}");
        assert!(msg.contains("outside"), "{msg}");
    }
}

#[test]
fn text_and_address_rules() {
    assert_eq!(invalid_key("data_dir = \"\"").0, "data_dir");
    assert_eq!(invalid_key("[tts]\nvoice = \" \"").0, "tts.voice");
    assert_eq!(
        invalid_key("[tts]\nespeak_path = \"\"").0,
        "tts.espeak_path"
    );
    assert_eq!(invalid_key("public_ip = \"0.0.0.0\"").0, "public_ip");
    assert_eq!(invalid_key("public_ip = \"239.1.1.1\"").0, "public_ip");
    let (key, msg) =
        invalid_key("[sip]\nlisten = \"127.0.0.1:8080\"\n[http]\nlisten = \"0.0.0.0:8080\"");
    assert_eq!(key, "http.listen");
    assert!(msg.contains("sip.listen"), "{msg}");
    // Port 0 on both is fine: each gets its own free port.
    assert!(GatewayConfig::from_toml_str(
        "[sip]\nlisten = \"127.0.0.1:0\"\n[http]\nlisten = \"127.0.0.1:0\""
    )
    .is_ok());
    // Same port on different concrete IPs is fine too.
    assert!(GatewayConfig::from_toml_str(
        "[sip]\nlisten = \"127.0.0.1:8080\"\n[http]\nlisten = \"127.0.0.2:8080\""
    )
    .is_ok());
}

#[test]
fn trunk_rules() {
    let trunk = |body: &str| format!("[[trunks]]\nname = \"a\"\nallow = [\"10.0.0.0/8\"]\n{body}");
    assert_eq!(
        invalid_key("[[trunks]]\nname = \"\"\nallow = [\"10.0.0.0/8\"]").0,
        "trunks[0].name"
    );
    assert_eq!(
        invalid_key("[[trunks]]\nname = \"a b\"\nallow = [\"10.0.0.0/8\"]").0,
        "trunks[0].name"
    );
    let (key, msg) = invalid_key(&format!("{}\n{}", trunk(""), trunk("")));
    assert_eq!(key, "trunks[1].name");
    assert!(msg.contains("more than once"), "{msg}");
    assert_eq!(
        invalid_key("[[trunks]]\nname = \"a\"\nallow = []").0,
        "trunks[0].allow"
    );
    assert_eq!(invalid_key(&trunk("dtmf = []")).0, "trunks[0].dtmf");
    assert_eq!(
        invalid_key(&trunk("dtmf = [\"info\", \"info\"]")).0,
        "trunks[0].dtmf"
    );
    assert_eq!(
        invalid_key(&trunk("[trunks.auth]\nusername = \"\"\npassword = \"p\"")).0,
        "trunks[0].auth.username"
    );
    assert_eq!(
        invalid_key(&trunk("[trunks.auth]\nusername = \"u\"\npassword = \"\"")).0,
        "trunks[0].auth.password"
    );

    let c = GatewayConfig::from_toml_str(&format!(
        "{}\n[[trunks]]\nname = \"b\"\nallow = [\"0.0.0.0/0\"]\ndtmf = [\"info\"]\n[trunks.auth]\nusername = \"u\"\npassword = \"p\"",
        trunk("")
    ))
    .unwrap();
    assert_eq!(
        c.trunks.len(),
        2,
        "a file's trunks replace the default trunk"
    );
    assert_eq!(
        c.trunk_for_source("10.2.3.4".parse().unwrap())
            .map(|t| t.name.as_str()),
        Some("a")
    );
    let b = c.trunk_for_source("8.8.8.8".parse().unwrap()).unwrap();
    assert_eq!(b.name, "b");
    assert!(b.accepts_dtmf(DtmfSource::Info) && !b.accepts_dtmf(DtmfSource::Inband));
    let auth = b.auth.as_ref().unwrap();
    assert_eq!(auth.realm, "voxgate");
    assert!(
        !format!("{auth:?}").contains("\"p\""),
        "password must not be logged"
    );
    assert_eq!(
        c.trunks[0].dtmf,
        vec![DtmfSource::Rfc4733, DtmfSource::Info, DtmfSource::Inband]
    );
}

#[test]
fn media_ip_follows_listen_address() {
    let c = GatewayConfig::from_toml_str("[sip]\nlisten = \"127.0.0.1:0\"").unwrap();
    assert_eq!(c.media_ip(), "127.0.0.1".parse::<IpAddr>().unwrap());
    let c = GatewayConfig::default();
    assert!(!c.media_ip().is_unspecified());
}

#[test]
fn durations() {
    let c = GatewayConfig::default();
    assert_eq!(c.rtp.jitter(), Duration::from_millis(60));
    assert_eq!(c.rtp.timeout(), Duration::from_secs(30));
    assert_eq!(c.sip.ring_delay(), Duration::from_millis(200));
    assert_eq!(c.shutdown.drain_timeout(), Duration::from_secs(30));
}

#[test]
fn file_unknown_key_error_writes_cleanly() {
    let mut out = Vec::new();
    write!(out, "{}", invalid_key("[http]\nport = 1").1).unwrap();
    assert_eq!(String::from_utf8(out).unwrap(), "http.port: unknown key");
}

#[test]
fn ai_providers_parse_and_validate() {
    use super::ai::{NluProviderConfig, SttProviderConfig, TtsProviderConfig};
    let c = GatewayConfig::default();
    assert_eq!(c.ai.stt, SttProviderConfig::None);
    assert!(matches!(c.ai.nlu, NluProviderConfig::Embedding(_)));
    assert_eq!(c.ai.tts, TtsProviderConfig::Espeak);
    let c = GatewayConfig::from_toml_str(
        r#"
[ai.stt]
provider = "worker"
workers = ["ws://127.0.0.1:7000"]
[ai.nlu]
provider = "llm"
url = "http://127.0.0.1:9/v1/"
model = "m"
api_key_env = "OPENAI_API_KEY"
"#,
    )
    .unwrap();
    let SttProviderConfig::Worker(w) = &c.ai.stt else {
        panic!("worker")
    };
    assert_eq!(w.token_env, "VOXGATE_WORKER_TOKEN");
    assert_eq!(c.ai.describe(), "stt=worker nlu=llm tts=espeak");
    let text = toml::to_string(&c).unwrap();
    assert_eq!(GatewayConfig::from_toml_str(&text).unwrap(), c);

    assert_eq!(
        invalid_key("[ai.stt]\nprovider = \"worker\"\n").0,
        "ai.stt.workers"
    );
    assert_eq!(
        invalid_key("[ai.stt]\nprovider = \"worker\"\nworkers = [\"http://x:1\"]\n").0,
        "ai.stt.workers[0]"
    );
    assert_eq!(
        invalid_key(
            "[ai.nlu]\nprovider = \"llm\"\nurl = \"http://x/v1/\"\nmodel = \"m\"\napi_key_env = \"sk-live-123\"\n"
        )
        .0,
        "ai.nlu.api_key_env"
    );
    assert_eq!(
        invalid_key("[ai.stt]\nprovider = \"vosk\"\n").0,
        "ai.stt.provider"
    );
    assert_eq!(
        invalid_key("[ai.conversation]\nno_input_ms = 1\n").0,
        "ai.conversation.no_input_ms"
    );
    // The environment picks a provider like the file does.
    let env = env_of(&[("VOXGATE_AI_NLU_PROVIDER", "worker")]);
    let err = load(None, &env, &ConfigFlags::default()).unwrap_err();
    assert_eq!(err.key(), "ai.nlu.workers");
}

#[test]
fn the_canvas_dir_defaults_to_web_dist_and_can_be_moved() {
    assert_eq!(
        GatewayConfig::default().http.ui_dir,
        PathBuf::from("web/dist")
    );
    let env = env_of(&[(env::HTTP_UI_DIR, "/srv/voxgate/ui")]);
    let c = load(None, &env, &ConfigFlags::default()).unwrap();
    assert_eq!(c.http.ui_dir, PathBuf::from("/srv/voxgate/ui"));
}
