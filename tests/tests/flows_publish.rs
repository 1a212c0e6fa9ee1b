//! Flows end to end against the real `voxgate serve`: the admin commands
//! create a tenant, a key, a flow and a number; real SIP calls (the
//! built-in softphone) run it; a publish during a live call leaves that
//! call on its version while the next call gets the new one; a rollback
//! makes the old path live again.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use voxgate_tests::{voxgate_bin, wait_until, Gateway, TempDir};

fn admin_key(gw: &Gateway) -> String {
    voxgate_tests::ai::admin_key(gw).expect("the first start prints an admin key")
}

fn voxgate(gw: &Gateway, key: &str, args: &[&str]) -> Output {
    voxgate_tests::ai::voxgate(gw, key, args).expect("voxgate runs")
}

fn ok_json(out: Output) -> Value {
    voxgate_tests::ai::ok_json(out).expect("the command succeeds")
}

fn api_get(addr: SocketAddr, key: &str, path: &str) -> (u16, Value) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {key}\r\nConnection: close\r\n\r\n").expect("write");
    let mut text = String::new();
    s.read_to_string(&mut text).expect("read");
    let (head, body) = text.split_once("\r\n\r\n").expect("a response");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status");
    // Small JSON bodies only; a chunked body is one chunk here.
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body.split_once("\r\n")
            .map(|(_, rest)| rest.rsplit_once("\r\n0\r\n").map_or(rest, |(b, _)| b))
            .unwrap_or(body)
    } else {
        body
    };
    (
        status,
        serde_json::from_str(body.trim()).unwrap_or(Value::Null),
    )
}

fn call(gw: &Gateway, did: &str, hangup_after: &str) -> Child {
    Command::new(voxgate_bin())
        .args([
            "call",
            &format!("sip:{did}@{}", gw.sip_addr()),
            "--hangup-after",
            hangup_after,
            "--json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("voxgate call runs")
}

fn summary(child: Child) -> Value {
    let out = child.wait_with_output().expect("call ends");
    serde_json::from_slice(&out.stdout).expect("call summary JSON")
}

fn write_flow(dir: &Path, name: &str, doc: &Value) -> String {
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_vec_pretty(doc).expect("json")).expect("write flow");
    path.display().to_string()
}

/// `voxgate flows push` then `voxgate flows publish`; the publish reply.
fn push_and_publish(
    gw: &Gateway,
    key: &str,
    dir: &Path,
    file: &str,
    doc: &Value,
    comment: &str,
) -> Value {
    let path = write_flow(dir, file, doc);
    ok_json(voxgate(
        gw,
        key,
        &["flows", "push", &path, "--tenant", "acme"],
    ));
    ok_json(voxgate(
        gw,
        key,
        &[
            "flows",
            "publish",
            "care",
            "--tenant",
            "acme",
            "--comment",
            comment,
        ],
    ))
}

fn v1() -> Value {
    json!({"id": "care", "name": "Care", "entry": "v1_hello", "nodes": {
        "v1_hello": {"type": "say", "text": "This is version one of the care line.", "edges": {"next": "v1_wait"}},
        "v1_wait": {"type": "gather", "variable": "x", "max_digits": 1, "timeout_ms": 4000, "edges": {"next": "v1_bye"}},
        "v1_bye": {"type": "hangup"}
    }})
}

fn v2() -> Value {
    json!({"id": "care", "name": "Care", "entry": "v2_hello", "nodes": {
        "v2_hello": {"type": "say", "text": "Version two.", "edges": {"next": "v2_bye"}},
        "v2_bye": {"type": "hangup"}
    }})
}

fn calls(gw: &Gateway, key: &str) -> Vec<Value> {
    let (status, body) = api_get(gw.http_addr(), key, "/v1/tenants/acme/calls?did=4420");
    assert_eq!(status, 200, "{body}");
    body["items"].as_array().cloned().unwrap_or_default()
}

/// The version and node path of a call, once its record is final: the
/// gateway saves it right after the call ends, which may be a moment after
/// the softphone has seen the BYE.
fn nodes_of(gw: &Gateway, key: &str, id: &str) -> (u64, Vec<String>) {
    let body = wait_until(Duration::from_secs(10), || {
        let (status, body) = api_get(gw.http_addr(), key, &format!("/v1/tenants/acme/calls/{id}"));
        assert_eq!(status, 200, "{body}");
        (!body["ended_at"].is_null()).then_some(body)
    })
    .expect("the call record is completed");
    let nodes = body["timeline"]
        .as_array()
        .expect("timeline")
        .iter()
        .map(|s| s["node"].as_str().unwrap_or("").to_string())
        .collect();
    (body["version"].as_u64().expect("version"), nodes)
}

#[test]
fn publish_during_a_call_pins_versions_and_rollback_restores_the_old_path() {
    let gw = Gateway::start().expect("gateway starts");
    let admin = admin_key(&gw);
    let dir = TempDir::new("flows-e2e").expect("temp dir");

    ok_json(voxgate(
        &gw,
        &admin,
        &["tenants", "create", "acme", "--name", "Acme"],
    ));
    let created = ok_json(voxgate(
        &gw,
        &admin,
        &[
            "keys", "create", "--role", "editor", "--tenant", "acme", "--label", "cx",
        ],
    ));
    let editor = created["token"]
        .as_str()
        .expect("the key is shown once")
        .to_string();

    // Offline validation catches a broken flow before anything is pushed.
    let broken = json!({"id": "care", "name": "Care", "entry": "a", "nodes": {"a": {"type": "say", "text": "hi", "edges": {"next": "nowhere"}}}});
    let out = Command::new(voxgate_bin())
        .args([
            "flows",
            "validate",
            &write_flow(dir.path(), "broken.json", &broken),
        ])
        .output()
        .expect("runs");
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("nowhere"));

    // v1 live on 4420.
    let published = push_and_publish(&gw, &editor, dir.path(), "v1.json", &v1(), "first");
    assert_eq!(published["version"], 1, "{published}");
    ok_json(voxgate(
        &gw,
        &editor,
        &[
            "numbers", "set", "4420", "--tenant", "acme", "--flow", "care",
        ],
    ));

    // A long call on v1 is in progress...
    let long_call = call(&gw, "4420", "20s");
    let in_progress = wait_until(Duration::from_secs(10), || {
        calls(&gw, &editor)
            .into_iter()
            .find(|c| c["ended_at"].is_null())
            .map(|c| c["id"].as_str().unwrap_or("").to_string())
    })
    .expect("the call shows up as in progress");

    // ...when v2 is published. The next call runs v2 at once.
    let published = push_and_publish(&gw, &editor, dir.path(), "v2.json", &v2(), "shorter");
    assert_eq!(published["version"], 2, "{published}");
    let next = summary(call(&gw, "4420", "10s"));
    assert_eq!(next["disposition"]["kind"], "answered", "{next}");
    assert_eq!(next["hangup_by"], "remote", "v2 hangs up by itself: {next}");

    let first = summary(long_call);
    assert_eq!(first["disposition"]["kind"], "answered", "{first}");
    let (version, nodes) = nodes_of(&gw, &editor, &in_progress);
    assert_eq!(version, 1);
    assert_eq!(
        nodes,
        ["v1_hello", "v1_wait", "v1_bye"],
        "the call in progress finished on v1"
    );
    let latest = calls(&gw, &editor)
        .into_iter()
        .find(|c| c["id"] != in_progress.as_str())
        .expect("the second call");
    let (version, nodes) = nodes_of(&gw, &editor, latest["id"].as_str().expect("id"));
    assert_eq!(version, 2);
    assert_eq!(nodes, ["v2_hello", "v2_bye"]);

    // Roll back: the next call takes the old path again.
    let rolled = ok_json(voxgate(
        &gw,
        &editor,
        &[
            "flows",
            "rollback",
            "care",
            "--tenant",
            "acme",
            "--version",
            "1",
        ],
    ));
    assert_eq!(rolled["live_version"], 1, "{rolled}");
    summary(call(&gw, "4420", "15s"));
    let newest = calls(&gw, &editor)
        .into_iter()
        .next()
        .expect("newest call first");
    let (version, nodes) = nodes_of(&gw, &editor, newest["id"].as_str().expect("id"));
    assert_eq!(version, 1);
    assert_eq!(nodes[0], "v1_hello");
}

#[test]
fn unknown_numbers_get_404_and_unpublished_flows_480() {
    let gw = Gateway::start().expect("gateway starts");
    let admin = admin_key(&gw);
    let dir = TempDir::new("flows-e2e-480").expect("temp dir");
    ok_json(voxgate(
        &gw,
        &admin,
        &["tenants", "create", "acme", "--name", "Acme"],
    ));
    ok_json(voxgate(
        &gw,
        &admin,
        &[
            "flows",
            "push",
            &write_flow(dir.path(), "v1.json", &v1()),
            "--tenant",
            "acme",
        ],
    ));
    ok_json(voxgate(
        &gw,
        &admin,
        &[
            "numbers", "set", "4421", "--tenant", "acme", "--flow", "care",
        ],
    ));

    let unknown = summary(call(&gw, "5559999", "2s"));
    assert_eq!(unknown["disposition"]["kind"], "rejected", "{unknown}");
    assert_eq!(unknown["disposition"]["code"], 404, "{unknown}");
    let unpublished = summary(call(&gw, "4421", "2s"));
    assert_eq!(unpublished["disposition"]["code"], 480, "{unpublished}");
    // The log is read from the gateway's stderr as it comes: wait for it.
    assert!(
        gw.wait_for_log(std::time::Duration::from_secs(5), |l| l
            .contains("no published version"))
            .is_some(),
        "the 480 is explained in the log"
    );
}
