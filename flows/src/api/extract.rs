//! Extractors whose rejections are problem documents, and header helpers.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::ApiError;
use crate::store::PageRequest;

/// A JSON request body; a bad one is a 400 problem.
pub(super) struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(JsonBody(v)),
            Err(e) => Err(ApiError::BadRequest(e.body_text())),
        }
    }
}

/// Query parameters; bad ones are a 400 problem.
pub(super) struct QueryParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(QueryParams(v)),
            Err(e) => Err(ApiError::BadRequest(e.body_text())),
        }
    }
}

/// `?limit=&cursor=`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
pub(super) struct PageQuery {
    /// At most this many items (default 50, at most 500).
    pub limit: Option<u32>,
    /// The `next` of the previous page.
    pub cursor: Option<String>,
}

impl PageQuery {
    pub fn request(&self) -> PageRequest {
        PageRequest {
            limit: self.limit.unwrap_or(0),
            cursor: self.cursor.clone(),
        }
    }
}

/// The ETag of `If-Match` without quotes (or `*`), `None` when absent.
pub(super) fn if_match(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| ApiError::BadRequest("If-Match is not text".into()))?
        .trim();
    let value = value.strip_prefix("W/").unwrap_or(value);
    Ok(Some(value.trim_matches('"').to_string()))
}

/// An `ETag` header value for a stored ETag.
pub(super) fn etag_header(etag: &str) -> [(header::HeaderName, HeaderValue); 1] {
    let value = HeaderValue::from_str(&format!("\"{etag}\""))
        .unwrap_or_else(|_| HeaderValue::from_static("\"\""));
    [(header::ETAG, value)]
}
