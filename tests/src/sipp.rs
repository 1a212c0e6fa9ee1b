//! Runs sipp scenarios from `tests/sipp/` against a gateway on loopback.
//!
//! Scenario files may use `@PCAP_DIR@`, replaced by [`crate::pcap_dir`]
//! before sipp reads them (sipp does not expand keywords in
//! `play_pcap_audio`). sipp always gets `-i 127.0.0.1 -mi 127.0.0.1` and a
//! `127.0.0.1` target.
#![allow(clippy::disallowed_methods)] // test code times itself with the real clock

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};

use crate::TempDir;

/// One sipp invocation, built up then [`Sipp::run`].
#[derive(Debug, Clone)]
pub struct Sipp {
    scenario: PathBuf,
    target: SocketAddr,
    service: String,
    keys: Vec<(String, String)>,
    args: Vec<String>,
    calls: u32,
    timeout: Duration,
    local_port: Option<u16>,
    media_port: Option<u16>,
}

/// What a sipp run left behind.
#[derive(Debug)]
pub struct SippRun {
    /// sipp's exit code: 0 all calls succeeded, 1 some failed, others are
    /// fatal errors (99 normal exit without calls processed is 0 for sipp 3.6).
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    /// `-trace_err`: unexpected messages and failures.
    pub errors: String,
    /// `-trace_msg`: every message sent and received.
    pub messages: String,
    pub elapsed: Duration,
    pub local_port: u16,
    pub media_port: u16,
}

impl SippRun {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// Panics with the error log and the message trace if sipp failed.
    #[track_caller]
    pub fn assert_success(&self) {
        assert!(
            self.success(),
            "sipp failed (exit {:?})\n{}",
            self.code,
            self.report()
        );
    }

    /// The error log, stderr and the message trace, for assertion messages.
    pub fn report(&self) -> String {
        format!(
            "--- sipp errors ---\n{}\n--- sipp stderr ---\n{}\n--- sipp messages ---\n{}",
            self.errors,
            self.stderr,
            truncate(&self.messages, 12_000)
        )
    }

    /// The messages sipp received, split from the `-trace_msg` log.
    pub fn received(&self) -> Vec<String> {
        split_trace(&self.messages, "received")
    }
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// sipp's message log separates messages with a dashed line carrying a
/// time stamp, followed by `UDP message received [N] bytes :` or
/// `UDP message sent (N bytes):`, a blank line and the message.
fn split_trace(log: &str, dir: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur: Option<String> = None;
    let mut expect_header = false;
    for line in log.lines() {
        if line.starts_with("----------") {
            if let Some(c) = cur.take() {
                out.push(c);
            }
            expect_header = true;
            continue;
        }
        if expect_header {
            expect_header = false;
            if line.contains(&format!("message {dir}")) {
                cur = Some(String::new());
            }
            continue;
        }
        if let Some(c) = cur.as_mut() {
            c.push_str(line);
            c.push('\n');
        }
    }
    if let Some(c) = cur {
        out.push(c);
    }
    out
}

impl Sipp {
    /// `scenario` is a file name in `tests/sipp/` (or a path); `target` is
    /// the gateway's SIP address and must be on 127.0.0.1.
    pub fn new(scenario: &str, target: SocketAddr) -> Self {
        let p = Path::new(scenario);
        let scenario = if p.is_absolute() {
            p.to_path_buf()
        } else {
            crate::sipp_dir().join(scenario)
        };
        Self {
            scenario,
            target,
            service: "1000".to_string(),
            keys: Vec::new(),
            args: Vec::new(),
            calls: 1,
            timeout: Duration::from_secs(30),
            local_port: None,
            media_port: None,
        }
    }

    /// The Request-URI user part (`-s`), the DID dialled. Default `1000`.
    pub fn service(mut self, s: &str) -> Self {
        self.service = s.to_string();
        self
    }

    /// `-key name value`: `[name]` in the scenario.
    pub fn key(mut self, name: &str, value: impl ToString) -> Self {
        self.keys.push((name.to_string(), value.to_string()));
        self
    }

    /// Any other sipp argument.
    pub fn arg(mut self, a: impl ToString) -> Self {
        self.args.push(a.to_string());
        self
    }

    /// Number of calls (`-m`), default 1.
    pub fn calls(mut self, n: u32) -> Self {
        self.calls = n;
        self
    }

    /// Global timeout (`-timeout`, fails when reached). Default 30 s.
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }

    pub fn local_port(mut self, p: u16) -> Self {
        self.local_port = Some(p);
        self
    }

    pub fn media_port(mut self, p: u16) -> Self {
        self.media_port = Some(p);
        self
    }

    /// Runs sipp to its end and collects its logs.
    pub fn run(self) -> anyhow::Result<SippRun> {
        self.spawn()?.wait()
    }

    /// Starts sipp in the background, for scenarios that wait for the
    /// gateway to call them (a UAS standing in for an agent). Its SIP port
    /// is [`SippChild::local_port`].
    pub fn spawn(self) -> anyhow::Result<SippChild> {
        let sipp = crate::require_tool("sipp")?;
        if !self.target.ip().is_loopback() {
            bail!("sipp target {} is not loopback", self.target);
        }
        let work = TempDir::new("voxgate-sipp")?;
        let text = std::fs::read_to_string(&self.scenario)
            .with_context(|| format!("reading {}", self.scenario.display()))?;
        let text = if text.contains("@PCAP_DIR@") {
            text.replace("@PCAP_DIR@", &crate::pcap_dir()?.display().to_string())
        } else {
            text
        };
        let name = self
            .scenario
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let scen = work.path().join(&name);
        std::fs::write(&scen, text)?;
        let local_port = match self.local_port {
            Some(p) => p,
            None => crate::free_udp_port()?,
        };
        let media_port = match self.media_port {
            Some(p) => p,
            None => crate::free_media_port()?,
        };
        let err_file = work.path().join("errors.log");
        let msg_file = work.path().join("messages.log");
        let mut cmd = Command::new(sipp);
        cmd.current_dir(work.path())
            .arg(format!("127.0.0.1:{}", self.target.port()))
            .arg("-sf")
            .arg(&scen)
            .args([
                "-i",
                "127.0.0.1",
                "-mi",
                "127.0.0.1",
                "-t",
                "u1",
                "-nostdin",
            ])
            .arg("-p")
            .arg(local_port.to_string())
            .arg("-mp")
            .arg(media_port.to_string())
            .arg("-s")
            .arg(&self.service)
            .arg("-m")
            .arg(self.calls.to_string())
            .arg("-timeout")
            .arg(format!("{}s", self.timeout.as_secs().max(1)))
            .arg("-timeout_error")
            .args(["-trace_err", "-error_file"])
            .arg(&err_file)
            .args(["-trace_msg", "-message_file"])
            .arg(&msg_file);
        for (k, v) in &self.keys {
            cmd.arg("-key").arg(k).arg(v);
        }
        cmd.args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let started = crate::now();
        let child = cmd.spawn().context("running sipp")?;
        Ok(SippChild {
            child,
            work,
            started,
            local_port,
            media_port,
        })
    }
}

/// A sipp started with [`Sipp::spawn`].
pub struct SippChild {
    child: std::process::Child,
    work: TempDir,
    started: std::time::Instant,
    local_port: u16,
    media_port: u16,
}

impl SippChild {
    /// The port sipp listens on for SIP.
    pub fn local_port(&self) -> u16 {
        self.local_port
    }

    /// Waits for sipp to end and collects its logs.
    pub fn wait(self) -> anyhow::Result<SippRun> {
        let out = self.child.wait_with_output().context("waiting for sipp")?;
        let read =
            |name: &str| std::fs::read_to_string(self.work.path().join(name)).unwrap_or_default();
        Ok(SippRun {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            errors: read("errors.log"),
            messages: read("messages.log"),
            elapsed: self.started.elapsed(),
            local_port: self.local_port,
            media_port: self.media_port,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_trace_by_direction() {
        let log = "----------------------------------------------- 2026-01-01 19:54:46.138645\n\
UDP message sent (10 bytes):\n\nINVITE x\n\n\
----------------------------------------------- 2026-01-01 19:54:46.139272\n\
UDP message received [20] bytes :\n\nSIP/2.0 200 OK\nVia: a\n\n\
----------------------------------------------- 2026-01-01 19:54:46.139999\n\
UDP message sent (3 bytes):\n\nACK\n";
        let r = split_trace(log, "received");
        assert_eq!(r.len(), 1);
        assert!(r[0].contains("SIP/2.0 200 OK"));
        assert!(!r[0].contains("ACK"));
    }
}
