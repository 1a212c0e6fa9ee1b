//! The checks of each node's own parameters.

use std::collections::{BTreeMap, BTreeSet};

use super::{issue, Issue, ValidationContext};
use crate::expr::Condition;
use crate::model::{Node, NodeKind, Prompt, BUILTIN_VARIABLES};
use crate::template::{is_valid_name, Template};

fn valid_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.!%*+`'~".contains(&b))
}

fn check_range(
    errors: &mut Vec<Issue>,
    id: &str,
    field: &str,
    value: u64,
    lo: u64,
    hi: u64,
    what: &str,
) {
    if value < lo || value > hi {
        errors.push(issue(
            id,
            format!("/nodes/{id}/{field}"),
            "out_of_range",
            format!("{what} must be between {lo} and {hi}; it is {value}."),
        ));
    }
}

fn is_dtmf_key(c: char) -> bool {
    c.is_ascii_digit() || c == '*' || c == '#'
}

/// Checks one node's own parameters.
pub(super) fn check_parameters(
    id: &str,
    node: &Node,
    ctx: &ValidationContext,
    errors: &mut Vec<Issue>,
) {
    let base = format!("/nodes/{id}");
    match &node.kind {
        NodeKind::Play(p) => check_audio(id, &p.audio, &format!("{base}/audio"), ctx, errors),
        NodeKind::Say(s) => {
            if s.text.trim().is_empty() {
                errors.push(issue(
                    id,
                    format!("{base}/text"),
                    "missing_parameter",
                    "Say what? The text is empty.".into(),
                ));
            }
        }
        NodeKind::Menu(m) => {
            check_prompt(id, &m.prompt, &format!("{base}/prompt"), ctx, errors);
            if m.options.is_empty() {
                errors.push(issue(
                    id,
                    format!("{base}/options"),
                    "missing_parameter",
                    "A menu needs at least one choice.".into(),
                ));
            }
            let mut seen = BTreeSet::new();
            for (i, o) in m.options.iter().enumerate() {
                if o.is_empty() || o.len() > 8 || !o.chars().all(is_dtmf_key) {
                    errors.push(issue(
                        id,
                        format!("{base}/options/{i}"),
                        "invalid_parameter",
                        format!("Choice \"{o}\" must be keys 0-9, * or #."),
                    ));
                }
                if !seen.insert(o) {
                    errors.push(issue(
                        id,
                        format!("{base}/options/{i}"),
                        "duplicate",
                        format!("Choice \"{o}\" is listed twice."),
                    ));
                }
            }
            check_range(
                errors,
                id,
                "timeout_ms",
                m.timeout_ms,
                500,
                60_000,
                "The wait for a key",
            );
            check_range(
                errors,
                id,
                "inter_digit_timeout_ms",
                m.inter_digit_timeout_ms,
                200,
                30_000,
                "The wait between keys",
            );
            check_range(
                errors,
                id,
                "max_retries",
                m.max_retries.into(),
                0,
                10,
                "Retries",
            );
        }
        NodeKind::Gather(g) => {
            if let Some(p) = &g.prompt {
                check_prompt(id, p, &format!("{base}/prompt"), ctx, errors);
            }
            if !is_valid_name(&g.variable) || BUILTIN_VARIABLES.contains(&g.variable.as_str()) {
                errors.push(issue(
                    id,
                    format!("{base}/variable"),
                    "invalid_parameter",
                    format!("\"{}\" cannot be used as a variable name.", g.variable),
                ));
            }
            check_range(
                errors,
                id,
                "max_digits",
                g.max_digits.into(),
                1,
                64,
                "The number of digits",
            );
            if g.min_digits > g.max_digits {
                errors.push(issue(
                    id,
                    format!("{base}/min_digits"),
                    "invalid_parameter",
                    "The minimum number of digits is larger than the maximum.".into(),
                ));
            }
            if let Some(t) = g.terminator {
                if !is_dtmf_key(t) {
                    errors.push(issue(
                        id,
                        format!("{base}/terminator"),
                        "invalid_parameter",
                        format!("\"{t}\" is not a phone key."),
                    ));
                }
            }
            check_range(
                errors,
                id,
                "timeout_ms",
                g.timeout_ms,
                500,
                60_000,
                "The wait for the first key",
            );
            check_range(
                errors,
                id,
                "inter_digit_timeout_ms",
                g.inter_digit_timeout_ms,
                200,
                30_000,
                "The wait between keys",
            );
        }
        NodeKind::Http(h) => {
            check_http_url(id, &h.url, &format!("{base}/url"), ctx, errors);
            check_range(
                errors,
                id,
                "timeout_ms",
                h.timeout_ms,
                100,
                30_000,
                "The request timeout",
            );
            for name in h.headers.keys() {
                if !valid_header_name(name) {
                    errors.push(issue(
                        id,
                        format!("{base}/headers/{name}"),
                        "invalid_parameter",
                        format!("\"{name}\" is not a valid header name."),
                    ));
                }
            }
            if let Some(body) = &h.body {
                if let Ok(t) = Template::parse(body) {
                    let probe: BTreeMap<String, serde_json::Value> =
                        t.variables().map(|v| (v.to_string(), "x".into())).collect();
                    if serde_json::from_str::<serde_json::Value>(&t.render_json_escaped(&probe))
                        .is_err()
                    {
                        errors.push(issue(
                            id,
                            format!("{base}/body"),
                            "invalid_parameter",
                            "The body is not valid JSON.".into(),
                        ));
                    }
                }
            }
            for (var, pointer) in &h.map {
                if !is_valid_name(var) || BUILTIN_VARIABLES.contains(&var.as_str()) {
                    errors.push(issue(
                        id,
                        format!("{base}/map/{var}"),
                        "invalid_parameter",
                        format!("\"{var}\" cannot be used as a variable name."),
                    ));
                }
                if !(pointer.is_empty() || pointer.starts_with('/')) {
                    errors.push(issue(
                        id,
                        format!("{base}/map/{var}"),
                        "invalid_parameter",
                        format!("\"{pointer}\" must be a JSON pointer such as /account/balance."),
                    ));
                }
            }
        }
        NodeKind::Condition(c) => {
            if c.branches.is_empty() {
                errors.push(issue(
                    id,
                    format!("{base}/branches"),
                    "missing_parameter",
                    "A condition needs at least one branch.".into(),
                ));
            }
            let mut seen = BTreeSet::new();
            for (i, b) in c.branches.iter().enumerate() {
                if b.outcome == "else" || b.outcome.is_empty() || !seen.insert(&b.outcome) {
                    errors.push(issue(
                        id,
                        format!("{base}/branches/{i}/outcome"),
                        "invalid_parameter",
                        format!(
                            "Branch name \"{}\" is empty, reserved or used twice.",
                            b.outcome
                        ),
                    ));
                }
                if let Err(e) = Condition::parse(&b.when) {
                    errors.push(issue(
                        id,
                        format!("{base}/branches/{i}/when"),
                        "bad_expression",
                        format!("This condition cannot be read: {e}."),
                    ));
                }
            }
        }
        NodeKind::Set(s) => {
            if s.values.is_empty() {
                errors.push(issue(
                    id,
                    format!("{base}/values"),
                    "missing_parameter",
                    "Set nothing? Add at least one variable.".into(),
                ));
            }
            for var in s.values.keys() {
                if !is_valid_name(var) || BUILTIN_VARIABLES.contains(&var.as_str()) {
                    errors.push(issue(
                        id,
                        format!("{base}/values/{var}"),
                        "invalid_parameter",
                        format!("\"{var}\" cannot be used as a variable name."),
                    ));
                }
            }
        }
        NodeKind::Ai(a) => {
            if a.intents.is_empty() {
                errors.push(issue(
                    id,
                    format!("{base}/intents"),
                    "missing_parameter",
                    "The assistant needs at least one intent.".into(),
                ));
            }
            let mut names = BTreeSet::new();
            for (i, intent) in a.intents.iter().enumerate() {
                let reserved = ["escalate", "fallback_dtmf", "fallback_agent", "error"]
                    .contains(&intent.name.as_str());
                if !is_valid_name(&intent.name) || reserved || !names.insert(intent.name.as_str()) {
                    errors.push(issue(
                        id,
                        format!("{base}/intents/{i}/name"),
                        "invalid_parameter",
                        format!(
                            "Intent name \"{}\" is invalid, reserved or used twice.",
                            intent.name
                        ),
                    ));
                }
                if intent.examples.is_empty() && intent.description.trim().is_empty() {
                    errors.push(issue(
                        id,
                        format!("{base}/intents/{i}/examples"),
                        "missing_parameter",
                        format!(
                            "Intent \"{}\" needs example phrases or a description.",
                            intent.name
                        ),
                    ));
                }
            }
            for (i, e) in a.escalate_intents.iter().enumerate() {
                if !names.contains(e.as_str()) {
                    errors.push(issue(
                        id,
                        format!("{base}/escalate_intents/{i}"),
                        "unknown_intent",
                        format!("\"{e}\" is not one of this node's intents."),
                    ));
                }
            }
            if let Some(t) = a.confidence_threshold {
                if !(0.0..=1.0).contains(&t) {
                    errors.push(issue(
                        id,
                        format!("{base}/confidence_threshold"),
                        "out_of_range",
                        format!("The confidence threshold must be between 0 and 1; it is {t}."),
                    ));
                }
            }
            for key in a.dtmf.keys() {
                if key.chars().count() != 1 || !key.chars().all(is_dtmf_key) {
                    errors.push(issue(
                        id,
                        format!("{base}/dtmf/{key}"),
                        "invalid_parameter",
                        format!("\"{key}\" is not a phone key."),
                    ));
                }
            }
            if !node.edges.contains_key("fallback_dtmf")
                && !node.edges.contains_key("fallback_agent")
            {
                errors.push(issue(id, format!("{base}/edges"), "missing_fallback", "Connect fallback_dtmf or fallback_agent, so a slow or failed assistant never leaves the caller in silence.".into()));
            }
        }
        NodeKind::Transfer(t) => {
            let target = t.target.trim();
            let templated = target.starts_with("${");
            if !templated
                && !["sip:", "sips:", "tel:"]
                    .iter()
                    .any(|s| target.to_ascii_lowercase().starts_with(s))
            {
                errors.push(issue(
                    id,
                    format!("{base}/target"),
                    "invalid_parameter",
                    "The target must be a sip:, sips: or tel: address.".into(),
                ));
            }
            for name in t.headers.keys() {
                if !(name.len() > 2
                    && name[..2].eq_ignore_ascii_case("x-")
                    && valid_header_name(name))
                {
                    errors.push(issue(
                        id,
                        format!("{base}/headers/{name}"),
                        "invalid_parameter",
                        format!("Header \"{name}\" must be a valid name starting with X-."),
                    ));
                }
            }
            check_range(
                errors,
                id,
                "timeout_ms",
                t.timeout_ms,
                1_000,
                120_000,
                "The ring timeout",
            );
        }
        NodeKind::Hangup(_) => {}
    }
}

fn check_prompt(
    id: &str,
    prompt: &Prompt,
    path: &str,
    ctx: &ValidationContext,
    errors: &mut Vec<Issue>,
) {
    match prompt {
        Prompt::Say(text) if text.trim().is_empty() => errors.push(issue(
            id,
            format!("{path}/say"),
            "missing_parameter",
            "The prompt text is empty.".into(),
        )),
        Prompt::Say(_) => {}
        Prompt::Play(audio) => check_audio(id, audio, &format!("{path}/play"), ctx, errors),
    }
}

fn check_audio(
    id: &str,
    audio: &str,
    path: &str,
    ctx: &ValidationContext,
    errors: &mut Vec<Issue>,
) {
    let audio = audio.trim();
    if audio.is_empty() {
        errors.push(issue(
            id,
            path.to_string(),
            "missing_parameter",
            "Choose an audio file.".into(),
        ));
    } else if audio.contains("://") {
        check_http_url(id, audio, path, ctx, errors);
    } else if audio.starts_with('/') || audio.split(['/', '\\']).any(|part| part == "..") {
        errors.push(issue(
            id,
            path.to_string(),
            "invalid_parameter",
            "Audio files are named relative to the tenant's prompt folder.".into(),
        ));
    }
}

fn check_http_url(
    id: &str,
    url: &str,
    path: &str,
    ctx: &ValidationContext,
    errors: &mut Vec<Issue>,
) {
    let Ok(t) = Template::parse(url) else { return };
    // Placeholders stand for values only a call knows; a variable in the
    // host part cannot be checked against the allow-list, so it is refused.
    let probe: BTreeMap<String, serde_json::Value> = t
        .variables()
        .map(|v| (v.to_string(), "voxgate-var".into()))
        .collect();
    let rendered = t.render(&probe);
    let parsed = match url::Url::parse(&rendered) {
        Ok(u) => u,
        Err(e) => {
            errors.push(issue(
                id,
                path.to_string(),
                "invalid_url",
                format!("This is not a valid URL: {e}."),
            ));
            return;
        }
    };
    if !matches!(parsed.scheme(), "http" | "https") {
        errors.push(issue(
            id,
            path.to_string(),
            "invalid_url",
            "Only http and https addresses can be called.".into(),
        ));
        return;
    }
    let host = match parsed.host() {
        Some(url::Host::Domain(d)) => d.to_string(),
        Some(url::Host::Ipv4(ip)) => ip.to_string(),
        Some(url::Host::Ipv6(ip)) => ip.to_string(),
        None => String::new(),
    };
    if host.contains("voxgate-var") {
        errors.push(issue(
            id,
            path.to_string(),
            "host_not_allowed",
            "The host part of the address cannot come from a variable.".into(),
        ));
    } else if let Err(why) = ctx.http.permits_host(&host) {
        errors.push(issue(
            id,
            path.to_string(),
            "host_not_allowed",
            format!("This address cannot be called: {why}."),
        ));
    }
}
