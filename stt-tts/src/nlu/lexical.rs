//! The lexical intent classifier: the FALLBACK used when no embedding model
//! (and no LLM) is available. It scores word overlap, weighted by how rare
//! a word is across the intent set (IDF), between the utterance and each
//! intent's example phrases, name and description.
//!
//! It knows no synonyms and no word order: "I'd like my balance" matches
//! "check my balance", "how much money do I have" does not unless an
//! example says so. Confidence is a heuristic calibration, not a
//! probability: the best cosine minus half the runner-up's, so ambiguous
//! utterances score low even when they overlap a lot.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::slots::{extract, words};
use super::{IntentEngine, IntentResult, IntentScore, IntentSpec, NluRequest, NluStream};

/// The name this classifier answers under ([`IntentResult::engine`]): it
/// is only ever the fallback, and records and logs must say so.
pub const LEXICAL_FALLBACK_ENGINE: &str = "lexical-fallback";

/// Words too common to tell intents apart.
const STOPWORDS: &[&str] = &[
    "a", "an", "the", "i", "i'd", "i'm", "me", "my", "mine", "to", "is", "am", "are", "was", "be",
    "want", "wanna", "would", "like", "please", "can", "could", "you", "your", "do", "does", "of",
    "for", "and", "it", "in", "on", "with", "that", "this", "just", "so", "some", "um", "uh", "hi",
    "hello", "there", "we", "our", "us", "need", "let", "get", "it's", "will", "at",
];

/// How much a match on the name and description counts next to an example.
const DESCRIPTION_WEIGHT: f32 = 0.6;
/// How many runners-up are reported.
const MAX_ALTERNATIVES: usize = 3;

/// Crude English stemming: enough to match plurals and -ing/-ed forms.
fn stem(w: &str) -> String {
    let n = w.chars().count();
    for (suffix, keep) in [("ies", "y"), ("ing", ""), ("ed", ""), ("es", ""), ("s", "")] {
        if n > suffix.len() + 2 && w.ends_with(suffix) && !w.ends_with("ss") {
            return format!("{}{keep}", &w[..w.len() - suffix.len()]);
        }
    }
    w.to_owned()
}

/// The content terms of `text`.
pub fn terms(text: &str) -> HashSet<String> {
    words(text)
        .into_iter()
        .map(|w| w.replace('_', " "))
        .flat_map(|w| w.split(' ').map(str::to_owned).collect::<Vec<_>>())
        .filter(|w| !w.is_empty() && !STOPWORDS.contains(&w.as_str()))
        .map(|w| stem(&w))
        .collect()
}

/// An intent set prepared for scoring.
#[derive(Debug, Clone)]
pub struct LexicalIndex {
    intents: Vec<IndexedIntent>,
    idf: HashMap<String, f32>,
    unknown_idf: f32,
}

#[derive(Debug, Clone)]
struct IndexedIntent {
    spec: IntentSpec,
    examples: Vec<HashSet<String>>,
    description: HashSet<String>,
}

impl LexicalIndex {
    /// Indexes `intents`. Intents without examples still match on their
    /// name and description.
    pub fn new(intents: &[IntentSpec]) -> Self {
        let indexed: Vec<IndexedIntent> = intents
            .iter()
            .map(|spec| IndexedIntent {
                spec: spec.clone(),
                examples: spec.examples.iter().map(|e| terms(e)).collect(),
                description: terms(&format!("{} {}", spec.name, spec.description)),
            })
            .collect();
        let mut df: HashMap<String, usize> = HashMap::new();
        for i in &indexed {
            let all: HashSet<&String> = i.examples.iter().flatten().chain(&i.description).collect();
            for t in all {
                *df.entry(t.clone()).or_default() += 1;
            }
        }
        let n = indexed.len().max(1) as f32;
        let idf = df
            .into_iter()
            .map(|(t, d)| (t, (1.0 + n / d as f32).ln()))
            .collect();
        Self {
            intents: indexed,
            idf,
            // Words no intent uses count as rare: they dilute the match.
            unknown_idf: (1.0 + n).ln() + 0.5,
        }
    }

    fn weight(&self, t: &str) -> f32 {
        let w = self.idf.get(t).copied().unwrap_or(self.unknown_idf);
        w * w
    }

    fn cosine(&self, u: &HashSet<String>, u_norm: f32, doc: &HashSet<String>) -> f32 {
        if doc.is_empty() || u_norm == 0.0 {
            return 0.0;
        }
        let overlap: f32 = u.intersection(doc).map(|t| self.weight(t)).sum();
        let d_norm: f32 = doc.iter().map(|t| self.weight(t)).sum();
        overlap / (u_norm * d_norm).sqrt()
    }

    /// Raw scores 0..1 of every intent, in set order.
    pub fn scores(&self, utterance: &str) -> Vec<f32> {
        let u = terms(utterance);
        let u_norm: f32 = u.iter().map(|t| self.weight(t)).sum();
        self.intents
            .iter()
            .map(|i| {
                let best_example = i
                    .examples
                    .iter()
                    .map(|e| self.cosine(&u, u_norm, e))
                    .fold(0.0f32, f32::max);
                best_example.max(DESCRIPTION_WEIGHT * self.cosine(&u, u_norm, &i.description))
            })
            .collect()
    }

    /// Classifies `utterance` and fills the winner's slots.
    pub fn classify(&self, utterance: &str) -> IntentResult {
        let raw = self.scores(utterance);
        let mut order: Vec<usize> = (0..raw.len()).collect();
        order.sort_by(|a, b| raw[*b].total_cmp(&raw[*a]));
        let Some(&best) = order.first().filter(|b| raw[**b] > 0.0) else {
            return IntentResult::no_match();
        };
        let calibrated = |i: usize| -> f32 {
            let rival = order
                .iter()
                .filter(|j| **j != i)
                .map(|j| raw[*j])
                .fold(0.0f32, f32::max);
            (raw[i] - 0.5 * rival).clamp(0.0, 1.0)
        };
        let spec = &self.intents[best].spec;
        let slots: BTreeMap<_, _> = spec
            .slots
            .iter()
            .filter_map(|s| extract(s.kind, utterance).map(|v| (s.name.clone(), v)))
            .collect();
        IntentResult {
            intent: Some(spec.name.clone()),
            confidence: calibrated(best),
            alternatives: order
                .iter()
                .skip(1)
                .filter(|i| raw[**i] > 0.0)
                .take(MAX_ALTERNATIVES)
                .map(|i| IntentScore {
                    intent: self.intents[*i].spec.name.clone(),
                    confidence: calibrated(*i),
                })
                .collect(),
            slots,
            reply: None,
            engine: None,
        }
    }
}

/// The lexical fallback as an [`IntentEngine`]. It answers at once, with
/// no token events.
#[derive(Debug, Clone, Copy, Default)]
pub struct LexicalIntentEngine;

impl LexicalIntentEngine {
    /// Classifies one request synchronously.
    pub fn classify_request(request: &NluRequest) -> IntentResult {
        IntentResult {
            engine: Some(LEXICAL_FALLBACK_ENGINE.to_owned()),
            ..LexicalIndex::new(&request.intents).classify(&request.utterance)
        }
    }
}

impl IntentEngine for LexicalIntentEngine {
    fn classify(&self, request: NluRequest) -> NluStream {
        NluStream::ready(Ok(Self::classify_request(&request)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nlu::{SlotKind, SlotSpec, SlotValue};

    fn intent(name: &str, desc: &str, examples: &[&str], slots: &[(&str, SlotKind)]) -> IntentSpec {
        IntentSpec {
            name: name.into(),
            description: desc.into(),
            examples: examples.iter().map(|e| e.to_string()).collect(),
            slots: slots
                .iter()
                .map(|(n, k)| SlotSpec {
                    name: n.to_string(),
                    kind: *k,
                })
                .collect(),
        }
    }

    fn bank() -> Vec<IntentSpec> {
        vec![
            intent(
                "check_balance",
                "The caller asks for the balance of an account",
                &[
                    "check my balance",
                    "what is my account balance",
                    "how much money is in my account",
                ],
                &[("account", SlotKind::Digits)],
            ),
            intent(
                "pay_bill",
                "The caller wants to pay a bill or an invoice",
                &["pay my bill", "I want to make a payment", "pay the invoice"],
                &[("amount", SlotKind::Amount), ("date", SlotKind::Date)],
            ),
            intent(
                "agent",
                "The caller wants a human agent",
                &[
                    "talk to a person",
                    "speak to an agent",
                    "representative please",
                    "operator",
                ],
                &[],
            ),
            intent(
                "book_appointment",
                "Book a visit or an appointment",
                &[
                    "book an appointment",
                    "schedule a visit",
                    "make a reservation",
                ],
                &[("date", SlotKind::Date)],
            ),
            intent(
                "confirm",
                "The caller answers yes or no",
                &["yes", "no", "that's right", "that is wrong"],
                &[("answer", SlotKind::YesNo)],
            ),
        ]
    }

    #[test]
    fn the_right_intent_wins_with_a_margin() {
        let index = LexicalIndex::new(&bank());
        let table = [
            (
                "I'd like to check the balance on my account",
                "check_balance",
            ),
            ("balance please", "check_balance"),
            ("how much money do I have in my account", "check_balance"),
            ("I want to pay my electricity bill", "pay_bill"),
            ("can I make a payment of $40 tomorrow", "pay_bill"),
            ("let me speak to a real person", "agent"),
            ("agent", "agent"),
            ("get me an operator", "agent"),
            (
                "I need to schedule an appointment for next friday",
                "book_appointment",
            ),
            ("book a visit on may 3rd", "book_appointment"),
            ("yes that's right", "confirm"),
        ];
        for (utterance, want) in table {
            let r = index.classify(utterance);
            assert_eq!(r.intent.as_deref(), Some(want), "{utterance}: {r:?}");
            assert!(r.confidence >= 0.3, "{utterance}: low confidence {r:?}");
            let runner_up = r.alternatives.first().map_or(0.0, |a| a.confidence);
            assert!(
                r.confidence - runner_up >= 0.2,
                "{utterance}: no margin {r:?}"
            );
            assert!((0.0..=1.0).contains(&r.confidence));
        }
    }

    #[test]
    fn unrelated_phrases_get_low_confidence() {
        let index = LexicalIndex::new(&bank());
        for utterance in [
            "what's the weather like in paris",
            "my cat ate the sandwich",
            "sing me a song",
            "",
        ] {
            let r = index.classify(utterance);
            assert!(r.confidence < 0.2, "{utterance}: {r:?}");
        }
        assert_eq!(index.classify("purple elephants dance").intent, None);
    }

    #[test]
    fn the_winner_gets_its_slots() {
        let index = LexicalIndex::new(&bank());
        let r = index.classify("pay my bill of 25 dollars tomorrow");
        assert_eq!(r.intent.as_deref(), Some("pay_bill"));
        assert_eq!(
            r.slots.get("amount"),
            Some(&SlotValue::Amount {
                value: "25".into(),
                currency: Some("USD".into())
            })
        );
        assert_eq!(
            r.slots.get("date"),
            Some(&SlotValue::Date(crate::nlu::DateValue::Relative {
                days: 1
            }))
        );
        let r = index.classify("my account balance for account one two three four");
        assert_eq!(
            r.slots.get("account"),
            Some(&SlotValue::Digits("1234".into()))
        );
        let no = index.classify("no that is wrong");
        assert_eq!(no.intent.as_deref(), Some("confirm"));
        assert_eq!(no.slots.get("answer"), Some(&SlotValue::YesNo(false)));
    }

    #[test]
    fn an_empty_intent_set_matches_nothing() {
        assert_eq!(
            LexicalIndex::new(&[]).classify("check my balance"),
            IntentResult::no_match()
        );
    }

    #[test]
    fn stemming_matches_plurals_and_forms() {
        assert_eq!(stem("bills"), "bill");
        assert_eq!(stem("paying"), "pay");
        assert_eq!(stem("booked"), "book");
        assert_eq!(stem("address"), "address");
        assert_eq!(stem("is"), "is");
    }
}
