//! `${name}` templates. A template is parsed once; rendering looks each name
//! up in the call's variables. `$$` writes a literal `$`.

use std::collections::BTreeMap;

use serde_json::Value;

/// A parse error, with the byte offset where it was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("`${{` at position {0} is never closed with `}}`")]
    Unclosed(usize),
    #[error("empty variable name at position {0}")]
    EmptyName(usize),
    #[error("invalid variable name `{name}` at position {at}: use letters, digits, `_` and `.`")]
    BadName { name: String, at: usize },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Var(String),
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pieces: Vec<Piece>,
}

/// Whether `name` is a valid variable name: letters, digits, `_` and `.`,
/// not starting with a digit.
pub fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
}

impl Template {
    pub fn parse(source: &str) -> Result<Self, TemplateError> {
        let mut pieces = Vec::new();
        let mut text = String::new();
        let mut rest = source;
        let mut offset = 0;
        while let Some(pos) = rest.find('$') {
            text.push_str(&rest[..pos]);
            let after = &rest[pos + 1..];
            if let Some(tail) = after.strip_prefix('$') {
                text.push('$');
                offset += pos + 2;
                rest = tail;
            } else if let Some(tail) = after.strip_prefix('{') {
                let at = offset + pos;
                let end = tail.find('}').ok_or(TemplateError::Unclosed(at))?;
                let name = tail[..end].trim();
                if name.is_empty() {
                    return Err(TemplateError::EmptyName(at));
                }
                if !is_valid_name(name) {
                    return Err(TemplateError::BadName {
                        name: name.to_string(),
                        at,
                    });
                }
                if !text.is_empty() {
                    pieces.push(Piece::Text(std::mem::take(&mut text)));
                }
                pieces.push(Piece::Var(name.to_string()));
                offset += pos + 2 + end + 1;
                rest = &tail[end + 1..];
            } else {
                text.push('$');
                offset += pos + 1;
                rest = after;
            }
        }
        text.push_str(rest);
        if !text.is_empty() {
            pieces.push(Piece::Text(text));
        }
        Ok(Self { pieces })
    }

    /// The variable names the template reads, in order of appearance.
    pub fn variables(&self) -> impl Iterator<Item = &str> {
        self.pieces.iter().filter_map(|p| match p {
            Piece::Var(v) => Some(v.as_str()),
            Piece::Text(_) => None,
        })
    }

    /// Renders with `vars`; an unset variable renders as the empty string.
    pub fn render(&self, vars: &BTreeMap<String, Value>) -> String {
        self.render_with(vars, display)
    }

    /// Renders for a JSON body: each value is written as a JSON string's
    /// content (escaped), so a caller's input cannot break the document.
    pub fn render_json_escaped(&self, vars: &BTreeMap<String, Value>) -> String {
        self.render_with(vars, |v| {
            let quoted = Value::String(display(v)).to_string();
            quoted[1..quoted.len() - 1].to_string()
        })
    }

    fn render_with(
        &self,
        vars: &BTreeMap<String, Value>,
        fmt: impl Fn(&Value) -> String,
    ) -> String {
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Var(name) => {
                    if let Some(v) = vars.get(name) {
                        out.push_str(&fmt(v));
                    }
                }
            }
        }
        out
    }
}

/// A variable's value as text: strings bare, null empty, others as JSON.
pub fn display(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, Value)]) -> BTreeMap<String, Value> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    #[test]
    fn renders_variables_and_literal_dollars() {
        let t = Template::parse("Hi ${name}, you owe $$${amount} (${missing})").expect("parses");
        let out = t.render(&vars(&[("name", "Ana".into()), ("amount", 12.5.into())]));
        assert_eq!(out, "Hi Ana, you owe $12.5 ()");
        assert_eq!(
            t.variables().collect::<Vec<_>>(),
            ["name", "amount", "missing"]
        );
    }

    #[test]
    fn a_lone_dollar_is_text() {
        let t = Template::parse("costs 5$ now").expect("parses");
        assert_eq!(t.render(&BTreeMap::new()), "costs 5$ now");
    }

    #[test]
    fn errors_name_the_position() {
        assert_eq!(Template::parse("a ${b"), Err(TemplateError::Unclosed(2)));
        assert_eq!(Template::parse("${}"), Err(TemplateError::EmptyName(0)));
        assert!(matches!(
            Template::parse("${a b}"),
            Err(TemplateError::BadName { at: 0, .. })
        ));
        assert!(matches!(
            Template::parse("${1x}"),
            Err(TemplateError::BadName { .. })
        ));
    }

    #[test]
    fn json_escaping_keeps_documents_intact() {
        let t = Template::parse(r#"{"q":"${q}"}"#).expect("parses");
        let out = t.render_json_escaped(&vars(&[("q", r#"a"b\c"#.into())]));
        let parsed: Value = serde_json::from_str(&out).expect("still JSON");
        assert_eq!(parsed["q"], r#"a"b\c"#);
    }
}
