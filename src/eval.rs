//! `voxgate eval`: build, validate, replay and compare eval sets. The
//! logic is in the `voxgate-eval-sets` crate; this is the glue.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use voxgate_eval_sets::manifest::Manifest;
use voxgate_eval_sets::metrics::Tolerances;
use voxgate_eval_sets::report::{side_by_side, Report};
use voxgate_eval_sets::runner::{self, ApiTarget, Engines, RunConfig};
use voxgate_eval_sets::{manifest, render};
use voxgate_gateway::config::env;

use crate::exit;

#[derive(Debug, Subcommand)]
pub enum EvalCommand {
    /// Render the set's text turns to WAV (espeak-ng) with noise (sox)
    /// into SET/.build; files already built are skipped.
    Build { set: PathBuf },
    /// Check the manifest and the set's flow; exit 1 on problems.
    Validate { set: PathBuf },
    /// Print the manifest's JSON Schema.
    Schema,
    /// Build the set's audio, then print a provider-simulator script
    /// (`voxgate simulate --script`) for the selected calls' simulator
    /// settings, with a transcript per turn matched by speech envelope.
    SimulatorScript {
        set: PathBuf,
        /// Only calls whose id starts with this (repeatable).
        #[arg(long = "calls")]
        calls: Vec<String>,
    },
    /// Replay the set against a gateway and write the reports. Exits 1
    /// when a threshold fails or the run regressed from --baseline.
    Run(RunArgs),
    /// Run the set against two flow versions and print them side by side.
    Compare(CompareArgs),
}

#[derive(Debug, Args)]
pub struct Target {
    /// The gateway's SIP address, sip:HOST:PORT.
    #[arg(long)]
    pub target: String,
    /// The API, to read call records (and to switch flow versions).
    #[arg(long, env = env::API_URL)]
    pub api: Option<String>,
    /// An API key of the set's tenant (qa or above; editor to switch
    /// versions).
    #[arg(long, env = env::API_KEY, hide_env_values = true)]
    pub key: Option<String>,
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// What the gateway's STT is, stated at the top of the report.
    #[arg(long, default_value = "simulator")]
    pub stt_engine: String,
    #[arg(long, default_value = "unstated")]
    pub nlu_engine: String,
    #[arg(long, default_value = "unstated")]
    pub tts_engine: String,
    /// Print machine-readable JSON instead of a progress bar and text.
    #[arg(long)]
    pub json: bool,
    /// Only calls whose id starts with this (repeatable).
    #[arg(long = "calls")]
    pub calls: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    pub set: PathBuf,
    #[command(flatten)]
    pub target: Target,
    /// Make this version of the set's flow live first (needs --api).
    #[arg(long)]
    pub flow_version: Option<u32>,
    /// Where report.json, junit.xml and report.html go.
    #[arg(long, default_value = "eval-report")]
    pub report: PathBuf,
    /// A previous report.json: regressions beyond tolerance fail the run.
    #[arg(long)]
    pub baseline: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct CompareArgs {
    pub set: PathBuf,
    #[command(flatten)]
    pub target: Target,
    /// The two versions, A then B.
    #[arg(long = "flow-version", num_args = 1, required = true)]
    pub versions: Vec<u32>,
    #[arg(long, default_value = "eval-compare")]
    pub report: PathBuf,
}

pub fn run(cmd: EvalCommand) -> i32 {
    match cmd {
        EvalCommand::Schema => {
            print!("{}", manifest::json_schema());
            exit::OK
        }
        EvalCommand::Validate { set } => validate(&set),
        EvalCommand::SimulatorScript { set, calls } => match load(&set) {
            Ok(mut m) => {
                // The script names the built WAVs, by absolute path: it is
                // loaded from wherever the simulator runs.
                m.select(&calls);
                if let Err(e) = render::build(&set, &m) {
                    return fail(&e);
                }
                let dir = std::fs::canonicalize(&set).unwrap_or(set);
                println!(
                    "{}",
                    serde_json::to_string_pretty(&m.simulator_script_with_audio(&dir))
                        .unwrap_or_default()
                );
                exit::OK
            }
            Err(code) => code,
        },
        EvalCommand::Build { set } => match load(&set) {
            Ok(m) => match render::build(&set, &m) {
                Ok(s) => {
                    println!("built {}, {} up to date", s.built, s.up_to_date);
                    exit::OK
                }
                Err(e) => fail(&e),
            },
            Err(code) => code,
        },
        EvalCommand::Run(args) => crate::with_runtime(run_one(args)),
        EvalCommand::Compare(args) => crate::with_runtime(compare(args)),
    }
}

fn fail(e: &dyn std::fmt::Display) -> i32 {
    eprintln!("voxgate eval: {e}");
    exit::SOFTWARE
}

fn load(set: &Path) -> Result<Manifest, i32> {
    Manifest::load(set).map_err(|e| {
        eprintln!("voxgate eval: {e}");
        exit::USAGE
    })
}

fn validate(set: &Path) -> i32 {
    let m = match load(set) {
        Ok(m) => m,
        Err(_) => return 1,
    };
    match voxgate_flows::client::validate_file(&set.join(&m.flow), &[], false) {
        Ok((_, report)) if report.errors.is_empty() => {
            println!("ok: {} calls", m.calls.len());
            exit::OK
        }
        Ok((_, report)) => {
            for e in &report.errors {
                eprintln!("{}: {} {}: {}", m.flow, e.path, e.code, e.message);
            }
            1
        }
        Err(e) => {
            eprintln!("voxgate eval: {e}");
            1
        }
    }
}

fn config(t: &Target, flow_version: Option<u32>, tag: &str) -> RunConfig {
    RunConfig {
        target: t.target.clone(),
        api: match (&t.api, &t.key) {
            (Some(url), Some(key)) => Some(ApiTarget {
                url: url.clone(),
                key: key.clone(),
            }),
            _ => None,
        },
        flow_version,
        concurrency: t.concurrency,
        engines: Engines {
            stt: t.stt_engine.clone(),
            nlu: t.nlu_engine.clone(),
            tts: t.tts_engine.clone(),
        },
        run_tag: tag.to_owned(),
    }
}

/// A tag unique enough to tell this run's calls from earlier ones.
fn run_tag() -> String {
    let ms = voxgate_gateway::clock::wall_now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    format!("{:x}{:x}", ms, std::process::id())
}

async fn replay(set: &Path, m: &Manifest, cfg: &RunConfig, json: bool) -> Result<Report, i32> {
    let built = tokio::task::block_in_place(|| render::build(set, m));
    if let Err(e) = built {
        return Err(fail(&e));
    }
    let bar = if json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(m.calls.len() as u64)
    };
    bar.set_style(
        ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} calls, {elapsed} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_prefix(m.name.clone());
    let b = bar.clone();
    let started = voxgate_gateway::clock::now();
    let results = runner::run_set(set, m, cfg, move |r| {
        b.inc(1);
        if !r.passed {
            b.println(format!("  FAIL {}", r.id));
        }
    })
    .await
    .map_err(|e| fail(&e))?;
    bar.finish_and_clear();
    let wall = voxgate_gateway::clock::now().saturating_duration_since(started);
    Ok(Report::new(
        m,
        &cfg.target,
        cfg.flow_version,
        cfg.engines.clone(),
        cfg.concurrency,
        u64::try_from(wall.as_millis()).unwrap_or(u64::MAX),
        results,
    ))
}

fn print_summary(r: &Report, dir: &Path) {
    let m = &r.metrics;
    let f = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{:.1}%", v * 100.0));
    println!("{}", r.engines_note);
    println!(
        "{}: {} calls, intent accuracy {}, escalation P {} R {}, containment {}, calls passed {}",
        r.set,
        m.calls,
        f(m.intent_accuracy),
        f(m.escalation.precision),
        f(m.escalation.recall),
        f(m.containment_rate),
        f(m.call_pass_rate)
    );
    println!(
        "throughput: {:.1} calls/min at concurrency {}, worst RTP jitter received {:.1} ms",
        r.calls_per_minute, r.concurrency, r.max_rx_jitter_ms
    );
    if let Some(p) = m.latency.get("wire_turn") {
        println!(
            "turn latency on the wire: p50 {} ms, p95 {} ms, p99 {} ms",
            p.p50, p.p95, p.p99
        );
    }
    for t in r.thresholds.iter().filter(|t| !t.pass) {
        println!(
            "threshold FAILED: {} wanted {}, got {}",
            t.name, t.expected, t.actual
        );
    }
    for g in &r.regressions {
        println!(
            "REGRESSION: {} {} (baseline {}, allowed {})",
            g.metric, g.current, g.baseline, g.allowed
        );
    }
    println!(
        "{} — reports in {}",
        if r.passed { "PASSED" } else { "FAILED" },
        dir.display()
    );
}

async fn run_one(args: RunArgs) -> i32 {
    let mut m = match load(&args.set) {
        Ok(m) => m,
        Err(code) => return code,
    };
    m.select(&args.target.calls);
    let baseline = match &args.baseline {
        Some(p) => match Report::load(p) {
            Ok(b) => Some(b),
            Err(e) => return fail(&e),
        },
        None => None,
    };
    let cfg = config(&args.target, args.flow_version, &run_tag());
    let mut report = match replay(&args.set, &m, &cfg, args.target.json).await {
        Ok(r) => r,
        Err(code) => return code,
    };
    if let (Some(b), Some(p)) = (&baseline, &args.baseline) {
        report.compare_with(b, &p.display().to_string(), &Tolerances::default());
    }
    if let Err(e) = report.write(&args.report) {
        return fail(&e);
    }
    if args.target.json {
        println!("{}", serde_json::to_string(&report).unwrap_or_default());
    } else {
        print_summary(&report, &args.report);
    }
    if report.passed {
        exit::OK
    } else {
        1
    }
}

async fn compare(args: CompareArgs) -> i32 {
    if args.versions.len() != 2 || args.target.api.is_none() || args.target.key.is_none() {
        eprintln!("voxgate eval compare: give --flow-version twice, and --api and --key");
        return exit::USAGE;
    }
    let mut m = match load(&args.set) {
        Ok(m) => m,
        Err(code) => return code,
    };
    m.select(&args.target.calls);
    let tag = run_tag();
    let mut reports = Vec::new();
    for (i, v) in args.versions.iter().enumerate() {
        let cfg = config(&args.target, Some(*v), &format!("{tag}v{i}"));
        match replay(&args.set, &m, &cfg, args.target.json).await {
            Ok(r) => {
                if let Err(e) = r.write(&args.report.join(format!("v{v}"))) {
                    return fail(&e);
                }
                reports.push(r);
            }
            Err(code) => return code,
        }
    }
    let (a, b) = (&reports[0], &reports[1]);
    if args.target.json {
        println!(
            "{}",
            serde_json::json!({"a": {"version": a.flow_version, "metrics": a.metrics, "passed": a.passed},
                               "b": {"version": b.flow_version, "metrics": b.metrics, "passed": b.passed}})
        );
    } else {
        println!("{}", a.engines_note);
        print!("{}", side_by_side(a, b));
        println!(
            "version {} stays live; reports in {}",
            args.versions[1],
            args.report.display()
        );
    }
    exit::OK
}
