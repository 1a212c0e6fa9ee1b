//! The `voxgate` binary end to end on 127.0.0.1: config errors and exit
//! codes, `serve` with port 0, readiness, a `voxgate call` to the demo,
//! and a clean drain on SIGTERM.
#![allow(clippy::disallowed_methods)] // test code times itself with the real clock

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn voxgate() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_voxgate"));
    c.env_remove("VOXGATE_CONFIG")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
    c
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("run voxgate")
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("voxgate-cli-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

#[test]
fn defaults_print_and_check_ok() {
    let out = run(voxgate().args(["config", "defaults"]));
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).expect("utf8");
    assert!(
        text.contains("[sip]") && text.contains("listen = \"0.0.0.0:5060\""),
        "{text}"
    );
    let dir = temp_dir("defaults");
    let file = dir.join("defaults.toml");
    std::fs::write(&file, &text).expect("write");
    let out = run(voxgate().args(["config", "check"]).arg(&file));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_config_exits_64_naming_the_key() {
    let out = run(voxgate().args(["serve", "--rtp-ports", "10001-20000"]));
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("rtp.ports: low port 10001 must be even"),
        "{err}"
    );

    let out = run(voxgate()
        .args(["serve"])
        .env("VOXGATE_SIP_LISTEN", "nowhere"));
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("sip.listen"));

    let dir = temp_dir("bad");
    let file = dir.join("bad.toml");
    std::fs::write(&file, "[sip]\nlissten = \"0.0.0.0:5060\"\n").expect("write");
    let out = run(voxgate().args(["config", "check"]).arg(&file));
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("sip.lissten: unknown key"));
    let out = run(voxgate()
        .args(["serve", "--config"])
        .arg(dir.join("missing.toml")));
    assert_eq!(out.status.code(), Some(64));
    let _ = std::fs::remove_dir_all(&dir);

    // A bad command line is a usage error too.
    assert_eq!(
        run(voxgate().args(["serve", "--no-such-flag"]))
            .status
            .code(),
        Some(64)
    );
    assert_eq!(run(voxgate().args(["call"])).status.code(), Some(64));
}

/// A running `voxgate serve`, killed by PID if the test fails early.
struct Served {
    child: Child,
    sip: SocketAddr,
    http: SocketAddr,
    log: mpsc::Receiver<String>,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn addr_after(line: &str, marker: &str) -> Option<SocketAddr> {
    let rest = &line[line.find(marker)? + marker.len()..];
    rest.split_whitespace().next()?.parse().ok()
}

fn serve(data_dir: &std::path::Path, rtp_ports: &str) -> Served {
    let mut child = voxgate()
        .args([
            "serve",
            "--sip-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
            "--rtp-ports",
            rtp_ports,
        ])
        .arg("--data-dir")
        .arg(data_dir)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn serve");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, log) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let (mut sip, mut http) = (None, None);
    let deadline = Instant::now() + Duration::from_secs(20);
    while sip.is_none() || http.is_none() {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = log.recv_timeout(left).expect("serve logs its addresses");
        sip = sip.or_else(|| addr_after(&line, "sip listening on "));
        http = http.or_else(|| addr_after(&line, "http listening on "));
    }
    let (Some(sip), Some(http)) = (sip, http) else {
        unreachable!()
    };
    assert_ne!(sip.port(), 0);
    assert_ne!(http.port(), 0);
    Served {
        child,
        sip,
        http,
        log,
    }
}

fn http_status(addr: SocketAddr, path: &str) -> u16 {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[test]
fn serve_answers_a_call_and_drains_on_sigterm() {
    let dir = temp_dir("serve");
    let mut served = serve(&dir, "36400-36499");
    assert_eq!(http_status(served.http, "/healthz"), 200);
    assert_eq!(http_status(served.http, "/readyz"), 200);

    let out = run(voxgate()
        .arg("call")
        .arg(format!("sip:1000@{}", served.sip))
        .args([
            "--dtmf",
            "5",
            "--dtmf-mode",
            "info",
            "--dtmf-delay",
            "500ms",
            "--hangup-after",
            "2s",
            "--json",
        ]));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json summary");
    assert_eq!(summary["disposition"]["kind"], "answered", "{summary}");
    assert_eq!(summary["dtmf_sent"], "5", "{summary}");
    assert!(
        summary["rtp"]["packets_received"].as_u64().unwrap_or(0) > 50,
        "{summary}"
    );
    assert!(
        summary["rtp"]["non_silent_frames_received"]
            .as_u64()
            .unwrap_or(0)
            > 10,
        "{summary}"
    );
    assert_eq!(http_status(served.http, "/metrics"), 200);

    let pid = served.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill")
        .success());
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = served.child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "serve did not stop after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0));
    let log: Vec<String> = served.log.try_iter().collect();
    assert!(log.iter().any(|l| l.contains("draining")), "{log:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn call_to_nobody_exits_nonzero() {
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let port = sock.local_addr().expect("addr").port();
    let out = run(voxgate()
        .arg("call")
        .arg(format!("sip:1@127.0.0.1:{port}"))
        .args(["--timeout", "500ms", "--json"]));
    assert_eq!(out.status.code(), Some(2));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(summary["disposition"]["kind"], "timeout");
}
