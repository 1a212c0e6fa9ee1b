//! Starts the real `voxgate serve` for one test and stops it by its PID.
#![allow(clippy::disallowed_methods)] // test code times itself with the real clock

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use anyhow::{bail, Context};

use crate::http::{http_get, Metrics};
use crate::TempDir;

/// How long a gateway may take to log its addresses and turn ready.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Extra settings for [`Gateway::start_with`].
#[derive(Debug, Default, Clone)]
pub struct GatewayOptions {
    /// Extra arguments after `serve ...`.
    pub args: Vec<String>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// Skip waiting for `GET /readyz` to answer 200.
    pub no_ready_wait: bool,
    /// RTP ports instead of a 200-port block of 10000..30000.
    pub rtp_ports: Option<(u16, u16)>,
    /// `RUST_LOG` for the gateway; default `$VOXGATE_TEST_LOG` or `info`.
    /// It must keep the `voxgate` target at info: the listen addresses are
    /// read from its log.
    pub log_filter: Option<String>,
}

#[derive(Default)]
struct LogBuf {
    lines: Vec<String>,
    closed_streams: u8,
}

/// A running `voxgate serve` on 127.0.0.1 with its own data dir and RTP
/// port block. Killed (SIGKILL, by PID) on drop; its log is printed when the
/// test is panicking.
pub struct Gateway {
    child: Child,
    sip: SocketAddr,
    http: SocketAddr,
    log: Arc<(Mutex<LogBuf>, Condvar)>,
    data_dir: TempDir,
    rtp_ports: (u16, u16),
    _port_lock: PortBlockLock,
}

impl Gateway {
    /// Starts a gateway with default settings.
    pub fn start() -> anyhow::Result<Self> {
        Self::start_with(GatewayOptions::default())
    }

    /// Starts a gateway with `opts`. A start that fails because the port
    /// the kernel gave the UDP listener is taken on TCP ("Address already in
    /// use", a race inherent to binding both on port 0) is retried twice.
    pub fn start_with(opts: GatewayOptions) -> anyhow::Result<Self> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match Self::start_once(&opts) {
                Err(e) if attempt < 3 && format!("{e:#}").contains("Address already in use") => {
                    eprintln!("voxgate-tests: gateway start raced for a port, retrying: {e:#}");
                }
                r => return r,
            }
        }
    }

    fn start_once(opts: &GatewayOptions) -> anyhow::Result<Self> {
        let bin = crate::voxgate_bin();
        if !bin.is_file() {
            bail!(
                "{} not found: build it with `cargo build --release` or set VOXGATE_BIN",
                bin.display()
            );
        }
        let data_dir = TempDir::new("voxgate-e2e")?;
        let lock = PortBlockLock::acquire()?;
        let (lo, hi) = opts.rtp_ports.unwrap_or_else(|| lock.range());
        let mut cmd = Command::new(&bin);
        cmd.arg("serve")
            .args([
                "--sip-listen",
                "127.0.0.1:0",
                "--http-listen",
                "127.0.0.1:0",
            ])
            .arg("--data-dir")
            .arg(data_dir.path())
            .arg("--rtp-ports")
            .arg(format!("{lo}-{hi}"))
            .args(&opts.args)
            .env("NO_COLOR", "1")
            .env(
                "RUST_LOG",
                opts.log_filter.clone().unwrap_or_else(|| {
                    std::env::var("VOXGATE_TEST_LOG").unwrap_or_else(|_| "info".to_string())
                }),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("spawning {}", bin.display()))?;
        let log: Arc<(Mutex<LogBuf>, Condvar)> = Arc::default();
        if let Some(out) = child.stdout.take() {
            spawn_reader(out, log.clone());
        }
        if let Some(err) = child.stderr.take() {
            spawn_reader(err, log.clone());
        }

        let deadline = crate::now() + START_TIMEOUT;
        let addrs = loop {
            let (found, closed) = {
                let guard = lock_log(&log);
                (parse_listen_addrs(&guard.lines), guard.closed_streams)
            };
            if let (Some(sip), Some(http)) = found {
                break (sip, http);
            }
            if let Ok(Some(status)) = child.try_wait() {
                bail!(
                    "voxgate exited ({status}) before logging its addresses:\n{}",
                    tail(&log, 60)
                );
            }
            if closed >= 2 || crate::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "voxgate did not log its SIP and HTTP addresses within {START_TIMEOUT:?}:\n{}",
                    tail(&log, 60)
                );
            }
            let guard = lock_log(&log);
            let _ = log.1.wait_timeout(guard, Duration::from_millis(100));
        };
        let gw = Gateway {
            child,
            sip: addrs.0,
            http: addrs.1,
            log,
            data_dir,
            rtp_ports: (lo, hi),
            _port_lock: lock,
        };
        if !opts.no_ready_wait {
            let ready = crate::wait_until(START_TIMEOUT, || match http_get(gw.http, "/readyz") {
                Ok((200, _)) => Some(()),
                _ => None,
            });
            if ready.is_none() {
                bail!("GET /readyz never answered 200:\n{}", gw.log_text());
            }
        }
        Ok(gw)
    }

    /// The bound SIP address (UDP).
    pub fn sip_addr(&self) -> SocketAddr {
        self.sip
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.data_dir.path().to_path_buf()
    }

    /// The RTP port range this gateway was given.
    pub fn rtp_ports(&self) -> (u16, u16) {
        self.rtp_ports
    }

    /// `GET path` on the HTTP listener: status and body.
    pub fn get(&self, path: &str) -> anyhow::Result<(u16, String)> {
        http_get(self.http, path)
    }

    /// The current `/metrics`.
    pub fn metrics(&self) -> anyhow::Result<Metrics> {
        let (status, body) = self.get("/metrics")?;
        anyhow::ensure!(status == 200, "GET /metrics answered {status}");
        Ok(Metrics::parse(&body))
    }

    /// Every log line so far.
    pub fn log_lines(&self) -> Vec<String> {
        lock_log(&self.log).lines.clone()
    }

    pub fn log_text(&self) -> String {
        self.log_lines().join("\n")
    }

    /// Waits until a log line satisfies `pred`; returns it.
    pub fn wait_for_log(&self, timeout: Duration, pred: impl Fn(&str) -> bool) -> Option<String> {
        let deadline = crate::now() + timeout;
        let mut seen = 0;
        let mut guard = lock_log(&self.log);
        loop {
            if let Some(l) = guard.lines[seen..].iter().find(|l| pred(l)) {
                return Some(l.clone());
            }
            seen = guard.lines.len();
            let now = crate::now();
            if now >= deadline {
                return None;
            }
            guard = match self.log.1.wait_timeout(guard, deadline - now) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
    }

    /// Sends SIGTERM (graceful drain) by PID.
    pub fn sigterm(&self) -> anyhow::Result<()> {
        let st = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status()?;
        anyhow::ensure!(st.success(), "kill -TERM {} failed", self.pid());
        Ok(())
    }

    /// Whether the process is still running.
    pub fn is_alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits for the process to exit; `None` on timeout.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = crate::now() + timeout;
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Some(st);
            }
            if crate::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() || std::env::var_os("VOXGATE_TEST_ECHO").is_some() {
            eprintln!(
                "---- voxgate log (last 200 lines) ----\n{}\n----",
                tail(&self.log, 200)
            );
        }
    }
}

fn lock_log(log: &Arc<(Mutex<LogBuf>, Condvar)>) -> std::sync::MutexGuard<'_, LogBuf> {
    match log.0.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

fn tail(log: &Arc<(Mutex<LogBuf>, Condvar)>, n: usize) -> String {
    let g = lock_log(log);
    let start = g.lines.len().saturating_sub(n);
    g.lines[start..].join("\n")
}

fn spawn_reader(stream: impl Read + Send + 'static, log: Arc<(Mutex<LogBuf>, Condvar)>) {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let line = strip_ansi(&String::from_utf8_lossy(&buf));
                    let line = line.trim_end().to_string();
                    lock_log(&log).lines.push(line);
                    log.1.notify_all();
                }
            }
        }
        lock_log(&log).closed_streams += 1;
        log.1.notify_all();
    });
}

/// The DTMF digits the gateway logged, in order: from lines that mention
/// "dtmf" and carry a `digit` field in any of tracing's text or JSON forms
/// (`digit=1`, `digit='1'`, `digit="1"`, `"digit":"1"`).
pub fn dtmf_digits_logged(lines: &[String]) -> String {
    let mut out = String::new();
    for line in lines {
        if !line.to_ascii_lowercase().contains("dtmf") {
            continue;
        }
        let mut rest = line.as_str();
        while let Some(i) = rest.find("digit") {
            let after = &rest[i + "digit".len()..];
            let value = after
                .trim_start_matches(['"', ' '])
                .strip_prefix([':', '='])
                .map(|v| v.trim_start_matches([' ', '"', '\'']));
            if let Some(c) = value.and_then(|v| v.chars().next()) {
                if c.is_ascii_digit() || matches!(c, '*' | '#' | 'A'..='D') {
                    out.push(c);
                    break;
                }
            }
            rest = after;
        }
    }
    out
}

/// Removes ANSI colour escapes (`ESC [ ... letter`).
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for c2 in chars.by_ref() {
                if c2.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Finds the SIP and HTTP listen addresses in start-up log lines. Each
/// `127.0.0.1:PORT` (or `[::1]:PORT`) is attributed to whichever of "sip"
/// or "http" occurs last in the text before it (since the previous address),
/// so both `sip listening on 127.0.0.1:5060` and
/// `listening sip=127.0.0.1:5060 http=127.0.0.1:8080` parse.
pub fn parse_listen_addrs(lines: &[String]) -> (Option<SocketAddr>, Option<SocketAddr>) {
    let mut sip = None;
    let mut http = None;
    for line in lines {
        let lower = line.to_ascii_lowercase();
        let mut window_start = 0;
        for (pos, addr) in find_addrs(&lower) {
            let before = &lower[window_start..pos];
            window_start = pos;
            let s = before.rfind("sip");
            let h = before.rfind("http");
            let is_sip = match (s, h) {
                (Some(s), Some(h)) => s > h,
                (Some(_), None) => true,
                _ => false,
            };
            if is_sip {
                sip.get_or_insert(addr);
            } else if h.is_some() {
                http.get_or_insert(addr);
            }
        }
    }
    (sip, http)
}

fn find_addrs(s: &str) -> Vec<(usize, SocketAddr)> {
    let mut out = Vec::new();
    for prefix in ["127.0.0.1:", "[::1]:"] {
        let mut from = 0;
        while let Some(i) = s[from..].find(prefix) {
            let start = from + i;
            let digits_start = start + prefix.len();
            let digits: String = s[digits_start..]
                .chars()
                .take_while(|c| c.is_ascii_digit())
                .collect();
            if let Ok(port) = digits.parse::<u16>() {
                if port != 0 {
                    if let Ok(a) =
                        format!("{}{}", &s[start..digits_start], port).parse::<SocketAddr>()
                    {
                        out.push((start, a));
                    }
                }
            }
            from = digits_start;
        }
    }
    out.sort_by_key(|(p, _)| *p);
    out
}

/// One of 100 blocks of 200 RTP ports in 10000..30000, held through a lock
/// file so parallel gateways (one per test process) never share ports.
struct PortBlockLock {
    block: u16,
    path: PathBuf,
}

impl PortBlockLock {
    const BASE: u16 = 10_000;
    const SIZE: u16 = 200;
    const BLOCKS: u16 = 100;

    fn acquire() -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join("voxgate-e2e-ports");
        std::fs::create_dir_all(&dir)?;
        let start = (std::process::id() % u32::from(Self::BLOCKS)) as u16;
        for i in 0..Self::BLOCKS {
            let block = (start + i) % Self::BLOCKS;
            let path = dir.join(format!("block-{block}"));
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut f) => {
                    use std::io::Write;
                    let _ = write!(f, "{}", std::process::id());
                    return Ok(Self { block, path });
                }
                Err(_) => {
                    // Take over a block whose owner process is gone.
                    let owner = std::fs::read_to_string(&path).unwrap_or_default();
                    let alive = owner.trim().parse::<u32>().is_ok_and(|pid| {
                        pid == std::process::id()
                            || std::path::Path::new(&format!("/proc/{pid}")).exists()
                    });
                    if !alive && std::fs::remove_file(&path).is_ok() {
                        if let Ok(mut f) = std::fs::OpenOptions::new()
                            .write(true)
                            .create_new(true)
                            .open(&path)
                        {
                            use std::io::Write;
                            let _ = write!(f, "{}", std::process::id());
                            return Ok(Self { block, path });
                        }
                    }
                }
            }
        }
        bail!("all RTP port blocks are taken")
    }

    fn range(&self) -> (u16, u16) {
        let lo = Self::BASE + self.block * Self::SIZE;
        (lo, lo + Self::SIZE - 1)
    }
}

impl Drop for PortBlockLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_separate_lines() {
        let l = lines(&[
            "2026-01-01T00:00:00Z  INFO voxgate: starting",
            "2026-01-01T00:00:00Z  INFO voxgate::sip: SIP listening on udp 127.0.0.1:40123",
            "2026-01-01T00:00:00Z  INFO voxgate::http: HTTP listening addr=127.0.0.1:40999",
        ]);
        assert_eq!(
            parse_listen_addrs(&l),
            (
                Some("127.0.0.1:40123".parse().expect("addr")),
                Some("127.0.0.1:40999".parse().expect("addr"))
            )
        );
    }

    #[test]
    fn parses_one_line_with_both_and_json() {
        let l = lines(&[
            r#"{"level":"INFO","fields":{"message":"listening","sip":"127.0.0.1:5062","http":"127.0.0.1:8081"}}"#,
        ]);
        assert_eq!(
            parse_listen_addrs(&l),
            (
                Some("127.0.0.1:5062".parse().expect("addr")),
                Some("127.0.0.1:8081".parse().expect("addr"))
            )
        );
        let l = lines(&["listening http_listen=127.0.0.1:8081 sip_listen=127.0.0.1:5062"]);
        assert_eq!(
            parse_listen_addrs(&l),
            (
                Some("127.0.0.1:5062".parse().expect("addr")),
                Some("127.0.0.1:8081".parse().expect("addr"))
            )
        );
    }

    #[test]
    fn ignores_unrelated_and_port_zero() {
        let l = lines(&[
            "config sip_listen=127.0.0.1:0 http_listen=127.0.0.1:0",
            "rtp bound 127.0.0.1:20000",
        ]);
        assert_eq!(parse_listen_addrs(&l), (None, None));
    }

    #[test]
    fn finds_logged_digits() {
        let l = lines(&[
            "INFO voxgate::demo: dtmf digit=1 source=rfc4733",
            "INFO voxgate::sip: call answered digits=none",
            r##"{"message":"DTMF received","digit":"#","call":"x"}"##,
            "INFO dtmf event digit='*' duration_ms=160",
            "INFO dtmf received digits_total=3",
        ]);
        assert_eq!(dtmf_digits_logged(&l), "1#*");
    }

    #[test]
    fn strips_colour() {
        assert_eq!(strip_ansi("\u{1b}[32m INFO\u{1b}[0m x"), " INFO x");
    }

    #[test]
    fn port_blocks_are_exclusive() {
        let a = PortBlockLock::acquire().expect("a");
        let b = PortBlockLock::acquire().expect("b");
        assert_ne!(a.range(), b.range());
        assert_eq!(a.range().1 - a.range().0 + 1, 200);
    }
}
