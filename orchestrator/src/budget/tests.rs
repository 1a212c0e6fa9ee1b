//! Budgets and breakers on a virtual clock: `t0 + offset`, no sleeping.

use super::*;

fn at(t0: Instant, n: u64) -> Instant {
    t0 + Duration::from_millis(n)
}

fn drain(b: &mut TurnBudget) -> Vec<BudgetEvent> {
    std::iter::from_fn(|| b.poll_event()).collect()
}

/// Runs the budget like a driver: sleep to the next deadline, fire it.
fn run_until(b: &mut TurnBudget, end: Instant) -> Vec<(Instant, BudgetEvent)> {
    let mut out = Vec::new();
    while let Some(t) = b.poll_timeout().filter(|t| *t <= end) {
        b.handle_timeout(t);
        out.extend(drain(b).into_iter().map(|e| (t, e)));
    }
    out
}

#[test]
fn the_fallback_fires_exactly_at_the_hard_deadline() {
    let t0 = Instant::now();
    let mut b = TurnBudget::new(BudgetConfig::default());
    b.begin_turn();
    b.handle_start(t0, Stage::TtsFirstByte);
    assert_eq!(b.poll_timeout(), Some(at(t0, 600)));
    b.handle_timeout(at(t0, 599));
    assert!(drain(&mut b).is_empty());
    b.handle_timeout(at(t0, 600));
    assert_eq!(
        drain(&mut b),
        vec![BudgetEvent::Filler {
            stage: Stage::TtsFirstByte,
            elapsed_ms: 600
        }]
    );
    assert_eq!(b.poll_timeout(), Some(at(t0, 2_500)));
    b.handle_timeout(at(t0, 2_500) - Duration::from_nanos(1));
    assert!(
        drain(&mut b).is_empty(),
        "one nanosecond early is not the deadline"
    );
    b.handle_timeout(at(t0, 2_500));
    let ev = drain(&mut b);
    let [BudgetEvent::Fallback(d)] = ev.as_slice() else {
        panic!("{ev:?}")
    };
    assert_eq!(d.fallback.outcome(), "fallback_dtmf");
    assert_eq!(
        d.reason,
        FallbackReason::Deadline {
            stage: Stage::TtsFirstByte,
            elapsed_ms: 2_500,
            hard_ms: 2_500
        }
    );
    assert_eq!(d.reason.code(), "deadline_tts_first_byte");
    assert_eq!(
        d.to_string(),
        "tts_first_byte took 2500 ms >= hard 2500 ms → fallback_dtmf"
    );
    assert!(b.is_spent());
    assert_eq!(b.poll_timeout(), None);
}

#[test]
fn output_before_the_soft_threshold_clears_both_timers() {
    let t0 = Instant::now();
    let mut b = TurnBudget::new(BudgetConfig::default());
    b.handle_start(t0, Stage::NluFirstToken);
    assert_eq!(
        b.handle_done(at(t0, 250), Stage::NluFirstToken),
        Some(Duration::from_millis(250))
    );
    assert_eq!(b.poll_timeout(), None);
    assert!(run_until(&mut b, at(t0, 60_000)).is_empty());
}

#[test]
fn the_filler_plays_once_per_turn() {
    let t0 = Instant::now();
    let mut b = TurnBudget::new(BudgetConfig::default());
    b.begin_turn();
    b.handle_start(t0, Stage::Turn);
    b.handle_start(t0, Stage::NluFirstToken);
    let ev = run_until(&mut b, at(t0, 1_300));
    // NLU soft (700) fires the filler; the turn's soft (1200) does not again.
    assert_eq!(
        ev,
        vec![(
            at(t0, 700),
            BudgetEvent::Filler {
                stage: Stage::NluFirstToken,
                elapsed_ms: 700
            }
        )]
    );
    b.handle_done(at(t0, 1_300), Stage::NluFirstToken);
    b.handle_done(at(t0, 1_400), Stage::Turn);
    // A new turn may play a filler again.
    b.begin_turn();
    b.handle_start(at(t0, 5_000), Stage::Turn);
    let ev = run_until(&mut b, at(t0, 6_300));
    assert_eq!(
        ev,
        vec![(
            at(t0, 6_200),
            BudgetEvent::Filler {
                stage: Stage::Turn,
                elapsed_ms: 1_200
            }
        )]
    );
}

#[test]
fn the_first_hard_breach_wins_and_nothing_follows() {
    let t0 = Instant::now();
    let config = BudgetConfig {
        fallback: Fallback::Agent,
        ..BudgetConfig::default()
    };
    let mut b = TurnBudget::new(config);
    b.handle_start(t0, Stage::Turn); // hard 5000
    b.handle_start(at(t0, 100), Stage::SttFinal); // hard 1500 → at 1600
    let ev = run_until(&mut b, at(t0, 10_000));
    assert_eq!(ev.len(), 2, "{ev:?}");
    assert_eq!(
        ev[0],
        (
            at(t0, 1_200),
            BudgetEvent::Filler {
                stage: Stage::Turn,
                elapsed_ms: 1_200
            }
        )
    );
    let (when, BudgetEvent::Fallback(d)) = &ev[1] else {
        panic!("{ev:?}")
    };
    assert_eq!(*when, at(t0, 1_600));
    assert_eq!(d.fallback.outcome(), "fallback_agent");
    assert_eq!(
        d.reason,
        FallbackReason::Deadline {
            stage: Stage::SttFinal,
            elapsed_ms: 1_500,
            hard_ms: 1_500
        }
    );
    b.handle_start(at(t0, 11_000), Stage::Turn);
    assert_eq!(b.poll_timeout(), None, "a spent budget arms nothing");
}

#[test]
fn a_stalled_stream_falls_back_and_progress_rearms_the_timer() {
    let t0 = Instant::now();
    let mut b = TurnBudget::new(BudgetConfig::default());
    b.handle_stream_open(t0, Provider::Tts);
    b.handle_progress(at(t0, 2_000), Provider::Tts);
    assert_eq!(b.deadline(Timer::Stall(Provider::Tts)), Some(at(t0, 5_000)));
    let ev = run_until(&mut b, at(t0, 10_000));
    assert_eq!(
        ev,
        vec![(
            at(t0, 5_000),
            BudgetEvent::Fallback(FallbackDecision {
                fallback: Fallback::Dtmf,
                reason: FallbackReason::Stall {
                    provider: Provider::Tts,
                    silent_ms: 3_000
                }
            })
        )]
    );
    let mut closed = TurnBudget::new(BudgetConfig::default());
    closed.handle_stream_open(t0, Provider::Stt);
    closed.handle_stream_closed(Provider::Stt);
    assert_eq!(closed.poll_timeout(), None);
}

#[test]
fn a_provider_error_falls_back_at_once_with_the_reason() {
    let t0 = Instant::now();
    let mut b = TurnBudget::new(BudgetConfig::default());
    b.handle_start(t0, Stage::SttFinal);
    let err = voxgate_stt_tts::EngineError::ConnectionLost {
        reason: "worker closed".into(),
    };
    b.handle_provider_error(at(t0, 10), Provider::Stt, &err);
    let ev = drain(&mut b);
    let [BudgetEvent::Fallback(d)] = ev.as_slice() else {
        panic!("{ev:?}")
    };
    assert_eq!(d.reason.code(), "stt_error");
    assert!(matches!(
        &d.reason,
        FallbackReason::ProviderError {
            retryable: true,
            ..
        }
    ));
    assert_eq!(
        d.to_string(),
        "stt failed: the connection to the engine was lost: worker closed → fallback_dtmf"
    );
    // A second error after the fallback adds nothing.
    b.handle_provider_error(at(t0, 20), Provider::Tts, &err);
    assert!(drain(&mut b).is_empty());
}

fn breaker() -> CircuitBreaker {
    CircuitBreaker::new(BreakerConfig {
        failures: 3,
        window_ms: 10_000,
        cooldown_ms: 5_000,
        probes: 1,
    })
}

#[test]
fn failures_in_the_window_open_the_breaker_old_ones_slide_out() {
    let t0 = Instant::now();
    let mut b = breaker();
    b.handle_failure(t0);
    b.handle_failure(at(t0, 1_000));
    // The first slides out of the 10 s window before the third arrives.
    b.handle_failure(at(t0, 10_000));
    assert_eq!(b.admit(at(t0, 10_000)), Admission::Allowed);
    b.handle_failure(at(t0, 10_500));
    assert_eq!(
        b.state(),
        &BreakerState::Open {
            until: at(t0, 15_500)
        }
    );
    assert_eq!(
        b.admit(at(t0, 15_499)),
        Admission::Rejected {
            retry_at: at(t0, 15_500)
        }
    );
}

#[test]
fn half_open_probes_close_or_reopen() {
    let t0 = Instant::now();
    let mut b = breaker();
    for i in 0..3 {
        b.handle_failure(at(t0, i));
    }
    let open_until = at(t0, 5_002);
    assert_eq!(b.admit(open_until), Admission::Probe);
    assert_eq!(
        b.admit(open_until),
        Admission::Rejected {
            retry_at: at(t0, 10_002)
        },
        "one probe at a time"
    );
    // The probe fails: open again for a full cool-down.
    b.handle_failure(at(t0, 6_000));
    assert_eq!(
        b.admit(at(t0, 6_001)),
        Admission::Rejected {
            retry_at: at(t0, 11_000)
        }
    );
    // Next probe succeeds: closed.
    assert_eq!(b.admit(at(t0, 11_000)), Admission::Probe);
    b.handle_success(at(t0, 11_500));
    assert!(matches!(b.state(), BreakerState::Closed { failures } if failures.is_empty()));
    assert_eq!(b.admit(at(t0, 11_501)), Admission::Allowed);
}

#[test]
fn a_probe_that_never_reports_expires() {
    let t0 = Instant::now();
    let mut b = breaker();
    for i in 0..3 {
        b.handle_failure(at(t0, i));
    }
    assert_eq!(b.admit(at(t0, 6_000)), Admission::Probe);
    assert!(matches!(
        b.admit(at(t0, 10_999)),
        Admission::Rejected { .. }
    ));
    assert_eq!(b.admit(at(t0, 11_000)), Admission::Probe);
}

#[test]
fn the_registry_keys_by_tenant_and_provider() {
    let t0 = Instant::now();
    let reg = BreakerRegistry::new(BreakerConfig {
        failures: 2,
        window_ms: 10_000,
        cooldown_ms: 5_000,
        probes: 1,
    });
    reg.handle_failure(t0, "acme", Provider::Tts, "worker");
    reg.handle_failure(t0, "acme", Provider::Tts, "worker");
    assert!(matches!(
        reg.admit(t0, "acme", Provider::Tts, "worker"),
        Admission::Rejected { .. }
    ));
    assert_eq!(
        reg.admit(t0, "acme", Provider::Stt, "worker"),
        Admission::Allowed
    );
    assert_eq!(
        reg.admit(t0, "other", Provider::Tts, "worker"),
        Admission::Allowed
    );
    let refused = reg.admit_call(
        at(t0, 1_000),
        "acme",
        &[
            (Provider::Stt, vec!["worker".into()]),
            (Provider::Nlu, vec!["worker".into()]),
            (Provider::Tts, vec!["worker".into()]),
        ],
    );
    assert_eq!(
        refused,
        Err(FallbackReason::CircuitOpen {
            provider: Provider::Tts,
            retry_in_ms: 4_000
        })
    );
    assert_eq!(
        refused.err().map(|r| r.code()),
        Some("tts_circuit_open".to_string())
    );
    assert!(reg
        .admit_call(t0, "other", &[(Provider::Stt, vec!["worker".into()])])
        .is_ok());
}

#[test]
fn a_call_goes_to_the_next_provider_in_order_while_the_first_is_open() {
    let t0 = Instant::now();
    let reg = BreakerRegistry::new(BreakerConfig {
        failures: 1,
        window_ms: 10_000,
        cooldown_ms: 5_000,
        probes: 1,
    });
    let order = |names: &[&str]| {
        vec![(
            Provider::Stt,
            names.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
        )]
    };
    reg.handle_failure(t0, "acme", Provider::Stt, "deepgram");
    let admitted = reg
        .admit_call(at(t0, 100), "acme", &order(&["deepgram", "whisper"]))
        .expect("the second choice takes the call");
    assert_eq!(admitted[0].name, "whisper");
    assert_eq!(admitted[0].admission, Admission::Allowed);
    // Both open: the call falls back, told when the first one reopens.
    reg.handle_failure(at(t0, 1_000), "acme", Provider::Stt, "whisper");
    assert_eq!(
        reg.admit_call(at(t0, 1_000), "acme", &order(&["deepgram", "whisper"])),
        Err(FallbackReason::CircuitOpen {
            provider: Provider::Stt,
            retry_in_ms: 4_000
        })
    );
    // After its cool-down the first choice is probed again, first.
    let admitted = reg
        .admit_call(at(t0, 5_000), "acme", &order(&["deepgram", "whisper"]))
        .expect("a probe");
    assert_eq!(admitted[0].name, "deepgram");
    assert_eq!(admitted[0].admission, Admission::Probe);
    // Another tenant's breakers are its own.
    assert_eq!(
        reg.admit_call(at(t0, 100), "other", &order(&["deepgram"]))
            .map(|a| a[0].name.clone()),
        Ok("deepgram".to_string())
    );
}

#[test]
fn each_tenant_runs_its_breakers_with_its_own_settings() {
    let t0 = Instant::now();
    let reg = BreakerRegistry::new(BreakerConfig {
        failures: 3,
        window_ms: 10_000,
        cooldown_ms: 5_000,
        probes: 1,
    });
    reg.set_tenant_config(
        "strict",
        Some(BreakerConfig {
            failures: 1,
            window_ms: 10_000,
            cooldown_ms: 20_000,
            probes: 1,
        }),
    );
    reg.handle_failure(t0, "strict", Provider::Nlu, "worker");
    reg.handle_failure(t0, "lenient", Provider::Nlu, "worker");
    assert_eq!(
        reg.status(t0, "strict", Provider::Nlu, "worker"),
        BreakerStatus::Open {
            retry_in_ms: 20_000
        }
    );
    assert_eq!(
        reg.status(t0, "lenient", Provider::Nlu, "worker"),
        BreakerStatus::Closed { failures: 1 }
    );
    // A breaker that exists already takes new settings at once.
    reg.set_tenant_config(
        "lenient",
        Some(BreakerConfig {
            failures: 2,
            ..reg.tenant_config("lenient")
        }),
    );
    reg.handle_failure(at(t0, 1), "lenient", Provider::Nlu, "worker");
    assert!(matches!(
        reg.admit(at(t0, 2), "lenient", Provider::Nlu, "worker"),
        Admission::Rejected { .. }
    ));
    // Back to the default.
    reg.set_tenant_config("strict", None);
    assert_eq!(reg.tenant_config("strict").failures, 3);
}

#[test]
fn a_snapshot_shows_closed_open_and_half_open_without_changing_them() {
    let t0 = Instant::now();
    let reg = BreakerRegistry::new(BreakerConfig {
        failures: 2,
        window_ms: 1_000,
        cooldown_ms: 5_000,
        probes: 1,
    });
    reg.handle_failure(t0, "acme", Provider::Stt, "worker");
    reg.handle_failure(t0, "acme", Provider::Tts, "worker");
    reg.handle_failure(at(t0, 10), "acme", Provider::Tts, "worker");
    let snap = reg.snapshot(at(t0, 1_000));
    let statuses: Vec<_> = snap.iter().map(|s| (s.provider, s.status)).collect();
    assert_eq!(
        statuses,
        [
            // The failure at t0 left the 1 s window at t0 + 1000.
            (Provider::Stt, BreakerStatus::Closed { failures: 0 }),
            (Provider::Tts, BreakerStatus::Open { retry_in_ms: 4_010 }),
        ]
    );
    assert_eq!(snap[1].status.gauge(), 2);
    // After the cool-down the next call is a probe: shown half-open.
    let later = reg.status(at(t0, 5_010), "acme", Provider::Tts, "worker");
    assert_eq!(later.name(), "half_open");
    assert_eq!(later.gauge(), 1);
    // Looking did not move it: the next admission is that probe.
    assert_eq!(
        reg.admit(at(t0, 5_010), "acme", Provider::Tts, "worker"),
        Admission::Probe
    );
    assert_eq!(
        reg.status(at(t0, 5_011), "acme", Provider::Tts, "worker"),
        BreakerStatus::HalfOpen {
            admitted: 1,
            succeeded: 0
        }
    );
    reg.handle_success(at(t0, 5_100), "acme", Provider::Tts, "worker");
    assert_eq!(
        reg.status(at(t0, 5_100), "acme", Provider::Tts, "worker")
            .gauge(),
        0
    );
    // Never seen: closed.
    assert_eq!(
        reg.status(t0, "other", Provider::Nlu, "worker"),
        BreakerStatus::Closed { failures: 0 }
    );
}
