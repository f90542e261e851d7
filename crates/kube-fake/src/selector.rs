//! Label and field selectors as the API server parses them: labels with equality and set
//! requirements (`a=b`, `a==b`, `a!=b`, `a in (x,y)`, `a notin (x)`, `a`, `!a`), fields with
//! equality only, on the keys each kind supports.

use serde_json::Value;

use crate::resource::Resource;
use crate::status::ApiError;

#[derive(Debug, Clone, PartialEq)]
enum Op {
    Eq(String),
    NotEq(String),
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
    NotExists,
}

#[derive(Debug, Clone, PartialEq)]
struct Requirement {
    key: String,
    op: Op,
}

impl Requirement {
    /// `value` is the object's value for the key, `None` when it has none.
    fn matches(&self, value: Option<&str>) -> bool {
        match &self.op {
            Op::Eq(want) => value == Some(want.as_str()),
            Op::NotEq(want) => value != Some(want.as_str()),
            Op::In(set) => value.is_some_and(|v| set.iter().any(|s| s == v)),
            Op::NotIn(set) => value.is_none_or(|v| !set.iter().any(|s| s == v)),
            Op::Exists => value.is_some(),
            Op::NotExists => value.is_none(),
        }
    }
}

/// A parsed `labelSelector` and `fieldSelector` pair; empty matches everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Selector {
    labels: Vec<Requirement>,
    fields: Vec<Requirement>,
}

impl Selector {
    pub fn parse(
        res: &Resource,
        labels: Option<&str>,
        fields: Option<&str>,
    ) -> Result<Self, ApiError> {
        let labels = match labels {
            Some(text) => parse_labels(text)?,
            None => Vec::new(),
        };
        let fields = match fields {
            Some(text) => parse_fields(res, text)?,
            None => Vec::new(),
        };
        Ok(Selector { labels, fields })
    }

    pub fn matches(&self, obj: &Value) -> bool {
        let labels = obj.pointer("/metadata/labels");
        self.labels.iter().all(|r| {
            let value = labels.and_then(|l| l.get(&r.key)).and_then(Value::as_str);
            r.matches(value)
        }) && self
            .fields
            .iter()
            .all(|r| r.matches(Some(&field_value(obj, &r.key))))
    }
}

/// A field's value as a selector sees it: missing fields are empty strings.
fn field_value(obj: &Value, key: &str) -> String {
    let pointer = format!("/{}", key.replace('.', "/"));
    match obj.pointer(&pointer) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

fn parse_fields(res: &Resource, text: &str) -> Result<Vec<Requirement>, ApiError> {
    let mut out = Vec::new();
    for term in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        let (key, op) = if let Some((k, v)) = term.split_once("!=") {
            (k, Op::NotEq(v.to_owned()))
        } else if let Some((k, v)) = term.split_once("==") {
            (k, Op::Eq(v.to_owned()))
        } else if let Some((k, v)) = term.split_once('=') {
            (k, Op::Eq(v.to_owned()))
        } else {
            return Err(ApiError::bad_request(format!(
                "invalid selector: '{text}'; can't understand '{term}'"
            )));
        };
        let key = key.trim();
        if !res.supports_field(key) {
            return Err(ApiError::bad_request(format!(
                "field label not supported: {key}"
            )));
        }
        out.push(Requirement {
            key: key.to_owned(),
            op,
        });
    }
    Ok(out)
}

/// Splits on commas outside parentheses.
fn split_terms(text: &str) -> Vec<&str> {
    let (mut depth, mut start, mut out) = (0usize, 0usize, Vec::new());
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                out.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&text[start..]);
    out.into_iter()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect()
}

fn parse_set(term: &str, rest: &str) -> Result<Vec<String>, ApiError> {
    let inner = rest
        .trim()
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| ApiError::bad_request(format!("unable to parse requirement: {term}")))?;
    Ok(inner.split(',').map(|v| v.trim().to_owned()).collect())
}

fn parse_labels(text: &str) -> Result<Vec<Requirement>, ApiError> {
    let mut out = Vec::new();
    for term in split_terms(text) {
        let req = if let Some(key) = term.strip_prefix('!') {
            Requirement {
                key: key.trim().to_owned(),
                op: Op::NotExists,
            }
        } else if let Some((k, v)) = term.split_once("!=") {
            Requirement {
                key: k.trim().to_owned(),
                op: Op::NotEq(v.trim().to_owned()),
            }
        } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
            Requirement {
                key: k.trim().to_owned(),
                op: Op::Eq(v.trim().to_owned()),
            }
        } else if let Some((k, rest)) = term.split_once(" notin ") {
            Requirement {
                key: k.trim().to_owned(),
                op: Op::NotIn(parse_set(term, rest)?),
            }
        } else if let Some((k, rest)) = term.split_once(" in ") {
            Requirement {
                key: k.trim().to_owned(),
                op: Op::In(parse_set(term, rest)?),
            }
        } else if !term.contains([' ', '(', ')']) {
            Requirement {
                key: term.to_owned(),
                op: Op::Exists,
            }
        } else {
            return Err(ApiError::bad_request(format!(
                "unable to parse requirement: {term}"
            )));
        };
        out.push(req);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::defaults;
    use serde_json::json;

    fn pods() -> Resource {
        defaults().into_iter().find(|r| r.plural == "pods").unwrap()
    }

    fn pod() -> Value {
        json!({"metadata": {"name": "p", "namespace": "ns", "labels": {"app": "db", "tier": "x"}},
               "spec": {"nodeName": "n1"}})
    }

    #[test]
    fn labels_equality_set_and_existence() {
        let cases = [
            ("app=db", true),
            ("app==db", true),
            ("app!=db", false),
            ("app in (web, db)", true),
            ("app notin (db)", false),
            ("tier,app=db", true),
            ("!tier", false),
            ("missing!=x", true),
            ("missing in (x)", false),
        ];
        for (text, want) in cases {
            let sel = Selector::parse(&pods(), Some(text), None).unwrap();
            assert_eq!(sel.matches(&pod()), want, "{text}");
        }
    }

    #[test]
    fn fields_on_supported_keys_and_missing_fields_are_empty() {
        let sel = Selector::parse(
            &pods(),
            None,
            Some("spec.nodeName=n1,metadata.namespace=ns"),
        )
        .unwrap();
        assert!(sel.matches(&pod()));
        let sel = Selector::parse(&pods(), None, Some("status.phase=")).unwrap();
        assert!(sel.matches(&pod()));
        let err = Selector::parse(&pods(), None, Some("spec.hostname=x")).unwrap_err();
        assert_eq!(
            (err.code, err.message.as_str()),
            (400, "field label not supported: spec.hostname")
        );
    }
}
