//! A headless baresip softphone for end-to-end tests.
//!
//! baresip 1.0 (Debian 12) is configured from a temp dir: SIP on
//! 127.0.0.1 only, no account registration, the `aufile` module as audio
//! source, ALSA's `null` device as player, the `sndfile` filter dumping the
//! decoded far-end audio to WAV, and `ctrl_tcp` on 127.0.0.1 so the test
//! drives it with netstring JSON commands and reads its events.
#![allow(clippy::disallowed_methods)] // test code times itself with the real clock

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::{json, Value};

use crate::TempDir;

/// A running baresip, killed by PID on drop.
pub struct Baresip {
    child: Child,
    dir: TempDir,
    ctrl: TcpStream,
    inbuf: Vec<u8>,
    events: Vec<Value>,
    token: u64,
    pub sip_port: u16,
}

impl Baresip {
    /// Starts baresip with `source_wav` (8 kHz mono S16) as microphone.
    pub fn start(source_wav: &Path) -> anyhow::Result<Self> {
        let bin = crate::require_tool("baresip")?;
        let dir = TempDir::new("voxgate-baresip")?;
        let sip_port = crate::free_udp_port()?;
        let ctrl_port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0")?;
            l.local_addr()?.port()
        };
        // A 100-port RTP window below the ephemeral range and above the
        // gateways' blocks (10000..30000).
        let rtp_lo = 30_000 + (std::process::id() % 26) as u16 * 100;
        let template = std::fs::read_to_string(crate::repo_root().join("tests/baresip/config"))
            .context("reading tests/baresip/config")?;
        let config = template
            .replace("@SIP_PORT@", &sip_port.to_string())
            .replace("@CTRL_PORT@", &ctrl_port.to_string())
            .replace("@RTP_LO@", &rtp_lo.to_string())
            .replace("@RTP_HI@", &(rtp_lo + 99).to_string())
            .replace("@SOURCE@", &source_wav.display().to_string())
            .replace("@DIR@", &dir.path().display().to_string());
        std::fs::write(dir.path().join("config"), config)?;
        std::fs::write(
            dir.path().join("accounts"),
            "<sip:tester@127.0.0.1>;regint=0\n",
        )?;
        std::fs::write(dir.path().join("contacts"), "")?;
        let log = std::fs::File::create(dir.path().join("baresip.log"))?;
        let child = Command::new(bin)
            .arg("-f")
            .arg(dir.path())
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("spawning baresip")?;
        let ctrl_addr: SocketAddr = ([127, 0, 0, 1], ctrl_port).into();
        let mut child = child;
        let ctrl = match wait_connect(ctrl_addr) {
            Ok(c) => c,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                let log =
                    std::fs::read_to_string(dir.path().join("baresip.log")).unwrap_or_default();
                bail!("{e}\nbaresip log:\n{log}");
            }
        };
        let b = Self {
            child,
            dir,
            ctrl,
            inbuf: Vec::new(),
            events: Vec::new(),
            token: 0,
            sip_port,
        };
        b.ctrl.set_read_timeout(Some(Duration::from_millis(100)))?;
        Ok(b)
    }

    /// baresip's console output so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("baresip.log")).unwrap_or_default()
    }

    /// Runs a long command (`dial`, `hangup`, `sndcode`, `quit`, ...) and
    /// returns its response object.
    pub fn command(&mut self, command: &str, params: &str) -> anyhow::Result<Value> {
        self.token += 1;
        let token = self.token.to_string();
        let body = json!({"command": command, "params": params, "token": token}).to_string();
        let frame = format!("{}:{},", body.len(), body);
        self.ctrl.write_all(frame.as_bytes())?;
        let deadline = crate::now() + Duration::from_secs(5);
        loop {
            if let Some(i) = self.events.iter().position(|v| {
                v.get("response").is_some()
                    && v.get("token").and_then(Value::as_str) == Some(&token)
            }) {
                return Ok(self.events.remove(i));
            }
            if crate::now() >= deadline {
                bail!("no response to `{command}`\nbaresip log:\n{}", self.log());
            }
            self.pump()?;
        }
    }

    /// Dials `uri` (must be on 127.0.0.1).
    pub fn dial(&mut self, uri: &str) -> anyhow::Result<()> {
        anyhow::ensure!(
            uri.contains("@127.0.0.1"),
            "refusing to dial non-loopback {uri}"
        );
        self.command("dial", uri).map(|_| ())
    }

    /// Sends DTMF digits one by one (RFC 4733), `gap` apart.
    pub fn send_digits(&mut self, digits: &str, gap: Duration) -> anyhow::Result<()> {
        for d in digits.chars() {
            self.command("sndcode", &d.to_string())?;
            std::thread::sleep(gap);
        }
        Ok(())
    }

    /// Waits for an event of `kind` (`CALL_ESTABLISHED`, `CALL_CLOSED`, ...).
    pub fn wait_event(&mut self, kind: &str, timeout: Duration) -> anyhow::Result<Value> {
        let deadline = crate::now() + timeout;
        loop {
            if let Some(i) = self.events.iter().position(|v| {
                v.get("event").is_some() && v.get("type").and_then(Value::as_str) == Some(kind)
            }) {
                return Ok(self.events.remove(i));
            }
            if crate::now() >= deadline {
                bail!(
                    "no {kind} event within {timeout:?}\nbaresip log:\n{}",
                    self.log()
                );
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                bail!(
                    "baresip exited ({st}) waiting for {kind}\nbaresip log:\n{}",
                    self.log()
                );
            }
            self.pump()?;
        }
    }

    /// Reads whatever the control socket has and splits netstrings.
    fn pump(&mut self) -> anyhow::Result<()> {
        let mut buf = [0u8; 8192];
        match self.ctrl.read(&mut buf) {
            Ok(0) => bail!(
                "baresip closed the control connection\nbaresip log:\n{}",
                self.log()
            ),
            Ok(n) => self.inbuf.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(e.into()),
        }
        while let Some((msg, used)) = parse_netstring(&self.inbuf) {
            if let Ok(v) = serde_json::from_slice::<Value>(msg) {
                self.events.push(v);
            }
            self.inbuf.drain(..used);
        }
        Ok(())
    }

    /// The far-end audio baresip decoded (`sndfile` dump), if written.
    pub fn decoded_wav(&self) -> Option<PathBuf> {
        std::fs::read_dir(self.dir.path())
            .ok()?
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("dump-") && n.ends_with("-dec.wav"))
            })
    }

    /// Asks baresip to quit and waits up to 5 s, so its WAV dumps are closed.
    pub fn quit(&mut self) {
        let _ = self.command("quit", "");
        let deadline = crate::now() + Duration::from_secs(5);
        while crate::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Baresip {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- baresip log ----\n{}\n----", self.log());
        }
    }
}

fn wait_connect(addr: SocketAddr) -> anyhow::Result<TcpStream> {
    let deadline = crate::now() + Duration::from_secs(10);
    loop {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
            Ok(s) => return Ok(s),
            Err(e) if crate::now() >= deadline => {
                bail!("baresip ctrl_tcp at {addr} not reachable: {e}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// One netstring (`LEN:BYTES,`) from the front of `b`: the payload and the
/// bytes it used, or `None` if incomplete.
fn parse_netstring(b: &[u8]) -> Option<(&[u8], usize)> {
    let colon = b.iter().position(|&c| c == b':')?;
    let len: usize = std::str::from_utf8(&b[..colon]).ok()?.trim().parse().ok()?;
    let start = colon + 1;
    let end = start + len;
    if b.len() < end + 1 {
        return None;
    }
    Some((&b[start..end], end + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netstrings() {
        let b = b"5:hello,3:abc,2:x";
        let (m, used) = parse_netstring(b).expect("first");
        assert_eq!((m, used), (&b"hello"[..], 8));
        let (m, used2) = parse_netstring(&b[used..]).expect("second");
        assert_eq!((m, used2), (&b"abc"[..], 6));
        assert!(parse_netstring(&b[used + used2..]).is_none());
    }
}
