//! The checks run before a flow is published.
//!
//! Errors block publishing; warnings do not. Each finding names the node,
//! a JSON path into the document, a stable `code` for programs, and a
//! message a CX person understands.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use serde::Serialize;

use crate::expr::Condition;
use crate::model::{Flow, Node, NodeKind, Prompt, BUILTIN_VARIABLES};
use crate::template::Template;

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Issue {
    /// The node concerned, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// A JSON pointer into the flow document.
    pub path: String,
    /// A stable machine-readable code, such as `missing_target`.
    pub code: &'static str,
    pub message: String,
}

/// Everything validation found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    pub errors: Vec<Issue>,
    pub warnings: Vec<Issue>,
}

impl Report {
    pub fn is_valid(&self) -> bool {
        self.errors.is_empty()
    }
}

/// Which hosts a tenant's `http` nodes may call.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct HttpAllowList {
    /// Host names or IP literals; `*.example.com` matches subdomains.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Allow loopback, private and link-local addresses. Off by default:
    /// a flow must not reach into the operator's own network (SSRF).
    #[serde(default)]
    pub allow_private: bool,
}

impl HttpAllowList {
    /// Whether `host` (a name or an IP literal, without brackets) may be
    /// called. Names are checked again after resolution at call time.
    pub fn permits_host(&self, host: &str) -> Result<(), String> {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        if !self.allow_private {
            if let Ok(ip) = host.parse::<IpAddr>() {
                if is_private(ip) {
                    return Err(format!("{host} is a private or loopback address"));
                }
            }
            if host == "localhost" || host.ends_with(".localhost") {
                return Err(format!("{host} is a loopback name"));
            }
        }
        let listed = self.hosts.iter().any(|pattern| {
            let pattern = pattern.to_ascii_lowercase();
            match pattern.strip_prefix("*.") {
                Some(suffix) => host.ends_with(&format!(".{suffix}")),
                None => pattern == host,
            }
        });
        if listed {
            Ok(())
        } else {
            Err(format!(
                "{host} is not on this tenant's list of allowed hosts"
            ))
        }
    }

    /// Whether a resolved address may be connected to.
    pub fn permits_ip(&self, ip: IpAddr) -> bool {
        self.allow_private || !is_private(ip)
    }
}

/// Loopback, private, link-local, unspecified, CGNAT and unique-local
/// addresses, and IPv4 addresses mapped into IPv6.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || (o[0] == 100 && (o[1] & 0xc0) == 64)
                || o[0] == 0
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_private(IpAddr::V4(v4));
            }
            let s = v6.segments();
            v6.is_loopback()
                || v6.is_unspecified()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
        }
    }
}

/// What the validator needs to know about the tenant.
#[derive(Debug, Clone, Default)]
pub struct ValidationContext {
    pub http: HttpAllowList,
}

/// The variables a node sets on a given outcome.
fn defined_by(node: &Node, outcome: &str) -> Vec<String> {
    match &node.kind {
        NodeKind::Set(s) => s.values.keys().cloned().collect(),
        NodeKind::Gather(g) if outcome == crate::model::NEXT => vec![g.variable.clone()],
        NodeKind::Http(h) => {
            let mut v: Vec<String> = vec!["http.status".into()];
            if outcome == "ok" {
                v.extend(h.map.keys().cloned());
            }
            v
        }
        NodeKind::Menu(_) => vec!["menu.choice".into()],
        NodeKind::Ai(a) => {
            let mut v: Vec<String> = [
                "ai.intent",
                "ai.confidence",
                "ai.transcript",
                "ai.turns",
                "ai.reason",
                "ai.transcript_ref",
            ]
            .map(String::from)
            .to_vec();
            for intent in &a.intents {
                v.extend(intent.slots.iter().map(|s| format!("ai.slots.{}", s.name)));
            }
            v
        }
        NodeKind::Transfer(_) => vec!["transfer.status".into()],
        _ => vec![],
    }
}

/// The variables a node reads, each with the JSON path of the parameter.
fn used_by(node: &Node, id: &str, errors: &mut Vec<Issue>) -> Vec<(String, String)> {
    let mut used = Vec::new();
    let base = format!("/nodes/{id}");
    let mut template =
        |text: &str, path: String, used: &mut Vec<(String, String)>| match Template::parse(text) {
            Ok(t) => used.extend(t.variables().map(|v| (v.to_string(), path.clone()))),
            Err(e) => errors.push(issue(
                id,
                path,
                "bad_template",
                format!("This text has a broken variable: {e}."),
            )),
        };
    let prompt = |p: &Prompt| match p {
        Prompt::Say(t) => Some(t.clone()),
        Prompt::Play(_) => None,
    };
    match &node.kind {
        NodeKind::Say(s) => template(&s.text, format!("{base}/text"), &mut used),
        NodeKind::Menu(m) => {
            for (name, p) in [
                ("prompt", Some(&m.prompt)),
                ("no_input_prompt", m.no_input_prompt.as_ref()),
                ("no_match_prompt", m.no_match_prompt.as_ref()),
            ] {
                if let Some(text) = p.and_then(prompt) {
                    template(&text, format!("{base}/{name}/say"), &mut used);
                }
            }
        }
        NodeKind::Gather(g) => {
            if let Some(text) = g.prompt.as_ref().and_then(prompt) {
                template(&text, format!("{base}/prompt/say"), &mut used);
            }
        }
        NodeKind::Http(h) => {
            template(&h.url, format!("{base}/url"), &mut used);
            for (k, v) in &h.headers {
                template(v, format!("{base}/headers/{k}"), &mut used);
            }
            if let Some(b) = &h.body {
                template(b, format!("{base}/body"), &mut used);
            }
        }
        NodeKind::Set(s) => {
            for (k, v) in &s.values {
                if let Some(text) = v.as_str() {
                    template(text, format!("{base}/values/{k}"), &mut used);
                }
            }
        }
        NodeKind::Ai(a) => {
            if let Some(g) = &a.greeting {
                template(g, format!("{base}/greeting"), &mut used);
            }
            for (i, intent) in a.intents.iter().enumerate() {
                if let Some(r) = &intent.reply {
                    template(r, format!("{base}/intents/{i}/reply"), &mut used);
                }
            }
        }
        NodeKind::Transfer(t) => {
            template(&t.target, format!("{base}/target"), &mut used);
            for (k, v) in &t.headers {
                template(v, format!("{base}/headers/{k}"), &mut used);
            }
        }
        NodeKind::Condition(c) => {
            for (i, b) in c.branches.iter().enumerate() {
                if let Ok(cond) = Condition::parse(&b.when) {
                    used.extend(
                        cond.variables()
                            .map(|v| (v.to_string(), format!("{base}/branches/{i}/when"))),
                    );
                }
            }
        }
        NodeKind::Play(_) | NodeKind::Hangup(_) => {}
    }
    used
}

pub(super) fn issue(node: &str, path: String, code: &'static str, message: String) -> Issue {
    Issue {
        node: Some(node.to_string()),
        path,
        code,
        message,
    }
}

fn valid_node_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

mod params;
use params::check_parameters;

/// Validates a flow against the tenant's context.
pub fn validate(flow: &Flow, ctx: &ValidationContext) -> Report {
    let mut report = Report::default();
    let errors = &mut report.errors;
    if flow.id.trim().is_empty() {
        errors.push(Issue {
            node: None,
            path: "/id".into(),
            code: "missing_parameter",
            message: "The flow needs an id.".into(),
        });
    }
    if !flow.nodes.contains_key(&flow.entry) {
        errors.push(Issue {
            node: None,
            path: "/entry".into(),
            code: "missing_entry",
            message: format!("The start step \"{}\" does not exist.", flow.entry),
        });
    }
    for (id, node) in &flow.nodes {
        if !valid_node_id(id) {
            errors.push(issue(
                id,
                format!("/nodes/{id}"),
                "invalid_id",
                "Step ids use letters, digits, - and _ (64 at most).".into(),
            ));
        }
        check_parameters(id, node, ctx, errors);
        let outcomes = node.kind.outcomes();
        for o in &outcomes {
            if o.required && !node.edges.contains_key(&o.name) {
                errors.push(issue(
                    id,
                    format!("/nodes/{id}/edges/{}", o.name),
                    "missing_edge",
                    format!("Connect \"{}\" to the next step.", o.name),
                ));
            }
        }
        for (outcome, target) in &node.edges {
            if !outcomes.iter().any(|o| &o.name == outcome) {
                errors.push(issue(
                    id,
                    format!("/nodes/{id}/edges/{outcome}"),
                    "unknown_outcome",
                    format!(
                        "A {} step has no outcome \"{outcome}\".",
                        node.kind.type_name()
                    ),
                ));
            }
            if !flow.nodes.contains_key(target) {
                errors.push(issue(
                    id,
                    format!("/nodes/{id}/edges/{outcome}"),
                    "missing_target",
                    format!("\"{outcome}\" leads to step \"{target}\", which does not exist."),
                ));
            }
        }
    }
    check_variables(flow, &mut report.errors);
    check_busy_cycles(flow, &mut report.errors);
    check_reachability(flow, &mut report.warnings);
    report
}

/// Variables used where no path from the entry sets them.
fn check_variables(flow: &Flow, errors: &mut Vec<Issue>) {
    let builtins: BTreeSet<String> = BUILTIN_VARIABLES.iter().map(|s| s.to_string()).collect();
    let mut may_set: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    if flow.nodes.contains_key(&flow.entry) {
        may_set.insert(flow.entry.as_str(), builtins.clone());
    }
    let mut work: Vec<&str> = may_set.keys().copied().collect();
    while let Some(id) = work.pop() {
        let Some(node) = flow.nodes.get(id) else {
            continue;
        };
        let here = may_set.get(id).cloned().unwrap_or_default();
        for (outcome, target) in &node.edges {
            let Some((target_id, _)) = flow.nodes.get_key_value(target) else {
                continue;
            };
            let mut out = here.clone();
            out.extend(defined_by(node, outcome));
            let entry = may_set.entry(target_id.as_str()).or_default();
            let before = entry.len();
            entry.extend(out);
            if entry.len() != before || before == 0 {
                work.push(target_id.as_str());
            }
        }
    }
    for (id, node) in &flow.nodes {
        let Some(available) = may_set.get(id.as_str()) else {
            continue;
        };
        for (var, path) in used_by(node, id, errors) {
            if !available.contains(&var) {
                errors.push(issue(
                    id,
                    path,
                    "unset_variable",
                    format!("\"{var}\" is used here, but no step before this one sets it."),
                ));
            }
        }
    }
}

/// Cycles made only of steps that never wait for the caller.
fn check_busy_cycles(flow: &Flow, errors: &mut Vec<Issue>) {
    // Iterative colour DFS over the non-waiting subgraph.
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnStack,
        Done,
    }
    let busy: Vec<&str> = flow
        .nodes
        .iter()
        .filter(|(_, n)| !n.kind.waits_for_caller())
        .map(|(id, _)| id.as_str())
        .collect();
    let mut mark: BTreeMap<&str, Mark> = busy.iter().map(|id| (*id, Mark::New)).collect();
    let mut reported = BTreeSet::new();
    for start in &busy {
        if mark[start] != Mark::New {
            continue;
        }
        let mut stack: Vec<(&str, Vec<&str>)> = vec![(start, successors(flow, start, &mark))];
        mark.insert(start, Mark::OnStack);
        while let Some((node, next)) = stack.last_mut() {
            let node = *node;
            if let Some(succ) = next.pop() {
                match mark[succ] {
                    Mark::New => {
                        mark.insert(succ, Mark::OnStack);
                        let s = successors(flow, succ, &mark);
                        stack.push((succ, s));
                    }
                    Mark::OnStack => {
                        let pos = stack.iter().position(|(n, _)| *n == succ).unwrap_or(0);
                        let mut cycle: Vec<&str> = stack[pos..].iter().map(|(n, _)| *n).collect();
                        cycle.push(succ);
                        if reported.insert(succ) {
                            errors.push(issue(
                                succ,
                                format!("/nodes/{succ}"),
                                "busy_loop",
                                format!(
                                    "These steps loop forever without waiting for the caller: {}. Add a menu, gather or AI step to the loop.",
                                    cycle.join(" → ")
                                ),
                            ));
                        }
                    }
                    Mark::Done => {}
                }
            } else {
                mark.insert(node, Mark::Done);
                stack.pop();
            }
        }
    }
}

fn successors<'a>(flow: &'a Flow, id: &str, busy: &BTreeMap<&str, impl Sized>) -> Vec<&'a str> {
    flow.nodes
        .get(id)
        .map(|n| {
            n.edges
                .values()
                .filter_map(|t| flow.nodes.get_key_value(t).map(|(k, _)| k.as_str()))
                .filter(|t| busy.contains_key(t))
                .collect()
        })
        .unwrap_or_default()
}

fn check_reachability(flow: &Flow, warnings: &mut Vec<Issue>) {
    let mut seen = BTreeSet::new();
    let mut work = vec![flow.entry.as_str()];
    while let Some(id) = work.pop() {
        if !seen.insert(id) {
            continue;
        }
        if let Some(node) = flow.nodes.get(id) {
            work.extend(node.edges.values().map(String::as_str));
        }
    }
    for id in flow.nodes.keys() {
        if !seen.contains(id.as_str()) {
            warnings.push(issue(
                id,
                format!("/nodes/{id}"),
                "unreachable",
                "No path from the start reaches this step.".into(),
            ));
        }
    }
}

#[cfg(test)]
mod tests;
