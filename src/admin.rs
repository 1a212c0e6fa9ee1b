//! `voxgate flows|numbers|tenants|keys`: thin wrappers over the `/v1` API
//! (and offline validation), printing JSON.

use std::path::Path;

use serde_json::Value;
use voxgate_flows::client::{validate_file, ApiClient, ClientError};

use crate::cli::{ApiArgs, FlowsCommand, KeysCommand, NumbersCommand, TenantsCommand};
use crate::exit;

fn print(value: &Value) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => println!("{text}"),
        Err(e) => eprintln!("voxgate: cannot print the reply: {e}"),
    }
}

pub(crate) fn finish(result: Result<Value, ClientError>) -> i32 {
    match result {
        Ok(v) => {
            print(&v);
            exit::OK
        }
        Err(ClientError::Problem {
            status,
            title,
            detail,
            body,
        }) => {
            eprintln!(
                "voxgate: {status} {title}{}",
                detail.map(|d| format!(": {d}")).unwrap_or_default()
            );
            if let Some(errors) = body.get("errors").and_then(Value::as_array) {
                for e in errors {
                    eprintln!(
                        "  {} {}: {}",
                        e.get("node").and_then(Value::as_str).unwrap_or("-"),
                        e.get("path").and_then(Value::as_str).unwrap_or(""),
                        e.get("message").and_then(Value::as_str).unwrap_or("")
                    );
                }
            }
            if status == 401
                || status == 403
                || status == 400
                || status == 422
                || status == 404
                || status == 409
                || status == 412
            {
                exit::USAGE
            } else {
                exit::SOFTWARE
            }
        }
        Err(e) => {
            eprintln!("voxgate: {e}");
            exit::UNAVAILABLE
        }
    }
}

/// `voxgate flows validate FILE`: exit 0 when valid, 1 when it has errors.
pub fn validate(file: &Path, allow_hosts: &[String], allow_private: bool) -> i32 {
    match validate_file(file, allow_hosts, allow_private) {
        Ok((_, report)) => {
            for e in &report.errors {
                eprintln!(
                    "error   {} {}: {}",
                    e.node.as_deref().unwrap_or("-"),
                    e.path,
                    e.message
                );
            }
            for w in &report.warnings {
                eprintln!(
                    "warning {} {}: {}",
                    w.node.as_deref().unwrap_or("-"),
                    w.path,
                    w.message
                );
            }
            print(&serde_json::to_value(&report).unwrap_or(Value::Null));
            if report.is_valid() {
                exit::OK
            } else {
                1
            }
        }
        Err(e) => {
            eprintln!("voxgate: {e}");
            exit::USAGE
        }
    }
}

pub(crate) fn client(api: &ApiArgs) -> ApiClient {
    ApiClient::new(&api.api, &api.key)
}

pub async fn flows(cmd: FlowsCommand) -> i32 {
    match cmd {
        FlowsCommand::Validate {
            file,
            allow_hosts,
            allow_private,
        } => validate(&file, &allow_hosts, allow_private),
        FlowsCommand::Push { file, tenant, api } => {
            let document = match std::fs::read_to_string(&file)
                .map_err(|e| e.to_string())
                .and_then(|t| serde_json::from_str::<Value>(&t).map_err(|e| e.to_string()))
            {
                Ok(d) => d,
                Err(e) => {
                    eprintln!("voxgate: {}: {e}", file.display());
                    return exit::USAGE;
                }
            };
            finish(client(&api).push_flow(&tenant, &document).await)
        }
        FlowsCommand::Publish {
            flow,
            tenant,
            comment,
            api,
        } => finish(client(&api).publish(&tenant, &flow, &comment).await),
        FlowsCommand::Rollback {
            flow,
            tenant,
            version,
            api,
        } => finish(client(&api).rollback(&tenant, &flow, version).await),
    }
}

pub async fn numbers(cmd: NumbersCommand) -> i32 {
    match cmd {
        NumbersCommand::Set {
            did,
            tenant,
            flow,
            api,
        } => finish(client(&api).set_number(&tenant, &did, &flow).await),
    }
}

pub async fn tenants(cmd: TenantsCommand) -> i32 {
    match cmd {
        TenantsCommand::Create { id, name, api } => {
            finish(client(&api).create_tenant(&id, &name).await)
        }
    }
}

pub async fn keys(cmd: KeysCommand) -> i32 {
    match cmd {
        KeysCommand::Create {
            role,
            tenant,
            label,
            api,
        } => finish(
            client(&api)
                .create_key(&role, tenant.as_deref(), &label)
                .await,
        ),
    }
}
