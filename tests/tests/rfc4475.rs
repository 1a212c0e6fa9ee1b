//! RFC 4475 torture messages sent over UDP to a live gateway, every address
//! in them rewritten to 127.0.0.1 first. The gateway must survive all of
//! them, answer the ones RFC 4475 says to answer, and still answer OPTIONS.
#![allow(clippy::disallowed_methods)] // test code times itself with the real clock

use std::time::Duration;

use voxgate_tests::rawsip::RawSip;
use voxgate_tests::torture::rewrite;
use voxgate_tests::{Gateway, GatewayOptions};

/// What RFC 4475 (and `shared/testdata/rfc4475/README.md`) expects of a UAS.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// Some response, any status.
    Answered,
    /// A final response with one of these codes.
    Final(&'static [u16]),
    /// A final response that refuses: 300..=699.
    Refused,
    /// Invalid: no 2xx; if a final response comes it is 4xx-6xx.
    NotAccepted,
    /// Invalid with a specific code if answered at all.
    IfAnswered(&'static [u16]),
    /// A stray response: nothing may come back.
    Silence,
}

fn expectation(name: &str) -> Option<Expect> {
    use Expect::*;
    Some(match name {
        // 3.1.1 valid
        "wsinv" | "esc01" | "longreq" | "dblreq" | "mpart01" | "escnull" => Answered,
        "intmeth" | "esc02" => Final(&[405, 501]),
        "lwsdisp" | "semiuri" | "transports" => Final(&[200]),
        "unreason" | "noreason" => Silence,
        // 3.1.2 invalid
        "badvers" => IfAnswered(&[505]),
        "scalarlg" | "bigcode" => Silence,
        "badinv01" | "clerr" | "ncl" | "scalar02" | "quotbal" | "ltgtruri" | "lwsruri"
        | "lwsstart" | "trws" | "escruri" | "baddate" | "regbadct" | "badaspec" | "baddn"
        | "mismatch01" | "mismatch02" => NotAccepted,
        // 3.2
        "badbranch" => Final(&[200]),
        // 3.3 application layer
        "insuf" => IfAnswered(&[400]),
        "unkscm" => Final(&[416]),
        "novelsc" => Final(&[416, 200]),
        "unksm2" | "cparam01" | "cparam02" | "regescrt" => Answered,
        "bext01" => Final(&[420]),
        "invut" => Final(&[415]),
        "regaut01" => Refused,
        "multi01" | "mcl01" => Final(&[400]),
        "bcast" => Silence,
        "zeromf" => Final(&[200]),
        "sdp01" => Final(&[406]),
        // 3.4
        "inv2543" => Answered,
        _ => return None,
    })
}

fn check(name: &str, statuses: &[u16]) -> Result<(), String> {
    let finals: Vec<u16> = statuses.iter().copied().filter(|s| *s >= 200).collect();
    let last_final = finals.last().copied();
    let bad = |why: &str| Err(format!("{name}: {why}; got {statuses:?}"));
    let Some(expect) = expectation(name) else {
        return bad("no expectation for this file");
    };
    match expect {
        Expect::Answered if statuses.is_empty() => bad("expected an answer"),
        Expect::Answered => Ok(()),
        Expect::Final(codes) => match last_final {
            Some(s) if codes.contains(&s) => Ok(()),
            _ => bad(&format!("expected a final {codes:?}")),
        },
        Expect::Refused => match last_final {
            Some(s) if s >= 300 => Ok(()),
            _ => bad("expected a refusal (3xx-6xx)"),
        },
        Expect::NotAccepted => {
            if finals.iter().any(|s| *s < 300) {
                bad("an invalid message was accepted")
            } else {
                Ok(())
            }
        }
        Expect::IfAnswered(codes) => match last_final {
            None => Ok(()),
            Some(s) if codes.contains(&s) => Ok(()),
            Some(_) => bad(&format!("if answered, expected {codes:?}")),
        },
        Expect::Silence if statuses.is_empty() => Ok(()),
        Expect::Silence => bad("a response must not be answered"),
    }
}

#[test]
fn torture_messages_over_udp() {
    let dir = voxgate_tests::rfc4475_dir();
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("RFC 4475 data at {}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().and_then(|x| x.to_str()) == Some("dat"))
        .collect();
    files.sort();
    assert_eq!(
        files.len(),
        49,
        "the 49 RFC 4475 messages in {}",
        dir.display()
    );

    let mut gw = Gateway::start_with(GatewayOptions {
        env: vec![
            ("VOXGATE_SIP_INVITE_RATE_PER_SECOND".into(), "1000".into()),
            ("VOXGATE_SIP_INVITE_RATE_BURST".into(), "1000".into()),
        ],
        ..Default::default()
    })
    .expect("start");
    let target = gw.sip_addr();

    // One socket per message, so every answer is attributable; all are in
    // flight at once and collected for up to 3 s each.
    let handles: Vec<_> = files
        .iter()
        .map(|path| {
            let path = path.clone();
            std::thread::spawn(move || {
                let name = path
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let raw = RawSip::new(target).expect("socket");
                let msg = rewrite(&std::fs::read(&path).expect("read"), raw.local_port());
                raw.send_raw(&msg).expect("send");
                // Wait for a final answer, or the full window for silence.
                let mut statuses = Vec::new();
                let deadline = voxgate_tests::now() + Duration::from_secs(3);
                while voxgate_tests::now() < deadline {
                    let got = raw.responses(Duration::from_millis(300), None);
                    statuses.extend(got.iter().map(|r| r.status));
                    if statuses.iter().any(|s| *s >= 200) {
                        break;
                    }
                }
                (name, statuses)
            })
        })
        .collect();
    let mut problems = Vec::new();
    for h in handles {
        let (name, statuses) = h.join().expect("thread");
        eprintln!("rfc4475 {name:<12} -> {statuses:?}");
        if let Err(p) = check(&name, &statuses) {
            problems.push(p);
        }
    }

    assert!(
        gw.is_alive(),
        "voxgate died during the torture test:\n{}",
        gw.log_text()
    );
    let mut probe = RawSip::new(target).expect("socket");
    let ok = probe.options(Duration::from_secs(3)).expect("options");
    assert_eq!(
        ok.as_ref().map(|r| r.status),
        Some(200),
        "OPTIONS after the torture messages"
    );
    assert!(
        problems.is_empty(),
        "{} torture messages mishandled:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[test]
fn expectations_cover_every_message() {
    // Guards the table above against renamed or added files.
    let dir = voxgate_tests::rfc4475_dir();
    for e in std::fs::read_dir(&dir).expect("data").flatten() {
        let p = e.path();
        if p.extension().and_then(|x| x.to_str()) != Some("dat") {
            continue;
        }
        let name = p
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let expect = expectation(&name).unwrap_or_else(|| panic!("{name} has no expectation"));
        // `check` itself must reject a silent gateway for the must-answer ones.
        if matches!(
            expect,
            Expect::Answered | Expect::Final(_) | Expect::Refused
        ) {
            assert!(
                check(&name, &[]).is_err(),
                "{name} would pass without any answer"
            );
        }
    }
    assert!(check("bext01", &[100, 200]).is_err());
    assert!(check("bext01", &[420]).is_ok());
    assert!(check("bcast", &[200]).is_err());
    assert!(check("badinv01", &[200]).is_err());
    assert!(check("badinv01", &[]).is_ok());
}
