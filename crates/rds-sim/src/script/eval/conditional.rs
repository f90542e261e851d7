//! `:if` conditions: evaluation, truth and comparison.

use std::cmp::Ordering;

use super::Interpreter;
use crate::error::CmdError;
use crate::script::ast::{RelOp, Test};
use crate::script::value::Value;

impl Interpreter<'_> {
    /// Whether an `:if` condition holds.
    pub(super) fn holds(&mut self, test: &Test) -> Result<bool, CmdError> {
        truth(&self.test(test)?)
    }

    fn test(&mut self, test: &Test) -> Result<Value, CmdError> {
        Ok(match test {
            Test::Value(expr) => self.eval(expr)?,
            Test::Num(n) => Value::Num(*n),
            Test::Bool(b) => Value::Bool(*b),
            Test::Not(a) => Value::Bool(!self.holds(a)?),
            Test::And(a, b) => Value::Bool(self.holds(a)? && self.holds(b)?),
            Test::Or(a, b) => Value::Bool(self.holds(a)? || self.holds(b)?),
            Test::Compare(a, op, b) => {
                let (a, b) = (self.test(a)?, self.test(b)?);
                Value::Bool(compare(&a, *op, &b))
            }
        })
    }
}

/// A value used as a condition: booleans, and the words `true`/`false` (an unquoted
/// `:local x true` holds the word).
pub fn truth(value: &Value) -> Result<bool, CmdError> {
    match value {
        Value::Bool(b) => Ok(*b),
        Value::Str(s) if s == "true" => Ok(true),
        Value::Str(s) if s == "false" => Ok(false),
        _ => Err(CmdError::NotBoolean),
    }
}

/// Numbers compare numerically (a number against a text that is a whole number too, since
/// an unquoted `:local n 5` holds text); everything else compares as text.
pub fn compare(a: &Value, op: RelOp, b: &Value) -> bool {
    let ordering = match (a, b) {
        (Value::Num(_), _) | (_, Value::Num(_)) => match (number(a), number(b)) {
            (Some(x), Some(y)) => x.cmp(&y),
            _ => a.to_text().cmp(&b.to_text()),
        },
        _ => a.to_text().cmp(&b.to_text()),
    };
    match op {
        RelOp::Eq => ordering == Ordering::Equal,
        RelOp::NotEq => ordering != Ordering::Equal,
        RelOp::Less => ordering == Ordering::Less,
        RelOp::Greater => ordering == Ordering::Greater,
        RelOp::LessEq => ordering != Ordering::Greater,
        RelOp::GreaterEq => ordering != Ordering::Less,
    }
}

fn number(value: &Value) -> Option<i64> {
    match value {
        Value::Num(n) => Some(*n),
        Value::Str(s) => s.parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::script::value::Table;

    fn num(n: i64) -> Value {
        Value::Num(n)
    }

    fn text(s: &str) -> Value {
        Value::Str(s.into())
    }

    #[test]
    fn numbers_compare_numerically_and_text_as_text() {
        use RelOp::*;
        let cases = [
            (num(2), Less, num(10), true),
            (num(10), Greater, num(2), true),
            (num(3), LessEq, num(3), true),
            (num(3), GreaterEq, num(4), false),
            (num(0), Eq, num(0), true),
            (num(0), NotEq, num(1), true),
            // Text that is a whole number meets a number as a number.
            (text("5"), Less, num(10), true),
            (num(7), Eq, text("7"), true),
            // Two texts compare as text, even when they look like numbers.
            (text("10"), Less, text("9"), true),
            (text("abc"), Eq, text("abc"), true),
            (text("abc"), Less, text("abd"), true),
            (text("b"), GreaterEq, text("a"), true),
            (text("a"), NotEq, text("a"), false),
            (num(5), Eq, text("five"), false),
            (Value::Bool(true), Eq, Value::Bool(true), true),
            (Value::Bool(true), Eq, Value::Bool(false), false),
            (Value::Id(Table::Disk, 26), Eq, text("*1A"), true),
            (Value::Nothing, Eq, text(""), true),
        ];
        for (a, op, b, expected) in cases {
            assert_eq!(compare(&a, op, &b), expected, "{a:?} {op:?} {b:?}");
        }
    }

    #[test]
    fn only_booleans_are_conditions() {
        assert_eq!(truth(&Value::Bool(true)), Ok(true));
        assert_eq!(truth(&text("false")), Ok(false));
        assert_eq!(truth(&num(1)), Err(CmdError::NotBoolean));
        assert_eq!(truth(&Value::Array(vec![])), Err(CmdError::NotBoolean));
        assert_eq!(truth(&Value::Nothing), Err(CmdError::NotBoolean));
    }
}
