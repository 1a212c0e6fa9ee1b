//! A real softphone, baresip, calls the gateway: hears the greeting and
//! sends RFC 4733 DTMF.

use std::time::Duration;

use voxgate_tests::gateway::dtmf_digits_logged;
use voxgate_tests::{read_wav, rms, wait_until, write_wav, Baresip, Gateway, TempDir};

#[test]
fn baresip_call_hears_greeting_and_sends_dtmf() {
    let gw = Gateway::start().expect("start");
    let dir = TempDir::new("voxgate-baresip-src").expect("tmp");
    // 30 s of a quiet 300 Hz tone: longer than the call, since aufile ends
    // the call at end of file.
    let src = dir.path().join("mic.wav");
    let samples: Vec<i16> = (0..8000 * 30)
        .map(|i| ((i as f64 * 2.0 * std::f64::consts::PI * 300.0 / 8000.0).sin() * 1000.0) as i16)
        .collect();
    write_wav(&src, 8000, &samples).expect("wav");

    let mut phone = Baresip::start(&src).expect("baresip");
    phone
        .dial(&format!("sip:1000@{}", gw.sip_addr()))
        .expect("dial");
    phone
        .wait_event("CALL_ESTABLISHED", Duration::from_secs(10))
        .expect("answered");
    std::thread::sleep(Duration::from_millis(1500));
    phone
        .send_digits("5#", Duration::from_millis(600))
        .expect("digits");
    std::thread::sleep(Duration::from_millis(2500));
    phone.command("hangup", "").expect("hangup");
    phone
        .wait_event("CALL_CLOSED", Duration::from_secs(5))
        .expect("closed");
    phone.quit();

    let m = wait_until(Duration::from_secs(5), || {
        gw.metrics()
            .ok()
            .filter(|m| m.value("voxgate_dtmf_digits_total") >= 2.0)
    })
    .unwrap_or_else(|| {
        panic!(
            "gateway did not count 2 digits; log:\n{}\nbaresip:\n{}",
            gw.log_text(),
            phone.log()
        )
    });
    assert_eq!(m.value("voxgate_dtmf_digits_total"), 2.0);
    assert_eq!(dtmf_digits_logged(&gw.log_lines()), "5#");
    assert!(
        m.value("voxgate_rtp_packets_rx_total") >= 150.0,
        "baresip's audio did not reach the gateway"
    );
    let m = wait_until(Duration::from_secs(5), || {
        gw.metrics()
            .ok()
            .filter(|m| m.value("voxgate_calls_active") == 0.0)
    });
    assert!(m.is_some(), "call still active after baresip hung up");

    let dump = phone
        .decoded_wav()
        .unwrap_or_else(|| panic!("no decoded audio dump; baresip log:\n{}", phone.log()));
    let (rate, heard) = read_wav(&dump).expect("dump");
    assert_eq!(rate, 8000);
    assert!(
        heard.len() >= 8000 * 3,
        "only {} samples decoded",
        heard.len()
    );
    assert!(
        rms(&heard) > 100.0,
        "baresip heard silence (rms {})",
        rms(&heard)
    );
}
