//! AI node end-to-end helpers: the provider simulator in-process on
//! 127.0.0.1:0 (a test double of remote STT/NLU/TTS providers, over the
//! real worker protocol), a gateway configured to use it, a tenant with a
//! published flow on a number, caller audio spoken by espeak-ng, and the
//! call record's timeline from the API.
#![allow(clippy::disallowed_methods)] // test code times itself with the real clock

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use voxgate_stt_tts::simulator::{spawn_simulator, Script, SimulatorHandle};
use voxgate_stt_tts::worker::WorkerToken;

use crate::{voxgate_bin, wait_until, Gateway, GatewayOptions, TempDir};

/// The token the simulator and the gateway share in these tests.
pub const TOKEN: &str = "e2e-worker-token";
/// The tenant and number every AI test uses.
pub const TENANT: &str = "acme";

/// The provider simulator on its own runtime; stopped on drop.
pub struct Simulator {
    rt: tokio::runtime::Runtime,
    addr: SocketAddr,
    handle: SimulatorHandle,
    stop: CancellationToken,
}

impl Simulator {
    /// Serves `script` (the simulator's JSON) on 127.0.0.1:0.
    pub fn start(script: &Value) -> anyhow::Result<Self> {
        let script = Script::from_json(&script.to_string(), Path::new("."))?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let stop = CancellationToken::new();
        let (addr, handle) = rt.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let addr = listener.local_addr()?;
            let handle = spawn_simulator(listener, script, WorkerToken::new(TOKEN), stop.clone());
            anyhow::Ok((addr, handle))
        })?;
        Ok(Self {
            rt,
            addr,
            handle,
            stop,
        })
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    pub fn stt_sessions(&self) -> u32 {
        self.handle.stt_sessions()
    }

    pub fn nlu_sessions(&self) -> u32 {
        self.handle.nlu_sessions()
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        self.stop.cancel();
        let _ = &self.rt;
    }
}

/// A gateway whose AI engines are all the simulator's.
pub fn gateway_with_simulator(sim: &Simulator, dir: &Path) -> anyhow::Result<Gateway> {
    gateway_with_simulator_opts(sim, dir, GatewayOptions::default())
}

/// [`gateway_with_simulator`] with more options (the benchmark's RTP
/// ports and limits); the config file and the worker token are added.
pub fn gateway_with_simulator_opts(
    sim: &Simulator,
    dir: &Path,
    mut opts: GatewayOptions,
) -> anyhow::Result<Gateway> {
    let url = sim.ws_url();
    let config = format!(
        r#"
[ai.stt]
provider = "worker"
workers = ["{url}"]
[ai.nlu]
provider = "worker"
workers = ["{url}"]
[ai.tts]
provider = "worker"
workers = ["{url}"]
"#
    );
    let path = dir.join("voxgate.toml");
    std::fs::write(&path, config)?;
    opts.args
        .extend(["--config".into(), path.display().to_string()]);
    opts.env.push(("VOXGATE_WORKER_TOKEN".into(), TOKEN.into()));
    Gateway::start_with(opts)
}

/// The admin key the first start prints.
pub fn admin_key(gw: &Gateway) -> anyhow::Result<String> {
    let line = gw
        .wait_for_log(Duration::from_secs(10), |l| l.contains("Admin API key"))
        .context("the first start prints an admin key")?;
    line.split_whitespace()
        .find(|w| w.starts_with("vgk_"))
        .map(str::to_string)
        .context("a key in the line")
}

/// Runs the `voxgate` CLI against `gw`'s API with `key`.
pub fn voxgate(gw: &Gateway, key: &str, args: &[&str]) -> anyhow::Result<Output> {
    Ok(Command::new(voxgate_bin())
        .args(args)
        .env("VOXGATE_API_URL", format!("http://{}", gw.http_addr()))
        .env("VOXGATE_API_KEY", key)
        .output()?)
}

fn ok(out: Output) -> anyhow::Result<()> {
    ok_json(out).map(|_| ())
}

/// A CLI run that succeeded: its JSON on stdout (`null` when there is
/// none); a failure carries both outputs.
pub fn ok_json(out: Output) -> anyhow::Result<Value> {
    if !out.status.success() {
        bail!(
            "failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(serde_json::from_slice(&out.stdout).unwrap_or(Value::Null))
}

/// Creates the tenant, publishes `flow` and puts it on `number`.
pub fn publish(
    gw: &Gateway,
    key: &str,
    dir: &Path,
    flow: &Value,
    number: &str,
) -> anyhow::Result<()> {
    ok(voxgate(
        gw,
        key,
        &["tenants", "create", TENANT, "--name", "Acme"],
    )?)?;
    let path = dir.join("flow.json");
    std::fs::write(&path, serde_json::to_vec_pretty(flow)?)?;
    let id = flow["id"].as_str().context("flow id")?;
    ok(voxgate(
        gw,
        key,
        &[
            "flows",
            "push",
            &path.display().to_string(),
            "--tenant",
            TENANT,
        ],
    )?)?;
    ok(voxgate(
        gw,
        key,
        &[
            "flows",
            "publish",
            id,
            "--tenant",
            TENANT,
            "--comment",
            "e2e",
        ],
    )?)?;
    ok(voxgate(
        gw,
        key,
        &["numbers", "set", number, "--tenant", TENANT, "--flow", id],
    )?)?;
    Ok(())
}

/// Replaces the tenant's NOC policy with `policy` (a policy document).
pub fn set_policy(gw: &Gateway, key: &str, dir: &Path, policy: &Value) -> anyhow::Result<()> {
    let path = dir.join("policy.json");
    std::fs::write(&path, serde_json::to_vec_pretty(policy)?)?;
    ok(voxgate(
        gw,
        key,
        &["policy", "set", TENANT, &path.display().to_string()],
    )?)
}

/// One piece of what the caller says.
#[derive(Debug, Clone)]
pub enum Part {
    Silence(u32),
    Say(&'static str),
}

/// Where each spoken part starts and ends in the caller's audio, in ms.
#[derive(Debug, Clone, Default)]
pub struct Spoken {
    pub spans: Vec<(u32, u32)>,
    pub total_ms: u32,
}

/// Writes the caller's audio: espeak-ng speech and silences, at 8 kHz.
pub fn caller_audio(dir: &Path, name: &str, parts: &[Part]) -> anyhow::Result<(PathBuf, Spoken)> {
    let mut samples: Vec<i16> = Vec::new();
    let mut spoken = Spoken::default();
    for (i, part) in parts.iter().enumerate() {
        match part {
            Part::Silence(ms) => samples.extend(std::iter::repeat_n(0i16, (*ms * 8) as usize)),
            Part::Say(text) => {
                let wav = dir.join(format!("{name}-{i}.wav"));
                let st = Command::new("espeak-ng")
                    .args(["-v", "en-us", "-s", "160", "-w"])
                    .arg(&wav)
                    .arg(text)
                    .stdout(Stdio::null())
                    .status()
                    .context("espeak-ng runs")?;
                anyhow::ensure!(st.success(), "espeak-ng failed");
                let (rate, pcm) = crate::read_wav(&wav)?;
                // Nearest-sample decimation is plenty for a VAD and a
                // simulator that answers by script.
                let n = pcm.len() as u64 * 8_000 / u64::from(rate.max(1));
                let start = (samples.len() / 8) as u32;
                samples.extend((0..n).map(|k| pcm[(k * u64::from(rate) / 8_000) as usize]));
                spoken.spans.push((start, (samples.len() / 8) as u32));
            }
        }
    }
    spoken.total_ms = (samples.len() / 8) as u32;
    let path = dir.join(format!("{name}.wav"));
    crate::write_wav(&path, 8_000, &samples)?;
    Ok((path, spoken))
}

/// What a `voxgate call` reported and recorded.
pub struct CallRun {
    pub summary: Value,
    /// What the gateway sent, 8 kHz, one sample per 1/8 ms from the
    /// first packet on.
    pub heard: Vec<i16>,
}

/// Calls `number` playing `play`, recording, hanging up after `hangup`.
pub fn call(
    gw: &Gateway,
    number: &str,
    play: &Path,
    record: &Path,
    hangup: &str,
) -> anyhow::Result<CallRun> {
    let out = Command::new(voxgate_bin())
        .args([
            "call",
            &format!("sip:{number}@{}", gw.sip_addr()),
            "--hangup-after",
            hangup,
            "--json",
        ])
        .arg("--play")
        .arg(play)
        .arg("--record")
        .arg(record)
        .stderr(Stdio::null())
        .output()?;
    let summary: Value = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("call summary: {}", String::from_utf8_lossy(&out.stdout)))?;
    let heard = crate::read_wav(record).map(|(_, s)| s).unwrap_or_default();
    Ok(CallRun { summary, heard })
}

/// RMS of each 20 ms frame of `heard`.
pub fn frame_levels(heard: &[i16]) -> Vec<f64> {
    heard.chunks(160).map(crate::rms).collect()
}

/// One API request with `Connection: close`: the status and the JSON body
/// (`null` when the body is not JSON).
fn api(
    addr: SocketAddr,
    key: &str,
    method: &str,
    path: &str,
    headers: &str,
    body: &str,
) -> anyhow::Result<(u16, Value)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {key}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let (status, body) = crate::http::parse_response_pub(&raw)?;
    Ok((
        status,
        serde_json::from_str(body.trim()).unwrap_or(Value::Null),
    ))
}

/// `GET path` on the gateway's API.
pub fn api_get(gw: &Gateway, key: &str, path: &str) -> anyhow::Result<(u16, Value)> {
    api(gw.http_addr(), key, "GET", path, "", "")
}

/// Changes the tenant's NOC policy through `GET` and `PUT
/// /v1/tenants/{TENANT}/policy` (with the ETag the `GET` returned);
/// returns the `PUT`'s answer.
pub fn change_policy(
    gw: &Gateway,
    key: &str,
    edit: impl FnOnce(&mut Value),
) -> anyhow::Result<Value> {
    let path = format!("/v1/tenants/{TENANT}/policy");
    let (status, mut view) = api_get(gw, key, &path)?;
    if status != 200 {
        bail!("GET {path}: {status} {view}");
    }
    let etag = view["etag"].as_str().context("etag")?.to_string();
    edit(&mut view["policy"]);
    let body = serde_json::to_string(&view["policy"])?;
    let headers = format!("Content-Type: application/json\r\nIf-Match: \"{etag}\"\r\n");
    let (status, answer) = api(gw.http_addr(), key, "PUT", &path, &headers, &body)?;
    if status != 200 {
        bail!("PUT {path}: {status} {answer}");
    }
    Ok(answer)
}

/// The ids of the tenant's newest `n` calls, newest first.
pub fn newest_call_ids(gw: &Gateway, key: &str, n: usize) -> anyhow::Result<Vec<String>> {
    let mut ids = Vec::with_capacity(n);
    let mut cursor: Option<String> = None;
    while ids.len() < n {
        let mut path = format!("/v1/tenants/{TENANT}/calls?limit=500");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let (status, page) = api_get(gw, key, &path)?;
        anyhow::ensure!(status == 200, "listing calls: {status} {page}");
        let items = page["items"].as_array().context("items")?;
        ids.extend(
            items
                .iter()
                .filter_map(|c| c["id"].as_str().map(str::to_string))
                .take(n - ids.len()),
        );
        match page["next"].as_str() {
            Some(next) if !items.is_empty() => cursor = Some(next.to_string()),
            _ => break,
        }
    }
    Ok(ids)
}

/// The call record `id` of the tenant, as the API returns it.
pub fn call_record(gw: &Gateway, key: &str, id: &str) -> anyhow::Result<Value> {
    let (status, body) = api_get(gw, key, &format!("/v1/tenants/{TENANT}/calls/{id}"))?;
    anyhow::ensure!(status == 200, "call {id}: {status} {body}");
    Ok(body)
}

/// The newest call record of the tenant once it is complete.
pub fn last_call_record(gw: &Gateway, key: &str) -> anyhow::Result<Value> {
    wait_until(Duration::from_secs(15), || {
        let (status, list) = api_get(gw, key, &format!("/v1/tenants/{TENANT}/calls")).ok()?;
        if status != 200 {
            return None;
        }
        let id = list["items"].as_array()?.first()?["id"]
            .as_str()?
            .to_string();
        let (status, body) = api_get(gw, key, &format!("/v1/tenants/{TENANT}/calls/{id}")).ok()?;
        (status == 200 && !body["ended_at"].is_null()).then_some(body)
    })
    .context("a completed call record")
}

/// The timeline step of `node`.
pub fn step<'a>(record: &'a Value, node: &str) -> Option<&'a Value> {
    record["timeline"]
        .as_array()?
        .iter()
        .find(|s| s["node"] == node)
}

/// The node names of the timeline, in order.
pub fn path(record: &Value) -> Vec<String> {
    record["timeline"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| s["node"].as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// The AI records of `kind` in a step.
pub fn ai_records<'a>(step: &'a Value, kind: &str) -> Vec<&'a Value> {
    step["ai"]
        .as_array()
        .map(|a| a.iter().filter(|r| r["kind"] == kind).collect())
        .unwrap_or_default()
}

/// A fresh temp dir for one AI test.
pub fn temp(name: &str) -> anyhow::Result<TempDir> {
    TempDir::new(name)
}
