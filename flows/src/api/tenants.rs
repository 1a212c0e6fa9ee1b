//! Tenants, their settings and audit log, and API keys.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::{Access, Principal};
use super::extract::{JsonBody, PageQuery, QueryParams};
use super::{ApiError, ApiState};
use crate::store::{keys, ApiKey, AuditEntry, Page, Role, Tenant, TenantSettings};

/// A tenant id: 1–63 of `a-z`, `0-9` and `-`, starting with a letter or digit.
pub(super) fn valid_slug(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && !s.starts_with('-')
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewTenant {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub settings: TenantSettings,
}

#[utoipa::path(post, path = "/v1/tenants", tag = "tenants", request_body = NewTenant,
    responses((status = 201, body = Tenant), (status = 409, body = super::Problem)))]
pub(super) async fn create(
    State(state): State<ApiState>,
    who: Principal,
    JsonBody(body): JsonBody<NewTenant>,
) -> Result<(StatusCode, Json<Tenant>), ApiError> {
    who.require_admin()?;
    if !valid_slug(&body.id) {
        return Err(ApiError::Unprocessable(
            "a tenant id is 1-63 of a-z, 0-9 and -".into(),
        ));
    }
    if body.name.trim().is_empty() {
        return Err(ApiError::Unprocessable("a tenant needs a name".into()));
    }
    let tenant = Tenant {
        id: body.id,
        name: body.name,
        settings: body.settings,
        created_at: state.now(),
    };
    let _routing = state.inner.routing.lock().await;
    state.store().create_tenant(&tenant, &who.actor()).await?;
    state.live().set_tenant(&tenant.id, tenant.settings.clone());
    Ok((StatusCode::CREATED, Json(tenant)))
}

#[utoipa::path(get, path = "/v1/tenants", tag = "tenants", responses((status = 200, body = Vec<Tenant>)))]
pub(super) async fn list(
    State(state): State<ApiState>,
    who: Principal,
) -> Result<Json<Vec<Tenant>>, ApiError> {
    if !who.key.role.is_operator() {
        // A tenant key sees only its own tenant.
        let own = match &who.key.tenant {
            Some(t) => state.store().get_tenant(t).await?,
            None => None,
        };
        return Ok(Json(own.into_iter().collect()));
    }
    Ok(Json(state.store().list_tenants().await?))
}

#[utoipa::path(get, path = "/v1/tenants/{tenant}", tag = "tenants", responses((status = 200, body = Tenant), (status = 404, body = super::Problem)))]
pub(super) async fn get_one(
    State(state): State<ApiState>,
    who: Principal,
    Path(tenant): Path<String>,
) -> Result<Json<Tenant>, ApiError> {
    Ok(Json(who.tenant(&state, &tenant, Access::Read).await?))
}

#[utoipa::path(get, path = "/v1/tenants/{tenant}/settings", tag = "tenants", responses((status = 200, body = TenantSettings)))]
pub(super) async fn get_settings(
    State(state): State<ApiState>,
    who: Principal,
    Path(tenant): Path<String>,
) -> Result<Json<TenantSettings>, ApiError> {
    Ok(Json(
        who.tenant(&state, &tenant, Access::Read).await?.settings,
    ))
}

#[utoipa::path(put, path = "/v1/tenants/{tenant}/settings", tag = "tenants", request_body = TenantSettings,
    responses((status = 200, body = TenantSettings)))]
pub(super) async fn put_settings(
    State(state): State<ApiState>,
    who: Principal,
    Path(tenant): Path<String>,
    JsonBody(settings): JsonBody<TenantSettings>,
) -> Result<Json<TenantSettings>, ApiError> {
    who.tenant(&state, &tenant, Access::Policy).await?;
    let _routing = state.inner.routing.lock().await;
    let updated = state
        .store()
        .update_tenant_settings(&tenant, &settings, &who.actor(), state.now())
        .await?;
    state.live().set_tenant(&tenant, updated.settings.clone());
    Ok(Json(updated.settings))
}

#[derive(Debug, Serialize, ToSchema)]
pub(super) struct AuditPage {
    pub items: Vec<AuditEntry>,
    pub next: Option<String>,
}

impl From<Page<AuditEntry>> for AuditPage {
    fn from(p: Page<AuditEntry>) -> Self {
        Self {
            items: p.items,
            next: p.next,
        }
    }
}

#[utoipa::path(get, path = "/v1/tenants/{tenant}/audit", tag = "tenants", params(PageQuery),
    responses((status = 200, body = AuditPage)))]
pub(super) async fn audit(
    State(state): State<ApiState>,
    who: Principal,
    Path(tenant): Path<String>,
    QueryParams(page): QueryParams<PageQuery>,
) -> Result<Json<AuditPage>, ApiError> {
    who.tenant(&state, &tenant, Access::Read).await?;
    Ok(Json(
        state
            .store()
            .list_audit(Some(&tenant), &page.request())
            .await?
            .into(),
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewKey {
    pub role: Role,
    /// Required for tenant roles, absent for `admin` and `noc`.
    #[serde(default)]
    pub tenant: Option<String>,
    #[serde(default)]
    pub label: String,
}

/// A created key: `token` is shown this once and never again.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct CreatedKey {
    pub token: String,
    pub key: ApiKey,
}

#[utoipa::path(post, path = "/v1/keys", tag = "keys", request_body = NewKey, responses((status = 201, body = CreatedKey)))]
pub(super) async fn create_key(
    State(state): State<ApiState>,
    who: Principal,
    JsonBody(body): JsonBody<NewKey>,
) -> Result<(StatusCode, Json<CreatedKey>), ApiError> {
    who.require_admin()?;
    match (body.role.is_operator(), &body.tenant) {
        (true, Some(_)) => {
            return Err(ApiError::Unprocessable(
                "admin and noc keys belong to no tenant".into(),
            ))
        }
        (false, None) => return Err(ApiError::Unprocessable("this role needs a tenant".into())),
        (false, Some(t)) if state.store().get_tenant(t).await?.is_none() => {
            return Err(ApiError::NotFound("tenant"))
        }
        _ => {}
    }
    let token = keys::generate();
    let key = ApiKey {
        id: token.id.clone(),
        role: body.role,
        tenant: body.tenant,
        label: body.label,
        created_at: state.now(),
        last_used_at: None,
        revoked_at: None,
    };
    state
        .store()
        .insert_key(&key, &token.secret_hash, &who.actor())
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedKey {
            token: token.token,
            key,
        }),
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
pub(super) struct KeyFilter {
    /// Only this tenant's keys.
    pub tenant: Option<String>,
}

#[utoipa::path(get, path = "/v1/keys", tag = "keys", params(KeyFilter), responses((status = 200, body = Vec<ApiKey>)))]
pub(super) async fn list_keys(
    State(state): State<ApiState>,
    who: Principal,
    QueryParams(filter): QueryParams<KeyFilter>,
) -> Result<Json<Vec<ApiKey>>, ApiError> {
    who.require_admin()?;
    Ok(Json(
        state.store().list_keys(filter.tenant.as_deref()).await?,
    ))
}

#[utoipa::path(delete, path = "/v1/keys/{key}", tag = "keys", responses((status = 200, body = ApiKey)))]
pub(super) async fn revoke_key(
    State(state): State<ApiState>,
    who: Principal,
    Path(key): Path<String>,
) -> Result<Json<ApiKey>, ApiError> {
    who.require_admin()?;
    Ok(Json(
        state
            .store()
            .revoke_key(&key, &who.actor(), state.now())
            .await?,
    ))
}

#[cfg(test)]
mod tests {
    use super::valid_slug;

    #[test]
    fn slugs() {
        assert!(valid_slug("acme-2"));
        for bad in ["", "-x", "Acme", "a_b", &"a".repeat(64)] {
            assert!(!valid_slug(bad), "{bad}");
        }
    }
}
