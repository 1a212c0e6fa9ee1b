//! From what happened on each call to pass/fail per expectation and the
//! set's metrics: intent accuracy and confusion matrix, escalation
//! precision/recall, containment, fallbacks by reason, WER, latency
//! percentiles, the thresholds, and the regression check against a
//! baseline. Pure.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::caller::{reply_onset, TurnSpan};
use crate::manifest::{Call, Disposition, Thresholds};
use crate::outcome::GatewayOutcome;

/// One expectation and how it came out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    pub name: String,
    pub expected: String,
    pub actual: String,
    pub pass: bool,
}

impl Check {
    fn new(name: String, expected: impl ToString, actual: impl ToString, pass: bool) -> Self {
        Self {
            name,
            expected: expected.to_string(),
            actual: actual.to_string(),
            pass,
        }
    }
}

/// One caller turn measured on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireTurn {
    pub turn: usize,
    /// End of the caller's audio (or keys), ms from the answer.
    pub end_ms: u32,
    /// First reply audio after it, ms from the answer.
    pub reply_ms: Option<u32>,
    pub latency_ms: Option<u32>,
}

/// For each turn that waits for the bot: the first reply onset after its
/// end and before the next such turn starts.
pub fn wire_turns(spans: &[TurnSpan], levels: &[f64]) -> Vec<WireTurn> {
    let waiting: Vec<&TurnSpan> = spans.iter().filter(|s| s.awaits_reply).collect();
    waiting
        .iter()
        .enumerate()
        .map(|(k, s)| {
            let until = waiting.get(k + 1).map(|n| n.start_ms);
            let reply = reply_onset(levels, s.end_ms, until);
            WireTurn {
                turn: s.turn,
                end_ms: s.end_ms,
                reply_ms: reply,
                latency_ms: reply.map(|r| r.saturating_sub(s.end_ms)),
            }
        })
        .collect()
}

/// Word error rate of `hypothesis` against `reference` (word edit distance
/// over reference words), case and punctuation ignored.
pub fn wer(reference: &str, hypothesis: &str) -> f64 {
    let words = |s: &str| -> Vec<String> {
        s.split_whitespace()
            .map(|w| {
                w.trim_matches(|c: char| !c.is_alphanumeric())
                    .to_lowercase()
            })
            .filter(|w| !w.is_empty())
            .collect()
    };
    let (r, h) = (words(reference), words(hypothesis));
    if r.is_empty() {
        return if h.is_empty() { 0.0 } else { 1.0 };
    }
    let mut prev: Vec<usize> = (0..=h.len()).collect();
    for (i, rw) in r.iter().enumerate() {
        let mut cur = vec![i + 1; h.len() + 1];
        for (j, hw) in h.iter().enumerate() {
            let sub = prev[j] + usize::from(rw != hw);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[h.len()] as f64 / r.len() as f64
}

/// The expectations of one call against what happened. Turn expectations
/// are paired in order with the AI node's decisions: the k-th turn that
/// has an `expect` block is judged by the k-th decision.
pub fn check_call(
    call: &Call,
    wire: &[WireTurn],
    gw: Option<&GatewayOutcome>,
    fallback_heard_ms: Option<u32>,
) -> Vec<Check> {
    let mut checks = Vec::new();
    let none = "none".to_string();
    let decisions = gw.map(|g| g.decisions.as_slice()).unwrap_or_default();
    let mut next = decisions.iter();
    for (i, t) in call.turns.iter().enumerate() {
        let Some(e) = &t.expect else { continue };
        let d = next.next();
        let n = |what: &str| format!("turns[{i}].{what}");
        if let Some(intent) = &e.intent {
            let got = d.and_then(|d| d.intent.clone()).unwrap_or(none.clone());
            checks.push(Check::new(n("intent"), intent, &got, &got == intent));
        }
        if let Some(min) = e.min_confidence {
            let got = d.and_then(|d| d.confidence);
            checks.push(Check::new(
                n("min_confidence"),
                format!(">= {min:.2}"),
                got.map_or(none.clone(), |c| format!("{c:.2}")),
                got.is_some_and(|c| c >= min),
            ));
        }
        if let Some(esc) = e.escalate {
            let got = d.is_some_and(|d| d.action == "escalate");
            checks.push(Check::new(n("escalate"), esc, got, esc == got));
        }
        if let Some(reason) = &e.reason {
            let got = d.map_or(none.clone(), |d| d.rule.clone());
            checks.push(Check::new(n("reason"), reason, &got, &got == reason));
        }
    }
    let x = &call.expect;
    if let Some(want) = x.disposition {
        let got = gw.and_then(|g| g.disposition);
        checks.push(Check::new(
            "disposition".into(),
            want.name(),
            got.map_or("unknown", Disposition::name),
            got == Some(want),
        ));
    }
    if let Some(max) = x.max_turn_latency_ms {
        let worst = wire.iter().filter_map(|w| w.latency_ms).max();
        let unanswered = wire.iter().filter(|w| w.latency_ms.is_none()).count();
        checks.push(Check::new(
            "max_turn_latency_ms".into(),
            format!("<= {max} ms"),
            match worst {
                Some(w) => format!("{w} ms, {unanswered} turn(s) unanswered"),
                None => "no reply heard".into(),
            },
            worst.is_some_and(|w| u64::from(w) <= max),
        ));
    }
    if let Some(within) = x.fallback_within_ms {
        checks.push(Check::new(
            "fallback_within_ms".into(),
            format!("<= {within} ms"),
            fallback_heard_ms.map_or("not heard".into(), |f| format!("{f} ms")),
            fallback_heard_ms.is_some_and(|f| u64::from(f) <= within),
        ));
    }
    checks
}

/// Percentiles of one latency series, ms.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    pub count: usize,
    pub p50: u64,
    pub p95: u64,
    pub p99: u64,
    pub max: u64,
    /// Every value, sorted, for the report's histograms.
    pub values: Vec<u64>,
}

/// Nearest-rank percentiles.
pub fn percentiles(mut v: Vec<u64>) -> Percentiles {
    v.sort_unstable();
    let at = |p: f64| -> u64 {
        if v.is_empty() {
            return 0;
        }
        let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
        v[rank.clamp(1, v.len()) - 1]
    };
    Percentiles {
        count: v.len(),
        p50: at(50.0),
        p95: at(95.0),
        p99: at(99.0),
        max: v.last().copied().unwrap_or(0),
        values: v,
    }
}

/// What the metrics are computed from, per call.
#[derive(Debug, Clone)]
pub struct CallFacts<'a> {
    pub call: &'a Call,
    pub answered: bool,
    pub wire: &'a [WireTurn],
    pub gw: Option<&'a GatewayOutcome>,
    pub checks: &'a [Check],
    pub fallback_heard_ms: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Escalation {
    pub true_positive: u32,
    pub false_positive: u32,
    pub false_negative: u32,
    pub precision: Option<f64>,
    pub recall: Option<f64>,
}

/// The set's figures.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    pub calls: usize,
    pub answered: usize,
    pub intent_total: usize,
    pub intent_correct: usize,
    pub intent_accuracy: Option<f64>,
    /// Expected intent → what the NLU said → count.
    pub confusion: BTreeMap<String, BTreeMap<String, u32>>,
    pub escalation: Escalation,
    pub containment_rate: Option<f64>,
    pub disposition_accuracy: Option<f64>,
    /// Fallback reason → number of fallbacks.
    pub fallbacks_by_reason: BTreeMap<String, u32>,
    /// Share of calls with at least one fallback.
    pub fallback_rate: Option<f64>,
    /// Word error rate over turns with a reference; only with a real STT.
    pub wer: Option<f64>,
    pub checks_total: usize,
    pub checks_failed: usize,
    pub call_pass_rate: Option<f64>,
    /// `wire_turn` (end of caller audio → first reply audio, on the wire),
    /// `wire_fallback` (→ fallback prompt heard), and the gateway's own
    /// stage figures as `gateway_<stage>`.
    pub latency: BTreeMap<String, Percentiles>,
}

fn ratio(n: usize, d: usize) -> Option<f64> {
    (d > 0).then(|| n as f64 / d as f64)
}

/// Computes the set's metrics. `real_stt` enables WER (the simulator's
/// transcripts are scripted, so their WER would mean nothing).
pub fn compute(facts: &[CallFacts<'_>], real_stt: bool) -> Metrics {
    let mut m = Metrics {
        calls: facts.len(),
        ..Metrics::default()
    };
    let (mut contained, mut disp_total, mut disp_ok, mut with_fallback, mut passed) =
        (0, 0, 0, 0, 0);
    let mut wire = Vec::new();
    let mut fallback = Vec::new();
    let mut stages: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let (mut wer_sum, mut wer_n) = (0.0, 0usize);
    for f in facts {
        m.answered += usize::from(f.answered);
        let decisions = f.gw.map(|g| g.decisions.as_slice()).unwrap_or_default();
        let mut next = decisions.iter();
        for t in &f.call.turns {
            let Some(e) = &t.expect else { continue };
            let d = next.next();
            if let Some(want) = &e.intent {
                let got = d
                    .and_then(|d| d.intent.clone())
                    .unwrap_or_else(|| "none".into());
                m.intent_total += 1;
                m.intent_correct += usize::from(&got == want);
                *m.confusion
                    .entry(want.clone())
                    .or_default()
                    .entry(got)
                    .or_default() += 1;
            }
        }
        let got = f.gw.and_then(|g| g.disposition);
        let want = f.call.expect.disposition;
        let expected_esc = want == Some(Disposition::Escalated)
            || f.call
                .turns
                .iter()
                .any(|t| t.expect.as_ref().and_then(|e| e.escalate) == Some(true));
        let actual_esc = got == Some(Disposition::Escalated);
        match (expected_esc, actual_esc) {
            (true, true) => m.escalation.true_positive += 1,
            (false, true) => m.escalation.false_positive += 1,
            (true, false) => m.escalation.false_negative += 1,
            (false, false) => {}
        }
        contained += usize::from(got == Some(Disposition::Contained));
        if let Some(w) = want {
            disp_total += 1;
            disp_ok += usize::from(got == Some(w));
        }
        if let Some(g) = f.gw {
            with_fallback += usize::from(!g.fallbacks.is_empty());
            for fb in &g.fallbacks {
                *m.fallbacks_by_reason.entry(fb.reason.clone()).or_default() += 1;
            }
            for (stage, v) in &g.stages {
                stages
                    .entry(format!("gateway_{stage}"))
                    .or_default()
                    .extend(v);
            }
            if real_stt {
                let refs = f.call.turns.iter().filter_map(|t| t.reference.as_deref());
                for (r, h) in refs.zip(&g.transcripts) {
                    wer_sum += wer(r, h);
                    wer_n += 1;
                }
            }
        }
        wire.extend(f.wire.iter().filter_map(|w| w.latency_ms).map(u64::from));
        fallback.extend(f.fallback_heard_ms.map(u64::from));
        m.checks_total += f.checks.len();
        m.checks_failed += f.checks.iter().filter(|c| !c.pass).count();
        passed += usize::from(f.answered && f.checks.iter().all(|c| c.pass));
    }
    let e = &mut m.escalation;
    e.precision = ratio(
        e.true_positive as usize,
        (e.true_positive + e.false_positive) as usize,
    );
    e.recall = ratio(
        e.true_positive as usize,
        (e.true_positive + e.false_negative) as usize,
    );
    m.intent_accuracy = ratio(m.intent_correct, m.intent_total);
    m.containment_rate = ratio(contained, m.calls);
    m.disposition_accuracy = ratio(disp_ok, disp_total);
    m.fallback_rate = ratio(with_fallback, m.calls);
    m.call_pass_rate = ratio(passed, m.calls);
    m.wer = (wer_n > 0).then(|| wer_sum / wer_n as f64);
    m.latency.insert("wire_turn".into(), percentiles(wire));
    if !fallback.is_empty() {
        m.latency
            .insert("wire_fallback".into(), percentiles(fallback));
    }
    for (k, v) in stages {
        m.latency.insert(k, percentiles(v));
    }
    m
}

/// The set's thresholds against the metrics. A threshold whose metric has
/// no data fails: a gate must not pass on nothing.
pub fn check_thresholds(t: &Thresholds, m: &Metrics) -> Vec<Check> {
    let mut out = Vec::new();
    let mut min = |name: &str, want: Option<f64>, got: Option<f64>| {
        if let Some(w) = want {
            out.push(Check::new(
                name.into(),
                format!(">= {w:.3}"),
                got.map_or("no data".into(), |g| format!("{g:.3}")),
                got.is_some_and(|g| g >= w),
            ));
        }
    };
    min("intent_accuracy", t.intent_accuracy, m.intent_accuracy);
    min(
        "escalation_precision",
        t.escalation_precision,
        m.escalation.precision,
    );
    min(
        "escalation_recall",
        t.escalation_recall,
        m.escalation.recall,
    );
    min(
        "disposition_accuracy",
        t.disposition_accuracy,
        m.disposition_accuracy,
    );
    min("call_pass_rate", t.call_pass_rate, m.call_pass_rate);
    if let Some(max) = t.turn_latency_p95_ms {
        let p = m.latency.get("wire_turn").filter(|p| p.count > 0);
        out.push(Check::new(
            "turn_latency_p95_ms".into(),
            format!("<= {max} ms"),
            p.map_or("no data".into(), |p| format!("{} ms", p.p95)),
            p.is_some_and(|p| p.p95 <= max),
        ));
    }
    out
}

/// How far a metric may move for the worse before it is a regression.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tolerances {
    /// Absolute drop allowed in a rate (accuracy, precision, recall, …).
    pub rate_drop: f64,
    /// Relative rise allowed in a latency percentile…
    pub latency_rise: f64,
    /// …plus this many ms, so that small numbers do not flap.
    pub latency_slack_ms: u64,
}

impl Default for Tolerances {
    fn default() -> Self {
        Self {
            rate_drop: 0.02,
            latency_rise: 0.2,
            latency_slack_ms: 50,
        }
    }
}

/// A metric worse than the baseline beyond tolerance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Regression {
    pub metric: String,
    pub baseline: String,
    pub current: String,
    pub allowed: String,
}

/// Every metric of `current` that regressed from `baseline`.
pub fn regressions(baseline: &Metrics, current: &Metrics, tol: &Tolerances) -> Vec<Regression> {
    let mut out = Vec::new();
    let rates = [
        (
            "intent_accuracy",
            baseline.intent_accuracy,
            current.intent_accuracy,
        ),
        (
            "escalation_precision",
            baseline.escalation.precision,
            current.escalation.precision,
        ),
        (
            "escalation_recall",
            baseline.escalation.recall,
            current.escalation.recall,
        ),
        (
            "containment_rate",
            baseline.containment_rate,
            current.containment_rate,
        ),
        (
            "disposition_accuracy",
            baseline.disposition_accuracy,
            current.disposition_accuracy,
        ),
        (
            "call_pass_rate",
            baseline.call_pass_rate,
            current.call_pass_rate,
        ),
    ];
    for (name, b, c) in rates {
        if let Some(b) = b {
            let worse = c.is_none_or(|c| c < b - tol.rate_drop);
            if worse {
                out.push(Regression {
                    metric: name.into(),
                    baseline: format!("{b:.3}"),
                    current: c.map_or("no data".into(), |c| format!("{c:.3}")),
                    allowed: format!(">= {:.3}", b - tol.rate_drop),
                });
            }
        }
    }
    // Lower is better for these two.
    for (name, b, c) in [
        (
            "fallback_rate",
            baseline.fallback_rate,
            current.fallback_rate,
        ),
        ("wer", baseline.wer, current.wer),
    ] {
        if let (Some(b), Some(c)) = (b, c) {
            if c > b + tol.rate_drop {
                out.push(Regression {
                    metric: name.into(),
                    baseline: format!("{b:.3}"),
                    current: format!("{c:.3}"),
                    allowed: format!("<= {:.3}", b + tol.rate_drop),
                });
            }
        }
    }
    for (stage, b) in &baseline.latency {
        let Some(c) = current.latency.get(stage) else {
            continue;
        };
        if b.count == 0 || c.count == 0 {
            continue;
        }
        for (p, bv, cv) in [
            ("p50", b.p50, c.p50),
            ("p95", b.p95, c.p95),
            ("p99", b.p99, c.p99),
        ] {
            let allowed = (bv as f64 * (1.0 + tol.latency_rise)) as u64 + tol.latency_slack_ms;
            if cv > allowed {
                out.push(Regression {
                    metric: format!("latency.{stage}.{p}"),
                    baseline: format!("{bv} ms"),
                    current: format!("{cv} ms"),
                    allowed: format!("<= {allowed} ms"),
                });
            }
        }
    }
    out
}

#[cfg(test)]
#[path = "metrics_tests.rs"]
mod tests;
