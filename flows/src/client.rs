//! A client of the `/v1` API, behind the `voxgate
//! flows|numbers|tenants|keys|policy` commands. `validate_file` works
//! offline.

use std::path::Path;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::model::Flow;
use crate::validate::{validate, HttpAllowList, Report, ValidationContext};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot read {path}: {source}")]
    File {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a flow document: {source}")]
    NotAFlow {
        path: String,
        source: serde_json::Error,
    },
    #[error("cannot reach the API at {base}: {source}")]
    Unreachable {
        base: String,
        source: reqwest::Error,
    },
    #[error("{status}: {title}{}", detail.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    Problem {
        status: u16,
        title: String,
        detail: Option<String>,
        body: Value,
    },
    #[error("the API answered {status} with a body that is not JSON")]
    BadReply { status: u16 },
}

/// Reads and validates a flow file without any server. The allow-list is
/// empty, so `http` nodes are reported unless `allow_hosts` lists theirs.
pub fn validate_file(
    path: &Path,
    allow_hosts: &[String],
    allow_private: bool,
) -> Result<(Flow, Report), ClientError> {
    let text = std::fs::read_to_string(path).map_err(|source| ClientError::File {
        path: path.display().to_string(),
        source,
    })?;
    let flow: Flow = serde_json::from_str(&text).map_err(|source| ClientError::NotAFlow {
        path: path.display().to_string(),
        source,
    })?;
    let ctx = ValidationContext {
        http: HttpAllowList {
            hosts: allow_hosts.to_vec(),
            allow_private,
        },
    };
    let report = validate(&flow, &ctx);
    Ok((flow, report))
}

/// An authenticated API client.
pub struct ApiClient {
    base: String,
    key: String,
    http: reqwest::Client,
}

impl ApiClient {
    pub fn new(base: &str, key: &str) -> Self {
        voxgate_gateway::crypto::install_crypto_provider();
        Self {
            base: base.trim_end_matches('/').to_string(),
            key: key.to_string(),
            http: reqwest::Client::new(),
        }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        if_match: Option<&str>,
    ) -> Result<(Value, Option<String>), ClientError> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.key);
        if let Some(b) = body {
            req = req.json(b);
        }
        if let Some(etag) = if_match {
            req = req.header(reqwest::header::IF_MATCH, etag);
        }
        let resp = req
            .send()
            .await
            .map_err(|source| ClientError::Unreachable {
                base: self.base.clone(),
                source,
            })?;
        let status = resp.status();
        let etag = resp
            .headers()
            .get(reqwest::header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(String::from);
        let bytes = resp
            .bytes()
            .await
            .map_err(|source| ClientError::Unreachable {
                base: self.base.clone(),
                source,
            })?;
        let value: Value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).map_err(|_| ClientError::BadReply {
                status: status.as_u16(),
            })?
        };
        if status.is_success() {
            Ok((value, etag))
        } else {
            Err(problem(status, value))
        }
    }

    /// Creates the flow's draft, or replaces it (with the ETag just read).
    pub async fn push_flow(&self, tenant: &str, document: &Value) -> Result<Value, ClientError> {
        let id = document
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let path = format!("/v1/tenants/{tenant}/flows/{id}");
        match self.call(Method::GET, &path, None, None).await {
            Ok((_, etag)) => Ok(self
                .call(Method::PUT, &path, Some(document), etag.as_deref())
                .await?
                .0),
            Err(ClientError::Problem { status: 404, .. }) => Ok(self
                .call(
                    Method::POST,
                    &format!("/v1/tenants/{tenant}/flows"),
                    Some(document),
                    None,
                )
                .await?
                .0),
            Err(e) => Err(e),
        }
    }

    pub async fn publish(
        &self,
        tenant: &str,
        flow: &str,
        comment: &str,
    ) -> Result<Value, ClientError> {
        let body = json!({"comment": comment});
        Ok(self
            .call(
                Method::POST,
                &format!("/v1/tenants/{tenant}/flows/{flow}/publish"),
                Some(&body),
                None,
            )
            .await?
            .0)
    }

    pub async fn rollback(
        &self,
        tenant: &str,
        flow: &str,
        version: u32,
    ) -> Result<Value, ClientError> {
        let body = json!({"version": version});
        Ok(self
            .call(
                Method::POST,
                &format!("/v1/tenants/{tenant}/flows/{flow}/rollback"),
                Some(&body),
                None,
            )
            .await?
            .0)
    }

    pub async fn set_number(
        &self,
        tenant: &str,
        did: &str,
        flow: &str,
    ) -> Result<Value, ClientError> {
        let body = json!({"flow_id": flow});
        Ok(self
            .call(
                Method::PUT,
                &format!("/v1/tenants/{tenant}/numbers/{did}"),
                Some(&body),
                None,
            )
            .await?
            .0)
    }

    pub async fn create_tenant(&self, id: &str, name: &str) -> Result<Value, ClientError> {
        let body = json!({"id": id, "name": name});
        Ok(self
            .call(Method::POST, "/v1/tenants", Some(&body), None)
            .await?
            .0)
    }

    pub async fn create_key(
        &self,
        role: &str,
        tenant: Option<&str>,
        label: &str,
    ) -> Result<Value, ClientError> {
        let body = json!({"role": role, "tenant": tenant, "label": label});
        Ok(self
            .call(Method::POST, "/v1/keys", Some(&body), None)
            .await?
            .0)
    }
}

/// NOC policies and AI health.
impl ApiClient {
    pub async fn get_policy(&self, tenant: &str) -> Result<Value, ClientError> {
        let path = format!("/v1/tenants/{tenant}/policy");
        Ok(self.call(Method::GET, &path, None, None).await?.0)
    }

    /// Replaces the tenant's policy; with `if_match`, only if it is still
    /// the one with that ETag.
    pub async fn put_policy(
        &self,
        tenant: &str,
        policy: &Value,
        if_match: Option<&str>,
    ) -> Result<Value, ClientError> {
        let path = format!("/v1/tenants/{tenant}/policy");
        let etag = if_match.map(|e| format!("\"{}\"", e.trim_matches('"')));
        Ok(self
            .call(Method::PUT, &path, Some(policy), etag.as_deref())
            .await?
            .0)
    }

    pub async fn policy_audit(&self, tenant: &str) -> Result<Value, ClientError> {
        let path = format!("/v1/tenants/{tenant}/policy/audit");
        Ok(self.call(Method::GET, &path, None, None).await?.0)
    }

    pub async fn tenant_health(&self, tenant: &str) -> Result<Value, ClientError> {
        let path = format!("/v1/tenants/{tenant}/health");
        Ok(self.call(Method::GET, &path, None, None).await?.0)
    }
}

fn problem(status: StatusCode, body: Value) -> ClientError {
    let text = |k: &str| body.get(k).and_then(Value::as_str).map(String::from);
    ClientError::Problem {
        status: status.as_u16(),
        title: text("title")
            .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_string()),
        detail: text("detail"),
        body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validate_file_reports_without_a_server() {
        let dir = std::env::temp_dir().join(format!("voxgate-client-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("f.json");
        std::fs::write(&path, r#"{"id":"f","name":"F","entry":"a","nodes":{"a":{"type":"say","text":"hi","edges":{"next":"b"}}}}"#).expect("write");
        let (_, report) = validate_file(&path, &[], false).expect("reads");
        assert_eq!(report.errors.len(), 1);
        assert_eq!(report.errors[0].code, "missing_target");
        std::fs::write(&path, "{not json").expect("write");
        assert!(matches!(
            validate_file(&path, &[], false),
            Err(ClientError::NotAFlow { .. })
        ));
        assert!(matches!(
            validate_file(&dir.join("missing.json"), &[], false),
            Err(ClientError::File { .. })
        ));
    }
}
