//! The HTTP client behind `http` nodes.
//!
//! Host names are resolved by our own resolver, which drops private and
//! loopback addresses unless the tenant allows them. The connection then
//! goes to exactly the addresses that passed, so a name that resolves to a
//! public address at validation time and to an internal one at call time
//! (DNS rebinding) still cannot reach the operator's network.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use serde_json::Value;

use crate::interpreter::{ActionResult, HttpRequest};
use crate::model::HttpMethod;
use crate::validate::{is_private, HttpAllowList};

/// Replies larger than this are refused rather than read into memory.
pub const MAX_REPLY_BYTES: usize = 1 << 20;

struct FilteringResolver {
    allow_private: bool,
}

impl Resolve for FilteringResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_string();
        let allow_private = self.allow_private;
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = addrs
                .into_iter()
                .filter(|a| allow_private || !is_private(a.ip()))
                .collect();
            if allowed.is_empty() {
                return Err(
                    format!("{host} resolves only to private or loopback addresses").into(),
                );
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

/// Makes the requests of `http` nodes. One per process; cheap to clone.
#[derive(Clone)]
pub struct FlowHttpClient {
    strict: reqwest::Client,
    permissive: reqwest::Client,
}

#[derive(Debug, thiserror::Error)]
pub enum HttpClientError {
    #[error("cannot build the HTTP client: {0}")]
    Build(#[from] reqwest::Error),
}

impl FlowHttpClient {
    pub fn new() -> Result<Self, HttpClientError> {
        voxgate_gateway::crypto::install_crypto_provider();
        let build = |allow_private: bool| {
            reqwest::Client::builder()
                .user_agent(concat!("voxgate/", env!("CARGO_PKG_VERSION")))
                .redirect(reqwest::redirect::Policy::none())
                .connect_timeout(Duration::from_secs(5))
                .dns_resolver(Arc::new(FilteringResolver { allow_private }))
                .build()
        };
        Ok(Self {
            strict: build(false)?,
            permissive: build(true)?,
        })
    }

    /// Carries out `request` for a tenant with `allow`, and reports it the
    /// way the interpreter expects. Never fails: every problem becomes
    /// [`ActionResult::HttpFailed`].
    pub async fn execute(&self, request: &HttpRequest, allow: &HttpAllowList) -> ActionResult {
        let failed =
            |timed_out: bool, reason: String| ActionResult::HttpFailed { timed_out, reason };
        let url = match url::Url::parse(&request.url) {
            Ok(u) => u,
            Err(e) => return failed(false, format!("invalid URL {}: {e}", request.url)),
        };
        let host = match url.host() {
            Some(url::Host::Domain(d)) => d.to_string(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            None => return failed(false, "the URL has no host".into()),
        };
        if let Err(why) = allow.permits_host(&host) {
            return failed(false, why);
        }
        let client = if allow.allow_private {
            &self.permissive
        } else {
            &self.strict
        };
        let method = match request.method {
            HttpMethod::Get => reqwest::Method::GET,
            HttpMethod::Post => reqwest::Method::POST,
            HttpMethod::Put => reqwest::Method::PUT,
            HttpMethod::Patch => reqwest::Method::PATCH,
            HttpMethod::Delete => reqwest::Method::DELETE,
        };
        let mut builder = client.request(method, url).timeout(request.timeout);
        for (k, v) in &request.headers {
            builder = builder.header(k.as_str(), v.as_str());
        }
        if let Some(body) = &request.body {
            builder = builder
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone());
        }
        let send = async {
            let mut response = builder.send().await?;
            let status = response.status().as_u16();
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await? {
                if body.len() + chunk.len() > MAX_REPLY_BYTES {
                    return Ok((status, None, true));
                }
                body.extend_from_slice(&chunk);
            }
            Ok::<_, reqwest::Error>((status, serde_json::from_slice::<Value>(&body).ok(), false))
        };
        match tokio::time::timeout(request.timeout, send).await {
            Err(_) => failed(
                true,
                format!("no reply within {} ms", request.timeout.as_millis()),
            ),
            Ok(Err(e)) if e.is_timeout() => failed(
                true,
                format!("no reply within {} ms", request.timeout.as_millis()),
            ),
            Ok(Err(e)) => failed(false, describe(&e)),
            Ok(Ok((_, _, true))) => failed(
                false,
                format!("the reply is larger than {MAX_REPLY_BYTES} bytes"),
            ),
            Ok(Ok((status, body, false))) => ActionResult::HttpResponse { status, body },
        }
    }
}

fn describe(e: &reqwest::Error) -> String {
    use std::error::Error as _;
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

impl FlowHttpClient {
    /// Downloads an audio prompt (at most `max_bytes`) under the same
    /// host rules as `http` nodes.
    pub async fn fetch_audio(
        &self,
        url: &str,
        allow: &HttpAllowList,
        max_bytes: usize,
    ) -> Result<Vec<u8>, String> {
        let parsed = url::Url::parse(url).map_err(|e| format!("invalid URL {url}: {e}"))?;
        let host = parsed
            .host_str()
            .unwrap_or_default()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        allow.permits_host(&host)?;
        let client = if allow.allow_private {
            &self.permissive
        } else {
            &self.strict
        };
        let mut response = client
            .get(parsed)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .map_err(|e| describe(&e))?
            .error_for_status()
            .map_err(|e| describe(&e))?;
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| describe(&e))? {
            if body.len() + chunk.len() > max_bytes {
                return Err(format!("{url} is larger than {max_bytes} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}
