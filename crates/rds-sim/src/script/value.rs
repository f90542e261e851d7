//! Script values and their text forms (`:put`, `:serialize to=json`).

use crate::records::{Val, format_id};

/// Which menu an internal id belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    Disk,
    File,
    Subvolume,
}

/// A RouterOS script value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Nothing,
    Str(String),
    Num(i64),
    Bool(bool),
    /// An internal id (`*1A`) of an item in a table.
    Id(Table, u64),
    Array(Vec<Value>),
    /// An associative array, in insertion order.
    Map(Vec<(String, Value)>),
}

impl Value {
    /// A typed property value as `print as-value` returns it.
    pub fn from_val(val: &Val) -> Value {
        match val {
            Val::Str(s) | Val::Bare(s) | Val::Path(s) => Value::Str(s.clone()),
            Val::Bool(b) => Value::Bool(*b),
            Val::Num(n) | Val::Bytes(n) | Val::Size(n) | Val::Percent(n) => {
                Value::Num(i64::try_from(*n).unwrap_or(i64::MAX))
            }
        }
    }

    /// The text `:put` prints and that arguments receive.
    pub fn to_text(&self) -> String {
        match self {
            Value::Nothing => String::new(),
            Value::Str(s) => s.clone(),
            Value::Num(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Id(_, id) => format_id(*id),
            Value::Array(items) => items
                .iter()
                .map(Value::to_text)
                .collect::<Vec<_>>()
                .join(";"),
            Value::Map(entries) => entries
                .iter()
                .map(|(k, v)| format!("{k}={}", v.to_text()))
                .collect::<Vec<_>>()
                .join(";"),
        }
    }

    /// [`Value::to_text`], without a copy of a string.
    pub fn into_text(self) -> String {
        match self {
            Value::Str(s) => s,
            other => other.to_text(),
        }
    }

    /// `:serialize to=json`: one line of JSON. With `float_numbers` numbers
    /// come out as `1073741824.000000`, as some RouterOS builds do.
    pub fn to_json(&self, float_numbers: bool) -> String {
        let mut out = String::new();
        self.write_json(&mut out, float_numbers);
        out
    }

    pub(crate) fn write_json(&self, out: &mut String, floats: bool) {
        match self {
            Value::Nothing => out.push_str("null"),
            Value::Str(s) => write_json_string(out, s),
            Value::Num(n) if floats => out.push_str(&format!("{n}.000000")),
            Value::Num(n) => out.push_str(&n.to_string()),
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Id(_, id) => write_json_string(out, &format_id(*id)),
            Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write_json(out, floats);
                }
                out.push(']');
            }
            Value::Map(entries) => {
                out.push('{');
                for (i, (k, v)) in entries.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_json_string(out, k);
                    out.push(':');
                    v.write_json(out, floats);
                }
                out.push('}');
            }
        }
    }
}

fn write_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Value {
        Value::Array(vec![Value::Map(vec![
            (".id".into(), Value::Id(Table::Disk, 26)),
            ("slot".into(), Value::Str("a\"b\n".into())),
            ("file-size".into(), Value::Num(1_073_741_824)),
            ("nvme-tcp-export".into(), Value::Bool(true)),
        ])])
    }

    #[test]
    fn json_is_one_line_and_valid() {
        let json = sample().to_json(false);
        assert_eq!(
            json,
            r#"[{".id":"*1A","slot":"a\"b\n","file-size":1073741824,"nvme-tcp-export":true}]"#
        );
        let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(parsed[0]["slot"], "a\"b\n");
        assert_eq!(Value::Array(vec![]).to_json(false), "[]");
        assert_eq!(Value::Str("\u{1}é".into()).to_json(false), "\"\\u0001é\"");
    }

    #[test]
    fn float_fault_formats_numbers_as_floats() {
        let json = sample().to_json(true);
        assert!(json.contains(r#""file-size":1073741824.000000"#));
        let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(parsed[0]["file-size"].as_f64(), Some(1_073_741_824.0));
    }

    #[test]
    fn put_text() {
        assert_eq!(Value::Nothing.to_text(), "");
        assert_eq!(
            Value::Array(vec![Value::Id(Table::Disk, 1), Value::Id(Table::Disk, 2)]).to_text(),
            "*1;*2"
        );
        assert_eq!(
            Value::Map(vec![
                ("a".into(), Value::Num(1)),
                ("b".into(), Value::Bool(false))
            ])
            .to_text(),
            "a=1;b=false"
        );
    }
}
