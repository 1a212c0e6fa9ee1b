//! Per-tenant NOC policy: the document NOC engineers edit through
//! `GET/PUT /v1/tenants/{id}/policy`, the live [`PolicyBook`] every new
//! AI turn reads (a change applies to the next turn, with no restart), and
//! [`AdmissionControl`] of new AI sessions: a governor rate per tenant and
//! a semaphore per tenant for concurrency. Over either limit a call takes
//! the node's fallback edge; it is never rejected.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::budget::{BreakerConfig, BudgetConfig, Fallback, Threshold};
use crate::policy::TenantPolicy;

/// Limits on a tenant's AI sessions.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AiLimits {
    /// New AI sessions per second (token refill).
    pub sessions_per_second: u32,
    /// Token bucket size.
    pub burst: u32,
    /// AI sessions in progress at once.
    pub max_concurrent: u32,
}

impl Default for AiLimits {
    fn default() -> Self {
        Self {
            sessions_per_second: 50,
            burst: 100,
            max_concurrent: 1_000,
        }
    }
}

/// Provider names per engine kind, first choice first. The names are the
/// ones the gateway's engine configuration defines (for example `local`,
/// `worker`, `deepgram`, `openai`, `simulator`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProviderChoices {
    pub stt: Vec<String>,
    pub nlu: Vec<String>,
    pub tts: Vec<String>,
}

/// A tenant's whole NOC policy.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NocPolicy {
    /// Escalation defaults of every AI node (nodes may override).
    pub escalation: TenantPolicy,
    /// Latency budgets per stage, and the default fallback mode.
    pub budgets: BudgetConfig,
    /// When a (tenant, provider) circuit opens and how it recovers.
    pub breaker: BreakerConfig,
    pub limits: AiLimits,
    pub providers: ProviderChoices,
}

/// One thing wrong with a policy document, with the JSON path it concerns.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PolicyProblem {
    pub path: String,
    pub message: String,
}

impl NocPolicy {
    /// Checks ranges and relations a type cannot express. Every problem is
    /// reported, not just the first.
    pub fn validate(&self) -> Result<(), Vec<PolicyProblem>> {
        let mut problems = Vec::new();
        let mut bad = |path: &str, message: String| {
            problems.push(PolicyProblem {
                path: path.to_string(),
                message,
            })
        };
        let e = &self.escalation;
        if !(0.0..=1.0).contains(&e.confidence_threshold) || e.confidence_threshold.is_nan() {
            bad(
                "/escalation/confidence_threshold",
                format!("{} is not within 0..=1", e.confidence_threshold),
            );
        }
        if e.max_turns == 0 {
            bad("/escalation/max_turns", "must be at least 1".into());
        }
        let b = &self.budgets;
        for (name, t) in [
            ("stt_final", b.stt_final),
            ("nlu_first_token", b.nlu_first_token),
            ("tts_first_byte", b.tts_first_byte),
            ("turn", b.turn),
        ] {
            check_threshold(name, t, &mut bad);
        }
        if !(100..=60_000).contains(&b.stall_ms) {
            bad(
                "/budgets/stall_ms",
                format!("{} ms is not within 100..=60000", b.stall_ms),
            );
        }
        let br = &self.breaker;
        if br.failures == 0 {
            bad("/breaker/failures", "must be at least 1".into());
        }
        if br.window_ms == 0 || br.cooldown_ms == 0 {
            bad(
                "/breaker",
                "window_ms and cooldown_ms must be above 0".into(),
            );
        }
        let l = &self.limits;
        if l.sessions_per_second == 0 || l.burst == 0 || l.max_concurrent == 0 {
            bad(
                "/limits",
                "sessions_per_second, burst and max_concurrent must be above 0".into(),
            );
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    /// The edge a hard breach, an error or a refused admission takes.
    pub fn default_fallback(&self) -> Fallback {
        self.budgets.fallback
    }
}

fn check_threshold(name: &str, t: Threshold, bad: &mut impl FnMut(&str, String)) {
    if !(50..=60_000).contains(&t.hard_ms) {
        bad(
            &format!("/budgets/{name}/hard_ms"),
            format!("{} ms is not within 50..=60000", t.hard_ms),
        );
    }
    if let Some(soft) = t.soft_ms {
        if soft >= t.hard_ms {
            bad(
                &format!("/budgets/{name}/soft_ms"),
                format!("soft {soft} ms must be below hard {} ms", t.hard_ms),
            );
        }
    }
}

/// The policies in force, read lock-free by every turn. Tenants without a
/// policy of their own get the default.
#[derive(Debug)]
pub struct PolicyBook {
    default: Arc<NocPolicy>,
    tenants: ArcSwap<HashMap<String, Arc<NocPolicy>>>,
}

impl Default for PolicyBook {
    fn default() -> Self {
        Self::new(NocPolicy::default())
    }
}

impl PolicyBook {
    pub fn new(default: NocPolicy) -> Self {
        Self {
            default: Arc::new(default),
            tenants: ArcSwap::from_pointee(HashMap::new()),
        }
    }

    /// The policy `tenant` runs with now.
    pub fn get(&self, tenant: &str) -> Arc<NocPolicy> {
        self.tenants
            .load()
            .get(tenant)
            .cloned()
            .unwrap_or_else(|| self.default.clone())
    }

    /// Puts `policy` in force for `tenant` from the next turn on.
    pub fn set(&self, tenant: &str, policy: NocPolicy) {
        let policy = Arc::new(policy);
        self.tenants.rcu(|map| {
            let mut next = HashMap::clone(map);
            next.insert(tenant.to_string(), policy.clone());
            next
        });
    }

    /// Back to the default for `tenant`.
    pub fn clear(&self, tenant: &str) {
        self.tenants.rcu(|map| {
            let mut next = HashMap::clone(map);
            next.remove(tenant);
            next
        });
    }
}

/// Why a new AI session was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AdmissionRefusal {
    #[error("tenant AI session rate {per_second}/s exceeded")]
    Rate { per_second: u32 },
    #[error("tenant has {max_concurrent} AI sessions in progress already")]
    Concurrency { max_concurrent: u32 },
}

impl AdmissionRefusal {
    /// A short code for `ai.reason` and metrics labels.
    pub fn code(&self) -> &'static str {
        match self {
            AdmissionRefusal::Rate { .. } => "rate_limited",
            AdmissionRefusal::Concurrency { .. } => "concurrency_limited",
        }
    }
}

/// Holds one of the tenant's concurrent AI sessions; dropping it frees it.
#[derive(Debug)]
pub struct AiPermit {
    _permit: OwnedSemaphorePermit,
}

struct TenantGate {
    limits: AiLimits,
    rate: DefaultDirectRateLimiter,
    sessions: Arc<Semaphore>,
}

impl TenantGate {
    fn new(limits: &AiLimits) -> Self {
        let per_second = NonZeroU32::new(limits.sessions_per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(limits.burst).unwrap_or(NonZeroU32::MIN);
        Self {
            limits: limits.clone(),
            rate: RateLimiter::direct(Quota::per_second(per_second).allow_burst(burst)),
            sessions: Arc::new(Semaphore::new(limits.max_concurrent as usize)),
        }
    }
}

/// Admission of new AI sessions, per tenant.
#[derive(Default)]
pub struct AdmissionControl {
    gates: Mutex<HashMap<String, TenantGate>>,
}

impl std::fmt::Debug for AdmissionControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdmissionControl").finish_non_exhaustive()
    }
}

impl AdmissionControl {
    pub fn new() -> Self {
        Self::default()
    }

    /// Admits one new AI session of `tenant` under `limits` (the tenant's
    /// policy now). Changed limits take effect here: the tenant's gate is
    /// rebuilt, and sessions already admitted keep their permits.
    pub fn try_admit(&self, tenant: &str, limits: &AiLimits) -> Result<AiPermit, AdmissionRefusal> {
        let (rate_ok, sessions) = {
            let mut gates = self.gates.lock().unwrap_or_else(|p| p.into_inner());
            let gate = gates
                .entry(tenant.to_string())
                .or_insert_with(|| TenantGate::new(limits));
            if gate.limits != *limits {
                *gate = TenantGate::new(limits);
            }
            (gate.rate.check().is_ok(), gate.sessions.clone())
        };
        if !rate_ok {
            return Err(AdmissionRefusal::Rate {
                per_second: limits.sessions_per_second,
            });
        }
        sessions
            .try_acquire_owned()
            .map(|p| AiPermit { _permit: p })
            .map_err(|_| AdmissionRefusal::Concurrency {
                max_concurrent: limits.max_concurrent,
            })
    }

    /// AI sessions of `tenant` in progress now.
    pub fn active(&self, tenant: &str) -> u32 {
        let gates = self.gates.lock().unwrap_or_else(|p| p.into_inner());
        gates.get(tenant).map_or(0, |g| {
            (g.limits.max_concurrent as usize).saturating_sub(g.sessions.available_permits()) as u32
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_policy_is_valid() {
        assert_eq!(NocPolicy::default().validate(), Ok(()));
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let mut p = NocPolicy::default();
        p.escalation.confidence_threshold = 1.5;
        p.budgets.turn.soft_ms = Some(p.budgets.turn.hard_ms);
        p.limits.max_concurrent = 0;
        let problems = p.validate().expect_err("invalid");
        let paths: Vec<_> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/escalation/confidence_threshold",
                "/budgets/turn/soft_ms",
                "/limits"
            ]
        );
    }

    #[test]
    fn unknown_fields_are_refused() {
        let err = serde_json::from_str::<NocPolicy>(r#"{"limits":{"sessions":3}}"#)
            .expect_err("unknown field");
        assert!(err.to_string().contains("sessions"), "{err}");
    }

    #[test]
    fn book_serves_the_default_until_a_tenant_has_its_own() {
        let book = PolicyBook::default();
        assert_eq!(book.get("acme").limits, AiLimits::default());
        let mut p = NocPolicy::default();
        p.limits.max_concurrent = 3;
        book.set("acme", p);
        assert_eq!(book.get("acme").limits.max_concurrent, 3);
        assert_eq!(book.get("other").limits, AiLimits::default());
        book.clear("acme");
        assert_eq!(book.get("acme").limits, AiLimits::default());
    }

    #[test]
    fn concurrency_cap_refuses_then_frees() {
        let control = AdmissionControl::new();
        let limits = AiLimits {
            sessions_per_second: 1_000,
            burst: 1_000,
            max_concurrent: 2,
        };
        let a = control.try_admit("t", &limits).expect("first");
        let _b = control.try_admit("t", &limits).expect("second");
        assert_eq!(control.active("t"), 2);
        assert_eq!(
            control.try_admit("t", &limits).map(|_| ()),
            Err(AdmissionRefusal::Concurrency { max_concurrent: 2 })
        );
        drop(a);
        assert!(control.try_admit("t", &limits).is_ok());
        // Another tenant has its own gate.
        assert!(control.try_admit("u", &limits).is_ok());
    }

    #[test]
    fn rate_refuses_past_the_burst() {
        let control = AdmissionControl::new();
        let limits = AiLimits {
            sessions_per_second: 1,
            burst: 2,
            max_concurrent: 100,
        };
        let _held = [
            control.try_admit("t", &limits).expect("1"),
            control.try_admit("t", &limits).expect("2"),
        ];
        assert_eq!(
            control.try_admit("t", &limits).map(|_| ()),
            Err(AdmissionRefusal::Rate { per_second: 1 })
        );
    }
}
