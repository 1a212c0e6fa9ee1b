//! `voxgate policy get|set|audit|health`: a tenant's NOC policy over the
//! `/v1` API, printing JSON.

use std::io::Read;
use std::path::Path;

use serde_json::Value;

use crate::admin::{client, finish};
use crate::cli::PolicyCommand;
use crate::exit;

/// Reads FILE (`-` or none: stdin) as JSON.
fn read_json(file: Option<&Path>) -> Result<Value, String> {
    let (name, text) = match file {
        Some(p) if p != Path::new("-") => (
            p.display().to_string(),
            std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?,
        ),
        _ => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| format!("stdin: {e}"))?;
            ("stdin".to_string(), text)
        }
    };
    serde_json::from_str(&text).map_err(|e| format!("{name} is not JSON: {e}"))
}

/// The document to send and the ETag to send with it: a `policy get`
/// output carries both (`policy`, `etag`); anything else is the document.
fn document_and_etag(input: Value, if_match: Option<String>) -> (Value, Option<String>) {
    let is_view = input.get("policy").is_some_and(Value::is_object)
        && input.get("etag").is_some_and(Value::is_string);
    if !is_view {
        return (input, if_match);
    }
    let etag = if_match.or_else(|| input["etag"].as_str().map(String::from));
    (input["policy"].clone(), etag)
}

pub async fn run(cmd: PolicyCommand) -> i32 {
    match cmd {
        PolicyCommand::Get { tenant, api } => finish(client(&api).get_policy(&tenant).await),
        PolicyCommand::Set {
            tenant,
            file,
            if_match,
            api,
        } => {
            let input = match read_json(file.as_deref()) {
                Ok(v) => v,
                Err(e) => {
                    eprintln!("voxgate: {e}");
                    return exit::USAGE;
                }
            };
            let (document, etag) = document_and_etag(input, if_match);
            finish(
                client(&api)
                    .put_policy(&tenant, &document, etag.as_deref())
                    .await,
            )
        }
        PolicyCommand::Audit { tenant, api } => finish(client(&api).policy_audit(&tenant).await),
        PolicyCommand::Health { tenant, api } => finish(client(&api).tenant_health(&tenant).await),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_get_output_is_sent_as_its_policy_with_its_etag() {
        let view = json!({"tenant": "acme", "etag": "abc", "version": 2,
            "policy": {"limits": {"burst": 3}}});
        assert_eq!(
            document_and_etag(view.clone(), None),
            (json!({"limits": {"burst": 3}}), Some("abc".to_string()))
        );
        // An explicit --if-match wins.
        assert_eq!(
            document_and_etag(view, Some("xyz".into())).1.as_deref(),
            Some("xyz")
        );
        // A bare document goes as it is (an unknown `policy` field in it
        // would be refused by the server, not guessed at here).
        let bare = json!({"limits": {"burst": 3}});
        assert_eq!(document_and_etag(bare.clone(), None), (bare, None));
    }
}
