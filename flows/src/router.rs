//! The SIP routing hook filled with published flows.
//!
//! On every INVITE the router looks the DID up in the [`LiveTable`]. The
//! handler it returns holds the flow version as it was at that moment, so
//! a publish a millisecond later changes the next call, never this one.

use std::sync::Arc;

use voxgate_gateway::call::{
    BoxFuture, CallHandle, CallHandler, CallRouter, IncomingCall, RouteDecision,
};
use voxgate_gateway::clock;

use crate::driver::{self, FlowEnv, TenantRuntime};
use crate::interpreter::{CallContext, Interpreter};
use crate::live::{LiveRoute, LiveTable, Route};
use crate::store::{CallRecord, Store};

/// Routes DIDs to their tenant's live flow.
pub struct FlowRouter {
    live: Arc<LiveTable>,
    store: Arc<dyn Store>,
    env: FlowEnv,
    /// Answers DIDs that no tenant owns (the built-in demo), when set;
    /// otherwise they get 404.
    unknown: Option<Arc<dyn CallRouter>>,
}

impl FlowRouter {
    pub fn new(
        live: Arc<LiveTable>,
        store: Arc<dyn Store>,
        env: FlowEnv,
        unknown: Option<Arc<dyn CallRouter>>,
    ) -> Self {
        Self {
            live,
            store,
            env,
            unknown,
        }
    }
}

impl CallRouter for FlowRouter {
    fn route(&self, call: &IncomingCall) -> RouteDecision {
        match self.live.lookup(&call.did) {
            Some(Route::Live(route)) => RouteDecision::Answer(Arc::new(FlowCall {
                route,
                store: self.store.clone(),
                env: self.env.clone(),
            })),
            Some(Route::Unpublished { tenant, flow_id }) => {
                tracing::warn!(did = %call.did, %tenant, %flow_id, "number routed to a flow with no published version; answering 480");
                RouteDecision::Reject {
                    status: 480,
                    reason: "Temporarily Unavailable".into(),
                }
            }
            None => match &self.unknown {
                Some(router) => router.route(call),
                None => {
                    tracing::info!(did = %call.did, "no tenant owns this number; answering 404");
                    RouteDecision::Reject {
                        status: 404,
                        reason: "Not Found".into(),
                    }
                }
            },
        }
    }
}

/// Runs one call on one pinned flow version.
struct FlowCall {
    route: LiveRoute,
    store: Arc<dyn Store>,
    env: FlowEnv,
}

fn unix_ms(at: std::time::SystemTime) -> i64 {
    at.duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The built-in time variables, in UTC.
fn time_context(at: std::time::SystemTime) -> (String, u8, String) {
    let ts = jiff::Timestamp::try_from(at).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    let zoned = ts.to_zoned_datetime(jiff::tz::TimeZone::UTC);
    let weekday = match zoned.weekday() {
        jiff::civil::Weekday::Monday => "mon",
        jiff::civil::Weekday::Tuesday => "tue",
        jiff::civil::Weekday::Wednesday => "wed",
        jiff::civil::Weekday::Thursday => "thu",
        jiff::civil::Weekday::Friday => "fri",
        jiff::civil::Weekday::Saturday => "sat",
        jiff::civil::Weekday::Sunday => "sun",
    };
    (
        ts.to_string(),
        u8::try_from(zoned.hour()).unwrap_or(0),
        weekday.to_string(),
    )
}

impl CallHandler for FlowCall {
    fn handle(&self, mut call: CallHandle) -> BoxFuture<'static, ()> {
        let route = self.route.clone();
        let store = self.store.clone();
        let env = self.env.clone();
        Box::pin(async move {
            let started = clock::wall_now();
            let (time, hour, weekday) = time_context(started);
            let info = call.info().clone();
            let ctx = CallContext {
                caller_id: info.incoming.caller_id.clone(),
                did: info.incoming.did.clone(),
                call_id: info.voxgate_id.clone(),
                tenant: route.tenant.clone(),
                time,
                hour,
                weekday,
            };
            let tenant = TenantRuntime {
                tenant: route.tenant.clone(),
                flow_id: route.flow_id.clone(),
                version: route.version,
                http: route.settings.http.clone(),
            };
            let mut record = CallRecord {
                tenant: route.tenant.clone(),
                id: info.voxgate_id.clone(),
                did: info.incoming.did.clone(),
                caller: info.incoming.caller_id.clone(),
                flow_id: route.flow_id.clone(),
                version: route.version,
                started_at: unix_ms(started),
                ended_at: None,
                disposition: None,
                timeline: serde_json::Value::Array(Vec::new()),
            };
            if let Err(e) = store.save_call(&record).await {
                tracing::error!(call = %record.id, error = %e, "cannot record the call start");
            }
            tracing::info!(call = %record.id, tenant = %route.tenant, flow = %route.flow_id, version = route.version, "call entered flow");
            let mut interp = Interpreter::new(
                route.flow.clone(),
                &ctx,
                route.settings.fallback.clone(),
                clock::now(),
            );
            driver::run(&mut call, &mut interp, &env, &tenant, |_| {}).await;
            record.ended_at = Some(unix_ms(clock::wall_now()));
            record.disposition = interp
                .finished()
                .and_then(|d| serde_json::to_value(d).ok())
                .and_then(|v| v.as_str().map(String::from));
            record.timeline = serde_json::to_value(interp.timeline()).unwrap_or_default();
            if let Err(e) = store.save_call(&record).await {
                tracing::error!(call = %record.id, error = %e, "cannot record the call end");
            }
            call.hangup();
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_variables_are_utc() {
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_764_669_600); // 2025-12-02T10:00:00Z, a Tuesday
        let (time, hour, weekday) = time_context(at);
        assert_eq!(time, "2025-12-02T10:00:00Z");
        assert_eq!(hour, 10);
        assert_eq!(weekday, "tue");
    }
}
