//! A structural diff of two flow documents: which nodes were added,
//! removed or changed (and which of their fields), and whether the entry
//! or name changed. It works on JSON, so a draft that is not yet a valid
//! flow can still be compared.

use std::collections::BTreeSet;

use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

/// Fields that only move or label a node on the canvas.
const LAYOUT_FIELDS: &[&str] = &["position", "label"];

/// A value before and after.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Change {
    #[schema(value_type = Object)]
    pub from: Value,
    #[schema(value_type = Object)]
    pub to: Value,
}

/// How one node changed.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct NodeChange {
    pub id: String,
    /// The node's top-level fields that differ, such as `text` or `edges`.
    pub fields: Vec<String>,
    /// Outcome names whose edge was added, removed or points elsewhere.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub edges: Vec<String>,
    /// Only the canvas position or label changed: calls behave the same.
    pub layout_only: bool,
}

/// The difference between two flow documents.
#[derive(Debug, Clone, Default, PartialEq, Serialize, ToSchema)]
pub struct FlowDiff {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entry: Option<Change>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<Change>,
    pub nodes_added: Vec<String>,
    pub nodes_removed: Vec<String>,
    pub nodes_changed: Vec<NodeChange>,
}

impl FlowDiff {
    /// Whether calls could behave differently (anything beyond layout).
    pub fn changes_behaviour(&self) -> bool {
        self.entry.is_some()
            || !self.nodes_added.is_empty()
            || !self.nodes_removed.is_empty()
            || self.nodes_changed.iter().any(|c| !c.layout_only)
    }
}

fn field_change(from: &Value, to: &Value, key: &str) -> Option<Change> {
    let a = from.get(key).cloned().unwrap_or(Value::Null);
    let b = to.get(key).cloned().unwrap_or(Value::Null);
    (a != b).then_some(Change { from: a, to: b })
}

fn object(v: Option<&Value>) -> Map<String, Value> {
    v.and_then(Value::as_object).cloned().unwrap_or_default()
}

/// Compares two flow documents.
pub fn diff(from: &Value, to: &Value) -> FlowDiff {
    let a = object(from.get("nodes"));
    let b = object(to.get("nodes"));
    let mut out = FlowDiff {
        entry: field_change(from, to, "entry"),
        name: field_change(from, to, "name"),
        nodes_added: b.keys().filter(|k| !a.contains_key(*k)).cloned().collect(),
        nodes_removed: a.keys().filter(|k| !b.contains_key(*k)).cloned().collect(),
        nodes_changed: Vec::new(),
    };
    for (id, before) in &a {
        let Some(after) = b.get(id) else { continue };
        if before == after {
            continue;
        }
        let (x, y) = (object(Some(before)), object(Some(after)));
        let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
        let fields: Vec<String> = keys
            .into_iter()
            .filter(|k| x.get(*k) != y.get(*k))
            .cloned()
            .collect();
        let (ex, ey) = (object(x.get("edges")), object(y.get("edges")));
        let outcomes: BTreeSet<&String> = ex.keys().chain(ey.keys()).collect();
        let edges = outcomes
            .into_iter()
            .filter(|o| ex.get(*o) != ey.get(*o))
            .cloned()
            .collect();
        let layout_only = fields.iter().all(|f| LAYOUT_FIELDS.contains(&f.as_str()));
        out.nodes_changed.push(NodeChange {
            id: id.clone(),
            fields,
            edges,
            layout_only,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_added_removed_and_changed_nodes() {
        let a = json!({"id": "f", "name": "F", "entry": "hello", "nodes": {
            "hello": {"type": "say", "text": "Hi", "edges": {"next": "bye"}},
            "old": {"type": "hangup"},
            "bye": {"type": "hangup", "position": {"x": 1, "y": 1}}}});
        let b = json!({"id": "f", "name": "F", "entry": "menu", "nodes": {
            "hello": {"type": "say", "text": "Hello", "edges": {"next": "menu"}},
            "menu": {"type": "hangup"},
            "bye": {"type": "hangup", "position": {"x": 5, "y": 1}}}});
        let d = diff(&a, &b);
        assert_eq!(
            d.entry,
            Some(Change {
                from: json!("hello"),
                to: json!("menu")
            })
        );
        assert_eq!(d.name, None);
        assert_eq!(d.nodes_added, ["menu"]);
        assert_eq!(d.nodes_removed, ["old"]);
        assert_eq!(d.nodes_changed.len(), 2);
        let bye = &d.nodes_changed[0];
        assert_eq!((bye.id.as_str(), bye.layout_only), ("bye", true));
        let hello = &d.nodes_changed[1];
        assert_eq!(hello.fields, ["edges", "text"]);
        assert_eq!(hello.edges, ["next"]);
        assert!(!hello.layout_only);
        assert!(d.changes_behaviour());
    }

    #[test]
    fn a_layout_move_does_not_change_behaviour() {
        let a =
            json!({"entry": "a", "nodes": {"a": {"type": "hangup", "position": {"x": 0, "y": 0}}}});
        let b =
            json!({"entry": "a", "nodes": {"a": {"type": "hangup", "position": {"x": 9, "y": 0}}}});
        assert!(!diff(&a, &b).changes_behaviour());
        assert_eq!(diff(&a, &a), FlowDiff::default());
    }
}
