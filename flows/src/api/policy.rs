//! Per-tenant NOC policy and AI health: `GET`/`PUT
//! /v1/tenants/{id}/policy`, its audit trail, and `GET
//! /v1/tenants/{id}/health`.
//!
//! flows stores, versions and audits the policy document; what it means
//! belongs to the orchestrator, which depends on flows and so plugs in
//! through [`PolicyHook`] (check a document, fill its defaults, put it in
//! force) and [`HealthSource`] (sessions and circuit breakers now).
//! `voxgate serve` passes the orchestrator's implementation; without one
//! these endpoints answer 503.
//!
//! ```text
//! PUT body ──▶ PolicyHook::validate ──▶ Store::put_policy ──▶ PolicyHook::apply
//!              (422 + every problem)     (version, ETag,        (the next AI turn
//!                                         audit from → to)       runs with it)
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::Json;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::auth::{Access, Principal};
use super::extract::{etag_header, if_match, PageQuery, QueryParams};
use super::{ApiError, ApiState};
use crate::store::{
    AuditEntry, PolicyWrite, Store, StoreError, StoredPolicy, UnixMs, DEFAULT_POLICY_ETAG,
    POLICY_AUDIT_ACTION,
};
use crate::validate::Issue;

/// What the orchestrator provides so that flows can store policies it
/// does not understand.
pub trait PolicyHook: Send + Sync {
    /// The policy of a tenant that has none of its own, every field set.
    fn defaults(&self) -> Value;
    /// Reads `document` as a policy: the normalized document (every field
    /// set, as it will run) or every problem, each with its JSON pointer.
    /// Unknown fields are problems.
    fn validate(&self, document: &Value) -> Result<Value, Vec<Issue>>;
    /// Puts a policy `validate` accepted in force for `tenant`, from the
    /// next AI turn on.
    fn apply(&self, tenant: &str, document: &Value);
}

/// A tenant's AI runtime as it is now.
pub trait HealthSource: Send + Sync {
    fn health(&self, tenant: &str) -> AiHealth;
}

/// The orchestrator's side of the NOC endpoints.
#[derive(Clone)]
pub struct NocHooks {
    pub policy: Arc<dyn PolicyHook>,
    pub health: Arc<dyn HealthSource>,
}

/// A circuit breaker's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    /// Calls use the provider.
    Closed,
    /// New calls skip the AI node and take its fallback until `retry_in_ms`.
    Open,
    /// Probe calls are let through; their results close or reopen it.
    HalfOpen,
}

/// One provider's circuit breaker for one tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct BreakerHealth {
    /// `stt`, `nlu` or `tts`.
    pub provider: String,
    /// The configured provider of that kind (`worker`, `deepgram`, …).
    pub name: String,
    pub state: BreakerState,
    /// Closed: breaches and errors inside the window.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failures: Option<u32>,
    /// Open: how long until the first probe is let through.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_in_ms: Option<u64>,
    /// Half-open: probes let through, and how many went well.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probes_admitted: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probes_succeeded: Option<u32>,
}

/// A tenant's AI runtime health.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct AiHealth {
    pub tenant: String,
    /// AI sessions in progress now.
    pub active_sessions: u32,
    /// The policy's cap on concurrent AI sessions.
    pub max_concurrent: u32,
    /// Every provider's breaker (closed when it has seen no call).
    pub breakers: Vec<BreakerHealth>,
    /// Fallbacks taken since the process started, by reason code
    /// (`deadline_nlu_first_token`, `tts_circuit_open`, `rate_limited` …).
    pub fallbacks: BTreeMap<String, u64>,
    /// Escalations since the process started, by rule
    /// (`low_confidence`, `asked_for_human` …).
    pub escalations: BTreeMap<String, u64>,
}

/// Where a tenant's policy comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PolicySource {
    /// The tenant has none of its own: the defaults.
    Default,
    /// Set through `PUT`.
    Stored,
}

/// A tenant's policy with its version.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PolicyView {
    pub tenant: String,
    pub source: PolicySource,
    /// 0 for the defaults, then 1, 2, … per change.
    pub version: u32,
    /// Also the `ETag` header; send it back in `If-Match`.
    pub etag: String,
    pub updated_by: Option<String>,
    pub updated_at: Option<UnixMs>,
    /// The policy document (docs/noc.md lists every field).
    #[schema(value_type = Object)]
    pub policy: Value,
}

impl PolicyView {
    fn stored(p: StoredPolicy) -> Self {
        Self {
            tenant: p.tenant,
            source: PolicySource::Stored,
            version: p.version,
            etag: p.etag,
            updated_by: Some(p.updated_by),
            updated_at: Some(p.updated_at),
            policy: p.document,
        }
    }

    fn defaults(tenant: &str, policy: Value) -> Self {
        Self {
            tenant: tenant.to_string(),
            source: PolicySource::Default,
            version: 0,
            etag: DEFAULT_POLICY_ETAG.to_string(),
            updated_by: None,
            updated_at: None,
            policy,
        }
    }
}

/// One value that changed, by JSON pointer.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct PathChange {
    pub path: String,
    /// `null` when the field was absent.
    #[schema(value_type = Object)]
    pub from: Value,
    #[schema(value_type = Object)]
    pub to: Value,
}

/// One policy change in the audit trail.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PolicyChange {
    pub seq: i64,
    pub actor: String,
    pub at: UnixMs,
    /// `policy v<N>`: the version this change made.
    pub object: String,
    /// The fields that changed, in path order.
    pub changes: Vec<PathChange>,
    /// The whole policy before (the defaults for a first policy) and after.
    #[schema(value_type = Object)]
    pub from: Value,
    #[schema(value_type = Object)]
    pub to: Value,
}

impl From<AuditEntry> for PolicyChange {
    fn from(e: AuditEntry) -> Self {
        let from = e.from.unwrap_or(Value::Null);
        let to = e.to.unwrap_or(Value::Null);
        Self {
            seq: e.seq,
            actor: e.actor,
            at: e.at,
            object: e.object,
            changes: json_changes(&from, &to),
            from,
            to,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub(super) struct PolicyAuditPage {
    pub items: Vec<PolicyChange>,
    pub next: Option<String>,
}

/// The leaves that differ between two JSON documents, by JSON pointer.
/// Objects are compared key by key; anything else (lists included) as a
/// whole, so a reordered provider list is one change.
pub fn json_changes(from: &Value, to: &Value) -> Vec<PathChange> {
    let mut out = Vec::new();
    collect_changes(from, to, &mut String::new(), &mut out);
    out
}

fn collect_changes(from: &Value, to: &Value, path: &mut String, out: &mut Vec<PathChange>) {
    if let (Value::Object(a), Value::Object(b)) = (from, to) {
        let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
        for key in keys {
            let len = path.len();
            path.push('/');
            path.push_str(&key.replace('~', "~0").replace('/', "~1"));
            collect_changes(
                a.get(key).unwrap_or(&Value::Null),
                b.get(key).unwrap_or(&Value::Null),
                path,
                out,
            );
            path.truncate(len);
        }
    } else if from != to {
        out.push(PathChange {
            path: path.clone(),
            from: from.clone(),
            to: to.clone(),
        });
    }
}

/// Puts every stored policy in force, at startup. A stored policy the
/// orchestrator no longer accepts (its rules changed) is logged and its
/// tenant runs with the defaults until someone stores a valid one.
/// Returns how many were applied.
pub async fn load_policies(store: &dyn Store, hook: &dyn PolicyHook) -> Result<usize, StoreError> {
    let mut applied = 0;
    for stored in store.list_policies().await? {
        match hook.validate(&stored.document) {
            Ok(normalized) => {
                hook.apply(&stored.tenant, &normalized);
                applied += 1;
            }
            Err(problems) => {
                let problems: Vec<String> = problems
                    .iter()
                    .map(|p| format!("{}: {}", p.path, p.message))
                    .collect();
                tracing::error!(
                    tenant = %stored.tenant,
                    version = stored.version,
                    ?problems,
                    "stored NOC policy is no longer valid; the tenant runs with the defaults"
                );
            }
        }
    }
    Ok(applied)
}

fn hooks(state: &ApiState) -> Result<&NocHooks, ApiError> {
    state.inner.noc.as_ref().ok_or(ApiError::NocUnavailable)
}

#[utoipa::path(get, path = "/v1/tenants/{tenant}/policy", tag = "noc",
    responses((status = 200, body = PolicyView, description = "The tenant's policy, or the defaults when it has none"),
        (status = 404, body = super::Problem), (status = 503, body = super::Problem)))]
pub(super) async fn get_policy(
    State(state): State<ApiState>,
    who: Principal,
    Path(tenant): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    who.tenant(&state, &tenant, Access::Read).await?;
    let hooks = hooks(&state)?;
    let view = match state.store().get_policy(&tenant).await? {
        Some(p) => PolicyView::stored(p),
        None => PolicyView::defaults(&tenant, hooks.policy.defaults()),
    };
    Ok((etag_header(&view.etag), Json(view)))
}

#[utoipa::path(put, path = "/v1/tenants/{tenant}/policy", tag = "noc",
    request_body(content = Object, description = "The whole policy document; absent fields take their defaults, unknown fields are errors"),
    params(("If-Match" = Option<String>, Header, description = "The ETag read with the policy (`\"default\"` while the tenant has none)")),
    responses((status = 200, body = PolicyView, description = "Stored, audited and in force from the next AI turn"),
        (status = 403, body = super::Problem), (status = 412, body = super::Problem),
        (status = 422, body = super::Problem, description = "Every problem, each with its JSON pointer")))]
pub(super) async fn put_policy(
    State(state): State<ApiState>,
    who: Principal,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    who.tenant(&state, &tenant, Access::Policy).await?;
    let hooks = hooks(&state)?;
    let expected = if_match(&headers)?;
    let document: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("the body is not valid JSON: {e}")))?;
    let normalized = hooks
        .policy
        .validate(&document)
        .map_err(ApiError::InvalidPolicy)?;
    let defaults = hooks.policy.defaults();
    let actor = who.actor();
    // Store and apply in the same order, so the book ends with the
    // policy the store committed last.
    let _writes = state.inner.policy_writes.lock().await;
    let write = PolicyWrite {
        tenant: &tenant,
        document: &normalized,
        if_match: expected.as_deref(),
        default_document: &defaults,
        actor: &actor,
        at: state.now(),
    };
    let stored = state
        .store()
        .put_policy(&write)
        .await
        .map_err(|e| match e {
            StoreError::EtagMismatch { current } => ApiError::PolicyChanged { current },
            other => other.into(),
        })?;
    hooks.policy.apply(&tenant, &stored.document);
    tracing::info!(tenant = %tenant, version = stored.version, actor = %actor, "NOC policy in force");
    let view = PolicyView::stored(stored);
    Ok((etag_header(&view.etag), Json(view)))
}

#[utoipa::path(get, path = "/v1/tenants/{tenant}/policy/audit", tag = "noc", params(PageQuery),
    responses((status = 200, body = PolicyAuditPage, description = "Policy changes, newest first")))]
pub(super) async fn policy_audit(
    State(state): State<ApiState>,
    who: Principal,
    Path(tenant): Path<String>,
    QueryParams(page): QueryParams<PageQuery>,
) -> Result<Json<PolicyAuditPage>, ApiError> {
    who.tenant(&state, &tenant, Access::Read).await?;
    let page = state
        .store()
        .list_audit_action(&tenant, POLICY_AUDIT_ACTION, &page.request())
        .await?;
    Ok(Json(PolicyAuditPage {
        items: page.items.into_iter().map(PolicyChange::from).collect(),
        next: page.next,
    }))
}

#[utoipa::path(get, path = "/v1/tenants/{tenant}/health", tag = "noc",
    responses((status = 200, body = AiHealth), (status = 404, body = super::Problem), (status = 503, body = super::Problem)))]
pub(super) async fn health(
    State(state): State<ApiState>,
    who: Principal,
    Path(tenant): Path<String>,
) -> Result<Json<AiHealth>, ApiError> {
    who.tenant(&state, &tenant, Access::Read).await?;
    Ok(Json(hooks(&state)?.health.health(&tenant)))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn changes_are_listed_by_path() {
        let a = json!({"limits": {"burst": 100, "max_concurrent": 1000},
            "providers": {"stt": ["local"]}, "budgets": {"turn": {"soft_ms": null, "hard_ms": 5000}}});
        let b = json!({"limits": {"burst": 100, "max_concurrent": 20},
            "providers": {"stt": ["deepgram", "local"]}, "budgets": {"turn": {"soft_ms": 900, "hard_ms": 5000}},
            "a/b": 1});
        let changes: Vec<(String, Value, Value)> = json_changes(&a, &b)
            .into_iter()
            .map(|c| (c.path, c.from, c.to))
            .collect();
        assert_eq!(
            changes,
            [
                ("/a~1b".to_string(), Value::Null, json!(1)),
                ("/budgets/turn/soft_ms".to_string(), Value::Null, json!(900)),
                ("/limits/max_concurrent".to_string(), json!(1000), json!(20)),
                (
                    "/providers/stt".to_string(),
                    json!(["local"]),
                    json!(["deepgram", "local"])
                ),
            ]
        );
        assert!(json_changes(&a, &a).is_empty());
    }
}
