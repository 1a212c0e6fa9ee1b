//! Numbers (DID → flow) and call records.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::{Access, Principal};
use super::extract::{JsonBody, QueryParams};
use super::{ApiError, ApiState};
use crate::live::normalize_did;
use crate::store::{CallRecord, CallSummary, Number, PageRequest, StoreError};

#[utoipa::path(get, path = "/v1/tenants/{tenant}/numbers", tag = "numbers", responses((status = 200, body = Vec<Number>)))]
pub(super) async fn list_numbers(
    State(state): State<ApiState>,
    who: Principal,
    Path(tenant): Path<String>,
) -> Result<Json<Vec<Number>>, ApiError> {
    who.tenant(&state, &tenant, Access::Read).await?;
    Ok(Json(state.store().list_numbers(&tenant).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NumberBody {
    pub flow_id: String,
}

fn did_or_404(raw: &str) -> Result<String, ApiError> {
    normalize_did(raw).ok_or(ApiError::NotFound("number"))
}

#[utoipa::path(put, path = "/v1/tenants/{tenant}/numbers/{did}", tag = "numbers", request_body = NumberBody,
    responses((status = 200, body = Number), (status = 409, body = super::Problem), (status = 422, body = super::Problem)))]
pub(super) async fn put_number(
    State(state): State<ApiState>,
    who: Principal,
    Path((tenant, did)): Path<(String, String)>,
    JsonBody(body): JsonBody<NumberBody>,
) -> Result<Json<Number>, ApiError> {
    who.tenant(&state, &tenant, Access::Edit).await?;
    let did = normalize_did(&did).ok_or_else(|| {
        ApiError::Unprocessable("a number is an optional + and 1-32 digits".into())
    })?;
    let _routing = state.inner.routing.lock().await;
    let number = match state
        .store()
        .put_number(&tenant, &did, &body.flow_id, &who.actor(), state.now())
        .await
    {
        Err(StoreError::NotFound) => {
            return Err(ApiError::Unprocessable(format!(
                "this tenant has no flow \"{}\"",
                body.flow_id
            )))
        }
        other => other?,
    };
    state
        .live()
        .set_number(&number.did, &tenant, &number.flow_id);
    Ok(Json(number))
}

#[utoipa::path(delete, path = "/v1/tenants/{tenant}/numbers/{did}", tag = "numbers", responses((status = 204)))]
pub(super) async fn delete_number(
    State(state): State<ApiState>,
    who: Principal,
    Path((tenant, did)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    who.tenant(&state, &tenant, Access::Edit).await?;
    let did = did_or_404(&did)?;
    let _routing = state.inner.routing.lock().await;
    match state
        .store()
        .delete_number(&tenant, &did, &who.actor(), state.now())
        .await
    {
        Err(StoreError::NotFound) => return Err(ApiError::NotFound("number")),
        other => other?,
    }
    state.live().remove_number(&did);
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, IntoParams)]
pub(super) struct CallQuery {
    /// Only calls to this number.
    pub did: Option<String>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(super) struct CallPage {
    pub items: Vec<CallSummary>,
    pub next: Option<String>,
}

#[utoipa::path(get, path = "/v1/tenants/{tenant}/calls", tag = "calls", params(CallQuery), responses((status = 200, body = CallPage)))]
pub(super) async fn list_calls(
    State(state): State<ApiState>,
    who: Principal,
    Path(tenant): Path<String>,
    QueryParams(q): QueryParams<CallQuery>,
) -> Result<Json<CallPage>, ApiError> {
    who.tenant(&state, &tenant, Access::Read).await?;
    let did = match q.did.as_deref() {
        Some(raw) => Some(
            normalize_did(raw)
                .ok_or_else(|| ApiError::BadRequest("did is not a phone number".into()))?,
        ),
        None => None,
    };
    let page = PageRequest {
        limit: q.limit.unwrap_or(0),
        cursor: q.cursor,
    };
    let page = state
        .store()
        .list_calls(&tenant, did.as_deref(), &page)
        .await?;
    Ok(Json(CallPage {
        items: page.items,
        next: page.next,
    }))
}

#[utoipa::path(get, path = "/v1/tenants/{tenant}/calls/{call}", tag = "calls", responses((status = 200, body = CallRecord)))]
pub(super) async fn get_call(
    State(state): State<ApiState>,
    who: Principal,
    Path((tenant, call)): Path<(String, String)>,
) -> Result<Json<CallRecord>, ApiError> {
    who.tenant(&state, &tenant, Access::Read).await?;
    Ok(Json(
        state
            .store()
            .get_call(&tenant, &call)
            .await?
            .ok_or(ApiError::NotFound("call"))?,
    ))
}
