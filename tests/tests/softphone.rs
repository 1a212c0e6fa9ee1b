//! `voxgate call` (the built-in UAC) against `voxgate serve`.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use voxgate_tests::gateway::dtmf_digits_logged;
use voxgate_tests::{voxgate_bin, wait_until, Gateway, TempDir};

fn call(gw: &Gateway, extra: &[&str]) -> (Option<i32>, Value, String) {
    let target = format!("sip:1000@{}", gw.sip_addr());
    let out = Command::new(voxgate_bin())
        .arg("call")
        .arg(&target)
        .args(["--local-ip", "127.0.0.1", "--json"])
        .args(extra)
        .env("NO_COLOR", "1")
        .output()
        .expect("run voxgate call");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    // The summary is the last JSON object printed on stdout.
    let json = stdout
        .lines()
        .rev()
        .find_map(|l| {
            serde_json::from_str::<Value>(l.trim())
                .ok()
                .filter(Value::is_object)
        })
        .or_else(|| serde_json::from_str::<Value>(stdout.trim()).ok())
        .unwrap_or_else(|| panic!("no JSON summary on stdout:\n{stdout}\nstderr:\n{stderr}"));
    (out.status.code(), json, stderr)
}

fn u(v: &Value, path: &[&str]) -> u64 {
    let mut cur = v;
    for p in path {
        cur = &cur[*p];
    }
    cur.as_u64()
        .unwrap_or_else(|| panic!("{} missing in {v}", path.join(".")))
}

fn check_dtmf_mode(mode: &str, digits: &str) {
    let gw = Gateway::start().expect("start");
    let dir = TempDir::new("voxgate-call").expect("tmp");
    let rec = dir.path().join("rec.wav");
    let rec_arg = rec.display().to_string();
    let (code, s, stderr) = call(
        &gw,
        &[
            "--dtmf",
            digits,
            "--dtmf-mode",
            mode,
            "--dtmf-delay",
            "1s",
            "--hangup-after",
            "5s",
            "--record",
            &rec_arg,
        ],
    );
    assert_eq!(code, Some(0), "voxgate call failed: {s}\n{stderr}");
    let responses: Vec<u64> = s["responses"]
        .as_array()
        .expect("responses")
        .iter()
        .filter_map(Value::as_u64)
        .collect();
    assert!(responses.contains(&200), "no 200 in {responses:?}");
    assert_eq!(s["disposition"]["kind"], "answered", "{s}");
    assert_eq!(s["hangup_by"], "local", "{s}");
    assert_eq!(s["dtmf_sent"], digits, "{s}");
    // 5 s of call: the greeting must have arrived as real audio.
    assert!(u(&s, &["rtp", "packets_received"]) >= 100, "{s}");
    assert!(
        u(&s, &["rtp", "non_silent_frames_received"]) >= 25,
        "greeting not audible: {s}"
    );
    assert!(u(&s, &["rtp", "packets_sent"]) >= 100, "{s}");
    assert_eq!(u(&s, &["rtp", "packets_lost"]), 0, "{s}");
    let (rate, samples) = voxgate_tests::read_wav(&rec).expect("recording");
    assert_eq!(rate, 8000);
    assert!(voxgate_tests::rms(&samples) > 100.0, "recording is silent");

    let n = digits.chars().count() as f64;
    let m = wait_until(Duration::from_secs(5), || {
        gw.metrics()
            .ok()
            .filter(|m| m.value("voxgate_dtmf_digits_total") >= n)
    })
    .unwrap_or_else(|| panic!("gateway never counted {n} digits; log:\n{}", gw.log_text()));
    assert_eq!(m.value("voxgate_dtmf_digits_total"), n);
    assert_eq!(
        dtmf_digits_logged(&gw.log_lines()),
        digits,
        "log:\n{}",
        gw.log_text()
    );
}

#[test]
fn call_with_rfc4733_digits() {
    check_dtmf_mode("rfc4733", "1#");
}

#[test]
fn call_with_sip_info_digits() {
    check_dtmf_mode("info", "42");
}

#[test]
fn call_with_inband_digits() {
    check_dtmf_mode("inband", "7*");
}

#[test]
fn call_to_unknown_port_times_out_cleanly() {
    // Nothing listens there: the softphone must give up and say so.
    let port = voxgate_tests::free_udp_port().expect("port");
    let out = Command::new(voxgate_bin())
        .arg("call")
        .arg(format!("sip:1000@127.0.0.1:{port}"))
        .args(["--local-ip", "127.0.0.1", "--json", "--timeout", "2s"])
        .output()
        .expect("run");
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
