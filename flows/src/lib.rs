//! Call flows: the graphs CX teams draw on the canvas and publish.
//!
//! # Layout
//! - [`model`]: the flow document (`Flow`, `Node`, the node types and their
//!   outcomes) with its JSON Schema.
//! - [`template`]: `${var}` templates in prompts, URLs and bodies.
//! - [`expr`]: condition expressions over variables.
//! - [`validate`]: the checks run before publish: errors on a node with a
//!   JSON path and a message a CX person understands, and warnings.
//! - [`interpreter`]: the sans-IO state machine that runs one call through a
//!   flow. A driver feeds it the results of the actions it asks for; it never
//!   touches the call, the network or the clock itself.
//! - [`api`]: the REST API under `/v1` (axum router, bearer keys and roles,
//!   RFC 7807 errors, OpenAPI document).
//! - [`driver`]: the thin async driver that runs the interpreter on a live
//!   call handle, with type-ahead, digit collection and transfers.
//! - [`app`]: assembles store, live table, router and API for `voxgate serve`.
//! - [`client`]: the API client behind the `voxgate flows` commands.
//! - [`demo`]: the demo tenant, flow and number seeded for `make run`.
//! - [`router`]: the SIP routing hook: DID → tenant → pinned live flow
//!   version, with the call record and its timeline saved at the end.
//! - [`http_client`]: the HTTP client of `http` nodes, with SSRF-proof
//!   name resolution.
//! - [`live`]: the in-memory live table the SIP router reads on every
//!   INVITE: DID → live flow version, swapped in right after a publish.
//! - [`store`]: where tenants, keys, flows, versions, numbers, calls and the
//!   audit log are kept (the `Store` trait and its SQLite implementation).

// Tests may start a virtual clock from the real one.
#![cfg_attr(test, allow(clippy::disallowed_methods))]

pub mod api;
pub mod app;
pub mod client;
pub mod demo;
pub mod driver;
pub mod expr;
pub mod http_client;
pub mod interpreter;
pub mod live;
pub mod model;
pub mod router;
pub mod store;
pub mod template;
pub mod validate;

pub use model::{Flow, Node, NodeKind};
