//! Bearer keys and what each role may do.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use super::{ApiError, ApiState};
use crate::store::{keys, ApiKey, Role, Tenant};

/// `last_used_at` is written at most this often per key, so that reads
/// do not each cost a durable write.
const TOUCH_EVERY_MS: i64 = 60_000;

/// The caller: the key that authenticated the request.
#[derive(Debug, Clone)]
pub struct Principal {
    pub key: ApiKey,
}

/// What an operation does to a tenant's objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Access {
    /// Read flows, versions, numbers, calls, settings and audit.
    Read,
    /// Change drafts, publish, roll back, route numbers.
    Edit,
    /// Change the tenant's policies.
    Policy,
}

impl Principal {
    /// Who did it, for audit entries and `updated_by`.
    pub fn actor(&self) -> String {
        format!("{} [{}]", self.key.label, self.key.id)
    }

    fn may(&self, access: Access) -> bool {
        match (self.key.role, access) {
            (Role::Admin, _) => true,
            (Role::Noc, Access::Read | Access::Policy) => true,
            (Role::Noc, Access::Edit) => false,
            (Role::Editor, Access::Read | Access::Edit) => true,
            (Role::Qa | Role::Viewer, Access::Read) => true,
            (Role::Editor | Role::Qa | Role::Viewer, _) => false,
        }
    }

    /// Only operator-wide admins.
    pub(super) fn require_admin(&self) -> Result<(), ApiError> {
        if self.key.role == Role::Admin {
            Ok(())
        } else {
            Err(ApiError::Forbidden)
        }
    }

    /// Checks access to a tenant and returns it. Another tenant's key gets
    /// 404 (before any role check, so 403 never confirms a tenant exists);
    /// an operator key naming no tenant gets 404 too.
    pub(super) async fn tenant(
        &self,
        state: &ApiState,
        tenant: &str,
        access: Access,
    ) -> Result<Tenant, ApiError> {
        if !self.key.role.is_operator() && self.key.tenant.as_deref() != Some(tenant) {
            return Err(ApiError::NotFound("tenant"));
        }
        if !self.may(access) {
            return Err(ApiError::Forbidden);
        }
        state
            .store()
            .get_tenant(tenant)
            .await?
            .ok_or(ApiError::NotFound("tenant"))
    }
}

impl FromRequestParts<ApiState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &ApiState,
    ) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or(ApiError::Unauthorized)?;
        let (scheme, token) = header
            .trim()
            .split_once(' ')
            .ok_or(ApiError::Unauthorized)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(ApiError::Unauthorized);
        }
        let (id, secret) = keys::parse(token.trim()).ok_or(ApiError::Unauthorized)?;
        let (key, hash) = state
            .store()
            .get_key(id)
            .await?
            .ok_or(ApiError::Unauthorized)?;
        if !keys::verify(secret, &hash) || key.revoked_at.is_some() {
            return Err(ApiError::Unauthorized);
        }
        let now = state.now();
        if key.last_used_at.is_none_or(|t| now - t >= TOUCH_EVERY_MS) {
            // Losing a last-used time is harmless; do not fail the request.
            if let Err(e) = state.store().touch_key(&key.id, now).await {
                tracing::warn!(error = %e, key = %key.id, "could not record key use");
            }
        }
        Ok(Principal { key })
    }
}
