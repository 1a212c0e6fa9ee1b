//! Scoring (pure): the utterance's embedding against an intent set's
//! example embeddings, aggregated per intent and calibrated into a
//! confidence. See `docs/nlu.md` for how the constants were fitted.

use std::collections::BTreeMap;

use super::model::{cosine, Embedding};
use crate::nlu::slots::extract;
use crate::nlu::{IntentResult, IntentScore, IntentSpec};

/// The embedded phrases of one intent.
#[derive(Debug, Clone)]
pub struct IntentVectors {
    pub examples: Vec<Embedding>,
    /// The description (or, without one, the name in words).
    pub description: Option<Embedding>,
}

/// How far a match on the description is discounted against a match on an
/// example: descriptions are written about the caller ("The caller asks
/// for …"), not as the caller speaks, so they sit further from every
/// utterance, the right one included.
pub const DESCRIPTION_DISCOUNT: f32 = 0.05;

/// The calibration: `confidence = σ(SLOPE_SIM·(best − SIM_CENTRE) +
/// SLOPE_MARGIN·(best − runner_up))`, a logistic over the best similarity
/// and its margin over the runner-up, fitted on the phrasing table in
/// `docs/nlu.md`.
pub const SLOPE_SIM: f32 = 9.0;
pub const SIM_CENTRE: f32 = 0.47;
pub const SLOPE_MARGIN: f32 = 6.5;

/// Below this confidence no intent is named (`intent: None`); the
/// candidates still appear as alternatives.
pub const CONFIDENCE_FLOOR: f32 = 0.3;

/// How many alternatives are reported.
pub const MAX_ALTERNATIVES: usize = 3;

/// An intent's raw score: its best example's cosine similarity, or its
/// discounted description's when that is higher.
///
/// The maximum, not a mean: one close paraphrase is enough evidence, and
/// intent sets list examples of uneven number and spread ("operator" and
/// "I'd like to talk to a real person" are both `agent`), so a mean would
/// punish the intents written with the most varied examples.
pub fn intent_score(utterance: &[f32], intent: &IntentVectors) -> f32 {
    let best_example = intent
        .examples
        .iter()
        .map(|e| cosine(utterance, e))
        .fold(f32::NEG_INFINITY, f32::max);
    let description = intent.description.as_ref().map_or(f32::NEG_INFINITY, |d| {
        cosine(utterance, d) - DESCRIPTION_DISCOUNT
    });
    let s = best_example.max(description);
    if s.is_finite() {
        s
    } else {
        0.0
    }
}

/// Every intent's raw score, in set order.
pub fn raw_scores(utterance: &[f32], vectors: &[IntentVectors]) -> Vec<f32> {
    vectors.iter().map(|v| intent_score(utterance, v)).collect()
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// The calibrated confidence of an intent scoring `score` when the best
/// other intent scores `rival` (0 when there is none).
pub fn calibrate(score: f32, rival: f32) -> f32 {
    sigmoid(SLOPE_SIM * (score - SIM_CENTRE) + SLOPE_MARGIN * (score - rival)).clamp(0.0, 1.0)
}

/// Classifies from precomputed vectors: `specs[i]` goes with `vectors[i]`.
/// Fills the winner's slots from `utterance`.
pub fn classify(
    specs: &[IntentSpec],
    vectors: &[IntentVectors],
    utterance_text: &str,
    utterance: &[f32],
) -> IntentResult {
    let raw = raw_scores(utterance, vectors);
    let mut order: Vec<usize> = (0..raw.len().min(specs.len())).collect();
    order.sort_by(|a, b| raw[*b].total_cmp(&raw[*a]));
    let rival = |i: usize| -> f32 {
        order
            .iter()
            .filter(|j| **j != i)
            .map(|j| raw[*j])
            .fold(0.0f32, f32::max)
    };
    let scored: Vec<IntentScore> = order
        .iter()
        .map(|&i| IntentScore {
            intent: specs[i].name.clone(),
            confidence: calibrate(raw[i], rival(i)),
        })
        .collect();
    let Some(best) = scored.first() else {
        return IntentResult::no_match();
    };
    if best.confidence < CONFIDENCE_FLOOR {
        return IntentResult {
            alternatives: scored.into_iter().take(MAX_ALTERNATIVES).collect(),
            ..IntentResult::no_match()
        };
    }
    let spec = &specs[order[0]];
    let slots: BTreeMap<_, _> = spec
        .slots
        .iter()
        .filter_map(|s| extract(s.kind, utterance_text).map(|v| (s.name.clone(), v)))
        .collect();
    IntentResult {
        intent: Some(spec.name.clone()),
        confidence: best.confidence,
        alternatives: scored
            .iter()
            .skip(1)
            .take(MAX_ALTERNATIVES)
            .cloned()
            .collect(),
        slots,
        reply: None,
        engine: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nlu::{SlotKind, SlotSpec, SlotValue};

    fn unit(v: &[f32]) -> Embedding {
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter().map(|x| x / n).collect()
    }

    fn spec(name: &str, slots: &[(&str, SlotKind)]) -> IntentSpec {
        IntentSpec {
            name: name.into(),
            description: String::new(),
            examples: Vec::new(),
            slots: slots
                .iter()
                .map(|(n, k)| SlotSpec {
                    name: (*n).into(),
                    kind: *k,
                })
                .collect(),
        }
    }

    #[test]
    fn confidence_rises_with_similarity_and_margin() {
        assert!(calibrate(0.9, 0.3) > 0.95);
        assert!(calibrate(0.9, 0.3) > calibrate(0.9, 0.8));
        assert!(calibrate(0.7, 0.3) > calibrate(0.5, 0.3));
        assert!(calibrate(0.15, 0.1) < 0.1);
        for (s, r) in [(1.0, 0.0), (-1.0, 1.0), (0.0, 0.0)] {
            assert!((0.0..=1.0).contains(&calibrate(s, r)));
        }
    }

    #[test]
    fn the_best_example_decides_and_descriptions_are_discounted() {
        let u = unit(&[1.0, 0.0]);
        let close = unit(&[0.9, 0.1]);
        let far = unit(&[0.0, 1.0]);
        let v = IntentVectors {
            examples: vec![far.clone(), close.clone()],
            description: None,
        };
        assert!((intent_score(&u, &v) - cosine(&u, &close)).abs() < 1e-6);
        let only_description = IntentVectors {
            examples: Vec::new(),
            description: Some(u.clone()),
        };
        assert!((intent_score(&u, &only_description) - (1.0 - DESCRIPTION_DISCOUNT)).abs() < 1e-6);
        let nothing = IntentVectors {
            examples: Vec::new(),
            description: None,
        };
        assert_eq!(intent_score(&u, &nothing), 0.0);
    }

    #[test]
    fn a_weak_best_names_no_intent_but_keeps_candidates() {
        let specs = [spec("a", &[]), spec("b", &[])];
        let vectors = [
            IntentVectors {
                examples: vec![unit(&[0.1, 1.0, 0.0])],
                description: None,
            },
            IntentVectors {
                examples: vec![unit(&[0.0, 0.0, 1.0])],
                description: None,
            },
        ];
        let r = classify(&specs, &vectors, "x", &unit(&[1.0, 0.0, 0.0]));
        assert_eq!(r.intent, None);
        assert_eq!(r.alternatives.first().map(|a| a.intent.as_str()), Some("a"));
        assert!(r.confidence == 0.0);
    }

    #[test]
    fn the_winner_gets_its_slots_and_runners_up_follow_best_first() {
        let specs = [
            spec("pay", &[("amount", SlotKind::Amount)]),
            spec("b", &[]),
            spec("c", &[]),
        ];
        let vectors = [
            IntentVectors {
                examples: vec![unit(&[1.0, 0.05, 0.0])],
                description: None,
            },
            IntentVectors {
                examples: vec![unit(&[0.2, 1.0, 0.0])],
                description: None,
            },
            IntentVectors {
                examples: vec![unit(&[0.5, 0.0, 1.0])],
                description: None,
            },
        ];
        let r = classify(&specs, &vectors, "pay $12.50", &unit(&[1.0, 0.0, 0.0]));
        assert_eq!(r.intent.as_deref(), Some("pay"));
        let names: Vec<_> = r.alternatives.iter().map(|a| a.intent.as_str()).collect();
        assert_eq!(names, ["c", "b"]);
        assert!(r.alternatives[0].confidence >= r.alternatives[1].confidence);
        assert!(r.confidence > r.alternatives[0].confidence);
        assert_eq!(
            r.slots.get("amount"),
            Some(&SlotValue::Amount {
                value: "12.50".into(),
                currency: Some("USD".into())
            })
        );
    }

    #[test]
    fn an_empty_set_matches_nothing() {
        assert_eq!(classify(&[], &[], "hi", &[1.0]), IntentResult::no_match());
    }
}
