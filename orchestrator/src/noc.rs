//! The orchestrator's NOC side: the AI runtime state `voxgate serve`
//! builds once and shares between the `/v1` API and the AI runner, the
//! policy hook the API stores policies through, the per-tenant health
//! snapshot, and the circuit-breaker gauge.
//!
//! ```text
//!  PUT /v1/tenants/{id}/policy ──▶ PolicyHook::validate (this module)
//!        │                              unknown fields, types, ranges
//!        ▼
//!  store (version, audit) ──▶ PolicyHook::apply ──▶ AiRuntimeState::apply_policy
//!                                                    ├─▶ PolicyBook (next turn reads it)
//!                                                    └─▶ BreakerRegistry (tenant's breaker settings)
//!
//!  GET /v1/tenants/{id}/health ──▶ HealthSource::health
//!        AdmissionControl::active + BreakerRegistry::status + fallback/escalation counts
//! ```
//!
//! This is a driver module: it reads the clock (`voxgate_gateway::clock`)
//! for health snapshots and scrapes; [`AiRuntimeState::health_at`] takes
//! `now` for tests.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use serde_json::{Map, Value};
use voxgate_flows::api::{
    AiHealth, BreakerHealth, BreakerState as ApiBreakerState, HealthSource, NocHooks, PolicyHook,
};
use voxgate_flows::validate::Issue;

use crate::budget::{BreakerRegistry, BreakerStatus, Provider};
use crate::tenant::{AdmissionControl, NocPolicy, PolicyBook, ProviderChoices};

/// The providers every tenant has a breaker for.
const PROVIDERS: [Provider; 3] = [Provider::Stt, Provider::Nlu, Provider::Tts];

/// Fallbacks and escalations per tenant since the process started, for
/// the health endpoint. Codes are bounded sets (`FallbackReason::code`,
/// `AdmissionRefusal::code`, `Rule::code`), so the maps stay small.
#[derive(Debug, Default)]
pub struct OutcomeCounts {
    tenants: Mutex<HashMap<String, TenantCounts>>,
}

#[derive(Debug, Default, Clone)]
struct TenantCounts {
    fallbacks: BTreeMap<String, u64>,
    escalations: BTreeMap<String, u64>,
}

impl OutcomeCounts {
    /// One fallback of `tenant`, by reason code.
    pub fn record_fallback(&self, tenant: &str, code: &str) {
        self.bump(tenant, code, |c| &mut c.fallbacks);
    }

    /// One escalation of `tenant`, by rule code.
    pub fn record_escalation(&self, tenant: &str, rule: &str) {
        self.bump(tenant, rule, |c| &mut c.escalations);
    }

    fn bump(
        &self,
        tenant: &str,
        code: &str,
        pick: fn(&mut TenantCounts) -> &mut BTreeMap<String, u64>,
    ) {
        let mut tenants = self.tenants.lock().unwrap_or_else(|p| p.into_inner());
        let counts = tenants.entry(tenant.to_string()).or_default();
        *pick(counts).entry(code.to_string()).or_default() += 1;
    }

    fn get(&self, tenant: &str) -> TenantCounts {
        let tenants = self.tenants.lock().unwrap_or_else(|p| p.into_inner());
        tenants.get(tenant).cloned().unwrap_or_default()
    }
}

/// What the API and the AI runner share: the policies in force, admission
/// of new AI sessions, the circuit breakers, and outcome counts. Built once
/// per process; cheap to clone (every part is an `Arc`).
#[derive(Debug, Clone)]
pub struct AiRuntimeState {
    pub policies: Arc<PolicyBook>,
    pub admission: Arc<AdmissionControl>,
    pub breakers: Arc<BreakerRegistry>,
    pub counts: Arc<OutcomeCounts>,
    /// The policy of tenants without one of their own.
    default_policy: Arc<NocPolicy>,
    /// The providers the engines configuration offers, per kind (primary
    /// first); empty until the AI runner is built.
    configured: Arc<Mutex<ProviderChoices>>,
}

impl Default for AiRuntimeState {
    fn default() -> Self {
        Self::new(NocPolicy::default())
    }
}

impl AiRuntimeState {
    /// A runtime whose tenants run with `default_policy` until they have
    /// their own.
    pub fn new(default_policy: NocPolicy) -> Self {
        Self {
            policies: Arc::new(PolicyBook::new(default_policy.clone())),
            admission: Arc::new(AdmissionControl::new()),
            breakers: Arc::new(BreakerRegistry::new(default_policy.breaker.clone())),
            counts: Arc::new(OutcomeCounts::default()),
            default_policy: Arc::new(default_policy),
            configured: Arc::new(Mutex::new(ProviderChoices::default())),
        }
    }

    /// The providers the engines configuration offers: what policies may
    /// name in `providers`, and the breakers the health view lists.
    pub fn set_configured_providers(&self, providers: ProviderChoices) {
        *self.configured.lock().unwrap_or_else(|p| p.into_inner()) = providers;
    }

    fn configured(&self) -> ProviderChoices {
        self.configured
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn default_policy(&self) -> &NocPolicy {
        &self.default_policy
    }

    /// Puts `policy` in force for `tenant`: the next AI turn reads it from
    /// the book, and the tenant's breakers run with its settings. Admission
    /// picks up new limits at the next session (`AdmissionControl::try_admit`
    /// rebuilds a gate whose limits changed).
    pub fn apply_policy(&self, tenant: &str, policy: NocPolicy) {
        self.breakers
            .set_tenant_config(tenant, Some(policy.breaker.clone()));
        self.policies.set(tenant, policy);
    }

    /// The runner calls this for every fallback it takes, with the reason's
    /// code (`FallbackReason::code`, `AdmissionRefusal::code`).
    pub fn record_fallback(&self, tenant: &str, code: &str) {
        self.counts.record_fallback(tenant, code);
    }

    /// The runner calls this for every escalation, with the rule's code.
    pub fn record_escalation(&self, tenant: &str, rule: &str) {
        self.counts.record_escalation(tenant, rule);
    }

    /// The tenant's AI health at `now`.
    pub fn health_at(&self, now: Instant, tenant: &str) -> AiHealth {
        let policy = self.policies.get(tenant);
        let counts = self.counts.get(tenant);
        AiHealth {
            tenant: tenant.to_string(),
            active_sessions: self.admission.active(tenant),
            max_concurrent: policy.limits.max_concurrent,
            breakers: {
                let configured = self.configured();
                PROVIDERS
                    .iter()
                    .flat_map(|&p| {
                        let names = match p {
                            Provider::Stt => &configured.stt,
                            Provider::Nlu => &configured.nlu,
                            Provider::Tts => &configured.tts,
                        };
                        let names = if names.is_empty() {
                            vec![p.name().to_string()]
                        } else {
                            names.clone()
                        };
                        names.into_iter().map(move |n| (p, n)).collect::<Vec<_>>()
                    })
                    .map(|(p, n)| {
                        let status = self.breakers.status(now, tenant, p, &n);
                        breaker_health(p, n, status)
                    })
                    .collect()
            },
            fallbacks: counts.fallbacks,
            escalations: counts.escalations,
        }
    }

    /// The hooks `voxgate serve` hands to the flows API.
    pub fn noc_hooks(&self) -> NocHooks {
        let me = Arc::new(self.clone());
        NocHooks {
            policy: me.clone(),
            health: me,
        }
    }

    /// Adds the breaker gauge to `registry` (read at each scrape).
    pub fn register_metrics(&self, registry: &mut Registry) {
        registry.register_collector(Box::new(BreakerGauge {
            breakers: self.breakers.clone(),
        }));
    }

    /// The NOC metrics in the Prometheus text format.
    pub fn encode_metrics(&self) -> String {
        let mut registry = Registry::with_prefix("voxgate");
        self.register_metrics(&mut registry);
        let mut out = String::new();
        // Encoding into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }

    /// `GET /metrics/ai`: the NOC metrics. The gateway's `/metrics` has no
    /// way yet to take collectors from other crates, so they are served
    /// beside it; scrape both.
    pub fn metrics_router(&self) -> axum::Router {
        let state = self.clone();
        axum::Router::new().route(
            "/metrics/ai",
            axum::routing::get(move || {
                let body = state.encode_metrics();
                async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            voxgate_gateway::http::METRICS_CONTENT_TYPE,
                        )],
                        body,
                    )
                }
            }),
        )
    }
}

fn breaker_health(provider: Provider, name: String, status: BreakerStatus) -> BreakerHealth {
    let mut h = BreakerHealth {
        provider: provider.name().to_string(),
        name,
        state: ApiBreakerState::Closed,
        failures: None,
        retry_in_ms: None,
        probes_admitted: None,
        probes_succeeded: None,
    };
    match status {
        BreakerStatus::Closed { failures } => h.failures = Some(failures),
        BreakerStatus::Open { retry_in_ms } => {
            h.state = ApiBreakerState::Open;
            h.retry_in_ms = Some(retry_in_ms);
        }
        BreakerStatus::HalfOpen {
            admitted,
            succeeded,
        } => {
            h.state = ApiBreakerState::HalfOpen;
            h.probes_admitted = Some(admitted);
            h.probes_succeeded = Some(succeeded);
        }
    }
    h
}

/// `voxgate_ai_breaker_state{tenant, provider}`: 0 closed, 1 half-open,
/// 2 open, for every breaker that has seen a call.
#[derive(Debug)]
struct BreakerGauge {
    breakers: Arc<BreakerRegistry>,
}

impl Collector for BreakerGauge {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let snapshot = self.breakers.snapshot(voxgate_gateway::clock::now());
        let mut metric = encoder.encode_descriptor(
            "ai_breaker_state",
            "Circuit breaker per tenant and provider: 0 closed, 1 half-open, 2 open",
            None,
            MetricType::Gauge,
        )?;
        for b in &snapshot {
            let labels = [
                ("tenant", b.tenant.as_str()),
                ("provider", b.provider.name()),
                ("name", b.name.as_str()),
            ];
            let family = metric.encode_family(&labels)?;
            ConstGauge::new(b.status.gauge()).encode(family)?;
        }
        Ok(())
    }
}

impl PolicyHook for AiRuntimeState {
    fn defaults(&self) -> Value {
        serde_json::to_value(self.default_policy.as_ref()).unwrap_or(Value::Null)
    }

    fn validate(&self, document: &Value) -> Result<Value, Vec<Issue>> {
        let policy = parse_policy(document)?;
        unknown_providers(&policy.providers, &self.configured())?;
        serde_json::to_value(&policy).map_err(|e| {
            vec![Issue {
                node: None,
                path: String::new(),
                code: "invalid_document",
                message: format!("The policy cannot be written back as JSON: {e}."),
            }]
        })
    }

    fn apply(&self, tenant: &str, document: &Value) {
        match parse_policy(document) {
            Ok(policy) => self.apply_policy(tenant, policy),
            // The API applies only what validate accepted; this is a bug.
            Err(problems) => {
                tracing::error!(tenant, ?problems, "refusing to apply an invalid NOC policy")
            }
        }
    }
}

impl HealthSource for AiRuntimeState {
    fn health(&self, tenant: &str) -> AiHealth {
        self.health_at(voxgate_gateway::clock::now(), tenant)
    }
}

/// Every provider a policy names must be one the engines configuration
/// offers (when it is known), or calls could never use it.
fn unknown_providers(
    wanted: &ProviderChoices,
    configured: &ProviderChoices,
) -> Result<(), Vec<Issue>> {
    let mut issues = Vec::new();
    for (kind, wanted, offered) in [
        ("stt", &wanted.stt, &configured.stt),
        ("nlu", &wanted.nlu, &configured.nlu),
        ("tts", &wanted.tts, &configured.tts),
    ] {
        if offered.is_empty() {
            continue;
        }
        for (i, name) in wanted.iter().enumerate() {
            if !offered.contains(name) {
                issues.push(Issue {
                    node: None,
                    path: format!("/providers/{kind}/{i}"),
                    code: "unknown_provider",
                    message: format!(
                        "No {kind} provider {name:?} is configured; configured: {}.",
                        offered.join(", ")
                    ),
                });
            }
        }
    }
    if issues.is_empty() {
        Ok(())
    } else {
        Err(issues)
    }
}

/// Reads a policy document, reporting every problem with its JSON pointer:
/// unknown fields anywhere (all of them), then a type error (serde stops at
/// the first), or else every range problem of [`NocPolicy::validate`].
/// Absent fields take their defaults.
pub fn parse_policy(document: &Value) -> Result<NocPolicy, Vec<Issue>> {
    let skeleton = serde_json::to_value(NocPolicy::default()).unwrap_or(Value::Null);
    let mut issues = Vec::new();
    let mut known = document.clone();
    strip_unknown(&mut known, &skeleton, &mut String::new(), &mut issues);
    let policy: NocPolicy = match serde_path_to_error::deserialize(&known) {
        Ok(p) => p,
        Err(e) => {
            issues.push(Issue {
                node: None,
                path: pointer_of(e.path()),
                code: "invalid_value",
                message: format!("{}.", e.inner()),
            });
            return Err(issues);
        }
    };
    if let Err(problems) = policy.validate() {
        issues.extend(problems.into_iter().map(|p| Issue {
            node: None,
            path: p.path,
            code: "out_of_range",
            message: p.message,
        }));
    }
    if issues.is_empty() {
        Ok(policy)
    } else {
        Err(issues)
    }
}

/// Removes (and reports) every key of `doc` that the default policy's JSON
/// does not have at the same place. Every field of the policy serializes,
/// so the default's JSON names them all; lists and scalars end the walk.
fn strip_unknown(doc: &mut Value, skeleton: &Value, path: &mut String, issues: &mut Vec<Issue>) {
    let (Value::Object(fields), Value::Object(known)) = (doc, skeleton) else {
        return;
    };
    let unknown: Vec<String> = fields
        .keys()
        .filter(|k| !known.contains_key(*k))
        .cloned()
        .collect();
    for key in unknown {
        fields.remove(&key);
        issues.push(Issue {
            node: None,
            path: format!("{path}/{}", escape(&key)),
            code: "unknown_field",
            message: format!(
                "Unknown field \"{key}\"; expected one of: {}.",
                expected(known)
            ),
        });
    }
    for (key, value) in fields.iter_mut() {
        if let Some(k) = known.get(key) {
            let len = path.len();
            path.push('/');
            path.push_str(&escape(key));
            strip_unknown(value, k, path, issues);
            path.truncate(len);
        }
    }
}

fn expected(known: &Map<String, Value>) -> String {
    known.keys().cloned().collect::<Vec<_>>().join(", ")
}

fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

fn pointer_of(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("/{index}")),
            Segment::Map { key } => {
                out.push('/');
                out.push_str(&escape(key));
            }
            Segment::Enum { .. } | Segment::Unknown => {}
        }
    }
    out
}

#[cfg(test)]
mod tests;
