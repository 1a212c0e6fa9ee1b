//! The AI node's Prometheus metrics: per-turn latency histograms by tenant
//! (`voxgate_ai_stt_final_ms`, `…_nlu_first_token_ms`,
//! `…_tts_first_byte_ms`, `…_turn_ms`, `…_barge_in_to_silence_ms`) and
//! counters of fallbacks by reason and escalations by rule.
//!
//! Label sets are bounded: stages, reasons and rules are fixed codes, and
//! tenants beyond [`MAX_TENANT_LABELS`] distinct names are counted as
//! `other`, so a misbehaving tenant list cannot blow up the series count.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::noc::OutcomeCounts;

/// Distinct tenant label values before the rest become `other`.
pub const MAX_TENANT_LABELS: usize = 256;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TenantLabel {
    pub tenant: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub tenant: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RuleLabel {
    pub tenant: String,
    pub rule: String,
}

type Hist = Family<TenantLabel, Histogram, fn() -> Histogram>;

fn ms_histogram() -> Histogram {
    Histogram::new([
        10.0, 25.0, 50.0, 100.0, 150.0, 200.0, 300.0, 500.0, 750.0, 1000.0, 1500.0, 2000.0, 3000.0,
        5000.0,
    ])
}

/// Every AI metric. Clones share the series.
#[derive(Debug)]
pub struct AiMetrics {
    pub stt_final_ms: Hist,
    pub nlu_first_token_ms: Hist,
    pub tts_first_byte_ms: Hist,
    pub turn_ms: Hist,
    pub barge_in_to_silence_ms: Hist,
    pub fallbacks_total: Family<ReasonLabel, Counter>,
    pub escalations_total: Family<RuleLabel, Counter>,
    tenants: Mutex<HashSet<String>>,
    /// The per-tenant counts the NOC health endpoint reads, when shared.
    counts: Option<Arc<OutcomeCounts>>,
}

impl Default for AiMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl AiMetrics {
    pub fn new() -> Self {
        let h = || Hist::new_with_constructor(ms_histogram as fn() -> Histogram);
        Self {
            stt_final_ms: h(),
            nlu_first_token_ms: h(),
            tts_first_byte_ms: h(),
            turn_ms: h(),
            barge_in_to_silence_ms: h(),
            fallbacks_total: Family::default(),
            escalations_total: Family::default(),
            tenants: Mutex::new(HashSet::new()),
            counts: None,
        }
    }

    /// Metrics registered into `registry` (the gateway's, under its
    /// `voxgate` prefix, as `ai_*`).
    pub fn register(self: &Arc<Self>, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("ai");
        r.register(
            "stt_final_ms",
            "End of speech to the STT final, ms",
            self.stt_final_ms.clone(),
        );
        r.register(
            "nlu_first_token_ms",
            "Transcript to the first intent/LLM token, ms",
            self.nlu_first_token_ms.clone(),
        );
        r.register(
            "tts_first_byte_ms",
            "Reply text to the first synthesised audio, ms",
            self.tts_first_byte_ms.clone(),
        );
        r.register(
            "turn_ms",
            "End of speech to the first reply audio, ms",
            self.turn_ms.clone(),
        );
        r.register(
            "barge_in_to_silence_ms",
            "Barge-in to the first packet without the old turn's audio, ms",
            self.barge_in_to_silence_ms.clone(),
        );
        r.register(
            "fallbacks",
            "AI nodes left through a fallback, by reason",
            self.fallbacks_total.clone(),
        );
        r.register(
            "escalations",
            "AI nodes escalated to an agent or a menu, by rule",
            self.escalations_total.clone(),
        );
    }

    /// The label value for `tenant`: itself while the set is small.
    fn tenant(&self, tenant: &str) -> String {
        let mut seen = self.tenants.lock().unwrap_or_else(|p| p.into_inner());
        if seen.contains(tenant) {
            return tenant.to_string();
        }
        if seen.len() < MAX_TENANT_LABELS {
            seen.insert(tenant.to_string());
            tenant.to_string()
        } else {
            "other".to_string()
        }
    }

    /// One latency of `stage` (`stt_final`, `nlu_first_token`,
    /// `tts_first_byte`, `turn`, `barge_in_to_silence`).
    pub fn stage(&self, tenant: &str, stage: &str, ms: u64) {
        let family = match stage {
            "stt_final" => &self.stt_final_ms,
            "nlu_first_token" => &self.nlu_first_token_ms,
            "tts_first_byte" => &self.tts_first_byte_ms,
            "turn" => &self.turn_ms,
            "barge_in_to_silence" => &self.barge_in_to_silence_ms,
            _ => return,
        };
        family
            .get_or_create(&TenantLabel {
                tenant: self.tenant(tenant),
            })
            .observe(ms as f64);
    }

    /// Also counts fallbacks and escalations into `counts`, which the NOC
    /// health endpoint reports per tenant.
    pub fn with_counts(mut self, counts: Arc<OutcomeCounts>) -> Self {
        self.counts = Some(counts);
        self
    }

    pub fn fallback(&self, tenant: &str, reason: &str) {
        if let Some(c) = &self.counts {
            c.record_fallback(tenant, reason);
        }
        self.fallbacks_total
            .get_or_create(&ReasonLabel {
                tenant: self.tenant(tenant),
                reason: reason.to_string(),
            })
            .inc();
    }

    pub fn escalation(&self, tenant: &str, rule: &str) {
        if let Some(c) = &self.counts {
            c.record_escalation(tenant, rule);
        }
        self.escalations_total
            .get_or_create(&RuleLabel {
                tenant: self.tenant(tenant),
                rule: rule.to_string(),
            })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_are_exported_and_tenants_are_bounded() {
        let m = Arc::new(AiMetrics::new());
        let mut r = Registry::with_prefix("voxgate");
        m.register(&mut r);
        m.stage("acme", "turn", 420);
        m.stage("acme", "stt_final", 90);
        m.stage("acme", "not_a_stage", 1);
        m.fallback("acme", "deadline_nlu_first_token");
        m.escalation("acme", "low_confidence");
        for i in 0..MAX_TENANT_LABELS + 5 {
            m.fallback(&format!("t{i}"), "stt_error");
        }
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &r).expect("encode");
        assert!(
            out.contains("voxgate_ai_turn_ms_count{tenant=\"acme\"} 1"),
            "{out}"
        );
        assert!(out.contains(
            "voxgate_ai_fallbacks_total{tenant=\"acme\",reason=\"deadline_nlu_first_token\"} 1"
        ));
        assert!(
            out.contains("voxgate_ai_escalations_total{tenant=\"acme\",rule=\"low_confidence\"} 1")
        );
        assert!(
            out.contains("tenant=\"other\",reason=\"stt_error\"} 6"),
            "{out}"
        );
    }
}
