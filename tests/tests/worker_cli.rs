//! `voxgate worker` serves the worker protocol behind a bearer token.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use voxgate_tests::{voxgate_bin, wait_until};

fn upgrade_status(port: u16, token: Option<&str>) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{auth}\r\n"
    )
    .ok()?;
    let mut buf = [0u8; 256];
    let n = s.read(&mut buf).ok()?;
    String::from_utf8_lossy(&buf[..n])
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[test]
fn worker_refuses_connections_without_the_token() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let mut child = Command::new(voxgate_bin())
        .args([
            "worker",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--engines",
            "tts,nlu",
        ])
        .env("VOXGATE_WORKER_TOKEN", "s3cret")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("voxgate worker starts");
    let refused = wait_until(Duration::from_secs(10), || upgrade_status(port, None));
    let wrong = upgrade_status(port, Some("guess"));
    let accepted = upgrade_status(port, Some("s3cret"));
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(refused, Some(401));
    assert_eq!(wrong, Some(401));
    assert_eq!(accepted, Some(101));
}

#[test]
fn a_worker_without_a_whisper_model_says_how_to_get_one() {
    let out = Command::new(voxgate_bin())
        .env_remove("VOXGATE_WHISPER_MODEL")
        .args(["worker", "--engines", "stt", "--token", "x"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--whisper-model"), "{stderr}");
    assert!(stderr.contains("voxgate models fetch whisper"), "{stderr}");
}
