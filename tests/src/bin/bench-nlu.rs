//! The NLU benchmark: the embedding intent classifier (all-MiniLM-L6-v2 on
//! the CPU) per utterance, cold and warm, and the one-off cost of embedding
//! an intent set. Prints one JSON document on stdout (and to `--out`).
//!
//! `--fit` instead prints the calibration table's raw features (best
//! score, runner-up, whether the best is right) and a logistic regression
//! fitted on them: how the constants in
//! `stt-tts/src/nlu/embedding/score.rs` were chosen (`docs/nlu.md`).
//!
//! Usage: bench-nlu [--model DIR] [--utterances N] [--out FILE] [--fit]

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::json;
use voxgate_stt_tts::nlu::embedding::EmbeddingIntentEngine;
use voxgate_stt_tts::nlu::{IntentEngine, IntentSpec, NluRequest};
use voxgate_tests::now;

struct Opts {
    model: PathBuf,
    utterances: usize,
    out: Option<PathBuf>,
    fit: bool,
}

fn opts() -> anyhow::Result<Opts> {
    let mut o = Opts {
        model: std::env::var_os("VOXGATE_MINILM_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("data/models/all-MiniLM-L6-v2")),
        utterances: 300,
        out: None,
        fit: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--model" => o.model = args.next().context("--model DIR")?.into(),
            "--utterances" => {
                o.utterances = args.next().context("--utterances N")?.parse()?;
            }
            "--out" => o.out = Some(args.next().context("--out FILE")?.into()),
            "--fit" => o.fit = true,
            other => bail!("unknown argument {other}"),
        }
    }
    Ok(o)
}

fn spec(name: &str, description: &str, examples: &[&str]) -> IntentSpec {
    IntentSpec {
        name: name.into(),
        description: description.into(),
        examples: examples.iter().map(|e| (*e).to_owned()).collect(),
        slots: Vec::new(),
    }
}

/// The calibration set: a bank-and-telecom line whose intents overlap on
/// purpose (payments, bills, cards), unlike the test table's.
fn intents() -> Vec<IntentSpec> {
    vec![
        spec(
            "check_balance",
            "The caller asks for an account balance",
            &[
                "check my balance",
                "how much money do I have",
                "account balance",
            ],
        ),
        spec(
            "pay_bill",
            "The caller wants to pay a bill",
            &["pay my bill", "I want to make a payment", "pay the invoice"],
        ),
        spec(
            "lost_card",
            "The caller lost a card or had it stolen",
            &[
                "I lost my card",
                "my credit card was stolen",
                "block my card",
            ],
        ),
        spec(
            "agent",
            "The caller wants a human",
            &["talk to a person", "speak to an agent", "operator"],
        ),
        spec(
            "cancel_subscription",
            "The caller wants to end a contract",
            &[
                "cancel my subscription",
                "I want to end my contract",
                "stop my plan",
            ],
        ),
        spec(
            "internet_down",
            "The caller's internet connection does not work",
            &[
                "my internet is down",
                "the wifi isn't working",
                "no connection",
            ],
        ),
        spec(
            "book_appointment",
            "The caller wants to book a visit",
            &[
                "book an appointment",
                "schedule a visit",
                "I need an appointment",
            ],
        ),
    ]
}

/// (utterance, the right intent or "" for none).
const CALIBRATION: &[(&str, &str)] = &[
    ("what's my balance", "check_balance"),
    ("tell me how much is in my savings account", "check_balance"),
    ("do I have enough money for rent", "check_balance"),
    ("balance", "check_balance"),
    ("I'd like to settle my electricity bill", "pay_bill"),
    ("can I pay what I owe", "pay_bill"),
    ("I got an invoice and want to pay it", "pay_bill"),
    ("make a payment", "pay_bill"),
    ("someone took my wallet with my bank card", "lost_card"),
    ("I can't find my debit card anywhere", "lost_card"),
    ("please freeze my card", "lost_card"),
    ("my card is gone", "lost_card"),
    ("get me a human", "agent"),
    ("I want to speak to somebody real", "agent"),
    ("transfer me to a representative", "agent"),
    ("agent", "agent"),
    ("I don't want your service anymore", "cancel_subscription"),
    ("terminate my contract", "cancel_subscription"),
    ("how do I unsubscribe", "cancel_subscription"),
    ("I'm leaving, cancel everything", "cancel_subscription"),
    (
        "the router has a red light and nothing loads",
        "internet_down",
    ),
    ("my broadband stopped working", "internet_down"),
    ("I have no internet since this morning", "internet_down"),
    ("web pages won't load", "internet_down"),
    ("can I come in next tuesday", "book_appointment"),
    ("I'd like to see an advisor", "book_appointment"),
    ("set up a meeting at the branch", "book_appointment"),
    ("reserve a slot for me", "book_appointment"),
    // Near misses: related words, no intent of the set.
    ("what's your address", ""),
    ("do you sell phones", ""),
    ("I want to open a new account", ""),
    ("what's the interest rate on savings", ""),
    // Unrelated.
    ("the weather is nice", ""),
    ("banana", ""),
    ("my cat ate the sandwich", ""),
    ("who won the game last night", ""),
    ("tell me a joke", ""),
    ("purple elephants dance", ""),
    ("how tall is mount everest", ""),
    ("I'm cooking pasta tonight", ""),
    ("hello", ""),
    ("um", ""),
];

fn request(utterance: &str, intents: &[IntentSpec]) -> NluRequest {
    NluRequest {
        utterance: utterance.into(),
        history: Vec::new(),
        intents: intents.to_vec(),
        language: None,
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn summary(mut v: Vec<f64>) -> serde_json::Value {
    v.sort_by(f64::total_cmp);
    let mean = v.iter().sum::<f64>() / v.len().max(1) as f64;
    json!({
        "n": v.len(),
        "p50_ms": quantile(&v, 0.5),
        "p99_ms": quantile(&v, 0.99),
        "max_ms": v.last().copied().unwrap_or(0.0),
        "mean_ms": mean,
    })
}

/// Fits `σ(w0 + w1·best + w2·margin)` to "the best intent is right" by
/// gradient descent on the log loss with a small L2 penalty (the table is
/// nearly separable; the penalty keeps the slopes finite).
fn logistic(points: &[(f64, f64, f64)]) -> [f64; 3] {
    let mut w = [0.0f64; 3];
    let lambda = 1e-3;
    let rate = 0.5;
    for _ in 0..200_000 {
        let mut g = [0.0f64; 3];
        for &(x1, x2, y) in points {
            let p = 1.0 / (1.0 + (-(w[0] + w[1] * x1 + w[2] * x2)).exp());
            g[0] += p - y;
            g[1] += (p - y) * x1;
            g[2] += (p - y) * x2;
        }
        let n = points.len() as f64;
        w[0] -= rate * g[0] / n;
        w[1] -= rate * (g[1] / n + lambda * w[1]);
        w[2] -= rate * (g[2] / n + lambda * w[2]);
    }
    w
}

fn fit(engine: &EmbeddingIntentEngine) -> anyhow::Result<()> {
    let set = intents();
    let mut points = Vec::new();
    let mut rows = Vec::new();
    for (utterance, want) in CALIBRATION {
        let raw = engine.raw_scores(&set, utterance)?;
        let mut order: Vec<usize> = (0..raw.len()).collect();
        order.sort_by(|a, b| raw[*b].total_cmp(&raw[*a]));
        let (best, second) = (raw[order[0]], raw[order[1]]);
        let correct = !want.is_empty() && set[order[0]].name == *want;
        points.push((
            f64::from(best),
            f64::from(best - second),
            if correct { 1.0 } else { 0.0 },
        ));
        rows.push(json!({
            "utterance": utterance,
            "want": want,
            "got": set[order[0]].name,
            "best": best,
            "runner_up": second,
            "correct": correct,
        }));
    }
    let w = logistic(&points);
    let doc = json!({
        "table": rows,
        "fit": {
            "w0": w[0], "w_best": w[1], "w_margin": w[2],
            "slope_sim": w[1],
            "sim_centre": -w[0] / w[1],
            "slope_margin": w[2],
        },
    });
    println!("{}", serde_json::to_string_pretty(&doc)?);
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let o = opts()?;
    let started = now();
    let engine = EmbeddingIntentEngine::load(&o.model).with_context(|| {
        format!(
            "loading the model from {} (run `make models`)",
            o.model.display()
        )
    })?;
    let load_ms = ms(started.elapsed());
    if o.fit {
        return fit(&engine);
    }

    let set = intents();
    let phrases: Vec<&str> = CALIBRATION.iter().map(|(u, _)| *u).collect();
    let examples: usize = set.iter().map(|i| i.examples.len() + 1).sum();

    // Cold: the first call of a fresh engine, which embeds the set too.
    let t = now();
    engine.classify_blocking(&request(phrases[0], &set))?;
    let cold_first_call_ms = ms(t.elapsed());

    // The one-off intent-set embedding on a warm model: each round changes
    // one description, so its set misses the cache.
    let mut set_ms = Vec::new();
    for round in 0..5 {
        let mut variant = set.clone();
        variant[0].description = format!("{} (round {round})", variant[0].description);
        let t = now();
        engine.prepare(&variant)?;
        set_ms.push(ms(t.elapsed()));
    }

    // Warm, synchronous: one utterance embedded per turn.
    let mut direct = Vec::with_capacity(o.utterances);
    for i in 0..o.utterances {
        let t = now();
        engine.classify_blocking(&request(phrases[i % phrases.len()], &set))?;
        direct.push(ms(t.elapsed()));
    }
    // Right intent named, over the table's in-domain rows once.
    let (mut correct, mut labelled) = (0usize, 0usize);
    for (u, want) in CALIBRATION.iter().filter(|(_, w)| !w.is_empty()) {
        labelled += 1;
        let r = engine.classify_blocking(&request(u, &set))?;
        correct += usize::from(r.intent.as_deref() == Some(*want));
    }

    // Warm, through the IntentEngine contract: the blocking pool hop and
    // the channel included, as the orchestrator sees it.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut streamed = Vec::with_capacity(o.utterances);
    rt.block_on(async {
        for i in 0..o.utterances {
            let u = phrases[i % phrases.len()];
            let t = now();
            IntentEngine::classify(&engine, request(u, &set))
                .result()
                .await?;
            streamed.push(ms(t.elapsed()));
        }
        anyhow::Ok(())
    })?;

    let doc = json!({
        "benchmark": "nlu",
        "engine": "minilm-embedding",
        "model": "all-MiniLM-L6-v2 (candle, CPU, f32)",
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        // Other work on the machine inflates every number below.
        "loadavg_1m_at_end": std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|l| l.split_whitespace().next().and_then(|v| v.parse::<f64>().ok())),
        "model_load_ms_including_sha256": load_ms,
        "intent_set": { "intents": set.len(), "phrases_embedded": examples },
        "intent_set_embedding": summary(set_ms),
        "cold_first_call_ms": cold_first_call_ms,
        "warm_per_utterance": summary(direct),
        "warm_per_utterance_via_intent_engine": summary(streamed),
        "calibration_table_accuracy": correct as f64 / labelled.max(1) as f64,
    });
    let text = serde_json::to_string_pretty(&doc)?;
    println!("{text}");
    if let Some(out) = o.out {
        std::fs::write(&out, format!("{text}\n"))
            .with_context(|| format!("writing {}", out.display()))?;
    }
    Ok(())
}
