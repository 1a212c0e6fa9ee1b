//! The live table: which flow version answers each DID, read by the SIP
//! router on every INVITE.
//!
//! Reads are lock-free (`arc-swap`): a lookup loads three immutable maps
//! and clones a few `Arc`s. Writers (publish, rollback, number and
//! settings changes, right after their transaction commits) copy the map
//! they change and swap it in, so the next INVITE sees the change with no
//! restart. Numbers, flows and tenant settings are kept in separate maps
//! so that a publish copies only the flow map, however many DIDs there
//! are. Writers are serialised by a mutex so two of them cannot lose each
//! other's change; callers that must also order the store writes (two
//! publishes of one flow) hold their own lock around commit + update.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use crate::model::Flow;
use crate::store::{LiveState, Store, StoreError, TenantSettings};

/// What the router does with a DID.
#[derive(Debug, Clone, PartialEq)]
pub enum Route {
    /// Run this flow version.
    Live(LiveRoute),
    /// The DID is routed to a flow that has no live version: answer 480.
    Unpublished { tenant: String, flow_id: String },
}

/// A DID's live flow version, with the tenant's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveRoute {
    pub tenant: String,
    pub flow_id: String,
    pub version: u32,
    pub flow: Arc<Flow>,
    pub settings: Arc<TenantSettings>,
}

#[derive(Debug, Clone)]
struct LiveFlow {
    version: u32,
    flow: Arc<Flow>,
}

type FlowKey = (Arc<str>, Arc<str>);

/// The in-memory routing table. Cheap to share behind an `Arc`.
#[derive(Debug, Default)]
pub struct LiveTable {
    numbers: ArcSwap<HashMap<Arc<str>, FlowKey>>,
    flows: ArcSwap<HashMap<FlowKey, LiveFlow>>,
    tenants: ArcSwap<HashMap<Arc<str>, Arc<TenantSettings>>>,
    writer: Mutex<()>,
}

/// A DID in the form the table keys on: an optional leading `+` and
/// digits, with spaces, dashes, dots and parentheses dropped. `None` when
/// it is not a phone number.
pub fn normalize_did(raw: &str) -> Option<String> {
    let raw = raw.trim();
    let (plus, rest) = match raw.strip_prefix('+') {
        Some(rest) => ("+", rest),
        None => ("", raw),
    };
    let mut out = String::with_capacity(raw.len());
    out.push_str(plus);
    for c in rest.chars() {
        match c {
            '0'..='9' => out.push(c),
            ' ' | '-' | '.' | '(' | ')' => {}
            _ => return None,
        }
    }
    let digits = out.len() - plus.len();
    (1..=32).contains(&digits).then_some(out)
}

impl LiveTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds the table from what the store holds. A stored live version
    /// that no longer reads as a flow is logged and left out (its DIDs
    /// answer as unpublished) rather than stopping the gateway.
    pub fn from_state(state: LiveState) -> Self {
        let tenants = state
            .tenants
            .into_iter()
            .map(|(id, s)| (Arc::from(id), Arc::new(s)))
            .collect();
        let numbers = state
            .numbers
            .into_iter()
            .map(|n| {
                (
                    Arc::from(n.did),
                    (Arc::from(n.tenant), Arc::from(n.flow_id)),
                )
            })
            .collect();
        let mut flows = HashMap::new();
        for f in state.flows {
            match serde_json::from_value::<Flow>(f.document) {
                Ok(flow) => {
                    flows.insert(
                        (Arc::from(f.tenant), Arc::from(f.flow_id)),
                        LiveFlow {
                            version: f.version,
                            flow: Arc::new(flow),
                        },
                    );
                }
                Err(e) => {
                    tracing::error!(tenant = %f.tenant, flow = %f.flow_id, version = f.version, error = %e,
                    "live flow version does not read as a flow; its numbers answer as unpublished")
                }
            }
        }
        Self {
            numbers: ArcSwap::from_pointee(numbers),
            flows: ArcSwap::from_pointee(flows),
            tenants: ArcSwap::from_pointee(tenants),
            writer: Mutex::new(()),
        }
    }

    /// Loads the table from the store, at start.
    pub async fn load(store: &dyn Store) -> Result<Self, StoreError> {
        Ok(Self::from_state(store.load_live().await?))
    }

    /// The route for a DID (in any form [`normalize_did`] accepts), or
    /// `None` when no tenant has it.
    pub fn lookup(&self, did: &str) -> Option<Route> {
        let numbers = self.numbers.load();
        let (tenant, flow_id) = match numbers.get(did) {
            Some(hit) => hit.clone(),
            None => numbers.get(normalize_did(did)?.as_str())?.clone(),
        };
        let flows = self.flows.load();
        let Some(live) = flows.get(&(tenant.clone(), flow_id.clone())) else {
            return Some(Route::Unpublished {
                tenant: tenant.to_string(),
                flow_id: flow_id.to_string(),
            });
        };
        let settings = self
            .tenants
            .load()
            .get(&tenant)
            .cloned()
            .unwrap_or_default();
        Some(Route::Live(LiveRoute {
            tenant: tenant.to_string(),
            flow_id: flow_id.to_string(),
            version: live.version,
            flow: live.flow.clone(),
            settings,
        }))
    }

    /// The live version of a flow, if it has one.
    pub fn live_version(&self, tenant: &str, flow_id: &str) -> Option<u32> {
        self.flows
            .load()
            .get(&(Arc::from(tenant), Arc::from(flow_id)))
            .map(|f| f.version)
    }

    fn write<T: Clone>(&self, map: &ArcSwap<T>, change: impl FnOnce(&mut T)) {
        // A poisoned lock only means another writer panicked mid-copy; the
        // maps themselves are never left half-written.
        let _guard = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let mut copy = T::clone(&map.load());
        change(&mut copy);
        map.store(Arc::new(copy));
    }

    /// Makes `version` the live version of a flow (publish or rollback).
    pub fn set_live(&self, tenant: &str, flow_id: &str, version: u32, flow: Arc<Flow>) {
        self.write(&self.flows, |m| {
            m.insert(
                (Arc::from(tenant), Arc::from(flow_id)),
                LiveFlow { version, flow },
            );
        });
    }

    /// Forgets a deleted flow.
    pub fn remove_flow(&self, tenant: &str, flow_id: &str) {
        self.write(&self.flows, |m| {
            m.remove(&(Arc::from(tenant), Arc::from(flow_id)));
        });
    }

    /// Routes a (normalised) DID to a flow of a tenant.
    pub fn set_number(&self, did: &str, tenant: &str, flow_id: &str) {
        self.write(&self.numbers, |m| {
            m.insert(Arc::from(did), (Arc::from(tenant), Arc::from(flow_id)));
        });
    }

    pub fn remove_number(&self, did: &str) {
        self.write(&self.numbers, |m| {
            m.remove(did);
        });
    }

    /// Sets a tenant's settings; calls already running keep the old ones.
    pub fn set_tenant(&self, tenant: &str, settings: TenantSettings) {
        self.write(&self.tenants, |m| {
            m.insert(Arc::from(tenant), Arc::new(settings));
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{LiveFlowRecord, Number};

    fn flow(id: &str, text: &str) -> serde_json::Value {
        serde_json::json!({"id": id, "name": id, "entry": "a", "nodes": {
            "a": {"type": "say", "text": text, "edges": {"next": "b"}}, "b": {"type": "hangup"}}})
    }

    fn number(did: &str, tenant: &str, flow_id: &str) -> Number {
        Number {
            did: did.into(),
            tenant: tenant.into(),
            flow_id: flow_id.into(),
            updated_by: "t".into(),
            updated_at: 0,
        }
    }

    fn table() -> LiveTable {
        LiveTable::from_state(LiveState {
            tenants: vec![("acme".into(), TenantSettings::default())],
            numbers: vec![
                number("+3311", "acme", "support"),
                number("+3322", "acme", "draft-only"),
            ],
            flows: vec![
                LiveFlowRecord {
                    tenant: "acme".into(),
                    flow_id: "support".into(),
                    version: 3,
                    document: flow("support", "v3"),
                },
                LiveFlowRecord {
                    tenant: "acme".into(),
                    flow_id: "broken".into(),
                    version: 1,
                    document: serde_json::json!({"x": 1}),
                },
            ],
        })
    }

    #[test]
    fn routes_live_unpublished_and_unknown_numbers() {
        let t = table();
        match t.lookup("+3311") {
            Some(Route::Live(r)) => {
                assert_eq!(
                    (r.tenant.as_str(), r.flow_id.as_str(), r.version),
                    ("acme", "support", 3)
                );
                assert_eq!(r.flow.id, "support");
            }
            other => panic!("expected live, got {other:?}"),
        }
        assert_eq!(
            t.lookup("+3322"),
            Some(Route::Unpublished {
                tenant: "acme".into(),
                flow_id: "draft-only".into()
            })
        );
        assert_eq!(t.lookup("+3399"), None);
        assert_eq!(t.lookup("sip:evil"), None);
        assert_eq!(
            t.live_version("acme", "broken"),
            None,
            "an unreadable version is left out"
        );
    }

    #[test]
    fn lookups_accept_formatted_numbers() {
        let t = table();
        assert!(matches!(t.lookup(" +33-1.1 "), Some(Route::Live(_))));
    }

    #[test]
    fn a_publish_is_seen_by_the_next_lookup() {
        let t = table();
        let v4: Flow = serde_json::from_value(flow("support", "v4")).expect("flow");
        t.set_live("acme", "support", 4, Arc::new(v4));
        let Some(Route::Live(r)) = t.lookup("+3311") else {
            panic!("not live")
        };
        assert_eq!(r.version, 4);
        t.remove_number("+3311");
        assert_eq!(t.lookup("+3311"), None);
        t.set_number("+3311", "acme", "support");
        t.remove_flow("acme", "support");
        assert!(matches!(t.lookup("+3311"), Some(Route::Unpublished { .. })));
    }

    #[test]
    fn normalizes_dids() {
        assert_eq!(
            normalize_did("+33 (1) 23-45.67").as_deref(),
            Some("+331234567")
        );
        assert_eq!(normalize_did("0800").as_deref(), Some("0800"));
        for bad in ["", "+", "abc", "12a", "++1", &"1".repeat(33)] {
            assert_eq!(normalize_did(bad), None, "{bad}");
        }
    }
}
