//! The records the store keeps.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::UnixMs;
use crate::interpreter::{Disposition, FallbackPolicy, Step};
use crate::validate::{HttpAllowList, ValidationContext};

/// What an API key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything, operator-wide.
    Admin,
    /// Policies and health of every tenant.
    Noc,
    /// Flows and numbers of one tenant.
    Editor,
    /// Runs evals and reads calls of one tenant.
    Qa,
    /// Reads everything of one tenant.
    Viewer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Noc => "noc",
            Role::Editor => "editor",
            Role::Qa => "qa",
            Role::Viewer => "viewer",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Some(match s {
            "admin" => Role::Admin,
            "noc" => Role::Noc,
            "editor" => Role::Editor,
            "qa" => Role::Qa,
            "viewer" => Role::Viewer,
            _ => return None,
        })
    }

    /// Operator roles span every tenant and have no tenant of their own.
    pub fn is_operator(self) -> bool {
        matches!(self, Role::Admin | Role::Noc)
    }
}

/// A tenant's policies, stored as one JSON document. Fields added later
/// (NOC policy, …) default when absent, so old rows keep reading.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TenantSettings {
    /// What a call does when something unexpected happens.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub fallback: FallbackPolicy,
    /// Hosts the tenant's `http` nodes may call.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub http: HttpAllowList,
}

impl TenantSettings {
    /// What validation needs from these settings.
    pub fn validation_context(&self) -> ValidationContext {
        ValidationContext {
            http: self.http.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Tenant {
    /// A slug: lower-case letters, digits and `-`.
    pub id: String,
    pub name: String,
    pub settings: TenantSettings,
    pub created_at: UnixMs,
}

/// An API key without its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ApiKey {
    pub id: String,
    pub role: Role,
    /// `None` for operator roles.
    pub tenant: Option<String>,
    pub label: String,
    pub created_at: UnixMs,
    pub last_used_at: Option<UnixMs>,
    pub revoked_at: Option<UnixMs>,
}

/// A flow's current draft.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Draft {
    pub tenant: String,
    pub flow_id: String,
    /// The document as the editor saved it; it may not be a valid flow yet.
    pub document: Value,
    /// Changes whenever the draft changes; sent as the `ETag` header.
    pub etag: String,
    pub updated_by: String,
    pub updated_at: UnixMs,
}

/// Which version of a flow is live, and since when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct LivePointer {
    pub version: u32,
    /// Who published it, or rolled back to it.
    pub by: String,
    pub at: UnixMs,
}

/// A flow in a list.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct FlowSummary {
    pub flow_id: String,
    /// The draft's `name`, when it has one.
    pub name: Option<String>,
    pub etag: String,
    pub updated_by: String,
    pub updated_at: UnixMs,
    /// `None` when the flow was never published.
    pub live: Option<LivePointer>,
}

/// What [`super::Store::publish`] needs.
#[derive(Debug, Clone)]
pub struct PublishRequest<'a> {
    pub tenant: &'a str,
    pub flow_id: &'a str,
    /// The validated document that becomes the new version.
    pub document: &'a Value,
    /// Publish only if the draft still has this ETag.
    pub if_match: Option<&'a str>,
    pub author: &'a str,
    pub comment: &'a str,
    pub at: UnixMs,
}

/// One immutable version of a flow.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Version {
    pub tenant: String,
    pub flow_id: String,
    pub version: u32,
    pub document: Value,
    pub author: String,
    pub comment: String,
    pub created_at: UnixMs,
}

/// A version in a list, without its document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct VersionSummary {
    pub version: u32,
    pub author: String,
    pub comment: String,
    pub created_at: UnixMs,
    /// Whether this is the live version.
    pub live: bool,
}

/// A DID routed to a flow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Number {
    pub did: String,
    pub tenant: String,
    pub flow_id: String,
    pub updated_by: String,
    pub updated_at: UnixMs,
}

/// One call through a flow, with its node-by-node timeline.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct CallRecord {
    pub tenant: String,
    pub id: String,
    pub did: String,
    pub caller: String,
    pub flow_id: String,
    pub version: u32,
    pub started_at: UnixMs,
    /// `None` while the call is up.
    pub ended_at: Option<UnixMs>,
    /// The interpreter's `Disposition` in snake case, once ended.
    pub disposition: Option<String>,
    /// The interpreter's `Step` list as JSON.
    #[schema(value_type = Vec<Object>)]
    pub timeline: Value,
}

impl CallRecord {
    /// The stored name of an interpreter disposition (`completed`, …).
    pub fn disposition_name(d: Disposition) -> String {
        match serde_json::to_value(d) {
            Ok(Value::String(s)) => s,
            _ => format!("{d:?}").to_lowercase(),
        }
    }

    /// The stored form of an interpreter timeline.
    pub fn timeline_json(steps: &[Step]) -> Value {
        serde_json::to_value(steps).unwrap_or(Value::Array(Vec::new()))
    }
}

/// A call in a list, without its timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct CallSummary {
    pub id: String,
    pub did: String,
    pub caller: String,
    pub flow_id: String,
    pub version: u32,
    pub started_at: UnixMs,
    pub ended_at: Option<UnixMs>,
    pub disposition: Option<String>,
}

/// One audit-log entry: who did what, from which value to which, when.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct AuditEntry {
    pub seq: i64,
    pub tenant: Option<String>,
    pub actor: String,
    /// Such as `flow.publish`, `flow.rollback`, `number.put`.
    pub action: String,
    /// What was acted on, such as the flow id or the DID.
    pub object: String,
    #[schema(value_type = Option<Object>)]
    pub from: Option<Value>,
    #[schema(value_type = Option<Object>)]
    pub to: Option<Value>,
    pub at: UnixMs,
}

/// The `ETag` of a tenant that has no policy of its own (it runs with the
/// defaults). `If-Match: "default"` on a PUT means "only if nobody has set
/// a policy yet".
pub const DEFAULT_POLICY_ETAG: &str = "default";

/// The audit-log action of a policy change.
pub const POLICY_AUDIT_ACTION: &str = "policy.put";

/// A tenant's NOC policy as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredPolicy {
    pub tenant: String,
    /// The policy as the orchestrator normalized it.
    pub document: Value,
    /// 1 for the tenant's first stored policy, then +1 per change.
    pub version: u32,
    /// Changes with every change; sent as the `ETag` header.
    pub etag: String,
    pub updated_by: String,
    pub updated_at: UnixMs,
}

/// What [`super::Store::put_policy`] needs.
#[derive(Debug, Clone)]
pub struct PolicyWrite<'a> {
    pub tenant: &'a str,
    /// The validated, normalized policy.
    pub document: &'a Value,
    /// Write only if the current ETag is this ([`DEFAULT_POLICY_ETAG`]
    /// while the tenant has none, `*` for any).
    pub if_match: Option<&'a str>,
    /// The policy in force while the tenant has none of its own (the
    /// defaults): the audit entry's `from` for a first policy.
    pub default_document: &'a Value,
    pub actor: &'a str,
    pub at: UnixMs,
}

/// Which page of a list to read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageRequest {
    /// At most this many items; the store caps it at [`PageRequest::MAX`].
    pub limit: u32,
    /// The `next` of the previous page.
    pub cursor: Option<String>,
}

impl PageRequest {
    pub const DEFAULT: u32 = 50;
    pub const MAX: u32 = 500;

    /// The limit to use: the default for 0, capped at the maximum.
    pub fn effective_limit(&self) -> u32 {
        match self.limit {
            0 => Self::DEFAULT,
            n => n.min(Self::MAX),
        }
    }
}

/// One page of a list.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `cursor` to read the next page; `None` on the last page.
    pub next: Option<String>,
}

/// A flow's live version, for loading the live table.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveFlowRecord {
    pub tenant: String,
    pub flow_id: String,
    pub version: u32,
    pub document: Value,
}

/// Everything the live table is built from.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LiveState {
    pub tenants: Vec<(String, TenantSettings)>,
    pub numbers: Vec<Number>,
    pub flows: Vec<LiveFlowRecord>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dispositions_and_timelines_have_a_stored_form() {
        assert_eq!(
            CallRecord::disposition_name(Disposition::CallerHungUp),
            "caller_hung_up"
        );
        assert_eq!(CallRecord::timeline_json(&[]), serde_json::json!([]));
    }

    #[test]
    fn old_settings_rows_read_with_defaults() {
        let s: TenantSettings = serde_json::from_str("{}").expect("reads");
        assert_eq!(s, TenantSettings::default());
    }
}
