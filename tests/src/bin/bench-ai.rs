//! The AI-node load benchmark: sipp places calls on a release `voxgate
//! serve` whose STT, NLU and TTS are the provider simulator (a test double
//! of remote providers, real worker protocol over real sockets) with fixed
//! latencies; every call's caller side streams spoken audio (espeak-ng,
//! µ-law) in a loop, so each call keeps talking to an AI node that answers
//! and loops back to itself.
//!
//! Measures, per concurrency level: RTP loss both ways, gateway-added
//! latency per turn (the turn record's `turn` minus the injected provider
//! time), the gateway's RSS per call and CPU. Then a fallback phase with
//! the simulator's NLU stalled: the fallback reaction against the NLU's
//! hard threshold.
//!
//! Prints one JSON document and writes it to `--out`. Bounded by
//! `--budget-s` (default 540 s). Loopback only.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use anyhow::Context;
use serde_json::{json, Value};
use voxgate_tests::ai::{
    admin_key, call_record, caller_audio, gateway_with_simulator_opts, newest_call_ids, publish,
    set_policy, Part, Simulator,
};
use voxgate_tests::bench::{
    clk_tck, cpu_percent, emit_report, quantiles, run_sipp, sample, voxgate_version, wait_idle,
    SippLoad,
};
use voxgate_tests::rtp_peer::RtpPeerBank;
use voxgate_tests::{Gateway, GatewayOptions, TempDir};

const NUMBER: &str = "5000";
/// The simulator's fixed latencies, ms: STT final after the end of the
/// audio, NLU first token, TTS first byte.
const STT_MS: u64 = 30;
const NLU_MS: u64 = 60;
const TTS_MS: u64 = 40;
/// What the simulator injects into one turn (end of speech → first reply
/// audio): STT final + NLU first token + TTS first byte.
const INJECTED_MS: u64 = STT_MS + NLU_MS + TTS_MS;
/// The NLU first token's hard threshold (the policy default).
const NLU_HARD_MS: u64 = 3_000;

const TARGET_CALLS: u32 = 3_000;
const TARGET_ADDED_P99_MS: f64 = 10.0;
const TARGET_ADDED_AT_CALLS: u32 = 1_000;
const TARGET_FALLBACK_MARGIN_MS: f64 = 20.0;
const TARGET_KIB_PER_CALL: f64 = 256.0;

struct Opts {
    levels: Vec<u32>,
    steady_s: u32,
    ramp_cps: u32,
    fallback_calls: u32,
    budget: Duration,
    out: Option<PathBuf>,
    quick: bool,
}

fn parse_args() -> anyhow::Result<Opts> {
    let mut o = Opts {
        levels: vec![100, 250, 500, 1000, 2000, 3000],
        steady_s: 15,
        ramp_cps: 100,
        fallback_calls: 250,
        budget: Duration::from_secs(540),
        out: None,
        quick: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--levels" => {
                o.levels = val()?
                    .split(',')
                    .filter(|x| !x.is_empty())
                    .map(|x| x.trim().parse().context("bad number"))
                    .collect::<anyhow::Result<_>>()?;
            }
            "--steady-s" => o.steady_s = val()?.parse()?,
            "--ramp-cps" => o.ramp_cps = val()?.parse()?,
            "--fallback-calls" => o.fallback_calls = val()?.parse()?,
            "--budget-s" => o.budget = Duration::from_secs(val()?.parse()?),
            "--out" => o.out = Some(PathBuf::from(val()?)),
            "--quick" => {
                o.levels = vec![20, 50];
                o.steady_s = 8;
                o.ramp_cps = 25;
                o.fallback_calls = 20;
                o.budget = Duration::from_secs(240);
                o.quick = true;
            }
            "-h" | "--help" => {
                println!(
                    "bench-ai [--quick] [--levels 250,500,...] [--steady-s 15] [--ramp-cps 100]\n\
                     [--fallback-calls 250] [--budget-s 540] [--out FILE]"
                );
                std::process::exit(0);
            }
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    Ok(o)
}

/// The flow: one AI node that answers the balance intent and loops back to
/// itself on every outcome, so a call stays in AI nodes for its whole hold.
fn flow() -> Value {
    json!({"id": "bench", "name": "AI bench", "entry": "ask", "nodes": {
        "ask": {
            "type": "ai",
            "intents": [
                {"name": "balance", "examples": ["what is my balance"], "reply": "Your balance is twelve euros."}
            ],
            "edges": {"balance": "ask", "escalate": "ask", "fallback_dtmf": "ask", "error": "ask"}
        }
    }})
}

fn script(nlu_first_ms: u64) -> Value {
    json!({
        "seed": 1,
        "stt": {"default": {"text": "what is my balance", "confidence": 0.95}},
        "nlu": {"default": {"intent": "balance", "confidence": 0.93}},
        "tts": {"voice": {"kind": "tone", "hz": 440.0, "ms_per_char": 40}, "chunk_ms": 100},
        "stages": {
            "stt": {"first": {"fixed_ms": STT_MS}, "per_chunk": {"fixed_ms": STT_MS}},
            "nlu": {"first": {"fixed_ms": nlu_first_ms}},
            "tts": {"first": {"fixed_ms": TTS_MS}}
        }
    })
}

/// Admission and breaker out of the way: the bench measures the pipeline,
/// not the tenant's rate limits, and a stalled NLU must keep producing
/// deadline fallbacks instead of opening the circuit.
fn policy() -> Value {
    json!({
        "limits": {"sessions_per_second": 100_000, "burst": 100_000, "max_concurrent": 100_000},
        "breaker": {"failures": 1_000_000, "window_ms": 1_000, "cooldown_ms": 1_000, "probes": 1}
    })
}

/// The caller's loop as PCMU: 300 ms silence, "what is my balance",
/// `silence_ms` of silence. Returns the payload and its length in ms.
fn caller_loop(dir: &Path, silence_ms: u32) -> anyhow::Result<(Arc<[u8]>, u32)> {
    let name = format!("caller-{silence_ms}");
    let (wav, spoken) = caller_audio(
        dir,
        &name,
        &[
            Part::Silence(300),
            Part::Say("what is my balance"),
            Part::Silence(silence_ms),
        ],
    )?;
    let (_, pcm) = voxgate_tests::read_wav(&wav)?;
    let mut pcmu = Vec::with_capacity(pcm.len());
    voxgate_gateway::codec::Codec::Pcmu.encode(&pcm, &mut pcmu);
    pcmu.truncate(pcmu.len() / 160 * 160);
    Ok((pcmu.into(), spoken.total_ms))
}

struct World {
    gw: Gateway,
    key: String,
    _sim: Simulator,
}

fn world(dir: &Path, nlu_first_ms: u64) -> anyhow::Result<World> {
    let sim = Simulator::start(&script(nlu_first_ms))?;
    let gw = gateway_with_simulator_opts(
        &sim,
        dir,
        GatewayOptions {
            rtp_ports: Some((20000, 29999)),
            log_filter: Some("warn,voxgate=info".into()),
            env: vec![
                ("VOXGATE_SIP_INVITE_RATE_PER_SECOND".into(), "10000".into()),
                ("VOXGATE_SIP_INVITE_RATE_BURST".into(), "100000".into()),
                ("VOXGATE_SIP_RING_MS".into(), "0".into()),
                ("VOXGATE_SIP_RINGING".into(), "false".into()),
                ("VOXGATE_RTP_TIMEOUT_S".into(), "60".into()),
            ],
            ..Default::default()
        },
    )?;
    let key = admin_key(&gw)?;
    publish(&gw, &key, dir, &flow(), NUMBER)?;
    set_policy(&gw, &key, dir, &policy())?;
    Ok(World { gw, key, _sim: sim })
}

fn unix_ms(t: std::time::SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Exact percentiles (nearest rank) of a list of ms values.
fn percentiles(values: &mut [f64]) -> Value {
    if values.is_empty() {
        return json!({"n": 0});
    }
    values.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| {
        let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
        values[rank - 1]
    };
    json!({"n": values.len(), "p50_ms": at(0.5), "p95_ms": at(0.95), "p99_ms": at(0.99),
           "max_ms": at(1.0), "mean_ms": values.iter().sum::<f64>() / values.len() as f64})
}

/// What the call records of one level say.
#[derive(Default)]
struct Timelines {
    records: usize,
    /// Per turn inside the window: turn − injected, and each stage's
    /// measured time − its injected time.
    added: Vec<f64>,
    stt_over: Vec<f64>,
    nlu_over: Vec<f64>,
    tts_over: Vec<f64>,
    turns_total: usize,
    /// fallback at_ms − transcript at_ms, per fallback for the NLU deadline.
    reactions: Vec<f64>,
    fallbacks: std::collections::BTreeMap<String, u64>,
    outcomes: std::collections::BTreeMap<String, u64>,
}

/// Reads the newest `n` call records and collects their AI records whose
/// absolute time falls in `[from_ms, to_ms]` (unix ms).
fn read_timelines(
    w: &World,
    n: usize,
    from_ms: u64,
    to_ms: u64,
    deadline: Instant,
) -> anyhow::Result<Timelines> {
    let mut t = Timelines::default();
    for id in newest_call_ids(&w.gw, &w.key, n)? {
        if voxgate_tests::now() >= deadline {
            break;
        }
        let Ok(rec) = call_record(&w.gw, &w.key, &id) else {
            continue;
        };
        t.records += 1;
        let started = rec["started_at"].as_u64().unwrap_or(0);
        for step in rec["timeline"].as_array().into_iter().flatten() {
            if let Some(o) = step["outcome"].as_str() {
                *t.outcomes.entry(o.to_string()).or_default() += 1;
            }
            let entered = step["entered_ms"].as_u64().unwrap_or(0);
            let ai = step["ai"].as_array().map(Vec::as_slice).unwrap_or(&[]);
            let mut asked: Option<u64> = None;
            for r in ai {
                let at = r["at_ms"].as_u64().unwrap_or(0);
                let abs = started + entered + at;
                let in_window = (from_ms..=to_ms).contains(&abs);
                match r["kind"].as_str() {
                    Some("transcript") => asked = Some(at),
                    Some("turn") => {
                        t.turns_total += 1;
                        if !in_window {
                            continue;
                        }
                        let d = &r["detail"];
                        let f = |k: &str| d[k].as_f64();
                        if let Some(turn) = f("turn") {
                            t.added.push(turn - INJECTED_MS as f64);
                        }
                        if let Some(v) = f("stt_final") {
                            t.stt_over.push(v - STT_MS as f64);
                        }
                        if let Some(v) = f("nlu_first_token") {
                            t.nlu_over.push(v - NLU_MS as f64);
                        }
                        if let Some(v) = f("tts_first_byte") {
                            t.tts_over.push(v - TTS_MS as f64);
                        }
                    }
                    Some("fallback") => {
                        let reason = &r["detail"]["reason"];
                        let kind = reason["kind"].as_str().unwrap_or("reply_skipped");
                        let what = reason["stage"]
                            .as_str()
                            .or_else(|| reason["provider"].as_str())
                            .unwrap_or("");
                        *t.fallbacks.entry(format!("{kind} {what}")).or_default() += 1;
                        if let (true, Some(a)) = (in_window, asked) {
                            if kind == "deadline" && what == "nlu_first_token" {
                                t.reactions.push(at.saturating_sub(a) as f64);
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    Ok(t)
}

/// One run of `n` calls: ramp, steady window, hang-up, records.
struct Level<'a> {
    w: &'a World,
    work: &'a Path,
    audio: Arc<[u8]>,
    n: u32,
    ramp_cps: u32,
    steady_s: u32,
    tck: f64,
    tag: String,
    /// Whether every call must complete AI turns (not when the NLU stalls).
    expect_turns: bool,
}

struct LevelRun {
    json: Value,
    timelines: Timelines,
    passed: bool,
}

fn run_level(l: &Level<'_>, deadline: Instant) -> anyhow::Result<LevelRun> {
    let gw = &l.w.gw;
    let ramp_ms = u64::from(l.n) * 1000 / u64::from(l.ramp_cps.max(1));
    let hold_ms = ramp_ms + u64::from(l.steady_s) * 1000 + 2000;
    let need = Duration::from_millis(hold_ms + ramp_ms + 25_000);
    let idle = sample(gw.pid(), l.tck)?;
    let bank = RtpPeerBank::start_playing(
        l.n as usize,
        Duration::from_millis(hold_ms.saturating_sub(1000)),
        l.audio.clone(),
    )?;
    let ports = bank.ports().to_vec();
    let m_start = gw.metrics().context("GET /metrics")?;
    std::thread::scope(|s| -> anyhow::Result<LevelRun> {
        let h = s.spawn(|| {
            let load = SippLoad {
                service: NUMBER,
                rtp_ports: &ports,
                rate: l.ramp_cps,
                calls: l.n,
                hold_ms,
                timeout: need,
                tag: &l.tag,
            };
            run_sipp(gw, l.work, &load)
        });
        std::thread::sleep(Duration::from_millis(ramp_ms + 1000));
        let w0 = sample(gw.pid(), l.tck)?;
        let me0 = sample(std::process::id(), l.tck)?;
        let j0 = machine_jiffies();
        let wall0 = unix_ms(voxgate_tests::wall_now());
        let m0 = gw.metrics().context("GET /metrics")?;
        let active0 = m0.value("voxgate_calls_active");
        std::thread::sleep(Duration::from_secs(
            u64::from(l.steady_s).saturating_sub(1).max(1),
        ));
        let w1 = sample(gw.pid(), l.tck)?;
        let me1 = sample(std::process::id(), l.tck)?;
        let j1 = machine_jiffies();
        let wall1 = unix_ms(voxgate_tests::wall_now());
        let m1 = gw.metrics().context("GET /metrics")?;
        let active1 = m1.value("voxgate_calls_active");
        let st = h
            .join()
            .map_err(|_| anyhow::anyhow!("sipp thread panicked"))??;
        std::thread::sleep(Duration::from_millis(500));
        let m_end = gw.metrics().context("GET /metrics")?;
        let peers = bank.stop();
        let left = wait_idle(gw, Duration::from_secs(15));
        // Records are written when a call ends; give the store a moment.
        std::thread::sleep(Duration::from_secs(1));
        let tl = read_timelines(l.w, l.n as usize, wall0, wall1, deadline)?;

        let gw_rx = m_end.value("voxgate_rtp_packets_rx_total")
            - m_start.value("voxgate_rtp_packets_rx_total");
        let gw_lost = m_end.value("voxgate_rtp_packets_lost_total")
            - m_start.value("voxgate_rtp_packets_lost_total");
        let gw_tx = m_end.value("voxgate_rtp_packets_tx_total")
            - m_start.value("voxgate_rtp_packets_tx_total");
        let in_missing = (peers.tx_packets as f64 - gw_rx).max(0.0);
        let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
        let streaming =
            peers.latched == u64::from(l.n) && peers.tx_packets > 0 && peers.rx_packets > 0;
        let zero_loss = peers.rx_lost == 0 && in_missing == 0.0 && gw_lost == 0.0;
        let calls_ok = st.failed == 0 && st.successful == u64::from(l.n);
        let turn_hist = m1
            .histogram("voxgate_ai_turn_ms")
            .delta(&m0.histogram("voxgate_ai_turn_ms"));
        let kib_per_call = if active1 > 0.0 {
            (w1.rss_kb as f64 - idle.rss_kb as f64) / active1
        } else {
            0.0
        };
        let window_s = w1.at.duration_since(w0.at).as_secs_f64();
        // Every call must have talked to the AI node in the window.
        let turning = !l.expect_turns || tl.added.len() as f64 >= f64::from(l.n) * window_s / 10.0;
        let passed = calls_ok && streaming && zero_loss && turning;
        let mut tl = tl;
        let added = percentiles(&mut tl.added);
        let json = json!({
            "calls": l.n, "sipp": st, "passed": passed,
            "calls_active_in_window": [active0, active1],
            "steady_window_s": window_s,
            "rtp_caller_to_gateway": {"sent": peers.tx_packets, "gateway_received": gw_rx,
                "missing": in_missing, "loss_ratio": ratio(in_missing, peers.tx_packets as f64),
                "gateway_seq_gaps": gw_lost},
            "rtp_gateway_to_caller": {"gateway_sent": gw_tx, "received": peers.rx_packets,
                "expected_by_seq": peers.rx_expected, "lost": peers.rx_lost,
                "loss_ratio": ratio(peers.rx_lost as f64, peers.rx_expected as f64)},
            "endpoints_that_got_rtp": peers.latched,
            "turns_in_window": tl.added.len(),
            "turns_per_s": tl.added.len() as f64 / window_s.max(0.001),
            "gateway_added_ms": added,
            "stage_overhead_ms": {
                "stt_final_minus_injected": percentiles(&mut tl.stt_over),
                "nlu_first_token_minus_injected": percentiles(&mut tl.nlu_over),
                "tts_first_byte_minus_injected": percentiles(&mut tl.tts_over),
            },
            "turn_ms_histogram_window": quantiles(&turn_hist),
            "records_read": tl.records, "turns_total": tl.turns_total,
            "outcomes": tl.outcomes, "fallbacks": tl.fallbacks,
            "gateway_cpu_percent": cpu_percent(&w0, &w1),
            "bench_cpu_percent": cpu_percent(&me0, &me1),
            "machine_busy_percent_of_all_cpus": ratio(100.0 * (j1.0 - j0.0), j1.1 - j0.1),
            "gateway_rss_kb_idle": idle.rss_kb, "gateway_rss_kb_loaded": w1.rss_kb,
            "gateway_hwm_kb": w1.hwm_kb, "gateway_kib_per_call": kib_per_call,
            "calls_active_after_15s": left,
        });
        Ok(LevelRun {
            json,
            timelines: tl,
            passed,
        })
    })
}

fn load_phase(o: &Opts, work: &Path, tck: f64, deadline: Instant) -> anyhow::Result<Value> {
    let dir = work.join("load");
    std::fs::create_dir_all(&dir)?;
    let (audio, loop_ms) = caller_loop(&dir, 3_500)?;
    let w = world(&dir, NLU_MS)?;
    let mut steps = Vec::new();
    let mut summary = Vec::new();
    let mut best = 0u32;
    let mut added_at_target = Value::Null;
    let mut kib_at_best = Value::Null;
    for &n in &o.levels {
        let ramp_ms = u64::from(n) * 1000 / u64::from(o.ramp_cps.max(1));
        let need = Duration::from_millis(2 * ramp_ms + u64::from(o.steady_s) * 1000 + 45_000);
        if voxgate_tests::now() + need > deadline {
            steps.push(json!({"calls": n, "skipped": "time budget"}));
            continue;
        }
        let level = Level {
            w: &w,
            work: &dir,
            audio: audio.clone(),
            n,
            ramp_cps: o.ramp_cps,
            steady_s: o.steady_s,
            tck,
            tag: format!("ai{n}"),
            expect_turns: true,
        };
        let run = match run_level(&level, deadline) {
            Ok(run) => run,
            Err(e) => {
                // An overloaded gateway may stop answering /metrics or the
                // API in time: the step failed, the steps before stand.
                eprintln!("bench-ai: {n} calls: {e:#}");
                steps.push(json!({"calls": n, "passed": false, "error": format!("{e:#}")}));
                break;
            }
        };
        eprintln!("bench-ai: {n} calls: {}", run.json);
        if run.passed {
            best = n;
            kib_at_best = run.json["gateway_kib_per_call"].clone();
        }
        if n == TARGET_ADDED_AT_CALLS || (o.quick && n == *o.levels.last().unwrap_or(&0)) {
            added_at_target = run.json["gateway_added_ms"].clone();
        }
        summary.push(json!({
            "calls": n, "passed": run.passed,
            "gateway_added_p50_ms": run.json["gateway_added_ms"]["p50_ms"],
            "gateway_added_p99_ms": run.json["gateway_added_ms"]["p99_ms"],
            "kib_per_call": run.json["gateway_kib_per_call"],
            "gateway_cpu_percent": run.json["gateway_cpu_percent"],
            "machine_busy_percent": run.json["machine_busy_percent_of_all_cpus"],
        }));
        let collapsed =
            run.json["sipp"]["successful"].as_u64().unwrap_or(0) < u64::from(n) * 9 / 10;
        steps.push(run.json);
        if collapsed {
            break;
        }
    }
    let p99 = added_at_target["p99_ms"].as_f64();
    let kib = kib_at_best.as_f64();
    Ok(json!({
        "caller_loop_ms": loop_ms, "ramp_cps": o.ramp_cps, "steady_s": o.steady_s,
        "injected_ms": {"stt_final": STT_MS, "nlu_first_token": NLU_MS, "tts_first_byte": TTS_MS, "turn": INJECTED_MS},
        "summary": summary,
        "steps": steps,
        "max_zero_loss_calls": best, "target_calls": TARGET_CALLS,
        "target_calls_met": best >= TARGET_CALLS,
        "gateway_added_at_target_calls": added_at_target,
        "target_added_p99_ms": TARGET_ADDED_P99_MS,
        "target_added_calls": if o.quick { json!(o.levels.last()) } else { json!(TARGET_ADDED_AT_CALLS) },
        "target_added_met": p99.map(|p| p <= TARGET_ADDED_P99_MS),
        "kib_per_call_at_max": kib_at_best, "target_kib_per_call": TARGET_KIB_PER_CALL,
        "target_kib_met": kib.map(|k| k <= TARGET_KIB_PER_CALL),
    }))
}

fn fallback_phase(o: &Opts, work: &Path, tck: f64, deadline: Instant) -> anyhow::Result<Value> {
    let n = o.fallback_calls;
    let ramp_ms = u64::from(n) * 1000 / u64::from(o.ramp_cps.max(1));
    let need = Duration::from_millis(2 * ramp_ms + u64::from(o.steady_s) * 1000 + 45_000);
    if voxgate_tests::now() + need > deadline {
        return Ok(json!({"calls": n, "skipped": "time budget"}));
    }
    let dir = work.join("fallback");
    std::fs::create_dir_all(&dir)?;
    // Long enough a pause that the caller does not speak again while the
    // NLU is stalled: the next utterance comes after the fallback.
    let (audio, loop_ms) = caller_loop(&dir, NLU_HARD_MS as u32 + 2_500)?;
    // The stall: the first token would come after 20 s.
    let w = world(&dir, 20_000)?;
    let level = Level {
        w: &w,
        work: &dir,
        audio,
        n,
        ramp_cps: o.ramp_cps,
        steady_s: o.steady_s.max(10),
        tck,
        tag: format!("fb{n}"),
        expect_turns: false,
    };
    let mut run = match run_level(&level, deadline) {
        Ok(run) => run,
        Err(e) => return Ok(json!({"calls": n, "passed": false, "error": format!("{e:#}")})),
    };
    let reaction = percentiles(&mut run.timelines.reactions);
    let limit = NLU_HARD_MS as f64 + TARGET_FALLBACK_MARGIN_MS;
    let p99 = reaction["p99_ms"].as_f64();
    let mut step = run.json;
    if let Some(s) = step.as_object_mut() {
        for k in [
            "gateway_added_ms",
            "stage_overhead_ms",
            "turns_in_window",
            "turns_per_s",
        ] {
            s.remove(k);
        }
    }
    Ok(json!({
        "calls": n, "caller_loop_ms": loop_ms, "nlu_first_token_injected_ms": 20_000,
        "nlu_hard_ms": NLU_HARD_MS,
        "reaction_ms": reaction,
        "target_p99_ms": limit,
        "target_met": p99.map(|p| p <= limit),
        "load": step,
    }))
}

/// Busy and total jiffies of all CPUs, from /proc/stat.
fn machine_jiffies() -> (f64, f64) {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let v: Vec<f64> = text
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: f64 = v.iter().sum();
    // idle and iowait are the 4th and 5th columns.
    let idle = v.get(3).copied().unwrap_or(0.0) + v.get(4).copied().unwrap_or(0.0);
    (total - idle, total)
}

/// This process's nice value (inherited by the gateway and sipp): a run
/// under `nice -n -10` says how the gateway does when it wins the CPU from
/// other work on the machine.
fn own_nice() -> Value {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let rest = s.rsplit_once(')')?.1.to_string();
            rest.split_whitespace().nth(16)?.parse::<i64>().ok()
        })
        .map(Value::from)
        .unwrap_or(Value::Null)
}

/// The 1, 5 and 15 minute load averages: other work on the machine
/// competes with the gateway for its two cores.
fn loadavg() -> Value {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| json!(s.split_whitespace().take(3).collect::<Vec<_>>().join(" ")))
        .unwrap_or(Value::Null)
}

fn main() -> anyhow::Result<()> {
    let o = parse_args()?;
    let started = voxgate_tests::now();
    let deadline = started + o.budget;
    voxgate_tests::require_tool("sipp")?;
    voxgate_tests::require_tool("espeak-ng")?;
    let work = TempDir::new("voxgate-bench-ai")?;
    let tck = clk_tck();
    let loadavg_start = loadavg();
    let load = load_phase(&o, work.path(), tck, deadline)
        .unwrap_or_else(|e| json!({"error": format!("{e:#}")}));
    let fallback = fallback_phase(&o, work.path(), tck, deadline)
        .unwrap_or_else(|e| json!({"error": format!("{e:#}")}));
    let sipp = Command::new("sipp")
        .arg("-v")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .find(|l| l.contains("SIPp"))
                .unwrap_or("")
                .trim()
                .to_string()
        })
        .unwrap_or_default();
    let report = json!({
        "benchmark": "voxgate AI node, loopback, provider simulator with fixed latencies",
        "quick": o.quick,
        "voxgate": voxgate_version(),
        "sipp": sipp,
        "machine": {"cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
                    "loadavg_start": loadavg_start, "loadavg_end": loadavg(),
                    "nice": own_nice(),
                    "note": "sipp, the RTP peers, the simulator and the gateway share this machine \
                             (and, when loadavg_start is high, whatever else ran on it)"},
        "load": load,
        "fallback": fallback,
        "wall_s": started.elapsed().as_secs_f64(),
        "method": "sipp places the calls (SIP only, bench_call.xml); each call's media is one RTP peer of \
                   the bench (one socket, latched to the gateway's symmetric RTP) playing 300 ms silence + \
                   espeak-ng 'what is my balance' + silence in a loop as PCMU, and counting what comes \
                   back by sequence number. The gateway's STT/NLU/TTS are the provider simulator \
                   (worker protocol, in the bench process) with fixed latencies. The flow is one AI node \
                   looping to itself. gateway_added_ms = the turn record's `turn` (end of utterance \
                   to the first reply audio, ms, from the call records' timelines) minus the injected \
                   STT+NLU+TTS time, over turns whose time falls in the steady window (all calls up). \
                   Fallback reaction = fallback record at_ms minus transcript record at_ms with the NLU \
                   stalled, vs the NLU first-token hard threshold. Memory = (RSS in the window - idle \
                   RSS) / calls up.",
    });
    emit_report(&report, o.out.as_deref())
}
