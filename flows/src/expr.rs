//! Condition expressions: `balance > 100 && tier == "gold"`.
//!
//! Expressions are parsed and evaluated by `evalexpr`, read-only: an
//! expression can compare and combine variables but never assign them.

use std::collections::BTreeMap;

use evalexpr::{
    ContextWithMutableVariables, DefaultNumericTypes, HashMapContext, Node, Value as EValue,
};
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ExprError {
    #[error("cannot read the expression: {0}")]
    Syntax(String),
    #[error("expressions may not assign variables (use a `set` node)")]
    Assignment,
    #[error("cannot evaluate: {0}")]
    Eval(String),
    #[error("the expression gives {0}, not true or false")]
    NotBoolean(String),
}

/// A parsed condition.
#[derive(Debug, Clone)]
pub struct Condition {
    tree: Node<DefaultNumericTypes>,
}

impl Condition {
    pub fn parse(source: &str) -> Result<Self, ExprError> {
        let tree = evalexpr::build_operator_tree::<DefaultNumericTypes>(source)
            .map_err(|e| ExprError::Syntax(e.to_string()))?;
        let assigns = tree.iter_variable_identifiers().count()
            != tree.iter_read_variable_identifiers().count();
        if assigns {
            return Err(ExprError::Assignment);
        }
        Ok(Self { tree })
    }

    /// The variable names the expression reads.
    pub fn variables(&self) -> impl Iterator<Item = &str> {
        self.tree.iter_read_variable_identifiers()
    }

    /// Evaluates against `vars`. A variable that is not set reads as an
    /// empty string, so `x == ""` tests for it.
    pub fn eval(&self, vars: &BTreeMap<String, Value>) -> Result<bool, ExprError> {
        let mut ctx = HashMapContext::<DefaultNumericTypes>::new();
        for name in self.tree.iter_read_variable_identifiers() {
            let value = vars
                .get(name)
                .map_or(EValue::String(String::new()), to_evalexpr);
            ctx.set_value(name.to_string(), value)
                .map_err(|e| ExprError::Eval(e.to_string()))?;
        }
        match self.tree.eval_with_context(&ctx) {
            Ok(EValue::Boolean(b)) => Ok(b),
            Ok(other) => Err(ExprError::NotBoolean(other.to_string())),
            Err(e) => Err(ExprError::Eval(e.to_string())),
        }
    }
}

fn to_evalexpr(value: &Value) -> EValue<DefaultNumericTypes> {
    match value {
        Value::Bool(b) => EValue::Boolean(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => EValue::Int(i),
            None => EValue::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => EValue::String(s.clone()),
        Value::Null => EValue::Empty,
        other => EValue::String(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> BTreeMap<String, Value> {
        [
            ("balance".to_string(), Value::from(150)),
            ("tier".to_string(), Value::from("gold")),
        ]
        .into()
    }

    #[test]
    fn compares_and_combines() {
        let c = Condition::parse(r#"balance > 100 && tier == "gold""#).expect("parses");
        assert!(c.eval(&vars()).expect("evaluates"));
        let c = Condition::parse("balance < 100").expect("parses");
        assert!(!c.eval(&vars()).expect("evaluates"));
    }

    #[test]
    fn unset_reads_as_empty_string() {
        let c = Condition::parse(r#"digits == """#).expect("parses");
        assert!(c.eval(&vars()).expect("evaluates"));
    }

    #[test]
    fn refuses_assignment_and_non_boolean() {
        assert_eq!(
            Condition::parse("balance = 5").err(),
            Some(ExprError::Assignment)
        );
        let c = Condition::parse("balance + 1").expect("parses");
        assert!(matches!(c.eval(&vars()), Err(ExprError::NotBoolean(_))));
        assert!(matches!(
            Condition::parse("(balance > 3"),
            Err(ExprError::Syntax(_))
        ));
    }

    #[test]
    fn type_mismatch_is_an_error_not_a_panic() {
        let c = Condition::parse("tier > 5").expect("parses");
        assert!(matches!(c.eval(&vars()), Err(ExprError::Eval(_))));
    }
}
