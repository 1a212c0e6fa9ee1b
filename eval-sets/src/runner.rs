//! `voxgate eval run`: the replay driver. For every call of a set it
//! places a real SIP call with the gateway crate's softphone (its own
//! socket per call), streams the caller audio as paced RTP, keys the DTMF
//! burst on schedule, records what comes back, then reads the call's
//! record from the API. Up to `concurrency` calls at once.
//!
//! Correlation: each call's From user is `eval-<run>-<n>`, which the
//! gateway stores as the record's `caller`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use voxgate_gateway::call::PlaybackSource;
use voxgate_gateway::softphone::{self, CallOptions};

use crate::caller::{self, CallerAudio, TurnSpan, DTMF_DIGIT_MS, DTMF_GAP_MS};
use crate::manifest::{Call, Manifest};
use crate::metrics::{check_call, wire_turns, Check, WireTurn};
use crate::outcome::{self, GatewayOutcome};
use crate::render::{self, RATE};

/// How long to wait for the gateway to finish a call record.
const RECORD_WAIT: Duration = Duration::from_secs(20);

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("--target {0:?} is not sip:HOST:PORT")]
    Target(String),
    #[error(transparent)]
    Compose(#[from] caller::ComposeError),
    #[error(transparent)]
    Audio(#[from] render::RenderError),
    #[error("cannot read the set's flow {path}: {reason}")]
    Flow { path: String, reason: String },
    #[error("making flow version {version} live: {source}")]
    Rollback {
        version: u32,
        source: voxgate_flows::client::ClientError,
    },
}

/// The API to read call records from.
#[derive(Debug, Clone)]
pub struct ApiTarget {
    pub url: String,
    pub key: String,
}

/// The engines behind the gateway, as the operator states them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Engines {
    pub stt: String,
    pub nlu: String,
    pub tts: String,
}

impl Engines {
    /// True when the STT is a recognizer rather than the simulator.
    pub fn real_stt(&self) -> bool {
        !self.stt.starts_with("simulator")
    }
}

#[derive(Debug, Clone)]
pub struct RunConfig {
    /// `sip:HOST:PORT`.
    pub target: String,
    pub api: Option<ApiTarget>,
    pub flow_version: Option<u32>,
    pub concurrency: usize,
    pub engines: Engines,
    /// A tag unique to this run, put in every From user.
    pub run_tag: String,
}

/// One replayed call.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CallResult {
    pub id: String,
    pub did: String,
    pub sip_call_id: String,
    pub answered: bool,
    /// Why the call could not be made, or its record not read.
    pub error: Option<String>,
    pub setup_ms: u64,
    pub duration_ms: u64,
    pub rtp_sent: u64,
    pub rtp_received: u64,
    pub rtp_lost: u64,
    pub jitter_ms: f64,
    pub spans: Vec<TurnSpan>,
    pub wire: Vec<WireTurn>,
    pub fallback_heard_ms: Option<u32>,
    pub gateway: Option<GatewayOutcome>,
    pub checks: Vec<Check>,
    pub passed: bool,
    /// What the caller heard, 8 kHz, for the report's audio player.
    #[serde(skip)]
    pub heard: Vec<i16>,
}

/// `sip:HOST:PORT` → `HOST:PORT`.
pub fn host_port(target: &str) -> Result<String, RunError> {
    let rest = target
        .strip_prefix("sip:")
        .ok_or_else(|| RunError::Target(target.to_owned()))?;
    let rest = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    match rest.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() && p.parse::<u16>().is_ok() => Ok(rest.to_owned()),
        _ => Err(RunError::Target(target.to_owned())),
    }
}

/// The caller side of every call, from the built audio.
pub fn compose_all(set_dir: &Path, m: &Manifest) -> Result<Vec<CallerAudio>, RunError> {
    let mut out = Vec::new();
    for call in &m.calls {
        let mut failed = None;
        let audio = caller::compose(call, &m.defaults, |i| {
            let job = render::job_for(set_dir, m, &call.id, i, &call.turns[i])?;
            match render::read_pcm(&job.output) {
                Ok(pcm) => Some(pcm),
                Err(e) => {
                    failed = Some(e);
                    None
                }
            }
        });
        match (audio, failed) {
            (Ok(a), _) => out.push(a),
            (Err(_), Some(e)) => return Err(e.into()),
            (Err(e), None) => return Err(e.into()),
        }
    }
    Ok(out)
}

/// The `id` of the set's flow document.
pub fn flow_id(set_dir: &Path, m: &Manifest) -> Result<String, RunError> {
    let path = set_dir.join(&m.flow);
    let bad = |reason: String| RunError::Flow {
        path: path.display().to_string(),
        reason,
    };
    let text = std::fs::read_to_string(&path).map_err(|e| bad(e.to_string()))?;
    let v: Value = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    v["id"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| bad("no id".into()))
}

/// Replays every call; `on_done` sees each result as it finishes.
/// Results come back in manifest order.
pub async fn run_set(
    set_dir: &Path,
    m: &Manifest,
    cfg: &RunConfig,
    on_done: impl Fn(&CallResult) + Send + Sync + 'static,
) -> Result<Vec<CallResult>, RunError> {
    let hp = host_port(&cfg.target)?;
    let audio = compose_all(set_dir, m)?;
    if let (Some(v), Some(api)) = (cfg.flow_version, &cfg.api) {
        let client = voxgate_flows::client::ApiClient::new(&api.url, &api.key);
        let flow = flow_id(set_dir, m)?;
        client
            .rollback(&m.tenant, &flow, v)
            .await
            .map_err(|source| RunError::Rollback { version: v, source })?;
    }
    let http = reqwest::Client::new();
    let gate = Arc::new(tokio::sync::Semaphore::new(cfg.concurrency.max(1)));
    let on_done = Arc::new(on_done);
    let mut tasks = tokio::task::JoinSet::new();
    for (n, (call, audio)) in m.calls.iter().cloned().zip(audio).enumerate() {
        let ctx = CallCtx {
            hp: hp.clone(),
            did: call.did(&m.defaults).unwrap_or_default().to_owned(),
            hangup_ms: call.hangup_after_ms(&m.defaults),
            from_user: format!("eval-{}-{n}", cfg.run_tag),
            api: cfg.api.clone(),
            tenant: m.tenant.clone(),
            http: http.clone(),
        };
        let gate = gate.clone();
        let on_done = on_done.clone();
        tasks.spawn(async move {
            let _slot = gate.acquire_owned().await;
            let r = replay(&call, audio, &ctx).await;
            on_done(&r);
            (n, r)
        });
    }
    let mut results = Vec::new();
    while let Some(done) = tasks.join_next().await {
        if let Ok(r) = done {
            results.push(r);
        }
    }
    results.sort_by_key(|(n, _)| *n);
    Ok(results.into_iter().map(|(_, r)| r).collect())
}

struct CallCtx {
    hp: String,
    did: String,
    hangup_ms: u32,
    from_user: String,
    api: Option<ApiTarget>,
    tenant: String,
    http: reqwest::Client,
}

async fn replay(call: &Call, audio: CallerAudio, ctx: &CallCtx) -> CallResult {
    let mut opts = CallOptions::new(format!("sip:{}@{}", ctx.did, ctx.hp));
    let host = ctx.hp.rsplit_once(':').map_or("127.0.0.1", |(h, _)| h);
    opts.from = Some(format!("sip:{}@{host}", ctx.from_user));
    opts.play = Some(PlaybackSource::Pcm {
        samples: audio.pcm.clone().into(),
        sample_rate: RATE,
    });
    opts.keep_audio = true;
    opts.hangup_after = Duration::from_millis(u64::from(ctx.hangup_ms));
    if let Some((at, keys)) = &audio.dtmf {
        opts.dtmf = keys.clone();
        opts.dtmf_delay = Duration::from_millis(u64::from(*at));
        opts.dtmf_duration = Duration::from_millis(u64::from(DTMF_DIGIT_MS));
        opts.dtmf_gap = Duration::from_millis(u64::from(DTMF_GAP_MS));
    }
    let mut r = CallResult {
        id: call.id.clone(),
        did: ctx.did.clone(),
        sip_call_id: String::new(),
        answered: false,
        error: None,
        setup_ms: 0,
        duration_ms: 0,
        rtp_sent: 0,
        rtp_received: 0,
        rtp_lost: 0,
        jitter_ms: 0.0,
        spans: audio.spans.clone(),
        wire: Vec::new(),
        fallback_heard_ms: None,
        gateway: None,
        checks: Vec::new(),
        passed: false,
        heard: Vec::new(),
    };
    match softphone::run(opts).await {
        Ok(s) => {
            r.sip_call_id = s.call_id.clone();
            r.answered = s.answered();
            r.setup_ms = s.setup_ms;
            r.duration_ms = s.duration_ms;
            r.rtp_sent = s.rtp.packets_sent;
            r.rtp_received = s.rtp.packets_received;
            r.rtp_lost = s.rtp.packets_lost;
            r.jitter_ms = s.rtp.jitter_ms;
            r.heard = s.received_audio.unwrap_or_default();
            if !r.answered {
                r.error = Some(format!("not answered: {:?}", s.disposition));
            }
        }
        Err(e) => r.error = Some(format!("call failed: {e}")),
    }
    let levels = caller::frame_levels(&r.heard);
    r.wire = wire_turns(&r.spans, &levels);
    if r.answered {
        if let Some(api) = &ctx.api {
            match fetch_record(&ctx.http, api, &ctx.tenant, &ctx.did, &ctx.from_user).await {
                Ok(rec) => r.gateway = Some(outcome::from_record(&rec)),
                Err(e) => r.error = Some(e),
            }
        }
    }
    r.fallback_heard_ms = fallback_heard(&r, &levels);
    r.checks = check_call(call, &r.wire, r.gateway.as_ref(), r.fallback_heard_ms);
    r.passed = r.answered && r.error.is_none() && r.checks.iter().all(|c| c.pass);
    r
}

/// From the end of the caller's last waiting turn before the first
/// fallback to the first reply onset after that fallback (a filler played
/// before it is not the fallback prompt). The fallback's moment comes from
/// the call record; the onset is measured on the wire.
fn fallback_heard(r: &CallResult, levels: &[f64]) -> Option<u32> {
    let fb = r.gateway.as_ref()?.fallbacks.first()?;
    let at = u32::try_from(fb.at_call_ms).ok()?;
    let spoke = r
        .spans
        .iter()
        .filter(|s| s.awaits_reply && s.end_ms <= at)
        .map(|s| s.end_ms)
        .max()?;
    // One frame of slack: the record and the wire clocks start a few ms apart.
    let onset = caller::reply_onset(levels, at.saturating_sub(20), None)?;
    Some(onset.saturating_sub(spoke))
}

async fn get_json(http: &reqwest::Client, api: &ApiTarget, path: &str) -> Result<Value, String> {
    let url = format!("{}{path}", api.url.trim_end_matches('/'));
    let resp = http
        .get(&url)
        .bearer_auth(&api.key)
        .send()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    let status = resp.status();
    if !status.is_success() {
        return Err(format!("GET {url}: {status}"));
    }
    resp.json().await.map_err(|e| format!("GET {url}: {e}"))
}

/// The finished record of the call whose caller is `from_user`.
async fn fetch_record(
    http: &reqwest::Client,
    api: &ApiTarget,
    tenant: &str,
    did: &str,
    from_user: &str,
) -> Result<Value, String> {
    let started = voxgate_gateway::clock::now();
    let mut last_err = String::from("no call record with this caller yet");
    // A DID may start with `+`, which a query string reads as a space.
    let did = did.replace('+', "%2B");
    while voxgate_gateway::clock::now().saturating_duration_since(started) < RECORD_WAIT {
        match get_json(
            http,
            api,
            &format!("/v1/tenants/{tenant}/calls?did={did}&limit=200"),
        )
        .await
        {
            Ok(list) => {
                let id = list["items"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|c| c["caller"] == from_user)
                    .and_then(|c| c["id"].as_str().map(str::to_owned));
                if let Some(id) = id {
                    let rec =
                        get_json(http, api, &format!("/v1/tenants/{tenant}/calls/{id}")).await?;
                    if !rec["ended_at"].is_null() {
                        return Ok(rec);
                    }
                    last_err = "the call record never ended".into();
                }
            }
            Err(e) => last_err = e,
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Err(format!("call record of {from_user}: {last_err}"))
}

/// Where a recording goes in the report folder.
pub fn recording_path(report_dir: &Path, call: &str) -> PathBuf {
    report_dir.join("audio").join(format!("{call}.wav"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!(host_port("sip:127.0.0.1:5060").unwrap(), "127.0.0.1:5060");
        assert_eq!(
            host_port("sip:5000@gw.example:5070").unwrap(),
            "gw.example:5070"
        );
        assert!(host_port("127.0.0.1:5060").is_err());
        assert!(host_port("sip:127.0.0.1").is_err());
    }
}
