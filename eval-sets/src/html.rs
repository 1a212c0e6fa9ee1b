//! `report.html`: one file, no scripts from anywhere, no fonts, no CDN.
//! Charts are inline SVG; each failed call's recording is a WAV data URI.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use crate::metrics::Percentiles;
use crate::render::RATE;
use crate::report::{esc, Report};

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}\
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}\
.pass{color:#176f2c}.fail{color:#b3261e;font-weight:600}.note{background:#fff4ce;border:1px solid #e0c060;padding:.6em 1em}\
.ok{background:#e6f4ea;padding:.6em 1em}.bad{background:#fce8e6;padding:.6em 1em}h2{margin-top:1.6em}\
svg text{font:11px sans-serif}details{margin:.6em 0}";

/// The whole page.
pub fn render(r: &Report) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>voxgate eval: {}</title><style>{STYLE}</style></head><body>",
        esc(&r.set)
    );
    let _ = write!(h, "<h1>Eval set {}</h1>", esc(&r.set));
    let _ = write!(
        h,
        "<p class=\"note\" id=\"engines\">{}</p>",
        esc(&r.engines_note)
    );
    let verdict = if r.passed { "ok" } else { "bad" };
    let _ = write!(
        h,
        "<p class=\"{verdict}\" id=\"verdict\"><b>{}</b> — {} calls against {} (flow {}), concurrency {}, {:.1} s.{}</p>",
        if r.passed { "PASSED" } else { "FAILED" },
        r.metrics.calls,
        esc(&r.target),
        r.flow_version.map_or("live version".into(), |v| format!("version {v}")),
        r.concurrency,
        r.wall_ms as f64 / 1000.0,
        r.baseline.as_ref().map_or(String::new(), |b| format!(" Baseline: {}.", esc(b)))
    );
    summary(&mut h, r);
    h.push_str("<h2>Latency</h2><p>On the wire: end of the caller's audio to the first reply audio (<code>wire_turn</code>) and to the fallback prompt (<code>wire_fallback</code>). <code>gateway_*</code> are the gateway's own stage figures from the call records.</p>");
    for (name, p) in &r.metrics.latency {
        histogram(&mut h, name, p);
    }
    h.push_str("<h2>Intent confusion matrix</h2>");
    confusion(&mut h, r);
    failed_calls(&mut h, r);
    h.push_str("</body></html>\n");
    h
}

fn rate(v: Option<f64>) -> String {
    v.map_or("—".into(), |v| format!("{:.1} %", v * 100.0))
}

fn summary(h: &mut String, r: &Report) {
    let m = &r.metrics;
    h.push_str("<h2>Metrics</h2><table id=\"metrics\">");
    let rows = [
        ("calls answered", format!("{} / {}", m.answered, m.calls)),
        (
            "intent accuracy",
            format!(
                "{} ({}/{})",
                rate(m.intent_accuracy),
                m.intent_correct,
                m.intent_total
            ),
        ),
        ("escalation precision", rate(m.escalation.precision)),
        ("escalation recall", rate(m.escalation.recall)),
        ("containment", rate(m.containment_rate)),
        ("disposition as expected", rate(m.disposition_accuracy)),
        ("calls with a fallback", rate(m.fallback_rate)),
        (
            "WER",
            m.wer
                .map_or("— (needs a real STT and references)".into(), |w| {
                    format!("{:.1} %", w * 100.0)
                }),
        ),
        (
            "expectations failed",
            format!("{} of {}", m.checks_failed, m.checks_total),
        ),
        ("calls passed", rate(m.call_pass_rate)),
        (
            "throughput",
            format!(
                "{:.1} calls/min at concurrency {}",
                r.calls_per_minute, r.concurrency
            ),
        ),
        (
            "worst RTP jitter received",
            format!("{:.1} ms", r.max_rx_jitter_ms),
        ),
    ];
    for (k, v) in rows {
        let _ = write!(h, "<tr><th>{k}</th><td>{}</td></tr>", esc(&v));
    }
    for (reason, n) in &m.fallbacks_by_reason {
        let _ = write!(
            h,
            "<tr><th>fallbacks: {}</th><td>{n}</td></tr>",
            esc(reason)
        );
    }
    h.push_str("</table>");
    if !r.thresholds.is_empty() {
        h.push_str("<h3>Thresholds</h3><table><tr><th>threshold</th><th>wanted</th><th>got</th><th></th></tr>");
        for t in &r.thresholds {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"{}\">{}</td></tr>",
                esc(&t.name),
                esc(&t.expected),
                esc(&t.actual),
                if t.pass { "pass" } else { "fail" },
                if t.pass { "pass" } else { "FAIL" }
            );
        }
        h.push_str("</table>");
    }
    if !r.regressions.is_empty() {
        h.push_str("<h3 class=\"fail\">Regressions against the baseline</h3><table id=\"regressions\"><tr><th>metric</th><th>baseline</th><th>now</th><th>allowed</th></tr>");
        for g in &r.regressions {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td class=\"fail\">{}</td><td>{}</td></tr>",
                esc(&g.metric),
                esc(&g.baseline),
                esc(&g.current),
                esc(&g.allowed)
            );
        }
        h.push_str("</table>");
    }
}

/// A bar histogram of one latency series, 12 bins, with p50/p95/p99 lines.
fn histogram(h: &mut String, name: &str, p: &Percentiles) {
    let _ = write!(
        h,
        "<h3>{}</h3><p>n={} p50={} ms p95={} ms p99={} ms max={} ms</p>",
        esc(name),
        p.count,
        p.p50,
        p.p95,
        p.p99,
        p.max
    );
    if p.values.is_empty() {
        return;
    }
    let (w, ht, bins) = (600.0, 120.0, 12usize);
    let max = p.max.max(1) as f64;
    let mut counts = vec![0u32; bins];
    for v in &p.values {
        let b = ((*v as f64 / max) * bins as f64) as usize;
        counts[b.min(bins - 1)] += 1;
    }
    let top = f64::from(counts.iter().copied().max().unwrap_or(1).max(1));
    let bw = w / bins as f64;
    let _ = write!(
        h,
        "<svg class=\"hist\" width=\"{}\" height=\"{}\" viewBox=\"0 0 {} {}\" role=\"img\" aria-label=\"{} histogram\">",
        w + 40.0,
        ht + 30.0,
        w + 40.0,
        ht + 30.0,
        esc(name)
    );
    for (i, c) in counts.iter().enumerate() {
        let bh = f64::from(*c) / top * ht;
        let _ = write!(
            h,
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{bh:.1}\" fill=\"#5b8def\"><title>{c}</title></rect>",
            i as f64 * bw + 1.0,
            ht - bh,
            bw - 2.0
        );
    }
    for (label, v, color) in [
        ("p50", p.p50, "#176f2c"),
        ("p95", p.p95, "#b36b00"),
        ("p99", p.p99, "#b3261e"),
    ] {
        let x = v as f64 / max * w;
        let _ = write!(
            h,
            "<line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"0\" y2=\"{ht}\" stroke=\"{color}\" stroke-dasharray=\"4 2\"/><text x=\"{:.1}\" y=\"10\" fill=\"{color}\">{label}</text>",
            x + 2.0
        );
    }
    let _ = write!(
        h,
        "<text x=\"0\" y=\"{}\">0 ms</text><text x=\"{:.0}\" y=\"{}\">{} ms</text></svg>",
        ht + 15.0,
        w - 40.0,
        ht + 15.0,
        p.max
    );
}

fn confusion(h: &mut String, r: &Report) {
    let c = &r.metrics.confusion;
    if c.is_empty() {
        h.push_str("<p>No turn expected an intent.</p>");
        return;
    }
    let rows: Vec<&String> = c.keys().collect();
    let cols: Vec<String> = c
        .values()
        .flat_map(|m| m.keys().cloned())
        .chain(rows.iter().map(|s| (*s).clone()))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let cell = 40.0;
    let left = 120.0;
    let topm = 110.0;
    let (w, ht) = (
        left + cell * cols.len() as f64,
        topm + cell * rows.len() as f64,
    );
    let max = c
        .values()
        .flat_map(|m| m.values())
        .copied()
        .max()
        .unwrap_or(1)
        .max(1);
    let _ = write!(
        h,
        "<svg id=\"confusion\" width=\"{w}\" height=\"{ht}\" viewBox=\"0 0 {w} {ht}\" role=\"img\" aria-label=\"confusion matrix: rows expected, columns recognized\">"
    );
    for (j, col) in cols.iter().enumerate() {
        let x = left + cell * j as f64 + cell / 2.0;
        let _ = write!(
            h,
            "<text transform=\"translate({x:.0},{:.0}) rotate(-60)\">{}</text>",
            topm - 4.0,
            esc(col)
        );
    }
    for (i, row) in rows.iter().enumerate() {
        let y = topm + cell * i as f64;
        let _ = write!(
            h,
            "<text x=\"2\" y=\"{:.0}\">{}</text>",
            y + cell / 2.0 + 4.0,
            esc(row)
        );
        for (j, col) in cols.iter().enumerate() {
            let n = c.get(*row).and_then(|m| m.get(col)).copied().unwrap_or(0);
            let a = f64::from(n) / f64::from(max);
            let color = if *row == col {
                "23,111,44"
            } else {
                "179,38,30"
            };
            let x = left + cell * j as f64;
            let _ = write!(
                h,
                "<rect x=\"{x}\" y=\"{y}\" width=\"{cell}\" height=\"{cell}\" fill=\"rgba({color},{a:.2})\" stroke=\"#ccc\"><title>expected {} → {}: {n}</title></rect>",
                esc(row),
                esc(col)
            );
            if n > 0 {
                let _ = write!(
                    h,
                    "<text x=\"{:.0}\" y=\"{:.0}\" text-anchor=\"middle\">{n}</text>",
                    x + cell / 2.0,
                    y + cell / 2.0 + 4.0
                );
            }
        }
    }
    h.push_str("</svg><p>Rows: the intent expected. Columns: what the NLU decided (<code>none</code>: no decision).</p>");
}

fn failed_calls(h: &mut String, r: &Report) {
    let failed: Vec<_> = r.calls.iter().filter(|c| !c.passed).collect();
    let _ = write!(h, "<h2>Failed calls ({})</h2>", failed.len());
    for c in failed {
        let _ = write!(
            h,
            "<details class=\"failed-call\" open><summary><b>{}</b> (DID {}, SIP Call-ID {})</summary>",
            esc(&c.id),
            esc(&c.did),
            esc(&c.sip_call_id)
        );
        if let Some(e) = &c.error {
            let _ = write!(h, "<p class=\"fail\">{}</p>", esc(e));
        }
        h.push_str("<table><tr><th>expectation</th><th>wanted</th><th>got</th></tr>");
        for k in &c.checks {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td class=\"{}\">{}</td></tr>",
                esc(&k.name),
                esc(&k.expected),
                if k.pass { "pass" } else { "fail" },
                esc(&k.actual)
            );
        }
        h.push_str("</table><table><tr><th>caller turn</th><th>from–to ms</th><th>reply heard at</th><th>latency</th></tr>");
        for s in &c.spans {
            let w = c.wire.iter().find(|w| w.turn == s.turn);
            let _ = write!(
                h,
                "<tr><td>{} {}</td><td>{}–{}</td><td>{}</td><td>{}</td></tr>",
                s.turn,
                s.kind,
                s.start_ms,
                s.end_ms,
                w.and_then(|w| w.reply_ms)
                    .map_or("—".into(), |v| format!("{v} ms")),
                w.and_then(|w| w.latency_ms)
                    .map_or("—".into(), |v| format!("{v} ms"))
            );
        }
        h.push_str("</table>");
        if let Some(g) = &c.gateway {
            let _ = write!(
                h,
                "<p>Gateway record {} (flow version {}, {}):</p><table><tr><th>at ms</th><th>node</th><th>outcome</th><th>what happened</th></tr>",
                esc(&g.record_id),
                g.flow_version,
                esc(g.record_disposition.as_deref().unwrap_or("?"))
            );
            for s in &g.timeline {
                let _ = write!(
                    h,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    s.entered_ms,
                    esc(&s.node),
                    esc(s.outcome.as_deref().unwrap_or("")),
                    s.notes
                        .iter()
                        .map(|n| esc(n))
                        .collect::<Vec<_>>()
                        .join("<br>")
                );
            }
            h.push_str("</table>");
        }
        if !c.heard.is_empty() {
            let _ = write!(
                h,
                "<p>What the caller heard:</p><audio controls preload=\"none\" src=\"data:audio/wav;base64,{}\"></audio>",
                base64(&wav_bytes(&c.heard, RATE))
            );
        }
        h.push_str("</details>");
    }
}

/// A 16-bit mono PCM WAV in memory.
pub fn wav_bytes(samples: &[i16], rate: u32) -> Vec<u8> {
    let data = u32::try_from(samples.len() * 2).unwrap_or(u32::MAX);
    let mut b = Vec::with_capacity(44 + samples.len() * 2);
    b.extend_from_slice(b"RIFF");
    b.extend_from_slice(&(36u32.saturating_add(data)).to_le_bytes());
    b.extend_from_slice(b"WAVEfmt ");
    b.extend_from_slice(&16u32.to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes());
    b.extend_from_slice(&rate.to_le_bytes());
    b.extend_from_slice(&(rate * 2).to_le_bytes());
    b.extend_from_slice(&2u16.to_le_bytes());
    b.extend_from_slice(&16u16.to_le_bytes());
    b.extend_from_slice(b"data");
    b.extend_from_slice(&data.to_le_bytes());
    for s in samples {
        b.extend_from_slice(&s.to_le_bytes());
    }
    b
}

/// Standard base64 with padding.
pub fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut o = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                o.push(char::from(A[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                o.push('=');
            }
        }
    }
    o
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_rfc_4648_vectors() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(i.as_bytes()), o);
        }
    }

    #[test]
    fn wav_bytes_is_a_wav_hound_reads() {
        let b = wav_bytes(&[1, -2, 3], 8000);
        let r = hound::WavReader::new(std::io::Cursor::new(b)).unwrap();
        assert_eq!(r.spec().sample_rate, 8000);
        let s: Vec<i16> = r.into_samples().map(|s| s.unwrap()).collect();
        assert_eq!(s, [1, -2, 3]);
    }
}
