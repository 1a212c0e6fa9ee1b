//! The run's report: `report.json` (the whole truth, read back as a
//! baseline), JUnit XML for CI, and a self-contained `report.html`
//! (inline SVG charts, recordings embedded as data URIs, no network).

use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::manifest::Manifest;
use crate::metrics::{self, CallFacts, Check, Metrics, Regression, Tolerances};
use crate::runner::{CallResult, Engines};

/// Bumped when `report.json` changes shape incompatibly.
pub const REPORT_FORMAT: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a report.json: {source}")]
    Parse {
        path: String,
        source: serde_json::Error,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub format: u32,
    pub set: String,
    pub description: String,
    pub target: String,
    pub flow_version: Option<u32>,
    pub engines: Engines,
    /// Said at the top of every report.
    pub engines_note: String,
    pub concurrency: usize,
    pub wall_ms: u64,
    /// Replay throughput at `concurrency`.
    pub calls_per_minute: f64,
    /// The largest RTP interarrival jitter (RFC 3550) the softphone saw on
    /// the gateway's stream, ms: how well pacing held under this load.
    pub max_rx_jitter_ms: f64,
    pub metrics: Metrics,
    pub thresholds: Vec<Check>,
    pub baseline: Option<String>,
    pub regressions: Vec<Regression>,
    /// Thresholds met and no regression.
    pub passed: bool,
    pub calls: Vec<CallResult>,
}

/// The sentence at the top of a report.
pub fn engines_note(e: &Engines) -> String {
    if e.real_stt() {
        format!(
            "Engines: STT {} (a real recognizer), NLU {}, TTS {}. Media, orchestration and flow are the real gateway.",
            e.stt, e.nlu, e.tts
        )
    } else {
        format!(
            "Engines: STT is the provider SIMULATOR ({}): transcripts are scripted, not recognized, so intent and WER figures do not measure speech recognition. NLU {}, TTS {}; media, orchestration and flow are the real gateway.",
            e.stt, e.nlu, e.tts
        )
    }
}

impl Report {
    /// Computes metrics and thresholds from the results.
    pub fn new(
        m: &Manifest,
        target: &str,
        flow_version: Option<u32>,
        engines: Engines,
        concurrency: usize,
        wall_ms: u64,
        calls: Vec<CallResult>,
    ) -> Report {
        let facts: Vec<CallFacts> = m
            .calls
            .iter()
            .zip(&calls)
            .map(|(c, r)| CallFacts {
                call: c,
                answered: r.answered,
                wire: &r.wire,
                gw: r.gateway.as_ref(),
                checks: &r.checks,
                fallback_heard_ms: r.fallback_heard_ms,
            })
            .collect();
        let metrics = metrics::compute(&facts, engines.real_stt());
        let thresholds = metrics::check_thresholds(&m.thresholds, &metrics);
        let passed = thresholds.iter().all(|c| c.pass);
        let calls_per_minute = if wall_ms == 0 {
            0.0
        } else {
            calls.len() as f64 * 60_000.0 / wall_ms as f64
        };
        let max_rx_jitter_ms = calls.iter().map(|c| c.jitter_ms).fold(0.0, f64::max);
        Report {
            format: REPORT_FORMAT,
            set: m.name.clone(),
            description: m.description.clone(),
            target: target.to_owned(),
            flow_version,
            engines_note: engines_note(&engines),
            engines,
            concurrency,
            wall_ms,
            calls_per_minute,
            max_rx_jitter_ms,
            metrics,
            thresholds,
            baseline: None,
            regressions: Vec::new(),
            passed,
            calls,
        }
    }

    /// Marks regressions against `baseline`; any fails the report.
    pub fn compare_with(&mut self, baseline: &Report, name: &str, tol: &Tolerances) {
        self.baseline = Some(name.to_owned());
        self.regressions = metrics::regressions(&baseline.metrics, &self.metrics, tol);
        self.passed = self.passed && self.regressions.is_empty();
    }

    pub fn load(path: &Path) -> Result<Report, ReportError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ReportError::Io {
            path: shown.clone(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|source| ReportError::Parse {
            path: shown,
            source,
        })
    }

    /// Writes report.json, junit.xml and report.html into `dir`.
    pub fn write(&self, dir: &Path) -> Result<(), ReportError> {
        let io = |path: &Path| {
            let shown = path.display().to_string();
            move |source| ReportError::Io {
                path: shown,
                source,
            }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let json = serde_json::to_string_pretty(self).unwrap_or_default();
        for (name, body) in [
            ("report.json", json),
            ("junit.xml", self.junit()),
            ("report.html", crate::html::render(self)),
        ] {
            let p = dir.join(name);
            std::fs::write(&p, body).map_err(io(&p))?;
        }
        Ok(())
    }

    /// JUnit XML: one suite for the set, a case per call and per threshold.
    pub fn junit(&self) -> String {
        let failures = self.calls.iter().filter(|c| !c.passed).count()
            + self.thresholds.iter().filter(|t| !t.pass).count()
            + self.regressions.len();
        let tests = self.calls.len() + self.thresholds.len() + self.regressions.len();
        let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        let _ = writeln!(
            x,
            "<testsuites name=\"voxgate-eval\" tests=\"{tests}\" failures=\"{failures}\">"
        );
        let _ = writeln!(
            x,
            "  <testsuite name=\"{}\" tests=\"{tests}\" failures=\"{failures}\" time=\"{:.3}\">",
            esc(&self.set),
            self.wall_ms as f64 / 1000.0
        );
        let _ = writeln!(
            x,
            "    <properties><property name=\"engines\" value=\"{}\"/></properties>",
            esc(&self.engines_note)
        );
        for c in &self.calls {
            let _ = write!(
                x,
                "    <testcase classname=\"{}.calls\" name=\"{}\" time=\"{:.3}\"",
                esc(&self.set),
                esc(&c.id),
                c.duration_ms as f64 / 1000.0
            );
            if c.passed {
                x.push_str("/>\n");
                continue;
            }
            let mut why: Vec<String> = c.error.iter().cloned().collect();
            why.extend(
                c.checks
                    .iter()
                    .filter(|k| !k.pass)
                    .map(|k| format!("{}: expected {}, got {}", k.name, k.expected, k.actual)),
            );
            let _ = writeln!(
                x,
                ">\n      <failure message=\"{}\">{}</failure>\n    </testcase>",
                esc(why.first().map(String::as_str).unwrap_or("failed")),
                esc(&why.join("\n"))
            );
        }
        for t in &self.thresholds {
            let _ = write!(
                x,
                "    <testcase classname=\"{}.thresholds\" name=\"{}\"",
                esc(&self.set),
                esc(&t.name)
            );
            if t.pass {
                x.push_str("/>\n");
            } else {
                let _ = writeln!(
                    x,
                    ">\n      <failure message=\"expected {}, got {}\"/>\n    </testcase>",
                    esc(&t.expected),
                    esc(&t.actual)
                );
            }
        }
        for r in &self.regressions {
            let _ = writeln!(
                x,
                "    <testcase classname=\"{}.regressions\" name=\"{}\">\n      <failure message=\"{} (baseline {}, allowed {})\"/>\n    </testcase>",
                esc(&self.set),
                esc(&r.metric),
                esc(&r.current),
                esc(&r.baseline),
                esc(&r.allowed)
            );
        }
        x.push_str("  </testsuite>\n</testsuites>\n");
        x
    }
}

/// XML/HTML text and attribute escaping.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' => {}
            c => o.push(c),
        }
    }
    o
}

/// The side-by-side text of two runs of the same set (A/B of flows).
pub fn side_by_side(a: &Report, b: &Report) -> String {
    let f = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.3}"));
    let rows: Vec<(String, String, String)> = vec![
        (
            "intent_accuracy".into(),
            f(a.metrics.intent_accuracy),
            f(b.metrics.intent_accuracy),
        ),
        (
            "escalation_precision".into(),
            f(a.metrics.escalation.precision),
            f(b.metrics.escalation.precision),
        ),
        (
            "escalation_recall".into(),
            f(a.metrics.escalation.recall),
            f(b.metrics.escalation.recall),
        ),
        (
            "containment_rate".into(),
            f(a.metrics.containment_rate),
            f(b.metrics.containment_rate),
        ),
        (
            "disposition_accuracy".into(),
            f(a.metrics.disposition_accuracy),
            f(b.metrics.disposition_accuracy),
        ),
        (
            "fallback_rate".into(),
            f(a.metrics.fallback_rate),
            f(b.metrics.fallback_rate),
        ),
        (
            "call_pass_rate".into(),
            f(a.metrics.call_pass_rate),
            f(b.metrics.call_pass_rate),
        ),
    ]
    .into_iter()
    .chain(a.metrics.latency.iter().map(|(k, pa)| {
        let pb = b.metrics.latency.get(k);
        (
            format!("{k} p50/p95 ms"),
            format!("{}/{}", pa.p50, pa.p95),
            pb.map_or("-".into(), |p| format!("{}/{}", p.p50, p.p95)),
        )
    }))
    .collect();
    let va = a.flow_version.map_or("live".into(), |v| format!("v{v}"));
    let vb = b.flow_version.map_or("live".into(), |v| format!("v{v}"));
    let mut out = format!("{:<34} {:>14} {:>14}\n", "metric", va, vb);
    for (k, x, y) in rows {
        let mark = if x != y { "  *" } else { "" };
        let _ = writeln!(out, "{k:<34} {x:>14} {y:>14}{mark}");
    }
    let diff: Vec<&str> = a
        .calls
        .iter()
        .zip(&b.calls)
        .filter(|(x, y)| x.passed != y.passed)
        .map(|(x, _)| x.id.as_str())
        .collect();
    let _ = writeln!(
        out,
        "calls whose pass/fail differs: {}",
        if diff.is_empty() {
            "none".to_owned()
        } else {
            diff.join(", ")
        }
    );
    out
}
