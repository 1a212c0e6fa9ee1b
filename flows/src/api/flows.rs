//! Flows: drafts, validation, publish, versions, diff and rollback.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::auth::{Access, Principal};
use super::diff::FlowDiff;
use super::extract::{etag_header, if_match, JsonBody, PageQuery, QueryParams};
use super::{ApiError, ApiState};
use crate::model::Flow;
use crate::store::{Draft, FlowSummary, LivePointer, PublishRequest, UnixMs, VersionSummary};
use crate::validate::{validate as run_validation, Issue, Report, ValidationContext};

/// A flow id: 1–64 of letters, digits, `_` and `-`.
fn valid_flow_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn pointer_of(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("/{index}")),
            Segment::Map { key } => {
                out.push_str(&format!("/{}", key.replace('~', "~0").replace('/', "~1")))
            }
            Segment::Enum { .. } | Segment::Unknown => {}
        }
    }
    out
}

/// Reads a document as a flow and validates it: a document that is not a
/// flow at all, or whose `id` is not the flow's, is reported like any other
/// validation error so editors show it the same way.
pub(super) fn check_document(
    flow_id: &str,
    document: &Value,
    ctx: &ValidationContext,
) -> (Option<Flow>, Report) {
    let flow: Flow = match serde_path_to_error::deserialize(document) {
        Ok(flow) => flow,
        Err(e) => {
            let path = pointer_of(e.path());
            let node = path
                .strip_prefix("/nodes/")
                .and_then(|rest| rest.split('/').next())
                .map(String::from);
            let message = format!("This is not a valid flow document: {}.", e.inner());
            let issue = Issue {
                node,
                path,
                code: "invalid_document",
                message,
            };
            return (
                None,
                Report {
                    errors: vec![issue],
                    warnings: vec![],
                },
            );
        }
    };
    if flow.id != flow_id {
        let message = format!(
            "The document's id is \"{}\" but this flow is \"{flow_id}\".",
            flow.id
        );
        let issue = Issue {
            node: None,
            path: "/id".into(),
            code: "id_mismatch",
            message,
        };
        return (
            None,
            Report {
                errors: vec![issue],
                warnings: vec![],
            },
        );
    }
    let report = run_validation(&flow, ctx);
    (Some(flow), report)
}

/// An optional JSON body: empty means the default.
fn optional_json<T: DeserializeOwned + Default>(body: &Bytes) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("the body is not valid JSON: {e}")))
}

/// A flow's draft with its status.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct DraftView {
    pub flow_id: String,
    pub etag: String,
    pub updated_by: String,
    pub updated_at: UnixMs,
    pub live: Option<LivePointer>,
    /// The draft document.
    #[schema(value_type = Object)]
    pub document: Value,
}

fn draft_view(draft: Draft, live: Option<LivePointer>) -> DraftView {
    DraftView {
        flow_id: draft.flow_id,
        etag: draft.etag,
        updated_by: draft.updated_by,
        updated_at: draft.updated_at,
        live,
        document: draft.document,
    }
}

#[utoipa::path(get, path = "/v1/schema/flow.json", tag = "flows", responses((status = 200, description = "The flow JSON Schema")))]
pub(super) async fn schema(_who: Principal) -> Json<Value> {
    Json(crate::model::flow_schema())
}

#[derive(Debug, Serialize, ToSchema)]
pub(super) struct FlowPage {
    pub items: Vec<FlowSummary>,
    pub next: Option<String>,
}

#[utoipa::path(get, path = "/v1/tenants/{tenant}/flows", tag = "flows", params(PageQuery), responses((status = 200, body = FlowPage)))]
pub(super) async fn list(
    State(state): State<ApiState>,
    who: Principal,
    Path(tenant): Path<String>,
    QueryParams(page): QueryParams<PageQuery>,
) -> Result<Json<FlowPage>, ApiError> {
    who.tenant(&state, &tenant, Access::Read).await?;
    let page = state.store().list_flows(&tenant, &page.request()).await?;
    Ok(Json(FlowPage {
        items: page.items,
        next: page.next,
    }))
}

#[utoipa::path(post, path = "/v1/tenants/{tenant}/flows", tag = "flows",
    request_body(content = Object, description = "The first draft; its `id` names the flow"),
    responses((status = 201, body = DraftView), (status = 409, body = super::Problem)))]
pub(super) async fn create(
    State(state): State<ApiState>,
    who: Principal,
    Path(tenant): Path<String>,
    JsonBody(document): JsonBody<Value>,
) -> Result<impl IntoResponse, ApiError> {
    who.tenant(&state, &tenant, Access::Edit).await?;
    let flow_id = document
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if !document.is_object() || !valid_flow_id(&flow_id) {
        return Err(ApiError::Unprocessable(
            "the document needs an \"id\" of 1-64 letters, digits, _ or -".into(),
        ));
    }
    let draft = state
        .store()
        .create_draft(&tenant, &flow_id, &document, &who.actor(), state.now())
        .await?;
    let location = format!("/v1/tenants/{tenant}/flows/{flow_id}");
    let headers = [
        etag_header(&draft.etag)[0].clone(),
        (
            header::LOCATION,
            location.parse().map_err(|_| ApiError::NotFound("flow"))?,
        ),
    ];
    Ok((StatusCode::CREATED, headers, Json(draft_view(draft, None))))
}

#[utoipa::path(get, path = "/v1/tenants/{tenant}/flows/{flow}", tag = "flows", responses((status = 200, body = DraftView)))]
pub(super) async fn get_draft(
    State(state): State<ApiState>,
    who: Principal,
    Path((tenant, flow)): Path<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    who.tenant(&state, &tenant, Access::Read).await?;
    let summary = state
        .store()
        .get_flow(&tenant, &flow)
        .await?
        .ok_or(ApiError::NotFound("flow"))?;
    let draft = state
        .store()
        .get_draft(&tenant, &flow)
        .await?
        .ok_or(ApiError::NotFound("flow"))?;
    Ok((
        etag_header(&draft.etag),
        Json(draft_view(draft, summary.live)),
    ))
}

#[utoipa::path(put, path = "/v1/tenants/{tenant}/flows/{flow}", tag = "flows",
    request_body(content = Object, description = "The new draft"),
    params(("If-Match" = String, Header, description = "The ETag read with the draft")),
    responses((status = 200, body = DraftView), (status = 412, body = super::Problem), (status = 428, body = super::Problem)))]
pub(super) async fn update_draft(
    State(state): State<ApiState>,
    who: Principal,
    Path((tenant, flow)): Path<(String, String)>,
    headers: HeaderMap,
    JsonBody(document): JsonBody<Value>,
) -> Result<impl IntoResponse, ApiError> {
    who.tenant(&state, &tenant, Access::Edit).await?;
    let summary = state
        .store()
        .get_flow(&tenant, &flow)
        .await?
        .ok_or(ApiError::NotFound("flow"))?;
    let expected = if_match(&headers)?.ok_or(ApiError::PreconditionRequired)?;
    if document.get("id").and_then(Value::as_str) != Some(flow.as_str()) {
        return Err(ApiError::Unprocessable(format!(
            "the document's \"id\" must be \"{flow}\""
        )));
    }
    let draft = state
        .store()
        .update_draft(
            &tenant,
            &flow,
            &document,
            &expected,
            &who.actor(),
            state.now(),
        )
        .await?;
    Ok((
        etag_header(&draft.etag),
        Json(draft_view(draft, summary.live)),
    ))
}

#[utoipa::path(delete, path = "/v1/tenants/{tenant}/flows/{flow}", tag = "flows",
    responses((status = 204), (status = 409, body = super::Problem)))]
pub(super) async fn delete(
    State(state): State<ApiState>,
    who: Principal,
    Path((tenant, flow)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    who.tenant(&state, &tenant, Access::Edit).await?;
    let expected = if_match(&headers)?;
    let _routing = state.inner.routing.lock().await;
    state
        .store()
        .delete_flow(
            &tenant,
            &flow,
            expected.as_deref(),
            &who.actor(),
            state.now(),
        )
        .await?;
    state.live().remove_flow(&tenant, &flow);
    Ok(StatusCode::NO_CONTENT)
}

/// A validation result.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct ValidationView {
    pub valid: bool,
    #[schema(value_type = Vec<Object>)]
    pub errors: Vec<Issue>,
    #[schema(value_type = Vec<Object>)]
    pub warnings: Vec<Issue>,
}

#[utoipa::path(post, path = "/v1/tenants/{tenant}/flows/{flow}/validate", tag = "flows",
    request_body(content = Object, description = "A document to check; empty to check the stored draft"),
    responses((status = 200, body = ValidationView)))]
pub(super) async fn validate(
    State(state): State<ApiState>,
    who: Principal,
    Path((tenant, flow)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<ValidationView>, ApiError> {
    let t = who.tenant(&state, &tenant, Access::Read).await?;
    let document: Option<Value> = optional_json(&body)?;
    let document = match document {
        Some(d) => d,
        None => {
            state
                .store()
                .get_draft(&tenant, &flow)
                .await?
                .ok_or(ApiError::NotFound("flow"))?
                .document
        }
    };
    let (_, report) = check_document(&flow, &document, &t.settings.validation_context());
    Ok(Json(ValidationView {
        valid: report.is_valid(),
        errors: report.errors,
        warnings: report.warnings,
    }))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct PublishBody {
    /// What changed, for the version history.
    #[serde(default)]
    pub comment: String,
}

/// A published version.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct Published {
    pub version: u32,
    pub author: String,
    pub comment: String,
    pub created_at: UnixMs,
    #[schema(value_type = Vec<Object>)]
    pub warnings: Vec<Issue>,
}

#[utoipa::path(post, path = "/v1/tenants/{tenant}/flows/{flow}/publish", tag = "flows", request_body = PublishBody,
    responses((status = 201, body = Published), (status = 412, body = super::Problem), (status = 422, body = super::Problem)))]
pub(super) async fn publish(
    State(state): State<ApiState>,
    who: Principal,
    Path((tenant, flow_id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<Published>), ApiError> {
    let t = who.tenant(&state, &tenant, Access::Edit).await?;
    let body: PublishBody = optional_json(&body)?;
    let expected = if_match(&headers)?;
    let draft = state
        .store()
        .get_draft(&tenant, &flow_id)
        .await?
        .ok_or(ApiError::NotFound("flow"))?;
    if let Some(expected) = &expected {
        if *expected != draft.etag && expected != "*" {
            return Err(ApiError::EtagMismatch {
                current: draft.etag,
            });
        }
    }
    let (flow, report) =
        check_document(&flow_id, &draft.document, &t.settings.validation_context());
    let Some(flow) = flow.filter(|_| report.is_valid()) else {
        return Err(ApiError::Invalid(report));
    };
    // What runs is exactly what is stored: the flow as read, defaults filled.
    let document =
        serde_json::to_value(&flow).map_err(|e| ApiError::Unprocessable(e.to_string()))?;
    let actor = who.actor();
    let _routing = state.inner.routing.lock().await;
    let request = PublishRequest {
        tenant: &tenant,
        flow_id: &flow_id,
        document: &document,
        // The version must be the draft that was validated.
        if_match: Some(&draft.etag),
        author: &actor,
        comment: &body.comment,
        at: state.now(),
    };
    let version = state.store().publish(&request).await?;
    state
        .live()
        .set_live(&tenant, &flow_id, version.version, Arc::new(flow));
    Ok((
        StatusCode::CREATED,
        Json(Published {
            version: version.version,
            author: version.author,
            comment: version.comment,
            created_at: version.created_at,
            warnings: report.warnings,
        }),
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RollbackBody {
    /// The version to make live again.
    pub version: u32,
}

#[derive(Debug, Serialize, ToSchema)]
pub(super) struct RolledBack {
    pub live_version: u32,
    pub previous_version: Option<u32>,
}

#[utoipa::path(post, path = "/v1/tenants/{tenant}/flows/{flow}/rollback", tag = "flows", request_body = RollbackBody,
    responses((status = 200, body = RolledBack)))]
pub(super) async fn rollback(
    State(state): State<ApiState>,
    who: Principal,
    Path((tenant, flow_id)): Path<(String, String)>,
    JsonBody(body): JsonBody<RollbackBody>,
) -> Result<Json<RolledBack>, ApiError> {
    who.tenant(&state, &tenant, Access::Edit).await?;
    let target = state
        .store()
        .get_version(&tenant, &flow_id, body.version)
        .await?
        .ok_or(ApiError::NotFound("version"))?;
    let flow: Flow = serde_json::from_value(target.document).map_err(|e| {
        ApiError::Unprocessable(format!(
            "version {} no longer reads as a flow: {e}",
            body.version
        ))
    })?;
    let actor = who.actor();
    let _routing = state.inner.routing.lock().await;
    let previous = state
        .store()
        .get_flow(&tenant, &flow_id)
        .await?
        .and_then(|f| f.live)
        .map(|l| l.version);
    let version = state
        .store()
        .rollback(&tenant, &flow_id, body.version, &actor, state.now())
        .await?;
    state
        .live()
        .set_live(&tenant, &flow_id, version.version, Arc::new(flow));
    Ok(Json(RolledBack {
        live_version: version.version,
        previous_version: previous,
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub(super) struct VersionPage {
    pub items: Vec<VersionSummary>,
    pub next: Option<String>,
}

#[utoipa::path(get, path = "/v1/tenants/{tenant}/flows/{flow}/versions", tag = "flows", params(PageQuery),
    responses((status = 200, body = VersionPage)))]
pub(super) async fn versions(
    State(state): State<ApiState>,
    who: Principal,
    Path((tenant, flow)): Path<(String, String)>,
    QueryParams(page): QueryParams<PageQuery>,
) -> Result<Json<VersionPage>, ApiError> {
    who.tenant(&state, &tenant, Access::Read).await?;
    state
        .store()
        .get_flow(&tenant, &flow)
        .await?
        .ok_or(ApiError::NotFound("flow"))?;
    let page = state
        .store()
        .list_versions(&tenant, &flow, &page.request())
        .await?;
    Ok(Json(VersionPage {
        items: page.items,
        next: page.next,
    }))
}

/// One version with its document.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct VersionView {
    pub version: u32,
    pub author: String,
    pub comment: String,
    pub created_at: UnixMs,
    pub live: bool,
    #[schema(value_type = Object)]
    pub document: Value,
}

fn parse_version(s: &str) -> Result<u32, ApiError> {
    s.parse().map_err(|_| ApiError::NotFound("version"))
}

#[utoipa::path(get, path = "/v1/tenants/{tenant}/flows/{flow}/versions/{version}", tag = "flows",
    responses((status = 200, body = VersionView)))]
pub(super) async fn version(
    State(state): State<ApiState>,
    who: Principal,
    Path((tenant, flow, version)): Path<(String, String, String)>,
) -> Result<Json<VersionView>, ApiError> {
    who.tenant(&state, &tenant, Access::Read).await?;
    let n = parse_version(&version)?;
    let v = state
        .store()
        .get_version(&tenant, &flow, n)
        .await?
        .ok_or(ApiError::NotFound("version"))?;
    let live = state
        .store()
        .get_flow(&tenant, &flow)
        .await?
        .and_then(|f| f.live)
        .is_some_and(|l| l.version == n);
    Ok(Json(VersionView {
        version: v.version,
        author: v.author,
        comment: v.comment,
        created_at: v.created_at,
        live,
        document: v.document,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
pub(super) struct DiffQuery {
    /// A version number, `live` or `draft`.
    pub from: String,
    /// A version number, `live` or `draft`.
    pub to: String,
}

async fn document_at(
    state: &ApiState,
    tenant: &str,
    flow: &str,
    which: &str,
) -> Result<Value, ApiError> {
    let n = match which {
        "draft" => {
            return Ok(state
                .store()
                .get_draft(tenant, flow)
                .await?
                .ok_or(ApiError::NotFound("flow"))?
                .document);
        }
        "live" => {
            let summary = state
                .store()
                .get_flow(tenant, flow)
                .await?
                .ok_or(ApiError::NotFound("flow"))?;
            summary
                .live
                .ok_or(ApiError::NotFound("live version"))?
                .version
        }
        n => parse_version(n)?,
    };
    Ok(state
        .store()
        .get_version(tenant, flow, n)
        .await?
        .ok_or(ApiError::NotFound("version"))?
        .document)
}

#[utoipa::path(get, path = "/v1/tenants/{tenant}/flows/{flow}/diff", tag = "flows", params(DiffQuery),
    responses((status = 200, body = FlowDiff)))]
pub(super) async fn diff(
    State(state): State<ApiState>,
    who: Principal,
    Path((tenant, flow)): Path<(String, String)>,
    QueryParams(q): QueryParams<DiffQuery>,
) -> Result<Json<FlowDiff>, ApiError> {
    who.tenant(&state, &tenant, Access::Read).await?;
    let from = document_at(&state, &tenant, &flow, &q.from).await?;
    let to = document_at(&state, &tenant, &flow, &q.to).await?;
    Ok(Json(super::diff::diff(&from, &to)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_non_flow_document_is_reported_with_its_path() {
        let doc = json!({"id": "f", "name": "f", "entry": "a", "nodes": {"a": {"type": "say", "txt": "typo"}}});
        let (flow, report) = check_document("f", &doc, &ValidationContext::default());
        assert!(flow.is_none());
        assert_eq!(report.errors.len(), 1);
        assert_eq!(report.errors[0].code, "invalid_document");
        assert!(
            report.errors[0].path.starts_with("/nodes/a"),
            "{}",
            report.errors[0].path
        );
        assert_eq!(report.errors[0].node.as_deref(), Some("a"));
    }

    #[test]
    fn the_document_id_must_be_the_flow_id() {
        let doc =
            json!({"id": "other", "name": "f", "entry": "a", "nodes": {"a": {"type": "hangup"}}});
        let (_, report) = check_document("f", &doc, &ValidationContext::default());
        assert_eq!(report.errors[0].code, "id_mismatch");
    }

    #[test]
    fn flow_ids() {
        assert!(valid_flow_id("support_v2-a"));
        assert!(!valid_flow_id(""));
        assert!(!valid_flow_id("a/b"));
    }
}
