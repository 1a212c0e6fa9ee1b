//! Pieces the load benchmarks share (`voxgate-bench`, `bench-ai`): CPU and
//! memory of a process from /proc, sipp placing `bench_call.xml` calls
//! with its final counters, waiting for the gateway to go idle, histogram
//! quantiles as JSON, and writing the report.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{json, Value};

use crate::http::Histogram;
use crate::Gateway;

/// CPU time and memory of one process, from /proc.
#[derive(Debug, Clone, Copy)]
pub struct ProcSample {
    pub at: Instant,
    pub cpu_s: f64,
    pub rss_kb: u64,
    pub hwm_kb: u64,
}

/// Clock ticks per second, the unit of /proc/PID/stat's times.
pub fn clk_tck() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

pub fn sample(pid: u32, tck: f64) -> anyhow::Result<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields of the whole line.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).context("bad stat")?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11).context("utime")?.parse()?;
    let stime: f64 = f.get(12).context("stime")?.parse()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Ok(ProcSample {
        at: crate::now(),
        cpu_s: (utime + stime) / tck,
        rss_kb: kb("VmRSS:"),
        hwm_kb: kb("VmHWM:"),
    })
}

/// CPU use between two samples, in percent of one core.
pub fn cpu_percent(a: &ProcSample, b: &ProcSample) -> f64 {
    let wall = b.at.duration_since(a.at).as_secs_f64();
    if wall <= 0.0 {
        return 0.0;
    }
    100.0 * (b.cpu_s - a.cpu_s) / wall
}

/// Final counters of one sipp run, from its `-trace_stat` CSV.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct SippStats {
    pub exit_code: Option<i32>,
    pub created: u64,
    pub successful: u64,
    pub failed: u64,
    pub elapsed_s: f64,
    /// sipp's cumulative call rate: calls created per second of the run.
    pub call_rate: f64,
}

/// One sipp run of `tests/sipp/bench_call.xml`: `calls` calls to
/// `service` at `rate` per second, each held `hold_ms`, the SDP's RTP port
/// of call k being `rtp_ports[k]` (sequential injection file).
#[derive(Debug, Clone)]
pub struct SippLoad<'a> {
    pub service: &'a str,
    pub rtp_ports: &'a [u16],
    pub rate: u32,
    pub calls: u32,
    pub hold_ms: u64,
    pub timeout: Duration,
    /// Names the injection and statistics files in `work`.
    pub tag: &'a str,
}

pub fn run_sipp(gw: &Gateway, work: &Path, load: &SippLoad<'_>) -> anyhow::Result<SippStats> {
    let inf = work.join(format!("{}.csv", load.tag));
    let mut f = std::fs::File::create(&inf)?;
    writeln!(f, "SEQUENTIAL")?;
    for p in load.rtp_ports {
        writeln!(f, "{p};")?;
    }
    drop(f);
    let stf = work.join(format!("{}-stat.csv", load.tag));
    let scen = crate::sipp_dir().join("bench_call.xml");
    let port = crate::free_udp_port()?;
    let started = crate::now();
    let out = Command::new("sipp")
        .current_dir(work)
        .arg(format!("127.0.0.1:{}", gw.sip_addr().port()))
        .arg("-sf")
        .arg(&scen)
        .args([
            "-i",
            "127.0.0.1",
            "-mi",
            "127.0.0.1",
            "-t",
            "u1",
            "-nostdin",
        ])
        .arg("-s")
        .arg(load.service)
        .arg("-p")
        .arg(port.to_string())
        .arg("-inf")
        .arg(&inf)
        .arg("-r")
        .arg(load.rate.to_string())
        .arg("-m")
        .arg(load.calls.to_string())
        .arg("-l")
        .arg((load.calls + 10).to_string())
        .arg("-d")
        .arg(load.hold_ms.to_string())
        .arg("-timeout")
        .arg(format!("{}s", load.timeout.as_secs().max(1)))
        .args(["-max_socket", "65000", "-trace_stat", "-fd", "1", "-stf"])
        .arg(&stf)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .context("running sipp (installed by `make deps`)")?;
    let mut st = parse_stat_csv(&std::fs::read_to_string(&stf).unwrap_or_default());
    st.exit_code = out.status.code();
    // sipp's CSV has whole seconds only; our own clock is finer.
    st.elapsed_s = started.elapsed().as_secs_f64();
    Ok(st)
}

pub fn parse_stat_csv(text: &str) -> SippStats {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let Some(header) = lines.next() else {
        return SippStats::default();
    };
    let Some(last) = lines.next_back() else {
        return SippStats::default();
    };
    let cols: Vec<&str> = header.split(';').collect();
    let vals: Vec<&str> = last.split(';').collect();
    let get = |name: &str| {
        cols.iter()
            .position(|c| *c == name)
            .and_then(|i| vals.get(i))
            .map(|v| v.trim())
    };
    let num = |name: &str| get(name).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // ElapsedTime(C) is "HH:MM:SS:FFF..." in sipp's CSV; the fraction's
    // digit count gives its scale.
    let elapsed_s = get("ElapsedTime(C)")
        .map(|v| {
            let p: Vec<&str> = v.split(':').collect();
            let n = |i: usize| {
                p.get(i)
                    .and_then(|x| x.trim().parse::<f64>().ok())
                    .unwrap_or(0.0)
            };
            let frac = p
                .get(3)
                .map(|f| n(3) / 10f64.powi(f.trim().len() as i32))
                .unwrap_or(0.0);
            n(0) * 3600.0 + n(1) * 60.0 + n(2) + frac
        })
        .unwrap_or(0.0);
    SippStats {
        exit_code: None,
        created: num("OutgoingCall(C)").max(num("TotalCallCreated")),
        successful: num("SuccessfulCall(C)"),
        failed: num("FailedCall(C)"),
        elapsed_s,
        call_rate: get("CallRate(C)")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0),
    }
}

/// Waits until the gateway has no call up; the last `voxgate_calls_active`
/// seen (-1 when /metrics did not answer).
pub fn wait_idle(gw: &Gateway, timeout: Duration) -> f64 {
    let deadline = crate::now() + timeout;
    loop {
        let active = gw
            .metrics()
            .map(|m| m.value("voxgate_calls_active"))
            .unwrap_or(-1.0);
        if active == 0.0 || crate::now() >= deadline {
            return active;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// p50/p99/mean of a histogram (bucket interpolation) as JSON.
pub fn quantiles(h: &Histogram) -> Value {
    let q = |x: f64| {
        h.quantile(x)
            .map(|v| {
                if v.is_finite() {
                    json!(v)
                } else {
                    json!("+Inf")
                }
            })
            .unwrap_or(Value::Null)
    };
    json!({ "observations": h.count, "p50_ms": q(0.5), "p99_ms": q(0.99),
            "mean_ms": if h.count > 0.0 { json!(h.sum / h.count) } else { Value::Null } })
}

/// `voxgate --version` of the binary under test.
pub fn voxgate_version() -> String {
    Command::new(crate::voxgate_bin())
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// Prints the report on stdout and writes it to `out` when given.
pub fn emit_report(report: &Value, out: Option<&Path>) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(report)?;
    println!("{text}");
    if let Some(out) = out {
        if let Some(dir) = out.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(out, format!("{text}\n"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sipp_stat_csv() {
        let csv = "StartTime;LastResetTime;CurrentTime;ElapsedTime(P);ElapsedTime(C);TargetRate;CallRate(P);CallRate(C);IncomingCall(P);IncomingCall(C);OutgoingCall(P);OutgoingCall(C);TotalCallCreated;CurrentCall;SuccessfulCall(P);SuccessfulCall(C);FailedCall(P);FailedCall(C);\n\
a;b;c;00:00:01:000000;00:00:01:000000;100;0;0;0;0;100;100;100;0;100;100;0;0;\n\
a;b;c;00:00:01:000000;00:00:10:500000;100;0;99.5;0;0;100;1000;1000;0;100;998;0;2;\n";
        let s = parse_stat_csv(csv);
        assert_eq!((s.created, s.successful, s.failed), (1000, 998, 2));
        assert!((s.elapsed_s - 10.5).abs() < 1e-9, "{}", s.elapsed_s);
        assert_eq!(s.call_rate, 99.5);
    }
}
