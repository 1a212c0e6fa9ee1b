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

pub mod expr;
pub mod interpreter;
pub mod model;
pub mod template;
pub mod validate;

pub use model::{Flow, Node, NodeKind};
