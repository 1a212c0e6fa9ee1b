//! API errors, answered as RFC 7807 `application/problem+json`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::store::StoreError;
use crate::validate::{Issue, Report};

/// An RFC 7807 problem document.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// A URN naming the kind of problem, such as `urn:voxgate:problem:not-found`.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Validation errors, each with a JSON path (and a node for flows).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub errors: Option<Vec<Issue>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub warnings: Option<Vec<Issue>>,
}

/// Why an API request failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("missing or invalid API key")]
    Unauthorized,
    #[error("this key's role may not do that")]
    Forbidden,
    /// Also answered for another tenant's objects, whatever the id.
    #[error("no such {0}")]
    NotFound(&'static str),
    #[error("{0}")]
    Conflict(String),
    /// The draft changed since the client read it.
    #[error("someone else changed this flow")]
    EtagMismatch { current: String },
    #[error("If-Match is required")]
    PreconditionRequired,
    /// The request is well-formed JSON but not acceptable.
    #[error("{0}")]
    Unprocessable(String),
    /// The flow does not pass validation.
    #[error("the flow has errors")]
    Invalid(Report),
    /// The NOC policy document does not pass the orchestrator's checks.
    #[error("the policy has errors")]
    InvalidPolicy(Vec<Issue>),
    /// The policy changed since the client read it.
    #[error("someone else changed this policy")]
    PolicyChanged { current: String },
    /// `voxgate serve` runs without the AI runtime (no NOC hooks).
    #[error("the AI runtime is not running in this process")]
    NocUnavailable,
    /// The request could not be read (bad JSON, bad query, bad path).
    #[error("{0}")]
    BadRequest(String),
    #[error("storage failed: {0}")]
    Store(StoreError),
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => ApiError::NotFound("object"),
            StoreError::AlreadyExists => {
                ApiError::Conflict("an object with this id already exists".into())
            }
            StoreError::EtagMismatch { current } => ApiError::EtagMismatch { current },
            StoreError::NumberTaken => {
                ApiError::Conflict("this number belongs to another tenant".into())
            }
            StoreError::FlowInUse { numbers } => ApiError::Conflict(format!(
                "numbers still route to this flow: {}",
                numbers.join(", ")
            )),
            other => ApiError::Store(other),
        }
    }
}

impl ApiError {
    fn parts(&self) -> (StatusCode, &'static str, &'static str) {
        match self {
            ApiError::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "Missing or invalid API key",
            ),
            ApiError::Forbidden => (
                StatusCode::FORBIDDEN,
                "forbidden",
                "Not allowed for this role",
            ),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not-found", "Not found"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict", "Conflict"),
            ApiError::EtagMismatch { .. } => (
                StatusCode::PRECONDITION_FAILED,
                "etag-mismatch",
                "Someone else changed this flow",
            ),
            ApiError::PreconditionRequired => (
                StatusCode::PRECONDITION_REQUIRED,
                "if-match-required",
                "If-Match is required",
            ),
            ApiError::Unprocessable(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "unprocessable",
                "Not acceptable",
            ),
            ApiError::Invalid(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-flow",
                "The flow has errors",
            ),
            ApiError::InvalidPolicy(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-policy",
                "The policy has errors",
            ),
            ApiError::PolicyChanged { .. } => (
                StatusCode::PRECONDITION_FAILED,
                "etag-mismatch",
                "Someone else changed this policy",
            ),
            ApiError::NocUnavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "ai-runtime-unavailable",
                "AI runtime unavailable",
            ),
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad-request", "Bad request"),
            ApiError::Store(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Internal error",
            ),
        }
    }

    /// The problem document for this error.
    pub fn problem(&self) -> Problem {
        let (status, kind, title) = self.parts();
        let detail = match self {
            ApiError::EtagMismatch { .. } => {
                Some("Someone else changed this flow since you opened it. Reload it, then make your change again.".into())
            }
            ApiError::PreconditionRequired => {
                Some("Send the ETag you read in an If-Match header, so that nobody's change is lost.".into())
            }
            ApiError::Invalid(report) => Some(format!("The flow has {} error(s); fix them and publish again.", report.errors.len())),
            ApiError::InvalidPolicy(issues) => Some(format!("The policy has {} error(s); nothing was changed.", issues.len())),
            ApiError::PolicyChanged { .. } => {
                Some("Someone else changed this policy since you read it. Read it again, then make your change again.".into())
            }
            // Do not leak storage details to clients; they are logged.
            ApiError::Store(_) => Some("The request could not be completed; try again.".into()),
            other => Some(other.to_string()),
        };
        let (errors, warnings) = match self {
            ApiError::Invalid(report) => {
                (Some(report.errors.clone()), Some(report.warnings.clone()))
            }
            ApiError::InvalidPolicy(issues) => (Some(issues.clone()), None),
            _ => (None, None),
        };
        Problem {
            kind: format!("urn:voxgate:problem:{kind}"),
            title: title.into(),
            status: status.as_u16(),
            detail,
            errors,
            warnings,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Store(e) = &self {
            tracing::error!(error = %e, "flows API storage error");
        }
        let problem = self.problem();
        let status =
            StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        match &self {
            ApiError::Unauthorized => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            ApiError::EtagMismatch { current } | ApiError::PolicyChanged { current } => {
                if let Ok(v) = HeaderValue::from_str(&format!("\"{current}\"")) {
                    headers.insert(header::ETAG, v);
                }
            }
            _ => {}
        }
        response
    }
}
