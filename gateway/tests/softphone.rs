//! The softphone against real peers on 127.0.0.1: sipp's built-in UAS, and
//! voxgate's own SIP server with the demo router, in-process.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use voxgate_gateway::dtmf::DtmfSource;
use voxgate_gateway::softphone::{self, CallOptions, Disposition, HangupBy};

/// A free UDP port on 127.0.0.1 (released before returning; a small race
/// with other processes is accepted).
fn free_udp_port() -> u16 {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    s.local_addr().expect("addr").port()
}

fn sipp_path() -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| PathBuf::from(d).join("sipp"))
        .find(|p| p.is_file())
}

/// sipp as a UAS, stopped by its PID on drop.
struct Sipp(Child);

impl Drop for Sipp {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_sipp_uas(port: u16) -> Option<Sipp> {
    let Some(bin) = sipp_path() else {
        // CI installs sipp (make deps); on a bare dev machine say so loudly.
        assert!(
            std::env::var_os("CI").is_none(),
            "sipp is required in CI: apt-get install sip-tester"
        );
        eprintln!("SKIPPED: sipp not installed (apt-get install sip-tester)");
        return None;
    };
    let media_port = free_udp_port();
    let child = Command::new(bin)
        .args([
            "-sn",
            "uas",
            "-i",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-mi",
            "127.0.0.1",
        ])
        .args([
            "-mp",
            &media_port.to_string(),
            "-rtp_echo",
            "-nostdin",
            "-timeout",
            "60s",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    // Give sipp a moment to bind.
    std::thread::sleep(Duration::from_millis(500));
    Some(Sipp(child))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answered_by_sipp_uas_and_hung_up_by_us() {
    let port = free_udp_port();
    let Some(_sipp) = start_sipp_uas(port) else {
        return;
    };
    let mut opts = CallOptions::new(format!("sip:1000@127.0.0.1:{port}"));
    opts.dtmf = "1#".into();
    // sipp's answer has no telephone-event, so RFC 4733 is not possible.
    opts.dtmf_mode = DtmfSource::Inband;
    opts.dtmf_delay = Duration::from_millis(200);
    opts.hangup_after = Duration::from_millis(1500);
    opts.timeout = Duration::from_secs(5);
    let dir = std::env::temp_dir().join(format!("voxgate-softphone-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let tone: Vec<i16> = (0..16_000)
        .map(|i| ((i as f64 * 2.0 * std::f64::consts::PI * 440.0 / 8000.0).sin() * 8000.0) as i16)
        .collect();
    let play = dir.join("tone.wav");
    voxgate_gateway::audio::write_wav(&play, &tone, 8000).expect("write wav");
    let record = dir.join("echo.wav");
    opts.play = Some(voxgate_gateway::call::PlaybackSource::Wav(play));
    opts.record = Some(record.clone());
    let summary = softphone::run(opts).await.expect("call");
    eprintln!(
        "{}",
        serde_json::to_string_pretty(&summary).unwrap_or_default()
    );
    assert_eq!(summary.disposition, Disposition::Answered, "{summary:?}");
    assert_eq!(summary.responses.last(), Some(&200), "{summary:?}");
    assert!(summary.responses.contains(&180), "{summary:?}");
    assert_eq!(summary.hangup_by, Some(HangupBy::Local));
    assert_eq!(summary.dtmf_sent, "1#");
    assert!(summary.duration_ms >= 1400, "{summary:?}");
    // 1.5 s of 20 ms packets, silence included.
    assert!(summary.rtp.packets_sent >= 50, "{summary:?}");
    // sipp echoes our RTP: the tone comes back.
    assert!(summary.rtp.packets_received >= 25, "{summary:?}");
    assert!(summary.rtp.non_silent_frames_received >= 10, "{summary:?}");
    // The echoed tones are detected in-band.
    assert_eq!(summary.received_digits(), "1#", "{summary:?}");
    let recorded = voxgate_gateway::audio::load_wav(&record).expect("recording");
    assert_eq!(recorded.sample_rate, 8000);
    assert!(
        recorded.samples.len() >= 8000,
        "{} samples",
        recorded.samples.len()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// voxgate's SIP server with the demo router, in-process on 127.0.0.1:0.
async fn start_demo_server(rtp_ports: &str) -> voxgate_gateway::sip::Server {
    let cfg = voxgate_gateway::config::GatewayConfig::from_toml_str(&format!(
        "[sip]\nlisten = \"127.0.0.1:0\"\nring_ms = 0\n[http]\nlisten = \"127.0.0.1:0\"\n[rtp]\nports = \"{rtp_ports}\"\n"
    ))
    .expect("config");
    let router = std::sync::Arc::new(voxgate_gateway::demo::DemoRouter::new(
        voxgate_gateway::demo::DemoConfig::default(),
    ));
    voxgate_gateway::sip::Server::start(cfg.sip_server_config().expect("sip config"), router)
        .await
        .expect("server")
}

fn demo_call(server: &voxgate_gateway::sip::Server, mode: DtmfSource) -> CallOptions {
    let mut opts = CallOptions::new(format!("sip:1000@{}", server.local_addr()));
    opts.dtmf = "1#".into();
    opts.dtmf_mode = mode;
    opts.dtmf_delay = Duration::from_millis(1500);
    opts.hangup_after = Duration::from_secs(5);
    opts.timeout = Duration::from_secs(5);
    opts.keep_audio = true;
    opts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_greets_and_takes_rfc4733_digits() {
    let server = start_demo_server("36000-36099").await;
    let summary = softphone::run(demo_call(&server, DtmfSource::Rfc4733))
        .await
        .expect("call");
    eprintln!(
        "{}",
        serde_json::to_string_pretty(&summary).unwrap_or_default()
    );
    assert_eq!(summary.disposition, Disposition::Answered, "{summary:?}");
    assert_eq!(summary.responses.last(), Some(&200), "{summary:?}");
    assert_eq!(summary.codec, Some("PCMU"));
    assert_eq!(summary.dtmf_sent, "1#");
    // The spoken greeting: at least half a second of non-silent audio.
    assert!(summary.rtp.non_silent_frames_received >= 25, "{summary:?}");
    let audio = summary.received_audio.as_ref().expect("kept audio");
    assert!(audio.len() >= 8000 * 3, "{} samples", audio.len());
    assert!(summary.rtp.packets_received >= 150, "{summary:?}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_takes_info_digits() {
    let server = start_demo_server("36100-36199").await;
    let summary = softphone::run(demo_call(&server, DtmfSource::Info))
        .await
        .expect("call");
    assert_eq!(summary.disposition, Disposition::Answered, "{summary:?}");
    // Each INFO was answered 2xx.
    assert_eq!(summary.dtmf_sent, "1#", "{summary:?}");
    server.shutdown().await;
}
