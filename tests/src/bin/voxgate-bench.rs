//! The gateway benchmark: sipp drives SIP load against a release
//! `voxgate serve` on loopback while RTP peers of our own stream both ways.
//!
//! Measures: sustained calls per second with 0 failed calls (rate steps),
//! concurrent calls streaming RTP both ways with their loss in each
//! direction, outbound pacing jitter p50/p99 from the gateway's
//! `voxgate_rtp_pacing_jitter_ms` histogram, and the gateway's CPU and
//! memory per call from `/proc/PID/stat` and `/proc/PID/status`.
//!
//! Prints one JSON document on stdout and writes it to `--out`.
//! Bounded: every step has a deadline and the whole run stops at
//! `--budget` (default 540 s). Loopback only.

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{json, Value};
use voxgate_tests::bench::{
    clk_tck, cpu_percent, emit_report, quantiles, run_sipp, sample, voxgate_version, wait_idle,
    SippLoad,
};
use voxgate_tests::rtp_peer::RtpPeerBank;
use voxgate_tests::{Gateway, GatewayOptions, TempDir};

const TARGET_CPS: f64 = 500.0;
const TARGET_CONCURRENT: u64 = 3000;
const TARGET_PACING_P99_MS: f64 = 2.0;

struct Opts {
    cps_steps: Vec<u32>,
    cps_step_s: u32,
    concurrent_steps: Vec<u32>,
    steady_s: u32,
    ramp_cps: u32,
    budget: Duration,
    out: Option<PathBuf>,
}

fn parse_args() -> anyhow::Result<Opts> {
    let mut o = Opts {
        cps_steps: vec![100, 250, 500, 750, 1000],
        cps_step_s: 10,
        concurrent_steps: vec![500, 1000, 2000, 3000],
        steady_s: 10,
        ramp_cps: 200,
        budget: Duration::from_secs(540),
        out: None,
    };
    let mut args = std::env::args().skip(1);
    let list = |s: String| -> anyhow::Result<Vec<u32>> {
        s.split(',')
            .filter(|x| !x.is_empty())
            .map(|x| x.trim().parse().context("bad number"))
            .collect()
    };
    while let Some(a) = args.next() {
        let mut val = || args.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--cps" => o.cps_steps = list(val()?)?,
            "--cps-step-s" => o.cps_step_s = val()?.parse()?,
            "--concurrent" => o.concurrent_steps = list(val()?)?,
            "--steady-s" => o.steady_s = val()?.parse()?,
            "--ramp-cps" => o.ramp_cps = val()?.parse()?,
            "--budget-s" => o.budget = Duration::from_secs(val()?.parse()?),
            "--out" => o.out = Some(PathBuf::from(val()?)),
            "--quick" => {
                o.cps_steps = vec![50, 100];
                o.cps_step_s = 4;
                o.concurrent_steps = vec![50, 100];
                o.steady_s = 4;
                o.ramp_cps = 100;
            }
            "-h" | "--help" => {
                println!(
                    "voxgate-bench [--quick] [--cps 100,250,...] [--cps-step-s 10] [--concurrent 500,1000,...]\n\
                     [--steady-s 10] [--ramp-cps 200] [--budget-s 540] [--out FILE]"
                );
                std::process::exit(0);
            }
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    Ok(o)
}

/// A UDP socket that reads and drops everything, as the far end of the CPS
/// calls (which need media somewhere, but no measurement).
struct Sink {
    port: u16,
    stop: Arc<AtomicBool>,
    packets: Arc<AtomicU64>,
}

impl Sink {
    fn start() -> anyhow::Result<Self> {
        let s = UdpSocket::bind("127.0.0.1:0")?;
        s.set_read_timeout(Some(Duration::from_millis(200)))?;
        let port = s.local_addr()?.port();
        let stop = Arc::new(AtomicBool::new(false));
        let packets = Arc::new(AtomicU64::new(0));
        let (st, pk) = (stop.clone(), packets.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !st.load(Ordering::Relaxed) {
                if s.recv_from(&mut buf).is_ok() {
                    pk.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        Ok(Self {
            port,
            stop,
            packets,
        })
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn cps_phase(
    gw: &Gateway,
    o: &Opts,
    work: &Path,
    tck: f64,
    deadline: Instant,
) -> anyhow::Result<Value> {
    let sink = Sink::start()?;
    let mut steps = Vec::new();
    let mut best = 0.0f64;
    for &rate in &o.cps_steps {
        let need = Duration::from_secs(u64::from(o.cps_step_s) + 20);
        if voxgate_tests::now() + need > deadline {
            steps.push(json!({"target_cps": rate, "skipped": "time budget"}));
            continue;
        }
        let calls = rate * o.cps_step_s;
        let before = sample(gw.pid(), tck)?;
        let m0 = gw.metrics()?;
        let tag = format!("cps{rate}");
        let st = run_sipp(
            gw,
            work,
            &SippLoad {
                service: "1000",
                rtp_ports: &[sink.port],
                rate,
                calls,
                hold_ms: 500,
                timeout: need,
                tag: &tag,
            },
        )?;
        let after = sample(gw.pid(), tck)?;
        let m1 = gw.metrics()?;
        let left = wait_idle(gw, Duration::from_secs(10));
        // Calls set up per second while sipp placed them: the run's wall
        // time less the hold of the last call.
        let placing_s = (st.elapsed_s - 0.5).max(f64::from(o.cps_step_s) * 0.5);
        let achieved = st.successful as f64 / placing_s;
        let ok = st.failed == 0 && st.successful == u64::from(calls) && st.exit_code == Some(0);
        if ok {
            best = best.max(achieved.min(f64::from(rate)));
        }
        let cpu_s = after.cpu_s - before.cpu_s;
        steps.push(json!({
            "target_cps": rate, "calls": calls, "sipp": st, "achieved_cps": achieved, "passed": ok,
            "gateway_cpu_percent": cpu_percent(&before, &after),
            "gateway_cpu_ms_per_call": if st.successful > 0 { json!(1000.0 * cpu_s / st.successful as f64) } else { Value::Null },
            "gateway_rss_kb_end": after.rss_kb,
            "rate_limited": m1.value("voxgate_sip_rate_limited_total") - m0.value("voxgate_sip_rate_limited_total"),
            "calls_active_after_10s": left,
        }));
        eprintln!(
            "bench: cps {rate}: {}",
            steps.last().map(|s| s.to_string()).unwrap_or_default()
        );
        if !ok && st.successful < u64::from(calls) * 9 / 10 {
            break; // far past the limit; higher steps only cost time
        }
    }
    Ok(json!({
        "call_hold_ms": 500, "step_s": o.cps_step_s, "steps": steps,
        "max_sustained_cps": best, "target_cps": TARGET_CPS, "target_met": best >= TARGET_CPS,
        "sink_packets": sink.packets.load(Ordering::Relaxed),
    }))
}

fn concurrent_phase(
    gw: &Gateway,
    o: &Opts,
    work: &Path,
    tck: f64,
    deadline: Instant,
) -> anyhow::Result<Value> {
    let mut steps = Vec::new();
    let mut best = 0u64;
    let mut pacing_at_best = Value::Null;
    for &n in &o.concurrent_steps {
        let ramp_ms = u64::from(n) * 1000 / u64::from(o.ramp_cps.max(1));
        let hold_ms = ramp_ms + u64::from(o.steady_s) * 1000 + 2000;
        let need = Duration::from_millis(hold_ms + ramp_ms + 25_000);
        if voxgate_tests::now() + need > deadline {
            steps.push(json!({"calls": n, "skipped": "time budget"}));
            continue;
        }
        let idle = sample(gw.pid(), tck)?;
        let bank = RtpPeerBank::start(
            n as usize,
            Duration::from_millis(hold_ms.saturating_sub(1000)),
        )?;
        let ports = bank.ports().to_vec();
        let m_start = gw.metrics()?;
        let work2 = work.to_path_buf();
        let tag = format!("cc{n}");
        let ramp = o.ramp_cps;
        // sipp runs in its own thread while we sample the steady window.
        let gwref: &Gateway = gw;
        let result = std::thread::scope(|s| -> anyhow::Result<Value> {
            let h = s.spawn(move || {
                let load = SippLoad {
                    service: "1000",
                    rtp_ports: &ports,
                    rate: ramp,
                    calls: n,
                    hold_ms,
                    timeout: need,
                    tag: &tag,
                };
                run_sipp(gwref, &work2, &load)
            });
            std::thread::sleep(Duration::from_millis(ramp_ms + 1000));
            let w0 = sample(gw.pid(), tck)?;
            let m0 = gw.metrics()?;
            let active0 = m0.value("voxgate_calls_active");
            std::thread::sleep(Duration::from_secs(
                u64::from(o.steady_s).saturating_sub(1).max(1),
            ));
            let w1 = sample(gw.pid(), tck)?;
            let m1 = gw.metrics()?;
            let st = h
                .join()
                .map_err(|_| anyhow::anyhow!("sipp thread panicked"))??;
            std::thread::sleep(Duration::from_millis(500));
            let m_end = gw.metrics()?;
            let peers = bank.stop();
            let left = wait_idle(gw, Duration::from_secs(15));

            let pacing = m1
                .histogram("voxgate_rtp_pacing_jitter_ms")
                .delta(&m0.histogram("voxgate_rtp_pacing_jitter_ms"));
            let gw_rx = m_end.value("voxgate_rtp_packets_rx_total")
                - m_start.value("voxgate_rtp_packets_rx_total");
            let gw_lost = m_end.value("voxgate_rtp_packets_lost_total")
                - m_start.value("voxgate_rtp_packets_lost_total");
            let gw_tx = m_end.value("voxgate_rtp_packets_tx_total")
                - m_start.value("voxgate_rtp_packets_tx_total");
            let in_missing = (peers.tx_packets as f64 - gw_rx).max(0.0);
            let in_loss = if peers.tx_packets > 0 {
                in_missing / peers.tx_packets as f64
            } else {
                0.0
            };
            let out_loss = if peers.rx_expected > 0 {
                peers.rx_lost as f64 / peers.rx_expected as f64
            } else {
                0.0
            };
            let streaming =
                peers.latched == u64::from(n) && peers.tx_packets > 0 && peers.rx_packets > 0;
            let ok = st.failed == 0
                && st.successful == u64::from(n)
                && streaming
                && peers.rx_lost == 0
                && in_missing == 0.0
                && gw_lost == 0.0;
            let per_call_kb = if active0 > 0.0 {
                (w1.rss_kb as f64 - idle.rss_kb as f64) / active0
            } else {
                0.0
            };
            let cpu = cpu_percent(&w0, &w1);
            Ok(json!({
                "calls": n, "sipp": st, "calls_active_in_window": active0, "passed": ok,
                "steady_window_s": w1.at.duration_since(w0.at).as_secs_f64(),
                "rtp_caller_to_gateway": {"sent": peers.tx_packets, "gateway_received": gw_rx,
                    "missing": in_missing, "loss_ratio": in_loss, "gateway_seq_gaps": gw_lost},
                "rtp_gateway_to_caller": {"gateway_sent": gw_tx, "received": peers.rx_packets,
                    "expected_by_seq": peers.rx_expected, "lost": peers.rx_lost, "loss_ratio": out_loss},
                "endpoints_that_got_rtp": peers.latched,
                "pacing_jitter_ms": quantiles(&pacing),
                "gateway_cpu_percent": cpu,
                "gateway_cpu_percent_per_call": if active0 > 0.0 { json!(cpu / active0) } else { Value::Null },
                "gateway_rss_kb_idle": idle.rss_kb, "gateway_rss_kb_loaded": w1.rss_kb, "gateway_hwm_kb": w1.hwm_kb,
                "gateway_rss_kb_per_call": per_call_kb,
                "calls_active_after_15s": left,
            }))
        })?;
        eprintln!("bench: concurrent {n}: {result}");
        let ok = result["passed"].as_bool() == Some(true);
        if ok {
            best = u64::from(n);
            pacing_at_best = result["pacing_jitter_ms"].clone();
        }
        let failed_many =
            result["sipp"]["successful"].as_u64().unwrap_or(0) < u64::from(n) * 9 / 10;
        steps.push(result);
        if failed_many {
            break;
        }
    }
    let p99 = pacing_at_best["p99_ms"].as_f64();
    Ok(json!({
        "ramp_cps": o.ramp_cps, "steady_s": o.steady_s, "steps": steps,
        "max_zero_loss_calls": best, "target_calls": TARGET_CONCURRENT,
        "pacing_jitter_at_max": pacing_at_best, "target_pacing_p99_ms": TARGET_PACING_P99_MS,
        "target_met": best >= TARGET_CONCURRENT && p99.is_some_and(|p| p <= TARGET_PACING_P99_MS),
    }))
}

fn main() -> anyhow::Result<()> {
    let o = parse_args()?;
    let started = voxgate_tests::now();
    let deadline = started + o.budget;
    voxgate_tests::require_tool("sipp")?;
    let work = TempDir::new("voxgate-bench")?;
    let tck = clk_tck();
    let gw = Gateway::start_with(GatewayOptions {
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
    })?;
    let idle = sample(gw.pid(), tck)?;
    let cps = cps_phase(&gw, &o, work.path(), tck, deadline)
        .unwrap_or_else(|e| json!({"error": e.to_string()}));
    let concurrent = concurrent_phase(&gw, &o, work.path(), tck, deadline)
        .unwrap_or_else(|e| json!({"error": e.to_string()}));
    let end = sample(gw.pid(), tck)?;
    let version = voxgate_version();
    let report = json!({
        "benchmark": "voxgate gateway, loopback",
        "voxgate": version,
        "machine": {"cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
                    "note": "load generator, RTP peers and gateway share this machine"},
        "cps": cps,
        "concurrent": concurrent,
        "gateway_process": {"rss_kb_idle": idle.rss_kb, "rss_kb_end": end.rss_kb, "hwm_kb": end.hwm_kb,
                             "cpu_s_total": end.cpu_s - idle.cpu_s},
        "wall_s": started.elapsed().as_secs_f64(),
        "method": "sipp 3.6 (UDP, one socket) places the calls; RTP both ways is sent and counted by the bench's \
                   own peers (one socket per call, latched to the gateway's source, PCMU 20 ms), because sipp \
                   never reads RTP sent to it. Caller->gateway loss = peer packets sent minus the gateway's \
                   rtp_packets_rx delta; gateway->caller loss from RTP sequence gaps at the peers. Pacing \
                   jitter = delta of voxgate_rtp_pacing_jitter_ms over the steady window (all calls up). \
                   CPU from /proc/PID/stat utime+stime, memory from VmRSS/VmHWM.",
    });
    emit_report(&report, o.out.as_deref())?;
    Ok(())
}
