//! Health, readiness, metrics and graceful drain of `voxgate serve`.

use std::time::Duration;

use voxgate_tests::rawsip::{pcmu_offer, RawSip};
use voxgate_tests::{wait_until, Gateway, GatewayOptions, Sipp};

#[test]
fn health_ready_and_metrics_endpoints() {
    let gw = Gateway::start().expect("start");
    assert_eq!(gw.get("/healthz").expect("healthz").0, 200);
    assert_eq!(gw.get("/readyz").expect("readyz").0, 200);
    let (status, body) = gw.get("/metrics").expect("metrics");
    assert_eq!(status, 200);
    for name in [
        "voxgate_calls_active",
        "voxgate_rtp_packets_rx_total",
        "voxgate_rtp_pacing_jitter_ms_bucket",
    ] {
        assert!(body.contains(name), "/metrics lacks {name}:\n{body}");
    }
    assert_eq!(gw.get("/no-such-page").expect("404").0, 404);
}

#[test]
fn sigterm_drains_new_invites_get_503_and_calls_finish() {
    let mut gw = Gateway::start_with(GatewayOptions {
        env: vec![("VOXGATE_SHUTDOWN_DRAIN_TIMEOUT_S".into(), "20".into())],
        ..Default::default()
    })
    .expect("start");
    let target = gw.sip_addr();
    // A 7.5 s call keeps the gateway draining.
    let call =
        std::thread::spawn(move || Sipp::new("basic_audio.xml", target).run().expect("sipp"));
    let up = wait_until(Duration::from_secs(5), || {
        gw.metrics()
            .ok()
            .filter(|m| m.value("voxgate_calls_active") >= 1.0)
    });
    assert!(up.is_some(), "the call never became active");
    gw.sigterm().expect("SIGTERM");
    std::thread::sleep(Duration::from_millis(300));

    let mut raw = RawSip::new(target).expect("socket");
    let id = raw
        .send_request("INVITE", Some(&pcmu_offer(9)))
        .expect("invite");
    let finals: Vec<_> = raw
        .responses(Duration::from_secs(3), Some(&id))
        .into_iter()
        .filter(|r| r.status >= 200)
        .collect();
    let refusal = finals
        .first()
        .unwrap_or_else(|| panic!("no answer to an INVITE while draining:\n{}", gw.log_text()));
    assert_eq!(refusal.status, 503, "{}", refusal.text);
    assert!(
        refusal.header("Retry-After").is_some(),
        "503 without Retry-After:\n{}",
        refusal.text
    );
    assert_eq!(
        gw.get("/readyz").map(|r| r.0).unwrap_or(503),
        503,
        "readyz must fail while draining"
    );

    // The call in progress is not cut.
    let run = call.join().expect("sipp thread");
    run.assert_success();
    let status = gw
        .wait_exit(Duration::from_secs(10))
        .expect("gateway did not exit after its last call");
    assert!(status.success(), "exit status {status}");
}
